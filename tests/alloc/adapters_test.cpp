// Tests alloc/adapters.hpp: PoolResource (std::pmr::memory_resource) and StlAllocator<T>.
#include "alloc/adapters.hpp"

#include <doctest/doctest.h>

#include <cstring>
#include <list>
#include <map>
#include <memory_resource>
#include <new>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "support/alloc_test_support.hpp"

namespace sydra::alloc {
namespace {

using test::small_options;

struct alignas(64) CacheLine {
  char bytes[64];
};

TEST_SUITE("unit") {
  TEST_CASE("PoolResource allocates from its allocator and honours alignment") {
    SmallPoolAllocator a(small_options());
    PoolResource res(a);
    CHECK(&res.allocator() == &a);
    for (std::size_t align :
         {std::size_t{1}, std::size_t{8}, std::size_t{16}, std::size_t{64}, std::size_t{256}}) {
      CAPTURE(align);
      void* p = res.allocate(100, align);
      CHECK(a.owns(p));
      CHECK(test::is_aligned(p, align));
      std::memset(p, 1, 100);
      res.deallocate(p, 100, align);
    }
    void* big = res.allocate(10000, 4096);
    CHECK_FALSE(a.owns(big));
    CHECK(test::is_aligned(big, 4096));
    res.deallocate(big, 10000, 4096);
    const AllocatorStats s = a.snapshot();
    CHECK(test::total_in_use(s) == 0);
    CHECK(s.fallback.live_bytes == 0);
  }

  TEST_CASE("PoolResource throws bad_alloc when the allocator cannot serve") {
    SmallPoolAllocator a(small_options());
    PoolResource res(a);
    CHECK_THROWS_AS(static_cast<void>(res.allocate(SIZE_MAX / 2, 16)), std::bad_alloc);
    CHECK_THROWS_AS(static_cast<void>(res.allocate(SIZE_MAX / 2, 4096)), std::bad_alloc);
  }

  TEST_CASE("PoolResources are equal when they share an allocator") {
    SmallPoolAllocator a(small_options());
    SmallPoolAllocator b(small_options());
    PoolResource ra(a), ra2(a), rb(b);
    CHECK(ra.is_equal(ra));
    CHECK(ra.is_equal(ra2));
    CHECK_FALSE(ra.is_equal(rb));
    CHECK_FALSE(ra.is_equal(*std::pmr::new_delete_resource()));
  }

  TEST_CASE("pmr containers run on a PoolResource") {
    SmallPoolAllocator a(small_options());
    PoolResource res(a);
    {
      std::pmr::vector<int> v(&res);
      for (int i = 0; i < 10; ++i) v.push_back(i);
      CHECK(a.owns(v.data()));  // 40 bytes or so: a pool block
      for (int i = 10; i < 10000; ++i) v.push_back(i);
      CHECK_FALSE(a.owns(v.data()));  // 40 KB: the fallback
      for (int i = 0; i < 10000; ++i) CHECK(v[static_cast<std::size_t>(i)] == i);

      std::pmr::map<int, std::pmr::string> m(&res);
      for (int i = 0; i < 500; ++i) m.emplace(i, std::pmr::string(static_cast<std::size_t>(i % 300), 'x'));
      CHECK(m.size() == 500);
      CHECK(m.at(299).size() == 299);

      std::pmr::unordered_map<int, int> um(&res);
      for (int i = 0; i < 1000; ++i) um[i] = 2 * i;
      CHECK(um.at(777) == 1554);

      // A pool resource upstream of a standard pool resource.
      std::pmr::unsynchronized_pool_resource pool(&res);
      std::pmr::vector<std::pmr::string> strings(&pool);
      for (int i = 0; i < 200; ++i) strings.emplace_back(100, 'y');
      CHECK(std::string_view(strings.back()) == std::string(100, 'y'));
      CHECK(test::total_in_use(a.snapshot()) > 0);
    }
    const AllocatorStats s = a.snapshot();
    CHECK(test::total_in_use(s) == 0);
    CHECK(s.fallback.live_bytes == 0);
  }

  TEST_CASE("StlAllocator puts standard containers on the pool") {
    SmallPoolAllocator a(small_options());
    {
      StlAllocator<int> alloc(a);
      CHECK(&alloc.allocator() == &a);
      std::vector<int, StlAllocator<int>> v(alloc);
      for (int i = 0; i < 16; ++i) v.push_back(i);
      CHECK(a.owns(v.data()));
      for (int i = 16; i < 5000; ++i) v.push_back(i);
      CHECK_FALSE(a.owns(v.data()));
      CHECK(v[4321] == 4321);

      std::list<std::string, StlAllocator<std::string>> l{StlAllocator<std::string>(a)};
      for (int i = 0; i < 100; ++i) l.emplace_back("item");
      CHECK(l.size() == 100);
      CHECK(a.owns(&l.front()));  // list nodes: rebound allocator, pool blocks

      using MapAlloc = StlAllocator<std::pair<const int, double>>;
      std::map<int, double, std::less<>, MapAlloc> m{MapAlloc(a)};
      for (int i = 0; i < 1000; ++i) m[i] = i * 0.5;
      CHECK(m.at(999) == doctest::Approx(499.5));
      CHECK(a.owns(&*m.begin()));

      std::vector<CacheLine, StlAllocator<CacheLine>> lines{StlAllocator<CacheLine>(a)};
      lines.resize(3);  // 192 bytes at 64-byte alignment
      CHECK(test::is_aligned(lines.data(), 64));
      CHECK(a.owns(lines.data()));
      CHECK(test::total_in_use(a.snapshot()) > 0);
    }
    const AllocatorStats s = a.snapshot();
    CHECK(test::total_in_use(s) == 0);
    CHECK(s.fallback.live_bytes == 0);
  }

  TEST_CASE("StlAllocators compare by allocator and rebind") {
    SmallPoolAllocator a(small_options());
    SmallPoolAllocator b(small_options());
    StlAllocator<int> ia(a), ib(b);
    StlAllocator<double> da(ia);  // rebinding copy
    CHECK(&da.allocator() == &a);
    CHECK(ia == da);
    CHECK_FALSE(ia == ib);
    CHECK(ia != ib);
    using Traits = std::allocator_traits<StlAllocator<int>>;
    static_assert(std::is_same_v<Traits::rebind_alloc<char>, StlAllocator<char>>);
    int* p = ia.allocate(4);
    ia.deallocate(p, 4);
    CHECK_THROWS_AS(static_cast<void>(ia.allocate(SIZE_MAX / 2)), std::bad_alloc);
  }

  TEST_CASE("default-constructed adapters use the default allocator") {
    PoolResource res;
    CHECK(&res.allocator() == &default_allocator());
    StlAllocator<int> alloc;
    CHECK(&alloc.allocator() == &default_allocator());
    int* p = alloc.allocate(8);
    CHECK(default_allocator().owns(p));
    alloc.deallocate(p, 8);
  }
}

}  // namespace
}  // namespace sydra::alloc
