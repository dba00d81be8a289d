// The storage endpoints: HTTP requests in, storage::Engine calls, JSON out. The HTTP layer
// knows nothing of storage and the engine nothing of HTTP; this file joins them.
//
//   POST     /api/v1/ingest        NDJSON body → {"ingested","rejected","errors"}
//   GET|POST /api/v1/query/range   one series' points in [start, end], optionally downsampled
//   GET|POST /api/v1/query/select  many series by a selector (matchers over the tag index),
//                                  optionally downsampled and aggregated across series by labels
//   POST     /api/v1/query/find    series ids by tags (and/or)
//   GET      /api/v1/series        every series with its tags
//
// Requests, answers and errors are documented in docs/http-api.md.
#pragma once

#include <cstdint>

#include "alloc/small_pool_allocator.hpp"
#include "server/config.hpp"
#include "server/http/router.hpp"

namespace sydra::storage {
class Engine;
}

namespace sydra::server {

class StorageApi {
 public:
  StorageApi(storage::Engine& engine, const Config& config, alloc::SmallPoolAllocator& allocator);
  void add_routes(http::Router& router);

  http::Response ingest(const http::Request& request) const;
  http::Response query_range(const http::Request& request) const;
  http::Response select(const http::Request& request) const;
  http::Response find(const http::Request& request) const;
  http::Response series(const http::Request& request) const;

 private:
  storage::Engine& engine_;
  const Config& config_;
  alloc::SmallPoolAllocator& allocator_;
};

}  // namespace sydra::server
