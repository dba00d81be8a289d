// Series identity: the canonical key and its XXH3-64 hash (see series_key.hpp).
#include "server/storage/series_key.hpp"

#include <xxhash.h>

namespace sydra::storage {

void append_canonical_key(std::string& out, std::string_view name, std::span<const TagView> tags) {
  std::size_t size = name.size();
  for (const auto& [key, value] : tags) size += key.size() + value.size() + 2;
  out.reserve(out.size() + size);
  out.append(name);
  for (const auto& [key, value] : tags) {
    out.push_back('\0');
    out.append(key);
    out.push_back('\0');
    out.append(value);
  }
}

SeriesId series_id(std::string_view canonical_key) noexcept {
  return XXH3_64bits(canonical_key.data(), canonical_key.size());
}

SeriesKeyView split_canonical_key(std::string_view canonical_key) {
  SeriesKeyView view;
  std::size_t nul = canonical_key.find('\0');
  view.name = canonical_key.substr(0, nul);
  while (nul != std::string_view::npos) {
    const std::size_t key_begin = nul + 1;
    const std::size_t key_end = canonical_key.find('\0', key_begin);
    if (key_end == std::string_view::npos) {
      // Not a key this module wrote (a key without a value): keep what is there.
      view.tags.emplace_back(canonical_key.substr(key_begin), std::string_view{});
      break;
    }
    const std::size_t value_begin = key_end + 1;
    nul = canonical_key.find('\0', value_begin);
    const std::size_t value_end = nul == std::string_view::npos ? canonical_key.size() : nul;
    view.tags.emplace_back(canonical_key.substr(key_begin, key_end - key_begin),
                           canonical_key.substr(value_begin, value_end - value_begin));
  }
  return view;
}

}  // namespace sydra::storage
