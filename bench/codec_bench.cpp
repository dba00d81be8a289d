// codec_bench: the segment block encodings (server/storage/codec.hpp) side by side on one
// core: format 1 (Gorilla) and format 2 (columnar) on the same points, bytes per point
// (timestamps and values apart for format 2, and the value encodings chosen), encode and
// decode points/s, and what a zstd pass over each format-2 block would save.
//
//   codec_bench [--dataset decimal|wide|entropy] [--series N] [--points P] [--rounds R]
//               [--zstd-level L] [--json] [--smoke]
//
// The points are the first N series of bench/tsdb_dataset.hpp's dataset (default 40 series
// of 10,000 points at 10 s), cut into blocks of segment::max_block_points as a segment does.
// Decoding runs R rounds, each decoding every block of every format once, formats
// interleaved within a round; the figures are medians over rounds, per second of this
// thread's CPU time (on a shared machine that is the codec's speed), with the ratio
// format 2 / format 1. Each decoded block is checked against its input bit for bit once.
// zstd: each format-2 block compressed alone at level L (0 = skip): bytes and the decode
// speed of decompress + decode. Exit 0, 1 when a round trip differs, 2 on bad usage.
#include <time.h>
#include <zstd.h>

#include <algorithm>
#include <bit>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "bench/bench_args.hpp"
#include "bench/tsdb_dataset.hpp"
#include "server/storage/codec.hpp"
#include "server/storage/segment_file.hpp"

