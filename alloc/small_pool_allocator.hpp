// sydra::alloc::SmallPoolAllocator — the allocator facade.
//
// Allocation order: the thread's bin (its loaded magazine) → its shard (a full magazine
// from the depot, reclaimed deferred magazines, or blocks from slabs, under the shard lock)
// → the legacy bucket of the size class → the system allocator. Free mirrors it, routed by
// address: a block inside the slab range goes back to its owner (the thread's bin when the
// thread's shard owns it; the thread's remote magazine for that owner, handed over when
// full, when another shard does; the legacy bucket for legacy slabs); any other pointer
// goes to the system allocator.
//
// The fast paths below are what callers inline. Their cost, x86-64 g++ -O2 (counted in
// docs/allocator.md from the disassembly, `bash bench/fast_path_cost.sh`):
//   allocate: size/alignment test, TLS serial check, class table load, pop the loaded
//             magazine (compare top with bottom, load the pointer, store top).
//   deallocate: range test, TLS serial check, tag load, owner compare, push the loaded
//               magazine (compare top with end, store the pointer, store top), frees += 1.
// Neither reads or writes the block itself, takes a lock or does an atomic
// read-modify-write. A cross-shard free is one call more (free_remote: a store into the
// thread's magazine for that owner). Everything else — magazine exchanges with the shard,
// hand-offs, legacy, fallback, first use on a thread — is behind SYDRA_SLOW_PATH in the
// files named in docs/allocator.md.
#pragma once

#include <cstddef>
#include <cstdint>
#include <mutex>

#include "config.hpp"
#include "magazine.hpp"
#include "size_class.hpp"
#include "slab.hpp"
#include "stats.hpp"
#include "thread_cache.hpp"
#include "track.hpp"

namespace sydra::alloc {

// Where cross-shard frees go (Options::foreign_frees).
enum class ForeignFrees : std::uint8_t {
  to_owner,       // the ADR: the owner's deferred queue, reused by the owner after an epoch
  cache_locally,  // the freeing thread's bin while it has room; home when slabs take it back
};

struct Options {
  Mode mode = Mode::sharded;
  // Shards: > 0 that many (at most kMaxShards); 0 = sharding off (small sizes go to the
  // legacy buckets); < 0 = one per CPU. Compiled default: SYDRA_ALLOCATOR_SHARDS.
  int shards = SYDRA_ALLOCATOR_SHARDS;
  std::size_t reserve_bytes = std::size_t{16} << 30;  // virtual range for slabs
  std::size_t slab_bytes = std::size_t{64} << 10;     // power of two, >= 4096
  // Empty slabs a shard keeps committed for reuse (beyond, their pages go back to the OS
  // at once). collect_garbage() returns those that stayed unused since its previous call.
  std::uint32_t retained_empty_slabs = 64;
  std::uint32_t empty_slab_decay_ms = 1000;
  // Where a block freed by a thread of another shard goes (docs/allocator.md, "The owner
  // rule, measured"): to_owner is the ADR's rule (the owner's deferred queue, reused after an
  // epoch transition); cache_locally is the measured alternative (the freeing thread's own
  // bin while it has room, reused at once; a block cached so that later goes back into a
  // slab is sent home, through the owner's deferred queue, instead).
  ForeignFrees foreign_frees = ForeignFrees::to_owner;
  // The defaults, overridden by SYDRA_ALLOC_MODE (sharded|legacy|system),
  // SYDRA_ALLOC_SHARDS (integer), SYDRA_ALLOC_RESERVE_MB and SYDRA_ALLOC_FOREIGN_FREES
  // (owner|local). Never allocates.
  static Options from_environment() noexcept;
};

class SmallPoolAllocator {
 public:
  explicit SmallPoolAllocator(const Options& options = Options{}) noexcept;
  ~SmallPoolAllocator();
  SmallPoolAllocator(const SmallPoolAllocator&) = delete;
  SmallPoolAllocator& operator=(const SmallPoolAllocator&) = delete;

