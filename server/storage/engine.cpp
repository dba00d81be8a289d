#include "server/storage/engine.hpp"

#include <malloc.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <map>
#include <mutex>
#include <shared_mutex>
#include <stdexcept>
#include <thread>
#include <unordered_map>

#include "server/storage/file_io.hpp"
#include "server/storage/memtable.hpp"
#include "server/storage/merge.hpp"
#include "server/storage/query_pool.hpp"
#include "server/storage/segment_store.hpp"
#include "server/storage/series_key.hpp"
#include "server/storage/wal_record.hpp"

namespace sydra::storage {

namespace {

using Clock = std::chrono::steady_clock;
// How often a flush that failed for want of space is tried again.
constexpr auto kFullRetry = std::chrono::milliseconds(200);

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Gives the C heap's free pages back to the OS when much of it is free. Buffers larger than
// the allocator's small classes (request bodies, query answers, a segment's encoding) come
// from glibc, which keeps what is freed in its arenas — the per-thread ones above all —
// until told otherwise: the daemon's RSS stayed near its peak after the memtable was
// flushed. malloc_trim takes each arena's lock while it walks it (up to a few milliseconds
// on a busy heap), so the background thread calls this only once the engine has been quiet
// for a whole flush period after some activity (see trim_when_quiet), and it trims only
// past kTrimAboveBytes of free heap.
void release_free_heap() {
#if defined(__GLIBC__)
  constexpr std::size_t kTrimAboveBytes = std::size_t{8} << 20;
  if (::mallinfo2().fordblks < kTrimAboveBytes) return;
  const auto start = Clock::now();
  ::malloc_trim(0);
  spdlog::debug("malloc_trim: {:.3f} ms", seconds_since(start) * 1e3);
#endif
}

Timestamp system_now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

struct Engine::Impl {
  Impl(const EngineOptions& o, alloc::SmallPoolAllocator& a)
      : options(o), allocator(a), pool(helpers_for(o.query_threads)) {}

  static unsigned helpers_for(std::uint32_t query_threads) {
    const unsigned threads =
        query_threads != 0 ? query_threads : std::max(1u, std::thread::hardware_concurrency());
    return threads - 1;
  }

  EngineOptions options;
  alloc::SmallPoolAllocator& allocator;
  std::unique_ptr<SegmentStore> segments;
  std::unique_ptr<Wal> wal;
  SeriesIndex index;
  mutable QueryPool pool;

  // Generations: two memtables that take turns. `active` and `flushing` are read by
  // lock-free readers; they change only under the exclusive side of gen_mutex.
  std::unique_ptr<Memtable> gens[2];
  std::atomic<Memtable*> active{nullptr};
  std::atomic<Memtable*> flushing{nullptr};
  // Generation swaps so far. A flushed generation is reset and becomes the next spare, so a
  // reader that held its pointer across two swaps could read it reused as the new active
  // one and miss the points in between: read_points reads again when a swap happened
  // during its read (swaps are rare: one per flush).
  std::atomic<std::uint64_t> swaps{0};
  Memtable* spare = nullptr;  // under flush_mutex
  Lsn flushing_lsn = 0;       // under flush_mutex: every record <= it is in `flushing`
  Lsn recovered_lsn = 0;      // the highest lsn recovered at open
  mutable std::shared_mutex gen_mutex;
  std::mutex flush_mutex;  // one flush at a time

  // The background thread and the ingest waiters.
  std::mutex state_mutex;
  std::condition_variable wake;   // the background thread: flush asked, or stop
  std::condition_variable space;  // ingest waiters: a flush moved on
  bool flush_requested = false;   // under state_mutex
  bool stopping = false;          // under state_mutex
  bool closed = false;            // under state_mutex
  std::thread background;

  // Counters.
  std::atomic<std::uint64_t> ingest_requests{0}, ingest_points{0}, ingest_rejected{0}, ingest_busy{0};
  mutable std::atomic<std::uint64_t> queries{0};  // query_range and select calls
  // The background thread's view of activity, for trim_when_quiet.
  std::uint64_t activity_seen = 0;
  bool trim_due = false;
  std::atomic<std::uint64_t> flushes{0}, flush_failures{0}, flush_points{0}, flush_ns{0};
  std::atomic<std::uint64_t> ingest_disk_full{0}, ingest_stopped{0};

