// tsdb_load: a load generator for the running daemon's ingest and query endpoints (or
// VictoriaMetrics' JSON-line import, to load the peer the same way).
//
//   tsdb_load [--url http://127.0.0.1:8080] [--connections 8] [--batch 1000] [--series 1000]
//             [--duration 10] [--query-fraction 0] [--stats-poll-ms 0] [--token T] [--json]
//             [--format sydradb|vm-import]
//             [--probe-url http://HOST:PORT] [--probe-path /debug/alloc/stats] [--probe-rate 10]
//             [--probe-idle-seconds 0]
//
// Each connection is a thread with one keep-alive HTTP/1.1 connection (plain blocking
// sockets). A request is, with probability --query-fraction, a range query
// (GET /api/v1/query/range over the last minute of one series), else an ingest of --batch
// points (POST /api/v1/ingest). Ingest bodies are generated before the clock starts, one
// per connection and template; per request only their fixed-width timestamps are rewritten
// in place, so every point is new (series x timestamp unique) and generating costs next to
// nothing. With --stats-poll-ms P > 0 another thread polls GET /debug/alloc/stats every P ms
// on its own connection, and its latency is reported apart.
//
// --format vm-import sends the same points as VictoriaMetrics JSON lines
// ({"metric":{"__name__":...,tags},"values":[v],"timestamps":[ts]}) to POST /api/v1/import;
// every 2xx answer counts the batch's points.
//
// The probe (--probe-url): --probe-rate times a second, a GET of --probe-path on a FRESH
// connection (connect, request with Connection: close, read to end of stream), timed from
// the connect to the end — what a curl or a health check costs, minus the process start.
// With --probe-idle-seconds S it first probes S seconds before any load starts ("idle"),
// then during the load ("load"); each phase reported apart.
//
// Reports: points/s (counted from the daemon's "ingested" answers), requests/s, latency
// p50/p99/p999/max per request kind, errors (transport errors, non-2xx answers, rejected
// points). Exit 0 when the run had no errors, 1 otherwise, 2 for bad arguments.
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "bench/bench_args.hpp"
#include "bench/http_connection.hpp"
#include "support/json_writer.hpp"
#include "support/latency_histogram.hpp"

