// The encodings of a segment block (up to segment::max_block_points points of one series,
// sorted by ts), one per segment format version. Format 1 is Gorilla (codec_gorilla.hpp). Format 2,
// written today, stores timestamps and values as two columns and picks the value encoding
// per block, the smallest that holds the block exactly:
//
//   block     = u8 value encoding | ts column | values
//   ts column = an integer column (int_column.hpp) of the residuals of order 2 of the
//               timestamps: r[0] = t[0], r[1] = t[1] - t[0],
//               r[i] = (t[i] - t[i-1]) - (t[i-1] - t[i-2]), all modulo 2^64, so any int64
//               timestamps round-trip. At a regular interval r[i] = 0 for i >= 2: the
//               column is 0 bits wide and holds only t[0] and the interval, as two
//               exceptions (about 16 bytes per block); jitter costs a few bits per point;
//               a rare gap is an exception, not a wider column.
//   values, by encoding:
//     0 constant  u64 bits of the one value every point has
//     1 decimal   u8 exponent e (0..18) | u8 order k (0..2) | an integer column of the
//                 residuals of order k (formed as for timestamps) of the integers m[i] with
//                 v[i] == double(m[i]) / 10^e bit for bit, |m[i]| < 2^53. The decoder's
//                 division is IEEE, correctly rounded, so the encoder's check of exactly
//                 that expression proves the round trip. Values that were decimals with
//                 up to e digits after the point (2.37, 1024.5) or integers (e = 0) take
//                 this form; e is the smallest exponent that holds every value of the
//                 block, k the order with the smallest column (0: values around a level,
//                 1: a random walk, 2: a counter at a steady rate).
//     2 xor       the Gorilla XOR value stream (codec_gorilla.hpp): values that are not
//                 short decimals but share sign, exponent and high mantissa bits
//     3 raw       u64 bits per value: high-entropy doubles, where XOR costs more than 64
//                 bits per value
// Every encoding that applies is sized and the smallest wins (the XOR stream is encoded
// only when a cheap lower bound of its size could beat the best so far). Values keep their
// bits: NaN payloads, infinities, -0.0 and subnormals are not decimals and go to constant,
// XOR or raw. Bytes left after the values, an unknown encoding or an exponent or order out
// of range are errors. All integers little-endian.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "server/storage/codec_bits.hpp"
#include "server/storage/types.hpp"

namespace sydra::storage {

// Block encodings, numbered as the segment format versions that write them.
enum class BlockFormat : std::uint32_t {
  kGorilla = 1,
  kColumnar = 2,
};
inline constexpr BlockFormat kNewestBlockFormat = BlockFormat::kColumnar;

// Appends the encoding of `points` (sorted by ts; not checked) to `out`; nothing for an
// empty span.
void encode_points(BlockFormat format, std::span<const Point> points, std::vector<std::byte>& out);

// Decodes `count` points from `bytes` and appends them to `out`. Throws CodecError (and
// leaves `out` as it was) when the block is truncated or malformed; never reads outside
// `bytes`. `count` comes from the container (the segment index bounds it): a constant
// block at a regular interval holds any number of points in a few bytes.
void decode_points(BlockFormat format, std::span<const std::byte> bytes, std::size_t count,
                   std::vector<Point>& out);

// The value encodings of format 2.
enum class ValueEncoding : std::uint8_t {
  kConstant = 0,
  kDecimal = 1,
  kXor = 2,
  kRaw = 3,
};
const char* value_encoding_name(ValueEncoding e) noexcept;

// What a format-2 block is made of (for statistics and benchmarks). Throws CodecError as
// decode_points does.
struct BlockLayout {
  ValueEncoding values = ValueEncoding::kRaw;
  std::size_t ts_bytes = 0;     // the ts column
  std::size_t value_bytes = 0;  // the encoding byte and the values
  unsigned exponent = 0;        // decimal only
  unsigned order = 0;           // decimal only
};
BlockLayout inspect_block(std::span<const std::byte> bytes, std::size_t count);

}  // namespace sydra::storage
