// A blocking HTTP/1.1 client on plain POSIX sockets for 127.0.0.1, for unit tests that run
// a server in-process: sends exact bytes, reads one response (headers, then Content-Length
// bytes of body) or everything until the server closes. Every wait is bounded.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace sydra::test {

struct LoopbackResponse {
  int status = 0;
  std::string head;  // status line and headers
  std::string body;
  bool has_header(std::string_view line) const { return head.find(line) != std::string::npos; }
};

class LoopbackClient {
 public:
  explicit LoopbackClient(std::uint16_t port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd_ < 0) throw std::runtime_error("socket: " + std::string(std::strerror(errno)));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      const int e = errno;
      ::close(fd_);
      throw std::runtime_error("connect to port " + std::to_string(port) + ": " + std::strerror(e));
    }
    const int one = 1;
    ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  ~LoopbackClient() { ::close(fd_); }
  LoopbackClient(const LoopbackClient&) = delete;
  LoopbackClient& operator=(const LoopbackClient&) = delete;

  // Writes all of `bytes` (blocking); false if the server reset or closed the connection.
  bool send(std::string_view bytes) {
    while (!bytes.empty()) {
      const ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
      if (n < 0) {
        if (errno == EINTR) continue;
        return false;
      }
      bytes.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
  }

  void shutdown_send() { ::shutdown(fd_, SHUT_WR); }

  // One response; nullopt if the server closes (or resets) first or `timeout` passes.
  std::optional<LoopbackResponse> read_response(
      std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      const auto end = buffer_.find("\r\n\r\n");
      if (end != std::string::npos && buffer_.compare(0, 9, "HTTP/1.1 ") == 0) {
        LoopbackResponse r;
        r.head = buffer_.substr(0, end + 2);
        r.status = std::atoi(buffer_.c_str() + 9);
        std::size_t length = 0;
        if (const auto at = lowered(r.head).find("\r\ncontent-length:"); at != std::string::npos)
          length = std::strtoull(r.head.c_str() + at + 17, nullptr, 10);
        if (buffer_.size() >= end + 4 + length) {
          r.body = buffer_.substr(end + 4, length);
          buffer_.erase(0, end + 4 + length);
          return r;
        }
      }
      if (!fill(deadline)) return std::nullopt;
    }
  }

  // Reads until the server closes; false if `timeout` passed first.
  bool wait_closed(std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!closed_)
      if (!fill(deadline) && !closed_) return false;
    return true;
  }
  bool reset() const noexcept { return reset_; }

 private:
  static std::string lowered(std::string s) {
    for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
  }

  // Reads what arrives before the deadline; false at the deadline or when the peer closed.
  bool fill(std::chrono::steady_clock::time_point deadline) {
    if (closed_) return false;
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) return false;
    char chunk[65536];
    const ssize_t n = ::recv(fd_, chunk, sizeof chunk, 0);
    if (n <= 0) {
      closed_ = true;
      reset_ = n < 0 && errno == ECONNRESET;
      return false;
    }
    buffer_.append(chunk, static_cast<std::size_t>(n));
    return true;
  }

  int fd_ = -1;
  std::string buffer_;
  bool closed_ = false;
  bool reset_ = false;
};

}  // namespace sydra::test
