// The hardened variant (libhakmem-hardened.so, SECURITY.md): every heap
// fault it promises to catch, made on purpose in a child process (GoogleTest
// death tests), must end that process with its one-line diagnosis naming the
// address. A fault it lets through would make the child exit normally, and
// the test fail.
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "hakmem.h"

namespace {

constexpr size_t KiB = 1024, MiB = 1024 * 1024;

// Hide where a pointer came from, so the compiler neither warns about the
// deliberate misuse nor reasons about it.
void* launder(void* p) {
  asm volatile("" : "+r"(p) : : "memory");
  return p;
}

std::string address_pattern(const void* p) {
  char buf[64];
  snprintf(buf, sizeof buf, "%p", p);
  return buf;
}

long g_target[8];  // where a write after free would like malloc to point

// Death tests fork ("fast" style): the child has the parent's addresses,
// so the expected diagnosis can name them. The parent has no other threads
// alive at those points.
class Hardened : public testing::Test {};

// Both frees in the child: nothing the test framework allocates between
// them can take the block back.
TEST_F(Hardened, DoubleFreeAbortsInEveryRange) {
  for (size_t n : {size_t{1}, size_t{16}, size_t{256}, size_t{4 * KiB}, size_t{32 * KiB}, size_t{128 * KiB}}) {
    void* p = malloc(n);
    ASSERT_NE(p, nullptr);
    const std::string expected = "hakmem: free\\(" + address_pattern(p) + "\\): double free; aborting";
    EXPECT_DEATH((free(p), free(launder(p))), expected) << n;
    free(p);
  }
  for (size_t n : {size_t{300 * KiB}, size_t{5 * MiB}}) {  // large spans and huge mappings
    void* p = malloc(n);
    ASSERT_NE(p, nullptr);
    const std::string expected = "hakmem: free\\(" + address_pattern(p) + "\\): " +
                                 (n < MiB ? "not a live block" : "pointer not allocated by hakmem \\(or a huge block freed already\\)");
    EXPECT_DEATH((free(p), free(launder(p))), expected) << n;
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
  EXPECT_DEATH(free(launder(p)), "double free; aborting");
}

TEST_F(Hardened, ForeignAndInteriorFreesAbort) {
  const std::string foreign = "hakmem: free\\(" + address_pattern(&g_target[2]) + "\\): pointer not allocated by hakmem \\(or a huge block freed already\\); aborting";
  EXPECT_DEATH(free(launder(&g_target[2])), foreign);
  long on_stack[4] = {1, 2, 3, 4};
  EXPECT_DEATH(free(launder(on_stack)), "pointer not allocated by hakmem \\(or a huge block freed already\\); aborting");
  char* p = static_cast<char*>(malloc(256));
  ASSERT_NE(p, nullptr);
  const std::string interior = "hakmem: free\\(" + address_pattern(p + 16) + "\\): not a live block.*aborting";
  EXPECT_DEATH(free(launder(p + 16)), interior);
  char* big = static_cast<char*>(malloc(300 * KiB));
  EXPECT_DEATH(free(launder(big + 4096)), "not a live block.*aborting");
  EXPECT_DEATH(free(launder(realloc(launder(&g_target[1]), 100))), "pointer not allocated by hakmem \\(or a huge block freed already\\); aborting");
  free(big);
  free(p);
}

// A write after free over a free block's link: without the secret the
// program cannot aim the list anywhere, and the allocation that would follow
// the damaged link stops the program instead of handing out g_target.
TEST_F(Hardened, WriteAfterFreeIntoALinkIsCaught) {
  EXPECT_DEATH(
      {
        void* q = malloc(64);
        void* p = malloc(64);
        free(q);
        free(p);  // the thread's list: p, then q
        uintptr_t aim = reinterpret_cast<uintptr_t>(&g_target[0]);
        memcpy(launder(p), &aim, sizeof aim);  // the write after free
        void* first = malloc(64);              // p itself
        void* second = malloc(64);             // would follow the damaged link
        if (second == &g_target[0]) fprintf(stderr, "malloc handed out the address the write chose\n");
        fprintf(stderr, "no fault seen: %p %p\n", first, second);
        _exit(0);
      },
      "hakmem: malloc: the free list of 64-byte blocks is damaged at 0x[0-9a-f]+ \\(a write after free\\?\\); aborting");
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
        memcpy(launder(v[0]), junk, sizeof junk);  // both words: link and seal
        malloc_trim(0);
        fprintf(stderr, "no fault seen\n");
        _exit(0);
      },
      "hakmem: a free list is damaged at 0x[0-9a-f]+ \\(a write after free\\?\\); aborting");
}

// A free block's link is not the next block's address in the clear, and it
// carries the free mark; both vanish when the block is handed out again.
TEST_F(Hardened, FreeBlocksHoldEncodedLinksAndAMark) {
  void* q = malloc(48);
  void* p = malloc(48);
  ASSERT_NE(p, nullptr);
  ASSERT_NE(q, nullptr);
  free(q);
  free(p);  // p's link leads to q
  uintptr_t words[2];
  memcpy(words, launder(p), sizeof words);
  EXPECT_NE(words[0], reinterpret_cast<uintptr_t>(q)) << "the link is stored in the clear";
  EXPECT_NE(words[0], 0u);
  EXPECT_NE(words[1], 0u) << "no free mark";
  void* again = malloc(48);
  EXPECT_EQ(again, p);
  memcpy(words, launder(again), sizeof words);
  EXPECT_EQ(words[1], 0u) << "the free mark outlived the allocation";
  free(again);
  free(malloc(48));
}

// Every block has room for the free mark: the smallest class is 16 bytes.
TEST_F(Hardened, SmallestBlockIsSixteenBytes) {
  for (size_t n = 0; n <= 16; ++n) {
    void* p = malloc(n);
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(malloc_usable_size(p), 16u) << n;
    EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % 16, 0u) << n;
    free(p);
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

}  // namespace
