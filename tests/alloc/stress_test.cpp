// Stress tests of the allocator as a whole (alloc/small_pool_allocator.hpp): many threads,
// cross-thread frees, readers under epochs, and a maintenance thread, for
// SYDRA_STRESS_SECONDS (default 1 s; they also run under TSan, which is ~10x slower).
//
// Longer runs by hand, e.g. a minute each:
//   SYDRA_STRESS_SECONDS=60 ctest --preset release -L stress
//   SYDRA_STRESS_SECONDS=60 build/tsan/tests/alloc_tests --test-suite=stress
#include "alloc/small_pool_allocator.hpp"

#include <doctest/doctest.h>

#include <array>
#include <atomic>
#include <barrier>
#include <chrono>
#include <cstring>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

#include "support/alloc_test_support.hpp"

namespace sydra::alloc {
namespace {

using test::check_pattern;
using test::fill_pattern;
using test::pattern_byte;
using test::small_options;

using Clock = std::chrono::steady_clock;

// A block published to readers: a 16-byte header, then pattern bytes up to `size`.
struct PublishedHeader {
  std::uint64_t seed;
  std::uint32_t size;
  std::uint32_t check;
};
static_assert(sizeof(PublishedHeader) == 16);

std::uint32_t header_check(std::uint64_t seed, std::uint32_t size) {
  return static_cast<std::uint32_t>((seed * 0x9E3779B97F4A7C15ull) >> 32) ^ size ^ 0xC0FFEEu;
}

void write_published(void* p, std::uint32_t size, std::uint64_t seed) {
  PublishedHeader h{seed, size, header_check(seed, size)};
  std::memcpy(p, &h, sizeof h);
  auto* bytes = static_cast<unsigned char*>(p);
  for (std::size_t i = sizeof h; i < size; ++i) bytes[i] = pattern_byte(seed, i);
}

bool read_published(const void* p) {
  PublishedHeader h;
  std::memcpy(&h, p, sizeof h);
  if (h.size < sizeof h || h.size > kMaxSmallSize || h.check != header_check(h.seed, h.size)) return false;
  auto* bytes = static_cast<const unsigned char*>(p);
  for (std::size_t i = sizeof h; i < h.size; ++i)
    if (bytes[i] != pattern_byte(h.seed, i)) return false;
  return true;
}

struct Item {
  void* p;
  std::size_t size;
  std::size_t align;
  std::uint64_t seed;
};

// A mutex-protected queue of blocks handed from one thread to another.
class Handoff {
 public:
  void push(const Item& item) {
    std::lock_guard<std::mutex> lock(mutex_);
    items_.push_back(item);
  }
  std::vector<Item> take(std::size_t max) {
    std::lock_guard<std::mutex> lock(mutex_);
    std::vector<Item> out;
    while (!items_.empty() && out.size() < max) {
      out.push_back(items_.front());
      items_.pop_front();
    }
    return out;
  }

