// Large box and memory reuse: blocks freed and allocated again in waves reuse
// their resident pages instead of faulting them in anew. Each test counts the
// process's minor page faults (getrusage), which do not depend on timing: a
// wave that faults every page it writes is the storm these tests exist for.
#include <malloc.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include <random>
#include <vector>

#include <gtest/gtest.h>

#include "hakmem.h"
#include "large/large.h"
#include "os/os.h"
#include "slab/slab.h"
#include "tests/support/proc_self.h"
#include "tests/support/units.h"

namespace {

using test_support::KiB;
using test_support::MiB;
constexpr size_t kPage = hakmem::kOsPageSize;

long minor_faults() {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_minflt;
}

void touch_pages(void* p, size_t n) {
  char* c = static_cast<char*>(p);
  for (size_t i = 0; i < n; i += kPage) c[i] = static_cast<char>(i);
}

// Huge blocks (5-25 MB, as in the bench's huge-loop) allocated, written and
// freed one at a time: after the first few, the cached mapping is reused and
// grown by moving pages, so faults stay near one block's worth in total,
// not one block's worth per round.
TEST(Large, HugeLoopReusesItsPages) {
#if defined(HAKMEM_HARDENED)
  GTEST_SKIP() << "the hardened variant hands a freed huge block's pages back (zero on free): reuse faults them in";
#endif
  std::mt19937 rng(3);
  auto next_size = [&] { return 5 * MiB + rng() % (20 * MiB); };
  for (int i = 0; i < 3; ++i) {  // warm-up: the cache learns the largest size
    size_t n = 25 * MiB;
    void* p = malloc(n);
    touch_pages(p, n);
    free(p);
  }
  constexpr int kRounds = 40;
  long before = minor_faults();
  size_t pages_written = 0;
  for (int i = 0; i < kRounds; ++i) {
    size_t n = next_size();
    void* p = malloc(n);
    ASSERT_NE(p, nullptr);
    touch_pages(p, n);
    pages_written += n / kPage;
    free(p);
  }
  long faults = minor_faults() - before;
  EXPECT_LT(static_cast<size_t>(faults), pages_written / 20)
      << faults << " page faults for " << pages_written << " pages written over " << kRounds
      << " huge blocks: freed mappings are not reused";
  hak_stats s;
  hak_stats_get(&s);
  EXPECT_LE(s.huge_cached_bytes, 64 * MiB);  // the cache's budget
}

// A huge request larger than any cached mapping grows one (mremap) instead
// of mapping fresh memory beside it: the resident pages move along, and the
// cache does not keep a second mapping alive.
TEST(Large, HugeCacheGrowsAMappingInsteadOfMappingAFreshOne) {
  hak_trim();
  void* p = malloc(6 * MiB);
  touch_pages(p, 6 * MiB);
  free(p);
  hak_stats s;
  hak_stats_get(&s);
  ASSERT_GE(s.huge_cached_bytes, 6 * MiB) << "the freed block was not cached: the test proves nothing";
  void* q = malloc(9 * MiB);
  ASSERT_NE(q, nullptr);
  touch_pages(q, 9 * MiB);
  hak_stats_get(&s);
  EXPECT_EQ(s.huge_cached_bytes, 0u) << "the cached mapping was left beside a fresh one";
  // The block and its prefix: the header's page (with the hardened
  // variant's guard pages, three pages).
  EXPECT_LE(s.bytes_mapped - s.segments * 4 * MiB, 9 * MiB + 3 * kPage) << "huge mappings beyond the live block";
  EXPECT_GE(malloc_usable_size(q), 9 * MiB);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(q) % (4 * MiB), 0u);
  free(q);
  EXPECT_EQ(hak_check_heap(), 0);
}

// The huge cache keeps freed mappings up to 128 MiB in all (and 32 of
// them), the oldest going first: of seven 20 MiB blocks freed, the last six
// stay cached, and an 80 MiB one fits alone. Untouched blocks: the cache's
// budget is address space here, not RSS. (make mutate: a budget of half
// the size passed every test.)
TEST(Large, HugeCacheHoldsUpTo128MiB) {
  const char* decay = getenv("HAKMEM_DECAY_MS");
  if (decay != nullptr && strcmp(decay, "0") == 0) GTEST_SKIP() << "HAKMEM_DECAY_MS=0 caches nothing";
  hak_trim();
  void* v[7];
  for (void*& p : v) ASSERT_NE(p = malloc(20 * MiB), nullptr);
  for (void* p : v) free(p);
  hak_stats s;
  hak_stats_get(&s);
  EXPECT_GE(s.huge_cached_bytes, 120 * MiB) << "fewer than the last six 20 MiB blocks stayed cached";
  EXPECT_LE(s.huge_cached_bytes, 128 * MiB) << "the cache holds more than its budget";
  hak_trim();
  void* big = malloc(80 * MiB);
  ASSERT_NE(big, nullptr);
  free(big);
  hak_stats_get(&s);
  EXPECT_GE(s.huge_cached_bytes, 80 * MiB) << "an 80 MiB block was not cached";
  hak_trim();
}

