// Multi-threaded stress on the prefixed API. Every block carries a stamp
// derived from its address and size, checked when another thread frees it;
// the heap's own consistency check runs at the end of each test.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "hakmem.h"
#include "tests/support/blocks.h"
#include "tests/support/run_self.h"

namespace {

using test_support::Block;
using test_support::BlockQueue;
using test_support::intact;
using test_support::stamp;

// The id mixes the address into every byte, so two blocks that overlap
// carry different stamps.
Block make_block(size_t n) {
  auto* p = static_cast<unsigned char*>(hak_malloc(n));
  Block b{p, n, (reinterpret_cast<uintptr_t>(p) * 0x9E3779B97F4A7C15ull) ^ n};
  if (p != nullptr) stamp(b);
  return b;
}

size_t random_size(std::mt19937& rng) {
  uint32_t r = rng() % 1000;
  if (r < 700) return 1 + rng() % 1024;               // tiny
  if (r < 950) return 1025 + rng() % (128 * 1024);    // mid
  if (r < 995) return 128 * 1024 + rng() % (2 << 20); // large
  return (2 << 20) + rng() % (6 << 20);               // huge
}

}  // namespace

TEST(Stress, CrossThreadFreesKeepContentAndAccounting) {
  constexpr int kProducers = 3, kConsumers = 3, kPerProducer = 15000;
  BlockQueue q;
  std::atomic<int> corrupt{0};
  std::vector<std::thread> producers, consumers;
  for (int t = 0; t < kConsumers; ++t)
    consumers.emplace_back([&] {
      Block b;
      while (q.pop(&b)) {
        if (!intact(b)) corrupt.fetch_add(1);
        hak_free(b.p);
      }
    });
  for (int t = 0; t < kProducers; ++t)
    producers.emplace_back([&, t] {
      std::mt19937 rng(1234 + t);
      for (int i = 0; i < kPerProducer; ++i) {
        Block b = make_block(random_size(rng));
        ASSERT_NE(b.p, nullptr);
        q.push(b);
      }
    });
  for (auto& t : producers) t.join();
  q.close();
  for (auto& t : consumers) t.join();
  EXPECT_EQ(corrupt.load(), 0);
  EXPECT_EQ(hak_check_heap(), 0);
}

