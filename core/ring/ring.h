// One bounded ring type for the whole allocator (DESIGN.md contract A):
// fixed capacity, fixed storage, many producers, one consumer at a time.
// A producer never waits: when the ring is full the item is dropped and the
// drop is counted. Used for telemetry only; freed blocks never travel here.
//
// The algorithm is Dmitry Vyukov's bounded queue: each cell carries a
// sequence number that says whose turn it is. Storage is zero-initialised so
// rings can live in BSS before any constructor runs: a cell's sequence is
// stored relative to its index.
#pragma once

#include <atomic>

#include "base/base.h"
#include "contracts/contracts.h"

namespace hakmem {

// What a push to a full ring does, as contract A wants it. Contract A's tests
// instantiate rings with a broken policy (one that forgets to count the drop,
// one that spins waiting for room) to see the checker fire on real ring code;
// the allocator's rings all use this one, and `if constexpr` leaves no trace
// of the broken branches in them.
struct DropAndCountWhenFull {
  static constexpr bool kCountsDrop = true;
  static constexpr uint32_t kSpinsBeforeDropping = 0;
};

template <typename T, uint32_t kCapacity, typename FullPush = DropAndCountWhenFull>
class BoundedRing {
  static_assert((kCapacity & (kCapacity - 1)) == 0, "capacity is a power of two");
  // With one cell, "free for lap n+1" and "full with lap n" carry the same
  // sequence number: the turn-taking needs at least two cells.
  static_assert(kCapacity >= 2, "capacity is at least 2");

 public:
  // constexpr: a ring with static storage is constant-initialised, so no
  // static constructor can reset it after the first allocation used it.
  constexpr BoundedRing() = default;

  // Never blocks: returns false (and counts a drop) when the ring is full.
  bool try_push(const T& item) {
    // Contract A judges the push by what the ring's counters did between here
    // and the return, not by what this code says it did.
    HAK_CONTRACT(contracts::ring_push_begins(drops()));
    uint64_t pos = head_.load(std::memory_order_relaxed);
    uint32_t retries = 0;  // a correct ring raises it only for racing producers (contract A)
    (void)retries;
    for (;;) {
      Cell& cell = cells_[pos & (kCapacity - 1)];
      uint64_t seq = cell_seq(cell, pos);
      int64_t dif = static_cast<int64_t>(seq - pos);
      if (dif == 0) {
        if (head_.compare_exchange_weak(pos, pos + 1, std::memory_order_relaxed)) {
          cell.value = item;
          set_cell_seq(cell, pos, pos + 1);
          HAK_CONTRACT(contracts::ring_push_returned(true, drops(), retries));
          return true;
        }
        ++retries;
      } else if (dif < 0) {
        if constexpr (FullPush::kSpinsBeforeDropping > 0) {
          if (retries < FullPush::kSpinsBeforeDropping) {
            ++retries;
            pos = head_.load(std::memory_order_relaxed);
            continue;
          }
        }
        if constexpr (FullPush::kCountsDrop) drops_.fetch_add(1, std::memory_order_relaxed);
        HAK_CONTRACT(contracts::ring_push_returned(false, drops(), retries));
        return false;
      } else {
        ++retries;
        pos = head_.load(std::memory_order_relaxed);
      }
    }
  }

  bool try_pop(T* out) {
    uint64_t pos = tail_.load(std::memory_order_relaxed);
    for (;;) {
      Cell& cell = cells_[pos & (kCapacity - 1)];
      uint64_t seq = cell_seq(cell, pos);
      int64_t dif = static_cast<int64_t>(seq - (pos + 1));
      if (dif == 0) {
        if (tail_.compare_exchange_weak(pos, pos + 1, std::memory_order_relaxed)) {
          *out = cell.value;
          set_cell_seq(cell, pos, pos + kCapacity);
          return true;
        }
      } else if (dif < 0) {
        return false;  // empty
      } else {
        pos = tail_.load(std::memory_order_relaxed);
      }
    }
  }

  uint64_t drops() const { return drops_.load(std::memory_order_relaxed); }
  uint64_t pushed() const { return head_.load(std::memory_order_relaxed); }
  static constexpr uint32_t capacity() { return kCapacity; }

 private:
  struct Cell {
    std::atomic<uint64_t> seq_rel{0};  // sequence minus the cell's index
    T value{};
  };
  uint64_t index_of(const Cell& c) const { return static_cast<uint64_t>(&c - cells_); }
  uint64_t cell_seq(const Cell& c, uint64_t) const {
    return c.seq_rel.load(std::memory_order_acquire) + index_of(c);
  }
  void set_cell_seq(Cell& c, uint64_t, uint64_t seq) {
    c.seq_rel.store(seq - index_of(c), std::memory_order_release);
  }

  Cell cells_[kCapacity]{};
  alignas(64) std::atomic<uint64_t> head_{0};
  alignas(64) std::atomic<uint64_t> tail_{0};
  std::atomic<uint64_t> drops_{0};
};

}  // namespace hakmem
