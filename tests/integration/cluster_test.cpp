// deploy/cluster/run.sh for real: 3 sydradb nodes, vmagent (Debian package victoria-metrics)
// as the writer with one remote_write per node and hashmod relabeling, and a reader
// Prometheus with one remote_read per node. The test pushes known samples into vmagent and
// checks that every series lands on its node (exactly one; with replicas=2 exactly two, and
// later samples of a series follow it), that a PromQL sum over the reader equals the sum of
// what was written, and, with replicas=2, that stopping a node loses no query result.
#include <doctest/doctest.h>

#include <unistd.h>

#include <csignal>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "daemon_harness.hpp"
#include "prometheus_harness.hpp"

namespace sydra::itest {
namespace {

using nlohmann::json;

constexpr int kNodes = 3;
constexpr int kSeries = 30;

// The script with its processes: started on a free port range, stopped (SIGTERM: it stops
// what it started) when it goes out of scope.
class Cluster {
 public:
  explicit Cluster(int replicas) {
    // A port another process takes between the choice and the bind makes run.sh fail: then
    // again on other ports.
    for (int attempt = 0; attempt < 3; ++attempt) {
      if (start(replicas)) return;
      REQUIRE_MESSAGE(contains(log(), "already in use"), "run.sh exited:\n", log());
    }
    FAIL("run.sh found its ports taken three times:\n", log());
  }
  ~Cluster() {
    ::kill(pid_, SIGTERM);
    const auto status = wait_exit(pid_, patience(60s));
    if (!status) ::kill(pid_, SIGKILL);
    CHECK_MESSAGE(status == exited_with(0), "run.sh:\n", log());
  }
  Cluster(const Cluster&) = delete;
  Cluster& operator=(const Cluster&) = delete;

  // Starts run.sh; false if it exited before it was ready.
  bool start(int replicas) {
    base_ = unused_port_range(2 * kNodes + 2);
    ChildOptions options;
    options.stdout_path = dir_.file("run.out");
    options.stderr_path = dir_.file("run.log");
    pid_ = spawn({"/bin/bash", SYDRA_SOURCE_DIR "/deploy/cluster/run.sh", "--dir", dir_.path(), "--base-port",
                  std::to_string(base_), "--replicas", std::to_string(replicas), "--writer", "vmagent",
                  "--sydradb", sydradb_binary()},
                 options);
    const auto deadline = Clock::now() + patience(60s);
    while (read_file(dir_.file("cluster.env")).empty()) {
      if (!is_running(pid_)) {
        wait_exit(pid_, patience(5s));
        return false;
      }
      REQUIRE_MESSAGE(Clock::now() < deadline, "run.sh not ready in time:\n", log());
      std::this_thread::sleep_for(100ms);
    }
    return true;
  }

  std::uint16_t node_port(int i) const { return static_cast<std::uint16_t>(base_ + 2 * i); }
  std::uint16_t writer_port() const { return static_cast<std::uint16_t>(base_ + 2 * kNodes); }
  std::uint16_t reader_port() const { return static_cast<std::uint16_t>(base_ + 2 * kNodes + 1); }
  pid_t node_pid(int i) const {
    return std::stoi(read_file(dir_.file("pids/node" + std::to_string(i) + ".pid")));
  }
  std::string log() const {
    std::string all = read_file(dir_.file("run.out")) + read_file(dir_.file("run.log"));
    for (const char* name : {"node0", "node1", "node2", "writer", "reader"})
      all += std::string("\n--- ") + name + ":\n" +
             last_bytes(read_file(dir_.file(std::string("logs/") + name + ".log")), 2000);
    return all;
  }

