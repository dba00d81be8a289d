// The ADR's workload: writers that allocate, keep a ring of live blocks and free the oldest
// (a share of them through another writer: the cross-thread free), readers that read
// published blocks inside epoch sections while writers retire them, and an optional churn
// phase with RSS and the deferred backlog sampled every second.
//
// What is measured, and what is not
//   - The timed region is exactly one allocator call (support/tsc_timer.hpp). Everything
//     else — choosing a size, touching the block, the handoff queue that carries
//     cross-thread frees, reader traffic, statistics — happens outside it.
//   - Writers keep `--live` blocks each in a ring: allocate a new block, write its first and
//     last byte, and free the oldest — locally, or (for --remote-free-percent of them) by
//     handing it through a bounded SPSC ring to another writer, which checks the bytes and
//     frees it there. That is the cross-shard free the sharded mode defers by epoch.
//   - Readers (--readers) sit inside EpochGuard sections and read every byte of blocks the
//     writers publish; writers replace published blocks and retire() the old ones. A reader
//     that sees a block change under it reports a mismatch (premature reclamation). In
//     system mode nothing can retire safely, so the published blocks stay fixed and the
//     readers just read them.
#include <barrier>
#include <cstring>

#include "bench_alloc.hpp"

namespace sydra::bench {
namespace {

struct WriterResult {
  LatencyHistogram alloc, free, retire;  // main phase
  PathTables paths;                      // main phase, with --paths
  LatencyHistogram stress_free;
  std::vector<LatencyHistogram> stress_alloc;  // per second of the stress phase
  PhaseCounters main, stress;
  std::uint64_t cleanup_frees = 0;  // published blocks freed at the end
  Clock::time_point start, end;     // main phase
};

struct ReaderResult {
  std::uint64_t reads = 0;
  std::uint64_t bytes = 0;
  std::uint64_t mismatches = 0;    // bytes 16.. changed: the block was reused too early
  std::uint64_t head_changes = 0;  // bytes 0..15 changed while the block could still be read
};

constexpr std::size_t kSlotsPerWriter = 16;  // published blocks per writer
constexpr std::uint64_t kPublishEvery = 64;  // a writer republishes one slot every 64 operations
constexpr std::uint32_t kReadBatch = 32;     // reads per epoch section

struct Shared {
  Shared(const Config& c, int participants)
      : cfg(c),
        writers(c.threads),
        barrier(participants),
        slots(kSlotsPerWriter * static_cast<std::size_t>(c.threads)) {
    if (writers > 1) {
      rings.resize(static_cast<std::size_t>(writers) * static_cast<std::size_t>(writers));
      for (int from = 0; from < writers; ++from) {
        for (int to = 0; to < writers; ++to) {
          if (from != to)
            rings[static_cast<std::size_t>(from * writers + to)] = std::make_unique<HandoffRing>();
        }
      }
    }
  }
  HandoffRing& ring(int from, int to) noexcept {
    return *rings[static_cast<std::size_t>(from * writers + to)];
  }

  const Config& cfg;
  const int writers;
  std::barrier<> barrier;  // writers + the main thread
  std::atomic<bool> stop_main{false};
  std::atomic<bool> stop_stress{false};
  std::atomic<bool> stop_readers{false};
  std::atomic<int> producers_done[2] = {0, 0};
  std::atomic<std::uint32_t> stress_second{0};
  std::vector<std::unique_ptr<HandoffRing>> rings;  // [from * writers + to]
  std::vector<std::atomic<void*>> slots;            // published blocks, read by readers
};

// A published block: 16 bytes of (seq & 0xff), the header {size, seq}, then (seq & 0xff)
// to the end. The first 16 bytes are checked on their own: they are where an intrusive
// deferred-free node would go, and a reader must not see them change either.
struct PublishedHeader {
  std::uint32_t size;
  std::uint32_t seq;
};
constexpr std::uint32_t kHeadBytes = 16;
constexpr std::uint32_t kMinPublished = kHeadBytes + sizeof(PublishedHeader) + 8;

void fill_published(void* p, std::uint32_t size, std::uint32_t seq) noexcept {
  auto* bytes = static_cast<unsigned char*>(p);
  std::memset(bytes, static_cast<int>(seq & 0xff), size);
  const PublishedHeader h{size, seq};
  std::memcpy(bytes + kHeadBytes, &h, sizeof h);
}

template <class Ops>
class Writer {
 public:
  Writer(Shared& shared, int index, Ops ops, WriterResult& out)
      : sh_(shared),
        cfg_(shared.cfg),
        index_(index),
        ops_(ops),
        out_(out),
        rng_(cfg_.seed * 0x100000001B3ull + static_cast<std::uint64_t>(index) + 1),
        sizes_(cfg_.sizes, cfg_.seed + static_cast<std::uint64_t>(index)),
        ring_(cfg_.live, Block{nullptr, 0, 0}),
        publish_(cfg_.readers > 0),
        timed_{&out.alloc, &out.free, cfg_.paths ? &out.paths : nullptr, {}} {}

