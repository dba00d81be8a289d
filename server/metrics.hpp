// Everything exported in Prometheus text format (0.0.4) lives here, under the sydradb_
// prefix, with units in the names. docs/metrics.md lists every metric.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "alloc/stats.hpp"
#include "server/http/server.hpp"

namespace sydra::storage {
struct EngineStats;
}

namespace sydra::server {

// Request counts and latency, by listener, route and status. Each worker writes its own
// slot (its mutex is uncontended: only a scrape takes it too); a scrape merges the slots.
class RequestMetrics {
 public:
  static constexpr std::array<double, 13> kBounds = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                                                     0.025,  0.05,    0.1,    0.25,  0.5,    1.0};
  struct Series {
    std::uint64_t count = 0;
    double sum_seconds = 0;
    std::array<std::uint64_t, kBounds.size()> buckets{};  // not cumulative
  };

  class Slot {
   public:
    explicit Slot(std::string listener) : listener_(std::move(listener)) {}
    // Finds the route's series without allocating once it exists.
    void record(std::string_view route, int status, double seconds);

   private:
    friend class RequestMetrics;
    mutable std::mutex mutex_;
    const std::string listener_;
    std::map<std::string, std::map<int, Series>, std::less<>> series_;  // route → status → series
  };

  // A new slot for a worker of `listener`; add them all before the workers start. The
  // reference stays valid as long as this object.
  Slot& add_slot(std::string listener);

  struct Key {
    std::string listener;
    std::string route;
    int status = 0;
    auto operator<=>(const Key&) const = default;
  };
  std::map<Key, Series> merged() const;

 private:
  std::vector<std::unique_ptr<Slot>> slots_;
};

// One listener's connection counters, as /metrics shows them.
struct ListenerCounters {
  std::string_view listener;  // "data", "control"
  const http::ConnectionCounters* counters;
};

struct MetricsInput {
  const alloc::AllocatorStats& alloc;
  const RequestMetrics& requests;
  std::vector<ListenerCounters> listeners;
  double uptime_seconds;
  unsigned workers;
  const storage::EngineStats* storage = nullptr;  // the storage figures, when an engine runs
};

std::string render_metrics(const MetricsInput& input);

// Every metric name render_metrics() can emit (for the docs drift test).
std::vector<std::string> metric_names();

}  // namespace sydra::server
