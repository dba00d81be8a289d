// bench_alloc's command line, and the small shared helpers of bench_alloc.hpp.
#include <dlfcn.h>
#include <cerrno>
#include <cinttypes>
#include <cstdarg>

#include "bench_alloc.hpp"

namespace sydra::bench {

std::string_view to_string(Workload w) noexcept {
  switch (w) {
    case Workload::adr:
      return "adr";
    case Workload::single:
      return "single";
    case Workload::xmalloc:
      return "xmalloc";
    case Workload::larson:
      return "larson";
    case Workload::cache_scratch:
      return "cache-scratch";
  }
  return "?";
}

const char* path_name(std::size_t id) noexcept {
  static constexpr const char* kNames[kPathCount] = {"fast",
#define SYDRA_X(name) #name,
                                                     SYDRA_PATH_STATS(SYDRA_X)
#undef SYDRA_X
  };
  return id < kPathCount ? kNames[id] : "?";
}

std::size_t PathProbe::classify() const noexcept {
  if (live_ == nullptr) return 0;
  const alloc::PathStats& now = *live_;
  // The most telling counter that moved: a refill that needed a new slab also counts as
  // alloc_slab, a depot push that overflowed also as free_depot, a hand-off follows a
  // remote free.
  std::size_t id = 1;
  std::size_t best = 0;
  int best_rank = -1;
  auto consider = [&](std::uint64_t after, std::uint64_t before, int rank) {
    if (after != before && rank > best_rank) {
      best_rank = rank;
      best = id;
    }
    ++id;
  };
  consider(now.alloc_swap, before_.alloc_swap, 1);
  consider(now.alloc_depot, before_.alloc_depot, 2);
  consider(now.alloc_reclaim, before_.alloc_reclaim, 3);
  consider(now.alloc_slab, before_.alloc_slab, 5);
  consider(now.alloc_new_slab, before_.alloc_new_slab, 6);
  consider(now.alloc_epoch_step, before_.alloc_epoch_step, 4);
  consider(now.alloc_other, before_.alloc_other, 0);
  consider(now.free_swap, before_.free_swap, 1);
  consider(now.free_depot, before_.free_depot, 3);
  consider(now.free_depot_full, before_.free_depot_full, 4);
  consider(now.free_remote, before_.free_remote, 0);
  consider(now.free_handoff, before_.free_handoff, 2);
  consider(now.free_other, before_.free_other, 0);
  static_assert(kPathCount == 14, "a path was added to SYDRA_PATH_STATS: rank it here");
  return best;
}

const alloc::PathStats* SystemOps::paths() const noexcept {
  using Fn = const void* (*)();
  static const Fn fn = reinterpret_cast<Fn>(::dlsym(RTLD_DEFAULT, "sydra_alloc_thread_paths"));
  return fn != nullptr ? static_cast<const alloc::PathStats*>(fn()) : nullptr;
}

PoolFigures pool_figures(const alloc::AllocatorStats& s, std::uint64_t collected) {
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
  for (const auto& sh : s.shards) f.cross_shard_frees += sh.cross_shard_frees;
  f.fallback_allocs = s.fallback.allocs;
  f.fallback_frees = s.fallback.frees;
  f.allocations += s.fallback.allocs;
  f.frees += s.fallback.frees;
  f.epoch_advances = s.epoch.advances;
  f.epoch_current = s.epoch.current;
  f.gc_collected = collected;
  f.committed_bytes = s.memory.committed_bytes;
  f.returned_bytes = s.memory.returned_bytes;
  return f;
}

namespace {

constexpr std::string_view kUsage = R"(usage: bench_alloc [options]
  --workload=adr|single|xmalloc|larson|cache-scratch   what to run (default adr; see below)
  --allocator=sharded|legacy|system   one allocator (default: all three in turn, side by side)
  --shards N               shards for sharded/legacy (default: one per writer thread, at most 64)
  --foreign-frees=owner|local   where the pool puts a block freed by another shard's thread:
                           owner (the ADR's rule, default) or local (the freeing thread's
                           bin; docs/allocator.md, "The owner rule, measured")
  --threads N              writer threads (default 2)
  --readers N              reader threads inside epoch sections (default 0)
  --ops N                  allocations per writer thread (default 1000000)
  --seconds S              run the main phase for S seconds instead of --ops
  --remote-free-percent P  share of blocks freed by another writer thread (default 30)
  --sizes=uniform|tsdb|fixed:N   request sizes over 16..256 B (default tsdb)
  --live N                 blocks each writer keeps live (default 1024)
  --stress-seconds S       churn phase with per-second RSS, deferred backlog, alloc p99 (default 0)
  --paths                  attribute every timed call to the allocator path it took and
                           report latency by path (slower: counters are read around calls)
  --json                   one JSON object on stdout
  --smoke                  tiny run of all three allocators with sanity checks (ctest)
  --seed N                 workload seed (default 1)

workloads:
  adr            writers keep --live blocks in a ring and free the oldest, --remote-free-percent
                 of them on another writer; --readers in epoch sections; --stress-seconds churn
  single         adr with one thread and no remote frees: the fast paths alone
  xmalloc        producer -> consumer: --threads/2 threads allocate, as many free what they
                 are handed (every free is cross-thread); RSS sampled every 100 ms
  larson         generations of --threads threads; each inherits the previous generation's
                 --live blocks per thread, replaces random ones, and exits
  cache-scratch  false sharing: each thread frees a block the main thread allocated, then
                 allocates, writes 64 times and frees a small block over and over
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

}  // namespace

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
    } else if (arg == "--workload") {
      const std::string v = take();
      if (v == "adr") {
        cfg.workload = Workload::adr;
      } else if (v == "single") {
        cfg.workload = Workload::single;
      } else if (v == "xmalloc") {
        cfg.workload = Workload::xmalloc;
      } else if (v == "larson") {
        cfg.workload = Workload::larson;
      } else if (v == "cache-scratch") {
        cfg.workload = Workload::cache_scratch;
      } else {
        usage_error("--workload: expected adr, single, xmalloc, larson or cache-scratch, got '%s'",
                    v.c_str());
      }
    } else if (arg == "--paths") {
      flag();
      cfg.paths = true;
    } else if (arg == "--allocator") {
      const std::string v = take();
      Mode m;
      if (!alloc::parse_mode(v, m))
        usage_error("--allocator: expected sharded, legacy or system, got '%s'", v.c_str());
      cfg.allocator = m;
    } else if (arg == "--foreign-frees") {
      const std::string v = take();
      if (v == "owner") {
        cfg.foreign_frees = alloc::ForeignFrees::to_owner;
      } else if (v == "local") {
        cfg.foreign_frees = alloc::ForeignFrees::cache_locally;
      } else {
        usage_error("--foreign-frees: expected owner or local, got '%s'", v.c_str());
      }
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
  if (cfg.workload == Workload::single) {
    cfg.threads = 1;
    cfg.remote_free_percent = 0;
    cfg.readers = 0;
  }
  if (cfg.workload == Workload::xmalloc && cfg.threads < 2)
    usage_error("--workload=xmalloc needs --threads >= 2");
  if (cfg.workload != Workload::adr && cfg.workload != Workload::single &&
      (cfg.readers > 0 || cfg.stress_seconds > 0))
    usage_error("--readers and --stress-seconds belong to the adr workload");
  if (cfg.smoke) {
    const bool adr = cfg.workload == Workload::adr;
    cfg.allocator.reset();
    cfg.threads = cfg.workload == Workload::single ? 1 : 2;
    cfg.shards = 0;
    cfg.readers = adr ? 1 : 0;
    cfg.ops = 20'000;
    cfg.seconds = 0;
    cfg.live = 256;
    cfg.stress_seconds = adr ? 1 : 0;
  }
  return cfg;
}

}  // namespace sydra::bench
