// The allocator's slow paths: first use on a thread, refill and flush, cross-shard frees,
// the legacy buckets, the system fallback, epochs, thread exit and the stats snapshot.
//
// Lock order (outer to inner): the process registry mutex (g_registry.mutex) → the
// deferred-list mutexes of the legacy buckets and the fallback (never together) → an
// allocator's registry_mutex → shards_mutex → nodes_mutex → a shard lock or a legacy
// bucket lock → the slab space mutex → the metadata arena mutex. fork_prepare() takes
// them all in this order.

#include "small_pool_allocator.hpp"

#include <malloc.h>
#include <pthread.h>

#include <cstdlib>
#include <cstring>
#include <new>

#include "platform.hpp"
#include "shard.hpp"

namespace sydra::alloc {

void thread_exit_hook(void*) noexcept;

namespace detail {
constinit thread_local ThreadSlots tls_slots __attribute__((tls_model("initial-exec"))) = {};
}

namespace {

// Live allocators by slot, for the thread-exit hook and debug wrong-owner checks.
struct ProcessRegistry {
  std::mutex mutex;
  SmallPoolAllocator* by_slot[kMaxAllocators] = {};
  std::uint64_t serial[kMaxAllocators] = {};
  std::uint64_t next_serial = 1;
  pthread_key_t exit_key{};
  bool exit_key_created = false;
};
constinit ProcessRegistry g_registry;
constinit std::atomic<bool> g_fork_handlers_installed{false};

// Bump allocator over pages of our own, for objects that live as long as their allocator.
class MetaArena {
 public:
  ~MetaArena() {
    while (chunks_ != nullptr) {
      Chunk* next = chunks_->next;
      platform::unmap_pages(chunks_, kChunkBytes);
      chunks_ = next;
    }
  }
  void lock_for_fork() noexcept { mutex_.lock(); }
  void unlock_after_fork() noexcept { mutex_.unlock(); }
  void* allocate(std::size_t bytes) noexcept {
    bytes = (bytes + 63) & ~std::size_t{63};
    SYDRA_CHECK(bytes <= kChunkBytes - sizeof(Chunk), "metadata object of %zu bytes too large", bytes);
    std::lock_guard<std::mutex> guard(mutex_);
    if (chunks_ == nullptr || used_ + bytes > kChunkBytes) {
      void* pages = platform::map_pages(kChunkBytes);
      if (pages == nullptr) fatal("out of memory for allocator metadata");
      auto* chunk = static_cast<Chunk*>(pages);
      chunk->next = chunks_;
      chunks_ = chunk;
      used_ = (sizeof(Chunk) + 63) & ~std::size_t{63};
    }
    void* p = reinterpret_cast<char*>(chunks_) + used_;
    used_ += bytes;
    return p;
  }

 private:
  static constexpr std::size_t kChunkBytes = 256 * 1024;
  struct Chunk {
    Chunk* next;
  };
  std::mutex mutex_;
  Chunk* chunks_ = nullptr;
  std::size_t used_ = 0;
};

static_assert(FallbackCounters::kBuckets == FallbackStats::kBuckets);

std::uint32_t fallback_bucket(std::size_t size) noexcept {
  constexpr std::size_t kBounds[FallbackStats::kBuckets - 1] = {512,   1024,   4096,   16384,
                                                                65536, 262144, 1048576};
  std::uint32_t i = 0;
  while (i < FallbackStats::kBuckets - 1 && size > kBounds[i]) ++i;
  return i;
}
constexpr std::uint64_t kFallbackBounds[FallbackStats::kBuckets] = {512,   1024,   4096,    16384,
                                                                    65536, 262144, 1048576, UINT64_MAX};

// Deferred blocks a refill may reclaim under the shard lock, when its class would
// otherwise need a new slab: bounds the refill's latency. collect_garbage() (the
// maintenance tick) does the bulk of reclamation, kCollectChunk blocks per lock hold.
constexpr std::size_t kRefillCollectBudget = 128;
constexpr std::size_t kCollectChunk = 256;

constexpr std::uint32_t kNoShardTag = 0xFE00;  // matches no slab tag (owners are <= kMaxShards)

bool parse_unsigned(const char* text, long long& out) noexcept {
  if (text == nullptr || *text == '\0') return false;
  char* end = nullptr;
  long long v = std::strtoll(text, &end, 10);
  if (end == text || *end != '\0') return false;
  out = v;
  return true;
}

}  // namespace

// The parts of the allocator the fast path never reads.
struct SmallPoolAllocator::Internals {
  struct LegacyBucket {
    explicit LegacyBucket(SlabSpace& space) noexcept : pool(space, kLegacyOwner, 1) {}
    InstrumentedLock lock;
    LockStats lock_stats;
    SlabPool pool;
    std::uint64_t allocations = 0;  // under lock
    std::uint64_t frees = 0;        // under lock
  };
  // A deferred queue whose owner has no lock of its own (legacy buckets, fallback).
  struct DeferredList {
    DeferredQueue queue;
    std::mutex mutex;
    DeferredBacklog backlog;  // under mutex
  };

