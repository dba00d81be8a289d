#include "server/http/router.hpp"

namespace sydra::server::http {

Response not_found(std::string_view path) {
  return json_error(404, "no route for " + std::string(path));
}

Response unauthorized(std::string_view realm) {
  Response r = json_error(401, "missing or invalid bearer token");
  r.headers.emplace_back("WWW-Authenticate", "Bearer realm=\"" + std::string(realm) + "\"");
  return r;
}

Response method_not_allowed(std::string_view method, std::string_view path, const std::string& allow) {
  Response r = json_error(405, "method " + std::string(method) + " not allowed on " + std::string(path));
  r.headers.emplace_back("Allow", allow);
  return r;
}

}  // namespace sydra::server::http
