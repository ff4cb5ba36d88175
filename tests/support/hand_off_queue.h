// A queue that hands items from producer threads to consumer threads: the
// tests use it so that what one thread allocated another one frees. It
// grows (a deque under a mutex), so a producer never waits for a consumer.
#pragma once

#include <stddef.h>

#include <condition_variable>
#include <deque>
#include <mutex>
#include <vector>

namespace test_support {

template <class T>
class HandOffQueue {
 public:
  void push(const T& item) {
    {
      std::lock_guard<std::mutex> g(m_);
      q_.push_back(item);
    }
    cv_.notify_one();
  }
  void push(std::vector<T>&& batch) {
    {
      std::lock_guard<std::mutex> g(m_);
      for (auto& item : batch) q_.push_back(item);
    }
    batch.clear();
    cv_.notify_one();
  }
  // Waits for an item; false when closed and empty.
  bool pop(T* out) {
    std::unique_lock<std::mutex> g(m_);
    cv_.wait(g, [&] { return !q_.empty() || closed_; });
    if (q_.empty()) return false;
    *out = q_.front();
    q_.pop_front();
    return true;
  }
  // Waits for items, then appends up to `max` to *out; false when closed and empty.
  bool pop(std::vector<T>* out, size_t max) {
    std::unique_lock<std::mutex> g(m_);
    cv_.wait(g, [&] { return !q_.empty() || closed_; });
    if (q_.empty()) return false;
    while (!q_.empty() && out->size() < max) {
      out->push_back(q_.front());
      q_.pop_front();
    }
    return true;
  }
  // Never waits; false when empty.
  bool try_pop(T* out) {
    std::lock_guard<std::mutex> g(m_);
    if (q_.empty()) return false;
    *out = q_.front();
    q_.pop_front();
    return true;
  }
  void close() {
    {
      std::lock_guard<std::mutex> g(m_);
      closed_ = true;
    }
    cv_.notify_all();
  }

 private:
  std::mutex m_;
  std::condition_variable cv_;
  std::deque<T> q_;
  bool closed_ = false;
};

}  // namespace test_support
