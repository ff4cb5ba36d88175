// The rest of the API: calloc, realloc, aligned allocation, usable size,
// ownership, statistics, trim and the heap check, with their drop-in
// symbols. The hot path (hak_malloc, hak_free) is front.cc's.
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "central/central.h"
#include "front/front.h"
#include "front/front_internal.h"
#include "large/large.h"
#include "os/os.h"
#include "refill/refill.h"
#include "size_class/size_class.h"
#include "slab/slab.h"
#include "stats/stats.h"
#include "tls_cache/tls_cache.h"

using namespace hakmem;

namespace {

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
    out->thread_cache_bytes += uint64_t{tls_bin_count(tc->bins[c])} * class_size(c);
  }
  const SpanCounts k = tls_span_counts(*tc);
  out->large_allocs += k.taken;
  out->large_frees += k.parked;
  out->large_live_bytes += k.bytes_taken - k.bytes_parked;
}

void add_totals(void* arg) { stats_add_totals(static_cast<hak_stats*>(arg)); }

}  // namespace

extern "C" void* hak_calloc(size_t count, size_t size) {
  size_t total;
  if (__builtin_mul_overflow(count, size, &total)) {
    errno = ENOMEM;
    return nullptr;
  }
  if (total <= kSlabMax) {
    void* p = front_malloc(total);
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
    return class_size(cls) - class_canary_bytes(class_size(cls));
  }
  return large_usable_size(p);  // freed spans and huge blocks are no blocks at all: 0
}

}  // namespace

extern "C" size_t hak_malloc_usable_size(const void* p) { return live_usable_size(p, "malloc_usable_size"); }

extern "C" void* hak_realloc(void* p, size_t size) {
  if (p == nullptr) return front_malloc(size);
  if (size == 0) {  // glibc: realloc(p, 0) frees p and returns NULL
    front_free(p);
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
  // The units in its way may be a span this thread parked (a buffer freed
  // after an earlier round of growth): they go back to the backend, and the
  // span tries once more before it is copied.
  if (old > kSlabMax && size > kSlabMax && size <= kLargeMax &&
      (large_resize_in_place(p, size) || (kParkSpans && refill_spans_flush() && large_resize_in_place(p, size)))) {
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
  void* q = front_malloc(want);
  if (q == nullptr && want != size) q = front_malloc(size);
  if (q == nullptr) return nullptr;  // errno set; p stays valid
  memcpy(q, p, size < old ? size : old);
  front_free(p);
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

extern "C" void hak_free_sized(void* p, size_t) { front_free(p); }

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
    k.slabs = central_slab_count(c);
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
  if (kParkSpans) refill_spans_decay();  // other threads' parked spans too
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

#ifdef HAKMEM_OVERRIDE
#define HAK_ALIAS(name) __attribute__((alias(#name), used, visibility("default")))
extern "C" {
void* calloc(size_t, size_t) HAK_ALIAS(hak_calloc);
void* realloc(void*, size_t) HAK_ALIAS(hak_realloc);
void* reallocarray(void*, size_t, size_t) HAK_ALIAS(hak_reallocarray);
int posix_memalign(void**, size_t, size_t) HAK_ALIAS(hak_posix_memalign);
void* aligned_alloc(size_t, size_t) HAK_ALIAS(hak_aligned_alloc);
void* memalign(size_t, size_t) HAK_ALIAS(hak_memalign);
void* valloc(size_t) HAK_ALIAS(hak_valloc);
void* pvalloc(size_t) HAK_ALIAS(hak_pvalloc);
size_t malloc_usable_size(void*) HAK_ALIAS(hak_malloc_usable_size);
// glibc's internal names, which some programs and libraries call directly.
void* __libc_calloc(size_t, size_t) HAK_ALIAS(hak_calloc);
void* __libc_realloc(void*, size_t) HAK_ALIAS(hak_realloc);
void* __libc_memalign(size_t, size_t) HAK_ALIAS(hak_memalign);
void* __libc_valloc(size_t) HAK_ALIAS(hak_valloc);
void* __libc_pvalloc(size_t) HAK_ALIAS(hak_pvalloc);
int __posix_memalign(void**, size_t, size_t) HAK_ALIAS(hak_posix_memalign);
}  // extern "C"
#endif  // HAKMEM_OVERRIDE
