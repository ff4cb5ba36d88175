// The hardened variant (libhakmem-hardened.so, SECURITY.md): every heap
// fault it promises to catch, made on purpose in a child process (GoogleTest
// death tests), must end that process with its one-line diagnosis naming the
// address. A fault it lets through would make the child exit normally, and
// the test fail.
#include <malloc.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <algorithm>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "hakmem.h"
#include "base/base.h"
#include "size_class/size_class.h"
#include "tests/support/opaque.h"
#include "tests/support/run_self.h"
#include "tests/support/units.h"

namespace {

using test_support::KiB;
using test_support::MiB;

using test_support::opaque;

std::string address_pattern(const void* p) {
  char buf[64];
  snprintf(buf, sizeof buf, "%p", p);
  return buf;
}

long g_target[8];  // where a write after free would like malloc to point
void* volatile g_sink;
volatile size_t g_size_sink;

// Death tests fork ("fast" style): the child has the parent's addresses,
// so the expected diagnosis can name them. The parent has no other threads
// alive at those points.
class Hardened : public testing::Test {};

// Both frees in the child: nothing the test framework allocates between
// them can take the block back.
TEST_F(Hardened, DoubleFreeAbortsInEveryRange) {
  // The largest slab request is 128 KiB (its class has no canary).
  static_assert(128 * KiB == hakmem::kSlabMax && hakmem::kCanaryClassMax < 128 * KiB, "the slab limit");
  for (size_t n : {size_t{1}, size_t{16}, size_t{256}, size_t{4 * KiB}, size_t{32 * KiB}, size_t{128 * KiB}}) {
    void* p = malloc(n);
    ASSERT_NE(p, nullptr);
    const std::string expected = "hakmem: free\\(" + address_pattern(p) + "\\): double free; aborting";
    EXPECT_DEATH((free(p), free(opaque(p))), expected) << n;
    free(p);
  }
  for (size_t n : {size_t{128 * KiB + 1}, size_t{300 * KiB}, size_t{5 * MiB}}) {  // large spans and huge mappings
    void* p = malloc(n);
    ASSERT_NE(p, nullptr);
    const std::string expected = "hakmem: free\\(" + address_pattern(p) + "\\): " +
                                 (n < MiB ? "not a live block" : "pointer not allocated by hakmem \\(or a huge block freed already\\)");
    EXPECT_DEATH((free(p), free(opaque(p))), expected) << n;
    free(p);
  }
}

// The free mark travels with the block: a double free is caught after the
// first free has sent the block on to the central pool and another thread.
TEST_F(Hardened, DoubleFreeAbortsAfterTheBlockLeftTheThread) {
  void* p = malloc(64);
  ASSERT_NE(p, nullptr);
  free(p);
  std::vector<void*> others;
  for (int i = 0; i < 20000; ++i) others.push_back(malloc(64));
  for (void* q : others) free(q);  // flushes whole batches, p's among them
  EXPECT_DEATH(free(opaque(p)), "double free; aborting");
}

TEST_F(Hardened, ForeignAndInteriorFreesAbort) {
  const std::string foreign = "hakmem: free\\(" + address_pattern(&g_target[2]) + "\\): pointer not allocated by hakmem \\(or a huge block freed already\\); aborting";
  EXPECT_DEATH(free(opaque(&g_target[2])), foreign);
  long on_stack[4] = {1, 2, 3, 4};
  EXPECT_DEATH(free(opaque(on_stack)), "pointer not allocated by hakmem \\(or a huge block freed already\\); aborting");
  char* p = static_cast<char*>(malloc(256));
  ASSERT_NE(p, nullptr);
  const std::string interior = "hakmem: free\\(" + address_pattern(p + 16) + "\\): not a live block.*aborting";
  EXPECT_DEATH(free(opaque(p + 16)), interior);
  char* big = static_cast<char*>(malloc(300 * KiB));
  EXPECT_DEATH(free(opaque(big + 4096)), "not a live block.*aborting");
  EXPECT_DEATH(free(opaque(realloc(opaque(&g_target[1]), 100))), "pointer not allocated by hakmem \\(or a huge block freed already\\); aborting");
  free(big);
  free(p);
}

// Frees enough fresh blocks of `size` that every block freed before them
// has left the quarantine (it swaps a random one of 8 slots each time: after
// 400 frees a block is still there with odds under 1e-20).
void push_through_quarantine(size_t size) {
  std::vector<void*> v;
  for (int i = 0; i < 400; ++i) v.push_back(malloc(size));
  for (void* b : v) free(b);
}

// A write after free over a freed block's link: without the keys the
// program cannot aim the list anywhere. The block waits in the quarantine,
// sealed, and the broken seal stops the program when it leaves, before any
// allocation could follow the link to g_target or to the stack.
void redirect_after_free(bool to_stack) {
  long on_stack[4] = {0, 0, 0, 0};
  void* p = malloc(64);
  free(p);
  uintptr_t aim = reinterpret_cast<uintptr_t>(to_stack ? &on_stack[0] : &g_target[0]);
  memcpy(opaque(p), &aim, sizeof aim);  // the write after free
  for (int i = 0; i < 1000; ++i) {
    void* q = malloc(64);
    if (q == reinterpret_cast<void*>(aim)) fprintf(stderr, "malloc handed out the address the write chose\n");
    free(q);
  }
  fprintf(stderr, "no fault seen %ld\n", on_stack[0]);
  _exit(0);
}

TEST_F(Hardened, WriteAfterFreeRedirectingMallocIsCaught) {
  for (bool to_stack : {false, true})
    EXPECT_DEATH(redirect_after_free(to_stack), "hakmem: free: the block at 0x[0-9a-f]+ was written after it was freed; aborting")
        << to_stack;
}

// The same write aimed at a block already in a thread's cache (past the
// quarantine), or further on in a batch: the cache holds it in an array, out
// of the heap, so there is no link to follow; its broken mark stops the
// allocation that would hand it out, or the flush that would link it.
TEST_F(Hardened, WriteAfterFreeIntoAListedLinkIsCaught) {
  EXPECT_DEATH(
      {
        void* p = malloc(64);
        free(p);
        push_through_quarantine(64);  // p is in the bin now, or further on
        uintptr_t aim = reinterpret_cast<uintptr_t>(&g_target[0]);
        memcpy(opaque(p), &aim, sizeof aim);
        for (int i = 0; i < 100000; ++i)
          if (malloc(64) == &g_target[0]) fprintf(stderr, "malloc handed out the address the write chose\n");
        malloc_trim(0);  // and every list walk, should the block have gone on
        fprintf(stderr, "no fault seen\n");
        _exit(0);
      },
      "hakmem: (malloc: the free list of 64-byte blocks|a free list) is damaged at 0x[0-9a-f]+ \\(a write after free\\?\\); aborting");
}

// A damaged link deep in a thread's list, which no allocation reaches first:
// every walk over a list checks each link's seal. malloc_trim() (hak_trim)
// sends the thread's lists to the central pool and the pool's blocks back
// to their slabs, one link at a time.
TEST_F(Hardened, DamagedLinkDeepInAListStopsTheWalkThatReachesIt) {
  EXPECT_DEATH(
      {
        std::vector<void*> v;
        for (int i = 0; i < 100; ++i) v.push_back(malloc(96));
        free(v[0]);
        for (int i = 1; i < 100; ++i) free(v[i]);  // v[0] is deep in the list now
        uintptr_t junk[2];
        junk[0] = reinterpret_cast<uintptr_t>(&g_target[0]);
        junk[1] = 0x1234;
        memcpy(opaque(v[0]), junk, sizeof junk);  // both words: link and seal
        malloc_trim(0);
        fprintf(stderr, "no fault seen\n");
        _exit(0);
      },
      "hakmem: a free list is damaged at 0x[0-9a-f]+ \\(a write after free\\?\\); aborting");
}

// The quarantine holds at most 16 KiB of a class per thread: 8 + 8 blocks
// of up to 1 KiB, 2 + 2 of 3 KiB, 1 + 1 of 8 KiB, none of larger classes
// (the 128 KiB class included). Of 32 such blocks freed, all but those it
// holds come back to the next 32 allocations of their class. It holds at
// most its depth: fewer when a random slot was drawn twice before every
// slot had filled, and at least the first block freed, which always finds
// an empty slot.
TEST_F(Hardened, QuarantineHoldsBoundedBytesOfLargeClasses) {
  struct Case {
    size_t size;
    int most;
  };
  for (Case c : {Case{120 * KiB, 0}, Case{20 * KiB, 0}, Case{8 * KiB, 2}, Case{3 * KiB, 4}, Case{1 * KiB - 8, 16}}) {
    std::vector<void*> v, again;
    for (int i = 0; i < 32; ++i) v.push_back(malloc(c.size));
    for (void* p : v) free(p);
    for (int i = 0; i < 32; ++i) again.push_back(malloc(c.size));
    int reused = 0;
    for (void* p : again) reused += std::find(v.begin(), v.end(), p) != v.end();
    const int held = 32 - reused;
    EXPECT_LE(held, c.most) << "blocks of " << c.size << " bytes held back by the quarantine";
    EXPECT_GE(held, c.most > 0 ? 1 : 0) << "blocks of " << c.size << " bytes held back by the quarantine";
    for (void* p : again) free(p);
  }
}

// A freed block carries the free mark at once, in the quarantine (where it
// is on no list: its link word is 0); once on a list, its link is not the
// next block's address in the clear. Both words are cleared when a block
// is handed out (a fresh block gives away nothing of the keys either).
TEST_F(Hardened, FreeBlocksHoldEncodedLinksAndAMarkThatHandOutClears) {
  void* q = malloc(48);
  void* p = malloc(48);
  ASSERT_NE(p, nullptr);
  ASSERT_NE(q, nullptr);
  free(q);
  free(p);
  uintptr_t words[2];
  memcpy(words, opaque(p), sizeof words);
  EXPECT_EQ(words[0], 0u) << "a quarantined block holds a link";
  EXPECT_NE(words[1], 0u) << "no free mark";
  std::vector<void*> v;
  for (int i = 0; i < 400; ++i) v.push_back(malloc(48));
  for (void* b : v) free(b);  // p leaves the quarantine for a list
  memcpy(words, opaque(p), sizeof words);
  EXPECT_NE(words[0], 0u) << "a null link stored in the clear";
  EXPECT_NE(words[1], 0u) << "no free mark";
  EXPECT_NE(words[0], reinterpret_cast<uintptr_t>(q)) << "the link is stored in the clear";
  for (void* b : v) ASSERT_NE(words[0], reinterpret_cast<uintptr_t>(b)) << "the link is stored in the clear";
  v.clear();
  for (int i = 0; i < 2000; ++i) {
    v.push_back(malloc(48));
    memcpy(words, opaque(v.back()), sizeof words);
    ASSERT_EQ(words[0], 0u) << "a handed-out block still holds its encoded link";
    ASSERT_EQ(words[1], 0u) << "the free mark outlived the allocation";
    if (i % 3 == 0) free(v.back()), v.pop_back();  // churn: blocks come back through the quarantine
  }
  for (void* b : v) free(b);
}

// Every block has room for the free mark: the smallest class is 16 bytes,
// whose last 8 hold the canary while the block is live (8 usable bytes).
TEST_F(Hardened, SmallestBlockIsSixteenBytes) {
  for (size_t n = 0; n <= 24; ++n) {
    void* p = malloc(n);
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(malloc_usable_size(p), n <= 8 ? 8u : 24u) << n;
    EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % 16, 0u) << n;
    free(p);
  }
}

