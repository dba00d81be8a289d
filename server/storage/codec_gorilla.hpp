// Gorilla compression (Pelkonen et al., "Gorilla: A Fast, Scalable, In-Memory Time Series
// Database", VLDB 2015): the block encoding of segment format 1, and its XOR value stream,
// one of the value encodings of format 2 (codec.hpp).
//
// A format-1 block is a bit stream, most significant bit first, one entry per point:
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
//
// The XOR value stream is the same without the timestamps: the first value as 64 raw bits,
// then one value entry per further value; the last byte is padded with zero bits. Its
// writer opens a new window ('11') when that is cheaper than reusing the previous one
// (Gorilla reuses any window the value fits in, and a wide window then costs nearly 64
// bits for every value that follows); format 1 blocks are written as they always were.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "server/storage/codec_bits.hpp"
#include "server/storage/types.hpp"

namespace sydra::storage::gorilla {

// Appends the format-1 encoding of `points` to `out` (nothing for an empty span).
void encode_points(std::span<const Point> points, std::vector<std::byte>& out);

// Decodes `count` points from `bytes` and appends them to `out`. Throws CodecError when the
// stream is too short or malformed; never reads outside `bytes`.
void decode_points(std::span<const std::byte> bytes, std::size_t count, std::vector<Point>& out);

// The XOR value stream of the values of `points` (at least one), appended to `out`.
void encode_values(std::span<const Point> points, std::vector<std::byte>& out);

// A lower bound of encode_values' size in bytes, in one cheap pass (no encoding): a block
// codec skips the XOR stream when another encoding is already at most this small.
std::size_t values_size_lower_bound(std::span<const Point> points) noexcept;

// Decodes `points.size()` values from the start of `bytes` into points[i].value; returns
// the bytes used. Throws CodecError as decode_points does.
std::size_t decode_values(std::span<const std::byte> bytes, std::span<Point> points);

}  // namespace sydra::storage::gorilla
