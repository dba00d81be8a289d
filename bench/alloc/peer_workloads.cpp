// The peer suite's workloads, after the classic allocator benchmarks, each timed per call
// like the ADR mix (support/tsc_timer.hpp) and attributed to paths with --paths:
//
//   xmalloc        (after xmalloc-test) producer -> consumer. Pairs of threads: the producer
//                  allocates blocks, writes them and passes them through a bounded ring; the
//                  consumer checks and frees them. Every free is a cross-thread free, and no
//                  block ever comes back to its producer's cache by itself: the allocator
//                  must return it. RSS is sampled every 100 ms: it must stay bounded.
//   larson         (after Larson and Krishnan's server benchmark) generations of threads;
//                  each thread inherits an array of --live blocks the previous generation
//                  allocated, replaces random ones (free the old, allocate a new one of a
//                  random size) and exits. Objects outlive their threads; threads churn.
//   cache-scratch  (after Hoard's cache-scratch) passive false sharing: the main thread
//                  allocates one small block per thread and hands them out; each thread
//                  frees it, then allocates a block of the same size, writes it 64 times
//                  and frees it, over and over. An allocator that hands two threads blocks
//                  in one cache line makes their writes fight over it: throughput shows it.
#include <cstring>
#include <mutex>

#include "bench_alloc.hpp"

namespace sydra::bench {
namespace {

// Per-thread results, merged by the caller.
struct ThreadResult {
  LatencyHistogram alloc, free;
  PathTables paths;
  PhaseCounters counters;
  Clock::time_point start, end;
};

// Runs until the deadline or until `ops` allocations were made.
class Budget {
 public:
  explicit Budget(const Config& cfg)
      : by_clock_(cfg.seconds > 0),
        ops_(cfg.ops),
        deadline_(Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                     std::chrono::duration<double>(cfg.seconds > 0 ? cfg.seconds : 0))) {}
  bool more(std::uint64_t done) const noexcept {
    if (by_clock_) return (done & 255) != 0 || Clock::now() < deadline_;
    return done < ops_;
  }

 private:
  bool by_clock_;
  std::uint64_t ops_;
  Clock::time_point deadline_;
};

void touch(const Block& b) noexcept {
  auto* bytes = static_cast<unsigned char*>(b.p);
  bytes[0] = static_cast<unsigned char>(b.tag);
  bytes[b.size - 1] = static_cast<unsigned char>(b.tag);
}
bool intact(const Block& b) noexcept {
  const auto* bytes = static_cast<const unsigned char*>(b.p);
  return bytes[0] == static_cast<unsigned char>(b.tag) &&
         bytes[b.size - 1] == static_cast<unsigned char>(b.tag);
}

void merge_into(RunResult& r, const std::vector<std::unique_ptr<ThreadResult>>& results, const Timer& timer) {
  LatencyHistogram alloc_h, free_h;
  Clock::time_point start = Clock::time_point::max(), end = Clock::time_point::min();
  for (const auto& t : results) {
    alloc_h.merge(t->alloc);
    free_h.merge(t->free);
    r.paths.merge(t->paths);
    r.main += t->counters;
    start = std::min(start, t->start);
    end = std::max(end, t->end);
  }
  r.elapsed_s = std::chrono::duration<double>(end - start).count();
  r.alloc = percentiles(alloc_h, timer);
  r.free = percentiles(free_h, timer);
  r.alloc_raw = percentiles(alloc_h, timer, true);
  r.free_raw = percentiles(free_h, timer, true);
}

}  // namespace

