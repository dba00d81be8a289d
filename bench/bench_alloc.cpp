// bench_alloc: per-operation latency and throughput of the small-object allocator against
// the system allocator (and, through LD_PRELOAD on --allocator=system, against jemalloc,
// tcmalloc and mimalloc; see compare_allocators.sh).
//
// What is measured, and what is not
//   - The timed region is exactly one allocator call: lfence; rdtsc; lfence around a single
//     allocate(), deallocate() or retire() (this CPU may lack rdtscp, so both ends use the
//     lfence pair). Everything else — choosing a size, touching the block, the handoff queue
//     that carries cross-thread frees, reader traffic, statistics — happens outside it.
//   - Each writer thread records cycle counts into its own log-linear histogram (16 linear
//     sub-buckets per power of two: at most 1/32 relative error at a bucket's midpoint);
//     histograms are merged after the run. The timer's own cost (median of an empty rdtsc
//     pair, measured at start-up) is subtracted from every reported latency, clamped at 0.
//   - Writers keep `--live` blocks each in a ring: allocate a new block, write its first and
//     last byte, and free the oldest — locally, or (for --remote-free-percent of them) by
//     handing it through a bounded SPSC ring to another writer, which checks the bytes and
//     frees it there. That is the cross-shard free the sharded mode defers by epoch.
//   - Readers (--readers) sit inside EpochGuard sections and read every byte of blocks the
//     writers publish; writers replace published blocks and retire() the old ones. A reader
//     that sees a block change under it reports a mismatch (premature reclamation). In
//     system mode nothing can retire safely, so the published blocks stay fixed and the
//     readers just read them.
//   - In sharded and legacy mode a maintenance thread advances the epoch and collects
//     garbage every millisecond, as the daemon does.
//
// The binary is not linked with the operator new replacement: --allocator=system calls
// malloc/free directly, which LD_PRELOAD can redirect to a peer allocator.

#include <x86intrin.h>

#include <fcntl.h>
#include <unistd.h>
#include <algorithm>
#include <atomic>
#include <barrier>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <numeric>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "alloc/small_pool_allocator.hpp"
#include "alloc/stats.hpp"

namespace sydra::bench {
namespace {

using alloc::Mode;
using alloc::SmallPoolAllocator;
using Clock = std::chrono::steady_clock;

// ---- timing -----------------------------------------------------------------------------

// lfence before rdtsc waits for earlier instructions to finish; lfence after keeps later
// ones from starting before the counter is read. The empty asm keeps the compiler from
// moving memory accesses across either end.
inline __attribute__((always_inline)) std::uint64_t tsc_now() noexcept {
  asm volatile("" ::: "memory");
  _mm_lfence();
  const std::uint64_t t = __rdtsc();
  _mm_lfence();
  asm volatile("" ::: "memory");
  return t;
}

inline std::uint64_t elapsed_cycles(std::uint64_t t0, std::uint64_t t1) noexcept {
  return t1 > t0 ? t1 - t0 : 0;  // a migration between cores may read a smaller counter
}

struct Timer {
  double ticks_per_ns = 1.0;
  std::uint64_t overhead_cycles = 0;  // median of an empty tsc_now() pair
  double overhead_mean_cycles = 0;    // its mean (taken off means)
  // Smallest step between distinct readings. Virtual machines may advance the TSC in steps
  // (e.g. 21 ticks = 10 ns): single calls faster than that read as 0 or 1 step, and only
  // means over many calls resolve them.
  std::uint64_t resolution_cycles = 1;

  double overhead_ns() const noexcept { return static_cast<double>(overhead_cycles) / ticks_per_ns; }
  double resolution_ns() const noexcept { return static_cast<double>(resolution_cycles) / ticks_per_ns; }
  // Cycles of one call to nanoseconds, the timer's own cost taken off.
  double to_ns(double cycles) const noexcept {
    return std::max(0.0, cycles - static_cast<double>(overhead_cycles)) / ticks_per_ns;
  }
  double mean_to_ns(double cycles) const noexcept {
    return std::max(0.0, cycles - overhead_mean_cycles) / ticks_per_ns;
  }
  double to_ns_raw(double cycles) const noexcept { return cycles / ticks_per_ns; }
};

Timer calibrate_timer() {
  Timer timer;
  const auto c0 = tsc_now();
  const auto n0 = Clock::now();
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  const auto c1 = tsc_now();
  const auto n1 = Clock::now();
  const double ns =
      static_cast<double>(std::chrono::duration_cast<std::chrono::nanoseconds>(n1 - n0).count());
  timer.ticks_per_ns = static_cast<double>(c1 - c0) / ns;

  constexpr std::size_t kSamples = 100000;
  std::vector<std::uint64_t> samples(kSamples);
  for (auto& s : samples) {
    const std::uint64_t t0 = tsc_now();
    const std::uint64_t t1 = tsc_now();
    s = elapsed_cycles(t0, t1);
  }
  std::sort(samples.begin(), samples.end());
  timer.overhead_cycles = samples[kSamples / 2];
  double sum = 0;
  for (std::size_t i = 0; i < kSamples * 99 / 100; ++i)
    sum += static_cast<double>(samples[i]);  // no interrupts
  timer.overhead_mean_cycles = sum / static_cast<double>(kSamples * 99 / 100);
  std::uint64_t step = 0;
  for (std::size_t i = 1; i < kSamples; ++i) step = std::gcd(step, samples[i] - samples[0]);
  timer.resolution_cycles = step == 0 ? 1 : step;
  return timer;
}

// ---- latency histogram ------------------------------------------------------------------

// HdrHistogram-like: values below 32 are exact; above, each power of two 2^k is split into
// 16 linear sub-buckets of width 2^(k-4).
class LatencyHistogram {
 public:
  static constexpr unsigned kSubBits = 4;
  static constexpr std::uint64_t kSub = 1u << kSubBits;
  static constexpr std::size_t kBuckets = (64 - kSubBits + 1) * kSub;

  void record(std::uint64_t v) noexcept {
    ++counts_[index(v)];
    ++total_;
    sum_ += v;
    max_ = std::max(max_, v);
  }

  void merge(const LatencyHistogram& o) noexcept {
    for (std::size_t i = 0; i < kBuckets; ++i) counts_[i] += o.counts_[i];
    total_ += o.total_;
    sum_ += o.sum_;
    max_ = std::max(max_, o.max_);
  }

  std::uint64_t count() const noexcept { return total_; }
  std::uint64_t max() const noexcept { return max_; }
  double mean() const noexcept {
    return total_ ? static_cast<double>(sum_) / static_cast<double>(total_) : 0.0;
  }

  // The value at quantile q (0..1), as the midpoint of its bucket (never above the maximum).
  double quantile(double q) const noexcept {
    if (total_ == 0) return 0.0;
    auto rank = static_cast<std::uint64_t>(std::ceil(q * static_cast<double>(total_)));
    rank = std::clamp<std::uint64_t>(rank, 1, total_);
    std::uint64_t seen = 0;
    for (std::size_t i = 0; i < kBuckets; ++i) {
      seen += counts_[i];
      if (seen >= rank) {
        const double mid =
            static_cast<double>(bucket_lower(i)) + static_cast<double>(bucket_width(i) - 1) / 2.0;
        return std::min(mid, static_cast<double>(max_));
      }
    }
    return static_cast<double>(max_);
  }

