// The HTTP API of a running daemon (docs/http-api.md, docs/metrics.md): every endpoint's
// answer, the error statuses and their JSON bodies, bearer-token authentication, and the
// consistency of the allocator figures in /debug/alloc/stats and /metrics.
#include <doctest/doctest.h>

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "daemon_harness.hpp"

namespace sydra::itest {
namespace {

using nlohmann::json;

// The fields of every per-class entry (buckets, legacy, shards[i].classes):
// alloc/stats_json.cpp writes size, alloc_size, the SYDRA_CLASS_STATS fields and the
// upstream aliases.
const std::vector<std::string> kClassFields = {"size",
                                               "alloc_size",
                                               "allocations",
                                               "frees",
                                               "in_use",
                                               "cached",
                                               "free_blocks",
                                               "high_water",
                                               "refills",
                                               "flushes",
                                               "slabs",
                                               "deferred_enqueued",
                                               "deferred_reclaimed",
                                               "deferred_pending",
                                               "lock_acquisitions",
                                               "lock_contention",
                                               "lock_wait_ns",
                                               "lock_hold_ns",
                                               "free_nodes",
                                               "lock_wait_ns_total",
                                               "lock_hold_ns_total"};
// The additive per-class counters: buckets[c] must equal legacy[c] + Σ shards[i].classes[c].
const std::vector<std::string> kSummedClassFields = {"allocations",
                                                     "frees",
                                                     "in_use",
                                                     "cached",
                                                     "free_blocks",
                                                     "high_water",
                                                     "refills",
                                                     "flushes",
                                                     "slabs",
                                                     "deferred_enqueued",
                                                     "deferred_reclaimed",
                                                     "deferred_pending",
                                                     "lock_acquisitions",
                                                     "lock_contention",
                                                     "lock_wait_ns",
                                                     "lock_hold_ns"};
const std::vector<std::string> kShardFields = {"id",
                                               "threads",
                                               "cross_shard_frees",
                                               "empty_slabs",
                                               "epoch_min",
                                               "lock_acquisitions",
                                               "lock_contention",
                                               "lock_wait_ns",
                                               "lock_hold_ns",
                                               "allocations",
                                               "frees",
                                               "in_use",
                                               "cached",
                                               "slabs",
                                               "deferred_enqueued",
                                               "deferred_reclaimed",
                                               "deferred_pending",
                                               "in_use_bytes",
                                               "classes"};
const std::vector<std::string> kSmallPoolFields = {"shard_enabled",
                                                   "shard_count",
                                                   "slab_bytes",
                                                   "shard_alloc_hits",
                                                   "shard_alloc_misses",
                                                   "shard_deferred_total",
                                                   "shard_epoch_current",
                                                   "shard_epoch_min",
                                                   "epoch",
                                                   "fallback",
                                                   "buckets",
                                                   "legacy",
                                                   "shards"};
const std::vector<std::string> kEpochFields = {"current",  "min_observed", "lag",
                                               "advances", "threads",      "active_readers"};
const std::vector<std::string> kFallbackFields = {"allocs", "frees",      "resizes",
                                                  "remaps", "live_bytes", "size_buckets"};
const std::vector<std::string> kMemoryFields = {
    "reserved_bytes", "committed_bytes", "resident_bytes",         "returned_bytes",
    "live_bytes",     "pool_live_bytes", "process_resident_bytes", "fragmentation"};

void check_has_fields(const json& object, const std::vector<std::string>& fields, const std::string& where) {
  REQUIRE_MESSAGE(object.is_object(), where, " is not an object");
  for (const std::string& f : fields) CHECK_MESSAGE(object.contains(f), where, " lacks \"", f, "\"");
}

std::uint64_t u64(const json& j, const std::string& key) {
  REQUIRE_MESSAGE(j.contains(key), "missing \"", key, "\"");
  REQUIRE_MESSAGE(j[key].is_number_unsigned(), "\"", key, "\" is not an unsigned integer: ", j[key].dump());
  return j[key].get<std::uint64_t>();
}

// Checks the document's shape (every documented key) and its arithmetic.
void check_alloc_stats(const json& doc) {
  check_has_fields(doc, {"version", "allocator_mode", "small_pool", "memory"}, "document");
  CHECK(doc["version"] == 2);
  const json& sp = doc["small_pool"];
  check_has_fields(sp, kSmallPoolFields, "small_pool");
  check_has_fields(sp["epoch"], kEpochFields, "small_pool.epoch");
  check_has_fields(sp["fallback"], kFallbackFields, "small_pool.fallback");
  check_has_fields(doc["memory"], kMemoryFields, "memory");

  // Size classes: the same ascending sizes everywhere, every class field present.
  const json& buckets = sp["buckets"];
  const json& legacy = sp["legacy"];
  const json& shards = sp["shards"];
  REQUIRE(buckets.is_array());
  REQUIRE(legacy.is_array());
  REQUIRE(shards.is_array());
  REQUIRE(buckets.size() > 0);
  REQUIRE(legacy.size() == buckets.size());
  std::uint64_t previous_size = 0;
  for (std::size_t c = 0; c < buckets.size(); ++c) {
    check_has_fields(buckets[c], kClassFields, "buckets[" + std::to_string(c) + "]");
    check_has_fields(legacy[c], kClassFields, "legacy[" + std::to_string(c) + "]");
    CHECK(u64(buckets[c], "size") > previous_size);
    previous_size = u64(buckets[c], "size");
    CHECK(buckets[c]["alloc_size"] == buckets[c]["size"]);
    CHECK(legacy[c]["size"] == buckets[c]["size"]);
    // Upstream aliases carry the same values.
    CHECK(buckets[c]["free_nodes"] == buckets[c]["free_blocks"]);
    CHECK(buckets[c]["lock_wait_ns_total"] == buckets[c]["lock_wait_ns"]);
    CHECK(buckets[c]["lock_hold_ns_total"] == buckets[c]["lock_hold_ns"]);
  }

  // Shards: the shards created, numbered 0..n-1; shard_count is how many are active (new
  // threads spread over those), so entries cover at least the active ones.
  const std::uint64_t shard_count = u64(sp, "shard_count");
  CHECK(shards.size() >= shard_count);
  CHECK(sp["shard_enabled"] == (doc["allocator_mode"] == "sharded" && shard_count > 0));
  std::uint64_t hits = 0;
  std::uint64_t deferred = 0;
  for (std::size_t i = 0; i < shards.size(); ++i) {
    const json& sh = shards[i];
    const std::string where = "shards[" + std::to_string(i) + "]";
    check_has_fields(sh, kShardFields, where);
    CHECK(u64(sh, "id") == i);
    REQUIRE(sh["classes"].size() == buckets.size());
    std::map<std::string, std::uint64_t> totals;
    std::uint64_t in_use_bytes = 0;
    for (std::size_t c = 0; c < buckets.size(); ++c) {
      const json& cls = sh["classes"][c];
      check_has_fields(cls, kClassFields, where + ".classes[" + std::to_string(c) + "]");
      CHECK(cls["size"] == buckets[c]["size"]);
      for (const char* f : {"allocations", "frees", "in_use", "cached", "slabs", "deferred_enqueued",
                            "deferred_reclaimed", "deferred_pending"})
        totals[f] += u64(cls, f);
      in_use_bytes += u64(cls, "in_use") * u64(cls, "size");
      CHECK(u64(cls, "deferred_pending") == u64(cls, "deferred_enqueued") - u64(cls, "deferred_reclaimed"));
    }
    for (const auto& [f, total] : totals)
      CHECK_MESSAGE(u64(sh, f) == total, where, ".", f, " is not Σ classes");
    CHECK(u64(sh, "in_use_bytes") == in_use_bytes);
    hits += u64(sh, "allocations");
    deferred += u64(sh, "deferred_enqueued");
  }
  CHECK(u64(sp, "shard_alloc_hits") == hits);
  CHECK(u64(sp, "shard_deferred_total") == deferred);

  // buckets[c] = legacy[c] + Σ shards[i].classes[c], field by field.
  for (std::size_t c = 0; c < buckets.size(); ++c) {
    for (const std::string& f : kSummedClassFields) {
      std::uint64_t sum = u64(legacy[c], f);
      for (const json& sh : shards) sum += u64(sh["classes"][c], f);
      CHECK_MESSAGE(u64(buckets[c], f) == sum, "buckets[", c, "].", f, " != legacy + Σ shards");
    }
  }

  // Epochs.
  const json& epoch = sp["epoch"];
  CHECK(sp["shard_epoch_current"] == epoch["current"]);
  CHECK(sp["shard_epoch_min"] == epoch["min_observed"]);
  CHECK(u64(epoch, "min_observed") <= u64(epoch, "current"));
  CHECK(u64(epoch, "lag") == u64(epoch, "current") - u64(epoch, "min_observed"));

  // Fallback size buckets: ascending bounds, the last one unbounded (null).
  const json& sizes = sp["fallback"]["size_buckets"];
  REQUIRE(sizes.is_array());
  REQUIRE(sizes.size() == 8);
  std::uint64_t bound = 0;
  for (std::size_t i = 0; i + 1 < sizes.size(); ++i) {
    CHECK(sizes[i].contains("count"));
    CHECK(u64(sizes[i], "upper_bound") > bound);
    bound = u64(sizes[i], "upper_bound");
  }
  CHECK(sizes.back()["upper_bound"].is_null());

  // Memory.
  const json& m = doc["memory"];
  std::uint64_t pool_live = 0;
  for (const json& b : buckets) pool_live += u64(b, "in_use") * u64(b, "size");
  CHECK(u64(m, "pool_live_bytes") == pool_live);
  CHECK(u64(m, "live_bytes") == pool_live + u64(sp["fallback"], "live_bytes"));
  CHECK(u64(m, "committed_bytes") <= u64(m, "reserved_bytes"));
  CHECK(u64(m, "process_resident_bytes") > 0);
  CHECK(m["fragmentation"].is_number());
  CHECK(m["fragmentation"].get<double>() >= 0.0);
  CHECK(m["fragmentation"].get<double>() <= 1.0);
}

// ---- Prometheus text ------------------------------------------------------------------------

struct Family {
  std::string help;
  std::string type;
};
struct Exposition {
  std::map<std::string, Family> families;
  std::map<std::string, double> samples;  // "name{labels}" → value
  std::vector<std::string> errors;
};

bool is_metric_name(std::string_view name) {
  if (name.empty() || std::isdigit(static_cast<unsigned char>(name[0]))) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == ':';
  });
}

