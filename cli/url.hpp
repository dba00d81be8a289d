// The http:// URLs the CLI's client commands accept (--url). Internal to cli/; exposed so
// the tests can check what is accepted and what is refused.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace sydra::cli {

struct HttpUrl {
  std::string host;  // a name, an IPv4 address, or an IPv6 address without brackets
  std::uint16_t port = 80;
  std::string path;  // "" or "/prefix" (never a trailing '/'); requests append to it

  // The Host header's value: host, with brackets for IPv6, and ":port" unless port is 80.
  std::string authority() const;
};

// Parses [http://]host[:port][/path]: without a scheme, http is meant (as for curl). The
// scheme is case-insensitive; IPv6 addresses go in brackets (http://[::1]:8080, [::1]:8080). Throws
// std::invalid_argument with a one-line message naming the URL for anything else: another scheme (https),
// user info, an empty or malformed host, a port outside 1..65535, a query or a fragment.
HttpUrl parse_http_url(std::string_view url);

}  // namespace sydra::cli
