// Series identity: canonical keys and their XXH3-64 ids (server/storage/series_key.hpp).
#include "server/storage/series_key.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <string>
#include <vector>

namespace sydra::storage {
namespace {

using namespace std::string_view_literals;

std::string key_of(std::string_view name, std::vector<TagView> tags) {
  std::sort(tags.begin(), tags.end());
  std::string out;
  append_canonical_key(out, name, tags);
  return out;
}

TEST_SUITE("unit") {
  TEST_CASE("canonical key: name alone without tags, NUL-separated sorted pairs with them") {
    CHECK(key_of("cpu.load", {}) == "cpu.load");
    CHECK(key_of("cpu.load", {{"host", "h17"}, {"dc", "eu"}}) == "cpu.load\0dc\0eu\0host\0h17"sv);
  }

  TEST_CASE("append_canonical_key appends to what is already there") {
    std::string out = "prefix|";
    const TagView tags[] = {{"a", "1"}};
    append_canonical_key(out, "m", tags);
    CHECK(out == "prefix|m\0a\0001"sv);
  }

  TEST_CASE("series id is XXH3-64 of the canonical key, pinned values") {
    // Computed once with libxxhash (XXH3_64bits, seed 0); a change here changes every id
    // already stored on disk.
    CHECK(series_id(""sv) == 3244421341483603138ULL);  // XXH3's published empty-input value
    CHECK(series_id("cpu.load"sv) == 2942156160661841750ULL);
    CHECK(series_id("cpu.load\0dc\0eu\0host\0h17"sv) == 14313608873894986226ULL);
  }

  TEST_CASE("series id does not depend on the order the tags came in") {
    const std::string a = key_of("cpu", {{"host", "h1"}, {"dc", "eu"}, {"rack", "7"}});
    const std::string b = key_of("cpu", {{"rack", "7"}, {"host", "h1"}, {"dc", "eu"}});
    const std::string c = key_of("cpu", {{"dc", "eu"}, {"rack", "7"}, {"host", "h1"}});
    CHECK(a == b);
    CHECK(b == c);
    CHECK(series_id(a) == series_id(c));
  }

  TEST_CASE("different names, tag keys or tag values give different ids") {
    const SeriesId base = series_id(key_of("cpu", {{"host", "h1"}}));
    CHECK(series_id(key_of("cpu2", {{"host", "h1"}})) != base);
    CHECK(series_id(key_of("cpu", {{"hosts", "h1"}})) != base);
    CHECK(series_id(key_of("cpu", {{"host", "h2"}})) != base);
    CHECK(series_id(key_of("cpu", {})) != base);
    // The separators keep "a"+"bc" apart from "ab"+"c".
    CHECK(key_of("m", {{"a", "bc"}}) != key_of("m", {{"ab", "c"}}));
  }

  TEST_CASE("split_canonical_key gives back name and tags in key order") {
    const std::string key = key_of("disk.used", {{"mount", "/var"}, {"host", "db-1"}, {"empty", ""}});
    const SeriesKeyView view = split_canonical_key(key);
    CHECK(view.name == "disk.used");
    REQUIRE(view.tags.size() == 3);
    CHECK(view.tags[0] == TagView{"empty", ""});
    CHECK(view.tags[1] == TagView{"host", "db-1"});
    CHECK(view.tags[2] == TagView{"mount", "/var"});

    const SeriesKeyView bare = split_canonical_key("just.a.name");
    CHECK(bare.name == "just.a.name");
    CHECK(bare.tags.empty());
  }

  TEST_CASE("split_canonical_key on a key this module did not write does not read past it") {
    const SeriesKeyView view = split_canonical_key("m\0k"sv);  // a key without its value
    CHECK(view.name == "m");
    REQUIRE(view.tags.size() == 1);
    CHECK(view.tags[0].first == "k");
    CHECK(view.tags[0].second.empty());
  }
}

}  // namespace
}  // namespace sydra::storage
