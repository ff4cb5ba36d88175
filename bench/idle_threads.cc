// Memory that follows the program once its threads go quiet: `threads`
// threads each take and free waves of blocks of 12 classes (16 B to 32 KiB,
// every byte written), then sleep without another call to the allocator.
// The process's RSS is printed after the waves and after each second idle
// (bench/idle-threads runs it under every allocator). Nothing stays live:
// whatever is resident past the program's own few MiB is the allocator's.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <atomic>
#include <thread>
#include <vector>

namespace {

long rss_kib() {
  FILE* f = fopen("/proc/self/statm", "r");
  long pages = 0, resident = 0;
  if (f == nullptr || fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = -1;
  if (f != nullptr) fclose(f);
  return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

long option(int argc, char** argv, const char* name, long fallback) {
  const size_t n = strlen(name);
  for (int i = 1; i < argc; ++i)
    if (strncmp(argv[i], name, n) == 0 && argv[i][n] == '=') return atol(argv[i] + n + 1);
  return fallback;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1 && strcmp(argv[1], "--help") == 0) {
    puts("usage: idle-threads [--threads=64] [--waves=4] [--blocks=200] [--idle=4]");
    return 0;
  }
  const long threads = option(argc, argv, "--threads", 64), waves = option(argc, argv, "--waves", 4),
             blocks = option(argc, argv, "--blocks", 200), idle = option(argc, argv, "--idle", 4);
  static const size_t kSizes[] = {16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768};
  const long start = rss_kib();
  std::atomic<long> done{0};
  std::atomic<bool> quit{false};
  std::vector<std::thread> pool;
  for (long t = 0; t < threads; ++t)
    pool.emplace_back([&] {
      std::vector<void*> held(static_cast<size_t>(blocks));
      for (long w = 0; w < waves; ++w)
        for (size_t size : kSizes) {
          for (void*& p : held) {
            p = malloc(size);
            memset(p, 1, size);
          }
          for (void* p : held) free(p);
        }
      done.fetch_add(1);
      while (!quit.load()) usleep(20000);  // idle: no allocator call until the end
    });
  while (done.load() < threads) usleep(1000);
  printf("idle-threads threads=%ld start_kib=%ld after_waves_kib=%ld", threads, start, rss_kib());
  for (long s = 1; s <= idle; ++s) {
    sleep(1);
    printf(" idle_%lds_kib=%ld", s, rss_kib());
  }
  printf("\n");
  quit.store(true);
  for (auto& t : pool) t.join();
  return 0;
}
