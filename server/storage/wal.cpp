// The write-ahead log. How appends, writes and fsyncs relate:
//
//   append()       under `mu`: takes the next lsn, frames the record into `buffer` (a memcpy)
//                  and writes it out with one write(2) before returning, so an appended
//                  record survives a crash of the process in every fsync mode (one syscall
//                  per ingest request, a few microseconds for a 1000-point record). When the
//                  file passes max_file_bytes it rotates, still
//                  under `mu`: buffer written, file fdatasynced, the next file created and the
//                  directory fsynced. So every file but the current one is complete and durable.
//   write-out      buffer -> file with write(2), under `mu`. From then on the records survive a
//                  crash of the process (not of the machine).
//   wait_durable   group commit under `sync_mu`: the first waiter becomes the leader; it drops
//                  `sync_mu`, writes the buffer out under `mu`, captures the current file (a
//                  shared_ptr, so a concurrent rotation cannot close the descriptor under the
//                  fsync) and the last appended lsn, releases `mu` and fdatasyncs: appends go on
//                  meanwhile. Waiters arriving during its fsync sleep on `sync_cv`; when it
//                  finishes they are either covered or elect the next leader. Waiters only sleep
//                  while a leader exists, and the leader always notifies, so none is forgotten.
//   flusher        a thread that every interval_ms fsyncs (`interval`).
// No thread holds `mu` and `sync_mu` at once; `durable` is an atomic that rotation and the
// leader both raise.
// Failures:
//   a failed write (ENOSPC, EIO, or a write cut short) is undone: the file is truncated back
//   to the end of the last whole record and the lsn is not used, so the log never holds a
//   torn record in its middle and the next append may succeed (once the disk has room).
//   Only when that truncation fails too is the log broken.
//   a failed fsync (of a file or at rotation) breaks the log: every later call throws
//   WalBroken (a failed fsync must not be retried as if the data were then safe: the kernel
//   may have dropped the dirty pages).
//   a failure to create the next file at rotation leaves the current one in use (its
//   records are already durable); rotation is tried again at the next append.
#include "server/storage/wal.hpp"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <mutex>
#include <system_error>
#include <thread>
#include <vector>

#include "server/storage/crc32c.hpp"
#include "server/storage/file_io.hpp"

