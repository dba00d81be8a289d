// Magazines: fixed arrays of block pointers, the unit in which blocks move between a thread
// cache, its shard and another shard (Bonwick's magazine layer).
//
// Why arrays of pointers and not lists linked through the blocks
//   A list threaded through free blocks makes every pop read the block it hands out, and
//   every push write the block it takes: when the block was last written on another core
//   (a block freed by another thread, or reclaimed by the maintenance thread), that read or
//   write is a cache miss inside the allocator call — the 80–150 ns 95th percentile the
//   list design had. A magazine holds pointers only: allocating from it, freeing into it,
//   handing it to another shard and reclaiming it never touch block memory. A refill or a
//   flush moves one magazine (a pointer), not its blocks. Block memory is touched only when
//   blocks go back into their slabs (a full depot, decay, thread exit), never on the path
//   of a balanced workload.
//
// Who may touch what
//   - A magazine has one holder at a time: a thread's bin (loaded or previous), a thread's
//     remote cache, a thread's spare stack, a shard's depot or empty list (under the shard
//     lock), a deferred queue (in flight between a freeing thread and the owner), or the
//     allocator's pool of empty magazines (under its mutex). Hand-over between holders goes
//     through a lock or the deferred queue's release/acquire, so the holder may use plain
//     loads and stores.
//   - `node` is first so that a magazine in flight is a DeferredNode (kind kMagazineNode).
//   - Magazines are carved from the allocator's metadata arena and never freed while the
//     allocator lives.
#pragma once

#include <cstdint>
#include <mutex>

#include "epoch.hpp"
#include "meta_arena.hpp"
#include "size_class.hpp"

namespace sydra::alloc {

struct alignas(64) Magazine {
  DeferredNode node;         // while in flight on an owner's deferred queue
  Magazine* next = nullptr;  // in a depot, an empty list, a spare stack or the pool
  std::uint32_t count = 0;   // blocks held (for a bin's loaded magazine: Bin::top is the truth)
  std::uint32_t cls = 0;     // size class of every block held
  void* blocks[kMagazineCapacity];

  bool full() const noexcept { return count == class_batch(cls); }
};

// A stack of magazines linked through `next`, with its length. Not synchronised: the
// holder's lock (or thread) guards it.
struct MagazineStack {
  Magazine* head = nullptr;
  std::uint32_t size = 0;

  void push(Magazine* m) noexcept {
    m->next = head;
    head = m;
    ++size;
  }
  Magazine* pop() noexcept {
    Magazine* m = head;
    if (m != nullptr) {
      head = m->next;
      m->next = nullptr;
      --size;
    }
    return m;
  }
  bool empty() const noexcept { return head == nullptr; }
};

// The allocator-wide pool of empty magazines: where shards put the empties they have too
// many of, and where threads and shards that have none take them. New magazines are carved
// from the arena only when the pool is empty, so their number is bounded by the number
// ever needed at once.
class MagazinePool {
 public:
  explicit MagazinePool(MetaArena& arena) noexcept : arena_(arena) {}

  // Moves up to n empty magazines from the pool onto `into`; returns how many.
  std::uint32_t take_some(MagazineStack& into, std::uint32_t n) noexcept {
    std::lock_guard<std::mutex> guard(mutex_);
    std::uint32_t moved = 0;
    for (; moved < n; ++moved) {
      Magazine* m = empties_.pop();
      if (m == nullptr) break;
      into.push(m);
    }
    return moved;
  }
  // Moves n magazines from `from` back into the pool, under one lock.
  void give_some(MagazineStack& from, std::uint32_t n) noexcept {
    std::lock_guard<std::mutex> guard(mutex_);
    for (std::uint32_t i = 0; i < n; ++i) {
      Magazine* m = from.pop();
      if (m == nullptr) break;
      m->count = 0;
      empties_.push(m);
    }
  }

  // An empty magazine (count 0): from the pool, else carved.
  Magazine* take() noexcept {
    {
      std::lock_guard<std::mutex> guard(mutex_);
      if (Magazine* m = empties_.pop()) return m;
      ++carved_;
    }
    return new (arena_.allocate(sizeof(Magazine))) Magazine{};
  }
  // Gives back a chain of `n` empty magazines linked through `next`.
  void give(Magazine* head, Magazine* tail, std::uint32_t n) noexcept {
    if (head == nullptr) return;
    std::lock_guard<std::mutex> guard(mutex_);
    tail->next = empties_.head;
    empties_.head = head;
    empties_.size += n;
  }
  void give(Magazine* m) noexcept {
    m->count = 0;
    give(m, m, 1);
  }

  std::uint64_t carved() const noexcept {
    std::lock_guard<std::mutex> guard(mutex_);
    return carved_;
  }
  std::uint64_t pooled() const noexcept {
    std::lock_guard<std::mutex> guard(mutex_);
    return empties_.size;
  }

  void lock_for_fork() noexcept { mutex_.lock(); }
  void unlock_after_fork() noexcept { mutex_.unlock(); }

 private:
  MetaArena& arena_;
  mutable std::mutex mutex_;
  MagazineStack empties_;     // under mutex_
  std::uint64_t carved_ = 0;  // under mutex_
};

}  // namespace sydra::alloc
