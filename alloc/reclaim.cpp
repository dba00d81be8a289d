// Epoch-deferred reclamation: retire(), read sections and QSBR, advancing the epoch and
// collect_garbage() (the maintenance tick: every shard's deferred nodes, the legacy and
// fallback deferred lists, and the decay of depots and empty slabs).
//
// The protocol and why it is safe: alloc/epoch.hpp. Which rule gives the safe epoch here:
// collect_garbage() reads every record (min_observed(): a block is reused as soon as the
// readers that could hold it have left); refills use the one-load rule (epoch.hpp).

#include "allocator_internals.hpp"
#include "platform.hpp"

namespace sydra::alloc {

void SmallPoolAllocator::retire(void* p) noexcept {
  if (p == nullptr) return;
  // Readers inside a section may still read p: nothing is written into it (not even a
  // link) until it is reclaimed. An external node carries it instead.
  RetireNode* node;
  if (ThreadState* st = thread_state()) {
    if (st->spare_nodes == nullptr) {
      st->spare_nodes = in_->take_nodes(Internals::kNodeBatch);
      st->spare_count = Internals::kNodeBatch;
    }
    node = st->spare_nodes;
    st->spare_nodes = static_cast<RetireNode*>(node->next);
    --st->spare_count;
  } else {
    node = in_->take_nodes(1);
  }
  node->block = p;
  const std::uint64_t epoch = epoch_.current();
  if (!owns(p)) {
    in_->fallback_deferred.queue.push(node, epoch, NodeKind::kRetireNode);
    return;
  }
  const std::uint16_t tag = space_.tag_of(p);
  SYDRA_CHECK(tag != kFreeSlabTag, "invalid retire of %p: inside the slab range but in no allocated slab", p);
  const std::uint32_t owner = tag_owner(tag);
  const std::uint32_t cls = tag_class(tag);
  space_.debug_mark_free(p, cls, "retire");
  if (owner == kLegacyOwner) {
    in_->legacy_deferred_in[cls].fetch_add(1, std::memory_order_relaxed);
    in_->legacy_deferred.queue.push(node, epoch, NodeKind::kRetireNode);
  } else {
    shard(owner).defer_retired(node, cls, epoch);
  }
}

void SmallPoolAllocator::enter_epoch() noexcept {
  if (ThreadState* st = thread_state()) epoch_.enter(*st->record);
}
void SmallPoolAllocator::leave_epoch() noexcept {
  if (ThreadState* st = thread_state()) epoch_.leave(*st->record);
}
void SmallPoolAllocator::qsbr_online() noexcept {
  if (ThreadState* st = thread_state()) epoch_.online(*st->record);
}
void SmallPoolAllocator::qsbr_offline() noexcept {
  if (ThreadState* st = thread_state()) epoch_.offline(*st->record);
}
void SmallPoolAllocator::quiescent() noexcept {
  if (ThreadState* st = thread_state()) {
    if (st->remote != nullptr && st->remote->owners != 0) flush_remote(*st);
    epoch_.quiescent(*st->record);
  }
}
bool SmallPoolAllocator::advance_epoch() noexcept {
  return epoch_.try_advance();
}

std::size_t SmallPoolAllocator::collect_garbage() noexcept {
  std::size_t reclaimed = 0;
  const std::uint32_t created = in_->shards_created.load(std::memory_order_acquire);
  for (std::uint32_t i = 0; i < created; ++i) {
    Shard& sh = shard(i);
    // Walk the new nodes before taking the lock, then reclaim in chunks so that the
    // shard's own threads are never kept waiting for long.
    Shard::Taken taken = sh.prepare();
    const std::uint64_t safe = epoch_.min_observed();
    for (bool more = true; more;) {
      RetireNode* spent = nullptr;
      {
        ScopedLock guard(sh.lock, sh.lock_stats[kMaintenanceSlot]);
        reclaimed += sh.collect(taken, safe, kCollectChunk, spent);
        more = sh.deferred_ready(safe);
      }
      in_->recycle_nodes(spent);
    }
    ScopedLock guard(sh.lock, sh.lock_stats[kMaintenanceSlot]);
    sh.trim(platform::now_ns(), std::uint64_t{options_.empty_slab_decay_ms} * 1'000'000);
  }
  RetireNode* spent = nullptr;
  {
    auto& list = in_->legacy_deferred;
    std::lock_guard<std::mutex> guard(list.mutex);
    list.backlog.take(list.queue);
    reclaimed +=
        list.backlog.reclaim(epoch_.min_observed(), SIZE_MAX, spent, [this](void* block, NodeKind kind) {
          SlabMeta& slab = space_.meta_of(block);
          if (kind == NodeKind::kRetireNode) track::on_free(block, class_to_size(slab.cls));
          Internals::LegacyBucket& bucket = *in_->legacy[slab.cls];
          ScopedLock bucket_guard(bucket.lock, bucket.lock_stats);
          ++bucket.pool.class_pool(slab.cls).reclaimed;
          bucket.pool.put(block, slab);
          return std::size_t{1};
        });
  }
  {
    auto& list = in_->fallback_deferred;
    std::lock_guard<std::mutex> guard(list.mutex);
    list.backlog.take(list.queue);
    reclaimed += list.backlog.reclaim(epoch_.min_observed(), SIZE_MAX, spent, [this](void* block, NodeKind) {
      count_fallback_free(block);
      platform::system_free(block);
      return std::size_t{1};
    });
  }
  in_->recycle_nodes(spent);
  return reclaimed;
}

}  // namespace sydra::alloc
