// bench_alloc's shared pieces: configuration, request sizes, the allocator as the workloads
// see it, per-call path attribution, results, and the run harness (RSS sampler and
// maintenance thread). The workloads are in adr_mix.cpp (the ADR's mix) and
// peer_workloads.cpp (xmalloc, larson, cache-scratch); output in report.cpp.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "alloc/small_pool_allocator.hpp"
#include "alloc/stats.hpp"
#include "support/latency_histogram.hpp"
#include "support/tsc_timer.hpp"

namespace sydra::bench {

using alloc::Mode;
using alloc::SmallPoolAllocator;

// ---- random numbers and sizes ------------------------------------------------------------

class Rng {  // xoshiro256**, seeded through splitmix64
 public:
  explicit Rng(std::uint64_t seed) noexcept {
    for (auto& s : s_) {
      seed += 0x9E3779B97F4A7C15ull;
      std::uint64_t z = seed;
      z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
      z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
      s = z ^ (z >> 31);
    }
  }
  std::uint64_t next() noexcept {
    const std::uint64_t result = rotl(s_[1] * 5, 7) * 9;
    const std::uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return result;
  }
  // Uniform in [0, n).
  std::uint32_t below(std::uint32_t n) noexcept {
    return static_cast<std::uint32_t>(((next() >> 32) * n) >> 32);
  }

 private:
  static std::uint64_t rotl(std::uint64_t x, int k) noexcept { return (x << k) | (x >> (64 - k)); }
  std::uint64_t s_[4];
};

enum class SizeKind { uniform, tsdb, fixed };

struct SizeSpec {
  SizeKind kind = SizeKind::tsdb;
  std::uint32_t fixed = 64;
  std::string text() const {
    switch (kind) {
      case SizeKind::uniform:
        return "uniform";
      case SizeKind::tsdb:
        return "tsdb";
      case SizeKind::fixed:
        return "fixed:" + std::to_string(fixed);
    }
    return "?";
  }
};

// Request sizes drawn from a 4096-entry table: uniform over 16..256 bytes, or the TSDB mix
// (points, keys and small strings dominate; a tail of tag sets and buffers up to 256 B):
//   60% 16..64 B, 25% 65..128 B, 15% 129..256 B, uniform within each range.
class SizeTable {
 public:
  static constexpr std::size_t kEntries = 4096;

  SizeTable(const SizeSpec& spec, std::uint64_t seed) {
    Rng rng(seed ^ 0x5172E5u);
    for (auto& s : table_) {
      switch (spec.kind) {
        case SizeKind::uniform:
          s = static_cast<std::uint16_t>(16 + rng.below(241));
          break;
        case SizeKind::fixed:
          s = static_cast<std::uint16_t>(spec.fixed);
          break;
        case SizeKind::tsdb: {
          const std::uint32_t bucket = rng.below(100);
          if (bucket < 60) {
            s = static_cast<std::uint16_t>(16 + rng.below(49));
          } else if (bucket < 85) {
            s = static_cast<std::uint16_t>(65 + rng.below(64));
          } else {
            s = static_cast<std::uint16_t>(129 + rng.below(128));
          }
          break;
        }
      }
    }
  }
  std::uint32_t at(std::uint64_t r) const noexcept { return table_[r & (kEntries - 1)]; }

