// jemalloc's mallctl, for programs written for jemalloc: servers purge
// through it after freeing a lot (redis after FLUSHALL), and read their
// memory figures from it. hakmem answers the names such programs use and
// fails the rest with ENOENT, as jemalloc does for a name it does not know.
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <atomic>
#include <initializer_list>

#include "front/front.h"
#include "os/os.h"
#include "refill/refill.h"

using namespace hakmem;

namespace {

// The figures "epoch" refreshes: a snapshot, as jemalloc keeps one.
struct Snapshot {
  size_t allocated, active, resident, mapped, dirty;
};
Snapshot g_snapshot;  // under g_snapshot_lock: threads may read and refresh it at once
Lock g_snapshot_lock;
std::atomic<uint64_t> g_epoch{0};

void refresh_locked() {
  hak_stats s;
  hak_stats_get(&s);
  Snapshot n;
  n.allocated = s.bytes_in_use;
  n.mapped = s.bytes_mapped;
  n.dirty = s.bytes_dirty;
  // Pages holding blocks or caches (mapped, neither dirty nor given back).
  n.active = s.bytes_mapped > s.bytes_dirty ? s.bytes_mapped - s.bytes_dirty : 0;
  if (n.active < n.allocated) n.active = n.allocated;
  // Resident: what hakmem maps, at most what the process holds.
  n.resident = s.rss_bytes < s.bytes_mapped ? s.rss_bytes : s.bytes_mapped;
  if (n.resident < n.active && s.rss_bytes >= n.active) n.resident = n.active;
  g_snapshot = n;
}

// The figures now (`refresh`: taken anew first, as "epoch" does).
Snapshot snapshot(bool refresh) {
  LockGuard guard(g_snapshot_lock);
  if (refresh || g_snapshot.mapped == 0) refresh_locked();  // figures read before any "epoch"
  return g_snapshot;
}

// Copies a value out as jemalloc does: nothing asked, nothing done; a
// buffer of the wrong size gets what fits, and EINVAL.
template <typename T>
int copy_out(void* oldp, size_t* oldlenp, const T& value) {
  if (oldp == nullptr || oldlenp == nullptr) return 0;
  if (*oldlenp != sizeof(T)) {
    size_t n = *oldlenp < sizeof(T) ? *oldlenp : sizeof(T);
    memcpy(oldp, &value, n);
    *oldlenp = n;
    return EINVAL;
  }
  memcpy(oldp, &value, sizeof(T));
  return 0;
}
template <typename T>
int read_only(void* oldp, size_t* oldlenp, void* newp, size_t newlen, const T& value) {
  if (newp != nullptr || newlen != 0) return EPERM;
  return copy_out(oldp, oldlenp, value);
}
// A name that acts and carries no value.
int action(void* oldp, size_t* oldlenp, void* newp, size_t newlen) {
  if (newp != nullptr || newlen != 0 || (oldp != nullptr && oldlenp != nullptr && *oldlenp != 0)) return EINVAL;
  return 0;
}

// Matches "<prefix><i><suffix>" where <i> names every arena hakmem has:
// 0, 1 (arenas.narenas: jemalloc's older "all arenas"), or 4096
// (MALLCTL_ARENAS_ALL). Returns 1 on a match, 0 on another name, -1 for
// an arena index that does not exist.
int arena_name(const char* name, const char* prefix, const char* suffix) {
  const size_t p = strlen(prefix);
  if (strncmp(name, prefix, p) != 0) return 0;
  char* end = nullptr;
  const unsigned long i = strtoul(name + p, &end, 10);
  if (end == name + p || strcmp(end, suffix) != 0) return 0;
  return i == 0 || i == 1 || i == 4096 ? 1 : -1;
}

}  // namespace

// A thread may have held the lock when another forked.
void hakmem::mallctl_fork_child() { g_snapshot_lock.reinit_in_child(); }

extern "C" int hak_mallctl(const char* name, void* oldp, size_t* oldlenp, void* newp, size_t newlen) {
  if (name == nullptr) return EINVAL;
  front_ensure_init();
  if (strcmp(name, "epoch") == 0) {
    if (newp != nullptr && newlen != sizeof(uint64_t)) return EINVAL;
    snapshot(true);
    const uint64_t epoch = newp != nullptr ? g_epoch.fetch_add(1) + 1 : g_epoch.load();
    return copy_out(oldp, oldlenp, epoch);
  }
  const Snapshot now = snapshot(false);
  if (strcmp(name, "stats.allocated") == 0) return read_only(oldp, oldlenp, newp, newlen, now.allocated);
  if (strcmp(name, "stats.active") == 0) return read_only(oldp, oldlenp, newp, newlen, now.active);
  if (strcmp(name, "stats.resident") == 0) return read_only(oldp, oldlenp, newp, newlen, now.resident);
  if (strcmp(name, "stats.mapped") == 0) return read_only(oldp, oldlenp, newp, newlen, now.mapped);
  if (strcmp(name, "stats.retained") == 0) return read_only(oldp, oldlenp, newp, newlen, size_t{0});
  if (strcmp(name, "arenas.narenas") == 0) return read_only(oldp, oldlenp, newp, newlen, 1u);
  struct PageFigure {
    const char* suffix;
    size_t bytes;
  } pages[] = {{".pactive", now.active}, {".pdirty", now.dirty}, {".pmuzzy", 0}};
  for (const PageFigure& f : pages) {
    int m = arena_name(name, "stats.arenas.", f.suffix);
    if (m < 0) return ENOENT;
    if (m > 0) return read_only(oldp, oldlenp, newp, newlen, f.bytes / kOsPageSize);
  }
  for (const char* suffix : {".purge", ".decay"}) {
    int m = arena_name(name, "arena.", suffix);
    if (m < 0) return ENOENT;
    if (m == 0) continue;
    if (int err = action(oldp, oldlenp, newp, newlen)) return err;
    hak_trim();  // every arena is the one heap: all of it
    return 0;
  }
  if (strcmp(name, "thread.tcache.flush") == 0) {
    if (int err = action(oldp, oldlenp, newp, newlen)) return err;
    refill_flush_all();
    return 0;
  }
  if (strcmp(name, "background_thread") == 0) {
    const bool was = front_purge_thread_running();
    if (newp != nullptr) {
      if (newlen != sizeof(bool)) return EINVAL;
      bool on;
      memcpy(&on, newp, sizeof on);
      front_purge_thread_request(on);
    }
    return copy_out(oldp, oldlenp, was);
  }
  return ENOENT;
}

#ifdef HAKMEM_OVERRIDE
extern "C" __attribute__((alias("hak_mallctl"), used, visibility("default"))) int mallctl(const char*, void*, size_t*,
                                                                                          void*, size_t);
#endif
