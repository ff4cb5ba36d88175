// fork() in a multi-threaded program never deadlocks, in parent or child
// (DESIGN.md §1): the allocator's locks are taken around fork and reset in
// the child.
#include <errno.h>
#include <malloc.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "hakmem.h"
#include "size_class/size_class.h"
#include "tests/support/hidden_symbol.h"
#include "tests/support/run_self.h"
#include "tests/support/units.h"

namespace {

using test_support::KiB;
using test_support::MiB;

struct Watchdog {
  explicit Watchdog(unsigned secs) { alarm(secs); }
  ~Watchdog() { alarm(0); }
};

// Waits for `pid` at most `secs` seconds; kills it after that.
// Returns the wait status, or -1 on timeout.
int wait_with_timeout(pid_t pid, double secs) {
  struct timespec start;
  clock_gettime(CLOCK_MONOTONIC, &start);
  for (;;) {
    int status = 0;
    pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) return status;
    if (r < 0 && errno != EINTR) return -2;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    double el = static_cast<double>(now.tv_sec - start.tv_sec) + (now.tv_nsec - start.tv_nsec) / 1e9;
    if (el > secs) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      return -1;
    }
    usleep(1000);
  }
}

std::string describe(int status) {
  if (status == -1) return "timed out (deadlock?)";
  if (status == -2) return "waitpid failed";
  if (WIFEXITED(status)) return "exit " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return "signal " + std::to_string(WTERMSIG(status));
  return "status " + std::to_string(status);
}

// In the child: allocate and free in every size range, check contents and
// the heap. Returns 0 when everything held.
int child_work(unsigned seed, bool check_heap = false) {
  std::mt19937 rng(seed);
  const size_t sizes[] = {0, 1, 8, 24, 100, 1000, 1024, 5000, 32768, 100000, 128 * KiB, 200 * KiB,
                          1 * MiB, 2 * MiB, 3 * MiB, 9 * MiB};
  void* keep[64];
  int n = 0;
  for (int round = 0; round < 4; ++round) {
    for (size_t s : sizes) {
      unsigned char* p = static_cast<unsigned char*>(malloc(s));
      if (p == nullptr) return 10;
      memset(p, static_cast<int>(s & 0xff) ^ round, s);
      if (n < 64) keep[n++] = p;
      else free(p);
    }
    for (int i = 0; i < 200; ++i) {
      void* p = malloc(rng() % 3000);
      if (p == nullptr) return 11;
      free(p);
    }
    void* c = calloc(1000, 10);
    if (c == nullptr) return 12;
    for (int i = 0; i < 10000; ++i)
      if (static_cast<unsigned char*>(c)[i] != 0) return 13;
    void* r = realloc(c, 5 * MiB);
    if (r == nullptr) return 14;
    free(r);
  }
  // Verify the kept blocks, then free them.
  int k = 0;
  for (int round = 0; round < 4 && k < n; ++round)
    for (size_t s : sizes) {
      if (k >= n) break;
      unsigned char* p = static_cast<unsigned char*>(keep[k++]);
      for (size_t i = 0; i < s; i += 97)
        if (p[i] != static_cast<unsigned char>((s & 0xff) ^ round)) return 15;
      free(p);
    }
  // A thread in the child works too.
  std::atomic<int> ok{0};
  std::thread t([&] {
    std::vector<void*> v;
    for (int i = 0; i < 1000; ++i) v.push_back(malloc(16 + i));
    for (void* p : v) free(p);
    ok.store(1);
  });
  t.join();
  if (ok.load() != 1) return 16;
  hak_stats st;
  hak_stats_get(&st);
  if (st.bytes_mapped == 0) return 17;
  if (check_heap && hak_check_heap() != 0) return 18;
  hak_trim();
  return 0;
}

