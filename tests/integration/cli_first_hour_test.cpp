// The CLI as a new user meets it in the first hour (issue 14), through the real binary and
// daemon: --tag anywhere among the positionals, help that names the program and the value
// types, --version, flags before the command, SYDRADB_URL and host:port, one error format
// with how to fix a 401, `sydradb series`, and a query for a series that does not exist.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "daemon_harness.hpp"

namespace sydra::itest {
namespace {

constexpr int kExitUsage = 2;
constexpr int kExitUnreachable = 3;
constexpr int kExitHttpError = 4;
constexpr int kExitNoSeries = 6;

constexpr const char* kPoints = R"({"series":"cpu.load","tags":{"host":"a"},"ts":1000,"value":0.5})"
                                "\n"
                                R"({"series":"cpu.load","tags":{"host":"a"},"ts":2000,"value":0.75})"
                                "\n"
                                R"({"series":"cpu.load","tags":{"host":"b","dc":"eu"},"ts":1000,"value":2})"
                                "\n"
                                R"({"series":"mem.used","ts":1000,"value":42})"
                                "\n";

void store_points(const Daemon& d) {
  Connection c(d.port());
  const HttpResponse r = c.roundtrip(make_request("POST", "/api/v1/ingest", {}, kPoints));
  REQUIRE_MESSAGE(r.status == 200, r.body);
  REQUIRE(r.json()["ingested"] == 4);
}

TEST_CASE("query: --tag before, between or after SERIES START END reads the same points") {
  Daemon d;
  INFO("daemon stderr:\n", d.log());
  store_points(d);
  const std::string expected = "ts,value\n1000,0.5\n2000,0.75\n";
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"query", "cpu.load", "0", "5000", "--tag", "host=a"},
        std::vector<std::string>{"query", "cpu.load", "--tag", "host=a", "0", "5000"},
        std::vector<std::string>{"query", "--tag", "host=a", "cpu.load", "0", "5000"},
        std::vector<std::string>{"query", "--tag=host=a", "cpu.load", "0", "5000"}}) {
    std::vector<std::string> all = args;
    all.insert(all.end(), {"--csv", "--url", d.url()});
    const RunResult r = run_sydradb(all);
    INFO("args: ", all[1], " ", all[2], " ", all[3], "\nstdout:\n", r.out, "\nstderr:\n", r.err);
    CHECK(r.status == exited_with(0));
    CHECK(r.out == expected);
  }
  // Two tags, one on each side of the positionals.
  const RunResult r = run_sydradb(
      {"query", "--tag", "dc=eu", "cpu.load", "0", "5000", "--tag", "host=b", "--csv", "--url", d.url()});
  INFO("stderr:\n", r.err);
  CHECK(r.status == exited_with(0));
  CHECK(r.out == "ts,value\n1000,2\n");
}

TEST_CASE("help names the program and the value types, --version prints the version") {
  const RunResult top = run_sydradb({"--help"});
  CHECK(top.status == exited_with(0));
  CHECK(contains(top.out, "Usage: sydradb [OPTIONS] [SUBCOMMAND]"));
  CHECK(contains(top.out, "series"));
  for (const char* command : {"serve", "stats", "ingest", "query", "series", "compact"}) {
    CAPTURE(command);
    const RunResult r = run_sydradb({command, "--help"});
    CHECK(r.status == exited_with(0));
    CHECK(contains(r.out, std::string("Usage: sydradb ") + command + " [OPTIONS]"));
    CHECK_FALSE(contains(r.out, " TEXT"));  // every value says what it is
    CHECK_FALSE(contains(r.out, ":FLOAT"));
  }
  const RunResult serve = run_sydradb({"serve", "--help"});
  CHECK(contains(serve.out, "--port PORT"));
  CHECK(contains(serve.out, "--workers INT"));
  CHECK(contains(serve.out, "--set KEY=VALUE"));

  const RunResult version = run_sydradb({"--version"});
  CHECK(version.status == exited_with(0));
  CHECK(version.out.rfind("sydradb ", 0) == 0);
  CHECK(version.out == run_sydradb({"version"}).out);
}

TEST_CASE("flags before the command: connection flags move after it, anything else is named in order") {
  Daemon d;
  INFO("daemon stderr:\n", d.log());
  const RunResult ok = run_sydradb({"--url", d.url(), "--timeout", "5", "stats", "--json"});
  INFO("stderr:\n", ok.err);
  CHECK(ok.status == exited_with(0));
  CHECK(contains(ok.out, "\"allocator_mode\""));

  const std::string nowhere = "http://127.0.0.1:" + std::to_string(unused_port());
  const RunResult unreachable = run_sydradb({"--url=" + nowhere, "stats"});
  CHECK(unreachable.status == exited_with(kExitUnreachable));
  CHECK(unreachable.err.rfind("sydradb stats: cannot reach sydradb at " + nowhere, 0) == 0);

  // No command after them: serve, which has no --url; the words come in the order typed.
  const RunResult bad = run_sydradb({"--url", "X"});
  CHECK(bad.status == exited_with(kExitUsage));
  CHECK(lines_of(bad.err).at(0) == "sydradb serve: unexpected arguments: --url X");
  const RunResult extra = run_sydradb({"query", "a", "0", "1", "surplus"});
  CHECK(extra.status == exited_with(kExitUsage));
  CHECK(lines_of(extra.err).at(0) == "sydradb query: unexpected argument: surplus");
}

