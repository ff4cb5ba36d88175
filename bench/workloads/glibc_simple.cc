// glibc-simple-style: allocate a run of blocks of one size, then free them
// all in the order they were allocated; the run length and the size rotate
// over {25, 100, 400, 1600} blocks x {16, 64, 256, 1024, 4096} bytes.
// --size and --count pin one of the two (0: rotate). Single thread unless
// --threads says otherwise (each thread independent).
//
// ops = malloc+free pairs.
#include "../common.h"

static const char kUsage[] = "usage: glibc-simple [--threads=1] [--duration=1] [--size=0] [--count=0]\n";

namespace {

size_t g_size, g_count;

void worker(const bench::Launcher& launch, bench::Counter* c) {
  static const size_t kCounts[] = {25, 100, 400, 1600};
  static const size_t kSizes[] = {16, 64, 256, 1024, 4096};
  void* blocks[1600];
  uint64_t ops = 0;
  for (unsigned round = 0; launch.running(); ++round) {
    size_t n = g_count ? g_count : kCounts[round % 4];
    size_t sz = g_size ? g_size : kSizes[(round / 4) % 5];
    for (int rep = 0; rep < 8; ++rep) {
      for (size_t i = 0; i < n; ++i) {
        blocks[i] = malloc(sz);
        bench::escape(blocks[i]);
      }
      for (size_t i = 0; i < n; ++i) free(blocks[i]);
      ops += n;
    }
  }
  c->ops = ops;
}

}  // namespace

int main(int argc, char** argv) {
  bench::Args args(argc, argv, kUsage);
  bench::Launcher launch("glibc-simple", args, 1);
  g_size = args.size("size", 0);
  g_count = args.size("count", 0);
  args.done();
  if (g_count > 1600) {
    fputs("glibc-simple: --count is at most 1600\n", stderr);
    return 2;
  }
  launch.run([&](int, bench::Counter* c) { worker(launch, c); });
  launch.report();
  return 0;
}
