// mstress-style: mixed sizes over many short-lived threads.
//
// Each round starts `threads` threads; each does `round-ops` operations on
// its own set of `slots` blocks and a shared transfer array, then frees its
// own set and exits, while the transfer array carries blocks on to the next
// round. An operation, chosen at random, either replaces a block of its own
// set (50%), swaps one of its blocks with a random transfer slot (25%; the
// block it gets back was usually allocated by another thread, and will be
// freed by this one), or frees one (25%). Sizes: 89% 8-256 B, 10%
// 256 B-8 KiB, 1% 8 KiB-1 MiB, log-uniform within each range. Each block is
// written at the start of every page and at its end.
//
// ops = operations (each one a malloc, a free, or a transfer).
#include "../common.h"

static const char kUsage[] =
    "usage: mstress [--threads=4] [--duration=1] [--slots=500] [--transfer=1000] [--round-ops=20000] [--seed=1]\n";

namespace {

size_t g_slots, g_round_ops;
std::vector<std::atomic<void*>>* g_transfer;

size_t pick_size(bench::Rng& rng) {
  uint64_t r = rng.below(100);
  if (r < 89) return rng.log_range(8, 256);
  if (r < 99) return rng.log_range(256, 8 << 10);
  return rng.log_range(8 << 10, 1 << 20);
}

void* alloc_block(bench::Rng& rng) {
  size_t sz = pick_size(rng);
  void* p = malloc(sz);
  bench::touch(p, sz);
  return p;
}

void worker(const bench::Launcher& launch, uint64_t seed, bench::Counter* c) {
  bench::Rng rng(seed);
  std::vector<void*> mine(g_slots, nullptr);
  std::vector<std::atomic<void*>>& transfer = *g_transfer;
  uint64_t n = 0;
  for (; n < g_round_ops; ++n) {
    if ((n & 255) == 0 && !launch.running()) break;
    size_t i = rng.below(g_slots);
    uint64_t what = rng.below(4);
    if (what < 2) {
      free(mine[i]);
      mine[i] = alloc_block(rng);
    } else if (what == 2) {
      if (mine[i] == nullptr) mine[i] = alloc_block(rng);
      size_t j = rng.below(transfer.size());
      mine[i] = transfer[j].exchange(mine[i], std::memory_order_acq_rel);
    } else {
      free(mine[i]);
      mine[i] = nullptr;
    }
  }
  for (void* p : mine) free(p);
  c->ops += n;
}

}  // namespace

int main(int argc, char** argv) {
  bench::Args args(argc, argv, kUsage);
  bench::Launcher launch("mstress", args, 4);
  g_slots = args.size("slots", 500);
  size_t ntransfer = args.size("transfer", 1000);
  g_round_ops = args.size("round-ops", 20000);
  uint64_t seed = args.integer("seed", 1);
  args.done();
  if (g_slots == 0 || ntransfer == 0) {
    fputs(kUsage, stderr);
    return 2;
  }
  std::vector<std::atomic<void*>> transfer(ntransfer);
  for (auto& t : transfer) t.store(nullptr);
  g_transfer = &transfer;
  const uint64_t rounds = launch.run_rounds(
      [&](uint64_t round, int t, bench::Counter* c) { worker(launch, seed + round * 7919 + t, c); });
  for (auto& t : transfer) free(t.load());
  char more[40];
  snprintf(more, sizeof more, "rounds=%llu", static_cast<unsigned long long>(rounds));
  launch.report(more);
  return 0;
}
