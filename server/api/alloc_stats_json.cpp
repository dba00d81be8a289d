#include "server/api/alloc_stats_json.hpp"

#include <cstdint>
#include <string>

namespace sydra::server {

namespace {

using nlohmann::json;

json class_json(const alloc::ClassStats& c) {
  json j;
  j["size"] = c.size;
  j["alloc_size"] = c.size;  // upstream: block size including header; sydradb blocks have none
#define SYDRA_X(name) j[#name] = c.name;
  SYDRA_CLASS_STATS(SYDRA_X)
#undef SYDRA_X
  // Upstream names for the same figures.
  j["free_nodes"] = c.free_blocks;
  j["lock_wait_ns_total"] = c.lock_wait_ns;
  j["lock_hold_ns_total"] = c.lock_hold_ns;
  return j;
}

json classes_json(const std::array<alloc::ClassStats, alloc::kNumClasses>& classes) {
  json a = json::array();
  for (const auto& c : classes) a.push_back(class_json(c));
  return a;
}

json paths_json(const alloc::PathStats& p) {
  json j = json::object();
#define SYDRA_X(name) j[#name] = p.name;
  SYDRA_PATH_STATS(SYDRA_X)
#undef SYDRA_X
  return j;
}

}  // namespace

json alloc_stats_json(const alloc::AllocatorStats& s) {
  json shards = json::array();
  for (const alloc::ShardStats& sh : s.shards) {
    json j;
    j["id"] = sh.id;
#define SYDRA_X(name) j[#name] = sh.name;
    SYDRA_SHARD_STATS(SYDRA_X)
#undef SYDRA_X
    const alloc::ClassStats t = sh.totals();
    j["allocations"] = t.allocations;
    j["frees"] = t.frees;
    j["in_use"] = t.in_use;
    j["cached"] = t.cached;
    j["slabs"] = t.slabs;
    j["deferred_enqueued"] = t.deferred_enqueued;
    j["deferred_reclaimed"] = t.deferred_reclaimed;
    j["deferred_pending"] = t.deferred_pending;
    std::uint64_t in_use_bytes = 0;
    for (const auto& c : sh.classes) in_use_bytes += c.in_use * c.size;
    j["in_use_bytes"] = in_use_bytes;
    j["paths"] = paths_json(sh.paths);
    j["classes"] = classes_json(sh.classes);
    shards.push_back(std::move(j));
  }

  json fallback;
  fallback["allocs"] = s.fallback.allocs;
  fallback["frees"] = s.fallback.frees;
  fallback["resizes"] = s.fallback.resizes;
  fallback["remaps"] = s.fallback.remaps;
  fallback["live_bytes"] = s.fallback.live_bytes;
  json size_buckets = json::array();
  for (const auto& b : s.fallback.size_buckets) {
    json bucket;
    bucket["count"] = b.count;
    if (b.upper_bound == UINT64_MAX)
      bucket["upper_bound"] = nullptr;  // +Inf
    else
      bucket["upper_bound"] = b.upper_bound;
    size_buckets.push_back(std::move(bucket));
  }
  fallback["size_buckets"] = std::move(size_buckets);

  json epoch;
  epoch["current"] = s.epoch.current;
  epoch["min_observed"] = s.epoch.min_observed;
  epoch["lag"] = s.epoch.lag;
  epoch["advances"] = s.epoch.advances;
  epoch["threads"] = s.epoch.threads;
  epoch["active_readers"] = s.epoch.active_readers;

  json small_pool;
  small_pool["shard_enabled"] = s.shard_enabled;
  small_pool["shard_count"] = s.shard_count;
  small_pool["slab_bytes"] = s.slab_bytes;
  small_pool["shard_alloc_hits"] = s.shard_alloc_hits;
  small_pool["shard_alloc_misses"] = s.shard_alloc_misses;
  small_pool["shard_deferred_total"] = s.shard_deferred_total;
  small_pool["shard_epoch_current"] = s.epoch.current;
  small_pool["shard_epoch_min"] = s.epoch.min_observed;
  small_pool["magazines"] = s.magazines;
  small_pool["paths"] = paths_json(s.paths);
  small_pool["epoch"] = std::move(epoch);
  small_pool["fallback"] = std::move(fallback);
  small_pool["buckets"] = classes_json(s.buckets);
  small_pool["legacy"] = classes_json(s.legacy);
  small_pool["shards"] = std::move(shards);

  json memory;
  memory["reserved_bytes"] = s.memory.reserved_bytes;
  memory["committed_bytes"] = s.memory.committed_bytes;
  memory["resident_bytes"] = s.memory.resident_bytes;
  memory["returned_bytes"] = s.memory.returned_bytes;
  memory["live_bytes"] = s.memory.live_bytes;
  memory["pool_live_bytes"] = s.memory.pool_live_bytes;
  memory["process_resident_bytes"] = s.memory.process_resident_bytes;
  memory["fragmentation"] = s.memory.fragmentation;

  json doc;
  doc["version"] = s.version;
  doc["allocator_mode"] = std::string(alloc::to_string(s.mode));
  doc["small_pool"] = std::move(small_pool);
  doc["memory"] = std::move(memory);
  return doc;
}

}  // namespace sydra::server
