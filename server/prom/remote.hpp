// Prometheus' remote storage protocol on the wire: remote_write 1.0 bodies decoded into an
// ingest batch, remote_read requests decoded into matchers and their answers encoded. No
// HTTP and no engine here (server/api/remote_api.cpp joins those), so the fuzzer and the unit
// tests link only this.
//
// remote_write (a snappy-compressed WriteRequest)
//   Labels map onto the storage model as Prometheus' own: `__name__` is the series name,
//   every other label a tag, so a sample sent here and the same point sent as NDJSON are one
//   series (one canonical key, one id). A label with an empty value is no label (Prometheus'
//   rule), so it is left out of the key. Every float64 (NaN, the stale marker's NaN bit
//   pattern and the infinities included) and every int64 millisecond timestamp is storable
//   and stored bit-exact.
//   A request is decoded and checked whole before anything is stored: on the first problem
//   the decoder stops with a WriteProblem and the batch must be discarded, so a refused
//   request stores nothing.
//
// remote_read (a snappy-compressed ReadRequest)
//   Each query's matchers become storage::Matchers (the one matcher engine: `=~` and `!~`
//   fully anchored RE2, as Prometheus); start and end are inclusive milliseconds. Answers
//   are SAMPLES: one snappy-compressed ReadResponse, labels sorted by name.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "server/storage/ingest_parser.hpp"
#include "server/storage/matcher.hpp"
#include "server/storage/series_index.hpp"
#include "server/storage/types.hpp"

namespace sydra::prom {

// Why a request can never succeed (the client must not send it again).
enum class Problem : std::uint8_t {
  none,
  snappy,         // not a valid snappy block
  too_large,      // decompressed, more than the limit
  protobuf,       // not a valid message
  labels,         // no __name__, unsorted or duplicate names, an empty name, a NUL byte
  histograms,     // native histogram samples: not supported
  matchers,       // remote_read: an invalid regex or matcher type
  response_type,  // remote_read: SAMPLES not among the accepted response types
};

// The metric label value of a problem: "snappy", "too_large", ...
std::string_view to_string(Problem problem) noexcept;

struct Outcome {
  Problem problem = Problem::none;
  std::string message;  // one line, for the client's {"error": ...}
  explicit operator bool() const noexcept { return problem == Problem::none; }
};

// Decodes remote_write bodies. One per worker thread: it keeps its decompression buffer and
// its protobuf message between requests, so that their capacity is reused.
class WriteDecoder {
 public:
  WriteDecoder();
  ~WriteDecoder();
  WriteDecoder(const WriteDecoder&) = delete;
  WriteDecoder& operator=(const WriteDecoder&) = delete;

  // Clears `out`, then decodes `body` into it: every sample a point of its series. With a
  // problem, `out` holds part of the request and must not be stored. `max_bytes` bounds the
  // decompressed size.
  Outcome decode(std::string_view body, std::size_t max_bytes, storage::ParsedBatch& out);

  // Series (TimeSeries messages) in the last request decoded.
  std::uint64_t series() const noexcept { return series_; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::uint64_t series_ = 0;
};

// One query of a ReadRequest.
struct ReadQuery {
  storage::Timestamp start = 0;  // inclusive, ms
  storage::Timestamp end = 0;    // inclusive, ms
  std::vector<storage::Matcher> matchers;
};

// Decodes a remote_read body into its queries.
Outcome decode_read_request(std::string_view body, std::size_t max_bytes, std::vector<ReadQuery>& out);

// A series of an answer and its samples in time order.
struct ReadSeries {
  const storage::SeriesInfo* series;
  std::span<const storage::Point> points;
};

// Builds the answer to a ReadRequest: one result per query, in order, each a list of series.
class ReadResponseWriter {
 public:
  ReadResponseWriter();
  ~ReadResponseWriter();
  ReadResponseWriter(const ReadResponseWriter&) = delete;
  ReadResponseWriter& operator=(const ReadResponseWriter&) = delete;

  // Starts the next query's result (call once per query, even when it found nothing).
  void begin_result();
  void add_series(const storage::SeriesInfo& series, std::span<const storage::Point> points);
  // The snappy-compressed ReadResponse.
  std::string finish();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// ---- for clients: tests, benchmarks ----------------------------------------------------

struct Sample {
  double value;
  storage::Timestamp ts;
};
struct Series {
  std::vector<std::pair<std::string, std::string>> labels;  // as sent: sort them yourself
  std::vector<Sample> samples;
};

// A snappy-compressed WriteRequest with these series.
std::string encode_write_request(std::span<const Series> series);

enum class MatchType : std::uint8_t { eq = 0, neq = 1, re = 2, nre = 3 };
struct WireMatcher {
  MatchType type;
  std::string name, value;
};
struct WireQuery {
  storage::Timestamp start = 0, end = 0;
  std::vector<WireMatcher> matchers;
};
// A snappy-compressed ReadRequest asking for SAMPLES.
std::string encode_read_request(std::span<const WireQuery> queries);
// A snappy-compressed ReadResponse decoded: per query, its series. False if it is not one.
bool decode_read_response(std::string_view body, std::vector<std::vector<Series>>& out);

}  // namespace sydra::prom
