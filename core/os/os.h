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
// Address space without memory: `size` bytes aligned to `align`, read-only
// and reading as zeros, charged to nothing until committed and left out of
// core dumps. nullptr when the kernel refuses.
void* os_reserve(size_t size, size_t align);
// Turns part of a reservation into zeroed read-write memory, or back into
// zeros that hold no memory. The range is never left unmapped in between.
bool os_commit(void* p, size_t size);
void os_decommit(void* p, size_t size);
// Whether the process runs under an address-space limit (RLIMIT_AS), which
// reserved space would count against.
bool os_address_space_limited();
// Gives the pages back (RSS falls at once); the range stays mapped and reads
// as zero on next touch.
void os_purge(void* p, size_t size);
// Moves/grows the mapping [old, old+old_size) to exactly `target` with
// `new_size` bytes, without copying the pages. True on success.
bool os_remap_to(void* old_p, size_t old_size, void* target, size_t new_size);
// Grows or shrinks a mapping where it stands. True on success.
bool os_remap_in_place(void* p, size_t old_size, size_t new_size);

// Monotonic milliseconds (vDSO, no syscall on x86_64); also remembered for
// os_recent_ms().
uint64_t os_now_ms();
// The value the last os_now_ms() call (in any thread) read: no clock read at
// all, for timestamps that only need to be about right (decay ages; the
// front's decay poll reads the clock often enough).
uint64_t os_recent_ms();
// Current and peak resident set size of the process, in bytes.
size_t os_rss_bytes();
size_t os_peak_rss_bytes();

}  // namespace hakmem
