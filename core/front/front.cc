// The hot path, hak_malloc and hak_free, and its first slow exits. The rest
// of the front: api.cc (calloc, realloc, aligned allocation, introspection
// of the prefixed API), glibc.cc (glibc's own calls: malloc_trim, mallinfo,
// ...), lifecycle.cc (init, decay, the purge thread, fork), mallctl.cc,
// cxx_new.cc.
//
// Where each exit of the hot path lands:
//
//   hak_malloc(size)
//     size <= 1 KiB / 128 KiB ... alloc_from_bin: this thread's list (Box 1)
//       list empty ............... small_alloc_slow -> refill_alloc (Box 2:
//                                  central pool, then the slab backend)
//     size > 128 KiB ............. big_alloc -> large_alloc (large box: spans
//                                  in segments, huge blocks in mappings)
//   hak_free(p)
//     a slab block in the arena .. free_to_thread_cache: this thread's list
//       over capacity / poll due . free_flush -> refill_flush (Box 2: a batch
//                                  to the central pool), decay_poll
//     anything else .............. free_slow: a segment outside the arena,
//                                  large_free (spans, huge), or the bad free
//   hardened ..................... hardened_free (checks, clears, quarantine)
//                                  and hardened_alloc's checks
#include "front/front.h"
#include "front/front_internal.h"

#include <errno.h>
#include <string.h>

#if defined(HAKMEM_HARDENED)
#include <emmintrin.h>
#endif

#include "contracts/contracts.h"
#include "large/large.h"
#include "os/os.h"
#include "refill/refill.h"
#include "size_class/size_class.h"
#include "slab/slab.h"
#include "stats/stats.h"
#include "tls_cache/tls_cache.h"

using namespace hakmem;

namespace {

HAK_NOINLINE void* small_alloc_slow(size_t bin_offset);
HAK_NOINLINE void hardened_check_class_slow(void* block, int cls);
HAK_NOINLINE void hardened_free(void* p, uint16_t bin_offset);
// Hardened: whether `info`, the entry of the unit holding `addr`, says a
// block of class `cls` starts there.
HAK_INLINE bool entry_holds_block_of_class(const UnitEntry& info, uintptr_t addr, int cls) {
  return info.tag == slab_tag(cls) && entry_is_block_start(info, addr);
}
// Hardened: a block that a list or bin of class `cls` would hand out is not
// a free block of that class.
[[noreturn]] HAK_COLD void hardened_list_damaged(void* block, int cls) {
  fatal("hakmem: malloc: the free list of %zu-byte blocks is damaged at %p (a write after free?); aborting",
        class_size(cls), block);
}
// Hardened: `block` came from a free list of class `cls` (a refill's batch,
// whose links were checked as they were read): it must be a block of that
// class, which a link forged without the keys could not make sure of. A
// block in the arena is checked inline; others, and the fault, out of line.
HAK_INLINE void hardened_check_class(void* block, int cls) {
  const uintptr_t addr = reinterpret_cast<uintptr_t>(block);
  const UnitEntry* info;
  if (HAK_LIKELY(arena_unit_entry(addr, info) && entry_holds_block_of_class(*info, addr, cls))) return;
  hardened_check_class_slow(block, cls);
}
// Hardened: a block of class `cls` leaves a thread's bin for the program's
// hands. Its free mark (or sealed link) must still hold: a write after free
// into its first words while it waited breaks it. Neither the mark nor the
// link goes with it, and its canary (if on) goes in.
HAK_INLINE void hardened_hand_out(void* block, int cls) {
  if (HAK_UNLIKELY(!block_is_free(block))) hardened_list_damaged(block, cls);
  block_unseal(block);
  if (class_canary_bytes(class_size(cls)) != 0) *block_canary_slot(block, class_size(cls)) = block_canary(block);
}
HAK_NOINLINE void free_slow(void* p);
HAK_NOINLINE void free_flush(void* just_freed);

}  // namespace

