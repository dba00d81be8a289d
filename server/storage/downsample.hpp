// Downsampling and aggregation across series, the arithmetic of range and many-series
// queries.
//
// Per series (downsample): buckets [k·step, (k+1)·step), each answered at its start k·step
// (floor division, so negative timestamps fall into the right bucket), holding the
// aggregate of the series' points in it; empty buckets do not appear. This is PromQL's
// `<agg>_over_time(x[step])` evaluated at aligned steps, with the window closed at its start.
//
// Across series (StepCombiner): the per-series buckets of several series combined bucket by
// bucket, as PromQL's `sum|avg|min|max|count by (...)` over the result of the per-series
// step: a bucket where only some series have a point combines those.
//
// NaN: min and max ignore NaN unless every value is NaN (as PromQL); sum and avg propagate
// it. Non-finite results are kept as they are.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "server/storage/types.hpp"

namespace sydra::storage {

enum class Aggregation { none, avg, min, max, sum, count, last };

// "avg", "min", "max", "sum", "count", "last" → true.
bool parse_aggregation(std::string_view text, Aggregation& out) noexcept;
std::string_view to_string(Aggregation agg) noexcept;
// The aggregations that combine series: sum, avg, min, max, count.
bool combines_series(Aggregation agg) noexcept;

// The start of the step-wide bucket holding ts (floor division; exact for negative ts).
Timestamp bucket_of(Timestamp ts, std::int64_t step) noexcept;

// Appends one point per non-empty bucket of `sorted` (sorted by ts, one point per ts) to
// `out`. Aggregation::none means last.
void downsample(std::span<const Point> sorted, std::int64_t step, Aggregation agg, std::vector<Point>& out);

// Combines downsampled series bucket by bucket (sum, avg, min, max or count). add() the
// series in any order; merge() another combiner's partial result (a worker's share).
class StepCombiner {
 public:
  explicit StepCombiner(Aggregation agg = Aggregation::sum) : agg_(agg) {}

  // One series' points, sorted by ts with unique ts (a downsample() output).
  void add(std::span<const Point> points);
  void merge(const StepCombiner& other);
  // Buckets so far.
  std::size_t size() const noexcept { return cells_.size(); }
  std::uint64_t series() const noexcept { return series_; }
  // The combined points, sorted by ts: count = how many series had a point in the bucket.
  void finish(std::vector<Point>& out) const;

 private:
  struct Cell {
    Timestamp ts;
    double value;         // sum (sum, avg), min, max
    std::uint64_t count;  // series with a point here
  };
  void combine(Cell& into, double value, std::uint64_t count) const noexcept;
  template <class Source, class ValueOf>
  void merge_sorted(const Source& source, ValueOf value_of);

  Aggregation agg_;
  std::vector<Cell> cells_;  // sorted by ts
  std::vector<Cell> scratch_;
  std::uint64_t series_ = 0;
};

}  // namespace sydra::storage
