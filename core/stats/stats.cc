#include "stats/stats.h"

#include <errno.h>  // program_invocation_short_name (GNU)
#include <stdarg.h>
#include <stdio.h>
#include <unistd.h>

#include "hakmem.h"

namespace hakmem {

// The public header's class count sizes hak_stats::classes[], which the
// report fills from the table's classes: the two must agree at compile time.
static_assert(HAK_NUM_CLASSES == kNumClasses, "HAK_NUM_CLASSES in hakmem.h must equal size_class.h's kNumClasses");

GlobalCounters g_counters;

void stats_merge(const ClassCounters* per_class) {
  for (int c = 0; c < kNumClasses; ++c) {
    const ClassCounters& t = per_class[c];
    SharedClassCounters& g = g_counters.cls[c];
    g.allocs.add(t.allocs);
    g.frees.add(t.frees);
    g.misses.add(t.misses);
    g.refills.add(t.refills);
    g.flushes.add(t.flushes);
  }
}

void stats_add_totals(hak_stats* out) {
  for (int c = 0; c < kNumClasses; ++c) {
    hak_class_stats& o = out->classes[c];
    const SharedClassCounters& g = g_counters.cls[c];
    o.block_size = class_size(c);
    o.allocs += g.allocs.get();
    o.frees += g.frees.get();
    o.tls_misses += g.misses.get();
    o.refills += g.refills.get();
    o.flushes += g.flushes.get();
  }
  out->large_allocs += g_counters.large_allocs.get();
  out->large_frees += g_counters.large_frees.get();
  out->large_live_bytes += g_counters.large_live_bytes.get();
  out->huge_allocs += g_counters.huge_allocs.get();
  out->huge_frees += g_counters.huge_frees.get();
  out->huge_live_bytes += g_counters.huge_live_bytes.get();
  out->foreign_frees += g_counters.foreign_frees.get();
  out->invalid_frees += g_counters.invalid_frees.get();
}

namespace {

// Appends to a fixed buffer and writes it out in one go when full: the report
// must not allocate, since it also runs at exit from inside the allocator.
class ReportWriter {
 public:
  explicit ReportWriter(int fd) : fd_(fd) {}
  ~ReportWriter() { flush(); }
  void line(const char* fmt, ...) __attribute__((format(printf, 2, 3))) {
    char tmp[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if (n >= static_cast<int>(sizeof tmp)) n = sizeof tmp - 1;
    if (len_ + static_cast<size_t>(n) + 1 > sizeof buf_) flush();
    for (int i = 0; i < n; ++i) buf_[len_++] = tmp[i];
    buf_[len_++] = '\n';
  }
  void flush() {
    size_t off = 0;
    while (off < len_) {
      ssize_t w = write(fd_, buf_ + off, len_ - off);
      if (w <= 0) break;
      off += static_cast<size_t>(w);
    }
    len_ = 0;
  }

 private:
  int fd_;
  size_t len_ = 0;
  char buf_[4096];
};

// "12.3 MiB" without floating point formatting.
void human_bytes(uint64_t b, char* out, size_t n) {
  const char* unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  uint64_t whole = b, tenth = 0;
  while (whole >= 1024 && u < 4) {
    tenth = (whole % 1024) * 10 / 1024;
    whole /= 1024;
    ++u;
  }
  snprintf(out, n, "%llu.%llu %s", static_cast<unsigned long long>(whole),
           static_cast<unsigned long long>(tenth), unit[u]);
}

}  // namespace

void stats_write_report(const hak_stats& s, int fd) {
  ReportWriter w(fd);
  w.line("hakmem statistics (pid %d, %s)", static_cast<int>(getpid()), program_invocation_short_name);
  w.line("%8s %12s %12s %7s %10s %10s %6s", "class", "allocs", "frees", "tls-hit", "refills",
         "flushes", "slabs");
  uint64_t total_allocs = 0, total_misses = 0;
  for (int c = 0; c < HAK_NUM_CLASSES; ++c) {
    const hak_class_stats& k = s.classes[c];
    if (k.allocs == 0 && k.frees == 0 && k.slabs == 0) continue;
    total_allocs += k.allocs;
    total_misses += k.tls_misses;
    uint64_t hit_permille = k.allocs ? (k.allocs - (k.tls_misses > k.allocs ? k.allocs : k.tls_misses)) * 1000 / k.allocs : 0;
    w.line("%8llu %12llu %12llu %5llu.%llu%% %10llu %10llu %6llu",
           static_cast<unsigned long long>(k.block_size), static_cast<unsigned long long>(k.allocs),
           static_cast<unsigned long long>(k.frees), static_cast<unsigned long long>(hit_permille / 10),
           static_cast<unsigned long long>(hit_permille % 10), static_cast<unsigned long long>(k.refills),
           static_cast<unsigned long long>(k.flushes), static_cast<unsigned long long>(k.slabs));
  }
  uint64_t hit = total_allocs ? (total_allocs - total_misses) * 1000 / total_allocs : 0;
  w.line("small/mid: %llu allocations, TLS hit rate %llu.%llu%%", static_cast<unsigned long long>(total_allocs),
         static_cast<unsigned long long>(hit / 10), static_cast<unsigned long long>(hit % 10));
  char a[32], b[32], c[32], d[32], e[32], f[32];
  human_bytes(s.large_live_bytes, a, sizeof a);
  human_bytes(s.huge_live_bytes, b, sizeof b);
  human_bytes(s.huge_cached_bytes, c, sizeof c);
  w.line("large: %llu allocs, %llu frees, %s live; huge: %llu allocs, %llu frees, %s live, %s cached",
         static_cast<unsigned long long>(s.large_allocs), static_cast<unsigned long long>(s.large_frees), a,
         static_cast<unsigned long long>(s.huge_allocs), static_cast<unsigned long long>(s.huge_frees), b, c);
  human_bytes(s.bytes_mapped, a, sizeof a);
  human_bytes(s.bytes_in_use, b, sizeof b);
  human_bytes(s.bytes_dirty, c, sizeof c);
  human_bytes(s.bytes_returned, d, sizeof d);
  human_bytes(s.rss_bytes, e, sizeof e);
  human_bytes(s.peak_rss_bytes, f, sizeof f);
  w.line("memory: %s mapped in %llu segments, %s in use, %s dirty, %s returned to the OS", a,
         static_cast<unsigned long long>(s.segments), b, c, d);
  human_bytes(s.arena_bytes, a, sizeof a);
  w.line("segment arena: %s of address space at %#llx, %llu segments outside it", a,
         static_cast<unsigned long long>(s.arena_base), static_cast<unsigned long long>(s.segments_outside_arena));
  w.line("process: RSS %s, peak RSS %s", e, f);
  w.line("bad frees: %llu foreign, %llu invalid", static_cast<unsigned long long>(s.foreign_frees),
         static_cast<unsigned long long>(s.invalid_frees));
}

}  // namespace hakmem
