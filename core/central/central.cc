#include "central/central.h"

#include "contracts/contracts.h"
#include "slab/slab.h"

namespace hakmem {

namespace {

// At most this many batches and bytes of a class wait in its pool; the rest
// go back to the slabs so that empty slabs can return to the OS. A wave of
// 1600 blocks of 4 KiB (glibc-simple's largest, 6.4 MiB, 200 batches of the
// default 8) fits: with 64 batches and 4 MiB, a third of each wave went
// back to its slabs block by block and was taken out again block by block
// (glibc-simple ran 13% slower, its peak RSS the same). The price: 64
// threads that end waves of frees in many classes at once peak higher
// (bench/idle-threads: 133 MiB against 118), until the decay. Batches no
// thread took for a whole decay period go back (central_decay).
constexpr uint32_t kMaxBatches = 256;
constexpr uint64_t kPoolBytesPerClass = 8u << 20;

// A class's shared state: its pool of batches and its slabs, and the lock
// that guards both (class_lock). Own cache lines: classes do not contend.
struct alignas(64) CentralClass {
  Lock lock;  // unused in an aligned class: see class_lock
  SlabClass slabs;
  uint32_t batches = 0;
  // The fewest batches the pool held since the last decay pass: that many sat
  // untouched for a whole period, and go back to their slabs at the next.
  uint32_t low_water = 0;
  uint64_t pooled_blocks = 0;
};

CentralClass g_central[kNumClasses];
// Each class's stack of batches (6 KiB), apart from the headers above, which
// every decay pass and fork touch: a class that never pools a batch never
// makes its stack's pages resident. Inside the headers, the stacks made
// every process 256 KiB larger from its first decay pass on.
BlockList g_stacks[kNumClasses][kMaxBatches];

// The lock of class `cls`: its own, or for an aligned class (size_class.h)
// that of the coloured size class it stands beside. Fork and hak_check_heap
// hold every class lock at once, and ThreadSanitizer's deadlock detector
// follows at most 64 locks held by one thread: 64 class locks, the thread
// registry's and the backend's would stop it (the TSan tests). Sharing costs
// no contention worth the name: page-aligned requests are rare.
Lock& class_lock(int cls) {
  return g_central[cls < kNumSizeClasses ? cls : size_to_class(class_step(cls))].lock;
}

}  // namespace

BlockList central_take(int cls, uint32_t want) {
  CentralClass& c = g_central[cls];
  LockGuard guard(class_lock(cls));
  if (c.batches > 0) {
    BlockList b = g_stacks[cls][--c.batches];
    c.pooled_blocks -= b.count;
    if (c.batches < c.low_water) c.low_water = c.batches;
    HAK_CONTRACT(contracts::list_moved(b.head, b.count, contracts::Place::kCentral, contracts::Place::kTls));
    return b;
  }
  BlockList fresh = slab_take_blocks(c.slabs, cls, want);
  HAK_CONTRACT(contracts::list_moved(fresh.head, fresh.count, contracts::Place::kSlab, contracts::Place::kTls));
  return fresh;
}

void central_give(int cls, BlockList list) {
  if (list.count == 0) return;
  HAK_CONTRACT(contracts::list_moved(list.head, list.count, contracts::Place::kTls, contracts::Place::kCentral));
  CentralClass& c = g_central[cls];
  LockGuard guard(class_lock(cls));
  uint64_t pooled_bytes = (c.pooled_blocks + list.count) * class_size(cls);
  if (c.batches < kMaxBatches && pooled_bytes <= kPoolBytesPerClass) {
    g_stacks[cls][c.batches++] = list;
    c.pooled_blocks += list.count;
    return;
  }
  HAK_CONTRACT(contracts::list_moved(list.head, list.count, contracts::Place::kCentral, contracts::Place::kSlab));
  slab_return_blocks(c.slabs, cls, list);
}

namespace {

// Sends the `n` oldest batches (the bottom of the stack) back to their slabs.
void return_oldest_locked(int cls, CentralClass& c, uint32_t n) {
  BlockList* const stack = g_stacks[cls];
  for (uint32_t i = 0; i < n; ++i) {
    const BlockList& b = stack[i];
    HAK_CONTRACT(contracts::list_moved(b.head, b.count, contracts::Place::kCentral, contracts::Place::kSlab));
    c.pooled_blocks -= b.count;
    slab_return_blocks(c.slabs, cls, b);
  }
  for (uint32_t i = n; i < c.batches; ++i) stack[i - n] = stack[i];
  c.batches -= n;
  c.low_water = c.batches;
}

}  // namespace

void central_drain(int cls) {
  CentralClass& c = g_central[cls];
  LockGuard guard(class_lock(cls));
  return_oldest_locked(cls, c, c.batches);
  slab_purge_free_pages(c.slabs, cls, true);
}

void central_decay() {
  for (int cls = 0; cls < kNumClasses; ++cls) {
    CentralClass& c = g_central[cls];
    Lock& lock = class_lock(cls);
    if (!lock.try_lock()) continue;  // busy, so not idle: the next pass will see it
    return_oldest_locked(cls, c, c.low_water);
    slab_purge_free_pages(c.slabs, cls, false);
    lock.unlock();
  }
}

uint64_t central_pooled_blocks(int cls) {
  LockGuard guard(class_lock(cls));
  return g_central[cls].pooled_blocks;
}

uint64_t central_slab_count(int cls) { return g_central[cls].slabs.slabs.load(std::memory_order_relaxed); }

void central_lock_all() {
  for (int cls = 0; cls < kNumSizeClasses; ++cls) g_central[cls].lock.lock();  // every class_lock
}
void central_unlock_all() {
  for (int cls = 0; cls < kNumSizeClasses; ++cls) g_central[cls].lock.unlock();
}
void central_fork_child() {
  for (int cls = 0; cls < kNumSizeClasses; ++cls) g_central[cls].lock.reinit_in_child();
}

}  // namespace hakmem
