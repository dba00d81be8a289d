// The application behind the HTTP layer: authentication, the route table and the
// handlers. Knows requests and responses (server/http/request.hpp), not sockets or Beast.
#pragma once

#include <chrono>
#include <memory>

#include "alloc/small_pool_allocator.hpp"
#include "server/config.hpp"
#include "server/http/router.hpp"
#include "server/metrics.hpp"

namespace sydra::storage {
class Engine;
}

namespace sydra::server {

class StorageApi;

class App {
 public:
  // With an engine, the storage endpoints (server/api/storage_api.hpp) are routed too.
  App(const Config& config, alloc::SmallPoolAllocator& allocator, RequestMetrics& metrics,
      ServerCounters& counters, storage::Engine* engine = nullptr);
  ~App();

  // Authentication, then routing. The route label is for metrics.
  http::Router::Result handle(const http::Request& request) const;

  RequestMetrics& metrics() const noexcept { return metrics_; }
  ServerCounters& counters() const noexcept { return counters_; }
  const Config& config() const noexcept { return config_; }
  alloc::SmallPoolAllocator& allocator() const noexcept { return allocator_; }

 private:
  bool authorized(const http::Request& request) const noexcept;
  http::Response status() const;
  http::Response alloc_stats() const;
  http::Response metrics_text() const;

  const Config& config_;
  alloc::SmallPoolAllocator& allocator_;
  RequestMetrics& metrics_;
  ServerCounters& counters_;
  storage::Engine* engine_;
  std::unique_ptr<StorageApi> storage_api_;
  http::Router router_;
  std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
};

}  // namespace sydra::server