// ... and 32 mappings at most: of 33 blocks of 3 MiB freed, the first goes.
TEST(Large, HugeCacheHoldsUpTo32Mappings) {
  const char* decay = getenv("HAKMEM_DECAY_MS");
  if (decay != nullptr && strcmp(decay, "0") == 0) GTEST_SKIP() << "HAKMEM_DECAY_MS=0 caches nothing";
  hak_trim();
  static_assert(3 * MiB > hakmem::kLargeMax, "huge blocks");
  void* v[33];
  for (void*& p : v) ASSERT_NE(p = malloc(3 * MiB), nullptr);
  for (void* p : v) free(p);
  hak_stats s;
  hak_stats_get(&s);
  EXPECT_EQ(s.huge_cached_bytes / (3 * MiB), 32u) << s.huge_cached_bytes << " bytes cached";
  hak_trim();
}

// A huge block's mapping is aligned (its block to 4 MiB) by mapping more
// and giving back the slack before and after it at once: ten blocks add
// their own mappings to the process's address space, not up to 4 MiB more
// each. (make mutate: a mapping that kept the slack after it passed every
// test before this one.)
TEST(Large, AnAlignedMappingKeepsNoSlack) {
  hak_trim();  // no cached mapping to reuse
  const long before_kib = test_support::status_field("VmSize");
  void* v[10];
  size_t used = 0;
  for (void*& p : v) {
    ASSERT_NE(p = malloc(5 * MiB + 12345), nullptr);
    used += malloc_usable_size(p);
  }
  const long after_kib = test_support::status_field("VmSize");
  ASSERT_GT(before_kib, 0);
  // Each mapping: the block, and a header page (with guard pages around it
  // in the hardened library).
  EXPECT_LE(static_cast<size_t>(after_kib - before_kib) * KiB, used + 10 * 64 * KiB)
      << "the ten blocks use " << used << " bytes";
  for (void* p : v) free(p);
  hak_trim();
}

// Every size up to the large limit at the largest span alignment, 2 MiB: a
// span so aligned starts at a segment's unit 32, and the hardened library's
// guard page makes a span of 2 MiB - 1 bytes 33 units long, which no
// segment holds there. Such a request is a huge block. (The hardened
// library returned NULL for it, found by prop_model.)
TEST(Large, EverySizeUpToTheLimitTakesTheLargestSpanAlignment) {
  for (size_t n : {size_t{128 * KiB + 1}, size_t{MiB}, size_t{2 * MiB - 4096 - 1}, size_t{2 * MiB - 1}, size_t{2 * MiB}}) {
    void* p = nullptr;
    ASSERT_EQ(posix_memalign(&p, 2 * MiB, n), 0) << n;
    EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % (2 * MiB), 0u) << n;
    ASSERT_GE(malloc_usable_size(p), n);
    static_cast<volatile char*>(p)[n - 1] = 1;
    free(p);
  }
}

// A cached mapping far larger than the request is cut to size: a small huge
// block must not pin a large one's pages.
TEST(Large, SmallHugeRequestDoesNotPinALargeCachedMapping) {
  void* p = malloc(30 * MiB);
  touch_pages(p, 30 * MiB);
  free(p);
  void* q = malloc(3 * MiB);
  ASSERT_NE(q, nullptr);
  EXPECT_LT(malloc_usable_size(q), 8 * MiB);
  free(q);
  hak_trim();
}

