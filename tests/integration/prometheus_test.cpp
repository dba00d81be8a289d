// The real, unmodified Prometheus 2.42 (Debian package prometheus) talking to the real
// daemon on loopback, with generated configurations:
//   (a) Prometheus scrapes the daemon's own /metrics every second and remote_writes what it
//       scrapes to the daemon; the test finds those series in the daemon with `sydradb query`.
//   (b) A second Prometheus with no scrape jobs and the daemon as its remote_read answers a
//       PromQL query_range with data that exists only in the daemon.
// Both are bounded: remote_write's queue is tuned to send within ~100 ms.
#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <thread>
#include <vector>

#include "daemon_harness.hpp"
#include "prometheus_harness.hpp"
#include "server/prom/remote.hpp"

namespace sydra::itest {
namespace {

using nlohmann::json;

// remote_write sends a batch once it is 100 ms old, and retries quickly.
constexpr const char* kFastQueue = R"(    queue_config:
      batch_send_deadline: 100ms
      max_samples_per_send: 2000
      min_backoff: 30ms
      max_backoff: 200ms
)";

TEST_CASE("Prometheus scrapes the daemon and remote_writes to it, and sydradb query finds the series") {
  Daemon d;
  INFO("daemon stderr:\n", d.log());
  const std::string target = "127.0.0.1:" + std::to_string(d.control_port());
  Prometheus p(
      "global:\n  scrape_interval: 1s\n"
      "scrape_configs:\n  - job_name: sydradb\n    static_configs:\n      - targets: ['" +
      target + "']\nremote_write:\n  - url: " + d.url() + "/api/v1/write\n" + kFastQueue);
  INFO("prometheus log:\n", p.log());
  const std::int64_t started = now_ms();

  // Prometheus' own `up` and the daemon's uptime, labelled by Prometheus with job and instance.
  const std::string selector = R"(sydradb_uptime_seconds{job="sydradb",instance=")" + target + R"("})";
  RunResult r;
  const auto deadline = Clock::now() + patience(30s);
  do {
    std::this_thread::sleep_for(200ms);
    r = run_sydradb({"query", selector, std::to_string(started - 60'000), std::to_string(now_ms() + 60'000),
                     "--url", d.url()});
  } while (!(r.status == exited_with(0) && contains(r.out, "sydradb_uptime_seconds")) &&
           Clock::now() < deadline);
  INFO("sydradb query:\n", r.out, r.err);
  REQUIRE(r.status == exited_with(0));
  CHECK(contains(r.out, R"(job="sydradb")"));
  CHECK(contains(r.out, "instance=\"" + target + "\""));
  const RunResult up = run_sydradb({"query", R"(up{job="sydradb"})", std::to_string(started - 60'000),
                                    std::to_string(now_ms() + 60'000), "--csv", "--url", d.url()});
  CHECK(up.status == exited_with(0));
  CHECK(contains(up.out, ",1\n"));  // the scrape succeeded
  // Nothing Prometheus sent was refused, and what it sent is counted.
  for (const std::string& line : lines_of(http_get(d.port(), "/metrics").body)) {
    if (line.rfind("sydradb_remote_write_rejected_total{", 0) == 0) CHECK_MESSAGE(line.ends_with(" 0"), line);
    if (line.rfind("sydradb_remote_write_samples_total ", 0) == 0)
      CHECK(line != "sydradb_remote_write_samples_total 0");
  }
}

TEST_CASE("Prometheus with the daemon as remote_read answers query_range with data only the daemon has") {
  Daemon d;
  INFO("daemon stderr:\n", d.log());
  // Two series, one sample every 10 s over the last 5 minutes, written straight to the daemon.
  const std::int64_t end = now_ms() / 10'000 * 10'000;
  const std::int64_t start = end - 300'000;
  std::vector<prom::Series> series = {{{{"__name__", "sydra_only"}, {"host", "a"}}, {}},
                                      {{{"__name__", "sydra_only"}, {"host", "b"}}, {}}};
  for (std::int64_t t = start; t <= end; t += 10'000) {
    series[0].samples.push_back({static_cast<double>((t - start) / 1000), t});
    series[1].samples.push_back({0.5, t});
  }
  Connection c(d.port());
  REQUIRE(c.roundtrip(make_request("POST", "/api/v1/write", {"Content-Encoding: snappy"},
                                   prom::encode_write_request(series)))
              .status == 204);

  Prometheus p("global:\n  scrape_interval: 1m\nremote_read:\n  - url: " + d.url() +
               "/api/v1/read\n    read_recent: true\n");
  INFO("prometheus log:\n", p.log());
  const std::string range =
      "&start=" + std::to_string(start / 1000) + "&end=" + std::to_string(end / 1000) + "&step=10";
  const json data = p.api("/api/v1/query_range?query=" + url_encode("sum(sydra_only)") + range);
  REQUIRE(data["resultType"] == "matrix");
  REQUIRE(data["result"].size() == 1);
  const json& values = data["result"][0]["values"];
  REQUIRE(values.size() == 31);
  for (std::size_t i = 0; i < values.size(); ++i) {
    CAPTURE(i);
    CHECK(values[i][0].get<double>() ==
          static_cast<double>(start / 1000 + 10 * static_cast<std::int64_t>(i)));
    CHECK(std::stod(values[i][1].get<std::string>()) == static_cast<double>(10 * i) + 0.5);
  }
  const json by_host = p.api("/api/v1/query_range?query=" + url_encode(R"(sydra_only{host=~"a|b"})") + range);
  CHECK(by_host["result"].size() == 2);
  CHECK(p.api("/api/v1/query_range?query=" + url_encode(R"(sydra_only{host!~"a|b"})") + range)["result"]
            .empty());
  CHECK(contains(http_get(d.port(), "/metrics").body, "sydradb_remote_read_queries_total 3"));
}

}  // namespace
}  // namespace sydra::itest
