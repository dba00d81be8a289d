// Tests server/storage/codec_gorilla.hpp: Gorilla (segment format 1) round trips bit for bit,
// edge values, truncation; the XOR value stream of format 2 and its size bound.
#include "server/storage/codec_gorilla.hpp"

#include <doctest/doctest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "storage/special_doubles.hpp"

namespace sydra::storage::gorilla {
namespace {

std::vector<Point> round_trip(const std::vector<Point>& in, std::size_t* encoded_bytes = nullptr) {
  std::vector<std::byte> bytes;
  encode_points(in, bytes);
  if (encoded_bytes != nullptr) *encoded_bytes = bytes.size();
  std::vector<Point> out;
  decode_points(bytes, in.size(), out);
  return out;
}

// Equal timestamps and identical value bits (NaN payloads, the sign of zero).
void check_same(const std::vector<Point>& a, const std::vector<Point>& b) {
  REQUIRE(a.size() == b.size());
  for (std::size_t i = 0; i < a.size(); ++i) {
    INFO("point " << i);
    CHECK(a[i].ts == b[i].ts);
    CHECK(std::bit_cast<std::uint64_t>(a[i].value) == std::bit_cast<std::uint64_t>(b[i].value));
  }
}

TEST_SUITE("unit") {
  TEST_CASE("gorilla: an empty block encodes to nothing and decodes to nothing") {
    std::vector<std::byte> bytes;
    encode_points({}, bytes);
    CHECK(bytes.empty());
    std::vector<Point> out;
    decode_points(bytes, 0, out);
    CHECK(out.empty());
  }

  TEST_CASE("gorilla: a single point round-trips") {
    const std::vector<Point> in{{1'700'000'000'000, 42.5}};
    std::size_t bytes = 0;
    check_same(in, round_trip(in, &bytes));
    CHECK(bytes == 16);
  }

  TEST_CASE("gorilla: special doubles keep their bits (NaN payloads and infinities and -0.0 and denormals)") {
    const std::vector<double>& specials = test::special_doubles();
    std::vector<Point> in;
    for (std::size_t i = 0; i < specials.size(); ++i)
      in.push_back({static_cast<Timestamp>(i * 10), specials[i]});
    // Every special next to every other one (each pair of consecutive XORs).
    Timestamp ts = 1000;
    for (double a : specials)
      for (double b : specials) {
        in.push_back({ts++, a});
        in.push_back({ts++, b});
      }
    check_same(in, round_trip(in));
  }

  TEST_CASE("gorilla: INT64_MIN next to INT64_MAX and other huge or negative deltas") {
    constexpr Timestamp kMin = std::numeric_limits<Timestamp>::min();
    constexpr Timestamp kMax = std::numeric_limits<Timestamp>::max();
    check_same({{kMin, 1.0}, {kMax, 2.0}}, round_trip({{kMin, 1.0}, {kMax, 2.0}}));
    const std::vector<Point> in{
        {kMin, 0.0}, {kMin + 1, 0.0}, {-1'000'000'000'000, 1.0}, {-1, 2.0},       {0, 3.0},   {1, 3.0},
        {2, 3.0},    {3, 3.0},        {1LL << 40, 4.0},          {kMax - 1, 5.0}, {kMax, 6.0}};
    check_same(in, round_trip(in));
    // Delta-of-delta swinging between the extremes.
    const std::vector<Point> swing{{kMin, 1}, {kMin + 1, 1}, {kMax - 1, 1}, {kMax, 1}};
    check_same(swing, round_trip(swing));
  }

  TEST_CASE("gorilla: every delta-of-delta bucket boundary round-trips") {
    std::vector<Point> in;
    Timestamp ts = 0;
    Timestamp delta = 1000;
    in.push_back({ts, 0});
    for (std::int64_t dod : {0LL,
                             1LL,
                             -1LL,
                             63LL,
                             64LL,
                             -64LL,
                             -65LL,
                             2047LL,
                             2048LL,
                             -2048LL,
                             -2049LL,
                             (1LL << 19) - 1,
                             1LL << 19,
                             -(1LL << 19),
                             -(1LL << 19) - 1,
                             (1LL << 31) - 1,
                             1LL << 31,
                             -(1LL << 31),
                             -(1LL << 31) - 1,
                             1LL << 40,
                             -(1LL << 40)}) {
      delta += dod;
      ts += delta;
      in.push_back({ts, static_cast<double>(dod)});
    }
    check_same(in, round_trip(in));
  }

  TEST_CASE("gorilla: regular series compress to a couple of bits per point") {
    std::vector<Point> in;
    for (int i = 0; i < 1024; ++i) in.push_back({1'700'000'000'000 + i * 1000, 20.0});
    std::size_t bytes = 0;
    check_same(in, round_trip(in, &bytes));
    // 16 bytes for the first point, 15 bits for the first delta, then '0' + '0' per point.
    CHECK(bytes == (128 + 15 + 2 + 1022 * 2 + 7) / 8);
  }

  TEST_CASE("gorilla: random series round-trip against the input") {
    std::mt19937_64 rng(20261129);
    for (int round = 0; round < 200; ++round) {
      const std::size_t n = 1 + rng() % 1500;
      std::vector<Point> in;
      Timestamp ts = static_cast<Timestamp>(rng());
      double v = 0;
      for (std::size_t i = 0; i < n; ++i) {
        switch (rng() % 4) {
          case 0:
            ts += 1000;
            break;
          case 1:
            ts += static_cast<Timestamp>(rng() % 100);
            break;
          case 2:
            ts += static_cast<Timestamp>(rng() % (1ULL << 40));
            break;
          default:
            ts = static_cast<Timestamp>(static_cast<std::uint64_t>(ts) + (rng() >> 1));
            break;  // wraps
        }
        switch (rng() % 5) {
          case 0:
            break;  // repeat
          case 1:
            v += 0.5;
            break;
          case 2:
            v = static_cast<double>(rng() % 1000);
            break;
          case 3:
            v = std::bit_cast<double>(rng());
            break;  // any bits, NaNs included
          default:
            v = std::bit_cast<double>(std::bit_cast<std::uint64_t>(v) ^ (std::uint64_t{1} << (rng() % 64)));
        }
        in.push_back({ts, v});
      }
      check_same(in, round_trip(in));
    }
  }

  TEST_CASE("gorilla: a truncated block throws CodecError and never reads past the end") {
    std::mt19937_64 rng(7);
    std::vector<Point> in;
    for (int i = 0; i < 300; ++i)
      in.push_back({i * 1000 + static_cast<Timestamp>(rng() % 7), std::bit_cast<double>(rng())});
    std::vector<std::byte> bytes;
    encode_points(in, bytes);
    for (std::size_t len = 0; len < bytes.size(); ++len) {
      std::vector<Point> out;
      // A copy of exactly `len` bytes, so ASan would see a read past it.
      const std::vector<std::byte> cut(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(len));
      CHECK_THROWS_AS(decode_points(cut, in.size(), out), CodecError);
    }
  }

  TEST_CASE("gorilla: random bytes decode to an error or to points and never crash") {
    std::mt19937_64 rng(99);
    for (int round = 0; round < 2000; ++round) {
      std::vector<std::byte> bytes(rng() % 64);
      for (auto& b : bytes) b = static_cast<std::byte>(rng());
      std::vector<Point> out;
      try {
        decode_points(bytes, 1 + rng() % 40, out);
      } catch (const CodecError&) {
      }
    }
  }
}

}  // namespace
}  // namespace sydra::storage::gorilla
