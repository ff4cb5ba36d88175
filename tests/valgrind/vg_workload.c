/* Runs under Valgrind memcheck in the valgrind build: a mixed workload on
 * hakmem's prefixed API (every size range, calloc, realloc, aligned, two
 * threads with cross-thread frees). hakmem describes each block with client
 * requests, so memcheck checks the program's use of them; it must report
 * nothing. With the argument "leak" it leaks one block on purpose, and with
 * "use-after-free" it reads a freed block: memcheck must report each. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "hakmem.h"

enum { kSlots = 512 };
static void* volatile g_sink;
static void* g_handoff[kSlots];
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;

static size_t size_for(unsigned i) {
  static const size_t sizes[] = {1, 8, 24, 100, 1000, 1024, 3000, 20000, 131072, 200000, 3u << 20};
  return sizes[i % (sizeof sizes / sizeof sizes[0])] + i % 7;
}

static void* consumer(void* arg) {
  (void)arg;
  for (unsigned i = 0; i < kSlots; ++i) {
    pthread_mutex_lock(&g_lock);
    void* p = g_handoff[i];
    g_handoff[i] = NULL;
    pthread_mutex_unlock(&g_lock);
    hak_free(p); /* freed by another thread than the one that allocated it */
  }
  return NULL;
}

int main(int argc, char** argv) {
  unsigned long sum = 0;
  for (unsigned round = 0; round < 4; ++round) {
    void* live[kSlots];
    for (unsigned i = 0; i < kSlots; ++i) {
      size_t n = size_for(i + round);
      unsigned char* p = (i % 5 == 0) ? hak_calloc(1, n) : hak_malloc(n);
      if (i % 5 == 0) sum += p[n - 1]; /* calloc memory is defined (zero) */
      memset(p, (int)i, n);
      live[i] = p;
    }
    for (unsigned i = 0; i < kSlots; i += 2) {
      live[i] = hak_realloc(live[i], size_for(i + 3));
      sum += ((unsigned char*)live[i])[0];
    }
    for (unsigned i = 0; i < kSlots; ++i) hak_free(live[i]);
  }
  void* aligned = hak_aligned_alloc(4096, 5000);
  memset(aligned, 1, 5000);
  hak_free(aligned);

  for (unsigned i = 0; i < kSlots; ++i) g_handoff[i] = hak_malloc(size_for(i));
  pthread_t t;
  pthread_create(&t, NULL, consumer, NULL);
  pthread_join(t, NULL);

  if (argc > 1 && strcmp(argv[1], "leak") == 0) {
    g_sink = hak_malloc(123);
    g_sink = NULL;
  }
  if (argc > 1 && strcmp(argv[1], "use-after-free") == 0) {
    unsigned char* p = hak_malloc(64);
    hak_free(p);
    sum += p[20];
  }
  printf("done %lu\n", sum & 1);
  return 0;
}
