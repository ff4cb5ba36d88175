// Contract checkers. Compiled into the library only in the contracts build.
#include "contracts/contracts.h"

#include <stdio.h>
#include <stdlib.h>

#include <atomic>

#include "base/base.h"
#include "os/os.h"
#include "slab/slab.h"
#include "tls_cache/tls_cache.h"

namespace hakmem {
namespace contracts {

namespace {

std::atomic<FireHandler> g_handler{nullptr};
std::atomic<uint64_t> g_fires[6];

HAK_TLS int t_refill_depth;
HAK_TLS int t_learner_depth;

// Contract B's view of this thread's bins. A fresh thread's cache is all
// zeros, and so are these: no refill has shaped anything yet.
uint32_t bin_shape(const TlsBin& bin) { return bin.cap | static_cast<uint32_t>(bin.batch) << 16; }
HAK_TLS uint32_t t_shape_after_refill[kNumClasses];
HAK_TLS int t_refill_class = -1;
struct BinView {
  void* head;
  int32_t room;
  uint32_t shape;
};
HAK_TLS BinView t_bins_at_learner_entry[kNumClasses];

// Compares every bin (but `except`) with the refill view; reports the first
// change, then takes the bins as they are, so that one change fires once.
void check_shapes_since_refill(int except, const char* what) {
  bool fired = false;
  for (int c = 0; c < kNumClasses; ++c) {
    const uint32_t now = bin_shape(t_cache.bins[c]);
    if (c != except && now != t_shape_after_refill[c] && !fired) {
      fired = true;
      fire('B', what, &t_cache.bins[c]);
    }
    t_shape_after_refill[c] = now;
  }
}

// Contract F's thread numbers: 0 is "handed to nobody yet".
std::atomic<uint32_t> g_next_thread_number{1};
HAK_TLS uint32_t t_thread_number;
uint32_t thread_number() {
  if (t_thread_number == 0) t_thread_number = g_next_thread_number.fetch_add(1, std::memory_order_relaxed);
  return t_thread_number;
}
// A ring push never pushes to another ring, so one slot per thread holds the
// drop count of the push in progress.
HAK_TLS uint64_t t_ring_drops_at_push;

const char* place_name(Place p) {
  switch (p) {
    case Place::kSlab: return "its slab";
    case Place::kTls: return "a thread cache";
    case Place::kCentral: return "the central pool";
    case Place::kUser: return "the program";
  }
  return "?";
}

// Shadow state for contract C: an open-addressing table from block address
// to place, in memory of its own (never malloc), under one lock. Blocks that
// were never seen are in their slab. Deleting (back to the slab) leaves a
// tombstone-free table by storing kSlab in place.
constexpr unsigned kShadowSlotBits = 24;
constexpr size_t kShadowSlots = size_t{1} << kShadowSlotBits;
// Linear probing crawls as the table nears full, and every probe runs under
// the one lock: the table counts itself full with an eighth of it still free.
constexpr size_t kShadowCapacity = kShadowSlots - kShadowSlots / 8;
struct ShadowEntry {
  uintptr_t key;
  Place place;
  // F: the slab itself took the block back (slab_return_blocks). C's place
  // says kSlab already when the central pool hands a list over, so only this
  // tells a second return from the first.
  bool returned;
  uint32_t handed_to;  // F: thread number of the last thread that got the block
};
static_assert(sizeof(ShadowEntry) == 16, "F's fields live in C's padding");
ShadowEntry* g_shadow = nullptr;
Lock g_shadow_lock;
size_t g_shadow_tracked = 0;
size_t g_shadow_capacity = kShadowCapacity;
// Sticky: a block left out while the table was full and recorded later would
// look as if it had been in its slab all along, and its next move would fire
// for nothing. Atomic only so that shadow_full() can read it without the lock.
std::atomic<bool> g_shadow_full{false};

// Under g_shadow_lock.
uint64_t g_cross_thread_frees = 0;
uint64_t g_slab_returns_checked = 0;

// Whether `block` starts one of the blocks carved so far in `slab` (E, F).
bool on_carved_block_boundary(const Run& slab, const void* block) {
  const size_t off = static_cast<const char*>(block) - run_start(const_cast<Run*>(&slab));
  return off % class_size(slab.cls) == 0 && off / class_size(slab.cls) < slab.carved;
}

void report_shadow_full_locked() {
  if (g_shadow_full.load(std::memory_order_relaxed)) return;
  g_shadow_full.store(true, std::memory_order_relaxed);
  diag("hakmem: contract C ownership table full at %zu blocks: blocks not seen before are no longer checked",
       g_shadow_tracked);
}

ShadowEntry* shadow_slot(uintptr_t key, bool insert) {
  if (g_shadow == nullptr) {
    if (!insert) return nullptr;
    g_shadow = static_cast<ShadowEntry*>(os_map_aligned(kShadowSlots * sizeof(ShadowEntry), kOsPageSize));
    if (g_shadow == nullptr) return nullptr;
  }
  size_t i = (key >> 3) * 0x9E3779B97F4A7C15ull >> (64 - kShadowSlotBits);
  for (size_t probes = 0; probes < kShadowSlots; ++probes, i = (i + 1) & (kShadowSlots - 1)) {
    ShadowEntry& e = g_shadow[i];
    if (e.key == key) return &e;
    if (e.key == 0) {
      if (!insert) return nullptr;
      if (g_shadow_full.load(std::memory_order_relaxed) || g_shadow_tracked >= g_shadow_capacity) {
        report_shadow_full_locked();
        return nullptr;
      }
      ++g_shadow_tracked;
      e.key = key;
      e.place = Place::kSlab;
      e.returned = false;
      e.handed_to = 0;
      return &e;
    }
  }
  return nullptr;
}

void move_locked(const void* block, Place from, Place to, char contract) {
  ShadowEntry* e = shadow_slot(reinterpret_cast<uintptr_t>(block), true);
  if (e == nullptr) return;  // not tracked (table full, reported): unchecked rather than a lie
  if (e->place != from) {
    char what[160];
    snprintf(what, sizeof what, "block moved from %s to %s, but it is in %s%s", place_name(from),
             place_name(to), place_name(e->place),
             from == Place::kUser && to == Place::kTls ? " (double free?)" : "");
    fire(contract, what, block);
  }
  if (to == Place::kUser) {
    e->handed_to = thread_number();
  } else if (from == Place::kUser && to == Place::kTls && e->handed_to != 0 && e->handed_to != thread_number()) {
    ++g_cross_thread_frees;
  }
  e->place = to;
}

}  // namespace

void set_fire_handler(FireHandler handler) { g_handler.store(handler); }

uint64_t fire_count(char contract) {
  if (contract < 'A' || contract > 'F') return 0;
  return g_fires[contract - 'A'].load();
}

void fire(char contract, const char* what, const void* where) {
  if (contract >= 'A' && contract <= 'F') g_fires[contract - 'A'].fetch_add(1);
  if (FireHandler h = g_handler.load()) {
    h(contract, what, where);
    return;
  }
  diag("hakmem: contract %c violated at %p: %s", contract, where, what);
  abort();
}

void ring_push_begins(uint64_t drops) { t_ring_drops_at_push = drops; }

void ring_push_returned(bool stored, uint64_t drops, uint32_t retries) {
  // The counter only rises, and other producers' drops can only raise it
  // further: if it did not rise, this push's drop was not counted.
  if (!stored && drops <= t_ring_drops_at_push)
    fire('A', "a push to a full ring returned without counting a drop", nullptr);
  // Retries come only from producers racing each other, never from waiting
  // for the consumer; a long run of them means the producer waited.
  if (retries > 10000) fire('A', "a ring producer spun waiting instead of dropping", nullptr);
}

void refill_enter() {
  if (t_refill_depth++ == 0)
    check_shapes_since_refill(-1, "a thread cache's capacity or batch changed outside a refill");
}
void refill_of_class(int cls) { t_refill_class = cls; }
void refill_leave() {
  if (--t_refill_depth != 0) return;
  check_shapes_since_refill(t_refill_class, "a refill changed the capacity or batch of another class's cache");
  t_refill_class = -1;
}
void policy_read() {
  if (t_refill_depth <= 0) fire('B', "a policy was read outside a refill", nullptr);
}
void learner_enter() {
  if (t_learner_depth++ != 0) return;
  for (int c = 0; c < kNumClasses; ++c) {
    const TlsBin& b = t_cache.bins[c];
    t_bins_at_learner_entry[c] = BinView{b.head, b.room, bin_shape(b)};
  }
}
void learner_leave() {
  if (--t_learner_depth != 0) return;
  for (int c = 0; c < kNumClasses; ++c) {
    const TlsBin& b = t_cache.bins[c];
    const BinView& was = t_bins_at_learner_entry[c];
    if (b.head != was.head || b.room != was.room || bin_shape(b) != was.shape) {
      fire('B', "the learner resized or flushed a thread cache", &t_cache.bins[c]);
      return;
    }
  }
}
void cache_reshaped() {
  if (t_learner_depth > 0) fire('B', "the learner resized or flushed a thread cache", nullptr);
}
void thread_cache_cleared() {
  for (int c = 0; c < kNumClasses; ++c) t_shape_after_refill[c] = bin_shape(t_cache.bins[c]);
}

void block_moved(const void* block, Place from, Place to) {
  LockGuard guard(g_shadow_lock);
  move_locked(block, from, to, 'C');
}

void list_moved(const void* head, uint32_t count, Place from, Place to) {
  LockGuard guard(g_shadow_lock);
  const void* b = head;
  for (uint32_t i = 0; i < count && b != nullptr; ++i) {
    move_locked(b, from, to, 'C');
    b = block_next(b);
  }
}

void big_block_moved(const void* block, Place from, Place to) { block_moved(block, from, to); }

Place block_place(const void* block) {
  LockGuard guard(g_shadow_lock);
  ShadowEntry* e = shadow_slot(reinterpret_cast<uintptr_t>(block), false);
  return e == nullptr ? Place::kSlab : e->place;
}

bool shadow_full() { return g_shadow_full.load(std::memory_order_relaxed); }

void limit_shadow_table_for_tests(size_t blocks) {
  LockGuard guard(g_shadow_lock);
  g_shadow_capacity = blocks < kShadowCapacity ? blocks : kShadowCapacity;
}

void blocks_leave_slab(const void* head, uint32_t count) {
  LockGuard guard(g_shadow_lock);
  const void* b = head;
  for (uint32_t i = 0; i < count && b != nullptr; ++i, b = block_next(b)) {
    // Recorded here, not only by C's move that follows in central_take: a
    // return must find every block that left, whoever took it.
    ShadowEntry* e = shadow_slot(reinterpret_cast<uintptr_t>(b), true);
    if (e != nullptr) e->returned = false;
  }
}

void block_returns_to_slab(const void* block, int cls) {
  Segment* seg = segment_lookup(block);
  if (seg == nullptr) {
    fire('F', "a block went back to a slab but lies in no segment", block);
    return;
  }
  const Run& s = seg->runs[entry_first_unit(segment_units(seg)[unit_of(block)])];
  if (s.kind != RunKind::kSlab || s.cls != cls) {
    fire('F', "a block went back to a run that is no live slab of its class (its slab went back already?)", block);
    return;
  }
  if (!on_carved_block_boundary(s, block)) {
    fire('F', "a block went back to its slab off a carved block boundary", block);
    return;
  }
  if (s.used != s.carved - s.free_count) fire('F', "a slab's used count disagrees with its free list", block);
  if (s.used == 0) fire('F', "a block went back to a slab that counts none of its blocks out", block);
  LockGuard guard(g_shadow_lock);
  ++g_slab_returns_checked;
  ShadowEntry* e = shadow_slot(reinterpret_cast<uintptr_t>(block), false);
  if (e == nullptr) {
    // Every block that left a slab was recorded, unless the table was full.
    if (!g_shadow_full.load(std::memory_order_relaxed))
      fire('F', "a block that never left its slab went back to it", block);
    return;
  }
  if (e->returned) {
    fire('F', "a block went back to its slab twice", block);
    return;
  }
  if (e->place != Place::kSlab) {
    char what[128];
    snprintf(what, sizeof what, "a block went back to its slab while it is in %s", place_name(e->place));
    fire('F', what, block);
  }
  e->returned = true;
}

void slab_goes_empty(const Run* slab) {
  Run* s = const_cast<Run*>(slab);
  if (s->free_count != s->carved) fire('F', "a slab went back to its segment with blocks still out", slab);
  const char* start = run_start(s);
  const size_t size = class_size(s->cls);
  LockGuard guard(g_shadow_lock);
  for (uint32_t i = 0; i < s->carved; ++i) {
    const ShadowEntry* e = shadow_slot(reinterpret_cast<uintptr_t>(start + i * size), false);
    if (e != nullptr && (!e->returned || e->place != Place::kSlab)) {
      char what[128];
      snprintf(what, sizeof what, "a slab went back to its segment while one of its blocks is in %s",
               e->place != Place::kSlab ? place_name(e->place) : "transit to it (not taken back yet)");
      fire('F', what, start + i * size);
      return;
    }
  }
}

uint64_t cross_thread_frees() {
  LockGuard guard(g_shadow_lock);
  return g_cross_thread_frees;
}

uint64_t slab_returns_checked() {
  LockGuard guard(g_shadow_lock);
  return g_slab_returns_checked;
}

void block_enters_list(const void* block, size_t cls) {
  Segment* seg = segment_lookup(block);
  if (seg == nullptr) {
    fire('E', "a block outside every segment entered a thread list", block);
    return;
  }
  const UnitEntry& e = segment_units(seg)[unit_of(block)];
  const Run& slab = seg->runs[entry_first_unit(e)];
  if (!tag_is_slab(e.tag)) {
    fire('E', "a block entered a thread list from a unit whose tag is not a slab tag", block);
  } else if (tag_class(e.tag) != cls) {
    fire('E', "a block entered the thread list of another class than its tag says", block);
  } else if (slab.kind != RunKind::kSlab || slab.cls != cls) {
    fire('E', "a unit tag disagrees with the slab descriptor it belongs to", block);
  } else if (e.check_c != class_info(static_cast<int>(cls)).check_c) {
    fire('E', "a unit's block-test multiplier is not its class's", block);
  } else if (!on_carved_block_boundary(slab, block)) {
    fire('E', "a block address is not on a carved block boundary of its slab", block);
  }
}

}  // namespace contracts
}  // namespace hakmem
