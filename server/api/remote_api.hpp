// Prometheus' remote storage endpoints: HTTP requests in, storage::Engine calls, protobuf
// out. The wire format is server/prom/remote.hpp; this file adds the HTTP answers.
//
//   POST /api/v1/write   remote_write 1.0: a snappy-compressed WriteRequest → 204
//   POST /api/v1/read    remote_read: a snappy-compressed ReadRequest → a snappy-compressed
//                        ReadResponse (SAMPLES)
//
// Statuses follow the protocol: a request that can never succeed gets a 4xx, which
// Prometheus drops without retrying, and stores nothing; only what a retry can fix (the
// memtable full, the disk full) gets a 5xx, which Prometheus retries. docs/http-api.md.
#pragma once

#include "server/api/worker_context.hpp"
#include "server/config.hpp"
#include "server/http/request.hpp"
#include "server/metrics.hpp"

namespace sydra::storage {
class Engine;
}

namespace sydra::server {

class RemoteApi {
 public:
  RemoteApi(storage::Engine& engine, const Config& config);

  // Decodes with the worker's decoder into its batch, and stores through its scratch buffers.
  http::Response write(const http::Request& request, WorkerContext& worker) const;
  http::Response read(const http::Request& request) const;

  const RemoteCounters& counters() const noexcept { return counters_; }

 private:
  storage::Engine& engine_;
  const Config& config_;
  mutable RemoteCounters counters_;  // atomics, counted from any worker
};

}  // namespace sydra::server
