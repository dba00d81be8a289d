// The segment file format and its reader/writer, private to the segment store (and its
// tests, fuzzers and benchmarks).
//
//   file    = header block* index footer
//   header  = "SYDRASEG" | u32 version | u32 reserved                               16 bytes
//   block   = up to max_block_points(version) points of one series, encoded as the
//             version says (codec.hpp): version 1 Gorilla, version 2 columnar (written today)
//   index   = per series, ascending id:
//               u64 id | u32 key length | key | u32 block count |
//               per block, ascending ts: i64 min_ts | i64 max_ts | u64 offset | u32 bytes |
//                                        u32 points | u32 crc32c(block bytes)
//   footer  = u64 index offset | u64 index bytes | u64 points | u32 series | u32 crc32c(index)
//             | i64 min_ts | i64 max_ts | u32 crc32c(the 48 bytes before) | u32 reserved
//             | "SYDRAEND"                                                           64 bytes
// Versions 1 and 2 differ only in the block encoding; both are read. All integers
// little-endian. The header, footer and index are checked when a segment is opened; a
// block's CRC when it is decoded.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "server/storage/codec.hpp"
#include "server/storage/file_io.hpp"
#include "server/storage/segment_store.hpp"

namespace sydra::storage::segment {

inline constexpr std::size_t kHeaderBytes = 16;
inline constexpr std::size_t kFooterBytes = 64;
// The versions read; new segments get kNewestBlockFormat's.
inline constexpr std::uint32_t kOldestVersion = 1;
inline constexpr std::uint32_t kNewestVersion = static_cast<std::uint32_t>(kNewestBlockFormat);

// The most points a block holds: what the writer cuts a series into and the parser accepts.
// Version 2 blocks are longer, to spread what each block costs whatever its length (an
// index entry of 36 bytes, the first timestamp and the interval, the column heads: about
// 60 bytes) over more points; a query that needs part of a block decodes all of it, still
// a few microseconds.
constexpr std::size_t max_block_points(BlockFormat format) noexcept {
  return format == BlockFormat::kGorilla ? 1024 : 4096;
}

struct BlockRef {
  Timestamp min_ts;
  Timestamp max_ts;
  std::uint64_t offset;
  std::uint32_t bytes;
  std::uint32_t points;
  std::uint32_t crc;
};

struct SeriesRef {
  SeriesId id;
  std::string_view key;  // points into the file's bytes
  std::uint32_t first_block;
  std::uint32_t block_count;
};

// A parsed index over a file's bytes (which must outlive it).
struct Index {
  BlockFormat format = kNewestBlockFormat;  // the header's version
  std::vector<SeriesRef> series;            // ascending id
  std::vector<BlockRef> blocks;
  std::uint64_t points = 0;
  Timestamp min_ts = 0;
  Timestamp max_ts = 0;
};

// Checks header, footer and index of a whole segment file; throws SegmentCorruption naming
// `name` and the problem. Never reads outside `bytes`.
Index parse(std::span<const std::byte> bytes, const std::string& name);

// Appends the points of block `b` of a file in `format` to `out` after checking its CRC
// (SegmentCorruption when it fails or the block does not decode).
void decode_block(std::span<const std::byte> file, BlockFormat format, const BlockRef& b,
                  const std::string& name, std::vector<Point>& out);

// An open, memory-mapped segment. Shared by every version that lists it; the mapping lives
// until the last reference goes, so a reader keeps working after compaction unlinks the file.
class File {
 public:
  static std::shared_ptr<File> open(const std::string& path, std::uint64_t number);
  ~File();
  File(const File&) = delete;
  File& operator=(const File&) = delete;

  std::span<const std::byte> bytes() const noexcept { return {data_, size_}; }
  const Index& index() const noexcept { return index_; }
  const SegmentInfo& info() const noexcept { return info_; }
  const std::string& path() const noexcept { return path_; }
  const SeriesRef* find(SeriesId id) const noexcept;
  // Appends the points of `s` with ts in [start, end], decoding only the blocks that overlap.
  void read(const SeriesRef& s, Timestamp start, Timestamp end, std::vector<Point>& out) const;

 private:
  File() = default;
  std::string path_;
  const std::byte* data_ = nullptr;
  std::size_t size_ = 0;
  Index index_;
  SegmentInfo info_{};
};

// Streams a new segment into <dir>/seg-<number>.sdb.tmp; finish() completes, fsyncs and
// renames it. Dropped unfinished, it removes the temporary file. `format` is the newest but
// in tests, which write older versions to check that they stay readable.
class Writer {
 public:
  Writer(const std::string& dir, std::uint64_t number, BlockFormat format = kNewestBlockFormat);
  ~Writer();
  Writer(const Writer&) = delete;
  Writer& operator=(const Writer&) = delete;

  // Points sorted by ts, unique; series in ascending id order. Empty series are skipped.
  void add_series(SeriesId id, std::string_view key, std::span<const Point> points);
  // Returns the final path.
  std::string finish();

 private:
  void flush();

  std::string dir_;
  std::string path_;
  std::string tmp_path_;
  BlockFormat format_;
  io::Fd fd_;
  std::vector<std::byte> out_;    // not yet written
  std::vector<std::byte> index_;  // the index, written at finish()
  std::vector<std::byte> scratch_;
  std::uint64_t offset_ = 0;  // file offset of out_[0] + out_.size()
  std::uint64_t points_ = 0;
  std::uint32_t series_ = 0;
  Timestamp min_ts_ = 0;
  Timestamp max_ts_ = 0;
  bool have_last_id_ = false;
  SeriesId last_id_ = 0;
  bool finished_ = false;
};

std::string file_name(std::uint64_t number);
bool parse_file_name(const std::string& name, std::uint64_t& number);

}  // namespace sydra::storage::segment
