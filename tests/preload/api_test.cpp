// The malloc API of libsydralloc.so, call by call: calloc zeroing and overflow, realloc
// across the small/large boundary (contents kept), every aligned call's alignment and
// errors, malloc_usable_size, free(nullptr), realloc(p, 0), the C++ operators, and frees
// on another thread. Also runs on glibc (without SYDRA_PRELOAD_EXPECTED) as the reference:
// the same checks hold there, except the few marked as the library's own.
#include <errno.h>
#include <malloc.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <new>
#include <thread>
#include <vector>

#include "check.hpp"

using preload_test::opaque;
using preload_test::preloaded;

namespace {

const std::size_t kPage = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));

bool aligned_to(const void* p, std::size_t align) {
  return reinterpret_cast<std::uintptr_t>(p) % align == 0;
}

bool all_bytes(const void* p, std::size_t n, unsigned char v) {
  const auto* b = static_cast<const unsigned char*>(p);
  for (std::size_t i = 0; i < n; ++i)
    if (b[i] != v) return false;
  return true;
}

void fill_pattern(void* p, std::size_t from, std::size_t to) {
  auto* b = static_cast<unsigned char*>(p);
  for (std::size_t i = from; i < to; ++i) b[i] = static_cast<unsigned char>(i * 7 + 3);
}

bool has_pattern(const void* p, std::size_t n) {
  const auto* b = static_cast<const unsigned char*>(p);
  for (std::size_t i = 0; i < n; ++i)
    if (b[i] != static_cast<unsigned char>(i * 7 + 3)) return false;
  return true;
}

const std::size_t kSizes[] = {0,   1,   8,    15,   16,   17,    100,   255,    256,    257,
                              300, 512, 1000, 4095, 4096, 10000, 65536, 131072, 1 << 20};

void test_library_is_active() {
  // Blocks of the shards have their class size as usable size: 100 -> 112. glibc gives 104.
  void* p = opaque(std::malloc(100));
  PRELOAD_CHECK(p != nullptr);
  if (preloaded()) PRELOAD_CHECK(malloc_usable_size(p) == 112);
  std::free(p);
}

void test_free_and_zero_sizes() {
  std::free(nullptr);
  void* a = opaque(std::malloc(0));
  void* b = opaque(std::malloc(0));
  PRELOAD_CHECK(a != nullptr && b != nullptr && a != b);
  std::free(a);
  std::free(b);
  PRELOAD_CHECK(malloc_usable_size(nullptr) == 0);
}

void test_usable_size() {
  for (std::size_t size = 0; size <= 1200; ++size) {
    void* p = opaque(std::malloc(size));
    PRELOAD_CHECK(p != nullptr && aligned_to(p, 16));
    PRELOAD_CHECK(malloc_usable_size(p) >= size);
    std::memset(p, 0x5A, malloc_usable_size(p));  // every usable byte is writable
    std::free(p);
  }
  for (std::size_t size : kSizes) {
    void* p = opaque(std::malloc(size));
    PRELOAD_CHECK(p != nullptr && malloc_usable_size(p) >= size);
    std::free(p);
  }
}

void test_calloc() {
  for (int round = 0; round < 50; ++round) {
    for (std::size_t size : kSizes) {
      // Dirty a block of the size, free it, and calloc the same size: a recycled block
      // must come back zeroed.
      void* dirty = opaque(std::malloc(size));
      PRELOAD_CHECK(dirty != nullptr);
      std::memset(dirty, 0xAB, size);
      std::free(dirty);
      void* p = opaque(std::calloc(1, size));
      PRELOAD_CHECK(p != nullptr && all_bytes(p, size, 0));
      std::memset(p, 0xCD, size);
      std::free(p);
    }
    void* q = opaque(std::calloc(7, 33));
    PRELOAD_CHECK(q != nullptr && all_bytes(q, 7 * 33, 0));
    std::free(q);
  }
  errno = 0;
  PRELOAD_CHECK(opaque(std::calloc(opaque(SIZE_MAX / 2 + 1), 2)) == nullptr);
  PRELOAD_CHECK(errno == ENOMEM);
  errno = 0;
  PRELOAD_CHECK(opaque(std::calloc(opaque(SIZE_MAX), opaque(SIZE_MAX))) == nullptr);
  PRELOAD_CHECK(errno == ENOMEM);
  errno = 0;
  PRELOAD_CHECK(opaque(std::calloc(1, opaque(SIZE_MAX))) == nullptr);
  PRELOAD_CHECK(errno == ENOMEM);
  errno = 0;
  PRELOAD_CHECK(opaque(std::malloc(opaque(SIZE_MAX))) == nullptr);
  PRELOAD_CHECK(errno == ENOMEM);
  errno = 0;
  PRELOAD_CHECK(opaque(std::malloc(opaque(SIZE_MAX / 2))) == nullptr);
  PRELOAD_CHECK(errno == ENOMEM);
}

