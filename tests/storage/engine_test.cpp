// Tests server/storage/engine.hpp: ingest then query before and after a flush, equal
// timestamps (last write wins across memtable and segments), downsampling, find and the
// series list, recovery from the WAL and after flushes (nothing lost, nothing twice),
// backpressure, retention, many-series queries (select: matchers over the tag index,
// downsampling, aggregation across series by labels, limits, after recovery), and
// ingest/query/select/flush running together (suite `concurrency`).
#include "server/storage/engine.hpp"

#include <doctest/doctest.h>
#include <stdlib.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "server/storage/ingest_parser.hpp"
#include "server/storage/selector.hpp"
#include "server/storage/series_key.hpp"
#include "support/alloc_test_support.hpp"
#include "support/temp_dir.hpp"

namespace sydra::storage {
namespace {

using alloc::SmallPoolAllocator;

struct EngineDir : test::TempDir {
  EngineDir() : test::TempDir("sydra-engine") {}
};

EngineOptions quiet_options(const std::string& dir) {
  EngineOptions o;
  o.data_dir = dir;
  o.sync = SyncMode::none;
  o.background = false;
  o.compaction_interval_ms = 0;
  return o;
}

// A line of NDJSON.
std::string line(std::string_view series, Timestamp ts, double value, std::string_view tags = "") {
  std::string s = "{\"series\":\"";
  s += series;
  s += "\",\"ts\":";
  s += std::to_string(ts);
  s += ",\"value\":";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.17g", value);
  s += buf;
  if (!tags.empty()) {
    s += ",\"tags\":";
    s += tags;
  }
  s += "}\n";
  return s;
}

// "s<n>" (operator+ on a temporary trips g++ 12's -Wrestrict at -O3).
std::string name_of(int n) {
  std::string s("s");
  s += std::to_string(n);
  return s;
}

// The pieces one after the other (the same -Wrestrict reason).
std::string concat(std::initializer_list<std::string_view> pieces) {
  std::string s;
  for (std::string_view p : pieces) s += p;
  return s;
}

IngestOutcome ingest(Engine& e, const std::string& body) {
  NdjsonParser parser;
  ParsedBatch batch;
  parser.parse(body, batch);
  return e.ingest(batch);
}

SeriesId id_of(std::string_view name, std::vector<TagView> tags = {}) {
  std::sort(tags.begin(), tags.end());
  std::string key;
  append_canonical_key(key, name, tags);
  return series_id(key);
}

std::vector<Point> query(const Engine& e, SeriesId id, Timestamp start = INT64_MIN, Timestamp end = INT64_MAX,
                         std::int64_t step = 0, Aggregation agg = Aggregation::none) {
  RangeQuery q;
  q.id = id;
  q.start = start;
  q.end = end;
  q.step = step;
  q.agg = agg;
  std::vector<Point> out;
  REQUIRE(e.query_range(q, out) == QueryStatus::ok);
  return out;
}

std::string series_lines(std::string_view name, Timestamp from, Timestamp to, double scale = 1.0,
                         std::string_view tags = "") {
  std::string body;
  for (Timestamp t = from; t < to; ++t) body += line(name, t, static_cast<double>(t) * scale, tags);
  return body;
}

TEST_SUITE("unit") {
  TEST_CASE("engine: ingested points are queryable before and after a flush") {
    SmallPoolAllocator a(alloc::test::small_options());
    EngineDir dir;
    auto e = Engine::open(quiet_options(dir.path()), a);
    const IngestOutcome out = ingest(*e, series_lines("cpu", 0, 100));
    CHECK(out.status == IngestStatus::ok);
    CHECK(out.ingested == 100);
    CHECK(out.lsn == 1);

    auto pts = query(*e, id_of("cpu"));
    REQUIRE(pts.size() == 100);
    CHECK(pts[42].ts == 42);
    CHECK(pts[42].value == 42.0);
    CHECK(query(*e, id_of("cpu"), 10, 19).size() == 10);

    REQUIRE(e->flush());
    EngineStats st = e->stats();
    CHECK(st.flushes == 1);
    CHECK(st.flush_points == 100);
    CHECK(st.segments == 1);
    CHECK(st.memtable_points == 0);
    CHECK(st.flushed_lsn == 1);
    pts = query(*e, id_of("cpu"));
    REQUIRE(pts.size() == 100);
    CHECK(pts[99].value == 99.0);

    // Memtable and segment merged.
    ingest(*e, series_lines("cpu", 100, 150));
    pts = query(*e, id_of("cpu"), 90, 120);
    REQUIRE(pts.size() == 31);
    for (std::size_t i = 0; i < pts.size(); ++i) CHECK(pts[i].ts == static_cast<Timestamp>(90 + i));
    CHECK(query(*e, id_of("nope")).empty());
    CHECK(query(*e, id_of("cpu"), 5, 4).empty());
  }

  TEST_CASE(
      "engine: equal timestamps, the last write wins in the memtable, over segments and across segments") {
    SmallPoolAllocator a(alloc::test::small_options());
    EngineDir dir;
    auto e = Engine::open(quiet_options(dir.path()), a);
    const SeriesId id = id_of("m");
    ingest(*e, line("m", 1, 1.0) + line("m", 2, 2.0) + line("m", 1, 10.0));
    ingest(*e, line("m", 2, 20.0));
    auto pts = query(*e, id);
    REQUIRE(pts.size() == 2);
    CHECK(pts[0].value == 10.0);
    CHECK(pts[1].value == 20.0);

    REQUIRE(e->flush());
    ingest(*e, line("m", 1, 100.0) + line("m", 3, 3.0));
    pts = query(*e, id);
    REQUIRE(pts.size() == 3);
    CHECK(pts[0].value == 100.0);  // memtable over segment
    CHECK(pts[1].value == 20.0);

    REQUIRE(e->flush());  // a second segment, newer than the first
    pts = query(*e, id);
    REQUIRE(pts.size() == 3);
    CHECK(pts[0].value == 100.0);
    CHECK(pts[2].value == 3.0);

    REQUIRE(e->compact(true));
    pts = query(*e, id);
    REQUIRE(pts.size() == 3);
    CHECK(pts[0].value == 100.0);
    CHECK(pts[1].value == 20.0);
  }

  TEST_CASE("engine: downsampling with every aggregation, buckets aligned to multiples of step") {
    SmallPoolAllocator a(alloc::test::small_options());
    EngineDir dir;
    auto e = Engine::open(quiet_options(dir.path()), a);
    // ts 0..9 with values 1..10, and ts -1 with value -1 (bucket -5 for step 5).
    std::string body;
    for (int i = 0; i < 10; ++i) body += line("d", i, i + 1.0);
    body += line("d", -1, -1.0);
    ingest(*e, body);
    REQUIRE(e->flush());
    ingest(*e, line("d", 12, 100.0));  // in the memtable: bucket 10
    const SeriesId id = id_of("d");

    auto check = [&](Aggregation agg, std::vector<double> want) {
      auto pts = query(*e, id, INT64_MIN, INT64_MAX, 5, agg);
      REQUIRE(pts.size() == 4);
      CHECK(pts[0].ts == -5);
      CHECK(pts[1].ts == 0);
      CHECK(pts[2].ts == 5);
      CHECK(pts[3].ts == 10);
      for (std::size_t i = 0; i < 4; ++i) CHECK(pts[i].value == doctest::Approx(want[i]));
    };
    check(Aggregation::avg, {-1, 3, 8, 100});
    check(Aggregation::min, {-1, 1, 6, 100});
    check(Aggregation::max, {-1, 5, 10, 100});
    check(Aggregation::sum, {-1, 15, 40, 100});
    check(Aggregation::count, {1, 5, 5, 1});
    check(Aggregation::last, {-1, 5, 10, 100});

    // The range bounds apply to points, not buckets.
    auto pts = query(*e, id, 3, 6, 5, Aggregation::count);
    REQUIRE(pts.size() == 2);
    CHECK(pts[0].value == 2);
    CHECK(pts[1].value == 2);

    Aggregation agg{};
    CHECK(parse_aggregation("avg", agg));
    CHECK(agg == Aggregation::avg);
    CHECK_FALSE(parse_aggregation("median", agg));
  }

  TEST_CASE("engine: a range answer over max_points is refused") {
    SmallPoolAllocator a(alloc::test::small_options());
    EngineDir dir;
    auto e = Engine::open(quiet_options(dir.path()), a);
    ingest(*e, series_lines("big", 0, 50));
    RangeQuery q;
    q.id = id_of("big");
    q.start = 0;
    q.end = 100;
    q.max_points = 49;
    std::vector<Point> out;
    CHECK(e->query_range(q, out) == QueryStatus::too_large);
    q.max_points = 50;
    CHECK(e->query_range(q, out) == QueryStatus::ok);
    CHECK(out.size() == 50);
    q.step = 10;
    q.agg = Aggregation::avg;
    q.max_points = 5;
    CHECK(e->query_range(q, out) == QueryStatus::ok);
  }

  TEST_CASE("engine: find by tags with and/or, and the series list") {
    SmallPoolAllocator a(alloc::test::small_options());
    EngineDir dir;
    auto e = Engine::open(quiet_options(dir.path()), a);
    ingest(*e, line("cpu", 1, 1, R"({"host":"a","dc":"x"})") + line("cpu", 1, 1, R"({"host":"b","dc":"x"})") +
                   line("mem", 1, 1, R"({"host":"a"})") + line("disk", 1, 1));
    const SeriesId cpu_a = id_of("cpu", {{"host", "a"}, {"dc", "x"}});
    const SeriesId cpu_b = id_of("cpu", {{"host", "b"}, {"dc", "x"}});
    const SeriesId mem_a = id_of("mem", {{"host", "a"}});
    const SeriesId disk = id_of("disk");
    auto sorted = [](std::vector<SeriesId> v) {
      std::sort(v.begin(), v.end());
      return v;
    };
    using Tags = std::vector<std::pair<std::string, std::string>>;
    CHECK(e->find(Tags{{"host", "a"}}, false) == sorted({cpu_a, mem_a}));
    CHECK(e->find(Tags{{"host", "a"}, {"dc", "x"}}, false) == sorted({cpu_a}));
    CHECK(e->find(Tags{{"host", "a"}, {"dc", "x"}}, true) == sorted({cpu_a, cpu_b, mem_a}));
    CHECK(e->find(Tags{{"host", "zzz"}}, false).empty());
    CHECK(e->find(Tags{{"host", "zzz"}, {"host", "b"}}, true) == sorted({cpu_b}));
    CHECK(e->find(Tags{}, false) == sorted({cpu_a, cpu_b, mem_a, disk}));
    CHECK(e->find(Tags{}, true).empty());

    const auto list = e->list_series();
    REQUIRE(list.size() == 4);
    std::map<SeriesId, SeriesInfo> by_id;
    for (const auto& s : list) by_id[s.id] = s;
    CHECK(by_id[cpu_a].name == "cpu");
    REQUIRE(by_id[cpu_a].tags.size() == 2);
    CHECK(by_id[cpu_a].tags[0] == std::pair<std::string, std::string>{"dc", "x"});
    CHECK(by_id[disk].tags.empty());
    CHECK(e->series_count() == 4);

    // A new generation (after a flush) does not duplicate catalog entries.
    REQUIRE(e->flush());
    ingest(*e, line("cpu", 2, 2, R"({"host":"a","dc":"x"})"));
    CHECK(e->list_series().size() == 4);
  }

  TEST_CASE("engine: restart recovers the memtable from the WAL") {
    SmallPoolAllocator a(alloc::test::small_options());
    EngineDir dir;
    {
      auto e = Engine::open(quiet_options(dir.path()), a);
      ingest(*e, series_lines("r", 0, 500, 2.0, R"({"k":"v"})"));
      ingest(*e, line("r", 7, -7.0, R"({"k":"v"})"));
    }
    auto e = Engine::open(quiet_options(dir.path()), a);
    const SeriesId id = id_of("r", {{"k", "v"}});
    auto pts = query(*e, id);
    REQUIRE(pts.size() == 500);
    CHECK(pts[7].value == -7.0);
    CHECK(pts[499].value == 998.0);
    CHECK(e->find(std::vector<std::pair<std::string, std::string>>{{"k", "v"}}, false) ==
          std::vector<SeriesId>{id});
    // New appends continue the lsn sequence.
    CHECK(ingest(*e, line("r", 1000, 1.0, R"({"k":"v"})")).lsn == 3);
  }

  TEST_CASE("engine: restart after flushes: nothing lost, nothing twice") {
    SmallPoolAllocator a(alloc::test::small_options());
    EngineDir dir;
    {
      auto e = Engine::open(quiet_options(dir.path()), a);
      ingest(*e, series_lines("f", 0, 100));
      REQUIRE(e->flush());
      ingest(*e, series_lines("f", 100, 200));
      REQUIRE(e->flush());
      ingest(*e, series_lines("f", 200, 300));
      ingest(*e, line("f", 50, -50.0));  // overwrites a flushed point, only in the WAL
    }
    {
      auto e = Engine::open(quiet_options(dir.path()), a);
      auto pts = query(*e, id_of("f"));
      REQUIRE(pts.size() == 300);
      for (std::size_t i = 0; i < pts.size(); ++i) CHECK(pts[i].ts == static_cast<Timestamp>(i));
      CHECK(pts[50].value == -50.0);
      const EngineStats st = e->stats();
      CHECK(st.memtable_points == 101);  // only what was not flushed was replayed
      CHECK(st.flushed_lsn == 2);
      CHECK(st.series == 1);
      REQUIRE(e->flush());
    }
    auto e = Engine::open(quiet_options(dir.path()), a);
    CHECK(e->stats().memtable_points == 0);
    auto pts = query(*e, id_of("f"));
    REQUIRE(pts.size() == 300);
    CHECK(pts[50].value == -50.0);
  }

  TEST_CASE("engine: a WAL larger than the memtable bound is flushed while it is replayed") {
    SmallPoolAllocator a(alloc::test::small_options());
    EngineDir dir;
    {
      auto e = Engine::open(quiet_options(dir.path()), a);
      for (int i = 0; i < 20; ++i) ingest(*e, series_lines("w", i * 1000, (i + 1) * 1000));
    }
    EngineOptions small = quiet_options(dir.path());
    small.memtable_max_bytes = 64 * 1024;  // about 3800 points
    auto e = Engine::open(small, a);
    const EngineStats st = e->stats();
    CHECK(st.segments >= 4);
    CHECK(st.memtable_bytes < 2 * small.memtable_max_bytes);
    auto pts = query(*e, id_of("w"));
    REQUIRE(pts.size() == 20000);
    CHECK(pts.back().value == 19999.0);
  }

  TEST_CASE("engine: a full memtable with no flush makes ingest wait, then refuse without storing") {
    SmallPoolAllocator a(alloc::test::small_options());
    EngineDir dir;
    EngineOptions o = quiet_options(dir.path());
    o.memtable_max_bytes = 16 * 1024;
    o.ingest_wait_ms = 20;  // nobody flushes (no background thread)
    auto e = Engine::open(o, a);
    IngestOutcome last;
    int accepted = 0;
    for (int i = 0; i < 100; ++i) {
      last = ingest(*e, series_lines("b", i * 100, (i + 1) * 100));
      if (last.status != IngestStatus::ok) break;
      ++accepted;
    }
    REQUIRE(last.status == IngestStatus::busy);
    CHECK(last.ingested == 0);
    CHECK(e->stats().memtable_points == static_cast<std::uint64_t>(accepted) * 100);
    CHECK(e->stats().ingest_busy == 1);
    CHECK(query(*e, id_of("b")).size() == static_cast<std::size_t>(accepted) * 100);
    REQUIRE(e->flush());
    CHECK(ingest(*e, series_lines("b", 100000, 100100)).status == IngestStatus::ok);
  }

  TEST_CASE("engine: retention drops segments older than retention_days, at a pass and at start-up") {
    SmallPoolAllocator a(alloc::test::small_options());
    EngineDir dir;
    constexpr Timestamp kDay = 86'400'000;
    const Timestamp now = 1'700'000'000'000;
    EngineOptions o = quiet_options(dir.path());
    o.retention_days = 2;
    o.now_ms = [now] { return now; };
    {
      auto e = Engine::open(o, a);
      ingest(*e, series_lines("old", now - 10 * kDay, now - 10 * kDay + 100));
      REQUIRE(e->flush());
      ingest(*e, series_lines("new", now - 100, now));
      REQUIRE(e->flush());
      CHECK(e->stats().segments == 2);
      CHECK(e->apply_retention() == 1);
      CHECK(e->stats().segments == 1);
      CHECK(e->stats().retention_dropped_segments == 1);
      CHECK(query(*e, id_of("old")).empty());
      CHECK(query(*e, id_of("new")).size() == 100);
      ingest(*e, series_lines("old", now - 5 * kDay, now - 5 * kDay + 10));
      REQUIRE(e->flush());
    }
    auto e = Engine::open(o, a);  // retention runs at start-up
    CHECK(query(*e, id_of("old")).empty());
    CHECK(query(*e, id_of("new")).size() == 100);
  }

  TEST_CASE("engine: the background thread flushes by size and by interval") {
    SmallPoolAllocator a(alloc::test::small_options());
    EngineDir dir;
    EngineOptions o = quiet_options(dir.path());
    o.background = true;
    o.memtable_max_bytes = 32 * 1024;
    o.flush_interval_ms = 50;
    auto e = Engine::open(o, a);
    for (int i = 0; i < 30; ++i)
      REQUIRE(ingest(*e, series_lines("bg", i * 200, (i + 1) * 200)).status == IngestStatus::ok);
    // The memtable empties when a flush takes it over, before that flush's points are
    // counted: wait for both.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while ((e->stats().memtable_points > 0 || e->stats().flush_points < 6000) &&
           std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    const EngineStats st = e->stats();
    CHECK(st.memtable_points == 0);
    CHECK(st.flushes >= 2);
    CHECK(st.flush_points == 6000);
    CHECK(query(*e, id_of("bg")).size() == 6000);
  }
}

// A select over `selector`, checked to answer ok.
SelectResult select(const Engine& e, std::string_view selector, Timestamp start = INT64_MIN,
                    Timestamp end = INT64_MAX, std::int64_t step = 0, Aggregation agg = Aggregation::none,
                    Aggregation across = Aggregation::none, std::vector<std::string> by = {}) {
  SelectQuery q;
  q.matchers = parse_selector(selector);
  q.start = start;
  q.end = end;
  q.step = step;
  q.agg = agg;
  q.across = across;
  q.by = std::move(by);
  SelectResult r = e.select(q);
  REQUIRE(r.status == SelectStatus::ok);
  return r;
}

// "cpu{dc=eu,host=h1}" for a result's series.
std::string label_of(const SeriesInfo& s) {
  std::string out = s.name + "{";
  for (std::size_t i = 0; i < s.tags.size(); ++i)
    out += (i > 0 ? "," : "") + s.tags[i].first + "=" + s.tags[i].second;
  return out + "}";
}

// 4 series: cpu on h1/h2 in eu, cpu on h3 in us, mem on h1 in eu; 100 points each at ts
// 0..99, value ts * k (k = 1, 2, 3, 10); the first half flushed to a segment.
void load_fleet(Engine& e) {
  struct S {
    const char* name;
    const char* tags;
    double k;
  };
  const S fleet[] = {{"cpu", R"({"host":"h1","dc":"eu"})", 1},
                     {"cpu", R"({"host":"h2","dc":"eu"})", 2},
                     {"cpu", R"({"host":"h3","dc":"us"})", 3},
                     {"mem", R"({"host":"h1","dc":"eu"})", 10}};
  for (const S& f : fleet) ingest(e, series_lines(f.name, 0, 50, f.k, f.tags));
  REQUIRE(e.flush());
  for (const S& f : fleet) ingest(e, series_lines(f.name, 50, 100, f.k, f.tags));
}

TEST_SUITE("unit") {
  TEST_CASE("engine select: series by name and tag matchers, raw and downsampled, sorted by key") {
    SmallPoolAllocator a(alloc::test::small_options());
    EngineDir dir;
    auto e = Engine::open(quiet_options(dir.path()), a);
    load_fleet(*e);

    SelectResult r = select(*e, R"(cpu{dc="eu"})", 40, 59);
    CHECK(r.matched_series == 2);
    REQUIRE(r.series.size() == 2);
    CHECK(label_of(r.series[0].series) == "cpu{dc=eu,host=h1}");
    CHECK(label_of(r.series[1].series) == "cpu{dc=eu,host=h2}");
    CHECK(r.series[1].series.id == id_of("cpu", {{"host", "h2"}, {"dc", "eu"}}));
    REQUIRE(r.series[1].points.size() == 20);  // 40..49 from the segment, 50..59 from the memtable
    for (std::size_t i = 0; i < 20; ++i) {
      CHECK(r.series[1].points[i].ts == static_cast<Timestamp>(40 + i));
      CHECK(r.series[1].points[i].value == 2.0 * static_cast<double>(40 + i));
    }
    CHECK(r.groups.empty());

    r = select(*e, R"({host=~"h[13]", __name__!="mem"})", 0, 99, 50, Aggregation::max);
    REQUIRE(r.series.size() == 2);
    CHECK(label_of(r.series[0].series) == "cpu{dc=eu,host=h1}");
    CHECK(label_of(r.series[1].series) == "cpu{dc=us,host=h3}");
    REQUIRE(r.series[1].points.size() == 2);
    CHECK(r.series[1].points[0].ts == 0);
    CHECK(r.series[1].points[0].value == 3 * 49.0);
    CHECK(r.series[1].points[1].ts == 50);
    CHECK(r.series[1].points[1].value == 3 * 99.0);

    CHECK(select(*e, R"(nosuch)").series.empty());
    // Selected, but without a point in the range: left out of the answer.
    r = select(*e, "cpu", 1000, 2000);
    CHECK(r.matched_series == 3);
    CHECK(r.series.empty());
  }

  TEST_CASE("engine select: aggregation across series, by labels, after per-series downsampling") {
    SmallPoolAllocator a(alloc::test::small_options());
    EngineDir dir;
    auto e = Engine::open(quiet_options(dir.path()), a);
    load_fleet(*e);

    // max by (dc) (max_over_time(cpu[50])): eu = h2 (k=2), us = h3 (k=3).
    SelectResult r = select(*e, "cpu", 0, 99, 50, Aggregation::max, Aggregation::max, {"dc"});
    CHECK(r.series.empty());
    REQUIRE(r.groups.size() == 2);
    CHECK(r.groups[0].labels == std::vector<std::pair<std::string, std::string>>{{"dc", "eu"}});
    CHECK(r.groups[0].series == 2);
    REQUIRE(r.groups[0].points.size() == 2);
    CHECK(r.groups[0].points[0].value == 2 * 49.0);
    CHECK(r.groups[0].points[1].value == 2 * 99.0);
    CHECK(r.groups[1].labels == std::vector<std::pair<std::string, std::string>>{{"dc", "us"}});
    CHECK(r.groups[1].points[1].value == 3 * 99.0);

    // sum (avg_over_time(cpu[50])) without by: one group. avg of ts 0..49 = 24.5.
    r = select(*e, "cpu", 0, 99, 50, Aggregation::avg, Aggregation::sum);
    REQUIRE(r.groups.size() == 1);
    CHECK(r.groups[0].labels.empty());
    CHECK(r.groups[0].series == 3);
    CHECK(r.groups[0].points[0].value == doctest::Approx(24.5 * 6));
    CHECK(r.groups[0].points[1].value == doctest::Approx(74.5 * 6));

    // count and avg by __name__ and a label some series lack.
    r = select(*e, R"({host=~"h.*"})", 0, 99, 100, Aggregation::last, Aggregation::count,
               {"__name__", "rack"});
    REQUIRE(r.groups.size() == 2);
    CHECK(r.groups[0].labels == std::vector<std::pair<std::string, std::string>>{{"__name__", "cpu"}});
    CHECK(r.groups[0].points[0].value == 3);
    CHECK(r.groups[1].labels == std::vector<std::pair<std::string, std::string>>{{"__name__", "mem"}});
    CHECK(r.groups[1].points[0].value == 1);
    r = select(*e, "cpu", 0, 99, 100, Aggregation::last, Aggregation::avg, {"dc"});
    CHECK(r.groups[0].points[0].value == doctest::Approx((99.0 + 198.0) / 2));

    // Without step: points combine where timestamps are equal.
    r = select(*e, "cpu", 10, 11, 0, Aggregation::none, Aggregation::sum);
    REQUIRE(r.groups.size() == 1);
    REQUIRE(r.groups[0].points.size() == 2);
    CHECK(r.groups[0].points[1].ts == 11);
    CHECK(r.groups[0].points[1].value == 11 * 6.0);
  }

  TEST_CASE("engine select: over max_series or max_points answers the limit, not the points") {
    SmallPoolAllocator a(alloc::test::small_options());
    EngineDir dir;
    auto e = Engine::open(quiet_options(dir.path()), a);
    load_fleet(*e);
    SelectQuery q;
    q.matchers = parse_selector("cpu");
    q.start = 0;
    q.end = 99;
    q.max_series = 2;
    SelectResult r = e->select(q);
    CHECK(r.status == SelectStatus::too_many_series);
    CHECK(r.matched_series == 3);
    CHECK(r.series.empty());

    q.max_series = 3;
    q.max_points = 299;
    r = e->select(q);
    CHECK(r.status == SelectStatus::too_many_points);
    CHECK(r.series.empty());
    q.max_points = 300;
    CHECK(e->select(q).status == SelectStatus::ok);

    // Across series the limit counts the answer's points (buckets per group).
    q.step = 10;
    q.agg = Aggregation::max;
    q.across = Aggregation::max;
    q.by = {"host"};
    q.max_points = 29;
    CHECK(e->select(q).status == SelectStatus::too_many_points);
    q.max_points = 30;
    r = e->select(q);
    REQUIRE(r.status == SelectStatus::ok);
    CHECK(r.groups.size() == 3);
  }

  TEST_CASE("engine select: the tag index is rebuilt from segments and the WAL at start-up") {
    SmallPoolAllocator a(alloc::test::small_options());
    EngineDir dir;
    {
      auto e = Engine::open(quiet_options(dir.path()), a);
      load_fleet(*e);                                      // half in a segment, half only in the WAL
      ingest(*e, line("disk", 5, 5, R"({"host":"h9"})"));  // a series only in the WAL
    }
    auto e = Engine::open(quiet_options(dir.path()), a);
    SelectResult r = select(*e, R"({host=~"h1|h9"})");
    REQUIRE(r.series.size() == 3);
    CHECK(label_of(r.series[0].series) == "cpu{dc=eu,host=h1}");
    CHECK(r.series[0].points.size() == 100);
    CHECK(label_of(r.series[1].series) == "disk{host=h9}");
    CHECK(label_of(r.series[2].series) == "mem{dc=eu,host=h1}");
    std::vector<SelectedSeries> chosen;
    CHECK(e->select_series(parse_selector(R"({dc="us"})"), 10, chosen) == SeriesIndex::SelectStatus::ok);
    REQUIRE(chosen.size() == 1);
    CHECK(chosen[0].id == id_of("cpu", {{"host", "h3"}, {"dc", "us"}}));
  }

  TEST_CASE("engine select: the same answers with the query pool's helpers and without") {
    SmallPoolAllocator a(alloc::test::small_options());
    EngineDir dir;
    std::string body;
    for (int h = 0; h < 40; ++h) {
      const std::string tags =
          concat({R"({"host":"h)", std::to_string(h), R"(","dc":")", h % 3 ? "eu" : "us", "\"}"});
      body += series_lines("m", 0, 200, 1.0 + h, tags);
    }
    std::vector<std::vector<Point>> answers;
    for (std::uint32_t threads : {1u, 4u}) {
      EngineOptions o = quiet_options(dir.path());
      o.query_threads = threads;
      auto e = Engine::open(o, a);
      if (threads == 1) {
        ingest(*e, body);
        REQUIRE(e->flush());
      }
      const SelectResult r = select(*e, "m", 0, 199, 25, Aggregation::max, Aggregation::sum, {"dc"});
      REQUIRE(r.groups.size() == 2);
      for (const GroupResult& g : r.groups) answers.push_back(g.points);
      const SelectResult raw = select(*e, R"(m{dc="us"})");
      CHECK(raw.series.size() == 14);
      for (const SeriesPointsResult& s : raw.series) CHECK(s.points.size() == 200);
    }
    REQUIRE(answers.size() == 4);
    for (std::size_t g = 0; g < 2; ++g) {
      REQUIRE(answers[g].size() == answers[g + 2].size());
      for (std::size_t i = 0; i < answers[g].size(); ++i)
        CHECK(answers[g][i].value == answers[g + 2][i].value);
    }
  }
}

// What the daemon's maintenance tick does, every millisecond until `done`.
std::thread maintenance_thread(SmallPoolAllocator& a, const std::atomic<bool>& done) {
  return std::thread([&a, &done] {
    while (!done.load()) {
      a.advance_epoch();
      a.collect_garbage();
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  });
}

TEST_SUITE("concurrency") {
  // Writers ingest disjoint series while readers query and the background thread flushes
  // (tiny memtable: many generations). Each reader checks what it sees is sorted, unique and
  // carries the value the writer gave each ts; at the end every point is there.
  TEST_CASE("engine: concurrent ingest, queries and background flushes") {
    SmallPoolAllocator a(alloc::test::small_options());
    EngineDir dir;
    EngineOptions o = quiet_options(dir.path());
    o.background = true;
    o.memtable_max_bytes = 64 * 1024;
    o.flush_interval_ms = 20;
    o.ingest_wait_ms = 10'000;
    o.sync = SyncMode::always;
    auto e = Engine::open(o, a);
    constexpr int kWriters = 3;
    const int batches = alloc::test::kSlowBuild ? 40 : 150;
    std::atomic<bool> done{false};
    std::atomic<int> ingest_failures{0}, value_failures{0}, order_failures{0}, gap_failures{0};
    std::atomic<std::uint64_t> queries{0};

    std::vector<std::thread> threads;
    for (int w = 0; w < kWriters; ++w) {
      threads.emplace_back([&, w] {
        const std::string name = name_of(w);
        for (int b = 0; b < batches; ++b)
          if (ingest(*e, series_lines(name, b * 50, (b + 1) * 50, w + 1.0)).status != IngestStatus::ok)
            ingest_failures.fetch_add(1);
      });
    }
    std::thread maintenance = maintenance_thread(a, done);
    std::vector<std::thread> readers;
    for (int r = 0; r < 2; ++r) {
      readers.emplace_back([&, r] {
        while (!done.load()) {
          for (int w = 0; w < kWriters; ++w) {
            auto pts = query(*e, id_of(name_of(w)));
            for (std::size_t i = 0; i < pts.size(); ++i) {
              if (pts[i].value != static_cast<double>(pts[i].ts) * (w + 1.0)) value_failures.fetch_add(1);
              if (i > 0 && pts[i].ts <= pts[i - 1].ts) order_failures.fetch_add(1);
            }
            // Writers append in ts order, and a query sees a prefix: no gaps.
            if (!pts.empty() && pts.back().ts + 1 != static_cast<Timestamp>(pts.size()))
              gap_failures.fetch_add(1);
          }
          if (r == 0) (void)e->find(std::vector<std::pair<std::string, std::string>>{}, false);
          queries.fetch_add(1);
        }
      });
    }
    for (auto& t : threads) t.join();
    done.store(true);
    for (auto& t : readers) t.join();
    maintenance.join();
    CHECK(ingest_failures.load() == 0);
    CHECK(value_failures.load() == 0);
    CHECK(order_failures.load() == 0);
    CHECK(gap_failures.load() == 0);
    CHECK(queries.load() > 0);
    CHECK(e->stats().flushes > 0);
    for (int w = 0; w < kWriters; ++w)
      CHECK(query(*e, id_of(name_of(w))).size() == static_cast<std::size_t>(batches) * 50);
  }

  // New series keep appearing (one per batch, tagged with its writer) while readers select
  // them through the tag index with the query pool's helpers, across flushes. Every answer
  // holds only matching series, each sorted and consistent with what its writer wrote.
  TEST_CASE("engine: selects racing ingest of new series and flushes") {
    SmallPoolAllocator a(alloc::test::small_options());
    EngineDir dir;
    EngineOptions o = quiet_options(dir.path());
    o.background = true;
    o.memtable_max_bytes = 64 * 1024;
    o.flush_interval_ms = 20;
    o.ingest_wait_ms = 10'000;
    o.query_threads = 3;
    auto e = Engine::open(o, a);
    constexpr int kWriters = 2;
    const int batches = alloc::test::kSlowBuild ? 30 : 100;
    std::atomic<bool> done{false};
    std::atomic<int> failures{0};
    std::atomic<std::uint64_t> selects{0};
    std::vector<std::thread> writers;
    for (int w = 0; w < kWriters; ++w) {
      writers.emplace_back([&, w] {
        for (int b = 0; b < batches; ++b) {
          const std::string tags =
              concat({R"({"writer":"w)", std::to_string(w), R"(","batch":")", std::to_string(b), "\"}"});
          if (ingest(*e, series_lines("sel", 0, 20, 1.0 + b, tags)).status != IngestStatus::ok)
            failures.fetch_add(1);
        }
      });
    }
    std::thread maintenance = maintenance_thread(a, done);
    std::vector<std::thread> readers;
    for (int r = 0; r < 2; ++r) {
      readers.emplace_back([&, r] {
        const std::string selector = r == 0 ? R"(sel{writer="w0"})" : R"(sel{batch=~"1.*", writer!="w0"})";
        const auto ms = parse_selector(selector);
        while (!done.load()) {
          SelectQuery q;
          q.matchers = ms;
          q.start = 0;
          q.end = 19;
          const SelectResult res = e->select(q);
          for (const SeriesPointsResult& s : res.series) {
            std::vector<std::pair<std::string_view, std::string_view>> tags(s.series.tags.begin(),
                                                                            s.series.tags.end());
            if (!matches_all(ms, SeriesLabels{s.series.name, tags})) failures.fetch_add(1);
            const double k = 1.0 + std::stoi(std::string(SeriesLabels{s.series.name, tags}.value("batch")));
            for (std::size_t i = 0; i < s.points.size(); ++i) {
              if (s.points[i].ts != static_cast<Timestamp>(i) ||
                  s.points[i].value != static_cast<double>(i) * k)
                failures.fetch_add(1);
            }
          }
          selects.fetch_add(1);
        }
      });
    }
    for (auto& t : writers) t.join();
    done.store(true);
    for (auto& t : readers) t.join();
    maintenance.join();
    CHECK(failures.load() == 0);
    CHECK(selects.load() > 0);
    const SelectResult all = select(*e, R"(sel{writer="w0"})", 0, 19);
    CHECK(all.series.size() == static_cast<std::size_t>(batches));
    for (const SeriesPointsResult& s : all.series) CHECK(s.points.size() == 20);
  }
}

}  // namespace
}  // namespace sydra::storage
