// The control listener (docs/http-api.md, "Two listeners"): its own port, thread and
// connection cap; control routes there, data routes sent to the data listener with a 421;
// control requests answered while ingest keeps the data workers busy. And the lingering
// close that lets a client read the 413 for a body it sent whole.
#include <doctest/doctest.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "daemon_harness.hpp"

namespace sydra::itest {
namespace {

using nlohmann::json;

// 1000 points of NDJSON, timestamps from `base`.
std::string ingest_body(std::int64_t base) {
  std::string body;
  for (int i = 0; i < 1000; ++i)
    body += R"({"series":"load","ts":)" + std::to_string(base + i) + R"(,"value":1,"tags":{"host":"h)" +
            std::to_string(i % 50) + "\"}}\n";
  return body;
}

TEST_CASE("the control listener: control routes, a 421 naming the data listener, and where both listen") {
  Daemon d;
  INFO("daemon stderr:\n", d.log());
  REQUIRE(d.control_port() != 0);
  CHECK(d.control_port() != d.port());
  const std::string data_endpoint = "127.0.0.1:" + std::to_string(d.port());
  const std::string control_endpoint = "127.0.0.1:" + std::to_string(d.control_port());
  CHECK(contains(d.log(), "listening on " + data_endpoint));
  CHECK(contains(d.log(), "control listener on " + control_endpoint));

  const HttpResponse status = http_get(d.control_port(), "/status");
  CHECK(status.status == 200);
  CHECK(status.json()["listeners"]["data"] == data_endpoint);
  CHECK(status.json()["listeners"]["control"] == control_endpoint);
  CHECK(http_get(d.control_port(), "/health").json() == json{{"status", "ok"}});
  CHECK(http_get(d.control_port(), "/debug/alloc/stats").json().contains("small_pool"));
  CHECK(http_get(d.control_port(), "/nope").status == 404);

  // Data requests are sent where they belong, whatever the method.
  Connection c(d.control_port());
  for (const auto& [method, target] :
       std::vector<std::pair<std::string, std::string>>{{"POST", "/api/v1/ingest"},
                                                        {"GET", "/api/v1/query/range?series=x&start=0&end=1"},
                                                        {"POST", "/api/v1/query/find"},
                                                        {"GET", "/api/v1/series"},
                                                        {"DELETE", "/api/v1/series"}}) {
    CAPTURE(target);
    const HttpResponse r = c.roundtrip(make_request(method, target, {}, method == "POST" ? "{}" : ""));
    CHECK(r.status == 421);
    CHECK(r.header("Content-Type") == "application/json");
    CHECK(
        contains(r.json().at("error").get<std::string>(), "served by the data listener on " + data_endpoint));
  }
  // Nothing was ingested through the control listener; the data listener has the route.
  CHECK(http_get(d.port(), "/api/v1/series").body == "[]\n");

  // Each listener counts its own requests. (A request is counted once its answer is written:
  // the client may read it a moment before, hence the bounded wait.)
  const std::string series_sample =
      R"(sydradb_http_requests_total{listener="data",route="/api/v1/series",status="200"} 1)";
  std::string metrics;
  for (const auto deadline = Clock::now() + patience(2s); Clock::now() < deadline;) {
    metrics = http_get(d.control_port(), "/metrics").body;
    if (contains(metrics, series_sample)) break;
    std::this_thread::sleep_for(10ms);
  }
  CHECK(contains(metrics, series_sample));
  CHECK(contains(metrics,
                 R"(sydradb_http_requests_total{listener="control",route="/api/v1/ingest",status="421"} 1)"));
  CHECK(
      contains(metrics, R"(sydradb_http_requests_total{listener="control",route="/status",status="200"} 1)"));
}

TEST_CASE("control_port and control_address set where the control listener is") {
  const std::uint16_t port = unused_port();
  Daemon d(DaemonOptions().set({"control_port=" + std::to_string(port), "control_address=127.0.0.1"}));
  INFO("daemon stderr:\n", d.log());
  CHECK(d.control_port() == port);
  CHECK(http_get(port, "/status").status == 200);
}

// Correctness under load, not speed (bench/control_bench.sh measures that): every control
// request on a fresh connection is answered while ingest keeps the data worker busy, and
// ingest answers stay 200 (or 503 with Retry-After when the memtable is full: back-pressure
// stays on the data path).
TEST_CASE("control requests are answered while ingest keeps the data worker busy") {
  DaemonOptions options;
  options.workers = 1;
  Daemon d(options.set({"fsync=none"}));
  INFO("daemon stderr:\n", last_bytes(d.log(), 4000));
  std::atomic<bool> stop{false};
  std::atomic<int> ingest_ok{0}, ingest_busy{0}, ingest_other{0};
  std::vector<std::thread> writers;
  for (int w = 0; w < 4; ++w) {
    writers.emplace_back([&, w] {
      try {
        Connection c(d.port());
        for (std::int64_t n = 0; !stop.load(); ++n) {
          const std::string body = ingest_body(1'700'000'000'000 + (n * 4 + w) * 1000);
          const auto r = c.roundtrip(make_request("POST", "/api/v1/ingest", {}, body), patience(20s));
          if (r.status == 200) {
            ++ingest_ok;
          } else if (r.status == 503 && !r.header("Retry-After").empty()) {
            ++ingest_busy;
          } else {
            ++ingest_other;
          }
        }
      } catch (const std::exception&) {
        ++ingest_other;  // no answer, or the connection failed
      }
    });
  }
  int control_ok = 0, control_failed = 0;
  const auto end = Clock::now() + 1500ms;
  while (Clock::now() < end || ingest_ok.load() == 0) {
    // A fresh connection each time, as curl or a health check makes.
    const HttpResponse r = http_get(d.control_port(), control_ok % 2 ? "/debug/alloc/stats" : "/status");
    (r.status == 200 ? control_ok : control_failed) += 1;
    std::this_thread::sleep_for(20ms);
  }
  // `sydradb stats` finds the control listener from the environment, and answers too.
  const RunResult stats = run_sydradb({"stats"}, {"SYDRADB_CONTROL_URL=" + d.control_url()});
  stop = true;
  for (std::thread& t : writers) t.join();
  CHECK(control_failed == 0);
  CHECK(control_ok >= 10);
  CHECK(ingest_ok.load() > 0);
  CHECK(ingest_other.load() == 0);
  CHECK(stats.status == exited_with(0));
  CHECK(contains(stats.out, "sydradb allocator at " + d.control_url()));
}

// Regression: the daemon answered 413 to a body over max_body_bytes and closed with the
// body unread; the kernel reset the connection, so a client still sending never read it.
TEST_CASE("a body over max_body_bytes sent whole without Expect: the client reads its 413") {
  Daemon d(DaemonOptions().set({"max_body_bytes=4194304"}));
  INFO("daemon stderr:\n", d.log());
  // 6 MiB: more than the socket buffers hold, so the client is still sending when the
  // daemon has answered; within the lingering close's bound (twice max_body_bytes).
  const std::string body(6 << 20, 'x');
  for (std::uint16_t port : {d.port(), d.control_port()}) {
    CAPTURE(port);
    Connection c(port);
    CHECK(c.send(make_request("POST", "/api/v1/ingest", {}, body)));
    const auto r = c.read_response(patience(10s));
    REQUIRE(r.has_value());
    CHECK(r->status == 413);
    CHECK(r->header("Connection") == "close");
    CHECK(contains(r->json().at("error").get<std::string>(), "max_body_bytes"));
    CHECK(c.read_until_close(patience(10s)).closed);
  }
  const std::string metrics = http_get(d.control_port(), "/metrics").body;
  CHECK(contains(metrics, R"(sydradb_http_lingering_closes_total{listener="data"} 1)"));
  CHECK(contains(metrics, R"(sydradb_http_lingering_closes_total{listener="control"} 1)"));
  CHECK(http_get(d.port(), "/api/v1/series").body == "[]\n");  // nothing stored
}

}  // namespace
}  // namespace sydra::itest
