// The allocator's entry points. The two hot paths, hak_malloc and hak_free,
// are at the top of this file; everything below them is slow path.
#include "front/front.h"

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <atomic>

#if defined(HAKMEM_HARDENED)
#include <emmintrin.h>
#endif

#include "ace/ace.h"
#include "central/central.h"
#include "contracts/contracts.h"
#include "large/large.h"
#include "os/os.h"
#include "refill/refill.h"
#include "size_class/size_class.h"
#include "slab/slab.h"
#include "stats/stats.h"
#include "tls_cache/tls_cache.h"

using namespace hakmem;

namespace {

HAK_NOINLINE void* small_alloc_slow(size_t bin_offset);
HAK_NOINLINE void hardened_check_class_slow(void* block, int cls);
HAK_NOINLINE void hardened_free(void* p, uint16_t bin_offset);
// Hardened: whether `info`, the entry of the unit holding `addr`, says a
// block of class `cls` starts there.
HAK_INLINE bool entry_holds_block_of_class(const UnitEntry& info, uintptr_t addr, int cls) {
  return info.tag == slab_tag(cls) && entry_is_block_start(info, addr);
}
// Hardened: `block` is the next one a list of class `cls` hands out. It must
// be a block of that class, which a link forged without the keys could not
// make sure of; that it is free (its link sealed) is checked where its link
// is read, and a link damaged by a write after free fails there. A block in
// the arena is checked inline (a call for every allocation cost more than
// the check); others, and the fault, out of line.
HAK_INLINE void hardened_check_class(void* block, int cls) {
  const uintptr_t addr = reinterpret_cast<uintptr_t>(block);
  const UnitEntry* info;
  if (HAK_LIKELY(arena_unit_entry(addr, info) && entry_holds_block_of_class(*info, addr, cls))) return;
  hardened_check_class_slow(block, cls);
}
// Hardened: a block of class `cls` leaves the free lists for the program's
// hands: neither its encoded link nor its seal goes with it, and its canary
// (if on) goes in.
HAK_INLINE void hardened_hand_out(void* block, int cls) {
  block_unseal(block);
  if (canary_bytes() != 0) *block_canary_slot(block, class_size(cls)) = block_canary(block);
}
int slab_class_of(const void* p);
HAK_NOINLINE void* big_alloc(size_t size, size_t align, bool zero);
HAK_NOINLINE void free_slow(void* p);
HAK_NOINLINE void free_flush(void* just_freed);
void report_channel_open();        // HAKMEM_STATS: where the exit report goes
void report_channel_fork_child();

}  // namespace

// ---------------------------------------------------------------- hot path

// `bin_offset`: the bin's place in the thread cache (tls_bin_offset_*).
HAK_INLINE void* alloc_from_bin(size_t bin_offset) {
  TlsBin& bin = tls_bin_at_offset(bin_offset);
  // Hardened: the block must be one of this class before its link is read
  // (the read checks its seal: that it is free).
  if (kHardened && bin.head != nullptr) hardened_check_class(bin.head, static_cast<int>(tls_bin_offset_class(bin_offset)));
  void* block = tls_cache_pop(bin);  // this thread's list: no lock, no atomic
  if (HAK_UNLIKELY(block == nullptr)) return small_alloc_slow(bin_offset);  // empty list: refill a batch
  if (kHardened) hardened_hand_out(block, static_cast<int>(tls_bin_offset_class(bin_offset)));
  HAK_CONTRACT(contracts::block_moved(block, contracts::Place::kTls, contracts::Place::kUser));
  annotate_alloc(block, class_size(static_cast<int>(tls_bin_offset_class(bin_offset))), false);  // compiled away in release
  return block;
}

extern "C" void* hak_malloc(size_t size) {
  // Hardened: room for the canary after the program's bytes (spans and huge
  // blocks end in guard pages instead).
  if (kHardened && size <= kSlabMax) size += canary_bytes();
  // One compare for the tiny range, the common case; one table load gives
  // the bin straight from the size, without division or class arithmetic.
  if (HAK_LIKELY(size <= kTinyMax)) return alloc_from_bin(tls_bin_offset_tiny(size));
  if (HAK_LIKELY(size <= kSlabMax)) return alloc_from_bin(tls_bin_offset_mid(size));
  return big_alloc(size, 0, false);
}

// p is a slab block that hakmem handed out (entry_is_block_start said so),
// and `info` its unit's entry: onto this thread's list of its class.
HAK_INLINE void free_to_thread_cache(void* p, const UnitEntry& info) {
  if (kHardened) return hardened_free(p, info.bin_offset);  // checks, clears, quarantines
  HAK_CONTRACT(contracts::block_moved(p, contracts::Place::kUser, contracts::Place::kTls));
  annotate_free(p, class_size(static_cast<int>(tag_class(info.tag))));  // compiled away in release
  // Over capacity, or time to poll the decay: the slow path finds the class
  // again from p, so that this path keeps no register alive across the push.
  if (HAK_UNLIKELY(!tls_cache_push(tls_bin_by_offset(info.bin_offset), p))) free_flush(p);
}

