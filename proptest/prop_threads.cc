// Model-based property tests with 2-4 threads and cross-thread frees.
//
// Each thread runs its own random program against its own HeapModel; `send`
// hands live blocks (with their model records) to another thread's mailbox, a
// mutex-protected queue, and `receive` adopts what waits in the own mailbox
// after checking its whole content. A shared RangeRegistry checks that no two
// live blocks overlap across threads. After the threads exit (their caches
// go back to the central pool), the main thread adopts whatever is still in
// the mailboxes, checks the headers of those blocks, frees them (yet another
// thread), and hak_check_heap() must find nothing.
//
// Thread interleavings are not replayed by the seed; a failure's message says
// which thread, step and operation broke which promise.
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <deque>
#include <sstream>
#include <thread>

#include "ops.h"

namespace {

using prop::Block;
using prop::HeapModel;
using prop::Kind;
using prop::Op;

struct Mailbox {
  std::mutex mu;
  std::deque<std::pair<void*, Block>> items;
};

struct Shared {
  explicit Shared(int n) : boxes(static_cast<size_t>(n)) {}
  prop::RangeRegistry registry;
  std::vector<Mailbox> boxes;
  std::mutex error_mu;
  std::string error;
  std::atomic<bool> stop{false};

  void report(const std::string& e) {
    std::lock_guard<std::mutex> g(error_mu);
    if (error.empty()) error = e;
    stop.store(true);
  }
};

void send(HeapModel& m, Shared& sh, const Op& op, int nthreads) {
  Mailbox& box = sh.boxes[op.pick2 % static_cast<uint32_t>(nthreads)];
  std::vector<std::pair<void*, Block>> out;
  for (uint16_t k = 0; k < op.count && !m.empty(); ++k) {
    void* p = m.at(op.pick + k);
    m.verify_full(p, m.block(p), "block about to be sent");
    Block b = m.take(p, /*unregister_shared=*/false);  // still live: stays in the registry
    out.emplace_back(p, b);
  }
  std::lock_guard<std::mutex> g(box.mu);
  for (auto& e : out) box.items.push_back(e);
}

void receive(HeapModel& m, Shared& sh, int id) {
  std::deque<std::pair<void*, Block>> in;
  {
    Mailbox& box = sh.boxes[static_cast<size_t>(id)];
    std::lock_guard<std::mutex> g(box.mu);
    in.swap(box.items);
  }
  for (auto& e : in) m.adopt_transferred(e.first, e.second);
}

void worker(Shared& sh, int id, int nthreads, const std::vector<Op>& program) {
  HeapModel m(&sh.registry);
  size_t i = 0;
  try {
    for (; i < program.size() && !sh.stop.load(std::memory_order_relaxed); ++i) {
      const Op& op = program[i];
      if (op.kind == Kind::kSend) {
        send(m, sh, op, nthreads);
      } else if (op.kind == Kind::kReceive) {
        receive(m, sh, id);
      } else if (op.kind == Kind::kCheckHeap) {
        // hak_check_heap() holds every class lock, so it must hold up while
        // other threads allocate; slab descriptors of other threads' blocks
        // are not stable here, so the per-block header walk waits for the end.
        int faults = hak_check_heap();
        if (faults != 0) prop::fail("hak_check_heap() = %d while other threads run", faults);
      } else {
        prop::apply(m, op);
      }
      m.verify_sampled("after the step");
    }
    // Leftovers: every other block to the next thread, the rest freed here.
    Op last;
    last.kind = Kind::kSend;
    last.count = static_cast<uint16_t>(std::min<size_t>(m.live() / 2, 65535));
    last.pick2 = static_cast<uint32_t>(id + 1);
    send(m, sh, last, nthreads);
    m.release_all();
  } catch (const std::exception& e) {
    std::ostringstream os;
    os << "thread " << id << " of " << nthreads << ", step " << i;
    if (i < program.size()) {
      os << " ";
      prop::showValue(program[i], os);
    }
    os << ": " << e.what() << "\n  its program:" << prop::program_text(program, i);
    sh.report(os.str());
  }
}

}  // namespace