namespace {

using sydra::storage::BlockFormat;
using sydra::storage::Point;

struct Options {
  sydra::bench::DatasetSpec data;
  std::size_t rounds = 7;
  int zstd_level = 3;
  bool json = false;
};

[[noreturn]] void usage(const std::string& why) {
  std::fprintf(stderr,
               "codec_bench: %s\n"
               "usage: codec_bench [--dataset decimal|wide|entropy] [--series N] [--points P] [--rounds R]\n"
               "                   [--zstd-level L] [--json] [--smoke]\n",
               why.c_str());
  std::exit(2);
}

double cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

struct Block {
  std::size_t points;
  std::vector<std::byte> bytes;
};

struct Encoded {
  std::vector<Block> blocks;
  std::uint64_t bytes = 0;
  double encode_seconds = 0;
};

Encoded encode_all(BlockFormat format, const std::vector<std::vector<Point>>& series) {
  Encoded e;
  const double start = cpu_seconds();
  const std::size_t per_block = sydra::storage::segment::max_block_points(format);
  for (const auto& points : series) {
    for (std::size_t at = 0; at < points.size(); at += per_block) {
      const std::size_t n = std::min(per_block, points.size() - at);
      Block b{n, {}};
      sydra::storage::encode_points(format, std::span(points).subspan(at, n), b.bytes);
      e.bytes += b.bytes.size();
      e.blocks.push_back(std::move(b));
    }
  }
  e.encode_seconds = cpu_seconds() - start;
  return e;
}

bool same(const Point& a, const Point& b) {
  return a.ts == b.ts && std::bit_cast<std::uint64_t>(a.value) == std::bit_cast<std::uint64_t>(b.value);
}

// Decodes every block once; returns CPU seconds. `check` compares with the input.
double decode_all(BlockFormat format, const Encoded& e, const std::vector<std::vector<Point>>& series,
                  bool check, bool& ok) {
  std::vector<Point> out;
  out.reserve(sydra::storage::segment::max_block_points(format));
  std::size_t s = 0;
  std::size_t at = 0;
  const double start = cpu_seconds();
  for (const Block& b : e.blocks) {
    out.clear();
    sydra::storage::decode_points(format, b.bytes, b.points, out);
    if (check) {
      for (std::size_t i = 0; i < b.points; ++i) ok = ok && same(out[i], series[s][at + i]);
      at += b.points;
      if (at == series[s].size()) {
        ++s;
        at = 0;
      }
    }
  }
  return cpu_seconds() - start;
}

// Format-2 blocks each compressed alone with zstd, kept when smaller (as a per-block flag
// would): total bytes, and CPU seconds to decompress and decode them all once.
struct ZstdResult {
  std::uint64_t bytes = 0;
  std::size_t blocks_smaller = 0;
  std::vector<double> decode_seconds;
};

ZstdResult zstd_pass(const Encoded& e, int level, std::size_t rounds) {
  ZstdResult r;
  std::vector<std::vector<std::byte>> frames(e.blocks.size());
  for (std::size_t i = 0; i < e.blocks.size(); ++i) {
    const auto& raw = e.blocks[i].bytes;
    std::vector<std::byte>& z = frames[i];
    z.resize(ZSTD_compressBound(raw.size()));
    const std::size_t n = ZSTD_compress(z.data(), z.size(), raw.data(), raw.size(), level);
    if (ZSTD_isError(n)) usage(ZSTD_getErrorName(n));
    z.resize(n);
    if (n < raw.size()) {
      r.bytes += n + 1;  // the flag
      ++r.blocks_smaller;
    } else {
      r.bytes += raw.size() + 1;
      z.clear();
    }
  }
  ZSTD_DCtx* ctx = ZSTD_createDCtx();
  std::vector<std::byte> plain(1 << 16);
  std::vector<Point> out;
  for (std::size_t round = 0; round < rounds; ++round) {
    const double start = cpu_seconds();
    for (std::size_t i = 0; i < e.blocks.size(); ++i) {
      std::span<const std::byte> bytes = e.blocks[i].bytes;
      if (!frames[i].empty()) {
        const std::size_t n =
            ZSTD_decompressDCtx(ctx, plain.data(), plain.size(), frames[i].data(), frames[i].size());
        if (ZSTD_isError(n)) usage(ZSTD_getErrorName(n));
        bytes = std::span<const std::byte>(plain.data(), n);
      }
      out.clear();
      sydra::storage::decode_points(BlockFormat::kColumnar, bytes, e.blocks[i].points, out);
    }
    r.decode_seconds.push_back(cpu_seconds() - start);
  }
  ZSTD_freeDCtx(ctx);
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  o.data.hosts = 10;  // 40 series
  sydra::bench::Args args(argc, argv, 1, usage);
  while (args.next()) {
    const std::string& arg = args.flag();
    if (arg == "--dataset") {
      o.data.kind = args.value();
      if (!sydra::bench::Dataset::known_kind(o.data.kind)) usage("--dataset is decimal, wide or entropy");
    } else if (arg == "--series") {
      const auto n = static_cast<std::size_t>(args.number(1, 1e6));
      o.data.hosts = (n + o.data.metrics - 1) / o.data.metrics;
    } else if (arg == "--points") {
      o.data.points = static_cast<std::size_t>(args.number(1, 1e8));
    } else if (arg == "--rounds") {
      o.rounds = static_cast<std::size_t>(args.number(1, 1000));
    } else if (arg == "--zstd-level") {
      o.zstd_level = static_cast<int>(args.number(0, 19));
    } else if (arg == "--json") {
      o.json = true;
    } else if (arg == "--smoke") {
      o.data.hosts = 2;
      o.data.points = 3000;
      o.rounds = 2;
    } else {
      args.unknown();
    }
  }

  sydra::bench::Dataset data(o.data);
  const std::size_t n_series = o.data.series();
  std::vector<std::vector<Point>> series(n_series);
  for (std::size_t i = 0; i < o.data.points; ++i)
    for (std::size_t s = 0; s < n_series; ++s) series[s].push_back({data.ts(i), data.next(s)});
  const auto points = static_cast<double>(o.data.total_points());

  const BlockFormat formats[] = {BlockFormat::kGorilla, BlockFormat::kColumnar};
  Encoded encoded[2];
  for (int f = 0; f < 2; ++f) encoded[f] = encode_all(formats[f], series);

  // Format 2: where the bytes go.
  std::uint64_t ts_bytes = 0;
  std::uint64_t value_bytes = 0;
  std::map<std::string, std::size_t> encodings;
  for (const Block& b : encoded[1].blocks) {
    const auto layout = sydra::storage::inspect_block(b.bytes, b.points);
    ts_bytes += 1 + layout.ts_bytes;  // the encoding byte counted with the timestamps
    value_bytes += layout.value_bytes - 1;
    ++encodings[sydra::storage::value_encoding_name(layout.values)];
  }

  bool ok = true;
  std::vector<double> decode_seconds[2];
  for (std::size_t round = 0; round < o.rounds; ++round) {
    for (int k = 0; k < 2; ++k) {
      const int f = round % 2 == 0 ? k : 1 - k;  // alternate which format goes first
      decode_seconds[f].push_back(decode_all(formats[f], encoded[f], series, round == 0, ok));
    }
  }
  if (!ok) {
    std::fprintf(stderr, "codec_bench: a decoded block differs from its input\n");
    return 1;
  }
  double decode_rate[2];
  for (int f = 0; f < 2; ++f) decode_rate[f] = points / median(decode_seconds[f]);

  ZstdResult z;
  if (o.zstd_level > 0) z = zstd_pass(encoded[1], o.zstd_level, o.rounds);
  const double zstd_rate = z.decode_seconds.empty() ? 0 : points / median(z.decode_seconds);

  std::string encoding_list;
  for (const auto& [name, count] : encodings) {
    if (!encoding_list.empty()) encoding_list += o.json ? "," : ", ";
    encoding_list +=
        o.json ? "\"" + name + "\":" + std::to_string(count) : name + " " + std::to_string(count);
  }
  if (o.json) {
    std::printf(
        "{\"dataset\":\"%s\",\"series\":%zu,\"points\":%.0f,\"blocks\":%zu,"
        "\"v1_bytes_per_point\":%.4f,\"v2_bytes_per_point\":%.4f,\"v2_ts_bytes_per_point\":%.4f,"
        "\"v2_value_bytes_per_point\":%.4f,\"v2_encodings\":{%s},"
        "\"v1_encode_points_per_s\":%.0f,\"v2_encode_points_per_s\":%.0f,"
        "\"v1_decode_points_per_s\":%.0f,\"v2_decode_points_per_s\":%.0f,\"decode_ratio\":%.3f,"
        "\"zstd_level\":%d,\"v2_zstd_bytes_per_point\":%.4f,\"v2_zstd_blocks_smaller\":%zu,"
        "\"v2_zstd_decode_points_per_s\":%.0f}\n",
        o.data.kind.c_str(), n_series, points, encoded[1].blocks.size(), encoded[0].bytes / points,
        encoded[1].bytes / points, ts_bytes / points, value_bytes / points, encoding_list.c_str(),
        points / encoded[0].encode_seconds, points / encoded[1].encode_seconds, decode_rate[0],
        decode_rate[1], decode_rate[1] / decode_rate[0], o.zstd_level, z.bytes / points, z.blocks_smaller,
        zstd_rate);
  } else {
    std::printf("dataset %s: %zu series, %.0f points, %zu blocks\n", o.data.kind.c_str(), n_series, points,
                encoded[1].blocks.size());
    std::printf("format 1 (gorilla):  %.3f B/point; encode %.1f M points/s, decode %.1f M points/s\n",
                encoded[0].bytes / points, points / encoded[0].encode_seconds / 1e6, decode_rate[0] / 1e6);
    std::printf(
        "format 2 (columnar): %.3f B/point (ts %.3f, values %.3f; blocks: %s); encode %.1f M points/s, "
        "decode %.1f M points/s (%.2fx format 1)\n",
        encoded[1].bytes / points, ts_bytes / points, value_bytes / points, encoding_list.c_str(),
        points / encoded[1].encode_seconds / 1e6, decode_rate[1] / 1e6, decode_rate[1] / decode_rate[0]);
    if (o.zstd_level > 0)
      std::printf(
          "format 2 + zstd -%d per block: %.3f B/point (%.1f %% of format 2; %zu of %zu blocks smaller), "
          "decode %.1f M points/s\n",
          o.zstd_level, z.bytes / points,
          100.0 * static_cast<double>(z.bytes) / static_cast<double>(encoded[1].bytes), z.blocks_smaller,
          encoded[1].blocks.size(), zstd_rate / 1e6);
  }
  return 0;
}
