// Properties of the size-class table (core/size_class/size_class.h) and of
// hakmem::BoundedRing (core/ring/ring.h) against a std::deque model.
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <atomic>
#include <deque>
#include <thread>

#include "ops.h"
#include "ring/ring.h"
#include "size_class/size_class.h"

using namespace hakmem;

namespace {

// The promises of the table for one request size n <= 128 KiB.
void check_size(size_t n) {
  int c = size_to_class(n);
  RC_ASSERT(c >= 0);
  RC_ASSERT(c < kNumClasses);
  RC_ASSERT(class_size(c) >= n);                       // fits
  RC_ASSERT(c < kNumSizeClasses);                      // never an aligned class
  RC_ASSERT(class_step(c) >= n);                       // fits without the colour pad,
  RC_ASSERT(c == 0 || class_step(c - 1) < n);          // the smallest class that does
  if (n > 64) RC_ASSERT(4 * (class_step(c) - n) < n);  // waste < 25 % above 64 B, and
  RC_ASSERT(class_size(c) - class_step(c) <= kColourPad);  // the pad, a cache line at most
  if (n > 8) RC_ASSERT(class_size(c) % 16 == 0);       // 16-aligned blocks above 8 B
  if (n <= kTinyMax) RC_ASSERT(c < kNumTinyClasses);
  else RC_ASSERT(c >= kNumTinyClasses);
}

}  // namespace

RC_GTEST_PROP(SizeClass, SmallestFittingClassWithBoundedWaste, ()) {
  check_size(*prop::uniform<size_t>(0, kSlabMax));
}

RC_GTEST_PROP(SizeClass, Monotone, ()) {
  size_t a = *prop::uniform<size_t>(0, kSlabMax);
  size_t b = *prop::uniform<size_t>(0, kSlabMax);
  if (a > b) std::swap(a, b);
  RC_ASSERT(size_to_class(a) <= size_to_class(b));
  RC_ASSERT(class_size(size_to_class(a)) <= class_size(size_to_class(b)));
}

RC_GTEST_PROP(SizeClass, AlignedClassIsTheSmallestAlignedFit, ()) {
  const size_t n = *prop::uniform<size_t>(0, kSlabMax + 64);
  const size_t align = size_t{1} << *prop::uniform<int>(0, 18);
  int c = size_to_aligned_class(n, align);
  int want = -1;
  if (n <= kSlabMax && align <= kUnitSize)
    for (int k = 0; k < kNumClasses; ++k)
      if (class_step(k) >= n && class_size(k) >= align && class_size(k) % align == 0 &&
          (want < 0 || class_size(k) < class_size(want)))
        want = k;  // the smallest such, a size class before an aligned one
  RC_ASSERT(c == want);
}

// free()'s one-multiply block test against a model of a slab: an offset is
// accepted exactly when it is the start of one of the first `carved` blocks,
// whatever the offset (inside the run, its slack, or past it) and however
// far the slab has been carved.
RC_GTEST_PROP(SizeClass, BlockTestFindsCarvedBlocks, ()) {
  const int c = *prop::uniform<int>(0, kNumClasses - 1);
  const ClassInfo& ci = class_info(c);
  const uint32_t carved = *prop::uniform<uint32_t>(0, ci.blocks_per_slab);
  const uint32_t run_bytes = static_cast<uint32_t>(ci.slab_units * kUnitSize);
  const uint32_t off = *rc::gen::weightedOneOf<uint32_t>({
      {1, prop::uniform<uint32_t>(0, run_bytes)},
      {1, rc::gen::map(prop::uniform<uint32_t>(0, ci.blocks_per_slab), [c](uint32_t k) {
         return static_cast<uint32_t>(k * class_size(c));
       })},
      {1, rc::gen::map(prop::uniform<uint32_t>(0, ci.blocks_per_slab), [c](uint32_t k) {
         return static_cast<uint32_t>(k * class_size(c) + 8);
       })},
  });
  const bool model = off % ci.size == 0 && off / ci.size < carved;
  RC_ASSERT(class_block_test(ci, off, carved) == model);
}

// The same, over every size and every slab offset: cheap enough to do exhaustively.
TEST(SizeClassExhaustive, EveryRequestSize) {
  int prev = 0;
  for (size_t n = 0; n <= kSlabMax; ++n) {
    int c = size_to_class(n);
    ASSERT_GE(class_size(c), n);
    ASSERT_TRUE(c == 0 || class_step(c - 1) < n) << n;
    ASSERT_GE(class_step(c), n) << n;
    ASSERT_GE(c, prev) << n;
    if (n > 64) {
      ASSERT_LT(4 * (class_step(c) - n), n) << "waste of " << n << " in class " << class_size(c);
      ASSERT_LE(class_size(c) - class_step(c), kColourPad) << n;
    }
    if (n > 8) {
      ASSERT_EQ(class_size(c) % 16, 0u) << n;
    }
    prev = c;
  }
  EXPECT_EQ(class_size(0), 8u);
  EXPECT_EQ(class_size(kNumTinyClasses - 1), kTinyMax);
  EXPECT_EQ(class_size(kNumClasses - 1), kSlabMax);
  EXPECT_EQ(HAK_NUM_CLASSES, kNumClasses);
}

