// Bad frees (DESIGN.md §1, SECURITY.md): a pointer hakmem did not hand out
// is counted and ignored, never written through; the heap stays usable.
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "hakmem.h"
#include "size_class/size_class.h"
#include "slab/slab.h"
#include "tests/support/opaque.h"
#include "tests/support/units.h"

extern char** environ;

namespace {

using hakmem::kSegmentMask;
using test_support::KiB;
using test_support::MiB;

using test_support::opaque;

long g_global[16] = {1, 2, 3};

struct BadCounts {
  uint64_t foreign, invalid;
};
BadCounts bad_counts() {
  hak_stats s;
  hak_stats_get(&s);
  return {s.foreign_frees, s.invalid_frees};
}

void fill(void* p, size_t n, int v) { memset(p, v, n); }
bool is_filled(const void* p, size_t n, int v) {
  const unsigned char* c = static_cast<const unsigned char*>(p);
  for (size_t i = 0; i < n; ++i)
    if (c[i] != static_cast<unsigned char>(v)) return false;
  return true;
}

// After each bad free: the heap is consistent and allocation works.
void heap_still_usable() {
  EXPECT_EQ(hak_check_heap(), 0);
  std::vector<void*> v;
  for (size_t n : {size_t{1}, size_t{64}, size_t{1000}, size_t{40000}, size_t{300000}, size_t{3 * MiB}}) {
    void* p = malloc(n);
    ASSERT_NE(p, nullptr);
    memset(p, 0x3c, n);
    v.push_back(p);
  }
  for (void* p : v) free(p);
}

TEST(BadFree, ForeignPointersAreCountedAndIgnored) {
  int local[8] = {7, 7, 7, 7, 7, 7, 7, 7};
  void* m = mmap(nullptr, 1 * MiB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(m, MAP_FAILED);
  memset(m, 0x11, 1 * MiB);
  // One past the end of a huge block: the next 4 MiB slot, which that
  // block's own mapping partly covers, so no segment can live there.
  void* huge = malloc(4 * MiB + 64 * KiB);
  ASSERT_NE(huge, nullptr);
  size_t huge_usable = malloc_usable_size(huge);
  uintptr_t past_huge = reinterpret_cast<uintptr_t>(huge) + huge_usable;
  ASSERT_EQ(hak_owns(opaque(past_huge)), 0);
  struct Case {
    const char* what;
    void* p;
  } cases[] = {
      {"stack address", opaque(&local[2])},
      {"global", opaque(&g_global[1])},
      {"mmap'd page", opaque(m)},
      {"inside an mmap'd page", opaque(static_cast<char*>(m) + 4096 + 16)},
      {"(void*)1", opaque(uintptr_t{1})},
      {"(void*)16", opaque(uintptr_t{16})},
      {"past the end of a huge block", opaque(past_huge)},
      {"non-canonical address", opaque(uintptr_t{1} << 50)},
      {"top of the address space", opaque(~uintptr_t{15})},
  };
  for (const Case& c : cases) {
    BadCounts before = bad_counts();
    free(c.p);
    BadCounts after = bad_counts();
    EXPECT_EQ(after.foreign - before.foreign, 1u) << c.what << " " << c.p;
    EXPECT_EQ(after.invalid, before.invalid) << c.what;
    // The prefixed entry point behaves the same.
    hak_free(c.p);
    BadCounts again = bad_counts();
    EXPECT_EQ(again.foreign - after.foreign, 1u) << c.what;
    heap_still_usable();
  }
  // Nothing was written through the foreign pointers.
  for (int v : local) EXPECT_EQ(v, 7);
  EXPECT_EQ(g_global[0], 1);
  EXPECT_EQ(g_global[1], 2);
  EXPECT_TRUE(is_filled(m, 1 * MiB, 0x11));
  munmap(m, 1 * MiB);
  free(huge);
}

TEST(BadFree, InteriorPointersAreCountedAndBlockSurvives) {
  struct Case {
    const char* what;
    size_t size;
    std::vector<size_t> offsets;
  };
  const Case cases[] = {
      {"small", 100, {1, 8, 16, 50, 99}},
      {"tiny 1 KiB", 1024, {16, 512, 1008}},
      {"mid", 40000, {16, 4096, 39999}},
      {"mid 128 KiB", 128 * KiB, {64, 64 * KiB, 128 * KiB - 16}},
      {"large", 300 * KiB, {16, 4096, 64 * KiB, 100 * KiB, 300 * KiB - 1}},
      {"large 2 MiB", 2 * MiB, {4096, 1 * MiB + 4096}},
      {"huge (first slot)", 3 * MiB, {16, 4096, 1 * MiB}},
  };
  for (const Case& c : cases) {
    unsigned char* p = static_cast<unsigned char*>(malloc(c.size));
    ASSERT_NE(p, nullptr);
    size_t usable = malloc_usable_size(p);
    fill(p, usable, 0x5d);
    hak_stats s0;
    hak_stats_get(&s0);
    for (size_t off : c.offsets) {
      BadCounts before = bad_counts();
      free(opaque(p + off));
      BadCounts after = bad_counts();
      EXPECT_EQ(after.invalid - before.invalid, 1u) << c.what << " +" << off;
      EXPECT_EQ(after.foreign, before.foreign) << c.what << " +" << off;
    }
    // The block is untouched, still owned, still the same size...
    EXPECT_TRUE(is_filled(p, usable, 0x5d)) << c.what << ": a rejected free wrote into the block";
    EXPECT_EQ(hak_owns(p), 1) << c.what;
    EXPECT_EQ(malloc_usable_size(p), usable) << c.what;
    EXPECT_EQ(hak_check_heap(), 0) << c.what;
    // ... not handed out again while live ...
    std::vector<void*> others;
    for (int i = 0; i < 50; ++i) {
      void* q = malloc(c.size);
      ASSERT_NE(q, nullptr);
      EXPECT_NE(q, static_cast<void*>(p)) << c.what << ": a live block was handed out again";
      others.push_back(q);
    }
    EXPECT_TRUE(is_filled(p, usable, 0x5d)) << c.what;
    for (void* q : others) free(q);
    // ... and frees properly.
    hak_stats s1;
    hak_stats_get(&s1);
    free(p);
    hak_stats s2;
    hak_stats_get(&s2);
    uint64_t frees1 = s1.large_frees + s1.huge_frees, frees2 = s2.large_frees + s2.huge_frees;
    for (int k = 0; k < HAK_NUM_CLASSES; ++k) {
      frees1 += s1.classes[k].frees;
      frees2 += s2.classes[k].frees;
    }
    EXPECT_EQ(frees2 - frees1, 1u) << c.what << ": the real free was not counted";
    EXPECT_EQ(s2.invalid_frees, s1.invalid_frees) << c.what;
    heap_still_usable();
  }
}

TEST(BadFree, PointersIntoHakmemMetadataAreIgnored) {
  // A segment's unit 0 (the never-mapped gap before its first block, or the
  // header of a segment outside the arena) and a huge block's header page:
  // a free there must not touch them.
  unsigned char* small = static_cast<unsigned char*>(malloc(64));
  unsigned char* huge = static_cast<unsigned char*>(malloc(5 * MiB));
  ASSERT_NE(small, nullptr);
  ASSERT_NE(huge, nullptr);
  memset(huge, 0x7e, 5 * MiB);
  uintptr_t seg = reinterpret_cast<uintptr_t>(small) & ~kSegmentMask;
  const uintptr_t targets[] = {seg, seg + 16, seg + 64, seg + 4096, seg + hakmem::kUnitSize - 16,
                               reinterpret_cast<uintptr_t>(huge) - 4096, reinterpret_cast<uintptr_t>(huge) - 16};
  for (uintptr_t t : targets) {
    EXPECT_EQ(hak_owns(opaque(t)), 0) << std::hex << t;
    EXPECT_EQ(malloc_usable_size(opaque(t)), 0u) << std::hex << t;
    BadCounts before = bad_counts();
    free(opaque(t));
    BadCounts after = bad_counts();
    EXPECT_EQ((after.invalid - before.invalid) + (after.foreign - before.foreign), 1u) << std::hex << t;
    ASSERT_EQ(hak_check_heap(), 0) << "a free at " << std::hex << t << " damaged hakmem's metadata";
  }
  EXPECT_TRUE(is_filled(huge, 5 * MiB, 0x7e));
  EXPECT_EQ(malloc_usable_size(huge), 5 * MiB);
  free(huge);
  free(small);
  heap_still_usable();
}

// The segment arena (core/slab/slab.h): free() reads the unit entry of any
// pointer inside it before it asks the segment map. Every part of the arena
// that holds no live segment must read as zeros and send the pointer on as
// foreign: slots never used, and a segment given back to the OS. (Their
// memory is PROT_NONE: free must never touch it.)
TEST(BadFree, PointersIntoTheArenaOutsideLiveSegmentsAreForeign) {
  hak_stats s;
  hak_stats_get(&s);
  if (s.arena_bytes == 0) GTEST_SKIP() << "no segment arena in this run (HAKMEM_ARENA=0)";
  const uintptr_t base = s.arena_base, end = s.arena_base + s.arena_bytes;
  auto in_live_segment = [](uintptr_t a) {
    hakmem::RunInfo run;
    return hakmem::run_lookup(opaque(a), &run);
  };
  std::vector<uintptr_t> targets;
  if (!in_live_segment(end - 16))  // the last slot, unless the heap reached it
    targets = {end - hakmem::kSegmentSize, end - hakmem::kSegmentSize + hakmem::kUnitSize, end - 4096, end - 16};
  // Segments that lived and were given back: fill some with 64 KiB blocks,
  // free them all and trim. Their slots read as zeros again; at least one
  // of them must not have been taken by a newer segment.
  std::vector<void*> blocks;
  for (int i = 0; i < 600; ++i) blocks.push_back(malloc(64 * KiB));
  for (void* p : blocks) free(p);
  hak_trim();
  size_t given_back = 0;
  for (void* p : blocks) {
    uintptr_t a = reinterpret_cast<uintptr_t>(p);
    // A slot without a live segment reads as zeros, its header included.
    bool slot_empty = a - base < s.arena_bytes && !in_live_segment(a);
    if (slot_empty && given_back++ < 8) targets.push_back(a);
  }
  EXPECT_GT(given_back, 0u) << "no segment's slot was free again after the trim";
  for (uintptr_t t : targets) {
    ASSERT_LT(t - base, s.arena_bytes) << std::hex << t;
    EXPECT_EQ(hak_owns(opaque(t)), 0) << std::hex << t;
    EXPECT_EQ(malloc_usable_size(opaque(t)), 0u) << std::hex << t;
    BadCounts before = bad_counts();
    free(opaque(t));
    BadCounts after = bad_counts();
    EXPECT_EQ(after.foreign - before.foreign, 1u) << std::hex << t;
    EXPECT_EQ(after.invalid, before.invalid) << std::hex << t;
  }
  heap_still_usable();
}

TEST(BadFree, UsableSizeOfForeignOrInteriorIsZero) {
  long local = 0;
  unsigned char* p = static_cast<unsigned char*>(malloc(1000));
  unsigned char* l = static_cast<unsigned char*>(malloc(300 * KiB));
  EXPECT_EQ(malloc_usable_size(opaque(&local)), 0u);
  EXPECT_EQ(malloc_usable_size(opaque(g_global)), 0u);
  EXPECT_EQ(malloc_usable_size(opaque(p + 8)), 0u);
  EXPECT_EQ(malloc_usable_size(opaque(l + 64 * KiB)), 0u);
  EXPECT_EQ(malloc_usable_size(opaque(l + 16)), 0u);
  EXPECT_EQ(hak_malloc_usable_size(opaque(uintptr_t{1})), 0u);
  free(p);
  free(l);
}

TEST(BadFree, HugeInteriorBeyondFirstSlotIsIgnored) {
  // Past the first 4 MiB of a huge block the segment map knows nothing; the
  // free must still be refused (counted as a bad free of either kind).
  unsigned char* p = static_cast<unsigned char*>(malloc(10 * MiB));
  ASSERT_NE(p, nullptr);
  fill(p, 10 * MiB, 0x42);
  for (size_t off : {size_t{4 * MiB}, size_t{4 * MiB + 16}, size_t{8 * MiB}, size_t{10 * MiB - 8}}) {
    BadCounts before = bad_counts();
    free(opaque(p + off));
    BadCounts after = bad_counts();
    EXPECT_EQ((after.invalid - before.invalid) + (after.foreign - before.foreign), 1u) << "+" << off;
  }
  EXPECT_TRUE(is_filled(p, 10 * MiB, 0x42));
  EXPECT_EQ(hak_owns(p), 1);
  free(p);
  heap_still_usable();
}

TEST(BadFree, SlabSlackAndNeverCarvedBlocksAreRefused) {
  // Class 48: 65536 / 48 leaves 16 bytes of slack after block 1364 whose
  // start is still a multiple of 48 from the slab start.
  const int c48 = hakmem::size_to_class(48);
  ASSERT_EQ(hakmem::class_size(c48), 48u);
  ASSERT_EQ(hakmem::class_info(c48).slab_units, 1u);
  unsigned char* p = static_cast<unsigned char*>(malloc(48));
  ASSERT_NE(p, nullptr);
  uintptr_t slab = reinterpret_cast<uintptr_t>(p) & ~uintptr_t{0xffff};
  uintptr_t slack = slab + uintptr_t{hakmem::class_info(c48).blocks_per_slab} * 48;
  ASSERT_LT(slack + 48, slab + 65536 + 48);
  ASSERT_EQ(hak_owns(opaque(slack)), 0) << "the slack after the last block is no block";
  BadCounts before = bad_counts();
  free(opaque(slack));
  BadCounts after = bad_counts();
  EXPECT_EQ(after.invalid - before.invalid, 1u) << "free of the slab's slack was accepted";
  // A large class whose slab is carved a batch at a time: blocks past the
  // carve line were never handed out.
  const size_t n = 14336;
  const int c = hakmem::size_to_class(n);
  const auto& ci = hakmem::class_info(c);
  unsigned char* q = static_cast<unsigned char*>(malloc(n));
  ASSERT_NE(q, nullptr);
  uintptr_t seg = reinterpret_cast<uintptr_t>(q) & ~kSegmentMask;
  // The slab's start: the block's offset in its slab is a multiple of n.
  uintptr_t qa = reinterpret_cast<uintptr_t>(q);
  uintptr_t start = 0;
  for (uintptr_t u = (qa & ~uintptr_t{0xffff}); u >= seg + 0x10000; u -= 0x10000)
    if ((qa - u) % n == 0 && qa - u < uintptr_t{ci.slab_units} << 16 && hak_owns(opaque(u))) {
      start = u;
      break;
    }
  ASSERT_NE(start, 0u) << "could not find the slab start";
  uintptr_t last = start + uintptr_t{ci.blocks_per_slab - 1} * n;
  ASSERT_NE(last, qa);
  ASSERT_EQ(hak_owns(opaque(last)), 0) << "the slab's last block was carved already";
  {
    before = bad_counts();
    free(opaque(last));
    after = bad_counts();
    EXPECT_EQ(after.invalid - before.invalid, 1u) << "free of a never-carved block was accepted";
    // Had it been accepted, it would now be handed out.
    std::vector<void*> v;
    for (unsigned i = 0; i < ci.blocks_per_slab + 2; ++i) v.push_back(malloc(n));
    for (void* x : v) free(x);
  }
  EXPECT_EQ(hak_check_heap(), 0);
  free(p);
  free(q);
  heap_still_usable();
}

TEST(BadFree, ReallocOfForeignPointerFailsAndLeavesItAlone) {
  long local[4] = {9, 9, 9, 9};
  BadCounts before = bad_counts();
  errno = 0;
  void* r = realloc(opaque(local), 100);
  EXPECT_EQ(r, nullptr);
  EXPECT_EQ(errno, ENOMEM);
  EXPECT_EQ(bad_counts().foreign - before.foreign, 1u);
  for (long v : local) EXPECT_EQ(v, 9);
  unsigned char* p = static_cast<unsigned char*>(malloc(500));
  fill(p, 500, 0x21);
  before = bad_counts();
  errno = 0;
  EXPECT_EQ(realloc(opaque(p + 16), 1000), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  EXPECT_EQ(bad_counts().invalid - before.invalid, 1u);
  EXPECT_TRUE(is_filled(p, 500, 0x21));
  free(p);
  heap_still_usable();
}

TEST(BadFree, FreedLargeAndHugeTwiceAreIgnored) {
  // Large spans and huge mappings clear their tag or header when freed: a
  // second free (before anything reuses the memory) is refused.
  for (size_t n : {size_t{300 * KiB}, size_t{5 * MiB}}) {
    void* p = malloc(n);
    ASSERT_NE(p, nullptr);
    free(p);
    BadCounts before = bad_counts();
    free(p);
    BadCounts after = bad_counts();
    EXPECT_EQ((after.invalid - before.invalid) + (after.foreign - before.foreign), 1u) << n;
    heap_still_usable();
  }
}

// ---- HAKMEM_VERBOSE=1 in a fresh process ----------------------------------

// The test binary re-executes itself with HAKMEM_BAD_FREE_CHILD set: this
// runs before main() and never returns in the child.
std::string child_line(const char* label, const void* p) {
  char buf[128];
  snprintf(buf, sizeof buf, "%s %p\n", label, p);
  return buf;
}

__attribute__((constructor)) void bad_free_child_main() {
  const char* mode = getenv("HAKMEM_BAD_FREE_CHILD");
  if (mode == nullptr) return;
  // Report the pointers on stdout, free them, report done.
  unsigned char* block = static_cast<unsigned char*>(malloc(200));
  void* foreign = opaque(&g_global[3]);
  void* interior = opaque(block + 24);
  std::string out = child_line("foreign", foreign) + child_line("interior", interior);
  ssize_t w = write(1, out.data(), out.size());
  (void)w;
  free(foreign);
  free(interior);
  free(block);  // a good free: no message
  _exit(0);
}

struct ChildOutput {
  int status = -1;
  std::string out, err;
};

ChildOutput run_child(bool verbose) {
  ChildOutput r;
  int out_pipe[2], err_pipe[2];
  if (pipe(out_pipe) != 0 || pipe(err_pipe) != 0) return r;
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e)
    if (strncmp(*e, "HAKMEM_", 7) != 0) env.emplace_back(*e);
  env.emplace_back("HAKMEM_BAD_FREE_CHILD=1");
  if (verbose) env.emplace_back("HAKMEM_VERBOSE=1");
  if (const char* lib = getenv("HAKMEM_TEST_LIB")) env.emplace_back(std::string("LD_PRELOAD=") + lib);
  std::vector<char*> envp;
  for (auto& s : env) envp.push_back(s.data());
  envp.push_back(nullptr);
  char self[] = "/proc/self/exe";
  char* argv[] = {self, nullptr};
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, out_pipe[1], 1);
  posix_spawn_file_actions_adddup2(&fa, err_pipe[1], 2);
  posix_spawn_file_actions_addclose(&fa, out_pipe[0]);
  posix_spawn_file_actions_addclose(&fa, err_pipe[0]);
  pid_t pid;
  int rc = posix_spawn(&pid, "/proc/self/exe", &fa, nullptr, argv, envp.data());
  posix_spawn_file_actions_destroy(&fa);
  close(out_pipe[1]);
  close(err_pipe[1]);
  if (rc != 0) {
    close(out_pipe[0]);
    close(err_pipe[0]);
    return r;
  }
  auto slurp = [](int fd, std::string* s) {
    char buf[4096];
    ssize_t n;
    while ((n = read(fd, buf, sizeof buf)) > 0) s->append(buf, static_cast<size_t>(n));
    close(fd);
  };
  slurp(out_pipe[0], &r.out);  // the child writes little: no deadlock between the pipes
  slurp(err_pipe[0], &r.err);
  waitpid(pid, &r.status, 0);
  return r;
}

std::vector<std::string> lines_of(const std::string& s) {
  std::vector<std::string> v;
  size_t pos = 0;
  while (pos < s.size()) {
    size_t e = s.find('\n', pos);
    if (e == std::string::npos) e = s.size();
    if (e > pos) v.push_back(s.substr(pos, e - pos));
    pos = e + 1;
  }
  return v;
}

TEST(BadFree, VerboseNamesThePointerOnStderr) {
  ChildOutput r = run_child(true);
  ASSERT_TRUE(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0) << "child status " << r.status << "\n" << r.err;
  std::vector<std::string> out = lines_of(r.out);
  ASSERT_EQ(out.size(), 2u) << r.out;
  std::string foreign = out[0].substr(out[0].find(' ') + 1);
  std::string interior = out[1].substr(out[1].find(' ') + 1);
  std::vector<std::string> err = lines_of(r.err);
  ASSERT_EQ(err.size(), 2u) << "expected one line per bad free, got:\n" << r.err;
  EXPECT_NE(err[0].find(foreign), std::string::npos) << err[0] << " does not name " << foreign;
  EXPECT_NE(err[1].find(interior), std::string::npos) << err[1] << " does not name " << interior;
  for (const auto& l : err) EXPECT_NE(l.find("hakmem"), std::string::npos) << l;
}

TEST(BadFree, SilentWithoutVerbose) {
  ChildOutput r = run_child(false);
  ASSERT_TRUE(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0) << "child status " << r.status;
  EXPECT_EQ(lines_of(r.out).size(), 2u) << r.out;
  EXPECT_EQ(r.err, "") << "bad frees printed without HAKMEM_VERBOSE";
}

}  // namespace
