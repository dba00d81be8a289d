#include "server/prom/remote.hpp"

#include <snappy.h>

#include <algorithm>
#include <climits>
#include <cstring>

#include "server/prom/prompb.pb.h"
#include "server/storage/series_key.hpp"

namespace sydra::prom {

namespace {

Outcome fail(Problem problem, std::string message) {
  return Outcome{problem, std::move(message)};
}

// Decompresses a snappy block of at most `max_bytes` into `out`.
Outcome uncompress(std::string_view body, std::size_t max_bytes, std::string& out) {
  std::size_t size = 0;
  if (!snappy::GetUncompressedLength(body.data(), body.size(), &size))
    return fail(Problem::snappy,
                "the body is not snappy-compressed (block format, Content-Encoding: snappy)");
  if (size > max_bytes || size > static_cast<std::size_t>(INT_MAX))
    return fail(Problem::too_large, "the body decompresses to " + std::to_string(size) +
                                        " bytes, more than max_body_bytes=" + std::to_string(max_bytes));
  out.resize(size);
  if (!snappy::RawUncompress(body.data(), body.size(), out.data()))
    return fail(Problem::snappy, "the body is not a valid snappy block");
  return {};
}

// Frees protobuf's process-wide descriptor tables when the program ends (nothing uses
// protobuf after main returns): its index is held from memory the daemon's operator new took
// from the pool, which LeakSanitizer does not scan, so left alone it reads as a leak.
struct ProtobufShutdown {
  ~ProtobufShutdown() { google::protobuf::ShutdownProtobufLibrary(); }
} protobuf_shutdown;

// A message serialized and snappy-compressed: a body as the protocol sends it.
std::string compressed(const google::protobuf::MessageLite& message) {
  const std::string raw = message.SerializeAsString();
  std::string out;
  snappy::Compress(raw.data(), raw.size(), &out);
  return out;
}

bool has_nul(const std::string& s) noexcept {
  return std::memchr(s.data(), '\0', s.size()) != nullptr;
}

std::string where(int series) {
  return "timeseries[" + std::to_string(series) + "]";
}

}  // namespace

std::string_view to_string(Problem problem) noexcept {
  switch (problem) {
    case Problem::none:
      return "none";
    case Problem::snappy:
      return "snappy";
    case Problem::too_large:
      return "too_large";
    case Problem::protobuf:
      return "protobuf";
    case Problem::labels:
      return "labels";
    case Problem::histograms:
      return "histograms";
    case Problem::matchers:
      return "matchers";
    case Problem::response_type:
      return "response_type";
  }
  return "?";
}

// ---- remote_write ------------------------------------------------------------------------

struct WriteDecoder::Impl {
  std::string buffer;  // the decompressed body
  prompb::WriteRequest request;
  std::vector<storage::TagView> tags;
  std::string key;
};

WriteDecoder::WriteDecoder() : impl_(std::make_unique<Impl>()) {}
WriteDecoder::~WriteDecoder() = default;

Outcome WriteDecoder::decode(std::string_view body, std::size_t max_bytes, storage::ParsedBatch& out) {
  out.clear();
  series_ = 0;
  Impl& d = *impl_;
  if (Outcome o = uncompress(body, max_bytes, d.buffer); !o) return o;
  d.request.Clear();
  if (!d.request.ParseFromArray(d.buffer.data(), static_cast<int>(d.buffer.size())))
    return fail(Problem::protobuf, "the body is not a valid protobuf WriteRequest");

  const int count = d.request.timeseries_size();
  std::size_t samples = 0;
  for (const prompb::TimeSeries& ts : d.request.timeseries())
    samples += static_cast<std::size_t>(ts.samples_size());
  out.points.reserve(samples);
  for (int i = 0; i < count; ++i) {
    const prompb::TimeSeries& ts = d.request.timeseries(i);
    if (ts.histograms_size() > 0)
      return fail(Problem::histograms,
                  where(i) + " holds native histogram samples, which sydradb does not store");
    std::string_view name;
    bool have_name = false;
    d.tags.clear();
    const std::string* previous = nullptr;
    for (const prompb::Label& label : ts.labels()) {
      const std::string& k = label.name();
      const std::string& v = label.value();
      if (k.empty()) return fail(Problem::labels, where(i) + " has a label with an empty name");
      if (previous != nullptr && k <= *previous)
        return fail(Problem::labels, where(i) + (k == *previous ? " has the label '" + k + "' twice"
                                                                : " has labels not sorted by name ('" + k +
                                                                      "' after '" + *previous + "')"));
      previous = &k;
      if (has_nul(k) || has_nul(v)) return fail(Problem::labels, where(i) + " has a label with a NUL byte");
      if (k == storage::kNameLabel) {
        name = v;
        have_name = true;
      } else if (!v.empty()) {  // an empty value is no label
        d.tags.emplace_back(k, v);
      }
    }
    if (!have_name || name.empty())
      return fail(Problem::labels, where(i) + " has no __name__ label (the series name)");
    if (ts.samples_size() == 0) continue;
    d.key.clear();
    storage::append_canonical_key(d.key, name, d.tags);  // labels sorted: the tags are too
    if (out.keys.size() + d.key.size() > UINT32_MAX)
      return fail(Problem::too_large, "the request's series keys exceed 4 GiB");
    const auto offset = static_cast<std::uint32_t>(out.keys.size());
    const auto size = static_cast<std::uint32_t>(d.key.size());
    out.keys += d.key;
    const storage::SeriesId id = storage::series_id(d.key);
    for (const prompb::Sample& s : ts.samples())
      out.points.push_back({id, s.timestamp(), s.value(), offset, size});
    ++series_;
  }
  return {};
}

// ---- remote_read -------------------------------------------------------------------------

Outcome decode_read_request(std::string_view body, std::size_t max_bytes, std::vector<ReadQuery>& out) {
  out.clear();
  std::string buffer;
  if (Outcome o = uncompress(body, max_bytes, buffer); !o) return o;
  prompb::ReadRequest request;
  if (!request.ParseFromString(buffer))
    return fail(Problem::protobuf, "the body is not a valid protobuf ReadRequest");
  if (request.accepted_response_types_size() > 0 &&
      std::none_of(request.accepted_response_types().begin(), request.accepted_response_types().end(),
                   [](int t) { return t == prompb::ReadRequest::SAMPLES; }))
    return fail(Problem::response_type,
                "sydradb answers remote_read with SAMPLES only, which the request does not accept");
  for (int q = 0; q < request.queries_size(); ++q) {
    const prompb::Query& query = request.queries(q);
    ReadQuery& rq = out.emplace_back();
    rq.start = query.start_timestamp_ms();
    rq.end = query.end_timestamp_ms();
    const std::string at = "queries[" + std::to_string(q) + "]";
    if (query.matchers_size() == 0) return fail(Problem::matchers, at + " has no matchers");
    for (const prompb::LabelMatcher& m : query.matchers()) {
      storage::MatchOp op{};
      switch (m.type()) {
        case prompb::LabelMatcher::EQ:
          op = storage::MatchOp::equal;
          break;
        case prompb::LabelMatcher::NEQ:
          op = storage::MatchOp::not_equal;
          break;
        case prompb::LabelMatcher::RE:
          op = storage::MatchOp::regex;
          break;
        case prompb::LabelMatcher::NRE:
          op = storage::MatchOp::not_regex;
          break;
        default:
          return fail(Problem::matchers, at + " has a matcher of unknown type " + std::to_string(m.type()));
      }
      if (m.name().empty()) return fail(Problem::matchers, at + " has a matcher with an empty label name");
      try {
        rq.matchers.emplace_back(m.name(), op, m.value());
      } catch (const storage::InvalidMatcher& e) {
        return fail(Problem::matchers, at + ": invalid regex '" + m.value() + "': " + e.what());
      }
    }
  }
  return {};
}

struct ReadResponseWriter::Impl {
  prompb::ReadResponse response;
  prompb::QueryResult* result = nullptr;
};

ReadResponseWriter::ReadResponseWriter() : impl_(std::make_unique<Impl>()) {}
ReadResponseWriter::~ReadResponseWriter() = default;

void ReadResponseWriter::begin_result() {
  impl_->result = impl_->response.add_results();
}

void ReadResponseWriter::add_series(const storage::SeriesInfo& series,
                                    std::span<const storage::Point> points) {
  prompb::TimeSeries* ts = impl_->result->add_timeseries();
  // Labels sorted by name: the tags are, and __name__ goes where it sorts among them.
  auto add_label = [ts](std::string_view k, std::string_view v) {
    prompb::Label* l = ts->add_labels();
    l->set_name(k.data(), k.size());
    l->set_value(v.data(), v.size());
  };
  bool name_done = false;
  for (const auto& [k, v] : series.tags) {
    if (!name_done && storage::kNameLabel < std::string_view(k)) {
      add_label(storage::kNameLabel, series.name);
      name_done = true;
    }
    add_label(k, v);
  }
  if (!name_done) add_label(storage::kNameLabel, series.name);
  ts->mutable_samples()->Reserve(static_cast<int>(points.size()));
  for (const storage::Point& p : points) {
    prompb::Sample* s = ts->add_samples();
    s->set_timestamp(p.ts);
    s->set_value(p.value);
  }
}

std::string ReadResponseWriter::finish() {
  return compressed(impl_->response);
}

// ---- for clients -------------------------------------------------------------------------

std::string encode_write_request(std::span<const Series> series) {
  prompb::WriteRequest request;
  for (const Series& s : series) {
    prompb::TimeSeries* ts = request.add_timeseries();
    for (const auto& [k, v] : s.labels) {
      prompb::Label* l = ts->add_labels();
      l->set_name(k);
      l->set_value(v);
    }
    for (const Sample& x : s.samples) {
      prompb::Sample* p = ts->add_samples();
      p->set_value(x.value);
      p->set_timestamp(x.ts);
    }
  }
  return compressed(request);
}

std::string encode_read_request(std::span<const WireQuery> queries) {
  prompb::ReadRequest request;
  for (const WireQuery& q : queries) {
    prompb::Query* query = request.add_queries();
    query->set_start_timestamp_ms(q.start);
    query->set_end_timestamp_ms(q.end);
    for (const WireMatcher& m : q.matchers) {
      prompb::LabelMatcher* lm = query->add_matchers();
      lm->set_type(static_cast<prompb::LabelMatcher::Type>(m.type));
      lm->set_name(m.name);
      lm->set_value(m.value);
    }
  }
  request.add_accepted_response_types(prompb::ReadRequest::SAMPLES);
  return compressed(request);
}

bool decode_read_response(std::string_view body, std::vector<std::vector<Series>>& out) {
  out.clear();
  std::string raw;
  if (!snappy::Uncompress(body.data(), body.size(), &raw)) return false;
  prompb::ReadResponse response;
  if (!response.ParseFromString(raw)) return false;
  for (const prompb::QueryResult& r : response.results()) {
    auto& result = out.emplace_back();
    for (const prompb::TimeSeries& ts : r.timeseries()) {
      Series& s = result.emplace_back();
      for (const prompb::Label& l : ts.labels()) s.labels.emplace_back(l.name(), l.value());
      for (const prompb::Sample& x : ts.samples()) s.samples.push_back({x.value(), x.timestamp()});
    }
  }
  return true;
}

}  // namespace sydra::prom
