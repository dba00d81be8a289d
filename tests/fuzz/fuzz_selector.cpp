// libFuzzer target: untrusted bytes as a series selector (server/storage/selector.hpp), the
// `match` of GET|POST /api/v1/query/select and the CLI's SELECTOR.
//
// Anything wrong aborts:
//   - a crash, a leak or undefined behaviour (ASan, UBSan), or an exception other than
//     SelectorError;
//   - a SelectorError whose position lies outside [1, size + 1] or whose message does not
//     start with "selector: position <that position>: ";
//   - a parsed selector without a matcher that rejects "" (the parser must refuse those);
//   - a parsed selector whose matchers, written back with format_matcher and parsed again,
//     are not the same matchers (label, operator, value), or match values differently.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "server/storage/selector.hpp"

namespace {

using sydra::storage::Matcher;
using sydra::storage::SelectorError;

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "fuzz_selector: invariant broken: %s\n", what);
  std::abort();
}

#define CHECK_INVARIANT(cond) \
  do {                        \
    if (!(cond)) fail(#cond); \
  } while (false)

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  std::vector<Matcher> matchers;
  try {
    matchers = sydra::storage::parse_selector(text);
  } catch (const SelectorError& e) {
    CHECK_INVARIANT(e.position() >= 1 && e.position() <= size + 1);
    const std::string prefix = "selector: position " + std::to_string(e.position()) + ": ";
    CHECK_INVARIANT(std::string_view(e.what()).substr(0, prefix.size()) == prefix);
    return 0;
  }
  bool selective = false;
  for (const Matcher& m : matchers) selective = selective || !m.matches_empty();
  CHECK_INVARIANT(selective);

  // Written back and parsed again: the same matchers.
  std::string again = "{";
  for (std::size_t i = 0; i < matchers.size(); ++i) {
    if (i > 0) again += ',';
    again += sydra::storage::format_matcher(matchers[i]);
  }
  again += '}';
  std::vector<Matcher> reparsed;
  try {
    reparsed = sydra::storage::parse_selector(again);
  } catch (const SelectorError&) {
    fail("a formatted selector does not parse");
  }
  CHECK_INVARIANT(reparsed.size() == matchers.size());
  const std::string_view probes[] = {"", "a", "h1", text.substr(0, 8), matchers[0].value()};
  for (std::size_t i = 0; i < matchers.size(); ++i) {
    CHECK_INVARIANT(reparsed[i].label() == matchers[i].label());
    CHECK_INVARIANT(reparsed[i].op() == matchers[i].op());
    CHECK_INVARIANT(reparsed[i].value() == matchers[i].value());
    for (std::string_view v : probes) CHECK_INVARIANT(reparsed[i].matches(v) == matchers[i].matches(v));
  }
  return 0;
}
