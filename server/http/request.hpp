// What the HTTP layer hands to handlers and takes back: plain views and values, no Beast
// types, so handlers, the router and the fuzzer compile without Beast.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sydra::server::http {

struct Request {
  std::string_view method;  // "GET", "POST", ...
  std::string_view target;  // path and query as received
  std::string_view path;    // target up to '?'
  std::string_view query;   // after '?', without it
  std::string_view authorization;
  std::string_view content_type;
  std::string_view body;
};

// Splits target into path and query.
void split_target(Request& request) noexcept;

// The value of query parameter `name`, percent-decoded; empty when absent.
std::string query_param(std::string_view query, std::string_view name);

struct Response {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // extra headers
  bool close = false;                                        // close the connection after sending
};

// {"error": message} with the given status.
Response json_error(int status, std::string_view message);
// A JSON body with status 200.
Response json_ok(std::string body);

// Reason phrase for a status code ("Not Found").
std::string_view reason(int status) noexcept;

}  // namespace sydra::server::http