void test_realloc() {
  // Up and down across the 256-byte boundary between the shards and the system allocator.
  const std::size_t steps[] = {1,   8,   16,  100, 255, 256, 257, 300, 4096, 65536, 1 << 20,
                               300, 257, 256, 255, 100, 16,  8,   1,   200,  3000,  16};
  void* p = opaque(std::malloc(1));
  std::size_t have = 1;
  fill_pattern(p, 0, 1);
  for (std::size_t size : steps) {
    void* q = opaque(std::realloc(p, size));
    PRELOAD_CHECK(q != nullptr);
    if (q == nullptr) return;
    const std::size_t kept = have < size ? have : size;
    PRELOAD_CHECK(has_pattern(q, kept));
    PRELOAD_CHECK(malloc_usable_size(q) >= size);
    fill_pattern(q, kept, size);
    p = q;
    have = size;
  }
  std::free(p);

  // realloc(nullptr, n) is malloc(n).
  void* r = opaque(std::realloc(nullptr, 40));
  PRELOAD_CHECK(r != nullptr && malloc_usable_size(r) >= 40);
  // realloc(p, 0) frees p and returns nullptr (glibc's behaviour, kept by the library).
  PRELOAD_CHECK(opaque(std::realloc(r, 0)) == nullptr);

  // A failed realloc leaves the block alone.
  void* s = opaque(std::malloc(64));
  fill_pattern(s, 0, 64);
  errno = 0;
  PRELOAD_CHECK(opaque(std::realloc(opaque(s), opaque(SIZE_MAX / 2))) == nullptr);
  PRELOAD_CHECK(errno == ENOMEM);
  PRELOAD_CHECK(has_pattern(s, 64));
  errno = 0;
  PRELOAD_CHECK(opaque(reallocarray(opaque(s), opaque(SIZE_MAX / 4), 8)) == nullptr);
  PRELOAD_CHECK(errno == ENOMEM);
  PRELOAD_CHECK(has_pattern(s, 64));
  void* t = opaque(reallocarray(s, 10, 30));
  PRELOAD_CHECK(t != nullptr && has_pattern(t, 64) && malloc_usable_size(t) >= 300);
  std::free(t);
}

void test_aligned() {
  const std::size_t aligns[] = {8, 16, 32, 64, 128, 256, 512, 1024, 4096, 65536};
  const std::size_t sizes[] = {0, 1, 16, 24, 100, 200, 256, 257, 1000, 5000, 100000};
  for (std::size_t align : aligns) {
    for (std::size_t size : sizes) {
      void* p = reinterpret_cast<void*>(0x1);
      PRELOAD_CHECK(posix_memalign(&p, align, size) == 0);
      PRELOAD_CHECK(p != nullptr && aligned_to(p, align) && malloc_usable_size(p) >= size);
      std::memset(p, 0x11, size);
      std::free(p);

      void* q = opaque(aligned_alloc(align, size));
      PRELOAD_CHECK(q != nullptr && aligned_to(q, align) && malloc_usable_size(q) >= size);
      std::memset(q, 0x22, size);
      std::free(q);

      void* r = opaque(memalign(align, size));
      PRELOAD_CHECK(r != nullptr && aligned_to(r, align) && malloc_usable_size(r) >= size);
      std::memset(r, 0x33, size);
      std::free(r);
    }
  }
  // posix_memalign: EINVAL for an alignment that is not a power of two or not a multiple
  // of sizeof(void*); the output is not written.
  for (std::size_t bad :
       {std::size_t{0}, std::size_t{4}, std::size_t{24}, std::size_t{48}, std::size_t{100}}) {
    void* p = reinterpret_cast<void*>(0x1234);
    PRELOAD_CHECK(posix_memalign(&p, bad, 64) == EINVAL);
    PRELOAD_CHECK(p == reinterpret_cast<void*>(0x1234));
  }
  {
    void* p = reinterpret_cast<void*>(0x1234);
    PRELOAD_CHECK(posix_memalign(&p, 64, opaque(SIZE_MAX / 2)) == ENOMEM);
    PRELOAD_CHECK(p == reinterpret_cast<void*>(0x1234));
  }
  if (preloaded()) {
    // The library follows C17 (and glibc >= 2.38): aligned_alloc rejects a non-power-of-two.
    errno = 0;
    PRELOAD_CHECK(opaque(aligned_alloc(24, 48)) == nullptr);
    PRELOAD_CHECK(errno == EINVAL);
  }
  // memalign rounds an alignment that is not a power of two up to one (glibc's rule).
  for (std::size_t align : {std::size_t{24}, std::size_t{48}, std::size_t{100}, std::size_t{3000}}) {
    std::size_t pow2 = 1;
    while (pow2 < align) pow2 <<= 1;
    void* p = opaque(memalign(align, 50));
    PRELOAD_CHECK(p != nullptr && aligned_to(p, pow2));
    std::free(p);
  }
  for (std::size_t size : {std::size_t{0}, std::size_t{1}, std::size_t{100}, kPage, kPage + 1, 3 * kPage}) {
    void* v = opaque(valloc(size));
    PRELOAD_CHECK(v != nullptr && aligned_to(v, kPage) && malloc_usable_size(v) >= size);
    std::free(v);
    // pvalloc: page-aligned, size rounded up to whole pages.
    void* pv = opaque(pvalloc(size));
    const std::size_t pages = (size + kPage - 1) / kPage * kPage;
    PRELOAD_CHECK(pv != nullptr && aligned_to(pv, kPage) && malloc_usable_size(pv) >= pages);
    std::memset(pv, 0x44, pages);
    std::free(pv);
  }
  errno = 0;
  PRELOAD_CHECK(opaque(pvalloc(opaque(SIZE_MAX - 10))) == nullptr);
  PRELOAD_CHECK(errno == ENOMEM);
}

