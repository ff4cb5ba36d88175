// Alignment (DESIGN.md §1): every pointer from malloc/calloc/realloc/new is
// 16-byte aligned, 8-byte aligned for requests of 8 bytes or less.
#include <malloc.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <vector>

#include <gtest/gtest.h>

#include "hakmem.h"
#include "tests/support/opaque.h"

namespace {

using test_support::opaque;

size_t required_alignment(size_t n) { return n <= 8 ? 8 : 16; }

::testing::AssertionResult AlignedFor(const void* p, size_t n) {
  if (p == nullptr) return ::testing::AssertionFailure() << "NULL for size " << n;
  uintptr_t a = reinterpret_cast<uintptr_t>(p);
  size_t need = required_alignment(n);
  if (a % need != 0)
    return ::testing::AssertionFailure() << p << " for size " << n << " is not " << need << "-byte aligned";
  return ::testing::AssertionSuccess();
}

std::vector<size_t> sweep_sizes() {
  std::vector<size_t> v;
  for (size_t n = 0; n <= 4096; ++n) v.push_back(n);
  for (size_t n = 4097; n <= (size_t{4} << 20); n = n + n / 7 + 1) v.push_back(n);
  for (size_t k = 13; k <= 22; ++k) {  // powers of two and their neighbours
    v.push_back((size_t{1} << k) - 1);
    v.push_back(size_t{1} << k);
    v.push_back((size_t{1} << k) + 1);
  }
  return v;
}

constexpr int kLive = 3;  // several live blocks per size: not one block reused

TEST(Alignment, Malloc) {
  for (size_t n : sweep_sizes()) {
    void* v[kLive];
    for (int i = 0; i < kLive; ++i) {
      v[i] = opaque(malloc(n));
      ASSERT_TRUE(AlignedFor(v[i], n));
    }
    for (int i = 0; i < kLive; ++i) free(v[i]);
  }
}

TEST(Alignment, HakMalloc) {
  for (size_t n : sweep_sizes()) {
    void* v[kLive];
    for (int i = 0; i < kLive; ++i) {
      v[i] = opaque(hak_malloc(n));
      ASSERT_TRUE(AlignedFor(v[i], n));
    }
    for (int i = 0; i < kLive; ++i) hak_free(v[i]);
  }
}

TEST(Alignment, Calloc) {
  for (size_t n : sweep_sizes()) {
    void* v[kLive];
    for (int i = 0; i < kLive; ++i) {
      // Split the size into count x size both ways.
      v[i] = opaque(i == 0 ? calloc(1, n) : i == 1 ? calloc(n, 1) : hak_calloc(1, n));
      ASSERT_TRUE(AlignedFor(v[i], n));
    }
    for (int i = 0; i < kLive; ++i) free(v[i]);
  }
}

TEST(Alignment, ReallocFromEverySize) {
  // From a block of another size range to n, and from n to another size.
  const size_t others[] = {1, 8, 24, 200, 3000, 100000, 1 << 21, 3 << 20};
  for (size_t n : sweep_sizes()) {
    if (n == 0) continue;  // realloc(p, 0) frees
    for (size_t from : others) {
      void* p = opaque(malloc(from));
      ASSERT_NE(p, nullptr);
      void* q = opaque(realloc(p, n));
      ASSERT_TRUE(AlignedFor(q, n)) << "realloc from " << from;
      void* r = opaque(hak_realloc(q, from));
      ASSERT_TRUE(AlignedFor(r, from)) << "realloc back from " << n;
      free(r);
    }
  }
}

TEST(Alignment, ReallocGrowingByOneByte) {
  void* p = opaque(malloc(1));
  for (size_t n = 1; n <= 70000; ++n) {
    p = opaque(realloc(p, n));
    ASSERT_TRUE(AlignedFor(p, n));
  }
  for (size_t n = 70000; n >= 1; n -= (n > 5000 ? 97 : 1)) {
    p = opaque(realloc(p, n));
    ASSERT_TRUE(AlignedFor(p, n));
  }
  free(p);
}

TEST(Alignment, OperatorNew) {
  for (size_t n : sweep_sizes()) {
    void* a = opaque(::operator new(n));
    void* b = opaque(::operator new[](n));
    // new must give __STDCPP_DEFAULT_NEW_ALIGNMENT__ (16) for every size a
    // type of that alignment could have; 8 only where no such type fits.
    ASSERT_TRUE(AlignedFor(a, n));
    ASSERT_TRUE(AlignedFor(b, n));
    ::operator delete(a);
    ::operator delete[](b, n);
  }
}

TEST(Alignment, MixedLiveHeap) {
  // Interleave sizes so that blocks of many classes share slabs and segments.
  std::vector<void*> live;
  unsigned x = 12345;
  for (int i = 0; i < 20000; ++i) {
    x = x * 1103515245u + 12345u;
    size_t n = (x >> 8) % (i % 10 == 0 ? 300000 : 2048);
    void* p = opaque(malloc(n));
    ASSERT_TRUE(AlignedFor(p, n));
    live.push_back(p);
    if ((x >> 4) % 3 == 0) {
      size_t k = (x >> 12) % live.size();
      free(live[k]);
      live[k] = live.back();
      live.pop_back();
    }
  }
  for (void* p : live) free(p);
  EXPECT_EQ(hak_check_heap(), 0);
}

}  // namespace
