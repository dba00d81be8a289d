// Tests alloc/stats.hpp and the figures snapshot() derives: the struct operations, and
// snapshots after scripted workloads whose exact counts are known.
#include "alloc/stats.hpp"

#include <doctest/doctest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "alloc/small_pool_allocator.hpp"
#include "support/alloc_test_support.hpp"

namespace sydra::alloc {
namespace {

using test::kSlabBytes;
using test::shard_class;
using test::shard_stats;
using test::small_options;
using test::TaskThread;

constexpr std::uint32_t kClass64 = 3;

// Checks that summing every shard's class figures and the legacy figures gives `buckets`.
void check_buckets_are_sums(const AllocatorStats& s) {
  for (std::uint32_t c = 0; c < kNumClasses; ++c) {
    CAPTURE(c);
    ClassStats sum = s.legacy[c];
    for (const ShardStats& sh : s.shards) sum += sh.classes[c];
    CHECK(s.buckets[c].size == class_to_size(c));
#define SYDRA_X(name) CHECK_MESSAGE(sum.name == s.buckets[c].name, #name);
    SYDRA_CLASS_STATS(SYDRA_X)
#undef SYDRA_X
  }
}

TEST_SUITE("unit") {
  TEST_CASE("mode names round-trip and anything else is rejected") {
    for (Mode m : {Mode::sharded, Mode::legacy, Mode::system}) {
      Mode parsed = Mode::system;
      CHECK(parse_mode(to_string(m), parsed));
      CHECK(parsed == m);
    }
    CHECK(to_string(Mode::sharded) == "sharded");
    CHECK(to_string(Mode::legacy) == "legacy");
    CHECK(to_string(Mode::system) == "system");
    Mode untouched = Mode::legacy;
    CHECK_FALSE(parse_mode("Sharded ", untouched));
    CHECK_FALSE(parse_mode("", untouched));
    CHECK_FALSE(parse_mode("jemalloc", untouched));
    CHECK(untouched == Mode::legacy);
  }

  TEST_CASE("ClassStats += adds every counter and keeps the size") {
    ClassStats a, b;
    a.size = 64;
    b.size = 64;
    std::uint64_t v = 1;
#define SYDRA_X(name) \
  a.name = v;         \
  b.name = 100 * v;   \
  ++v;
    SYDRA_CLASS_STATS(SYDRA_X)
#undef SYDRA_X
    a += b;
    CHECK(a.size == 64);
    v = 1;
#define SYDRA_X(name)                      \
  CHECK_MESSAGE(a.name == 101 * v, #name); \
  ++v;
    SYDRA_CLASS_STATS(SYDRA_X)
#undef SYDRA_X
  }

  TEST_CASE("ShardStats totals sums the classes") {
    ShardStats sh;
    for (std::uint32_t c = 0; c < kNumClasses; ++c) {
      sh.classes[c].size = class_to_size(c);
      sh.classes[c].allocations = c + 1;
      sh.classes[c].in_use = 2;
      sh.classes[c].lock_wait_ns = 10;
    }
    const ClassStats t = sh.totals();
    CHECK(t.size == 0);
    CHECK(t.allocations == kNumClasses * (kNumClasses + 1) / 2);
    CHECK(t.in_use == 2 * kNumClasses);
    CHECK(t.lock_wait_ns == 10 * kNumClasses);
    CHECK(t.frees == 0);
  }

  TEST_CASE("a fresh allocator's snapshot describes its configuration and holds nothing") {
    SmallPoolAllocator a(small_options(2));
    const AllocatorStats s = a.snapshot();
    CHECK(s.version == kStatsVersion);
    CHECK(s.mode == Mode::sharded);
    CHECK(s.shard_enabled);
    CHECK(s.shard_count == 2);
    CHECK(s.slab_bytes == kSlabBytes);
    CHECK(s.memory.reserved_bytes == (std::size_t{256} << 20));
    CHECK(s.memory.committed_bytes == 0);
    CHECK(s.memory.live_bytes == 0);
    CHECK(s.memory.fragmentation == 0.0);
    CHECK(s.epoch.current == a.current_epoch());
    CHECK(s.epoch.lag == 0);
    CHECK(s.fallback.allocs == 0);
    CHECK(s.shards.size() <= 2);
    for (std::uint32_t c = 0; c < kNumClasses; ++c) {
      CHECK(s.buckets[c].size == class_to_size(c));
      CHECK(s.buckets[c].allocations == 0);
      CHECK(s.buckets[c].in_use == 0);
    }
  }

  TEST_CASE("stats equal a scripted workload") {
    SmallPoolAllocator a(small_options(1));
    constexpr std::uint64_t kN = 100, kM = 40;
    std::vector<void*> blocks;
    for (std::uint64_t i = 0; i < kN; ++i) blocks.push_back(a.allocate(64));
    for (std::uint64_t i = 0; i < kM; ++i) a.deallocate(blocks[i]);
    AllocatorStats s = a.snapshot();
    const ClassStats& b = s.buckets[kClass64];
    CHECK(b.allocations == kN);
    CHECK(b.frees == kM);
    CHECK(b.in_use == kN - kM);
    CHECK(b.high_water >= kN);
    CHECK(b.high_water <= kN + 2 * class_batch(kClass64));
    CHECK(b.refills >= kN / class_batch(kClass64));
    CHECK(b.slabs == 1);
    CHECK(b.deferred_pending == 0);
    CHECK(b.cached + b.in_use + b.free_blocks == kSlabBytes / 64);  // one slab, all accounted
    CHECK(s.shard_alloc_hits >= kN);
    CHECK(s.memory.pool_live_bytes == (kN - kM) * 64);
    CHECK(s.memory.live_bytes == s.memory.pool_live_bytes + s.fallback.live_bytes);
    CHECK(s.memory.committed_bytes == kSlabBytes);
    CHECK(s.memory.fragmentation == doctest::Approx(1.0 - (kN - kM) * 64.0 / kSlabBytes));
    for (std::uint32_t c = 0; c < kNumClasses; ++c)
      if (c != kClass64) CHECK(s.buckets[c].allocations == 0);
    REQUIRE(s.shards.size() == 1);
    CHECK(s.shards[0].classes[kClass64].allocations == kN);
    check_buckets_are_sums(s);

    for (std::uint64_t i = kM; i < kN; ++i) a.deallocate(blocks[i]);
    s = a.snapshot();
    CHECK(s.buckets[kClass64].frees == kN);
    CHECK(s.buckets[kClass64].in_use == 0);
    CHECK(s.memory.pool_live_bytes == 0);
    a.flush_thread_cache();
    s = a.snapshot();
    CHECK(s.buckets[kClass64].cached == 0);
    CHECK(s.buckets[kClass64].flushes >= 1);
    CHECK(s.buckets[kClass64].slabs == 0);  // the slab emptied
    CHECK(shard_stats(s, 0).empty_slabs == 1);
    check_buckets_are_sums(s);
  }

  TEST_CASE("per-shard figures add up to the aggregates") {
    SmallPoolAllocator a(small_options(2));
    std::vector<void*> blocks;
    test::Rng rng(3);
    for (std::uint32_t shard : {0u, 1u, 0u}) {
      a.bind_current_thread(shard);
      for (int i = 0; i < 500; ++i) blocks.push_back(a.allocate(rng.between(1, 256)));
      for (int i = 0; i < 200; ++i) {
        const std::size_t k = rng.next() % blocks.size();
        a.deallocate(blocks[k]);
        blocks[k] = blocks.back();
        blocks.pop_back();
      }
    }
    a.set_mode(Mode::legacy);
    a.flush_thread_cache();
    for (int i = 0; i < 50; ++i) blocks.push_back(a.allocate(rng.between(1, 256)));
    a.set_mode(Mode::sharded);

    AllocatorStats s = a.snapshot();
    check_buckets_are_sums(s);
    CHECK(test::total_in_use(s) == blocks.size());
    std::uint64_t legacy_allocs = 0;
    for (const ClassStats& c : s.legacy) legacy_allocs += c.allocations;
    CHECK(legacy_allocs == 50);
    CHECK(test::total_allocations(s) == 1550);
    CHECK(test::total_frees(s) == 600);

    for (void* p : blocks) a.deallocate(p);
    test::drain_deferred(a);
    s = a.snapshot();
    check_buckets_are_sums(s);
    CHECK(test::total_in_use(s) == 0);
    CHECK(test::total_frees(s) == 1550);
  }

  TEST_CASE("deferred figures after a scripted cross-shard free") {
    SmallPoolAllocator a(small_options(2));
    constexpr std::uint64_t kK = 20;
    a.bind_current_thread(0);
    std::vector<void*> blocks;
    for (std::uint64_t i = 0; i < kK; ++i) blocks.push_back(a.allocate(64));
    a.bind_current_thread(1);
    for (void* p : blocks) a.deallocate(p);

    AllocatorStats s = a.snapshot();
    const ClassStats owner = shard_class(s, 0, kClass64);
    CHECK(owner.deferred_enqueued == kK);
    CHECK(owner.deferred_pending == kK);
    CHECK(owner.deferred_reclaimed == 0);
    CHECK(owner.in_use == 0);
    CHECK(s.shard_deferred_total == kK);
    CHECK(shard_stats(s, 1).cross_shard_frees == kK);
    CHECK(shard_stats(s, 0).cross_shard_frees == 0);
    CHECK(s.buckets[kClass64].allocations == kK);
    CHECK(s.buckets[kClass64].frees == kK);
    CHECK(s.buckets[kClass64].deferred_pending == kK);
    check_buckets_are_sums(s);

    a.flush_thread_cache();  // hands the magazine for shard 0 over
    CHECK(a.snapshot().buckets[kClass64].deferred_pending == kK);
    a.advance_epoch();
    CHECK(a.collect_garbage() == kK);
    s = a.snapshot();
    const ClassStats after = shard_class(s, 0, kClass64);
    CHECK(after.deferred_enqueued == kK);
    CHECK(after.deferred_reclaimed == kK);
    CHECK(after.deferred_pending == 0);
    CHECK(after.in_use == 0);
    CHECK(s.shard_deferred_total == kK);  // a running total
    check_buckets_are_sums(s);
  }

  TEST_CASE("fallback figures count allocations by size") {
    SmallPoolAllocator a(small_options(2));
    std::vector<void*> blocks;
    for (std::size_t size : {300u, 300u, 5000u, 70000u, 1u << 20}) blocks.push_back(a.allocate(size));
    blocks.push_back(a.allocate(64, 4096));
    AllocatorStats s = a.snapshot();
    CHECK(s.fallback.allocs == 6);
    CHECK(s.fallback.live_bytes >= 300 + 300 + 5000 + 70000 + (1u << 20) + 64);
    std::uint64_t counted = 0;
    for (std::size_t i = 0; i < FallbackStats::kBuckets; ++i) {
      counted += s.fallback.size_buckets[i].count;
      if (i > 0) CHECK(s.fallback.size_buckets[i].upper_bound > s.fallback.size_buckets[i - 1].upper_bound);
    }
    CHECK(s.fallback.size_buckets[FallbackStats::kBuckets - 1].upper_bound == UINT64_MAX);
    CHECK(counted == 6);
    for (void* p : blocks) a.deallocate(p);
    s = a.snapshot();
    CHECK(s.fallback.frees == 6);
    CHECK(s.fallback.live_bytes == 0);
    CHECK(s.memory.live_bytes == 0);
  }

  TEST_CASE("lock figures count the shard's refills and flushes") {
    SmallPoolAllocator a(small_options(1));
    std::vector<void*> blocks;
    for (int i = 0; i < 1000; ++i) blocks.push_back(a.allocate(128));
    for (void* p : blocks) a.deallocate(p);
    a.flush_thread_cache();
    const AllocatorStats s = a.snapshot();
    const ShardStats sh = shard_stats(s, 0);
    const ClassStats& c = sh.classes[size_to_class(128)];
    CHECK(c.refills >= 1000 / class_batch(size_to_class(128)));
    CHECK(c.flushes >= 1);
    CHECK(c.lock_acquisitions >= c.refills);  // each refill takes the lock once
    CHECK(c.lock_contention == 0);            // one thread
    // The shard's figures add maintenance (flush_thread_cache) to the classes' figures.
    CHECK(sh.lock_acquisitions >= sh.totals().lock_acquisitions + 1);
    CHECK(sh.lock_hold_ns >= sh.totals().lock_hold_ns);
  }
}

TEST_SUITE("concurrency") {
  TEST_CASE("epoch figures show readers and their lag") {
    SmallPoolAllocator a(small_options(2));
    TaskThread reader;
    const std::uint64_t advances = a.snapshot().epoch.advances;
    reader.run([&] {
      a.bind_current_thread(1);
      a.enter_epoch();
    });
    const std::uint64_t entered_at = a.current_epoch();
    a.advance_epoch();
    a.advance_epoch();  // refused: the reader has not observed the new epoch
    AllocatorStats s = a.snapshot();
    CHECK(s.epoch.current == entered_at + 1);
    CHECK(s.epoch.min_observed == entered_at);
    CHECK(s.epoch.lag == 1);
    CHECK(s.epoch.advances == advances + 1);
    CHECK(s.epoch.active_readers == 1);
    CHECK(s.epoch.threads >= 1);
    CHECK(shard_stats(s, 1).epoch_min == entered_at);
    CHECK(shard_stats(s, 0).epoch_min == s.epoch.current);  // nobody of shard 0 is reading
    reader.run([&] { a.leave_epoch(); });
    s = a.snapshot();
    CHECK(s.epoch.active_readers == 0);
    CHECK(s.epoch.lag == 0);
    CHECK(s.epoch.min_observed == s.epoch.current);
  }

  TEST_CASE("snapshots taken while threads allocate are consistent") {
    SmallPoolAllocator a(small_options(2));
    std::atomic<bool> stop{false};
    std::vector<std::thread> workers;
    for (int t = 0; t < 3; ++t) {
      workers.emplace_back([&, t] {
        test::Rng rng(static_cast<std::uint64_t>(t) + 10);
        std::vector<void*> mine;
        while (!stop.load(std::memory_order_relaxed)) {
          if (mine.size() < 2000 && (mine.empty() || rng.chance(55))) {
            mine.push_back(a.allocate(rng.between(1, 400)));
          } else {
            const std::size_t k = rng.next() % mine.size();
            a.deallocate(mine[k]);
            mine[k] = mine.back();
            mine.pop_back();
          }
        }
        for (void* p : mine) a.deallocate(p);
      });
    }
    std::uint64_t last_allocations = 0;
    const int snapshots = test::kSlowBuild ? 50 : 300;
    for (int i = 0; i < snapshots; ++i) {
      const AllocatorStats s = a.snapshot();
      const std::uint64_t allocations = test::total_allocations(s);
      CHECK(allocations >= last_allocations);  // counters only grow
      last_allocations = allocations;
      CHECK(s.shard_count == 2);
      if (i % 10 == 0) CHECK(a.is_valid());
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    stop.store(true);
    for (auto& w : workers) w.join();
    test::drain_deferred(a);
    const AllocatorStats s = a.snapshot();
    check_buckets_are_sums(s);
    CHECK(test::total_in_use(s) == 0);
    CHECK(test::total_allocations(s) == test::total_frees(s));
    CHECK(s.fallback.allocs == s.fallback.frees);
    CHECK(s.fallback.live_bytes == 0);
  }
}

}  // namespace
}  // namespace sydra::alloc
