#include "shard.hpp"

#include "track.hpp"

namespace sydra::alloc {

ThreadCounters& ThreadCounters::operator+=(const ThreadCounters& other) noexcept {
  static_assert(sizeof(ThreadCounters) == sizeof(std::uint64_t) * (2 * kNumClasses + 1),
                "a field was added to ThreadCounters: add it to operator+= and read()");
  for (std::size_t c = 0; c < kNumClasses; ++c) {
    allocs[c] += other.allocs[c];
    frees[c] += other.frees[c];
  }
  cross_shard_frees += other.cross_shard_frees;
  return *this;
}

ThreadCounters ThreadCounters::read() const noexcept {
  ThreadCounters out;
  for (std::size_t c = 0; c < kNumClasses; ++c) {
    out.allocs[c] = counter_read(allocs[c]);
    out.frees[c] = counter_read(frees[c]);
  }
  out.cross_shard_frees = counter_read(cross_shard_frees);
  return out;
}

SlabPool::~SlabPool() {
  // The owner is being destroyed with its allocator: slabs go back to the space unchecked.
  for (auto& pool : classes_) {
    while (pool.partial != nullptr) {
      SlabMeta* s = pool.partial;
      pool.partial = s->next;
      s->in_use = 0;
      space_.release(*s);
    }
  }
  while (empty_ != nullptr) {
    SlabMeta* s = empty_;
    empty_ = s->next;
    space_.release(*s);
  }
}

void SlabPool::link_partial(ClassPool& pool, SlabMeta& slab) noexcept {
  slab.prev = nullptr;
  slab.next = pool.partial;
  if (pool.partial) pool.partial->prev = &slab;
  pool.partial = &slab;
  slab.in_partial = true;
}

void SlabPool::unlink_partial(ClassPool& pool, SlabMeta& slab) noexcept {
  if (slab.prev)
    slab.prev->next = slab.next;
  else
    pool.partial = slab.next;
  if (slab.next) slab.next->prev = slab.prev;
  slab.next = slab.prev = nullptr;
  slab.in_partial = false;
}

SlabMeta* SlabPool::new_slab(std::uint32_t cls) noexcept {
  SlabMeta* slab;
  if (empty_ != nullptr) {
    slab = empty_;
    empty_ = slab->next;
    --empty_count_;
    if (empty_count_ < empty_low_water_) empty_low_water_ = empty_count_;
    space_.relabel(*slab, owner_, cls);
  } else {
    slab = space_.acquire(owner_, cls);
    if (slab == nullptr) return nullptr;
  }
  ClassPool& pool = classes_[cls];
  ++pool.slabs;
  pool.free_blocks += slab->capacity;
  link_partial(pool, *slab);
  return slab;
}

std::uint32_t SlabPool::take(std::uint32_t cls, std::uint32_t n, void** head) noexcept {
  ClassPool& pool = classes_[cls];
  const std::uint32_t size = class_to_size(cls);
  void* chain = nullptr;
  std::uint32_t got = 0;
  while (got < n) {
    SlabMeta* slab = pool.partial;
    if (slab == nullptr && (slab = new_slab(cls)) == nullptr) break;
    std::uint32_t before = got;
    while (got < n && slab->free_list != nullptr) {
      void* block = slab->free_list;
      slab->free_list = track::read_link(block);
      --slab->free_count;
      track::write_link(block, chain);
      chain = block;
      ++got;
    }
    if (got < n && slab->carved < slab->capacity) {
      char* start = space_.slab_start(*slab);
      while (got < n && slab->carved < slab->capacity) {
        void* block = start + static_cast<std::size_t>(slab->carved++) * size;
#if SYDRA_ALLOC_DEBUG
        track::unpoison(block, size);
        track::on_free(block, size);  // carved blocks are filled like freed ones
#endif
        track::write_link(block, chain);
        chain = block;
        ++got;
      }
    }
    slab->in_use += got - before;
    if (slab->available() == 0) unlink_partial(pool, *slab);
  }
  pool.free_blocks -= got;
  pool.blocks_out += got;
  if (pool.blocks_out > pool.high_water) pool.high_water = pool.blocks_out;
  *head = chain;
  return got;
}

void SlabPool::slab_emptied(ClassPool& pool, SlabMeta& slab) noexcept {
  if (slab.in_partial) unlink_partial(pool, slab);
  pool.free_blocks -= slab.capacity;
  --pool.slabs;
  if (empty_count_ < retained_empty_) {
    // Keep it committed for the next class that needs a slab; nothing is touched.
    slab.free_list = nullptr;
    slab.free_count = 0;
    slab.carved = 0;
    track::poison(space_.slab_start(slab), space_.slab_bytes());
    slab.next = empty_;
    empty_ = &slab;
    ++empty_count_;
  } else {
    space_.release(slab);
  }
}

void SlabPool::put(void* block, SlabMeta& slab) noexcept {
  ClassPool& pool = classes_[slab.cls];
  SYDRA_ASSERT(slab.owner == owner_, "block %p put back into pool %u but its slab belongs to %u", block,
               owner_, slab.owner);
  SYDRA_ASSERT(slab.in_use > 0, "block %p put back into a slab with no block in use", block);
  track::write_link(block, slab.free_list);
  slab.free_list = block;
  ++slab.free_count;
  --slab.in_use;
  --pool.blocks_out;
  ++pool.free_blocks;
  if (slab.in_use == 0) {
    slab_emptied(pool, slab);
  } else if (!slab.in_partial) {
    link_partial(pool, slab);
  }
}

void SlabPool::put_chain(void* head, std::uint32_t cls) noexcept {
  (void)cls;
  while (head != nullptr) {
    void* next = track::read_link(head);
    SlabMeta& slab = space_.meta_of(head);
    SYDRA_ASSERT(slab.cls == cls, "block %p of class %u flushed as class %u", head, slab.cls, cls);
    put(head, slab);
    head = next;
  }
}

std::uint32_t SlabPool::trim(std::uint64_t now_ns, std::uint64_t interval_ns) noexcept {
  if (now_ns - trim_window_start_ns_ < interval_ns) return 0;
  trim_window_start_ns_ = now_ns;
  for (std::uint32_t cls = 0; cls < kNumClasses; ++cls) {
    ClassPool& pool = classes_[cls];
    for (std::uint32_t unused = pool.transfer_low_water; unused > 0 && pool.transfer != nullptr; --unused)
      put_chain(pop_batch(cls), cls);
    pool.transfer_low_water = pool.transfer_batches;
    std::uint32_t count;
    if (void* loose = take_loose(cls, &count)) put_chain(loose, cls);
  }
  std::uint32_t released = 0;
  while (released < empty_low_water_ && empty_ != nullptr) {
    SlabMeta* slab = empty_;
    empty_ = slab->next;
    --empty_count_;
    space_.release(*slab);
    ++released;
  }
  empty_low_water_ = empty_count_;
  return released;
}

bool SlabPool::push_batch(std::uint32_t cls, void* chain) noexcept {
  ClassPool& pool = classes_[cls];
  if (pool.transfer_batches >= kTransferBatches) return false;
  track::write_batch_link(chain, pool.transfer);
  pool.transfer = chain;
  ++pool.transfer_batches;
  return true;
}

void* SlabPool::pop_batch(std::uint32_t cls) noexcept {
  ClassPool& pool = classes_[cls];
  void* chain = pool.transfer;
  if (chain == nullptr) return nullptr;
  pool.transfer = track::read_batch_link(chain);
  --pool.transfer_batches;
  if (pool.transfer_batches < pool.transfer_low_water) pool.transfer_low_water = pool.transfer_batches;
  return chain;
}

void SlabPool::push_loose(std::uint32_t cls, void* block) noexcept {
  ClassPool& pool = classes_[cls];
  track::write_link(block, pool.loose);
  pool.loose = block;
  if (++pool.loose_count == class_batch(cls)) {
    if (!push_batch(cls, pool.loose)) put_chain(pool.loose, cls);
    pool.loose = nullptr;
    pool.loose_count = 0;
  }
}

void* SlabPool::take_loose(std::uint32_t cls, std::uint32_t* count) noexcept {
  ClassPool& pool = classes_[cls];
  void* chain = pool.loose;
  *count = pool.loose_count;
  pool.loose = nullptr;
  pool.loose_count = 0;
  return chain;
}

bool SlabPool::is_valid() const noexcept {
  for (std::uint32_t c = 0; c < kNumClasses; ++c) {
    const ClassPool& pool = classes_[c];
    std::uint64_t available = 0;
    for (const SlabMeta* s = pool.partial; s != nullptr; s = s->next) {
      if (s->cls != c || s->owner != owner_ || !s->in_partial || s->available() == 0) return false;
      if (s->in_use + s->available() != s->capacity) return false;
      std::uint32_t listed = 0;
      for (void* b = s->free_list; b != nullptr; b = track::read_link(b)) ++listed;
      if (listed != s->free_count) return false;
      available += s->available();
    }
    if (available != pool.free_blocks) return false;
  }
  std::uint32_t empties = 0;
  for (const SlabMeta* s = empty_; s != nullptr; s = s->next) ++empties;
  return empties == empty_count_;
}

std::size_t Shard::collect(EpochDomain& epochs, bool advance, std::size_t budget,
                           RetireNode*& spent_nodes) noexcept {
  backlog.take(deferred);
  if (advance) epochs.try_advance();
  return collect(DeferredBacklog::Batch{}, epochs, budget, spent_nodes);
}

std::size_t Shard::collect(const DeferredBacklog::Batch& taken, EpochDomain& epochs, std::size_t budget,
                           RetireNode*& spent_nodes) noexcept {
  backlog.append(taken);
  // Reclaimed blocks gather per class into whole batches for the transfer cache, so that
  // a refill later takes them in O(1) instead of walking slab free lists of cold blocks.
  return backlog.reclaim(epochs.min_observed(), budget, spent_nodes, [this](void* block, bool retired) {
    SlabMeta& slab = pool.space().meta_of(block);
    SYDRA_CHECK(slab.owner == id(),
                "wrong owner: deferred block %p reached shard %u but its slab belongs to %u", block, id(),
                slab.owner);
    const std::uint32_t cls = slab.cls;
    if (retired) track::on_free(block, class_to_size(cls));  // readers are gone: poison now
    ++pool.class_pool(cls).reclaimed;
    pool.push_loose(cls, block);
  });
}

}  // namespace sydra::alloc
