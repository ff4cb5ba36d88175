// glibc's own calls beyond the C standard's, answered from hakmem's
// figures: malloc_trim, malloc_stats, mallopt, malloc_info, mallinfo2 and
// mallinfo. Only the drop-in library defines them.
#include <errno.h>
#include <malloc.h>
#include <stdio.h>

#include "front/front.h"

#ifdef HAKMEM_OVERRIDE
extern "C" {

__attribute__((visibility("default"))) int malloc_trim(size_t) {
  hak_trim();
  return 1;
}
__attribute__((visibility("default"))) void malloc_stats(void) { hak_stats_print(stderr); }
__attribute__((visibility("default"))) int mallopt(int, int) { return 1; }  // accepted, no tunables

__attribute__((visibility("default"))) int malloc_info(int options, FILE* fp) {
  if (options != 0 || fp == nullptr) {
    errno = EINVAL;
    return -1;
  }
  hak_stats s;
  hak_stats_get(&s);
  fprintf(fp, "<malloc version=\"hakmem-1\">\n<heap nr=\"0\">\n<sizes>\n");
  for (int c = 0; c < HAK_NUM_CLASSES; ++c) {
    const hak_class_stats& k = s.classes[c];
    if (k.allocs == 0) continue;
    fprintf(fp, "<size from=\"%llu\" to=\"%llu\" total=\"%llu\" count=\"%llu\"/>\n",
            static_cast<unsigned long long>(c == 0 ? 0 : s.classes[c - 1].block_size + 1),
            static_cast<unsigned long long>(k.block_size),
            static_cast<unsigned long long>((k.allocs - (k.frees < k.allocs ? k.frees : k.allocs)) * k.block_size),
            static_cast<unsigned long long>(k.allocs - (k.frees < k.allocs ? k.frees : k.allocs)));
  }
  fprintf(fp, "</sizes>\n<total type=\"mmap\" count=\"%llu\" size=\"%llu\"/>\n",
          static_cast<unsigned long long>(s.segments), static_cast<unsigned long long>(s.bytes_mapped));
  fprintf(fp, "<system type=\"current\" size=\"%llu\"/>\n<aspace type=\"total\" size=\"%llu\"/>\n",
          static_cast<unsigned long long>(s.bytes_mapped), static_cast<unsigned long long>(s.bytes_in_use));
  fprintf(fp, "</heap>\n</malloc>\n");
  return 0;
}

__attribute__((visibility("default"))) struct mallinfo2 mallinfo2(void) {
  hak_stats s;
  hak_stats_get(&s);
  struct mallinfo2 m = {};
  m.arena = s.bytes_mapped;
  m.hblks = s.huge_allocs - s.huge_frees;
  m.hblkhd = s.huge_live_bytes;
  m.uordblks = s.bytes_in_use;
  m.fordblks = s.bytes_mapped > s.bytes_in_use ? s.bytes_mapped - s.bytes_in_use : 0;
  m.keepcost = s.bytes_dirty;
  return m;
}

__attribute__((visibility("default"))) struct mallinfo mallinfo(void) {
  struct mallinfo2 m2 = mallinfo2();
  struct mallinfo m = {};
  m.arena = static_cast<int>(m2.arena);
  m.hblks = static_cast<int>(m2.hblks);
  m.hblkhd = static_cast<int>(m2.hblkhd);
  m.uordblks = static_cast<int>(m2.uordblks);
  m.fordblks = static_cast<int>(m2.fordblks);
  m.keepcost = static_cast<int>(m2.keepcost);
  return m;
}
}  // extern "C"
#endif  // HAKMEM_OVERRIDE

