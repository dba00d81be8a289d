// The parts of `sydradb query` that need no server (cli/query_command.cpp): arguments to the
// POST /api/v1/query/range or /api/v1/query/select body, and the answer to a table, CSV or
// JSON.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "cli/commands.hpp"

namespace sydra::cli {

// A time argument in milliseconds since the Unix epoch: an integer ("1700000000000", may be
// negative), "now", or "now-<N><unit>" / "now+<N><unit>" with unit ms, s, m, h or d.
// Throws std::invalid_argument with a one-line message naming the text.
std::int64_t parse_query_time(std::string_view text, std::int64_t now_ms);

// A --step: milliseconds ("60000") or <N><unit> ("1m", "500ms", "2h"); positive.
// Throws std::invalid_argument.
std::int64_t parse_query_step(std::string_view text);

// The JSON body for POST /api/v1/query/range:
//   {"series": S, "tags": {k: v, ...}, "start": ms, "end": ms[, "step": ms][, "agg": A]}
// Throws std::invalid_argument (a one-line message) for a bad argument: an empty series, a
// --tag without '=' or with an empty or repeated key, start after end, an unknown --agg, or
// --agg without --step.
std::string make_range_request(const QueryOptions& options, std::int64_t now_ms);

// Whether the arguments ask for many series: SERIES is a selector (it holds '{'), or
// --across / --by are given.
bool is_select_query(const QueryOptions& options);

// The JSON body for POST /api/v1/query/select:
//   {"match": selector, "start": ms, "end": ms[, "step": ms][, "agg": A][, "across": F][, "by": [...]]}
// SERIES is the selector (a plain name selects every series of that name). Throws
// std::invalid_argument (a one-line message) for a selector that does not parse (naming the
// position), --tag with a selector (the tags belong in it), an unknown --across, --by
// without an aggregation across series (--across, or an --agg that is one: sum, avg, min,
// max, count), an empty --by label, and the range errors of make_range_request.
std::string make_select_request(const QueryOptions& options, std::int64_t now_ms);

struct QueryPoint {
  std::int64_t ts = 0;
  double value = 0;  // NaN when the daemon sent null
};

// The daemon's answer, [{"ts": int, "value": number|null}, ...]. Throws std::runtime_error
// (one line) when it is not that.
std::vector<QueryPoint> parse_range_answer(std::string_view body);

// One series or group of a select answer: `label` names it in selector form
// (cpu{dc="eu",host="h1"}, or {dc="eu"} for a group), `series_count` is the number of series
// combined into a group (0 for a series).
struct QuerySeries {
  std::string label;
  std::uint64_t series_count = 0;
  std::vector<QueryPoint> points;
};

// The daemon's select answer, {"series": [...]} or {"groups": [...]}. Throws
// std::runtime_error (one line) when it is not that.
std::vector<QuerySeries> parse_select_answer(std::string_view body);

// Many series as a table (per series its label, then the rows as format_points prints them,
// then a count line for all) or as CSV with a "series,ts,value" header (the label quoted as
// CSV). JSON is the daemon's answer itself.
std::string format_series(const std::vector<QuerySeries>& series, QueryFormat format);

// "2023-11-14T22:13:20.000Z" (UTC).
std::string format_utc_millis(std::int64_t ms);

// The points in `format`: a table (ts, UTC time, value, and a count line), CSV with a
// "ts,value" header, or a JSON array like the daemon's. Values print in their shortest
// exact decimal form.
std::string format_points(const std::vector<QueryPoint>& points, QueryFormat format);

}  // namespace sydra::cli
