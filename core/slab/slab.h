// Slab & segment backend.
//
// Segments are 4 MiB reservations aligned to 4 MiB. Unit 0 (64 KiB) holds the
// segment header; units 1..63 are handed out as runs: a slab (blocks of one
// size class) or a large span (one block). Each unit has an entry in the
// header: its tag byte (0x80 + class for slab units, kTagLarge / kTagLargeTail
// for spans, 0 for free units: DESIGN.md §3) and the offset of its run's start. free() masks a pointer down to its
// segment, checks the global segment map, reads the unit entry and knows the
// class and the slab start without touching the block: O(1), out of band.
#pragma once

#include "base/base.h"
#include "size_class/size_class.h"

namespace hakmem {

constexpr size_t kSegmentShift = 22;
constexpr size_t kSegmentSize = size_t{1} << kSegmentShift;
constexpr uintptr_t kSegmentMask = kSegmentSize - 1;
constexpr int kUnitsPerSegment = static_cast<int>(kSegmentSize / kUnitSize);
constexpr size_t kAddressBits = 47;  // x86_64 user space without 5-level hints
constexpr size_t kSegmapSlots = size_t{1} << (kAddressBits - kSegmentShift);

// One byte per 4 MiB slot of the address space: what lives there.
enum SegmapKind : uint8_t {
  kSlotForeign = 0,   // not hakmem's
  kSlotSegment = 1,   // a segment; its header is at the slot base
  kSlotHuge = 2,      // the user pointer of a huge mapping; header one page below it
};
// 32 MiB of zero-initialised BSS; only the pages covering used slots are ever
// touched, so it costs a few KiB of RSS.
extern uint8_t g_segmap[kSegmapSlots];

constexpr uint8_t kTagFree = 0x00;
constexpr uint8_t kTagSlabMagic = 0x80;   // 0x80 + class (tiny: 0x80..0x94, mid: 0x95..0xB0)
constexpr uint8_t kTagLarge = 0xC0;       // first unit of a large span
constexpr uint8_t kTagLargeTail = 0xC1;   // further units of a large span
// One subtraction and one unsigned compare both verify a slab tag and yield
// its class: every other tag value lands at or above kNumClasses.
HAK_INLINE bool tag_is_slab(uint8_t tag) { return static_cast<uint8_t>(tag - kTagSlabMagic) < kNumClasses; }
HAK_INLINE unsigned tag_class(uint8_t tag) { return static_cast<uint8_t>(tag - kTagSlabMagic); }
HAK_INLINE uint8_t slab_tag(int cls) { return static_cast<uint8_t>(kTagSlabMagic + cls); }

// The block-boundary divisor (ClassInfo::divisor_c) of the class a tag names,
// and 0 for every tag that names no slab class. free() indexes this with the
// raw tag: "off * c < c" is false when c is 0, so one test rejects both
// non-slab units and interior pointers.
struct TagDivisors {
  uint64_t by_tag[256];
};
constexpr TagDivisors build_tag_divisors() {
  TagDivisors t{};
  for (int c = 0; c < kNumClasses; ++c) t.by_tag[kTagSlabMagic + c] = class_info(c).divisor_c;
  return t;
}
inline constexpr TagDivisors kTagDivisors = build_tag_divisors();

enum class RunKind : uint8_t { kFree = 0, kSlab = 1, kLarge = 2 };

// Descriptor of a run of units, stored at the index of its first unit.
struct Slab {
  void* free_list;         // blocks given back to this slab, linked through word 0
  uint32_t free_count;
  uint32_t carved;         // bump pointer: blocks [0, carved) have been handed out once
  uint32_t used;           // blocks outside the slab: in TLS lists, the central pool or user hands
  uint32_t capacity;
  Slab* next;              // the class's list of slabs with free blocks
  Slab* prev;
  size_t large_size;       // large spans: the usable size
  uint16_t units;
  uint8_t cls;
  RunKind kind;
  bool on_partial_list;
};

struct UnitEntry {
  uint32_t run_offset;  // bytes from the segment start to the first unit of this unit's run
  // Slabs: bytes from the segment start to the end of the last block ever
  // carved. free() accepts only blocks below it, so a pointer to a block
  // never handed out (or into the slab's slack) is rejected. Grows while the
  // slab lives; written under the class lock, read by free() without one
  // (relaxed atomics: a freed block was carved before it was handed out).
  uint32_t carved_end;
  uint8_t tag;
  uint8_t reserved[7];
};
static_assert(sizeof(UnitEntry) == 16, "an entry is indexed with one shift");
HAK_INLINE uint32_t entry_carved_end(const UnitEntry& e) { return __atomic_load_n(&e.carved_end, __ATOMIC_RELAXED); }
HAK_INLINE int entry_first_unit(const UnitEntry& e) { return static_cast<int>(e.run_offset >> kUnitShift); }

// Is `addr`, in the unit that `info` describes, the start of a slab block
// that was handed out at least once? On a block boundary of its run (one
// multiply instead of a division, see ClassInfo; a tag that names no class
// has divisor 0 and fails too, so large spans, free units and interior
// pointers all fail), and below the slab's carve line. free() asks this on
// every call, before it writes anything into the block.
HAK_INLINE bool entry_is_block_start(const UnitEntry& info, uintptr_t addr) {
  uint64_t divisor_c = kTagDivisors.by_tag[info.tag];
  uint32_t in_segment = static_cast<uint32_t>(addr & kSegmentMask);
  uint64_t offset = in_segment - info.run_offset;
  if (offset * divisor_c >= divisor_c) return false;
  return in_segment < entry_carved_end(info);
}

struct Segment {
  UnitEntry units[kUnitsPerSegment];
  uint64_t used_mask;                    // bit u: unit u belongs to a run (bit 0: the header)
  uint64_t dirty_mask;                   // free units whose pages may still be resident
  uint64_t dirty_since_ms;               // when the oldest dirty unit was released
  Segment* next;                         // all segments, most recently used first
  Segment* prev;
  Slab slabs[kUnitsPerSegment];
};
static_assert(sizeof(Segment) <= kUnitSize, "the header fits in unit 0");

HAK_INLINE size_t segmap_slot(const void* p) { return reinterpret_cast<uintptr_t>(p) >> kSegmentShift; }
HAK_INLINE Segment* segment_of(const void* p) {
  return reinterpret_cast<Segment*>(reinterpret_cast<uintptr_t>(p) & ~kSegmentMask);
}
HAK_INLINE int unit_of(const void* p) {
  return static_cast<int>((reinterpret_cast<uintptr_t>(p) >> kUnitShift) & (kUnitsPerSegment - 1));
}
HAK_INLINE char* unit_address(Segment* s, int unit) {
  return reinterpret_cast<char*>(s) + (static_cast<size_t>(unit) << kUnitShift);
}
// The segment holding p if p lies in a hakmem segment, else nullptr.
HAK_INLINE Segment* segment_lookup(const void* p) {
  size_t slot = segmap_slot(p);
  if (slot >= kSegmapSlots || g_segmap[slot] != kSlotSegment) return nullptr;
  return segment_of(p);
}

// ---- Runs of units (backend; takes the backend lock itself) ----
// A run of `units` units starting at a multiple of `align_units`, tagged for
// `kind` (and `cls` for slabs), its descriptor complete (slab capacity, span
// size) before any other thread can see it. nullptr when out of memory.
// *zeroed (when given) tells whether every unit of the run reads as zero:
// fresh from the kernel or purged since its last use.
Slab* backend_alloc_run(uint32_t units, uint32_t align_units, RunKind kind, int cls, bool* zeroed = nullptr);
// Gives a run back to its segment; its pages go to the OS after the decay.
void backend_free_run(Slab* run);
// Grows or shrinks a large span where it stands: growing takes the free
// units right after it (false, and nothing changes, when they are not all
// free), shrinking gives its tail units back. Backend lock taken inside.
bool backend_resize_run(Slab* run, uint32_t new_units);
Segment* slab_segment(const Slab* run);
int slab_first_unit(const Slab* run);
HAK_INLINE char* slab_start(Slab* run) { return unit_address(slab_segment(run), slab_first_unit(run)); }
// Purges dirty units older than the decay (all of them when `force`) and
// unmaps empty segments (malloc_trim()).
void backend_purge(bool force);
// The same without `force`, unless another thread holds the backend: the
// front's decay poll, which must never wait.
void backend_decay();
// Serialises the backend across fork() (see front).
void backend_fork_prepare();
void backend_fork_parent();
void backend_fork_child();

// ---- Slabs of one class (caller holds that class's central lock) ----
// Takes up to `want` free blocks of class `cls` from its slabs (returned
// blocks first, then fresh ones by bump pointer, then a new slab), linked
// through word 0. Returns the number taken; 0 only when memory is exhausted.
uint32_t slab_take_blocks(int cls, uint32_t want, void** head);
// Returns `count` blocks (a list linked through word 0) to their slabs; a
// slab that becomes empty goes back to the backend.
void slab_return_blocks(int cls, void* head, uint32_t count);

// ---- Inspection (tests, stats, contracts) ----
struct BackendStats {
  uint64_t segments;
  uint64_t bytes_mapped;     // segments, headers included
  uint64_t bytes_dirty;      // free units not yet returned
  uint64_t bytes_returned;   // cumulative: purged or unmapped
  uint64_t slabs[kNumClasses];
};
void backend_stats(BackendStats* out);
// Walks every segment and checks that tags, first-unit links, masks and slab
// counts agree. Returns the number of inconsistencies, writing the first to stderr.
int backend_check_integrity();

}  // namespace hakmem
