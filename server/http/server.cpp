// Sessions, workers and the listener. The shape is Beast's async server example: the
// listener accepts (do_accept / on_accept) and hands each connection to a worker; a
// session reads a request (do_read / on_read), answers it (respond / on_write) and loops,
// with a timeout on every read and write and limits on header and body size.
//
// Threads: the listener runs on the acceptor's io_context (the caller's, or worker 0's);
// each worker thread runs its own io_context and owns its sessions (registered in
// Worker::sessions, touched only on that thread). Sessions are created on their worker's
// thread and allocate through its WorkerHandler's memory resource.
//
// Who may touch what: Impl's acceptor, accepting flag, back-off timer and round-robin
// index belong to the acceptor's thread (begin_shutdown posts there); a Worker's sessions,
// stopping flag and handler belong to its thread; counters are atomics.

#include "server/http/server.hpp"

#include <spdlog/spdlog.h>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cstring>
#include <exception>
#include <future>
#include <optional>
#include <thread>
#include <unordered_set>
#include <vector>

namespace sydra::server::http {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = asio::ip::tcp;

namespace {

bool is_text(std::string_view content_type) noexcept {
  return content_type.starts_with("application/json") || content_type.starts_with("text/");
}

using PmrAlloc = std::pmr::polymorphic_allocator<char>;
using RequestBody = bhttp::basic_string_body<char, std::char_traits<char>, PmrAlloc>;
using RequestParser = bhttp::request_parser<RequestBody, PmrAlloc>;
using ReadBuffer = beast::basic_flat_buffer<PmrAlloc>;

constexpr std::size_t kReadChunk = 4096;
constexpr std::size_t kLingerChunk = 64 * 1024;
constexpr std::string_view kMalformedRoute = "malformed";
constexpr std::string_view kErrorRoute = "error";
constexpr std::string_view kUnlabelledRoute = "other";  // a handler that set no Response::route

constexpr char kTooManyConnections[] =
    "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nConnection: close\r\n"
    "Content-Length: 33\r\n\r\n{\"error\":\"too many connections\"}\n";

// "127.0.0.1:8080", "[::1]:8080".
std::string endpoint_text(const std::string& address, std::uint16_t port) {
  const bool v6 = address.find(':') != std::string::npos;
  return (v6 ? "[" + address + "]" : address) + ":" + std::to_string(port);
}

class Session;

struct Worker {
  explicit Worker(unsigned worker_id) : id(worker_id) {}
  unsigned id;
  // Declared before the io_context so that they outlive it: destroying the io_context
  // destroys pending handlers, hence sessions, which unregister themselves here and give
  // their memory back to the handler's resource.
  std::unique_ptr<WorkerHandler> handler;
  std::unordered_set<Session*> sessions;  // this worker's thread only
  bool stopping = false;                  // this worker's thread only
  asio::io_context ioc{1};
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> guard{ioc.get_executor()};
  asio::steady_timer idle_timer{ioc};
  std::thread thread;
  std::promise<void> started;  // set once the handler is built (or its exception)
  std::promise<void> done;
};

std::vector<std::unique_ptr<Worker>> make_workers(unsigned n) {
  std::vector<std::unique_ptr<Worker>> workers;
  for (unsigned i = 0; i < (n == 0 ? 1 : n); ++i) workers.push_back(std::make_unique<Worker>(i));
  return workers;
}

}  // namespace

struct Server::Impl {
  Impl(ServerOptions o, ServerHooks h, ConnectionCounters& c, asio::io_context* context)
      : options(std::move(o)),
        hooks(std::move(h)),
        counters(c),
        workers(make_workers(options.workers)),
        acceptor_context(context != nullptr ? *context : workers.front()->ioc),
        acceptor(acceptor_context),
        accept_backoff(acceptor_context) {}

  void do_accept();
  void on_accept(Worker& worker, beast::error_code ec, tcp::socket socket);
  void refuse(tcp::socket socket);
  void run_worker(Worker& worker);
  void arm_idle_timer(Worker& worker);
  std::string endpoint() const { return endpoint_text(options.address, options.port); }

  static constexpr std::chrono::milliseconds kAcceptBackoff{100};

