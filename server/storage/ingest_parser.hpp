// The ingest hot path: NDJSON lines {"series": str, "ts": int, "value": number,
// "tags": {str: str}?} parsed with simdjson into a batch of points with their series ids.
// One parser per worker thread (it keeps simdjson's buffers); a batch's vectors allocate
// through the memory resource given to it (the worker's shard in the daemon).
//
// Per line: blank lines (only spaces, \t, \r) are skipped and not counted; anything else
// that is not exactly one JSON object with the fields above is rejected with a message and
// its 1-based line number, and parsing goes on with the next line. Unknown fields are
// ignored. "ts" is an integer (milliseconds since the Unix epoch); "value" any JSON number
// (integers are converted to double); NaN/Infinity are not JSON and are rejected.
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

struct ParsedBatch {
  explicit ParsedBatch(std::pmr::memory_resource* mr = std::pmr::get_default_resource())
      : points(mr), keys(mr), errors(mr) {}

  std::pmr::vector<ParsedPoint> points;
  std::pmr::string keys;  // canonical keys back to back (consecutive equal keys may share one)
  std::uint64_t rejected = 0;
  std::pmr::vector<IngestLineError> errors;  // the first kMaxReportedErrors rejections

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

  enum class Status {
    ok,             // every line parsed or rejected; see out.rejected / out.errors
    line_too_long,  // a line exceeds max_line_bytes: the caller answers 413 and stores nothing
  };
  // Clears `out`, then parses `body`. Never throws on bad input.
  Status parse(std::string_view body, ParsedBatch& out);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace sydra::storage
