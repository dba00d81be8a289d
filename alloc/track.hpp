// Telling the sanitizers (and debug builds) which bytes inside a slab are live.
//
// A block on a free list, in a thread cache or in a deferred queue is poisoned for ASan,
// so a use-after-free inside a slab is reported like one on the system heap. The
// allocator itself reads and writes only the first 16 bytes of a free block (the free-list
// link and the deferred epoch tag); it unpoisons them around each such access.
//
// Debug builds (SYDRA_ALLOC_DEBUG) also fill freed blocks past the link with kFreedByte,
// and check the fill is intact when the block is handed out again (writes after free).
#pragma once

#include <cstddef>
#include <cstring>

#include "config.hpp"

#if SYDRA_ASAN
#include <sanitizer/asan_interface.h>
#endif

namespace sydra::alloc::track {

inline constexpr unsigned char kFreedByte = 0xDF;
inline constexpr std::size_t kLinkBytes = 16;

SYDRA_FAST_PATH void poison(void* p, std::size_t n) noexcept {
#if SYDRA_ASAN
  ASAN_POISON_MEMORY_REGION(p, n);
#else
  (void)p, (void)n;
#endif
}

SYDRA_FAST_PATH void unpoison(void* p, std::size_t n) noexcept {
#if SYDRA_ASAN
  ASAN_UNPOISON_MEMORY_REGION(p, n);
#else
  (void)p, (void)n;
#endif
}

SYDRA_FAST_PATH bool is_poisoned(const void* p) noexcept {
#if SYDRA_ASAN
  return __asan_address_is_poisoned(p) != 0;
#else
  (void)p;
  return false;
#endif
}

// Block of `size` bytes is being freed: fill (debug) and poison all of it.
SYDRA_FAST_PATH void on_free(void* p, std::size_t size) noexcept {
#if SYDRA_ALLOC_DEBUG
  std::memset(static_cast<char*>(p) + kLinkBytes, kFreedByte, size - kLinkBytes);
#endif
  poison(p, size);
  (void)size;
}

// Block of `size` bytes is being handed out: check the fill (debug) and unpoison it.
[[noreturn]] inline void check_fill_failed(const void* p, std::size_t size) noexcept {
  fatalf("use after free: %zu-byte block %p was written while free", size, p);
}
SYDRA_FAST_PATH void on_alloc(void* p, std::size_t size) noexcept {
  unpoison(p, size);
#if SYDRA_ALLOC_DEBUG && defined(SYDRA_ALLOC_DEBUG_EXPENSIVE) && SYDRA_ALLOC_DEBUG_EXPENSIVE
  auto* bytes = static_cast<const unsigned char*>(p);
  for (std::size_t i = kLinkBytes; i < size; ++i)
    if (bytes[i] != kFreedByte) check_fill_failed(p, size);
#endif
  (void)p, (void)size;
}

// Read / write the link word of a free block (poisoned everywhere else).
SYDRA_FAST_PATH void* read_link(void* block) noexcept {
  unpoison(block, sizeof(void*));
  void* next = *static_cast<void**>(block);
  poison(block, sizeof(void*));
  return next;
}

SYDRA_FAST_PATH void write_link(void* block, void* next) noexcept {
  unpoison(block, sizeof(void*));
  *static_cast<void**>(block) = next;
  poison(block, sizeof(void*));
}

// The second word of a free block: the next batch, for batches kept in a transfer cache.
SYDRA_FAST_PATH void* read_batch_link(void* block) noexcept {
  void** word = static_cast<void**>(block) + 1;
  unpoison(word, sizeof(void*));
  void* next = *word;
  poison(word, sizeof(void*));
  return next;
}

SYDRA_FAST_PATH void write_batch_link(void* block, void* next) noexcept {
  void** word = static_cast<void**>(block) + 1;
  unpoison(word, sizeof(void*));
  *word = next;
  poison(word, sizeof(void*));
}

}  // namespace sydra::alloc::track
