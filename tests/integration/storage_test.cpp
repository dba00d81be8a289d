// The storage engine through the real daemon (docs/http-api.md, docs/configuration.md):
// ingest then query before and after a flush, restart and recovery, kill -9 in the middle
// of an fsync=always ingest stream (every acknowledged point must come back), retention,
// background compaction and `sydradb compact` on a stopped data directory, malformed lines
// mixed with good ones, an oversized line rejected alone, ?precision= and the timestamp
// unit warning, 400 on bad query parameters.
#include <doctest/doctest.h>

#include <atomic>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "daemon_harness.hpp"

namespace sydra::itest {
namespace {

using nlohmann::json;

std::string point_line(std::string_view series, std::int64_t ts, double value, std::string_view tags = "") {
  std::string s = "{\"series\":\"";
  s.append(series).append("\",\"ts\":").append(std::to_string(ts)).append(",\"value\":");
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.17g", value);
  s.append(buf);
  if (!tags.empty()) s.append(",\"tags\":").append(tags);
  s.append("}\n");
  return s;
}

std::string lines(std::string_view series, std::int64_t from, std::int64_t to) {
  std::string body;
  for (std::int64_t t = from; t < to; ++t) body += point_line(series, t, static_cast<double>(t) / 2);
  return body;
}

// "prefix<n>" (operator+ on a temporary trips g++ 12's -Wrestrict at -O3).
std::string numbered(const char* prefix, int n) {
  std::string s(prefix);
  s += std::to_string(n);
  return s;
}

HttpResponse post(Connection& c, std::string_view target, std::string_view body) {
  return c.roundtrip(make_request("POST", target, {"Content-Type: application/json"}, body));
}

HttpResponse post(std::uint16_t port, std::string_view target, std::string_view body) {
  Connection c(port);
  return post(c, target, body);
}

json range(std::uint16_t port, const json& request) {
  const HttpResponse r = post(port, "/api/v1/query/range", request.dump());
  REQUIRE_MESSAGE(r.status == 200, r.body);
  return r.json();
}

json all_points(std::uint16_t port, std::string_view series) {
  return range(port, {{"series", series}, {"start", 0}, {"end", INT64_MAX}});
}

json status(std::uint16_t port) {
  return http_get(port, "/status").json();
}

// Polls `done` until it holds or `timeout` passes; returns its last answer.
bool eventually(const std::function<bool()>& done, Millis timeout = patience(10s)) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    if (done()) return true;
    if (Clock::now() > deadline) return false;
    std::this_thread::sleep_for(20ms);
  }
}

std::uint64_t flushed_lsn(std::uint16_t port) {
  return status(port)["storage"]["flushed_lsn"].get<std::uint64_t>();
}