bool is_label_name(std::string_view name) {
  return is_metric_name(name) && name.find(':') == std::string_view::npos;
}

// Checks `{name="value",...}` at the start of `rest` and removes it; false if malformed.
bool take_labels(std::string_view& rest) {
  if (rest.empty() || rest[0] != '{') return true;
  rest.remove_prefix(1);
  for (bool first = true;; first = false) {
    if (!rest.empty() && rest[0] == '}') {
      rest.remove_prefix(1);
      return true;
    }
    if (!first) {
      if (rest.empty() || rest[0] != ',') return false;
      rest.remove_prefix(1);
    }
    const auto eq = rest.find("=\"");
    if (eq == std::string_view::npos || !is_label_name(rest.substr(0, eq))) return false;
    rest.remove_prefix(eq + 2);
    std::size_t i = 0;
    while (i < rest.size() && rest[i] != '"') {
      if (rest[i] == '\\') {
        if (i + 1 >= rest.size() || (rest[i + 1] != '\\' && rest[i + 1] != '"' && rest[i + 1] != 'n'))
          return false;
        ++i;
      }
      ++i;
    }
    if (i >= rest.size()) return false;
    rest.remove_prefix(i + 1);
  }
}

bool parse_value(std::string_view text, double& value) {
  if (text == "+Inf" || text == "-Inf" || text == "NaN") {
    value = text == "NaN" ? std::numeric_limits<double>::quiet_NaN()
                          : (text[0] == '-' ? -1 : 1) * std::numeric_limits<double>::infinity();
    return true;
  }
  const std::string s(text);
  char* end = nullptr;
  value = std::strtod(s.c_str(), &end);
  return !s.empty() && end == s.c_str() + s.size();
}