namespace sydra::storage {

static_assert(std::endian::native == std::endian::little, "the WAL format is written little-endian");

namespace {

namespace fs = std::filesystem;

constexpr char kMagic[8] = {'S', 'Y', 'D', 'R', 'A', 'W', 'A', 'L'};
constexpr std::uint32_t kVersion = 1;
constexpr std::size_t kFileHeaderBytes = 16;
constexpr std::size_t kRecordHeaderBytes = 16;  // length, crc, lsn
constexpr std::size_t kWriteBufferBytes = 256 << 10;
// How far past the last good lsn a record may be and still count as "a valid record after
// the bad one" when telling a torn tail from corruption in the middle.
constexpr Lsn kResyncLsnWindow = Lsn{1} << 24;

std::string wal_file_name(Lsn first) {
  char name[40];
  std::snprintf(name, sizeof name, "wal-%020llu.log", static_cast<unsigned long long>(first));
  return name;
}

// Parses "wal-<20 digits>.log"; false for any other name.
bool parse_wal_file_name(const std::string& name, Lsn& first) {
  if (name.size() != 28 || name.compare(0, 4, "wal-") != 0 || name.compare(24, 4, ".log") != 0) return false;
  Lsn v = 0;
  for (std::size_t i = 4; i < 24; ++i) {
    if (name[i] < '0' || name[i] > '9') return false;
    v = v * 10 + static_cast<Lsn>(name[i] - '0');
  }
  first = v;
  return true;
}

struct WalFileEntry {
  Lsn first;
  std::string path;
};

std::vector<WalFileEntry> list_wal_files(const std::string& dir) {
  std::vector<WalFileEntry> files;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    Lsn first;
    if (entry.is_regular_file() && parse_wal_file_name(entry.path().filename().string(), first))
      files.push_back({first, entry.path().string()});
  }
  if (ec) throw std::system_error(ec, "list " + dir);
  std::sort(files.begin(), files.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  return files;
}

void append_file_header(std::vector<std::byte>& out) {
  for (char c : kMagic) out.push_back(static_cast<std::byte>(c));
  io::put_u32(out, kVersion);
  io::put_u32(out, 0);
}

enum class StopKind { clean, torn, invalid };

struct ScanResult {
  std::uint64_t good_end = 0;
  StopKind kind = StopKind::clean;
  std::string problem;
  Lsn last_lsn = 0;  // last good record's lsn (0 = none)
};

// Parses records from `offset` on. expected_first = 0 accepts any first lsn.
// A record that does not fit or whose CRC fails is "torn" (could be a write cut short);
// a whole record with a good CRC but an lsn out of sequence is "invalid".
ScanResult scan_records(std::span<const std::byte> bytes, std::uint64_t offset, Lsn expected_first,
                        const std::function<void(Lsn, std::span<const std::byte>)>& on_record) {
  ScanResult r;
  r.good_end = offset;
  Lsn expected = expected_first;
  while (offset < bytes.size()) {
    const std::uint64_t left = bytes.size() - offset;
    if (left < kRecordHeaderBytes) {
      r.kind = StopKind::torn;
      r.problem = "incomplete record header (" + std::to_string(left) + " bytes)";
      return r;
    }
    const std::byte* p = bytes.data() + offset;
    const std::uint32_t length = io::get_u32(p);
    const std::uint32_t crc = io::get_u32(p + 4);
    const Lsn lsn = io::get_u64(p + 8);
    if (length > left - kRecordHeaderBytes) {
      r.kind = StopKind::torn;
      r.problem = "record of " + std::to_string(length) + " payload bytes runs past the end of the file";
      return r;
    }
    if (crc32c(p + 8, 8 + std::size_t{length}) != crc) {
      r.kind = StopKind::torn;
      r.problem = "record CRC mismatch";
      return r;
    }
    if (lsn == 0 || (expected != 0 && lsn != expected)) {
      r.kind = StopKind::invalid;
      r.problem = "record lsn " + std::to_string(lsn) + " out of sequence (expected " +
                  (expected != 0 ? std::to_string(expected) : std::string("> 0")) + ")";
      return r;
    }
    on_record(lsn, std::span<const std::byte>(p + kRecordHeaderBytes, length));
    r.last_lsn = lsn;
    expected = lsn + 1;
    offset += kRecordHeaderBytes + length;
    r.good_end = offset;
  }
  return r;
}

// True when some whole record with a good CRC and an lsn just after `last_good` starts
// somewhere after `from`: then the bad bytes at `from` are not a torn tail.
bool valid_record_follows(std::span<const std::byte> bytes, std::uint64_t from, Lsn last_good) {
  for (std::uint64_t off = from + 1; off + kRecordHeaderBytes <= bytes.size(); ++off) {
    const std::byte* p = bytes.data() + off;
    const Lsn lsn = io::get_u64(p + 8);
    if (lsn <= last_good || lsn - last_good > kResyncLsnWindow) continue;
    const std::uint32_t length = io::get_u32(p);
    if (length > bytes.size() - off - kRecordHeaderBytes) continue;
    if (crc32c(p + 8, 8 + std::size_t{length}) == io::get_u32(p + 4)) return true;
  }
  return false;
}

void truncate_file(const std::string& path, std::uint64_t size) {
  io::Fd fd = io::open_file(path, O_WRONLY);
  io::truncate_file(fd.get(), size, path);
  io::fsync_file(fd.get(), path);
}

struct WalFile {
  io::Fd fd;
  std::string path;
  Lsn first;
};

struct ClosedFile {
  std::string path;
  Lsn first;
  Lsn last;  // an upper bound: the next file's first lsn - 1
};

}  // namespace

WalCorruption::WalCorruption(const std::string& file_, std::uint64_t offset_, const std::string& why)
    : std::runtime_error("WAL corruption in " + file_ + " at offset " + std::to_string(offset_) + ": " + why),
      file(file_),
      offset(offset_) {}

WalScan scan_wal_bytes(std::span<const std::byte> file,
                       const std::function<void(Lsn, std::span<const std::byte>)>& on_record) {
  WalScan scan;
  if (file.size() < kFileHeaderBytes) {
    scan.clean = file.empty();
    if (!scan.clean) scan.problem = "file shorter than its header";
    return scan;
  }
  if (std::memcmp(file.data(), kMagic, sizeof kMagic) != 0) {
    scan.clean = false;
    scan.problem = "bad magic (not a sydradb WAL file)";
    return scan;
  }
  if (const std::uint32_t version = io::get_u32(file.data() + 8); version != kVersion) {
    scan.clean = false;
    scan.problem = "unsupported WAL version " + std::to_string(version);
    return scan;
  }
  const ScanResult r = scan_records(file, kFileHeaderBytes, 0, on_record);
  scan.good_end = r.good_end;
  scan.clean = r.kind == StopKind::clean;
  scan.problem = r.problem;
  return scan;
}

WalReplayResult replay_wal(const std::string& dir, Lsn after,
                           const std::function<void(Lsn, std::span<const std::byte>)>& on_record) {
  WalReplayResult result;
  std::error_code ec;
  if (!fs::exists(dir, ec)) return result;
  const std::vector<WalFileEntry> files = list_wal_files(dir);

  Lsn expected = 0;  // the lsn the next file must start at (0 = the first file: any)
  for (std::size_t i = 0; i < files.size(); ++i) {
    const WalFileEntry& f = files[i];
    const bool last = i + 1 == files.size();
    if (!last && files[i + 1].first <= after + 1 && (expected == 0 || f.first == expected)) {
      // Every record here is <= after (the next file starts at or below after + 1), so its
      // points are in segments: not even read. checkpoint() deletes it later.
      expected = files[i + 1].first;
      result.last_lsn = std::max(result.last_lsn, files[i + 1].first - 1);
      continue;
    }
    if (expected != 0 && f.first != expected && (f.first < expected || f.first > after + 1)) {
      throw WalCorruption(f.path, 0,
                          "file starts at lsn " + std::to_string(f.first) + " but the previous one ends at " +
                              std::to_string(expected - 1));
    }

    const std::vector<std::byte> bytes = io::read_file(f.path);
    if (bytes.size() < kFileHeaderBytes) {
      if (!last) throw WalCorruption(f.path, 0, "file shorter than its header");
      spdlog::warn("WAL: {} has a torn header ({} bytes); removing it", f.path, bytes.size());
      io::unlink_file(f.path);
      result.truncated_bytes += bytes.size();
      break;
    }
    if (std::memcmp(bytes.data(), kMagic, sizeof kMagic) != 0)
      throw WalCorruption(f.path, 0, "bad magic (not a sydradb WAL file)");
    if (const std::uint32_t version = io::get_u32(bytes.data() + 8); version != kVersion)
      throw WalCorruption(f.path, 8, "unsupported WAL version " + std::to_string(version));

    const ScanResult r =
        scan_records(bytes, kFileHeaderBytes, f.first, [&](Lsn lsn, std::span<const std::byte> p) {
          if (lsn > after) {
            on_record(lsn, p);
            ++result.records;
          }
        });
    const Lsn file_last = r.last_lsn != 0 ? r.last_lsn : f.first - 1;
    result.last_lsn = std::max(result.last_lsn, file_last);
    expected = file_last + 1;
    if (r.kind == StopKind::clean) continue;
    if (!last || r.kind == StopKind::invalid) throw WalCorruption(f.path, r.good_end, r.problem);
    if (valid_record_follows(bytes, r.good_end, file_last))
      throw WalCorruption(f.path, r.good_end, r.problem + ", followed by valid records");
    spdlog::warn("WAL: torn tail in {} at offset {} ({}): truncating {} bytes", f.path, r.good_end, r.problem,
                 bytes.size() - r.good_end);
    truncate_file(f.path, r.good_end);
    result.truncated_bytes += bytes.size() - r.good_end;
  }
  return result;
}

struct Wal::Impl {
  WalOptions options;
  WalStats stats;

