// What the HTTP layer hands to handlers and takes back: plain views and values, no Beast
// types, so handlers, the router and the fuzzer compile without Beast.
#pragma once

#include <optional>
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
  std::string_view content_encoding;
  std::string_view body;
};

// Splits target into path and query.
void split_target(Request& request) noexcept;

// The value of the first query parameter called `name` (application/x-www-form-urlencoded:
// pairs split at '&', name and value at the first '=', '+' and %XX decoded in the value;
// a malformed %-escape is kept as is). nullopt when absent; "" for "name" or "name=".
std::optional<std::string> find_query_param(std::string_view query, std::string_view name);
// The same, "" when absent.
std::string query_param(std::string_view query, std::string_view name);

struct Response {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // extra headers
  bool close = false;                                        // close the connection after sending
  // The route's name in metrics and the access log, set by the router: the matched path,
  // or "other" for an unknown one (so clients cannot grow the label set). A view of static
  // storage or of the router's table, which outlives every response.
  std::string_view route;
};

// {"error": message} with the given status.
Response json_error(int status, std::string_view message);
// A JSON body with status 200.
Response json_ok(std::string body);

// Reason phrase for a status code ("Not Found").
std::string_view reason(int status) noexcept;

}  // namespace sydra::server::http
