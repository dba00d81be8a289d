// The remote storage protocol on the wire (server/prom/remote.hpp): WriteRequests decoded
// into the same series ids as NDJSON, every sample bit-exact, every malformed request refused
// with its reason; ReadRequests decoded into matchers; answers with sorted labels.
#include <doctest/doctest.h>

#include <snappy.h>

#include <bit>
#include <cstdint>
#include <string>
#include <vector>

#include "server/prom/prompb.pb.h"
#include "server/prom/remote.hpp"
#include "server/storage/ingest_parser.hpp"

namespace sydra::prom {
namespace {

using Labels = std::vector<std::pair<std::string, std::string>>;

constexpr std::uint64_t kStaleMarker = 0x7ff0000000000002;  // Prometheus' stale NaN

std::string compress(const std::string& raw) {
  std::string out;
  snappy::Compress(raw.data(), raw.size(), &out);
  return out;
}

Outcome decode(const std::string& body, storage::ParsedBatch& batch, std::size_t max_bytes = 1 << 20) {
  WriteDecoder decoder;
  return decoder.decode(body, max_bytes, batch);
}

Outcome decode_labels(const Labels& labels) {
  const Series s{labels, {{1.0, 1000}}};
  storage::ParsedBatch batch;
  return decode(encode_write_request({&s, 1}), batch);
}

TEST_CASE("remote_write: a series is the same series as the NDJSON point with its name and tags") {
  const std::vector<Series> series = {
      {{{"__name__", "cpu_usage"}, {"dc", "eu"}, {"host", "h1"}}, {{0.5, 1000}, {0.75, 2000}}},
      {{{"Zone", "a"}, {"__name__", "up"}, {"job", "node"}}, {{1, 3000}}},  // 'Z' < '_'
      {{{"__name__", "bare"}}, {{2, 4000}}},
      {{{"__name__", "empty_tag"}, {"dc", ""}, {"host", "h2"}}, {{3, 5000}}},  // "" = no label
  };
  storage::ParsedBatch batch;
  WriteDecoder decoder;
  REQUIRE(decoder.decode(encode_write_request(series), 1 << 20, batch));
  CHECK(decoder.series() == 4);
  REQUIRE(batch.points.size() == 5);

  storage::ParsedBatch ndjson;
  storage::NdjsonParser parser;
  parser.parse(R"({"series":"cpu_usage","tags":{"host":"h1","dc":"eu"},"ts":1000,"value":0.5}
{"series":"cpu_usage","tags":{"dc":"eu","host":"h1"},"ts":2000,"value":0.75}
{"series":"up","tags":{"job":"node","Zone":"a"},"ts":3000,"value":1}
{"series":"bare","ts":4000,"value":2}
{"series":"empty_tag","tags":{"host":"h2"},"ts":5000,"value":3}
)",
               ndjson);
  REQUIRE(ndjson.points.size() == 5);
  for (std::size_t i = 0; i < 5; ++i) {
    CAPTURE(i);
    CHECK(batch.points[i].id == ndjson.points[i].id);
    CHECK(batch.key(batch.points[i]) == ndjson.key(ndjson.points[i]));
    CHECK(batch.points[i].ts == ndjson.points[i].ts);
    CHECK(batch.points[i].value == ndjson.points[i].value);
  }
}

TEST_CASE("remote_write: stale markers, NaN payloads, infinities and extreme timestamps decode bit-exact") {
  const std::vector<std::uint64_t> bits = {kStaleMarker, 0x7ff8000000000001, 0xfff0000000000000,
                                           0x8000000000000000, 0x0000000000000001};
  Series s{{{"__name__", "m"}}, {}};
  for (std::size_t i = 0; i < bits.size(); ++i)
    s.samples.push_back({std::bit_cast<double>(bits[i]), i == 0 ? INT64_MIN : i == 1 ? INT64_MAX : -5});
  storage::ParsedBatch batch;
  REQUIRE(decode(encode_write_request({&s, 1}), batch));
  REQUIRE(batch.points.size() == bits.size());
  for (std::size_t i = 0; i < bits.size(); ++i)
    CHECK(std::bit_cast<std::uint64_t>(batch.points[i].value) == bits[i]);
  CHECK(batch.points[0].ts == INT64_MIN);
  CHECK(batch.points[1].ts == INT64_MAX);
}

TEST_CASE(
    "remote_write: an empty WriteRequest, series without samples, exemplars and metadata store nothing "
    "else") {
  storage::ParsedBatch batch;
  CHECK(decode(compress(""), batch));
  CHECK(batch.points.empty());

  prompb::WriteRequest request;
  prompb::TimeSeries* ts = request.add_timeseries();
  prompb::Label* l = ts->add_labels();
  l->set_name("__name__");
  l->set_value("no_samples");
  ts = request.add_timeseries();
  l = ts->add_labels();
  l->set_name("__name__");
  l->set_value("with_exemplar");
  ts->add_exemplars("\x0a\x00", 2);
  prompb::Sample* s = ts->add_samples();
  s->set_value(7);
  s->set_timestamp(9);
  request.add_metadata("anything");
  REQUIRE(decode(compress(request.SerializeAsString()), batch));
  REQUIRE(batch.points.size() == 1);
  CHECK(batch.key(batch.points[0]) == "with_exemplar");
}

TEST_CASE("remote_write: malformed requests are refused with their reason") {
  storage::ParsedBatch batch;
  SUBCASE("not snappy") {
    const Outcome o = decode("\xff\xff\xff\xff\xff\xff", batch);
    CHECK(o.problem == Problem::snappy);
  }
  SUBCASE("snappy with a lying length") {
    std::string body = compress(std::string(100, 'x'));
    body.resize(body.size() - 2);
    CHECK(decode(body, batch).problem == Problem::snappy);
  }
  SUBCASE("not protobuf") {
    const Outcome o = decode(compress("\xff\xff\xff\xff"), batch);
    CHECK(o.problem == Problem::protobuf);
    CHECK(o.message.find("WriteRequest") != std::string::npos);
  }
  SUBCASE("over the decompressed limit") {
    const Outcome o = decode(compress(std::string(5000, '\0')), batch, 4096);
    CHECK(o.problem == Problem::too_large);
    CHECK(o.message.find("4096") != std::string::npos);
  }
  SUBCASE("labels") {
    CHECK(decode_labels({{"job", "x"}}).problem == Problem::labels);
    CHECK(decode_labels({{"__name__", ""}, {"job", "x"}}).problem == Problem::labels);
    const Outcome unsorted = decode_labels({{"__name__", "m"}, {"b", "1"}, {"a", "2"}});
    CHECK(unsorted.problem == Problem::labels);
    CHECK(unsorted.message.find("not sorted") != std::string::npos);
    const Outcome twice = decode_labels({{"__name__", "m"}, {"a", "1"}, {"a", "2"}});
    CHECK(twice.problem == Problem::labels);
    CHECK(twice.message.find("twice") != std::string::npos);
    CHECK(decode_labels({{"", "v"}, {"__name__", "m"}}).problem == Problem::labels);
    CHECK(decode_labels({{"__name__", "m"}, {"a", std::string("x\0y", 3)}}).problem == Problem::labels);
    CHECK(decode_labels({{"__name__", std::string("m\0", 2)}}).problem == Problem::labels);
  }
  SUBCASE("native histograms") {
    prompb::WriteRequest request;
    prompb::TimeSeries* ts = request.add_timeseries();
    prompb::Label* l = ts->add_labels();
    l->set_name("__name__");
    l->set_value("h");
    ts->add_histograms("\x08\x01", 2);
    CHECK(decode(compress(request.SerializeAsString()), batch).problem == Problem::histograms);
  }
  SUBCASE("a bad series after good ones names its index") {
    const std::vector<Series> series = {{{{"__name__", "ok"}}, {{1, 1}}}, {{{"job", "x"}}, {{1, 1}}}};
    const Outcome o = decode(encode_write_request(series), batch);
    CHECK(o.problem == Problem::labels);
    CHECK(o.message.find("timeseries[1]") != std::string::npos);
  }
}

TEST_CASE("remote_read: queries decode into matchers with Prometheus semantics") {
  const std::vector<WireQuery> queries = {
      {100, 200, {{MatchType::eq, "__name__", "cpu"}, {MatchType::re, "host", "h1.*"}}},
      {0, 5, {{MatchType::neq, "dc", "x"}, {MatchType::nre, "host", "h2|h3"}}},
  };
  std::vector<ReadQuery> out;
  REQUIRE(decode_read_request(encode_read_request(queries), 1 << 20, out));
  REQUIRE(out.size() == 2);
  CHECK(out[0].start == 100);
  CHECK(out[0].end == 200);
  REQUIRE(out[0].matchers.size() == 2);
  CHECK(out[0].matchers[1].op() == storage::MatchOp::regex);
  CHECK(out[0].matchers[1].matches("h12"));
  CHECK_FALSE(out[0].matchers[1].matches("xh12"));  // fully anchored
  CHECK(out[1].matchers[0].op() == storage::MatchOp::not_equal);
  CHECK(out[1].matchers[1].op() == storage::MatchOp::not_regex);
  CHECK_FALSE(out[1].matchers[1].matches("h2"));

  const std::vector<WireQuery> bad_regex = {{0, 1, {{MatchType::re, "host", "(unclosed"}}}};
  CHECK(decode_read_request(encode_read_request(bad_regex), 1 << 20, out).problem == Problem::matchers);
  const std::vector<WireQuery> no_matchers = {{0, 1, {}}};
  CHECK(decode_read_request(encode_read_request(no_matchers), 1 << 20, out).problem == Problem::matchers);
  CHECK(decode_read_request("garbage", 1 << 20, out).problem == Problem::snappy);

  prompb::ReadRequest streamed_only;
  prompb::LabelMatcher* m = streamed_only.add_queries()->add_matchers();
  m->set_name("__name__");
  m->set_value("x");
  streamed_only.add_accepted_response_types(prompb::ReadRequest::STREAMED_XOR_CHUNKS);
  CHECK(decode_read_request(compress(streamed_only.SerializeAsString()), 1 << 20, out).problem ==
        Problem::response_type);
  streamed_only.add_accepted_response_types(prompb::ReadRequest::SAMPLES);
  CHECK(decode_read_request(compress(streamed_only.SerializeAsString()), 1 << 20, out));
}

TEST_CASE("remote_read: answers carry labels sorted by name, __name__ among them, samples bit-exact") {
  ReadResponseWriter writer;
  writer.begin_result();
  const storage::SeriesInfo a{1, "up", {{"Zone", "z"}, {"job", "node"}}};
  const storage::SeriesInfo b{2, "m", {}};
  const std::vector<storage::Point> points = {{10, std::bit_cast<double>(kStaleMarker)}, {20, 2.5}};
  writer.add_series(a, points);
  writer.begin_result();  // a query that found nothing
  writer.begin_result();
  writer.add_series(b, {points.data() + 1, 1});
  std::vector<std::vector<Series>> results;
  REQUIRE(decode_read_response(writer.finish(), results));
  REQUIRE(results.size() == 3);
  REQUIRE(results[0].size() == 1);
  CHECK(results[0][0].labels == Labels{{"Zone", "z"}, {"__name__", "up"}, {"job", "node"}});
  REQUIRE(results[0][0].samples.size() == 2);
  CHECK(std::bit_cast<std::uint64_t>(results[0][0].samples[0].value) == kStaleMarker);
  CHECK(results[0][0].samples[1].ts == 20);
  CHECK(results[1].empty());
  CHECK(results[2][0].labels == Labels{{"__name__", "m"}});
}

}  // namespace
}  // namespace sydra::prom