  std::mutex mu;  // the append state below
  std::shared_ptr<WalFile> file;
  std::uint64_t file_bytes = 0;     // header + every record framed into the current file
  std::uint64_t written_bytes = 0;  // of which written out: the end of its last whole record
  std::vector<std::byte> buffer;    // framed, not yet written
  Lsn next_lsn = 1;
  std::vector<ClosedFile> closed;  // oldest first

  std::atomic<Lsn> last_lsn{0};
  std::atomic<Lsn> durable{0};
  std::atomic<bool> broken{false};

  std::mutex sync_mu;  // group commit
  std::condition_variable sync_cv;
  bool syncing = false;

  std::mutex stop_mu;
  std::condition_variable stop_cv;
  bool stop = false;
  std::thread flusher;
  std::atomic<bool> reported_broken{false};

  std::mutex broken_mu;
  std::string broken_why;  // under broken_mu: the failure that broke the log

  void mark_broken(const std::string& why) {
    {
      std::lock_guard lk(broken_mu);
      if (broken_why.empty()) broken_why = why;
    }
    broken.store(true, std::memory_order_release);
  }

  void check_usable() {
    if (!broken.load(std::memory_order_acquire)) return;
    std::lock_guard lk(broken_mu);
    throw WalBroken("the WAL " + options.dir + " takes no more writes: " + broken_why);
  }

