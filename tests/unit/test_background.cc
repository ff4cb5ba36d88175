// Memory that goes back when the program goes quiet: the purge thread
// (HAKMEM_BACKGROUND), and jemalloc's mallctl names that servers purge and
// read their figures through. Each scenario runs in a fresh process of its
// own (test_support::run_self), with the settings it needs.
#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "hakmem.h"
#include "tests/support/opaque.h"
#include "tests/support/proc_self.h"
#include "tests/support/run_self.h"

namespace {

using test_support::status_field;
long rss_kib() { return static_cast<long>(test_support::rss_bytes() / 1024); }
long threads() { return status_field("Threads"); }

bool hakmem_is_hardened() {
#if defined(HAKMEM_HARDENED)
  return true;
#else
  return false;
#endif
}

void sleep_ms(long ms) {
  struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&t, &t) != 0) {
  }
}

// Two threads allocate about 256 MiB of small and mid blocks and the main
// thread frees them all; then it waits, making no allocator call, up to
// `wait_ms`, and prints how far the RSS came back above where it started.
// Given HAKMEM_TEST_PROBE_RSS_KIB it stops waiting as soon as the RSS is
// within that much of the start, rather than sleep out the whole wait.
// (HAKMEM_DECAY_MS=200: two decay periods are 400 ms.)
TEST(Background, ProbeFreeThenIdle) {
  if (getenv("HAKMEM_TEST_PROBE") == nullptr) GTEST_SKIP() << "run by the tests below";
  const long wait_ms = atol(getenv("HAKMEM_TEST_PROBE"));
  const long before = rss_kib();
  std::vector<void*> blocks[2];
  for (auto& v : blocks) v.reserve(600000);
  std::thread workers[2];
  for (int t = 0; t < 2; ++t)
    workers[t] = std::thread([&v = blocks[t], t] {
      size_t total = 0;
      for (size_t i = 0; total < (size_t{128} << 20); ++i) {
        size_t n = 16 + (i * 7919 + static_cast<size_t>(t)) % (i % 16 == 0 ? 4096 : 256);
        char* p = static_cast<char*>(malloc(n));
        p[0] = 1;
        p[n - 1] = 2;
        v.push_back(p);
        total += n;
      }
    });
  for (auto& w : workers) w.join();
  const long loaded = rss_kib();
  for (auto& v : blocks)
    for (void* p : v) free(p);
  // The vectors' own arrays (a few MiB) go too: nothing of the test's stays.
  for (auto& v : blocks) std::vector<void*>().swap(v);
  if (const char* target = getenv("HAKMEM_TEST_PROBE_RSS_KIB")) {
    const long target_kib = atol(target);
    constexpr long kPollMs = 20;
    for (long waited = 0; waited < wait_ms && rss_kib() - before > target_kib; waited += kPollMs) sleep_ms(kPollMs);
  } else {
    sleep_ms(wait_ms);  // nothing to wait for: the memory should stay
  }
  printf("probe: before=%ld loaded=%ld after=%ld threads=%ld\n", before, loaded, rss_kib(), threads());
}

struct Probe {
  long before = -1, loaded = -1, after = -1, threads = -1;
};
Probe run_probe(const std::string& env, long wait_ms) {
  int status = 0;
  std::string line = test_support::run_self(env + " HAKMEM_TEST_PROBE=" + std::to_string(wait_ms),
                                            "Background.ProbeFreeThenIdle", "probe: ", &status);
  Probe p;
  EXPECT_EQ(status, 0) << env;
  EXPECT_EQ(sscanf(line.c_str(), "before=%ld loaded=%ld after=%ld threads=%ld", &p.before, &p.loaded, &p.after,
                   &p.threads),
            4)
      << "probe said: " << line;
  return p;
}

