// The HTTP/1.1 server: one acceptor on the caller's io_context, N worker threads each
// with its own io_context, bound to its own allocator shard. Beast stays inside server.cpp.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>

namespace boost::asio {
class io_context;
}

namespace sydra::server {

class App;
struct Config;

class HttpServer {
 public:
  HttpServer(boost::asio::io_context& acceptor_context, const Config& config, App& app);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds and listens on listen_address:http_port; returns the bound port (useful with
  // port 0). Throws std::system_error naming the address on failure.
  std::uint16_t listen();
  // Starts the workers and accepting connections.
  void start();
  // Graceful shutdown, step one: stop accepting, close idle keep-alive connections, let
  // requests in flight finish and close their connections after the response.
  void begin_shutdown();
  // Step two: waits up to `timeout` for the workers to finish, then stops them. Returns
  // whether everything finished in time.
  bool wait_stopped(std::chrono::milliseconds timeout);

  struct Impl;  // public so that server.cpp's sessions can name it; defined there only

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace sydra::server
