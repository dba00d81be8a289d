// Immutable segment files and the manifest that lists them, under <data_dir>/segments.
//
// A segment holds many series, each as blocks of points sorted by ts (no duplicate ts
// within a series), encoded per block (codec.hpp: delta-of-delta timestamps; values as
// scaled decimals, XOR or raw, whichever is smallest), with a per-series index (id,
// canonical key, min/max ts, offset) and a CRC32C-checked footer.
// Written to <name>.tmp, fsynced, renamed, directory fsynced. The MANIFEST (segment list,
// flushed lsn, next segment number) is replaced the same way, so a crash at any moment
// leaves the old or the new manifest, never a mix; files not in the manifest are removed
// at open.
//
// Thread safety: every method may be called concurrently. Readers work on a snapshot (a
// shared_ptr to the current version); writers (add, drop, compact) serialise on a mutex
// and publish a new version.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "server/storage/types.hpp"

namespace sydra::storage {

// One series' points to write: sorted by ts, unique ts.
struct SeriesPoints {
  SeriesId id;
  std::string_view key;  // canonical key
  std::span<const Point> points;
};

struct SegmentInfo {
  std::uint64_t number;  // file seg-<number, 20 digits>.sdb
  std::uint64_t bytes;
  std::uint64_t points;
  std::uint32_t series;
  Timestamp min_ts;
  Timestamp max_ts;
};

struct SegmentStoreStats {
  std::uint64_t segments = 0;
  std::uint64_t bytes = 0;
  std::uint64_t points = 0;
  std::uint64_t compactions = 0;       // since open
  std::uint64_t segments_expired = 0;  // since open (retention)
};

// A segment file that fails its checks at open: what() names the file and the problem.
class SegmentCorruption : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The store takes no more writes: the directory fsync after a MANIFEST replacement failed,
// so which MANIFEST a crash would leave is unknown. A restart recovers from what is on disk.
class SegmentStoreBroken : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The directory's LOCK is held by another process (a running daemon).
class DirectoryInUse : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class SegmentStore {
 public:
  // Opens (creating) dir, takes an exclusive lock on <dir>/LOCK (throws DirectoryInUse
  // "data directory ... is in use by another process" when held), reads the manifest, opens
  // every listed segment, deletes *.tmp and unlisted segment files.
  static std::unique_ptr<SegmentStore> open(const std::string& dir);
  ~SegmentStore();

  // The lsn up to which the WAL is in segments (0 = none).
  Lsn flushed_lsn() const noexcept;

  // Writes one segment from `series` (may be empty: then only the flushed lsn moves) and
  // publishes it with flushed_lsn in one manifest replacement.
  SegmentInfo add(std::span<const SeriesPoints> series, Lsn flushed_lsn);

  // The same, streamed: produce(emit) calls emit(id, key, points) once per series in
  // ascending id order (points sorted by ts, unique); each series is encoded as it comes,
  // so the caller needs to hold only one series at a time. std::invalid_argument when the
  // order is broken.
  using SeriesEmit = std::function<void(SeriesId, std::string_view key, std::span<const Point>)>;
  SegmentInfo add_streamed(const std::function<void(const SeriesEmit&)>& produce, Lsn flushed_lsn);

  // Appends the points of `id` in [start, end] from every segment, oldest segment first and
  // within a segment in ts order. The caller sorts and resolves equal timestamps (a later
  // segment wins over an earlier one: sort_last_wins). Each segment's points are one
  // strictly increasing run; with `run_ends`, the end (in `out`) of every non-empty run is
  // appended to it, so that the caller may check only where runs meet.
  void read(SeriesId id, Timestamp start, Timestamp end, std::vector<Point>& out,
            std::vector<std::size_t>* run_ends = nullptr) const;

  // Every series in any segment: id and canonical key (each id once).
  void for_each_series(const std::function<void(SeriesId, std::string_view key)>& fn) const;

  // Drops segments whose max_ts < cutoff (retention); returns how many.
  std::size_t drop_older_than(Timestamp cutoff);

  // Merges segments smaller than small_bytes (at least min_inputs of them, oldest first)
  // into one, equal timestamps resolved newest-segment-wins; returns true when it merged.
  // `force` merges all segments whatever their size when there are two or more, and
  // rewrites a lone segment written in an older format. The output is always in the
  // newest format.
  bool compact(std::uint64_t small_bytes = 4u << 20, std::size_t min_inputs = 4, bool force = false);

  std::vector<SegmentInfo> segments() const;
  SegmentStoreStats stats() const;

 private:
  struct Impl;
  explicit SegmentStore(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace sydra::storage
