// Tests cli/http_client.hpp and the URL rules of cli/url.hpp, against a canned loopback
// server (tests/cli/canned_server.hpp) instead of the daemon.
#include "cli/http_client.hpp"

#include <doctest/doctest.h>

#include <chrono>
#include <stdexcept>
#include <string>

#include "canned_server.hpp"
#include "cli/url.hpp"

namespace sydra::cli {
namespace {

using test::CannedServer;

std::string unreachable_message(const std::string& url, double timeout_seconds = 5) {
  try {
    http_request("GET", url, "/status", "", {}, "application/json", timeout_seconds);
  } catch (const Unreachable& e) {
    return e.what();
  }
  return "(no Unreachable thrown)";
}

TEST_SUITE("unit") {
  TEST_CASE("parse_http_url accepts host, port and path") {
    HttpUrl u = parse_http_url("http://127.0.0.1:8080");
    CHECK(u.host == "127.0.0.1");
    CHECK(u.port == 8080);
    CHECK(u.path == "");
    CHECK(u.authority() == "127.0.0.1:8080");

    u = parse_http_url("http://localhost");
    CHECK(u.host == "localhost");
    CHECK(u.port == 80);
    CHECK(u.authority() == "localhost");

    u = parse_http_url("HTTP://db-1.example.com:9000/sydra//");
    CHECK(u.host == "db-1.example.com");
    CHECK(u.port == 9000);
    CHECK(u.path == "/sydra");

    u = parse_http_url("http://[::1]:8080/");
    CHECK(u.host == "::1");
    CHECK(u.port == 8080);
    CHECK(u.path == "");
    CHECK(u.authority() == "[::1]:8080");

    CHECK(parse_http_url("http://h:65535").port == 65535);
  }

  TEST_CASE("parse_http_url without a scheme means http, as curl does") {
    HttpUrl u = parse_http_url("127.0.0.1:8080");
    CHECK(u.host == "127.0.0.1");
    CHECK(u.port == 8080);
    u = parse_http_url("localhost");
    CHECK(u.host == "localhost");
    CHECK(u.port == 80);
    u = parse_http_url("[::1]:9000/db/");
    CHECK(u.host == "::1");
    CHECK(u.port == 9000);
    CHECK(u.path == "/db");
    for (const char* bad : {":8080", "h:", "h:0", "::1:8080", "user@h:80", "h:80?x", "h h:80"}) {
      CAPTURE(bad);
      CHECK_THROWS_WITH_AS(parse_http_url(bad), doctest::Contains("expected [http://]host[:port][/path]"),
                           std::invalid_argument);
    }
  }

  TEST_CASE("parse_http_url rejects https, other schemes and malformed URLs") {
    for (const char* bad : {"",
                            "https://127.0.0.1:8080",
                            "ftp://h",
                            "http://",
                            "http:///x",
                            "http://:8080",
                            "http://h:",
                            "http://h:0",
                            "http://h:65536",
                            "http://h:99999999",
                            "http://h:80x",
                            "http://h:-1",
                            "http://user:pw@h",
                            "http://h/x?y=1",
                            "http://h#top",
                            "http://::1:8080",
                            "http://[::1",
                            "http://[::1]x",
                            "http://[]:80",
                            "http://[zz::1]",
                            "http://h h",
                            "http://h\n",
                            "http://ex$ample"}) {
      CAPTURE(bad);
      CHECK_THROWS_AS(parse_http_url(bad), std::invalid_argument);
    }
    CHECK_THROWS_WITH_AS(parse_http_url("https://h"), doctest::Contains("https is not supported"),
                         std::invalid_argument);
    CHECK_THROWS_WITH_AS(parse_http_url("http://h:0"), doctest::Contains("invalid port '0'"),
                         std::invalid_argument);
  }

  TEST_CASE("http_request refuses a bad URL or method before connecting") {
    CHECK_THROWS_AS(http_request("GET", "https://127.0.0.1:1", "/", ""), std::invalid_argument);
    CHECK_THROWS_AS(http_request("FETCH", "http://127.0.0.1:1", "/", ""), std::invalid_argument);
    CHECK_THROWS_AS(http_request("GET", "http://127.0.0.1:1", "/", "a\r\nX-Injected: 1"),
                    std::invalid_argument);
    CHECK_THROWS_AS(http_request("GET", "http://127.0.0.1:1", "/", "", {}, "application/json", 0),
                    std::invalid_argument);
  }

  TEST_CASE("http_request sends the request line, Host and bearer token, and returns the answer") {
    CannedServer server(CannedServer::response(200, R"({"status":"ok"})"));
    const HttpResponse r = http_request("GET", server.url() + "/prefix/", "/status", "s3cret");
    CHECK(r.status == 200);
    CHECK(r.content_type == "application/json");
    CHECK(r.body == R"({"status":"ok"})");
    const std::string head = server.last_request();
    CHECK(head.rfind("GET /prefix/status HTTP/1.1\r\n", 0) == 0);
    CHECK(head.find("Host: 127.0.0.1:" + std::to_string(server.port()) + "\r\n") != std::string::npos);
    CHECK(head.find("Authorization: Bearer s3cret") != std::string::npos);
  }

  TEST_CASE("http_request sends no Authorization header without a token, and a body when given") {
    CannedServer server(CannedServer::response(201, "{}"));
    const HttpResponse r =
        http_request("POST", server.url(), "/api/v1/ingest", "", "{\"a\":1}\n", "application/x-ndjson");
    CHECK(r.status == 201);
    const std::string head = server.last_request();
    CHECK(head.rfind("POST /api/v1/ingest HTTP/1.1\r\n", 0) == 0);
    CHECK(head.find("Authorization") == std::string::npos);
    CHECK(head.find("Content-Type: application/x-ndjson") != std::string::npos);
    CHECK(head.find("Content-Length: 8") != std::string::npos);
  }

  TEST_CASE("an HTTP error status is an answer, not an exception") {
    CannedServer server(CannedServer::response(401, R"({"error":"missing or invalid bearer token"})"));
    const HttpResponse r = http_request("GET", server.url(), "/debug/alloc/stats", "");
    CHECK(r.status == 401);
    CHECK(r.body.find("bearer token") != std::string::npos);
  }

  TEST_CASE("a refused connection is Unreachable, in one line naming the URL") {
    CannedServer closed("", CannedServer::Behaviour::not_listening);
    const std::string message = unreachable_message(closed.url());
    CHECK(message == "cannot reach sydradb at " + closed.url() + ": Connection refused");
  }

  TEST_CASE("an unresolvable host is Unreachable") {
    const std::string message = unreachable_message("http://no-such-host.invalid:8080");
    CHECK(message.rfind("cannot reach sydradb at http://no-such-host.invalid:8080: cannot resolve", 0) == 0);
  }

  TEST_CASE("a daemon that never answers is Unreachable after the timeout") {
    CannedServer silent("", CannedServer::Behaviour::never_accept);
    const auto start = std::chrono::steady_clock::now();
    const std::string message = unreachable_message(silent.url(), 0.2);
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    CHECK(message ==
          "cannot reach sydradb at " + silent.url() + ": timed out after 0.2 s waiting for the response");
    CHECK(elapsed >= 0.15);
    CHECK(elapsed < 5);
  }

  TEST_CASE("a connection closed without an answer is Unreachable") {
    CannedServer hangs_up("");
    CHECK(unreachable_message(hangs_up.url()) ==
          "cannot reach sydradb at " + hangs_up.url() + ": the connection closed before a response arrived");
  }

  TEST_CASE("an answer that is not HTTP is Unreachable") {
    CannedServer garbage("SSH-2.0-OpenSSH_9.2\r\n\r\n");
    CHECK(unreachable_message(garbage.url()).find("not a valid HTTP response") != std::string::npos);
  }
}

}  // namespace
}  // namespace sydra::cli
