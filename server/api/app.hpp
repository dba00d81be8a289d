// The application behind the HTTP layer: the route table (every route with where it is
// served and who may call it), the handlers, and what the two http::Servers need — their
// options and hooks. Knows requests and responses (server/http/), not sockets or Beast.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "alloc/small_pool_allocator.hpp"
#include "server/api/worker_context.hpp"
#include "server/config.hpp"
#include "server/http/router.hpp"
#include "server/http/server.hpp"
#include "server/metrics.hpp"

namespace sydra::storage {
class Engine;
}

namespace sydra::server {

class StorageApi;
class RemoteApi;

// Where a route is served.
enum class Plane : std::uint8_t {
  // Control routes: the control listener, and the data listener too, so that one port is
  // enough for a scraper or a proxy (there they may wait behind data requests).
  control,
  // Data routes: the data listener only; the control listener answers 421 naming it.
  data,
};

class App {
 public:
  // With an engine, the storage routes are served too.
  App(const Config& config, alloc::SmallPoolAllocator& allocator, storage::Engine* engine = nullptr);
  ~App();
  App(const App&) = delete;
  App& operator=(const App&) = delete;

  // What an http::Server for `listener` needs. The hooks build, on each worker's thread, a
  // WorkerContext and a handler that answers with this App's routes, records the request
  // metrics, writes the access log and passes the allocator's quiescent points.
  http::ServerOptions server_options(Listener listener) const;
  http::ServerHooks hooks(Listener listener);
  http::ConnectionCounters& connections(Listener listener) noexcept;
  // The port a listener got (with port 0): /status reports it, and the control listener's
  // 421 names the data listener's address.
  void set_bound_port(Listener listener, std::uint16_t port) noexcept;

  // A context for worker `id` of `listener`, bound to its allocator shard (call on the
  // worker's thread), and the answer such a worker gives to a request.
  std::unique_ptr<WorkerContext> make_worker_context(Listener listener, unsigned id);
  http::Response handle(const http::Request& request, WorkerContext& worker) const;

  // The route table: one entry per method and path.
  struct Route {
    std::string_view method;
    std::string_view path;
    Plane plane;
    http::Access access;
    bool needs_engine;  // served only when the App has an engine
    http::Response (*handle)(const App&, const http::Request&, WorkerContext&);
  };
  static std::span<const Route> routes() noexcept;

  RequestMetrics& metrics() noexcept { return metrics_; }
  const Config& config() const noexcept { return config_; }
  alloc::SmallPoolAllocator& allocator() const noexcept { return allocator_; }

  // "127.0.0.1:8080", "[::1]:8081": where a listener listens (its bound port once set).
  std::string endpoint(Listener listener) const;

 private:
  static const Route kRoutes[];

  http::Response status() const;
  http::Response alloc_stats() const;
  http::Response metrics_text() const;
  http::Response misdirected(const http::Request& request) const;
  double uptime_seconds() const;

  const Config& config_;
  alloc::SmallPoolAllocator& allocator_;
  storage::Engine* engine_;
  std::unique_ptr<StorageApi> storage_api_;
  std::unique_ptr<RemoteApi> remote_api_;
  RequestMetrics metrics_;
  std::vector<RequestMetrics::Slot*> slots_[2];  // per listener, one per worker
  std::array<http::ConnectionCounters, 2> connections_;
  std::array<std::atomic<std::uint16_t>, 2> bound_ports_{};
  http::Router<WorkerContext> routers_[2];  // per listener
  std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
};

}  // namespace sydra::server
