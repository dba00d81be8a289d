// Tests cli/query_command.hpp (times, steps, arguments to the request body, the answer to a
// table, CSV and JSON) and run_query (cli/commands.hpp) against a canned server.
#include "cli/query_command.hpp"

#include <doctest/doctest.h>

#include <cmath>
#include <iostream>
#include <limits>
#include <sstream>
#include <stdexcept>
#include <string>

#include <nlohmann/json.hpp>

#include "canned_server.hpp"
#include "cli/commands.hpp"
#include "cli_test_support.hpp"

namespace sydra::cli {
namespace {

using nlohmann::json;
using test::CannedServer;
using test::CapturedOutput;
using test::ScopedEnv;

constexpr std::int64_t kNow = 1'700'000'000'000;

QueryOptions options_for(std::string series, std::string start, std::string end) {
  QueryOptions o;
  o.series = std::move(series);
  o.start = std::move(start);
  o.end = std::move(end);
  return o;
}

TEST_SUITE("unit") {
  TEST_CASE("times: milliseconds, now, now minus or plus a duration") {
    CHECK(parse_query_time("1700000000123", kNow) == 1700000000123);
    CHECK(parse_query_time("-5", kNow) == -5);
    CHECK(parse_query_time("now", kNow) == kNow);
    CHECK(parse_query_time("now-1h", kNow) == kNow - 3'600'000);
    CHECK(parse_query_time("now-90s", kNow) == kNow - 90'000);
    CHECK(parse_query_time("now+2d", kNow) == kNow + 2 * 86'400'000);
    CHECK(parse_query_time("now-15m", kNow) == kNow - 900'000);
    CHECK(parse_query_time("now-250ms", kNow) == kNow - 250);
    CHECK(parse_query_time("now-250", kNow) == kNow - 250);
    for (const char* bad : {"", "1.5", "12x", "yesterday", "now-", "now-1y", "now*2", "now--1h", "nowish",
                            "99999999999999999999", "now+9223372036854775807"}) {
      CAPTURE(bad);
      CHECK_THROWS_AS(parse_query_time(bad, kNow), std::invalid_argument);
    }
  }

  TEST_CASE("steps: positive milliseconds or a duration") {
    CHECK(parse_query_step("60000") == 60'000);
    CHECK(parse_query_step("1m") == 60'000);
    CHECK(parse_query_step("10s") == 10'000);
    CHECK(parse_query_step("500ms") == 500);
    for (const char* bad : {"", "0", "0s", "-1", "1w", "abc"}) {
      CAPTURE(bad);
      CHECK_THROWS_AS(parse_query_step(bad), std::invalid_argument);
    }
  }

  TEST_CASE("arguments become the range request body") {
    QueryOptions o = options_for("cpu.load", "now-1h", "now");
    o.tags = {"host=h17", "dc=eu", "empty="};
    json body = json::parse(make_range_request(o, kNow));
    CHECK(body["series"] == "cpu.load");
    CHECK(body["tags"] == json{{"host", "h17"}, {"dc", "eu"}, {"empty", ""}});
    CHECK(body["start"] == kNow - 3'600'000);
    CHECK(body["end"] == kNow);
    CHECK_FALSE(body.contains("step"));
    CHECK_FALSE(body.contains("agg"));

    o.step = "1m";
    o.agg = "max";
    body = json::parse(make_range_request(o, kNow));
    CHECK(body["step"] == 60'000);
    CHECK(body["agg"] == "max");

    o.agg.clear();  // a step alone: the daemon's default aggregation
    body = json::parse(make_range_request(o, kNow));
    CHECK(body["step"] == 60'000);
    CHECK_FALSE(body.contains("agg"));

    // A value may hold '='; only the first one splits.
    o = options_for("m", "0", "1");
    o.tags = {"expr=a=b"};
    CHECK(json::parse(make_range_request(o, kNow))["tags"]["expr"] == "a=b");
    // No tags: an empty object.
    CHECK(json::parse(make_range_request(options_for("m", "0", "1"), kNow))["tags"] == json::object());
  }

  TEST_CASE("bad arguments are refused with a message") {
    const auto refused = [](QueryOptions o, const std::string& needle) {
      try {
        (void)make_range_request(o, kNow);
      } catch (const std::invalid_argument& e) {
        CHECK(std::string(e.what()).find(needle) != std::string::npos);
        return true;
      }
      return false;
    };
    CHECK(refused(options_for("", "0", "1"), "series"));
    CHECK(refused(options_for("m", "5", "1"), "after END"));
    CHECK(refused(options_for("m", "x", "1"), "bad time 'x'"));
    QueryOptions o = options_for("m", "0", "1");
    o.tags = {"novalue"};
    CHECK(refused(o, "KEY=VALUE"));
    o.tags = {"=v"};
    CHECK(refused(o, "empty key"));
    o.tags = {"k=1", "k=2"};
    CHECK(refused(o, "twice"));
    o = options_for("m", "0", "1");
    o.agg = "avg";
    CHECK(refused(o, "--agg needs --step"));
    o.step = "1s";
    o.agg = "median";
    CHECK(refused(o, "unknown --agg 'median'"));
  }

  TEST_CASE("the answer is read, anything else is an error") {
    const auto points =
        parse_range_answer(R"([{"ts":1,"value":0.5},{"ts":2,"value":3},{"ts":3,"value":null}])");
    REQUIRE(points.size() == 3);
    CHECK(points[0].ts == 1);
    CHECK(points[0].value == 0.5);
    CHECK(points[1].value == 3.0);
    CHECK(std::isnan(points[2].value));
    CHECK(parse_range_answer("[]").empty());
    for (const char* bad : {"", "{}", "[1]", R"([{"ts":1}])", R"([{"ts":"1","value":1}])",
                            R"([{"ts":1.5,"value":1}])", R"([{"ts":1,"value":"x"}])"}) {
      CAPTURE(bad);
      CHECK_THROWS_AS(parse_range_answer(bad), std::runtime_error);
    }
  }

  TEST_CASE("UTC times with milliseconds, before the epoch too") {
    CHECK(format_utc_millis(0) == "1970-01-01T00:00:00.000Z");
    CHECK(format_utc_millis(1700000000123) == "2023-11-14T22:13:20.123Z");
    CHECK(format_utc_millis(-1) == "1969-12-31T23:59:59.999Z");
  }

  TEST_CASE("points as a table, CSV and JSON") {
    const std::vector<QueryPoint> points = {{1700000000000, 0.75},
                                            {1700000060000, 1e-7},
                                            {1700000120000, std::numeric_limits<double>::quiet_NaN()}};
    CHECK(format_points(points, QueryFormat::table) ==
          "ts             time (UTC)                value\n"
          "1700000000000  2023-11-14T22:13:20.000Z  0.75\n"
          "1700000060000  2023-11-14T22:14:20.000Z  1e-07\n"
          "1700000120000  2023-11-14T22:15:20.000Z  NaN\n"
          "(3 points)\n");
    CHECK(format_points(points, QueryFormat::csv) ==
          "ts,value\n"
          "1700000000000,0.75\n"
          "1700000060000,1e-07\n"
          "1700000120000,\n");
    CHECK(json::parse(format_points(points, QueryFormat::json)) ==
          json::parse(R"([{"ts":1700000000000,"value":0.75},{"ts":1700000060000,"value":1e-7},)"
                      R"({"ts":1700000120000,"value":null}])"));
    CHECK(format_points({}, QueryFormat::table) == "ts  time (UTC)                value\n(0 points)\n");
    CHECK(format_points({}, QueryFormat::csv) == "ts,value\n");
    CHECK(format_points({}, QueryFormat::json) == "[]\n");
    // Shortest exact form: 0.1 stays 0.1, a large integer-valued double prints exactly.
    CHECK(format_points({{1, 0.1}, {2, 123456789.0}}, QueryFormat::csv) == "ts,value\n1,0.1\n2,123456789\n");
  }

  TEST_CASE("run_query posts the request and prints the points, HTTP errors exit 4") {
    {
      CannedServer server(CannedServer::response(200, R"([{"ts":5,"value":2.5}])"));
      QueryOptions o = options_for("cpu", "0", "10");
      o.url = server.url();
      o.format = QueryFormat::csv;
      CapturedOutput output;
      CHECK(run_query(o) == kExitOk);
      CHECK(output.out() == "ts,value\n5,2.5\n");
      CHECK(server.last_request().rfind("POST /api/v1/query/range HTTP/1.1", 0) == 0);
    }
    {
      CannedServer server(CannedServer::response(400, R"({"error":"unknown 'agg'"})"));
      QueryOptions o = options_for("cpu", "0", "10");
      o.url = server.url();
      CapturedOutput output;
      CHECK(run_query(o) == kExitHttpError);
      CHECK(output.err().find("HTTP 400: unknown 'agg'") != std::string::npos);
      CHECK(output.out().empty());
    }
    {
      QueryOptions o = options_for("cpu", "10", "0");
      CapturedOutput output;
      CHECK(run_query(o) == kExitUsage);  // refused before any connection
      CHECK(output.err() == "sydradb query: START (10) is after END (0)\n");
    }
  }

  TEST_CASE("run_query: no point and no such series: says so, exit 6") {
    // The canned "[]" answers both the range query and the series list: nothing is named cpu.
    CannedServer server(CannedServer::response(200, "[]"));
    QueryOptions o = options_for("cpu", "0", "10");
    o.url = server.url();
    o.tags = {"host=a"};
    CapturedOutput output;
    CHECK(run_query(o) == kExitNoSeries);
    CHECK(output.out() == "ts  time (UTC)                value\n(0 points)\n");
    CHECK(output.err() ==
          "sydradb query: no series is named 'cpu' (sydradb series lists the names there are)\n");
    CHECK(server.last_request().rfind("GET /api/v1/series?series=cpu HTTP/1.1", 0) == 0);
  }
}

}  // namespace
}  // namespace sydra::cli
