// libFuzzer harness: the fuzzer's bytes become a program of allocator calls
// on hakmem's prefixed API, run by two persistent worker threads, and checked
// against proptest's HeapModel: no overlap, alignment, usable size >= request,
// content intact (realloc keeps the prefix), calloc zeroed, unit tags and slab
// counts agree with the live blocks, hak_check_heap() == 0.
//
// Input: 4-byte records [op a b c]. Consecutive operations run on the current
// worker (one hand-off per run of them: the main thread waits, so the model
// needs no lock); op 9 switches workers, so a block allocated by one thread is
// freed, reallocated or written by the other. Op 12 runs both workers at
// once: one allocates and frees a burst of its own while the other frees
// blocks the first one allocated earlier (concurrent cross-thread frees),
// then trims the heap and checks it, still concurrently.
#include <array>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>

#include "../proptest/ops.h"
#include "fuzz_common.h"

namespace {

using prop::KiB;

constexpr const char* kHarness = "ops_fuzzer";
constexpr size_t kLiveBytesCap = size_t{96} << 20;  // keeps RSS and memset time bounded
constexpr size_t kAllocsPerInput = 40000;

// A thread that runs one job at a time, handed over by the main thread.
class Worker {
 public:
  Worker() : thread_([this] { loop(); }) {}
  // Never joined: the workers live as long as the fuzzing process.
  ~Worker() { thread_.detach(); }

  void start(std::function<void()> job) {
    std::unique_lock<std::mutex> lock(mu_);
    job_ = std::move(job);
    has_job_ = true;
    cv_.notify_all();
  }
  void wait() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [this] { return !has_job_; });
  }
  void run(std::function<void()> job) {
    start(std::move(job));
    wait();
  }

 private:
  void loop() {
    for (;;) {
      std::function<void()> job;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [this] { return has_job_; });
        job = std::move(job_);
      }
      fz::checked(kHarness, job);
      std::unique_lock<std::mutex> lock(mu_);
      has_job_ = false;
      cv_.notify_all();
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::function<void()> job_;
  bool has_job_ = false;
  std::thread thread_;
};

Worker* workers() {
  static Worker* w = new Worker[2];  // leaked on purpose: threads outlive every input
  return w;
}

struct Run {
  Run() { model.set_sparse_above(256 * KiB); }
  prop::HeapModel model;
  size_t allocs = 0;
  uint32_t ops = 0;
};

bool budget(Run& r, size_t bytes, size_t count = 1) {
  if (r.allocs + count > kAllocsPerInput) return false;
  if (r.model.live_bytes() + bytes > kLiveBytesCap) return false;
  r.allocs += count;
  return true;
}

// One operation on the calling worker.
void apply(Run& r, const uint8_t rec[4]) {
  using prop::Kind;
  using prop::Op;
  const uint8_t op = rec[0] & 15, a = rec[1], b = rec[2], c = rec[3];
  prop::HeapModel& m = r.model;
  Op o;
  o.seed = static_cast<uint8_t>(a ^ b ^ c ^ r.ops);
  o.pick = static_cast<uint32_t>(b) << 8 | c;
  switch (op) {
    case 0:
    case 1:
      o.kind = Kind::kMalloc;
      o.size = static_cast<uint32_t>(fz::decode_size(a, b, c));
      break;
    case 2:
      o.kind = Kind::kCalloc;
      o.size = static_cast<uint32_t>(fz::decode_size(a, b, c));
      o.count = static_cast<uint16_t>(1 + (c & 7));
      break;
    case 3:
      o.kind = Kind::kRealloc;
      o.size = static_cast<uint32_t>(fz::decode_size(a, c, b));
      o.pick = b;
      break;
    case 4:
    case 5:
      o.kind = Kind::kFree;
      break;
    case 6:
      o.kind = Kind::kAlignedAlloc;
      o.size = static_cast<uint32_t>(fz::decode_size(a, b, 0));
      o.align_log = static_cast<uint8_t>(c % 24);
      break;
    case 7:
      o.kind = Kind::kPosixMemalign;
      o.size = static_cast<uint32_t>(fz::decode_size(a, b, 0));
      o.align_log = static_cast<uint8_t>(3 + c % 21);
      break;
    case 8:
      o.kind = Kind::kUsableSize;
      break;
    case 10:
      o.kind = Kind::kBurstAlloc;
      o.size = static_cast<uint32_t>(fz::decode_small_size(a, b));
      o.count = static_cast<uint16_t>(1 + c);
      break;
    case 11:
      o.kind = Kind::kBurstFree;
      o.count = static_cast<uint16_t>(1 + c);
      o.pick = a;
      break;
    case 13:
      if (a % 3 == 0) {
        o.kind = Kind::kMemalign;
        o.size = static_cast<uint32_t>(fz::decode_size(b, c, 0));
        o.align_log = static_cast<uint8_t>(c % 23);
        o.count = static_cast<uint16_t>(b & 3);
      } else if (a % 3 == 1) {
        o.kind = Kind::kReallocZero;
      } else {
        o.kind = Kind::kFailing;
        o.count = c;
      }
      break;
    case 14:
      o.kind = Kind::kTrim;
      break;
    case 15:
      o.kind = Kind::kCheckHeap;
      break;
    default:
      return;  // 9 and 12 are handled by the dispatcher
  }
  // Respect the budgets: an allocation that would exceed them becomes a small one.
  size_t want = o.kind == Kind::kBurstAlloc ? size_t{o.size} * o.count : o.size;
  size_t count = o.kind == Kind::kBurstAlloc ? o.count : 1;
  bool allocates = o.kind == Kind::kMalloc || o.kind == Kind::kCalloc || o.kind == Kind::kRealloc ||
                   o.kind == Kind::kAlignedAlloc || o.kind == Kind::kPosixMemalign || o.kind == Kind::kMemalign ||
                   o.kind == Kind::kBurstAlloc;
  if (allocates && !budget(r, want + (size_t{1} << o.align_log), count)) {
    if (o.kind == Kind::kBurstAlloc || !budget(r, 64)) return;
    o.size %= 64;
    o.align_log = static_cast<uint8_t>(3 + o.align_log % 4);  // posix_memalign needs at least 8
  }
  prop::apply(m, o);
}

