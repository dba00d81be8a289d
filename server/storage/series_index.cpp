// The series catalog and tag index (see series_index.hpp).
#include "server/storage/series_index.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <iterator>
#include <mutex>

#include "server/storage/series_key.hpp"

namespace sydra::storage {

namespace {

using Number = std::uint32_t;
using Postings = std::vector<Number>;

// Sorted, unique union of many lists. A bitmap over every series number when the lists are
// long relative to the number of series, else concatenate and sort.
Postings union_of(const std::vector<const Postings*>& lists, std::size_t series_count) {
  std::size_t total = 0;
  for (const Postings* p : lists) total += p->size();
  Postings out;
  if (lists.size() == 1) return *lists[0];
  if (total * 16 > series_count) {
    std::vector<std::uint64_t> bits((series_count + 63) / 64, 0);
    for (const Postings* p : lists)
      for (Number n : *p) bits[n >> 6] |= std::uint64_t{1} << (n & 63);
    out.reserve(total);
    for (std::size_t w = 0; w < bits.size(); ++w) {
      for (std::uint64_t word = bits[w]; word != 0; word &= word - 1)
        out.push_back(static_cast<Number>(w * 64 + static_cast<std::size_t>(__builtin_ctzll(word))));
    }
    return out;
  }
  out.reserve(total);
  for (const Postings* p : lists) out.insert(out.end(), p->begin(), p->end());
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

// a ∩ b, both sorted. Binary searches the longer list when the lengths differ a lot.
Postings intersect(const Postings& a, const Postings& b) {
  const Postings& small = a.size() <= b.size() ? a : b;
  const Postings& large = a.size() <= b.size() ? b : a;
  Postings out;
  if (small.size() * 32 < large.size()) {
    auto from = large.begin();
    for (Number n : small) {
      from = std::lower_bound(from, large.end(), n);
      if (from == large.end()) break;
      if (*from == n) out.push_back(n);
    }
    return out;
  }
  std::set_intersection(a.begin(), a.end(), b.begin(), b.end(), std::back_inserter(out));
  return out;
}

Postings subtract(const Postings& a, const Postings& b) {
  Postings out;
  std::set_difference(a.begin(), a.end(), b.begin(), b.end(), std::back_inserter(out));
  return out;
}

}  // namespace

bool SeriesIndex::add(SeriesId id, std::string_view canonical_key) {
  {
    std::shared_lock<std::shared_mutex> lock(mutex_);
    if (numbers_.contains(id)) return false;
  }
  std::unique_lock<std::shared_mutex> lock(mutex_);
  const auto [it, inserted] = numbers_.try_emplace(id, static_cast<Number>(series_.size()));
  if (!inserted) {
    if (series_[it->second].key != canonical_key)
      spdlog::warn("series id {} is shared by two keys (a hash collision): queries may mix them", id);
    return false;
  }
  const Number number = it->second;
  const Series& s = series_.emplace_back(Series{id, std::string(canonical_key)});
  const SeriesKeyView view = split_canonical_key(s.key);
  labels_[kNameLabel][view.name].push_back(number);
  for (const auto& [k, v] : view.tags) labels_[k][v].push_back(number);
  return true;
}

SeriesIndex::Postings SeriesIndex::collect(const Matcher& m, bool keep_matching) const {
  const auto label = labels_.find(m.label());
  if (label == labels_.end()) return {};
  const Values& values = label->second;
  if (m.op() == MatchOp::equal || m.op() == MatchOp::not_equal) {
    // A lookup: `=v` keeps v, `!=v` rejects exactly v.
    const bool want_value = (m.op() == MatchOp::equal) == keep_matching;
    if (!want_value) {
      // Every value but one: rare for a positive set (`!=` matches ""), kept general.
      std::vector<const Postings*> lists;
      for (const auto& [v, p] : values)
        if (v != m.value()) lists.push_back(&p);
      return union_of(lists, series_.size());
    }
    const auto it = values.find(m.value());
    return it == values.end() ? Postings{} : it->second;
  }
  auto begin = values.begin();
  auto end = values.end();
  std::string min, max;
  if (keep_matching && m.value_bounds(min, max)) {
    // Only values within the regex's possible range can match.
    begin = values.lower_bound(min);
    end = values.upper_bound(max);
  }
  std::vector<const Postings*> lists;
  for (auto it = begin; it != end; ++it)
    if (m.matches(it->first) == keep_matching) lists.push_back(&it->second);
  if (lists.empty()) return {};
  return union_of(lists, series_.size());
}

SeriesIndex::Postings SeriesIndex::evaluate(std::span<const Matcher> matchers) const {
  std::vector<Postings> positive;
  std::vector<Postings> negative;
  for (const Matcher& m : matchers) {
    if (m.matches_everything()) continue;
    if (!m.matches_empty()) {
      positive.push_back(collect(m, true));
      if (positive.back().empty()) return {};
    } else {
      // Selects the series without the label too: drop those whose value it rejects.
      Postings rejected = collect(m, false);
      if (!rejected.empty()) negative.push_back(std::move(rejected));
    }
  }
  Postings result;
  if (positive.empty()) {
    result.resize(series_.size());
    for (Number n = 0; n < result.size(); ++n) result[n] = n;
  } else {
    std::sort(positive.begin(), positive.end(),
              [](const Postings& a, const Postings& b) { return a.size() < b.size(); });
    result = std::move(positive[0]);
    for (std::size_t i = 1; i < positive.size() && !result.empty(); ++i)
      result = intersect(result, positive[i]);
  }
  for (const Postings& n : negative) {
    if (result.empty()) break;
    result = subtract(result, n);
  }
  return result;
}

SeriesIndex::SelectStatus SeriesIndex::select(std::span<const Matcher> matchers, std::size_t limit,
                                              std::vector<SelectedSeries>& out, std::size_t* matched) const {
  out.clear();
  std::shared_lock<std::shared_mutex> lock(mutex_);
  const Postings numbers = evaluate(matchers);
  if (matched != nullptr) *matched = numbers.size();
  if (numbers.size() > limit) return SelectStatus::too_many;
  out.reserve(numbers.size());
  for (Number n : numbers) out.push_back(SelectedSeries{series_[n].id, series_[n].key});
  lock.unlock();
  std::sort(out.begin(), out.end(),
            [](const SelectedSeries& a, const SelectedSeries& b) { return a.key < b.key; });
  return SelectStatus::ok;
}

std::vector<SeriesId> SeriesIndex::find(std::span<const std::pair<std::string, std::string>> tags,
                                        bool any) const {
  std::shared_lock<std::shared_mutex> lock(mutex_);
  std::vector<SeriesId> out;
  auto ids_of = [&](const Postings& numbers) {
    for (Number n : numbers) out.push_back(series_[n].id);
  };
  if (tags.empty()) {
    if (!any)
      for (const Series& s : series_) out.push_back(s.id);
  } else if (any) {
    std::vector<const Postings*> lists;
    for (const auto& [k, v] : tags) {
      const auto label = labels_.find(k);
      if (label == labels_.end()) continue;
      const auto value = label->second.find(v);
      if (value != label->second.end()) lists.push_back(&value->second);
    }
    if (!lists.empty()) ids_of(union_of(lists, series_.size()));
  } else {
    std::vector<Matcher> matchers;
    matchers.reserve(tags.size());
    for (const auto& [k, v] : tags) matchers.emplace_back(k, MatchOp::equal, v);
    // `k=""` would also select series without k; find() has always meant "has the pair".
    Postings result;
    bool first = true;
    for (const Matcher& m : matchers) {
      Postings p = collect(m, true);
      result = first ? std::move(p) : intersect(result, p);
      first = false;
      if (result.empty()) break;
    }
    ids_of(result);
  }
  lock.unlock();
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<SeriesInfo> SeriesIndex::list() const {
  std::vector<std::pair<std::string_view, SeriesId>> order;
  std::shared_lock<std::shared_mutex> lock(mutex_);
  order.reserve(series_.size());
  for (const Series& s : series_) order.emplace_back(s.key, s.id);
  std::sort(order.begin(), order.end());
  std::vector<SeriesInfo> out;
  out.reserve(order.size());
  for (const auto& [key, id] : order) {
    const SeriesKeyView view = split_canonical_key(key);
    SeriesInfo info;
    info.id = id;
    info.name = std::string(view.name);
    for (const auto& [k, v] : view.tags) info.tags.emplace_back(std::string(k), std::string(v));
    out.push_back(std::move(info));
  }
  return out;
}

std::vector<std::string> SeriesIndex::label_names() const {
  std::shared_lock<std::shared_mutex> lock(mutex_);
  std::vector<std::string> out;
  out.reserve(labels_.size());
  for (const auto& [name, values] : labels_) out.emplace_back(name);
  return out;
}

std::vector<std::string> SeriesIndex::label_values(std::string_view label) const {
  std::shared_lock<std::shared_mutex> lock(mutex_);
  std::vector<std::string> out;
  const auto it = labels_.find(label);
  if (it == labels_.end()) return out;
  out.reserve(it->second.size());
  for (const auto& [value, postings] : it->second) out.emplace_back(value);
  return out;
}

std::uint64_t SeriesIndex::size() const {
  std::shared_lock<std::shared_mutex> lock(mutex_);
  return series_.size();
}

}  // namespace sydra::storage
