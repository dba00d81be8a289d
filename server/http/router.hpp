// The route table: exact paths, each with the methods it accepts and who may call it.
//
//   unknown path                                   → 404, route label "other"
//   Access::bearer route, the router has a token,
//     the request does not present it              → 401 with WWW-Authenticate
//   known path, another method                     → 405 with Allow
//
// Every route states its Access when it is added — there is no default — so a new route
// cannot be public by accident; a path has one Access whatever the method. Protected
// prefixes (e.g. "/api/") add a second guard: a route under one must be Access::bearer
// (add() throws otherwise), and an unknown path under one answers 401, not 404, to a
// client without the token. Authentication comes before the method check, so a protected
// path tells an anonymous client nothing of what exists or of its methods. HEAD is
// answered wherever GET is (the session sends no body).
//
// The handlers take the caller's per-worker Context (server/api's WorkerContext in the
// daemon): the router knows nothing of it but its type.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "server/http/auth.hpp"
#include "server/http/request.hpp"

namespace sydra::server::http {

enum class Access : std::uint8_t {
  open,    // anyone
  bearer,  // "Authorization: Bearer <token>" when the router has a token
};

// The route label of a request no route matched.
inline constexpr std::string_view kOtherRoute = "other";
// Matches every method (e.g. a route that answers "not here" to all of them).
inline constexpr std::string_view kAnyMethod = "*";

// The answers the router writes itself.
Response not_found(std::string_view path);
Response unauthorized(std::string_view realm);
Response method_not_allowed(std::string_view method, std::string_view path, const std::string& allow);

template <class Context>
class Router {
 public:
  using Handler = std::function<Response(const Request&, Context&)>;

  // With a token, Access::bearer routes need it; without one, every route is open. The
  // realm is named in the 401's WWW-Authenticate header.
  explicit Router(std::string bearer_token = {}, std::string realm = "api",
                  std::vector<std::string> protected_prefixes = {})
      : token_(std::move(bearer_token)),
        realm_(std::move(realm)),
        protected_(std::move(protected_prefixes)) {}

  // Adds `method path` (method kAnyMethod: every method not added otherwise). Throws
  // std::logic_error when the path was added before with another Access, the same method
  // twice, or an open route under a protected prefix.
  void add(std::string_view method, std::string_view path, Access access, Handler handler) {
    if (access == Access::open && is_protected(path))
      throw std::logic_error("route " + std::string(path) + " is under a protected prefix but open");
    auto [it, inserted] = routes_.try_emplace(std::string(path));
    Route& route = it->second;
    if (inserted) {
      route.access = access;
    } else if (route.access != access) {
      throw std::logic_error("route " + std::string(path) + " added with two different Access values");
    }
    if (method == kAnyMethod) {
      if (route.any) throw std::logic_error("route * " + std::string(path) + " added twice");
      route.any = std::move(handler);
      return;
    }
    if (!route.methods.emplace(std::string(method), std::move(handler)).second)
      throw std::logic_error("route " + std::string(method) + " " + std::string(path) + " added twice");
  }

  Response dispatch(const Request& request, Context& context) const {
    const auto it = routes_.find(request.path);
    if (it == routes_.end()) {
      if (is_protected(request.path) && !authorized(request))
        return labelled(unauthorized(realm_), kOtherRoute);
      return labelled(not_found(request.path), kOtherRoute);
    }
    const std::string_view label = it->first;
    const Route& route = it->second;
    if (route.access == Access::bearer && !authorized(request)) return labelled(unauthorized(realm_), label);
    auto handler = route.methods.find(request.method);
    // HEAD is GET without the body (RFC 9110 §9.3.2): the session drops the body.
    if (handler == route.methods.end() && request.method == "HEAD") handler = route.methods.find("GET");
    if (handler != route.methods.end()) return labelled(handler->second(request, context), label);
    if (route.any) return labelled(route.any(request, context), label);
    std::string allow;
    for (const auto& [method, h] : route.methods) {
      allow += (allow.empty() ? "" : ", ") + method;
      if (method == "GET") allow += ", HEAD";
    }
    return labelled(method_not_allowed(request.method, label, allow), label);
  }

  // The routes, for tests and listings: path, access and methods ("*" for kAnyMethod).
  struct RouteInfo {
    std::string_view path;
    Access access;
    std::vector<std::string_view> methods;
  };
  std::vector<RouteInfo> routes() const {
    std::vector<RouteInfo> out;
    for (const auto& [path, route] : routes_) {
      RouteInfo info{path, route.access, {}};
      for (const auto& [method, h] : route.methods) info.methods.push_back(method);
      if (route.any) info.methods.push_back(kAnyMethod);
      out.push_back(std::move(info));
    }
    return out;
  }

 private:
  struct Route {
    Access access = Access::bearer;
    std::map<std::string, Handler, std::less<>> methods;
    Handler any;
  };

  bool is_protected(std::string_view path) const noexcept {
    for (const std::string& prefix : protected_)
      if (path.substr(0, prefix.size()) == prefix) return true;
    return false;
  }
  bool authorized(const Request& request) const noexcept {
    return token_.empty() || bearer_token_matches(request.authorization, token_);
  }

  static Response labelled(Response r, std::string_view label) {
    r.route = label;
    return r;
  }

  std::map<std::string, Route, std::less<>> routes_;
  std::string token_;
  std::string realm_;
  std::vector<std::string> protected_;
};

}  // namespace sydra::server::http
