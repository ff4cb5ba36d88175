#include "os/os.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

namespace hakmem {

namespace {

// Over-maps by `align`, then trims both ends: two extra munmaps are cheaper
// than guessing hints, and the result never overlaps anything of ours.
void* map_aligned(size_t size, size_t align, size_t offset, int prot) {
  const size_t span = size + align;
  if (span < size) return nullptr;
  int saved = errno;
  void* raw = mmap(nullptr, span, prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  errno = saved;  // a refused mmap must not leak its errno into the caller's
  if (raw == MAP_FAILED) return nullptr;
  uintptr_t base = reinterpret_cast<uintptr_t>(raw);
  uintptr_t want = ((base + offset + align - 1) & ~(align - 1)) - offset;
  if (want < base) want += align;
  if (want > base) munmap(raw, want - base);
  uintptr_t end = base + span, used_end = want + size;
  if (end > used_end) munmap(reinterpret_cast<void*>(used_end), end - used_end);
  return reinterpret_cast<void*>(want);
}

// MAP_FIXED over our own reservation: the kernel swaps the pages in one
// step, so a concurrent reader sees the old or the new mapping, never a hole.
bool map_fixed(void* p, size_t size, int prot) {
  int saved = errno;
  void* r = mmap(p, size, prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1, 0);
  errno = saved;
  return r == p;
}

// madvise, which may fail (an old kernel, a tool) without it mattering to
// anyone: the caller's errno stays as it was.
void advise(void* p, size_t size, int advice) {
  int saved = errno;
  madvise(p, size, advice);
  errno = saved;
}

}  // namespace

void* os_map_aligned(size_t size, size_t align, size_t offset) {
  return map_aligned(size, align, offset, PROT_READ | PROT_WRITE);
}

// Reserved space is left out of core dumps: a kernel that pipes a core to a
// handler (systemd-coredump, apport) would otherwise write every page of it,
// zeros and all. Committed segments are dumped as usual.
void* os_reserve(size_t size, size_t align, bool readable) {
  void* p = map_aligned(size, align, 0, readable ? PROT_READ : PROT_NONE);
  if (p != nullptr) advise(p, size, MADV_DONTDUMP);
  return p;
}

// ThreadSanitizer allows the application only a few fixed address ranges and
// ends the process on a mapping elsewhere: under it, the kernel places the
// reservation.
#if defined(__SANITIZE_THREAD__)
constexpr bool kFixedAddressRanges = true;
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
constexpr bool kFixedAddressRanges = true;
#else
constexpr bool kFixedAddressRanges = false;
#endif
#else
constexpr bool kFixedAddressRanges = false;
#endif

void* os_reserve_random(size_t size, size_t align, bool readable, uint64_t seed) {
  // [2^45, 2^46): far above where programs ask for fixed low addresses, far
  // below where the kernel's own top-down placement starts.
  constexpr uint64_t kLow = uint64_t{1} << 45, kSpan = uint64_t{1} << 45;
  if (!kFixedAddressRanges && size < kSpan / 2 && align < kSpan / 2) {
    for (int attempt = 0; attempt < 4; ++attempt) {
      seed = mix64(seed + 0x9e3779b97f4a7c15u * static_cast<uint64_t>(attempt + 1));
      uintptr_t hint = (kLow + seed % (kSpan - size - align)) & ~(static_cast<uintptr_t>(align) - 1);
      int saved = errno;
      void* p = mmap(reinterpret_cast<void*>(hint), size, readable ? PROT_READ : PROT_NONE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED_NOREPLACE, -1, 0);
      errno = saved;
      if (p == reinterpret_cast<void*>(hint)) {
        advise(p, size, MADV_DONTDUMP);
        return p;
      }
      if (p != MAP_FAILED) munmap(p, size);  // a kernel that took the flag for a hint
    }
  }
  return os_reserve(size, align, readable);
}

bool os_commit(void* p, size_t size) { return map_fixed(p, size, PROT_READ | PROT_WRITE); }
void os_decommit(void* p, size_t size, bool readable) {
  // Refused (the kernel's limit on mappings, say): the pages still go, and
  // the range reads as zeros (or stays writable zeros) all the same.
  if (!map_fixed(p, size, readable ? PROT_READ : PROT_NONE)) advise(p, size, MADV_DONTNEED);
  advise(p, size, MADV_DONTDUMP);  // reserved space again (see os_reserve)
}

namespace {
// mprotect, the caller's errno kept.
bool protect(void* p, size_t size, int prot) {
  int saved = errno;
  bool ok = mprotect(p, size, prot) == 0;
  errno = saved;
  return ok;
}
}  // namespace

// Refused (a tool's limit): the values stay as they are, unsealed.
void os_seal(void* p, size_t size) { protect(p, size, PROT_READ); }
bool os_protect_none(void* p, size_t size) { return protect(p, size, PROT_NONE); }
bool os_protect_rw(void* p, size_t size) { return protect(p, size, PROT_READ | PROT_WRITE); }

bool os_address_space_limited() {
  struct rlimit lim;
  return getrlimit(RLIMIT_AS, &lim) == 0 && lim.rlim_cur != RLIM_INFINITY;
}

void os_unmap(void* p, size_t size) {
  if (size != 0) munmap(p, size);
}

void os_purge(void* p, size_t size) {
  if (size != 0) advise(p, size, MADV_DONTNEED);
}

void os_clear_resident(void* p, size_t size) {
  char* at = static_cast<char*>(p);
  unsigned char resident[256];  // one byte per page: 1 MiB per mincore call
  while (size > 0) {
    const size_t pages = size / kOsPageSize < sizeof resident ? size / kOsPageSize : sizeof resident;
    int saved = errno;
    bool known = mincore(at, pages * kOsPageSize, resident) == 0;
    errno = saved;
    for (size_t i = 0; i < pages;) {
      if (known && !(resident[i] & 1)) {
        ++i;
        continue;
      }
      size_t run = 1;  // a run of resident pages, cleared in one memset
      while (i + run < pages && (!known || (resident[i + run] & 1))) ++run;
      memset(at + i * kOsPageSize, 0, run * kOsPageSize);
      i += run;
    }
    at += pages * kOsPageSize;
    size -= pages * kOsPageSize;
  }
}

bool os_remap_to(void* old_p, size_t old_size, void* target, size_t new_size) {
  int saved = errno;
  void* r = mremap(old_p, old_size, new_size, MREMAP_MAYMOVE | MREMAP_FIXED, target);
  errno = saved;
  return r == target;
}

bool os_remap_in_place(void* p, size_t old_size, size_t new_size) {
  int saved = errno;
  void* r = mremap(p, old_size, new_size, 0);
  errno = saved;
  return r == p;
}

namespace {
uint64_t g_recent_ms = 0;  // relaxed atomic accesses: a stale value is fine
}  // namespace

uint64_t os_now_ms() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  uint64_t now = static_cast<uint64_t>(ts.tv_sec) * 1000u + static_cast<uint64_t>(ts.tv_nsec) / 1000000u;
  __atomic_store_n(&g_recent_ms, now, __ATOMIC_RELAXED);
  return now;
}

uint64_t os_recent_ms() { return __atomic_load_n(&g_recent_ms, __ATOMIC_RELAXED); }

size_t os_rss_bytes() {
  // /proc/self/statm through raw read(): no stdio, so no allocation.
  int saved = errno;
  int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
  if (fd < 0) { errno = saved; return 0; }
  char buf[128];
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  errno = saved;
  if (n <= 0) return 0;
  buf[n] = '\0';
  const char* s = buf;
  while (*s && *s != ' ') ++s;  // skip total program size
  size_t pages = 0;
  while (*s == ' ') ++s;
  while (*s >= '0' && *s <= '9') pages = pages * 10 + static_cast<size_t>(*s++ - '0');
  return pages * kOsPageSize;
}

size_t os_peak_rss_bytes() {
  struct rusage ru;
  if (getrusage(RUSAGE_SELF, &ru) != 0) return 0;
  return static_cast<size_t>(ru.ru_maxrss) * 1024u;
}

}  // namespace hakmem
