// Helpers shared by the allocator tests: small configurations, a thread that runs
// closures on request (to script multi-thread scenarios step by step), a fork()ed child
// runner for tests that expect an abort, stats helpers and block patterns.
#pragma once

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>

#include "alloc/config.hpp"
#include "alloc/small_pool_allocator.hpp"
#include "alloc/stats.hpp"

namespace sydra::alloc::test {

// Builds that run much slower than release: scale iteration counts down there.
#if SYDRA_ASAN || SYDRA_TSAN || !defined(NDEBUG)
inline constexpr bool kSlowBuild = true;
#else
inline constexpr bool kSlowBuild = false;
#endif

inline constexpr std::size_t kSlabBytes = std::size_t{64} << 10;

// A small allocator: two shards, a 256 MiB range, 64 KiB slabs.
inline Options small_options(int shards = 2) {
  return Options{.shards = shards, .reserve_bytes = std::size_t{256} << 20, .slab_bytes = kSlabBytes};
}

// How long a stress test runs, in seconds: SYDRA_STRESS_SECONDS, default 1.
inline double stress_seconds() {
  const char* text = std::getenv("SYDRA_STRESS_SECONDS");
  if (text == nullptr || *text == '\0') return 1.0;
  char* end = nullptr;
  double v = std::strtod(text, &end);
  return (end != text && v > 0) ? v : 1.0;
}

// Deterministic, fast pseudo-random numbers (SplitMix64).
class Rng {
 public:
  explicit Rng(std::uint64_t seed) : state_(seed) {}
  std::uint64_t next() {
    std::uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  // Uniform in [lo, hi].
  std::uint64_t between(std::uint64_t lo, std::uint64_t hi) { return lo + next() % (hi - lo + 1); }
  bool chance(unsigned percent) { return next() % 100 < percent; }

 private:
  std::uint64_t state_;
};

// Fills n bytes with a pattern derived from seed; check_pattern verifies it.
inline unsigned char pattern_byte(std::uint64_t seed, std::size_t i) {
  return static_cast<unsigned char>((seed >> ((i & 7u) * 8u)) ^ (i * 0x9Du) ^ 0x5Au);
}
inline void fill_pattern(void* p, std::size_t n, std::uint64_t seed) {
  auto* bytes = static_cast<unsigned char*>(p);
  for (std::size_t i = 0; i < n; ++i) bytes[i] = pattern_byte(seed, i);
}
inline bool check_pattern(const void* p, std::size_t n, std::uint64_t seed) {
  auto* bytes = static_cast<const unsigned char*>(p);
  for (std::size_t i = 0; i < n; ++i)
    if (bytes[i] != pattern_byte(seed, i)) return false;
  return true;
}

inline bool is_aligned(const void* p, std::size_t align) {
  return (reinterpret_cast<std::uintptr_t>(p) & (align - 1)) == 0;
}

// ---- stats ----------------------------------------------------------------------------

// The shard's figures, or zeros when the snapshot has no entry for it (never used).
inline ShardStats shard_stats(const AllocatorStats& s, std::uint32_t id) {
  for (const ShardStats& sh : s.shards)
    if (sh.id == id) return sh;
  ShardStats none;
  none.id = id;
  return none;
}
inline ClassStats shard_class(const AllocatorStats& s, std::uint32_t id, std::uint32_t cls) {
  return shard_stats(s, id).classes[cls];
}

// Sums of one field over every class in `buckets` (shards + legacy).
#define SYDRA_TEST_SUM(stats, field)                           \
  [&] {                                                        \
    std::uint64_t total_ = 0;                                  \
    for (const auto& c_ : (stats).buckets) total_ += c_.field; \
    return total_;                                             \
  }()

inline std::uint64_t total_in_use(const AllocatorStats& s) {
  return SYDRA_TEST_SUM(s, in_use);
}
inline std::uint64_t total_cached(const AllocatorStats& s) {
  return SYDRA_TEST_SUM(s, cached);
}
inline std::uint64_t total_pending(const AllocatorStats& s) {
  return SYDRA_TEST_SUM(s, deferred_pending);
}
inline std::uint64_t total_allocations(const AllocatorStats& s) {
  return SYDRA_TEST_SUM(s, allocations);
}
inline std::uint64_t total_frees(const AllocatorStats& s) {
  return SYDRA_TEST_SUM(s, frees);
}

// Advances the epoch and collects until nothing is pending (or gives up after `rounds`).
// Returns the blocks reclaimed.
inline std::size_t drain_deferred(SmallPoolAllocator& a, int rounds = 8) {
  std::size_t reclaimed = 0;
  for (int i = 0; i < rounds; ++i) {
    a.advance_epoch();
    reclaimed += a.collect_garbage();
    if (total_pending(a.snapshot()) == 0) break;
  }
  return reclaimed;
}

// ---- threads --------------------------------------------------------------------------

// A thread that runs closures on request, one at a time; run() blocks until the closure
// has finished on that thread and returns its result. The thread lives until stop() (or
// destruction), so thread-local state (its cache, its epoch section) persists between
// calls: that is what lets a test hold a read section open across steps.
class TaskThread {
 public:
  TaskThread() : thread_([this] { loop(); }) {}
  ~TaskThread() { stop(); }
  TaskThread(const TaskThread&) = delete;
  TaskThread& operator=(const TaskThread&) = delete;