// ---------------------------------------------------------------- hot path

// `bin_offset`: the bin's place in the thread cache (tls_bin_offset_*).
HAK_INLINE void* alloc_from_bin(size_t bin_offset) {
  TlsBin& bin = tls_bin_at_offset(bin_offset);
  void* block = tls_cache_pop(bin);  // this thread's list: no lock, no atomic
  if (HAK_UNLIKELY(block == nullptr)) return small_alloc_slow(bin_offset);  // empty list: refill a batch
  if (kHardened) hardened_hand_out(block, static_cast<int>(tls_bin_offset_class(bin_offset)));
  HAK_CONTRACT(contracts::block_moved(block, contracts::Place::kTls, contracts::Place::kUser));
  annotate_alloc(block, class_size(static_cast<int>(tls_bin_offset_class(bin_offset))), false);  // compiled away in release
  return block;
}

extern "C" void* hak_malloc(size_t size) {
  // Hardened: room for the canary after the program's bytes (spans and huge
  // blocks end in guard pages instead).
  if (kHardened && size <= kSlabMax) size = canary_request(size);
  // One compare for the tiny range, the common case; one table load gives
  // the bin straight from the size, without division or class arithmetic.
  if (HAK_LIKELY(size <= kTinyMax)) return alloc_from_bin(tls_bin_offset_tiny(size));
  if (HAK_LIKELY(size <= kSlabMax)) return alloc_from_bin(tls_bin_offset_mid(size));
  return big_alloc(size, 0, false);
}

// p is a slab block that hakmem handed out (entry_is_block_start said so),
// and `info` its unit's entry: onto this thread's list of its class.
HAK_INLINE void free_to_thread_cache(void* p, const UnitEntry& info) {
  if (kHardened) return hardened_free(p, info.bin_offset);  // checks, clears, quarantines
  HAK_CONTRACT(contracts::block_moved(p, contracts::Place::kUser, contracts::Place::kTls));
  annotate_free(p, class_size(static_cast<int>(tag_class(info.tag))));  // compiled away in release
  // Over capacity, or time to poll the decay: the slow path finds the class
  // again from p, so that this path keeps no register alive across the push.
  if (HAK_UNLIKELY(!tls_cache_push(tls_bin_by_offset(info.bin_offset), p))) free_flush(p);
}

extern "C" void hak_free(void* p) {
  uintptr_t addr = reinterpret_cast<uintptr_t>(p);
  // The unit's entry (DESIGN.md §3), if p lies in the segment arena. NULL,
  // foreign pointers, huge blocks and segments outside the arena all leave
  // through free_slow.
  const UnitEntry* info;
  if (HAK_UNLIKELY(!arena_unit_entry(addr, info))) return free_slow(p);
  // A slab block handed out once? Large spans, free units, unused arena,
  // interior pointers and blocks past the carve line all leave here.
  if (HAK_UNLIKELY(!entry_is_block_start(*info, addr))) return free_slow(p);
  free_to_thread_cache(p, *info);
}

// ---------------------------------------------------------------- slow exits

