#include "server/daemon.hpp"

#include <sys/resource.h>
#include <systemd/sd-daemon.h>

#include <spdlog/spdlog.h>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>

#include "alloc/small_pool_allocator.hpp"
#include "server/api/app.hpp"
#include "server/http/server.hpp"
#include "server/log.hpp"
#include "server/metrics.hpp"
#include "server/storage/engine.hpp"

namespace sydra::server {

namespace asio = boost::asio;

namespace {

// Writes the port atomically (temporary file + rename) so a reader never sees half of it.
bool write_port_file(const std::string& path, std::uint16_t port) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    if (!out) return false;
    out << port << '\n';
    if (!out.flush()) return false;
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  return !ec;
}

// A timer that calls `tick` every `period` until cancelled.
void every(asio::steady_timer& timer, std::chrono::milliseconds period, std::function<void()> tick) {
  timer.expires_after(period);
  timer.async_wait([&timer, period, tick = std::move(tick)](const boost::system::error_code& ec) mutable {
    if (ec) return;
    tick();
    every(timer, period, std::move(tick));
  });
}

// Every connection is a file descriptor: raise the soft limit to the hard one, and say so
// when even that cannot hold max_connections (plus room for files and the listener).
void raise_file_limit(std::uint32_t max_connections) {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) return;
  if (limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    setrlimit(RLIMIT_NOFILE, &limit);
    getrlimit(RLIMIT_NOFILE, &limit);
  }
  if (limit.rlim_cur < static_cast<rlim_t>(max_connections) + 64)
    spdlog::warn("open-file limit {} is below max_connections={} + 64: connections beyond it will wait",
                 static_cast<unsigned long long>(limit.rlim_cur), max_connections);
}

storage::EngineOptions engine_options(const Config& config) {
  storage::EngineOptions o;
  o.data_dir = config.data_dir;
  switch (config.fsync) {
    case FsyncPolicy::always:
      o.sync = storage::SyncMode::always;
      break;
    case FsyncPolicy::interval:
      o.sync = storage::SyncMode::interval;
      break;
    case FsyncPolicy::none:
      o.sync = storage::SyncMode::none;
      break;
  }
  o.sync_interval_ms = config.flush_interval_ms;
  o.wal_max_file_bytes = config.wal_max_file_bytes;
  o.memtable_max_bytes = config.memtable_max_bytes;
  o.flush_interval_ms = config.flush_interval_ms;
  o.retention_days = config.retention_days;
  o.retention_check_interval_ms = config.retention_check_interval_ms;
  o.compaction_interval_ms = config.compaction_interval_ms;
  o.ingest_wait_ms = config.ingest_wait_ms;
  o.query_threads = config.query_threads;
  return o;
}

}  // namespace

int run_daemon(const Config& config, const std::vector<std::string>& config_warnings) {
  for (const std::string& w : config_warnings) spdlog::warn("{}", w);
  raise_file_limit(config.max_connections);

  alloc::SmallPoolAllocator& allocator = alloc::default_allocator();
  allocator.set_mode(config.allocator_mode);
  allocator.set_shard_count(config.resolved_shards());

  std::error_code ec;
  std::filesystem::create_directories(config.data_dir, ec);
  if (ec) {
    spdlog::error("cannot create data_dir {}: {}", config.data_dir, ec.message());
    return 1;
  }

  // Recovery before listening: nobody can ask for data the engine has not replayed yet.
  std::unique_ptr<storage::Engine> engine;
  try {
    engine = storage::Engine::open(engine_options(config), allocator);
  } catch (const std::exception& e) {
    // WalCorruption and SegmentCorruption name the file (and the offset).
    spdlog::error("cannot open the storage engine in {}: {}", config.data_dir, e.what());
    return 1;
  }

  const unsigned workers = config.resolved_workers();
  RequestMetrics request_metrics(workers);
  ServerCounters counters;
  App app(config, allocator, request_metrics, counters, engine.get());
  asio::io_context ioc{1};
  // Signals first: a supervisor or test that sends SIGTERM as soon as the port file
  // appears must get a graceful shutdown, not the default action.
  asio::signal_set signals(ioc, SIGINT, SIGTERM);
  HttpServer server(ioc, config, app);
  std::uint16_t port = 0;
  try {
    port = server.listen();
  } catch (const std::system_error& e) {
    spdlog::error("{}", e.what());
    return 1;
  }
  if (!config.port_file.empty() && !write_port_file(config.port_file, port)) {
    spdlog::error("cannot write port_file {}", config.port_file);
    return 1;
  }
  server.start();
  spdlog::info("sydradb {} listening on {}:{} ({} workers, allocator {}{}, data in {})", SYDRADB_VERSION,
               config.listen_address, port, workers, alloc::to_string(allocator.mode()),
               allocator.mode() == alloc::Mode::sharded
                   ? " with " + std::to_string(allocator.shard_count()) + " shards"
                   : std::string(),
               config.data_dir);

  // Maintenance: advance the epoch and give deferred frees back to their shards, so that
  // memory freed across shards is reused (and idle empty slabs decay to the OS).
  asio::steady_timer maintenance(ioc);
  every(maintenance, std::chrono::milliseconds(config.maintenance_interval_ms), [&allocator] {
    allocator.advance_epoch();
    allocator.collect_garbage();
  });

  // systemd: WATCHDOG=1 at half the interval the unit asks for.
  asio::steady_timer watchdog(ioc);
  std::uint64_t watchdog_usec = 0;
  if (sd_watchdog_enabled(0, &watchdog_usec) > 0 && watchdog_usec > 0) {
    every(watchdog, std::chrono::milliseconds(watchdog_usec / 2000 + 1), [] { sd_notify(0, "WATCHDOG=1"); });
  }

  signals.async_wait([&](const boost::system::error_code& error, int signal_number) {
    if (error) return;
    spdlog::info("received {}, shutting down: no new connections, finishing requests in flight",
                 signal_number == SIGTERM ? "SIGTERM" : "SIGINT");
    sd_notify(0, "STOPPING=1");
    server.begin_shutdown();
    maintenance.cancel();
    watchdog.cancel();
  });

  sd_notifyf(0, "READY=1\nSTATUS=listening on %s:%u\nMAINPID=%lu", config.listen_address.c_str(),
             static_cast<unsigned>(port), static_cast<unsigned long>(getpid()));
  ioc.run();  // until the signal handler has stopped everything on this context

  const bool clean = server.wait_stopped(std::chrono::milliseconds(config.shutdown_timeout_ms));
  if (!clean)
    spdlog::warn("requests still running after shutdown_timeout_ms={}; stopped them",
                 config.shutdown_timeout_ms);
  // No request runs any more: stop the background flusher and make the WAL durable.
  try {
    engine->close();
  } catch (const std::exception& e) {
    spdlog::error("making the WAL durable at shutdown failed: {}", e.what());
    return 1;
  }
  allocator.advance_epoch();
  allocator.collect_garbage();
  spdlog::info("stopped");
  return 0;
}

}  // namespace sydra::server
