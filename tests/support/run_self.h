// Runs this test program again, in a fresh process (a fresh address-space
// layout, fresh keys, settings read anew), and returns what follows `tag`
// on the first line of its output that starts with it ("" if none).
// `env` is prepended to the command (VAR=value ...); `filter` picks the test
// that prints. The child's exit status goes to *status.
#pragma once

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <string>

namespace test_support {

inline std::string run_self(const std::string& env, const std::string& filter, const char* tag, int* status) {
  char self[4096];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) {
    *status = -1;
    return "";
  }
  self[n] = '\0';
  const std::string command = env + " '" + self + "' --gtest_filter=" + filter + " 2>&1";
  FILE* child = popen(command.c_str(), "r");
  if (child == nullptr) {
    *status = -1;
    return "";
  }
  char line[512];
  std::string found;
  const size_t tag_len = strlen(tag);
  while (fgets(line, sizeof line, child) != nullptr)
    if (found.empty() && strncmp(line, tag, tag_len) == 0) found = line + tag_len;
  *status = pclose(child);
  return found;
}

// The first "hakmem: " line a fresh process writes at start-up under `env`
// (without the prefix; "" if none): `probe` names a test of this program
// that allocates once when HAKMEM_TEST_PROBE is set, so settings are read.
inline std::string startup_warning(const std::string& env, const std::string& probe, int* status) {
  return run_self(env + " HAKMEM_TEST_PROBE=1", probe, "hakmem: ", status);
}

}  // namespace test_support
