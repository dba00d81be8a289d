// The memtable: the points not yet in segments, per series, readable by concurrent queries
// without locks.
//
// Shape
//   A Memtable is one generation. It maps a series id to a Series node through an
//   open-addressing table of atomic pointers (the id is already an XXH3 hash, so its low
//   bits are the slot). A Series holds its canonical key and a singly linked list of
//   append-only chunks: a 16-byte header and 15 points, 256 bytes, the allocator's largest
//   small class, so chunks come from the writing thread's shard.
//
// What is guaranteed
//   - Readers (read, for_each_series, contains) take no lock and never block writers. They
//     must run inside an epoch section of the allocator (EpochGuard, or a QSBR-online thread
//     between quiescent points): every node, chunk and table they can reach was unlinked
//     before it was retired, and retired memory is freed only after every section that
//     could see it has ended. Nothing reachable is ever freed directly.
//   - A reader sees, per series, a prefix of the appends in append order: a chunk's points
//     are written before its count is stored (release), a chunk is fully initialised before
//     it is linked (release), a series node before it is put in a slot (release), a table
//     before it is published (release). Readers load each with acquire.
//   - Writers to one series serialise on the series' spin lock (held for one append call,
//     i.e. one run of a request's points). Writers to different series run in parallel.
//   - Creating a series (rare) serialises on a mutex: probe again, insert, and when the table
//     is half full, copy it to one twice the size, publish it and retire the old array.
//
// Who may call what
//   append: any thread, concurrently with readers and other writers.
//   for_each_sorted, retire_all, the destructor: only when no writer can reach this
//   generation any more (the engine swaps generations under an exclusive lock first).
//   retire_all may run while readers are still inside: it only unlinks and retires.
//
// Accounting: bytes() counts the memory the generation holds (table, nodes, keys, chunks),
// as the allocator rounds it; points() counts appended points (duplicates included).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <span>
#include <string_view>
#include <vector>

#include "alloc/small_pool_allocator.hpp"
#include "server/storage/types.hpp"

namespace sydra::storage {

class Memtable {
 public:
  // Points per chunk: a 16-byte header + 15 points = 256 bytes (the largest small class).
  static constexpr std::uint32_t kChunkPoints = 15;

  explicit Memtable(alloc::SmallPoolAllocator& allocator);
  // Frees everything at once: no reader or writer may be left.
  ~Memtable();
  Memtable(const Memtable&) = delete;
  Memtable& operator=(const Memtable&) = delete;

  // Appends `points` (any order) to the series `id`, creating it with `key` (its canonical
  // key) when new. Returns true when this call created the series in this generation.
  // Throws std::bad_alloc when the allocator is out of memory (what was appended stays).
  bool append(SeriesId id, std::string_view key, std::span<const Point> points);

  // ---- readers: inside an epoch section --------------------------------------------------
  // Appends the points of `id` with start <= ts <= end to `out`, in append order.
  void read(SeriesId id, Timestamp start, Timestamp end, std::vector<Point>& out) const;
  bool contains(SeriesId id) const noexcept;
  // Calls fn(id, canonical key) for every series (in no particular order).
  void for_each_series(const std::function<void(SeriesId, std::string_view)>& fn) const;

  // ---- flush: no writers -------------------------------------------------------------------
  // Calls fn(id, key, points) for every series in ascending id order (the order a segment
  // is written in), points sorted by ts with equal timestamps resolved to the last appended
  // one. One series at a time: `points` and `key` are valid during the call only, and the
  // vector is reused for the next series.
  void for_each_sorted(const std::function<void(SeriesId, std::string_view, std::vector<Point>&)>& fn) const;
  // Empties the generation: publishes a fresh table and retires every node, chunk and the
  // old table. Readers still inside keep seeing the old contents until they leave.
  void retire_all();

  std::uint64_t bytes() const noexcept { return sum(&Stripe::bytes); }
  std::uint64_t points() const noexcept { return sum(&Stripe::points); }
  std::uint64_t series() const noexcept { return series_.load(std::memory_order_relaxed); }
  bool empty() const noexcept { return points() == 0; }

 private:
  struct Chunk;
  struct Series;
  struct Table;

  Series* find(SeriesId id) const noexcept;
  Series* create(SeriesId id, std::string_view key, bool& created);
  Table* make_table(std::uint64_t capacity);
  Chunk* make_chunk();
  void lock(Series& s) noexcept;
  static void unlock(Series& s) noexcept;
  // Frees (retire = false) or retires (true) everything reachable from `table`, and it.
  void release(Table* table, bool retire) noexcept;

  // The byte and point counters are striped: a thread always adds to the same stripe, each
  // on its own cache line, so appends on different workers do not bounce one line (nor the
  // line of table_, which every lookup reads). Readers sum the stripes; one stripe may go
  // negative (a thread that only frees), the sum does not.
  static constexpr std::size_t kStripes = 8;
  struct alignas(64) Stripe {
    std::atomic<std::int64_t> bytes{0};
    std::atomic<std::int64_t> points{0};
  };
  static Stripe& stripe_of_thread(Stripe* stripes) noexcept;
  Stripe& stripe() noexcept { return stripe_of_thread(stripes_); }
  std::uint64_t sum(std::atomic<std::int64_t> Stripe::*field) const noexcept {
    std::int64_t total = 0;
    for (const Stripe& s : stripes_) total += (s.*field).load(std::memory_order_relaxed);
    return total < 0 ? 0 : static_cast<std::uint64_t>(total);
  }

  alloc::SmallPoolAllocator& allocator_;
  alignas(64) std::atomic<Table*> table_;
  std::mutex create_mutex_;  // series creation and table growth
  std::atomic<std::uint64_t> series_{0};
  Stripe stripes_[kStripes];
};

}  // namespace sydra::storage
