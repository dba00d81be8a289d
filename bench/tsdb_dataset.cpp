// tsdb_dataset: the storage benchmark's dataset (bench/tsdb_dataset.hpp) loaded into sydradb
// or VictoriaMetrics, and single-series queries against either, over HTTP on loopback.
//
//   tsdb_dataset load  --target sydradb|vm --url http://HOST:PORT [dataset] [--batch POINTS]
//                      [--connections C] [--json]
//   tsdb_dataset query --target sydradb|vm --url http://HOST:PORT [dataset] [--queries Q]
//                      [--step-ms MS] [--verify] [--json]
//   tsdb_dataset print --target sydradb|vm [dataset]         the request bodies, to stdout
//   dataset: [--dataset decimal|wide|entropy] [--hosts 250] [--metrics 4] [--points 10000]
//            [--interval-ms 10000] [--start-ms MS] [--seed 13]
//
// load: the points in time order (every series' point i before any point i + 1), cut into
// requests of --batch points (default 10,000: 10 timestamps of 1,000 series), generated in
// memory before the clock starts, then sent over C keep-alive connections (default 4) that
// take the next request in turn. sydradb gets NDJSON on POST /api/v1/ingest
// ({"series","tags":{"host"},"ts","value"} per point); VictoriaMetrics gets JSON lines on
// POST /api/v1/import ({"metric":{"__name__","host"},"values":[..],"timestamps":[..]} per
// series in the request). Reports points/s over the whole load (first send to last answer)
// and request latency p50/p99/max.
// query: Q single-series queries (default 200, after 5 not counted) over the whole time range
// of a series drawn at random (seeded), one connection, one at a time: raw points (sydradb
// /api/v1/query/range; VictoriaMetrics /api/v1/export), or with --step-ms S buckets of S ms
// (sydradb step=S&agg=avg; VictoriaMetrics /api/v1/query_range with avg_over_time over S).
// --verify compares every raw answer with the generated series: timestamps and value bits
// (answers that differ are counted apart from errors, with the first difference on stderr).
// Reports latency p50/p99/max and points per answer.
// --start-ms defaults to now minus the dataset's span, rounded down to the interval: inside
// VictoriaMetrics' default retention. Exit 0; 1 on any error (a non-2xx answer, a transport
// error, a verification mismatch); 2 on bad usage.
#include <algorithm>
#include <atomic>
#include <bit>
#include <cctype>
#include <chrono>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <type_traits>
#include <vector>

#include "bench/bench_args.hpp"
#include "bench/http_connection.hpp"
#include "bench/tsdb_dataset.hpp"
#include "support/latency_histogram.hpp"