TEST(SizeClassExhaustive, SlabGeometryAndBlockTest) {
  for (int c = 0; c < kNumClasses; ++c) {
    const ClassInfo& ci = class_info(c);
    SCOPED_TRACE(testing::Message() << "class " << c << " (" << ci.size << " B)");
    if (c > 0 && c != kNumSizeClasses) {  // the aligned classes start again from 8 KiB
      EXPECT_GT(ci.size, class_info(c - 1).size);
    }
    EXPECT_GE(ci.slab_units, 1u);
    EXPECT_LE(ci.slab_units, static_cast<uint32_t>(kUnitsPerSegment - 1));  // fits in a segment
    EXPECT_LE(uint64_t{ci.blocks_per_slab} * ci.size, uint64_t{ci.slab_units} * kUnitSize);
    // Room for 16 steps (8 above 32 KiB): a coloured class's pads take one.
    EXPECT_GE(ci.blocks_per_slab, (class_step(c) <= 32768 ? 16u : 8u) - (ci.size == class_step(c) ? 0 : 1));
    const uint32_t end = static_cast<uint32_t>(ci.slab_units * kUnitSize);
    for (uint32_t off = 0; off < end; ++off)
      ASSERT_EQ(class_block_test(ci, off, ci.blocks_per_slab), off % ci.size == 0 && off / ci.size < ci.blocks_per_slab)
          << "offset " << off;
  }
}

// ---------------------------------------------------------------- BoundedRing

namespace {

struct RingOp {
  bool push;
  uint32_t value;
};

void showValue(const RingOp& op, std::ostream& os) { os << (op.push ? "push " : "pop") << (op.push ? std::to_string(op.value) : ""); }

template <uint32_t kCap>
void check_ring_against_deque(const std::vector<RingOp>& ops) {
  static_assert(kCap >= 2, "");
  auto ring = std::make_unique<BoundedRing<uint32_t, kCap>>();
  std::deque<uint32_t> model;
  uint64_t drops = 0, pushed = 0;
  for (const RingOp& op : ops) {
    if (op.push) {
      bool ok = ring->try_push(op.value);
      bool room = model.size() < kCap;
      RC_ASSERT(ok == room);  // drops exactly when full, never waits
      if (room) {
        model.push_back(op.value);
        ++pushed;
      } else {
        ++drops;
      }
    } else {
      uint32_t v = 0xdeadbeef;
      bool ok = ring->try_pop(&v);
      RC_ASSERT(ok == !model.empty());
      if (ok) {
        RC_ASSERT(v == model.front());  // FIFO order of what was kept
        model.pop_front();
      }
    }
    RC_ASSERT(ring->drops() == drops);
    RC_ASSERT(ring->pushed() == pushed);
  }
  uint32_t v;
  while (!model.empty()) {  // everything kept comes out, in order
    RC_ASSERT(ring->try_pop(&v));
    RC_ASSERT(v == model.front());
    model.pop_front();
  }
  RC_ASSERT(!ring->try_pop(&v));
}

rc::Gen<std::vector<RingOp>> gen_ring_ops() {
  // Bias towards pushes so that the ring fills and drops.
  return rc::gen::scale(3.0, rc::gen::container<std::vector<RingOp>>(rc::gen::build<RingOp>(
                                  rc::gen::set(&RingOp::push, rc::gen::weightedElement<bool>({{3, true}, {2, false}})),
                                  rc::gen::set(&RingOp::value, rc::gen::arbitrary<uint32_t>()))));
}

}  // namespace

RC_GTEST_PROP(BoundedRing, Capacity2DropsOnFullKeepsFifo, ()) { check_ring_against_deque<2>(*gen_ring_ops()); }
RC_GTEST_PROP(BoundedRing, Capacity8DropsOnFullKeepsFifo, ()) { check_ring_against_deque<8>(*gen_ring_ops()); }
RC_GTEST_PROP(BoundedRing, Capacity64DropsOnFullKeepsFifo, ()) { check_ring_against_deque<64>(*gen_ring_ops()); }

// Capacity 1 cannot work with per-cell turn numbers; the ring's static_assert
// rejects it at compile time (found by this property: a one-cell ring
// accepted every push).

// Several producers and one consumer at once: nothing is duplicated or
// invented, each producer's items come out in the order it pushed them, and
// every push either lands (and is popped) or is counted as a drop.
RC_GTEST_PROP(BoundedRing, ConcurrentProducersLoseNothingUncounted, ()) {
  const int producers = *prop::uniform<int>(1, 3);
  const uint32_t per_producer = *prop::uniform<uint32_t>(1, 20000);
  auto ring = std::make_unique<BoundedRing<uint32_t, 16>>();
  std::atomic<int> running{producers};
  std::vector<uint64_t> accepted(static_cast<size_t>(producers), 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < producers; ++t)
    threads.emplace_back([&, t] {
      for (uint32_t i = 0; i < per_producer; ++i)
        if (ring->try_push((static_cast<uint32_t>(t) << 24) | i)) ++accepted[static_cast<size_t>(t)];
      running.fetch_sub(1);
    });
  std::vector<int64_t> last(static_cast<size_t>(producers), -1);
  std::vector<uint64_t> popped(static_cast<size_t>(producers), 0);
  bool order_ok = true, id_ok = true;
  for (;;) {
    bool done = running.load() == 0;
    uint32_t v;
    while (ring->try_pop(&v)) {
      uint32_t t = v >> 24, i = v & 0xffffff;
      if (t >= static_cast<uint32_t>(producers) || i >= per_producer) { id_ok = false; continue; }
      if (static_cast<int64_t>(i) <= last[t]) order_ok = false;
      last[t] = i;
      ++popped[t];
    }
    if (done) break;
  }
  for (auto& th : threads) th.join();
  RC_ASSERT(id_ok);
  RC_ASSERT(order_ok);
  uint64_t total_accepted = 0;
  for (int t = 0; t < producers; ++t) {
    RC_ASSERT(popped[static_cast<size_t>(t)] == accepted[static_cast<size_t>(t)]);
    total_accepted += accepted[static_cast<size_t>(t)];
  }
  RC_ASSERT(ring->pushed() == total_accepted);
  RC_ASSERT(ring->drops() == static_cast<uint64_t>(producers) * per_producer - total_accepted);
}