class Churners {
 public:
  explicit Churners(int n) {
    for (int i = 0; i < n; ++i)
      threads_.emplace_back([this, i] {
        std::mt19937 rng(i * 7919);
        std::vector<void*> live;
        while (!stop_.load(std::memory_order_relaxed)) {
          uint32_t r = rng();
          size_t s;
          switch (r % 16) {
            case 0: s = 128 * KiB + rng() % (2 * MiB); break;   // large
            case 1: s = (r & 0x100) ? 2 * MiB + rng() % (4 * MiB) : rng() % 128 * KiB; break;  // huge or mid
            default: s = rng() % 2048; break;
          }
          void* p = malloc(s);
          if (p != nullptr) {
            if (s > 0) static_cast<char*>(p)[0] = 1;
            live.push_back(p);
          }
          if (live.size() > 200 || (r & 0x30000) == 0) {
            size_t k = rng() % live.size();
            free(live[k]);
            live[k] = live.back();
            live.pop_back();
          }
          if ((r & 0xfff) == 0) hak_trim();
          ops_.fetch_add(1, std::memory_order_relaxed);
        }
        for (void* p : live) free(p);
      });
  }
  ~Churners() { stop(); }
  void stop() {
    stop_.store(true);
    for (auto& t : threads_)
      if (t.joinable()) t.join();
  }
  uint64_t ops() const { return ops_.load(); }

 private:
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> ops_{0};
  std::vector<std::thread> threads_;
};

TEST(Fork, WhileThreadsAllocate) {
  Watchdog dog(110);
  Churners churn(4);
  while (churn.ops() < 10000) usleep(100);
  for (int i = 0; i < 20; ++i) {
    uint64_t before = churn.ops();
    pid_t pid = fork();
    ASSERT_GE(pid, 0) << strerror(errno);
    if (pid == 0) _exit(child_work(i));
    int status = wait_with_timeout(pid, 15.0);
    ASSERT_TRUE(status >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0)
        << "fork " << i << ": child " << describe(status);
    // The parent goes on allocating, and so do its threads.
    for (int k = 0; k < 1000; ++k) free(malloc(k * 3));
    void* big = malloc(3 * MiB);
    ASSERT_NE(big, nullptr);
    free(big);
    while (churn.ops() < before + 2000) usleep(100);
  }
  churn.stop();
  EXPECT_EQ(hak_check_heap(), 0);
}

TEST(Fork, ChildExitsNormally) {
  // exit() runs destructors (and hakmem's report-at-exit hook) in the child.
  Watchdog dog(60);
  Churners churn(4);
  while (churn.ops() < 5000) usleep(100);
  for (int i = 0; i < 10; ++i) {
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) exit(child_work(100 + i));
    int status = wait_with_timeout(pid, 15.0);
    ASSERT_TRUE(status >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0)
        << "fork " << i << ": child " << describe(status);
  }
}

TEST(Fork, ForkFromAWorkerThread) {
  Watchdog dog(60);
  Churners churn(3);
  while (churn.ops() < 5000) usleep(100);
  for (int i = 0; i < 10; ++i) {
    int status = -3;
    std::thread forker([&] {
      void* p = malloc(500);  // this thread has a registered cache
      pid_t pid = fork();
      if (pid == 0) {
        free(p);
        _exit(child_work(200 + i));
      }
      free(p);
      status = pid < 0 ? -2 : wait_with_timeout(pid, 15.0);
    });
    forker.join();
    ASSERT_TRUE(status >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0)
        << "fork " << i << ": child " << describe(status);
  }
}

TEST(Fork, NestedForks) {
  Watchdog dog(60);
  Churners churn(2);
  while (churn.ops() < 2000) usleep(100);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    // The child starts threads of its own and forks again.
    Churners inner(2);
    usleep(2000);
    pid_t g = fork();
    if (g < 0) _exit(20);
    if (g == 0) _exit(child_work(300));
    int st = wait_with_timeout(g, 15.0);
    inner.stop();
    if (!(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0)) _exit(21);
    _exit(child_work(301));
  }
  int status = wait_with_timeout(pid, 30.0);
  EXPECT_TRUE(status >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0) << "child " << describe(status);
}

