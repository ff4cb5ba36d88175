/* Linked against libhakmem.a with the C compiler alone
 * (tests/programs/CMakeLists.txt): malloc and free must be hakmem's, which
 * its statistics show. Exit 0 when they are. */
#include <stdio.h>
#include <stdlib.h>

#include <hakmem.h>

int main(void) {
  hak_stats s;
  unsigned long long allocs = 0;
  void* volatile p = malloc(100); /* volatile: the pair must happen */
  free(p);
  hak_stats_get(&s);
  for (int c = 0; c < HAK_NUM_CLASSES; ++c) allocs += s.classes[c].allocs;
  printf("hakmem counted %llu allocations\n", allocs);
  return allocs == 0;
}
