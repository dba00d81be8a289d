// GET /metrics as Prometheus' own linter reads it: the real daemon's exposition, after
// traffic that fills every family (ingest, queries, errors, allocator fallbacks), piped into
// `promtool check metrics` (Debian package prometheus, installed by deploy/setup.sh), which
// must exit 0 with nothing to say. And sample values in their shortest round-trip form.
#include <doctest/doctest.h>

#include <unistd.h>

#include <charconv>
#include <cstdlib>
#include <string>
#include <vector>

#include "daemon_harness.hpp"

namespace sydra::itest {
namespace {

constexpr const char* kPromtool = "/usr/bin/promtool";

// Requests that make every metric family carry samples.
void traffic(std::uint16_t port) {
  Connection c(port);
  std::string body;
  for (int i = 0; i < 200; ++i)
    body += R"({"series":"m","tags":{"host":"h)" + std::to_string(i % 7) + R"("},"ts":)" + std::to_string(i) +
            R"(,"value":)" + std::to_string(i * 0.25) + "}\n";
  body += "not json\n";
  CHECK(c.roundtrip(make_request("POST", "/api/v1/ingest", {}, body)).status == 200);
  CHECK(c.roundtrip(make_request("POST", "/api/v1/query/range", {},
                                 R"({"series":"m","tags":{"host":"h1"},"start":0,"end":1000,"step":10})"))
            .status == 200);
  CHECK(c.roundtrip(make_request("GET", "/no/such/path")).status == 404);
  CHECK(c.roundtrip(make_request("GET", "/api/v1/series")).status == 200);
  CHECK(c.roundtrip(make_request("GET", "/debug/alloc/stats")).status == 200);
}

TEST_CASE("promtool check metrics passes on the daemon's real /metrics, with nothing to say") {
  REQUIRE_MESSAGE(::access(kPromtool, X_OK) == 0, kPromtool,
                  " is missing: deploy/setup.sh installs it (Debian package prometheus)");
  for (const char* mode : {"sharded", "legacy"}) {
    CAPTURE(mode);
    Daemon d(DaemonOptions().set({std::string("allocator_mode=") + mode}));
    INFO("daemon stderr:\n", d.log());
    traffic(d.port());
    const HttpResponse r = http_get(d.port(), "/metrics");
    REQUIRE(r.status == 200);
    CHECK(contains(r.body, "sydradb_alloc_fallback_allocations_by_size_total{size_range=\"[0,512]\"}"));
    CHECK(
        contains(r.body, "sydradb_alloc_fallback_allocations_by_size_total{size_range=\"(1048576,+Inf)\"}"));
    CHECK(contains(r.body, "sydradb_http_request_duration_seconds_bucket{"));

    const TempDir dir;
    write_file(dir.file("metrics.txt"), r.body);
    ChildOptions options;
    options.stdout_path = dir.file("promtool.out");
    options.stderr_path = dir.file("promtool.err");
    const pid_t pid = spawn(
        {"/bin/sh", "-c", "exec \"$0\" check metrics < \"$1\"", kPromtool, dir.file("metrics.txt")}, options);
    const auto status = wait_exit(pid, patience(30s));
    if (!status) ::kill(pid, SIGKILL);
    REQUIRE_MESSAGE(status.has_value(), "promtool did not finish");
    const std::string said = read_file(options.stdout_path) + read_file(options.stderr_path);
    CHECK_MESSAGE(*status == exited_with(0), "promtool: ", said);
    CHECK_MESSAGE(said.empty(), "promtool: ", said);
  }
}

TEST_CASE("/metrics values print in their shortest round-trip form (895.63496187, not 895.63496186999998)") {
  Daemon d;
  INFO("daemon stderr:\n", d.log());
  traffic(d.port());
  const std::string text = http_get(d.port(), "/metrics").body;
  std::size_t fractions = 0;
  for (const std::string& line : lines_of(text)) {
    if (line.empty() || line[0] == '#') continue;
    const std::string value = line.substr(line.rfind(' ') + 1);
    if (value.find_first_of(".eE") == std::string::npos) continue;  // integers print as integers
    ++fractions;
    const double parsed = std::strtod(value.c_str(), nullptr);
    char shortest[32];
    const auto [end, ec] =
        std::to_chars(shortest, shortest + sizeof shortest, parsed, std::chars_format::general);
    CHECK_MESSAGE(std::string(shortest, end) == value, line);
  }
  CHECK(fractions >= 3);  // uptime, the request duration sums, the fragmentation ratio at least
}

}  // namespace
}  // namespace sydra::itest
