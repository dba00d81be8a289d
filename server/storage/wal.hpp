// Write-ahead log: a directory of files wal-<first lsn, 20 digits>.log, each a sequence of
// CRC32C-framed records. The payload is opaque here (the engine encodes points into it).
//
//   file   = header (magic "SYDRAWAL", u32 version, u32 reserved) record*
//   record = u32 payload length | u32 crc32c(lsn bytes + payload) | u64 lsn | payload
//            (little-endian; lsn strictly increasing by 1 across files)
//
// Durability by SyncMode:
//   always    append() + wait_durable(lsn): the caller returns once its record is fsynced;
//             concurrent waiters share one fsync (group commit: one leader syncs up to the
//             highest appended lsn, the others wait on it).
//   interval  a background thread fsyncs every interval_ms when something was appended.
//   none      fsync only at rotation and close; the OS decides.
// A file rotates when it passes max_file_bytes; checkpoint(lsn) deletes every closed file
// whose records are all <= lsn (their points are in segments).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>

#include "server/storage/types.hpp"

namespace sydra::storage {

enum class SyncMode { always, interval, none };

struct WalOptions {
  std::string dir;  // created if missing
  SyncMode sync = SyncMode::interval;
  std::uint32_t interval_ms = 1000;
  std::uint64_t max_file_bytes = std::uint64_t{64} << 20;
};

// Corruption before the last record of the last file: start-up must stop. what() names
// the file and the byte offset.
class WalCorruption : public std::runtime_error {
 public:
  WalCorruption(const std::string& file, std::uint64_t offset, const std::string& why);
  std::string file;
  std::uint64_t offset;
};

// The log takes no more writes: an fsync failed (the kernel may have dropped the data it
// was to write), or a failed write could not be cut off. what() names the file and the call.
class WalBroken : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct WalReplayResult {
  Lsn last_lsn = 0;                   // highest lsn seen (0 when the log is empty)
  std::uint64_t records = 0;          // records passed to the callback
  std::uint64_t truncated_bytes = 0;  // torn tail cut off the last file (a warning was logged)
};

// Reads every record with lsn > after in order and calls on_record(lsn, payload). A torn or
// corrupt tail of the LAST file (a short or bad final record, or garbage after the last good
// record up to end of file) is truncated on disk and reported; anything bad before that
// throws WalCorruption. Runs before Wal::open on the same directory.
WalReplayResult replay_wal(const std::string& dir, Lsn after,
                           const std::function<void(Lsn, std::span<const std::byte>)>& on_record);

// Low-level reader for one file's bytes, used by replay_wal and the fuzzer: calls on_record
// for each good record and returns the offset where parsing stopped and why.
struct WalScan {
  std::uint64_t good_end = 0;  // offset just past the last good record
  bool clean = true;           // false when bytes after good_end are not a whole good record
  std::string problem;         // why it stopped early (empty when clean)
};
WalScan scan_wal_bytes(std::span<const std::byte> file,
                       const std::function<void(Lsn, std::span<const std::byte>)>& on_record);

struct WalStats {
  std::atomic<std::uint64_t> bytes_written{0};  // framed bytes appended
  std::atomic<std::uint64_t> records{0};
  std::atomic<std::uint64_t> fsyncs{0};
  std::atomic<std::uint64_t> fsync_ns{0};
  std::atomic<std::uint64_t> group_commit_waiters{0};  // waits satisfied by another thread's fsync
  std::atomic<std::uint64_t> rotations{0};
  std::atomic<std::uint64_t> files_deleted{0};
  std::atomic<std::uint64_t> files{0};  // files in the directory now
};

class Wal {
 public:
  // Opens for appending after replay: a new file starts at next_lsn (= replay's last_lsn + 1,
  // or the manifest's flushed lsn + 1 if greater).
  static std::unique_ptr<Wal> open(const WalOptions& options, Lsn next_lsn);
  ~Wal();  // syncs and closes

  // Appends one record; thread-safe; returns its lsn. Throws std::system_error on I/O error
  // (the record is then not in the log: a partial write is cut off, its lsn not used; with
  // ENOSPC it may be retried once there is room), WalBroken once the log takes no more writes.
  Lsn append(std::span<const std::byte> payload);
  // Blocks until every record <= lsn is on disk (group commit). Any mode. Throws WalBroken
  // or std::system_error when the fsync fails (the log is broken from then on).
  void wait_durable(Lsn lsn);
  // fsyncs everything appended so far (shutdown, tests).
  void sync();
  // Deletes closed files whose records are all <= lsn. When the current file starts at or
  // below `flushed` and every record in it is flushed, or an eighth of max_file_bytes is,
  // the next file is started first, so that the WAL keeps only what is not yet in segments.
  void checkpoint(Lsn flushed);
  // True once an fsync failed (see WalBroken).
  bool broken() const noexcept;
  std::string broken_reason() const;  // the failure that broke it, naming the file and the call

  Lsn last_lsn() const noexcept;
  Lsn durable_lsn() const noexcept;
  const WalStats& stats() const noexcept;
  SyncMode sync_mode() const noexcept;

 private:
  struct Impl;
  explicit Wal(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace sydra::storage
