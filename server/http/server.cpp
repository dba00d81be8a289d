// Sessions, workers and the listener. The shape is Beast's async server example: the
// listener accepts (do_accept / on_accept) and hands each connection to a worker; a
// session reads a request (do_read / on_read), answers it (respond / on_write) and loops,
// with a timeout on every read and write and limits on header and body size.
//
// Threads: the listener runs on the daemon's io_context; each worker thread runs its own
// io_context and owns its sessions (registered in Worker::sessions, touched only on that
// thread). Sessions are created on their worker's thread, so their buffers, parser and
// messages are allocated on the worker's allocator shard (PoolResource over the default
// allocator, whose calling thread is bound to the shard).

#include "server/http/server.hpp"

#include <spdlog/spdlog.h>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cstring>
#include <future>
#include <memory_resource>
#include <optional>
#include <thread>
#include <unordered_set>
#include <vector>

#include "alloc/adapters.hpp"
#include "server/api/app.hpp"
#include "server/config.hpp"

namespace sydra::server {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = asio::ip::tcp;

namespace {

using PmrAlloc = std::pmr::polymorphic_allocator<char>;
using Fields = bhttp::basic_fields<PmrAlloc>;
using RequestBody = bhttp::basic_string_body<char, std::char_traits<char>, PmrAlloc>;
using RequestParser = bhttp::request_parser<RequestBody, PmrAlloc>;
using ReadBuffer = beast::basic_flat_buffer<PmrAlloc>;

constexpr std::size_t kReadChunk = 4096;

constexpr char kTooManyConnections[] =
    "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nConnection: close\r\n"
    "Content-Length: 33\r\n\r\n{\"error\":\"too many connections\"}\n";

class Session;

struct Worker {
  explicit Worker(unsigned worker_id) : id(worker_id) {}
  unsigned id;
  // Declared before the io_context so that they outlive it: destroying the io_context
  // destroys pending handlers, hence sessions, which unregister themselves here.
  std::unordered_set<Session*> sessions;  // this worker's thread only
  bool stopping = false;                  // this worker's thread only
  asio::io_context ioc{1};
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> guard{ioc.get_executor()};
  asio::steady_timer quiescent_timer{ioc};
  std::thread thread;
  std::promise<void> done;
};

}  // namespace

struct HttpServer::Impl {
  Impl(asio::io_context& context, const Config& cfg, App& application)
      : acceptor_context(context),
        acceptor(context),
        accept_backoff(context),
        config(cfg),
        app(application) {}

  void do_accept();
  void on_accept(beast::error_code ec, tcp::socket socket);
  void run_worker(Worker& worker);
  void arm_quiescent_timer(Worker& worker);

  static constexpr std::chrono::milliseconds kAcceptBackoff{100};

  asio::io_context& acceptor_context;
  tcp::acceptor acceptor;
  asio::steady_timer accept_backoff;
  std::chrono::steady_clock::time_point last_accept_warning{};
  const Config& config;
  App& app;
  alloc::PoolResource resource{alloc::default_allocator()};
  std::vector<std::unique_ptr<Worker>> workers;
  std::size_t next_worker = 0;
  bool accepting = false;
};

namespace {

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket&& socket, Worker& worker, HttpServer::Impl& server)
      : stream_(std::move(socket)),
        worker_(worker),
        server_(server),
        alloc_(&server.resource),
        buffer_(server.config.max_header_bytes + kReadChunk * 16, alloc_) {
    worker_.sessions.insert(this);
  }

  ~Session() {
    worker_.sessions.erase(this);
    server_.app.counters().connections_active.fetch_sub(1, std::memory_order_relaxed);
  }

  void start() { do_read(); }

  // Shutdown from the worker thread: an idle connection closes now; one with a request
  // in flight closes after its response (respond() sees worker_.stopping).
  void on_shutdown() {
    if (!busy_) stream_.socket().cancel();
  }

 private:
  void do_read() {
    if (worker_.stopping) return do_close();
    busy_ = false;
    parser_.emplace(std::piecewise_construct, std::make_tuple(alloc_), std::make_tuple(alloc_));
    parser_->header_limit(server_.config.max_header_bytes);
    parser_->body_limit(server_.config.max_body_bytes);
    skip_empty_lines();
    if (buffer_.size() > 0) return read_request();  // a pipelined request is already here
    // Wait for the first bytes of the next request under the idle timeout; the rest of
    // the request then has read_timeout_ms to arrive.
    stream_.expires_after(std::chrono::milliseconds(server_.config.idle_timeout_ms));
    stream_.async_read_some(buffer_.prepare(kReadChunk),
                            beast::bind_front_handler(&Session::on_first_bytes, shared_from_this()));
  }

