// Threads: cross-thread frees through the central pool, and thread exit
// handing cached blocks back (DESIGN.md §1, contract F).
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "hakmem.h"
#include "large/large.h"
#include "size_class/size_class.h"
#include "slab/slab.h"
#include "tests/support/blocks.h"
#include "tests/support/opaque.h"
#include "tests/support/run_self.h"
#include "tests/support/units.h"

namespace {

// hakmem's purge thread starts once a second thread allocates (HAKMEM_BACKGROUND
// unset), and starting it allocates once: glibc's vector of the new thread's
// TLS blocks, which lives as long as that thread, for good. Started here,
// before any test counts allocations against frees.
const bool g_purge_thread_started = [] {
  bool on = true;
  return hak_mallctl("background_thread", nullptr, nullptr, &on, sizeof on) == 0;
}();

using hakmem::class_size;
using hakmem::kNumClasses;
using test_support::Block;
using test_support::BlockQueue;
using test_support::intact;
using test_support::stamp;
using test_support::KiB;
using test_support::MiB;

// A test that hangs fails (SIGALRM) instead of eating the suite's time.
struct Watchdog {
  explicit Watchdog(unsigned secs) { alarm(secs); }
  ~Watchdog() { alarm(0); }
};


struct Totals {
  uint64_t allocs = 0, frees = 0;
};
Totals totals() {
  hak_stats s;
  hak_stats_get(&s);
  Totals t;
  for (const auto& c : s.classes) {
    t.allocs += c.allocs;
    t.frees += c.frees;
  }
  t.allocs += s.large_allocs + s.huge_allocs;
  t.frees += s.large_frees + s.huge_frees;
  return t;
}

// Threads with small stacks. glibc gives each new thread stack a malloc'd
// DTV that stays with the stack in glibc's stack cache (40 MiB): with 1 MiB
// stacks every stack of these tests stays cached, so after a warm-up run
// thread creation allocates nothing and the counts below balance exactly.
class SmallThread {
 public:
  explicit SmallThread(std::function<void()> f) : fn_(new std::function<void()>(std::move(f))) {
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 1 << 20);
    int rc = pthread_create(&tid_, &attr, &SmallThread::run, fn_);
    pthread_attr_destroy(&attr);
    if (rc != 0) abort();
  }
  SmallThread(SmallThread&& o) noexcept : tid_(o.tid_), fn_(o.fn_), joined_(o.joined_) { o.joined_ = true; }
  SmallThread(const SmallThread&) = delete;
  ~SmallThread() {
    if (!joined_) join();
  }
  void join() {
    pthread_join(tid_, nullptr);
    joined_ = true;
  }

 private:
  static void* run(void* arg) {
    auto* f = static_cast<std::function<void()>*>(arg);
    (*f)();
    delete f;
    return nullptr;
  }
  pthread_t tid_{};
  std::function<void()>* fn_;
  bool joined_ = false;
};

// Fills glibc's stack cache with `n` small stacks.
void warm_up_stacks(int n) {
  std::vector<SmallThread> ts;
  ts.reserve(n);
  for (int i = 0; i < n; ++i) ts.emplace_back([] {});
  for (auto& t : ts) t.join();
}


size_t size_in_class(std::mt19937_64& rng, int c) {
  size_t hi = class_size(c), lo = c == 0 ? 0 : class_size(c - 1) + 1;
  return lo + rng() % (hi - lo + 1);
}

TEST(Threads, CrossThreadFreesAllClasses) {
  Watchdog dog(100);
  constexpr int kProducers = 3, kConsumers = 3;
  warm_up_stacks(kProducers + kConsumers);
  Totals before = totals();
  uint64_t bad = 0;
  {
    constexpr int kRounds = 60;  // per producer: kRounds x every class
    BlockQueue q;
    std::atomic<uint64_t> corrupted{0}, freed{0};
    std::vector<SmallThread> consumers, producers;
    for (int i = 0; i < kConsumers; ++i)
      consumers.emplace_back([&] {
        std::vector<Block> got;
        while (q.pop(&got, 64)) {
          for (const Block& b : got) {
            if (!intact(b)) corrupted.fetch_add(1);
            free(b.p);
          }
          freed.fetch_add(got.size());
          got.clear();
        }
      });
    for (int i = 0; i < kProducers; ++i)
      producers.emplace_back([&, i] {
        std::mt19937_64 rng(1000 + i);
        std::vector<Block> batch;
        uint64_t id = uint64_t{static_cast<unsigned>(i)} << 40;
        for (int r = 0; r < kRounds; ++r) {
          for (int c = 0; c < kNumClasses; ++c) {
            int copies = class_size(c) <= 4096 ? 8 : 2;
            for (int k = 0; k < copies; ++k) {
              size_t n = size_in_class(rng, c);
              auto* p = static_cast<unsigned char*>(malloc(n));
              if (p == nullptr) continue;
              Block b{p, n, (++id) | (rng() & 0xff00000000000000ull)};
              stamp(b);
              batch.push_back(b);
            }
          }
          if (r % 10 == 0) {  // a few large and huge ones too
            for (size_t n : {size_t{200 * KiB}, size_t{1 * MiB}, size_t{3 * MiB}}) {
              auto* p = static_cast<unsigned char*>(malloc(n));
              if (p == nullptr) continue;
              Block b{p, n, ++id};
              stamp(b);
              batch.push_back(b);
            }
          }
          std::shuffle(batch.begin(), batch.end(), rng);
          q.push(std::move(batch));
        }
      });
    for (auto& t : producers) t.join();
    q.close();
    for (auto& t : consumers) t.join();
    bad = corrupted.load();
    EXPECT_GT(freed.load(), 3u * 60 * 49 * 2);
  }
  EXPECT_EQ(bad, 0u) << "blocks damaged between the allocating and the freeing thread";
  EXPECT_EQ(hak_check_heap(), 0);
  Totals after = totals();
  EXPECT_EQ(after.allocs - before.allocs, after.frees - before.frees)
      << "allocation and free counts disagree after every thread exited";
}