 private:
  TempDir dir_;
  std::uint16_t base_ = 0;
  pid_t pid_ = -1;
};

// cluster_value{host="hK"} = K + 0.5 at `ts`, pushed into vmagent in Prometheus text format.
void push(const Cluster& c, std::int64_t ts) {
  std::string body;
  for (int k = 0; k < kSeries; ++k)
    body += "cluster_value{host=\"h" + std::to_string(k) + "\"} " + std::to_string(k) + ".5 " +
            std::to_string(ts) + "\n";
  Connection conn(c.writer_port());
  const HttpResponse r = conn.roundtrip(make_request("POST", "/api/v1/import/prometheus", {}, body));
  REQUIRE_MESSAGE(r.status / 100 == 2, r.raw);
}

// host → the nodes holding cluster_value for it, once every series is on `replicas` nodes
// with `points` points each (bounded wait).
std::map<std::string, std::set<int>> placement(const Cluster& c, int replicas, int points) {
  std::map<std::string, std::set<int>> where;
  const auto deadline = Clock::now() + patience(30s);
  for (;;) {
    where.clear();
    bool complete = true;
    for (int i = 0; i < kNodes; ++i) {
      const json select =
          http_get(c.node_port(i), "/api/v1/query/select?match=cluster_value&start=0&end=9999999999999")
              .json();
      for (const json& s : select["series"]) {
        where[s["tags"]["host"].get<std::string>()].insert(i);
        complete = complete && static_cast<int>(s["points"].size()) == points;
      }
    }
    std::size_t held = 0;
    for (const auto& [host, nodes] : where) held += nodes.size();
    if ((complete && where.size() == kSeries && held == std::size_t{kSeries} * replicas) ||
        Clock::now() > deadline)
      return where;
    std::this_thread::sleep_for(100ms);
  }
}

double reader_sum(const Cluster& c, std::int64_t ts) {
  const HttpResponse r = http_get(c.reader_port(), "/api/v1/query?query=" + url_encode("sum(cluster_value)") +
                                                       "&time=" + std::to_string(ts / 1000.0));
  const json j = json::parse(r.body);
  REQUIRE_MESSAGE(j["status"] == "success", r.body);
  REQUIRE_MESSAGE(j["data"]["result"].size() == 1, r.body);
  return std::stod(j["data"]["result"][0]["value"][1].get<std::string>());
}

constexpr double kWrittenSum = kSeries * (kSeries - 1) / 2.0 + kSeries * 0.5;

TEST_CASE(
    "cluster: hashmod sends every series to exactly one node, and the reader's sum is the written sum") {
  Cluster c(1);
  INFO("cluster logs:\n", c.log());
  const std::int64_t t0 = now_ms() - 60'000;
  push(c, t0);
  const auto first = placement(c, 1, 1);
  REQUIRE(first.size() == kSeries);
  std::set<int> used;
  for (const auto& [host, nodes] : first) {
    CAPTURE(host);
    CHECK(nodes.size() == 1);
    used.insert(*nodes.begin());
  }
  CHECK(used.size() == kNodes);  // 30 series over 3 nodes: each gets some
  push(c, t0 + 10'000);          // later samples go where their series is
  CHECK(placement(c, 1, 2) == first);
  CHECK(reader_sum(c, t0 + 10'000) == kWrittenSum);
}

TEST_CASE(
    "cluster: with replicas=2 every series is on two nodes, and one node stopped loses no query result") {
  Cluster c(2);
  INFO("cluster logs:\n", c.log());
  const std::int64_t t0 = now_ms() - 60'000;
  push(c, t0);
  const auto where = placement(c, 2, 1);
  REQUIRE(where.size() == kSeries);
  for (const auto& [host, nodes] : where) {
    CAPTURE(host);
    CHECK(nodes.size() == 2);
  }
  CHECK(reader_sum(c, t0) == kWrittenSum);  // the replicas merged, not added
  ::kill(c.node_pid(1), SIGTERM);
  const auto deadline = Clock::now() + patience(10s);
  while (Connection::try_connect(c.node_port(1)) == 0 && Clock::now() < deadline)
    std::this_thread::sleep_for(50ms);
  REQUIRE(Connection::try_connect(c.node_port(1)) != 0);
  CHECK(reader_sum(c, t0) == kWrittenSum);
}

}  // namespace
}  // namespace sydra::itest
