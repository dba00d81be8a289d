// Slabs: fixed-size, size-aligned pieces of one virtual range reserved at start-up.
//
// The range is [base, base + span). Slab i starts at base + i * slab_bytes. A block's
// slab is found from its address by a subtraction and a shift, so blocks carry no header:
//
//   owns(p)      == (p - base) < span                  (one compare)
//   slab of p    == (p - base) >> slab_shift
//
// Per-slab metadata lives in a side array (never inside the slab), so returning a slab's
// pages to the OS loses nothing. A compact array of 16-bit tags, (owner << 4) | class,
// is what the free fast path reads: one load tells both who owns the block and its class.
// A tag is ((owner + 1) << 9) | (class << 5): the class part is the byte offset of the
// class's Bin in a ThreadState (bins are 32 bytes), so tag ^ thread.shard_tag is that
// offset exactly when the thread's shard owns the slab. Owners are stored plus one, so
// the zero tag of a never-carved or released slab matches no thread's shard.
//
// Who may touch what:
//   - a slab's SlabMeta fields are written only by its owner (a shard, or the legacy
//     bucket of its class) under the owner's lock; the SlabSpace's own free list of
//     slabs is under SlabSpace::mutex_;
//   - the tag of a slab changes only when the slab moves between owners, under the locks
//     of both; the tag is read without a lock by threads freeing a block of that slab,
//     which they can only hold because the slab was assigned before (happens-before
//     through whatever gave them the block).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <mutex>

#include "config.hpp"
#include "size_class.hpp"

namespace sydra::alloc {

// Owner ids carried in slab tags.
inline constexpr std::uint32_t kMaxShards = 64;
inline constexpr std::uint32_t kLegacyOwner = kMaxShards;  // the legacy buckets
inline constexpr std::uint32_t kNoOwner = 0xFFE;           // slab not assigned
inline constexpr std::uint32_t kTagClassShift = 5;         // log2(sizeof(Bin))
inline constexpr std::uint32_t kTagOwnerShift = 9;
inline constexpr std::uint16_t make_tag(std::uint32_t owner, std::uint32_t cls) noexcept {
  return static_cast<std::uint16_t>(((owner + 1) << kTagOwnerShift) | (cls << kTagClassShift));
}
inline constexpr std::uint32_t tag_owner(std::uint16_t tag) noexcept {
  return (tag >> kTagOwnerShift) - 1u;
}
inline constexpr std::uint32_t tag_class(std::uint16_t tag) noexcept {
  return (tag >> kTagClassShift) & 0xFu;
}
static_assert(make_tag(kMaxShards, kNumClasses - 1) < (1u << 16));
inline constexpr std::uint16_t kFreeSlabTag = 0;

struct SlabMeta {
  SlabMeta* next = nullptr;  // in the owner's partial list or the empty-slab list
  SlabMeta* prev = nullptr;
  void* free_list = nullptr;     // blocks given back to this slab
  std::uint32_t free_count = 0;  // blocks on free_list
  std::uint32_t carved = 0;      // blocks carved from the slab so far (bump index)
  std::uint32_t in_use = 0;      // blocks out of the slab: with callers, cached or deferred
  std::uint32_t capacity = 0;    // blocks the slab holds in its current class
  std::uint16_t owner = kNoOwner;
  std::uint8_t cls = 0;
  bool in_partial = false;  // linked into its owner's partial list
  bool committed = false;   // pages may be resident (false after decommit)

  std::uint32_t available() const noexcept { return free_count + (capacity - carved); }
};

class SlabSpace {
 public:
  // Reserves `reserve_bytes` (rounded down to slabs) of slab_bytes-aligned slabs.
  SlabSpace(std::size_t reserve_bytes, std::size_t slab_bytes) noexcept;
  ~SlabSpace();
  SlabSpace(const SlabSpace&) = delete;
  SlabSpace& operator=(const SlabSpace&) = delete;