TEST(Threads, PingPongReuse) {
  // Two threads free each other's blocks and reuse what the other freed:
  // blocks travel TLS -> central -> other TLS repeatedly.
  Watchdog dog(60);
  constexpr int kIters = 200;
  std::mutex m;
  std::vector<Block> to_a, to_b;
  std::atomic<uint64_t> corrupted{0};
  auto worker = [&](std::vector<Block>& inbox, std::vector<Block>& outbox, unsigned seed) {
    std::mt19937_64 rng(seed);
    uint64_t id = uint64_t{seed} << 48;
    for (int it = 0; it < kIters; ++it) {
      std::vector<Block> mine;
      {
        std::lock_guard<std::mutex> g(m);
        mine.swap(inbox);
      }
      for (const Block& b : mine) {
        if (!intact(b)) corrupted.fetch_add(1);
        free(b.p);
      }
      std::vector<Block> fresh;
      for (int k = 0; k < 200; ++k) {
        int c = static_cast<int>(rng() % 30);  // up to 16 KiB
        size_t n = size_in_class(rng, c);
        auto* p = static_cast<unsigned char*>(malloc(n));
        if (p == nullptr) continue;
        Block b{p, n, ++id};
        stamp(b);
        fresh.push_back(b);
      }
      std::lock_guard<std::mutex> g(m);
      for (auto& b : fresh) outbox.push_back(b);
    }
  };
  std::thread a(worker, std::ref(to_a), std::ref(to_b), 1u);
  std::thread b(worker, std::ref(to_b), std::ref(to_a), 2u);
  a.join();
  b.join();
  for (auto* box : {&to_a, &to_b})
    for (const Block& blk : *box) {
      EXPECT_TRUE(intact(blk));
      free(blk.p);
    }
  EXPECT_EQ(corrupted.load(), 0u);
  EXPECT_EQ(hak_check_heap(), 0);
}

// Each thread allocates and frees a few MiB of small and mid blocks, leaves
// its cache full, and exits.
void churn_and_exit(unsigned seed) {
  std::mt19937_64 rng(seed);
  std::vector<void*> v;
  size_t bytes = 0;
  while (bytes < 3 * MiB) {
    int c = static_cast<int>(rng() % 40);  // up to 32 KiB
    size_t n = class_size(c);
    void* p = malloc(n);
    if (p == nullptr) break;
    memset(p, 1, n);
    v.push_back(p);
    bytes += n;
  }
  std::shuffle(v.begin(), v.end(), rng);
  for (void* p : v) free(p);
  // And a second wave that mostly hits the thread cache.
  for (int i = 0; i < 2000; ++i) {
    void* p = malloc(class_size(static_cast<int>(rng() % 40)));
    free(p);
  }
}

TEST(Threads, ThreadExitHandsCacheBack) {
  Watchdog dog(100);
  constexpr int kCycles = 20, kThreads = 4;
  std::vector<uint64_t> mapped, segments;
  mapped.reserve(kCycles);
  segments.reserve(kCycles);
  warm_up_stacks(kThreads);
  hak_trim();
  hak_stats base;
  hak_stats_get(&base);
  Totals before = totals();
  for (int cycle = 0; cycle < kCycles; ++cycle) {
    std::vector<SmallThread> ts;
    ts.reserve(kThreads);
    for (int t = 0; t < kThreads; ++t) ts.emplace_back([cycle, t] { churn_and_exit(cycle * 100 + t); });
    for (auto& t : ts) t.join();
    hak_stats s;
    hak_stats_get(&s);
    mapped.push_back(s.bytes_mapped);
    segments.push_back(s.segments);
  }
  Totals after = totals();
  // Exited threads' counters are merged exactly.
  EXPECT_EQ(after.allocs - before.allocs, after.frees - before.frees);
  // Memory does not grow with the number of threads that came and went:
  // 80 threads x (cache of ~40 classes) would strand tens of MiB.
  uint64_t early = *std::max_element(mapped.begin(), mapped.begin() + 3);
  uint64_t late = *std::max_element(mapped.begin() + kCycles - 5, mapped.end());
  EXPECT_LE(late, early + 16 * MiB) << "bytes_mapped grew from " << early / MiB << " MiB to " << late / MiB
                                    << " MiB over " << kCycles << " cycles of " << kThreads << " threads";
  uint64_t early_seg = *std::max_element(segments.begin(), segments.begin() + 3);
  uint64_t late_seg = *std::max_element(segments.begin() + kCycles - 5, segments.end());
  EXPECT_LE(late_seg, early_seg + 4);
  // The blocks the threads cached are reusable: after a trim little remains.
  hak_trim();
  hak_stats s;
  hak_stats_get(&s);
  EXPECT_LE(s.bytes_mapped, base.bytes_mapped + 8 * MiB) << "memory of exited threads was not handed back";
  EXPECT_EQ(hak_check_heap(), 0);
}