// Parses Prometheus text format 0.0.4 strictly enough to catch what scrapers reject: every
// sample follows its family's HELP and TYPE, names, labels and values are well formed, no
// family or sample appears twice.
Exposition parse_exposition(const std::string& text) {
  static const std::set<std::string, std::less<>> kTypes = {"counter", "gauge", "histogram", "summary",
                                                            "untyped"};
  Exposition e;
  std::string current;  // the family whose samples may follow
  for (const std::string& line : lines_of(text)) {
    if (line.empty()) continue;
    std::string_view rest = line;
    if (rest.rfind("# HELP ", 0) == 0 || rest.rfind("# TYPE ", 0) == 0) {
      const bool help = rest[2] == 'H';
      rest.remove_prefix(7);
      const auto space = rest.find(' ');
      const std::string name(rest.substr(0, space));
      const std::string_view what =
          space == std::string_view::npos ? std::string_view{} : rest.substr(space + 1);
      if (!is_metric_name(name) || what.empty()) {
        e.errors.push_back("malformed: " + line);
      } else if (help) {
        if (e.families.count(name)) e.errors.push_back("family declared twice: " + line);
        e.families[name].help = std::string(what);
        current = name;
      } else {
        if (name != current || e.families[name].help.empty())
          e.errors.push_back("TYPE without HELP: " + line);
        if (!kTypes.count(what)) e.errors.push_back("unknown type: " + line);
        e.families[name].type = std::string(what);
      }
      continue;
    }
    if (rest[0] == '#') continue;  // a comment
    std::size_t n = 0;
    while (n < rest.size() && rest[n] != '{' && rest[n] != ' ') ++n;
    const std::string name(rest.substr(0, n));
    rest.remove_prefix(n);
    double value = 0;
    const std::string_view key_end = rest;
    if (!is_metric_name(name) || !take_labels(rest) || rest.empty() || rest[0] != ' ' ||
        !parse_value(rest.substr(1), value)) {
      e.errors.push_back("not Prometheus text: " + line);
      continue;
    }
    std::string family = name;
    if (e.families.count(current) && e.families[current].type == "histogram") {
      for (const std::string suffix : {"_bucket", "_sum", "_count"})
        if (name == current + suffix) family = current;
    }
    if (family != current || e.families[current].type.empty())
      e.errors.push_back("sample outside its family's HELP/TYPE block: " + line);
    const std::string key = name + std::string(key_end.substr(0, key_end.size() - rest.size()));
    if (e.samples.count(key)) e.errors.push_back("sample twice: " + line);
    e.samples[key] = value;
  }
  return e;
}

