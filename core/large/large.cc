#include "large/large.h"

#include <string.h>

#include "contracts/contracts.h"
#include "os/os.h"
#include "slab/slab.h"
#include "stats/stats.h"

namespace hakmem {

namespace {

// Freed huge mappings wait here, resident, for the decay: a program that
// churns blocks of a few MiB reuses their pages instead of faulting them in
// anew. large-churn (32 live blocks of 64 KiB-4 MiB) keeps more than 16
// mappings and 64 MiB freed at a time: with that cache, the oldest went
// back to the kernel while it still wanted them, and it took twice
// mimalloc's page faults (70K against 33K a second) and ran 10-20% slower.
constexpr int kHugeCacheEntries = 32;
constexpr uint64_t kHugeCacheBytes = uint64_t{128} << 20;

// A huge mapping is [prefix | block], the block 4 MiB aligned. The prefix is
// the header's page, or, with guard pages (the hardened variant), [guard |
// header | guard]: an overflow that runs off the mapping below, or an
// underflow of the block, faults before it reaches the header. Nothing in
// the header is taken on trust: `check` is a keyed mix of the other fields
// (Secrets::header), so a header forged or damaged without the key fails
// huge_lookup, and free() answers as for any pointer it does not know.
struct HugeHeader {
  uint64_t check;
  void* user;       // the block
  size_t map_size;  // the whole mapping, prefix included
};

size_t huge_prefix() { return hardened_guards() ? 3 * kOsPageSize : kOsPageSize; }
uint64_t huge_check(const void* user, size_t map_size) {
  return keyed_mix(reinterpret_cast<uintptr_t>(user) ^ mix64(map_size), g_secrets.header, ~g_secrets.header);
}

struct HugeCacheEntry {
  char* base;  // mapping start (header page)
  size_t map_size;
  uint64_t freed_ms;
};

// Freed huge mappings kept for reuse, all of it guarded by `lock` (the last
// lock of lifecycle.cc's kLockOrder).
struct HugeCache {
  Lock lock;
  HugeCacheEntry entries[kHugeCacheEntries]{};
  int count = 0;
  uint64_t bytes = 0;
};
HugeCache g_huge;

size_t round_up(size_t n, size_t to) { return (n + to - 1) & ~(to - 1); }

// The mapping's start, given its block.
char* huge_base(const void* user) { return const_cast<char*>(static_cast<const char*>(user)) - huge_prefix(); }
HugeHeader* huge_header(const void* user) {
  return reinterpret_cast<HugeHeader*>(huge_base(user) + (hardened_guards() ? kOsPageSize : 0));
}

// Guard pages on (or off, before the kernel moves or resizes the mapping:
// it moves one mapping of one protection) the prefix of the mapping at `base`.
void huge_protect_prefix(char* base, bool guard) {
  if (!hardened_guards()) return;
  if (guard) {
    os_protect_none(base, kOsPageSize);
    os_protect_none(base + 2 * kOsPageSize, kOsPageSize);
  } else {
    os_protect_rw(base, huge_prefix());
  }
}

// A pointer in a slot marked huge is a huge block only if it is 4 MiB
// aligned and its header's check holds.
HugeHeader* huge_lookup(const void* p) {
  if (segmap_kind(p) != kSlotHuge) return nullptr;
  if ((reinterpret_cast<uintptr_t>(p) & kSegmentMask) != 0) return nullptr;
  HugeHeader* h = huge_header(p);
  if (h->user != p || h->check != huge_check(p, h->map_size)) return nullptr;
  return h;
}

void unmap_cache_entry(int i) {
  HugeCacheEntry e = g_huge.entries[i];
  g_huge.entries[i] = g_huge.entries[--g_huge.count];
  g_huge.bytes -= e.map_size;
  g_counters.huge_mapped_bytes.sub(e.map_size);
  os_unmap(e.base, e.map_size);
}

void expire_cache_locked(uint64_t now) {
  for (int i = g_huge.count - 1; i >= 0; --i)
    if (now - g_huge.entries[i].freed_ms >= g_config.decay_ms) unmap_cache_entry(i);
}

// Writes the header of the mapping at `base` (its header page writable),
// raises its guards unless they are up already, and hands its block out.
void* huge_install(char* base, size_t map_size, bool guards_up) {
  char* user = base + huge_prefix();
  HugeHeader* h = huge_header(user);
  h->user = user;
  h->map_size = map_size;
  h->check = huge_check(user, map_size);
  if (!guards_up) huge_protect_prefix(base, true);
  segmap_mark_huge(user);
  g_counters.huge_allocs.add(1);
  g_counters.huge_live_bytes.add(map_size - huge_prefix());
  return user;
}

// Takes the cached mapping that serves `map_size` bytes best out of the
// cache, or returns an entry with base nullptr when the cache is empty.
// Best fit among those large enough; failing that, the largest, which the
// caller grows. The caller owns the entry from then on.
HugeCacheEntry cache_take_locked(size_t map_size) {
  int best = -1, largest = -1;
  for (int i = 0; i < g_huge.count; ++i) {
    size_t have = g_huge.entries[i].map_size;
    if (have >= map_size && (best < 0 || have < g_huge.entries[best].map_size)) best = i;
    if (largest < 0 || have > g_huge.entries[largest].map_size) largest = i;
  }
  int pick = best >= 0 ? best : largest;
  if (pick < 0) return HugeCacheEntry{};
  HugeCacheEntry e = g_huge.entries[pick];
  g_huge.entries[pick] = g_huge.entries[--g_huge.count];
  g_huge.bytes -= e.map_size;
  return e;
}

// Makes the mapping [base, base + have) exactly `want` bytes with its user
// pointer aligned to `align`, moving its pages rather than copying or
// faulting them: in place when the kernel can, else to a new aligned
// reservation. Returns the new base, or nullptr (the mapping is untouched).
// The prefix's guards must be down (huge_protect_prefix) first.
char* reshape_mapping(char* base, size_t have, size_t want, size_t align) {
  bool aligned = (reinterpret_cast<uintptr_t>(base + huge_prefix()) & (align - 1)) == 0;
  if (aligned && os_remap_in_place(base, have, want)) return base;
  char* target = static_cast<char*>(os_map_aligned(want, align, huge_prefix()));
  if (target != nullptr && os_remap_to(base, have, target, want)) return target;
  if (target != nullptr) os_unmap(target, want);
  return nullptr;
}

// The mapping a huge block of `size` bytes needs, header page included, or 0
// when that overflows. A zero-byte request still gets a page: usable size 0
// would make the block indistinguishable from a freed one and break
// malloc_usable_size's ">= request, nonzero for a live block" answer.
size_t huge_map_size(size_t size) {
  size_t usable = round_up(size == 0 ? 1 : size, kOsPageSize);
  size_t map_size = usable + huge_prefix();
  return usable < size || map_size < usable ? 0 : map_size;
}

void* huge_alloc(size_t size, size_t align, bool* zeroed) {
  size_t map_size = huge_map_size(size);
  if (map_size == 0) return nullptr;
  size_t a = align > kSegmentSize ? align : kSegmentSize;
  HugeCacheEntry e;
  {
    LockGuard guard(g_huge.lock);
    expire_cache_locked(os_now_ms());
    e = cache_take_locked(map_size);
  }
  if (e.base != nullptr) {
    // A cached mapping's pages are resident: reusing them spares the faults
    // that made allocate/free loops of huge blocks slow. One up to 8 times
    // the request is handed out whole (trimming it would make the next,
    // larger request fault the tail in again); a larger one is cut to size,
    // a smaller one grown, both by moving pages, never by copying them.
    bool aligned = (reinterpret_cast<uintptr_t>(e.base + huge_prefix()) & (a - 1)) == 0;
    bool whole = aligned && e.map_size >= map_size && e.map_size / 8 <= map_size;
    size_t keep = whole ? e.map_size : map_size;
    if (!whole) huge_protect_prefix(e.base, false);  // the kernel moves a mapping of one protection
    char* base = whole ? e.base : reshape_mapping(e.base, e.map_size, keep, a);
    if (base != nullptr) {
      if (keep > e.map_size) g_counters.huge_mapped_bytes.add(keep - e.map_size);
      else g_counters.huge_mapped_bytes.sub(e.map_size - keep);
      *zeroed = hardened_clears_whole(e.map_size - huge_prefix());  // cleared when it was freed
      return huge_install(base, keep, whole);
    }
    os_unmap(e.base, e.map_size);  // the kernel would not reshape it: give it up
    g_counters.huge_mapped_bytes.sub(e.map_size);
  }
  char* base = static_cast<char*>(os_map_aligned(map_size, a, huge_prefix()));
  if (base == nullptr) return nullptr;
  g_counters.huge_mapped_bytes.add(map_size);
  *zeroed = true;
  return huge_install(base, map_size, false);
}

void huge_free(HugeHeader* h) {
  char* base = huge_base(h->user);
  size_t map_size = h->map_size;
  segmap_clear_huge(h->user);
  h->check = 0;  // a second free of the same pointer no longer matches
  h->user = nullptr;
  g_counters.huge_frees.add(1);
  g_counters.huge_live_bytes.sub(map_size - huge_prefix());
  // A cached mapping keeps its guards: most are reused whole (huge_alloc).
  if (g_config.decay_ms == 0 || map_size > kHugeCacheBytes) {  // not cached: its pages go at once
    g_counters.huge_mapped_bytes.sub(map_size);
    os_unmap(base, map_size);
    LockGuard guard(g_huge.lock);
    expire_cache_locked(os_now_ms());
    return;
  }
  // Hardened: the block's contents must not reach its next owner: cleared
  // here, the pages stay resident for that owner (handing them back instead
  // made every reuse fault them in again, several times the cost of
  // clearing). The cached block stays readable and writable: making it
  // PROT_NONE while cached, and writable again at reuse, took two mprotect
  // calls over every page of it, 50 times the cost of a 5-25 MB
  // allocate-write-free loop without them (huge-loop), and each page
  // faulted again at its first write.
  if (hardened_clears_whole(map_size - huge_prefix())) os_clear_resident(base + huge_prefix(), map_size - huge_prefix());
  LockGuard guard(g_huge.lock);
  uint64_t now = os_now_ms();
  expire_cache_locked(now);
  while (g_huge.count > 0 && (g_huge.count == kHugeCacheEntries || g_huge.bytes + map_size > kHugeCacheBytes)) {
    int oldest = 0;
    for (int i = 1; i < g_huge.count; ++i)
      if (g_huge.entries[i].freed_ms < g_huge.entries[oldest].freed_ms) oldest = i;
    unmap_cache_entry(oldest);
  }
  g_huge.entries[g_huge.count++] = HugeCacheEntry{base, map_size, now};
  g_huge.bytes += map_size;
}

// The units a span of `size` usable bytes takes, its guard page included
// (backend_span_guard_bytes).
uint32_t span_units(size_t size) {
  uint32_t units = static_cast<uint32_t>((size + backend_span_guard_bytes() + kUnitSize - 1) >> kUnitShift);
  return units == 0 ? 1 : units;
}

}  // namespace

static_assert((kParkMax >> kUnitShift) <= kUnitOffsetMask, "a span's units fit below its 64 KiB alignment");
namespace {
void* parked_span_start(uintptr_t word) { return reinterpret_cast<void*>(word & ~kUnitOffsetMask); }
}  // namespace

uintptr_t large_park(void* p) {
  const uint32_t units = span_park(p, static_cast<uint32_t>(kParkMax >> kUnitShift));
  if (units == 0) return 0;
  const uintptr_t word = reinterpret_cast<uintptr_t>(p) | units;
  HAK_CONTRACT(contracts::big_block_moved(p, contracts::Place::kUser, contracts::Place::kTls));
  return word;
}

void* large_unpark(uintptr_t word) {
  void* p = parked_span_start(word);
  span_unpark(p);
  HAK_CONTRACT(contracts::big_block_moved(p, contracts::Place::kTls, contracts::Place::kUser));
  return p;
}

void large_free_parked(uintptr_t word) {
  void* p = parked_span_start(word);
  span_unpark(p);
  HAK_CONTRACT(contracts::big_block_moved(p, contracts::Place::kTls, contracts::Place::kSlab));
  backend_free_run(span_at(p));
}

void* large_alloc(size_t size, size_t align, bool* zeroed) {
  if (align < kOsPageSize) align = kOsPageSize;
  const uint32_t units = span_units(size);  // with a guard, up to 33 units
  const uint32_t align_units = align > kUnitSize ? static_cast<uint32_t>(align >> kUnitShift) : 1;
  // A span starts at unit 1 at the earliest (unit 0 is the header's), and
  // at a multiple of its alignment: one that cannot end in its segment so
  // (2 MiB aligned and, with a guard page, 33 units) is a huge block.
  const uint32_t first_unit = align_units > 1 ? align_units : 1;
  if (size <= kLargeMax && align <= kLargeMax && first_unit + units <= kUnitsPerSegment) {
    Run* run = backend_alloc_run(units, align_units, RunKind::kLarge, 0, zeroed);
    if (run == nullptr) return nullptr;
    g_counters.large_allocs.add(1);
    g_counters.large_live_bytes.add(run->large_size);
    HAK_CONTRACT(contracts::big_block_moved(run_start(run), contracts::Place::kSlab, contracts::Place::kUser));
    return run_start(run);
  }
  void* p = huge_alloc(size, align, zeroed);
  if (p != nullptr) HAK_CONTRACT(contracts::big_block_moved(p, contracts::Place::kSlab, contracts::Place::kUser));
  return p;
}

bool large_free(void* p) {
  if (Run* run = span_at(p)) {
    HAK_CONTRACT(contracts::big_block_moved(p, contracts::Place::kUser, contracts::Place::kSlab));
    g_counters.large_frees.add(1);
    g_counters.large_live_bytes.sub(run->large_size);
    // Hardened: the span's contents must not reach its next owner. Cleared
    // here, its pages stay resident for that owner (a purge would make it
    // fault every page in again: spans are reused often).
    if (hardened_clears_whole(run->large_size)) memset(p, 0, run->large_size);
    backend_free_run(run);  // its guard stays up (backend_span_guard_bytes)
    return true;
  }
  if (HugeHeader* h = huge_lookup(p)) {
    HAK_CONTRACT(contracts::big_block_moved(p, contracts::Place::kUser, contracts::Place::kSlab));
    huge_free(h);
    return true;
  }
  return false;
}

size_t large_usable_size(const void* p) {
  if (Run* run = span_at(p)) return run->large_size;
  if (HugeHeader* h = huge_lookup(p)) return h->map_size - huge_prefix();
  return 0;
}

bool large_resize_in_place(void* p, size_t new_size) {
  if (new_size == 0 || new_size > kLargeMax) return false;
  Run* run = span_at(p);
  if (run == nullptr) return false;
  size_t old_size = run->large_size;
  uint32_t units = span_units(new_size);
  if (!backend_resize_run(run, units)) return false;
  size_t now = run->large_size;
  if (now > old_size) g_counters.large_live_bytes.add(now - old_size);
  else g_counters.large_live_bytes.sub(old_size - now);
  return true;
}

void* huge_resize(void* p, size_t new_size) {
  HugeHeader* h = huge_lookup(p);
  if (h == nullptr) return nullptr;
  size_t map_size = huge_map_size(new_size);
  if (map_size == 0) return nullptr;
  char* base = huge_base(p);
  size_t old_size = h->map_size;
  if (map_size == old_size) return p;
  huge_protect_prefix(base, false);
  char* moved = reshape_mapping(base, old_size, map_size, kSegmentSize);
  if (moved == nullptr) {  // p stays as it was
    huge_protect_prefix(base, true);
    return nullptr;
  }
  if (moved != base) {
    segmap_clear_huge(p);
    h = huge_header(moved + huge_prefix());
    h->user = moved + huge_prefix();
    segmap_mark_huge(h->user);
  }
  h->map_size = map_size;
  h->check = huge_check(h->user, map_size);
  huge_protect_prefix(moved, true);
  if (h->user != p) {
    HAK_CONTRACT(contracts::big_block_moved(p, contracts::Place::kUser, contracts::Place::kSlab));
    HAK_CONTRACT(contracts::big_block_moved(h->user, contracts::Place::kSlab, contracts::Place::kUser));
  }
  if (map_size > old_size) {
    g_counters.huge_live_bytes.add(map_size - old_size);
    g_counters.huge_mapped_bytes.add(map_size - old_size);
  } else {
    g_counters.huge_live_bytes.sub(old_size - map_size);
    g_counters.huge_mapped_bytes.sub(old_size - map_size);
  }
  return h->user;
}

void huge_cache_decay() {
  if (!g_huge.lock.try_lock()) return;
  expire_cache_locked(os_now_ms());
  g_huge.lock.unlock();
}

void huge_cache_trim() {
  LockGuard guard(g_huge.lock);
  while (g_huge.count > 0) unmap_cache_entry(g_huge.count - 1);
}

uint64_t huge_cached_bytes() {
  LockGuard guard(g_huge.lock);
  return g_huge.bytes;
}

void large_fork_prepare() { g_huge.lock.lock(); }
void large_fork_parent() { g_huge.lock.unlock(); }
void large_fork_child() { g_huge.lock.reinit_in_child(); }

}  // namespace hakmem