TEST_SUITE("integration") {
  TEST_CASE("storage: ingest, then query before and after a flush, with step and agg") {
    Daemon d(DaemonOptions().set({"flush_interval_ms=3600000"}));
    HttpResponse r = post(d.port(), "/api/v1/ingest", lines("cpu", 0, 100));
    REQUIRE_MESSAGE(r.status == 200, r.body);
    CHECK(r.json() == json{{"ingested", 100}, {"rejected", 0}, {"errors", json::array()}});

    json pts = all_points(d.port(), "cpu");
    REQUIRE(pts.size() == 100);
    CHECK(pts[10] == json{{"ts", 10}, {"value", 5.0}});
    CHECK(status(d.port())["storage"]["segments"] == 0);
    CHECK(metric(d.port(), "sydradb_memtable_points") == 100);

    // SIGTERM syncs the WAL; flushing needs a restart or the interval: use a second daemon
    // on a short interval to see the flush.
    Daemon f(DaemonOptions().set({"flush_interval_ms=50"}));
    REQUIRE(post(f.port(), "/api/v1/ingest", lines("cpu", 0, 100)).status == 200);
    REQUIRE(eventually([&] { return metric(f.port(), "sydradb_flush_total") >= 1; }));
    CHECK(eventually([&] { return metric(f.port(), "sydradb_memtable_points") == 0; }));
    CHECK(metric(f.port(), "sydradb_segments") >= 1);
    CHECK(metric(f.port(), "sydradb_flush_points_total") == 100);
    CHECK(metric(f.port(), "sydradb_ingest_total") == 100);
    CHECK(metric(f.port(), "sydradb_wal_bytes_total") > 1600);
    pts = all_points(f.port(), "cpu");
    REQUIRE(pts.size() == 100);
    CHECK(pts[99] == json{{"ts", 99}, {"value", 49.5}});

    // Memtable and segment merged, last write wins, then downsampled.
    REQUIRE(post(f.port(), "/api/v1/ingest", point_line("cpu", 5, 1000.0) + point_line("cpu", 100, 50.0))
                .status == 200);
    pts = range(f.port(), {{"series", "cpu"}, {"start", 0}, {"end", 100}, {"step", 50}, {"agg", "max"}});
    CHECK(pts == json::array({{{"ts", 0}, {"value", 1000.0}},
                              {{"ts", 50}, {"value", 49.5}},
                              {{"ts", 100}, {"value", 50.0}}}));
    pts = range(f.port(), {{"series", "cpu"}, {"start", 0}, {"end", 9}, {"step", 5}, {"agg", "count"}});
    CHECK(pts == json::array({{{"ts", 0}, {"value", 5.0}}, {{"ts", 5}, {"value", 5.0}}}));
    // GET with URL parameters, tags URL-encoded.
    const HttpResponse g = http_get(f.port(), "/api/v1/query/range?series=cpu&tags=%7B%7D&start=3&end=4");
    REQUIRE(g.status == 200);
    CHECK(g.json() == json::array({{{"ts", 3}, {"value", 1.5}}, {{"ts", 4}, {"value", 2.0}}}));
  }

  TEST_CASE("storage: tags, find and the series list") {
    Daemon d;
    REQUIRE(post(d.port(), "/api/v1/ingest",
                 point_line("cpu", 1, 1, R"({"host":"a","dc":"x"})") +
                     point_line("cpu", 1, 2, R"({"host":"b"})") + point_line("mem", 1, 3, R"({"host":"a"})"))
                .status == 200);
    const json series = http_get(d.port(), "/api/v1/series").json();
    REQUIRE(series.size() == 3);
    std::map<std::string, std::uint64_t> ids;
    for (const json& s : series)
      ids[s["series"].get<std::string>() + s["tags"].dump()] = s["id"].get<std::uint64_t>();
    const std::uint64_t cpu_a = ids.at(R"(cpu{"dc":"x","host":"a"})");
    const std::uint64_t mem_a = ids.at(R"(mem{"host":"a"})");
    const std::uint64_t cpu_b = ids.at(R"(cpu{"host":"b"})");

    json found = post(d.port(), "/api/v1/query/find", R"({"tags":{"host":"a"}})").json();
    CHECK(found == json(std::vector<std::uint64_t>{std::min(cpu_a, mem_a), std::max(cpu_a, mem_a)}));
    found = post(d.port(), "/api/v1/query/find", R"({"tags":{"host":"a","dc":"x"},"op":"and"})").json();
    CHECK(found == json::array({cpu_a}));
    found = post(d.port(), "/api/v1/query/find", R"({"tags":{"host":"b","dc":"x"},"op":"or"})").json();
    CHECK(found.size() == 2);
    CHECK(std::find(found.begin(), found.end(), json(cpu_b)) != found.end());

    // By series id, and by name + tags.
    json pts = range(d.port(), {{"series_id", cpu_b}, {"start", 0}, {"end", 10}});
    CHECK(pts == json::array({{{"ts", 1}, {"value", 2.0}}}));
    pts = range(d.port(),
                {{"series", "cpu"}, {"tags", {{"host", "a"}, {"dc", "x"}}}, {"start", 0}, {"end", 10}});
    CHECK(pts == json::array({{{"ts", 1}, {"value", 1.0}}}));
    CHECK(metric(d.port(), "sydradb_series") == 3);
  }

  TEST_CASE("storage: malformed lines mixed with good ones are counted and reported by line") {
    Daemon d;
    const std::string body = point_line("g", 1, 1.0) + "{\"series\":\"g\",\"ts\":2}\n" + "not json at all\n" +
                             point_line("g", 3, 3.0) + "\n" +
                             "{\"series\":\"g\",\"ts\":\"x\",\"value\":1}\n" + point_line("g", 4, 4.0);
    const HttpResponse r = post(d.port(), "/api/v1/ingest", body);
    REQUIRE_MESSAGE(r.status == 200, r.body);
    const json j = r.json();
    CHECK(j["ingested"] == 3);
    CHECK(j["rejected"] == 3);
    REQUIRE(j["errors"].size() == 3);
    CHECK(j["errors"][0]["line"] == 2);
    CHECK(j["errors"][1]["line"] == 3);
    CHECK(j["errors"][2]["line"] == 6);
    for (const json& e : j["errors"]) CHECK(e["error"].is_string());
    const json pts = all_points(d.port(), "g");
    CHECK(
        pts ==
        json::array({{{"ts", 1}, {"value", 1.0}}, {{"ts", 3}, {"value", 3.0}}, {{"ts", 4}, {"value", 4.0}}}));
    CHECK(metric(d.port(), "sydradb_ingest_rejected_total") == 3);
  }

  TEST_CASE("storage: a line over max_line_bytes is rejected alone, with its number, the others are stored") {
    Daemon d(DaemonOptions().set({"max_line_bytes=1024"}));
    const std::string big = point_line(std::string(2000, 'x'), 1, 1.0);
    const HttpResponse r =
        post(d.port(), "/api/v1/ingest", point_line("ok", 1, 1.0) + big + point_line("ok", 2, 2.0));
    REQUIRE_MESSAGE(r.status == 200, r.body);
    const json j = r.json();
    CHECK(j["ingested"] == 2);
    CHECK(j["rejected"] == 1);
    REQUIRE(j["errors"].size() == 1);
    CHECK(j["errors"][0]["line"] == 2);
    CHECK(j["errors"][0]["error"] ==
          "the line is " + std::to_string(big.size() - 1) + " bytes, over max_line_bytes=1024");
    CHECK(all_points(d.port(), "ok").size() == 2);
    CHECK(metric(d.port(), "sydradb_ingest_rejected_total") == 1);
  }

  TEST_CASE(
      "storage: ?precision= reads ts in s, ms, us or ns, a ts that looks like another unit is warned about") {
    Daemon d;
    INFO("daemon stderr:\n", d.log());
    const std::int64_t t_s = 1'700'000'000;
    for (const auto& [unit, ts] : {std::pair<std::string, std::int64_t>{"s", t_s},
                                   {"ms", t_s * 1000 + 1},
                                   {"us", (t_s * 1000 + 2) * 1000 + 999},
                                   {"ns", (t_s * 1000 + 3) * 1'000'000}}) {
      const HttpResponse r = post(d.port(), "/api/v1/ingest?precision=" + unit, point_line("p", ts, 1.0));
      REQUIRE_MESSAGE(r.status == 200, r.body);
      CHECK_FALSE(r.json().contains("warnings"));
    }
    const json pts = all_points(d.port(), "p");
    REQUIRE(pts.size() == 4);
    for (int i = 0; i < 4; ++i) CHECK(pts[i]["ts"] == t_s * 1000 + i);

    // Seconds without ?precision: stored as milliseconds (1970), and the answer says so.
    const HttpResponse r =
        post(d.port(), "/api/v1/ingest", point_line("w", 5, 1.0) + point_line("w", t_s, 2.0));
    REQUIRE_MESSAGE(r.status == 200, r.body);
    const json j = r.json();
    CHECK(j["ingested"] == 2);
    REQUIRE(j["warnings"].size() == 1);
    CHECK(j["warnings"][0]["line"] == 2);
    CHECK(j["warnings"][0]["lines"] == 1);
    CHECK(j["warnings"][0]["ts"] == t_s);
    CHECK(j["warnings"][0]["looks_like"] == "s");
    CHECK(j["warnings"][0]["warning"] ==
          "\"ts\" looks like seconds since the Unix epoch but is read as milliseconds: send ?precision=s, or "
          "milliseconds");
    CHECK(all_points(d.port(), "w")[1]["ts"] == t_s);

    const HttpResponse bad = post(d.port(), "/api/v1/ingest?precision=sec", point_line("p", 1, 1.0));
    CHECK(bad.status == 400);
    CHECK(bad.json()["error"] == "unknown 'precision' 'sec': expected s, ms, us or ns");
  }

  TEST_CASE("storage: bad query parameters are 400 with a JSON message") {
    Daemon d(DaemonOptions().set({"max_query_points=10"}));
    REQUIRE(post(d.port(), "/api/v1/ingest", lines("q", 0, 20)).status == 200);
    const std::vector<std::string> bad_bodies = {
        "",
        "not json",
        "[1,2]",
        R"({"start":0,"end":1})",
        R"({"series":"q","end":1})",
        R"({"series":"q","start":0})",
        R"({"series":"q","start":5,"end":1})",
        R"({"series":"q","start":0,"end":1,"step":0})",
        R"({"series":"q","start":0,"end":1,"step":-5})",
        R"({"series":"q","start":0,"end":1,"step":5,"agg":"median"})",
        R"({"series":"q","start":0,"end":1,"agg":"avg"})",
        R"({"series":"q","start":1.5,"end":2})",
        R"({"series":"q","start":"abc","end":2})",
        R"({"series":"q","tags":[1],"start":0,"end":1})",
        R"({"series":"q","tags":{"k":1},"start":0,"end":1})",
        R"({"series":"q","series_id":1,"start":0,"end":1})",
        R"({"series":7,"start":0,"end":1})",
    };
    for (const std::string& body : bad_bodies) {
      const HttpResponse r = post(d.port(), "/api/v1/query/range", body);
      CHECK_MESSAGE(r.status == 400, body << " → " << r.status << " " << r.body);
      CHECK_MESSAGE(r.json()["error"].is_string(), body);
    }
    for (const char* target :
         {"/api/v1/query/range?series=q&start=0", "/api/v1/query/range?series=q&start=x&end=1",
          "/api/v1/query/range?series=q&tags=%7Bbad&start=0&end=1", "/api/v1/query/range?start=0&end=1"}) {
      const HttpResponse r = http_get(d.port(), target);
      CHECK_MESSAGE(r.status == 400, target << " → " << r.body);
    }
    for (const char* body :
         {"", "{}", R"({"tags":[]})", R"({"tags":{"a":1}})", R"({"tags":{},"op":"xor"})"}) {
      const HttpResponse r = post(d.port(), "/api/v1/query/find", body);
      CHECK_MESSAGE(r.status == 400, body << " → " << r.body);
    }
    // The answer cap.
    HttpResponse r = post(d.port(), "/api/v1/query/range", R"({"series":"q","start":0,"end":100})");
    CHECK(r.status == 413);
    CHECK(r.json()["error"].get<std::string>().find("max_query_points") != std::string::npos);
    r = post(d.port(), "/api/v1/query/range", R"({"series":"q","start":0,"end":100,"step":10,"agg":"sum"})");
    CHECK(r.status == 200);
  }

  TEST_CASE("storage: a restart recovers points from the WAL and from segments") {
    TempDir data;
    const auto opts = [&] {
      return DaemonOptions().set({"data_dir=" + data.path()}).set({"flush_interval_ms=100"});
    };
    {
      Daemon d(opts());
      REQUIRE(post(d.port(), "/api/v1/ingest", lines("r", 0, 500)).status == 200);
      REQUIRE(eventually([&] { return flushed_lsn(d.port()) >= 1; }));
      // Only in the WAL when SIGTERM arrives (the interval is long enough not to flush it).
      REQUIRE(post(d.port(), "/api/v1/ingest", lines("r", 500, 600) + point_line("r", 7, -7.0)).status ==
              200);
    }
    {
      Daemon d(opts());
      const json pts = all_points(d.port(), "r");
      REQUIRE(pts.size() == 600);
      CHECK(pts[7]["value"] == -7.0);
      CHECK(pts[599]["ts"] == 599);
      CHECK(status(d.port())["storage"]["series"] == 1);
    }
  }

  // Several clients stream fsync=always ingests; the daemon is SIGKILLed mid-stream. Every
  // request that was answered 200 must be there after a restart.
  TEST_CASE("storage: kill -9 during an fsync=always ingest stream loses no acknowledged point") {
    TempDir data;
    constexpr int kClients = 4;
    constexpr int kPointsPerRequest = 50;
    std::vector<std::int64_t> acked(kClients, 0);  // requests acknowledged per client
    {
      Daemon d(
          DaemonOptions().set({"data_dir=" + data.path()}).set({"fsync=always", "flush_interval_ms=200"}));
      std::atomic<bool> stop{false};
      std::vector<std::thread> clients;
      for (int c = 0; c < kClients; ++c) {
        clients.emplace_back([&, c] {
          try {
            Connection conn(d.port());
            const std::string name = numbered("kill", c);
            for (std::int64_t req = 0; !stop.load(); ++req) {
              std::string body;
              for (int i = 0; i < kPointsPerRequest; ++i) {
                const std::int64_t ts = req * kPointsPerRequest + i;
                body += point_line(name, ts, static_cast<double>(ts) * 3);
              }
              conn.send(make_request("POST", "/api/v1/ingest", {}, body));
              auto r = conn.read_response(patience(5s));
              if (!r || r->status != 200) return;
              acked[c] = req + 1;
            }
          } catch (const std::exception&) {
            // The daemon died under us: what was acknowledged so far is what counts.
          }
        });
      }
      std::this_thread::sleep_for(patience(700ms));
      const ExitStatus killed = d.stop(SIGKILL);
      stop.store(true);
      for (auto& t : clients) t.join();
      CHECK(killed.signal == SIGKILL);
    }
    std::int64_t total = 0;
    for (std::int64_t a : acked) total += a;
    REQUIRE_MESSAGE(total > 0, "no request was acknowledged before the kill");

    Daemon d(DaemonOptions().set({"data_dir=" + data.path()}));
    for (int c = 0; c < kClients; ++c) {
      const json pts = all_points(d.port(), numbered("kill", c));
      const std::size_t want = static_cast<std::size_t>(acked[c]) * kPointsPerRequest;
      // Unacknowledged requests may or may not be there; acknowledged ones must be, whole.
      REQUIRE_MESSAGE(pts.size() >= want, "client " << c << ": " << pts.size() << " < " << want);
      for (std::size_t i = 0; i < pts.size(); ++i) {
        CHECK(pts[i]["ts"] == static_cast<std::int64_t>(i));
        CHECK(pts[i]["value"] == static_cast<double>(i) * 3);
      }
    }
    MESSAGE("acknowledged requests before kill -9: " << total);
  }

  TEST_CASE("storage: retention drops points older than retention_days after a flush and a pass") {
    Daemon d(
        DaemonOptions().set({"retention_days=1", "retention_check_interval_ms=100", "flush_interval_ms=50"}));
    const std::int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                                    std::chrono::system_clock::now().time_since_epoch())
                                    .count();
    const std::int64_t old_ts = now_ms - 10LL * 86'400'000;
    std::string body;
    for (int i = 0; i < 10; ++i) body += point_line("ret", old_ts + i, 1.0);
    REQUIRE(post(d.port(), "/api/v1/ingest", body).status == 200);
    CHECK(range(d.port(), {{"series", "ret"}, {"start", old_ts}, {"end", now_ms}}).size() == 10);
    REQUIRE(eventually([&] { return flushed_lsn(d.port()) >= 1; }));
    // The recent point goes into a later segment, which retention keeps.
    REQUIRE(post(d.port(), "/api/v1/ingest", point_line("ret", now_ms, 2.0)).status == 200);
    CHECK(eventually([&] { return metric(d.port(), "sydradb_retention_dropped_segments_total") >= 1; }));
    REQUIRE(eventually([&] { return flushed_lsn(d.port()) >= 2; }));
    const json pts = range(d.port(), {{"series", "ret"}, {"start", old_ts}, {"end", now_ms}});
    CHECK(pts == json::array({{{"ts", now_ms}, {"value", 2.0}}}));
  }

  TEST_CASE("storage: background compaction merges small segments without losing points") {
    Daemon d(DaemonOptions().set({"flush_interval_ms=30", "compaction_interval_ms=3600000"}));
    for (int s = 0; s < 5; ++s) {
      const std::uint64_t before = flushed_lsn(d.port());
      REQUIRE(post(d.port(), "/api/v1/ingest", lines("comp", s * 10, s * 10 + 10)).status == 200);
      REQUIRE(eventually([&] { return flushed_lsn(d.port()) > before; }));
    }
    CHECK(metric(d.port(), "sydradb_segments") == 5);
    CHECK(metric(d.port(), "sydradb_compactions_total") == 0);
    // The same directory with a short compaction interval.
    const std::string dir = d.dir().file("data");
    CHECK(d.stop() == exited_with(0));
    Daemon c(DaemonOptions().set({"data_dir=" + dir}).set({"compaction_interval_ms=50"}));
    REQUIRE(eventually([&] { return metric(c.port(), "sydradb_compactions_total") >= 1; }));
    CHECK(metric(c.port(), "sydradb_segments") < 5);
    const json pts = all_points(c.port(), "comp");
    REQUIRE(pts.size() == 50);
    CHECK(pts[49] == json{{"ts", 49}, {"value", 24.5}});
  }

  TEST_CASE("storage: a torn WAL tail is cut with a warning, corruption before it stops start-up") {
    TempDir data;
    const auto opts = [&] {
      return DaemonOptions().set({"data_dir=" + data.path(), "flush_interval_ms=3600000"});
    };
    {
      Daemon d(opts());
      REQUIRE(post(d.port(), "/api/v1/ingest", lines("t", 0, 10)).status == 200);
      REQUIRE(post(d.port(), "/api/v1/ingest", lines("t", 10, 20)).status == 200);
    }
    std::string wal_file;
    for (const auto& entry : std::filesystem::directory_iterator(data.path() + "/wal"))
      if (entry.path().extension() == ".log" && std::filesystem::file_size(entry.path()) > 64)
        wal_file = entry.path().string();
    REQUIRE_FALSE(wal_file.empty());
    const std::string intact = read_file(wal_file);

    // A torn tail: half a record after the good ones.
    write_file(wal_file, intact + intact.substr(16, 30));
    {
      Daemon d(opts());
      CHECK(all_points(d.port(), "t").size() == 20);
      CHECK(contains(d.log(), "torn tail"));
    }

    // A flipped byte inside the first of two records: refuse to start, name file and offset.
    std::string corrupt = intact;
    corrupt[16 + 16 + 4] = static_cast<char>(corrupt[16 + 16 + 4] ^ 0x5a);
    write_file(wal_file, corrupt);
    const RunResult r = run_sydradb({"serve", "--port", "0", "--set", "data_dir=" + data.path()});
    CHECK(r.status == exited_with(1));
    CHECK_MESSAGE(contains(r.err, wal_file.substr(wal_file.rfind('/') + 1)), r.err);
    CHECK_MESSAGE(contains(r.err, "offset 16"), r.err);
  }

  TEST_CASE("storage: version-1 segments of an older sydradb are served, and sydradb compact upgrades them") {
    // tests/storage/fixtures/segments-v1: written by sydradb e94e071 (see
    // tests/storage/segment_file_test.cpp): fixture.gauge{host="a"}, 1500 points.
    TempDir data;
    const std::filesystem::path fixture =
        std::filesystem::path(SYDRA_SOURCE_DIR) / "tests/storage/fixtures/segments-v1";
    std::filesystem::create_directories(std::filesystem::path(data.path()) / "segments");
    for (const char* name : {"MANIFEST", "seg-00000000000000000001.sdb"})
      std::filesystem::copy_file(fixture / name, std::filesystem::path(data.path()) / "segments" / name);
    const auto opts = [&] {
      return DaemonOptions().set({"data_dir=" + data.path()}).set({"compaction_interval_ms=0"});
    };
    const json request = {
        {"series", "fixture.gauge"}, {"tags", {{"host", "a"}}}, {"start", 0}, {"end", INT64_MAX}};
    const auto check_gauge = [&](std::uint16_t port) {
      const json pts = range(port, request);
      REQUIRE(pts.size() == 1500);
      CHECK(pts[0]["ts"] == 1'700'000'000'000);
      CHECK(pts[0]["value"] == -3.0);
      CHECK(pts[1499]["ts"] == 1'700'000'000'000 + 1499 * 10'000LL);
      CHECK(pts[1499]["value"] == 371.75);
      const json special =
          range(port, {{"series", "fixture.special"}, {"start", INT64_MIN}, {"end", INT64_MAX}});
      REQUIRE(special.size() == 7);
      CHECK(special[0]["ts"] == -5000);
      CHECK(special[2]["value"] == 1e300);
      CHECK(special[3]["value"] == 5e-324);  // a subnormal
    };
    {
      Daemon d(opts());
      check_gauge(d.port());
    }
    const RunResult r = run_sydradb({"compact", "--data-dir", data.path()});
    CHECK_MESSAGE(r.status == exited_with(0), r.err);
    CHECK_MESSAGE(contains(r.out, "rewrote 1 segment in the newest format"), r.out);
    CHECK_FALSE(std::filesystem::exists(std::filesystem::path(data.path()) /
                                        "segments/seg-00000000000000000001.sdb"));
    const RunResult again = run_sydradb({"compact", "--data-dir", data.path()});
    CHECK_MESSAGE(contains(again.out, "nothing to compact"), again.out);
    Daemon d(opts());
    CHECK(metric(d.port(), "sydradb_segments") == 1);
    check_gauge(d.port());
  }

  TEST_CASE("storage: sydradb compact merges a stopped daemon's segments into one") {
    TempDir data;
    const auto opts = [&] {
      return DaemonOptions()
          .set({"data_dir=" + data.path()})
          .set({"flush_interval_ms=30", "compaction_interval_ms=0"});
    };
    {
      Daemon d(opts());
      for (int s = 0; s < 3; ++s) {
        const std::uint64_t before = flushed_lsn(d.port());
        REQUIRE(
            post(d.port(), "/api/v1/ingest", lines("sc", s * 10, s * 10 + 10) + point_line("sc", 0, -1.0 - s))
                .status == 200);
        REQUIRE(eventually([&] { return flushed_lsn(d.port()) > before; }));
      }
      CHECK(metric(d.port(), "sydradb_segments") == 3);
    }
    const RunResult r = run_sydradb({"compact", "--data-dir", data.path()});
    CHECK_MESSAGE(r.status == exited_with(0), r.err);
    Daemon d(opts());
    // On a running daemon's directory: refused, and it says what to do.
    const RunResult busy = run_sydradb({"compact", "--data-dir", data.path()});
    CHECK(busy.status == exited_with(1));
    CHECK(busy.err == "sydradb compact: data directory " + data.path() +
                          "/segments is in use by another process: stop the daemon first (compact works on a "
                          "stopped daemon's data directory)\n");
    CHECK(metric(d.port(), "sydradb_segments") == 1);
    const json pts = all_points(d.port(), "sc");
    REQUIRE(pts.size() == 30);
    CHECK(pts[0]["value"] == -3.0);  // the newest write of ts 0
    CHECK(pts[29]["value"] == 14.5);
  }
}

}  // namespace
}  // namespace sydra::itest
