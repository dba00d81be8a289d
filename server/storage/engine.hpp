// The storage engine: WAL, memtable generations, segments and the series catalog behind one
// interface. It knows nothing of HTTP (server/api/storage_api.cpp joins the two).
//
// Write path (Engine::ingest, any thread)
//   A parsed batch is grouped into runs of consecutive points of one series, encoded into
//   ONE WAL record (format below), appended, and inserted into the active memtable. The
//   append and the insert happen under the shared side of the generation lock; with
//   SyncMode::always the caller then waits for its record to be durable (group commit:
//   concurrent waiters share one fsync). Points are visible to queries as soon as they are
//   inserted, possibly a moment before they are durable.
//
// Generations and flush (background thread, or Engine::flush)
//   A flush takes the generation lock exclusively for a pointer swap: the active memtable
//   becomes the flushing one, the spare (empty) one becomes active, and X = the WAL's last
//   lsn. Since every WAL append and its insert happen together under the shared side,
//   every record <= X is in the flushing generation and none after it is. The flushing
//   generation is written as one segment published with flushed lsn X
//   (SegmentStore::add), then WAL files wholly <= X are deleted (Wal::checkpoint), then its
//   nodes and chunks are retired (freed once no reader can see them) and it becomes the
//   spare. A failed flush is logged and retried; meanwhile the data stays readable.
//
// Memory bound
//   When the active memtable holds memtable_max_bytes, ingest asks for a flush; if the
//   flusher cannot keep up (the previous flush is still writing), ingest waits up to
//   ingest_wait_ms for room and then answers IngestStatus::busy without storing anything.
//
// Read path (query_range, select; any thread)
//   Lock-free: inside an epoch section, the active generation, then the flushing one, then
//   the segments (in that order, so that a generation that finishes flushing meanwhile is
//   found in the segments). Merged with equal timestamps resolved newest-wins: memtable
//   over segments, active over flushing, later appends over earlier ones (merge.hpp).
//   A many-series query (select) takes its series from the tag index (series_index.hpp),
//   then reads, downsamples and combines them on the asking thread and the query pool's
//   helpers together (query_pool.hpp).
//
// Recovery (Engine::open)
//   Open the segments; rebuild the series catalog from them; replay the WAL after the
//   segments' flushed lsn into the memtable (flushing to a segment whenever the memtable
//   passes its bound); open the WAL for appending; apply retention once.
//
// Faults
//   Disk full (ENOSPC, EDQUOT): a WAL append that fails leaves nothing in the log (wal.hpp)
//   and ingest answers IngestStatus::disk_full; a flush that fails leaves the memtable, the
//   WAL, the segments and the MANIFEST as they were and is tried again every 200 ms; while
//   it fails, ingest that finds the memtable full answers disk_full at once. The state ends
//   by itself at the first append or flush that succeeds. Compaction and retention that
//   fail change nothing and run again at their next period.
//   Lost durability: an fsync of the WAL that fails (the kernel may have dropped the pages
//   it was to write), a WAL write that could not be cut back, or a MANIFEST whose directory
//   fsync failed: writes stop (IngestStatus::stopped) until a restart, which recovers
//   from what is on disk. Never retried and acknowledged.
//   Each change of state is logged once. Queries go on in every state.
//
// The WAL record payload is in wal_record.hpp; downsampling and aggregation in downsample.hpp.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "alloc/small_pool_allocator.hpp"
#include "server/storage/downsample.hpp"
#include "server/storage/ingest_parser.hpp"
#include "server/storage/matcher.hpp"
#include "server/storage/series_index.hpp"
#include "server/storage/types.hpp"
#include "server/storage/wal.hpp"

