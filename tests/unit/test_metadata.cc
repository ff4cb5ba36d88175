// Metadata an overflow or a relative write cannot steer (core/slab/slab.h):
// the attacks that worked against the out-of-band metadata, tried again in
// the release and the hardened library alike. Each either faults where the
// attacker's write lands, stops the program with the one-line diagnosis, or
// leaves the attacker's chosen target untouched.
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "hakmem.h"
#include "slab/slab.h"
#include "tests/support/hidden_symbol.h"
#include "tests/support/opaque.h"
#include "tests/support/proc_self.h"
#include "tests/support/run_self.h"
#include "tests/support/units.h"

namespace {

using test_support::KiB;
using test_support::MiB;

using test_support::opaque;

bool in_arena(const void* p) {
  hak_stats s;
  hak_stats_get(&s);
  return reinterpret_cast<uintptr_t>(p) - s.arena_base < s.arena_bytes;
}

uint64_t stack_guard() {
  uint64_t v;
  asm volatile("mov %%fs:0x28, %0" : "=r"(v));
  return v;
}

// A 1 KiB block whose last byte is its segment's last byte. Allocates (and
// keeps) blocks until one is found; nullptr if none is within 16 MiB.
char* block_at_segment_end(std::vector<void*>& keep) {
  for (int i = 0; i < 16 * 1024; ++i) {
    char* p = static_cast<char*>(malloc(KiB));
    keep.push_back(p);
    if (((reinterpret_cast<uintptr_t>(p) + KiB) & (4 * MiB - 1)) == 0) return p;
  }
  return nullptr;
}

// An 8-byte overflow off the last block of a segment used to rewrite the
// next segment's header (its entry-table pointer), and through it steer a
// later free. The header lives in the metadata region now, and every arena
// segment begins with 64 KiB that are never mapped: the write faults.
TEST(Metadata, OverflowOffASegmentsLastBlockFaults) {
  std::vector<void*> keep;
  char* p = block_at_segment_end(keep);
  ASSERT_NE(p, nullptr) << "no 1 KiB block ends a segment";
  if (!in_arena(p)) GTEST_SKIP() << "the block's segment is outside the arena";
  EXPECT_EXIT(
      {
        volatile uint64_t* past_end = reinterpret_cast<volatile uint64_t*>(opaque(p + KiB));
        *past_end = 0x4141414141414141u;
        _exit(0);
      },
      testing::KilledBySignal(SIGSEGV), "");
  for (void* q : keep) free(q);
}

// Prints the distance from a fresh block to its unit's entry when asked to
// (the child of the test below); skipped otherwise.
TEST(Metadata, PrintDistanceForTheParent) {
  if (getenv("HAKMEM_TEST_PRINT_DISTANCE") == nullptr) GTEST_SKIP() << "run by MetadataIsAtARandomDistance";
  void* p = malloc(64);
  hakmem::Segment* seg = hakmem::inspect_segment(p);
  ASSERT_NE(seg, nullptr);
  const hakmem::UnitEntry* e = &hakmem::inspect_units(seg)[hakmem::unit_of(p)];
  printf("distance=%llx\n", static_cast<unsigned long long>(reinterpret_cast<uintptr_t>(e) - reinterpret_cast<uintptr_t>(p)));
  free(p);
}

// A single write at a fixed offset from any block reached the entry table:
// it lay at a constant distance from the heap. Now the metadata region is
// placed at a random address in each process: three runs, three distances.
TEST(Metadata, MetadataIsAtARandomDistanceFromTheHeap) {
  void* p = malloc(64);
  if (!in_arena(p)) GTEST_SKIP() << "no segment arena in this run";
  free(p);
  std::set<std::string> distances;
  for (int run = 0; run < 3; ++run) {
    int status = 0;
    std::string distance = test_support::run_self("HAKMEM_TEST_PRINT_DISTANCE=1", "Metadata.PrintDistanceForTheParent",
                                                  "distance=", &status);
    ASSERT_EQ(status, 0);
    ASSERT_FALSE(distance.empty()) << "the child printed no distance";
    distances.insert(distance);
  }
  EXPECT_EQ(distances.size(), 3u) << "the metadata lies at the same distance from the heap in different runs";
}

// A forged entry could once aim free's store of the block's address at any
// place within 2 GiB of the thread pointer (the stack guard at fs:0x28, a
// return address on the thread's stack). The bin offset is masked into the
// thread's bins now: the worst a forged entry does is misfile the block in
// one of them, or, aimed at a spare bin, stop the program.
// The metadata region is one reservation of hakmem's own, laid out as
// [guard | segment map | guard | entry table | guard | headers | guard]: the
// table is committed inside it (MAP_FIXED), so a table placed anywhere else
// would be mapped over whatever the program keeps there.
TEST(Metadata, TheEntryTableLiesBetweenTheSegmentMapAndTheHeaders) {
  void* p = malloc(64);
  const auto* arena = static_cast<const hakmem::ArenaLayout*>(test_support::hidden_object("_ZN6hakmem7g_arenaE"));
  ASSERT_NE(arena, nullptr) << "g_arena not found in the symbol table (stripped?)";
  if (arena->size == 0) GTEST_SKIP() << "no segment arena in this run";
  const uintptr_t map_end = reinterpret_cast<uintptr_t>(arena->segmap) + hakmem::kSegmapSlots;
  const uintptr_t table_end = arena->entry_table + (arena->size >> hakmem::kUnitShift) * sizeof(hakmem::UnitEntry);
  EXPECT_GT(arena->entry_table, map_end) << "the table lies below the segment map's end";
  EXPECT_LT(table_end, arena->headers_base) << "the table reaches into the headers";
  EXPECT_EQ(arena->entry_table, arena->entry_bias + (arena->base >> hakmem::kUnitShift) * sizeof(hakmem::UnitEntry));
  // A live block's entry is in the table, and the guard before it faults.
  const auto entry = reinterpret_cast<uintptr_t>(&hakmem::inspect_units(hakmem::inspect_segment(p))[hakmem::unit_of(p)]);
  EXPECT_GE(entry, arena->entry_table);
  EXPECT_LT(entry, table_end);
  test_support::Mapping guard;
  ASSERT_TRUE(test_support::mapping_of(reinterpret_cast<void*>(arena->entry_table - 1), &guard));
  EXPECT_STREQ(guard.perms, "---p");
  free(p);
}

TEST(Metadata, AForgedEntryCannotAimFreeOutsideTheBins) {
  for (uint16_t forged : {uint16_t{0x28}, uint16_t{0x7fe8}, uint16_t{0xffff}}) {
    EXPECT_EXIT(
        {
          void* p = malloc(64);
          hakmem::Segment* seg = hakmem::inspect_segment(p);
          if (seg == nullptr) _exit(3);
          const uint64_t guard = stack_guard();
          hakmem::inspect_units(seg)[hakmem::unit_of(p)].bin_offset = forged;  // the attacker's write
          free(opaque(p));
          _exit(stack_guard() == guard ? 0 : 1);
        },
        [](int status) {
          return (WIFEXITED(status) && WEXITSTATUS(status) == 0) || (WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT);
        },
        // A class's bin (32 bytes each), or a spare one.
        forged < hakmem::kNumClasses * 32u ? "" : "the block's metadata is damaged; aborting")
        << std::hex << forged;
  }
}

}  // namespace
