// Downsampling and aggregation across series (see downsample.hpp).
#include "server/storage/downsample.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
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

namespace {

// The reductions of one bucket's points [p, p + n), n > 0. min and max keep four independent
// accumulators (no loop-carried dependency on one register, no branch on the data: std::max
// of doubles is one maxsd that keeps the accumulator when the value is NaN). A bucket whose
// result is still the start value (±inf) is looked at again: NaN when it holds nothing else.
bool all_nan(const Point* p, std::size_t n) noexcept {
  for (std::size_t i = 0; i < n; ++i)
    if (!std::isnan(p[i].value)) return false;
  return true;
}

template <class Pick>
double bucket_extreme(const Point* p, std::size_t n, double start, Pick pick) noexcept {
  double m0 = start, m1 = start, m2 = start, m3 = start;
  std::size_t i = 0;
  for (; i + 4 <= n; i += 4) {
    m0 = pick(m0, p[i].value);
    m1 = pick(m1, p[i + 1].value);
    m2 = pick(m2, p[i + 2].value);
    m3 = pick(m3, p[i + 3].value);
  }
  for (; i < n; ++i) m0 = pick(m0, p[i].value);
  const double m = pick(pick(m0, m1), pick(m2, m3));
  return m == start && all_nan(p, n) ? std::numeric_limits<double>::quiet_NaN() : m;
}

double bucket_max(const Point* p, std::size_t n) noexcept {
  return bucket_extreme(p, n, -std::numeric_limits<double>::infinity(),
                        [](double a, double b) { return std::max(a, b); });
}

double bucket_min(const Point* p, std::size_t n) noexcept {
  return bucket_extreme(p, n, std::numeric_limits<double>::infinity(),
                        [](double a, double b) { return std::min(a, b); });
}

// In order, one addition after the other: the same sum whatever the bucket's length.
double bucket_sum(const Point* p, std::size_t n) noexcept {
  double sum = 0;
  for (std::size_t i = 0; i < n; ++i) sum += p[i].value;
  return sum;
}

}  // namespace

void downsample(std::span<const Point> sorted, std::int64_t step, Aggregation agg, std::vector<Point>& out) {
  const Point* const begin = sorted.data();
  const Point* const end = begin + sorted.size();
  for (const Point* p = begin; p != end;) {
    const __int128 start = bucket_start(p->ts, step);
    const __int128 last = start + step - 1;  // >= p->ts >= INT64_MIN
    const Timestamp bucket = start < INT64_MIN ? INT64_MIN : static_cast<Timestamp>(start);
    // The bucket's points: [p, q). Sorted input: one binary search per bucket.
    const Point* q = end;
    if (last < INT64_MAX) {
      const auto bound = static_cast<Timestamp>(last);
      q = std::upper_bound(p, end, bound, [](Timestamp t, const Point& x) { return t < x.ts; });
      if (q == p) q = p + 1;  // only for input that breaks the contract: never an empty bucket
    }
    const auto n = static_cast<std::size_t>(q - p);
    double value = 0;
    switch (agg) {
      case Aggregation::avg:
        value = bucket_sum(p, n) / static_cast<double>(n);
        break;
      case Aggregation::min:
        value = bucket_min(p, n);
        break;
      case Aggregation::max:
        value = bucket_max(p, n);
        break;
      case Aggregation::sum:
        value = bucket_sum(p, n);
        break;
      case Aggregation::count:
        value = static_cast<double>(n);
        break;
      case Aggregation::last:
      case Aggregation::none:
        value = q[-1].value;
        break;
    }
    out.push_back({bucket, value});
    p = q;
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
