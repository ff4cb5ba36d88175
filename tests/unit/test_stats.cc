// Stats: hak_stats_get counters, the report (hak_stats_print, malloc_stats,
// malloc_info) and HAKMEM_STATS=1 at exit.
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "hakmem.h"
#include "size_class/size_class.h"
#include "tests/support/hidden_symbol.h"
#include "tests/support/units.h"

extern char** environ;

namespace {

using hakmem::class_size;
using test_support::KiB;
using test_support::MiB;

hak_stats snap() {
  hak_stats s;
  hak_stats_get(&s);
  return s;
}

TEST(Stats, ExactPerClassDeltasOnAFreshThread) {
  const size_t sizes[] = {24, 200, 3000, 20000, 100000};
  const int kCount = 777;
  hak_stats g0 = snap();
  bool ran = false;
  std::thread t([&] {
    ran = true;
    hak_stats s0 = snap();
    std::vector<void*> v;
    v.reserve(kCount * 5);
    hak_stats s_reserved = snap();  // the vector's own block is counted too: measure from here
    (void)s0;
    for (size_t n : sizes)
      for (int i = 0; i < kCount; ++i) v.push_back(malloc(n));
    hak_stats s1 = snap();
    for (void* p : v) free(p);
    hak_stats s2 = snap();
    for (size_t n : sizes) {
      int c = hakmem::size_to_class(n);
      SCOPED_TRACE("class " + std::to_string(class_size(c)));
      EXPECT_EQ(s1.classes[c].allocs - s_reserved.classes[c].allocs, uint64_t{kCount});
      EXPECT_EQ(s1.classes[c].frees - s_reserved.classes[c].frees, 0u);
      EXPECT_EQ(s2.classes[c].allocs - s1.classes[c].allocs, 0u);
      EXPECT_EQ(s2.classes[c].frees - s1.classes[c].frees, uint64_t{kCount});
      uint64_t misses = s1.classes[c].tls_misses - s_reserved.classes[c].tls_misses;
      uint64_t refills = s1.classes[c].refills - s_reserved.classes[c].refills;
      EXPECT_GE(misses, 1u);
      EXPECT_LE(misses, uint64_t{kCount});
      EXPECT_EQ(misses, refills) << "every miss is one refill";
      // A refill brings at most a batch (<= 1024 blocks).
      EXPECT_GE(misses * 1024, uint64_t{kCount});
      EXPECT_GE(s2.classes[c].flushes - s1.classes[c].flushes, 1u) << "777 frees overflow any thread cache";
      EXPECT_GE(s1.classes[c].slabs, 1u);
      EXPECT_EQ(s1.classes[c].block_size, class_size(c));
    }
    EXPECT_GE(s1.bytes_in_use - s_reserved.bytes_in_use, uint64_t{kCount} * (24 + 200 + 3000 + 20000 + 100000));
  });
  t.join();
  ASSERT_TRUE(ran);
  // The exited thread's counts live on in the totals.
  hak_stats g1 = snap();
  for (size_t n : sizes) {
    int c = hakmem::size_to_class(n);
    EXPECT_GE(g1.classes[c].allocs - g0.classes[c].allocs, uint64_t{kCount});
    EXPECT_EQ(g1.classes[c].allocs - g0.classes[c].allocs, g1.classes[c].frees - g0.classes[c].frees);
  }
}

TEST(Stats, TrimKeepsTheCountsExact) {
  // Trimming moves cached blocks around (thread cache -> central -> slabs)
  // but hands nothing out and frees nothing of the program's.
  std::vector<void*> v;
  for (int i = 0; i < 3000; ++i) v.push_back(malloc(16 + (i * 37) % 20000));
  for (size_t i = 0; i < v.size(); i += 2) free(v[i]);
  hak_stats a = snap();
  hak_trim();
  malloc_trim(0);
  hak_stats b = snap();
  for (int c = 0; c < HAK_NUM_CLASSES; ++c) {
    EXPECT_EQ(b.classes[c].allocs, a.classes[c].allocs) << class_size(c);
    EXPECT_EQ(b.classes[c].frees, a.classes[c].frees) << class_size(c);
  }
  EXPECT_EQ(b.bytes_in_use, a.bytes_in_use);
  for (size_t i = 1; i < v.size(); i += 2) free(v[i]);
  hak_stats c = snap();
  uint64_t allocs = 0, frees = 0;
  for (int k = 0; k < HAK_NUM_CLASSES; ++k) {
    allocs += c.classes[k].allocs - a.classes[k].allocs;
    frees += c.classes[k].frees - a.classes[k].frees;
  }
  EXPECT_EQ(allocs, 0u);
  EXPECT_EQ(frees, 1500u);
  EXPECT_EQ(hak_check_heap(), 0);
}

TEST(Stats, LargeAndHugeCounters) {
  hak_stats s0 = snap();
  void* l = malloc(300 * KiB);
  void* h = malloc(5 * MiB);
  ASSERT_NE(l, nullptr);
  ASSERT_NE(h, nullptr);
  hak_stats s1 = snap();
  EXPECT_EQ(s1.large_allocs - s0.large_allocs, 1u);
  EXPECT_EQ(s1.huge_allocs - s0.huge_allocs, 1u);
  EXPECT_EQ(s1.large_live_bytes - s0.large_live_bytes, malloc_usable_size(l));
  EXPECT_EQ(s1.huge_live_bytes - s0.huge_live_bytes, malloc_usable_size(h));
  EXPECT_GE(s1.bytes_in_use - s0.bytes_in_use, 300 * KiB + 5 * MiB);
  EXPECT_GE(s1.bytes_mapped, s1.bytes_in_use);
  free(l);
  free(h);
  hak_stats s2 = snap();
  EXPECT_EQ(s2.large_frees - s1.large_frees, 1u);
  EXPECT_EQ(s2.huge_frees - s1.huge_frees, 1u);
  EXPECT_EQ(s2.large_live_bytes, s0.large_live_bytes);
  EXPECT_EQ(s2.huge_live_bytes, s0.huge_live_bytes);
  // realloc of a huge block through mremap keeps the live bytes right.
  void* g = malloc(3 * MiB);
  g = realloc(g, 40 * MiB);
  hak_stats s3 = snap();
  EXPECT_EQ(s3.huge_live_bytes - s0.huge_live_bytes, malloc_usable_size(g));
  free(g);
  EXPECT_EQ(snap().huge_live_bytes, s0.huge_live_bytes);
}

// A huge block that realloc shrinks (its mapping cut down by mremap, no
// copy) counts at its new size in huge_live_bytes and bytes_in_use, and its
// free takes the figures back to where they were. (make mutate: a shrink
// that left the live bytes at the old size passed every test before this
// one.)
TEST(Stats, AHugeBlockShrunkByReallocCountsAtItsNewSize) {
  hak_stats s0 = snap();
  void* g = malloc(40 * MiB);
  ASSERT_NE(g, nullptr);
  g = realloc(g, 10 * MiB);
  ASSERT_NE(g, nullptr);
  ASSERT_LT(malloc_usable_size(g), 20 * MiB) << "the block did not shrink";
  hak_stats s1 = snap();
  EXPECT_EQ(s1.huge_live_bytes - s0.huge_live_bytes, malloc_usable_size(g));
  EXPECT_LT(s1.bytes_in_use - s0.bytes_in_use, 20 * MiB);
  free(g);
  EXPECT_EQ(snap().huge_live_bytes, s0.huge_live_bytes);
}

// hak_stats_get fills in every class, the first too: the 8-byte class
// (class 0; the hardened variant, whose smallest block is 16 bytes, has no
// such class) reports its slabs, and its blocks count in bytes_in_use.
// (make mutate: a loop over the classes that began at class 1 passed every
// test before this one.)
TEST(Stats, TheEightByteClassIsCountedLikeTheOthers) {
  if (hakmem::size_to_class(8) != 0) GTEST_SKIP() << "8-byte requests take a larger class in this variant";
  constexpr int kCount = 5000;
  std::vector<void*> v;
  v.reserve(kCount);
  hak_stats s0 = snap();
  for (int i = 0; i < kCount; ++i) v.push_back(malloc(8));
  hak_stats s1 = snap();
  EXPECT_EQ(s1.classes[0].block_size, 8u);
  EXPECT_EQ(s1.classes[0].allocs - s0.classes[0].allocs, uint64_t{kCount});
  EXPECT_GE(s1.classes[0].slabs, 1u) << "the 8-byte class holds no slab with 5000 blocks live";
  EXPECT_GE(s1.bytes_in_use - s0.bytes_in_use, uint64_t{kCount} * 8) << "the 8-byte blocks are not in use";
  for (void* p : v) free(p);
  hak_stats s2 = snap();
  EXPECT_EQ(s2.classes[0].frees - s1.classes[0].frees, uint64_t{kCount});
}

TEST(Stats, MemoryFiguresAreConsistent) {
  std::vector<void*> v;
  for (int i = 0; i < 3000; ++i) v.push_back(malloc(1 + i * 17 % 9000));
  hak_stats s = snap();
  EXPECT_GE(s.segments, 1u);
  EXPECT_GE(s.bytes_mapped, s.segments * 4 * MiB);
  EXPECT_GE(s.bytes_mapped, s.bytes_in_use);
  EXPECT_GT(s.rss_bytes, 0u);
  EXPECT_GE(s.peak_rss_bytes, s.rss_bytes / 2);  // peak (getrusage) and current (statm) are close cousins
  for (void* p : v) free(p);
#if !defined(HAKMEM_PREFIXED_API_ONLY)  // mallinfo2 is glibc's there
  struct mallinfo2 mi = mallinfo2();
  hak_stats t = snap();
  EXPECT_EQ(mi.arena, t.bytes_mapped);
  EXPECT_EQ(mi.uordblks, t.bytes_in_use);
#endif
}

std::string read_file(FILE* f) {
  std::string s;
  rewind(f);
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, f)) > 0) s.append(buf, n);
  return s;
}

