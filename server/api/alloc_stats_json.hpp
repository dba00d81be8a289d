// The /debug/alloc/stats document: an AllocatorStats snapshot as JSON. Keeps the upstream
// keys (allocator_mode; small_pool.{shard_enabled, shard_count, shard_alloc_hits,
// shard_alloc_misses, shard_deferred_total, shard_epoch_current, shard_epoch_min,
// fallback, buckets}) and adds per-shard figures, the legacy buckets, epochs and process
// memory. Every field is documented in docs/metrics.md.
#pragma once

#include <nlohmann/json.hpp>

#include "alloc/stats.hpp"

namespace sydra::server {

nlohmann::json alloc_stats_json(const alloc::AllocatorStats& stats);

}  // namespace sydra::server