extern "C" void hak_free(void* p) {
  uintptr_t addr = reinterpret_cast<uintptr_t>(p);
  // The unit's entry (DESIGN.md §3), if p lies in the segment arena. NULL,
  // foreign pointers, huge blocks and segments outside the arena all leave
  // through free_slow.
  const UnitEntry* info;
  if (HAK_UNLIKELY(!arena_unit_entry(addr, info))) return free_slow(p);
  // A slab block handed out once? Large spans, free units, unused arena,
  // interior pointers and blocks past the carve line all leave here.
  if (HAK_UNLIKELY(!entry_is_block_start(*info, addr))) return free_slow(p);
  free_to_thread_cache(p, *info);
}

// ---------------------------------------------------------------- init

namespace {

std::atomic<int> g_init_state{0};  // 0: not started, 1: running, 2: done
// The purge thread (purge_thread_maybe_start): 0 none, 1 starting or
// running, 2 paused (mallctl), 3 could not be started. Reset in a forked
// child, which has no such thread.
std::atomic<int> g_purge_thread{0};
std::atomic<bool> g_purge_thread_asked{false};  // mallctl("background_thread", true)

void fork_prepare() {
  thread_registry_fork_prepare();
  central_lock_all();
  backend_fork_prepare();
  large_fork_prepare();
}
void fork_parent() {
  large_fork_parent();
  backend_fork_parent();
  central_unlock_all();
  thread_registry_fork_parent();
}
void fork_child() {
  report_channel_fork_child();
  g_purge_thread.store(0, std::memory_order_relaxed);  // not in the child: started again when wanted
  mallctl_fork_child();
  ace_fork_child();
  large_fork_child();
  backend_fork_child();
  central_fork_child();
  thread_registry_fork_child();
}

HAK_COLD void init_slow() {
  int expected = 0;
  if (g_init_state.compare_exchange_strong(expected, 1, std::memory_order_acq_rel)) {
    config_init();
    report_channel_open();
    secrets_init();
    uint16_t bin_offsets[kNumClasses];
    for (int c = 0; c < kNumClasses; ++c) bin_offsets[c] = static_cast<uint16_t>(tls_bin_offset_of_class(c));
    backend_init(g_config.arena_max_mib << 20, bin_offsets);
    refill_init();
    // Written once, trusted from now on: read-only for good.
    os_seal(&g_config, sizeof g_config);
    os_seal(&g_secrets, sizeof g_secrets);
    backend_seal();
    g_init_state.store(2, std::memory_order_release);
    // After the state says done: pthread_atfork may allocate, and that
    // allocation must not come back here.
    pthread_atfork(fork_prepare, fork_parent, fork_child);
    return;
  }
  while (g_init_state.load(std::memory_order_acquire) != 2) {
  }
}

void count_bad_free(void* p, bool ours) {
  const char* why = ours ? "not a live block (interior, freed or damaged pointer)"
                         : "pointer not allocated by hakmem (or a huge block freed already)";
  if (kHardened) fatal("hakmem: free(%p): %s; aborting", p, why);
  HAK_CONTRACT(contracts::fire('C', ours ? "free of an interior or damaged pointer: not a block hakmem handed out"
                                          : "free of a pointer hakmem never handed out", p));
  if (ours) g_counters.invalid_frees.add(1); else g_counters.foreign_frees.add(1);
  if (g_config.verbose) diag("hakmem: free(%p): %s; ignored", p, why);
}

bool in_our_memory(const void* p) { return segmap_kind(p) != kSlotForeign; }

// Memory goes back to the OS on a clock (HAKMEM_DECAY_MS). Every slow path,
// and every kFreesPerPoll-th free of a class (tls_cache_push), polls; at
// most one thread at a time does the work, and each box's part only
// try-locks, so a poll never waits on a busy lock.
//
// A process that frees and then makes no call at all would never poll: the
// purge thread polls for it (below), every quarter decay. It starts once
// the process has a second thread (HAKMEM_BACKGROUND unset), from the first
// allocation (HAKMEM_BACKGROUND=1, or jemalloc's "background_thread" set
// through mallctl), or never (HAKMEM_BACKGROUND=0). Never in a process that
// has only ever had one thread and has not asked: a thread of hakmem's own
// would make it multi-threaded behind its back (unshare(CLONE_NEWUSER)
// refuses such a process, and fork gets harder), and a single-threaded
// program that goes idle has usually finished.
std::atomic<uint64_t> g_next_decay_ms{0};

void decay_poll() {
  uint64_t now = os_now_ms();
  uint64_t due = g_next_decay_ms.load(std::memory_order_relaxed);
  if (HAK_LIKELY(now < due)) return;
  // Pooled blocks return to their slabs after one to two periods, empty
  // slabs and spans to the OS after the full decay: a quarter of it here
  // keeps the whole trip within about 1.5 decays.
  uint64_t period = g_config.decay_ms / 4 + 1;
  if (!g_next_decay_ms.compare_exchange_strong(due, now + period, std::memory_order_relaxed)) return;
  central_decay();
  backend_decay();
  huge_cache_decay();
}

void* purge_thread_main(void*) {
  // It never allocates (nothing here reaches malloc): it has no thread
  // cache and never joins the registry. Paused (mallctl's
  // "background_thread" set false), it only sleeps.
  for (;;) {
    const uint64_t ms = g_config.decay_ms / 4 + 1;
    struct timespec t = {static_cast<time_t>(ms / 1000), static_cast<long>(ms % 1000) * 1000000L};
    while (nanosleep(&t, &t) != 0) {
    }
    if (g_purge_thread.load(std::memory_order_relaxed) == 1) decay_poll();
  }
  return nullptr;
}

// Called from the allocation slow paths, with no lock held: starts the purge
// thread when it is wanted and not running. pthread_create may allocate (its
// thread's TLS); that allocation finds the thread starting already.
void purge_thread_maybe_start() {
  if (HAK_LIKELY(g_purge_thread.load(std::memory_order_relaxed) != 0)) return;
  // HAKMEM_BACKGROUND=0 wins over the program's own request (mallctl).
  const bool wanted = g_config.background == 1 ||
                      (g_config.background < 0 &&
                       (g_purge_thread_asked.load(std::memory_order_relaxed) || thread_registry_ever() >= 2));
  if (!wanted) return;
  int expected = 0;
  if (!g_purge_thread.compare_exchange_strong(expected, 1, std::memory_order_relaxed)) return;
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  pthread_attr_setstacksize(&attr, 256 << 10);
  // Every signal blocked: the program's signals go to its own threads.
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  pthread_t thread;
  const int err = pthread_create(&thread, &attr, purge_thread_main, nullptr);
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  pthread_attr_destroy(&attr);
  if (err != 0) {
    if (g_config.verbose) diag("hakmem: could not start the purge thread (error %d)", err);
    g_purge_thread.store(3, std::memory_order_relaxed);  // no retry on every slow path; the polls still run
    return;
  }
  pthread_setname_np(thread, "hakmem-purge");
}

}  // namespace

