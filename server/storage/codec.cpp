#include "server/storage/codec.hpp"

#include <bit>
#include <cmath>
#include <string>

#include "server/storage/codec_gorilla.hpp"
#include "server/storage/int_column.hpp"

namespace sydra::storage {
namespace {

using codec::ByteCursor;

constexpr unsigned kMaxExponent = 18;
constexpr double kPow10[kMaxExponent + 1] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8, 1e9,
                                             1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18};
constexpr double kTwo52 = 4503599627370496.0;  // doubles from here on are integers
constexpr double kTwo53 = 9007199254740992.0;  // integers below it are exact doubles
constexpr unsigned kMaxOrder = 2;
// Segment blocks are at most this long (segment::max_block_points); longer ones decode
// through the heap.
constexpr std::size_t kStackValues = 4096;

std::uint64_t bits(double v) noexcept {
  return std::bit_cast<std::uint64_t>(v);
}

// The value of m / 10^e as the decoder computes it.
double scaled(std::uint64_t m, unsigned e) noexcept {
  return static_cast<double>(static_cast<std::int64_t>(m)) / kPow10[e];
}

// m with v == m / 10^e bit for bit, if there is one.
bool decimal_at(double v, unsigned e, std::int64_t& m) noexcept {
  const double s = v * kPow10[e];
  if (!(std::fabs(s) < kTwo53)) return false;  // NaN, infinities, too many digits
  // Round to nearest (adding 0.5 to an integer at or above 2^52 could round it up).
  m = static_cast<std::int64_t>(std::fabs(s) >= kTwo52 ? s : s + std::copysign(0.5, s));
  return bits(scaled(static_cast<std::uint64_t>(m), e)) == bits(v);
}

// The smallest exponent at which every value is a decimal, and the integers; false when
// there is none.
bool find_decimals(std::span<const Point> points, unsigned& exponent, std::vector<std::uint64_t>& m) {
  unsigned e = 0;
  std::int64_t unused;
  for (const Point& p : points) {
    // A value exact at e is exact at any larger e (the same quotient, correctly rounded),
    // as long as its integer stays below 2^53: the second pass checks that.
    while (!decimal_at(p.value, e, unused))
      if (++e > kMaxExponent) return false;
  }
  m.resize(points.size());
  for (std::size_t i = 0; i < points.size(); ++i) {
    std::int64_t v;
    if (!decimal_at(points[i].value, e, v)) return false;
    m[i] = static_cast<std::uint64_t>(v);
  }
  exponent = e;
  return true;
}

// r = the residuals of `order` of x (see codec.hpp), modulo 2^64.
void residuals(std::span<const std::uint64_t> x, unsigned order, std::vector<std::uint64_t>& r) {
  const std::size_t n = x.size();
  r.resize(n);
  if (n == 0) return;
  r[0] = x[0];
  if (order == 0) {
    for (std::size_t i = 1; i < n; ++i) r[i] = x[i];
  } else if (order == 1 || n == 1) {
    for (std::size_t i = 1; i < n; ++i) r[i] = x[i] - x[i - 1];
  } else {
    r[1] = x[1] - x[0];
    for (std::size_t i = 2; i < n; ++i) r[i] = (x[i] - x[i - 1]) - (x[i - 1] - x[i - 2]);
  }
}

// The inverse of residuals(): calls store(i, x[i]) for every i in order.
template <typename Store>
void integrate(const std::uint64_t* r, std::size_t n, unsigned order, Store&& store) {
  if (order == 0) {
    for (std::size_t i = 0; i < n; ++i) store(i, r[i]);
    return;
  }
  std::uint64_t x = r[0];
  store(0, x);
  if (order == 1) {
    for (std::size_t i = 1; i < n; ++i) store(i, x += r[i]);
    return;
  }
  std::uint64_t delta = 0;
  for (std::size_t i = 1; i < n; ++i) {
    delta = i == 1 ? r[1] : delta + r[i];
    store(i, x += delta);
  }
}

void put_u64(std::vector<std::byte>& out, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<std::byte>(v >> (8 * i)));
}

