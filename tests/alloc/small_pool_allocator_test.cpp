// Tests alloc/small_pool_allocator.hpp: the allocator facade. Sizes and alignments, the
// fallback, modes, shards and binding, cross-shard frees and epochs, thread exit, memory
// under churn, and a randomized operation sequence checked against a shadow model.
#include "alloc/small_pool_allocator.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <barrier>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "support/alloc_test_support.hpp"

namespace sydra::alloc {
namespace {

using test::check_pattern;
using test::fill_pattern;
using test::is_aligned;
using test::kSlabBytes;
using test::shard_class;
using test::shard_stats;
using test::small_options;
using test::TaskThread;

constexpr std::uint32_t kClass64 = 3;  // size_to_class(64)
constexpr std::size_t kBlocksPer64Slab = kSlabBytes / 64;

// Every alignment a pool block can have, and some that only the fallback can give.
constexpr std::size_t kPoolAligns[] = {1, 2, 4, 8, 16, 32, 64, 128, 256};
constexpr std::size_t kFallbackAligns[] = {512, 1024, 4096, 65536};

// Allocates blocks of `size` until p comes back (true) or `limit` blocks were taken; frees
// them all again. Used to show that a reclaimed block is reused.
bool comes_back(SmallPoolAllocator& a, void* p, std::size_t size, std::size_t limit) {
  std::vector<void*> got;
  bool hit = false;
  for (std::size_t i = 0; i < limit && !hit; ++i) {
    void* q = a.allocate(size);
    if (q == nullptr) break;
    got.push_back(q);
    hit = q == p;
  }
  for (void* q : got) a.deallocate(q);
  return hit;
}

TEST_SUITE("unit") {
  TEST_CASE("every size and alignment up to 256 is served by the pool aligned and large enough") {
    SmallPoolAllocator a(small_options());
    for (std::size_t align : kPoolAligns) {
      CAPTURE(align);
      std::vector<std::pair<char*, std::size_t>> blocks;
      for (std::size_t size = 0; size <= kMaxSmallSize; ++size) {
        CAPTURE(size);
        void* p = a.allocate(size, align);
        REQUIRE(p != nullptr);
        CHECK(is_aligned(p, std::max(align, kMinBlock)));
        CHECK(a.owns(p));
        const std::size_t usable = a.usable_size(p);
        CHECK(usable >= std::max(size, std::size_t{1}));
        if (align <= kMinBlock) CHECK(usable == class_to_size(size_to_class(size)));
        std::memset(p, 0xA5, usable);
        blocks.emplace_back(static_cast<char*>(p), usable);
      }
      // No two live blocks overlap.
      std::sort(blocks.begin(), blocks.end());
      for (std::size_t i = 1; i < blocks.size(); ++i)
        CHECK(blocks[i - 1].first + blocks[i - 1].second <= blocks[i].first);
      for (auto& [p, usable] : blocks) a.deallocate(p);
    }
    const AllocatorStats s = a.snapshot();
    CHECK(s.fallback.allocs == 0);
    CHECK(test::total_in_use(s) == 0);
  }

  TEST_CASE("alignments above 256 go to the fallback and are honoured") {
    SmallPoolAllocator a(small_options());
    std::uint64_t expected_allocs = 0;
    for (std::size_t align : kFallbackAligns) {
      for (std::size_t size : {std::size_t{1}, std::size_t{64}, std::size_t{256}, std::size_t{1000}}) {
        CAPTURE(align);
        CAPTURE(size);
        void* p = a.allocate(size, align);
        REQUIRE(p != nullptr);
        ++expected_allocs;
        CHECK(is_aligned(p, align));
        CHECK_FALSE(a.owns(p));
        CHECK(a.usable_size(p) >= size);
        std::memset(p, 0x5A, size);
        CHECK(a.snapshot().fallback.allocs == expected_allocs);
        a.deallocate(p);
      }
    }
    const AllocatorStats s = a.snapshot();
    CHECK(s.fallback.frees == expected_allocs);
    CHECK(s.fallback.live_bytes == 0);
  }

  TEST_CASE("sizes above 256 go to the fallback and are counted") {
    SmallPoolAllocator a(small_options());
    const std::size_t sizes[] = {257, 300, 1000, 4096, std::size_t{1} << 20};
    std::vector<void*> blocks;
    std::uint64_t n = 0;
    for (std::size_t size : sizes) {
      CAPTURE(size);
      void* p = a.allocate(size);
      REQUIRE(p != nullptr);
      CHECK(is_aligned(p, kMinBlock));
      CHECK_FALSE(a.owns(p));
      CHECK(a.usable_size(p) >= size);
      std::memset(p, 1, size);
      blocks.push_back(p);
      const AllocatorStats s = a.snapshot();
      CHECK(s.fallback.allocs == ++n);
      CHECK(s.fallback.live_bytes >= size);
    }
    CHECK(a.snapshot().memory.live_bytes >= 257 + 300 + 1000 + 4096 + (1u << 20));
    for (void* p : blocks) a.deallocate(p);
    const AllocatorStats s = a.snapshot();
    CHECK(s.fallback.frees == n);
    CHECK(s.fallback.live_bytes == 0);
    CHECK(test::total_allocations(s) == 0);  // no pool class saw any of these
  }

  TEST_CASE("a foreign pointer passed to deallocate is freed by the fallback") {
    SmallPoolAllocator a(small_options());
    void* keep = a.allocate(64);  // the pool is in use; the foreign pointer must not reach it
    const std::uint64_t frees = a.snapshot().fallback.frees;
    void* foreign = std::malloc(64);
    REQUIRE(foreign != nullptr);
    CHECK_FALSE(a.owns(foreign));
    a.deallocate(foreign);
    CHECK(a.snapshot().fallback.frees == frees + 1);
    void* foreign_sized = std::malloc(32);
    a.deallocate(foreign_sized, 32);
    const AllocatorStats s = a.snapshot();
    CHECK(s.fallback.frees == frees + 2);
    CHECK(s.buckets[kClass64].in_use == 1);
    CHECK(s.buckets[kClass64].frees == 0);
    a.deallocate(keep);
  }

  TEST_CASE("owns is true only for blocks of this allocator's pool") {
    SmallPoolAllocator a(small_options());
    SmallPoolAllocator b(small_options());
    void* p = a.allocate(64);
    void* q = b.allocate(64);
    void* big = a.allocate(4096);
    void* heap = std::malloc(64);
    int on_stack = 0;
    CHECK(a.owns(p));
    CHECK_FALSE(a.owns(q));
    CHECK(b.owns(q));
    CHECK_FALSE(b.owns(p));
    CHECK_FALSE(a.owns(big));
    CHECK_FALSE(a.owns(heap));
    CHECK_FALSE(a.owns(&on_stack));
    CHECK_FALSE(a.owns(nullptr));
    std::free(heap);
    a.deallocate(big);
    b.deallocate(q);
    a.deallocate(p);
  }

  TEST_CASE("size zero gives unique non-null blocks") {
    SmallPoolAllocator a(small_options());
    std::set<void*> seen;
    std::vector<void*> blocks;
    for (int i = 0; i < 200; ++i) {
      void* p = a.allocate(0);
      REQUIRE(p != nullptr);
      CHECK(a.owns(p));
      CHECK(a.usable_size(p) >= 1);
      CHECK(seen.insert(p).second);
      blocks.push_back(p);
    }
    for (void* p : blocks) a.deallocate(p, 0);
    CHECK(test::total_in_use(a.snapshot()) == 0);
  }

  TEST_CASE("huge sizes return nullptr and the allocator keeps working") {
    SmallPoolAllocator a(small_options());
    const std::size_t huge[] = {SIZE_MAX, SIZE_MAX - 15, SIZE_MAX / 2, std::size_t{1} << 62};
    for (std::size_t size : huge) {
      for (std::size_t align : {std::size_t{1}, std::size_t{16}, std::size_t{64}, std::size_t{4096}}) {
        CAPTURE(size);
        CAPTURE(align);
        CHECK(a.allocate(size, align) == nullptr);
      }
    }
    void* p = a.allocate(64);
    CHECK(p != nullptr);
    a.deallocate(p);
    CHECK(a.snapshot().fallback.live_bytes == 0);
  }

  TEST_CASE("an alignment that is not a power of two returns nullptr") {
    SmallPoolAllocator a(small_options());
    for (std::size_t align : {std::size_t{3}, std::size_t{24}, std::size_t{48}, std::size_t{100},
                              std::size_t{384}, std::size_t{1000}, std::size_t{3} << 10}) {
      CAPTURE(align);
      void* small = a.allocate(64, align);
      CHECK(small == nullptr);
      void* large = a.allocate(1000, align);
      CHECK(large == nullptr);
      a.deallocate(small);  // if the check failed: keep the leak out of later checks
      a.deallocate(large);
    }
    const AllocatorStats s = a.snapshot();
    CHECK(s.fallback.live_bytes == 0);
    CHECK(test::total_in_use(s) == 0);
  }

  TEST_CASE("deallocate of nullptr is a no-op") {
    SmallPoolAllocator a(small_options());
    void* p = a.allocate(64);
    const AllocatorStats before = a.snapshot();
    a.deallocate(nullptr);
    a.deallocate(nullptr, 64);
    const AllocatorStats after = a.snapshot();
    CHECK(after.fallback.frees == before.fallback.frees);
    CHECK(test::total_frees(after) == test::total_frees(before));
    CHECK(test::total_in_use(after) == 1);
    a.deallocate(p);
  }

  TEST_CASE("reallocate preserves contents across the 256 byte boundary") {
    SmallPoolAllocator a(small_options());
    void* p = a.allocate(100);
    REQUIRE(p != nullptr);
    fill_pattern(p, 100, 7);

    void* grown = a.reallocate(p, 1000);  // pool -> fallback
    REQUIRE(grown != nullptr);
    CHECK_FALSE(a.owns(grown));
    CHECK(check_pattern(grown, 100, 7));
    fill_pattern(grown, 1000, 8);

    void* shrunk = a.reallocate(grown, 50);  // fallback -> pool
    REQUIRE(shrunk != nullptr);
    CHECK(a.owns(shrunk));
    CHECK(check_pattern(shrunk, 50, 8));

    void* grown_small = a.reallocate(shrunk, 256);  // pool -> pool, another class
    REQUIRE(grown_small != nullptr);
    CHECK(a.owns(grown_small));
    CHECK(check_pattern(grown_small, 50, 8));
    fill_pattern(grown_small, 256, 9);

    void* over = a.reallocate(grown_small, 257);  // 256 -> 257 crosses the boundary
    REQUIRE(over != nullptr);
    CHECK_FALSE(a.owns(over));
    CHECK(check_pattern(over, 256, 9));
    a.deallocate(over);

    const AllocatorStats s = a.snapshot();
    CHECK(test::total_in_use(s) == 0);
    CHECK(s.fallback.live_bytes == 0);
  }

  TEST_CASE("reallocate within a size class keeps the block") {
    SmallPoolAllocator a(small_options());
    void* p = a.allocate(40);  // class 48
    fill_pattern(p, 40, 3);
    const std::uint64_t resizes = a.snapshot().fallback.resizes;
    void* q = a.reallocate(p, 48);
    CHECK(q == p);
    CHECK(check_pattern(q, 40, 3));
    void* r = a.reallocate(q, 33);
    CHECK(r == p);
    CHECK(a.snapshot().fallback.resizes == resizes + 2);
    a.deallocate(r);
  }

  TEST_CASE("reallocate follows realloc semantics at the edges") {
    SmallPoolAllocator a(small_options());
    void* p = a.reallocate(nullptr, 64);  // allocates
    REQUIRE(p != nullptr);
    CHECK(a.owns(p));
    CHECK(a.snapshot().buckets[kClass64].allocations == 1);
    fill_pattern(p, 64, 11);

    CHECK(a.reallocate(p, SIZE_MAX) == nullptr);  // failure leaves the block untouched
    CHECK(check_pattern(p, 64, 11));
    CHECK(a.owns(p));

    void* big = a.allocate(2000);
    fill_pattern(big, 2000, 12);
    CHECK(a.reallocate(big, SIZE_MAX / 2) == nullptr);
    CHECK(check_pattern(big, 2000, 12));
    void* bigger = a.reallocate(big, 100000);
    REQUIRE(bigger != nullptr);
    CHECK(check_pattern(bigger, 2000, 12));
    CHECK(a.reallocate(bigger, 0) == nullptr);  // frees

    CHECK(a.reallocate(p, 0) == nullptr);  // frees
    const AllocatorStats s = a.snapshot();
    CHECK(s.buckets[kClass64].frees == 1);
    CHECK(test::total_in_use(s) == 0);
    CHECK(s.fallback.live_bytes == 0);
  }

  TEST_CASE("sized free with any size of the block's class is accepted") {
    SmallPoolAllocator a(small_options());
    void* p = a.allocate(60);
    a.deallocate(p, 50);  // both sizes are in the 64-byte class
    void* q = a.allocate(64);
    a.deallocate(q, 64);
    void* big = a.allocate(5000);
    a.deallocate(big, 5000);
    const AllocatorStats s = a.snapshot();
    CHECK(s.buckets[kClass64].frees == 2);
    CHECK(s.fallback.frees == 1);
  }

  // An over-aligned request is served from a class that is a multiple of the alignment,
  // which may be larger than size_to_class(size): the sized free of such a block with the
  // size given to allocate must still be accepted (debug builds check sized frees).
  TEST_CASE("sized free of an over-aligned block with its requested size is accepted") {
    test::ChildResult r = test::run_in_child([] {
      SmallPoolAllocator a(small_options());
      void* p = a.allocate(100, 64);  // class 128, while size_to_class(100) is 112
      a.deallocate(p, 100);
      void* q = a.allocate(40, 32);  // class 64, while size_to_class(40) is 48
      a.deallocate(q, 40);
      void* r2 = a.allocate(130, 128);  // class 256
      a.deallocate(r2, 130);
    });
    INFO("child stderr: " << r.err);
    CHECK(r.exited);
    CHECK(r.exit_code == 0);
  }

  TEST_CASE("legacy mode serves small sizes from the legacy buckets") {
    Options o = small_options();
    o.mode = Mode::legacy;
    SmallPoolAllocator a(o);
    CHECK(a.mode() == Mode::legacy);
    void* p = a.allocate(64);
    REQUIRE(p != nullptr);
    CHECK(a.owns(p));
    AllocatorStats s = a.snapshot();
    CHECK(s.mode == Mode::legacy);
    CHECK(s.legacy[kClass64].allocations == 1);
    CHECK(s.legacy[kClass64].in_use == 1);
    CHECK(s.buckets[kClass64].allocations == 1);
    CHECK(s.fallback.allocs == 0);
    a.deallocate(p);
    s = a.snapshot();
    CHECK(s.legacy[kClass64].frees == 1);
    CHECK(s.legacy[kClass64].in_use == 0);
    CHECK(a.is_valid());
  }

  TEST_CASE("with sharding off small sizes go to the legacy buckets") {
    SmallPoolAllocator a(small_options(0));
    CHECK(a.shard_count() == 0);
    CHECK(a.bind_current_thread(3) == SmallPoolAllocator::kNoShard);
    std::vector<void*> blocks;
    for (int i = 0; i < 100; ++i) blocks.push_back(a.allocate(64));
    for (void* p : blocks) CHECK(a.owns(p));
    AllocatorStats s = a.snapshot();
    CHECK_FALSE(s.shard_enabled);
    CHECK(s.shard_count == 0);
    CHECK(s.legacy[kClass64].allocations == 100);
    CHECK(s.legacy[kClass64].in_use == 100);
    CHECK(s.shard_alloc_hits == 0);
    for (void* p : blocks) a.deallocate(p);
    s = a.snapshot();
    CHECK(s.legacy[kClass64].in_use == 0);
    CHECK(s.legacy[kClass64].frees == 100);
    CHECK(a.is_valid());
  }

  TEST_CASE("system mode sends every size to the fallback") {
    Options o = small_options();
    o.mode = Mode::system;
    SmallPoolAllocator a(o);
    void* p = a.allocate(64);
    void* q = a.allocate(0);
    REQUIRE(p != nullptr);
    REQUIRE(q != nullptr);
    CHECK_FALSE(a.owns(p));
    CHECK_FALSE(a.owns(q));
    CHECK(a.snapshot().fallback.allocs == 2);
    a.deallocate(p);
    a.deallocate(q);
    const AllocatorStats s = a.snapshot();
    CHECK(s.fallback.frees == 2);
    CHECK(test::total_allocations(s) == 0);
  }

  TEST_CASE("switching modes with live blocks is safe") {
    SmallPoolAllocator a(small_options());
    void* sharded = a.allocate(64);
    a.set_mode(Mode::system);
    a.flush_thread_cache();
    void* system = a.allocate(64);
    CHECK_FALSE(a.owns(system));
    a.set_mode(Mode::legacy);
    a.flush_thread_cache();
    void* legacy = a.allocate(64);
    CHECK(a.owns(legacy));
    CHECK(a.snapshot().legacy[kClass64].allocations == 1);
    a.set_mode(Mode::sharded);
    a.deallocate(legacy);
    a.deallocate(system);
    a.deallocate(sharded);
    test::drain_deferred(a);
    const AllocatorStats s = a.snapshot();
    CHECK(test::total_in_use(s) == 0);
    CHECK(s.fallback.live_bytes == 0);
    CHECK(a.is_valid());
  }

  TEST_CASE("options come from the environment") {
    ::setenv("SYDRA_ALLOC_MODE", "legacy", 1);
    ::setenv("SYDRA_ALLOC_SHARDS", "3", 1);
    ::setenv("SYDRA_ALLOC_RESERVE_MB", "64", 1);
    ::setenv("SYDRA_ALLOC_FOREIGN_FREES", "local", 1);
    Options o = Options::from_environment();
    CHECK(o.mode == Mode::legacy);
    CHECK(o.shards == 3);
    CHECK(o.reserve_bytes == (std::size_t{64} << 20));
    CHECK(o.foreign_frees == ForeignFrees::cache_locally);
    ::unsetenv("SYDRA_ALLOC_MODE");
    ::unsetenv("SYDRA_ALLOC_SHARDS");
    ::unsetenv("SYDRA_ALLOC_RESERVE_MB");
    ::unsetenv("SYDRA_ALLOC_FOREIGN_FREES");
    Options d = Options::from_environment();
    const Options defaults;
    CHECK(d.mode == defaults.mode);
    CHECK(d.shards == SYDRA_ALLOCATOR_SHARDS);
    CHECK(d.reserve_bytes == defaults.reserve_bytes);
    CHECK(d.slab_bytes == defaults.slab_bytes);
    CHECK(d.foreign_frees == ForeignFrees::to_owner);
  }

  TEST_CASE("the thread cache holds at most two batches per class") {
    SmallPoolAllocator a(small_options(1));
    std::vector<void*> blocks;
    for (int i = 0; i < 1000; ++i) blocks.push_back(a.allocate(64));
    for (void* p : blocks) a.deallocate(p);
    AllocatorStats s = a.snapshot();
    CHECK(s.buckets[kClass64].cached <= 2 * class_batch(kClass64));
    CHECK(s.buckets[kClass64].flushes >= 1);
    CHECK(s.buckets[kClass64].in_use == 0);
    a.flush_thread_cache();
    s = a.snapshot();
    CHECK(test::total_cached(s) == 0);
    CHECK(s.buckets[kClass64].in_use == 0);
    CHECK(a.is_valid());
  }

  TEST_CASE("release_thread gives the cache back and the thread can go on") {
    SmallPoolAllocator a(small_options(2));
    std::vector<void*> blocks;
    for (int i = 0; i < 100; ++i) blocks.push_back(a.allocate(32));
    for (int i = 0; i < 60; ++i) a.deallocate(blocks[static_cast<std::size_t>(i)]);
    REQUIRE(test::total_cached(a.snapshot()) > 0);
    a.release_thread();
    AllocatorStats s = a.snapshot();
    CHECK(test::total_cached(s) == 0);
    CHECK(s.buckets[1].allocations == 100);  // counters folded, not lost
    CHECK(s.buckets[1].frees == 60);
    CHECK(s.buckets[1].in_use == 40);
    void* p = a.allocate(32);
    CHECK(a.owns(p));
    a.deallocate(p);
    for (std::size_t i = 60; i < blocks.size(); ++i) a.deallocate(blocks[i]);
    test::drain_deferred(a);
    s = a.snapshot();
    CHECK(s.buckets[1].allocations == 101);
    CHECK(s.buckets[1].frees == 101);
    CHECK(test::total_in_use(s) == 0);
  }

  TEST_CASE("a rebound thread flushes its cache and its frees of old blocks are cross-shard") {
    SmallPoolAllocator a(small_options(2));
    CHECK(a.bind_current_thread(0) == 0);
    CHECK(a.current_shard() == 0);
    void* p = a.allocate(64);
    CHECK(a.bind_current_thread(1) == 1);
    CHECK(a.current_shard() == 1);
    AllocatorStats s = a.snapshot();
    CHECK(shard_class(s, 0, kClass64).cached == 0);  // flushed on rebind
    CHECK(shard_class(s, 0, kClass64).in_use == 1);
    a.deallocate(p);
    s = a.snapshot();
    CHECK(shard_class(s, 0, kClass64).deferred_pending == 1);
    CHECK(shard_stats(s, 1).cross_shard_frees == 1);
    CHECK(s.shard_deferred_total == 1);
    CHECK(s.buckets[kClass64].in_use == 0);
    a.flush_thread_cache();  // hands the block to its owner (it waits in this thread's magazine)
    a.advance_epoch();
    CHECK(a.collect_garbage() == 1);
    CHECK(a.bind_current_thread(5) == 1);  // modulo the shard count
    CHECK(a.bind_current_thread(2) == 0);
  }

  TEST_CASE("retire defers the free even on the owning thread") {
    SmallPoolAllocator a(small_options(1));
    void* p = a.allocate(64);
    fill_pattern(p, 64, 21);
    AllocatorStats before = a.snapshot();
    a.retire(p);
    AllocatorStats after = a.snapshot();
    CHECK(shard_class(after, 0, kClass64).deferred_pending ==
          shard_class(before, 0, kClass64).deferred_pending + 1);
    CHECK(shard_class(after, 0, kClass64).deferred_enqueued ==
          shard_class(before, 0, kClass64).deferred_enqueued + 1);
    CHECK(after.buckets[kClass64].frees == before.buckets[kClass64].frees + 1);
    CHECK(after.buckets[kClass64].in_use == 0);
    a.advance_epoch();
    CHECK(a.collect_garbage() == 1);
    CHECK(shard_class(a.snapshot(), 0, kClass64).deferred_pending == 0);

    // Inside a read section the retired block cannot come back, however much is allocated.
    a.enter_epoch();
    void* q = a.allocate(64);
    a.retire(q);
    a.flush_thread_cache();
    std::vector<void*> live;
    bool reused = false;
    for (std::size_t i = 0; i < 2 * kBlocksPer64Slab; ++i) {
      void* r = a.allocate(64);
      reused |= r == q;
      live.push_back(r);
    }
    CHECK_FALSE(reused);
    a.advance_epoch();
    CHECK(a.collect_garbage() == 0);  // this thread is still inside
    a.leave_epoch();
    a.advance_epoch();
    CHECK(a.collect_garbage() == 1);
    // Now it is reused: the partial slabs hold fewer free blocks than we take.
    a.flush_thread_cache();
    CHECK(comes_back(a, q, 64, 2 * kBlocksPer64Slab));
    for (void* r : live) a.deallocate(r);
    test::drain_deferred(a);
    CHECK(test::total_in_use(a.snapshot()) == 0);
    CHECK(a.is_valid());
  }

  // RSS stays flat under churn: fully free slabs go back to the shard and, beyond
  // retained_empty_slabs or once idle for the decay interval, to the OS.
  TEST_CASE("committed and resident memory stay flat under churn and empty slabs go back to the OS") {
    Options o = small_options(2);
    o.retained_empty_slabs = 4;  // a bound well below the working set
    o.empty_slab_decay_ms = 10;  // idle memory goes back after 10 ms of maintenance ticks
    SmallPoolAllocator a(o);
    const std::size_t target_bytes = (test::kSlowBuild ? 8u : 16u) << 20;
    const int rounds = test::kSlowBuild ? 20 : 40;
    test::Rng rng(42);
    std::vector<void*> blocks;
    blocks.reserve(target_bytes / 16);
    std::vector<std::uint64_t> committed, resident;
    for (int round = 0; round < rounds; ++round) {
      std::size_t bytes = 0;
      while (bytes < target_bytes) {
        const std::size_t size = rng.between(16, 256);
        auto* p = static_cast<char*>(a.allocate(size));
        if (p == nullptr) FAIL("allocation failed in round " << round);
        p[0] = 1;  // touch the block so its page is resident
        p[size - 1] = 2;
        blocks.push_back(p);
        bytes += size;
      }
      const AllocatorStats s = a.snapshot();
      committed.push_back(s.memory.committed_bytes);
      resident.push_back(s.memory.resident_bytes);
      for (std::size_t i = blocks.size(); i > 1; --i)  // free in random order
        std::swap(blocks[i - 1], blocks[rng.next() % i]);
      for (void* p : blocks) a.deallocate(p);
      blocks.clear();
    }
    const double base_committed = static_cast<double>(committed[3]);
    const double base_resident = static_cast<double>(resident[3]);
    CHECK(base_committed >= static_cast<double>(target_bytes));
    for (int round = 4; round < rounds; ++round) {
      CAPTURE(round);
      CHECK(static_cast<double>(committed[static_cast<std::size_t>(round)]) ==
            doctest::Approx(base_committed).epsilon(0.10));
      CHECK(static_cast<double>(resident[static_cast<std::size_t>(round)]) ==
            doctest::Approx(base_resident).epsilon(0.10));
    }

    // Idle: everything freed, the cache flushed, and the maintenance tick (collect_garbage)
    // running for a few decay intervals returns the memory beyond the retained bound.
    a.flush_thread_cache();
    const std::uint64_t bound = std::uint64_t{o.retained_empty_slabs} * o.slab_bytes * a.shard_count();
    for (int tick = 0; tick < 20 && a.snapshot().memory.committed_bytes > bound; ++tick) {
      a.collect_garbage();
      std::this_thread::sleep_for(std::chrono::milliseconds(2 * o.empty_slab_decay_ms));
    }
    const AllocatorStats s = a.snapshot();
    CHECK(test::total_in_use(s) == 0);
    CHECK(test::total_cached(s) == 0);
    CHECK(s.memory.committed_bytes <= bound);
    CHECK(s.memory.resident_bytes <= bound);
    CHECK(s.memory.returned_bytes > 0);
    CHECK(a.is_valid());
  }

  // A deterministic random sequence of allocate / free / sized free / reallocate / retire /
  // epoch steps, checked against a shadow model: every live block keeps its contents, is
  // aligned, and the pool's in_use figure equals the number of live pool blocks.
  TEST_CASE("randomized operation sequence against a shadow model") {
    SmallPoolAllocator a(small_options(2));
    struct Live {
      void* p;
      std::size_t size;
      std::size_t align;
      std::uint64_t seed;
    };
    std::vector<Live> live;
    test::Rng rng(0x5EED5EEDu);
    const int ops = test::kSlowBuild ? 60000 : 400000;
    std::uint64_t seed = 1;
    int failures = 0;
    auto report = [&](const char* what, int op) {
      if (++failures <= 10) FAIL_CHECK(what << " at op " << op);
    };
    auto pick = [&]() -> std::size_t { return static_cast<std::size_t>(rng.next() % live.size()); };
    auto remove = [&](std::size_t i) {
      live[i] = live.back();
      live.pop_back();
    };
    auto pool_live = [&] {
      std::uint64_t n = 0;
      for (const Live& l : live) n += a.owns(l.p) ? 1 : 0;
      return n;
    };

    for (int op = 0; op < ops && failures == 0; ++op) {
      const unsigned r = static_cast<unsigned>(rng.next() % 100);
      if (r < 40 || live.empty() || live.size() > 5000) {
        if (live.size() > 5000) {  // keep the model bounded
          const std::size_t i = pick();
          if (!check_pattern(live[i].p, live[i].size, live[i].seed)) report("corrupted block", op);
          a.deallocate(live[i].p);
          remove(i);
          continue;
        }
        const unsigned kind = static_cast<unsigned>(rng.next() % 10);
        const std::size_t size = kind < 7   ? rng.between(0, 256)
                                 : kind < 9 ? rng.between(257, 2048)
                                            : rng.between(0, 64);
        const unsigned ak = static_cast<unsigned>(rng.next() % 20);
        const std::size_t align = ak < 16   ? 16
                                  : ak < 19 ? std::size_t{1} << rng.between(0, 8)
                                            : std::size_t{1} << rng.between(9, 12);
        void* p = a.allocate(size, align);
        if (p == nullptr) {
          report("allocation failed", op);
          continue;
        }
        if (!is_aligned(p, std::max(align, kMinBlock))) report("misaligned block", op);
        if (a.usable_size(p) < size) report("usable_size below the request", op);
        if (a.owns(p) != (size <= kMaxSmallSize && align <= kMaxSmallSize))
          report("wrong owner for size", op);
        fill_pattern(p, size, ++seed);
        live.push_back({p, size, align, seed});
      } else if (r < 65) {
        const std::size_t i = pick();
        if (!check_pattern(live[i].p, live[i].size, live[i].seed)) report("corrupted block", op);
        if (live[i].align <= kMinBlock && rng.chance(50)) {
          a.deallocate(live[i].p, live[i].size);
        } else {
          a.deallocate(live[i].p);
        }
        remove(i);
      } else if (r < 80) {
        const std::size_t i = pick();
        if (live[i].align > kMinBlock) continue;  // reallocate keeps only the default alignment
        if (!check_pattern(live[i].p, live[i].size, live[i].seed)) report("corrupted block", op);
        const std::size_t new_size = rng.chance(3) ? 0 : rng.between(1, 600);
        void* q = a.reallocate(live[i].p, new_size);
        if (new_size == 0) {
          if (q != nullptr) report("reallocate to 0 returned a block", op);
          remove(i);
          continue;
        }
        if (q == nullptr) {
          report("reallocate failed", op);
          continue;
        }
        if (!check_pattern(q, std::min(new_size, live[i].size), live[i].seed))
          report("reallocate lost contents", op);
        if (!is_aligned(q, kMinBlock)) report("misaligned reallocated block", op);
        fill_pattern(q, new_size, ++seed);
        live[i] = {q, new_size, kMinBlock, seed};
      } else if (r < 88) {
        const std::size_t i = pick();
        if (!a.owns(live[i].p)) continue;  // retire of fallback blocks has its own test
        if (!check_pattern(live[i].p, live[i].size, live[i].seed)) report("corrupted block", op);
        a.retire(live[i].p);
        remove(i);
      } else if (r < 92) {
        a.advance_epoch();
        a.collect_garbage();
      } else if (r < 93) {
        a.flush_thread_cache();
      } else if (op % 97 == 0) {
        if (test::total_in_use(a.snapshot()) != pool_live()) report("in_use differs from the model", op);
      }
    }
    CHECK(failures == 0);
    CHECK(test::total_in_use(a.snapshot()) == pool_live());
    CHECK(a.is_valid());
    for (const Live& l : live) {
      if (!check_pattern(l.p, l.size, l.seed)) report("corrupted block at the end", ops);
      a.deallocate(l.p);
    }
    test::drain_deferred(a);
    a.flush_thread_cache();
    const AllocatorStats s = a.snapshot();
    CHECK(test::total_in_use(s) == 0);
    CHECK(test::total_pending(s) == 0);
    CHECK(test::total_cached(s) == 0);
    CHECK(test::total_allocations(s) == test::total_frees(s));
    CHECK(s.fallback.live_bytes == 0);
    CHECK(a.is_valid());
  }
}

TEST_SUITE("concurrency") {
  TEST_CASE("two threads get different shards") {
    SmallPoolAllocator a(small_options(2));
    TaskThread t1, t2;
    const std::uint32_t s1 = t1.run([&] { return a.current_shard(); });
    const std::uint32_t s2 = t2.run([&] { return a.current_shard(); });
    CHECK(s1 < 2);
    CHECK(s2 < 2);
    CHECK(s1 != s2);
    CHECK(t1.run([&] { return a.current_shard(); }) == s1);  // stable
    const AllocatorStats s = a.snapshot();
    CHECK(shard_stats(s, 0).threads == 1);
    CHECK(shard_stats(s, 1).threads == 1);
  }

  TEST_CASE("bind_current_thread binds and same-shard frees are not deferred") {
    SmallPoolAllocator a(small_options(2));
    TaskThread t1, t2;
    CHECK(t1.run([&] { return a.bind_current_thread(1); }) == 1);
    CHECK(t1.run([&] { return a.current_shard(); }) == 1);
    CHECK(t2.run([&] { return a.bind_current_thread(3); }) == 1);  // 3 % 2
    std::vector<void*> blocks = t1.run([&] {
      std::vector<void*> v;
      for (int i = 0; i < 100; ++i) v.push_back(a.allocate(64));
      return v;
    });
    // Half freed by the allocating thread, half by another thread of the same shard.
    t1.run([&] {
      for (std::size_t i = 0; i < 50; ++i) a.deallocate(blocks[i]);
    });
    t2.run([&] {
      for (std::size_t i = 50; i < 100; ++i) a.deallocate(blocks[i]);
    });
    const AllocatorStats s = a.snapshot();
    CHECK(s.shard_deferred_total == 0);
    CHECK(shard_stats(s, 1).cross_shard_frees == 0);
    CHECK(shard_class(s, 1, kClass64).allocations == 100);
    CHECK(shard_class(s, 1, kClass64).frees == 100);
    CHECK(shard_class(s, 1, kClass64).deferred_pending == 0);
    CHECK(shard_class(s, 1, kClass64).slabs >= 1);
    CHECK(shard_class(s, 0, kClass64).allocations == 0);
    CHECK(shard_class(s, 0, kClass64).slabs == 0);
    CHECK(s.buckets[kClass64].in_use == 0);
    CHECK(s.shard_alloc_hits >= 100);
  }

  TEST_CASE("new threads spread over a changed shard count") {
    SmallPoolAllocator a(small_options(2));
    a.set_shard_count(4);
    CHECK(a.shard_count() == 4);
    TaskThread t[4];
    std::set<std::uint32_t> shards;
    for (auto& thread : t) shards.insert(thread.run([&] { return a.current_shard(); }));
    CHECK(shards.size() == 4);
    CHECK(*shards.rbegin() < 4);
    std::vector<void*> blocks;
    for (auto& thread : t) blocks.push_back(thread.run([&] { return a.allocate(64); }));
    for (std::size_t i = 0; i < 4; ++i) t[i].run([&] { a.deallocate(blocks[i]); });
    CHECK(a.snapshot().shard_count == 4);
    CHECK(a.is_valid());
  }

  TEST_CASE("cross-shard free is deferred to the owner and reclaimed after the epoch passes") {
    SmallPoolAllocator a(small_options(2));
    TaskThread ta, tb;
    REQUIRE(ta.run([&] { return a.bind_current_thread(0); }) == 0);
    REQUIRE(tb.run([&] { return a.bind_current_thread(1); }) == 1);
    void* p = ta.run([&] {
      void* q = a.allocate(64);
      fill_pattern(q, 64, 1);
      return q;
    });
    REQUIRE(p != nullptr);
    const AllocatorStats s0 = a.snapshot();
    CHECK(tb.run([&] {
      const bool intact = check_pattern(p, 64, 1);
      a.deallocate(p);
      return intact;
    }));
    const AllocatorStats s1 = a.snapshot();
    // The block waits in tb's magazine for shard 0 until tb hands it over (a full
    // magazine, a flush, a quiescent point or thread exit); it is deferred either way.
    a.advance_epoch();
    CHECK(a.collect_garbage() == 0);
    tb.run([&] { a.flush_thread_cache(); });
    CHECK(shard_class(s1, 0, kClass64).deferred_pending == shard_class(s0, 0, kClass64).deferred_pending + 1);
    CHECK(shard_class(s1, 0, kClass64).deferred_enqueued ==
          shard_class(s0, 0, kClass64).deferred_enqueued + 1);
    CHECK(s1.shard_deferred_total == s0.shard_deferred_total + 1);
    CHECK(shard_stats(s1, 1).cross_shard_frees == shard_stats(s0, 1).cross_shard_frees + 1);
    CHECK(s1.buckets[kClass64].frees == 1);
    CHECK(s1.buckets[kClass64].in_use == 0);

    a.advance_epoch();
    CHECK(a.collect_garbage() == 1);
    const AllocatorStats s2 = a.snapshot();
    CHECK(shard_class(s2, 0, kClass64).deferred_pending == 0);
    CHECK(shard_class(s2, 0, kClass64).deferred_reclaimed == 1);
    CHECK(shard_class(s2, 0, kClass64).free_blocks == shard_class(s1, 0, kClass64).free_blocks + 1);

    // The owner gets the block back.
    CHECK(ta.run([&] {
      a.flush_thread_cache();
      return comes_back(a, p, 64, 2 * kBlocksPer64Slab);
    }));
    CHECK(a.is_valid());
  }

  TEST_CASE("cross-shard frees are handed over a magazine at a time or at a quiescent point") {
    SmallPoolAllocator a(small_options(2));
    TaskThread owner, freer;
    owner.run([&] { a.bind_current_thread(0); });
    freer.run([&] { a.bind_current_thread(1); });
    const std::uint32_t n = class_batch(kClass64);
    std::vector<void*> blocks = owner.run([&] {
      std::vector<void*> v;
      for (std::uint32_t i = 0; i < 2 * n + 5; ++i) v.push_back(a.allocate(64));
      return v;
    });
    // One short of a magazine: nothing reaches the owner yet, but the figures count them.
    freer.run([&] {
      for (std::uint32_t i = 0; i + 1 < n; ++i) a.deallocate(blocks[i]);
    });
    AllocatorStats s = a.snapshot();
    CHECK(shard_class(s, 0, kClass64).deferred_pending == n - 1);
    CHECK(shard_class(s, 0, kClass64).in_use == n + 6);
    CHECK(shard_stats(s, 1).paths.free_remote == n - 1);
    CHECK(shard_stats(s, 1).paths.free_handoff == 0);
    a.advance_epoch();
    CHECK(a.collect_garbage() == 0);
    // The magazine fills: one hand-off carries all of it.
    freer.run([&] { a.deallocate(blocks[n - 1]); });
    CHECK(a.snapshot().shards[1].paths.free_handoff == 1);
    CHECK(a.collect_garbage() == 0);  // tagged with the current epoch: not yet
    a.advance_epoch();
    CHECK(a.collect_garbage() == n);
    // A partial magazine goes over at the freer's quiescent point ...
    freer.run([&] {
      for (std::uint32_t i = n; i < n + 3; ++i) a.deallocate(blocks[i]);
      a.quiescent();
    });
    a.advance_epoch();
    CHECK(a.collect_garbage() == 3);
    // ... or when the freeing thread exits.
    {
      TaskThread brief;
      brief.run([&] {
        a.bind_current_thread(1);
        for (std::size_t i = n + 3; i < blocks.size(); ++i) a.deallocate(blocks[i]);
      });
    }
    a.advance_epoch();
    CHECK(a.collect_garbage() == n + 2);
    s = a.snapshot();
    CHECK(shard_class(s, 0, kClass64).deferred_pending == 0);
    CHECK(shard_class(s, 0, kClass64).deferred_reclaimed == 2 * n + 5);
    CHECK(shard_class(s, 0, kClass64).in_use == 0);
    CHECK(a.is_valid());
  }

  TEST_CASE("a reader inside a read section holds reclamation back until it leaves") {
    SmallPoolAllocator a(small_options(2));
    TaskThread owner, freer, reader;
    owner.run([&] { a.bind_current_thread(0); });
    freer.run([&] { a.bind_current_thread(1); });
    // The reader is bound to the shard that does not own the block: readers of every
    // shard must hold every shard's reclamation back.
    reader.run([&] {
      a.bind_current_thread(1);
      a.enter_epoch();
    });
    void* p = owner.run([&] { return a.allocate(64); });
    freer.run([&] {
      a.deallocate(p);
      a.flush_thread_cache();  // hand it over now
    });
    REQUIRE(shard_class(a.snapshot(), 0, kClass64).deferred_pending == 1);
    CHECK(a.snapshot().epoch.active_readers >= 1);

    for (int i = 0; i < 3; ++i) {
      a.advance_epoch();
      CHECK(a.collect_garbage() == 0);
    }
    CHECK(shard_class(a.snapshot(), 0, kClass64).deferred_pending == 1);
    CHECK(a.snapshot().epoch.lag >= 1);

    reader.run([&] { a.leave_epoch(); });
    a.advance_epoch();
    CHECK(a.collect_garbage() == 1);
    CHECK(shard_class(a.snapshot(), 0, kClass64).deferred_pending == 0);
  }

  TEST_CASE("the RAII epoch guard holds reclamation back for its scope") {
    SmallPoolAllocator a(small_options(2));
    TaskThread owner, freer;
    owner.run([&] { a.bind_current_thread(0); });
    freer.run([&] { a.bind_current_thread(1); });
    void* p = owner.run([&] { return a.allocate(32); });
    {
      SmallPoolAllocator::EpochGuard guard(a);  // the main thread reads
      freer.run([&] {
        a.deallocate(p);
        a.flush_thread_cache();  // hand it over now
      });
      a.advance_epoch();
      CHECK(a.collect_garbage() == 0);
      a.advance_epoch();
      CHECK(a.collect_garbage() == 0);
    }
    a.advance_epoch();
    CHECK(a.collect_garbage() == 1);
  }

  TEST_CASE("a QSBR thread holds reclamation back until its quiescent point") {
    SmallPoolAllocator a(small_options(2));
    TaskThread owner, freer, worker;
    owner.run([&] { a.bind_current_thread(0); });
    freer.run([&] { a.bind_current_thread(1); });
    worker.run([&] {
      a.bind_current_thread(1);
      a.qsbr_online();
    });
    void* p = owner.run([&] { return a.allocate(64); });
    freer.run([&] {
      a.deallocate(p);
      a.flush_thread_cache();  // hand it over now
    });
    for (int i = 0; i < 3; ++i) {
      a.advance_epoch();
      CHECK(a.collect_garbage() == 0);
    }
    CHECK(shard_class(a.snapshot(), 0, kClass64).deferred_pending == 1);

    worker.run([&] { a.quiescent(); });
    a.advance_epoch();
    CHECK(a.collect_garbage() == 1);

    // Still online: the next deferred block waits for the next quiescent point.
    void* q = owner.run([&] { return a.allocate(64); });
    freer.run([&] {
      a.deallocate(q);
      a.flush_thread_cache();
    });
    a.advance_epoch();
    a.advance_epoch();
    CHECK(a.collect_garbage() == 0);
    worker.run([&] { a.qsbr_offline(); });  // offline threads hold nothing back
    a.advance_epoch();
    CHECK(a.collect_garbage() == 1);
  }

  TEST_CASE("retire of a fallback block waits for readers") {
    SmallPoolAllocator a(small_options(2));
    TaskThread reader;
    reader.run([&] { a.enter_epoch(); });
    constexpr std::size_t kSize = 1000;
    void* big = a.allocate(kSize);
    REQUIRE(big != nullptr);
    REQUIRE_FALSE(a.owns(big));
    fill_pattern(big, kSize, 77);
    const std::uint64_t frees = a.snapshot().fallback.frees;
    a.retire(big);
    a.advance_epoch();
    a.collect_garbage();
    // Not freed yet: the system allocator does not hand the block out again, and the
    // reader still sees its contents (past the first 16 bytes, which deferral may use).
    std::vector<void*> fresh;
    for (int i = 0; i < 4; ++i) fresh.push_back(std::malloc(kSize));
    for (void* m : fresh) CHECK(m != big);
    for (void* m : fresh) std::free(m);
    CHECK(reader.run([&] {
      auto* bytes = static_cast<const unsigned char*>(big);
      for (std::size_t i = 16; i < kSize; ++i)
        if (bytes[i] != test::pattern_byte(77, i)) return false;
      return true;
    }));
    reader.run([&] { a.leave_epoch(); });
    for (int i = 0; i < 2; ++i) {
      a.advance_epoch();
      a.collect_garbage();
    }
    const AllocatorStats s = a.snapshot();
    CHECK(s.fallback.frees == frees + 1);
    CHECK(s.fallback.live_bytes == 0);
  }

  // The churn below, under either rule for cross-shard frees (Options::foreign_frees).
  void churn_with_cross_thread_frees(ForeignFrees foreign_frees) {
    Options options = small_options(2);
    options.foreign_frees = foreign_frees;
    SmallPoolAllocator a(options);
    constexpr int kThreads = 8;
    const int ops = test::kSlowBuild ? 4000 : 40000;
    struct Item {
      void* p;
      std::size_t size;
      std::uint64_t seed;
    };
    std::mutex handoff_mutex;
    std::vector<Item> handoff;
    std::atomic<int> corrupted{0}, failed{0};
    std::vector<std::uint32_t> shard_of(kThreads);
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        shard_of[static_cast<std::size_t>(t)] = a.current_shard();
        test::Rng rng(static_cast<std::uint64_t>(t) + 1);
        std::vector<Item> mine;
        std::uint64_t seed = static_cast<std::uint64_t>(t) << 40;
        auto release = [&](const Item& item) {
          if (!check_pattern(item.p, item.size, item.seed)) corrupted.fetch_add(1);
          a.deallocate(item.p);
        };
        for (int i = 0; i < ops; ++i) {
          const unsigned r = static_cast<unsigned>(rng.next() % 100);
          if (r < 45 || mine.empty()) {
            const std::size_t size = rng.between(1, 256);
            void* p = a.allocate(size);
            if (p == nullptr) {
              failed.fetch_add(1);
              continue;
            }
            fill_pattern(p, size, ++seed);
            mine.push_back({p, size, seed});
          } else if (r < 70) {
            const std::size_t k = rng.next() % mine.size();
            release(mine[k]);
            mine[k] = mine.back();
            mine.pop_back();
          } else if (r < 85) {
            const std::size_t k = rng.next() % mine.size();
            {
              std::lock_guard<std::mutex> lock(handoff_mutex);
              handoff.push_back(mine[k]);
            }
            mine[k] = mine.back();
            mine.pop_back();
          } else {
            std::vector<Item> taken;
            {
              std::lock_guard<std::mutex> lock(handoff_mutex);
              for (int n = 0; n < 8 && !handoff.empty(); ++n) {
                taken.push_back(handoff.back());
                handoff.pop_back();
              }
            }
            for (const Item& item : taken) release(item);  // a cross-thread free
          }
          if (i % 256 == 0) {
            SmallPoolAllocator::EpochGuard guard(a);
          }
          if (i % 1024 == 0 && t == 0) {
            a.advance_epoch();
            a.collect_garbage();
          }
        }
        for (const Item& item : mine) release(item);
      });
    }
    for (auto& t : threads) t.join();
    for (const Item& item : handoff) {
      if (!check_pattern(item.p, item.size, item.seed)) corrupted.fetch_add(1);
      a.deallocate(item.p);
    }
    a.flush_thread_cache();  // hands this thread's blocks of other shards over too
    test::drain_deferred(a);