  // Write health (engine.hpp, "Faults"). The disk is full while the last WAL append or the
  // last flush failed for want of space; writes stop for good (until a restart) once an
  // fsync failed or the MANIFEST's directory could not be synced. Each change is logged
  // once, not per request.
  std::atomic<bool> wal_full{false};
  std::atomic<bool> flush_full{false};
  std::atomic<bool> stopped{false};
  mutable std::mutex health_mu;
  std::string full_why;     // under health_mu
  std::string stopped_why;  // under health_mu
  std::string flush_error;  // under health_mu: the last flush's failure, until one succeeds
  Clock::time_point full_since;
  bool flush_failing = false;  // under flush_mutex: the last flush failed (other than ENOSPC)

  bool disk_full() const {
    return wal_full.load(std::memory_order_acquire) || flush_full.load(std::memory_order_acquire);
  }

  void set_full(std::atomic<bool>& flag, const std::string& why) {
    std::lock_guard lk(health_mu);
    const bool was_full = disk_full();
    flag.store(true, std::memory_order_release);
    full_why = why;
    if (was_full) return;
    full_since = Clock::now();
    spdlog::error("disk full under {}: {}; ingest answers 507 until there is room again, queries go on",
                  options.data_dir, why);
  }

  void clear_full(std::atomic<bool>& flag) {
    if (!flag.load(std::memory_order_acquire)) return;
    std::lock_guard lk(health_mu);
    if (!flag.exchange(false)) return;
    if (!disk_full())
      spdlog::info("disk space is back under {}: writes resumed after {:.1f} s", options.data_dir,
                   seconds_since(full_since));
  }

  void stop_writes(const std::string& why) {
    std::lock_guard lk(health_mu);
    if (stopped.exchange(true)) return;
    stopped_why = why;
    spdlog::critical(
        "writes stopped: {}; what was acknowledged before is safe, nothing more is taken until "
        "the daemon is restarted",
        why);
  }

  std::string health_message(bool full) const {
    std::lock_guard lk(health_mu);
    return full ? full_why : stopped_why;
  }

  // A background write (flush, compaction, retention) failed: the failure that stops writes,
  // the disk full, or another one (logged by the caller).
  bool classify_store_failure(const std::exception& e, std::atomic<bool>* full_flag, const char* what) {
    if (dynamic_cast<const io::DirSyncFailed*>(&e) != nullptr ||
        dynamic_cast<const SegmentStoreBroken*>(&e) != nullptr) {
      stop_writes(std::string(what) + ": " + e.what());
      return true;
    }
    if (!io::is_disk_full(e)) return false;
    if (full_flag != nullptr) {
      set_full(*full_flag, std::string(what) + ": " + e.what());
    } else if (!disk_full()) {
      spdlog::warn(
          "{} found the disk full ({}); the segments and MANIFEST are unchanged, it is tried again later",
          what, e.what());
    }
    return true;
  }

  Timestamp now_ms() const { return options.now_ms ? options.now_ms() : system_now_ms(); }

  void insert(Memtable& m, SeriesId id, std::string_view key, std::span<const Point> points) {
    if (m.append(id, key, points)) index.add(id, key);
  }

  // Per-thread buffers of one series' read, reused from series to series.
  struct ReadScratch {
    std::vector<Point> active;
    std::vector<Point> flushing;
    std::vector<std::size_t> run_ends;  // of the segments' runs in the output
  };