  void advance_durable(Lsn lsn) {
    Lsn cur = durable.load(std::memory_order_relaxed);
    while (cur < lsn && !durable.compare_exchange_weak(cur, lsn, std::memory_order_release)) {
    }
  }

  // A new file holding only its header; on failure nothing of it is left behind.
  std::shared_ptr<WalFile> create_file(Lsn first) {
    auto f = std::make_shared<WalFile>();
    f->first = first;
    f->path = options.dir + "/" + wal_file_name(first);
    try {
      f->fd = io::open_file(f->path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND);
      std::vector<std::byte> header;
      append_file_header(header);
      io::write_all(f->fd.get(), header.data(), header.size(), f->path);
      io::fsync_dir(options.dir);
    } catch (...) {
      f->fd.reset();
      ::unlink(f->path.c_str());
      throw;
    }
    return f;
  }

  // Under mu: writes the buffer (whole records) out. On failure the file is cut back to the
  // end of its last whole record and the buffer dropped; the caller un-appends its records.
  void write_out_locked() {
    if (buffer.empty()) return;
    try {
      io::write_all(file->fd.get(), buffer.data(), buffer.size(), file->path);
    } catch (const std::exception& e) {
      buffer.clear();
      try {
        io::truncate_file(file->fd.get(), written_bytes, file->path);
      } catch (const std::exception& t) {
        mark_broken(std::string(e.what()) + ", and cutting the partial record off failed: " + t.what());
      }
      throw;
    }
    written_bytes += buffer.size();
    buffer.clear();
  }

  // Under mu: fsyncs the current file (complete) and starts the next. A failed fsync breaks
  // the log; a failure to create the next file keeps the current one (retried later).
  void rotate_locked() {
    const auto t0 = std::chrono::steady_clock::now();
    try {
      io::fdatasync_file(file->fd.get(), file->path);
    } catch (const std::exception& e) {
      mark_broken(e.what());
      throw;
    }
    stats.fsync_ns.fetch_add(static_cast<std::uint64_t>((std::chrono::steady_clock::now() - t0).count()),
                             std::memory_order_relaxed);
    stats.fsyncs.fetch_add(1, std::memory_order_relaxed);
    advance_durable(next_lsn - 1);
    std::shared_ptr<WalFile> next = create_file(next_lsn);
    closed.push_back({file->path, file->first, next_lsn - 1});
    file = std::move(next);
    file_bytes = kFileHeaderBytes;
    written_bytes = kFileHeaderBytes;
    stats.rotations.fetch_add(1, std::memory_order_relaxed);
    stats.files.fetch_add(1, std::memory_order_relaxed);
  }

  // One fsync covering everything appended so far (the group commit leader's work).
  void sync_once() {
    std::shared_ptr<WalFile> f;
    Lsn target;
    {
      std::lock_guard lk(mu);
      check_usable();
      write_out_locked();
      f = file;
      target = next_lsn - 1;
    }
    if (target <= durable.load(std::memory_order_acquire)) return;
    const auto t0 = std::chrono::steady_clock::now();
    try {
      io::fdatasync_file(f->fd.get(), f->path);
    } catch (const std::exception& e) {
      mark_broken(e.what());
      throw;
    }
    stats.fsync_ns.fetch_add(static_cast<std::uint64_t>((std::chrono::steady_clock::now() - t0).count()),
                             std::memory_order_relaxed);
    stats.fsyncs.fetch_add(1, std::memory_order_relaxed);
    advance_durable(target);
  }

