// The payload of one WAL record: an ingest request's points, grouped in runs of one series.
//
//   payload = u32 version (1) | u32 run count | run*
//   run     = u64 series id | u32 key bytes | u32 point count | key | (i64 ts, f64 value)*
//
// Little-endian. The WAL frames and checksums records (wal.hpp); this is what is inside.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string_view>
#include <vector>

#include "server/storage/types.hpp"

namespace sydra::storage {

// Consecutive points of one series, [begin, end) of a points array.
struct WalRun {
  SeriesId id;
  std::string_view key;  // canonical key
  std::size_t begin;
  std::size_t end;
};

// Replaces `out` with the payload for `runs` over `points`.
void encode_wal_record(std::span<const WalRun> runs, std::span<const Point> points,
                       std::vector<std::byte>& out);

// Calls fn(id, key, points) per run, in order; `key` and `points` are valid during the call
// (`scratch` holds the points). Throws std::runtime_error naming `lsn` when the payload does
// not decode (it passed its CRC, so: another version, or a bug).
void decode_wal_record(Lsn lsn, std::span<const std::byte> payload, std::vector<Point>& scratch,
                       const std::function<void(SeriesId, std::string_view, std::span<const Point>)>& fn);

}  // namespace sydra::storage
