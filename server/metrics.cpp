#include "server/metrics.hpp"

#include <charconv>
#include <cmath>

#include "server/storage/engine.hpp"

namespace sydra::server {

void RequestMetrics::Slot::record(std::string_view route, int status, double seconds) {
  std::lock_guard<std::mutex> guard(mutex_);
  auto it = series_.find(route);
  if (it == series_.end()) it = series_.emplace(std::string(route), std::map<int, Series>{}).first;
  Series& series = it->second[status];
  ++series.count;
  series.sum_seconds += seconds;
  for (std::size_t i = 0; i < kBounds.size(); ++i)
    if (seconds <= kBounds[i]) {
      ++series.buckets[i];
      break;
    }
}

RequestMetrics::Slot& RequestMetrics::add_slot(std::string listener) {
  slots_.push_back(std::make_unique<Slot>(std::move(listener)));
  return *slots_.back();
}

std::map<RequestMetrics::Key, RequestMetrics::Series> RequestMetrics::merged() const {
  std::map<Key, Series> out;
  for (const auto& slot : slots_) {
    std::lock_guard<std::mutex> guard(slot->mutex_);
    for (const auto& [route, by_status] : slot->series_)
      for (const auto& [status, s] : by_status) {
        Series& o = out[Key{slot->listener_, route, status}];
        o.count += s.count;
        o.sum_seconds += s.sum_seconds;
        for (std::size_t i = 0; i < kBounds.size(); ++i) o.buckets[i] += s.buckets[i];
      }
  }
  return out;
}

namespace {

// A sample value or bound in its shortest form that reads back to the same double
// (895.63496187, not 895.63496186999998), with Prometheus' names for the non-finite ones.
std::string number(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  char buf[32];
  // general: fixed notation unless the exponent is small or large, as %g writes it.
  const auto [end, ec] = std::to_chars(buf, buf + sizeof buf, value, std::chars_format::general);
  return std::string(buf, end);
}

// Builds the text: one HELP and TYPE per metric, then its samples.
class Writer {
 public:
  void family(std::string_view name, std::string_view type, std::string_view help) {
    out_ += "# HELP ";
    out_ += name;
    out_ += ' ';
    out_ += help;
    out_ += "\n# TYPE ";
    out_ += name;
    out_ += ' ';
    out_ += type;
    out_ += '\n';
  }
  void sample(std::string_view name, std::string_view labels, double value) {
    out_ += name;
    if (!labels.empty()) {
      out_ += '{';
      out_ += labels;
      out_ += '}';
    }
    out_ += ' ';
    out_ += number(value);
    out_ += '\n';
  }
  void sample(std::string_view name, std::string_view labels, std::uint64_t value) {
    out_ += name;
    if (!labels.empty()) {
      out_ += '{';
      out_ += labels;
      out_ += '}';
    }
    out_ += ' ';
    out_ += std::to_string(value);
    out_ += '\n';
  }
  // A metric with a single unlabelled sample.
  template <class T>
  void single(std::string_view name, std::string_view type, std::string_view help, T value) {
    family(name, type, help);
    sample(name, "", value);
  }
  std::string take() { return std::move(out_); }