// ---- tests -----------------------------------------------------------------------------------

TEST_CASE("GET /status reports the daemon's version, workers and allocator") {
  Daemon d;
  INFO("daemon stderr:\n", d.log());
  const RunResult version = run_sydradb({"version"});
  const HttpResponse r = http_get(d.port(), "/status");
  CHECK(r.status == 200);
  CHECK(r.header("Content-Type") == "application/json");
  CHECK(r.body.back() == '\n');
  const json j = r.json();
  CHECK(j["status"] == "ok");
  CHECK(version.out == "sydradb " + j["version"].get<std::string>() + "\n");
  CHECK(j["workers"] == 2);
  CHECK(j["allocator_mode"] == "sharded");
  CHECK(j["allocator_shards"] == 2);  // allocator_shards = -1: one per worker
  CHECK(j["connections"].get<std::uint64_t>() >= 1);
  CHECK(j["uptime_seconds"].is_number());
  CHECK(j["uptime_seconds"].get<double>() >= 0.0);
  CHECK(j["uptime_seconds"].get<double>() < 60.0);
}

TEST_CASE("GET /debug/alloc/stats has every documented key and consistent sums") {
  Daemon d;
  INFO("daemon stderr:\n", d.log());
  // Some traffic first, on both workers, so the counters are not all zero.
  for (int i = 0; i < 20; ++i)
    CHECK(http_get(d.port(), i % 2 ? "/metrics" : "/debug/alloc/stats").status == 200);
  const HttpResponse r = http_get(d.port(), "/debug/alloc/stats");
  REQUIRE(r.status == 200);
  CHECK(r.header("Content-Type") == "application/json");
  const json doc = r.json();
  CHECK(doc["allocator_mode"] == "sharded");
  CHECK(doc["small_pool"]["shard_count"] == 2);
  CHECK(doc["small_pool"]["shards"].size() == 2);
  CHECK(doc["small_pool"]["shard_enabled"] == true);
  CHECK(doc["small_pool"]["shard_alloc_hits"].get<std::uint64_t>() > 0);
  check_alloc_stats(doc);
}

