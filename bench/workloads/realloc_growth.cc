// realloc growth: `buffers` buffers grow side by side, round robin, each by
// a random 1..`step` bytes per realloc (a string being appended to) from 16
// bytes up to --max; a buffer that reaches --max is freed and starts again.
// The new tail is written after every realloc. Growing several buffers in
// turn keeps the allocator from always finding free room right behind one.
//
// ops = realloc calls.
#include "../common.h"

static const char kUsage[] =
    "usage: realloc-growth [--duration=1] [--buffers=16] [--step=64] [--max=128K] [--seed=1]\n";

int main(int argc, char** argv) {
  bench::Args args(argc, argv, kUsage);
  double duration = args.real("duration", 1.0);
  size_t nbuf = args.size("buffers", 16);
  size_t step = args.size("step", 64);
  size_t max = args.size("max", 128 << 10);
  uint64_t seed = args.integer("seed", 1);
  args.done();
  if (nbuf == 0 || step == 0 || max < 16) {
    fputs(kUsage, stderr);
    return 2;
  }
  bench::Rng rng(seed);
  std::vector<char*> buf(nbuf, nullptr);
  std::vector<size_t> len(nbuf, 0);
  // Start the buffers at staggered lengths so they do not restart together.
  for (size_t b = 0; b < nbuf; ++b) {
    len[b] = 16 + rng.below(max - 15);
    buf[b] = static_cast<char*>(malloc(len[b]));
    bench::touch(buf[b], len[b], 64);
  }
  double t0 = bench::now_sec(), end = t0 + duration, t1 = t0, cpu0 = bench::cpu_sec();
  uint64_t ops = 0;
  size_t b = 0;
  for (;;) {
    if ((ops & 1023) == 0 && (t1 = bench::now_sec()) >= end) break;
    size_t n = len[b] + rng.range(1, step);
    if (n > max) {
      free(buf[b]);
      n = 16;
      buf[b] = nullptr;
    }
    char* p = static_cast<char*>(realloc(buf[b], n));
    memset(p + (n > step ? n - step : 0), 'x', n > step ? step : n);  // the appended bytes
    buf[b] = p;
    len[b] = n;
    ++ops;
    if (++b == nbuf) b = 0;
  }
  double cpu1 = bench::cpu_sec();
  for (char* p : buf) free(p);
  bench::report("realloc-growth", static_cast<double>(ops), t1 - t0, cpu1 - cpu0);
  return 0;
}
