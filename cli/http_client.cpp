// The CLI's HTTP client: one request per connection, blocking for the caller.
//
// Beast's tcp_stream only applies its timeouts (expires_after) to asynchronous operations;
// its blocking calls have none. So each step — connect, write, read — is started
// asynchronously with its own timeout and run to completion on a private io_context before
// the next one starts. Name resolution is the one blocking step (getaddrinfo has its own
// timeouts and cannot be cancelled).
#include "cli/http_client.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdint>
#include <cstdio>

#include "cli/url.hpp"

#ifndef SYDRADB_VERSION
#define SYDRADB_VERSION "unknown"
#endif

namespace sydra::cli {

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;

// Largest response body accepted (the biggest document the CLI reads is a range query).
constexpr std::uint64_t kBodyLimitBytes = std::uint64_t{64} << 20;
// Timeouts beyond a day are taken as a day (keeps the duration conversion in range).
constexpr double kMaxTimeoutSeconds = 86400;

[[noreturn]] void reject_url(std::string_view url, std::string_view why) {
  throw std::invalid_argument("invalid URL '" + std::string(url) + "': " + std::string(why) +
                              " (expected [http://]host[:port][/path])");
}

bool is_host_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '-' || c == '.' || c == '_';
}

bool is_ipv6_char(char c) {
  return std::isxdigit(static_cast<unsigned char>(c)) != 0 || c == ':' || c == '.';
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

std::uint16_t parse_port(std::string_view url, std::string_view text) {
  const bool digits = !text.empty() && text.size() <= 5 &&
                      std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; });
  unsigned value = 0;
  if (digits)
    for (char c : text) value = value * 10 + static_cast<unsigned>(c - '0');
  if (!digits || value == 0 || value > 65535)
    reject_url(url, "invalid port '" + std::string(text) + "' (1 to 65535)");
  return static_cast<std::uint16_t>(value);
}

std::string seconds_text(double seconds) {
  char text[32];
  std::snprintf(text, sizeof text, "%g s", seconds);
  return text;
}

}  // namespace

std::string HttpUrl::authority() const {
  std::string out = host.find(':') == std::string::npos ? host : "[" + host + "]";
  if (port != 80) out += ":" + std::to_string(port);
  return out;
}

HttpUrl parse_http_url(std::string_view url) {
  if (std::any_of(url.begin(), url.end(), [](char c) {
        return std::isspace(static_cast<unsigned char>(c)) != 0 ||
               std::iscntrl(static_cast<unsigned char>(c)) != 0;
      }))
    reject_url(url, "it contains spaces or control characters");
  // No scheme: host[:port][/path] means http://host[:port][/path], as for curl.
  const auto scheme_end = url.find("://");
  std::string_view rest = url;
  if (scheme_end != std::string_view::npos) {
    const std::string_view scheme = url.substr(0, scheme_end);
    if (iequals(scheme, "https")) {
      reject_url(url,
                 "https is not supported: the daemon speaks plain HTTP (reach it on loopback or a proxy)");
    }
    if (!iequals(scheme, "http")) reject_url(url, "unsupported scheme '" + std::string(scheme) + "'");
    rest = url.substr(scheme_end + 3);
  }
  const auto authority_end = rest.find_first_of("/?#");
  const std::string_view authority = rest.substr(0, authority_end);
  std::string_view path =
      authority_end == std::string_view::npos ? std::string_view{} : rest.substr(authority_end);
  if (path.find_first_of("?#") != std::string_view::npos)
    reject_url(url, "a query or fragment is not allowed");
  while (!path.empty() && path.back() == '/') path.remove_suffix(1);
  if (authority.find('@') != std::string_view::npos)
    reject_url(url, "user info is not supported (pass a token with --token or SYDRADB_TOKEN)");

  HttpUrl out;
  out.path = std::string(path);
  std::string_view port_text;
  bool has_port = false;
  if (!authority.empty() && authority.front() == '[') {
    const auto close = authority.find(']');
    if (close == std::string_view::npos) reject_url(url, "unterminated '[' in the host");
    const std::string_view host = authority.substr(1, close - 1);
    if (host.empty() || host.find(':') == std::string_view::npos ||
        !std::all_of(host.begin(), host.end(), is_ipv6_char))
      reject_url(url, "invalid IPv6 address '" + std::string(host) + "'");
    out.host = std::string(host);
    const std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') reject_url(url, "unexpected text after ']'");
      has_port = true;
      port_text = after.substr(1);
    }
  } else {
    const auto colon = authority.find(':');
    if (colon != std::string_view::npos && authority.find(':', colon + 1) != std::string_view::npos)
      reject_url(url, "IPv6 addresses go in brackets, e.g. http://[::1]:8080");
    const std::string_view host = authority.substr(0, colon);
    if (host.empty()) reject_url(url, "no host");
    if (!std::all_of(host.begin(), host.end(), is_host_char))
      reject_url(url, "invalid host '" + std::string(host) + "'");
    out.host = std::string(host);
    if (colon != std::string_view::npos) {
      has_port = true;
      port_text = authority.substr(colon + 1);
    }
  }
  if (has_port) out.port = parse_port(url, port_text);
  return out;
}

