// Size classes (core/size_class/size_class.h): the table and the mapping
// from request sizes to classes.
#include <malloc.h>
#include <stdlib.h>

#include <algorithm>
#include <set>
#include <vector>

#include <gtest/gtest.h>

#include "hakmem.h"
#include "size_class/size_class.h"
#include "slab/slab.h"

namespace {

using namespace hakmem;

TEST(SizeClass, TableShape) {
  EXPECT_EQ(kNumClasses, HAK_NUM_CLASSES);
  EXPECT_EQ(class_size(0), 8u);
  EXPECT_EQ(class_size(kNumSizeClasses - 1), kSlabMax + kColourPad);
  EXPECT_EQ(class_size(kNumClasses - 1), kSlabMax);
  EXPECT_EQ(class_size(kNumTinyClasses - 1), kTinyMax);
  EXPECT_LT(class_size(kNumTinyClasses - 1 + 1), kTinyMax * 2);
  EXPECT_GT(class_size(kNumTinyClasses), kTinyMax);
  for (int c = 0; c < kNumClasses; ++c) {
    EXPECT_EQ(class_info(c).size, class_size(c)) << c;
  }
}

TEST(SizeClass, StrictlyIncreasing) {
  for (int c = 1; c < kNumSizeClasses; ++c)
    EXPECT_LT(class_size(c - 1), class_size(c)) << "class " << c - 1 << " and " << c;
  for (int c = kNumSizeClasses + 1; c < kNumClasses; ++c)
    EXPECT_LT(class_size(c - 1), class_size(c)) << "aligned class " << c - 1 << " and " << c;
}

// Colour: the size classes whose step is a whole number of pages from 8 KiB
// up are a cache line longer, so that the blocks of a slab start on
// different lines of their pages; each has an aligned class of the step
// itself, after the size classes, in the same order.
TEST(SizeClass, PageMultiplesAreColouredAndHaveAnAlignedTwin) {
  int twin = kNumSizeClasses;
  for (int c = 0; c < kNumSizeClasses; ++c) {
    const size_t s = class_size(c);
    if (s < 2 * 4096 || (s - kColourPad) % 4096 != 0) {
      EXPECT_TRUE(s % 4096 != 0 || s == 4096) << "class " << c << " (" << s << " B) is page-aligned and uncoloured";
      continue;
    }
    ASSERT_LT(twin, kNumClasses) << "no aligned class for class " << c;
    EXPECT_EQ(class_size(twin), s - kColourPad) << "class " << c;
    // Block k of a slab starts k cache lines into its page, up to a page.
    std::set<size_t> lines;
    for (uint32_t k = 0; k < class_info(c).blocks_per_slab; ++k) lines.insert(k * s % 4096 / 64);
    EXPECT_EQ(lines.size(), std::min<size_t>(class_info(c).blocks_per_slab, 64)) << "class " << c;
    ++twin;
  }
  EXPECT_EQ(twin, kNumClasses) << "aligned classes without a coloured class";
}

TEST(SizeClass, MultiplesOfSixteenAboveEight) {
  for (int c = 0; c < kNumClasses; ++c) {
    size_t s = class_size(c);
    EXPECT_EQ(s % (s > 8 ? 16 : 8), 0u) << "class " << c << " size " << s;
  }
}

// The smallest class whose step (its size less any colour pad) holds n:
// a pad is room the program may use (malloc_usable_size), not a reach.
TEST(SizeClass, SizeToClassIsSmallestFit) {
  int expect = kSmallestClass;
  for (size_t n = 0; n <= kSlabMax; ++n) {
    while (class_step(expect) < n) ++expect;
    int got = size_to_class(n);
    ASSERT_EQ(got, expect) << "size " << n << " maps to class of " << class_size(got) << ", smallest fit is "
                           << class_size(expect);
    if (n <= kTinyMax) {
      ASSERT_EQ(static_cast<int>(tiny_size_to_class(n)), expect) << n;
    }
    if (n > kTinyMax) {
      ASSERT_EQ(static_cast<int>(mid_size_to_class(n)), expect) << n;
    }
  }
}

TEST(SizeClass, WasteUnderQuarterAbove64) {
  for (size_t n = 65; n <= kSlabMax; ++n) {
    size_t s = class_size(size_to_class(n));
    ASSERT_GE(s, n);
    ASSERT_LT((s - n) * 4, n + 4 * kColourPad) << "request " << n << " gets " << s << ": waste " << s - n;
  }
}

TEST(SizeClass, AtLeastFourClassesPerDoublingAbove64) {
  for (size_t lo = 64; lo < kSlabMax; lo *= 2) {
    int count = 0;
    for (int c = 0; c < kNumSizeClasses; ++c)
      if (class_step(c) > lo && class_step(c) <= lo * 2) ++count;
    EXPECT_GE(count, 4) << "classes in (" << lo << ", " << lo * 2 << "]";
  }
}

TEST(SizeClass, SlabGeometry) {
  for (int c = 0; c < kNumClasses; ++c) {
    const ClassInfo& ci = class_info(c);
    SCOPED_TRACE("class " + std::to_string(c) + " size " + std::to_string(ci.size));
    ASSERT_GE(ci.slab_units, 1u);
    // A slab fits in a segment next to its header unit.
    ASSERT_LE(ci.slab_units, kSegmentSize / kUnitSize - 1);
    uint64_t bytes = uint64_t{ci.slab_units} * kUnitSize;
    ASSERT_GE(ci.blocks_per_slab, 1u);
    EXPECT_LE(uint64_t{ci.blocks_per_slab} * ci.size, bytes);
    // No room left for one more block (no unit wasted for nothing).
    EXPECT_LT(bytes - uint64_t{ci.blocks_per_slab} * ci.size, ci.size);
    // Enough blocks that a refill batch comes from one slab: room for 16
    // steps (8 above 32 KiB), which a coloured class's pads cost one block of.
    const uint32_t step = class_step(c);
    const uint32_t min_blocks = step <= 32768 ? 16 : 8;
    EXPECT_GE(ci.blocks_per_slab, ci.size == step ? min_blocks : min_blocks - 1);
    EXPECT_GE(uint64_t{ci.slab_units} * kUnitSize, uint64_t{step} * min_blocks);
    // Not more units than needed for that minimum.
    if (ci.slab_units > 1) {
      EXPECT_LT(uint64_t{ci.slab_units - 1} * kUnitSize, uint64_t{step} * min_blocks);
    }
  }
}

// free()'s block test (class_block_test): off * check_c < carved * check_step
// exactly when off is the offset of one of the slab's first `carved` blocks.
// Checked for every offset of a whole segment (a unit entry only ever sees
// offsets inside its run, which is shorter), two ways: the two ranges the
// multiply maps offsets into never meet, and the test itself agrees with
// division for every number of carved blocks that matters.
TEST(SizeClass, BlockTestAgreesWithDivision) {
  for (int c = 0; c < kNumClasses; ++c) {
    const ClassInfo& ci = class_info(c);
    SCOPED_TRACE(testing::Message() << "class " << c << " (" << ci.size << " B)");
    // floor(2^64 / size) + 1, and size * check_c - 2^64 in [1, size].
    const unsigned __int128 two64 = static_cast<unsigned __int128>(1) << 64;
    EXPECT_EQ(ci.check_c, static_cast<uint64_t>(two64 / ci.size + 1));
    EXPECT_EQ(static_cast<unsigned __int128>(ci.check_c) * ci.size - two64, ci.check_step);
    ASSERT_GE(ci.check_step, 1u);
    ASSERT_LE(ci.check_step, ci.size);
    ASSERT_GT(ci.check_c, uint64_t{ci.blocks_per_slab} * ci.check_step);
    for (uint64_t off = 0; off < kSegmentSize; ++off) {
      const uint64_t image = off * ci.check_c;
      if (off % ci.size == 0) {
        if (image != off / ci.size * ci.check_step) FAIL() << "block " << off / ci.size << " maps to " << image;
      } else if (image < ci.check_c) {
        FAIL() << "offset " << off << " (not a block start) maps below check_c: " << image;
      }
    }
    const uint32_t cap = ci.blocks_per_slab;
    for (uint32_t carved : {0u, 1u, cap / 2, cap - 1, cap}) {
      for (uint64_t off = 0; off < uint64_t{ci.slab_units} * kUnitSize + kUnitSize; ++off) {
        bool expect = off % ci.size == 0 && off / ci.size < carved;
        if (class_block_test(ci, off, carved) != expect)
          FAIL() << "offset " << off << " carved " << carved << ": test says " << !expect;
      }
    }
  }
}

TEST(SizeClass, AlignedClass) {
  for (size_t align = 1; align <= 2 * kUnitSize; align <<= 1) {
    for (size_t n = 0; n <= kSlabMax + 1; n += (n < 4096 ? 1 : 61)) {
      int c = size_to_aligned_class(n, align);
      if (align > kUnitSize || n > kSlabMax) {
        EXPECT_EQ(c, -1) << n << " " << align;
        continue;
      }
      // The smallest class whose step holds n and whose size is a multiple
      // of align, a size class before an aligned one of the same size.
      int expect = -1;
      for (int k = kSmallestClass; k < kNumClasses; ++k)
        if (class_step(k) >= n && class_size(k) >= align && class_size(k) % align == 0 &&
            (expect < 0 || class_size(k) < class_size(expect)))
          expect = k;
      ASSERT_EQ(c, expect) << "size " << n << " align " << align;
    }
  }
}

TEST(SizeClass, LibraryAgreesWithTable) {
  // The library's own view (usable sizes, stats) matches the header's table.
  hak_stats s;
  hak_stats_get(&s);
  for (int c = 0; c < kNumClasses; ++c) EXPECT_EQ(s.classes[c].block_size, class_size(c)) << c;
  for (size_t n = 0; n <= kSlabMax; n += (n < 2048 ? 1 : 127)) {
    void* p = malloc(n);
    ASSERT_NE(p, nullptr);
    ASSERT_EQ(malloc_usable_size(p), class_size(size_to_class(n))) << n;
    free(p);
  }
  // The first size above the mid limit is no longer a class block.
  void* p = malloc(kSlabMax + 1);
  ASSERT_NE(p, nullptr);
  EXPECT_GT(malloc_usable_size(p), kSlabMax);
  free(p);
}

TEST(SizeClass, StatsCountTheRightClass) {
  // An allocation of n bytes is counted in class size_to_class(n).
  const size_t sizes[] = {1, 8, 9, 17, 33, 65, 129, 1000, 1025, 5000, 40000, 100000, kSlabMax};
  for (size_t n : sizes) {
    int c = size_to_class(n);
    hak_stats before, after;
    hak_stats_get(&before);
    void* p = malloc(n);
    ASSERT_NE(p, nullptr);
    hak_stats_get(&after);
    EXPECT_EQ(after.classes[c].allocs, before.classes[c].allocs + 1) << n;
    free(p);
    hak_stats_get(&after);
    EXPECT_EQ(after.classes[c].frees, before.classes[c].frees + 1) << n;
  }
}

}  // namespace
