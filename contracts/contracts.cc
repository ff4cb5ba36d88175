// Contract checkers. Compiled into the library only in the contracts build.
#include "contracts/contracts.h"

#include <stdio.h>
#include <stdlib.h>

#include <atomic>

#include "base/base.h"
#include "os/os.h"
#include "slab/slab.h"

namespace hakmem {
namespace contracts {

namespace {

std::atomic<FireHandler> g_handler{nullptr};
std::atomic<uint64_t> g_fires[6];

HAK_TLS int t_refill_depth;
HAK_TLS int t_learner_depth;
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
};
ShadowEntry* g_shadow = nullptr;
Lock g_shadow_lock;
size_t g_shadow_tracked = 0;
size_t g_shadow_capacity = kShadowCapacity;
// Sticky: a block left out while the table was full and recorded later would
// look as if it had been in its slab all along, and its next move would fire
// for nothing. Atomic only so that shadow_full() can read it without the lock.
std::atomic<bool> g_shadow_full{false};

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

void refill_enter() { ++t_refill_depth; }
void refill_leave() { --t_refill_depth; }
void policy_read() {
  if (t_refill_depth <= 0) fire('B', "a policy was read outside a refill", nullptr);
}
void learner_enter() { ++t_learner_depth; }
void learner_leave() { --t_learner_depth; }
void cache_reshaped() {
  if (t_learner_depth > 0) fire('B', "the learner resized or flushed a thread cache", nullptr);
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

void block_enters_list(const void* block, size_t cls) {
  Segment* seg = segment_lookup(block);
  if (seg == nullptr) {
    fire('E', "a block outside every segment entered a thread list", block);
    return;
  }
  const UnitEntry& e = segment_units(seg)[unit_of(block)];
  const Slab& slab = seg->slabs[entry_first_unit(e)];
  if (!tag_is_slab(e.tag)) {
    fire('E', "a block entered a thread list from a unit whose tag is not a slab tag", block);
  } else if (tag_class(e.tag) != cls) {
    fire('E', "a block entered the thread list of another class than its tag says", block);
  } else if (slab.kind != RunKind::kSlab || slab.cls != cls) {
    fire('E', "a unit tag disagrees with the slab descriptor it belongs to", block);
  } else if (e.check_c != class_info(static_cast<int>(cls)).check_c) {
    fire('E', "a unit's block-test multiplier is not its class's", block);
  } else {
    size_t off = reinterpret_cast<uintptr_t>(block) + e.minus_run_start;
    if (off % class_size(cls) != 0 || off / class_size(cls) >= slab.carved)
      fire('E', "a block address is not on a carved block boundary of its slab", block);
  }
}

}  // namespace contracts
}  // namespace hakmem
