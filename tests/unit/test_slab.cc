// Run & segment backend: heap integrity under random use, hak_owns, and
// blocks of one class that never overlap.
#include <malloc.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <thread>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "hakmem.h"
#include "size_class/size_class.h"
#include "slab/slab.h"
#include "tests/support/blocks.h"
#include "tests/support/opaque.h"
#include "tests/support/units.h"

namespace {

using hakmem::class_size;
using hakmem::kNumClasses;
using test_support::Block;
using test_support::intact;
using test_support::opaque;
using test_support::stamp;

using hakmem::kSegmentMask;
using test_support::KiB;
using test_support::MiB;

int g_global_int = 42;
char g_global_buf[256];

size_t random_size(std::mt19937_64& rng) {
  // Log-uniform over the slab range, with a few large and huge blocks.
  uint64_t r = rng();
  if (r % 200 == 0) return 128 * KiB + 1 + (rng() % (2 * MiB));   // large, sometimes huge
  if (r % 1000 == 1) return 2 * MiB + 1 + (rng() % (6 * MiB));     // huge
  int bits = static_cast<int>(rng() % 17) + 1;                      // 2 .. 128 KiB
  size_t hi = size_t{1} << bits;
  return std::min<size_t>(hi / 2 + rng() % hi, 128 * KiB);
}

TEST(Slab, RandomSequencesKeepHeapConsistent) {
  std::mt19937_64 rng(20240601);
  std::vector<Block> live;
  uint64_t next_id = 1;
  ASSERT_EQ(hak_check_heap(), 0);
  for (int op = 0; op < 150000; ++op) {
    bool do_alloc = live.empty() || (live.size() < 4000 && rng() % 100 < 55);
    if (do_alloc) {
      size_t n = random_size(rng);
      unsigned char* p = static_cast<unsigned char*>(opaque(malloc(n)));
      ASSERT_NE(p, nullptr) << n;
      Block b{p, n, next_id++ * 0x9E3779B97F4A7C15ull};
      stamp(b);
      live.push_back(b);
    } else {
      size_t k = rng() % live.size();
      ASSERT_TRUE(intact(live[k])) << "block of " << live[k].n << " at " << static_cast<void*>(live[k].p)
                                   << " was overwritten while live";
      if (rng() % 8 == 0) {
        // realloc in the mix as well
        size_t n = random_size(rng);
        unsigned char* q = static_cast<unsigned char*>(realloc(live[k].p, n));
        ASSERT_NE(q, nullptr);
        size_t keep = std::min(n, live[k].n);
        Block old = live[k];
        if (keep >= 8) {
          uint64_t v;
          memcpy(&v, q, 8);
          ASSERT_EQ(v, old.id) << "realloc lost the head of the block";
        }
        live[k] = Block{q, n, next_id++ * 0x9E3779B97F4A7C15ull};
        stamp(live[k]);
      } else {
        free(live[k].p);
        live[k] = live.back();
        live.pop_back();
      }
    }
    if (op % 25000 == 0) {
      ASSERT_EQ(hak_check_heap(), 0) << "after op " << op;
    }
  }
  for (const Block& b : live) ASSERT_TRUE(intact(b));
  ASSERT_EQ(hak_check_heap(), 0);
  std::shuffle(live.begin(), live.end(), rng);
  for (const Block& b : live) free(b.p);
  EXPECT_EQ(hak_check_heap(), 0);
  hak_trim();
  EXPECT_EQ(hak_check_heap(), 0);
}

// Every class, the aligned ones through aligned_alloc (a page-aligned
// request of their size finds no size class that serves it).
TEST(Slab, BlocksOfOneClassNeverOverlap) {
  for (int c = hakmem::kSmallestClass; c < kNumClasses; ++c) {
    size_t size = class_size(c);
    const bool aligned = c >= hakmem::kNumSizeClasses;
    size_t count = std::min<size_t>(1500, (8 * MiB) / size + 20);
    std::vector<unsigned char*> v;
    for (size_t i = 0; i < count; ++i) {
      auto* p = static_cast<unsigned char*>(opaque(aligned ? aligned_alloc(4096, size) : malloc(hakmem::class_step(c))));
      ASSERT_NE(p, nullptr);
      ASSERT_EQ(malloc_usable_size(p), size);
      memset(p, static_cast<int>(i * 7 + c), size);
      memcpy(p, &i, std::min<size_t>(size, sizeof i));
      v.push_back(p);
    }
    for (size_t i = 0; i < count; ++i) {
      size_t got = 0;
      memcpy(&got, v[i], std::min<size_t>(size, sizeof i));
      size_t want = size >= sizeof i ? i : (i & ((size_t{1} << (8 * size)) - 1));
      ASSERT_EQ(got, want) << "class " << size << ": block " << i << " was overwritten by another";
      for (size_t k = sizeof i; k < size; k += 61)
        ASSERT_EQ(v[i][k], static_cast<unsigned char>(i * 7 + c)) << "class " << size << " block " << i;
      ASSERT_EQ(v[i][size - 1], size > sizeof i ? static_cast<unsigned char>(i * 7 + c) : v[i][size - 1]);
    }
    std::vector<unsigned char*> sorted = v;
    std::sort(sorted.begin(), sorted.end());
    for (size_t i = 1; i < sorted.size(); ++i)
      ASSERT_GE(sorted[i], sorted[i - 1] + size) << "class " << size << ": blocks overlap";
    for (unsigned char* p : v) free(p);
  }
  EXPECT_EQ(hak_check_heap(), 0);
}

// Colour (size_class.h): the blocks of 8 KiB that one slab hands out start
// on different cache lines of their pages, where page-aligned blocks would
// put every page's first line in the same few cache sets; a page-aligned
// request of the same size is served page-aligned, by the aligned class.
TEST(Slab, BlocksOfAPageMultipleClassStartOnDifferentLinesOfTheirPages) {
  const int coloured = hakmem::size_to_class(8192);
  std::vector<void*> plain, page;
  std::vector<char*> slabs;
  std::vector<size_t> offsets;
  for (int i = 0; i < 64; ++i) {
    void* p = opaque(malloc(8192));
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(malloc_usable_size(p), 8192u + hakmem::kColourPad);
    hakmem::RunInfo run{};
    ASSERT_TRUE(hakmem::run_lookup(p, &run));
    EXPECT_EQ(run.cls, coloured);
    offsets.push_back(reinterpret_cast<uintptr_t>(p) % 4096);
    if (std::find(slabs.begin(), slabs.end(), run.start) == slabs.end()) slabs.push_back(run.start);
    plain.push_back(p);
  }
  std::sort(offsets.begin(), offsets.end());
  const size_t lines = static_cast<size_t>(std::unique(offsets.begin(), offsets.end()) - offsets.begin());
  EXPECT_GE(lines, size_t{hakmem::class_info(coloured).blocks_per_slab}) << "from " << slabs.size() << " slabs";
  for (size_t off : offsets) EXPECT_EQ(off % 64, 0u) << "a block off a cache line";
  for (int i = 0; i < 64; ++i) {
    void* p = opaque(aligned_alloc(4096, 8192));
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % 4096, 0u);
    EXPECT_EQ(malloc_usable_size(p), 8192u);
    hakmem::RunInfo run{};
    ASSERT_TRUE(hakmem::run_lookup(p, &run));
    EXPECT_GE(run.cls, hakmem::kNumSizeClasses) << "a page-aligned block from a coloured class";
    page.push_back(p);
  }
  for (void* p : plain) free(p);
  for (void* p : page) free(p);
  EXPECT_EQ(hak_check_heap(), 0);
}

