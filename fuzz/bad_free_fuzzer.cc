// libFuzzer harness: frees (and reallocs) of pointers hakmem must reject --
// foreign (stack, global, mmap'd, libc-malloc'd i.e. ASan's heap, live or
// already freed), interior, misaligned, in a segment's header unit, in a free
// unit or a large span's tail unit, around a huge block's header, in a slab's
// slack or past its carve line -- and second frees of large and huge blocks.
// Each must be counted (foreign_frees + invalid_frees rise by exactly one),
// write nothing (foreign buffers and the live blocks keep their bytes; ASan
// watches the libc ones), and leave the heap consistent (hak_check_heap() == 0)
// and usable. A double free of a small or mid block is not detected by the
// release library (SECURITY.md), so the harness never does one.
//
// Input: 4-byte records [op a b c].
#include <errno.h>
#include <sys/mman.h>

#include <memory>

#include "fuzz_common.h"

namespace {

constexpr const char* kHarness = "bad_free_fuzzer";
constexpr size_t kLiveBytesCap = size_t{64} << 20;

uint8_t g_global[8192];

uint64_t bad_free_count() {
  hak_stats s;
  hak_stats_get(&s);
  return s.foreign_frees + s.invalid_frees;
}

void failf(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
void failf(const char* fmt, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  fz::die(kHarness, buf);
}

// Frees `p`; hakmem must count exactly one bad free. Then realloc must refuse
// it the same way (NULL, ENOMEM, counted) when `also_realloc`.
void expect_rejected(void* p, const char* what, bool also_realloc) {
  uint64_t before = bad_free_count();
  int owns = hak_owns(p);
  size_t usable = hak_malloc_usable_size(p);
  if (owns != 0 || usable != 0) failf("%s pointer %p: hak_owns %d, usable size %zu", what, p, owns, usable);
  hak_free(p);
  uint64_t after = bad_free_count();
  if (after != before + 1)
    failf("free(%p) of a %s pointer: bad-free counters rose by %lld, not 1", p, what, static_cast<long long>(after - before));
  if (also_realloc) {
    errno = 0;
    void* q = hak_realloc(p, 100);
    if (q != nullptr || errno != ENOMEM) failf("realloc(%p) of a %s pointer returned %p (errno %d)", p, what, q, errno);
    if (bad_free_count() != after + 1) failf("realloc(%p) of a %s pointer was not counted", p, what);
  }
}

void expect_foreign_untouched(uint8_t* buf, size_t n, size_t off, const char* what, bool also_realloc) {
  prop::fill_pattern(buf, 0, n, 0x5a);
  expect_rejected(buf + off % n, what, also_realloc);
  size_t bad = prop::find_pattern_mismatch(buf, 0, n, 0x5a);
  if (bad != SIZE_MAX) failf("free of a %s pointer wrote to byte %zu of its buffer", what, bad);
}

uint8_t* foreign_mapping() {
  static uint8_t* map = static_cast<uint8_t*>(
      mmap(nullptr, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  return map;
}

// The n-th live block of the model whose kind is `kind` (counting from `pick`), or nullptr.
void* find_block(const prop::HeapModel& m, prop::RunKind kind, uint32_t pick) {
  std::vector<void*> found;
  for (const auto& kv : m.blocks())
    if (kv.second.expect.kind == kind) found.push_back(reinterpret_cast<void*>(kv.first));
  return found.empty() ? nullptr : found[pick % found.size()];
}

void* alloc_kind(prop::HeapModel& m, prop::RunKind kind, uint16_t v, uint8_t seed) {
  size_t n = kind == prop::RunKind::kSlab    ? v % (prop::kMidMax + 1)
             : kind == prop::RunKind::kLarge ? prop::kMidMax + 1 + (size_t{v} * 31) % (prop::kLargeMax - prop::kMidMax)
                                             : prop::kLargeMax + 1 + size_t{v} * 61;
  if (m.live_bytes() + n > kLiveBytesCap) return nullptr;
  void* p = hak_malloc(n);
  m.adopt_new(p, n, 0, prop::expect_malloc(n), seed, false, "malloc");
  return p;
}

void apply(prop::HeapModel& m, const uint8_t rec[4]) {
  using prop::RunKind;
  const uint8_t op = rec[0] & 15, a = rec[1], b = rec[2], c = rec[3];
  const uint16_t v = static_cast<uint16_t>(b | c << 8);
  const uint32_t off = static_cast<uint32_t>(a) << 16 | v;
  switch (op) {
    case 0:  // a legitimate block of any kind (the bad pointers are derived from these)
      alloc_kind(m, a < 170 ? RunKind::kSlab : a < 240 ? RunKind::kLarge : RunKind::kHuge, v, a);
      break;
    case 1:  // a legitimate free
      if (!m.empty()) m.free_block(m.at(v));
      break;
    case 2:    // interior: strictly inside a live block (span tail units, later 4 MiB slots of huge blocks)
    case 3: {  // misaligned: 1..15 bytes in
      if (m.empty()) break;
      void* p = m.at(a);
      const prop::Block& blk = m.block(p);
      if (blk.usable < 2) break;
      size_t d = op == 2 ? 1 + off % (blk.usable - 1) : 1 + off % std::min<size_t>(15, blk.usable - 1);
      expect_rejected(static_cast<char*>(p) + d, op == 2 ? "interior" : "misaligned", c & 1);
      m.verify_full(p, blk, "block after a bad free inside it");
      break;
    }
    case 4: {
      uint8_t buf[1024];
      expect_foreign_untouched(buf, sizeof buf, off, "stack", c & 1);
      break;
    }
    case 5:
      expect_foreign_untouched(g_global, sizeof g_global, off, "global", c & 1);
      break;
    case 6:
      expect_foreign_untouched(foreign_mapping(), 1 << 20, off, "mmap'd", c & 1);
      break;
    case 7: {  // libc malloc (ASan's heap): live, then already freed
      size_t n = 1 + v % 4096;
      uint8_t* buf = static_cast<uint8_t*>(malloc(n));
      expect_foreign_untouched(buf, n, off, "libc-malloc'd", c & 1);
      free(buf);
      if (a & 1) expect_rejected(buf + off % n, "freed libc-malloc'd", false);  // ASan reports any touch
      break;
    }
    case 8:    // second free of a large span
    case 9: {  // second free of a huge block
      RunKind kind = op == 8 ? RunKind::kLarge : RunKind::kHuge;
      void* p = (a & 1) ? find_block(m, kind, v) : nullptr;
      if (p == nullptr) p = alloc_kind(m, kind, v, b);
      if (p == nullptr) break;
      m.free_block(p);
      expect_rejected(p, op == 8 ? "freed large" : "freed huge", c & 1);
      break;
    }
    case 10: {  // a slab's slack (past its last block) and blocks past its carve line
      void* p = find_block(m, RunKind::kSlab, v);
      if (p == nullptr) break;
      hakmem::RunInfo s{};
      if (!hakmem::run_lookup(p, &s) || s.kind != hakmem::RunKind::kSlab) abort();  // the model's slab block is none
      const hakmem::ClassInfo& ci = hakmem::class_info(s.cls);
      size_t slab_bytes = static_cast<size_t>(ci.slab_units) * hakmem::kUnitSize;
      size_t slack_at = static_cast<size_t>(ci.blocks_per_slab) * ci.size;
      if (slack_at < slab_bytes) expect_rejected(s.start + slack_at, "slab slack", c & 1);
      if (s.carved < s.capacity) {  // a never-carved block boundary
        uint32_t k = s.carved + off % (s.capacity - s.carved);
        expect_rejected(s.start + static_cast<size_t>(k) * ci.size, "never-carved block", c & 1);
      }
      break;
    }
    case 11: {  // a live block's segment: its header unit, free units, span tail units
      void* p = find_block(m, (a & 1) ? RunKind::kLarge : RunKind::kSlab, v);
      if (p == nullptr) break;
      char* segment = reinterpret_cast<char*>(reinterpret_cast<uintptr_t>(p) & ~hakmem::kSegmentMask);
      int unit = static_cast<int>(off % hakmem::kUnitsPerSegment);
      char* q = segment + (static_cast<size_t>(unit) << hakmem::kUnitShift) + ((c & 2) ? 0 : (off >> 8) % hakmem::kUnitSize);
      hakmem::RunInfo r{};
      if (!hakmem::run_lookup(q, &r)) abort();  // p's segment
      // Only pointers that cannot be a block start: the header unit, free units, tail units, span interiors.
      bool block_start = r.kind == hakmem::RunKind::kSlab || (r.kind == hakmem::RunKind::kLarge && q == r.start);
      if (unit != 0 && block_start) break;
      expect_rejected(q, unit == 0 ? "segment header" : "free or tail unit", c & 1);
      break;
    }
    case 12: {  // around a huge block: its header page, one page in, the next 4 MiB slot
      void* p = find_block(m, RunKind::kHuge, v);
      if (p == nullptr) break;
      const prop::Block& blk = m.block(p);
      char* h = static_cast<char*>(p);
      switch (a % 3) {
        case 0: expect_rejected(h - 4096 + (off % 4096), "huge header", c & 1); break;
        case 1: expect_rejected(h + 4096, "huge interior page", c & 1); break;
        case 2:
          if (blk.usable > hakmem::kSegmentSize) expect_rejected(h + hakmem::kSegmentSize, "huge next slot", c & 1);
          break;
      }
      m.verify_full(p, blk, "huge block after a bad free near it");
      break;
    }
    case 13: {  // free(NULL) is a no-op, and not a bad free
      uint64_t before = bad_free_count();
      hak_free(nullptr);
      if (bad_free_count() != before) failf("free(NULL) was counted as a bad free");
      // Pointers into the segment arena that are no block (free reads their
      // unit entry before it asks the segment map): the first slot's unit 0,
      // never mapped, and the arena's last slot while it holds no live
      // segment.
      hak_stats s;
      hak_stats_get(&s);
      if (s.arena_bytes == 0) break;
      char* base = reinterpret_cast<char*>(s.arena_base);
      if (a & 1) {
        expect_rejected(base + off % hakmem::kUnitSize, "first segment's gap", c & 1);
      } else {
        char* last = base + s.arena_bytes - hakmem::kSegmentSize;
        hakmem::RunInfo r;
        if (!hakmem::run_lookup(last, &r)) expect_rejected(last + off % hakmem::kSegmentSize, "unused arena slot", c & 1);
      }
      break;
    }
    case 14:
      hak_trim();
      break;
    case 15:
      m.check_headers();
      break;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fz::Reader in{data, size};
  auto m = std::make_unique<prop::HeapModel>();
  m->set_sparse_above(256 * prop::KiB);
  uint8_t rec[4];
  fz::checked(kHarness, [&] {
    while (in.next(rec)) {
      apply(*m, rec);
      fz::expect_heap_consistent(kHarness, "after an operation");
    }
    m->verify_all("end of input");
    m->check_headers();
    // Still usable: one block of every range, checked against the live ones.
    uint8_t seed = 0;
    for (size_t n : {size_t{40}, size_t{3000}, size_t{70000}, size_t{400000}, size_t{3} << 20})
      m->adopt_new(hak_malloc(n), n, 0, prop::expect_malloc(n), seed++, false, "malloc after bad frees");
    m->verify_all("end of input");
    m->release_all();
  });
  fz::expect_heap_consistent(kHarness, "end of input, all freed");
  return 0;
}
