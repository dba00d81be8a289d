// The segment store: versions of the segment list, published copy-on-write.
//
// A Version (the segment list oldest first, the flushed lsn, the next segment number) is
// immutable once published. Readers copy the shared_ptr to the current version under
// `version_mu` (a few instructions) and work on it without any lock; each segment is a
// shared_ptr<segment::File>, so a file that a later version dropped stays mapped for as long
// as some reader holds a version listing it, even after it is unlinked.
//
// Writers (add, drop_older_than, compact) serialise on `write_mu` and follow one order:
//   1. write any new segment (temp file, fsync, rename, fsync directory),
//   2. replace MANIFEST (temp file, fsync, rename, fsync directory): the commit point,
//   3. publish the new version to readers,
//   4. unlink the files no longer listed.
// A crash between steps leaves the old or the new manifest; open() removes the leftovers.
// The list order is the age order that resolves equal timestamps (later wins); compaction
// replaces a run of ADJACENT segments by one in the same place, so that order survives.
#include "server/storage/segment_store.hpp"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <filesystem>
#include <mutex>
#include <nlohmann/json.hpp>
#include <numeric>
#include <optional>
#include <set>
#include <system_error>

#include "server/storage/file_io.hpp"
#include "server/storage/merge.hpp"
#include "server/storage/segment_file.hpp"

namespace sydra::storage {
namespace {

namespace fs = std::filesystem;

constexpr const char* kManifest = "MANIFEST";
constexpr const char* kLockFile = "LOCK";
constexpr std::size_t kMaxCompactionInputs = 64;

struct Version {
  std::vector<std::shared_ptr<segment::File>> segments;  // oldest first
  Lsn flushed_lsn = 0;
  std::uint64_t next_number = 1;
};

std::string manifest_text(const Version& v) {
  nlohmann::json segments = nlohmann::json::array();
  for (const auto& s : v.segments) segments.push_back(s->info().number);
  const nlohmann::json doc = {{"format", "sydradb-manifest"},
                              {"version", 1},
                              {"flushed_lsn", v.flushed_lsn},
                              {"next_segment", v.next_number},
                              {"segments", segments}};
  return doc.dump(2) + "\n";
}

struct ManifestData {
  Lsn flushed_lsn = 0;
  std::uint64_t next_number = 1;
  std::vector<std::uint64_t> segments;
};

ManifestData read_manifest(const std::string& path) {
  const std::vector<std::byte> bytes = io::read_file(path);
  try {
    const auto doc = nlohmann::json::parse(reinterpret_cast<const char*>(bytes.data()),
                                           reinterpret_cast<const char*>(bytes.data()) + bytes.size());
    if (doc.at("format").get<std::string>() != "sydradb-manifest") throw std::runtime_error("unknown format");
    if (doc.at("version").get<int>() != 1) throw std::runtime_error("unsupported version");
    ManifestData m;
    m.flushed_lsn = doc.at("flushed_lsn").get<Lsn>();
    m.next_number = doc.at("next_segment").get<std::uint64_t>();
    m.segments = doc.at("segments").get<std::vector<std::uint64_t>>();
    std::set<std::uint64_t> seen;
    for (std::uint64_t n : m.segments) {
      if (n == 0 || n >= m.next_number || !seen.insert(n).second)
        throw std::runtime_error("bad segment number " + std::to_string(n));
    }
    return m;
  } catch (const std::exception& e) {
    throw std::runtime_error("manifest " + path + " is unreadable: " + e.what());
  }
}

// A file no version lists any more; one that cannot be deleted is an orphan that open()
// removes at the next start.
void unlink_quietly(const std::string& path) {
  try {
    io::unlink_file(path);
  } catch (const std::exception& e) {
    spdlog::warn("segments: cannot delete {} (removed at the next start): {}", path, e.what());
  }
}

}  // namespace

struct SegmentStore::Impl {
  std::string dir;
  io::Fd lock_fd;

  std::mutex write_mu;  // add, drop_older_than, compact
  mutable std::mutex version_mu;
  std::shared_ptr<const Version> version;
  std::atomic<Lsn> flushed{0};
  std::atomic<std::uint64_t> compactions{0};
  std::atomic<std::uint64_t> expired{0};

