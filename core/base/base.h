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

// The hardened variant (SECURITY.md; free-block links below).
#if defined(HAKMEM_HARDENED)
constexpr bool kHardened = true;
#else
constexpr bool kHardened = false;
#endif

// Values written once, at initialisation, and trusted by every call after
// it (settings, keys, the arena's bounds): each such group fills a page of
// its own, which the front makes read-only once the process is initialised
// (os_seal), so that no stray write -- nor an attacker's write relative to
// the library's data -- can change them afterwards.
constexpr size_t kSealedPage = 4096;
#define HAK_SEALED_PAGE alignas(kSealedPage)

// ACE's arms (core/ace: batch and capacity pairs), named here because a
// setting can pin one.
constexpr uint32_t kAceArms = 12;
constexpr uint32_t kAceDefaultArm = 3;
constexpr uint32_t kAceLearn = kAceArms;

// Process-wide settings, read once from the environment (getenv does not
// allocate). Defaults hold until config_init() runs; sealed after it.
struct HAK_SEALED_PAGE Config {
  bool stats_at_exit = false;   // HAKMEM_STATS=1
  // Where the exit report goes (lifecycle.cc's report_at_exit): HAKMEM_STATS_FILE,
  // a path in which %p stands for the pid (empty: stderr, as it was when
  // the process started), and HAKMEM_STATS_PID (0: every process reports;
  // else only the one with that pid: hakmem run --stats-top).
  char stats_file[256] = {};
  uint32_t stats_pid = 0;
  bool verbose = false;         // HAKMEM_VERBOSE=1
  // The ACE arm every class uses (core/ace), or kAceLearn: the learner
  // picks per class. HAKMEM_ACE=0 pins the default arm, HAKMEM_ACE_ARM=k arm k.
  uint32_t ace_arm = kAceLearn;
  uint32_t decay_ms = 1000;     // HAKMEM_DECAY_MS
  // HAKMEM_BACKGROUND: 1 = a purge thread from the first allocation on,
  // 0 = never one, unset = one once the process has a second thread (front/lifecycle.cc).
  int8_t background = -1;
  // HAKMEM_ARENA: 0 = no segment arena (slab/slab.h); N = at most N MiB of it.
  uint64_t arena_max_mib = uint64_t{1} << 20;
  // HAKMEM_THREAD_CACHES: about how many MiB all threads' caches may hold
  // together (refill.cc: each thread an equal share, at least 64 KiB).
  uint64_t thread_caches_mib = 16;
  // The hardened variant's mitigations, each on there unless its
  // HAKMEM_HARDENED_* setting is 0 (SECURITY.md says what each stops and
  // costs); the release build has none of them.
  bool quarantine = kHardened;   // HAKMEM_HARDENED_QUARANTINE: freed blocks wait before reuse
  bool zero_on_free = kHardened; // HAKMEM_HARDENED_ZERO: freed blocks are cleared
  // HAKMEM_HARDENED_ZERO_MAX: the largest block cleared whole (bytes). A
  // clear costs a memset per byte freed, most of the hardened library's
  // cost where kilobytes to megabytes churn untouched (SECURITY.md); larger
  // slab blocks have their first 64 bytes cleared, spans and huge blocks none.
  uint64_t zero_whole_max = 4096;
  bool randomize = kHardened;    // HAKMEM_HARDENED_RANDOM: slabs hand out blocks in random order
  bool guard_pages = kHardened;  // HAKMEM_HARDENED_GUARDS: guard pages around large spans and huge blocks
  bool canary = kHardened;       // HAKMEM_HARDENED_CANARY: a keyed word after each small and mid block
};
extern Config g_config;
void config_init();
// Hardened guard pages (around huge headers, after large spans): on unless
// HAKMEM_HARDENED_GUARDS=0; never in release.
HAK_INLINE bool hardened_guards() { return kHardened && g_config.guard_pages; }
// Hardened zero-on-free: whether a freed block of `size` bytes is cleared
// whole (HAKMEM_HARDENED_ZERO and _ZERO_MAX); never in release.
HAK_INLINE bool hardened_clears_whole(size_t size) {
  return kHardened && g_config.zero_on_free && size <= g_config.zero_whole_max;
}

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

