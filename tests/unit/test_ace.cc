// Box 3, ACE: the learned per-class policy (batch, capacity) and the
// learner's activity. ace_policy() and friends are internal (hidden in
// libhakmem.so), so this test finds them in the library's symbol table and
// calls the very code the allocator runs.
#include <spawn.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
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
#include "tests/support/hidden_symbol.h"

extern char** environ;

namespace {

using hakmem::AceStats;
using hakmem::ClassPolicy;
using hakmem::class_size;
using hakmem::kNumClasses;

using test_support::hidden_symbol;  // hidden functions of libhakmem.so

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
    if (c == hakmem::kNumSizeClasses) prev_batch = UINT32_MAX;  // the aligned classes, from 8 KiB again
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

// In a forked child, feeds class `cls` `epochs` epochs of events (64 slow
// events each, the policy read before each event and a learning step after
// it, so that every event is charged to the arm it was made under): under
// arm 0's policy each event reports `cheap_ops` operations, under any other
// `dear_ops(k)` for the k-th event. Calls `after_event(policy before,
// policy after)` after each event and `after_epoch(policy)` after each 64
// events. Makes no allocation: no other class's events reach the learner.
template <typename DearOps, typename AfterEvent, typename AfterEpoch>
void feed_the_learner(int cls, int epochs, uint32_t cheap_ops, DearOps dear_ops, AfterEvent after_event,
                      AfterEpoch after_epoch) {
  const ClassPolicy cheapest = ace().arm_policy(cls, 0);
  uint64_t k = 0;
  for (int epoch = 0; epoch < epochs; ++epoch) {
    ClassPolicy p = ace().policy(cls);
    for (int e = 0; e < 64; ++e, ++k) {
      const bool cheap = p.batch == cheapest.batch && p.cap == cheapest.cap;
      ace().record(hakmem::AceEvent{cheap ? cheap_ops : dear_ops(k), static_cast<uint8_t>(cls),
                                    hakmem::AceEventKind::kRefill, 1});
      ace().learn_step();
      const ClassPolicy q = ace().policy(cls);
      after_event(p, q);
      p = q;
    }
    after_epoch(p);
  }
}

bool same_policy(ClassPolicy a, ClassPolicy b) { return a.batch == b.batch && a.cap == b.cap; }

// Waits for a child that fed the learner and exited 0 when arm 0 was in
// force in at least 400 of the last 500 epochs (else 1 + that count / 4).
void expect_arm_0_settled(pid_t pid) {
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "arm 0 in force in about " << (WEXITSTATUS(status) - 1) * 4
                                    << " of the last 500 epochs";
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
  for (uint32_t a = 1; a < hakmem::kAceArms; ++a)
    ASSERT_FALSE(same_policy(ace().arm_policy(cls, a), cheapest)) << "arm " << a << " is arm 0's policy";
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    int epoch = 0, in_force_late = 0;
    bool cheap = false;  // the last event's arm was arm 0
    feed_the_learner(
        cls, 1000, 1000, [](uint64_t) { return 1u; },
        [&](ClassPolicy before, ClassPolicy) { cheap = same_policy(before, cheapest); },
        [&](ClassPolicy) { in_force_late += epoch++ >= 500 && cheap; });
    _exit(in_force_late >= 400 ? 0 : 1 + in_force_late / 4);  // the exit status says how often, in fours
  }
  expect_arm_0_settled(pid);
}

// policy_changes counts the epochs after which a class's arm changed, and
// only those. The 768-byte class's twelve arms are twelve different
// policies, so every change of arm shows as a change of the policy in
// force: in a child, the learner settles on a clearly cheapest arm (many
// epochs keep their arm, some explore), and the count must equal the
// changes seen. (make mutate: a count of the epochs that kept their arm
// instead passed every test before this one, which asked only that it grew.)
TEST(Ace, PolicyChangesCountTheArmChangesExactly) {
  REQUIRE_ACE();
  const int cls = hakmem::size_to_class(768);
  for (uint32_t a = 0; a < hakmem::kAceArms; ++a)
    for (uint32_t b = 0; b < a; ++b)
      ASSERT_FALSE(same_policy(ace().arm_policy(cls, a), ace().arm_policy(cls, b)))
          << "arms " << b << " and " << a << " of the 768-byte class are one policy";
  int out[2];
  ASSERT_EQ(pipe(out), 0);
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    close(out[0]);
    ace().learn_step();  // events the parent left in the ring (of any class) learned first
    const uint64_t before = ace_stats_now().policy_changes;
    uint64_t seen = 0;
    feed_the_learner(
        cls, 300, 1000, [](uint64_t) { return 1u; },
        [&seen](ClassPolicy p, ClassPolicy q) { seen += !same_policy(p, q); }, [](ClassPolicy) {});
    const uint64_t counted = ace_stats_now().policy_changes - before;
    char line[64];
    const int n = snprintf(line, sizeof line, "%llu %llu", static_cast<unsigned long long>(seen),
                           static_cast<unsigned long long>(counted));
    _exit(write(out[1], line, static_cast<size_t>(n)) == n ? 0 : 1);
  }
  close(out[1]);
  char line[64] = {};
  const ssize_t got = read(out[0], line, sizeof line - 1);
  close(out[0]);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  unsigned long long seen = 0, counted = 0;
  ASSERT_TRUE(got > 0 && sscanf(line, "%llu %llu", &seen, &counted) == 2) << line;
  printf("%llu changes of arm seen, %llu counted\n", seen, counted);  // also when the test passes
  EXPECT_GE(seen, 12u) << "the learner hardly changed arms: the test proves little";
  EXPECT_LE(seen, 200u) << "the learner changed arms at most epochs: the test proves little";
  EXPECT_EQ(counted, seen) << "policy_changes says " << counted << ", the policy in force changed " << seen
                           << " times in 300 epochs";
}

// The exploration bonus scales with the spread of the arms' mean costs, not
// with their level: costs of 1.0 and 1.14 slow events per operation (a busy
// class, whose slow path is hit every operation whatever the arm) must
// settle as fast as costs of 0.001 and 1 (Ace.TheLearnerSettlesOnTheCheapestArm
// below). Under arm 0 each event reports one operation; under the others one
// event in eight reports none (any 64 events in a row: 56 operations).
// (make mutate: a bonus scaled by hi + lo, 15 times the spread here, kept
// the learner exploring, and passed every test before this one.)
TEST(Ace, TheLearnerSettlesWhereCostsDifferLittle) {
  REQUIRE_ACE();
  const int cls = hakmem::size_to_class(768);
  for (uint32_t a = 1; a < hakmem::kAceArms; ++a)
    ASSERT_FALSE(same_policy(ace().arm_policy(cls, a), ace().arm_policy(cls, 0))) << "arm " << a << " is arm 0's";
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    const ClassPolicy cheapest = ace().arm_policy(cls, 0);
    int epoch = 0, in_force_late = 0;
    feed_the_learner(
        cls, 1000, 1, [](uint64_t k) { return k % 8 == 0 ? 0u : 1u; }, [](ClassPolicy, ClassPolicy) {},
        [&](ClassPolicy p) { in_force_late += epoch++ >= 500 && same_policy(p, cheapest); });
    printf("arm 0 in force in %d of the last 500 epochs\n", in_force_late);  // also when the test passes
    fflush(stdout);
    _exit(in_force_late >= 400 ? 0 : 1 + in_force_late / 4);  // the exit status says how often, in fours
  }
  expect_arm_0_settled(pid);
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
