// Run & segment backend.
//
// Segments are 4 MiB reservations aligned to 4 MiB. Units 1..63 (64 KiB
// each) are handed out as runs: a slab (blocks of one size class) or a large
// span (one block); unit 0 holds no blocks. Each unit has an entry (its tag
// byte: 0x80 + class for slab units, kTagLarge / kTagLargeTail for spans, 0
// for free units: DESIGN.md §3, and the numbers free() needs), and each
// segment a header (run descriptors, masks). free() finds a pointer's entry
// from the pointer alone and knows the class and the slab start without
// touching the block: O(1), out of band.
//
// Metadata an overflow cannot reach. Segments in the segment arena (below)
// keep every byte of their metadata -- entries, headers, and the segment map
// -- in one separate reservation at a random address (the metadata region),
// and their unit 0 is never committed: a PROT_NONE gap of 64 KiB before each
// segment's first block, so a linear overflow off one segment's last block
// faults instead of running into the next segment. Nothing free() acts on is
// a pointer read from the heap's neighbourhood: the entry comes from the
// arena offset, the thread's bin from the class (UnitEntry::bin_offset,
// masked into the bins), the header from the slot number. Segments outside
// the arena (HAKMEM_ARENA=0, an address-space limit, or a full arena) keep
// their header and entries in their own unit 0, as a fallback.
#pragma once

#include <atomic>

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
  kSlotSegment = 1,   // a segment
  kSlotHuge = 2,      // the user pointer of a huge mapping (large box)
};
struct UnitEntry;

// Where the backend's metadata is: written once, by backend_init, before the
// first segment exists, then sealed (HAK_SEALED_PAGE): every free() trusts
// these values. Members of one struct, each still one RIP-relative operand
// on the hot path.
struct HAK_SEALED_PAGE ArenaLayout {
  uintptr_t base;          // the segment arena (0 without one)
  uintptr_t size;          // 0 until backend_init, and when there is no arena
  uintptr_t entry_bias;    // the entry table's address minus (base >> 16) * 32
  uintptr_t headers_base;  // arena segments' headers, kHeaderStride per slot
  uintptr_t entry_table;   // the table's first entry: the arena's first unit
  // The segment map: in the metadata region once the backend is
  // initialised (a zero-filled array in the library's BSS before that, and
  // when the region cannot be had). Only the pages covering used slots are
  // ever touched.
  uint8_t* segmap;
  uint16_t bin_offsets[kNumClasses];  // UnitEntry::bin_offset of each class
};
extern ArenaLayout g_arena HAK_INTERNAL;

HAK_INLINE size_t segmap_slot(const void* p) { return reinterpret_cast<uintptr_t>(p) >> kSegmentShift; }
// Written under the backend lock (segments) or for a huge block that only
// its owner can name; read without a lock by the slow paths. Relaxed atomic
// bytes (plain moves on x86_64): one thread's munmap of a huge block and
// another's mmap that gets the same address order the two writes of its
// slot through the kernel, which no lock shows to ThreadSanitizer.
HAK_INLINE uint8_t segmap_kind(const void* p) {
  size_t slot = segmap_slot(p);
  return slot < kSegmapSlots ? __atomic_load_n(&g_arena.segmap[slot], __ATOMIC_RELAXED)
                             : static_cast<uint8_t>(kSlotForeign);
}
// The large box's huge blocks in the segment map, the one writer outside
// this box: a huge block's user pointer marks its slot while the block
// lives. A slot holds a huge block or a segment, never both (segments fill
// their aligned slot whole); marking a slot that is not foreign, or
// clearing one that holds no huge block, is a fault in hakmem's metadata
// and stops the program.
void segmap_mark_huge(const void* user);
void segmap_clear_huge(const void* user);

constexpr uint8_t kTagFree = 0x00;
constexpr uint8_t kTagSlabMagic = 0x80;   // 0x80 + class (tiny: 0x80..0x94, mid: 0x95..0xB0, aligned: 0xB1..0xBF)
constexpr uint8_t kTagLarge = 0xC0;       // first unit of a large span
constexpr uint8_t kTagLargeTail = 0xC1;   // further units of a large span
// First unit of a large span that its program freed and a thread keeps for
// reuse (span_park): every lookup, free() included, takes it for no block.
constexpr uint8_t kTagLargeParked = 0xC2;
// One subtraction and one unsigned compare both verify a slab tag and yield
// its class: every other tag value lands at or above kNumClasses.
HAK_INLINE bool tag_is_slab(uint8_t tag) { return static_cast<uint8_t>(tag - kTagSlabMagic) < kNumClasses; }
HAK_INLINE unsigned tag_class(uint8_t tag) { return static_cast<uint8_t>(tag - kTagSlabMagic); }
HAK_INLINE uint8_t slab_tag(int cls) { return static_cast<uint8_t>(kTagSlabMagic + cls); }

