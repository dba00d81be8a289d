// One keep-alive HTTP/1.1 client connection over plain blocking sockets, for the load
// generators in bench/ (tsdb_load, tsdb_dataset, remote_bench): no allocation per request
// beyond the answer, a 10 s send/receive timeout; answers with a Content-Length or chunked (as
// VictoriaMetrics streams exports).
#pragma once

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <string>
#include <string_view>
#include <utility>

namespace sydra::bench {

// Percent-encoding of a query parameter value (RFC 3986 unreserved characters stay).
inline std::string url_encode(std::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (const char c : text) {
    const auto u = static_cast<unsigned char>(c);
    if (std::isalnum(u) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += c;
    } else {
      out += '%';
      out += kHex[u >> 4];
      out += kHex[u & 15];
    }
  }
  return out;
}

// Splits "http://HOST:PORT" (a trailing slash allowed, no path) into host and port.
inline bool parse_http_url(std::string url, std::string& host, std::string& port) {
  if (url.rfind("http://", 0) != 0) return false;
  url = url.substr(7);
  if (!url.empty() && url.back() == '/') url.pop_back();
  const auto colon = url.rfind(':');
  if (colon == std::string::npos || url.find('/') != std::string::npos) return false;
  host = url.substr(0, colon);
  port = url.substr(colon + 1);
  return !host.empty() && !port.empty();
}

class HttpConnection {
 public:
  HttpConnection(std::string host, std::string port) : host_(std::move(host)), port_(std::move(port)) {}
  ~HttpConnection() { close(); }
  HttpConnection(const HttpConnection&) = delete;
  HttpConnection& operator=(const HttpConnection&) = delete;

  // Sends a request and reads its answer; the status, or -1 on a transport error (the
  // connection is then closed and reopened by the next request).
  int request(std::string_view head, std::string_view body, std::string& answer) {
    if (fd_ < 0 && !connect()) return -1;
    iovec parts[2] = {{const_cast<char*>(head.data()), head.size()},
                      {const_cast<char*>(body.data()), body.size()}};
    std::size_t total = head.size() + body.size();
    int count = body.empty() ? 1 : 2;
    iovec* iov = parts;
    while (total > 0) {
      const ssize_t n = ::writev(fd_, iov, count);
      if (n <= 0) return fail();
      auto left = static_cast<std::size_t>(n);
      total -= left;
      while (count > 0 && left >= iov->iov_len) {
        left -= iov->iov_len;
        ++iov;
        --count;
      }
      if (count > 0) {
        iov->iov_base = static_cast<char*>(iov->iov_base) + left;
        iov->iov_len -= left;
      }
    }
    return read_answer(answer);
  }

 private:
  bool connect() {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* result = nullptr;
    if (::getaddrinfo(host_.c_str(), port_.c_str(), &hints, &result) != 0) return false;
    for (addrinfo* a = result; a != nullptr; a = a->ai_next) {
      const int fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
      if (fd < 0) continue;
      if (::connect(fd, a->ai_addr, a->ai_addrlen) == 0) {
        const int one = 1;
        ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        timeval timeout{10, 0};
        ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
        ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
        fd_ = fd;
        break;
      }
      ::close(fd);
    }
    ::freeaddrinfo(result);
    buffer_.clear();
    return fd_ >= 0;
  }

  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

  int fail() {
    close();
    return -1;
  }

  bool fill() {
    char chunk[16384];
    const ssize_t n = ::recv(fd_, chunk, sizeof chunk, 0);
    if (n <= 0) return false;
    buffer_.append(chunk, static_cast<std::size_t>(n));
    return true;
  }

  int read_answer(std::string& answer) {
    std::size_t head_end;
    while ((head_end = buffer_.find("\r\n\r\n")) == std::string::npos) {
      if (!fill()) return fail();
    }
    const std::string_view head(buffer_.data(), head_end);
    if (head.size() < 12 || head.substr(0, 5) != "HTTP/") return fail();
    const int status = std::atoi(buffer_.c_str() + 9);
    std::size_t length = 0;
    bool close_after = false;
    bool chunked = false;
    std::size_t pos = head.find("\r\n");
    while (pos != std::string_view::npos && pos < head.size()) {
      const std::size_t next = head.find("\r\n", pos + 2);
      std::string line(head.substr(pos + 2, (next == std::string_view::npos ? head.size() : next) - pos - 2));
      std::transform(line.begin(), line.end(), line.begin(), [](unsigned char c) { return std::tolower(c); });
      if (line.rfind("content-length:", 0) == 0) length = std::strtoull(line.c_str() + 15, nullptr, 10);
      if (line.rfind("connection:", 0) == 0 && line.find("close") != std::string::npos) close_after = true;
      if (line.rfind("transfer-encoding:", 0) == 0 && line.find("chunked") != std::string::npos)
        chunked = true;
      pos = next;
    }
    buffer_.erase(0, head_end + 4);
    answer.clear();
    if (chunked) {
      // chunk = hex size CRLF data CRLF; the last has size 0 (no trailers expected).
      for (;;) {
        std::size_t line_end;
        while ((line_end = buffer_.find("\r\n")) == std::string::npos) {
          if (!fill()) return fail();
        }
        const std::size_t size = std::strtoull(buffer_.c_str(), nullptr, 16);
        while (buffer_.size() < line_end + 2 + size + 2) {
          if (!fill()) return fail();
        }
        answer.append(buffer_, line_end + 2, size);
        buffer_.erase(0, line_end + 2 + size + 2);
        if (size == 0) break;
      }
    } else {
      while (buffer_.size() < length) {
        if (!fill()) return fail();
      }
      answer.assign(buffer_, 0, length);
      buffer_.erase(0, length);
    }
    if (close_after) close();
    return status;
  }

  std::string host_;
  std::string port_;
  int fd_ = -1;
  std::string buffer_;
};

}  // namespace sydra::bench
