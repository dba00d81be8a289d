// The NDJSON ingest parser (server/storage/ingest_parser.hpp): good lines, every kind of bad
// line with its line number, limits, the last-series cache and the batch's memory resource.
#include "server/storage/ingest_parser.hpp"

#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <memory_resource>
#include <string>
#include <vector>

#include "server/storage/series_key.hpp"

namespace sydra::storage {
namespace {

using namespace std::string_view_literals;
using namespace std::string_literals;

struct Parsed {
  ParsedBatch batch;
};

Parsed parse(std::string_view body, std::size_t max_line = 64 * 1024,
             TimeUnit unit = TimeUnit::milliseconds) {
  NdjsonParser parser(max_line);
  Parsed p{ParsedBatch{}};
  parser.parse(body, p.batch, unit);
  return p;
}

// The one error of a body holding one bad line, or "" when it was accepted.
std::string error_of(std::string_view line) {
  const Parsed p = parse(line);
  if (p.batch.rejected == 0) return {};
  REQUIRE(p.batch.rejected == 1);
  REQUIRE(p.batch.errors.size() == 1);
  CHECK(p.batch.errors[0].line == 1);
  CHECK(p.batch.points.empty());
  return std::string(p.batch.errors[0].message);
}

bool contains(std::string_view haystack, std::string_view needle) {
  return haystack.find(needle) != std::string_view::npos;
}

// Counts what is allocated through it.
class CountingResource : public std::pmr::memory_resource {
 public:
  std::size_t allocations = 0;

 private:
  void* do_allocate(std::size_t bytes, std::size_t align) override {
    ++allocations;
    return std::pmr::new_delete_resource()->allocate(bytes, align);
  }
  void do_deallocate(void* p, std::size_t bytes, std::size_t align) override {
    std::pmr::new_delete_resource()->deallocate(p, bytes, align);
  }
  bool do_is_equal(const std::pmr::memory_resource& other) const noexcept override { return this == &other; }
};

TEST_SUITE("unit") {
  TEST_CASE("a line with tags: point, canonical key and id") {
    const Parsed p =
        parse(R"({"series":"cpu.load","ts":1700000000000,"tags":{"host":"h17","dc":"eu"},"value":0.75})"
              "\n");
    CHECK(p.batch.rejected == 0);
    CHECK(p.batch.errors.empty());
    REQUIRE(p.batch.points.size() == 1);
    const ParsedPoint& point = p.batch.points[0];
    CHECK(point.ts == 1700000000000);
    CHECK(point.value == 0.75);
    CHECK(p.batch.key(point) == "cpu.load\0dc\0eu\0host\0h17"sv);
    CHECK(point.id == series_id(p.batch.key(point)));
    CHECK(point.id == 14313608873894986226ULL);  // pinned in series_key_test.cpp too
  }

  TEST_CASE("fields in any order, tags in any order, unknown fields ignored: same series") {
    const Parsed p = parse(
        R"({"value":1,"tags":{"dc":"eu","host":"h17"},"ts":5,"series":"cpu.load","unit":"%","meta":{"a":[1,2.5,true,null,"x"]}})"
        "\n"
        R"({"series":"cpu.load","tags":{"host":"h17","dc":"eu"},"ts":6,"value":2})");
    REQUIRE(p.batch.points.size() == 2);
    CHECK(p.batch.rejected == 0);
    CHECK(p.batch.points[0].id == p.batch.points[1].id);
    CHECK(p.batch.key(p.batch.points[0]) == p.batch.key(p.batch.points[1]));
    CHECK(p.batch.points[0].value == 1.0);  // an integer value becomes a double
  }

  TEST_CASE("a series without tags is its name alone, empty tags are the same series") {
    const Parsed p = parse(R"({"series":"m","ts":1,"value":1})"
                           "\n"
                           R"({"series":"m","ts":2,"value":2,"tags":{}})");
    REQUIRE(p.batch.points.size() == 2);
    CHECK(p.batch.key(p.batch.points[0]) == "m");
    CHECK(p.batch.key(p.batch.points[1]) == "m");
    CHECK(p.batch.points[0].id == series_id("m"));
    CHECK(p.batch.points[1].id == series_id("m"));
  }

  TEST_CASE("blank lines are skipped and not counted, but line numbers count them") {
    const Parsed p = parse(
        "\n   \n\t\r\n"
        R"({"series":"m","ts":1,"value":1})"
        "\n\n"
        "oops\n");
    REQUIRE(p.batch.points.size() == 1);
    CHECK(p.batch.rejected == 1);
    REQUIRE(p.batch.errors.size() == 1);
    CHECK(p.batch.errors[0].line == 6);
  }

  TEST_CASE("CRLF line ends, and a last line without a newline") {
    const Parsed p =
        parse("{\"series\":\"m\",\"ts\":1,\"value\":1}\r\n{\"series\":\"m\",\"ts\":2,\"value\":2}");
    REQUIRE(p.batch.points.size() == 2);
    CHECK(p.batch.rejected == 0);
    CHECK(p.batch.points[1].ts == 2);
  }

  TEST_CASE("an empty body is an empty batch") {
    const Parsed p = parse("");
    CHECK(p.batch.points.empty());
    CHECK(p.batch.rejected == 0);
  }

  TEST_CASE("escaped names, keys and values are unescaped") {
    const Parsed p = parse(R"({"ser\u0069es":"a\"b","ts":1,"value":1,"tags":{"k\n":"\u00e9"}})");
    REQUIRE(p.batch.points.size() == 1);
    CHECK(p.batch.key(p.batch.points[0]) == "a\"b\0k\n\0\xc3\xa9"sv);
  }