enum class RunKind : uint8_t { kFree = 0, kSlab = 1, kLarge = 2 };

// Descriptor of a run of units -- a slab (blocks of one class) or a large
// span (one block) -- kept in its segment's header at the index of its
// first unit. The block fields are a slab's, large_size a span's.
struct Run {
  void* free_list;         // blocks given back to this slab, linked through word 0
  uint32_t free_count;
  uint32_t carved;         // bump pointer: blocks [0, carved) have been handed out once
  uint32_t used;           // blocks outside the slab: in TLS lists, the central pool or user hands
  uint32_t capacity;
  Run* next;               // the class's list of slabs with free blocks (SlabClass)
  Run* prev;
  size_t large_size;       // large spans: the usable size
  uint16_t units;
  uint8_t cls;
  RunKind kind;
  bool on_partial_list;
  // Decay passes since a block last came back to this slab's free list
  // (slab_purge_free_pages); kFreePagesPurged once their pages are gone.
  uint8_t quiet_passes;
};

// A unit's entry: everything free() needs, so that free reads one 32-byte
// entry and never touches the block before it has proved that the pointer
// is a block hakmem handed out.
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
  // Slab units: the class's bin's byte offset in the thread cache
  // (tls_bin_offset_of_class). free() masks it into the bins
  // (tls_bin_by_offset), so even a forged entry can aim a push at nothing
  // but one of the calling thread's own bins.
  uint16_t bin_offset;
  uint8_t tag;
  uint8_t reserved[5];
};
static_assert(sizeof(UnitEntry) == 32, "an entry is indexed with one shift");
HAK_INLINE int entry_first_unit(const UnitEntry& e) {
  return static_cast<int>(((0 - e.minus_run_start) & kSegmentMask) >> kUnitShift);
}
HAK_INLINE uint64_t entry_check_limit(const UnitEntry& e) { return __atomic_load_n(&e.check_limit, __ATOMIC_RELAXED); }
// A span's first tag changes without the backend lock (span_park): the
// heap walks read tags through this.
HAK_INLINE uint8_t entry_tag(const UnitEntry& e) { return __atomic_load_n(&e.tag, __ATOMIC_RELAXED); }

// Is `addr`, in the unit that `info` describes, the start of a slab block
// that was handed out at least once? class_block_test with the class's
// numbers kept in the entry: one multiply and one compare reject interior
// pointers, blocks never carved, the slab's slack, large spans and free
// units alike. free() asks this on every call, before it writes anything
// into the block.
HAK_INLINE bool entry_is_block_start(const UnitEntry& info, uintptr_t addr) {
#if defined(__x86_64__) && !defined(__SANITIZE_THREAD__)
  // block_offset_test, its relaxed load of the limit written as the compare's
  // memory operand: an aligned 8-byte load is atomic on x86-64, and compilers
  // never fold an atomic load into an instruction (one more per free).
  // ThreadSanitizer builds keep the atomic, which it understands.
  const uint64_t product = (addr + info.minus_run_start) * info.check_c;
  bool below;
  asm("cmpq %2, %1" : "=@ccb"(below) : "r"(product), "m"(info.check_limit));
  return below;
#else
  return block_offset_test(addr + info.minus_run_start, info.check_c, entry_check_limit(info));
#endif
}

// A segment's header. Arena segments: in the metadata region, one
// kHeaderStride apart, indexed by slot. Others: at the segment's start.
struct Segment {
  char* base;                            // the segment's memory (4 MiB aligned)
  uint64_t used_mask;                    // bit u: unit u belongs to a run (bit 0: the header unit)
  uint64_t dirty_mask;                   // free units whose pages may still be resident
  uint64_t dirty_since_ms;               // when the oldest dirty unit was released
  uint64_t guard_mask;                   // bit u: unit u's last page is a span's guard (PROT_NONE)
  Segment* next;                         // all segments, most recently used first
  Segment* prev;
  Run runs[kUnitsPerSegment];
  UnitEntry own_units[kUnitsPerSegment]; // segments outside the arena only
};
// A power of two, and every header lies on a multiple of it: a run
// descriptor finds its header by masking its own address (run_segment).
constexpr size_t kHeaderStride = 8192;
static_assert(sizeof(Segment) <= kHeaderStride, "a header fits its stride (and unit 0)");