void encode_columnar(std::span<const Point> points, std::vector<std::byte>& out) {
  const std::size_t n = points.size();
  const std::size_t tag_at = out.size();
  out.push_back(std::byte{0});

  std::vector<std::uint64_t> x(n);
  std::vector<std::uint64_t> r;
  for (std::size_t i = 0; i < n; ++i) x[i] = static_cast<std::uint64_t>(points[i].ts);
  residuals(x, 2, r);
  codec::encode_int_column(r, codec::plan_int_column(r), out);

  const std::uint64_t first = bits(points[0].value);
  bool constant = true;
  for (const Point& p : points) constant = constant && bits(p.value) == first;
  if (constant) {
    out[tag_at] = static_cast<std::byte>(ValueEncoding::kConstant);
    put_u64(out, first);
    return;
  }

  ValueEncoding best = ValueEncoding::kRaw;
  std::size_t best_bytes = 8 * n;
  std::vector<std::byte> decimal;
  unsigned exponent = 0;
  if (find_decimals(points, exponent, x)) {
    codec::IntColumnPlan plan;
    unsigned order = 0;
    std::vector<std::uint64_t> candidate;
    for (unsigned k = 0; k <= kMaxOrder; ++k) {
      residuals(x, k, candidate);
      const codec::IntColumnPlan p = codec::plan_int_column(candidate);
      if (k == 0 || p.bytes < plan.bytes) {
        plan = p;
        order = k;
        r.swap(candidate);
      }
    }
    decimal.push_back(static_cast<std::byte>(exponent));
    decimal.push_back(static_cast<std::byte>(order));
    codec::encode_int_column(r, plan, decimal);
    if (decimal.size() < best_bytes) {
      best = ValueEncoding::kDecimal;
      best_bytes = decimal.size();
    }
  }
  std::vector<std::byte> xor_stream;
  if (gorilla::values_size_lower_bound(points) < best_bytes) {
    gorilla::encode_values(points, xor_stream);
    if (xor_stream.size() < best_bytes) best = ValueEncoding::kXor;
  }

  out[tag_at] = static_cast<std::byte>(best);
  switch (best) {
    case ValueEncoding::kDecimal:
      out.insert(out.end(), decimal.begin(), decimal.end());
      break;
    case ValueEncoding::kXor:
      out.insert(out.end(), xor_stream.begin(), xor_stream.end());
      break;
    default:
      for (const Point& p : points) put_u64(out, bits(p.value));
      break;
  }
}

// Decodes a format-2 block into points[0..n), which the caller sized.
BlockLayout decode_columnar(std::span<const std::byte> bytes, std::span<Point> points) {
  const std::size_t n = points.size();
  std::uint64_t stack[kStackValues];
  std::vector<std::uint64_t> heap;
  std::uint64_t* r = stack;
  if (n > kStackValues) {
    heap.resize(n);
    r = heap.data();
  }

  BlockLayout layout;
  ByteCursor c(bytes);
  const std::uint8_t tag = c.u8();
  if (tag > static_cast<std::uint8_t>(ValueEncoding::kRaw))
    throw CodecError("unknown value encoding " + std::to_string(tag));
  layout.values = static_cast<ValueEncoding>(tag);

  const std::size_t ts_bytes = codec::decode_int_column(c.rest(), n, r);
  c.skip(ts_bytes);
  layout.ts_bytes = ts_bytes;
  integrate(r, n, 2, [&](std::size_t i, std::uint64_t t) { points[i].ts = static_cast<Timestamp>(t); });

  switch (layout.values) {
    case ValueEncoding::kConstant: {
      const double v = std::bit_cast<double>(c.u64());
      for (Point& p : points) p.value = v;
      break;
    }
    case ValueEncoding::kDecimal: {
      layout.exponent = c.u8();
      layout.order = c.u8();
      if (layout.exponent > kMaxExponent) throw CodecError("decimal exponent out of range");
      if (layout.order > kMaxOrder) throw CodecError("decimal order out of range");
      c.skip(codec::decode_int_column(c.rest(), n, r));
      const double scale = kPow10[layout.exponent];
      integrate(r, n, layout.order, [&](std::size_t i, std::uint64_t m) {
        points[i].value = static_cast<double>(static_cast<std::int64_t>(m)) / scale;
      });
      break;
    }
    case ValueEncoding::kXor:
      c.skip(gorilla::decode_values(c.rest(), points));
      break;
    case ValueEncoding::kRaw: {
      if (n > c.rest().size() / 8) throw CodecError("block ends early");
      const std::byte* raw = c.take(8 * n);
      for (std::size_t i = 0; i < n; ++i)
        points[i].value = std::bit_cast<double>(codec::load_le64(raw + 8 * i));
      break;
    }
  }
  if (!c.done()) throw CodecError("bytes left over after the values");
  layout.value_bytes = bytes.size() - ts_bytes;
  return layout;
}

}  // namespace

void encode_points(BlockFormat format, std::span<const Point> points, std::vector<std::byte>& out) {
  if (points.empty()) return;
  if (format == BlockFormat::kGorilla) {
    gorilla::encode_points(points, out);
  } else {
    encode_columnar(points, out);
  }
}

void decode_points(BlockFormat format, std::span<const std::byte> bytes, std::size_t count,
                   std::vector<Point>& out) {
  if (count == 0) return;
  const std::size_t start = out.size();
  try {
    if (format == BlockFormat::kGorilla) {
      gorilla::decode_points(bytes, count, out);
    } else {
      out.resize(start + count);
      decode_columnar(bytes, std::span<Point>(out).subspan(start));
    }
  } catch (...) {
    out.resize(start);
    throw;
  }
}

const char* value_encoding_name(ValueEncoding e) noexcept {
  switch (e) {
    case ValueEncoding::kConstant:
      return "constant";
    case ValueEncoding::kDecimal:
      return "decimal";
    case ValueEncoding::kXor:
      return "xor";
    case ValueEncoding::kRaw:
      return "raw";
  }
  return "unknown";
}

BlockLayout inspect_block(std::span<const std::byte> bytes, std::size_t count) {
  std::vector<Point> points(count);
  return decode_columnar(bytes, points);
}

}  // namespace sydra::storage
