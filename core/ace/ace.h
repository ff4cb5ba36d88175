// Box 3: ACE, the adaptive layer. Off the hot path: the refill engine reports
// what each refill and flush cost through a bounded ring (dropped when full),
// a UCB bandit per size class picks the batch size and cache capacity (an
// arm) that minimise slow-path work per operation plus a price for the
// memory the capacity lets every thread hold, and publishes them as a
// policy. A new policy takes effect at the next refill of its class, and
// only there (contract B). HAKMEM_ACE=0: fixed defaults (arm 3);
// HAKMEM_ACE_ARM=k: arm k for every class, no learning (to measure the
// learner against each fixed arm: bench/ace-arms).
#pragma once

#include "base/base.h"
#include "size_class/size_class.h"

namespace hakmem {

struct ClassPolicy {
  uint16_t batch;  // blocks moved per refill or flush
  uint16_t cap;    // blocks a thread cache may hold before it flushes
};

// The policy in force for a class. Call it from a refill only.
ClassPolicy ace_policy(int cls);
// The fixed default of a class (what HAKMEM_ACE=0 uses).
ClassPolicy ace_default_policy(int cls);

enum class AceEventKind : uint8_t { kRefill = 1, kFlush = 2 };
struct AceEvent {
  uint32_t ops;     // allocations and frees of the class in this thread since its last event
  uint8_t cls;
  AceEventKind kind;
  uint16_t threads;  // threads with a cache when it happened (each may hold a class's capacity)
};
// The policy arm `arm` (0 .. kAceArms - 1) gives class `cls` (tests, bench).
ClassPolicy ace_arm_policy(int cls, uint32_t arm);
// Reports one slow-path event; occasionally runs a learning step (on the
// reporting thread, if no other thread is learning: never waits).
void ace_record(const AceEvent& e);

// Inspection for tests and stats.
struct AceStats {
  uint64_t events, drops, steps, policy_changes;
};
void ace_stats(AceStats* out);
// Runs one learning step now (tests).
void ace_learn_step();
// The learner lock may have been held by a thread that does not exist in a forked child.
void ace_fork_child();

}  // namespace hakmem
