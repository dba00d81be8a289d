// Replaces every form of global operator new and delete so that the whole program runs on
// default_allocator(). Opt-in: link the `sydra_alloc_new` object library.
//
// Small requests (<= 256 B, alignment <= 256) come from the calling thread's shard; the
// rest from the system allocator. Sized deletes pass the size on (debug builds check it);
// aligned deletes free by address (the size was rounded up to the alignment).
#include <cstddef>
#include <new>

#include "alloc/small_pool_allocator.hpp"

namespace {

using sydra::alloc::default_allocator;

void* allocate_or_throw(std::size_t size, std::size_t align) {
  for (;;) {
    if (void* p = default_allocator().allocate(size, align)) return p;
    std::new_handler handler = std::get_new_handler();
    if (handler == nullptr) throw std::bad_alloc();
    handler();
  }
}

void* allocate_nothrow(std::size_t size, std::size_t align) noexcept {
  try {
    return allocate_or_throw(size, align);
  } catch (...) {
    return nullptr;
  }
}

constexpr std::size_t kDefaultAlign = __STDCPP_DEFAULT_NEW_ALIGNMENT__;

}  // namespace

void* operator new(std::size_t size) {
  return allocate_or_throw(size, kDefaultAlign);
}
void* operator new[](std::size_t size) {
  return allocate_or_throw(size, kDefaultAlign);
}
void* operator new(std::size_t size, const std::nothrow_t&) noexcept {
  return allocate_nothrow(size, kDefaultAlign);
}
void* operator new[](std::size_t size, const std::nothrow_t&) noexcept {
  return allocate_nothrow(size, kDefaultAlign);
}
void* operator new(std::size_t size, std::align_val_t align) {
  return allocate_or_throw(size, static_cast<std::size_t>(align));
}
void* operator new[](std::size_t size, std::align_val_t align) {
  return allocate_or_throw(size, static_cast<std::size_t>(align));
}
void* operator new(std::size_t size, std::align_val_t align, const std::nothrow_t&) noexcept {
  return allocate_nothrow(size, static_cast<std::size_t>(align));
}
void* operator new[](std::size_t size, std::align_val_t align, const std::nothrow_t&) noexcept {
  return allocate_nothrow(size, static_cast<std::size_t>(align));
}

void operator delete(void* p) noexcept {
  default_allocator().deallocate(p);
}
void operator delete[](void* p) noexcept {
  default_allocator().deallocate(p);
}
void operator delete(void* p, std::size_t size) noexcept {
  default_allocator().deallocate(p, size);
}
void operator delete[](void* p, std::size_t size) noexcept {
  default_allocator().deallocate(p, size);
}
void operator delete(void* p, const std::nothrow_t&) noexcept {
  default_allocator().deallocate(p);
}
void operator delete[](void* p, const std::nothrow_t&) noexcept {
  default_allocator().deallocate(p);
}
void operator delete(void* p, std::align_val_t) noexcept {
  default_allocator().deallocate(p);
}
void operator delete[](void* p, std::align_val_t) noexcept {
  default_allocator().deallocate(p);
}
void operator delete(void* p, std::size_t, std::align_val_t) noexcept {
  default_allocator().deallocate(p);
}
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept {
  default_allocator().deallocate(p);
}
void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept {
  default_allocator().deallocate(p);
}
void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept {
  default_allocator().deallocate(p);
}