  MetaArena arena;
  std::mutex shards_mutex;  // creating shards
  std::atomic<Shard*> shards[kMaxShards] = {};
  std::atomic<std::uint32_t> shards_created{0};
  LegacyBucket* legacy[kNumClasses] = {};
  std::array<std::atomic<std::uint64_t>, kNumClasses> legacy_deferred_in{};
  DeferredList legacy_deferred;
  DeferredList fallback_deferred;

  std::atomic<std::uint64_t> fallback_allocs{0};
  std::atomic<std::uint64_t> fallback_frees{0};
  std::atomic<std::uint64_t> fallback_resizes{0};
  std::atomic<std::uint64_t> fallback_remaps{0};
  std::atomic<std::int64_t> fallback_live{0};
  std::array<std::atomic<std::uint64_t>, FallbackStats::kBuckets> fallback_buckets{};
  std::atomic<std::uint64_t> shard_misses{0};

  std::mutex registry_mutex;  // guards `threads` and the claimed flags and counters folding
  ThreadState* threads = nullptr;

  // External nodes for retire(): carved from the arena, recycled, never freed.
  std::mutex nodes_mutex;
  RetireNode* free_nodes = nullptr;  // under nodes_mutex

  static constexpr std::uint32_t kNodeBatch = 32;
  // Up to n nodes, linked through next; never fails (aborts when out of memory).
  RetireNode* take_nodes(std::uint32_t n) noexcept {
    RetireNode* chain = nullptr;
    std::lock_guard<std::mutex> guard(nodes_mutex);
    for (std::uint32_t i = 0; i < n; ++i) {
      RetireNode* node = free_nodes;
      if (node == nullptr) {
        // Carve a batch of nodes at once: one arena call instead of one per node.
        auto* fresh = static_cast<RetireNode*>(arena.allocate(sizeof(RetireNode) * kNodeBatch));
        for (std::uint32_t j = 0; j < kNodeBatch; ++j) {
          RetireNode* carved = new (&fresh[j]) RetireNode{};
          carved->next = free_nodes;
          free_nodes = carved;
        }
        node = free_nodes;
      }
      free_nodes = static_cast<RetireNode*>(node->next);
      node->next = chain;
      chain = node;
    }
    return chain;
  }
  void recycle_nodes(RetireNode* chain) noexcept {
    if (chain == nullptr) return;
    RetireNode* last = chain;
    while (last->next != nullptr) last = static_cast<RetireNode*>(last->next);
    std::lock_guard<std::mutex> guard(nodes_mutex);
    last->next = free_nodes;
    free_nodes = chain;
  }
};

// ---- construction -----------------------------------------------------------------------

Options Options::from_environment() noexcept {
  Options o;
  Mode mode;
  if (const char* m = platform::env("SYDRA_ALLOC_MODE"); m != nullptr && parse_mode(m, mode)) o.mode = mode;
  long long v = 0;
  if (parse_unsigned(platform::env("SYDRA_ALLOC_SHARDS"), v)) o.shards = static_cast<int>(v);
  if (parse_unsigned(platform::env("SYDRA_ALLOC_RESERVE_MB"), v) && v > 0)
    o.reserve_bytes = static_cast<std::size_t>(v) << 20;
  return o;
}

namespace {
std::uint32_t resolve_shards(int shards) noexcept {
  if (shards < 0) shards = static_cast<int>(platform::cpu_count());
  return shards > static_cast<int>(kMaxShards) ? kMaxShards : static_cast<std::uint32_t>(shards);
}
}  // namespace

SmallPoolAllocator::SmallPoolAllocator(const Options& options) noexcept
    : serial_(0),
      space_(options.reserve_bytes, options.slab_bytes),
      tags_(space_.tags()),
      base_(space_.base()),
      span_(space_.span()),
      slab_shift_(space_.slab_shift()),
      slot_(0),
      options_(options),
      mode_(options.mode) {
  SYDRA_CHECK(space_.valid(), "could not reserve %zu bytes of address space for slabs",
              options.reserve_bytes);
  void* pages = platform::map_pages(sizeof(Internals));
  if (pages == nullptr) fatal("out of memory for allocator metadata");
  in_ = new (pages) Internals();
  for (std::uint32_t c = 0; c < kNumClasses; ++c)
    in_->legacy[c] =
        new (in_->arena.allocate(sizeof(Internals::LegacyBucket))) Internals::LegacyBucket(space_);
  set_shard_count(resolve_shards(options.shards));

  {
    std::lock_guard<std::mutex> guard(g_registry.mutex);
    if (!g_registry.exit_key_created) {
      SYDRA_CHECK(pthread_key_create(&g_registry.exit_key, thread_exit_hook) == 0,
                  "pthread_key_create failed: no thread-exit hook");
      g_registry.exit_key_created = true;
    }
    std::uint32_t slot = 0;
    while (slot < kMaxAllocators && g_registry.by_slot[slot] != nullptr) ++slot;
    SYDRA_CHECK(slot < kMaxAllocators, "more than %u SmallPoolAllocator instances alive", kMaxAllocators);
    slot_ = slot;
    serial_ = g_registry.next_serial++;
    g_registry.by_slot[slot] = this;
    g_registry.serial[slot] = serial_;
  }
  install_fork_handlers();
}

void SmallPoolAllocator::install_fork_handlers() noexcept {
  // Outside g_registry.mutex: pthread_atfork may allocate (glibc keeps the first 48
  // handlers inline, so the first allocator of a process does not).
  bool expected = false;
  if (g_fork_handlers_installed.compare_exchange_strong(expected, true, std::memory_order_acq_rel))
    SYDRA_CHECK(pthread_atfork(fork_prepare, fork_parent, fork_child) == 0, "pthread_atfork failed");
}

SmallPoolAllocator::~SmallPoolAllocator() {
  {
    std::lock_guard<std::mutex> guard(g_registry.mutex);
    g_registry.by_slot[slot_] = nullptr;
    g_registry.serial[slot_] = 0;
  }
  ThreadSlots& slots = detail::tls_slots;
  if (slots.last_serial == serial_) slots.last_serial = 0;
  // Fallback blocks still waiting for their epoch are freed now: no reader can outlive us.
  RetireNode* spent = nullptr;
  in_->fallback_deferred.backlog.take(in_->fallback_deferred.queue);
  in_->fallback_deferred.backlog.reclaim(UINT64_MAX, SIZE_MAX, spent,
                                         [](void* p, bool) { platform::system_free(p); });
  for (std::uint32_t i = 0; i < kMaxShards; ++i)
    if (Shard* s = in_->shards[i].load(std::memory_order_relaxed)) s->~Shard();
  for (auto* bucket : in_->legacy) bucket->~LegacyBucket();
  in_->~Internals();
  platform::unmap_pages(in_, sizeof(Internals));
}

Shard& SmallPoolAllocator::shard(std::uint32_t i) const noexcept {
  return *in_->shards[i].load(std::memory_order_acquire);
}

Shard* SmallPoolAllocator::ensure_shard(std::uint32_t i) noexcept {
  if (Shard* s = in_->shards[i].load(std::memory_order_acquire)) return s;
  std::lock_guard<std::mutex> guard(in_->shards_mutex);
  if (Shard* s = in_->shards[i].load(std::memory_order_relaxed)) return s;
  auto* s = new (in_->arena.allocate(sizeof(Shard))) Shard(space_, i, options_.retained_empty_slabs);
  in_->shards[i].store(s, std::memory_order_release);
  std::uint32_t created = in_->shards_created.load(std::memory_order_relaxed);
  if (i + 1 > created) in_->shards_created.store(i + 1, std::memory_order_release);
  return s;
}

void SmallPoolAllocator::set_shard_count(std::uint32_t count) noexcept {
  if (count > kMaxShards) count = kMaxShards;
  for (std::uint32_t i = 0; i < count; ++i) ensure_shard(i);
  shard_count_.store(count, std::memory_order_release);
}

// ---- threads ------------------------------------------------------------------------------

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
    st->claimed = true;
    for (std::uint32_t c = 0; c < kNumClasses; ++c) {
      const std::uint32_t limit = 2 * class_batch(c);
      st->bins[c] = Bin{nullptr, static_cast<std::int32_t>(limit), limit, 0, 0};
    }
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

void SmallPoolAllocator::flush_all_bins(ThreadState& st) noexcept {
  if (st.shard == kNoShard) return;
  Shard& sh = shard(st.shard);
  ScopedLock guard(sh.lock, sh.lock_stats[kMaintenanceSlot]);
  for (std::uint32_t c = 0; c < kNumClasses; ++c) {
    Bin& bin = st.bins[c];
    if (bin.head == nullptr) continue;
    const std::uint32_t count = bin.count();
    sh.pool.put_chain(bin.head, c);
    ++sh.pool.class_pool(c).flushes;
    bin.head = nullptr;
    counter_add(bin.moved, std::uint64_t{0} - count);
    counter_add(bin.room, static_cast<std::int32_t>(count));
  }
}

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
  if (st.shard == kNoShard) {
    fold_fallback(st);
    return;
  }
  Shard& sh = shard(st.shard);
  ScopedLock guard(sh.lock, sh.lock_stats[kMaintenanceSlot]);
  sh.retired += st.counters();
  fold_fallback(st);
  // Restart the derived counters from an empty bin (flush_all_bins ran first).
  for (Bin& bin : st.bins) {
    SYDRA_ASSERT(bin.head == nullptr, "folding counters of a thread with cached blocks");
    counter_add(bin.frees, std::uint64_t{0} - bin.frees);
    counter_add(bin.moved, std::uint64_t{0} - bin.moved);
  }
  counter_add(st.cross_shard_frees, std::uint64_t{0} - st.cross_shard_frees);
}

