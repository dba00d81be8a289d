// libFuzzer target: untrusted bytes through the daemon's real request path. The input is
// what a client sends on one connection to a real http::Server (server/http/server.cpp:
// sessions, Beast's parser with the configured limits, pipelining, 100-continue, lingering
// close) serving a real App (routing, per-route authentication, the handlers of /status,
// /health, /metrics and /debug/alloc/stats) — the daemon's code, not a copy of it — over a
// loopback TCP connection.
//
// Input: byte 0 picks how the bytes are cut into writes (1..31 bytes, or all at once, bits
// 0-4), the server (without a token, or with the token "fuzz-token", bit 5), the limits
// (the daemon's defaults, or the smallest the config allows, bit 6) and the listener (data
// or control, bit 7); the rest is what the client sends, after which it shuts its sending
// side and reads until the server closes.
//
// Anything the server would do wrong aborts: no close within the time bound (a hang), an
// answer that is not HTTP/1.1, a status the API does not use (500: a handler threw), an
// error body that is not {"error": "..."}, a protected path answered 200 without the token,
// more answers than requests. The requests are parsed again here, with Beast's parser and
// the same limits, only to know what each answer answers.
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/buffer.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>
#include <cctype>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "alloc/small_pool_allocator.hpp"
#include "server/api/app.hpp"
#include "server/config.hpp"
#include "server/http/server.hpp"