 private:
  std::uint16_t table_[kEntries];
};

// ---- configuration -------------------------------------------------------------------------

// The workloads (docs/benchmarks.md describes each):
//   adr            the ADR's mix: writers keep a ring of live blocks, free the oldest, a share
//                  of them on another writer (--remote-free-percent); readers in epoch
//                  sections; --stress-seconds churn
//   single         adr with one thread and no remote frees: the fast paths alone
//   xmalloc        producer -> consumer: half the threads allocate, the other half free
//                  everything they are handed (every free is remote); RSS sampled over time
//   larson         a server: generations of threads each inherit the previous generation's
//                  blocks, replace random ones, and exit (objects and threads churn)
//   cache-scratch  false sharing: each thread frees a block the main thread allocated, then
//                  allocates, writes and frees a small block over and over
enum class Workload { adr, single, xmalloc, larson, cache_scratch };
std::string_view to_string(Workload w) noexcept;

struct Config {
  std::optional<Mode> allocator;  // unset: sharded, legacy and system in turn
  Workload workload = Workload::adr;
  int threads = 2;
  int shards = 0;  // 0: one per writer thread
  // Where the sharded/legacy pool puts cross-shard frees (alloc::Options::foreign_frees).
  alloc::ForeignFrees foreign_frees = alloc::ForeignFrees::to_owner;
  int readers = 0;
  std::uint64_t ops = 1'000'000;  // allocations per writer thread (when seconds == 0)
  double seconds = 0;
  int remote_free_percent = 30;
  SizeSpec sizes;
  std::uint32_t live = 1024;
  int stress_seconds = 0;
  bool paths = false;  // attribute every timed call to the path it took
  bool json = false;
  bool smoke = false;
  std::uint64_t seed = 1;

  int shard_count() const noexcept {
    return shards > 0 ? shards : std::min(threads, static_cast<int>(alloc::kMaxShards));
  }
};

Config parse_args(int argc, char** argv);

// ---- process memory ------------------------------------------------------------------------

// Resident set size from /proc/self/statm, read with pread into a stack buffer so sampling
// never calls the allocator under test.
class RssReader {
 public:
  RssReader() : fd_(::open("/proc/self/statm", O_RDONLY | O_CLOEXEC)), page_(::sysconf(_SC_PAGESIZE)) {}
  ~RssReader() {
    if (fd_ >= 0) ::close(fd_);
  }
  RssReader(const RssReader&) = delete;
  RssReader& operator=(const RssReader&) = delete;

  std::uint64_t bytes() const noexcept {
    char buf[128];
    if (fd_ < 0) return 0;
    const ssize_t n = ::pread(fd_, buf, sizeof buf - 1, 0);
    if (n <= 0) return 0;
    buf[n] = '\0';
    unsigned long long size = 0, resident = 0;
    if (std::sscanf(buf, "%llu %llu", &size, &resident) != 2) return 0;
    return resident * static_cast<std::uint64_t>(page_);
  }

 private:
  int fd_;
  long page_;
};

// ---- the allocator as the workloads see it -------------------------------------------------

struct Block {
  void* p;
  std::uint32_t size;
  std::uint32_t tag;
};

// Bounded single-producer single-consumer ring carrying blocks to the thread that frees them.
class HandoffRing {
 public:
  static constexpr std::uint64_t kCapacity = 1024;

  bool push(const Block& b) noexcept {
    const std::uint64_t tail = tail_.load(std::memory_order_relaxed);
    if (tail - cached_head_ == kCapacity) {
      cached_head_ = head_.load(std::memory_order_acquire);
      if (tail - cached_head_ == kCapacity) return false;
    }
    slots_[tail & (kCapacity - 1)] = b;
    tail_.store(tail + 1, std::memory_order_release);
    return true;
  }
  bool pop(Block& b) noexcept {
    const std::uint64_t head = head_.load(std::memory_order_relaxed);
    if (head == cached_tail_) {
      cached_tail_ = tail_.load(std::memory_order_acquire);
      if (head == cached_tail_) return false;
    }
    b = slots_[head & (kCapacity - 1)];
    head_.store(head + 1, std::memory_order_release);
    return true;
  }

