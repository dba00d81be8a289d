// The allocator's stats document as JSON, without any JSON library: the one emitter of it,
// served by the daemon as /debug/alloc/stats and printed by libsydralloc.so's
// SYDRA_ALLOC_STATS=1 report. Keeps the upstream keys (allocator_mode; small_pool.
// {shard_enabled, shard_count, shard_alloc_hits, shard_alloc_misses, shard_deferred_total,
// shard_epoch_current, shard_epoch_min, fallback, buckets}) and adds per-shard figures, the
// legacy buckets, epochs and process memory; docs/metrics.md describes every field
// (tests/docs checks both ways), tests/preload/stats_json_test.cpp every value.
//
// Layer 3 of alloc/ (beside stats.hpp): includes only stats.hpp and the standard library.
#pragma once

#include <string>

#include "stats.hpp"

namespace sydra::alloc {

// One JSON object, no trailing newline. Allocates (a std::string).
std::string stats_to_json(const AllocatorStats& stats);

}  // namespace sydra::alloc
