// A small pool of helper threads that work through the series of one query together with
// the thread that asked (a request's worker), so that a many-series query uses more than one
// core.
//
// How work is shared
//   run(n, fn) publishes a job, wakes the helpers and starts calling fn itself. Every
//   caller and helper claims the next index with one atomic increment until none is left,
//   so the split adapts to uneven series. A helper that is busy with another query's job
//   simply does not join: the asking thread always makes progress alone, and several
//   queries at once share the helpers instead of queueing behind each other.
//
// Who may touch what
//   fn(index, slot) runs concurrently on up to slots() threads. `slot` is 0 on the asking
//   thread and 1..helpers on the helpers, unique among the threads working on one run(), so
//   fn may keep per-slot scratch in an array of slots() entries without locking. Jobs live
//   on their caller's stack; run() returns only after every helper has left its job.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace sydra::storage {

class QueryPool {
 public:
  using Task = std::function<void(std::size_t index, unsigned slot)>;

  // `helpers` threads besides the callers (0: run() does everything on its caller).
  explicit QueryPool(unsigned helpers);
  // Joins the helpers; no run() may be in progress.
  ~QueryPool();
  QueryPool(const QueryPool&) = delete;
  QueryPool& operator=(const QueryPool&) = delete;

  // Calls fn(i, slot) once for every i in [0, n) and returns when all calls have returned.
  // The first exception thrown by fn is rethrown here (indexes not yet started are skipped).
  void run(std::size_t n, const Task& fn);

  unsigned slots() const noexcept { return static_cast<unsigned>(threads_.size()) + 1; }

 private:
  struct Job {
    const Task* fn = nullptr;
    std::size_t n = 0;
    std::atomic<std::size_t> next{0};
    std::atomic<bool> failed{false};
    unsigned next_slot = 1;    // under mutex_
    unsigned helpers_in = 0;   // under mutex_: helpers working on it now
    std::exception_ptr error;  // under mutex_
  };

  void work(Job& job, unsigned slot);
  void helper_loop();

  std::mutex mutex_;
  std::condition_variable work_ready_;
  std::condition_variable helper_left_;
  std::deque<Job*> jobs_;  // under mutex_: jobs with indexes left to claim
  bool stopping_ = false;  // under mutex_
  std::vector<std::thread> threads_;
};

}  // namespace sydra::storage
