// hakmem base: compiler helpers, the lock type and process configuration.
// Every box may include this header; it includes nothing of hakmem's.
#pragma once

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#if defined(HAKMEM_ASAN)
#include <sanitizer/asan_interface.h>
#endif
#if defined(HAKMEM_VALGRIND)
#include <valgrind/memcheck.h>
#endif

#define HAK_LIKELY(x) __builtin_expect(!!(x), 1)
#define HAK_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define HAK_INLINE inline __attribute__((always_inline))
#define HAK_NOINLINE __attribute__((noinline))
#define HAK_COLD __attribute__((cold, noinline))
// Initial-exec TLS: one fs-relative load, no __tls_get_addr call, and no
// allocation by the dynamic loader on first touch (DESIGN.md §1).
#define HAK_TLS __thread __attribute__((tls_model("initial-exec")))
// On a declaration of a variable that the hot path reads: the library's
// own, so one RIP-relative operand reaches it instead of a GOT load.
// (-fvisibility=hidden covers definitions only.)
#define HAK_INTERNAL __attribute__((visibility("hidden")))

namespace hakmem {

// A plain pthread mutex: statically initialised (no allocation), understood
// by TSan, futex-backed so a waiter sleeps instead of burning the other core.
class Lock {
 public:
  void lock() { pthread_mutex_lock(&m_); }
  void unlock() { pthread_mutex_unlock(&m_); }
  bool try_lock() { return pthread_mutex_trylock(&m_) == 0; }
  // After fork() the child holds every lock that the prepare handler took;
  // it re-initialises them instead of unlocking (only the forking thread survives).
  void reinit_in_child() { pthread_mutex_init(&m_, nullptr); }

 private:
  pthread_mutex_t m_ = PTHREAD_MUTEX_INITIALIZER;
};

class LockGuard {
 public:
  explicit LockGuard(Lock& l) : l_(l) { l_.lock(); }
  ~LockGuard() { l_.unlock(); }
  LockGuard(const LockGuard&) = delete;
  LockGuard& operator=(const LockGuard&) = delete;

