// The sydradb subcommands. main.cpp parses arguments (CLI11) and calls these.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace sydra::cli {

// Exit codes shared by the client commands (documented in docs/cli.md).
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;      // `compact`: the data directory is in use, unreadable or corrupt
inline constexpr int kExitUsage = 2;        // bad arguments or configuration
inline constexpr int kExitUnreachable = 3;  // the daemon could not be reached
inline constexpr int kExitHttpError = 4;    // the daemon answered with an HTTP error
inline constexpr int kExitRejected = 5;     // `ingest`: the daemon rejected some lines (the rest are stored)
inline constexpr int kExitNoSeries = 6;     // `query`: no series has that name and those tags

struct StatsOptions {
  std::string url;           // --url, else $SYDRADB_CONTROL_URL, else kDefaultControlUrl (cli/client.hpp)
  std::string token;         // --token, else $SYDRADB_TOKEN
  bool json = false;         // print the raw /debug/alloc/stats document
  double watch_seconds = 0;  // > 0: refresh in place every this many seconds until interrupted
  double timeout_seconds = 5;
};

// `sydradb stats`: reads GET {url}/debug/alloc/stats from the running daemon — its control
// listener, which answers even while ingest keeps the workers busy (the data listener
// answers too) — and prints a summary and a per-shard table (or the raw JSON). Returns an
// exit code.
int run_stats(const StatsOptions& options);

struct IngestOptions {
  std::string url;                                 // --url, else $SYDRADB_URL, else kDefaultUrl
  std::string token;                               // --token, else $SYDRADB_TOKEN
  std::string file;                                // "" or "-": standard input
  std::string precision;                           // unit of "ts": s, ms, us, ns ("" = the daemon's, ms)
  std::size_t batch_lines = 5000;                  // lines per request at most
  std::size_t batch_bytes = std::size_t{1} << 20;  // bytes per request at most (one longer line goes alone)
  double timeout_seconds = 30;
};

// `sydradb ingest`: sends NDJSON lines (a file or standard input) to POST {url}/api/v1/ingest
// in batches and prints the summary: lines ingested and rejected, the rejected lines with
// their line numbers in the input, and the daemon's warnings. A line the daemon refuses with
// 413 (over max_line_bytes or max_body_bytes) is rejected alone and the rest goes on. Exit 0
// when every line was stored, kExitRejected when some were rejected, kExitUnreachable /
// kExitHttpError when a batch could not be sent or was refused (the summary then says how
// far it got), kExitUsage for bad options or no input file.
int run_ingest(const IngestOptions& options);

enum class QueryFormat { table, json, csv };

struct QueryOptions {
  std::string url;                // --url, else $SYDRADB_URL, else kDefaultUrl (cli/client.hpp)
  std::string token;              // --token, else $SYDRADB_TOKEN
  std::string series;             // a series name, or a selector: cpu{host=~"h1.*",dc!="x"}
  std::string start;              // milliseconds since the Unix epoch, "now" or "now-<N><unit>"
  std::string end;                // the same
  std::vector<std::string> tags;  // "key=value" each
  std::string step;               // "" = raw points; else milliseconds or <N><unit>
  std::string agg;                // avg | min | max | sum | count | last ("" = the daemon's default, avg)
  std::string across;             // sum | avg | min | max | count: combine the series ("" = no)
  std::vector<std::string> by;    // labels that group them ("host", or "host,dc"; repeatable)
  QueryFormat format = QueryFormat::table;
  double timeout_seconds = 30;
};

// `sydradb query`: one series (a name and its --tags: POST {url}/api/v1/query/range), or
// many (a selector, or --across/--by: POST {url}/api/v1/query/select); prints the points as
// a table, CSV or JSON. Exit codes as for `stats`; when one series was asked for, no point
// came back and no series has that name and those tags, says which series of that name
// exist and exits kExitNoSeries.
int run_query(const QueryOptions& options);

enum class SeriesFormat { table, json };

struct SeriesOptions {
  std::string url;  // --url, else $SYDRADB_URL, else kDefaultUrl
  std::string token;
  std::string name;               // "" = every name
  std::vector<std::string> tags;  // "key=value" each: the series must carry every one
  SeriesFormat format = SeriesFormat::table;
  double timeout_seconds = 30;
};

// `sydradb series [NAME] [--tag k=v ...]`: GET {url}/api/v1/series, filtered by the daemon,
// printed as a table (name, tags, a count line) or the daemon's JSON array. Exit codes as
// for `stats`.
int run_series(const SeriesOptions& options);

struct CompactOptions {
  std::string data_dir = "./data";  // segments are in <data_dir>/segments
};

// `sydradb compact`: merges every segment of a STOPPED daemon's data directory into one
// (newest wins on equal timestamps) and prints what it did. kExitFailure when the directory
// is locked by a running daemon, or is unreadable or corrupt (one line on stderr).
int run_compact(const CompactOptions& options);

}  // namespace sydra::cli
