// The NDJSON ingest parser (see ingest_parser.hpp): simdjson's On-Demand API, one document
// per line.
//
// Costs, per request and per line:
//   - the body is copied once into a buffer with SIMDJSON_PADDING spare bytes; each line is
//     a view into it, so simdjson may read past a line's end without a copy per line (the
//     bytes it reads there are the next line's, or zeros after the last line);
//   - the simdjson parser, the tag scratch vector and the last-series cache are the
//     parser's own and are reused: a line allocates only when the batch's vectors grow
//     (through the batch's memory resource) and for the first kMaxReportedErrors messages;
//   - the last series seen (its name and the raw bytes of its "tags" object) is cached with
//     its canonical key and id: a run of lines for one series neither sorts nor hashes, and
//     within one batch they share one copy of the key in batch.keys.
// Unknown fields are walked and checked (a line with malformed JSON anywhere is rejected,
// not only in the fields read), up to kMaxUnknownDepth levels of nesting.
#include "server/storage/ingest_parser.hpp"

#include <simdjson.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <optional>
#include <string>
#include <utility>

#include "server/storage/series_key.hpp"

namespace sydra::storage {

namespace od = simdjson::ondemand;

#define SYDRA_INGEST_INLINE inline __attribute__((always_inline))

void ParsedBatch::clear() noexcept {
  points.clear();
  keys.clear();
  rejected = 0;
  errors.clear();
  unit_mismatch = UnitMismatch{};
}

const char* to_string(TimeUnit unit) noexcept {
  switch (unit) {
    case TimeUnit::seconds:
      return "s";
    case TimeUnit::milliseconds:
      return "ms";
    case TimeUnit::microseconds:
      return "us";
    case TimeUnit::nanoseconds:
      return "ns";
  }
  return "?";
}

bool parse_time_unit(std::string_view text, TimeUnit& out) noexcept {
  for (TimeUnit u :
       {TimeUnit::seconds, TimeUnit::milliseconds, TimeUnit::microseconds, TimeUnit::nanoseconds}) {
    if (text == to_string(u)) {
      out = u;
      return true;
    }
  }
  return false;
}

namespace {

constexpr std::size_t kMaxUnknownDepth = 32;

// The unit a "ts" would be a date from 2001-09-09 to 2286-11-20 in (its decade of powers of
// 1000), if any.
std::optional<TimeUnit> apparent_unit(Timestamp ts) noexcept {
  if (ts < 1'000'000'000) return std::nullopt;
  if (ts < 10'000'000'000) return TimeUnit::seconds;
  if (ts < 1'000'000'000'000) return std::nullopt;
  if (ts < 10'000'000'000'000) return TimeUnit::milliseconds;
  if (ts < 1'000'000'000'000'000) return std::nullopt;
  if (ts < 10'000'000'000'000'000) return TimeUnit::microseconds;
  if (ts < 1'000'000'000'000'000'000) return std::nullopt;
  return TimeUnit::nanoseconds;
}

// floor(a / b) for b > 0.
constexpr std::int64_t floor_div(std::int64_t a, std::int64_t b) noexcept {
  return a / b - ((a % b != 0 && a < 0) ? 1 : 0);
}
constexpr std::size_t kMaxQuotedBytes = 40;  // of a tag key quoted in an error message

bool is_blank(const char* p, std::size_t n) noexcept {
  for (std::size_t i = 0; i < n; ++i) {
    if (p[i] != ' ' && p[i] != '\t' && p[i] != '\r') return false;
  }
  return true;
}

bool has_nul(std::string_view s) noexcept {
  return std::memchr(s.data(), '\0', s.size()) != nullptr;
}

// A short, printable rendering of `s` in quotes for error messages.
void append_quoted(std::string& out, std::string_view s) {
  out += '"';
  const std::size_t n = std::min(s.size(), kMaxQuotedBytes);
  for (std::size_t i = 0; i < n; ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20 || c == 0x7f) {
      static constexpr char kHex[] = "0123456789abcdef";
      out += "\\u00";
      out += kHex[c >> 4];
      out += kHex[c & 15];
    } else {
      out += static_cast<char>(c);
    }
  }
  if (s.size() > n) out += "...";
  out += '"';
}

const char* describe_json_error(simdjson::error_code error) noexcept {
  switch (error) {
    case simdjson::UNCLOSED_STRING:
      return "invalid JSON: unterminated string";
    case simdjson::INCOMPLETE_ARRAY_OR_OBJECT:
      return "invalid JSON: truncated (unclosed object or array)";
    case simdjson::TAPE_ERROR:
      return "invalid JSON: malformed object or array (a missing or extra comma, colon, brace or bracket)";
    case simdjson::UTF8_ERROR:
      return "invalid JSON: not valid UTF-8";
    case simdjson::UNESCAPED_CHARS:
      return "invalid JSON: a control character inside a string";
    case simdjson::STRING_ERROR:
      return "invalid JSON: a bad escape sequence in a string";
    case simdjson::NUMBER_ERROR:
      return "invalid JSON: a malformed number";
    case simdjson::T_ATOM_ERROR:
    case simdjson::F_ATOM_ERROR:
    case simdjson::N_ATOM_ERROR:
      return "invalid JSON: a bad literal (true, false and null are the only ones)";
    case simdjson::DEPTH_ERROR:
      return "invalid JSON: nested too deeply";
    case simdjson::EMPTY:
      return "invalid JSON: no value";
    default:
      return "invalid JSON";
  }
}

// Walks a value of a field the parser does not use, so that malformed JSON in it is seen.
simdjson::error_code check_value(od::value value, std::size_t depth) noexcept {
  if (depth > kMaxUnknownDepth) return simdjson::DEPTH_ERROR;
  od::json_type type;
  if (auto error = value.type().get(type)) return error;
  switch (type) {
    case od::json_type::object: {
      od::object object;
      if (auto error = value.get_object().get(object)) return error;
      for (auto field_result : object) {
        od::field field;
        if (auto error = std::move(field_result).get(field)) return error;
        std::string_view key;
        if (auto error = field.unescaped_key().get(key)) return error;
        if (auto error = check_value(field.value(), depth + 1)) return error;
      }
      return simdjson::SUCCESS;
    }
    case od::json_type::array: {
      od::array array;
      if (auto error = value.get_array().get(array)) return error;
      for (auto element_result : array) {
        od::value element;
        if (auto error = std::move(element_result).get(element)) return error;
        if (auto error = check_value(element, depth + 1)) return error;
      }
      return simdjson::SUCCESS;
    }
    case od::json_type::number: {
      double d;
      const auto error = value.get_double().get(d);
      // A well-formed number outside the double range is still JSON.
      return error == simdjson::NUMBER_OUT_OF_RANGE ? simdjson::SUCCESS : error;
    }
    case od::json_type::string: {
      std::string_view s;
      return value.get_string().get(s);
    }
    case od::json_type::boolean: {
      bool b;
      return value.get_bool().get(b);
    }
    case od::json_type::null: {
      bool is_null = false;
      if (auto error = value.is_null().get(is_null)) return error;
      return is_null ? simdjson::SUCCESS : simdjson::N_ATOM_ERROR;
    }
  }
  return simdjson::INCORRECT_TYPE;
}

// A field's key. The common key without escapes is a view of the input (no copy into
// simdjson's string buffer); a key with one is unescaped.
SYDRA_INGEST_INLINE simdjson::error_code field_key(od::field& field, std::string_view& key) noexcept {
  const char* raw = field.key().raw();  // just after the opening quote
  const char* p = raw;
  while (*p != '"' && *p != '\\') ++p;  // the string is closed within the line: stage 1 checked
  if (*p == '"') {
    key = std::string_view(raw, static_cast<std::size_t>(p - raw));
    return simdjson::SUCCESS;
  }
  return field.unescaped_key().get(key);
}

}  // namespace

struct NdjsonParser::Impl {
  explicit Impl(std::size_t max_line) : max_line_bytes(max_line) {}

  void parse(std::string_view body, ParsedBatch& out, TimeUnit unit);
  // Parses one non-blank line into out.points; returns "" or the reason for rejecting it.
  std::string_view parse_line(const char* line, std::size_t size, std::size_t capacity, ParsedBatch& out);
  // The line's "ts" in milliseconds (from unit_), noting a unit mismatch; "" or the reason
  // for rejecting the line.
  SYDRA_INGEST_INLINE std::string_view to_millis(Timestamp& ts, ParsedBatch& out) {
    // The common line: milliseconds of this era (2001-09-09 to 2286-11-20), nothing to do.
    constexpr Timestamp kEraStart = 1'000'000'000'000, kEraEnd = 10'000'000'000'000;
    if (unit_ == TimeUnit::milliseconds && ts >= kEraStart && ts < kEraEnd) [[likely]]
      return {};
    return convert_millis(ts, out);
  }
  std::string_view convert_millis(Timestamp& ts, ParsedBatch& out);
  // Counts a rejected line and keeps its message among the first kMaxReportedErrors. Out of
  // line, so that the loop calling them stays small.
  [[gnu::noinline]] void reject(std::uint64_t line, std::string_view error, ParsedBatch& out);
  [[gnu::noinline]] void reject_too_long(std::uint64_t line, std::size_t size, ParsedBatch& out);
  // The series of the line just parsed (name, tags_, raw tags bytes) as key and id,
  // appended to out.keys unless the last series is the same.
  std::string_view add_point(std::string_view name, std::string_view tags_raw, Timestamp ts, double value,
                             ParsedBatch& out);

  std::string_view fail(std::string_view what) {
    message_.assign(what);
    return message_;
  }
  std::string_view fail_field(const char* before, std::string_view key, const char* after) {
    message_.assign(before);
    append_quoted(message_, key);
    message_ += after;
    return message_;
  }

  std::size_t max_line_bytes;
  TimeUnit unit_ = TimeUnit::milliseconds;  // of the request being parsed
  std::uint64_t line_number_ = 0;           // of the line being parsed
  od::parser parser;
  std::unique_ptr<char[]> buffer;  // the body plus SIMDJSON_PADDING bytes
  std::size_t buffer_capacity = 0;
  std::vector<TagView> tags;  // of the current line, views into the parser's string buffer
  std::string message_;       // the last rejection's message

  // The last series, across batches.
  bool last_valid = false;
  std::string last_name;
  std::string last_tags_raw;  // the bytes of its "tags" value ("" without one)
  std::string last_key;
  SeriesId last_id = 0;
  // Where last_key is in the current batch's keys; valid when last_batch == batch_number.
  std::uint64_t last_batch = 0;
  std::uint64_t batch_number = 0;
  std::uint32_t last_offset = 0;
};

NdjsonParser::NdjsonParser(std::size_t max_line_bytes) : impl_(std::make_unique<Impl>(max_line_bytes)) {
  // Allocate simdjson's buffers once, for lines up to the limit or 1 MiB, whichever is less
  // (they take about five times the capacity); a longer line grows them when it comes. A
  // failure here (out of memory) leaves the parser to allocate on the first line, which then
  // reports it.
  constexpr std::size_t kEagerCapacity = std::size_t{1} << 20;
  [[maybe_unused]] const auto error =
      impl_->parser.allocate(std::clamp<std::size_t>(max_line_bytes, 64, kEagerCapacity));
}

NdjsonParser::~NdjsonParser() = default;

void NdjsonParser::parse(std::string_view body, ParsedBatch& out, TimeUnit unit) {
  impl_->parse(body, out, unit);
}

void NdjsonParser::Impl::parse(std::string_view body, ParsedBatch& out, TimeUnit unit) {
  out.clear();
  ++batch_number;
  unit_ = unit;
  const std::size_t needed = body.size() + simdjson::SIMDJSON_PADDING;
  if (needed > buffer_capacity) {
    const std::size_t capacity = std::max(needed, buffer_capacity + buffer_capacity / 2);
    buffer.reset(new char[capacity]);
    buffer_capacity = capacity;
  }
  char* const base = buffer.get();
  if (!body.empty()) std::memcpy(base, body.data(), body.size());
  std::memset(base + body.size(), 0, simdjson::SIMDJSON_PADDING);

  const std::size_t n = body.size();
  std::size_t pos = 0;
  std::uint64_t line_number = 0;
  while (pos < n) {
    ++line_number;
    const char* line = base + pos;
    const auto* newline = static_cast<const char*>(std::memchr(line, '\n', n - pos));
    const std::size_t end = newline != nullptr ? static_cast<std::size_t>(newline - base) : n;
    std::size_t size = end - pos;
    pos = end + 1;
    if (size > max_line_bytes) [[unlikely]] {
      reject_too_long(line_number, size, out);
      continue;
    }
    if (size > 0 && line[size - 1] == '\r') --size;
    if (size == 0 || (line[0] != '{' && is_blank(line, size))) continue;

    const std::size_t capacity = static_cast<std::size_t>(base + n - line) + simdjson::SIMDJSON_PADDING;
    line_number_ = line_number;
    const std::string_view error = parse_line(line, size, capacity, out);
    if (!error.empty()) [[unlikely]]
      reject(line_number, error, out);
  }
}

void NdjsonParser::Impl::reject(std::uint64_t line, std::string_view error, ParsedBatch& out) {
  ++out.rejected;
  if (out.errors.size() < ParsedBatch::kMaxReportedErrors)
    out.errors.push_back(
        IngestLineError{line, std::pmr::string(error, out.errors.get_allocator().resource())});
}

void NdjsonParser::Impl::reject_too_long(std::uint64_t line, std::size_t size, ParsedBatch& out) {
  reject(line,
         fail("the line is " + std::to_string(size) +
              " bytes, over max_line_bytes=" + std::to_string(max_line_bytes)),
         out);
}

std::string_view NdjsonParser::Impl::convert_millis(Timestamp& ts, ParsedBatch& out) {
  const std::optional<TimeUnit> looks_like = apparent_unit(ts);
  if (looks_like && *looks_like != unit_) [[unlikely]] {
    UnitMismatch& m = out.unit_mismatch;
    if (m.lines == 0) m = UnitMismatch{0, line_number_, ts, *looks_like};
    ++m.lines;
  }
  switch (unit_) {
    case TimeUnit::milliseconds:
      return {};
    case TimeUnit::seconds:
      if (__builtin_mul_overflow(ts, Timestamp{1000}, &ts))
        return "\"ts\" in seconds is out of the millisecond range";
      return {};
    case TimeUnit::microseconds:
      ts = floor_div(ts, 1000);
      return {};
    case TimeUnit::nanoseconds:
      ts = floor_div(ts, 1'000'000);
      return {};
  }
  return {};
}

std::string_view NdjsonParser::Impl::parse_line(const char* line, std::size_t size, std::size_t capacity,
                                                ParsedBatch& out) {
  od::document doc;
  if (auto error = parser.iterate(line, size, capacity).get(doc)) return describe_json_error(error);
  od::object object;
  if (auto error = doc.get_object().get(object)) {
    if (error == simdjson::INCORRECT_TYPE) return "not a JSON object";
    // simdjson checks up front that an object's line ends with '}'.
    if (error == simdjson::INCOMPLETE_ARRAY_OR_OBJECT) {
      return "invalid JSON: the line does not end with the object's '}' (truncated, or characters after it)";
    }
    return describe_json_error(error);
  }

  std::string_view name;
  std::string_view tags_raw;
  Timestamp ts = 0;
  double value = 0;
  bool have_name = false, have_ts = false, have_value = false, have_tags = false;
  tags.clear();

  for (auto field_result : object) {
    od::field field;
    if (auto error = std::move(field_result).get(field)) return describe_json_error(error);
    std::string_view key;
    if (auto error = field_key(field, key)) return describe_json_error(error);
    od::value v = field.value();

    if (key == "series") {
      if (have_name) return "duplicate field \"series\"";
      have_name = true;
      if (auto error = v.get_string().get(name)) {
        return error == simdjson::INCORRECT_TYPE ? "\"series\" must be a string" : describe_json_error(error);
      }
      if (name.empty()) return "\"series\" is empty";
      if (has_nul(name)) return "\"series\" contains a NUL character";
    } else if (key == "ts") {
      if (have_ts) return "duplicate field \"ts\"";
      have_ts = true;
      if (auto error = v.get_int64().get(ts)) {
        od::json_type type;
        if (v.type().get(type) != simdjson::SUCCESS || type != od::json_type::number) {
          return "\"ts\" must be an integer (milliseconds since the Unix epoch)";
        }
        od::number_type number_type;
        if (error == simdjson::NUMBER_OUT_OF_RANGE ||
            (v.get_number_type().get(number_type) == simdjson::SUCCESS &&
             number_type == od::number_type::unsigned_integer)) {
          return "\"ts\" is out of the signed 64-bit range";
        }
        if (error == simdjson::INCORRECT_TYPE) {
          return "\"ts\" must be an integer (milliseconds since the Unix epoch), not a fraction or exponent";
        }
        return describe_json_error(error);
      }
    } else if (key == "value") {
      if (have_value) return "duplicate field \"value\"";
      have_value = true;
      if (auto error = v.get_double().get(value)) {
        if (error == simdjson::INCORRECT_TYPE) return "\"value\" must be a number";
        if (error == simdjson::NUMBER_OUT_OF_RANGE || error == simdjson::NUMBER_ERROR) {
          return "\"value\" is not a valid number or out of the double range";
        }
        return describe_json_error(error);
      }
    } else if (key == "tags") {
      if (have_tags) return "duplicate field \"tags\"";
      have_tags = true;
      const std::string_view token = v.raw_json_token();
      od::object tag_object;
      if (auto error = v.get_object().get(tag_object)) {
        return error == simdjson::INCORRECT_TYPE ? "\"tags\" must be an object of strings"
                                                 : describe_json_error(error);
      }
      for (auto tag_result : tag_object) {
        od::field tag;
        if (auto error = std::move(tag_result).get(tag)) return describe_json_error(error);
        std::string_view tag_key, tag_value;
        if (auto error = tag.unescaped_key().get(tag_key)) return describe_json_error(error);
        if (auto error = tag.value().get_string().get(tag_value)) {
          return error == simdjson::INCORRECT_TYPE ? fail_field("tag ", tag_key, " must have a string value")
                                                   : describe_json_error(error);
        }
        if (tag_key.empty()) return "a tag key is empty";
        if (has_nul(tag_key)) return fail_field("tag key ", tag_key, " contains a NUL character");
        if (has_nul(tag_value)) return fail_field("the value of tag ", tag_key, " contains a NUL character");
        tags.emplace_back(tag_key, tag_value);
      }
      // The raw bytes of the tags object, for the last-series cache: from its '{' to the
      // token after its '}'.
      const char* tags_end = nullptr;
      if (auto error = doc.current_location().get(tags_end)) return describe_json_error(error);
      tags_raw = std::string_view(token.data(), static_cast<std::size_t>(tags_end - token.data()));
    } else {
      if (auto error = check_value(v, 0)) {
        return error == simdjson::DEPTH_ERROR ? "an unknown field is nested too deeply"
                                              : describe_json_error(error);
      }
    }
  }
  // simdjson 3.0's document has no at_end(): at the end, current_location() says so.
  const char* rest = nullptr;
  if (doc.current_location().get(rest) != simdjson::OUT_OF_BOUNDS)
    return "trailing characters after the object";
  if (!have_name) return "missing \"series\"";
  if (!have_ts) return "missing \"ts\"";
  if (!have_value) return "missing \"value\"";
  if (const std::string_view error = to_millis(ts, out); !error.empty()) return error;
  return add_point(name, tags_raw, ts, value, out);
}

std::string_view NdjsonParser::Impl::add_point(std::string_view name, std::string_view tags_raw, Timestamp ts,
                                               double value, ParsedBatch& out) {
  if (!(last_valid && name == last_name && tags_raw == last_tags_raw)) [[unlikely]] {
    if (tags.size() > 1) {
      std::sort(tags.begin(), tags.end(),
                [](const TagView& a, const TagView& b) { return a.first < b.first; });
      for (std::size_t i = 1; i < tags.size(); ++i) {
        if (tags[i].first == tags[i - 1].first) return fail_field("duplicate tag key ", tags[i].first, "");
      }
    }
    last_key.clear();
    append_canonical_key(last_key, name, tags);
    last_id = series_id(last_key);
    last_name.assign(name);
    last_tags_raw.assign(tags_raw);
    last_valid = true;
    last_batch = 0;
  }
  if (last_batch != batch_number) {
    if (out.keys.size() + last_key.size() > std::numeric_limits<std::uint32_t>::max()) [[unlikely]] {
      return "the request holds too many series keys (4 GiB)";
    }
    last_offset = static_cast<std::uint32_t>(out.keys.size());
    out.keys.append(last_key);
    last_batch = batch_number;
  }
  out.points.push_back(
      ParsedPoint{last_id, ts, value, last_offset, static_cast<std::uint32_t>(last_key.size())});
  return {};
}

}  // namespace sydra::storage