// A write past the usable end of a block of up to 3.5 KiB -- one byte, an
// off-by-one NUL, a word -- breaks its canary, and its free stops the
// program; every usable byte stays the program's.
TEST_F(Hardened, OverflowPastTheUsableEndIsCaughtAtFree) {
  static_assert(hakmem::kCanaryClassMax == 3584, "the largest class with canaries");
  for (size_t n : {size_t{1}, size_t{8}, size_t{24}, size_t{100}, size_t{1000}, size_t{3000}, size_t{3576}}) {
    char* p = static_cast<char*>(malloc(n));
    ASSERT_NE(p, nullptr);
    const size_t usable = malloc_usable_size(p);
    ASSERT_GE(usable, n);
    memset(p, 0x5a, usable);
    const std::string expected = "hakmem: free\\(" + address_pattern(p) +
                                 "\\): the 8 bytes after the block's [0-9]+ usable ones were overwritten \\(a heap overflow\\); aborting";
    EXPECT_DEATH((static_cast<volatile char*>(opaque(p))[usable] = 0, free(p)), expected) << n;
    volatile char* end = static_cast<volatile char*>(opaque(p)) + usable;
    EXPECT_DEATH((end[7] = static_cast<char>(~end[7]), free(p)), expected) << n;  // any byte of the 8
    free(p);  // untouched past its end in this process: no fault
  }
  // The same through aligned allocation and realloc's in-place shrink.
  void* a = nullptr;
  ASSERT_EQ(posix_memalign(&a, 256, 700), 0);
  const size_t usable = malloc_usable_size(a);
  EXPECT_DEATH((static_cast<volatile char*>(opaque(a))[usable] = 0, free(a)), "a heap overflow");
  free(a);
  char* r = static_cast<char*>(realloc(malloc(3000), 2000));
  ASSERT_NE(r, nullptr);
  EXPECT_DEATH((static_cast<volatile char*>(opaque(r))[malloc_usable_size(r)] = 0, free(r)), "a heap overflow");
  free(r);
}

