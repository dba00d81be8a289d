// Tests cli/client.hpp: where the client commands look for the daemon (--url, SYDRADB_URL,
// the default), the token, and the one error format, against a canned server.
#include "cli/client.hpp"

#include <doctest/doctest.h>

#include <string>

#include "canned_server.hpp"
#include "cli_test_support.hpp"

namespace sydra::cli {
namespace {

using test::CannedServer;
using test::CapturedOutput;
using test::ScopedEnv;

TEST_SUITE("unit") {
  TEST_CASE("the URL: --url, else SYDRADB_URL, else the default, no scheme needed") {
    ScopedEnv no_url("SYDRADB_URL", nullptr);
    CHECK(DaemonClient::open("stats", "", "", 5)->url() == kDefaultUrl);
    CHECK(DaemonClient::open("stats", "10.0.0.5:9000", "", 5)->url() == "10.0.0.5:9000");
    ScopedEnv url("SYDRADB_URL", "127.0.0.1:9100");
    CHECK(DaemonClient::open("stats", "", "", 5)->url() == "127.0.0.1:9100");
    CHECK(DaemonClient::open("stats", "http://h:1", "", 5)->url() == "http://h:1");
  }

  TEST_CASE("a bad URL or timeout is refused up front, in the command's error format") {
    CapturedOutput output;
    {
      ScopedEnv no_url("SYDRADB_URL", nullptr);
      CHECK_FALSE(DaemonClient::open("query", "https://h", "", 5));
      CHECK(output.err().rfind("sydradb query: invalid URL 'https://h': https is not supported", 0) == 0);
      CHECK_FALSE(DaemonClient::open("query", "h:1", "", 0));
    }
    ScopedEnv bad_env("SYDRADB_URL", "ftp://h");
    CHECK_FALSE(DaemonClient::open("series", "", "", 5));
    CHECK(output.err().find("sydradb series: invalid URL 'ftp://h': unsupported scheme 'ftp'") !=
          std::string::npos);
    CHECK(output.err().find("(from SYDRADB_URL)") != std::string::npos);
  }

  TEST_CASE("requests go to the URL given without a scheme, with the token of SYDRADB_TOKEN") {
    CannedServer server(CannedServer::response(200, "{}"));
    ScopedEnv token("SYDRADB_TOKEN", "env-token");
    const auto client = DaemonClient::open("stats", "127.0.0.1:" + std::to_string(server.port()), "", 5);
    REQUIRE(client);
    CHECK(client->send("GET", "/status").status == 200);
    CHECK(server.last_request().rfind("GET /status HTTP/1.1\r\n", 0) == 0);
    CHECK(server.last_request().find("Authorization: Bearer env-token\r\n") != std::string::npos);
  }

  TEST_CASE("unreachable: the message says how to point elsewhere when the URL is the default") {
    CannedServer closed("", CannedServer::Behaviour::not_listening);
    {
      const auto client = DaemonClient::open("stats", closed.url(), "", 5);
      CHECK_THROWS_WITH_AS(client->send("GET", "/"),
                           ("cannot reach sydradb at " + closed.url() + ": Connection refused").c_str(),
                           Unreachable);
    }
    {
      ScopedEnv url("SYDRADB_URL", closed.url().c_str());
      CHECK_THROWS_WITH_AS(DaemonClient::open("stats", "", "", 5)->send("GET", "/"),
                           ("cannot reach sydradb at " + closed.url() + ": Connection refused").c_str(),
                           Unreachable);
    }
    // Neither: the default URL, and a hint (unless a daemon happens to listen there).
    ScopedEnv no_url("SYDRADB_URL", nullptr);
    try {
      DaemonClient::open("stats", "", "", 5)->send("GET", "/status");
      MESSAGE("something answers on ", kDefaultUrl, ": the hint is not checked");
    } catch (const Unreachable& e) {
      CHECK(std::string(e.what()).find("(the default URL: give --url or set SYDRADB_URL when the daemon "
                                       "listens elsewhere)") != std::string::npos);
    }
  }

  TEST_CASE("an HTTP error reads URL: HTTP status: message, and a 401 says how to pass the token") {
    ScopedEnv no_token("SYDRADB_TOKEN", nullptr);
    HttpResponse unauthorized{401, "application/json", R"({"error":"missing or invalid bearer token"})"};
    const auto without = DaemonClient::open("ingest", "h:1", "", 5);
    CHECK(
        without->describe(unauthorized) ==
        "h:1: HTTP 401: missing or invalid bearer token (the daemon requires a token: pass --token TOKEN or "
        "set SYDRADB_TOKEN)");
    const auto with = DaemonClient::open("ingest", "h:1", "wrong", 5);
    CHECK(with->describe(unauthorized) ==
          "h:1: HTTP 401: missing or invalid bearer token (the daemon refused the token given: check --token "
          "or "
          "SYDRADB_TOKEN)");
    CHECK(with->describe({500, "text/plain", "disk\n  full"}) == "h:1: HTTP 500: disk full");
    CHECK(with->describe({502, "text/plain", ""}) == "h:1: HTTP 502: (empty body)");
  }

  TEST_CASE("print_error: sydradb COMMAND: message") {
    CapturedOutput output;
    print_error("compact", "no such directory");
    CHECK(output.err() == "sydradb compact: no such directory\n");
  }
}

}  // namespace
}  // namespace sydra::cli
