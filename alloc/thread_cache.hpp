// The per-thread front of the allocator: per size class a bin of two magazines (the loaded
// one the fast paths pop and push, and the previous one), a remote cache of magazines for
// blocks of other shards, the thread's shard, and its epoch record.
//
// Who may touch what
//   - bins[], mags[], spares, remote and every magazine they hold: the owning thread only.
//     Fields that snapshots read on other threads (bins[].top/bottom/frees, mags[].moved and
//     previous_count, remote->counts and handed, paths) are written with counter_add /
//     counter_store (plain stores; relaxed atomic ones under TSan) and read with relaxed
//     loads: figures are exact when the thread is quiet.
//   - shard / shard_tag / cross_shard_frees: the owning thread; snapshots read them under
//     the allocator's registry mutex, which bind and thread exit also take.
//
// A bin only ever holds blocks owned by the thread's shard: the free fast path checks the
// slab tag against shard_tag, and rebinding flushes the bins first. Blocks of other shards
// go to the remote cache, one partial magazine per (owner, class), handed to the owner's
// deferred queue when full (or when the thread flushes, passes a quiescent point or exits).
//
// The bin: Bonwick's two-magazine rule. Allocation pops the loaded magazine; when it is
// empty and the previous one is full the two are swapped (no lock), otherwise the empty
// previous goes back to the shard and a full one comes from the depot: one lock
// acquisition per magazine, and at least a magazine's worth of calls between two of them
// whatever the pattern (no thrashing at a boundary). Free mirrors it.
//
// Counting without a counter on the allocate path: a bin holds
// count = (top - bottom) + previous_count blocks; `moved` is blocks brought in by refills
// minus blocks taken out by flushes, `frees` the blocks freed into the bin. Every block
// that left the bin otherwise was allocated, so allocations = moved + frees - count.
#pragma once

#include <cstddef>
#include <cstdint>

#include "epoch.hpp"
#include "magazine.hpp"
#include "shard.hpp"
#include "size_class.hpp"
#include "stats.hpp"

namespace sydra::alloc {

// What the fast paths read, one per class, 32 bytes (the slab tag encodes the byte offset
// of the class's bin: see slab.hpp).
struct alignas(kBinBytes) Bin {
  void** top = nullptr;     // one past the last cached block of the loaded magazine
  void** bottom = nullptr;  // loaded->blocks: the bin is empty when top == bottom
  void** end = nullptr;     // loaded->blocks + class_batch: full when top == end
  std::uint64_t frees = 0;  // blocks freed into the bin
};
static_assert(sizeof(Bin) == kBinBytes, "the slab tag encoding relies on 32-byte bins");

// The rest of a bin, read only by its slow paths.
struct BinMagazines {
  Magazine* loaded = nullptr;        // what Bin points into
  Magazine* previous = nullptr;      // full, empty, or in between
  std::uint32_t previous_count = 0;  // previous->count, for snapshots
  std::uint64_t moved = 0;           // refilled in minus flushed out (wraps; unsigned math)
};

// Magazines of blocks of other shards, filling up before they are handed to their owner.
struct RemoteCache {
  static constexpr std::uint32_t kSlots = kMaxShards * kNumClasses;  // owner * kNumClasses + class
  static constexpr std::uint32_t slot(std::uint32_t owner, std::uint32_t cls) noexcept {
    return owner * kNumClasses + cls;
  }
  std::uint64_t owners = 0;  // bit o: some magazine for owner o holds blocks
  Magazine* magazines[kSlots] = {};
  std::uint32_t counts[kSlots] = {};  // blocks in each magazine (mirrors count, for snapshots)
  std::uint64_t handed[kSlots] = {};  // blocks handed to each owner so far
};
static_assert(kMaxShards <= 64, "RemoteCache::owners is a 64-bit mask");

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
  // Empty magazines a thread keeps to swap in without taking its shard's lock.
  static constexpr std::uint32_t kSpareMagazines = 4;

  std::array<Bin, kNumClasses> bins{};  // first: a bin is at (char*)this + class * kBinBytes
  std::uint32_t shard_tag = 0;          // make_tag(shard, 0): slab tag ^ shard_tag is a bin offset when ours
  std::uint32_t shard = 0;
  std::uint64_t cross_shard_frees = 0;
  std::array<BinMagazines, kNumClasses> mags{};
  MagazineStack spares;
  RemoteCache* remote = nullptr;  // made on the first cross-shard free, kept with the state
  PathStats paths;                // slow-path entries (counter_add)
  FallbackCounters fallback;
  EpochDomain::Record* record = nullptr;
  RetireNode* spare_nodes = nullptr;  // external nodes for retire(), taken from the allocator's pool
  std::uint32_t spare_count = 0;
  ThreadState* next = nullptr;  // allocator's registry (under its registry mutex)
  bool claimed = false;         // under the registry mutex

  Bin& bin_at(std::uint32_t byte_offset) noexcept {
    return *reinterpret_cast<Bin*>(reinterpret_cast<char*>(this) + byte_offset);
  }
  // Blocks cached in class cls (relaxed reads; exact when the thread is quiet).
  std::uint64_t cached(std::uint32_t cls) const noexcept {
    const Bin& b = bins[cls];
    void** top = counter_read(b.top);
    void** bottom = counter_read(b.bottom);
    const std::ptrdiff_t loaded = top - bottom;
    const std::uint64_t in_loaded = loaded >= 0 && loaded <= static_cast<std::ptrdiff_t>(kMagazineCapacity)
                                        ? static_cast<std::uint64_t>(loaded)
                                        : 0;
    return in_loaded + counter_read(mags[cls].previous_count);
  }
  // The thread's counters, derived from the bins (relaxed reads; exact when the thread is quiet).
  ThreadCounters counters() const noexcept {
    ThreadCounters c;
    for (std::uint32_t k = 0; k < kNumClasses; ++k) {
      const std::uint64_t frees = counter_read(bins[k].frees);
      const auto allocs = static_cast<std::int64_t>(counter_read(mags[k].moved) + frees - cached(k));
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