// Classes above 3.5 KiB have no canary (base.h: its write would touch each
// block's last page): their blocks are usable whole, and a request that
// fits the largest canaried class only without its canary takes the 4 KiB
// class whole rather than the 3.5 KiB one.
TEST_F(Hardened, BlocksAbove3584BytesAreUsableWhole) {
  struct Case {
    size_t request, usable;
  };
  for (Case c : {Case{3576, 3576}, Case{3577, 4096}, Case{3584, 4096}, Case{4096, 4096}, Case{5000, 5120},
                 // the coloured classes: a cache line more (size_class.h)
                 Case{30000, 32 * KiB + 64}, Case{128 * KiB - 8, 128 * KiB + 64}, Case{128 * KiB, 128 * KiB + 64}}) {
    void* p = malloc(c.request);
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(malloc_usable_size(p), c.usable) << c.request;
    memset(p, 0x5a, malloc_usable_size(p));
    free(p);  // every usable byte is the program's: no fault
  }
}

// The faults above are caught; ordinary use is not mistaken for one. Blocks
// of every range, freed by other threads too, with their first words
// written the way programs do (a link-sized value, and one equal to another
// block's address).
TEST_F(Hardened, OrdinaryUseRunsClean) {
  std::vector<void*> blocks;
  for (int round = 0; round < 3; ++round) {
    for (size_t n = 1; n <= 70000; n = n * 3 / 2 + 1) {
      void* p = malloc(n);
      ASSERT_NE(p, nullptr);
      memset(p, 0x5a, n);
      if (n >= 16) {
        uintptr_t w[2] = {reinterpret_cast<uintptr_t>(p), reinterpret_cast<uintptr_t>(blocks.empty() ? p : blocks.back())};
        memcpy(p, w, sizeof w);
      }
      blocks.push_back(p);
    }
  }
  std::thread other([&] {
    for (size_t i = 0; i < blocks.size(); i += 2) free(blocks[i]);
  });
  other.join();
  for (size_t i = 1; i < blocks.size(); i += 2) free(blocks[i]);
  EXPECT_EQ(hak_check_heap(), 0);
  hak_stats s;
  hak_stats_get(&s);
  EXPECT_EQ(s.foreign_frees + s.invalid_frees, 0u);
}

