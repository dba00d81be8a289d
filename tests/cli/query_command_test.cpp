// Tests cli/query_command.hpp (times, steps, arguments to the range and select request
// bodies, selectors checked before sending, the answers to a table, CSV and JSON) and
// run_query (cli/commands.hpp) against a canned server.
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

  TEST_CASE("a selector, or --across / --by, makes a select request") {
    QueryOptions o = options_for(R"(cpu_usage{host=~"h1.*",dc!="x"})", "now-1h", "now");
    CHECK(is_select_query(o));
    json body = json::parse(make_select_request(o, kNow));
    CHECK(body ==
          json{{"match", R"(cpu_usage{host=~"h1.*",dc!="x"})"}, {"start", kNow - 3'600'000}, {"end", kNow}});

    // A plain name with --by: every series of that name, grouped; the --agg combines them.
    o = options_for("cpu.load", "0", "10");
    o.step = "1s";
    o.agg = "max";
    o.by = {"host,dc", "rack"};
    CHECK(is_select_query(o));
    body = json::parse(make_select_request(o, kNow));
    CHECK(body["match"] == "cpu.load");
    CHECK(body["step"] == 1000);
    CHECK(body["agg"] == "max");
    CHECK(body["across"] == "max");
    CHECK(body["by"] == json{"host", "dc", "rack"});

    // --across given: it wins over the --agg; --tags become equality matchers.
    o = options_for("cpu", "0", "10");
    o.tags = {"dc=e\"u"};
    o.across = "count";
    body = json::parse(make_select_request(o, kNow));
    CHECK(body["match"] == R"(cpu{dc="e\"u"})");
    CHECK(body["across"] == "count");
    CHECK_FALSE(body.contains("by"));

    CHECK_FALSE(is_select_query(options_for("cpu.load", "0", "1")));
  }

  TEST_CASE("select arguments that cannot work are refused, a bad selector naming the position") {
    const auto refused = [](QueryOptions o) {
      try {
        (void)make_select_request(o, kNow);
      } catch (const std::invalid_argument& e) {
        return std::string(e.what());
      }
      return std::string("(accepted)");
    };
    CHECK(refused(options_for(R"(cpu{host~"h1"})", "0", "1")) ==
          "selector: position 9: expected '=', '!=', '=~' or '!~' after the label name 'host', got '~'");
    CHECK(
        refused(options_for(R"(cpu{host=~"("})", "0", "1")).find("position 11: invalid regular expression") !=
        std::string::npos);
    QueryOptions o = options_for(R"(cpu{dc="eu"})", "0", "1");
    o.tags = {"host=h1"};
    CHECK(refused(o).find("--tag cannot be combined with a selector") != std::string::npos);
    o = options_for("cpu", "0", "1");
    o.by = {"host"};
    CHECK(refused(o).find("--by needs --across") != std::string::npos);
    o.step = "1s";
    o.agg = "last";  // not a way to combine series
    CHECK(refused(o).find("--by needs --across") != std::string::npos);
    o.across = "median";
    CHECK(refused(o).find("unknown --across 'median'") != std::string::npos);
    o.across = "sum";
    o.by = {"host,"};
    CHECK(refused(o).find("empty label") != std::string::npos);
    CHECK(refused(options_for("{}", "0", "1")).find("a selector needs") != std::string::npos);
    CHECK(refused(options_for("cpu{", "5", "1")).find("position 5") != std::string::npos);
    CHECK(refused(options_for("cpu{}", "5", "1")).find("after END") != std::string::npos);
  }

  TEST_CASE("select answers: series and groups, as a table and CSV") {
    const auto series = parse_select_answer(
        R"({"series":[{"id":1,"series":"cpu","tags":{"dc":"eu","host":"h,1"},"points":[{"ts":1000,"value":0.5},)"
        R"({"ts":2000,"value":null}]},{"id":2,"series":"odd name","tags":{},"points":[{"ts":1000,"value":2}]}]})");
    REQUIRE(series.size() == 2);
    CHECK(series[0].label == R"(cpu{dc="eu",host="h,1"})");
    CHECK(series[1].label == R"({"odd name"})");
    CHECK(std::isnan(series[0].points[1].value));
    CHECK(format_series(series, QueryFormat::csv) ==
          "series,ts,value\n"
          R"("cpu{dc=""eu"",host=""h,1""}",1000,0.5)"
          "\n"
          R"("cpu{dc=""eu"",host=""h,1""}",2000,)"
          "\n"
          R"("{""odd name""}",1000,2)"
          "\n");
    CHECK(format_series(series, QueryFormat::table) ==
          "cpu{dc=\"eu\",host=\"h,1\"}\n"
          "ts    time (UTC)                value\n"
          "1000  1970-01-01T00:00:01.000Z  0.5\n"
          "2000  1970-01-01T00:00:02.000Z  NaN\n"
          "\n"
          "{\"odd name\"}\n"
          "ts    time (UTC)                value\n"
          "1000  1970-01-01T00:00:01.000Z  2\n"
          "\n"
          "(2 series, 3 points)\n");

    const auto groups = parse_select_answer(
        R"({"groups":[{"by":{"dc":"eu"},"series_count":125,"points":[{"ts":0,"value":99.5}]}]})");
    REQUIRE(groups.size() == 1);
    CHECK(groups[0].label == R"({dc="eu"})");
    CHECK(groups[0].series_count == 125);
    CHECK(format_series(groups, QueryFormat::table) ==
          "{dc=\"eu\"}  (125 series)\n"
          "ts  time (UTC)                value\n"
          "0   1970-01-01T00:00:00.000Z  99.5\n"
          "\n"
          "(1 group, 1 point)\n");
    CHECK(parse_select_answer(R"({"series":[]})").empty());
    for (const char* bad :
         {"", "[]", "{}", R"({"series":[{"series":"a"}]})", R"({"series":[1]})",
          R"({"series":[{"series":"a","tags":[],"points":[]}]})", R"({"groups":[{"by":{},"points":[]}]})",
          R"({"series":[{"series":"a","points":[{"ts":1}]}]})"}) {
      CAPTURE(bad);
      CHECK_THROWS_AS(parse_select_answer(bad), std::runtime_error);
    }
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
    {
      const std::string answer =
          R"({"series":[{"id":1,"series":"cpu","tags":{},"points":[{"ts":5,"value":2.5}]}]})";
      CannedServer server(CannedServer::response(200, answer));
      QueryOptions o = options_for(R"(cpu{host=~".+"})", "0", "10");
      o.url = server.url();
      o.format = QueryFormat::json;
      CapturedOutput output;
      CHECK(run_query(o) == kExitOk);
      CHECK(json::parse(output.out()) == json::parse(answer));
      CHECK(server.last_request().rfind("POST /api/v1/query/select HTTP/1.1", 0) == 0);
    }
    {
      CannedServer server(CannedServer::response(200, R"([{"ts":5,"value":2.5}])"));  // not a select answer
      QueryOptions o = options_for("cpu{}", "0", "10");
      o.url = server.url();
      CapturedOutput output;
      CHECK(run_query(o) == kExitHttpError);
      CHECK(output.err().find("unexpected answer") != std::string::npos);
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