// A run is fully described (slab capacity, span size) before the backend
// lock drops, and heap checks hold the class locks too. (Found by this test.)
TEST(Fork, ChildHeapIsConsistent) {
  Watchdog dog(110);
  Churners churn(4);
  while (churn.ops() < 10000) usleep(100);
  for (int i = 0; i < 30; ++i) {
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) _exit(hak_check_heap() == 0 ? child_work(400 + i, true) : 19);
    int status = wait_with_timeout(pid, 15.0);
    ASSERT_TRUE(status >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0)
        << "fork " << i << ": child " << describe(status) << " (19 or 18: hak_check_heap() found faults)";
  }
}

// mallctl's figures sit under a lock of their own, which the fork handlers
// do not take: a thread may be inside mallctl when another forks, and the
// child must find the lock free (it is reset there). Here a thread asks for
// fresh figures ("epoch") without a pause, so that nearly every fork finds
// it holding the lock; each child asks for the figures too. (make mutate:
// a child that kept the lock as the fork found it, and hung at its first
// mallctl, passed every test before this one.)
TEST(Fork, AMallctlInAnotherThreadDoesNotHangTheChild) {
  Watchdog dog(100);
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> refreshes{0};
  std::thread reader([&] {
    while (!stop.load(std::memory_order_relaxed)) {
      uint64_t epoch = 1;
      size_t len = sizeof epoch;
      hak_mallctl("epoch", &epoch, &len, &epoch, sizeof epoch);
      refreshes.fetch_add(1, std::memory_order_relaxed);
    }
  });
  for (int i = 0; i < 10; ++i) {
    const uint64_t before = refreshes.load();
    while (refreshes.load() < before + 20) usleep(50);
    pid_t pid = fork();
    EXPECT_GE(pid, 0) << strerror(errno);
    if (pid < 0) break;
    if (pid == 0) {
      uint64_t epoch = 1;
      size_t len = sizeof epoch, allocated = 0, allocated_len = sizeof allocated;
      int rc = hak_mallctl("epoch", &epoch, &len, &epoch, sizeof epoch);
      rc |= hak_mallctl("stats.allocated", &allocated, &allocated_len, nullptr, 0);
      _exit(rc == 0 && allocated > 0 ? 0 : 1);
    }
    int status = wait_with_timeout(pid, 15.0);
    EXPECT_TRUE(status >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0)
        << "fork " << i << ": child " << describe(status);
    if (!(status >= 0 && WIFEXITED(status))) break;
  }
  stop = true;
  reader.join();
}

// A forked child is single-threaded again: it counts one live thread, its
// own, so that a thread it starts shares the thread-cache budget with it
// half and half. The probe (HAKMEM_THREAD_CACHES=2) forks; the child starts
// a thread, both free 64 KiB of every class (about 3 MiB a thread could
// cache), and the child reads what the two caches hold while the thread
// waits. (make mutate: a child that counted no
// live thread, which gave each of its two threads the whole budget, passed
// every test before this one.)
TEST(Fork, ProbeChildThreadCaches) {
  if (getenv("HAKMEM_TEST_PROBE") == nullptr) GTEST_SKIP() << "run by the test below";
  int pipe_fds[2];
  ASSERT_EQ(pipe(pipe_fds), 0);
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    std::atomic<int> filled{0};
    std::atomic<bool> done{false};
    auto waves = [&] {
      filled.fetch_add(1);
      while (filled.load() < 2) {
      }
      for (int wave = 0; wave < 2; ++wave)
        for (int c = 0; c < hakmem::kNumClasses; ++c) {  // 64 KiB of each class, at most 64 blocks
          const size_t size = hakmem::class_size(c);
          void* blocks[64];
          const size_t n = std::min<size_t>(64, std::max<size_t>(1, 64 * KiB / size));
          for (size_t i = 0; i < n; ++i) blocks[i] = malloc(size);
          for (size_t i = 0; i < n; ++i) free(blocks[i]);
        }
      filled.fetch_add(1);
    };
    std::thread other([&] {
      waves();
      while (!done.load()) usleep(1000);  // idle, its cache in place
    });
    waves();
    while (filled.load() < 4) usleep(1000);
    hak_stats s;
    hak_stats_get(&s);
    done.store(true);
    other.join();
    const unsigned long long held = s.thread_cache_bytes;
    _exit(write(pipe_fds[1], &held, sizeof held) == sizeof held ? 0 : 1);
  }
  close(pipe_fds[1]);
  unsigned long long held = 0;
  const bool got = read(pipe_fds[0], &held, sizeof held) == sizeof held;
  close(pipe_fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  if (got && WIFEXITED(status) && WEXITSTATUS(status) == 0) printf("probe: held=%llu\n", held);
  fflush(stdout);
}
TEST(Fork, AChildsThreadsShareTheThreadCacheBudget) {
  int status = 0;
  const std::string line = test_support::run_self("HAKMEM_THREAD_CACHES=2 HAKMEM_TEST_PROBE=1", "Fork.ProbeChildThreadCaches",
                                                  "probe: ", &status);
  unsigned long long held = 0;
  ASSERT_EQ(sscanf(line.c_str(), "held=%llu", &held), 1) << "the probe's child failed: " << line;
  // 1 MiB each, and one block over it at most (the class each refilled
  // last); with the whole budget each, they cached 3.7 MiB.
  EXPECT_LE(held, 2 * MiB + 2 * 128 * KiB) << "the child's two threads cache " << held << " bytes";
}

