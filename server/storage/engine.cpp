#include "server/storage/engine.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <bit>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <shared_mutex>
#include <stdexcept>
#include <thread>
#include <unordered_map>

#include "server/storage/memtable.hpp"
#include "server/storage/segment_store.hpp"
#include "server/storage/series_key.hpp"

namespace sydra::storage {

static_assert(std::endian::native == std::endian::little, "the WAL record format is little-endian");

bool parse_aggregation(std::string_view text, Aggregation& out) noexcept {
  static constexpr std::pair<std::string_view, Aggregation> kNames[] = {
      {"avg", Aggregation::avg}, {"min", Aggregation::min},     {"max", Aggregation::max},
      {"sum", Aggregation::sum}, {"count", Aggregation::count}, {"last", Aggregation::last}};
  for (const auto& [name, agg] : kNames)
    if (text == name) {
      out = agg;
      return true;
    }
  return false;
}

namespace {

using Clock = std::chrono::steady_clock;

constexpr std::uint32_t kRecordVersion = 1;
constexpr std::size_t kRecordHeader = 8;
constexpr std::size_t kRunHeader = 16;

// ---- the WAL record: encoding and decoding -----------------------------------------------

struct Run {
  SeriesId id;
  std::string_view key;
  std::size_t begin;  // into the points scratch
  std::size_t end;
};

template <class T>
void put(std::vector<std::byte>& out, std::size_t& at, T v) noexcept {
  std::memcpy(out.data() + at, &v, sizeof v);
  at += sizeof v;
}

void encode_record(std::span<const Run> runs, std::span<const Point> points, std::vector<std::byte>& out) {
  std::size_t size = kRecordHeader;
  for (const Run& r : runs) size += kRunHeader + r.key.size() + (r.end - r.begin) * sizeof(Point);
  out.resize(size);
  std::size_t at = 0;
  put(out, at, kRecordVersion);
  put(out, at, static_cast<std::uint32_t>(runs.size()));
  for (const Run& r : runs) {
    put(out, at, r.id);
    put(out, at, static_cast<std::uint32_t>(r.key.size()));
    put(out, at, static_cast<std::uint32_t>(r.end - r.begin));
    std::memcpy(out.data() + at, r.key.data(), r.key.size());
    at += r.key.size();
    const std::size_t bytes = (r.end - r.begin) * sizeof(Point);
    std::memcpy(out.data() + at, points.data() + r.begin, bytes);
    at += bytes;
  }
}

// Calls fn(id, key, points) per run. Throws std::runtime_error on a malformed payload (a
// record that passed its CRC but does not decode: a different version or a bug).
template <class Fn>
void decode_record(Lsn lsn, std::span<const std::byte> payload, std::vector<Point>& scratch, Fn&& fn) {
  auto fail = [&](const char* why) {
    throw std::runtime_error("WAL record " + std::to_string(lsn) + " does not decode: " + why);
  };
  std::size_t at = 0;
  auto get = [&](auto& v) {
    if (payload.size() - at < sizeof v) fail("truncated");
    std::memcpy(&v, payload.data() + at, sizeof v);
    at += sizeof v;
  };
  std::uint32_t version = 0, runs = 0;
  get(version);
  if (version != kRecordVersion) fail("unknown version");
  get(runs);
  for (std::uint32_t i = 0; i < runs; ++i) {
    SeriesId id = 0;
    std::uint32_t key_size = 0, count = 0;
    get(id);
    get(key_size);
    get(count);
    if (payload.size() - at < key_size) fail("truncated key");
    std::string_view key(reinterpret_cast<const char*>(payload.data() + at), key_size);
    at += key_size;
    if ((payload.size() - at) / sizeof(Point) < count) fail("truncated points");
    scratch.resize(count);
    std::memcpy(scratch.data(), payload.data() + at, std::size_t{count} * sizeof(Point));
    at += std::size_t{count} * sizeof(Point);
    fn(id, key, std::span<const Point>(scratch));
  }
  if (at != payload.size()) fail("trailing bytes");
}

// ---- the series catalog --------------------------------------------------------------------

// Every series the engine knows (segments, WAL, memtable) with an inverted index of its tag
// pairs. Written once per series per memtable generation (when the memtable creates its
// node), read by find and list: a shared mutex is enough off the per-point path.
class Catalog {
 public:
  void add(SeriesId id, std::string_view key) {
    {
      std::shared_lock<std::shared_mutex> lock(mutex_);
      if (keys_.contains(id)) return;
    }
    std::unique_lock<std::shared_mutex> lock(mutex_);
    auto [it, inserted] = keys_.try_emplace(id, key);
    if (!inserted) {
      if (it->second != key)
        spdlog::warn("series id {} is shared by two keys (a hash collision): queries may mix them", id);
      return;
    }
    const SeriesKeyView view = split_canonical_key(it->second);
    for (const auto& [k, v] : view.tags) postings_[posting_key(k, v)].push_back(id);
  }

