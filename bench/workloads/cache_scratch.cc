// cache-scratch and cache-thrash: false sharing caused by the allocator.
//
// Each thread repeatedly mallocs a small object, writes every byte of it
// `writes` times, and frees it. In the thrash variant (active false sharing)
// that is all: an allocator that hands neighbouring bytes to different
// threads makes their writes fight over one cache line. In the scratch
// variant (passive false sharing) the main thread first allocates one
// object per thread, side by side, and each thread starts by freeing its
// object: an allocator that lets the freeing thread reuse that memory puts
// the threads on shared lines again.
//
// Built twice: -DSCRATCH=1 gives cache-scratch, otherwise cache-thrash.
// ops = malloc+write+free rounds.
#include "../common.h"

#ifdef SCRATCH
#define NAME "cache-scratch"
#else
#define NAME "cache-thrash"
#endif

static const char kUsage[] = "usage: " NAME " [--threads=2] [--duration=1] [--size=8] [--writes=100]\n";

namespace {

size_t g_size, g_writes;
bench::Timer g_timer;

void worker(void* handed, bench::Counter* c) {
  if (handed != nullptr) free(handed);
  uint64_t n = 0;
  while (g_timer.running()) {
    for (int r = 0; r < 16; ++r) {
      volatile char* p = static_cast<volatile char*>(malloc(g_size));
      for (size_t w = 0; w < g_writes; ++w)
        for (size_t b = 0; b < g_size; ++b) p[b] = static_cast<char>(p[b] + 1);
      free(const_cast<char*>(p));
    }
    n += 16;
  }
  c->ops = n;
}

}  // namespace

int main(int argc, char** argv) {
  bench::Args args(argc, argv, kUsage);
  int threads = static_cast<int>(args.integer("threads", 2));
  double duration = args.real("duration", 1.0);
  g_size = args.size("size", 8);
  g_writes = args.size("writes", 100);
  args.done();
  std::vector<void*> handed(threads, nullptr);
#ifdef SCRATCH
  for (int t = 0; t < threads; ++t) handed[t] = malloc(g_size);
#endif
  std::vector<bench::Counter> counts(threads);
  g_timer.start();
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t) ts.emplace_back(worker, handed[t], &counts[t]);
  g_timer.sleep_then_stop(duration);
  for (auto& t : ts) t.join();
  double secs = g_timer.elapsed(), cpu = g_timer.cpu_elapsed();
  double ops = 0;
  for (auto& c : counts) ops += static_cast<double>(c.ops);
  char extra[32];
  snprintf(extra, sizeof extra, "threads=%d", threads);
  bench::report(NAME, ops, secs, cpu, extra);
  return 0;
}
