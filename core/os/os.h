// OS layer: the only box that talks to the kernel about memory
// (mmap, munmap, madvise, mremap) and reads the clock and RSS.
#pragma once

#include "base/base.h"

namespace hakmem {

constexpr size_t kOsPageSize = 4096;

// Maps `size` bytes (a multiple of the page size) of zeroed, read-write
// memory whose address plus `offset` is a multiple of `align` (a power of
// two >= page size). Returns nullptr when the kernel refuses.
void* os_map_aligned(size_t size, size_t align, size_t offset = 0);
void os_unmap(void* p, size_t size);
// Gives the pages back (RSS falls at once); the range stays mapped and reads
// as zero on next touch.
void os_purge(void* p, size_t size);
// Moves/grows the mapping [old, old+old_size) to exactly `target` with
// `new_size` bytes, without copying the pages. True on success.
bool os_remap_to(void* old_p, size_t old_size, void* target, size_t new_size);
// Grows or shrinks a mapping where it stands. True on success.
bool os_remap_in_place(void* p, size_t old_size, size_t new_size);

// Monotonic milliseconds (vDSO, no syscall on x86_64).
uint64_t os_now_ms();
// Current and peak resident set size of the process, in bytes.
size_t os_rss_bytes();
size_t os_peak_rss_bytes();

}  // namespace hakmem