HAK_INLINE int unit_of(const void* p) {
  return static_cast<int>((reinterpret_cast<uintptr_t>(p) >> kUnitShift) & (kUnitsPerSegment - 1));
}
HAK_INLINE char* unit_address(const Segment* s, int unit) { return s->base + (static_cast<size_t>(unit) << kUnitShift); }

// ---- The segment arena ----
// One reservation of address space (PROT_NONE until used) that segments are
// committed from first. Its units' entries form one table in the metadata
// region: the entry of address a is at g_arena.entry_bias + (a >> 16) * 32, so
// free() finds a pointer's entry from the pointer alone, with one compare to
// prove the pointer lies in the arena (the segment map costs a shift, a
// bounds check, a table load and a header's address arithmetic). The table
// is committed as the heap grows; a part that no live segment uses reads as
// zeros, and an all-zero entry fails the block test, so a stray pointer into
// an unused part of the arena is still rejected. A free() that reads the
// zeros from before backend_init (ArenaLayout) sends its pointer to the slow
// path, the right place for every pointer then.
HAK_INLINE bool in_arena(uintptr_t addr) { return addr - g_arena.base < g_arena.size; }
// Whether `addr` lies in the arena; if so, `entry` is its unit's entry
// (which may be all zeros: no segment there).
HAK_INLINE bool arena_unit_entry(uintptr_t addr, const UnitEntry*& entry) {
  entry = reinterpret_cast<const UnitEntry*>(g_arena.entry_bias + (addr >> kUnitShift) * sizeof(UnitEntry));
  return in_arena(addr);
}

// The entries of a segment's units: the arena's table, or its own.
HAK_INLINE UnitEntry* segment_units(Segment* s) {
  const uintptr_t base = reinterpret_cast<uintptr_t>(s->base);
  if (in_arena(base)) return reinterpret_cast<UnitEntry*>(g_arena.entry_bias + (base >> kUnitShift) * sizeof(UnitEntry));
  return s->own_units;
}
// The header of the segment holding p if p lies in a live hakmem segment,
// else nullptr. Safe for any address.
// The header of the arena slot holding `addr` (in_arena(addr)).
HAK_INLINE Segment* arena_segment_header(uintptr_t addr) {
  return reinterpret_cast<Segment*>(g_arena.headers_base + ((addr - g_arena.base) >> kSegmentShift) * kHeaderStride);
}
HAK_INLINE Segment* segment_lookup(const void* p) {
  if (segmap_kind(p) != kSlotSegment) return nullptr;
  const uintptr_t addr = reinterpret_cast<uintptr_t>(p);
  if (in_arena(addr)) return arena_segment_header(addr);
  return reinterpret_cast<Segment*>(addr & ~kSegmentMask);
}
// The entry of p's unit if p lies in a live hakmem segment, else nullptr.
HAK_INLINE const UnitEntry* unit_entry_lookup(const void* p) {
  Segment* s = segment_lookup(p);
  return s != nullptr ? &segment_units(s)[unit_of(p)] : nullptr;
}
// The same, the arena's table first (an entry there may be all zeros: no
// segment), the segment map only past the arena. Safe for any address.
HAK_INLINE const UnitEntry* unit_entry_of(const void* p) {
  const UnitEntry* entry;
  return arena_unit_entry(reinterpret_cast<uintptr_t>(p), entry) ? entry : unit_entry_lookup(p);
}

// Reserves the arena, the largest power of two of at most `arena_max`
// bytes (and 1 TiB) that the kernel grants (none when that is below 8 MiB,
// or under an address-space limit, which reserved space would count
// against), and the metadata region for it; bin_offsets[c] is class c's
// UnitEntry::bin_offset. Called once, at init, after secrets_init.
void backend_init(uint64_t arena_max, const uint16_t bin_offsets[kNumClasses]);
// Makes g_arena read-only for good: after init, which wrote it.
void backend_seal();

// ---- Runs of units (backend; takes the backend lock itself) ----
// A run of `units` units starting at a multiple of `align_units`, tagged for
// `kind` (and `cls` for slabs), its descriptor complete (slab capacity, span
// size) before any other thread can see it. nullptr when out of memory.
// *zeroed (when given) tells whether every unit of the run reads as zero:
// fresh from the kernel or purged since its last use.
Run* backend_alloc_run(uint32_t units, uint32_t align_units, RunKind kind, int cls, bool* zeroed = nullptr);
// Gives a run back to its segment; its pages go to the OS after the decay.
void backend_free_run(Run* run);
// Hardened guard pages (HAKMEM_HARDENED_GUARDS): every large span's last
// page is PROT_NONE and left out of its usable size (Run::large_size), so
// an overflow off a span's end faults instead of running into the next run
// of its segment. A freed span keeps its guard: the next span that ends in
// the same unit (the common case: the same size again) needs no mprotect;
// a run that claims the unit for anything else lowers it. 0 (no guards)
// in the release build and with the setting off.
size_t backend_span_guard_bytes();
// Grows or shrinks a large span where it stands: growing takes the free
// units right after it (false, and nothing changes, when they are not all
// free), shrinking gives its tail units back. Backend lock taken inside.
bool backend_resize_run(Run* run, uint32_t new_units);
Segment* run_segment(const Run* run);
int run_first_unit(const Run* run);
HAK_INLINE char* run_start(Run* run) { return unit_address(run_segment(run), run_first_unit(run)); }
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

