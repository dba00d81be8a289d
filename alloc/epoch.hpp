// Epochs and deferred reclamation.
//
// What is guaranteed
//   A block handed to retire(), or freed by a thread whose shard does not own it, is not
//   reused while any thread that might still see it is inside a read section. Precisely:
//   a deferred node tagged with epoch t is reclaimed only when every thread that is
//   inside a read section has observed an epoch greater than t.
//
// The protocol (classic epoch-based reclamation, with QSBR as a second way to report)
//   - One global epoch E, starting at 1, only ever incremented.
//   - Each thread that uses epochs has a Record with one atomic word, state =
//     (observed_epoch << 1) | active. A thread enters a read section by storing
//     (E << 1) | 1 with seq_cst; it leaves by storing 0. A QSBR thread goes online once
//     (the same store) and announces quiescent points by storing (E << 1) | 1 again.
//     Threads that are neither inside a section nor online never hold reclamation back.
//   - A deferred node is pushed tagged with the global epoch read at push time. Retired
//     blocks are never written to before they are reclaimed (see RetireNode).
//   - min_observed() is the smallest observed epoch over active records, or E when there
//     are none. A node tagged t is safe once t < min_observed().
//   - advance() moves E to E + 1 only when every active record has observed E.
//
// Why it is safe
//   A reader that can see a block loaded its pointer inside its section. The block was
//   unlinked before it was retired at epoch t. If the reader's section began before the
//   retire, the reader observed an epoch <= t (epochs only grow), so min_observed <= t
//   and the node waits. If the reader's store is not yet visible to the collector, the
//   seq_cst store/fence pair orders the reader's later loads after the unlink, so it
//   cannot see the block. A reader that read a stale E is only more conservative.
//
// Who may touch what
//   - Record::state: written only by its thread, read by anyone (atomic).
//   - Record::depth / qsbr_online: its thread only.
//   - The record list is append-only and lock-free to walk; records are reused (claimed
//     with a CAS) after their thread exits, never freed while the domain lives.
//   - DeferredQueue: any thread pushes (lock-free Treiber push); only its owner takes,
//     all at once (exchange), so there is no ABA.
//
// Where the epoch is advanced and read
//   The maintenance tick (the daemon's, or a test's advance_epoch() + collect_garbage())
//   reads every record. An application thread's refill only ever does bounded work:
//   try_advance_bounded() reads a few records per call, and cheap_safe_epoch() is one
//   load. Both rules are written next to their functions.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "config.hpp"
#include "track.hpp"

namespace sydra::alloc {

class EpochDomain {
 public:
  // One cache line each: a reader's enter/leave stores must not slow down its neighbours.
  struct alignas(64) Record {
    std::atomic<std::uint64_t> state{0};  // (observed_epoch << 1) | active
    std::atomic<Record*> next{nullptr};   // registry list, append-only
    std::atomic<bool> claimed{false};
    std::uint32_t depth = 0;              // nesting of enter/leave (owner thread only)
    bool qsbr_online = false;             // owner thread only
    std::atomic<std::uint32_t> shard{0};  // the owner thread's shard, for per-shard epoch figures
  };

  EpochDomain() noexcept;
  ~EpochDomain();
  EpochDomain(const EpochDomain&) = delete;
  EpochDomain& operator=(const EpochDomain&) = delete;

  // Registry: a record for the calling thread (reused if one is free), and its release.
  Record* acquire_record() noexcept;
  void release_record(Record* record) noexcept;

  void enter(Record& r) noexcept;
  void leave(Record& r) noexcept;
  void online(Record& r) noexcept;
  void offline(Record& r) noexcept;
  void quiescent(Record& r) noexcept;

