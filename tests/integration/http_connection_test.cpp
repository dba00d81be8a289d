// Connection handling (server/http/server.cpp): keep-alive, pipelining, the read and idle
// timeouts, and the connection cap.
#include <doctest/doctest.h>

#include <string>
#include <thread>
#include <vector>

#include "daemon_harness.hpp"

namespace sydra::itest {
namespace {

TEST_CASE("keep-alive: several requests on one connection") {
  Daemon d;
  INFO("daemon stderr:\n", d.log());
  Connection c(d.port());
  for (int i = 0; i < 3; ++i) {
    const HttpResponse r = c.roundtrip(make_request("GET", "/status"));
    CHECK(r.status == 200);
    CHECK(r.header("Connection") != "close");
  }
  CHECK(c.roundtrip(make_request("GET", "/nope")).status == 404);  // errors keep the connection too
  CHECK(c.roundtrip(make_request("GET", "/debug/alloc/stats")).status == 200);
  // Connection: close is honoured: the answer says so and the server closes.
  const HttpResponse last = c.roundtrip(make_request("GET", "/status", {"Connection: close"}));
  CHECK(last.status == 200);
  CHECK(last.header("Connection") == "close");
  CHECK(c.read_until_close(patience(2s)).closed);
}

TEST_CASE("HTTP/1.0 without keep-alive is answered and closed") {
  Daemon d;
  INFO("daemon stderr:\n", d.log());
  Connection c(d.port());
  REQUIRE(c.send("GET /status HTTP/1.0\r\n\r\n"));
  const auto r = c.read_response();
  REQUIRE(r.has_value());
  CHECK(r->status == 200);
  CHECK(c.read_until_close(patience(2s)).closed);
}

TEST_CASE("pipelining: requests written at once are answered in order") {
  Daemon d;
  INFO("daemon stderr:\n", d.log());
  Connection c(d.port());
  std::string batch = make_request("GET", "/status") + make_request("GET", "/nope") +
                      make_request("POST", "/status", {}, "body") + make_request("GET", "/debug/alloc/stats");
  REQUIRE(c.send(batch));
  const std::vector<int> expected = {200, 404, 405, 200};
  for (int status : expected) {
    const auto r = c.read_response();
    REQUIRE(r.has_value());
    CHECK(r->status == status);
  }
  // A longer pipeline, split at an awkward place, with the last one closing.
  std::string many;
  for (int i = 0; i < 50; ++i) many += make_request("GET", i % 2 ? "/status" : "/nope");
  many += make_request("GET", "/status", {"Connection: close"});
  REQUIRE(c.send(many.substr(0, 1001)));
  std::this_thread::sleep_for(20ms);
  REQUIRE(c.send(many.substr(1001)));
  for (int i = 0; i < 50; ++i) {
    const auto r = c.read_response();
    REQUIRE_MESSAGE(r.has_value(), "response ", i);
    CHECK(r->status == (i % 2 ? 200 : 404));
  }
  const auto last = c.read_response();
  REQUIRE(last.has_value());
  CHECK(last->header("Connection") == "close");
  CHECK(c.read_until_close(patience(2s)).closed);
}

TEST_CASE("a client sending its headers slowly is cut off by read_timeout_ms without an answer") {
  Daemon d(DaemonOptions().set({"read_timeout_ms=300"}));
  INFO("daemon stderr:\n", d.log());
  const std::string request = make_request("GET", "/status", {"X-Padding: aaaaaaaaaaaaaaaaaaaa"});
  Connection c(d.port());
  const auto start = Clock::now();
  std::size_t sent = 0;
  bool closed = false;
  std::string received;
  // One byte every 100 ms: the whole request would take several seconds.
  while (Clock::now() - start < patience(5s) && sent < request.size()) {
    if (!c.send(request.substr(sent, 1))) {
      closed = true;
      break;
    }
    ++sent;
    if (c.readable(100ms)) {
      const auto drain = c.read_until_close(patience(1s));
      received = drain.bytes;
      closed = drain.closed;
      break;
    }
  }
  const auto elapsed = Clock::now() - start;
  CHECK(closed);
  CHECK_MESSAGE(received.empty(), "got an answer: ", received);
  CHECK(sent < request.size());
  CHECK(elapsed >= 250ms);
  CHECK(elapsed < patience(2s));
  // Counted as a timeout.
  CHECK(contains(http_get(d.port(), "/metrics").body, "sydradb_http_timeouts_total{listener=\"data\"} 1\n"));
}

TEST_CASE("a slow body is cut off by read_timeout_ms too") {
  Daemon d(DaemonOptions().set({"read_timeout_ms=300"}));
  INFO("daemon stderr:\n", d.log());
  Connection c(d.port());
  const auto start = Clock::now();
  REQUIRE(c.send("GET /status HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc"));
  const auto drain = c.read_until_close(patience(3s));
  CHECK(drain.closed);
  CHECK(drain.bytes.empty());
  CHECK(Clock::now() - start >= 250ms);
}

TEST_CASE("an idle keep-alive connection is closed after idle_timeout_ms") {
  Daemon d(DaemonOptions().set({"idle_timeout_ms=300", "read_timeout_ms=5000"}));
  INFO("daemon stderr:\n", d.log());
  SUBCASE("after a request") {
    Connection c(d.port());
    CHECK(c.roundtrip(make_request("GET", "/status")).status == 200);
    const auto start = Clock::now();
    const auto drain = c.read_until_close(patience(3s));
    CHECK(drain.closed);
    CHECK(drain.bytes.empty());
    CHECK(Clock::now() - start >= 250ms);
  }
  SUBCASE("before any request") {
    Connection c(d.port());
    const auto start = Clock::now();
    const auto drain = c.read_until_close(patience(3s));
    CHECK(drain.closed);
    CHECK(drain.bytes.empty());
    CHECK(Clock::now() - start >= 250ms);
  }
}

TEST_CASE("max_connections: a connection over the cap gets 503 and is closed") {
  Daemon d(DaemonOptions().set({"max_connections=2"}));
  INFO("daemon stderr:\n", d.log());
  // Two connections, each proven accepted by an answer, then kept open.
  Connection a(d.port());
  Connection b(d.port());
  CHECK(a.roundtrip(make_request("GET", "/status")).status == 200);
  CHECK(b.roundtrip(make_request("GET", "/status")).status == 200);
  {
    Connection third(d.port());
    const auto r = third.read_response();  // answered before any request is sent
    REQUIRE(r.has_value());
    CHECK(r->status == 503);
    CHECK(r->header("Connection") == "close");
    CHECK(r->json()["error"].is_string());
    CHECK(third.read_until_close(patience(2s)).closed);
  }
  // The data listener's cap is not the control listener's: with the data listener full,
  // the control listener still answers.
  CHECK(http_get(d.control_port(), "/status").status == 200);
  // The two keep working.
  CHECK(a.roundtrip(make_request("GET", "/status")).status == 200);
  // Closing one frees a place (the count drops when the server has closed its side).
  { Connection gone = std::move(b); }
  const auto deadline = Clock::now() + patience(3s);
  int status = 0;
  while (Clock::now() < deadline) {
    Connection c(d.port());
    c.send(make_request("GET", "/status", {"Connection: close"}));
    const auto r = c.read_response();
    status = r ? r->status : 0;
    if (status == 200) break;
    std::this_thread::sleep_for(20ms);
  }
  CHECK(status == 200);
  const std::string metrics = a.roundtrip(make_request("GET", "/metrics")).body;
  CHECK(contains(metrics, "sydradb_http_connections_rejected_total{listener=\"data\"} "));
  CHECK_FALSE(contains(metrics, "sydradb_http_connections_rejected_total{listener=\"data\"} 0\n"));
}

// Regression: with every file descriptor in use, accept() fails at once with EMFILE; the
// listener re-armed the accept immediately and logged each failure, spinning a core and
// writing ~100k warnings a second until descriptors were freed.
TEST_CASE("running out of file descriptors neither spins the acceptor nor floods the log") {
  DaemonOptions options;
  options.open_files_limit = 64;  // about 40 connections' worth
  Daemon d(options);
  INFO("daemon stderr (tail):\n", last_bytes(d.log(), 2000));
  std::vector<Connection> held;
  for (int i = 0; i < 100; ++i) held.emplace_back(d.port());  // the kernel queues what is not accepted
  std::this_thread::sleep_for(300ms);
  const Millis cpu_before = d.cpu_time();
  const std::size_t lines_before = lines_of(d.log()).size();
  std::this_thread::sleep_for(1s);
  const Millis cpu_used = d.cpu_time() - cpu_before;
  const std::size_t lines_logged = lines_of(d.log()).size() - lines_before;
  CHECK_MESSAGE(cpu_used < 300ms, "the daemon used ", cpu_used.count(), " ms of CPU in 1 s while idle");
  CHECK_MESSAGE(lines_logged < 20, lines_logged, " log lines in 1 s");

  // Descriptors freed: the daemon accepts again.
  held.clear();
  const auto deadline = Clock::now() + patience(5s);
  int status = 0;
  while (status != 200 && Clock::now() < deadline) {
    try {
      Connection c(d.port());
      c.send(make_request("GET", "/status", {"Connection: close"}));
      const auto r = c.read_response(500ms);
      status = r ? r->status : 0;
    } catch (const std::exception&) {
      status = 0;
    }
  }
  CHECK(status == 200);
}

TEST_CASE("HEAD: the GET answer's headers, Content-Length included, and no body") {
  Daemon d;
  INFO("daemon stderr:\n", d.log());
  Connection c(d.port());
  // A HEAD followed by a GET on the same connection: were a body sent after the HEAD
  // answer, the GET's status line would not come next.
  REQUIRE(c.send(make_request("HEAD", "/status") + make_request("GET", "/status", {"Connection: close"})));
  const Connection::Drain all = c.read_until_close(patience(5s));
  REQUIRE(all.closed);
  const std::string head_end = "\r\n\r\n";
  const auto first_end = all.bytes.find(head_end);
  REQUIRE(first_end != std::string::npos);
  const std::string head_answer = all.bytes.substr(0, first_end + head_end.size());
  INFO("HEAD answer:\n", head_answer);
  CHECK(contains(head_answer, "HTTP/1.1 200"));
  CHECK(contains(head_answer, "Content-Type: application/json"));
  CHECK(!contains(head_answer, "Content-Length: 0\r\n"));
  CHECK(contains(head_answer, "Content-Length: "));
  CHECK(all.bytes.compare(first_end + head_end.size(), 12, "HTTP/1.1 200") == 0);
  // An unknown method on a GET route lists HEAD as allowed.
  const HttpResponse r = http_get(d.port(), "/status");
  CHECK(r.status == 200);
  Connection c2(d.port());
  const HttpResponse del = c2.roundtrip(make_request("DELETE", "/status"));
  CHECK(del.status == 405);
  CHECK(del.header("Allow") == "GET, HEAD");
}

TEST_CASE("Expect: 100-continue is answered before the body, an announced oversized body is refused") {
  Daemon d(DaemonOptions().set({"max_body_bytes=2048"}));
  INFO("daemon stderr:\n", d.log());
  Connection c(d.port());
  REQUIRE(c.send("POST /status HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n"));
  const auto interim = c.read_response(patience(3s));
  REQUIRE(interim.has_value());
  CHECK(interim->status == 100);
  REQUIRE(c.send("body"));
  const auto final_answer = c.read_response();
  REQUIRE(final_answer.has_value());
  CHECK(final_answer->status == 405);  // /status takes GET; what matters is that it came

  Connection big(d.port());
  REQUIRE(
      big.send("POST /status HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\nExpect: 100-continue\r\n\r\n"));
  const auto refused = big.read_response(patience(3s));
  REQUIRE(refused.has_value());
  CHECK(refused->status == 413);
  CHECK(refused->json().at("error").get<std::string>().find("max_body_bytes") != std::string::npos);
  CHECK(big.read_until_close(patience(2s)).closed);
}

TEST_CASE("empty lines before a request line are ignored, a transfer coding other than chunked is 501") {
  Daemon d;
  INFO("daemon stderr:\n", d.log());
  Connection c(d.port());
  REQUIRE(c.send("\r\n"));
  REQUIRE(c.send("\r\n" + make_request("GET", "/status")));
  const auto r = c.read_response();
  REQUIRE(r.has_value());
  CHECK(r->status == 200);

  Connection g(d.port());
  REQUIRE(
      g.send("POST /api/v1/ingest HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, "
             "chunked\r\n\r\n4\r\nabcd\r\n0\r\n\r\n"));
  const auto refused = g.read_response();
  REQUIRE(refused.has_value());
  CHECK(refused->status == 501);
  CHECK(refused->json().contains("error"));
}

}  // namespace
}  // namespace sydra::itest