  bool valid() const noexcept { return base_ != 0; }
  std::uintptr_t base() const noexcept { return base_; }
  std::size_t span() const noexcept { return span_; }
  std::uint32_t slab_shift() const noexcept { return slab_shift_; }
  std::size_t slab_bytes() const noexcept { return std::size_t{1} << slab_shift_; }
  std::size_t slab_count() const noexcept { return slab_count_; }
  std::atomic<std::uint16_t>* tags() const noexcept { return tags_; }

  bool contains(const void* p) const noexcept { return reinterpret_cast<std::uintptr_t>(p) - base_ < span_; }
  std::size_t index_of(const void* p) const noexcept {
    return (reinterpret_cast<std::uintptr_t>(p) - base_) >> slab_shift_;
  }
  SlabMeta& meta(std::size_t index) const noexcept { return metas_[index]; }
  SlabMeta& meta_of(const void* p) const noexcept { return metas_[index_of(p)]; }
  std::size_t index_of(const SlabMeta& m) const noexcept { return static_cast<std::size_t>(&m - metas_); }
  char* slab_start(const SlabMeta& m) const noexcept {
    return reinterpret_cast<char*>(base_ + (index_of(m) << slab_shift_));
  }
  std::uint16_t tag_of(const void* p) const noexcept {
    return tags_[index_of(p)].load(std::memory_order_relaxed);
  }

  // A slab for `owner` and class `cls`: a released one if any, else a new one carved from
  // the range. nullptr when the range is exhausted.
  SlabMeta* acquire(std::uint32_t owner, std::uint32_t cls) noexcept;
  // Gives an empty slab back to the space; its pages go back to the OS.
  void release(SlabMeta& slab) noexcept;
  // Re-labels a slab the caller owns for another class (empty slabs cached by a shard).
  void relabel(SlabMeta& slab, std::uint32_t owner, std::uint32_t cls) noexcept;
  // Returns an empty slab's pages to the OS but keeps it with its owner.
  void decommit(SlabMeta& slab) noexcept;

  // Whether the block at p is free (debug builds only track this; otherwise false).
  // mark_allocated / mark_free abort on double free and invalid pointers.
  void debug_mark_allocated(void* p, std::uint32_t cls) noexcept;
  void debug_mark_free(void* p, std::uint32_t cls, const char* what) noexcept;

  std::uint64_t carved_slabs() const noexcept { return carved_.load(std::memory_order_relaxed); }
  std::uint64_t committed_bytes() const noexcept {
    return committed_slabs_.load(std::memory_order_relaxed) << slab_shift_;
  }
  std::uint64_t returned_bytes() const noexcept { return returned_bytes_.load(std::memory_order_relaxed); }
  // Resident pages of the carved part of the range.
  std::uint64_t resident_bytes() const noexcept;

  // Around fork(): the space's own mutex (innermost in the allocator's lock order).
  void lock_for_fork() noexcept { mutex_.lock(); }
  void unlock_after_fork() noexcept { mutex_.unlock(); }

 private:
  void set_tag(SlabMeta& slab, std::uint16_t tag) noexcept;

  std::uintptr_t base_ = 0;
  std::size_t span_ = 0;
  std::uint32_t slab_shift_ = 0;
  std::size_t slab_count_ = 0;
  SlabMeta* metas_ = nullptr;
  std::atomic<std::uint16_t>* tags_ = nullptr;
  std::atomic<std::uint64_t>* debug_bits_ = nullptr;  // one bit per 16-byte granule: allocated
  std::size_t meta_bytes_ = 0;

  std::mutex mutex_;                      // guards free_slabs_
  SlabMeta* free_slabs_ = nullptr;        // released slabs, pages returned to the OS
  std::atomic<std::uint64_t> carved_{0};  // slabs ever carved from the range (bump)
  std::atomic<std::uint64_t> committed_slabs_{0};
  std::atomic<std::uint64_t> returned_bytes_{0};
};

}  // namespace sydra::alloc