void hakmem::front_purge_thread_request(bool on) {
  if (on) {
    g_purge_thread_asked.store(true, std::memory_order_relaxed);
    int paused = 2;
    g_purge_thread.compare_exchange_strong(paused, 1, std::memory_order_relaxed);
    purge_thread_maybe_start();
  } else {
    g_purge_thread_asked.store(false, std::memory_order_relaxed);
    int running = 1;
    g_purge_thread.compare_exchange_strong(running, 2, std::memory_order_relaxed);  // 2: paused
  }
}
bool hakmem::front_purge_thread_running() { return g_purge_thread.load(std::memory_order_relaxed) == 1; }

namespace {

void* small_alloc_slow(size_t bin_offset) {
  const int cls = static_cast<int>(tls_bin_offset_class(bin_offset));
  front_ensure_init();
  decay_poll();
  void* p = refill_alloc(cls);
  if (p == nullptr) {
    errno = ENOMEM;
    return nullptr;
  }
  purge_thread_maybe_start();
  if (kHardened) {
    hardened_check_class(p, cls);  // its seal was checked when its link was read
    hardened_hand_out(p, cls);
  }
  annotate_alloc(p, class_size(cls), false);
  return p;
}

// The class whose bin a unit entry's bin offset leads to (tls_bin_by_offset)
// for block p. A spare bin has no class: only a forged entry leads there.
int bin_class(uint16_t bin_offset, const void* p) {
  const int cls = static_cast<int>(tls_bin_slot(bin_offset));
  if (HAK_UNLIKELY(cls >= kNumClasses)) fatal("hakmem: free(%p): the block's metadata is damaged; aborting", p);
  return cls;
}

// hardened_check_class's other cases: a segment outside the arena, or the fault.
void hardened_check_class_slow(void* block, int cls) {
  const UnitEntry* info = unit_entry_of(block);
  if (HAK_UNLIKELY(info == nullptr || !entry_holds_block_of_class(*info, reinterpret_cast<uintptr_t>(block), cls)))
    fatal("hakmem: malloc: the free list of %zu-byte blocks is damaged at %p (a write after free?); aborting",
          class_size(cls), block);
}

#if defined(HAKMEM_HARDENED)
// Hardened zero-on-free: every byte of a freed block past its two link
// words (which the seal overwrites) is cleared. When the block leaves the
// quarantine the rest of its first cache line is checked still clear: a
// write after free most often lands in an object's first fields (a
// reference count, a vtable or list pointer), and checking the whole block
// again would double the cost of zeroing, per byte freed. Blocks are
// multiples of 16 bytes.
constexpr size_t kCheckedAfterFree = 64;
// Blocks of 16 KiB and more: their whole pages are cleared only where
// resident (os_clear_resident). A page the program never touched reads as
// zero already; clearing it would fault it in, and a server that takes
// 32 KiB buffers and fills a few hundred bytes of each would hold them all.
constexpr size_t kClearResidentFrom = 16 << 10;
HAK_NOINLINE void block_clear_after_link_long(void* block, size_t size) {
  char* from = static_cast<char*>(block) + 16;
  char* end = static_cast<char*>(block) + size;
  if (size < kClearResidentFrom) return (void)memset(from, 0, size - 16);
  char* first_page = reinterpret_cast<char*>((reinterpret_cast<uintptr_t>(from) + kOsPageSize - 1) & ~(kOsPageSize - 1));
  char* last_page = reinterpret_cast<char*>(reinterpret_cast<uintptr_t>(end) & ~(kOsPageSize - 1));
  memset(from, 0, static_cast<size_t>(first_page - from));
  os_clear_resident(first_page, static_cast<size_t>(last_page - first_page));
  memset(last_page, 0, static_cast<size_t>(end - last_page));
}
HAK_INLINE void block_clear_after_link(void* block, size_t size) {
  if (size > 128) return block_clear_after_link_long(block, size);
  // Small blocks: a few stores, no call. Written out, since a loop became
  // `rep stos`, whose start-up costs more than clearing 112 bytes.
  __m128i* v = static_cast<__m128i*>(block);
  const __m128i zero = _mm_setzero_si128();
  switch (size / 16) {
    case 8: _mm_store_si128(v + 7, zero); [[fallthrough]];
    case 7: _mm_store_si128(v + 6, zero); [[fallthrough]];
    case 6: _mm_store_si128(v + 5, zero); [[fallthrough]];
    case 5: _mm_store_si128(v + 4, zero); [[fallthrough]];
    case 4: _mm_store_si128(v + 3, zero); [[fallthrough]];
    case 3: _mm_store_si128(v + 2, zero); [[fallthrough]];
    case 2: _mm_store_si128(v + 1, zero); [[fallthrough]];
    default: break;  // 16 bytes: the link words only
  }
}
bool block_still_clear_after_link(const void* block, size_t size) {
  const __m128i* v = static_cast<const __m128i*>(block);
  const size_t end = (size < kCheckedAfterFree ? size : kCheckedAfterFree) / 16;
  __m128i any = _mm_setzero_si128();
  for (size_t i = 1; i < end; ++i) any = _mm_or_si128(any, _mm_load_si128(v + i));
  return _mm_movemask_epi8(_mm_cmpeq_epi8(any, _mm_setzero_si128())) == 0xffff;
}
#endif

// Hardened: free of a block that hakmem handed out (the block test said so).
// A block whose link is sealed is free already: a double free, wherever the
// block went since (another thread, the central pool, its slab, the
// quarantine). Otherwise the block is cleared (its old contents must not
// reach its next owner), sealed, and waits in the quarantine; the block
// that leaves the quarantine goes to the bin.
void hardened_free(void* p, uint16_t bin_offset) {
  if (HAK_UNLIKELY(block_is_free(p))) fatal("hakmem: free(%p): double free; aborting", p);
  const int cls = bin_class(bin_offset, p);
#if defined(HAKMEM_HARDENED)
  const size_t size = class_size(cls);
  if (canary_bytes() != 0 && HAK_UNLIKELY(*block_canary_slot(p, size) != block_canary(p)))
    fatal("hakmem: free(%p): the %zu bytes after the block's %zu usable ones were overwritten (a heap overflow); aborting",
          p, kCanaryBytes, size - kCanaryBytes);
  // Before the checker poisons it. A block above HAKMEM_HARDENED_ZERO_MAX
  // keeps all but its first 64 bytes (which the quarantine checks).
  if (g_config.zero_on_free) block_clear_after_link(p, size <= g_config.zero_whole_max ? size : kCheckedAfterFree);
  annotate_free(p, size);
  if (g_config.quarantine && !t_cache.exited) {
    block_mark_quarantined(p);
    p = tls_quarantine_swap(cls, p);
    if (p == nullptr) return;
    // The block leaving has waited, marked (and cleared): a write after
    // free in the meantime broke its mark (or left bytes behind).
    if (HAK_UNLIKELY(!block_is_quarantined(p) || (g_config.zero_on_free && !block_still_clear_after_link(p, size))))
      fatal("hakmem: free: the block at %p was written after it was freed; aborting", p);
  }
#endif
  if (HAK_UNLIKELY(!tls_cache_push(tls_bin(static_cast<size_t>(cls)), p))) free_flush(p);
}

// A push returned false: over capacity, or the bin's free tick ran out (or both).
void free_flush(void* just_freed) {
  front_ensure_init();
  // The bin the push used, found as the push found it.
  const int cls = bin_class(unit_entry_of(just_freed)->bin_offset, just_freed);
  if (tls_cache_over_capacity(cls)) refill_flush(cls);
  if (tls_cache_take_poll(cls)) decay_poll();
}

void* big_alloc(size_t size, size_t align, bool zero) {
  front_ensure_init();
  decay_poll();
  if (size > PTRDIFF_MAX) {  // glibc's limit: no object may exceed it
    errno = ENOMEM;
    return nullptr;
  }
  purge_thread_maybe_start();
  bool zeroed = false;
  void* p = large_alloc(size, align, &zeroed);
  if (p == nullptr) {
    errno = ENOMEM;
    return nullptr;
  }
  annotate_alloc(p, large_usable_size(p), zeroed);
  if (zero && !zeroed) memset(p, 0, size);
  return p;
}

void free_slow(void* p) {
  if (p == nullptr) return;
  // A slab block of a segment outside the arena: the same test as hak_free,
  // after the segment map said the segment is ours.
  if (const UnitEntry* info = unit_entry_lookup(p))
    if (entry_is_block_start(*info, reinterpret_cast<uintptr_t>(p))) return free_to_thread_cache(p, *info);
  if (kMemoryChecker) {  // tell the checker before the block goes (a second lookup: not in release)
    if (size_t big = large_usable_size(p)) {
      annotate_free(p, big);
      annotate_returned(p, big);  // spans and mappings are no blocks of the user's any more
    }
  }
  if (large_free(p)) {
    decay_poll();
    return;
  }
  count_bad_free(p, in_our_memory(p));
}

// The class of p if p is the start of a slab block, else -1.
int slab_class_of(const void* p) {
  const UnitEntry* info = unit_entry_lookup(p);
  if (info == nullptr || !entry_is_block_start(*info, reinterpret_cast<uintptr_t>(p))) return -1;  // as in hak_free
  return static_cast<int>(tag_class(info->tag));
}

// Allocation with an alignment (a power of two) and optional zeroing.
void* alloc_aligned(size_t align, size_t size, bool zero) {
  void* p;
  if (align <= 16 && size <= kSlabMax) {
    // Every class above 8 B is 16-aligned; the 8 B class is 8-aligned.
    if (align == 16 && size < 16) size = 16;
    p = hak_malloc(size);
    if (p != nullptr && zero) memset(p, 0, size);
    return p;
  }
  int cls = size_to_aligned_class(kHardened && size <= kSlabMax ? size + canary_bytes() : size, align);
  if (cls >= 0) {
    p = alloc_from_bin(tls_bin_offset_of_class(cls));
    if (p != nullptr && zero) memset(p, 0, size);
    return p;
  }
  return big_alloc(size, align, zero);
}

bool is_power_of_two(size_t x) { return x != 0 && (x & (x - 1)) == 0; }

// What realloc asks for when it must move a block of `old` usable bytes to
// hold `size`: growth by less than a quarter takes a quarter more than the
// old block (proptest/heap_model.h states the same rule).
size_t realloc_growth_request(size_t old, size_t size) {
  if (size > old && size - old < old / 4) return old + old / 4;
  return size;
}

__attribute__((no_sanitize("thread")))  // live threads' counters: a benign, documented race
void add_thread_counters(const ThreadCache* tc, void* arg) {
  hak_stats* out = static_cast<hak_stats*>(arg);
  for (int c = 0; c < kNumClasses; ++c) {
    const ClassCounters k = tls_cache_counts(*tc, c);
    out->classes[c].allocs += k.allocs;
    out->classes[c].frees += k.frees;
    out->classes[c].tls_misses += k.misses;
    out->classes[c].refills += k.refills;
    out->classes[c].flushes += k.flushes;
  }
}

void add_totals(void* arg) { stats_add_totals(static_cast<hak_stats*>(arg)); }

// The exit report (HAKMEM_STATS=1) goes to a copy of stderr taken when the
// process started: ls, sort and cat close their stderr before exit, and
// the report came after that and said nothing. The copy is checked to be
// the same open file still (a program may have closed it and opened
// something else under its number, which must not get the report), and a
// forked child, which has its own stderr, drops it. HAKMEM_STATS_FILE
// sends the report to a file instead, %p in its name standing for the pid.
int g_report_fd = -1;
dev_t g_report_dev;
ino_t g_report_ino;

void report_channel_open() {
  if (!g_config.stats_at_exit || g_config.stats_file[0] != '\0') return;
  int fd = fcntl(2, F_DUPFD_CLOEXEC, 200);  // out of the way of the program's own low numbers
  if (fd < 0) fd = fcntl(2, F_DUPFD_CLOEXEC, 3);
  struct stat st;
  if (fd < 0) return;
  if (fstat(fd, &st) != 0) return (void)close(fd);
  g_report_fd = fd;
  g_report_dev = st.st_dev;
  g_report_ino = st.st_ino;
}

void report_channel_fork_child() {
  if (g_report_fd >= 0) close(g_report_fd);  // the child reports to its own stderr
  g_report_fd = -1;
}

// The report's descriptor: the file, the copy of stderr if still the same
// file, or stderr. *opened: the caller closes it.
int report_fd(bool* opened) {
  *opened = false;
  if (g_config.stats_file[0] != '\0') {
    char path[sizeof g_config.stats_file + 16];
    size_t n = 0;
    for (const char* c = g_config.stats_file; *c != '\0' && n + 12 < sizeof path; ++c) {
      if (c[0] == '%' && c[1] == 'p') {
        n += static_cast<size_t>(snprintf(path + n, sizeof path - n, "%d", static_cast<int>(getpid())));
        ++c;
      } else {
        path[n++] = *c;
      }
    }
    path[n] = '\0';
    const int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd >= 0) {
      *opened = true;
      return fd;
    }
    diag("hakmem: cannot write the statistics report to %s (errno %d); it goes to stderr", path, errno);
    return 2;
  }
  struct stat st;
  if (g_report_fd >= 0 && fstat(g_report_fd, &st) == 0 && st.st_dev == g_report_dev && st.st_ino == g_report_ino)
    return g_report_fd;
  return 2;
}

