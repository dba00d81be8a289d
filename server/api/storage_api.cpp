#include "server/api/storage_api.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>
#include <system_error>
#include <vector>

#include "alloc/adapters.hpp"
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

// Whether the URL query has parameter `name` (query_param cannot tell absent from empty).
bool has_param(std::string_view query, std::string_view name) {
  while (!query.empty()) {
    const auto amp = query.find('&');
    const std::string_view pair = query.substr(0, amp);
    if (pair.substr(0, pair.find('=')) == name) return true;
    if (amp == std::string_view::npos) break;
    query.remove_prefix(amp + 1);
  }
  return false;
}

RangeParams params_from_query(std::string_view query) {
  RangeParams p;
  auto present = [&](const char* name) { return has_param(query, name); };
  if (present("series")) p.series = http::query_param(query, "series");
  if (present("tags")) p.tags = parse_json(http::query_param(query, "tags"), "'tags'");
  if (present("series_id"))
    p.series_id = parse_integer<std::uint64_t>("series_id", http::query_param(query, "series_id"));
  if (present("start")) p.start = parse_integer<std::int64_t>("start", http::query_param(query, "start"));
  if (present("end")) p.end = parse_integer<std::int64_t>("end", http::query_param(query, "end"));
  if (present("step")) p.step = parse_integer<std::int64_t>("step", http::query_param(query, "step"));
  if (present("agg")) p.agg = http::query_param(query, "agg");
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
  auto text = [&](const char* name) -> std::optional<std::string> {
    if (!has_param(query, name)) return std::nullopt;
    return http::query_param(query, name);
  };
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

}  // namespace

StorageApi::StorageApi(storage::Engine& engine, const Config& config, alloc::SmallPoolAllocator& allocator)
    : engine_(engine), config_(config), allocator_(allocator) {}

void StorageApi::add_routes(http::Router& router) {
  router.add("POST", "/api/v1/ingest", [this](const http::Request& r) { return ingest(r); });
  router.add("GET", "/api/v1/query/range", [this](const http::Request& r) { return query_range(r); });
  router.add("POST", "/api/v1/query/range", [this](const http::Request& r) { return query_range(r); });
  router.add("GET", "/api/v1/query/select", [this](const http::Request& r) { return select(r); });
  router.add("POST", "/api/v1/query/select", [this](const http::Request& r) { return select(r); });
  router.add("POST", "/api/v1/query/find", [this](const http::Request& r) { return find(r); });
  router.add("GET", "/api/v1/series", [this](const http::Request& r) { return series(r); });
}

http::Response StorageApi::ingest(const http::Request& request) const {
  // One parser and one batch per worker thread, kept between requests; the batch's vectors
  // allocate on this worker's shard.
  struct WorkerState {
    alloc::PoolResource resource;
    storage::ParsedBatch batch;
    storage::NdjsonParser parser;
    WorkerState(alloc::SmallPoolAllocator& a, std::size_t max_line)
        : resource(a), batch(&resource), parser(max_line) {}
  };
  thread_local std::unique_ptr<WorkerState> state;
  thread_local std::size_t state_max_line = 0;
  if (!state || state_max_line != config_.max_line_bytes) {
    state = std::make_unique<WorkerState>(allocator_, config_.max_line_bytes);
    state_max_line = config_.max_line_bytes;
  }
  storage::ParsedBatch& batch = state->batch;
  if (state->parser.parse(request.body, batch) == storage::NdjsonParser::Status::line_too_long)
    return http::json_error(413, "a line is longer than max_line_bytes=" +
                                     std::to_string(config_.max_line_bytes) + "; nothing was stored");

  storage::IngestOutcome outcome;
  try {
    outcome = engine_.ingest(batch);
  } catch (const std::system_error& e) {
    return http::json_error(500, std::string("cannot write the WAL: ") + e.what());
  }
  if (outcome.status == storage::IngestStatus::busy) {
    http::Response r = http::json_error(
        503, "the memtable is full and flushing cannot keep up; nothing was stored, retry later");
    r.headers.emplace_back("Retry-After", "1");
    return r;
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

http::Response StorageApi::series(const http::Request&) const {
  json out = json::array();
  for (const storage::SeriesInfo& s : engine_.list_series()) {
    json tags = json::object();
    for (const auto& [k, v] : s.tags) tags[k] = v;
    out.push_back({{"id", s.id}, {"series", s.name}, {"tags", std::move(tags)}});
  }
  return http::json_ok(dump(out));
}

}  // namespace sydra::server
