// The datasets of the storage benchmarks (issue 13): deterministic series of points that
// bench/tsdb_dataset.cpp sends to sydradb and VictoriaMetrics and bench/codec_bench.cpp
// encodes directly. Header-only, no dependency beyond the standard library.
//
// A dataset is `metrics` × `hosts` series (series s = metric s % metrics, host s / metrics),
// each with `points` points at a regular `interval_ms` from `start_ms`. Kinds:
//   decimal  what a host agent reports: metric 0 and 2 (mod 4) are gauges, a slow random
//            walk with 2 decimals (start 10.00-90.00, steps of -0.50..+0.50 drawn
//            uniformly, reflected at 0 and 100); metrics 1 and 3 are counters, increasing
//            integers (a rate per series drawn from 10-1000 per interval; each interval
//            adds a uniform integer in [rate/2, 3·rate/2])
//   wide     the decimal dataset with larger moves: gauge steps drawn from a normal
//            distribution of standard deviation 1.00 (rounded to cents), counter rates
//            drawn from 100-10,000
//   entropy  high-entropy floats: uniform in [0, 1000) with all 53 bits of mantissa,
//            printed with 17 significant digits (the shortest text that round-trips)
// Values are generated as the doubles a parser makes of their text: gauges as
// cents / 100.0 (the correctly rounded quotient, which is what strtod gives for "12.34"),
// counters as integers, entropy as the double itself.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

namespace sydra::bench {

struct DatasetSpec {
  std::string kind = "decimal";  // decimal | wide | entropy
  std::size_t metrics = 4;
  std::size_t hosts = 250;
  std::size_t points = 10'000;  // per series
  std::int64_t interval_ms = 10'000;
  std::int64_t start_ms = 1'700'000'000'000;
  std::uint64_t seed = 13;

  std::size_t series() const { return metrics * hosts; }
  std::uint64_t total_points() const { return static_cast<std::uint64_t>(series()) * points; }
};

// Generates the values of every series in time order: next(s) gives the value of series s
// at the next point index (call it once per series per index).
class Dataset {
 public:
  explicit Dataset(const DatasetSpec& spec) : spec_(spec), state_(spec.series()) {
    if (!known_kind(spec.kind))
      throw std::invalid_argument("unknown dataset kind " + spec.kind + " (decimal, wide or entropy)");
    const bool wide = spec.kind == "wide";
    for (std::size_t s = 0; s < state_.size(); ++s) {
      State& st = state_[s];
      st.rng.seed(spec.seed * 1'000'003 + s);
      st.cents = 1000 + static_cast<std::int64_t>(st.rng() % 8001);
      st.rate = wide ? 100 + static_cast<std::int64_t>(st.rng() % 9901)
                     : 10 + static_cast<std::int64_t>(st.rng() % 991);
      st.counter = static_cast<std::int64_t>(st.rng() % 1'000'000'000);
    }
  }

  static bool known_kind(const std::string& kind) {
    return kind == "decimal" || kind == "wide" || kind == "entropy";
  }
  const DatasetSpec& spec() const { return spec_; }

  static const char* metric_name(std::size_t metric) {
    static const char* const kNames[] = {"cpu_usage_percent", "net_received_bytes_total",
                                         "memory_used_percent", "http_requests_total"};
    return kNames[metric % 4];
  }
  std::string metric_of(std::size_t s) const {
    std::string name = metric_name(s % spec_.metrics);
    if (s % spec_.metrics >= 4) name += "_" + std::to_string(s % spec_.metrics / 4);
    return name;
  }
  std::string host_of(std::size_t s) const {
    char host[32];
    std::snprintf(host, sizeof host, "host-%03zu", s / spec_.metrics);
    return host;
  }
  bool is_counter(std::size_t s) const { return spec_.kind != "entropy" && s % spec_.metrics % 2 == 1; }
  std::int64_t ts(std::size_t index) const {
    return spec_.start_ms + static_cast<std::int64_t>(index) * spec_.interval_ms;
  }

  double next(std::size_t s) {
    State& st = state_[s];
    if (spec_.kind == "entropy") return std::ldexp(static_cast<double>(st.rng() >> 11), -53) * 1000.0;
    if (is_counter(s)) {
      const std::int64_t v = st.counter;
      st.counter +=
          st.rate / 2 + static_cast<std::int64_t>(st.rng() % static_cast<std::uint64_t>(st.rate + 1));
      return static_cast<double>(v);
    }
    const std::int64_t v = st.cents;
    if (spec_.kind == "wide") {
      st.cents += std::llround(st.normal(st.rng) * 100.0);
    } else {
      st.cents += static_cast<std::int64_t>(st.rng() % 101) - 50;
    }
    if (st.cents < 0) st.cents = -st.cents;
    if (st.cents > 10'000) st.cents = 20'000 - st.cents;
    return static_cast<double>(v) / 100.0;
  }

  // The value as its text in a request: the shortest that parses back to the same double.
  int format(std::size_t s, double v, char* out, std::size_t size) const {
    if (spec_.kind == "entropy") return std::snprintf(out, size, "%.17g", v);
    if (is_counter(s)) return std::snprintf(out, size, "%.0f", v);
    return std::snprintf(out, size, "%.2f", v);
  }

 private:
  struct State {
    std::mt19937_64 rng;
    std::normal_distribution<double> normal{0.0, 1.0};
    std::int64_t cents = 0;
    std::int64_t rate = 0;
    std::int64_t counter = 0;
  };
  DatasetSpec spec_;
  std::vector<State> state_;
};

}  // namespace sydra::bench