__attribute__((destructor)) void report_at_exit() {
  if (!g_config.stats_at_exit) return;
  if (g_config.stats_pid != 0 && g_config.stats_pid != static_cast<uint32_t>(getpid())) return;
  hak_stats s;
  hak_stats_get(&s);
  bool opened = false;
  const int fd = report_fd(&opened);
  stats_write_report(s, fd);
  if (opened) close(fd);
}

}  // namespace

void hakmem::front_ensure_init() {
  if (HAK_LIKELY(g_init_state.load(std::memory_order_acquire) == 2)) return;
  init_slow();
}

// ---------------------------------------------------------------- the rest of the API

extern "C" void* hak_calloc(size_t count, size_t size) {
  size_t total;
  if (__builtin_mul_overflow(count, size, &total)) {
    errno = ENOMEM;
    return nullptr;
  }
  if (total <= kSlabMax) {
    void* p = hak_malloc(total);
    if (p != nullptr) memset(p, 0, total);
    return p;
  }
  return big_alloc(total, 0, true);
}

namespace {

// The usable size of a block hakmem handed out, 0 for any other pointer.
// Hardened: a slab block that is free (its link sealed) is no live block:
// `who` (the entry point) stops the program instead of acting on it.
size_t live_usable_size(const void* p, const char* who) {
  if (p == nullptr) return 0;
  int cls = slab_class_of(p);
  if (cls >= 0) {
    if (kHardened && HAK_UNLIKELY(block_is_free(p)))
      fatal("hakmem: %s(%p): the block was freed already (use after free); aborting", who, p);
    return class_size(cls) - canary_bytes();
  }
  return large_usable_size(p);  // freed spans and huge blocks are no blocks at all: 0
}

}  // namespace

