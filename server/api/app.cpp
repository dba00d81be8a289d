#include "server/api/app.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <optional>

#include "alloc/stats_json.hpp"
#include "server/api/remote_api.hpp"
#include "server/api/storage_api.hpp"
#include "server/storage/engine.hpp"

namespace sydra::server {

namespace {

constexpr std::size_t idx(Listener listener) noexcept {
  return static_cast<std::size_t>(listener);
}

// The control listener serves a handful of operators and scrapers.
constexpr std::uint32_t kControlMaxConnections = 64;

std::string endpoint_text(const std::string& address, std::uint16_t port) {
  const bool v6 = address.find(':') != std::string::npos;
  return (v6 ? "[" + address + "]" : address) + ":" + std::to_string(port);
}

// A worker of one listener: the hooks of http::Server over a WorkerContext.
class AppWorker final : public http::WorkerHandler {
 public:
  AppWorker(const App& app, std::unique_ptr<WorkerContext> context)
      : app_(app), context_(std::move(context)) {
    context_->allocator.qsbr_online();
  }

  std::pmr::memory_resource* memory() noexcept override { return &context_->resource; }

  http::Response handle(const http::Request& request) override { return app_.handle(request, *context_); }

  void on_response(const http::Exchange& exchange) override {
    context_->metrics.record(exchange.route, exchange.status, exchange.seconds);
    if (context_->access_log)
      context_->access_log->info("{} {} {} {:.6f}s", to_string(context_->listener), exchange.route,
                                 exchange.status, exchange.seconds);
    // A quiescent point: this worker holds no reference into shared structures between
    // requests (QSBR).
    context_->allocator.quiescent();
  }

  // An idle worker still passes a quiescent point every tick, so it never holds
  // reclamation back for longer than that.
  void on_idle() override { context_->allocator.quiescent(); }

  void on_stop() override { context_->allocator.qsbr_offline(); }

