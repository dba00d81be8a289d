// bench_alloc's output: the run's own sanity checks, the human table (with ratios against
// the system allocator and, with --paths, latency by path), and the JSON document that
// compare_allocators.sh reads.
#include <cinttypes>
#include <cstdarg>
#include <cstdio>

#include "bench_alloc.hpp"
#include "support/json_writer.hpp"

namespace sydra::bench {
namespace {

void check(RunResult& r, bool ok, const char* fmt, ...) __attribute__((format(printf, 3, 4)));
void check(RunResult& r, bool ok, const char* fmt, ...) {
  if (ok) return;
  char buf[512];
  std::va_list args;
  va_start(args, fmt);
  std::vsnprintf(buf, sizeof buf, fmt, args);
  va_end(args);
  r.failures.emplace_back(buf);
}

}  // namespace

void check_run(const Config& cfg, RunResult& r) {
  PhaseCounters all = r.main;
  all += r.stress;
  const std::uint64_t frees = all.frees + r.cleanup_frees;
  check(r, r.main.allocs > 0 && r.main.frees > 0, "no operations in the main phase");
  check(r, all.alloc_failures == 0, "%" PRIu64 " allocations returned nullptr", all.alloc_failures);
  check(r, all.allocs + r.setup_allocs == frees + all.retires,
        "allocations %" PRIu64 " (+%" PRIu64 " set-up) != frees %" PRIu64 " + retires %" PRIu64, all.allocs,
        r.setup_allocs, frees, all.retires);
  check(r, all.handed == all.received, "blocks handed over %" PRIu64 " != received %" PRIu64, all.handed,
        all.received);
  check(r, all.corrupt_blocks == 0, "%" PRIu64 " blocks changed while their owner held them",
        all.corrupt_blocks);
  check(r, r.read_mismatches == 0,
        "%" PRIu64 " reads saw bytes 16.. of a published block change: reused before its readers left",
        r.read_mismatches);
  check(r, r.read_head_changes == 0,
        "%" PRIu64
        " reads saw the first 16 bytes of a retired block change while it could still be read "
        "(retire() must not write into the block before its epoch has passed)",
        r.read_head_changes);
  if (cfg.readers > 0) check(r, r.reads > 0, "readers read nothing");
  if (cfg.stress_seconds > 0) check(r, r.stress.rounds > 0, "no stress rounds completed");
  const bool handoffs = cfg.workload == Workload::xmalloc ||
                        (cfg.workload == Workload::adr && cfg.threads > 1 && cfg.remote_free_percent > 0);
  if (handoffs) check(r, all.handed > 0, "no cross-thread frees happened");
  if (!r.pool) return;
  const PoolFigures& f = *r.pool;
  check(r, f.allocations == all.allocs + r.setup_allocs,
        "allocator counted %" PRIu64 " allocations, the bench made %" PRIu64, f.allocations,
        all.allocs + r.setup_allocs);
  check(r, f.frees == frees + all.retires, "allocator counted %" PRIu64 " frees, the bench made %" PRIu64,
        f.frees, frees + all.retires);
  check(r, f.in_use_end == 0, "%" PRIu64 " blocks still in use after everything was freed", f.in_use_end);
  check(r, f.deferred_pending_end == 0, "deferred backlog of %" PRIu64 " blocks after the final collection",
        f.deferred_pending_end);
  const bool small_sizes = cfg.sizes.kind != SizeKind::fixed || cfg.sizes.fixed <= alloc::kMaxSmallSize;
  if (r.mode == Mode::sharded && small_sizes) {
    check(r, f.shard_alloc_hits > 0, "sharded mode but no shard allocation hits");
    // (With --foreign-frees=local a cross-shard free stays with the freeing thread.)
    if (f.shard_count > 1 && all.handed > 0 && cfg.foreign_frees == alloc::ForeignFrees::to_owner) {
      check(r, f.deferred_total > 0, "cross-shard frees happened but nothing was deferred");
    }
  }
}

namespace {

std::string fmt(const char* f, ...) __attribute__((format(printf, 1, 2)));
std::string fmt(const char* f, ...) {
  char buf[256];
  std::va_list args;
  va_start(args, f);
  std::vsnprintf(buf, sizeof buf, f, args);
  va_end(args);
  return buf;
}

std::string mib(std::uint64_t bytes) {
  return fmt("%.1f", static_cast<double>(bytes) / (1024.0 * 1024.0));
}

std::string config_line(const Config& cfg) {
  std::string work = cfg.seconds > 0 ? fmt("seconds=%g", cfg.seconds) : fmt("ops/thread=%" PRIu64, cfg.ops);
  return fmt(
      "workload=%s threads=%d readers=%d shards=%d %s sizes=%s remote-free=%d%% live=%u stress=%ds "
      "seed=%" PRIu64,
      std::string(to_string(cfg.workload)).c_str(), cfg.threads, cfg.readers, cfg.shard_count(), work.c_str(),
      cfg.sizes.text().c_str(), cfg.remote_free_percent, cfg.live, cfg.stress_seconds, cfg.seed);
}

// One row per path a call took: how many calls, their latency, and how many of the calls
// at or above the run's p99 and p999 took it — which path the tail is made of.
struct PathRow {
  const char* path;
  std::uint64_t calls;
  double share, p50_ns, p99_ns, max_ns;
  std::uint64_t tail99, tail999;
};

std::vector<PathRow> path_rows(const std::array<LatencyHistogram, kPathCount>& by_path, const Timer& timer) {
  LatencyHistogram all;
  for (const auto& h : by_path) all.merge(h);
  std::vector<PathRow> rows;
  if (all.count() == 0) return rows;
  const double p99 = all.quantile(0.99), p999 = all.quantile(0.999);
  for (std::size_t i = 0; i < kPathCount; ++i) {
    const LatencyHistogram& h = by_path[i];
    if (h.count() == 0) continue;
    rows.push_back(
        {path_name(i), h.count(), static_cast<double>(h.count()) / static_cast<double>(all.count()),
         timer.to_ns(h.quantile(0.5)), timer.to_ns(h.quantile(0.99)),
         timer.to_ns(static_cast<double>(h.max())), h.count_at_or_above(p99), h.count_at_or_above(p999)});
  }
  return rows;
}

void print_paths(const RunResult& r, const Timer& timer) {
  for (const bool is_alloc : {true, false}) {
    const auto rows = path_rows(is_alloc ? r.paths.alloc : r.paths.free, timer);
    if (rows.empty()) continue;
    std::uint64_t t99 = 0, t999 = 0;
    for (const auto& row : rows) {
      t99 += row.tail99;
      t999 += row.tail999;
    }
    std::printf(
        "\n%s, %s calls by path (per million calls; share of the calls at or above the run's p99 / p999):\n",
        std::string(alloc::to_string(r.mode)).c_str(), is_alloc ? "alloc" : "free");
    std::printf("  %-18s %12s %12s %9s %9s %11s %11s %9s\n", "path", "calls", "per million", "p50 ns",
                "p99 ns", "max ns", ">= p99", ">= p999");
    for (const auto& row : rows) {
      std::printf("  %-18s %12" PRIu64 " %12.0f %9.1f %9.1f %11.0f %10.1f%% %8.1f%%\n", row.path, row.calls,
                  row.share * 1e6, row.p50_ns, row.p99_ns, row.max_ns,
                  t99 ? 100.0 * static_cast<double>(row.tail99) / static_cast<double>(t99) : 0.0,
                  t999 ? 100.0 * static_cast<double>(row.tail999) / static_cast<double>(t999) : 0.0);
    }
  }
}

// One row: label, then each run's figure, with "(0.42x)" against the system run when
// there is one and several runs are shown.
struct Row {
  std::string label;
  std::vector<std::string> cells;
};

void print_table(const std::vector<Row>& rows, const std::vector<std::string>& header) {
  std::size_t label_w = 0;
  std::vector<std::size_t> w(header.size(), 0);
  for (std::size_t i = 0; i < header.size(); ++i) w[i] = header[i].size();
  for (const auto& row : rows) {
    label_w = std::max(label_w, row.label.size());
    for (std::size_t i = 0; i < row.cells.size(); ++i) w[i] = std::max(w[i], row.cells[i].size());
  }
  std::printf("%-*s", static_cast<int>(label_w), "");
  for (std::size_t i = 0; i < header.size(); ++i)
    std::printf("  %*s", static_cast<int>(w[i]), header[i].c_str());
  std::printf("\n");
  for (const auto& row : rows) {
    std::printf("%-*s", static_cast<int>(label_w), row.label.c_str());
    for (std::size_t i = 0; i < row.cells.size(); ++i) {
      std::printf("  %*s", static_cast<int>(w[i]), row.cells[i].c_str());
    }
    std::printf("\n");
  }
}

}  // namespace

void print_human(const Config& cfg, const Timer& timer, const std::vector<RunResult>& runs) {
  std::printf("bench_alloc: %s\n", config_line(cfg).c_str());
  std::printf(
      "timer: TSC %.3f ticks/ns; overhead %" PRIu64
      " cycles = %.1f ns (median of an empty rdtsc pair),\n"
      "       subtracted from every latency below (its mean, %.1f cycles, from the means; clamped at 0);\n"
      "       per-call latency from a log-linear histogram (bucket midpoints, <= 3%% error)\n",
      timer.ticks_per_ns, timer.overhead_cycles, timer.overhead_ns(), timer.overhead_mean_cycles);
  if (timer.resolution_cycles > 1) {
    std::printf("       the TSC moves in steps of %" PRIu64
                " cycles = %.1f ns here: single calls are measured in\n"
                "       whole steps, so percentiles below a few steps are coarse; means resolve finer\n",
                timer.resolution_cycles, timer.resolution_ns());
  }
  std::printf("\n");

  const RunResult* sys = nullptr;
  for (const auto& r : runs) {
    if (r.mode == Mode::system) sys = &r;
  }
  const bool ratios = sys != nullptr && runs.size() > 1;
  std::vector<std::string> header;
  for (const auto& r : runs) header.emplace_back(alloc::to_string(r.mode));

  std::vector<Row> rows;
  auto add = [&](const std::string& label, auto value, auto text, bool with_ratio) {
    Row row{label, {}};
    for (const auto& r : runs) {
      std::string cell = text(r);
      if (with_ratio && ratios && &r != sys) {
        const double base = value(*sys);
        cell += base > 0 ? fmt(" (%.2fx)", value(r) / base) : std::string(" (n/a)");
      }
      row.cells.push_back(cell);
    }
    rows.push_back(std::move(row));
  };
  auto num = [&](const std::string& label, auto value, const char* f, bool with_ratio) {
    add(
        label, value, [&](const RunResult& r) { return fmt(f, static_cast<double>(value(r))); }, with_ratio);
  };
  auto count = [&](const std::string& label, auto value) {
    add(
        label, value,
        [&](const RunResult& r) { return fmt("%" PRIu64, static_cast<std::uint64_t>(value(r))); }, false);
  };
  auto pool_count = [&](const std::string& label, auto value) {
    add(
        label, [](const RunResult&) { return 0.0; },
        [&](const RunResult& r) { return r.pool ? fmt("%" PRIu64, value(*r.pool)) : std::string("-"); },
        false);
  };

  num(
      "elapsed main phase (s)", [](const RunResult& r) { return r.elapsed_s; }, "%.3f", false);
  num(
      "throughput (Mops/s, allocs+frees)", [](const RunResult& r) { return r.ops_per_s() / 1e6; }, "%.2f",
      true);
  struct Op {
    const char* name;
    Percentiles RunResult::*field;
  };
  for (const Op op : {Op{"alloc", &RunResult::alloc}, Op{"free", &RunResult::free}}) {
    const std::pair<const char*, double Percentiles::*> ps[] = {
        {"p50", &Percentiles::p50},   {"p95", &Percentiles::p95}, {"p99", &Percentiles::p99},
        {"p999", &Percentiles::p999}, {"max", &Percentiles::max}, {"mean", &Percentiles::mean}};
    for (const auto& p : ps) {
      const auto op_field = op.field;
      const auto p_field = p.second;
      num(
          fmt("%s %s (ns)", op.name, p.first), [=](const RunResult& r) { return (r.*op_field).*p_field; },
          "%.1f", true);
    }
  }
  if (cfg.readers > 0) {
    for (const auto& p : {std::pair{"p50", &Percentiles::p50}, std::pair{"p99", &Percentiles::p99}}) {
      const auto field = p.second;
      add(
          fmt("retire %s (ns)", p.first), [](const RunResult&) { return 0.0; },
          [=](const RunResult& r) {
            return r.retire.count ? fmt("%.1f", r.retire.*field) : std::string("-");
          },
          false);
    }
    count("reads", [](const RunResult& r) { return r.reads; });
    count("read mismatches (bytes 16..)", [](const RunResult& r) { return r.read_mismatches; });
    count("read head changes (bytes 0..15)", [](const RunResult& r) { return r.read_head_changes; });
    count("retires", [](const RunResult& r) { return r.main.retires; });
  }
  count("allocations (main)", [](const RunResult& r) { return r.main.allocs; });
  count("frees (main)", [](const RunResult& r) { return r.main.frees; });
  count("cross-thread frees (main)", [](const RunResult& r) { return r.main.handed; });
  count("handoff ring full (waited)", [](const RunResult& r) { return r.main.handoff_full; });
  pool_count("deferred (shard_deferred_total)", [](const PoolFigures& f) { return f.deferred_total; });
  pool_count("deferred reclaimed", [](const PoolFigures& f) { return f.deferred_reclaimed; });
  pool_count("deferred backlog at end", [](const PoolFigures& f) { return f.deferred_pending_end; });
  pool_count("fallback allocs", [](const PoolFigures& f) { return f.fallback_allocs; });
  pool_count("fallback frees", [](const PoolFigures& f) { return f.fallback_frees; });
  pool_count("shard alloc hits", [](const PoolFigures& f) { return f.shard_alloc_hits; });
  pool_count("shard alloc misses", [](const PoolFigures& f) { return f.shard_alloc_misses; });
  pool_count("lock contention", [](const PoolFigures& f) { return f.lock_contention; });
  pool_count("epoch advances", [](const PoolFigures& f) { return f.epoch_advances; });
  pool_count("gc collected", [](const PoolFigures& f) { return f.gc_collected; });
  add(
      "RSS start / peak / end (MiB; x: peak)",
      [](const RunResult& r) { return static_cast<double>(r.rss_peak); },
      [](const RunResult& r) { return mib(r.rss_start) + " / " + mib(r.rss_peak) + " / " + mib(r.rss_end); },
      true);
  if (cfg.stress_seconds > 0) {
    count("stress rounds", [](const RunResult& r) { return r.stress.rounds; });
    num(
        "stress free p99 (ns)", [](const RunResult& r) { return r.stress_free.p99; }, "%.1f", true);
    add(
        "stress RSS first -> last s (MiB)", [](const RunResult&) { return 0.0; },
        [](const RunResult& r) {
          if (r.stress_samples.empty()) return std::string("-");
          return mib(r.stress_samples.front().rss_bytes) + " -> " + mib(r.stress_samples.back().rss_bytes);
        },
        false);
    add(
        "stress alloc p99 first -> last s (ns)", [](const RunResult&) { return 0.0; },
        [](const RunResult& r) {
          if (r.stress_samples.empty()) return std::string("-");
          return fmt("%.1f -> %.1f", r.stress_samples.front().alloc_p99_ns,
                     r.stress_samples.back().alloc_p99_ns);
        },
        false);
  }
  print_table(rows, header);
  if (ratios) std::printf("(x) = ratio to system in this run\n");
  for (const auto& r : runs)
    if (r.paths.used) print_paths(r, timer);

  for (const auto& r : runs) {
    if (r.stress_samples.empty()) continue;
    std::printf("\nstress, %s: per second\n", std::string(alloc::to_string(r.mode)).c_str());
    std::printf("  %6s  %10s  %16s  %14s  %12s\n", "second", "RSS MiB", "deferred backlog", "alloc p99 ns",
                "allocs");
    for (const auto& s : r.stress_samples) {
      std::printf("  %6d  %10s  %16s  %14.1f  %12" PRIu64 "\n", s.second, mib(s.rss_bytes).c_str(),
                  s.deferred_backlog ? fmt("%" PRIu64, *s.deferred_backlog).c_str() : "-", s.alloc_p99_ns,
                  s.allocs);
    }
  }

  if (ratios) {
    std::printf("\n");
    const std::pair<const char*, double Percentiles::*> ps[] = {
        {"p50", &Percentiles::p50}, {"p99", &Percentiles::p99}, {"p999", &Percentiles::p999}};
    for (const char* op : {"alloc", "free"}) {
      for (const auto& [pname, pfield] : ps) {
        std::printf("%s %s:", pname, op);
        const char* sep = " ";
        for (const auto& r : runs) {
          if (&r == sys) continue;
          const Percentiles& mine = std::string_view(op) == "alloc" ? r.alloc : r.free;
          const Percentiles& base = std::string_view(op) == "alloc" ? sys->alloc : sys->free;
          if (base.*pfield > 0) {
            std::printf("%s%s %.2fx of system", sep, std::string(alloc::to_string(r.mode)).c_str(),
                        mine.*pfield / base.*pfield);
          } else {
            std::printf("%s%s n/a (system is 0 ns)", sep, std::string(alloc::to_string(r.mode)).c_str());
          }
          sep = ", ";
        }
        std::printf("\n");
      }
    }
    std::printf("throughput:");
    const char* sep = " ";
    for (const auto& r : runs) {
      if (&r == sys) continue;
      std::printf("%s%s %.2fx of system", sep, std::string(alloc::to_string(r.mode)).c_str(),
                  sys->ops_per_s() > 0 ? r.ops_per_s() / sys->ops_per_s() : 0.0);
      sep = ", ";
    }
    std::printf("\n");
  }
}

namespace {

void json_percentiles(Json& j, const char* key, const Percentiles& p) {
  j.begin_object(key);
  j.value("p50", p.p50);
  j.value("p95", p.p95);
  j.value("p99", p.p99);
  j.value("p999", p.p999);
  j.value("max", p.max);
  j.value("mean", p.mean);
  j.value("count", p.count);
  j.end_object();
}

void json_counters(Json& j, const char* key, const PhaseCounters& c) {
  j.begin_object(key);
  j.value("allocs", c.allocs);
  j.value("frees", c.frees);
  j.value("cross_thread_frees", c.handed);
  j.value("handoff_full", c.handoff_full);
  j.value("retires", c.retires);
  j.value("alloc_failures", c.alloc_failures);
  j.value("corrupt_blocks", c.corrupt_blocks);
  j.value("rounds", c.rounds);
  j.end_object();
}

void json_paths(Json& j, const char* key, const std::array<LatencyHistogram, kPathCount>& by_path,
                const Timer& timer) {
  j.begin_array(key);
  for (const PathRow& row : path_rows(by_path, timer)) {
    j.begin_object();
    j.value("path", row.path);
    j.value("calls", row.calls);
    j.value("per_million", row.share * 1e6);
    j.value("p50_ns", row.p50_ns);
    j.value("p99_ns", row.p99_ns);
    j.value("max_ns", row.max_ns);
    j.value("at_or_above_p99", row.tail99);
    j.value("at_or_above_p999", row.tail999);
    j.end_object();
  }
  j.end_array();
}

}  // namespace

std::string to_json(const Config& cfg, const Timer& timer, const std::vector<RunResult>& runs, bool ok) {
  Json j;
  j.begin_object();
  j.value("bench", "bench_alloc");
  j.value("version", 2);
  j.value("ok", ok);
  const char* preload = std::getenv("LD_PRELOAD");
  if (preload != nullptr) {
    j.value("ld_preload", preload);
  } else {
    j.null("ld_preload");
  }
  j.begin_object("config");
  j.value("workload", to_string(cfg.workload));
  j.value("threads", cfg.threads);
  j.value("readers", cfg.readers);
  j.value("shards", cfg.shard_count());
  j.value("foreign_frees", cfg.foreign_frees == alloc::ForeignFrees::cache_locally ? "local" : "owner");
  if (cfg.seconds > 0) {
    j.null("ops_per_thread");
    j.value("seconds", cfg.seconds);
  } else {
    j.value("ops_per_thread", cfg.ops);
    j.null("seconds");
  }
  j.value("sizes", cfg.sizes.text());
  j.value("remote_free_percent", cfg.remote_free_percent);
  j.value("live", std::uint64_t{cfg.live});
  j.value("stress_seconds", cfg.stress_seconds);
  j.value("seed", cfg.seed);
  j.value("paths", cfg.paths);
  j.value("smoke", cfg.smoke);
  j.end_object();
  j.begin_object("timer");
  j.value("tsc_ticks_per_ns", timer.ticks_per_ns);
  j.value("overhead_cycles", timer.overhead_cycles);
  j.value("overhead_ns", timer.overhead_ns());
  j.value("overhead_mean_cycles", timer.overhead_mean_cycles);
  j.value("resolution_cycles", timer.resolution_cycles);
  j.value("resolution_ns", timer.resolution_ns());
  j.value("overhead_subtracted", true);
  j.end_object();
  j.begin_array("runs");
  for (const auto& r : runs) {
    j.begin_object();
    j.value("allocator", alloc::to_string(r.mode));
    j.value("elapsed_s", r.elapsed_s);
    j.value("ops_per_s", r.ops_per_s());
    json_percentiles(j, "alloc_ns", r.alloc);
    json_percentiles(j, "free_ns", r.free);
    json_percentiles(j, "retire_ns", r.retire);
    json_percentiles(j, "alloc_ns_raw", r.alloc_raw);
    json_percentiles(j, "free_ns_raw", r.free_raw);
    json_counters(j, "main", r.main);
    json_counters(j, "stress", r.stress);
    j.value("cleanup_frees", r.cleanup_frees);
    j.value("reads", r.reads);
    j.value("read_bytes", r.read_bytes);
    j.value("read_mismatches", r.read_mismatches);
    j.value("read_head_changes", r.read_head_changes);
    j.value("rss_start_bytes", r.rss_start);
    j.value("rss_peak_bytes", r.rss_peak);
    j.value("rss_end_bytes", r.rss_end);
    j.begin_array("rss_series");
    for (const RssPoint& p : r.rss_series) {
      j.begin_object();
      j.value("t_s", p.t_s);
      j.value("rss_bytes", p.rss_bytes);
      j.end_object();
    }
    j.end_array();
    if (r.paths.used) {
      j.begin_object("paths");
      json_paths(j, "alloc", r.paths.alloc, timer);
      json_paths(j, "free", r.paths.free, timer);
      j.end_object();
    } else {
      j.null("paths");
    }
    if (r.pool) {
      const PoolFigures& f = *r.pool;
      j.begin_object("pool");
      j.value("shard_count", std::uint64_t{f.shard_count});
      j.value("shard_alloc_hits", f.shard_alloc_hits);
      j.value("shard_alloc_misses", f.shard_alloc_misses);
      j.value("shard_deferred_total", f.deferred_total);
      j.value("deferred_reclaimed", f.deferred_reclaimed);
      j.value("deferred_pending_end", f.deferred_pending_end);
      j.value("fallback_allocs", f.fallback_allocs);
      j.value("fallback_frees", f.fallback_frees);
      j.value("allocations", f.allocations);
      j.value("frees", f.frees);
      j.value("in_use_end", f.in_use_end);
      j.value("cross_shard_frees", f.cross_shard_frees);
      j.value("lock_contention", f.lock_contention);
      j.value("epoch_advances", f.epoch_advances);
      j.value("epoch_current", f.epoch_current);
      j.value("gc_collected", f.gc_collected);
      j.value("committed_bytes", f.committed_bytes);
      j.value("returned_bytes", f.returned_bytes);
      j.end_object();
    } else {
      j.null("pool");
    }
    j.begin_object("stress_summary");
    json_percentiles(j, "free_ns", r.stress_free);
    if (!r.stress_samples.empty()) {
      const auto& a = r.stress_samples.front();
      const auto& b = r.stress_samples.back();
      j.value("rss_drift_bytes", static_cast<double>(b.rss_bytes) - static_cast<double>(a.rss_bytes));
      j.value("alloc_p99_drift", a.alloc_p99_ns > 0 ? b.alloc_p99_ns / a.alloc_p99_ns : 0.0);
    }
    j.end_object();
    j.begin_array("stress_samples");
    for (const auto& s : r.stress_samples) {
      j.begin_object();
      j.value("second", s.second);
      j.value("rss_bytes", s.rss_bytes);
      if (s.deferred_backlog) {
        j.value("deferred_backlog", *s.deferred_backlog);
      } else {
        j.null("deferred_backlog");
      }
      j.value("alloc_p99_ns", s.alloc_p99_ns);
      j.value("allocs", s.allocs);
      j.end_object();
    }
    j.end_array();
    j.begin_array("failures");
    for (const auto& f : r.failures) j.value(nullptr, f);
    j.end_array();
    j.end_object();
  }
  j.end_array();
  j.end_object();
  return j.str();
}

}  // namespace sydra::bench