  std::vector<SeriesId> find(std::span<const std::pair<std::string, std::string>> tags, bool any) const {
    std::shared_lock<std::shared_mutex> lock(mutex_);
    std::vector<SeriesId> out;
    if (tags.empty()) {
      if (!any)
        for (const auto& [id, key] : keys_) out.push_back(id);
      std::sort(out.begin(), out.end());
      return out;
    }
    bool first = true;
    for (const auto& [k, v] : tags) {
      auto it = postings_.find(posting_key(k, v));
      std::vector<SeriesId> ids;
      if (it != postings_.end()) ids = it->second;
      std::sort(ids.begin(), ids.end());
      if (first) {
        out = std::move(ids);
        first = false;
        continue;
      }
      std::vector<SeriesId> merged;
      if (any) {
        std::set_union(out.begin(), out.end(), ids.begin(), ids.end(), std::back_inserter(merged));
      } else {
        std::set_intersection(out.begin(), out.end(), ids.begin(), ids.end(), std::back_inserter(merged));
      }
      out = std::move(merged);
    }
    return out;
  }

  std::vector<SeriesInfo> list() const {
    std::vector<std::pair<std::string_view, SeriesId>> order;
    std::shared_lock<std::shared_mutex> lock(mutex_);
    order.reserve(keys_.size());
    for (const auto& [id, key] : keys_) order.emplace_back(key, id);
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

  std::uint64_t size() const {
    std::shared_lock<std::shared_mutex> lock(mutex_);
    return keys_.size();
  }

 private:
  static std::string posting_key(std::string_view k, std::string_view v) {
    std::string s;
    s.reserve(k.size() + 1 + v.size());
    s.append(k);
    s.push_back('\0');
    s.append(v);
    return s;
  }

  mutable std::shared_mutex mutex_;
  std::unordered_map<SeriesId, std::string> keys_;
  std::unordered_map<std::string, std::vector<SeriesId>> postings_;
};

// Sorted by ts, equal timestamps resolved to the last one (the input is oldest first).
void sort_last_wins(std::vector<Point>& points) {
  std::stable_sort(points.begin(), points.end(), [](const Point& a, const Point& b) { return a.ts < b.ts; });
  std::size_t w = 0;
  for (std::size_t r = 0; r < points.size(); ++r) {
    if (w > 0 && points[w - 1].ts == points[r].ts) {
      points[w - 1] = points[r];
    } else {
      points[w++] = points[r];
    }
  }
  points.resize(w);
}

// The start of the step-wide bucket holding ts (floor division; exact for negative ts).
Timestamp bucket_of(Timestamp ts, std::int64_t step) noexcept {
  const __int128 t = ts;
  __int128 q = t / step;
  if (t % step != 0 && t < 0) --q;
  const __int128 b = q * step;
  return b < INT64_MIN ? INT64_MIN : static_cast<Timestamp>(b);
}

void downsample(std::span<const Point> sorted, std::int64_t step, Aggregation agg, std::vector<Point>& out) {
  std::size_t i = 0;
  while (i < sorted.size()) {
    const Timestamp bucket = bucket_of(sorted[i].ts, step);
    double sum = 0, mn = sorted[i].value, mx = sorted[i].value, last = sorted[i].value;
    std::uint64_t count = 0;
    for (; i < sorted.size() && bucket_of(sorted[i].ts, step) == bucket; ++i) {
      const double v = sorted[i].value;
      sum += v;
      mn = std::min(mn, v);
      mx = std::max(mx, v);
      last = v;
      ++count;
    }
    double value = 0;
    switch (agg) {
      case Aggregation::avg:
        value = sum / static_cast<double>(count);
        break;
      case Aggregation::min:
        value = mn;
        break;
      case Aggregation::max:
        value = mx;
        break;
      case Aggregation::sum:
        value = sum;
        break;
      case Aggregation::count:
        value = static_cast<double>(count);
        break;
      case Aggregation::last:
      case Aggregation::none:
        value = last;
        break;
    }
    out.push_back({bucket, value});
  }
}

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

Timestamp system_now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

struct Engine::Impl {
  Impl(const EngineOptions& o, alloc::SmallPoolAllocator& a) : options(o), allocator(a) {}

