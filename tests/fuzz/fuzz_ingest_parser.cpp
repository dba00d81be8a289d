// libFuzzer target: untrusted bytes as an NDJSON ingest body (server/storage/ingest_parser.hpp).
//
// Every input is parsed twice: by one parser kept across inputs (so its last-series cache
// and buffers carry state from earlier inputs, as a daemon worker's do) and by a fresh one.
// Anything wrong aborts:
//   - a crash, a leak or undefined behaviour (ASan, UBSan);
//   - ingested + rejected != the number of non-blank lines plus blank lines over the limit
//     (every such line is either a point or an error, shorter blank lines are neither);
//   - a point whose id is not series_id(its key), a key outside batch.keys, or a key that
//     does not survive split_canonical_key / append_canonical_key;
//   - error line numbers not increasing, beyond the last line, more than kMaxReportedErrors
//     or fewer than min(rejected, kMaxReportedErrors), or an empty message;
//   - a line over the limit that is not rejected for its length, or a line within it that
//     is (when its error is among the reported ones);
//   - the two parsers disagreeing (a stale cache).
// The unit "ts" is read in comes from the input's length, so every unit is exercised.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "server/storage/ingest_parser.hpp"
#include "server/storage/series_key.hpp"

namespace {

using sydra::storage::NdjsonParser;
using sydra::storage::ParsedBatch;
using sydra::storage::ParsedPoint;
using sydra::storage::TimeUnit;

constexpr std::size_t kMaxLine = 1024;

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "fuzz_ingest_parser: invariant broken: %s\n", what);
  std::abort();
}

#define CHECK_INVARIANT(cond) \
  do {                        \
    if (!(cond)) fail(#cond); \
  } while (0)

struct LineCount {
  std::uint64_t lines = 0;              // all lines, blank or not
  std::uint64_t non_blank = 0;          // lines the parser must account for
  std::vector<std::uint64_t> too_long;  // lines (without their '\n') over kMaxLine bytes
};

LineCount count_lines(std::string_view body) {
  LineCount count;
  std::size_t pos = 0;
  while (pos < body.size()) {
    std::size_t end = body.find('\n', pos);
    if (end == std::string_view::npos) end = body.size();
    std::string_view line = body.substr(pos, end - pos);
    pos = end + 1;
    ++count.lines;
    if (line.size() > kMaxLine) {
      count.too_long.push_back(count.lines);
      ++count.non_blank;
    } else if (line.find_first_not_of(" \t\r") != std::string_view::npos) {
      ++count.non_blank;
    }
  }
  return count;
}

void check_batch(std::string_view body, const ParsedBatch& batch) {
  const LineCount count = count_lines(body);
  CHECK_INVARIANT(batch.points.size() + batch.rejected == count.non_blank);
  for (const auto& error : batch.errors) {
    const bool too_long =
        std::find(count.too_long.begin(), count.too_long.end(), error.line) != count.too_long.end();
    CHECK_INVARIANT(too_long == (std::string_view(error.message).rfind("the line is ", 0) == 0));
  }

  const std::size_t expected_errors =
      batch.rejected < ParsedBatch::kMaxReportedErrors ? batch.rejected : ParsedBatch::kMaxReportedErrors;
  CHECK_INVARIANT(batch.errors.size() == expected_errors);
  std::uint64_t previous_line = 0;
  for (const auto& error : batch.errors) {
    CHECK_INVARIANT(error.line > previous_line);
    CHECK_INVARIANT(error.line <= count.lines);
    CHECK_INVARIANT(!error.message.empty());
    previous_line = error.line;
  }

  std::string rebuilt;
  for (const ParsedPoint& point : batch.points) {
    CHECK_INVARIANT(std::size_t{point.key_offset} + point.key_size <= batch.keys.size());
    const std::string_view key = batch.key(point);
    CHECK_INVARIANT(!key.empty());
    CHECK_INVARIANT(point.id == sydra::storage::series_id(key));
    const sydra::storage::SeriesKeyView view = sydra::storage::split_canonical_key(key);
    CHECK_INVARIANT(!view.name.empty());
    for (std::size_t i = 1; i < view.tags.size(); ++i)
      CHECK_INVARIANT(view.tags[i - 1].first < view.tags[i].first);
    rebuilt.clear();
    sydra::storage::append_canonical_key(rebuilt, view.name, view.tags);
    CHECK_INVARIANT(rebuilt == key);
  }
}

bool same_batches(const ParsedBatch& a, const ParsedBatch& b) {
  if (a.points.size() != b.points.size() || a.rejected != b.rejected || a.errors.size() != b.errors.size())
    return false;
  for (std::size_t i = 0; i < a.points.size(); ++i) {
    const ParsedPoint& p = a.points[i];
    const ParsedPoint& q = b.points[i];
    if (p.id != q.id || p.ts != q.ts || std::memcmp(&p.value, &q.value, sizeof p.value) != 0 ||
        a.key(p) != b.key(q))
      return false;
  }
  for (std::size_t i = 0; i < a.errors.size(); ++i) {
    if (a.errors[i].line != b.errors[i].line || a.errors[i].message != b.errors[i].message) return false;
  }
  return a.unit_mismatch.lines == b.unit_mismatch.lines &&
         a.unit_mismatch.first_line == b.unit_mismatch.first_line &&
         a.unit_mismatch.first_ts == b.unit_mismatch.first_ts &&
         a.unit_mismatch.looks_like == b.unit_mismatch.looks_like;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view body(reinterpret_cast<const char*>(data), size);

  static constexpr TimeUnit kUnits[] = {TimeUnit::milliseconds, TimeUnit::seconds, TimeUnit::microseconds,
                                        TimeUnit::nanoseconds};
  const TimeUnit unit = kUnits[size % 4];

  static NdjsonParser reused(kMaxLine);
  static ParsedBatch reused_batch;
  reused.parse(body, reused_batch, unit);
  check_batch(body, reused_batch);

  NdjsonParser fresh(kMaxLine);
  ParsedBatch fresh_batch;
  fresh.parse(body, fresh_batch, unit);
  CHECK_INVARIANT(same_batches(fresh_batch, reused_batch));
  return 0;
}
