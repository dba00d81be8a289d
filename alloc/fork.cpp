// fork() safety: pthread_atfork handlers that take every lock of every live allocator in
// the lock order (allocator_internals.hpp) before fork and release them after, and, in the
// child, give up the states of the threads that did not survive the fork.

#include "allocator_internals.hpp"

namespace sydra::alloc {

void SmallPoolAllocator::lock_for_fork() noexcept {
  in_->legacy_deferred.mutex.lock();
  in_->fallback_deferred.mutex.lock();
  in_->registry_mutex.lock();
  in_->shards_mutex.lock();
  in_->nodes_mutex.lock();
  for (std::uint32_t i = 0; i < kMaxShards; ++i)
    if (Shard* s = in_->shards[i].load(std::memory_order_acquire)) s->lock.lock_for_fork();
  for (auto* bucket : in_->legacy) bucket->lock.lock_for_fork();
  in_->magazines.lock_for_fork();
  space_.lock_for_fork();
  in_->arena.lock_for_fork();
}

void SmallPoolAllocator::unlock_after_fork() noexcept {
  in_->arena.unlock_after_fork();
  space_.unlock_after_fork();
  in_->magazines.unlock_after_fork();
  for (auto* bucket : in_->legacy) bucket->lock.unlock_after_fork();
  for (std::uint32_t i = kMaxShards; i-- > 0;)
    if (Shard* s = in_->shards[i].load(std::memory_order_acquire)) s->lock.unlock_after_fork();
  in_->nodes_mutex.unlock();
  in_->shards_mutex.unlock();
  in_->registry_mutex.unlock();
  in_->fallback_deferred.mutex.unlock();
  in_->legacy_deferred.mutex.unlock();
}

void SmallPoolAllocator::drop_other_threads_after_fork() noexcept {
  const ThreadSlots::Entry& mine = detail::tls_slots.entries[slot_];
  ThreadState* survivor = mine.serial == serial_ ? mine.state : nullptr;
  for (ThreadState* t = in_->threads; t != nullptr; t = t->next) {
    if (!t->claimed || t == survivor) continue;
    // The thread is gone; it may have been anywhere in its lock-free fast path, so its
    // bins cannot be trusted: their blocks stay out of the pool for good (at most two
    // batches per class). Its counters are folded as they are; every lock is held.
    if (t->shard != kNoShard) {
      shard(t->shard).retired += t->counters();
      shard(t->shard).retired_paths += t->paths;
    }
    if (RemoteCache* rc = t->remote) {
      const std::uint32_t created = in_->shards_created.load(std::memory_order_relaxed);
      for (std::uint32_t o = 0; o < created; ++o)
        for (std::uint32_t c = 0; c < kNumClasses; ++c)
          shard(o).deferred_in[c].fetch_add(rc->handed[RemoteCache::slot(o, c)], std::memory_order_relaxed);
    }
    fold_fallback(*t);
    for (Bin& bin : t->bins) bin = Bin{};
    for (BinMagazines& bm : t->mags) bm = BinMagazines{};
    t->spares = MagazineStack{};
    if (t->remote != nullptr) *t->remote = RemoteCache{};  // its magazines are lost too
    t->paths = PathStats{};
    t->cross_shard_frees = 0;
    t->spare_nodes = nullptr;  // lost with the bins
    t->spare_count = 0;
    epoch_.release_record(t->record);
    t->record = nullptr;
    t->claimed = false;
  }
  epoch_.reset_scan_after_fork();
}

void fork_prepare() noexcept {
  g_registry.mutex.lock();
  for (SmallPoolAllocator* a : g_registry.by_slot)
    if (a != nullptr) a->lock_for_fork();
}

void fork_parent() noexcept {
  for (std::uint32_t i = kMaxAllocators; i-- > 0;)
    if (SmallPoolAllocator* a = g_registry.by_slot[i]) a->unlock_after_fork();
  g_registry.mutex.unlock();
}

void fork_child() noexcept {
  for (std::uint32_t i = kMaxAllocators; i-- > 0;) {
    if (SmallPoolAllocator* a = g_registry.by_slot[i]) {
      a->drop_other_threads_after_fork();
      a->unlock_after_fork();
    }
  }
  g_registry.mutex.unlock();
}

}  // namespace sydra::alloc
