// Values the compiler cannot see through. Tests free pointers hakmem never
// handed out, write past blocks, and allocate what they never read: without
// this the compiler warns about the misuse, or proves something about the
// pointer and folds the call away, and the test no longer reaches hakmem.
#pragma once

#include <stddef.h>
#include <stdint.h>

namespace test_support {

inline void* opaque(void* p) {
  asm volatile("" : "+r"(p) : : "memory");
  return p;
}
inline void* opaque(uintptr_t address) { return opaque(reinterpret_cast<void*>(address)); }

// A size the compiler cannot fold into an overflow check or a known-bad request.
inline size_t opaque_size(size_t n) {
  asm volatile("" : "+r"(n));
  return n;
}

}  // namespace test_support
