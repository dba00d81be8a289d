// libFuzzer target: untrusted bytes as a remote_write body (server/prom/remote.hpp), both
// layers: the first byte chooses whether the rest is the body as sent (the snappy layer, then
// protobuf) or an uncompressed WriteRequest that the target compresses first (so that the
// fuzzer mutates protobuf bytes directly, which snappy would otherwise hide). The same bytes
// also go through the remote_read request decoder.
//
// Anything wrong aborts:
//   - a crash, a leak or undefined behaviour (ASan, UBSan), or any exception;
//   - a refusal without a reason or without a message;
//   - an accepted request whose points do not each name a canonical key inside the batch
//     with the id XXH3 gives that key, or whose keys do not start with a non-empty name;
//   - a decoder that answers differently the second time (it reuses its buffers).
#include <snappy.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "server/prom/remote.hpp"
#include "server/storage/series_key.hpp"

namespace {

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "fuzz_remote_write: invariant broken: %s\n", what);
  std::abort();
}

#define CHECK_INVARIANT(cond) \
  do {                        \
    if (!(cond)) fail(#cond); \
  } while (false)

constexpr std::size_t kMaxBytes = 1 << 20;

void check_batch(const sydra::prom::Outcome& o, const sydra::storage::ParsedBatch& batch) {
  if (!o) {
    CHECK_INVARIANT(o.problem != sydra::prom::Problem::none);
    CHECK_INVARIANT(!o.message.empty());
    return;
  }
  for (const sydra::storage::ParsedPoint& p : batch.points) {
    CHECK_INVARIANT(std::size_t{p.key_offset} + p.key_size <= batch.keys.size());
    const std::string_view key = batch.key(p);
    CHECK_INVARIANT(sydra::storage::series_id(key) == p.id);
    const sydra::storage::SeriesKeyView view = sydra::storage::split_canonical_key(key);
    CHECK_INVARIANT(!view.name.empty());
    for (std::size_t i = 1; i < view.tags.size(); ++i)
      CHECK_INVARIANT(view.tags[i - 1].first < view.tags[i].first);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  std::string body(reinterpret_cast<const char*>(data) + 1, size - 1);
  if (data[0] & 1) {
    std::string compressed;
    snappy::Compress(body.data(), body.size(), &compressed);
    body.swap(compressed);
  }
  static sydra::prom::WriteDecoder decoder;  // reused, as a worker's is
  sydra::storage::ParsedBatch batch;
  const sydra::prom::Outcome first = decoder.decode(body, kMaxBytes, batch);
  check_batch(first, batch);
  const std::size_t points = batch.points.size();
  const sydra::prom::Outcome second = decoder.decode(body, kMaxBytes, batch);
  CHECK_INVARIANT(first.problem == second.problem && first.message == second.message);
  CHECK_INVARIANT(!first || batch.points.size() == points);

  std::vector<sydra::prom::ReadQuery> queries;
  const sydra::prom::Outcome read = sydra::prom::decode_read_request(body, kMaxBytes, queries);
  CHECK_INVARIANT(read || !read.message.empty());
  if (read)
    for (const sydra::prom::ReadQuery& q : queries) CHECK_INVARIANT(!q.matchers.empty());
  return 0;
}