extern "C" size_t hak_malloc_usable_size(const void* p) { return live_usable_size(p, "malloc_usable_size"); }

extern "C" void* hak_realloc(void* p, size_t size) {
  if (p == nullptr) return hak_malloc(size);
  if (size == 0) {  // glibc: realloc(p, 0) frees p and returns NULL
    hak_free(p);
    return nullptr;
  }
  size_t old = live_usable_size(p, "realloc");
  if (old == 0) {
    // Not a block of ours: we cannot know how much to copy. Fail like an
    // exhausted heap would, leaving p untouched (the caller still owns it).
    count_bad_free(p, in_our_memory(p));
    errno = ENOMEM;
    return nullptr;
  }
  if (size <= old && size >= old / 2) return p;  // fits, and not wastefully
  // A large span stays where it is if the units after it are free (or gives
  // its tail back): no copy, which is what realloc growth of a big buffer
  // otherwise costs on every step.
  if (old > kSlabMax && size > kSlabMax && size <= kLargeMax && large_resize_in_place(p, size)) {
    annotate_resize(p, old, large_usable_size(p));
    return p;
  }
  if (old > kLargeMax && size > kLargeMax) {     // huge to huge: move pages, not bytes
    if (void* q = huge_resize(p, size)) {
      annotate_free(p, old);
      annotate_returned(p, old);
      annotate_alloc(q, large_usable_size(q), false);
      return q;
    }
  }
  // A block that grows a little is likely to grow again (a string or vector
  // appended to): take a quarter more than the old block, so that a run of
  // small growths copies once per quarter, not once per size class.
  size_t want = realloc_growth_request(old, size);
  void* q = hak_malloc(want);
  if (q == nullptr && want != size) q = hak_malloc(size);
  if (q == nullptr) return nullptr;  // errno set; p stays valid
  memcpy(q, p, size < old ? size : old);
  hak_free(p);
  return q;
}

