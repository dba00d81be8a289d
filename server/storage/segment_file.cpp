#include "server/storage/segment_file.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>

#include "server/storage/codec.hpp"
#include "server/storage/crc32c.hpp"

namespace sydra::storage::segment {
namespace {

constexpr char kMagic[8] = {'S', 'Y', 'D', 'R', 'A', 'S', 'E', 'G'};
constexpr char kEndMagic[8] = {'S', 'Y', 'D', 'R', 'A', 'E', 'N', 'D'};
constexpr std::size_t kBlockRefBytes = 36;
constexpr std::size_t kWriteChunk = 1 << 20;

[[noreturn]] void corrupt(const std::string& name, const std::string& why) {
  throw SegmentCorruption("segment " + name + ": " + why);
}

void put_i64(std::vector<std::byte>& out, Timestamp v) {
  io::put_u64(out, static_cast<std::uint64_t>(v));
}

// Bounds-checked little-endian reader over the index.
class Cursor {
 public:
  Cursor(std::span<const std::byte> bytes, const std::string& name) : bytes_(bytes), name_(name) {}
  const std::byte* take(std::size_t n) {
    if (n > bytes_.size() - pos_) corrupt(name_, "index ends early");
    const std::byte* p = bytes_.data() + pos_;
    pos_ += n;
    return p;
  }
  std::uint32_t u32() { return io::get_u32(take(4)); }
  std::uint64_t u64() { return io::get_u64(take(8)); }
  bool done() const noexcept { return pos_ == bytes_.size(); }

