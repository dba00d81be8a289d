// Tests alloc/size_class.hpp: the class table, lookups and batch sizes.
#include "alloc/size_class.hpp"

#include <doctest/doctest.h>

#include <algorithm>

namespace sydra::alloc {
namespace {

TEST_SUITE("unit") {
  TEST_CASE("size classes are strictly increasing multiples of 16 up to 256") {
    CHECK(kNumClasses == 12);
    CHECK(kClassSize.front() == kMinBlock);
    CHECK(kClassSize.back() == kMaxSmallSize);
    for (std::size_t c = 0; c < kNumClasses; ++c) {
      CHECK(kClassSize[c] % 16 == 0);
      if (c > 0) CHECK(kClassSize[c] > kClassSize[c - 1]);
    }
  }

  TEST_CASE("size_to_class gives the smallest class that fits for every size up to 256") {
    for (std::size_t size = 0; size <= kMaxSmallSize; ++size) {
      CAPTURE(size);
      const std::uint32_t cls = size_to_class(size);
      REQUIRE(cls < kNumClasses);
      CHECK(class_to_size(cls) >= size);
      if (cls > 0) CHECK(class_to_size(cls - 1) < size);
    }
    CHECK(size_to_class(0) == 0);  // size 0 is a 16-byte block
    for (std::uint32_t c = 0; c < kNumClasses; ++c) CHECK(size_to_class(class_to_size(c)) == c);
  }

  TEST_CASE("size class lookup is usable at compile time") {
    static_assert(size_to_class(64) == 3);
    static_assert(class_to_size(size_to_class(100)) == 112);
    static_assert(size_to_class(255) == 11);
    static_assert(class_batch(0) == kMagazineCapacity);  // 16 KiB / 16 B = 1024, capped at 256
    static_assert(class_batch(7) == 128);                // 16 KiB / 128 B
    static_assert(class_batch(11) == 64);                // 16 KiB / 256 B
    CHECK(true);
  }

  TEST_CASE("a magazine holds about 16 KiB of blocks, between 64 and 256 of them") {
    std::uint32_t cached_bytes = 0;
    for (std::uint32_t c = 0; c < kNumClasses; ++c) {
      CAPTURE(c);
      const std::uint32_t batch = class_batch(c);
      CHECK(batch >= 64);
      CHECK(batch <= kMagazineCapacity);
      CHECK(batch == std::clamp<std::uint32_t>(16384 / class_to_size(c), 64, 256));
      cached_bytes += 2 * batch * class_to_size(c);  // a bin holds two magazines at most
    }
    CHECK(cached_bytes == 343424);  // 335 KiB per thread at most, as size_class.hpp says
  }
}

}  // namespace
}  // namespace sydra::alloc
