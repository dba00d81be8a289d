// `sydradb query SERIES|SELECTOR START END [--tag k=v ...] [--step S --agg A]
// [--across F --by L,...] [--json|--csv]`: one POST /api/v1/query/range (a series) or
// /api/v1/query/select (a selector, or aggregation across series) to the running daemon,
// the points printed.
#include "cli/query_command.hpp"

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <iostream>
#include <limits>
#include <map>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "cli/client.hpp"
#include "cli/series_command.hpp"
#include "server/storage/selector.hpp"

namespace sydra::cli {

namespace {

using nlohmann::json;

// A duration "<N><unit>" (unit ms, s, m, h, d; no unit = ms) in milliseconds; false if bad
// or beyond int64.
bool parse_duration(std::string_view text, std::int64_t& out) {
  std::int64_t n = 0;
  const char* begin = text.data();
  const char* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(begin, end, n);
  if (ec != std::errc{} || ptr == begin || n < 0) return false;
  const std::string_view unit(ptr, static_cast<std::size_t>(end - ptr));
  std::int64_t scale = 0;
  if (unit.empty() || unit == "ms") {
    scale = 1;
  } else if (unit == "s") {
    scale = 1000;
  } else if (unit == "m") {
    scale = 60'000;
  } else if (unit == "h") {
    scale = 3'600'000;
  } else if (unit == "d") {
    scale = 86'400'000;
  } else {
    return false;
  }
  if (n > std::numeric_limits<std::int64_t>::max() / scale) return false;
  out = n * scale;
  return true;
}

std::string shortest(double v) {
  if (std::isnan(v)) return "NaN";
  char buffer[64];
  const auto [ptr, ec] = std::to_chars(buffer, buffer + sizeof buffer, v);
  return ec == std::errc{} ? std::string(buffer, ptr) : std::string("?");
}

// After an empty answer: whether the series exists, and if not, which series of that name
// do. "" when it exists (or the daemon cannot list series: the empty answer stands).
std::string missing_series_note(const DaemonClient& client, const QueryOptions& options) {
  std::vector<SeriesEntry> same_name;
  HttpResponse response;
  std::string error;
  if (client.exchange("GET", series_request_path(options.series, {}), {}, response, error) != kExitOk)
    return {};
  try {
    same_name = parse_series_answer(response.body);
  } catch (const std::runtime_error&) {
    return {};
  }
  const Tags wanted = parse_tag_flags(options.tags);
  if (std::any_of(same_name.begin(), same_name.end(),
                  [&](const SeriesEntry& e) { return same_tags(e, wanted); }))
    return {};
  if (same_name.empty())
    return "no series is named '" + options.series + "' (sydradb series lists the names there are)";
  std::string note = "no series '" + options.series + "' has the tags " + format_tags(wanted) + "; " +
                     std::to_string(same_name.size()) + " series of that name ha" +
                     (same_name.size() == 1 ? "s" : "ve") + ": ";
  constexpr std::size_t kListed = 10;
  for (std::size_t i = 0; i < same_name.size() && i < kListed; ++i)
    note += (i > 0 ? ", " : "") + format_tags(same_name[i].tags);
  if (same_name.size() > kListed) note += ", ... (sydradb series '" + options.series + "' lists them all)";
  return note;
}

}  // namespace

std::int64_t parse_query_time(std::string_view text, std::int64_t now_ms) {
  const auto bad = [&] {
    return std::invalid_argument(
        "bad time '" + std::string(text) +
        "': expected milliseconds since the Unix epoch, now, or now-<N><ms|s|m|h|d>");
  };
  if (text.substr(0, 3) == "now") {
    const std::string_view rest = text.substr(3);
    if (rest.empty()) return now_ms;
    if (rest[0] != '-' && rest[0] != '+') throw bad();
    std::int64_t offset = 0;
    if (!parse_duration(rest.substr(1), offset)) throw bad();
    std::int64_t result = 0;
    const bool overflow = rest[0] == '-' ? __builtin_sub_overflow(now_ms, offset, &result)
                                         : __builtin_add_overflow(now_ms, offset, &result);
    if (overflow) throw bad();
    return result;
  }
  std::int64_t ms = 0;
  const auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), ms);
  if (ec != std::errc{} || ptr != text.data() + text.size() || text.empty()) throw bad();
  return ms;
}