  void run() {
    ops_.bind(static_cast<std::uint32_t>(index_) % static_cast<std::uint32_t>(cfg_.shard_count()));
    if (publish_) {
      for (std::size_t k = 0; k < kSlotsPerWriter; ++k) publish_one(k, out_.main, nullptr);
    }

    sh_.barrier.arrive_and_wait();  // start
    out_.start = Clock::now();
    main_phase();
    finish_phase(0, out_.main, out_.free);
    out_.end = Clock::now();
    sh_.barrier.arrive_and_wait();  // main phase done

    if (cfg_.stress_seconds > 0) {
      stress_phase();
      finish_phase(1, out_.stress, out_.stress_free);
      sh_.barrier.arrive_and_wait();  // stress done
    }

    sh_.barrier.arrive_and_wait();  // readers have stopped: published blocks can go
    if (publish_) {
      for (std::size_t k = 0; k < kSlotsPerWriter; ++k) {
        void* p = slot(k).exchange(nullptr, std::memory_order_acq_rel);
        if (p != nullptr) {
          ops_.deallocate(p);
          ++out_.cleanup_frees;
        }
      }
    }
  }

 private:
  std::atomic<void*>& slot(std::size_t k) noexcept {
    return sh_.slots[static_cast<std::size_t>(index_) * kSlotsPerWriter + k];
  }

  void main_phase() {
    const bool by_clock = cfg_.seconds > 0;
    std::size_t pos = 0;
    for (std::uint64_t i = 0;; ++i) {
      if (by_clock) {
        if ((i & 255) == 0 && sh_.stop_main.load(std::memory_order_relaxed)) break;
      } else if (i >= cfg_.ops) {
        break;
      }
      const std::uint32_t size = sizes_.at(rng_.next());
      void* p = timed_.allocate(ops_, size);
      if (p == nullptr) {
        ++out_.main.alloc_failures;
        continue;
      }
      ++out_.main.allocs;
      const Block fresh{p, size, static_cast<std::uint32_t>(i & 0xff)};
      touch(fresh);
      const Block old = ring_[pos];
      ring_[pos] = fresh;
      if (++pos == ring_.size()) pos = 0;
      if (old.p != nullptr) release(old, out_.main, out_.free);
      if ((i & 15) == 15) drain(out_.main, out_.free);
      if (publish_ && Ops::kPool && i % kPublishEvery == kPublishEvery - 1) {
        publish_one(next_slot_, out_.main, &out_.retire);
        next_slot_ = (next_slot_ + 1) % kSlotsPerWriter;
      }
    }
  }

