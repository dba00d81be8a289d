#include "epoch.hpp"

#include <new>

#include "platform.hpp"

namespace sydra::alloc {

struct EpochDomain::Chunk {
  static constexpr std::size_t kBytes = 64 * 1024;
  static constexpr std::size_t kRecords = (kBytes - 64) / sizeof(Record);
  Chunk* next;
  std::atomic<std::size_t> used{0};
  alignas(64) Record records[1];  // kRecords in the mapping
};

EpochDomain::EpochDomain() noexcept = default;

EpochDomain::~EpochDomain() {
  Chunk* c = chunks_.load(std::memory_order_relaxed);
  while (c != nullptr) {
    Chunk* next = c->next;
    platform::unmap_pages(c, Chunk::kBytes);
    c = next;
  }
}

EpochDomain::Record* EpochDomain::acquire_record() noexcept {
  // Reuse a record released by an exited thread.
  for (Record* r = head_.load(std::memory_order_acquire); r != nullptr;
       r = r->next.load(std::memory_order_acquire)) {
    bool expected = false;
    if (!r->claimed.load(std::memory_order_relaxed) &&
        r->claimed.compare_exchange_strong(expected, true, std::memory_order_acquire)) {
      r->depth = 0;
      r->qsbr_online = false;
      return r;
    }
  }
  // Carve a new one.
  Record* fresh = nullptr;
  for (;;) {
    Chunk* chunk = chunks_.load(std::memory_order_acquire);
    if (chunk != nullptr) {
      std::size_t i = chunk->used.fetch_add(1, std::memory_order_relaxed);
      if (i < Chunk::kRecords) {
        fresh = new (&chunk->records[i]) Record{};
        break;
      }
    }
    void* pages = platform::map_pages(Chunk::kBytes);
    if (pages == nullptr) fatal("out of memory for epoch records");
    auto* next_chunk = new (pages) Chunk{};
    next_chunk->next = chunk;
    if (!chunks_.compare_exchange_strong(chunk, next_chunk, std::memory_order_acq_rel))
      platform::unmap_pages(pages, Chunk::kBytes);  // someone else added one; retry with it
  }
  fresh->claimed.store(true, std::memory_order_relaxed);
  Record* head = head_.load(std::memory_order_relaxed);
  do {
    fresh->next.store(head, std::memory_order_relaxed);
  } while (!head_.compare_exchange_weak(head, fresh, std::memory_order_release, std::memory_order_relaxed));
  return fresh;
}

void EpochDomain::release_record(Record* record) noexcept {
  if (record == nullptr) return;
  record->depth = 0;
  record->qsbr_online = false;
  record->state.store(0, std::memory_order_release);
  record->claimed.store(false, std::memory_order_release);
}

void EpochDomain::publish(Record& r, std::uint64_t epoch) noexcept {
  // seq_cst: the store must be visible before this thread's following loads of shared
  // structure (store-load order), which only a full barrier gives.
  r.state.store((epoch << 1) | 1u, std::memory_order_seq_cst);
}

void EpochDomain::enter(Record& r) noexcept {
  if (r.depth++ == 0 && !r.qsbr_online) publish(r, current());
}

void EpochDomain::leave(Record& r) noexcept {
  SYDRA_CHECK(r.depth > 0, "leave_epoch() without enter_epoch()");
  if (--r.depth == 0 && !r.qsbr_online) r.state.store(0, std::memory_order_release);
}

void EpochDomain::online(Record& r) noexcept {
  r.qsbr_online = true;
  publish(r, current());
}

void EpochDomain::offline(Record& r) noexcept {
  r.qsbr_online = false;
  if (r.depth == 0) r.state.store(0, std::memory_order_release);
}

void EpochDomain::quiescent(Record& r) noexcept {
  // Inside an explicit section the thread may still hold references: not quiescent.
  if (r.qsbr_online && r.depth == 0) publish(r, current());
}

std::uint64_t EpochDomain::min_observed(std::uint32_t shard) const noexcept {
  std::atomic_thread_fence(std::memory_order_seq_cst);
  std::uint64_t min = current();
  for (Record* r = head_.load(std::memory_order_acquire); r != nullptr;
       r = r->next.load(std::memory_order_acquire)) {
    std::uint64_t s = r->state.load(std::memory_order_seq_cst);
    if ((s & 1u) == 0) continue;
    if (shard != kAllShards && r->shard.load(std::memory_order_relaxed) != shard) continue;
    std::uint64_t observed = s >> 1;
    if (observed < min) min = observed;
  }
  return min;
}

bool EpochDomain::try_advance() noexcept {
  std::uint64_t e = current();
  if (min_observed() < e) return false;  // someone in a section has not seen e yet
  if (global_.compare_exchange_strong(e, e + 1, std::memory_order_seq_cst)) {
    advances_.fetch_add(1, std::memory_order_relaxed);
    return true;
  }
  return false;
}

bool EpochDomain::try_advance_bounded(std::size_t budget) noexcept {
  if (scan_busy_.exchange(true, std::memory_order_acquire)) return false;  // another thread scans
  std::uint64_t e = current();
  if (scan_epoch_ != e) {
    // A new scan: every record must be seen to have observed e (or to be inactive).
    // Records pushed at the head after this point are not read: a thread whose record is
    // that new publishes an epoch it reads after now, which is at least e — or it is a
    // late publisher of an older epoch, which the full scan cannot see either (see the
    // essay at the top of epoch.hpp: its later loads see every unlink made before this
    // scan began).
    std::atomic_thread_fence(std::memory_order_seq_cst);
    scan_epoch_ = e;
    scan_next_ = head_.load(std::memory_order_acquire);
  }
  Record* r = scan_next_;
  for (; r != nullptr && budget > 0; --budget) {
    const std::uint64_t s = r->state.load(std::memory_order_seq_cst);
    if ((s & 1u) != 0 && (s >> 1) < e) break;  // still behind: read it again next time
    r = r->next.load(std::memory_order_acquire);
  }
  scan_next_ = r;
  bool moved = false;
  if (r == nullptr) {
    scan_epoch_ = 0;  // the next call starts a new scan
    if (global_.compare_exchange_strong(e, e + 1, std::memory_order_seq_cst)) {
      advances_.fetch_add(1, std::memory_order_relaxed);
      moved = true;
    }
  }
  scan_busy_.store(false, std::memory_order_release);
  return moved;
}

std::uint64_t EpochDomain::records_claimed() const noexcept {
  std::uint64_t n = 0;
  for (Record* r = head_.load(std::memory_order_acquire); r != nullptr;
       r = r->next.load(std::memory_order_acquire))
    n += r->claimed.load(std::memory_order_relaxed) ? 1 : 0;
  return n;
}

std::uint64_t EpochDomain::records_active() const noexcept {
  std::uint64_t n = 0;
  for (Record* r = head_.load(std::memory_order_acquire); r != nullptr;
       r = r->next.load(std::memory_order_acquire))
    n += (r->state.load(std::memory_order_relaxed) & 1u) ? 1 : 0;
  return n;
}

}  // namespace sydra::alloc
