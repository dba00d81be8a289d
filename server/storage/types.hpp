// Vocabulary shared by every part of the storage engine.
#pragma once

#include <cstdint>

namespace sydra::storage {

// A series is its name plus its sorted tags; its id is XXH3-64 of the canonical key
// (see series_key.hpp).
using SeriesId = std::uint64_t;

// Timestamps are signed 64-bit milliseconds since the Unix epoch (UTC).
using Timestamp = std::int64_t;

struct Point {
  Timestamp ts;
  double value;
};

// WAL log sequence number: records are numbered 1, 2, 3, ... across files; 0 = none.
using Lsn = std::uint64_t;

}  // namespace sydra::storage