extern "C" void* hak_reallocarray(void* p, size_t count, size_t size) {
  size_t total;
  if (__builtin_mul_overflow(count, size, &total)) {
    errno = ENOMEM;
    return nullptr;
  }
  return hak_realloc(p, total);
}

extern "C" int hak_posix_memalign(void** out, size_t align, size_t size) {
  if (!is_power_of_two(align) || align % sizeof(void*) != 0) return EINVAL;
  int saved = errno;
  void* p = alloc_aligned(align, size, false);
  if (p == nullptr) return ENOMEM;  // posix_memalign reports through its result, not errno
  errno = saved;
  *out = p;
  return 0;
}

extern "C" void* hak_aligned_alloc(size_t align, size_t size) {
  if (!is_power_of_two(align)) {  // C17 and glibc >= 2.38
    errno = EINVAL;
    return nullptr;
  }
  return alloc_aligned(align, size, false);
}

extern "C" void* hak_memalign(size_t align, size_t size) {
  if (align > (SIZE_MAX >> 1) + 1) {
    errno = EINVAL;
    return nullptr;
  }
  if (align == 0) align = 1;
  if (!is_power_of_two(align)) align = size_t{1} << (64 - __builtin_clzll(align));  // glibc rounds up
  return alloc_aligned(align, size, false);
}

