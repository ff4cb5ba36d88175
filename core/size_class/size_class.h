// Size classes: one table shared by the tiny (<= 1 KiB) and mid (<= 128 KiB)
// ranges, which use the same slab machinery. Built at compile time.
//
// 8, 16, 32, 48, 64, then four classes per doubling (80, 96, 112, 128, 160,
// ...): a request above 64 B never wastes more than 25 % of itself
// (worst case 129 -> 160). Every class above 8 B is a multiple of 16, and
// slabs start on 64 KiB boundaries, so every block is 16-byte aligned.
//
// Colour. A class whose step is a whole number of pages from 8 KiB up
// (8, 12, 16, 20 ... 128 KiB) is 64 bytes longer than that step, so that
// block k of a slab starts k cache lines past a page boundary. Were every
// block page-aligned, the first line of every page of every block would
// fall in the same few cache sets: a program that writes one word per page
// (or keeps a header at each block's start) would thrash them.
// bench/mid-churn, which writes every page of blocks of 8-32 KiB, ran at
// 0.45x the speed with page-aligned blocks (2026-12-03; bench/losses.txt's
// history). Requests that need a page-aligned block (posix_memalign,
// aligned_alloc, valloc with an alignment of 4 KiB or more) take it from
// the aligned classes instead: one per coloured class, of the uncoloured
// step, placed after the classes malloc's lookup maps to. They have slabs,
// bins and pools of their own like any class.
#pragma once

#include "base/base.h"

