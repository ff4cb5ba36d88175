// The process lifecycle: initialisation, the decay clock and the purge
// thread, fork handling, and the exit report. None of it is on the hot
// path; front.cc's slow exits call in (front_ensure_init, decay_poll).
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <atomic>

#include "ace/ace.h"
#include "central/central.h"
#include "front/front.h"
#include "front/front_internal.h"
#include "large/large.h"
#include "os/os.h"
#include "refill/refill.h"
#include "slab/slab.h"
#include "stats/stats.h"
#include "tls_cache/tls_cache.h"

using namespace hakmem;

namespace {

void report_channel_open();  // HAKMEM_STATS: where the exit report goes
void report_channel_fork_child();

// kInitDone, or 0 before the first call, or (pid << 1) | 1 while a thread
// of process `pid` runs the initialisation (init_slow).
constexpr int64_t kInitDone = 2;
std::atomic<int64_t> g_init_state{0};
// The initialisation's steps done so far (init_steps).
std::atomic<int> g_init_steps_done{0};
// The purge thread (purge_thread_maybe_start): 0 none, 1 starting or
// running, 2 paused (mallctl), 3 could not be started. Reset in a forked
// child, which has no such thread.
std::atomic<int> g_purge_thread{0};
std::atomic<bool> g_purge_thread_asked{false};  // mallctl("background_thread", true)

// Every lock of hakmem that a thread may hold while it waits for another,
// outermost first: a thread holding one takes only locks further down the
// table (the lock order). fork() takes them all in this order (prepare) and
// lets them go in the reverse order (parent, child), so that no other
// thread holds one at the moment of the fork and the child finds every
// box's state whole. The child's hooks also make the box true of a process
// with one thread. Locks taken only with try_lock (the ACE learner's) and
// the mallctl snapshot's (outermost: it is held while the statistics take
// the registry's and the backend's) are not taken at fork; the child makes
// them usable again (its `child` hook), whatever their state in the parent.
struct ForkHooks {
  const char* box;     // and its locks
  void (*prepare)();   // takes them
  void (*parent)();    // releases them
  void (*child)();     // makes them usable; the box forgets other threads
};
constexpr ForkHooks kLockOrder[] = {
    {"mallctl: the snapshot lock (not taken)", nullptr, nullptr, mallctl_fork_child},
    {"refill: the thread registry", thread_registry_fork_prepare, thread_registry_fork_parent, thread_registry_fork_child},
    {"central: each class's pool", central_lock_all, central_unlock_all, central_fork_child},
    {"slab: the segment backend", backend_fork_prepare, backend_fork_parent, backend_fork_child},
    {"large: the huge-block cache", large_fork_prepare, large_fork_parent, large_fork_child},
    {"ace: the learner (try_lock only; not taken)", nullptr, nullptr, ace_fork_child},
};
constexpr int kLockOrderLength = static_cast<int>(sizeof kLockOrder / sizeof kLockOrder[0]);

void fork_prepare() {
  for (int i = 0; i < kLockOrderLength; ++i)
    if (kLockOrder[i].prepare != nullptr) kLockOrder[i].prepare();
}
void fork_parent() {
  for (int i = kLockOrderLength - 1; i >= 0; --i)
    if (kLockOrder[i].parent != nullptr) kLockOrder[i].parent();
}
void fork_child() {
  report_channel_fork_child();
  g_purge_thread.store(0, std::memory_order_relaxed);  // not in the child: started again when wanted
  for (int i = kLockOrderLength - 1; i >= 0; --i) kLockOrder[i].child();
}

// The initialisation, one step at a time from `from`. Each step done is
// counted, so that a process forked while another thread ran them (that
// thread does not exist in the child) redoes only the one in progress:
// every step may run twice (a second arena reservation in the child is
// address space only), and none after its memory was sealed read-only.
constexpr int kInitSteps = 8;
void init_steps(int from) {
  for (int step = from; step < kInitSteps; ++step) {
    switch (step) {
      case 0: config_init(); break;
      case 1: report_channel_open(); break;
      case 2: secrets_init(); break;
      case 3: {
        uint16_t bin_offsets[kNumClasses];
        for (int c = 0; c < kNumClasses; ++c) bin_offsets[c] = static_cast<uint16_t>(tls_bin_offset_of_class(c));
        backend_init(g_config.arena_max_mib << 20, bin_offsets);
        break;
      }
      case 4: refill_init(); break;
      // Written once, trusted from now on: read-only for good.
      case 5: os_seal(&g_config, sizeof g_config); break;
      case 6: os_seal(&g_secrets, sizeof g_secrets); break;
      case 7: backend_seal(); break;
    }
    g_init_steps_done.store(step + 1, std::memory_order_release);
  }
}

void init_finish() {
  g_init_state.store(kInitDone, std::memory_order_release);
  // After the state says done: pthread_atfork may allocate, and that
  // allocation must not come back here.
  pthread_atfork(fork_prepare, fork_parent, fork_child);
}

HAK_COLD void init_slow() {
  const int64_t mine = (static_cast<int64_t>(getpid()) << 1) | 1;
  int64_t state = 0;
  if (g_init_state.compare_exchange_strong(state, mine, std::memory_order_acq_rel)) {
    init_steps(0);
    return init_finish();
  }
  if (state != kInitDone && state != mine) {
    // Forked while a thread of the parent ran the initialisation: this
    // process, one thread, finishes it (the child would wait forever). The
    // backend's lock may have been held there (backend_init).
    g_init_state.store(mine, std::memory_order_relaxed);
    backend_fork_child();
    init_steps(g_init_steps_done.load(std::memory_order_acquire));
    return init_finish();
  }
  while (g_init_state.load(std::memory_order_acquire) != kInitDone) {
  }
}

}  // namespace