namespace {

namespace asio = boost::asio;
namespace bhttp = boost::beast::http;
using sydra::server::Listener;

constexpr std::string_view kToken = "fuzz-token";
constexpr int kMaxRequestsPerInput = 64;
constexpr int kCloseWithinMs = 5000;  // the server must have closed by then

[[noreturn]] void fail(const char* what, std::string_view detail = {}) {
  std::fprintf(stderr, "fuzz_http_request: %s: %.*s\n", what, static_cast<int>(detail.size()), detail.data());
  std::abort();
}

// A daemon's App and its two listeners, as run_daemon() builds them (without an engine:
// the storage endpoints have a fuzzer of their own, fuzz_ingest_parser).
struct Target {
  Target(std::string_view token, bool small_limits) {
    config.workers = 1;
    config.auth_token = std::string(token);
    config.http_port = 0;
    config.read_timeout_ms = 2000;
    if (small_limits) {
      config.max_header_bytes = 1024;
      config.max_body_bytes = 1024;
    }
    app = std::make_unique<sydra::server::App>(config, sydra::alloc::default_allocator());
    for (Listener l : {Listener::data, Listener::control}) {
      auto& server = servers[static_cast<int>(l)];
      server = std::make_unique<sydra::server::http::Server>(app->server_options(l), app->hooks(l),
                                                             app->connections(l));
      ports[static_cast<int>(l)] = server->listen();
      app->set_bound_port(l, ports[static_cast<int>(l)]);
      server->start();
    }
  }
  sydra::server::Config config;
  std::unique_ptr<sydra::server::App> app;
  std::unique_ptr<sydra::server::http::Server> servers[2];
  std::uint16_t ports[2] = {};
};

// Started once, never destroyed (their threads serve until the process exits).
Target& target(bool protected_target, bool small_limits) {
  static Target* targets[2][2] = {};
  Target*& t = targets[protected_target][small_limits];
  if (t == nullptr) t = new Target(protected_target ? kToken : "", small_limits);
  return *t;
}

// What the oracle parse learnt of one request.
struct Sent {
  std::string method, path, authorization;
  bool head = false;
};

using PmrAlloc = std::pmr::polymorphic_allocator<char>;
using RequestBody = bhttp::basic_string_body<char, std::char_traits<char>, PmrAlloc>;
using RequestParser = bhttp::request_parser<RequestBody, PmrAlloc>;

// The complete requests at the front of `stream`, as the server's parser reads them.
std::vector<Sent> parse_requests(std::string_view stream, std::uint32_t header_limit,
                                 std::uint64_t body_limit) {
  std::vector<Sent> sent;
  std::pmr::monotonic_buffer_resource resource;
  const PmrAlloc alloc(&resource);
  while (sent.size() < kMaxRequestsPerInput) {
    while (!stream.empty() && (stream.front() == '\r' || stream.front() == '\n')) stream.remove_prefix(1);
    if (stream.empty()) break;
    RequestParser parser(std::piecewise_construct, std::make_tuple(alloc), std::make_tuple(alloc));
    parser.header_limit(header_limit);
    parser.body_limit(body_limit);
    parser.eager(true);
    boost::beast::error_code ec;
    while (!ec && !parser.is_done()) {
      const std::size_t used = parser.put(asio::buffer(stream.data(), stream.size()), ec);
      stream.remove_prefix(used);
      if (used == 0) break;
    }
    if (ec || !parser.is_done()) break;  // answered by an error, or never complete
    const auto& m = parser.get();
    if (m.version() >= 11 && m.find(bhttp::field::host) == m.end()) break;  // 400
    if (const auto te = m[bhttp::field::transfer_encoding];
        !te.empty() && !boost::beast::iequals(te, "chunked"))
      break;  // 501
    const std::string_view target = m.target();
    sent.push_back(Sent{std::string(m.method_string()), std::string(target.substr(0, target.find('?'))),
                        std::string(m[bhttp::field::authorization]), m.method() == bhttp::verb::head});
    if (!m.keep_alive()) break;
  }
  return sent;
}

// Writes `bytes` in writes of `chunk`, half-closes, and reads until the server closes.
std::string exchange(std::uint16_t port, std::string_view bytes, std::size_t chunk) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) fail("socket", std::strerror(errno));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    // libFuzzer's timer signal may interrupt it; the connection then completes on its own.
    if (errno != EINTR) fail("connect", std::strerror(errno));
    pollfd p{fd, POLLOUT, 0};
    while (::poll(&p, 1, kCloseWithinMs) < 0 && errno == EINTR) {
    }
    int error = 0;
    socklen_t length = sizeof error;
    ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length);
    if (error != 0) fail("connect", std::strerror(error));
  }
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  std::string received;
  char buf[16384];
  auto drain = [&](int timeout_ms) {  // false once the server has closed
    pollfd p{fd, POLLIN, 0};
    for (;;) {
      const int ready = ::poll(&p, 1, timeout_ms);
      if (ready < 0 && errno == EINTR) continue;
      if (ready <= 0) return true;
      const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      received.append(buf, static_cast<std::size_t>(n));
      timeout_ms = 0;
    }
  };
  bool open = true;
  while (!bytes.empty() && open) {
    const std::size_t n = std::min(chunk, bytes.size());
    const ssize_t sent = ::send(fd, bytes.data(), n, MSG_NOSIGNAL);
    if (sent < 0 && errno == EINTR) continue;
    if (sent <= 0) break;  // the server closed on us
    bytes.remove_prefix(static_cast<std::size_t>(sent));
    open = drain(0);
  }
  ::shutdown(fd, SHUT_WR);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(kCloseWithinMs);
  while (open) {
    if (std::chrono::steady_clock::now() > deadline) fail("the server did not close the connection");
    open = drain(100);
  }
  ::close(fd);
  return received;
}

bool is_json_error(const std::string& body) {
  const nlohmann::json j = nlohmann::json::parse(body, nullptr, false);
  return j.is_object() && j.size() == 1 && j.contains("error") && j["error"].is_string();
}

bool protected_path(std::string_view path) {
  return path.substr(0, 7) == "/debug/" || path.substr(0, 5) == "/api/";
}

// "Bearer <token>", the scheme case-insensitive (RFC 9110 §11.1).
bool presents_token(std::string_view authorization) {
  constexpr std::string_view kScheme = "bearer ";
  if (authorization.size() != kScheme.size() + kToken.size() ||
      authorization.substr(kScheme.size()) != kToken)
    return false;
  for (std::size_t i = 0; i < kScheme.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(authorization[i])) != kScheme[i]) return false;
  return true;
}

