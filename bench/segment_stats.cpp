// segment_stats: where the bytes of segment files go (bench/density_bench.sh reports it).
//
//   segment_stats [--json] PATH...      segment files, or directories holding seg-*.sdb
//
// For every file: its format version, points, series, blocks, and bytes split into header
// and footer, index, and blocks; for format-2 blocks also timestamps (the ts column and the
// encoding byte) and values, and how many blocks took each value encoding. Totals over all
// files, with bytes per point. Exit 0; 1 when a file is not a readable segment; 2 on bad
// usage.
#include <cstdio>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "server/storage/codec.hpp"
#include "server/storage/file_io.hpp"
#include "server/storage/segment_file.hpp"

namespace {

namespace fs = std::filesystem;
using namespace sydra::storage;

struct Totals {
  std::uint64_t files = 0, points = 0, series = 0, blocks = 0;
  std::uint64_t bytes = 0, frame_bytes = 0, index_bytes = 0, block_bytes = 0;
  std::uint64_t ts_bytes = 0, value_bytes = 0;  // format-2 blocks only
  std::uint64_t v1_block_bytes = 0;             // format-1 blocks (timestamps and values interleaved)
  std::map<std::string, std::uint64_t> encodings;
  std::map<std::uint32_t, std::uint64_t> versions;
};

void add_file(const std::string& path, Totals& t) {
  const std::vector<std::byte> bytes = io::read_file(path);
  const segment::Index index = segment::parse(bytes, path);
  ++t.files;
  ++t.versions[static_cast<std::uint32_t>(index.format)];
  t.points += index.points;
  t.series += index.series.size();
  t.blocks += index.blocks.size();
  t.bytes += bytes.size();
  t.frame_bytes += segment::kHeaderBytes + segment::kFooterBytes;
  std::uint64_t block_bytes = 0;
  for (const segment::BlockRef& b : index.blocks) {
    block_bytes += b.bytes;
    if (index.format == BlockFormat::kGorilla) {
      t.v1_block_bytes += b.bytes;
      continue;
    }
    const BlockLayout layout = inspect_block(std::span(bytes).subspan(b.offset, b.bytes), b.points);
    t.ts_bytes += 1 + layout.ts_bytes;
    t.value_bytes += layout.value_bytes - 1;
    ++t.encodings[value_encoding_name(layout.values)];
  }
  t.block_bytes += block_bytes;
  t.index_bytes += bytes.size() - segment::kHeaderBytes - segment::kFooterBytes - block_bytes;
}

// "name": count (JSON) or name count, comma-separated.
void append_entry(std::string& out, bool json, const std::string& name, std::uint64_t count) {
  if (!out.empty()) out.append(json ? "," : ", ");
  if (json) out.append("\"");
  out.append(name);
  out.append(json ? "\":" : " ");
  out.append(std::to_string(count));
}

}  // namespace

int main(int argc, char** argv) {
  bool json = false;
  std::vector<std::string> files;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--json") {
      json = true;
    } else if (!arg.empty() && arg[0] == '-') {
      std::fprintf(stderr, "usage: segment_stats [--json] PATH...\n");
      return 2;
    } else if (fs::is_directory(arg)) {
      for (const auto& e : fs::directory_iterator(arg)) {
        std::uint64_t number;
        if (segment::parse_file_name(e.path().filename().string(), number))
          files.push_back(e.path().string());
      }
    } else {
      files.push_back(arg);
    }
  }
  if (argc < 2) {
    std::fprintf(stderr, "usage: segment_stats [--json] PATH...\n");
    return 2;
  }
  Totals t;
  try {
    for (const auto& f : files) add_file(f, t);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "segment_stats: %s\n", e.what());
    return 1;
  }
  const double points = t.points == 0 ? 1 : static_cast<double>(t.points);
  std::string encodings;
  for (const auto& [name, count] : t.encodings) append_entry(encodings, json, name, count);
  std::string versions;
  for (const auto& [version, count] : t.versions) {
    std::string label(json ? "" : "v");
    label.append(std::to_string(version));
    append_entry(versions, json, label, count);
  }
  if (json) {
    std::printf(
        "{\"files\":%llu,\"versions\":{%s},\"points\":%llu,\"series\":%llu,\"blocks\":%llu,\"bytes\":%llu,"
        "\"bytes_per_point\":%.4f,\"frame_bytes\":%llu,\"index_bytes\":%llu,\"block_bytes\":%llu,"
        "\"ts_bytes\":%llu,\"value_bytes\":%llu,\"v1_block_bytes\":%llu,\"index_bytes_per_point\":%.4f,"
        "\"ts_bytes_per_point\":%.4f,\"value_bytes_per_point\":%.4f,\"encodings\":{%s}}\n",
        static_cast<unsigned long long>(t.files), versions.c_str(), static_cast<unsigned long long>(t.points),
        static_cast<unsigned long long>(t.series), static_cast<unsigned long long>(t.blocks),
        static_cast<unsigned long long>(t.bytes), static_cast<double>(t.bytes) / points,
        static_cast<unsigned long long>(t.frame_bytes), static_cast<unsigned long long>(t.index_bytes),
        static_cast<unsigned long long>(t.block_bytes), static_cast<unsigned long long>(t.ts_bytes),
        static_cast<unsigned long long>(t.value_bytes), static_cast<unsigned long long>(t.v1_block_bytes),
        static_cast<double>(t.index_bytes + t.frame_bytes) / points, static_cast<double>(t.ts_bytes) / points,
        static_cast<double>(t.value_bytes) / points, encodings.c_str());
  } else {
    std::printf("%llu file(s) (%s), %llu points, %llu series, %llu blocks: %llu bytes, %.3f B/point\n",
                static_cast<unsigned long long>(t.files), versions.c_str(),
                static_cast<unsigned long long>(t.points), static_cast<unsigned long long>(t.series),
                static_cast<unsigned long long>(t.blocks), static_cast<unsigned long long>(t.bytes),
                static_cast<double>(t.bytes) / points);
    std::printf(
        "  index + header/footer %.3f B/point; format-2 blocks: timestamps %.3f, values %.3f B/point (%s)",
        static_cast<double>(t.index_bytes + t.frame_bytes) / points, static_cast<double>(t.ts_bytes) / points,
        static_cast<double>(t.value_bytes) / points, encodings.c_str());
    if (t.v1_block_bytes > 0)
      std::printf("; format-1 blocks %.3f B/point", static_cast<double>(t.v1_block_bytes) / points);
    std::printf("\n");
  }
  return 0;
}