TEST(Stats, PrintNamesTheClassesInUse) {
  std::vector<void*> v;
  const size_t sizes[] = {48, 640, 12288, 131072};
  for (size_t n : sizes) v.push_back(malloc(n));
  FILE* f = tmpfile();
  ASSERT_NE(f, nullptr);
  fprintf(f, "before\n");  // buffered text written before the report stays in order
  hak_stats_print(f);
  std::string report = read_file(f);
  fclose(f);
  EXPECT_EQ(report.rfind("before\n", 0), 0u) << report;
  EXPECT_NE(report.find("hakmem"), std::string::npos) << report;
  for (void* p : v) {
    // One line per class in use, starting with its block size.
    std::string needle = " " + std::to_string(malloc_usable_size(p)) + " ";
    EXPECT_NE(report.find(needle), std::string::npos) << "class" << needle << "missing from:\n" << report;
  }
  EXPECT_NE(report.find("bad frees"), std::string::npos);
  for (void* p : v) free(p);
}

// Captures what `fn` writes to stderr (fd 2).
template <typename F>
std::string capture_stderr(F fn) {
  fflush(stderr);
  FILE* tmp = tmpfile();
  int saved = dup(2);
  dup2(fileno(tmp), 2);
  fn();
  fflush(stderr);
  dup2(saved, 2);
  close(saved);
  std::string s = read_file(tmp);
  fclose(tmp);
  return s;
}

