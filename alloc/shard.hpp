// Shards and slab pools: where blocks live between a thread cache and the slab space.
//
// A SlabPool holds, per size class, the list of slabs that still have free or uncarved
// blocks ("partial" slabs), plus a few fully free slabs kept for reuse by any class.
// Blocks are taken from a partial slab's free list first, then carved from its untouched
// tail; carving writes nothing into the blocks (they leave as pointers in a magazine), so a
// fresh slab costs no page fault until the caller uses a block. A slab whose last block
// comes back is empty: it is reset (no block is touched), kept if the pool holds fewer than
// `retained_empty` empty slabs, else its pages go back to the OS. Kept empty slabs decay:
// trim() (from the maintenance tick) returns the ones that stayed unused for a whole decay
// interval (a second by default), so steady churn never pays madvise and page faults, and
// an idle pool still gives its memory back.
//
// A Shard puts a depot in front of its pool: per class, a stack of full magazines (see
// magazine.hpp) that refills take and flushes give, in O(1) and without touching a block,
// and one "loose" magazine that single reclaimed blocks gather into. Blocks go back into
// their slabs only when a depot is full, when decay finds magazines unused for a whole
// interval, or when the allocator is destroyed.
//
// A Shard also owns the deferred queues, one per class: magazines of its blocks freed by
// other shards' threads (and blocks retired by anyone) are pushed there lock-free, tagged
// with the global epoch, and reclaimed by collect() into the depot once the epoch has
// passed (epoch.hpp). One queue per class lets a refill reclaim exactly what it needs.
//
// Who may touch what
//   - Every SlabPool method and every Shard member except hand_off(), defer*(), come_home(),
//     has_deferred(), prepare() and deferred_in require the shard's lock (the legacy
//     buckets: their own lock and pool per size class).
//   - the deferred queues, deferred_in and homecoming_in: any thread, lock-free.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>

#include "epoch.hpp"
#include "lock.hpp"
#include "magazine.hpp"
#include "size_class.hpp"
#include "slab.hpp"
#include "stats.hpp"

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
// A single-writer store of a field that snapshots read (see counter_add).
template <class T>
SYDRA_FAST_PATH void counter_store(T& field, T value) noexcept {
#if SYDRA_TSAN
  __atomic_store_n(&field, value, __ATOMIC_RELAXED);
#else
  field = value;
#endif
}

// Publishes a pointer to an object this thread has just initialised, for snapshot readers:
// a release store, so a reader that sees the pointer (read_published) sees the object's
// initial contents. A plain `mov` on x86; used once per object, never on a fast path.
template <class T>
void publish(T*& field, T* value) noexcept {
  __atomic_store_n(&field, value, __ATOMIC_RELEASE);
}
template <class T>
T* read_published(T* const& field) noexcept {
  return __atomic_load_n(&field, __ATOMIC_ACQUIRE);
}

struct ClassPool {
  SlabMeta* partial = nullptr;  // slabs with available blocks
  std::uint64_t slabs = 0;
  std::uint64_t blocks_out = 0;   // blocks taken from slabs and not yet put back
  std::uint64_t high_water = 0;   // peak of blocks_out
  std::uint64_t refills = 0;      // magazines handed to a thread cache
  std::uint64_t flushes = 0;      // full magazines taken from a thread cache
  std::uint64_t reclaimed = 0;    // deferred blocks taken back after their epoch passed
  std::uint64_t free_blocks = 0;  // available blocks in this class's partial slabs
};

class SlabPool {
 public:
  SlabPool(SlabSpace& space, std::uint32_t owner, std::uint32_t retained_empty) noexcept
      : space_(space), owner_(owner), retained_empty_(retained_empty) {}
  ~SlabPool();  // returns every slab to the space
  SlabPool(const SlabPool&) = delete;
  SlabPool& operator=(const SlabPool&) = delete;

  // Takes up to n blocks of class cls into out[0..n). Returns how many; fewer than n only
  // when the slab space is exhausted. Blocks from a slab's free list are read (their
  // link); carved blocks are not touched. Blocks come out poisoned.
  std::uint32_t take(std::uint32_t cls, std::uint32_t n, void** out) noexcept;
  // Gives one block back to its slab (slab looked up by the caller). Writes its link.
  void put(void* block, SlabMeta& slab) noexcept;
  // Gives back n blocks of class cls. A block of another pool's slab (only with
  // ForeignFrees::cache_locally, where bins and depots hold other shards' blocks) goes to the
  // foreign sink instead: its slab's metadata is written by its owner only.
  void put_array(void* const* blocks, std::uint32_t n, std::uint32_t cls) noexcept;

