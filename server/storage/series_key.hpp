// Series identity: name + tags sorted by key, in one canonical byte string, hashed with
// XXH3-64 (seed 0). Names, tag keys and tag values never contain NUL (the parser rejects it).
//
//   canonical key = name '\0' k1 '\0' v1 '\0' k2 '\0' v2 ...   (k1 < k2 < ..., bytewise)
//   series id     = XXH3_64bits(canonical key)
//
// A series with no tags is its name alone. Tag keys are unique within a series.
#pragma once

#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "server/storage/types.hpp"

namespace sydra::storage {

using TagView = std::pair<std::string_view, std::string_view>;  // key, value

// Appends the canonical key to `out`. `tags` must already be sorted by key, keys unique.
void append_canonical_key(std::string& out, std::string_view name, std::span<const TagView> tags);

// XXH3-64 of a canonical key.
SeriesId series_id(std::string_view canonical_key) noexcept;

// Name and tags of a canonical key (views into it), in key order.
struct SeriesKeyView {
  std::string_view name;
  std::vector<TagView> tags;
};
SeriesKeyView split_canonical_key(std::string_view canonical_key);

}  // namespace sydra::storage