// Memory goes back to the OS on a clock (HAKMEM_DECAY_MS). Every slow path,
// and every kFreesPerPoll-th free of a class (tls_cache_push), polls; at
// most one thread at a time does the work, and each box's part only
// try-locks, so a poll never waits on a busy lock.
//
// A process that frees and then makes no call at all would never poll: the
// purge thread polls for it (below), every quarter decay. It starts once
// the process has a second thread (HAKMEM_BACKGROUND unset), from the first
// allocation (HAKMEM_BACKGROUND=1, or jemalloc's "background_thread" set
// through mallctl), or never (HAKMEM_BACKGROUND=0). Never in a process that
// has only ever had one thread and has not asked: a thread of hakmem's own
// would make it multi-threaded behind its back (unshare(CLONE_NEWUSER)
// refuses such a process, and fork gets harder), and a single-threaded
// program that goes idle has usually finished.
namespace {
std::atomic<uint64_t> g_next_decay_ms{0};
}  // namespace

void hakmem::decay_poll() {
  uint64_t now = os_now_ms();
  uint64_t due = g_next_decay_ms.load(std::memory_order_relaxed);
  if (HAK_LIKELY(now < due)) return;
  // Pooled blocks return to their slabs after one to two periods, empty
  // slabs and spans to the OS after the full decay: a quarter of it here
  // keeps the whole trip within about 1.5 decays.
  uint64_t period = g_config.decay_ms / 4 + 1;
  if (!g_next_decay_ms.compare_exchange_strong(due, now + period, std::memory_order_relaxed)) return;
  if (kParkSpans) refill_spans_decay();  // first: the spans join the backend's dirty units
  central_decay();
  backend_decay();
  huge_cache_decay();
}

namespace {

void* purge_thread_main(void*) {
  // It never allocates (nothing here reaches malloc): it has no thread
  // cache and never joins the registry. Paused (mallctl's
  // "background_thread" set false), it only sleeps.
  for (;;) {
    const uint64_t ms = g_config.decay_ms / 4 + 1;
    struct timespec t = {static_cast<time_t>(ms / 1000), static_cast<long>(ms % 1000) * 1000000L};
    while (nanosleep(&t, &t) != 0) {
    }
    if (g_purge_thread.load(std::memory_order_relaxed) == 1) decay_poll();
  }
  return nullptr;
}

// Called from the allocation slow paths, with no lock held: starts the purge
// thread when it is wanted and not running. pthread_create may allocate (its
// thread's TLS); that allocation finds the thread starting already.
}  // namespace