// ---- The attacks of issue "hardened variant, round 2", each tried again ----

// With the old seal (linear in one secret) one freed block's two words gave
// the secret away: word 0 held the link XOR secret XOR address, and a block
// in the quarantine links to nothing. The attacker computes the "secret" that
// way and forges a link to a live block; the forged block stops the program
// when it leaves the quarantine, and the live block is never handed out twice.
TEST_F(Hardened, ASecretComputedFromAFreedBlockForgesNothing) {
  EXPECT_DEATH(
      {
        void* live = malloc(64);
        void* a = malloc(64);
        void* c = malloc(64);
        free(a);
        uintptr_t wa[2];
        memcpy(wa, opaque(a), sizeof wa);
        const uintptr_t guess = wa[0] ^ reinterpret_cast<uintptr_t>(a);  // link 0: word 0 = secret ^ address
        free(c);
        uintptr_t forged[2];
        forged[0] = reinterpret_cast<uintptr_t>(live) ^ guess ^ reinterpret_cast<uintptr_t>(c);
        forged[1] = ((guess << 29) | (guess >> 35)) ^ reinterpret_cast<uintptr_t>(c) ^ forged[0];
        memcpy(opaque(c), forged, sizeof forged);  // a write after free with the "secret"
        for (int i = 0; i < 2000; ++i) {
          void* q = malloc(64);
          if (q == live) fprintf(stderr, "the live block was handed out twice\n");
          free(q);
        }
        fprintf(stderr, "no fault seen\n");
        _exit(0);
      },
      "hakmem: free: the block at 0x[0-9a-f]+ was written after it was freed; aborting");
}

// realloc, malloc_usable_size and free_sized check the block's state first:
// realloc(freed, smaller) once returned the freed block, and the next malloc
// handed it out a second time.
TEST_F(Hardened, EntryPointsRefuseAFreedBlock) {
  void* p = malloc(100);
  ASSERT_NE(p, nullptr);
  const std::string at = address_pattern(p);
  EXPECT_DEATH((free(p), g_sink = realloc(opaque(p), 50)), "hakmem: realloc\\(" + at + "\\): the block was freed already \\(use after free\\); aborting");
  EXPECT_DEATH((free(p), g_sink = realloc(opaque(p), 500)), "hakmem: realloc\\(" + at + "\\): the block was freed already");
  EXPECT_DEATH((free(p), g_size_sink = malloc_usable_size(opaque(p))), "hakmem: malloc_usable_size\\(" + at + "\\): the block was freed already");
  EXPECT_DEATH((free(p), hak_free_sized(opaque(p), 100)), "hakmem: free\\(" + at + "\\): double free; aborting");
  free(p);
}

// A double free when the block's first free happened in another thread: the
// seal travels with the block.
TEST_F(Hardened, DoubleFreeAcrossThreadsAborts) {
  EXPECT_DEATH(
      {
        void* p = malloc(200);
        std::thread([p] { free(p); }).join();
        free(opaque(p));
        _exit(0);
      },
      "double free; aborting");
}

