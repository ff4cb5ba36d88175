// Each contract checker of DESIGN.md §4, made to fire on purpose, and shown
// silent while the allocator keeps its contracts (contracts build only).
#include <gtest/gtest.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <atomic>
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
  // Nobody consumes: the producer must not wait. Waiting shows as retries,
  // which contract A counts (FiresWhenAFullRingMakesItsProducerWait), not as
  // wall time, which a loaded machine stretches.
  EXPECT_FALSE(ring.try_push(99));
  EXPECT_EQ(ring.drops(), drops + 1);
  EXPECT_EQ(rec.fired('A'), 0);
}

// Rings whose full-push path breaks contract A, built from the real ring code
// (ring.h's FullPush policy), so the checker has to catch the ring itself.
struct ForgetsToCountTheDrop {
  static constexpr bool kCountsDrop = false;
  static constexpr uint32_t kSpinsBeforeDropping = 0;
};
struct SpinsWaitingForRoom {
  static constexpr bool kCountsDrop = true;
  // Far past the checker's limit, and still quick without any consumer.
  static constexpr uint32_t kSpinsBeforeDropping = 100000;
};

TEST(ContractA, FiresWhenAFullPushIsNotCountedAsADrop) {
  Recording rec;
  static BoundedRing<int, 4, ForgetsToCountTheDrop> ring;
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(ring.try_push(i));
  EXPECT_EQ(rec.fired('A'), 0);
  EXPECT_FALSE(ring.try_push(99));
  EXPECT_EQ(ring.drops(), 0u);
  EXPECT_EQ(rec.fired('A'), 1);
}

TEST(ContractA, FiresWhenAFullRingMakesItsProducerWait) {
  Recording rec;
  static BoundedRing<int, 4, SpinsWaitingForRoom> ring;
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(ring.try_push(i));
  EXPECT_FALSE(ring.try_push(99));
  EXPECT_EQ(ring.drops(), 1u);
  EXPECT_EQ(rec.fired('A'), 1);
}

// Drops by other producers raise the counter too; the checker must not take
// them for a missed one, nor their races for waiting.
TEST(ContractA, SilentWhileProducersRaceOnAFullRing) {
  Recording rec;
  static BoundedRing<int, 8> ring;
  std::atomic<bool> stop{false};
  std::thread consumer([&] {
    int v;
    while (!stop.load()) ring.try_pop(&v);
  });
  std::vector<std::thread> producers;
  std::atomic<uint64_t> refused{0};
  for (int t = 0; t < 3; ++t) {
    producers.emplace_back([&] {
      for (int i = 0; i < 50000; ++i)
        if (!ring.try_push(i)) refused.fetch_add(1);
    });
  }
  for (auto& p : producers) p.join();
  stop = true;
  consumer.join();
  EXPECT_EQ(ring.drops(), refused.load());
  EXPECT_EQ(rec.fired('A'), 0);
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

// The table that backs contract C has a fixed size: a full table must say
// once that checking stopped, never go quiet, and never fire for the blocks
// it could not record. Runs in a child so the shrunken table dies with it.
TEST(ContractCDeathTest, ReportsOnceWhenItsShadowTableFills) {
  EXPECT_EXIT(
      {
        Recording rec;
        FILE* captured = tmpfile();
        int saved_stderr = dup(2);
        if (captured == nullptr || saved_stderr < 0) _exit(10);
        dup2(fileno(captured), 2);
        // Every test before this one already tracks more blocks than this.
        contracts::limit_shadow_table_for_tests(1);
        std::vector<void*> kept;
        kept.reserve(4096);
        for (int i = 0; i < 4096; ++i) kept.push_back(opaque(malloc(48)));
        for (void* p : kept) free(p);
        dup2(saved_stderr, 2);
        char text[4096] = {};
        rewind(captured);
        size_t length = fread(text, 1, sizeof text - 1, captured);
        fprintf(stderr, "%.*s", static_cast<int>(length), text);
        int reports = 0;
        for (const char* at = text; (at = strstr(at, "ownership table full")) != nullptr; ++at) ++reports;
        if (!contracts::shadow_full()) _exit(11);
        if (reports != 1) _exit(12);
        if (rec.fired('C') != 0) _exit(13);
        _exit(0);
      },
      ::testing::ExitedWithCode(0), "contract C ownership table full at [0-9]+ blocks");
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
