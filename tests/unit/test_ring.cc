// hakmem::BoundedRing (core/ring/ring.h), contract A: a bounded
// multi-producer queue that never blocks its producers; when full it drops
// and counts the drop.
#include <stdint.h>

#include <atomic>
#include <memory>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "ring/ring.h"

namespace {

using hakmem::BoundedRing;

struct Item {
  uint32_t producer;
  uint32_t seq;
  uint64_t check;  // producer * 1'000'003 + seq: a torn value would not match
};

// Rings live in static storage, as the allocator's own do (zero-initialised BSS).
BoundedRing<uint64_t, 8> g_small;

TEST(Ring, Capacity) {
  EXPECT_EQ((BoundedRing<int, 2>::capacity()), 2u);
  EXPECT_EQ((BoundedRing<int, 64>::capacity()), 64u);
  EXPECT_EQ((BoundedRing<Item, 1024>::capacity()), 1024u);
}

template <uint32_t kCap>
void fill_to_capacity_and_drop() {
  auto ring = std::make_unique<BoundedRing<uint64_t, kCap>>();
  for (uint32_t i = 0; i < kCap; ++i) ASSERT_TRUE(ring->try_push(100 + i)) << "push " << i << " of " << kCap;
  EXPECT_EQ(ring->pushed(), kCap);
  EXPECT_EQ(ring->drops(), 0u);
  // Full: every further push fails at once and counts one drop.
  for (uint32_t k = 1; k <= 5; ++k) {
    // ASSERT: a push that overwrote an unread cell would leave try_pop spinning.
    ASSERT_FALSE(ring->try_push(999)) << "capacity " << kCap << ": push to a full ring accepted";
    EXPECT_EQ(ring->drops(), k);
  }
  EXPECT_EQ(ring->pushed(), kCap);
  // What was kept is exactly the first kCap items, in order.
  uint64_t v;
  for (uint32_t i = 0; i < kCap; ++i) {
    ASSERT_TRUE(ring->try_pop(&v));
    EXPECT_EQ(v, 100u + i);
  }
  EXPECT_FALSE(ring->try_pop(&v));
  // Room again.
  EXPECT_TRUE(ring->try_push(7));
  ASSERT_TRUE(ring->try_pop(&v));
  EXPECT_EQ(v, 7u);
  EXPECT_EQ(ring->drops(), 5u);
}

// BoundedRing<T, 1> does not compile: Vyukov's sequence scheme needs two
// cells (a one-cell ring accepted every push; see the static_assert).
TEST(Ring, FullRingDropsAndCounts2) { fill_to_capacity_and_drop<2>(); }
TEST(Ring, FullRingDropsAndCounts8) { fill_to_capacity_and_drop<8>(); }
TEST(Ring, FullRingDropsAndCounts1024) { fill_to_capacity_and_drop<1024>(); }

TEST(Ring, StaticRingWorks) {
  uint64_t v;
  EXPECT_FALSE(g_small.try_pop(&v));
  for (uint64_t i = 0; i < 8; ++i) EXPECT_TRUE(g_small.try_push(i));
  EXPECT_FALSE(g_small.try_push(8));
  for (uint64_t i = 0; i < 8; ++i) {
    ASSERT_TRUE(g_small.try_pop(&v));
    EXPECT_EQ(v, i);
  }
  EXPECT_EQ(g_small.drops(), 1u);
}

TEST(Ring, FifoAcrossManyWraps) {
  auto ring = std::make_unique<BoundedRing<uint64_t, 16>>();
  uint64_t next_in = 0, next_out = 0;
  uint64_t drops = 0;
  unsigned x = 7;
  for (int round = 0; round < 100000; ++round) {
    x = x * 1103515245u + 12345u;
    int pushes = (x >> 16) % 7, pops = (x >> 20) % 7;
    for (int i = 0; i < pushes; ++i) {
      uint64_t in_ring = next_in - next_out;
      bool ok = ring->try_push(next_in);
      ASSERT_EQ(ok, in_ring < 16) << "round " << round;
      if (ok) ++next_in; else ++drops;
    }
    for (int i = 0; i < pops; ++i) {
      uint64_t v;
      bool ok = ring->try_pop(&v);
      ASSERT_EQ(ok, next_out < next_in);
      if (ok) {
        ASSERT_EQ(v, next_out) << "FIFO order broken";
        ++next_out;
      }
    }
  }
  EXPECT_EQ(ring->pushed(), next_in);
  EXPECT_EQ(ring->drops(), drops);
  EXPECT_GT(next_in, 16u * 1000) << "the test did not wrap the ring often";
}

TEST(Ring, StructItems) {
  auto ring = std::make_unique<BoundedRing<Item, 4>>();
  for (uint32_t i = 0; i < 4; ++i) EXPECT_TRUE(ring->try_push(Item{i, i * 2, i * 3ull}));
  EXPECT_FALSE(ring->try_push(Item{9, 9, 9}));
  Item it;
  for (uint32_t i = 0; i < 4; ++i) {
    ASSERT_TRUE(ring->try_pop(&it));
    EXPECT_EQ(it.producer, i);
    EXPECT_EQ(it.seq, i * 2);
    EXPECT_EQ(it.check, i * 3ull);
  }
}

TEST(Ring, FullPushNeverWaits) {
  // A producer facing a full ring whose consumer is gone returns at once.
  auto ring = std::make_unique<BoundedRing<uint64_t, 64>>();
  for (int i = 0; i < 64; ++i) ASSERT_TRUE(ring->try_push(i));
  constexpr int kTries = 1000000;
  int failed = 0;
  for (int i = 0; i < kTries; ++i) failed += ring->try_push(i) ? 0 : 1;
  // Every push returned (this thread is the only one: a push that waited
  // for room would never come back) and each was refused and counted.
  EXPECT_EQ(failed, kTries);
  EXPECT_EQ(ring->drops(), static_cast<uint64_t>(kTries));
  // The refused pushes left the ring as it was: the first 64 items, in order.
  uint64_t item = 0;
  for (uint64_t want = 0; want < 64; ++want) {
    ASSERT_TRUE(ring->try_pop(&item));
    EXPECT_EQ(item, want);
  }
  EXPECT_FALSE(ring->try_pop(&item));
}

TEST(Ring, MultiProducerStress) {
  constexpr int kProducers = 4;
  constexpr uint32_t kPerProducer = 200000;
  auto ring = std::make_unique<BoundedRing<Item, 256>>();
  std::atomic<int> running{kProducers};
  std::atomic<bool> go{false};
  uint64_t pushed_ok[kProducers] = {}, dropped[kProducers] = {};
  std::vector<std::thread> producers;
  for (int p = 0; p < kProducers; ++p) {
    producers.emplace_back([&, p] {
      while (!go.load()) {
      }
      for (uint32_t s = 0; s < kPerProducer; ++s) {
        if (ring->try_push(Item{static_cast<uint32_t>(p), s, p * 1000003ull + s})) ++pushed_ok[p];
        else ++dropped[p];
        if ((s & 1023) == 0) std::this_thread::yield();
      }
      running.fetch_sub(1);
    });
  }
  // The consumer: this thread.
  std::vector<int64_t> last_seq(kProducers, -1);
  std::vector<uint64_t> popped(kProducers, 0);
  uint64_t bad = 0, out_of_order = 0;
  go.store(true);
  for (;;) {
    bool done = running.load() == 0;  // read before the pop that may find the ring empty
    Item it;
    if (ring->try_pop(&it)) {
      if (it.producer >= kProducers || it.seq >= kPerProducer || it.check != it.producer * 1000003ull + it.seq) {
        ++bad;
        continue;
      }
      // One producer's items come out in the order it pushed them.
      if (static_cast<int64_t>(it.seq) <= last_seq[it.producer]) ++out_of_order;
      last_seq[it.producer] = it.seq;
      ++popped[it.producer];
    } else if (done) {
      break;
    }
  }
  for (auto& t : producers) t.join();
  EXPECT_EQ(bad, 0u) << "popped items that no producer pushed";
  EXPECT_EQ(out_of_order, 0u) << "a producer's items came out of order or twice";
  uint64_t total_ok = 0, total_drops = 0, total_popped = 0;
  for (int p = 0; p < kProducers; ++p) {
    EXPECT_EQ(popped[p], pushed_ok[p]) << "producer " << p << ": accepted items lost or duplicated";
    EXPECT_EQ(pushed_ok[p] + dropped[p], kPerProducer);
    total_ok += pushed_ok[p];
    total_drops += dropped[p];
    total_popped += popped[p];
  }
  EXPECT_EQ(ring->pushed(), total_popped);
  EXPECT_EQ(ring->drops(), total_drops);
  EXPECT_EQ(ring->pushed() + ring->drops(), uint64_t{kProducers} * kPerProducer);
  Item it;
  EXPECT_FALSE(ring->try_pop(&it));
  RecordProperty("drops", static_cast<int>(total_drops));
}

TEST(Ring, MultiProducerTinyRing) {
  // A tiny ring, so that nearly every push meets a full ring: drops must be
  // counted exactly and nothing accepted may be lost.
  constexpr int kProducers = 4;
  constexpr uint32_t kPerProducer = 100000;
  auto ring = std::make_unique<BoundedRing<uint64_t, 2>>();
  std::atomic<int> running{kProducers};
  std::atomic<uint64_t> ok{0};
  std::vector<std::thread> producers;
  for (int p = 0; p < kProducers; ++p)
    producers.emplace_back([&, p] {
      uint64_t mine = 0;
      for (uint32_t s = 0; s < kPerProducer; ++s)
        if (ring->try_push((uint64_t{static_cast<uint32_t>(p)} << 32) | s)) ++mine;
      ok.fetch_add(mine);
      running.fetch_sub(1);
    });
  uint64_t popped = 0, sum_bad = 0;
  for (;;) {
    bool done = running.load() == 0;
    uint64_t v;
    if (ring->try_pop(&v)) {
      ++popped;
      if ((v >> 32) >= kProducers || (v & 0xffffffffu) >= kPerProducer) ++sum_bad;
    } else if (done) {
      break;
    }
  }
  for (auto& t : producers) t.join();
  EXPECT_EQ(sum_bad, 0u);
  EXPECT_EQ(popped, ok.load());
  EXPECT_EQ(ring->pushed(), popped);
  EXPECT_EQ(ring->pushed() + ring->drops(), uint64_t{kProducers} * kPerProducer);
}

}  // namespace