// By default a process that has had a second thread gets the purge thread:
// freed and idle, it gives the memory back within two decay periods (and a
// bit: the probe stops waiting at 600 ms, or once it is back), without one
// more allocator call. What stays is mostly slabs that
// blocks in the idle thread's own cache keep (idle threads' caches are not
// trimmed yet: issue 12): 9-11 MiB above the start measured on a quiet
// machine, up to 16.7 under CI's parallel tests; the hardened library 12-17
// quiet, its quarantine, random carving or zeroing off alike. Held to 24
// and 32 MiB until those caches are trimmed; without the thread it is 128.
long idle_limit_kib() { return (hakmem_is_hardened() ? 32 : 24) * 1024; }
TEST(Background, IdleProcessGivesItsMemoryBack) {
  const long limit_kib = idle_limit_kib();
  for (int run = 0; run < 3; ++run) {
    Probe p = run_probe("HAKMEM_DECAY_MS=200 HAKMEM_TEST_PROBE_RSS_KIB=" + std::to_string(limit_kib), 600);
    ASSERT_GT(p.loaded - p.before, 200 * 1024) << "the probe did not load the heap";
    EXPECT_LE(p.after - p.before, limit_kib) << "run " << run << ": RSS " << p.before << " -> " << p.loaded << " -> "
                                             << p.after << " KiB";
  }
}

// The same without the purge thread: the memory stays until the next call,
// above what the test above allows. (What makes that test a test of the
// thread.) How much stays depends on how many decay passes the frees
// themselves polled: 130-160 MiB of release's 300, 60-68 of the hardened
// library's, whose frees clear each block and take longer.
TEST(Background, WithoutThePurgeThreadAnIdleProcessKeepsItsMemory) {
  Probe p = run_probe("HAKMEM_DECAY_MS=200 HAKMEM_BACKGROUND=0", 600);
  ASSERT_GT(p.loaded - p.before, 200 * 1024);
  EXPECT_GT(p.after - p.before, idle_limit_kib()) << "RSS " << p.before << " -> " << p.loaded << " -> " << p.after;
}

// A single-threaded program that has not asked gets no thread of hakmem's
// (unshare(CLONE_NEWUSER) needs a single-threaded process); one that asks
// (HAKMEM_BACKGROUND=1) gets it from its first allocation.
TEST(Background, ProbeThreads) {
  if (getenv("HAKMEM_TEST_PROBE") == nullptr) GTEST_SKIP() << "run by the test below";
  std::vector<void*> v;
  for (int i = 0; i < 100000; ++i) v.push_back(malloc(16 + i % 3000));
  void* big = malloc(5 << 20);
  for (void* p : v) free(p);
  free(big);
  sleep_ms(300);
  printf("probe: threads=%ld\n", threads());
}
TEST(Background, SingleThreadedProgramStaysSingleThreaded) {
  for (const char* env : {"HAKMEM_DECAY_MS=100", "HAKMEM_DECAY_MS=100 HAKMEM_BACKGROUND=1"}) {
    int status = 0;
    std::string line = test_support::run_self(std::string(env) + " HAKMEM_TEST_PROBE=1", "Background.ProbeThreads",
                                              "probe: ", &status);
    EXPECT_EQ(status, 0);
    EXPECT_EQ(line, strstr(env, "BACKGROUND") != nullptr ? "threads=2\n" : "threads=1\n") << env;
  }
}

// ---- mallctl ----

