// The hot path, single thread, steady state: `slots` live blocks of one size
// reused round robin (free slot i, malloc a new block of the same size into
// it). Plain malloc/free through the PLT, so whichever allocator is preloaded
// is the one measured.
//
// Under `valgrind --tool=callgrind --collect-atstart=no
// --toggle-collect=hotpath_measure` only the measured loop is counted
// (bench/callgrind does this); natively the program also times the loop.
//
//   hotpath --size=BYTES [--slots=64] [--iters=1000000] [--warmup=100000]
//
// bench/callgrind subtracts the loop's own instructions (the self cost of
// hotpath_measure, PLT jumps included) from the total, which leaves the
// instructions executed inside the allocator's malloc and free.
#include <dlfcn.h>
#include <valgrind/valgrind.h>

#include <string>

#include "common.h"

namespace {

template <void* (*Alloc)(size_t), void (*Free)(void*)>
inline __attribute__((always_inline)) void churn(void** slots, size_t nslots, size_t size, size_t iters) {
  size_t i = 0;
  for (size_t n = 0; n < iters; ++n) {
    Free(slots[i]);
    void* p = Alloc(size);
    *static_cast<volatile char*>(p) = static_cast<char>(n);  // the program uses its block
    slots[i] = p;
    if (++i == nslots) i = 0;
  }
}

}  // namespace

// The measured functions: callgrind's --toggle-collect names them.
extern "C" __attribute__((noinline)) void hotpath_measure(void** slots, size_t nslots, size_t size, size_t iters) {
  churn<malloc, free>(slots, nslots, size, iters);
}
// Warm-up runs the same loop outside the measured function.
extern "C" __attribute__((noinline)) void hotpath_warmup(void** slots, size_t nslots, size_t size, size_t iters) {
  churn<malloc, free>(slots, nslots, size, iters);
}

static const char kUsage[] =
    "usage: hotpath --size=BYTES [--slots=64] [--iters=1000000] [--warmup=100000]\n";

int main(int argc, char** argv) {
  bench::Args args(argc, argv, kUsage);
  size_t size = args.size("size", 16);
  size_t nslots = static_cast<size_t>(args.integer("slots", 64));
  size_t iters = static_cast<size_t>(args.integer("iters", 1000000));
  size_t warmup = static_cast<size_t>(args.integer("warmup", 100000));
  args.done();
  if (nslots == 0 || nslots > 4096) {
    fprintf(stderr, "hotpath: --slots must be 1..4096\n");
    return 2;
  }

  // Which library's malloc does this process call? The runner checks it.
  Dl_info info{};
  void* sym = dlsym(RTLD_DEFAULT, "malloc");
  const char* from = (sym != nullptr && dladdr(sym, &info) != 0 && info.dli_fname) ? info.dli_fname : "?";

  static void* slots[4096];
  for (size_t i = 0; i < nslots; ++i) {
    slots[i] = malloc(size);
    if (slots[i] == nullptr) return 1;
  }
  hotpath_warmup(slots, nslots, size, warmup);
  double t0 = bench::now_sec();
  hotpath_measure(slots, nslots, size, iters);
  double t1 = bench::now_sec();
  for (size_t i = 0; i < nslots; ++i) free(slots[i]);
  double ns = iters ? (t1 - t0) * 1e9 / static_cast<double>(iters) : 0;
  printf("hotpath size=%zu slots=%zu iters=%zu malloc_from=%s valgrind=%d ns_per_pair=%.2f ops_per_sec=%.0f\n",
         size, nslots, iters, from, static_cast<int>(RUNNING_ON_VALGRIND), ns,
         ns > 0 ? 1e9 / ns : 0.0);
  return 0;
}
