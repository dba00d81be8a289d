#include "server/storage/memtable.hpp"

#include <algorithm>
#include <cstring>
#include <new>
#include <thread>

#include "server/storage/merge.hpp"

namespace sydra::storage {

namespace {

constexpr std::uint64_t kInitialSlots = 64;  // power of two

std::uint64_t rounded(std::size_t bytes) noexcept {
  return (static_cast<std::uint64_t>(bytes) + 15) & ~std::uint64_t{15};
}

inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

}  // namespace

struct Memtable::Chunk {
  std::atomic<Chunk*> next{nullptr};    // written once (release), by the series' writer
  std::atomic<std::uint32_t> count{0};  // points[0, count) are written; stored with release
  std::uint32_t reserved = 0;
  Point points[kChunkPoints];  // written only at indexes >= count
};

struct Memtable::Series {
  SeriesId id;
  std::atomic<Chunk*> head{nullptr};
  Chunk* tail = nullptr;  // the writer's, under `locked`
  std::atomic<std::uint32_t> locked{0};
  std::uint32_t key_size = 0;
  // The canonical key follows the node in the same block.
  const char* key_data() const noexcept { return reinterpret_cast<const char*>(this + 1); }
  char* key_data() noexcept { return reinterpret_cast<char*>(this + 1); }
  std::string_view key() const noexcept { return {key_data(), key_size}; }
};

struct Memtable::Table {
  std::uint64_t capacity;         // power of two
  std::uint64_t used;             // under create_mutex_
  std::atomic<Series*> slots[1];  // `capacity` of them in the block