 private:
  std::string out_;
};

std::string escape_label(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

std::string owner_label(std::string_view owner, std::uint32_t size) {
  return "shard=\"" + std::string(owner) + "\",size_class=\"" + std::to_string(size) + "\"";
}

// Per (owner, size class) metrics, one row per ClassStats field.
struct ClassMetric {
  const char* name;
  const char* type;
  const char* help;
  std::uint64_t alloc::ClassStats::*field;
  double scale;  // 1e-9 for nanoseconds exported as seconds
};

constexpr ClassMetric kClassMetrics[] = {
    {"sydradb_alloc_allocations_total", "counter", "Blocks handed to callers.",
     &alloc::ClassStats::allocations, 0},
    {"sydradb_alloc_frees_total", "counter", "Blocks given back, including cross-shard frees and retires.",
     &alloc::ClassStats::frees, 0},
    {"sydradb_alloc_in_use_blocks", "gauge", "Blocks held by callers.", &alloc::ClassStats::in_use, 0},
    {"sydradb_alloc_cached_blocks", "gauge", "Blocks in thread caches.", &alloc::ClassStats::cached, 0},
    {"sydradb_alloc_free_blocks", "gauge", "Free blocks in the owner's slabs and transfer cache.",
     &alloc::ClassStats::free_blocks, 0},
    {"sydradb_alloc_high_water_blocks", "gauge", "Peak of blocks out of the slabs.",
     &alloc::ClassStats::high_water, 0},
    {"sydradb_alloc_refills_total", "counter", "Thread cache refills from the shard.",
     &alloc::ClassStats::refills, 0},
    {"sydradb_alloc_flushes_total", "counter", "Thread cache flushes to the shard.",
     &alloc::ClassStats::flushes, 0},
    {"sydradb_alloc_slabs", "gauge", "Slabs assigned to the size class.", &alloc::ClassStats::slabs, 0},
    {"sydradb_alloc_deferred_enqueued_total", "counter", "Blocks pushed on the deferred queue.",
     &alloc::ClassStats::deferred_enqueued, 0},
    {"sydradb_alloc_deferred_reclaimed_total", "counter",
     "Deferred blocks reclaimed after their epoch passed.", &alloc::ClassStats::deferred_reclaimed, 0},
    {"sydradb_alloc_deferred_pending_blocks", "gauge", "Deferred blocks waiting for their epoch.",
     &alloc::ClassStats::deferred_pending, 0},
    {"sydradb_alloc_lock_acquisitions_total", "counter", "Owner lock acquisitions for the size class.",
     &alloc::ClassStats::lock_acquisitions, 0},
    {"sydradb_alloc_lock_contentions_total", "counter", "Owner lock acquisitions that had to wait.",
     &alloc::ClassStats::lock_contention, 0},
    {"sydradb_alloc_lock_wait_seconds_total", "counter", "Time spent waiting for the owner lock.",
     &alloc::ClassStats::lock_wait_ns, 1e-9},
    {"sydradb_alloc_lock_hold_seconds_total", "counter", "Time the owner lock was held.",
     &alloc::ClassStats::lock_hold_ns, 1e-9},
};

struct ShardMetric {
  const char* name;
  const char* type;
  const char* help;
  std::uint64_t alloc::ShardStats::*field;
  double scale;
};

constexpr ShardMetric kShardMetrics[] = {
    {"sydradb_alloc_shard_threads", "gauge", "Threads bound to the shard.", &alloc::ShardStats::threads, 0},
    {"sydradb_alloc_cross_shard_frees_total", "counter",
     "Frees by the shard's threads of other shards' blocks.", &alloc::ShardStats::cross_shard_frees, 0},
    {"sydradb_alloc_empty_slabs", "gauge", "Empty slabs the shard keeps committed for reuse.",
     &alloc::ShardStats::empty_slabs, 0},
    {"sydradb_alloc_shard_epoch_min", "gauge", "Smallest epoch observed by a reader of the shard.",
     &alloc::ShardStats::epoch_min, 0},
    {"sydradb_alloc_shard_lock_acquisitions_total", "counter", "Shard lock acquisitions, all operations.",
     &alloc::ShardStats::lock_acquisitions, 0},
    {"sydradb_alloc_shard_lock_contentions_total", "counter", "Shard lock acquisitions that had to wait.",
     &alloc::ShardStats::lock_contention, 0},
    {"sydradb_alloc_shard_lock_wait_seconds_total", "counter", "Time spent waiting for the shard lock.",
     &alloc::ShardStats::lock_wait_ns, 1e-9},
    {"sydradb_alloc_shard_lock_hold_seconds_total", "counter", "Time the shard lock was held.",
     &alloc::ShardStats::lock_hold_ns, 1e-9},
};

template <class T>
void emit(Writer& w, const char* name, std::string_view labels, T value, double scale) {
  if (scale != 0)
    w.sample(name, labels, static_cast<double>(value) * scale);
  else
    w.sample(name, labels, static_cast<std::uint64_t>(value));
}

}  // namespace

std::string render_metrics(const MetricsInput& in) {
  Writer w;
  const alloc::AllocatorStats& s = in.alloc;

  w.family("sydradb_build_info", "gauge", "Build information; the value is always 1.");
  w.sample("sydradb_build_info", "version=\"" SYDRADB_VERSION "\"", std::uint64_t{1});
  w.single("sydradb_uptime_seconds", "gauge", "Seconds since the daemon started.", in.uptime_seconds);
  w.single("sydradb_workers", "gauge", "HTTP worker threads.", std::uint64_t{in.workers});

  // HTTP, by listener.
  struct ConnectionMetric {
    const char* name;
    const char* type;
    const char* help;
    std::atomic<std::uint64_t> http::ConnectionCounters::*field;
  };
  static constexpr ConnectionMetric kConnectionMetrics[] = {
      {"sydradb_http_connections_open", "gauge", "Open client connections.",
       &http::ConnectionCounters::connections_active},
      {"sydradb_http_connections_total", "counter", "Client connections accepted.",
       &http::ConnectionCounters::connections_total},
      {"sydradb_http_connections_rejected_total", "counter", "Connections refused at the connection cap.",
       &http::ConnectionCounters::connections_rejected},
      {"sydradb_http_timeouts_total", "counter", "Connections closed by the read or idle timeout.",
       &http::ConnectionCounters::timeouts},
      {"sydradb_http_lingering_closes_total", "counter",
       "Connections closed after draining what the client still sent (lingering close).",
       &http::ConnectionCounters::lingering_closes},
  };
  for (const ConnectionMetric& m : kConnectionMetrics) {
    w.family(m.name, m.type, m.help);
    for (const ListenerCounters& l : in.listeners)
      w.sample(m.name, "listener=\"" + std::string(l.listener) + "\"",
               (l.counters->*m.field).load(std::memory_order_relaxed));
  }
  const auto requests = in.requests.merged();
  auto request_labels = [](const RequestMetrics::Key& key) {
    return "listener=\"" + escape_label(key.listener) + "\",route=\"" + escape_label(key.route) +
           "\",status=\"" + std::to_string(key.status) + "\"";
  };
  w.family("sydradb_http_requests_total", "counter",
           "HTTP requests answered, by listener, route and status.");
  for (const auto& [key, series] : requests)
    w.sample("sydradb_http_requests_total", request_labels(key), series.count);
  w.family("sydradb_http_request_duration_seconds", "histogram",
           "Time from a complete request to its response written, by listener, route and status.");
  for (const auto& [key, series] : requests) {
    const std::string labels = request_labels(key);
    std::uint64_t cumulative = 0;
    for (std::size_t i = 0; i < RequestMetrics::kBounds.size(); ++i) {
      cumulative += series.buckets[i];
      w.sample("sydradb_http_request_duration_seconds_bucket",
               labels + ",le=\"" + number(RequestMetrics::kBounds[i]) + "\"", cumulative);
    }
    w.sample("sydradb_http_request_duration_seconds_bucket", labels + ",le=\"+Inf\"", series.count);
    w.sample("sydradb_http_request_duration_seconds_sum", labels, series.sum_seconds);
    w.sample("sydradb_http_request_duration_seconds_count", labels, series.count);
  }

  // The storage engine.
  if (const storage::EngineStats* st = in.storage) {
    w.single("sydradb_ingest_total", "counter", "Points stored by ingest requests.", st->ingest_points);
    w.single("sydradb_ingest_rejected_total", "counter",
             "NDJSON lines rejected by ingest (malformed, or over max_line_bytes).", st->ingest_rejected);
    w.single("sydradb_ingest_requests_total", "counter", "Ingest requests with a parsed body.",
             st->ingest_requests);
    w.single("sydradb_ingest_busy_total", "counter",
             "Ingest requests refused with 503 because the memtable stayed full.", st->ingest_busy);
    w.single("sydradb_ingest_disk_full_total", "counter",
             "Ingest requests refused with 507 because the disk is full.", st->ingest_disk_full);
    w.single("sydradb_ingest_stopped_total", "counter",
             "Ingest requests refused with 503 because writes are stopped after lost durability.",
             st->ingest_stopped);
    w.single("sydradb_disk_full", "gauge",
             "1 while the last WAL append or flush failed for want of space, else 0.",
             static_cast<std::uint64_t>(st->disk_full));
    w.single("sydradb_writes_stopped", "gauge",
             "1 once writes are stopped after lost durability (a failed WAL fsync), until a restart.",
             static_cast<std::uint64_t>(st->writes_stopped));
    w.single("sydradb_flush_total", "counter", "Memtable generations written to a segment.", st->flushes);
    w.single("sydradb_flush_failures_total", "counter", "Flushes that failed (retried later).",
             st->flush_failures);
    w.single("sydradb_flush_seconds_total", "counter", "Time spent writing flushed segments.",
             st->flush_seconds);
    w.single("sydradb_flush_points_total", "counter", "Points written to segments by flushes.",
             st->flush_points);
    w.single("sydradb_wal_bytes_total", "counter", "Bytes appended to the WAL (framing included).",
             st->wal_bytes);
    w.single("sydradb_wal_records_total", "counter", "Records appended to the WAL (one per ingest request).",
             st->wal_records);
    w.single("sydradb_wal_fsync_total", "counter", "fsync calls on WAL files.", st->wal_fsyncs);
    w.single("sydradb_wal_fsync_seconds_total", "counter", "Time spent in WAL fsync calls.",
             st->wal_fsync_seconds);
    w.single("sydradb_wal_group_commit_waiters_total", "counter",
             "Durability waits satisfied by another request's fsync (group commit).",
             st->wal_group_commit_waiters);
    w.single("sydradb_wal_files", "gauge", "WAL files on disk.", st->wal_files);
    w.single("sydradb_wal_last_lsn", "gauge", "Sequence number of the last WAL record.", st->wal_last_lsn);
    w.single("sydradb_flushed_lsn", "gauge", "Sequence number up to which the WAL is in segments.",
             st->flushed_lsn);
    w.single("sydradb_memtable_bytes", "gauge", "Memory held by the memtable (active + flushing).",
             st->memtable_bytes);
    w.single("sydradb_memtable_max_bytes", "gauge", "The memtable bound (memtable_max_bytes).",
             st->memtable_max_bytes);
    w.single("sydradb_memtable_points", "gauge", "Points in the memtable (active + flushing).",
             st->memtable_points);
    w.single("sydradb_memtable_series", "gauge",
             "Series in the memtable (active + flushing, per generation).", st->memtable_series);
    w.single("sydradb_segments", "gauge", "Segment files in the manifest.", st->segments);
    w.single("sydradb_segment_bytes", "gauge", "Bytes in segment files.", st->segment_bytes);
    w.single("sydradb_segment_points", "gauge", "Points in segment files.", st->segment_points);
    w.single("sydradb_compactions_total", "counter", "Segment compactions since start.", st->compactions);
    w.single("sydradb_retention_dropped_segments_total", "counter",
             "Segments dropped by retention since start.", st->retention_dropped_segments);
    w.single("sydradb_series", "gauge", "Series known to the engine.", st->series);
  }

  // Prometheus remote storage.
  if (const RemoteCounters* r = in.remote) {
    auto load = [](const std::atomic<std::uint64_t>& a) { return a.load(std::memory_order_relaxed); };
    w.single("sydradb_remote_write_samples_total", "counter", "Samples stored by remote_write requests.",
             load(r->write_samples));
    w.single("sydradb_remote_write_series_total", "counter",
             "Time series (with samples) stored by remote_write requests.", load(r->write_series));
    w.single("sydradb_remote_read_queries_total", "counter", "Queries answered by remote_read requests.",
             load(r->read_queries));
    w.single("sydradb_remote_read_series_total", "counter", "Series sent in remote_read answers.",
             load(r->read_series));
    w.single("sydradb_remote_read_samples_total", "counter", "Samples sent in remote_read answers.",
             load(r->read_samples));
    const std::pair<const char*, const std::array<std::atomic<std::uint64_t>, RemoteCounters::kReasons>*>
        rejected[] = {{"sydradb_remote_write_rejected_total", &r->write_rejected},
                      {"sydradb_remote_read_rejected_total", &r->read_rejected}};
    for (const auto& [name, counts] : rejected) {
      w.family(name, "counter", "Requests refused, by reason (docs/metrics.md).");
      for (std::size_t i = 0; i < RemoteCounters::kReasons; ++i)
        w.sample(name, std::string("reason=\"") + RemoteCounters::kReasonNames[i] + "\"", load((*counts)[i]));
    }
  }

  // The allocator: process-wide figures.
  w.family("sydradb_alloc_info", "gauge", "Allocator mode; the value is always 1.");
  w.sample("sydradb_alloc_info", "mode=\"" + std::string(alloc::to_string(s.mode)) + "\"", std::uint64_t{1});
  w.single("sydradb_alloc_shards", "gauge", "Active allocator shards (0 = sharding off).",
           std::uint64_t{s.shard_count});
  w.single("sydradb_alloc_slab_bytes", "gauge", "Slab size in bytes.", std::uint64_t{s.slab_bytes});
  w.single("sydradb_alloc_shard_alloc_hits_total", "counter", "Small allocations served by a shard.",
           s.shard_alloc_hits);
  w.single("sydradb_alloc_shard_alloc_misses_total", "counter", "Small allocations no shard served.",
           s.shard_alloc_misses);
  w.single("sydradb_alloc_epoch", "gauge", "The global epoch.", s.epoch.current);
  w.single("sydradb_alloc_epoch_min_observed", "gauge", "Smallest epoch held by a thread in a read section.",
           s.epoch.min_observed);
  w.single("sydradb_alloc_epoch_lag", "gauge", "Global epoch minus the smallest observed epoch.",
           s.epoch.lag);
  w.single("sydradb_alloc_epoch_advances_total", "counter", "Times the global epoch moved.",
           s.epoch.advances);
  w.single("sydradb_alloc_epoch_threads", "gauge", "Threads with an epoch record.", s.epoch.threads);
  w.single("sydradb_alloc_epoch_active_readers", "gauge", "Threads in a read section or QSBR-online.",
           s.epoch.active_readers);
  w.single("sydradb_alloc_fallback_allocations_total", "counter",
           "Allocations served by the system allocator.", s.fallback.allocs);
  w.single("sydradb_alloc_fallback_frees_total", "counter", "Frees routed to the system allocator.",
           s.fallback.frees);
  w.single("sydradb_alloc_fallback_resizes_total", "counter", "Reallocations that kept their block.",
           s.fallback.resizes);
  w.single("sydradb_alloc_fallback_remaps_total", "counter", "System reallocations that moved the block.",
           s.fallback.remaps);
  w.single("sydradb_alloc_fallback_live_bytes", "gauge", "Bytes in live system-allocator blocks.",
           s.fallback.live_bytes);
  // Counts per size range, not cumulative: a `le` label would make it read as a histogram
  // (one needs the sum of the sizes, which the allocator does not keep).
  w.family("sydradb_alloc_fallback_allocations_by_size_total", "counter",
           "System-allocator allocations by requested size, per range of bytes (not cumulative).");
  // [0,512], (512,1024], ..., (1048576,+Inf)
  std::string open = "[0";
  for (const auto& b : s.fallback.size_buckets) {
    const bool last = b.upper_bound == UINT64_MAX;
    w.sample("sydradb_alloc_fallback_allocations_by_size_total",
             "size_range=\"" + open + "," +
                 (last ? std::string("+Inf)") : std::to_string(b.upper_bound) + "]") + "\"",
             b.count);
    open = "(";
    open += std::to_string(b.upper_bound);
  }
  w.single("sydradb_alloc_reserved_bytes", "gauge", "Address space reserved for slabs.",
           s.memory.reserved_bytes);
  w.single("sydradb_alloc_committed_bytes", "gauge", "Slab memory handed out and not returned to the OS.",
           s.memory.committed_bytes);
  w.single("sydradb_alloc_resident_bytes", "gauge", "Slab pages resident in RAM.", s.memory.resident_bytes);
  w.single("sydradb_alloc_returned_bytes_total", "counter", "Bytes given back to the OS with madvise.",
           s.memory.returned_bytes);
  w.single("sydradb_alloc_live_bytes", "gauge", "Bytes in blocks held by callers (pool and system).",
           s.memory.live_bytes);
  w.single("sydradb_alloc_pool_live_bytes", "gauge", "Bytes in pool blocks held by callers.",
           s.memory.pool_live_bytes);
  w.single("sydradb_alloc_fragmentation_ratio", "gauge", "1 - pool live bytes / committed bytes.",
           s.memory.fragmentation);
  w.single("sydradb_process_resident_bytes", "gauge", "Resident set size of the whole process.",
           s.memory.process_resident_bytes);
  w.single("sydradb_alloc_magazines", "gauge", "Magazines carved (arrays of up to 128 block pointers).",
           s.magazines);
  w.family("sydradb_alloc_slow_path_total", "counter",
           "Slow-path entries of allocate and free by the shard's threads, by path (docs/allocator.md).");
  for (const alloc::ShardStats& sh : s.shards) {
#define SYDRA_X(name)                                                                                     \
  w.sample("sydradb_alloc_slow_path_total", "shard=\"" + std::to_string(sh.id) + "\",path=\"" #name "\"", \
           sh.paths.name);
    SYDRA_PATH_STATS(SYDRA_X)
#undef SYDRA_X
  }

  // Per shard and size class; the legacy buckets carry shard="legacy".
  for (const ClassMetric& m : kClassMetrics) {
    w.family(m.name, m.type, m.help);
    for (const alloc::ShardStats& sh : s.shards)
      for (const alloc::ClassStats& c : sh.classes)
        emit(w, m.name, owner_label(std::to_string(sh.id), c.size), c.*m.field, m.scale);
    for (const alloc::ClassStats& c : s.legacy)
      emit(w, m.name, owner_label("legacy", c.size), c.*m.field, m.scale);
  }
  for (const ShardMetric& m : kShardMetrics) {
    w.family(m.name, m.type, m.help);
    for (const alloc::ShardStats& sh : s.shards)
      emit(w, m.name, "shard=\"" + std::to_string(sh.id) + "\"", sh.*m.field, m.scale);
  }
  return w.take();
}

std::vector<std::string> metric_names() {
  std::vector<std::string> names = {"sydradb_build_info",
                                    "sydradb_uptime_seconds",
                                    "sydradb_workers",
                                    "sydradb_http_connections_open",
                                    "sydradb_http_connections_total",
                                    "sydradb_http_connections_rejected_total",
                                    "sydradb_http_timeouts_total",
                                    "sydradb_http_lingering_closes_total",
                                    "sydradb_http_requests_total",
                                    "sydradb_http_request_duration_seconds",
                                    "sydradb_ingest_total",
                                    "sydradb_ingest_rejected_total",
                                    "sydradb_ingest_requests_total",
                                    "sydradb_ingest_busy_total",
                                    "sydradb_ingest_disk_full_total",
                                    "sydradb_ingest_stopped_total",
                                    "sydradb_disk_full",
                                    "sydradb_writes_stopped",
                                    "sydradb_flush_total",
                                    "sydradb_flush_failures_total",
                                    "sydradb_flush_seconds_total",
                                    "sydradb_flush_points_total",
                                    "sydradb_wal_bytes_total",
                                    "sydradb_wal_records_total",
                                    "sydradb_wal_fsync_total",
                                    "sydradb_wal_fsync_seconds_total",
                                    "sydradb_wal_group_commit_waiters_total",
                                    "sydradb_wal_files",
                                    "sydradb_wal_last_lsn",
                                    "sydradb_flushed_lsn",
                                    "sydradb_memtable_bytes",
                                    "sydradb_memtable_max_bytes",
                                    "sydradb_memtable_points",
                                    "sydradb_memtable_series",
                                    "sydradb_segments",
                                    "sydradb_segment_bytes",
                                    "sydradb_segment_points",
                                    "sydradb_compactions_total",
                                    "sydradb_retention_dropped_segments_total",
                                    "sydradb_series",
                                    "sydradb_remote_write_samples_total",
                                    "sydradb_remote_write_series_total",
                                    "sydradb_remote_read_queries_total",
                                    "sydradb_remote_read_series_total",
                                    "sydradb_remote_read_samples_total",
                                    "sydradb_remote_write_rejected_total",
                                    "sydradb_remote_read_rejected_total",
                                    "sydradb_alloc_info",
                                    "sydradb_alloc_shards",
                                    "sydradb_alloc_slab_bytes",
                                    "sydradb_alloc_shard_alloc_hits_total",
                                    "sydradb_alloc_shard_alloc_misses_total",
                                    "sydradb_alloc_epoch",
                                    "sydradb_alloc_epoch_min_observed",
                                    "sydradb_alloc_epoch_lag",
                                    "sydradb_alloc_epoch_advances_total",
                                    "sydradb_alloc_epoch_threads",
                                    "sydradb_alloc_epoch_active_readers",
                                    "sydradb_alloc_fallback_allocations_total",
                                    "sydradb_alloc_fallback_frees_total",
                                    "sydradb_alloc_fallback_resizes_total",
                                    "sydradb_alloc_fallback_remaps_total",
                                    "sydradb_alloc_fallback_live_bytes",
                                    "sydradb_alloc_fallback_allocations_by_size_total",
                                    "sydradb_alloc_reserved_bytes",
                                    "sydradb_alloc_committed_bytes",
                                    "sydradb_alloc_resident_bytes",
                                    "sydradb_alloc_returned_bytes_total",
                                    "sydradb_alloc_live_bytes",
                                    "sydradb_alloc_pool_live_bytes",
                                    "sydradb_alloc_fragmentation_ratio",
                                    "sydradb_process_resident_bytes",
                                    "sydradb_alloc_magazines",
                                    "sydradb_alloc_slow_path_total"};
  for (const ClassMetric& m : kClassMetrics) names.emplace_back(m.name);
  for (const ShardMetric& m : kShardMetrics) names.emplace_back(m.name);
  return names;
}

}  // namespace sydra::server
