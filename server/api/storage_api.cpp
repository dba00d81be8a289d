#include "server/api/storage_api.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <chrono>
#include <cmath>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>
#include <system_error>
#include <vector>

#include "server/storage/engine.hpp"
#include "server/storage/ingest_parser.hpp"
#include "server/storage/selector.hpp"
#include "server/storage/series_key.hpp"

namespace sydra::server {

namespace {

using nlohmann::json;

// A bad parameter: the handler answers 400 with the message.
struct BadRequest {
  std::string message;
};

std::string dump(const json& j) {
  // Client bytes (series names, tag values) may be invalid UTF-8: replace, never throw.
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

template <class T>
T parse_integer(std::string_view name, const std::string& text) {
  T v{};
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size())
    throw BadRequest{"'" + std::string(name) + "' must be an integer, got '" + text + "'"};
  return v;
}

template <class T>
T integer_field(const json& body, const char* name) {
  const json& v = body.at(name);
  if (v.is_string()) return parse_integer<T>(name, v.get<std::string>());
  if (!v.is_number_integer()) throw BadRequest{std::string("'") + name + "' must be an integer"};
  if constexpr (std::is_unsigned_v<T>) {
    if (v.is_number_unsigned()) return v.get<T>();
    throw BadRequest{std::string("'") + name + "' must not be negative"};
  } else {
    if (v.is_number_unsigned() && v.get<std::uint64_t>() > static_cast<std::uint64_t>(INT64_MAX))
      throw BadRequest{std::string("'") + name + "' is out of range"};
    return v.get<T>();
  }
}

// The series id of name + tags (a JSON object of strings), as the ingest path computes it.
storage::SeriesId id_of(const std::string& name, const json& tags) {
  if (name.empty()) throw BadRequest{"'series' must not be empty"};
  if (name.find('\0') != std::string::npos) throw BadRequest{"'series' must not contain NUL"};
  if (!tags.is_object()) throw BadRequest{"'tags' must be a JSON object of strings"};
  std::vector<std::pair<std::string, std::string>> owned;
  for (const auto& [k, v] : tags.items()) {
    if (!v.is_string()) throw BadRequest{"tag '" + k + "' must have a string value"};
    owned.emplace_back(k, v.get<std::string>());
    if (owned.back().first.find('\0') != std::string::npos ||
        owned.back().second.find('\0') != std::string::npos)
      throw BadRequest{"tags must not contain NUL"};
  }
  std::vector<storage::TagView> views;
  for (const auto& [k, v] : owned) views.emplace_back(k, v);
  std::sort(views.begin(), views.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  std::string key;
  storage::append_canonical_key(key, name, views);
  return storage::series_id(key);
}

json parse_json(std::string_view text, const char* what) {
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded()) throw BadRequest{std::string(what) + " is not valid JSON"};
  return j;
}

// Fields of a range query, from the URL (GET) or a JSON body (POST).
struct RangeParams {
  std::optional<std::string> series;
  json tags = json::object();
  std::optional<storage::SeriesId> series_id;
  std::optional<storage::Timestamp> start, end;
  std::optional<std::int64_t> step;
  std::optional<std::string> agg;
};

RangeParams params_from_query(std::string_view query) {
  RangeParams p;
  p.series = http::find_query_param(query, "series");
  if (auto tags = http::find_query_param(query, "tags")) p.tags = parse_json(*tags, "'tags'");
  if (auto id = http::find_query_param(query, "series_id"))
    p.series_id = parse_integer<std::uint64_t>("series_id", *id);
  if (auto start = http::find_query_param(query, "start"))
    p.start = parse_integer<std::int64_t>("start", *start);
  if (auto end = http::find_query_param(query, "end")) p.end = parse_integer<std::int64_t>("end", *end);
  if (auto step = http::find_query_param(query, "step")) p.step = parse_integer<std::int64_t>("step", *step);
  p.agg = http::find_query_param(query, "agg");
  return p;
}

RangeParams params_from_body(std::string_view body) {
  const json j = parse_json(body, "the request body");
  if (!j.is_object()) throw BadRequest{"the request body must be a JSON object"};
  RangeParams p;
  if (j.contains("series")) {
    if (!j["series"].is_string()) throw BadRequest{"'series' must be a string"};
    p.series = j["series"].get<std::string>();
  }
  if (j.contains("tags")) p.tags = j["tags"];
  if (j.contains("series_id")) p.series_id = integer_field<std::uint64_t>(j, "series_id");
  if (j.contains("start")) p.start = integer_field<std::int64_t>(j, "start");
  if (j.contains("end")) p.end = integer_field<std::int64_t>(j, "end");
  if (j.contains("step")) p.step = integer_field<std::int64_t>(j, "step");
  if (j.contains("agg")) {
    if (!j["agg"].is_string()) throw BadRequest{"'agg' must be a string"};
    p.agg = j["agg"].get<std::string>();
  }
  return p;
}

void append_double(std::string& out, double v) {
  if (!std::isfinite(v)) {
    out += "null";  // JSON has no NaN or infinities
    return;
  }
  char buf[32];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, end);
}

void append_integer(std::string& out, std::int64_t v) {
  char buf[24];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, end);
}

