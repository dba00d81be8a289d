// alloc/stats_json.cpp (the hand-written JSON of libsydralloc.so's SYDRA_ALLOC_STATS=1
// report) against the server's /debug/alloc/stats document (nlohmann::json): it must parse,
// have exactly the same keys at every level, and carry the same values.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "alloc/small_pool_allocator.hpp"
#include "alloc/stats_json.hpp"
#include "server/api/alloc_stats_json.hpp"

namespace {

using nlohmann::json;
using sydra::alloc::AllocatorStats;

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

}  // namespace

TEST_SUITE("unit") {
  TEST_CASE("stats_to_json parses and has the server document's keys and values") {
    sydra::alloc::Options options;
    options.shards = 3;
    options.reserve_bytes = std::size_t{64} << 20;
    sydra::alloc::SmallPoolAllocator a(options);
    const AllocatorStats stats = busy_snapshot(a);
    REQUIRE(stats.shards.size() == 3);

    const std::string text = sydra::alloc::stats_to_json(stats);
    json ours;
    REQUIRE_NOTHROW(ours = json::parse(text));
    const json theirs = sydra::server::alloc_stats_json(stats);

    const std::set<std::string> our_paths = paths(ours);
    const std::set<std::string> their_paths = paths(theirs);
    for (const std::string& p : their_paths) CHECK_MESSAGE(our_paths.count(p) == 1, "missing key ", p);
    for (const std::string& p : our_paths) CHECK_MESSAGE(their_paths.count(p) == 1, "extra key ", p);
    CHECK(our_paths.size() > 100);  // not vacuous: classes, shards, fallback buckets, memory

    // Same values: the doubles compared as numbers (the text forms may differ).
    json a_doc = ours, b_doc = theirs;
    const double fa = a_doc["memory"]["fragmentation"].get<double>();
    const double fb = b_doc["memory"]["fragmentation"].get<double>();
    CHECK(fa == doctest::Approx(fb));
    a_doc["memory"].erase("fragmentation");
    b_doc["memory"].erase("fragmentation");
    CHECK(a_doc == b_doc);
    CHECK(ours["small_pool"]["shard_alloc_hits"].get<std::uint64_t>() > 0);
    CHECK(ours["small_pool"]["fallback"]["size_buckets"].back()["upper_bound"].is_null());
  }

  TEST_CASE("stats_to_json of an unused allocator is a valid document") {
    sydra::alloc::Options options;
    options.shards = 0;
    options.reserve_bytes = std::size_t{16} << 20;
    sydra::alloc::SmallPoolAllocator a(options);
    const json doc = json::parse(sydra::alloc::stats_to_json(a.snapshot()));
    CHECK(doc["small_pool"]["shards"].empty());
    CHECK(doc["small_pool"]["shard_enabled"] == false);
    CHECK(doc["memory"]["fragmentation"].get<double>() == 0.0);
    CHECK(paths(doc) == paths(sydra::server::alloc_stats_json(a.snapshot())));
  }
}