TEST_CASE("GET /debug/alloc/stats stays consistent with one shard and in system mode") {
  SUBCASE("allocator_shards=1") {
    Daemon d(DaemonOptions().set({"allocator_shards=1"}));
    INFO("daemon stderr:\n", d.log());
    const json doc = http_get(d.port(), "/debug/alloc/stats").json();
    CHECK(doc["small_pool"]["shard_count"] == 1);
    CHECK(doc["small_pool"]["shards"].size() >= 1);
    check_alloc_stats(doc);
    CHECK(http_get(d.port(), "/status").json()["allocator_shards"] == 1);
  }
  SUBCASE("allocator_mode=system") {
    Daemon d(DaemonOptions().arg({"--allocator-mode", "system"}));
    INFO("daemon stderr:\n", d.log());
    for (int i = 0; i < 5; ++i) CHECK(http_get(d.port(), "/status").status == 200);
    const json doc = http_get(d.port(), "/debug/alloc/stats").json();
    CHECK(doc["allocator_mode"] == "system");
    CHECK(doc["small_pool"]["shard_enabled"] == false);
    CHECK(doc["small_pool"]["fallback"]["allocs"].get<std::uint64_t>() > 0);
    check_alloc_stats(doc);
    CHECK(http_get(d.port(), "/status").json()["allocator_mode"] == "system");
  }
}

TEST_CASE("GET /metrics is Prometheus text that counts the requests answered before") {
  Daemon d;
  INFO("daemon stderr:\n", d.log());
  // One keep-alive connection: a request is counted after its response is written and
  // before the next request on the same connection is read, so the counts are exact.
  Connection c(d.port());
  for (int i = 0; i < 5; ++i) CHECK(c.roundtrip(make_request("GET", "/status")).status == 200);
  CHECK(c.roundtrip(make_request("GET", "/no/such/path")).status == 404);
  CHECK(c.roundtrip(make_request("POST", "/metrics", {}, "x")).status == 405);
  const HttpResponse r = c.roundtrip(make_request("GET", "/metrics"));
  REQUIRE(r.status == 200);
  CHECK(r.header("Content-Type").rfind("text/plain; version=0.0.4", 0) == 0);
  const Exposition e = parse_exposition(r.body);
  INFO("metrics:\n", r.body.substr(0, 4000));
  for (const std::string& error : e.errors) FAIL_CHECK(error);

  // HELP and TYPE for every family, the allocator's included.
  for (const auto& [name, family] : e.families) {
    CHECK_MESSAGE(!family.help.empty(), name);
    CHECK_MESSAGE(!family.type.empty(), name);
    CHECK_MESSAGE(name.rfind("sydradb_", 0) == 0, name);
    if (family.type == "counter") CHECK_MESSAGE(name.size() > 6, name);
  }
  for (const char* name :
       {"sydradb_alloc_info", "sydradb_alloc_shards", "sydradb_alloc_shard_alloc_hits_total",
        "sydradb_alloc_allocations_total", "sydradb_alloc_frees_total", "sydradb_alloc_in_use_blocks",
        "sydradb_alloc_deferred_pending_blocks", "sydradb_alloc_committed_bytes", "sydradb_alloc_epoch",
        "sydradb_alloc_fallback_allocations_total", "sydradb_alloc_shard_threads",
        "sydradb_process_resident_bytes", "sydradb_http_requests_total",
        "sydradb_http_request_duration_seconds", "sydradb_http_connections_open"})
    CHECK_MESSAGE(e.families.count(name) == 1, "no family ", name);
  std::size_t alloc_families = 0;
  for (const auto& [name, family] : e.families) alloc_families += name.rfind("sydradb_alloc_", 0) == 0;
  CHECK(alloc_families >= 40);
  CHECK(e.families.at("sydradb_http_requests_total").type == "counter");
  CHECK(e.families.at("sydradb_http_request_duration_seconds").type == "histogram");

  auto sample = [&](const std::string& key) {
    auto it = e.samples.find(key);
    CHECK_MESSAGE(it != e.samples.end(), "no sample ", key);
    return it == e.samples.end() ? -1.0 : it->second;
  };
  CHECK(sample(R"(sydradb_http_requests_total{listener="data",route="/status",status="200"})") == 5);
  CHECK(sample(R"(sydradb_http_requests_total{listener="data",route="other",status="404"})") == 1);
  CHECK(sample(R"(sydradb_http_requests_total{listener="data",route="/metrics",status="405"})") == 1);
  CHECK(sample(
            R"(sydradb_http_request_duration_seconds_count{listener="data",route="/status",status="200"})") ==
        5);
  CHECK(
      sample(
          R"(sydradb_http_request_duration_seconds_bucket{listener="data",route="/status",status="200",le="+Inf"})") ==
      5);
  CHECK(e.samples.count(R"(sydradb_http_requests_total{listener="data",route="/metrics",status="200"})") ==
        0);
  CHECK(sample(R"(sydradb_alloc_info{mode="sharded"})") == 1);
  CHECK(sample("sydradb_alloc_shards") == 2);
  CHECK(sample("sydradb_workers") == 2);
  CHECK(sample(R"(sydradb_http_connections_open{listener="data"})") >= 1);
  CHECK(sample(R"(sydradb_http_connections_open{listener="control"})") == 0);

  // The scrape itself is counted by the next one.
  const Exposition again = parse_exposition(c.roundtrip(make_request("GET", "/metrics")).body);
  CHECK(again.samples.count(
            R"(sydradb_http_requests_total{listener="data",route="/metrics",status="200"})") == 1);
  CHECK(again.samples.at(R"(sydradb_http_requests_total{listener="data",route="/metrics",status="200"})") ==
        1);
}

