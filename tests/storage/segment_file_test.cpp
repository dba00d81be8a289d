// Tests server/storage/segment_file.hpp: both format versions written and read back bit for
// bit, blocks cut at each version's length, unknown versions refused by name, and a
// version-1 data directory written by an older sydradb (a committed fixture) read as it is
// and upgraded by a forced compaction.
#include "server/storage/segment_file.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <bit>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "server/storage/file_io.hpp"
#include "server/storage/segment_store.hpp"
#include "support/temp_dir.hpp"

namespace sydra::storage {
namespace {

namespace fs = std::filesystem;

struct TempDir : test::TempDir {
  TempDir() : test::TempDir("sydra-segfile-test") {}
};

bool same_bits(const std::vector<Point>& a, const std::vector<Point>& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (a[i].ts != b[i].ts ||
        std::bit_cast<std::uint64_t>(a[i].value) != std::bit_cast<std::uint64_t>(b[i].value))
      return false;
  return true;
}

BlockFormat format_of(const std::string& path) {
  const auto bytes = io::read_file(path);
  return segment::parse(bytes, path).format;
}

// The version-1 fixture: written by sydradb e94e071 (the last build with version-1 segments)
// from one ingest request, flushed by its background flush:
//   fixture.gauge{host="a"}  ts 1700000000000 + 10000 i, value 0.25 i - 3, i < 1500 (two blocks)
//   fixture.special          the values and timestamps of kSpecials below
const char* const kSpecialTexts[] = {"-0.0", "0.30000000000000004", "1e300",           "5e-324",
                                     "-1.5", "123456789.123456789", "9007199254740993"};
const Timestamp kSpecialTs[] = {-5000, 0, 7, 1000, 1001, 99999999999, 4102444800000};

std::vector<Point> fixture_gauge() {
  std::vector<Point> pts;
  for (int i = 0; i < 1500; ++i) pts.push_back({1'700'000'000'000 + i * 10'000LL, i * 0.25 - 3});
  return pts;
}

std::vector<Point> fixture_special() {
  std::vector<Point> pts;
  for (std::size_t i = 0; i < std::size(kSpecialTexts); ++i)
    pts.push_back(
        {kSpecialTs[i], std::strtod(kSpecialTexts[i], nullptr)});  // what the ingest parser made of them
  return pts;
}

std::map<std::string, SeriesId> ids_by_key(const SegmentStore& store) {
  std::map<std::string, SeriesId> ids;
  store.for_each_series([&](SeriesId id, std::string_view key) { ids.emplace(std::string(key), id); });
  return ids;
}

std::vector<Point> read_all(const SegmentStore& store, SeriesId id) {
  std::vector<Point> out;
  store.read(id, INT64_MIN, INT64_MAX, out);
  return out;
}

TEST_SUITE("unit") {
  TEST_CASE(
      "segment file: both versions write and read random series bit for bit, in blocks of their length") {
    std::mt19937_64 rng(1312);
    for (BlockFormat format : {BlockFormat::kGorilla, BlockFormat::kColumnar}) {
      TempDir dir;
      std::vector<std::vector<Point>> series(5);
      for (std::size_t s = 0; s < series.size(); ++s) {
        const std::size_t n = 1 + rng() % 9000;
        Timestamp ts = static_cast<Timestamp>(rng() % 1'000'000'000'000);
        for (std::size_t i = 0; i < n; ++i) {
          ts += 1 + static_cast<Timestamp>(rng() % 20'000);
          const double v =
              rng() % 3 == 0 ? std::bit_cast<double>(rng()) : static_cast<double>(rng() % 10'000) / 100;
          series[s].push_back({ts, v});
        }
      }
      std::string path;
      {
        segment::Writer w(dir.path(), 7, format);
        for (std::size_t s = 0; s < series.size(); ++s) {
          std::string key(1, 's');
          key.append(std::to_string(s));
          w.add_series(100 + s, key, series[s]);
        }
        path = w.finish();
      }
      const auto file = segment::File::open(path, 7);
      CHECK(file->index().format == format);
      for (const segment::BlockRef& b : file->index().blocks)
        CHECK(b.points <= segment::max_block_points(format));
      for (std::size_t s = 0; s < series.size(); ++s) {
        const segment::SeriesRef* ref = file->find(100 + s);
        REQUIRE(ref != nullptr);
        CHECK(ref->block_count ==
              (series[s].size() + segment::max_block_points(format) - 1) / segment::max_block_points(format));
        std::vector<Point> out;
        file->read(*ref, INT64_MIN, INT64_MAX, out);
        CHECK(same_bits(out, series[s]));
      }
    }
  }

  TEST_CASE("segment file: a version this build does not read is refused, naming the versions it reads") {
    TempDir dir;
    std::string path;
    {
      segment::Writer w(dir.path(), 1);
      const std::vector<Point> pts{{1, 1.0}, {2, 2.0}};
      w.add_series(1, "s", pts);
      path = w.finish();
    }
    auto bytes = io::read_file(path);
    for (std::uint32_t version : {0u, 3u, 0xffffffffu}) {
      for (int i = 0; i < 4; ++i) bytes[8 + i] = static_cast<std::byte>(version >> (8 * i));
      try {
        segment::parse(bytes, path);
        FAIL("parsed version " << version);
      } catch (const SegmentCorruption& e) {
        const std::string what = e.what();
        std::string expected("unsupported version ");
        expected.append(std::to_string(version));
        CHECK(what.find(expected) != std::string::npos);
        CHECK(what.find("versions 1 to 2") != std::string::npos);
      }
    }
  }

  TEST_CASE("segment file: a version-1 block longer than 1024 points is corruption") {
    TempDir dir;
    std::vector<Point> pts;
    for (int i = 0; i < 2000; ++i) pts.push_back({i, 1.0});
    std::string path;
    {
      segment::Writer w(dir.path(), 1, BlockFormat::kColumnar);  // one 2000-point block
      w.add_series(1, "s", pts);
      path = w.finish();
    }
    auto bytes = io::read_file(path);
    CHECK(segment::parse(bytes, path).blocks.size() == 1);
    bytes[8] = std::byte{1};  // claim version 1: the header is not CRC-protected, the limit is
    CHECK_THROWS_AS(segment::parse(bytes, path), SegmentCorruption);
  }

  TEST_CASE(
      "segment file: the version-1 fixture of sydradb e94e071 reads back and sydradb compact upgrades it") {
    TempDir dir;
    const fs::path fixture = fs::path(SYDRA_SOURCE_DIR) / "tests/storage/fixtures/segments-v1";
    for (const char* name : {"MANIFEST", "seg-00000000000000000001.sdb"})
      fs::copy_file(fixture / name, fs::path(dir.path()) / name);
    const std::string old_file = dir.sub("seg-00000000000000000001.sdb");
    CHECK(format_of(old_file) == BlockFormat::kGorilla);

    auto store = SegmentStore::open(dir.path());
    const auto ids = ids_by_key(*store);
    const std::string gauge_key("fixture.gauge\0host\0a", 20);  // canonical keys (series_key.hpp)
    REQUIRE(ids.size() == 2);
    REQUIRE(ids.contains(gauge_key));
    REQUIRE(ids.contains("fixture.special"));
    const SeriesId gauge = ids.at(gauge_key);
    const SeriesId special = ids.at("fixture.special");
    CHECK(same_bits(read_all(*store, gauge), fixture_gauge()));
    CHECK(same_bits(read_all(*store, special), fixture_special()));

    // A forced compaction of the lone version-1 segment rewrites it in version 2; a second
    // one has nothing to do.
    CHECK(store->compact(0, 2, /*force=*/true));
    CHECK_FALSE(store->compact(0, 2, /*force=*/true));
    CHECK_FALSE(fs::exists(old_file));
    REQUIRE(store->segments().size() == 1);
    const std::string new_file = dir.sub(segment::file_name(store->segments()[0].number));
    CHECK(format_of(new_file) == BlockFormat::kColumnar);
    CHECK(same_bits(read_all(*store, gauge), fixture_gauge()));
    CHECK(same_bits(read_all(*store, special), fixture_special()));

    store.reset();
    store = SegmentStore::open(dir.path());
    CHECK(ids_by_key(*store) == ids);
    CHECK(same_bits(read_all(*store, gauge), fixture_gauge()));
    CHECK(same_bits(read_all(*store, special), fixture_special()));
  }

  TEST_CASE("segment file: version-1 and version-2 segments merge into version 2, the newest point winning") {
    TempDir dir;
    const fs::path fixture = fs::path(SYDRA_SOURCE_DIR) / "tests/storage/fixtures/segments-v1";
    for (const char* name : {"MANIFEST", "seg-00000000000000000001.sdb"})
      fs::copy_file(fixture / name, fs::path(dir.path()) / name);
    auto store = SegmentStore::open(dir.path());
    const SeriesId gauge = ids_by_key(*store).at(std::string("fixture.gauge\0host\0a", 20));
    // A newer segment rewrites the gauge's points 1000..1099 and adds 100 after the end.
    std::vector<Point> newer;
    for (int i = 1000; i < 1600; i += i < 1100 ? 1 : 500)
      newer.push_back({1'700'000'000'000 + i * 10'000LL, -1.0 * i});
    for (int i = 1500; i < 1600; ++i) newer.push_back({1'700'000'000'000 + i * 10'000LL, 0.5 * i});
    std::sort(newer.begin(), newer.end(), [](const Point& a, const Point& b) { return a.ts < b.ts; });
    newer.erase(
        std::unique(newer.begin(), newer.end(), [](const Point& a, const Point& b) { return a.ts == b.ts; }),
        newer.end());
    const std::string key("fixture.gauge\0host\0a", 20);
    const SeriesPoints sp{gauge, key, newer};
    store->add(std::span(&sp, 1), 0);
    CHECK(store->compact(0, 2, /*force=*/true));
    REQUIRE(store->segments().size() == 1);
    CHECK(format_of(dir.sub(segment::file_name(store->segments()[0].number))) == BlockFormat::kColumnar);

    std::map<Timestamp, double> want;
    for (const Point& p : fixture_gauge()) want[p.ts] = p.value;
    for (const Point& p : newer) want[p.ts] = p.value;
    std::vector<Point> expected;
    for (const auto& [ts, v] : want) expected.push_back({ts, v});
    CHECK(same_bits(read_all(*store, gauge), expected));
  }
}

}  // namespace
}  // namespace sydra::storage
