// `sydradb ingest` (NDJSON on standard input) and `sydradb query` against the real daemon:
// the summary with input line numbers, exit codes (0 stored, 5 some lines rejected, 3 no
// daemon), lines over the daemon's limits rejected alone, timestamp unit warnings and
// --precision, and the points read back as a table, CSV and JSON, raw and downsampled; many
// series by a selector, grouped with --by; a malformed selector refused with its position
// (exit 2), a query over the daemon's series limit (exit 4).
#include <doctest/doctest.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "daemon_harness.hpp"

namespace sydra::itest {
namespace {

constexpr int kExitUnreachable = 3;
constexpr int kExitHttpError = 4;
constexpr int kExitRejected = 5;

constexpr std::int64_t kT0 = 1'700'000'000'000;

// `sydradb ingest ARGS... < input_path` through /bin/sh, so the input really is stdin.
RunResult ingest_from_stdin(const TempDir& dir, const std::string& input,
                            const std::vector<std::string>& args, Millis timeout = patience(20s)) {
  const std::string input_path = dir.file("input.ndjson");
  write_file(input_path, input);
  std::string command = "exec \"$0\" ingest";
  std::vector<std::string> argv = {"/bin/sh", "-c", "", sydradb_binary()};
  for (std::size_t i = 0; i < args.size(); ++i) {
    command += " \"$" + std::to_string(i + 1) + "\"";
    argv.push_back(args[i]);
  }
  command += " < \"$" + std::to_string(args.size() + 1) + "\"";
  argv.push_back(input_path);
  argv[2] = command;

  ChildOptions options;
  options.stdout_path = dir.file("ingest.out");
  options.stderr_path = dir.file("ingest.err");
  const pid_t pid = spawn(argv, options);
  RunResult result;
  if (auto status = wait_exit(pid, timeout)) {
    result.status = *status;
  } else {
    ::kill(pid, SIGKILL);
    result.status = wait_exit(pid, patience(5s)).value_or(ExitStatus{});
    result.timed_out = true;
  }
  result.out = read_file(options.stdout_path);
  result.err = read_file(options.stderr_path);
  return result;
}

std::string line(const std::string& series, std::int64_t ts, double value, const std::string& tags_json) {
  return R"({"series":")" + series + R"(","ts":)" + std::to_string(ts) + R"(,"value":)" +
         std::to_string(value) + (tags_json.empty() ? "" : R"(,"tags":)" + tags_json) + "}\n";
}

TEST_CASE("sydradb ingest from stdin, then sydradb query reads the points back") {
  Daemon d;
  INFO("daemon stderr:\n", d.log());
  TempDir scratch;

  // 10 points of cpu{host=h1}, 10 of cpu{host=h2}, tags in either order.
  std::string input;
  for (int i = 0; i < 10; ++i) {
    input += line("cpu", kT0 + i * 1000, i, R"({"host":"h1","dc":"eu"})");
    input += line("cpu", kT0 + i * 1000, 100 + i, R"({"dc":"eu","host":"h2"})");
  }
  {
    const RunResult r = ingest_from_stdin(scratch, input, {"--url", d.url()});
    INFO("stdout:\n", r.out, "\nstderr:\n", r.err);
    CHECK(r.status == exited_with(0));
    CHECK(r.out == "ingested 20, rejected 0 (1 request)\n");
    CHECK(r.err.empty());
  }

  // CSV: h1's points, in order, nothing of h2.
  {
    const RunResult r = run_sydradb({"query", "cpu", std::to_string(kT0), std::to_string(kT0 + 9000), "--tag",
                                     "host=h1", "--tag", "dc=eu", "--csv", "--url", d.url()});
    INFO("stdout:\n", r.out, "\nstderr:\n", r.err);
    CHECK(r.status == exited_with(0));
    std::string expected = "ts,value\n";
    for (int i = 0; i < 10; ++i) expected += std::to_string(kT0 + i * 1000) + "," + std::to_string(i) + "\n";
    CHECK(r.out == expected);
  }
  // JSON, a sub-range, the other series.
  {
    const RunResult r = run_sydradb({"query", "cpu", std::to_string(kT0 + 2000), std::to_string(kT0 + 4000),
                                     "--tag", "dc=eu", "--tag", "host=h2", "--json", "--url", d.url()});
    INFO("stdout:\n", r.out, "\nstderr:\n", r.err);
    CHECK(r.status == exited_with(0));
    CHECK(nlohmann::json::parse(r.out) == nlohmann::json::parse(R"([{"ts":1700000002000,"value":102.0},)"
                                                                R"({"ts":1700000003000,"value":103.0},)"
                                                                R"({"ts":1700000004000,"value":104.0}])"));
  }
  // Downsampled: buckets of 5 s, the max of each.
  {
    const RunResult r =
        run_sydradb({"query", "cpu", std::to_string(kT0), std::to_string(kT0 + 9999), "--tag", "host=h1",
                     "--tag", "dc=eu", "--step", "5s", "--agg", "max", "--csv", "--url", d.url()});
    INFO("stdout:\n", r.out, "\nstderr:\n", r.err);
    CHECK(r.status == exited_with(0));
    CHECK(r.out == "ts,value\n" + std::to_string(kT0) + ",4\n" + std::to_string(kT0 + 5000) + ",9\n");
  }
  // The default table, for a series that does not exist: no points, and it says so (exit 6).
  {
    const RunResult r = run_sydradb({"query", "nosuch", "0", std::to_string(kT0), "--url", d.url()});
    INFO("stdout:\n", r.out, "\nstderr:\n", r.err);
    CHECK(r.status == exited_with(6));
    CHECK(contains(r.out, "(0 points)"));
    CHECK(contains(r.err, "no series is named 'nosuch'"));
  }
  // The table for one point.
  {
    const RunResult r = run_sydradb({"query", "cpu", std::to_string(kT0 + 3000), std::to_string(kT0 + 3000),
                                     "--tag", "host=h1", "--tag", "dc=eu", "--url", d.url()});
    INFO("stdout:\n", r.out, "\nstderr:\n", r.err);
    CHECK(r.status == exited_with(0));
    CHECK(contains(r.out, "1700000003000  2023-11-14T22:13:23.000Z  3\n"));
    CHECK(contains(r.out, "(1 point)"));
  }
}

TEST_CASE("sydradb query with a selector: many series, --by groups, bad selectors and limits") {
  Daemon d(DaemonOptions().set({"max_query_series=3"}));
  INFO("daemon stderr:\n", d.log());
  TempDir scratch;
  // cpu on h1, h2 (dc eu) and h3 (dc us), 10 points each; mem on h1.
  std::string input;
  for (int i = 0; i < 10; ++i) {
    input += line("cpu", kT0 + i * 1000, i, R"({"host":"h1","dc":"eu"})");
    input += line("cpu", kT0 + i * 1000, 10 + i, R"({"host":"h2","dc":"eu"})");
    input += line("cpu", kT0 + i * 1000, 20 + i, R"({"host":"h3","dc":"us"})");
    input += line("mem", kT0 + i * 1000, 30 + i, R"({"host":"h1","dc":"eu"})");
  }
  REQUIRE(ingest_from_stdin(scratch, input, {"--url", d.url()}).status == exited_with(0));
  const std::string start = std::to_string(kT0);
  const std::string end = std::to_string(kT0 + 9999);

  {
    const RunResult r = run_sydradb({"query", R"(cpu{host=~"h[23]",dc!="us"})", start,
                                     std::to_string(kT0 + 1000), "--csv", "--url", d.url()});
    INFO("stdout:\n", r.out, "\nstderr:\n", r.err);
    CHECK(r.status == exited_with(0));
    CHECK(r.out ==
          "series,ts,value\n"
          "\"cpu{dc=\"\"eu\"\",host=\"\"h2\"\"}\"," +
              start +
              ",10\n"
              "\"cpu{dc=\"\"eu\"\",host=\"\"h2\"\"}\"," +
              std::to_string(kT0 + 1000) + ",11\n");
  }
  {
    // max by (dc) of the 5 s maxima of every cpu series.
    const RunResult r = run_sydradb(
        {"query", "cpu", start, end, "--step", "5s", "--agg", "max", "--by", "dc", "--url", d.url()});
    INFO("stdout:\n", r.out, "\nstderr:\n", r.err);
    CHECK(r.status == exited_with(0));
    CHECK(contains(r.out, "{dc=\"eu\"}  (2 series)\n"));
    CHECK(contains(r.out, std::to_string(kT0 + 5000) + "  2023-11-14T22:13:25.000Z  19\n"));
    CHECK(contains(r.out, "{dc=\"us\"}  (1 series)\n"));
    CHECK(contains(r.out, "(2 groups, 4 points)"));
  }
  {
    const RunResult r = run_sydradb({"query", R"({__name__=~"cpu|mem",host="h1"})", start, end, "--step",
                                     "10s", "--across", "sum", "--json", "--url", d.url()});
    INFO("stdout:\n", r.out, "\nstderr:\n", r.err);
    CHECK(r.status == exited_with(0));
    const nlohmann::json doc = nlohmann::json::parse(r.out);
    CHECK(doc["groups"][0]["series_count"] == 2);
    CHECK(doc["groups"][0]["points"][0]["value"] == 4.5 + 34.5);  // the two averages summed
  }
  {
    const RunResult r = run_sydradb({"query", R"(cpu{host~"h1"})", start, end, "--url", d.url()});
    CHECK(r.status == exited_with(2));
    CHECK(r.err ==
          "sydradb query: selector: position 9: expected '=', '!=', '=~' or '!~' after the label name "
          "'host', got '~'\n");
  }
  {
    const RunResult r = run_sydradb({"query", R"({host=~"h.*"})", start, end, "--url", d.url()});
    CHECK(r.status == exited_with(kExitHttpError));
    CHECK(contains(r.err, "HTTP 413: the selector matches 4 series, more than max_query_series=3"));
  }
}

TEST_CASE("sydradb ingest: malformed lines among good ones, numbered in the input across batches, exit 5") {
  Daemon d;
  INFO("daemon stderr:\n", d.log());
  TempDir scratch;
  const std::string input = line("m", kT0, 1, "") +      // 1
                            "not json\n" +               // 2
                            "\n" +                       // 3 (blank: neither)
                            line("m", kT0 + 1, 2, "") +  // 4
                            R"({"series":"m","ts":1.5,"value":1})"
                            "\n" +                       // 5
                            line("m", kT0 + 2, 3, "") +  // 6
                            R"({"series":"m","ts":7})"
                            "\n" +                      // 7
                            line("m", kT0 + 3, 4, "");  // 8
  const RunResult r = ingest_from_stdin(scratch, input, {"--url", d.url(), "--batch-lines", "3"});
  INFO("stdout:\n", r.out, "\nstderr:\n", r.err);
  CHECK(r.status == exited_with(kExitRejected));
  const std::vector<std::string> out = lines_of(r.out);
  REQUIRE(out.size() == 4);
  CHECK(out[0] == "ingested 4, rejected 3 (3 requests)");
  CHECK(out[1].rfind("  line 2: ", 0) == 0);
  CHECK(out[2].rfind("  line 5: \"ts\" must be an integer", 0) == 0);
  CHECK(out[3] == "  line 7: missing \"value\"");

  // The good points are stored.
  const RunResult q =
      run_sydradb({"query", "m", std::to_string(kT0), std::to_string(kT0 + 10), "--csv", "--url", d.url()});
  CHECK(q.status == exited_with(0));
  CHECK(lines_of(q.out).size() == 5);  // header + 4 points
}

TEST_CASE(
    "sydradb ingest: a line over max_line_bytes is rejected alone, with its number, the rest is stored") {
  Daemon d(DaemonOptions().set({"max_line_bytes=1024"}));
  INFO("daemon stderr:\n", d.log());
  TempDir scratch;
  const std::string long_line = R"({"series":"m","ts":1,"value":1,"pad":")" + std::string(2000, 'x') + "\"}";
  const std::string input = line("m", kT0, 1, "") + long_line + "\n" + line("m", kT0 + 1, 2, "");
  const RunResult r = ingest_from_stdin(scratch, input, {"--url", d.url()});
  INFO("stdout:\n", r.out, "\nstderr:\n", r.err);
  CHECK(r.status == exited_with(kExitRejected));
  CHECK(r.out == "ingested 2, rejected 1 (1 request)\n  line 2: the line is " +
                     std::to_string(long_line.size()) + " bytes, over max_line_bytes=1024\n");
  CHECK(r.err.empty());
  const RunResult q =
      run_sydradb({"query", "m", std::to_string(kT0), std::to_string(kT0 + 1), "--csv", "--url", d.url()});
  CHECK(q.out == "ts,value\n" + std::to_string(kT0) + ",1\n" + std::to_string(kT0 + 1) + ",2\n");
}

TEST_CASE(
    "sydradb ingest: batches over max_body_bytes are split until they fit, a line over it alone is "
    "rejected") {
  Daemon d(DaemonOptions().set({"max_body_bytes=1024", "max_line_bytes=4096"}));
  INFO("daemon stderr:\n", d.log());
  TempDir scratch;
  std::string input;
  for (int i = 0; i < 40; ++i) input += line("m", kT0 + i, i, "");  // ~55 bytes each, 2 KiB in all
  const std::string huge = R"({"series":"m","ts":5,"value":5,"pad":")" + std::string(1500, 'y') + "\"}";
  input += huge + "\n";  // line 41: over max_body_bytes on its own
  for (int i = 40; i < 50; ++i) input += line("m", kT0 + i, i, "");
  const RunResult r = ingest_from_stdin(scratch, input, {"--url", d.url(), "--batch-bytes", "100000"});
  INFO("stdout:\n", r.out, "\nstderr:\n", r.err);
  CHECK(r.status == exited_with(kExitRejected));
  const std::vector<std::string> out = lines_of(r.out);
  REQUIRE(out.size() == 2);
  CHECK(out[0].rfind("ingested 50, rejected 1 (", 0) == 0);
  CHECK(out[1].rfind("  line 41: refused by the daemon: ", 0) == 0);
  CHECK(contains(out[1], "max_body_bytes"));
  const RunResult q =
      run_sydradb({"query", "m", std::to_string(kT0), std::to_string(kT0 + 100), "--csv", "--url", d.url()});
  CHECK(lines_of(q.out).size() == 51);  // header + 50 points
}