void SmallPoolAllocator::release_state(ThreadState& st) noexcept {
  flush_all_bins(st);
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
  if (ThreadState* st = thread_state()) flush_all_bins(*st);
}

// ---- allocation slow paths --------------------------------------------------------------

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
    if (bin.head == nullptr) {
      Shard& sh = shard(st->shard);
      void* chain = nullptr;
      RetireNode* spent = nullptr;
      std::uint32_t got;
      {
        ScopedLock guard(sh.lock, sh.lock_stats[cls]);
        // Reuse what other shards' threads gave back before carving more.
        // Reuse what other threads gave back rather than grow (or take an empty slab), but
        // only then: reclaiming touches cold blocks, which is the maintenance tick's job.
        // When the tick is starved of CPU, this keeps the deferred backlog from turning
        // into new slabs.
        chain = sh.pool.pop_batch(cls);
        if (chain != nullptr) {
          got = class_batch(cls);
        } else {
          if ((options_.eager_reclaim || sh.pool.class_pool(cls).partial == nullptr) && sh.has_deferred())
            sh.collect(epoch_, true, kRefillCollectBudget, spent);
          chain = sh.pool.pop_batch(cls);
          if (chain != nullptr) {
            got = class_batch(cls);
          } else if ((chain = sh.pool.take_loose(cls, &got)) == nullptr) {
            got = sh.pool.take(cls, class_batch(cls), &chain);
          }
        }
        ++sh.pool.class_pool(cls).refills;
      }
      in_->recycle_nodes(spent);
      bin.head = chain;
      counter_add(bin.moved, std::uint64_t{got});
      counter_add(bin.room, -static_cast<std::int32_t>(got));
    }
    if (bin.head != nullptr) {
      void* block = bin.head;
      bin.head = track::read_link(block);
      counter_add(bin.room, 1);
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
  } else {
    in_->fallback_allocs.fetch_add(1, std::memory_order_relaxed);
    in_->fallback_buckets[fallback_bucket(size)].fetch_add(1, std::memory_order_relaxed);
    in_->fallback_live.fetch_add(usable, std::memory_order_relaxed);
  }
  return p;
}

