// Box 3, ACE: the learned per-class policy (batch, capacity) and the
// learner's activity. ace_policy() and friends are internal (hidden in
// libhakmem.so), so this test finds them in the library's symbol table and
// calls the very code the allocator runs.
#include <dlfcn.h>
#include <elf.h>
#include <fcntl.h>
#include <link.h>
#include <spawn.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "ace/ace.h"
#include "hakmem.h"
#include "size_class/size_class.h"

extern char** environ;

namespace {

using hakmem::AceStats;
using hakmem::ClassPolicy;
using hakmem::class_size;
using hakmem::kNumClasses;

// ---- finding hidden functions of libhakmem.so ------------------------------

// Looks `name` up in the .symtab of the object that defines hak_malloc and
// returns its run-time address, or nullptr.
void* hidden_symbol(const char* name) {
  Dl_info info;
  struct link_map* map = nullptr;
  if (dladdr1(reinterpret_cast<void*>(&hak_malloc), &info, reinterpret_cast<void**>(&map), RTLD_DL_LINKMAP) == 0 ||
      map == nullptr)
    return nullptr;
  int fd = open(info.dli_fname, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return nullptr;
  struct stat st;
  if (fstat(fd, &st) != 0) {
    close(fd);
    return nullptr;
  }
  size_t len = static_cast<size_t>(st.st_size);
  void* mem = mmap(nullptr, len, PROT_READ, MAP_PRIVATE, fd, 0);
  close(fd);
  if (mem == MAP_FAILED) return nullptr;
  const char* base = static_cast<const char*>(mem);
  const auto* eh = reinterpret_cast<const Elf64_Ehdr*>(base);
  void* result = nullptr;
  if (memcmp(eh->e_ident, ELFMAG, SELFMAG) == 0 && eh->e_shoff != 0) {
    const auto* sh = reinterpret_cast<const Elf64_Shdr*>(base + eh->e_shoff);
    for (int i = 0; i < eh->e_shnum && result == nullptr; ++i) {
      if (sh[i].sh_type != SHT_SYMTAB) continue;
      const auto* syms = reinterpret_cast<const Elf64_Sym*>(base + sh[i].sh_offset);
      size_t count = sh[i].sh_size / sizeof(Elf64_Sym);
      const char* strtab = base + sh[sh[i].sh_link].sh_offset;
      for (size_t k = 0; k < count; ++k) {
        if (ELF64_ST_TYPE(syms[k].st_info) != STT_FUNC || syms[k].st_value == 0) continue;
        if (strcmp(strtab + syms[k].st_name, name) == 0) {
          result = reinterpret_cast<void*>(map->l_addr + syms[k].st_value);
          break;
        }
      }
    }
  }
  munmap(mem, len);
  return result;
}

struct Ace {
  ClassPolicy (*policy)(int) = nullptr;
  ClassPolicy (*default_policy)(int) = nullptr;
  ClassPolicy (*arm_policy)(int, uint32_t) = nullptr;
  void (*stats)(AceStats*) = nullptr;
  void (*learn_step)() = nullptr;
  void (*record)(const hakmem::AceEvent&) = nullptr;
  bool ok() const { return policy && default_policy && arm_policy && stats && learn_step && record; }
};

const Ace& ace() {
  static Ace a = [] {
    Ace x;
    x.policy = reinterpret_cast<ClassPolicy (*)(int)>(hidden_symbol("_ZN6hakmem10ace_policyEi"));
    x.default_policy = reinterpret_cast<ClassPolicy (*)(int)>(hidden_symbol("_ZN6hakmem18ace_default_policyEi"));
    x.arm_policy = reinterpret_cast<ClassPolicy (*)(int, uint32_t)>(hidden_symbol("_ZN6hakmem14ace_arm_policyEij"));
    x.stats = reinterpret_cast<void (*)(AceStats*)>(hidden_symbol("_ZN6hakmem9ace_statsEPNS_8AceStatsE"));
    x.learn_step = reinterpret_cast<void (*)()>(hidden_symbol("_ZN6hakmem14ace_learn_stepEv"));
    x.record = reinterpret_cast<void (*)(const hakmem::AceEvent&)>(hidden_symbol("_ZN6hakmem10ace_recordERKNS_8AceEventE"));
    return x;
  }();
  return a;
}

#define REQUIRE_ACE() \
  ASSERT_TRUE(ace().ok()) << "hakmem::ace_* not found in the symbol table of libhakmem.so (stripped?)"

AceStats ace_stats_now() {
  AceStats s{};
  ace().stats(&s);
  return s;
}

// The arms the learner may choose for a class: default batch x1/2, x1, x2,
// x4 (at least 1), capacity 2, 8 or 32 batches (at most 2048 blocks and at
// most 2 MiB, 256 KiB above 1 KiB, but never below one batch or the default).
bool is_an_arm(int cls, ClassPolicy p) {
  ClassPolicy d = ace().default_policy(cls);
  for (uint32_t num : {1u, 2u, 4u, 8u}) {
    uint32_t batch = d.batch * num / 2;
    if (batch < 1) batch = 1;
    for (uint32_t mul : {2u, 8u, 32u}) {
      uint32_t cap = std::min<uint32_t>(batch * mul, 2048);
      const uint32_t size = static_cast<uint32_t>(hakmem::class_size(cls));
      uint32_t by_bytes = std::max<uint32_t>((size > 1024 ? 256u << 10 : 2u << 20) / size, d.cap);
      if (cap > by_bytes) cap = std::max(by_bytes, batch);
      if (p.batch == batch && p.cap == cap) return true;
    }
  }
  return false;
}

// Many refills and flushes of one class: allocate a run of blocks, free it.
void churn_class(size_t size, int rounds, int run) {
  std::vector<void*> v(static_cast<size_t>(run));
  for (int r = 0; r < rounds; ++r) {
    for (auto& p : v) p = malloc(size);
    for (auto& p : v) free(p);
  }
}

uint64_t slow_events(const hak_stats& s) {
  uint64_t n = 0;
  for (const auto& c : s.classes) n += c.refills + c.flushes;
  return n;
}

// ---- tests ----------------------------------------------------------------

TEST(Ace, DefaultPoliciesAreSane) {
  REQUIRE_ACE();
  uint32_t prev_batch = UINT32_MAX;
  for (int c = 0; c < kNumClasses; ++c) {
    ClassPolicy d = ace().default_policy(c);
    SCOPED_TRACE("class " + std::to_string(class_size(c)));
    EXPECT_GE(d.batch, 1u);
    EXPECT_GE(d.cap, d.batch);
    EXPECT_LE(d.cap, 1024u);
    // About 32 KiB per batch, at least 2 and at most 64 blocks.
    EXPECT_GE(d.batch, 2u);
    EXPECT_LE(d.batch, 64u);
    if (d.batch > 2) {
      EXPECT_LE(uint64_t{d.batch} * class_size(c), 32u * 1024);
    }
    EXPECT_LE(d.batch, prev_batch) << "bigger blocks, bigger batches";
    prev_batch = d.batch;
  }
}

TEST(Ace, PoliciesInForceAreSane) {
  REQUIRE_ACE();
  churn_class(4096, 300, 100);
  churn_class(48, 200, 1000);
  for (int c = 0; c < kNumClasses; ++c) {
    ClassPolicy p = ace().policy(c);
    SCOPED_TRACE("class " + std::to_string(class_size(c)));
    EXPECT_GE(p.batch, 1u);
    EXPECT_GE(p.cap, p.batch);
    EXPECT_TRUE(is_an_arm(c, p)) << "batch " << p.batch << " cap " << p.cap << " is no arm of the default "
                                 << ace().default_policy(c).batch << "/" << ace().default_policy(c).cap;
  }
}

// The bandit settles on an arm that is clearly cheapest. In a child (the
// learner's state is the process's), events of the 48-byte class report a
// thousand operations per slow event while arm 0 is in force and one per
// slow event under any other arm: arm 0 costs a thousandth of the others.
// The policy is read before each event and a learning step follows it, so
// every event is charged to the arm it was made under. UCB1 pulls each
// other arm about 2 ln n times in n epochs (some 14 times in 1000): arm 0
// was in force in 476 of the last 500, and must be in 400. (make mutate: an
// exploration bonus scaled by 1e300, or an epoch count that ran down, left
// the learner trying other arms -- arm 0 in force in about 40 and 332 of
// the 500 -- and no test saw it.)
TEST(Ace, TheLearnerSettlesOnTheCheapestArm) {
  REQUIRE_ACE();
  const int cls = hakmem::size_to_class(48);
  const ClassPolicy cheapest = ace().arm_policy(cls, 0);
  for (uint32_t a = 1; a < hakmem::kAceArms; ++a) {
    const ClassPolicy p = ace().arm_policy(cls, a);
    ASSERT_FALSE(p.batch == cheapest.batch && p.cap == cheapest.cap) << "arm " << a << " is arm 0's policy";
  }
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    int in_force_late = 0;
    for (int epoch = 0; epoch < 1000; ++epoch) {
      bool cheap = false;
      for (int k = 0; k < 64; ++k) {  // an epoch: kEpochEvents slow events of the class
        const ClassPolicy p = ace().policy(cls);
        cheap = p.batch == cheapest.batch && p.cap == cheapest.cap;
        ace().record(hakmem::AceEvent{cheap ? 1000u : 1u, static_cast<uint8_t>(cls), hakmem::AceEventKind::kRefill, 1});
        ace().learn_step();
      }
      if (epoch >= 500 && cheap) ++in_force_late;
    }
    _exit(in_force_late >= 400 ? 0 : 1 + in_force_late / 4);  // the exit status says how often, in fours
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "arm 0 in force in about " << (WEXITSTATUS(status) - 1) * 4
                                    << " of the last 500 epochs";
}

TEST(Ace, ChurnOnOneClassMakesTheLearnerLearn) {
  REQUIRE_ACE();
  const int cls = hakmem::size_to_class(4096);
  AceStats a0 = ace_stats_now();
  hak_stats s0;
  hak_stats_get(&s0);
  // Waves of 3000 blocks: more than the widest arm's capacity (2048), so
  // every arm keeps reaching the slow path, thousands of times.
  churn_class(4096, 300, 3000);
  hak_stats s1;
  hak_stats_get(&s1);
  AceStats a1 = ace_stats_now();
  uint64_t slow = (s1.classes[cls].refills - s0.classes[cls].refills) + (s1.classes[cls].flushes - s0.classes[cls].flushes);
  EXPECT_GT(slow, 1000u) << "the workload did not reach the slow path";
  EXPECT_GT(a1.events - a0.events, 256u) << "the learner heard of few events";
  EXPECT_GT(a1.steps, a0.steps) << "no learning step ran during the churn";
  EXPECT_GT(a1.policy_changes, a0.policy_changes) << "the bandit never tried another arm";
  ClassPolicy p = ace().policy(cls);
  EXPECT_TRUE(is_an_arm(cls, p)) << p.batch << "/" << p.cap;
  // A learning step on demand also counts.
  ace().learn_step();
  EXPECT_EQ(ace_stats_now().steps, a1.steps + 1);
}

TEST(Ace, EverySlowPathEventReachesTheLearnerOrIsCountedAsDropped) {
  // Single-threaded (no thread exits, no trim): every refill and every flush
  // reports one event, which the ring either takes or drops, and counts.
  REQUIRE_ACE();
  AceStats a0 = ace_stats_now();
  hak_stats s0;
  hak_stats_get(&s0);
  churn_class(3000, 300, 200);
  churn_class(100, 100, 3000);
  churn_class(70000, 100, 40);
  hak_stats s1;
  hak_stats_get(&s1);
  AceStats a1 = ace_stats_now();
  uint64_t slow = slow_events(s1) - slow_events(s0);
  EXPECT_GT(slow, 500u);
  EXPECT_EQ((a1.events - a0.events) + (a1.drops - a0.drops), slow);
}

TEST(Ace, LearningUnderThreads) {
  REQUIRE_ACE();
  AceStats a0 = ace_stats_now();
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; ++t)
    ts.emplace_back([t] {
      churn_class(512 + 1024 * t, 1000, 150);
      churn_class(20000, 100, 40);
    });
  for (auto& t : ts) t.join();
  AceStats a1 = ace_stats_now();
  EXPECT_GT(a1.events - a0.events, 1000u);
  EXPECT_GT(a1.steps, a0.steps);
  for (int c = 0; c < kNumClasses; ++c) {
    ClassPolicy p = ace().policy(c);
    EXPECT_GE(p.batch, 1u);
    EXPECT_GE(p.cap, p.batch);
    EXPECT_TRUE(is_an_arm(c, p)) << class_size(c);
  }
  EXPECT_EQ(hak_check_heap(), 0);
}

// ---- HAKMEM_ACE=0 and HAKMEM_ACE_ARM=k -----------------------------------

// In a re-executed copy of this binary (HAKMEM_ACE_CHILD=k): churn, then
// check that every class's policy stayed arm k's and the learner heard
// nothing. Exit code 0 = fine.
__attribute__((constructor)) void ace_pinned_child_main() {
  const char* arm = getenv("HAKMEM_ACE_CHILD");
  if (arm == nullptr) return;
  if (!ace().ok()) _exit(10);
  churn_class(4096, 2000, 100);
  churn_class(64, 100, 5000);  // beyond any arm's capacity (2048 blocks at most)
  std::thread t([] { churn_class(20000, 300, 40); });
  t.join();
  ace().learn_step();
  int bad = 0;
  for (int c = 0; c < kNumClasses; ++c) {
    ClassPolicy p = ace().policy(c), want = ace().arm_policy(c, static_cast<uint32_t>(atoi(arm)));
    if (p.batch != want.batch || p.cap != want.cap) bad |= 1;
  }
  AceStats s = ace_stats_now();
  if (s.events != 0 || s.drops != 0) bad |= 2;
  if (s.policy_changes != 0) bad |= 4;
  hak_stats hs;
  hak_stats_get(&hs);
  if (slow_events(hs) < 1000) bad |= 8;  // the churn did reach the slow path
  _exit(bad);
}

// Runs the child with `setting` and expects every policy to be arm `arm`'s.
void expect_pinned(const char* setting, int arm) {
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e)
    if (strncmp(*e, "HAKMEM_", 7) != 0) env.emplace_back(*e);
  env.emplace_back("HAKMEM_ACE_CHILD=" + std::to_string(arm));
  std::istringstream settings(setting);  // one or more, space-separated
  for (std::string one; settings >> one;) env.push_back(one);
  std::vector<char*> envp;
  for (auto& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);
  char self[] = "/proc/self/exe";
  char* argv[] = {self, nullptr};
  pid_t pid;
  ASSERT_EQ(posix_spawn(&pid, self, nullptr, nullptr, argv, envp.data()), 0);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status)) << "child died: " << status;
  int bad = WEXITSTATUS(status);
  EXPECT_NE(bad, 10) << "the child could not find the ACE functions";
  EXPECT_EQ(bad & 1, 0) << "with " << setting << " a policy left arm " << arm;
  EXPECT_EQ(bad & 2, 0) << "with " << setting << " the learner still received events";
  EXPECT_EQ(bad & 4, 0) << "with " << setting << " the learner changed a policy";
  EXPECT_EQ(bad & 8, 0) << "the child's churn never reached the slow path";
}

