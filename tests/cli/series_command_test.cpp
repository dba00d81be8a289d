// Tests cli/series_command.hpp (--tag flags, the GET /api/v1/series request, its answer and
// how series print) and run_series (cli/commands.hpp) against a canned server.
#include "cli/series_command.hpp"

#include <doctest/doctest.h>

#include <stdexcept>
#include <string>

#include "canned_server.hpp"
#include "cli_test_support.hpp"

namespace sydra::cli {
namespace {

using test::CannedServer;
using test::CapturedOutput;

constexpr const char* kAnswer =
    R"([{"id":1,"series":"cpu","tags":{"dc":"eu","host":"a"}},{"id":18446744073709551615,"series":"mem","tags":{}}])";

TEST_SUITE("unit") {
  TEST_CASE("--tag flags: KEY=VALUE, the value may hold '=', bad ones are refused") {
    CHECK(parse_tag_flags({"host=a", "expr=x=y", "empty="}) ==
          Tags{{"host", "a"}, {"expr", "x=y"}, {"empty", ""}});
    CHECK_THROWS_WITH_AS(parse_tag_flags({"host"}), "--tag expects KEY=VALUE, got 'host'",
                         std::invalid_argument);
    CHECK_THROWS_WITH_AS(parse_tag_flags({"=a"}), "--tag '=a' has an empty key", std::invalid_argument);
    CHECK_THROWS_WITH_AS(parse_tag_flags({"h=1", "h=2"}), "--tag 'h' is given twice", std::invalid_argument);
  }

  TEST_CASE("the request: filters as URL-encoded parameters") {
    CHECK(series_request_path("", {}) == "/api/v1/series");
    CHECK(series_request_path("cpu.load", {}) == "/api/v1/series?series=cpu.load");
    CHECK(series_request_path("a b&c", {{"host", "x y"}}) ==
          "/api/v1/series?series=a%20b%26c&tags=%7B%22host%22%3A%22x%20y%22%7D");
    CHECK(series_request_path("", {{"k", "v"}}) == "/api/v1/series?tags=%7B%22k%22%3A%22v%22%7D");
  }

  TEST_CASE("the answer: read, and printed as a table or JSON") {
    const std::vector<SeriesEntry> entries = parse_series_answer(kAnswer);
    REQUIRE(entries.size() == 2);
    CHECK(entries[0].name == "cpu");
    CHECK(entries[0].tags == Tags{{"dc", "eu"}, {"host", "a"}});
    CHECK(entries[1].id == 18446744073709551615ULL);
    CHECK(format_series(entries, SeriesFormat::table) ==
          "series  tags\n"
          "cpu     {dc=eu, host=a}\n"
          "mem     {}\n"
          "(2 series)\n");
    CHECK(format_series(entries, SeriesFormat::json) == std::string(kAnswer) + "\n");
    CHECK(format_series({}, SeriesFormat::table) == "series  tags\n(0 series)\n");
    for (const char* bad :
         {"{}", "[1]", R"([{"id":1,"series":"a"}])", R"([{"id":-1,"series":"a","tags":{}}])",
          R"([{"id":1,"series":"a","tags":{"k":1}}])", "not json"}) {
      CAPTURE(bad);
      CHECK_THROWS_AS(parse_series_answer(bad), std::runtime_error);
    }
  }

  TEST_CASE("same_tags: the same set, in any order") {
    const SeriesEntry e{1, "cpu", {{"dc", "eu"}, {"host", "a"}}};
    CHECK(same_tags(e, {{"host", "a"}, {"dc", "eu"}}));
    CHECK_FALSE(same_tags(e, {{"host", "a"}}));
    CHECK_FALSE(same_tags(e, {{"host", "a"}, {"dc", "us"}}));
    CHECK(same_tags(SeriesEntry{}, {}));
  }

  TEST_CASE("run_series: the filtered request, the table, errors in the one format") {
    {
      CannedServer server(CannedServer::response(200, kAnswer));
      SeriesOptions options;
      options.url = server.url();
      options.name = "cpu";
      options.tags = {"host=a"};
      CapturedOutput output;
      CHECK(run_series(options) == kExitOk);
      CHECK(server.last_request().rfind(
                "GET /api/v1/series?series=cpu&tags=%7B%22host%22%3A%22a%22%7D HTTP/1.1", 0) == 0);
      CHECK(output.out().find("(2 series)") != std::string::npos);
    }
    {
      CannedServer server(CannedServer::response(401, R"({"error":"missing or invalid bearer token"})"));
      SeriesOptions options;
      options.url = server.url();
      options.token = "t";
      CapturedOutput output;
      CHECK(run_series(options) == kExitHttpError);
      CHECK(output.err() == "sydradb series: " + server.url() +
                                ": HTTP 401: missing or invalid bearer token (the daemon refused the token "
                                "given: check --token or SYDRADB_TOKEN)\n");
    }
    SeriesOptions options;
    options.url = "h:1";
    options.tags = {"novalue"};
    CapturedOutput output;
    CHECK(run_series(options) == kExitUsage);
    CHECK(output.err() == "sydradb series: --tag expects KEY=VALUE, got 'novalue'\n");
  }
}

}  // namespace
}  // namespace sydra::cli