// ---- free slow paths --------------------------------------------------------------------

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
  space_.debug_mark_free(p, cls, "free");
  track::on_free(p, class_to_size(cls));

  if (owner == kLegacyOwner) {
    Internals::LegacyBucket& bucket = *in_->legacy[cls];
    ScopedLock guard(bucket.lock, bucket.lock_stats);
    bucket.pool.put(p, space_.meta_of(p));
    ++bucket.frees;
    return;
  }
  ThreadState* st = thread_state();
  if (st != nullptr && st->shard == owner) {
    // Same as the fast path; reached when this thread last used another allocator.
    Bin& bin = st->bins[cls];
    track::write_link(p, bin.head);
    bin.head = p;
    counter_add(bin.frees, std::uint64_t{1});
    counter_add(bin.room, -1);
    if (bin.room < 0) flush_bin(*st, cls);
    return;
  }
  if (st == nullptr && owner == 0) {
    // Exiting thread, block of shard 0 (where such threads allocate): straight back.
    Shard& sh = shard(0);
    ScopedLock guard(sh.lock, sh.lock_stats[cls]);
    sh.pool.put(p, space_.meta_of(p));
    ++sh.retired.frees[cls];
    return;
  }
  // Cross-shard free: onto the owner's deferred queue, reclaimed once the epoch passes.
  if (st != nullptr) counter_add(st->cross_shard_frees, std::uint64_t{1});
  track::unpoison(p, sizeof(DeferredNode));
  shard(owner).defer(p, cls, epoch_.current());
}

