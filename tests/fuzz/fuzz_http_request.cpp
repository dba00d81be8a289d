// libFuzzer target: untrusted bytes through the daemon's whole request path, minus the
// socket. The bytes are fed to Beast's request_parser the way the server's sessions read
// them (server/http/server.cpp: the same allocator-aware parser, eager parsing, header and
// body limits, pipelined requests one after another, end of stream), and every request
// that parses is turned into a server::http::Request (split_target, query_param) and
// dispatched through real server::App instances, with and without an auth token — so the
// router, authentication and handlers (/status, /debug/alloc/stats, /metrics) are fuzzed.
//
// Input: byte 0 picks how the stream is cut into reads (1..64 bytes, or all at once) and
// the limits (the server's defaults, or the smallest the config allows); the rest is what
// the client sent.
//
// Anything the server would do wrong aborts: an exception escaping App::handle (it would
// escape the worker's io_context and stop the worker), a status the API does not use, an
// error body that is not {"error": "..."}, a protected path served without the token.
#include <boost/asio/buffer.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>
#include <cctype>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory_resource>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "alloc/adapters.hpp"
#include "alloc/small_pool_allocator.hpp"
#include "server/api/app.hpp"
#include "server/config.hpp"
#include "server/http/request.hpp"
#include "server/metrics.hpp"