std::int64_t parse_query_step(std::string_view text) {
  std::int64_t step = 0;
  if (!parse_duration(text, step) || step <= 0) {
    throw std::invalid_argument("bad --step '" + std::string(text) +
                                "': expected a positive duration in milliseconds or <N><ms|s|m|h|d>");
  }
  return step;
}

namespace {

// start, end, step and agg, checked, into `body` (the fields both requests share).
void add_range_fields(const QueryOptions& options, std::int64_t now_ms, json& body) {
  const std::int64_t start = parse_query_time(options.start, now_ms);
  const std::int64_t end = parse_query_time(options.end, now_ms);
  if (start > end) {
    throw std::invalid_argument("START (" + std::to_string(start) + ") is after END (" + std::to_string(end) +
                                ")");
  }
  body["start"] = start;
  body["end"] = end;
  if (!options.step.empty()) body["step"] = parse_query_step(options.step);
  if (!options.agg.empty()) {
    static constexpr std::string_view kAggregations[] = {"avg", "min", "max", "sum", "count", "last"};
    bool known = false;
    for (std::string_view a : kAggregations) known = known || a == options.agg;
    if (!known) {
      throw std::invalid_argument("unknown --agg '" + options.agg +
                                  "': expected avg, min, max, sum, count or last");
    }
    if (options.step.empty()) throw std::invalid_argument("--agg needs --step");
    body["agg"] = options.agg;
  }
}

bool combines_series(std::string_view f) {
  return f == "sum" || f == "avg" || f == "min" || f == "max" || f == "count";
}

// The points of an answer's "points" array; throws std::runtime_error.
std::vector<QueryPoint> points_of(const json& doc) {
  if (!doc.is_array()) throw std::runtime_error("the answer is not a JSON array");
  std::vector<QueryPoint> points;
  points.reserve(doc.size());
  for (const json& p : doc) {
    const auto ts = p.is_object() ? p.find("ts") : p.end();
    const auto value = p.is_object() ? p.find("value") : p.end();
    if (ts == p.end() || value == p.end() || !ts->is_number_integer() ||
        !(value->is_number() || value->is_null())) {
      throw std::runtime_error("an element of the answer is not {\"ts\": int, \"value\": number}");
    }
    points.push_back({ts->get<std::int64_t>(),
                      value->is_null() ? std::numeric_limits<double>::quiet_NaN() : value->get<double>()});
  }
  return points;
}

// {"k": "v", ...} as views, for storage::format_series.
std::vector<std::pair<std::string_view, std::string_view>> labels_of(const json& object) {
  if (!object.is_object()) throw std::runtime_error("labels in the answer are not an object");
  std::vector<std::pair<std::string_view, std::string_view>> out;
  for (const auto& [k, v] : object.items()) {
    if (!v.is_string()) throw std::runtime_error("a label value in the answer is not a string");
    out.emplace_back(k, v.get_ref<const std::string&>());
  }
  return out;
}

std::string csv_field(const std::string& text) {
  if (text.find_first_of(",\"\n\r") == std::string::npos) return text;
  std::string out = "\"";
  for (const char c : text) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + '"';
}

}  // namespace

std::string make_range_request(const QueryOptions& options, std::int64_t now_ms) {
  if (options.series.empty()) throw std::invalid_argument("the series name is empty");
  json tags = json::object();
  for (const auto& [key, value] : parse_tag_flags(options.tags)) tags[key] = value;
  json body = {{"series", options.series}, {"tags", std::move(tags)}};
  add_range_fields(options, now_ms, body);
  return body.dump();
}

bool is_select_query(const QueryOptions& options) {
  return options.series.find('{') != std::string::npos || !options.across.empty() || !options.by.empty();
}