  EngineOptions options;
  alloc::SmallPoolAllocator& allocator;
  std::unique_ptr<SegmentStore> segments;
  std::unique_ptr<Wal> wal;
  Catalog catalog;

  // Generations: two memtables that take turns. `active` and `flushing` are read by
  // lock-free readers; they change only under the exclusive side of gen_mutex.
  std::unique_ptr<Memtable> gens[2];
  std::atomic<Memtable*> active{nullptr};
  std::atomic<Memtable*> flushing{nullptr};
  // Generation swaps so far. A flushed generation is reset and becomes the next spare, so a
  // reader that held its pointer across two swaps could read it reused as the new active
  // one and miss the points in between: query_range reads again when a swap happened
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
  std::atomic<std::uint64_t> flushes{0}, flush_failures{0}, flush_points{0}, flush_ns{0};

  Timestamp now_ms() const { return options.now_ms ? options.now_ms() : system_now_ms(); }

  void insert(Memtable& m, SeriesId id, std::string_view key, std::span<const Point> points) {
    if (m.append(id, key, points)) catalog.add(id, key);
  }

  // Writes `m` (no writers) as one segment with flushed lsn `lsn`. Throws on I/O failure.
  std::uint64_t write_segment(const Memtable& m, Lsn lsn) {
    std::vector<std::vector<Point>> storage;
    std::vector<std::string> keys;
    std::vector<SeriesId> ids;
    m.for_each_sorted([&](SeriesId id, std::string_view key, std::vector<Point>& points) {
      ids.push_back(id);
      keys.emplace_back(key);
      storage.push_back(std::move(points));
    });
    std::vector<SeriesPoints> series;
    series.reserve(ids.size());
    std::uint64_t points = 0;
    for (std::size_t i = 0; i < ids.size(); ++i) {
      series.push_back(SeriesPoints{ids[i], keys[i], storage[i]});
      points += storage[i].size();
    }
    // Segment order by id keeps segment files deterministic for a given memtable.
    std::sort(series.begin(), series.end(),
              [](const SeriesPoints& a, const SeriesPoints& b) { return a.id < b.id; });
    segments->add(series, lsn);
    return points;
  }

  // Under flush_mutex.
  bool flush_locked() {
    if (flushing.load() == nullptr) {
      Memtable* current = active.load();
      if (current->empty()) return true;
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
      spdlog::error("flush failed, will retry (the data stays in the memtable and the WAL): {}", e.what());
      return false;
    }
    {
      // Readers after this see the points in the segments; those still holding `old` keep
      // reading it safely until they leave their epoch section.
      std::unique_lock<std::shared_mutex> lock(gen_mutex);
      flushing.store(nullptr);
    }
    try {
      wal->checkpoint(flushing_lsn);
    } catch (const std::exception& e) {
      spdlog::warn("WAL checkpoint at lsn {} failed (old WAL files stay): {}", flushing_lsn, e.what());
    }
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
        // A failed flush is retried at least every flush period, never in a tight loop.
        wake.wait_until(lock, deadline, [&] { return stopping || flush_requested; });
        if (stopping) return;
        size_flush = flush_requested;
        flush_requested = false;
      }
      const auto now = Clock::now();
      if (size_flush || now >= last_flush + flush_period) {
        {
          std::lock_guard<std::mutex> guard(flush_mutex);
          flush_locked();
          // Ingest may have filled the new generation while the old one was written.
          if (active.load()->bytes() >= options.memtable_max_bytes) flush_locked();
        }
        last_flush = Clock::now();
      }
      if (options.retention_days > 0 && now >= next_retention) {
        apply_retention();
        next_retention = now + std::chrono::milliseconds(options.retention_check_interval_ms);
      }
      if (options.compaction_interval_ms > 0 && now >= next_compaction) {
        try {
          segments->compact();
        } catch (const std::exception& e) {
          spdlog::error("compaction failed: {}", e.what());
        }
        next_compaction = now + std::chrono::milliseconds(options.compaction_interval_ms);
      }
    }
  }