// Op 12: worker `cur` allocates and frees a burst of its own while the other
// worker frees up to `c` blocks taken from the model (allocated earlier, by
// either thread), both at once.
void concurrent(Run& r, int cur, const uint8_t rec[4]) {
  const uint8_t a = rec[1], b = rec[2], c = rec[3];
  std::vector<std::pair<void*, prop::Block>> to_free;
  for (uint8_t k = 0; k < c && !r.model.empty(); ++k) {
    void* p = r.model.at(static_cast<size_t>(a) * 7 + k);
    r.model.verify_full(p, r.model.block(p), "block handed to the freeing thread");
    to_free.emplace_back(p, r.model.take(p, false));
  }
  size_t size = fz::decode_small_size(a, b);
  int n = 1 + (b & 127);
  if (!budget(r, size * static_cast<size_t>(n), static_cast<size_t>(n))) n = 0;
  auto own = std::make_unique<prop::HeapModel>();
  Worker* w = workers();
  w[cur].start([&] {
    for (int i = 0; i < n; ++i) {
      own->adopt_new(hak_malloc(size), size, 0, prop::expect_malloc(size), static_cast<uint8_t>(i), false,
                     "malloc (concurrent burst)");
      if (i % 3 == 2) own->free_block(own->at(static_cast<size_t>(i) * 5));
    }
  });
  w[1 - cur].start([&] {
    for (auto& e : to_free) {
      r.model.verify_full(e.first, e.second, "block about to be freed by the other thread");
      hak_free(e.first);
    }
    // While the other worker allocates: a trim (flush, drain, purge), and a
    // heap check, which holds every class lock and must find nothing.
    if (c & 1) hak_trim();
    if (c & 2) {
      int faults = hak_check_heap();
      if (faults != 0) prop::fail("hak_check_heap() = %d while the other thread allocates", faults);
    }
  });
  w[cur].wait();
  w[1 - cur].wait();
  // The survivors join the model: content intact, no overlap with any live block.
  w[cur].run([&] {
    while (!own->empty()) {
      void* p = own->at(0);
      prop::Block blk = own->take(p, false);
      r.model.adopt_checked(p, blk, "block from the concurrent burst");
    }
  });
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Worker* w = workers();
  auto run = std::make_unique<Run>();
  fz::Reader in{data, size};
  int cur = 0;
  std::vector<std::array<uint8_t, 4>> batch;
  auto flush = [&] {
    if (batch.empty()) return;
    w[cur].run([&] {
      for (const auto& rec : batch) {
        apply(*run, rec.data());
        if (++run->ops % 16 == 0) run->model.verify_sampled("every 16 operations");
      }
    });
    batch.clear();
  };
  uint8_t rec[4];
  while (in.next(rec)) {
    uint8_t op = rec[0] & 15;
    if (op == 9) {
      flush();
      cur = 1 - cur;
    } else if (op == 12) {
      flush();
      fz::checked(kHarness, [&] { concurrent(*run, cur, rec); });
    } else {
      batch.push_back({rec[0], rec[1], rec[2], rec[3]});
    }
  }
  flush();
  // The end: everything intact, the headers agree, everything freed by the
  // thread that happens to be current, and the heap consistent afterwards.
  w[cur].run([&] {
    run->model.verify_all("end of input");
    run->model.check_headers();
  });
  fz::expect_heap_consistent(kHarness, "end of input, blocks live");
  w[1 - cur].run([&] { run->model.release_all(); });
  fz::expect_heap_consistent(kHarness, "end of input, all freed");
  return 0;
}
