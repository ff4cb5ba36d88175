// Box 1: the thread cache. Per thread and size class, a singly linked list
// of free blocks (linked through their first word), its length and its
// capacity. This is the hot path: no locks, no atomics, no division.
#pragma once

#include "base/base.h"
#include "size_class/size_class.h"
#include "stats/stats.h"

namespace hakmem {

struct TlsBin {
  void* head;
  uint32_t count;
  uint16_t cap;    // 0 until the refill engine first sees this bin: the first free takes the slow path
  uint16_t batch;  // blocks per flush, from the policy of the last refill
};

struct ThreadCache {
  TlsBin bins[kNumClasses];
  ClassCounters counters[kNumClasses];
  // Slow-path bookkeeping.
  uint64_t ops_at_last_event[kNumClasses];  // allocs + frees when ACE last heard from a class
  ThreadCache* next;                        // registry of live threads (stats)
  ThreadCache* prev;
  bool registered;
  bool exiting;
};

extern HAK_TLS ThreadCache t_cache;

// Pops a block of class `cls`, or returns nullptr when the list is empty.
HAK_INLINE void* tls_cache_pop(int cls) {
  TlsBin& bin = t_cache.bins[cls];
  void* block = bin.head;
  if (HAK_UNLIKELY(block == nullptr)) return nullptr;
  bin.head = *static_cast<void**>(block);  // the link lives in the free block itself
  --bin.count;
  ++t_cache.counters[cls].allocs;          // plain add: this thread's own counter
  return block;
}

// Pushes a block; returns false when the list has grown past its capacity
// (the caller then flushes a batch to the central pool).
HAK_INLINE bool tls_cache_push(int cls, void* block) {
  TlsBin& bin = t_cache.bins[cls];
  *static_cast<void**>(block) = bin.head;
  bin.head = block;
  ++t_cache.counters[cls].frees;
  return HAK_LIKELY(++bin.count <= bin.cap);
}

}  // namespace hakmem
