/* A user's program linked against an installed hakmem (tests/install): its
 * malloc must be hakmem's, which hakmem's statistics show, and the header
 * must be the library's version. Exit 0 when both hold. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hakmem.h>

int main(void) {
  hak_stats s;
  unsigned long long allocs = 0;
  char* volatile p = malloc(100); /* volatile: the pair must happen */
  strcpy(p, "hakmem");
  free(p);
  hak_stats_get(&s);
  for (int c = 0; c < HAK_NUM_CLASSES; ++c) allocs += s.classes[c].allocs;
  printf("hakmem %s counted %llu allocations\n", HAKMEM_VERSION_STRING, allocs);
  return allocs == 0;
}
