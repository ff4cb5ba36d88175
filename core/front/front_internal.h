// The front's own declarations, shared by its files and by no other box:
// front.cc (the hot path and its slow exits), api.cc (the rest of the API),
// lifecycle.cc (init, decay, the purge thread, fork).
#pragma once

#include <stddef.h>

#include "base/base.h"

namespace hakmem {

// front.cc
// hak_malloc and hak_free under hidden names (aliases, front.cc): the
// front's other files call these, straight, where a call to the exported
// names would go through the PLT.
void* front_malloc(size_t size);
void front_free(void* p);
// Spans and huge blocks (size above the mid limit, or an alignment no
// class gives): errno set and NULL on failure; zeroed if `zero`.
HAK_NOINLINE void* big_alloc(size_t size, size_t align, bool zero);
// Allocation with an alignment (a power of two) and optional zeroing.
void* alloc_aligned(size_t align, size_t size, bool zero);
// The class of p if p is the start of a slab block, else -1.
int slab_class_of(const void* p);
// A free (or realloc) of a pointer that is no live block: counted and, by
// setting, reported; the hardened variant stops the program. `ours`: it
// lies in hakmem's memory.
void count_bad_free(void* p, bool ours);
bool in_our_memory(const void* p);

// lifecycle.cc
// Runs the decay when its clock says so (DESIGN.md: returns memory).
void decay_poll();
// Starts the purge thread when it is wanted and not running.
void purge_thread_maybe_start();

}  // namespace hakmem
