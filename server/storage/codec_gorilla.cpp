#include "server/storage/codec_gorilla.hpp"

#include <bit>
#include <cstdint>

namespace sydra::storage::gorilla {
namespace {

using codec::BitReader;
using codec::BitWriter;

std::uint64_t value_bits(double v) noexcept {
  return std::bit_cast<std::uint64_t>(v);
}

struct TsBucket {
  unsigned prefix_bits;  // number of bits of the prefix
  std::uint64_t prefix;  // the prefix, low bits
  unsigned payload_bits;
};
constexpr TsBucket kTsBuckets[] = {
    {2, 0b10, 7}, {3, 0b110, 12}, {4, 0b1110, 20}, {5, 0b11110, 32}, {5, 0b11111, 64},
};

// The value half of the stream: one entry per value after the first. Gorilla reuses the
// previous window whenever the value fits in it; a window that became wide (a value whose
// sign or exponent changed) then costs most of 64 bits for every later value. With
// `reopen`, a value opens a new window when that is cheaper (its 12 control bits included);
// the reader is the same either way.
class XorWriter {
 public:
  XorWriter(std::uint64_t first, bool reopen) : prev_(first), reopen_(reopen) {}

  void put(BitWriter& w, std::uint64_t value) {
    const std::uint64_t x = value ^ prev_;
    prev_ = value;
    if (x == 0) {
      w.put(0, 1);
      return;
    }
    const auto leading = static_cast<unsigned>(std::countl_zero(x));
    const auto trailing = static_cast<unsigned>(std::countr_zero(x));
    const bool fits = window_leading_ <= 64 && leading >= window_leading_ && trailing >= window_trailing_;
    if (fits && (!reopen_ || 64 - window_leading_ - window_trailing_ <= 12 + 64 - leading - trailing)) {
      w.put(0b10, 2);
      w.put(x >> window_trailing_, 64 - window_leading_ - window_trailing_);
    } else {
      const unsigned length = 64 - leading - trailing;
      w.put(0b11, 2);
      w.put(leading, 6);
      w.put(length - 1, 6);
      w.put(x >> trailing, length);
      window_leading_ = leading;
      window_trailing_ = trailing;
    }
  }

 private:
  std::uint64_t prev_;
  bool reopen_;
  unsigned window_leading_ = 65;  // no window yet
  unsigned window_trailing_ = 0;
};

class XorReader {
 public:
  explicit XorReader(std::uint64_t first) : value_(first) {}

  std::uint64_t current() const noexcept { return value_; }

  std::uint64_t get(BitReader& r) {
    if (!r.bit()) return value_;
    std::uint64_t x;
    if (!r.bit()) {
      if (window_leading_ > 64) throw CodecError("value refers to a window before one was set");
      x = r.get(64 - window_leading_ - window_trailing_) << window_trailing_;
    } else {
      const auto header = static_cast<unsigned>(r.get(12));  // 6 bits leading zeros, 6 bits length - 1
      const unsigned leading = header >> 6;
      const unsigned length = (header & 63) + 1;
      if (leading + length > 64) throw CodecError("value window wider than 64 bits");
      const unsigned trailing = 64 - leading - length;
      x = r.get(length) << trailing;
      window_leading_ = leading;
      window_trailing_ = trailing;
    }
    value_ ^= x;
    return value_;
  }

 private:
  std::uint64_t value_;
  unsigned window_leading_ = 65;
  unsigned window_trailing_ = 0;
};

}  // namespace

void encode_points(std::span<const Point> points, std::vector<std::byte>& out) {
  if (points.empty()) return;
  BitWriter w(out);
  w.put(static_cast<std::uint64_t>(points[0].ts), 64);
  w.put(value_bits(points[0].value), 64);
  XorWriter values(value_bits(points[0].value), /*reopen=*/false);  // format 1: as it always was

  std::uint64_t prev_ts = static_cast<std::uint64_t>(points[0].ts);
  std::uint64_t prev_delta = 0;
  for (std::size_t i = 1; i < points.size(); ++i) {
    const auto ts = static_cast<std::uint64_t>(points[i].ts);
    const std::uint64_t delta = ts - prev_ts;
    const std::uint64_t z = codec::zigzag(delta - prev_delta);
    prev_ts = ts;
    prev_delta = delta;
    if (z == 0) {
      w.put(0, 1);
    } else {
      for (const TsBucket& b : kTsBuckets) {
        if (b.payload_bits == 64 || z < (std::uint64_t{1} << b.payload_bits)) {
          w.put(b.prefix, b.prefix_bits);
          w.put(z, b.payload_bits);
          break;
        }
      }
    }
    values.put(w, value_bits(points[i].value));
  }
  w.finish();
}

void decode_points(std::span<const std::byte> bytes, std::size_t count, std::vector<Point>& out) {
  if (count == 0) return;
  BitReader r(bytes);
  std::uint64_t ts = r.get(64);
  XorReader values(r.get(64));
  out.push_back({static_cast<Timestamp>(ts), std::bit_cast<double>(values.current())});

  std::uint64_t delta = 0;
  for (std::size_t i = 1; i < count; ++i) {
    const unsigned ones = r.ones(5);
    std::uint64_t z = 0;
    if (ones > 0) {
      const unsigned payload_bits = kTsBuckets[ones - 1].payload_bits;
      z = r.get(payload_bits);
    }
    delta += codec::unzigzag(z);
    ts += delta;
    out.push_back({static_cast<Timestamp>(ts), std::bit_cast<double>(values.get(r))});
  }
}

void encode_values(std::span<const Point> points, std::vector<std::byte>& out) {
  BitWriter w(out);
  w.put(value_bits(points[0].value), 64);
  XorWriter values(value_bits(points[0].value), /*reopen=*/true);
  for (std::size_t i = 1; i < points.size(); ++i) values.put(w, value_bits(points[i].value));
  w.finish();
}

std::size_t values_size_lower_bound(std::span<const Point> points) noexcept {
  // Each entry costs at least its control bits plus its meaningful bits (a window is never
  // narrower than the XOR it holds).
  std::uint64_t bits = 64;
  for (std::size_t i = 1; i < points.size(); ++i) {
    const std::uint64_t x = value_bits(points[i].value) ^ value_bits(points[i - 1].value);
    bits += x == 0 ? 1 : 2 + 64 - static_cast<unsigned>(std::countl_zero(x) + std::countr_zero(x));
  }
  return static_cast<std::size_t>((bits + 7) / 8);
}

std::size_t decode_values(std::span<const std::byte> bytes, std::span<Point> points) {
  if (points.empty()) return 0;
  BitReader r(bytes);
  XorReader values(r.get(64));
  points[0].value = std::bit_cast<double>(values.current());
  for (std::size_t i = 1; i < points.size(); ++i) points[i].value = std::bit_cast<double>(values.get(r));
  return r.bytes_used();
}

}  // namespace sydra::storage::gorilla