 private:
  static std::size_t index(std::uint64_t v) noexcept {
    if (v < kSub) return static_cast<std::size_t>(v);
    const unsigned k = 63u - static_cast<unsigned>(__builtin_clzll(v));  // k >= kSubBits
    return (k - kSubBits + 1) * kSub + ((v >> (k - kSubBits)) & (kSub - 1));
  }
  static std::uint64_t bucket_lower(std::size_t i) noexcept {
    if (i < kSub) return i;
    const std::size_t k = i / kSub + kSubBits - 1;
    return (kSub + i % kSub) << (k - kSubBits);
  }
  static std::uint64_t bucket_width(std::size_t i) noexcept {
    if (i < 2 * kSub) return 1;
    return std::uint64_t{1} << (i / kSub + kSubBits - 1 - kSubBits);
  }

  std::uint64_t counts_[kBuckets] = {};
  std::uint64_t total_ = 0;
  std::uint64_t sum_ = 0;
  std::uint64_t max_ = 0;
};

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

struct Config {
  std::optional<Mode> allocator;  // unset: sharded, legacy and system in turn
  int threads = 2;
  int shards = 0;  // 0: one per writer thread
  int readers = 0;
  std::uint64_t ops = 1'000'000;  // allocations per writer thread (when seconds == 0)
  double seconds = 0;
  int remote_free_percent = 30;
  SizeSpec sizes;
  std::uint32_t live = 1024;
  int stress_seconds = 0;
  bool json = false;
  bool smoke = false;
  std::uint64_t seed = 1;

  int shard_count() const noexcept {
    return shards > 0 ? shards : std::min(threads, static_cast<int>(alloc::kMaxShards));
  }
};

constexpr std::string_view kUsage = R"(usage: bench_alloc [options]
  --allocator=sharded|legacy|system   one allocator (default: all three in turn, side by side)
  --shards N               shards for sharded/legacy (default: one per writer thread, at most 64)
  --threads N              writer threads (default 2)
  --readers N              reader threads inside epoch sections (default 0)
  --ops N                  allocations per writer thread (default 1000000)
  --seconds S              run the main phase for S seconds instead of --ops
  --remote-free-percent P  share of blocks freed by another writer thread (default 30)
  --sizes=uniform|tsdb|fixed:N   request sizes over 16..256 B (default tsdb)
  --live N                 blocks each writer keeps live (default 1024)
  --stress-seconds S       churn phase with per-second RSS, deferred backlog, alloc p99 (default 0)
  --json                   one JSON object on stdout
  --smoke                  tiny run of all three allocators with sanity checks (ctest)
  --seed N                 workload seed (default 1)
)";

[[noreturn]] void usage_error(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
void usage_error(const char* fmt, ...) {
  std::va_list args;
  va_start(args, fmt);
  std::fputs("bench_alloc: ", stderr);
  std::vfprintf(stderr, fmt, args);
  va_end(args);
  std::fprintf(stderr, "\n%s", kUsage.data());
  std::exit(2);
}

std::uint64_t parse_uint(std::string_view name, const std::string& text, std::uint64_t lo, std::uint64_t hi) {
  char* end = nullptr;
  errno = 0;
  const unsigned long long v = std::strtoull(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || errno != 0 || text[0] == '-' || v < lo || v > hi) {
    usage_error("%.*s: expected an integer in [%" PRIu64 ", %" PRIu64 "], got '%s'",
                static_cast<int>(name.size()), name.data(), lo, hi, text.c_str());
  }
  return v;
}

double parse_seconds(std::string_view name, const std::string& text) {
  char* end = nullptr;
  const double v = std::strtod(text.c_str(), &end);
  if (text.empty() || *end != '\0' || !(v > 0) || v > 86400) {
    usage_error("%.*s: expected seconds > 0, got '%s'", static_cast<int>(name.size()), name.data(),
                text.c_str());
  }
  return v;
}

Config parse_args(int argc, char** argv) {
  Config cfg;
  bool ops_given = false;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    std::string value;
    bool has_value = false;
    if (const auto eq = arg.find('='); arg.rfind("--", 0) == 0 && eq != std::string::npos) {
      value = arg.substr(eq + 1);
      arg.resize(eq);
      has_value = true;
    }
    auto take = [&]() -> std::string {
      if (has_value) return value;
      if (i + 1 >= argc) usage_error("%s needs a value", arg.c_str());
      return argv[++i];
    };
    auto flag = [&]() {
      if (has_value) usage_error("%s takes no value", arg.c_str());
    };
    if (arg == "--help" || arg == "-h") {
      std::fputs(kUsage.data(), stdout);
      std::exit(0);
    } else if (arg == "--allocator") {
      const std::string v = take();
      Mode m;
      if (!alloc::parse_mode(v, m))
        usage_error("--allocator: expected sharded, legacy or system, got '%s'", v.c_str());
      cfg.allocator = m;
    } else if (arg == "--shards") {
      cfg.shards = static_cast<int>(parse_uint(arg, take(), 1, alloc::kMaxShards));
    } else if (arg == "--threads") {
      cfg.threads = static_cast<int>(parse_uint(arg, take(), 1, 256));
    } else if (arg == "--readers") {
      cfg.readers = static_cast<int>(parse_uint(arg, take(), 0, 256));
    } else if (arg == "--ops") {
      cfg.ops = parse_uint(arg, take(), 1, std::uint64_t{1} << 40);
      ops_given = true;
    } else if (arg == "--seconds") {
      cfg.seconds = parse_seconds(arg, take());
    } else if (arg == "--remote-free-percent") {
      cfg.remote_free_percent = static_cast<int>(parse_uint(arg, take(), 0, 100));
    } else if (arg == "--sizes") {
      const std::string v = take();
      if (v == "uniform") {
        cfg.sizes.kind = SizeKind::uniform;
      } else if (v == "tsdb") {
        cfg.sizes.kind = SizeKind::tsdb;
      } else if (v.rfind("fixed:", 0) == 0) {
        cfg.sizes.kind = SizeKind::fixed;
        cfg.sizes.fixed = static_cast<std::uint32_t>(parse_uint("--sizes=fixed", v.substr(6), 1, 65535));
      } else {
        usage_error("--sizes: expected uniform, tsdb or fixed:N, got '%s'", v.c_str());
      }
    } else if (arg == "--live") {
      cfg.live = static_cast<std::uint32_t>(parse_uint(arg, take(), 1, 1u << 24));
    } else if (arg == "--stress-seconds") {
      cfg.stress_seconds = static_cast<int>(parse_uint(arg, take(), 0, 3600));
    } else if (arg == "--seed") {
      cfg.seed = parse_uint(arg, take(), 0, UINT64_MAX);
    } else if (arg == "--json") {
      flag();
      cfg.json = true;
    } else if (arg == "--smoke") {
      flag();
      cfg.smoke = true;
    } else {
      usage_error("unknown argument '%s'", argv[i]);
    }
  }
  if (ops_given && cfg.seconds > 0) usage_error("give --ops or --seconds, not both");
  if (cfg.smoke) {
    cfg.allocator.reset();
    cfg.threads = 2;
    cfg.shards = 0;
    cfg.readers = 1;
    cfg.ops = 20'000;
    cfg.seconds = 0;
    cfg.live = 256;
    cfg.stress_seconds = 1;
  }
  return cfg;
}

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

// ---- the workload ------------------------------------------------------------------------

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
struct PoolOps {
  static constexpr bool kPool = true;
  SmallPoolAllocator* a;
  void* allocate(std::size_t n) const noexcept { return a->allocate(n); }
  void deallocate(void* p) const noexcept { a->deallocate(p); }
  void retire(void* p) const noexcept { a->retire(p); }
};

struct SystemOps {
  static constexpr bool kPool = false;
  void* allocate(std::size_t n) const noexcept { return std::malloc(n); }
  void deallocate(void* p) const noexcept { std::free(p); }
  void retire(void* p) const noexcept { std::free(p); }  // never called: nothing is republished
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

struct WriterResult {
  LatencyHistogram alloc, free, retire;  // main phase
  LatencyHistogram stress_free;
  std::vector<LatencyHistogram> stress_alloc;  // per second of the stress phase
  PhaseCounters main, stress;
  std::uint64_t cleanup_frees = 0;  // published blocks freed at the end
  Clock::time_point start, end;     // main phase
};

struct ReaderResult {
  std::uint64_t reads = 0;
  std::uint64_t bytes = 0;
  std::uint64_t mismatches = 0;    // bytes 16.. changed: the block was reused too early
  std::uint64_t head_changes = 0;  // bytes 0..15 changed while the block could still be read
};

constexpr std::size_t kSlotsPerWriter = 16;  // published blocks per writer
constexpr std::uint64_t kPublishEvery = 64;  // a writer republishes one slot every 64 operations
constexpr std::uint32_t kReadBatch = 32;     // reads per epoch section

struct Shared {
  Shared(const Config& c, int participants)
      : cfg(c),
        writers(c.threads),
        barrier(participants),
        slots(kSlotsPerWriter * static_cast<std::size_t>(c.threads)) {
    if (writers > 1) {
      rings.resize(static_cast<std::size_t>(writers) * static_cast<std::size_t>(writers));
      for (int from = 0; from < writers; ++from) {
        for (int to = 0; to < writers; ++to) {
          if (from != to)
            rings[static_cast<std::size_t>(from * writers + to)] = std::make_unique<HandoffRing>();
        }
      }
    }
  }
  HandoffRing& ring(int from, int to) noexcept {
    return *rings[static_cast<std::size_t>(from * writers + to)];
  }

