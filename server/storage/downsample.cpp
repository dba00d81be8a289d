// Downsampling and aggregation across series (see downsample.hpp).
#include "server/storage/downsample.hpp"

#include <cmath>
#include <utility>

namespace sydra::storage {

namespace {

constexpr std::pair<std::string_view, Aggregation> kNames[] = {
    {"avg", Aggregation::avg}, {"min", Aggregation::min},     {"max", Aggregation::max},
    {"sum", Aggregation::sum}, {"count", Aggregation::count}, {"last", Aggregation::last}};

// min and max that skip NaN unless there is nothing else.
inline double nan_min(double a, double b) noexcept {
  return (b < a || std::isnan(a)) ? b : a;
}
inline double nan_max(double a, double b) noexcept {
  return (b > a || std::isnan(a)) ? b : a;
}

}  // namespace

bool parse_aggregation(std::string_view text, Aggregation& out) noexcept {
  for (const auto& [name, agg] : kNames)
    if (text == name) {
      out = agg;
      return true;
    }
  return false;
}

std::string_view to_string(Aggregation agg) noexcept {
  for (const auto& [name, a] : kNames)
    if (a == agg) return name;
  return "none";
}

bool combines_series(Aggregation agg) noexcept {
  return agg == Aggregation::sum || agg == Aggregation::avg || agg == Aggregation::min ||
         agg == Aggregation::max || agg == Aggregation::count;
}

namespace {

// The exact start of the bucket holding ts: floor(ts / step) * step, which may lie below
// INT64_MIN.
__int128 bucket_start(Timestamp ts, std::int64_t step) noexcept {
  const __int128 t = ts;
  __int128 q = t / step;
  if (t % step != 0 && t < 0) --q;
  return q * step;
}

}  // namespace

Timestamp bucket_of(Timestamp ts, std::int64_t step) noexcept {
  const __int128 b = bucket_start(ts, step);
  return b < INT64_MIN ? INT64_MIN : static_cast<Timestamp>(b);
}

void downsample(std::span<const Point> sorted, std::int64_t step, Aggregation agg, std::vector<Point>& out) {
  std::size_t i = 0;
  while (i < sorted.size()) {
    const __int128 start = bucket_start(sorted[i].ts, step);
    const __int128 end = start + step;  // exclusive; compared without a division per point
    const Timestamp bucket = start < INT64_MIN ? INT64_MIN : static_cast<Timestamp>(start);
    double sum = 0, mn = sorted[i].value, mx = sorted[i].value, last = sorted[i].value;
    std::uint64_t count = 0;
    for (; i < sorted.size() && static_cast<__int128>(sorted[i].ts) < end; ++i) {
      const double v = sorted[i].value;
      sum += v;
      mn = nan_min(mn, v);
      mx = nan_max(mx, v);
      last = v;
      ++count;
    }
    double value = 0;
    switch (agg) {
      case Aggregation::avg:
        value = sum / static_cast<double>(count);
        break;
      case Aggregation::min:
        value = mn;
        break;
      case Aggregation::max:
        value = mx;
        break;
      case Aggregation::sum:
        value = sum;
        break;
      case Aggregation::count:
        value = static_cast<double>(count);
        break;
      case Aggregation::last:
      case Aggregation::none:
        value = last;
        break;
    }
    out.push_back({bucket, value});
  }
}

void StepCombiner::combine(Cell& into, double value, std::uint64_t count) const noexcept {
  switch (agg_) {
    case Aggregation::min:
      into.value = nan_min(into.value, value);
      break;
    case Aggregation::max:
      into.value = nan_max(into.value, value);
      break;
    default:  // sum, avg (a sum until finish), count (only counts)
      into.value += value;
      break;
  }
  into.count += count;
}

template <class Source, class ValueOf>
void StepCombiner::merge_sorted(const Source& source, ValueOf value_of) {
  scratch_.clear();
  scratch_.reserve(cells_.size() + source.size());
  std::size_t a = 0, b = 0;
  while (a < cells_.size() || b < source.size()) {
    if (b == source.size() || (a < cells_.size() && cells_[a].ts < source[b].ts)) {
      scratch_.push_back(cells_[a++]);
      continue;
    }
    const auto [value, count] = value_of(source[b]);
    if (a < cells_.size() && cells_[a].ts == source[b].ts) {
      Cell c = cells_[a++];
      combine(c, value, count);
      scratch_.push_back(c);
    } else {
      scratch_.push_back(Cell{source[b].ts, value, count});
    }
    ++b;
  }
  cells_.swap(scratch_);
}

void StepCombiner::add(std::span<const Point> points) {
  ++series_;
  merge_sorted(points, [](const Point& p) { return std::pair<double, std::uint64_t>(p.value, 1); });
}

void StepCombiner::merge(const StepCombiner& other) {
  series_ += other.series_;
  merge_sorted(other.cells_,
               [](const Cell& c) { return std::pair<double, std::uint64_t>(c.value, c.count); });
}

void StepCombiner::finish(std::vector<Point>& out) const {
  out.reserve(out.size() + cells_.size());
  for (const Cell& c : cells_) {
    double value = c.value;
    if (agg_ == Aggregation::avg) value = c.value / static_cast<double>(c.count);
    if (agg_ == Aggregation::count) value = static_cast<double>(c.count);
    out.push_back({c.ts, value});
  }
}

}  // namespace sydra::storage
