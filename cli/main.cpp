// sydradb: one binary, subcommands `serve` (the default), `stats`, `ingest`, `query`, `compact`,
// `version`.
#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <vector>

#include "cli/commands.hpp"
#include "server/config.hpp"
#include "server/daemon.hpp"
#include "server/log.hpp"

namespace {

using sydra::server::Config;
using sydra::server::ConfigError;

// Flags that override a config key, by key name.
struct ServeFlags {
  std::string config_path;
  std::map<std::string, std::string> overrides;
  std::vector<std::string> sets;  // --set key=value
};

int run_serve(const ServeFlags& flags) {
  Config config;
  std::vector<std::string> warnings;
  try {
    if (!flags.config_path.empty()) warnings = sydra::server::load_config_file(flags.config_path, config);
    for (const auto& [key, value] : flags.overrides) sydra::server::set_config_value(config, key, value);
    for (const std::string& kv : flags.sets) {
      const auto eq = kv.find('=');
      if (eq == std::string::npos) throw ConfigError("--set expects KEY=VALUE, got '" + kv + "'");
      sydra::server::set_config_value(config, kv.substr(0, eq), kv.substr(eq + 1));
    }
    if (const char* token = std::getenv("SYDRADB_TOKEN"); token != nullptr && *token != '\0')
      config.auth_token = token;
    sydra::server::validate(config);
  } catch (const ConfigError& e) {
    std::fprintf(stderr, "sydradb: %s\n", e.what());
    return sydra::cli::kExitUsage;
  }
  if (!sydra::server::init_logging(config.log_level, config.access_log)) {
    std::fprintf(stderr, "sydradb: config key 'log_level': unknown level '%s'\n", config.log_level.c_str());
    return sydra::cli::kExitUsage;
  }
  return sydra::server::run_daemon(config, warnings);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"sydradb: a time-series database daemon on a sharded small-object allocator"};
  app.require_subcommand(0, 1);

  ServeFlags serve_flags;
  CLI::App* serve = app.add_subcommand("serve", "Run the daemon in the foreground (the default command)");
  serve
      ->add_option("-c,--config", serve_flags.config_path,
                   "sydradb.toml to read (default: none, embedded defaults)")
      ->check(CLI::ExistingFile);
  struct KeyFlag {
    const char* flag;
    const char* key;
    const char* help;
  };
  static const KeyFlag kKeyFlags[] = {
      {"--port", "http_port", "TCP port (0 = any free port; see --port-file)"},
      {"--listen", "listen_address", "address to listen on (default 127.0.0.1)"},
      {"--data-dir", "data_dir", "data directory (default ./data)"},
      {"--workers", "workers", "HTTP worker threads (0 = one per CPU)"},
      {"--allocator-mode", "allocator_mode", "sharded | legacy | system"},
      {"--allocator-shards", "allocator_shards", "allocator shards (-1 = one per worker, 0 = off)"},
      {"--log-level", "log_level", "trace | debug | info | warn | error | critical | off"},
      {"--port-file", "port_file", "write the bound port to this file once listening"},
      {"--fsync", "fsync", "always | interval | none"},
  };
  for (const KeyFlag& f : kKeyFlags) {
    serve->add_option_function<std::string>(
        f.flag,
        [&serve_flags, key = std::string(f.key)](const std::string& v) { serve_flags.overrides[key] = v; },
        f.help);
  }
  serve->add_flag_function(
      "--access-log", [&serve_flags](std::int64_t) { serve_flags.overrides["access_log"] = "true"; },
      "log every request");
  serve->add_option("--set", serve_flags.sets, "set any config key: --set KEY=VALUE (repeatable)");

  sydra::cli::StatsOptions stats_options;
  CLI::App* stats = app.add_subcommand("stats", "Show the running daemon's allocator telemetry");
  stats->add_option("--url", stats_options.url, "daemon URL")->capture_default_str();
  stats->add_option("--token", stats_options.token, "bearer token (default: $SYDRADB_TOKEN)");
  stats->add_flag("--json", stats_options.json, "print the raw /debug/alloc/stats document");
  stats->add_option("--watch", stats_options.watch_seconds, "refresh every SECONDS until interrupted")
      ->check(CLI::Range(0.001, 86400.0));
  stats->add_option("--timeout", stats_options.timeout_seconds, "request timeout in seconds")
      ->capture_default_str();