  std::shared_ptr<const Version> snapshot() const {
    std::lock_guard lk(version_mu);
    return version;
  }

  std::string broken;  // under write_mu: why the store takes no more writes (SegmentStoreBroken)

  // Under write_mu, first thing in every writer.
  void check_writable() const {
    if (!broken.empty())
      throw SegmentStoreBroken("the segment store " + dir + " takes no more writes: " + broken);
  }

  // Steps 2 and 3 of the write order (under write_mu). On failure the old MANIFEST and
  // version stay, and `added` (the new segment, if any) is deleted: it is listed nowhere.
  // When only the directory fsync after the rename failed, the new MANIFEST may or may not
  // survive a crash: nothing is deleted and the store stops taking writes.
  void commit(std::shared_ptr<const Version> next, const std::string& added = {}) {
    const std::string text = manifest_text(*next);
    try {
      io::replace_file_atomically(dir, kManifest, std::as_bytes(std::span(text.data(), text.size())));
    } catch (const io::DirSyncFailed& e) {
      broken = e.what();
      throw;
    } catch (...) {
      if (!added.empty()) unlink_quietly(added);
      throw;
    }
    flushed.store(next->flushed_lsn, std::memory_order_release);
    std::lock_guard lk(version_mu);
    version = std::move(next);
  }

