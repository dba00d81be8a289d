// `sydradb stats`: fetches the running daemon's /debug/alloc/stats and prints it.
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <iostream>
#include <optional>
#include <stdexcept>
#include <string_view>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli/client.hpp"
#include "cli/commands.hpp"
#include "cli/stats_format.hpp"

namespace sydra::cli {

namespace {

using nlohmann::json;

constexpr std::string_view kUnknown = "?";

// ---- reading the document defensively ---------------------------------------------------
// Every accessor takes a possibly-null pointer and answers "absent" for anything that is
// not there or not of the expected type, so no lookup can throw.

const json* member(const json* object, const char* key) {
  if (object == nullptr || !object->is_object()) return nullptr;
  const auto it = object->find(key);
  return it == object->end() ? nullptr : &*it;
}

std::optional<std::uint64_t> count(const json* object, const char* key) {
  const json* v = member(object, key);
  if (v == nullptr) return std::nullopt;
  if (v->is_number_unsigned()) return v->get<std::uint64_t>();
  if (v->is_number_integer()) {
    const std::int64_t i = v->get<std::int64_t>();
    if (i >= 0) return static_cast<std::uint64_t>(i);
  }
  return std::nullopt;
}

std::optional<double> real(const json* object, const char* key) {
  const json* v = member(object, key);
  if (v == nullptr || !v->is_number()) return std::nullopt;
  const double d = v->get<double>();
  if (!std::isfinite(d)) return std::nullopt;
  return d;
}

std::optional<bool> flag(const json* object, const char* key) {
  const json* v = member(object, key);
  if (v == nullptr || !v->is_boolean()) return std::nullopt;
  return v->get<bool>();
}

std::optional<std::string> text(const json* object, const char* key) {
  const json* v = member(object, key);
  if (v == nullptr || !v->is_string()) return std::nullopt;
  return v->get<std::string>();
}

const json* array(const json* object, const char* key) {
  const json* v = member(object, key);
  return v != nullptr && v->is_array() ? v : nullptr;
}

// The sum of `key` over the objects of an array; absent if any element lacks it.
std::optional<std::uint64_t> sum_over(const json* items, const char* key) {
  if (items == nullptr) return std::nullopt;
  std::uint64_t total = 0;
  for (const json& item : *items) {
    const auto v = count(&item, key);
    if (!v) return std::nullopt;
    total += *v;
  }
  return total;
}

// ---- showing values ---------------------------------------------------------------------

std::string show(std::optional<std::uint64_t> v) {
  return v ? std::to_string(*v) : std::string(kUnknown);
}

std::string show(const std::optional<std::string>& v) {
  return v ? *v : std::string(kUnknown);
}

std::string show_bytes(std::optional<std::uint64_t> v) {
  return v ? format_bytes(*v) : std::string(kUnknown);
}

std::string fixed(double v, int decimals) {
  char out[64];
  std::snprintf(out, sizeof out, "%.*f", decimals, v);
  return out;
}

std::string percent(double fraction) {
  return fixed(fraction * 100.0, 1) + " %";
}

// hits as a share of hits + misses, e.g. " (99.2 %)"; empty when not computable.
std::string share(std::optional<std::uint64_t> part, std::optional<std::uint64_t> other) {
  if (!part || !other || *part + *other == 0) return {};
  return " (" + percent(static_cast<double>(*part) / static_cast<double>(*part + *other)) + ")";
}

// ---- the summary ------------------------------------------------------------------------

void line(std::string& out, std::string_view label, const std::string& value) {
  constexpr std::size_t kLabelWidth = 14;
  out += "  ";
  out += label;
  out.append(label.size() < kLabelWidth ? kLabelWidth - label.size() : 1, ' ');
  out += value;
  out += '\n';
}

void summary(std::string& out, const json& doc) {
  const json* pool = member(&doc, "small_pool");
  const json* fallback = member(pool, "fallback");
  const json* epoch = member(pool, "epoch");
  const json* memory = member(&doc, "memory");

  line(out, "mode", show(text(&doc, "allocator_mode")));

  const auto enabled = flag(pool, "shard_enabled");
  std::string shards = show(count(pool, "shard_count"));
  shards += enabled ? (*enabled ? ", sharding enabled" : ", sharding disabled") : ", sharding ?";
  shards += ", slabs of " + show_bytes(count(pool, "slab_bytes"));
  line(out, "shards", shards);

  const auto hits = count(pool, "shard_alloc_hits");
  const auto misses = count(pool, "shard_alloc_misses");
  line(out, "shard hits", show(hits) + share(hits, misses) + ", misses " + show(misses));

  line(out, "fallback",
       "allocs " + show(count(fallback, "allocs")) + ", frees " + show(count(fallback, "frees")) + ", live " +
           show_bytes(count(fallback, "live_bytes")));

  // Pending: the whole backlog now, summed over the size classes (shards and legacy).
  line(out, "deferred",
       "enqueued " + show(count(pool, "shard_deferred_total")) + " in total, pending " +
           show(sum_over(array(pool, "buckets"), "deferred_pending")) + " now");

  line(out, "epochs",
       "current " + show(count(epoch, "current")) + ", min observed " + show(count(epoch, "min_observed")) +
           ", lag " + show(count(epoch, "lag")) + ", threads " + show(count(epoch, "threads")) +
           ", active readers " + show(count(epoch, "active_readers")));

  const auto fragmentation = real(memory, "fragmentation");
  line(out, "memory",
       "resident " + show_bytes(count(memory, "resident_bytes")) + ", committed " +
           show_bytes(count(memory, "committed_bytes")) + ", reserved " +
           show_bytes(count(memory, "reserved_bytes")) + ", returned " +
           show_bytes(count(memory, "returned_bytes")));
  line(out, "",
       "live " + show_bytes(count(memory, "live_bytes")) + " (pool " +
           show_bytes(count(memory, "pool_live_bytes")) + "), fragmentation " +
           (fragmentation ? percent(*fragmentation) : std::string(kUnknown)) + ", process RSS " +
           show_bytes(count(memory, "process_resident_bytes")));
}

// ---- the per-shard table ----------------------------------------------------------------

constexpr std::size_t kColumns = 11;
using Row = std::array<std::string, kColumns>;

constexpr std::array<std::string_view, kColumns> kHeader = {
    "shard",  "threads",  "slabs", "in use",    "in use bytes", "occupancy",
    "cached", "deferred", "locks", "contended", "lock wait ms"};

Row shard_row(const json& shard, std::optional<std::uint64_t> slab_bytes) {
  const json* s = &shard;
  const auto slabs = count(s, "slabs");
  const auto in_use_bytes = count(s, "in_use_bytes");
  std::string occupancy(kUnknown);
  if (slabs && *slabs == 0) {
    occupancy = "-";
  } else if (slabs && slab_bytes && *slab_bytes > 0 && in_use_bytes) {
    occupancy = percent(static_cast<double>(*in_use_bytes) /
                        (static_cast<double>(*slabs) * static_cast<double>(*slab_bytes)));
  }
  const auto wait_ns = count(s, "lock_wait_ns");
  return Row{show(count(s, "id")),
             show(count(s, "threads")),
             show(slabs),
             show(count(s, "in_use")),
             show_bytes(in_use_bytes),
             occupancy,
             show(count(s, "cached")),
             show(count(s, "deferred_pending")),
             show(count(s, "lock_acquisitions")),
             show(count(s, "lock_contention")),
             wait_ns ? fixed(static_cast<double>(*wait_ns) / 1e6, 2) : std::string(kUnknown)};
}

void table(std::string& out, const json& doc) {
  const json* pool = member(&doc, "small_pool");
  const json* shards = array(pool, "shards");
  if (shards == nullptr) {
    out += "  per shard: ?\n";
    return;
  }
  if (shards->empty()) {
    out += "  per shard: no shards (sharding is off)\n";
    return;
  }
  const auto slab_bytes = count(pool, "slab_bytes");
  std::vector<Row> rows(1);
  for (std::size_t c = 0; c < kColumns; ++c) rows[0][c] = std::string(kHeader[c]);
  for (const json& shard : *shards) rows.push_back(shard_row(shard, slab_bytes));

  std::array<std::size_t, kColumns> width{};
  for (const Row& row : rows)
    for (std::size_t c = 0; c < kColumns; ++c) width[c] = std::max(width[c], row[c].size());
  for (const Row& row : rows) {
    out += "  ";
    for (std::size_t c = 0; c < kColumns; ++c) {
      if (c > 0) out += "  ";
      out.append(width[c] - row[c].size(), ' ');
      out += row[c];
    }
    out += '\n';
  }
}

// ---- fetching ---------------------------------------------------------------------------

// GETs and parses the document into `doc`. Returns kExitOk, or the exit code with `error`
// set to one line (without the "sydradb stats: " prefix).
int fetch(const DaemonClient& client, json& doc, std::string& error) {
  HttpResponse response;
  if (const int code = client.exchange("GET", "/debug/alloc/stats", {}, response, error); code != kExitOk)
    return code;
  doc = json::parse(response.body, nullptr, false);
  if (doc.is_discarded()) {
    error = client.url() + ": the answer is not JSON (is it sydradb?)";
    return kExitHttpError;
  }
  return kExitOk;
}

std::string render(const StatsOptions& options, const std::string& url, const json& doc) {
  // replace: a stray invalid UTF-8 byte in a string must not abort the dump.
  if (options.json) return doc.dump(2, ' ', false, json::error_handler_t::replace) + "\n";
  return format_stats(doc, url);
}

std::string local_time_now() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  localtime_r(&now, &tm);
  char out[64];
  if (std::strftime(out, sizeof out, "%Y-%m-%d %H:%M:%S %Z", &tm) == 0) return "?";
  return out;
}

std::string seconds_text(double seconds) {
  char out[32];
  std::snprintf(out, sizeof out, "%g s", seconds);
  return out;
}

// --watch: fetch and print every period until interrupted (SIGINT ends the process). A
// daemon that cannot be reached, or answers an error, is reported and asked again at the
// next refresh; only a usage error (a bad URL) ends the loop.
int watch(const StatsOptions& options, const DaemonClient& client) {
  const bool tty = isatty(STDOUT_FILENO) == 1;
  constexpr double kMaxPeriodSeconds = 86400;  // keeps the duration conversion in range
  const auto period = std::chrono::duration_cast<std::chrono::steady_clock::duration>(
      std::chrono::duration<double>(std::min(options.watch_seconds, kMaxPeriodSeconds)));
  auto next = std::chrono::steady_clock::now();
  for (bool first = true;; first = false) {
    json doc;
    std::string error;
    const int code = fetch(client, doc, error);
    if (code == kExitUsage) {
      client.fail(error);
      return kExitUsage;
    }
    std::string frame;
    if (tty) {
      frame += "\x1b[H\x1b[2J";  // cursor home, clear the screen
    } else if (!first) {
      frame += '\n';
    }
    frame += "sydradb stats every " + seconds_text(options.watch_seconds) + ", " + local_time_now() + "\n";
    if (code == kExitOk) frame += render(options, client.url(), doc);
    std::cout << frame << std::flush;
    if (code != kExitOk) client.fail(error);

    next += period;
    const auto now = std::chrono::steady_clock::now();
    if (next < now) next = now + period;  // a slow fetch: start the cadence again from now
    std::this_thread::sleep_until(next);
  }
}

}  // namespace