// [{"ts": .., "value": ..}, ...]
void append_points(std::string& out, std::span<const storage::Point> points) {
  out.reserve(out.size() + 2 + points.size() * 40);
  out += '[';
  for (std::size_t i = 0; i < points.size(); ++i) {
    if (i > 0) out += ',';
    out += "{\"ts\":";
    append_integer(out, points[i].ts);
    out += ",\"value\":";
    append_double(out, points[i].value);
    out += '}';
  }
  out += ']';
}

// {"k": "v", ...} (JSON-escaped; invalid UTF-8 replaced).
void append_labels(std::string& out, std::span<const std::pair<std::string, std::string>> labels) {
  json object = json::object();
  for (const auto& [k, v] : labels) object[k] = v;
  out += dump(object);
}

// The fields of a many-series query, from the URL (GET) or a JSON body (POST).
struct SelectParams {
  std::optional<std::string> match;
  std::optional<storage::Timestamp> start, end;
  std::optional<std::int64_t> step;
  std::optional<std::string> agg;
  std::optional<std::string> across;
  std::vector<std::string> by;
};

// "host,dc" → {"host", "dc"}; names are trimmed of spaces, empty ones refused.
std::vector<std::string> split_by(std::string_view text) {
  std::vector<std::string> out;
  for (;;) {
    const auto comma = text.find(',');
    std::string_view item = text.substr(0, comma);
    while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
    while (!item.empty() && item.back() == ' ') item.remove_suffix(1);
    if (item.empty()) throw BadRequest{"'by' holds an empty label name"};
    out.emplace_back(item);
    if (comma == std::string_view::npos) return out;
    text.remove_prefix(comma + 1);
  }
}

SelectParams select_params_from_query(std::string_view query) {
  SelectParams p;
  auto text = [&](const char* name) { return http::find_query_param(query, name); };
  p.match = text("match");
  if (auto v = text("start")) p.start = parse_integer<std::int64_t>("start", *v);
  if (auto v = text("end")) p.end = parse_integer<std::int64_t>("end", *v);
  if (auto v = text("step")) p.step = parse_integer<std::int64_t>("step", *v);
  p.agg = text("agg");
  p.across = text("across");
  if (auto v = text("by")) p.by = split_by(*v);
  return p;
}

SelectParams select_params_from_body(std::string_view body) {
  const json j = parse_json(body, "the request body");
  if (!j.is_object()) throw BadRequest{"the request body must be a JSON object"};
  SelectParams p;
  auto string_field = [&](const char* name) -> std::optional<std::string> {
    if (!j.contains(name)) return std::nullopt;
    if (!j[name].is_string()) throw BadRequest{std::string("'") + name + "' must be a string"};
    return j[name].get<std::string>();
  };
  p.match = string_field("match");
  if (j.contains("start")) p.start = integer_field<std::int64_t>(j, "start");
  if (j.contains("end")) p.end = integer_field<std::int64_t>(j, "end");
  if (j.contains("step")) p.step = integer_field<std::int64_t>(j, "step");
  p.agg = string_field("agg");
  p.across = string_field("across");
  if (j.contains("by")) {
    const json& by = j["by"];
    if (by.is_string()) {
      p.by = split_by(by.get<std::string>());
    } else if (by.is_array()) {
      for (const json& label : by) {
        if (!label.is_string() || label.get<std::string>().empty())
          throw BadRequest{"'by' must be an array of label names"};
        p.by.push_back(label.get<std::string>());
      }
    } else {
      throw BadRequest{"'by' must be an array of label names"};
    }
  }
  return p;
}

