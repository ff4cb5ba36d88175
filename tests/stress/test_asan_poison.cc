// asan build only: memory that is not in the program's hands is poisoned, so
// ASan reports a use after free and an overflow of a small hakmem block.
#include <gtest/gtest.h>

#include "hakmem.h"
#include "tests/support/opaque.h"

using test_support::opaque;

TEST(AsanPoisonDeathTest, UseAfterFreeOfASmallBlockIsReported) {
  EXPECT_DEATH(
      {
        char* p = static_cast<char*>(opaque(hak_malloc(48)));
        hak_free(p);
        static_cast<volatile char*>(opaque(p))[20] = 1;
      },
      "use-after-poison");
}

TEST(AsanPoisonDeathTest, OverflowOfASmallBlockIsReported) {
  EXPECT_DEATH(
      {
        char* p = static_cast<char*>(opaque(hak_malloc(64)));  // exactly one 64 B class block
        static_cast<volatile char*>(opaque(p))[64] = 1;         // the next block is not handed out
      },
      "use-after-poison");
}

TEST(AsanPoison, LiveBlocksAreFullyUsable) {
  for (size_t n : {1u, 17u, 64u, 1000u, 5000u, 70000u, 300000u, 3000000u}) {
    char* p = static_cast<char*>(hak_malloc(n));
    ASSERT_NE(p, nullptr);
    size_t usable = hak_malloc_usable_size(p);
    for (size_t i = 0; i < usable; i += 7) p[i] = static_cast<char>(i);
    p[usable - 1] = 1;
    hak_free(p);
  }
}
