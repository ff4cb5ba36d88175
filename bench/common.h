// Shared helpers for hakmem's workload programs.
//
// Every workload is a plain program that calls malloc/free (never hakmem's
// prefixed API), so any allocator can be loaded with LD_PRELOAD. Each one
// takes its knobs as --name=value (or --name value) arguments, runs for a
// fixed time (--duration seconds) or a fixed amount of work, and prints one
// line that ends with `ops_per_sec=N`; the runner compares allocators by
// that figure, never by wall time.
#ifndef HAKMEM_BENCH_COMMON_H
#define HAKMEM_BENCH_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

namespace bench {

// ---------------------------------------------------------------- options

class Args {
 public:
  Args(int argc, char** argv, const char* usage) : usage_(usage) {
    for (int i = 1; i < argc; ++i) {
      std::string a = argv[i];
      if (a == "-h" || a == "--help") {
        fputs(usage, stdout);
        exit(0);
      }
      if (a.rfind("--", 0) != 0) bad(a.c_str());
      a = a.substr(2);
      size_t eq = a.find('=');
      if (eq != std::string::npos) {
        keys_.push_back(a.substr(0, eq));
        vals_.push_back(a.substr(eq + 1));
      } else if (i + 1 < argc && strncmp(argv[i + 1], "--", 2) != 0) {
        keys_.push_back(a);
        vals_.push_back(argv[++i]);
      } else {
        bad(argv[i]);
      }
      used_.push_back(false);
    }
  }
  // A size: plain bytes, or with a K/M/G suffix (powers of 1024).
  uint64_t size(const char* key, uint64_t dflt) {
    const char* v = find(key);
    if (v == nullptr) return dflt;
    char* end = nullptr;
    double x = strtod(v, &end);
    uint64_t mul = 1;
    if (end != nullptr && *end != 0) {
      switch (*end) {
        case 'k': case 'K': mul = 1ull << 10; break;
        case 'm': case 'M': mul = 1ull << 20; break;
        case 'g': case 'G': mul = 1ull << 30; break;
        case 'b': case 'B': break;
        default: bad(key);
      }
    }
    return static_cast<uint64_t>(x * static_cast<double>(mul));
  }
  long integer(const char* key, long dflt) {
    const char* v = find(key);
    return v == nullptr ? dflt : strtol(v, nullptr, 0);
  }
  double real(const char* key, double dflt) {
    const char* v = find(key);
    return v == nullptr ? dflt : strtod(v, nullptr);
  }
  // Call after reading every option: an unknown one is an error.
  void done() {
    for (size_t i = 0; i < keys_.size(); ++i)
      if (!used_[i]) bad(keys_[i].c_str());
  }

 private:
  const char* find(const char* key) {
    const char* v = nullptr;
    for (size_t i = 0; i < keys_.size(); ++i)
      if (keys_[i] == key) {
        used_[i] = true;
        v = vals_[i].c_str();
      }
    return v;
  }
  [[noreturn]] void bad(const char* what) {
    fprintf(stderr, "bad option '%s'\n%s", what, usage_);
    exit(2);
  }
  const char* usage_;
  std::vector<std::string> keys_, vals_;
  std::vector<bool> used_;
};

// ---------------------------------------------------------------- randomness

// xorshift128+-like generator: cheap, deterministic per seed, no allocation.
struct Rng {
  uint64_t s0, s1;
  explicit Rng(uint64_t seed) {
    s0 = splitmix(seed);
    s1 = splitmix(s0 ^ 0x9e3779b97f4a7c15ull);
    if ((s0 | s1) == 0) s1 = 1;
  }
  static uint64_t splitmix(uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
  }
  uint64_t next() {
    uint64_t x = s0, y = s1;
    s0 = y;
    x ^= x << 23;
    s1 = x ^ y ^ (x >> 17) ^ (y >> 26);
    return s1 + y;
  }
  // Uniform in [0, n) without division: multiply-high.
  uint64_t below(uint64_t n) { return static_cast<uint64_t>((static_cast<__uint128_t>(next()) * n) >> 64); }
  uint64_t range(uint64_t lo, uint64_t hi) { return lo + below(hi - lo + 1); }  // [lo, hi]
  // Log-uniform in [lo, hi]: as many blocks at each power of two, so small
  // sizes dominate by count, as in real programs.
  uint64_t log_range(uint64_t lo, uint64_t hi) {
    int a = 63 - __builtin_clzll(lo), b = 63 - __builtin_clzll(hi);
    int k = a + static_cast<int>(below(static_cast<uint64_t>(b - a + 1)));
    uint64_t base = 1ull << k;
    uint64_t v = base + below(base);
    return v < lo ? lo : (v > hi ? hi : v);
  }
};

// ---------------------------------------------------------------- helpers

// Keeps the compiler from removing an allocation it can see through.
inline void escape(void* p) { asm volatile("" : : "g"(p) : "memory"); }

// Writes one byte per page (and the first and last byte) so a block is
// really backed by memory, as a program that uses it would have it.
inline void touch(void* p, size_t n, size_t stride = 4096) {
  volatile char* c = static_cast<char*>(p);
  for (size_t i = 0; i < n; i += stride) c[i] = static_cast<char>(i);
  if (n > 0) c[n - 1] = 1;
}

inline double now_sec() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

// CPU time of the whole process (all threads, user + system).
inline double cpu_sec() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

// A fixed-duration run: workers poll `running()` between small batches of
// work; the main thread sleeps, then clears the flag.
class Timer {
 public:
  void start() {
    stop_.store(false, std::memory_order_relaxed);
    t0_ = now_sec();
    cpu0_ = cpu_sec();
  }
  bool running() const { return !stop_.load(std::memory_order_relaxed); }
  void sleep_then_stop(double secs) {
    std::this_thread::sleep_for(std::chrono::duration<double>(secs));
    stop_.store(true, std::memory_order_relaxed);
  }
  double elapsed() const { return now_sec() - t0_; }
  double cpu_elapsed() const { return cpu_sec() - cpu0_; }

