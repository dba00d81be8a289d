// The parts of `sydradb series` that need no server (cli/series_command.cpp), also used by
// `sydradb query` to say which series exist when a query names none: --tag flags, the
// GET /api/v1/series request, its answer, and how series print.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "cli/commands.hpp"

namespace sydra::cli {

using Tags = std::vector<std::pair<std::string, std::string>>;

// --tag KEY=VALUE flags (the value may hold '='), in the order given. Throws
// std::invalid_argument for a flag without '=', an empty key or a key given twice.
Tags parse_tag_flags(const std::vector<std::string>& flags);

// "/api/v1/series", with ?series=NAME and &tags={...} (URL-encoded JSON) when given.
std::string series_request_path(std::string_view name, const Tags& tags);

struct SeriesEntry {
  std::uint64_t id = 0;
  std::string name;
  Tags tags;  // sorted by key, as the daemon sends them
};

// The daemon's answer, [{"id": n, "series": "name", "tags": {k: v}}, ...]. Throws
// std::runtime_error (one line) when it is not that.
std::vector<SeriesEntry> parse_series_answer(std::string_view body);

// {dc=eu, host=a}; {} without tags.
std::string format_tags(const Tags& tags);

// Whether `entry` has exactly these tags (in any order).
bool same_tags(const SeriesEntry& entry, const Tags& tags);

// A table (series, tags, then a count line), or the JSON array as the daemon sends it.
std::string format_series(const std::vector<SeriesEntry>& entries, SeriesFormat format);

}  // namespace sydra::cli