  // Rounds of allocate-all / free-all. Allocation latency goes into the histogram of the
  // current second, which the main thread moves on.
  void stress_phase() {
    const std::size_t seconds = out_.stress_alloc.size();
    std::uint32_t tag = 0;
    while (!sh_.stop_stress.load(std::memory_order_relaxed)) {
      const std::size_t second =
          std::min<std::size_t>(sh_.stress_second.load(std::memory_order_relaxed), seconds - 1);
      LatencyHistogram& hist = out_.stress_alloc[second];
      for (auto& b : ring_) {
        const std::uint32_t size = sizes_.at(rng_.next());
        const std::uint64_t t0 = tsc_now();
        void* p = ops_.allocate(size);
        const std::uint64_t t1 = tsc_now();
        hist.record(elapsed_cycles(t0, t1));
        if (p == nullptr) {
          ++out_.stress.alloc_failures;
          b = Block{nullptr, 0, 0};
          continue;
        }
        ++out_.stress.allocs;
        b = Block{p, size, ++tag & 0xff};
        touch(b);
      }
      std::uint32_t k = 0;
      for (auto& b : ring_) {
        if (b.p != nullptr) release(b, out_.stress, out_.stress_free);
        b = Block{nullptr, 0, 0};
        if ((++k & 15) == 0) drain(out_.stress, out_.stress_free);
      }
      drain(out_.stress, out_.stress_free);
      ++out_.stress.rounds;
    }
  }

  // Frees what is left in the live ring, then keeps freeing what other writers hand over
  // until every writer has stopped producing for this phase and the incoming rings are empty.
  void finish_phase(int phase, PhaseCounters& c, LatencyHistogram& free_hist) {
    for (auto& b : ring_) {
      if (b.p != nullptr) free_local(b, c, free_hist);
      b = Block{nullptr, 0, 0};
    }
    sh_.producers_done[phase].fetch_add(1, std::memory_order_acq_rel);
    for (;;) {
      const bool all_done = sh_.producers_done[phase].load(std::memory_order_acquire) == sh_.writers;
      drain(c, free_hist);
      if (all_done) break;  // nothing can be pushed after the last producer finished
      std::this_thread::yield();
    }
  }

  static void touch(const Block& b) noexcept {
    auto* bytes = static_cast<unsigned char*>(b.p);
    bytes[0] = static_cast<unsigned char>(b.tag);
    bytes[b.size - 1] = static_cast<unsigned char>(b.tag);
  }
  static bool intact(const Block& b) noexcept {
    const auto* bytes = static_cast<const unsigned char*>(b.p);
    return bytes[0] == static_cast<unsigned char>(b.tag) &&
           bytes[b.size - 1] == static_cast<unsigned char>(b.tag);
  }

  // With probability remote-free-percent the block goes to another writer, else it is freed
  // here. A full ring is back-pressure (the consumer is descheduled on a busy machine): the
  // producer frees what it was handed meanwhile and yields until there is room, so the
  // share of cross-thread frees stays what was asked for. Nobody can wait on a cycle: every
  // waiting writer keeps draining its own incoming rings.
  void release(const Block& b, PhaseCounters& c, LatencyHistogram& free_hist) {
    if (sh_.writers > 1 && rng_.below(100) < static_cast<std::uint32_t>(cfg_.remote_free_percent)) {
      int to = static_cast<int>(rng_.below(static_cast<std::uint32_t>(sh_.writers - 1)));
      if (to >= index_) ++to;
      HandoffRing& ring = sh_.ring(index_, to);
      if (!ring.push(b)) {
        ++c.handoff_full;
        do {
          drain(c, free_hist);
          std::this_thread::yield();
        } while (!ring.push(b));
      }
      ++c.handed;
      return;
    }
    free_local(b, c, free_hist);
  }

  void free_local(const Block& b, PhaseCounters& c, LatencyHistogram& free_hist) {
    if (!intact(b)) ++c.corrupt_blocks;
    if (&free_hist == &out_.free) {
      timed_.deallocate(ops_, b.p);  // the main phase: attributed to its path with --paths
    } else {
      const std::uint64_t t0 = tsc_now();
      ops_.deallocate(b.p);
      const std::uint64_t t1 = tsc_now();
      free_hist.record(elapsed_cycles(t0, t1));
    }
    ++c.frees;
  }

  void drain(PhaseCounters& c, LatencyHistogram& free_hist) {
    for (int from = 0; from < sh_.writers; ++from) {
      if (from == index_) continue;
      HandoffRing& ring = sh_.ring(from, index_);
      Block b;
      while (ring.pop(b)) {
        free_local(b, c, free_hist);
        ++c.received;
      }
    }
  }

