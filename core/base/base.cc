#include "base/base.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

namespace hakmem {

Config g_config;
Secrets g_secrets;

uint64_t random_word() {
  uint64_t word = 0;
  if (getrandom(&word, sizeof word, GRND_NONBLOCK) == static_cast<ssize_t>(sizeof word)) return word;
  // No entropy pool yet (early boot) or no getrandom: the kernel's AT_RANDOM
  // bytes and the clock, mixed with a counter so two calls differ.
  static uint64_t counter = 0;  // threads may seed at once: atomic
  uint64_t at_random[2] = {0, 0};
  if (const void* r = reinterpret_cast<const void*>(getauxval(AT_RANDOM))) memcpy(at_random, r, sizeof at_random);
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  const uint64_t n = __atomic_add_fetch(&counter, 0x9e3779b97f4a7c15u, __ATOMIC_RELAXED);
  return mix64(at_random[0] ^ mix64(at_random[1] ^ static_cast<uint64_t>(ts.tv_nsec) ^ n));
}

void secrets_init() {
  if (g_secrets.pad_in != 0) return;
  // The multipliers odd (a bijection on the low half) with their top bit
  // set (a small multiplier would leave the high half nearly empty).
  g_secrets.pad_mul = random_word() | (uint64_t{1} << 63) | 1;
  g_secrets.seal_in = random_word();
  g_secrets.seal_mul = random_word() | (uint64_t{1} << 63) | 1;
  g_secrets.header = random_word();
  g_secrets.placement = random_word();
  g_secrets.shuffle = random_word();
  g_secrets.canary_in = random_word();
  g_secrets.canary_mul = random_word() | (uint64_t{1} << 63) | 1;
  g_secrets.pad_in = random_word() | 1;  // set last, and never 0: it marks the keys drawn
}


// Settings are checked: a value that is not one gets one line on stderr
// naming the variable and the value used instead, never a silent default.
static const char* env_value(const char* name) {
  const char* v = getenv(name);
  return v == nullptr || *v == '\0' ? nullptr : v;
}

// A flag: 1 for "1", 0 for "0", -1 when unset or empty, or -1 with a
// warning for anything else (`default_said` ends it: what is used instead).
static int env_switch(const char* name, const char* default_said) {
  const char* v = env_value(name);
  if (v == nullptr) return -1;
  if (strcmp(v, "0") == 0 || strcmp(v, "1") == 0) return v[0] - '0';
  diag("hakmem: %s=%s is not 0 or 1; using the default%s", name, v, default_said);
  return -1;
}
static bool env_flag(const char* name, bool fallback) {
  const int v = env_switch(name, fallback ? ", 1" : ", 0");
  return v < 0 ? fallback : v == 1;
}

// Digits only, no more than fit in 64 bits.
static bool parse_decimal(const char* v, uint64_t* out) {
  uint64_t n = 0;
  for (const char* c = v; *c != '\0'; ++c) {
    if (*c < '0' || *c > '9' || n > (UINT64_MAX - 9) / 10) return false;
    n = n * 10 + static_cast<uint64_t>(*c - '0');
  }
  *out = n;
  return true;
}

// A whole number in [0, max]: `what` it must be ("a number of
// milliseconds"), for the warning; `unit` follows the most ("" for none).
static uint64_t env_number(const char* name, uint64_t fallback, uint64_t max, const char* what, const char* unit) {
  const char* v = env_value(name);
  if (v == nullptr) return fallback;
  uint64_t n = 0;
  if (!parse_decimal(v, &n)) {
    diag("hakmem: %s=%s is not %s; using the default, %llu", name, v, what, static_cast<unsigned long long>(fallback));
    return fallback;
  }
  if (n > max) {
    diag("hakmem: %s=%s is above the most, %llu%s%s; using %llu", name, v, static_cast<unsigned long long>(max),
         *unit != '\0' ? " " : "", unit, static_cast<unsigned long long>(max));
    return max;
  }
  return n;
}

void config_init() {
  g_config.stats_at_exit = env_flag("HAKMEM_STATS", false);
  if (const char* file = env_value("HAKMEM_STATS_FILE")) {
    const size_t length = strlen(file);
    if (length < sizeof g_config.stats_file)
      memcpy(g_config.stats_file, file, length + 1);
    else
      diag("hakmem: HAKMEM_STATS_FILE is longer than %zu bytes; the report goes to stderr",
           sizeof g_config.stats_file - 1);
  }
  g_config.stats_pid = static_cast<uint32_t>(env_number("HAKMEM_STATS_PID", 0, 4194304, "a process id", ""));
  g_config.verbose = env_flag("HAKMEM_VERBOSE", false);
  if (!env_flag("HAKMEM_ACE", true)) g_config.ace_arm = kAceDefaultArm;
  if (const char* arm = env_value("HAKMEM_ACE_ARM")) {  // wins over HAKMEM_ACE
    uint64_t n = 0;
    if (parse_decimal(arm, &n) && n < kAceArms)
      g_config.ace_arm = static_cast<uint32_t>(n);
    else
      diag("hakmem: HAKMEM_ACE_ARM=%s is not an arm (0 to %u); %s", arm, kAceArms - 1,
           g_config.ace_arm == kAceLearn ? "the learner picks" : "using the default arm");
  }
  if (kHardened) {
    g_config.quarantine = env_flag("HAKMEM_HARDENED_QUARANTINE", true);
    g_config.zero_on_free = env_flag("HAKMEM_HARDENED_ZERO", true);
    g_config.zero_whole_max =
        env_number("HAKMEM_HARDENED_ZERO_MAX", g_config.zero_whole_max, uint64_t{1} << 50, "a number of bytes", "bytes");
    g_config.randomize = env_flag("HAKMEM_HARDENED_RANDOM", true);
    g_config.guard_pages = env_flag("HAKMEM_HARDENED_GUARDS", true);
    g_config.canary = env_flag("HAKMEM_HARDENED_CANARY", true);
  }
  g_config.background = static_cast<int8_t>(
      env_switch("HAKMEM_BACKGROUND", " (a purge thread once the process has a second thread)"));
  g_config.arena_max_mib =
      env_number("HAKMEM_ARENA", g_config.arena_max_mib, g_config.arena_max_mib, "a number of MiB", "MiB");
  g_config.decay_ms = static_cast<uint32_t>(
      env_number("HAKMEM_DECAY_MS", g_config.decay_ms, 600000, "a number of milliseconds", "milliseconds"));
  g_config.thread_caches_mib =
      env_number("HAKMEM_THREAD_CACHES", g_config.thread_caches_mib, uint64_t{1} << 20, "a number of MiB", "MiB");
}

namespace {

void vdiag(const char* fmt, va_list ap) {
  // vsnprintf with integer, pointer and string conversions does not allocate.
  char buf[512];
  int n = vsnprintf(buf, sizeof buf - 1, fmt, ap);
  if (n < 0) return;
  if (n > static_cast<int>(sizeof buf) - 2) n = sizeof buf - 2;
  buf[n++] = '\n';
  ssize_t ignored = write(2, buf, static_cast<size_t>(n));
  (void)ignored;
}

}  // namespace

void diag(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vdiag(fmt, ap);
  va_end(ap);
}

void fatal(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vdiag(fmt, ap);
  va_end(ap);
  abort();
}


}  // namespace hakmem