  // The points of `id` in [start, end] from every source, sorted by ts, one per ts (the
  // newest write wins), replacing `out`.
  void read_points(SeriesId id, Timestamp start, Timestamp end, std::vector<Point>& out,
                   ReadScratch& scratch) const {
    out.clear();
    if (start > end) return;
    for (;;) {
      scratch.active.clear();
      scratch.flushing.clear();
      scratch.run_ends.clear();
      out.clear();
      const std::uint64_t swaps_before = swaps.load();
      {
        // Active first, then flushing, then the segments: see the essay in engine.hpp.
        alloc::SmallPoolAllocator::EpochGuard guard(allocator);
        active.load()->read(id, start, end, scratch.active);
        if (const Memtable* f = flushing.load()) f->read(id, start, end, scratch.flushing);
      }
      segments->read(id, start, end, out, &scratch.run_ends);
      if (swaps.load() == swaps_before) break;  // no generation was recycled under us
    }
    if (scratch.active.empty() && scratch.flushing.empty()) {
      sort_runs_last_wins(out, scratch.run_ends);  // segments only: their runs are sorted
      return;
    }
    out.insert(out.end(), scratch.flushing.begin(), scratch.flushing.end());
    out.insert(out.end(), scratch.active.begin(), scratch.active.end());
    sort_last_wins(out);
  }

  SelectResult select(const SelectQuery& q) const;

  // Writes `m` (no writers) as one segment with flushed lsn `lsn`, one series at a time (the
  // flush holds one series' points, not a copy of the generation). Throws on I/O failure.
  std::uint64_t write_segment(const Memtable& m, Lsn lsn) {
    std::uint64_t points = 0;
    segments->add_streamed(
        [&](const SegmentStore::SeriesEmit& emit) {
          m.for_each_sorted([&](SeriesId id, std::string_view key, std::vector<Point>& series_points) {
            points += series_points.size();
            emit(id, key, series_points);
          });
        },
        lsn);
    return points;
  }

  // Under flush_mutex.
  bool flush_locked() {
    if (flushing.load() == nullptr) {
      Memtable* current = active.load();
      if (current->empty()) {
        // Nothing to write; the WAL may still hold files that are all in segments (after a
        // restart, or the current file once ingest went quiet).
        checkpoint_wal(segments->flushed_lsn());
        return true;
      }
      {
        std::unique_lock<std::shared_mutex> lock(gen_mutex);
        flushing.store(current);
        active.store(spare);
        swaps.fetch_add(1);
        flushing_lsn = std::max(wal->last_lsn(), recovered_lsn);
      }
      spare = nullptr;
      notify_space();  // the fresh generation has room
    }
    Memtable* old = flushing.load();
    const auto start = Clock::now();
    std::uint64_t points = 0;
    try {
      points = write_segment(*old, flushing_lsn);
    } catch (const std::exception& e) {
      flush_failures.fetch_add(1, std::memory_order_relaxed);
      if (!classify_store_failure(e, &flush_full, "flush") && !flush_failing)
        spdlog::error("flush failed, will retry (the data stays in the memtable and the WAL): {}", e.what());
      flush_failing = true;
      std::lock_guard lk(health_mu);
      flush_error = e.what();
      return false;
    }
    if (flush_failing) {
      flush_failing = false;
      spdlog::info("flush succeeded again");
      std::lock_guard lk(health_mu);
      flush_error.clear();
    }
    clear_full(flush_full);
    {
      // Readers after this see the points in the segments; those still holding `old` keep
      // reading it safely until they leave their epoch section.
      std::unique_lock<std::shared_mutex> lock(gen_mutex);
      flushing.store(nullptr);
    }
    checkpoint_wal(flushing_lsn);
    old->retire_all();
    spare = old;
    flushes.fetch_add(1, std::memory_order_relaxed);
    flush_points.fetch_add(points, std::memory_order_relaxed);
    flush_ns.fetch_add(static_cast<std::uint64_t>(seconds_since(start) * 1e9), std::memory_order_relaxed);
    notify_space();
    return true;
  }

  bool flush() {
    std::lock_guard<std::mutex> guard(flush_mutex);
    return flush_locked();
  }

  void checkpoint_wal(Lsn flushed) {
    try {
      wal->checkpoint(flushed);
    } catch (const std::exception& e) {
      spdlog::warn("WAL checkpoint at lsn {} failed (old WAL files stay): {}", flushed, e.what());
    }
  }

