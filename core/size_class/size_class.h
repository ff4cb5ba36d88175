// Size classes: one table shared by the tiny (<= 1 KiB) and mid (<= 128 KiB)
// ranges, which use the same slab machinery. Built at compile time.
//
// 8, 16, 32, 48, 64, then four classes per doubling (80, 96, 112, 128, 160,
// ...): a request above 64 B never wastes more than 25 % of itself
// (worst case 129 -> 160). Every class above 8 B is a multiple of 16, and
// slabs start on 64 KiB boundaries, so every block is 16-byte aligned.
#pragma once

#include "base/base.h"

namespace hakmem {

constexpr int kNumClasses = 49;
constexpr int kNumTinyClasses = 21;        // classes 0..20: 8 B .. 1 KiB
constexpr size_t kTinyMax = 1024;
constexpr size_t kSlabMax = 128 * 1024;    // the mid limit: above it, the large box
constexpr size_t kUnitShift = 16;          // a segment is cut into 64 KiB units
constexpr size_t kUnitSize = size_t{1} << kUnitShift;

struct ClassInfo {
  // ceil(2^64 / size): (uint32)off * divisor_c < divisor_c  <=>  off % size == 0
  // (Lemire, Kaser & Kurz, "Faster remainder by direct computation"): the
  // one-multiply block-boundary check of free().
  uint64_t divisor_c;
  uint32_t size;
  uint32_t slab_units;       // 64 KiB units per slab
  uint32_t blocks_per_slab;
};

namespace size_class_detail {

constexpr uint32_t class_size(int c) {
  if (c < 5) return c == 0 ? 8u : static_cast<uint32_t>(c) * 16u;  // 8, 16, 32, 48, 64
  int k = c - 5;                       // 0.. : four steps per doubling from 64
  uint32_t base = 64u << (k / 4);
  return base + base / 4 * static_cast<uint32_t>(k % 4 + 1);
}

struct Tables {
  ClassInfo info[kNumClasses];
  uint64_t divisor[kNumClasses];             // info[c].divisor_c, packed for free()
  uint8_t small_class[kTinyMax / 8 + 1];     // index (n + 7) >> 3, n <= 1 KiB
  uint8_t mid_class[kSlabMax / 256 + 1];     // index (n + 255) >> 8, n <= 128 KiB
};

constexpr Tables build() {
  Tables t{};
  for (int c = 0; c < kNumClasses; ++c) {
    uint32_t size = class_size(c);
    // At least 16 blocks per slab up to 32 KiB and 8 above, so a refill batch
    // comes from one slab; tiny classes fill a single unit.
    uint32_t min_blocks = size <= 32768 ? 16u : 8u;
    uint32_t units = static_cast<uint32_t>((uint64_t{size} * min_blocks + kUnitSize - 1) / kUnitSize);
    if (units == 0) units = 1;
    t.info[c].size = size;
    t.info[c].slab_units = units;
    t.info[c].blocks_per_slab = static_cast<uint32_t>(units * kUnitSize / size);
    t.info[c].divisor_c = UINT64_MAX / size + 1;
    t.divisor[c] = t.info[c].divisor_c;
  }
  int c = 0;
  for (size_t i = 0; i <= kTinyMax / 8; ++i) {
    while (class_size(c) < i * 8) ++c;
    t.small_class[i] = static_cast<uint8_t>(c);
  }
  c = 0;
  for (size_t i = 0; i <= kSlabMax / 256; ++i) {
    while (class_size(c) < i * 256) ++c;
    t.mid_class[i] = static_cast<uint8_t>(c);
  }
  return t;
}

inline constexpr Tables kTables = build();

static_assert(class_size(kNumClasses - 1) == kSlabMax, "the last class is the mid limit");
static_assert(class_size(kNumTinyClasses - 1) == kTinyMax, "class 20 is 1 KiB");

}  // namespace size_class_detail

HAK_INLINE constexpr const ClassInfo& class_info(int cls) { return size_class_detail::kTables.info[cls]; }
HAK_INLINE size_t class_size(int cls) { return size_class_detail::kTables.info[cls].size; }
HAK_INLINE uint64_t class_divisor(int cls) { return size_class_detail::kTables.divisor[cls]; }

// The class that serves `n` bytes, for n <= kTinyMax and n <= kSlabMax.
HAK_INLINE unsigned tiny_size_to_class(size_t n) { return size_class_detail::kTables.small_class[(n + 7) >> 3]; }
HAK_INLINE unsigned mid_size_to_class(size_t n) { return size_class_detail::kTables.mid_class[(n + 255) >> 8]; }
HAK_INLINE int size_to_class(size_t n) {
  return static_cast<int>(n <= kTinyMax ? tiny_size_to_class(n) : mid_size_to_class(n));
}

// The smallest class >= `n` whose blocks are all `align`-aligned (its size is
// a multiple of align; slabs start 64 KiB-aligned), or -1 if none is.
inline int size_to_aligned_class(size_t n, size_t align) {
  if (n > kSlabMax || align > kUnitSize) return -1;
  for (int c = size_to_class(n < align ? align : n); c < kNumClasses; ++c)
    if (class_size(c) % align == 0) return c;
  return -1;
}

}  // namespace hakmem