TEST(Stats, MallocStatsPrintsToStderr) {
#if defined(HAKMEM_PREFIXED_API_ONLY)
  GTEST_SKIP() << "glibc answers this call in a build where hakmem is not the process's malloc";
#endif
  void* p = malloc(333);
  std::string out = capture_stderr([] { malloc_stats(); });
  EXPECT_NE(out.find("hakmem statistics"), std::string::npos) << out;
  std::string cls = " " + std::to_string(class_size(hakmem::size_to_class(333))) + " ";
  EXPECT_NE(out.find(cls), std::string::npos) << "class of the live block missing:\n" << out;
  std::string out2 = capture_stderr([] { hak_stats_print(nullptr); });
  EXPECT_NE(out2.find("hakmem statistics"), std::string::npos) << out2;
  free(p);
}

TEST(Stats, MallocInfoIsXml) {
#if defined(HAKMEM_PREFIXED_API_ONLY)
  GTEST_SKIP() << "glibc answers this call in a build where hakmem is not the process's malloc";
#endif
  void* p = malloc(5000);
  FILE* f = tmpfile();
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(malloc_info(0, f), 0);
  std::string xml = read_file(f);
  fclose(f);
  EXPECT_EQ(xml.rfind("<malloc", 0), 0u) << xml;
  EXPECT_NE(xml.find("</malloc>"), std::string::npos) << xml;
  EXPECT_NE(xml.find("to=\"5120\""), std::string::npos) << "the class of a live 5000-byte block is missing\n" << xml;
  // Its range starts right above the class below it, as glibc's bins do.
  const int cls = hakmem::size_to_class(5000);
  const std::string range = "from=\"" + std::to_string(hakmem::class_size(cls - 1) + 1) + "\" to=\"" +
                            std::to_string(hakmem::class_size(cls)) + "\"";
  EXPECT_NE(xml.find(range), std::string::npos) << "no element " << range << "\n" << xml;
  // Balanced: every opened element is closed (or self-closing).
  size_t opens = 0, closes = 0, selfs = 0;
  for (size_t i = 0; i + 1 < xml.size(); ++i) {
    if (xml[i] == '<' && xml[i + 1] == '/') ++closes;
    else if (xml[i] == '<') ++opens;
    if (xml[i] == '/' && xml[i + 1] == '>') ++selfs;
  }
  EXPECT_EQ(opens, closes + selfs) << xml;
  errno = 0;
  EXPECT_EQ(malloc_info(1, stderr), -1);
  EXPECT_EQ(errno, EINVAL);
  free(p);
}

