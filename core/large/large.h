// Large box: blocks above the mid limit (128 KiB), and blocks whose alignment
// no size class gives.
//   - large: up to 2 MiB, a span of 64 KiB units inside a segment (the same
//     backend as slabs; the span's first unit carries kTagLarge);
//   - huge: above that, a mapping of its own whose header sits in the page
//     just below the block; the block starts on a 4 MiB boundary, so each
//     4 MiB slot holds at most one huge block and free() finds it through the
//     segment map. Freed huge mappings wait in a small cache for reuse and
//     grow or shrink with mremap on realloc.
#pragma once

#include "base/base.h"
#include "size_class/size_class.h"

namespace hakmem {

constexpr size_t kLargeMax = size_t{2} << 20;

// `size` bytes aligned to `align` (a power of two). *zeroed is set when the
// memory is known to read as zero (fresh from the kernel).
void* large_alloc(size_t size, size_t align, bool* zeroed);
// Frees a block whose pointer lies in a segment unit tagged large, or in a
// slot marked huge. Returns false (and touches nothing) if p is not the start
// of such a block.
bool large_free(void* p);
// Usable size of a large or huge block p, or 0 if p is not one.
size_t large_usable_size(const void* p);
// Resizes a large span where it stands (growing into the free units after
// it, or giving its tail back) when `new_size` is still a span's size.
// Returns false, and changes nothing, when p is no span or cannot be resized
// in place.
bool large_resize_in_place(void* p, size_t new_size);
// Resizes a huge block with mremap (no copy). Returns the new pointer, or
// nullptr if p is not huge or the kernel refused (p is then untouched).
void* huge_resize(void* p, size_t new_size);
// ---- Spans a thread keeps for reuse ----
// A span of up to kParkMax bytes that the program frees can wait in its
// thread's cache (refill_span_park) instead of going back to the backend:
// its trip through the backend -- the backend lock, a search of the
// segments, its units' entries written twice -- cost a malloc + free of 256
// KiB about 90 ns; a parked span comes back for one atomic exchange on its
// thread's slot. Its run stays claimed and tagged kTagLargeParked, so
// that a second free of it, malloc_usable_size and hak_owns all see no
// block. Off in the hardened variant (a freed span is cleared and its reuse
// must not be predictable) and under the memory checkers (which must see
// it freed). A span's word: its start (64 KiB aligned) | its units.
constexpr size_t kParkMax = size_t{1} << 20;
constexpr bool kParkSpans = !kHardened && !kMemoryChecker;
// The units of a span of `size` usable bytes that may be parked
// (kParkSpans: no guard pages), and a parked span's usable size: inline,
// as a park and a take are a few dozen instructions each.
HAK_INLINE uint32_t large_park_units(size_t size) { return static_cast<uint32_t>((size + kUnitSize - 1) >> kUnitShift); }
HAK_INLINE size_t large_parked_usable(uintptr_t word) { return static_cast<size_t>(word & kUnitOffsetMask) << kUnitShift; }
// Parks p if it is the start of a live span of at most kParkMax bytes, and
// returns its word; else 0 and nothing changes. The caller counts it freed.
uintptr_t large_park(void* p);
// A parked span handed out again (the caller counts it allocated): its block.
void* large_unpark(uintptr_t word);
// A parked span goes back to the backend (counted as freed already).
void large_free_parked(uintptr_t word);

// Unmaps the cached huge mappings that waited longer than the decay, unless
// another thread holds the cache (the front's decay poll never waits).
void huge_cache_decay();
// Unmaps every cached huge mapping.
void huge_cache_trim();
uint64_t huge_cached_bytes();

void large_fork_prepare();
void large_fork_parent();
void large_fork_child();

}  // namespace hakmem