// hakmem's first initialisation, driven by hand in a child process: its
// state word (lifecycle.cc's g_init_state: 2 once done, else the
// initialising process's pid * 2 + 1) set as a race leaves it, and the slow
// path that a first allocation takes (init_slow) called.
struct InitHooks {
  std::atomic<int64_t>* state;
  void (*init_slow)();
};
constexpr int64_t kInitDone = 2;

InitHooks init_hooks() {
  return {static_cast<std::atomic<int64_t>*>(test_support::hidden_object("_ZN12_GLOBAL__N_112g_init_stateE")),
          reinterpret_cast<void (*)()>(test_support::hidden_symbol("_ZN12_GLOBAL__N_19init_slowEv"))};
}

// A thread whose first allocation finds another thread of its process
// initialising hakmem waits until that thread is done. (make mutate: a
// thread that went on at once, into an allocator not yet set up, passed
// every test before this one.)
// In a child: 0 if init_slow waited for the initialising thread.
int wait_for_an_initialising_thread() {
  const InitHooks hooks = init_hooks();
  std::atomic<bool> go{false};
  std::atomic<bool> done{false};
  std::atomic<bool> early{false};
  std::thread waiter([&] {  // started before the state turns: starting it allocates
    while (!go.load()) {
    }
    hooks.init_slow();
    early = !done.load();
  });
  alarm(10);
  hooks.state->store((static_cast<int64_t>(getpid()) << 1) | 1);  // this process, initialising
  go = true;
  usleep(50 * 1000);
  done = true;
  hooks.state->store(kInitDone);
  waiter.join();
  return early ? 1 : 0;
}

TEST(Init, AThreadWaitsWhileAnotherThreadOfItsProcessInitialises) {
  ASSERT_NE(init_hooks().state, nullptr) << "g_init_state not found in the symbol table (stripped?)";
  ASSERT_NE(init_hooks().init_slow, nullptr);
  EXPECT_EXIT(_exit(wait_for_an_initialising_thread()), testing::ExitedWithCode(0), "");
}

// A child forked while its parent ran hakmem's initialisation finishes it
// itself: nobody else will (Stress.ForkDuringTheFirstAllocation forks at
// that moment for real). (make mutate: a child that waited passed every
// unit test before this one.)
TEST(Init, AChildForkedWhileItsParentInitialisedFinishesIt) {
  ASSERT_NE(init_hooks().state, nullptr) << "g_init_state not found in the symbol table (stripped?)";
  ASSERT_NE(init_hooks().init_slow, nullptr);
  EXPECT_EXIT(
      {
        const InitHooks hooks = init_hooks();
        alarm(10);
        hooks.state->store((static_cast<int64_t>(getppid()) << 1) | 1);  // the parent, initialising
        hooks.init_slow();
        void* p = malloc(100);
        free(p);
        _exit(hooks.state->load() == kInitDone && p != nullptr ? 0 : 1);
      },
      testing::ExitedWithCode(0), "");
}

}  // namespace
