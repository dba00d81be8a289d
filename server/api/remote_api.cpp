#include "server/api/remote_api.hpp"

#include <cerrno>
#include <string>
#include <system_error>
#include <vector>

#include "server/prom/remote.hpp"
#include "server/storage/engine.hpp"

namespace sydra::server {

namespace {

using Reason = RemoteCounters::Reason;

bool iequals(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if ((a[i] | 0x20) != (b[i] | 0x20)) return false;
  return true;
}

// The media type the protocol sends: application/x-protobuf (remote_write 1.0, remote_read),
// snappy-encoded. A missing header is accepted (curl, hand-made clients); remote_write 2.0's
// message type (proto=io.prometheus.write.v2.Request) is not one we read.
const char* media_type_problem(const http::Request& r) {
  const std::string_view type = r.content_type.substr(0, r.content_type.find(';'));
  if (!r.content_type.empty() && !iequals(type, "application/x-protobuf"))
    return "Content-Type must be application/x-protobuf";
  if (r.content_type.find("io.prometheus.write.v2") != std::string_view::npos)
    return "remote_write 2.0 (io.prometheus.write.v2.Request) is not supported: send remote_write 1.0";
  if (!r.content_encoding.empty() && !iequals(r.content_encoding, "snappy"))
    return "Content-Encoding must be snappy";
  return nullptr;
}

Reason reason_of(prom::Problem problem) noexcept {
  switch (problem) {
    case prom::Problem::snappy:
      return Reason::snappy;
    case prom::Problem::too_large:
      return Reason::too_large;
    case prom::Problem::labels:
      return Reason::labels;
    case prom::Problem::histograms:
      return Reason::histograms;
    case prom::Problem::matchers:
      return Reason::matchers;
    case prom::Problem::response_type:
      return Reason::response_type;
    case prom::Problem::protobuf:
    case prom::Problem::none:
      break;
  }
  return Reason::protobuf;
}

// Counts the refusal and answers it.
http::Response refuse(std::array<std::atomic<std::uint64_t>, RemoteCounters::kReasons>& counts, Reason reason,
                      int status, std::string_view message) {
  counts[reason].fetch_add(1, std::memory_order_relaxed);
  http::Response r = http::json_error(status, message);
  if (status == 503) r.headers.emplace_back("Retry-After", "1");
  return r;
}

}  // namespace

RemoteApi::RemoteApi(storage::Engine& engine, const Config& config) : engine_(engine), config_(config) {}

http::Response RemoteApi::write(const http::Request& request, WorkerContext& worker) const {
  auto& rejected = counters_.write_rejected;
  if (const char* problem = media_type_problem(request))
    return refuse(rejected, Reason::media_type, 415, problem);
  storage::ParsedBatch& batch = worker.batch;
  const prom::Outcome decoded = worker.remote_write.decode(request.body, config_.max_body_bytes, batch);
  if (!decoded) {
    batch.clear();  // a refused request stores nothing
    const Reason reason = reason_of(decoded.problem);
    return refuse(rejected, reason, reason == Reason::too_large ? 413 : 400, decoded.message);
  }

  storage::IngestOutcome outcome;
  try {
    outcome = engine_.ingest(batch, worker.ingest_scratch);
  } catch (const std::system_error& e) {
    if (e.code() == std::errc::no_space_on_device || e.code().value() == EDQUOT)
      return refuse(rejected, Reason::disk_full, 503,
                    std::string("the disk is full: nothing was stored, retry later (") + e.what() + ")");
    return refuse(rejected, Reason::storage_error, 500, std::string("cannot write the WAL: ") + e.what());
  }
  if (outcome.status == storage::IngestStatus::busy)
    return refuse(rejected, Reason::busy, 503,
                  "the memtable is full and flushing cannot keep up; nothing was stored, retry later");
  if (outcome.status == storage::IngestStatus::disk_full) {
    // As for NDJSON ingest: 507, a 5xx that remote-write clients retry, with Retry-After.
    http::Response r = refuse(rejected, Reason::disk_full, 507,
                              "the disk holding data_dir " + config_.data_dir + " is full (" + outcome.error +
                                  "); nothing was stored, retry later");
    r.headers.emplace_back("Retry-After", "1");
    return r;
  }
  if (outcome.status == storage::IngestStatus::stopped)
    return refuse(rejected, Reason::storage_error, 503,
                  "writes are stopped after lost durability (" + outcome.error +
                      "); nothing was stored; the daemon takes writes again after a restart");
  counters_.write_samples.fetch_add(outcome.ingested, std::memory_order_relaxed);
  counters_.write_series.fetch_add(worker.remote_write.series(), std::memory_order_relaxed);
  http::Response r;
  r.status = 204;
  return r;
}

http::Response RemoteApi::read(const http::Request& request) const {
  auto& rejected = counters_.read_rejected;
  if (const char* problem = media_type_problem(request))
    return refuse(rejected, Reason::media_type, 415, problem);
  std::vector<prom::ReadQuery> queries;
  if (const prom::Outcome decoded = prom::decode_read_request(request.body, config_.max_body_bytes, queries);
      !decoded) {
    const Reason reason = reason_of(decoded.problem);
    return refuse(rejected, reason, reason == Reason::too_large ? 413 : 400, decoded.message);
  }

  prom::ReadResponseWriter writer;
  std::uint64_t series = 0, samples = 0;
  for (std::size_t i = 0; i < queries.size(); ++i) {
    prom::ReadQuery& rq = queries[i];
    writer.begin_result();
    if (rq.start > rq.end) continue;  // an empty range
    storage::SelectQuery q;
    q.matchers = std::move(rq.matchers);
    q.start = rq.start;
    q.end = rq.end;
    q.max_series = config_.max_query_series;
    q.max_points = config_.max_query_points;
    const storage::SelectResult result = engine_.select(q);
    const std::string at = "queries[" + std::to_string(i) + "]";
    if (result.status == storage::SelectStatus::too_many_series)
      return refuse(rejected, Reason::too_large, 413,
                    at + " matches " + std::to_string(result.matched_series) +
                        " series, more than max_query_series=" + std::to_string(config_.max_query_series));
    if (result.status == storage::SelectStatus::too_many_points)
      return refuse(rejected, Reason::too_large, 413,
                    at + " has more than max_query_points=" + std::to_string(config_.max_query_points) +
                        " samples; narrow the range or the matchers");
    for (const storage::SeriesPointsResult& s : result.series) {
      writer.add_series(s.series, s.points);
      samples += s.points.size();
    }
    series += result.series.size();
  }
  counters_.read_queries.fetch_add(queries.size(), std::memory_order_relaxed);
  counters_.read_series.fetch_add(series, std::memory_order_relaxed);
  counters_.read_samples.fetch_add(samples, std::memory_order_relaxed);

  http::Response r;
  r.content_type = "application/x-protobuf";
  r.headers.emplace_back("Content-Encoding", "snappy");
  r.body = writer.finish();
  return r;
}

}  // namespace sydra::server