  const ServerOptions options;
  const ServerHooks hooks;
  ConnectionCounters& counters;
  std::vector<std::unique_ptr<Worker>> workers;
  asio::io_context& acceptor_context;
  tcp::acceptor acceptor;
  asio::steady_timer accept_backoff;
  std::chrono::steady_clock::time_point last_accept_warning{};
  std::size_t next_worker = 0;
  bool accepting = false;
};

namespace {

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket&& socket, Worker& worker, Server::Impl& server)
      : stream_(std::move(socket)),
        worker_(worker),
        server_(server),
        options_(server.options),
        alloc_(worker.handler->memory()),
        buffer_(options_.max_header_bytes + kReadChunk * 16, alloc_) {
    worker_.sessions.insert(this);
    // Answers go out when written: with Nagle's algorithm a second small write (a pipelined
    // answer, the answer after a 100 Continue) would wait for the client's delayed ACK.
    beast::error_code ignored;
    stream_.socket().set_option(tcp::no_delay(true), ignored);
  }

  ~Session() {
    worker_.sessions.erase(this);
    server_.counters.connections_active.fetch_sub(1, std::memory_order_relaxed);
  }

  void start() { do_read(); }

  // Shutdown from the worker thread: an idle (or lingering) connection closes now; one with
  // a request in flight closes after its response (respond() sees worker_.stopping).
  void on_shutdown() {
    if (!busy_) stream_.socket().cancel();
  }

 private:
  void count(std::atomic<std::uint64_t> ConnectionCounters::*counter) {
    (server_.counters.*counter).fetch_add(1, std::memory_order_relaxed);
  }

  void do_read() {
    if (worker_.stopping) return do_close();
    busy_ = false;
    parser_.emplace(std::piecewise_construct, std::make_tuple(alloc_), std::make_tuple(alloc_));
    parser_->header_limit(options_.max_header_bytes);
    parser_->body_limit(options_.max_body_bytes);
    skip_empty_lines();
    if (buffer_.size() > 0) return read_request();  // a pipelined request is already here
    // Wait for the first bytes of the next request under the idle timeout; the rest of
    // the request then has read_timeout to arrive.
    stream_.expires_after(options_.idle_timeout);
    stream_.async_read_some(buffer_.prepare(kReadChunk),
                            beast::bind_front_handler(&Session::on_first_bytes, shared_from_this()));
  }

  void on_first_bytes(beast::error_code ec, std::size_t bytes) {
    if (ec) {
      if (ec == beast::error::timeout) count(&ConnectionCounters::timeouts);
      return do_close();
    }
    buffer_.commit(bytes);
    skip_empty_lines();
    if (buffer_.size() == 0) return do_read();  // only empty lines so far: wait for the request
    read_request();
  }

  // RFC 9112 §2.2: empty lines (CRLF) before a request line are ignored, not an error.
  void skip_empty_lines() {
    std::size_t n = 0;
    for (auto seq = buffer_.cdata(); n < seq.size(); ++n) {
      const char ch = static_cast<const char*>(seq.data())[n];
      if (ch != '\r' && ch != '\n') break;
    }
    buffer_.consume(n);
  }

  // The header first, so that `Expect: 100-continue` can be answered before the body
  // (curl sends it for bodies over 1 MiB and would otherwise wait a second), then the body.
  void read_request() {
    busy_ = true;
    stream_.expires_after(options_.read_timeout);
    bhttp::async_read_header(stream_, buffer_, *parser_,
                             beast::bind_front_handler(&Session::on_header, shared_from_this()));
  }

  void on_header(beast::error_code ec, std::size_t bytes) {
    if (ec) return on_read(ec, bytes);
    const auto& message = parser_->get();
    // Chunked is the only transfer coding understood (RFC 9112 §6.1: otherwise 501) — also
    // when the parser, not knowing the coding, took the message for one without a body.
    if (const auto te = message[bhttp::field::transfer_encoding];
        !te.empty() && !beast::iequals(te, "chunked")) {
      started_ = std::chrono::steady_clock::now();
      return reject(501, "unsupported Transfer-Encoding: only chunked is accepted");
    }
    if (parser_->is_done()) return on_read(ec, bytes);
    if (message.version() >= 11 && beast::iequals(message[bhttp::field::expect], "100-continue")) {
      // A body announced over the limit is refused now, before the client sends it.
      if (const auto length = parser_->content_length(); length && *length > options_.max_body_bytes) {
        started_ = std::chrono::steady_clock::now();
        return reject(413, "request body exceeds max_body_bytes");
      }
      static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
      return asio::async_write(stream_, asio::buffer(kContinue.data(), kContinue.size()),
                               beast::bind_front_handler(&Session::on_continue_sent, shared_from_this()));
    }
    read_body();
  }