namespace {

using sydra::bench::HttpConnection;
using sydra::bench::LatencyHistogram;

using Clock = std::chrono::steady_clock;

enum class Format { sydradb, vm_import };

struct Options {
  std::string host = "127.0.0.1";
  std::string port = "8080";
  Format format = Format::sydradb;
  std::string probe_host, probe_port;  // empty: no probe
  std::string probe_path = "/debug/alloc/stats";
  double probe_rate = 10;
  double probe_idle_seconds = 0;
  std::string token;
  unsigned connections = 8;
  std::size_t batch = 1000;
  std::size_t series = 1000;
  double duration = 10;
  double query_fraction = 0;
  unsigned stats_poll_ms = 0;
  bool json = false;
};

[[noreturn]] void usage(const std::string& why) {
  std::fprintf(
      stderr,
      "tsdb_load: %s\n"
      "usage: tsdb_load [--url http://HOST:PORT] [--connections N] [--batch POINTS] [--series N]\n"
      "                 [--duration SECONDS] [--query-fraction F] [--stats-poll-ms MS] [--token T] "
      "[--json]\n"
      "                 [--format sydradb|vm-import] [--probe-url http://HOST:PORT] [--probe-path PATH]\n"
      "                 [--probe-rate PER_SECOND] [--probe-idle-seconds S]\n",
      why.c_str());
  std::exit(2);
}

Options parse_options(int argc, char** argv) {
  Options o;
  sydra::bench::Args args(argc, argv, 1, usage);
  while (args.next()) {
    const std::string& arg = args.flag();
    if (arg == "--url") {
      if (!sydra::bench::parse_http_url(args.value(), o.host, o.port))
        usage("--url must be http://HOST:PORT");
    } else if (arg == "--probe-url") {
      if (!sydra::bench::parse_http_url(args.value(), o.probe_host, o.probe_port))
        usage("--probe-url must be http://HOST:PORT");
    } else if (arg == "--probe-path") {
      o.probe_path = args.value();
      if (o.probe_path.empty() || o.probe_path[0] != '/') usage("--probe-path must start with /");
    } else if (arg == "--probe-rate") {
      o.probe_rate = args.number(0.1, 1000);
    } else if (arg == "--probe-idle-seconds") {
      o.probe_idle_seconds = args.number(0, 3600);
    } else if (arg == "--format") {
      const std::string f = args.value();
      if (f == "sydradb")
        o.format = Format::sydradb;
      else if (f == "vm-import")
        o.format = Format::vm_import;
      else
        usage("--format must be sydradb or vm-import");
    } else if (arg == "--connections") {
      o.connections = static_cast<unsigned>(args.number(1, 1024));
    } else if (arg == "--batch") {
      o.batch = static_cast<std::size_t>(args.number(1, 1e6));
    } else if (arg == "--series") {
      o.series = static_cast<std::size_t>(args.number(1, 1e9));
    } else if (arg == "--duration") {
      o.duration = args.number(0.01, 86400);
    } else if (arg == "--query-fraction") {
      o.query_fraction = args.number(0, 1);
    } else if (arg == "--stats-poll-ms") {
      o.stats_poll_ms = static_cast<unsigned>(args.number(0, 60000));
    } else if (arg == "--token") {
      o.token = args.value();
    } else if (arg == "--json") {
      o.json = true;
    } else {
      args.unknown();
    }
  }
  return o;
}

// ---- workload ----------------------------------------------------------------------------

constexpr std::size_t kTsDigits = 13;  // fixed-width millisecond timestamps (until the year 2286)
constexpr std::int64_t kTsBase = 1'700'000'000'000;

// An ingest body with its timestamp fields at known offsets.
struct BodyTemplate {
  std::string body;
  std::vector<std::uint32_t> ts_offsets;
};

BodyTemplate make_template(const Options& o, std::size_t first_series, std::mt19937_64& rng) {
  BodyTemplate t;
  t.body.reserve(o.batch * 112);
  std::uniform_real_distribution<double> value(0, 100);
  char line[256];
  for (std::size_t j = 0; j < o.batch; ++j) {
    const std::size_t s = (first_series + j) % o.series;
    int prefix = 0;
    if (o.format == Format::sydradb) {
      prefix = std::snprintf(line, sizeof line, "{\"series\":\"bench.load\",\"ts\":");
      std::snprintf(line + prefix, sizeof line - static_cast<std::size_t>(prefix),
                    "%0*d,\"tags\":{\"host\":\"h%zu\",\"dc\":\"dc%zu\"},\"value\":%.3f}\n",
                    static_cast<int>(kTsDigits), 0, s, s % 4, value(rng));
    } else {  // VictoriaMetrics' /api/v1/import: one JSON line per series, here one point each
      prefix = std::snprintf(line, sizeof line,
                             "{\"metric\":{\"__name__\":\"bench.load\",\"host\":\"h%zu\",\"dc\":\"dc%zu\"},"
                             "\"values\":[%.3f],\"timestamps\":[",
                             s, s % 4, value(rng));
      std::snprintf(line + prefix, sizeof line - static_cast<std::size_t>(prefix), "%0*d]}\n",
                    static_cast<int>(kTsDigits), 0);
    }
    t.ts_offsets.push_back(static_cast<std::uint32_t>(t.body.size() + static_cast<std::size_t>(prefix)));
    t.body += line;
  }
  return t;
}

void write_ts(char* at, std::int64_t ts) {
  for (std::size_t i = kTsDigits; i-- > 0;) {
    at[i] = static_cast<char>('0' + ts % 10);
    ts /= 10;
  }
}

// Latencies in nanoseconds per request kind, and counters; one per thread, merged at the end.
struct Tally {
  LatencyHistogram ingest_ns, query_ns, stats_ns, probe_idle_ns, probe_load_ns;
  std::uint64_t points = 0, rejected_points = 0, transport_errors = 0, http_errors = 0;
  std::uint64_t query_points = 0;

