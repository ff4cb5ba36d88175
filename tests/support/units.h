// Byte units for tests: plain numbers, not hakmem's layout. A size a test
// takes from the allocator's design (a segment, a unit, the mid or large
// limit) comes from the core header that defines it, not from these.
#pragma once

#include <stddef.h>

namespace test_support {

constexpr size_t KiB = 1024;
constexpr size_t MiB = 1024 * KiB;
constexpr size_t GiB = 1024 * MiB;

}  // namespace test_support
