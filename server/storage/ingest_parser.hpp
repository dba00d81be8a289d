// The ingest hot path: NDJSON lines {"series": str, "ts": int, "value": number,
// "tags": {str: str}?} parsed with simdjson into a batch of points with their series ids.
// One parser per worker thread (it keeps simdjson's buffers); a batch's vectors allocate
// through the memory resource given to it (the worker's shard in the daemon).
//
// Per line: blank lines (only spaces, \t, \r) are skipped and not counted; anything else
// that is not exactly one JSON object with the fields above is rejected with a message and
// its 1-based line number, and parsing goes on with the next line — a line longer than
// max_line_bytes too. Unknown fields are ignored. "ts" is an integer in the request's unit
// (milliseconds since the Unix epoch unless the request says otherwise), stored as
// milliseconds; "value" any JSON number (integers are converted to double); NaN/Infinity are
// not JSON and are rejected.
//
// A "ts" that is a date between 2001 and 2286 in another unit than the request's (1.7e9 sent
// as milliseconds: seconds, so January 1970) is stored as given and counted in the batch's
// unit_mismatch, for the handler to warn about.
#pragma once

#include <cstdint>
#include <memory>
#include <memory_resource>
#include <string>
#include <string_view>
#include <vector>

#include "server/storage/types.hpp"

namespace sydra::storage {

struct ParsedPoint {
  SeriesId id;
  Timestamp ts;
  double value;
  std::uint32_t key_offset;  // the canonical series key: batch.keys[key_offset, +key_size)
  std::uint32_t key_size;
};

struct IngestLineError {
  std::uint64_t line;  // 1-based
  std::pmr::string message;
};

// The unit of "ts" in a request.
enum class TimeUnit { seconds, milliseconds, microseconds, nanoseconds };

// "s", "ms", "us", "ns".
const char* to_string(TimeUnit unit) noexcept;
bool parse_time_unit(std::string_view text, TimeUnit& out) noexcept;

// Lines whose "ts" looks like another unit than the one they are read in.
struct UnitMismatch {
  std::uint64_t lines = 0;
  std::uint64_t first_line = 0;  // 1-based
  Timestamp first_ts = 0;        // as sent
  TimeUnit looks_like = TimeUnit::milliseconds;
};

struct ParsedBatch {
  explicit ParsedBatch(std::pmr::memory_resource* mr = std::pmr::get_default_resource())
      : points(mr), keys(mr), errors(mr) {}

  std::pmr::vector<ParsedPoint> points;
  std::pmr::string keys;  // canonical keys back to back (consecutive equal keys may share one)
  std::uint64_t rejected = 0;
  std::pmr::vector<IngestLineError> errors;  // the first kMaxReportedErrors rejections
  UnitMismatch unit_mismatch;                // the first apparent unit other than the request's

  static constexpr std::size_t kMaxReportedErrors = 10;

  std::string_view key(const ParsedPoint& p) const noexcept {
    return {keys.data() + p.key_offset, p.key_size};
  }
  void clear() noexcept;
};

class NdjsonParser {
 public:
  explicit NdjsonParser(std::size_t max_line_bytes = 64 * 1024);
  ~NdjsonParser();
  NdjsonParser(const NdjsonParser&) = delete;
  NdjsonParser& operator=(const NdjsonParser&) = delete;

  // Clears `out`, then parses `body`, each "ts" read in `unit`: every line is parsed or
  // rejected (out.rejected, out.errors). Never throws on bad input.
  void parse(std::string_view body, ParsedBatch& out, TimeUnit unit = TimeUnit::milliseconds);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace sydra::storage
