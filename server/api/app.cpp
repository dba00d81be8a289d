#include "server/api/app.hpp"

#include <cctype>
#include <nlohmann/json.hpp>
#include <optional>

#include "server/api/alloc_stats_json.hpp"
#include "server/api/storage_api.hpp"
#include "server/storage/engine.hpp"

namespace sydra::server {

App::App(const Config& config, alloc::SmallPoolAllocator& allocator, RequestMetrics& metrics,
         ServerCounters& counters, storage::Engine* engine)
    : config_(config), allocator_(allocator), metrics_(metrics), counters_(counters), engine_(engine) {
  if (engine_ != nullptr) {
    storage_api_ = std::make_unique<StorageApi>(*engine_, config_, allocator_);
    storage_api_->add_routes(router_);
  }
  router_.add("GET", "/status", [this](const http::Request&) { return status(); });
  router_.add("GET", "/debug/alloc/stats", [this](const http::Request&) { return alloc_stats(); });
  router_.add("GET", "/metrics", [this](const http::Request&) { return metrics_text(); });
}

App::~App() = default;

bool App::authorized(const http::Request& request) const noexcept {
  if (config_.auth_token.empty()) return true;
  const std::string_view path = request.path;
  if (path.substr(0, 5) != "/api/" && path.substr(0, 7) != "/debug/") return true;
  constexpr std::string_view kScheme = "bearer ";  // auth schemes are case-insensitive (RFC 9110 §11.1)
  std::string_view presented = request.authorization;
  if (presented.size() < kScheme.size()) return false;
  for (std::size_t i = 0; i < kScheme.size(); ++i)
    if (static_cast<char>(std::tolower(static_cast<unsigned char>(presented[i]))) != kScheme[i]) return false;
  presented.remove_prefix(kScheme.size());
  // Constant time in the token's content: every byte is compared whatever the mismatches.
  const std::string& expected = config_.auth_token;
  unsigned char diff = presented.size() == expected.size() ? 0 : 1;
  for (std::size_t i = 0; i < expected.size(); ++i)
    diff |= static_cast<unsigned char>(expected[i] ^ (i < presented.size() ? presented[i] : 0));
  return diff == 0;
}

http::Router::Result App::handle(const http::Request& request) const {
  if (!authorized(request)) {
    http::Response r = http::json_error(401, "missing or invalid bearer token");
    r.headers.emplace_back("WWW-Authenticate", "Bearer realm=\"sydradb\"");
    return {std::move(r), "unauthorized"};
  }
  return router_.dispatch(request);
}

http::Response App::status() const {
  const double uptime = std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
  nlohmann::json j;
  j["status"] = "ok";
  j["version"] = SYDRADB_VERSION;
  j["uptime_seconds"] = uptime;
  j["workers"] = config_.resolved_workers();
  j["allocator_mode"] = std::string(alloc::to_string(allocator_.mode()));
  j["allocator_shards"] = allocator_.shard_count();
  j["connections"] = counters_.connections_active.load(std::memory_order_relaxed);
  if (engine_ != nullptr) {
    const storage::EngineStats st = engine_->stats();
    j["storage"] = {{"series", st.series},
                    {"memtable_bytes", st.memtable_bytes},
                    {"memtable_points", st.memtable_points},
                    {"segments", st.segments},
                    {"segment_bytes", st.segment_bytes},
                    {"wal_last_lsn", st.wal_last_lsn},
                    {"flushed_lsn", st.flushed_lsn},
                    {"fsync", to_string(config_.fsync)}};
  }
  return http::json_ok(j.dump());
}

http::Response App::alloc_stats() const {
  return http::json_ok(alloc_stats_json(allocator_.snapshot()).dump());
}

http::Response App::metrics_text() const {
  const alloc::AllocatorStats stats = allocator_.snapshot();
  const double uptime = std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
  http::Response r;
  r.content_type = "text/plain; version=0.0.4; charset=utf-8";
  std::optional<storage::EngineStats> storage_stats;
  if (engine_ != nullptr) storage_stats = engine_->stats();
  r.body = render_metrics(MetricsInput{stats, metrics_, counters_, uptime, config_.resolved_workers(),
                                       storage_stats ? &*storage_stats : nullptr});
  return r;
}

}  // namespace sydra::server
