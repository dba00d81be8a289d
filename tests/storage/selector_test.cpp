// The selector parser (server/storage/selector.hpp): Prometheus syntax, the project's dotted
// names, quoted names, PromQL string escapes, errors that name the position, and
// format_series / quote_string round trips.
#include "server/storage/selector.hpp"

#include <doctest/doctest.h>

#include <string>
#include <utility>
#include <vector>

namespace sydra::storage {
namespace {

using namespace std::string_view_literals;

std::string show(const std::vector<Matcher>& matchers) {
  std::string out;
  for (const Matcher& m : matchers) {
    if (!out.empty()) out += ' ';
    out += format_matcher(m);
  }
  return out;
}

// The error message of parse_selector(text), "" when it parses.
std::string error_of(std::string_view text) {
  try {
    parse_selector(text);
  } catch (const SelectorError& e) {
    return e.what();
  }
  return "";
}

TEST_SUITE("unit") {
  TEST_CASE("selector: a name, a name with matchers, matchers alone") {
    CHECK(show(parse_selector("cpu_usage")) == R"(__name__="cpu_usage")");
    CHECK(show(parse_selector(R"(cpu_usage{host=~"h1.*",dc!="x"})")) ==
          R"(__name__="cpu_usage" host=~"h1.*" dc!="x")");
    CHECK(show(parse_selector(R"({__name__=~"cpu.*"})")) == R"(__name__=~"cpu.*")");
    CHECK(show(parse_selector(R"(  m { a = "1" , b !~ "2" , } )")) == R"(__name__="m" a="1" b!~"2")");
    CHECK(show(parse_selector("m{}")) == R"(__name__="m")");
    const auto ms = parse_selector(R"(m{a=~"x|y"})");
    REQUIRE(ms.size() == 2);
    CHECK(ms[1].label() == "a");
    CHECK(ms[1].op() == MatchOp::regex);
    CHECK(ms[1].value() == "x|y");
  }

  TEST_CASE("selector: dotted and colon metric names, dotted label names, quoted names") {
    CHECK(show(parse_selector("cpu.load")) == R"(__name__="cpu.load")");
    CHECK(show(parse_selector("job:rate5m.sum{k8s.pod=\"p\"}")) ==
          R"(__name__="job:rate5m.sum" k8s.pod="p")");
    CHECK(show(parse_selector(R"({"disk io-ops", "dev name"="sda"})")) ==
          R"(__name__="disk io-ops" "dev name"="sda")");
    CHECK(show(parse_selector(R"({'q', x="1"})")) == R"(__name__="q" x="1")");
    CHECK(error_of("9lives").find("position 1: expected a metric name or '{'") != std::string::npos);
    CHECK(error_of("m{.a=\"1\"}").find("position 3: expected a label name") != std::string::npos);
  }

  TEST_CASE("selector: PromQL string literals: escapes, single quotes, raw strings") {
    auto value_of = [](std::string_view text) { return parse_selector(text).back().value(); };
    CHECK(value_of(R"(m{a="x\"y\\z\n\t"})") == "x\"y\\z\n\t");
    CHECK(value_of(R"(m{a='it\'s'})") == "it's");
    CHECK(value_of(R"(m{a="it's"})") == "it's");
    CHECK(value_of(R"(m{a=`raw \d+ "q"`})") == R"(raw \d+ "q")");
    CHECK(value_of(R"(m{a="\x41\101\u00e9\U0001F600"})") == "AA\xC3\xA9\xF0\x9F\x98\x80");
    CHECK(value_of(R"(m{a=~"h\\d+"})") == R"(h\d+)");
    CHECK(value_of(R"(m{a=""})").empty());
  }

  TEST_CASE("selector: errors name the 1-based position of the problem") {
    CHECK(error_of(R"(cpu_usage{host~"x"})") ==
          "selector: position 15: expected '=', '!=', '=~' or '!~' after the label name 'host', got '~'");
    CHECK(error_of(R"(m{host="a",dc=x})") ==
          "selector: position 15: expected a quoted string after dc=, got 'x'");
    CHECK(error_of(R"(m{host="a" dc="x"})") ==
          R"(selector: position 12: expected ',' or '}' after the matcher host="a", got 'd')");
    CHECK(error_of(R"(m{host="a")") == "selector: position 11: expected '}' to close the '{' at position 2");
    CHECK(error_of(R"(m{host="a)") == "selector: position 8: unterminated string");
    CHECK(error_of("m{a=\"x\ny\"}") ==
          "selector: position 5: unterminated string (a newline before its closing quote)");
    CHECK(error_of(R"(m{a="\q"})") == R"(selector: position 6: unknown escape sequence \q)");
    CHECK(error_of(R"(m{a="\'"})") == R"(selector: position 6: unknown escape sequence \')");
    CHECK(error_of(R"(m{a="\x4"})") == "selector: position 6: escape \\x needs 2 hexadecimal digits");
    CHECK(error_of(R"(m{a="\uD800"})") == "selector: position 6: escape is not a valid Unicode code point");
    CHECK(error_of(R"(m{a="\777"})") == "selector: position 6: octal escape value > 255");
    CHECK(error_of("m[5m]") == "selector: position 2: unexpected '[' after the selector");
    CHECK(error_of(R"({""="x"})") == "selector: position 2: a label name must not be empty");
    CHECK(error_of(R"({"", a="x"})") == "selector: position 2: the metric name must not be empty");
    CHECK(error_of("") == "selector: position 1: empty selector: expected a metric name or '{'");
    CHECK(error_of("   ") == "selector: position 4: empty selector: expected a metric name or '{'");
  }

  TEST_CASE("selector: an invalid regex is an error at its string") {
    const std::string e = error_of(R"(cpu{host=~"h1("})");
    CHECK(e.rfind("selector: position 11: invalid regular expression: missing )", 0) == 0);
    try {
      parse_selector(R"(cpu{host=~"h1("})");
    } catch (const SelectorError& err) {
      CHECK(err.position() == 11);
    }
  }

  TEST_CASE("selector: as PromQL, no name twice and at least one matcher that needs a value") {
    CHECK(error_of(R"(cpu{__name__="mem"})").find("position 5: the metric name is given twice") !=
          std::string::npos);
    CHECK(error_of(R"(cpu{"mem"})").find("position 5: the metric name is given twice") != std::string::npos);
    CHECK(error_of("{}").find("position 1: a selector needs a metric name or a matcher") !=
          std::string::npos);
    CHECK(error_of(R"({dc=""})").find("a selector needs") != std::string::npos);
    CHECK(error_of(R"({dc!="x", host=~".*"})").find("a selector needs") != std::string::npos);
    CHECK(error_of(R"({dc=~".+"})").empty());
    CHECK(error_of(R"({__name__="a", __name__!="b"})").empty());
  }

  TEST_CASE("format_series: bare names when they fit, quoted otherwise, parses back to the same labels") {
    using Tags = std::vector<std::pair<std::string_view, std::string_view>>;
    const Tags tags = {{"dc", "eu"}, {"host", "h\"1\n"}};
    CHECK(format_series("cpu.load", tags) == R"(cpu.load{dc="eu",host="h\"1\n"})");
    CHECK(format_series("cpu", {}) == "cpu");
    const Tags odd = {{"k-8", "v"}};
    CHECK(format_series("disk io", odd) == R"({"disk io","k-8"="v"})");
    for (const auto& [name, t] : {std::pair{"cpu.load"sv, tags}, std::pair{"disk io"sv, odd}}) {
      const auto ms = parse_selector(format_series(name, t));
      REQUIRE(ms.size() == t.size() + 1);
      CHECK(ms[0].value() == name);
      for (std::size_t i = 0; i < t.size(); ++i) {
        CHECK(ms[i + 1].label() == t[i].first);
        CHECK(ms[i + 1].value() == t[i].second);
      }
    }
    CHECK(quote_string("a\x01z") == R"("a\x01z")");
    CHECK(parse_selector("m{a=" + quote_string("a\x01\t\r\\z") + "}")[1].value() == "a\x01\t\r\\z");
  }
}

}  // namespace
}  // namespace sydra::storage
