// The sydradb subcommands. main.cpp parses arguments (CLI11) and calls these.
#pragma once

#include <string>

namespace sydra::cli {

// Exit codes shared by the client commands (documented in docs/cli.md).
inline constexpr int kExitOk = 0;
inline constexpr int kExitUsage = 2;        // bad arguments or configuration
inline constexpr int kExitUnreachable = 3;  // the daemon could not be reached
inline constexpr int kExitHttpError = 4;    // the daemon answered with an HTTP error

struct StatsOptions {
  std::string url = "http://127.0.0.1:8080";
  std::string token;         // --token, else $SYDRADB_TOKEN
  bool json = false;         // print the raw /debug/alloc/stats document
  double watch_seconds = 0;  // > 0: refresh in place every this many seconds until interrupted
  double timeout_seconds = 5;
};

// `sydradb stats`: reads GET {url}/debug/alloc/stats from the running daemon and prints a
// summary and a per-shard table (or the raw JSON). Returns an exit code.
int run_stats(const StatsOptions& options);

}  // namespace sydra::cli