extern "C" void* hak_valloc(size_t size) { return alloc_aligned(kOsPageSize, size, false); }

extern "C" void* hak_pvalloc(size_t size) {
  size_t rounded = (size + kOsPageSize - 1) & ~(kOsPageSize - 1);
  if (rounded < size) {
    errno = ENOMEM;
    return nullptr;
  }
  return alloc_aligned(kOsPageSize, rounded == 0 ? kOsPageSize : rounded, false);
}

extern "C" void hak_free_sized(void* p, size_t) { hak_free(p); }

extern "C" int hak_owns(const void* p) {
  if (p == nullptr) return 0;
  return slab_class_of(p) >= 0 || large_usable_size(p) != 0;
}

extern "C" void hak_stats_get(hak_stats* out) {
  *out = hak_stats{};
  thread_registry_each(add_thread_counters, add_totals, out);
  BackendStats b;
  backend_stats(&b);
  uint64_t in_use = 0;
  for (int c = 0; c < kNumClasses; ++c) {
    hak_class_stats& k = out->classes[c];
    k.slabs = b.slabs[c];
    if (k.allocs > k.frees) in_use += (k.allocs - k.frees) * k.block_size;
  }
  out->segments = b.segments;
  out->arena_base = b.arena_base;
  out->arena_bytes = b.arena_bytes;
  out->segments_outside_arena = b.segments_outside_arena;
  out->huge_cached_bytes = huge_cached_bytes();
  out->bytes_mapped = b.bytes_mapped + g_counters.huge_mapped_bytes.get();
  out->bytes_in_use = in_use + out->large_live_bytes + out->huge_live_bytes;
  out->bytes_dirty = b.bytes_dirty + out->huge_cached_bytes;
  out->bytes_returned = b.bytes_returned;
  out->rss_bytes = os_rss_bytes();
  out->peak_rss_bytes = os_peak_rss_bytes();
  // The kernel samples the peak; never report it below the current figure.
  if (out->peak_rss_bytes < out->rss_bytes) out->peak_rss_bytes = out->rss_bytes;
}

extern "C" void hak_stats_print(FILE* out) {
  hak_stats s;
  hak_stats_get(&s);
  if (out != nullptr) fflush(out);
  stats_write_report(s, out != nullptr ? fileno(out) : 2);
}

extern "C" void hak_trim(void) {
  front_ensure_init();
  refill_flush_all();
  for (int c = 0; c < kNumClasses; ++c) central_drain(c);
  huge_cache_trim();
  backend_purge(true);
}

extern "C" int hak_check_heap(void) {
  central_lock_all();  // slab counts move only under the class locks
  int faults = backend_check_integrity();
  central_unlock_all();
  return faults;
}

// ---------------------------------------------------------------- drop-in symbols