template <class Ops>
void run_xmalloc(const Config& cfg, Ops ops, const Timer& timer, RunResult& r) {
  const int pairs = std::max(1, cfg.threads / 2);
  const auto shards = static_cast<std::uint32_t>(cfg.shard_count());
  std::vector<std::unique_ptr<HandoffRing>> rings;
  std::vector<std::unique_ptr<ThreadResult>> results;
  for (int i = 0; i < pairs; ++i) {
    rings.push_back(std::make_unique<HandoffRing>());
    results.push_back(std::make_unique<ThreadResult>());  // producer i
    results.push_back(std::make_unique<ThreadResult>());  // consumer i
  }
  std::vector<std::atomic<bool>> done(static_cast<std::size_t>(pairs));
  Harness<Ops> harness(ops, r);
  std::vector<std::thread> threads;
  for (int i = 0; i < pairs; ++i) {
    threads.emplace_back([&, i] {  // the producer
      ThreadResult& out = *results[static_cast<std::size_t>(2 * i)];
      ops.bind(static_cast<std::uint32_t>(i) % shards);
      TimedCalls timed{&out.alloc, &out.free, cfg.paths ? &out.paths : nullptr, {}};
      Rng rng(cfg.seed * 7919 + static_cast<std::uint64_t>(i));
      SizeTable sizes(cfg.sizes, cfg.seed + static_cast<std::uint64_t>(i));
      HandoffRing& ring = *rings[static_cast<std::size_t>(i)];
      const Budget budget(cfg);
      out.start = Clock::now();
      for (std::uint64_t n = 0; budget.more(n); ++n) {
        const std::uint32_t size = sizes.at(rng.next());
        void* p = timed.allocate(ops, size);
        if (p == nullptr) {
          ++out.counters.alloc_failures;
          continue;
        }
        ++out.counters.allocs;
        const Block b{p, size, static_cast<std::uint32_t>(n & 0xff)};
        touch(b);
        if (!ring.push(b)) {
          ++out.counters.handoff_full;
          do std::this_thread::yield();
          while (!ring.push(b));
        }
        ++out.counters.handed;
      }
      out.end = Clock::now();
      done[static_cast<std::size_t>(i)].store(true, std::memory_order_release);
    });
    threads.emplace_back([&, i] {  // the consumer
      ThreadResult& out = *results[static_cast<std::size_t>(2 * i + 1)];
      ops.bind(static_cast<std::uint32_t>(pairs + i) % shards);
      TimedCalls timed{&out.alloc, &out.free, cfg.paths ? &out.paths : nullptr, {}};
      HandoffRing& ring = *rings[static_cast<std::size_t>(i)];
      out.start = Clock::now();
      for (;;) {
        const bool last = done[static_cast<std::size_t>(i)].load(std::memory_order_acquire);
        Block b;
        std::uint32_t got = 0;
        while (ring.pop(b)) {
          if (!intact(b)) ++out.counters.corrupt_blocks;
          timed.deallocate(ops, b.p);
          ++out.counters.frees;
          ++out.counters.received;
          ++got;
        }
        if (last && got == 0) break;  // nothing can be pushed after the producer finished
        if (got == 0) std::this_thread::yield();
      }
      out.end = Clock::now();
    });
  }
  for (auto& t : threads) t.join();
  harness.finish();
  merge_into(r, results, timer);
}

template <class Ops>
void run_larson(const Config& cfg, Ops ops, const Timer& timer, RunResult& r) {
  const int threads = cfg.threads;
  const std::size_t slots = cfg.live;
  // Each array holds a thread's blocks; generation g's thread i takes array (i + g) % T,
  // so blocks move between thread indices as well as between threads.
  std::vector<std::vector<Block>> arrays(static_cast<std::size_t>(threads));
  {
    Rng rng(cfg.seed);
    SizeTable sizes(cfg.sizes, cfg.seed);
    for (auto& a : arrays) {
      a.resize(slots);
      for (std::size_t k = 0; k < slots; ++k) {
        const std::uint32_t size = sizes.at(rng.next());
        a[k] = Block{ops.allocate(size), size, static_cast<std::uint32_t>(k & 0xff)};
        if (a[k].p == nullptr) std::abort();
        touch(a[k]);
      }
    }
  }
  const std::uint64_t setup_allocs = static_cast<std::uint64_t>(threads) * slots;
  // A generation replaces about 4 x --live blocks per thread, then its threads exit.
  const std::uint64_t per_generation = 4 * slots;
  std::vector<std::unique_ptr<ThreadResult>> results;
  Harness<Ops> harness(ops, r);
  const Budget budget(cfg);
  std::uint64_t total = 0;
  const auto start = Clock::now();
  for (std::uint64_t gen = 0; budget.more(total); ++gen) {
    std::vector<std::thread> workers;
    for (int i = 0; i < threads; ++i) {
      results.push_back(std::make_unique<ThreadResult>());
      ThreadResult& out = *results.back();
      std::vector<Block>& mine =
          arrays[(static_cast<std::size_t>(i) + gen) % static_cast<std::size_t>(threads)];
      workers.emplace_back([&, i, gen] {
        TimedCalls timed{&out.alloc, &out.free, cfg.paths ? &out.paths : nullptr, {}};
        Rng rng(cfg.seed * 31 + gen * 1009 + static_cast<std::uint64_t>(i));
        SizeTable sizes(cfg.sizes, cfg.seed + gen + static_cast<std::uint64_t>(i));
        out.start = Clock::now();
        for (std::uint64_t n = 0; n < per_generation; ++n) {
          Block& b = mine[rng.below(static_cast<std::uint32_t>(slots))];
          if (!intact(b)) ++out.counters.corrupt_blocks;
          timed.deallocate(ops, b.p);
          ++out.counters.frees;
          const std::uint32_t size = sizes.at(rng.next());
          void* p = timed.allocate(ops, size);
          if (p == nullptr) {
            ++out.counters.alloc_failures;
            std::abort();  // the slot must hold a block
          }
          ++out.counters.allocs;
          b = Block{p, size, static_cast<std::uint32_t>(n & 0xff)};
          touch(b);
        }
        out.end = Clock::now();
      });
    }
    for (auto& w : workers) w.join();
    total += per_generation * static_cast<std::uint64_t>(threads);
    if (cfg.seconds <= 0 && total >= cfg.ops * static_cast<std::uint64_t>(threads)) break;
  }
  const auto end = Clock::now();
  for (auto& a : arrays) {
    for (const Block& b : a) {
      if (!intact(b)) ++r.main.corrupt_blocks;
      ops.deallocate(b.p);
      ++r.cleanup_frees;
    }
  }
  harness.finish();
  merge_into(r, results, timer);
  r.elapsed_s = std::chrono::duration<double>(end - start).count();  // thread start-up and exit included
  r.setup_allocs = setup_allocs;  // made before the timed phase; freed by generations or the cleanup
}

