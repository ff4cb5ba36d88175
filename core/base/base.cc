#include "base/base.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

namespace hakmem {

Config g_config;

static bool env_flag(const char* name, bool fallback) {
  const char* v = getenv(name);
  if (v == nullptr || *v == '\0') return fallback;
  return !(v[0] == '0' && v[1] == '\0');
}

void config_init() {
  g_config.stats_at_exit = env_flag("HAKMEM_STATS", false);
  g_config.verbose = env_flag("HAKMEM_VERBOSE", false);
  g_config.ace_enabled = env_flag("HAKMEM_ACE", true);
  if (const char* a = getenv("HAKMEM_ARENA")) {
    char* end = nullptr;
    unsigned long long mib = strtoull(a, &end, 10);
    if (end != a) g_config.arena_max_mib = mib < g_config.arena_max_mib ? mib : g_config.arena_max_mib;
  }
  if (const char* d = getenv("HAKMEM_DECAY_MS")) {
    char* end = nullptr;
    unsigned long ms = strtoul(d, &end, 10);
    if (end != d) g_config.decay_ms = ms > 600000 ? 600000u : static_cast<uint32_t>(ms);
  }
}

void diag(const char* fmt, ...) {
  // vsnprintf with integer, pointer and string conversions does not allocate.
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, sizeof buf - 1, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  if (n > static_cast<int>(sizeof buf) - 2) n = sizeof buf - 2;
  buf[n++] = '\n';
  ssize_t ignored = write(2, buf, static_cast<size_t>(n));
  (void)ignored;
}

}  // namespace hakmem
