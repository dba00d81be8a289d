// Tests cli/stats_format.hpp (the readable form of /debug/alloc/stats) on a document built
// from a real allocator snapshot and on damaged documents, and run_stats (cli/commands.hpp)
// end to end against a canned server: exit codes, error lines, --json, the token.
#include "cli/stats_format.hpp"

#include <doctest/doctest.h>

#include <cstdint>
#include <cstdlib>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "alloc/small_pool_allocator.hpp"
#include "alloc/stats_json.hpp"
#include "canned_server.hpp"
#include "cli/commands.hpp"
#include "cli_test_support.hpp"

namespace sydra::cli {
namespace {

using nlohmann::json;
using test::CannedServer;
using test::CapturedOutput;
using test::ScopedEnv;

const std::vector<std::string> kColumns = {"shard",        "threads",   "slabs",       "in use",
                                           "in use bytes", "occupancy", "cached",      "deferred",
                                           "locks",        "contended", "lock wait ms"};

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

std::string trim(const std::string& s) {
  const auto first = s.find_first_not_of(' ');
  if (first == std::string::npos) return {};
  return s.substr(first, s.find_last_not_of(' ') - first + 1);
}

// The summary line with this label ("  mode          sharded" -> "sharded"), or "".
std::string summary_value(const std::string& text, const std::string& label) {
  for (const std::string& line : lines_of(text))
    if (line.rfind("  " + label + " ", 0) == 0) return trim(line.substr(2 + label.size()));
  return {};
}

// The per-shard table as rows of cells keyed by column name. Columns are right-aligned, so
// each header name ends where its column ends; a cell is the text between the previous
// column's end and its own, trimmed — which also checks that the columns line up.
std::vector<std::map<std::string, std::string>> shard_table(const std::string& text) {
  std::vector<std::map<std::string, std::string>> rows;
  const std::vector<std::string> lines = lines_of(text);
  std::size_t header = lines.size();
  for (std::size_t i = 0; i < lines.size(); ++i)
    if (lines[i].find("lock wait ms") != std::string::npos) header = i;
  if (header == lines.size()) return rows;
  std::vector<std::size_t> ends;
  std::size_t from = 0;
  for (const std::string& name : kColumns) {
    const auto at = lines[header].find(name, from);
    REQUIRE(at != std::string::npos);
    from = at + name.size();
    ends.push_back(from);
  }
  REQUIRE(ends.back() == lines[header].size());
  for (std::size_t i = header + 1; i < lines.size() && !lines[i].empty(); ++i) {
    REQUIRE(lines[i].size() == lines[header].size());
    std::map<std::string, std::string> row;
    std::size_t start = 0;
    for (std::size_t c = 0; c < kColumns.size(); ++c) {
      row[kColumns[c]] = trim(lines[i].substr(start, ends[c] - start));
      start = ends[c];
    }
    rows.push_back(std::move(row));
  }
  return rows;
}

const std::map<std::string, std::string>* row_for(const std::vector<std::map<std::string, std::string>>& rows,
                                                  const std::string& id) {
  for (const auto& row : rows)
    if (row.at("shard") == id) return &row;
  return nullptr;
}

// A document from a real allocator: two shards with blocks in use on each, a cross-shard
// free waiting in shard 0's deferred queue, and a fallback allocation.
struct RealDocument {
  alloc::AllocatorStats stats;
  json doc;
};

RealDocument real_document() {
  alloc::SmallPoolAllocator a(alloc::Options{.shards = 2, .reserve_bytes = std::size_t{64} << 20});
  std::vector<void*> shard0, shard1;
  a.bind_current_thread(0);
  for (int i = 0; i < 1000; ++i) shard0.push_back(a.allocate(64));
  a.bind_current_thread(1);
  for (int i = 0; i < 300; ++i) shard1.push_back(a.allocate(128));
  void* big = a.allocate(5000);
  a.deallocate(shard0.back());  // from shard 1's thread: deferred on shard 0
  shard0.pop_back();

  RealDocument r{a.snapshot(), {}};
  r.doc = nlohmann::json::parse(alloc::stats_to_json(r.stats));

  for (void* p : shard0) a.deallocate(p);
  for (void* p : shard1) a.deallocate(p);
  a.deallocate(big);
  a.release_thread();
  return r;
}

TEST_SUITE("unit") {
  TEST_CASE("format_bytes uses binary units with one decimal") {
    CHECK(format_bytes(0) == "0 B");
    CHECK(format_bytes(1023) == "1023 B");
    CHECK(format_bytes(1024) == "1.0 KiB");
    CHECK(format_bytes(1536) == "1.5 KiB");
    CHECK(format_bytes(std::uint64_t{64} << 20) == "64.0 MiB");
    CHECK(format_bytes((std::uint64_t{1} << 30) - 1) == "1.0 GiB");
    CHECK(format_bytes(std::uint64_t{16} << 30) == "16.0 GiB");
    CHECK(format_bytes(UINT64_MAX) == "16.0 EiB");
  }

  TEST_CASE("format_stats summarises a real snapshot and has a row per shard") {
    const RealDocument r = real_document();
    REQUIRE(r.stats.shards.size() == 2);
    const std::string text = format_stats(r.doc, "http://127.0.0.1:8080");
    CAPTURE(text);

    CHECK(text.rfind("sydradb allocator at http://127.0.0.1:8080 (stats document version 2)\n", 0) == 0);
    CHECK(summary_value(text, "mode") == "sharded");
    CHECK(summary_value(text, "shards") == "2, sharding enabled, slabs of 64.0 KiB");
    CHECK(summary_value(text, "shard hits").find(std::to_string(r.stats.shard_alloc_hits) + " (") == 0);
    CHECK(summary_value(text, "fallback") == "allocs " + std::to_string(r.stats.fallback.allocs) +
                                                 ", frees " + std::to_string(r.stats.fallback.frees) +
                                                 ", live " + format_bytes(r.stats.fallback.live_bytes));
    CHECK(r.stats.fallback.allocs >= 1);
    CHECK(summary_value(text, "deferred") ==
          "enqueued " + std::to_string(r.stats.shard_deferred_total) + " in total, pending 1 now");
    CHECK(summary_value(text, "epochs").rfind("current " + std::to_string(r.stats.epoch.current) + ", ", 0) ==
          0);
    CHECK(summary_value(text, "memory").find("reserved 64.0 MiB") != std::string::npos);
    CHECK(text.find("process RSS " + format_bytes(r.stats.memory.process_resident_bytes)) !=
          std::string::npos);

    const auto rows = shard_table(text);
    REQUIRE(rows.size() == 2);
    for (const alloc::ShardStats& sh : r.stats.shards) {
      CAPTURE(sh.id);
      const auto* row = row_for(rows, std::to_string(sh.id));
      REQUIRE(row != nullptr);
      const alloc::ClassStats t = sh.totals();
      std::uint64_t in_use_bytes = 0;
      for (const auto& c : sh.classes) in_use_bytes += c.in_use * c.size;
      CHECK(row->at("threads") == std::to_string(sh.threads));
      CHECK(row->at("slabs") == std::to_string(t.slabs));
      CHECK(row->at("in use") == std::to_string(t.in_use));
      CHECK(row->at("in use bytes") == format_bytes(in_use_bytes));
      CHECK(row->at("cached") == std::to_string(t.cached));
      CHECK(row->at("deferred") == std::to_string(t.deferred_pending));
      CHECK(row->at("locks") == std::to_string(sh.lock_acquisitions));
      CHECK(row->at("contended") == std::to_string(sh.lock_contention));
      CHECK(row->at("occupancy").find(" %") != std::string::npos);
    }
    // The workload's own figures, so the rows above are not all zeros.
    CHECK(row_for(rows, "0")->at("in use") == "999");
    CHECK(row_for(rows, "0")->at("in use bytes") == format_bytes(999 * 64));
    CHECK(row_for(rows, "0")->at("deferred") == "1");
    CHECK(row_for(rows, "1")->at("in use") == "300");
    CHECK(row_for(rows, "1")->at("in use bytes") == "37.5 KiB");
    CHECK(row_for(rows, "1")->at("threads") == "1");
  }

  TEST_CASE("format_stats shows ? for missing or mistyped fields and never throws") {
    for (const json& odd :
         {json(), json::array(), json("text"), json(42), json::object(), json::parse("{", nullptr, false)}) {
      CAPTURE(odd.dump());
      std::string text;
      CHECK_NOTHROW(text = format_stats(odd, "http://h"));
      CHECK(summary_value(text, "mode") == "?");
      CHECK(text.find("per shard: ?") != std::string::npos);
    }

    const json damaged = json::parse(R"({
      "version": "one",
      "allocator_mode": 7,
      "small_pool": {
        "shard_enabled": "yes", "shard_count": -2, "slab_bytes": 65536, "shard_alloc_hits": 1.5,
        "shard_alloc_misses": 3, "epoch": [], "fallback": null, "buckets": [{"deferred_pending": 1}, 5],
        "shards": [{"id": 0, "threads": "x", "slabs": 0, "in_use_bytes": 10, "lock_wait_ns": 2500000},
                   7,
                   {"id": 1, "slabs": 4, "in_use": -1},
                   {"id": 2, "slabs": 2, "in_use_bytes": 32768}]
      },
      "memory": {"fragmentation": "high", "resident_bytes": 1024}
    })");
    std::string text;
    REQUIRE_NOTHROW(text = format_stats(damaged, "http://h"));
    CAPTURE(text);
    CHECK(text.rfind("sydradb allocator at http://h (stats document version ?)\n", 0) == 0);
    CHECK(summary_value(text, "mode") == "?");
    CHECK(summary_value(text, "shards") == "?, sharding ?, slabs of 64.0 KiB");
    CHECK(summary_value(text, "shard hits") == "?, misses 3");
    CHECK(summary_value(text, "fallback") == "allocs ?, frees ?, live ?");
    CHECK(summary_value(text, "deferred") == "enqueued ? in total, pending ? now");
    CHECK(summary_value(text, "epochs") == "current ?, min observed ?, lag ?, threads ?, active readers ?");
    CHECK(summary_value(text, "memory") == "resident 1.0 KiB, committed ?, reserved ?, returned ?");
    CHECK(text.find("fragmentation ?") != std::string::npos);

    const auto rows = shard_table(text);
    REQUIRE(rows.size() == 4);
    CHECK(rows[0].at("shard") == "0");
    CHECK(rows[0].at("threads") == "?");
    CHECK(rows[0].at("occupancy") == "-");  // no slabs
    CHECK(rows[0].at("in use bytes") == "10 B");
    CHECK(rows[0].at("lock wait ms") == "2.50");
    for (const auto& cell : rows[1]) CHECK_MESSAGE(cell.second == "?", cell.first);
    CHECK(rows[2].at("in use") == "?");
    CHECK(rows[2].at("occupancy") == "?");  // in_use_bytes missing
    CHECK(rows[3].at("occupancy") == "25.0 %");
  }

