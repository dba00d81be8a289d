// Tests the allocator's debug checks (SYDRA_ALLOC_DEBUG: the debug and asan presets) and
// its AddressSanitizer annotations (alloc/track.hpp). Each misuse runs in a fork()ed
// child whose stderr is captured: it must die by SIGABRT with a message that names the
// problem.
#include "alloc/track.hpp"

#include <doctest/doctest.h>

#include <csignal>
#include <cstring>
#include <vector>

#include "alloc/small_pool_allocator.hpp"
#include "support/alloc_test_support.hpp"

namespace sydra::alloc {
namespace {

using test::small_options;

#if SYDRA_ALLOC_DEBUG
void check_aborts_with(const test::ChildResult& r, const char* message) {
  INFO("child stderr: " << r.err);
  CHECK(r.signaled);
  CHECK(r.signal == SIGABRT);
  CHECK(test::contains(r.err, message));
  CHECK(test::contains(r.err, "sydra::alloc: "));
}
#endif

TEST_SUITE("unit") {
  TEST_CASE("debug checks are compiled as configured") {
#if SYDRA_ALLOC_DEBUG
    MESSAGE("allocator debug checks are on");
#else
    MESSAGE("allocator debug checks are off: the misuse tests are not compiled");
#endif
#if SYDRA_ASAN
    MESSAGE("AddressSanitizer annotations are on");
#endif
    CHECK(true);
  }

#if SYDRA_ALLOC_DEBUG
  TEST_CASE("a double free aborts with a message") {
    check_aborts_with(test::run_in_child([] {
                        SmallPoolAllocator a(small_options());
                        void* p = a.allocate(64);
                        a.deallocate(p);
                        a.deallocate(p);
                      }),
                      "double free");
  }

  TEST_CASE("a double sized free aborts with a message") {
    check_aborts_with(test::run_in_child([] {
                        SmallPoolAllocator a(small_options());
                        void* p = a.allocate(200);
                        a.deallocate(p, 200);
                        a.deallocate(p, 200);
                      }),
                      "double free");
  }

  TEST_CASE("a double free across shards aborts with a message") {
    check_aborts_with(test::run_in_child([] {
                        SmallPoolAllocator a(small_options(2));
                        a.bind_current_thread(0);
                        void* p = a.allocate(64);
                        a.bind_current_thread(1);
                        a.deallocate(p);  // cross-shard: deferred to shard 0
                        a.deallocate(p);
                      }),
                      "double free");
  }

  TEST_CASE("freeing a retired block aborts as a double free") {
    check_aborts_with(test::run_in_child([] {
                        SmallPoolAllocator a(small_options());
                        void* p = a.allocate(64);
                        a.retire(p);
                        a.deallocate(p);
                      }),
                      "double free");
  }

  TEST_CASE("a double free after the block was flushed to its slab aborts with a message") {
    check_aborts_with(test::run_in_child([] {
                        SmallPoolAllocator a(small_options());
                        void* p = a.allocate(64);
                        a.deallocate(p);
                        a.flush_thread_cache();
                        a.deallocate(p);
                      }),
                      "double free");
  }

  TEST_CASE("freeing a block of one allocator through another aborts as a wrong owner") {
    check_aborts_with(test::run_in_child([] {
                        SmallPoolAllocator a(small_options());
                        SmallPoolAllocator b(small_options());
                        void* p = a.allocate(64);
                        b.deallocate(p);
                      }),
                      "wrong owner");
  }

  TEST_CASE("a sized free with the wrong size aborts with a message") {
    check_aborts_with(test::run_in_child([] {
                        SmallPoolAllocator a(small_options());
                        void* p = a.allocate(64);
                        a.deallocate(p, 128);
                      }),
                      "sized free");
  }

  TEST_CASE("freeing a pointer into the middle of a block aborts with a message") {
    check_aborts_with(test::run_in_child([] {
                        SmallPoolAllocator a(small_options());
                        auto* p = static_cast<char*>(a.allocate(64));
                        a.deallocate(p + 16);
                      }),
                      "not the start");
  }

  TEST_CASE("the same misuse is harmless when it is not one") {
    // Controls for the tests above: the child exits normally.
    test::ChildResult r = test::run_in_child([] {
      SmallPoolAllocator a(small_options());
      SmallPoolAllocator b(small_options());
      void* p = a.allocate(64);
      void* q = b.allocate(64);
      a.deallocate(p, 64);
      b.deallocate(q);
      void* again = a.allocate(64);  // p's block may come back: not a double allocation
      a.deallocate(again);
    });
    INFO("child stderr: " << r.err);
    CHECK(r.exited);
    CHECK(r.exit_code == 0);
  }
#endif

#if SYDRA_ALLOC_DEBUG && !SYDRA_ASAN
  TEST_CASE("freed blocks are filled past their link") {
    SmallPoolAllocator a(small_options());
    auto* p = static_cast<unsigned char*>(a.allocate(128));
    std::memset(p, 0, 128);
    a.deallocate(p);
    // The block sits in this thread's cache; reading it is what a use-after-free would do.
    bool filled = true;
    for (std::size_t i = track::kLinkBytes; i < 128; ++i) filled &= p[i] == track::kFreedByte;
    CHECK(filled);
  }
#endif

#if SYDRA_ASAN
  TEST_CASE("blocks are poisoned while free and unpoisoned while allocated") {
    SmallPoolAllocator a(small_options());
    for (std::size_t size : {std::size_t{16}, std::size_t{64}, std::size_t{256}}) {
      CAPTURE(size);
      auto* p = static_cast<char*>(a.allocate(size));
      REQUIRE(p != nullptr);
      CHECK_FALSE(__asan_address_is_poisoned(p));
      CHECK_FALSE(__asan_address_is_poisoned(p + size - 1));
      CHECK(__asan_region_is_poisoned(p, size) == nullptr);
      a.deallocate(p);
      CHECK(__asan_address_is_poisoned(p));
      CHECK(__asan_address_is_poisoned(p + 8));
      CHECK(__asan_address_is_poisoned(p + size - 1));
      void* q = a.allocate(size);  // the cache hands it out again: unpoisoned
      CHECK(q == p);
      CHECK(__asan_region_is_poisoned(q, size) == nullptr);
      a.deallocate(q);
    }
    // Uncarved and cached blocks of a fresh slab are poisoned too.
    auto* first = static_cast<char*>(a.allocate(32));
    CHECK(__asan_address_is_poisoned(first + 32 * 40));
    a.deallocate(first);
  }

  // Regression: the slab range was unmapped while still poisoned, so the next mapping at
  // those addresses (another allocator's metadata, any mmap) tripped use-after-poison.
  TEST_CASE("destroying an allocator leaves no poisoned shadow behind") {
    char* freed = nullptr;
    char* uncarved = nullptr;
    {
      SmallPoolAllocator a(small_options());
      freed = static_cast<char*>(a.allocate(64));
      uncarved = freed + 32 * 1024;  // same slab, never handed out: poisoned since acquire
      a.deallocate(freed);
      REQUIRE(__asan_address_is_poisoned(freed));
      REQUIRE(__asan_address_is_poisoned(uncarved));
    }
    CHECK_FALSE(__asan_address_is_poisoned(freed));
    CHECK_FALSE(__asan_address_is_poisoned(uncarved));
  }

  TEST_CASE("a use after free inside a slab is reported by AddressSanitizer") {
    test::ChildResult r = test::run_in_child([] {
      SmallPoolAllocator a(small_options());
      auto* p = static_cast<volatile char*>(a.allocate(64));
      a.deallocate(const_cast<char*>(p));
      p[32] = 1;
    });
    INFO("child stderr: " << r.err);
    const bool clean_exit = r.exited && r.exit_code == 0;
    CHECK_FALSE(clean_exit);
    CHECK(test::contains(r.err, "AddressSanitizer"));
    CHECK(test::contains(r.err, "use-after-poison"));
  }
#endif
}

}  // namespace
}  // namespace sydra::alloc