TEST(Mallctl, FiguresFollowTheHeap) {
  uint64_t epoch = 1;
  size_t sz = sizeof epoch;
  ASSERT_EQ(hak_mallctl("epoch", &epoch, &sz, &epoch, sz), 0);
  size_t allocated = 0, active = 0, resident = 0, mapped = 0;
  sz = sizeof(size_t);
  ASSERT_EQ(hak_mallctl("stats.allocated", &allocated, &sz, nullptr, 0), 0);
  std::vector<void*> v;
  for (int i = 0; i < 1000; ++i) v.push_back(malloc(64 << 10));  // 64 MiB
  for (void* p : v) memset(p, 1, 64 << 10);
  ASSERT_EQ(hak_mallctl("epoch", &epoch, &sz, &epoch, sizeof epoch), 0);
  size_t now = 0;
  ASSERT_EQ(hak_mallctl("stats.allocated", &now, &sz, nullptr, 0), 0);
  ASSERT_EQ(hak_mallctl("stats.active", &active, &sz, nullptr, 0), 0);
  ASSERT_EQ(hak_mallctl("stats.resident", &resident, &sz, nullptr, 0), 0);
  ASSERT_EQ(hak_mallctl("stats.mapped", &mapped, &sz, nullptr, 0), 0);
  // (Blocks in thread caches count as in use until they leave them: most, not all, of the 64 MiB.)
  EXPECT_GE(now, allocated + (size_t{56} << 20)) << "stats.allocated did not see 64 MiB more";
  EXPECT_GE(active, now);
  EXPECT_GE(resident, size_t{64} << 20);
  EXPECT_GE(mapped, resident);
  unsigned narenas = 0;
  size_t usz = sizeof narenas;
  ASSERT_EQ(hak_mallctl("arenas.narenas", &narenas, &usz, nullptr, 0), 0);
  EXPECT_EQ(narenas, 1u);
  for (void* p : v) free(p);
}

// What redis does after FLUSHALL: arena.<narenas>.purge. The freed memory
// leaves the process at once, though the decay (10 s here) has not come.
TEST(Mallctl, PurgeGivesFreedMemoryBack) {
  if (getenv("HAKMEM_TEST_PROBE") == nullptr) {
    int status = 0;
    std::string line = test_support::run_self("HAKMEM_DECAY_MS=10000 HAKMEM_BACKGROUND=0 HAKMEM_TEST_PROBE=1",
                                              "Mallctl.PurgeGivesFreedMemoryBack", "probe: ", &status);
    EXPECT_EQ(status, 0);
    long loaded = 0, freed = 0, purged = 0;
    ASSERT_EQ(sscanf(line.c_str(), "loaded=%ld freed=%ld purged=%ld", &loaded, &freed, &purged), 3) << line;
    // The backend gives back some empty slabs' pages on its own when much
    // is dirty: about half of the load stayed in 4 of 5 runs, a little
    // less in the fifth (under ctest -j2 beside other tests).
    EXPECT_GT(freed, loaded / 3) << "freed memory went back before the purge: nothing to see";
    EXPECT_LT(purged, freed - 32 * 1024) << "purge gave back less than 32 MiB";
    return;
  }
  std::vector<void*> v;
  for (int i = 0; i < 400000; ++i) v.push_back(malloc(16 + (i * 31) % 600));  // about 120 MiB
  for (void* p : v) memset(p, 1, 16);
  const long loaded = rss_kib();
  for (void* p : v) free(p);
  std::vector<void*>().swap(v);
  const long freed = rss_kib();
  ASSERT_EQ(hak_mallctl("arena.4096.purge", nullptr, nullptr, nullptr, 0), 0);
  printf("probe: loaded=%ld freed=%ld purged=%ld\n", loaded, freed, rss_kib());
}

