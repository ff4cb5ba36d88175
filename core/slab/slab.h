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

// A unit's entry in its segment header: everything free() needs, so that
// free reads one 32-byte entry and never touches the block before it has
// proved that the pointer is a block hakmem handed out.
struct UnitEntry {
  // Minus the address of the first unit of this unit's run (0: free unit).
  // Negated so that it is no pointer to a block: memcheck's leak checker
  // would take it for one, and a leaked first block of a slab would pass
  // for reachable. free() adds it instead of subtracting: the same cost.
  uintptr_t minus_run_start;
  // Slab units: the class's ClassInfo::check_c. 0 in every other unit, which
  // makes the block test below fail for any pointer into it.
  uint64_t check_c;
  // Slab units: carved * check_step, where the slab's first `carved` blocks
  // have been handed out at least once. Grows while the slab lives; written
  // under the class lock, read by free() without one (relaxed atomics: a
  // freed block was carved before it was handed out).
  uint64_t check_limit;
  // Slab units: the thread pointer's distance to the TLS bin of the class
  // (backend_init), the same in every thread: free() finds the
  // bin with one add instead of class -> bin arithmetic.
  int32_t free_route;
  uint8_t tag;
  uint8_t reserved[3];
};
static_assert(sizeof(UnitEntry) == 32, "an entry is indexed with one shift");
HAK_INLINE int entry_first_unit(const UnitEntry& e) {
  return static_cast<int>(((0 - e.minus_run_start) & kSegmentMask) >> kUnitShift);
}
HAK_INLINE uint64_t entry_check_limit(const UnitEntry& e) { return __atomic_load_n(&e.check_limit, __ATOMIC_RELAXED); }

// Is `addr`, in the unit that `info` describes, the start of a slab block
// that was handed out at least once? class_block_test with the class's
// numbers kept in the entry: one multiply and one compare reject interior
// pointers, blocks never carved, the slab's slack, large spans and free
// units alike. free() asks this on every call, before it writes anything
// into the block.
HAK_INLINE bool entry_is_block_start(const UnitEntry& info, uintptr_t addr) {
  return block_offset_test(addr + info.minus_run_start, info.check_c, entry_check_limit(info));
}

struct Segment {
  // The entries of this segment's units: a slice of the arena's entry table
  // (see the segment arena below), or own_units for a segment outside it.
  UnitEntry* units;
  uint64_t used_mask;                    // bit u: unit u belongs to a run (bit 0: the header)
  uint64_t dirty_mask;                   // free units whose pages may still be resident
  uint64_t dirty_since_ms;               // when the oldest dirty unit was released
  Segment* next;                         // all segments, most recently used first
  Segment* prev;
  Slab slabs[kUnitsPerSegment];
  UnitEntry own_units[kUnitsPerSegment];
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

// ---- The segment arena ----
// One reservation of address space that segments are committed from first,
// laid out as [entry table | segments]. The table holds a UnitEntry for every
// 64 KiB unit of the arena, at base + (unit index) * 32: free() finds a
// pointer's entry from the pointer alone, with one subtraction and one
// compare to prove the pointer lies in the arena, where the segment map
// costs a shift, a bounds check, a table load and the address arithmetic of
// a header (6 of the hot path's instructions per free; bench/callgrind).
// The table is committed as the heap grows; a part of it that no live
// segment uses reads as zeros, and an all-zero entry fails the block test,
// so a stray pointer into an unused part of the arena is still rejected.
// Segments past the arena (it is full, or there is none: HAKMEM_ARENA=0, or
// an address-space limit) keep their entries in their own header and are
// reached through the segment map, on free's slow path.
// Written once, by backend_init, before the first segment exists; a free()
// that reads the zeros from before sends its pointer to the slow path, the
// right place for every pointer then. Two plain variables, not a struct:
// each is then one RIP-relative operand on the hot path.
extern uintptr_t g_arena_base HAK_INTERNAL;
extern uintptr_t g_arena_size HAK_INTERNAL;  // 0 until backend_init, and when there is no arena

// Whether `addr` lies in the arena; if so, `entry` is its unit's entry
// (which may be all zeros: no segment there).
HAK_INLINE bool arena_unit_entry(uintptr_t addr, const UnitEntry*& entry) {
  const uintptr_t base = g_arena_base;
  const uintptr_t offset = addr - base;
  entry = reinterpret_cast<const UnitEntry*>(base + (offset >> kUnitShift) * sizeof(UnitEntry));
  return offset < g_arena_size;
}

// Reserves the arena, the largest power of two of at most `arena_max`
// bytes (and 1 TiB) that the kernel grants (none when that is below 8 MiB,
// or under an address-space limit, which reserved space would count
// against), and remembers where
// free() finds each class's TLS bin: free_routes[c] is the bin's distance
// from the thread pointer (UnitEntry::free_route). Called once, at init.
void backend_init(uint64_t arena_max, const int32_t free_routes[kNumClasses]);

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
  uint64_t arena_base, arena_bytes;
  uint64_t segments_outside_arena;
};
void backend_stats(BackendStats* out);
// Walks every segment and checks that tags, first-unit links, masks and slab
// counts agree. Returns the number of inconsistencies, writing the first to stderr.
int backend_check_integrity();

}  // namespace hakmem
