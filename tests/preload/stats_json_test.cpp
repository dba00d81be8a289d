// alloc/stats_json.cpp: the one emitter of the stats document, served by the daemon as
// /debug/alloc/stats and printed by libsydralloc.so's SYDRA_ALLOC_STATS=1 report. It must
// parse, keep the upstream keys, carry every counter of the snapshot under its name, and
// write doubles that read back exactly.
#include "alloc/stats_json.hpp"

#include <doctest/doctest.h>

#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "alloc/small_pool_allocator.hpp"

namespace {

using nlohmann::json;
using sydra::alloc::AllocatorStats;
using sydra::alloc::ClassStats;

// Every key path in the document ("small_pool.shards[].classes[].lock_wait_ns", ...),
// arrays folded into one element pattern.
void collect_paths(const json& j, const std::string& prefix, std::set<std::string>& out) {
  if (j.is_object()) {
    for (auto it = j.begin(); it != j.end(); ++it) {
      const std::string path = prefix.empty() ? it.key() : prefix + "." + it.key();
      out.insert(path);
      collect_paths(it.value(), path, out);
    }
  } else if (j.is_array()) {
    for (const json& e : j) collect_paths(e, prefix + "[]", out);
  }
}

std::set<std::string> paths(const json& j) {
  std::set<std::string> out;
  collect_paths(j, "", out);
  return out;
}

// A snapshot with traffic in it: shards, cross-thread frees, fallback blocks, retires.
AllocatorStats busy_snapshot(sydra::alloc::SmallPoolAllocator& a) {
  std::vector<void*> blocks;
  for (std::size_t size : {1u, 16u, 48u, 100u, 256u, 300u, 5000u, 100000u}) {
    for (int i = 0; i < 50; ++i) blocks.push_back(a.allocate(size));
  }
  std::thread other([&] {
    for (std::size_t i = 0; i < blocks.size(); i += 2) a.deallocate(blocks[i]);
    a.release_thread();
  });
  other.join();
  for (std::size_t i = 1; i < blocks.size(); i += 2) a.retire(blocks[i]);
  a.advance_epoch();
  return a.snapshot();
}

// One per-class entry against its struct: every counter under its own name, and the
// upstream names for the same figures.
void check_class(const json& j, const ClassStats& c) {
  REQUIRE(j.is_object());
  CHECK(j.at("size") == c.size);
  CHECK(j.at("alloc_size") == c.size);  // upstream: block size with header; ours have none
#define SYDRA_X(name) CHECK_MESSAGE(j.at(#name) == c.name, #name);
  SYDRA_CLASS_STATS(SYDRA_X)
#undef SYDRA_X
  CHECK(j.at("free_nodes") == c.free_blocks);
  CHECK(j.at("lock_wait_ns_total") == c.lock_wait_ns);
  CHECK(j.at("lock_hold_ns_total") == c.lock_hold_ns);
}

void check_classes(const json& j, const std::array<ClassStats, sydra::alloc::kNumClasses>& classes) {
  REQUIRE(j.is_array());
  REQUIRE(j.size() == classes.size());
  for (std::size_t i = 0; i < classes.size(); ++i) check_class(j[i], classes[i]);
}

}  // namespace