TEST(Mallctl, AnswersAsJemallocDoes) {
  size_t value = 0, sz = sizeof value;
  EXPECT_EQ(hak_mallctl("no.such.name", &value, &sz, nullptr, 0), ENOENT);
  EXPECT_EQ(hak_mallctl("opt.narenas", &value, &sz, nullptr, 0), ENOENT);
  EXPECT_EQ(hak_mallctl("arena.7.purge", nullptr, nullptr, nullptr, 0), ENOENT);
  EXPECT_EQ(hak_mallctl("arena.0.purge", nullptr, nullptr, nullptr, 0), 0);
  EXPECT_EQ(hak_mallctl("arena.1.decay", nullptr, nullptr, nullptr, 0), 0);
  EXPECT_EQ(hak_mallctl("thread.tcache.flush", nullptr, nullptr, nullptr, 0), 0);
  EXPECT_EQ(hak_mallctl("stats.allocated", &value, &sz, &value, sizeof value), EPERM) << "a read-only name written";
  uint32_t small = 0;
  size_t small_sz = sizeof small;
  EXPECT_EQ(hak_mallctl("stats.allocated", &small, &small_sz, nullptr, 0), EINVAL) << "a value of the wrong size";
  EXPECT_EQ(small_sz, sizeof small);
  size_t pages = 0;
  EXPECT_EQ(hak_mallctl("stats.arenas.4096.pdirty", &pages, &sz, nullptr, 0), 0);
  bool on = false;
  size_t bsz = sizeof on;
  EXPECT_EQ(hak_mallctl("background_thread", &on, &bsz, nullptr, 0), 0);
}

// A read with only one of oldp and oldlenp given copies nothing and touches
// neither, as jemalloc's does (its read needs both): no crash through the
// null one. (make mutate: a read that went on when one of them was null
// passed every test before this one.)
TEST(Mallctl, AReadWithoutItsBufferOrItsLengthCopiesNothing) {
  size_t sz = sizeof(size_t);
  EXPECT_EQ(hak_mallctl("stats.allocated", nullptr, &sz, nullptr, 0), 0);
  EXPECT_EQ(sz, sizeof(size_t)) << "the length was changed";
  size_t value = 12345;
  EXPECT_EQ(hak_mallctl("stats.allocated", &value, nullptr, nullptr, 0), 0);
  EXPECT_EQ(value, 12345u) << "a value was copied without a length";
  uint32_t small = 7;
  EXPECT_EQ(hak_mallctl("stats.mapped", &small, nullptr, nullptr, 0), 0);
  EXPECT_EQ(small, 7u);
}

// "background_thread" reads back what it was set to, as jemalloc's does:
// on once the thread runs (it starts at the next slow path), off once
// paused, and a write returns the old value. (make mutate: a reading that
// said "paused" for "running" passed every test before this one.)
TEST(Mallctl, BackgroundThreadReadsBackItsSetting) {
  const char* env = getenv("HAKMEM_BACKGROUND");
  if (env != nullptr && strcmp(env, "0") == 0) GTEST_SKIP() << "HAKMEM_BACKGROUND=0 overrides the program";
  bool on = true, was = false;
  size_t sz = sizeof was;
  ASSERT_EQ(hak_mallctl("background_thread", nullptr, nullptr, &on, sizeof on), 0);
  free(malloc(test_support::opaque_size(3 << 20)));  // a slow path: the thread starts
  EXPECT_EQ(hak_mallctl("background_thread", &was, &sz, nullptr, 0), 0);
  EXPECT_TRUE(was) << "asked for and started, but read as off";
  on = false;
  EXPECT_EQ(hak_mallctl("background_thread", &was, &sz, &on, sizeof on), 0);
  EXPECT_TRUE(was) << "a write returns the old value";
  EXPECT_EQ(hak_mallctl("background_thread", &was, &sz, nullptr, 0), 0);
  EXPECT_FALSE(was) << "paused, but read as on";
}

// Programs linked to jemalloc call `mallctl`; under LD_PRELOAD the drop-in
// library's answers them.
extern "C" int mallctl(const char*, void*, size_t*, void*, size_t) __attribute__((weak));
TEST(Mallctl, TheDropInLibraryExportsIt) {
  ASSERT_NE(&mallctl, nullptr);
  unsigned narenas = 0;
  size_t sz = sizeof narenas;
  EXPECT_EQ(mallctl("arenas.narenas", &narenas, &sz, nullptr, 0), 0);
  EXPECT_EQ(narenas, 1u);
}

}  // namespace