void SmallPoolAllocator::flush_bin(ThreadState& st, std::uint32_t cls) noexcept {
  // Give back exactly one batch: the older blocks. The walk to the split point is over
  // blocks this thread freed moments ago, so it stays in cache.
  Bin& bin = st.bins[cls];
  const std::uint32_t batch = class_batch(cls);
  const std::uint32_t keep = bin.count() - batch;
  void* last_kept = bin.head;
  for (std::uint32_t i = 1; i < keep; ++i) last_kept = track::read_link(last_kept);
  void* rest = track::read_link(last_kept);
  track::write_link(last_kept, nullptr);
  Shard& sh = shard(st.shard);
  {
    ScopedLock guard(sh.lock, sh.lock_stats[cls]);
    if (!sh.pool.push_batch(cls, rest)) sh.pool.put_chain(rest, cls);
    ++sh.pool.class_pool(cls).flushes;
  }
  counter_add(bin.moved, std::uint64_t{0} - batch);
  counter_add(bin.room, static_cast<std::int32_t>(batch));
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
  } else {
    in_->fallback_frees.fetch_add(1, std::memory_order_relaxed);
    in_->fallback_live.fetch_sub(usable, std::memory_order_relaxed);
  }
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

// ---- epochs -------------------------------------------------------------------------------

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
    in_->fallback_deferred.queue.push(node, epoch, true);
    return;
  }
  const std::uint16_t tag = space_.tag_of(p);
  SYDRA_CHECK(tag != kFreeSlabTag, "invalid retire of %p: inside the slab range but in no allocated slab", p);
  const std::uint32_t owner = tag_owner(tag);
  const std::uint32_t cls = tag_class(tag);
  space_.debug_mark_free(p, cls, "retire");
  if (owner == kLegacyOwner) {
    in_->legacy_deferred_in[cls].fetch_add(1, std::memory_order_relaxed);
    in_->legacy_deferred.queue.push(node, epoch, true);
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
  if (ThreadState* st = thread_state()) epoch_.quiescent(*st->record);
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
    DeferredBacklog::Batch taken = DeferredBacklog::prepare(sh.deferred);
    for (;;) {
      RetireNode* spent = nullptr;
      std::size_t n;
      {
        ScopedLock guard(sh.lock, sh.lock_stats[kMaintenanceSlot]);
        n = sh.collect(taken, epoch_, kCollectChunk, spent);
      }
      taken = {};
      in_->recycle_nodes(spent);
      reclaimed += n;
      if (n < kCollectChunk) break;
    }
    ScopedLock guard(sh.lock, sh.lock_stats[kMaintenanceSlot]);
    sh.pool.trim(platform::now_ns(), std::uint64_t{options_.empty_slab_decay_ms} * 1'000'000);
  }
  RetireNode* spent = nullptr;
  {
    auto& list = in_->legacy_deferred;
    std::lock_guard<std::mutex> guard(list.mutex);
    list.backlog.take(list.queue);
    reclaimed +=
        list.backlog.reclaim(epoch_.min_observed(), SIZE_MAX, spent, [this](void* block, bool retired) {
          SlabMeta& slab = space_.meta_of(block);
          if (retired) track::on_free(block, class_to_size(slab.cls));
          Internals::LegacyBucket& bucket = *in_->legacy[slab.cls];
          ScopedLock bucket_guard(bucket.lock, bucket.lock_stats);
          ++bucket.pool.class_pool(slab.cls).reclaimed;
          bucket.pool.put(block, slab);
        });
  }
  {
    auto& list = in_->fallback_deferred;
    std::lock_guard<std::mutex> guard(list.mutex);
    list.backlog.take(list.queue);
    reclaimed += list.backlog.reclaim(epoch_.min_observed(), SIZE_MAX, spent, [this](void* block, bool) {
      count_fallback_free(block);
      platform::system_free(block);
    });
  }
  in_->recycle_nodes(spent);
  return reclaimed;
}

