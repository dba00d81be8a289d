#include "server/storage/file_io.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <system_error>

namespace sydra::storage::io {

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
  int fd;
  do {
    fd = ::open(path.c_str(), flags | O_CLOEXEC, mode);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) throw_errno("open", path);
  return Fd(fd);
}

void write_all(int fd, const void* data, std::size_t size, const std::string& path) {
  const auto* p = static_cast<const char*>(data);
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
  if (::fsync(fd) != 0) throw_errno("fsync", path);
}

void fdatasync_file(int fd, const std::string& path) {
  if (::fdatasync(fd) != 0) throw_errno("fdatasync", path);
}

void fsync_dir(const std::string& dir) {
  Fd fd = open_file(dir, O_RDONLY | O_DIRECTORY);
  fsync_file(fd.get(), dir);
}

std::uint64_t file_size(int fd, const std::string& path) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) throw_errno("stat", path);
  return static_cast<std::uint64_t>(st.st_size);
}

std::vector<std::byte> read_file(const std::string& path) {
  Fd fd = open_file(path, O_RDONLY);
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
  {
    Fd fd = open_file(tmp, O_WRONLY | O_CREAT | O_TRUNC);
    write_all(fd.get(), bytes.data(), bytes.size(), tmp);
    fsync_file(fd.get(), tmp);
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) throw_errno("rename", tmp);
  fsync_dir(dir);
}

}  // namespace sydra::storage::io
