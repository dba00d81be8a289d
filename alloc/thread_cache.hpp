// The per-thread front of the allocator: one cache (a singly linked free list) per size
// class, the thread's shard, and its epoch record.
//
// Who may touch what
//   - bins[].head and every block on a bin: the owning thread only.
//   - bins[].room, .frees, .moved: written by the owning thread only (counter_add); read
//     by snapshots on other threads with relaxed loads.
//   - shard / shard_tag / cross_shard_frees: the owning thread; snapshots read them under
//     the allocator's registry mutex, which bind and thread exit also take.
//
// A thread's cache only ever holds blocks owned by the thread's shard: the free fast path
// checks the slab tag against shard_tag, and rebinding flushes the cache first.
//
// Counting without a counter on the allocate path: a bin holds count = limit - room
// blocks; `moved` is blocks refilled into it minus blocks flushed out of it, `frees` the
// blocks freed into it. Every block that left the bin otherwise was allocated, so
//   allocations = moved + frees - count.
// The allocate fast path therefore touches only head and room.
#pragma once

#include <cstddef>
#include <cstdint>

#include "epoch.hpp"
#include "shard.hpp"
#include "size_class.hpp"

namespace sydra::alloc {

struct alignas(kBinBytes) Bin {
  void* head = nullptr;     // free blocks, linked through their first word
  std::int32_t room = 0;    // limit - count: the bin is flushed when this drops below 0
  std::uint32_t limit = 0;  // 2 batches
  std::uint64_t frees = 0;  // blocks freed into the bin
  std::uint64_t moved = 0;  // blocks refilled in minus blocks flushed out (wraps; unsigned math)

  std::uint32_t count() const noexcept { return limit - static_cast<std::uint32_t>(counter_read(room)); }
};
static_assert(sizeof(Bin) == kBinBytes, "the slab tag encoding relies on 32-byte bins");

// Allocations that went to the system allocator, counted by the thread that made them
// (single writer, like the bins).
struct FallbackCounters {
  static constexpr std::size_t kBuckets = 8;  // FallbackStats::kBuckets
  std::uint64_t allocs = 0;
  std::uint64_t frees = 0;
  std::int64_t live_bytes = 0;  // may go negative on a thread that frees others' blocks
  std::array<std::uint64_t, kBuckets> size_buckets{};
};

struct ThreadState {
  std::array<Bin, kNumClasses> bins{};  // first: a bin is at (char*)this + class * kBinBytes
  std::uint32_t shard_tag = 0;          // make_tag(shard, 0): slab tag ^ shard_tag is a bin offset when ours
  std::uint32_t shard = 0;
  std::uint64_t cross_shard_frees = 0;
  FallbackCounters fallback;
  EpochDomain::Record* record = nullptr;
  RetireNode* spare_nodes = nullptr;  // external nodes for retire(), taken from the allocator's pool
  std::uint32_t spare_count = 0;
  ThreadState* next = nullptr;  // allocator's registry (under its registry mutex)
  bool claimed = false;         // under the registry mutex

  Bin& bin_at(std::uint32_t byte_offset) noexcept {
    return *reinterpret_cast<Bin*>(reinterpret_cast<char*>(this) + byte_offset);
  }
  // The thread's counters, derived from the bins (relaxed reads; exact when the thread is quiet).
  ThreadCounters counters() const noexcept {
    ThreadCounters c;
    for (std::size_t k = 0; k < kNumClasses; ++k) {
      const Bin& b = bins[k];
      const std::uint64_t frees = counter_read(b.frees);
      const auto allocs = static_cast<std::int64_t>(counter_read(b.moved) + frees - b.count());
      c.allocs[k] = allocs > 0 ? static_cast<std::uint64_t>(allocs) : 0;
      c.frees[k] = frees;
    }
    c.cross_shard_frees = counter_read(cross_shard_frees);
    return c;
  }
};
static_assert(offsetof(ThreadState, bins) == 0);

// Thread-local slots: which ThreadState this thread uses for each live allocator.
// Trivially constructible and destructible, so it stays usable while the thread's other
// thread-local objects are being destroyed (e.g. by a free during TLS teardown).
inline constexpr std::uint32_t kMaxAllocators = 64;

struct ThreadSlots {
  // One-entry cache checked by the fast paths: the allocator last used on this thread.
  // last_serial == allocator.serial_ implies last_state != nullptr.
  std::uint64_t last_serial;
  ThreadState* last_state;
  struct Entry {
    std::uint64_t serial;  // the allocator's serial when state was made for it
    ThreadState* state;
  };
  Entry entries[kMaxAllocators];
  bool exit_hook_armed;  // the pthread key that flushes caches at thread exit is set
  bool exiting;          // the exit hook has run: no more caches on this thread
};

namespace detail {
extern constinit thread_local ThreadSlots tls_slots __attribute__((tls_model("initial-exec")));
}

}  // namespace sydra::alloc