namespace {

void* small_alloc_slow(size_t bin_offset) {
  const int cls = static_cast<int>(tls_bin_offset_class(bin_offset));
  front_ensure_init();
  decay_poll();
  void* p = refill_alloc(cls);
  if (p == nullptr) {
    errno = ENOMEM;
    return nullptr;
  }
  purge_thread_maybe_start();
  if (kHardened) {
    hardened_check_class(p, cls);
    hardened_hand_out(p, cls);
  }
  annotate_alloc(p, class_size(cls), false);
  return p;
}

// The class whose bin a unit entry's bin offset leads to (tls_bin_by_offset)
// for block p. A spare bin has no class: only a forged entry leads there.
int bin_class(uint16_t bin_offset, const void* p) {
  const int cls = static_cast<int>(tls_bin_slot(bin_offset));
  if (HAK_UNLIKELY(cls >= kNumClasses)) fatal("hakmem: free(%p): the block's metadata is damaged; aborting", p);
  return cls;
}

// hardened_check_class's other cases: a segment outside the arena, or the fault.
void hardened_check_class_slow(void* block, int cls) {
  const UnitEntry* info = unit_entry_of(block);
  if (HAK_UNLIKELY(info == nullptr || !entry_holds_block_of_class(*info, reinterpret_cast<uintptr_t>(block), cls)))
    hardened_list_damaged(block, cls);
}

#if defined(HAKMEM_HARDENED)
// Hardened zero-on-free: every byte of a freed block past its two link
// words (which the seal overwrites) is cleared. When the block leaves the
// quarantine the rest of its first cache line is checked still clear: a
// write after free most often lands in an object's first fields (a
// reference count, a vtable or list pointer), and checking the whole block
// again would double the cost of zeroing, per byte freed. Blocks are
// multiples of 16 bytes.
constexpr size_t kCheckedAfterFree = 64;
// Blocks of 16 KiB and more: their whole pages are cleared only where
// resident (os_clear_resident). A page the program never touched reads as
// zero already; clearing it would fault it in, and a server that takes
// 32 KiB buffers and fills a few hundred bytes of each would hold them all.
constexpr size_t kClearResidentFrom = 16 << 10;
HAK_NOINLINE void block_clear_after_link_long(void* block, size_t size) {
  char* from = static_cast<char*>(block) + 16;
  char* end = static_cast<char*>(block) + size;
  if (size < kClearResidentFrom) return (void)memset(from, 0, size - 16);
  char* first_page = reinterpret_cast<char*>((reinterpret_cast<uintptr_t>(from) + kOsPageSize - 1) & ~(kOsPageSize - 1));
  char* last_page = reinterpret_cast<char*>(reinterpret_cast<uintptr_t>(end) & ~(kOsPageSize - 1));
  memset(from, 0, static_cast<size_t>(first_page - from));
  os_clear_resident(first_page, static_cast<size_t>(last_page - first_page));
  memset(last_page, 0, static_cast<size_t>(end - last_page));
}
HAK_INLINE void block_clear_after_link(void* block, size_t size) {
  if (size > 128) return block_clear_after_link_long(block, size);
  // Small blocks: a few stores, no call. Written out, since a loop became
  // `rep stos`, whose start-up costs more than clearing 112 bytes.
  __m128i* v = static_cast<__m128i*>(block);
  const __m128i zero = _mm_setzero_si128();
  switch (size / 16) {
    case 8: _mm_store_si128(v + 7, zero); [[fallthrough]];
    case 7: _mm_store_si128(v + 6, zero); [[fallthrough]];
    case 6: _mm_store_si128(v + 5, zero); [[fallthrough]];
    case 5: _mm_store_si128(v + 4, zero); [[fallthrough]];
    case 4: _mm_store_si128(v + 3, zero); [[fallthrough]];
    case 3: _mm_store_si128(v + 2, zero); [[fallthrough]];
    case 2: _mm_store_si128(v + 1, zero); [[fallthrough]];
    default: break;  // 16 bytes: the link words only
  }
}
bool block_still_clear_after_link(const void* block, size_t size) {
  const __m128i* v = static_cast<const __m128i*>(block);
  const size_t end = (size < kCheckedAfterFree ? size : kCheckedAfterFree) / 16;
  __m128i any = _mm_setzero_si128();
  for (size_t i = 1; i < end; ++i) any = _mm_or_si128(any, _mm_load_si128(v + i));
  return _mm_movemask_epi8(_mm_cmpeq_epi8(any, _mm_setzero_si128())) == 0xffff;
}
#endif

// Hardened: free of a block that hakmem handed out (the block test said so).
// A block that holds a free mark or a sealed link is free already: a double
// free, wherever the block went since (a thread's bin, the quarantine, the
// central pool, its slab). Otherwise the block is cleared (its old contents
// must not reach its next owner), marked free, and waits in the quarantine;
// the block that leaves the quarantine goes to the bin's array.
void hardened_free(void* p, uint16_t bin_offset) {
  if (HAK_UNLIKELY(block_is_free(p))) fatal("hakmem: free(%p): double free; aborting", p);
  const int cls = bin_class(bin_offset, p);
#if defined(HAKMEM_HARDENED)
  TlsBin& bin = tls_bin(static_cast<size_t>(cls));
  // A thread's first free registers it (and gives it its arrays); a thread
  // past its exit hook has none, and its blocks go on alone.
  const bool to_bin = tls_bin_has_slot(bin) || (refill_thread_ready() && tls_bin_has_slot(bin));
  const size_t size = class_size(cls);
  if (class_canary_bytes(size) != 0 && HAK_UNLIKELY(*block_canary_slot(p, size) != block_canary(p)))
    fatal("hakmem: free(%p): the %zu bytes after the block's %zu usable ones were overwritten (a heap overflow); aborting",
          p, kCanaryBytes, size - kCanaryBytes);
  // Before the checker poisons it. A block above HAKMEM_HARDENED_ZERO_MAX
  // keeps all but its first 64 bytes (which the quarantine checks).
  if (g_config.zero_on_free) block_clear_after_link(p, size <= g_config.zero_whole_max ? size : kCheckedAfterFree);
  annotate_free(p, size);
  if (HAK_UNLIKELY(!to_bin)) return refill_free_direct(cls, p);
  block_mark_free(p);
  if (g_config.quarantine) {
    p = tls_quarantine_swap(cls, p);
    if (p == nullptr) return;
    // The block leaving has waited, marked (and cleared): a write after
    // free in the meantime broke its mark (or left bytes behind).
    if (HAK_UNLIKELY(!block_is_marked_free(p) || (g_config.zero_on_free && !block_still_clear_after_link(p, size))))
      fatal("hakmem: free: the block at %p was written after it was freed; aborting", p);
  }
  if (HAK_UNLIKELY(!tls_cache_push(bin, p))) free_flush(p);
#else
  (void)cls;
#endif
}

// A push returned false: over capacity, or the bin's free tick ran out (or both).
void free_flush(void* just_freed) {
  front_ensure_init();
  // The bin the push used, found as the push found it.
  const int cls = bin_class(unit_entry_of(just_freed)->bin_offset, just_freed);
  if (tls_cache_over_capacity(cls)) refill_flush(cls);
  if (tls_cache_take_poll(cls)) decay_poll();
}

}  // namespace

