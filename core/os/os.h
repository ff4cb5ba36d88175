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
// Address space without memory: `size` bytes aligned to `align`, charged to
// nothing until committed and left out of core dumps. `readable`: it reads
// as zeros (a table that free() may read before anything is written there);
// otherwise any access faults (PROT_NONE: unused heap, guard pages).
// `random_hint`, when not 0, asks for the reservation at an address drawn
// from it (see os_reserve_random); nullptr when the kernel refuses.
void* os_reserve(size_t size, size_t align, bool readable);
// The same at an unpredictable address: a reservation placed by the kernel
// lies at a fixed distance from the mappings made just before and after it,
// so a write at a known offset from a heap pointer could reach it. Tries
// addresses drawn from `seed` in the upper half of the user address space
// before letting the kernel choose.
void* os_reserve_random(size_t size, size_t align, bool readable, uint64_t seed);
// Turns part of a reservation into zeroed read-write memory, or back into
// reserved space (reading as zeros when `readable`, else faulting) that
// holds no memory. The range is never left unmapped in between.
bool os_commit(void* p, size_t size);
void os_decommit(void* p, size_t size, bool readable);
// Makes page-aligned memory of the library's own read-only for good: values
// written once at initialisation (HAK_SEALED_PAGE).
void os_seal(void* p, size_t size);
// Makes a committed range inaccessible (a guard page), or accessible again.
bool os_protect_none(void* p, size_t size);
bool os_protect_rw(void* p, size_t size);
// Whether the process runs under an address-space limit (RLIMIT_AS), which
// reserved space would count against.
bool os_address_space_limited();
// Gives the pages back (RSS falls at once); the range stays mapped and reads
// as zero on next touch.
void os_purge(void* p, size_t size);
// Clears [p, p + size) (page-aligned), writing only the pages that are
// resident: a page never touched, or purged, reads as zeros already, and
// writing it would fault it in for nothing.
void os_clear_resident(void* p, size_t size);
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