// A thread that only frees a class (a consumer of another thread's blocks)
// and then waits keeps one batch of it, not its cache's capacity: each block
// it holds would keep its slab from going back, and an idle thread never
// comes back to hand them over. 1 KiB blocks, 64 to a slab, freed in random
// order: every cached block tends to sit in a slab of its own.
TEST(Threads, AConsumerThatGoesIdleKeepsOneBatch) {
  Watchdog dog(60);
  constexpr size_t kSize = 1024, kBlocks = 16384;  // 16 MiB: 256 slabs
  int cls = -1;
  for (int c = 0; c < kNumClasses; ++c)
    if (class_size(c) == kSize) cls = c;
  ASSERT_GE(cls, 0);
  // One batch of a class is about 32 KiB of blocks (ace_default_policy),
  // ACE's arms at most four times that; the hardened quarantine holds 16
  // more blocks of 1 KiB.
  constexpr uint64_t kAllowedSlabs = 4 * (32 * KiB / kSize) + 16 + 4;
  std::vector<void*> blocks(kBlocks);
  hak_trim();
  hak_stats s;
  hak_stats_get(&s);
  const uint64_t slabs_before = s.classes[cls].slabs;
  for (auto& p : blocks) {
    p = malloc(kSize);
    ASSERT_NE(p, nullptr);
    memset(p, 7, kSize);
  }
  std::mt19937_64 rng(12);
  std::shuffle(blocks.begin(), blocks.end(), rng);
  std::mutex m;
  std::condition_variable cv;
  bool freed = false, go = false;
  SmallThread consumer([&] {
    for (void* p : blocks) free(p);
    std::unique_lock<std::mutex> g(m);
    freed = true;
    cv.notify_all();
    cv.wait(g, [&] { return go; });  // idle, alive, its cache in place
  });
  {
    std::unique_lock<std::mutex> g(m);
    cv.wait(g, [&] { return freed; });
  }
  hak_trim();  // this thread's cache, the central pool, empty slabs
  hak_stats_get(&s);
  const uint64_t pinned = s.classes[cls].slabs - slabs_before;
  {
    std::lock_guard<std::mutex> g(m);
    go = true;
  }
  cv.notify_all();
  consumer.join();
  EXPECT_LE(pinned, kAllowedSlabs) << "the idle consumer's cache keeps " << pinned << " slabs of " << kSize
                                   << "-byte blocks";
  hak_trim();
  hak_stats_get(&s);
  EXPECT_LE(s.classes[cls].slabs, slabs_before + 2) << "the consumer's exit handed its cache back";
}

// Four flushes of a class in a row (no refill between) mark a thread that
// frees what it does not allocate back: its bin sheds to one batch at the
// fourth (what it holds above that goes back at once, not counted as a
// flush), so the very next free flushes again, where the first flushes come
// one batch of frees apart. A fresh thread allocates 3000 blocks of 1 KiB
// (refills: the streak starts at 0) and frees them one at a time, the
// class's flush count read after each free. Every arm of the class holds at
// least two batches (ACE's grid), so the shed always shows. (make mutate:
// shedding at the fifth flush instead passed every test before this one.)
TEST(Threads, ABinShedsToOneBatchAtTheFourthFlushInARow) {
  Watchdog dog(60);
  constexpr size_t kSize = 1024, kBlocks = 3000;
  const int cls = hakmem::size_to_class(kSize);
  ASSERT_EQ(class_size(cls), kSize);
  std::vector<size_t> flush_at;  // the frees (counted from 1) after which a flush had happened
  SmallThread worker([&] {
    std::vector<void*> blocks(kBlocks);
    for (auto& p : blocks) p = malloc(kSize);
    hak_stats s;
    hak_stats_get(&s);
    uint64_t flushes = s.classes[cls].flushes;
    for (size_t i = 0; i < kBlocks; ++i) {
      free(blocks[i]);
      if (flush_at.size() < 6) {
        hak_stats_get(&s);
        for (; flushes < s.classes[cls].flushes; ++flushes) flush_at.push_back(i + 1);
      }
    }
  });
  worker.join();
  ASSERT_GE(flush_at.size(), 6u) << "3000 frees of one class flushed fewer than six times";
  const size_t batch = flush_at[1] - flush_at[0];
  EXPECT_GE(batch, 2u);
  EXPECT_EQ(flush_at[2] - flush_at[1], batch) << "flushes 1-4 come one batch of frees apart";
  EXPECT_EQ(flush_at[3] - flush_at[2], batch) << "flushes 1-4 come one batch of frees apart";
  EXPECT_EQ(flush_at[4] - flush_at[3], 1u) << "the bin did not shed at the fourth flush in a row (the fifth came "
                                           << flush_at[4] - flush_at[3] << " frees after it)";
}

