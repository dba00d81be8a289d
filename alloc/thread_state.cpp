// Thread states: first use on a thread, the magazines of its bins and its spares, handing
// its cross-shard magazines over, thread exit and rebinding.

#include <pthread.h>

#include "allocator_internals.hpp"

namespace sydra::alloc {

void thread_exit_hook(void*) noexcept {
  ThreadSlots& slots = detail::tls_slots;
  slots.exiting = true;  // from here on this thread allocates straight from shards
  slots.last_serial = 0;
  slots.last_state = nullptr;
  std::lock_guard<std::mutex> guard(g_registry.mutex);
  for (std::uint32_t i = 0; i < kMaxAllocators; ++i) {
    ThreadSlots::Entry& e = slots.entries[i];
    if (e.state != nullptr && g_registry.by_slot[i] != nullptr && g_registry.serial[i] == e.serial)
      g_registry.by_slot[i]->release_state(*e.state);
    e = {};
  }
}

ThreadState* SmallPoolAllocator::thread_state() noexcept {
  ThreadSlots& slots = detail::tls_slots;
  if (SYDRA_UNLIKELY(slots.exiting)) return nullptr;
  ThreadSlots::Entry& entry = slots.entries[slot_];
  if (entry.serial == serial_ && entry.state != nullptr) {
    slots.last_serial = serial_;
    slots.last_state = entry.state;
    return entry.state;
  }

  ThreadState* st = nullptr;
  {
    std::lock_guard<std::mutex> guard(in_->registry_mutex);
    for (ThreadState* t = in_->threads; t != nullptr; t = t->next)
      if (!t->claimed) {
        st = t;
        break;
      }
    if (st == nullptr) {
      st = new (in_->arena.allocate(sizeof(ThreadState))) ThreadState{};
      st->next = in_->threads;
      in_->threads = st;
    }
    // A released state holds no magazine and zeroed counters (release_state).
    st->claimed = true;
    st->cross_shard_frees = 0;
    st->fallback = FallbackCounters{};
    st->record = epoch_.acquire_record();
    std::uint32_t count = shard_count();
    if (count == 0) {
      st->shard = kNoShard;
      st->shard_tag = kNoShardTag;
    } else {
      st->shard = next_shard_.fetch_add(1, std::memory_order_relaxed) % count;
      st->shard_tag = make_tag(st->shard, 0);
      st->record->shard.store(st->shard, std::memory_order_relaxed);
    }
  }
  // Publish before arming the exit hook: pthread_setspecific may allocate, and that
  // allocation must find this state rather than make another.
  entry = {serial_, st};
  slots.last_serial = serial_;
  slots.last_state = st;
  if (!slots.exit_hook_armed) {
    slots.exit_hook_armed = true;
    pthread_setspecific(g_registry.exit_key, &slots);
  }
  return st;
}

ThreadState* SmallPoolAllocator::existing_thread_state() noexcept {
  ThreadSlots& slots = detail::tls_slots;
  if (SYDRA_UNLIKELY(slots.exiting)) return nullptr;
  const ThreadSlots::Entry& entry = slots.entries[slot_];
  return entry.serial == serial_ ? entry.state : nullptr;
}

// ---- magazines of a thread ------------------------------------------------------------------

void SmallPoolAllocator::load_bin(ThreadState& st, std::uint32_t cls, Magazine* m) noexcept {
  Bin& bin = st.bins[cls];
  st.mags[cls].loaded = m;
  if (m == nullptr) {
    counter_store(bin.bottom, static_cast<void**>(nullptr));
    counter_store(bin.top, static_cast<void**>(nullptr));
    counter_store(bin.end, static_cast<void**>(nullptr));
    return;
  }
  m->cls = cls;
  // bottom before top: a snapshot that reads top - bottom across the change sees a value it
  // can reject (cached() clamps).
  counter_store(bin.bottom, &m->blocks[0]);
  counter_store(bin.top, &m->blocks[m->count]);
  counter_store(bin.end, &m->blocks[class_batch(cls)]);
}

// Empties move between a thread and the allocator's pool in halves of the spare stack, so a
// thread that only hands magazines over (a consumer) or only takes them in (its producer)
// takes the pool's mutex once per few magazines, not once per magazine.
Magazine* SmallPoolAllocator::take_spare(ThreadState& st) noexcept {
  Magazine* m = st.spares.pop();
  if (m == nullptr && in_->magazines.take_some(st.spares, ThreadState::kSpareMagazines / 2) > 0)
    m = st.spares.pop();
  if (m == nullptr) m = in_->magazines.take();
  m->count = 0;
  return m;
}

void SmallPoolAllocator::give_spare(ThreadState& st, Magazine* m) noexcept {
  m->count = 0;
  if (st.spares.size >= ThreadState::kSpareMagazines)
    in_->magazines.give_some(st.spares, ThreadState::kSpareMagazines / 2);
  st.spares.push(m);
}

void SmallPoolAllocator::flush_remote(ThreadState& st) noexcept {
  RemoteCache* rc = st.remote;
  if (rc == nullptr) return;
  for (std::uint64_t owners = rc->owners; owners != 0; owners &= owners - 1) {
    const auto owner = static_cast<std::uint32_t>(__builtin_ctzll(owners));
    for (std::uint32_t c = 0; c < kNumClasses; ++c)
      if (rc->counts[RemoteCache::slot(owner, c)] != 0) hand_off(st, owner, c);
  }
  rc->owners = 0;
}

void SmallPoolAllocator::flush_all_bins(ThreadState& st) noexcept {
  if (st.shard == kNoShard) return;
  Shard& sh = shard(st.shard);
  ScopedLock guard(sh.lock, sh.lock_stats[kMaintenanceSlot]);
  for (std::uint32_t c = 0; c < kNumClasses; ++c) {
    BinMagazines& bm = st.mags[c];
    std::uint64_t count = 0;
    Magazine* const loaded = bm.loaded;
    if (loaded != nullptr) {
      loaded->count = static_cast<std::uint32_t>(st.bins[c].top - st.bins[c].bottom);
      load_bin(st, c, nullptr);
    }
    for (Magazine* m : {loaded, bm.previous}) {
      if (m == nullptr) continue;
      count += m->count;
      // Back into their slabs, not the depot: a thread that flushes or exits is done with
      // these blocks for a while, and this lets their slabs empty (RSS after thread churn).
      if (m->count != 0) {
        ++sh.pool.class_pool(c).flushes;
        sh.pool.put_array(m->blocks, m->count, c);
      }
      sh.put_empty(m);
    }
    bm.loaded = bm.previous = nullptr;
    counter_store(bm.previous_count, std::uint32_t{0});
    counter_add(bm.moved, std::uint64_t{0} - count);
  }
  while (Magazine* m = st.spares.pop()) sh.put_empty(m);
}

// ---- thread exit and rebinding ----------------------------------------------------------------

void SmallPoolAllocator::fold_fallback(ThreadState& st) noexcept {
  FallbackCounters& f = st.fallback;
  in_->fallback_allocs.fetch_add(f.allocs, std::memory_order_relaxed);
  in_->fallback_frees.fetch_add(f.frees, std::memory_order_relaxed);
  in_->fallback_live.fetch_add(f.live_bytes, std::memory_order_relaxed);
  for (std::size_t i = 0; i < FallbackCounters::kBuckets; ++i)
    in_->fallback_buckets[i].fetch_add(f.size_buckets[i], std::memory_order_relaxed);
  // Written by this thread only, under registry_mutex_ (which snapshots hold).
  counter_add(f.allocs, std::uint64_t{0} - f.allocs);
  counter_add(f.frees, std::uint64_t{0} - f.frees);
  counter_add(f.live_bytes, -f.live_bytes);
  for (auto& b : f.size_buckets) counter_add(b, std::uint64_t{0} - b);
}

void SmallPoolAllocator::fold_counters(ThreadState& st) noexcept {
  // Blocks this thread handed to other shards are counted by their owners from now on.
  if (RemoteCache* rc = st.remote) {
    const std::uint32_t created = in_->shards_created.load(std::memory_order_acquire);
    for (std::uint32_t owner = 0; owner < created; ++owner) {
      for (std::uint32_t c = 0; c < kNumClasses; ++c) {
        std::uint64_t& handed = rc->handed[RemoteCache::slot(owner, c)];
        if (handed == 0) continue;
        shard(owner).deferred_in[c].fetch_add(handed, std::memory_order_relaxed);
        counter_store(handed, std::uint64_t{0});
      }
    }
  }
  if (st.shard == kNoShard) {
    fold_fallback(st);
    return;
  }
  Shard& sh = shard(st.shard);
  ScopedLock guard(sh.lock, sh.lock_stats[kMaintenanceSlot]);
  sh.retired += st.counters();
  sh.retired_paths += PathStats::read(st.paths);
  fold_fallback(st);
  // Restart the derived counters from an empty bin (flush_all_bins ran first).
  for (std::uint32_t c = 0; c < kNumClasses; ++c) {
    SYDRA_ASSERT(st.mags[c].loaded == nullptr && st.mags[c].previous == nullptr,
                 "folding counters of a thread with cached blocks");
    counter_store(st.bins[c].frees, std::uint64_t{0});
    counter_store(st.mags[c].moved, std::uint64_t{0});
  }
#define SYDRA_X(name) counter_store(st.paths.name, std::uint64_t{0});
  SYDRA_PATH_STATS(SYDRA_X)
#undef SYDRA_X
  counter_add(st.cross_shard_frees, std::uint64_t{0} - st.cross_shard_frees);
}

void SmallPoolAllocator::release_state(ThreadState& st) noexcept {
  flush_all_bins(st);
  flush_remote(st);
  while (Magazine* m = st.spares.pop()) in_->magazines.give(m);
  in_->recycle_nodes(st.spare_nodes);
  st.spare_nodes = nullptr;
  st.spare_count = 0;
  std::lock_guard<std::mutex> guard(in_->registry_mutex);
  fold_counters(st);
  epoch_.release_record(st.record);
  st.record = nullptr;
  st.claimed = false;
}

void SmallPoolAllocator::release_thread() noexcept {
  ThreadSlots& slots = detail::tls_slots;
  ThreadSlots::Entry& entry = slots.entries[slot_];
  if (entry.serial != serial_ || entry.state == nullptr) return;
  release_state(*entry.state);
  entry = {};
  if (slots.last_serial == serial_) {
    slots.last_serial = 0;
    slots.last_state = nullptr;
  }
}

std::uint32_t SmallPoolAllocator::bind_current_thread(std::uint32_t target) noexcept {
  std::uint32_t count = shard_count();
  if (count == 0) return kNoShard;
  target %= count;
  ThreadState* st = thread_state();
  if (st == nullptr) return kNoShard;
  if (st->shard == target) return target;
  flush_all_bins(*st);
  flush_remote(*st);
  std::lock_guard<std::mutex> guard(in_->registry_mutex);
  fold_counters(*st);
  st->shard = target;
  st->shard_tag = make_tag(target, 0);
  st->record->shard.store(target, std::memory_order_relaxed);
  return target;
}

std::uint32_t SmallPoolAllocator::current_shard() noexcept {
  ThreadState* st = thread_state();
  return st != nullptr ? st->shard : kNoShard;
}

void SmallPoolAllocator::flush_thread_cache() noexcept {
  if (ThreadState* st = thread_state()) {
    flush_all_bins(*st);
    flush_remote(*st);
  }
}

}  // namespace sydra::alloc