  const Config& cfg;
  const int writers;
  std::barrier<> barrier;  // writers + the main thread
  std::atomic<bool> stop_main{false};
  std::atomic<bool> stop_stress{false};
  std::atomic<bool> stop_readers{false};
  std::atomic<int> producers_done[2] = {0, 0};
  std::atomic<std::uint32_t> stress_second{0};
  std::vector<std::unique_ptr<HandoffRing>> rings;  // [from * writers + to]
  std::vector<std::atomic<void*>> slots;            // published blocks, read by readers
};

// A published block: 16 bytes of (seq & 0xff), the header {size, seq}, then (seq & 0xff)
// to the end. The first 16 bytes are checked on their own: they are where an intrusive
// deferred-free node would go, and a reader must not see them change either.
struct PublishedHeader {
  std::uint32_t size;
  std::uint32_t seq;
};
constexpr std::uint32_t kHeadBytes = 16;
constexpr std::uint32_t kMinPublished = kHeadBytes + sizeof(PublishedHeader) + 8;

void fill_published(void* p, std::uint32_t size, std::uint32_t seq) noexcept {
  auto* bytes = static_cast<unsigned char*>(p);
  std::memset(bytes, static_cast<int>(seq & 0xff), size);
  const PublishedHeader h{size, seq};
  std::memcpy(bytes + kHeadBytes, &h, sizeof h);
}

template <class Ops>
class Writer {
 public:
  Writer(Shared& shared, int index, Ops ops, WriterResult& out)
      : sh_(shared),
        cfg_(shared.cfg),
        index_(index),
        ops_(ops),
        out_(out),
        rng_(cfg_.seed * 0x100000001B3ull + static_cast<std::uint64_t>(index) + 1),
        sizes_(cfg_.sizes, cfg_.seed + static_cast<std::uint64_t>(index)),
        ring_(cfg_.live, Block{nullptr, 0, 0}),
        publish_(cfg_.readers > 0) {}

  void run() {
    if constexpr (Ops::kPool) {
      const auto shards = static_cast<std::uint32_t>(cfg_.shard_count());
      ops_.a->bind_current_thread(static_cast<std::uint32_t>(index_) % shards);
    }
    if (publish_) {
      for (std::size_t k = 0; k < kSlotsPerWriter; ++k) publish_one(k, out_.main, nullptr);
    }

    sh_.barrier.arrive_and_wait();  // start
    out_.start = Clock::now();
    main_phase();
    finish_phase(0, out_.main, out_.free);
    out_.end = Clock::now();
    sh_.barrier.arrive_and_wait();  // main phase done

    if (cfg_.stress_seconds > 0) {
      stress_phase();
      finish_phase(1, out_.stress, out_.stress_free);
      sh_.barrier.arrive_and_wait();  // stress done
    }

    sh_.barrier.arrive_and_wait();  // readers have stopped: published blocks can go
    if (publish_) {
      for (std::size_t k = 0; k < kSlotsPerWriter; ++k) {
        void* p = slot(k).exchange(nullptr, std::memory_order_acq_rel);
        if (p != nullptr) {
          ops_.deallocate(p);
          ++out_.cleanup_frees;
        }
      }
    }
  }

 private:
  std::atomic<void*>& slot(std::size_t k) noexcept {
    return sh_.slots[static_cast<std::size_t>(index_) * kSlotsPerWriter + k];
  }

  void main_phase() {
    const bool by_clock = cfg_.seconds > 0;
    std::size_t pos = 0;
    for (std::uint64_t i = 0;; ++i) {
      if (by_clock) {
        if ((i & 255) == 0 && sh_.stop_main.load(std::memory_order_relaxed)) break;
      } else if (i >= cfg_.ops) {
        break;
      }
      const std::uint32_t size = sizes_.at(rng_.next());
      const std::uint64_t t0 = tsc_now();
      void* p = ops_.allocate(size);
      const std::uint64_t t1 = tsc_now();
      out_.alloc.record(elapsed_cycles(t0, t1));
      if (p == nullptr) {
        ++out_.main.alloc_failures;
        continue;
      }
      ++out_.main.allocs;
      const Block fresh{p, size, static_cast<std::uint32_t>(i & 0xff)};
      touch(fresh);
      const Block old = ring_[pos];
      ring_[pos] = fresh;
      if (++pos == ring_.size()) pos = 0;
      if (old.p != nullptr) release(old, out_.main, out_.free);
      if ((i & 15) == 15) drain(out_.main, out_.free);
      if (publish_ && Ops::kPool && i % kPublishEvery == kPublishEvery - 1) {
        publish_one(next_slot_, out_.main, &out_.retire);
        next_slot_ = (next_slot_ + 1) % kSlotsPerWriter;
      }
    }
  }

  // Rounds of allocate-all / free-all. Allocation latency goes into the histogram of the
  // current second, which the main thread moves on.
  void stress_phase() {
    const std::size_t seconds = out_.stress_alloc.size();
    std::uint32_t tag = 0;
    while (!sh_.stop_stress.load(std::memory_order_relaxed)) {
      const std::size_t second =
          std::min<std::size_t>(sh_.stress_second.load(std::memory_order_relaxed), seconds - 1);
      LatencyHistogram& hist = out_.stress_alloc[second];
      for (auto& b : ring_) {
        const std::uint32_t size = sizes_.at(rng_.next());
        const std::uint64_t t0 = tsc_now();
        void* p = ops_.allocate(size);
        const std::uint64_t t1 = tsc_now();
        hist.record(elapsed_cycles(t0, t1));
        if (p == nullptr) {
          ++out_.stress.alloc_failures;
          b = Block{nullptr, 0, 0};
          continue;
        }
        ++out_.stress.allocs;
        b = Block{p, size, ++tag & 0xff};
        touch(b);
      }
      std::uint32_t k = 0;
      for (auto& b : ring_) {
        if (b.p != nullptr) release(b, out_.stress, out_.stress_free);
        b = Block{nullptr, 0, 0};
        if ((++k & 15) == 0) drain(out_.stress, out_.stress_free);
      }
      drain(out_.stress, out_.stress_free);
      ++out_.stress.rounds;
    }
  }

