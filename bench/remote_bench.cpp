// remote_bench: Prometheus' remote storage protocol against sydradb and VictoriaMetrics in
// one invocation, the systems interleaved within each round (the order rotates per round).
//
//   write  identical snappy-compressed WriteRequests of --series series x --samples samples
//          (Prometheus-like labels: __name__, instance, job, host), generated before the
//          round, sent by --connections keep-alive connections to each system's
//          /api/v1/write; samples/s per round (every answer must be 204)
//   read   one dataset written to both first (bench_one: one series of --one-samples samples
//          at 10 s; bench_many: --many-series series of --many-samples samples), then per
//          round --queries queries of each kind, one at a time:
//            sydradb  POST /api/v1/read (remote_read, SAMPLES): {__name__="bench_one"} over
//                     all of it, and {__name__="bench_many",host=~"h0.*"} (every series)
//            vm       no remote_read server: /api/v1/query_range with step 10 s over the
//                     same ranges (the PromQL path Prometheus users call; nocache=1, as
//                     sydradb has no result cache), and
//                     /api/v1/export (raw samples: the nearest to remote_read's answer)
//          every answer checked (series and samples counted); p50 and p99 per round
// Medians over the rounds, and ratios against VictoriaMetrics, go to stdout and --json.
//
// usage: remote_bench --sydradb URL --vm URL [--rounds R] [--requests N] [--connections C]
//                     [--series S] [--samples K] [--queries Q] [--one-samples N]
//                     [--many-series N] [--many-samples N] [--json FILE] [--smoke]
// URLs are http://HOST:PORT. bench/remote_bench.sh starts both servers and runs this.
#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "http_connection.hpp"
#include "server/prom/remote.hpp"
#include "support/json_writer.hpp"
#include "support/latency_histogram.hpp"

namespace {

using sydra::bench::HttpConnection;
using sydra::bench::LatencyHistogram;
using sydra::bench::url_encode;
using Clock = std::chrono::steady_clock;

struct Options {
  std::string sydradb, vm;
  int rounds = 5;
  int requests = 200;
  int connections = 4;
  int series = 1000;
  int samples = 10;
  int queries = 100;
  int one_samples = 10'000;
  int many_series = 1000;
  int many_samples = 100;
  std::string json;
};

constexpr std::int64_t kStepMs = 10'000;
constexpr std::int64_t kT0 = 1'790'000'000'000;  // 2026-09-21: inside VictoriaMetrics' retention

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "remote_bench: %s\n", what.c_str());
  std::exit(1);
}

struct Target {
  std::string name, host, port;
};

Target target(const std::string& name, const std::string& url) {
  Target t{name, {}, {}};
  if (!sydra::bench::parse_http_url(url, t.host, t.port))
    die("bad URL '" + url + "' (want http://HOST:PORT)");
  return t;
}

std::string post_head(const Target& t, const char* path, std::size_t length) {
  return std::string("POST ") + path + " HTTP/1.1\r\nHost: " + t.host + ":" + t.port +
         "\r\nContent-Type: application/x-protobuf\r\nContent-Encoding: snappy\r\n"
         "X-Prometheus-Remote-Write-Version: 0.1.0\r\nContent-Length: " +
         std::to_string(length) + "\r\n\r\n";
}

// Request k of a round: every series with `samples` samples after the previous request's.
std::vector<std::string> write_bodies(const Options& o, int round) {
  std::vector<std::string> bodies;
  std::vector<sydra::prom::Series> series(static_cast<std::size_t>(o.series));
  for (int s = 0; s < o.series; ++s) {
    char host[16];
    std::snprintf(host, sizeof host, "h%05d", s);
    series[s].labels = {
        {"__name__", "bench_rw"}, {"host", host}, {"instance", "10.0.0.1:9100"}, {"job", "node"}};
  }
  std::int64_t ts = kT0 + std::int64_t{round} * o.requests * o.samples * kStepMs;
  for (int k = 0; k < o.requests; ++k) {
    for (int s = 0; s < o.series; ++s) {
      series[s].samples.clear();
      for (int i = 0; i < o.samples; ++i)
        series[s].samples.push_back({static_cast<double>((s * 7 + i + k) % 1000) * 0.25, ts + i * kStepMs});
    }
    ts += o.samples * kStepMs;
    bodies.push_back(sydra::prom::encode_write_request(series));
  }
  return bodies;
}