  // ---- allocation -------------------------------------------------------------------
  // size 0 gives a unique 16-byte block. align must be a power of two (else nullptr);
  // alignments up to 16 are free, up to 256 are served from a class whose size is a
  // multiple of the alignment, above 256 by the system allocator. nullptr when out of memory.
  void* allocate(std::size_t size, std::size_t align = kMinBlock) noexcept;
  // allocate(size) with the first `size` bytes zeroed (calloc; the caller checks the
  // count * size product for overflow). Large sizes use the system calloc, which skips
  // zeroing fresh pages.
  void* allocate_zeroed(std::size_t size) noexcept;
  // nullptr is a no-op; a pointer the pool does not own goes to the system allocator.
  void deallocate(void* p) noexcept;
  // Sized free: the size given to allocate (debug builds check the block could have come
  // from a request of that size, at some alignment).
  void deallocate(void* p, std::size_t size) noexcept;
  // realloc semantics: nullptr p allocates; size 0 frees and returns nullptr; on failure
  // the old block is untouched and nullptr is returned.
  void* reallocate(void* p, std::size_t size) noexcept;
  // Bytes usable at p: the class size for pool blocks, malloc_usable_size otherwise.
  std::size_t usable_size(const void* p) const noexcept;
  // Whether p lies in this allocator's slab range (a range check; no memory is read).
  bool owns(const void* p) const noexcept { return space_.contains(p); }

  // ---- epochs -------------------------------------------------------------------------
  // Frees p once every thread now inside a read section has left it (epoch-deferred).
  void retire(void* p) noexcept;
  void enter_epoch() noexcept;
  void leave_epoch() noexcept;
  class EpochGuard {
   public:
    explicit EpochGuard(SmallPoolAllocator& a) noexcept : a_(a) { a_.enter_epoch(); }
    ~EpochGuard() { a_.leave_epoch(); }
    EpochGuard(const EpochGuard&) = delete;
    EpochGuard& operator=(const EpochGuard&) = delete;

   private:
    SmallPoolAllocator& a_;
  };
  // QSBR: an online thread holds reclamation back until its next quiescent point. A
  // quiescent point also hands the blocks of other shards the thread freed since the last
  // one to their owners (a worker between requests), so they are reclaimed promptly.
  void qsbr_online() noexcept;
  void qsbr_offline() noexcept;
  void quiescent() noexcept;
  // Moves the global epoch on if every thread in a read section has observed it.
  bool advance_epoch() noexcept;
  // Returns every deferred block whose epoch has passed to its owner; returns how many.
  std::size_t collect_garbage() noexcept;
  std::uint64_t current_epoch() const noexcept { return epoch_.current(); }

  // ---- threads and shards -------------------------------------------------------------
  // Binds the calling thread to shard `shard % shard_count()` (flushing its cache first).
  // Returns the shard bound, or kNoShard when sharding is off.
  static constexpr std::uint32_t kNoShard = ~0u;
  std::uint32_t bind_current_thread(std::uint32_t shard) noexcept;
  std::uint32_t current_shard() noexcept;
  // Gives the calling thread's cached blocks back to its shard, and hands the blocks of
  // other shards it holds to their owners.
  void flush_thread_cache() noexcept;
  // What thread exit does: flush the cache, fold the counters into the shard, release the
  // epoch record. The thread may keep using the allocator (it gets a new state).
  void release_thread() noexcept;

  Mode mode() const noexcept { return mode_.load(std::memory_order_relaxed); }
  // Changes where new allocations go; blocks already handed out are freed by address, so
  // switching is safe at any time. Threads' cached blocks are still served first.
  void set_mode(Mode mode) noexcept { mode_.store(mode, std::memory_order_relaxed); }
  std::uint32_t shard_count() const noexcept { return shard_count_.load(std::memory_order_relaxed); }
  // 0..kMaxShards. Threads keep their shard until rebound; new threads spread over the new count.
  void set_shard_count(std::uint32_t count) noexcept;
  const Options& options() const noexcept { return options_; }

