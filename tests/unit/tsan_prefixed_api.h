// Force-included (-include) into the unit tests that the TSan build runs.
// TSan owns malloc there: its runtime calls malloc while it initialises,
// before an instrumented hakmem could run, so hakmem cannot be the drop-in
// library under TSan. These tests then reach hakmem through its prefixed
// API instead, with the same code: the C allocation calls written in them
// are mapped to the hak_ ones here. operator new, glibc and gtest keep
// TSan's malloc, which also keeps their blocks out of hakmem's counts.
#pragma once

// Every header these tests include, before the macros below, so that the
// macros cannot rename a declaration (include guards keep the tests' own
// #includes from reading them again).
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "hakmem.h"
#include "large/large.h"
#include "slab/slab.h"

#define malloc(size) hak_malloc(size)
#define free(ptr) hak_free(ptr)
#define calloc(count, size) hak_calloc(count, size)
#define realloc(ptr, size) hak_realloc(ptr, size)
#define malloc_usable_size(ptr) hak_malloc_usable_size(ptr)
// The drop-in library's malloc_trim is hak_trim and reports that it trimmed.
#define malloc_trim(pad) ((void)(pad), hak_trim(), 1)

// Tests that need hakmem as the process's malloc (glibc's introspection
// calls answered by hakmem, a child with the library preloaded) skip here.
#define HAKMEM_PREFIXED_API_ONLY 1