// The report's figures, for counters the test chooses: the report writer
// (hakmem::stats_write_report, hidden in the library, found in its symbol
// table) prints a snapshot it is given, so every figure can be checked to
// the digit. Byte counts print with one decimal in the largest unit that
// leaves at least 1 (a count under 1 KiB: ".0 B"); hit rates in tenths of a
// per cent, rounded down. (make mutate: a byte count under 1 KiB printed
// with a tenth of .1, and a total hit rate printed as hit / 9, passed every
// test before this one.)
TEST(Stats, ReportPrintsTheFiguresItIsGiven) {
  using WriteReport = void (*)(const hak_stats&, int);
  const auto write_report =
      reinterpret_cast<WriteReport>(test_support::hidden_symbol("_ZN6hakmem18stats_write_reportERK9hak_statsi"));
  ASSERT_NE(write_report, nullptr) << "hakmem::stats_write_report not found in the symbol table (stripped?)";
  hak_stats s;
  memset(&s, 0, sizeof s);
  s.classes[3] = hak_class_stats{48, 1000, 990, 1, 1, 2, 1};  // 999 of 1000 from the thread cache
  s.classes[20] = hak_class_stats{1024, 3, 3, 3, 3, 0, 1};    // none from it
  s.large_allocs = 7;
  s.large_frees = 7;
  s.large_live_bytes = 0;
  s.huge_allocs = 2;
  s.huge_frees = 1;
  s.huge_live_bytes = 1536;  // 1.5 KiB
  s.huge_cached_bytes = 1000;
  s.segments = 3;
  s.bytes_mapped = (12 * MiB) + 512 * KiB;
  s.bytes_in_use = 1023;
  s.bytes_dirty = 5 * MiB + 103 * KiB;  // 5.100... MiB: rounded down to 5.1
  s.bytes_returned = 3 * (uint64_t{1} << 30);
  s.rss_bytes = 100;
  s.peak_rss_bytes = 2047;  // 1.99... KiB: 1.9, not rounded up
  FILE* f = tmpfile();
  ASSERT_NE(f, nullptr);
  write_report(s, fileno(f));
  std::string report = read_file(f);
  fclose(f);
  const char* want[] = {
      "      48         1000          990    99.9%          1          2      1\n",
      "    1024            3            3     0.0%          3          0      1\n",
      "small/mid: 1003 allocations, TLS hit rate 99.6%\n",  // (1003 - 4) * 1000 / 1003 = 996 per mille
      "large: 7 allocs, 7 frees, 0.0 B live; huge: 2 allocs, 1 frees, 1.5 KiB live, 1000.0 B cached\n",
      "memory: 12.5 MiB mapped in 3 segments, 1023.0 B in use, 5.1 MiB dirty, 3.0 GiB returned to the OS\n",
      "process: RSS 100.0 B, peak RSS 1.9 KiB\n",
  };
  for (const char* line : want) EXPECT_NE(report.find(line), std::string::npos) << "no line\n" << line << "in\n" << report;
}

// ---- HAKMEM_STATS=1 prints the report at exit ------------------------------

