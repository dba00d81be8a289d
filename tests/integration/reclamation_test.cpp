// Deferred (cross-shard) frees are reclaimed while the daemon runs: the maintenance tick
// advances the epoch, idle workers pass quiescent points, and garbage collection returns
// the blocks to their shards — so under load the backlog stays small next to the total.
//
// Where the daemon frees across shards today: a connection over max_connections is
// answered by a write whose state the acceptor thread allocates and a worker frees. The
// load below drives many of those (and ordinary requests) from several client threads.
#include <doctest/doctest.h>

#include <atomic>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "daemon_harness.hpp"

namespace sydra::itest {
namespace {

struct Deferred {
  std::uint64_t total = 0;      // small_pool.shard_deferred_total
  std::uint64_t pending = 0;    // Σ shards[i].deferred_pending
  std::uint64_t reclaimed = 0;  // Σ shards[i].deferred_reclaimed
};

Deferred deferred_figures(const nlohmann::json& doc) {
  Deferred d;
  d.total = doc["small_pool"]["shard_deferred_total"].get<std::uint64_t>();
  for (const auto& shard : doc["small_pool"]["shards"]) {
    d.pending += shard["deferred_pending"].get<std::uint64_t>();
    d.reclaimed += shard["deferred_reclaimed"].get<std::uint64_t>();
  }
  return d;
}

// GET on a fresh connection, retried while the cap turns it away.
nlohmann::json stats_when_admitted(std::uint16_t port) {
  const auto deadline = Clock::now() + patience(5s);
  for (;;) {
    const HttpResponse r = http_get(port, "/debug/alloc/stats");
    if (r.status == 200 || Clock::now() > deadline) {
      REQUIRE(r.status == 200);
      return r.json();
    }
    std::this_thread::sleep_for(20ms);
  }
}

TEST_CASE("under load, deferred cross-shard frees are reclaimed") {
  Daemon d(DaemonOptions().set({"max_connections=4", "maintenance_interval_ms=50"}));
  INFO("daemon stderr:\n", d.log());
  const std::uint64_t rss_before = d.rss_bytes();

  std::atomic<std::uint64_t> ok{0}, rejected{0}, other{0};
  std::atomic<bool> stop{false};
  std::vector<std::thread> clients;
  for (int t = 0; t < 8; ++t) {
    clients.emplace_back([&, t] {
      const std::string request =
          make_request("GET", t % 2 ? "/status" : "/debug/alloc/stats", {"Connection: close"});
      while (!stop.load()) {
        try {
          Connection c(d.port());
          c.send(request);
          const auto r = c.read_response(patience(5s));
          if (r && r->status == 200)
            ++ok;
          else if (r && r->status == 503)
            ++rejected;
          else
            ++other;
        } catch (const std::exception&) {
          ++other;
        }
      }
    });
  }
  std::this_thread::sleep_for(1500ms);
  stop = true;
  for (auto& c : clients) c.join();
  INFO("ok ", ok.load(), ", 503 ", rejected.load(), ", other ", other.load());
  CHECK(ok > 0);
  CHECK(rejected > 0);
  CHECK(other == 0);

  // The backlog drains within a few maintenance ticks once the load stops.
  Deferred figures = deferred_figures(stats_when_admitted(d.port()));
  const auto deadline = Clock::now() + patience(3s);
  while (figures.pending > figures.total / 100 && Clock::now() < deadline) {
    std::this_thread::sleep_for(50ms);
    figures = deferred_figures(stats_when_admitted(d.port()));
  }
  INFO("deferred: total ", figures.total, ", pending ", figures.pending, ", reclaimed ", figures.reclaimed);
  CHECK_MESSAGE(figures.total > 0,
                "no cross-shard frees under this load: the test no longer exercises reclamation");
  CHECK(figures.pending <= figures.total / 100);
  CHECK(figures.reclaimed + figures.pending == figures.total);
  // Memory does not run away under connection churn.
  const std::uint64_t rss_after = d.rss_bytes();
  INFO("RSS before ", rss_before, ", after ", rss_after);
  CHECK(rss_after < rss_before + (std::uint64_t{256} << 20));
  CHECK(d.running());
}

}  // namespace
}  // namespace sydra::itest
