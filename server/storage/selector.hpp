// Series selectors in Prometheus syntax, parsed into matchers (matcher.hpp):
//
//   cpu_usage                                 the series named cpu_usage
//   cpu_usage{host=~"h1.*", dc!="x"}          ... with these tags
//   {__name__=~"cpu.*", dc="eu"}              the name as a label
//   {"disk.io-ops", "dev"="sda"}              quoted names (Prometheus 3): any characters
//
// Grammar (whitespace allowed between tokens):
//   selector = metric_name [ '{' matchers '}' ] | '{' matchers '}'
//   matchers = [ item { ',' item } [ ',' ] ]
//   item     = label op string | string          (a lone string is the metric name)
//   label    = label_name | string
//   op       = '=' | '!=' | '=~' | '!~'
// A bare metric name is [A-Za-z_:][A-Za-z0-9_:.]* and a bare label name [A-Za-z_][A-Za-z0-9_.]*
// (Prometheus' identifiers plus '.', which the project's series and tag names often hold);
// any other name is written as a string. Strings are PromQL string literals: "..." and
// '...' with the escapes \a \b \f \n \r \t \v \\ \<its own quote> \xHH \OOO (octal)
// \uHHHH \UHHHHHHHH, or `...` raw (no escapes). As in PromQL, the name may not be given
// twice (`cpu{__name__="x"}`), and a selector needs at least one matcher that does not match
// the empty string (so `{}` or `{dc=""}` alone, which would select nearly everything, are
// refused).
#pragma once

#include <cstddef>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "server/storage/matcher.hpp"

namespace sydra::storage {

// A selector that does not parse. what() is one line, "selector: position N: <problem>",
// N the 1-based byte offset in the selector text where the problem is.
class SelectorError : public std::invalid_argument {
 public:
  SelectorError(std::size_t position, const std::string& problem);
  std::size_t position() const noexcept { return position_; }

 private:
  std::size_t position_;
};

// The matchers of a selector: the metric name first (as __name__="name") when given,
// then the label matchers in the order written. Throws SelectorError.
std::vector<Matcher> parse_selector(std::string_view text);

// A PromQL double-quoted string literal for `value` (\" \\ \n \r \t escaped).
std::string quote_string(std::string_view value);

// label op "value", with a quoted label name when it is not a bare one: host=~"h1.*".
std::string format_matcher(const Matcher& matcher);

// A selector that names exactly this series' labels: cpu{dc="eu",host="h1"}, or
// {"odd name",dc="eu"} when the name is not a bare metric name. Parsing it back selects
// this series (and any series with these labels and more).
std::string format_series(std::string_view name,
                          std::span<const std::pair<std::string_view, std::string_view>> tags);

}  // namespace sydra::storage
