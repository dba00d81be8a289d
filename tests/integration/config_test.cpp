// Configuration errors as the user sees them (docs/configuration.md): exit status 2 and one
// line on stderr naming the key (or the file, line and column); unknown keys only warn.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "daemon_harness.hpp"

namespace sydra::itest {
namespace {

// Runs `sydradb serve` with a port file; a daemon that starts despite the error is stopped
// (and the test fails).
RunResult serve_expecting_failure(const TempDir& dir, std::vector<std::string> args) {
  std::vector<std::string> all = {"serve", "--port", "0", "--data-dir", dir.file("data"), "--workers", "1"};
  all.insert(all.end(), args.begin(), args.end());
  const RunResult r = run_sydradb(all, {}, patience(5s));
  CHECK_MESSAGE(!r.timed_out, "sydradb kept running: ", r.err);
  return r;
}

void check_one_line_naming(const RunResult& r, const std::string& what) {
  INFO("stderr: ", r.err);
  CHECK(r.status == exited_with(2));
  const auto lines = lines_of(r.err);
  CHECK(lines.size() == 1);
  CHECK(contains(r.err, what));
  CHECK(r.out.empty());
}

TEST_CASE("an invalid value in the config file: exit 2, one line naming the key") {
  TempDir dir;
  struct Case {
    const char* toml;
    const char* key;
  };
  for (const Case& c :
       {Case{"workers = \"abc\"\n", "'workers'"}, Case{"http_port = 70000\n", "'http_port'"},
        Case{"fsync = \"sometimes\"\n", "'fsync'"}, Case{"max_body_bytes = 10\n", "'max_body_bytes'"},
        Case{"allocator_mode = \"fast\"\n", "'allocator_mode'"},
        Case{"access_log = \"yes\"\n", "'access_log'"},
        Case{"listen_address = \"localhost:80\"\n", "'listen_address'"},
        Case{"read_timeout_ms = -1\n", "'read_timeout_ms'"}}) {
    CAPTURE(c.toml);
    write_file(dir.file("sydradb.toml"), std::string("data_dir = \"") + dir.file("data") + "\"\n" + c.toml);
    check_one_line_naming(serve_expecting_failure(dir, {"--config", dir.file("sydradb.toml")}), c.key);
  }
}

TEST_CASE("malformed TOML: exit 2, one line naming the file") {
  TempDir dir;
  for (const char* toml : {"workers = = 3\n", "[unterminated\n", "http_port = \"8080\n", "workers 3\n"}) {
    CAPTURE(toml);
    write_file(dir.file("bad.toml"), toml);
    check_one_line_naming(serve_expecting_failure(dir, {"--config", dir.file("bad.toml")}),
                          dir.file("bad.toml"));
  }
}

TEST_CASE("bad flags and --set values: exit 2, one line naming the key") {
  TempDir dir;
  check_one_line_naming(serve_expecting_failure(dir, {"--set", "workers=abc"}), "'workers'");
  check_one_line_naming(serve_expecting_failure(dir, {"--set", "max_connections=0"}), "'max_connections'");
  check_one_line_naming(serve_expecting_failure(dir, {"--set", "no_such_key=1"}), "no_such_key");
  check_one_line_naming(serve_expecting_failure(dir, {"--set", "workers"}), "--set");
  check_one_line_naming(serve_expecting_failure(dir, {"--allocator-mode", "fast"}), "'allocator_mode'");
  check_one_line_naming(serve_expecting_failure(dir, {"--log-level", "loud"}), "'log_level'");
  check_one_line_naming(serve_expecting_failure(dir, {"--listen", "not-an-address"}), "'listen_address'");
  // CLI11's own errors (unknown flag, missing file) share the status.
  CHECK(serve_expecting_failure(dir, {"--no-such-flag"}).status == exited_with(2));
  CHECK(serve_expecting_failure(dir, {"--config", dir.file("missing.toml")}).status == exited_with(2));
}

TEST_CASE("an unknown key in the config file is a warning and the daemon starts") {
  TempDir dir;
  write_file(dir.file("sydradb.toml"), "# comment\nfrobnicate = 1\nmax_connections = 64\n");
  Daemon d(DaemonOptions().arg({"--config", dir.file("sydradb.toml")}));
  INFO("daemon stderr:\n", d.log());
  CHECK(http_get(d.port(), "/status").status == 200);
  CHECK(contains(d.log(), "frobnicate"));
  CHECK(contains(d.log(), "warn"));
}

TEST_CASE("flags override the config file") {
  TempDir dir;
  write_file(dir.file("sydradb.toml"), "workers = 3\nallocator_mode = \"legacy\"\nhttp_port = 1\n");
  // Daemon passes --port 0 and --workers 2 after --config.
  Daemon d(DaemonOptions().arg({"--config", dir.file("sydradb.toml")}));
  INFO("daemon stderr:\n", d.log());
  const auto status = http_get(d.port(), "/status").json();
  CHECK(status["workers"] == 2);
  CHECK(status["allocator_mode"] == "legacy");
}

}  // namespace
}  // namespace sydra::itest
