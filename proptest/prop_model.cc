// Model-based property tests, one thread: random programs of malloc, calloc,
// realloc, free, aligned_alloc, posix_memalign, memalign, malloc_usable_size,
// bursts, failing calls and trims over every size range, run against hakmem's
// prefixed API and checked step by step against prop::HeapModel.
//
// Reproduce a failure with the seed RapidCheck prints:
//   RC_PARAMS="seed=N" build/release/proptest/prop_model --gtest_filter=...
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <sstream>

#include "ops.h"

namespace {

using prop::HeapModel;
using prop::Op;

std::string describe(size_t step, const Op& op) {
  std::ostringstream os;
  os << "step " << step << " ";
  prop::showValue(op, os);
  return os.str();
}

void expect_heap_consistent(const char* when) {
  int faults = hak_check_heap();
  if (faults != 0) prop::fail("%s: hak_check_heap() = %d", when, faults);
}

// Runs a program; `headers_every_step` adds the header walk after each step.
void run_program(const std::vector<Op>& program, bool headers_every_step) {
  static const bool trace = getenv("PROP_TRACE") != nullptr;  // PROP_TRACE=1: each step on stderr (for crashes)
  if (trace) fprintf(stderr, "-- program of %zu steps\n", program.size());
  HeapModel m;
  for (size_t i = 0; i < program.size(); ++i) {
    if (trace) fprintf(stderr, "%s\n", describe(i, program[i]).c_str());
    try {
      prop::apply(m, program[i]);
      m.verify_sampled("after the step");
      if (headers_every_step) {
        m.check_headers();
        expect_heap_consistent("after the step");
      }
    } catch (const prop::ModelFailure& e) {
      RC_FAIL(describe(i, program[i]) + ": " + e.what() + "\n  program:" + prop::program_text(program, i));
    }
  }
  try {
    m.verify_all("end of program");
    m.check_headers();
    expect_heap_consistent("end of program, blocks live");
    m.release_all();
    expect_heap_consistent("end of program, all freed");
  } catch (const prop::ModelFailure& e) {
    RC_FAIL(std::string("end of program: ") + e.what() + "\n  program:" + prop::program_text(program));
  }
}

}  // namespace

RC_GTEST_PROP(HeapModel, RandomProgramsKeepEveryPromise, ()) {
  const auto program = *prop::gen_program(false, 2.5);
  RC_CLASSIFY(program.size() > 150, "over 150 steps");
  run_program(program, false);
}

// The same programs with the header walk (unit tags, slab descriptors, used
// counts, hak_check_heap) after every step, not only at the end.
RC_GTEST_PROP(HeaderIntegrity, TagsAndSlabCountsAgreeAfterEveryStep, ()) {
  const auto program = *prop::gen_program(false, 0.6);
  run_program(program, true);
}

// Lots of one class at a time: refills, flushes to the central pool, slabs
// filling up and emptying, and the headers checked between waves.
RC_GTEST_PROP(HeaderIntegrity, SlabChurnOfOneClass, ()) {
  const uint32_t size = *prop::gen_burst_size();
  const auto waves = *rc::gen::scale(0.2, rc::gen::container<std::vector<std::pair<uint16_t, uint16_t>>>(
      rc::gen::pair(prop::uniform<uint16_t>(1, 800), prop::uniform<uint16_t>(0, 800))));
  HeapModel m;
  try {
    uint8_t seed = 1;
    for (const auto& w : waves) {
      for (uint16_t i = 0; i < w.first; ++i)
        m.adopt_new(hak_malloc(size), size, 0, prop::expect_malloc(size), seed++, false, "malloc");
      for (uint16_t i = 0; i < w.second && !m.empty(); ++i) m.free_block(m.at(static_cast<size_t>(i) * 7919));
      m.check_headers();
      expect_heap_consistent("after a wave");
    }
    m.verify_all("end");
    m.release_all();
    expect_heap_consistent("all freed");
  } catch (const prop::ModelFailure& e) {
    std::string w;
    for (const auto& x : waves) w += " +" + std::to_string(x.first) + "/-" + std::to_string(x.second);
    RC_FAIL(std::string("size ") + std::to_string(size) + ", waves" + w + ": " + e.what());
  }
}

// A few fixed programs that must always pass (quick smoke for the runner itself).
TEST(HeapModelFixed, EverySizeRangeOnce) {
  HeapModel m;
  uint8_t seed = 0;
  for (size_t n : {size_t{0}, size_t{1}, size_t{8}, size_t{9}, size_t{1024}, size_t{1025}, size_t{128 * 1024},
                   size_t{128 * 1024 + 1}, size_t{2 << 20}, size_t{(2 << 20) + 1}, size_t{5 << 20}})
    m.adopt_new(hak_malloc(n), n, 0, prop::expect_malloc(n), seed++, false, "malloc");
  EXPECT_NO_THROW(m.check_headers());
  EXPECT_NO_THROW(m.verify_all("fixed"));
  EXPECT_EQ(hak_check_heap(), 0);
  EXPECT_NO_THROW(m.release_all());
  EXPECT_EQ(hak_check_heap(), 0);
}

// Every alignment from 1 to 8 MiB with sizes 0, 1 and 100, through each
// aligned entry point: a block hakmem owns, with a usable size, that free() takes back.
TEST(HeapModelFixed, EveryAlignmentWithTinySizes) {
  for (int log = 0; log <= 23; ++log) {
    size_t align = size_t{1} << log;
    for (size_t n : {size_t{0}, size_t{1}, size_t{100}}) {
      SCOPED_TRACE(testing::Message() << "align " << align << ", size " << n);
      HeapModel m;
      EXPECT_NO_THROW(m.adopt_new(hak_aligned_alloc(align, n), n, align, prop::expect_aligned(align, n), 1, false,
                                  "aligned_alloc"));
      EXPECT_NO_THROW(m.adopt_new(hak_memalign(align, n), n, align, prop::expect_aligned(align, n), 2, false, "memalign"));
      if (align >= sizeof(void*)) {
        void* p = nullptr;
        ASSERT_EQ(hak_posix_memalign(&p, align, n), 0);
        EXPECT_NO_THROW(m.adopt_new(p, n, align, prop::expect_aligned(align, n), 3, false, "posix_memalign"));
      }
      EXPECT_NO_THROW(m.check_headers());
      uint64_t bad_before = 0, bad_after = 0;
      hak_stats s;
      hak_stats_get(&s);
      bad_before = s.invalid_frees + s.foreign_frees;
      EXPECT_NO_THROW(m.release_all());
      hak_stats_get(&s);
      bad_after = s.invalid_frees + s.foreign_frees;
      EXPECT_EQ(bad_after, bad_before) << "free() rejected a block the aligned entry points handed out";
    }
  }
  EXPECT_EQ(hak_check_heap(), 0);
}