 private:
  const App& app_;
  std::unique_ptr<WorkerContext> context_;
};

}  // namespace

std::string_view to_string(Listener listener) noexcept {
  return listener == Listener::data ? "data" : "control";
}

WorkerContext::WorkerContext(Listener l, unsigned worker_id, std::uint32_t shard_index,
                             alloc::SmallPoolAllocator& a, RequestMetrics::Slot& slot,
                             std::size_t max_line_bytes)
    : listener(l),
      id(worker_id),
      allocator(a),
      shard(a.shard_count() > 0 ? a.bind_current_thread(shard_index) : alloc::SmallPoolAllocator::kNoShard),
      resource(a),
      parser(max_line_bytes),
      batch(&resource),
      metrics(slot),
      access_log(spdlog::get("access")) {}

WorkerContext::~WorkerContext() = default;

// Every route, where it is served and who may call it: one table, so that a route cannot be
// added without saying both.
const App::Route App::kRoutes[] = {
    {"GET", "/health", Plane::control, http::Access::open, false,
     [](const App&, const http::Request&, WorkerContext&) { return http::json_ok(R"({"status":"ok"})"); }},
    {"GET", "/status", Plane::control, http::Access::open, false,
     [](const App& app, const http::Request&, WorkerContext&) { return app.status(); }},
    {"GET", "/metrics", Plane::control, http::Access::open, false,
     [](const App& app, const http::Request&, WorkerContext&) { return app.metrics_text(); }},
    {"GET", "/debug/alloc/stats", Plane::control, http::Access::bearer, false,
     [](const App& app, const http::Request&, WorkerContext&) { return app.alloc_stats(); }},
    {"POST", "/api/v1/ingest", Plane::data, http::Access::bearer, true,
     [](const App& app, const http::Request& r, WorkerContext& w) { return app.storage_api_->ingest(r, w); }},
    {"GET", "/api/v1/query/range", Plane::data, http::Access::bearer, true,
     [](const App& app, const http::Request& r, WorkerContext&) { return app.storage_api_->query_range(r); }},
    {"POST", "/api/v1/query/range", Plane::data, http::Access::bearer, true,
     [](const App& app, const http::Request& r, WorkerContext&) { return app.storage_api_->query_range(r); }},
    {"GET", "/api/v1/query/select", Plane::data, http::Access::bearer, true,
     [](const App& app, const http::Request& r, WorkerContext&) { return app.storage_api_->select(r); }},
    {"POST", "/api/v1/query/select", Plane::data, http::Access::bearer, true,
     [](const App& app, const http::Request& r, WorkerContext&) { return app.storage_api_->select(r); }},
    {"POST", "/api/v1/query/find", Plane::data, http::Access::bearer, true,
     [](const App& app, const http::Request& r, WorkerContext&) { return app.storage_api_->find(r); }},
    {"GET", "/api/v1/series", Plane::data, http::Access::bearer, true,
     [](const App& app, const http::Request& r, WorkerContext&) { return app.storage_api_->series(r); }},
    {"POST", "/api/v1/write", Plane::data, http::Access::bearer, true,
     [](const App& app, const http::Request& r, WorkerContext& w) { return app.remote_api_->write(r, w); }},
    {"POST", "/api/v1/read", Plane::data, http::Access::bearer, true,
     [](const App& app, const http::Request& r, WorkerContext&) { return app.remote_api_->read(r); }},
};

std::span<const App::Route> App::routes() noexcept {
  return kRoutes;
}

App::App(const Config& config, alloc::SmallPoolAllocator& allocator, storage::Engine* engine)
    : config_(config), allocator_(allocator), engine_(engine) {
  if (engine_ != nullptr) {
    storage_api_ = std::make_unique<StorageApi>(*engine_, config_);
    remote_api_ = std::make_unique<RemoteApi>(*engine_, config_);
  }
  for (unsigned i = 0; i < config_.resolved_workers(); ++i)
    slots_[idx(Listener::data)].push_back(&metrics_.add_slot(std::string(to_string(Listener::data))));
  slots_[idx(Listener::control)].push_back(&metrics_.add_slot(std::string(to_string(Listener::control))));

  for (auto& router : routers_)
    router = http::Router<WorkerContext>(config_.auth_token, "sydradb", {"/api/", "/debug/"});
  auto& data = routers_[idx(Listener::data)];
  auto& control = routers_[idx(Listener::control)];
  for (const Route& route : kRoutes) {
    if (route.needs_engine && engine_ == nullptr) continue;
    auto handler = [this, &route](const http::Request& r, WorkerContext& w) {
      return route.handle(*this, r, w);
    };
    data.add(route.method, route.path, route.access, handler);
    if (route.plane == Plane::control) {
      control.add(route.method, route.path, route.access, handler);
    } else if (std::none_of(kRoutes, &route, [&](const Route& r) { return r.path == route.path; })) {
      // Once per path, whatever the method: "not here, there" — to whoever may call it there.
      control.add(http::kAnyMethod, route.path, route.access,
                  [this](const http::Request& r, WorkerContext&) { return misdirected(r); });
    }
  }
}

App::~App() = default;

http::ServerOptions App::server_options(Listener listener) const {
  http::ServerOptions o;
  o.name = std::string(to_string(listener));
  if (listener == Listener::data) {
    o.address = config_.listen_address;
    o.port = config_.http_port;
    o.workers = config_.resolved_workers();
    o.max_connections = config_.max_connections;
  } else {
    o.address = config_.control_address;
    o.port = config_.resolved_control_port();
    o.workers = 1;
    o.max_connections = std::min(config_.max_connections, kControlMaxConnections);
  }
  o.server_header = "sydradb/" SYDRADB_VERSION;
  o.max_body_bytes = config_.max_body_bytes;
  o.max_header_bytes = config_.max_header_bytes;
  o.read_timeout = std::chrono::milliseconds(config_.read_timeout_ms);
  o.idle_timeout = std::chrono::milliseconds(config_.idle_timeout_ms);
  o.idle_tick = std::chrono::milliseconds(config_.maintenance_interval_ms);
  // A client that sends a body of up to twice the limit (at least 1 MiB) before it reads
  // the answer still reads its 413.
  o.linger_bytes = std::max<std::uint64_t>(2 * config_.max_body_bytes, std::uint64_t{1} << 20);
  o.linger_time = std::chrono::milliseconds(5000);
  return o;
}

http::ServerHooks App::hooks(Listener listener) {
  http::ServerHooks h;
  h.worker_start = [this, listener](unsigned id) -> std::unique_ptr<http::WorkerHandler> {
    return std::make_unique<AppWorker>(*this, make_worker_context(listener, id));
  };
  return h;
}

http::ConnectionCounters& App::connections(Listener listener) noexcept {
  return connections_[idx(listener)];
}

void App::set_bound_port(Listener listener, std::uint16_t port) noexcept {
  bound_ports_[idx(listener)].store(port, std::memory_order_relaxed);
}

std::string App::endpoint(Listener listener) const {
  std::uint16_t port = bound_ports_[idx(listener)].load(std::memory_order_relaxed);
  if (port == 0) port = listener == Listener::data ? config_.http_port : config_.resolved_control_port();
  return endpoint_text(listener == Listener::data ? config_.listen_address : config_.control_address, port);
}

std::unique_ptr<WorkerContext> App::make_worker_context(Listener listener, unsigned id) {
  auto& slots = slots_[idx(listener)];
  RequestMetrics::Slot& slot = *slots[id % slots.size()];
  // Data workers take shards 0..W-1; the control thread the next one (mod the shard count).
  const std::uint32_t shard = listener == Listener::data ? id : config_.resolved_workers() + id;
  return std::make_unique<WorkerContext>(listener, id, shard, allocator_, slot, config_.max_line_bytes);
}

http::Response App::handle(const http::Request& request, WorkerContext& worker) const {
  return routers_[idx(worker.listener)].dispatch(request, worker);
}

double App::uptime_seconds() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
}

