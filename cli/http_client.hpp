// A small blocking HTTP/1.1 client for the CLI's commands (Beast, one request per call).
#pragma once

#include <stdexcept>
#include <string>
#include <string_view>

namespace sydra::cli {

struct HttpResponse {
  int status = 0;
  std::string content_type;
  std::string body;
};

// The daemon could not be reached (bad URL, resolve/connect failure, timeout, reset):
// what() is one line saying where it looked and why.
class Unreachable : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Sends one request to an http:// URL (host[:port][/path]); `path` is appended to the
// URL's path. Adds "Authorization: Bearer <token>" when token is not empty.
HttpResponse http_request(const std::string& method, const std::string& url, const std::string& path,
                          const std::string& token, const std::string& body = {},
                          const std::string& content_type = "application/json", double timeout_seconds = 5);

}  // namespace sydra::cli
