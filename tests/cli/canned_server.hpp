// A stand-in for the daemon in the CLI tests: a loopback TCP listener that answers every
// connection with the same raw bytes, so the client can be tested without the real server.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cstdint>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>

namespace sydra::cli::test {

// A loopback socket bound to a free port: listening (and answering, or not) or not.
class CannedServer {
 public:
  enum class Behaviour {
    answer,         // read the request head, send the canned bytes, close
    never_accept,   // listen but never accept: connects succeed, no answer ever comes
    not_listening,  // bound but not listening: connections are refused
  };

  explicit CannedServer(std::string response, Behaviour behaviour = Behaviour::answer)
      : response_(std::move(response)) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd_ < 0) throw std::runtime_error("socket() failed");
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    address.sin_port = 0;
    socklen_t length = sizeof address;
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
      ::close(fd_);
      throw std::runtime_error("bind() failed");
    }
    port_ = ntohs(address.sin_port);
    if (behaviour != Behaviour::not_listening && ::listen(fd_, 16) != 0) {
      ::close(fd_);
      throw std::runtime_error("listen() failed");
    }
    if (behaviour == Behaviour::answer) thread_ = std::thread([this] { serve(); });
  }

  ~CannedServer() {
    ::shutdown(fd_, SHUT_RDWR);  // wakes the blocked accept()
    if (thread_.joinable()) thread_.join();
    ::close(fd_);
  }
  CannedServer(const CannedServer&) = delete;
  CannedServer& operator=(const CannedServer&) = delete;

  std::uint16_t port() const { return port_; }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  // The head of the last request received (request line and headers).
  std::string last_request() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return last_request_;
  }

  // An HTTP/1.1 answer with a body and a Content-Length.
  static std::string response(int status, const std::string& body,
                              const std::string& content_type = "application/json") {
    return "HTTP/1.1 " + std::to_string(status) + " Canned\r\nContent-Type: " + content_type +
           "\r\nContent-Length: " + std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body;
  }

 private:
  void serve() {
    for (;;) {
      const int client = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (client < 0) return;  // shut down
      timeval two_seconds{2, 0};
      ::setsockopt(client, SOL_SOCKET, SO_RCVTIMEO, &two_seconds, sizeof two_seconds);
      std::string head;
      char buffer[4096];
      while (head.find("\r\n\r\n") == std::string::npos) {
        const ssize_t n = ::recv(client, buffer, sizeof buffer, 0);
        if (n <= 0) break;
        head.append(buffer, static_cast<std::size_t>(n));
      }
      {
        std::lock_guard<std::mutex> lock(mutex_);
        last_request_ = head.substr(0, head.find("\r\n\r\n"));
      }
      std::size_t sent = 0;
      while (sent < response_.size()) {
        const ssize_t n = ::send(client, response_.data() + sent, response_.size() - sent, MSG_NOSIGNAL);
        if (n <= 0) break;
        sent += static_cast<std::size_t>(n);
      }
      ::shutdown(client, SHUT_WR);
      while (::recv(client, buffer, sizeof buffer, 0) > 0) {
      }
      ::close(client);
    }
  }

  std::string response_;
  int fd_ = -1;
  std::uint16_t port_ = 0;
  std::thread thread_;
  mutable std::mutex mutex_;
  std::string last_request_;
};

}  // namespace sydra::cli::test
