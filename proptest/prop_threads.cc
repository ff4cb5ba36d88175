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