// All threads' caches together hold about HAKMEM_THREAD_CACHES MiB at most,
// whatever each class's learned capacity: a program whose threads fill
// their caches and then sleep keeps no more in them (an idle thread's cache
// is emptied by nobody else). The probe's 16 threads start together (each
// thread's share is the budget over the threads alive at its last refill),
// each free waves of 12 classes (16 B to 32 KiB) and wait, holding their
// caches, while it reads what the caches hold.
TEST(Threads, ProbeThreadCaches) {
  if (getenv("HAKMEM_TEST_PROBE") == nullptr) GTEST_SKIP() << "run by the test below";
  constexpr int kThreads = 16;
  static const size_t kSizes[] = {16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768};
  std::mutex m;
  std::condition_variable cv;
  int started = 0, filled = 0;
  bool done = false;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&] {
      free(test_support::opaque(malloc(16)));  // a cache of its own: the thread counts
      {
        std::unique_lock<std::mutex> g(m);
        ++started;
        cv.notify_all();
        cv.wait(g, [&] { return started == kThreads; });
      }
      for (int wave = 0; wave < 3; ++wave)
        for (size_t size : kSizes) {
          void* blocks[64];
          for (void*& p : blocks) p = test_support::opaque(malloc(size));
          for (void* p : blocks) free(p);
        }
      std::unique_lock<std::mutex> g(m);
      ++filled;
      cv.notify_all();
      cv.wait(g, [&] { return done; });  // idle, its cache in place
    });
  {
    std::unique_lock<std::mutex> g(m);
    cv.wait(g, [&] { return filled == kThreads; });
  }
  hak_stats s;
  hak_stats_get(&s);
  printf("held=%llu\n", static_cast<unsigned long long>(s.thread_cache_bytes));
  {
    std::lock_guard<std::mutex> g(m);
    done = true;
  }
  cv.notify_all();
  for (auto& t : threads) t.join();
}
TEST(Threads, ThreadCachesTogetherStayWithinTheirBudget) {
  auto held = [](const char* mib) {
    int status = 0;
    std::string line = test_support::run_self(std::string("HAKMEM_THREAD_CACHES=") + mib + " HAKMEM_TEST_PROBE=1",
                                              "Threads.ProbeThreadCaches", "held=", &status);
    EXPECT_EQ(status, 0) << "the probe failed with HAKMEM_THREAD_CACHES=" << mib;
    return strtoull(line.c_str(), nullptr, 10);
  };
  const uint64_t budgeted = held("2"), unbounded = held("1024");
  // Each thread may go one block over its share, in the class it refilled last.
  EXPECT_LE(budgeted, 2 * MiB + 16 * 32 * KiB) << "16 idle threads' caches hold " << budgeted << " bytes";
  EXPECT_GT(unbounded, budgeted + 2 * MiB) << "without the budget the same caches hold " << unbounded
                                           << " bytes (the probe does not fill them)";
}

// HAKMEM_TEST_PROBE=1: 31 threads take a cache each and exit; then the main
// thread, alone again, frees waves of 12 classes (16 B to 32 KiB) and prints
// what its cache holds.
TEST(Threads, ProbeACacheAloneAfterOthersExited) {
  if (getenv("HAKMEM_TEST_PROBE") == nullptr) GTEST_SKIP() << "run by the test below";
  static const size_t kSizes[] = {16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768};
  std::vector<std::thread> threads;
  for (int t = 0; t < 31; ++t)  // each with a cache of its own: the thread counts
    threads.emplace_back([] { free(test_support::opaque(malloc(16))); });
  for (auto& t : threads) t.join();
  for (int wave = 0; wave < 3; ++wave)
    for (size_t size : kSizes) {
      void* blocks[64];
      for (void*& p : blocks) p = test_support::opaque(malloc(size));
      for (void* p : blocks) free(p);
    }
  hak_stats s;
  hak_stats_get(&s);
  printf("held=%llu\n", static_cast<unsigned long long>(s.thread_cache_bytes));
}

// A wave of 1600 blocks of 4 KiB (6.4 MiB, glibc-simple's largest) that a
// thread frees waits whole in its thread cache and the central pool, as
// batches, for the next wave: none goes back to its slab, which walks the
// blocks one by one, and which the next wave's refills would walk again.
// The slabs' counts say it: every block of the wave is still outside its
// slab (RunInfo::used).
TEST(Threads, AWaveOf1600BlocksOf4KiBWaitsWholeForTheNextWave) {
  hak_trim();  // the pool holds no earlier test's blocks
  std::thread([] {
    std::vector<void*> wave;
    for (int i = 0; i < 1600; ++i) wave.push_back(malloc(4096));
    for (void* p : wave) free(p);
    std::vector<char*> slabs;
    uint64_t outside = 0;
    for (void* p : wave) {
      hakmem::RunInfo run;
      ASSERT_TRUE(hakmem::run_lookup(p, &run));
      if (std::find(slabs.begin(), slabs.end(), run.start) != slabs.end()) continue;
      slabs.push_back(run.start);
      outside += run.used;
    }
    EXPECT_GE(outside, 1600u) << "of the wave's blocks, " << 1600 - outside << " went back to their slabs";
  }).join();
}