  TEST_CASE("format_stats says so when there are no shards") {
    const json doc = {{"allocator_mode", "legacy"},
                      {"small_pool", {{"shard_enabled", false}, {"shards", json::array()}}}};
    const std::string text = format_stats(doc, "http://h");
    CHECK(summary_value(text, "mode") == "legacy");
    CHECK(text.find("per shard: no shards (sharding is off)") != std::string::npos);
  }

  TEST_CASE("run_stats prints the summary, or the document with --json") {
    const json doc = real_document().doc;
    CannedServer server(CannedServer::response(200, doc.dump()));
    StatsOptions options;
    options.url = server.url();
    {
      CapturedOutput output;
      CHECK(run_stats(options) == kExitOk);
      CHECK(output.out() == format_stats(doc, server.url()));
      CHECK(output.err().empty());
    }
    CHECK(server.last_request().rfind("GET /debug/alloc/stats HTTP/1.1\r\n", 0) == 0);
    options.json = true;
    CapturedOutput output;
    CHECK(run_stats(options) == kExitOk);
    CHECK(output.out() == doc.dump(2) + "\n");
  }

  TEST_CASE("run_stats takes the token from --token, else from SYDRADB_TOKEN") {
    CannedServer server(CannedServer::response(200, "{}"));
    StatsOptions options;
    options.url = server.url();
    CapturedOutput output;
    {
      ScopedEnv env("SYDRADB_TOKEN", "from-env");
      CHECK(run_stats(options) == kExitOk);
      CHECK(server.last_request().find("Authorization: Bearer from-env\r\n") != std::string::npos);
      options.token = "from-flag";
      CHECK(run_stats(options) == kExitOk);
      CHECK(server.last_request().find("Authorization: Bearer from-flag\r\n") != std::string::npos);
    }
    ScopedEnv unset("SYDRADB_TOKEN", nullptr);
    options.token.clear();
    CHECK(run_stats(options) == kExitOk);
    CHECK(server.last_request().find("Authorization") == std::string::npos);
  }

