// Gorilla compression of one block of points (Pelkonen et al., "Gorilla: A Fast, Scalable,
// In-Memory Time Series Database", VLDB 2015), the encoding of segment blocks.
//
// A block is a bit stream, most significant bit first, one entry per point:
//   point 0   ts as 64 raw bits, value as 64 raw bits
//   point i   ts:    delta-of-delta d = (ts[i] - ts[i-1]) - (ts[i-1] - ts[i-2]) (the first
//                    delta counts from 0), zigzag-mapped to z, then
//                      '0'                 d == 0
//                      '10'    + 7 bits    z < 2^7
//                      '110'   + 12 bits   z < 2^12
//                      '1110'  + 20 bits   z < 2^20
//                      '11110' + 32 bits   z < 2^32
//                      '11111' + 64 bits   anything else
//             value: x = bits(v[i]) XOR bits(v[i-1]), then
//                      '0'                  x == 0
//                      '10' + meaningful bits, when x fits the previous window (its leading
//                            and trailing zero counts are at least the previous ones)
//                      '11' + 6 bits leading zeros + 6 bits (length - 1) + length bits
// Deltas are computed modulo 2^64, so any pair of timestamps (INT64_MIN next to INT64_MAX)
// round-trips. Values round-trip bit for bit (NaN payloads, -0.0, denormals). The point
// count is stored by the container (the segment index), not in the stream. Input must be
// sorted by ts; the codec does not check it.
#pragma once

#include <cstddef>
#include <span>
#include <stdexcept>
#include <vector>

#include "server/storage/types.hpp"

namespace sydra::storage {

// A stream that ends early or describes an impossible value.
class CodecError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Appends the encoding of `points` to `out` (nothing for an empty span).
void encode_points(std::span<const Point> points, std::vector<std::byte>& out);

// Decodes `count` points from `bytes` and appends them to `out`. Throws CodecError when the
// stream is too short or malformed; never reads outside `bytes`.
void decode_points(std::span<const std::byte> bytes, std::size_t count, std::vector<Point>& out);

}  // namespace sydra::storage