// A thread's share of the budget is the budget over the threads alive at
// its refill: threads that exited count no more, and a thread alone again
// has the whole budget (1 MiB here) for its cache, not a 32nd of it (that
// is under the share's floor, 64 KiB, which a thread may pass by a block of
// each class it uses: 150 KiB here). (make mutate: an exit that did not
// count its thread out passed every test before this one.)
TEST(Threads, ExitedThreadsLeaveTheirShareOfTheBudget) {
  int status = 0;
  const std::string line = test_support::run_self("HAKMEM_THREAD_CACHES=1 HAKMEM_TEST_PROBE=1",
                                                  "Threads.ProbeACacheAloneAfterOthersExited", "held=", &status);
  EXPECT_EQ(status, 0);
  ASSERT_FALSE(line.empty()) << "the probe printed nothing";
  const uint64_t held = strtoull(line.c_str(), nullptr, 10);
  EXPECT_GT(held, 256 * KiB) << "a thread alone after 31 others exited caches " << held
                             << " bytes, as if they still shared a budget of 1 MiB";
  EXPECT_LE(held, 1 * MiB + 32 * KiB);
}

// glibc frees some per-thread buffers (strerror's text for an unknown errno,
// dlerror's message) in __libc_thread_freeres, after every pthread key
// destructor, hakmem's exit hook included; other libraries' key destructors
// may free after the hook too.
pthread_key_t g_late_key;
std::once_flag g_late_key_once;
void late_destructor(void* p) {
  free(p);                         // a free after hakmem's hook (key created later: runs later)
  void* q = malloc(48);            // and an allocation
  free(q);
}

void thread_with_late_frees() {
  std::call_once(g_late_key_once, [] { pthread_key_create(&g_late_key, late_destructor); });
  void* keep = malloc(100);
  memset(keep, 3, 100);
  pthread_setspecific(g_late_key, keep);
  const char* s = strerror(123456);  // glibc keeps an allocated "Unknown error 123456"
  EXPECT_NE(strstr(s, "123456"), nullptr);
  for (int i = 0; i < 100; ++i) free(malloc(64 + i));
}

TEST(Threads, FreesAfterTheExitHook) {
  Watchdog dog(60);
  warm_up_stacks(1);
  Totals before = totals();
  for (int round = 0; round < 50; ++round) {
    SmallThread t(thread_with_late_frees);
    t.join();
    // Stats walk the live threads: an exited thread's cache must not be among them.
    hak_stats s;
    hak_stats_get(&s);
    ASSERT_EQ(hak_check_heap(), 0) << "round " << round;
  }
  // New threads on recycled stacks work and their stats add up.
  for (int round = 0; round < 10; ++round) {
    SmallThread t([] {
      for (int i = 0; i < 1000; ++i) free(malloc(32 + i % 200));
    });
    t.join();
  }
  Totals after = totals();
  EXPECT_EQ(after.allocs - before.allocs, after.frees - before.frees)
      << "blocks freed after the exit hook are lost to the statistics";
}

// Checks that hak_stats_get never counts a thread twice while threads exit.
// Threads finish their work first and only then exit; snapshots taken while
// no thread is working (only exits in flight) must never show more
// allocations than were made.
void stats_while_threads_exit() {
  Watchdog dog(60);
  const int cls = hakmem::size_to_class(2900);  // a class nothing else here uses
  const size_t n = class_size(cls);
  constexpr int kThreads = 400, kPerThread = 50;
  hak_stats base;
  hak_stats_get(&base);
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> over{0}, worst{0}, samples{0};
  std::atomic<int> started{0}, working{0};
  std::thread watcher([&] {
    hak_stats s;
    while (!stop.load()) {
      int st0 = started.load(), w0 = working.load();
      hak_stats_get(&s);
      int st1 = started.load(), w1 = working.load();
      if (st0 != st1 || w0 != 0 || w1 != 0) continue;  // a thread was mid-work: its live counters may be torn
      samples.fetch_add(1);
      uint64_t seen = s.classes[cls].allocs - base.classes[cls].allocs;
      uint64_t made = uint64_t(st1) * kPerThread;
      if (seen > made) {
        over.fetch_add(1);
        uint64_t w = worst.load();
        while (seen - made > w && !worst.compare_exchange_weak(w, seen - made)) {
        }
      }
    }
  });
  for (int i = 0; i < kThreads; i += 4) {
    std::thread ts[4];
    for (auto& t : ts) {
      started.fetch_add(1);
      working.fetch_add(1);
      t = std::thread([n, &working] {
        void* v[kPerThread];
        for (auto& p : v) p = malloc(n);
        for (auto& p : v) free(p);
        working.fetch_sub(1);  // from here on only the thread's exit is in flight
      });
    }
    for (auto& t : ts) t.join();
    // One snapshot at least per batch: on a loaded machine the batches can
    // otherwise all pass before the watcher finds a quiet moment.
    for (uint64_t seen = samples.load(); samples.load() == seen;) std::this_thread::yield();
  }
  stop.store(true);
  watcher.join();
  hak_stats s;
  hak_stats_get(&s);
  EXPECT_EQ(s.classes[cls].allocs - base.classes[cls].allocs, uint64_t{kThreads} * kPerThread);
  EXPECT_EQ(s.classes[cls].frees - base.classes[cls].frees, uint64_t{kThreads} * kPerThread);
  EXPECT_GE(samples.load(), uint64_t{kThreads / 4});
  EXPECT_EQ(over.load(), 0u) << "hak_stats_get counted an exiting thread twice: " << over.load() << " of "
                             << samples.load() << " snapshots too high, worst by " << worst.load()
                             << " allocations (" << kPerThread << " per thread)";
}

