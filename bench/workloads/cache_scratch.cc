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

void worker(const bench::Launcher& launch, void* handed, bench::Counter* c) {
  if (handed != nullptr) free(handed);
  uint64_t n = 0;
  while (launch.running()) {
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
  bench::Launcher launch(NAME, args, 2);
  g_size = args.size("size", 8);
  g_writes = args.size("writes", 100);
  args.done();
  std::vector<void*> handed(launch.threads(), nullptr);
#ifdef SCRATCH
  for (void*& block : handed) block = malloc(g_size);
#endif
  launch.run([&](int t, bench::Counter* c) { worker(launch, handed[t], c); });
  launch.report();
  return 0;
}