TEST(Slab, OwnsLiveBlockStartsOnly) {
  std::vector<std::pair<unsigned char*, size_t>> live;
  for (int c = 0; c < kNumClasses; ++c)
    for (int k = 0; k < 3; ++k) live.push_back({static_cast<unsigned char*>(malloc(class_size(c))), class_size(c)});
  for (size_t n : {size_t{200 * KiB}, size_t{1 * MiB}, size_t{2 * MiB}, size_t{3 * MiB}, size_t{9 * MiB}})
    live.push_back({static_cast<unsigned char*>(malloc(n)), n});
  for (auto& [p, n] : live) {
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(hak_owns(p), 1) << "live block of " << n;
    size_t usable = malloc_usable_size(p);
    // Interior pointers, including the last byte.
    for (size_t off : {size_t{1}, size_t{7}, size_t{8}, size_t{15}, size_t{16}, n / 2, usable - 1}) {
      if (off == 0 || off >= usable) continue;
      EXPECT_EQ(hak_owns(p + off), 0) << "interior pointer +" << off << " of a block of " << n;
    }
    if (usable > hakmem::kUnitSize) {
      EXPECT_EQ(hak_owns(p + hakmem::kUnitSize), 0) << "+64 KiB into a block of " << n;
    }
    if (usable > hakmem::kSegmentSize) {
      EXPECT_EQ(hak_owns(p + hakmem::kSegmentSize), 0) << "+4 MiB into a block of " << n;
    }
  }
  // The header of the segment that holds a small block is no block.
  void* small = live.front().first;
  EXPECT_EQ(hak_owns(reinterpret_cast<void*>(reinterpret_cast<uintptr_t>(small) & ~kSegmentMask)), 0);
  EXPECT_EQ(hak_owns(reinterpret_cast<void*>((reinterpret_cast<uintptr_t>(small) & ~kSegmentMask) + 64)), 0);
  // Things that were never hakmem's.
  int local = 0;
  EXPECT_EQ(hak_owns(nullptr), 0);
  EXPECT_EQ(hak_owns(opaque(&local)), 0);
  EXPECT_EQ(hak_owns(&g_global_int), 0);
  EXPECT_EQ(hak_owns(g_global_buf), 0);
  EXPECT_EQ(hak_owns(reinterpret_cast<void*>(&hak_owns)), 0);
  EXPECT_EQ(hak_owns(reinterpret_cast<void*>(1)), 0);
  EXPECT_EQ(hak_owns(reinterpret_cast<void*>(uintptr_t{1} << 47)), 0);
  EXPECT_EQ(hak_owns(reinterpret_cast<void*>(~uintptr_t{0} - 15)), 0);
  void* m = mmap(nullptr, 8 * MiB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(m, MAP_FAILED);
  uintptr_t mb = reinterpret_cast<uintptr_t>(m);
  uintptr_t slot = (mb + kSegmentMask) & ~kSegmentMask;  // a segment boundary inside the mapping
  EXPECT_EQ(hak_owns(m), 0);
  EXPECT_EQ(hak_owns(reinterpret_cast<void*>(slot)), 0);
  EXPECT_EQ(hak_owns(reinterpret_cast<void*>(slot + hakmem::kUnitSize)), 0);
  munmap(m, 8 * MiB);
  for (auto& [p, n] : live) free(p);
  EXPECT_EQ(hak_check_heap(), 0);
}

TEST(Slab, FreedHugeAndLargeAreNoLongerOwned) {
  void* h = malloc(6 * MiB);
  ASSERT_EQ(hak_owns(h), 1);
  free(h);
  EXPECT_EQ(hak_owns(h), 0) << "a freed huge block is still reported as hakmem's";
  // hak_owns never writes: a pointer into a live block reads back unchanged.
  unsigned char* p = static_cast<unsigned char*>(malloc(1000));
  memset(p, 0xA5, 1000);
  for (int i = 0; i < 1000; ++i) (void)hak_owns(p + i);
  for (int i = 0; i < 1000; ++i) ASSERT_EQ(p[i], 0xA5);
  free(p);
}

TEST(Slab, SlabsReturnAfterFreeAndTrim) {
  // A class nothing else uses much: 20 KiB blocks.
  int c = hakmem::size_to_class(20 * KiB);
  hak_trim();
  hak_stats before;
  hak_stats_get(&before);
  std::vector<void*> v;
  for (int i = 0; i < 2000; ++i) v.push_back(malloc(20 * KiB));  // ~40 MiB
  hak_stats mid;
  hak_stats_get(&mid);
  uint64_t per_slab = hakmem::class_info(c).blocks_per_slab;
  EXPECT_GE(mid.classes[c].slabs, before.classes[c].slabs + 2000 / per_slab);
  EXPECT_GE(mid.bytes_mapped, before.bytes_mapped + 2000 * 20 * KiB);
  for (void* p : v) free(p);
  hak_trim();
  hak_stats after;
  hak_stats_get(&after);
  EXPECT_EQ(after.classes[c].slabs, before.classes[c].slabs) << "slabs of class " << class_size(c) << " not returned";
  EXPECT_LE(after.bytes_mapped, before.bytes_mapped + 4 * MiB) << "segments not unmapped after trim";
  EXPECT_EQ(after.bytes_dirty, 0u);
  EXPECT_EQ(hak_check_heap(), 0);
}

// HAKMEM_ARENA decides the segment arena: none (0), at most N MiB, or by
// default as much as the system grants, up to 1 TiB. Segments go into it
// first and past it when it is full, and blocks in both free alike.
TEST(Arena, SettingDecidesWhereSegmentsGo) {
  const char* setting = getenv("HAKMEM_ARENA");
  std::vector<void*> blocks;
  for (int i = 0; i < 1200; ++i) blocks.push_back(malloc(32 * KiB));  // 40 MiB: ten segments
  hak_stats s;
  hak_stats_get(&s);
  ASSERT_GE(s.segments, 10u);
  if (setting != nullptr && strcmp(setting, "0") == 0) {
    EXPECT_EQ(s.arena_bytes, 0u);
    EXPECT_EQ(s.arena_base, 0u) << "no arena, but a base";
    EXPECT_EQ(s.segments_outside_arena, s.segments);
  } else if (setting != nullptr && strcmp(setting, "16") == 0) {
    EXPECT_EQ(s.arena_bytes, 16 * MiB);  // four segments (their metadata lives apart)
    EXPECT_EQ(s.segments_outside_arena, s.segments - 4);
  } else {
    EXPECT_GE(s.arena_bytes, 8 * MiB);
    EXPECT_EQ(s.arena_bytes & (s.arena_bytes - 1), 0u) << "not a power of two";
    EXPECT_EQ(s.segments_outside_arena, 0u);
  }
  size_t inside = 0;
  for (void* p : blocks) inside += reinterpret_cast<uintptr_t>(p) - s.arena_base < s.arena_bytes;
  EXPECT_EQ(inside == 0, s.arena_bytes == 0);
  hak_stats before;
  hak_stats_get(&before);
  for (void* p : blocks) free(p);
  hak_stats after;
  hak_stats_get(&after);
  int c = hakmem::size_to_class(32 * KiB);
  EXPECT_EQ(after.classes[c].frees - before.classes[c].frees, blocks.size());
  EXPECT_EQ(after.foreign_frees + after.invalid_frees, before.foreign_frees + before.invalid_frees);
  EXPECT_EQ(hak_check_heap(), 0);
}

// The arena's reserved space is left out of core dumps (a piped core would
// carry all of it as zeros); committed segments are dumped like any heap.
// /proc/self/smaps says which is which: the "dd" flag.
TEST(Arena, ReservedSpaceIsLeftOutOfCoreDumps) {
  hak_stats s;
  void* keep = malloc(100);
  hak_stats_get(&s);
  if (s.arena_bytes == 0) GTEST_SKIP() << "no segment arena in this run";
  FILE* f = fopen("/proc/self/smaps", "r");
  ASSERT_NE(f, nullptr);
  char line[512];
  unsigned long lo = 0, hi = 0;
  char perms[8] = "";
  int reserved = 0, committed = 0;
  while (fgets(line, sizeof line, f)) {
    unsigned long a, b;
    char p[8];
    if (sscanf(line, "%lx-%lx %7s", &a, &b, p) == 3) {  // a mapping's first line
      lo = a, hi = b;
      strcpy(perms, p);
      continue;
    }
    if (strncmp(line, "VmFlags:", 8) != 0) continue;
    if (hi <= s.arena_base || lo >= s.arena_base + s.arena_bytes) continue;
    bool dont_dump = strstr(line, " dd") != nullptr;
    // Nothing of the arena merely reads: unused parts, and the gap before
    // each segment's first block, fault on any access.
    EXPECT_STRNE(perms, "r--p") << std::hex << lo << "-" << hi << " readable but not in use";
    if (strcmp(perms, "---p") == 0) {
      ++reserved;
      EXPECT_TRUE(dont_dump) << std::hex << lo << "-" << hi << " reserved but dumped";
    } else {
      ++committed;
      EXPECT_FALSE(dont_dump) << std::hex << lo << "-" << hi << " (" << perms << ") committed but not dumped";
    }
  }
  fclose(f);
  EXPECT_GT(reserved, 0);
  EXPECT_GT(committed, 0);
  free(keep);
}

TEST(Slab, CheckHeapSeesDamagedHeaders) {
  // hak_check_heap() == 0 means something only if it can report a fault:
  // damage a segment header on purpose, check, then repair it.
  unsigned char* p = static_cast<unsigned char*>(malloc(100));
  ASSERT_NE(p, nullptr);
  ASSERT_EQ(hak_check_heap(), 0);
  hakmem::Segment* seg = hakmem::inspect_segment(p);
  hakmem::UnitEntry* units = hakmem::inspect_units(seg);
  int unit = hakmem::unit_of(p);
  hakmem::UnitEntry saved = units[unit];
  ASSERT_TRUE(hakmem::tag_is_slab(saved.tag)) << "the block's unit is not tagged as a slab";
  ASSERT_EQ(hakmem::tag_class(saved.tag), static_cast<unsigned>(hakmem::size_to_class(100)));
  units[unit].tag = hakmem::slab_tag(hakmem::size_to_class(100) + 1);  // wrong class
  int wrong_class = hak_check_heap();
  units[unit].tag = hakmem::kTagLarge;  // not a slab at all
  int wrong_kind = hak_check_heap();
  units[unit] = saved;
  hakmem::Run* slab = &seg->runs[hakmem::entry_first_unit(saved)];
  slab->used += 1;  // counts disagree with the free list
  int wrong_count = hak_check_heap();
  slab->used -= 1;
  // More free blocks than were ever carved: out of range by itself, before
  // the counts that follow from it are compared (the report names the
  // first fault found).
  const uint32_t free_count = slab->free_count;
  testing::internal::CaptureStderr();
  slab->free_count = slab->carved + 1;
  int free_past_carved = hak_check_heap();
  slab->free_count = free_count;
  const std::string said = testing::internal::GetCapturedStderr();
  EXPECT_GT(wrong_class, 0);
  EXPECT_GT(wrong_kind, 0);
  EXPECT_GT(wrong_count, 0);
  EXPECT_GT(free_past_carved, 0);
  EXPECT_NE(said.find("integrity: slab counts out of range"), std::string::npos) << said;
  EXPECT_EQ(hak_check_heap(), 0);
  free(p);
}

// A run is fully described (slab capacity, span size) before the backend
// lock drops, and heap checks hold the class locks too. (Found by this test.)
TEST(Slab, CheckHeapWhileOtherThreadsAllocate) {
  std::atomic<bool> stop{false};
  std::thread large([&] {
    while (!stop.load()) free(opaque(malloc(200 * KiB)));
  });
  std::thread slabs([&] {
    unsigned i = 0;
    while (!stop.load()) {
      void* v[64];
      for (auto& p : v) p = malloc(48 * KiB + (i++ % 7) * KiB);
      for (auto& p : v) free(p);
      hak_trim();  // slabs go back, so new ones keep being made
    }
  });
  int faults = 0, checks = 0;
  auto t0 = std::chrono::steady_clock::now();
  while (faults == 0 && std::chrono::steady_clock::now() - t0 < std::chrono::seconds(5)) {
    faults += hak_check_heap();
    ++checks;
  }
  stop.store(true);
  large.join();
  slabs.join();
  EXPECT_EQ(faults, 0) << "hak_check_heap() found a fault after " << checks << " checks";
  EXPECT_EQ(hak_check_heap(), 0);
}

}  // namespace
