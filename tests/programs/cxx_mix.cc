// cxx_mix: a C++17 program of hakmem's own for the real-program tests. It is
// built as an ordinary executable (not linked to hakmem) and run under glibc
// and under LD_PRELOAD=libhakmem.so; the printed checksum must agree.
//
// It mixes new/delete, new[]/delete[], sized and aligned operator new
// (alignas(64) and alignas(4096) types, operator new with std::align_val_t,
// nothrow forms), std::vector/std::string/std::map growth, and hands objects
// between threads through a mutex + condition_variable queue so that most
// frees happen on another thread than the allocating one. Every object's
// alignment and contents are checked before it is freed.
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <new>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "tests/support/hand_off_queue.h"

namespace {

constexpr int kThreads = 6;
constexpr int kItemsPerThread = 25000;

std::atomic<unsigned long> g_failures{0};

void check(bool ok, const char* what, unsigned long detail = 0) {
  if (!ok) {
    if (g_failures.fetch_add(1) < 20) std::fprintf(stderr, "cxx_mix: check failed: %s (%lu)\n", what, detail);
  }
}

bool aligned(const void* p, std::size_t a) { return (reinterpret_cast<std::uintptr_t>(p) & (a - 1)) == 0; }

std::uint64_t mix64(std::uint64_t x) {
  x ^= x >> 33; x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33; x *= 0xc4ceb9fe1a85ec53ULL;
  x ^= x >> 33;
  return x;
}

struct alignas(64) CacheLine {
  std::uint64_t words[8];
  explicit CacheLine(std::uint64_t seed) { for (int i = 0; i < 8; ++i) words[i] = mix64(seed + i); }
  std::uint64_t sum() const { std::uint64_t s = 0; for (auto w : words) s += w; return s; }
};

struct alignas(4096) Page {
  unsigned char bytes[4096];
  explicit Page(std::uint64_t seed) { std::memset(bytes, static_cast<int>(seed & 0xff), sizeof bytes); bytes[17] = 0x5a; }
  std::uint64_t sum() const { return bytes[0] + bytes[4095] * 3u + bytes[17]; }
};

// One object handed between threads: what it is, and its expected checksum.
struct Item {
  enum Kind { kPlain, kArray, kLine, kPage, kRawAligned, kString, kVector, kMap, kNothrow } kind;
  void* ptr;
  std::size_t size;    // bytes or elements
  std::size_t align;   // for kRawAligned
  std::uint64_t expect;
  int origin;
};

struct Plain {
  std::uint64_t a, b;
  std::string label;
};

// Fills a block (every byte written, so the whole block must be usable) and
// returns a checksum of a sample of its bytes: every 32nd, and the last.
std::uint64_t fill_bytes(unsigned char* p, std::size_t n, std::uint64_t seed) {
  std::memset(p, static_cast<int>(seed & 0xff), n);
  for (std::size_t i = 0; i < n; i += 32) p[i] = static_cast<unsigned char>(mix64(seed + i));
  p[n - 1] = static_cast<unsigned char>(seed >> 8);
  std::uint64_t s = 0;
  for (std::size_t i = 0; i < n; i += 32) s = s * 3 + p[i];
  return s * 7 + p[n - 1] + (n > 1 ? p[n / 2 | 1] : 0);
}
std::uint64_t sum_bytes(const unsigned char* p, std::size_t n) {
  std::uint64_t s = 0;
  for (std::size_t i = 0; i < n; i += 32) s = s * 3 + p[i];
  return s * 7 + p[n - 1] + (n > 1 ? p[n / 2 | 1] : 0);
}

Item make_item(int thread, int i, std::uint64_t r) {
  Item it{};
  it.origin = thread;
  std::uint64_t seed = mix64(static_cast<std::uint64_t>(thread) * 1000003u + static_cast<std::uint64_t>(i));
  switch (r % 9) {
    case 0: {
      auto* p = new Plain{seed, ~seed, "plain-" + std::to_string(seed % 100000) + std::string(r % 40, 'p')};
      it = {Item::kPlain, p, 0, alignof(Plain), seed + p->label.size(), thread};
      break;
    }
    case 1: {
      std::size_t n = 1 + (r >> 8) % 3000;
      auto* a = new std::uint32_t[n];
      std::uint64_t s = 0;
      for (std::size_t k = 0; k < n; ++k) { a[k] = static_cast<std::uint32_t>(seed + k * 7); s += a[k]; }
      it = {Item::kArray, a, n, alignof(std::uint32_t), s, thread};
      break;
    }
    case 2: {
      auto* c = new CacheLine(seed);
      check(aligned(c, 64), "alignas(64) new", reinterpret_cast<std::uintptr_t>(c));
      it = {Item::kLine, c, 0, 64, c->sum(), thread};
      break;
    }
    case 3: {
      auto* pg = new Page(seed);
      check(aligned(pg, 4096), "alignas(4096) new", reinterpret_cast<std::uintptr_t>(pg));
      it = {Item::kPage, pg, 0, 4096, pg->sum(), thread};
      break;
    }
    case 4: {
      std::size_t align = std::size_t{16} << ((r >> 8) % 10);   // 16 .. 8192
      std::size_t n = 1 + (r >> 16) % 20000;
      void* p = ::operator new(n, std::align_val_t(align));
      check(aligned(p, align), "operator new(align_val_t)", align);
      it = {Item::kRawAligned, p, n, align, fill_bytes(static_cast<unsigned char*>(p), n, seed), thread};
      break;
    }
    case 5: {
      auto* s = new std::string();
      for (std::size_t k = 0; k < 1 + (r >> 8) % 200; ++k) s->append(std::to_string(seed % (k + 2)));
      std::uint64_t h = 0;
      for (unsigned char ch : *s) h = h * 131 + ch;
      it = {Item::kString, s, s->size(), 0, h, thread};
      break;
    }
    case 6: {
      auto* v = new std::vector<std::uint64_t>();
      std::size_t n = (r >> 8) % 5000;
      std::uint64_t s = 0;
      for (std::size_t k = 0; k < n; ++k) { v->push_back(seed ^ k); s += seed ^ k; }   // growth by doubling
      it = {Item::kVector, v, n, 0, s, thread};
      break;
    }
    case 7: {
      auto* m = new std::map<int, std::string>();
      int n = static_cast<int>((r >> 8) % 60);
      std::uint64_t s = 0;
      for (int k = 0; k < n; ++k) {
        auto& str = (*m)[static_cast<int>((seed + static_cast<std::uint64_t>(k) * 17) % 1000)];
        str += std::string(static_cast<std::size_t>(k % 30), static_cast<char>('a' + k % 26));
      }
      for (auto& kv : *m) s += static_cast<std::uint64_t>(kv.first) * 31 + kv.second.size();
      it = {Item::kMap, m, m->size(), 0, s, thread};
      break;
    }
    default: {
      std::size_t n = 1 + (r >> 8) % 70000;
      auto* p = static_cast<unsigned char*>(::operator new[](n, std::nothrow));
      check(p != nullptr, "nothrow new[]", n);
      // 16-byte alignment, or 8 for requests of 8 bytes or less (all that
      // an object of that size can need).
      check(aligned(p, n > 8 ? 16 : 8), "new[] alignment", n);
      it = {Item::kNothrow, p, n, 16, fill_bytes(p, n, seed), thread};
      break;
    }
  }
  return it;
}

// Verifies an item's contents and frees it with the matching operator.
std::uint64_t consume(const Item& it) {
  std::uint64_t got = 0;
  switch (it.kind) {
    case Item::kPlain: {
      auto* p = static_cast<Plain*>(it.ptr);
      got = p->a + p->label.size();
      check(p->b == ~p->a, "Plain contents");
      delete p;
      break;
    }
    case Item::kArray: {
      auto* a = static_cast<std::uint32_t*>(it.ptr);
      for (std::size_t k = 0; k < it.size; ++k) got += a[k];
      delete[] a;
      break;
    }
    case Item::kLine: {
      auto* c = static_cast<CacheLine*>(it.ptr);
      got = c->sum();
      delete c;   // aligned sized delete
      break;
    }
    case Item::kPage: {
      auto* pg = static_cast<Page*>(it.ptr);
      got = pg->sum();
      delete pg;
      break;
    }
    case Item::kRawAligned:
      got = sum_bytes(static_cast<unsigned char*>(it.ptr), it.size);
      if (it.size % 2) ::operator delete(it.ptr, std::align_val_t(it.align));
      else ::operator delete(it.ptr, it.size, std::align_val_t(it.align));
      break;
    case Item::kString: {
      auto* s = static_cast<std::string*>(it.ptr);
      for (unsigned char ch : *s) got = got * 131 + ch;
      check(s->size() == it.size, "string size");
      delete s;
      break;
    }
    case Item::kVector: {
      auto* v = static_cast<std::vector<std::uint64_t>*>(it.ptr);
      for (auto x : *v) got += x;
      check(v->size() == it.size, "vector size");
      delete v;
      break;
    }
    case Item::kMap: {
      auto* m = static_cast<std::map<int, std::string>*>(it.ptr);
      for (auto& kv : *m) got += static_cast<std::uint64_t>(kv.first) * 31 + kv.second.size();
      delete m;
      break;
    }
    case Item::kNothrow:
      got = sum_bytes(static_cast<unsigned char*>(it.ptr), it.size);
      ::operator delete[](it.ptr, std::nothrow);
      break;
  }
  check(got == it.expect, "object contents", static_cast<unsigned long>(it.kind));
  return got;
}

// A blocking queue: a mutex, a condition variable, a deque that grows.
using Queue = test_support::HandOffQueue<Item>;

struct RoundResult {
  std::uint64_t produced = 0, consumed = 0;
  unsigned long items = 0, cross_thread = 0;
};

// One round: kThreads threads each make kItemsPerThread objects; three in four
// go to another thread's queue (freed there), the rest are freed locally,
// some after a while. Threads exit at the end of the round.
RoundResult run_round(int round) {
  std::vector<Queue> queues(kThreads);
  std::vector<RoundResult> per(kThreads);
  std::atomic<int> producers_left{kThreads};
  auto worker = [&](int t) {
    RoundResult res;
    std::uint64_t r = mix64(static_cast<std::uint64_t>(round) * 7919 + static_cast<std::uint64_t>(t) + 99);
    std::vector<Item> local;
    Item in;
    auto eat = [&](const Item& it) {
      res.consumed += consume(it);
      res.cross_thread += it.origin != t;
    };
    for (int i = 0; i < kItemsPerThread; ++i) {
      r = mix64(r);
      Item it = make_item(t + round * kThreads, i, r);
      res.produced += it.expect;
      ++res.items;
      if (r % 4 == 0) {
        local.push_back(it);
        if (local.size() > 200) {
          std::size_t k = (r >> 20) % local.size();
          eat(local[k]);
          local[k] = local.back();
          local.pop_back();
        }
      } else {
        int to = (t + 1 + static_cast<int>((r >> 40) % (kThreads - 1))) % kThreads;
        queues[static_cast<std::size_t>(to)].push(it);
      }
      if (i % 8 == 7)
        for (int k = 0; k < 12 && queues[static_cast<std::size_t>(t)].try_pop(&in); ++k) eat(in);
    }
    for (auto& it : local) eat(it);
    std::vector<Item>().swap(local);
    if (producers_left.fetch_sub(1) == 1)
      for (auto& q : queues) q.close();
    while (queues[static_cast<std::size_t>(t)].pop(&in)) eat(in);
    per[static_cast<std::size_t>(t)] = res;
  };
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) threads.emplace_back(worker, t);
  for (auto& th : threads) th.join();
  RoundResult total;
  for (const auto& p : per) {
    total.produced += p.produced;
    total.consumed += p.consumed;
    total.items += p.items;
    total.cross_thread += p.cross_thread;
  }
  return total;
}

