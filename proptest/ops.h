// Operations of the model-based tests, their generators and their effect on
// a HeapModel. One Op is one call (or one burst of calls) to hakmem's prefixed
// API; `pick` selects a live block modulo the live count, so that any prefix
// or shrunk subsequence of a program is still a valid program.
#pragma once

#include <errno.h>
#include <rapidcheck.h>

#include <ostream>
#include <sstream>
#include <string>
#include <vector>

#include "heap_model.h"

namespace prop {

enum class Kind : uint8_t {
  kMalloc,
  kCalloc,
  kRealloc,
  kReallocZero,   // realloc(p, 0): frees p (glibc)
  kFree,
  kAlignedAlloc,
  kPosixMemalign,
  kMemalign,      // any alignment: glibc rounds it up to a power of two; also valloc, pvalloc
  kUsableSize,    // malloc_usable_size, then write every usable byte
  kBurstAlloc,    // `count` blocks of one size: refills, slab carving
  kBurstFree,     // free `count` live blocks, newest or oldest first: flushes, slab release
  kFailing,       // calls that must fail cleanly: overflow, bad alignment, too big
  kTrim,
  kCheckHeap,     // hak_check_heap() == 0 and every live block's header agrees
  // Only in the multi-threaded test:
  kSend,          // hand `count` live blocks to thread `pick2`'s queue
  kReceive,       // take every block waiting in this thread's queue
};

struct Op {
  Kind kind = Kind::kMalloc;
  uint32_t size = 0;
  uint16_t count = 0;
  uint8_t align_log = 0;
  uint8_t seed = 0;
  uint32_t pick = 0;
  uint32_t pick2 = 0;
};

inline const char* kind_name(Kind k) {
  switch (k) {
    case Kind::kMalloc: return "malloc";
    case Kind::kCalloc: return "calloc";
    case Kind::kRealloc: return "realloc";
    case Kind::kReallocZero: return "realloc0";
    case Kind::kFree: return "free";
    case Kind::kAlignedAlloc: return "aligned_alloc";
    case Kind::kPosixMemalign: return "posix_memalign";
    case Kind::kMemalign: return "memalign";
    case Kind::kUsableSize: return "usable_size";
    case Kind::kBurstAlloc: return "burst_alloc";
    case Kind::kBurstFree: return "burst_free";
    case Kind::kFailing: return "failing_call";
    case Kind::kTrim: return "trim";
    case Kind::kCheckHeap: return "check_heap";
    case Kind::kSend: return "send";
    case Kind::kReceive: return "receive";
  }
  return "?";
}

inline void showValue(const Op& op, std::ostream& os) {
  os << kind_name(op.kind) << "{size=" << op.size << " count=" << op.count << " align=2^" << int(op.align_log)
     << " seed=" << int(op.seed) << " pick=" << op.pick << " pick2=" << op.pick2 << "}";
}

// The program as text, one numbered step a line, up to step `last` (the
// Debian build of RapidCheck prints generated vectors as empty lines, so the
// failure messages carry the shrunk program themselves).
inline std::string program_text(const std::vector<Op>& program, size_t last = SIZE_MAX) {
  std::ostringstream os;
  for (size_t i = 0; i < program.size() && i <= last; ++i) {
    os << "\n    " << i << ": ";
    showValue(program[i], os);
  }
  return os.str();
}

// ---------------------------------------------------------------- generators

// Uniform over [lo, hi] whatever the case size (RapidCheck scales ranges by it).
template <typename T>
rc::Gen<T> uniform(T lo, T hi) {
  return rc::gen::resize(100, rc::gen::inRange<T>(lo, hi + 1));
}

inline std::vector<uint32_t> boundary_sizes() {
  std::vector<uint32_t> v = {0, 1, 7, 8, 9, 15, 16, 17, 24, 33, 63, 64, 65, 129, 1023, 1024, 1025,
                             4095, 4096, 4097, 65535, 65536, 65537, 131071, 131072, 131073,
                             262144, 2 * MiB - 1, 2 * MiB, 2 * MiB + 1, 4 * MiB - 4096, 4 * MiB, 4 * MiB + 1};
  for (int c = 0; c < hakmem::kNumClasses; c += 3) {
    uint32_t s = static_cast<uint32_t>(hakmem::class_size(c));
    v.push_back(s);
    v.push_back(s + 1);
  }
  return v;
}

// Sizes over every range, huge rare: tiny 52 %, exact boundaries 10 %,
// mid 25 %, large 10 %, huge 3 %.
inline rc::Gen<uint32_t> gen_size() {
  static const std::vector<uint32_t> edges = boundary_sizes();
  return rc::gen::weightedOneOf<uint32_t>({
      {52, uniform<uint32_t>(0, kTinyMax)},
      {10, rc::gen::elementOf(edges)},
      {25, uniform<uint32_t>(kTinyMax + 1, kMidMax)},
      {10, uniform<uint32_t>(kMidMax + 1, kLargeMax)},
      {3, uniform<uint32_t>(kLargeMax + 1, kHugeTestMax)},
  });
}

// Sizes for bursts: tiny and mid only (hundreds of blocks at once).
inline rc::Gen<uint32_t> gen_burst_size() {
  return rc::gen::weightedOneOf<uint32_t>({
      {70, uniform<uint32_t>(0, kTinyMax)},
      {30, uniform<uint32_t>(kTinyMax + 1, 32 * KiB)},
  });
}

// log2 of an alignment: mostly small, sometimes page and unit sized, rarely
// beyond a segment (which only huge mappings give).
inline rc::Gen<uint8_t> gen_align_log(uint8_t min_log) {
  return rc::gen::weightedOneOf<uint8_t>({
      {60, uniform<uint8_t>(min_log, 8)},
      {30, uniform<uint8_t>(std::max<uint8_t>(min_log, 9), 16)},
      {8, uniform<uint8_t>(17, 21)},
      {2, uniform<uint8_t>(22, 23)},
  });
}

inline rc::Gen<Op> gen_op_of(Kind k, rc::Gen<uint32_t> size, rc::Gen<uint16_t> count, rc::Gen<uint8_t> align_log) {
  return rc::gen::build<Op>(rc::gen::set(&Op::kind, rc::gen::just(k)), rc::gen::set(&Op::size, size),
                            rc::gen::set(&Op::count, count), rc::gen::set(&Op::align_log, align_log),
                            rc::gen::set(&Op::seed, rc::gen::arbitrary<uint8_t>()),
                            rc::gen::set(&Op::pick, rc::gen::arbitrary<uint32_t>()),
                            rc::gen::set(&Op::pick2, rc::gen::arbitrary<uint32_t>()));
}

inline rc::Gen<Op> gen_op(bool threaded) {
  using rc::gen::just;
  auto z16 = just<uint16_t>(0);
  auto z8 = just<uint8_t>(0);
  auto z32 = just<uint32_t>(0);
  std::initializer_list<std::pair<std::size_t, rc::Gen<Op>>> base = {
      {22, gen_op_of(Kind::kMalloc, gen_size(), z16, z8)},
      {6, gen_op_of(Kind::kCalloc, gen_size(), uniform<uint16_t>(1, 9), z8)},
      {10, gen_op_of(Kind::kRealloc, gen_size(), z16, z8)},
      {1, gen_op_of(Kind::kReallocZero, z32, z16, z8)},
      {20, gen_op_of(Kind::kFree, z32, z16, z8)},
      {4, gen_op_of(Kind::kAlignedAlloc, gen_size(), z16, gen_align_log(0))},
      {4, gen_op_of(Kind::kPosixMemalign, gen_size(), z16, gen_align_log(3))},
      {3, gen_op_of(Kind::kMemalign, gen_size(), uniform<uint16_t>(0, 5), gen_align_log(0))},
      {4, gen_op_of(Kind::kUsableSize, z32, z16, z8)},
      {4, gen_op_of(Kind::kBurstAlloc, gen_burst_size(), uniform<uint16_t>(1, 300), z8)},
      {4, gen_op_of(Kind::kBurstFree, z32, uniform<uint16_t>(1, 300), z8)},
      {2, gen_op_of(Kind::kFailing, z32, uniform<uint16_t>(0, 5), z8)},
      {1, gen_op_of(Kind::kTrim, z32, z16, z8)},
      {2, gen_op_of(Kind::kCheckHeap, z32, z16, z8)},
  };
  if (!threaded) return rc::gen::weightedOneOf<Op>(base);
  return rc::gen::weightedOneOf<Op>({
      {22, gen_op_of(Kind::kMalloc, gen_size(), z16, z8)},
      {5, gen_op_of(Kind::kCalloc, gen_size(), uniform<uint16_t>(1, 9), z8)},
      {8, gen_op_of(Kind::kRealloc, gen_size(), z16, z8)},
      {18, gen_op_of(Kind::kFree, z32, z16, z8)},
      {3, gen_op_of(Kind::kAlignedAlloc, gen_size(), z16, gen_align_log(0))},
      {3, gen_op_of(Kind::kPosixMemalign, gen_size(), z16, gen_align_log(3))},
      {3, gen_op_of(Kind::kUsableSize, z32, z16, z8)},
      {6, gen_op_of(Kind::kBurstAlloc, gen_burst_size(), uniform<uint16_t>(1, 300), z8)},
      {4, gen_op_of(Kind::kBurstFree, z32, uniform<uint16_t>(1, 300), z8)},
      {14, gen_op_of(Kind::kSend, z32, uniform<uint16_t>(1, 200), z8)},
      {10, gen_op_of(Kind::kReceive, z32, z16, z8)},
      {1, gen_op_of(Kind::kTrim, z32, z16, z8)},        // while the other threads allocate
      {2, gen_op_of(Kind::kCheckHeap, z32, z16, z8)},   // ditto: it takes every class lock
  });
}

inline rc::Gen<std::vector<Op>> gen_program(bool threaded, double scale) {
  return rc::gen::scale(scale, rc::gen::container<std::vector<Op>>(gen_op(threaded)));
}

// ---------------------------------------------------------------- execution

// Applies one operation. Send and Receive belong to the threaded runner.
inline void apply(HeapModel& m, const Op& op) {
  switch (op.kind) {
    case Kind::kMalloc:
      m.adopt_new(hak_malloc(op.size), op.size, 0, expect_malloc(op.size), op.seed, false, "malloc");
      break;
    case Kind::kCalloc: {
      size_t count = op.count == 0 ? 1 : op.count;
      size_t elem = op.size / count;
      size_t total = count * elem;
      m.adopt_new(hak_calloc(count, elem), total, 0, expect_malloc(total), op.seed, true, "calloc");
      break;
    }
    case Kind::kRealloc:
      if (m.empty()) {  // realloc(NULL, n) is malloc(n)
        m.adopt_new(hak_realloc(nullptr, op.size), op.size, 0, expect_malloc(op.size), op.seed, false, "realloc(NULL)");
      } else {
        m.realloc_block(m.at(op.pick), op.size, op.seed);
      }
      break;
    case Kind::kReallocZero:
      if (!m.empty()) m.realloc_block(m.at(op.pick), 0, op.seed);
      break;
    case Kind::kFree:
      if (m.empty()) hak_free(nullptr); else m.free_block(m.at(op.pick), (op.pick2 & 1) != 0);
      break;
    case Kind::kAlignedAlloc: {
      size_t align = size_t{1} << op.align_log;
      m.adopt_new(hak_aligned_alloc(align, op.size), op.size, align, expect_aligned(align, op.size), op.seed, false,
                  "aligned_alloc");
      break;
    }
    case Kind::kPosixMemalign: {
      size_t align = size_t{1} << op.align_log;
      void* p = reinterpret_cast<void*>(uintptr_t{0xdead});
      int rc = hak_posix_memalign(&p, align, op.size);
      if (rc != 0) fail("posix_memalign(%zu, %zu) returned %d", align, static_cast<size_t>(op.size), rc);
      m.adopt_new(p, op.size, align, expect_aligned(align, op.size), op.seed, false, "posix_memalign");
      break;
    }
    case Kind::kMemalign: {
      if (op.count % 6 == 4) {  // valloc: page aligned
        m.adopt_new(hak_valloc(op.size), op.size, kPageSize, expect_aligned(kPageSize, op.size), op.seed, false, "valloc");
        break;
      }
      if (op.count % 6 == 5) {  // pvalloc: page aligned, whole pages (at least one)
        size_t n = (static_cast<size_t>(op.size) + kPageSize - 1) / kPageSize * kPageSize;
        if (n == 0) n = kPageSize;
        m.adopt_new(hak_pvalloc(op.size), n, kPageSize, expect_aligned(kPageSize, n), op.seed, false, "pvalloc");
        break;
      }
      // count 0: a power of two; 1: one more than it (rounded up); 2: zero (treated as 1); 3: one less.
      size_t pow = size_t{1} << op.align_log;
      size_t asked = op.count == 0 ? pow : op.count == 1 ? pow + 1 : op.count == 2 ? 0 : pow - 1;
      size_t align = asked == 0 ? 1 : (asked & (asked - 1)) == 0 ? asked : size_t{1} << (64 - __builtin_clzll(asked));
      m.adopt_new(hak_memalign(asked, op.size), op.size, align, expect_aligned(align, op.size), op.seed, false, "memalign");
      break;
    }
    case Kind::kUsableSize:
      if (!m.empty()) m.use_whole_block(m.at(op.pick));
      if (hak_malloc_usable_size(nullptr) != 0) fail("malloc_usable_size(NULL) != 0");
      break;
    case Kind::kBurstAlloc:
      for (uint16_t i = 0; i < op.count; ++i)
        m.adopt_new(hak_malloc(op.size), op.size, 0, expect_malloc(op.size), static_cast<uint8_t>(op.seed + i), false,
                    "malloc (burst)");
      break;
    case Kind::kBurstFree:
      for (uint16_t i = 0; i < op.count && !m.empty(); ++i) {
        // pick % 3: newest first (LIFO), oldest first (FIFO), or every other one.
        size_t n = m.live();
        size_t idx = op.pick % 3 == 0 ? n - 1 : op.pick % 3 == 1 ? 0 : (static_cast<size_t>(i) * 2) % n;
        m.free_block(m.at(idx));
      }
      break;
    case Kind::kFailing: {
      errno = 0;
      switch (op.count % 6) {
        case 0:
          if (hak_calloc(SIZE_MAX / 2, 3) != nullptr || errno != ENOMEM) fail("calloc overflow did not fail with ENOMEM");
          break;
        case 1:
          if (hak_malloc(SIZE_MAX - 4096) != nullptr || errno != ENOMEM) fail("malloc(SIZE_MAX - 4096) did not fail with ENOMEM");
          break;
        case 2:
          if (hak_aligned_alloc(24, 100) != nullptr || errno != EINVAL) fail("aligned_alloc(24, 100) did not fail with EINVAL");
          break;
        case 3: {
          void* p = reinterpret_cast<void*>(uintptr_t{0x1234});
          if (hak_posix_memalign(&p, 4, 100) != EINVAL || p != reinterpret_cast<void*>(uintptr_t{0x1234}))
            fail("posix_memalign(4) did not return EINVAL and leave *out alone");
          if (hak_posix_memalign(&p, 48, 100) != EINVAL) fail("posix_memalign(48) did not return EINVAL");
          break;
        }
        case 4:
          if (!m.empty()) {  // a failed realloc leaves the block alone
            void* p = m.at(op.pick);
            if (hak_realloc(p, SIZE_MAX - 4096) != nullptr || errno != ENOMEM) fail("realloc(p, SIZE_MAX - 4096) did not fail");
            m.verify_full(p, m.block(p), "block after a failed realloc");
          }
          break;
        case 5:
          if (hak_reallocarray(nullptr, SIZE_MAX / 4, 8) != nullptr || errno != ENOMEM) fail("reallocarray overflow did not fail");
          break;
      }
      break;
    }
    case Kind::kTrim:
      hak_trim();
      break;
    case Kind::kCheckHeap: {
      int faults = hak_check_heap();
      if (faults != 0) fail("hak_check_heap() = %d", faults);
      m.check_headers();
      break;
    }
    case Kind::kSend:
    case Kind::kReceive:
      break;
  }
}

}  // namespace prop
