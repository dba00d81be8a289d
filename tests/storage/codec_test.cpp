// Tests server/storage/codec.hpp: the columnar block format (segment format 2) keeps every
// double's bits and every int64 timestamp, picks the value encoding the data calls for,
// costs almost nothing for regular timestamps, and rejects truncated or malformed blocks;
// property tests over random and adversarial blocks, for both formats.
#include "server/storage/codec.hpp"

#include <doctest/doctest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "server/storage/codec_gorilla.hpp"
#include "storage/special_doubles.hpp"

namespace sydra::storage {
namespace {

constexpr Timestamp kMinTs = std::numeric_limits<Timestamp>::min();
constexpr Timestamp kMaxTs = std::numeric_limits<Timestamp>::max();

using test::from_bits;
std::uint64_t bits(double v) {
  return std::bit_cast<std::uint64_t>(v);
}

std::vector<std::byte> encode(const std::vector<Point>& in, BlockFormat format = BlockFormat::kColumnar) {
  std::vector<std::byte> bytes;
  encode_points(format, in, bytes);
  return bytes;
}

// Equal timestamps and identical value bits (NaN payloads, the sign of zero); decoding
// appends after what `out` held.
void check_round_trip(const std::vector<Point>& in, BlockFormat format = BlockFormat::kColumnar) {
  const std::vector<std::byte> bytes = encode(in, format);
  std::vector<Point> out{{-5, 1.5}};
  decode_points(format, bytes, in.size(), out);
  REQUIRE(out.size() == in.size() + 1);
  CHECK(out[0].ts == -5);
  for (std::size_t i = 0; i < in.size(); ++i) {
    INFO("point " << i << " of " << in.size());
    CHECK(out[i + 1].ts == in[i].ts);
    CHECK(bits(out[i + 1].value) == bits(in[i].value));
  }
}

std::vector<Point> regular(std::size_t n, const std::vector<double>& values) {
  std::vector<Point> points;
  for (std::size_t i = 0; i < n; ++i)
    points.push_back({1'700'000'000'000 + static_cast<Timestamp>(i) * 10'000, values[i % values.size()]});
  return points;
}

BlockLayout layout_of(const std::vector<Point>& in) {
  const auto bytes = encode(in);
  return inspect_block(bytes, in.size());
}

const std::vector<double>& kSpecials = test::special_doubles();

// A random block: lengths 1..1100 (past the stack buffer), timestamps regular, jittered,
// with gaps or anywhere in int64, values from one of several shapes or a mix of them.
std::vector<Point> random_block(std::mt19937_64& rng) {
  const std::size_t n = 1 + rng() % (rng() % 4 == 0 ? 1100 : 40);
  std::vector<Point> points(n);
  const int ts_shape = static_cast<int>(rng() % 5);
  Timestamp ts = static_cast<Timestamp>(rng());
  if (ts_shape < 3 && ts > kMaxTs / 2) ts /= 4;
  const Timestamp interval = 1 + static_cast<Timestamp>(rng() % 100'000);
  const int value_shape = static_cast<int>(rng() % 9);
  const unsigned decimals = static_cast<unsigned>(rng() % 7);
  double level = static_cast<double>(static_cast<std::int64_t>(rng() % 2'000'000) - 1'000'000);
  std::int64_t counter = static_cast<std::int64_t>(rng() % 1'000'000);
  for (std::size_t i = 0; i < n; ++i) {
    switch (ts_shape) {
      case 0:
        break;  // regular
      case 1:
        ts += static_cast<Timestamp>(rng() % 11) - 5;  // jitter
        break;
      case 2:
        if (rng() % 100 == 0) ts += static_cast<Timestamp>(rng() % 10'000'000);  // a gap
        break;
      case 3:
        ts = static_cast<Timestamp>(static_cast<std::uint64_t>(ts) + rng() % (std::uint64_t{1} << 62));
        break;
      default:
        ts = static_cast<Timestamp>(static_cast<std::uint64_t>(ts) + (rng() >> 1));  // wraps
        break;
    }
    points[i].ts = ts;
    ts = static_cast<Timestamp>(static_cast<std::uint64_t>(ts) + static_cast<std::uint64_t>(interval));
    double v = 0;
    const int shape = value_shape == 8 ? static_cast<int>(rng() % 8) : value_shape;
    switch (shape) {
      case 0:  // a decimal random walk
        level += static_cast<double>(static_cast<std::int64_t>(rng() % 201) - 100);
        v = level / std::pow(10.0, decimals);
        break;
      case 1:  // a counter, sometimes reset
        counter = rng() % 500 == 0 ? 0 : counter + static_cast<std::int64_t>(rng() % 1000);
        v = static_cast<double>(counter);
        break;
      case 2:  // any bits
        v = from_bits(rng());
        break;
      case 3:  // a special
        v = kSpecials[rng() % kSpecials.size()];
        break;
      case 4:  // full-precision values near a level
        v = 1000.0 + std::ldexp(static_cast<double>(rng() >> 11), -53);
        break;
      case 5:  // a constant
        v = 42.25;
        break;
      case 6:  // big integers near 2^53
        v = 9007199254740991.0 - static_cast<double>(rng() % 3);
        break;
      default:  // a value with one bit flipped
        v = from_bits(bits(level) ^ (std::uint64_t{1} << (rng() % 64)));
        break;
    }
    points[i].value = v;
  }
  // Timestamps must ascend for shapes 0-2 only in a segment; the codec does not care, but
  // the wrapping shapes test that any sequence round-trips.
  return points;
}

TEST_SUITE("unit") {
  TEST_CASE("codec: an empty block encodes to nothing in both formats") {
    for (BlockFormat f : {BlockFormat::kGorilla, BlockFormat::kColumnar}) {
      CHECK(encode({}, f).empty());
      std::vector<Point> out;
      decode_points(f, {}, 0, out);
      CHECK(out.empty());
    }
  }

  TEST_CASE("codec: a single point round-trips in every value encoding") {
    check_round_trip({{1'700'000'000'000, 42.5}});
    check_round_trip({{kMinTs, -0.0}});
    check_round_trip({{kMaxTs, from_bits(0x7ff8dead0000beef)}});
    check_round_trip({{0, 0.1 + 0.2}});
  }

  TEST_CASE("codec: regular timestamps cost a few bytes per block") {
    const auto points = regular(1024, {20.0});
    const BlockLayout layout = layout_of(points);
    CHECK(layout.values == ValueEncoding::kConstant);
    CHECK(layout.ts_bytes <= 16);
    CHECK(layout.value_bytes == 9);
    check_round_trip(points);
  }

  TEST_CASE("codec: decimals with two digits become integers with exponent 2") {
    std::mt19937_64 rng(1);
    std::vector<Point> points = regular(1024, {0.0});
    std::int64_t cents = 5000;
    for (Point& p : points) {
      cents += static_cast<std::int64_t>(rng() % 41) - 20;
      p.value = static_cast<double>(cents) / 100.0;  // what a parser makes of "50.37"
    }
    const BlockLayout layout = layout_of(points);
    CHECK(layout.values == ValueEncoding::kDecimal);
    CHECK(layout.exponent == 2);
    CHECK(layout.order == 1);
    // Steps of -20..20 cents: 6 bits per value.
    CHECK(layout.value_bytes <= 1024 * 6 / 8 + 16);
    check_round_trip(points);
  }

  TEST_CASE("codec: a gauge that often stays put costs about a bit per repeated value") {
    std::mt19937_64 rng(4);
    std::vector<Point> points = regular(4096, {0.0});
    std::int64_t cents = 5000;
    for (Point& p : points) {
      if (rng() % 4 != 0) cents += static_cast<std::int64_t>(rng() % 101) - 50;  // a quarter repeat
      p.value = static_cast<double>(cents) / 100.0;
    }
    const BlockLayout layout = layout_of(points);
    CHECK(layout.values == ValueEncoding::kDecimal);
    // 7 bits per moving value, 1 bit per value for the bitmap: well under 7 bits per value.
    CHECK(layout.value_bytes < 4096 * 7 / 8 * 9 / 10);
    check_round_trip(points);
  }

  TEST_CASE("codec: the exponent is the smallest that holds every value of the block") {
    CHECK(layout_of(regular(100, {1.0, 2.0, 3.0})).exponent == 0);
    CHECK(layout_of(regular(100, {1.0, 2.5, 3.0})).exponent == 1);
    CHECK(layout_of(regular(100, {1.0, 2.5, 3.125})).exponent == 3);
    CHECK(layout_of(regular(100, {1e-18, 5e-18})).exponent == 18);
    // The integers next to 2^53 are decimals; 2^53 itself is not (|m| < 2^53).
    CHECK(layout_of(regular(100, {9007199254740991.0, -9007199254740991.0, 4503599627370497.0})).values ==
          ValueEncoding::kDecimal);
    CHECK(layout_of(regular(100, {9007199254740992.0, 1.0})).values != ValueEncoding::kDecimal);
    // 1.0 at exponent 18 is 10^18 > 2^53: no common exponent.
    CHECK(layout_of(regular(100, {1.0, 1e-18})).values != ValueEncoding::kDecimal);
    // 1.5e-19 needs 19 digits: not a decimal of this format.
    CHECK(layout_of(regular(100, {1.0, 1.5e-19})).values != ValueEncoding::kDecimal);
  }

  TEST_CASE("codec: counters at a steady rate take next to no bytes") {
    std::vector<Point> points = regular(1024, {0.0});
    for (std::size_t i = 0; i < points.size(); ++i) points[i].value = 1e6 + 250.0 * static_cast<double>(i);
    const BlockLayout layout = layout_of(points);
    CHECK(layout.values == ValueEncoding::kDecimal);
    CHECK(layout.exponent == 0);
    CHECK(layout.order >= 1);  // a constant delta (order 1) or zero second deltas (order 2)
    CHECK(layout.value_bytes <= 16);
    check_round_trip(points);
  }

  TEST_CASE("codec: high-entropy doubles are stored raw, full-precision values near a level as XOR") {
    std::mt19937_64 rng(2);
    std::vector<Point> random_bits = regular(512, {0.0});
    for (Point& p : random_bits) p.value = from_bits(rng());
    CHECK(layout_of(random_bits).values == ValueEncoding::kRaw);
    CHECK(layout_of(random_bits).value_bytes == 1 + 8 * 512);
    check_round_trip(random_bits);

    std::vector<Point> near = regular(512, {0.0});
    for (Point& p : near) p.value = 1000.0 + std::ldexp(static_cast<double>(rng() >> 30), -53);
    CHECK(layout_of(near).values == ValueEncoding::kXor);
    check_round_trip(near);
  }

  TEST_CASE("codec: the XOR stream opens a new window when the old one got too wide") {
    // Uniform in [0, 1000): exponents vary, so Gorilla's windows widen and stay wide (about
    // 65 bits per value, more than raw). Reopening keeps the XOR stream under raw.
    std::mt19937_64 rng(6);
    std::vector<Point> points = regular(4096, {0.0});
    for (Point& p : points) p.value = std::ldexp(static_cast<double>(rng() >> 11), -53) * 1000.0;
    std::vector<std::byte> stream;
    gorilla::encode_values(points, stream);
    CHECK(stream.size() < 8 * points.size() * 95 / 100);
    CHECK(layout_of(points).values == ValueEncoding::kXor);
    check_round_trip(points);
  }

  TEST_CASE("codec: NaN payloads, infinities, -0.0 and subnormals keep their bits in every encoding") {
    // Each special alone (constant), next to decimals (not a decimal block), and every pair.
    for (double special : kSpecials) {
      check_round_trip(regular(10, {special}));
      check_round_trip(regular(10, {special, 2.37, 1024.5}));
      check_round_trip(regular(300, {special, 1.0}));
    }
    std::vector<Point> pairs;
    Timestamp ts = 0;
    for (double a : kSpecials)
      for (double b : kSpecials) {
        pairs.push_back({ts++, a});
        pairs.push_back({ts++, b});
      }
    check_round_trip(pairs);
    // -0.0 is not the decimal 0: a block of zeros with one -0.0 must not lose its sign.
    std::vector<Point> zeros = regular(64, {0.0, 1.0});
    zeros[33].value = -0.0;
    CHECK(layout_of(zeros).values != ValueEncoding::kDecimal);
    check_round_trip(zeros);
  }

  TEST_CASE("codec: INT64_MIN next to INT64_MAX and other extreme timestamps") {
    check_round_trip({{kMinTs, 1.0}, {kMaxTs, 2.0}});
    check_round_trip({{kMinTs, 0.0},
                      {kMinTs + 1, 0.0},
                      {-1'000'000'000'000, 1.0},
                      {-1, 2.0},
                      {0, 3.0},
                      {1, 3.0},
                      {1LL << 40, 4.0},
                      {kMaxTs - 1, 5.0},
                      {kMaxTs, 6.0}});
    check_round_trip({{kMinTs, 1}, {kMinTs + 1, 1}, {kMaxTs - 1, 1}, {kMaxTs, 1}});
    std::vector<Point> swing;
    for (int i = 0; i < 200; ++i)
      swing.push_back({i % 2 == 0 ? kMinTs + i : kMaxTs - i, static_cast<double>(i)});
    check_round_trip(swing);
  }

  TEST_CASE("codec: a gap in regular timestamps is two exceptions, not a wider column") {
    std::vector<Point> points = regular(1024, {1.0});
    for (std::size_t i = 600; i < points.size(); ++i) points[i].ts += 3'600'000;
    const BlockLayout layout = layout_of(points);
    CHECK(layout.ts_bytes <= 24);
    check_round_trip(points);
  }

  TEST_CASE("codec: random and adversarial blocks round-trip bit for bit in both formats") {
    std::mt19937_64 rng(20261201);
    for (int round = 0; round < 3000; ++round) {
      const std::vector<Point> points = random_block(rng);
      INFO("round " << round);
      check_round_trip(points, BlockFormat::kColumnar);
      if (round % 4 == 0) check_round_trip(points, BlockFormat::kGorilla);
    }
  }

  TEST_CASE("codec: the chosen value encoding is never larger than raw or the XOR stream") {
    std::mt19937_64 rng(31337);
    for (int round = 0; round < 1000; ++round) {
      const std::vector<Point> points = random_block(rng);
      const BlockLayout layout = layout_of(points);
      std::vector<std::byte> xor_stream;
      gorilla::encode_values(points, xor_stream);
      INFO("round " << round << ", " << value_encoding_name(layout.values));
      CHECK(layout.value_bytes <= 1 + 8 * points.size());
      CHECK(layout.value_bytes <= 1 + xor_stream.size());
      CHECK(gorilla::values_size_lower_bound(points) <= xor_stream.size());
    }
  }

  TEST_CASE("codec: a truncated block throws CodecError and leaves the output as it was") {
    std::mt19937_64 rng(7);
    std::vector<std::vector<Point>> blocks;
    blocks.push_back(regular(300, {20.0}));               // constant
    blocks.push_back(regular(300, {2.37, 1024.5, 3.0}));  // decimal
    std::vector<Point> entropy = regular(300, {0.0});
    for (Point& p : entropy) p.value = from_bits(rng());
    blocks.push_back(entropy);  // raw
    std::vector<Point> near = regular(300, {0.0});
    for (Point& p : near) p.value = 1000.0 + std::ldexp(static_cast<double>(rng() >> 30), -53);
    blocks.push_back(near);  // xor
    for (const auto& in : blocks) {
      const std::vector<std::byte> bytes = encode(in);
      for (std::size_t len = 0; len < bytes.size(); ++len) {
        std::vector<Point> out{{1, 2.0}};
        // A copy of exactly `len` bytes, so ASan would see a read past it.
        const std::vector<std::byte> cut(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(len));
        CHECK_THROWS_AS(decode_points(BlockFormat::kColumnar, cut, in.size(), out), CodecError);
        CHECK(out.size() == 1);
      }
      // A byte too many is an error too.
      std::vector<std::byte> longer = bytes;
      longer.push_back(std::byte{0});
      std::vector<Point> out;
      CHECK_THROWS_AS(decode_points(BlockFormat::kColumnar, longer, in.size(), out), CodecError);
    }
  }

  TEST_CASE("codec: unknown value encodings and out-of-range exponents or orders are errors") {
    std::vector<std::byte> bytes = encode(regular(10, {2.37, 1.5}));
    REQUIRE(inspect_block(bytes, 10).values == ValueEncoding::kDecimal);
    const std::size_t ts_end = 1 + inspect_block(bytes, 10).ts_bytes;
    std::vector<Point> out;
    auto bad = bytes;
    bad[0] = std::byte{4};
    CHECK_THROWS_AS(decode_points(BlockFormat::kColumnar, bad, 10, out), CodecError);
    bad = bytes;
    bad[ts_end] = std::byte{19};  // exponent
    CHECK_THROWS_AS(decode_points(BlockFormat::kColumnar, bad, 10, out), CodecError);
    bad = bytes;
    bad[ts_end + 1] = std::byte{3};  // order
    CHECK_THROWS_AS(decode_points(BlockFormat::kColumnar, bad, 10, out), CodecError);
  }

  TEST_CASE("codec: random bytes and flipped bits decode to an error or to points and never crash") {
    std::mt19937_64 rng(99);
    for (int round = 0; round < 3000; ++round) {
      std::vector<std::byte> bytes(rng() % 64);
      for (auto& b : bytes) b = static_cast<std::byte>(rng());
      if (!bytes.empty()) bytes[0] = static_cast<std::byte>(rng() % 4);
      std::vector<Point> out;
      const std::size_t count = 1 + rng() % 40;
      try {
        decode_points(BlockFormat::kColumnar, bytes, count, out);
        CHECK(out.size() == count);
      } catch (const CodecError&) {
        CHECK(out.empty());
      }
    }
    for (int round = 0; round < 300; ++round) {
      const std::vector<Point> points = random_block(rng);
      std::vector<std::byte> bytes = encode(points);
      bytes[rng() % bytes.size()] ^= static_cast<std::byte>(1u << (rng() % 8));
      std::vector<Point> out;
      try {
        decode_points(BlockFormat::kColumnar, bytes, points.size(), out);
        CHECK(out.size() == points.size());
      } catch (const CodecError&) {
      }
    }
  }
}

}  // namespace
}  // namespace sydra::storage
