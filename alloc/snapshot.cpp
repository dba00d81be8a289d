// The telemetry snapshot (stats.hpp explains each figure) and the invariant walk.
//
// How figures are gathered: per-thread counters (single writer) are read with relaxed loads
// under the registry mutex, which keeps states from being released or rebound meanwhile;
// shard figures under each shard's lock; memory figures from the slab space and the kernel.
// Figures are exact when the threads are quiet, and consistent enough to watch otherwise.

#include "allocator_internals.hpp"
#include "platform.hpp"

namespace sydra::alloc {

AllocatorStats SmallPoolAllocator::snapshot() const {
  const double tick_rate = platform::ticks_per_ns();
  auto ticks_to_ns = [tick_rate](std::uint64_t t) {
    return static_cast<std::uint64_t>(static_cast<double>(t) / tick_rate);
  };
  AllocatorStats out;
  out.mode = mode();
  out.shard_count = shard_count();
  out.shard_enabled = out.mode == Mode::sharded && out.shard_count > 0;
  out.slab_bytes = static_cast<std::uint32_t>(space_.slab_bytes());
  const std::uint32_t created = in_->shards_created.load(std::memory_order_acquire);
  out.shards.resize(created);  // allocate before taking any lock

  std::array<std::array<std::uint64_t, kNumClasses>, kMaxShards> cached{};
  // Blocks of each shard freed by other shards' threads: still in their remote magazines,
  // or handed over (counted by those threads until they exit).
  std::array<std::array<std::uint64_t, kNumClasses>, kMaxShards> remote_in{};
  std::int64_t fallback_live = 0;
  std::array<std::int64_t, kNumClasses> in_use_net{};  // sum over shards of blocks_out - held
  {
    std::lock_guard<std::mutex> registry(in_->registry_mutex);
    for (ThreadState* t = in_->threads; t != nullptr; t = t->next) {
      if (!t->claimed) continue;
      const PathStats paths = PathStats::read(t->paths);
      out.paths += paths;
      if (const RemoteCache* rc = read_published(t->remote)) {
        for (std::uint32_t o = 0; o < created; ++o)
          for (std::uint32_t k = 0; k < kNumClasses; ++k) {
            const std::uint32_t slot = RemoteCache::slot(o, k);
            remote_in[o][k] += counter_read(rc->counts[slot]) + counter_read(rc->handed[slot]);
          }
      }
      if (t->shard == kNoShard || t->shard >= created) continue;
      ShardStats& s = out.shards[t->shard];
      s.paths += paths;
      const ThreadCounters c = t->counters();
      for (std::uint32_t k = 0; k < kNumClasses; ++k) {
        s.classes[k].allocations += c.allocs[k];
        s.classes[k].frees += c.frees[k];
        cached[t->shard][k] += t->cached(k);
      }
      s.cross_shard_frees += c.cross_shard_frees;
      ++s.threads;
    }
    for (ThreadState* t = in_->threads; t != nullptr; t = t->next) {
      if (!t->claimed) continue;
      const FallbackCounters& f = t->fallback;
      out.fallback.allocs += counter_read(f.allocs);
      out.fallback.frees += counter_read(f.frees);
      fallback_live += counter_read(f.live_bytes);
      for (std::size_t i = 0; i < FallbackStats::kBuckets; ++i)
        out.fallback.size_buckets[i].count += counter_read(f.size_buckets[i]);
    }
    for (std::uint32_t i = 0; i < created; ++i) {
      Shard& sh = shard(i);
      ShardStats& s = out.shards[i];
      s.id = i;
      s.epoch_min = epoch_.min_observed(i);
      ScopedLock guard(sh.lock, sh.lock_stats[kMaintenanceSlot]);
      s.empty_slabs = sh.pool.empty_slabs();
      s.cross_shard_frees += sh.retired.cross_shard_frees;
      s.paths += sh.retired_paths;
      out.paths += sh.retired_paths;
      for (std::uint32_t k = 0; k < kNumClasses; ++k) {
        const ClassPool& pool = sh.pool.class_pool(k);
        ClassStats& cs = s.classes[k];
        cs.size = class_to_size(k);
        cs.allocations += sh.retired.allocs[k];
        // Blocks sent home (ForeignFrees::cache_locally) were counted as freed where they were
        // cached: they are pushed on the queue, but are not frees of this shard.
        const std::uint64_t homecoming = sh.homecoming_in[k].load(std::memory_order_relaxed);
        const std::uint64_t freed_to_queue =
            sh.deferred_in[k].load(std::memory_order_relaxed) + remote_in[i][k];
        cs.deferred_enqueued = freed_to_queue + homecoming;
        cs.frees += sh.retired.frees[k] + freed_to_queue;
        cs.cached = cached[i][k];
        const std::uint64_t depot = sh.depot_blocks(k);
        cs.free_blocks = pool.free_blocks + depot;
        cs.high_water = pool.high_water;
        cs.refills = pool.refills;
        cs.flushes = pool.flushes;
        cs.slabs = pool.slabs;
        cs.deferred_reclaimed = pool.reclaimed;
        cs.deferred_pending = cs.deferred_enqueued - cs.deferred_reclaimed;
        const std::uint64_t held = cs.cached + cs.deferred_pending + depot;
        cs.in_use = pool.blocks_out > held ? pool.blocks_out - held : 0;
        in_use_net[k] += static_cast<std::int64_t>(pool.blocks_out) - static_cast<std::int64_t>(held);
      }
    }
  }
  if (options_.foreign_frees == ForeignFrees::cache_locally) {
    // Blocks of one shard cached by another's threads or depot count in the owner's
    // blocks_out and in the holder's cached/free_blocks: per shard the difference is off by
    // them (clamped at 0 above), across shards it nets out. Take the surplus off the shards
    // in order, so that each class's total is exact (when the threads are quiet).
    for (std::uint32_t k = 0; k < kNumClasses; ++k) {
      std::uint64_t total = 0;
      for (std::uint32_t i = 0; i < created; ++i) total += out.shards[i].classes[k].in_use;
      const std::uint64_t exact = in_use_net[k] > 0 ? static_cast<std::uint64_t>(in_use_net[k]) : 0;
      std::uint64_t surplus = total > exact ? total - exact : 0;
      for (std::uint32_t i = 0; i < created && surplus > 0; ++i) {
        std::uint64_t& in_use = out.shards[i].classes[k].in_use;
        const std::uint64_t cut = in_use < surplus ? in_use : surplus;
        in_use -= cut;
        surplus -= cut;
      }
    }
  }
  for (std::uint32_t i = 0; i < created; ++i) {
    ShardStats& s = out.shards[i];
    const Shard& sh = shard(i);
    for (std::uint32_t k = 0; k <= kNumClasses; ++k) {
      const LockStats& ls = sh.lock_stats[k];
      const std::uint64_t acq = ls.acquisitions.load(std::memory_order_relaxed);
      const std::uint64_t con = ls.contention.load(std::memory_order_relaxed);
      const std::uint64_t wait = ticks_to_ns(ls.wait_ticks.load(std::memory_order_relaxed));
      const std::uint64_t hold = ticks_to_ns(ls.hold_ticks.load(std::memory_order_relaxed));
      s.lock_acquisitions += acq;
      s.lock_contention += con;
      s.lock_wait_ns += wait;
      s.lock_hold_ns += hold;
      if (k < kNumClasses) {
        s.classes[k].lock_acquisitions = acq;
        s.classes[k].lock_contention = con;
        s.classes[k].lock_wait_ns = wait;
        s.classes[k].lock_hold_ns = hold;
      }
    }
    for (const ClassStats& cs : s.classes) {
      out.shard_alloc_hits += cs.allocations;
      out.shard_deferred_total += cs.deferred_enqueued;
    }
  }

  for (std::uint32_t k = 0; k < kNumClasses; ++k) {
    Internals::LegacyBucket& bucket = *in_->legacy[k];
    ClassStats& cs = out.legacy[k];
    cs.size = class_to_size(k);
    {
      ScopedLock guard(bucket.lock, bucket.lock_stats);
      const ClassPool& pool = bucket.pool.class_pool(k);
      cs.allocations = bucket.allocations;
      cs.deferred_enqueued = in_->legacy_deferred_in[k].load(std::memory_order_relaxed);
      cs.frees = bucket.frees + cs.deferred_enqueued;
      cs.free_blocks = pool.free_blocks;
      cs.high_water = pool.high_water;
      cs.slabs = pool.slabs;
      cs.deferred_reclaimed = pool.reclaimed;
      cs.deferred_pending = cs.deferred_enqueued - cs.deferred_reclaimed;
      cs.in_use = pool.blocks_out > cs.deferred_pending ? pool.blocks_out - cs.deferred_pending : 0;
    }
    cs.lock_acquisitions = bucket.lock_stats.acquisitions.load(std::memory_order_relaxed);
    cs.lock_contention = bucket.lock_stats.contention.load(std::memory_order_relaxed);
    cs.lock_wait_ns = ticks_to_ns(bucket.lock_stats.wait_ticks.load(std::memory_order_relaxed));
    cs.lock_hold_ns = ticks_to_ns(bucket.lock_stats.hold_ticks.load(std::memory_order_relaxed));
  }

  for (std::uint32_t k = 0; k < kNumClasses; ++k) {
    ClassStats& b = out.buckets[k];
    b = out.legacy[k];
    for (const ShardStats& s : out.shards) b += s.classes[k];
    b.size = class_to_size(k);
  }
  out.shard_alloc_misses = in_->shard_misses.load(std::memory_order_relaxed);
  out.magazines = in_->magazines.carved();

  const std::uint64_t current = epoch_.current();
  out.epoch.current = current;
  out.epoch.min_observed = epoch_.min_observed();
  out.epoch.lag = current - out.epoch.min_observed;
  out.epoch.advances = epoch_.advances();
  out.epoch.threads = epoch_.records_claimed();
  out.epoch.active_readers = epoch_.records_active();

  FallbackStats& f = out.fallback;
  f.allocs += in_->fallback_allocs.load(std::memory_order_relaxed);
  f.frees += in_->fallback_frees.load(std::memory_order_relaxed);
  f.resizes = in_->fallback_resizes.load(std::memory_order_relaxed);
  f.remaps = in_->fallback_remaps.load(std::memory_order_relaxed);
  const std::int64_t live = fallback_live + in_->fallback_live.load(std::memory_order_relaxed);
  f.live_bytes = live > 0 ? static_cast<std::uint64_t>(live) : 0;
  for (std::size_t i = 0; i < FallbackStats::kBuckets; ++i) {
    f.size_buckets[i].upper_bound = kFallbackBounds[i];
    f.size_buckets[i].count += in_->fallback_buckets[i].load(std::memory_order_relaxed);
  }

  MemoryStats& m = out.memory;
  m.reserved_bytes = space_.span();
  m.committed_bytes = space_.committed_bytes();
  m.resident_bytes = space_.resident_bytes();
  m.returned_bytes = space_.returned_bytes();
  for (const ClassStats& b : out.buckets) m.pool_live_bytes += b.in_use * b.size;
  m.live_bytes = m.pool_live_bytes + f.live_bytes;
  m.process_resident_bytes = platform::process_resident_bytes();
  m.fragmentation = m.committed_bytes == 0 ? 0.0
                                           : 1.0 - static_cast<double>(m.pool_live_bytes) /
                                                       static_cast<double>(m.committed_bytes);
  return out;
}

bool SmallPoolAllocator::is_valid() const noexcept {
  const std::uint32_t created = in_->shards_created.load(std::memory_order_acquire);
  for (std::uint32_t i = 0; i < created; ++i) {
    Shard& sh = shard(i);
    ScopedLock guard(sh.lock, sh.lock_stats[kMaintenanceSlot]);
    if (!sh.pool.is_valid() || !sh.depots_valid()) return false;
  }
  for (auto* bucket : in_->legacy) {
    ScopedLock guard(bucket->lock, bucket->lock_stats);
    if (!bucket->pool.is_valid()) return false;
  }
  return true;
}

}  // namespace sydra::alloc
