// Doubles that a codec must keep bit for bit and that tempt it not to: NaN payloads, the
// sign of zero, infinities, subnormals, the extremes, and values at the edges of what a
// scaled decimal holds. Shared by the codec tests.
#pragma once

#include <bit>
#include <cstdint>
#include <limits>
#include <vector>

namespace sydra::storage::test {

inline double from_bits(std::uint64_t bits) {
  return std::bit_cast<double>(bits);
}

inline const std::vector<double>& special_doubles() {
  static const std::vector<double> values{
      from_bits(0x7ff8000000000000),  // quiet NaN
      from_bits(0x7ff8dead0000beef),  // quiet NaN with a payload
      from_bits(0x7ff0000000000001),  // signalling NaN
      from_bits(0xfff8000000000123),  // negative NaN with a payload
      from_bits(0x7ff0000000000002),  // Prometheus' stale marker
      std::numeric_limits<double>::infinity(),
      -std::numeric_limits<double>::infinity(),
      0.0,
      -0.0,
      std::numeric_limits<double>::denorm_min(),
      -std::numeric_limits<double>::denorm_min(),
      from_bits(0x000fffffffffffff),  // largest subnormal
      std::numeric_limits<double>::min(),
      std::numeric_limits<double>::max(),
      std::numeric_limits<double>::lowest(),
      1.0,
      9007199254740991.0,   // 2^53 - 1: the largest decimal integer
      9007199254740992.0,   // 2^53: too large to be a decimal
      -9007199254740991.0,  //
      0.1 + 0.2,            // 0.30000000000000004: 17 digits, not a short decimal
      1e-18,                // the largest exponent
      1.5e-19,              // beyond it
      123456789.123456789,  //
      2.37,
      1024.5,
  };
  return values;
}

}  // namespace sydra::storage::test
