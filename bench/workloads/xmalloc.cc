// xmalloc-style producer/consumer: threads form a ring; thread i allocates
// blocks and passes them to thread i+1, which frees them. So every block is
// freed by another thread than the one that allocated it (with --threads=1
// the thread frees its own). Each thread alternates between producing a
// batch into its outgoing queue and freeing what its incoming queue holds.
//
// ops = blocks allocated by one thread and freed by the next.
#include "../common.h"

static const char kUsage[] =
    "usage: xmalloc [--threads=2] [--duration=1] [--min=8] [--max=256] [--batch=64] [--seed=1]\n";

namespace {

// Single-producer single-consumer queue of pointers, fixed size, no
// allocation after construction.
struct alignas(128) Queue {
  static constexpr size_t kCap = 1 << 14;
  alignas(128) std::atomic<size_t> head{0};  // consumer's index
  alignas(128) std::atomic<size_t> tail{0};  // producer's index
  alignas(128) void* items[kCap];
};

size_t g_min, g_max, g_batch;

void worker(const bench::Launcher& launch, int id, Queue* queues, bench::Counter* freed, uint64_t seed) {
  const int n = launch.threads();
  Queue& out = queues[(id + 1) % n];
  Queue& in = queues[id];
  bench::Rng rng(seed + id);
  uint64_t count = 0;
  size_t batch = g_batch;
  while (launch.running()) {
    bool idle = true;
    // Produce a batch if the next thread's queue has room.
    size_t t = out.tail.load(std::memory_order_relaxed);
    size_t h = out.head.load(std::memory_order_acquire);
    if (Queue::kCap - (t - h) >= batch) {
      for (size_t k = 0; k < batch; ++k) {
        size_t sz = rng.range(g_min, g_max);
        char* p = static_cast<char*>(malloc(sz));
        p[0] = 1;
        out.items[(t + k) & (Queue::kCap - 1)] = p;
      }
      out.tail.store(t + batch, std::memory_order_release);
      idle = false;
    }
    // Free what the previous thread sent.
    size_t ih = in.head.load(std::memory_order_relaxed);
    size_t it = in.tail.load(std::memory_order_acquire);
    if (it != ih) {
      for (size_t k = ih; k != it; ++k) free(in.items[k & (Queue::kCap - 1)]);
      count += it - ih;
      in.head.store(it, std::memory_order_release);
      idle = false;
    }
    if (idle) std::this_thread::yield();
  }
  freed->ops = count;
}

}  // namespace

int main(int argc, char** argv) {
  bench::Args args(argc, argv, kUsage);
  bench::Launcher launch("xmalloc", args, 2);
  const int threads = launch.threads();
  g_min = args.size("min", 8);
  g_max = args.size("max", 256);
  g_batch = args.size("batch", 64);
  uint64_t seed = args.integer("seed", 1);
  args.done();
  if (threads < 1 || g_batch < 1 || g_batch > Queue::kCap) {
    fputs(kUsage, stderr);
    return 2;
  }
  Queue* queues = new Queue[threads];
  launch.run([&](int t, bench::Counter* freed) { worker(launch, t, queues, freed, seed); });
  for (int q = 0; q < threads; ++q)  // blocks still in flight
    for (size_t k = queues[q].head.load(); k != queues[q].tail.load(); ++k) free(queues[q].items[k & (Queue::kCap - 1)]);
  delete[] queues;
  launch.report();
  return 0;
}
