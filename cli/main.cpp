// sydradb: one binary, subcommands `serve` (the default), `stats`, `ingest`, `query`, `series`,
// `compact`, `version`.
#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <vector>

#include "cli/client.hpp"
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
    sydra::cli::print_error("serve", e.what());
    return sydra::cli::kExitUsage;
  }
  if (!sydra::server::init_logging(config.log_level, config.access_log)) {
    sydra::cli::print_error("serve", "config key 'log_level': unknown level '" + config.log_level + "'");
    return sydra::cli::kExitUsage;
  }
  return sydra::server::run_daemon(config, warnings);
}

constexpr const char* kClientCommands[] = {"stats", "ingest", "query", "series"};
constexpr const char* kCommands[] = {"serve", "stats", "ingest", "query", "series", "compact", "version"};

bool one_of(const std::string& word, const auto& names) {
  return std::any_of(std::begin(names), std::end(names), [&](const char* n) { return word == n; });
}

// The connection flags every client command takes: `sydradb --url X stats` means
// `sydradb stats --url X`.
bool is_connection_flag(const std::string& arg, bool& takes_value) {
  for (const char* flag : {"--url", "--token", "--timeout"}) {
    if (arg == flag) {
      takes_value = true;
      return true;
    }
    if (arg.rfind(std::string(flag) + "=", 0) == 0) {
      takes_value = false;
      return true;
    }
  }
  return false;
}

// Puts the command first: `serve` when the arguments start with a flag and name no
// command (`sydradb --port 9000`), or the client command that follows connection flags
// (`sydradb --url X stats`).
std::vector<std::string> command_first(std::vector<std::string> args) {
  if (args.empty() || one_of(args[0], kCommands)) return args;
  if (args[0] == "-h" || args[0] == "--help" || args[0] == "--version") return args;
  std::size_t i = 0;
  bool takes_value = false;
  while (i < args.size() && is_connection_flag(args[i], takes_value)) i += takes_value ? 2 : 1;
  if (i > 0 && i < args.size() && one_of(args[i], kClientCommands)) {
    std::rotate(args.begin(), args.begin() + static_cast<std::ptrdiff_t>(i),
                args.begin() + static_cast<std::ptrdiff_t>(i) + 1);
    return args;
  }
  if (args[0].size() > 1 && args[0][0] == '-') args.insert(args.begin(), "serve");
  return args;
}

// A check whose help text the flag's type name already says (--watch SECONDS, not
// SECONDS:FLOAT in [0.001 - 86400]).
CLI::Validator quiet(CLI::Validator check) {
  check.description("");
  return check;
}

