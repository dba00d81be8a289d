#include "server/http/router.hpp"

namespace sydra::server::http {

void Router::add(std::string method, std::string path, Handler handler) {
  Route& route = routes_[path];
  route.path = path;
  route.methods[std::move(method)] = std::move(handler);
}

Router::Result Router::dispatch(const Request& request) const {
  auto it = routes_.find(request.path);
  if (it == routes_.end()) return {json_error(404, "no route for " + std::string(request.path)), kOtherRoute};
  const Route& route = it->second;
  auto handler = route.methods.find(request.method);
  // HEAD is GET without the body (RFC 9110 §9.3.2): the session drops the body.
  if (handler == route.methods.end() && request.method == "HEAD") handler = route.methods.find("GET");
  if (handler == route.methods.end()) {
    std::string allow;
    for (const auto& [method, h] : route.methods) {
      allow += (allow.empty() ? "" : ", ") + method;
      if (method == "GET") allow += ", HEAD";
    }
    Response r = json_error(405, "method " + std::string(request.method) + " not allowed on " + route.path);
    r.headers.emplace_back("Allow", allow);
    return {std::move(r), route.path};
  }
  return {handler->second(request), route.path};
}

}  // namespace sydra::server::http
