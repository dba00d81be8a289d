// The free slow paths: a full bin's magazine exchange with its shard, cross-shard frees
// into the thread's remote magazines and their hand-off to the owner, legacy blocks,
// system blocks and threads without a cache.
//
// A cross-shard free (the block's owner is another shard) costs a call and a store: the
// pointer goes into the thread's magazine for (owner, class). The owner learns of it when
// that magazine is full (class_batch blocks): one CAS pushes the whole magazine onto the
// owner's deferred queue, tagged with the epoch read then — later than every free it
// carries, so the epoch rule still holds for each block (reused only after every reader
// inside a section at the time of its free has left). A thread hands its partial
// magazines over when it flushes, passes a quiescent point, rebinds or exits.

#include <cstring>

#include "allocator_internals.hpp"
#include "platform.hpp"

namespace sydra::alloc {

void SmallPoolAllocator::bin_full(ThreadState& st, std::uint32_t cls, void* p) noexcept {
  BinMagazines& bm = st.mags[cls];
  if (bm.loaded == nullptr) {
    load_bin(st, cls, take_spare(st));  // the first free into this class on this thread
    counter_add(st.paths.free_other, std::uint64_t{1});
  } else {
    Magazine* full = bm.loaded;
    full->count = class_batch(cls);
    if (bm.previous != nullptr && bm.previous->count == 0) {
      // Swap: the previous magazine is empty.
      Magazine* empty = bm.previous;
      bm.previous = full;
      counter_store(bm.previous_count, full->count);
      load_bin(st, cls, empty);
      counter_add(st.paths.free_swap, std::uint64_t{1});
    } else {
      // Bonwick: the full previous goes to the depot, the full loaded becomes previous,
      // an empty one is loaded.
      Magazine* empty = st.spares.pop();
      if (Magazine* give = bm.previous) {
        Shard& sh = shard(st.shard);
        ScopedLock guard(sh.lock, sh.lock_stats[cls]);
        ++sh.pool.class_pool(cls).flushes;
        counter_add(bm.moved, std::uint64_t{0} - give->count);  // before the push: it may empty `give`
        counter_add(st.paths.free_depot, std::uint64_t{1});
        if (!sh.depot_push(cls, give)) counter_add(st.paths.free_depot_full, std::uint64_t{1});
        if (empty == nullptr) empty = sh.take_empty();
      }
      if (empty == nullptr) empty = take_spare(st);
      empty->count = 0;
      bm.previous = full;
      counter_store(bm.previous_count, full->count);
      load_bin(st, cls, empty);
    }
  }
  Bin& bin = st.bins[cls];
  *bin.top = p;
  counter_store(bin.top, bin.top + 1);
  counter_add(bin.frees, std::uint64_t{1});
}

void SmallPoolAllocator::free_remote(ThreadState& st, void* p, std::uint32_t tag) noexcept {
  const std::uint32_t owner = tag_owner(static_cast<std::uint16_t>(tag));
  if (SYDRA_UNLIKELY(owner >= kMaxShards)) {
    deallocate_slow(p);  // a legacy block, or not a block at all (reported there)
    return;
  }
  const std::uint32_t cls = tag_class(static_cast<std::uint16_t>(tag));
  space_.debug_mark_free(p, cls, "free");
  track::on_free(p, class_to_size(cls));
  if (options_.foreign_frees == ForeignFrees::cache_locally) {
    // The measured alternative to the owner rule: into this thread's bin while it has room,
    // reused at once. A full bin sends it to the owner as below: a thread that only frees
    // (a consumer) would otherwise push other shards' blocks through its own depot and
    // slab returns (docs/allocator.md, "The owner rule, measured").
    Bin& bin = st.bins[cls];
    if (SYDRA_LIKELY(bin.top != bin.end)) {
      *bin.top = p;
      counter_store(bin.top, bin.top + 1);
      counter_add(bin.frees, std::uint64_t{1});
      counter_add(st.cross_shard_frees, std::uint64_t{1});
      counter_add(st.paths.free_remote, std::uint64_t{1});
      return;
    }
  }
  RemoteCache* rc = st.remote;
  if (SYDRA_UNLIKELY(rc == nullptr)) {
    rc = new (in_->arena.allocate(sizeof(RemoteCache))) RemoteCache{};
    publish(st.remote, rc);  // snapshots read it and its counts
  }
  const std::uint32_t slot = RemoteCache::slot(owner, cls);
  Magazine* m = rc->magazines[slot];
  if (SYDRA_UNLIKELY(m == nullptr)) {
    m = rc->magazines[slot] = take_spare(st);
    rc->owners |= std::uint64_t{1} << owner;
  }
  const std::uint32_t n = rc->counts[slot];
  m->blocks[n] = p;
  counter_store(rc->counts[slot], n + 1);
  counter_add(st.cross_shard_frees, std::uint64_t{1});
  counter_add(st.paths.free_remote, std::uint64_t{1});
  if (SYDRA_UNLIKELY(n + 1 == class_batch(cls))) hand_off(st, owner, cls);
}

void SmallPoolAllocator::free_into_bin(ThreadState& st, std::uint32_t cls, void* p) noexcept {
  Bin& bin = st.bins[cls];
  if (bin.top == bin.end) {
    bin_full(st, cls, p);
    return;
  }
  *bin.top = p;
  counter_store(bin.top, bin.top + 1);
  counter_add(bin.frees, std::uint64_t{1});
}

void SmallPoolAllocator::send_home(void* self, void* const* blocks, std::uint32_t n, std::uint32_t owner,
                                   std::uint32_t cls) noexcept {
  // In a magazine of their own, like a hand-off: one push, reclaimed whole.
  auto& a = *static_cast<SmallPoolAllocator*>(self);
  Magazine* m = a.in_->magazines.take();
  std::memcpy(m->blocks, blocks, n * sizeof(void*));
  m->count = n;
  m->cls = cls;
  a.shard(owner).come_home(m, a.epoch_.current());
}

void SmallPoolAllocator::hand_off(ThreadState& st, std::uint32_t owner, std::uint32_t cls) noexcept {
  RemoteCache& rc = *st.remote;
  const std::uint32_t slot = RemoteCache::slot(owner, cls);
  Magazine* m = rc.magazines[slot];
  m->count = rc.counts[slot];
  m->cls = cls;
  rc.magazines[slot] = nullptr;
  counter_add(rc.handed[slot], std::uint64_t{m->count});
  counter_store(rc.counts[slot], std::uint32_t{0});
  counter_add(st.paths.free_handoff, std::uint64_t{1});
  shard(owner).hand_off(m, epoch_.current());
}

void SmallPoolAllocator::deallocate_slow(void* p) noexcept {
  if (p == nullptr) return;
  if (!owns(p)) {
    free_fallback(p);
    return;
  }
  std::uint16_t tag = space_.tag_of(p);
  SYDRA_CHECK(tag != kFreeSlabTag, "invalid free of %p: inside the slab range but in no allocated slab", p);
  free_owned(p, tag);
}

void SmallPoolAllocator::free_owned(void* p, std::uint16_t tag) noexcept {
  const std::uint32_t owner = tag_owner(tag);
  const std::uint32_t cls = tag_class(tag);
  if (owner == kLegacyOwner) {
    space_.debug_mark_free(p, cls, "free");
    track::on_free(p, class_to_size(cls));
    Internals::LegacyBucket& bucket = *in_->legacy[cls];
    ScopedLock guard(bucket.lock, bucket.lock_stats);
    bucket.pool.put(p, space_.meta_of(p));
    ++bucket.frees;
    return;
  }
  ThreadState* st = thread_state();
  if (st != nullptr) {
    if (st->shard != owner) {
      free_remote(*st, p, tag);
      return;
    }
    // Same as the fast path; reached when this thread last used another allocator.
    space_.debug_mark_free(p, cls, "free");
    track::on_free(p, class_to_size(cls));
    counter_add(st->paths.free_other, std::uint64_t{1});
    free_into_bin(*st, cls, p);
    return;
  }
  space_.debug_mark_free(p, cls, "free");
  track::on_free(p, class_to_size(cls));
  if (owner == 0) {
    // Exiting thread, block of shard 0 (where such threads allocate): straight back.
    Shard& sh = shard(0);
    ScopedLock guard(sh.lock, sh.lock_stats[cls]);
    sh.pool.put(p, space_.meta_of(p));
    ++sh.retired.frees[cls];
    return;
  }
  // Exiting thread, block of another shard: onto the owner's deferred queue by itself (the
  // block carries the node: the caller gave it up).
  track::unpoison(p, sizeof(DeferredNode));
  shard(owner).defer(p, cls, epoch_.current());
}

void SmallPoolAllocator::check_sized_free(void* p, std::size_t size) const noexcept {
  const std::uint16_t tag = space_.tag_of(p);
  if (tag == kFreeSlabTag) return;  // deallocate reports the invalid free itself
  const std::uint32_t block = class_to_size(tag_class(tag));
  // allocate(size, align) rounds size up to align when align > 16: accept any alignment
  // that divides the block size and gives exactly that block.
  bool matches = size <= kMaxSmallSize && class_to_size(size_to_class(size)) == block;
  for (std::size_t align = 32; !matches && align <= kMaxSmallSize && block % align == 0; align *= 2)
    matches = size != 0 && ((size + align - 1) & ~(align - 1)) == block;
  SYDRA_CHECK(matches, "sized free of %p with size %zu but the block is in the %u-byte class", p, size,
              block);
}

void SmallPoolAllocator::free_fallback(void* p) noexcept {
#if SYDRA_ALLOC_DEBUG
  {
    std::lock_guard<std::mutex> guard(g_registry.mutex);
    for (std::uint32_t i = 0; i < kMaxAllocators; ++i) {
      SmallPoolAllocator* other = g_registry.by_slot[i];
      SYDRA_CHECK(other == nullptr || other == this || !other->owns(p),
                  "wrong owner: %p belongs to another SmallPoolAllocator (#%llu) but was freed through #%llu",
                  p, static_cast<unsigned long long>(g_registry.serial[i]),
                  static_cast<unsigned long long>(serial_));
    }
  }
#endif
  count_fallback_free(p);
  platform::system_free(p);
}

void SmallPoolAllocator::count_fallback_free(void* p) noexcept {
  const auto usable = static_cast<std::int64_t>(platform::system_usable_size(p));
  // Never makes a state: a thread that only frees system blocks (or frees them while it
  // exits, after its state was released) must not claim a state nobody releases.
  if (ThreadState* st = existing_thread_state()) {
    counter_add(st->fallback.frees, std::uint64_t{1});
    counter_add(st->fallback.live_bytes, -usable);
    counter_add(st->paths.free_other, std::uint64_t{1});
  } else {
    in_->fallback_frees.fetch_add(1, std::memory_order_relaxed);
    in_->fallback_live.fetch_sub(usable, std::memory_order_relaxed);
  }
}

}  // namespace sydra::alloc
