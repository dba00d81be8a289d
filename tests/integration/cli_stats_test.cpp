// `sydradb stats` against a running daemon, a missing one and one that refuses it
// (exit codes from cli/commands.hpp: 0 ok, 2 usage, 3 unreachable, 4 HTTP error).
#include <doctest/doctest.h>

#include <sstream>
#include <string>
#include <vector>

#include "daemon_harness.hpp"

namespace sydra::itest {
namespace {

constexpr int kExitUsage = 2;
constexpr int kExitUnreachable = 3;
constexpr int kExitHttpError = 4;

bool is_number(const std::string& s) {
  return !s.empty() && s.find_first_not_of("0123456789") == std::string::npos;
}

TEST_CASE("sydradb stats prints the running daemon's summary and shard table") {
  Daemon d;
  INFO("daemon stderr:\n", d.log());
  const RunResult r = run_sydradb({"stats", "--url", d.control_url()});
  INFO("stdout:\n", r.out, "\nstderr:\n", r.err);
  CHECK(r.status == exited_with(0));
  CHECK(r.err.empty());
  CHECK(contains(r.out, d.control_url()));
  CHECK(contains(r.out, "sharded"));
  // The table: a header, then one row per shard (0 and 1 with two workers).
  bool header = false;
  std::vector<std::string> rows;  // first column of the lines after the header
  for (const std::string& line : lines_of(r.out)) {
    std::vector<std::string> words;
    std::istringstream in(line);
    for (std::string w; in >> w;) words.push_back(w);
    if (words.size() >= 3 && words[0] == "shard" && words[1] == "threads" && words[2] == "slabs") {
      header = true;
    } else if (header && words.size() >= 3 && is_number(words[1]) && is_number(words[2])) {
      rows.push_back(words[0]);
    }
  }
  CHECK(header);
  CHECK(rows == std::vector<std::string>{"0", "1"});
  CHECK_FALSE(contains(r.out, " ? "));  // every field of this daemon's document is understood
}

TEST_CASE("sydradb stats --json prints the daemon's document") {
  Daemon d;
  INFO("daemon stderr:\n", d.log());
  const RunResult r = run_sydradb({"stats", "--json", "--url", d.url()});
  INFO("stdout:\n", r.out, "\nstderr:\n", r.err);
  CHECK(r.status == exited_with(0));
  const nlohmann::json doc = nlohmann::json::parse(r.out);
  CHECK(doc["allocator_mode"] == "sharded");
  CHECK(doc["small_pool"]["shard_count"] == 2);
  CHECK(doc["small_pool"]["shards"].size() == 2);
}

TEST_CASE("sydradb stats: --url wins over SYDRADB_CONTROL_URL, and the data listener answers too") {
  Daemon d;
  INFO("daemon stderr:\n", d.log());
  const std::string nowhere = "http://127.0.0.1:" + std::to_string(unused_port());
  const RunResult from_env = run_sydradb({"stats", "--json"}, {"SYDRADB_CONTROL_URL=" + d.control_url()});
  CHECK(from_env.status == exited_with(0));
  CHECK(nlohmann::json::parse(from_env.out)["small_pool"]["shard_count"] == 2);
  const RunResult flag = run_sydradb({"stats", "--url", d.url()}, {"SYDRADB_CONTROL_URL=" + nowhere});
  CHECK(flag.status == exited_with(0));
  CHECK(contains(flag.out, d.url()));
  const RunResult env_unreachable = run_sydradb({"stats"}, {"SYDRADB_CONTROL_URL=" + nowhere});
  CHECK(env_unreachable.status == exited_with(kExitUnreachable));
  CHECK(contains(env_unreachable.err, nowhere.substr(7)));
}

TEST_CASE("sydradb stats without a daemon: exit 3 and one line naming the URL") {
  const std::string url = "http://127.0.0.1:" + std::to_string(unused_port());
  const RunResult r = run_sydradb({"stats", "--url", url});
  INFO("stdout:\n", r.out, "\nstderr:\n", r.err);
  CHECK(r.status == exited_with(kExitUnreachable));
  CHECK(lines_of(r.err).size() == 1);
  CHECK(contains(r.err, "127.0.0.1:" + url.substr(url.rfind(':') + 1)));
  CHECK(r.out.empty());
}

TEST_CASE("sydradb stats with a bad URL: exit 2") {
  const RunResult r = run_sydradb({"stats", "--url", "https://127.0.0.1:1"});
  INFO("stderr:\n", r.err);
  CHECK(r.status == exited_with(kExitUsage));
  CHECK(lines_of(r.err).size() == 1);
}

TEST_CASE("sydradb stats against a daemon with a token: exit 4 without it, 0 with it") {
  Daemon d(DaemonOptions().env({"SYDRADB_TOKEN=tok-123"}));
  INFO("daemon stderr:\n", d.log());
  {
    const RunResult r = run_sydradb({"stats", "--url", d.url()});
    INFO("stderr:\n", r.err);
    CHECK(r.status == exited_with(kExitHttpError));
    CHECK(lines_of(r.err).size() == 1);
    CHECK(contains(r.err, "401"));
    CHECK(r.out.empty());
  }
  {
    const RunResult r = run_sydradb({"stats", "--url", d.url(), "--token", "wrong"});
    CHECK(r.status == exited_with(kExitHttpError));
  }
  {
    const RunResult r = run_sydradb({"stats", "--url", d.url(), "--token", "tok-123"});
    INFO("stderr:\n", r.err);
    CHECK(r.status == exited_with(0));
    CHECK(contains(r.out, "sharded"));
  }
  {
    const RunResult r = run_sydradb({"stats", "--url", d.url()}, {"SYDRADB_TOKEN=tok-123"});
    INFO("stderr:\n", r.err);
    CHECK(r.status == exited_with(0));
  }
}

TEST_CASE("sydradb stats --watch refreshes until stopped") {
  Daemon d;
  INFO("daemon stderr:\n", d.log());
  // Killed by the harness after the timeout; by then it has printed a few frames.
  const RunResult r =
      run_sydradb({"stats", "--url", d.control_url(), "--watch", "0.2"}, {}, patience(1500ms));
  CHECK(r.timed_out);
  std::size_t frames = 0;
  for (const std::string& line : lines_of(r.out)) frames += line.rfind("sydradb stats every", 0) == 0;
  CHECK(frames >= 3);
}

}  // namespace
}  // namespace sydra::itest