// ---- Slabs of one class ----
// A class's slabs: the list of those that still have blocks to give
// (returned or never carved) and how many the class holds. One per class,
// part of the central pool's state for the class and guarded by its lock
// (central.cc), which every call below expects held; the count is also read
// without it (stats: relaxed, it publishes nothing else).
struct SlabClass {
  Run* partial = nullptr;
  std::atomic<uint64_t> slabs{0};
};
// Takes up to `want` free blocks of class `cls` from its slabs (returned
// blocks first, then fresh ones by bump pointer, then a new slab) as a
// closed list; an empty one only when memory is exhausted.
BlockList slab_take_blocks(SlabClass& slabs, int cls, uint32_t want);
// Returns a list's blocks to their slabs; a slab that becomes empty goes
// back to the backend.
void slab_return_blocks(SlabClass& slabs, int cls, const BlockList& list);
// A decay pass over a class's partly used slabs (under its lock): the
// free blocks of a slab that none came back to for a whole decay give the
// pages they cover, past their link, back to the OS (all of them at once
// with `force`), counted in the backend's returned bytes.
void slab_purge_free_pages(SlabClass& slabs, int cls, bool force);

// ---- What the backend knows of a pointer ----
// Outside this box, code asks these instead of reading segment headers, run
// descriptors or unit entries (the hot path's inline lookups above aside).
#define HAK_INSPECT __attribute__((visibility("default")))

// The run that holds an address, as one copy: for the tests, the property
// tests and the fuzzers. Taken under the backend lock (which claims and
// releases runs), but not the class lock: a slab's counts that another
// thread is changing may be a moment old.
struct RunInfo {
  RunKind kind;          // kFree: a free unit, or the segment's header unit
  uint8_t tag;           // the tag of the address's unit
  int cls;               // slabs: the class; else -1
  int unit;              // the address's unit in its segment (0: the header unit)
  char* start;           // the run's first byte (free units: the unit's)
  uint32_t units;        // the run's length in units (free units: 1)
  uint32_t capacity;     // slabs: blocks the slab holds,
  uint32_t carved;       //   has handed out at least once,
  uint32_t used;         //   and has outside it now (threads' lists, the pool, the program)
  size_t large_size;     // spans: the usable size
  bool block_start;      // a slab block start free() accepts (entry_is_block_start)
};
// Whether p lies in a live hakmem segment (or a segment's header unit); if
// so, *out describes its unit's run. Safe for any address.
HAK_INSPECT bool run_lookup(const void* p, RunInfo* out);
// The large span whose first byte is p, or nullptr (the large box: p may be
// any pointer a program frees).
Run* span_at(const void* p);
// Parks the span whose first byte is p, if it is live and of at most
// `max_units` units: its tag turns kTagLargeParked (so that a later free of
// it finds no block) and its run stays claimed.
// Returns its length in units, or 0 (and changes nothing) when p is no such
// span. A parked span keeps its run descriptor and entries as they were.
uint32_t span_park(void* p, uint32_t max_units);
// A parked span (span_park) is live again: the caller had it parked.
void span_unpark(void* p);

// Raw metadata for the tests that damage it on purpose (an attacker's
// write): the header of the live segment holding p (nullptr if none) and a
// header's unit entries, for code linked with the shared library, which
// keeps the metadata's globals hidden.
HAK_INSPECT Segment* inspect_segment(const void* p);
HAK_INSPECT UnitEntry* inspect_units(Segment* s);

struct BackendStats {
  uint64_t segments;
  uint64_t bytes_mapped;     // segments, headers included
  uint64_t bytes_dirty;      // free units not yet returned
  uint64_t bytes_returned;   // cumulative: purged or unmapped
  uint64_t arena_base, arena_bytes;
  uint64_t segments_outside_arena;
};
void backend_stats(BackendStats* out);
// Walks every segment and checks that tags, first-unit links, masks and slab
// counts agree. Returns the number of inconsistencies, writing the first to stderr.
int backend_check_integrity();

}  // namespace hakmem