std::string format_bytes(std::uint64_t bytes) {
  static constexpr const char* kUnits[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  if (bytes < 1024) return std::to_string(bytes) + " B";
  double value = static_cast<double>(bytes) / 1024.0;
  std::size_t unit = 0;
  // Move up while the one-decimal figure would read 1024.0 or more.
  while (value >= 1023.95 && unit + 1 < std::size(kUnits)) {
    value /= 1024.0;
    ++unit;
  }
  return fixed(value, 1) + " " + kUnits[unit];
}

std::string format_stats(const nlohmann::json& doc, const std::string& url) {
  std::string out =
      "sydradb allocator at " + url + " (stats document version " + show(count(&doc, "version")) + ")\n\n";
  summary(out, doc);
  out += '\n';
  table(out, doc);
  return out;
}

int run_stats(const StatsOptions& options) {
  const std::optional<DaemonClient> client =
      DaemonClient::open("stats", options.url, options.token, options.timeout_seconds, Listener::control);
  if (!client) return kExitUsage;
  if (options.watch_seconds < 0 || !std::isfinite(options.watch_seconds)) {
    client->fail("--watch must be a positive number of seconds");
    return kExitUsage;
  }
  if (options.watch_seconds > 0) return watch(options, *client);

  json doc;
  std::string error;
  if (const int code = fetch(*client, doc, error); code != kExitOk) {
    client->fail(error);
    return code;
  }
  std::cout << render(options, client->url(), doc) << std::flush;
  return kExitOk;
}

}  // namespace sydra::cli
