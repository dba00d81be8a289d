// Small POSIX file helpers shared by the WAL and the segment store: an owning descriptor,
// whole writes and reads that retry on EINTR, fsync of files and directories, and the
// write-to-temp / fsync / rename / fsync-directory sequence that replaces a file atomically.
// Every failure throws std::system_error whose message names the operation and the path.
// Every storage I/O call (open, write, fsync, rename, directory fsync, unlink, read,
// truncate) goes through these functions, so a test can make any of them fail: see
// file_io_faults.hpp (the seam exists only in the test-only library sydra_file_io_faults;
// the daemon's sydra_file_io has no check on the path).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

namespace sydra::storage::io {

// An owned file descriptor (closed on destruction; -1 = none).
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) noexcept : fd_(fd) {}
  Fd(Fd&& other) noexcept : fd_(other.release()) {}
  Fd& operator=(Fd&& other) noexcept;
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd();

  int get() const noexcept { return fd_; }
  int release() noexcept {
    const int fd = fd_;
    fd_ = -1;
    return fd;
  }
  void reset() noexcept;

 private:
  int fd_ = -1;
};

[[noreturn]] void throw_errno(const std::string& what, const std::string& path);

Fd open_file(const std::string& path, int flags, unsigned mode = 0644);
void write_all(int fd, const void* data, std::size_t size, const std::string& path);
void fsync_file(int fd, const std::string& path);
void fdatasync_file(int fd, const std::string& path);
void fsync_dir(const std::string& dir);
void rename_file(const std::string& from, const std::string& to);
void unlink_file(const std::string& path);  // ENOENT is not an error
void truncate_file(int fd, std::uint64_t size, const std::string& path);
std::vector<std::byte> read_file(const std::string& path);
std::uint64_t file_size(int fd, const std::string& path);

// Thrown by replace_file_atomically when the rename happened but the directory fsync after it
// failed: the new content is in place but may not survive a crash of the machine.
class DirSyncFailed : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// True for the errors that mean "no space left" (ENOSPC, EDQUOT) in a std::system_error.
bool is_disk_full(const std::exception& e) noexcept;

// Writes `bytes` to <dir>/<name>.tmp, fsyncs it, renames it over <dir>/<name> and fsyncs
// the directory: afterwards the file has the old or the new content, never a mix. On a
// failure before the rename the temp file is removed and the old file is untouched.
void replace_file_atomically(const std::string& dir, const std::string& name,
                             std::span<const std::byte> bytes);

// Little-endian fixed-width fields (the formats are little-endian; so is every target).
inline void put_u32(std::vector<std::byte>& out, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<std::byte>(v >> (8 * i)));
}
inline void put_u64(std::vector<std::byte>& out, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<std::byte>(v >> (8 * i)));
}
inline std::uint32_t get_u32(const std::byte* p) noexcept {
  std::uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | static_cast<std::uint32_t>(p[i]);
  return v;
}
inline std::uint64_t get_u64(const std::byte* p) noexcept {
  std::uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<std::uint64_t>(p[i]);
  return v;
}

}  // namespace sydra::storage::io