void* hakmem::big_alloc(size_t size, size_t align, bool zero) {
  // A span this thread parked: no lock, and the clock read (the decay poll)
  // only every kSpanOpsPerPoll such calls. Any span is 64 KiB aligned. On a
  // miss the parked spans of other lengths go back first, so that the
  // backend reuses their units (resident, and lowest first) rather than
  // carving new ones around them: a buffer grown by doubling and freed,
  // again and again, faulted fresh pages in at every round while the last
  // round's buffer sat parked.
  if (kParkSpans && size > kSlabMax && size <= kParkMax && align <= kUnitSize) {
    if (void* p = refill_span_take(size)) {
      if (zero) memset(p, 0, size);
      if (tls_span_poll_due()) decay_poll();
      return p;
    }
    refill_spans_flush();
  }
  front_ensure_init();
  decay_poll();
  if (size > PTRDIFF_MAX) {  // glibc's limit: no object may exceed it
    errno = ENOMEM;
    return nullptr;
  }
  purge_thread_maybe_start();
  bool zeroed = false;
  void* p = large_alloc(size, align, &zeroed);
  if (p == nullptr) {
    errno = ENOMEM;
    return nullptr;
  }
  annotate_alloc(p, large_usable_size(p), zeroed);
  if (zero && !zeroed) memset(p, 0, size);
  return p;
}