TEST_CASE("sydradb ingest: seconds sent as milliseconds are warned about, --precision s stores them right") {
  Daemon d;
  INFO("daemon stderr:\n", d.log());
  TempDir scratch;
  const std::int64_t now_s =
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
          .count();
  std::string input;
  for (int i = 0; i < 3; ++i) input += line("load", now_s - 60 + i, i, "");
  {
    const RunResult r = ingest_from_stdin(scratch, input, {"--url", d.url()});
    INFO("stdout:\n", r.out, "\nstderr:\n", r.err);
    CHECK(r.status == exited_with(0));  // stored, as given: a warning is not a rejection
    const std::vector<std::string> out = lines_of(r.out);
    REQUIRE(out.size() == 2);
    CHECK(out[0] == "ingested 3, rejected 0 (1 request)");
    CHECK(out[1].rfind("  warning: line 1 and 2 more: \"ts\" " + std::to_string(now_s - 60) +
                           " looks like seconds but is read as milliseconds (1970-",
                       0) == 0);
    CHECK(contains(out[1], "pass --precision s, or send milliseconds"));
    CHECK(contains(d.log(), "looks like seconds since the Unix epoch but is read as milliseconds"));
    // Stored in 1970: the last hour has nothing.
    const RunResult q = run_sydradb({"query", "load", "now-1h", "now", "--csv", "--url", d.url()});
    CHECK(q.out == "ts,value\n");
  }
  {
    const RunResult r = ingest_from_stdin(scratch, input, {"--url", d.url(), "--precision", "s"});
    INFO("stdout:\n", r.out, "\nstderr:\n", r.err);
    CHECK(r.status == exited_with(0));
    CHECK(r.out == "ingested 3, rejected 0 (1 request)\n");
    const RunResult q = run_sydradb({"query", "load", "now-1h", "now", "--csv", "--url", d.url()});
    CHECK(q.out == "ts,value\n" + std::to_string((now_s - 60) * 1000) + ",0\n" +
                       std::to_string((now_s - 59) * 1000) + ",1\n" + std::to_string((now_s - 58) * 1000) +
                       ",2\n");
  }
}

TEST_CASE("sydradb ingest and query without a daemon: exit 3") {
  TempDir scratch;
  const std::string url = "http://127.0.0.1:" + std::to_string(unused_port());
  const RunResult r = ingest_from_stdin(scratch, line("m", 1, 1, ""), {"--url", url});
  INFO("stdout:\n", r.out, "\nstderr:\n", r.err);
  CHECK(r.status == exited_with(kExitUnreachable));
  CHECK(lines_of(r.err).size() == 1);
  const RunResult q = run_sydradb({"query", "m", "0", "1", "--url", url});
  CHECK(q.status == exited_with(kExitUnreachable));
}

}  // namespace
}  // namespace sydra::itest