  void on_continue_sent(beast::error_code ec, std::size_t) {
    if (ec) return do_close();
    read_body();
  }

  void read_body() {
    bhttp::async_read(stream_, buffer_, *parser_,
                      beast::bind_front_handler(&Session::on_read, shared_from_this()));
  }

  void on_read(beast::error_code ec, std::size_t) {
    if (ec == bhttp::error::end_of_stream) return do_close();
    if (ec == beast::error::timeout) {
      // Headers or body arriving too slowly: cut the client off.
      count(&ConnectionCounters::timeouts);
      return do_close();
    }
    started_ = std::chrono::steady_clock::now();
    if (ec == bhttp::error::body_limit) return reject(413, "request body exceeds max_body_bytes");
    if (ec == bhttp::error::header_limit || ec == bhttp::error::buffer_overflow)
      return reject(431, "request headers exceed max_header_bytes");
    if (ec.category() == bhttp::make_error_code(bhttp::error::bad_method).category()) {
      count(&ConnectionCounters::bad_requests);
      return reject(400, "malformed HTTP request: " + ec.message());
    }
    if (ec) return do_close();  // the connection failed

    const auto& message = parser_->get();
    Request request;
    request.method = message.method_string();
    request.target = message.target();
    split_target(request);
    request.authorization = message[bhttp::field::authorization];
    request.content_type = message[bhttp::field::content_type];
    request.content_encoding = message[bhttp::field::content_encoding];
    request.body = message.body();
    if (message.version() >= 11 && message.find(bhttp::field::host) == message.end())
      return reject(400, "HTTP/1.1 request without a Host header");
    Response response;
    try {
      response = worker_.handler->handle(request);
    } catch (const std::exception& e) {
      // One failing handler must never take its worker (and every connection on it) down.
      spdlog::error("{} {}: {}", request.method, request.path, e.what());
      response = json_error(500, "internal error");
      response.route = kErrorRoute;
    }
    if (response.route.empty()) response.route = kUnlabelledRoute;
    head_ = message.method() == bhttp::verb::head;
    respond(std::move(response), !message.keep_alive(), false);
  }

  // An answer to a request that could not be read whole: the connection closes after it,
  // lingering, since the client may still be sending.
  void reject(int status, const std::string& why) {
    Response r = json_error(status, why);
    r.route = kMalformedRoute;
    respond(std::move(r), true, true);
  }

  void respond(Response r, bool close, bool linger) {
    close_ = close || r.close || worker_.stopping;
    linger_ = linger && options_.linger_bytes > 0;
    route_ = r.route;
    status_ = r.status;
    response_ = {};
    response_.version(11);
    response_.result(static_cast<unsigned>(r.status));
    if (!options_.server_header.empty()) response_.set(bhttp::field::server, options_.server_header);
    if (r.status != 204) response_.set(bhttp::field::content_type, r.content_type);
    for (auto& [name, value] : r.headers) response_.set(name, value);
    response_.body() = std::move(r.body);
    // Text ends with a newline (curl output, logs); binary bodies and 204 are sent as they are.
    if (r.status != 204 && is_text(r.content_type) &&
        (response_.body().empty() || response_.body().back() != '\n'))
      response_.body() += '\n';
    response_.keep_alive(!close_);
    response_.prepare_payload();
    if (head_) {  // the GET answer's headers, Content-Length included, and no body
      const auto length = response_.body().size();
      response_.body().clear();
      response_.content_length(length);
      head_ = false;
    }
    stream_.expires_after(options_.read_timeout);
    bhttp::async_write(stream_, response_, beast::bind_front_handler(&Session::on_write, shared_from_this()));
  }

