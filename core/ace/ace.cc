#include "ace/ace.h"

#include <emmintrin.h>

#include <atomic>

#include "contracts/contracts.h"
#include "ring/ring.h"

namespace hakmem {

namespace {

// Arms: the default batch scaled by 1/2, 1, 2 or 4, times a capacity of 2, 8
// or 32 batches. The wide capacities are for programs that free and allocate
// in waves of thousands of blocks of one class: a cache that holds a whole
// wave takes no slow path at all, where two batches take one per batch.
constexpr uint32_t kBatchNum[kAceArms] = {1, 1, 1, 2, 2, 2, 4, 4, 4, 8, 8, 8};  // batch = default * num / 2
constexpr uint32_t kCapMul[kAceArms] = {2, 8, 32, 2, 8, 32, 2, 8, 32, 2, 8, 32};
static_assert(kAceDefaultArm == 3 && kBatchNum[kAceDefaultArm] == 2 && kCapMul[kAceDefaultArm] == 2,
              "the default arm is ace_default_policy");
constexpr uint32_t kMaxCap = 2048;
// ... and at most this many bytes per class and thread (2 MiB: a wave of
// 1600 blocks of 1 KiB, as in glibc-simple, still fits), so that a program
// with many threads and classes does not park megabytes in every cache.
constexpr uint32_t kMaxCapBytes = 2u << 20;
// Mid classes (above 1 KiB) at most 256 KiB (or their default capacity,
// where that is more). A program that fills the blocks it allocates writes
// every page of a mid block; a wide cache hands
// back blocks freed long ago, cold in every cache level, and mid-churn ran
// at 0.6x the default arm's speed under any arm wider than this, although
// it took a hundredth of the slow paths (which is all the learner sees).
// The price: glibc-thread, whose mid blocks are written at their first byte
// only, ran at 2.9x the default arm's speed with 2 MiB and runs at 2.1x.
constexpr uint32_t kMaxCapBytesMid = 256u << 10;
// A class's epoch ends after this many slow events; then its arm is scored.
constexpr uint32_t kEpochEvents = 64;
// Run a learning step once per this many pushed events.
constexpr uint64_t kLearnEvery = 256;
// The price of memory, in slow events per operation for each MiB of
// capacity that every thread may hold: an arm that lets 8 threads hold
// 2 MiB of a class each must save 0.08 slow events per operation of it
// (one refill or flush in 12 operations) to win. glibc-simple's waves of
// 1600 blocks of 1 KiB on one thread save 0.03 with 2 MiB: wide arms still
// win there; mstress's 8 short-lived threads, which each take a batch or
// two of a mid class and leave, save nothing with them and pay 8 times.
constexpr double kSlowPerOpPerMiB = 0.005;

struct ClassLearner {
  uint64_t ops = 0;       // in the current epoch
  uint32_t slow = 0;
  uint64_t thread_events = 0;  // sum of the events' thread counts, this epoch
  uint32_t arm = kAceDefaultArm;  // plays first
  uint32_t pulls[kAceArms] = {};
  double cost_sum[kAceArms] = {};
  uint64_t total_pulls = 0;
};

// Events from every thread; the ring is lock-free (BoundedRing: many
// producers, the learner consumes).
BoundedRing<AceEvent, 1024> g_events;
// The learners' state, guarded by g_learn_lock: one learner at a time, and
// taken with try_lock only (a busy learner means this step is skipped).
Lock g_learn_lock;
ClassLearner g_learners[kNumClasses];
// What the learner publishes, read by any thread's refill without a lock.
std::atomic<uint32_t> g_policy[kNumClasses]{};  // ClassPolicy packed: batch | cap << 16; 0 = default
std::atomic<uint64_t> g_steps{0}, g_changes{0};

uint32_t pack(ClassPolicy p) { return p.batch | static_cast<uint32_t>(p.cap) << 16; }

ClassPolicy arm_policy(int cls, uint32_t arm) {
  ClassPolicy d = ace_default_policy(cls);
  uint32_t batch = d.batch * kBatchNum[arm] / 2;
  if (batch < 1) batch = 1;
  uint32_t cap = batch * kCapMul[arm];
  if (cap > kMaxCap) cap = kMaxCap;
  uint32_t cap_by_bytes = (class_size(cls) > kTinyMax ? kMaxCapBytesMid : kMaxCapBytes) / class_size(cls);
  if (cap_by_bytes < d.cap) cap_by_bytes = d.cap;  // the largest classes: never below the default
  if (cap > cap_by_bytes) cap = cap_by_bytes > batch ? cap_by_bytes : batch;
  return ClassPolicy{static_cast<uint16_t>(batch), static_cast<uint16_t>(cap)};
}

// What an epoch of `arm` cost (lower is better): its slow events per
// operation, plus the price of the capacity each of `threads` threads may
// hold.
double epoch_cost(int cls, uint32_t arm, uint64_t ops, uint32_t slow, double threads) {
  if (ops == 0) ops = 1;
  ClassPolicy p = arm_policy(cls, arm);
  double slow_per_op = static_cast<double>(slow) / static_cast<double>(ops);
  double held_mib = static_cast<double>(p.cap) * static_cast<double>(class_size(cls)) * threads / (1024.0 * 1024.0);
  return slow_per_op + kSlowPerOpPerMiB * held_mib;
}

// The learner's two pieces of floating-point arithmetic, without libm: a
// program linking libhakmem.a needs no -lm, and the shared library pulls no
// libm into the processes it is preloaded into.
// The natural log of n >= 1 from the double's exponent and a short series
// for its mantissa m in [1, 2): ln m = 2 atanh t, t = (m - 1) / (m + 1), to
// within 1e-4; UCB needs no more.
double ln_of(uint64_t n) {
  const double x = static_cast<double>(n);
  uint64_t bits;
  __builtin_memcpy(&bits, &x, sizeof bits);
  const int exponent = static_cast<int>((bits >> 52) & 0x7ff) - 1023;
  bits = (bits & ((uint64_t{1} << 52) - 1)) | (uint64_t{1023} << 52);
  double m;
  __builtin_memcpy(&m, &bits, sizeof m);
  const double t = (m - 1.0) / (m + 1.0), t2 = t * t;
  return exponent * 0.6931471805599453 + 2.0 * t * (1.0 + t2 * (1.0 / 3 + t2 * (1.0 / 5 + t2 / 7)));
}
double square_root(double x) { return _mm_cvtsd_f64(_mm_sqrt_sd(_mm_setzero_pd(), _mm_set_sd(x))); }

// UCB on costs: every arm once, then the arm whose mean cost less its
// confidence bonus is lowest. The bonus is UCB1's, scaled by the spread of
// the arms' mean costs: costs are not in [0, 1] (a hot class's differ in
// the third decimal, a cold one's by whole events per operation), and an
// unscaled bonus swamped every difference, so that the learner kept
// cycling through all twelve arms, the memory-hungry ones included.
uint32_t ucb_pick(const ClassLearner& l) {
  for (uint32_t a = 0; a < kAceArms; ++a)
    if (l.pulls[a] == 0) return a;  // every arm once first
  double lo = 1e300, hi = -1e300;
  for (uint32_t a = 0; a < kAceArms; ++a) {
    double mean = l.cost_sum[a] / l.pulls[a];
    if (mean < lo) lo = mean;
    if (mean > hi) hi = mean;
  }
  const double spread = hi - lo, log_n = ln_of(l.total_pulls);
  double best = 1e300;
  uint32_t pick = 0;
  for (uint32_t a = 0; a < kAceArms; ++a) {  // ties go to the lower arm: the smaller batch and capacity
    double index = l.cost_sum[a] / l.pulls[a] - spread * square_root(2.0 * log_n / l.pulls[a]);
    if (index < best) { best = index; pick = a; }
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
    l.thread_events += e.threads > 0 ? e.threads : 1;
    ++l.slow;
    if (l.slow < kEpochEvents) continue;
    const double threads = static_cast<double>(l.thread_events) / l.slow;
    l.cost_sum[l.arm] += epoch_cost(e.cls, l.arm, l.ops, l.slow, threads);
    ++l.pulls[l.arm];
    ++l.total_pulls;
    uint32_t next = ucb_pick(l);
    if (next != l.arm) g_changes.fetch_add(1, std::memory_order_relaxed);
    l.arm = next;
    l.ops = 0;
    l.slow = 0;
    l.thread_events = 0;
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

ClassPolicy ace_arm_policy(int cls, uint32_t arm) { return arm_policy(cls, arm < kAceArms ? arm : kAceDefaultArm); }

ClassPolicy ace_policy(int cls) {
  HAK_CONTRACT(contracts::policy_read());
  if (g_config.ace_arm != kAceLearn) return arm_policy(cls, g_config.ace_arm);  // pinned: HAKMEM_ACE_ARM or HAKMEM_ACE=0
  uint32_t v = g_policy[cls].load(std::memory_order_relaxed);
  if (v == 0) return ace_default_policy(cls);
  return ClassPolicy{static_cast<uint16_t>(v & 0xFFFF), static_cast<uint16_t>(v >> 16)};
}

void ace_record(const AceEvent& e) {
  if (g_config.ace_arm != kAceLearn) return;
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
