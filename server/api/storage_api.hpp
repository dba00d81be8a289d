// The storage endpoints: HTTP requests in, storage::Engine calls, JSON out. The HTTP layer
// knows nothing of storage and the engine nothing of HTTP; this file joins them.
//
//   POST     /api/v1/ingest        NDJSON body (?precision=s|ms|us|ns) → {"ingested","rejected",
//                                  "errors"[,"warnings"]}
//   GET|POST /api/v1/query/range   one series' points in [start, end], optionally downsampled
//   GET|POST /api/v1/query/select  many series by a selector (matchers over the tag index),
//                                  optionally downsampled and aggregated across series by labels
//   POST     /api/v1/query/find    series ids by tags (and/or)
//   GET      /api/v1/series        every series with its tags (?series=NAME, ?tags={...} filter)
//
// Requests, answers and errors are documented in docs/http-api.md.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <limits>

#include "server/api/worker_context.hpp"
#include "server/config.hpp"
#include "server/http/request.hpp"

namespace sydra::storage {
class Engine;
}

namespace sydra::server {

// At most one log line a second, from any thread; the next one says how many were left out
// (a client that keeps sending seconds must not flood the log).
class LogThrottle {
 public:
  void log(const std::function<void(std::uint64_t unlogged)>& write);

 private:
  static constexpr std::int64_t kPeriodMs = 1000;
  std::atomic<std::int64_t> last_ms_{std::numeric_limits<std::int64_t>::min() / 2};
  std::atomic<std::uint64_t> unlogged_{0};
};

// The handlers; their routes (paths, methods, access) are in App's route table.
class StorageApi {
 public:
  StorageApi(storage::Engine& engine, const Config& config);

  // Parses into the worker's batch with its parser, and stores through its scratch buffers.
  http::Response ingest(const http::Request& request, WorkerContext& worker) const;
  http::Response query_range(const http::Request& request) const;
  http::Response select(const http::Request& request) const;
  http::Response find(const http::Request& request) const;
  http::Response series(const http::Request& request) const;

 private:
  storage::Engine& engine_;
  const Config& config_;
  mutable LogThrottle unit_warnings_;  // ingest: timestamps that look like another unit
};

}  // namespace sydra::server
