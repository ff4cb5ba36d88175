// Box 1: the thread cache. Per thread and size class, a singly linked list
// of free blocks (linked through their first word) and its room left; the
// hardened variant keeps the blocks in an array instead (kHardenedBinSlots).
// This is the hot path: no locks, no atomics, no division.
#pragma once

#include "base/base.h"
#include "contracts/contracts.h"
#include "size_class/size_class.h"
#include "stats/stats.h"

namespace hakmem {

struct TlsBin {
  // Release: the list's first block. Hardened: the bin's slot array
  // (tls_bin_slots), out of the heap; nullptr until the thread registers.
  void* head;
  // cap - count. A push that drives it below zero means "over capacity":
  // one decrement and one sign test instead of a load, compare and store.
  // Zero in a fresh thread, so its first free takes the slow path.
  int32_t room;
  uint16_t cap;     // from the policy of the last refill (0: the refill engine has not seen this bin)
  uint16_t batch;   // blocks per flush, same source
  // Frees left before this bin next calls on the slow path even though it is
  // not over capacity (see tls_cache_push). The one counter on the hot path:
  // the thread's frees are ThreadCache::free_ticks_granted - free_tick, and
  // its allocations are derived from those (tls_cache_counts).
  int64_t free_tick;
  int64_t net_in;   // blocks the refill engine brought in minus those it sent out
};
static_assert(sizeof(TlsBin) == 32, "a bin is indexed with one shift");

// bins[] has a power-of-two number of slots, the classes' and spares that
// stay empty: free() masks the bin offset it reads from a unit entry
// (tls_bin_by_offset), and every masked offset lands on a bin of this thread.
constexpr int kTlsBinSlots = 128;  // half of them spares: a forged offset finds one as often as a class
static_assert(kNumClasses <= kTlsBinSlots, "every class has a bin");

// The hardened variant's quarantine (HAKMEM_HARDENED_QUARANTINE): per thread
// and class, a freed block waits in `random` (it swaps out one of its slots,
// chosen at random) and then in `fifo` (the oldest leaves) before its bin
// sees it, so it is reused at the earliest after as many more frees of its
// class as the FIFO holds, and when is a matter of chance: a write after
// free, or a double free after reuse, cannot count on the block's next
// owner. Both parts hold 8 blocks of up to 1 KiB; larger classes use fewer
// slots (a power of two), so that at most 16 KiB of a class waits per
// thread: 1 + 1 blocks of 8 KiB, and none of the classes above (like
// spans, they are reused at once). 16 blocks of 128 KiB each were 2 MiB a
// class; a budget of 128 KiB a class still held 1.5 MiB more than release
// in a program that grows buffers by realloc through every mid class, and
// 9 MiB more in mstress (bench/run); 32 KiB a class with at least 1 + 1
// blocks of every class, 1.24x release's peak RSS in that program.
constexpr int kQuarantineRandom = 8;
constexpr int kQuarantineFifo = 8;
constexpr uint32_t kQuarantineBytesPerPart = 8 << 10;
constexpr uint32_t quarantine_depth_of(uint32_t block_size) {
  uint32_t depth = 8;
  while (depth > 0 && depth * block_size > kQuarantineBytesPerPart) depth /= 2;
  return depth;
}
struct QuarantineDepths {
  uint8_t depth[kNumClasses];
};
constexpr QuarantineDepths build_quarantine_depths() {
  QuarantineDepths d{};
  for (int c = 0; c < kNumClasses; ++c) d.depth[c] = static_cast<uint8_t>(quarantine_depth_of(size_class_detail::class_size(c)));
  return d;
}
inline constexpr QuarantineDepths kQuarantineDepths = build_quarantine_depths();
static_assert(quarantine_depth_of(1 << 10) == 8 && quarantine_depth_of(8 << 10) == 1 && quarantine_depth_of(10 << 10) == 0,
              "1 KiB and below: 8 + 8; above 8 KiB: none");
struct Quarantine {
  void* random[kQuarantineRandom];
  void* fifo[kQuarantineFifo];
  uint32_t fifo_next;
};

// The hardened variant keeps a bin's blocks in an array of pointers, not in
// a list linked through the blocks: a write after free into a block in a
// thread's cache then has no link to bend, and malloc reads no word of the
// heap to find its next block, only the block's free mark (base.h). A
// thread's arrays share one mapping of their own, taken when the thread
// registers (refill) and recycled when it exits. A bin holds at most
// kHardenedBinCap blocks by its policy (tls_bin_reshape); its array has
// room for twice that, since a bin may hold more for a while (a shrunk
// capacity, a drained quarantine, the push that goes over).
constexpr uint32_t kHardenedBinSlots = 512;
constexpr uint16_t kHardenedBinCap = kHardenedBinSlots / 2;
constexpr size_t kHardenedSlotAreaBytes = size_t{kNumClasses} * kHardenedBinSlots * sizeof(void*);
static_assert(kHardenedBinCap >= 2 * kQuarantineRandom + 2 * kQuarantineFifo, "a drained quarantine fits");

// Spans the thread parked (freed by the program) and took back (handed out
// again), counted here rather than in the shared large counters, whose
// atomic adds cost a park and a take a third of their time. Written by the
// owner only, read by stats (relaxed: tls_span_count); added into the
// shared counters when the thread exits.
struct SpanCounts {
  uint64_t taken, parked;
  uint64_t bytes_taken, bytes_parked;
};
HAK_INLINE void tls_span_count(uint64_t& counter, uint64_t n) {
  __atomic_store_n(&counter, __atomic_load_n(&counter, __ATOMIC_RELAXED) + n, __ATOMIC_RELAXED);
}

struct ThreadCache {
  TlsBin bins[kTlsBinSlots];
  ClassCounters counters[kNumClasses];      // slow-path counts: misses, refills, flushes
  int64_t free_ticks_granted[kNumClasses];  // sum of every grant to a bin's free_tick
  uint64_t ops_at_last_event[kNumClasses];  // allocs + frees when ACE last heard from a class
  uint16_t flushes_in_a_row[kNumClasses];   // since the class's last refill (refill_flush)
  // The bins' capacities in bytes, summed (each cap * its class's size):
  // what the thread's lists may hold at most. The refill engine keeps it
  // within the thread's share of all threads' caches (refill.cc).
  uint64_t cap_bytes;
  // Large spans the thread freed, kept for its next malloc of their length
  // (large.h: kParkSpans): each a span's word, start | units, or 0.
  uintptr_t parked_spans[4];
  uint32_t span_ops;  // parks and takes of spans (tls_span_poll_due)
  SpanCounts span_counts;
  ThreadCache* next;                        // registry of live threads (stats)
  ThreadCache* prev;
  bool registered;
  // Set once the thread's exit hook has run. glibc still frees (and may
  // allocate) after the last key destructor; such a thread keeps no cache
  // and never registers again, since nothing would unregister it.
  bool exited;
#if defined(HAKMEM_HARDENED)
  uint64_t random_state;  // tls_random; 0 until first use
  Quarantine quarantine[kNumClasses];
  // Blocks a bin's array holds at most: kHardenedBinSlots once the thread
  // has its slot arrays (tls_cache_take_slots), 0 before and after.
  uint32_t slot_limit;
#endif
};

extern HAK_TLS ThreadCache t_cache;

HAK_INLINE uint32_t tls_bin_count(const TlsBin& bin) {
  return static_cast<uint32_t>(static_cast<int32_t>(bin.cap) - bin.room);
}

HAK_INLINE TlsBin& tls_bin(size_t cls) { return t_cache.bins[cls]; }
// The bins' full address, for arithmetic with a bin found by its route
// (below). Left to itself the compiler folds such a difference into
// arithmetic on the TLS offset's GOT entry (a subtraction, or 32-bit), forms
// the linker cannot relax when it links hakmem into an executable.
HAK_INLINE char* tls_bins_address() {
  char* bins = reinterpret_cast<char*>(t_cache.bins);
  asm("" : "+r"(bins));
  return bins;
}
HAK_INLINE int tls_bin_class(const TlsBin& bin) {
  return static_cast<int>((reinterpret_cast<const char*>(&bin) - tls_bins_address()) / sizeof(TlsBin));
}

// ---- Finding a bin without class arithmetic ----
// malloc: the bin's byte offset in ThreadCache, straight from the request
// size (one table load; the size-to-class map of size_class, pre-multiplied).
struct SizeToBin {
  uint16_t tiny[kTinyMax + 1];            // indexed by the size itself, 0..1 KiB
  uint16_t mid[kSlabMax / 256 + 1];       // indexed by (n + 255) >> 8, n <= 128 KiB
};
constexpr SizeToBin build_size_to_bin() {
  SizeToBin t{};
  for (size_t n = 0; n <= kTinyMax; ++n) t.tiny[n] = static_cast<uint16_t>(tiny_size_to_class(n) * sizeof(TlsBin));
  for (size_t i = 0; i <= kSlabMax / 256; ++i)
    t.mid[i] = static_cast<uint16_t>(mid_size_to_class(i * 256) * sizeof(TlsBin));
  return t;
}
inline constexpr SizeToBin kSizeToBin = build_size_to_bin();
HAK_INLINE size_t tls_bin_offset_tiny(size_t n) { return kSizeToBin.tiny[n]; }
HAK_INLINE size_t tls_bin_offset_mid(size_t n) { return kSizeToBin.mid[(n + 255) >> 8]; }
HAK_INLINE TlsBin& tls_bin_at_offset(size_t offset) {
  return *reinterpret_cast<TlsBin*>(reinterpret_cast<char*>(&t_cache) + offset);
}
HAK_INLINE size_t tls_bin_offset_class(size_t offset) { return offset / sizeof(TlsBin); }
HAK_INLINE size_t tls_bin_offset_of_class(int cls) { return static_cast<size_t>(cls) * sizeof(TlsBin); }

// free: the bin's offset, which the backend keeps in every slab unit's entry
// (UnitEntry::bin_offset), masked into bins[]: whatever the entry holds, the
// push lands in one of the calling thread's bins, never elsewhere in its TLS
// or stack. (An offset from the thread pointer, one add cheaper, let a
// forged entry aim free's stores anywhere within 2 GiB of it.)
HAK_INLINE size_t tls_bin_slot(uint16_t offset) { return (offset / sizeof(TlsBin)) & (kTlsBinSlots - 1); }
HAK_INLINE TlsBin& tls_bin_by_offset(uint16_t offset) { return t_cache.bins[tls_bin_slot(offset)]; }

// Hardened: the bin's slot array; its first tls_bin_count(bin) slots hold
// its blocks, the next to hand out last.
HAK_INLINE void** tls_bin_slots(const TlsBin& bin) { return static_cast<void**>(bin.head); }

// Pops a block, or returns nullptr when the list is empty.
HAK_INLINE void* tls_cache_pop(TlsBin& bin) {
  if (kHardened) {
    const uint32_t count = tls_bin_count(bin);
    if (HAK_UNLIKELY(count == 0)) return nullptr;
    ++bin.room;
    return tls_bin_slots(bin)[count - 1];
  }
  void* block = bin.head;
  if (HAK_UNLIKELY(block == nullptr)) return nullptr;
  bin.head = block_next(block);  // the link lives in the free block itself
  ++bin.room;
  return block;
}

// A bin's free_tick is granted this many frees at a time. A program whose
// every malloc and free hits its thread cache would otherwise never reach a
// slow path again, and freed memory elsewhere (the central pool, empty slabs,
// cached huge mappings) would never see its decay run. Large enough that the
// poll costs well under an instruction per free, small enough that even a
// few hundred frees a second keep the decay on time.
constexpr int64_t kFreesPerPoll = 256;

// Pushes a block; returns false when the caller must take the slow path: the
// list has grown past its capacity (tls_cache_over_capacity: flush a batch),
// or the bin's free tick ran out (tls_cache_take_poll: poll the decay).
// Hardened: the caller has made sure the array has a free slot
// (tls_bin_has_slot).
HAK_INLINE bool tls_cache_push(TlsBin& bin, void* block) {
  HAK_CONTRACT(contracts::block_enters_list(block, static_cast<size_t>(tls_bin_class(bin))));
  if (kHardened) {
    tls_bin_slots(bin)[tls_bin_count(bin)] = block;
  } else {
    block_set_next(block, bin.head);
    bin.head = block;
  }
  if (HAK_UNLIKELY(--bin.room < 0)) {
    --bin.free_tick;  // counted here so that the common path needs one test per counter
    return false;
  }
  return HAK_LIKELY(--bin.free_tick >= 0);  // zero in a fresh bin: its first free also polls
}

HAK_INLINE bool tls_cache_over_capacity(int cls) { return t_cache.bins[cls].room < 0; }

// After a push returned false: true (once) when the bin's tick ran out, with
// a new grant of frees made.
HAK_INLINE bool tls_cache_take_poll(int cls) {
  TlsBin& bin = t_cache.bins[cls];
  if (bin.free_tick >= 0) return false;
  bin.free_tick += kFreesPerPoll;
  t_cache.free_ticks_granted[cls] += kFreesPerPoll;
  return true;
}

// ---- The refill engine's operations on a bin ----
// Box 2 (refill) changes a bin only through these: each keeps the bin's
// room equal to its capacity less its count, and net_in (what the refill
// engine brought in less what it took out) true.

// Hardened: a bin's array would overflow, which its capacity (at most half
// the array) rules out unless hakmem's own bookkeeping is broken.
[[noreturn]] HAK_COLD inline void tls_bin_full(int cls) {
  fatal("hakmem: a thread cache of %zu-byte blocks is full; aborting", class_size(cls));
}
// Whether this thread's cache can hold blocks: the hardened variant's needs
// its slot arrays (tls_cache_take_slots), which a thread lacks before it
// registers, after its exit hook, and should their mapping have failed.
HAK_INLINE bool tls_cache_holds_blocks() {
#if defined(HAKMEM_HARDENED)
  return t_cache.slot_limit != 0;
#else
  return true;
#endif
}

// The bin takes on a capacity and a batch size (a policy); its room follows.
HAK_INLINE void tls_bin_reshape(TlsBin& bin, uint16_t cap, uint16_t batch) {
  if (kHardened && cap > kHardenedBinCap) cap = kHardenedBinCap;
  if (batch > cap) batch = cap;  // a capacity cut to the thread's share (refill.cc) may fall below the batch
  const uint32_t count = tls_bin_count(bin);
  t_cache.cap_bytes += (uint64_t{cap} - bin.cap) * class_size(tls_bin_class(bin));  // modulo 2^64: a smaller cap subtracts
  bin.cap = cap;
  bin.batch = batch;
  bin.room = static_cast<int32_t>(cap) - static_cast<int32_t>(count);  // below 0: the next frees flush on
}
#if defined(HAKMEM_HARDENED)
inline void tls_slots_shuffle(void** slots, uint32_t n);
#endif
// A closed list from the refill engine goes on top of the bin's list
// (hardened: in a random order, with HAKMEM_HARDENED_RANDOM).
inline void tls_bin_adopt(TlsBin& bin, BlockList list) {
  if (list.count == 0) return;
  if (kHardened) {
    // Each link is checked as it is read; the blocks keep their seals, which
    // mark them free. The list's first block goes on top.
    const uint32_t count = tls_bin_count(bin);
    if (HAK_UNLIKELY(count + list.count > kHardenedBinSlots)) tls_bin_full(tls_bin_class(bin));
    void** slot = tls_bin_slots(bin) + count + list.count;
    void* block = list.head;
    for (uint32_t i = 1; i < list.count; ++i, block = block_next(block)) *--slot = block;
    *--slot = block;
#if defined(HAKMEM_HARDENED)
    if (g_config.randomize) tls_slots_shuffle(slot, list.count);
#endif
  } else {
    block_set_next(list.tail, bin.head);
    bin.head = list.head;
  }
  bin.room -= static_cast<int32_t>(list.count);
  bin.net_in += list.count;
}
// The first n blocks of the bin's list (n <= its count) leave it, closed:
// a walk over this thread's own list, outside any lock.
inline BlockList tls_bin_cut(TlsBin& bin, uint32_t n) {
  if (n == 0) return BlockList{};
  BlockList cut;
  if (kHardened) {
    // Each block's mark (or seal) is checked before a link overwrites it:
    // a write after free while it waited in the bin stops the program here.
    void** top = tls_bin_slots(bin) + tls_bin_count(bin);
    for (uint32_t i = 0; i < n; ++i) {
      void* block = *--top;
      if (HAK_UNLIKELY(!block_is_free(block))) fatal("hakmem: a free list is damaged at %p (a write after free?); aborting", block);
      list_append(cut, block);
    }
    list_close(cut);
  } else {
    cut = list_cut(bin.head, n);
  }
  bin.room += static_cast<int32_t>(n);
  bin.net_in -= n;
  return cut;
}
inline BlockList tls_bin_cut_all(TlsBin& bin) { return tls_bin_cut(bin, tls_bin_count(bin)); }
// The thread's cache as a new thread's, or one class's bin with its free
// count (exited threads: their counts have gone into the totals).
inline void tls_cache_reset(ThreadCache& tc) { tc = ThreadCache{}; }
inline void tls_bin_reset(ThreadCache& tc, int cls) {
  tc.cap_bytes -= uint64_t{tc.bins[cls].cap} * class_size(cls);
  tc.bins[cls] = TlsBin{};
  tc.free_ticks_granted[cls] = 0;
}

// ---- Spans parked in a thread's cache ----
// The owner fills and empties its slots; a decay pass, in any thread, empties
// them too (tls_spans_take_all). Only the owner ever fills a slot, so it
// fills an empty one with a plain store; whoever empties one does it with
// an exchange, so a span leaves its slot exactly once: one locked
// instruction per park and take, not two. The span's length in units sits
// below its 64 KiB alignment (kUnitOffsetMask).
// A parked span of `units` units from this thread's slots, or 0.
inline uintptr_t tls_span_take(uint32_t units) {
  for (uintptr_t& slot : t_cache.parked_spans) {
    const uintptr_t word = __atomic_load_n(&slot, __ATOMIC_RELAXED);
    if (word != 0 && (word & kUnitOffsetMask) == units)
      return __atomic_exchange_n(&slot, 0, __ATOMIC_ACQUIRE);  // 0: a decay pass took it first
  }
  return 0;
}
// Parks a span's word in an empty slot, or in place of the first slot's
// occupant when all are full. Returns the word displaced (0: none), which
// the caller sends back to the backend.
inline uintptr_t tls_span_put(uintptr_t word) {
  for (uintptr_t& slot : t_cache.parked_spans) {
    if (__atomic_load_n(&slot, __ATOMIC_RELAXED) == 0) {  // stays empty: no one else fills it
      __atomic_store_n(&slot, word, __ATOMIC_RELEASE);
      return 0;
    }
  }
  return __atomic_exchange_n(&t_cache.parked_spans[0], word, __ATOMIC_ACQ_REL);
}
HAK_INLINE SpanCounts tls_span_counts(const ThreadCache& tc) {
  const SpanCounts& c = tc.span_counts;
  return SpanCounts{__atomic_load_n(&c.taken, __ATOMIC_RELAXED), __atomic_load_n(&c.parked, __ATOMIC_RELAXED),
                    __atomic_load_n(&c.bytes_taken, __ATOMIC_RELAXED), __atomic_load_n(&c.bytes_parked, __ATOMIC_RELAXED)};
}
// The decay is polled on one in kSpanOpsPerPoll parks and takes of spans,
// as on one in kFreesPerPoll frees of blocks: a clock read each time cost
// them a quarter of their time.
constexpr uint32_t kSpanOpsPerPoll = 32;
HAK_INLINE bool tls_span_poll_due() { return ++t_cache.span_ops % kSpanOpsPerPoll == 0; }
// Empties every slot of `tc` (the thread's own at exit or trim, or any
// thread's in a decay pass): calls fn(word) for each span taken.
template <typename Fn>
void tls_spans_take_all(ThreadCache& tc, Fn fn) {
  for (uintptr_t& slot : tc.parked_spans) {
    if (__atomic_load_n(&slot, __ATOMIC_RELAXED) == 0) continue;  // no write into another thread's line for nothing
    if (uintptr_t word = __atomic_exchange_n(&slot, 0, __ATOMIC_ACQ_REL)) fn(word);
  }
}

// Blocks of a class waiting in the thread's quarantine (hardened; else 0):
// its occupied slots, counted here (stats, thread exit) rather than kept
// up to date on every free.
HAK_INLINE uint32_t tls_quarantine_held(const ThreadCache& tc, int cls) {
#if defined(HAKMEM_HARDENED)
  uint32_t held = 0;
  for (const void* slot : tc.quarantine[cls].random) held += slot != nullptr;
  for (const void* slot : tc.quarantine[cls].fifo) held += slot != nullptr;
  return held;
#else
  (void)tc, (void)cls;
  return 0;
#endif
}

// Blocks pushed onto a class's bin by free so far.
HAK_INLINE uint64_t tls_bin_pushes(const ThreadCache& tc, int cls) {
  return static_cast<uint64_t>(tc.free_ticks_granted[cls] - tc.bins[cls].free_tick);
}
// The thread's frees of a class so far: those pushed, and those waiting in
// quarantine to be.
HAK_INLINE uint64_t tls_bin_frees(const ThreadCache& tc, int cls) {
  return tls_bin_pushes(tc, cls) + tls_quarantine_held(tc, cls);
}

// A class's counters in one thread, allocations included: every block the
// thread's list ever held arrived by refill or by a push, and left by
// allocation or flush, so allocs = net_in + pushes - count. Always inlined,
// as are the three above: the statistics read live threads' counters in a
// function that ThreadSanitizer leaves alone (a benign race, api.cc), and
// GCC does not inline an ordinary function into it, so an out-of-line copy
// was instrumented and reported the race (Threads.StatsNeverCountAnExiting-
// ThreadTwice, now and then, under TSan).
HAK_INLINE ClassCounters tls_cache_counts(const ThreadCache& tc, int cls) {
  const TlsBin& bin = tc.bins[cls];
  ClassCounters c = tc.counters[cls];
  c.frees = tls_bin_frees(tc, cls);
  c.allocs = static_cast<uint64_t>(bin.net_in + static_cast<int64_t>(tls_bin_pushes(tc, cls)) - tls_bin_count(bin));
  return c;
}

#if defined(HAKMEM_HARDENED)
// Whether the bin's array has a free slot: false before the thread has its
// arrays (and after its exit hook ran), or should a bin ever fill one.
HAK_INLINE bool tls_bin_has_slot(const TlsBin& bin) { return tls_bin_count(bin) < t_cache.slot_limit; }
// The thread takes its slot arrays (`area`: kHardenedSlotAreaBytes), its
// bins empty.
inline void tls_cache_take_slots(void* area) {
  for (int c = 0; c < kNumClasses; ++c) t_cache.bins[c].head = static_cast<void**>(area) + size_t{kHardenedBinSlots} * c;
  t_cache.slot_limit = kHardenedBinSlots;
}
// The slot arrays of an emptied cache (nullptr: it had none).
inline void* tls_cache_slot_area(const ThreadCache& tc) { return tc.slot_limit != 0 ? tc.bins[0].head : nullptr; }

// A random word for this thread: a Weyl sequence (a counter stepped by an
// odd constant) through a multiply-fold, as wyrand does; seeded at first
// use from the kernel. Five instructions: it runs on every hardened free.
inline uint64_t tls_random() {
  uint64_t x = t_cache.random_state;
  if (HAK_UNLIKELY(x == 0)) x = random_word() | 1;
  x += 0xa0761d6478bd642fu;
  t_cache.random_state = x;
  return keyed_fold(x, 0xe7037ed1a0b428dbu, x);
}

// Hardened random slot selection on refill: a batch's blocks enter the
// bin in a random order (Fisher-Yates), so that what malloc hands out next
// depends neither on the order in which blocks were freed nor on the
// central pool's: a program cannot line up a block it freed, or a
// neighbour of one it overflows, to be the next one handed out. One draw
// per block, on the refill's path only.
inline void tls_slots_shuffle(void** slots, uint32_t n) {
  for (uint32_t i = n; i > 1; --i) {
    const uint32_t j = static_cast<uint32_t>((static_cast<unsigned __int128>(tls_random()) * i) >> 64);
    void* t = slots[i - 1];
    slots[i - 1] = slots[j];
    slots[j] = t;
  }
}

// Puts a freed block (marked free already: a second free of it is caught
// while it waits) into class `cls`'s quarantine; returns the block that
// leaves it for the bin, or nullptr while the quarantine fills.
inline void* tls_quarantine_swap(int cls, void* block) {
  const uint32_t depth = kQuarantineDepths.depth[cls];
  if (depth == 0) return block;  // a class above the quarantine's budget
  Quarantine& q = t_cache.quarantine[cls];
  const uint32_t mask = depth - 1u;  // depths are powers of two
  void*& slot = q.random[tls_random() & mask];
  void* out = slot;
  slot = block;
  if (out == nullptr) return nullptr;
  void*& oldest = q.fifo[q.fifo_next++ & mask];
  void* leaving = oldest;
  oldest = out;
  return leaving;
}

// Empties class `cls`'s quarantine onto its bin, counting each block as a
// push (its free was counted when it came in): thread exit, trim.
inline void tls_quarantine_drain(int cls) {
  Quarantine& q = t_cache.quarantine[cls];
  TlsBin& bin = t_cache.bins[cls];
  auto drain = [&bin, cls](void*& slot) {
    if (slot == nullptr) return;
    if (HAK_UNLIKELY(!block_is_marked_free(slot)))  // its mark broke while it waited
      fatal("hakmem: free: the block at %p was written after it was freed; aborting", slot);
    if (HAK_UNLIKELY(!tls_bin_has_slot(bin))) tls_bin_full(cls);
    tls_bin_slots(bin)[tls_bin_count(bin)] = slot;
    --bin.room;
    --bin.free_tick;
    slot = nullptr;
  };
  for (void*& slot : q.random) drain(slot);
  for (void*& slot : q.fifo) drain(slot);
}
#endif

}  // namespace hakmem
