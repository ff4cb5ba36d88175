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
#include "central/central.h"
#include "contracts/contracts.h"
#include "hakmem.h"
#include "refill/refill.h"
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

// A bin reshaped between refills (here by hand, as a learner that applied
// its policy at once would) must be caught at the bin's next refill, from
// the cache's own state: nothing in the writer reports anything.
TEST(ContractB, FiresWhenACacheIsReshapedOutsideARefill) {
  Recording rec;
  const int cls = size_to_class(80);
  free(opaque(malloc(80)));  // the bin has been through a refill
  TlsBin& bin = tls_bin(cls);
  ASSERT_GT(bin.cap, 0);
  bin.cap = static_cast<uint16_t>(bin.cap + 8);
  bin.room += 8;  // its count unchanged: only the capacity moved
  EXPECT_EQ(rec.fired('B'), 0);
  // Empty the bin: the next malloc refills it, and the refill sees the change.
  std::vector<void*> held;
  for (uint32_t i = tls_bin_count(bin) + 1; i > 0; --i) held.push_back(opaque(malloc(80)));
  for (void* p : held) free(p);
  EXPECT_EQ(rec.fired('B'), 1);
}

// A refill that applied the policy of one class to the bin of another.
// refill_of_class names the class the refill works on, so a refill of class
// `cls` that leaves class `other`'s bin reshaped is caught at its end.
TEST(ContractB, FiresWhenARefillReshapesAnotherClass) {
  Recording rec;
  const int cls = size_to_class(80), other = size_to_class(160);
  free(opaque(malloc(80)));
  free(opaque(malloc(160)));
  contracts::refill_enter();
  contracts::refill_of_class(cls);
  tls_bin(other).batch = static_cast<uint16_t>(tls_bin(other).batch + 1);
  contracts::refill_leave();
  EXPECT_EQ(rec.fired('B'), 1);
  tls_bin(other).batch = static_cast<uint16_t>(tls_bin(other).batch - 1);
  contracts::thread_cache_cleared();  // the test's own repair, not a refill's
}

// The learner must leave caches alone: here a step that flushes the thread's
// cache through the real flush (refill_flush_all) is caught by the bins'
// contents alone, with no reshape hook on the way.
TEST(ContractB, FiresWhenTheLearnerFlushesACache) {
  Recording rec;
  free(opaque(malloc(80)));
  ASSERT_GT(tls_bin_count(tls_bin(size_to_class(80))), 0u);
  contracts::learner_enter();
  refill_flush_all();
  contracts::learner_leave();
  EXPECT_EQ(rec.fired('B'), 1);
}

// Threads allocating, freeing each other's blocks and exiting while the
// learner runs and publishes new policies: every cache changes shape only in
// its own refills, and each exiting thread's cleared cache is sanctioned.
TEST(ContractB, SilentWithManyThreadsWhileTheLearnerPublishes) {
  if (g_config.ace_arm != kAceLearn) GTEST_SKIP() << "ACE learning is off (HAKMEM_ACE / HAKMEM_ACE_ARM)";
  Recording rec;
  AceStats before{};
  ace_stats(&before);
  std::mutex m;
  std::vector<void*> shared;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      std::vector<void*> mine;
      for (int i = 0; i < 60000; ++i) {
        mine.push_back(malloc(16 + ((i * 13 + t * 7) % 300) * 8));
        if (mine.size() >= static_cast<size_t>(200 + t * 100)) {
          std::lock_guard<std::mutex> g(m);
          // Half to the other threads, half freed here.
          for (size_t k = 0; k < mine.size(); ++k) {
            if (k % 2 == 0) shared.push_back(mine[k]); else free(mine[k]);
          }
          mine.clear();
          while (shared.size() > 1000) {
            free(shared.back());
            shared.pop_back();
          }
        }
      }
      for (void* p : mine) free(p);
    });
  }
  for (auto& t : threads) t.join();
  for (void* p : shared) free(p);
  AceStats after{};
  ace_stats(&after);
  EXPECT_GT(after.steps, before.steps);
  EXPECT_GT(after.policy_changes, before.policy_changes);
  EXPECT_EQ(rec.fired('B'), 0);
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
  const uint64_t cross_before = contracts::cross_thread_frees();
  for (auto& t : producers) t.join();
  done = true;
  for (auto& t : consumers) t.join();
  // Back to the slabs: every pooled batch, and the slabs that empty with it.
  const uint64_t returns_before = contracts::slab_returns_checked();
  hak_trim();
  EXPECT_GT(contracts::cross_thread_frees(), cross_before);
  EXPECT_GT(contracts::slab_returns_checked(), returns_before);
  EXPECT_EQ(rec.fired('C'), 0);
  EXPECT_EQ(rec.fired('E'), 0);
  EXPECT_EQ(rec.fired('F'), 0);
  EXPECT_EQ(hak_check_heap(), 0);
}

namespace {
// C also sees the second hand-over below (a block handed to the central pool
// from its slab); that report is let through so that the slab's own check,
// F, is the one to stop the second return, before the slab's counts move.
void die_on_f(char contract, const char* what, const void* where) {
  if (contract != 'F') return;
  contracts::set_fire_handler(nullptr);
  contracts::fire(contract, what, where);
}
BlockList link(void* const* blocks, int n) {
  BlockList list;
  for (int i = 0; i < n; ++i) list_append(list, blocks[i]);
  list_close(list);
  return list;
}
}  // namespace

// A batch returned to its slabs twice through the real central pool: the
// slab would count its blocks back twice (its used count wrapping, the slab
// going back to its segment with blocks in use) and link them twice into its
// free list. F fires at the first block instead.
TEST(ContractFDeathTest, DoubleReturnOfABatchFires) {
  EXPECT_DEATH(
      {
        contracts::set_fire_handler(die_on_f);
        // A class no other test uses: its pool is empty and the four blocks
        // come from one fresh slab; the fourth stays out and keeps it alive.
        const int cls = size_to_class(12000);
        const BlockList taken = central_take(cls, 4);
        if (taken.count != 4) _exit(3);
        void* b[4];
        void* head = taken.head;
        for (int i = 0; i < 4; ++i, head = block_next(head)) b[i] = head;
        for (int i = 1; i < 4; ++i)
          if (inspect_segment(b[i]) != inspect_segment(b[0]) ||
              entry_first_unit(inspect_units(inspect_segment(b[i]))[unit_of(b[i])]) !=
                  entry_first_unit(inspect_units(inspect_segment(b[0]))[unit_of(b[0])]))
            _exit(4);
        central_give(cls, link(b, 3));
        central_drain(cls);
        if (contracts::fire_count('F') != 0) _exit(5);
        central_give(cls, link(b, 3));
        central_drain(cls);
        _exit(6);
      },
      "contract F violated.*went back to its slab twice");
}
