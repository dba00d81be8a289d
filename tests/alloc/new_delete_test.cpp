// Tests alloc/new_delete.cpp, the global operator new/delete replacement: this executable
// links the sydra_alloc_new object library, so every form of new and delete must land in
// default_allocator() — small requests in its pool, large or over-aligned ones in its
// fallback.
#include "alloc/small_pool_allocator.hpp"

#include <doctest/doctest.h>

#include <cstring>
#include <map>
#include <memory>
#include <new>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "support/alloc_test_support.hpp"

namespace sydra::alloc {
namespace {

SmallPoolAllocator& pool() {
  return default_allocator();
}

struct alignas(64) Aligned64 {
  char bytes[100];
};
struct alignas(512) Aligned512 {
  char bytes[32];
};

// Keeps the compiler from eliding a new/delete pair (allowed since C++14).
template <class T>
T* keep(T* p) {
  asm volatile("" : : "g"(p) : "memory");
  return p;
}

TEST_SUITE("unit") {
  TEST_CASE("plain and array new land in the default allocator's pool") {
    const std::uint64_t allocs_before = test::total_allocations(pool().snapshot());
    int* one = keep(new int(42));
    CHECK(pool().owns(one));
    CHECK(*one == 42);
    char* array = keep(new char[200]);
    CHECK(pool().owns(array));
    std::memset(array, 1, 200);
    CHECK(test::total_allocations(pool().snapshot()) >= allocs_before + 2);
    delete one;
    delete[] array;
  }

  TEST_CASE("large new goes to the fallback") {
    const std::uint64_t fallback_before = pool().snapshot().fallback.allocs;
    char* big = keep(new char[1000]);
    CHECK_FALSE(pool().owns(big));
    std::memset(big, 2, 1000);
    auto* huge_vector = keep(new std::vector<char>(100000, 'z'));
    CHECK_FALSE(pool().owns(huge_vector->data()));
    CHECK(pool().snapshot().fallback.allocs >= fallback_before + 2);
    const std::uint64_t frees_before = pool().snapshot().fallback.frees;
    delete huge_vector;
    delete[] big;
    CHECK(pool().snapshot().fallback.frees >= frees_before + 2);
  }

  TEST_CASE("nothrow new lands in the pool and returns nullptr on failure") {
    int* p = keep(new (std::nothrow) int(7));
    REQUIRE(p != nullptr);
    CHECK(pool().owns(p));
    delete p;
    void* raw = ::operator new(64, std::nothrow);
    CHECK(pool().owns(raw));
    ::operator delete(raw, std::nothrow);
    void* raw_array = ::operator new[](48, std::nothrow);
    CHECK(pool().owns(raw_array));
    ::operator delete[](raw_array, std::nothrow);
    CHECK(::operator new(SIZE_MAX / 2, std::nothrow) == nullptr);
    CHECK(::operator new[](SIZE_MAX / 2, std::nothrow) == nullptr);
    CHECK(::operator new (SIZE_MAX / 2, std::align_val_t{64}, std::nothrow) == nullptr);
  }

  TEST_CASE("failing new throws bad_alloc") {
    CHECK_THROWS_AS(keep(::operator new(SIZE_MAX / 2)), std::bad_alloc);
    CHECK_THROWS_AS(keep(::operator new[](SIZE_MAX / 2)), std::bad_alloc);
    CHECK_THROWS_AS(keep(::operator new (SIZE_MAX / 2, std::align_val_t{4096})), std::bad_alloc);
  }

  TEST_CASE("aligned new is aligned and small over-aligned objects stay in the pool") {
    auto* a64 = keep(new Aligned64);
    CHECK(test::is_aligned(a64, 64));
    CHECK(pool().owns(a64));
    std::memset(a64->bytes, 3, sizeof a64->bytes);
    delete a64;  // sized aligned delete

    auto* arr = keep(new Aligned64[2]);
    CHECK(test::is_aligned(arr, 64));
    CHECK(pool().owns(arr));
    delete[] arr;

    auto* a512 = keep(new Aligned512);
    CHECK(test::is_aligned(a512, 512));
    CHECK_FALSE(pool().owns(a512));
    delete a512;

    void* raw = ::operator new (100, std::align_val_t{128});
    CHECK(test::is_aligned(raw, 128));
    CHECK(pool().owns(raw));
    ::operator delete (raw, std::align_val_t{128});
    void* raw_array = ::operator new[](32, std::align_val_t{32});
    CHECK(test::is_aligned(raw_array, 32));
    ::operator delete[](raw_array, std::align_val_t{32});
    void* nothrow_aligned = ::operator new (16, std::align_val_t{256}, std::nothrow);
    CHECK(test::is_aligned(nothrow_aligned, 256));
    CHECK(pool().owns(nothrow_aligned));
    ::operator delete (nothrow_aligned, std::align_val_t{256}, std::nothrow);
    void* nothrow_aligned_array = ::operator new[](16, std::align_val_t{1024}, std::nothrow);
    CHECK(test::is_aligned(nothrow_aligned_array, 1024));
    CHECK_FALSE(pool().owns(nothrow_aligned_array));
    ::operator delete[](nothrow_aligned_array, std::align_val_t{1024}, std::nothrow);
  }

  TEST_CASE("sized delete of every form is accepted") {
    // In a child: debug builds check sized frees and abort on a mismatch.
    test::ChildResult r = test::run_in_child([] {
      void* p = ::operator new(32);
      ::operator delete(p, 32);
      void* q = ::operator new[](200);
      ::operator delete[](q, 200);
      void* big = ::operator new(5000);
      ::operator delete(big, 5000);
      void* aligned = ::operator new (100, std::align_val_t{64});
      ::operator delete (aligned, 100, std::align_val_t{64});
      void* aligned_array = ::operator new[](40, std::align_val_t{32});
      ::operator delete[](aligned_array, 40, std::align_val_t{32});
    });
    INFO("child stderr: " << r.err);
    CHECK(r.exited);
    CHECK(r.exit_code == 0);
  }

  TEST_CASE("zero-size new gives unique pointers") {
    void* a = ::operator new(0);
    void* b = ::operator new(0);
    CHECK(a != nullptr);
    CHECK(b != nullptr);
    CHECK(a != b);
    CHECK(pool().owns(a));
    ::operator delete(a);
    ::operator delete(b);
  }

  TEST_CASE("standard containers work on the replaced operator new") {
    std::vector<int> v;
    for (int i = 0; i < 8; ++i) v.push_back(i);
    CHECK(pool().owns(v.data()));
    for (int i = 8; i < 100000; ++i) v.push_back(i);
    CHECK_FALSE(pool().owns(v.data()));
    CHECK(v[99999] == 99999);

    std::string s(100, 'a');
    CHECK(pool().owns(s.data()));
    s += std::string(1000, 'b');
    CHECK(s.size() == 1100);

    std::map<int, std::string> m;
    for (int i = 0; i < 1000; ++i) m.emplace(i, std::to_string(i) + std::string(30, '-'));
    CHECK(m.at(500).substr(0, 3) == "500");
    CHECK(pool().owns(&*m.begin()));

    std::unordered_map<std::string, int> um;
    for (int i = 0; i < 1000; ++i) um["key" + std::to_string(i)] = i;
    CHECK(um.at("key999") == 999);

    auto shared = std::make_shared<std::vector<int>>(10, 1);
    CHECK(pool().owns(shared.get()));
    auto unique = std::make_unique<Aligned64>();
    CHECK(test::is_aligned(unique.get(), 64));
  }

  TEST_CASE("objects made on one thread are deleted on another") {
    std::vector<std::unique_ptr<std::string>> made;
    std::thread producer([&] {
      for (int i = 0; i < 2000; ++i) made.push_back(std::make_unique<std::string>(50, 'q'));
    });
    producer.join();
    int wrong = 0;
    std::thread consumer([&] {
      for (auto& s : made) {
        wrong += s->size() != 50 ? 1 : 0;
        s.reset();
      }
    });
    consumer.join();
    CHECK(wrong == 0);
    made.clear();
    SmallPoolAllocator& a = pool();
    for (int i = 0; i < 4; ++i) {
      a.advance_epoch();
      a.collect_garbage();
    }
    CHECK(a.is_valid());
  }
}

}  // namespace
}  // namespace sydra::alloc
