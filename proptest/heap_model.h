// The model that hakmem's property tests run against: every live block the
// test holds, with the size it asked for, the bytes it wrote (a pattern keyed
// by a per-block seed), the alignment it asked for, and the size class, run
// kind and usable size it expects. After every operation the tests check the
// allocator's answers against it: no two live blocks overlap, every pointer is
// aligned, usable size >= request, content reads back intact, calloc memory is
// zero, realloc keeps the prefix; and on demand that the out-of-band headers
// (DESIGN.md §3: unit tags, slab descriptors) agree with the blocks they hold.
//
// Failures throw ModelFailure (a std::runtime_error): RapidCheck reports its
// message with the shrunk counterexample; worker threads catch and hand it on.
#pragma once

#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <mutex>
#include <ostream>
#include <stdexcept>
#include <string>
#include <vector>

#include "hakmem.h"
#include "size_class/size_class.h"
#include "large/large.h"
#include "os/os.h"
#include "slab/slab.h"
#include "tests/support/units.h"

namespace prop {

using test_support::KiB;
using test_support::MiB;
constexpr size_t kTinyMax = hakmem::kTinyMax;    // 1 KiB
constexpr size_t kMidMax = hakmem::kSlabMax;     // 128 KiB
constexpr size_t kLargeMax = hakmem::kLargeMax;  // 2 MiB: the large/huge boundary
constexpr size_t kHugeTestMax = 10 * MiB;        // the biggest request the tests make
constexpr size_t kPageSize = hakmem::kOsPageSize;

struct ModelFailure : std::runtime_error {
  using std::runtime_error::runtime_error;
};

[[noreturn]] __attribute__((format(printf, 1, 2))) inline void fail(const char* fmt, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  throw ModelFailure(buf);
}

// ---------------------------------------------------------------- content

// Byte i of a block with seed s is kPattern[(s + i) & 255], kPattern a fixed
// permutation: two different seeds never agree on a single byte, and a freed-
// list link or a stray neighbour's pattern written into a block shows up.
struct PatternTable {
  uint8_t twice[512];
  PatternTable() {
    uint8_t perm[256];
    for (int i = 0; i < 256; ++i) perm[i] = static_cast<uint8_t>(i);
    uint32_t x = 0x9e3779b9u;
    for (int i = 255; i > 0; --i) {  // Fisher-Yates with a fixed xorshift: the same table every run
      x ^= x << 13;
      x ^= x >> 17;
      x ^= x << 5;
      int j = static_cast<int>(x % static_cast<uint32_t>(i + 1));
      std::swap(perm[i], perm[j]);
    }
    for (int i = 0; i < 512; ++i) twice[i] = perm[i & 255];
  }
};
inline const uint8_t* pattern_bytes() {
  static const PatternTable table;
  return table.twice;
}

// Fills [from, to) of a block with its pattern.
inline void fill_pattern(void* block, size_t from, size_t to, uint8_t seed) {
  const uint8_t* pat = pattern_bytes();
  uint8_t* b = static_cast<uint8_t*>(block);
  for (size_t i = from; i < to;) {
    size_t start = (seed + i) & 255;
    size_t n = std::min<size_t>(256, to - i);
    memcpy(b + i, pat + start, n);
    i += n;
  }
}

// Offset of the first byte in [from, to) that differs from the pattern, or SIZE_MAX.
inline size_t find_pattern_mismatch(const void* block, size_t from, size_t to, uint8_t seed) {
  const uint8_t* pat = pattern_bytes();
  const uint8_t* b = static_cast<const uint8_t*>(block);
  for (size_t i = from; i < to;) {
    size_t start = (seed + i) & 255;
    size_t n = std::min<size_t>(256, to - i);
    if (memcmp(b + i, pat + start, n) != 0) {
      for (size_t k = 0; k < n; ++k)
        if (b[i + k] != pat[start + k]) return i + k;
    }
    i += n;
  }
  return SIZE_MAX;
}

inline size_t find_nonzero(const void* block, size_t n) {
  const uint8_t* b = static_cast<const uint8_t*>(block);
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t w;
    memcpy(&w, b + i, 8);
    if (w != 0) break;
  }
  for (; i < n; ++i)
    if (b[i] != 0) return i;
  return SIZE_MAX;
}

