// The readable form of the daemon's /debug/alloc/stats document (alloc/stats_json.cpp)
// that `sydradb stats` prints. Separate from the fetching so it can be tested without a server.
#pragma once

#include <cstdint>
#include <string>

#include <nlohmann/json_fwd.hpp>

namespace sydra::cli {

// Bytes in binary units: "512 B", "1.5 KiB", "64.0 MiB", "16.0 GiB", "2.0 TiB".
std::string format_bytes(std::uint64_t bytes);

// A summary (mode, shards, hits, fallback, deferred, epochs, memory) and a per-shard table,
// each line ending in '\n'; `url` names the daemon in the first line. The document may come
// from another version of the daemon: a missing field, or one of the wrong type, shows as
// "?". Never throws, short of std::bad_alloc.
std::string format_stats(const nlohmann::json& doc, const std::string& url);

}  // namespace sydra::cli