 private:
  alignas(64) std::atomic<std::uint64_t> head_{0};
  std::uint64_t cached_tail_ = 0;  // consumer's
  alignas(64) std::atomic<std::uint64_t> tail_{0};
  std::uint64_t cached_head_ = 0;  // producer's
  alignas(64) Block slots_[kCapacity];
};

// The allocator under test, as the hot loop sees it. No virtual call: the writer is a template.
// paths(): the calling thread's slow-path counters, for --paths (nullptr when unavailable).
struct PoolOps {
  static constexpr bool kPool = true;
  SmallPoolAllocator* a;
  void* allocate(std::size_t n) const noexcept { return a->allocate(n); }
  void deallocate(void* p) const noexcept { a->deallocate(p); }
  void retire(void* p) const noexcept { a->retire(p); }
  void bind(std::uint32_t shard) const noexcept { a->bind_current_thread(shard); }
  const alloc::PathStats* paths() const noexcept { return a->current_thread_paths(); }
};

// malloc/free: glibc, or whatever LD_PRELOAD put in its place. libsydralloc.so exports
// sydra_alloc_thread_paths(), so its calls can be attributed to paths like the pool's.
struct SystemOps {
  static constexpr bool kPool = false;
  void* allocate(std::size_t n) const noexcept { return std::malloc(n); }
  void deallocate(void* p) const noexcept { std::free(p); }
  void retire(void* p) const noexcept { std::free(p); }  // never called: nothing is republished
  void bind(std::uint32_t) const noexcept {}
  const alloc::PathStats* paths() const noexcept;
};

struct PhaseCounters {
  std::uint64_t allocs = 0;
  std::uint64_t frees = 0;         // deallocate calls, local and received
  std::uint64_t handed = 0;        // blocks pushed to another writer
  std::uint64_t received = 0;      // blocks popped from other writers and freed here
  std::uint64_t handoff_full = 0;  // a handoff found the ring full and had to wait
  std::uint64_t retires = 0;
  std::uint64_t alloc_failures = 0;
  std::uint64_t corrupt_blocks = 0;  // first or last byte changed while the block was ours
  std::uint64_t rounds = 0;          // stress rounds

  PhaseCounters& operator+=(const PhaseCounters& o) noexcept {
    static_assert(sizeof(PhaseCounters) == 9 * sizeof(std::uint64_t), "merge every field");
    allocs += o.allocs;
    frees += o.frees;
    handed += o.handed;
    received += o.received;
    handoff_full += o.handoff_full;
    retires += o.retires;
    alloc_failures += o.alloc_failures;
    corrupt_blocks += o.corrupt_blocks;
    rounds += o.rounds;
    return *this;
  }
};

// ---- path attribution (--paths) -------------------------------------------------------------

// Path ids: 0 = the fast path (no slow-path counter moved), then one per PathStats field.
inline constexpr std::size_t kPathCount = 1
#define SYDRA_X(name) +1
    SYDRA_PATH_STATS(SYDRA_X)
#undef SYDRA_X
    ;
const char* path_name(std::size_t id) noexcept;

// Reads the calling thread's slow-path counters before and after one timed call (outside
// the timed region) and names the path the call took: the most telling counter that moved.
class PathProbe {
 public:
  void attach(const alloc::PathStats* live) noexcept { live_ = live; }
  bool attached() const noexcept { return live_ != nullptr; }
  void arm() noexcept {
    if (live_ != nullptr) before_ = *live_;
  }
  std::size_t classify() const noexcept;

 private:
  const alloc::PathStats* live_ = nullptr;
  alloc::PathStats before_{};
};

// Latency histograms per path, for allocations and frees.
struct PathTables {
  std::array<LatencyHistogram, kPathCount> alloc, free;
  bool used = false;
  void merge(const PathTables& o) noexcept {
    for (std::size_t i = 0; i < kPathCount; ++i) {
      alloc[i].merge(o.alloc[i]);
      free[i].merge(o.free[i]);
    }
    used |= o.used;
  }
};

// One timed allocator call, attributed to its path when a probe is attached.
struct TimedCalls {
  LatencyHistogram* alloc_hist;
  LatencyHistogram* free_hist;
  PathTables* paths;
  PathProbe probe;