  // Wakes ingest waiters. Taking state_mutex first orders this after a waiter's check, so
  // a waiter cannot miss it between checking and sleeping.
  void notify_space() {
    { std::lock_guard<std::mutex> lock(state_mutex); }
    space.notify_all();
  }

  void request_flush() {
    {
      std::lock_guard<std::mutex> lock(state_mutex);
      flush_requested = true;
    }
    wake.notify_one();
  }

  // Waits (bounded) until the active memtable is below its bound.
  bool wait_for_room() {
    const std::uint64_t max = options.memtable_max_bytes;
    if (active.load()->bytes() < max) return true;
    const auto deadline = Clock::now() + std::chrono::milliseconds(options.ingest_wait_ms);
    std::unique_lock<std::mutex> lock(state_mutex);
    for (;;) {
      if (active.load()->bytes() < max) return true;
      if (flush_full.load(std::memory_order_acquire)) return false;  // no flush can make room now
      if (!flush_requested) {
        flush_requested = true;
        wake.notify_one();
      }
      if (space.wait_until(lock, deadline) == std::cv_status::timeout) return active.load()->bytes() < max;
    }
  }

  void run_background() {
    auto last_flush = Clock::now();
    auto next_retention = Clock::now() + std::chrono::milliseconds(options.retention_check_interval_ms);
    auto next_compaction = Clock::now() + std::chrono::milliseconds(options.compaction_interval_ms);
    const auto flush_period = std::chrono::milliseconds(options.flush_interval_ms);
    for (;;) {
      bool size_flush = false;
      {
        std::unique_lock<std::mutex> lock(state_mutex);
        auto deadline = last_flush + flush_period;
        if (options.retention_days > 0) deadline = std::min(deadline, next_retention);
        if (options.compaction_interval_ms > 0) deadline = std::min(deadline, next_compaction);
        // While a flush fails for want of space, it is retried every kFullRetry, so that
        // ingest resumes soon after space is back.
        if (flush_full.load(std::memory_order_acquire))
          deadline = std::min(deadline, last_flush + kFullRetry);
        // A failed flush is retried at least every flush period, never in a tight loop.
        wake.wait_until(lock, deadline, [&] { return stopping || flush_requested; });
        if (stopping) return;
        size_flush = flush_requested;
        flush_requested = false;
      }
      // A sync of the log that failed on the WAL's own thread stops writes now, not at the
      // next ingest.
      if (wal->broken() && !stopped.load(std::memory_order_acquire)) stop_writes(wal->broken_reason());
      const auto now = Clock::now();
      if (size_flush || now >= last_flush + flush_period ||
          (flush_full.load(std::memory_order_acquire) && now >= last_flush + kFullRetry)) {
        {
          std::lock_guard<std::mutex> guard(flush_mutex);
          flush_locked();
          // Ingest may have filled the new generation while the old one was written.
          if (active.load()->bytes() >= options.memtable_max_bytes) flush_locked();
        }
        last_flush = Clock::now();
        trim_when_quiet();
      }
      if (options.retention_days > 0 && now >= next_retention) {
        apply_retention();
        next_retention = now + std::chrono::milliseconds(options.retention_check_interval_ms);
      }
      if (options.compaction_interval_ms > 0 && now >= next_compaction) {
        try {
          segments->compact();
        } catch (const std::exception& e) {
          if (!classify_store_failure(e, nullptr, "compaction"))
            spdlog::error("compaction failed: {}", e.what());
        }
        next_compaction = now + std::chrono::milliseconds(options.compaction_interval_ms);
      }
    }
  }

  // Once per flush period, on the background thread: after a burst of ingest or queries,
  // the first period without any gives glibc's free heap back (release_free_heap). Under
  // steady load nothing is trimmed: the heap stays at its working size.
  void trim_when_quiet() {
    const std::uint64_t activity =
        ingest_requests.load(std::memory_order_relaxed) + queries.load(std::memory_order_relaxed);
    if (activity != activity_seen) {
      activity_seen = activity;
      trim_due = true;
      return;
    }
    if (!trim_due) return;
    trim_due = false;
    release_free_heap();
  }

