// The query helper pool (see query_pool.hpp).
#include "server/storage/query_pool.hpp"

#include <algorithm>

namespace sydra::storage {

QueryPool::QueryPool(unsigned helpers) {
  threads_.reserve(helpers);
  for (unsigned i = 0; i < helpers; ++i) threads_.emplace_back([this] { helper_loop(); });
}

QueryPool::~QueryPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  work_ready_.notify_all();
  for (std::thread& t : threads_) t.join();
}

void QueryPool::work(Job& job, unsigned slot) {
  for (;;) {
    const std::size_t i = job.next.fetch_add(1, std::memory_order_relaxed);
    if (i >= job.n) return;
    if (job.failed.load(std::memory_order_relaxed)) continue;  // skip the rest, claim to the end
    try {
      (*job.fn)(i, slot);
    } catch (...) {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!job.error) job.error = std::current_exception();
      job.failed.store(true, std::memory_order_relaxed);
    }
  }
}

void QueryPool::run(std::size_t n, const Task& fn) {
  if (n == 0) return;
  if (threads_.empty() || n == 1) {
    for (std::size_t i = 0; i < n; ++i) fn(i, 0);
    return;
  }
  Job job;
  job.fn = &fn;
  job.n = n;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    jobs_.push_back(&job);
  }
  if (n - 1 >= threads_.size()) {
    work_ready_.notify_all();
  } else {
    for (std::size_t i = 0; i + 1 < n; ++i) work_ready_.notify_one();
  }
  work(job, 0);
  std::exception_ptr error;
  {
    std::unique_lock<std::mutex> lock(mutex_);
    std::erase(jobs_, &job);  // every index is claimed: no helper may join any more
    helper_left_.wait(lock, [&] { return job.helpers_in == 0; });
    error = job.error;
  }
  if (error) std::rethrow_exception(error);
}

void QueryPool::helper_loop() {
  std::unique_lock<std::mutex> lock(mutex_);
  for (;;) {
    work_ready_.wait(lock, [&] { return stopping_ || !jobs_.empty(); });
    if (stopping_) return;
    Job* job = jobs_.front();
    if (job->next.load(std::memory_order_relaxed) >= job->n) {
      jobs_.pop_front();  // nothing left to claim; its caller finishes it
      continue;
    }
    const unsigned slot = job->next_slot++;
    ++job->helpers_in;
    lock.unlock();
    work(*job, slot);
    lock.lock();
    std::erase(jobs_, job);  // claimed to the end (work() returned)
    if (--job->helpers_in == 0) helper_left_.notify_all();
  }
}

}  // namespace sydra::storage