TEST_CASE("unknown routes answer 404 and other methods 405 with Allow, as JSON") {
  Daemon d;
  INFO("daemon stderr:\n", d.log());
  Connection c(d.port());
  for (const char* target :
       {"/nope", "/", "/status/", "/statusx", "//status", "/debug/alloc", "/api/v1/nope"}) {
    const HttpResponse r = c.roundtrip(make_request("GET", target));
    CHECK_MESSAGE(r.status == 404, target);
    CHECK(r.header("Content-Type") == "application/json");
    CHECK(r.json()["error"].is_string());
  }
  // The query string is not part of the route.
  CHECK(c.roundtrip(make_request("GET", "/status?verbose=1&x=%20")).status == 200);
  // (HEAD is answered on GET routes: http_connection_test.cpp.)
  for (const char* method : {"POST", "PUT", "DELETE", "PATCH", "OPTIONS"}) {
    const HttpResponse r = c.roundtrip(make_request(method, "/status"));
    CHECK_MESSAGE(r.status == 405, method);
    CHECK(r.header("Allow") == "GET, HEAD");
    CHECK(r.json()["error"].is_string());
  }
  const HttpResponse post =
      c.roundtrip(make_request("POST", "/debug/alloc/stats", {"Content-Type: text/plain"}, "x"));
  CHECK(post.status == 405);
  CHECK(post.header("Allow") == "GET, HEAD");
}

TEST_CASE("malformed requests get 400 JSON and the connection is closed") {
  Daemon d;
  INFO("daemon stderr:\n", d.log());
  const std::vector<std::string> garbage = {
      std::string("\x00\x01\x02\xff garbage\r\n\r\n", 15),
      "G@T /status HTTP/1.1\r\nHost: x\r\n\r\n",
      "GET /status HTTP/9.9\r\nHost: x\r\n\r\n",
      "GET /status HTTP/1.1\r\nHost x\r\n\r\n",
      "GET /status HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
      "GET /status HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
      "GET /status HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
      "GET\r\n\r\n",
      "GET /status HTTP/1.1\r\n\r\n",  // HTTP/1.1 needs Host (RFC 9112 §3.2)
  };
  for (const std::string& bytes : garbage) {
    Connection c(d.port());
    REQUIRE(c.send(bytes));
    const auto r = c.read_response();
    REQUIRE_MESSAGE(r.has_value(), "no answer to ", json(bytes).dump());
    CHECK_MESSAGE(r->status == 400, json(bytes).dump());
    CHECK(r->header("Content-Type") == "application/json");
    CHECK(r->json()["error"].is_string());
    CHECK(c.read_until_close(patience(2s)).closed);
  }
  // The daemon is still fine.
  CHECK(http_get(d.port(), "/status").status == 200);
}

