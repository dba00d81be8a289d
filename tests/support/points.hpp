// Points for tests: a list from {ts, value} pairs, and exact comparison of two lists.
#pragma once

#include <initializer_list>
#include <utility>
#include <vector>

#include "server/storage/types.hpp"

namespace sydra::test {

inline std::vector<storage::Point> points_of(
    std::initializer_list<std::pair<storage::Timestamp, double>> list) {
  std::vector<storage::Point> out;
  for (const auto& [ts, v] : list) out.push_back({ts, v});
  return out;
}

// Same timestamps and the same values (==, so NaN never compares equal).
inline bool same_points(const std::vector<storage::Point>& a, const std::vector<storage::Point>& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (a[i].ts != b[i].ts || a[i].value != b[i].value) return false;
  return true;
}

}  // namespace sydra::test
