// Everything exported in Prometheus text format (0.0.4) lives here, under the sydradb_
// prefix, with units in the names. docs/metrics.md lists every metric.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "alloc/stats.hpp"

namespace sydra::storage {
struct EngineStats;
}

namespace sydra::server {

// Request counts and latency, by route and status. Each worker writes its own slot (its
// mutex is uncontended); a scrape merges the slots.
class RequestMetrics {
 public:
  static constexpr std::array<double, 13> kBounds = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                                                     0.025,  0.05,    0.1,    0.25,  0.5,    1.0};
  struct Series {
    std::uint64_t count = 0;
    double sum_seconds = 0;
    std::array<std::uint64_t, kBounds.size()> buckets{};  // not cumulative
  };
  using Key = std::pair<std::string, int>;  // route, status

  explicit RequestMetrics(unsigned slots);
  void record(unsigned slot, std::string_view route, int status, double seconds);
  std::map<Key, Series> merged() const;

 private:
  struct Slot {
    mutable std::mutex mutex;
    std::map<Key, Series> series;
  };
  std::vector<std::unique_ptr<Slot>> slots_;
};

// Server-wide gauges and counters written by the HTTP layer.
struct ServerCounters {
  std::atomic<std::uint64_t> connections_active{0};
  std::atomic<std::uint64_t> connections_total{0};
  std::atomic<std::uint64_t> connections_rejected{0};
  std::atomic<std::uint64_t> timeouts{0};
  std::atomic<std::uint64_t> bad_requests{0};
};

struct MetricsInput {
  const alloc::AllocatorStats& alloc;
  const RequestMetrics& requests;
  const ServerCounters& server;
  double uptime_seconds;
  unsigned workers;
  const storage::EngineStats* storage = nullptr;  // the storage figures, when an engine runs
};

std::string render_metrics(const MetricsInput& input);

// Every metric name render_metrics() can emit (for the docs drift test).
std::vector<std::string> metric_names();

}  // namespace sydra::server
