// The allocator's stats document as JSON, without any JSON library: the same document
// (same keys, same nesting) as the server's /debug/alloc/stats
// (server/api/alloc_stats_json.cpp), for libsydralloc.so's SYDRA_ALLOC_STATS=1 report.
// tests/preload/stats_json_test.cpp checks the two stay alike.
//
// Layer 3 of alloc/ (beside stats.hpp): includes only stats.hpp and the standard library.
#pragma once

#include <string>

#include "stats.hpp"

namespace sydra::alloc {

// One JSON object, no trailing newline. Allocates (a std::string).
std::string stats_to_json(const AllocatorStats& stats);

}  // namespace sydra::alloc
