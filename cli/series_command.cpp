// `sydradb series [NAME] [--tag k=v ...] [--json]`: one GET /api/v1/series to the running
// daemon (which filters), the series printed.
#include "cli/series_command.hpp"

#include <algorithm>
#include <iostream>
#include <map>
#include <optional>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "cli/client.hpp"

namespace sydra::cli {

namespace {

using nlohmann::json;

// Percent-encoding of a query parameter value (RFC 3986 unreserved characters stay).
std::string url_encode(std::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (char c : text) {
    const auto u = static_cast<unsigned char>(c);
    if ((u >= 'A' && u <= 'Z') || (u >= 'a' && u <= 'z') || (u >= '0' && u <= '9') || c == '-' || c == '.' ||
        c == '_' || c == '~') {
      out += c;
    } else {
      out += '%';
      out += kHex[u >> 4];
      out += kHex[u & 15];
    }
  }
  return out;
}

json tags_object(const Tags& tags) {
  json object = json::object();
  for (const auto& [k, v] : tags) object[k] = v;
  return object;
}

}  // namespace

Tags parse_tag_flags(const std::vector<std::string>& flags) {
  Tags tags;
  for (const std::string& kv : flags) {
    const auto eq = kv.find('=');
    if (eq == std::string::npos) throw std::invalid_argument("--tag expects KEY=VALUE, got '" + kv + "'");
    std::string key = kv.substr(0, eq);
    if (key.empty()) throw std::invalid_argument("--tag '" + kv + "' has an empty key");
    if (std::any_of(tags.begin(), tags.end(), [&](const auto& t) { return t.first == key; }))
      throw std::invalid_argument("--tag '" + key + "' is given twice");
    tags.emplace_back(std::move(key), kv.substr(eq + 1));
  }
  return tags;
}

std::string series_request_path(std::string_view name, const Tags& tags) {
  std::string path = "/api/v1/series";
  if (!name.empty()) {
    path += "?series=";
    path += url_encode(name);
  }
  if (!tags.empty()) {
    path += name.empty() ? "?tags=" : "&tags=";
    path += url_encode(tags_object(tags).dump());
  }
  return path;
}

std::vector<SeriesEntry> parse_series_answer(std::string_view body) {
  const json doc = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (!doc.is_array()) throw std::runtime_error("the answer is not a JSON array");
  std::vector<SeriesEntry> entries;
  entries.reserve(doc.size());
  for (const json& s : doc) {
    const auto bad = [] {
      return std::runtime_error(
          "an element of the answer is not {\"id\": int, \"series\": string, \"tags\": {string: string}}");
    };
    if (!s.is_object()) throw bad();
    const auto id = s.find("id");
    const auto name = s.find("series");
    const auto tags = s.find("tags");
    if (id == s.end() || !id->is_number_unsigned() || name == s.end() || !name->is_string() ||
        tags == s.end() || !tags->is_object())
      throw bad();
    SeriesEntry entry{id->get<std::uint64_t>(), name->get<std::string>(), {}};
    for (const auto& [k, v] : tags->items()) {
      if (!v.is_string()) throw bad();
      entry.tags.emplace_back(k, v.get<std::string>());
    }
    entries.push_back(std::move(entry));
  }
  return entries;
}

std::string format_tags(const Tags& tags) {
  std::string out = "{";
  for (std::size_t i = 0; i < tags.size(); ++i) {
    if (i > 0) out += ", ";
    out += tags[i].first + "=" + tags[i].second;
  }
  return out + "}";
}

bool same_tags(const SeriesEntry& entry, const Tags& tags) {
  if (entry.tags.size() != tags.size()) return false;
  const std::map<std::string, std::string> want(tags.begin(), tags.end());
  return std::all_of(entry.tags.begin(), entry.tags.end(), [&](const auto& t) {
    const auto it = want.find(t.first);
    return it != want.end() && it->second == t.second;
  });
}

std::string format_series(const std::vector<SeriesEntry>& entries, SeriesFormat format) {
  if (format == SeriesFormat::json) {
    json doc = json::array();
    for (const SeriesEntry& e : entries)
      doc.push_back({{"id", e.id}, {"series", e.name}, {"tags", tags_object(e.tags)}});
    return doc.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
  }
  std::size_t width = 6;  // "series"
  for (const SeriesEntry& e : entries) width = std::max(width, e.name.size());
  const auto pad = [width](const std::string& s) { return s + std::string(width - s.size(), ' '); };
  std::string out = pad("series") + "  tags\n";
  for (const SeriesEntry& e : entries) out += pad(e.name) + "  " + format_tags(e.tags) + "\n";
  out += '(';
  out += std::to_string(entries.size());
  out += " series)\n";
  return out;
}

int run_series(const SeriesOptions& options) {
  const std::optional<DaemonClient> client =
      DaemonClient::open("series", options.url, options.token, options.timeout_seconds);
  if (!client) return kExitUsage;
  std::string path;
  try {
    path = series_request_path(options.name, parse_tag_flags(options.tags));
  } catch (const std::invalid_argument& e) {
    client->fail(e.what());
    return kExitUsage;
  }
  HttpResponse response;
  if (const int code = client->call("GET", path, {}, response); code != kExitOk) return code;
  try {
    std::cout << format_series(parse_series_answer(response.body), options.format) << std::flush;
  } catch (const std::runtime_error& e) {
    client->fail(client->url() + ": unexpected answer: " + e.what());
    return kExitHttpError;
  }
  return kExitOk;
}

}  // namespace sydra::cli