 private:
  Lock& l_;
};

// Process-wide settings, read once from the environment (getenv does not
// allocate). Defaults hold until config_init() runs.
struct Config {
  bool stats_at_exit = false;   // HAKMEM_STATS=1
  bool verbose = false;         // HAKMEM_VERBOSE=1
  bool ace_enabled = true;      // HAKMEM_ACE=0 disables the learner
  uint32_t decay_ms = 1000;     // HAKMEM_DECAY_MS
  // HAKMEM_ARENA: 0 = no segment arena (slab/slab.h); N = at most N MiB of it.
  uint64_t arena_max_mib = uint64_t{1} << 20;
};
extern Config g_config;
void config_init();

// ---- memory-checker annotations ----
// The asan build poisons every byte that is not in the program's hands
// (ASan's manual poisoning interface, called as functions: the macros are
// empty in code built without ASan instrumentation, as hakmem is there; hakmem's own code is not instrumented
// by ASan, so it may read its free-list links). The valgrind build describes
// each block to memcheck with client requests; the first word of a free block
// (its free-list link) stays accessible to hakmem. Release: nothing.
#if defined(HAKMEM_ASAN) || defined(HAKMEM_VALGRIND)
constexpr bool kMemoryChecker = true;
#else
constexpr bool kMemoryChecker = false;  // the annotations below are empty
#endif
HAK_INLINE void annotate_alloc(void* p, size_t usable, bool zeroed) {
#if defined(HAKMEM_ASAN)
  __asan_unpoison_memory_region(p, usable);
#endif
#if defined(HAKMEM_VALGRIND)
  VALGRIND_MALLOCLIKE_BLOCK(p, usable, 0, zeroed);
#endif
  (void)p, (void)usable, (void)zeroed;
}
HAK_INLINE void annotate_free(void* p, size_t usable) {
#if defined(HAKMEM_ASAN)
  __asan_poison_memory_region(p, usable);
#endif
#if defined(HAKMEM_VALGRIND)
  VALGRIND_FREELIKE_BLOCK(p, 0);
  VALGRIND_MAKE_MEM_DEFINED(p, sizeof(void*));
#endif
  (void)p, (void)usable;
}
// A live block grown or shrunk where it stands; its first min(old, new)
// bytes keep their contents (and, for memcheck, their definedness).
HAK_INLINE void annotate_resize(void* p, size_t old_usable, size_t new_usable) {
#if defined(HAKMEM_ASAN)
  if (new_usable > old_usable) __asan_unpoison_memory_region(static_cast<char*>(p) + old_usable, new_usable - old_usable);
  else __asan_poison_memory_region(static_cast<char*>(p) + new_usable, old_usable - new_usable);
#endif
#if defined(HAKMEM_VALGRIND)
  VALGRIND_RESIZEINPLACE_BLOCK(p, old_usable, new_usable, 0);
#endif
  (void)p, (void)old_usable, (void)new_usable;
}
// Memory that becomes hakmem's but is not handed out yet (a new slab).
HAK_INLINE void annotate_fresh(void* p, size_t bytes) {
#if defined(HAKMEM_ASAN)
  __asan_poison_memory_region(p, bytes);
#endif
#if defined(HAKMEM_VALGRIND)
  VALGRIND_MAKE_MEM_UNDEFINED(p, bytes);  // earlier blocks' boundaries no longer apply
#endif
  (void)p, (void)bytes;
}
// Memory that goes back to the backend or the OS.
HAK_INLINE void annotate_returned(void* p, size_t bytes) {
#if defined(HAKMEM_ASAN)
  __asan_unpoison_memory_region(p, bytes);
#endif
#if defined(HAKMEM_VALGRIND)
  VALGRIND_MAKE_MEM_UNDEFINED(p, bytes);
#endif
  (void)p, (void)bytes;
}

// ---- free-block links ----
// A free block's first word links it to the next block of its list (a TLS
// bin, a central batch, a slab's free list); every list is read and written
// through block_next / block_set_next. The hardened variant (SECURITY.md)
// stores each link encoded with a per-process secret and the block's own
// address, and seals it: word 1 holds a check value of the secret, the
// address and the encoded link. Every link read checks the seal, so a write
// after free that changes a link (it cannot forge the seal without the
// secret) stops the program wherever the list is walked; and a block whose
// seal holds is free, which is how free() finds a double free. Hardened
// blocks are at least 16 bytes.
#if defined(HAKMEM_HARDENED)
constexpr bool kHardened = true;
#else
constexpr bool kHardened = false;
#endif
extern uintptr_t g_block_secret HAK_INTERNAL;  // hardened: random, set once at init
// The hardened variant's answer to a heap fault: one line, then abort().
[[noreturn]] void hardened_abort(const char* fmt, ...) __attribute__((format(printf, 1, 2), cold));

HAK_INLINE uintptr_t link_seal(const void* block, uintptr_t encoded) {
  // Another turn of the secret than the encoding uses: no seal equals a link.
  return ((g_block_secret << 29) | (g_block_secret >> 35)) ^ reinterpret_cast<uintptr_t>(block) ^ encoded;
}
// Hardened: whether `block` is free, i.e. its link is sealed.
HAK_INLINE bool block_is_free(const void* block) {
  const uintptr_t* w = static_cast<const uintptr_t*>(block);
  return w[1] == link_seal(block, w[0]);
}
// Hardened: a block leaves the free lists for the program's hands.
HAK_INLINE void block_unseal(void* block) {
  if (kHardened) static_cast<uintptr_t*>(block)[1] = 0;
}
HAK_INLINE void* block_next(const void* block) {
  uintptr_t raw = *static_cast<const uintptr_t*>(block);
  if (kHardened) {
    if (HAK_UNLIKELY(!block_is_free(block)))
      hardened_abort("hakmem: a free list is damaged at %p (a write after free?); aborting", block);
    raw ^= g_block_secret ^ reinterpret_cast<uintptr_t>(block);
  }
  return reinterpret_cast<void*>(raw);
}
HAK_INLINE void block_set_next(void* block, const void* next) {
  uintptr_t raw = reinterpret_cast<uintptr_t>(next);
  if (kHardened) {
    raw ^= g_block_secret ^ reinterpret_cast<uintptr_t>(block);
    static_cast<uintptr_t*>(block)[1] = link_seal(block, raw);
  }
  *static_cast<uintptr_t*>(block) = raw;
}
// Hardened: picks the secret (getrandom, else the kernel's AT_RANDOM bytes
// and the clock). Called once, at init, before any block is linked.
void hardening_init();

// Formats and writes one line to stderr without allocating; used for
// diagnostics from inside the allocator, where stdio could recurse.
void diag(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

}  // namespace hakmem