// Double free after reuse (ABA): the attacker frees a block, waits for the
// heap to hand it out again, then frees it once more to free its new owner's
// block. A freed block stays in its thread's quarantine until that thread
// frees more blocks of its class: allocations alone never bring it back, and
// the second free still finds it sealed.
TEST_F(Hardened, DoubleFreeAfterReuseNeverHitsTheReuse) {
  void* p = malloc(96);
  ASSERT_NE(p, nullptr);
  EXPECT_DEATH(
      {
        free(p);
        for (int i = 0; i < 5000; ++i)
          if (malloc(96) == p) fprintf(stderr, "the block came back at allocation %d\n", i);
        free(opaque(p));
        _exit(0);
      },
      "hakmem: free\\(" + address_pattern(p) + "\\): double free; aborting");
  free(p);
}

// The heap's layout is no longer a given: blocks of one size handed out in
// sequence are rarely neighbours in address order (999 of 999 were), and a
// freed block is never the next one handed out (100 of 100 were).
TEST_F(Hardened, LayoutAndReuseAreUnpredictable) {
  std::vector<char*> v;
  for (int i = 0; i < 1000; ++i) v.push_back(static_cast<char*>(malloc(64)));
  int ascending_neighbours = 0;
  for (size_t i = 1; i < v.size(); ++i) ascending_neighbours += v[i] == v[i - 1] + 64;
  EXPECT_LT(ascending_neighbours, 50) << "blocks of one size come out in address order";
  int reused = 0;
  for (int i = 0; i < 100; ++i) {
    void* p = malloc(64);
    free(p);
    void* q = malloc(64);
    reused += q == p;
    free(q);
  }
  EXPECT_EQ(reused, 0) << "a freed block was the next one handed out";
  for (char* p : v) free(p);
}

// Blocks that come in with a refill are handed out in a random order: a
// thread frees 512 blocks in address order and exits (its cache goes to
// the central pool in that order); a new thread's allocations, which take
// them back a batch at a time, follow address order from one block to the
// next (a neighbour 96 bytes up or down) only by chance: 8-18 of 511 seen.
// Without the shuffle (HAKMEM_HARDENED_RANDOM=0) 66-74 were, what the
// quarantine's random swaps leave of the pool's order; with the quarantine
// off as well, 505.
TEST_F(Hardened, RefilledBlocksComeOutInARandomOrder) {
  std::vector<char*> freed;
  std::thread([&freed] {
    for (int i = 0; i < 512; ++i) freed.push_back(static_cast<char*>(malloc(80)));
    std::sort(freed.begin(), freed.end());
    for (char* p : freed) free(p);
  }).join();
  std::vector<char*> got;
  std::thread([&got] {
    for (int i = 0; i < 512; ++i) got.push_back(static_cast<char*>(malloc(80)));
    for (char* p : got) free(p);
  }).join();
  int from_freed = 0, neighbours = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    from_freed += std::binary_search(freed.begin(), freed.end(), got[i]);
    if (i > 0) neighbours += got[i] - got[i - 1] == 96 || got[i - 1] - got[i] == 96;
  }
  ASSERT_GT(from_freed, 256) << "the second thread did not take the first one's blocks back";
  EXPECT_LT(neighbours, 40) << "of 511 blocks handed out in turn, that many were the last one's neighbour";
}

// Writes `n`-byte blocks full (every other one a third full), frees them,
// and checks that the next `n`-byte blocks read as zeros in their first
// `cleared` bytes (all of them: SIZE_MAX).
void check_freed_contents_cleared(size_t n, size_t cleared) {
  std::vector<unsigned char*> v;
  for (int i = 0; i < 50; ++i) {
    v.push_back(static_cast<unsigned char*>(malloc(n)));
    memset(v.back(), 0xab, i % 2 == 0 ? n : n / 3);
  }
  for (unsigned char* p : v) free(p);
  for (int i = 0; i < 500; ++i) {
    unsigned char* p = static_cast<unsigned char*>(malloc(n));
    const size_t end = std::min(cleared, malloc_usable_size(p));
    for (size_t k = 0; k < end; ++k) ASSERT_EQ(p[k], 0) << n << " bytes, byte " << k;
    free(p);
  }
}

// Freed contents never reach the next owner: every block of up to 4 KiB
// (HAKMEM_HARDENED_ZERO_MAX's default) handed out reads as zeros, whatever
// its last owner left in it (48 of 64 bytes survived before); a larger
// slab block has its first 64 bytes cleared.
TEST_F(Hardened, FreedContentsDoNotSurvive) {
  for (size_t n : {size_t{64}, size_t{1000}, size_t{4000}}) check_freed_contents_cleared(n, SIZE_MAX);
  for (size_t n : {size_t{20000}, size_t{100000}}) check_freed_contents_cleared(n, 64);
}