// A snapshot taken while threads exit must count each exactly once: the exit
// hook merges its counters and leaves the registry under the registry lock,
// which hak_stats_get holds while reading the totals. (Found by this test.)
TEST(Threads, StatsNeverCountAnExitingThreadTwice) { stats_while_threads_exit(); }

TEST(Threads, ManyThreadsLocalChurn) {
  Watchdog dog(60);
  constexpr int kThreads = 8;
  std::atomic<uint64_t> corrupted{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < kThreads; ++t)
    ts.emplace_back([&, t] {
      std::mt19937_64 rng(77 + t);
      std::vector<Block> live;
      uint64_t id = uint64_t{static_cast<unsigned>(t)} << 48;
      for (int i = 0; i < 60000; ++i) {
        if (live.size() < 500 && (live.empty() || rng() % 2)) {
          size_t n = rng() % 4 == 0 ? rng() % 70000 : rng() % 600;
          auto* p = static_cast<unsigned char*>(malloc(n));
          if (p == nullptr) continue;
          Block b{p, n, ++id};
          stamp(b);
          live.push_back(b);
        } else {
          size_t k = rng() % live.size();
          if (!intact(live[k])) corrupted.fetch_add(1);
          free(live[k].p);
          live[k] = live.back();
          live.pop_back();
        }
      }
      for (const Block& b : live) {
        if (!intact(b)) corrupted.fetch_add(1);
        free(b.p);
      }
    });
  for (auto& t : ts) t.join();
  EXPECT_EQ(corrupted.load(), 0u);
  EXPECT_EQ(hak_check_heap(), 0);
}

TEST(Threads, TrimStatsAndChecksWhileThreadsWork) {
  // hak_trim (drains the central pools, purges, unmaps), hak_stats_get and
  // hak_check_heap run from one thread while others allocate, free across
  // threads and reallocate.
  Watchdog dog(60);
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> corrupted{0}, faults{0}, trims{0};
  BlockQueue q;
  std::vector<std::thread> ts;
  for (int t = 0; t < 3; ++t)
    ts.emplace_back([&, t] {
      std::mt19937_64 rng(500 + t);
      std::vector<Block> live, outgoing;
      uint64_t id = uint64_t{static_cast<unsigned>(t)} << 48;
      for (int i = 0; i < 40000; ++i) {
        uint64_t r = rng();
        if (live.size() < 300 && (live.empty() || r % 3 != 0)) {
          size_t n = r % 50 == 0 ? 128 * KiB + rng() % (3 * MiB) : rng() % 5000;
          auto* p = static_cast<unsigned char*>(malloc(n));
          if (p == nullptr) continue;
          Block b{p, n, ++id};
          stamp(b);
          live.push_back(b);
        } else {
          size_t k = rng() % live.size();
          if (!intact(live[k])) corrupted.fetch_add(1);
          if (r % 7 == 0) {
            size_t n = rng() % 9000;
            auto* p = static_cast<unsigned char*>(realloc(live[k].p, n + 1));
            if (p == nullptr) continue;
            live[k] = Block{p, n + 1, ++id};
            stamp(live[k]);
          } else if (r % 5 == 0) {
            outgoing.push_back(live[k]);  // someone else frees it
            live[k] = live.back();
            live.pop_back();
            if (outgoing.size() >= 32) q.push(std::move(outgoing));
          } else {
            free(live[k].p);
            live[k] = live.back();
            live.pop_back();
          }
        }
      }
      for (const Block& b : live) free(b.p);
      q.push(std::move(outgoing));
    });
  std::thread consumer([&] {
    std::vector<Block> got;
    while (q.pop(&got, 64)) {
      for (const Block& b : got) {
        if (!intact(b)) corrupted.fetch_add(1);
        free(b.p);
      }
      got.clear();
    }
  });
  std::thread janitor([&] {
    hak_stats s;
    while (!stop.load()) {
      hak_trim();
      hak_stats_get(&s);
      if (hak_check_heap() != 0) faults.fetch_add(1);
      trims.fetch_add(1);
    }
  });
  for (auto& t : ts) t.join();
  q.close();
  consumer.join();
  // At least one whole trim and check, however fast the workers were.
  for (uint64_t done = trims.load(); trims.load() < done + 1;) std::this_thread::yield();
  stop.store(true);
  janitor.join();
  EXPECT_EQ(corrupted.load(), 0u);
  EXPECT_EQ(faults.load(), 0u) << "hak_check_heap() failed while threads worked";
  EXPECT_GT(trims.load(), 0u);
  EXPECT_EQ(hak_check_heap(), 0);
}

}  // namespace

