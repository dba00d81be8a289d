// A latency histogram shared by every benchmark in bench/: HdrHistogram-like buckets,
// mergeable, with quantiles and counts above a value.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>

namespace sydra::bench {

// HdrHistogram-like: values below 32 are exact; above, each power of two 2^k is split into
// 16 linear sub-buckets of width 2^(k-4).
class LatencyHistogram {
 public:
  static constexpr unsigned kSubBits = 4;
  static constexpr std::uint64_t kSub = 1u << kSubBits;
  static constexpr std::size_t kBuckets = (64 - kSubBits + 1) * kSub;

  void record(std::uint64_t v) noexcept {
    ++counts_[index(v)];
    ++total_;
    sum_ += v;
    max_ = std::max(max_, v);
  }

  void merge(const LatencyHistogram& o) noexcept {
    for (std::size_t i = 0; i < kBuckets; ++i) counts_[i] += o.counts_[i];
    total_ += o.total_;
    sum_ += o.sum_;
    max_ = std::max(max_, o.max_);
  }

  std::uint64_t count() const noexcept { return total_; }
  std::uint64_t max() const noexcept { return max_; }
  double mean() const noexcept {
    return total_ ? static_cast<double>(sum_) / static_cast<double>(total_) : 0.0;
  }

  // Recorded values at or above v (counted by bucket: values in v's bucket count too).
  std::uint64_t count_at_or_above(double v) const noexcept {
    if (v < 0) v = 0;
    const std::size_t first = index(static_cast<std::uint64_t>(v));
    std::uint64_t n = 0;
    for (std::size_t i = first; i < kBuckets; ++i) n += counts_[i];
    return n;
  }

  // The value at quantile q (0..1), as the midpoint of its bucket (never above the maximum).
  double quantile(double q) const noexcept {
    if (total_ == 0) return 0.0;
    auto rank = static_cast<std::uint64_t>(std::ceil(q * static_cast<double>(total_)));
    rank = std::clamp<std::uint64_t>(rank, 1, total_);
    std::uint64_t seen = 0;
    for (std::size_t i = 0; i < kBuckets; ++i) {
      seen += counts_[i];
      if (seen >= rank) {
        const double mid =
            static_cast<double>(bucket_lower(i)) + static_cast<double>(bucket_width(i) - 1) / 2.0;
        return std::min(mid, static_cast<double>(max_));
      }
    }
    return static_cast<double>(max_);
  }

 private:
  static std::size_t index(std::uint64_t v) noexcept {
    if (v < kSub) return static_cast<std::size_t>(v);
    const unsigned k = 63u - static_cast<unsigned>(__builtin_clzll(v));  // k >= kSubBits
    return (k - kSubBits + 1) * kSub + ((v >> (k - kSubBits)) & (kSub - 1));
  }
  static std::uint64_t bucket_lower(std::size_t i) noexcept {
    if (i < kSub) return i;
    const std::size_t k = i / kSub + kSubBits - 1;
    return (kSub + i % kSub) << (k - kSubBits);
  }
  static std::uint64_t bucket_width(std::size_t i) noexcept {
    if (i < 2 * kSub) return 1;
    return std::uint64_t{1} << (i / kSub + kSubBits - 1 - kSubBits);
  }

  std::uint64_t counts_[kBuckets] = {};
  std::uint64_t total_ = 0;
  std::uint64_t sum_ = 0;
  std::uint64_t max_ = 0;
};

}  // namespace sydra::bench
