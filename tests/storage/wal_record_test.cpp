// The WAL record payload (server/storage/wal_record.hpp): runs round-trip with their ids,
// keys and points; the byte layout is pinned; malformed payloads are refused naming the lsn.
#include "server/storage/wal_record.hpp"

#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

namespace sydra::storage {
namespace {

struct Decoded {
  SeriesId id;
  std::string key;
  std::vector<Point> points;
};

std::vector<Decoded> decode(Lsn lsn, const std::vector<std::byte>& payload) {
  std::vector<Decoded> out;
  std::vector<Point> scratch;
  decode_wal_record(lsn, payload, scratch, [&](SeriesId id, std::string_view key, std::span<const Point> p) {
    out.push_back({id, std::string(key), std::vector<Point>(p.begin(), p.end())});
  });
  return out;
}

std::string error_of(Lsn lsn, const std::vector<std::byte>& payload) {
  try {
    decode(lsn, payload);
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return "";
}

TEST_SUITE("unit") {
  TEST_CASE("WAL record: runs round-trip, in order, with keys holding NUL separators") {
    const std::vector<Point> points = {{1, 1.5}, {2, -0.0}, {3, 1e300}, {-7, 4}};
    const std::string key_a("cpu\0host\0a", 10);
    const WalRun runs[] = {{11, key_a, 0, 3}, {22, "mem", 3, 4}, {33, "empty", 4, 4}};
    std::vector<std::byte> payload;
    encode_wal_record(runs, points, payload);
    CHECK(payload.size() == 8 + (16 + 10 + 48) + (16 + 3 + 16) + (16 + 5));
    std::uint32_t version = 0;
    std::memcpy(&version, payload.data(), 4);
    CHECK(version == 1);

    const auto d = decode(5, payload);
    REQUIRE(d.size() == 3);
    CHECK(d[0].id == 11);
    CHECK(d[0].key == key_a);
    REQUIRE(d[0].points.size() == 3);
    CHECK(d[0].points[2].value == 1e300);
    CHECK(std::signbit(d[0].points[1].value));
    CHECK(d[1].key == "mem");
    CHECK(d[1].points[0].ts == -7);
    CHECK(d[2].points.empty());
  }

  TEST_CASE("WAL record: a malformed payload is refused naming the lsn") {
    const std::vector<Point> points = {{1, 1}};
    const WalRun runs[] = {{1, "m", 0, 1}};
    std::vector<std::byte> payload;
    encode_wal_record(runs, points, payload);

    auto truncated = payload;
    truncated.pop_back();
    CHECK(error_of(9, truncated) == "WAL record 9 does not decode: truncated points");
    auto trailing = payload;
    trailing.push_back(std::byte{0});
    CHECK(error_of(9, trailing) == "WAL record 9 does not decode: trailing bytes");
    auto version = payload;
    version[0] = std::byte{2};
    CHECK(error_of(9, version) == "WAL record 9 does not decode: unknown version");
    CHECK(error_of(9, std::vector<std::byte>(3)) == "WAL record 9 does not decode: truncated");
  }
}

}  // namespace
}  // namespace sydra::storage
