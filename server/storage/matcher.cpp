// Label matchers (see matcher.hpp): RE2 regexes compiled once, literal and match-all
// regexes recognised so that an index can answer them without running a regex.
#include "server/storage/matcher.hpp"

#include <re2/re2.h>

namespace sydra::storage {

namespace {

// Longest bounds asked of RE2::PossibleMatchRange: a longer literal prefix narrows a value
// scan no further in practice.
constexpr int kBoundsLength = 64;

std::shared_ptr<const re2::RE2> compile(const std::string& value) {
  re2::RE2::Options options;
  options.set_log_errors(false);
  options.set_never_capture(true);
  // The regex alone first: its errors then quote what the user wrote, and a value such as
  // "a)|(b" cannot close the anchoring group below and escape it.
  const re2::RE2 alone(value, options);
  if (!alone.ok()) throw InvalidMatcher(alone.error());
  // Prometheus compiles "^(?s:" + re + ")$": anchored at both ends, `.` matches "\n".
  auto re = std::make_shared<const re2::RE2>("^(?s:" + value + ")$", options);
  if (!re->ok()) throw InvalidMatcher(re->error());
  return re;
}

bool is_literal(const std::string& value) {
  return re2::RE2::QuoteMeta(value) == value;
}

}  // namespace

std::string_view to_string(MatchOp op) noexcept {
  switch (op) {
    case MatchOp::equal:
      return "=";
    case MatchOp::not_equal:
      return "!=";
    case MatchOp::regex:
      return "=~";
    case MatchOp::not_regex:
      return "!~";
  }
  return "?";
}

Matcher::Matcher(std::string label, MatchOp op, std::string value)
    : label_(std::move(label)), op_(op), value_(std::move(value)) {
  if ((op_ == MatchOp::regex || op_ == MatchOp::not_regex) && !is_literal(value_)) {
    regex_ = compile(value_);
  }
  matches_empty_ = matches("");
  matches_everything_ = op_ == MatchOp::regex && regex_ != nullptr && matches_empty_ &&
                        (value_ == ".*" || value_ == "(.*)" || value_ == ".*?" || value_ == "(?s:.*)");
}

bool Matcher::matches(std::string_view value) const {
  bool hit = false;
  switch (op_) {
    case MatchOp::equal:
    case MatchOp::not_equal:
      hit = value == value_;
      break;
    case MatchOp::regex:
    case MatchOp::not_regex:
      hit = regex_ ? re2::RE2::FullMatch(re2::StringPiece(value.data(), value.size()), *regex_)
                   : value == value_;
      break;
  }
  return (op_ == MatchOp::not_equal || op_ == MatchOp::not_regex) ? !hit : hit;
}

bool Matcher::value_bounds(std::string& min, std::string& max) const {
  if (op_ != MatchOp::regex) return false;
  if (!regex_) {
    min = max = value_;
    return true;
  }
  return regex_->PossibleMatchRange(&min, &max, kBoundsLength);
}

std::string_view SeriesLabels::value(std::string_view label) const noexcept {
  if (label == kNameLabel) return name;
  for (const auto& [k, v] : tags)
    if (k == label) return v;
  return {};
}

bool matches_all(std::span<const Matcher> matchers, const SeriesLabels& series) {
  for (const Matcher& m : matchers)
    if (!m.matches(series.value(m.label()))) return false;
  return true;
}

}  // namespace sydra::storage