 private:
  std::mutex mutex_;
  std::deque<Item> items_;
};

// Checks the end state: everything freed and collected, nothing cached, counts balanced.
void check_quiet_end_state(SmallPoolAllocator& a) {
  a.flush_thread_cache();  // hands this thread's blocks of other shards to their owners too
  test::drain_deferred(a, 16);
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
  CHECK(s.fallback.allocs == s.fallback.frees);
  CHECK(s.fallback.live_bytes == 0);
  CHECK(s.memory.pool_live_bytes == 0);
  CHECK(a.is_valid());
}

TEST_SUITE("stress") {
  // Writers allocate, verify and free blocks of every size, hand blocks to each other
  // (cross-thread and cross-shard frees) and publish blocks to readers through atomic
  // pointers, retiring the block they replace. Readers verify what they load inside an
  // epoch section (one reader) or between QSBR quiescent points (the other): a reader
  // must never see a block that was reclaimed under it. A maintenance thread advances the
  // epoch, collects and takes snapshots all along.
  TEST_CASE("writers readers and maintenance run concurrently without corruption") {
    SmallPoolAllocator a(small_options(2));
    constexpr int kWriters = 3;
    constexpr int kReaders = 2;
    constexpr std::size_t kSlots = 64;
    const double seconds = test::stress_seconds();
    std::array<std::atomic<void*>, kSlots> slots{};
    std::array<Handoff, kWriters> handoffs;
    std::atomic<bool> stop{false};
    std::atomic<std::uint64_t> corrupted{0}, bad_reads{0}, failed{0}, reads{0}, writes{0}, published{0};
    std::atomic<std::uint64_t> maintenance_rounds{0};
    std::barrier writers_done(kWriters);

    auto writer = [&](int w) {
      test::Rng rng(0xA110C000u + static_cast<std::uint64_t>(w));
      std::vector<Item> mine;
      std::uint64_t seed = static_cast<std::uint64_t>(w + 1) << 48;
      auto release = [&](const Item& item, bool sized) {
        if (!check_pattern(item.p, item.size, item.seed)) corrupted.fetch_add(1);
        if (sized && item.align <= kMinBlock) {
          a.deallocate(item.p, item.size);
        } else {
          a.deallocate(item.p);
        }
      };
      auto take_random = [&]() {
        const std::size_t k = rng.next() % mine.size();
        Item item = mine[k];
        mine[k] = mine.back();
        mine.pop_back();
        return item;
      };
      while (!stop.load(std::memory_order_relaxed)) {
        const unsigned r = static_cast<unsigned>(rng.next() % 100);
        if (mine.size() > 2000) {
          release(take_random(), false);
        } else if (r < 35 || mine.empty()) {
          const unsigned kind = static_cast<unsigned>(rng.next() % 100);
          const std::size_t size = kind < 85 ? rng.between(1, 256) : kind < 95 ? rng.between(257, 2048) : 0;
          const unsigned ak = static_cast<unsigned>(rng.next() % 100);
          const std::size_t align = ak < 85   ? kMinBlock
                                    : ak < 97 ? std::size_t{1} << rng.between(5, 8)
                                              : std::size_t{1} << rng.between(9, 12);
          void* p = a.allocate(size, align);
          if (p == nullptr || !test::is_aligned(p, align)) {
            failed.fetch_add(1);
            continue;
          }
          fill_pattern(p, size, ++seed);
          mine.push_back({p, size, align, seed});
        } else if (r < 55) {
          release(take_random(), rng.chance(50));
        } else if (r < 70) {
          const int to =
              static_cast<int>((static_cast<unsigned>(w) + 1 + rng.next() % (kWriters - 1)) % kWriters);
          handoffs[static_cast<std::size_t>(to)].push(take_random());
        } else if (r < 80) {
          for (const Item& item : handoffs[static_cast<std::size_t>(w)].take(16)) release(item, false);
        } else if (r < 90) {
          const auto size = static_cast<std::uint32_t>(rng.between(16, 256));
          void* p = a.allocate(size);
          if (p == nullptr) {
            failed.fetch_add(1);
            continue;
          }
          write_published(p, size, ++seed);
          void* old = slots[rng.next() % kSlots].exchange(p, std::memory_order_acq_rel);
          if (old != nullptr) {
            if (!read_published(old)) corrupted.fetch_add(1);
            a.retire(old);
          }
          published.fetch_add(1, std::memory_order_relaxed);
        } else {
          Item& item = mine[rng.next() % mine.size()];
          if (item.align > kMinBlock) continue;
          if (!check_pattern(item.p, item.size, item.seed)) corrupted.fetch_add(1);
          const std::size_t new_size = rng.between(1, 600);
          void* q = a.reallocate(item.p, new_size);
          if (q == nullptr) {
            failed.fetch_add(1);
            continue;
          }
          if (!check_pattern(q, std::min(item.size, new_size), item.seed)) corrupted.fetch_add(1);
          fill_pattern(q, new_size, ++seed);
          item = {q, new_size, kMinBlock, seed};
        }
        writes.fetch_add(1, std::memory_order_relaxed);
      }
      writers_done.arrive_and_wait();  // nobody hands blocks to anyone after this
      for (const Item& item : handoffs[static_cast<std::size_t>(w)].take(SIZE_MAX)) release(item, false);
      for (const Item& item : mine) release(item, true);
    };

    auto reader = [&](int r) {
      test::Rng rng(0xBEEF00u + static_cast<std::uint64_t>(r));
      const bool qsbr = r % 2 == 1;
      if (qsbr) a.qsbr_online();
      std::uint64_t local_reads = 0;
      while (!stop.load(std::memory_order_relaxed)) {
        auto read_some = [&] {
          for (int k = 0; k < 16; ++k) {
            const void* p = slots[rng.next() % kSlots].load(std::memory_order_acquire);
            if (p == nullptr) continue;
            if (!read_published(p)) bad_reads.fetch_add(1);
            ++local_reads;
          }
        };
        if (qsbr) {
          read_some();
          a.quiescent();
        } else {
          SmallPoolAllocator::EpochGuard guard(a);
          read_some();
        }
      }
      if (qsbr) a.qsbr_offline();
      reads.fetch_add(local_reads);
    };

    auto maintenance = [&] {
      std::uint64_t round = 0;
      while (!stop.load(std::memory_order_relaxed)) {
        a.advance_epoch();
        a.collect_garbage();
        if (round % 32 == 0) {
          const AllocatorStats s = a.snapshot();
          if (s.version != kStatsVersion) failed.fetch_add(1);
        }
        if (round % 256 == 0 && !a.is_valid()) failed.fetch_add(1);
        ++round;
        std::this_thread::sleep_for(std::chrono::microseconds(100));
      }
      maintenance_rounds.store(round);
    };

    std::vector<std::thread> threads;
    for (int w = 0; w < kWriters; ++w) threads.emplace_back(writer, w);
    for (int r = 0; r < kReaders; ++r) threads.emplace_back(reader, r);
    threads.emplace_back(maintenance);
    std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
    stop.store(true);
    for (auto& t : threads) t.join();

    for (auto& slot : slots) {
      void* p = slot.exchange(nullptr);
      if (p == nullptr) continue;
      if (!read_published(p)) corrupted.fetch_add(1);
      a.deallocate(p);
    }
    MESSAGE("writer ops " << writes.load() << ", published " << published.load() << ", reads " << reads.load()
                          << ", maintenance rounds " << maintenance_rounds.load());
    CHECK(corrupted.load() == 0);
    CHECK(bad_reads.load() == 0);
    CHECK(failed.load() == 0);
    CHECK(writes.load() > 0);
    CHECK(published.load() > 0);
    CHECK(reads.load() > 0);
    CHECK(maintenance_rounds.load() > 0);
    const AllocatorStats s = a.snapshot();
    CHECK(s.shard_deferred_total > 0);
    CHECK(s.epoch.advances > 0);
    check_quiet_end_state(a);
  }

  // Thread pools come and go: short-lived threads allocate, hand blocks to a long-lived
  // consumer and exit with blocks of theirs still live, while a maintenance thread
  // collects. Exit must flush caches and keep counters, and frees aimed at the shards of
  // exited threads must still be reclaimed.
  TEST_CASE("short-lived threads allocate hand off and exit under load") {
    SmallPoolAllocator a(small_options(2));
    const double seconds = test::stress_seconds();
    const std::uint64_t threads_before = a.snapshot().epoch.threads;
    Handoff handoff;
    std::atomic<bool> stop{false}, producers_done{false};
    std::atomic<std::uint64_t> corrupted{0}, failed{0}, spawned{0};

    std::thread consumer([&] {
      for (;;) {
        const bool last = producers_done.load();
        std::vector<Item> items = handoff.take(64);
        for (const Item& item : items) {
          if (!check_pattern(item.p, item.size, item.seed)) corrupted.fetch_add(1);
          a.deallocate(item.p);
        }
        if (items.empty()) {
          if (last) break;
          std::this_thread::yield();
        }
      }
    });
    std::thread maintenance([&] {
      while (!stop.load()) {
        a.advance_epoch();
        a.collect_garbage();
        std::this_thread::sleep_for(std::chrono::microseconds(200));
      }
    });

    const auto deadline = Clock::now() + std::chrono::duration<double>(seconds);
    std::uint64_t generation = 0;
    while (Clock::now() < deadline) {
      std::vector<std::thread> batch;
      for (int t = 0; t < 4; ++t) {
        batch.emplace_back([&, t, generation] {
          test::Rng rng(generation * 8 + static_cast<std::uint64_t>(t));
          SmallPoolAllocator::EpochGuard guard(a);
          std::uint64_t seed = (generation << 20) | (static_cast<std::uint64_t>(t) << 16);
          std::vector<Item> mine;
          for (int i = 0; i < 300; ++i) {
            const std::size_t size = rng.between(1, 300);
            void* p = a.allocate(size);
            if (p == nullptr) {
              failed.fetch_add(1);
              continue;
            }
            fill_pattern(p, size, ++seed);
            mine.push_back({p, size, kMinBlock, seed});
          }
          for (std::size_t i = 0; i < mine.size(); ++i) {
            if (i % 2 == 0) {
              handoff.push(mine[i]);  // freed by the consumer, possibly after this thread exits
            } else if (i % 3 == 0) {
              if (!check_pattern(mine[i].p, mine[i].size, mine[i].seed)) corrupted.fetch_add(1);
              a.deallocate(mine[i].p);
            } else {
              handoff.push(mine[i]);
            }
          }
        });
        spawned.fetch_add(1);
      }
      for (auto& t : batch) t.join();
      ++generation;
    }
    producers_done.store(true);
    consumer.join();
    stop.store(true);
    maintenance.join();

    MESSAGE("short-lived threads: " << spawned.load());
    CHECK(corrupted.load() == 0);
    CHECK(failed.load() == 0);
    CHECK(spawned.load() > 0);
    const AllocatorStats s = a.snapshot();
    CHECK(s.epoch.threads <= threads_before + 1);  // only the main thread may remain registered
    for (const ShardStats& sh : s.shards) CHECK(sh.threads <= 1);
    check_quiet_end_state(a);
  }
}

}  // namespace
}  // namespace sydra::alloc
