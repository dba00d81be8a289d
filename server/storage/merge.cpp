// The last-write-wins merge (see merge.hpp).
#include "server/storage/merge.hpp"

#include <algorithm>
#include <cstddef>

namespace sydra::storage {

void sort_last_wins(std::vector<Point>& points) {
  const std::size_t n = points.size();
  bool increasing = true;
  bool sorted = true;
  for (std::size_t i = 1; i < n && sorted; ++i) {
    if (points[i].ts <= points[i - 1].ts) {
      increasing = false;
      sorted = points[i].ts == points[i - 1].ts;
    }
  }
  if (increasing) return;
  if (!sorted) {
    // Stable: among equal timestamps the input order is kept, so the last one is the newest.
    std::stable_sort(points.begin(), points.end(),
                     [](const Point& a, const Point& b) { return a.ts < b.ts; });
  }
  std::size_t w = 0;
  for (std::size_t r = 0; r < n; ++r) {
    if (w > 0 && points[w - 1].ts == points[r].ts) {
      points[w - 1] = points[r];
    } else {
      points[w++] = points[r];
    }
  }
  points.resize(w);
}

void sort_runs_last_wins(std::vector<Point>& points, std::span<const std::size_t> run_ends) {
  for (std::size_t k = 1; k < run_ends.size(); ++k) {
    const std::size_t b = run_ends[k - 1];
    if (b > 0 && b < points.size() && points[b].ts <= points[b - 1].ts) {
      sort_last_wins(points);  // the runs overlap: the general case
      return;
    }
  }
}

}  // namespace sydra::storage
