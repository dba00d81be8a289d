#include "server/storage/int_column.hpp"

#include <algorithm>
#include <array>
#include <bit>
#include <limits>

#include "server/storage/codec_bits.hpp"

namespace sydra::storage::codec {
namespace {

using Histogram = std::array<std::uint32_t, 65>;  // values by bit width 0..64

constexpr std::uint8_t kSparseHead = 0x7f;  // width 127: not a dense column

std::uint64_t stored(std::uint64_t residual, const IntColumnPlan& plan) noexcept {
  return plan.frame_of_reference ? residual - plan.base : zigzag(residual);
}

std::uint64_t low_mask(unsigned width) noexcept {
  return width == 64 ? ~std::uint64_t{0} : (std::uint64_t{1} << width) - 1;
}

// The cheapest width for values with histogram `h`; fills plan.width and plan.bytes. Every
// width up to the widest value is a candidate: one between two present widths saves no
// exception but can shorten the exceptions' high parts (their varints lose a byte every 7
// bits).
void choose_width(const Histogram& h, std::size_t n, IntColumnPlan& plan) {
  unsigned bins[65];
  unsigned bin_count = 0;
  for (unsigned b = 0; b <= 64; ++b)
    if (h[b] != 0) bins[bin_count++] = b;
  const std::size_t head = 1 + (plan.frame_of_reference ? varint_bytes(zigzag(plan.base)) : 0);
  plan.width = 0;
  plan.bytes = head + 1;
  if (bin_count == 0) return;
  std::size_t best = std::numeric_limits<std::size_t>::max();
  unsigned first_wider = 0;  // the first bin wider than w
  for (unsigned w = 0; w <= bins[bin_count - 1]; ++w) {
    while (first_wider < bin_count && bins[first_wider] <= w) ++first_wider;
    std::size_t exceptions = 0;
    std::size_t exception_bytes = 0;
    for (unsigned q = first_wider; q < bin_count; ++q) {
      exceptions += h[bins[q]];
      exception_bytes += static_cast<std::size_t>(h[bins[q]]) * ((bins[q] - w + 6) / 7);
    }
    // Gaps: one byte each while exceptions are at most 127 apart on average.
    exception_bytes += exceptions * (exceptions > 0 && n / exceptions >= 128 ? 2 : 1);
    const std::size_t bytes = head + varint_bytes(exceptions) + (n * w + 7) / 8 + exception_bytes;
    if (bytes <= best) {  // on a tie the wider column: fewer exceptions to patch
      best = bytes;
      plan.width = w;
    }
  }
  plan.bytes = best;
}

void pack(std::span<const std::uint64_t> residuals, const IntColumnPlan& plan, std::vector<std::byte>& out) {
  const unsigned w = plan.width;
  if (w == 0) return;
  const std::uint64_t mask = low_mask(w);
  std::uint64_t acc = 0;
  unsigned used = 0;  // bits in acc, < 64
  const auto emit = [&](unsigned bytes) {
    for (unsigned b = 0; b < bytes; ++b) out.push_back(static_cast<std::byte>(acc >> (8 * b)));
  };
  for (const std::uint64_t r : residuals) {
    const std::uint64_t v = stored(r, plan) & mask;
    acc |= v << used;
    if (used + w >= 64) {
      emit(8);
      acc = used == 0 ? 0 : v >> (64 - used);
      used = used + w - 64;
    } else {
      used += w;
    }
  }
  emit((used + 7) / 8);
}

// Value i of width w (1..64) from `packed`, reading only bytes inside it.
std::uint64_t unpack_slow(const std::byte* packed, std::size_t i, unsigned w) noexcept {
  const std::size_t bit = i * w;
  const std::size_t first = bit / 8;
  const std::size_t last = (bit + w - 1) / 8;
  const unsigned shift = static_cast<unsigned>(bit % 8);
  std::uint64_t v = static_cast<std::uint64_t>(packed[first]) >> shift;
  for (std::size_t b = first + 1; b <= last; ++b)
    v |= static_cast<std::uint64_t>(packed[b]) << (8 * (b - first) - shift);
  return v & low_mask(w);
}

void unpack(const std::byte* packed, std::size_t packed_bytes, std::size_t n, unsigned w,
            std::uint64_t* out) {
  if (w == 0) {
    std::fill_n(out, n, 0);
    return;
  }
  const std::uint64_t mask = low_mask(w);
  // Values whose 8-byte load stays inside the packed bytes: bit / 8 + 8 <= packed_bytes.
  std::size_t fast = 0;
  if (packed_bytes >= 8) fast = std::min(n, ((packed_bytes - 8) * 8 + 7) / w + 1);
  std::size_t i = 0;
  if (w <= 57) {  // shift + w <= 64: one load holds the value
    for (; i < fast; ++i) {
      const std::size_t bit = i * w;
      out[i] = (load_le64(packed + bit / 8) >> (bit % 8)) & mask;
    }
  } else {
    for (; i < fast; ++i) {
      const std::size_t bit = i * w;
      const unsigned shift = static_cast<unsigned>(bit % 8);
      std::uint64_t v = load_le64(packed + bit / 8) >> shift;
      if (shift + w > 64) v |= static_cast<std::uint64_t>(packed[bit / 8 + 8]) << (64 - shift);
      out[i] = v & mask;
    }
  }
  for (; i < n; ++i) out[i] = unpack_slow(packed, i, w);
}

IntColumnPlan plan_dense(std::span<const std::uint64_t> residuals) {
  const std::size_t n = residuals.size();
  Histogram zigzag_widths{};
  auto min = std::numeric_limits<std::int64_t>::max();
  for (const std::uint64_t r : residuals) {
    ++zigzag_widths[std::bit_width(zigzag(r))];
    min = std::min(min, static_cast<std::int64_t>(r));
  }
  IntColumnPlan zz;
  choose_width(zigzag_widths, n, zz);
  if (n == 0) return zz;

  IntColumnPlan fr;
  fr.frame_of_reference = true;
  fr.base = static_cast<std::uint64_t>(min);
  Histogram offset_widths{};
  for (const std::uint64_t r : residuals) ++offset_widths[std::bit_width(r - fr.base)];
  choose_width(offset_widths, n, fr);
  return fr.bytes < zz.bytes ? fr : zz;
}

void encode_dense(std::span<const std::uint64_t> residuals, const IntColumnPlan& plan,
                  std::vector<std::byte>& out) {
  out.push_back(static_cast<std::byte>(plan.width | (plan.frame_of_reference ? 0x80u : 0u)));
  if (plan.frame_of_reference) put_varint(out, zigzag(plan.base));
  std::size_t exceptions = 0;
  if (plan.width < 64)
    for (const std::uint64_t r : residuals) exceptions += (stored(r, plan) >> plan.width) != 0;
  put_varint(out, exceptions);
  pack(residuals, plan, out);
  if (exceptions == 0) return;
  std::size_t next = 0;  // the index an exception with gap 0 would have
  for (std::size_t i = 0; i < residuals.size(); ++i) {
    const std::uint64_t high = stored(residuals[i], plan) >> plan.width;
    if (high == 0) continue;
    put_varint(out, i - next);
    put_varint(out, high);
    next = i + 1;
  }
}

std::size_t decode_dense(std::span<const std::byte> bytes, std::size_t n, std::uint64_t* out) {
  ByteCursor c(bytes);
  const std::uint8_t head = c.u8();
  const unsigned w = head & 0x7fu;
  if (w > 64) throw CodecError("integer column wider than 64 bits");
  const bool frame_of_reference = (head & 0x80u) != 0;
  const std::uint64_t base = frame_of_reference ? unzigzag(c.varint()) : 0;
  const std::uint64_t exceptions = c.varint();
  if (exceptions > n) throw CodecError("more exceptions than values in an integer column");
  if (exceptions > 0 && w == 64) throw CodecError("exceptions in a 64-bit integer column");
  std::size_t packed_bytes = 0;
  if (w > 0) {
    // n * w <= 8 * remaining, checked without overflow.
    if (n > c.rest().size() * 8 / w) throw CodecError("block ends early");
    packed_bytes = (n * w + 7) / 8;
  }
  unpack(c.take(packed_bytes), packed_bytes, n, w, out);
  std::size_t index = 0;
  for (std::uint64_t e = 0; e < exceptions; ++e) {
    const std::uint64_t gap = c.varint();
    if (gap >= n - index) throw CodecError("integer column exception out of range");
    index += gap;
    const std::uint64_t high = c.varint();
    if (w > 0 && (high >> (64 - w)) != 0) throw CodecError("integer column exception wider than 64 bits");
    out[index] |= high << w;
    ++index;
  }
  if (frame_of_reference) {
    for (std::size_t i = 0; i < n; ++i) out[i] += base;
  } else if (w > 0) {
    for (std::size_t i = 0; i < n; ++i) out[i] = unzigzag(out[i]);
  } else if (exceptions > 0) {  // zeros map to zeros: only the exceptions change
    std::size_t at = 0;
    for (std::size_t i = 0; i < n && at < exceptions; ++i)
      if (out[i] != 0) {
        out[i] = unzigzag(out[i]);
        ++at;
      }
  }
  return c.position();
}

std::vector<std::uint64_t> nonzero(std::span<const std::uint64_t> residuals) {
  std::vector<std::uint64_t> values;
  for (const std::uint64_t r : residuals)
    if (r != 0) values.push_back(r);
  return values;
}

}  // namespace

IntColumnPlan plan_int_column(std::span<const std::uint64_t> residuals) {
  IntColumnPlan dense = plan_dense(residuals);
  const std::size_t n = residuals.size();
  std::size_t zeros = 0;
  for (const std::uint64_t r : residuals) zeros += r == 0;
  // A bitmap costs n bits: it can only pay when zeros are common and the dense column is
  // not already narrow.
  if (zeros < n / 16 || zeros == 0 || dense.width == 0) return dense;
  IntColumnPlan sparse = plan_dense(nonzero(residuals));
  sparse.sparse = true;
  sparse.bytes += 1 + (n + 7) / 8;
  return sparse.bytes < dense.bytes ? sparse : dense;
}

void encode_int_column(std::span<const std::uint64_t> residuals, const IntColumnPlan& plan,
                       std::vector<std::byte>& out) {
  if (!plan.sparse) {
    encode_dense(residuals, plan, out);
    return;
  }
  out.push_back(static_cast<std::byte>(kSparseHead));
  std::uint8_t byte = 0;
  for (std::size_t i = 0; i < residuals.size(); ++i) {
    if (residuals[i] != 0) byte |= static_cast<std::uint8_t>(1u << (i % 8));
    if (i % 8 == 7 || i + 1 == residuals.size()) {
      out.push_back(static_cast<std::byte>(byte));
      byte = 0;
    }
  }
  encode_dense(nonzero(residuals), plan, out);
}

std::size_t decode_int_column(std::span<const std::byte> bytes, std::size_t n, std::uint64_t* out) {
  if (bytes.empty() || static_cast<std::uint8_t>(bytes[0]) != kSparseHead) return decode_dense(bytes, n, out);
  ByteCursor c(bytes);
  c.skip(1);
  if (n > c.rest().size() * 8) throw CodecError("block ends early");
  const std::byte* bitmap = c.take((n + 7) / 8);
  std::size_t count = 0;
  for (std::size_t i = 0; i < (n + 7) / 8; ++i) count += std::popcount(static_cast<unsigned>(bitmap[i]));
  if (n % 8 != 0 && (static_cast<unsigned>(bitmap[n / 8]) >> (n % 8)) != 0)
    throw CodecError("bits set past the end of a sparse column's bitmap");
  if (c.rest().empty() || static_cast<std::uint8_t>(c.rest()[0]) == kSparseHead)
    throw CodecError("a sparse integer column nested in another");
  c.skip(decode_dense(c.rest(), count, out));
  // Spread the non-zero values to their places, from the back: value j goes to index i >= j.
  std::size_t j = count;
  for (std::size_t i = n; i-- > 0;) {
    const bool set = ((static_cast<unsigned>(bitmap[i / 8]) >> (i % 8)) & 1u) != 0;
    out[i] = set ? out[--j] : 0;
  }
  return c.position();
}

}  // namespace sydra::storage::codec