  void on_write(beast::error_code ec, std::size_t) {
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
    worker_.handler->on_response(Exchange{route_, status_, seconds});
    if (ec) return do_close();
    if (!close_) return do_read();
    // Bytes already here after the last request answered (a pipeline cut short by
    // `Connection: close`) would make closing reset the connection, too.
    if (linger_ || (buffer_.size() > 0 && options_.linger_bytes > 0)) return start_lingering();
    do_close();
  }

  // Lingering close (see ServerOptions): our side is shut, so the client sees the answer
  // and then end of stream; what it still sends is read and dropped until it closes too,
  // linger_bytes have come, or linger_time has passed.
  void start_lingering() {
    count(&ConnectionCounters::lingering_closes);
    busy_ = false;  // a shutdown cuts the lingering short
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
    const std::size_t buffered = buffer_.size();
    buffer_.consume(buffered);
    linger_left_ = options_.linger_bytes > buffered ? options_.linger_bytes - buffered : 0;
    stream_.expires_after(options_.linger_time);
    do_linger();
  }

  void do_linger() {
    if (worker_.stopping || linger_left_ == 0) return do_close();
    const std::size_t chunk =
        linger_left_ < kLingerChunk ? static_cast<std::size_t>(linger_left_) : kLingerChunk;
    stream_.async_read_some(buffer_.prepare(chunk),
                            beast::bind_front_handler(&Session::on_linger, shared_from_this()));
  }

  void on_linger(beast::error_code ec, std::size_t bytes) {
    if (ec) return do_close();  // the client closed, the time is up, or a shutdown
    linger_left_ -= bytes < linger_left_ ? bytes : linger_left_;
    do_linger();
  }

  void do_close() {
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
    stream_.socket().close(ignored);
  }

  beast::tcp_stream stream_;
  Worker& worker_;
  Server::Impl& server_;
  const ServerOptions& options_;
  PmrAlloc alloc_;
  ReadBuffer buffer_;
  std::optional<RequestParser> parser_;
  bhttp::response<bhttp::string_body> response_;
  std::string_view route_;
  int status_ = 0;
  std::uint64_t linger_left_ = 0;  // bytes the lingering close may still read
  bool busy_ = false;              // a request is being read, handled or answered
  bool close_ = false;             // close after the response being written
  bool linger_ = false;            // ... lingering
  bool head_ = false;              // the request being answered is HEAD: send no body
  std::chrono::steady_clock::time_point started_;
};

}  // namespace

void Server::Impl::do_accept() {
  if (!accepting) return;
  Worker& worker = *workers[next_worker];
  next_worker = (next_worker + 1) % workers.size();
  // The socket is created on the worker's io_context: its handlers run on that thread.
  acceptor.async_accept(worker.ioc, [this, &worker](beast::error_code ec, tcp::socket socket) {
    on_accept(worker, ec, std::move(socket));
  });
}

void Server::Impl::on_accept(Worker& worker, beast::error_code ec, tcp::socket socket) {
  if (ec) {
    if (ec == asio::error::operation_aborted || !accepting) return;
    // Out of file descriptors (or another transient failure): retrying at once would
    // spin a core and flood the log. Back off, and say so at most once a second.
    const auto now = std::chrono::steady_clock::now();
    if (now - last_accept_warning >= std::chrono::seconds(1)) {
      // strerror, not ec.message(): accept errors are errno values, and UBSan's vptr check
      // trips over Boost's system error_category in sanitizer builds.
      spdlog::warn("{} listener: accept failed: {}; retrying every {} ms", options.name,
                   std::strerror(ec.value()), kAcceptBackoff.count());
      last_accept_warning = now;
    }
    accept_backoff.expires_after(kAcceptBackoff);
    accept_backoff.async_wait([this](beast::error_code wait_ec) {
      if (!wait_ec && accepting) do_accept();
    });
    return;
  }
  if (counters.connections_active.load(std::memory_order_relaxed) >= options.max_connections) {
    refuse(std::move(socket));
  } else {
    counters.connections_active.fetch_add(1, std::memory_order_relaxed);
    counters.connections_total.fetch_add(1, std::memory_order_relaxed);
    asio::post(worker.ioc, [this, &worker, s = std::move(socket)]() mutable {
      std::make_shared<Session>(std::move(s), worker, *this)->start();
    });
  }
  do_accept();
}

