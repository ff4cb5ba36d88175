// larson-style server churn: each lane holds `slots` live blocks of random
// sizes and replaces a random one per operation (free the old block, malloc
// a new one). A lane's worker thread does `gen-ops` operations and exits; a
// new thread inherits the lane's blocks, so most frees hit blocks that
// another (often dead) thread allocated. Blocks of the first generation are
// allocated by the main thread.
//
// ops = malloc+free pairs.
#include "../common.h"

static const char kUsage[] =
    "usage: larson [--threads=2] [--duration=1] [--min=8] [--max=1000] [--slots=1000] [--gen-ops=50000] [--seed=1]\n";

namespace {

struct alignas(128) Lane {  // each lane is written by its own threads: no line shared between lanes
  void** slots;
  size_t n;
  bench::Rng rng{0};
  uint64_t generations = 0;
};

size_t g_min, g_max, g_gen_ops;

void generation(const bench::Launcher* launch, Lane* lane, bench::Counter* lane_ops) {
  bench::Rng rng = lane->rng;
  uint64_t ops = 0;
  for (size_t k = 0; k < g_gen_ops; ++k) {
    if ((k & 255) == 0 && !launch->running()) break;
    size_t i = rng.below(lane->n);
    free(lane->slots[i]);
    size_t sz = rng.range(g_min, g_max);
    char* p = static_cast<char*>(malloc(sz));
    p[0] = static_cast<char>(k);
    lane->slots[i] = p;
    ++ops;
  }
  lane->rng = rng;
  lane_ops->ops += ops;
}

}  // namespace

int main(int argc, char** argv) {
  bench::Args args(argc, argv, kUsage);
  bench::Launcher launch("larson", args, 2);
  g_min = args.size("min", 8);
  g_max = args.size("max", 1000);
  size_t slots = args.size("slots", 1000);
  g_gen_ops = args.size("gen-ops", 50000);
  uint64_t seed = args.integer("seed", 1);
  args.done();

  std::vector<Lane> lanes(launch.threads());
  for (int t = 0; t < launch.threads(); ++t) {
    Lane& l = lanes[t];
    l.n = slots;
    l.rng = bench::Rng(seed * 1000 + t);
    l.slots = static_cast<void**>(malloc(slots * sizeof(void*)));
    for (size_t i = 0; i < slots; ++i) l.slots[i] = malloc(l.rng.range(g_min, g_max));
  }
  // The thread launched per lane does none of the work: it hands the lane
  // to a new thread each generation, so most frees hit blocks of threads
  // that have exited.
  launch.run([&](int t, bench::Counter* lane_ops) {
    Lane* l = &lanes[t];
    while (launch.running()) {
      std::thread w(generation, &launch, l, lane_ops);
      w.join();
      ++l->generations;
    }
  });
  double gens = 0;
  for (auto& l : lanes) {
    gens += static_cast<double>(l.generations);
    for (size_t i = 0; i < l.n; ++i) free(l.slots[i]);
    free(l.slots);
  }
  char more[64];
  snprintf(more, sizeof more, "thread_generations=%.0f", gens);
  launch.report(more);
  return 0;
}