  static std::size_t bytes_for(std::uint64_t capacity) noexcept {
    return sizeof(Table) + (capacity - 1) * sizeof(std::atomic<Series*>);
  }
};

Memtable::Stripe& Memtable::stripe_of_thread(Stripe* stripes) noexcept {
  static std::atomic<unsigned> next_stripe{0};
  thread_local const unsigned mine = next_stripe.fetch_add(1, std::memory_order_relaxed) % kStripes;
  return stripes[mine];
}

Memtable::Memtable(alloc::SmallPoolAllocator& allocator) : allocator_(allocator) {
  table_.store(make_table(kInitialSlots), std::memory_order_release);
}

Memtable::~Memtable() {
  release(table_.load(std::memory_order_acquire), false);
}

Memtable::Table* Memtable::make_table(std::uint64_t capacity) {
  const std::size_t size = Table::bytes_for(capacity);
  void* block = allocator_.allocate(size, alignof(Table));
  if (block == nullptr) throw std::bad_alloc();
  auto* t = static_cast<Table*>(block);
  t->capacity = capacity;
  t->used = 0;
  for (std::uint64_t i = 0; i < capacity; ++i) new (&t->slots[i]) std::atomic<Series*>(nullptr);
  stripe().bytes.fetch_add(rounded(size), std::memory_order_relaxed);
  return t;
}

Memtable::Chunk* Memtable::make_chunk() {
  static_assert(sizeof(Chunk) == 256, "a chunk is the largest small size class");
  void* block = allocator_.allocate(sizeof(Chunk), alignof(Chunk));
  if (block == nullptr) throw std::bad_alloc();
  stripe().bytes.fetch_add(sizeof(Chunk), std::memory_order_relaxed);
  return new (block) Chunk{};
}

Memtable::Series* Memtable::find(SeriesId id) const noexcept {
  const Table* t = table_.load(std::memory_order_acquire);
  const std::uint64_t mask = t->capacity - 1;
  for (std::uint64_t i = id & mask;; i = (i + 1) & mask) {
    Series* s = t->slots[i].load(std::memory_order_acquire);
    if (s == nullptr) return nullptr;
    if (s->id == id) return s;
  }
}

Memtable::Series* Memtable::create(SeriesId id, std::string_view key, bool& created) {
  std::lock_guard<std::mutex> guard(create_mutex_);
  Table* t = table_.load(std::memory_order_relaxed);
  std::uint64_t mask = t->capacity - 1;
  std::uint64_t i = id & mask;
  for (;; i = (i + 1) & mask) {
    Series* s = t->slots[i].load(std::memory_order_relaxed);
    if (s == nullptr) break;
    if (s->id == id) return s;  // another writer created it meanwhile
  }

  const std::size_t node_bytes = sizeof(Series) + key.size();
  void* block = allocator_.allocate(node_bytes, alignof(Series));
  if (block == nullptr) throw std::bad_alloc();
  auto* node = new (block) Series{};
  node->id = id;
  node->key_size = static_cast<std::uint32_t>(key.size());
  if (!key.empty()) std::memcpy(node->key_data(), key.data(), key.size());
  stripe().bytes.fetch_add(rounded(node_bytes), std::memory_order_relaxed);

  // Keep the table at most half full: copy to twice the size, publish, retire the old one.
  // Readers that loaded the old table keep probing it (a frozen copy) until they leave.
  if ((t->used + 1) * 2 > t->capacity) {
    Table* grown = nullptr;
    try {
      grown = make_table(t->capacity * 2);
    } catch (...) {
      allocator_.deallocate(block, node_bytes);
      stripe().bytes.fetch_sub(rounded(node_bytes), std::memory_order_relaxed);
      throw;
    }
    const std::uint64_t gmask = grown->capacity - 1;
    for (std::uint64_t j = 0; j < t->capacity; ++j) {
      Series* s = t->slots[j].load(std::memory_order_relaxed);
      if (s == nullptr) continue;
      std::uint64_t k = s->id & gmask;
      while (grown->slots[k].load(std::memory_order_relaxed) != nullptr) k = (k + 1) & gmask;
      grown->slots[k].store(s, std::memory_order_relaxed);
    }
    grown->used = t->used;
    table_.store(grown, std::memory_order_release);
    stripe().bytes.fetch_sub(rounded(Table::bytes_for(t->capacity)), std::memory_order_relaxed);
    allocator_.retire(t);
    t = grown;
    mask = gmask;
    for (i = id & mask; t->slots[i].load(std::memory_order_relaxed) != nullptr; i = (i + 1) & mask) {
    }
  }
  t->slots[i].store(node, std::memory_order_release);
  ++t->used;
  series_.fetch_add(1, std::memory_order_relaxed);
  created = true;
  return node;
}

void Memtable::lock(Series& s) noexcept {
  for (unsigned spins = 0;;) {
    if (s.locked.exchange(1, std::memory_order_acquire) == 0) return;
    while (s.locked.load(std::memory_order_relaxed) != 0) {
      if (++spins < 64) {
        cpu_relax();
      } else {
        std::this_thread::yield();
      }
    }
  }
}

void Memtable::unlock(Series& s) noexcept {
  s.locked.store(0, std::memory_order_release);
}

bool Memtable::append(SeriesId id, std::string_view key, std::span<const Point> points) {
  bool created = false;
  Series* s = find(id);
  if (s == nullptr) s = create(id, key, created);
  if (points.empty()) return created;

  lock(*s);
  // Unlocks and counts what was appended, also when a chunk allocation throws.
  std::size_t done = 0;
  struct Finish {
    Series& s;
    std::atomic<std::int64_t>& points;
    const std::size_t& done;
    ~Finish() {
      unlock(s);
      points.fetch_add(static_cast<std::int64_t>(done), std::memory_order_relaxed);
    }
  } finish{*s, stripe().points, done};

  Chunk* c = s->tail;
  while (done < points.size()) {
    if (c == nullptr || c->count.load(std::memory_order_relaxed) == kChunkPoints) {
      Chunk* fresh = make_chunk();
      if (c == nullptr) {
        s->head.store(fresh, std::memory_order_release);
      } else {
        c->next.store(fresh, std::memory_order_release);
      }
      s->tail = c = fresh;
    }
    const std::uint32_t count = c->count.load(std::memory_order_relaxed);
    const std::size_t take = std::min<std::size_t>(kChunkPoints - count, points.size() - done);
    std::memcpy(&c->points[count], points.data() + done, take * sizeof(Point));
    c->count.store(count + static_cast<std::uint32_t>(take), std::memory_order_release);
    done += take;
  }
  return created;
}

void Memtable::read(SeriesId id, Timestamp start, Timestamp end, std::vector<Point>& out) const {
  const Series* s = find(id);
  if (s == nullptr) return;
  // `next` before `count`: the writer fills a chunk (count = kChunkPoints, release) before it
  // links the next one, so a chunk seen with a successor is read whole. Loading count first
  // could read it short, then follow a link made since, and return a prefix with a hole.
  const Chunk* c = s->head.load(std::memory_order_acquire);
  while (c != nullptr) {
    const Chunk* next = c->next.load(std::memory_order_acquire);
    const std::uint32_t count = c->count.load(std::memory_order_acquire);
    for (std::uint32_t i = 0; i < count; ++i) {
      const Point p = c->points[i];
      if (p.ts >= start && p.ts <= end) out.push_back(p);
    }
    c = next;
  }
}

bool Memtable::contains(SeriesId id) const noexcept {
  return find(id) != nullptr;
}

void Memtable::for_each_series(const std::function<void(SeriesId, std::string_view)>& fn) const {
  const Table* t = table_.load(std::memory_order_acquire);
  for (std::uint64_t i = 0; i < t->capacity; ++i)
    if (const Series* s = t->slots[i].load(std::memory_order_acquire)) fn(s->id, s->key());
}

void Memtable::for_each_sorted(
    const std::function<void(SeriesId, std::string_view, std::vector<Point>&)>& fn) const {
  const Table* t = table_.load(std::memory_order_acquire);
  std::vector<const Series*> order;
  order.reserve(series());
  for (std::uint64_t i = 0; i < t->capacity; ++i)
    if (const Series* s = t->slots[i].load(std::memory_order_acquire)) order.push_back(s);
  std::sort(order.begin(), order.end(), [](const Series* a, const Series* b) { return a->id < b->id; });
  std::vector<Point> points;
  for (const Series* s : order) {
    points.clear();
    for (const Chunk* c = s->head.load(std::memory_order_acquire); c != nullptr;
         c = c->next.load(std::memory_order_acquire)) {
      const std::uint32_t count = c->count.load(std::memory_order_acquire);
      points.insert(points.end(), c->points, c->points + count);
    }
    if (points.empty()) continue;
    sort_last_wins(points);  // appends in order: the last append of a ts wins
    fn(s->id, s->key(), points);
  }
}

void Memtable::retire_all() {
  Table* old = nullptr;
  {
    std::lock_guard<std::mutex> guard(create_mutex_);
    old = table_.load(std::memory_order_relaxed);
    Table* fresh = make_table(kInitialSlots);
    table_.store(fresh, std::memory_order_release);
    for (Stripe& st : stripes_) {
      st.bytes.store(0, std::memory_order_relaxed);
      st.points.store(0, std::memory_order_relaxed);
    }
    stripes_[0].bytes.store(static_cast<std::int64_t>(rounded(Table::bytes_for(kInitialSlots))),
                            std::memory_order_relaxed);
    series_.store(0, std::memory_order_relaxed);
  }
  release(old, true);
}

void Memtable::release(Table* table, bool retire) noexcept {
  if (table == nullptr) return;
  auto give_back = [&](void* p, std::size_t size) {
    if (retire) {
      allocator_.retire(p);
    } else {
      allocator_.deallocate(p, size);
    }
  };
  for (std::uint64_t i = 0; i < table->capacity; ++i) {
    Series* s = table->slots[i].load(std::memory_order_acquire);
    if (s == nullptr) continue;
    Chunk* c = s->head.load(std::memory_order_acquire);
    while (c != nullptr) {
      Chunk* next = c->next.load(std::memory_order_acquire);
      give_back(c, sizeof(Chunk));
      c = next;
    }
    give_back(s, sizeof(Series) + s->key_size);
  }
  give_back(table, Table::bytes_for(table->capacity));
}

}  // namespace sydra::storage