#ifdef HAKMEM_OVERRIDE
#define HAK_ALIAS(name) __attribute__((alias(#name), used, visibility("default")))
extern "C" {
void* malloc(size_t) HAK_ALIAS(hak_malloc);
void free(void*) HAK_ALIAS(hak_free);
void* calloc(size_t, size_t) HAK_ALIAS(hak_calloc);
void* realloc(void*, size_t) HAK_ALIAS(hak_realloc);
void* reallocarray(void*, size_t, size_t) HAK_ALIAS(hak_reallocarray);
int posix_memalign(void**, size_t, size_t) HAK_ALIAS(hak_posix_memalign);
void* aligned_alloc(size_t, size_t) HAK_ALIAS(hak_aligned_alloc);
void* memalign(size_t, size_t) HAK_ALIAS(hak_memalign);
void* valloc(size_t) HAK_ALIAS(hak_valloc);
void* pvalloc(size_t) HAK_ALIAS(hak_pvalloc);
size_t malloc_usable_size(void*) HAK_ALIAS(hak_malloc_usable_size);
void cfree(void*) HAK_ALIAS(hak_free);
// glibc's internal names, which some programs and libraries call directly.
void* __libc_malloc(size_t) HAK_ALIAS(hak_malloc);
void __libc_free(void*) HAK_ALIAS(hak_free);
void* __libc_calloc(size_t, size_t) HAK_ALIAS(hak_calloc);
void* __libc_realloc(void*, size_t) HAK_ALIAS(hak_realloc);
void* __libc_memalign(size_t, size_t) HAK_ALIAS(hak_memalign);
void* __libc_valloc(size_t) HAK_ALIAS(hak_valloc);
void* __libc_pvalloc(size_t) HAK_ALIAS(hak_pvalloc);
int __posix_memalign(void**, size_t, size_t) HAK_ALIAS(hak_posix_memalign);

__attribute__((visibility("default"))) int malloc_trim(size_t) {
  hak_trim();
  return 1;
}
__attribute__((visibility("default"))) void malloc_stats(void) { hak_stats_print(stderr); }
__attribute__((visibility("default"))) int mallopt(int, int) { return 1; }  // accepted, no tunables

__attribute__((visibility("default"))) int malloc_info(int options, FILE* fp) {
  if (options != 0 || fp == nullptr) {
    errno = EINVAL;
    return -1;
  }
  hak_stats s;
  hak_stats_get(&s);
  fprintf(fp, "<malloc version=\"hakmem-1\">\n<heap nr=\"0\">\n<sizes>\n");
  for (int c = 0; c < HAK_NUM_CLASSES; ++c) {
    const hak_class_stats& k = s.classes[c];
    if (k.allocs == 0) continue;
    fprintf(fp, "<size from=\"%llu\" to=\"%llu\" total=\"%llu\" count=\"%llu\"/>\n",
            static_cast<unsigned long long>(c == 0 ? 0 : s.classes[c - 1].block_size + 1),
            static_cast<unsigned long long>(k.block_size),
            static_cast<unsigned long long>((k.allocs - (k.frees < k.allocs ? k.frees : k.allocs)) * k.block_size),
            static_cast<unsigned long long>(k.allocs - (k.frees < k.allocs ? k.frees : k.allocs)));
  }
  fprintf(fp, "</sizes>\n<total type=\"mmap\" count=\"%llu\" size=\"%llu\"/>\n",
          static_cast<unsigned long long>(s.segments), static_cast<unsigned long long>(s.bytes_mapped));
  fprintf(fp, "<system type=\"current\" size=\"%llu\"/>\n<aspace type=\"total\" size=\"%llu\"/>\n",
          static_cast<unsigned long long>(s.bytes_mapped), static_cast<unsigned long long>(s.bytes_in_use));
  fprintf(fp, "</heap>\n</malloc>\n");
  return 0;
}

__attribute__((visibility("default"))) struct mallinfo2 mallinfo2(void) {
  hak_stats s;
  hak_stats_get(&s);
  struct mallinfo2 m = {};
  m.arena = s.bytes_mapped;
  m.hblks = s.huge_allocs - s.huge_frees;
  m.hblkhd = s.huge_live_bytes;
  m.uordblks = s.bytes_in_use;
  m.fordblks = s.bytes_mapped > s.bytes_in_use ? s.bytes_mapped - s.bytes_in_use : 0;
  m.keepcost = s.bytes_dirty;
  return m;
}

__attribute__((visibility("default"))) struct mallinfo mallinfo(void) {
  struct mallinfo2 m2 = mallinfo2();
  struct mallinfo m = {};
  m.arena = static_cast<int>(m2.arena);
  m.hblks = static_cast<int>(m2.hblks);
  m.hblkhd = static_cast<int>(m2.hblkhd);
  m.uordblks = static_cast<int>(m2.uordblks);
  m.fordblks = static_cast<int>(m2.fordblks);
  m.keepcost = static_cast<int>(m2.keepcost);
  return m;
}
}  // extern "C"
#endif  // HAKMEM_OVERRIDE