TEST_SUITE("unit") {
  TEST_CASE("stats_to_json carries every figure of the snapshot under its documented name") {
    sydra::alloc::Options options;
    options.shards = 3;
    options.reserve_bytes = std::size_t{64} << 20;
    sydra::alloc::SmallPoolAllocator a(options);
    const AllocatorStats s = busy_snapshot(a);
    REQUIRE(s.shards.size() == 3);

    json doc;
    REQUIRE_NOTHROW(doc = json::parse(sydra::alloc::stats_to_json(s)));
    CHECK(doc.at("version") == s.version);
    CHECK(doc.at("allocator_mode") == std::string(sydra::alloc::to_string(s.mode)));

    // The upstream keys, then ours.
    const json& sp = doc.at("small_pool");
    CHECK(sp.at("shard_enabled") == s.shard_enabled);
    CHECK(sp.at("shard_count") == s.shard_count);
    CHECK(sp.at("slab_bytes") == s.slab_bytes);
    CHECK(sp.at("shard_alloc_hits") == s.shard_alloc_hits);
    CHECK(sp.at("shard_alloc_hits").get<std::uint64_t>() > 0);
    CHECK(sp.at("shard_alloc_misses") == s.shard_alloc_misses);
    CHECK(sp.at("shard_deferred_total") == s.shard_deferred_total);
    CHECK(sp.at("shard_epoch_current") == s.epoch.current);
    CHECK(sp.at("shard_epoch_min") == s.epoch.min_observed);
    const json& fb = sp.at("fallback");
    CHECK(fb.at("allocs") == s.fallback.allocs);
    CHECK(fb.at("frees") == s.fallback.frees);
    CHECK(fb.at("resizes") == s.fallback.resizes);
    CHECK(fb.at("remaps") == s.fallback.remaps);
    CHECK(fb.at("live_bytes") == s.fallback.live_bytes);
    REQUIRE(fb.at("size_buckets").size() == s.fallback.size_buckets.size());
    for (std::size_t i = 0; i < s.fallback.size_buckets.size(); ++i) {
      const auto& b = s.fallback.size_buckets[i];
      CHECK(fb["size_buckets"][i].at("count") == b.count);
      if (b.upper_bound == UINT64_MAX)
        CHECK(fb["size_buckets"][i].at("upper_bound").is_null());  // +Inf
      else
        CHECK(fb["size_buckets"][i].at("upper_bound") == b.upper_bound);
    }
    CHECK(fb["size_buckets"].back()["upper_bound"].is_null());
    check_classes(sp.at("buckets"), s.buckets);
    check_classes(sp.at("legacy"), s.legacy);

    const json& ep = sp.at("epoch");
    CHECK(ep.at("current") == s.epoch.current);
    CHECK(ep.at("min_observed") == s.epoch.min_observed);
    CHECK(ep.at("lag") == s.epoch.lag);
    CHECK(ep.at("advances") == s.epoch.advances);
    CHECK(ep.at("threads") == s.epoch.threads);
    CHECK(ep.at("active_readers") == s.epoch.active_readers);

    REQUIRE(sp.at("shards").size() == s.shards.size());
    for (std::size_t i = 0; i < s.shards.size(); ++i) {
      const json& j = sp["shards"][i];
      const auto& sh = s.shards[i];
      CHECK(j.at("id") == sh.id);
#define SYDRA_X(name) CHECK_MESSAGE(j.at(#name) == sh.name, #name);
      SYDRA_SHARD_STATS(SYDRA_X)
#undef SYDRA_X
      const ClassStats t = sh.totals();
      for (const char* key : {"allocations", "frees", "in_use", "cached", "slabs", "deferred_enqueued",
                              "deferred_reclaimed", "deferred_pending"})
        CHECK_MESSAGE(j.contains(key), key);
      CHECK(j.at("allocations") == t.allocations);
      CHECK(j.at("frees") == t.frees);
      CHECK(j.at("in_use") == t.in_use);
      CHECK(j.at("deferred_pending") == t.deferred_pending);
      std::uint64_t in_use_bytes = 0;
      for (const auto& c : sh.classes) in_use_bytes += c.in_use * c.size;
      CHECK(j.at("in_use_bytes") == in_use_bytes);
      check_classes(j.at("classes"), sh.classes);
    }

    const json& m = doc.at("memory");
    CHECK(m.at("reserved_bytes") == s.memory.reserved_bytes);
    CHECK(m.at("committed_bytes") == s.memory.committed_bytes);
    CHECK(m.at("resident_bytes") == s.memory.resident_bytes);
    CHECK(m.at("returned_bytes") == s.memory.returned_bytes);
    CHECK(m.at("live_bytes") == s.memory.live_bytes);
    CHECK(m.at("pool_live_bytes") == s.memory.pool_live_bytes);
    CHECK(m.at("process_resident_bytes") == s.memory.process_resident_bytes);
    // The shortest text that reads back as the same double.
    CHECK(m.at("fragmentation").get<double>() == s.memory.fragmentation);
    CHECK(paths(doc).size() > 100);  // not vacuous: classes, shards, fallback buckets, memory
  }

  TEST_CASE("stats_to_json writes doubles exactly and as JSON numbers") {
    AllocatorStats s;
    for (const double v : {0.0, 0.1, 1.0 / 3.0, 0.98199999999999998, 1e-300, 123456.789}) {
      CAPTURE(v);
      s.memory.fragmentation = v;
      const json doc = json::parse(sydra::alloc::stats_to_json(s));
      CHECK(doc["memory"]["fragmentation"].get<double>() == v);
    }
    s.memory.fragmentation = 0.1;
    CHECK(sydra::alloc::stats_to_json(s).find("\"fragmentation\":0.1}") != std::string::npos);
  }

  TEST_CASE("stats_to_json of an unused allocator is a valid document with the same keys") {
    sydra::alloc::Options options;
    options.shards = 0;
    options.reserve_bytes = std::size_t{16} << 20;
    sydra::alloc::SmallPoolAllocator a(options);
    const json doc = json::parse(sydra::alloc::stats_to_json(a.snapshot()));
    CHECK(doc["small_pool"]["shards"].empty());
    CHECK(doc["small_pool"]["shard_enabled"] == false);
    CHECK(doc["memory"]["fragmentation"].get<double>() == 0.0);

    sydra::alloc::Options sharded;
    sharded.shards = 2;
    sharded.reserve_bytes = std::size_t{16} << 20;
    sydra::alloc::SmallPoolAllocator b(sharded);
    std::set<std::string> busy = paths(json::parse(sydra::alloc::stats_to_json(busy_snapshot(b))));
    std::set<std::string> idle = paths(doc);
    // The unused allocator lacks only what is under the (empty) shards array.
    for (const std::string& p : idle) CHECK_MESSAGE(busy.count(p) == 1, "extra key ", p);
    for (const std::string& p : busy)
      if (p.rfind("small_pool.shards[]", 0) != 0) CHECK_MESSAGE(idle.count(p) == 1, "missing key ", p);
  }
}
