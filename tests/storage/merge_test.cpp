// The last-write-wins merge (server/storage/merge.hpp): sorted input untouched, repeats
// resolved to the last, unsorted sources resolved by input order, against a reference
// built with std::map; sorted runs checked at their boundaries only.
#include "server/storage/merge.hpp"

#include <doctest/doctest.h>

#include <map>
#include <random>
#include <vector>

#include "support/points.hpp"

namespace sydra::storage {
namespace {

using test::points_of;
using test::same_points;

TEST_SUITE("unit") {
  TEST_CASE("sort_last_wins: increasing input is left as it is") {
    auto p = points_of({{1, 1}, {2, 2}, {5, 5}});
    sort_last_wins(p);
    CHECK(same_points(p, points_of({{1, 1}, {2, 2}, {5, 5}})));
    std::vector<Point> empty;
    sort_last_wins(empty);
    CHECK(empty.empty());
  }

  TEST_CASE("sort_last_wins: equal timestamps keep the last one, sorted or not") {
    auto sorted_repeats = points_of({{1, 1}, {1, 10}, {2, 2}, {2, 20}, {2, 200}, {3, 3}});
    sort_last_wins(sorted_repeats);
    CHECK(same_points(sorted_repeats, points_of({{1, 10}, {2, 200}, {3, 3}})));

    // A segment run (1..3), then a newer memtable run that overwrites 2 and adds 0.
    auto sources = points_of({{1, 1}, {2, 2}, {3, 3}, {2, 20}, {0, 0}});
    sort_last_wins(sources);
    CHECK(same_points(sources, points_of({{0, 0}, {1, 1}, {2, 20}, {3, 3}})));

    auto negative = points_of({{5, 1}, {INT64_MIN, 2}, {INT64_MAX, 3}, {INT64_MIN, 4}});
    sort_last_wins(negative);
    CHECK(same_points(negative, points_of({{INT64_MIN, 4}, {5, 1}, {INT64_MAX, 3}})));
  }

  TEST_CASE("sort_runs_last_wins: runs in time order are left alone, overlapping runs are merged") {
    auto in_order = points_of({{1, 1}, {2, 2}, {5, 5}, {6, 6}, {9, 9}});
    const std::size_t ends[] = {2, 4, 5};
    sort_runs_last_wins(in_order, ends);
    CHECK(same_points(in_order, points_of({{1, 1}, {2, 2}, {5, 5}, {6, 6}, {9, 9}})));

    // An older segment 1..5 and a newer one that rewrote 3 and 4: the newer values win.
    auto overlapping = points_of({{1, 1}, {3, 3}, {5, 5}, {3, 30}, {4, 40}});
    const std::size_t ends2[] = {3, 5};
    sort_runs_last_wins(overlapping, ends2);
    CHECK(same_points(overlapping, points_of({{1, 1}, {3, 30}, {4, 40}, {5, 5}})));

    // Touching at one timestamp is an overlap too.
    auto touching = points_of({{1, 1}, {2, 2}, {2, 20}, {3, 3}});
    const std::size_t ends3[] = {2, 4};
    sort_runs_last_wins(touching, ends3);
    CHECK(same_points(touching, points_of({{1, 1}, {2, 20}, {3, 3}})));
    std::vector<Point> none;
    sort_runs_last_wins(none, {});
    CHECK(none.empty());
  }

  TEST_CASE("sort_last_wins: random runs agree with a map that keeps the last write") {
    std::mt19937 rng(7);
    for (int round = 0; round < 200; ++round) {
      std::vector<Point> input;
      std::map<Timestamp, double> expected;
      const int runs = 1 + static_cast<int>(rng() % 4);
      for (int r = 0; r < runs; ++r) {
        // Each run is sorted (a segment) or in append order (a memtable).
        const bool sorted_run = rng() % 2 == 0;
        Timestamp ts = static_cast<Timestamp>(rng() % 50);
        const int n = static_cast<int>(rng() % 40);
        for (int i = 0; i < n; ++i) {
          ts = sorted_run ? ts + 1 + static_cast<Timestamp>(rng() % 3) : static_cast<Timestamp>(rng() % 100);
          const double v = static_cast<double>(round * 1000 + r * 100 + i);
          input.push_back({ts, v});
          expected[ts] = v;
        }
      }
      sort_last_wins(input);
      std::vector<Point> want;
      for (const auto& [ts, v] : expected) want.push_back({ts, v});
      CHECK(same_points(input, want));
    }
  }
}

}  // namespace
}  // namespace sydra::storage