namespace sydra::storage {

struct EngineOptions {
  std::string data_dir = "./data";  // <data_dir>/wal and <data_dir>/segments
  SyncMode sync = SyncMode::interval;
  std::uint32_t sync_interval_ms = 1000;  // WAL fsync period with SyncMode::interval
  std::uint64_t wal_max_file_bytes = std::uint64_t{64} << 20;
  std::uint64_t memtable_max_bytes = std::uint64_t{64} << 20;
  std::uint32_t flush_interval_ms = 1000;  // flush a non-empty memtable at least this often
  std::uint32_t retention_days = 0;        // 0 = keep everything
  std::uint32_t retention_check_interval_ms = 3'600'000;
  std::uint32_t compaction_interval_ms = 60'000;  // 0 = no background compaction
  std::uint32_t ingest_wait_ms = 2000;            // how long ingest waits for memtable room
  bool background = true;                         // run the background thread (flush, retention, compaction)
  // Threads that work on one many-series query, the asking thread included (the engine runs
  // query_threads - 1 helpers); 0 = one per CPU.
  std::uint32_t query_threads = 0;
  // Wall clock in milliseconds since the Unix epoch (retention); the system clock if empty.
  std::function<Timestamp()> now_ms;
};

struct RangeQuery {
  SeriesId id = 0;
  Timestamp start = 0;  // inclusive
  Timestamp end = 0;    // inclusive
  // Downsampling: buckets [k*step, (k+1)*step) with ts = k*step; 0 = raw points.
  std::int64_t step = 0;
  Aggregation agg = Aggregation::none;
  std::size_t max_points = SIZE_MAX;  // more points in the answer → QueryStatus::too_large
};

enum class QueryStatus { ok, too_large };

enum class IngestStatus {
  ok,
  busy,       // the memtable stayed full for ingest_wait_ms: nothing was stored
  disk_full,  // no space for the WAL record or the flush: nothing was stored (see "Faults")
  stopped,    // writes are stopped after lost durability: nothing was stored
};

struct IngestOutcome {
  IngestStatus status = IngestStatus::ok;
  std::uint64_t ingested = 0;
  Lsn lsn = 0;        // the batch's WAL record (0 when it had no points)
  std::string error;  // disk_full, stopped: the failure, naming the file and the call
};

// A many-series query: the series the matchers select, their points in [start, end],
// optionally downsampled per series and combined across series per step.
struct SelectQuery {
  std::vector<Matcher> matchers;  // all must match; the selector of selector.hpp
  Timestamp start = 0;            // inclusive
  Timestamp end = 0;              // inclusive
  std::int64_t step = 0;          // downsampling as in RangeQuery; 0 = raw points
  Aggregation agg = Aggregation::none;
  // sum, avg, min, max or count: combine the (downsampled) series bucket by bucket, one
  // group per distinct combination of the `by` labels' values (`__name__` allowed; none = one
  // group). Without step, points combine where their timestamps are equal.
  Aggregation across = Aggregation::none;
  std::vector<std::string> by;
  std::size_t max_series = SIZE_MAX;  // more series selected → SelectStatus::too_many_series
  std::size_t max_points = SIZE_MAX;  // more points in the answer → SelectStatus::too_many_points
};

struct SeriesPointsResult {
  SeriesInfo series;
  std::vector<Point> points;
};

struct GroupResult {
  std::vector<std::pair<std::string, std::string>> labels;  // the `by` labels it has, in `by` order
  std::uint64_t series = 0;                                 // series combined into it
  std::vector<Point> points;
};

enum class SelectStatus { ok, too_many_series, too_many_points };

struct SelectResult {
  SelectStatus status = SelectStatus::ok;
  std::size_t matched_series = 0;  // selected by the matchers (also when over max_series)
  // Without `across`: every selected series with at least one point in range, sorted by
  // canonical key. With it: the groups that have points, sorted by their label values.
  std::vector<SeriesPointsResult> series;
  std::vector<GroupResult> groups;
};

struct EngineStats {
  // Ingest.
  std::uint64_t ingest_requests = 0;
  std::uint64_t ingest_points = 0;
  std::uint64_t ingest_rejected = 0;   // lines rejected by the parser
  std::uint64_t ingest_busy = 0;       // batches refused because the memtable stayed full
  std::uint64_t ingest_disk_full = 0;  // batches refused because the disk is full
  std::uint64_t ingest_stopped = 0;    // batches refused because writes are stopped
  // Write health (see "Faults"): the failure behind the state, naming the file and the call.
  bool disk_full = false;
  bool writes_stopped = false;
  std::string write_error;
  // Flush.
  std::uint64_t flushes = 0;
  std::uint64_t flush_failures = 0;
  double flush_seconds = 0;
  std::uint64_t flush_points = 0;
  std::string flush_error;  // the last flush's failure (naming the file and the call), until one succeeds
  // WAL.
  std::uint64_t wal_bytes = 0;
  std::uint64_t wal_records = 0;
  std::uint64_t wal_fsyncs = 0;
  double wal_fsync_seconds = 0;
  std::uint64_t wal_group_commit_waiters = 0;
  std::uint64_t wal_files = 0;
  Lsn wal_last_lsn = 0;
  Lsn flushed_lsn = 0;
  // Memtable (active + flushing generation).
  std::uint64_t memtable_bytes = 0;
  std::uint64_t memtable_points = 0;
  std::uint64_t memtable_series = 0;
  std::uint64_t memtable_max_bytes = 0;
  // Segments.
  std::uint64_t segments = 0;
  std::uint64_t segment_bytes = 0;
  std::uint64_t segment_points = 0;
  std::uint64_t compactions = 0;
  std::uint64_t retention_dropped_segments = 0;
  // Catalog.
  std::uint64_t series = 0;
};

// Buffers Engine::ingest needs for one batch (the points grouped into runs, the encoded WAL
// record). A caller that ingests again and again — a worker — keeps one and passes it, so
// the buffers keep their capacity between requests. Not shared between threads.
class IngestScratch {
 public:
  IngestScratch();
  ~IngestScratch();
  IngestScratch(const IngestScratch&) = delete;
  IngestScratch& operator=(const IngestScratch&) = delete;

