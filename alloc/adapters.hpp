// Adapters that put standard containers on a SmallPoolAllocator:
//   PoolResource      a std::pmr::memory_resource (for pmr containers and Beast's
//                     allocator-aware types through std::pmr::polymorphic_allocator)
//   StlAllocator<T>   a classic Allocator for std::vector<T, StlAllocator<T>> and friends
// Both throw std::bad_alloc when the allocator returns nullptr.
#pragma once

#include <cstddef>
#include <limits>
#include <memory_resource>
#include <new>

#include "small_pool_allocator.hpp"

namespace sydra::alloc {

class PoolResource final : public std::pmr::memory_resource {
 public:
  explicit PoolResource(SmallPoolAllocator& allocator = default_allocator()) noexcept
      : allocator_(&allocator) {}
  SmallPoolAllocator& allocator() const noexcept { return *allocator_; }

 private:
  void* do_allocate(std::size_t bytes, std::size_t align) override {
    void* p = allocator_->allocate(bytes, align);
    if (p == nullptr) throw std::bad_alloc();
    return p;
  }
  void do_deallocate(void* p, std::size_t bytes, std::size_t align) override {
    if (align <= kMinBlock) {
      allocator_->deallocate(p, bytes);
    } else {
      allocator_->deallocate(p);  // the size was rounded up to the alignment
    }
  }
  bool do_is_equal(const std::pmr::memory_resource& other) const noexcept override {
    const auto* o = dynamic_cast<const PoolResource*>(&other);
    return o != nullptr && o->allocator_ == allocator_;
  }

  SmallPoolAllocator* allocator_;
};

template <class T>
class StlAllocator {
 public:
  using value_type = T;

  StlAllocator() noexcept : allocator_(&default_allocator()) {}
  explicit StlAllocator(SmallPoolAllocator& allocator) noexcept : allocator_(&allocator) {}
  template <class U>
  StlAllocator(const StlAllocator<U>& other) noexcept : allocator_(&other.allocator()) {}

  T* allocate(std::size_t n) {
    if (n > std::numeric_limits<std::size_t>::max() / sizeof(T)) throw std::bad_array_new_length();
    void* p = allocator_->allocate(n * sizeof(T), alignof(T));
    if (p == nullptr) throw std::bad_alloc();
    return static_cast<T*>(p);
  }
  void deallocate(T* p, std::size_t n) noexcept {
    if constexpr (alignof(T) <= kMinBlock) {
      allocator_->deallocate(p, n * sizeof(T));
    } else {
      allocator_->deallocate(p);
    }
  }

  SmallPoolAllocator& allocator() const noexcept { return *allocator_; }

  template <class U>
  bool operator==(const StlAllocator<U>& other) const noexcept {
    return allocator_ == &other.allocator();
  }

 private:
  SmallPoolAllocator* allocator_;
};

}  // namespace sydra::alloc