  void merge(const Tally& o) {
    ingest_ns.merge(o.ingest_ns);
    query_ns.merge(o.query_ns);
    stats_ns.merge(o.stats_ns);
    probe_idle_ns.merge(o.probe_idle_ns);
    probe_load_ns.merge(o.probe_load_ns);
    points += o.points;
    rejected_points += o.rejected_points;
    transport_errors += o.transport_errors;
    http_errors += o.http_errors;
    query_points += o.query_points;
  }
};

std::uint64_t count_after(const std::string& body, std::string_view key) {
  const auto at = body.find(key);
  return at == std::string::npos ? 0 : std::strtoull(body.c_str() + at + key.size(), nullptr, 10);
}

std::string auth_header(const Options& o) {
  return o.token.empty() ? std::string() : "Authorization: Bearer " + o.token + "\r\n";
}

void run_connection(const Options& o, unsigned index, Clock::time_point deadline, Tally& tally) {
  std::mt19937_64 rng(0x5eed + index);
  constexpr std::size_t kTemplates = 8;
  std::vector<BodyTemplate> templates;
  for (std::size_t t = 0; t < kTemplates; ++t) {
    templates.push_back(make_template(o, (index * kTemplates + t) * o.batch, rng));
  }
  const std::string auth = auth_header(o);
  HttpConnection connection(o.host, o.port);
  std::uniform_real_distribution<double> coin(0, 1);
  std::uniform_int_distribution<std::size_t> pick_series(0, o.series - 1);
  std::string answer;
  std::uint64_t sequence = 0;  // requests of this connection
  char head[1024];

  while (Clock::now() < deadline) {
    // Point timestamps: unique per connection and request, 1 ms apart within a body.
    const std::int64_t base =
        kTsBase + static_cast<std::int64_t>((sequence * o.connections + index) * o.batch);
    ++sequence;
    if (o.query_fraction > 0 && coin(rng) < o.query_fraction) {
      const std::size_t s = pick_series(rng);
      // tags={"host":"hS","dc":"dcN"} URL-encoded; the last minute of timestamps written.
      const int n = std::snprintf(
          head, sizeof head,
          "GET /api/v1/query/range?series=bench.load&tags=%%7B%%22host%%22%%3A%%22h%zu%%22%%2C"
          "%%22dc%%22%%3A%%22dc%zu%%22%%7D&start=%" PRId64 "&end=%" PRId64 " HTTP/1.1\r\nHost: %s\r\n%s\r\n",
          s, s % 4, base - 60'000, base, o.host.c_str(), auth.c_str());
      const auto start = Clock::now();
      const int status = connection.request(std::string_view(head, static_cast<std::size_t>(n)), {}, answer);
      const auto ns = static_cast<std::uint64_t>(std::chrono::nanoseconds(Clock::now() - start).count());
      if (status < 0) {
        ++tally.transport_errors;
      } else if (status != 200) {
        ++tally.http_errors;
      } else {
        tally.query_ns.record(ns);
        tally.query_points += static_cast<std::uint64_t>(std::count(answer.begin(), answer.end(), '{'));
      }
      continue;
    }
    BodyTemplate& t = templates[sequence % kTemplates];
    for (std::size_t j = 0; j < t.ts_offsets.size(); ++j) {
      write_ts(t.body.data() + t.ts_offsets[j], base + static_cast<std::int64_t>(j));
    }
    const int n = std::snprintf(head, sizeof head,
                                "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/x-ndjson\r\n"
                                "%sContent-Length: %zu\r\n\r\n",
                                o.format == Format::sydradb ? "/api/v1/ingest" : "/api/v1/import",
                                o.host.c_str(), auth.c_str(), t.body.size());
    const auto start = Clock::now();
    const int status =
        connection.request(std::string_view(head, static_cast<std::size_t>(n)), t.body, answer);
    const auto ns = static_cast<std::uint64_t>(std::chrono::nanoseconds(Clock::now() - start).count());
    if (status < 0) {
      ++tally.transport_errors;
    } else if (status < 200 || status > 299) {
      ++tally.http_errors;
    } else {
      tally.ingest_ns.record(ns);
      if (o.format == Format::sydradb) {
        tally.points += count_after(answer, "\"ingested\":");
        tally.rejected_points += count_after(answer, "\"rejected\":");
      } else {
        tally.points += o.batch;  // 204, no body
      }
    }
  }
}

void run_stats_poller(const Options& o, Clock::time_point deadline, Tally& tally) {
  HttpConnection connection(o.host, o.port);
  const std::string head =
      "GET /debug/alloc/stats HTTP/1.1\r\nHost: " + o.host + "\r\n" + auth_header(o) + "\r\n";
  std::string answer;
  auto next = Clock::now();
  while (Clock::now() < deadline) {
    const auto start = Clock::now();
    const int status = connection.request(head, {}, answer);
    const auto ns = static_cast<std::uint64_t>(std::chrono::nanoseconds(Clock::now() - start).count());
    if (status < 0) {
      ++tally.transport_errors;
    } else if (status != 200) {
      ++tally.http_errors;
    } else {
      tally.stats_ns.record(ns);
    }
    next += std::chrono::milliseconds(o.stats_poll_ms);
    if (next < Clock::now()) next = Clock::now();
    std::this_thread::sleep_until(std::min(next, deadline));
  }
}

// One GET on a fresh connection, read to the end of the stream: its status (-1 on a
// transport error) and, in `ns`, the time from connect() to the end.
int probe_once(const std::string& host, const std::string& port, const std::string& head, std::uint64_t& ns) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* result = nullptr;
  if (::getaddrinfo(host.c_str(), port.c_str(), &hints, &result) != 0) return -1;
  const auto start = Clock::now();
  int fd = -1;
  for (addrinfo* a = result; a != nullptr && fd < 0; a = a->ai_next) {
    fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (fd >= 0 && ::connect(fd, a->ai_addr, a->ai_addrlen) != 0) {
      ::close(fd);
      fd = -1;
    }
  }
  ::freeaddrinfo(result);
  if (fd < 0) return -1;
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  timeval timeout{10, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  int status = -1;
  if (::send(fd, head.data(), head.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(head.size())) {
    std::string answer;
    char chunk[65536];
    ssize_t n;
    while ((n = ::recv(fd, chunk, sizeof chunk, 0)) > 0) answer.append(chunk, static_cast<std::size_t>(n));
    if (n == 0 && answer.size() > 12 && answer.rfind("HTTP/1.", 0) == 0)
      status = std::atoi(answer.c_str() + 9);
  }
  ::close(fd);
  ns = static_cast<std::uint64_t>(std::chrono::nanoseconds(Clock::now() - start).count());
  return status;
}

// Probes at --probe-rate until `deadline`, into `out`.
void run_probe(const Options& o, Clock::time_point deadline, LatencyHistogram& out, Tally& tally) {
  const std::string head = "GET " + o.probe_path + " HTTP/1.1\r\nHost: " + o.probe_host + "\r\n" +
                           auth_header(o) + "Connection: close\r\n\r\n";
  const auto period =
      std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(1.0 / o.probe_rate));
  auto next = Clock::now();
  while (next < deadline) {
    std::this_thread::sleep_until(next);
    std::uint64_t ns = 0;
    const int status = probe_once(o.probe_host, o.probe_port, head, ns);
    if (status < 0) {
      ++tally.transport_errors;
    } else if (status != 200) {
      ++tally.http_errors;
    } else {
      out.record(ns);
    }
    next += period;
    if (next < Clock::now()) next = Clock::now();  // a slow probe: keep the rate from now
  }
}

struct Percentiles {
  std::size_t count = 0;
  double p50_ms = 0, p99_ms = 0, p999_ms = 0, max_ms = 0;
};

// From the shared histogram (bench/support): quantiles within 1/32 of their value.
Percentiles percentiles(const LatencyHistogram& ns) {
  Percentiles p;
  p.count = ns.count();
  p.p50_ms = ns.quantile(0.50) / 1e6;
  p.p99_ms = ns.quantile(0.99) / 1e6;
  p.p999_ms = ns.quantile(0.999) / 1e6;
  p.max_ms = static_cast<double>(ns.max()) / 1e6;
  return p;
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = parse_options(argc, argv);

  // Check that the daemon answers before starting the clock.
  {
    HttpConnection probe(o.host, o.port);
    std::string answer;
    const int status = probe.request(
        "GET /status HTTP/1.1\r\nHost: " + o.host + "\r\n" + auth_header(o) + "\r\n", {}, answer);
    if (status < 0) {
      std::fprintf(stderr, "tsdb_load: cannot reach http://%s:%s\n", o.host.c_str(), o.port.c_str());
      return 1;
    }
  }

  const bool probing = !o.probe_host.empty();
  std::vector<Tally> tallies(o.connections + 2);
  Tally& probe_tally = tallies[o.connections + 1];
  if (probing && o.probe_idle_seconds > 0) {
    const auto idle_end = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                             std::chrono::duration<double>(o.probe_idle_seconds));
    run_probe(o, idle_end, probe_tally.probe_idle_ns, probe_tally);
  }
  std::vector<std::thread> threads;
  const auto start = Clock::now();
  const auto deadline =
      start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(o.duration));
  for (unsigned i = 0; i < o.connections; ++i) {
    threads.emplace_back([&, i] { run_connection(o, i, deadline, tallies[i]); });
  }
  if (o.stats_poll_ms > 0)
    threads.emplace_back([&] { run_stats_poller(o, deadline, tallies[o.connections]); });
  if (probing) threads.emplace_back([&] { run_probe(o, deadline, probe_tally.probe_load_ns, probe_tally); });
  for (std::thread& t : threads) t.join();
  const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();