TEST_CASE("the daemon's address from SYDRADB_URL, and host:port without http://") {
  Daemon d;
  INFO("daemon stderr:\n", d.log());
  store_points(d);
  const std::string host_port = "127.0.0.1:" + std::to_string(d.port());
  const RunResult from_env = run_sydradb({"series", "mem.used"}, {"SYDRADB_URL=" + host_port});
  INFO("stderr:\n", from_env.err);
  CHECK(from_env.status == exited_with(0));
  CHECK(contains(from_env.out, "mem.used"));
  const RunResult flag = run_sydradb({"query", "mem.used", "0", "5000", "--csv", "--url", host_port});
  CHECK(flag.status == exited_with(0));
  CHECK(flag.out == "ts,value\n1000,42\n");
  // --url wins over SYDRADB_URL.
  const RunResult both = run_sydradb({"stats", "--url", host_port}, {"SYDRADB_URL=http://127.0.0.1:1"});
  CHECK(both.status == exited_with(0));
}

TEST_CASE("every client command reports an HTTP error the same way, and a 401 says how to pass the token") {
  Daemon d(DaemonOptions().env({"SYDRADB_TOKEN=s3cret"}));
  INFO("daemon stderr:\n", d.log());
  const TempDir dir;
  write_file(dir.file("in.ndjson"), kPoints);
  const std::vector<std::vector<std::string>> commands = {
      {"stats"}, {"query", "cpu.load", "0", "1"}, {"series"}, {"ingest", "-f", dir.file("in.ndjson")}};
  for (const auto& command : commands) {
    std::vector<std::string> args = command;
    args.insert(args.end(), {"--url", d.url()});
    const RunResult r = run_sydradb(args);
    INFO("stderr:\n", r.err);
    CHECK(r.status == exited_with(kExitHttpError));
    const std::string line = lines_of(r.err).at(0);
    CHECK(line.rfind("sydradb " + command[0] + ": " + d.url() + ": HTTP 401: missing or invalid bearer token",
                     0) == 0);
    CHECK(contains(line, "(the daemon requires a token: pass --token TOKEN or set SYDRADB_TOKEN)"));
  }
  const RunResult wrong = run_sydradb({"series", "--url", d.url(), "--token", "guess"});
  CHECK(contains(wrong.err, "(the daemon refused the token given: check --token or SYDRADB_TOKEN)"));
  const RunResult right = run_sydradb({"series", "--url", d.url()}, {"SYDRADB_TOKEN=s3cret"});
  CHECK(right.status == exited_with(0));
}

TEST_CASE("sydradb series lists the series, by name and tags, as a table or JSON") {
  Daemon d;
  INFO("daemon stderr:\n", d.log());
  store_points(d);
  {
    const RunResult r = run_sydradb({"series", "--url", d.url()});
    INFO("stderr:\n", r.err);
    CHECK(r.status == exited_with(0));
    CHECK(r.out ==
          "series    tags\n"
          "cpu.load  {dc=eu, host=b}\n"
          "cpu.load  {host=a}\n"
          "mem.used  {}\n"
          "(3 series)\n");
  }
  {
    const RunResult r = run_sydradb({"series", "cpu.load", "--tag", "host=a", "--url", d.url(), "--json"});
    CHECK(r.status == exited_with(0));
    const nlohmann::json doc = nlohmann::json::parse(r.out);
    REQUIRE(doc.size() == 1);
    CHECK(doc[0]["series"] == "cpu.load");
    CHECK(doc[0]["tags"] == nlohmann::json{{"host", "a"}});
    CHECK(doc[0]["id"].is_number_unsigned());
  }
  {
    // A tag alone selects across names; --tag before the name works too.
    const RunResult r = run_sydradb({"series", "--tag", "dc=eu", "--url", d.url()});
    CHECK(r.out == "series    tags\ncpu.load  {dc=eu, host=b}\n(1 series)\n");
    CHECK(run_sydradb({"series", "--tag", "host=a", "cpu.load", "--url", d.url()}).out ==
          "series    tags\ncpu.load  {host=a}\n(1 series)\n");
  }
  CHECK(run_sydradb({"series", "nosuch", "--url", d.url()}).out == "series  tags\n(0 series)\n");
}

TEST_CASE("a query for a series that does not exist says which series of that name do, exit 6") {
  Daemon d;
  INFO("daemon stderr:\n", d.log());
  store_points(d);
  {
    const RunResult r = run_sydradb({"query", "cpu.load", "0", "5000", "--tag", "host=c", "--url", d.url()});
    CHECK(r.status == exited_with(kExitNoSeries));
    CHECK(contains(r.out, "(0 points)"));
    CHECK(r.err ==
          "sydradb query: no series 'cpu.load' has the tags {host=c}; 2 series of that name have: {dc=eu, "
          "host=b}, {host=a}\n");
  }
  {
    const RunResult r = run_sydradb({"query", "cpu.lod", "0", "5000", "--url", d.url()});
    CHECK(r.status == exited_with(kExitNoSeries));
    CHECK(r.err ==
          "sydradb query: no series is named 'cpu.lod' (sydradb series lists the names there are)\n");
  }
  {
    // The series exists, with no point in the range: an empty answer, not an error.
    const RunResult r =
        run_sydradb({"query", "cpu.load", "5000", "9000", "--tag", "host=a", "--url", d.url()});
    CHECK(r.status == exited_with(0));
    CHECK(r.err.empty());
    CHECK(contains(r.out, "(0 points)"));
  }
}

}  // namespace
}  // namespace sydra::itest