void hakmem::purge_thread_maybe_start() {
  if (HAK_LIKELY(g_purge_thread.load(std::memory_order_relaxed) != 0)) return;
  // HAKMEM_BACKGROUND=0 wins over the program's own request (mallctl).
  const bool wanted = g_config.background == 1 ||
                      (g_config.background < 0 &&
                       (g_purge_thread_asked.load(std::memory_order_relaxed) || thread_registry_ever() >= 2));
  if (!wanted) return;
  int expected = 0;
  if (!g_purge_thread.compare_exchange_strong(expected, 1, std::memory_order_relaxed)) return;
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  pthread_attr_setstacksize(&attr, 256 << 10);
  // Every signal blocked: the program's signals go to its own threads.
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  pthread_t thread;
  const int err = pthread_create(&thread, &attr, purge_thread_main, nullptr);
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  pthread_attr_destroy(&attr);
  if (err != 0) {
    if (g_config.verbose) diag("hakmem: could not start the purge thread (error %d)", err);
    g_purge_thread.store(3, std::memory_order_relaxed);  // no retry on every slow path; the polls still run
    return;
  }
  pthread_setname_np(thread, "hakmem-purge");
}


void hakmem::front_purge_thread_request(bool on) {
  if (on) {
    g_purge_thread_asked.store(true, std::memory_order_relaxed);
    int paused = 2;
    g_purge_thread.compare_exchange_strong(paused, 1, std::memory_order_relaxed);
    purge_thread_maybe_start();
  } else {
    g_purge_thread_asked.store(false, std::memory_order_relaxed);
    int running = 1;
    g_purge_thread.compare_exchange_strong(running, 2, std::memory_order_relaxed);  // 2: paused
  }
}
bool hakmem::front_purge_thread_running() { return g_purge_thread.load(std::memory_order_relaxed) == 1; }

namespace {

// The exit report (HAKMEM_STATS=1) goes to a copy of stderr taken when the
// process started: ls, sort and cat close their stderr before exit, and
// the report came after that and said nothing. The copy is checked to be
// the same open file still (a program may have closed it and opened
// something else under its number, which must not get the report), and a
// forked child, which has its own stderr, drops it. HAKMEM_STATS_FILE
// sends the report to a file instead, %p in its name standing for the pid.
int g_report_fd = -1;
dev_t g_report_dev;
ino_t g_report_ino;

void report_channel_open() {
  if (!g_config.stats_at_exit || g_config.stats_file[0] != '\0') return;
  int fd = fcntl(2, F_DUPFD_CLOEXEC, 200);  // out of the way of the program's own low numbers
  if (fd < 0) fd = fcntl(2, F_DUPFD_CLOEXEC, 3);
  struct stat st;
  if (fd < 0) return;
  if (fstat(fd, &st) != 0) return (void)close(fd);
  g_report_fd = fd;
  g_report_dev = st.st_dev;
  g_report_ino = st.st_ino;
}

void report_channel_fork_child() {
  if (g_report_fd >= 0) close(g_report_fd);  // the child reports to its own stderr
  g_report_fd = -1;
}

// The report's descriptor: the file, the copy of stderr if still the same
// file, or stderr. *opened: the caller closes it.
int report_fd(bool* opened) {
  *opened = false;
  if (g_config.stats_file[0] != '\0') {
    // Room for any name the setting holds: each two-byte %p becomes at most
    // 7 digits (the kernel's pids stay below 2^22), so the name is never cut.
    char path[sizeof g_config.stats_file * 4];
    size_t n = 0;
    for (const char* c = g_config.stats_file; *c != '\0'; ++c) {
      if (c[0] == '%' && c[1] == 'p') {
        n += static_cast<size_t>(snprintf(path + n, sizeof path - n, "%d", static_cast<int>(getpid())));
        ++c;
      } else {
        path[n++] = *c;
      }
    }
    path[n] = '\0';
    const int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd >= 0) {
      *opened = true;
      return fd;
    }
    diag("hakmem: cannot write the statistics report to %s (errno %d); it goes to stderr", path, errno);
    return 2;
  }
  struct stat st;
  if (g_report_fd >= 0 && fstat(g_report_fd, &st) == 0 && st.st_dev == g_report_dev && st.st_ino == g_report_ino)
    return g_report_fd;
  return 2;
}

__attribute__((destructor)) void report_at_exit() {
  if (!g_config.stats_at_exit) return;
  if (g_config.stats_pid != 0 && g_config.stats_pid != static_cast<uint32_t>(getpid())) return;
  hak_stats s;
  hak_stats_get(&s);
  bool opened = false;
  const int fd = report_fd(&opened);
  stats_write_report(s, fd);
  if (opened) close(fd);
}

}  // namespace

void hakmem::front_ensure_init() {
  if (HAK_LIKELY(g_init_state.load(std::memory_order_acquire) == kInitDone)) return;
  init_slow();
}

