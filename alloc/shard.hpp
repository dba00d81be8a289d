// Shards and slab pools: where blocks live between a thread cache and the slab space.
//
// A SlabPool holds, per size class, the list of slabs that still have free or uncarved
// blocks ("partial" slabs), plus a few fully free slabs kept for reuse by any class.
// Blocks are taken from a partial slab's free list first, then carved from its untouched
// tail (so a fresh slab costs no page faults until its blocks are used). A slab whose
// last block comes back is empty: it is reset (no block is touched), kept if the pool
// holds fewer than `retained_empty` empty slabs, else its pages go back to the OS. Kept
// empty slabs decay: trim() (from the maintenance tick) returns the ones that stayed
// unused for a whole decay interval (a second by default), so steady churn never pays
// madvise and page faults, and an idle pool still gives its memory back.
//
// Every SlabPool method requires the caller to hold the owner's lock:
//   - a Shard has one InstrumentedLock for its whole pool;
//   - the legacy buckets have one lock and one pool per size class.
//
// A Shard adds the deferred queue: blocks freed by threads of other shards (and blocks
// retired by anyone) are pushed there lock-free, tagged with the global epoch, and
// returned to their slabs by collect() once the epoch has passed (see epoch.hpp).
#pragma once

#include <array>
#include <atomic>
#include <cstdint>

#include "epoch.hpp"
#include "lock.hpp"
#include "size_class.hpp"
#include "slab.hpp"

namespace sydra::alloc {

// Counters kept per thread (single writer) and, for exited threads and threads without a
// cache, per shard under its lock. Read with relaxed loads.
struct ThreadCounters {
  std::array<std::uint64_t, kNumClasses> allocs{};
  std::array<std::uint64_t, kNumClasses> frees{};
  std::uint64_t cross_shard_frees = 0;

  ThreadCounters& operator+=(const ThreadCounters& other) noexcept;
  ThreadCounters read() const noexcept;  // relaxed loads of every field
};

// A single-writer counter update. Plain in normal builds (one `add` on x86); a relaxed
// atomic store under TSan so that snapshot readers are not reported as racing.
template <class T>
SYDRA_FAST_PATH void counter_add(T& counter, T delta) noexcept {
#if SYDRA_TSAN
  __atomic_store_n(&counter, __atomic_load_n(&counter, __ATOMIC_RELAXED) + delta, __ATOMIC_RELAXED);
#else
  counter += delta;
#endif
}
template <class T>
SYDRA_FAST_PATH T counter_read(const T& counter) noexcept {
  return __atomic_load_n(&counter, __ATOMIC_RELAXED);
}

struct ClassPool {
  SlabMeta* partial = nullptr;  // slabs with available blocks
  // Transfer cache: whole batches (class_batch blocks, linked through their first word)
  // kept out of the slabs, linked through the second word of their first block. Refills
  // pop one in O(1) instead of walking slab free lists of cold blocks.
  void* transfer = nullptr;
  std::uint32_t transfer_batches = 0;
  std::uint32_t transfer_low_water = 0;  // fewest batches since the last trim()
  // Reclaimed blocks gathering into the next batch (fewer than class_batch).
  void* loose = nullptr;
  std::uint32_t loose_count = 0;
  std::uint64_t slabs = 0;
  std::uint64_t blocks_out = 0;  // blocks taken from slabs and not yet put back
  std::uint64_t high_water = 0;  // peak of blocks_out
  std::uint64_t refills = 0;
  std::uint64_t flushes = 0;
  std::uint64_t reclaimed = 0;    // deferred blocks put back
  std::uint64_t free_blocks = 0;  // available blocks in this class's partial slabs
  std::uint64_t transfer_blocks() const noexcept {
    return std::uint64_t{transfer_batches} * class_batch_of_pool + loose_count;
  }
  std::uint32_t class_batch_of_pool = 0;  // set by SlabPool
};

class SlabPool {
 public:
  SlabPool(SlabSpace& space, std::uint32_t owner, std::uint32_t retained_empty) noexcept
      : space_(space), owner_(owner), retained_empty_(retained_empty) {
    for (std::uint32_t c = 0; c < kNumClasses; ++c) classes_[c].class_batch_of_pool = class_batch(c);
  }
  ~SlabPool();  // returns every slab to the space
  SlabPool(const SlabPool&) = delete;
  SlabPool& operator=(const SlabPool&) = delete;

  // Takes up to n blocks of class cls, chained through their link words (the last link is
  // nullptr) into *head. Returns how many; fewer than n only when the slab space is
  // exhausted. Blocks come out poisoned except for their link.
  std::uint32_t take(std::uint32_t cls, std::uint32_t n, void** head) noexcept;
  // Gives one block back to its slab (slab looked up by the caller).
  void put(void* block, SlabMeta& slab) noexcept;
  // Gives back a chain of count blocks of class cls linked as take() links them.
  void put_chain(void* head, std::uint32_t cls) noexcept;

