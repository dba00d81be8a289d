// The allocation slow paths: a bin's magazine exchange with its shard (refill), the legacy
// buckets, the system fallback, calloc and realloc.
//
// What a refill costs, in the order it tries (docs/allocator.md has the measured rates):
//   1. the previous magazine is full: swap it in — no lock, no shared line;
//   2. a full magazine from the depot: one lock acquisition, O(1);
//   3. the depot is empty: reclaim up to kRefillReclaimNodes deferred nodes whose epoch has
//      passed (each a magazine another shard's thread filled: O(1) each), then the depot;
//   4. blocks from slabs: a partial slab's free list (reads each block's link), then
//      carving (writes nothing into the blocks), a new slab when none is partial.
// Nothing here returns memory to the OS, faults a page in or walks an unbounded list; the
// loop over epoch records (try_advance_bounded) reads at most kRefillEpochRecords of them,
// twice at most, and only when deferred blocks are waiting for the epoch.

#include <cstring>

#include "allocator_internals.hpp"
#include "platform.hpp"

namespace sydra::alloc {

void* SmallPoolAllocator::allocate_slow(std::size_t size, std::size_t align) noexcept {
  if (align == 0 || (align & (align - 1)) != 0) return nullptr;
  if (align > kMinBlock) {
    if (align <= kMaxSmallSize && size <= kMaxSmallSize) {
      // Classes of 32 bytes and up whose size is a multiple of `align` are aligned to it
      // (slabs are slab-size aligned): round the request up to the alignment.
      std::size_t rounded = ((size == 0 ? 1 : size) + align - 1) & ~(align - 1);
      if (rounded <= kMaxSmallSize) return allocate(rounded, kMinBlock);
    }
    return allocate_fallback(size, align);
  }
  if (size > kMaxSmallSize) return allocate_fallback(size, kMinBlock);

  const std::uint32_t cls = size_to_class(size);
  const Mode m = mode();
  if (m == Mode::system) return allocate_fallback(size, kMinBlock);
  if (m == Mode::legacy) return allocate_legacy(cls);

  ThreadState* st = thread_state();
  if (st != nullptr && st->shard == kNoShard && shard_count() > 0)
    bind_current_thread(next_shard_.fetch_add(1));
  if (st != nullptr && st->shard != kNoShard) {
    Bin& bin = st->bins[cls];
    void* block;
    if (bin.top != bin.bottom) {
      // The bin has blocks: this thread's last allocator was another one (or this is its
      // first call), so the fast path's one-entry cache missed.
      void** top = bin.top - 1;
      block = *top;
      counter_store(bin.top, top);
      counter_add(st->paths.alloc_other, std::uint64_t{1});
    } else {
      block = refill(*st, cls);
    }
    if (block != nullptr) {
      space_.debug_mark_allocated(block, cls);
      track::on_alloc(block, class_to_size(cls));
      return block;
    }
  } else if (st == nullptr && shard_count() > 0) {
    // The thread is exiting and has no cache any more: straight from shard 0, under its lock.
    Shard& sh = shard(0);
    void* block = nullptr;
    {
      ScopedLock guard(sh.lock, sh.lock_stats[cls]);
      if (sh.pool.take(cls, 1, &block) == 1) ++sh.retired.allocs[cls];
    }
    if (block != nullptr) {
      space_.debug_mark_allocated(block, cls);
      track::on_alloc(block, class_to_size(cls));
      return block;
    }
  }
  // Sharding is off, or the slab range is exhausted: legacy bucket, then the system.
  in_->shard_misses.fetch_add(1, std::memory_order_relaxed);
  return allocate_legacy(cls);
}

void* SmallPoolAllocator::refill(ThreadState& st, std::uint32_t cls) noexcept {
  BinMagazines& bm = st.mags[cls];
  if (bm.previous != nullptr && bm.previous->count > 0) {
    // 1. Swap: the previous magazine holds blocks.
    Magazine* full = bm.previous;
    Magazine* empty = bm.loaded;  // nullptr only before the first magazine
    if (empty != nullptr) empty->count = 0;
    bm.previous = empty;
    counter_store(bm.previous_count, std::uint32_t{0});
    load_bin(st, cls, full);
    counter_add(st.paths.alloc_swap, std::uint64_t{1});
  } else {
    Magazine* fresh = fill_from_shard(st, cls);
    if (fresh == nullptr) return nullptr;  // the slab range is exhausted
    // Bonwick: the empty previous goes back, the empty loaded becomes previous.
    if (bm.previous != nullptr) give_spare(st, bm.previous);
    bm.previous = bm.loaded;
    if (bm.previous != nullptr) bm.previous->count = 0;
    counter_store(bm.previous_count, std::uint32_t{0});
    counter_add(bm.moved, std::uint64_t{fresh->count});
    load_bin(st, cls, fresh);
    // The pointers were written on whichever core filled the magazine: read one word of
    // every line now, in the refill, so that the calls that pop them find them in cache.
    // Prefetching them instead was not enough: with only the top lines fetched, every
    // eighth pop below them missed (1 % of allocations, ~120 ns each); with all of them
    // prefetched the in-process allocator was fine but libsydralloc.so, whose refills
    // reclaim magazines handed over moments before (still in the other core's cache), kept
    // that tail. The loads are independent, so they overlap: one refill, ~32 lines.
    std::uintptr_t lines = 0;
    for (std::uint32_t i = 0; i < fresh->count; i += 64 / sizeof(void*))
      lines += reinterpret_cast<std::uintptr_t>(fresh->blocks[i]);
    asm volatile("" : : "r"(lines));
  }
  Bin& bin = st.bins[cls];
  void** top = bin.top - 1;
  void* block = *top;
  counter_store(bin.top, top);
  return block;
}

Magazine* SmallPoolAllocator::fill_from_shard(ThreadState& st, std::uint32_t cls) noexcept {
  Shard& sh = shard(st.shard);
  RetireNode* spent = nullptr;
  Magazine* m;
  {
    ScopedLock guard(sh.lock, sh.lock_stats[cls]);
    ++sh.pool.class_pool(cls).refills;
    m = sh.depot_pop(cls);
    if (m != nullptr) {
      counter_add(st.paths.alloc_depot, std::uint64_t{1});
    } else {
      if (sh.has_deferred(cls)) {
        // 3. Reuse what other shards' threads gave back rather than grow.
        std::size_t got = sh.collect_class(cls, epoch_.cheap_safe_epoch(), kRefillReclaimNodes, spent);
        // Nothing old enough: move the epoch on (a node needs two advances after its tag)
        // rather than take new memory while blocks wait. With no maintenance tick
        // (libsydralloc.so) nobody else would, and a producer -> consumer pair would grow
        // the backlog without bound. Each step reads at most kRefillEpochRecords records.
        for (int step = 0; got == 0 && step < 2 && sh.deferred_waiting(cls, epoch_.cheap_safe_epoch());
             ++step) {
          counter_add(st.paths.alloc_epoch_step, std::uint64_t{1});
          if (!epoch_.try_advance_bounded(kRefillEpochRecords)) break;
          got = sh.collect_class(cls, epoch_.cheap_safe_epoch(), kRefillReclaimNodes, spent);
        }
        if (got > 0) {
          counter_add(st.paths.alloc_reclaim, std::uint64_t{1});
          m = sh.depot_pop(cls);
        }
      }
      if (m == nullptr) {
        // 4. From slabs, into an empty magazine.
        m = st.spares.pop();
        if (m == nullptr) m = sh.take_empty();
        m->cls = cls;
        const std::uint64_t slabs_before = sh.pool.slabs_acquired();
        m->count = sh.pool.take(cls, class_batch(cls), m->blocks);
        counter_add(st.paths.alloc_slab, std::uint64_t{1});
        if (sh.pool.slabs_acquired() != slabs_before) counter_add(st.paths.alloc_new_slab, std::uint64_t{1});
        if (m->count == 0) {
          sh.put_empty(m);
          m = nullptr;
        }
      }
    }
  }
  in_->recycle_nodes(spent);
  return m;
}

void* SmallPoolAllocator::allocate_legacy(std::uint32_t cls) noexcept {
  Internals::LegacyBucket& bucket = *in_->legacy[cls];
  void* block = nullptr;
  {
    ScopedLock guard(bucket.lock, bucket.lock_stats);
    if (bucket.pool.take(cls, 1, &block) == 1) ++bucket.allocations;
  }
  if (block == nullptr) return allocate_fallback(class_to_size(cls), kMinBlock);
  space_.debug_mark_allocated(block, cls);
  track::on_alloc(block, class_to_size(cls));
  return block;
}

void* SmallPoolAllocator::allocate_zeroed(std::size_t size) noexcept {
  if (size > kMaxSmallSize || mode() == Mode::system) return allocate_fallback(size, kMinBlock, true);
  void* p = allocate(size);
  if (p != nullptr) std::memset(p, 0, size);
  return p;
}

void* SmallPoolAllocator::allocate_fallback(std::size_t size, std::size_t align, bool zeroed) noexcept {
  if (size > static_cast<std::size_t>(PTRDIFF_MAX)) return nullptr;  // no object can be that large
  void* p = nullptr;
  // At least 16 bytes, so a retired fallback block can carry a DeferredNode.
  if (align <= kMinBlock) {
    const std::size_t n = size < kMinBlock ? kMinBlock : size;
    p = zeroed ? platform::system_calloc(1, n) : platform::system_malloc(n);
  } else {
    p = platform::system_aligned(align, size < align ? align : size);
    if (p != nullptr && zeroed) std::memset(p, 0, size);
  }
  if (p == nullptr) return nullptr;
  const auto usable = static_cast<std::int64_t>(platform::system_usable_size(p));
  if (ThreadState* st = thread_state()) {
    FallbackCounters& f = st->fallback;
    counter_add(f.allocs, std::uint64_t{1});
    counter_add(f.size_buckets[fallback_bucket(size)], std::uint64_t{1});
    counter_add(f.live_bytes, usable);
    counter_add(st->paths.alloc_other, std::uint64_t{1});
  } else {
    in_->fallback_allocs.fetch_add(1, std::memory_order_relaxed);
    in_->fallback_buckets[fallback_bucket(size)].fetch_add(1, std::memory_order_relaxed);
    in_->fallback_live.fetch_add(usable, std::memory_order_relaxed);
  }
  return p;
}

void* SmallPoolAllocator::reallocate(void* p, std::size_t size) noexcept {
  if (p == nullptr) return allocate(size);
  if (size == 0) {
    deallocate(p);
    return nullptr;
  }
  if (owns(p)) {
    const std::size_t old_size = class_to_size(tag_class(space_.tag_of(p)));
    if (size <= old_size && size_to_class(size) == tag_class(space_.tag_of(p))) {
      in_->fallback_resizes.fetch_add(1, std::memory_order_relaxed);  // kept in place
      return p;
    }
    void* q = allocate(size);
    if (q == nullptr) return nullptr;
    std::memcpy(q, p, old_size < size ? old_size : size);
    deallocate(p);
    return q;
  }
  const std::size_t old_usable = platform::system_usable_size(p);
  if (size <= kMaxSmallSize && mode() != Mode::system) {
    void* q = allocate(size);  // back into the pool
    if (q == nullptr) return nullptr;
    std::memcpy(q, p, old_usable < size ? old_usable : size);
    free_fallback(p);
    return q;
  }
  void* q = platform::system_realloc(p, size);
  if (q == nullptr) return nullptr;
  (q == p ? in_->fallback_resizes : in_->fallback_remaps).fetch_add(1, std::memory_order_relaxed);
  const std::int64_t grown =
      static_cast<std::int64_t>(platform::system_usable_size(q)) - static_cast<std::int64_t>(old_usable);
  if (ThreadState* st = thread_state()) {
    counter_add(st->fallback.live_bytes, grown);
  } else {
    in_->fallback_live.fetch_add(grown, std::memory_order_relaxed);
  }
  return q;
}

std::size_t SmallPoolAllocator::usable_size(const void* p) const noexcept {
  if (p == nullptr) return 0;
  if (owns(p)) return class_to_size(tag_class(space_.tag_of(p)));
  return platform::system_usable_size(const_cast<void*>(p));
}

}  // namespace sydra::alloc
