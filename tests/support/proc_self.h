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

}  // namespace test_support
