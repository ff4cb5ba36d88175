// Blocks that carry a stamp, so a test sees when an allocator hands out
// memory that is still in someone's hands (two live blocks that overlap, a
// block damaged on its way from the allocating thread to the freeing one).
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <algorithm>

#include "tests/support/hand_off_queue.h"

namespace test_support {

// Blocks live at the same time need different ids; ids that differ in
// their top byte too tell blocks apart in their middle bytes as well.
struct Block {
  unsigned char* p;
  size_t n;
  uint64_t id;
};

// The head and tail carry the id (tiny blocks as much of it as fits); up to
// 256 bytes after the head carry the id's top byte. A bounded stamp keeps
// huge blocks cheap; an overlap or a stray write lands on one end or the
// other.
inline void stamp(const Block& b) {
  size_t k = std::min<size_t>(b.n, 8);
  memcpy(b.p, &b.id, k);
  if (b.n > 8) memset(b.p + 8, static_cast<int>(b.id >> 56), std::min<size_t>(b.n - 8, 256));
  if (b.n >= 16) memcpy(b.p + b.n - 8, &b.id, 8);
}

inline bool intact(const Block& b) {
  uint64_t v = 0, want = 0;
  size_t k = std::min<size_t>(b.n, 8);
  memcpy(&v, b.p, k);
  memcpy(&want, &b.id, k);
  if (v != want) return false;
  size_t mid_end = 8 + std::min<size_t>(b.n > 8 ? b.n - 8 : 0, 256);
  if (b.n >= 16) mid_end = std::min(mid_end, b.n - 8);
  for (size_t i = 8; i < mid_end; ++i)
    if (b.p[i] != static_cast<unsigned char>(b.id >> 56)) return false;
  if (b.n >= 16) {
    memcpy(&v, b.p + b.n - 8, 8);
    if (v != b.id) return false;
  }
  return true;
}

// Blocks handed from the allocating thread to the freeing one.
using BlockQueue = HandOffQueue<Block>;

}  // namespace test_support
