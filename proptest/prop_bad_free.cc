// Bad frees (SECURITY.md, README "Behaviour"): a free of a pointer hakmem
// never handed out -- foreign (stack, global, mmap), interior, misaligned --
// and a second free of a large or huge block are counted (foreign_frees or
// invalid_frees rise by exactly one), never written through, and leave the
// heap consistent and usable. A double free of a small or mid block is not
// detected by the release library (documented) and is not tested.
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>
#include <sys/mman.h>

#include <sstream>

#include "ops.h"

namespace {

using prop::Block;
using prop::HeapModel;
using prop::Op;

enum class Bad : uint8_t { kInterior, kMisaligned, kStack, kGlobal, kMmap, kLargeDoubleFree, kHugeDoubleFree, kNull };

struct BadOp {
  Bad kind;
  uint32_t pick;
  uint32_t offset;
};

void showValue(const BadOp& b, std::ostream& os) {
  static const char* names[] = {"interior", "misaligned", "stack", "global", "mmap", "large double free", "huge double free", "null"};
  os << names[static_cast<int>(b.kind)] << "{pick=" << b.pick << " offset=" << b.offset << "}";
}

std::string bad_text(const std::vector<BadOp>& bad, size_t upto) {
  std::ostringstream os;
  for (size_t i = 0; i < bad.size() && i < upto; ++i) {
    os << "\n    " << i << ": ";
    showValue(bad[i], os);
  }
  return os.str();
}

uint8_t g_global_buffer[4096];

uint64_t bad_free_count() {
  hak_stats s;
  hak_stats_get(&s);
  return s.foreign_frees + s.invalid_frees;
}

// Frees `p`, which hakmem must reject: exactly one more bad free counted.
void expect_rejected(void* p, const char* what) {
  uint64_t before = bad_free_count();
  hak_free(p);
  uint64_t after = bad_free_count();
  if (after != before + 1)
    prop::fail("free(%p) of a %s pointer: bad-free counters rose by %lld, not 1", p, what,
               static_cast<long long>(after - before));
}

void* foreign_mapping() {
  static void* map = mmap(nullptr, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  return map;
}

// Frees a foreign buffer at `off` and checks that no byte of it changed.
void foreign_free(uint8_t* buf, size_t size, uint32_t off, const char* what) {
  prop::fill_pattern(buf, 0, size, 77);
  expect_rejected(buf + (off % size), what);
  size_t bad = prop::find_pattern_mismatch(buf, 0, size, 77);
  if (bad != SIZE_MAX) prop::fail("free of a %s pointer wrote to byte %zu of it", what, bad);
}

// A live block of the model whose run kind is `kind`, or nullptr.
void* find_block(const HeapModel& m, prop::RunKind kind, uint32_t pick) {
  std::vector<void*> found;
  for (const auto& kv : m.blocks())
    if (kv.second.expect.kind == kind) found.push_back(reinterpret_cast<void*>(kv.first));
  return found.empty() ? nullptr : found[pick % found.size()];
}

void apply_bad(HeapModel& m, const BadOp& b) {
  switch (b.kind) {
    case Bad::kInterior:
    case Bad::kMisaligned: {
      if (m.empty()) return;
      void* p = m.at(b.pick);
      size_t usable = m.block(p).usable;
      if (usable < 2) return;
      // Interior: anywhere strictly inside the block (tail units of spans,
      // later 4 MiB slots of huge blocks); misaligned: 1..15 bytes in.
      size_t off = b.kind == Bad::kInterior ? 1 + b.offset % (usable - 1) : 1 + b.offset % std::min<size_t>(15, usable - 1);
      expect_rejected(static_cast<char*>(p) + off, b.kind == Bad::kInterior ? "interior" : "misaligned");
      break;
    }
    case Bad::kStack: {
      uint8_t buf[512];
      foreign_free(buf, sizeof buf, b.offset, "stack");
      break;
    }
    case Bad::kGlobal:
      foreign_free(g_global_buffer, sizeof g_global_buffer, b.offset, "global");
      break;
    case Bad::kMmap:
      foreign_free(static_cast<uint8_t*>(foreign_mapping()), 1 << 20, b.offset, "mmap'd");
      break;
    case Bad::kLargeDoubleFree:
    case Bad::kHugeDoubleFree: {
      bool large = b.kind == Bad::kLargeDoubleFree;
      void* p = find_block(m, large ? prop::RunKind::kLarge : prop::RunKind::kHuge, b.pick);
      if (p == nullptr) return;
      m.free_block(p);
      expect_rejected(p, large ? "freed large" : "freed huge");
      break;
    }
    case Bad::kNull: {
      uint64_t before = bad_free_count();
      hak_free(nullptr);
      if (bad_free_count() != before) prop::fail("free(NULL) counted as a bad free");
      break;
    }
  }
}

rc::Gen<BadOp> gen_bad_op() {
  return rc::gen::build<BadOp>(
      rc::gen::set(&BadOp::kind, rc::gen::weightedElement<Bad>({{5, Bad::kInterior},
                                                               {4, Bad::kMisaligned},
                                                               {1, Bad::kStack},
                                                               {1, Bad::kGlobal},
                                                               {1, Bad::kMmap},
                                                               {3, Bad::kLargeDoubleFree},
                                                               {2, Bad::kHugeDoubleFree},
                                                               {1, Bad::kNull}})),
      rc::gen::set(&BadOp::pick, rc::gen::arbitrary<uint32_t>()),
      rc::gen::set(&BadOp::offset, rc::gen::arbitrary<uint32_t>()));
}

}  // namespace

RC_GTEST_PROP(BadFree, ForeignInteriorMisalignedAndBigDoubleFreesAreRejected, ()) {
  const auto program = *prop::gen_program(false, 1.0);
  const auto bad = *rc::gen::nonEmpty(rc::gen::container<std::vector<BadOp>>(gen_bad_op()));
  HeapModel m;
  size_t next_bad = 0;
  for (size_t i = 0; i <= program.size(); ++i) {
    try {
      if (i < program.size()) prop::apply(m, program[i]);
      for (int k = 0; k < 2 && next_bad < bad.size(); ++k) apply_bad(m, bad[next_bad++]);
      m.verify_sampled("after the bad frees");
      int faults = hak_check_heap();
      if (faults != 0) prop::fail("hak_check_heap() = %d", faults);
    } catch (const prop::ModelFailure& e) {
      std::ostringstream os;
      os << "step " << i << " (bad op " << (next_bad == 0 ? 0 : next_bad - 1) << "): " << e.what();
      RC_FAIL(os.str() + "\n  program:" + prop::program_text(program, i) + "\n  bad ops:" + bad_text(bad, next_bad));
    }
  }
  try {
    while (next_bad < bad.size()) apply_bad(m, bad[next_bad++]);
    // Still usable: a block of every range, checked against the live ones.
    uint8_t seed = 0;
    for (size_t n : {size_t{24}, size_t{1000}, size_t{20000}, size_t{300000}, size_t{3 << 20}})
      m.adopt_new(hak_malloc(n), n, 0, prop::expect_malloc(n), seed++, false, "malloc after bad frees");
    m.verify_all("end");
    m.check_headers();
    m.release_all();
    int faults = hak_check_heap();
    if (faults != 0) prop::fail("hak_check_heap() = %d at the end", faults);
  } catch (const prop::ModelFailure& e) {
    RC_FAIL(std::string("end: ") + e.what() + "\n  program:" + prop::program_text(program) + "\n  bad ops:" +
            bad_text(bad, bad.size()));
  }
}

// ---------------------------------------------------------------- never handed out
//
// Pointers on a block boundary of a slab that hakmem never handed out: the
// slack after a slab's last block, and blocks past the slab's carve line.
// Until 9132efe the hot path of hak_free() checked only the tag and
// offset % class size, pushed them onto the thread cache (writing a link into
// them) and later handed them out: a slack block ran into the next unit, and
// a never-carved block was carved again while live (proptest/README.md).

namespace {

// The slab of a live slab block p (p must be one; works with the shared library).
hakmem::RunInfo slab_of(void* p) {
  hakmem::RunInfo slab{};
  if (!hakmem::run_lookup(p, &slab) || slab.kind != hakmem::RunKind::kSlab) ADD_FAILURE() << p << " is no slab block";
  return slab;
}

// Checks that hakmem disowns `bogus` (a pointer on a block boundary of a slab
// of `size`-byte blocks that it never handed out) and rejects its free.
// Everything in this process allocates from hakmem, so a free that is
// accepted would hand `bogus` to the next malloc of the class -- gtest's own
// strings included. The free is tried only once hak_owns() disowns the
// pointer, and an accepted one is taken straight back off the (LIFO) thread
// cache and leaked. Returns "" or what went wrong.
std::string expect_disowned(void* bogus, size_t size) {
  std::ostringstream os;
  int owns = hak_owns(bogus);
  size_t usable = hak_malloc_usable_size(bogus);
  if (owns != 0 || usable != 0) {
    os << "hak_owns " << owns << ", usable size " << usable << " (the free would be accepted; not tried)";
    return os.str();
  }
  uint64_t before = bad_free_count();
  hak_free(bogus);
  if (bad_free_count() == before + 1) return "";
  void* back = hak_malloc(size);
  os << "free ACCEPTED as a block" << (back == bogus ? " (taken back and leaked)" : "");
  return os.str();
}

}  // namespace

// Slack: the bytes after the last block of a slab. For 48 B blocks a 64 KiB
// slab holds 1365 of them and 16 bytes of slack at offset 65520 -- a multiple
// of 48. free(slab + 65520) is accepted, and the next malloc(48) returns a
// block whose last 32 bytes lie in the next unit (another slab or span).
TEST(BadFreeNeverHandedOut, SlabSlackPointerIsRejected) {
  int with_slack = 0, wrong = 0;
  std::string report;
  for (int c = 0; c < hakmem::kNumClasses; ++c) {
    const hakmem::ClassInfo& ci = hakmem::class_info(c);
    size_t slab_bytes = static_cast<size_t>(ci.slab_units) * hakmem::kUnitSize;
    size_t slack_at = static_cast<size_t>(ci.blocks_per_slab) * ci.size;
    if (slack_at >= slab_bytes) continue;  // no slack in this class
    ++with_slack;
    // The class's own block: an aligned class serves page-aligned requests.
    void* p = c < hakmem::kNumSizeClasses ? hak_malloc(hakmem::class_step(c)) : hak_aligned_alloc(4096, ci.size);
    ASSERT_NE(p, nullptr);
    std::string e = expect_disowned(slab_of(p).start + slack_at, ci.size);
    if (!e.empty() && wrong++ < 5)
      report += "\n  class " + std::to_string(c) + " (" + std::to_string(ci.size) + " B): slab+" +
                std::to_string(slack_at) + " in a " + std::to_string(slab_bytes) + "-byte slab: " + e;
    hak_free(p);
  }
  EXPECT_EQ(wrong, 0) << wrong << " of the " << with_slack << " classes with slack take it for a block:" << report;
}

// Never carved: a block boundary past the slab's bump pointer has never left
// the slab; freeing it puts it in circulation, and the slab carves it again
// later: two live blocks at one address.
TEST(BadFreeNeverHandedOut, NeverCarvedBlockIsRejected) {
  void* p = hak_malloc(16);
  ASSERT_NE(p, nullptr);
  const hakmem::RunInfo s = slab_of(p);
  ASSERT_LT(s.carved, s.capacity);
  uint32_t index = s.capacity - 1, carved = s.carved;
  std::string e = expect_disowned(s.start + static_cast<size_t>(index) * 16, 16);
  EXPECT_EQ(e, "") << "block " << index << " of a 16-byte slab that carved only " << carved;
  hak_free(p);
}