namespace {

using sydra::bench::LatencyHistogram;

using sydra::bench::Dataset;
using sydra::bench::DatasetSpec;
using sydra::bench::HttpConnection;
using sydra::bench::url_encode;
using Clock = std::chrono::steady_clock;

enum class Target { kSydradb, kVictoriaMetrics };

struct Options {
  std::string mode;
  Target target = Target::kSydradb;
  bool have_target = false;
  std::string host;
  std::string port;
  DatasetSpec data;
  bool have_start = false;
  std::size_t batch = 10'000;
  unsigned connections = 4;
  std::size_t queries = 200;
  std::int64_t step_ms = 0;
  bool verify = false;
  bool json = false;
};

[[noreturn]] void usage(const std::string& why) {
  std::fprintf(
      stderr,
      "tsdb_dataset: %s\n"
      "usage: tsdb_dataset load|query|print --target sydradb|vm [--url http://HOST:PORT]\n"
      "         [--dataset decimal|wide|entropy] [--hosts N] [--metrics N] [--points N] [--interval-ms MS]\n"
      "         [--start-ms MS] [--seed N] [--batch POINTS] [--connections C] [--queries Q]\n"
      "         [--step-ms MS] [--verify] [--json]\n",
      why.c_str());
  std::exit(2);
}

Options parse_options(int argc, char** argv) {
  if (argc < 2) usage("missing mode");
  Options o;
  o.mode = argv[1];
  if (o.mode != "load" && o.mode != "query" && o.mode != "print") usage("unknown mode " + o.mode);
  sydra::bench::Args args(argc, argv, 2, usage);
  while (args.next()) {
    const std::string& arg = args.flag();
    if (arg == "--target") {
      const std::string t = args.value();
      if (t == "sydradb") {
        o.target = Target::kSydradb;
      } else if (t == "vm" || t == "victoriametrics") {
        o.target = Target::kVictoriaMetrics;
      } else {
        usage("--target is sydradb or vm");
      }
      o.have_target = true;
    } else if (arg == "--url") {
      if (!sydra::bench::parse_http_url(args.value(), o.host, o.port))
        usage("--url must be http://HOST:PORT");
    } else if (arg == "--dataset") {
      o.data.kind = args.value();
      if (!sydra::bench::Dataset::known_kind(o.data.kind)) usage("--dataset is decimal, wide or entropy");
    } else if (arg == "--hosts") {
      o.data.hosts = static_cast<std::size_t>(args.number(1, 1e6));
    } else if (arg == "--metrics") {
      o.data.metrics = static_cast<std::size_t>(args.number(1, 1000));
    } else if (arg == "--points") {
      o.data.points = static_cast<std::size_t>(args.number(1, 1e8));
    } else if (arg == "--interval-ms") {
      o.data.interval_ms = static_cast<std::int64_t>(args.number(1, 86'400'000));
    } else if (arg == "--start-ms") {
      o.data.start_ms = static_cast<std::int64_t>(args.number(0, 4e12));
      o.have_start = true;
    } else if (arg == "--seed") {
      o.data.seed = static_cast<std::uint64_t>(args.number(0, 1e15));
    } else if (arg == "--batch") {
      o.batch = static_cast<std::size_t>(args.number(1, 1e7));
    } else if (arg == "--connections") {
      o.connections = static_cast<unsigned>(args.number(1, 256));
    } else if (arg == "--queries") {
      o.queries = static_cast<std::size_t>(args.number(1, 1e7));
    } else if (arg == "--step-ms") {
      o.step_ms = static_cast<std::int64_t>(args.number(0, 1e12));
    } else if (arg == "--verify") {
      o.verify = true;
    } else if (arg == "--json") {
      o.json = true;
    } else {
      args.unknown();
    }
  }
  if (!o.have_target) usage("--target is required");
  if (o.mode != "print" && o.host.empty()) usage("--url is required");
  if (!o.have_start) {
    const std::int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                                 std::chrono::system_clock::now().time_since_epoch())
                                 .count();
    const std::int64_t span = static_cast<std::int64_t>(o.data.points) * o.data.interval_ms;
    o.data.start_ms = (now - span) / o.data.interval_ms * o.data.interval_ms;
  }
  return o;
}

// ---- request bodies ----------------------------------------------------------------------

// The points of the dataset in time order, cut into bodies of `batch` points.
std::vector<std::string> make_bodies(const Options& o) {
  Dataset data(o.data);
  const std::size_t series = o.data.series();
  std::vector<std::string> names(series);
  std::vector<std::string> hosts(series);
  for (std::size_t s = 0; s < series; ++s) {
    names[s] = data.metric_of(s);
    hosts[s] = data.host_of(s);
  }
  std::vector<std::string> bodies;
  const std::uint64_t total = o.data.total_points();
  // VictoriaMetrics: one line per series in the request, gathered from its points.
  std::vector<std::string> values(series);
  std::vector<std::string> stamps(series);
  std::vector<std::size_t> touched;
  char text[64];
  std::string body;
  for (std::uint64_t at = 0; at < total;) {
    const std::uint64_t end = std::min<std::uint64_t>(total, at + o.batch);
    body.clear();
    body.reserve((end - at) * (o.target == Target::kSydradb ? 96 : 24));
    for (; at < end; ++at) {
      const auto index = static_cast<std::size_t>(at / series);
      const auto s = static_cast<std::size_t>(at % series);
      const double v = data.next(s);
      data.format(s, v, text, sizeof text);
      const std::int64_t ts = data.ts(index);
      if (o.target == Target::kSydradb) {
        body += "{\"series\":\"";
        body += names[s];
        body += "\",\"tags\":{\"host\":\"";
        body += hosts[s];
        body += "\"},\"ts\":";
        body += std::to_string(ts);
        body += ",\"value\":";
        body += text;
        body += "}\n";
      } else {
        if (values[s].empty()) touched.push_back(s);
        values[s] += values[s].empty() ? "" : ",";
        values[s] += text;
        stamps[s] += stamps[s].empty() ? "" : ",";
        stamps[s] += std::to_string(ts);
      }
    }
    for (std::size_t s : touched) {
      body += "{\"metric\":{\"__name__\":\"" + names[s] + "\",\"host\":\"" + hosts[s] + "\"},\"values\":[";
      body += values[s];
      body += "],\"timestamps\":[";
      body += stamps[s];
      body += "]}\n";
      values[s].clear();
      stamps[s].clear();
    }
    touched.clear();
    bodies.push_back(body);
  }
  return bodies;
}

