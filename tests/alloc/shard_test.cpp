// Tests alloc/shard.hpp: slab pools (take, put, empty slabs, the retained bound), the
// shard's depots of magazines and their decay, the deferred queue (single blocks, retired
// blocks, handed-off magazines) and its collection by epoch, and the instrumented lock.
#include "alloc/shard.hpp"

#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <set>
#include <thread>
#include <vector>

#include "alloc/track.hpp"
#include "support/alloc_test_support.hpp"

namespace sydra::alloc {
namespace {

using test::kSlabBytes;

// Takes n blocks of class cls into a vector.
std::vector<void*> take_blocks(SlabPool& pool, std::uint32_t cls, std::uint32_t n) {
  std::vector<void*> blocks(n);
  blocks.resize(pool.take(cls, n, blocks.data()));
  return blocks;
}

void put_blocks(SlabPool& pool, const std::vector<void*>& blocks, std::uint32_t cls) {
  pool.put_array(blocks.data(), static_cast<std::uint32_t>(blocks.size()), cls);
}

// Blocks of a class still held outside the shard: taken from slabs and neither put back
// nor kept in the shard's depot.
std::uint64_t held(Shard& shard, std::uint32_t cls) {
  return shard.pool.class_pool(cls).blocks_out - shard.depot_blocks(cls);
}

// A magazine of class cls filled from the shard's slabs.
Magazine* filled_magazine(Shard& shard, std::uint32_t cls, std::uint32_t n) {
  Magazine* m = shard.take_empty();
  m->cls = cls;
  m->count = shard.pool.take(cls, n, m->blocks);
  return m;
}

TEST_SUITE("unit") {
  TEST_CASE("take carves blocks from one slab without touching them and put_array gives them back") {
    SlabSpace space(std::size_t{16} << 20, kSlabBytes);
    SlabPool pool(space, 0, 1);
    std::vector<void*> blocks = take_blocks(pool, 3, 10);
    REQUIRE(blocks.size() == 10);
    // Carving writes nothing (debug builds fill carved blocks like freed ones): a fresh
    // slab's pages are not even resident yet.
    if (!SYDRA_ALLOC_DEBUG) CHECK(space.resident_bytes() == 0);
    CHECK(std::set<void*>(blocks.begin(), blocks.end()).size() == 10);
    char* start = space.slab_start(space.meta_of(blocks[0]));
    for (void* b : blocks) {
      CHECK(space.contains(b));
      CHECK(space.slab_start(space.meta_of(b)) == start);
      CHECK((static_cast<char*>(b) - start) % 64 == 0);
      CHECK(space.tag_of(b) == make_tag(0, 3));
    }
    const ClassPool& cp = pool.class_pool(3);
    CHECK(cp.slabs == 1);
    CHECK(cp.blocks_out == 10);
    CHECK(cp.high_water == 10);
    CHECK(cp.free_blocks == kSlabBytes / 64 - 10);
    CHECK(pool.is_valid());

    put_blocks(pool, blocks, 3);
    CHECK(cp.blocks_out == 0);
    CHECK(cp.high_water == 10);
    CHECK(cp.slabs == 0);  // the slab emptied: kept for reuse, not in the class any more
    CHECK(cp.free_blocks == 0);
    CHECK(pool.empty_slabs() == 1);
    CHECK(pool.is_valid());
  }

  TEST_CASE("an empty slab is reused by another class without a new commit") {
    SlabSpace space(std::size_t{16} << 20, kSlabBytes);
    SlabPool pool(space, 0, 1);
    put_blocks(pool, take_blocks(pool, 3, 4), 3);
    REQUIRE(pool.empty_slabs() == 1);
    const std::uint64_t committed = space.committed_bytes();
    const std::uint64_t carved = space.carved_slabs();

    std::vector<void*> blocks = take_blocks(pool, 9, 4);
    REQUIRE(blocks.size() == 4);
    CHECK(pool.empty_slabs() == 0);
    CHECK(space.committed_bytes() == committed);
    CHECK(space.carved_slabs() == carved);
    CHECK(space.tag_of(blocks[0]) == make_tag(0, 9));
    CHECK(pool.class_pool(9).slabs == 1);
    CHECK(pool.slabs_acquired() == 2);
    put_blocks(pool, blocks, 9);
    CHECK(pool.is_valid());
  }

  TEST_CASE("a full slab leaves the partial list and returns when a block comes back") {
    SlabSpace space(std::size_t{16} << 20, kSlabBytes);
    SlabPool pool(space, 1, 4);
    const std::uint32_t per_slab = kSlabBytes / 256;
    std::vector<void*> blocks = take_blocks(pool, 11, per_slab);
    REQUIRE(blocks.size() == per_slab);
    const ClassPool& cp = pool.class_pool(11);
    CHECK(cp.partial == nullptr);
    CHECK(cp.free_blocks == 0);
    CHECK(pool.is_valid());

    pool.put(blocks.back(), space.meta_of(blocks.back()));
    blocks.pop_back();
    CHECK(cp.partial != nullptr);
    CHECK(cp.free_blocks == 1);
    CHECK(pool.is_valid());

    // A block put back is handed out again before the pool carves a new slab.
    void* again = nullptr;
    REQUIRE(pool.take(11, 1, &again) == 1);
    CHECK(space.meta_of(again).in_use == per_slab);
    CHECK(cp.slabs == 1);
    blocks.push_back(again);
    put_blocks(pool, blocks, 11);
    CHECK(cp.blocks_out == 0);
    CHECK(pool.is_valid());
  }

  TEST_CASE("take spans several slabs and the empty slabs beyond the bound go back to the OS") {
    SlabSpace space(std::size_t{16} << 20, kSlabBytes);
    SlabPool pool(space, 0, 1);
    const std::uint32_t per_slab = kSlabBytes / 256;
    std::vector<void*> blocks = take_blocks(pool, 11, 3 * per_slab);
    REQUIRE(blocks.size() == 3 * per_slab);
    CHECK(pool.class_pool(11).slabs == 3);
    CHECK(space.committed_bytes() == 3 * kSlabBytes);
    const std::uint64_t returned = space.returned_bytes();

    put_blocks(pool, blocks, 11);
    CHECK(pool.class_pool(11).slabs == 0);
    CHECK(pool.empty_slabs() == 1);
    CHECK(space.committed_bytes() == kSlabBytes);
    CHECK(space.returned_bytes() == returned + 2 * kSlabBytes);
    CHECK(pool.is_valid());
  }

  TEST_CASE("take returns fewer blocks when the slab space is exhausted") {
    SlabSpace space(2 * kSlabBytes, kSlabBytes);
    SlabPool pool(space, 0, 1);
    const std::uint32_t per_slab = kSlabBytes / 128;
    std::vector<void*> blocks = take_blocks(pool, 7, 3 * per_slab);
    CHECK(blocks.size() == 2 * per_slab);
    void* none = nullptr;
    CHECK(pool.take(7, 1, &none) == 0);
    CHECK(none == nullptr);
    put_blocks(pool, blocks, 7);
    CHECK(pool.is_valid());
  }

  TEST_CASE("the depot keeps full magazines up to its bound and trim returns what stayed unused") {
    SlabSpace space(std::size_t{64} << 20, kSlabBytes);
    MetaArena arena;
    MagazinePool magazines(arena);
    Shard shard(space, magazines, 0, 4);
    ScopedLock guard(shard.lock, shard.lock_stats[kMaintenanceSlot]);
    const std::uint32_t n = class_batch(3);
    std::vector<Magazine*> full;
    for (std::uint32_t i = 0; i <= Shard::kDepotMagazines; ++i) full.push_back(filled_magazine(shard, 3, n));
    for (std::uint32_t i = 0; i < Shard::kDepotMagazines; ++i) CHECK(shard.depot_push(3, full[i]));
    // Full: that magazine's blocks go back into their slabs; the magazine becomes an empty.
    CHECK_FALSE(shard.depot_push(3, full.back()));
    CHECK(shard.depot_magazines(3) == Shard::kDepotMagazines);
    CHECK(shard.depot_blocks(3) == std::uint64_t{Shard::kDepotMagazines} * n);
    CHECK(held(shard, 3) == 0);
    CHECK(shard.depots_valid());

    Magazine* popped = shard.depot_pop(3);  // last in, first out
    CHECK(popped == full[Shard::kDepotMagazines - 1]);
    CHECK(popped->count == n);
    CHECK(shard.depot_push(3, popped));

    // Back into their slabs, and the magazines to the empties.
    while (Magazine* m = shard.depot_pop(3)) {
      shard.pool.put_array(m->blocks, m->count, 3);
      shard.put_empty(m);
    }
    CHECK(shard.depot_blocks(3) == 0);

    // Single blocks gather into the loose magazine, which a refill may take before it fills.
    std::vector<void*> single = take_blocks(shard.pool, 3, 3);
    shard.depot_add(3, single.data(), 3);
    CHECK(shard.depot_blocks(3) == 3);
    CHECK(shard.depot_magazines(3) == 0);
    Magazine* loose = shard.depot_pop(3);
    REQUIRE(loose != nullptr);
    CHECK(loose->count == 3);
    CHECK(shard.depot_pop(3) == nullptr);
    shard.depot_add(3, loose->blocks, loose->count);
    shard.put_empty(loose);
    // Adding a magazine's worth turns the loose one into a full one.
    std::vector<void*> more = take_blocks(shard.pool, 3, n);
    shard.depot_add(3, more.data(), n);
    CHECK(shard.depot_magazines(3) == 1);
    CHECK(shard.depot_blocks(3) == n + 3);
    CHECK(held(shard, 3) == 0);
    CHECK(shard.depots_valid());

    // Decay: a trim returns the loose magazine and the full ones that stayed in the depot
    // for a whole window (its low-water mark); empty slabs likewise to the OS.
    const std::uint64_t t0 = 10'000'000'000u, interval = 1'000'000;
    shard.trim(t0, interval);
    CHECK(shard.depot_blocks(3) == n);          // the loose one went back; the full one is noted
    CHECK(shard.trim(t0 + 10, interval) == 0);  // inside the window: nothing happens
    CHECK(shard.depot_magazines(3) == 1);
    shard.trim(t0 + interval, interval);
    CHECK(shard.depot_magazines(3) == 0);
    CHECK(shard.depot_blocks(3) == 0);
    const ClassPool& cp = shard.pool.class_pool(3);
    CHECK(cp.blocks_out == 0);
    shard.trim(t0 + 2 * interval, interval);
    shard.trim(t0 + 3 * interval, interval);
    CHECK(shard.pool.empty_slabs() == 0);
    CHECK(space.committed_bytes() == 0);
    CHECK(shard.pool.is_valid());
  }

  TEST_CASE("deferred blocks are reclaimed once no reader can hold them") {
    SlabSpace space(std::size_t{16} << 20, kSlabBytes);
    EpochDomain epochs;
    MetaArena arena;
    MagazinePool magazines(arena);
    Shard shard(space, magazines, 0, 4);
    ScopedLock guard(shard.lock, shard.lock_stats[kMaintenanceSlot]);
    std::vector<void*> blocks = take_blocks(shard.pool, 3, 5);
    REQUIRE(blocks.size() == 5);
    EpochDomain::Record* reader = epochs.acquire_record();
    epochs.enter(*reader);
    for (void* b : blocks) {
      track::unpoison(b, sizeof(DeferredNode));  // what the facade does before defer
      shard.defer(b, 3, epochs.current());
    }
    CHECK(shard.deferred_in[3].load() == 5);
    CHECK(shard.has_deferred());

    RetireNode* spent = nullptr;
    CHECK(shard.collect(epochs.min_observed(), SIZE_MAX, spent) == 0);  // the epoch has not moved
    CHECK(epochs.try_advance());  // moved once, but the reader saw the old one
    CHECK(shard.collect(epochs.min_observed(), SIZE_MAX, spent) == 0);
    CHECK_FALSE(epochs.try_advance());  // cannot move again while it reads
    CHECK(shard.collect(epochs.min_observed(), SIZE_MAX, spent) == 0);
    CHECK(held(shard, 3) == 5);
    CHECK(shard.has_deferred());
    epochs.leave(*reader);

    CHECK(shard.collect(epochs.min_observed(), 2, spent) == 2);  // the budget bounds the work
    CHECK(shard.pool.class_pool(3).reclaimed == 2);
    CHECK(held(shard, 3) == 3);
    CHECK(shard.collect(epochs.min_observed(), SIZE_MAX, spent) == 3);
    CHECK(shard.pool.class_pool(3).reclaimed == 5);
    CHECK(held(shard, 3) == 0);
    CHECK_FALSE(shard.has_deferred());
    CHECK(shard.collect(epochs.min_observed(), SIZE_MAX, spent) == 0);
    CHECK(spent == nullptr);  // in-block nodes need no recycling
    CHECK(shard.pool.is_valid());
    epochs.release_record(reader);
  }

  TEST_CASE("a retired block travels on an external node that collect hands back") {
    SlabSpace space(std::size_t{16} << 20, kSlabBytes);
    EpochDomain epochs;
    MetaArena arena;
    MagazinePool magazines(arena);
    Shard shard(space, magazines, 1, 4);
    ScopedLock guard(shard.lock, shard.lock_stats[kMaintenanceSlot]);
    void* block = nullptr;
    REQUIRE(shard.pool.take(5, 1, &block) == 1);
    track::on_alloc(block, 96);  // the caller held it
    std::memset(block, 0x42, 96);
    RetireNode node{};
    node.block = block;
    shard.defer_retired(&node, 5, epochs.current());
    CHECK(shard.deferred_in[5].load() == 1);

    RetireNode* spent = nullptr;
    CHECK(shard.collect(epochs.min_observed(), SIZE_MAX, spent) == 0);
    CHECK(spent == nullptr);
    // Nothing was written into the retired block while it waited.
    auto* bytes = static_cast<unsigned char*>(block);
    bool intact = true;
    for (int i = 0; i < 96; ++i) intact &= bytes[i] == 0x42;
    CHECK(intact);
    CHECK(epochs.try_advance());
    CHECK(shard.collect(epochs.min_observed(), SIZE_MAX, spent) == 1);
    CHECK(spent == &node);
    CHECK(held(shard, 5) == 0);
    CHECK(shard.pool.class_pool(5).reclaimed == 1);
    CHECK(shard.pool.is_valid());
  }

  TEST_CASE("a handed-off magazine is reclaimed whole into the depot without touching its blocks") {
    SlabSpace space(std::size_t{16} << 20, kSlabBytes);
    EpochDomain epochs;
    MetaArena arena;
    MagazinePool magazines(arena);
    Shard shard(space, magazines, 0, 4);
    ScopedLock guard(shard.lock, shard.lock_stats[kMaintenanceSlot]);
    const std::uint32_t n = class_batch(2);
    Magazine* full = filled_magazine(shard, 2, n);
    Magazine* partial = filled_magazine(shard, 2, 5);
    for (std::uint32_t i = 0; i < n; ++i) {
      track::on_alloc(full->blocks[i], 48);
      std::memset(full->blocks[i], 0x5A, 48);  // what its last holder wrote
      track::on_free(full->blocks[i], 48);
    }
    shard.hand_off(full, epochs.current());
    shard.hand_off(partial, epochs.current());
    RetireNode* spent = nullptr;
    CHECK(shard.collect(epochs.min_observed(), SIZE_MAX, spent) == 0);  // same epoch: not yet
    CHECK(epochs.try_advance());
    CHECK(shard.collect(epochs.min_observed(), 1, spent) ==
          5);  // one node per budget unit: the partial one first (LIFO)
    CHECK(shard.collect(epochs.min_observed(), 1, spent) == n);
    CHECK(spent == nullptr);
    CHECK(shard.pool.class_pool(2).reclaimed == n + 5);
    CHECK(shard.depot_magazines(2) == 1);
    CHECK(shard.depot_blocks(2) == n + 5);
    Magazine* back = shard.depot_pop(2);
    CHECK(back == full);  // the same magazine, moved whole
    for (std::uint32_t i = 0; i < n; ++i) {
      track::unpoison(back->blocks[i], 48);
      CHECK(static_cast<unsigned char*>(back->blocks[i])[0] == 0x5A);  // nothing was written into it
      track::poison(back->blocks[i], 48);
    }
    CHECK(shard.depots_valid());
    shard.pool.put_array(back->blocks, back->count, 2);
    shard.put_empty(back);
  }

  TEST_CASE("thread counters add up field by field") {
    ThreadCounters a, b;
    for (std::size_t c = 0; c < kNumClasses; ++c) {
      a.allocs[c] = c;
      a.frees[c] = 2 * c;
      b.allocs[c] = 100;
      b.frees[c] = 200;
    }
    a.cross_shard_frees = 3;
    b.cross_shard_frees = 4;
    a += b;
    for (std::size_t c = 0; c < kNumClasses; ++c) {
      CHECK(a.allocs[c] == c + 100);
      CHECK(a.frees[c] == 2 * c + 200);
    }
    CHECK(a.cross_shard_frees == 7);
    ThreadCounters copy = a.read();
    CHECK(copy.allocs == a.allocs);
    CHECK(copy.frees == a.frees);
    CHECK(copy.cross_shard_frees == 7);
  }

  TEST_CASE("the shard lock counts acquisitions and hold time") {
    InstrumentedLock lock;
    LockStats stats;
    for (int i = 0; i < 3; ++i) {
      ScopedLock guard(lock, stats);
    }
    CHECK(stats.acquisitions.load() == 3);
    CHECK(stats.contention.load() == 0);
    CHECK(stats.wait_ticks.load() == 0);
  }
}

TEST_SUITE("concurrency") {
  TEST_CASE("the shard lock counts a contended acquisition and its wait") {
    InstrumentedLock lock;
    LockStats holder_stats, waiter_stats;
    test::TaskThread holder;
    holder.run([&] { lock.lock(holder_stats); });
    std::atomic<bool> trying{false}, acquired{false};
    std::thread waiter([&] {
      trying.store(true);
      ScopedLock guard(lock, waiter_stats);
      acquired.store(true);
    });
    while (!trying.load()) std::this_thread::yield();
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    CHECK_FALSE(acquired.load());
    holder.run([&] { lock.unlock(); });
    waiter.join();
    CHECK(acquired.load());
    CHECK(holder_stats.acquisitions.load() == 1);
    CHECK(holder_stats.hold_ticks.load() > 0);
    CHECK(waiter_stats.acquisitions.load() == 1);
    CHECK(waiter_stats.contention.load() == 1);
    CHECK(waiter_stats.wait_ticks.load() > 0);
  }

  TEST_CASE("deferred pushes from many threads while the owner collects lose nothing") {
    constexpr int kProducers = 4;
    const std::uint32_t per_producer = test::kSlowBuild ? 2000 : 10000;
    SlabSpace space(std::size_t{64} << 20, kSlabBytes);
    EpochDomain epochs;
    MetaArena arena;
    MagazinePool magazines(arena);
    Shard shard(space, magazines, 0, 4);
    std::vector<std::vector<void*>> work(kProducers);
    {
      ScopedLock guard(shard.lock, shard.lock_stats[kMaintenanceSlot]);
      for (auto& list : work) {
        list = take_blocks(shard.pool, 1, per_producer);
        REQUIRE(list.size() == per_producer);
      }
    }
    // Half the producers push single blocks (threads without a cache), half push
    // magazines (the batched cross-shard free); the owner collects meanwhile.
    std::atomic<int> done{0};
    std::vector<std::thread> producers;
    for (int t = 0; t < kProducers; ++t) {
      producers.emplace_back([&, t] {
        if (t % 2 == 0) {
          for (void* b : work[t]) {
            track::unpoison(b, sizeof(DeferredNode));
            shard.defer(b, 1, epochs.current());
          }
        } else {
          for (std::size_t i = 0; i < work[t].size();) {
            Magazine* m = magazines.take();
            m->cls = 1;
            while (m->count < class_batch(1) && i < work[t].size()) m->blocks[m->count++] = work[t][i++];
            shard.hand_off(m, epochs.current());
          }
        }
        done.fetch_add(1);
      });
    }
    std::size_t reclaimed = 0;
    std::thread owner([&] {
      for (;;) {
        const bool last = done.load() == kProducers;
        {
          ScopedLock guard(shard.lock, shard.lock_stats[kMaintenanceSlot]);
          RetireNode* spent = nullptr;
          epochs.try_advance();
          reclaimed += shard.collect(epochs.min_observed(), SIZE_MAX, spent);
        }
        if (last) break;
        std::this_thread::yield();
      }
    });
    for (auto& t : producers) t.join();
    owner.join();
    const std::uint64_t total = std::uint64_t{kProducers} * per_producer;
    CHECK(reclaimed == total);
    CHECK(shard.deferred_in[1].load() == total / 2);  // magazines are counted by their senders
    ScopedLock guard(shard.lock, shard.lock_stats[kMaintenanceSlot]);
    CHECK_FALSE(shard.has_deferred());
    CHECK(held(shard, 1) == 0);
    CHECK(shard.depots_valid());
    CHECK(shard.pool.class_pool(1).reclaimed == total);
    CHECK(shard.pool.is_valid());
  }
}

}  // namespace
}  // namespace sydra::alloc