// The parts of a block of n written bytes that carry the pattern. Dense (the
// property tests): all of it. Sparse (the fuzzers, for blocks above a limit,
// where writing and checking megabytes under ASan would dominate): the first
// and last 64 KiB and 4 KiB at every 256 KiB boundary. The pattern depends
// only on seed and offset, so windows of different sizes always agree.
template <typename F>
void for_each_window(size_t n, size_t sparse_above, F&& f) {
  if (n <= sparse_above) {
    if (n > 0) f(size_t{0}, n);
    return;
  }
  const size_t edge = 64 * KiB;
  f(size_t{0}, edge);
  for (size_t off = 256 * KiB; off + 4 * KiB <= n - edge; off += 256 * KiB) f(off, off + 4 * KiB);
  f(n - edge, n);
}

// ---------------------------------------------------------------- expectations

enum class RunKind { kSlab, kLarge, kHuge };
inline const char* run_kind_name(RunKind k) {
  return k == RunKind::kSlab ? "slab" : k == RunKind::kLarge ? "large" : "huge";
}

struct Expect {
  RunKind kind;
  int cls;  // the size class for slab blocks, -1 otherwise
};

// The hardened library's end-of-block canary: 8 bytes after the usable ones
// of a block of a class up to kCanaryClassMax (3.5 KiB), so a request takes
// the class 8 bytes above it, or the first class above those
// (HAKMEM_HARDENED_CANARY, on unless 0; none in other builds).
inline size_t model_canary_bytes() {
  static const size_t bytes = [] {
    const char* v = getenv("HAKMEM_HARDENED_CANARY");
    return hakmem::kHardened && !(v != nullptr && strcmp(v, "0") == 0) ? size_t{8} : size_t{0};
  }();
  return bytes;
}
inline size_t model_class_canary(int cls) {
  return hakmem::class_size(cls) <= hakmem::kCanaryClassMax ? model_canary_bytes() : 0;
}
// The size whose class serves a request of n bytes, canary included.
inline size_t model_request(size_t n) {
  if (model_canary_bytes() == 0 || n > hakmem::kCanaryClassMax) return n;
  return n + model_canary_bytes() <= hakmem::kCanaryClassMax ? n + model_canary_bytes() : hakmem::kCanaryClassMax + 1;
}

// What hak_malloc(n) hands out: slab classes up to 128 KiB, large spans up to
// 2 MiB, huge mappings above.
inline Expect expect_malloc(size_t n) {
  if (n <= kMidMax) return {RunKind::kSlab, hakmem::size_to_class(model_request(n))};
  if (n <= kLargeMax) return {RunKind::kLarge, -1};
  return {RunKind::kHuge, -1};
}

// What the aligned entry points hand out for (align, n), align a power of two.
inline Expect expect_aligned(size_t align, size_t n) {
  if (align <= 16 && n <= kMidMax) {
    if (align == 16 && n < 16) n = 16;
    return expect_malloc(n);
  }
  int cls = hakmem::size_to_aligned_class(n <= kMidMax ? model_request(n) : n, align);
  if (cls >= 0) return {RunKind::kSlab, cls};
  if (n <= kLargeMax && align <= kLargeMax) return {RunKind::kLarge, -1};
  return {RunKind::kHuge, -1};
}

// ---------------------------------------------------------------- the model

struct Block {
  size_t req = 0;      // bytes asked for
  size_t filled = 0;   // bytes holding the pattern: req, or usable after a usable-size call
  size_t usable = 0;   // hak_malloc_usable_size at allocation
  size_t align = 0;    // alignment asked for (0: plain malloc/calloc/realloc)
  uint8_t seed = 0;
  Expect expect{RunKind::kSlab, -1};
};

