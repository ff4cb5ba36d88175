#include "refill/refill.h"

#include <atomic>

#include "ace/ace.h"
#include "central/central.h"
#include "contracts/contracts.h"
#include "large/large.h"
#include "os/os.h"
#include "stats/stats.h"
#include "tls_cache/tls_cache.h"

namespace hakmem {

namespace {

// Every live thread's cache, for stats and the exit and fork paths; the
// list is guarded by `lock` (the first lock of lifecycle.cc's kLockOrder).
// A cache's own bins are its thread's alone: readers see its counters only.
struct Registry {
  Lock lock;
  ThreadCache* head = nullptr;
};
Registry g_registry;
pthread_key_t g_exit_key;

#if defined(HAKMEM_HARDENED)
// Slot arrays of exited threads (tls_cache.h: kHardenedSlotAreaBytes each),
// for the next threads to register; linked through their first word,
// guarded by g_registry.lock. Never unmapped: a thread's arrays are touched
// only as deep as its bins ever filled.
void* g_spare_slot_areas = nullptr;

void* slot_area_take() {
  {
    LockGuard guard(g_registry.lock);
    if (void* area = g_spare_slot_areas) {
      g_spare_slot_areas = *static_cast<void**>(area);
      *static_cast<void**>(area) = nullptr;
      return area;
    }
  }
  return os_map_aligned(kHardenedSlotAreaBytes, kOsPageSize);
}
void slot_area_put_locked(void* area) {
  *static_cast<void**>(area) = g_spare_slot_areas;
  g_spare_slot_areas = area;
}
#endif

std::atomic<uint64_t> g_threads_registered{0};
// Threads with a cache now: ACE prices a class's capacity by it (each of
// them may hold that much).
std::atomic<uint32_t> g_threads_live{0};

void registry_add(ThreadCache* tc) {
  g_threads_registered.fetch_add(1, std::memory_order_relaxed);
  g_threads_live.fetch_add(1, std::memory_order_relaxed);
  LockGuard guard(g_registry.lock);
  tc->prev = nullptr;
  tc->next = g_registry.head;
  if (g_registry.head) g_registry.head->prev = tc;
  g_registry.head = tc;
}

void registry_remove_locked(ThreadCache* tc) {
  if (tc->prev) tc->prev->next = tc->next; else g_registry.head = tc->next;
  if (tc->next) tc->next->prev = tc->prev;
  tc->next = tc->prev = nullptr;
}

// pthread key destructor: runs at thread exit, before its TLS goes away.
// Blocks in the cache go to the central pool; counters merge into the totals.
void merge_counts(const ThreadCache& tc) {
  ClassCounters all[kNumClasses];
  for (int c = 0; c < kNumClasses; ++c) all[c] = tls_cache_counts(tc, c);
  stats_merge(all);
  const SpanCounts k = tls_span_counts(tc);
  g_counters.large_allocs.add(k.taken);
  g_counters.large_frees.add(k.parked);
  g_counters.large_live_bytes.add(k.bytes_taken - k.bytes_parked);  // modulo 2^64: another thread's spans may be parked here
}

void thread_exit(void*) {
  ThreadCache& tc = t_cache;
  {
    // Flush, merge and leave as one step (see thread_registry_each): a
    // snapshot taken while the cache empties would read its counters
    // half-moved (a block counted as pushed, not yet as held), and count
    // it twice. Registry before central is the lock order.
    LockGuard guard(g_registry.lock);
    refill_flush_all();
    merge_counts(tc);
    registry_remove_locked(&tc);
#if defined(HAKMEM_HARDENED)
    if (void* area = tls_cache_slot_area(tc)) slot_area_put_locked(area);
#endif
    g_threads_live.fetch_sub(1, std::memory_order_relaxed);
  }
  tls_cache_reset(tc);
  HAK_CONTRACT(contracts::thread_cache_cleared());
  tc.exited = true;  // later calls go straight to the central pool (see below)
}

// After the exit hook (or, hardened, without slot arrays: their mapping
// failed): one block at a time through the central pool, counted straight
// into the totals.
HAK_COLD void* exited_thread_alloc(int cls) {
  BlockList got = central_take(cls, 1);
  if (got.count == 0) return nullptr;
  void* block = list_split(got, 1).head;
  if (got.count > 0) central_give(cls, got);  // a whole batch came: the rest goes back
  HAK_CONTRACT(contracts::block_moved(block, contracts::Place::kTls, contracts::Place::kUser));
  g_counters.cls[cls].allocs.add(1);
  return block;
}

HAK_COLD void exited_thread_flush(int cls) {
  TlsBin& bin = t_cache.bins[cls];
  if (tls_bin_count(bin) > 0) central_give(cls, tls_bin_cut_all(bin));
  g_counters.cls[cls].frees.add(tls_bin_frees(t_cache, cls));
  tls_bin_reset(t_cache, cls);
}

void thread_register() {
#if defined(HAKMEM_HARDENED)
  // The bins' arrays first: a thread without them keeps no blocks (its
  // frees go straight to the central pool, refill_free_direct).
  if (void* area = slot_area_take()) tls_cache_take_slots(area);
#endif
  registry_add(&t_cache);
  t_cache.registered = true;
  pthread_setspecific(g_exit_key, &t_cache);  // non-null, so the destructor runs
}

void report_event(int cls, AceEventKind kind) {
  ClassCounters k = tls_cache_counts(t_cache, cls);
  uint64_t ops = k.allocs + k.frees;
  uint64_t since = ops - t_cache.ops_at_last_event[cls];
  t_cache.ops_at_last_event[cls] = ops;
  const uint32_t live = g_threads_live.load(std::memory_order_relaxed);
  ace_record(AceEvent{since > UINT32_MAX ? UINT32_MAX : static_cast<uint32_t>(since), static_cast<uint8_t>(cls), kind,
                      static_cast<uint16_t>(live > UINT16_MAX ? UINT16_MAX : live)});
}

// All threads' caches together hold about HAKMEM_THREAD_CACHES MiB (16 by
// default) at most: each thread's capacities, summed over its bins, stay
// within an equal share of it, and at least kThreadShareMin. An idle
// thread's cache cannot be emptied by anyone else (its bins are its own,
// used without a lock or an atomic on the hot path), so this bound is what
// a program whose threads fill their caches and then sleep keeps in them:
// 64 such threads kept 118 MiB resident before it and the purge of partly
// used slabs (slab.cc), 30 MiB with both (bench/idle-threads). A thread
// alone has the whole budget (glibc-simple's waves of 1600 blocks of 1 KiB
// take 2 MiB of it); two threads have half each, which glibc-thread's
// learned 256 KiB mid caches need (8 MiB in all cost it a quarter of its
// throughput, 16 nothing measurable).
constexpr uint64_t kThreadShareMin = uint64_t{64} << 10;

uint64_t thread_share() {
  const uint32_t live = g_threads_live.load(std::memory_order_relaxed);
  const uint64_t share = (g_config.thread_caches_mib << 20) / (live > 1 ? live : 1);
  return share > kThreadShareMin ? share : kThreadShareMin;
}

// Lowers bin `cls` (of this thread) to `cap` blocks, sending what it holds
// above that to the central pool. Not a flush of the class's own making:
// neither its count nor the learner hears of it.
void bin_shrink(int cls, uint16_t cap) {
  TlsBin& bin = t_cache.bins[cls];
  const uint32_t count = tls_bin_count(bin);
  if (count > cap) central_give(cls, tls_bin_cut(bin, count - cap));
  tls_bin_reshape(bin, cap, bin.batch);
}

// The policy `p` for bin `cls`, cut down so that the thread's capacities
// fit its share. If the other bins alone are over it (the share shrank as
// threads started, or they grew while this one was small), they are halved,
// largest first, down to one block each: a bin the program no longer uses
// keeps no capacity the ones it uses need.
ClassPolicy fit_thread_share(ClassPolicy p, const TlsBin& bin, int cls) {
  const uint64_t size = class_size(cls), share = thread_share();
  uint64_t others = t_cache.cap_bytes - bin.cap * size;
  while (others + size > share) {
    int widest = -1;
    uint64_t widest_bytes = 0;
    for (int c = 0; c < kNumClasses; ++c) {
      const uint64_t bytes = uint64_t{t_cache.bins[c].cap} * class_size(c);
      if (c != cls && t_cache.bins[c].cap > 1 && bytes > widest_bytes) {
        widest = c;
        widest_bytes = bytes;
      }
    }
    if (widest < 0) break;  // every other bin is down to one block
    bin_shrink(widest, static_cast<uint16_t>(t_cache.bins[widest].cap / 2));
    others = t_cache.cap_bytes - bin.cap * size;
  }
  const uint64_t fits = others < share ? (share - others) / size : 0;
  if (p.cap > fits) p.cap = static_cast<uint16_t>(fits > 1 ? fits : 1);
  return p;  // a batch above the cap: tls_bin_reshape cuts it
}

// The only place a policy is read (contract B): a bin takes on its class's
// current policy, within the thread's share, when the refill engine works
// on it.
void adopt_policy(TlsBin& bin, int cls) {
  HAK_CONTRACT(contracts::cache_reshaped());
  const ClassPolicy p = fit_thread_share(ace_policy(cls), bin, cls);
  tls_bin_reshape(bin, p.cap, p.batch);
}

// A thread's first free into a class it never allocated from is of a block
// another thread allocated, whose neighbours that thread may still be
// writing. Handing it out at the next malloc would put this thread on the
// same cache lines (passive false sharing: cache-scratch ran at a quarter of
// glibc's speed). So the bin starts with a fresh batch above that block: a
// thread that allocates and frees a few blocks at a time never reaches it.
void bury_foreign_block(TlsBin& bin, int cls) {
  const BlockList batch = central_take(cls, bin.batch);
  if (batch.count == 0) return;  // out of memory: the block simply stays on top
  tls_bin_adopt(bin, batch);
  ++t_cache.counters[cls].refills;
}

// A thread that flushes a class again and again without a refill between
// frees blocks that other threads allocate (a consumer, a lazy-free or
// garbage-collector thread) and does not allocate them back. A full cache
// of them saves it nothing (it flushes one batch per batch of frees
// whatever its capacity), and when it goes quiet each block it still holds
// keeps a slab from going back to the OS: redis's lazy-free thread, idle
// after FLUSHALL ASYNC, held 2048 blocks of a class in as many slabs. Such
// a bin keeps one batch (the rest goes to the central pool at once, so that
// what a quiet thread holds stays within its capacities); its next refill
// gives it its policy's capacity again. Four flushes in a row: a thread
// that frees what it allocated in waves larger than its cache sheds too,
// and pays one refill per wave.
constexpr uint16_t kDrainingAfterFlushes = 4;
void shed_if_draining(TlsBin& bin, int cls) {
  uint16_t& streak = t_cache.flushes_in_a_row[cls];
  if (streak < kDrainingAfterFlushes) ++streak;
  if (streak < kDrainingAfterFlushes || bin.cap <= bin.batch) return;
  bin_shrink(cls, bin.batch);
}

}  // namespace

void refill_init() {
  // Runs once, from the front's initialisation, before any thread registers.
  // glibc keeps the first 32 keys' values inside the thread descriptor:
  // neither creating nor setting the key allocates.
  pthread_key_create(&g_exit_key, thread_exit);
}

// Marks the refill engine at work on this thread (contract B's scope).
struct RefillScope {
  RefillScope() { HAK_CONTRACT(contracts::refill_enter()); }
  ~RefillScope() { HAK_CONTRACT(contracts::refill_leave()); }
};

void* refill_alloc(int cls) {
  RefillScope scope;
  HAK_CONTRACT(contracts::refill_of_class(cls));
  if (HAK_UNLIKELY(!t_cache.registered)) {
    if (t_cache.exited) return exited_thread_alloc(cls);
    thread_register();
  }
  if (HAK_UNLIKELY(!tls_cache_holds_blocks())) return exited_thread_alloc(cls);
  TlsBin& bin = t_cache.bins[cls];
  adopt_policy(bin, cls);
  const BlockList batch = central_take(cls, bin.batch);
  if (batch.count == 0) return nullptr;
  t_cache.flushes_in_a_row[cls] = 0;
  ClassCounters& k = t_cache.counters[cls];
  ++k.misses;
  ++k.refills;
  tls_bin_adopt(bin, batch);
  void* block = tls_cache_pop(bin);  // the batch's first block goes to the caller
  HAK_CONTRACT(contracts::block_moved(block, contracts::Place::kTls, contracts::Place::kUser));
  report_event(cls, AceEventKind::kRefill);
  return block;
}

void refill_flush(int cls) {
  RefillScope scope;
  HAK_CONTRACT(contracts::refill_of_class(cls));
  HAK_CONTRACT(contracts::cache_reshaped());
  if (HAK_UNLIKELY(!t_cache.registered)) {
    if (t_cache.exited) return exited_thread_flush(cls);
    thread_register();
  }
  TlsBin& bin = t_cache.bins[cls];
  if (bin.cap == 0) {  // first contact of this bin: a free before any malloc of its class
    adopt_policy(bin, cls);
    bury_foreign_block(bin, cls);
    if (bin.room >= 0) return;
  }
  const uint32_t count = tls_bin_count(bin);
  // The central pool takes the batch whole.
  central_give(cls, tls_bin_cut(bin, bin.batch < count ? bin.batch : count));
  ++t_cache.counters[cls].flushes;
  report_event(cls, AceEventKind::kFlush);
  shed_if_draining(bin, cls);
}

bool refill_thread_ready() {
  if (HAK_LIKELY(t_cache.registered)) return true;
  if (t_cache.exited) return false;
  thread_register();
  return true;
}

void refill_free_direct(int cls, void* block) {
  BlockList one;
  list_append(one, block);
  list_close(one);
  HAK_CONTRACT(contracts::list_moved(one.head, 1, contracts::Place::kUser, contracts::Place::kCentral));
  central_give(cls, one);
  g_counters.cls[cls].frees.add(1);
}

void* refill_span_take(size_t size) {
  const uintptr_t word = tls_span_take(large_park_units(size));
  if (word == 0) return nullptr;
  SpanCounts& k = t_cache.span_counts;
  tls_span_count(k.taken, 1);
  tls_span_count(k.bytes_taken, large_parked_usable(word));
  return large_unpark(word);
}

bool refill_span_park(void* p) {
  if (g_config.decay_ms == 0 || t_cache.exited) return false;  // freed memory goes back at once; no cache
  const uintptr_t word = large_park(p);
  if (word == 0) return false;  // no span (a huge block, a bad pointer): the thread stays as it was
  // Only a registered cache is seen by the decay passes and emptied at exit.
  if (HAK_UNLIKELY(!t_cache.registered)) thread_register();
  SpanCounts& k = t_cache.span_counts;
  tls_span_count(k.parked, 1);
  tls_span_count(k.bytes_parked, large_parked_usable(word));
  if (const uintptr_t displaced = tls_span_put(word)) large_free_parked(displaced);
  return true;
}

bool refill_spans_flush() {
  bool any = false;
  tls_spans_take_all(t_cache, [&any](uintptr_t word) {
    large_free_parked(word);
    any = true;
  });
  return any;
}

void refill_spans_decay() {
  LockGuard guard(g_registry.lock);  // no cache leaves the registry meanwhile
  for (ThreadCache* tc = g_registry.head; tc != nullptr; tc = tc->next) tls_spans_take_all(*tc, large_free_parked);
}

void refill_flush_all() {
  refill_spans_flush();
  for (int cls = 0; cls < kNumClasses; ++cls) {
#if defined(HAKMEM_HARDENED)
    tls_quarantine_drain(cls);  // its blocks go with the rest
#endif
    TlsBin& bin = t_cache.bins[cls];
    if (tls_bin_count(bin) > 0) {
      central_give(cls, tls_bin_cut_all(bin));
      ++t_cache.counters[cls].flushes;
    }
  }
}

void thread_registry_each(void (*fn)(const ThreadCache*, void*), void (*then)(void*), void* arg) {
  LockGuard guard(g_registry.lock);
  for (ThreadCache* tc = g_registry.head; tc != nullptr; tc = tc->next) fn(tc, arg);
  then(arg);
}

uint64_t thread_registry_ever() { return g_threads_registered.load(std::memory_order_relaxed); }

void thread_registry_fork_prepare() { g_registry.lock.lock(); }
void thread_registry_fork_parent() { g_registry.lock.unlock(); }
void thread_registry_fork_child() {
  g_registry.lock.reinit_in_child();
  // Only the forking thread lives on in the child: the others' caches stay
  // where they are (their blocks are simply never reused), but they leave
  // the registry and their counts join the totals.
  for (ThreadCache* tc = g_registry.head; tc != nullptr; tc = tc->next)
    if (tc != &t_cache) merge_counts(*tc);
  g_registry.head = nullptr;
  g_threads_registered.store(t_cache.registered ? 1 : 0, std::memory_order_relaxed);  // single-threaded again
  g_threads_live.store(t_cache.registered ? 1 : 0, std::memory_order_relaxed);
  if (t_cache.registered) {
    t_cache.next = t_cache.prev = nullptr;
    g_registry.head = &t_cache;
  }
}

}  // namespace hakmem
