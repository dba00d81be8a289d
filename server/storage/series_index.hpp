// The series catalog and its tag index: every series the engine knows (from the segments,
// the WAL and the memtable) and, for every label — the name as `__name__`, each tag key —
// the label's values, each with the postings list of the series that carry it.
//
// Series numbers and postings
//   A series gets a dense number (0, 1, 2, ...) when it is first added. Postings lists hold
//   these numbers, so appending a new series to a list keeps it sorted: no list is ever
//   re-sorted or rebuilt. The numbers are internal: answers carry series ids.
//
// Evaluating matchers (select)
//   A matcher that does not match "" selects the union of the postings of the label's
//   values it matches (an equality is one lookup; a regex runs once per distinct VALUE of
//   the label — narrowed to the regex's literal-prefix range — never once per series).
//   A matcher that matches "" (`!=`, `!~`, `=""`, `=~"a|"`) also selects the series without
//   the label: it is applied as a subtraction of the values it rejects. The positive sets
//   are intersected smallest first, then the negative ones subtracted; with no positive set
//   the start is every series.
//
// Concurrency
//   One shared_mutex. Readers (select, find, list, label_values, size) hold the shared side
//   while they walk the maps; add() takes the exclusive side only for a series it has not
//   seen (a shared-side check first), i.e. once per series per memtable generation at most.
//   Answers are consistent snapshots: a series added during a select is in it or not, and
//   every series in it matches.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <shared_mutex>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "server/storage/matcher.hpp"
#include "server/storage/types.hpp"

namespace sydra::storage {

struct SeriesInfo {
  SeriesId id = 0;
  std::string name;
  std::vector<std::pair<std::string, std::string>> tags;  // sorted by key
};

// A series chosen by SeriesIndex::select.
struct SelectedSeries {
  SeriesId id = 0;
  std::string key;  // canonical key (series_key.hpp)
};

class SeriesIndex {
 public:
  SeriesIndex() = default;
  SeriesIndex(const SeriesIndex&) = delete;
  SeriesIndex& operator=(const SeriesIndex&) = delete;

  // Records a series; nothing happens when its id is known (a second key under a known id
  // is a hash collision: logged, ignored). Returns true when the series is new.
  bool add(SeriesId id, std::string_view canonical_key);

  enum class SelectStatus { ok, too_many };
  // The series that satisfy every matcher (see above), sorted by canonical key, into `out`.
  // When more than `limit` match, answers too_many and leaves `out` empty. `matched` (if
  // given) receives how many series matched either way.
  SelectStatus select(std::span<const Matcher> matchers, std::size_t limit, std::vector<SelectedSeries>& out,
                      std::size_t* matched = nullptr) const;

  // Series ids (ascending) having all (any = false) or any (any = true) of the tag pairs.
  // No tags: every series for "all", none for "any".
  std::vector<SeriesId> find(std::span<const std::pair<std::string, std::string>> tags, bool any) const;

  // Every series, sorted by canonical key.
  std::vector<SeriesInfo> list() const;
  // Every label name (`__name__` included) and the values of one label, sorted bytewise.
  std::vector<std::string> label_names() const;
  std::vector<std::string> label_values(std::string_view label) const;

  std::uint64_t size() const;

 private:
  using Number = std::uint32_t;
  using Postings = std::vector<Number>;
  struct Series {
    SeriesId id;
    std::string key;
  };
  // Label values and names are views into the keys in series_ (stable: a deque never moves
  // its elements when it grows, and no series is ever removed).
  using Values = std::map<std::string_view, Postings, std::less<>>;

  // Under the shared side.
  Postings evaluate(std::span<const Matcher> matchers) const;
  // The union of the postings of the values of m's label that `keep` says to collect.
  Postings collect(const Matcher& m, bool keep_matching) const;

  mutable std::shared_mutex mutex_;
  std::deque<Series> series_;  // by number
  std::unordered_map<SeriesId, Number> numbers_;
  std::map<std::string_view, Values, std::less<>> labels_;
};

}  // namespace sydra::storage