namespace {

void free_slow(void* p) {
  if (p == nullptr) return;
  if (kParkSpans && refill_span_park(p)) {  // a span of up to kParkMax: it waits for this thread's next malloc
    if (tls_span_poll_due()) decay_poll();
    return;
  }
  // A slab block of a segment outside the arena: the same test as hak_free,
  // after the segment map said the segment is ours.
  if (const UnitEntry* info = unit_entry_lookup(p))
    if (entry_is_block_start(*info, reinterpret_cast<uintptr_t>(p))) return free_to_thread_cache(p, *info);
  if (kMemoryChecker) {  // tell the checker before the block goes (a second lookup: not in release)
    if (size_t big = large_usable_size(p)) {
      annotate_free(p, big);
      annotate_returned(p, big);  // spans and mappings are no blocks of the user's any more
    }
  }
  if (large_free(p)) {
    decay_poll();
    return;
  }
  count_bad_free(p, in_our_memory(p));
}

}  // namespace

// The class of p if p is the start of a slab block, else -1.
int hakmem::slab_class_of(const void* p) {
  const UnitEntry* info = unit_entry_of(p);
  if (info == nullptr || !entry_is_block_start(*info, reinterpret_cast<uintptr_t>(p))) return -1;  // as in hak_free
  return static_cast<int>(tag_class(info->tag));
}

// Allocation with an alignment (a power of two) and optional zeroing.
void* hakmem::alloc_aligned(size_t align, size_t size, bool zero) {
  void* p;
  if (align <= 16 && size <= kSlabMax) {
    // Every class above 8 B is 16-aligned; the 8 B class is 8-aligned.
    if (align == 16 && size < 16) size = 16;
    p = hak_malloc(size);
    if (p != nullptr && zero) memset(p, 0, size);
    return p;
  }
  int cls = size_to_aligned_class(kHardened && size <= kSlabMax ? canary_request(size) : size, align);
  if (cls >= 0) {
    p = alloc_from_bin(tls_bin_offset_of_class(cls));
    if (p != nullptr && zero) memset(p, 0, size);
    return p;
  }
  return big_alloc(size, align, zero);
}

void hakmem::count_bad_free(void* p, bool ours) {
  const char* why = ours ? "not a live block (interior, freed or damaged pointer)"
                         : "pointer not allocated by hakmem (or a huge block freed already)";
  if (kHardened) fatal("hakmem: free(%p): %s; aborting", p, why);
  HAK_CONTRACT(contracts::fire('C', ours ? "free of an interior or damaged pointer: not a block hakmem handed out"
                                          : "free of a pointer hakmem never handed out", p));
  if (ours) g_counters.invalid_frees.add(1); else g_counters.foreign_frees.add(1);
  if (g_config.verbose) diag("hakmem: free(%p): %s; ignored", p, why);
}

bool hakmem::in_our_memory(const void* p) { return segmap_kind(p) != kSlotForeign; }


namespace hakmem {
void* front_malloc(size_t) __attribute__((alias("hak_malloc")));
void front_free(void*) __attribute__((alias("hak_free")));
}  // namespace hakmem

#ifdef HAKMEM_OVERRIDE
// The drop-in symbols of the hot path, aliases (not calls) so that malloc
// and free are these very functions; api.cc has the rest.
#define HAK_ALIAS(name) __attribute__((alias(#name), used, visibility("default")))
extern "C" {
void* malloc(size_t) HAK_ALIAS(hak_malloc);
void free(void*) HAK_ALIAS(hak_free);
void cfree(void*) HAK_ALIAS(hak_free);
// glibc's internal names, which some programs and libraries call directly.
void* __libc_malloc(size_t) HAK_ALIAS(hak_malloc);
void __libc_free(void*) HAK_ALIAS(hak_free);
}  // extern "C"
#endif  // HAKMEM_OVERRIDE
