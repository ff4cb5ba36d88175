// Central pool: per size class, shared by all threads. It holds whole
// batches of free blocks (BlockList: head, tail and count), so that handing a
// batch over costs one lock, never a walk over its blocks. Beyond its
// capacity, blocks go back to their slabs. Each class's state -- the pool,
// the class's slabs (SlabClass: the partly free ones and their count) and
// the one lock that guards both, which an aligned class shares with the
// coloured class beside it -- lives here; the slab box works on the
// slabs only inside these calls, under that lock.
#pragma once

#include "base/base.h"
#include "size_class/size_class.h"

namespace hakmem {

// Takes one batch, or carves up to `want` blocks from the class's slabs when
// the pool is empty. An empty list: out of memory.
BlockList central_take(int cls, uint32_t want);
// Hands over a closed list.
void central_give(int cls, BlockList list);
// Sends every pooled batch back to its slabs (malloc_trim).
void central_drain(int cls);
// One decay pass over every class: batches that stayed in the pool since the
// last pass go back to their slabs, so that scattered free blocks stop
// pinning slabs the program no longer uses. Skips a class whose lock is busy.
void central_decay();
// Blocks pooled for a class (stats).
uint64_t central_pooled_blocks(int cls);
// Slabs a class holds (stats; without its lock: a refill in flight may
// leave it one behind).
uint64_t central_slab_count(int cls);

// Every class lock, in class order (fork, heap checks: slab counts change
// only under these).
void central_lock_all();
void central_unlock_all();
void central_fork_child();

}  // namespace hakmem