// Single-threaded growth: containers that reallocate as they grow.
std::uint64_t growth() {
  std::uint64_t h = 0;
  std::vector<std::string> words;
  std::map<std::string, std::vector<int>> index;
  std::unordered_map<std::uint64_t, std::string> table;
  std::string text;
  for (int i = 0; i < 60000; ++i) {
    std::string w = "w" + std::to_string(mix64(static_cast<std::uint64_t>(i)) % 5000);
    text += w;
    text += ' ';
    index[w].push_back(i);
    words.push_back(std::move(w));
    if (i % 3 == 0) table.emplace(mix64(static_cast<std::uint64_t>(i)), std::string(static_cast<std::size_t>(i % 300), 'x'));
  }
  for (auto& kv : index) h = h * 31 + kv.first.size() + kv.second.size() * 7 + static_cast<std::uint64_t>(kv.second.back());
  std::size_t tsum = 0;
  for (auto& kv : table) tsum += kv.second.size();
  h ^= tsum + text.size() * 3 + words.size();
  words.clear();
  words.shrink_to_fit();
  // A big buffer that grows by doubling well into the large/huge range.
  std::vector<unsigned char> big;
  for (std::size_t k = 0; k < (std::size_t{48} << 20); k += 4096) {
    big.resize(k + 4096);
    big[k] = static_cast<unsigned char>(k >> 12);
  }
  for (std::size_t k = 0; k < big.size(); k += 4096) h += big[k];
  return h;
}

}  // namespace

int main() {
  std::uint64_t g = growth();
  std::printf("growth %016llx\n", static_cast<unsigned long long>(g));
  std::uint64_t all = g;
  for (int round = 0; round < 3; ++round) {
    RoundResult res = run_round(round);
    std::printf("round %d: %lu objects, checksum %016llx, %s\n", round, res.items,
                static_cast<unsigned long long>(res.produced),
                res.produced == res.consumed ? "all freed with their contents intact" : "CONTENTS DIFFER");
    check(res.produced == res.consumed, "produced == consumed");
    check(res.cross_thread > res.items / 2, "most frees on another thread", res.cross_thread);
    all = mix64(all ^ res.produced);
  }
  std::printf("checksum %016llx\n", static_cast<unsigned long long>(all));
  unsigned long f = g_failures.load();
  std::printf("failures %lu\n", f);
  return f == 0 ? 0 : 1;
}