// The URL, token and timeout flags of a client command.
void add_connection_flags(CLI::App* command, std::string& url, std::string& token, double& timeout_seconds,
                          sydra::cli::Listener listener = sydra::cli::Listener::data) {
  const char* where =
      listener == sydra::cli::Listener::control
          ? "the daemon's control listener, [http://]host[:port] "
            "(default: $SYDRADB_CONTROL_URL, else http://127.0.0.1:8081)"
          : "daemon URL, [http://]host[:port] (default: $SYDRADB_URL, else http://127.0.0.1:8080)";
  command->add_option("--url", url, where)->type_name("URL");
  command->add_option("--token", token, "bearer token (default: $SYDRADB_TOKEN)")->type_name("TOKEN");
  command->add_option("--timeout", timeout_seconds, "request timeout in seconds")
      ->type_name("SECONDS")
      ->capture_default_str();
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"sydradb: a time-series database daemon on a sharded small-object allocator", "sydradb"};
  app.require_subcommand(0, 1);
  app.set_version_flag("--version", "sydradb " SYDRADB_VERSION, "Print the version and exit");

  ServeFlags serve_flags;
  CLI::App* serve = app.add_subcommand("serve", "Run the daemon in the foreground (the default command)");
  serve
      ->add_option("-c,--config", serve_flags.config_path,
                   "sydradb.toml to read (default: none, embedded defaults)")
      ->check(quiet(CLI::ExistingFile))
      ->type_name("FILE");
  struct KeyFlag {
    const char* flag;
    const char* key;
    const char* type;
    const char* help;
  };
  static const KeyFlag kKeyFlags[] = {
      {"--port", "http_port", "PORT", "TCP port (default 8080; 0 = any free port, see --port-file)"},
      {"--listen", "listen_address", "ADDRESS", "address or host name to listen on (default 127.0.0.1)"},
      {"--data-dir", "data_dir", "DIR",
       "data directory (default ./data, relative to where the daemon starts)"},
      {"--workers", "workers", "INT", "HTTP worker threads (0 = one per CPU)"},
      {"--allocator-mode", "allocator_mode", "MODE", "sharded | legacy | system"},
      {"--allocator-shards", "allocator_shards", "INT", "allocator shards (-1 = one per worker, 0 = off)"},
      {"--log-level", "log_level", "LEVEL", "trace | debug | info | warn | error | critical | off"},
      {"--port-file", "port_file", "FILE", "write the bound port to this file once listening"},
      {"--control-port", "control_port", "PORT",
       "control listener port (-1 = --port + 1, 0 = any free port; see --control-port-file)"},
      {"--control-listen", "control_address", "ADDRESS", "control listener address (default 127.0.0.1)"},
      {"--control-port-file", "control_port_file", "FILE", "write the control listener's port to this file"},
      {"--fsync", "fsync", "POLICY", "always | interval | none"},
  };
  for (const KeyFlag& f : kKeyFlags) {
    serve
        ->add_option_function<std::string>(
            f.flag,
            [&serve_flags, key = std::string(f.key)](const std::string& v) {
              serve_flags.overrides[key] = v;
            },
            f.help)
        ->type_name(f.type);
  }
  serve->add_flag_function(
      "--access-log", [&serve_flags](std::int64_t) { serve_flags.overrides["access_log"] = "true"; },
      "log every request");
  serve->add_option("--set", serve_flags.sets, "set any config key: --set KEY=VALUE (repeatable)")
      ->type_name("KEY=VALUE")
      ->allow_extra_args(false);

  sydra::cli::StatsOptions stats_options;
  CLI::App* stats = app.add_subcommand("stats", "Show the running daemon's allocator telemetry");
  add_connection_flags(stats, stats_options.url, stats_options.token, stats_options.timeout_seconds,
                       sydra::cli::Listener::control);
  stats->add_flag("--json", stats_options.json, "print the raw /debug/alloc/stats document");
  stats->add_option("--watch", stats_options.watch_seconds, "refresh every SECONDS until interrupted")
      ->type_name("SECONDS")
      ->check(quiet(CLI::Range(0.001, 86400.0)));

  sydra::cli::IngestOptions ingest_options;
  CLI::App* ingest =
      app.add_subcommand("ingest", "Send NDJSON points (a file or standard input) to the running daemon");
  add_connection_flags(ingest, ingest_options.url, ingest_options.token, ingest_options.timeout_seconds);
  ingest->add_option("-f,--file", ingest_options.file, "NDJSON file to send (default: standard input)")
      ->type_name("FILE");
  ingest
      ->add_option("--precision", ingest_options.precision,
                   "unit of \"ts\" in the input: s, ms, us or ns (default: ms)")
      ->type_name("UNIT")
      ->check(quiet(CLI::IsMember({"s", "ms", "us", "ns"})));
  ingest->add_option("--batch-lines", ingest_options.batch_lines, "lines per request at most")
      ->type_name("INT")
      ->capture_default_str()
      ->check(quiet(CLI::PositiveNumber));
  ingest->add_option("--batch-bytes", ingest_options.batch_bytes, "bytes per request at most")
      ->type_name("BYTES")
      ->capture_default_str()
      ->check(quiet(CLI::PositiveNumber));

  sydra::cli::QueryOptions query_options;
  CLI::App* query = app.add_subcommand(
      "query", "Read the points of a series, or of the series a selector picks, from the running daemon");
  query
      ->add_option("SERIES", query_options.series,
                   "series name, or a selector: 'cpu{host=~\"h1.*\",dc!=\"x\"}' (many series)")
      ->required()
      ->type_name("");
  query
      ->add_option("START", query_options.start, "start: milliseconds since the Unix epoch, now, now-1h, ...")
      ->required()
      ->type_name("");
  query->add_option("END", query_options.end, "end (inclusive), in the same forms")
      ->required()
      ->type_name("");
  // One value per --tag (and --by): the positionals after it stay positionals.
  query->add_option("--tag", query_options.tags, "tag KEY=VALUE of the series (repeatable)")
      ->type_name("KEY=VALUE")
      ->allow_extra_args(false);
  query
      ->add_option("--step", query_options.step,
                   "downsample into buckets of this many ms (or 10s, 1m, 1h, ...)")
      ->type_name("DURATION");
  query->add_option("--agg", query_options.agg, "per bucket: avg (default), min, max, sum, count or last")
      ->type_name("AGG");
  query
      ->add_option("--across", query_options.across,
                   "combine the series per bucket: sum, avg, min, max or count (many series)")
      ->type_name("FUNC");
  query
      ->add_option("--by", query_options.by,
                   "with --across (or a combining --agg): one group per value of these labels (host,dc)")
      ->type_name("LABELS")
      ->allow_extra_args(false);
  add_connection_flags(query, query_options.url, query_options.token, query_options.timeout_seconds);
  auto* json_flag = query->add_flag_function(
      "--json", [&query_options](std::int64_t) { query_options.format = sydra::cli::QueryFormat::json; },
      "print the points as a JSON array");
  auto* csv_flag = query->add_flag_function(
      "--csv", [&query_options](std::int64_t) { query_options.format = sydra::cli::QueryFormat::csv; },
      "print the points as CSV (ts,value)");
  json_flag->excludes(csv_flag);

  sydra::cli::SeriesOptions series_options;
  CLI::App* series =
      app.add_subcommand("series", "List the running daemon's series: all, or by name and tags");
  series->add_option("NAME", series_options.name, "series name (default: every name)")->type_name("");
  series->add_option("--tag", series_options.tags, "only series with this tag KEY=VALUE (repeatable)")
      ->type_name("KEY=VALUE")
      ->allow_extra_args(false);
  add_connection_flags(series, series_options.url, series_options.token, series_options.timeout_seconds);
  series->add_flag_function(
      "--json", [&series_options](std::int64_t) { series_options.format = sydra::cli::SeriesFormat::json; },
      "print the daemon's JSON array");

  sydra::cli::CompactOptions compact_options;
  CLI::App* compact =
      app.add_subcommand("compact", "Merge the segments of a stopped daemon's data directory into one");
  compact->add_option("--data-dir", compact_options.data_dir, "data directory")
      ->type_name("DIR")
      ->capture_default_str();

  CLI::App* version = app.add_subcommand("version", "Print the version");

  const std::vector<std::string> args = command_first(std::vector<std::string>(argv + 1, argv + argc));
  std::vector<const char*> routed_argv = {"sydradb"};
  for (const std::string& a : args) routed_argv.push_back(a.c_str());
  try {
    app.parse(static_cast<int>(routed_argv.size()), routed_argv.data());
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    // One format for every error: "sydradb COMMAND: ...", and where the help is.
    const std::vector<CLI::App*> chosen = app.get_subcommands();
    const std::string command = chosen.empty() ? std::string() : chosen.front()->get_name();
    std::string message = e.what();
    if (dynamic_cast<const CLI::ExtrasError*>(&e) != nullptr) {
      // CLI11 2.1 lists these in reverse order; in the order given they read as typed.
      const std::vector<std::string> extras = app.remaining(true);
      message = extras.size() == 1 ? "unexpected argument:" : "unexpected arguments:";
      for (const std::string& a : extras) message += " " + a;
    }
    const std::string who = command.empty() ? "sydradb" : "sydradb " + command;
    std::fprintf(stderr, "%s: %s\nRun '%s --help' for more information.\n", who.c_str(), message.c_str(),
                 who.c_str());
    return sydra::cli::kExitUsage;
  }

  if (*stats) return sydra::cli::run_stats(stats_options);
  if (*ingest) return sydra::cli::run_ingest(ingest_options);
  if (*query) return sydra::cli::run_query(query_options);
  if (*series) return sydra::cli::run_series(series_options);
  if (*compact) return sydra::cli::run_compact(compact_options);
  if (*version) {
    std::printf("sydradb %s\n", SYDRADB_VERSION);
    return 0;
  }
  return run_serve(serve_flags);  // `serve`, or no subcommand at all
}