namespace hakmem {

// Every class: each has a slab tag, a thread-cache bin and a central pool.
constexpr int kNumClasses = 64;
// The classes malloc's size lookup maps to, strictly increasing in size;
// classes kNumSizeClasses.. are the aligned classes (see Colour, above).
constexpr int kNumSizeClasses = 49;
constexpr uint32_t kColourPad = 64;     // one cache line
constexpr uint32_t kColourPage = 4096;  // the span whose offsets colours spread over: the page
// The hardened variant keeps a mark in word 1 of every free block (base.h),
// so its smallest class is the 16 B one; the 8 B class then serves nothing.
constexpr int kSmallestClass = kHardened ? 1 : 0;
constexpr int kNumTinyClasses = 21;        // classes 0..20: 8 B .. 1 KiB
constexpr size_t kTinyMax = 1024;
constexpr size_t kSlabMax = 128 * 1024;    // the mid limit: above it, the large box
constexpr size_t kUnitShift = 16;          // a segment is cut into 64 KiB units
constexpr size_t kUnitSize = size_t{1} << kUnitShift;
constexpr uintptr_t kUnitOffsetMask = kUnitSize - 1;  // an address's bits below its unit

struct ClassInfo {
  // free()'s block test, one multiply and one compare (class_block_test).
  // check_c = floor(2^64 / size) + 1, and check_step = size * check_c - 2^64,
  // which lies in [1, size]. Multiplying by check_c maps the offset of the
  // k-th block of a slab to k * check_step, and every offset that is not a
  // multiple of the size to at least check_c (the fractional part of
  // off / size, scaled by 2^64: Lemire, Kaser & Kurz, "Faster remainder by
  // direct computation"). check_c is above 2^46 for every class, and a slab
  // is under 2^22 bytes, so the two ranges never meet.
  uint64_t check_c;
  uint64_t check_step;
  uint32_t size;
  uint32_t step;             // size less any colour pad (class_step)
  uint32_t slab_units;       // 64 KiB units per slab
  uint32_t blocks_per_slab;
};

namespace size_class_detail {

// The ladder of steps: 8, 16, 32, 48, 64, then four per doubling.
constexpr uint32_t ladder_step(int c) {
  if (c < 5) return c == 0 ? 8u : static_cast<uint32_t>(c) * 16u;  // 8, 16, 32, 48, 64
  int k = c - 5;                       // 0.. : four steps per doubling from 64
  uint32_t base = 64u << (k / 4);
  return base + base / 4 * static_cast<uint32_t>(k % 4 + 1);
}
constexpr bool coloured_step(uint32_t step) { return step >= 2 * kColourPage && step % kColourPage == 0; }
// A class's step without its colour: a size class's ladder step, or the
// step of the coloured class an aligned class stands beside.
constexpr uint32_t class_step(int c) {
  if (c < kNumSizeClasses) return ladder_step(c);
  int k = c - kNumSizeClasses;
  for (int s = 0; s < kNumSizeClasses; ++s)
    if (coloured_step(ladder_step(s)) && k-- == 0) return ladder_step(s);
  return 0;
}
constexpr uint32_t class_size(int c) {
  uint32_t step = class_step(c);
  return c < kNumSizeClasses && coloured_step(step) ? step + kColourPad : step;
}

struct Tables {
  ClassInfo info[kNumClasses];
  uint8_t small_class[kTinyMax / 8 + 1];     // index (n + 7) >> 3, n <= 1 KiB
  uint8_t mid_class[kSlabMax / 256 + 1];     // index (n + 255) >> 8, n <= 128 KiB
};

constexpr Tables build() {
  Tables t{};
  for (int c = 0; c < kNumClasses; ++c) {
    uint32_t size = class_size(c);
    // Room for 16 steps per slab up to 32 KiB and 8 above, so a refill batch
    // comes from one slab; tiny classes fill a single unit. A coloured class
    // fits one block fewer in the same slab (its pads add up to less than
    // one step): the same units either way.
    uint32_t step = class_step(c);
    uint32_t min_blocks = step <= 32768 ? 16u : 8u;
    uint32_t units = static_cast<uint32_t>((uint64_t{step} * min_blocks + kUnitSize - 1) / kUnitSize);
    if (units == 0) units = 1;
    t.info[c].size = size;
    t.info[c].step = step;
    t.info[c].slab_units = units;
    t.info[c].blocks_per_slab = static_cast<uint32_t>(units * kUnitSize / size);
    // floor(2^64 / size) + 1: UINT64_MAX / size is floor(2^64 / size) unless
    // size is a power of two, where it falls one short.
    t.info[c].check_c = UINT64_MAX / size + 1 + ((size & (size - 1)) == 0 ? 1 : 0);
    t.info[c].check_step = uint64_t{size} * t.info[c].check_c;  // mod 2^64
  }
  int c = kSmallestClass;
  for (size_t i = 0; i <= kTinyMax / 8; ++i) {
    while (class_step(c) < i * 8) ++c;
    t.small_class[i] = static_cast<uint8_t>(c);
  }
  c = 0;
  for (size_t i = 0; i <= kSlabMax / 256; ++i) {
    while (class_step(c) < i * 256) ++c;  // a colour pad is room, not reach
    t.mid_class[i] = static_cast<uint8_t>(c);
  }
  return t;
}

inline constexpr Tables kTables = build();

static_assert(class_step(kNumSizeClasses - 1) == kSlabMax && class_size(kNumClasses - 1) == kSlabMax,
              "the last size class and the last aligned class serve the mid limit");
constexpr int count_coloured() {
  int n = 0;
  for (int c = 0; c < kNumSizeClasses; ++c) n += coloured_step(ladder_step(c)) ? 1 : 0;
  return n;
}
static_assert(kNumSizeClasses + count_coloured() == kNumClasses, "one aligned class per coloured class");
static_assert(class_size(27) == kCanaryClassMax && class_size(28) == 4096, "canaries end at a class, below 4 KiB");
static_assert(class_size(kNumTinyClasses - 1) == kTinyMax, "class 20 is 1 KiB");

}  // namespace size_class_detail

HAK_INLINE constexpr const ClassInfo& class_info(int cls) { return size_class_detail::kTables.info[cls]; }
HAK_INLINE size_t class_size(int cls) { return size_class_detail::kTables.info[cls].size; }
// A class's size less its colour pad: what malloc's lookup fits requests to.
HAK_INLINE constexpr size_t class_step(int cls) { return size_class_detail::kTables.info[cls].step; }

// Is `off` (an address minus its slab's start) the start of one of the slab's
// first `carved` blocks? Exactly when off * check_c < carved * check_step
// (see ClassInfo), for any off below 2^22 and carved up to blocks_per_slab.
// free() keeps the limit, carved * check_step, in the unit entry, so the
// test of a pointer is this one multiply and compare (block_offset_test).
HAK_INLINE constexpr uint64_t class_carve_limit(const ClassInfo& ci, uint32_t carved) {
  return uint64_t{carved} * ci.check_step;
}
HAK_INLINE constexpr bool block_offset_test(uint64_t off, uint64_t check_c, uint64_t limit) {
  return off * check_c < limit;
}
HAK_INLINE constexpr bool class_block_test(const ClassInfo& ci, uint64_t off, uint32_t carved) {
  return block_offset_test(off, ci.check_c, class_carve_limit(ci, carved));
}

// The class that serves `n` bytes, for n <= kTinyMax and n <= kSlabMax.
HAK_INLINE constexpr unsigned tiny_size_to_class(size_t n) { return size_class_detail::kTables.small_class[(n + 7) >> 3]; }
HAK_INLINE constexpr unsigned mid_size_to_class(size_t n) { return size_class_detail::kTables.mid_class[(n + 255) >> 8]; }
HAK_INLINE int size_to_class(size_t n) {
  return static_cast<int>(n <= kTinyMax ? tiny_size_to_class(n) : mid_size_to_class(n));
}

// The smallest class >= `n` whose blocks are all `align`-aligned (its size is
// a multiple of align; slabs start 64 KiB-aligned), or -1 if none is: a size
// class when one is, else an aligned class (page alignments from 8 KiB up).
inline int size_to_aligned_class(size_t n, size_t align) {
  if (n > kSlabMax || align > kUnitSize) return -1;
  if (n < align) n = align;
  int best = -1;
  for (int c = size_to_class(n); c < kNumSizeClasses; ++c)
    if ((class_size(c) & (align - 1)) == 0) {
      best = c;
      break;
    }
  for (int c = kNumSizeClasses; c < kNumClasses; ++c)  // in increasing size
    if (class_size(c) >= n && (class_size(c) & (align - 1)) == 0) {
      if (best < 0 || class_size(c) < class_size(best)) best = c;
      break;
    }
  return best;
}

}  // namespace hakmem