  template <class F>
  auto run(F&& f) -> std::invoke_result_t<F&> {
    using R = std::invoke_result_t<F&>;
    if constexpr (std::is_void_v<R>) {
      execute([&] { f(); });
    } else {
      std::optional<R> result;
      execute([&] { result.emplace(f()); });
      return std::move(*result);
    }
  }

  // Ends the thread and joins it (its thread-exit hooks have run when this returns).
  void stop() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (quit_) return;
      quit_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }

 private:
  void execute(std::function<void()> job) {
    std::unique_lock<std::mutex> lock(mutex_);
    job_ = std::move(job);
    has_job_ = true;
    cv_.notify_all();
    cv_.wait(lock, [&] { return !has_job_; });
  }

  void loop() {
    std::unique_lock<std::mutex> lock(mutex_);
    for (;;) {
      cv_.wait(lock, [&] { return has_job_ || quit_; });
      if (has_job_) {
        std::function<void()> job = std::move(job_);
        lock.unlock();
        job();
        job = nullptr;
        lock.lock();
        has_job_ = false;
        cv_.notify_all();
      } else if (quit_) {
        return;
      }
    }
  }

  std::mutex mutex_;
  std::condition_variable cv_;
  std::function<void()> job_;
  bool has_job_ = false;
  bool quit_ = false;
  std::thread thread_;  // last: starts after the fields above are constructed
};

// ---- child processes ------------------------------------------------------------------

struct ChildResult {
  bool exited = false;  // normal exit; see exit_code
  int exit_code = -1;
  bool signaled = false;  // killed by a signal; see signal
  int signal = 0;
  std::string err;  // everything the child wrote to stderr (and stdout)
};

// Runs body in a fork()ed child with stderr captured; the child exits 0 if body returns.
// Used for tests that expect an abort. Call it when no other thread of the test is running.
inline ChildResult run_in_child(const std::function<void()>& body) {
  int fds[2];
  if (::pipe(fds) != 0) {
    std::perror("pipe");
    std::abort();
  }
  std::fflush(stdout);
  std::fflush(stderr);
  pid_t pid = ::fork();
  if (pid < 0) {
    std::perror("fork");
    std::abort();
  }
  if (pid == 0) {
    rlimit no_core{0, 0};
    ::setrlimit(RLIMIT_CORE, &no_core);  // an expected abort need not write a core file
    // The test runner's crash handlers would report the child's expected abort as a
    // failed test case: the child dies the plain way.
    for (int sig : {SIGABRT, SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTERM}) ::signal(sig, SIG_DFL);
    ::close(fds[0]);
    ::dup2(fds[1], STDOUT_FILENO);
    ::dup2(fds[1], STDERR_FILENO);
    ::close(fds[1]);
    body();
    ::_exit(0);
  }
  ::close(fds[1]);
  ChildResult result;
  char buffer[4096];
  for (;;) {
    ssize_t n = ::read(fds[0], buffer, sizeof buffer);
    if (n > 0) {
      result.err.append(buffer, static_cast<std::size_t>(n));
    } else if (n == 0 || errno != EINTR) {
      break;
    }
  }
  ::close(fds[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(status)) {
    result.exited = true;
    result.exit_code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    result.signaled = true;
    result.signal = WTERMSIG(status);
  }
  return result;
}

inline bool contains(const std::string& text, const char* needle) {
  return text.find(needle) != std::string::npos;
}

}  // namespace sydra::alloc::test
