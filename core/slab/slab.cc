#include "slab/slab.h"

#include <atomic>

#include "contracts/contracts.h"
#include "os/os.h"

namespace hakmem {

namespace {
// The segment map before the metadata region exists (and without one).
uint8_t g_segmap_bss[kSegmapSlots];
}  // namespace
ArenaLayout g_arena = {0, 0, 0, 0, 0, g_segmap_bss, {}};

namespace {

// Dirty (released but still resident) memory waits for the decay so that a
// program that frees and allocates again in waves reuses its pages instead of
// faulting them in anew. Beyond this much, the oldest dirty segments are
// purged at once, down to half of it: it bounds RSS after a large free wave
// without purging everything (which made every wave fault all its pages in).
constexpr uint64_t kDirtyCapUnits = (64u << 20) / kUnitSize;

// The backend's state, all of it guarded by `lock` (taken after a class's
// central lock, never before: lifecycle.cc's kLockOrder). Segment headers
// and run descriptors are too; the segment map and the unit entries are
// written under it and read without it (see segmap_kind, UnitEntry).
struct Backend {
  Lock lock;
  Segment* segments_head = nullptr;  // non-full segments first, full ones after
  Segment* segments_tail = nullptr;
  uint64_t segment_count = 0;
  uint64_t segments_outside_arena = 0;
  uint64_t dirty_units = 0;
  uint64_t returned_bytes = 0;
  // The arena's slots below arena_free_hint are all live segments (the
  // search for a free slot starts there, keeping the heap low and compact);
  // the segment map tells which of the others are. The entry table and the
  // headers are committed for the slots below arena_meta_committed.
  uint64_t arena_free_hint = 0;
  uint64_t arena_meta_committed = 0;
};
Backend g_backend;

// Largest arena first: 1 TiB of address space costs nothing until used, but
// the kernel or a tool (valgrind allows 32 GiB) may refuse; then less.
// A cap (HAKMEM_ARENA) may make it as small as two segments' worth: the
// table's and one segment.
constexpr size_t kArenaMaxShift = 40;
constexpr size_t kArenaMinShift = kSegmentShift + 1;
constexpr uint64_t kTableBytesPerSegment = kUnitsPerSegment * sizeof(UnitEntry);
constexpr uint64_t kMetaCommitSlots = 32;  // entries and headers are committed 32 segments at a time
// Between the metadata region's parts and around it: PROT_NONE, so that a
// linear overflow of one part faults before it reaches the next.
constexpr size_t kMetaGuard = 64 * 1024;


constexpr uint64_t kAllUnits = ~uint64_t{0};

uint64_t run_mask(uint32_t units, int first) {
  uint64_t m = units >= 64 ? kAllUnits : ((uint64_t{1} << units) - 1);
  return m << first;
}

void list_remove(Segment* s) {
  if (s->prev) s->prev->next = s->next; else g_backend.segments_head = s->next;
  if (s->next) s->next->prev = s->prev; else g_backend.segments_tail = s->prev;
  s->next = s->prev = nullptr;
}
void list_push_front(Segment* s) {
  s->prev = nullptr;
  s->next = g_backend.segments_head;
  if (g_backend.segments_head) g_backend.segments_head->prev = s; else g_backend.segments_tail = s;
  g_backend.segments_head = s;
}
void list_push_back(Segment* s) {
  s->next = nullptr;
  s->prev = g_backend.segments_tail;
  if (g_backend.segments_tail) g_backend.segments_tail->next = s; else g_backend.segments_head = s;
  g_backend.segments_tail = s;
}

// First unit of a run of `units` units, at a multiple of `align_units`, all
// of whose units are set in `avail`; -1 if there is none.
int find_run(uint64_t avail, uint32_t units, uint32_t align_units) {
  if (units > static_cast<uint32_t>(kUnitsPerSegment - 1)) return -1;
  uint64_t want = run_mask(units, 0);
  int step = static_cast<int>(align_units);
  for (int u = step; u + static_cast<int>(units) <= kUnitsPerSegment; u += step)
    if (((avail >> u) & want) == want) return u;
  return -1;
}

// A free run of `units` in `s` that ends on a unit whose guard page is up
// already and holds no other guard, or -1: a hardened span placed there
// needs no mprotect at all (run_guards_locked). Spans of changing sizes
// otherwise lowered one guard and raised another per allocation, two
// mprotect calls that each split or merged the segment's mapping: 25 times
// the cost of a 64 KiB-2 MiB allocate-write-free churn without them.
int find_guarded_run(const Segment* s, uint32_t units, uint32_t align_units) {
  const uint64_t avail = ~s->used_mask;
  for (uint64_t g = s->guard_mask & avail; g != 0; g &= g - 1) {
    const int last = __builtin_ctzll(g);
    const int first = last - static_cast<int>(units) + 1;
    if (first < 1 || first % static_cast<int>(align_units) != 0) continue;  // unit 0 is never a run's
    const uint64_t m = run_mask(units, first);
    if ((avail & m) == m && (s->guard_mask & m) == (uint64_t{1} << last)) return first;
  }
  return -1;
}

// Commits the arena's entry table and headers far enough to hold slot
// `slot`'s. They stay committed: a slot given back is soon used again.
bool meta_commit_through(uint64_t slot) {
  if (slot < g_backend.arena_meta_committed) return true;
  const uint64_t slots = g_arena.size >> kSegmentShift;
  uint64_t to = (slot / kMetaCommitSlots + 1) * kMetaCommitSlots;
  if (to > slots) to = slots;
  const uint64_t from = g_backend.arena_meta_committed;
  if (!os_commit(reinterpret_cast<void*>(g_arena.entry_table + from * kTableBytesPerSegment), (to - from) * kTableBytesPerSegment) ||
      !os_commit(reinterpret_cast<void*>(g_arena.headers_base + from * kHeaderStride), (to - from) * kHeaderStride))
    return false;
  g_backend.arena_meta_committed = to;
  return true;
}

// A segment: in a free arena slot (lowest first), units 1..63 committed and
// unit 0 left PROT_NONE (the gap before its first block); else in a mapping
// of its own, its header in unit 0. Zero-filled by the kernel either way.
Segment* segment_memory() {
  const uint64_t slots = g_arena.size >> kSegmentShift;
  for (uint64_t i = g_backend.arena_free_hint; i < slots; ++i) {
    char* at = reinterpret_cast<char*>(g_arena.base + (i << kSegmentShift));
    if (segmap_kind(at) != kSlotForeign) continue;  // a live segment
    if (!meta_commit_through(i) || !os_commit(at + kUnitSize, kSegmentSize - kUnitSize)) break;
    g_backend.arena_free_hint = i + 1;
    Segment* s = reinterpret_cast<Segment*>(g_arena.headers_base + i * kHeaderStride);
    *s = Segment{};  // a header used before: its segment's entries are all zero already
    s->base = at;
    return s;
  }
  Segment* s = static_cast<Segment*>(os_map_aligned(kSegmentSize, kSegmentSize));
  if (s != nullptr) {
    s->base = reinterpret_cast<char*>(s);
    ++g_backend.segments_outside_arena;
  }
  return s;
}

// Segments' slots are written under the backend lock, huge blocks' by the
// block's owner (segmap_mark_huge).
void segmap_set(const void* p, SegmapKind kind) {
  __atomic_store_n(&g_arena.segmap[segmap_slot(p)], static_cast<uint8_t>(kind), __ATOMIC_RELAXED);
}

Segment* segment_create() {
  Segment* s = segment_memory();
  if (s == nullptr) return nullptr;
  s->used_mask = 1;                         // unit 0: the header or the gap
  segmap_set(s->base, kSlotSegment);
  ++g_backend.segment_count;
  list_push_front(s);
  return s;
}

char* unit_last_page(const Segment* s, int unit) { return unit_address(s, unit + 1) - kOsPageSize; }

// The run [first, first + units): a large span ends in a guard page when
// guards are on (`span`), and no other of its units keeps one. Guards left
// by earlier spans are lowered only here, when their unit is claimed.
void run_guards_locked(Segment* seg, int first, uint32_t units, bool span) {
  const int last = first + static_cast<int>(units) - 1;
  const bool want = span && backend_span_guard_bytes() != 0;
  const uint64_t keep = want ? uint64_t{1} << last : 0;
  for (uint64_t stale = seg->guard_mask & run_mask(units, first) & ~keep; stale != 0; stale &= stale - 1) {
    const int u = __builtin_ctzll(stale);
    if (os_protect_rw(unit_last_page(seg, u), kOsPageSize)) seg->guard_mask &= ~(uint64_t{1} << u);
  }
  // Refused (the kernel's limit on mappings): this span goes unguarded.
  if (want && (seg->guard_mask & keep) == 0 && os_protect_none(unit_last_page(seg, last), kOsPageSize))
    seg->guard_mask |= keep;
}

void segment_destroy(Segment* s) {
  list_remove(s);
  segmap_set(s->base, kSlotForeign);
  --g_backend.segment_count;
  g_backend.dirty_units -= static_cast<uint64_t>(__builtin_popcountll(s->dirty_mask));
  g_backend.returned_bytes += kSegmentSize;
  // Its entries are all zero already: every unit is free.
  if (in_arena(reinterpret_cast<uintptr_t>(s->base))) {
    uint64_t slot = (reinterpret_cast<uintptr_t>(s->base) - g_arena.base) >> kSegmentShift;
    os_decommit(s->base + kUnitSize, kSegmentSize - kUnitSize, false);  // its guards go with the mapping
    s->guard_mask = 0;
    if (slot < g_backend.arena_free_hint) g_backend.arena_free_hint = slot;
  } else {
    --g_backend.segments_outside_arena;
    os_unmap(s, kSegmentSize);
  }
}

void purge_segment(Segment* s) {
  uint64_t m = s->dirty_mask;
  while (m != 0) {  // one madvise per contiguous dirty stretch
    int first = __builtin_ctzll(m);
    int len = __builtin_ctzll(~(m >> first));
    if (first + len > 64 || len == 0) len = 64 - first;
    os_purge(unit_address(s, first), static_cast<size_t>(len) << kUnitShift);
    m &= ~run_mask(static_cast<uint32_t>(len), first);
    g_backend.returned_bytes += static_cast<uint64_t>(len) << kUnitShift;
  }
  g_backend.dirty_units -= static_cast<uint64_t>(__builtin_popcountll(s->dirty_mask));
  s->dirty_mask = 0;
}

// Gives a segment's dirty units back: an empty segment is unmapped whole.
void release_dirty(Segment* s) {
  if (s->used_mask == 1) segment_destroy(s);
  else purge_segment(s);
}

// The decay: every segment whose oldest dirty unit has waited at least the
// decay (every segment when `force`).
void purge_locked(uint64_t now, bool force) {
  const uint64_t decay = g_config.decay_ms;
  for (Segment* s = g_backend.segments_head; s != nullptr;) {
    Segment* next = s->next;
    if ((s->dirty_mask != 0 || s->used_mask == 1) && (force || now - s->dirty_since_ms >= decay)) release_dirty(s);
    s = next;
  }
}

// Over the cap: oldest first, down to half the cap. Rare (the hysteresis), so
// a walk per segment released is cheap enough.
void purge_excess_locked() {
  while (g_backend.dirty_units > kDirtyCapUnits / 2) {
    Segment* oldest = nullptr;
    for (Segment* s = g_backend.segments_head; s != nullptr; s = s->next)
      if (s->dirty_mask != 0 && (oldest == nullptr || s->dirty_since_ms < oldest->dirty_since_ms)) oldest = s;
    if (oldest == nullptr) break;
    release_dirty(oldest);
  }
}

void maybe_purge_locked() {
  if (g_config.decay_ms == 0) purge_locked(0, true);
  else if (g_backend.dirty_units > kDirtyCapUnits) purge_excess_locked();
}

void partial_push(SlabClass& slabs, Run* s) {
  s->prev = nullptr;
  s->next = slabs.partial;
  if (s->next) s->next->prev = s;
  slabs.partial = s;
  s->on_partial_list = true;
}
void partial_remove(SlabClass& slabs, Run* s) {
  if (s->prev) s->prev->next = s->next; else slabs.partial = s->next;
  if (s->next) s->next->prev = s->prev;
  s->next = s->prev = nullptr;
  s->on_partial_list = false;
}

// Units [from, from + count) join the run of `kind` (and class `cls`) that
// starts at unit `first`. Returns whether they all read as zero (none dirty:
// never used, or purged with MADV_DONTNEED on private anonymous memory,
// zero-filled on the next touch).
bool claim_units_locked(Segment* seg, int first, int from, uint32_t count, RunKind kind, int cls) {
  uint64_t mask = run_mask(count, from);
  bool zeroed = (seg->dirty_mask & mask) == 0;
  seg->used_mask |= mask;
  g_backend.dirty_units -= static_cast<uint64_t>(__builtin_popcountll(seg->dirty_mask & mask));
  seg->dirty_mask &= ~mask;
  const bool slab = kind == RunKind::kSlab;
  UnitEntry* units = segment_units(seg);
  for (int u = from; u < from + static_cast<int>(count); ++u) {
    UnitEntry& e = units[u];
    e.minus_run_start = 0 - reinterpret_cast<uintptr_t>(unit_address(seg, first));
    // Nothing carved yet: the limit stays 0 until the first carve.
    e.check_c = slab ? class_info(cls).check_c : 0;
    e.bin_offset = slab ? g_arena.bin_offsets[cls] : 0;
    e.tag = slab ? slab_tag(cls) : u == first ? kTagLarge : kTagLargeTail;
  }
  if (seg->used_mask == kAllUnits) {  // full segments wait at the back of the list
    list_remove(seg);
    list_push_back(seg);
  }
  return zeroed;
}

// Units [from, from + count) leave their run: free, and dirty until purged.
void release_units_locked(Segment* seg, int from, uint32_t count) {
  bool was_full = seg->used_mask == kAllUnits;
  uint64_t mask = run_mask(count, from);
  UnitEntry* units = segment_units(seg);
  for (int u = from; u < from + static_cast<int>(count); ++u) units[u] = UnitEntry{};
  seg->used_mask &= ~mask;
  if (seg->dirty_mask == 0) seg->dirty_since_ms = os_recent_ms();
  seg->dirty_mask |= mask;
  g_backend.dirty_units += count;
  if (was_full) {
    list_remove(seg);
    list_push_front(seg);
  }
}

// Hardened (HAKMEM_HARDENED_RANDOM): a pseudo-random permutation of
// [0, n), n <= 2^16, as index i -> permute(i): a four-round Feistel network
// keyed by `key` over the next even power of two at or above n, walking the
// cycle until the value lands below n (at most a few steps: the domain is
// under four times n). No table: a slab of 4096 blocks needs no 8 KiB of
// stack in the allocator's slow path.
uint32_t permute_index(uint32_t i, uint32_t n, uint64_t key) {
  int half = 1;
  while ((uint32_t{1} << (2 * half)) < n) ++half;
  const uint32_t mask = (uint32_t{1} << half) - 1;
  uint32_t x = i;
  do {
    uint32_t left = x >> half, right = x & mask;
    for (uint64_t round = 0; round < 4; ++round) {
      uint32_t f = static_cast<uint32_t>(mix64(key ^ (round << 32) ^ right)) & mask;
      uint32_t next = left ^ f;
      left = right;
      right = next;
    }
    x = (left << half) | right;
  } while (x >= n);
  return x;
}

// Hardened: a slab's blocks are carved a window at a time -- at least 16
// blocks, or 16 KiB of them -- each window's blocks going onto the slab's
// free list at once, in a random order, each sealed as free. Blocks handed
// out in sequence are then neither adjacent nor in address order (an
// overflow cannot count on its neighbour), a free of a block of the window
// never handed out finds it sealed (a double free), and one past the
// window fails the block test (never carved). A window at a time, not the
// whole slab: a new slab of a mid class no longer touches its every page.
constexpr size_t kRandomWindowBytes = 16 << 10;
constexpr uint32_t kRandomWindowBlocks = 16;
void carve_window_randomly(Run* s, const ClassInfo& ci) {
  uint32_t window = static_cast<uint32_t>(kRandomWindowBytes / ci.size);
  if (window < kRandomWindowBlocks) window = kRandomWindowBlocks;
  if (window > s->capacity - s->carved) window = s->capacity - s->carved;
  char* start = run_start(s) + static_cast<size_t>(s->carved) * ci.size;
  // A key of its own for each window, without a system call per window.
  static uint64_t windows_carved = 0;
  const uint64_t key = keyed_mix(__atomic_fetch_add(&windows_carved, 1, __ATOMIC_RELAXED), g_secrets.shuffle, 0);
  void* head = s->free_list;
  for (uint32_t i = window; i-- > 0;) {
    void* b = start + static_cast<size_t>(permute_index(i, window, key)) * ci.size;
    block_set_next(b, head);
    head = b;
  }
  s->free_list = head;
  s->free_count += window;
  s->carved += window;
  UnitEntry* units = segment_units(run_segment(s));
  const int first = run_first_unit(s);
  const uint64_t limit = class_carve_limit(ci, s->carved);
  for (int u = first; u < first + static_cast<int>(s->units); ++u)
    __atomic_store_n(&units[u].check_limit, limit, __ATOMIC_RELAXED);
}

}  // namespace

size_t backend_span_guard_bytes() { return hardened_guards() ? kOsPageSize : 0; }

Segment* run_segment(const Run* run) {
  return reinterpret_cast<Segment*>(reinterpret_cast<uintptr_t>(run) & ~(kHeaderStride - 1));
}
int run_first_unit(const Run* run) { return static_cast<int>(run - run_segment(run)->runs); }

Run* backend_alloc_run(uint32_t units, uint32_t align_units, RunKind kind, int cls, bool* zeroed) {
  if (align_units == 0) align_units = 1;
  LockGuard guard(g_backend.lock);
  maybe_purge_locked();
  Segment* seg = nullptr;
  int first = -1;
  // A hardened span where its guard stands already; then units still
  // resident from an earlier run: reusing them costs no page faults. Then
  // the first free stretch anywhere.
  for (Segment* s = g_backend.segments_head; kind == RunKind::kLarge && backend_span_guard_bytes() != 0 && s != nullptr &&
                                     s->used_mask != kAllUnits; s = s->next) {
    first = find_guarded_run(s, units, align_units);
    if (first >= 0) { seg = s; break; }
  }
  for (Segment* s = g_backend.segments_head; seg == nullptr && s != nullptr && s->used_mask != kAllUnits; s = s->next) {
    if (s->dirty_mask == 0) continue;
    first = find_run(s->dirty_mask, units, align_units);
    if (first >= 0) { seg = s; break; }
  }
  for (Segment* s = g_backend.segments_head; seg == nullptr && s != nullptr && s->used_mask != kAllUnits; s = s->next) {
    first = find_run(~s->used_mask, units, align_units);
    if (first >= 0) seg = s;
  }
  if (seg == nullptr) {
    seg = segment_create();
    if (seg == nullptr) return nullptr;
    first = find_run(~seg->used_mask, units, align_units);
    if (first < 0) return nullptr;  // cannot happen for runs the callers ask for
  }
  bool fresh = claim_units_locked(seg, first, first, units, kind, cls);
  if (zeroed != nullptr) *zeroed = fresh;
  run_guards_locked(seg, first, units, kind == RunKind::kLarge);
  Run* run = &seg->runs[first];
  *run = Run{};
  run->units = static_cast<uint16_t>(units);
  run->kind = kind;
  run->cls = static_cast<uint8_t>(cls);
  // Complete before the lock drops: a heap check, or a fork, may look at it next.
  if (kind == RunKind::kSlab) run->capacity = class_info(cls).blocks_per_slab;
  else run->large_size = (static_cast<size_t>(units) << kUnitShift) - backend_span_guard_bytes();
  if (seg->used_mask != kAllUnits && seg != g_backend.segments_head) {  // most recently used first
    list_remove(seg);
    list_push_front(seg);
  }
  return run;
}

void backend_free_run(Run* run) {
  Segment* seg = run_segment(run);
  int first = run_first_unit(run);
  LockGuard guard(g_backend.lock);
  release_units_locked(seg, first, run->units);
  run->kind = RunKind::kFree;
  maybe_purge_locked();
}

bool backend_resize_run(Run* run, uint32_t new_units) {
  Segment* seg = run_segment(run);
  int first = run_first_unit(run);
  LockGuard guard(g_backend.lock);
  uint32_t units = run->units;
  if (new_units == 0 || first + static_cast<int>(new_units) > kUnitsPerSegment) return false;
  if (new_units > units) {
    int from = first + static_cast<int>(units);
    if ((seg->used_mask & run_mask(new_units - units, from)) != 0) return false;
    claim_units_locked(seg, first, from, new_units - units, RunKind::kLarge, 0);
  } else if (new_units < units) {
    release_units_locked(seg, first + static_cast<int>(new_units), units - new_units);
  }
  run_guards_locked(seg, first, new_units, true);
  run->units = static_cast<uint16_t>(new_units);
  run->large_size = (static_cast<size_t>(new_units) << kUnitShift) - backend_span_guard_bytes();
  if (new_units < units) maybe_purge_locked();
  return true;
}

void segmap_mark_huge(const void* user) {
  if (HAK_UNLIKELY(segmap_kind(user) != kSlotForeign))
    fatal("hakmem: the segment map's slot of a new huge block at %p is taken; aborting", user);
  segmap_set(user, kSlotHuge);
}

void segmap_clear_huge(const void* user) {
  if (HAK_UNLIKELY(segmap_kind(user) != kSlotHuge))
    fatal("hakmem: the segment map's slot of the huge block at %p holds no huge block; aborting", user);
  segmap_set(user, kSlotForeign);
}

void backend_init(uint64_t arena_max, const uint16_t bin_offsets[kNumClasses]) {
  LockGuard guard(g_backend.lock);
  for (int c = 0; c < kNumClasses; ++c) g_arena.bin_offsets[c] = bin_offsets[c];
  if (g_arena.segmap != g_segmap_bss) return;  // done already
  uint64_t arena = 0;
  void* arena_base = nullptr;
  for (size_t shift = kArenaMaxShift; !os_address_space_limited() && shift >= kArenaMinShift; --shift) {
    arena = uint64_t{1} << shift;
    if (arena > arena_max) continue;
    arena_base = os_reserve(arena, kSegmentSize, false);
    if (arena_base != nullptr) break;
  }
  if (arena_base == nullptr) arena = 0;
  // The metadata region: [guard | segment map | guard | entry table | guard |
  // headers | guard], at a random address. The map is read-write (untouched
  // pages cost nothing); the table reads as zeros until its part is
  // committed; headers and guards fault.
  const uint64_t slots = arena >> kSegmentShift;
  const size_t segmap_at = kMetaGuard;
  const size_t table_at = segmap_at + kSegmapSlots + kMetaGuard;
  const size_t headers_at = table_at + ((slots * kTableBytesPerSegment + kMetaGuard - 1) & ~(kMetaGuard - 1)) + kMetaGuard;
  const size_t meta_size = headers_at + slots * kHeaderStride + kMetaGuard;
  char* meta = static_cast<char*>(os_reserve_random(meta_size, kMetaGuard, false, g_secrets.placement));
  if (meta == nullptr || !os_commit(meta + segmap_at, kSegmapSlots)) {
    // No room even for the map (a tight address-space limit): no arena, and
    // the map in the BSS.
    if (meta != nullptr) os_unmap(meta, meta_size);
    if (arena_base != nullptr) os_unmap(arena_base, arena);
    return;
  }
  if (slots != 0) os_decommit(meta + table_at, slots * kTableBytesPerSegment, true);
  g_arena.segmap = reinterpret_cast<uint8_t*>(meta + segmap_at);
  if (arena_base == nullptr) return;
  g_arena.entry_table = reinterpret_cast<uintptr_t>(meta + table_at);
  g_arena.entry_bias = g_arena.entry_table - (reinterpret_cast<uintptr_t>(arena_base) >> kUnitShift) * sizeof(UnitEntry);
  g_arena.headers_base = reinterpret_cast<uintptr_t>(meta + headers_at);
  g_arena.base = reinterpret_cast<uintptr_t>(arena_base);
  g_arena.size = arena;  // last: the hot path's range test opens the arena
}

void backend_seal() { os_seal(&g_arena, sizeof g_arena); }

void backend_purge(bool force) {
  LockGuard guard(g_backend.lock);
  purge_locked(os_now_ms(), force);
}

void backend_decay() {
  if (!g_backend.lock.try_lock()) return;  // busy: the next poll comes soon
  purge_locked(os_now_ms(), false);
  g_backend.lock.unlock();
}

void backend_fork_prepare() { g_backend.lock.lock(); }
void backend_fork_parent() { g_backend.lock.unlock(); }
void backend_fork_child() { g_backend.lock.reinit_in_child(); }

BlockList slab_take_blocks(SlabClass& slabs, int cls, uint32_t want) {
  const ClassInfo& ci = class_info(cls);
  BlockList list;  // blocks are linked in the order taken: lowest address first
  while (list.count < want) {
    Run* s = slabs.partial;
    if (s == nullptr) {
      s = backend_alloc_run(ci.slab_units, 1, RunKind::kSlab, cls);
      if (s == nullptr) break;
      annotate_fresh(run_start(s), static_cast<size_t>(ci.slab_units) << kUnitShift);
      slabs.slabs.fetch_add(1, std::memory_order_relaxed);
      partial_push(slabs, s);
    }
    const bool random = kHardened && g_config.randomize;
    if (random && s->free_list == nullptr && s->carved < s->capacity) carve_window_randomly(s, ci);
    while (list.count < want && s->free_list != nullptr) {
      void* b = s->free_list;
      s->free_list = block_next(b);
      --s->free_count;
      list_append(list, b);
    }
    if (!random && list.count < want && s->carved < s->capacity) {
      char* p = run_start(s) + static_cast<size_t>(s->carved) * ci.size;
      uint32_t take = s->capacity - s->carved;
      if (take > want - list.count) take = want - list.count;
      for (uint32_t i = 0; i < take; ++i, p += ci.size) list_append(list, p);
      s->carved += take;
      UnitEntry* units = segment_units(run_segment(s));
      int first = run_first_unit(s);
      uint64_t limit = class_carve_limit(ci, s->carved);
      for (int u = first; u < first + static_cast<int>(s->units); ++u)
        __atomic_store_n(&units[u].check_limit, limit, __ATOMIC_RELAXED);
    }
    if (s->free_list == nullptr && s->carved == s->capacity) partial_remove(slabs, s);
    s->used = s->carved - s->free_count;
  }
  list_close(list);
  HAK_CONTRACT(contracts::blocks_leave_slab(list.head, list.count));
  return list;
}

void slab_return_blocks(SlabClass& slabs, [[maybe_unused]] int cls, const BlockList& list) {
  void* head = list.head;
  for (uint32_t count = list.count; count-- > 0 && head != nullptr;) {
    void* b = head;
    HAK_CONTRACT(contracts::block_returns_to_slab(b, cls));
    head = block_next(b);
    Segment* seg = segment_lookup(b);
    Run* s = &seg->runs[entry_first_unit(segment_units(seg)[unit_of(b)])];
    block_set_next(b, s->free_list);
    s->free_list = b;
    s->quiet_passes = 0;
    ++s->free_count;
    --s->used;
    if (s->used == 0) {
      HAK_CONTRACT(contracts::slab_goes_empty(s));
      if (s->on_partial_list) partial_remove(slabs, s);
      slabs.slabs.fetch_sub(1, std::memory_order_relaxed);
      annotate_returned(run_start(s), static_cast<size_t>(s->units) << kUnitShift);
      backend_free_run(s);
    } else if (!s->on_partial_list) {
      partial_push(slabs, s);
    }
  }
}

// A slab whose free blocks have waited this many decay passes (a pass is
// a quarter decay: lifecycle.cc) gives their pages back.
constexpr uint8_t kQuietPassesBeforePurge = 4;
constexpr uint8_t kFreePagesPurged = 0xff;

// Each thread's cache pins the slabs its few blocks of a class come from,
// and a slab returns to its segment only when every block is back: 64
// threads that took waves of 8-32 KiB blocks and went idle kept 30 MiB of
// partly used slabs resident for 4 MiB in their caches. A free block's
// pages past its first (which holds its link, and the hardened seal) hold
// nothing anyone reads; from 8 KiB up a block covers at least one such page.
void slab_purge_free_pages(SlabClass& slabs, int cls, bool force) {
  const size_t size = class_size(cls);
  if (size < 2 * kOsPageSize) return;
  uint64_t purged = 0;
  for (Run* s = slabs.partial; s != nullptr; s = s->next) {
    if (s->quiet_passes == kFreePagesPurged) continue;
    if (!force && ++s->quiet_passes < kQuietPassesBeforePurge) continue;
    for (void* b = s->free_list; b != nullptr; b = block_next(b)) {
      const uintptr_t start = (reinterpret_cast<uintptr_t>(b) + 16 + kOsPageSize - 1) & ~(kOsPageSize - 1);
      const uintptr_t end = (reinterpret_cast<uintptr_t>(b) + size) & ~(kOsPageSize - 1);
      if (end <= start) continue;
      os_purge(reinterpret_cast<void*>(start), end - start);
      purged += end - start;
    }
    s->quiet_passes = kFreePagesPurged;
  }
  if (purged == 0) return;
  LockGuard guard(g_backend.lock);  // the class lock is held: central before backend is the lock order
  g_backend.returned_bytes += purged;
}

bool run_lookup(const void* p, RunInfo* out) {
  LockGuard guard(g_backend.lock);  // runs are claimed and released under it
  Segment* seg = segment_lookup(p);
  if (seg == nullptr) return false;
  const int unit = unit_of(p);
  const UnitEntry& e = segment_units(seg)[unit];
  const bool live = unit != 0 && ((seg->used_mask >> unit) & 1) != 0;
  const int first = live ? entry_first_unit(e) : unit;
  const Run& run = seg->runs[first];
  *out = RunInfo{};
  out->kind = live ? run.kind : RunKind::kFree;
  out->tag = entry_tag(e);
  out->cls = out->kind == RunKind::kSlab ? run.cls : -1;
  out->unit = unit;
  out->start = unit_address(seg, first);
  out->units = live ? run.units : 1;
  if (out->kind == RunKind::kSlab) {
    out->capacity = run.capacity;
    out->carved = run.carved;
    out->used = run.used;
  }
  if (out->kind == RunKind::kLarge) out->large_size = run.large_size;
  out->block_start = entry_is_block_start(e, reinterpret_cast<uintptr_t>(p));
  return true;
}

namespace {
// The entry of p's unit when p is the first byte of a run whose first unit
// carries `tag`; else nullptr. The arena's table first: a live entry there
// proves a live segment without the segment map (a cold cache line of it
// cost a span's malloc + free a tenth of its time).
UnitEntry* run_head_entry(const void* p, uint8_t tag) {
  const uintptr_t addr = reinterpret_cast<uintptr_t>(p);
  const UnitEntry* entry = unit_entry_of(p);
  if (entry == nullptr || entry_tag(*entry) != tag) return nullptr;
  if (addr + entry->minus_run_start != 0) return nullptr;  // not the run's first byte
  return const_cast<UnitEntry*>(entry);
}
Run* run_of_head(const void* p) {
  const uintptr_t addr = reinterpret_cast<uintptr_t>(p);
  Segment* seg = in_arena(addr) ? arena_segment_header(addr) : segment_lookup(p);
  return &seg->runs[unit_of(p)];
}
}  // namespace

Run* span_at(const void* p) {
  return run_head_entry(p, kTagLarge) != nullptr ? run_of_head(p) : nullptr;
}

uint32_t span_park(void* p, uint32_t max_units) {
  UnitEntry* entry = run_head_entry(p, kTagLarge);
  if (entry == nullptr) return 0;
  const uint32_t units = run_of_head(p)->units;
  if (units > max_units) return 0;
  // A plain store: a second free of the span after this one sees the tag
  // and fails; two frees racing in two threads are not told apart (as two
  // frees of one slab block in the release build are not).
  __atomic_store_n(&entry->tag, kTagLargeParked, __ATOMIC_RELAXED);
  return units;
}

void span_unpark(void* p) {
  __atomic_store_n(&const_cast<UnitEntry*>(unit_entry_of(p))->tag, kTagLarge, __ATOMIC_RELEASE);
}

Segment* inspect_segment(const void* p) { return segment_lookup(p); }
UnitEntry* inspect_units(Segment* s) { return segment_units(s); }

void backend_stats(BackendStats* out) {
  LockGuard guard(g_backend.lock);
  *out = BackendStats{};
  out->segments = g_backend.segment_count;
  out->bytes_mapped = g_backend.segment_count * kSegmentSize;
  out->bytes_dirty = g_backend.dirty_units * kUnitSize;
  out->bytes_returned = g_backend.returned_bytes;
  out->arena_base = g_arena.base;
  out->arena_bytes = g_arena.size;
  out->segments_outside_arena = g_backend.segments_outside_arena;
}

int backend_check_integrity() {
  LockGuard guard(g_backend.lock);
  int faults = 0;
  auto fault = [&faults](const void* where, const char* what) {
    if (faults++ == 0) diag("hakmem: integrity: %s at %p", what, where);
  };
  uint64_t segments = 0;
  for (Segment* s = g_backend.segments_head; s != nullptr; s = s->next) {
    ++segments;
    if (segmap_kind(s->base) != kSlotSegment) fault(s, "segment missing from the segment map");
    const UnitEntry* units = segment_units(s);
    if ((s->used_mask & 1) == 0) fault(s, "segment header unit marked free");
    if ((s->used_mask & s->dirty_mask) != 0) fault(s, "unit both used and dirty");
    for (int u = 1; u < kUnitsPerSegment;) {
      const UnitEntry& info = units[u];
      bool used = (s->used_mask >> u) & 1;
      if (!used) {
        if (entry_tag(info) != kTagFree || info.minus_run_start != 0 || info.check_c != 0 || entry_check_limit(info) != 0)
          fault(unit_address(s, u), "free unit carries a tag");
        ++u;
        continue;
      }
      if (entry_first_unit(info) != u) { fault(unit_address(s, u), "run does not start at its first unit"); ++u; continue; }
      Run* r = &s->runs[u];
      uint8_t tag = entry_tag(info);
      if (r->units == 0 || u + r->units > kUnitsPerSegment) { fault(r, "run length out of range"); ++u; continue; }
      for (int k = 0; k < r->units; ++k) {
        const UnitEntry& ki = units[u + k];
        const uint8_t got = entry_tag(ki);  // once: a span's may turn parked meanwhile
        uint8_t want = r->kind == RunKind::kSlab ? slab_tag(r->cls) : k == 0 ? kTagLarge : kTagLargeTail;
        if (k == 0 && r->kind == RunKind::kLarge && got == kTagLargeParked) want = kTagLargeParked;  // a thread keeps it
        if (got != want || ki.minus_run_start != 0 - reinterpret_cast<uintptr_t>(unit_address(s, u)))
          fault(unit_address(s, u + k), "unit tag disagrees with its run");
        bool slab = r->kind == RunKind::kSlab;
        if (ki.check_c != (slab ? class_info(r->cls).check_c : 0) ||
            entry_check_limit(ki) != (slab ? class_carve_limit(class_info(r->cls), r->carved) : 0) ||
            ki.bin_offset != (slab ? g_arena.bin_offsets[r->cls] : 0))
          fault(unit_address(s, u + k), "unit's free() numbers disagree with its run");
        if (((s->used_mask >> (u + k)) & 1) == 0) fault(unit_address(s, u + k), "unit of a live run marked free");
      }
      if (r->kind == RunKind::kSlab) {
        if (!tag_is_slab(tag) || tag_class(tag) != r->cls) fault(r, "slab tag magic or class wrong");
        const ClassInfo& ci = class_info(r->cls);
        if (r->capacity != ci.blocks_per_slab || r->units != ci.slab_units) fault(r, "slab geometry wrong for its class");
        if (r->carved > r->capacity || r->free_count > r->carved) fault(r, "slab counts out of range");
        if (r->used != r->carved - r->free_count) fault(r, "slab used count disagrees with its free list");
        uint32_t n = 0;
        char* start = unit_address(s, u);
        for (void* b = r->free_list; b != nullptr && n <= r->capacity; b = block_next(b), ++n) {
          size_t off = static_cast<size_t>(static_cast<char*>(b) - start);
          if (static_cast<char*>(b) < start || off >= static_cast<size_t>(r->carved) * ci.size || off % ci.size != 0) {
            fault(b, "slab free list holds a block outside its carved blocks");
            break;
          }
        }
        if (n != r->free_count) fault(r, "slab free list length disagrees with its count");
      } else if (r->kind == RunKind::kLarge) {
        if (tag != kTagLarge && tag != kTagLargeParked) fault(r, "large span head tag wrong");
        if (r->large_size == 0 || r->large_size > static_cast<size_t>(r->units) * kUnitSize) fault(r, "large span size out of range");
      } else {
        fault(r, "used unit owned by a free run");
      }
      u += r->units;
    }
  }
  if (segments != g_backend.segment_count) fault(nullptr, "segment count disagrees with the segment list");
  return faults;
}

}  // namespace hakmem
