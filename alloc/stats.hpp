// The allocator's telemetry as plain structs.
//
// Every counter is declared once, in an X-macro below; the struct fields, the merge
// (operator+=) and the field lists used by printers are all derived from it, and each
// operator+= carries a static_assert on the struct size so a new field cannot be
// forgotten. The document version (kStatsVersion) changes whenever a field does.
//
// How figures are gathered: fast-path counters are per-thread and single-writer, read with
// relaxed loads and summed here; shard figures are read under the shard lock; process
// figures come from the slab space and the kernel (mincore, /proc/self/statm).
#pragma once

#include <array>
#include <cstdint>
#include <string_view>
#include <vector>

#include "size_class.hpp"

namespace sydra::alloc {

inline constexpr std::uint32_t kStatsVersion = 2;

enum class Mode : std::uint8_t { sharded, legacy, system };
std::string_view to_string(Mode mode) noexcept;
// Parses "sharded" | "legacy" | "system"; returns false on anything else.
bool parse_mode(std::string_view text, Mode& out) noexcept;

// Per size class, for one shard, for the legacy buckets, or summed over all of them.
//   allocations         blocks handed to callers (thread caches and direct paths)
//   frees               blocks given back by callers, including cross-shard frees and retires
//   in_use              blocks the caller holds now: out of the slabs, not in a thread cache,
//                       not waiting in a deferred queue
//   cached              blocks sitting in thread caches
//   free_blocks         free blocks inside this owner's slabs (carved, or still uncarved)
//   high_water          peak of blocks out of the slabs (in use + cached + deferred)
//   refills / flushes   batches moved from / to the shard for a thread cache
//   slabs               slabs currently assigned to this class
//   deferred_enqueued   blocks pushed on the deferred queue (cross-shard frees, retires;
//                       with ForeignFrees::cache_locally also blocks other shards sent home,
//                       which are not counted in frees again)
//   deferred_reclaimed  deferred blocks returned to their slab after their epoch passed
//   deferred_pending    enqueued - reclaimed: the deferred backlog
//   lock_*              the owner's lock, attributed to operations on this class:
//                       acquisitions, contended acquisitions, nanoseconds waited and held
#define SYDRA_CLASS_STATS(X) \
  X(allocations)             \
  X(frees)                   \
  X(in_use)                  \
  X(cached)                  \
  X(free_blocks)             \
  X(high_water)              \
  X(refills)                 \
  X(flushes)                 \
  X(slabs)                   \
  X(deferred_enqueued)       \
  X(deferred_reclaimed)      \
  X(deferred_pending)        \
  X(lock_acquisitions)       \
  X(lock_contention)         \
  X(lock_wait_ns)            \
  X(lock_hold_ns)

struct ClassStats {
  std::uint32_t size = 0;  // block size in bytes
#define SYDRA_X(name) std::uint64_t name = 0;
  SYDRA_CLASS_STATS(SYDRA_X)
#undef SYDRA_X
  ClassStats& operator+=(const ClassStats& other) noexcept;
};

// Slow-path entries: how often each path behind the fast paths ran. Counted per thread by
// the thread that took the path (single writer), folded into its shard when it exits, and
// summed per shard and for the allocator. Divided by allocations or frees they are the
// slow-path rates per million calls that docs/allocator.md explains.
//   alloc_swap        bin empty, its previous magazine full: swapped, no lock
//   alloc_depot       a full magazine from the shard's depot (one lock acquisition)
//   alloc_reclaim     the depot was empty: deferred magazines reclaimed in the refill
//   alloc_slab        filled from slabs (free lists, carving)
//   alloc_new_slab    ... and the shard needed a new slab for it
//   alloc_epoch_step  a refill read a few epoch records to move the epoch on (bounded)
//   alloc_other       everything else: first use on a thread, sizes or alignments the pool
//                     does not serve, legacy and system modes, an exiting thread
//   free_swap         bin full, its previous magazine empty: swapped, no lock
//   free_depot        a full magazine given to the shard's depot (one lock acquisition)
//   free_depot_full   ... the depot was full: that magazine's blocks went back to slabs
//   free_remote       a cross-shard free, kept in the thread's magazine for that owner
//   free_handoff      a full cross-shard magazine handed to its owner (one CAS)
//   free_other        everything else: system pointers, legacy blocks, an exiting thread
#define SYDRA_PATH_STATS(X) \
  X(alloc_swap)             \
  X(alloc_depot)            \
  X(alloc_reclaim)          \
  X(alloc_slab)             \
  X(alloc_new_slab)         \
  X(alloc_epoch_step)       \
  X(alloc_other)            \
  X(free_swap)              \
  X(free_depot)             \
  X(free_depot_full)        \
  X(free_remote)            \
  X(free_handoff)           \
  X(free_other)

struct PathStats {
#define SYDRA_X(name) std::uint64_t name = 0;
  SYDRA_PATH_STATS(SYDRA_X)
#undef SYDRA_X
  PathStats& operator+=(const PathStats& other) noexcept;
  // Relaxed loads of every field of a PathStats another thread writes.
  static PathStats read(const PathStats& live) noexcept;
};

// Shard-wide figures that are not per class.
//   threads             threads currently bound to the shard
//   cross_shard_frees   frees by this shard's threads of blocks owned by another shard
//   empty_slabs         fully free slabs kept by the shard for reuse (still committed)
//   epoch_min           smallest epoch observed by a thread of this shard inside a read
//                       section (the global epoch when none is)
//   lock_*              the shard lock over all operations (sum of the class figures plus
//                       maintenance: garbage collection, thread exit)
#define SYDRA_SHARD_STATS(X) \
  X(threads)                 \
  X(cross_shard_frees)       \
  X(empty_slabs)             \
  X(epoch_min)               \
  X(lock_acquisitions)       \
  X(lock_contention)         \
  X(lock_wait_ns)            \
  X(lock_hold_ns)

struct ShardStats {
  std::uint32_t id = 0;
#define SYDRA_X(name) std::uint64_t name = 0;
  SYDRA_SHARD_STATS(SYDRA_X)
#undef SYDRA_X
  std::array<ClassStats, kNumClasses> classes{};
  PathStats paths;                     // slow-path entries by this shard's threads
  ClassStats totals() const noexcept;  // sum over classes (size = 0)
};

// Allocations that went to the system allocator: larger than 256 B, alignment above 256,
// everything in `system` mode, and small requests no pool could serve.
struct FallbackStats {
  std::uint64_t allocs = 0;
  std::uint64_t frees = 0;
  std::uint64_t resizes = 0;  // reallocate() kept the block (same size class, or realloc in place)
  std::uint64_t remaps = 0;   // reallocate() moved the block (system realloc that moved it)
  std::uint64_t live_bytes = 0;
  struct Bucket {
    std::uint64_t upper_bound;  // bytes; the last bucket's bound is UINT64_MAX
    std::uint64_t count;
  };
  static constexpr std::size_t kBuckets = 8;
  std::array<Bucket, kBuckets> size_buckets{};
};

struct EpochStats {
  std::uint64_t current = 0;         // the global epoch
  std::uint64_t min_observed = 0;    // smallest epoch held by a thread in a read section
  std::uint64_t lag = 0;             // current - min_observed
  std::uint64_t advances = 0;        // successful advance_epoch() calls
  std::uint64_t threads = 0;         // threads with an epoch record
  std::uint64_t active_readers = 0;  // threads inside a read section or QSBR-online
};

struct MemoryStats {
  std::uint64_t reserved_bytes = 0;          // virtual range reserved for slabs at start-up
  std::uint64_t committed_bytes = 0;         // slabs handed out of the range and not returned to the OS
  std::uint64_t resident_bytes = 0;          // pages of the slab range resident in RAM (mincore)
  std::uint64_t returned_bytes = 0;          // total bytes given back to the OS with madvise
  std::uint64_t live_bytes = 0;              // bytes in blocks callers hold (pool + fallback)
  std::uint64_t pool_live_bytes = 0;         // the pool's part of live_bytes
  std::uint64_t process_resident_bytes = 0;  // the whole process's RSS (/proc/self/statm)
  double fragmentation = 0.0;  // 1 - pool_live_bytes / committed_bytes (0 when nothing committed)
};

struct AllocatorStats {
  std::uint32_t version = kStatsVersion;
  Mode mode = Mode::sharded;
  bool shard_enabled = false;
  std::uint32_t shard_count = 0;
  std::uint32_t slab_bytes = 0;
  std::uint64_t shard_alloc_hits = 0;      // small allocations served by a shard
  std::uint64_t shard_alloc_misses = 0;    // small allocations a shard did not serve
  std::uint64_t shard_deferred_total = 0;  // deferred_enqueued over all shards
  EpochStats epoch;
  PathStats paths;              // slow-path entries, all threads
  std::uint64_t magazines = 0;  // magazines carved (each holds up to 128 block pointers)
  FallbackStats fallback;
  MemoryStats memory;
  std::array<ClassStats, kNumClasses> legacy{};   // the legacy buckets
  std::array<ClassStats, kNumClasses> buckets{};  // per class: shards + legacy
  std::vector<ShardStats> shards;                 // one entry per active shard
};

}  // namespace sydra::alloc
