// Box 1: the thread cache. Per thread and size class, a singly linked list
// of free blocks (linked through their first word) and its room left. This
// is the hot path: no locks, no atomics, no division.
#pragma once

#include "base/base.h"
#include "contracts/contracts.h"
#include "size_class/size_class.h"
#include "stats/stats.h"

namespace hakmem {

struct TlsBin {
  void* head;
  // cap - count. A push that drives it below zero means "over capacity":
  // one decrement and one sign test instead of a load, compare and store.
  // Zero in a fresh thread, so its first free takes the slow path.
  int32_t room;
  uint16_t cap;     // from the policy of the last refill (0: the refill engine has not seen this bin)
  uint16_t batch;   // blocks per flush, same source
  uint64_t frees;   // the one counter on the hot path; allocations are derived (tls_cache_counts)
  int64_t net_in;   // blocks the refill engine brought in minus those it sent out
};
static_assert(sizeof(TlsBin) == 32, "a bin is indexed with one shift");

struct ThreadCache {
  TlsBin bins[kNumClasses];
  ClassCounters counters[kNumClasses];      // slow-path counts: misses, refills, flushes
  uint64_t ops_at_last_event[kNumClasses];  // allocs + frees when ACE last heard from a class
  ThreadCache* next;                        // registry of live threads (stats)
  ThreadCache* prev;
  bool registered;
  // Set once the thread's exit hook has run. glibc still frees (and may
  // allocate) after the last key destructor; such a thread keeps no cache
  // and never registers again, since nothing would unregister it.
  bool exited;
};

extern HAK_TLS ThreadCache t_cache;

HAK_INLINE uint32_t tls_bin_count(const TlsBin& bin) {
  return static_cast<uint32_t>(static_cast<int32_t>(bin.cap) - bin.room);
}

// Pops a block of class `cls`, or returns nullptr when the list is empty.
HAK_INLINE void* tls_cache_pop(size_t cls) {
  TlsBin& bin = t_cache.bins[cls];
  void* block = bin.head;
  if (HAK_UNLIKELY(block == nullptr)) return nullptr;
  bin.head = *static_cast<void**>(block);  // the link lives in the free block itself
  ++bin.room;
  return block;
}

// Pushes a block; returns false when the list has grown past its capacity
// (the caller then flushes a batch to the central pool).
HAK_INLINE bool tls_cache_push(size_t cls, void* block) {
  HAK_CONTRACT(contracts::block_enters_list(block, cls));
  TlsBin& bin = t_cache.bins[cls];
  *static_cast<void**>(block) = bin.head;
  bin.head = block;
  ++bin.frees;
  return HAK_LIKELY(--bin.room >= 0);
}

// A class's counters in one thread, allocations included: every block the
// thread's list ever held arrived by refill or by free, and left by
// allocation or flush, so allocs = net_in + frees - count.
inline ClassCounters tls_cache_counts(const ThreadCache& tc, int cls) {
  const TlsBin& bin = tc.bins[cls];
  ClassCounters c = tc.counters[cls];
  c.frees = bin.frees;
  c.allocs = static_cast<uint64_t>(bin.net_in + static_cast<int64_t>(bin.frees) - tls_bin_count(bin));
  return c;
}

}  // namespace hakmem