__attribute__((constructor)) void stats_child_main() {
  const char* mode = getenv("HAKMEM_STATS_CHILD");
  if (mode == nullptr) return;
  std::vector<void*> v;
  for (int i = 0; i < 100; ++i) v.push_back(malloc(4000));  // class 4096
  for (void* p : v) free(p);
  free(malloc(700 * KiB));
  exit(0);  // not _exit: the report is an exit hook
}

struct Child {
  int status = -1;
  pid_t pid = -1;
  std::string err;
};

// The library under test: ctest names it; else the one this program is linked to.
std::string library_path() {
  if (const char* lib = getenv("HAKMEM_TEST_LIB")) return lib;
  Dl_info info;
  if (dladdr(reinterpret_cast<void*>(&hak_malloc), &info) != 0 && info.dli_fname != nullptr) return info.dli_fname;
  return "";
}

// Runs `argv` (looked up on PATH) with hakmem preloaded, every HAKMEM_*
// setting of this process left out and `settings` (NAME=value) put in,
// stdin from /dev/null; returns its exit status and what it wrote to stderr.
Child run_program(std::vector<std::string> argv, const std::vector<std::string>& settings) {
  Child r;
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e)
    if (strncmp(*e, "HAKMEM_", 7) != 0) env.emplace_back(*e);
  for (const auto& s : settings) env.push_back(s);
  env.emplace_back("LD_PRELOAD=" + library_path());
  std::vector<char*> envp, args;
  for (auto& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);
  for (auto& a : argv) args.push_back(a.data());
  args.push_back(nullptr);
  int p[2];
  if (pipe(p) != 0) return r;
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, p[1], 2);
  posix_spawn_file_actions_addclose(&fa, p[0]);
  pid_t pid;
  int rc = posix_spawnp(&pid, args[0], &fa, nullptr, args.data(), envp.data());
  posix_spawn_file_actions_destroy(&fa);
  close(p[1]);
  if (rc == 0) {
    char buf[4096];
    ssize_t n;
    while ((n = read(p[0], buf, sizeof buf)) > 0) r.err.append(buf, static_cast<size_t>(n));
    waitpid(pid, &r.status, 0);
    r.pid = pid;
  }
  close(p[0]);
  return r;
}

Child run_child(const char* stats) {
  std::vector<std::string> settings{"HAKMEM_STATS_CHILD=1"};
  if (stats != nullptr) settings.push_back(std::string("HAKMEM_STATS=") + stats);
  return run_program({"/proc/self/exe"}, settings);
}

TEST(Stats, EnvStatsPrintsReportAtExit) {
#if defined(HAKMEM_PREFIXED_API_ONLY)
  GTEST_SKIP() << "preloads the drop-in library, which this build does not make";
#endif
  Child r = run_child("1");
  ASSERT_TRUE(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0) << r.status;
  EXPECT_NE(r.err.find("hakmem statistics"), std::string::npos) << "no report at exit:\n" << r.err;
  EXPECT_NE(r.err.find(" 4096 "), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("large: 1 allocs, 1 frees"), std::string::npos) << r.err;
}

TEST(Stats, NoReportWithoutEnvStats) {
#if defined(HAKMEM_PREFIXED_API_ONLY)
  GTEST_SKIP() << "preloads the drop-in library, which this build does not make";
#endif
  for (const char* v : {static_cast<const char*>(nullptr), "0", ""}) {
    Child r = run_child(v);
    ASSERT_TRUE(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0);
    EXPECT_EQ(r.err.find("hakmem statistics"), std::string::npos) << "HAKMEM_STATS=" << (v ? v : "(unset)");
  }
}

// ls and sort close their stderr before exit (gnulib's close_stdout), and
// the report at exit came after that: it said nothing. It goes to a copy of
// stderr taken at start-up, and names the process it is from.
TEST(Stats, ReportReachesTheUserWhenTheProgramClosesStderr) {
#if defined(HAKMEM_PREFIXED_API_ONLY)
  GTEST_SKIP() << "preloads the drop-in library, which this build does not make";
#endif
  for (const char* prog : {"ls", "sort"}) {
    Child r = run_program({prog}, {"HAKMEM_STATS=1"});
    ASSERT_TRUE(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0) << prog << ": " << r.status << r.err;
    const std::string header = "hakmem statistics (pid " + std::to_string(r.pid) + ", " + prog + ")";
    EXPECT_NE(r.err.find(header), std::string::npos) << prog << " wrote:\n" << r.err;
  }
}

