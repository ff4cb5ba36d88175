// Box 2: the refill engine. When a thread cache runs dry it brings a batch in
// from the central pool (or fresh slab blocks); when a cache grows past its
// capacity it sends a batch out. Batch size and capacity come from the ACE
// policy, read here and nowhere else (contract B). Also owns the thread
// lifecycle: registration on first use, hand-back of cached blocks at exit.
#pragma once

#include "base/base.h"

namespace hakmem {

// Process initialisation of the engine (the thread-exit hook). Called once by the front.
void refill_init();
// The slow half of malloc for a small/mid class: refills the thread cache and
// returns one block, or nullptr when memory is exhausted.
void* refill_alloc(int cls);
// The slow half of free: the cache of `cls` is over capacity; flush a batch.
void refill_flush(int cls);
// Registers this thread (its cache, and the hardened variant's slot
// arrays) if it has not yet; false for a thread whose exit hook has run.
bool refill_thread_ready();
// A freed block that no thread cache takes (hardened: a thread without
// slot arrays, such as one past its exit hook) goes to the central pool on
// its own, counted as a free.
void refill_free_direct(int cls, void* block);
// Sends every block in this thread's cache to the central pool, and its
// parked spans to the backend.
void refill_flush_all();

// Large spans parked in thread caches (large.h: kParkSpans). A span of
// `size` bytes (at most kParkMax) from this thread's slots, or nullptr.
void* refill_span_take(size_t size);
// free(p) of a live span of at most kParkMax bytes: parked in this thread's
// cache (true), or not a span that can wait there (false: nothing changed).
bool refill_span_park(void* p);
// This thread's parked spans go back to the backend; false when it had none.
bool refill_spans_flush();
// One decay pass: every thread's parked spans go back to the backend, so
// that spans freed by threads that then went quiet return to the OS on the
// decay's schedule.
void refill_spans_decay();

// Calls fn(cache, arg) for every live thread's cache, then then(arg), all
// under the registry lock. An exiting thread merges its counters into the
// totals and leaves the registry under the same lock, so a snapshot that
// reads the totals in `then` counts every thread exactly once.
struct ThreadCache;
void thread_registry_each(void (*fn)(const ThreadCache*, void*), void (*then)(void*), void* arg);
// How many threads have ever registered a cache: 2 or more once the process
// has been multi-threaded (the front's purge thread waits for that).
uint64_t thread_registry_ever();
void thread_registry_fork_prepare();
void thread_registry_fork_parent();
void thread_registry_fork_child();

}  // namespace hakmem