// The latency at quantile p (1.0 = the maximum), in ns, from the shared histogram
// (bench/support): within 1/32 of the value.
double percentile_ns(const LatencyHistogram& h, double p) {
  return p >= 1.0 ? static_cast<double>(h.max()) : h.quantile(p);
}

// ---- load --------------------------------------------------------------------------------

int run_load(const Options& o) {
  const std::vector<std::string> bodies = make_bodies(o);
  const char* path = o.target == Target::kSydradb ? "/api/v1/ingest" : "/api/v1/import";
  std::atomic<std::size_t> next{0};
  std::atomic<std::uint64_t> errors{0};
  std::atomic<std::uint64_t> acknowledged{0};
  std::vector<LatencyHistogram> latencies(o.connections);
  std::string first_error;
  std::mutex error_mu;

  const auto start = Clock::now();
  std::vector<std::thread> threads;
  for (unsigned c = 0; c < o.connections; ++c) {
    threads.emplace_back([&, c] {
      HttpConnection connection(o.host, o.port);
      std::string answer;
      char head[512];
      for (std::size_t i; (i = next.fetch_add(1)) < bodies.size();) {
        const std::string& body = bodies[i];
        const int n = std::snprintf(head, sizeof head,
                                    "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/x-ndjson\r\n"
                                    "Content-Length: %zu\r\n\r\n",
                                    path, o.host.c_str(), body.size());
        const auto sent = Clock::now();
        const int status =
            connection.request(std::string_view(head, static_cast<std::size_t>(n)), body, answer);
        latencies[c].record(static_cast<std::uint64_t>(
            std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - sent).count()));
        if (status < 200 || status > 299) {
          errors.fetch_add(1);
          std::lock_guard lk(error_mu);
          if (first_error.empty())
            first_error = "status " + std::to_string(status) + ": " + answer.substr(0, 200);
          continue;
        }
        std::uint64_t points = 0;
        if (o.target == Target::kSydradb) {
          const auto at = answer.find("\"ingested\":");
          points = at == std::string::npos ? 0 : std::strtoull(answer.c_str() + at + 11, nullptr, 10);
        } else {
          points = std::min<std::uint64_t>(o.batch, o.data.total_points() - i * o.batch);
        }
        acknowledged.fetch_add(points);
      }
    });
  }
  for (auto& t : threads) t.join();
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  LatencyHistogram all;
  for (const auto& l : latencies) all.merge(l);
  const std::uint64_t points = acknowledged.load();
  if (points != o.data.total_points() && errors.load() == 0) {
    errors.fetch_add(1);
    first_error = std::to_string(points) + " points acknowledged of " + std::to_string(o.data.total_points());
  }
  const char* target = o.target == Target::kSydradb ? "sydradb" : "victoriametrics";
  if (o.json) {
    std::printf("{\"mode\":\"load\",\"target\":\"%s\",\"dataset\":\"%s\",\"points\":%" PRIu64
                ",\"requests\":%zu,\"seconds\":%.3f,\"points_per_s\":%.0f,\"p50_ms\":%.2f,\"p99_ms\":%.2f,"
                "\"max_ms\":%.2f,\"errors\":%" PRIu64 ",\"start_ms\":%" PRId64 "}\n",
                target, o.data.kind.c_str(), points, bodies.size(), seconds,
                static_cast<double>(points) / seconds, percentile_ns(all, 0.5) / 1e6,
                percentile_ns(all, 0.99) / 1e6, percentile_ns(all, 1.0) / 1e6, errors.load(),
                o.data.start_ms);
  } else {
    std::printf("%s: %" PRIu64
                " points in %zu requests over %u connections in %.2f s: %.2f M points/s; "
                "request p50 %.1f ms, p99 %.1f ms, max %.1f ms; errors %" PRIu64 "\n",
                target, points, bodies.size(), o.connections, seconds,
                static_cast<double>(points) / seconds / 1e6, percentile_ns(all, 0.5) / 1e6,
                percentile_ns(all, 0.99) / 1e6, percentile_ns(all, 1.0) / 1e6, errors.load());
  }
  if (errors.load() != 0) std::fprintf(stderr, "tsdb_dataset: %s\n", first_error.c_str());
  return errors.load() == 0 ? 0 : 1;
}

