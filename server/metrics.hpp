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

// The remote storage endpoints' figures (POST /api/v1/write and /api/v1/read), counted by
// their handlers from any worker.
struct RemoteCounters {
  // Why a remote_write or remote_read request was refused; the `reason` label.
  enum Reason : std::uint8_t {
    media_type,     // 415: Content-Type or Content-Encoding not the protocol's
    snappy,         // 400: not a snappy block
    too_large,      // 413: decompressed over max_body_bytes, or an answer over the query limits
    protobuf,       // 400: not the protocol's message
    labels,         // 400: no __name__, unsorted or duplicate labels, NUL bytes
    histograms,     // 400: native histograms
    matchers,       // 400: a bad matcher (remote_read)
    response_type,  // 400: SAMPLES not accepted (remote_read)
    busy,           // 503: memtable full, retry
    disk_full,      // 503: no space for the WAL, retry
    storage_error,  // 500: another WAL I/O failure
    kReasons
  };
  static constexpr std::array<const char*, kReasons> kReasonNames = {
      "media_type", "snappy",        "too_large", "protobuf",  "labels",       "histograms",
      "matchers",   "response_type", "busy",      "disk_full", "storage_error"};

  std::atomic<std::uint64_t> write_samples{0};  // samples stored
  std::atomic<std::uint64_t> write_series{0};   // time series (messages) stored
  std::array<std::atomic<std::uint64_t>, kReasons> write_rejected{};
  std::atomic<std::uint64_t> read_queries{0};
  std::atomic<std::uint64_t> read_series{0};
  std::atomic<std::uint64_t> read_samples{0};
  std::array<std::atomic<std::uint64_t>, kReasons> read_rejected{};
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
  const RemoteCounters* remote = nullptr;         // remote_write/remote_read, when an engine runs
};

std::string render_metrics(const MetricsInput& input);

// Every metric name render_metrics() can emit (for the docs drift test).
std::vector<std::string> metric_names();

}  // namespace sydra::server