struct alignas(64) Line {
  char bytes[64];
};
struct alignas(512) Big {
  char bytes[512];
};

void test_operators() {
  int* i = new int(42);
  PRELOAD_CHECK(*i == 42 && aligned_to(i, alignof(int)));
  delete i;
  char* arr = new char[1000];
  std::memset(arr, 1, 1000);
  delete[] arr;
  Line* l = new Line[3];
  PRELOAD_CHECK(aligned_to(l, 64));
  delete[] l;
  Big* b = new Big;
  PRELOAD_CHECK(aligned_to(b, 512));
  delete b;
  PRELOAD_CHECK(new (std::nothrow) char[opaque(SIZE_MAX / 2)] == nullptr);
  bool threw = false;
  try {
    char* huge = opaque(new char[opaque(SIZE_MAX / 2)]);  // opaque: the pair cannot be elided
    delete[] huge;
  } catch (const std::bad_alloc&) {
    threw = true;
  }
  PRELOAD_CHECK(threw);
}

void test_many_blocks_distinct() {
  // 20000 live small blocks, each stamped with its index: no two overlap.
  std::vector<std::uint32_t*> blocks;
  for (std::uint32_t i = 0; i < 20000; ++i) {
    const std::size_t size = 4 + (i * 13) % 250;
    auto* p = static_cast<std::uint32_t*>(opaque(std::malloc(size)));
    PRELOAD_CHECK(p != nullptr);
    *p = i;
    blocks.push_back(p);
  }
  for (std::uint32_t i = 0; i < blocks.size(); ++i) PRELOAD_CHECK(*blocks[i] == i);
  for (void* p : blocks) std::free(p);
}

void test_cross_thread() {
  // Blocks made on one thread, freed (and reallocated) on another.
  std::vector<void*> blocks(10000);
  std::thread maker([&] {
    for (std::size_t i = 0; i < blocks.size(); ++i) {
      blocks[i] = std::malloc(1 + i % 600);
      std::memset(blocks[i], 0x77, 1 + i % 600);
    }
  });
  maker.join();
  std::thread freer([&] {
    for (std::size_t i = 0; i < blocks.size(); i += 2) std::free(blocks[i]);
    for (std::size_t i = 1; i < blocks.size(); i += 2) {
      blocks[i] = std::realloc(blocks[i], 1 + (i * 7) % 700);
      PRELOAD_CHECK(blocks[i] != nullptr);
    }
  });
  freer.join();
  for (std::size_t i = 1; i < blocks.size(); i += 2) std::free(blocks[i]);
}

}  // namespace

int main() {
  test_library_is_active();
  test_free_and_zero_sizes();
  test_usable_size();
  test_calloc();
  test_realloc();
  test_aligned();
  test_operators();
  test_many_blocks_distinct();
  test_cross_thread();
  return preload_test::finish("preload api");
}