// Large spans (64 KiB - 2 MiB) churned through 32 slots, every page written:
// freed spans are reused while resident.
TEST(Large, SpanChurnReusesItsPages) {
  std::mt19937 rng(4);
  auto next_size = [&] {
    int bits = 16 + static_cast<int>(rng() % 5);  // 64 KiB .. 1 MiB, log-uniform
    size_t lo = size_t{1} << bits;
    return lo + rng() % lo;
  };
  void* slots[32] = {};
  size_t pages_written = 0;
  long before = 0;
  for (int round = 0; round < 4000; ++round) {
    if (round == 1000) {  // after the warm-up
      before = minor_faults();
      pages_written = 0;
    }
    int i = static_cast<int>(rng() % 32);
    free(slots[i]);
    size_t n = next_size();
    slots[i] = malloc(n);
    ASSERT_NE(slots[i], nullptr);
    touch_pages(slots[i], n);
    pages_written += n / kPage;
  }
  long faults = minor_faults() - before;
  for (void* p : slots) free(p);
  EXPECT_LT(static_cast<size_t>(faults), pages_written / 20)
      << faults << " page faults for " << pages_written << " pages written: freed spans are not reused";
  EXPECT_EQ(hak_check_heap(), 0);
}

// Waves of 1600 blocks of 4 KiB (6.4 MiB) allocated and all freed, as in
// glibc's simple bench: the slabs emptied by one wave serve the next.
TEST(Large, SlabWavesReuseTheirPages) {
  std::vector<void*> v(1600);
  size_t pages_written = 0;
  long before = 0;
  for (int wave = 0; wave < 60; ++wave) {
    if (wave == 10) {
      before = minor_faults();
      pages_written = 0;
    }
    for (auto& p : v) {
      p = malloc(4096);
      touch_pages(p, 4096);
      ++pages_written;
    }
    for (void* p : v) free(p);
  }
  long faults = minor_faults() - before;
  EXPECT_LT(static_cast<size_t>(faults), pages_written / 20)
      << faults << " page faults for " << pages_written << " pages written: emptied slabs are purged between waves";
}

}  // namespace

namespace {

void fill(void* p, size_t n, unsigned seed) {
  unsigned char* c = static_cast<unsigned char*>(p);
  for (size_t i = 0; i < n; ++i) c[i] = static_cast<unsigned char>(seed + i * 7);
}
bool intact(const void* p, size_t n, unsigned seed) {
  const unsigned char* c = static_cast<const unsigned char*>(p);
  for (size_t i = 0; i < n; ++i)
    if (c[i] != static_cast<unsigned char>(seed + i * 7)) return false;
  return true;
}

}  // namespace

// realloc of a large span grows into the free units after it without moving
// (no copy), and shrinks by giving its tail back; contents survive both.
TEST(Large, SpanReallocGrowsAndShrinksInPlace) {
  hak_trim();  // fresh segments: the units after a new span are free
  void* p = malloc(200 * KiB);
  ASSERT_NE(p, nullptr);
  fill(p, 200 * KiB, 1);
  size_t grown_in_place = 0;
  for (size_t n = 300 * KiB; n <= 1 * MiB; n += 100 * KiB) {
    void* q = realloc(p, n);
    ASSERT_NE(q, nullptr);
    ASSERT_TRUE(intact(q, 200 * KiB, 1)) << "contents lost growing to " << n;
    EXPECT_GE(malloc_usable_size(q), n);
    grown_in_place += q == p;
    p = q;
  }
  EXPECT_GE(grown_in_place, 6u) << "most steps should grow in place in a fresh segment";
  size_t before = malloc_usable_size(p);
  void* q = realloc(p, 150 * KiB);
  EXPECT_EQ(q, p) << "a span shrinks in place";
  EXPECT_LT(malloc_usable_size(q), before);
  EXPECT_GE(malloc_usable_size(q), 150 * KiB);
  EXPECT_TRUE(intact(q, 150 * KiB, 1));
  EXPECT_EQ(hak_check_heap(), 0);
  free(q);
  EXPECT_EQ(hak_check_heap(), 0);
}

