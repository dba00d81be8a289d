// libFuzzer target for the block codecs (server/storage/codec.hpp), without the segment
// file's CRCs in the way (fuzz_wal_reader covers the file around them). The first byte
// picks what the rest is:
//
//   bit 7 clear  a block: bit 0 the format (1 Gorilla, 2 columnar), the next two bytes the
//                point count (1..4096), the rest the block's bytes. Decoding may fail with
//                CodecError (and must then leave the output as it was) or give exactly
//                `count` points; a format-2 block that decodes is re-encoded, and that
//                encoding must decode to the same bits (so must inspect_block agree).
//   bit 7 set    points: 16 bytes each (i64 ts, u64 value bits, little-endian). Bits 0-2
//                turn values into decimals m / 10^e (e from the value's own bits) so that
//                the decimal encodings get exercised, bit 3 sorts the timestamps. Both
//                formats must round-trip every point bit for bit.
// Any other outcome aborts; ASan and UBSan watch every read.
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <span>
#include <vector>

#include "server/storage/codec.hpp"

namespace {

using sydra::storage::BlockFormat;
using sydra::storage::CodecError;
using sydra::storage::Point;

bool same_bits(std::span<const Point> a, std::span<const Point> b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (a[i].ts != b[i].ts ||
        std::bit_cast<std::uint64_t>(a[i].value) != std::bit_cast<std::uint64_t>(b[i].value))
      return false;
  return true;
}

void round_trip(BlockFormat format, std::span<const Point> points) {
  std::vector<std::byte> bytes;
  sydra::storage::encode_points(format, points, bytes);
  std::vector<Point> out;
  try {
    sydra::storage::decode_points(format, bytes, points.size(), out);
  } catch (const CodecError&) {
    std::abort();  // our own encoding must decode
  }
  if (!same_bits(points, out)) std::abort();
  if (format == BlockFormat::kColumnar && !points.empty()) {
    const auto layout = sydra::storage::inspect_block(bytes, points.size());
    if (layout.ts_bytes < 2 || layout.ts_bytes + layout.value_bytes != bytes.size()) std::abort();
  }
}

void fuzz_block(const std::uint8_t* data, std::size_t size) {
  if (size < 3) return;
  const BlockFormat format = (data[0] & 1) != 0 ? BlockFormat::kGorilla : BlockFormat::kColumnar;
  const std::size_t count = 1 + ((static_cast<std::size_t>(data[1]) << 8 | data[2]) % 4096);
  const std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(data + 3), size - 3);
  std::vector<Point> out{{42, 4.2}};
  try {
    sydra::storage::decode_points(format, bytes, count, out);
  } catch (const CodecError&) {
    if (out.size() != 1 || out[0].ts != 42) std::abort();
    return;
  }
  if (out.size() != count + 1) std::abort();
  if (format == BlockFormat::kColumnar) round_trip(format, std::span<const Point>(out).subspan(1));
}

void fuzz_points(const std::uint8_t* data, std::size_t size) {
  const std::uint8_t control = data[0];
  std::vector<Point> points((size - 1) / 16);
  for (std::size_t i = 0; i < points.size(); ++i) {
    std::uint64_t ts;
    std::uint64_t bits;
    std::memcpy(&ts, data + 1 + 16 * i, 8);
    std::memcpy(&bits, data + 9 + 16 * i, 8);
    points[i].ts = static_cast<std::int64_t>(ts);
    points[i].value = std::bit_cast<double>(bits);
    if ((control & 7) != 0 && (bits & 3) != 0) {
      // A decimal: a mantissa of up to 2^53 and an exponent from the value's bits.
      const auto m = static_cast<double>(static_cast<std::int64_t>(bits >> 8) >> (11 + (control & 7) * 5));
      points[i].value = m / std::pow(10.0, static_cast<double>((bits >> 2) % 20));
    }
  }
  if ((control & 8) != 0)
    std::sort(points.begin(), points.end(), [](const Point& a, const Point& b) { return a.ts < b.ts; });
  if (points.size() > 4096) points.resize(4096);
  round_trip(BlockFormat::kGorilla, points);
  round_trip(BlockFormat::kColumnar, points);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  if ((data[0] & 0x80) == 0) {
    fuzz_block(data, size);
  } else {
    fuzz_points(data, size);
  }
  return 0;
}
