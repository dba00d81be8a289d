// The one last-write-wins merge of the storage engine. Wherever points of one series come
// together from several writes — a memtable generation's appends, the sources of a query
// (segments oldest first, then the flushing and the active memtable), the inputs of a
// compaction — they are concatenated oldest first and go through sort_last_wins: sorted by
// timestamp, one point per timestamp, the one that came LAST in the input.
#pragma once

#include <cstddef>
#include <span>
#include <vector>

#include "server/storage/types.hpp"

namespace sydra::storage {

// Sorts `points` by ts (stable) and keeps, of equal timestamps, the last one. Input that is
// already strictly increasing (the common case: one source, or sources in time order) costs
// one pass and no copy; input that is sorted with repeats, one more pass.
void sort_last_wins(std::vector<Point>& points);

// The same result when `points` is known to be strictly increasing runs concatenated, run k
// ending at run_ends[k] (ascending, the last one points.size()): when the runs follow each
// other in time (the usual case: segments written one after the other) only the boundaries
// are compared, not every point.
void sort_runs_last_wins(std::vector<Point>& points, std::span<const std::size_t> run_ends);

}  // namespace sydra::storage