// HAKMEM_HARDENED_ZERO_MAX raised: blocks of every size come back cleared
// whole, large spans and huge blocks included. 20000 and 100000: blocks
// cleared page by page where resident; some are written in part only
// (untouched pages stay zero). Runs itself in a child with the setting.
TEST(HardenedSettings, ZeroMaxClearsLargerBlocksWhole) {
  if (getenv("HAKMEM_TEST_ZERO_ALL") == nullptr) {
    int status = 0;
    const std::string said = test_support::run_self("HAKMEM_TEST_ZERO_ALL=1 HAKMEM_HARDENED_ZERO_MAX=1073741824",
                                                    "HardenedSettings.ZeroMaxClearsLargerBlocksWhole", "zero-all: ", &status);
    EXPECT_EQ(status, 0);
    EXPECT_EQ(said, "every block came back clear\n");
    return;
  }
  for (size_t n : {size_t{64}, size_t{20000}, size_t{100000}}) check_freed_contents_cleared(n, SIZE_MAX);
  void* big = malloc(300 * KiB);  // a large span, and a huge block
  memset(big, 0xab, 300 * KiB);
  free(big);
  void* huge = malloc(5 * MiB);
  memset(huge, 0xab, 5 * MiB);
  free(huge);
  unsigned char* again = static_cast<unsigned char*>(malloc(300 * KiB));
  unsigned char* huge_again = static_cast<unsigned char*>(malloc(5 * MiB));
  ASSERT_EQ(huge_again, huge) << "the cached mapping was not reused: the test saw nothing";
  for (size_t k = 0; k < 300 * KiB; k += 512) ASSERT_EQ(again[k], 0) << k;
  for (size_t k = 0; k < 5 * MiB; k += 4096) ASSERT_EQ(huge_again[k], 0) << k;
  free(again);
  free(huge_again);
  if (!testing::Test::HasFailure()) printf("zero-all: every block came back clear\n");
}

// A huge block's header is out of an overflow's reach: a guard page on
// either side of it (the page right below the block faults), and its fields
// checked with a keyed mix, so a header rewritten without the key makes the
// block no live block to free, which stops the program and unmaps nothing.
TEST_F(Hardened, HugeHeaderIsGuardedAndChecked) {
  char* p = static_cast<char*>(malloc(5 * MiB));
  ASSERT_NE(p, nullptr);
  EXPECT_EXIT((void)*static_cast<volatile char*>(opaque(p - 1)), testing::KilledBySignal(SIGSEGV), "");
  EXPECT_EXIT((void)*static_cast<volatile char*>(opaque(p - 2 * 4096 - 1)), testing::KilledBySignal(SIGSEGV), "");
  EXPECT_DEATH(
      {
        size_t* header = reinterpret_cast<size_t*>(p - 2 * 4096);  // check, user, map_size
        header[2] = 64 * MiB;  // the attacker's map_size
        free(opaque(p));
        _exit(0);
      },
      "hakmem: free\\(" + address_pattern(p) + "\\): not a live block");
  free(p);
}

// The permissions of the mapping that holds `p`, from /proc/self/maps.
std::string mapping_perms(const void* p) {
  FILE* f = fopen("/proc/self/maps", "r");
  char line[512], perms[8] = "";
  unsigned long lo, hi, a = reinterpret_cast<unsigned long>(p);
  while (f != nullptr && fgets(line, sizeof line, f) != nullptr)
    if (sscanf(line, "%lx-%lx %7s", &lo, &hi, perms) == 3 && lo <= a && a < hi) break;
  if (f != nullptr) fclose(f);
  return perms;
}

// A large span ends in a guard page: a linear overflow off its last usable
// byte faults, whatever the span's size, and after a resize in place too.
TEST_F(Hardened, OverflowOffALargeSpanFaults) {
  for (size_t n : {size_t{129} * KiB, size_t{256} * KiB, size_t{1000} * KiB, size_t{2} * MiB}) {
    char* span = static_cast<char*>(malloc(n));
    ASSERT_NE(span, nullptr);
    const size_t usable = malloc_usable_size(span);
    EXPECT_GE(usable, n);
    memset(span, 0x5a, usable);  // every usable byte is the program's
    EXPECT_EXIT((static_cast<volatile char*>(opaque(span))[usable] = 1, _exit(0)), testing::KilledBySignal(SIGSEGV), "")
        << n;
    free(span);
  }
  char* span = static_cast<char*>(malloc(200 * KiB));
  char* grown = static_cast<char*>(realloc(span, 400 * KiB));
  ASSERT_NE(grown, nullptr);
  const size_t usable = malloc_usable_size(grown);
  memset(grown, 0x5a, usable);
  EXPECT_EXIT((static_cast<volatile char*>(opaque(grown))[usable] = 1, _exit(0)), testing::KilledBySignal(SIGSEGV), "");
  char* shrunk = static_cast<char*>(realloc(grown, 150 * KiB));
  ASSERT_NE(shrunk, nullptr);
  EXPECT_EXIT((static_cast<volatile char*>(opaque(shrunk))[malloc_usable_size(shrunk)] = 1, _exit(0)),
              testing::KilledBySignal(SIGSEGV), "");
  free(shrunk);
}

