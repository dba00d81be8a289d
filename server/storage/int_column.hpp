// A column of n 64-bit integers packed at one bit width, with exceptions (patched frame of
// reference, as PFOR in Zukowski et al., "Super-Scalar RAM-CPU Cache Compression", ICDE
// 2006): the timestamps and the scaled decimal values of a format-2 block (codec.hpp) are
// such columns of residuals (deltas, deltas of deltas).
//
//   column    = dense | sparse
//   dense     = u8 head | [varint zigzag(base)] | varint k | packed | k × exception
//   head      = bits 0-6: width w (0..64); bit 7: frame of reference (base present)
//   packed    = ceil(n·w / 8) bytes; value i in bits [i·w, (i+1)·w), bit 0 = the lowest
//               bit of byte 0 (little-endian bit order, so a 64-bit load and a shift read it)
//   exception = varint gap | varint high: index = previous index + 1 + gap (the first:
//               gap), and the stored value at index gets `high << w` added above its w
//               low bits (so w < 64; `high` fits in 64 - w bits)
//   sparse    = u8 0x7f | bitmap | dense column of the non-zero residuals
//   bitmap    = ceil(n / 8) bytes, bit i (bit i % 8 of byte i / 8) set when residual i is
//               not 0; the dense column holds as many values as bits are set
// The stored unsigned u gives back the residual r (two's complement, modulo 2^64) as
//   frame of reference:  r = base + u          zigzag:  r = (u >> 1) ^ -(u & 1)
// n is known to the reader (the block's point count). The encoder picks the mode and the
// width that give the fewest bytes (an estimate from the histogram of bit lengths: values
// wider than w become exceptions), so a few outliers (a gap in the timestamps, a reset
// counter) do not widen the whole column, and w = 0 stores runs of zeros in no bytes. When
// zeros are frequent among other values (a gauge that often stays put, timestamps that
// mostly keep their interval), the sparse form costs 1 bit per zero instead of w.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace sydra::storage::codec {

// How a column would be encoded, and about how many bytes that takes.
struct IntColumnPlan {
  bool sparse = false;  // then the rest is the plan of the non-zero residuals' column
  unsigned width = 0;
  bool frame_of_reference = false;
  std::uint64_t base = 0;  // with frame_of_reference: the minimum residual
  std::size_t bytes = 0;   // estimate (exact but for the exceptions' gap varints)
};

// Chooses the encoding of `residuals` (signed values stored as uint64, modulo 2^64).
IntColumnPlan plan_int_column(std::span<const std::uint64_t> residuals);

// Appends `residuals` encoded by `plan` (from plan_int_column of the same residuals).
void encode_int_column(std::span<const std::uint64_t> residuals, const IntColumnPlan& plan,
                       std::vector<std::byte>& out);

// Decodes a column of `n` values from the start of `bytes` into out[0..n) (the residuals);
// returns the bytes used. Throws CodecError when the column is truncated or malformed;
// never reads outside `bytes`.
std::size_t decode_int_column(std::span<const std::byte> bytes, std::size_t n, std::uint64_t* out);

}  // namespace sydra::storage::codec
