// Tests alloc/slab.hpp: the slab range, slab tags and metadata, acquire/release.
#include "alloc/slab.hpp"

#include <doctest/doctest.h>

#include <csignal>
#include <cstring>
#include <set>
#include <vector>

#include "alloc/track.hpp"
#include "support/alloc_test_support.hpp"

namespace sydra::alloc {
namespace {

using test::kSlabBytes;

TEST_SUITE("unit") {
  TEST_CASE("slab tags carry owner and class and never match the free tag") {
    for (std::uint32_t owner = 0; owner <= kLegacyOwner; ++owner) {
      for (std::uint32_t cls = 0; cls < kNumClasses; ++cls) {
        const std::uint16_t tag = make_tag(owner, cls);
        CHECK(tag != kFreeSlabTag);
        CHECK(tag_owner(tag) == owner);
        CHECK(tag_class(tag) == cls);
      }
    }
  }

  TEST_CASE("a slab space reserves slab-aligned slabs and answers range checks") {
    SlabSpace space(std::size_t{1} << 20, kSlabBytes);
    REQUIRE(space.valid());
    CHECK(space.slab_bytes() == kSlabBytes);
    CHECK(space.slab_shift() == 16);
    CHECK(space.slab_count() == 16);
    CHECK(space.span() == (std::size_t{1} << 20));
    CHECK(space.base() % kSlabBytes == 0);
    const auto* base = reinterpret_cast<const char*>(space.base());
    CHECK(space.contains(base));
    CHECK(space.contains(base + space.span() - 1));
    CHECK_FALSE(space.contains(base + space.span()));
    CHECK_FALSE(space.contains(base - 1));
    CHECK_FALSE(space.contains(nullptr));
    CHECK(space.index_of(base + 3 * kSlabBytes + 100) == 3);
    CHECK(space.committed_bytes() == 0);
    CHECK(space.carved_slabs() == 0);
  }

  TEST_CASE("acquire labels a slab for its owner and class") {
    SlabSpace space(std::size_t{1} << 20, kSlabBytes);
    SlabMeta* slab = space.acquire(3, 5);
    REQUIRE(slab != nullptr);
    CHECK(slab->owner == 3);
    CHECK(slab->cls == 5);
    CHECK(slab->capacity == kSlabBytes / 96);
    CHECK(slab->carved == 0);
    CHECK(slab->in_use == 0);
    CHECK(slab->committed);
    CHECK(slab->available() == slab->capacity);
    char* start = space.slab_start(*slab);
    CHECK(space.contains(start));
    CHECK(reinterpret_cast<std::uintptr_t>(start) % kSlabBytes == 0);
    CHECK(&space.meta_of(start + 1000) == slab);
    CHECK(space.tag_of(start + 1000) == make_tag(3, 5));
    CHECK(space.committed_bytes() == kSlabBytes);
    CHECK(space.carved_slabs() == 1);

    space.relabel(*slab, 7, 11);
    CHECK(space.tag_of(start) == make_tag(7, 11));
    CHECK(slab->capacity == kSlabBytes / 256);
    CHECK(slab->owner == 7);
  }

  TEST_CASE("acquire returns nullptr when the range is exhausted and reuses released slabs") {
    SlabSpace space(4 * kSlabBytes, kSlabBytes);
    std::vector<SlabMeta*> slabs;
    std::set<char*> starts;
    for (int i = 0; i < 4; ++i) {
      SlabMeta* s = space.acquire(0, 3);
      REQUIRE(s != nullptr);
      slabs.push_back(s);
      starts.insert(space.slab_start(*s));
    }
    CHECK(starts.size() == 4);
    CHECK(space.acquire(0, 3) == nullptr);
    CHECK(space.committed_bytes() == 4 * kSlabBytes);

    const std::uint64_t returned_before = space.returned_bytes();
    char* start = space.slab_start(*slabs[2]);
    space.release(*slabs[2]);
    CHECK(space.tag_of(start) == kFreeSlabTag);
    CHECK(space.committed_bytes() == 3 * kSlabBytes);
    CHECK(space.returned_bytes() == returned_before + kSlabBytes);

    SlabMeta* again = space.acquire(1, 4);
    CHECK(again == slabs[2]);
    CHECK(space.tag_of(start) == make_tag(1, 4));
    CHECK(space.carved_slabs() == 4);
    CHECK(space.committed_bytes() == 4 * kSlabBytes);
  }

  TEST_CASE("decommit returns a slab's pages but keeps it with its owner") {
    SlabSpace space(std::size_t{1} << 20, kSlabBytes);
    SlabMeta* slab = space.acquire(2, 3);
    REQUIRE(slab != nullptr);
    char* start = space.slab_start(*slab);
    track::unpoison(start, kSlabBytes);
    std::memset(start, 0xAB, kSlabBytes);
    track::poison(start, kSlabBytes);
    CHECK(space.resident_bytes() >= kSlabBytes);

    space.decommit(*slab);
    CHECK_FALSE(slab->committed);
    CHECK(slab->owner == 2);
    CHECK(space.tag_of(start) == make_tag(2, 3));
    CHECK(space.committed_bytes() == 0);
    CHECK(space.returned_bytes() == kSlabBytes);
    CHECK(space.resident_bytes() == 0);
    space.decommit(*slab);  // twice is harmless
    CHECK(space.returned_bytes() == kSlabBytes);
  }

  TEST_CASE("an impossible reserve leaves the space invalid and owning nothing") {
    SlabSpace space(std::size_t{1} << 62, kSlabBytes);
    CHECK_FALSE(space.valid());
    CHECK_FALSE(space.contains(&space));
    CHECK_FALSE(space.contains(nullptr));
  }

  TEST_CASE("a slab size that is not a power of two stops the process with a message") {
    test::ChildResult r = test::run_in_child([] { SlabSpace space(std::size_t{1} << 20, 5000); });
    CHECK(r.signaled);
    CHECK(r.signal == SIGABRT);
    CHECK(test::contains(r.err, "power of two"));
  }

#if SYDRA_ALLOC_DEBUG
  TEST_CASE("debug marks catch a block freed twice or handed out twice") {
    SlabSpace space(std::size_t{1} << 20, kSlabBytes);
    SlabMeta* slab = space.acquire(0, 3);
    REQUIRE(slab != nullptr);
    char* block = space.slab_start(*slab) + 64;
    space.debug_mark_allocated(block, 3);
    space.debug_mark_free(block, 3, "free");
    space.debug_mark_allocated(block, 3);

    test::ChildResult twice = test::run_in_child([&] { space.debug_mark_allocated(block, 3); });
    CHECK(twice.signaled);
    CHECK(twice.signal == SIGABRT);
    CHECK(test::contains(twice.err, "twice"));

    space.debug_mark_free(block, 3, "free");
    test::ChildResult double_free = test::run_in_child([&] { space.debug_mark_free(block, 3, "free"); });
    CHECK(double_free.signaled);
    CHECK(double_free.signal == SIGABRT);
    CHECK(test::contains(double_free.err, "double free"));

    test::ChildResult interior = test::run_in_child([&] { space.debug_mark_free(block + 16, 3, "free"); });
    CHECK(interior.signaled);
    CHECK(test::contains(interior.err, "not the start"));
  }
#endif
}

}  // namespace
}  // namespace sydra::alloc
