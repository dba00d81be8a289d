// Tests server/storage/memtable.hpp: appends and reads, chunk growth, the series table's
// growth, sorting for a flush, accounting, retire-not-free, and concurrent writers and
// lock-free readers across generation swaps (suite `concurrency`, run under tsan).
#include "server/storage/memtable.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <shared_mutex>
#include <string>
#include <thread>
#include <vector>

#include "support/alloc_test_support.hpp"

namespace sydra::storage {
namespace {

using alloc::SmallPoolAllocator;

std::vector<Point> read_all(const Memtable& m, SeriesId id, SmallPoolAllocator& a) {
  SmallPoolAllocator::EpochGuard guard(a);
  std::vector<Point> out;
  m.read(id, INT64_MIN, INT64_MAX, out);
  return out;
}

// "prefix<n>" (operator+ on a temporary trips g++ 12's -Wrestrict at -O3).
std::string label(const char* prefix, std::uint64_t n) {
  std::string s(prefix);
  s += std::to_string(n);
  return s;
}

std::uint64_t retired_pending(SmallPoolAllocator& a) {
  std::uint64_t pending = 0;
  for (const auto& c : a.snapshot().buckets) pending += c.deferred_pending;
  return pending;
}

TEST_SUITE("unit") {
  TEST_CASE("memtable: appended points read back in append order, filtered by range") {
    SmallPoolAllocator a(alloc::test::small_options());
    Memtable m(a);
    const std::vector<Point> pts = {{10, 1.0}, {30, 3.0}, {20, 2.0}};
    CHECK(m.append(7, "cpu", pts));
    CHECK_FALSE(m.append(7, "cpu", std::vector<Point>{{40, 4.0}}));
    CHECK(m.append(8, "mem", std::vector<Point>{{10, 9.0}}));

    auto all = read_all(m, 7, a);
    REQUIRE(all.size() == 4);
    CHECK(all[0].ts == 10);
    CHECK(all[1].ts == 30);
    CHECK(all[2].ts == 20);
    CHECK(all[3].value == 4.0);

    SmallPoolAllocator::EpochGuard guard(a);
    std::vector<Point> some;
    m.read(7, 15, 30, some);
    REQUIRE(some.size() == 2);
    CHECK(some[0].ts == 30);
    CHECK(some[1].ts == 20);
    std::vector<Point> none;
    m.read(99, INT64_MIN, INT64_MAX, none);
    CHECK(none.empty());
    CHECK(m.contains(8));
    CHECK_FALSE(m.contains(99));
    CHECK(m.series() == 2);
    CHECK(m.points() == 5);
  }

  TEST_CASE("memtable: a series grows chunk by chunk and bytes follow the chunks") {
    SmallPoolAllocator a(alloc::test::small_options());
    Memtable m(a);
    const std::uint64_t empty_bytes = m.bytes();
    std::vector<Point> pts;
    for (int i = 0; i < 1000; ++i) pts.push_back({i, i * 0.5});
    // In uneven pieces, so chunks are filled across append calls.
    std::size_t done = 0;
    for (std::size_t piece : {1u, 14u, 15u, 16u, 200u, 754u}) {
      m.append(1, "s", std::span<const Point>(pts).subspan(done, piece));
      done += piece;
    }
    REQUIRE(done == pts.size());
    auto back = read_all(m, 1, a);
    REQUIRE(back.size() == 1000);
    for (int i = 0; i < 1000; ++i) {
      CHECK(back[i].ts == i);
      CHECK(back[i].value == i * 0.5);
    }
    const std::uint64_t chunks = (1000 + Memtable::kChunkPoints - 1) / Memtable::kChunkPoints;
    // The node (id, head, tail, lock, key size, key "s") rounds up to 48 bytes.
    CHECK(m.bytes() == empty_bytes + chunks * 256 + 48);
    CHECK(m.points() == 1000);
  }

  TEST_CASE("memtable: the series table grows and keeps every series") {
    SmallPoolAllocator a(alloc::test::small_options());
    Memtable m(a);
    for (std::uint64_t id = 0; id < 5000; ++id) {
      // Ids sharing low bits collide in the table: probing must cope.
      const SeriesId sid = id * 1024;
      m.append(sid, label("k", id), std::vector<Point>{{static_cast<Timestamp>(id), 1.0}});
    }
    CHECK(m.series() == 5000);
    for (std::uint64_t id = 0; id < 5000; ++id) {
      auto pts = read_all(m, id * 1024, a);
      REQUIRE(pts.size() == 1);
      CHECK(pts[0].ts == static_cast<Timestamp>(id));
    }
    std::map<SeriesId, std::string> seen;
    {
      SmallPoolAllocator::EpochGuard guard(a);
      m.for_each_series([&](SeriesId id, std::string_view key) { seen[id] = std::string(key); });
    }
    CHECK(seen.size() == 5000);
    CHECK(seen[1024 * 77] == "k77");
  }

  TEST_CASE("memtable: for_each_sorted sorts and keeps the last write of equal timestamps") {
    SmallPoolAllocator a(alloc::test::small_options());
    Memtable m(a);
    m.append(1, "a", std::vector<Point>{{5, 1}, {3, 1}, {5, 2}, {1, 1}});
    m.append(1, "a", std::vector<Point>{{3, 7}, {9, 9}});
    m.append(2, "b", std::vector<Point>{{1, 1}, {2, 2}});
    std::map<SeriesId, std::vector<Point>> got;
    std::map<SeriesId, std::string> keys;
    m.for_each_sorted([&](SeriesId id, std::string_view key, std::span<const Point> pts) {
      got[id].assign(pts.begin(), pts.end());
      keys[id] = std::string(key);
    });
    REQUIRE(got[1].size() == 4);
    CHECK(got[1][0].ts == 1);
    CHECK(got[1][1].ts == 3);
    CHECK(got[1][1].value == 7);
    CHECK(got[1][2].ts == 5);
    CHECK(got[1][2].value == 2);
    CHECK(got[1][3].ts == 9);
    CHECK(got[2].size() == 2);
    CHECK(keys[1] == "a");
    CHECK(keys[2] == "b");
  }

  TEST_CASE("memtable: for_each_sorted visits series in ascending id order, whatever their slots") {
    SmallPoolAllocator a(alloc::test::small_options());
    Memtable m(a);
    // Ids whose low bits (their slots) order them differently from their values.
    const std::vector<SeriesId> ids = {0xFF00000000000001ULL, 0x0200000000000003ULL, 5, 0x10,
                                       0x7000000000000002ULL};
    for (SeriesId id : ids) m.append(id, "k", std::vector<Point>{{1, 1}});
    std::vector<SeriesId> order;
    m.for_each_sorted([&](SeriesId id, std::string_view, std::span<const Point>) { order.push_back(id); });
    std::vector<SeriesId> want = ids;
    std::sort(want.begin(), want.end());
    CHECK(order == want);
  }

  TEST_CASE("memtable: retire_all empties the generation and retires, never frees, under a reader") {
    SmallPoolAllocator a(alloc::test::small_options());
    Memtable m(a);
    std::vector<Point> pts;
    for (int i = 0; i < 100; ++i) pts.push_back({i, 1.0});
    m.append(1, "x", pts);
    const std::uint64_t empty_table_bytes = Memtable(a).bytes();
    a.advance_epoch();
    a.collect_garbage();
    const std::uint64_t pending_before = retired_pending(a);

    a.enter_epoch();  // a reader inside
    m.retire_all();
    CHECK(m.empty());
    CHECK(m.series() == 0);
    CHECK(m.bytes() == empty_table_bytes);
    CHECK(read_all(m, 1, a).empty());
    // 7 chunks, the node and the table wait for the reader.
    a.advance_epoch();
    a.collect_garbage();
    CHECK(retired_pending(a) >= pending_before + 8);
    a.leave_epoch();

    for (int i = 0; i < 4; ++i) {
      a.advance_epoch();
      a.collect_garbage();
    }
    CHECK(retired_pending(a) == pending_before);
    // The generation is reusable.
    m.append(1, "x", std::vector<Point>{{5, 5}});
    CHECK(read_all(m, 1, a).size() == 1);
  }
}

TEST_SUITE("concurrency") {
  // Writers append to their own series (ts 0, 1, 2, ... with value = f(id, ts)) and, all
  // of them, to one shared series; a swapper moves generations (exclusive lock, like the
  // engine's flush) and retires the old one; a collector advances epochs and reclaims, so
  // retired chunks are reused at once by writers. Readers, lock-free inside epoch sections,
  // check that every series they see is a gap-free prefix with the right values: a chunk
  // freed under them and reused would show foreign points.
  TEST_CASE("memtable: lock-free readers see consistent prefixes while generations are retired") {
    SmallPoolAllocator a(alloc::test::small_options());
    Memtable gen_a(a), gen_b(a);
    std::atomic<Memtable*> active{&gen_a};
    std::atomic<Memtable*> flushing{nullptr};
    std::shared_mutex gen_mutex;
    std::atomic<bool> stop{false};
    std::atomic<std::uint64_t> reads{0}, swaps{0}, failures{0};
    constexpr int kWriters = 3;
    constexpr int kReaders = 2;
    const auto run_for = std::chrono::milliseconds(alloc::test::kSlowBuild ? 1500 : 700);

    auto value_of = [](SeriesId id, Timestamp ts) { return static_cast<double>(id) * 1e6 + ts; };
    auto check_prefix = [&](const std::vector<Point>& pts, SeriesId id) {
      // Per generation the writer's ts restart at a new base, so check each run: consecutive.
      for (std::size_t i = 0; i < pts.size(); ++i) {
        if (pts[i].value != value_of(id, pts[i].ts)) failures.fetch_add(1);
        if (i > 0 && pts[i].ts != pts[i - 1].ts + 1) failures.fetch_add(1);
      }
    };

    std::vector<std::thread> threads;
    for (int w = 0; w < kWriters; ++w) {
      threads.emplace_back([&, w] {
        alloc::test::Rng rng(w + 1);
        const SeriesId own = 100 + w;
        Timestamp ts = 0;
        std::vector<Point> batch;
        while (!stop.load(std::memory_order_relaxed)) {
          batch.clear();
          const int n = 1 + static_cast<int>(rng.next() % 40);
          for (int i = 0; i < n; ++i, ++ts) batch.push_back({ts, value_of(own, ts)});
          std::shared_lock<std::shared_mutex> lock(gen_mutex);
          Memtable* m = active.load();
          m->append(own, label("own", w), batch);
          m->append(7, "shared", std::vector<Point>{{ts, value_of(7, ts)}});
        }
      });
    }
    for (int r = 0; r < kReaders; ++r) {
      threads.emplace_back([&] {
        std::vector<Point> pts;
        while (!stop.load(std::memory_order_relaxed)) {
          SmallPoolAllocator::EpochGuard guard(a);
          for (Memtable* m : {active.load(), flushing.load()}) {
            if (m == nullptr) continue;
            for (int w = 0; w < kWriters; ++w) {
              pts.clear();
              m->read(100 + w, INT64_MIN, INT64_MAX, pts);
              check_prefix(pts, 100 + w);
            }
            pts.clear();
            m->read(7, INT64_MIN, INT64_MAX, pts);
            for (const Point& p : pts)
              if (p.value != value_of(7, p.ts)) failures.fetch_add(1);
            m->for_each_series([&](SeriesId id, std::string_view key) {
              if (id == 7 && key != "shared") failures.fetch_add(1);
            });
          }
          reads.fetch_add(1, std::memory_order_relaxed);
        }
      });
    }
    threads.emplace_back([&] {  // the swapper: the engine's flush, without the disk
      while (!stop.load(std::memory_order_relaxed)) {
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
        Memtable* old = nullptr;
        {
          std::unique_lock<std::shared_mutex> lock(gen_mutex);
          old = active.load();
          flushing.store(old);
          active.store(old == &gen_a ? &gen_b : &gen_a);
        }
        std::uint64_t sorted_points = 0;
        old->for_each_sorted([&](SeriesId, std::string_view, std::span<const Point> p) {
          for (std::size_t i = 1; i < p.size(); ++i)
            if (p[i].ts <= p[i - 1].ts) failures.fetch_add(1);
          sorted_points += p.size();
        });
        flushing.store(nullptr);
        old->retire_all();
        swaps.fetch_add(1);
      }
    });
    threads.emplace_back([&] {  // the daemon's maintenance tick
      while (!stop.load(std::memory_order_relaxed)) {
        a.advance_epoch();
        a.collect_garbage();
        std::this_thread::sleep_for(std::chrono::microseconds(200));
      }
    });

    std::this_thread::sleep_for(run_for);
    stop.store(true);
    for (auto& t : threads) t.join();
    CHECK(failures.load() == 0);
    CHECK(reads.load() > 0);
    CHECK(swaps.load() > 0);
    for (int i = 0; i < 4; ++i) {
      a.advance_epoch();
      a.collect_garbage();
    }
    CHECK(retired_pending(a) == 0);
  }

  TEST_CASE("memtable: concurrent creators of the same and of new series lose nothing") {
    SmallPoolAllocator a(alloc::test::small_options());
    Memtable m(a);
    constexpr int kThreads = 4;
    constexpr int kSeries = 2000;
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        for (int s = 0; s < kSeries; ++s)
          m.append(static_cast<SeriesId>(s) << 8, label("s", s),
                   std::vector<Point>{{t, static_cast<double>(s)}});
      });
    }
    for (auto& t : threads) t.join();
    CHECK(m.series() == kSeries);
    CHECK(m.points() == kThreads * kSeries);
    for (int s = 0; s < kSeries; s += 97) {
      auto pts = read_all(m, static_cast<SeriesId>(s) << 8, a);
      CHECK(pts.size() == kThreads);
    }
  }
}

}  // namespace
}  // namespace sydra::storage
