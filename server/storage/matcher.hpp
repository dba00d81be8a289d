// Label matchers: the one matcher engine behind many-series queries, the CLI's selector and
// any other API that selects series by labels (DESIGN.md §9). Prometheus semantics:
//
//   Label model   a series' labels are its name, under the label `__name__`, and its tags.
//   =  !=         the label's value equals (differs from) the given string.
//   =~ !~         the value matches (does not match) an RE2 regular expression, fully
//                 anchored (`h1.*` matches "h12" but not "xh12"; `.` matches a newline too,
//                 as Prometheus compiles `^(?s:re)$`).
//   absence       a label a series does not have has the value "" for matching: `dc=""`
//                 selects the series without a dc tag (or with an empty one), `dc!=""` the
//                 series that have one, `dc=~"eu|"` those in eu or without dc.
//
// A Matcher is immutable once built and safe to use from any number of threads (RE2 objects
// are thread-safe for matching).
#pragma once

#include <cstddef>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

namespace re2 {
class RE2;
}

namespace sydra::storage {

// The label that holds a series' name.
inline constexpr std::string_view kNameLabel = "__name__";

enum class MatchOp { equal, not_equal, regex, not_regex };

// "=", "!=", "=~", "!~".
std::string_view to_string(MatchOp op) noexcept;

// A regular expression that RE2 rejects: what() is RE2's one-line reason.
class InvalidMatcher : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

class Matcher {
 public:
  // Compiles a regex for =~ and !~ (InvalidMatcher when it does not compile).
  Matcher(std::string label, MatchOp op, std::string value);

  const std::string& label() const noexcept { return label_; }
  MatchOp op() const noexcept { return op_; }
  const std::string& value() const noexcept { return value_; }

  // Whether a label value satisfies the matcher; "" stands for an absent label.
  bool matches(std::string_view value) const;
  // matches(""): the matcher also selects series that lack the label.
  bool matches_empty() const noexcept { return matches_empty_; }
  // True for a matcher that every value satisfies, absent included (`=~".*"`): it selects
  // everything and an index can skip it.
  bool matches_everything() const noexcept { return matches_everything_; }
  // For =~ only: bounds [min, max] (bytewise) that every matching value lies within, from
  // the regex's literal prefix (RE2::PossibleMatchRange). False when there are none.
  bool value_bounds(std::string& min, std::string& max) const;

 private:
  std::string label_;
  MatchOp op_;
  std::string value_;
  // The compiled regex for =~ and !~ whose value is not a plain literal; a literal regex is
  // compared as a string (an anchored literal matches exactly itself).
  std::shared_ptr<const re2::RE2> regex_;
  bool matches_empty_ = false;
  bool matches_everything_ = false;
};

// A series' labels for matching: its name and its tags (any order).
struct SeriesLabels {
  std::string_view name;
  std::span<const std::pair<std::string_view, std::string_view>> tags;
  // The value of `label` ("" when absent); `__name__` is the name.
  std::string_view value(std::string_view label) const noexcept;
};

// Whether the series satisfies every matcher (an empty list selects everything). The
// reference semantics; an index gives the same answers without visiting every series.
bool matches_all(std::span<const Matcher> matchers, const SeriesLabels& series);

}  // namespace sydra::storage
