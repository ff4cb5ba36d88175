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

bench::Timer g_timer;
size_t g_size, g_count;

void worker(bench::Counter* c) {
  static const size_t kCounts[] = {25, 100, 400, 1600};
  static const size_t kSizes[] = {16, 64, 256, 1024, 4096};
  void* blocks[1600];
  uint64_t ops = 0;
  for (unsigned round = 0; g_timer.running(); ++round) {
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
  int threads = static_cast<int>(args.integer("threads", 1));
  double duration = args.real("duration", 1.0);
  g_size = args.size("size", 0);
  g_count = args.size("count", 0);
  args.done();
  if (g_count > 1600) {
    fputs("glibc-simple: --count is at most 1600\n", stderr);
    return 2;
  }
  std::vector<bench::Counter> counts(threads);
  g_timer.start();
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t) ts.emplace_back(worker, &counts[t]);
  g_timer.sleep_then_stop(duration);
  for (auto& t : ts) t.join();
  double secs = g_timer.elapsed(), cpu = g_timer.cpu_elapsed();
  double ops = 0;
  for (auto& c : counts) ops += static_cast<double>(c.ops);
  char extra[32];
  snprintf(extra, sizeof extra, "threads=%d", threads);
  bench::report("glibc-simple", ops, secs, cpu, extra);
  return 0;
}
