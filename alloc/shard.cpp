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

// ---- SlabPool ---------------------------------------------------------------------------

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
  ++slabs_acquired_;
  ClassPool& pool = classes_[cls];
  ++pool.slabs;
  pool.free_blocks += slab->capacity;
  link_partial(pool, *slab);
  return slab;
}

std::uint32_t SlabPool::take(std::uint32_t cls, std::uint32_t n, void** out) noexcept {
  ClassPool& pool = classes_[cls];
  const std::uint32_t size = class_to_size(cls);
  std::uint32_t got = 0;
  while (got < n) {
    SlabMeta* slab = pool.partial;
    if (slab == nullptr && (slab = new_slab(cls)) == nullptr) break;
    const std::uint32_t before = got;
    while (got < n && slab->free_list != nullptr) {
      void* block = slab->free_list;
      slab->free_list = track::read_link(block);
      --slab->free_count;
      out[got++] = block;
    }
    if (got < n && slab->carved < slab->capacity) {
      char* next = space_.slab_start(*slab) + static_cast<std::size_t>(slab->carved) * size;
      std::uint32_t carve = slab->capacity - slab->carved;
      if (carve > n - got) carve = n - got;
      slab->carved += carve;
      for (std::uint32_t i = 0; i < carve; ++i, next += size) {
#if SYDRA_ALLOC_DEBUG
        track::unpoison(next, size);
        track::on_free(next, size);  // carved blocks are filled like freed ones
#endif
        out[got++] = next;
      }
    }
    slab->in_use += got - before;
    if (slab->available() == 0) unlink_partial(pool, *slab);
  }
  pool.free_blocks -= got;
  pool.blocks_out += got;
  if (pool.blocks_out > pool.high_water) pool.high_water = pool.blocks_out;
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

void SlabPool::put_array(void* const* blocks, std::uint32_t n, std::uint32_t cls) noexcept {
  // Blocks of other pools (ForeignFrees::cache_locally only) leave in runs of one owner.
  void* run[kMagazineCapacity];
  std::uint32_t run_n = 0;
  std::uint32_t run_owner = 0;
  for (std::uint32_t i = 0; i < n; ++i) {
    SlabMeta& slab = space_.meta_of(blocks[i]);
    SYDRA_ASSERT(slab.cls == cls, "block %p of class %u put back as class %u", blocks[i], slab.cls, cls);
    if (SYDRA_UNLIKELY(slab.owner != owner_ && sink_ != nullptr)) {
      if (run_n != 0 && (slab.owner != run_owner || run_n == class_batch(cls))) {
        sink_(sink_context_, run, run_n, run_owner, cls);
        run_n = 0;
      }
      run_owner = slab.owner;
      run[run_n++] = blocks[i];
      continue;
    }
    put(blocks[i], slab);
  }
  if (run_n != 0) sink_(sink_context_, run, run_n, run_owner, cls);
}

std::uint32_t SlabPool::trim_empty_slabs() noexcept {
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

// ---- Shard: depots ----------------------------------------------------------------------

Shard::~Shard() {
  for (std::uint32_t c = 0; c < kNumClasses; ++c) {
    ClassDepot& d = depots_[c];
    while (d.count > 0) {
      Magazine* m = d.full[--d.count];
      pool.put_array(m->blocks, m->count, c);
    }
    if (d.loose != nullptr) pool.put_array(d.loose->blocks, d.loose->count, c);
  }
}

Magazine* Shard::depot_pop(std::uint32_t cls) noexcept {
  ClassDepot& d = depots_[cls];
  if (d.count > 0) {
    Magazine* m = d.full[--d.count];
    if (d.count < d.low_water) d.low_water = d.count;
    return m;
  }
  Magazine* m = d.loose;  // reclaimed single blocks: reused now rather than when 128 have gathered
  d.loose = nullptr;
  return m;
}

bool Shard::depot_push(std::uint32_t cls, Magazine* m) noexcept {
  SYDRA_ASSERT(m->cls == cls && m->full(), "magazine of class %u with %u blocks pushed to depot %u", m->cls,
               m->count, cls);
  ClassDepot& d = depots_[cls];
  if (d.count < kDepotMagazines) {
    d.full[d.count++] = m;
    return true;
  }
  pool.put_array(m->blocks, m->count, cls);
  put_empty(m);
  return false;
}

void Shard::depot_add(std::uint32_t cls, void* const* blocks, std::uint32_t n) noexcept {
  ClassDepot& d = depots_[cls];
  const std::uint32_t capacity = class_batch(cls);
  while (n > 0) {
    if (d.loose == nullptr) {
      d.loose = take_empty();
      d.loose->cls = cls;
    }
    Magazine* m = d.loose;
    std::uint32_t room = capacity - m->count;
    const std::uint32_t k = n < room ? n : room;
    for (std::uint32_t i = 0; i < k; ++i) m->blocks[m->count + i] = blocks[i];
    m->count += k;
    blocks += k;
    n -= k;
    if (m->count == capacity) {
      d.loose = nullptr;
      depot_push(cls, m);
    }
  }
}

std::uint64_t Shard::depot_blocks(std::uint32_t cls) const noexcept {
  const ClassDepot& d = depots_[cls];
  return std::uint64_t{d.count} * class_batch(cls) + (d.loose != nullptr ? d.loose->count : 0);
}

Magazine* Shard::take_empty() noexcept {
  Magazine* m = empties_.pop();
  if (m == nullptr) m = magazines_.take();
  m->count = 0;
  return m;
}

void Shard::put_empty(Magazine* m) noexcept {
  m->count = 0;
  if (empties_.size < kKeptEmpties) {
    empties_.push(m);
  } else {
    magazines_.give(m);
  }
}

// ---- Shard: reclamation -----------------------------------------------------------------

std::size_t Shard::reclaim_node(void* node, NodeKind kind) noexcept {
  if (kind == NodeKind::kMagazineNode) {
    Magazine* m = static_cast<Magazine*>(node);
    const std::uint32_t cls = m->cls;
    const std::uint32_t n = m->count;
#if SYDRA_ALLOC_DEBUG
    for (std::uint32_t i = 0; i < n; ++i) {
      const SlabMeta& slab = pool.space().meta_of(m->blocks[i]);
      SYDRA_CHECK(slab.owner == id() && slab.cls == cls,
                  "wrong owner: deferred block %p (class %u) reached shard %u but its slab belongs to %u",
                  m->blocks[i], slab.cls, id(), slab.owner);
    }
#endif
    pool.class_pool(cls).reclaimed += n;
    if (n == class_batch(cls)) {
      depot_push(cls, m);
    } else {
      depot_add(cls, m->blocks, n);
      put_empty(m);
    }
    return n;
  }
  // One block: a retired one (still unpoisoned: readers may have read it until now) or one
  // freed by an exiting thread.
  SlabMeta& slab = pool.space().meta_of(node);
  SYDRA_CHECK(slab.owner == id(),
              "wrong owner: deferred block %p reached shard %u but its slab belongs to %u", node, id(),
              slab.owner);
  const std::uint32_t cls = slab.cls;
  if (kind == NodeKind::kRetireNode) track::on_free(node, class_to_size(cls));
  ++pool.class_pool(cls).reclaimed;
  depot_add(cls, &node, 1);
  return 1;
}

std::size_t Shard::collect(std::uint64_t safe_epoch, std::size_t budget, RetireNode*& spent_nodes) noexcept {
  std::size_t blocks = 0;
  for (std::uint32_t c = 0; c < kNumClasses && budget > 0; ++c) {
    ClassDeferred& d = deferred_[c];
    d.backlog.take(d.queue);
    std::size_t nodes = 0;
    blocks += d.backlog.reclaim(safe_epoch, budget, spent_nodes, [&](void* node, NodeKind kind) {
      ++nodes;
      return reclaim_node(node, kind);
    });
    budget -= nodes;
  }
  return blocks;
}

std::size_t Shard::collect(Taken& taken, std::uint64_t safe_epoch, std::size_t budget,
                           RetireNode*& spent_nodes) noexcept {
  for (std::uint32_t c = 0; c < kNumClasses; ++c) {
    deferred_[c].backlog.append(taken[c]);
    taken[c] = {};
  }
  return collect(safe_epoch, budget, spent_nodes);
}

std::size_t Shard::collect_class(std::uint32_t cls, std::uint64_t safe_epoch, std::size_t budget,
                                 RetireNode*& spent_nodes) noexcept {
  ClassDeferred& d = deferred_[cls];
  d.backlog.take(d.queue);
  return d.backlog.reclaim(safe_epoch, budget, spent_nodes,
                           [this](void* node, NodeKind kind) { return reclaim_node(node, kind); });
}

std::uint32_t Shard::trim(std::uint64_t now_ns, std::uint64_t interval_ns) noexcept {
  if (now_ns - trim_window_start_ns_ < interval_ns) return 0;
  trim_window_start_ns_ = now_ns;
  for (std::uint32_t c = 0; c < kNumClasses; ++c) {
    ClassDepot& d = depots_[c];
    // The oldest magazines (bottom of the stack) are the ones that stayed unused.
    const std::uint32_t unused = d.low_water < d.count ? d.low_water : d.count;
    for (std::uint32_t i = 0; i < unused; ++i) {
      pool.put_array(d.full[i]->blocks, d.full[i]->count, c);
      put_empty(d.full[i]);
    }
    for (std::uint32_t i = unused; i < d.count; ++i) d.full[i - unused] = d.full[i];
    d.count -= unused;
    d.low_water = d.count;
    if (Magazine* m = d.loose) {
      d.loose = nullptr;
      pool.put_array(m->blocks, m->count, c);
      put_empty(m);
    }
  }
  const std::uint32_t released = pool.trim_empty_slabs();
  // Empties beyond what one refill and one flush per class need go back to the pool.
  while (empties_.size > kKeptEmpties / 2) magazines_.give(empties_.pop());
  return released;
}

bool Shard::depots_valid() const noexcept {
  for (std::uint32_t c = 0; c < kNumClasses; ++c) {
    const ClassDepot& d = depots_[c];
    for (std::uint32_t k = 0; k < d.count; ++k) {
      const Magazine* m = d.full[k];
      if (m->cls != c || !m->full()) return false;
      for (std::uint32_t i = 0; i < m->count; ++i) {
        const SlabMeta& slab = pool.space().meta_of(m->blocks[i]);
        if (!pool.space().contains(m->blocks[i]) || slab.cls != c) return false;
        if (slab.owner != id_ && !pool.takes_foreign()) return false;
      }
    }
    if (d.count > kDepotMagazines) return false;
    if (d.loose != nullptr && (d.loose->cls != c || d.loose->count >= class_batch(c))) return false;
  }
  return true;
}

}  // namespace sydra::alloc