RC_GTEST_PROP(HeapModelThreads, CrossThreadFreesKeepEveryPromise, ()) {
  const int nthreads = *prop::uniform<int>(2, 4);
  const auto programs = *rc::gen::container<std::vector<std::vector<Op>>>(
      static_cast<size_t>(nthreads), prop::gen_program(true, 2.0));
  Shared sh(nthreads);
  {
    std::vector<std::thread> threads;
    for (int t = 0; t < nthreads; ++t)
      threads.emplace_back(worker, std::ref(sh), t, nthreads, std::cref(programs[static_cast<size_t>(t)]));
    for (auto& t : threads) t.join();
  }
  if (sh.stop.load()) RC_FAIL(sh.error);
  // Quiescent now: adopt the blocks still in mailboxes, check their headers, free them here.
  HeapModel m(&sh.registry);
  try {
    for (int t = 0; t < nthreads; ++t) receive(m, sh, t);
    m.check_headers();
    int faults = hak_check_heap();
    if (faults != 0) prop::fail("hak_check_heap() = %d with %zu blocks live", faults, m.live());
    m.release_all();
    faults = hak_check_heap();
    if (faults != 0) prop::fail("hak_check_heap() = %d after freeing everything", faults);
  } catch (const std::exception& e) {
    RC_FAIL(std::string("after the threads exited: ") + e.what());
  }
}

// Producer/consumer: one thread allocates, the other frees everything it
// receives (the xmalloc pattern), in batches that overflow thread caches.
RC_GTEST_PROP(HeapModelThreads, ProducerConsumer, ()) {
  const uint32_t size = *prop::gen_burst_size();
  const int rounds = *prop::uniform<int>(1, 20);
  const uint16_t batch = *prop::uniform<uint16_t>(1, 400);
  Shared sh(2);
  std::atomic<int> produced{0};
  std::thread producer([&] {
    HeapModel m(&sh.registry);
    try {
      for (int r = 0; r < rounds && !sh.stop.load(); ++r) {
        for (uint16_t i = 0; i < batch; ++i)
          m.adopt_new(hak_malloc(size), size, 0, prop::expect_malloc(size), static_cast<uint8_t>(r * 31 + i), false,
                      "malloc");
        Op op;
        op.kind = Kind::kSend;
        op.count = batch;
        op.pick2 = 1;
        send(m, sh, op, 2);
        produced.fetch_add(1);
      }
    } catch (const std::exception& e) {
      sh.report(std::string("producer: ") + e.what());
    }
    produced.store(1 << 20);
  });
  std::thread consumer([&] {
    HeapModel m(&sh.registry);
    try {
      for (;;) {
        bool done = produced.load() >= (1 << 20);
        receive(m, sh, 1);
        m.release_all();
        if (done || sh.stop.load()) {
          receive(m, sh, 1);
          m.release_all();
          break;
        }
        std::this_thread::yield();
      }
    } catch (const std::exception& e) {
      sh.report(std::string("consumer: ") + e.what());
    }
  });
  producer.join();
  consumer.join();
  if (sh.stop.load()) RC_FAIL(sh.error);
  RC_ASSERT(hak_check_heap() == 0);
}

// ---------------------------------------------------------------- thread exit

// Work done from a thread-specific-data destructor: it runs after hakmem's
// own exit hook (whose key is created first, at initialisation), so these
// frees and allocations come from a thread that already gave its cache back.
namespace {

struct ExitWork {
  Shared* sh;
  HeapModel* leftovers;  // blocks the thread still held when it exited
  uint32_t allocs;
  uint32_t size;
};

pthread_key_t g_exit_work_key;

void exit_work_destructor(void* arg) {
  ExitWork* w = static_cast<ExitWork*>(arg);
  try {
    // Free every other leftover, allocate new blocks, and hand those and the
    // rest to the main thread.
    HeapModel& m = *w->leftovers;
    for (size_t i = 0; i < m.live(); ++i) m.free_block(m.at(i));
    for (uint32_t i = 0; i < w->allocs; ++i)
      m.adopt_new(hak_malloc(w->size), w->size, 0, prop::expect_malloc(w->size), static_cast<uint8_t>(i), false,
                  "malloc after the exit hook");
    Op all;
    all.kind = Kind::kSend;
    all.count = 65535;
    all.pick2 = 0;
    send(m, *w->sh, all, 1);
  } catch (const std::exception& e) {
    w->sh->report(std::string("in the thread-exit destructor: ") + e.what());
  }
  delete w->leftovers;
  delete w;
}

}  // namespace