// A freed span keeps its guard page for the next span of its size; any other
// run that claims the unit -- a longer span, a slab -- gets it writable:
// every usable byte of every block stays the program's, and every live span
// still ends in a guard.
TEST_F(Hardened, GuardsOfFreedSpansNeverStandInTheNextOwnersWay) {
  std::mt19937 rng(7);
  std::vector<std::pair<char*, size_t>> live;
  for (int round = 0; round < 3000; ++round) {
    const bool span = rng() % 2 == 0;
    const size_t n = span ? 65 * KiB + rng() % (900 * KiB) : 8 * KiB + rng() % (100 * KiB);
    char* p = static_cast<char*>(malloc(n));
    ASSERT_NE(p, nullptr);
    const size_t usable = malloc_usable_size(p);
    memset(p, 0x5a, usable);  // faults if a stale guard lies inside
    live.emplace_back(p, usable);
    if (live.size() > 40) {
      const size_t i = rng() % live.size();
      free(live[i].first);
      live[i] = live.back();
      live.pop_back();
    }
  }
  int guarded = 0, spans = 0;
  for (auto& [p, usable] : live) {
    if (usable > 128 * KiB) ++spans, guarded += mapping_perms(p + usable) == "---p";
    free(p);
  }
  EXPECT_GT(spans, 0);
  EXPECT_EQ(guarded, spans) << "a live span without its guard page";
}

// A freed huge block's mapping waits for reuse in the huge cache with its
// header still between its guard pages, and comes back with them.
TEST_F(Hardened, FreedHugeBlockKeepsItsGuardsWhileCached) {
  char* p = static_cast<char*>(malloc(5 * MiB));
  ASSERT_NE(p, nullptr);
  ASSERT_EQ(mapping_perms(p - 1), "---p");
  free(p);
  EXPECT_EQ(mapping_perms(p - 1), "---p") << "a cached mapping lost its guard";
  EXPECT_EQ(mapping_perms(p - 2 * 4096 - 1), "---p");
  char* q = static_cast<char*>(malloc(5 * MiB));
  ASSERT_EQ(q, p) << "the cached mapping was not reused: the test saw nothing";
  EXPECT_EXIT((void)*static_cast<volatile char*>(opaque(q - 1)), testing::KilledBySignal(SIGSEGV), "");
  q[100] = 1;  // the owner's again
  free(q);
}

// Interior pointers of aligned blocks, in every range.
TEST_F(Hardened, InteriorFreesOfAlignedBlocksAbort) {
  void* small = nullptr;
  ASSERT_EQ(posix_memalign(&small, 64, 200), 0);
  char* span = static_cast<char*>(memalign(256 * KiB, 300 * KiB));
  char* huge = static_cast<char*>(aligned_alloc(8 * MiB, 5 * MiB));
  ASSERT_NE(span, nullptr);
  ASSERT_NE(huge, nullptr);
  EXPECT_DEATH(free(opaque(static_cast<char*>(small) + 64)), "hakmem: free\\(0x[0-9a-f]+\\): not a live block");
  EXPECT_DEATH(free(opaque(span + 4096)), "hakmem: free\\(0x[0-9a-f]+\\): not a live block");
  EXPECT_DEATH(free(opaque(huge + 4096)), "hakmem: free\\(0x[0-9a-f]+\\): not a live block");
  free(small);
  free(span);
  free(huge);
}

// A 16- or 64-byte write from a block into its freed neighbour, aiming the
// neighbour's link at a global: the neighbour's broken seal stops the
// program when it leaves the quarantine; g_target is never handed out.
// The write skips the block's own canary (a relative write, or an
// overflow whose block is never freed): the neighbour's seal alone stops it.
void overflow_into_freed_neighbour(size_t overflow) {
  std::vector<char*> v;
  for (int i = 0; i < 4096; ++i) v.push_back(static_cast<char*>(malloc(64)));
  const size_t stride = malloc_usable_size(v[0]) + 8;  // the class: usable bytes and the canary
  std::vector<char*> sorted = v;
  std::sort(sorted.begin(), sorted.end());
  char* a = nullptr;
  char* b = nullptr;
  for (size_t i = 1; i < sorted.size() && a == nullptr; ++i)
    if (sorted[i] == sorted[i - 1] + stride) a = sorted[i - 1], b = sorted[i];
  if (a == nullptr) _exit(3);  // no neighbours at all: nothing to overflow into
  free(b);
  uintptr_t payload[8] = {reinterpret_cast<uintptr_t>(&g_target[0]), 0x4141, 0x4242, 0x4343, 0, 0, 0, 0};
  memcpy(static_cast<char*>(opaque(a)) + stride, payload, overflow);  // from a into b
  for (int i = 0; i < 2000; ++i) {
    void* q = malloc(64);
    if (q == &g_target[0]) fprintf(stderr, "malloc handed out the address the overflow chose\n");
    free(q);
  }
  fprintf(stderr, "no fault seen\n");
  _exit(0);
}

