// The daemon's configuration: sydradb.toml, then command-line flags, then the environment
// for secrets. Every key, its default and its range are documented in docs/configuration.md.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "alloc/stats.hpp"

namespace sydra::server {

enum class FsyncPolicy { always, interval, none };

struct Config {
  // Upstream keys.
  std::string data_dir = "./data";
  std::uint16_t http_port = 8080;  // 0 = pick a free port (see port_file)
  FsyncPolicy fsync = FsyncPolicy::interval;
  std::uint32_t flush_interval_ms = 1000;
  std::uint64_t memtable_max_bytes = std::uint64_t{64} << 20;
  std::uint32_t retention_days = 0;  // 0 = keep forever
  std::string auth_token;            // empty = no authentication

  // Ours.
  std::string listen_address = "127.0.0.1";  // an address, or a host name resolved at start
  std::uint32_t workers = 0;                 // 0 = one per CPU
  alloc::Mode allocator_mode = alloc::Mode::sharded;
  int allocator_shards = -1;  // -1 = one per worker, 0 = sharding off
  std::string log_level = "info";
  bool access_log = false;
  std::string port_file;  // write the bound port here once listening

  // The control listener (/status, /metrics, /debug/*, /health): its own port and thread.
  std::string control_address = "127.0.0.1";
  std::int32_t control_port = -1;  // -1 = http_port + 1 (a free port when http_port is 0); 0 = a free port
  std::string control_port_file;   // write the control listener's bound port here

  // Limits.
  std::uint64_t max_body_bytes = std::uint64_t{8} << 20;
  std::uint32_t max_header_bytes = 16 * 1024;
  std::uint32_t read_timeout_ms = 10'000;  // a request's headers and body must arrive within
  std::uint32_t idle_timeout_ms = 60'000;  // keep-alive connection with no request
  std::uint32_t max_connections = 1024;
  std::uint32_t shutdown_timeout_ms = 10'000;
  std::uint32_t maintenance_interval_ms = 100;  // epoch advance + garbage collection tick

  // Storage engine (docs/configuration.md).
  std::uint32_t retention_check_interval_ms = 3'600'000;  // how often retention runs
  std::uint32_t compaction_interval_ms = 60'000;          // background compaction; 0 = off
  std::uint32_t ingest_wait_ms = 2000;  // ingest waits this long for memtable room, then 503
  std::uint64_t wal_max_file_bytes = std::uint64_t{64} << 20;  // WAL files rotate past this
  std::uint32_t max_line_bytes = 64 * 1024;                    // longer NDJSON lines get 413
  std::uint64_t max_query_points = 1'000'000;                  // larger range answers get 413
  std::uint64_t max_query_series = 100'000;                    // a selector matching more series gets 413
  std::uint32_t query_threads = 0;  // threads per many-series query (0 = one per CPU)

  std::uint32_t resolved_workers() const noexcept;
  // control_port with -1 resolved (validate() has checked that it is in range).
  std::uint16_t resolved_control_port() const noexcept;
  std::uint32_t resolved_shards() const noexcept;
};

// An invalid value or unreadable file: what() is one line naming the key.
class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Reads a TOML file into `config` (keys not in the file keep their values). Unknown keys
// are returned as warnings; invalid values throw ConfigError.
std::vector<std::string> load_config_file(const std::string& path, Config& config);

// Sets one key from its text form (flags and the environment use the same parser).
void set_config_value(Config& config, const std::string& key, const std::string& value);

// Cross-key checks after everything is applied (listen_address resolves); throws
// ConfigError.
void validate(const Config& config);

// An address key (listen_address, control_address) as an IP address: itself when it is one,
// else the host name resolved (its first IPv4 address, else its first IPv6 one: "localhost"
// listens on 127.0.0.1). Throws ConfigError naming `key` when the name does not resolve.
std::string resolve_address(const std::string& key, const std::string& address);

// Every key the file may contain, for `--help`, docs and the docs drift test.
const std::vector<std::string>& config_keys();

const char* to_string(FsyncPolicy policy) noexcept;

}  // namespace sydra::server
