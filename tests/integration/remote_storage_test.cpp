// Prometheus' remote storage endpoints through the real daemon (POST /api/v1/write and
// /api/v1/read, docs/http-api.md), with bodies built by the protocol's own messages: what
// remote_write stores is the NDJSON series of the same name and tags, a stale marker comes
// back bit-exact after a flush to a segment, a request that can never succeed is a 4xx that
// stores nothing of itself, auth and body limits apply, remote_read answers several queries
// with the four matcher kinds, and /metrics counts samples and refusals by reason. The real
// Prometheus talks to the daemon in prometheus_test.cpp.
#include <doctest/doctest.h>

#include <bit>
#include <cstdint>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "daemon_harness.hpp"
#include "server/prom/remote.hpp"

namespace sydra::itest {
namespace {

using nlohmann::json;
using prom::MatchType;

constexpr std::uint64_t kStaleMarker = 0x7ff0000000000002;

const std::vector<std::string> kRemoteHeaders = {"Content-Type: application/x-protobuf",
                                                 "Content-Encoding: snappy",
                                                 "X-Prometheus-Remote-Write-Version: 0.1.0"};

HttpResponse post(std::uint16_t port, std::string_view path, std::string_view body,
                  std::vector<std::string> headers = kRemoteHeaders) {
  Connection c(port);
  return c.roundtrip(make_request("POST", path, headers, body));
}

HttpResponse write(std::uint16_t port, const std::vector<prom::Series>& series) {
  return post(port, "/api/v1/write", prom::encode_write_request(series));
}

std::vector<std::vector<prom::Series>> read(std::uint16_t port, const std::vector<prom::WireQuery>& queries) {
  const HttpResponse r = post(port, "/api/v1/read", prom::encode_read_request(queries));
  REQUIRE_MESSAGE(r.status == 200, r.body);
  CHECK(r.header("Content-Type") == "application/x-protobuf");
  CHECK(r.header("Content-Encoding") == "snappy");
  std::vector<std::vector<prom::Series>> out;
  REQUIRE(prom::decode_read_response(r.body, out));
  return out;
}

std::uint64_t series_count(std::uint16_t port) {
  return http_get(port, "/api/v1/series").json().size();
}

// The value of one sample line of /metrics ("name{labels} value"), -1 when absent.
double metric(std::uint16_t port, std::string_view sample) {
  for (const std::string& line : lines_of(http_get(port, "/metrics").body))
    if (line.size() > sample.size() && line.compare(0, sample.size(), sample) == 0 &&
        line[sample.size()] == ' ')
      return std::stod(line.substr(sample.size() + 1));
  return -1;
}

TEST_CASE("remote_write: 204, and the series is the NDJSON series of the same name and tags") {
  Daemon d;
  INFO("daemon stderr:\n", d.log());
  CHECK(post(d.port(), "/api/v1/ingest",
             R"({"series":"cpu","tags":{"host":"h1","dc":"eu"},"ts":1000,"value":1})",
             {"Content-Type: application/x-ndjson"})
            .status == 200);
  const HttpResponse r =
      write(d.port(), {{{{"__name__", "cpu"}, {"dc", "eu"}, {"host", "h1"}}, {{2, 2000}, {3, 3000}}},
                       {{{"__name__", "up"}, {"job", "node"}}, {{1, 2000}}}});
  CHECK(r.status == 204);
  CHECK(r.body.empty());
  CHECK_FALSE(r.has_header("Content-Type"));
  const json series = http_get(d.port(), "/api/v1/series?series=cpu").json();
  REQUIRE(series.size() == 1);  // one series, not two
  const json points =
      http_get(d.port(),
               "/api/v1/query/range?series=cpu&tags=%7B%22host%22%3A%22h1%22%2C%22dc%22%3A%22eu%22%7D"
               "&start=0&end=9999")
          .json();
  CHECK(points ==
        json::parse(R"([{"ts":1000,"value":1.0},{"ts":2000,"value":2.0},{"ts":3000,"value":3.0}])"));
  CHECK(series_count(d.port()) == 2);
  CHECK(metric(d.port(), "sydradb_remote_write_samples_total") == 3);
  CHECK(metric(d.port(), "sydradb_remote_write_series_total") == 2);
}

TEST_CASE("remote_write: a stale marker is stored bit-exact and read back so, from a flushed segment") {
  Daemon d(DaemonOptions().set({"flush_interval_ms=100"}));
  INFO("daemon stderr:\n", d.log());
  const double stale = std::bit_cast<double>(kStaleMarker);
  REQUIRE(write(d.port(), {{{{"__name__", "m"}}, {{1.5, 1000}, {stale, 2000}, {-0.0, 3000}}}}).status == 204);
  const auto deadline = Clock::now() + patience(10s);
  while (http_get(d.port(), "/status").json()["storage"]["segments"].get<int>() == 0 &&
         Clock::now() < deadline)
    std::this_thread::sleep_for(20ms);
  REQUIRE(http_get(d.port(), "/status").json()["storage"]["segments"].get<int>() > 0);
  const auto results = read(d.port(), {{0, 5000, {{MatchType::eq, "__name__", "m"}}}});
  REQUIRE(results.size() == 1);
  REQUIRE(results[0].size() == 1);
  const auto& samples = results[0][0].samples;
  REQUIRE(samples.size() == 3);
  CHECK(samples[0].value == 1.5);
  CHECK(std::bit_cast<std::uint64_t>(samples[1].value) == kStaleMarker);
  CHECK(std::bit_cast<std::uint64_t>(samples[2].value) == std::bit_cast<std::uint64_t>(-0.0));
}

TEST_CASE("remote_write: what can never succeed is a 4xx with a JSON error, storing nothing of the request") {
  Daemon d(DaemonOptions().set({"max_body_bytes=4096"}));
  INFO("daemon stderr:\n", d.log());
  REQUIRE(write(d.port(), {{{{"__name__", "kept"}}, {{1, 1000}}}}).status == 204);
  struct Case {
    std::string what;
    std::string body;
    std::vector<std::string> headers;
    int status;
    const char* reason;
  };
  const std::vector<prom::Series> good_then_bad = {{{{"__name__", "half"}}, {{1, 1000}}},
                                                   {{{"job", "no_name"}}, {{1, 1000}}}};
  const std::vector<prom::Series> unsorted = {{{{"__name__", "u"}, {"b", "1"}, {"a", "1"}}, {{1, 1000}}}};
  const std::vector<prom::Series> twice = {{{{"__name__", "t"}, {"a", "1"}, {"a", "2"}}, {{1, 1000}}}};
  const std::vector<prom::Series> huge = {
      {{{"__name__", "big"}, {"v", std::string(6000, 'a')}}, {{1, 1000}}}};
  const std::vector<Case> cases = {
      {"not snappy", std::string("\x03") + "abc", kRemoteHeaders, 400, "snappy"},  // a copy, no literal
      {"not protobuf", std::string("\x04\x0c\xff\xff\xff\xff", 6), kRemoteHeaders, 400, "protobuf"},
      {"a series without __name__ after a good one", prom::encode_write_request(good_then_bad),
       kRemoteHeaders, 400, "labels"},
      {"unsorted labels", prom::encode_write_request(unsorted), kRemoteHeaders, 400, "labels"},
      {"a label twice", prom::encode_write_request(twice), kRemoteHeaders, 400, "labels"},
      {"decompressed over max_body_bytes", prom::encode_write_request(huge), kRemoteHeaders, 413,
       "too_large"},
      {"gzip",
       prom::encode_write_request(twice),
       {"Content-Type: application/x-protobuf", "Content-Encoding: gzip"},
       415,
       "media_type"},
      {"remote_write 2.0",
       prom::encode_write_request(twice),
       {"Content-Type: application/x-protobuf;proto=io.prometheus.write.v2.Request",
        "Content-Encoding: snappy"},
       415,
       "media_type"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.what);
    REQUIRE(c.body.size() < 4096);
    const HttpResponse r = post(d.port(), "/api/v1/write", c.body, c.headers);
    CHECK(r.status == c.status);
    CHECK(r.header("Content-Type") == "application/json");
    CHECK(r.json().contains("error"));
  }
  CHECK(series_count(d.port()) == 1);  // only "kept": "half" was not stored
  std::map<std::string, int> refused;
  for (const Case& c : cases) ++refused[c.reason];
  for (const auto& [reason, count] : refused) {
    CAPTURE(reason);
    CHECK(metric(d.port(), "sydradb_remote_write_rejected_total{reason=\"" + reason + "\"}") == count);
  }
  CHECK(metric(d.port(), "sydradb_remote_write_samples_total") == 1);
}

TEST_CASE("remote_write and remote_read need the bearer token like the rest of /api/") {
  Daemon d(DaemonOptions().env({"SYDRADB_TOKEN=s3cret"}));
  INFO("daemon stderr:\n", d.log());
  const std::vector<prom::Series> s = {{{{"__name__", "m"}}, {{1, 1000}}}};
  CHECK(write(d.port(), s).status == 401);
  std::vector<std::string> headers = kRemoteHeaders;
  headers.emplace_back("Authorization: Bearer s3cret");
  CHECK(post(d.port(), "/api/v1/write", prom::encode_write_request(s), headers).status == 204);
  const std::vector<prom::WireQuery> q = {{0, 5000, {{MatchType::eq, "__name__", "m"}}}};
  CHECK(post(d.port(), "/api/v1/read", prom::encode_read_request(q)).status == 401);
  CHECK(post(d.port(), "/api/v1/read", prom::encode_read_request(q), headers).status == 200);
}

TEST_CASE("remote_read: several queries, = != =~ !~ with Prometheus semantics, inclusive ranges") {
  Daemon d;
  INFO("daemon stderr:\n", d.log());
  std::vector<prom::Series> fleet;
  for (const char* host : {"h1", "h12", "h2", "xh1"})
    for (const char* dc : {"x", "y"})
      fleet.push_back(
          {{{"__name__", "cpu_usage"}, {"dc", dc}, {"host", host}}, {{1, 1000}, {2, 2000}, {3, 3000}}});
  fleet.push_back({{{"__name__", "cpu_usage"}, {"host", "h1"}}, {{9, 1000}}});  // no dc
  REQUIRE(write(d.port(), fleet).status == 204);

  const auto results = read(
      d.port(), {{1000,
                  2000,
                  {{MatchType::eq, "__name__", "cpu_usage"},
                   {MatchType::re, "host", "h1.*"},
                   {MatchType::neq, "dc", "x"}}},
                 {3000, 3000, {{MatchType::eq, "__name__", "cpu_usage"}, {MatchType::nre, "host", "h.*"}}},
                 {0, 999, {{MatchType::eq, "__name__", "cpu_usage"}}},
                 {0, 9999, {{MatchType::eq, "__name__", "cpu_usage"}, {MatchType::eq, "dc", ""}}}});
  REQUIRE(results.size() == 4);
  // host=~"h1.*" is anchored (not xh1); dc!="x" keeps the series without dc.
  REQUIRE(results[0].size() == 3);
  using Labels = std::vector<std::pair<std::string, std::string>>;
  // In canonical key order: name, then the tags in key order ("dc" < "host").
  CHECK(results[0][0].labels == Labels{{"__name__", "cpu_usage"}, {"dc", "y"}, {"host", "h1"}});
  CHECK(results[0][1].labels == Labels{{"__name__", "cpu_usage"}, {"dc", "y"}, {"host", "h12"}});
  CHECK(results[0][2].labels == Labels{{"__name__", "cpu_usage"}, {"host", "h1"}});
  CHECK(results[0][0].samples.size() == 2);  // 1000 and 2000, both ends included
  CHECK(results[0][2].samples.size() == 1);
  REQUIRE(results[1].size() == 2);  // xh1 in x and y
  CHECK(results[1][0].samples.size() == 1);
  CHECK(results[1][0].samples[0].ts == 3000);
  CHECK(results[2].empty());
  REQUIRE(results[3].size() == 1);  // dc="" = no dc label
  CHECK(results[3][0].samples[0].value == 9);

  const std::vector<prom::WireQuery> bad = {{0, 1, {{MatchType::re, "host", "(unclosed"}}}};
  const HttpResponse r = post(d.port(), "/api/v1/read", prom::encode_read_request(bad));
  CHECK(r.status == 400);
  CHECK(contains(r.json()["error"].get<std::string>(), "invalid regex"));
  CHECK(metric(d.port(), "sydradb_remote_read_rejected_total{reason=\"matchers\"}") == 1);
  CHECK(metric(d.port(), "sydradb_remote_read_queries_total") == 4);
  CHECK(metric(d.port(), "sydradb_remote_read_samples_total") == 5 + 2 + 1);
}

TEST_CASE("sydradb query finds remote_written series by the selector cpu_usage{host=~\"h1.*\",dc!=\"x\"}") {
  Daemon d;
  INFO("daemon stderr:\n", d.log());
  std::vector<prom::Series> fleet;
  for (const char* host : {"h1", "h12", "h2", "xh1"})
    for (const char* dc : {"x", "y"})
      fleet.push_back({{{"__name__", "cpu_usage"}, {"dc", dc}, {"host", host}}, {{0.25, 1000}}});
  REQUIRE(write(d.port(), fleet).status == 204);
  const RunResult r =
      run_sydradb({"query", R"(cpu_usage{host=~"h1.*",dc!="x"})", "0", "5000", "--url", d.url()});
  INFO("stdout:\n", r.out, "\nstderr:\n", r.err);
  REQUIRE(r.status == exited_with(0));
  CHECK(contains(r.out, R"(host="h1")"));
  CHECK(contains(r.out, R"(host="h12")"));
  CHECK_FALSE(contains(r.out, R"(host="h2")"));
  CHECK_FALSE(contains(r.out, R"(host="xh1")"));
  CHECK_FALSE(contains(r.out, R"(dc="x")"));
}

}  // namespace
}  // namespace sydra::itest