// A file's text ("" if it cannot be read); the file is removed.
std::string take_file(const std::string& path) {
  std::string text;
  if (FILE* f = fopen(path.c_str(), "r")) {
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) text.append(buf, n);
    fclose(f);
    unlink(path.c_str());
  }
  return text;
}

// HAKMEM_STATS_FILE: the report goes to that file, %p standing for the pid.
TEST(Stats, ReportGoesToTheFileNamedWithThePid) {
#if defined(HAKMEM_PREFIXED_API_ONLY)
  GTEST_SKIP() << "preloads the drop-in library, which this build does not make";
#endif
  char dir[] = "/tmp/hakmem-stats-XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  const std::string pattern = std::string(dir) + "/report.%p";
  Child r = run_program({"ls"}, {"HAKMEM_STATS=1", "HAKMEM_STATS_FILE=" + pattern});
  ASSERT_TRUE(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0) << r.status;
  EXPECT_EQ(r.err.find("hakmem statistics"), std::string::npos) << "the report went to stderr too:\n" << r.err;
  const std::string path = std::string(dir) + "/report." + std::to_string(r.pid);
  const std::string text = take_file(path);
  rmdir(dir);
  EXPECT_EQ(text.rfind("hakmem statistics (pid " + std::to_string(r.pid) + ", ls)", 0), 0u) << path << ":\n" << text;
}

// A name as long as the setting allows, its %p's expanding it far past the
// setting's 255 bytes, is written whole: the report once went to a name cut
// after 259 bytes, a file nobody asked for.
TEST(Stats, ReportGoesToTheWholeNameHoweverLongItsPidsMakeIt) {
#if defined(HAKMEM_PREFIXED_API_ONLY)
  GTEST_SKIP() << "preloads the drop-in library, which this build does not make";
#endif
  char top[] = "/tmp/hakmem-stats-XXXXXX";
  ASSERT_NE(mkdtemp(top), nullptr);
  const std::string dir = std::string(top) + "/" + std::string(150, 'd');
  ASSERT_EQ(mkdir(dir.c_str(), 0700), 0);
  // 36 %p's: at most 252 bytes once expanded (a file name's most is 255).
  std::string pattern = dir + "/";
  for (int i = 0; i < 36; ++i) pattern += "%p";
  ASSERT_LE(pattern.size(), 255u);
  Child r = run_program({"ls"}, {"HAKMEM_STATS=1", "HAKMEM_STATS_FILE=" + pattern});
  ASSERT_TRUE(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0) << r.status;
  std::string name;
  for (int i = 0; i < 36; ++i) name += std::to_string(r.pid);
  const std::string path = dir + "/" + name;
  const std::string text = take_file(path);
  std::string others;  // whatever else landed there
  if (DIR* d = opendir(dir.c_str())) {
    while (dirent* e = readdir(d))
      if (e->d_name[0] != '.') {
        others += std::string(e->d_name) + "\n";
        unlink((dir + "/" + e->d_name).c_str());
      }
    closedir(d);
  }
  rmdir(dir.c_str());
  rmdir(top);
  if (path.size() <= 272) GTEST_SKIP() << "a pid of " << std::to_string(r.pid).size() << " digits expands too little";
  EXPECT_EQ(text.rfind("hakmem statistics (pid " + std::to_string(r.pid) + ", ls)", 0), 0u) << path << ":\n" << text;
  EXPECT_EQ(others, "");
  EXPECT_EQ(r.err.find("hakmem statistics"), std::string::npos) << "the report went to stderr:\n" << r.err;
}

// HAKMEM_STATS_PID: only that process reports (hakmem run --stats-top).
TEST(Stats, OnlyTheNamedProcessReports) {
#if defined(HAKMEM_PREFIXED_API_ONLY)
  GTEST_SKIP() << "preloads the drop-in library, which this build does not make";
#endif
  Child r = run_program({"ls"}, {"HAKMEM_STATS=1", "HAKMEM_STATS_PID=1"});
  ASSERT_TRUE(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0) << r.status;
  EXPECT_EQ(r.err.find("hakmem statistics"), std::string::npos) << r.err;
}

}  // namespace