HttpResponse http_request(const std::string& method, const std::string& url, const std::string& path,
                          const std::string& token, const std::string& body, const std::string& content_type,
                          double timeout_seconds) {
  const HttpUrl target_url = parse_http_url(url);
  const bhttp::verb verb = bhttp::string_to_verb(method);
  if (verb == bhttp::verb::unknown) throw std::invalid_argument("unknown HTTP method '" + method + "'");
  if (!(timeout_seconds > 0)) throw std::invalid_argument("the timeout must be a positive number of seconds");
  // A token is sent in a header: a line break in it would end the header.
  if (std::any_of(token.begin(), token.end(),
                  [](char c) { return std::iscntrl(static_cast<unsigned char>(c)) != 0; }))
    throw std::invalid_argument("the token contains control characters");

  std::string target = target_url.path;
  if (!path.empty() && path.front() != '/') target += '/';
  target += path;
  if (target.empty()) target = "/";

  const double limited = std::min(timeout_seconds, kMaxTimeoutSeconds);
  const auto timeout =
      std::chrono::duration_cast<std::chrono::steady_clock::duration>(std::chrono::duration<double>(limited));
  const auto unreachable = [&url](const std::string& why) {
    return Unreachable("cannot reach sydradb at " + url + ": " + why);
  };
  const auto describe = [&](const beast::error_code& ec, const char* step) {
    if (ec == beast::error::timeout) return "timed out after " + seconds_text(limited) + " " + step;
    return ec.message();
  };

  asio::io_context ioc;
  beast::error_code ec;
  asio::ip::tcp::resolver resolver(ioc);
  // numeric_service without address_configured: "localhost" must resolve on a host whose
  // only interface is loopback.
  const auto endpoints = resolver.resolve(target_url.host, std::to_string(target_url.port),
                                          asio::ip::resolver_base::numeric_service, ec);
  if (ec) throw unreachable("cannot resolve '" + target_url.host + "': " + ec.message());

  beast::tcp_stream stream(ioc);
  const auto run = [&ioc] {
    ioc.restart();
    ioc.run();
  };

  stream.expires_after(timeout);
  stream.async_connect(endpoints,
                       [&ec](const beast::error_code& e, const asio::ip::tcp::endpoint&) { ec = e; });
  run();
  if (ec) throw unreachable(describe(ec, "connecting"));

  bhttp::request<bhttp::string_body> request{verb, target, 11};
  request.set(bhttp::field::host, target_url.authority());
  request.set(bhttp::field::user_agent, "sydradb-cli/" SYDRADB_VERSION);
  request.set(bhttp::field::accept, "application/json");
  if (!token.empty()) request.set(bhttp::field::authorization, "Bearer " + token);
  if (!body.empty()) {
    request.set(bhttp::field::content_type, content_type);
    request.body() = body;
  }
  request.keep_alive(false);
  request.prepare_payload();

  stream.expires_after(timeout);
  bhttp::async_write(stream, request, [&ec](const beast::error_code& e, std::size_t) { ec = e; });
  run();
  if (ec) throw unreachable(describe(ec, "sending the request"));

  beast::flat_buffer buffer;
  bhttp::response_parser<bhttp::string_body> parser;
  parser.body_limit(kBodyLimitBytes);
  stream.expires_after(timeout);
  bhttp::async_read(stream, buffer, parser, [&ec](const beast::error_code& e, std::size_t) { ec = e; });
  run();
  if (ec == bhttp::error::body_limit) throw unreachable("the response is larger than 64 MiB");
  if (ec == bhttp::error::end_of_stream || ec == asio::error::eof)
    throw unreachable("the connection closed before a response arrived");
  if (ec && ec.category() == bhttp::make_error_code(bhttp::error::bad_version).category())
    throw unreachable("the answer is not a valid HTTP response (" + ec.message() + ")");
  if (ec) throw unreachable(describe(ec, "waiting for the response"));

  beast::error_code ignored;
  stream.socket().shutdown(asio::ip::tcp::socket::shutdown_both, ignored);

  bhttp::response<bhttp::string_body>& response = parser.get();
  HttpResponse out;
  out.status = static_cast<int>(response.result_int());
  const auto type = response[bhttp::field::content_type];
  out.content_type.assign(type.data(), type.size());
  out.body = std::move(response.body());
  return out;
}

}  // namespace sydra::cli
