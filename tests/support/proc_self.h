// The process's own figures from /proc/self, read without allocating (tests
// that wait for the allocator to give memory back must make no allocator
// call while they measure).
#pragma once

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

namespace test_support {

// Resident set size from /proc/self/statm (second field, in pages); 0 if unreadable.
inline size_t rss_bytes() {
  int fd = open("/proc/self/statm", O_RDONLY);
  if (fd < 0) return 0;
  char buf[256];
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return 0;
  buf[n] = '\0';
  unsigned long size = 0, resident = 0;
  if (sscanf(buf, "%lu %lu", &size, &resident) != 2) return 0;
  return resident * static_cast<size_t>(sysconf(_SC_PAGESIZE));
}

// The number on a "Name:   value" line of /proc/self/status; -1 if none.
inline long status_field(const char* name) {
  char buf[4096];
  int fd = open("/proc/self/status", O_RDONLY);
  if (fd < 0) return -1;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return -1;
  buf[n] = '\0';
  const char* at = strstr(buf, name);
  return at == nullptr ? -1 : strtol(at + strlen(name) + 1, nullptr, 10);
}

// The mapping in /proc/self/smaps that holds an address: its permissions
// ("rw-p") and its VmFlags (" rd wr mr mw me ac ", a space on either side
// of each flag), read without allocating.
struct Mapping {
  char perms[8];
  char flags[256];
};

// False if no mapping holds `p`.
inline bool mapping_of(const void* p, Mapping* out) {
  int fd = open("/proc/self/smaps", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  const unsigned long at = reinterpret_cast<unsigned long>(p);
  char buf[8192], line[512];
  size_t len = 0;
  bool inside = false, found = false;
  ssize_t n;
  while (!found && (n = read(fd, buf, sizeof buf)) > 0) {
    for (ssize_t i = 0; i < n && !found; ++i) {
      if (buf[i] != '\n') {
        if (len < sizeof line - 1) line[len++] = buf[i];
        continue;
      }
      line[len] = '\0';
      len = 0;
      unsigned long lo = 0, hi = 0;
      char perms[8] = {};
      if (sscanf(line, "%lx-%lx %7s", &lo, &hi, perms) == 3) {  // a mapping's first line
        inside = lo <= at && at < hi;
        if (inside) memcpy(out->perms, perms, sizeof perms);
      } else if (inside && strncmp(line, "VmFlags:", 8) == 0) {
        size_t k = 0;
        for (const char* c = line + 8; *c != '\0' && k + 2 < sizeof out->flags; ++c) out->flags[k++] = *c;
        out->flags[k++] = ' ';
        out->flags[k] = '\0';
        found = true;
      }
    }
  }
  close(fd);
  return found;
}

}  // namespace test_support