// Regression: "no route for <path>" with a byte that is not UTF-8 made nlohmann::json throw
// in the 404 handler; the exception left the worker's io_context and stopped the worker,
// so every later connection given to that worker hung.
TEST_CASE("a path that is not UTF-8 gets an answer and does not stop a worker") {
  Daemon d;
  INFO("daemon stderr:\n", d.log());
  for (const char* target : {"/\xff\xfe", "/debug/\xc3\x28", "/status\x80?x=\xff"}) {
    Connection c(d.port());
    REQUIRE(c.send(make_request("GET", target, {"Connection: close"})));
    const auto r = c.read_response(patience(1s));
    CHECK_MESSAGE(r.has_value(), "no answer for ",
                  json(std::string(target)).dump(-1, ' ', false, json::error_handler_t::replace));
    if (r) {
      CHECK((r->status == 404 || r->status == 400));
      CHECK(nlohmann::json::accept(r->body));
    }
  }
  // Both workers still answer: connections are spread over them in turn.
  for (int i = 0; i < 8; ++i) {
    Connection c(d.port());
    REQUIRE(c.send(make_request("GET", "/status", {"Connection: close"})));
    if (!c.read_response(patience(1s))) {
      FAIL_CHECK("connection " << i << " got no answer");
      break;
    }
  }
}

TEST_CASE("a body over max_body_bytes gets 413 and headers over max_header_bytes get 431") {
  Daemon d(DaemonOptions().set({"max_body_bytes=1024", "max_header_bytes=2048"}));
  INFO("daemon stderr:\n", d.log());
  SUBCASE("declared Content-Length over the limit: answered without reading the body") {
    Connection c(d.port());
    REQUIRE(
        c.send("GET /status HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\n\r\n" + std::string(100, 'a')));
    const auto r = c.read_response();
    REQUIRE(r.has_value());
    CHECK(r->status == 413);
    CHECK(r->json()["error"].is_string());
    CHECK(c.read_until_close(patience(2s)).closed);
  }
  SUBCASE("a whole body over the limit") {
    Connection c(d.port());
    c.send(make_request("GET", "/status", {}, std::string(2000, 'b')));
    const auto r = c.read_response();
    REQUIRE(r.has_value());
    CHECK(r->status == 413);
  }
  SUBCASE("a chunked body over the limit") {
    Connection c(d.port());
    c.send("GET /status HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n800\r\n" +
           std::string(0x800, 'c') + "\r\n0\r\n\r\n");
    const auto r = c.read_response();
    REQUIRE(r.has_value());
    CHECK(r->status == 413);
  }
  SUBCASE("a body at the limit is accepted") {
    Connection c(d.port());
    CHECK(c.roundtrip(make_request("GET", "/status", {}, std::string(1024, 'd'))).status == 200);
    CHECK(c.roundtrip(make_request("GET", "/status")).status == 200);  // still usable
  }
  SUBCASE("one big header") {
    Connection c(d.port());
    c.send(make_request("GET", "/status", {"X-Big: " + std::string(4000, 'h')}));
    const auto r = c.read_response();
    REQUIRE(r.has_value());
    CHECK(r->status == 431);
    CHECK(r->json()["error"].is_string());
    CHECK(c.read_until_close(patience(2s)).closed);
  }
  SUBCASE("many small headers") {
    std::vector<std::string> headers;
    for (int i = 0; i < 200; ++i) headers.push_back("X-H" + std::to_string(i) + ": value");
    Connection c(d.port());
    c.send(make_request("GET", "/status", headers));
    const auto r = c.read_response();
    REQUIRE(r.has_value());
    CHECK(r->status == 431);
  }
  SUBCASE("headers under the limit are accepted") {
    CHECK(http_get(d.port(), "/status", {"X-Big: " + std::string(1500, 'h')}).status == 200);
  }
  CHECK(http_get(d.port(), "/status").status == 200);
}