  std::size_t apply_retention() {
    if (options.retention_days == 0) return 0;
    const Timestamp cutoff = now_ms() - static_cast<Timestamp>(options.retention_days) * 86'400'000;
    try {
      const std::size_t dropped = segments->drop_older_than(cutoff);
      return dropped;
    } catch (const std::exception& e) {
      spdlog::error("retention failed: {}", e.what());
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
  s.segments->for_each_series([&](SeriesId id, std::string_view key) { s.catalog.add(id, key); });

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
        decode_record(lsn, payload, scratch,
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

  s.apply_retention();
  if (options.background) s.background = std::thread([&s] { s.run_background(); });
  return std::unique_ptr<Engine>(new Engine(std::move(impl)));
}

struct IngestScratch::Buffers {
  std::vector<Point> points;
  std::vector<Run> runs;
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
  if (!s.wait_for_room()) {
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
      runs.push_back(Run{p.id, batch.key(p), points.size(), points.size()});
    points.push_back(Point{p.ts, p.value});
    ++runs.back().end;
  }
  encode_record(runs, points, payload);

  {
    std::shared_lock<std::shared_mutex> lock(s.gen_mutex);
    outcome.lsn = s.wal->append(payload);
    Memtable& m = *s.active.load();
    for (const Run& r : runs)
      s.insert(m, r.id, r.key, std::span<const Point>(points).subspan(r.begin, r.end - r.begin));
  }
  if (s.options.sync == SyncMode::always) s.wal->wait_durable(outcome.lsn);
  if (s.active.load()->bytes() >= s.options.memtable_max_bytes) s.request_flush();
  outcome.ingested = batch.points.size();
  s.ingest_points.fetch_add(outcome.ingested, std::memory_order_relaxed);
  return outcome;
}

QueryStatus Engine::query_range(const RangeQuery& q, std::vector<Point>& out) const {
  const Impl& s = *impl_;
  out.clear();
  if (q.start > q.end) return QueryStatus::ok;
  std::vector<Point> active_points, flushing_points;
  std::vector<Point> merged;
  for (;;) {
    active_points.clear();
    flushing_points.clear();
    merged.clear();
    const std::uint64_t swaps_before = s.swaps.load();
    {
      // Active first, then flushing, then the segments: see the essay in engine.hpp.
      alloc::SmallPoolAllocator::EpochGuard guard(s.allocator);
      s.active.load()->read(q.id, q.start, q.end, active_points);
      if (const Memtable* f = s.flushing.load()) f->read(q.id, q.start, q.end, flushing_points);
    }
    s.segments->read(q.id, q.start, q.end, merged);
    if (s.swaps.load() == swaps_before) break;  // no generation was recycled under us
  }
  merged.insert(merged.end(), flushing_points.begin(), flushing_points.end());
  merged.insert(merged.end(), active_points.begin(), active_points.end());
  sort_last_wins(merged);
  if (q.step > 0) {
    downsample(merged, q.step, q.agg == Aggregation::none ? Aggregation::last : q.agg, out);
  } else {
    out = std::move(merged);
  }
  if (out.size() > q.max_points) {
    out.clear();
    return QueryStatus::too_large;
  }
  return QueryStatus::ok;
}

std::vector<SeriesId> Engine::find(std::span<const std::pair<std::string, std::string>> tags,
                                   bool any) const {
  return impl_->catalog.find(tags, any);
}

std::vector<SeriesInfo> Engine::list_series() const {
  return impl_->catalog.list();
}

std::uint64_t Engine::series_count() const {
  return impl_->catalog.size();
}

bool Engine::flush() {
  return impl_->flush();
}

std::size_t Engine::apply_retention() {
  return impl_->apply_retention();
}

bool Engine::compact(bool force) {
  return impl_->segments->compact(4u << 20, 4, force);
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
  st.series = s.catalog.size();
  return st;
}

}  // namespace sydra::storage