std::string make_select_request(const QueryOptions& options, std::int64_t now_ms) {
  if (options.series.empty()) throw std::invalid_argument("the selector is empty");
  std::string selector = options.series;
  if (!options.tags.empty()) {
    if (selector.find('{') != std::string::npos)
      throw std::invalid_argument("--tag cannot be combined with a selector: put the tags in it, e.g. " +
                                  options.series.substr(0, options.series.find('{')) + "{host=\"h1\"}");
    // A name with --tags: the same series as a range query would name, and any with more tags.
    const Tags parsed = parse_tag_flags(options.tags);
    std::vector<std::pair<std::string_view, std::string_view>> tags(parsed.begin(), parsed.end());
    selector = storage::format_series(options.series, tags);
  }
  try {
    (void)storage::parse_selector(selector);
  } catch (const storage::SelectorError& e) {
    throw std::invalid_argument(e.what());
  }
  json body = {{"match", selector}};
  add_range_fields(options, now_ms, body);
  std::string across = options.across;
  if (!across.empty() && !combines_series(across))
    throw std::invalid_argument("unknown --across '" + across + "': expected sum, avg, min, max or count");
  json by = json::array();
  for (const std::string& list : options.by) {
    std::string_view rest = list;
    for (;;) {
      const auto comma = rest.find(',');
      const std::string_view label = rest.substr(0, comma);
      if (label.empty()) throw std::invalid_argument("--by '" + list + "' holds an empty label name");
      by.push_back(std::string(label));
      if (comma == std::string_view::npos) break;
      rest.remove_prefix(comma + 1);
    }
  }
  if (!by.empty() && across.empty()) {
    // `--step 1h --agg max --by host`: max by host of the hourly maxima.
    if (!combines_series(options.agg))
      throw std::invalid_argument("--by needs --across sum, avg, min, max or count (or such an --agg)");
    across = options.agg;
  }
  if (!across.empty()) body["across"] = across;
  if (!by.empty()) body["by"] = std::move(by);
  return body.dump();
}

std::vector<QueryPoint> parse_range_answer(std::string_view body) {
  return points_of(json::parse(body, nullptr, /*allow_exceptions=*/false));
}

std::vector<QuerySeries> parse_select_answer(std::string_view body) {
  const json doc = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (!doc.is_object()) throw std::runtime_error("the answer is not a JSON object");
  std::vector<QuerySeries> out;
  if (const auto series = doc.find("series"); series != doc.end() && series->is_array()) {
    for (const json& s : *series) {
      if (!s.is_object() || !s.contains("series") || !s["series"].is_string() || !s.contains("points"))
        throw std::runtime_error("a series in the answer lacks \"series\" or \"points\"");
      const json tag_object = s.value("tags", json::object());  // labels_of keeps views into it
      const auto tags = labels_of(tag_object);
      out.push_back({storage::format_series(s["series"].get_ref<const std::string&>(), tags), 0,
                     points_of(s["points"])});
    }
    return out;
  }
  if (const auto groups = doc.find("groups"); groups != doc.end() && groups->is_array()) {
    for (const json& g : *groups) {
      if (!g.is_object() || !g.contains("points") || !g.contains("series_count") ||
          !g["series_count"].is_number_unsigned())
        throw std::runtime_error("a group in the answer lacks \"series_count\" or \"points\"");
      const json by_object = g.value("by", json::object());  // labels_of keeps views into it
      const auto labels = labels_of(by_object);
      std::string label = "{";
      for (std::size_t i = 0; i < labels.size(); ++i) {
        if (i > 0) label += ',';
        label += storage::format_matcher(storage::Matcher(
            std::string(labels[i].first), storage::MatchOp::equal, std::string(labels[i].second)));
      }
      label += '}';
      out.push_back({std::move(label), g["series_count"].get<std::uint64_t>(), points_of(g["points"])});
    }
    return out;
  }
  throw std::runtime_error("the answer has neither \"series\" nor \"groups\"");
}

std::string format_utc_millis(std::int64_t ms) {
  std::int64_t seconds = ms / 1000;
  std::int64_t millis = ms % 1000;
  if (millis < 0) {
    millis += 1000;
    --seconds;
  }
  const auto t = static_cast<std::time_t>(seconds);
  std::tm tm{};
  if (gmtime_r(&t, &tm) == nullptr) return "?";
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(millis));
  return buffer;
}

