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