// A process-wide map of live ranges, shared by the threads of one test case:
// blocks handed to different threads must not overlap either.
class RangeRegistry {
 public:
  void insert(const void* p, size_t n) {
    std::lock_guard<std::mutex> g(mu_);
    uintptr_t a = reinterpret_cast<uintptr_t>(p);
    auto next = ranges_.lower_bound(a);
    if (next != ranges_.end() && next->first < a + n)
      fail("overlap (across threads): [%p, +%zu) runs into the live block at %#lx", p, n, static_cast<unsigned long>(next->first));
    if (next != ranges_.begin()) {
      auto prev = std::prev(next);
      if (prev->first + prev->second > a)
        fail("overlap (across threads): the live block [%#lx, +%zu) runs into %p", static_cast<unsigned long>(prev->first), prev->second, p);
    }
    ranges_.emplace(a, n);
  }
  void erase(const void* p) {
    std::lock_guard<std::mutex> g(mu_);
    ranges_.erase(reinterpret_cast<uintptr_t>(p));
  }

 private:
  std::mutex mu_;
  std::map<uintptr_t, size_t> ranges_;
};

class HeapModel {
 public:
  explicit HeapModel(RangeRegistry* shared = nullptr) : shared_(shared) {}
  HeapModel(const HeapModel&) = delete;
  HeapModel& operator=(const HeapModel&) = delete;
  // A failed case still gives its blocks back (the heap is usually sound when
  // a check fails, and shrinking runs hundreds of cases).
  ~HeapModel() { release_all_unchecked(); }

  size_t live() const { return order_.size(); }
  size_t live_bytes() const { return live_bytes_; }
  bool empty() const { return order_.empty(); }
  void* at(size_t i) const { return order_[i % order_.size()]; }
  const Block& block(void* p) const { return blocks_.at(reinterpret_cast<uintptr_t>(p)); }
  const std::map<uintptr_t, Block>& blocks() const { return blocks_; }

  // Checks a fresh block against the allocator's promises and the other live
  // blocks, then records it and writes its pattern (or checks it is zero).
  void adopt_new(void* p, size_t req, size_t align, Expect expect, uint8_t seed, bool zeroed, const char* what) {
    if (p == nullptr) fail("%s(%zu, align %zu) returned NULL", what, req, align);
    uintptr_t a = reinterpret_cast<uintptr_t>(p);
    size_t natural = req <= 8 ? 8 : 16;
    if (a % natural != 0) fail("%s(%zu) = %p: not %zu-aligned", what, req, p, natural);
    if (align != 0 && a % align != 0) fail("%s(%zu, align %zu) = %p: not aligned", what, req, align, p);
    size_t usable = hak_malloc_usable_size(p);
    if (usable < req || usable == 0)
      fail("%s(%zu, align %zu) = %p: usable size %zu", what, req, align, p, usable);
    if (!hak_owns(p)) fail("%s(%zu, align %zu) = %p: hak_owns says no", what, req, align, p);
    if (zeroed) {
      for_each_window(req, sparse_above_, [&](size_t from, size_t to) {
        size_t z = find_nonzero(static_cast<char*>(p) + from, to - from);
        if (z != SIZE_MAX) fail("%s(%zu) = %p: byte %zu is not zero", what, req, p, from + z);
      });
    }
    Block b;
    b.req = req;
    b.filled = req;
    b.usable = usable;
    b.align = align;
    b.seed = seed;
    b.expect = expect;
    insert_checked(p, b);
    fill(p, b);
  }

  // Takes over a block another thread handed over: checks its whole content.
  // (Its range stays in the shared registry while it travels.)
  void adopt_transferred(void* p, const Block& b) {
    verify_full(p, b, "received block");
    blocks_.emplace(reinterpret_cast<uintptr_t>(p), b);
    order_.push_back(p);
    live_bytes_ += b.usable;
  }

  // Takes over a block from another model: checks its content, and that it
  // overlaps none of this model's blocks.
  void adopt_checked(void* p, const Block& b, const char* when) {
    verify_full(p, b, when);
    insert_checked(p, b);
  }

  // Forgets p (it was freed, or handed to another thread) and returns its record.
  Block take(void* p, bool unregister_shared) {
    auto it = blocks_.find(reinterpret_cast<uintptr_t>(p));
    if (it == blocks_.end()) fail("internal: %p is not in the model", p);
    Block b = it->second;
    blocks_.erase(it);
    live_bytes_ -= b.usable;
    auto o = std::find(order_.begin(), order_.end(), p);
    *o = order_.back();
    order_.pop_back();
    if (unregister_shared && shared_ != nullptr) shared_->erase(p);
    return b;
  }