// start, end, step and agg — the fields query/range and query/select share — checked
// into `start`, `end`, `step` and `agg` (step 0 = raw points; with a step, agg defaults to avg).
template <class Params>
void check_range_fields(const Params& p, storage::Timestamp& start, storage::Timestamp& end,
                        std::int64_t& step, storage::Aggregation& agg) {
  if (!p.start) throw BadRequest{"missing 'start'"};
  if (!p.end) throw BadRequest{"missing 'end'"};
  start = *p.start;
  end = *p.end;
  if (start > end) throw BadRequest{"'start' is after 'end'"};
  if (p.step) {
    if (*p.step <= 0) throw BadRequest{"'step' must be a positive number of milliseconds"};
    step = *p.step;
    agg = storage::Aggregation::avg;
  }
  if (p.agg) {
    if (!p.step) throw BadRequest{"'agg' needs 'step'"};
    if (!storage::parse_aggregation(*p.agg, agg))
      throw BadRequest{"unknown 'agg' '" + *p.agg + "': expected avg, min, max, sum, count or last"};
  }
}

const char* unit_name(storage::TimeUnit unit) {
  switch (unit) {
    case storage::TimeUnit::seconds:
      return "seconds";
    case storage::TimeUnit::milliseconds:
      return "milliseconds";
    case storage::TimeUnit::microseconds:
      return "microseconds";
    case storage::TimeUnit::nanoseconds:
      return "nanoseconds";
  }
  return "?";
}

// The answer's warning about timestamps in another unit than the request's.
json unit_warning(const storage::UnitMismatch& m, storage::TimeUnit unit) {
  const std::string text =
      "\"ts\" looks like " + std::string(unit_name(m.looks_like)) + " since the Unix epoch but is read as " +
      unit_name(unit) + ": send ?precision=" + storage::to_string(m.looks_like) + ", or " + unit_name(unit);
  return {{"line", m.first_line},
          {"lines", m.lines},
          {"ts", m.first_ts},
          {"looks_like", storage::to_string(m.looks_like)},
          {"warning", text}};
}

}  // namespace

void LogThrottle::log(const std::function<void(std::uint64_t unlogged)>& write) {
  const std::int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                                  std::chrono::steady_clock::now().time_since_epoch())
                                  .count();
  std::int64_t last = last_ms_.load(std::memory_order_relaxed);
  if (now_ms - last >= kPeriodMs &&
      last_ms_.compare_exchange_strong(last, now_ms, std::memory_order_relaxed)) {
    write(unlogged_.exchange(0, std::memory_order_relaxed));
  } else {
    unlogged_.fetch_add(1, std::memory_order_relaxed);
  }
}

StorageApi::StorageApi(storage::Engine& engine, const Config& config) : engine_(engine), config_(config) {}

