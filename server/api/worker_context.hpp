// One worker's state, built on the worker's thread when it starts and handed to every
// handler that worker runs (Dragonfly's per-thread EngineShard, made explicit instead of
// function-local thread_locals). Nothing in it is shared with another thread, so handlers
// use it without locks; what is shared (the engine, the allocator, the config) is reached
// through the App.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string_view>

#include "alloc/adapters.hpp"
#include "alloc/small_pool_allocator.hpp"
#include "server/metrics.hpp"
#include "server/prom/remote.hpp"
#include "server/storage/engine.hpp"
#include "server/storage/ingest_parser.hpp"

namespace spdlog {
class logger;
}

namespace sydra::server {

// The daemon's two listeners (server/http/server.hpp): ingest and queries on `data`,
// status, metrics and debug on `control`, each with threads of its own.
enum class Listener : std::uint8_t { data, control };
std::string_view to_string(Listener listener) noexcept;

struct WorkerContext {
  // Binds the calling thread — the worker's — to allocator shard `shard % shard count`.
  WorkerContext(Listener listener, unsigned id, std::uint32_t shard, alloc::SmallPoolAllocator& allocator,
                RequestMetrics::Slot& metrics, std::size_t max_line_bytes);
  ~WorkerContext();
  WorkerContext(const WorkerContext&) = delete;
  WorkerContext& operator=(const WorkerContext&) = delete;

  const Listener listener;
  const unsigned id;  // among its listener's workers
  alloc::SmallPoolAllocator& allocator;
  const std::uint32_t shard;  // the shard bound, or SmallPoolAllocator::kNoShard
  // Allocations on this worker's shard: the sessions' buffers, parsers and bodies, and the
  // ingest batch below.
  alloc::PoolResource resource;
  // Ingest: the NDJSON parser (and the remote_write decoder), their batch and the engine's
  // encoding buffers, kept between
  // requests so that their capacity is reused.
  storage::NdjsonParser parser;
  storage::ParsedBatch batch;
  storage::IngestScratch ingest_scratch;
  prom::WriteDecoder remote_write;             // remote_write bodies, decoded into `batch`
  RequestMetrics::Slot& metrics;               // this worker's slot of the request metrics
  std::shared_ptr<spdlog::logger> access_log;  // the "access" logger; null when access_log is off
};

}  // namespace sydra::server
