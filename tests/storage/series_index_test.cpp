// The series catalog and tag index (server/storage/series_index.hpp): select with every
// operator and absence, against matches_all over every series (random matchers); limits;
// find/list/label values; and adds racing selects (suite `concurrency`).
#include "server/storage/series_index.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "server/storage/selector.hpp"
#include "server/storage/series_key.hpp"

namespace sydra::storage {
namespace {

struct TestSeries {
  std::string key;
  SeriesId id;
};

TestSeries make_series(std::string_view name, std::vector<TagView> tags) {
  std::sort(tags.begin(), tags.end());
  TestSeries s;
  append_canonical_key(s.key, name, tags);
  s.id = series_id(s.key);
  return s;
}

// The canonical keys select() answers for a selector, in its order.
std::vector<std::string> keys(const SeriesIndex& index, std::string_view selector) {
  std::vector<SelectedSeries> out;
  REQUIRE(index.select(parse_selector(selector), SIZE_MAX, out) == SeriesIndex::SelectStatus::ok);
  std::vector<std::string> k;
  for (const SelectedSeries& s : out) k.push_back(s.key);
  return k;
}

// What matches_all says, over every series, sorted by key.
std::vector<std::string> brute_force(const std::vector<TestSeries>& all, std::span<const Matcher> matchers) {
  std::vector<std::string> out;
  for (const TestSeries& s : all) {
    const SeriesKeyView view = split_canonical_key(s.key);
    if (matches_all(matchers, SeriesLabels{view.name, view.tags})) out.push_back(s.key);
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::string k(std::string_view name, std::vector<TagView> tags) {
  return make_series(name, std::move(tags)).key;
}

TEST_SUITE("unit") {
  TEST_CASE("series index: select with =, !=, =~, !~ and absence, sorted by key") {
    SeriesIndex index;
    std::vector<TestSeries> all = {make_series("cpu", {{"host", "h1"}, {"dc", "eu"}}),
                                   make_series("cpu", {{"host", "h2"}, {"dc", "us"}}),
                                   make_series("cpu", {{"host", "h10"}}),
                                   make_series("mem", {{"host", "h1"}, {"dc", "eu"}}),
                                   make_series("cpu.idle", {{"host", "h1"}}),
                                   make_series("disk", {})};
    for (const TestSeries& s : all) CHECK(index.add(s.id, s.key));
    CHECK_FALSE(index.add(all[0].id, all[0].key));
    CHECK(index.size() == all.size());

    // Sorted by canonical key: cpu\0dc\0eu.. < cpu\0dc\0us.. < cpu\0host..
    CHECK(keys(index, "cpu") == std::vector<std::string>{k("cpu", {{"host", "h1"}, {"dc", "eu"}}),
                                                         k("cpu", {{"host", "h2"}, {"dc", "us"}}),
                                                         k("cpu", {{"host", "h10"}})});
    CHECK(keys(index, R"(cpu{host="h1"})") ==
          std::vector<std::string>{k("cpu", {{"host", "h1"}, {"dc", "eu"}})});
    CHECK(keys(index, R"(cpu{dc!="eu"})") ==
          std::vector<std::string>{k("cpu", {{"host", "h2"}, {"dc", "us"}}), k("cpu", {{"host", "h10"}})});
    CHECK(keys(index, R"(cpu{dc=""})") == std::vector<std::string>{k("cpu", {{"host", "h10"}})});
    CHECK(keys(index, R"({dc!=""})").size() == 3);
    CHECK(keys(index, R"({host=~"h1.*"})").size() == 4);  // cpu h1, cpu h10, mem h1, cpu.idle h1
    CHECK(keys(index, R"({__name__=~"cpu.*", host!~"h1"})") ==
          std::vector<std::string>{k("cpu", {{"host", "h2"}, {"dc", "us"}}), k("cpu", {{"host", "h10"}})});
    CHECK(keys(index, R"({__name__=~"cpu\\..*"})") ==
          std::vector<std::string>{k("cpu.idle", {{"host", "h1"}})});
    CHECK(keys(index, R"(cpu{dc=~"eu|"})") ==
          std::vector<std::string>{k("cpu", {{"host", "h1"}, {"dc", "eu"}}), k("cpu", {{"host", "h10"}})});
    CHECK(keys(index, R"(disk)") == std::vector<std::string>{"disk"});
    CHECK(keys(index, R"(nosuch)").empty());
    CHECK(keys(index, R"(cpu{rack="7"})").empty());
    CHECK(keys(index, R"(cpu{host=~".*"})").size() == 3);
  }

  TEST_CASE("series index: more series than the limit answers too_many with the count") {
    SeriesIndex index;
    for (int i = 0; i < 10; ++i) {
      const TestSeries s = make_series("m", {{"i", std::to_string(i)}});
      index.add(s.id, s.key);
    }
    std::vector<SelectedSeries> out;
    std::size_t matched = 0;
    CHECK(index.select(parse_selector("m"), 9, out, &matched) == SeriesIndex::SelectStatus::too_many);
    CHECK(matched == 10);
    CHECK(out.empty());
    CHECK(index.select(parse_selector("m"), 10, out, &matched) == SeriesIndex::SelectStatus::ok);
    CHECK(out.size() == 10);
    CHECK(index.select(parse_selector(R"(m{i=~"[0-4]"})"), 5, out, &matched) ==
          SeriesIndex::SelectStatus::ok);
    CHECK(matched == 5);
  }

  TEST_CASE("series index: random matchers agree with matches_all over every series") {
    SeriesIndex index;
    std::vector<TestSeries> all;
    std::mt19937 rng(42);
    const std::vector<std::string> names = {"cpu", "cpu.idle", "mem", "net_rx", "disk"};
    const std::vector<std::string> hosts = {"h1", "h2", "h10", "h11", "web-1", "web-2", "db"};
    const std::vector<std::string> dcs = {"eu", "us", "ap", ""};
    for (const auto& n : names)
      for (const auto& h : hosts)
        for (const auto& d : dcs) {
          std::vector<TagView> tags = {{"host", h}};
          if (!d.empty()) tags.emplace_back("dc", d);
          const std::string rack = std::to_string(rng() % 4);  // outlives the views in `tags`
          if (rng() % 3 == 0) tags.emplace_back("rack", rack);
          all.push_back(make_series(n, tags));
          index.add(all.back().id, all.back().key);
        }
    const std::vector<std::string> labels = {"__name__", "host", "dc", "rack", "missing"};
    const std::vector<std::string> values = {"cpu", "h1", "eu", "", "1", "web-1", "zzz"};
    const std::vector<std::string> regexes = {"h1.*", "web-[12]", "cpu.*", ".*", ".+", "eu|us",
                                              "e.|",  "h1|db",    "[0-2]", "",   "x?", "cpu\\.idle"};
    for (int round = 0; round < 600; ++round) {
      std::vector<Matcher> ms;
      const int n = 1 + static_cast<int>(rng() % 3);
      for (int i = 0; i < n; ++i) {
        const auto op = static_cast<MatchOp>(rng() % 4);
        const std::string& label = labels[rng() % labels.size()];
        const bool re = op == MatchOp::regex || op == MatchOp::not_regex;
        ms.emplace_back(label, op, re ? regexes[rng() % regexes.size()] : values[rng() % values.size()]);
      }
      std::vector<SelectedSeries> out;
      REQUIRE(index.select(ms, SIZE_MAX, out) == SeriesIndex::SelectStatus::ok);
      std::vector<std::string> got;
      for (const SelectedSeries& s : out) got.push_back(s.key);
      std::string what;
      for (const Matcher& m : ms) what += format_matcher(m) + " ";
      INFO("matchers: ", what);
      CHECK(got == brute_force(all, ms));
    }
  }

  TEST_CASE("series index: find by tag pairs, the list, label names and values") {
    SeriesIndex index;
    const TestSeries a = make_series("cpu", {{"host", "a"}, {"dc", "x"}});
    const TestSeries b = make_series("cpu", {{"host", "b"}, {"dc", "x"}});
    const TestSeries e = make_series("cpu", {{"host", ""}});
    for (const TestSeries& s : {a, b, e}) index.add(s.id, s.key);
    using Tags = std::vector<std::pair<std::string, std::string>>;
    auto sorted = [](std::vector<SeriesId> v) {
      std::sort(v.begin(), v.end());
      return v;
    };
    CHECK(index.find(Tags{{"dc", "x"}}, false) == sorted({a.id, b.id}));
    CHECK(index.find(Tags{{"dc", "x"}, {"host", "a"}}, false) == sorted({a.id}));
    CHECK(index.find(Tags{{"host", "a"}, {"host", "b"}}, true) == sorted({a.id, b.id}));
    CHECK(index.find(Tags{{"host", ""}}, false) == sorted({e.id}));  // has the pair, not "lacks host"
    CHECK(index.find(Tags{}, false) == sorted({a.id, b.id, e.id}));
    CHECK(index.find(Tags{}, true).empty());
    CHECK(index.label_names() == std::vector<std::string>{"__name__", "dc", "host"});
    CHECK(index.label_values("host") == std::vector<std::string>{"", "a", "b"});
    CHECK(index.label_values("nope").empty());
    const auto list = index.list();
    REQUIRE(list.size() == 3);
    CHECK(list[0].name == "cpu");
    CHECK(list[0].tags == std::vector<std::pair<std::string, std::string>>{{"dc", "x"}, {"host", "a"}});
    CHECK(list[2].tags == std::vector<std::pair<std::string, std::string>>{{"host", ""}});
  }
}

TEST_SUITE("concurrency") {
  // Writers add series (host i, some in dc eu) while readers select: every answer holds only
  // matching series, sorted, each once, and never fewer than a previous answer of the same
  // reader (series are never removed). At the end the index answers exactly.
  TEST_CASE("series index: adds racing selects") {
    SeriesIndex index;
    constexpr int kWriters = 3;
    constexpr int kPerWriter = 2000;
    std::atomic<bool> done{false};
    std::atomic<int> bad_match{0}, bad_order{0}, shrank{0};
    std::vector<std::thread> threads;
    for (int w = 0; w < kWriters; ++w) {
      threads.emplace_back([&, w] {
        for (int i = 0; i < kPerWriter; ++i) {
          const int n = w * kPerWriter + i;
          std::vector<TagView> tags;
          std::string host("h");
          host += std::to_string(n);
          tags.emplace_back("host", host);
          if (n % 2 == 0) tags.emplace_back("dc", "eu");
          const TestSeries s = make_series(n % 3 == 0 ? "cpu" : "mem", tags);
          index.add(s.id, s.key);
        }
      });
    }
    std::vector<std::thread> readers;
    for (int r = 0; r < 2; ++r) {
      readers.emplace_back([&, r] {
        const auto ms = parse_selector(r == 0 ? R"(cpu{dc="eu"})" : R"({host=~"h1.*", dc!="eu"})");
        std::size_t last = 0;
        while (!done.load()) {
          std::vector<SelectedSeries> out;
          index.select(ms, SIZE_MAX, out);
          for (std::size_t i = 0; i < out.size(); ++i) {
            const SeriesKeyView view = split_canonical_key(out[i].key);
            if (!matches_all(ms, SeriesLabels{view.name, view.tags})) bad_match.fetch_add(1);
            if (i > 0 && !(out[i - 1].key < out[i].key)) bad_order.fetch_add(1);
          }
          if (out.size() < last) shrank.fetch_add(1);
          last = out.size();
        }
      });
    }
    for (auto& t : threads) t.join();
    done.store(true);
    for (auto& t : readers) t.join();
    CHECK(bad_match.load() == 0);
    CHECK(bad_order.load() == 0);
    CHECK(shrank.load() == 0);
    CHECK(index.size() == kWriters * kPerWriter);
    // n % 3 == 0 and n even: n % 6 == 0.
    CHECK(keys(index, R"(cpu{dc="eu"})").size() == (kWriters * kPerWriter + 5) / 6);
  }
}

}  // namespace
}  // namespace sydra::storage