http::Response StorageApi::ingest(const http::Request& request, WorkerContext& worker) const {
  storage::TimeUnit unit = storage::TimeUnit::milliseconds;
  if (const std::string precision = http::query_param(request.query, "precision");
      !precision.empty() && !storage::parse_time_unit(precision, unit))
    return http::json_error(400, "unknown 'precision' '" + precision + "': expected s, ms, us or ns");
  storage::ParsedBatch& batch = worker.batch;
  worker.parser.parse(request.body, batch, unit);

  storage::IngestOutcome outcome;
  try {
    outcome = engine_.ingest(batch, worker.ingest_scratch);
  } catch (const std::system_error& e) {
    return http::json_error(500, std::string("cannot write the WAL: ") + e.what());
  }
  if (outcome.status == storage::IngestStatus::busy) {
    http::Response r = http::json_error(
        503, "the memtable is full and flushing cannot keep up; nothing was stored, retry later");
    r.headers.emplace_back("Retry-After", "1");
    return r;
  }
  if (outcome.status == storage::IngestStatus::disk_full) {
    // 507: a 5xx, which remote-write clients retry; Retry-After says when.
    http::Response r = http::json_error(507, "the disk holding data_dir " + config_.data_dir + " is full (" +
                                                 outcome.error + "); nothing was stored, retry later");
    r.headers.emplace_back("Retry-After", "1");
    return r;
  }
  if (outcome.status == storage::IngestStatus::stopped) {
    return http::json_error(503, "writes are stopped after lost durability (" + outcome.error +
                                     "); nothing was stored; the daemon takes writes again after a restart");
  }

  std::string body;
  body.reserve(64);
  body += "{\"ingested\":";
  body += std::to_string(outcome.ingested);
  body += ",\"rejected\":";
  body += std::to_string(batch.rejected);
  body += ",\"errors\":";
  json errors = json::array();
  for (const storage::IngestLineError& e : batch.errors)
    errors.push_back({{"line", e.line}, {"error", std::string(e.message)}});
  body += dump(errors);
  if (batch.unit_mismatch.lines > 0) {
    const json warning = unit_warning(batch.unit_mismatch, unit);
    unit_warnings_.log([&](std::uint64_t unlogged) {
      spdlog::warn("ingest: {} line{} (the first: line {}, ts {}): {}{}", batch.unit_mismatch.lines,
                   batch.unit_mismatch.lines == 1 ? "" : "s", batch.unit_mismatch.first_line,
                   batch.unit_mismatch.first_ts, warning["warning"].get<std::string>(),
                   unlogged > 0
                       ? " (and " + std::to_string(unlogged) + " such requests since the last warning)"
                       : std::string());
    });
    body += ",\"warnings\":";
    body += dump(json::array({warning}));
  }
  body += '}';
  return http::json_ok(std::move(body));
}

http::Response StorageApi::query_range(const http::Request& request) const {
  storage::RangeQuery q;
  try {
    const RangeParams p =
        request.method == "POST" ? params_from_body(request.body) : params_from_query(request.query);
    if (p.series && p.series_id)
      throw BadRequest{"give either 'series' (with 'tags') or 'series_id', not both"};
    if (p.series) {
      q.id = id_of(*p.series, p.tags);
    } else if (p.series_id) {
      q.id = *p.series_id;
    } else {
      throw BadRequest{"missing 'series' or 'series_id'"};
    }
    check_range_fields(p, q.start, q.end, q.step, q.agg);
  } catch (const BadRequest& e) {
    return http::json_error(400, e.message);
  }
  q.max_points = config_.max_query_points;

  std::vector<storage::Point> points;
  if (engine_.query_range(q, points) == storage::QueryStatus::too_large)
    return http::json_error(
        413, "the answer has more than max_query_points=" + std::to_string(config_.max_query_points) +
                 " points; narrow the range or downsample with 'step'");
  std::string body;
  append_points(body, points);
  return http::json_ok(std::move(body));
}

http::Response StorageApi::select(const http::Request& request) const {
  storage::SelectQuery q;
  try {
    const SelectParams p = request.method == "POST" ? select_params_from_body(request.body)
                                                    : select_params_from_query(request.query);
    if (!p.match) throw BadRequest{"missing 'match' (a selector such as cpu{host=~\"h1.*\"})"};
    try {
      q.matchers = storage::parse_selector(*p.match);
    } catch (const storage::SelectorError& e) {
      throw BadRequest{e.what()};
    }
    check_range_fields(p, q.start, q.end, q.step, q.agg);
    if (p.across) {
      if (!storage::parse_aggregation(*p.across, q.across) || !storage::combines_series(q.across))
        throw BadRequest{"unknown 'across' '" + *p.across + "': expected sum, avg, min, max or count"};
    }
    if (!p.by.empty() && !p.across) throw BadRequest{"'by' needs 'across'"};
    q.by = p.by;
  } catch (const BadRequest& e) {
    return http::json_error(400, e.message);
  }
  q.max_series = config_.max_query_series;
  q.max_points = config_.max_query_points;

  const storage::SelectResult result = engine_.select(q);
  if (result.status == storage::SelectStatus::too_many_series)
    return http::json_error(
        413, "the selector matches " + std::to_string(result.matched_series) +
                 " series, more than max_query_series=" + std::to_string(config_.max_query_series) +
                 "; narrow it with more matchers");
  if (result.status == storage::SelectStatus::too_many_points)
    return http::json_error(
        413, "the answer has more than max_query_points=" + std::to_string(config_.max_query_points) +
                 " points; narrow the range or the selector, or downsample with a larger 'step'");

  std::string body;
  if (q.across == storage::Aggregation::none) {
    body += "{\"series\":[";
    for (std::size_t i = 0; i < result.series.size(); ++i) {
      const storage::SeriesPointsResult& s = result.series[i];
      if (i > 0) body += ',';
      body += "{\"id\":";
      body += std::to_string(s.series.id);
      body += ",\"series\":";
      body += dump(s.series.name);
      body += ",\"tags\":";
      append_labels(body, s.series.tags);
      body += ",\"points\":";
      append_points(body, s.points);
      body += '}';
    }
  } else {
    body += "{\"groups\":[";
    for (std::size_t i = 0; i < result.groups.size(); ++i) {
      const storage::GroupResult& g = result.groups[i];
      if (i > 0) body += ',';
      body += "{\"by\":";
      append_labels(body, g.labels);
      body += ",\"series_count\":";
      body += std::to_string(g.series);
      body += ",\"points\":";
      append_points(body, g.points);
      body += '}';
    }
  }
  body += "]}";
  return http::json_ok(std::move(body));
}

