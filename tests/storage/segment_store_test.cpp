// Tests server/storage/segment_store.hpp: add/read/reopen, range edges, many series,
// compaction (newest wins, adjacency), retention, leftovers, the LOCK, corruption, and a
// reader that keeps reading while another thread adds, compacts and drops.
#include "server/storage/segment_store.hpp"

#include <doctest/doctest.h>
#include <stdlib.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "server/storage/file_io.hpp"
#include "server/storage/segment_file.hpp"
#include "support/temp_dir.hpp"

namespace sydra::storage {
namespace {

namespace fs = std::filesystem;

struct TempDir : test::TempDir {
  TempDir() : test::TempDir("sydra-seg-test") {}
};

std::vector<Point> series_points(Timestamp from, Timestamp to, Timestamp step, double value) {
  std::vector<Point> pts;
  for (Timestamp ts = from; ts <= to; ts += step) pts.push_back({ts, value});
  return pts;
}

std::vector<Point> read_all(const SegmentStore& store, SeriesId id, Timestamp start = INT64_MIN,
                            Timestamp end = INT64_MAX) {
  std::vector<Point> out;
  store.read(id, start, end, out);
  return out;
}

// What a query does with read(): stable sort, the last of equal timestamps wins.
std::vector<Point> resolved(std::vector<Point> pts) {
  std::stable_sort(pts.begin(), pts.end(), [](const Point& a, const Point& b) { return a.ts < b.ts; });
  std::vector<Point> out;
  for (const Point& p : pts) {
    if (!out.empty() && out.back().ts == p.ts)
      out.back() = p;
    else
      out.push_back(p);
  }
  return out;
}

bool same(const std::vector<Point>& a, const std::vector<Point>& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (a[i].ts != b[i].ts || a[i].value != b[i].value) return false;
  return true;
}

SegmentInfo add_one(SegmentStore& store, SeriesId id, const std::string& key, const std::vector<Point>& pts,
                    Lsn lsn = 0) {
  const SeriesPoints sp{id, key, pts};
  return store.add(std::span(&sp, 1), lsn);
}

std::vector<std::string> names_in(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

TEST_SUITE("unit") {
  TEST_CASE("segments: add_streamed encodes series as they come, in ascending id order") {
    TempDir dir;
    auto store = SegmentStore::open(dir.path());
    const auto a = series_points(0, 9999, 1, 1.0);
    const auto b = series_points(5, 50, 5, 2.0);
    std::vector<Point> reused;  // the producer holds one series at a time
    const SegmentInfo info = store->add_streamed(
        [&](const SegmentStore::SeriesEmit& emit) {
          reused = a;
          emit(3, "a", reused);
          reused.clear();
          emit(4, "empty", reused);  // skipped
          reused = b;
          emit(9, "b", reused);
        },
        5);
    CHECK(info.series == 2);
    CHECK(info.points == a.size() + b.size());
    CHECK(store->flushed_lsn() == 5);
    CHECK(same(read_all(*store, 3), a));
    CHECK(same(read_all(*store, 9), b));

    // Out of order: refused, nothing published, no file left behind.
    CHECK_THROWS_AS(store->add_streamed(
                        [&](const SegmentStore::SeriesEmit& emit) {
                          emit(9, "b", b);
                          emit(3, "a", a);
                        },
                        6),
                    std::invalid_argument);
    CHECK(store->segments().size() == 1);
    CHECK(store->flushed_lsn() == 5);
    CHECK(names_in(dir.path()).size() == 3);  // LOCK, MANIFEST, the first segment

    // Nothing emitted: no segment, the flushed lsn moves.
    CHECK(store->add_streamed([](const SegmentStore::SeriesEmit&) {}, 8).number == 0);
    CHECK(store->flushed_lsn() == 8);
    CHECK(store->segments().size() == 1);
  }

  TEST_CASE("segments: add and read and reopen") {
    TempDir dir;
    const auto a = series_points(1000, 500'000, 1000, 1.5);  // 500 points
    const auto b = series_points(-5000, 5000, 1, 2.5);       // 10001 points, 10 blocks
    {
      auto store = SegmentStore::open(dir.path());
      CHECK(store->flushed_lsn() == 0);
      const SeriesPoints sp[] = {{7, "cpu,host=a", a}, {3, "mem", b}};
      const SegmentInfo info = store->add(sp, 42);
      CHECK(info.number == 1);
      CHECK(info.points == a.size() + b.size());
      CHECK(info.series == 2);
      CHECK(info.min_ts == -5000);
      CHECK(info.max_ts == 500'000);
      CHECK(store->flushed_lsn() == 42);
      CHECK(same(read_all(*store, 7), a));
      CHECK(same(read_all(*store, 3), b));
      CHECK(read_all(*store, 99).empty());
    }
    auto store = SegmentStore::open(dir.path());
    CHECK(store->flushed_lsn() == 42);
    CHECK(same(read_all(*store, 7), a));
    CHECK(same(read_all(*store, 3), b));
    REQUIRE(store->segments().size() == 1);
    CHECK(store->segments()[0].bytes == fs::file_size(dir.sub("seg-00000000000000000001.sdb")));
    const SegmentStoreStats st = store->stats();
    CHECK(st.segments == 1);
    CHECK(st.points == a.size() + b.size());
  }

  TEST_CASE("segments: range edges are inclusive also at block boundaries") {
    TempDir dir;
    auto store = SegmentStore::open(dir.path());
    const Timestamp b = segment::max_block_points(kNewestBlockFormat);  // blocks [0, b-1], [b, 2b-1], ...
    const Timestamp last = 4 * b + b / 2;
    const auto pts = series_points(0, last, 1, 0);
    std::vector<Point> with_values;
    for (const Point& p : pts) with_values.push_back({p.ts, static_cast<double>(p.ts) * 0.5});
    add_one(*store, 1, "s", with_values);
    for (auto [start, end] : std::vector<std::pair<Timestamp, Timestamp>>{{0, 0},
                                                                          {b - 1, b},
                                                                          {b, b},
                                                                          {100, 2 * b - 1},
                                                                          {2 * b, last},
                                                                          {last, last},
                                                                          {-10, 5},
                                                                          {last - 9, last + 4000},
                                                                          {last + 1, last + 1000},
                                                                          {-10, -1},
                                                                          {7, 6}}) {
      INFO(start << ".." << end);
      const auto got = read_all(*store, 1, start, end);
      const Timestamp lo = std::max<Timestamp>(start, 0);
      const Timestamp hi = std::min<Timestamp>(end, last);
      CHECK(got.size() == static_cast<std::size_t>(hi >= lo ? hi - lo + 1 : 0));
      if (!got.empty()) {
        CHECK(got.front().ts == lo);
        CHECK(got.back().ts == hi);
        CHECK(got.back().value == static_cast<double>(hi) * 0.5);
      }
    }
  }

  TEST_CASE("segments: many series in several segments and for_each_series names each once") {
    TempDir dir;
    std::mt19937_64 rng(5);
    std::map<SeriesId, std::vector<Point>> expect;
    std::map<SeriesId, std::string> keys;
    {
      auto store = SegmentStore::open(dir.path());
      for (int seg = 0; seg < 3; ++seg) {
        std::vector<std::vector<Point>> pts(500);
        std::vector<std::string> seg_keys(500);
        std::vector<SeriesPoints> sp;
        for (int i = 0; i < 500; ++i) {
          const SeriesId id = rng() % 800 + 1;
          if (std::any_of(sp.begin(), sp.end(), [&](const SeriesPoints& s) { return s.id == id; })) continue;
          seg_keys[i] = "series-" + std::to_string(id);
          const Timestamp base = seg * 100'000;
          for (int k = 0; k < 1 + static_cast<int>(rng() % 50); ++k)
            pts[i].push_back({base + k * 10, static_cast<double>(rng() % 1000)});
          sp.push_back({id, seg_keys[i], pts[i]});
          expect[id].insert(expect[id].end(), pts[i].begin(), pts[i].end());
          keys[id] = seg_keys[i];
        }
        store->add(sp, static_cast<Lsn>(seg + 1));
      }
    }
    auto store = SegmentStore::open(dir.path());
    CHECK(store->segments().size() == 3);
    for (const auto& [id, pts] : expect) CHECK(same(read_all(*store, id), pts));
    std::map<SeriesId, std::string> seen;
    std::size_t calls = 0;
    store->for_each_series([&](SeriesId id, std::string_view key) {
      ++calls;
      seen[id] = std::string(key);
    });
    CHECK(calls == expect.size());
    CHECK(seen == keys);
  }

  TEST_CASE(
      "segments: add rejects unsorted points and duplicate series and an empty add moves only the lsn") {
    TempDir dir;
    auto store = SegmentStore::open(dir.path());
    const std::vector<Point> unsorted{{5, 1}, {3, 1}};
    CHECK_THROWS_AS(add_one(*store, 1, "s", unsorted), std::invalid_argument);
    const std::vector<Point> dup_ts{{5, 1}, {5, 2}};
    CHECK_THROWS_AS(add_one(*store, 1, "s", dup_ts), std::invalid_argument);
    const std::vector<Point> ok{{1, 1}};
    const SeriesPoints twice[] = {{1, "s", ok}, {1, "s", ok}};
    CHECK_THROWS_AS(store->add(twice, 1), std::invalid_argument);
    CHECK(names_in(dir.path()) == std::vector<std::string>{"LOCK", "MANIFEST"});  // no temp file left

    const SegmentInfo info = store->add(std::span<const SeriesPoints>{}, 77);
    CHECK(info.number == 0);
    CHECK(store->flushed_lsn() == 77);
    CHECK(store->segments().empty());
    store->add(std::span<const SeriesPoints>{}, 10);  // never goes back
    CHECK(store->flushed_lsn() == 77);
    store.reset();
    CHECK(SegmentStore::open(dir.path())->flushed_lsn() == 77);
  }

  TEST_CASE("segments: compaction merges small segments and the newest wins on equal ts") {
    TempDir dir;
    auto store = SegmentStore::open(dir.path());
    add_one(*store, 1, "s", series_points(0, 100, 1, 1.0), 1);
    add_one(*store, 1, "s", series_points(50, 150, 1, 2.0), 2);
    add_one(*store, 2, "t", series_points(0, 10, 1, 9.0), 3);
    add_one(*store, 1, "s", series_points(75, 80, 1, 3.0), 4);
    const auto before1 = resolved(read_all(*store, 1));
    const auto before2 = resolved(read_all(*store, 2));
    CHECK(before1.size() == 151);

    CHECK(!store->compact(4 << 20, 5));  // fewer than five small segments
    CHECK(store->compact(4 << 20, 4));
    CHECK(store->stats().compactions == 1);
    REQUIRE(store->segments().size() == 1);
    CHECK(store->segments()[0].number == 5);
    CHECK(store->flushed_lsn() == 4);
    const auto after1 = read_all(*store, 1);
    CHECK(same(after1, before1));  // already resolved: one point per ts
    CHECK(after1[60].value == 2.0);
    CHECK(after1[75].value == 3.0);
    CHECK(after1[81].value == 2.0);
    CHECK(after1[10].value == 1.0);
    CHECK(same(read_all(*store, 2), before2));
    CHECK(names_in(dir.path()) ==
          std::vector<std::string>{"LOCK", "MANIFEST", "seg-00000000000000000005.sdb"});

    store.reset();
    store = SegmentStore::open(dir.path());
    CHECK(same(read_all(*store, 1), before1));
    CHECK(!store->compact(4 << 20, 2, true));  // one segment: nothing to merge
  }

  TEST_CASE("segments: compaction merges only adjacent small segments to keep the age order") {
    TempDir dir;
    auto store = SegmentStore::open(dir.path());
    // A big segment between small ones: merging across it would reorder who wins.
    add_one(*store, 1, "s", series_points(0, 10, 1, 1.0));
    add_one(*store, 1, "s", series_points(0, 20'000, 1, 2.0));  // big
    add_one(*store, 1, "s", series_points(5, 15, 1, 3.0));
    add_one(*store, 1, "s", series_points(8, 9, 1, 4.0));
    add_one(*store, 1, "s", series_points(0, 3, 1, 5.0));
    const auto segs = store->segments();
    REQUIRE(segs.size() == 5);
    const std::uint64_t small = segs[1].bytes;  // everything but the big one is below
    const auto before = resolved(read_all(*store, 1));
    CHECK(store->compact(small, 3));
    const auto after = store->segments();
    REQUIRE(after.size() == 3);
    CHECK(after[0].number == 1);
    CHECK(after[1].number == 2);
    CHECK(after[2].number == 6);
    CHECK(same(resolved(read_all(*store, 1)), before));
    CHECK(before[0].value == 5.0);
    CHECK(before[4].value == 2.0);
    CHECK(before[8].value == 4.0);
    CHECK(before[12].value == 3.0);

    CHECK(store->compact(0, 2, true));  // force: everything
    CHECK(store->segments().size() == 1);
    CHECK(same(read_all(*store, 1), before));
  }

  TEST_CASE("segments: drop_older_than removes segments whose points are all older") {
    TempDir dir;
    auto store = SegmentStore::open(dir.path());
    add_one(*store, 1, "s", series_points(0, 99, 1, 1.0));
    add_one(*store, 1, "s", series_points(100, 199, 1, 1.0));
    add_one(*store, 1, "s", series_points(150, 299, 1, 1.0));
    CHECK(store->drop_older_than(0) == 0);
    CHECK(store->drop_older_than(100) == 1);  // max 99 < 100
    CHECK(store->drop_older_than(199) == 0);  // max 199 is not older
    CHECK(store->drop_older_than(200) == 1);
    CHECK(store->stats().segments_expired == 2);
    CHECK(read_all(*store, 1).front().ts == 150);
    CHECK(names_in(dir.path()) ==
          std::vector<std::string>{"LOCK", "MANIFEST", "seg-00000000000000000003.sdb"});
    store.reset();
    CHECK(SegmentStore::open(dir.path())->segments().size() == 1);
  }

  TEST_CASE("segments: leftover temp files and unlisted segments are removed at open") {
    TempDir dir;
    {
      auto store = SegmentStore::open(dir.path());
      add_one(*store, 1, "s", series_points(0, 9, 1, 1.0));
    }
    std::ofstream(dir.sub("seg-00000000000000000002.sdb.tmp")) << "half written";
    std::ofstream(dir.sub("MANIFEST.tmp")) << "{";
    fs::copy_file(dir.sub("seg-00000000000000000001.sdb"), dir.sub("seg-00000000000000000009.sdb"));
    std::ofstream(dir.sub("notes.txt")) << "not ours";
    auto store = SegmentStore::open(dir.path());
    CHECK(names_in(dir.path()) ==
          std::vector<std::string>{"LOCK", "MANIFEST", "notes.txt", "seg-00000000000000000001.sdb"});
    CHECK(read_all(*store, 1).size() == 10);
  }

  TEST_CASE("segments: a held LOCK makes a second open throw") {
    TempDir dir;
    auto store = SegmentStore::open(dir.path());
    try {
      SegmentStore::open(dir.path());
      FAIL("second open succeeded");
    } catch (const std::runtime_error& e) {
      CHECK(std::string(e.what()) == "data directory " + dir.path() + " is in use by another process");
    }
    store.reset();
    CHECK_NOTHROW(SegmentStore::open(dir.path()));
  }

  TEST_CASE("segments: segment files without a MANIFEST are refused and not deleted") {
    TempDir dir;
    {
      auto store = SegmentStore::open(dir.path());
      add_one(*store, 1, "s", series_points(0, 9, 1, 1.0));
    }
    fs::remove(dir.sub("MANIFEST"));
    CHECK_THROWS_AS(SegmentStore::open(dir.path()), std::runtime_error);
    CHECK(fs::exists(dir.sub("seg-00000000000000000001.sdb")));
  }

  TEST_CASE("segments: corruption is reported naming the file at open or at read") {
    constexpr Timestamp kBlock = segment::max_block_points(kNewestBlockFormat);
    TempDir dir;
    const std::string seg = dir.sub("seg-00000000000000000001.sdb");
    {
      auto store = SegmentStore::open(dir.path());
      add_one(*store, 1, "s", series_points(0, 3 * kBlock - 1, 1, 1.0));
    }
    const auto good = io::read_file(seg);
    auto write = [&](const std::vector<std::byte>& bytes) {
      std::ofstream f(seg, std::ios::binary | std::ios::trunc);
      f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    };
    auto expect_corrupt_at_open = [&](const std::vector<std::byte>& bytes) {
      write(bytes);
      try {
        SegmentStore::open(dir.path());
        FAIL("open succeeded");
      } catch (const SegmentCorruption& e) {
        CHECK(std::string(e.what()).find(seg) != std::string::npos);
      }
    };
    auto flipped = good;
    flipped[good.size() - 70] ^= std::byte{1};  // in the index
    expect_corrupt_at_open(flipped);
    flipped = good;
    flipped[good.size() - 20] ^= std::byte{1};  // in the footer
    expect_corrupt_at_open(flipped);
    expect_corrupt_at_open(std::vector<std::byte>(good.begin(), good.end() - 1));  // truncated
    expect_corrupt_at_open(std::vector<std::byte>(good.begin(), good.begin() + 10));

    flipped = good;
    flipped[segment::kHeaderBytes + 4] ^= std::byte{1};  // in the first block: found when read
    write(flipped);
    auto store = SegmentStore::open(dir.path());
    CHECK_THROWS_AS(read_all(*store, 1, 0, 10), SegmentCorruption);
    CHECK(read_all(*store, 1, 2 * kBlock, 3 * kBlock - 1).size() == static_cast<std::size_t>(kBlock));
  }

  TEST_CASE("segments: the parser rejects random bytes without crashing") {
    std::mt19937_64 rng(3);
    for (int round = 0; round < 500; ++round) {
      std::vector<std::byte> bytes(rng() % 300);
      for (auto& b : bytes) b = static_cast<std::byte>(rng());
      CHECK_THROWS_AS(segment::parse(bytes, "random"), SegmentCorruption);
    }
  }
}

TEST_SUITE("concurrency") {
  TEST_CASE("segments: a reader keeps reading while another thread adds and compacts and drops") {
    TempDir dir;
    auto store = SegmentStore::open(dir.path());
    // Segment k holds series 1 over [k*100, k*100 + 99], value = ts. Retention removes a
    // prefix, compaction merges neighbours: every read sees one contiguous run [lo, hi] with
    // hi at least what was published before the read began.
    std::atomic<Timestamp> published_hi{-1};
    std::atomic<bool> done{false};
    std::atomic<int> bad{0};
    std::atomic<std::uint64_t> reads{0};
    std::thread reader([&] {
      while (!done.load()) {
        const Timestamp floor_hi = published_hi.load();
        const auto pts = resolved(read_all(*store, 1));
        reads.fetch_add(1);
        if (floor_hi < 0) continue;
        if (pts.empty() || pts.back().ts < floor_hi) {
          bad.fetch_add(1);
          continue;
        }
        for (std::size_t i = 0; i < pts.size(); ++i) {
          if (pts[i].value != static_cast<double>(pts[i].ts) || (i > 0 && pts[i].ts != pts[i - 1].ts + 1)) {
            bad.fetch_add(1);
            break;
          }
        }
        std::size_t series = 0;
        store->for_each_series([&](SeriesId, std::string_view) { ++series; });
        if (series != 1) bad.fetch_add(1);
      }
    });
    std::uint64_t fresh_bytes = 0;  // merged segments are bigger, so only fresh ones merge
    for (Timestamp k = 0; k < 120; ++k) {
      std::vector<Point> pts;
      for (Timestamp ts = k * 100; ts < k * 100 + 100; ++ts) pts.push_back({ts, static_cast<double>(ts)});
      const SegmentInfo info = add_one(*store, 1, "s", pts, static_cast<Lsn>(k + 1));
      fresh_bytes = std::max(fresh_bytes, info.bytes);
      published_hi.store(k * 100 + 99);
      if (k % 5 == 4) store->compact(fresh_bytes + 1, 3);
      if (k % 7 == 6) store->drop_older_than((k - 20) * 100);
    }
    done.store(true);
    reader.join();
    CHECK(bad.load() == 0);
    CHECK(reads.load() > 0);
    CHECK(store->stats().compactions > 0);
    CHECK(store->stats().segments_expired > 0);
  }
}

}  // namespace
}  // namespace sydra::storage
