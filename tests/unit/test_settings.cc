// Every HAKMEM_* setting is checked when the process starts: a value that is
// not one gets one line on stderr naming the variable and the value used
// instead; a good value gets none. Each case runs in a fresh process.
#include <stdio.h>
#include <stdlib.h>

#include <string>

#include <gtest/gtest.h>

#include "tests/support/hidden_symbol.h"
#include "tests/support/proc_self.h"
#include "tests/support/run_self.h"

namespace {

TEST(Settings, ProbeForTheParent) {
  if (getenv("HAKMEM_TEST_PROBE") == nullptr) GTEST_SKIP() << "run by the tests below";
  free(malloc(100));  // settings are read at the first allocation
  printf("probe: done\n");
}

// What the process wrote that starts with "hakmem: " (the first such line).
std::string warning(const std::string& env) {
  int status = 0;
  std::string line = test_support::startup_warning(env, "Settings.ProbeForTheParent", &status);
  EXPECT_EQ(status, 0) << env;
  return line;
}

TEST(Settings, BadValuesAreNamedWithTheValueUsed) {
  const struct {
    const char* env;
    const char* said;
  } cases[] = {
      {"HAKMEM_DECAY_MS=abc", "HAKMEM_DECAY_MS=abc is not a number of milliseconds; using the default, 1000\n"},
      {"HAKMEM_DECAY_MS=12x", "HAKMEM_DECAY_MS=12x is not a number of milliseconds; using the default, 1000\n"},
      {"HAKMEM_DECAY_MS=700000", "HAKMEM_DECAY_MS=700000 is above the most, 600000 milliseconds; using 600000\n"},
      {"HAKMEM_ARENA=-5", "HAKMEM_ARENA=-5 is not a number of MiB; using the default, 1048576\n"},
      {"HAKMEM_ARENA=99999999999999999999999", "HAKMEM_ARENA=99999999999999999999999 is not a number of MiB; using the default, 1048576\n"},
      {"HAKMEM_THREAD_CACHES=lots", "HAKMEM_THREAD_CACHES=lots is not a number of MiB; using the default, 16\n"},
      {"HAKMEM_STATS=yes", "HAKMEM_STATS=yes is not 0 or 1; using the default, 0\n"},
      {"HAKMEM_ACE=off", "HAKMEM_ACE=off is not 0 or 1; using the default, 1\n"},
      {"HAKMEM_ACE_ARM=12", "HAKMEM_ACE_ARM=12 is not an arm (0 to 11); the learner picks\n"},
      {"HAKMEM_ACE_ARM=x HAKMEM_ACE=0", "HAKMEM_ACE_ARM=x is not an arm (0 to 11); using the default arm\n"},
      {"HAKMEM_VERBOSE=2", "HAKMEM_VERBOSE=2 is not 0 or 1; using the default, 0\n"},
      {"HAKMEM_STATS_PID=init", "HAKMEM_STATS_PID=init is not a process id; using the default, 0\n"},
      {"HAKMEM_STATS_PID=9999999", "HAKMEM_STATS_PID=9999999 is above the most, 4194304; using 4194304\n"},
      {"HAKMEM_BACKGROUND=on",
       "HAKMEM_BACKGROUND=on is not 0 or 1; using the default (a purge thread once the process has a second thread)\n"},
  };
  for (const auto& c : cases) EXPECT_EQ(warning(c.env), c.said) << c.env;
}

// A number is read to its last digit for as long as it fits in 64 bits:
// one of twenty digits is a number, above every setting's most, not a value
// that is no number. (make mutate: an overflow guard that gave up on
// numbers from 1.68e19 on passed every test before this one.)
TEST(Settings, NumbersOfTwentyDigitsAreNumbers) {
  EXPECT_EQ(warning("HAKMEM_DECAY_MS=18446744073709551609"),
            "HAKMEM_DECAY_MS=18446744073709551609 is above the most, 600000 milliseconds; using 600000\n");
  EXPECT_EQ(warning("HAKMEM_STATS_PID=18000000000000000000"),
            "HAKMEM_STATS_PID=18000000000000000000 is above the most, 4194304; using 4194304\n");
}

// Read once at start-up, the settings are then sealed read-only
// (SECURITY.md), and so are the keys and the arena's bounds: each group
// fills a page of its own (hakmem::g_config, g_secrets, g_arena, found in
// the library's symbol table), mapped without write permission once the
// first allocation has run. (make mutate: settings left writable passed
// every test before this one.)
TEST(Settings, AreSealedReadOnlyOnceRead) {
  free(malloc(100));
  for (const char* name : {"_ZN6hakmem8g_configE", "_ZN6hakmem9g_secretsE", "_ZN6hakmem7g_arenaE"}) {
    void* at = test_support::hidden_object(name);
    ASSERT_NE(at, nullptr) << name << " not found in the symbol table (stripped?)";
    test_support::Mapping m;
    ASSERT_TRUE(test_support::mapping_of(at, &m)) << name << " lies in no mapping";
    EXPECT_STREQ(m.perms, "r--p") << name << " at " << at;
  }
}

TEST(Settings, GoodValuesSayNothing) {
  for (const char* env : {"HAKMEM_DECAY_MS=250", "HAKMEM_DECAY_MS=0", "HAKMEM_ARENA=64", "HAKMEM_ACE=0", "HAKMEM_ACE_ARM=11",
                          "HAKMEM_BACKGROUND=0", "HAKMEM_DECAY_MS=", "HAKMEM_THREAD_CACHES=64"})
    EXPECT_EQ(warning(env), "") << env;
}

}  // namespace
