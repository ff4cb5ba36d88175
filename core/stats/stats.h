// Stats: the one counter type and the process-wide totals. Each thread
// counts in its own cache (plain adds: no atomics on the hot path) and merges
// into the shared totals when it exits; reports add the live threads' counts.
#pragma once

#include <atomic>

#include "base/base.h"
#include "size_class/size_class.h"

struct hak_stats;

namespace hakmem {

// Counters of one size class as one thread sees them.
struct ClassCounters {
  uint64_t allocs;
  uint64_t frees;
  uint64_t misses;    // allocations that found the thread cache empty
  uint64_t refills;   // batches brought into the thread cache
  uint64_t flushes;   // batches sent from the thread cache to the central pool
};

// A counter written by many threads: relaxed atomic adds, slow paths only.
class SharedCounter {
 public:
  void add(uint64_t n) { v_.fetch_add(n, std::memory_order_relaxed); }
  void sub(uint64_t n) { v_.fetch_sub(n, std::memory_order_relaxed); }
  uint64_t get() const { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> v_{0};
};

struct SharedClassCounters {
  SharedCounter allocs, frees, misses, refills, flushes;
};

struct GlobalCounters {
  SharedClassCounters cls[kNumClasses];  // merged from exited threads
  SharedCounter large_allocs, large_frees, large_live_bytes;
  SharedCounter huge_allocs, huge_frees, huge_live_bytes, huge_mapped_bytes;
  SharedCounter foreign_frees, invalid_frees;
};
extern GlobalCounters g_counters;

// Adds one thread's per-class counters into the totals.
void stats_merge(const ClassCounters* per_class);
// Adds the totals into `out` (per class and the large/huge/bad-free figures).
void stats_add_totals(hak_stats* out);
// The human-readable report: one line per class in use, then the memory figures.
void stats_write_report(const hak_stats& s, int fd);

}  // namespace hakmem
