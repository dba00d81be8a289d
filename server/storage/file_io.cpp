#include "server/storage/file_io.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <system_error>

#ifdef SYDRA_FAULT_INJECTION
#include <algorithm>
#include <mutex>
#include <vector>

#include "server/storage/file_io_faults.hpp"
#endif

namespace sydra::storage::io {

namespace {

#ifdef SYDRA_FAULT_INJECTION
// The test-only seam (file_io_faults.hpp): the armed rules, checked at every call.
struct FaultState {
  std::mutex mu;
  std::vector<fault::Rule> rules;
  std::uint64_t fired = 0;
  std::uint64_t calls[fault::kCallCount] = {};
};

FaultState& faults() {
  static FaultState state;
  return state;
}

// The error to inject for this call (0 = none); `short_write` set when the rule asks for a
// write cut short.
int injected(fault::Call call, const std::string& path, bool* short_write = nullptr) {
  FaultState& f = faults();
  std::lock_guard lk(f.mu);
  ++f.calls[static_cast<int>(call)];
  for (fault::Rule& r : f.rules) {
    if (r.call != call || r.times == 0) continue;
    if (!r.path_contains.empty() && path.find(r.path_contains) == std::string::npos) continue;
    if (r.skip > 0) {
      --r.skip;
      continue;
    }
    if (r.times != fault::kForever) --r.times;
    ++f.fired;
    if (short_write != nullptr) *short_write = r.short_write;
    return r.error;
  }
  return 0;
}
#else
// The daemon's build: no seam, nothing to check.
constexpr int injected(int, const std::string&, bool* = nullptr) noexcept {
  return 0;
}
#endif

#ifdef SYDRA_FAULT_INJECTION
#define SYDRA_IO_CALL(name) fault::Call::name
#else
#define SYDRA_IO_CALL(name) 0
#endif

[[noreturn]] void fail(int error, const std::string& what, const std::string& path) {
  errno = error;
  throw_errno(what, path);
}

}  // namespace

#ifdef SYDRA_FAULT_INJECTION
namespace fault {

void arm(const Rule& rule) {
  std::lock_guard lk(faults().mu);
  faults().rules.push_back(rule);
}

void clear() {
  FaultState& f = faults();
  std::lock_guard lk(f.mu);
  f.rules.clear();
  f.fired = 0;
  std::fill(std::begin(f.calls), std::end(f.calls), 0);
}

std::uint64_t fired() {
  std::lock_guard lk(faults().mu);
  return faults().fired;
}

std::uint64_t calls(Call call) {
  std::lock_guard lk(faults().mu);
  return faults().calls[static_cast<int>(call)];
}

const char* to_string(Call call) {
  switch (call) {
    case Call::open:
      return "open";
    case Call::write:
      return "write";
    case Call::fsync:
      return "fsync";
    case Call::rename:
      return "rename";
    case Call::fsync_dir:
      return "fsync_dir";
    case Call::unlink:
      return "unlink";
    case Call::read:
      return "read";
    case Call::truncate:
      return "truncate";
  }
  return "?";
}

}  // namespace fault
#endif

Fd& Fd::operator=(Fd&& other) noexcept {
  if (this != &other) {
    reset();
    fd_ = other.release();
  }
  return *this;
}

Fd::~Fd() {
  reset();
}

void Fd::reset() noexcept {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

void throw_errno(const std::string& what, const std::string& path) {
  throw std::system_error(errno, std::generic_category(), what + " " + path);
}

Fd open_file(const std::string& path, int flags, unsigned mode) {
  if (const int e = injected(SYDRA_IO_CALL(open), path)) fail(e, "open", path);
  int fd;
  do {
    fd = ::open(path.c_str(), flags | O_CLOEXEC, mode);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) throw_errno("open", path);
  return Fd(fd);
}

void write_all(int fd, const void* data, std::size_t size, const std::string& path) {
  const auto* p = static_cast<const char*>(data);
  bool short_write = false;
  if (const int e = injected(SYDRA_IO_CALL(write), path, &short_write)) {
    // A disk that fills mid-write: part of the bytes land, then the error.
    if (short_write && size > 1) {
      [[maybe_unused]] const ssize_t n = ::write(fd, p, size / 2);
    }
    fail(e, "write", path);
  }
  while (size > 0) {
    const ssize_t n = ::write(fd, p, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_errno("write", path);
    }
    p += n;
    size -= static_cast<std::size_t>(n);
  }
}

void fsync_file(int fd, const std::string& path) {
  if (const int e = injected(SYDRA_IO_CALL(fsync), path)) fail(e, "fsync", path);
  if (::fsync(fd) != 0) throw_errno("fsync", path);
}

void fdatasync_file(int fd, const std::string& path) {
  if (const int e = injected(SYDRA_IO_CALL(fsync), path)) fail(e, "fdatasync", path);
  if (::fdatasync(fd) != 0) throw_errno("fdatasync", path);
}

void fsync_dir(const std::string& dir) {
  Fd fd = open_file(dir, O_RDONLY | O_DIRECTORY);
  if (const int e = injected(SYDRA_IO_CALL(fsync_dir), dir)) fail(e, "fsync directory", dir);
  if (::fsync(fd.get()) != 0) throw_errno("fsync directory", dir);
}

void rename_file(const std::string& from, const std::string& to) {
  if (const int e = injected(SYDRA_IO_CALL(rename), from)) fail(e, "rename", from);
  if (::rename(from.c_str(), to.c_str()) != 0) throw_errno("rename", from);
}

void unlink_file(const std::string& path) {
  if (const int e = injected(SYDRA_IO_CALL(unlink), path)) fail(e, "unlink", path);
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) throw_errno("unlink", path);
}

void truncate_file(int fd, std::uint64_t size, const std::string& path) {
  if (const int e = injected(SYDRA_IO_CALL(truncate), path)) fail(e, "truncate", path);
  if (::ftruncate(fd, static_cast<off_t>(size)) != 0) throw_errno("truncate", path);
}

bool is_disk_full(const std::exception& e) noexcept {
  const auto* se = dynamic_cast<const std::system_error*>(&e);
  return se != nullptr && (se->code() == std::errc::no_space_on_device || se->code().value() == EDQUOT);
}

std::uint64_t file_size(int fd, const std::string& path) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) throw_errno("stat", path);
  return static_cast<std::uint64_t>(st.st_size);
}

std::vector<std::byte> read_file(const std::string& path) {
  Fd fd = open_file(path, O_RDONLY);
  if (const int e = injected(SYDRA_IO_CALL(read), path)) fail(e, "read", path);
  std::vector<std::byte> bytes(file_size(fd.get(), path));
  std::size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::read(fd.get(), bytes.data() + done, bytes.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_errno("read", path);
    }
    if (n == 0) break;  // shrank while reading
    done += static_cast<std::size_t>(n);
  }
  bytes.resize(done);
  return bytes;
}

void replace_file_atomically(const std::string& dir, const std::string& name,
                             std::span<const std::byte> bytes) {
  const std::string path = dir + "/" + name;
  const std::string tmp = path + ".tmp";
  try {
    Fd fd = open_file(tmp, O_WRONLY | O_CREAT | O_TRUNC);
    write_all(fd.get(), bytes.data(), bytes.size(), tmp);
    fsync_file(fd.get(), tmp);
    fd.reset();
    rename_file(tmp, path);
  } catch (...) {
    ::unlink(tmp.c_str());  // best effort: open() of the store removes leftovers too
    throw;
  }
  try {
    fsync_dir(dir);
  } catch (const std::system_error& e) {
    throw DirSyncFailed(e.what());
  }
}

}  // namespace sydra::storage::io