// ---- query -------------------------------------------------------------------------------

// The numbers of a JSON array that starts at `from` (just after its '['): integers or doubles.
template <typename T>
std::vector<T> numbers_after(const std::string& text, std::string_view key) {
  std::vector<T> out;
  auto at = text.find(key);
  if (at == std::string::npos) return out;
  const char* p = text.c_str() + at + key.size();
  while (*p != '\0' && *p != ']') {
    char* end = nullptr;
    if constexpr (std::is_same_v<T, double>) {
      out.push_back(std::strtod(p, &end));
    } else {
      out.push_back(std::strtoll(p, &end, 10));
    }
    if (end == p) break;
    p = end;
    while (*p == ',' || *p == ' ') ++p;
  }
  return out;
}

// Timestamps and values of an answer: sydradb's [{"ts":..,"value":..},..], or the first
// series of a VictoriaMetrics export line.
void parse_points(const Options& o, const std::string& answer, std::vector<std::int64_t>& ts,
                  std::vector<double>& values) {
  ts.clear();
  values.clear();
  if (o.target == Target::kVictoriaMetrics) {
    ts = numbers_after<std::int64_t>(answer, "\"timestamps\":[");
    values = numbers_after<double>(answer, "\"values\":[");
    return;
  }
  for (std::size_t at = answer.find("\"ts\":"); at != std::string::npos;
       at = answer.find("\"ts\":", at + 5)) {
    char* end = nullptr;
    ts.push_back(std::strtoll(answer.c_str() + at + 5, &end, 10));
    const char* v = std::strstr(end, "\"value\":");
    values.push_back(v == nullptr ? 0 : std::strtod(v + 8, nullptr));
  }
}