  // `sized`: through hak_free_sized (C++ sized delete) with the size asked for.
  void free_block(void* p, bool sized = false) {
    const Block& b = block(p);
    verify_full(p, b, "block about to be freed");
    size_t req = b.req;
    take(p, true);
    if (sized) hak_free_sized(p, req); else hak_free(p);
  }

  // realloc: the prefix survives; the new block is then rewritten with a new seed.
  void realloc_block(void* p, size_t n, uint8_t seed) {
    Block old = block(p);
    verify_full(p, old, "block about to be reallocated");
    take(p, true);
    void* q = hak_realloc(p, n);
    if (n == 0) {
      if (q != nullptr) fail("realloc(%p, 0) returned %p, not NULL", p, q);
      return;  // glibc: freed
    }
    if (q == nullptr) fail("realloc(%p, %zu) returned NULL", p, n);
    size_t keep = std::min(old.filled, n);
    for_each_window(old.filled, sparse_above_, [&](size_t from, size_t to) {
      if (from >= keep) return;
      size_t bad = find_pattern_mismatch(q, from, std::min(to, keep), old.seed);
      if (bad != SIZE_MAX)
        fail("realloc(%p [%zu bytes], %zu) = %p: byte %zu of the kept prefix changed", p, old.req, n, q, bad);
    });
    Expect e;
    if (q == p) {
      e = old.expect;  // kept in place
    } else if (old.expect.kind == RunKind::kHuge && n > kLargeMax) {
      e = {RunKind::kHuge, -1};
    } else {
      // hakmem's growth rule: a block that grows by less than a quarter of
      // its usable size moves to one a quarter larger than it was.
      size_t asked = n > old.usable && n - old.usable < old.usable / 4 ? old.usable + old.usable / 4 : n;
      e = expect_malloc(asked);
    }
    // Whatever alignment the old block was asked for is not promised for the new one.
    adopt_new_after_realloc(q, n, e, seed, old, p);
  }

  // malloc_usable_size: every usable byte is the program's to write.
  void use_whole_block(void* p) {
    Block& b = blocks_.at(reinterpret_cast<uintptr_t>(p));
    size_t u = hak_malloc_usable_size(p);
    if (u != b.usable) fail("usable size of %p changed from %zu to %zu while live", p, b.usable, u);
    verify_full(p, b, "block before writing its whole usable size");
    b.filled = u;
    fill(p, b);
  }

  // The cheap per-step content check: head, tail and one window every 64 KiB.
  void verify_sampled(const char* when) const {
    for (const auto& kv : blocks_) {
      const void* p = reinterpret_cast<const void*>(kv.first);
      const Block& b = kv.second;
      size_t n = b.filled;
      if (n > sparse_above_) {
        for_each_window(n, sparse_above_, [&](size_t from, size_t to) { check_range(p, b, from, from + 64, when); (void)to; });
        check_range(p, b, n - 64, n, when);
        continue;
      }
      check_range(p, b, 0, std::min<size_t>(n, 64), when);
      if (n > 64) check_range(p, b, n - std::min<size_t>(n - 64, 64), n, when);
      for (size_t off = 64 * KiB; off + 64 < n; off += 64 * KiB) check_range(p, b, off, off + 64, when);
    }
  }

  void verify_all(const char* when) const {
    for (const auto& kv : blocks_) verify_full(reinterpret_cast<const void*>(kv.first), kv.second, when);
  }

  void verify_full(const void* p, const Block& b, const char* when) const {
    for_each_window(b.filled, sparse_above_, [&](size_t from, size_t to) { check_range(p, b, from, to, when); });
  }

  // Blocks above `n` bytes get the pattern in windows only (see for_each_window).
  void set_sparse_above(size_t n) { sparse_above_ = n; }

