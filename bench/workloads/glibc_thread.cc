// glibc-thread-style: each thread keeps a working set of `slots` blocks and
// replaces a random one per operation. Sizes follow a 1/size distribution
// between --min and --max (small blocks most common), drawn from a table
// precomputed per thread, as are the slot indices, so the loop itself is
// malloc and free and little else.
//
// ops = malloc+free pairs.
#include <math.h>

#include "../common.h"

static const char kUsage[] =
    "usage: glibc-thread [--threads=2] [--duration=1] [--min=4] [--max=32K] [--slots=1024] [--seed=1]\n";

namespace {

constexpr size_t kTable = 8192;  // a power of two
size_t g_min, g_max, g_slots;

void worker(const bench::Launcher& launch, uint64_t seed, bench::Counter* c) {
  bench::Rng rng(seed);
  std::vector<uint32_t> sizes(kTable), index(kTable);
  // Inverse-CDF sampling of p(s) ~ 1/s on [min, max].
  double ratio = static_cast<double>(g_max) / static_cast<double>(g_min);
  for (size_t i = 0; i < kTable; ++i) {
    double u = static_cast<double>(rng.next() >> 11) * 0x1.0p-53;
    sizes[i] = static_cast<uint32_t>(static_cast<double>(g_min) * pow(ratio, u));
    index[i] = static_cast<uint32_t>(rng.below(g_slots));
  }
  std::vector<void*> ws(g_slots, nullptr);
  uint64_t ops = 0;
  size_t k = 0, j = 0;
  while (launch.running()) {
    for (int r = 0; r < 256; ++r) {
      size_t i = index[k++ & (kTable - 1)];
      free(ws[i]);
      char* p = static_cast<char*>(malloc(sizes[j++ & (kTable - 1)]));
      p[0] = 1;
      ws[i] = p;
      if ((k & (kTable - 1)) == 0) ++j;  // decorrelate the two tables
    }
    ops += 256;
  }
  for (void* p : ws) free(p);
  c->ops = ops;
}

}  // namespace

int main(int argc, char** argv) {
  bench::Args args(argc, argv, kUsage);
  bench::Launcher launch("glibc-thread", args, 2);
  g_min = args.size("min", 4);
  g_max = args.size("max", 32 << 10);
  g_slots = args.size("slots", 1024);
  uint64_t seed = args.integer("seed", 1);
  args.done();
  if (g_min == 0 || g_max < g_min || g_slots == 0) {
    fputs(kUsage, stderr);
    return 2;
  }
  launch.run([&](int t, bench::Counter* c) { worker(launch, seed * 100 + t, c); });
  launch.report();
  return 0;
}