int run_query(const Options& o) {
  Dataset data(o.data);
  const std::size_t series = o.data.series();
  const std::int64_t start = o.data.start_ms;
  const std::int64_t end = data.ts(o.data.points - 1);
  std::mt19937_64 rng(o.data.seed + 7);
  HttpConnection connection(o.host, o.port);
  std::string answer;
  LatencyHistogram latencies;
  std::uint64_t errors = 0;
  std::uint64_t answered_points = 0;
  std::uint64_t mismatches = 0;        // answers that differ from the points sent (--verify)
  std::uint64_t differing_points = 0;  // their points that differ
  std::string first_error;
  std::string first_mismatch;
  std::vector<std::int64_t> ts;
  std::vector<double> values;
  std::map<std::size_t, std::vector<double>> expected;  // generated series, for --verify
  constexpr std::size_t kWarmup = 5;

  for (std::size_t q = 0; q < kWarmup + o.queries; ++q) {
    const std::size_t s = rng() % series;
    const std::string name = data.metric_of(s);
    const std::string host = data.host_of(s);
    std::string target;
    if (o.target == Target::kSydradb) {
      target = "/api/v1/query/range?series=" + url_encode(name) +
               "&tags=" + url_encode("{\"host\":\"" + host + "\"}") + "&start=" + std::to_string(start) +
               "&end=" + std::to_string(end);
      if (o.step_ms > 0) target += "&step=" + std::to_string(o.step_ms) + "&agg=avg";
    } else if (o.step_ms == 0) {
      target = "/api/v1/export?match[]=" + url_encode(name + "{host=\"" + host + "\"}") +
               "&start=" + std::to_string(start / 1000) + "&end=" + std::to_string(end / 1000 + 1);
    } else {
      target = "/api/v1/query_range?query=" +
               url_encode("avg_over_time(" + name + "{host=\"" + host + "\"}[" +
                          std::to_string(o.step_ms / 1000) + "s])") +
               "&start=" + std::to_string(start / 1000) + "&end=" + std::to_string(end / 1000) +
               "&step=" + std::to_string(o.step_ms / 1000) + "s";
    }
    const std::string head = "GET " + target + " HTTP/1.1\r\nHost: " + o.host + "\r\n\r\n";
    const auto sent = Clock::now();
    const int status = connection.request(head, {}, answer);
    const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - sent).count();
    if (status != 200) {
      ++errors;
      if (first_error.empty())
        first_error = target + ": status " + std::to_string(status) + " " + answer.substr(0, 200);
      continue;
    }
    if (q < kWarmup) continue;
    latencies.record(static_cast<std::uint64_t>(ns));
    if (o.step_ms > 0) {
      // Buckets: count "ts" fields (sydradb) or the pairs of a matrix (VictoriaMetrics).
      std::size_t n = 0;
      const std::string_view key = o.target == Target::kSydradb ? "\"ts\":" : "],[";
      for (auto at = answer.find(key); at != std::string::npos; at = answer.find(key, at + 1)) ++n;
      answered_points += o.target == Target::kSydradb ? n : n + 1;
      continue;
    }
    parse_points(o, answer, ts, values);
    answered_points += ts.size();
    if (!o.verify) continue;
    auto [it, fresh] = expected.try_emplace(s);
    if (fresh) {
      // A series' values depend on its own generator only: replay it alone.
      Dataset replay(o.data);
      for (std::size_t i = 0; i < o.data.points; ++i) it->second.push_back(replay.next(s));
    }
    const auto& want = it->second;
    std::size_t differing = ts.size() == want.size() && values.size() == want.size() ? 0 : want.size();
    std::size_t first = want.size();
    for (std::size_t i = 0; differing < want.size() && i < want.size(); ++i) {
      if (ts[i] == data.ts(i) &&
          std::bit_cast<std::uint64_t>(values[i]) == std::bit_cast<std::uint64_t>(want[i]))
        continue;
      if (first == want.size()) first = i;
      ++differing;
    }
    if (differing > 0) {
      ++mismatches;
      differing_points += differing;
      if (first_mismatch.empty()) {
        char example[160] = "";
        if (first < ts.size() && first < values.size())
          std::snprintf(example, sizeof example,
                        "; point %zu: sent ts %" PRId64 " value %.17g, answered ts %" PRId64 " value %.17g",
                        first, data.ts(first), want[first], ts[first], values[first]);
        first_mismatch = "series " + name + "{host=" + host + "}: " + std::to_string(differing) + " of " +
                         std::to_string(want.size()) + " points differ from the points sent (" +
                         std::to_string(ts.size()) + " answered)" + example;
      }
    }
  }
  const char* target = o.target == Target::kSydradb ? "sydradb" : "victoriametrics";
  const double per_answer =
      latencies.count() == 0 ? 0
                             : static_cast<double>(answered_points) / static_cast<double>(latencies.count());
  if (o.json) {
    std::printf(
        "{\"mode\":\"query\",\"target\":\"%s\",\"step_ms\":%" PRId64
        ",\"queries\":%zu,\"p50_ms\":%.3f,"
        "\"p99_ms\":%.3f,\"max_ms\":%.3f,\"points_per_answer\":%.1f,\"verified\":%s,\"mismatches\":%" PRIu64
        ",\"differing_points\":%" PRIu64 ",\"errors\":%" PRIu64 "}\n",
        target, o.step_ms, latencies.count(), percentile_ns(latencies, 0.5) / 1e6,
        percentile_ns(latencies, 0.99) / 1e6, percentile_ns(latencies, 1.0) / 1e6, per_answer,
        o.verify && o.step_ms == 0 ? "true" : "false", mismatches, differing_points, errors);
  } else {
    std::printf(
        "%s: %zu queries (%s): p50 %.2f ms, p99 %.2f ms, max %.2f ms; %.0f points per answer%s; "
        "answers differing from the points sent %" PRIu64 "; errors %" PRIu64 "\n",
        target, latencies.count(), o.step_ms > 0 ? "buckets" : "raw", percentile_ns(latencies, 0.5) / 1e6,
        percentile_ns(latencies, 0.99) / 1e6, percentile_ns(latencies, 1.0) / 1e6, per_answer,
        o.verify && o.step_ms == 0 ? ", every answer verified" : "", mismatches, errors);
  }
  if (errors != 0) std::fprintf(stderr, "tsdb_dataset: %s\n", first_error.c_str());
  if (mismatches != 0) std::fprintf(stderr, "tsdb_dataset: %s\n", first_mismatch.c_str());
  return errors == 0 && mismatches == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = parse_options(argc, argv);
  if (o.mode == "print") {
    for (const std::string& body : make_bodies(o)) std::fwrite(body.data(), 1, body.size(), stdout);
    return 0;
  }
  return o.mode == "load" ? run_load(o) : run_query(o);
}