TEST_F(Hardened, OverflowIntoAFreedNeighbourIsCaught) {
  for (size_t overflow : {size_t{16}, size_t{64}})
    EXPECT_DEATH(overflow_into_freed_neighbour(overflow),
                 "hakmem: free: the block at 0x[0-9a-f]+ was written after it was freed; aborting")
        << overflow;
}

// ---- Each mitigation is one setting (SECURITY.md) ----


// Measures which mitigations are at work in this process and prints them;
// run by the test below with the settings it wants, skipped otherwise.
TEST(HardenedSettings, ProbeForTheParent) {
  if (getenv("HAKMEM_TEST_PROBE") == nullptr) GTEST_SKIP() << "run by EachMitigationIsOneSetting";
  void* p = malloc(64);
  free(p);
  void* q = malloc(64);
  const bool quarantine = q != p;
  free(q);
  char* c = static_cast<char*>(malloc(100));
  const bool canary = malloc_usable_size(c) % 16 == 8;  // 8 bytes short of its class
  free(c);
  std::vector<char*> v;
  for (int i = 0; i < 400; ++i) v.push_back(static_cast<char*>(malloc(128)));
  const size_t stride = malloc_usable_size(v[0]) + (canary ? 8 : 0);
  int ascending = 0;
  for (size_t i = 1; i < v.size(); ++i) ascending += v[i] == v[i - 1] + stride;
  const bool random = ascending < 200;
  for (char* b : v) memset(b, 0xab, 128);
  for (char* b : v) free(b);
  v.clear();
  push_through_quarantine(128);
  bool leftovers = false;
  for (int i = 0; i < 2000; ++i) {
    v.push_back(static_cast<char*>(malloc(128)));
    leftovers |= v.back()[64] == static_cast<char>(0xab);
  }
  for (char* b : v) free(b);
  char* huge = static_cast<char*>(malloc(5 * MiB));
  const bool guards = mapping_perms(huge - 1) == "---p";
  free(huge);
  char* span = static_cast<char*>(malloc(300 * KiB));
  const bool span_guards = mapping_perms(span + malloc_usable_size(span)) == "---p";
  free(span);
  printf("probe: quarantine=%d random=%d zero=%d guards=%d span_guards=%d canary=%d\n", quarantine, random, !leftovers,
         guards, span_guards, canary);
}

// HAKMEM_HARDENED_ZERO_MAX is checked as every number setting is.
TEST(HardenedSettings, ZeroMaxTakesANumberOfBytes) {
  const struct {
    const char* env;
    const char* said;
  } cases[] = {
      {"HAKMEM_HARDENED_ZERO_MAX=4k", "HAKMEM_HARDENED_ZERO_MAX=4k is not a number of bytes; using the default, 4096\n"},
      {"HAKMEM_HARDENED_ZERO_MAX=1125899906842625",
       "HAKMEM_HARDENED_ZERO_MAX=1125899906842625 is above the most, 1125899906842624 bytes; using 1125899906842624\n"},
      {"HAKMEM_HARDENED_ZERO_MAX=65536", ""},
  };
  for (const auto& c : cases) {
    int status = 0;
    const std::string said = test_support::startup_warning(c.env, "HardenedSettings.ProbeForTheParent", &status);
    EXPECT_EQ(status, 0) << c.env;
    EXPECT_EQ(said, c.said) << c.env;
  }
}

TEST(HardenedSettings, EachMitigationIsOneSetting) {
  const char* names[] = {"QUARANTINE", "RANDOM", "ZERO", "GUARDS", "CANARY"};
  for (int off = -1; off < 5; ++off) {
    std::string env = "HAKMEM_TEST_PROBE=1";
    if (off >= 0) env += std::string(" HAKMEM_HARDENED_") + names[off] + "=0";
    int status = 0;
    std::string probe = test_support::run_self(env, "HardenedSettings.ProbeForTheParent", "probe: ", &status);
    ASSERT_EQ(status, 0) << env;
    char want[128];
    snprintf(want, sizeof want, "quarantine=%d random=%d zero=%d guards=%d span_guards=%d canary=%d\n", off != 0,
             off != 1, off != 2, off != 3, off != 3, off != 4);
    EXPECT_EQ(probe, want) << env;
  }
}

}  // namespace
