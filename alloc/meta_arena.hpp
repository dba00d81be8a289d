// A bump allocator over pages of our own, for the allocator's metadata objects that live as
// long as their allocator (shards, thread states, magazines, retire nodes). Never calls
// malloc: the allocator may itself be the process's malloc.
//
// Who may touch what: any thread, under the arena's mutex (innermost in the allocator's lock
// order; taken around fork() like the others).
#pragma once

#include <cstddef>
#include <mutex>

#include "config.hpp"
#include "platform.hpp"

namespace sydra::alloc {

class MetaArena {
 public:
  MetaArena() noexcept = default;
  ~MetaArena() {
    while (chunks_ != nullptr) {
      Chunk* next = chunks_->next;
      platform::unmap_pages(chunks_, kChunkBytes);
      chunks_ = next;
    }
  }
  MetaArena(const MetaArena&) = delete;
  MetaArena& operator=(const MetaArena&) = delete;

  void lock_for_fork() noexcept { mutex_.lock(); }
  void unlock_after_fork() noexcept { mutex_.unlock(); }

  // Zeroed, 64-byte aligned memory; aborts when out of memory.
  void* allocate(std::size_t bytes) noexcept {
    bytes = (bytes + 63) & ~std::size_t{63};
    SYDRA_CHECK(bytes <= kChunkBytes - kHeaderBytes, "metadata object of %zu bytes too large", bytes);
    std::lock_guard<std::mutex> guard(mutex_);
    if (chunks_ == nullptr || used_ + bytes > kChunkBytes) {
      void* pages = platform::map_pages(kChunkBytes);
      if (pages == nullptr) fatal("out of memory for allocator metadata");
      auto* chunk = static_cast<Chunk*>(pages);
      chunk->next = chunks_;
      chunks_ = chunk;
      used_ = kHeaderBytes;
    }
    void* p = reinterpret_cast<char*>(chunks_) + used_;
    used_ += bytes;
    return p;
  }

 private:
  static constexpr std::size_t kChunkBytes = 256 * 1024;
  static constexpr std::size_t kHeaderBytes = 64;
  struct Chunk {
    Chunk* next;
  };
  std::mutex mutex_;
  Chunk* chunks_ = nullptr;
  std::size_t used_ = 0;
};

}  // namespace sydra::alloc