 private:
  std::atomic<bool> stop_{false};
  double t0_ = 0, cpu0_ = 0;
};

// A per-thread counter on its own cache lines, so counting is not itself
// false sharing.
struct alignas(128) Counter {
  uint64_t ops = 0;
  char pad[120];
};

// The one figure line the runner reads: ops_per_sec (work per second of
// wall time, the figure allocators are compared by) and ops_per_cpu_sec
// (work per CPU second of the process, steadier on a shared machine, blind
// to time spent waiting). `extra` is free text (key=value ...).
inline void report(const char* name, double ops, double secs, double cpu_secs, const char* extra = "") {
  printf("workload=%s %s%sops=%.0f secs=%.3f cpu_secs=%.3f ops_per_cpu_sec=%.0f ops_per_sec=%.0f\n", name, extra,
         *extra ? " " : "", ops, secs, cpu_secs, cpu_secs > 0 ? ops / cpu_secs : 0.0, secs > 0 ? ops / secs : 0.0);
  fflush(stdout);
}

// The launch shared by the multi-threaded workloads: --threads and
// --duration, one counter per thread, the clock, and the figure line with
// `threads=N` first among the extras. A workload keeps only its own options,
// its set-up and clean-up, and the work each thread does.
class Launcher {
 public:
  Launcher(const char* name, Args& args, int default_threads)
      : name_(name),
        threads_(static_cast<int>(args.integer("threads", default_threads))),
        duration_(args.real("duration", 1.0)) {}

  int threads() const { return threads_; }
  // Workers poll it between small batches of work.
  bool running() const { return timer_.running(); }

  // One thread per --threads, each running work(thread_index, &its_counter)
  // until running() turns false; returns once they have all been joined.
  template <class Work>
  void run(Work work) {
    counts_ = std::vector<Counter>(threads_);
    timer_.start();
    std::vector<std::thread> workers;
    for (int t = 0; t < threads_; ++t) workers.emplace_back(work, t, &counts_[t]);
    timer_.sleep_then_stop(duration_);
    for (auto& w : workers) w.join();
    stop_clock();
  }

  // Rounds of --threads short-lived threads, started together and joined
  // together, each running work(round, thread_index, &its_counter); a
  // thread's counter carries over from round to round. The calling thread
  // drives the rounds, so the sleep that ends the run has a thread of its
  // own. Returns the number of rounds.
  template <class Work>
  uint64_t run_rounds(Work work) {
    counts_ = std::vector<Counter>(threads_);
    timer_.start();
    std::thread stopper([this] { timer_.sleep_then_stop(duration_); });
    uint64_t rounds = 0;
    while (timer_.running()) {
      std::vector<std::thread> workers;
      for (int t = 0; t < threads_; ++t) workers.emplace_back(work, rounds, t, &counts_[t]);
      for (auto& w : workers) w.join();
      ++rounds;
    }
    stopper.join();
    stop_clock();
    return rounds;
  }

  // ops is the sum of the threads' counters; `more` (key=value ...) follows
  // threads=N.
  void report(const char* more = "") const {
    double ops = 0;
    for (const Counter& c : counts_) ops += static_cast<double>(c.ops);
    char extra[160];
    snprintf(extra, sizeof extra, "threads=%d%s%s", threads_, *more ? " " : "", more);
    bench::report(name_, ops, secs_, cpu_secs_, extra);
  }

 private:
  void stop_clock() {
    secs_ = timer_.elapsed();
    cpu_secs_ = timer_.cpu_elapsed();
  }

  const char* name_;
  int threads_;
  double duration_;
  Timer timer_;
  std::vector<Counter> counts_;
  double secs_ = 0, cpu_secs_ = 0;
};

}  // namespace bench

#endif