  std::size_t apply_retention() {
    if (options.retention_days == 0) return 0;
    const Timestamp cutoff = now_ms() - static_cast<Timestamp>(options.retention_days) * 86'400'000;
    try {
      const std::size_t dropped = segments->drop_older_than(cutoff);
      return dropped;
    } catch (const std::exception& e) {
      if (!classify_store_failure(e, nullptr, "retention")) spdlog::error("retention failed: {}", e.what());
      return 0;
    }
  }

  void close() {
    {
      std::lock_guard<std::mutex> lock(state_mutex);
      if (closed) return;
      closed = true;
      stopping = true;
    }
    wake.notify_all();
    space.notify_all();
    if (background.joinable()) background.join();
    if (wal) wal->sync();
  }
};

SelectResult Engine::Impl::select(const SelectQuery& q) const {
  SelectResult result;
  std::vector<SelectedSeries> chosen;
  if (index.select(q.matchers, q.max_series, chosen, &result.matched_series) ==
      SeriesIndex::SelectStatus::too_many) {
    result.status = SelectStatus::too_many_series;
    return result;
  }
  if (chosen.empty() || q.start > q.end) return result;

  // Groups: one per distinct combination of the `by` values ("" = absent), numbered in
  // first-seen order, answered in key order.
  const bool combine = q.across != Aggregation::none;
  std::vector<std::size_t> group_of(combine ? chosen.size() : 0);
  std::map<std::vector<std::string>, std::size_t> groups_by_key;
  if (combine) {
    std::vector<std::string> key(q.by.size());
    for (std::size_t i = 0; i < chosen.size(); ++i) {
      const SeriesKeyView view = split_canonical_key(chosen[i].key);
      const SeriesLabels labels{view.name, view.tags};
      for (std::size_t b = 0; b < q.by.size(); ++b) key[b] = std::string(labels.value(q.by[b]));
      group_of[i] = groups_by_key.try_emplace(key, groups_by_key.size()).first->second;
    }
  }

  // Each slot (the asking thread, each helper) reads into its own buffers and combines into
  // its own partial groups; they are merged at the end.
  struct Slot {
    ReadScratch read;
    std::vector<Point> raw;
    std::vector<Point> sampled;
    std::vector<StepCombiner> groups;
    std::size_t cells = 0;  // buckets across this slot's groups
  };
  std::vector<Slot> slots(pool.slots());
  if (combine)
    for (Slot& slot : slots) slot.groups.assign(groups_by_key.size(), StepCombiner(q.across));
  std::vector<std::vector<Point>> per_series(combine ? 0 : chosen.size());
  std::atomic<std::size_t> answer_points{0};
  std::atomic<bool> too_many_points{false};

  pool.run(chosen.size(), [&](std::size_t i, unsigned slot_index) {
    if (too_many_points.load(std::memory_order_relaxed)) return;
    Slot& slot = slots[slot_index];
    std::vector<Point>& points = combine ? slot.sampled : per_series[i];
    if (q.step > 0) {
      read_points(chosen[i].id, q.start, q.end, slot.raw, slot.read);
      points.clear();
      downsample(slot.raw, q.step, q.agg, points);
    } else {
      read_points(chosen[i].id, q.start, q.end, points, slot.read);
    }
    if (points.empty()) return;
    if (combine) {
      // A partial group never has more buckets than the group it merges into: bounding the
      // partials bounds the work before the answer is known.
      StepCombiner& group = slot.groups[group_of[i]];
      const std::size_t before = group.size();
      group.add(points);
      slot.cells += group.size() - before;
      if (slot.cells > q.max_points) too_many_points.store(true, std::memory_order_relaxed);
    } else if (answer_points.fetch_add(points.size(), std::memory_order_relaxed) + points.size() >
               q.max_points) {
      too_many_points.store(true, std::memory_order_relaxed);
    }
  });
  if (too_many_points.load()) {
    result.status = SelectStatus::too_many_points;
    return result;
  }

  if (!combine) {
    for (std::size_t i = 0; i < chosen.size(); ++i) {
      if (per_series[i].empty()) continue;
      const SeriesKeyView view = split_canonical_key(chosen[i].key);
      SeriesPointsResult& r = result.series.emplace_back();
      r.series.id = chosen[i].id;
      r.series.name = std::string(view.name);
      for (const auto& [k, v] : view.tags) r.series.tags.emplace_back(std::string(k), std::string(v));
      r.points = std::move(per_series[i]);
    }
    return result;
  }
  std::size_t total = 0;
  for (const auto& [key, g] : groups_by_key) {
    StepCombiner& merged = slots[0].groups[g];
    for (std::size_t s = 1; s < slots.size(); ++s) merged.merge(slots[s].groups[g]);
    if (merged.size() == 0) continue;
    total += merged.size();
    if (total > q.max_points) {
      result.status = SelectStatus::too_many_points;
      result.groups.clear();
      return result;
    }
    GroupResult& r = result.groups.emplace_back();
    for (std::size_t b = 0; b < q.by.size(); ++b)
      if (!key[b].empty()) r.labels.emplace_back(q.by[b], key[b]);
    r.series = merged.series();
    merged.finish(r.points);
  }
  return result;
}

Engine::Engine(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Engine::~Engine() {
  try {
    close();
  } catch (const std::exception& e) {
    spdlog::error("closing the storage engine: {}", e.what());
  }
}

std::unique_ptr<Engine> Engine::open(const EngineOptions& options, alloc::SmallPoolAllocator& allocator) {
  auto impl = std::make_unique<Impl>(options, allocator);
  Impl& s = *impl;
  const std::filesystem::path dir(options.data_dir);
  s.segments = SegmentStore::open((dir / "segments").string());
  s.segments->for_each_series([&](SeriesId id, std::string_view key) { s.index.add(id, key); });

  s.gens[0] = std::make_unique<Memtable>(allocator);
  s.gens[1] = std::make_unique<Memtable>(allocator);
  s.active.store(s.gens[0].get());
  s.spare = s.gens[1].get();

  // Replay what the segments do not hold yet. A memtable that passes its bound during
  // replay is written out at once (nobody reads yet), moving the flushed lsn along.
  const Lsn flushed = s.segments->flushed_lsn();
  std::vector<Point> scratch;
  Lsn replayed_to = flushed;
  const auto replay_start = Clock::now();
  const WalReplayResult replay =
      replay_wal((dir / "wal").string(), flushed, [&](Lsn lsn, std::span<const std::byte> payload) {
        Memtable& m = *s.active.load();
        decode_wal_record(lsn, payload, scratch,
                          [&](SeriesId id, std::string_view key, std::span<const Point> points) {
                            s.insert(m, id, key, points);
                          });
        replayed_to = lsn;
        if (m.bytes() >= options.memtable_max_bytes) {
          s.write_segment(m, lsn);
          m.retire_all();
        }
      });
  s.recovered_lsn = std::max({replay.last_lsn, flushed, replayed_to});
  if (replay.records > 0)
    spdlog::info("recovered {} WAL record(s) up to lsn {} in {:.3f} s ({} points in the memtable)",
                 replay.records, replay.last_lsn, seconds_since(replay_start), s.active.load()->points());

  WalOptions wal_options;
  wal_options.dir = (dir / "wal").string();
  wal_options.sync = options.sync;
  wal_options.interval_ms = options.sync_interval_ms;
  wal_options.max_file_bytes = options.wal_max_file_bytes;
  s.wal = Wal::open(wal_options, s.recovered_lsn + 1);
  // WAL files wholly in segments (those a previous run left behind) go now.
  s.checkpoint_wal(flushed);

  s.apply_retention();
  if (options.background) s.background = std::thread([&s] { s.run_background(); });
  return std::unique_ptr<Engine>(new Engine(std::move(impl)));
}

struct IngestScratch::Buffers {
  std::vector<Point> points;
  std::vector<WalRun> runs;
  std::vector<std::byte> payload;
};

IngestScratch::IngestScratch() : buffers_(std::make_unique<Buffers>()) {}
IngestScratch::~IngestScratch() = default;

IngestOutcome Engine::ingest(const ParsedBatch& batch) {
  IngestScratch scratch;
  return ingest(batch, scratch);
}

IngestOutcome Engine::ingest(const ParsedBatch& batch, IngestScratch& scratch) {
  Impl& s = *impl_;
  s.ingest_requests.fetch_add(1, std::memory_order_relaxed);
  s.ingest_rejected.fetch_add(batch.rejected, std::memory_order_relaxed);
  IngestOutcome outcome;
  if (batch.points.empty()) return outcome;
  const auto refuse = [&](IngestStatus status) {
    outcome.status = status;
    if (status == IngestStatus::stopped) {
      s.ingest_stopped.fetch_add(1, std::memory_order_relaxed);
      outcome.error = s.health_message(false);
    } else {
      s.ingest_disk_full.fetch_add(1, std::memory_order_relaxed);
      outcome.error = s.health_message(true);
    }
    return outcome;
  };
  if (s.stopped.load(std::memory_order_acquire)) return refuse(IngestStatus::stopped);
  if (!s.wait_for_room()) {
    if (s.flush_full.load(std::memory_order_acquire)) return refuse(IngestStatus::disk_full);
    s.ingest_busy.fetch_add(1, std::memory_order_relaxed);
    outcome.status = IngestStatus::busy;
    return outcome;
  }

  // Runs of consecutive points of one series: one memtable append and one WAL run each.
  auto& [points, runs, payload] = *scratch.buffers_;
  points.clear();
  runs.clear();
  points.reserve(batch.points.size());
  for (const ParsedPoint& p : batch.points) {
    if (runs.empty() || runs.back().id != p.id)
      runs.push_back(WalRun{p.id, batch.key(p), points.size(), points.size()});
    points.push_back(Point{p.ts, p.value});
    ++runs.back().end;
  }
  encode_wal_record(runs, points, payload);

  {
    std::shared_lock<std::shared_mutex> lock(s.gen_mutex);
    try {
      outcome.lsn = s.wal->append(payload);
    } catch (const std::exception& e) {
      // Nothing of the batch is in the log (wal.hpp): refuse it.
      if (s.wal->broken()) {
        s.stop_writes(s.wal->broken_reason());
        return refuse(IngestStatus::stopped);
      }
      if (io::is_disk_full(e)) {
        s.set_full(s.wal_full, e.what());
        return refuse(IngestStatus::disk_full);
      }
      throw;
    }
    Memtable& m = *s.active.load();
    for (const WalRun& r : runs)
      s.insert(m, r.id, r.key, std::span<const Point>(points).subspan(r.begin, r.end - r.begin));
  }
  s.clear_full(s.wal_full);
  if (s.options.sync == SyncMode::always) {
    try {
      s.wal->wait_durable(outcome.lsn);
    } catch (const std::exception& e) {
      // Lost durability: never acknowledged, and never retried as if the data were safe.
      s.stop_writes(e.what());
      return refuse(IngestStatus::stopped);
    }
  }
  if (s.active.load()->bytes() >= s.options.memtable_max_bytes) s.request_flush();
  outcome.ingested = batch.points.size();
  s.ingest_points.fetch_add(outcome.ingested, std::memory_order_relaxed);
  return outcome;
}

QueryStatus Engine::query_range(const RangeQuery& q, std::vector<Point>& out) const {
  const Impl& s = *impl_;
  s.queries.fetch_add(1, std::memory_order_relaxed);
  out.clear();
  std::vector<Point> merged;
  Impl::ReadScratch scratch;
  s.read_points(q.id, q.start, q.end, merged, scratch);
  if (q.step > 0) {
    downsample(merged, q.step, q.agg, out);
  } else {
    out = std::move(merged);
  }
  if (out.size() > q.max_points) {
    out.clear();
    return QueryStatus::too_large;
  }
  return QueryStatus::ok;
}

SelectResult Engine::select(const SelectQuery& q) const {
  impl_->queries.fetch_add(1, std::memory_order_relaxed);
  return impl_->select(q);
}

SeriesIndex::SelectStatus Engine::select_series(std::span<const Matcher> matchers, std::size_t limit,
                                                std::vector<SelectedSeries>& out,
                                                std::size_t* matched) const {
  return impl_->index.select(matchers, limit, out, matched);
}

std::vector<SeriesId> Engine::find(std::span<const std::pair<std::string, std::string>> tags,
                                   bool any) const {
  return impl_->index.find(tags, any);
}

std::vector<SeriesInfo> Engine::list_series() const {
  return impl_->index.list();
}

std::uint64_t Engine::series_count() const {
  return impl_->index.size();
}

bool Engine::flush() {
  return impl_->flush();
}

std::size_t Engine::apply_retention() {
  return impl_->apply_retention();
}

bool Engine::compact(bool force) {
  try {
    return impl_->segments->compact(4u << 20, 4, force);
  } catch (const std::exception& e) {
    impl_->classify_store_failure(e, nullptr, "compaction");
    throw;
  }
}

void Engine::sync_wal() {
  impl_->wal->sync();
}

void Engine::close() {
  impl_->close();
}

const EngineOptions& Engine::options() const noexcept {
  return impl_->options;
}

EngineStats Engine::stats() const {
  const Impl& s = *impl_;
  EngineStats st;
  st.ingest_requests = s.ingest_requests.load(std::memory_order_relaxed);
  st.ingest_points = s.ingest_points.load(std::memory_order_relaxed);
  st.ingest_rejected = s.ingest_rejected.load(std::memory_order_relaxed);
  st.ingest_busy = s.ingest_busy.load(std::memory_order_relaxed);
  st.ingest_disk_full = s.ingest_disk_full.load(std::memory_order_relaxed);
  st.ingest_stopped = s.ingest_stopped.load(std::memory_order_relaxed);
  st.disk_full = s.disk_full();
  st.writes_stopped = s.stopped.load(std::memory_order_acquire);
  if (st.writes_stopped) {
    st.write_error = s.health_message(false);
  } else if (st.disk_full) {
    st.write_error = s.health_message(true);
  }
  {
    std::lock_guard lk(s.health_mu);
    st.flush_error = s.flush_error;
  }
  st.flushes = s.flushes.load(std::memory_order_relaxed);
  st.flush_failures = s.flush_failures.load(std::memory_order_relaxed);
  st.flush_seconds = static_cast<double>(s.flush_ns.load(std::memory_order_relaxed)) * 1e-9;
  st.flush_points = s.flush_points.load(std::memory_order_relaxed);
  const WalStats& w = s.wal->stats();
  st.wal_bytes = w.bytes_written.load(std::memory_order_relaxed);
  st.wal_records = w.records.load(std::memory_order_relaxed);
  st.wal_fsyncs = w.fsyncs.load(std::memory_order_relaxed);
  st.wal_fsync_seconds = static_cast<double>(w.fsync_ns.load(std::memory_order_relaxed)) * 1e-9;
  st.wal_group_commit_waiters = w.group_commit_waiters.load(std::memory_order_relaxed);
  st.wal_files = w.files.load(std::memory_order_relaxed);
  st.wal_last_lsn = s.wal->last_lsn();
  st.flushed_lsn = s.segments->flushed_lsn();
  {
    // The generation pointers are stable under the shared side; the counts are relaxed.
    std::shared_lock<std::shared_mutex> lock(s.gen_mutex);
    for (const Memtable* m : {s.active.load(), s.flushing.load()}) {
      if (m == nullptr) continue;
      st.memtable_bytes += m->bytes();
      st.memtable_points += m->points();
      st.memtable_series += m->series();
    }
  }
  st.memtable_max_bytes = s.options.memtable_max_bytes;
  const SegmentStoreStats seg = s.segments->stats();
  st.segments = seg.segments;
  st.segment_bytes = seg.bytes;
  st.segment_points = seg.points;
  st.compactions = seg.compactions;
  st.retention_dropped_segments = seg.segments_expired;
  st.series = s.index.size();
  return st;
}

}  // namespace sydra::storage
