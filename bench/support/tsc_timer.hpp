// Per-call timing with the TSC, shared by every benchmark in bench/.
//
// tsc_now() brackets exactly one call: lfence; rdtsc; lfence at each end (this CPU may
// lack rdtscp). calibrate_timer() measures the TSC rate against the steady clock, the
// timer's own cost (the median of an empty pair, subtracted from every reading) and the
// TSC's step (virtual machines may advance it in steps of ~10 ns).
#pragma once

#include <x86intrin.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <numeric>
#include <thread>
#include <vector>

namespace sydra::bench {

using Clock = std::chrono::steady_clock;

// lfence before rdtsc waits for earlier instructions to finish; lfence after keeps later
// ones from starting before the counter is read. The empty asm keeps the compiler from
// moving memory accesses across either end.
inline __attribute__((always_inline)) std::uint64_t tsc_now() noexcept {
  asm volatile("" ::: "memory");
  _mm_lfence();
  const std::uint64_t t = __rdtsc();
  _mm_lfence();
  asm volatile("" ::: "memory");
  return t;
}

inline std::uint64_t elapsed_cycles(std::uint64_t t0, std::uint64_t t1) noexcept {
  return t1 > t0 ? t1 - t0 : 0;  // a migration between cores may read a smaller counter
}

struct Timer {
  double ticks_per_ns = 1.0;
  std::uint64_t overhead_cycles = 0;  // median of an empty tsc_now() pair
  double overhead_mean_cycles = 0;    // its mean (taken off means)
  // Smallest step between distinct readings. Virtual machines may advance the TSC in steps
  // (e.g. 21 ticks = 10 ns): single calls faster than that read as 0 or 1 step, and only
  // means over many calls resolve them.
  std::uint64_t resolution_cycles = 1;

  double overhead_ns() const noexcept { return static_cast<double>(overhead_cycles) / ticks_per_ns; }
  double resolution_ns() const noexcept { return static_cast<double>(resolution_cycles) / ticks_per_ns; }
  // Cycles of one call to nanoseconds, the timer's own cost taken off.
  double to_ns(double cycles) const noexcept {
    return std::max(0.0, cycles - static_cast<double>(overhead_cycles)) / ticks_per_ns;
  }
  double mean_to_ns(double cycles) const noexcept {
    return std::max(0.0, cycles - overhead_mean_cycles) / ticks_per_ns;
  }
  double to_ns_raw(double cycles) const noexcept { return cycles / ticks_per_ns; }
};

inline Timer calibrate_timer() {
  Timer timer;
  const auto c0 = tsc_now();
  const auto n0 = Clock::now();
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  const auto c1 = tsc_now();
  const auto n1 = Clock::now();
  const double ns =
      static_cast<double>(std::chrono::duration_cast<std::chrono::nanoseconds>(n1 - n0).count());
  timer.ticks_per_ns = static_cast<double>(c1 - c0) / ns;

  constexpr std::size_t kSamples = 100000;
  std::vector<std::uint64_t> samples(kSamples);
  for (auto& s : samples) {
    const std::uint64_t t0 = tsc_now();
    const std::uint64_t t1 = tsc_now();
    s = elapsed_cycles(t0, t1);
  }
  std::sort(samples.begin(), samples.end());
  timer.overhead_cycles = samples[kSamples / 2];
  double sum = 0;
  for (std::size_t i = 0; i < kSamples * 99 / 100; ++i)
    sum += static_cast<double>(samples[i]);  // no interrupts
  timer.overhead_mean_cycles = sum / static_cast<double>(kSamples * 99 / 100);
  std::uint64_t step = 0;
  for (std::size_t i = 1; i < kSamples; ++i) step = std::gcd(step, samples[i] - samples[0]);
  timer.resolution_cycles = step == 0 ? 1 : step;
  return timer;
}

}  // namespace sydra::bench