void check_answer(const Sent& request, int status, const std::string& body, bool token_required,
                  Listener listener) {
  switch (status) {
    case 200:
      if (token_required && protected_path(request.path) && !presents_token(request.authorization))
        fail("protected path served without the token", request.path);
      if (request.method != "GET" && request.method != "HEAD")
        fail("200 for a method the routes do not take", request.method);
      if (request.head) {
        if (!body.empty()) fail("a HEAD answer with a body");
      } else if (request.path == "/metrics") {
        if (body.rfind("# HELP ", 0) != 0) fail("/metrics is not Prometheus text");
      } else if (!nlohmann::json::accept(body)) {
        fail("200 with a body that is not JSON", body);
      }
      break;
    case 401:
      if (!token_required || !protected_path(request.path) || presents_token(request.authorization))
        fail("401 where none was due", request.path);
      [[fallthrough]];
    case 404:
    case 405:
      if (!request.head && !is_json_error(body)) fail("error body", body);
      break;
    case 421:  // only the control listener sends a data request away
      if (listener != Listener::control) fail("421 on the data listener", request.path);
      if (!request.head && !is_json_error(body)) fail("error body", body);
      break;
    default:
      fail("unexpected status", std::to_string(status));
  }
}

// Parses the answers in `received` and checks them against the requests.
void check_answers(const std::string& received, const std::vector<Sent>& sent, bool token_required,
                   Listener listener) {
  std::string_view rest = received;
  std::size_t answered = 0;
  bool closed = false;  // an answer said Connection: close: nothing may follow
  while (!rest.empty()) {
    if (closed) fail("bytes after an answer that closed the connection", rest);
    bhttp::response_parser<bhttp::string_body> parser;
    parser.eager(true);
    parser.body_limit(std::uint64_t{64} << 20);
    const bool head = answered < sent.size() && sent[answered].head;
    if (head) parser.skip(true);
    boost::beast::error_code ec;
    const std::size_t used = parser.put(asio::buffer(rest.data(), rest.size()), ec);
    if (ec || !parser.is_done()) fail("an answer that is not HTTP/1.1", rest.substr(0, 200));
    rest.remove_prefix(used);
    const auto& m = parser.get();
    if (m.version() != 11) fail("an answer that is not HTTP/1.1");
    const int status = static_cast<int>(m.result_int());
    if (status == 100) continue;  // 100 Continue, then the final answer
    if (answered < sent.size()) {
      check_answer(sent[answered], status, m.body(), token_required, listener);
    } else {
      // An answer to bytes that never made a whole request: an error, and the end.
      if (status != 400 && status != 413 && status != 431 && status != 501)
        fail("unexpected status for an unreadable request", std::to_string(status));
      if (m.keep_alive()) fail("an unreadable request left the connection open");
      if (!is_json_error(m.body())) fail("error body", m.body());
    }
    ++answered;
    closed = !m.keep_alive();
    if (answered > sent.size() + 1) fail("more answers than requests");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::uint8_t mode = data[0];
  const std::size_t chunk = (mode & 0x1f) == 0 ? size : (mode & 0x1f);  // bytes per write
  const bool protected_target = (mode & 0x20) != 0;
  const bool small_limits = (mode & 0x40) != 0;
  const Listener listener = (mode & 0x80) != 0 ? Listener::control : Listener::data;
  const std::string_view bytes(reinterpret_cast<const char*>(data) + 1, size - 1);

  Target& t = target(protected_target, small_limits);
  const std::vector<Sent> sent = parse_requests(bytes, t.config.max_header_bytes, t.config.max_body_bytes);
  const std::string received = exchange(t.ports[static_cast<int>(listener)], bytes, chunk);
  check_answers(received, sent, protected_target, listener);
  return 0;
}
