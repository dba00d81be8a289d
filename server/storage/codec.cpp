#include "server/storage/codec.hpp"

#include <bit>
#include <cstdint>
#include <cstring>

namespace sydra::storage {
namespace {

std::uint64_t zigzag(std::uint64_t d) noexcept {
  return (d << 1) ^ static_cast<std::uint64_t>(static_cast<std::int64_t>(d) >> 63);
}
std::uint64_t unzigzag(std::uint64_t z) noexcept {
  return (z >> 1) ^ (~(z & 1) + 1);
}

std::uint64_t value_bits(double v) noexcept {
  return std::bit_cast<std::uint64_t>(v);
}

// Bits are gathered into a 64-bit word, most significant first, and stored big-endian so
// that the stream reads in order byte by byte.
class BitWriter {
 public:
  explicit BitWriter(std::vector<std::byte>& out) : out_(out) {}

  // Appends the low `n` bits of `value`, 1 <= n <= 64.
  void put(std::uint64_t value, unsigned n) {
    if (n < 64) value &= (std::uint64_t{1} << n) - 1;
    const unsigned room = 64 - used_;
    if (n < room) {
      word_ |= value << (room - n);
      used_ += n;
      return;
    }
    const unsigned rest = n - room;  // bits that go into the next word
    word_ |= rest == 0 ? value : value >> rest;
    emit(8);
    word_ = rest == 0 ? 0 : value << (64 - rest);
    used_ = rest;
  }

  void finish() {
    emit((used_ + 7) / 8);
    used_ = 0;
  }

 private:
  void emit(unsigned bytes) {
    for (unsigned i = 0; i < bytes; ++i) out_.push_back(static_cast<std::byte>(word_ >> (56 - 8 * i)));
    word_ = 0;
  }

  std::vector<std::byte>& out_;
  std::uint64_t word_ = 0;
  unsigned used_ = 0;
};

class BitReader {
 public:
  explicit BitReader(std::span<const std::byte> bytes)
      : data_(bytes.data()), size_(bytes.size()), bits_(bytes.size() * 8) {}

  // Reads `n` bits, 1 <= n <= 64: one 8-byte big-endian load, plus one byte when the bits
  // straddle it.
  std::uint64_t get(unsigned n) {
    if (n > bits_ - pos_) throw CodecError("block ends in the middle of a point");
    const std::size_t byte = pos_ >> 3;
    const unsigned offset = static_cast<unsigned>(pos_ & 7);
    const std::uint64_t window = load(byte) << offset;  // the top 64 - offset bits are ours
    std::uint64_t result = window >> (64 - n);
    if (n > 64 - offset) {
      const unsigned extra = n - (64 - offset);  // 1..7 bits from the ninth byte, which exists
      result |= static_cast<std::uint64_t>(data_[byte + 8]) >> (8 - extra);
    }
    pos_ += n;
    return result;
  }

  bool bit() {
    if (pos_ >= bits_) throw CodecError("block ends in the middle of a point");
    const auto b = static_cast<unsigned>(data_[pos_ >> 3]);
    const bool set = ((b >> (7 - (pos_ & 7))) & 1) != 0;
    ++pos_;
    return set;
  }

  // Counts leading '1' bits up to `max`, consuming them and the terminating '0' (if < max).
  unsigned ones(unsigned max) {
    unsigned n = 0;
    while (n < max && bit()) ++n;
    return n;
  }

 private:
  std::uint64_t load(std::size_t byte) const noexcept {
    std::uint64_t w = 0;
    if (byte + 8 <= size_) {
      std::memcpy(&w, data_ + byte, 8);
      return __builtin_bswap64(w);
    }
    for (std::size_t i = 0; i < 8; ++i)
      w = (w << 8) | (byte + i < size_ ? static_cast<std::uint64_t>(data_[byte + i]) : 0);
    return w;
  }

  const std::byte* data_;
  std::size_t size_;
  std::size_t bits_;
  std::size_t pos_ = 0;
};

struct TsBucket {
  unsigned prefix_bits;  // number of bits of the prefix
  std::uint64_t prefix;  // the prefix, low bits
  unsigned payload_bits;
};
constexpr TsBucket kTsBuckets[] = {
    {2, 0b10, 7}, {3, 0b110, 12}, {4, 0b1110, 20}, {5, 0b11110, 32}, {5, 0b11111, 64},
};

}  // namespace

void encode_points(std::span<const Point> points, std::vector<std::byte>& out) {
  if (points.empty()) return;
  BitWriter w(out);
  w.put(static_cast<std::uint64_t>(points[0].ts), 64);
  std::uint64_t prev_value = value_bits(points[0].value);
  w.put(prev_value, 64);

  std::uint64_t prev_ts = static_cast<std::uint64_t>(points[0].ts);
  std::uint64_t prev_delta = 0;
  unsigned window_leading = 65;  // no window yet
  unsigned window_trailing = 0;
  for (std::size_t i = 1; i < points.size(); ++i) {
    const auto ts = static_cast<std::uint64_t>(points[i].ts);
    const std::uint64_t delta = ts - prev_ts;
    const std::uint64_t z = zigzag(delta - prev_delta);
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

    const std::uint64_t value = value_bits(points[i].value);
    const std::uint64_t x = value ^ prev_value;
    prev_value = value;
    if (x == 0) {
      w.put(0, 1);
      continue;
    }
    const auto leading = static_cast<unsigned>(std::countl_zero(x));
    const auto trailing = static_cast<unsigned>(std::countr_zero(x));
    if (window_leading <= 64 && leading >= window_leading && trailing >= window_trailing) {
      w.put(0b10, 2);
      w.put(x >> window_trailing, 64 - window_leading - window_trailing);
    } else {
      const unsigned length = 64 - leading - trailing;
      w.put(0b11, 2);
      w.put(leading, 6);
      w.put(length - 1, 6);
      w.put(x >> trailing, length);
      window_leading = leading;
      window_trailing = trailing;
    }
  }
  w.finish();
}

void decode_points(std::span<const std::byte> bytes, std::size_t count, std::vector<Point>& out) {
  if (count == 0) return;
  BitReader r(bytes);
  std::uint64_t ts = r.get(64);
  std::uint64_t value = r.get(64);
  out.push_back({static_cast<Timestamp>(ts), std::bit_cast<double>(value)});

  std::uint64_t delta = 0;
  unsigned window_leading = 65;
  unsigned window_trailing = 0;
  for (std::size_t i = 1; i < count; ++i) {
    const unsigned ones = r.ones(5);
    std::uint64_t z = 0;
    if (ones > 0) {
      const unsigned payload_bits = kTsBuckets[ones - 1].payload_bits;
      z = r.get(payload_bits);
    }
    delta += unzigzag(z);
    ts += delta;

    if (r.bit()) {
      std::uint64_t x;
      if (!r.bit()) {
        if (window_leading > 64) throw CodecError("value refers to a window before one was set");
        x = r.get(64 - window_leading - window_trailing) << window_trailing;
      } else {
        const auto leading = static_cast<unsigned>(r.get(6));
        const unsigned length = static_cast<unsigned>(r.get(6)) + 1;
        if (leading + length > 64) throw CodecError("value window wider than 64 bits");
        const unsigned trailing = 64 - leading - length;
        x = r.get(length) << trailing;
        window_leading = leading;
        window_trailing = trailing;
      }
      value ^= x;
    }
    out.push_back({static_cast<Timestamp>(ts), std::bit_cast<double>(value)});
  }
}

}  // namespace sydra::storage
