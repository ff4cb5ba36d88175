// rptest-style: mixed sizes, many threads, batches handed across threads.
//
// Each thread keeps a working set of `slots` blocks. One step allocates a
// batch of `batch` blocks (sizes log-uniform in [min, max]) into random
// positions of the working set, freeing what was there, then swaps its
// outgoing mailbox: a fraction (--cross, percent) of the step's blocks are
// posted to the next thread, which frees them on its next step. Blocks are
// written on every page and at their end.
//
// ops = malloc+free pairs.
#include <mutex>

#include "../common.h"

static const char kUsage[] =
    "usage: rptest [--threads=4] [--duration=1] [--min=16] [--max=16K] [--slots=2000] [--batch=64] [--cross=25] "
    "[--seed=1]\n";

namespace {

size_t g_min, g_max, g_slots, g_batch, g_cross;

// A thread's inbox: blocks sent to it by the previous thread. The vectors
// keep their capacity, so the steady state does not allocate.
struct alignas(128) Mailbox {
  std::mutex m;
  std::vector<void*> blocks;
};

void worker(const bench::Launcher& launch, int id, Mailbox* boxes, uint64_t seed, bench::Counter* c) {
  const int n = launch.threads();
  bench::Rng rng(seed);
  std::vector<void*> ws(g_slots, nullptr);
  std::vector<void*> outgoing, incoming;
  outgoing.reserve(4 * g_batch);
  incoming.reserve(64 * g_batch);
  Mailbox& next = boxes[(id + 1) % n];
  Mailbox& mine = boxes[id];
  uint64_t ops = 0;
  while (launch.running()) {
    for (size_t k = 0; k < g_batch; ++k) {
      size_t sz = rng.log_range(g_min, g_max);
      void* p = malloc(sz);
      bench::touch(p, sz);
      size_t i = rng.below(g_slots);
      if (rng.below(100) < g_cross) {
        outgoing.push_back(p);  // the next thread frees it
      } else {
        free(ws[i]);
        ws[i] = p;
      }
    }
    ops += g_batch;
    if (!outgoing.empty()) {
      std::lock_guard<std::mutex> g(next.m);
      if (next.blocks.size() < 16 * g_batch) {  // do not outrun a slow consumer
        next.blocks.insert(next.blocks.end(), outgoing.begin(), outgoing.end());
        outgoing.clear();
      }
    }
    {
      std::lock_guard<std::mutex> g(mine.m);
      incoming.swap(mine.blocks);
    }
    for (void* p : incoming) free(p);
    incoming.clear();
  }
  for (void* p : ws) free(p);
  for (void* p : outgoing) free(p);
  c->ops = ops;
}

}  // namespace

int main(int argc, char** argv) {
  bench::Args args(argc, argv, kUsage);
  bench::Launcher launch("rptest", args, 4);
  const int threads = launch.threads();
  g_min = args.size("min", 16);
  g_max = args.size("max", 16 << 10);
  g_slots = args.size("slots", 2000);
  g_batch = args.size("batch", 64);
  g_cross = args.size("cross", 25);
  uint64_t seed = args.integer("seed", 1);
  args.done();
  if (threads < 1 || g_slots == 0 || g_min == 0 || g_max < g_min) {
    fputs(kUsage, stderr);
    return 2;
  }
  Mailbox* boxes = new Mailbox[threads];
  for (int t = 0; t < threads; ++t) boxes[t].blocks.reserve(64 * g_batch);
  launch.run([&](int t, bench::Counter* c) { worker(launch, t, boxes, seed * 100 + t, c); });
  for (int t = 0; t < threads; ++t)
    for (void* p : boxes[t].blocks) free(p);
  delete[] boxes;
  launch.report();
  return 0;
}