template <class Ops>
void run_cache_scratch(const Config& cfg, Ops ops, const Timer& timer, RunResult& r) {
  const int threads = cfg.threads;
  const std::uint32_t size = cfg.sizes.kind == SizeKind::fixed ? cfg.sizes.fixed : 16;
  constexpr int kWrites = 64;
  std::vector<void*> given(static_cast<std::size_t>(threads));
  for (auto& p : given) {
    p = ops.allocate(size);  // all from the main thread: neighbours in one slab
    if (p == nullptr) std::abort();
    std::memset(p, 0, size);
  }
  std::vector<std::unique_ptr<ThreadResult>> results;
  for (int i = 0; i < threads; ++i) results.push_back(std::make_unique<ThreadResult>());
  Harness<Ops> harness(ops, r);
  std::vector<std::thread> workers;
  for (int i = 0; i < threads; ++i) {
    workers.emplace_back([&, i] {
      ThreadResult& out = *results[static_cast<std::size_t>(i)];
      ops.bind(static_cast<std::uint32_t>(i) % static_cast<std::uint32_t>(cfg.shard_count()));
      TimedCalls timed{&out.alloc, &out.free, cfg.paths ? &out.paths : nullptr, {}};
      const Budget budget(cfg);
      out.start = Clock::now();
      timed.deallocate(ops, given[static_cast<std::size_t>(i)]);
      ++out.counters.frees;
      ++out.counters.received;
      for (std::uint64_t n = 0; budget.more(n); ++n) {
        auto* p = static_cast<volatile unsigned char*>(timed.allocate(ops, size));
        if (p == nullptr) {
          ++out.counters.alloc_failures;
          continue;
        }
        ++out.counters.allocs;
        for (int w = 0; w < kWrites; ++w) p[w % size] = static_cast<unsigned char>(p[w % size] + 1);
        timed.deallocate(ops, const_cast<unsigned char*>(p));
        ++out.counters.frees;
      }
      out.end = Clock::now();
    });
  }
  for (auto& w : workers) w.join();
  harness.finish();
  merge_into(r, results, timer);
  r.setup_allocs = static_cast<std::uint64_t>(threads);
  r.main.handed = static_cast<std::uint64_t>(threads);
}

template void run_xmalloc<PoolOps>(const Config&, PoolOps, const Timer&, RunResult&);
template void run_xmalloc<SystemOps>(const Config&, SystemOps, const Timer&, RunResult&);
template void run_larson<PoolOps>(const Config&, PoolOps, const Timer&, RunResult&);
template void run_larson<SystemOps>(const Config&, SystemOps, const Timer&, RunResult&);
template void run_cache_scratch<PoolOps>(const Config&, PoolOps, const Timer&, RunResult&);
template void run_cache_scratch<SystemOps>(const Config&, SystemOps, const Timer&, RunResult&);

}  // namespace sydra::bench