  // Transfer cache. push_batch keeps a chain of exactly class_batch(cls) blocks if there
  // is room (returns false otherwise: the caller puts the chain back into slabs);
  // pop_batch returns such a chain or nullptr.
  static constexpr std::uint32_t kTransferBatches = 8;
  bool push_batch(std::uint32_t cls, void* chain) noexcept;
  void* pop_batch(std::uint32_t cls) noexcept;
  // A freed block (already poisoned) joins the loose chain of its class; a full chain
  // becomes a transfer batch (or goes back to its slabs when the cache is full).
  void push_loose(std::uint32_t cls, void* block) noexcept;
  // Takes the loose chain of cls; *count gets its length (0 and nullptr when none).
  void* take_loose(std::uint32_t cls, std::uint32_t* count) noexcept;

  const ClassPool& class_pool(std::uint32_t cls) const noexcept { return classes_[cls]; }
  ClassPool& class_pool(std::uint32_t cls) noexcept { return classes_[cls]; }
  std::uint32_t empty_slabs() const noexcept { return empty_count_; }
  // Decay: once every `interval_ns`, puts back into their slabs the transfer batches that
  // stayed unused for the whole interval and the loose chains (they pin slabs that could
  // otherwise be empty), and returns to the OS the empty slabs that stayed unused for the
  // whole interval (low-water marks). Returns how many slabs went back to the OS.
  std::uint32_t trim(std::uint64_t now_ns, std::uint64_t interval_ns) noexcept;
  std::uint32_t owner() const noexcept { return owner_; }
  SlabSpace& space() const noexcept { return space_; }

  // Full invariant walk (SYDRA_ASSERT_EXPENSIVE and tests): lists consistent with counts.
  bool is_valid() const noexcept;

 private:
  SlabMeta* new_slab(std::uint32_t cls) noexcept;
  void link_partial(ClassPool& pool, SlabMeta& slab) noexcept;
  void unlink_partial(ClassPool& pool, SlabMeta& slab) noexcept;
  void slab_emptied(ClassPool& pool, SlabMeta& slab) noexcept;

  SlabSpace& space_;
  std::uint32_t owner_;
  std::uint32_t retained_empty_;
  std::array<ClassPool, kNumClasses> classes_{};
  SlabMeta* empty_ = nullptr;  // fully free, committed slabs for reuse by any class
  std::uint32_t empty_count_ = 0;
  std::uint32_t empty_low_water_ = 0;  // fewest empty slabs since the last trim()
  std::uint64_t trim_window_start_ns_ = 0;
};

// Index of the LockStats slot for work that is not about one size class.
inline constexpr std::uint32_t kMaintenanceSlot = kNumClasses;

class Shard {
 public:
  Shard(SlabSpace& space, std::uint32_t id, std::uint32_t retained_empty) noexcept
      : pool(space, id, retained_empty), id_(id) {}

  std::uint32_t id() const noexcept { return id_; }

  // Any thread, no lock: a block of this shard freed elsewhere, or retired.
  void defer(void* block, std::uint32_t cls, std::uint64_t epoch) noexcept {
    deferred_in[cls].fetch_add(1, std::memory_order_relaxed);
    deferred.push_block(block, epoch);
  }
  // Any thread, no lock: a retired block of this shard, carried by an external node.
  void defer_retired(RetireNode* node, std::uint32_t cls, std::uint64_t epoch) noexcept {
    deferred_in[cls].fetch_add(1, std::memory_order_relaxed);
    deferred.push(node, epoch, true);
  }
  // Under `lock`: takes what was deferred since the last call into the backlog,
  // optionally tries to advance the epoch, then moves
  // up to `budget` backlog blocks whose batch is older than the minimum observed epoch
  // back to their slabs; external nodes it is done with are linked onto spent_nodes.
  // Returns how many blocks were reclaimed.
  std::size_t collect(EpochDomain& epochs, bool advance, std::size_t budget,
                      RetireNode*& spent_nodes) noexcept;
  // Same, with the new nodes taken (and walked) beforehand without the lock.
  std::size_t collect(const DeferredBacklog::Batch& taken, EpochDomain& epochs, std::size_t budget,
                      RetireNode*& spent_nodes) noexcept;
  bool has_deferred() const noexcept { return !backlog.empty() || deferred.maybe_nonempty(); }

  InstrumentedLock lock;
  std::array<LockStats, kNumClasses + 1> lock_stats{};  // per class + maintenance
  SlabPool pool;
  DeferredQueue deferred;
  std::array<std::atomic<std::uint64_t>, kNumClasses> deferred_in{};
  DeferredBacklog backlog;  // taken off `deferred`, not yet reclaimed (under lock)
  ThreadCounters retired;   // exited / rebound threads and direct paths (under lock)

 private:
  std::uint32_t id_;
};

}  // namespace sydra::alloc