  void wait_durable(Lsn lsn) {
    lsn = std::min(lsn, last_lsn.load(std::memory_order_acquire));
    if (durable.load(std::memory_order_acquire) >= lsn) return;
    std::unique_lock lk(sync_mu);
    bool waited = false;
    bool led = false;
    while (durable.load(std::memory_order_acquire) < lsn) {
      check_usable();
      if (syncing) {
        waited = true;
        sync_cv.wait(lk);
        continue;
      }
      syncing = true;
      lk.unlock();
      try {
        sync_once();
      } catch (...) {
        lk.lock();
        syncing = false;
        sync_cv.notify_all();
        throw;
      }
      lk.lock();
      syncing = false;
      led = true;
      sync_cv.notify_all();
    }
    if (waited && !led) stats.group_commit_waiters.fetch_add(1, std::memory_order_relaxed);
  }

  void run_flusher() {
    const auto period = std::chrono::milliseconds(std::max<std::uint32_t>(options.interval_ms, 1));
    std::unique_lock lk(stop_mu);
    while (!stop_cv.wait_for(lk, period, [this] { return stop; })) {
      lk.unlock();
      try {
        if (options.sync == SyncMode::interval) {
          wait_durable(last_lsn.load(std::memory_order_acquire));
        } else {
          std::lock_guard g(mu);
          if (!broken.load(std::memory_order_acquire)) write_out_locked();
        }
      } catch (const std::exception& e) {
        // Once: a broken log stays broken and the engine says so.
        if (!reported_broken.exchange(true))
          spdlog::error("WAL: background sync of {} failed: {}", options.dir, e.what());
      }
      lk.lock();
    }
  }
};

Wal::Wal(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

std::unique_ptr<Wal> Wal::open(const WalOptions& options, Lsn next_lsn) {
  if (next_lsn == 0) next_lsn = 1;
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  std::error_code ec;
  fs::create_directories(options.dir, ec);
  if (ec) throw std::system_error(ec, "create WAL directory " + options.dir);

  std::vector<WalFileEntry> files = list_wal_files(options.dir);
  if (!files.empty() && files.back().first >= next_lsn) {
    // Only an empty file at exactly next_lsn (created, then nothing appended) may be reused.
    const WalFileEntry& f = files.back();
    std::error_code size_ec;
    const auto size = fs::file_size(f.path, size_ec);
    if (f.first != next_lsn || size_ec || size > kFileHeaderBytes)
      throw std::runtime_error("WAL file " + f.path + " holds records at or after lsn " +
                               std::to_string(next_lsn) + "; replay the WAL before opening it");
    files.pop_back();
  }
  for (std::size_t i = 0; i < files.size(); ++i) {
    const Lsn last = (i + 1 < files.size() ? files[i + 1].first : next_lsn) - 1;
    impl->closed.push_back({files[i].path, files[i].first, last});
  }
  impl->next_lsn = next_lsn;
  impl->last_lsn.store(next_lsn - 1);
  impl->durable.store(next_lsn - 1);
  impl->file = impl->create_file(next_lsn);
  impl->file_bytes = kFileHeaderBytes;
  impl->written_bytes = kFileHeaderBytes;
  impl->buffer.reserve(kWriteBufferBytes + (64 << 10));
  impl->stats.files.store(impl->closed.size() + 1);
  impl->flusher = std::thread([p = impl.get()] { p->run_flusher(); });
  return std::unique_ptr<Wal>(new Wal(std::move(impl)));
}

Wal::~Wal() {
  {
    std::lock_guard lk(impl_->stop_mu);
    impl_->stop = true;
  }
  impl_->stop_cv.notify_all();
  impl_->flusher.join();
  try {
    if (!impl_->broken.load()) impl_->wait_durable(impl_->last_lsn.load());
  } catch (const std::exception& e) {
    spdlog::error("WAL: final sync of {} failed: {}", impl_->options.dir, e.what());
  }
}

Lsn Wal::append(std::span<const std::byte> payload) {
  if (payload.size() > UINT32_MAX) throw std::length_error("WAL record larger than 4 GiB");
  Impl& w = *impl_;
  std::lock_guard lk(w.mu);
  w.check_usable();
  const Lsn lsn = w.next_lsn;
  const std::size_t start = w.buffer.size();
  const std::size_t framed = kRecordHeaderBytes + payload.size();
  w.buffer.resize(start + framed);
  std::byte* p = w.buffer.data() + start;
  const auto length = static_cast<std::uint32_t>(payload.size());
  std::memcpy(p, &length, 4);
  std::memcpy(p + 8, &lsn, 8);
  if (!payload.empty()) std::memcpy(p + kRecordHeaderBytes, payload.data(), payload.size());
  const std::uint32_t crc = crc32c(p + 8, 8 + payload.size());
  std::memcpy(p + 4, &crc, 4);

  // Written before the lsn is taken for good: a failed write leaves no trace (see the top).
  w.write_out_locked();
  w.next_lsn = lsn + 1;
  w.file_bytes += framed;
  w.last_lsn.store(lsn, std::memory_order_release);
  w.stats.records.fetch_add(1, std::memory_order_relaxed);
  w.stats.bytes_written.fetch_add(framed, std::memory_order_relaxed);
  if (w.file_bytes >= w.options.max_file_bytes) {
    try {
      w.rotate_locked();
    } catch (const WalBroken&) {
      throw;
    } catch (const std::exception& e) {
      if (w.broken.load(std::memory_order_acquire)) throw;  // the fsync failed
      // The record is written (and now durable); only the next file could not be made.
      spdlog::warn("WAL: cannot start the next file in {} ({}); appending to {} meanwhile", w.options.dir,
                   e.what(), w.file->path);
    }
  }
  return lsn;
}

void Wal::wait_durable(Lsn lsn) {
  impl_->wait_durable(lsn);
}

void Wal::sync() {
  impl_->wait_durable(impl_->last_lsn.load(std::memory_order_acquire));
}

void Wal::checkpoint(Lsn flushed) {
  Impl& w = *impl_;
  std::lock_guard lk(w.mu);
  if (!w.broken.load(std::memory_order_acquire) && w.file->first <= flushed &&
      w.file_bytes > kFileHeaderBytes) {
    // The current file holds flushed records. Every one of them: start the next file, so
    // that this one goes below. Many of them (an eighth of a file): the same, so that it
    // goes at the next checkpoint, instead of staying until the file fills.
    const bool all_flushed = w.next_lsn - 1 <= flushed;
    if (all_flushed || w.file_bytes >= w.options.max_file_bytes / 8) {
      try {
        w.rotate_locked();
      } catch (const std::exception& e) {
        spdlog::warn("WAL: cannot start the next file in {} at a checkpoint: {}", w.options.dir, e.what());
      }
    }
  }
  std::size_t n = 0;
  while (n < w.closed.size() && w.closed[n].last <= flushed) {
    try {
      io::unlink_file(w.closed[n].path);
    } catch (const std::exception& e) {
      spdlog::warn("WAL: cannot delete {} (it stays until the next checkpoint): {}", w.closed[n].path,
                   e.what());
      break;
    }
    ++n;
  }
  if (n == 0) return;
  w.closed.erase(w.closed.begin(), w.closed.begin() + static_cast<std::ptrdiff_t>(n));
  w.stats.files_deleted.fetch_add(n, std::memory_order_relaxed);
  w.stats.files.fetch_sub(n, std::memory_order_relaxed);
}

bool Wal::broken() const noexcept {
  return impl_->broken.load(std::memory_order_acquire);
}

std::string Wal::broken_reason() const {
  std::lock_guard lk(impl_->broken_mu);
  return impl_->broken_why;
}

Lsn Wal::last_lsn() const noexcept {
  return impl_->last_lsn.load(std::memory_order_acquire);
}
Lsn Wal::durable_lsn() const noexcept {
  return impl_->durable.load(std::memory_order_acquire);
}
const WalStats& Wal::stats() const noexcept {
  return impl_->stats;
}
SyncMode Wal::sync_mode() const noexcept {
  return impl_->options.sync;
}

}  // namespace sydra::storage