// ---- telemetry ----------------------------------------------------------------------------

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
  std::int64_t fallback_live = 0;
  {
    std::lock_guard<std::mutex> registry(in_->registry_mutex);
    for (ThreadState* t = in_->threads; t != nullptr; t = t->next) {
      if (!t->claimed || t->shard == kNoShard || t->shard >= created) continue;
      ShardStats& s = out.shards[t->shard];
      const ThreadCounters c = t->counters();
      for (std::uint32_t k = 0; k < kNumClasses; ++k) {
        s.classes[k].allocations += c.allocs[k];
        s.classes[k].frees += c.frees[k];
        cached[t->shard][k] += t->bins[k].count();
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
      for (std::uint32_t k = 0; k < kNumClasses; ++k) {
        const ClassPool& pool = sh.pool.class_pool(k);
        ClassStats& cs = s.classes[k];
        cs.size = class_to_size(k);
        cs.allocations += sh.retired.allocs[k];
        cs.deferred_enqueued = sh.deferred_in[k].load(std::memory_order_relaxed);
        cs.frees += sh.retired.frees[k] + cs.deferred_enqueued;
        cs.cached = cached[i][k];
        cs.free_blocks = pool.free_blocks + pool.transfer_blocks();
        cs.high_water = pool.high_water;
        cs.refills = pool.refills;
        cs.flushes = pool.flushes;
        cs.slabs = pool.slabs;
        cs.deferred_reclaimed = pool.reclaimed;
        cs.deferred_pending = cs.deferred_enqueued - cs.deferred_reclaimed;
        const std::uint64_t held = cs.cached + cs.deferred_pending + pool.transfer_blocks();
        cs.in_use = pool.blocks_out > held ? pool.blocks_out - held : 0;
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
    if (!sh.pool.is_valid()) return false;
  }
  for (auto* bucket : in_->legacy) {
    ScopedLock guard(bucket->lock, bucket->lock_stats);
    if (!bucket->pool.is_valid()) return false;
  }
  return true;
}

// ---- the process-wide instance --------------------------------------------------------------

SmallPoolAllocator& default_allocator() noexcept {
  // Placement into static storage and never destroyed: static destructors and thread-exit
  // hooks that run after main may still free through it.
  alignas(SmallPoolAllocator) static unsigned char storage[sizeof(SmallPoolAllocator)];
  static SmallPoolAllocator* const instance = new (storage) SmallPoolAllocator(Options::from_environment());
  return *instance;
}

// ---- fork -----------------------------------------------------------------------------------

void SmallPoolAllocator::lock_for_fork() noexcept {
  in_->legacy_deferred.mutex.lock();
  in_->fallback_deferred.mutex.lock();
  in_->registry_mutex.lock();
  in_->shards_mutex.lock();
  in_->nodes_mutex.lock();
  for (std::uint32_t i = 0; i < kMaxShards; ++i)
    if (Shard* s = in_->shards[i].load(std::memory_order_acquire)) s->lock.lock_for_fork();
  for (auto* bucket : in_->legacy) bucket->lock.lock_for_fork();
  space_.lock_for_fork();
  in_->arena.lock_for_fork();
}

void SmallPoolAllocator::unlock_after_fork() noexcept {
  in_->arena.unlock_after_fork();
  space_.unlock_after_fork();
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
    if (t->shard != kNoShard) shard(t->shard).retired += t->counters();
    fold_fallback(*t);
    for (Bin& bin : t->bins) bin = Bin{};
    t->cross_shard_frees = 0;
    t->spare_nodes = nullptr;  // lost with the bins
    t->spare_count = 0;
    epoch_.release_record(t->record);
    t->record = nullptr;
    t->claimed = false;
  }
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