http::Response StorageApi::find(const http::Request& request) const {
  std::vector<std::pair<std::string, std::string>> tags;
  bool any = false;
  try {
    const json j = parse_json(request.body, "the request body");
    if (!j.is_object()) throw BadRequest{"the request body must be a JSON object"};
    if (!j.contains("tags")) throw BadRequest{"missing 'tags'"};
    if (!j["tags"].is_object()) throw BadRequest{"'tags' must be a JSON object of strings"};
    for (const auto& [k, v] : j["tags"].items()) {
      if (!v.is_string()) throw BadRequest{"tag '" + k + "' must have a string value"};
      tags.emplace_back(k, v.get<std::string>());
    }
    if (j.contains("op")) {
      if (!j["op"].is_string()) throw BadRequest{"'op' must be \"and\" or \"or\""};
      const std::string op = j["op"].get<std::string>();
      if (op == "or") {
        any = true;
      } else if (op != "and") {
        throw BadRequest{"unknown 'op' '" + op + "': expected \"and\" or \"or\""};
      }
    }
  } catch (const BadRequest& e) {
    return http::json_error(400, e.message);
  }
  json out = json::array();
  for (storage::SeriesId id : engine_.find(tags, any)) out.push_back(id);
  return http::json_ok(dump(out));
}

http::Response StorageApi::series(const http::Request& request) const {
  // Optional filters: the name, and tags the series must carry (others may be there too).
  const std::string name = http::query_param(request.query, "series");
  json wanted = json::object();
  try {
    if (const std::string tags = http::query_param(request.query, "tags"); !tags.empty()) {
      wanted = parse_json(tags, "'tags'");
      if (!wanted.is_object()) throw BadRequest{"'tags' must be a JSON object of strings"};
      for (const auto& [k, v] : wanted.items())
        if (!v.is_string()) throw BadRequest{"tag '" + k + "' must have a string value"};
    }
  } catch (const BadRequest& e) {
    return http::json_error(400, e.message);
  }
  const auto carries = [&wanted](const storage::SeriesInfo& s) {
    for (const auto& item : wanted.items()) {
      const std::string& key = item.key();  // a named variable: clang 14 cannot capture a structured binding
      const auto it =
          std::find_if(s.tags.begin(), s.tags.end(), [&](const auto& t) { return t.first == key; });
      if (it == s.tags.end() || it->second != item.value().get<std::string>()) return false;
    }
    return true;
  };
  json out = json::array();
  for (const storage::SeriesInfo& s : engine_.list_series()) {
    if ((!name.empty() && s.name != name) || !carries(s)) continue;
    json tags = json::object();
    for (const auto& [k, v] : s.tags) tags[k] = v;
    out.push_back({{"id", s.id}, {"series", s.name}, {"tags", std::move(tags)}});
  }
  return http::json_ok(dump(out));
}

}  // namespace sydra::server