  std::uint64_t current() const noexcept { return global_.load(std::memory_order_seq_cst); }
  // Smallest epoch observed by an active record (the current epoch when none is active).
  // With shard != kAllShards, only records of threads bound to that shard count.
  static constexpr std::uint32_t kAllShards = ~0u;
  std::uint64_t min_observed(std::uint32_t shard = kAllShards) const noexcept;
  // Advances the global epoch if every active record has observed it. Returns whether it
  // moved. Reads every record: for the maintenance tick, not for an application's call.
  bool try_advance() noexcept;
  // The same decision taken over several calls, reading at most `budget` records per call
  // (a scan cursor kept between calls; one caller at a time, others return false at once).
  // Bounded work for paths an application thread runs (a refill) when nothing else
  // advances the epoch (libsydralloc.so has no maintenance thread).
  bool try_advance_bounded(std::size_t budget) noexcept;
  // A deferred node tagged `tag` may be reclaimed when tag < safe_epoch(). Two rules give a
  // safe bound: the smallest epoch observed by an active reader (min_observed(): reads
  // every record), or current() - 1 (one atomic load: after two advances every reader
  // that could hold the block has left, since an advance needs every active reader to
  // have observed the current epoch — the crossbeam rule). Either is safe; the second
  // waits one advance longer.
  std::uint64_t cheap_safe_epoch() const noexcept { return current() - 1; }

  std::uint64_t advances() const noexcept { return advances_.load(std::memory_order_relaxed); }
  std::uint64_t records_claimed() const noexcept;
  std::uint64_t records_active() const noexcept;

 private:
  static void publish(Record& r, std::uint64_t epoch) noexcept;

  std::atomic<std::uint64_t> global_{1};
  std::atomic<std::uint64_t> advances_{0};
  // try_advance_bounded's scan: the epoch it tries to move past and the next record to
  // read; guarded by scan_busy_ (a try-lock: a second caller skips instead of waiting).
  std::atomic<bool> scan_busy_{false};
  std::uint64_t scan_epoch_ = 0;
  Record* scan_next_ = nullptr;

 public:
  // After fork(): the thread that held the scan may not exist in the child.
  void reset_scan_after_fork() noexcept {
    scan_epoch_ = 0;
    scan_next_ = nullptr;
    scan_busy_.store(false, std::memory_order_relaxed);
  }

 private:
  std::atomic<Record*> head_{nullptr};
  // Records are carved from pages of our own (never malloc); chunks are chained for unmapping.
  struct Chunk;
  std::atomic<Chunk*> chunks_{nullptr};
};

// A node of a deferred queue. Three kinds share one queue, told apart by the low two bits
// of `tagged_epoch` ((epoch << 2) | kind):
//   - kBlockNode: the freed block itself (blocks are at least 16 bytes). Used only for a
//     cross-shard free by a thread that has no cache any more (it is exiting): the caller
//     gave the block up, so writing into it is allowed.
//   - kRetireNode (RetireNode): used by retire(). A retired block may still be read by
//     threads inside read sections, so nothing may be written into it until it is
//     reclaimed; the node lives outside the block and points at it.
//   - kMagazineNode: a Magazine (magazine.hpp) of blocks of one class, all freed by threads
//     of other shards: the cross-shard free, batched. Outside block memory too.
enum class NodeKind : std::uint8_t { kBlockNode = 0, kRetireNode = 1, kMagazineNode = 2 };

struct DeferredNode {
  DeferredNode* next;
  std::uint64_t tagged_epoch;

  NodeKind kind() const noexcept { return static_cast<NodeKind>(tagged_epoch & 3u); }
  std::uint64_t epoch() const noexcept { return tagged_epoch >> 2; }
};
static_assert(sizeof(DeferredNode) == 16);

struct RetireNode : DeferredNode {
  void* block;
};

// Multi-producer, single-consumer stack of deferred nodes.
class DeferredQueue {
 public:
  // Any thread, no lock. A kBlockNode must be unpoisoned for its first 16 bytes.
  void push(DeferredNode* node, std::uint64_t epoch, NodeKind kind) noexcept {
    node->tagged_epoch = (epoch << 2) | static_cast<std::uint64_t>(kind);
    DeferredNode* head = head_.load(std::memory_order_relaxed);
    do {
      node->next = head;
    } while (!head_.compare_exchange_weak(head, node, std::memory_order_release, std::memory_order_relaxed));
  }
  void push_block(void* block, std::uint64_t epoch) noexcept {
    push(static_cast<DeferredNode*>(block), epoch, NodeKind::kBlockNode);
  }
  // The owner: takes every node pushed so far.
  DeferredNode* take_all() noexcept { return head_.exchange(nullptr, std::memory_order_acquire); }
  bool maybe_nonempty() const noexcept { return head_.load(std::memory_order_relaxed) != nullptr; }