TEST_CASE("with auth_token, /api/ and /debug/ need the bearer token and /status and /metrics stay open") {
  const std::string token = "s3cret-t0ken";
  Daemon d(DaemonOptions().env({"SYDRADB_TOKEN=" + token}));
  INFO("daemon stderr:\n", d.log());
  const std::string good = "Authorization: Bearer " + token;
  for (const char* path :
       {"/debug/alloc/stats", "/api/v1/query/range?series=x", "/api/v1/ingest", "/debug/x"}) {
    for (const std::string& bad :
         {std::string(), std::string("Authorization: Bearer wrong"),
          std::string("Authorization: Bearer ") + token + "x",
          std::string("Authorization: Bearer ") + token.substr(0, token.size() - 1),
          std::string("Authorization: Basic ") + token, std::string("Authorization: ") + token,
          std::string("Authorization: Bearer")}) {
      std::vector<std::string> headers;
      if (!bad.empty()) headers.push_back(bad);
      const HttpResponse r = http_get(d.port(), path, headers);
      CHECK_MESSAGE(r.status == 401, path, " with '", bad, "'");
      CHECK(r.header("WWW-Authenticate") == "Bearer realm=\"sydradb\"");
      CHECK(r.json()["error"].is_string());
    }
  }
  CHECK(http_get(d.port(), "/debug/alloc/stats", {good}).status == 200);
  // The scheme is case-insensitive (RFC 9110 §11.1); the token is not.
  CHECK(http_get(d.port(), "/debug/alloc/stats", {"Authorization: bearer " + token}).status == 200);
  CHECK(http_get(d.port(), "/debug/alloc/stats", {"Authorization: BEARER " + token}).status == 200);
  CHECK(http_get(d.port(), "/debug/alloc/stats", {"Authorization: Bearer S3CRET-T0KEN"}).status == 401);
  // Past authentication, the storage route answers (400: no start and end).
  CHECK(http_get(d.port(), "/api/v1/query/range?series=x", {good}).status == 400);
  for (const char* open : {"/status", "/metrics"}) {
    CHECK(http_get(d.port(), open).status == 200);
    CHECK(http_get(d.port(), open, {"Authorization: Bearer wrong"}).status == 200);
  }
  // Unknown paths outside /api/ and /debug/ are plain 404s, token or not.
  CHECK(http_get(d.port(), "/nope").status == 404);
  // 401s are counted under the route they were refused on ("other" for unknown paths).
  const Exposition e = parse_exposition(http_get(d.port(), "/metrics").body);
  CHECK(e.samples.at(
            R"(sydradb_http_requests_total{listener="data",route="/debug/alloc/stats",status="401"})") == 8);
  CHECK(e.samples.at(R"(sydradb_http_requests_total{listener="data",route="other",status="401"})") == 7);
  // The control listener guards the same routes.
  CHECK(http_get(d.control_port(), "/debug/alloc/stats").status == 401);
  CHECK(http_get(d.control_port(), "/debug/alloc/stats", {good}).status == 200);
  CHECK(http_get(d.control_port(), "/status").status == 200);
}

TEST_CASE("auth_token from --set works like SYDRADB_TOKEN, and the environment wins") {
  Daemon d(DaemonOptions().set({"auth_token=from-flag"}).env({"SYDRADB_TOKEN=from-env"}));
  INFO("daemon stderr:\n", d.log());
  CHECK(http_get(d.port(), "/debug/alloc/stats", {"Authorization: Bearer from-env"}).status == 200);
  CHECK(http_get(d.port(), "/debug/alloc/stats", {"Authorization: Bearer from-flag"}).status == 401);
  Daemon flag_only(DaemonOptions().set({"auth_token=from-flag"}));
  CHECK(http_get(flag_only.port(), "/debug/alloc/stats", {"Authorization: Bearer from-flag"}).status == 200);
  CHECK(http_get(flag_only.port(), "/debug/alloc/stats").status == 401);
}

}  // namespace
}  // namespace sydra::itest