  // Frees what is left in the live ring, then keeps freeing what other writers hand over
  // until every writer has stopped producing for this phase and the incoming rings are empty.
  void finish_phase(int phase, PhaseCounters& c, LatencyHistogram& free_hist) {
    for (auto& b : ring_) {
      if (b.p != nullptr) free_local(b, c, free_hist);
      b = Block{nullptr, 0, 0};
    }
    sh_.producers_done[phase].fetch_add(1, std::memory_order_acq_rel);
    for (;;) {
      const bool all_done = sh_.producers_done[phase].load(std::memory_order_acquire) == sh_.writers;
      drain(c, free_hist);
      if (all_done) break;  // nothing can be pushed after the last producer finished
      std::this_thread::yield();
    }
  }

  static void touch(const Block& b) noexcept {
    auto* bytes = static_cast<unsigned char*>(b.p);
    bytes[0] = static_cast<unsigned char>(b.tag);
    bytes[b.size - 1] = static_cast<unsigned char>(b.tag);
  }
  static bool intact(const Block& b) noexcept {
    const auto* bytes = static_cast<const unsigned char*>(b.p);
    return bytes[0] == static_cast<unsigned char>(b.tag) &&
           bytes[b.size - 1] == static_cast<unsigned char>(b.tag);
  }

  // With probability remote-free-percent the block goes to another writer, else it is freed
  // here. A full ring is back-pressure (the consumer is descheduled on a busy machine): the
  // producer frees what it was handed meanwhile and yields until there is room, so the
  // share of cross-thread frees stays what was asked for. Nobody can wait on a cycle: every
  // waiting writer keeps draining its own incoming rings.
  void release(const Block& b, PhaseCounters& c, LatencyHistogram& free_hist) {
    if (sh_.writers > 1 && rng_.below(100) < static_cast<std::uint32_t>(cfg_.remote_free_percent)) {
      int to = static_cast<int>(rng_.below(static_cast<std::uint32_t>(sh_.writers - 1)));
      if (to >= index_) ++to;
      HandoffRing& ring = sh_.ring(index_, to);
      if (!ring.push(b)) {
        ++c.handoff_full;
        do {
          drain(c, free_hist);
          std::this_thread::yield();
        } while (!ring.push(b));
      }
      ++c.handed;
      return;
    }
    free_local(b, c, free_hist);
  }

  void free_local(const Block& b, PhaseCounters& c, LatencyHistogram& free_hist) {
    if (!intact(b)) ++c.corrupt_blocks;
    const std::uint64_t t0 = tsc_now();
    ops_.deallocate(b.p);
    const std::uint64_t t1 = tsc_now();
    free_hist.record(elapsed_cycles(t0, t1));
    ++c.frees;
  }

  void drain(PhaseCounters& c, LatencyHistogram& free_hist) {
    for (int from = 0; from < sh_.writers; ++from) {
      if (from == index_) continue;
      HandoffRing& ring = sh_.ring(from, index_);
      Block b;
      while (ring.pop(b)) {
        free_local(b, c, free_hist);
        ++c.received;
      }
    }
  }

  // Replaces published slot k with a fresh block; the old one is retired (pool modes only:
  // readers may still be reading it).
  void publish_one(std::size_t k, PhaseCounters& c, LatencyHistogram* retire_hist) {
    const std::uint32_t size = std::clamp<std::uint32_t>(sizes_.at(rng_.next()), kMinPublished, 256);
    const std::uint64_t t0 = tsc_now();
    void* p = ops_.allocate(size);
    const std::uint64_t t1 = tsc_now();
    if (retire_hist != nullptr) out_.alloc.record(elapsed_cycles(t0, t1));
    if (p == nullptr) {
      ++c.alloc_failures;
      return;
    }
    ++c.allocs;
    fill_published(p, size, ++publish_seq_);
    void* old = slot(k).exchange(p, std::memory_order_acq_rel);
    if (old == nullptr) return;
    const std::uint64_t r0 = tsc_now();
    ops_.retire(old);
    const std::uint64_t r1 = tsc_now();
    if (retire_hist != nullptr) retire_hist->record(elapsed_cycles(r0, r1));
    ++c.retires;
  }