void Server::Impl::refuse(tcp::socket socket) {
  counters.connections_rejected.fetch_add(1, std::memory_order_relaxed);
  auto s = std::make_shared<tcp::socket>(std::move(socket));
  asio::async_write(*s, asio::buffer(kTooManyConnections, sizeof kTooManyConnections - 1),
                    [s](beast::error_code, std::size_t) {
                      beast::error_code ignored;
                      s->shutdown(tcp::socket::shutdown_send, ignored);
                      s->close(ignored);
                    });
}

void Server::Impl::arm_idle_timer(Worker& worker) {
  worker.idle_timer.expires_after(options.idle_tick);
  worker.idle_timer.async_wait([this, &worker](beast::error_code ec) {
    if (ec || worker.stopping) return;
    worker.handler->on_idle();
    arm_idle_timer(worker);
  });
}

void Server::Impl::run_worker(Worker& worker) {
  try {
    worker.handler = hooks.worker_start(worker.id);
    if (!worker.handler) throw std::logic_error("worker_start returned no handler");
  } catch (...) {
    worker.started.set_exception(std::current_exception());
    worker.done.set_value();
    return;
  }
  worker.started.set_value();
  arm_idle_timer(worker);
  try {
    worker.ioc.run();
  } catch (const std::exception& e) {
    spdlog::error("{} worker {} stopped by an exception: {}", options.name, worker.id, e.what());
  }
  worker.handler->on_stop();
  worker.done.set_value();
}

Server::Server(ServerOptions options, ServerHooks hooks, ConnectionCounters& counters,
               asio::io_context* acceptor_context)
    : impl_(std::make_unique<Impl>(std::move(options), std::move(hooks), counters, acceptor_context)) {}

Server::~Server() {
  for (auto& w : impl_->workers) {
    w->ioc.stop();
    if (w->thread.joinable()) w->thread.join();
  }
}

const ServerOptions& Server::options() const noexcept {
  return impl_->options;
}

std::uint16_t Server::listen() {
  Impl& s = *impl_;
  auto fail = [&](const beast::error_code& ec, const char* what) {
    throw std::system_error(ec,
                            std::string(what) + " the " + s.options.name + " listener on " + s.endpoint());
  };
  beast::error_code ec;
  const auto address = asio::ip::make_address(s.options.address, ec);
  if (ec) fail(ec, "bad address for");
  const tcp::endpoint endpoint(address, s.options.port);
  s.acceptor.open(endpoint.protocol(), ec);
  if (ec) fail(ec, "cannot open a socket for");
  s.acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  s.acceptor.bind(endpoint, ec);
  if (ec) fail(ec, "cannot bind");
  s.acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) fail(ec, "cannot listen with");
  return s.acceptor.local_endpoint().port();
}

void Server::start() {
  Impl& s = *impl_;
  for (auto& w : s.workers) {
    Worker& worker = *w;
    worker.thread = std::thread([&s, &worker] { s.run_worker(worker); });
  }
  // Every worker has its handler before the first connection is handed to it.
  for (auto& w : s.workers) w->started.get_future().get();
  asio::post(s.acceptor_context, [&s] {
    s.accepting = true;
    s.do_accept();
  });
}

void Server::begin_shutdown() {
  Impl& s = *impl_;
  asio::post(s.acceptor_context, [&s] {
    s.accepting = false;
    s.accept_backoff.cancel();
    beast::error_code ignored;
    s.acceptor.close(ignored);
  });
  for (auto& w : s.workers) {
    Worker& worker = *w;
    asio::post(worker.ioc, [&worker] {
      worker.stopping = true;
      worker.idle_timer.cancel();
      for (Session* session : worker.sessions) session->on_shutdown();
      worker.guard.reset();  // run() returns once the last session is done
    });
  }
}

bool Server::wait_stopped(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  bool clean = true;
  for (auto& w : impl_->workers) {
    if (!w->thread.joinable()) continue;
    if (w->done.get_future().wait_until(deadline) != std::future_status::ready) {
      clean = false;
      w->ioc.stop();
    }
    w->thread.join();
  }
  return clean;
}

}  // namespace sydra::server::http