  // Where put_array sends blocks of other pools' slabs; nullptr (the default) means there are
  // none (asserted). drop_foreign: the allocator is being destroyed, its space with it.
  // The sink gets runs of consecutive blocks of one owner, at most a magazine's worth.
  using ForeignSink = void (*)(void* context, void* const* blocks, std::uint32_t n, std::uint32_t owner,
                               std::uint32_t cls) noexcept;
  void set_foreign_sink(ForeignSink sink, void* context) noexcept {
    sink_ = sink;
    sink_context_ = context;
  }
  bool takes_foreign() const noexcept { return sink_ != nullptr; }
  static void drop_foreign(void*, void* const*, std::uint32_t, std::uint32_t, std::uint32_t) noexcept {}

  const ClassPool& class_pool(std::uint32_t cls) const noexcept { return classes_[cls]; }
  ClassPool& class_pool(std::uint32_t cls) noexcept { return classes_[cls]; }
  std::uint32_t empty_slabs() const noexcept { return empty_count_; }
  // Slabs acquired from the space (or the empty list) since the pool was made.
  std::uint64_t slabs_acquired() const noexcept { return slabs_acquired_; }
  // Decay of empty slabs: returns to the OS those that stayed unused for the whole
  // interval since the last call (the low-water mark of the empty list). Returns how many.
  std::uint32_t trim_empty_slabs() noexcept;
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
  std::uint32_t empty_low_water_ = 0;  // fewest empty slabs since the last trim
  std::uint64_t slabs_acquired_ = 0;
  ForeignSink sink_ = nullptr;
  void* sink_context_ = nullptr;
};

// Index of the LockStats slot for work that is not about one size class.
inline constexpr std::uint32_t kMaintenanceSlot = kNumClasses;

// Full magazines of one class kept by a shard (an array in the shard: a refill reads no
// line another core wrote but the magazine's own), and the loose one filling up.
struct ClassDepot {
  static constexpr std::uint32_t kMagazines = 16;
  Magazine* full[kMagazines] = {};
  std::uint32_t count = 0;
  std::uint32_t low_water = 0;  // fewest full magazines since the last trim
  Magazine* loose = nullptr;    // not full; single reclaimed blocks gather here
};

class Shard {
 public:
  // Full magazines a depot keeps per class; beyond, a flushed magazine's blocks go back
  // into their slabs (so a shard's cached memory is bounded).
  static constexpr std::uint32_t kDepotMagazines = ClassDepot::kMagazines;
  // Empty magazines a shard keeps for its threads; beyond, they go to the allocator's pool.
  static constexpr std::uint32_t kKeptEmpties = 16;

  Shard(SlabSpace& space, MagazinePool& magazines, std::uint32_t id, std::uint32_t retained_empty) noexcept
      : pool(space, id, retained_empty), magazines_(magazines), id_(id) {}
  ~Shard();  // empties the depots into the slabs before the pool gives its slabs back

  std::uint32_t id() const noexcept { return id_; }

  // ---- lock-free: any thread ----------------------------------------------------------
  // A block of this shard freed by a thread with no cache (exiting), or retired.
  void defer(void* block, std::uint32_t cls, std::uint64_t epoch) noexcept {
    deferred_in[cls].fetch_add(1, std::memory_order_relaxed);
    deferred_[cls].queue.push_block(block, epoch);
  }
  // Blocks of this shard that another shard's pool was about to take back
  // (ForeignFrees::cache_locally): already counted as freed and allocated where it was
  // cached, so it comes back as a deferred block without counting as a free again.
  // A magazine of them, reclaimed whole like a hand-off.
  void come_home(Magazine* m, std::uint64_t epoch) noexcept {
    homecoming_in[m->cls].fetch_add(m->count, std::memory_order_relaxed);
    deferred_[m->cls].queue.push(&m->node, epoch, NodeKind::kMagazineNode);
  }
  void defer_retired(RetireNode* node, std::uint32_t cls, std::uint64_t epoch) noexcept {
    deferred_in[cls].fetch_add(1, std::memory_order_relaxed);
    deferred_[cls].queue.push(node, epoch, NodeKind::kRetireNode);
  }
  // A magazine of this shard's blocks, freed by another shard's threads (who count them).
  void hand_off(Magazine* m, std::uint64_t epoch) noexcept {
    deferred_[m->cls].queue.push(&m->node, epoch, NodeKind::kMagazineNode);
  }
  bool has_deferred() const noexcept {
    for (const ClassDeferred& d : deferred_)
      if (!d.backlog.empty() || d.queue.maybe_nonempty()) return true;
    return false;
  }
  bool has_deferred(std::uint32_t cls) const noexcept {
    return !deferred_[cls].backlog.empty() || deferred_[cls].queue.maybe_nonempty();
  }
  // Whether the backlog of class cls holds nodes not yet old enough at safe_epoch.
  bool deferred_waiting(std::uint32_t cls, std::uint64_t safe_epoch) const noexcept {
    const DeferredBacklog& b = deferred_[cls].backlog;
    return !b.empty() && !b.ready(safe_epoch);
  }
  // Takes (and walks) what was deferred so far, without the lock: for collect(taken, ...).
  using Taken = std::array<DeferredBacklog::Batch, kNumClasses>;
  Taken prepare() noexcept {
    Taken taken;
    for (std::uint32_t c = 0; c < kNumClasses; ++c) taken[c] = DeferredBacklog::prepare(deferred_[c].queue);
    return taken;
  }

