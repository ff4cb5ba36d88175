/* hakmem: a fast, checked memory allocator for Linux x86_64.
 *
 * The prefixed API below is always available. The release library also
 * replaces the C allocator (malloc, free, ... and every C++ operator new and
 * delete) when preloaded (LD_PRELOAD=libhakmem.so) or linked (-lhakmem).
 * Semantics follow glibc's: see README.md. */
#ifndef HAKMEM_H
#define HAKMEM_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The version of this header and of the library built with it (CMakeLists.txt
 * reads it from here; the shared library's soname carries the major). */
#define HAKMEM_VERSION_MAJOR 0
#define HAKMEM_VERSION_MINOR 1
#define HAKMEM_VERSION_PATCH 0
#define HAKMEM_VERSION_STRING "0.1.0"

#define HAK_API __attribute__((visibility("default")))

HAK_API void* hak_malloc(size_t size);
HAK_API void hak_free(void* ptr);
HAK_API void* hak_calloc(size_t count, size_t size);
HAK_API void* hak_realloc(void* ptr, size_t size);
HAK_API void* hak_reallocarray(void* ptr, size_t count, size_t size);
HAK_API int hak_posix_memalign(void** out, size_t alignment, size_t size);
HAK_API void* hak_aligned_alloc(size_t alignment, size_t size);
HAK_API void* hak_memalign(size_t alignment, size_t size);
HAK_API void* hak_valloc(size_t size);
HAK_API void* hak_pvalloc(size_t size);
HAK_API size_t hak_malloc_usable_size(const void* ptr);
/* Frees `ptr`, which the caller says holds `size` bytes (C++ sized delete). */
HAK_API void hak_free_sized(void* ptr, size_t size);

/* 1 if `ptr` is the start of a live-or-cached block that hakmem handed out
 * (any size range), 0 otherwise. Never writes memory. */
HAK_API int hak_owns(const void* ptr);

#define HAK_NUM_CLASSES 64  /* 49 size classes, then 15 classes of page-aligned blocks */

typedef struct hak_class_stats {
  uint64_t block_size;
  uint64_t allocs;      /* blocks handed to the program */
  uint64_t frees;
  uint64_t tls_misses;  /* allocations that had to refill the thread cache */
  uint64_t refills;     /* batches taken from the central pool or slabs */
  uint64_t flushes;     /* batches handed back by thread caches */
  uint64_t slabs;       /* slabs currently held by the class */
} hak_class_stats;

typedef struct hak_stats {
  hak_class_stats classes[HAK_NUM_CLASSES];
  uint64_t large_allocs, large_frees, large_live_bytes;
  uint64_t huge_allocs, huge_frees, huge_live_bytes, huge_cached_bytes;
  uint64_t segments;
  uint64_t bytes_mapped;      /* segments and huge mappings, now */
  uint64_t bytes_in_use;      /* blocks in the program's hands, now */
  uint64_t bytes_dirty;       /* freed, not yet returned to the OS */
  uint64_t bytes_returned;    /* returned to the OS (madvise/munmap), cumulative */
  uint64_t foreign_frees;     /* frees of pointers hakmem never handed out */
  uint64_t invalid_frees;     /* frees of interior or damaged pointers */
  uint64_t rss_bytes, peak_rss_bytes;
  /* The segment arena, address space reserved so that free() finds a
   * block's metadata fastest (0 bytes: none, HAKMEM_ARENA=0 or an
   * address-space limit); segments outside it work alike, a little slower. */
  uint64_t arena_base, arena_bytes;
  uint64_t segments_outside_arena;
  /* Freed blocks waiting in live threads' caches for their next malloc, now
   * (all threads' caches together hold about HAKMEM_THREAD_CACHES MiB at
   * most). */
  uint64_t thread_cache_bytes;
} hak_stats;

/* Fills `out` with counters summed over all threads (live and exited). */
HAK_API void hak_stats_get(hak_stats* out);
/* Writes the statistics report to `out` (stderr when NULL). */
HAK_API void hak_stats_print(FILE* out);
/* Returns cached and dirty memory to the OS now. */
HAK_API void hak_trim(void);
/* jemalloc's control interface, for programs written for jemalloc (the
 * drop-in library exports it as `mallctl`). Names answered:
 *   "epoch" (uint64_t, read/write: refreshes the figures below),
 *   "stats.allocated", "stats.active", "stats.resident", "stats.mapped",
 *   "stats.retained" (size_t, read-only),
 *   "stats.arenas.<i>.pactive", "stats.arenas.<i>.pdirty",
 *   "stats.arenas.<i>.pmuzzy" (size_t pages, read-only),
 *   "arenas.narenas" (unsigned, read-only: 1),
 *   "arena.<i>.purge", "arena.<i>.decay" (no value: hak_trim),
 *   "thread.tcache.flush" (no value: the calling thread's cache),
 *   "background_thread" (bool, read/write: the purge thread).
 * <i> is 0, 1 (jemalloc's "every arena" as arenas.narenas) or 4096
 * (MALLCTL_ARENAS_ALL). Returns 0, or as jemalloc does: ENOENT for an
 * unknown name, EINVAL for a value of the wrong size (as much as fits is
 * copied), EPERM for a write to a read-only name. */
HAK_API int hak_mallctl(const char* name, void* oldp, size_t* oldlenp, void* newp, size_t newlen);
/* Walks every segment and checks that tags, slab counts and free lists agree.
 * Returns the number of inconsistencies (0 when consistent). */
HAK_API int hak_check_heap(void);

#ifdef __cplusplus
}
#endif

#endif /* HAKMEM_H */
