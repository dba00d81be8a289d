// Many-series queries through the real daemon (GET|POST /api/v1/query/select,
// docs/http-api.md): series chosen by Prometheus selectors over the tag index, from segments
// and the memtable, downsampled, aggregated across series by labels; malformed selectors and
// regexes answered 400 naming the position; the series and point limits answered 413 naming
// the limit; today's query/range shape unchanged.
#include <doctest/doctest.h>

#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "daemon_harness.hpp"

namespace sydra::itest {
namespace {

using nlohmann::json;

HttpResponse post(std::uint16_t port, std::string_view target, std::string_view body) {
  Connection c(port);
  return c.roundtrip(make_request("POST", target, {"Content-Type: application/json"}, body));
}

HttpResponse select_get(std::uint16_t port, std::string_view match, std::string_view rest) {
  std::string target = "/api/v1/query/select?match=";
  target += url_encode(match);
  target += '&';
  target += rest;
  return http_get(port, target);
}

// 8 hosts (h0..h7; even ones in dc eu, odd in us) × {cpu, mem}, 100 points each at ts
// 0..99 with value ts + host number (mem: + 1000).
std::string fleet(std::int64_t from, std::int64_t to) {
  std::string body;
  for (int h = 0; h < 8; ++h) {
    std::string host("h");  // not "h" + ...: operator+ on a temporary trips g++ 12's -Wrestrict
    host += std::to_string(h);
    for (const char* metric : {"cpu", "mem"}) {
      for (std::int64_t t = from; t < to; ++t) {
        json line = {{"series", metric},
                     {"ts", t},
                     {"value", static_cast<double>(t + h) + (metric[0] == 'm' ? 1000 : 0)},
                     {"tags", {{"host", host}, {"dc", h % 2 == 0 ? "eu" : "us"}}}};
        body += line.dump();
        body += '\n';
      }
    }
  }
  return body;
}

std::uint64_t flushes(std::uint16_t port) {
  for (const std::string& l : lines_of(http_get(port, "/metrics").body))
    if (l.rfind("sydradb_flush_total ", 0) == 0) return std::stoull(l.substr(20));
  return 0;
}

TEST_SUITE("integration") {
  TEST_CASE("select: many series by selector, raw and downsampled, aggregated by labels, GET and POST") {
    Daemon d(DaemonOptions().set({"flush_interval_ms=100"}));
    INFO("daemon stderr:\n", d.log());
    REQUIRE(post(d.port(), "/api/v1/ingest", fleet(0, 50)).status == 200);
    const auto deadline = Clock::now() + patience(10s);
    while (flushes(d.port()) == 0 && Clock::now() < deadline) std::this_thread::sleep_for(20ms);
    REQUIRE(flushes(d.port()) >= 1);  // the first half is in a segment
    REQUIRE(post(d.port(), "/api/v1/ingest", fleet(50, 100)).status == 200);

    // Raw points of the cpu series on h1 and h3 outside eu, from the segment and the memtable.
    HttpResponse r = select_get(d.port(), R"(cpu{host=~"h[13]", dc!="eu"})", "start=45&end=54");
    REQUIRE_MESSAGE(r.status == 200, r.body);
    json doc = r.json();
    REQUIRE(doc["series"].size() == 2);
    CHECK(doc["series"][0]["series"] == "cpu");
    CHECK(doc["series"][0]["tags"] == json{{"dc", "us"}, {"host", "h1"}});
    CHECK(doc["series"][1]["tags"]["host"] == "h3");
    REQUIRE(doc["series"][1]["points"].size() == 10);  // 45..49 from the segment, 50..54 from memory
    for (int i = 0; i < 10; ++i) {
      CHECK(doc["series"][1]["points"][i]["ts"] == 45 + i);
      CHECK(doc["series"][1]["points"][i]["value"] == 45.0 + i + 3);
    }
    CHECK(doc["series"][0]["id"].is_number_unsigned());

    // max by (dc) (max_over_time({__name__=~"cpu|mem"}[50])), POST with a JSON array for by.
    r = post(d.port(), "/api/v1/query/select",
             R"({"match":"{__name__=~\"cpu|mem\"}","start":"0","end":99,"step":50,"agg":"max",)"
             R"("across":"max","by":["__name__","dc"]})");
    REQUIRE_MESSAGE(r.status == 200, r.body);
    doc = r.json();
    REQUIRE(doc["groups"].size() == 4);
    CHECK(doc["groups"][0]["by"] == json{{"__name__", "cpu"}, {"dc", "eu"}});
    CHECK(doc["groups"][0]["series_count"] == 4);
    CHECK(doc["groups"][0]["points"] == json::parse(R"([{"ts":0,"value":55},{"ts":50,"value":105}])"));
    CHECK(doc["groups"][3]["by"] == json{{"__name__", "mem"}, {"dc", "us"}});
    CHECK(doc["groups"][3]["points"][1]["value"] == 99 + 7 + 1000);

    // count across every cpu series at each raw timestamp, GET with a comma list.
    r = select_get(d.port(), "cpu", "start=10&end=11&across=count&by=dc,host");
    REQUIRE_MESSAGE(r.status == 200, r.body);
    CHECK(r.json()["groups"].size() == 8);
    r = select_get(d.port(), "cpu", "start=10&end=11&across=sum");
    CHECK(r.json()["groups"][0]["points"][1] == json{{"ts", 11}, {"value", 8 * 11 + 28}});

    // Nothing selected, or nothing in the range.
    CHECK(select_get(d.port(), "nosuch", "start=0&end=99").json() == json{{"series", json::array()}});
    CHECK(select_get(d.port(), "cpu", "start=500&end=600").json() == json{{"series", json::array()}});

    // Today's single-series query is unchanged.
    r = post(d.port(), "/api/v1/query/range",
             R"({"series":"cpu","tags":{"host":"h2","dc":"eu"},"start":49,"end":50})");
    CHECK(r.json() == json::parse(R"([{"ts":49,"value":51},{"ts":50,"value":52}])"));
  }

  TEST_CASE("select: a malformed selector or regex is 400 naming the position, limits are 413 naming them") {
    Daemon d(DaemonOptions().set({"max_query_series=10", "max_query_points=500"}));
    INFO("daemon stderr:\n", d.log());
    REQUIRE(post(d.port(), "/api/v1/ingest", fleet(0, 100)).status == 200);

    auto error_of = [&](const HttpResponse& r) {
      INFO(r.body);
      CHECK(r.status == 400);
      return r.json()["error"].get<std::string>();
    };
    CHECK(error_of(select_get(d.port(), R"(cpu{host~"h1"})", "start=0&end=1")) ==
          "selector: position 9: expected '=', '!=', '=~' or '!~' after the label name 'host', got '~'");
    CHECK(error_of(select_get(d.port(), R"(cpu{host=~"h1("})", "start=0&end=1")) ==
          "selector: position 11: invalid regular expression: missing ): h1(");
    CHECK(error_of(
              post(d.port(), "/api/v1/query/select", R"({"match":"cpu{a=\"x\" b=\"y\"}","start":0,"end":1})"))
              .rfind("selector: position 11: expected ',' or '}'", 0) == 0);
    for (const char* target : {"/api/v1/query/select?start=0&end=1", "/api/v1/query/select?match=cpu&end=1",
                               "/api/v1/query/select?match=cpu&start=2&end=1",
                               "/api/v1/query/select?match=cpu&start=0&end=1&step=0",
                               "/api/v1/query/select?match=cpu&start=0&end=1&agg=max",
                               "/api/v1/query/select?match=cpu&start=0&end=1&across=last",
                               "/api/v1/query/select?match=cpu&start=0&end=1&by=host",
                               "/api/v1/query/select?match=cpu&start=0&end=1&across=sum&by=host,,dc",
                               "/api/v1/query/select?match=%7B%7D&start=0&end=1"}) {
      const HttpResponse r = http_get(d.port(), target);
      CHECK_MESSAGE(r.status == 400, target << " → " << r.status << " " << r.body);
      CHECK_MESSAGE(r.json()["error"].is_string(), target);
    }
    for (const char* body :
         {"", "[]", R"({"match":7,"start":0,"end":1})", R"({"match":"cpu","start":0.5,"end":1})",
          R"({"match":"cpu","start":0,"end":1,"across":"sum","by":[1]})"}) {
      const HttpResponse r = post(d.port(), "/api/v1/query/select", body);
      CHECK_MESSAGE(r.status == 400, body << " → " << r.status << " " << r.body);
    }

    // 16 series > max_query_series=10: refused before any point is read.
    HttpResponse r = select_get(d.port(), R"({host=~"h.*"})", "start=0&end=99");
    CHECK(r.status == 413);
    CHECK(r.json()["error"] ==
          "the selector matches 16 series, more than max_query_series=10; narrow it with more matchers");
    // 8 series × 100 points > max_query_points=500; downsampled, 8 × 10 fits.
    r = select_get(d.port(), "cpu", "start=0&end=99");
    CHECK(r.status == 413);
    CHECK(r.json()["error"].get<std::string>().find("max_query_points=500") != std::string::npos);
    r = select_get(d.port(), "cpu", "start=0&end=99&step=10&agg=min");
    CHECK(r.status == 200);
    CHECK(r.json()["series"].size() == 8);
  }
}

}  // namespace
}  // namespace sydra::itest
