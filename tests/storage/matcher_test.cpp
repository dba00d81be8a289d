// Label matchers (server/storage/matcher.hpp): the four operators, Prometheus' absence
// semantics, full anchoring, literal and match-all regexes, value bounds, and matches_all
// over a series' labels.
#include "server/storage/matcher.hpp"

#include <doctest/doctest.h>

#include <string>
#include <utility>
#include <vector>

namespace sydra::storage {
namespace {

using Tags = std::vector<std::pair<std::string_view, std::string_view>>;

TEST_SUITE("unit") {
  TEST_CASE("matcher: = and != compare whole values, absence is the empty value") {
    const Matcher eq("host", MatchOp::equal, "h1");
    CHECK(eq.matches("h1"));
    CHECK_FALSE(eq.matches("h10"));
    CHECK_FALSE(eq.matches(""));
    CHECK_FALSE(eq.matches_empty());

    const Matcher ne("host", MatchOp::not_equal, "h1");
    CHECK_FALSE(ne.matches("h1"));
    CHECK(ne.matches("h2"));
    CHECK(ne.matches(""));  // a series without host is not h1
    CHECK(ne.matches_empty());

    const Matcher absent("dc", MatchOp::equal, "");
    CHECK(absent.matches(""));
    CHECK_FALSE(absent.matches("eu"));
    const Matcher present("dc", MatchOp::not_equal, "");
    CHECK_FALSE(present.matches(""));
    CHECK(present.matches("eu"));
  }

  TEST_CASE("matcher: regexes are RE2, fully anchored, and . matches a newline") {
    const Matcher re("host", MatchOp::regex, "h1.*");
    CHECK(re.matches("h1"));
    CHECK(re.matches("h12"));
    CHECK_FALSE(re.matches("xh12"));  // anchored at the start
    CHECK_FALSE(re.matches(""));
    const Matcher mid("host", MatchOp::regex, "h1|h2");
    CHECK(mid.matches("h2"));
    CHECK_FALSE(mid.matches("h12"));  // anchored at the end, around the alternation
    CHECK(Matcher("v", MatchOp::regex, "a.b").matches("a\nb"));

    const Matcher nre("host", MatchOp::not_regex, "h1.*");
    CHECK_FALSE(nre.matches("h12"));
    CHECK(nre.matches("x"));
    CHECK(nre.matches(""));
    CHECK(nre.matches_empty());

    // A regex that matches "" also selects series without the label.
    const Matcher optional("dc", MatchOp::regex, "eu|");
    CHECK(optional.matches_empty());
    CHECK(optional.matches("eu"));
    CHECK_FALSE(optional.matches("us"));
  }

  TEST_CASE("matcher: a literal regex is a comparison, .* matches everything") {
    const Matcher literal("host", MatchOp::regex, "h_1");
    CHECK(literal.matches("h_1"));
    CHECK_FALSE(literal.matches("h_10"));
    std::string min, max;
    REQUIRE(literal.value_bounds(min, max));
    CHECK(min == "h_1");
    CHECK(max == "h_1");

    const Matcher all("host", MatchOp::regex, ".*");
    CHECK(all.matches_everything());
    CHECK(all.matches(""));
    CHECK(all.matches("anything\nat all"));
    CHECK_FALSE(Matcher("host", MatchOp::regex, ".+").matches_everything());
    CHECK_FALSE(Matcher("host", MatchOp::not_regex, ".*").matches_everything());
    CHECK_FALSE(Matcher("host", MatchOp::not_regex, ".*").matches("x"));
  }

  TEST_CASE("matcher: value bounds come from a regex's literal prefix and hold every match") {
    const Matcher re("host", MatchOp::regex, "web-(a|b)[0-9]+");
    std::string min, max;
    REQUIRE(re.value_bounds(min, max));
    CHECK(min <= "web-a1");
    CHECK("web-b99" <= max);
    CHECK(min.rfind("web-", 0) == 0);
    CHECK(max.rfind("web-", 0) == 0);
    CHECK_FALSE(Matcher("host", MatchOp::not_regex, "web.*").value_bounds(min, max));
    CHECK_FALSE(Matcher("host", MatchOp::equal, "web").value_bounds(min, max));
  }

  TEST_CASE("matcher: an invalid regex throws InvalidMatcher with RE2's reason") {
    CHECK_THROWS_AS(Matcher("host", MatchOp::regex, "h1("), InvalidMatcher);
    CHECK_THROWS_AS(Matcher("host", MatchOp::not_regex, "[z-a]"), InvalidMatcher);
    try {
      Matcher("host", MatchOp::regex, "(");
      FAIL("no throw");
    } catch (const InvalidMatcher& e) {
      CHECK(std::string(e.what()) == "missing ): (");
    }
    // A value cannot close the anchoring group and match unanchored.
    CHECK_THROWS_AS(Matcher("host", MatchOp::regex, "a)|(b"), InvalidMatcher);
    // Equality takes any string, regex metacharacters included.
    CHECK(Matcher("host", MatchOp::equal, "h1(").matches("h1("));
  }

  TEST_CASE("matches_all: the name is __name__, tags by key, every matcher must hold") {
    const Tags tags = {{"dc", "eu"}, {"host", "h1"}};
    const SeriesLabels series{"cpu.load", tags};
    CHECK(series.value("__name__") == "cpu.load");
    CHECK(series.value("host") == "h1");
    CHECK(series.value("rack").empty());

    const std::vector<Matcher> yes = {Matcher("__name__", MatchOp::regex, "cpu\\..*"),
                                      Matcher("host", MatchOp::not_equal, "h2"),
                                      Matcher("rack", MatchOp::equal, "")};
    CHECK(matches_all(yes, series));
    const std::vector<Matcher> no = {Matcher("__name__", MatchOp::equal, "cpu.load"),
                                     Matcher("dc", MatchOp::not_regex, "e.")};
    CHECK_FALSE(matches_all(no, series));
    CHECK(matches_all({}, series));
    CHECK(to_string(MatchOp::not_regex) == "!~");
  }
}

}  // namespace
}  // namespace sydra::storage
