// The shard lock, with its cost measured: acquisitions, contended acquisitions, and time
// spent waiting for and holding it. Figures are attributed to a LockStats slot chosen by
// the caller (the size class being refilled, or maintenance). Times are kept in
// platform::ticks() (the TSC: a few nanoseconds to read, where clock_gettime costs ~25)
// and converted to nanoseconds when a snapshot is taken.
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
  std::atomic<std::uint64_t> wait_ticks{0};
  std::atomic<std::uint64_t> hold_ticks{0};

  static void add(std::atomic<std::uint64_t>& c, std::uint64_t v) noexcept {
    c.store(c.load(std::memory_order_relaxed) + v, std::memory_order_relaxed);
  }
};

class InstrumentedLock {
 public:
  void lock(LockStats& stats) noexcept {
    if (!mutex_.try_lock()) {
      const std::uint64_t t0 = platform::ticks();
      mutex_.lock();
      hold_start_ = platform::ticks();
      LockStats::add(stats.contention, 1);
      LockStats::add(stats.wait_ticks, hold_start_ - t0);
    } else {
      hold_start_ = platform::ticks();
    }
    LockStats::add(stats.acquisitions, 1);
    holder_stats_ = &stats;
  }
  void unlock() noexcept {
    LockStats::add(holder_stats_->hold_ticks, platform::ticks() - hold_start_);
    mutex_.unlock();
  }
  // Around fork() (pthread_atfork): taken by the prepare handler, released in the parent
  // and in the child by the thread that forked. Not counted in the statistics.
  void lock_for_fork() noexcept { mutex_.lock(); }
  void unlock_after_fork() noexcept { mutex_.unlock(); }

 private:
  std::mutex mutex_;
  LockStats* holder_stats_ = nullptr;  // under mutex_
  std::uint64_t hold_start_ = 0;       // ticks, under mutex_
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
