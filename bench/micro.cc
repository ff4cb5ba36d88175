// Google Benchmark microbenchmarks of the allocator API. Plain malloc/free
// and friends, not linked against hakmem: preload the allocator to measure
// (bench/run does, for each one).
#include <benchmark/benchmark.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>

#include <atomic>
#include <thread>
#include <vector>

namespace {

inline void escape(void* p) { asm volatile("" : : "g"(p) : "memory"); }

// One malloc+free pair per iteration at one size (one size class each).
void BM_MallocFree(benchmark::State& state) {
  const size_t size = static_cast<size_t>(state.range(0));
  for (auto _ : state) {
    void* p = malloc(size);
    escape(p);
    free(p);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_MallocFree)->RangeMultiplier(2)->Range(8, 1 << 20);

// Allocate `count` blocks, then free them all (in allocation order).
void BM_AllocManyThenFree(benchmark::State& state) {
  const size_t size = static_cast<size_t>(state.range(0));
  const size_t count = static_cast<size_t>(state.range(1));
  std::vector<void*> blocks(count);
  for (auto _ : state) {
    for (size_t i = 0; i < count; ++i) {
      blocks[i] = malloc(size);
      escape(blocks[i]);
    }
    for (size_t i = 0; i < count; ++i) free(blocks[i]);
  }
  state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(count));
}
BENCHMARK(BM_AllocManyThenFree)->Args({16, 1000})->Args({64, 10000})->Args({256, 1000})->Args({4096, 1000})
    ->Args({32768, 256});

// Grow one block from 16 bytes to `max` by `step` bytes per realloc (step 0:
// doubling), then free it. Items are realloc calls.
void BM_ReallocGrowth(benchmark::State& state) {
  const size_t max = static_cast<size_t>(state.range(0));
  const size_t step = static_cast<size_t>(state.range(1));
  int64_t calls = 0;
  for (auto _ : state) {
    char* p = static_cast<char*>(malloc(16));
    for (size_t n = 16; n < max;) {
      n = step ? n + step : n * 2;
      p = static_cast<char*>(realloc(p, n));
      p[n - 1] = 1;
      ++calls;
    }
    escape(p);
    free(p);
  }
  state.SetItemsProcessed(calls);
}
BENCHMARK(BM_ReallocGrowth)->Args({4096, 16})->Args({64 << 10, 256})->Args({1 << 20, 0})->Args({16 << 20, 0});

// calloc+free: small blocks must be cleared by the allocator; large ones can
// come zeroed from the OS.
void BM_Calloc(benchmark::State& state) {
  const size_t size = static_cast<size_t>(state.range(0));
  for (auto _ : state) {
    void* p = calloc(1, size);
    escape(p);
    free(p);
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(size));
}
BENCHMARK(BM_Calloc)->Arg(64)->Arg(4096)->Arg(32768)->Arg(1 << 20);

// posix_memalign+free and aligned_alloc+free at (alignment, size).
void BM_PosixMemalign(benchmark::State& state) {
  const size_t align = static_cast<size_t>(state.range(0));
  const size_t size = static_cast<size_t>(state.range(1));
  for (auto _ : state) {
    void* p = nullptr;
    if (posix_memalign(&p, align, size) != 0) state.SkipWithError("posix_memalign failed");
    escape(p);
    free(p);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_PosixMemalign)->Args({64, 64})->Args({64, 1000})->Args({4096, 4096})->Args({4096, 100000});

void BM_AlignedAlloc(benchmark::State& state) {
  const size_t align = static_cast<size_t>(state.range(0));
  const size_t size = static_cast<size_t>(state.range(1));
  for (auto _ : state) {
    void* p = aligned_alloc(align, size);
    escape(p);
    free(p);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_AlignedAlloc)->Args({32, 256})->Args({256, 256})->Args({4096, 8192});

// Producer/consumer: this thread mallocs blocks and hands them to a consumer
// thread through a fixed ring; the consumer frees them. Items are blocks that
// crossed.
struct Ring {
  static constexpr size_t kCap = 1 << 12;
  alignas(64) std::atomic<size_t> head{0};
  alignas(64) std::atomic<size_t> tail{0};
  alignas(64) std::atomic<bool> stop{false};
  void* items[kCap];
};

void BM_ProducerConsumer(benchmark::State& state) {
  const size_t size = static_cast<size_t>(state.range(0));
  auto* ring = new Ring;
  std::thread consumer([ring] {
    size_t h = 0;
    for (;;) {
      size_t t = ring->tail.load(std::memory_order_acquire);
      if (t == h) {
        if (ring->stop.load(std::memory_order_acquire) && ring->tail.load(std::memory_order_acquire) == h) break;
        std::this_thread::yield();
        continue;
      }
      for (; h != t; ++h) free(ring->items[h & (Ring::kCap - 1)]);
      ring->head.store(h, std::memory_order_release);
    }
  });
  size_t t = 0;
  for (auto _ : state) {
    while (t - ring->head.load(std::memory_order_acquire) >= Ring::kCap) std::this_thread::yield();
    void* p = malloc(size);
    *static_cast<char*>(p) = 1;
    ring->items[t & (Ring::kCap - 1)] = p;
    ++t;
    if ((t & 31) == 0) ring->tail.store(t, std::memory_order_release);  // publish in batches of 32
  }
  ring->tail.store(t, std::memory_order_release);
  ring->stop.store(true, std::memory_order_release);
  consumer.join();
  delete ring;
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_ProducerConsumer)->Arg(64)->Arg(1024)->Arg(16384)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
