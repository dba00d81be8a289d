// Configuration errors as the user sees them (docs/configuration.md): exit status 2 and one
// line on stderr naming the key (or the file, line and column); unknown keys only warn.
#include <doctest/doctest.h>

#include <csignal>
#include <filesystem>
#include <string>
#include <thread>
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
        Case{"read_timeout_ms = -1\n", "'read_timeout_ms'"}, Case{"[server]\nhttp_port = 1\n", "[server]"}}) {
    CAPTURE(c.toml);
    write_file(dir.file("sydradb.toml"), std::string("data_dir = \"") + dir.file("data") + "\"\n" + c.toml);
    check_one_line_naming(serve_expecting_failure(dir, {"--config", dir.file("sydradb.toml")}), c.key);
  }
}

TEST_CASE("a value of the wrong type: the message shows the value given and its type") {
  TempDir dir;
  struct Case {
    const char* toml;
    const char* message;
  };
  for (const Case& c :
       {Case{"workers = \"abc\"\n",
             "sydradb serve: config key 'workers': expected an integer, got 'abc' (a string)"},
        Case{"http_port = \"8080\"\n", "config key 'http_port': expected an integer, got '8080' (a string)"},
        Case{"workers = 1.5\n", "config key 'workers': expected an integer, got 1.5 (a float)"},
        Case{"listen_address = 5\n", "config key 'listen_address': expected a string, got 5 (an integer)"},
        Case{"access_log = \"yes\"\n",
             "config key 'access_log': expected true or false, got 'yes' (a string)"},
        Case{"fsync = [1]\n", "config key 'fsync': expected a string, got an array"}}) {
    CAPTURE(c.toml);
    write_file(dir.file("sydradb.toml"), c.toml);
    check_one_line_naming(serve_expecting_failure(dir, {"--config", dir.file("sydradb.toml")}), c.message);
  }
}

TEST_CASE("a table holding keys sydradb knows stops start-up and names them, other tables only warn") {
  TempDir dir;
  write_file(dir.file("sydradb.toml"), "[server]\nhttp_port = 9000\nauth_token = \"t\"\nfoo = 1\n");
  check_one_line_naming(
      serve_expecting_failure(dir, {"--config", dir.file("sydradb.toml")}),
      "sydradb serve: config file " + dir.file("sydradb.toml") +
          ":1: table [server] holds auth_token, http_port, which sydradb reads only at the top "
          "level: move them above the first [table] line (sydradb.toml has no tables)");
  write_file(dir.file("other.toml"), "workers = 1\n[metrics]\nscrape = true\npath = \"/x\"\n");
  Daemon d(DaemonOptions().arg({"--config", dir.file("other.toml")}));
  INFO("daemon stderr:\n", d.log());
  CHECK(http_get(d.port(), "/status").status == 200);
  CHECK(contains(d.log(), "other.toml:2: unknown table [metrics] ignored with its keys path, scrape"));
}

TEST_CASE("--listen takes a host name: localhost listens on 127.0.0.1") {
  Daemon d(DaemonOptions().arg({"--listen", "localhost"}));
  INFO("daemon stderr:\n", d.log());
  CHECK(http_get(d.port(), "/status").status == 200);  // the harness connects to 127.0.0.1
  CHECK(contains(d.log(), "listening on localhost (127.0.0.1):" + std::to_string(d.port())));
}

TEST_CASE("the start-up line: singular counts, the data directory as an absolute path, no port file left") {
  Daemon d(DaemonOptions().set({"workers=1"}));
  INFO("daemon stderr:\n", d.log());
  const std::string port_file = d.dir().file("port");
  CHECK(read_file(port_file) == std::to_string(d.port()) + "\n");
  CHECK(
      contains(d.log(), "(1 worker, allocator sharded with 1 shard, data in " + d.dir().file("data") + ")"));
  CHECK(d.stop() == exited_with(0));
  CHECK_FALSE(std::filesystem::exists(port_file));
}

TEST_CASE("the default data directory is relative to where the daemon starts, and the log says where") {
  TempDir dir;
  ChildOptions options;
  options.stderr_path = dir.file("err");
  const pid_t pid =
      spawn({"/bin/sh", "-c", "cd \"$1\" && exec \"$0\" serve --port 0 --port-file port --workers 1",
             sydradb_binary(), dir.path()},
            options);
  const Clock::time_point deadline = Clock::now() + patience(10s);
  while (read_file(dir.file("port")).empty() && Clock::now() < deadline) std::this_thread::sleep_for(20ms);
  ::kill(pid, SIGTERM);
  const auto status = wait_exit(pid, patience(10s));
  REQUIRE(status.has_value());
  CHECK(*status == exited_with(0));
  CHECK(std::filesystem::is_directory(dir.file("data")));
  const std::string cwd = std::filesystem::canonical(dir.path()).string();  // what getcwd says
  CHECK(contains(read_file(dir.file("err")), "data in " + cwd + "/data)"));
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
  // --set takes one KEY=VALUE: a word after it is not taken for a second one.
  {
    const RunResult r = serve_expecting_failure(dir, {"--set", "workers=1", "stray"});
    CHECK(r.status == exited_with(2));
    CHECK(lines_of(r.err).at(0) == "sydradb serve: unexpected argument: stray");
  }
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