// Passive false sharing (the cache-scratch workload): a new thread frees a
// block another thread allocated, then allocates blocks of the same size and
// writes them. It must not be handed that block, nor anything on its cache
// line, while the other thread may still be writing the block's neighbours.
TEST(Threads, FreedForeignBlockIsNotReusedAtOnce) {
#if defined(HAKMEM_HARDENED)
  GTEST_SKIP() << "the hardened variant hands a slab's blocks out in random order: a neighbour may share the line";
#endif
  for (size_t size : {8, 16, 48, 64, 200, 1000, 4096}) {
    void* mine[4];
    for (auto& p : mine) p = malloc(size);  // neighbours of the handed block, still in use here
    void* handed = malloc(size);
    uintptr_t line = reinterpret_cast<uintptr_t>(handed) / 64;
    std::thread t([&] {
      free(handed);
      for (int i = 0; i < 16; ++i) {
        void* q = malloc(size);
        EXPECT_NE(reinterpret_cast<uintptr_t>(q) / 64, line)
            << size << " B: the freeing thread got the handed block's cache line back at allocation " << i;
        memset(q, 1, size);
        free(q);
      }
    });
    t.join();
    for (void* p : mine) free(p);
  }
  EXPECT_EQ(hak_check_heap(), 0);
}

// ---- Spans a thread keeps for reuse (large.h: kParkSpans) ----

