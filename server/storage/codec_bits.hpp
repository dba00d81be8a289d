// Building blocks shared by the block codecs (codec_gorilla, int_column, codec): the error
// they throw, a most-significant-bit-first bit stream (Gorilla's), LEB128 varints and a
// bounds-checked byte cursor. Every reader here checks its bounds before it loads: a
// malformed or truncated block throws CodecError, never reads outside its span.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <stdexcept>
#include <vector>

namespace sydra::storage {

// A block that ends early or describes an impossible value.
class CodecError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

namespace codec {

inline std::uint64_t zigzag(std::uint64_t d) noexcept {
  return (d << 1) ^ static_cast<std::uint64_t>(static_cast<std::int64_t>(d) >> 63);
}
inline std::uint64_t unzigzag(std::uint64_t z) noexcept {
  return (z >> 1) ^ (~(z & 1) + 1);
}

static_assert(std::endian::native == std::endian::little, "the block formats are loaded little-endian");

inline std::uint64_t load_le64(const std::byte* p) noexcept {
  std::uint64_t w;
  std::memcpy(&w, p, 8);
  return w;
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

  // Pads the last byte with zero bits.
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

  // Bytes consumed so far, the last one counted even when only partly read.
  std::size_t bytes_used() const noexcept { return (pos_ + 7) / 8; }

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

// LEB128: 7 bits per byte, least significant group first, high bit = more follows.
inline void put_varint(std::vector<std::byte>& out, std::uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<std::byte>(v | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<std::byte>(v));
}

inline unsigned varint_bytes(std::uint64_t v) noexcept {
  unsigned n = 1;
  while (v >= 0x80) {
    v >>= 7;
    ++n;
  }
  return n;
}

// A bounds-checked reader over a block's bytes.
class ByteCursor {
 public:
  explicit ByteCursor(std::span<const std::byte> bytes) : bytes_(bytes) {}

  const std::byte* take(std::size_t n) {
    if (n > bytes_.size() - pos_) throw CodecError("block ends early");
    const std::byte* p = bytes_.data() + pos_;
    pos_ += n;
    return p;
  }
  std::uint8_t u8() { return static_cast<std::uint8_t>(*take(1)); }
  std::uint64_t u64() { return load_le64(take(8)); }
  std::uint64_t varint() {
    std::uint64_t v = 0;
    for (unsigned shift = 0;; shift += 7) {
      const std::uint8_t b = u8();
      if (shift == 63 && b > 1) throw CodecError("varint longer than 64 bits");
      v |= static_cast<std::uint64_t>(b & 0x7f) << shift;
      if ((b & 0x80) == 0) return v;
    }
  }

  std::span<const std::byte> rest() const noexcept { return bytes_.subspan(pos_); }
  void skip(std::size_t n) { take(n); }
  std::size_t position() const noexcept { return pos_; }
  bool done() const noexcept { return pos_ == bytes_.size(); }

 private:
  std::span<const std::byte> bytes_;
  std::size_t pos_ = 0;
};

}  // namespace codec
}  // namespace sydra::storage