// Sends every body once over `connections` connections; samples/s.
double send_all(const Options& o, const Target& t, const std::vector<std::string>& bodies) {
  std::atomic<std::size_t> next{0};
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  const auto start = Clock::now();
  for (int c = 0; c < o.connections; ++c) {
    threads.emplace_back([&] {
      HttpConnection connection(t.host, t.port);
      std::string answer;
      for (std::size_t i; (i = next.fetch_add(1)) < bodies.size();) {
        const int status =
            connection.request(post_head(t, "/api/v1/write", bodies[i].size()), bodies[i], answer);
        if (status != 204 && status != 200) {
          if (failures.fetch_add(1) == 0)
            std::fprintf(stderr, "%s: status %d: %s\n", t.name.c_str(), status, answer.c_str());
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  if (failures > 0) die(t.name + ": " + std::to_string(failures.load()) + " write requests failed");
  return static_cast<double>(bodies.size()) * o.series * o.samples / seconds;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n == 0 ? 0 : n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

// ---- the read phase ----------------------------------------------------------------------

void load_read_dataset(const Options& o, const Target& t) {
  std::vector<sydra::prom::Series> batch;
  sydra::prom::Series one{{{"__name__", "bench_one"}, {"job", "bench"}}, {}};
  for (int i = 0; i < o.one_samples; ++i)
    one.samples.push_back({static_cast<double>(i % 97) * 1.5, kT0 + i * kStepMs});
  batch.push_back(one);
  for (int s = 0; s < o.many_series; ++s) {
    char host[16];
    std::snprintf(host, sizeof host, "h%04d", s);
    sydra::prom::Series m{{{"__name__", "bench_many"}, {"host", host}, {"job", "bench"}}, {}};
    for (int i = 0; i < o.many_samples; ++i)
      m.samples.push_back({static_cast<double>(s + i), kT0 + i * kStepMs});
    batch.push_back(std::move(m));
  }
  HttpConnection connection(t.host, t.port);
  std::string answer;
  const std::string body = sydra::prom::encode_write_request(batch);
  const int status = connection.request(post_head(t, "/api/v1/write", body.size()), body, answer);
  if (status != 204 && status != 200)
    die(t.name + ": loading the read dataset: " + std::to_string(status) + " " + answer);
}

struct Kind {
  std::string system, query;
  std::string head, body;                 // the request
  std::size_t want_series, want_samples;  // what a right answer holds
  int (*count)(const std::string& answer, std::size_t& series, std::size_t& samples);
};

int count_remote_read(const std::string& answer, std::size_t& series, std::size_t& samples) {
  std::vector<std::vector<sydra::prom::Series>> results;
  if (!sydra::prom::decode_read_response(answer, results) || results.size() != 1) return -1;
  series = results[0].size();
  samples = 0;
  for (const auto& s : results[0]) samples += s.samples.size();
  return 0;
}

// query_range JSON: series = occurrences of "metric", points = "[" pairs inside "values".
int count_query_range(const std::string& answer, std::size_t& series, std::size_t& samples) {
  if (answer.find("\"status\":\"success\"") == std::string::npos) return -1;
  series = 0;
  samples = 0;
  for (std::size_t p = 0; (p = answer.find("\"metric\":", p)) != std::string::npos; ++p) ++series;
  for (std::size_t p = answer.find("\"values\":"); p != std::string::npos && p < answer.size(); ++p)
    if (answer[p] == '[' && p + 1 < answer.size() && answer[p + 1] != '[') ++samples;
  return 0;
}

// export JSON lines: one line per series, "timestamps":[...] counted by commas.
int count_export(const std::string& answer, std::size_t& series, std::size_t& samples) {
  series = 0;
  samples = 0;
  std::size_t p = 0;
  while ((p = answer.find("\"timestamps\":[", p)) != std::string::npos) {
    ++series;
    const std::size_t end = answer.find(']', p);
    if (end == std::string::npos) return -1;
    samples += static_cast<std::size_t>(std::count(answer.begin() + static_cast<long>(p),
                                                   answer.begin() + static_cast<long>(end), ',')) +
               1;
    p = end;
  }
  return 0;
}

std::string get_head(const Target& t, const std::string& target) {
  return "GET " + target + " HTTP/1.1\r\nHost: " + t.host + ":" + t.port + "\r\n\r\n";
}

std::vector<Kind> read_kinds(const Options& o, const Target& sydradb, const Target& vm) {
  const std::int64_t one_end = kT0 + (o.one_samples - 1) * kStepMs;
  const std::int64_t many_end = kT0 + (o.many_samples - 1) * kStepMs;
  std::vector<Kind> kinds;
  auto remote_read = [&](const char* name, const char* metric, std::int64_t end, bool regex,
                         std::size_t series, std::size_t samples) {
    std::vector<sydra::prom::WireQuery> q = {{kT0, end, {{sydra::prom::MatchType::eq, "__name__", metric}}}};
    if (regex) q[0].matchers.push_back({sydra::prom::MatchType::re, "host", "h0.*"});
    const std::string body = sydra::prom::encode_read_request(q);
    kinds.push_back({"sydradb", name, post_head(sydradb, "/api/v1/read", body.size()), body, series, samples,
                     count_remote_read});
  };
  remote_read("one_series", "bench_one", one_end, false, 1, static_cast<std::size_t>(o.one_samples));
  remote_read("regex_1000", "bench_many", many_end, true, static_cast<std::size_t>(o.many_series),
              static_cast<std::size_t>(o.many_series) * o.many_samples);
  auto vm_query = [&](const char* name, const std::string& selector, std::int64_t end, std::size_t series,
                      std::size_t samples) {
    const std::string range = "&start=" + std::to_string(kT0 / 1000) + "&end=" + std::to_string(end / 1000);
    kinds.push_back(
        {"vm_query_range", name,
         get_head(vm, "/api/v1/query_range?query=" + url_encode(selector) + range + "&step=10s&nocache=1"),
         "", series, samples, count_query_range});
    kinds.push_back({"vm_export", name,
                     get_head(vm, "/api/v1/export?match[]=" + url_encode(selector) + range), "", series,
                     samples, count_export});
  };
  vm_query("one_series", "bench_one", one_end, 1, static_cast<std::size_t>(o.one_samples));
  vm_query("regex_1000", R"(bench_many{host=~"h0.*"})", many_end, static_cast<std::size_t>(o.many_series),
           static_cast<std::size_t>(o.many_series) * o.many_samples);
  return kinds;
}

// One query; its latency in microseconds, or a failure naming the answer.
double run_query(HttpConnection& connection, const Kind& k, bool check) {
  std::string answer;
  const auto start = Clock::now();
  const int status = connection.request(k.head, k.body, answer);
  const double us = std::chrono::duration<double, std::micro>(Clock::now() - start).count();
  if (status != 200)
    die(k.system + " " + k.query + ": status " + std::to_string(status) + ": " + answer.substr(0, 300));
  if (check) {
    std::size_t series = 0, samples = 0;
    if (k.count(answer, series, samples) != 0 || series != k.want_series || samples != k.want_samples)
      die(k.system + " " + k.query + ": " + std::to_string(series) + " series and " +
          std::to_string(samples) + " samples, want " + std::to_string(k.want_series) + " and " +
          std::to_string(k.want_samples));
  }
  return us;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) die(a + " needs a value");
      return argv[++i];
    };
    if (a == "--sydradb")
      o.sydradb = value();
    else if (a == "--vm")
      o.vm = value();
    else if (a == "--rounds")
      o.rounds = std::stoi(value());
    else if (a == "--requests")
      o.requests = std::stoi(value());
    else if (a == "--connections")
      o.connections = std::stoi(value());
    else if (a == "--series")
      o.series = std::stoi(value());
    else if (a == "--samples")
      o.samples = std::stoi(value());
    else if (a == "--queries")
      o.queries = std::stoi(value());
    else if (a == "--one-samples")
      o.one_samples = std::stoi(value());
    else if (a == "--many-series")
      o.many_series = std::stoi(value());
    else if (a == "--many-samples")
      o.many_samples = std::stoi(value());
    else if (a == "--json")
      o.json = value();
    else if (a == "--smoke") {
      o.rounds = 1;
      o.requests = 5;
      o.queries = 3;
      o.one_samples = 500;
      o.many_series = 50;
      o.many_samples = 10;
    } else
      die("unknown argument " + a + " (see the header of bench/remote_bench.cpp)");
  }
  if (o.sydradb.empty() || o.vm.empty()) die("--sydradb URL and --vm URL are required");
  const std::vector<Target> systems = {target("sydradb", o.sydradb), target("vm", o.vm)};

  // Write: samples/s per round and system.
  std::map<std::string, std::vector<double>> rates;
  for (int r = 0; r < o.rounds; ++r) {
    const std::vector<std::string> bodies = write_bodies(o, r);
    for (std::size_t k = 0; k < systems.size(); ++k) {
      const Target& t = systems[(k + static_cast<std::size_t>(r)) % systems.size()];
      const double rate = send_all(o, t, bodies);
      rates[t.name].push_back(rate);
      std::printf("round %d write %-8s %12.0f samples/s\n", r, t.name.c_str(), rate);
      std::fflush(stdout);
    }
  }

  // Read: the dataset, then VictoriaMetrics flushed and waited for.
  for (const Target& t : systems) load_read_dataset(o, t);
  {
    HttpConnection vm(systems[1].host, systems[1].port);
    std::string answer;
    vm.request(get_head(systems[1], "/internal/force_flush"), "", answer);
  }
  const std::vector<Kind> kinds = read_kinds(o, systems[0], systems[1]);
  const auto ready_by = Clock::now() + std::chrono::seconds(60);
  for (const Kind& k : kinds) {  // until each answers in full (VictoriaMetrics: after its flush)
    HttpConnection c(k.system == "sydradb" ? systems[0].host : systems[1].host,
                     k.system == "sydradb" ? systems[0].port : systems[1].port);
    for (;;) {
      std::string answer;
      std::size_t series = 0, samples = 0;
      if (c.request(k.head, k.body, answer) == 200 && k.count(answer, series, samples) == 0 &&
          series == k.want_series && samples == k.want_samples)
        break;
      if (Clock::now() > ready_by) run_query(c, k, true);  // dies with what it got
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
  }
  std::map<std::string, std::vector<double>> p50, p99;  // "system query" → per round
  for (int r = 0; r < o.rounds; ++r) {
    for (std::size_t i = 0; i < kinds.size(); ++i) {
      const Kind& k = kinds[(i + static_cast<std::size_t>(r)) % kinds.size()];
      const Target& t = k.system == "sydradb" ? systems[0] : systems[1];
      HttpConnection c(t.host, t.port);
      LatencyHistogram h;
      run_query(c, k, true);  // a warm-up query, checked
      for (int q = 0; q < o.queries; ++q) h.record(static_cast<std::uint64_t>(run_query(c, k, q == 0)));
      const std::string key = k.system + " " + k.query;
      p50[key].push_back(h.quantile(0.5));
      p99[key].push_back(h.quantile(0.99));
      std::printf("round %d read  %-28s p50 %9.0f us  p99 %9.0f us\n", r, key.c_str(), h.quantile(0.5),
                  h.quantile(0.99));
      std::fflush(stdout);
    }
  }

  std::printf("\nmedians over %d rounds\n", o.rounds);
  const double vm_rate = median(rates["vm"]);
  for (const auto& [name, v] : rates)
    std::printf("write %-8s %12.0f samples/s  (%.2f x VictoriaMetrics)\n", name.c_str(), median(v),
                median(v) / vm_rate);
  for (const auto& [key, v] : p99)
    std::printf("read  %-28s p50 %9.0f us  p99 %9.0f us\n", key.c_str(), median(p50[key]), median(v));

  if (!o.json.empty()) {
    sydra::bench::Json j;
    j.begin_object();
    j.value("rounds", o.rounds);
    j.value("requests", o.requests);
    j.value("connections", o.connections);
    j.value("series", o.series);
    j.value("samples", o.samples);
    j.value("queries", o.queries);
    j.begin_object("write_samples_per_second");
    for (const auto& [name, v] : rates) j.value(name.c_str(), median(v));
    j.end_object();
    j.begin_object("read_p99_us");
    for (const auto& [key, v] : p99) j.value(key.c_str(), median(v));
    j.end_object();
    j.begin_object("read_p50_us");
    for (const auto& [key, v] : p50) j.value(key.c_str(), median(v));
    j.end_object();
    j.end_object();
    std::ofstream(o.json) << j.str() << "\n";
  }
  return 0;
}