  sydra::cli::IngestOptions ingest_options;
  CLI::App* ingest =
      app.add_subcommand("ingest", "Send NDJSON points (a file or standard input) to the running daemon");
  ingest->add_option("--url", ingest_options.url, "daemon URL")->capture_default_str();
  ingest->add_option("--token", ingest_options.token, "bearer token (default: $SYDRADB_TOKEN)");
  ingest->add_option("-f,--file", ingest_options.file, "NDJSON file to send (default: standard input)");
  ingest->add_option("--batch-lines", ingest_options.batch_lines, "lines per request at most")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  ingest->add_option("--batch-bytes", ingest_options.batch_bytes, "bytes per request at most")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  ingest->add_option("--timeout", ingest_options.timeout_seconds, "request timeout in seconds")
      ->capture_default_str();

  sydra::cli::QueryOptions query_options;
  CLI::App* query = app.add_subcommand(
      "query", "Read the points of a series, or of the series a selector picks, from the running daemon");
  query
      ->add_option("SERIES", query_options.series,
                   "series name, or a selector: 'cpu{host=~\"h1.*\",dc!=\"x\"}' (many series)")
      ->required();
  query
      ->add_option("START", query_options.start, "start: milliseconds since the Unix epoch, now, now-1h, ...")
      ->required();
  query->add_option("END", query_options.end, "end (inclusive), in the same forms")->required();
  query->add_option("--tag", query_options.tags, "tag KEY=VALUE of the series (repeatable)");
  query->add_option("--step", query_options.step,
                    "downsample into buckets of this many ms (or 10s, 1m, 1h, ...)");
  query->add_option("--agg", query_options.agg, "per bucket: avg (default), min, max, sum, count or last");
  query->add_option("--across", query_options.across,
                    "combine the series per bucket: sum, avg, min, max or count (many series)");
  query->add_option("--by", query_options.by,
                    "with --across (or a combining --agg): one group per value of these labels (host,dc)");
  query->add_option("--url", query_options.url, "daemon URL")->capture_default_str();
  query->add_option("--token", query_options.token, "bearer token (default: $SYDRADB_TOKEN)");
  query->add_option("--timeout", query_options.timeout_seconds, "request timeout in seconds")
      ->capture_default_str();
  auto* json_flag = query->add_flag_function(
      "--json", [&query_options](std::int64_t) { query_options.format = sydra::cli::QueryFormat::json; },
      "print the points as a JSON array");
  auto* csv_flag = query->add_flag_function(
      "--csv", [&query_options](std::int64_t) { query_options.format = sydra::cli::QueryFormat::csv; },
      "print the points as CSV (ts,value)");
  json_flag->excludes(csv_flag);

  sydra::cli::CompactOptions compact_options;
  CLI::App* compact =
      app.add_subcommand("compact", "Merge the segments of a stopped daemon's data directory into one");
  compact->add_option("--data-dir", compact_options.data_dir, "data directory")->capture_default_str();

  CLI::App* version = app.add_subcommand("version", "Print the version");

  // `serve` is the default command, flags included: `sydradb --port 9000` means
  // `sydradb serve --port 9000`.
  std::vector<std::string> args(argv + 1, argv + argc);
  if (!args.empty() && args[0].size() > 1 && args[0][0] == '-' && args[0] != "-h" && args[0] != "--help")
    args.insert(args.begin(), "serve");
  std::reverse(args.begin(), args.end());  // CLI11 takes the arguments reversed
  try {
    app.parse(args);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? 0 : sydra::cli::kExitUsage;
  }

  if (*stats) return sydra::cli::run_stats(stats_options);
  if (*ingest) return sydra::cli::run_ingest(ingest_options);
  if (*query) return sydra::cli::run_query(query_options);
  if (*compact) return sydra::cli::run_compact(compact_options);
  if (*version) {
    std::printf("sydradb %s\n", SYDRADB_VERSION);
    return 0;
  }
  return run_serve(serve_flags);  // `serve`, or no subcommand at all
}