  void on_first_bytes(beast::error_code ec, std::size_t bytes) {
    if (ec) {
      if (ec == beast::error::timeout)
        server_.app.counters().timeouts.fetch_add(1, std::memory_order_relaxed);
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
    stream_.expires_after(std::chrono::milliseconds(server_.config.read_timeout_ms));
    bhttp::async_read_header(stream_, buffer_, *parser_,
                             beast::bind_front_handler(&Session::on_header, shared_from_this()));
  }

  void on_header(beast::error_code ec, std::size_t bytes) {
    if (ec || parser_->is_done()) return on_read(ec, bytes);
    const auto& message = parser_->get();
    // Chunked is the only transfer coding understood (RFC 9112 §6.1: otherwise 501).
    if (const auto te = message[bhttp::field::transfer_encoding];
        !te.empty() && !beast::iequals(te, "chunked")) {
      started_ = std::chrono::steady_clock::now();
      return reject(501, "unsupported Transfer-Encoding: only chunked is accepted");
    }
    if (message.version() >= 11 && beast::iequals(message[bhttp::field::expect], "100-continue")) {
      // A body announced over the limit is refused now, before the client sends it.
      if (const auto length = parser_->content_length(); length && *length > server_.config.max_body_bytes) {
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
      server_.app.counters().timeouts.fetch_add(1, std::memory_order_relaxed);
      return do_close();
    }
    started_ = std::chrono::steady_clock::now();
    if (ec == bhttp::error::body_limit) return reject(413, "request body exceeds max_body_bytes");
    if (ec == bhttp::error::header_limit || ec == bhttp::error::buffer_overflow)
      return reject(431, "request headers exceed max_header_bytes");
    if (ec.category() == bhttp::make_error_code(bhttp::error::bad_method).category()) {
      server_.app.counters().bad_requests.fetch_add(1, std::memory_order_relaxed);
      return reject(400, "malformed HTTP request: " + ec.message());
    }
    if (ec) return do_close();  // the connection failed

    const auto& message = parser_->get();
    http::Request request;
    request.method = message.method_string();
    request.target = message.target();
    http::split_target(request);
    request.authorization = message[bhttp::field::authorization];
    request.content_type = message[bhttp::field::content_type];
    request.body = message.body();
    if (message.version() >= 11 && message.find(bhttp::field::host) == message.end())
      return reject(400, "HTTP/1.1 request without a Host header");
    http::Router::Result result;
    try {
      result = server_.app.handle(request);
    } catch (const std::exception& e) {
      // One failing handler must never take its worker (and every connection on it) down.
      spdlog::error("{} {}: {}", request.method, request.path, e.what());
      result = {http::json_error(500, "internal error"), "error"};
    }
    route_ = result.route;
    head_ = message.method() == bhttp::verb::head;
    respond(std::move(result.response), !message.keep_alive());
  }

  void reject(int status, const std::string& why) {
    route_ = "malformed";
    respond(http::json_error(status, why), true);
  }

  void respond(http::Response r, bool close) {
    close_ = close || r.close || worker_.stopping;
    status_ = r.status;
    response_ = {};
    response_.version(11);
    response_.result(static_cast<unsigned>(r.status));
    response_.set(bhttp::field::server, "sydradb/" SYDRADB_VERSION);
    response_.set(bhttp::field::content_type, r.content_type);
    for (auto& [name, value] : r.headers) response_.set(name, value);
    response_.body() = std::move(r.body);
    if (response_.body().empty() || response_.body().back() != '\n') response_.body() += '\n';
    response_.keep_alive(!close_);
    response_.prepare_payload();
    if (head_) {  // the GET answer's headers, Content-Length included, and no body
      const auto length = response_.body().size();
      response_.body().clear();
      response_.content_length(length);
      head_ = false;
    }
    stream_.expires_after(std::chrono::milliseconds(server_.config.read_timeout_ms));
    bhttp::async_write(stream_, response_, beast::bind_front_handler(&Session::on_write, shared_from_this()));
  }

  void on_write(beast::error_code ec, std::size_t) {
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
    server_.app.metrics().record(worker_.id, route_, status_, seconds);
    if (auto access = spdlog::get("access")) access->info("{} {} {:.6f}s", route_, status_, seconds);
    // A quiescent point: this worker holds no reference into shared structures between
    // requests (QSBR).
    server_.app.allocator().quiescent();
    if (ec || close_) return do_close();
    do_read();
  }

  void do_close() {
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
    stream_.socket().close(ignored);
  }

  beast::tcp_stream stream_;
  Worker& worker_;
  HttpServer::Impl& server_;
  PmrAlloc alloc_;
  ReadBuffer buffer_;
  std::optional<RequestParser> parser_;
  bhttp::response<bhttp::string_body> response_;
  std::string_view route_ = http::Router::kOtherRoute;
  int status_ = 0;
  bool busy_ = false;   // a request is being read, handled or answered
  bool close_ = false;  // close after the response being written
  bool head_ = false;   // the request being answered is HEAD: send no body
  std::chrono::steady_clock::time_point started_;
};

}  // namespace

void HttpServer::Impl::do_accept() {
  if (!accepting) return;
  Worker& worker = *workers[next_worker];
  next_worker = (next_worker + 1) % workers.size();
  // The socket is created on the worker's io_context: its handlers run on that thread.
  acceptor.async_accept(worker.ioc, [this, &worker](beast::error_code ec, tcp::socket socket) {
    if (ec) {
      if (ec == asio::error::operation_aborted || !accepting) return;
      // Out of file descriptors (or another transient failure): retrying at once would
      // spin a core and flood the log. Back off, and say so at most once a second.
      const auto now = std::chrono::steady_clock::now();
      if (now - last_accept_warning >= std::chrono::seconds(1)) {
        // strerror, not ec.message(): accept errors are errno values, and UBSan's vptr check
        // trips over Boost's system error_category in sanitizer builds.
        spdlog::warn("accept failed: {}; retrying every {} ms", std::strerror(ec.value()),
                     kAcceptBackoff.count());
        last_accept_warning = now;
      }
      accept_backoff.expires_after(kAcceptBackoff);
      accept_backoff.async_wait([this](beast::error_code wait_ec) {
        if (!wait_ec && accepting) do_accept();
      });
      return;
    }
    ServerCounters& counters = app.counters();
    if (counters.connections_active.load(std::memory_order_relaxed) >= config.max_connections) {
      counters.connections_rejected.fetch_add(1, std::memory_order_relaxed);
      auto s = std::make_shared<tcp::socket>(std::move(socket));
      asio::async_write(*s, asio::buffer(kTooManyConnections, sizeof kTooManyConnections - 1),
                        [s](beast::error_code, std::size_t) {
                          beast::error_code ignored;
                          s->shutdown(tcp::socket::shutdown_send, ignored);
                          s->close(ignored);
                        });
    } else {
      counters.connections_active.fetch_add(1, std::memory_order_relaxed);
      counters.connections_total.fetch_add(1, std::memory_order_relaxed);
      asio::post(worker.ioc, [this, &worker, s = std::move(socket)]() mutable {
        std::make_shared<Session>(std::move(s), worker, *this)->start();
      });
    }
    do_accept();
  });
}

void HttpServer::Impl::arm_quiescent_timer(Worker& worker) {
  // An idle worker still passes a quiescent point every tick, so it never holds
  // reclamation back for longer than that.
  worker.quiescent_timer.expires_after(std::chrono::milliseconds(config.maintenance_interval_ms));
  worker.quiescent_timer.async_wait([this, &worker](beast::error_code ec) {
    if (ec || worker.stopping) return;
    app.allocator().quiescent();
    arm_quiescent_timer(worker);
  });
}

void HttpServer::Impl::run_worker(Worker& worker) {
  alloc::SmallPoolAllocator& allocator = app.allocator();
  if (allocator.shard_count() > 0) allocator.bind_current_thread(worker.id % allocator.shard_count());
  allocator.qsbr_online();
  arm_quiescent_timer(worker);
  try {
    worker.ioc.run();
  } catch (const std::exception& e) {
    spdlog::error("worker {} stopped by an exception: {}", worker.id, e.what());
  }
  allocator.qsbr_offline();
  worker.done.set_value();
}

HttpServer::HttpServer(asio::io_context& acceptor_context, const Config& config, App& app)
    : impl_(std::make_unique<Impl>(acceptor_context, config, app)) {
  const unsigned n = config.resolved_workers();
  for (unsigned i = 0; i < n; ++i) impl_->workers.push_back(std::make_unique<Worker>(i));
}

HttpServer::~HttpServer() {
  for (auto& w : impl_->workers) {
    w->ioc.stop();
    if (w->thread.joinable()) w->thread.join();
  }
}

std::uint16_t HttpServer::listen() {
  const Config& config = impl_->config;
  const tcp::endpoint endpoint(asio::ip::make_address(config.listen_address), config.http_port);
  auto fail = [&](const beast::error_code& ec, const char* what) {
    throw std::system_error(
        ec, std::string(what) + " " + config.listen_address + ":" + std::to_string(config.http_port));
  };
  beast::error_code ec;
  impl_->acceptor.open(endpoint.protocol(), ec);
  if (ec) fail(ec, "cannot open a socket for");
  impl_->acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  impl_->acceptor.bind(endpoint, ec);
  if (ec) fail(ec, "cannot bind");
  impl_->acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) fail(ec, "cannot listen on");
  return impl_->acceptor.local_endpoint().port();
}

void HttpServer::start() {
  for (auto& w : impl_->workers) {
    Worker& worker = *w;
    worker.thread = std::thread([this, &worker] { impl_->run_worker(worker); });
  }
  impl_->accepting = true;
  impl_->do_accept();
}

void HttpServer::begin_shutdown() {
  impl_->accepting = false;
  impl_->accept_backoff.cancel();
  beast::error_code ignored;
  impl_->acceptor.close(ignored);
  for (auto& w : impl_->workers) {
    Worker& worker = *w;
    asio::post(worker.ioc, [&worker] {
      worker.stopping = true;
      worker.quiescent_timer.cancel();
      for (Session* s : worker.sessions) s->on_shutdown();
      worker.guard.reset();  // run() returns once the last session is done
    });
  }
}

bool HttpServer::wait_stopped(std::chrono::milliseconds timeout) {
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

}  // namespace sydra::server
