// The route table: exact paths, each with the methods it accepts. Unknown path → 404;
// known path, other method → 405 with an Allow header. Each route has a label used in
// metrics (the path itself; "other" for unknown paths, so clients cannot grow the label set).
#pragma once

#include <functional>
#include <map>
#include <string>
#include <string_view>

#include "server/http/request.hpp"

namespace sydra::server::http {

class Router {
 public:
  using Handler = std::function<Response(const Request&)>;
  static constexpr std::string_view kOtherRoute = "other";

  void add(std::string method, std::string path, Handler handler);

  struct Result {
    Response response;
    std::string_view route = kOtherRoute;  // metrics label
  };
  Result dispatch(const Request& request) const;

 private:
  struct Route {
    std::string path;
    std::map<std::string, Handler, std::less<>> methods;
  };
  std::map<std::string, Route, std::less<>> routes_;
};

}  // namespace sydra::server::http