namespace {

namespace asio = boost::asio;
namespace bhttp = boost::beast::http;
namespace http = sydra::server::http;

using PmrAlloc = std::pmr::polymorphic_allocator<char>;
using RequestBody = bhttp::basic_string_body<char, std::char_traits<char>, PmrAlloc>;
using RequestParser = bhttp::request_parser<RequestBody, PmrAlloc>;

constexpr std::string_view kToken = "fuzz-token";
constexpr int kMaxRequestsPerInput = 16;

[[noreturn]] void fail(const char* what, std::string_view detail = {}) {
  std::fprintf(stderr, "fuzz_http_request: %s: %.*s\n", what, static_cast<int>(detail.size()), detail.data());
  std::abort();
}

// A daemon's App with its own metrics and counters, as run_daemon() builds it.
struct Target {
  explicit Target(std::string_view token) {
    config.workers = 1;
    config.auth_token = std::string(token);
  }
  sydra::server::Config config;
  sydra::server::RequestMetrics metrics{1};
  sydra::server::ServerCounters counters;
  sydra::server::App app{config, sydra::alloc::default_allocator(), metrics, counters};
};

Target& open_target() {
  static Target t{""};
  return t;
}
Target& protected_target() {
  static Target t{kToken};
  return t;
}

bool is_json_error(const http::Response& r) {
  const nlohmann::json j = nlohmann::json::parse(r.body, nullptr, false);
  return j.is_object() && j.size() == 1 && j.contains("error") && j["error"].is_string();
}

void check_response(const http::Request& request, const http::Router::Result& result, bool token_required) {
  const http::Response& r = result.response;
  const std::string_view route = result.route;
  if (route != "/status" && route != "/debug/alloc/stats" && route != "/metrics" && route != "other" &&
      route != "unauthorized")
    fail("unexpected route label", route);
  const bool protected_path = request.path.substr(0, 5) == "/api/" || request.path.substr(0, 7) == "/debug/";
  // "Bearer <token>", the scheme case-insensitive (RFC 9110 §11.1).
  constexpr std::string_view kScheme = "bearer ";
  const std::string_view presented = request.authorization;
  bool authorized =
      presented.size() == kScheme.size() + kToken.size() && presented.substr(kScheme.size()) == kToken;
  for (std::size_t i = 0; authorized && i < kScheme.size(); ++i)
    authorized = std::tolower(static_cast<unsigned char>(presented[i])) == kScheme[i];
  switch (r.status) {
    case 200:
      if (token_required && protected_path && !authorized)
        fail("protected path served without the token", request.path);
      // Every route is GET-only, and HEAD is answered wherever GET is.
      if (request.method != "GET" && request.method != "HEAD")
        fail("200 for a method the routes do not take", request.method);
      if (route == "/metrics") {
        if (r.body.rfind("# HELP ", 0) != 0) fail("/metrics is not Prometheus text");
      } else if (!nlohmann::json::accept(r.body)) {
        fail("200 with a body that is not JSON", r.body);
      }
      break;
    case 401:
      if (!token_required || !protected_path || authorized) fail("401 where none was due", request.path);
      if (!is_json_error(r)) fail("401 body", r.body);
      break;
    case 404:
    case 405:
      if (!is_json_error(r)) fail("error body", r.body);
      if (r.status == 405) {
        bool allow = false;
        for (const auto& [name, value] : r.headers) allow = allow || (name == "Allow" && !value.empty());
        if (!allow) fail("405 without Allow");
      }
      break;
    default:
      fail("unexpected status", std::to_string(r.status));
  }
}

// What Session::on_read does with a parsed message.
void dispatch(const RequestParser::value_type& message) {
  http::Request request;
  request.method = message.method_string();
  request.target = message.target();
  http::split_target(request);
  if (request.path.size() + request.query.size() > request.target.size())
    fail("split_target grew the target");
  request.authorization = message[bhttp::field::authorization];
  request.content_type = message[bhttp::field::content_type];
  request.body = message.body();
  for (const char* name : {"series", "tags", "series_id", "start", "end", ""}) {
    if (http::query_param(request.query, name).size() > request.query.size())
      fail("query_param grew its input");
  }
  for (Target* t : {&open_target(), &protected_target()}) {
    const http::Router::Result result = t->app.handle(request);  // an exception here is a finding
    check_response(request, result, !t->config.auth_token.empty());
    t->metrics.record(0, result.route, result.response.status, 0.0005);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::uint8_t mode = data[0];
  const std::size_t chunk = (mode & 0x3f) == 0 ? size : (mode & 0x3f);  // bytes per read
  const bool small_limits = (mode & 0x40) != 0;
  const sydra::server::Config defaults;
  const std::uint32_t header_limit = small_limits ? 1024 : defaults.max_header_bytes;
  const std::uint64_t body_limit = small_limits ? 1024 : defaults.max_body_bytes;

  std::string_view stream(reinterpret_cast<const char*>(data) + 1, size - 1);
  sydra::alloc::PoolResource resource{sydra::alloc::default_allocator()};
  const PmrAlloc alloc(&resource);
  std::pmr::string buffer(alloc);  // received, not yet parsed (the session's flat buffer)
  auto receive = [&] {
    const std::size_t n = std::min(chunk, stream.size());
    buffer.append(stream.substr(0, n));
    stream.remove_prefix(n);
    return n > 0;
  };

  for (int requests = 0; requests < kMaxRequestsPerInput; ++requests) {
    if (buffer.empty() && !receive()) return 0;  // end of stream between requests
    RequestParser parser(std::piecewise_construct, std::make_tuple(alloc), std::make_tuple(alloc));
    parser.header_limit(header_limit);
    parser.body_limit(body_limit);
    parser.eager(true);
    boost::beast::error_code ec;
    while (!parser.is_done()) {
      const std::size_t used = parser.put(asio::buffer(buffer.data(), buffer.size()), ec);
      buffer.erase(0, used);
      if (ec == bhttp::error::need_more) {
        ec = {};
        if (buffer.size() > header_limit + 4096 * 16) return 0;  // the session's buffer_overflow
        if (!receive()) {
          parser.put_eof(ec);  // the client closed mid-request
          break;
        }
        continue;
      }
      if (ec) break;
      if (used == 0 && !receive()) break;
    }
    // The session answers 400/413/431 to a parse error and closes; nothing to dispatch.
    if (ec || !parser.is_done()) return 0;
    const auto& message = parser.get();
    // So does an HTTP/1.1 request without Host.
    if (message.version() >= 11 && message.find(bhttp::field::host) == message.end()) return 0;
    dispatch(message);
    if (!parser.get().keep_alive()) return 0;
  }
  return 0;
}