  // Replaces published slot k with a fresh block; the old one is retired (pool modes only:
  // readers may still be reading it).
  void publish_one(std::size_t k, PhaseCounters& c, LatencyHistogram* retire_hist) {
    const std::uint32_t size = std::clamp<std::uint32_t>(sizes_.at(rng_.next()), kMinPublished, 256);
    const std::uint64_t t0 = tsc_now();
    void* p = ops_.allocate(size);
    const std::uint64_t t1 = tsc_now();
    if (retire_hist != nullptr) out_.alloc.record(elapsed_cycles(t0, t1));
    if (p == nullptr) {
      ++c.alloc_failures;
      return;
    }
    ++c.allocs;
    fill_published(p, size, ++publish_seq_);
    void* old = slot(k).exchange(p, std::memory_order_acq_rel);
    if (old == nullptr) return;
    const std::uint64_t r0 = tsc_now();
    ops_.retire(old);
    const std::uint64_t r1 = tsc_now();
    if (retire_hist != nullptr) retire_hist->record(elapsed_cycles(r0, r1));
    ++c.retires;
  }

  Shared& sh_;
  const Config& cfg_;
  const int index_;
  const Ops ops_;
  WriterResult& out_;
  Rng rng_;
  SizeTable sizes_;
  std::vector<Block> ring_;
  const bool publish_;
  TimedCalls timed_;
  std::size_t next_slot_ = 0;
  std::uint32_t publish_seq_ = 0;
};

// Reads every byte of kReadBatch published blocks inside one epoch section, then reads them
// all again before leaving it, as a query that holds references while it works would. Every
// byte of a block the reader reached must stay as published until the section ends.
template <class Ops>
void reader_main(Shared& sh, Ops ops, int index, ReaderResult& out) {
  const std::size_t n = sh.slots.size();
  std::size_t next = static_cast<std::size_t>(index) * 7 % n;
  std::uint64_t sum = 0;
  const unsigned char* held[kReadBatch];
  PublishedHeader held_header[kReadBatch];
  auto verify = [&](const unsigned char* bytes, const PublishedHeader& h) {
    PublishedHeader now;
    std::memcpy(&now, bytes + kHeadBytes, sizeof now);
    const auto expect = static_cast<unsigned char>(h.seq & 0xff);
    bool ok = now.size == h.size && now.seq == h.seq;
    for (std::uint32_t i = kHeadBytes + sizeof h; i < h.size; ++i) {
      sum += bytes[i];
      ok &= bytes[i] == expect;
    }
    bool head_ok = true;
    for (std::uint32_t i = 0; i < kHeadBytes; ++i) head_ok &= bytes[i] == expect;
    out.bytes += h.size;
    if (!ok) ++out.mismatches;
    if (!head_ok) ++out.head_changes;
    return ok && head_ok;
  };
  auto read_batch = [&] {
    std::uint32_t m = 0;
    for (std::uint32_t j = 0; j < kReadBatch; ++j) {
      const void* p = sh.slots[next].load(std::memory_order_acquire);
      if (++next == n) next = 0;
      if (p == nullptr) continue;
      const auto* bytes = static_cast<const unsigned char*>(p);
      PublishedHeader h;
      std::memcpy(&h, bytes + kHeadBytes, sizeof h);
      ++out.reads;
      if (h.size < kMinPublished || h.size > 256) {
        ++out.mismatches;
        continue;
      }
      if (verify(bytes, h)) {
        held[m] = bytes;
        held_header[m] = h;
        ++m;
      }
    }
    for (std::uint32_t k = 0; k < m; ++k) verify(held[k], held_header[k]);
  };
  while (!sh.stop_readers.load(std::memory_order_relaxed)) {
    if constexpr (Ops::kPool) {
      SmallPoolAllocator::EpochGuard guard(*ops.a);
      read_batch();
    } else {
      read_batch();
    }
  }
  asm volatile("" : : "r"(sum));
}

}  // namespace

template <class Ops>
void run_adr(const Config& cfg, Ops ops, const Timer& timer, RunResult& r) {
  const int writers = cfg.threads;
  Shared sh(cfg, writers + 1);
  std::vector<std::unique_ptr<WriterResult>> wres;
  for (int i = 0; i < writers; ++i) {
    wres.push_back(std::make_unique<WriterResult>());
    wres.back()->stress_alloc.resize(static_cast<std::size_t>(cfg.stress_seconds) + 1);
  }
  std::vector<ReaderResult> rres(static_cast<std::size_t>(cfg.readers));
  Harness<Ops> harness(ops, r);
  const RssReader& rss = harness.rss();

  std::vector<std::thread> threads;
  for (int i = 0; i < writers; ++i) {
    threads.emplace_back([&, i] { Writer<Ops>(sh, i, ops, *wres[static_cast<std::size_t>(i)]).run(); });
  }
  std::vector<std::thread> readers;
  for (int i = 0; i < cfg.readers; ++i) {
    readers.emplace_back([&, i] { reader_main(sh, ops, i, rres[static_cast<std::size_t>(i)]); });
  }

  sh.barrier.arrive_and_wait();  // start
  if (cfg.seconds > 0) {
    std::this_thread::sleep_for(std::chrono::duration<double>(cfg.seconds));
    sh.stop_main.store(true, std::memory_order_relaxed);
  }
  sh.barrier.arrive_and_wait();  // main phase done

  if (cfg.stress_seconds > 0) {
    const auto t0 = Clock::now();
    for (int s = 1; s <= cfg.stress_seconds; ++s) {
      std::this_thread::sleep_until(t0 + std::chrono::seconds(s));
      sh.stress_second.store(static_cast<std::uint32_t>(s), std::memory_order_relaxed);
      StressSample sample;
      sample.second = s;
      sample.rss_bytes = rss.bytes();
      if constexpr (Ops::kPool) sample.deferred_backlog = deferred_backlog(ops.a->snapshot());
      r.stress_samples.push_back(sample);
    }
    sh.stop_stress.store(true, std::memory_order_relaxed);
    sh.barrier.arrive_and_wait();  // stress done
  }

  sh.stop_readers.store(true, std::memory_order_relaxed);
  for (auto& t : readers) t.join();
  sh.barrier.arrive_and_wait();  // writers free their published blocks and exit
  for (auto& t : threads) t.join();

  harness.finish();

  // Merge.
  LatencyHistogram alloc_h, free_h, retire_h, stress_free_h;
  std::vector<LatencyHistogram> stress_alloc(static_cast<std::size_t>(cfg.stress_seconds) + 1);
  Clock::time_point start = Clock::time_point::max(), end = Clock::time_point::min();
  for (const auto& w : wres) {
    alloc_h.merge(w->alloc);
    free_h.merge(w->free);
    retire_h.merge(w->retire);
    stress_free_h.merge(w->stress_free);
    r.paths.merge(w->paths);
    for (std::size_t s = 0; s < stress_alloc.size(); ++s) stress_alloc[s].merge(w->stress_alloc[s]);
    r.main += w->main;
    r.stress += w->stress;
    r.cleanup_frees += w->cleanup_frees;
    start = std::min(start, w->start);
    end = std::max(end, w->end);
  }
  for (const auto& rr : rres) {
    r.reads += rr.reads;
    r.read_bytes += rr.bytes;
    r.read_mismatches += rr.mismatches;
    r.read_head_changes += rr.head_changes;
  }
  r.elapsed_s = std::chrono::duration<double>(end - start).count();
  r.alloc = percentiles(alloc_h, timer);
  r.free = percentiles(free_h, timer);
  r.retire = percentiles(retire_h, timer);
  r.alloc_raw = percentiles(alloc_h, timer, true);
  r.free_raw = percentiles(free_h, timer, true);
  r.stress_free = percentiles(stress_free_h, timer);
  for (auto& sample : r.stress_samples) {
    const auto& h = stress_alloc[static_cast<std::size_t>(sample.second - 1)];
    sample.alloc_p99_ns = timer.to_ns(h.quantile(0.99));
    sample.allocs = h.count();
  }
}

template void run_adr<PoolOps>(const Config&, PoolOps, const Timer&, RunResult&);
template void run_adr<SystemOps>(const Config&, SystemOps, const Timer&, RunResult&);

}  // namespace sydra::bench
