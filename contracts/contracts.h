// The contract checkers of DESIGN.md §4, wired into the box boundaries.
//
// Each hook is written as HAK_CONTRACT(contracts::hook(...)) at its boundary.
// In the contracts build (-DHAKMEM_CONTRACTS=ON) the hooks run and a broken
// contract "fires": by default a one-line diagnosis on stderr and abort();
// tests install a handler instead. In release the macro expands to nothing,
// so the hooks' arguments are not even evaluated.
#pragma once

#include <stddef.h>
#include <stdint.h>

#ifdef HAKMEM_CONTRACTS
#define HAK_CONTRACT(call) (call)
#else
#define HAK_CONTRACT(call) ((void)0)
#endif

namespace hakmem {
struct Run;
namespace contracts {

// ---- reporting ----
// contract: 'A'..'F'. Returning from the handler lets the program go on.
using FireHandler = void (*)(char contract, const char* what, const void* where);
void set_fire_handler(FireHandler handler);  // nullptr: back to diagnose-and-abort
uint64_t fire_count(char contract);
void fire(char contract, const char* what, const void* where);

// ---- A: a bounded queue never blocks its producer ----
// A ring reports its drop counter as a push starts and again as it returns
// (with `stored`, the push's result, and `retries`, the extra turns of its
// loop), so that the checker sees what the ring did rather than what its
// full-push path believes it did. A push that stored nothing must have
// counted a drop.
void ring_push_begins(uint64_t drops);
void ring_push_returned(bool stored, uint64_t drops, uint32_t retries);

// ---- B: a policy takes effect at the next refill, and only there ----
// The checker keeps, per thread, each bin's cap and batch as the last refill
// left them. Any writer is caught, hooked or not: a change found as the next
// refill begins happened outside a refill, and a refill that leaves another
// class's bin changed reshaped a cache that was not its own.
void refill_enter();
void refill_of_class(int cls);  // the class the refill in progress works on
void refill_leave();
void policy_read();         // fires outside a refill
// The learner runs inside refills (an event may trigger a step), so its scope
// gets a view of its own: the thread's bins, contents included, must leave
// it as they entered it.
void learner_enter();
void learner_leave();
void cache_reshaped();      // a thread cache's cap or contents changed: fires inside the learner
// The thread's exit hook cleared its cache: the one sanctioned change outside
// a refill (no policy involved).
void thread_cache_cleared();

// ---- C: every block is in exactly one place ----
enum class Place : uint8_t { kSlab = 0, kTls = 1, kCentral = 2, kUser = 3 };
// Moves `block` from `from` to `to` in the shadow state; fires if it was elsewhere.
void block_moved(const void* block, Place from, Place to);
// The same for a list of `count` blocks linked through their first word.
void list_moved(const void* head, uint32_t count, Place from, Place to);
// A large or huge block handed out (to the user) or given back.
void big_block_moved(const void* block, Place from, Place to);
Place block_place(const void* block);  // kSlab when never seen
// The shadow table has a fixed size. Once it is full, blocks it has not seen
// yet are no longer checked: that is reported once (a diag line) and from
// then on shadow_full() is true.
bool shadow_full();
// Tests only: lets the table count itself full after `blocks` tracked
// blocks, so a test can fill it without millions of allocations.
void limit_shadow_table_for_tests(size_t blocks);

// ---- F: a block freed by another thread goes back exactly once ----
// The shadow table of C also keeps, per block, the thread it was handed to
// and whether its slab took it back; slab accounting is checked against it.
// A list of blocks that slab_take_blocks hands out (they left their slabs).
void blocks_leave_slab(const void* head, uint32_t count);
// slab_return_blocks, for each block before its slab's counts change: fires
// if the block is not a carved block of a live slab of `cls`, if its slab
// took it back already, or if its slab counts fewer blocks out than this.
void block_returns_to_slab(const void* block, int cls);
// A slab about to go back to its segment: fires if the shadow table has any
// of its blocks outside it (its used count reached zero too early).
void slab_goes_empty(const Run* slab);
// Frees of a slab block by another thread than the one it was handed to.
uint64_t cross_thread_frees();
// Blocks whose return to their slab the checker has seen.
uint64_t slab_returns_checked();

// ---- E: tags agree with the slabs they describe ----
// A block about to be pushed onto the thread list of class `cls`.
void block_enters_list(const void* block, size_t cls);

}  // namespace contracts
}  // namespace hakmem