RC_GTEST_PROP(HeapModelThreads, AllocationsAfterTheThreadExitHook, ()) {
  static const bool key_ok = pthread_key_create(&g_exit_work_key, exit_work_destructor) == 0;
  RC_ASSERT(key_ok);
  const int nthreads = *prop::uniform<int>(1, 4);
  const auto programs = *rc::gen::container<std::vector<std::vector<Op>>>(
      static_cast<size_t>(nthreads), prop::gen_program(true, 0.5));
  const uint32_t allocs = *prop::uniform<uint32_t>(0, 300);
  const uint32_t size = *prop::gen_burst_size();
  Shared sh(nthreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < nthreads; ++t)
    threads.emplace_back([&, t] {
      auto* m = new HeapModel(&sh.registry);
      try {
        const auto& program = programs[static_cast<size_t>(t)];
        for (size_t i = 0; i < program.size() && !sh.stop.load(); ++i) {
          const Op& op = program[i];
          if (op.kind == Kind::kSend || op.kind == Kind::kReceive || op.kind == Kind::kCheckHeap) continue;
          prop::apply(*m, op);
        }
      } catch (const std::exception& e) {
        sh.report(std::string("thread: ") + e.what());
      }
      pthread_setspecific(g_exit_work_key, new ExitWork{&sh, m, allocs, size});
    });
  for (auto& t : threads) t.join();
  if (sh.stop.load()) RC_FAIL(sh.error);
  HeapModel m(&sh.registry);
  try {
    receive(m, sh, 0);
    m.check_headers();
    int faults = hak_check_heap();
    if (faults != 0) prop::fail("hak_check_heap() = %d after the threads exited", faults);
    m.release_all();
    faults = hak_check_heap();
    if (faults != 0) prop::fail("hak_check_heap() = %d after freeing everything", faults);
  } catch (const std::exception& e) {
    RC_FAIL(std::string("after the threads exited: ") + e.what());
  }
}

// ---------------------------------------------------------------- fork

// fork() while other threads allocate and free: the child (only the forking
// thread survives) frees blocks it inherited, runs a program of its own, and
// finds the heap consistent; the parent goes on as if nothing happened.
// Only where malloc is hakmem's (the drop-in build): the child uses the model,
// whose containers call malloc, and a sanitizer's allocator (the asan build's)
// can deadlock in a child forked while another thread held its lock.
bool malloc_is_hakmem() {
  void* p = malloc(24);
  bool ours = hak_owns(p) != 0;
  free(p);
  return ours;
}

RC_GTEST_PROP(HeapModelThreads, ForkWhileOtherThreadsAllocate, ()) {
  static const bool ours = malloc_is_hakmem();
  if (!ours) RC_SUCCEED("skipped: malloc is not hakmem's in this build");
  const int busy = *prop::uniform<int>(1, 2);
  const auto parent_program = *prop::gen_program(false, 0.5);
  const auto child_program = *prop::gen_program(false, 0.5);
  Shared sh(busy);
  std::atomic<bool> done{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < busy; ++t)
    threads.emplace_back([&, t] {
      HeapModel m(&sh.registry);
      uint32_t i = 0;
      try {
        while (!done.load(std::memory_order_relaxed)) {
          size_t n = (i * 2654435761u + static_cast<uint32_t>(t) * 97) % 3000;
          m.adopt_new(hak_malloc(n), n, 0, prop::expect_malloc(n), static_cast<uint8_t>(i), false, "malloc");
          if (m.live() > 64) m.free_block(m.at(i * 7));
          ++i;
        }
        m.release_all();
      } catch (const std::exception& e) {
        sh.report(std::string("busy thread: ") + e.what());
      }
    });
  HeapModel m;  // no registry: the child must not touch the threads' mutex
  std::string failure;
  try {
    for (const Op& op : parent_program)
      if (op.kind != Kind::kSend && op.kind != Kind::kReceive && op.kind != Kind::kCheckHeap) prop::apply(m, op);
    fflush(nullptr);
    pid_t pid = fork();
    if (pid == 0) {
      alarm(20);  // a deadlock in the child ends as SIGALRM
      int code = 0;
      try {
        while (!m.empty()) m.free_block(m.at(0));  // inherited blocks
        HeapModel c;
        for (const Op& op : child_program)
          if (op.kind != Kind::kSend && op.kind != Kind::kReceive) prop::apply(c, op);
        c.verify_all("child");
        c.release_all();
        if (hak_check_heap() != 0) code = 3;
      } catch (const std::exception& e) {
        fprintf(stderr, "child: %s\n", e.what());
        code = 2;
      }
      _exit(code);
    }
    if (pid < 0) prop::fail("fork failed");
    int status = 0;
    waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
      prop::fail("child: %s %d", WIFEXITED(status) ? "exit status" : "killed by signal",
                 WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
    m.verify_all("parent after fork");
    m.release_all();
  } catch (const std::exception& e) {
    failure = e.what();
  }
  done.store(true);
  for (auto& t : threads) t.join();
  if (!failure.empty()) RC_FAIL(failure + "\n  parent program:" + prop::program_text(parent_program) +
                                "\n  child program:" + prop::program_text(child_program));
  if (sh.stop.load()) RC_FAIL(sh.error);
  RC_ASSERT(hak_check_heap() == 0);
}
