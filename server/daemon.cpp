#include "server/daemon.hpp"

#include <malloc.h>
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
#include <optional>
#include <string>
#include <tuple>

#include "alloc/small_pool_allocator.hpp"
#include "server/api/app.hpp"
#include "server/http/server.hpp"
#include "server/log.hpp"
#include "server/storage/engine.hpp"
#include "server/storage/segment_store.hpp"

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

// A timer that calls `tick` every `period` until `stopping` is set. Cancelling the timer
// alone is not enough: a tick whose wait has already completed (its handler queued, not yet
// run) is not cancelled, runs with success and would arm the timer again, keeping the
// io_context from running out of work at shutdown.
void every(asio::steady_timer& timer, std::chrono::milliseconds period, const bool& stopping,
           std::function<void()> tick) {
  timer.expires_after(period);
  timer.async_wait(
      [&timer, period, &stopping, tick = std::move(tick)](const boost::system::error_code& ec) mutable {
        if (ec || stopping) return;
        tick();
        every(timer, period, stopping, std::move(tick));
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

// "1 worker", "2 workers".
std::string count_of(std::uint64_t n, const char* noun) {
  return std::to_string(n) + " " + noun + (n == 1 ? "" : "s");
}

// The port file, removed at a clean exit unless someone else has written it since.
class PortFile {
 public:
  PortFile(std::string path, std::uint16_t port) : path_(std::move(path)), port_(port) {}
  ~PortFile() {
    std::ifstream in(path_);
    unsigned port = 0;
    if (in >> port && port == port_) std::filesystem::remove(path_, ec_);
  }
  PortFile(const PortFile&) = delete;
  PortFile& operator=(const PortFile&) = delete;

 private:
  std::string path_;
  std::uint16_t port_;
  std::error_code ec_;
};

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

int run_daemon(const Config& configured, const std::vector<std::string>& config_warnings) {
  for (const std::string& w : config_warnings) spdlog::warn("{}", w);
#if defined(__GLIBC__)
  // glibc serves what the pool does not (objects above 256 B: request bodies, compaction and
  // query buffers). Its default thresholds move: once a large block is freed, blocks up to
  // its size come from the heap and stay there when freed, so under steady load the soak's
  // anonymous RSS grew by 3.7 MiB in 10 minutes with the pool flat. Fixed thresholds keep
  // it flat (±7 %, docs/benchmarks.md "Soak"): blocks of 128 KiB and more are mapped and
  // unmapped, and the heap's top is given back once 128 KiB of it is free.
  ::mallopt(M_MMAP_THRESHOLD, 128 * 1024);
  ::mallopt(M_TRIM_THRESHOLD, 128 * 1024);
#endif
  // Host names in listen_address and control_address are resolved once, here; the daemon
  // uses the addresses.
  Config config = configured;
  try {
    config.listen_address = resolve_address("listen_address", configured.listen_address);
    config.control_address = resolve_address("control_address", configured.control_address);
  } catch (const ConfigError& e) {
    spdlog::error("{}", e.what());
    return 1;
  }
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
  } catch (const storage::DirectoryInUse& e) {
    spdlog::error("cannot open the storage engine in {}: {} (another sydradb on the same data_dir?)",
                  config.data_dir, e.what());
    return 1;
  } catch (const std::exception& e) {
    // WalCorruption and SegmentCorruption name the file (and the offset).
    spdlog::error("cannot open the storage engine in {}: {}", config.data_dir, e.what());
    return 1;
  }

  const unsigned workers = config.resolved_workers();
  App app(config, allocator, engine.get());
  asio::io_context ioc{1};
  // Signals first: a supervisor or test that sends SIGTERM as soon as the port file
  // appears must get a graceful shutdown, not the default action.
  asio::signal_set signals(ioc, SIGINT, SIGTERM);
  // Two listeners: data requests on `workers` threads (accepted on this thread), control
  // requests on a thread of their own, so that they never wait behind data requests.
  http::Server data(app.server_options(Listener::data), app.hooks(Listener::data),
                    app.connections(Listener::data), &ioc);
  http::Server control(app.server_options(Listener::control), app.hooks(Listener::control),
                       app.connections(Listener::control));
  std::uint16_t data_port = 0, control_port = 0;
  try {
    data_port = data.listen();
    control_port = control.listen();
  } catch (const std::system_error& e) {
    spdlog::error("{}", e.what());
    return 1;
  }
  app.set_bound_port(Listener::data, data_port);
  app.set_bound_port(Listener::control, control_port);
  const std::string data_endpoint = app.endpoint(Listener::data);
  const std::string control_endpoint = app.endpoint(Listener::control);
  // The control port file first: whoever waits for port_file finds both. Both are removed
  // at a clean exit.
  std::optional<PortFile> port_files[2];
  for (const auto& [key, path, port, file] :
       {std::tuple{"control_port_file", config.control_port_file, control_port, &port_files[0]},
        std::tuple{"port_file", config.port_file, data_port, &port_files[1]}}) {
    if (path.empty()) continue;
    if (!write_port_file(path, port)) {
      spdlog::error("cannot write {} {}", key, path);
      return 1;
    }
    file->emplace(path, port);
  }
  try {
    data.start();
    control.start();
  } catch (const std::exception& e) {
    spdlog::error("cannot start the HTTP workers: {}", e.what());
    return 1;
  }
  // "localhost (127.0.0.1):8080" when the address was given as a host name.
  const std::string listen_name = configured.listen_address == config.listen_address
                                      ? data_endpoint
                                      : configured.listen_address + " (" +
                                            data_endpoint.substr(0, data_endpoint.rfind(':')) + ")" +
                                            data_endpoint.substr(data_endpoint.rfind(':'));
  std::string data_dir = std::filesystem::absolute(config.data_dir, ec).lexically_normal().string();
  if (ec) data_dir = config.data_dir;
  spdlog::info("sydradb {} listening on {} ({}, allocator {}{}, data in {}), control listener on {}",
               SYDRADB_VERSION, listen_name, count_of(workers, "worker"), alloc::to_string(allocator.mode()),
               allocator.mode() == alloc::Mode::sharded
                   ? " with " + count_of(allocator.shard_count(), "shard")
                   : std::string(),
               data_dir, control_endpoint);

  // Maintenance: advance the epoch and give deferred frees back to their shards, so that
  // memory freed across shards is reused (and idle empty slabs decay to the OS).
  bool stopping = false;  // set by the signal handler: the timers arm no further tick
  asio::steady_timer maintenance(ioc);
  every(maintenance, std::chrono::milliseconds(config.maintenance_interval_ms), stopping, [&allocator] {
    allocator.advance_epoch();
    allocator.collect_garbage();
  });

  // systemd: WATCHDOG=1 at half the interval the unit asks for.
  asio::steady_timer watchdog(ioc);
  std::uint64_t watchdog_usec = 0;
  if (sd_watchdog_enabled(0, &watchdog_usec) > 0 && watchdog_usec > 0) {
    every(watchdog, std::chrono::milliseconds(watchdog_usec / 2000 + 1), stopping,
          [] { sd_notify(0, "WATCHDOG=1"); });
  }

  signals.async_wait([&](const boost::system::error_code& error, int signal_number) {
    if (error) return;
    spdlog::info("received {}, shutting down: no new connections, finishing requests in flight",
                 signal_number == SIGTERM ? "SIGTERM" : "SIGINT");
    sd_notify(0, "STOPPING=1");
    stopping = true;
    data.begin_shutdown();  // the control listener keeps answering until the data one is done
    maintenance.cancel();
    watchdog.cancel();
  });

  sd_notifyf(0, "READY=1\nSTATUS=listening on %s, control on %s\nMAINPID=%lu", data_endpoint.c_str(),
             control_endpoint.c_str(), static_cast<unsigned long>(getpid()));
  ioc.run();  // until the signal handler has stopped everything on this context

  const std::chrono::milliseconds shutdown_timeout(config.shutdown_timeout_ms);
  bool clean = data.wait_stopped(shutdown_timeout);
  control.begin_shutdown();
  clean = control.wait_stopped(shutdown_timeout) && clean;
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