  // ---- under `lock` ---------------------------------------------------------------------
  // A full magazine of class cls; else the loose one if it holds any block; else nullptr.
  Magazine* depot_pop(std::uint32_t cls) noexcept;
  // Keeps a full magazine; when the depot is full its blocks go back into their slabs and
  // the magazine joins the empties. Returns false in that case.
  bool depot_push(std::uint32_t cls, Magazine* m) noexcept;
  // Adds n blocks of class cls (single reclaimed blocks, a partial magazine's contents).
  void depot_add(std::uint32_t cls, void* const* blocks, std::uint32_t n) noexcept;
  std::uint64_t depot_blocks(std::uint32_t cls) const noexcept;
  std::uint32_t depot_magazines(std::uint32_t cls) const noexcept { return depots_[cls].count; }

  // Empty magazines: kept ones first, then the allocator's pool.
  Magazine* take_empty() noexcept;
  void put_empty(Magazine* m) noexcept;

  // Takes what was deferred since the last call into the backlogs, then reclaims up to
  // `budget` nodes whose batch is older than `safe_epoch` into the depots; external nodes it
  // is done with are linked onto spent_nodes. Returns how many blocks were reclaimed.
  std::size_t collect(std::uint64_t safe_epoch, std::size_t budget, RetireNode*& spent_nodes) noexcept;
  // Same, with the new nodes taken (and walked) beforehand without the lock (prepare()).
  std::size_t collect(Taken& taken, std::uint64_t safe_epoch, std::size_t budget,
                      RetireNode*& spent_nodes) noexcept;
  // Same, for one class only: what a refill of that class does.
  std::size_t collect_class(std::uint32_t cls, std::uint64_t safe_epoch, std::size_t budget,
                            RetireNode*& spent_nodes) noexcept;
  // Whether any class's oldest batch may be reclaimed at safe_epoch.
  bool deferred_ready(std::uint64_t safe_epoch) const noexcept {
    for (const ClassDeferred& d : deferred_)
      if (d.backlog.ready(safe_epoch)) return true;
    return false;
  }

  // Decay (maintenance tick), once every `interval_ns`: magazines that stayed in a depot for
  // the whole interval and the loose ones go back into their slabs (they pin slabs that could
  // otherwise empty), then the slab pool's decay, then extra empties go to the pool.
  // Returns how many slabs went back to the OS.
  std::uint32_t trim(std::uint64_t now_ns, std::uint64_t interval_ns) noexcept;

  // Depots consistent with the slabs (tests; takes no lock itself).
  bool depots_valid() const noexcept;

  InstrumentedLock lock;
  std::array<LockStats, kNumClasses + 1> lock_stats{};  // per class + maintenance
  SlabPool pool;
  std::array<std::atomic<std::uint64_t>, kNumClasses> deferred_in{};    // defer(), retire(), exited threads
  std::array<std::atomic<std::uint64_t>, kNumClasses> homecoming_in{};  // come_home()
  ThreadCounters retired;   // exited / rebound threads and direct paths (under lock)
  PathStats retired_paths;  // slow-path entries of exited / rebound threads (under lock)

 private:
  std::size_t reclaim_node(void* node, NodeKind kind) noexcept;

  // Per class: the lock-free queue other threads push to (on a cache line of its own), and
  // the backlog taken off it, not yet reclaimed (under lock).
  struct alignas(64) ClassDeferred {
    DeferredQueue queue;
    alignas(64) DeferredBacklog backlog;
  };
  std::array<ClassDeferred, kNumClasses> deferred_{};
  MagazinePool& magazines_;
  std::array<ClassDepot, kNumClasses> depots_{};
  MagazineStack empties_;
  std::uint64_t trim_window_start_ns_ = 0;
  std::uint32_t id_;
};

}  // namespace sydra::alloc