 private:
  std::span<const std::byte> bytes_;
  const std::string& name_;
  std::size_t pos_ = 0;
};

}  // namespace

std::string file_name(std::uint64_t number) {
  char name[40];
  std::snprintf(name, sizeof name, "seg-%020llu.sdb", static_cast<unsigned long long>(number));
  return name;
}

bool parse_file_name(const std::string& name, std::uint64_t& number) {
  if (name.size() != 28 || name.compare(0, 4, "seg-") != 0 || name.compare(24, 4, ".sdb") != 0) return false;
  std::uint64_t v = 0;
  for (std::size_t i = 4; i < 24; ++i) {
    if (name[i] < '0' || name[i] > '9') return false;
    v = v * 10 + static_cast<std::uint64_t>(name[i] - '0');
  }
  number = v;
  return true;
}

Index parse(std::span<const std::byte> bytes, const std::string& name) {
  if (bytes.size() < kHeaderBytes + kFooterBytes)
    corrupt(name, "file too short (" + std::to_string(bytes.size()) + " bytes)");
  if (std::memcmp(bytes.data(), kMagic, 8) != 0) corrupt(name, "bad magic (not a sydradb segment)");
  const std::uint32_t version = io::get_u32(bytes.data() + 8);
  if (version < kOldestVersion || version > kNewestVersion)
    corrupt(name, "unsupported version " + std::to_string(version) + " (this build reads versions " +
                      std::to_string(kOldestVersion) + " to " + std::to_string(kNewestVersion) + ")");
  const std::byte* footer = bytes.data() + bytes.size() - kFooterBytes;
  if (std::memcmp(footer + 56, kEndMagic, 8) != 0) corrupt(name, "bad footer magic (file incomplete?)");
  if (crc32c(footer, 48) != io::get_u32(footer + 48)) corrupt(name, "footer CRC mismatch");

  Index index;
  index.format = static_cast<BlockFormat>(version);
  const std::uint64_t index_offset = io::get_u64(footer);
  const std::uint64_t index_bytes = io::get_u64(footer + 8);
  index.points = io::get_u64(footer + 16);
  const std::uint32_t series_count = io::get_u32(footer + 24);
  const std::uint32_t index_crc = io::get_u32(footer + 28);
  index.min_ts = static_cast<Timestamp>(io::get_u64(footer + 32));
  index.max_ts = static_cast<Timestamp>(io::get_u64(footer + 40));
  const std::uint64_t index_end = bytes.size() - kFooterBytes;
  if (index_offset < kHeaderBytes || index_offset > index_end || index_bytes != index_end - index_offset)
    corrupt(name, "index bounds out of range");
  const auto index_span = bytes.subspan(index_offset, index_bytes);
  if (crc32c(index_span.data(), index_span.size()) != index_crc) corrupt(name, "index CRC mismatch");

  // Each series takes at least 16 bytes: a count larger than that is a lie.
  if (series_count > index_bytes / 16) corrupt(name, "series count larger than the index");
  index.series.reserve(series_count);
  Cursor c(index_span, name);
  std::uint64_t points = 0;
  for (std::uint32_t i = 0; i < series_count; ++i) {
    SeriesRef s{};
    s.id = c.u64();
    if (!index.series.empty() && s.id <= index.series.back().id) corrupt(name, "series ids not ascending");
    const std::uint32_t key_len = c.u32();
    const std::byte* key = c.take(key_len);
    s.key = std::string_view(reinterpret_cast<const char*>(key), key_len);
    s.block_count = c.u32();
    if (s.block_count == 0) corrupt(name, "series without blocks");
    if (s.block_count > index_bytes / kBlockRefBytes) corrupt(name, "block count larger than the index");
    s.first_block = static_cast<std::uint32_t>(index.blocks.size());
    for (std::uint32_t b = 0; b < s.block_count; ++b) {
      BlockRef r{};
      r.min_ts = static_cast<Timestamp>(c.u64());
      r.max_ts = static_cast<Timestamp>(c.u64());
      r.offset = c.u64();
      r.bytes = c.u32();
      r.points = c.u32();
      r.crc = c.u32();
      if (r.min_ts > r.max_ts) corrupt(name, "block with min_ts > max_ts");
      if (b > 0 && r.min_ts <= index.blocks.back().max_ts) corrupt(name, "blocks of a series overlap");
      if (r.points == 0 || r.points > max_block_points(index.format))
        corrupt(name, "block point count out of range");
      if (r.offset < kHeaderBytes || r.offset > index_offset || r.bytes > index_offset - r.offset)
        corrupt(name, "block outside the data area");
      points += r.points;
      index.blocks.push_back(r);
    }
    index.series.push_back(s);
  }
  if (!c.done()) corrupt(name, "bytes left over after the index");
  if (points != index.points) corrupt(name, "point count in the footer does not match the index");
  return index;
}

void decode_block(std::span<const std::byte> file, BlockFormat format, const BlockRef& b,
                  const std::string& name, std::vector<Point>& out) {
  const auto bytes = file.subspan(b.offset, b.bytes);
  if (crc32c(bytes.data(), bytes.size()) != b.crc)
    corrupt(name, "block at offset " + std::to_string(b.offset) + ": CRC mismatch");
  try {
    decode_points(format, bytes, b.points, out);
  } catch (const CodecError& e) {
    corrupt(name, "block at offset " + std::to_string(b.offset) + ": " + e.what());
  }
}

std::shared_ptr<File> File::open(const std::string& path, std::uint64_t number) {
  io::Fd fd = io::open_file(path, O_RDONLY);
  const std::uint64_t size = io::file_size(fd.get(), path);
  std::shared_ptr<File> f(new File());
  f->path_ = path;
  if (size > 0) {
    void* map = ::mmap(nullptr, size, PROT_READ, MAP_SHARED, fd.get(), 0);
    if (map == MAP_FAILED) io::throw_errno("mmap", path);
    f->data_ = static_cast<const std::byte*>(map);
    f->size_ = size;
  }
  // The descriptor closes here; the mapping keeps the file's pages alive.
  f->index_ = parse(f->bytes(), path);
  f->info_ = SegmentInfo{number,           size,
                         f->index_.points, static_cast<std::uint32_t>(f->index_.series.size()),
                         f->index_.min_ts, f->index_.max_ts};
  return f;
}

File::~File() {
  if (data_ != nullptr) ::munmap(const_cast<std::byte*>(data_), size_);
}

const SeriesRef* File::find(SeriesId id) const noexcept {
  const auto& s = index_.series;
  const auto it =
      std::lower_bound(s.begin(), s.end(), id, [](const SeriesRef& r, SeriesId v) { return r.id < v; });
  return it != s.end() && it->id == id ? &*it : nullptr;
}

void File::read(const SeriesRef& s, Timestamp start, Timestamp end, std::vector<Point>& out) const {
  const BlockRef* first = index_.blocks.data() + s.first_block;
  const BlockRef* last = first + s.block_count;
  // Blocks are in ts order and do not overlap: the first one that can hold `start` is the
  // first whose max_ts >= start.
  const BlockRef* b =
      std::lower_bound(first, last, start, [](const BlockRef& r, Timestamp t) { return r.max_ts < t; });
  std::vector<Point> scratch;
  for (; b != last && b->min_ts <= end; ++b) {
    if (b->min_ts >= start && b->max_ts <= end) {
      decode_block(bytes(), index_.format, *b, path_, out);
      continue;
    }
    scratch.clear();
    decode_block(bytes(), index_.format, *b, path_, scratch);
    for (const Point& p : scratch)
      if (p.ts >= start && p.ts <= end) out.push_back(p);
  }
}

Writer::Writer(const std::string& dir, std::uint64_t number, BlockFormat format)
    : dir_(dir), path_(dir + "/" + file_name(number)), tmp_path_(path_ + ".tmp"), format_(format) {
  fd_ = io::open_file(tmp_path_, O_WRONLY | O_CREAT | O_TRUNC);
  for (char ch : kMagic) out_.push_back(static_cast<std::byte>(ch));
  io::put_u32(out_, static_cast<std::uint32_t>(format_));
  io::put_u32(out_, 0);
  offset_ = out_.size();
}

Writer::~Writer() {
  if (!finished_) {
    fd_.reset();
    ::unlink(tmp_path_.c_str());
  }
}

void Writer::flush() {
  io::write_all(fd_.get(), out_.data(), out_.size(), tmp_path_);
  out_.clear();
}

void Writer::add_series(SeriesId id, std::string_view key, std::span<const Point> points) {
  if (points.empty()) return;
  if (have_last_id_ && id <= last_id_) throw std::invalid_argument("segment writer: series ids must ascend");
  if (key.size() > UINT32_MAX) throw std::invalid_argument("segment writer: series key too long");
  for (std::size_t i = 1; i < points.size(); ++i) {
    if (points[i].ts <= points[i - 1].ts)
      throw std::invalid_argument("segment writer: points of series " + std::string(key) +
                                  " are not sorted by unique ts");
  }
  have_last_id_ = true;
  last_id_ = id;

  io::put_u64(index_, id);
  io::put_u32(index_, static_cast<std::uint32_t>(key.size()));
  for (char ch : key) index_.push_back(static_cast<std::byte>(ch));
  const std::size_t per_block = max_block_points(format_);
  const std::size_t blocks = (points.size() + per_block - 1) / per_block;
  io::put_u32(index_, static_cast<std::uint32_t>(blocks));
  for (std::size_t b = 0; b < blocks; ++b) {
    const auto chunk = points.subspan(b * per_block, std::min(per_block, points.size() - b * per_block));
    scratch_.clear();
    encode_points(format_, chunk, scratch_);
    put_i64(index_, chunk.front().ts);
    put_i64(index_, chunk.back().ts);
    io::put_u64(index_, offset_);
    io::put_u32(index_, static_cast<std::uint32_t>(scratch_.size()));
    io::put_u32(index_, static_cast<std::uint32_t>(chunk.size()));
    io::put_u32(index_, crc32c(scratch_.data(), scratch_.size()));
    out_.insert(out_.end(), scratch_.begin(), scratch_.end());
    offset_ += scratch_.size();
    if (out_.size() >= kWriteChunk) flush();
  }
  if (points_ == 0 || points.front().ts < min_ts_) min_ts_ = points.front().ts;
  if (points_ == 0 || points.back().ts > max_ts_) max_ts_ = points.back().ts;
  points_ += points.size();
  ++series_;
}

std::string Writer::finish() {
  const std::uint64_t index_offset = offset_;
  const std::uint32_t index_crc = crc32c(index_.data(), index_.size());
  out_.insert(out_.end(), index_.begin(), index_.end());
  std::vector<std::byte> footer;
  io::put_u64(footer, index_offset);
  io::put_u64(footer, index_.size());
  io::put_u64(footer, points_);
  io::put_u32(footer, series_);
  io::put_u32(footer, index_crc);
  put_i64(footer, min_ts_);
  put_i64(footer, max_ts_);
  io::put_u32(footer, crc32c(footer.data(), footer.size()));
  io::put_u32(footer, 0);
  for (char ch : kEndMagic) footer.push_back(static_cast<std::byte>(ch));
  out_.insert(out_.end(), footer.begin(), footer.end());
  flush();
  io::fsync_file(fd_.get(), tmp_path_);
  fd_.reset();
  io::rename_file(tmp_path_, path_);
  finished_ = true;
  try {
    io::fsync_dir(dir_);
  } catch (...) {
    // Listed nowhere yet: the caller writes it again later.
    ::unlink(path_.c_str());
    throw;
  }
  return path_;
}

}  // namespace sydra::storage::segment