  // ---- telemetry ----------------------------------------------------------------------
  AllocatorStats snapshot() const;
  // The calling thread's slow-path counters (live; the thread writes them), or nullptr
  // when it has no state yet. For benchmarks that attribute each call to the path it took.
  const PathStats* current_thread_paths() noexcept;
  // Full invariant walk of every pool (tests; takes every lock).
  bool is_valid() const noexcept;

 private:
  friend void thread_exit_hook(void*) noexcept;
  friend void fork_prepare() noexcept;
  friend void fork_parent() noexcept;
  friend void fork_child() noexcept;

  void install_fork_handlers() noexcept;
  // ---- slow allocate (alloc_slow.cpp) ----
  SYDRA_SLOW_PATH void* allocate_slow(std::size_t size, std::size_t align) noexcept;
  void* refill(ThreadState& st, std::uint32_t cls) noexcept;  // the bin is empty
  Magazine* fill_from_shard(ThreadState& st, std::uint32_t cls) noexcept;
  void* allocate_legacy(std::uint32_t cls) noexcept;
  void* allocate_fallback(std::size_t size, std::size_t align, bool zeroed = false) noexcept;
  // ---- slow free (free_slow.cpp) ----
  SYDRA_SLOW_PATH void deallocate_slow(void* p) noexcept;
  SYDRA_SLOW_PATH void bin_full(ThreadState& st, std::uint32_t cls, void* p) noexcept;
  SYDRA_NOINLINE void free_remote(ThreadState& st, void* p, std::uint32_t tag) noexcept;
  SYDRA_SLOW_PATH void check_sized_free(void* p, std::size_t size) const noexcept;
  void hand_off(ThreadState& st, std::uint32_t owner, std::uint32_t cls) noexcept;
  void free_into_bin(ThreadState& st, std::uint32_t cls, void* p) noexcept;
  // ForeignFrees::cache_locally: a block of shard `owner` that one of our slab pools was
  // about to take back goes onto the owner's deferred queue instead (SlabPool::ForeignSink).
  static void send_home(void* self, void* const* blocks, std::uint32_t n, std::uint32_t owner,
                        std::uint32_t cls) noexcept;
  void free_owned(void* p, std::uint16_t tag) noexcept;
  void free_fallback(void* p) noexcept;
  void count_fallback_free(void* p) noexcept;
  // ---- thread states (thread_state.cpp) ----
  ThreadState* thread_state() noexcept;           // creates on first use; nullptr while the thread exits
  ThreadState* existing_thread_state() noexcept;  // never creates one
  void load_bin(ThreadState& st, std::uint32_t cls, Magazine* m) noexcept;
  Magazine* take_spare(ThreadState& st) noexcept;  // an empty magazine, from the thread's spares first
  void give_spare(ThreadState& st, Magazine* m) noexcept;
  void flush_remote(ThreadState& st) noexcept;  // hands every partial remote magazine over
  void flush_all_bins(ThreadState& st) noexcept;
  void release_state(ThreadState& st) noexcept;
  void fold_counters(ThreadState& st) noexcept;  // under registry_mutex_
  void fold_fallback(ThreadState& st) noexcept;  // under registry_mutex_
  // ---- fork (fork.cpp) ----
  // fork(): every lock of this allocator, in lock order; released by the thread that forked.
  void lock_for_fork() noexcept;
  void unlock_after_fork() noexcept;
  // In the child, before unlocking: only the forking thread exists. The other threads'
  // states and epoch records are given up (their cached blocks are lost, not reused).
  void drop_other_threads_after_fork() noexcept;
  class Shard& shard(std::uint32_t i) const noexcept;
  class Shard* ensure_shard(std::uint32_t i) noexcept;

  // Fast-path fields first, on one cache line.
  std::uint64_t serial_;
  SlabSpace space_;  // base and span are read by every free
  std::atomic<std::uint16_t>* tags_;
  std::uintptr_t base_;
  std::size_t span_;
  std::uint32_t slab_shift_;
  std::uint32_t slot_;  // index into ThreadSlots::entries