  std::string segment_path(std::uint64_t number) const { return dir + "/" + segment::file_name(number); }
};

SegmentStore::SegmentStore(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
SegmentStore::~SegmentStore() = default;

std::unique_ptr<SegmentStore> SegmentStore::open(const std::string& dir) {
  auto impl = std::make_unique<Impl>();
  impl->dir = dir;
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw std::system_error(ec, "create segment directory " + dir);

  const std::string lock_path = dir + "/" + kLockFile;
  impl->lock_fd = io::open_file(lock_path, O_RDWR | O_CREAT);
  if (::flock(impl->lock_fd.get(), LOCK_EX | LOCK_NB) != 0) {
    if (errno == EWOULDBLOCK) throw DirectoryInUse("data directory " + dir + " is in use by another process");
    io::throw_errno("lock", lock_path);
  }

  // Leftovers of interrupted writes, and what is there.
  std::set<std::uint64_t> on_disk;
  for (const auto& entry : fs::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    std::uint64_t number;
    if (name.size() > 4 && name.compare(name.size() - 4, 4, ".tmp") == 0) {
      spdlog::info("segments: removing leftover {}", entry.path().string());
      unlink_quietly(entry.path().string());
    } else if (segment::parse_file_name(name, number)) {
      on_disk.insert(number);
    }
  }

  auto v = std::make_shared<Version>();
  const std::string manifest_path = dir + "/" + kManifest;
  if (fs::exists(manifest_path)) {
    const ManifestData m = read_manifest(manifest_path);
    v->flushed_lsn = m.flushed_lsn;
    v->next_number = m.next_number;
    for (std::uint64_t n : m.segments) {
      if (!on_disk.contains(n))
        throw SegmentCorruption("segment " + impl->segment_path(n) +
                                " is listed in the MANIFEST but missing");
      v->segments.push_back(segment::File::open(impl->segment_path(n), n));
      on_disk.erase(n);
    }
  } else if (!on_disk.empty()) {
    throw std::runtime_error("segment directory " + dir +
                             " holds segment files but no MANIFEST; refusing to guess which are valid");
  } else {
    const std::string text = manifest_text(*v);
    io::replace_file_atomically(dir, kManifest, std::as_bytes(std::span(text.data(), text.size())));
  }
  for (std::uint64_t n : on_disk) {
    spdlog::info("segments: removing {} (not in the MANIFEST)", impl->segment_path(n));
    unlink_quietly(impl->segment_path(n));
  }
  impl->flushed.store(v->flushed_lsn);
  impl->version = std::move(v);
  return std::unique_ptr<SegmentStore>(new SegmentStore(std::move(impl)));
}

Lsn SegmentStore::flushed_lsn() const noexcept {
  return impl_->flushed.load(std::memory_order_acquire);
}

SegmentInfo SegmentStore::add(std::span<const SeriesPoints> series, Lsn flushed_lsn) {
  std::vector<std::size_t> order;
  for (std::size_t i = 0; i < series.size(); ++i)
    if (!series[i].points.empty()) order.push_back(i);
  std::sort(order.begin(), order.end(),
            [&](std::size_t a, std::size_t b) { return series[a].id < series[b].id; });
  for (std::size_t i = 1; i < order.size(); ++i) {
    if (series[order[i]].id == series[order[i - 1]].id)
      throw std::invalid_argument("SegmentStore::add: series id " + std::to_string(series[order[i]].id) +
                                  " given twice");
  }
  return add_streamed(
      [&](const SeriesEmit& emit) {
        for (std::size_t i : order) emit(series[i].id, series[i].key, series[i].points);
      },
      flushed_lsn);
}

SegmentInfo SegmentStore::add_streamed(const std::function<void(const SeriesEmit&)>& produce,
                                       Lsn flushed_lsn) {
  std::lock_guard lk(impl_->write_mu);
  impl_->check_writable();
  const auto cur = impl_->snapshot();
  auto next = std::make_shared<Version>(*cur);
  next->flushed_lsn = std::max(cur->flushed_lsn, flushed_lsn);
  SegmentInfo info{};
  const std::uint64_t number = cur->next_number;
  std::optional<segment::Writer> writer;  // opened at the first point: no file for nothing
  produce([&](SeriesId id, std::string_view key, std::span<const Point> points) {
    if (points.empty()) return;
    if (!writer) writer.emplace(impl_->dir, number);
    writer->add_series(id, key, points);
  });
  std::string path;
  if (writer) {
    path = writer->finish();
    try {
      next->segments.push_back(segment::File::open(path, number));
    } catch (...) {
      unlink_quietly(path);
      throw;
    }
    next->next_number = number + 1;
    info = next->segments.back()->info();
  }
  impl_->commit(std::move(next), path);
  return info;
}

void SegmentStore::read(SeriesId id, Timestamp start, Timestamp end, std::vector<Point>& out,
                        std::vector<std::size_t>* run_ends) const {
  if (start > end) return;
  const auto v = impl_->snapshot();
  for (const auto& seg : v->segments) {
    if (seg->info().max_ts < start || seg->info().min_ts > end) continue;
    const std::size_t before = out.size();
    if (const segment::SeriesRef* s = seg->find(id)) seg->read(*s, start, end, out);
    if (run_ends != nullptr && out.size() > before) run_ends->push_back(out.size());
  }
}

void SegmentStore::for_each_series(const std::function<void(SeriesId, std::string_view key)>& fn) const {
  const auto v = impl_->snapshot();
  if (v->segments.size() == 1) {
    for (const auto& s : v->segments[0]->index().series) fn(s.id, s.key);
    return;
  }
  std::set<SeriesId> seen;
  for (auto it = v->segments.rbegin(); it != v->segments.rend(); ++it) {
    for (const auto& s : (*it)->index().series)
      if (seen.insert(s.id).second) fn(s.id, s.key);
  }
}

std::size_t SegmentStore::drop_older_than(Timestamp cutoff) {
  std::lock_guard lk(impl_->write_mu);
  impl_->check_writable();
  const auto cur = impl_->snapshot();
  auto next = std::make_shared<Version>(*cur);
  std::vector<std::string> dropped;
  std::erase_if(next->segments, [&](const std::shared_ptr<segment::File>& s) {
    if (s->info().max_ts >= cutoff) return false;
    dropped.push_back(s->path());
    return true;
  });
  if (dropped.empty()) return 0;
  impl_->commit(std::move(next));
  for (const auto& path : dropped) unlink_quietly(path);
  impl_->expired.fetch_add(dropped.size(), std::memory_order_relaxed);
  spdlog::info("segments: retention dropped {} segment(s) with every point before {}", dropped.size(),
               cutoff);
  return dropped.size();
}

bool SegmentStore::compact(std::uint64_t small_bytes, std::size_t min_inputs, bool force) {
  std::lock_guard lk(impl_->write_mu);
  impl_->check_writable();
  const auto cur = impl_->snapshot();
  const auto& segs = cur->segments;

  // The inputs: a run of adjacent segments (see the essay at the top).
  std::size_t first = 0;
  std::size_t count = 0;
  if (force) {
    // All of them; a lone segment only when it is in an older format (then this rewrites
    // it in the newest).
    count = segs.size();
    if (count == 1 && segs[0]->index().format == kNewestBlockFormat) count = 0;
  } else {
    min_inputs = std::max<std::size_t>(min_inputs, 2);
    for (std::size_t i = 0; i < segs.size();) {
      std::size_t j = i;
      while (j < segs.size() && segs[j]->info().bytes < small_bytes && j - i < kMaxCompactionInputs) ++j;
      if (j - i >= min_inputs) {
        first = i;
        count = j - i;
        break;
      }
      i = j == i ? i + 1 : j;
    }
  }
  if (count == 0) return false;
  const std::span<const std::shared_ptr<segment::File>> inputs(segs.data() + first, count);

  const std::uint64_t number = cur->next_number;
  segment::Writer writer(impl_->dir, number);
  // Walk the union of series ids in ascending order (each input's index is sorted).
  std::vector<std::size_t> pos(count, 0);
  std::vector<Point> points;
  for (;;) {
    SeriesId id = 0;
    bool any = false;
    for (std::size_t k = 0; k < count; ++k) {
      const auto& s = inputs[k]->index().series;
      if (pos[k] < s.size() && (!any || s[pos[k]].id < id)) {
        id = s[pos[k]].id;
        any = true;
      }
    }
    if (!any) break;
    points.clear();
    std::string_view key;
    std::size_t sources = 0;
    for (std::size_t k = 0; k < count; ++k) {  // oldest first
      const auto& s = inputs[k]->index().series;
      if (pos[k] >= s.size() || s[pos[k]].id != id) continue;
      const segment::SeriesRef& ref = s[pos[k]++];
      key = ref.key;
      ++sources;
      const segment::BlockRef* b = inputs[k]->index().blocks.data() + ref.first_block;
      for (std::uint32_t i = 0; i < ref.block_count; ++i)
        segment::decode_block(inputs[k]->bytes(), inputs[k]->index().format, b[i], inputs[k]->path(), points);
    }
    // Oldest input first: for equal ts the newer segment's point comes later and wins.
    if (sources > 1) sort_last_wins(points);
    writer.add_series(id, key, points);
  }
  const std::string path = writer.finish();

  auto next = std::make_shared<Version>();
  next->flushed_lsn = cur->flushed_lsn;
  next->next_number = number + 1;
  next->segments.assign(segs.begin(), segs.begin() + static_cast<std::ptrdiff_t>(first));
  try {
    next->segments.push_back(segment::File::open(path, number));
  } catch (...) {
    unlink_quietly(path);
    throw;
  }
  next->segments.insert(next->segments.end(), segs.begin() + static_cast<std::ptrdiff_t>(first + count),
                        segs.end());
  std::uint64_t input_bytes = 0;
  for (const auto& s : inputs) input_bytes += s->info().bytes;
  const std::uint64_t output_bytes = next->segments[first]->info().bytes;
  impl_->commit(std::move(next), path);
  for (const auto& s : inputs) unlink_quietly(s->path());
  impl_->compactions.fetch_add(1, std::memory_order_relaxed);
  if (count == 1) {
    spdlog::info("segments: rewrote {} ({} bytes) in the newest format as {} ({} bytes)", inputs[0]->path(),
                 input_bytes, segment::file_name(number), output_bytes);
  } else {
    spdlog::info("segments: compacted {} segments ({} bytes) into {} ({} bytes)", count, input_bytes,
                 segment::file_name(number), output_bytes);
  }
  return true;
}

std::vector<SegmentInfo> SegmentStore::segments() const {
  const auto v = impl_->snapshot();
  std::vector<SegmentInfo> out;
  out.reserve(v->segments.size());
  for (const auto& s : v->segments) out.push_back(s->info());
  return out;
}

SegmentStoreStats SegmentStore::stats() const {
  const auto v = impl_->snapshot();
  SegmentStoreStats st;
  st.segments = v->segments.size();
  for (const auto& s : v->segments) {
    st.bytes += s->info().bytes;
    st.points += s->info().points;
  }
  st.compactions = impl_->compactions.load(std::memory_order_relaxed);
  st.segments_expired = impl_->expired.load(std::memory_order_relaxed);
  return st;
}

}  // namespace sydra::storage