// ---- secrets ----
// A multiply-xorshift mix (the SplitMix64 finaliser): a bijection on 64-bit
// words whose every output bit depends on every input bit.
HAK_INLINE constexpr uint64_t mix64(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9u;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebu;
  return x ^ (x >> 31);
}
// A keyed mix of one word: mix64 is public and invertible, so the key goes in
// both before and after it. Seeing one output (and its input) then gives an
// attacker neither key; each more pair gives one nonlinear equation in them.
HAK_INLINE constexpr uint64_t keyed_mix(uint64_t x, uint64_t key_in, uint64_t key_out) {
  return mix64(x ^ key_in) ^ key_out;
}
// A keyed multiply-fold: the 128-bit product of the keyed word and a secret
// odd multiplier, its two halves XORed (wyhash's "mum" step with secret
// operands). One `mul` instruction where mix64 takes two multiplies and
// three shifts: the hardened free-list links compute five of these per
// malloc+free pair. Every output bit depends on every input bit (the high
// half carries the low bits upward, the fold brings them back down); like
// keyed_mix it is no MAC, and one observed pair fixes neither key.
HAK_INLINE uint64_t keyed_fold(uint64_t x, uint64_t key_in, uint64_t key_mul) {
  const unsigned __int128 product = static_cast<unsigned __int128>(x ^ key_in) * key_mul;
  return static_cast<uint64_t>(product) ^ static_cast<uint64_t>(product >> 64);
}

// Per-process random keys, drawn once at init (getrandom) in every build,
// then sealed:
// the hardened variant encodes and seals free-list links with the first
// four; every build checks huge-block headers with `header` and places its
// metadata at an address drawn from `placement`.
struct HAK_SEALED_PAGE Secrets {
  uint64_t pad_in, pad_mul;    // a block's link pad: keyed_fold(address)
  uint64_t seal_in, seal_mul;  // a free block's seal: keyed_fold(encoded link ^ address)
  uint64_t header;             // huge-block headers (large box)
  uint64_t placement;          // where the metadata region goes (slab box)
  uint64_t shuffle;            // hardened: the order of a new slab's blocks (slab box)
  uint64_t canary_in, canary_mul;  // hardened: a block's canary, keyed_fold(address)
};
extern Secrets g_secrets HAK_INTERNAL;
// Draws the keys. Called once, at init, before any block is linked.
void secrets_init();
// A fresh random word (getrandom; the clock and AT_RANDOM as a fallback).
uint64_t random_word();

// The answer to a heap fault (the hardened variant's to every fault it
// finds; every build's to damaged metadata): one line, then abort().
[[noreturn]] void fatal(const char* fmt, ...) __attribute__((format(printf, 1, 2), cold));

// ---- free-block links ----
// A free block's first word links it to the next block of its list (a TLS
// bin, a central batch, a slab's free list, the quarantine); every list is
// read and written through block_next / block_set_next. The hardened variant
// (SECURITY.md) stores each link XORed with the block's pad, a keyed fold of
// its address, and seals it: word 1 holds a keyed fold of the encoded link
// and the address. Every link read checks the seal, so a write after free
// that changes a link (it cannot forge the seal without the keys) stops the
// program wherever the list is walked; and a block whose seal holds is free,
// which is how free() finds a double free. One freed block read whole, with
// its successor guessed, gives that block's pad and one seal, not the keys:
// another block's pad, or the seal of another link or address, is a fresh
// mix. Hardened blocks are at least 16 bytes, and both words are cleared
// when a block is handed out.
HAK_INLINE uint64_t block_pad(const void* block) {
  return keyed_fold(reinterpret_cast<uintptr_t>(block), g_secrets.pad_in, g_secrets.pad_mul);
}
HAK_INLINE uint64_t block_seal(const void* block, uint64_t encoded) {
  return keyed_fold(encoded ^ reinterpret_cast<uintptr_t>(block), g_secrets.seal_in, g_secrets.seal_mul);
}
// Hardened: whether `block` is free, i.e. its link is sealed.
HAK_INLINE bool block_is_free(const void* block) {
  const uintptr_t* w = static_cast<const uintptr_t*>(block);
  return w[1] == block_seal(block, w[0]);
}
// ---- end-of-block canaries (hardened) ----
// A block's last 8 bytes hold its canary, a keyed fold of its address, from
// hand-out to free, in every class up to kCanaryClassMax: its usable size
// is 8 bytes short of its class's, and a request takes the class 8 bytes
// above it. free() checks the canary before anything else touches the
// block, so a linear overflow past the usable end (an off-by-one NUL
// included) stops the program at the block's free; without the keys the
// overflow cannot write the value back. Classes above 3.5 KiB have none:
// writing a canary at a block's end touches its last page, which a program
// that fills only the start of its 8-32 KiB buffers never does (peak RSS
// 1.45x release's in glibc-thread with canaries in every class, 1.15x with
// none), and it would push the common 4096-byte request into the 5 KiB
// class. Large spans and huge blocks end in guard pages.
constexpr size_t kCanaryBytes = 8;
constexpr size_t kCanaryClassMax = 3584;
HAK_INLINE size_t canary_bytes() { return kHardened && g_config.canary ? kCanaryBytes : 0; }
// The canary bytes a block of a class of `class_bytes` holds (0 or 8).
HAK_INLINE size_t class_canary_bytes(size_t class_bytes) { return class_bytes <= kCanaryClassMax ? canary_bytes() : 0; }
// The size whose class serves a request of n bytes: n plus its canary where
// the class has one; a request that would take a canaried class only
// without its canary goes to the first class above them, which has none.
HAK_INLINE size_t canary_request(size_t n) {
  if (canary_bytes() == 0 || n > kCanaryClassMax) return n;
  return n + kCanaryBytes <= kCanaryClassMax ? n + kCanaryBytes : kCanaryClassMax + 1;
}
// Its first byte is never 0, so that an off-by-one NUL (a string copied
// one byte too long) always breaks it.
HAK_INLINE uint64_t block_canary(const void* block) {
  return keyed_fold(reinterpret_cast<uintptr_t>(block), g_secrets.canary_in, g_secrets.canary_mul) | 1;
}
HAK_INLINE uint64_t* block_canary_slot(void* block, size_t class_bytes) {
  return reinterpret_cast<uint64_t*>(static_cast<char*>(block) + class_bytes - kCanaryBytes);
}