http::Response App::misdirected(const http::Request& request) const {
  return http::json_error(421, std::string(request.path) + " is served by the data listener on " +
                                   endpoint(Listener::data) + ", not by this control listener");
}

http::Response App::status() const {
  nlohmann::json j;
  j["status"] = "ok";
  j["version"] = SYDRADB_VERSION;
  j["uptime_seconds"] = uptime_seconds();
  j["workers"] = config_.resolved_workers();
  j["allocator_mode"] = std::string(alloc::to_string(allocator_.mode()));
  j["allocator_shards"] = allocator_.shard_count();
  j["connections"] = connections_[idx(Listener::data)].connections_active.load(std::memory_order_relaxed);
  j["listeners"] = {{"data", endpoint(Listener::data)}, {"control", endpoint(Listener::control)}};
  if (engine_ != nullptr) {
    const storage::EngineStats st = engine_->stats();
    j["storage"] = {{"series", st.series},
                    {"memtable_bytes", st.memtable_bytes},
                    {"memtable_points", st.memtable_points},
                    {"segments", st.segments},
                    {"segment_bytes", st.segment_bytes},
                    {"wal_last_lsn", st.wal_last_lsn},
                    {"flushed_lsn", st.flushed_lsn},
                    {"fsync", to_string(config_.fsync)},
                    {"writes", st.writes_stopped ? "stopped"
                               : st.disk_full    ? "disk_full"
                                                 : "ok"}};
    if (!st.write_error.empty()) j["storage"]["write_error"] = st.write_error;
  }
  return http::json_ok(j.dump());
}

// The allocator's own emitter (alloc/stats_json.hpp): the daemon and libsydralloc.so's
// report are one document from one code path.
http::Response App::alloc_stats() const {
  return http::json_ok(alloc::stats_to_json(allocator_.snapshot()));
}

http::Response App::metrics_text() const {
  const alloc::AllocatorStats stats = allocator_.snapshot();
  http::Response r;
  r.content_type = "text/plain; version=0.0.4; charset=utf-8";
  std::optional<storage::EngineStats> storage_stats;
  if (engine_ != nullptr) storage_stats = engine_->stats();
  r.body =
      render_metrics(MetricsInput{stats,
                                  metrics_,
                                  {{to_string(Listener::data), &connections_[idx(Listener::data)]},
                                   {to_string(Listener::control), &connections_[idx(Listener::control)]}},
                                  uptime_seconds(),
                                  config_.resolved_workers(),
                                  storage_stats ? &*storage_stats : nullptr,
                                  remote_api_ ? &remote_api_->counters() : nullptr});
  return r;
}

}  // namespace sydra::server
