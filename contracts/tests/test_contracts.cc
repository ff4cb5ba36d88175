// Each contract checker of DESIGN.md §4, made to fire on purpose, and shown
// silent while the allocator keeps its contracts (contracts build only).
#include <gtest/gtest.h>
#include <stdlib.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <queue>
#include <thread>
#include <vector>

#include "ace/ace.h"
#include "contracts/contracts.h"
#include "hakmem.h"
#include "ring/ring.h"
#include "slab/slab.h"
#include "tls_cache/tls_cache.h"

using namespace hakmem;

namespace {

std::atomic<int> g_recorded[6];
void record(char contract, const char*, const void*) { g_recorded[contract - 'A'].fetch_add(1); }

struct Recording {
  Recording() {
    for (auto& r : g_recorded) r = 0;
    contracts::set_fire_handler(record);
  }
  ~Recording() { contracts::set_fire_handler(nullptr); }
  int fired(char c) const { return g_recorded[c - 'A'].load(); }
};

void* opaque(void* p) {
  __asm__ volatile("" : "+r"(p) : : "memory");
  return p;
}

}  // namespace

// ---- A: bounded queues drop instead of blocking ----

TEST(ContractA, FullRingWithStalledConsumerDropsAtOnce) {
  Recording rec;
  static BoundedRing<int, 8> ring;
  for (int i = 0; i < 8; ++i) ASSERT_TRUE(ring.try_push(i));
  uint64_t drops = ring.drops();
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_FALSE(ring.try_push(99));  // nobody consumes: the producer must not wait
  auto waited = std::chrono::steady_clock::now() - t0;
  EXPECT_EQ(ring.drops(), drops + 1);
  EXPECT_LT(waited, std::chrono::milliseconds(50));
  EXPECT_EQ(rec.fired('A'), 0);
}

TEST(ContractA, FiresWhenAProducerWaitsForTheConsumer) {
  Recording rec;
  static BoundedRing<int, 4> ring;
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(ring.try_push(i));
  // A producer written the wrong way: it spins until a (stalled) consumer
  // makes room, and reports its retries through the same boundary hook.
  std::thread consumer([] {
    std::this_thread::sleep_for(std::chrono::milliseconds(30));
    int v;
    ring.try_pop(&v);
  });
  uint32_t retries = 0;
  bool stored = false;
  while (!stored) {
    stored = ring.try_push(7);
    if (!stored) ++retries;
  }
  consumer.join();
  contracts::ring_push_returned(true, false, false, retries);
  EXPECT_GE(rec.fired('A'), 1);
}

TEST(ContractA, FiresWhenAFullPushIsNotCountedAsADrop) {
  Recording rec;
  contracts::ring_push_returned(false, true, /*dropped=*/false, 0);
  EXPECT_EQ(rec.fired('A'), 1);
}

// ---- B: a policy is read only inside a refill ----

TEST(ContractB, SilentDuringNormalAllocation) {
  Recording rec;
  std::vector<void*> v;
  for (int i = 0; i < 20000; ++i) v.push_back(malloc(16 + (i % 64) * 16));
  for (void* p : v) free(p);
  EXPECT_EQ(rec.fired('B'), 0);
}

TEST(ContractB, FiresWhenAPolicyIsAppliedOutsideARefill) {
  Recording rec;
  ClassPolicy p = ace_policy(3);
  EXPECT_GE(p.batch, 1);
  EXPECT_EQ(rec.fired('B'), 1);
}

TEST(ContractB, FiresWhenTheLearnerReshapesACache) {
  Recording rec;
  void* p = opaque(malloc(48));
  contracts::learner_enter();
  contracts::cache_reshaped();  // what refill_flush reports on entry
  contracts::learner_leave();
  free(p);
  EXPECT_EQ(rec.fired('B'), 1);
}

// ---- C: every block is in exactly one place ----

TEST(ContractC, TracksABlockThroughItsLife) {
  Recording rec;
  void* p = opaque(malloc(100));
  EXPECT_EQ(contracts::block_place(p), contracts::Place::kUser);
  free(p);
  EXPECT_NE(contracts::block_place(p), contracts::Place::kUser);
  EXPECT_EQ(rec.fired('C'), 0);
}

TEST(ContractCDeathTest, DoubleFreeFires) {
  EXPECT_DEATH(
      {
        void* p = opaque(malloc(64));
        free(p);
        free(opaque(p));
      },
      "contract C violated.*double free");
}

TEST(ContractCDeathTest, ForeignPointerFires) {
  EXPECT_DEATH(
      {
        static char not_ours[64];
        free(opaque(not_ours + 16));
      },
      "contract C violated.*never handed out");
}

TEST(ContractCDeathTest, DoubleFreeOfALargeBlockFires) {
  EXPECT_DEATH(
      {
        void* p = opaque(malloc(300 * 1024));
        free(p);
        free(opaque(p));
      },
      "contract C violated");
}

// ---- E: tags agree with their slabs ----

TEST(ContractEDeathTest, BlockPushedToAnotherClassListFires) {
  EXPECT_DEATH(
      {
        void* p = opaque(malloc(64));
        tls_cache_push(tls_bin(7), p);  // 64 B is class 4, not 7
      },
      "contract E violated.*another class");
}

TEST(ContractEDeathTest, DamagedTagFires) {
  EXPECT_DEATH(
      {
        void* p = opaque(malloc(64));
        Segment* seg = segment_lookup(p);
        // Class 1 (16 B) divides every 64 B block's offset, so free's own
        // boundary check passes and the tag reaches the checker; the slab
        // descriptor still says class 4.
        segment_units(seg)[unit_of(p)].tag = slab_tag(1);
        free(p);
      },
      "contract E violated");
}

// ---- F: cross-thread frees return each block exactly once ----

TEST(ContractF, CrossThreadFreesKeepOwnershipAndAccounting) {
  Recording rec;
  std::mutex m;
  std::queue<void*> q;
  std::atomic<bool> done{false};
  std::vector<std::thread> producers, consumers;
  for (int t = 0; t < 2; ++t) {
    producers.emplace_back([&, t] {
      for (int i = 0; i < 20000; ++i) {
        void* p = malloc(16 + ((i * 7 + t) % 200) * 8);
        std::lock_guard<std::mutex> g(m);
        q.push(p);
      }
    });
    consumers.emplace_back([&] {
      for (;;) {
        void* p = nullptr;
        {
          std::lock_guard<std::mutex> g(m);
          if (!q.empty()) {
            p = q.front();
            q.pop();
          }
        }
        if (p != nullptr) free(p);
        else if (done.load()) break;
        else std::this_thread::yield();
      }
    });
  }
  for (auto& t : producers) t.join();
  done = true;
  for (auto& t : consumers) t.join();
  EXPECT_EQ(rec.fired('C'), 0);
  EXPECT_EQ(rec.fired('E'), 0);
  EXPECT_EQ(hak_check_heap(), 0);
}
