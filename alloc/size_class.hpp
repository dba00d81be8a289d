// Size classes: twelve classes, all multiples of 16, so every block is 16-byte aligned
// (what operator new promises) and a class's blocks are aligned to every power of two
// that divides the class size.
//
//   class:  0   1   2   3   4   5    6    7    8    9    10   11
//   size:   16  32  48  64  80  96   112  128  160  192  224  256
//
// Lookup is one table load; no loop, no branch. The allocate fast path uses
// kBinOffsetOfSize, indexed by the size itself, which gives the byte offset of the
// class's cache bin in a ThreadState (class * 32) in one load.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

#include "config.hpp"

namespace sydra::alloc {

inline constexpr std::size_t kNumClasses = 12;
inline constexpr std::size_t kMinBlock = 16;
inline constexpr std::size_t kMaxSmallSize = 256;

inline constexpr std::array<std::uint32_t, kNumClasses> kClassSize = {16,  32,  48,  64,  80,  96,
                                                                      112, 128, 160, 192, 224, 256};

namespace detail {
constexpr std::array<std::uint8_t, kMaxSmallSize / 16 + 1> make_class_table() {
  std::array<std::uint8_t, kMaxSmallSize / 16 + 1> table{};
  for (std::size_t granules = 0; granules < table.size(); ++granules) {
    std::size_t bytes = granules == 0 ? 16 : granules * 16;
    std::uint8_t cls = 0;
    while (kClassSize[cls] < bytes) ++cls;
    table[granules] = cls;
  }
  return table;
}
}  // namespace detail

// kClassOfGranules[(size + 15) / 16] is the class of a request of `size` bytes (size <= 256).
inline constexpr auto kClassOfGranules = detail::make_class_table();

inline constexpr std::uint32_t kBinBytes = 32;  // sizeof(Bin), see thread_cache.hpp

namespace detail {
constexpr std::array<std::uint16_t, kMaxSmallSize + 1> make_bin_offset_table() {
  std::array<std::uint16_t, kMaxSmallSize + 1> table{};
  for (std::size_t size = 0; size <= kMaxSmallSize; ++size)
    table[size] = static_cast<std::uint16_t>(kClassOfGranules[(size + 15) >> 4] * kBinBytes);
  return table;
}
}  // namespace detail

// kBinOffsetOfSize[size] == size_to_class(size) * kBinBytes, for size <= 256.
inline constexpr auto kBinOffsetOfSize = detail::make_bin_offset_table();

// Precondition: size <= kMaxSmallSize. Size 0 maps to the 16-byte class.
SYDRA_FAST_PATH constexpr std::uint32_t size_to_class(std::size_t size) noexcept {
  return kClassOfGranules[(size + 15) >> 4];
}

SYDRA_FAST_PATH constexpr std::uint32_t class_to_size(std::uint32_t cls) noexcept {
  return kClassSize[cls];
}

// Blocks per magazine: what a thread cache exchanges with its shard in one refill or flush,
// and what a cross-shard hand-off carries. About 16 KiB of blocks, at least 64 and at most
// 256 (16–64 B: 256; 128 B: 128; 256 B: 64). Large enough that a thread whose every block is
// freed elsewhere refills well under once per 100 allocations (a refill is never the 99th
// percentile: 0.6 % of calls on the TSDB size mix), small enough that a thread caches at most
// two magazines per class (335 KiB over all classes).
inline constexpr std::uint32_t kMagazineCapacity = 256;
constexpr std::uint32_t class_batch(std::uint32_t cls) noexcept {
  const std::uint32_t n = 16384 / kClassSize[cls];
  return n < 64 ? 64 : (n > kMagazineCapacity ? kMagazineCapacity : n);
}

static_assert(size_to_class(0) == 0);
static_assert(size_to_class(1) == 0);
static_assert(size_to_class(16) == 0);
static_assert(size_to_class(17) == 1);
static_assert(size_to_class(129) == 8);
static_assert(size_to_class(256) == 11);
static_assert(kBinOffsetOfSize[256] == 11 * kBinBytes && kBinOffsetOfSize[0] == 0);

}  // namespace sydra::alloc
