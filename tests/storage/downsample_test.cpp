// Downsampling and aggregation across series (server/storage/downsample.hpp): aligned
// buckets (negative timestamps and the ends of the range included), every aggregation,
// NaN in min and max as PromQL, and StepCombiner's sum/avg/min/max/count over series that
// have points in different buckets, merged from partials.
#include "server/storage/downsample.hpp"

#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "support/points.hpp"

namespace sydra::storage {
namespace {

using test::points_of;
using test::same_points;

std::vector<Point> down(const std::vector<Point>& in, std::int64_t step, Aggregation agg) {
  std::vector<Point> out;
  downsample(in, step, agg, out);
  return out;
}

void check_points(const std::vector<Point>& got, const std::vector<Point>& want) {
  REQUIRE(got.size() == want.size());
  for (std::size_t i = 0; i < got.size(); ++i) {
    CHECK(got[i].ts == want[i].ts);
    if (std::isnan(want[i].value)) {
      CHECK(std::isnan(got[i].value));
    } else if (std::isinf(want[i].value)) {
      CHECK(got[i].value == want[i].value);
    } else {
      CHECK(got[i].value == doctest::Approx(want[i].value));
    }
  }
}

TEST_SUITE("unit") {
  TEST_CASE("bucket_of: floor division, negative timestamps, the ends of the range") {
    CHECK(bucket_of(0, 10) == 0);
    CHECK(bucket_of(9, 10) == 0);
    CHECK(bucket_of(10, 10) == 10);
    CHECK(bucket_of(-1, 10) == -10);
    CHECK(bucket_of(-10, 10) == -10);
    CHECK(bucket_of(INT64_MAX, 1000) == INT64_MAX - INT64_MAX % 1000);
    CHECK(bucket_of(INT64_MIN, 1000) == INT64_MIN);  // the true start lies below: saturated
  }

  TEST_CASE("downsample: every aggregation, empty buckets left out") {
    // ts 0..9 = 1..10, ts -1 = -1, ts 42 = 100.
    std::vector<Point> in = points_of({{-1, -1}});
    for (int i = 0; i < 10; ++i) in.push_back({i, i + 1.0});
    in.push_back({42, 100});
    auto at = [](std::vector<double> v) { return points_of({{-5, v[0]}, {0, v[1]}, {5, v[2]}, {40, v[3]}}); };
    check_points(down(in, 5, Aggregation::avg), at({-1, 3, 8, 100}));
    check_points(down(in, 5, Aggregation::min), at({-1, 1, 6, 100}));
    check_points(down(in, 5, Aggregation::max), at({-1, 5, 10, 100}));
    check_points(down(in, 5, Aggregation::sum), at({-1, 15, 40, 100}));
    check_points(down(in, 5, Aggregation::count), at({1, 5, 5, 1}));
    check_points(down(in, 5, Aggregation::last), at({-1, 5, 10, 100}));
    check_points(down(in, 5, Aggregation::none), at({-1, 5, 10, 100}));
    CHECK(down({}, 5, Aggregation::avg).empty());
  }

  TEST_CASE("downsample: the extremes of the timestamp range land in their own buckets") {
    const auto in = points_of({{INT64_MIN, 1}, {INT64_MIN + 807, 2}, {INT64_MIN + 808, 3}, {INT64_MAX, 4}});
    // INT64_MIN = -9223372036854775808 lies in [-9223372036854776000, -9223372036854775000):
    // a bucket that starts below the range, labelled INT64_MIN; INT64_MIN + 808 starts the next.
    const auto out = down(in, 1000, Aggregation::count);
    REQUIRE(out.size() == 3);
    CHECK(out[0].ts == INT64_MIN);
    CHECK(out[0].value == 2);
    CHECK(out[1].ts == INT64_MIN + 808);
    CHECK(out[1].value == 1);
    CHECK(out[2].ts == INT64_MAX - INT64_MAX % 1000);
  }

  TEST_CASE("downsample: min and max skip NaN unless every value is NaN, sum propagates it") {
    const double nan = std::numeric_limits<double>::quiet_NaN();
    const auto in = points_of({{0, nan}, {1, 2}, {2, nan}, {3, 1}, {10, nan}});
    check_points(down(in, 10, Aggregation::max), points_of({{0, 2}, {10, nan}}));
    check_points(down(in, 10, Aggregation::min), points_of({{0, 1}, {10, nan}}));
    CHECK(std::isnan(down(in, 10, Aggregation::sum)[0].value));
    CHECK(down(in, 10, Aggregation::count)[0].value == 4);
    // Infinities are values like any other; a bucket of only -inf and NaN has max -inf.
    const double inf = std::numeric_limits<double>::infinity();
    const auto infs = points_of({{0, -inf}, {1, nan}, {2, -inf}, {3, nan}, {4, nan}, {5, -inf}});
    check_points(down(infs, 10, Aggregation::max), points_of({{0, -inf}}));
    check_points(down(infs, 10, Aggregation::min), points_of({{0, -inf}}));
    check_points(down(points_of({{0, inf}, {1, nan}}), 10, Aggregation::min), points_of({{0, inf}}));
  }

  TEST_CASE("StepCombiner: sum, avg, min, max, count across series with different buckets") {
    const auto a = points_of({{0, 1}, {10, 2}});
    const auto b = points_of({{10, 4}, {20, 8}});
    const auto c = points_of({{0, -1}, {20, 0}});
    auto combined = [&](Aggregation agg) {
      StepCombiner comb(agg);
      comb.add(a);
      comb.add(b);
      comb.add(c);
      CHECK(comb.series() == 3);
      std::vector<Point> out;
      comb.finish(out);
      return out;
    };
    check_points(combined(Aggregation::sum), points_of({{0, 0}, {10, 6}, {20, 8}}));
    check_points(combined(Aggregation::avg), points_of({{0, 0}, {10, 3}, {20, 4}}));
    check_points(combined(Aggregation::min), points_of({{0, -1}, {10, 2}, {20, 0}}));
    check_points(combined(Aggregation::max), points_of({{0, 1}, {10, 4}, {20, 8}}));
    check_points(combined(Aggregation::count), points_of({{0, 2}, {10, 2}, {20, 2}}));
  }

  TEST_CASE("StepCombiner: partials merged give what one combiner gives") {
    for (Aggregation agg :
         {Aggregation::sum, Aggregation::avg, Aggregation::min, Aggregation::max, Aggregation::count}) {
      StepCombiner whole(agg), left(agg), right(agg);
      for (int s = 0; s < 10; ++s) {
        std::vector<Point> series;
        for (int t = s % 3; t < 12; t += 1 + s % 2) series.push_back({t * 60, s * 1.5 - t});
        whole.add(series);
        (s % 2 == 0 ? left : right).add(series);
      }
      left.merge(right);
      CHECK(left.series() == 10);
      std::vector<Point> a, b;
      whole.finish(a);
      left.finish(b);
      check_points(b, a);
    }
    CHECK(combines_series(Aggregation::count));
    CHECK_FALSE(combines_series(Aggregation::last));
    CHECK(to_string(Aggregation::max) == "max");
    Aggregation agg{};
    CHECK(parse_aggregation("count", agg));
    CHECK(agg == Aggregation::count);
    CHECK_FALSE(parse_aggregation("median", agg));
  }
}

}  // namespace
}  // namespace sydra::storage