    CHECK(corrupted.load() == 0);
    CHECK(failed.load() == 0);
    CHECK(std::set<std::uint32_t>(shard_of.begin(), shard_of.end()) == std::set<std::uint32_t>{0, 1});
    const AllocatorStats s = a.snapshot();
    for (std::uint32_t c = 0; c < kNumClasses; ++c) {
      CAPTURE(c);
      CHECK(s.buckets[c].in_use == 0);
      CHECK(s.buckets[c].cached == 0);
      CHECK(s.buckets[c].deferred_pending == 0);
      CHECK(s.buckets[c].allocations == s.buckets[c].frees);
      CHECK(s.buckets[c].deferred_enqueued == s.buckets[c].deferred_reclaimed);
    }
    for (const ShardStats& sh : s.shards) {
      CAPTURE(sh.id);
      CHECK(sh.totals().in_use == 0);
      CHECK(sh.totals().deferred_pending == 0);
    }
    CHECK(test::total_allocations(s) > 0);
    // Some frees crossed shards: through the owners' queues, or (cached locally) some of the
    // blocks went home through them when the threads exited.
    CHECK(s.shard_deferred_total > 0);
    std::uint64_t cross = 0;
    for (const ShardStats& sh : s.shards) cross += sh.cross_shard_frees;
    CHECK(cross > 0);
    CHECK(a.is_valid());
  }

  TEST_CASE("more threads than shards churn with cross-thread frees and end consistent") {
    churn_with_cross_thread_frees(ForeignFrees::to_owner);
  }

  TEST_CASE("with foreign frees cached locally, churn with cross-thread frees ends consistent") {
    // Blocks of every shard mix in bins and depots; each goes home when a pool would take
    // it back into a slab (thread exit here), and every slab ends empty.
    churn_with_cross_thread_frees(ForeignFrees::cache_locally);
  }

  // Two shards with ForeignFrees::cache_locally, a thread bound to each, and a 64-byte block
  // of shard 0 allocated by ta.
  struct CachedLocallyPair {
    SmallPoolAllocator a{[] {
      Options options = small_options(2);
      options.foreign_frees = ForeignFrees::cache_locally;
      return options;
    }()};
    TaskThread ta, tb;
    void* p = nullptr;
    CachedLocallyPair() {
      REQUIRE(ta.run([&] { return a.bind_current_thread(0); }) == 0);
      REQUIRE(tb.run([&] { return a.bind_current_thread(1); }) == 1);
      p = ta.run([&] { return a.allocate(64); });
      REQUIRE(p != nullptr);
    }
  };

  TEST_CASE("with foreign frees cached locally, the freeing thread reuses the block at once") {
    CachedLocallyPair pair;
    SmallPoolAllocator& a = pair.a;
    TaskThread& ta = pair.ta;
    TaskThread& tb = pair.tb;
    void* p = pair.p;
    // No epoch passes, nothing is handed over: the block of shard 0 is the next 64-byte
    // block shard 1's thread gets (the top of its bin, which has room once it is loaded).
    void* own = tb.run([&] { return a.allocate(64); });
    void* again = tb.run([&] {
      a.deallocate(p);
      return a.allocate(64);
    });
    CHECK(again == p);
    tb.run([&] { a.deallocate(own); });
    const AllocatorStats s = a.snapshot();
    CHECK(s.shard_deferred_total == 0);
    CHECK(shard_stats(s, 1).cross_shard_frees == 1);
    // Freed again by tb and flushed: it goes home to shard 0 as a deferred block, not into
    // shard 1's slabs (whose metadata only their owner writes).
    tb.run([&] {
      a.deallocate(p);
      a.flush_thread_cache();
    });
    CHECK(a.is_valid());
    test::drain_deferred(a);
    const AllocatorStats s2 = a.snapshot();
    CHECK(shard_class(s2, 0, kClass64).deferred_enqueued == 1);
    CHECK(shard_class(s2, 0, kClass64).deferred_reclaimed == 1);
    CHECK(shard_class(s2, 0, kClass64).deferred_pending == 0);
    CHECK(s2.buckets[kClass64].frees == 3);  // p twice and own, counted once each
    CHECK(s2.buckets[kClass64].allocations == 3);
    CHECK(s2.buckets[kClass64].in_use == 0);
    CHECK(ta.run([&] {
      a.flush_thread_cache();
      return comes_back(a, p, 64, 2 * kBlocksPer64Slab);
    }));
    CHECK(a.is_valid());
  }

  TEST_CASE(
      "with foreign frees cached locally, a thread whose bin has no room hands the block to its owner") {
    CachedLocallyPair pair;
    SmallPoolAllocator& a = pair.a;
    TaskThread& ta = pair.ta;
    TaskThread& tb = pair.tb;
    void* p = pair.p;
    // tb never allocated 64-byte blocks: no loaded magazine, so no room (a consumer).
    tb.run([&] {
      a.deallocate(p);
      a.flush_thread_cache();
    });
    const AllocatorStats s = a.snapshot();
    CHECK(shard_class(s, 0, kClass64).deferred_enqueued == 1);  // the owner's queue, as under the ADR
    CHECK(s.buckets[kClass64].frees == 1);
    test::drain_deferred(a);
    CHECK(ta.run([&] {
      a.flush_thread_cache();
      return comes_back(a, p, 64, 2 * kBlocksPer64Slab);
    }));
    CHECK(a.is_valid());
  }

  TEST_CASE("thread exit flushes the cache and keeps the counters") {
    SmallPoolAllocator a(small_options(2));
    a.bind_current_thread(0);
    const AllocatorStats before = a.snapshot();
    std::vector<void*> kept;
    {
      TaskThread t;
      t.run([&] {
        a.bind_current_thread(1);
        SmallPoolAllocator::EpochGuard guard(a);
        std::vector<void*> blocks;
        for (int i = 0; i < 200; ++i) blocks.push_back(a.allocate(64));
        for (std::size_t i = 0; i < 150; ++i) a.deallocate(blocks[i]);
        kept.assign(blocks.begin() + 150, blocks.end());
      });
      const AllocatorStats during = a.snapshot();
      CHECK(during.epoch.threads == before.epoch.threads + 1);
      CHECK(shard_stats(during, 1).threads == 1);
      CHECK(shard_class(during, 1, kClass64).cached > 0);
      t.stop();
    }
    const AllocatorStats after = a.snapshot();
    CHECK(after.epoch.threads == before.epoch.threads);
    const ShardStats sh = shard_stats(after, 1);
    CHECK(sh.threads == 0);
    CHECK(sh.totals().cached == 0);
    CHECK(sh.classes[kClass64].allocations == 200);
    CHECK(sh.classes[kClass64].frees == 150);
    CHECK(sh.classes[kClass64].in_use == 50);
    CHECK(after.buckets[kClass64].allocations == 200);
    for (void* p : kept) a.deallocate(p);
    test::drain_deferred(a);
    CHECK(a.snapshot().buckets[kClass64].in_use == 0);
  }

  TEST_CASE("frees aimed at a shard whose threads have all exited are reclaimed") {
    SmallPoolAllocator a(small_options(2));
    a.bind_current_thread(0);
    std::vector<void*> blocks;
    {
      TaskThread t;
      blocks = t.run([&] {
        a.bind_current_thread(1);
        std::vector<void*> v;
        for (int i = 0; i < 300; ++i) v.push_back(a.allocate(48));
        return v;
      });
    }
    for (void* p : blocks) a.deallocate(p);  // cross-shard: shard 1 has no thread left
    AllocatorStats s = a.snapshot();
    CHECK(shard_class(s, 1, 2).deferred_pending == 300);
    a.quiescent();  // hands the partial magazine over too
    a.advance_epoch();
    CHECK(a.collect_garbage() == 300);
    s = a.snapshot();
    CHECK(shard_class(s, 1, 2).deferred_pending == 0);
    CHECK(shard_class(s, 1, 2).in_use == 0);
    CHECK(shard_class(s, 1, 2).deferred_reclaimed == 300);
    CHECK(a.is_valid());
  }
}

}  // namespace
}  // namespace sydra::alloc