namespace {

using test_support::opaque;
using test_support::opaque_size;

bool spans_park() {
  const char* decay = getenv("HAKMEM_DECAY_MS");
  return hakmem::kParkSpans && (decay == nullptr || strcmp(decay, "0") != 0);  // 0: freed memory goes back at once
}
bool parked(void* span) {
  hakmem::RunInfo run;
  return hakmem::run_lookup(span, &run) && run.tag == hakmem::kTagLargeParked;
}

// A span of up to 1 MiB freed by a thread waits for that thread's next
// malloc of its length (here 5 units: 300 and 290 KiB) and comes back,
// counted as freed and allocated again. A malloc of another length finds
// it no use: the parked spans go back to the backend then.
TEST(LargeParking, AFreedSpanComesBackToItsThread) {
  if (!spans_park()) GTEST_SKIP() << "spans are not parked in this build or with these settings";
  hak_trim();  // no spans parked from earlier tests
  void* p = malloc(opaque_size(300 * KiB));
  ASSERT_NE(p, nullptr);
  hak_stats live, freed, again;
  hak_stats_get(&live);
  free(opaque(p));
  hak_stats_get(&freed);
  EXPECT_TRUE(parked(p));
  EXPECT_EQ(freed.large_frees, live.large_frees + 1);
  EXPECT_EQ(live.large_live_bytes - freed.large_live_bytes, 320 * KiB) << "5 units left the program's hands";
  void* q = malloc(opaque_size(290 * KiB));
  EXPECT_EQ(q, p) << "the parked span of the same length was not reused";
  hak_stats_get(&again);
  EXPECT_EQ(again.large_allocs, freed.large_allocs + 1);
  EXPECT_EQ(again.large_live_bytes, live.large_live_bytes);
  free(opaque(q));
  ASSERT_TRUE(parked(q));
  void* other = malloc(opaque_size(600 * KiB));  // 10 units: not the parked span, which goes back
  EXPECT_FALSE(parked(q)) << "a span of another length stayed parked past a miss";
  EXPECT_EQ(malloc_usable_size(other), 640 * KiB);  // (its units may well be the parked span's: lowest first)
  free(other);
  EXPECT_EQ(hak_check_heap(), 0);
}

// A parked span is no block to anyone: malloc_usable_size and hak_owns say
// so, a second free of it counts as a bad free and changes nothing, and the
// span is handed out once, not twice.
TEST(LargeParking, ASecondFreeOfAParkedSpanIsABadFree) {
  if (!spans_park()) GTEST_SKIP() << "spans are not parked in this build or with these settings";
  void* p = malloc(opaque_size(200 * KiB));
  ASSERT_NE(p, nullptr);
  free(opaque(p));
  ASSERT_TRUE(parked(p));
  EXPECT_EQ(malloc_usable_size(opaque(p)), 0u);
  EXPECT_EQ(hak_owns(opaque(p)), 0);
  hak_stats before, after;
  hak_stats_get(&before);
  free(opaque(p));  // the double free
  hak_stats_get(&after);
  EXPECT_EQ(after.invalid_frees + after.foreign_frees, before.invalid_frees + before.foreign_frees + 1);
  EXPECT_EQ(after.large_frees, before.large_frees) << "the double free was counted as a free";
  void* a = malloc(opaque_size(200 * KiB));
  void* b = malloc(opaque_size(200 * KiB));
  EXPECT_NE(a, b) << "one span handed out twice";
  free(a);
  free(b);
  EXPECT_EQ(hak_check_heap(), 0);
}

// A thread that parks a span and then blocks never calls hakmem again: the
// decay passes (the purge thread's, or any other thread's) take the span
// from its cache, so its memory can go back to the OS on the decay's
// schedule. The deadline is generous: a slow machine only waits longer.
TEST(LargeParking, AQuietThreadsSpansGoBackWithTheDecay) {
  if (!spans_park()) GTEST_SKIP() << "spans are not parked in this build or with these settings";
  std::atomic<void*> span{nullptr};
  std::atomic<bool> done{false};
  std::thread quiet([&] {
    void* p = malloc(opaque_size(400 * KiB));
    free(opaque(p));
    span.store(p);
    while (!done.load()) std::this_thread::sleep_for(std::chrono::milliseconds(5));  // no allocator call
  });
  while (span.load() == nullptr) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  void* p = span.load();
  EXPECT_TRUE(parked(p));
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (parked(p) && std::chrono::steady_clock::now() < deadline) {
    free(malloc(opaque_size(2 * MiB)));  // not parkable: a slow path that polls the decay
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_FALSE(parked(p)) << "the blocked thread's parked span never went back";
  done.store(true);
  quiet.join();
  EXPECT_EQ(hak_check_heap(), 0);
}

// A span parked right after a growing buffer does not stand in its way:
// realloc hands the thread's parked spans back and grows the buffer where
// it is instead of copying it (a doubling loop copied at every step).
TEST(LargeParking, AParkedSpanDoesNotBlockReallocGrowth) {
  if (!spans_park()) GTEST_SKIP() << "spans are not parked in this build or with these settings";
  hak_trim();
  char* a = static_cast<char*>(malloc(opaque_size(256 * KiB)));
  char* b = static_cast<char*>(malloc(opaque_size(256 * KiB)));
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  if (b != a + 256 * KiB) {
    free(a);
    free(b);
    GTEST_SKIP() << "the second span was not placed right after the first";
  }
  free(opaque(b));
  ASSERT_TRUE(parked(b));
  memset(a, 7, 256 * KiB);
  char* grown = static_cast<char*>(realloc(a, opaque_size(512 * KiB)));
  EXPECT_EQ(grown, a) << "the buffer was copied instead of growing over the parked span";
  EXPECT_EQ(grown[256 * KiB - 1], 7);
  free(grown);
  EXPECT_EQ(hak_check_heap(), 0);
}

// "Up to 1 MiB" includes 1 MiB: a span of exactly 16 units is parked and
// comes back to its thread; one a unit longer goes back to the backend.
// (make mutate: a limit that parked only spans under 16 units passed every
// test before this one.)
TEST(LargeParking, ASpanOfExactly1MiBIsParkedAndOneUnitLongerIsNot) {
  if (!spans_park()) GTEST_SKIP() << "spans are not parked in this build or with these settings";
  hak_trim();  // no spans parked from earlier tests
  void* p = malloc(opaque_size(1 * MiB));
  void* q = malloc(opaque_size(1 * MiB + 1));
  ASSERT_NE(p, nullptr);
  ASSERT_NE(q, nullptr);
  free(opaque(p));
  EXPECT_TRUE(parked(p)) << "a span of 16 units (1 MiB) was not parked";
  free(opaque(q));
  EXPECT_FALSE(parked(q)) << "a span of 17 units was parked";
  void* again = malloc(opaque_size(1 * MiB));
  EXPECT_EQ(again, p) << "the parked span of 1 MiB did not come back";
  free(again);
  EXPECT_EQ(hak_check_heap(), 0);
}

// A thread keeps four parked spans at most (4 MiB at most held back from
// the backend): a fifth free parks its span in place of the first, which
// goes back. (make mutate: five slots passed every test before this one.)
TEST(LargeParking, AThreadKeepsFourParkedSpansAtMost) {
  if (!spans_park()) GTEST_SKIP() << "spans are not parked in this build or with these settings";
  hak_trim();  // no spans parked from earlier tests
  void* spans[5];
  for (int i = 0; i < 5; ++i) {
    spans[i] = malloc(opaque_size((200 + 100 * i) * KiB));  // five lengths: 4 to 10 units
    ASSERT_NE(spans[i], nullptr);
  }
  for (void* p : spans) free(opaque(p));
  EXPECT_FALSE(parked(spans[0])) << "a fifth parked span did not displace the first";
  for (int i = 1; i < 5; ++i) EXPECT_TRUE(parked(spans[i])) << "span " << i << " is not parked";
  hak_trim();
  for (void* p : spans) EXPECT_FALSE(parked(p)) << p << " stayed parked past a trim";
  EXPECT_EQ(hak_check_heap(), 0);
}

// A thread's parked spans go back when it exits.
TEST(LargeParking, AnExitingThreadHandsItsSpansBack) {
  if (!spans_park()) GTEST_SKIP() << "spans are not parked in this build or with these settings";
  void* spans[3] = {};
  std::thread worker([&] {
    for (int i = 0; i < 3; ++i) spans[i] = malloc(opaque_size((200 + 100 * i) * KiB));
    for (void* p : spans) free(opaque(p));
  });
  worker.join();
  for (void* p : spans) EXPECT_FALSE(parked(p)) << p << " stayed parked after its thread exited";
  EXPECT_EQ(hak_check_heap(), 0);
}

}  // namespace
