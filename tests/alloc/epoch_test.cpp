// Tests alloc/epoch.hpp: the global epoch, read sections, QSBR, the record registry and
// the deferred queue. The facade-level guarantees (reclamation held back by readers) are
// tested in small_pool_allocator_test.cpp.
#include "alloc/epoch.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "alloc/track.hpp"
#include "support/alloc_test_support.hpp"

namespace sydra::alloc {
namespace {

std::uint64_t observed(const EpochDomain::Record& r) {
  return r.state.load() >> 1;
}

TEST_SUITE("unit") {
  TEST_CASE("the epoch starts at 1 and advances freely when nobody reads") {
    EpochDomain d;
    CHECK(d.current() == 1);
    CHECK(d.min_observed() == 1);
    CHECK(d.try_advance());
    CHECK(d.try_advance());
    CHECK(d.current() == 3);
    CHECK(d.advances() == 2);
    CHECK(d.min_observed() == 3);
  }

  TEST_CASE("a reader lets the epoch move once past what it observed and then holds it") {
    EpochDomain d;
    EpochDomain::Record* r = d.acquire_record();
    REQUIRE(r != nullptr);
    CHECK(d.records_active() == 0);  // registered but not reading: holds nothing back
    d.enter(*r);
    const std::uint64_t e = d.current();
    CHECK(observed(*r) == e);
    CHECK(d.records_active() == 1);
    CHECK(d.min_observed() == e);
    CHECK(d.try_advance());  // the reader has seen e
    CHECK(d.current() == e + 1);
    CHECK_FALSE(d.try_advance());  // but not e + 1
    CHECK_FALSE(d.try_advance());
    CHECK(d.current() == e + 1);
    CHECK(d.min_observed() == e);
    d.leave(*r);
    CHECK(d.records_active() == 0);
    CHECK(d.min_observed() == e + 1);
    CHECK(d.try_advance());
    d.release_record(r);
  }

  TEST_CASE("nested read sections stay active until the outermost leave") {
    EpochDomain d;
    EpochDomain::Record* r = d.acquire_record();
    d.enter(*r);
    const std::uint64_t e = d.current();
    d.try_advance();
    d.enter(*r);  // nested: keeps the epoch observed at the outer enter
    CHECK(observed(*r) == e);
    d.leave(*r);
    CHECK(d.records_active() == 1);
    CHECK(d.min_observed() == e);
    d.leave(*r);
    CHECK(d.records_active() == 0);
    d.release_record(r);
  }

  TEST_CASE("a QSBR thread holds the epoch until its next quiescent point") {
    EpochDomain d;
    EpochDomain::Record* r = d.acquire_record();
    d.online(*r);
    const std::uint64_t e = d.current();
    CHECK(d.min_observed() == e);
    CHECK(d.try_advance());
    CHECK_FALSE(d.try_advance());
    d.quiescent(*r);
    CHECK(d.min_observed() == e + 1);
    CHECK(d.try_advance());
    CHECK_FALSE(d.try_advance());
    d.offline(*r);
    CHECK(d.records_active() == 0);
    CHECK(d.try_advance());
    d.release_record(r);
  }

  TEST_CASE("quiescent inside an explicit read section is not a quiescent point") {
    EpochDomain d;
    EpochDomain::Record* r = d.acquire_record();
    d.online(*r);
    d.enter(*r);
    const std::uint64_t e = d.current();
    CHECK(d.try_advance());
    d.quiescent(*r);
    CHECK(d.min_observed() == e);
    d.leave(*r);
    CHECK(d.records_active() == 1);  // still online
    d.quiescent(*r);
    CHECK(d.min_observed() == e + 1);
    d.offline(*r);
    CHECK(d.records_active() == 0);
    d.release_record(r);
  }

  TEST_CASE("min_observed for one shard counts only that shard's readers") {
    EpochDomain d;
    EpochDomain::Record* r0 = d.acquire_record();
    EpochDomain::Record* r1 = d.acquire_record();
    r0->shard.store(0);
    r1->shard.store(1);
    d.enter(*r0);
    const std::uint64_t e = d.current();
    CHECK(d.try_advance());
    d.enter(*r1);
    CHECK(d.min_observed() == e);
    CHECK(d.min_observed(0) == e);
    CHECK(d.min_observed(1) == e + 1);
    CHECK(d.min_observed(2) == d.current());
    d.leave(*r0);
    d.leave(*r1);
    d.release_record(r0);
    d.release_record(r1);
  }

  TEST_CASE("released records are reused and never hold reclamation back") {
    EpochDomain d;
    EpochDomain::Record* r = d.acquire_record();
    CHECK(d.records_claimed() == 1);
    d.enter(*r);
    d.release_record(r);  // a thread that exits inside a section
    CHECK(d.records_claimed() == 0);
    CHECK(d.records_active() == 0);
    CHECK(d.try_advance());
    CHECK(d.try_advance());
    EpochDomain::Record* again = d.acquire_record();
    CHECK(again == r);
    CHECK(again->depth == 0);
    CHECK_FALSE(again->qsbr_online);
    EpochDomain::Record* other = d.acquire_record();
    CHECK(other != r);
    CHECK(d.records_claimed() == 2);
    d.release_record(again);
    d.release_record(other);
    d.release_record(nullptr);  // harmless
  }

  TEST_CASE("the bounded advance reads a few records per call and waits for a lagging reader") {
    EpochDomain d;
    std::vector<EpochDomain::Record*> records;
    for (int i = 0; i < 7; ++i) records.push_back(d.acquire_record());
    // Seven records, three per call: the scan needs three calls; only the last one moves.
    CHECK_FALSE(d.try_advance_bounded(3));
    CHECK_FALSE(d.try_advance_bounded(3));
    CHECK(d.try_advance_bounded(3));
    CHECK(d.current() == 2);
    CHECK(d.cheap_safe_epoch() == 1);  // a block tagged 1 waits for one more advance

    d.enter(*records[5]);  // observes 2
    for (int i = 0; i < 3; ++i) d.try_advance_bounded(100);
    CHECK(d.current() == 3);  // it had seen 2: one advance, then it holds the epoch
    CHECK_FALSE(d.try_advance_bounded(100));
    CHECK_FALSE(d.try_advance_bounded(100));
    CHECK(d.current() == 3);
    d.leave(*records[5]);
    CHECK(d.try_advance_bounded(100));
    CHECK(d.current() == 4);
    // The full scan and the bounded one agree on the epoch they move.
    CHECK(d.try_advance());
    CHECK(d.try_advance_bounded(100));
    CHECK(d.current() == 6);
    for (auto* r : records) d.release_record(r);
  }

  TEST_CASE("leave_epoch without enter_epoch stops the process with a message") {
    test::ChildResult r = test::run_in_child([] {
      EpochDomain d;
      EpochDomain::Record* rec = d.acquire_record();
      d.leave(*rec);
    });
    CHECK(r.signaled);
    CHECK(r.signal == SIGABRT);
    CHECK(test::contains(r.err, "leave_epoch() without enter_epoch()"));
  }

  TEST_CASE("the deferred queue hands every pushed node to take_all with its tag and kind") {
    struct alignas(16) Node {
      unsigned char bytes[32];
    };
    Node nodes[3];
    RetireNode external{};
    DeferredNode magazine{};
    DeferredQueue q;
    CHECK_FALSE(q.maybe_nonempty());
    CHECK(q.take_all() == nullptr);
    for (int i = 0; i < 3; ++i) q.push_block(&nodes[i], 10 + static_cast<std::uint64_t>(i));
    q.push(&external, 20, NodeKind::kRetireNode);
    q.push(&magazine, 30, NodeKind::kMagazineNode);
    CHECK(q.maybe_nonempty());
    DeferredNode* list = q.take_all();
    std::set<void*> seen;
    for (DeferredNode* n = list; n != nullptr; n = n->next) {
      seen.insert(n);
      if (n == &external) {
        CHECK(n->kind() == NodeKind::kRetireNode);
        CHECK(n->epoch() == 20);
      } else if (n == &magazine) {
        CHECK(n->kind() == NodeKind::kMagazineNode);
        CHECK(n->epoch() == 30);
      } else {
        const auto index = static_cast<std::uint64_t>(reinterpret_cast<Node*>(n) - nodes);
        CHECK(n->kind() == NodeKind::kBlockNode);
        CHECK(n->epoch() == 10 + index);
      }
    }
    CHECK(seen.size() == 5);
    CHECK(q.take_all() == nullptr);
    CHECK_FALSE(q.maybe_nonempty());
  }

  TEST_CASE("the backlog reclaims whole batches older than the safe epoch oldest first") {
    struct alignas(16) Node {
      unsigned char bytes[16];
    };
    Node nodes[4];
    int payload = 0;
    RetireNode external{};
    external.block = &payload;
    DeferredQueue q;
    DeferredBacklog backlog;
    RetireNode* spent = nullptr;
    std::vector<std::pair<void*, bool>> reclaimed;
    auto reclaim = [&](void* block, NodeKind kind) {
      reclaimed.emplace_back(block, kind == NodeKind::kRetireNode);
      return std::size_t{1};
    };

    CHECK(backlog.empty());
    backlog.take(q);  // nothing pushed: no batch
    CHECK(backlog.empty());
    q.push_block(&nodes[0], 1);
    q.push(&external, 3, NodeKind::kRetireNode);
    backlog.take(q);  // batch 1, stamped 3 (its largest tag)
    q.push_block(&nodes[1], 2);
    backlog.take(q);  // batch 2, stamped 2
    CHECK_FALSE(backlog.empty());

    CHECK_FALSE(backlog.ready(3));
    CHECK(backlog.ready(4));
    CHECK(backlog.reclaim(3, SIZE_MAX, spent, reclaim) == 0);  // batch 1 first, and 3 is not before 3
    CHECK(reclaimed.empty());
    CHECK(backlog.reclaim(4, 1, spent, reclaim) == 1);  // budget 1
    CHECK(backlog.reclaim(4, SIZE_MAX, spent, reclaim) == 2);
    REQUIRE(reclaimed.size() == 3);
    CHECK(std::count(reclaimed.begin(), reclaimed.end(), std::pair<void*, bool>(&nodes[0], false)) == 1);
    CHECK(std::count(reclaimed.begin(), reclaimed.end(), std::pair<void*, bool>(&payload, true)) == 1);
    CHECK(reclaimed.back() == std::pair<void*, bool>(&nodes[1], false));
    CHECK(spent == &external);  // external nodes come back for recycling
    CHECK(backlog.empty());

    // Many batches (more than it keeps separately) are all reclaimed once safe.
    std::vector<Node> many(40);
    for (std::size_t i = 0; i < many.size(); ++i) {
      q.push_block(&many[i], 10 + i);
      backlog.take(q);
    }
    reclaimed.clear();
    CHECK(backlog.reclaim(100, SIZE_MAX, spent, reclaim) == many.size());
    CHECK(backlog.empty());
    track::unpoison(nodes, sizeof nodes);  // reclaim poisons in-block nodes
    track::unpoison(many.data(), many.size() * sizeof(Node));
  }
}

// Epoch-based reclamation at the domain level: a writer replaces the node behind one
// shared pointer and reclaims an old node once its tag is older than the safe epoch;
// reclaiming bumps the node's generation. A reader inside its section must never see the
// generation of a node it loaded change. Two ways to decide, as the allocator has them:
// the maintenance tick's (try_advance + min_observed: every record read at once) and the
// refill's (try_advance_bounded, a few records per call + cheap_safe_epoch: one load).
enum class Rule { full_scan, bounded };

void reclaim_under_readers(Rule rule) {
  struct Node {
    std::atomic<std::uint64_t> generation{0};  // even: published, odd: reclaimed
    std::uint64_t tag = 0;                     // writer only
  };
  EpochDomain d;
  // Idle records: the bounded scan needs several calls to get past them.
  std::vector<EpochDomain::Record*> idle;
  for (int i = 0; i < 6; ++i) idle.push_back(d.acquire_record());
  std::vector<Node> nodes(64);
  std::atomic<Node*> slot{&nodes[0]};
  std::vector<Node*> free_nodes, limbo;  // the writer's (this thread's) lists
  for (std::size_t i = 1; i < nodes.size(); ++i) {
    nodes[i].generation.store(1);  // not published yet
    free_nodes.push_back(&nodes[i]);
  }
  const int replacements = test::kSlowBuild ? 5000 : 20000;
  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> violations{0}, reads{0};
  auto advance = [&] { return rule == Rule::full_scan ? d.try_advance() : d.try_advance_bounded(2); };
  auto safe_epoch = [&] { return rule == Rule::full_scan ? d.min_observed() : d.cheap_safe_epoch(); };

  std::vector<std::thread> readers;
  for (int t = 0; t < 2; ++t) {
    readers.emplace_back([&] {
      EpochDomain::Record* r = d.acquire_record();
      while (!stop.load(std::memory_order_relaxed)) {
        d.enter(*r);
        Node* n = slot.load(std::memory_order_acquire);
        const std::uint64_t g = n->generation.load(std::memory_order_acquire);
        if (g & 1u) violations.fetch_add(1);
        for (int k = 0; k < 8; ++k)
          if (n->generation.load(std::memory_order_acquire) != g) violations.fetch_add(1);
        d.leave(*r);
        reads.fetch_add(1, std::memory_order_relaxed);
      }
      d.release_record(r);
    });
  }
  std::thread advancer([&] {
    while (!stop.load(std::memory_order_relaxed)) advance();
  });
  // On a loaded machine the writer could finish before a reader ever ran: wait for one.
  while (reads.load(std::memory_order_relaxed) == 0) std::this_thread::yield();

  int replaced = 0;
  while (replaced < replacements) {
    if (free_nodes.empty()) {
      const std::uint64_t safe = safe_epoch();
      for (std::size_t i = 0; i < limbo.size();) {
        if (limbo[i]->tag < safe) {
          limbo[i]->generation.fetch_add(1, std::memory_order_acq_rel);  // reclaimed
          free_nodes.push_back(limbo[i]);
          limbo[i] = limbo.back();
          limbo.pop_back();
        } else {
          ++i;
        }
      }
      if (free_nodes.empty()) {
        advance();  // help the advancer: progress must not hang on scheduling
        std::this_thread::yield();
      }
      continue;
    }
    Node* fresh = free_nodes.back();
    free_nodes.pop_back();
    fresh->generation.fetch_add(1, std::memory_order_acq_rel);  // published again
    Node* old = slot.exchange(fresh, std::memory_order_acq_rel);
    old->tag = d.current();  // read after the unlink, as DeferredQueue::push is tagged
    limbo.push_back(old);
    ++replaced;
  }
  stop.store(true);
  for (auto& t : readers) t.join();
  advancer.join();
  for (auto* r : idle) d.release_record(r);
  CHECK(violations.load() == 0);
  CHECK(reads.load() > 0);
  CHECK(d.advances() > 0);
  CHECK(d.records_claimed() == 0);
}

TEST_SUITE("concurrency") {
  TEST_CASE("a node unlinked while a reader may hold it is not reclaimed under the reader") {
    reclaim_under_readers(Rule::full_scan);
  }

  TEST_CASE("the bounded epoch scan and the one-load safe epoch never reclaim under a reader") {
    reclaim_under_readers(Rule::bounded);
  }

  TEST_CASE("records are claimed by one thread at a time under concurrent registration") {
    EpochDomain d;
    std::mutex mutex;
    std::set<EpochDomain::Record*> held;
    std::atomic<int> duplicates{0};
    const int rounds = test::kSlowBuild ? 500 : 5000;
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
      threads.emplace_back([&] {
        for (int i = 0; i < rounds; ++i) {
          EpochDomain::Record* r = d.acquire_record();
          {
            std::lock_guard<std::mutex> lock(mutex);
            if (!held.insert(r).second) duplicates.fetch_add(1);
          }
          d.enter(*r);
          d.leave(*r);
          {
            std::lock_guard<std::mutex> lock(mutex);
            held.erase(r);
          }
          d.release_record(r);
        }
      });
    }
    for (auto& t : threads) t.join();
    CHECK(duplicates.load() == 0);
    CHECK(d.records_claimed() == 0);
    CHECK(d.records_active() == 0);
  }

