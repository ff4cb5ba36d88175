// Single-thread churn over a fixed number of live slots: each operation
// frees a random slot and mallocs a block of random size into it. Built
// four times with different defaults (the seeds' workloads):
//
//   tiny-mixed   16 B-1 KiB, uniform, 256 slots, first byte written
//   mid-churn    8-32 KiB, uniform, 256 slots, every page written
//   large-churn  64 KiB-4 MiB, log-uniform, 32 slots, every page written
//   huge-loop    5-25 MB, uniform, 1 slot (allocate, write, free), every page
//
// ops = malloc+free pairs.
#include "../common.h"

#if defined(TINY_MIXED)
#define NAME "tiny-mixed"
#define D_MIN 16
#define D_MAX 1024
#define D_SLOTS 256
#define D_LOG 0
#define D_TOUCH 0
#elif defined(MID_CHURN)
#define NAME "mid-churn"
#define D_MIN (8 << 10)
#define D_MAX (32 << 10)
#define D_SLOTS 256
#define D_LOG 0
#define D_TOUCH 1
#elif defined(LARGE_CHURN)
#define NAME "large-churn"
#define D_MIN (64 << 10)
#define D_MAX (4 << 20)
#define D_SLOTS 32
#define D_LOG 1
#define D_TOUCH 1
#elif defined(HUGE_LOOP)
#define NAME "huge-loop"
#define D_MIN (5000000)
#define D_MAX (25000000)
#define D_SLOTS 1
#define D_LOG 0
#define D_TOUCH 1
#else
#error "define TINY_MIXED, MID_CHURN, LARGE_CHURN or HUGE_LOOP"
#endif

#define STR2(x) #x
#define STR(x) STR2(x)

static const char kUsage[] = "usage: " NAME " [--duration=1] [--min=" STR(D_MIN) "] [--max=" STR(
    D_MAX) "] [--slots=" STR(D_SLOTS) "] [--log=" STR(D_LOG) "] [--touch=" STR(D_TOUCH) "] [--seed=1]\n"
           "  --log=1: log-uniform sizes; --touch=1: write every page, 0: the first byte only\n";

int main(int argc, char** argv) {
  bench::Args args(argc, argv, kUsage);
  double duration = args.real("duration", 1.0);
  size_t lo = args.size("min", D_MIN);
  size_t hi = args.size("max", D_MAX);
  size_t nslots = args.size("slots", D_SLOTS);
  bool log_sizes = args.integer("log", D_LOG) != 0;
  bool touch_all = args.integer("touch", D_TOUCH) != 0;
  uint64_t seed = args.integer("seed", 1);
  args.done();
  if (nslots == 0 || lo == 0 || hi < lo) {
    fputs(kUsage, stderr);
    return 2;
  }
  bench::Rng rng(seed);
  auto pick = [&] { return log_sizes ? rng.log_range(lo, hi) : rng.range(lo, hi); };
  std::vector<void*> slots(nslots, nullptr);
  // Checking the clock costs little next to the large blocks' page writes;
  // the small ones check it every 1024 operations.
  const uint64_t check = hi >= (64 << 10) ? 1 : 1024;
  double t0 = bench::now_sec(), end = t0 + duration, t1 = t0, cpu0 = bench::cpu_sec();
  uint64_t ops = 0;
  for (;;) {
    if (ops % check == 0 && (t1 = bench::now_sec()) >= end) break;
    size_t i = nslots == 1 ? 0 : rng.below(nslots);
    free(slots[i]);
    size_t sz = pick();
    char* p = static_cast<char*>(malloc(sz));
    if (touch_all)
      bench::touch(p, sz);
    else
      p[0] = static_cast<char>(ops);
    slots[i] = p;
    ++ops;
  }
  double cpu1 = bench::cpu_sec();
  for (void* p : slots) free(p);
  bench::report(NAME, static_cast<double>(ops), t1 - t0, cpu1 - cpu0);
  return 0;
}