  Tally total;
  for (const Tally& t : tallies) total.merge(t);
  Percentiles ingest = percentiles(total.ingest_ns);
  Percentiles query = percentiles(total.query_ns);
  Percentiles stats = percentiles(total.stats_ns);
  Percentiles probe_idle = percentiles(total.probe_idle_ns);
  Percentiles probe_load = percentiles(total.probe_load_ns);
  const double points_per_s = static_cast<double>(total.points) / elapsed;
  const double requests_per_s = static_cast<double>(ingest.count + query.count) / elapsed;
  const std::uint64_t errors = total.transport_errors + total.http_errors + total.rejected_points;

  if (o.json) {
    sydra::bench::Json j;
    j.begin_object();
    j.value("connections", std::uint64_t{o.connections});
    j.value("batch", std::uint64_t{o.batch});
    j.value("series", std::uint64_t{o.series});
    j.value("query_fraction", o.query_fraction);
    j.value("seconds", elapsed);
    j.value("points", total.points);
    j.value("points_per_second", points_per_s);
    j.value("requests_per_second", requests_per_s);
    for (const auto& [name, p] : {std::pair<const char*, const Percentiles&>{"ingest", ingest},
                                  {"query", query},
                                  {"stats", stats},
                                  {"probe_idle", probe_idle},
                                  {"probe_load", probe_load}}) {
      j.begin_object(name);
      j.value("requests", std::uint64_t{p.count});
      j.value("p50_ms", p.p50_ms);
      j.value("p99_ms", p.p99_ms);
      j.value("p999_ms", p.p999_ms);
      j.value("max_ms", p.max_ms);
      j.end_object();
    }
    j.value("query_points", total.query_points);
    j.begin_object("errors");
    j.value("transport", total.transport_errors);
    j.value("http", total.http_errors);
    j.value("rejected_points", total.rejected_points);
    j.end_object();
    j.end_object();
    std::printf("%s\n", j.str().c_str());
  } else {
    std::printf("tsdb_load: %u connections, %zu points/request, %zu series, query fraction %.2f, %.1f s\n",
                o.connections, o.batch, o.series, o.query_fraction, elapsed);
    std::printf("  points/s      %.0f (%" PRIu64 " points)\n", points_per_s, total.points);
    std::printf("  requests/s    %.1f\n", requests_per_s);
    const auto row = [](const char* name, const Percentiles& p) {
      if (p.count == 0) return;
      std::printf("  %-10s %8zu requests  p50 %.3f ms  p99 %.3f ms  p999 %.3f ms  max %.3f ms\n", name,
                  p.count, p.p50_ms, p.p99_ms, p.p999_ms, p.max_ms);
    };
    row("ingest", ingest);
    row("query", query);
    row("stats", stats);
    row("probe idle", probe_idle);
    row("probe load", probe_load);
    std::printf("  errors        transport %" PRIu64 ", http %" PRIu64 ", rejected points %" PRIu64 "\n",
                total.transport_errors, total.http_errors, total.rejected_points);
  }
  return errors == 0 ? 0 : 1;
}
