// The parts of SmallPoolAllocator that its fast paths never read, shared by the files that
// implement it (small_pool_allocator.cpp, thread_state.cpp, alloc_slow.cpp, free_slow.cpp,
// reclaim.cpp, snapshot.cpp, fork.cpp). Private to alloc/: nothing outside includes it.
//
// Lock order (outer to inner): the process registry mutex (g_registry.mutex) → the
// deferred-list mutexes of the legacy buckets and the fallback (never together) → an
// allocator's registry_mutex → shards_mutex → nodes_mutex → a shard lock or a legacy
// bucket lock → the magazine pool mutex → the slab space mutex → the metadata arena mutex.
// fork_prepare() takes them all in this order.
#pragma once

#include <pthread.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <mutex>
#include <new>

#include "magazine.hpp"
#include "meta_arena.hpp"
#include "shard.hpp"
#include "small_pool_allocator.hpp"

namespace sydra::alloc {

void thread_exit_hook(void*) noexcept;

// Live allocators by slot, for the thread-exit hook, fork and debug wrong-owner checks.
struct ProcessRegistry {
  std::mutex mutex;
  SmallPoolAllocator* by_slot[kMaxAllocators] = {};
  std::uint64_t serial[kMaxAllocators] = {};
  std::uint64_t next_serial = 1;
  pthread_key_t exit_key{};
  bool exit_key_created = false;
};
extern constinit ProcessRegistry g_registry;

static_assert(FallbackCounters::kBuckets == FallbackStats::kBuckets);
inline constexpr std::uint64_t kFallbackBounds[FallbackStats::kBuckets] = {
    512, 1024, 4096, 16384, 65536, 262144, 1048576, UINT64_MAX};
inline std::uint32_t fallback_bucket(std::size_t size) noexcept {
  std::uint32_t i = 0;
  while (i < FallbackStats::kBuckets - 1 && size > kFallbackBounds[i]) ++i;
  return i;
}

// Bounded work a refill may do when its depot is empty (an application thread's call):
// deferred nodes reclaimed (each a magazine, or one retired block), and epoch records read
// to move the epoch on. collect_garbage() (the maintenance tick) does the bulk of
// reclamation, kCollectChunk nodes per lock hold.
inline constexpr std::size_t kRefillReclaimNodes = 4;
inline constexpr std::size_t kRefillEpochRecords = 8;
inline constexpr std::size_t kCollectChunk = 16;

inline constexpr std::uint32_t kNoShardTag = 0xFE00;  // matches no slab tag (owners are <= kMaxShards)

struct SmallPoolAllocator::Internals {
  explicit Internals() noexcept : magazines(arena) {}

  struct LegacyBucket {
    explicit LegacyBucket(SlabSpace& space) noexcept : pool(space, kLegacyOwner, 1) {}
    InstrumentedLock lock;
    LockStats lock_stats;
    SlabPool pool;
    std::uint64_t allocations = 0;  // under lock
    std::uint64_t frees = 0;        // under lock
  };
  // A deferred queue whose owner has no lock of its own (legacy buckets, fallback).
  struct DeferredList {
    DeferredQueue queue;
    std::mutex mutex;
    DeferredBacklog backlog;  // under mutex
  };

  MetaArena arena;
  MagazinePool magazines;
  std::mutex shards_mutex;  // creating shards
  std::atomic<Shard*> shards[kMaxShards] = {};
  std::atomic<std::uint32_t> shards_created{0};
  LegacyBucket* legacy[kNumClasses] = {};
  std::array<std::atomic<std::uint64_t>, kNumClasses> legacy_deferred_in{};
  DeferredList legacy_deferred;
  DeferredList fallback_deferred;

  std::atomic<std::uint64_t> fallback_allocs{0};
  std::atomic<std::uint64_t> fallback_frees{0};
  std::atomic<std::uint64_t> fallback_resizes{0};
  std::atomic<std::uint64_t> fallback_remaps{0};
  std::atomic<std::int64_t> fallback_live{0};
  std::array<std::atomic<std::uint64_t>, FallbackStats::kBuckets> fallback_buckets{};
  std::atomic<std::uint64_t> shard_misses{0};

  std::mutex registry_mutex;  // guards `threads`, the claimed flags and counter folding
  ThreadState* threads = nullptr;

  // External nodes for retire(): carved from the arena, recycled, never freed.
  std::mutex nodes_mutex;
  RetireNode* free_nodes = nullptr;  // under nodes_mutex

  static constexpr std::uint32_t kNodeBatch = 32;
  // Up to n nodes, linked through next; never fails (aborts when out of memory).
  RetireNode* take_nodes(std::uint32_t n) noexcept {
    RetireNode* chain = nullptr;
    std::lock_guard<std::mutex> guard(nodes_mutex);
    for (std::uint32_t i = 0; i < n; ++i) {
      RetireNode* node = free_nodes;
      if (node == nullptr) {
        // Carve a batch of nodes at once: one arena call instead of one per node.
        auto* fresh = static_cast<RetireNode*>(arena.allocate(sizeof(RetireNode) * kNodeBatch));
        for (std::uint32_t j = 0; j < kNodeBatch; ++j) {
          RetireNode* carved = new (&fresh[j]) RetireNode{};
          carved->next = free_nodes;
          free_nodes = carved;
        }
        node = free_nodes;
      }
      free_nodes = static_cast<RetireNode*>(node->next);
      node->next = chain;
      chain = node;
    }
    return chain;
  }
  void recycle_nodes(RetireNode* chain) noexcept {
    if (chain == nullptr) return;
    RetireNode* last = chain;
    while (last->next != nullptr) last = static_cast<RetireNode*>(last->next);
    std::lock_guard<std::mutex> guard(nodes_mutex);
    last->next = free_nodes;
    free_nodes = chain;
  }
};

}  // namespace sydra::alloc