TEST(Ace, DisabledMeansFixedDefaults) {
  REQUIRE_ACE();
  for (int c = 0; c < kNumClasses; ++c) {  // the default arm is the default policy
    ClassPolicy a = ace().arm_policy(c, 3), d = ace().default_policy(c);
    EXPECT_TRUE(a.batch == d.batch && a.cap == d.cap) << "class " << c;
  }
  expect_pinned("HAKMEM_ACE=0", 3);
}

// The twelve arms are the grid ace.cc documents: the default batch scaled
// by 1/2, 1, 2 or 4 (rows), times a capacity of 2, 8 or 32 batches
// (columns), the capacity held to 2048 blocks and to the class's byte
// budget (2 MiB for blocks up to 1 KiB, 256 KiB above; never below the
// default capacity, nor below the batch). (make mutate: one arm's batch or
// capacity could change and every other test passed.)
TEST(Ace, ArmsFormTheDocumentedGrid) {
  REQUIRE_ACE();
  ASSERT_EQ(hakmem::kAceArms, 12u);
  const uint32_t halves[4] = {1, 2, 4, 8};
  const uint32_t batches_held[3] = {2, 8, 32};
  for (int c = 0; c < kNumClasses; ++c) {
    const ClassPolicy d = ace().default_policy(c);
    const size_t size = hakmem::class_size(c);
    uint32_t budget = static_cast<uint32_t>((size > 1024 ? 256 << 10 : 2 << 20) / size);
    if (budget < d.cap) budget = d.cap;
    for (uint32_t arm = 0; arm < 12; ++arm) {
      const uint32_t batch = std::max<uint32_t>(1, d.batch * halves[arm / 3] / 2);
      uint32_t cap = std::min<uint32_t>(batch * batches_held[arm % 3], 2048);
      if (cap > budget) cap = std::max(budget, batch);
      const ClassPolicy a = ace().arm_policy(c, arm);
      EXPECT_EQ(a.batch, batch) << "class " << size << " B, arm " << arm;
      EXPECT_EQ(a.cap, cap) << "class " << size << " B, arm " << arm;
    }
  }
}

TEST(Ace, OneArmPinnedForEveryClass) {
  REQUIRE_ACE();
  expect_pinned("HAKMEM_ACE_ARM=0", 0);
  expect_pinned("HAKMEM_ACE_ARM=11", 11);
  expect_pinned("HAKMEM_ACE_ARM=7 HAKMEM_ACE=0", 7);  // the arm wins
}

}  // namespace