 private:
  std::atomic<DeferredNode*> head_{nullptr};
};

// The owner's side of a deferred queue (used under the owner's lock): nodes taken off the
// queue, kept in batches stamped with the largest epoch tag among their nodes. A batch
// whose stamp is before the safe epoch is reclaimed whole, so a node is touched twice —
// when taken and when reclaimed — rather than on every collection that finds it not yet
// safe.
class DeferredBacklog {
 public:
  // A run of nodes taken off a queue and stamped with its largest epoch tag.
  struct Batch {
    DeferredNode* head = nullptr;
    DeferredNode* tail = nullptr;
    std::uint64_t epoch = 0;
  };

  // Takes everything pushed to `queue` so far. Needs no lock (the exchange gives the
  // caller sole ownership of the nodes), so callers walk cold nodes outside their lock.
  static Batch prepare(DeferredQueue& queue) noexcept {
    Batch batch;
    batch.head = queue.take_all();
    for (DeferredNode* node = batch.head; node != nullptr;) {
      track::unpoison(node, sizeof(DeferredNode));
      const std::uint64_t tag = node->epoch();
      if (tag > batch.epoch) batch.epoch = tag;
      DeferredNode* next = node->next;
      if (node->kind() == NodeKind::kBlockNode) track::poison(node, sizeof(DeferredNode));
      batch.tail = node;
      node = next;
    }
    return batch;
  }

  // Under the owner's lock: adds a prepared batch.
  void append(const Batch& batch) noexcept {
    if (batch.head == nullptr) return;
    if (size_ == kMaxBatches) {
      // Readers have held reclamation back for a long time: fold into the newest batch.
      Batch& newest = batches_[(first_ + size_ - 1) % kMaxBatches];
      track::unpoison(batch.tail, sizeof(DeferredNode));
      const bool in_block = batch.tail->kind() == NodeKind::kBlockNode;
      batch.tail->next = newest.head;
      if (in_block) track::poison(batch.tail, sizeof(DeferredNode));
      newest.head = batch.head;
      if (batch.epoch > newest.epoch) newest.epoch = batch.epoch;
      return;
    }
    batches_[(first_ + size_) % kMaxBatches] = batch;
    ++size_;
  }

  // Under the owner's lock: prepare + append.
  void take(DeferredQueue& queue) noexcept { append(prepare(queue)); }

  bool empty() const noexcept { return size_ == 0; }
  // Whether the oldest batch may be reclaimed at `safe_epoch`.
  bool ready(std::uint64_t safe_epoch) const noexcept {
    return size_ > 0 && batches_[first_].epoch < safe_epoch;
  }

  // Reclaims nodes of batches stamped before `safe_epoch`, oldest first, at most `budget`
  // nodes. reclaim(node, kind) gets each node — for a kRetireNode the retired block
  // instead (still unpoisoned), whose node is then linked onto `spent_nodes` for the
  // caller to recycle — and returns how many blocks it gave back. Returns the sum.
  template <class Reclaim>
  std::size_t reclaim(std::uint64_t safe_epoch, std::size_t budget, RetireNode*& spent_nodes,
                      Reclaim&& reclaim_node) noexcept {
    std::size_t blocks = 0;
    std::size_t nodes = 0;
    while (size_ > 0 && nodes < budget) {
      Batch& batch = batches_[first_];
      if (batch.epoch >= safe_epoch) break;  // later batches were taken later: wait for this one first
      while (batch.head != nullptr && nodes < budget) {
        DeferredNode* node = batch.head;
        track::unpoison(node, sizeof(DeferredNode));
        batch.head = node->next;
        const NodeKind kind = node->kind();
        if (kind == NodeKind::kRetireNode) {
          auto* retired = static_cast<RetireNode*>(node);
          blocks += reclaim_node(retired->block, kind);
          retired->next = spent_nodes;
          spent_nodes = retired;
        } else {
          if (kind == NodeKind::kBlockNode) track::poison(node, sizeof(DeferredNode));
          blocks += reclaim_node(static_cast<void*>(node), kind);
        }
        ++nodes;
      }
      if (batch.head == nullptr) {
        first_ = (first_ + 1) % kMaxBatches;
        --size_;
      }
    }
    return blocks;
  }

 private:
  static constexpr std::size_t kMaxBatches = 16;
  Batch batches_[kMaxBatches] = {};
  std::size_t first_ = 0;
  std::size_t size_ = 0;
};

}  // namespace sydra::alloc