  // Header integrity (DESIGN.md §3) for every live block: its unit's tag says
  // the class (or span) the model expects, the block sits on a block boundary
  // of a carved part of its slab, usable size agrees with the tag, and each
  // slab's used count covers the live blocks the model holds in it.
  void check_headers() const {
    std::map<const char*, uint32_t> live_in_slab;  // by the slab's start
    for (const auto& kv : blocks_) check_block_header(reinterpret_cast<void*>(kv.first), kv.second, &live_in_slab);
    for (const auto& kv : live_in_slab) {
      hakmem::RunInfo slab;
      if (!hakmem::run_lookup(kv.first, &slab)) fail("slab %p left its segment", static_cast<const void*>(kv.first));
      if (slab.used < kv.second)
        fail("slab %p of class %d: used count %u < %u live blocks the program holds in it",
             static_cast<const void*>(kv.first), slab.cls, slab.used, kv.second);
    }
  }

  static void check_block_header(void* p, const Block& b, std::map<const char*, uint32_t>* live_in_slab) {
    using namespace hakmem;
    uintptr_t a = reinterpret_cast<uintptr_t>(p);
    size_t usable = hak_malloc_usable_size(p);
    if (usable != b.usable) fail("usable size of %p changed from %zu to %zu while live", p, b.usable, usable);
    if (b.expect.kind == RunKind::kHuge) {
      if ((a & kSegmentMask) != 0) fail("huge block %p is not on a 4 MiB boundary", p);
      if (usable % kPageSize != 0) fail("huge block %p: usable size %zu not whole pages", p, usable);
#ifdef PROP_HAVE_SEGMAP
      if (segmap_kind(p) != kSlotHuge) fail("huge block %p: segment map slot is %d", p, segmap_kind(p));
#endif
      RunInfo none;
      if (run_lookup(p, &none)) fail("huge block %p: the backend takes it for a segment's", p);
      return;
    }
    // A slab block or a large span: p lies in a segment, in a run that
    // starts at or before p's unit.
    RunInfo run;
    if (!run_lookup(p, &run)) fail("%p (%s, %zu bytes): not in a segment the map knows", p, run_kind_name(b.expect.kind), b.req);
    if (run.unit == 0) fail("%p: a block in a segment's header unit", p);
    const int first = unit_of(run.start);
    if (run.kind == hakmem::RunKind::kFree || first <= 0 || first > run.unit)
      fail("%p: unit %d is in no run (or a run starting at unit %d)", p, run.unit, first);
    if (b.expect.kind == RunKind::kSlab) {
      if (!run.block_start) fail("%p (%zu bytes): free() would not take it for a block", p, b.req);
      if (!tag_is_slab(run.tag)) fail("%p (%zu bytes, class %d): unit tag %#x is not a slab tag", p, b.req, b.expect.cls, run.tag);
      int cls = static_cast<int>(tag_class(run.tag));
      if (cls != b.expect.cls)
        fail("%p (%zu bytes, align %zu): tag class %d (%zu B), expected class %d (%zu B)", p, b.req, b.align, cls,
             class_size(cls), b.expect.cls, class_size(b.expect.cls));
      if (class_size(cls) < b.req) fail("%p: class %d (%zu B) smaller than the request %zu", p, cls, class_size(cls), b.req);
      if (usable != class_size(cls) - model_class_canary(cls))
        fail("%p: usable size %zu, tag class size %zu (canary %zu)", p, usable, class_size(cls), model_class_canary(cls));
      if (run.kind != hakmem::RunKind::kSlab || run.cls != cls)
        fail("%p: slab descriptor kind %d class %d, tag class %d", p, static_cast<int>(run.kind), run.cls, cls);
      if (run.units != class_info(cls).slab_units || first + static_cast<int>(run.units) <= run.unit)
        fail("%p: slab of %u units at unit %d does not cover unit %d", p, run.units, first, run.unit);
      size_t off = static_cast<size_t>(static_cast<char*>(p) - run.start);
      if (off % class_size(cls) != 0) fail("%p: offset %zu in its slab is not a multiple of %zu", p, off, class_size(cls));
      size_t index = off / class_size(cls);
      if (index >= run.capacity) fail("%p: block %zu of a slab of %u blocks", p, index, run.capacity);
      if (index >= run.carved) fail("%p: block %zu handed out but the slab carved only %u", p, index, run.carved);
      if ((index + 1) * class_size(cls) > static_cast<size_t>(run.units) * kUnitSize)
        fail("%p: block runs past the end of its slab", p);
      if (live_in_slab != nullptr) ++(*live_in_slab)[run.start];
    } else {
      if (run.tag != kTagLarge) fail("%p (%zu bytes, align %zu): unit tag %#x, expected the large-span tag", p, b.req, b.align, run.tag);
      if (run.start != p) fail("large block %p: its span starts at %p", p, static_cast<void*>(run.start));
      if (run.kind != hakmem::RunKind::kLarge) fail("large block %p: descriptor kind %d", p, static_cast<int>(run.kind));
      if (run.large_size != usable) fail("large block %p: span size %zu, usable size %zu", p, run.large_size, usable);
      if (static_cast<size_t>(run.units) * kUnitSize < usable) fail("large block %p: %u units hold less than %zu", p, run.units, usable);
      for (uint32_t k = 1; k < run.units; ++k) {
        RunInfo tail{};
        if (!run_lookup(run.start + k * kUnitSize, &tail) || tail.tag != kTagLargeTail || tail.start != run.start)
          fail("large block %p: unit %d of its span has tag %#x", p, first + static_cast<int>(k), tail.tag);
      }
    }
  }

