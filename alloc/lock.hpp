// The shard lock, with its cost measured: acquisitions, contended acquisitions, and
// nanoseconds spent waiting for and holding it. Figures are attributed to a LockStats
// slot chosen by the caller (the size class being refilled, or maintenance).
//
// Counters are written only by the lock holder and read by snapshots without the lock,
// hence relaxed atomics written with load + store (no read-modify-write needed).
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>

#include "platform.hpp"

namespace sydra::alloc {

struct LockStats {
  std::atomic<std::uint64_t> acquisitions{0};
  std::atomic<std::uint64_t> contention{0};
  std::atomic<std::uint64_t> wait_ns{0};
  std::atomic<std::uint64_t> hold_ns{0};

  static void add(std::atomic<std::uint64_t>& c, std::uint64_t v) noexcept {
    c.store(c.load(std::memory_order_relaxed) + v, std::memory_order_relaxed);
  }
};

class InstrumentedLock {
 public:
  void lock(LockStats& stats) noexcept {
    std::uint64_t waited = 0;
    if (!mutex_.try_lock()) {
      std::uint64_t t0 = platform::now_ns();
      mutex_.lock();
      waited = platform::now_ns() - t0;
      LockStats::add(stats.contention, 1);
      LockStats::add(stats.wait_ns, waited);
    }
    LockStats::add(stats.acquisitions, 1);
    holder_stats_ = &stats;
    hold_start_ns_ = platform::now_ns();
  }
  void unlock() noexcept {
    LockStats::add(holder_stats_->hold_ns, platform::now_ns() - hold_start_ns_);
    mutex_.unlock();
  }
  // For pthread_atfork-style code paths that must not measure.
  std::mutex& native() noexcept { return mutex_; }

 private:
  std::mutex mutex_;
  LockStats* holder_stats_ = nullptr;  // under mutex_
  std::uint64_t hold_start_ns_ = 0;    // under mutex_
};

class ScopedLock {
 public:
  ScopedLock(InstrumentedLock& lock, LockStats& stats) noexcept : lock_(lock) { lock_.lock(stats); }
  ~ScopedLock() { lock_.unlock(); }
  ScopedLock(const ScopedLock&) = delete;
  ScopedLock& operator=(const ScopedLock&) = delete;

 private:
  InstrumentedLock& lock_;
};

}  // namespace sydra::alloc
