// hakmem's start when the kernel refuses it address space: the metadata
// region is refused after the segment arena was granted. hakmem then runs
// without an arena (segments each mapped on their own), and gives the
// arena's reservation back rather than keeping it unused for the life of
// the process.
//
// This program defines mmap itself, which the libraries' calls reach before
// libc's (the executable's symbols come first). It passes every call on,
// except in a probe process started with HAKMEM_TEST_REFUSE_METADATA set.
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <string>

#include <gtest/gtest.h>

#include "hakmem.h"
#include "tests/support/run_self.h"

namespace {

// The first reservation (PROT_NONE, placed by the kernel) is the segment
// arena's; the second is the metadata region's, after its randomly placed
// attempts (MAP_FIXED_NOREPLACE), which are refused as well.
int g_reservations = 0;
size_t g_arena_length = 0;

bool refusing() {
  static const bool on = getenv("HAKMEM_TEST_REFUSE_METADATA") != nullptr;
  return on;
}

bool refused(size_t length, int prot, int flags) {
  if (!refusing() || prot != PROT_NONE || (flags & MAP_FIXED) != 0) return false;
  if ((flags & MAP_FIXED_NOREPLACE) != 0) return g_reservations == 1;
  ++g_reservations;
  if (g_reservations == 1) g_arena_length = length;
  return g_reservations == 2;
}

}  // namespace

extern "C" void* mmap(void* addr, size_t length, int prot, int flags, int fd, off_t offset) {
  if (refused(length, prot, flags)) {
    errno = ENOMEM;
    return MAP_FAILED;
  }
  long r = syscall(SYS_mmap, addr, length, prot, flags, fd, offset);
  return r == -1 ? MAP_FAILED : reinterpret_cast<void*>(r);
}

namespace {

// The largest mapping that neither reads nor writes, in bytes.
size_t largest_reservation() {
  FILE* f = fopen("/proc/self/maps", "r");
  if (f == nullptr) return SIZE_MAX;
  char line[512];
  size_t largest = 0;
  while (fgets(line, sizeof line, f)) {
    unsigned long lo, hi;
    char perms[8];
    if (sscanf(line, "%lx-%lx %7s", &lo, &hi, perms) == 3 && strcmp(perms, "---p") == 0 && hi - lo > largest)
      largest = hi - lo;
  }
  fclose(f);
  return largest;
}

TEST(InitRefusals, ProbeForTheParent) {
  if (!refusing()) GTEST_SKIP() << "run by the test below";
  void* p = malloc(100);  // hakmem started before main: the test framework allocates
  hak_stats s;
  hak_stats_get(&s);
  printf("probe: reservations %d arena %zu left %zu arena_bytes %llu segments %llu outside %llu block %d\n",
         g_reservations, g_arena_length, largest_reservation(), static_cast<unsigned long long>(s.arena_bytes),
         static_cast<unsigned long long>(s.segments), static_cast<unsigned long long>(s.segments_outside_arena),
         p != nullptr);
  free(p);
}

TEST(InitRefusals, ARefusedMetadataRegionGivesTheArenaBack) {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  GTEST_SKIP() << "the sanitizer's own mmap must stay in place";
#endif
  int status = 0;
  const std::string got = test_support::run_self("HAKMEM_TEST_REFUSE_METADATA=1", "InitRefusals.ProbeForTheParent",
                                                 "probe: ", &status);
  ASSERT_EQ(status, 0) << got;
  int reservations = 0, block = 0;
  size_t arena = 0, left = 0;
  unsigned long long arena_bytes = 0, segments = 0, outside = 0;
  ASSERT_EQ(sscanf(got.c_str(), "reservations %d arena %zu left %zu arena_bytes %llu segments %llu outside %llu block %d",
                   &reservations, &arena, &left, &arena_bytes, &segments, &outside, &block),
            7)
      << got;
  ASSERT_EQ(reservations, 2) << "the metadata region was not the second reservation: " << got;
  ASSERT_GT(arena, 64u << 20) << got;
  EXPECT_LT(left, arena / 2) << "the unused arena's reservation is still mapped: " << got;
  EXPECT_EQ(arena_bytes, 0u) << got;
  EXPECT_EQ(block, 1) << got;
  EXPECT_GT(segments, 0u) << got;
  EXPECT_EQ(outside, segments) << got;
}

}  // namespace