  // Frees everything, checking content first.
  void release_all() {
    while (!order_.empty()) free_block(order_.back());
  }

 private:
  void insert_checked(void* p, const Block& b) {
    uintptr_t a = reinterpret_cast<uintptr_t>(p);
    size_t span = std::max<size_t>(b.usable, 1);
    auto next = blocks_.lower_bound(a);
    if (next != blocks_.end() && next->first < a + span) {
      if (next->first == a) fail("%p handed out while already live (%zu bytes)", p, next->second.req);
      fail("overlap: new block [%p, +%zu) runs into the live block at %#lx", p, span, static_cast<unsigned long>(next->first));
    }
    if (next != blocks_.begin()) {
      auto prev = std::prev(next);
      if (prev->first + prev->second.usable > a)
        fail("overlap: live block [%#lx, +%zu) runs into the new block %p", static_cast<unsigned long>(prev->first), prev->second.usable, p);
    }
    if (shared_ != nullptr) shared_->insert(p, span);
    blocks_.emplace(a, b);
    order_.push_back(p);
    live_bytes_ += b.usable;
  }

  void adopt_new_after_realloc(void* q, size_t n, Expect e, uint8_t seed, const Block& old, void* p) {
    uintptr_t a = reinterpret_cast<uintptr_t>(q);
    size_t natural = n <= 8 ? 8 : 16;
    if (a % natural != 0) fail("realloc(%p, %zu) = %p: not %zu-aligned", p, n, q, natural);
    size_t usable = hak_malloc_usable_size(q);
    if (usable < n) fail("realloc(%p, %zu) = %p: usable size %zu < request", p, n, q, usable);
    Block b;
    b.req = n;
    b.filled = n;
    b.usable = usable;
    b.align = q == p ? old.align : 0;
    b.seed = seed;
    b.expect = e;
    insert_checked(q, b);
    fill(q, b);
  }

  void fill(void* p, const Block& b) const {
    for_each_window(b.filled, sparse_above_, [&](size_t from, size_t to) { fill_pattern(p, from, to, b.seed); });
  }

  void check_range(const void* p, const Block& b, size_t from, size_t to, const char* when) const {
    size_t bad = find_pattern_mismatch(p, from, to, b.seed);
    if (bad != SIZE_MAX)
      fail("%s: live block %p (%zu bytes, %s): byte %zu was overwritten (%#x)", when, p, b.req,
           run_kind_name(b.expect.kind), bad, static_cast<const uint8_t*>(p)[bad]);
  }

  void release_all_unchecked() {
    for (void* p : order_) {
      if (shared_ != nullptr) shared_->erase(p);
      hak_free(p);
    }
    order_.clear();
    blocks_.clear();
    live_bytes_ = 0;
  }

  RangeRegistry* shared_;
  std::map<uintptr_t, Block> blocks_;
  std::vector<void*> order_;  // live blocks, in an order the operations index into
  size_t live_bytes_ = 0;     // sum of the live blocks' usable sizes
  size_t sparse_above_ = SIZE_MAX;
};

}  // namespace prop