  TEST_CASE("deferred queue pushes from many threads all reach one consumer") {
    struct alignas(16) Node {
      unsigned char bytes[16];
    };
    constexpr int kProducers = 4;
    const int per_producer = test::kSlowBuild ? 5000 : 50000;
    std::vector<Node> nodes(static_cast<std::size_t>(kProducers * per_producer));
    DeferredQueue q;
    std::atomic<int> done{0};
    std::vector<std::thread> producers;
    for (int t = 0; t < kProducers; ++t) {
      producers.emplace_back([&, t] {
        for (int i = 0; i < per_producer; ++i)
          q.push_block(&nodes[static_cast<std::size_t>(t * per_producer + i)], static_cast<std::uint64_t>(t));
        done.fetch_add(1);
      });
    }
    std::vector<char> seen(nodes.size(), 0);
    std::size_t taken = 0, duplicates = 0, bad_epoch = 0;
    for (;;) {
      const bool last = done.load() == kProducers;
      for (DeferredNode* n = q.take_all(); n != nullptr; n = n->next) {
        const auto index = static_cast<std::size_t>(reinterpret_cast<Node*>(n) - nodes.data());
        if (seen[index]++) ++duplicates;
        if (n->epoch() != index / static_cast<std::size_t>(per_producer)) ++bad_epoch;
        ++taken;
      }
      if (last) break;
    }
    for (auto& t : producers) t.join();
    CHECK(taken == nodes.size());
    CHECK(duplicates == 0);
    CHECK(bad_epoch == 0);
  }
}

}  // namespace
}  // namespace sydra::alloc