  Options options_;
  std::atomic<Mode> mode_;
  std::atomic<std::uint32_t> shard_count_{0};
  std::atomic<std::uint32_t> next_shard_{0};
  EpochDomain epoch_;
  struct Internals;
  Internals* in_;  // shards, legacy buckets, fallback, registry: on pages of our own
};

// The process-wide allocator used by the operator new replacement and the daemon. Created
// on first use (safe during static initialisation) from Options::from_environment(), and
// never destroyed.
SmallPoolAllocator& default_allocator() noexcept;

// fork() safety for every live allocator, installed with pthread_atfork when the first
// allocator is constructed: prepare takes every allocator lock (in lock order), the parent
// and the child release them; the child also gives up the states of the threads that did
// not survive the fork, so it can allocate, exit threads and fork again.
void fork_prepare() noexcept;
void fork_parent() noexcept;
void fork_child() noexcept;

// ---- fast paths -----------------------------------------------------------------------
//
// Each is about 15 instructions on x86-64 (docs/allocator.md has the listing); debug and
// sanitizer hooks compile to nothing in release builds.

SYDRA_FAST_PATH SYDRA_NO_SANITIZE_NULL void* SmallPoolAllocator::allocate(std::size_t size,
                                                                          std::size_t align) noexcept {
  const ThreadSlots& slots = detail::tls_slots;
  // (align & (align - 1)) == 0: a power of two (folds away for the default argument).
  if (SYDRA_LIKELY(slots.last_serial == serial_ && size <= kMaxSmallSize && align <= kMinBlock &&
                   (align & (align - 1)) == 0)) {
    const std::uint32_t bin_offset = kBinOffsetOfSize[size];
    Bin& bin = slots.last_state->bin_at(bin_offset);
    void** top = bin.top;
    if (SYDRA_LIKELY(top != bin.bottom)) {
      --top;
      void* block = *top;
      counter_store(bin.top, top);
#if SYDRA_ALLOC_DEBUG || SYDRA_ASAN
      const std::uint32_t cls = bin_offset / kBinBytes;
      space_.debug_mark_allocated(block, cls);
      track::on_alloc(block, class_to_size(cls));
#endif
      return block;
    }
  }
  return allocate_slow(size, align);
}

SYDRA_FAST_PATH SYDRA_NO_SANITIZE_NULL void SmallPoolAllocator::deallocate(void* p) noexcept {
  const ThreadSlots& slots = detail::tls_slots;
  const std::uintptr_t offset = reinterpret_cast<std::uintptr_t>(p) - base_;
  if (SYDRA_LIKELY(offset < span_ && slots.last_serial == serial_)) {
    ThreadState& st = *slots.last_state;
    // The slab tag xor the thread's shard tag is the bin offset when the thread's shard
    // owns the block, and at least kNumClasses * kBinBytes otherwise.
    const std::uint32_t tag = tags_[offset >> slab_shift_].load(std::memory_order_relaxed);
    const std::uint32_t bin_offset = tag ^ st.shard_tag;
    if (SYDRA_LIKELY(bin_offset < kNumClasses * kBinBytes)) {
#if SYDRA_ALLOC_DEBUG || SYDRA_ASAN
      const std::uint32_t cls = bin_offset / kBinBytes;
      space_.debug_mark_free(p, cls, "free");
      track::on_free(p, class_to_size(cls));
#endif
      Bin& bin = st.bin_at(bin_offset);
      void** top = bin.top;
      if (SYDRA_LIKELY(top != bin.end)) {
        *top = p;
        counter_store(bin.top, top + 1);
        counter_add(bin.frees, std::uint64_t{1});
        return;
      }
      bin_full(st, bin_offset / kBinBytes, p);
      return;
    }
    free_remote(st, p, tag);
    return;
  }
  deallocate_slow(p);
}

SYDRA_FAST_PATH void SmallPoolAllocator::deallocate(void* p, std::size_t size) noexcept {
#if SYDRA_ALLOC_DEBUG
  if (owns(p)) check_sized_free(p, size);
#endif
  (void)size;
  deallocate(p);
}

}  // namespace sydra::alloc
