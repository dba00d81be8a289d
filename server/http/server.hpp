// The HTTP/1.1 server: one listener, N worker threads each with its own io_context. It
// knows requests, options and hooks, never the application: what a worker does with a
// request is a WorkerHandler the application builds on the worker's thread when the worker
// starts (Beast's examples keep their session just as ignorant). Beast stays inside
// server.cpp; this header needs none of it.
//
// The daemon runs two: the data listener (ingest and queries, `workers` threads) and the
// control listener (status, metrics, debug; one thread of its own), so that control
// requests never wait behind data requests.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <memory_resource>
#include <string>
#include <string_view>

#include "server/http/request.hpp"

namespace boost::asio {
class io_context;
}

namespace sydra::server::http {

struct ServerOptions {
  std::string name = "http";  // names the listener in log lines and errors ("data", "control")
  std::string address = "127.0.0.1";
  std::uint16_t port = 0;  // 0 = a free port (listen() returns it)
  unsigned workers = 1;
  std::string server_header;  // the Server header of every response; empty = none

  // Limits ("to prevent abuse", as Beast's examples say).
  std::uint64_t max_body_bytes = std::uint64_t{8} << 20;  // larger bodies get 413
  std::uint32_t max_header_bytes = 16 * 1024;             // larger headers get 431
  std::chrono::milliseconds read_timeout{10'000};         // a request's header and body, and a response
  std::chrono::milliseconds idle_timeout{60'000};         // a keep-alive connection between requests
  std::uint32_t max_connections = 1024;                   // more get a canned 503 and are closed
  std::chrono::milliseconds idle_tick{100};               // WorkerHandler::on_idle period

  // Lingering close (nginx's lingering_close): after an error answer that closes the
  // connection while the client may still be sending (a body over max_body_bytes, bytes
  // that do not parse), the server shuts its sending side and reads and discards what
  // arrives — up to linger_bytes, for at most linger_time — before it closes. Closing
  // with unread bytes would make the kernel reset the connection, and a reset can destroy
  // the answer before the client reads it. linger_bytes 0: close at once.
  std::uint64_t linger_bytes = std::uint64_t{8} << 20;
  std::chrono::milliseconds linger_time{5'000};
};

// The listener's counters, written by the server, read by anyone (relaxed atomics).
struct ConnectionCounters {
  std::atomic<std::uint64_t> connections_active{0};
  std::atomic<std::uint64_t> connections_total{0};     // accepted and served
  std::atomic<std::uint64_t> connections_rejected{0};  // refused at max_connections
  std::atomic<std::uint64_t> timeouts{0};              // closed by the read or idle timeout
  std::atomic<std::uint64_t> bad_requests{0};          // requests that did not parse (400)
  std::atomic<std::uint64_t> lingering_closes{0};      // error answers followed by a lingering close
};

// One exchange as the server saw it, for metrics and the access log.
struct Exchange {
  std::string_view route;  // Response::route; "malformed" for a request that did not parse
  int status = 0;
  double seconds = 0;  // from the complete request to the response written
};

// A worker's application side: built on the worker's thread when it starts, then used on
// that thread only (no locking needed). Destroyed after the worker's io_context, on
// whichever thread destroys the Server; on_stop() runs on the worker's thread before.
class WorkerHandler {
 public:
  virtual ~WorkerHandler() = default;
  // Where the worker's sessions allocate their buffers, parser, header fields and bodies.
  virtual std::pmr::memory_resource* memory() noexcept { return std::pmr::new_delete_resource(); }
  // Answers one request. An exception becomes a 500 (logged) and the worker keeps running.
  virtual Response handle(const Request& request) = 0;
  // After each response is written (or failed to be).
  virtual void on_response(const Exchange&) {}
  // Every ServerOptions::idle_tick while the worker runs, busy or not.
  virtual void on_idle() {}
  // On the worker's thread, once it serves no more.
  virtual void on_stop() {}
};

struct ServerHooks {
  // Called on each worker's thread before it serves anything; workers are 0..workers-1.
  std::function<std::unique_ptr<WorkerHandler>(unsigned worker)> worker_start;
};

class Server {
 public:
  // `counters` must outlive the server. The acceptor runs on `acceptor_context` when one
  // is given (the caller runs it), else on worker 0's thread.
  Server(ServerOptions options, ServerHooks hooks, ConnectionCounters& counters,
         boost::asio::io_context* acceptor_context = nullptr);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds and listens on address:port; returns the bound port (useful with port 0).
  // Throws std::system_error naming the listener and the address on failure.
  std::uint16_t listen();
  // Starts the workers (each builds its WorkerHandler) and accepting connections. Throws
  // what a worker_start hook threw (the server then serves nothing).
  void start();
  // Graceful shutdown, step one (from any thread): stop accepting, close idle keep-alive
  // connections, let requests in flight finish and close their connections after the
  // response.
  void begin_shutdown();
  // Step two: waits up to `timeout` for the workers to finish, then stops them. Returns
  // whether everything finished in time.
  bool wait_stopped(std::chrono::milliseconds timeout);

  const ServerOptions& options() const noexcept;

  struct Impl;  // public so that server.cpp's sessions can name it; defined there only

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace sydra::server::http