 private:
  friend class Engine;
  struct Buffers;
  std::unique_ptr<Buffers> buffers_;
};

class Engine {
 public:
  // Recovers the data directory (see above) and starts the background thread. Throws
  // WalCorruption, SegmentCorruption or std::runtime_error (e.g. the directory is locked
  // by another process); what() is one line naming the file.
  static std::unique_ptr<Engine> open(const EngineOptions& options, alloc::SmallPoolAllocator& allocator);
  // close(), then frees the memtables.
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Stores a parsed batch (see above), using `scratch`'s buffers. Throws std::system_error
  // on a WAL write failure other than a full disk (nothing of the batch is stored).
  IngestOutcome ingest(const ParsedBatch& batch, IngestScratch& scratch);
  // The same with buffers of its own (allocated for this call).
  IngestOutcome ingest(const ParsedBatch& batch);

  // The points of q.id in [q.start, q.end], sorted by ts, one per ts, downsampled when
  // q.step > 0. Non-finite aggregates (e.g. a sum past the double range) are kept as is.
  QueryStatus query_range(const RangeQuery& q, std::vector<Point>& out) const;
  // A many-series query (see SelectQuery). Throws SegmentCorruption when a block it reads
  // fails its checksum.
  SelectResult select(const SelectQuery& q) const;
  // The series the matchers select, sorted by canonical key; more than `limit` →
  // too_many (`matched` says how many).
  SeriesIndex::SelectStatus select_series(std::span<const Matcher> matchers, std::size_t limit,
                                          std::vector<SelectedSeries>& out,
                                          std::size_t* matched = nullptr) const;
  // Series having all (any = false) or any (any = true) of the tag pairs; sorted ids.
  // No tags: every series for "all", none for "any".
  std::vector<SeriesId> find(std::span<const std::pair<std::string, std::string>> tags, bool any) const;
  // Every known series, sorted by canonical key.
  std::vector<SeriesInfo> list_series() const;
  std::uint64_t series_count() const;

  // Flushes the active memtable now (after any unfinished flush); false when writing the
  // segment failed (logged; the data stays in the memtable and the WAL).
  bool flush();
  // Drops segments entirely older than retention_days; returns how many (0 when off).
  std::size_t apply_retention();
  // SegmentStore::compact with its defaults (force: every segment into one).
  bool compact(bool force = false);
  // Makes every appended WAL record durable.
  void sync_wal();
  // Stops the background thread and syncs the WAL. Idempotent; ingest must have stopped.
  void close();

  EngineStats stats() const;
  const EngineOptions& options() const noexcept;

 private:
  struct Impl;
  explicit Engine(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace sydra::storage