// The large box's limit itself (kLargeMax, 2 MiB) is a span's size: a span
// grows in place up to it, the limit included. A span that can grow (free
// units after it, room for 2 MiB and a hardened span's guard page before
// its segment's end) grows to exactly 2 MiB without moving; should the
// units after one be taken, another span tries, the first one's place
// held so that the next lands elsewhere. (make mutate: growth refused at exactly the limit,
// so that a realloc to 2 MiB copied, passed every test before this one.)
TEST(Large, SpanGrowsInPlaceToExactlyTheLargeLimit) {
  hak_trim();  // fresh segments: the units after a new span are free
  constexpr size_t kSpan = 1 * MiB + 64 * KiB;  // 17 units: too big to be parked, far from the limit
  std::vector<void*> kept;
  bool in_place = false;
  for (int attempt = 0; attempt < 64 && !in_place; ++attempt) {
    void* p = malloc(kSpan);
    ASSERT_NE(p, nullptr);
    kept.push_back(p);
    // Too near its segment's end to reach 2 MiB: kept, so that the next
    // span lands elsewhere, as is the place of a span that moved (in a
    // process whose earlier tests left segments partly used, each span that
    // moved freed a place there that the next span took, for ever).
    const size_t unit = (reinterpret_cast<uintptr_t>(p) & (hakmem::kSegmentSize - 1)) >> hakmem::kUnitShift;
    if (unit + (hakmem::kLargeMax >> hakmem::kUnitShift) + 1 > static_cast<size_t>(hakmem::kUnitsPerSegment)) continue;
    fill(p, 1 * MiB, 5);
    void* q = realloc(p, hakmem::kLargeMax);
    ASSERT_NE(q, nullptr);
    EXPECT_TRUE(intact(q, 1 * MiB, 5)) << "contents lost growing to the limit";
    EXPECT_GE(malloc_usable_size(q), hakmem::kLargeMax);
    in_place = q == p;
    kept.back() = q;
    if (!in_place) kept.push_back(malloc(kSpan));  // holds the place p left
  }
  EXPECT_TRUE(in_place) << "no span of " << kept.size() << " grew in place to exactly " << hakmem::kLargeMax << " bytes";
  EXPECT_EQ(hak_check_heap(), 0);
  for (void* q : kept) free(q);
  EXPECT_EQ(hak_check_heap(), 0);
}

// A span whose next units are taken moves instead, contents intact, and the
// neighbour is untouched.
TEST(Large, SpanReallocBlockedByANeighbourMoves) {
  hak_trim();
  void* a = malloc(256 * KiB);
  void* b = malloc(256 * KiB);  // most likely right after a
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  fill(a, 256 * KiB, 3);
  fill(b, 256 * KiB, 9);
  void* a2 = realloc(a, 900 * KiB);
  ASSERT_NE(a2, nullptr);
  EXPECT_TRUE(intact(a2, 256 * KiB, 3));
  EXPECT_TRUE(intact(b, 256 * KiB, 9)) << "growing a overwrote its neighbour";
  if (static_cast<char*>(b) == static_cast<char*>(a) + 256 * KiB) {
    EXPECT_NE(a2, a) << "grew over a live neighbour";
  }
  EXPECT_EQ(hak_check_heap(), 0);
  free(a2);
  free(b);
  EXPECT_EQ(hak_check_heap(), 0);
}

// calloc of spans whose units are fresh or purged skips the memset: the
// kernel's zero pages are left untouched until the program writes them (a
// program that callocs big buffers and uses part of each pays for that part
// only). The blocks still read as zero, and a reused (dirty) span is cleared.
TEST(Large, CallocOfFreshSpansDoesNotTouchThem) {
  hak_trim();  // every free unit purged: the next spans read as zero
  std::vector<void*> v;
  long before = minor_faults();
  for (int i = 0; i < 40; ++i) {
    void* p = calloc(1, 1 * MiB);
    ASSERT_NE(p, nullptr);
    v.push_back(p);
  }
  long faults = minor_faults() - before;
  EXPECT_LT(faults, static_cast<long>(40 * MiB / kPage / 10)) << faults << " page faults for 40 fresh 1 MiB callocs";
  for (void* p : v) {
    const unsigned char* c = static_cast<const unsigned char*>(p);
    for (size_t i = 0; i < 1 * MiB; i += 4093) ASSERT_EQ(c[i], 0) << "fresh calloc'd span not zero at " << i;
  }
  for (void* p : v) {
    memset(p, 0xab, 1 * MiB);  // dirty them
    free(p);
  }
  v.clear();
  for (int i = 0; i < 40; ++i) {  // reused, dirty spans: must be cleared
    unsigned char* c = static_cast<unsigned char*>(calloc(1, 1 * MiB));
    ASSERT_NE(c, nullptr);
    for (size_t k = 0; k < 1 * MiB; k += 511) ASSERT_EQ(c[k], 0) << "reused calloc'd span not zero at " << k;
    v.push_back(c);
  }
  for (void* p : v) free(p);
  EXPECT_EQ(hak_check_heap(), 0);
}
