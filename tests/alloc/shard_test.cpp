// Tests alloc/shard.hpp: slab pools (take, put, empty slabs, the retained bound), the
// shard's deferred queue and its collection by epoch, and the instrumented shard lock.
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

// Unlinks a chain made by SlabPool::take into a vector (links are read like the pool does).
std::vector<void*> chain_to_vector(void* head) {
  std::vector<void*> blocks;
  while (head != nullptr) {
    blocks.push_back(head);
    head = track::read_link(head);
  }
  return blocks;
}

// Blocks of a class still held outside the pool: taken and neither put back into a slab
// nor parked in the pool's transfer cache.
std::uint64_t held(const ClassPool& cp) {
  return cp.blocks_out - cp.transfer_blocks();
}

// Links blocks into a chain for put_chain.
void* vector_to_chain(const std::vector<void*>& blocks) {
  void* head = nullptr;
  for (void* b : blocks) {
    track::write_link(b, head);
    head = b;
  }
  return head;
}

TEST_SUITE("unit") {
  TEST_CASE("take carves blocks from one slab and put_chain gives them back") {
    SlabSpace space(std::size_t{16} << 20, kSlabBytes);
    SlabPool pool(space, 0, 1);
    void* head = nullptr;
    REQUIRE(pool.take(3, 10, &head) == 10);
    std::vector<void*> blocks = chain_to_vector(head);
    REQUIRE(blocks.size() == 10);
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

    pool.put_chain(vector_to_chain(blocks), 3);
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
    void* head = nullptr;
    REQUIRE(pool.take(3, 4, &head) == 4);
    pool.put_chain(head, 3);
    REQUIRE(pool.empty_slabs() == 1);
    const std::uint64_t committed = space.committed_bytes();
    const std::uint64_t carved = space.carved_slabs();

    REQUIRE(pool.take(9, 4, &head) == 4);
    CHECK(pool.empty_slabs() == 0);
    CHECK(space.committed_bytes() == committed);
    CHECK(space.carved_slabs() == carved);
    CHECK(space.tag_of(head) == make_tag(0, 9));
    CHECK(pool.class_pool(9).slabs == 1);
    pool.put_chain(head, 9);
    CHECK(pool.is_valid());
  }

  TEST_CASE("a full slab leaves the partial list and returns when a block comes back") {
    SlabSpace space(std::size_t{16} << 20, kSlabBytes);
    SlabPool pool(space, 1, 4);
    const std::uint32_t per_slab = kSlabBytes / 256;
    void* head = nullptr;
    REQUIRE(pool.take(11, per_slab, &head) == per_slab);
    std::vector<void*> blocks = chain_to_vector(head);
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
    pool.put_chain(vector_to_chain(blocks), 11);
    CHECK(cp.blocks_out == 0);
    CHECK(pool.is_valid());
  }

  TEST_CASE("take spans several slabs and the empty slabs beyond the bound go back to the OS") {
    SlabSpace space(std::size_t{16} << 20, kSlabBytes);
    SlabPool pool(space, 0, 1);
    const std::uint32_t per_slab = kSlabBytes / 256;
    void* head = nullptr;
    REQUIRE(pool.take(11, 3 * per_slab, &head) == 3 * per_slab);
    CHECK(pool.class_pool(11).slabs == 3);
    CHECK(space.committed_bytes() == 3 * kSlabBytes);
    const std::uint64_t returned = space.returned_bytes();

    pool.put_chain(head, 11);
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
    void* head = nullptr;
    CHECK(pool.take(7, 3 * per_slab, &head) == 2 * per_slab);
    void* none = nullptr;
    CHECK(pool.take(7, 1, &none) == 0);
    CHECK(none == nullptr);
    pool.put_chain(head, 7);
    CHECK(pool.is_valid());
  }

  TEST_CASE("the transfer cache keeps whole batches and trim returns what stayed unused") {
    SlabSpace space(std::size_t{16} << 20, kSlabBytes);
    SlabPool pool(space, 0, 4);
    const ClassPool& cp = pool.class_pool(3);
    const std::uint32_t n = class_batch(3);
    std::vector<void*> chains;
    for (std::uint32_t i = 0; i <= SlabPool::kTransferBatches; ++i) {
      void* head = nullptr;
      REQUIRE(pool.take(3, n, &head) == n);
      chains.push_back(head);
    }
    for (std::uint32_t i = 0; i < SlabPool::kTransferBatches; ++i) CHECK(pool.push_batch(3, chains[i]));
    CHECK_FALSE(pool.push_batch(3, chains.back()));  // full: the caller puts it back into slabs
    pool.put_chain(chains.back(), 3);
    CHECK(cp.transfer_batches == SlabPool::kTransferBatches);
    CHECK(cp.transfer_blocks() == std::uint64_t{SlabPool::kTransferBatches} * n);
    CHECK(cp.blocks_out == cp.transfer_blocks());

    void* popped = pool.pop_batch(3);  // last in, first out
    CHECK(popped == chains[SlabPool::kTransferBatches - 1]);
    CHECK(chain_to_vector(popped).size() == n);
    CHECK(pool.push_batch(3, popped));

    // Loose blocks gather into a batch of their own.
    void* head = nullptr;
    REQUIRE(pool.take(3, n, &head) == n);
    std::vector<void*> loose = chain_to_vector(head);
    pool.put_chain(vector_to_chain(std::vector<void*>(loose.begin(), loose.end() - 1)), 3);
    std::uint32_t count = 0;
    CHECK(pool.take_loose(3, &count) == nullptr);
    CHECK(count == 0);
    void* last = loose.back();
    REQUIRE(pool.take(3, 1, &head) == 1);  // any block: push_loose takes ownership
    pool.push_loose(3, head);
    CHECK(cp.loose_count == 1);
    void* taken = pool.take_loose(3, &count);
    CHECK(count == 1);
    CHECK(taken == head);
    pool.put_chain(taken, 3);
    track::write_link(last, nullptr);
    pool.put_chain(last, 3);

    // Decay: the first trim of a window only notes what is there; what stayed unused for
    // a whole window goes back (batches to their slabs, then empty slabs to the OS).
    const std::uint64_t t0 = 10'000'000'000u, interval = 1'000'000;
    pool.trim(t0, interval);
    CHECK(pool.trim(t0 + 10, interval) == 0);  // inside the window: nothing happens
    CHECK(cp.transfer_batches == SlabPool::kTransferBatches);
    pool.trim(t0 + interval, interval);
    CHECK(cp.transfer_batches == 0);
    CHECK(cp.blocks_out == 0);
    pool.trim(t0 + 2 * interval, interval);
    pool.trim(t0 + 3 * interval, interval);
    CHECK(pool.empty_slabs() == 0);
    CHECK(space.committed_bytes() == 0);
    CHECK(pool.is_valid());
  }

  TEST_CASE("deferred blocks are reclaimed once no reader can hold them") {
    SlabSpace space(std::size_t{16} << 20, kSlabBytes);
    EpochDomain epochs;
    Shard shard(space, 0, 4);
    ScopedLock guard(shard.lock, shard.lock_stats[kMaintenanceSlot]);
    void* head = nullptr;
    REQUIRE(shard.pool.take(3, 5, &head) == 5);
    std::vector<void*> blocks = chain_to_vector(head);
    EpochDomain::Record* reader = epochs.acquire_record();
    epochs.enter(*reader);
    for (void* b : blocks) {
      track::unpoison(b, sizeof(DeferredNode));  // what the facade does before defer
      shard.defer(b, 3, epochs.current());
    }
    CHECK(shard.deferred.enqueued() == 5);
    CHECK(shard.deferred_in[3].load() == 5);
    CHECK(shard.has_deferred());

    RetireNode* spent = nullptr;
    CHECK(shard.collect(epochs, false, SIZE_MAX, spent) == 0);  // the epoch has not moved
    CHECK(shard.collect(epochs, true, SIZE_MAX, spent) == 0);   // moved once, but the reader saw the old one
    CHECK(shard.collect(epochs, true, SIZE_MAX, spent) == 0);   // cannot move again while it reads
    CHECK(held(shard.pool.class_pool(3)) == 5);
    CHECK(shard.has_deferred());
    epochs.leave(*reader);

    CHECK(shard.collect(epochs, false, 2, spent) == 2);  // the budget bounds the work
    CHECK(shard.pool.class_pool(3).reclaimed == 2);
    CHECK(held(shard.pool.class_pool(3)) == 3);
    CHECK(shard.collect(epochs, false, SIZE_MAX, spent) == 3);
    CHECK(shard.pool.class_pool(3).reclaimed == 5);
    CHECK(held(shard.pool.class_pool(3)) == 0);
    CHECK_FALSE(shard.has_deferred());
    CHECK(shard.collect(epochs, true, SIZE_MAX, spent) == 0);
    CHECK(spent == nullptr);  // in-block nodes need no recycling
    CHECK(shard.pool.is_valid());
    epochs.release_record(reader);
  }

  TEST_CASE("a retired block travels on an external node that collect hands back") {
    SlabSpace space(std::size_t{16} << 20, kSlabBytes);
    EpochDomain epochs;
    Shard shard(space, 1, 4);
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
    CHECK(shard.collect(epochs, false, SIZE_MAX, spent) == 0);
    CHECK(spent == nullptr);
    // Nothing was written into the retired block while it waited.
    auto* bytes = static_cast<unsigned char*>(block);
    bool intact = true;
    for (int i = 0; i < 96; ++i) intact &= bytes[i] == 0x42;
    CHECK(intact);
    CHECK(shard.collect(epochs, true, SIZE_MAX, spent) == 1);
    CHECK(spent == &node);
    CHECK(held(shard.pool.class_pool(5)) == 0);
    CHECK(shard.pool.class_pool(5).reclaimed == 1);
    CHECK(shard.pool.is_valid());
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
    Shard shard(space, 0, 4);
    std::vector<std::vector<void*>> work(kProducers);
    {
      ScopedLock guard(shard.lock, shard.lock_stats[kMaintenanceSlot]);
      for (auto& list : work) {
        void* head = nullptr;
        REQUIRE(shard.pool.take(1, per_producer, &head) == per_producer);
        list = chain_to_vector(head);
        for (void* b : list) track::unpoison(b, sizeof(DeferredNode));
      }
    }
    std::atomic<int> done{0};
    std::vector<std::thread> producers;
    for (int t = 0; t < kProducers; ++t) {
      producers.emplace_back([&, t] {
        for (void* b : work[t]) shard.defer(b, 1, epochs.current());
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
          reclaimed += shard.collect(epochs, true, SIZE_MAX, spent);
        }
        if (last) break;
        std::this_thread::yield();
      }
    });
    for (auto& t : producers) t.join();
    owner.join();
    const std::uint64_t total = std::uint64_t{kProducers} * per_producer;
    CHECK(reclaimed == total);
    CHECK(shard.deferred.enqueued() == total);
    CHECK(shard.deferred_in[1].load() == total);
    ScopedLock guard(shard.lock, shard.lock_stats[kMaintenanceSlot]);
    CHECK_FALSE(shard.has_deferred());
    CHECK(held(shard.pool.class_pool(1)) == 0);
    CHECK(shard.pool.class_pool(1).reclaimed == total);
    CHECK(shard.pool.is_valid());
  }
}

}  // namespace
}  // namespace sydra::alloc