// Hardened: a freed block in a thread's quarantine or bin is on no list:
// its free mark is a seal of the encoded link 0 (one fold, where a sealed
// null link takes two), so block_is_free holds for it and a second free is
// caught all the same.
HAK_INLINE void block_mark_free(void* block) {
  static_cast<uintptr_t*>(block)[0] = 0;
  static_cast<uintptr_t*>(block)[1] = block_seal(block, 0);
}
HAK_INLINE bool block_is_marked_free(const void* block) {
  const uintptr_t* w = static_cast<const uintptr_t*>(block);
  return w[0] == 0 && w[1] == block_seal(block, 0);
}
// Hardened: a block leaves the free lists for the program's hands; neither
// its encoded link nor its seal goes with it.
HAK_INLINE void block_unseal(void* block) {
  if (kHardened) {
    static_cast<uintptr_t*>(block)[0] = 0;
    static_cast<uintptr_t*>(block)[1] = 0;
  }
}
HAK_INLINE void* block_next(const void* block) {
  uintptr_t raw = *static_cast<const uintptr_t*>(block);
  if (kHardened) {
    if (HAK_UNLIKELY(static_cast<const uintptr_t*>(block)[1] != block_seal(block, raw)))
      fatal("hakmem: a free list is damaged at %p (a write after free?); aborting", block);
    raw ^= block_pad(block);
  }
  return reinterpret_cast<void*>(raw);
}
HAK_INLINE void block_set_next(void* block, const void* next) {
  uintptr_t raw = reinterpret_cast<uintptr_t>(next);
  if (kHardened) {
    raw ^= block_pad(block);
    static_cast<uintptr_t*>(block)[1] = block_seal(block, raw);
  }
  *static_cast<uintptr_t*>(block) = raw;
}

// ---- lists of free blocks ----
// A run of free blocks linked through their links (block_next), with its
// last block and its length: what the boxes hand each other (a refill's
// batch, a flush, the blocks a slab gives up, a batch in the central pool).
// A list handed on is closed: its last block links to nothing.
struct BlockList {
  void* head = nullptr;
  void* tail = nullptr;
  uint32_t count = 0;
};
// Appends `block`: a list built this way keeps the order of its appends.
HAK_INLINE void list_append(BlockList& list, void* block) {
  if (list.tail != nullptr) block_set_next(list.tail, block); else list.head = block;
  list.tail = block;
  ++list.count;
}
HAK_INLINE void list_close(BlockList& list) {
  if (list.tail != nullptr) block_set_next(list.tail, nullptr);
}
// Cuts the first n blocks (1 <= n <= its length) off the list that starts at
// `head`, which then starts after them: a walk over n - 1 links. The cut
// list is closed.
inline BlockList list_cut(void*& head, uint32_t n) {
  BlockList cut{head, head, n};
  for (uint32_t i = 1; i < n; ++i) cut.tail = block_next(cut.tail);
  head = block_next(cut.tail);
  block_set_next(cut.tail, nullptr);
  return cut;
}
// The first n blocks (1 <= n <= list.count) leave `list` as a list of their own.
inline BlockList list_split(BlockList& list, uint32_t n) {
  BlockList front = list_cut(list.head, n);
  list.count -= n;
  if (list.count == 0) list.tail = nullptr;
  return front;
}

// Formats and writes one line to stderr without allocating; used for
// diagnostics from inside the allocator, where stdio could recurse.
void diag(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

}  // namespace hakmem