std::string format_points(const std::vector<QueryPoint>& points, QueryFormat format) {
  std::string out;
  switch (format) {
    case QueryFormat::json: {
      json doc = json::array();
      for (const QueryPoint& p : points) {
        doc.push_back({{"ts", p.ts}, {"value", std::isnan(p.value) ? json(nullptr) : json(p.value)}});
      }
      out = doc.dump();
      out += '\n';
      break;
    }
    case QueryFormat::csv:
      out = "ts,value\n";
      for (const QueryPoint& p : points) {
        out += std::to_string(p.ts);
        out += ',';
        if (!std::isnan(p.value)) out += shortest(p.value);
        out += '\n';
      }
      break;
    case QueryFormat::table: {
      std::size_t ts_width = 2;
      for (const QueryPoint& p : points) ts_width = std::max(ts_width, std::to_string(p.ts).size());
      const auto pad = [](std::string s, std::size_t width) {
        if (s.size() < width) s.append(width - s.size(), ' ');
        return s;
      };
      out = pad("ts", ts_width) + "  " + pad("time (UTC)", 24) + "  value\n";
      for (const QueryPoint& p : points) {
        out += pad(std::to_string(p.ts), ts_width) + "  " + pad(format_utc_millis(p.ts), 24) + "  " +
               shortest(p.value) + '\n';
      }
      out += "(" + std::to_string(points.size()) + (points.size() == 1 ? " point)\n" : " points)\n");
      break;
    }
  }
  return out;
}

std::string format_series(const std::vector<QuerySeries>& series, QueryFormat format) {
  std::string out;
  std::size_t points = 0;
  if (format == QueryFormat::csv) {
    out = "series,ts,value\n";
    for (const QuerySeries& s : series) {
      const std::string label = csv_field(s.label);
      for (const QueryPoint& p : s.points) {
        out += label;
        out += ',';
        out += std::to_string(p.ts);
        out += ',';
        if (!std::isnan(p.value)) out += shortest(p.value);
        out += '\n';
      }
    }
    return out;
  }
  for (const QuerySeries& s : series) {
    out += s.label;
    if (s.series_count > 0) out += "  (" + std::to_string(s.series_count) + " series)";
    out += '\n';
    std::string rows = format_points(s.points, QueryFormat::table);
    rows.erase(rows.rfind('('));  // the per-series count line: one total below instead
    out += rows;
    out += '\n';
    points += s.points.size();
  }
  const bool groups = !series.empty() && series.front().series_count > 0;
  out += "(" + std::to_string(series.size()) +
         (groups ? (series.size() == 1 ? " group, " : " groups, ") : " series, ") + std::to_string(points) +
         (points == 1 ? " point)\n" : " points)\n");
  return out;
}

int run_query(const QueryOptions& options) {
  const std::optional<DaemonClient> client =
      DaemonClient::open("query", options.url, options.token, options.timeout_seconds);
  if (!client) return kExitUsage;
  const std::int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                                  std::chrono::system_clock::now().time_since_epoch())
                                  .count();
  const bool select = is_select_query(options);
  std::string body;
  try {
    body = select ? make_select_request(options, now_ms) : make_range_request(options, now_ms);
  } catch (const std::invalid_argument& e) {
    client->fail(e.what());
    return kExitUsage;
  }
  HttpResponse response;
  if (const int code =
          client->call("POST", select ? "/api/v1/query/select" : "/api/v1/query/range", body, response);
      code != kExitOk)
    return code;
  std::vector<QueryPoint> points;
  try {
    if (!select) {
      points = parse_range_answer(response.body);
    } else {
      const std::vector<QuerySeries> series = parse_select_answer(response.body);  // checks it
      if (options.format == QueryFormat::json) {
        std::cout << response.body << (response.body.ends_with('\n') ? "" : "\n") << std::flush;
      } else {
        std::cout << format_series(series, options.format) << std::flush;
      }
      return kExitOk;
    }
  } catch (const std::runtime_error& e) {
    client->fail(client->url() + ": unexpected answer: " + e.what());
    return kExitHttpError;
  }
  std::cout << format_points(points, options.format) << std::flush;
  if (points.empty()) {
    if (const std::string note = missing_series_note(*client, options); !note.empty()) {
      client->fail(note);
      return kExitNoSeries;
    }
  }
  return kExitOk;
}

}  // namespace sydra::cli
