// Tests server/storage/int_column.hpp: packed integer columns with exceptions round-trip any
// 64-bit values, pick a narrow width around outliers, and reject malformed columns.
#include "server/storage/int_column.hpp"

#include <doctest/doctest.h>

#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "server/storage/codec_bits.hpp"

namespace sydra::storage::codec {
namespace {

std::vector<std::byte> encode(const std::vector<std::uint64_t>& values, IntColumnPlan* plan_out = nullptr) {
  const IntColumnPlan plan = plan_int_column(values);
  if (plan_out != nullptr) *plan_out = plan;
  std::vector<std::byte> bytes;
  encode_int_column(values, plan, bytes);
  return bytes;
}

void check_round_trip(const std::vector<std::uint64_t>& values) {
  const std::vector<std::byte> bytes = encode(values);
  // Trailing bytes that are not the column's: decode must stop before them.
  std::vector<std::byte> padded = bytes;
  padded.push_back(std::byte{0xAB});
  std::vector<std::uint64_t> out(values.size() + 1, 0xDEADBEEF);
  const std::size_t used = decode_int_column(padded, values.size(), out.data());
  CHECK(used == bytes.size());
  for (std::size_t i = 0; i < values.size(); ++i) {
    INFO("value " << i << " of " << values.size());
    CHECK(out[i] == values[i]);
  }
  CHECK(out[values.size()] == 0xDEADBEEF);  // nothing written past n
}

std::uint64_t s(std::int64_t v) {
  return static_cast<std::uint64_t>(v);
}

TEST_SUITE("unit") {
  TEST_CASE("int column: empty, single and extreme values round-trip") {
    constexpr auto kMin = std::numeric_limits<std::int64_t>::min();
    constexpr auto kMax = std::numeric_limits<std::int64_t>::max();
    check_round_trip({});
    check_round_trip({0});
    check_round_trip({s(kMin)});
    check_round_trip({s(kMax)});
    check_round_trip({s(kMin), s(kMax), 0, s(-1), 1, s(kMin), s(kMax)});
    check_round_trip({~std::uint64_t{0}, ~std::uint64_t{0}, 0});
    std::vector<std::uint64_t> wide;
    for (int i = 0; i < 300; ++i) wide.push_back(i % 2 == 0 ? s(kMin) : s(kMax));
    check_round_trip(wide);
  }

  TEST_CASE("int column: every width from 0 to 64 round-trips, at every length near a word boundary") {
    std::mt19937_64 rng(64);
    for (unsigned w = 0; w <= 64; ++w) {
      for (std::size_t n : {1u, 2u, 7u, 8u, 9u, 63u, 64u, 65u, 127u, 1024u}) {
        std::vector<std::uint64_t> values(n);
        for (auto& v : values) {
          const std::uint64_t mask = w == 64 ? ~std::uint64_t{0} : (std::uint64_t{1} << w) - 1;
          v = rng() & mask;  // as zigzag: non-negative and negative residuals
        }
        INFO("width " << w << ", n " << n);
        check_round_trip(values);
      }
    }
  }

  TEST_CASE("int column: zeros take no packed bytes and a few outliers become exceptions") {
    std::vector<std::uint64_t> zeros(1024, 0);
    IntColumnPlan plan;
    CHECK(encode(zeros, &plan).size() == 2);  // head, k = 0
    CHECK(plan.width == 0);
    check_round_trip(zeros);

    // A regular series' second-order residuals: t0, the interval, then zeros.
    std::vector<std::uint64_t> regular(1024, 0);
    regular[0] = 1'700'000'000'000;
    regular[1] = 10'000;
    const auto bytes = encode(regular, &plan);
    CHECK(plan.width == 0);
    CHECK(bytes.size() <= 16);
    check_round_trip(regular);

    // Small jitter with two large outliers (a gap and its return): the column stays narrow.
    std::mt19937_64 rng(3);
    std::vector<std::uint64_t> jitter(1024);
    for (auto& v : jitter) v = s(static_cast<std::int64_t>(rng() % 7) - 3);
    jitter[500] = s(3'600'000);
    jitter[501] = s(-3'600'000);
    const auto j = encode(jitter, &plan);
    CHECK(plan.width <= 3);
    CHECK(j.size() < 1024 * 3 / 8 + 24);
    check_round_trip(jitter);
  }

  TEST_CASE("int column: a width between the values' widths wins when it shortens many exceptions") {
    // Offsets from the minimum: 600 of 0 bits and 400 of 8 bits. Width 0: 400 exceptions
    // of 2 bytes each (gap, high); width 8: 1000 bytes; width 1: 125 bytes of packing and
    // one byte less for every exception, the cheapest.
    std::vector<std::uint64_t> values(1000, 1000);
    for (std::size_t i = 0; i < values.size(); i += 5) {
      values[i] = 1000 + 128 + i % 128;
      values[i + 1] = 1000 + 255 - i % 128;
    }
    IntColumnPlan plan;
    const auto bytes = encode(values, &plan);
    CHECK_FALSE(plan.sparse);
    CHECK(plan.frame_of_reference);
    CHECK(plan.width == 1);
    CHECK(bytes.size() < 1000);
    check_round_trip(values);
  }

  TEST_CASE("int column: non-negative values use a frame of reference, centred ones zigzag") {
    IntColumnPlan plan;
    std::vector<std::uint64_t> counter_deltas;
    for (int i = 0; i < 1000; ++i) counter_deltas.push_back(static_cast<std::uint64_t>(1000 + i % 256));
    encode(counter_deltas, &plan);
    CHECK(plan.frame_of_reference);
    CHECK(plan.base == 1000);
    CHECK(plan.width == 8);
    check_round_trip(counter_deltas);

    std::vector<std::uint64_t> walk;
    for (int i = 0; i < 1000; ++i) walk.push_back(s(i % 2 == 0 ? -(i % 64) : i % 64));
    encode(walk, &plan);
    CHECK_FALSE(plan.frame_of_reference);
    check_round_trip(walk);
  }

  TEST_CASE("int column: frequent zeros among wide values take the sparse form, 1 bit per zero") {
    std::mt19937_64 rng(8);
    std::vector<std::uint64_t> steps(4096);  // a gauge that stays put half of the time
    for (auto& v : steps) v = rng() % 2 == 0 ? 0 : s(static_cast<std::int64_t>(rng() % 101) - 50);
    IntColumnPlan plan;
    const auto bytes = encode(steps, &plan);
    CHECK(plan.sparse);
    CHECK(bytes.size() < 4096 / 8 + 2100 * 7 / 8 + 16);  // bitmap + about half the values at 7 bits
    check_round_trip(steps);

    // Few zeros: the bitmap does not pay.
    for (auto& v : steps) v = rng() % 64 == 0 ? 0 : s(static_cast<std::int64_t>(rng() % 101) - 50);
    encode(steps, &plan);
    CHECK_FALSE(plan.sparse);
    check_round_trip(steps);

    // Every zero fraction and length round-trips, sparse or not.
    for (int round = 0; round < 300; ++round) {
      const std::size_t n = 1 + rng() % 700;
      const unsigned zero_in_16 = static_cast<unsigned>(rng() % 17);
      std::vector<std::uint64_t> values(n);
      for (auto& v : values) v = rng() % 16 < zero_in_16 ? 0 : (rng() % 5 == 0 ? rng() : rng() % 300);
      check_round_trip(values);
    }
  }

  TEST_CASE("int column: the size estimate is the encoded size when there are no exceptions") {
    std::mt19937_64 rng(11);
    for (int round = 0; round < 200; ++round) {
      const std::size_t n = 1 + rng() % 1024;
      const unsigned w = static_cast<unsigned>(rng() % 40);
      std::vector<std::uint64_t> values(n);
      for (auto& v : values) v = w == 0 ? 0 : rng() >> (64 - w);
      IntColumnPlan plan;
      const auto bytes = encode(values, &plan);
      if (plan.sparse) continue;
      std::uint64_t k = 0;
      for (const auto v : values)
        k += plan.width < 64 && ((plan.frame_of_reference ? v - plan.base : zigzag(v)) >> plan.width) != 0;
      if (k == 0) CHECK(plan.bytes == bytes.size());
      check_round_trip(values);
    }
  }

  TEST_CASE("int column: random columns with random outliers round-trip") {
    std::mt19937_64 rng(2026);
    for (int round = 0; round < 500; ++round) {
      const std::size_t n = rng() % 2100;
      const unsigned w = static_cast<unsigned>(rng() % 65);
      const std::uint64_t offset = rng() % 3 == 0 ? rng() : 0;
      std::vector<std::uint64_t> values(n);
      for (auto& v : values) {
        v = offset + (w == 0 ? 0 : rng() >> (64 - w));
        if (rng() % 50 == 0) v = rng();  // an outlier
        if (rng() % 7 == 0) v = s(-static_cast<std::int64_t>(rng() % 100));
      }
      check_round_trip(values);
    }
  }

  TEST_CASE("int column: every truncation throws CodecError") {
    std::mt19937_64 rng(5);
    std::vector<std::uint64_t> values(300);
    for (auto& v : values) v = rng() % 5000;
    values[17] = rng();
    values[200] = rng();
    const std::vector<std::byte> bytes = encode(values);
    std::vector<std::uint64_t> out(values.size());
    for (std::size_t len = 0; len < bytes.size(); ++len) {
      const std::vector<std::byte> cut(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(len));
      CHECK_THROWS_AS(decode_int_column(cut, values.size(), out.data()), CodecError);
    }
  }

  TEST_CASE("int column: malformed heads and exceptions are errors") {
    std::uint64_t out[4];
    const auto bytes = [](std::initializer_list<int> list) {
      std::vector<std::byte> b;
      for (int v : list) b.push_back(static_cast<std::byte>(v));
      return b;
    };
    // Width 65.
    CHECK_THROWS_AS(decode_int_column(bytes({65, 0}), 1, out), CodecError);
    // More exceptions than values.
    CHECK_THROWS_AS(decode_int_column(bytes({0, 3, 0, 1, 0, 1, 0, 1}), 2, out), CodecError);
    // An exception index past n (gap 4 with n = 4).
    CHECK_THROWS_AS(decode_int_column(bytes({0, 1, 4, 1}), 4, out), CodecError);
    // A second exception past the end (indices 3, then 4).
    CHECK_THROWS_AS(decode_int_column(bytes({0, 2, 3, 1, 0, 1}), 4, out), CodecError);
    // Exceptions in a 64-bit column.
    std::vector<std::byte> wide = bytes({64, 1});
    wide.resize(wide.size() + 8);
    wide.push_back(std::byte{0});
    wide.push_back(std::byte{1});
    CHECK_THROWS_AS(decode_int_column(wide, 1, out), CodecError);
    // An exception whose high part does not fit above the width (w = 8, high = 2^56).
    std::vector<std::byte> high = bytes({8, 1, 0});
    high.insert(high.begin() + 2, std::byte{0});  // one packed byte, after k
    put_varint(high, std::uint64_t{1} << 56);
    CHECK_THROWS_AS(decode_int_column(high, 1, out), CodecError);
    // An overlong varint.
    CHECK_THROWS_AS(decode_int_column(
                        bytes({0x80, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, 0}), 1, out),
                    CodecError);
    // A sparse column inside a sparse column; bits set past n in the bitmap; a bitmap that
    // ends early.
    CHECK_THROWS_AS(decode_int_column(bytes({0x7f, 0x01, 0x7f, 0x01, 0, 0}), 4, out), CodecError);
    CHECK_THROWS_AS(decode_int_column(bytes({0x7f, 0x11, 0, 0}), 4, out), CodecError);
    CHECK_THROWS_AS(decode_int_column(bytes({0x7f}), 4, out), CodecError);
    // 0xff (width 127 with a base) is no column.
    CHECK_THROWS_AS(decode_int_column(bytes({0xff, 0, 0}), 1, out), CodecError);
    // A huge n cannot make the packed size overflow.
    CHECK_THROWS_AS(decode_int_column(bytes({64, 0, 1, 2}), std::size_t{1} << 61, out), CodecError);
  }

  TEST_CASE("int column: random bytes decode to an error or to values and never crash") {
    std::mt19937_64 rng(77);
    std::vector<std::uint64_t> out(64);
    for (int round = 0; round < 5000; ++round) {
      std::vector<std::byte> bytes(rng() % 48);
      for (auto& b : bytes) b = static_cast<std::byte>(rng());
      if (!bytes.empty() && rng() % 2 == 0) bytes[0] = static_cast<std::byte>(rng() % 65);
      try {
        const std::size_t used = decode_int_column(bytes, 1 + rng() % 63, out.data());
        CHECK(used <= bytes.size());
      } catch (const CodecError&) {
      }
    }
  }
}

}  // namespace
}  // namespace sydra::storage::codec