  template <class Ops>
  void* allocate(const Ops& ops, std::size_t n) noexcept {
    probe.arm();
    const std::uint64_t t0 = tsc_now();
    void* p = ops.allocate(n);
    const std::uint64_t t1 = tsc_now();
    alloc_hist->record(elapsed_cycles(t0, t1));
    if (probe.attached()) {
      paths->alloc[probe.classify()].record(elapsed_cycles(t0, t1));
    } else {
      attach(ops);
    }
    return p;
  }
  template <class Ops>
  void deallocate(const Ops& ops, void* p) noexcept {
    probe.arm();
    const std::uint64_t t0 = tsc_now();
    ops.deallocate(p);
    const std::uint64_t t1 = tsc_now();
    free_hist->record(elapsed_cycles(t0, t1));
    if (probe.attached()) {
      paths->free[probe.classify()].record(elapsed_cycles(t0, t1));
    } else {
      attach(ops);
    }
  }
  // With --paths: the thread's counters exist once it has called the allocator.
  template <class Ops>
  void attach(const Ops& ops) noexcept {
    if (paths == nullptr) return;
    probe.attach(ops.paths());
    paths->used |= probe.attached();
  }
};

// ---- results -------------------------------------------------------------------------------

struct Percentiles {
  double p50 = 0, p95 = 0, p99 = 0, p999 = 0, max = 0, mean = 0;  // nanoseconds
  std::uint64_t count = 0;
};

inline Percentiles percentiles(const LatencyHistogram& h, const Timer& t, bool raw = false) {
  auto ns = [&](double c) { return raw ? t.to_ns_raw(c) : t.to_ns(c); };
  Percentiles p;
  p.count = h.count();
  p.p50 = ns(h.quantile(0.50));
  p.p95 = ns(h.quantile(0.95));
  p.p99 = ns(h.quantile(0.99));
  p.p999 = ns(h.quantile(0.999));
  p.max = ns(static_cast<double>(h.max()));
  p.mean = raw ? t.to_ns_raw(h.mean()) : t.mean_to_ns(h.mean());
  return p;
}

struct StressSample {
  int second = 0;
  std::uint64_t rss_bytes = 0;
  std::optional<std::uint64_t> deferred_backlog;  // pool modes only
  double alloc_p99_ns = 0;
  std::uint64_t allocs = 0;
};

struct PoolFigures {
  std::uint32_t shard_count = 0;
  std::uint64_t shard_alloc_hits = 0;
  std::uint64_t shard_alloc_misses = 0;
  std::uint64_t deferred_total = 0;
  std::uint64_t deferred_reclaimed = 0;
  std::uint64_t deferred_pending_end = 0;
  std::uint64_t fallback_allocs = 0;
  std::uint64_t fallback_frees = 0;
  std::uint64_t allocations = 0;  // buckets + fallback
  std::uint64_t frees = 0;
  std::uint64_t in_use_end = 0;
  std::uint64_t cross_shard_frees = 0;
  std::uint64_t lock_contention = 0;
  std::uint64_t epoch_advances = 0;
  std::uint64_t epoch_current = 0;
  std::uint64_t gc_collected = 0;  // by the maintenance thread and the final collection
  std::uint64_t committed_bytes = 0;
  std::uint64_t returned_bytes = 0;
};

struct RssPoint {
  double t_s = 0;
  std::uint64_t rss_bytes = 0;
};

struct RunResult {
  Mode mode = Mode::system;
  PathTables paths;                  // --paths: latency by the path each call took
  std::uint64_t setup_allocs = 0;    // untimed allocations before the timed phase (freed in it or after)
  std::vector<RssPoint> rss_series;  // every 100 ms through the main phase
  double elapsed_s = 0;              // main phase
  PhaseCounters main, stress;
  std::uint64_t cleanup_frees = 0;
  std::uint64_t reads = 0, read_bytes = 0, read_mismatches = 0, read_head_changes = 0;
  Percentiles alloc, free, retire, alloc_raw, free_raw, stress_free;
  std::uint64_t rss_start = 0, rss_peak = 0, rss_end = 0;
  std::vector<StressSample> stress_samples;
  std::optional<PoolFigures> pool;
  std::vector<std::string> failures;

