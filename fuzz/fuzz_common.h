// Shared by the libFuzzer harnesses: the input reader, size decoding and the
// failure path. The harnesses reuse proptest's HeapModel (content patterns,
// overlap and alignment checks, header integrity) and turn its ModelFailure
// into an abort() that libFuzzer records as a crash.
#pragma once

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <exception>

#define PROP_HAVE_SEGMAP 1  // the harnesses link hakmem's objects: segment_lookup() works
#include "../proptest/heap_model.h"

namespace fz {

using prop::KiB;
using prop::MiB;

// Reads the input as 4-byte records [op a b c]; a short tail is ignored.
struct Reader {
  const uint8_t* data;
  size_t size;
  size_t pos = 0;
  bool next(uint8_t rec[4]) {
    if (pos + 4 > size) return false;
    for (int i = 0; i < 4; ++i) rec[i] = data[pos + i];
    pos += 4;
    return true;
  }
};

// A request size over every range from three bytes; the first byte picks the
// range (tiny 50 %, mid 28 %, large 18 %, huge 4 %), huge up to ~6 MiB.
inline size_t decode_size(uint8_t a, uint8_t b, uint8_t c) {
  uint32_t v = static_cast<uint32_t>(b) | static_cast<uint32_t>(c) << 8;
  if (a < 128) return v % (prop::kTinyMax + 1);
  if (a < 200) return prop::kTinyMax + 1 + ((v << 1 | (a & 1)) % (prop::kMidMax - prop::kTinyMax));
  if (a < 246) return prop::kMidMax + 1 + (static_cast<size_t>(v) * 29 + a) % (prop::kLargeMax - prop::kMidMax);
  return prop::kLargeMax + 1 + static_cast<size_t>(v) * 61;
}

// A tiny or mid size (for bursts of many blocks).
inline size_t decode_small_size(uint8_t a, uint8_t b) {
  uint32_t v = static_cast<uint32_t>(b) | static_cast<uint32_t>(a) << 8;
  return (a & 0x80) ? v % (32 * KiB) : v % (prop::kTinyMax + 1);
}

[[noreturn]] inline void die(const char* harness, const char* what) {
  fprintf(stderr, "\n==== %s: invariant broken: %s\n", harness, what);
  fflush(stderr);
  abort();
}

// Runs f(); a ModelFailure (or any exception) becomes a crash.
template <typename F>
void checked(const char* harness, F&& f) {
  try {
    f();
  } catch (const std::exception& e) {
    die(harness, e.what());
  }
}

inline void expect_heap_consistent(const char* harness, const char* when) {
  int faults = hak_check_heap();
  if (faults != 0) {
    char buf[160];
    snprintf(buf, sizeof buf, "%s: hak_check_heap() = %d", when, faults);
    die(harness, buf);
  }
}

}  // namespace fz