TEST(Stress, RefillAndFlushRacesOnSharedClasses) {
  // Every thread allocates bursts of the same few classes and frees them in
  // another order, so thread caches refill from and flush to the same
  // central pools all the time.
  constexpr int kThreads = 4;
  std::atomic<int> corrupt{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&, t] {
      std::mt19937 rng(99 + t);
      std::vector<Block> live;
      for (int round = 0; round < 60; ++round) {
        size_t burst = 200 + rng() % 800;
        for (size_t i = 0; i < burst; ++i) live.push_back(make_block(16u << (rng() % 8)));
        std::shuffle(live.begin(), live.end(), rng);
        size_t keep = live.size() / 4;
        for (size_t i = keep; i < live.size(); ++i) {
          if (!intact(live[i])) corrupt.fetch_add(1);
          hak_free(live[i].p);
        }
        live.resize(keep);
      }
      for (Block& b : live) {
        if (!intact(b)) corrupt.fetch_add(1);
        hak_free(b.p);
      }
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(corrupt.load(), 0);
  EXPECT_EQ(hak_check_heap(), 0);
}

TEST(Stress, ExitingThreadsHandTheirCachesBack) {
  std::vector<Block> kept;
  kept.reserve(30000);
  std::mutex m;
  int corrupt = 0;
  uint64_t mapped_after_warmup = 0;
  for (int wave = 0; wave < 12; ++wave) {
    if (wave == 2) {
      hak_trim();
      hak_stats s;
      hak_stats_get(&s);
      mapped_after_warmup = s.bytes_mapped;
    }
    std::vector<std::thread> threads;
    for (int t = 0; t < 8; ++t)
      threads.emplace_back([&, t] {
        std::mt19937 rng(wave * 31 + t);
        std::vector<Block> mine;
        for (int i = 0; i < 3000; ++i) mine.push_back(make_block(1 + rng() % 4096));
        std::lock_guard<std::mutex> g(m);
        for (size_t i = 0; i < mine.size(); ++i) {
          if (i % 10 == 0) kept.push_back(mine[i]);  // outlives its thread
          else hak_free(mine[i].p);
        }
      });
    for (auto& t : threads) t.join();
    // The blocks that outlived their threads are freed here, by another thread.
    for (Block& b : kept) {
      corrupt += !intact(b);
      hak_free(b.p);
    }
    kept.clear();
  }
  EXPECT_EQ(corrupt, 0);
  EXPECT_EQ(hak_check_heap(), 0);
  // Blocks cached by exited threads would pin their slabs: after a trim,
  // nothing may be mapped beyond what the heap held after the warm-up waves.
  hak_trim();
  hak_stats after;
  hak_stats_get(&after);
  EXPECT_LE(after.bytes_mapped, mapped_after_warmup + (8u << 20));
}

TEST(Stress, ForkWhileThreadsAllocate) {
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < 3; ++t)
    threads.emplace_back([&, t] {
      std::mt19937 rng(7 + t);
      std::vector<Block> live;
      while (!stop.load(std::memory_order_relaxed)) {
        live.push_back(make_block(random_size(rng) % 70000 + 1));
        if (live.size() > 64) {
          size_t i = rng() % live.size();
          hak_free(live[i].p);
          live[i] = live.back();
          live.pop_back();
        }
      }
      for (Block& b : live) hak_free(b.p);
    });
  for (int round = 0; round < 15; ++round) {
    // The child's list, allocated before the fork: in the sanitizer builds
    // std::vector allocates from the sanitizer's malloc, which a child forked
    // while another thread is inside it can deadlock on. The child then
    // calls no allocator but hakmem's.
    std::vector<Block> live;
    live.reserve(2000);
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      // The child: only this thread exists. Every size range must work.
      std::mt19937 rng(round);
      for (int i = 0; i < 2000; ++i) live.push_back(make_block(random_size(rng)));
      int bad = 0;
      for (Block& b : live) {
        bad += !intact(b);
        hak_free(b.p);
      }
      _exit(bad == 0 && hak_check_heap() == 0 ? 0 : 3);
    }
    int status = 0;
    for (int waited = 0; waited < 300; ++waited) {  // 30 s: a deadlocked child fails, not hangs
      if (waitpid(pid, &status, WNOHANG) == pid) break;
      usleep(100000);
      if (waited == 299) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        FAIL() << "child deadlocked after fork";
      }
    }
    ASSERT_TRUE(WIFEXITED(status)) << "child died: status " << status;
    EXPECT_EQ(WEXITSTATUS(status), 0);
  }
  stop = true;
  for (auto& t : threads) t.join();
  EXPECT_EQ(hak_check_heap(), 0);
}

// A program may fork while another of its threads makes hakmem's very first
// allocation (a library starting a worker thread as the program forks). The
// child has only the forking thread: it must finish the initialisation the
// vanished thread began, not wait for it forever. Each probe is a fresh
// process in which hakmem has not run yet; in the release build hakmem is
// the process's malloc and GoogleTest's start-up has run it already, so
// the race exists only under the sanitizers' builds (the prefixed API).
TEST(Stress, ProbeForkDuringInit) {
  if (getenv("HAKMEM_TEST_PROBE") == nullptr) GTEST_SKIP() << "run by the test below";
  // The fork comes a few microseconds after the thread starts, a different
  // delay in each probe, to sweep the initialisation's window.
  const long delay_us = atol(getenv("HAKMEM_TEST_PROBE"));
  std::thread first([] { hak_free(hak_malloc(64)); });
  const auto start = std::chrono::steady_clock::now();
  while (std::chrono::steady_clock::now() - start < std::chrono::microseconds(delay_us)) {
  }
  const pid_t pid = fork();
  if (pid == 0) {
    alarm(5);  // a child that waits for the vanished thread dies of it
    void* p = hak_malloc(64);
    hak_free(p);
    _exit(p != nullptr ? 0 : 3);
  }
  first.join();
  int status = 0;
  waitpid(pid, &status, 0);
  printf("probe: child=%d\n", WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
  fflush(stdout);
}
TEST(Stress, ForkDuringTheFirstAllocation) {
  int hung = 0;
  for (int attempt = 0; attempt < 40; ++attempt) {
    int status = 0;
    const std::string line = test_support::run_self("HAKMEM_TEST_PROBE=" + std::to_string(attempt * 10),
                                                    "Stress.ProbeForkDuringInit", "probe: ", &status);
    ASSERT_EQ(status, 0) << line;
    if (line != "child=0\n") ++hung;
  }
  EXPECT_EQ(hung, 0) << hung << " of 40 children forked during the first allocation never finished theirs";
}
