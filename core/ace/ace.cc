#include "ace/ace.h"

#include <math.h>

#include <atomic>

#include "contracts/contracts.h"
#include "ring/ring.h"

namespace hakmem {

namespace {

// Arms: the default batch scaled by 1/2, 1, 2 or 4, times a capacity of 2, 8
// or 32 batches. The wide capacities are for programs that free and allocate
// in waves of thousands of blocks of one class: a cache that holds a whole
// wave takes no slow path at all, where two batches take one per batch.
constexpr int kArms = 12;
constexpr uint32_t kBatchNum[kArms] = {1, 1, 1, 2, 2, 2, 4, 4, 4, 8, 8, 8};  // batch = default * num / 2
constexpr uint32_t kCapMul[kArms] = {2, 8, 32, 2, 8, 32, 2, 8, 32, 2, 8, 32};
constexpr uint32_t kDefaultArm = 3;  // batch x1, capacity 2 batches: ace_default_policy
constexpr uint32_t kMaxCap = 2048;
// ... and at most this many bytes per class and thread (2 MiB: a wave of
// 1600 blocks of 1 KiB, as in glibc-simple, still fits), so that a program
// with many threads and classes does not park megabytes in every cache.
constexpr uint32_t kMaxCapBytes = 2u << 20;
// A class's epoch ends after this many slow events; then its arm is scored.
constexpr uint32_t kEpochEvents = 64;
// Run a learning step once per this many pushed events.
constexpr uint64_t kLearnEvery = 256;

struct ClassLearner {
  uint64_t ops = 0;       // in the current epoch
  uint32_t slow = 0;
  uint32_t arm = kDefaultArm;  // plays first
  uint32_t pulls[kArms] = {};
  double reward_sum[kArms] = {};
  uint64_t total_pulls = 0;
};

BoundedRing<AceEvent, 1024> g_events;
Lock g_learn_lock;  // one learner at a time; taken with try_lock only
ClassLearner g_learners[kNumClasses];
std::atomic<uint32_t> g_policy[kNumClasses]{};  // ClassPolicy packed: batch | cap << 16; 0 = default
std::atomic<uint64_t> g_steps{0}, g_changes{0};

uint32_t pack(ClassPolicy p) { return p.batch | static_cast<uint32_t>(p.cap) << 16; }

ClassPolicy arm_policy(int cls, uint32_t arm) {
  ClassPolicy d = ace_default_policy(cls);
  uint32_t batch = d.batch * kBatchNum[arm] / 2;
  if (batch < 1) batch = 1;
  uint32_t cap = batch * kCapMul[arm];
  if (cap > kMaxCap) cap = kMaxCap;
  uint32_t cap_by_bytes = kMaxCapBytes / class_size(cls);
  if (cap > cap_by_bytes) cap = cap_by_bytes > batch ? cap_by_bytes : batch;
  return ClassPolicy{static_cast<uint16_t>(batch), static_cast<uint16_t>(cap)};
}

// Reward in (0, 1]: fewer slow-path events per operation is better; bytes a
// thread cache may hold cost a little (1 MiB of capacity = one slow event per op... x0.01).
double reward(int cls, uint32_t arm, uint64_t ops, uint32_t slow) {
  if (ops == 0) ops = 1;
  ClassPolicy p = arm_policy(cls, arm);
  double slow_per_op = static_cast<double>(slow) / static_cast<double>(ops);
  double cap_mib = static_cast<double>(p.cap) * static_cast<double>(class_size(cls)) / (1024.0 * 1024.0);
  return 1.0 / (1.0 + 100.0 * slow_per_op + cap_mib);
}

uint32_t ucb1_pick(const ClassLearner& l) {
  for (uint32_t a = 0; a < kArms; ++a)
    if (l.pulls[a] == 0) return a;  // every arm once first
  double best = -1.0;
  uint32_t pick = 0;
  double log_n = log(static_cast<double>(l.total_pulls));
  for (uint32_t a = 0; a < kArms; ++a) {
    double mean = l.reward_sum[a] / l.pulls[a];
    double score = mean + sqrt(2.0 * log_n / l.pulls[a]);
    if (score > best) { best = score; pick = a; }
  }
  return pick;
}

void learn_locked() {
  HAK_CONTRACT(contracts::learner_enter());
  g_steps.fetch_add(1, std::memory_order_relaxed);
  AceEvent e;
  while (g_events.try_pop(&e)) {
    if (e.cls >= kNumClasses) continue;
    ClassLearner& l = g_learners[e.cls];
    l.ops += e.ops;
    ++l.slow;
    if (l.slow < kEpochEvents) continue;
    double r = reward(e.cls, l.arm, l.ops, l.slow);
    l.reward_sum[l.arm] += r;
    ++l.pulls[l.arm];
    ++l.total_pulls;
    uint32_t next = ucb1_pick(l);
    if (next != l.arm) g_changes.fetch_add(1, std::memory_order_relaxed);
    l.arm = next;
    l.ops = 0;
    l.slow = 0;
    g_policy[e.cls].store(pack(arm_policy(e.cls, next)), std::memory_order_relaxed);
  }
  HAK_CONTRACT(contracts::learner_leave());
}

}  // namespace

ClassPolicy ace_default_policy(int cls) {
  // About 32 KiB per batch, between 2 and 64 blocks; capacity two batches.
  uint32_t batch = static_cast<uint32_t>(32768 / class_size(cls));
  if (batch > 64) batch = 64;
  if (batch < 2) batch = 2;
  return ClassPolicy{static_cast<uint16_t>(batch), static_cast<uint16_t>(batch * 2)};
}

ClassPolicy ace_policy(int cls) {
  HAK_CONTRACT(contracts::policy_read());
  uint32_t v = g_policy[cls].load(std::memory_order_relaxed);
  if (v == 0 || !g_config.ace_enabled) return ace_default_policy(cls);
  return ClassPolicy{static_cast<uint16_t>(v & 0xFFFF), static_cast<uint16_t>(v >> 16)};
}

void ace_record(const AceEvent& e) {
  if (!g_config.ace_enabled) return;
  g_events.try_push(e);
  if (g_events.pushed() % kLearnEvery == 0 && g_learn_lock.try_lock()) {
    learn_locked();
    g_learn_lock.unlock();
  }
}

void ace_learn_step() {
  if (g_learn_lock.try_lock()) {
    learn_locked();
    g_learn_lock.unlock();
  }
}

void ace_fork_child() { g_learn_lock.reinit_in_child(); }

void ace_stats(AceStats* out) {
  out->events = g_events.pushed();
  out->drops = g_events.drops();
  out->steps = g_steps.load(std::memory_order_relaxed);
  out->policy_changes = g_changes.load(std::memory_order_relaxed);
}

}  // namespace hakmem