  double ops_per_s() const noexcept {
    const auto ops = static_cast<double>(main.allocs + main.frees + main.retires);
    return elapsed_s > 0 ? ops / elapsed_s : 0.0;
  }
};

inline std::uint64_t deferred_backlog(const alloc::AllocatorStats& s) noexcept {
  std::uint64_t pending = 0;
  for (const auto& c : s.buckets) pending += c.deferred_pending;
  return pending;
}

// Figures the pool reports about itself at the end of a run.
PoolFigures pool_figures(const alloc::AllocatorStats& s, std::uint64_t collected);

// The threads every run has beside its workload: an RSS sampler (peak, and a point every
// 100 ms) and, in pool modes, a maintenance thread that advances the epoch and collects
// every millisecond, as the daemon's tick does. finish() stops them, drains the deferred
// queues (pool modes) and fills the run's memory and pool figures.
template <class Ops>
class Harness {
 public:
  Harness(Ops ops, RunResult& r) : ops_(ops), r_(r) {
    r_.rss_start = rss_.bytes();
    // The sampler never allocates once it runs: a thread's first allocation picks its shard
    // (round robin) in libsydralloc.so, and the workload's threads should get them in order.
    series_.reserve(36'000);  // an hour at 10 points a second
    start_ = Clock::now();
    sampler_ = std::thread([this] {
      for (std::uint64_t tick = 0; !stop_.load(std::memory_order_relaxed); ++tick) {
        const std::uint64_t now = rss_.bytes();
        if (now > peak_.load(std::memory_order_relaxed)) peak_.store(now, std::memory_order_relaxed);
        if (tick % 10 == 0 && series_.size() < series_.capacity()) {
          const double t = std::chrono::duration<double>(Clock::now() - start_).count();
          series_.push_back({t, now});
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
    });
    if constexpr (Ops::kPool) {
      maintenance_ = std::thread([this] {
        while (!stop_.load(std::memory_order_relaxed)) {
          ops_.a->advance_epoch();
          collected_.fetch_add(ops_.a->collect_garbage(), std::memory_order_relaxed);
          std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
      });
    }
  }
  ~Harness() { finish(); }
  Harness(const Harness&) = delete;
  Harness& operator=(const Harness&) = delete;

  const RssReader& rss() const noexcept { return rss_; }

  void finish() {
    if (finished_) return;
    finished_ = true;
    stop_.store(true, std::memory_order_relaxed);
    if constexpr (Ops::kPool) {
      maintenance_.join();
      ops_.a->flush_thread_cache();  // this thread's blocks of other shards (set-up, cleanup)
      // Nobody is in a read section any more: a few advances make every deferred block safe.
      for (int k = 0; k < 4; ++k) {
        ops_.a->advance_epoch();
        collected_.fetch_add(ops_.a->collect_garbage(), std::memory_order_relaxed);
      }
    }
    sampler_.join();
    r_.rss_end = rss_.bytes();
    r_.rss_peak = std::max({peak_.load(), r_.rss_start, r_.rss_end});
    r_.rss_series = std::move(series_);
    if constexpr (Ops::kPool) r_.pool = pool_figures(ops_.a->snapshot(), collected_.load());
  }

 private:
  Ops ops_;
  RunResult& r_;
  RssReader rss_;
  Clock::time_point start_;
  std::atomic<bool> stop_{false};
  std::atomic<std::uint64_t> peak_{0};
  std::atomic<std::uint64_t> collected_{0};
  std::vector<RssPoint> series_;  // the sampler's until finish()
  std::thread sampler_, maintenance_;
  bool finished_ = false;
};

// ---- the workloads and the output ----------------------------------------------------------

template <class Ops>
void run_adr(const Config& cfg, Ops ops, const Timer& timer, RunResult& r);
template <class Ops>
void run_xmalloc(const Config& cfg, Ops ops, const Timer& timer, RunResult& r);
template <class Ops>
void run_larson(const Config& cfg, Ops ops, const Timer& timer, RunResult& r);
template <class Ops>
void run_cache_scratch(const Config& cfg, Ops ops, const Timer& timer, RunResult& r);

// Sanity of the run itself and of the allocator's own accounting (failures go into r).
void check_run(const Config& cfg, RunResult& r);
void print_human(const Config& cfg, const Timer& timer, const std::vector<RunResult>& runs);
std::string to_json(const Config& cfg, const Timer& timer, const std::vector<RunResult>& runs, bool ok);

}  // namespace sydra::bench