  TEST_CASE("timestamps: the whole int64 range, negative included") {
    const Parsed p = parse(R"({"series":"m","ts":-9223372036854775808,"value":1})"
                           "\n"
                           R"({"series":"m","ts":9223372036854775807,"value":1})"
                           "\n"
                           R"({"series":"m","ts":-1,"value":-0.5e-3})");
    REQUIRE(p.batch.points.size() == 3);
    CHECK(p.batch.points[0].ts == std::numeric_limits<std::int64_t>::min());
    CHECK(p.batch.points[1].ts == std::numeric_limits<std::int64_t>::max());
    CHECK(p.batch.points[2].ts == -1);
    CHECK(p.batch.points[2].value == -0.0005);
  }

  TEST_CASE("values: large integers and exponents become doubles") {
    const Parsed p = parse(R"({"series":"m","ts":1,"value":18446744073709551615})"
                           "\n"
                           R"({"series":"m","ts":2,"value":1.5e300})");
    REQUIRE(p.batch.points.size() == 2);
    CHECK(p.batch.points[0].value == doctest::Approx(1.8446744073709552e19));
    CHECK(p.batch.points[1].value == 1.5e300);
  }

  TEST_CASE("every malformed line is rejected with a message saying why") {
    // Structure.
    CHECK(contains(error_of("[1,2]"), "not a JSON object"));
    CHECK(contains(error_of("\"series\""), "not a JSON object"));
    CHECK(contains(error_of("42"), "not a JSON object"));
    CHECK(contains(error_of("null"), "not a JSON object"));
    CHECK(contains(error_of("garbage"), "not a JSON object"));
    CHECK(contains(error_of("{garbage}"), "invalid JSON"));
    CHECK(contains(error_of(R"({"series":"m","ts":1,"value":1)"), "invalid JSON"));  // truncated
    CHECK(contains(error_of(R"({"series":"m","ts":1,"val)"), "invalid JSON"));       // truncated in a string
    CHECK(contains(error_of(R"({"series":"m","ts":1,"value":1} x)"), "characters after it"));
    CHECK(
        contains(error_of(R"({"series":"m","ts":1,"value":1}{"series":"m","ts":1,"value":1})"), "trailing"));
    CHECK(contains(error_of(R"({"series":"m","ts":1,"value":1}})"), "trailing"));
    CHECK(contains(error_of(R"({"series":"m" "ts":1,"value":1})"), "invalid JSON"));
    CHECK(contains(error_of(R"({"series":"m",,"ts":1,"value":1})"), "invalid JSON"));
    CHECK(contains(error_of("{\"series\":\"m\xff\",\"ts\":1,\"value\":1}"), "UTF-8"));
    CHECK(!error_of(R"({"series":"m","ts":1,"value":1,"x":tru})").empty());
    CHECK(!error_of(R"({"series":"m","ts":1,"value":1,"x":[1,}]})").empty());
    CHECK(!error_of(R"({"series":"m","ts":1,"value":1,"x":"\q"})").empty());
    CHECK(!error_of(R"({"series":"m","ts":1,"value":1,"x":01})").empty());
    // Missing fields.
    CHECK(error_of(R"({"ts":1,"value":1})") == "missing \"series\"");
    CHECK(error_of(R"({"series":"m","value":1})") == "missing \"ts\"");
    CHECK(error_of(R"({"series":"m","ts":1})") == "missing \"value\"");
    CHECK(error_of("{}") == "missing \"series\"");
    // Mistyped fields.
    CHECK(error_of(R"({"series":5,"ts":1,"value":1})") == "\"series\" must be a string");
    CHECK(error_of(R"({"series":"","ts":1,"value":1})") == "\"series\" is empty");
    CHECK(contains(error_of(R"({"series":"m","ts":"1","value":1})"), "\"ts\" must be an integer"));
    CHECK(contains(error_of(R"({"series":"m","ts":1.5,"value":1})"), "\"ts\" must be an integer"));
    CHECK(contains(error_of(R"({"series":"m","ts":1e3,"value":1})"), "\"ts\" must be an integer"));
    CHECK(contains(error_of(R"({"series":"m","ts":null,"value":1})"), "\"ts\" must be an integer"));
    CHECK(contains(error_of(R"({"series":"m","ts":9223372036854775808,"value":1})"), "out of"));
    CHECK(contains(error_of(R"({"series":"m","ts":-9223372036854775809,"value":1})"), "ts"));
    CHECK(contains(error_of(R"({"series":"m","ts":99999999999999999999999,"value":1})"), "ts"));
    CHECK(error_of(R"({"series":"m","ts":1,"value":"1"})") == "\"value\" must be a number");
    CHECK(error_of(R"({"series":"m","ts":1,"value":true})") == "\"value\" must be a number");
    CHECK(!error_of(R"({"series":"m","ts":1,"value":NaN})").empty());
    CHECK(!error_of(R"({"series":"m","ts":1,"value":Infinity})").empty());
    CHECK(!error_of(R"({"series":"m","ts":1,"value":-Infinity})").empty());
    CHECK(contains(error_of(R"({"series":"m","ts":1,"value":1e400})"), "value"));
    // Tags.
    CHECK(error_of(R"({"series":"m","ts":1,"value":1,"tags":[]})") ==
          "\"tags\" must be an object of strings");
    CHECK(error_of(R"({"series":"m","ts":1,"value":1,"tags":null})") ==
          "\"tags\" must be an object of strings");
    CHECK(error_of(R"({"series":"m","ts":1,"value":1,"tags":{"k":1}})") ==
          "tag \"k\" must have a string value");
    CHECK(error_of(R"({"series":"m","ts":1,"value":1,"tags":{"k":{"a":"b"}}})") ==
          "tag \"k\" must have a string value");
    CHECK(error_of(R"({"series":"m","ts":1,"value":1,"tags":{"":"v"}})") == "a tag key is empty");
    CHECK(error_of(R"({"series":"m","ts":1,"value":1,"tags":{"k":"a","k":"b"}})") ==
          "duplicate tag key \"k\"");
    CHECK(error_of(R"({"series":"m","ts":1,"value":1,"tags":{"b":"1","a":"2","b":"3"}})") ==
          "duplicate tag key \"b\"");
    // NUL inside a name, key or value.
    CHECK(error_of(R"({"series":"a\u0000b","ts":1,"value":1})") == "\"series\" contains a NUL character");
    CHECK(error_of(R"({"series":"m","ts":1,"value":1,"tags":{"k\u0000":"v"}})") ==
          "tag key \"k\\u0000\" contains a NUL character");
    CHECK(error_of(R"({"series":"m","ts":1,"value":1,"tags":{"k":"\u0000"}})") ==
          "the value of tag \"k\" contains a NUL character");
    // Duplicate fields.
    CHECK(error_of(R"({"series":"m","series":"n","ts":1,"value":1})") == "duplicate field \"series\"");
    CHECK(error_of(R"({"series":"m","ts":1,"ts":2,"value":1})") == "duplicate field \"ts\"");
    CHECK(error_of(R"({"series":"m","ts":1,"value":1,"value":2})") == "duplicate field \"value\"");
    CHECK(error_of(R"({"series":"m","ts":1,"value":1,"tags":{},"tags":{}})") == "duplicate field \"tags\"");
    // Deep nesting in an unknown field.
    CHECK(!error_of(R"({"series":"m","ts":1,"value":1,"x":)" + std::string(100, '[') + std::string(100, ']') +
                    "}")
               .empty());
  }

  TEST_CASE("a long tag key is quoted shortened in the message") {
    const std::string key(200, 'k');
    const std::string message = error_of(R"({"series":"m","ts":1,"value":1,"tags":{")" + key + R"(":7}})");
    CHECK(message.size() < 100);
    CHECK(contains(message, "...\""));
  }

  TEST_CASE("bad lines among good ones: the good ones are kept, the bad ones numbered") {
    std::string body;
    for (int i = 1; i <= 30; ++i) {
      if (i % 2 == 0) {
        body += R"({"series":"m","ts":)" + std::to_string(i) + R"(,"value":1})";
      } else {
        body += R"({"series":"m","ts":)" + std::to_string(i) + "}";  // no value
      }
      body += '\n';
    }
    const Parsed p = parse(body);
    CHECK(p.batch.points.size() == 15);
    CHECK(p.batch.rejected == 15);
    REQUIRE(p.batch.errors.size() == ParsedBatch::kMaxReportedErrors);
    for (std::size_t i = 0; i < p.batch.errors.size(); ++i) {
      CHECK(p.batch.errors[i].line == 2 * i + 1);
      CHECK(p.batch.errors[i].message == "missing \"value\"");
    }
    for (std::size_t i = 0; i < p.batch.points.size(); ++i)
      CHECK(p.batch.points[i].ts == Timestamp(2 * i + 2));
  }

  TEST_CASE("a line over the limit is rejected alone, with its number, the others are stored") {
    const std::string good = R"({"series":"m","ts":1,"value":1})";
    const std::string long_line = R"({"series":"m","ts":1,"value":1,"pad":")" + std::string(200, 'x') + "\"}";
    Parsed p = parse(good + "\n" + long_line + "\n" + good, 128);
    CHECK(p.batch.points.size() == 2);
    CHECK(p.batch.rejected == 1);
    REQUIRE(p.batch.errors.size() == 1);
    CHECK(p.batch.errors[0].line == 2);
    CHECK(std::string_view(p.batch.errors[0].message) ==
          "the line is " + std::to_string(long_line.size()) + " bytes, over max_line_bytes=128");
    // A blank line over the limit counts too: the limit is on bytes, whatever they are.
    p = parse(std::string(200, ' ') + "\n" + good, 128);
    CHECK(p.batch.points.size() == 1);
    CHECK(p.batch.rejected == 1);
    // Exactly at the limit is accepted.
    p = parse(good + "\n", good.size());
    CHECK(p.batch.points.size() == 1);
    CHECK(p.batch.rejected == 0);
  }

  TEST_CASE("ts in seconds, microseconds or nanoseconds is stored in milliseconds, rounded down") {
    const auto ts_of = [](std::string_view ts, TimeUnit unit) {
      const Parsed p = parse(R"({"series":"m","value":1,"ts":)" + std::string(ts) + "}", 1024, unit);
      REQUIRE(p.batch.points.size() == 1);
      return p.batch.points[0].ts;
    };
    CHECK(ts_of("1700000000", TimeUnit::seconds) == 1'700'000'000'000);
    CHECK(ts_of("-2", TimeUnit::seconds) == -2000);
    CHECK(ts_of("1700000000123", TimeUnit::milliseconds) == 1'700'000'000'123);
    CHECK(ts_of("1700000000123456", TimeUnit::microseconds) == 1'700'000'000'123);
    CHECK(ts_of("1700000000123456789", TimeUnit::nanoseconds) == 1'700'000'000'123);
    CHECK(ts_of("-1", TimeUnit::microseconds) == -1);  // floor, not towards zero
    CHECK(ts_of("-1000001", TimeUnit::nanoseconds) == -2);
    // Seconds beyond the millisecond range are rejected, not wrapped.
    const Parsed p = parse(R"({"series":"m","value":1,"ts":9223372036854776})", 1024, TimeUnit::seconds);
    CHECK(p.batch.points.empty());
    REQUIRE(p.batch.errors.size() == 1);
    CHECK(std::string_view(p.batch.errors[0].message) == "\"ts\" in seconds is out of the millisecond range");
  }

  TEST_CASE("timestamps that look like another unit are counted with the first line") {
    const auto line = [](std::string_view ts) {
      return R"({"series":"m","value":1,"ts":)" + std::string(ts) + "}\n";
    };
    // Seconds sent as milliseconds: stored as given (January 1970), and noted.
    Parsed p = parse(line("5") + line("1700000000") + line("1700000001") + line("1700000000000"));
    CHECK(p.batch.points.size() == 4);
    CHECK(p.batch.points[1].ts == 1'700'000'000);
    CHECK(p.batch.unit_mismatch.lines == 2);
    CHECK(p.batch.unit_mismatch.first_line == 2);
    CHECK(p.batch.unit_mismatch.first_ts == 1'700'000'000);
    CHECK(p.batch.unit_mismatch.looks_like == TimeUnit::seconds);
    // Nanoseconds and microseconds sent as milliseconds.
    p = parse(line("1700000000000000000"));
    CHECK(p.batch.unit_mismatch.looks_like == TimeUnit::nanoseconds);
    p = parse(line("1700000000000000"));
    CHECK(p.batch.unit_mismatch.looks_like == TimeUnit::microseconds);
    // Milliseconds sent as seconds.
    p = parse(line("1700000000000"), 1024, TimeUnit::seconds);
    CHECK(p.batch.unit_mismatch.lines == 1);
    CHECK(p.batch.unit_mismatch.looks_like == TimeUnit::milliseconds);
    // In their unit, or not a date of this era in any unit: nothing to note.
    for (const auto& [ts, unit] :
         {std::pair{"1700000000", TimeUnit::seconds}, std::pair{"1700000000000", TimeUnit::milliseconds},
          std::pair{"1700000000000000", TimeUnit::microseconds},
          std::pair{"1700000000000000000", TimeUnit::nanoseconds}, std::pair{"0", TimeUnit::milliseconds},
          std::pair{"-5", TimeUnit::seconds}, std::pair{"99999999999", TimeUnit::milliseconds}}) {
      CAPTURE(ts);
      CHECK(parse(line(ts), 1024, unit).batch.unit_mismatch.lines == 0);
    }
  }

  TEST_CASE("time units by name") {
    TimeUnit u = TimeUnit::milliseconds;
    for (const char* name : {"s", "ms", "us", "ns"}) {
      REQUIRE(parse_time_unit(name, u));
      CHECK(std::string(to_string(u)) == name);
    }
    CHECK_FALSE(parse_time_unit("sec", u));
    CHECK_FALSE(parse_time_unit("", u));
  }

  TEST_CASE("consecutive points of one series share one key, a change of series adds one") {
    const Parsed p = parse(R"({"series":"a","ts":1,"value":1,"tags":{"h":"1"}})"
                           "\n"
                           R"({"series":"a","ts":2,"value":1,"tags":{"h":"1"}})"
                           "\n"
                           R"({"series":"b","ts":3,"value":1,"tags":{"h":"1"}})"
                           "\n"
                           R"({"series":"a","ts":4,"value":1,"tags":{"h":"2"}})"
                           "\n"
                           R"({"series":"a","ts":5,"value":1, "tags": {"h":"2"} })");
    REQUIRE(p.batch.points.size() == 5);
    const auto& pts = p.batch.points;
    CHECK(pts[0].key_offset == pts[1].key_offset);
    CHECK(pts[1].key_offset != pts[2].key_offset);
    CHECK(p.batch.key(pts[0]) == "a\0h\0001"sv);
    CHECK(p.batch.key(pts[2]) == "b\0h\0001"sv);
    CHECK(p.batch.key(pts[3]) == "a\0h\0002"sv);
    CHECK(p.batch.key(pts[4]) == "a\0h\0002"sv);  // other whitespace: a new copy, the same key
    CHECK(pts[3].id == pts[4].id);
    for (const ParsedPoint& point : pts) CHECK(point.id == series_id(p.batch.key(point)));
  }

  TEST_CASE("the last-series cache carries across batches without stale offsets") {
    NdjsonParser parser;
    ParsedBatch first, second;
    const std::string line = R"({"series":"cpu","ts":1,"value":1,"tags":{"h":"x"}})";
    parser.parse("{\"series\":\"zzzzzz\",\"ts\":1,\"value\":1}\n" + line, first);
    REQUIRE(first.points.size() == 2);
    CHECK(first.points[1].key_offset > 0);
    parser.parse(line, second);
    REQUIRE(second.points.size() == 1);
    CHECK(second.points[0].key_offset == 0);
    CHECK(second.key(second.points[0]) == "cpu\0h\0x"sv);
    CHECK(second.points[0].id == first.points[1].id);
  }

  TEST_CASE("a cached series followed by the same series with a duplicate tag is still rejected") {
    const Parsed p = parse(R"({"series":"a","ts":1,"value":1,"tags":{"h":"1"}})"
                           "\n"
                           R"({"series":"a","ts":2,"value":1,"tags":{"h":"1","h":"1"}})");
    CHECK(p.batch.points.size() == 1);
    CHECK(p.batch.rejected == 1);
  }

  TEST_CASE("parse clears the batch it is given") {
    NdjsonParser parser;
    ParsedBatch batch;
    parser.parse("x\n{\"series\":\"m\",\"ts\":1,\"value\":1}", batch);
    CHECK(batch.rejected == 1);
    parser.parse("{\"series\":\"n\",\"ts\":2,\"value\":2}", batch);
    CHECK(batch.rejected == 0);
    CHECK(batch.errors.empty());
    REQUIRE(batch.points.size() == 1);
    CHECK(batch.key(batch.points[0]) == "n");
  }

  TEST_CASE("the batch's vectors and messages allocate through its memory resource") {
    CountingResource resource;
    {
      ParsedBatch batch(&resource);
      NdjsonParser parser;
      std::string body;
      for (int i = 0; i < 100; ++i)
        body += R"({"series":"s)" + std::to_string(i) +
                R"(","ts":1,"value":1})"
                "\n";
      body += "bad line\n";
      parser.parse(body, batch);
      CHECK(batch.points.size() == 100);
      CHECK(batch.errors.size() == 1);
      CHECK(batch.points.get_allocator().resource() == &resource);
      CHECK(batch.errors[0].message.get_allocator().resource() == &resource);
    }
    CHECK(resource.allocations > 0);
  }

  TEST_CASE("one parser, many bodies: results do not depend on the previous body") {
    NdjsonParser parser;
    ParsedBatch batch;
    for (int round = 0; round < 3; ++round) {
      std::string body;
      for (int i = 0; i < 50; ++i) {
        body += R"({"series":"m","ts":)" + std::to_string(i) + R"(,"value":)" + std::to_string(i * round) +
                R"(,"tags":{"r":")" + std::to_string(i % 3) + "\"}}\n";
      }
      parser.parse(body, batch);
      REQUIRE(batch.points.size() == 50);
      for (int i = 0; i < 50; ++i) {
        const ParsedPoint& point = batch.points[static_cast<std::size_t>(i)];
        CHECK(point.ts == i);
        CHECK(point.value == double(i * round));
        CHECK(batch.key(point) == "m\0r\0"s + std::to_string(i % 3));
        CHECK(point.id == series_id(batch.key(point)));
      }
    }
  }
}

}  // namespace
}  // namespace sydra::storage