  TEST_CASE("run_stats exits 4 with the error field of an HTTP error") {
    CannedServer server(CannedServer::response(401, R"({"error":"missing or invalid bearer token"})"));
    StatsOptions options;
    options.url = server.url();
    CapturedOutput output;
    CHECK(run_stats(options) == kExitHttpError);
    CHECK(output.err() ==
          "sydradb stats: " + server.url() +
              ": HTTP 401: missing or invalid bearer token (the daemon requires a token: pass "
              "--token TOKEN or set SYDRADB_TOKEN)\n");
    CHECK(output.out().empty());
  }

  TEST_CASE("run_stats exits 4 with the body of a non-JSON HTTP error, on one line") {
    CannedServer server(CannedServer::response(502, "<html>\nBad gateway\n</html>\n", "text/html"));
    StatsOptions options;
    options.url = server.url();
    CapturedOutput output;
    CHECK(run_stats(options) == kExitHttpError);
    CHECK(output.err() == "sydradb stats: " + server.url() + ": HTTP 502: <html> Bad gateway </html>\n");
  }

  TEST_CASE("run_stats exits 4 when a 200 answer is not JSON") {
    CannedServer server(CannedServer::response(200, "hello", "text/plain"));
    StatsOptions options;
    options.url = server.url();
    CapturedOutput output;
    CHECK(run_stats(options) == kExitHttpError);
    CHECK(output.err().find("is not JSON") != std::string::npos);
  }

  TEST_CASE("run_stats exits 3 in one line when the daemon is unreachable") {
    CannedServer closed("", CannedServer::Behaviour::not_listening);
    StatsOptions options;
    options.url = closed.url();
    CapturedOutput output;
    CHECK(run_stats(options) == kExitUnreachable);
    CHECK(output.err() ==
          "sydradb stats: cannot reach sydradb at " + closed.url() + ": Connection refused\n");
    CHECK(output.out().empty());
  }

  TEST_CASE("run_stats exits 2 on a bad URL or option") {
    CapturedOutput output;
    StatsOptions options;
    options.url = "https://127.0.0.1:8080";
    CHECK(run_stats(options) == kExitUsage);
    CHECK(output.err().find("https is not supported") != std::string::npos);
    options.url = "http://127.0.0.1:8080";
    options.timeout_seconds = 0;
    CHECK(run_stats(options) == kExitUsage);
    options.timeout_seconds = 5;
    options.watch_seconds = -1;
    CHECK(run_stats(options) == kExitUsage);
    options.watch_seconds = 1;
    options.url = "ftp://garbage";
    CHECK(run_stats(options) == kExitUsage);  // --watch stops on a bad URL instead of retrying it
  }
}

}  // namespace
}  // namespace sydra::cli