  Shared& sh_;
  const Config& cfg_;
  const int index_;
  const Ops ops_;
  WriterResult& out_;
  Rng rng_;
  SizeTable sizes_;
  std::vector<Block> ring_;
  const bool publish_;
  std::size_t next_slot_ = 0;
  std::uint32_t publish_seq_ = 0;
};

// Reads every byte of kReadBatch published blocks inside one epoch section, then reads them
// all again before leaving it, as a query that holds references while it works would. Every
// byte of a block the reader reached must stay as published until the section ends.
template <class Ops>
void reader_main(Shared& sh, Ops ops, int index, ReaderResult& out) {
  const std::size_t n = sh.slots.size();
  std::size_t next = static_cast<std::size_t>(index) * 7 % n;
  std::uint64_t sum = 0;
  const unsigned char* held[kReadBatch];
  PublishedHeader held_header[kReadBatch];
  auto verify = [&](const unsigned char* bytes, const PublishedHeader& h) {
    PublishedHeader now;
    std::memcpy(&now, bytes + kHeadBytes, sizeof now);
    const auto expect = static_cast<unsigned char>(h.seq & 0xff);
    bool ok = now.size == h.size && now.seq == h.seq;
    for (std::uint32_t i = kHeadBytes + sizeof h; i < h.size; ++i) {
      sum += bytes[i];
      ok &= bytes[i] == expect;
    }
    bool head_ok = true;
    for (std::uint32_t i = 0; i < kHeadBytes; ++i) head_ok &= bytes[i] == expect;
    out.bytes += h.size;
    if (!ok) ++out.mismatches;
    if (!head_ok) ++out.head_changes;
    return ok && head_ok;
  };
  auto read_batch = [&] {
    std::uint32_t m = 0;
    for (std::uint32_t j = 0; j < kReadBatch; ++j) {
      const void* p = sh.slots[next].load(std::memory_order_acquire);
      if (++next == n) next = 0;
      if (p == nullptr) continue;
      const auto* bytes = static_cast<const unsigned char*>(p);
      PublishedHeader h;
      std::memcpy(&h, bytes + kHeadBytes, sizeof h);
      ++out.reads;
      if (h.size < kMinPublished || h.size > 256) {
        ++out.mismatches;
        continue;
      }
      if (verify(bytes, h)) {
        held[m] = bytes;
        held_header[m] = h;
        ++m;
      }
    }
    for (std::uint32_t k = 0; k < m; ++k) verify(held[k], held_header[k]);
  };
  while (!sh.stop_readers.load(std::memory_order_relaxed)) {
    if constexpr (Ops::kPool) {
      SmallPoolAllocator::EpochGuard guard(*ops.a);
      read_batch();
    } else {
      read_batch();
    }
  }
  asm volatile("" : : "r"(sum));
}

// ---- one run -----------------------------------------------------------------------------

struct Percentiles {
  double p50 = 0, p95 = 0, p99 = 0, p999 = 0, max = 0, mean = 0;  // nanoseconds
  std::uint64_t count = 0;
};

Percentiles percentiles(const LatencyHistogram& h, const Timer& t, bool raw = false) {
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

struct RunResult {
  Mode mode = Mode::system;
  double elapsed_s = 0;  // main phase
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

std::uint64_t deferred_backlog(const alloc::AllocatorStats& s) noexcept {
  std::uint64_t pending = 0;
  for (const auto& c : s.buckets) pending += c.deferred_pending;
  return pending;
}

template <class Ops>
void run_threads(const Config& cfg, Ops ops, const Timer& timer, RunResult& r) {
  const int writers = cfg.threads;
  Shared sh(cfg, writers + 1);
  std::vector<std::unique_ptr<WriterResult>> wres;
  for (int i = 0; i < writers; ++i) {
    wres.push_back(std::make_unique<WriterResult>());
    wres.back()->stress_alloc.resize(static_cast<std::size_t>(cfg.stress_seconds) + 1);
  }
  std::vector<ReaderResult> rres(static_cast<std::size_t>(cfg.readers));
  RssReader rss;

  std::atomic<bool> stop_service{false};
  std::atomic<std::uint64_t> rss_peak{0};
  std::thread sampler([&] {
    while (!stop_service.load(std::memory_order_relaxed)) {
      const std::uint64_t now = rss.bytes();
      if (now > rss_peak.load(std::memory_order_relaxed)) rss_peak.store(now, std::memory_order_relaxed);
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  });
  std::atomic<std::uint64_t> collected{0};
  std::thread maintenance;
  if constexpr (Ops::kPool) {
    maintenance = std::thread([&] {
      while (!stop_service.load(std::memory_order_relaxed)) {
        ops.a->advance_epoch();
        collected.fetch_add(ops.a->collect_garbage(), std::memory_order_relaxed);
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
    });
  }

  std::vector<std::thread> threads;
  for (int i = 0; i < writers; ++i) {
    threads.emplace_back([&, i] { Writer<Ops>(sh, i, ops, *wres[static_cast<std::size_t>(i)]).run(); });
  }
  std::vector<std::thread> readers;
  for (int i = 0; i < cfg.readers; ++i) {
    readers.emplace_back([&, i] { reader_main(sh, ops, i, rres[static_cast<std::size_t>(i)]); });
  }

  r.rss_start = rss.bytes();
  sh.barrier.arrive_and_wait();  // start
  if (cfg.seconds > 0) {
    std::this_thread::sleep_for(std::chrono::duration<double>(cfg.seconds));
    sh.stop_main.store(true, std::memory_order_relaxed);
  }
  sh.barrier.arrive_and_wait();  // main phase done

  if (cfg.stress_seconds > 0) {
    const auto t0 = Clock::now();
    for (int s = 1; s <= cfg.stress_seconds; ++s) {
      std::this_thread::sleep_until(t0 + std::chrono::seconds(s));
      sh.stress_second.store(static_cast<std::uint32_t>(s), std::memory_order_relaxed);
      StressSample sample;
      sample.second = s;
      sample.rss_bytes = rss.bytes();
      if constexpr (Ops::kPool) sample.deferred_backlog = deferred_backlog(ops.a->snapshot());
      r.stress_samples.push_back(sample);
    }
    sh.stop_stress.store(true, std::memory_order_relaxed);
    sh.barrier.arrive_and_wait();  // stress done
  }

  sh.stop_readers.store(true, std::memory_order_relaxed);
  for (auto& t : readers) t.join();
  sh.barrier.arrive_and_wait();  // writers free their published blocks and exit
  for (auto& t : threads) t.join();

  if constexpr (Ops::kPool) {
    stop_service.store(true, std::memory_order_relaxed);
    maintenance.join();
    // Nobody is in a read section any more: a few advances make every deferred block safe.
    for (int k = 0; k < 4; ++k) {
      ops.a->advance_epoch();
      collected.fetch_add(ops.a->collect_garbage(), std::memory_order_relaxed);
    }
  }
  stop_service.store(true, std::memory_order_relaxed);
  sampler.join();
  r.rss_end = rss.bytes();
  r.rss_peak = std::max({rss_peak.load(), r.rss_start, r.rss_end});

  // Merge.
  LatencyHistogram alloc_h, free_h, retire_h, stress_free_h;
  std::vector<LatencyHistogram> stress_alloc(static_cast<std::size_t>(cfg.stress_seconds) + 1);
  Clock::time_point start = Clock::time_point::max(), end = Clock::time_point::min();
  for (const auto& w : wres) {
    alloc_h.merge(w->alloc);
    free_h.merge(w->free);
    retire_h.merge(w->retire);
    stress_free_h.merge(w->stress_free);
    for (std::size_t s = 0; s < stress_alloc.size(); ++s) stress_alloc[s].merge(w->stress_alloc[s]);
    r.main += w->main;
    r.stress += w->stress;
    r.cleanup_frees += w->cleanup_frees;
    start = std::min(start, w->start);
    end = std::max(end, w->end);
  }
  for (const auto& rr : rres) {
    r.reads += rr.reads;
    r.read_bytes += rr.bytes;
    r.read_mismatches += rr.mismatches;
    r.read_head_changes += rr.head_changes;
  }
  r.elapsed_s = std::chrono::duration<double>(end - start).count();
  r.alloc = percentiles(alloc_h, timer);
  r.free = percentiles(free_h, timer);
  r.retire = percentiles(retire_h, timer);
  r.alloc_raw = percentiles(alloc_h, timer, true);
  r.free_raw = percentiles(free_h, timer, true);
  r.stress_free = percentiles(stress_free_h, timer);
  for (auto& sample : r.stress_samples) {
    const auto& h = stress_alloc[static_cast<std::size_t>(sample.second - 1)];
    sample.alloc_p99_ns = timer.to_ns(h.quantile(0.99));
    sample.allocs = h.count();
  }

  if constexpr (Ops::kPool) {
    const alloc::AllocatorStats s = ops.a->snapshot();
    PoolFigures f;
    f.shard_count = s.shard_count;
    f.shard_alloc_hits = s.shard_alloc_hits;
    f.shard_alloc_misses = s.shard_alloc_misses;
    f.deferred_total = s.shard_deferred_total;
    for (const auto& c : s.buckets) {
      f.deferred_reclaimed += c.deferred_reclaimed;
      f.deferred_pending_end += c.deferred_pending;
      f.allocations += c.allocations;
      f.frees += c.frees;
      f.in_use_end += c.in_use;
      f.lock_contention += c.lock_contention;
    }
    for (const auto& sh_stats : s.shards) f.cross_shard_frees += sh_stats.cross_shard_frees;
    f.fallback_allocs = s.fallback.allocs;
    f.fallback_frees = s.fallback.frees;
    f.allocations += s.fallback.allocs;
    f.frees += s.fallback.frees;
    f.epoch_advances = s.epoch.advances;
    f.epoch_current = s.epoch.current;
    f.gc_collected = collected.load();
    f.committed_bytes = s.memory.committed_bytes;
    f.returned_bytes = s.memory.returned_bytes;
    r.pool = f;
  }
}

void check(RunResult& r, bool ok, const char* fmt, ...) __attribute__((format(printf, 3, 4)));
void check(RunResult& r, bool ok, const char* fmt, ...) {
  if (ok) return;
  char buf[512];
  std::va_list args;
  va_start(args, fmt);
  std::vsnprintf(buf, sizeof buf, fmt, args);
  va_end(args);
  r.failures.emplace_back(buf);
}

// Sanity of the run itself and of the allocator's own accounting.
void check_run(const Config& cfg, RunResult& r) {
  PhaseCounters all = r.main;
  all += r.stress;
  const std::uint64_t frees = all.frees + r.cleanup_frees;
  check(r, r.main.allocs > 0 && r.main.frees > 0, "no operations in the main phase");
  check(r, all.alloc_failures == 0, "%" PRIu64 " allocations returned nullptr", all.alloc_failures);
  check(r, all.allocs == frees + all.retires,
        "allocations %" PRIu64 " != frees %" PRIu64 " + retires %" PRIu64, all.allocs, frees, all.retires);
  check(r, all.handed == all.received, "blocks handed over %" PRIu64 " != received %" PRIu64, all.handed,
        all.received);
  check(r, all.corrupt_blocks == 0, "%" PRIu64 " blocks changed while their owner held them",
        all.corrupt_blocks);
  check(r, r.read_mismatches == 0,
        "%" PRIu64 " reads saw bytes 16.. of a published block change: reused before its readers left",
        r.read_mismatches);
  check(r, r.read_head_changes == 0,
        "%" PRIu64
        " reads saw the first 16 bytes of a retired block change while it could still be read "
        "(retire() must not write into the block before its epoch has passed)",
        r.read_head_changes);
  if (cfg.readers > 0) check(r, r.reads > 0, "readers read nothing");
  if (cfg.stress_seconds > 0) check(r, r.stress.rounds > 0, "no stress rounds completed");
  if (cfg.threads > 1 && cfg.remote_free_percent > 0)
    check(r, all.handed > 0, "no cross-thread frees happened");
  if (!r.pool) return;
  const PoolFigures& f = *r.pool;
  check(r, f.allocations == all.allocs, "allocator counted %" PRIu64 " allocations, the bench made %" PRIu64,
        f.allocations, all.allocs);
  check(r, f.frees == frees + all.retires, "allocator counted %" PRIu64 " frees, the bench made %" PRIu64,
        f.frees, frees + all.retires);
  check(r, f.in_use_end == 0, "%" PRIu64 " blocks still in use after everything was freed", f.in_use_end);
  check(r, f.deferred_pending_end == 0, "deferred backlog of %" PRIu64 " blocks after the final collection",
        f.deferred_pending_end);
  const bool small_sizes = cfg.sizes.kind != SizeKind::fixed || cfg.sizes.fixed <= alloc::kMaxSmallSize;
  if (r.mode == Mode::sharded && small_sizes) {
    check(r, f.shard_alloc_hits > 0, "sharded mode but no shard allocation hits");
    if (f.shard_count > 1 && all.handed > 0) {
      check(r, f.deferred_total > 0, "cross-shard frees happened but nothing was deferred");
    }
  }
}

RunResult run_one(const Config& cfg, Mode mode, const Timer& timer) {
  RunResult r;
  r.mode = mode;
  if (mode == Mode::system) {
    run_threads(cfg, SystemOps{}, timer, r);
  } else {
    alloc::Options options;
    options.mode = mode;
    options.shards = cfg.shard_count();
    auto pool = std::make_unique<SmallPoolAllocator>(options);
    run_threads(cfg, PoolOps{pool.get()}, timer, r);
  }
  check_run(cfg, r);
  return r;
}

// ---- output ------------------------------------------------------------------------------

std::string fmt(const char* f, ...) __attribute__((format(printf, 1, 2)));
std::string fmt(const char* f, ...) {
  char buf[256];
  std::va_list args;
  va_start(args, f);
  std::vsnprintf(buf, sizeof buf, f, args);
  va_end(args);
  return buf;
}

std::string mib(std::uint64_t bytes) {
  return fmt("%.1f", static_cast<double>(bytes) / (1024.0 * 1024.0));
}

std::string config_line(const Config& cfg) {
  std::string work = cfg.seconds > 0 ? fmt("seconds=%g", cfg.seconds) : fmt("ops/thread=%" PRIu64, cfg.ops);
  return fmt("threads=%d readers=%d shards=%d %s sizes=%s remote-free=%d%% live=%u stress=%ds seed=%" PRIu64,
             cfg.threads, cfg.readers, cfg.shard_count(), work.c_str(), cfg.sizes.text().c_str(),
             cfg.remote_free_percent, cfg.live, cfg.stress_seconds, cfg.seed);
}

// One row: label, then each run's figure, with "(0.42x)" against the system run when
// there is one and several runs are shown.
struct Row {
  std::string label;
  std::vector<std::string> cells;
};

void print_table(const std::vector<Row>& rows, const std::vector<std::string>& header) {
  std::size_t label_w = 0;
  std::vector<std::size_t> w(header.size(), 0);
  for (std::size_t i = 0; i < header.size(); ++i) w[i] = header[i].size();
  for (const auto& row : rows) {
    label_w = std::max(label_w, row.label.size());
    for (std::size_t i = 0; i < row.cells.size(); ++i) w[i] = std::max(w[i], row.cells[i].size());
  }
  std::printf("%-*s", static_cast<int>(label_w), "");
  for (std::size_t i = 0; i < header.size(); ++i)
    std::printf("  %*s", static_cast<int>(w[i]), header[i].c_str());
  std::printf("\n");
  for (const auto& row : rows) {
    std::printf("%-*s", static_cast<int>(label_w), row.label.c_str());
    for (std::size_t i = 0; i < row.cells.size(); ++i) {
      std::printf("  %*s", static_cast<int>(w[i]), row.cells[i].c_str());
    }
    std::printf("\n");
  }
}

void print_human(const Config& cfg, const Timer& timer, const std::vector<RunResult>& runs) {
  std::printf("bench_alloc: %s\n", config_line(cfg).c_str());
  std::printf(
      "timer: TSC %.3f ticks/ns; overhead %" PRIu64
      " cycles = %.1f ns (median of an empty rdtsc pair),\n"
      "       subtracted from every latency below (its mean, %.1f cycles, from the means; clamped at 0);\n"
      "       per-call latency from a log-linear histogram (bucket midpoints, <= 3%% error)\n",
      timer.ticks_per_ns, timer.overhead_cycles, timer.overhead_ns(), timer.overhead_mean_cycles);
  if (timer.resolution_cycles > 1) {
    std::printf("       the TSC moves in steps of %" PRIu64
                " cycles = %.1f ns here: single calls are measured in\n"
                "       whole steps, so percentiles below a few steps are coarse; means resolve finer\n",
                timer.resolution_cycles, timer.resolution_ns());
  }
  std::printf("\n");

  const RunResult* sys = nullptr;
  for (const auto& r : runs) {
    if (r.mode == Mode::system) sys = &r;
  }
  const bool ratios = sys != nullptr && runs.size() > 1;
  std::vector<std::string> header;
  for (const auto& r : runs) header.emplace_back(alloc::to_string(r.mode));

  std::vector<Row> rows;
  auto add = [&](const std::string& label, auto value, auto text, bool with_ratio) {
    Row row{label, {}};
    for (const auto& r : runs) {
      std::string cell = text(r);
      if (with_ratio && ratios && &r != sys) {
        const double base = value(*sys);
        cell += base > 0 ? fmt(" (%.2fx)", value(r) / base) : std::string(" (n/a)");
      }
      row.cells.push_back(cell);
    }
    rows.push_back(std::move(row));
  };
  auto num = [&](const std::string& label, auto value, const char* f, bool with_ratio) {
    add(
        label, value, [&](const RunResult& r) { return fmt(f, static_cast<double>(value(r))); }, with_ratio);
  };
  auto count = [&](const std::string& label, auto value) {
    add(
        label, value,
        [&](const RunResult& r) { return fmt("%" PRIu64, static_cast<std::uint64_t>(value(r))); }, false);
  };
  auto pool_count = [&](const std::string& label, auto value) {
    add(
        label, [](const RunResult&) { return 0.0; },
        [&](const RunResult& r) { return r.pool ? fmt("%" PRIu64, value(*r.pool)) : std::string("-"); },
        false);
  };

  num(
      "elapsed main phase (s)", [](const RunResult& r) { return r.elapsed_s; }, "%.3f", false);
  num(
      "throughput (Mops/s, allocs+frees)", [](const RunResult& r) { return r.ops_per_s() / 1e6; }, "%.2f",
      true);
  struct Op {
    const char* name;
    Percentiles RunResult::*field;
  };
  for (const Op op : {Op{"alloc", &RunResult::alloc}, Op{"free", &RunResult::free}}) {
    const std::pair<const char*, double Percentiles::*> ps[] = {
        {"p50", &Percentiles::p50},   {"p95", &Percentiles::p95}, {"p99", &Percentiles::p99},
        {"p999", &Percentiles::p999}, {"max", &Percentiles::max}, {"mean", &Percentiles::mean}};
    for (const auto& p : ps) {
      const auto op_field = op.field;
      const auto p_field = p.second;
      num(
          fmt("%s %s (ns)", op.name, p.first), [=](const RunResult& r) { return (r.*op_field).*p_field; },
          "%.1f", true);
    }
  }
  if (cfg.readers > 0) {
    for (const auto& p : {std::pair{"p50", &Percentiles::p50}, std::pair{"p99", &Percentiles::p99}}) {
      const auto field = p.second;
      add(
          fmt("retire %s (ns)", p.first), [](const RunResult&) { return 0.0; },
          [=](const RunResult& r) {
            return r.retire.count ? fmt("%.1f", r.retire.*field) : std::string("-");
          },
          false);
    }
    count("reads", [](const RunResult& r) { return r.reads; });
    count("read mismatches (bytes 16..)", [](const RunResult& r) { return r.read_mismatches; });
    count("read head changes (bytes 0..15)", [](const RunResult& r) { return r.read_head_changes; });
    count("retires", [](const RunResult& r) { return r.main.retires; });
  }
  count("allocations (main)", [](const RunResult& r) { return r.main.allocs; });
  count("frees (main)", [](const RunResult& r) { return r.main.frees; });
  count("cross-thread frees (main)", [](const RunResult& r) { return r.main.handed; });
  count("handoff ring full (waited)", [](const RunResult& r) { return r.main.handoff_full; });
  pool_count("deferred (shard_deferred_total)", [](const PoolFigures& f) { return f.deferred_total; });
  pool_count("deferred reclaimed", [](const PoolFigures& f) { return f.deferred_reclaimed; });
  pool_count("deferred backlog at end", [](const PoolFigures& f) { return f.deferred_pending_end; });
  pool_count("fallback allocs", [](const PoolFigures& f) { return f.fallback_allocs; });
  pool_count("fallback frees", [](const PoolFigures& f) { return f.fallback_frees; });
  pool_count("shard alloc hits", [](const PoolFigures& f) { return f.shard_alloc_hits; });
  pool_count("shard alloc misses", [](const PoolFigures& f) { return f.shard_alloc_misses; });
  pool_count("lock contention", [](const PoolFigures& f) { return f.lock_contention; });
  pool_count("epoch advances", [](const PoolFigures& f) { return f.epoch_advances; });
  pool_count("gc collected", [](const PoolFigures& f) { return f.gc_collected; });
  add(
      "RSS start / peak / end (MiB; x: peak)",
      [](const RunResult& r) { return static_cast<double>(r.rss_peak); },
      [](const RunResult& r) { return mib(r.rss_start) + " / " + mib(r.rss_peak) + " / " + mib(r.rss_end); },
      true);
  if (cfg.stress_seconds > 0) {
    count("stress rounds", [](const RunResult& r) { return r.stress.rounds; });
    num(
        "stress free p99 (ns)", [](const RunResult& r) { return r.stress_free.p99; }, "%.1f", true);
    add(
        "stress RSS first -> last s (MiB)", [](const RunResult&) { return 0.0; },
        [](const RunResult& r) {
          if (r.stress_samples.empty()) return std::string("-");
          return mib(r.stress_samples.front().rss_bytes) + " -> " + mib(r.stress_samples.back().rss_bytes);
        },
        false);
    add(
        "stress alloc p99 first -> last s (ns)", [](const RunResult&) { return 0.0; },
        [](const RunResult& r) {
          if (r.stress_samples.empty()) return std::string("-");
          return fmt("%.1f -> %.1f", r.stress_samples.front().alloc_p99_ns,
                     r.stress_samples.back().alloc_p99_ns);
        },
        false);
  }
  print_table(rows, header);
  if (ratios) std::printf("(x) = ratio to system in this run\n");

  for (const auto& r : runs) {
    if (r.stress_samples.empty()) continue;
    std::printf("\nstress, %s: per second\n", std::string(alloc::to_string(r.mode)).c_str());
    std::printf("  %6s  %10s  %16s  %14s  %12s\n", "second", "RSS MiB", "deferred backlog", "alloc p99 ns",
                "allocs");
    for (const auto& s : r.stress_samples) {
      std::printf("  %6d  %10s  %16s  %14.1f  %12" PRIu64 "\n", s.second, mib(s.rss_bytes).c_str(),
                  s.deferred_backlog ? fmt("%" PRIu64, *s.deferred_backlog).c_str() : "-", s.alloc_p99_ns,
                  s.allocs);
    }
  }

  if (ratios) {
    std::printf("\n");
    const std::pair<const char*, double Percentiles::*> ps[] = {
        {"p50", &Percentiles::p50}, {"p99", &Percentiles::p99}, {"p999", &Percentiles::p999}};
    for (const char* op : {"alloc", "free"}) {
      for (const auto& [pname, pfield] : ps) {
        std::printf("%s %s:", pname, op);
        const char* sep = " ";
        for (const auto& r : runs) {
          if (&r == sys) continue;
          const Percentiles& mine = std::string_view(op) == "alloc" ? r.alloc : r.free;
          const Percentiles& base = std::string_view(op) == "alloc" ? sys->alloc : sys->free;
          if (base.*pfield > 0) {
            std::printf("%s%s %.2fx of system", sep, std::string(alloc::to_string(r.mode)).c_str(),
                        mine.*pfield / base.*pfield);
          } else {
            std::printf("%s%s n/a (system is 0 ns)", sep, std::string(alloc::to_string(r.mode)).c_str());
          }
          sep = ", ";
        }
        std::printf("\n");
      }
    }
    std::printf("throughput:");
    const char* sep = " ";
    for (const auto& r : runs) {
      if (&r == sys) continue;
      std::printf("%s%s %.2fx of system", sep, std::string(alloc::to_string(r.mode)).c_str(),
                  sys->ops_per_s() > 0 ? r.ops_per_s() / sys->ops_per_s() : 0.0);
      sep = ", ";
    }
    std::printf("\n");
  }
}

// A minimal JSON writer: objects, arrays, numbers, strings, null. Commas are inserted by depth.
class Json {
 public:
  void begin_object(const char* key = nullptr) { open(key, '{'); }
  void end_object() { close('}'); }
  void begin_array(const char* key = nullptr) { open(key, '['); }
  void end_array() { close(']'); }
  void value(const char* key, std::uint64_t v) { emit(key, fmt("%" PRIu64, v)); }
  void value(const char* key, int v) { emit(key, fmt("%d", v)); }
  void value(const char* key, double v) {
    emit(key, std::isfinite(v) ? fmt("%.6g", v) : std::string("null"));
  }
  void value(const char* key, bool v) { emit(key, v ? "true" : "false"); }
  void value(const char* key, std::string_view v) { emit(key, quote(v)); }
  void value(const char* key, const char* v) { emit(key, quote(v)); }
  void null(const char* key) { emit(key, "null"); }
  const std::string& str() const { return out_; }

 private:
  static std::string quote(std::string_view s) {
    std::string q = "\"";
    for (const char c : s) {
      if (c == '"' || c == '\\') {
        q += '\\';
        q += c;
      } else if (static_cast<unsigned char>(c) < 0x20) {
        q += fmt("\\u%04x", static_cast<unsigned>(static_cast<unsigned char>(c)));
      } else {
        q += c;
      }
    }
    return q + "\"";
  }
  void prefix(const char* key) {
    if (!first_.empty()) {
      if (!first_.back()) out_ += ',';
      first_.back() = false;
    }
    if (key != nullptr) out_ += quote(key) + ':';
  }
  void emit(const char* key, const std::string& text) {
    prefix(key);
    out_ += text;
  }
  void open(const char* key, char c) {
    prefix(key);
    out_ += c;
    first_.push_back(true);
  }
  void close(char c) {
    out_ += c;
    first_.pop_back();
  }
  std::string out_;
  std::vector<bool> first_;
};

void json_percentiles(Json& j, const char* key, const Percentiles& p) {
  j.begin_object(key);
  j.value("p50", p.p50);
  j.value("p95", p.p95);
  j.value("p99", p.p99);
  j.value("p999", p.p999);
  j.value("max", p.max);
  j.value("mean", p.mean);
  j.value("count", p.count);
  j.end_object();
}

void json_counters(Json& j, const char* key, const PhaseCounters& c) {
  j.begin_object(key);
  j.value("allocs", c.allocs);
  j.value("frees", c.frees);
  j.value("cross_thread_frees", c.handed);
  j.value("handoff_full", c.handoff_full);
  j.value("retires", c.retires);
  j.value("alloc_failures", c.alloc_failures);
  j.value("corrupt_blocks", c.corrupt_blocks);
  j.value("rounds", c.rounds);
  j.end_object();
}

std::string to_json(const Config& cfg, const Timer& timer, const std::vector<RunResult>& runs, bool ok) {
  Json j;
  j.begin_object();
  j.value("bench", "bench_alloc");
  j.value("version", 1);
  j.value("ok", ok);
  const char* preload = std::getenv("LD_PRELOAD");
  if (preload != nullptr) {
    j.value("ld_preload", preload);
  } else {
    j.null("ld_preload");
  }
  j.begin_object("config");
  j.value("threads", cfg.threads);
  j.value("readers", cfg.readers);
  j.value("shards", cfg.shard_count());
  if (cfg.seconds > 0) {
    j.null("ops_per_thread");
    j.value("seconds", cfg.seconds);
  } else {
    j.value("ops_per_thread", cfg.ops);
    j.null("seconds");
  }
  j.value("sizes", cfg.sizes.text());
  j.value("remote_free_percent", cfg.remote_free_percent);
  j.value("live", std::uint64_t{cfg.live});
  j.value("stress_seconds", cfg.stress_seconds);
  j.value("seed", cfg.seed);
  j.value("smoke", cfg.smoke);
  j.end_object();
  j.begin_object("timer");
  j.value("tsc_ticks_per_ns", timer.ticks_per_ns);
  j.value("overhead_cycles", timer.overhead_cycles);
  j.value("overhead_ns", timer.overhead_ns());
  j.value("overhead_mean_cycles", timer.overhead_mean_cycles);
  j.value("resolution_cycles", timer.resolution_cycles);
  j.value("resolution_ns", timer.resolution_ns());
  j.value("overhead_subtracted", true);
  j.end_object();
  j.begin_array("runs");
  for (const auto& r : runs) {
    j.begin_object();
    j.value("allocator", alloc::to_string(r.mode));
    j.value("elapsed_s", r.elapsed_s);
    j.value("ops_per_s", r.ops_per_s());
    json_percentiles(j, "alloc_ns", r.alloc);
    json_percentiles(j, "free_ns", r.free);
    json_percentiles(j, "retire_ns", r.retire);
    json_percentiles(j, "alloc_ns_raw", r.alloc_raw);
    json_percentiles(j, "free_ns_raw", r.free_raw);
    json_counters(j, "main", r.main);
    json_counters(j, "stress", r.stress);
    j.value("cleanup_frees", r.cleanup_frees);
    j.value("reads", r.reads);
    j.value("read_bytes", r.read_bytes);
    j.value("read_mismatches", r.read_mismatches);
    j.value("read_head_changes", r.read_head_changes);
    j.value("rss_start_bytes", r.rss_start);
    j.value("rss_peak_bytes", r.rss_peak);
    j.value("rss_end_bytes", r.rss_end);
    if (r.pool) {
      const PoolFigures& f = *r.pool;
      j.begin_object("pool");
      j.value("shard_count", std::uint64_t{f.shard_count});
      j.value("shard_alloc_hits", f.shard_alloc_hits);
      j.value("shard_alloc_misses", f.shard_alloc_misses);
      j.value("shard_deferred_total", f.deferred_total);
      j.value("deferred_reclaimed", f.deferred_reclaimed);
      j.value("deferred_pending_end", f.deferred_pending_end);
      j.value("fallback_allocs", f.fallback_allocs);
      j.value("fallback_frees", f.fallback_frees);
      j.value("allocations", f.allocations);
      j.value("frees", f.frees);
      j.value("in_use_end", f.in_use_end);
      j.value("cross_shard_frees", f.cross_shard_frees);
      j.value("lock_contention", f.lock_contention);
      j.value("epoch_advances", f.epoch_advances);
      j.value("epoch_current", f.epoch_current);
      j.value("gc_collected", f.gc_collected);
      j.value("committed_bytes", f.committed_bytes);
      j.value("returned_bytes", f.returned_bytes);
      j.end_object();
    } else {
      j.null("pool");
    }
    j.begin_object("stress_summary");
    json_percentiles(j, "free_ns", r.stress_free);
    if (!r.stress_samples.empty()) {
      const auto& a = r.stress_samples.front();
      const auto& b = r.stress_samples.back();
      j.value("rss_drift_bytes", static_cast<double>(b.rss_bytes) - static_cast<double>(a.rss_bytes));
      j.value("alloc_p99_drift", a.alloc_p99_ns > 0 ? b.alloc_p99_ns / a.alloc_p99_ns : 0.0);
    }
    j.end_object();
    j.begin_array("stress_samples");
    for (const auto& s : r.stress_samples) {
      j.begin_object();
      j.value("second", s.second);
      j.value("rss_bytes", s.rss_bytes);
      if (s.deferred_backlog) {
        j.value("deferred_backlog", *s.deferred_backlog);
      } else {
        j.null("deferred_backlog");
      }
      j.value("alloc_p99_ns", s.alloc_p99_ns);
      j.value("allocs", s.allocs);
      j.end_object();
    }
    j.end_array();
    j.begin_array("failures");
    for (const auto& f : r.failures) j.value(nullptr, f);
    j.end_array();
    j.end_object();
  }
  j.end_array();
  j.end_object();
  return j.str();
}

}  // namespace
}  // namespace sydra::bench

int main(int argc, char** argv) {
  using namespace sydra::bench;
  const Config cfg = parse_args(argc, argv);
  const Timer timer = calibrate_timer();

  std::vector<Mode> modes;
  if (cfg.allocator) {
    modes.push_back(*cfg.allocator);
  } else {
    modes = {Mode::sharded, Mode::legacy, Mode::system};
  }
  std::vector<RunResult> runs;
  for (const Mode m : modes) runs.push_back(run_one(cfg, m, timer));

  bool ok = true;
  for (const auto& r : runs) {
    for (const auto& f : r.failures) {
      std::fprintf(stderr, "bench_alloc: FAILED (%s): %s\n",
                   std::string(sydra::alloc::to_string(r.mode)).c_str(), f.c_str());
      ok = false;
    }
  }
  if (cfg.json) {
    std::printf("%s\n", to_json(cfg, timer, runs, ok).c_str());
  } else {
    print_human(cfg, timer, runs);
    if (cfg.smoke) std::printf("\nsmoke: %s\n", ok ? "ok" : "FAILED");
  }
  return ok ? 0 : 1;
}
