#include "stats_json.hpp"

#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string_view>

namespace sydra::alloc {

namespace {

// A minimal JSON writer: objects, arrays, unsigned integers, doubles, booleans, null and
// strings (keys and the mode name: plain ASCII, escaped anyway). Commas are placed by
// tracking whether the current container already has an element.
class Writer {
 public:
  explicit Writer(std::string& out) : out_(out) {}

  void begin_object() {
    element();
    out_ += '{';
    first_ = true;
  }
  void end_object() {
    out_ += '}';
    first_ = false;
  }
  void begin_array() {
    element();
    out_ += '[';
    first_ = true;
  }
  void end_array() {
    out_ += ']';
    first_ = false;
  }
  void key(std::string_view k) {
    element();
    string(k);
    out_ += ':';
    after_key_ = true;
  }
  void value(std::uint64_t v) {
    element();
    char buf[24];
    int n = std::snprintf(buf, sizeof buf, "%llu", static_cast<unsigned long long>(v));
    out_.append(buf, static_cast<std::size_t>(n));
  }
  void value(double v) {
    element();
    if (!std::isfinite(v)) {
      out_ += "null";  // JSON has no NaN or infinity
      return;
    }
    char buf[32];  // the shortest text that reads back as v: at most 24 characters
    const auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
    out_.append(buf, end);
  }
  void value(bool v) {
    element();
    out_ += v ? "true" : "false";
  }
  void null() {
    element();
    out_ += "null";
  }
  void value(std::string_view v) {
    element();
    string(v);
  }

  template <class T>
  void field(std::string_view k, T v) {
    key(k);
    value(v);
  }

 private:
  void element() {
    if (after_key_) {
      after_key_ = false;
      return;
    }
    if (!first_) out_ += ',';
    first_ = false;
  }
  void string(std::string_view s) {
    out_ += '"';
    for (char c : s) {
      const auto u = static_cast<unsigned char>(c);
      if (c == '"' || c == '\\') {
        out_ += '\\';
        out_ += c;
      } else if (u < 0x20) {
        char buf[8];
        std::snprintf(buf, sizeof buf, "\\u%04x", u);
        out_ += buf;
      } else {
        out_ += c;
      }
    }
    out_ += '"';
  }

  std::string& out_;
  bool first_ = true;
  bool after_key_ = false;
};

void write_class(Writer& w, const ClassStats& c) {
  w.begin_object();
  w.field("size", std::uint64_t{c.size});
  w.field("alloc_size", std::uint64_t{c.size});
#define SYDRA_X(name) w.field(#name, std::uint64_t{c.name});
  SYDRA_CLASS_STATS(SYDRA_X)
#undef SYDRA_X
  w.field("free_nodes", std::uint64_t{c.free_blocks});
  w.field("lock_wait_ns_total", std::uint64_t{c.lock_wait_ns});
  w.field("lock_hold_ns_total", std::uint64_t{c.lock_hold_ns});
  w.end_object();
}

void write_classes(Writer& w, std::string_view key, const std::array<ClassStats, kNumClasses>& classes) {
  w.key(key);
  w.begin_array();
  for (const ClassStats& c : classes) write_class(w, c);
  w.end_array();
}

void write_paths(Writer& w, const PathStats& p) {
  w.key("paths");
  w.begin_object();
#define SYDRA_X(name) w.field(#name, std::uint64_t{p.name});
  SYDRA_PATH_STATS(SYDRA_X)
#undef SYDRA_X
  w.end_object();
}

void write_shard(Writer& w, const ShardStats& sh) {
  w.begin_object();
  w.field("id", std::uint64_t{sh.id});
#define SYDRA_X(name) w.field(#name, std::uint64_t{sh.name});
  SYDRA_SHARD_STATS(SYDRA_X)
#undef SYDRA_X
  const ClassStats t = sh.totals();
  // Totals over the shard's classes.
  w.field("allocations", t.allocations);
  w.field("frees", t.frees);
  w.field("in_use", t.in_use);
  w.field("cached", t.cached);
  w.field("slabs", t.slabs);
  w.field("deferred_enqueued", t.deferred_enqueued);
  w.field("deferred_reclaimed", t.deferred_reclaimed);
  w.field("deferred_pending", t.deferred_pending);
  std::uint64_t in_use_bytes = 0;
  for (const ClassStats& c : sh.classes) in_use_bytes += c.in_use * c.size;
  w.field("in_use_bytes", in_use_bytes);
  write_paths(w, sh.paths);
  write_classes(w, "classes", sh.classes);
  w.end_object();
}

}  // namespace

std::string stats_to_json(const AllocatorStats& s) {
  std::string out;
  out.reserve(4096 + s.shards.size() * 8192);
  Writer w(out);
  w.begin_object();
  w.field("version", std::uint64_t{s.version});
  w.field("allocator_mode", to_string(s.mode));

  w.key("small_pool");
  w.begin_object();
  w.field("shard_enabled", s.shard_enabled);
  w.field("shard_count", std::uint64_t{s.shard_count});
  w.field("slab_bytes", std::uint64_t{s.slab_bytes});
  w.field("shard_alloc_hits", s.shard_alloc_hits);
  w.field("shard_alloc_misses", s.shard_alloc_misses);
  w.field("shard_deferred_total", s.shard_deferred_total);
  w.field("shard_epoch_current", s.epoch.current);
  w.field("shard_epoch_min", s.epoch.min_observed);
  w.field("magazines", s.magazines);
  write_paths(w, s.paths);

  w.key("epoch");
  w.begin_object();
  w.field("current", s.epoch.current);
  w.field("min_observed", s.epoch.min_observed);
  w.field("lag", s.epoch.lag);
  w.field("advances", s.epoch.advances);
  w.field("threads", s.epoch.threads);
  w.field("active_readers", s.epoch.active_readers);
  w.end_object();

  w.key("fallback");
  w.begin_object();
  w.field("allocs", s.fallback.allocs);
  w.field("frees", s.fallback.frees);
  w.field("resizes", s.fallback.resizes);
  w.field("remaps", s.fallback.remaps);
  w.field("live_bytes", s.fallback.live_bytes);
  w.key("size_buckets");
  w.begin_array();
  for (const FallbackStats::Bucket& b : s.fallback.size_buckets) {
    w.begin_object();
    w.field("count", b.count);
    w.key("upper_bound");
    if (b.upper_bound == UINT64_MAX)
      w.null();  // +Inf
    else
      w.value(b.upper_bound);
    w.end_object();
  }
  w.end_array();
  w.end_object();

  write_classes(w, "buckets", s.buckets);
  write_classes(w, "legacy", s.legacy);
  w.key("shards");
  w.begin_array();
  for (const ShardStats& sh : s.shards) write_shard(w, sh);
  w.end_array();
  w.end_object();  // small_pool

  w.key("memory");
  w.begin_object();
  w.field("reserved_bytes", s.memory.reserved_bytes);
  w.field("committed_bytes", s.memory.committed_bytes);
  w.field("resident_bytes", s.memory.resident_bytes);
  w.field("returned_bytes", s.memory.returned_bytes);
  w.field("live_bytes", s.memory.live_bytes);
  w.field("pool_live_bytes", s.memory.pool_live_bytes);
  w.field("process_resident_bytes", s.memory.process_resident_bytes);
  w.field("fragmentation", s.memory.fragmentation);
  w.end_object();

  w.end_object();
  return out;
}

}  // namespace sydra::alloc
