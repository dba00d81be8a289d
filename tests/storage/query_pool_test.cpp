// The query helper pool (server/storage/query_pool.hpp): every index exactly once, slots
// unique among the threads of one run, several runs at once from several callers, an
// exception rethrown to the caller, and a pool without helpers.
#include "server/storage/query_pool.hpp"

#include <doctest/doctest.h>

#include <atomic>
#include <stdexcept>
#include <thread>
#include <vector>

namespace sydra::storage {
namespace {

TEST_SUITE("concurrency") {
  TEST_CASE("query pool: every index once, per-slot state without locks, runs from several callers") {
    QueryPool pool(3);
    CHECK(pool.slots() == 4);
    constexpr int kCallers = 3;
    std::atomic<int> failures{0};
    std::vector<std::thread> callers;
    for (int c = 0; c < kCallers; ++c) {
      callers.emplace_back([&, c] {
        for (int round = 0; round < 50; ++round) {
          const std::size_t n = 1 + static_cast<std::size_t>((c * 50 + round) % 97);
          std::vector<std::atomic<int>> seen(n);
          // A slot is used by one thread at a time: a plain counter per slot stays exact.
          std::vector<std::size_t> per_slot(pool.slots(), 0);
          std::vector<std::atomic<int>> in_slot(pool.slots());
          pool.run(n, [&](std::size_t i, unsigned slot) {
            if (slot >= pool.slots() || in_slot[slot].fetch_add(1) != 0) failures.fetch_add(1);
            seen[i].fetch_add(1);
            ++per_slot[slot];
            in_slot[slot].fetch_sub(1);
          });
          std::size_t total = 0;
          for (std::size_t s : per_slot) total += s;
          if (total != n) failures.fetch_add(1);
          for (auto& s : seen)
            if (s.load() != 1) failures.fetch_add(1);
        }
      });
    }
    for (auto& t : callers) t.join();
    CHECK(failures.load() == 0);
  }

  TEST_CASE("query pool: the first exception reaches the caller, the pool keeps working") {
    QueryPool pool(2);
    std::atomic<int> calls{0};
    CHECK_THROWS_WITH_AS(pool.run(100,
                                  [&](std::size_t i, unsigned) {
                                    calls.fetch_add(1);
                                    if (i == 10) throw std::runtime_error("block 10 is corrupt");
                                  }),
                         "block 10 is corrupt", std::runtime_error);
    CHECK(calls.load() <= 100);
    std::atomic<int> after{0};
    pool.run(20, [&](std::size_t, unsigned) { after.fetch_add(1); });
    CHECK(after.load() == 20);
  }

  TEST_CASE("query pool: without helpers everything runs on the caller, slot 0") {
    QueryPool pool(0);
    CHECK(pool.slots() == 1);
    const auto me = std::this_thread::get_id();
    int n = 0;
    pool.run(5, [&](std::size_t i, unsigned slot) {
      CHECK(slot == 0);
      CHECK(std::this_thread::get_id() == me);
      CHECK(i == static_cast<std::size_t>(n++));
    });
    CHECK(n == 5);
    pool.run(0, [&](std::size_t, unsigned) { FAIL("called for n = 0"); });
  }
}

}  // namespace
}  // namespace sydra::storage
