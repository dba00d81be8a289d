// server/http/router.hpp: matching, 404/405/401 and their order, HEAD, per-route access.
#include "server/http/router.hpp"

#include <doctest/doctest.h>

#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>

namespace http = sydra::server::http;

namespace {

// What a handler sees of its worker: here, a count of the calls it served.
struct Context {
  int calls = 0;
};

http::Request request(std::string_view method, std::string_view target, std::string_view authorization = {}) {
  http::Request r;
  r.method = method;
  r.target = target;
  r.authorization = authorization;
  http::split_target(r);
  return r;
}

http::Router<Context> make_router(std::string token = {}) {
  http::Router<Context> router(std::move(token), "test");
  router.add("GET", "/status", http::Access::open, [](const http::Request&, Context& c) {
    ++c.calls;
    return http::json_ok(R"({"status":"ok"})");
  });
  router.add("GET", "/debug/stats", http::Access::bearer, [](const http::Request&, Context& c) {
    ++c.calls;
    return http::json_ok("{}");
  });
  router.add("POST", "/api/ingest", http::Access::bearer, [](const http::Request& r, Context& c) {
    ++c.calls;
    return http::json_ok(std::string(r.query));
  });
  router.add("GET", "/api/query", http::Access::bearer,
             [](const http::Request&, Context&) { return http::json_ok("[]"); });
  router.add("POST", "/api/query", http::Access::bearer,
             [](const http::Request&, Context&) { return http::json_ok("[]"); });
  return router;
}

std::string error_of(const http::Response& r) {
  return nlohmann::json::parse(r.body).at("error").get<std::string>();
}

}  // namespace

TEST_SUITE("unit") {
  TEST_CASE("a route answers its method with the worker's context, labelled with its path") {
    auto router = make_router();
    Context context;
    const http::Response r = router.dispatch(request("POST", "/api/ingest?x=1"), context);
    CHECK(r.status == 200);
    CHECK(r.body == "x=1");  // the handler sees the query
    CHECK(r.route == "/api/ingest");
    CHECK(context.calls == 1);
  }

  TEST_CASE("unknown path: 404, labelled \"other\" so that clients cannot grow the label set") {
    auto router = make_router();
    Context context;
    const http::Response r = router.dispatch(request("GET", "/nope?a=b"), context);
    CHECK(r.status == 404);
    CHECK(error_of(r) == "no route for /nope");
    CHECK(r.route == http::kOtherRoute);
    CHECK(router.dispatch(request("GET", "/status/"), context).status == 404);  // exact paths only
    CHECK(context.calls == 0);
  }

  TEST_CASE("known path, other method: 405 with Allow, HEAD listed wherever GET is") {
    auto router = make_router();
    Context context;
    const http::Response r = router.dispatch(request("DELETE", "/api/query"), context);
    CHECK(r.status == 405);
    CHECK(r.route == "/api/query");
    REQUIRE(r.headers.size() == 1);
    CHECK(r.headers[0].first == "Allow");
    CHECK(r.headers[0].second == "GET, HEAD, POST");
    CHECK(error_of(r) == "method DELETE not allowed on /api/query");
    const http::Response post_only = router.dispatch(request("GET", "/api/ingest"), context);
    CHECK(post_only.status == 405);
    CHECK(post_only.headers[0].second == "POST");
  }

  TEST_CASE("HEAD is answered by the GET handler") {
    auto router = make_router();
    Context context;
    const http::Response r = router.dispatch(request("HEAD", "/status"), context);
    CHECK(r.status == 200);
    CHECK(context.calls == 1);
    CHECK(router.dispatch(request("HEAD", "/api/ingest"), context).status == 405);  // no GET there
  }

  TEST_CASE("without a token every route is open") {
    auto router = make_router();
    Context context;
    CHECK(router.dispatch(request("GET", "/debug/stats"), context).status == 200);
    CHECK(router.dispatch(request("POST", "/api/ingest"), context).status == 200);
  }

  TEST_CASE("with a token, Access::bearer routes need it, open routes do not") {
    auto router = make_router("s3cret");
    Context context;
    const http::Response denied = router.dispatch(request("GET", "/debug/stats"), context);
    CHECK(denied.status == 401);
    CHECK(denied.route == "/debug/stats");
    REQUIRE(denied.headers.size() == 1);
    CHECK(denied.headers[0].first == "WWW-Authenticate");
    CHECK(denied.headers[0].second == "Bearer realm=\"test\"");
    CHECK(error_of(denied) == "missing or invalid bearer token");
    CHECK(router.dispatch(request("GET", "/debug/stats", "Bearer wrong"), context).status == 401);
    CHECK(context.calls == 0);  // the handler never ran
    CHECK(router.dispatch(request("GET", "/debug/stats", "Bearer s3cret"), context).status == 200);
    CHECK(router.dispatch(request("GET", "/debug/stats", "bearer s3cret"), context).status == 200);
    CHECK(router.dispatch(request("GET", "/status"), context).status == 200);
    CHECK(router.dispatch(request("GET", "/status", "Bearer wrong"), context).status == 200);
  }

  TEST_CASE("authentication comes before the method check, and unknown paths stay 404") {
    auto router = make_router("s3cret");
    Context context;
    // A protected path tells an anonymous client nothing of its methods.
    CHECK(router.dispatch(request("DELETE", "/api/query"), context).status == 401);
    CHECK(router.dispatch(request("DELETE", "/api/query", "Bearer s3cret"), context).status == 405);
    CHECK(router.dispatch(request("GET", "/api/unknown"), context).status == 404);
  }

  TEST_CASE("a route for every method answers what no other route of the path takes") {
    http::Router<Context> router("s3cret");
    router.add("GET", "/x", http::Access::open,
               [](const http::Request&, Context&) { return http::json_ok("1"); });
    router.add(http::kAnyMethod, "/x", http::Access::open,
               [](const http::Request&, Context&) { return http::json_error(421, "elsewhere"); });
    Context context;
    CHECK(router.dispatch(request("GET", "/x"), context).status == 200);
    CHECK(router.dispatch(request("HEAD", "/x"), context).status == 200);
    CHECK(router.dispatch(request("POST", "/x"), context).status == 421);
    CHECK(router.dispatch(request("BREW", "/x"), context).status == 421);
  }

  TEST_CASE("a path has one Access, and a method is added once") {
    http::Router<Context> router;
    auto h = [](const http::Request&, Context&) { return http::json_ok("{}"); };
    router.add("GET", "/a", http::Access::bearer, h);
    CHECK_THROWS_AS(router.add("POST", "/a", http::Access::open, h), std::logic_error);
    CHECK_THROWS_AS(router.add("GET", "/a", http::Access::bearer, h), std::logic_error);
    router.add("POST", "/a", http::Access::bearer, h);
    router.add(http::kAnyMethod, "/a", http::Access::bearer, h);
    CHECK_THROWS_AS(router.add(http::kAnyMethod, "/a", http::Access::bearer, h), std::logic_error);
    const auto routes = router.routes();
    REQUIRE(routes.size() == 1);
    CHECK(routes[0].path == "/a");
    CHECK(routes[0].access == http::Access::bearer);
    CHECK(routes[0].methods == std::vector<std::string_view>{"GET", "POST", "*"});
  }

  TEST_CASE(
      "protected prefixes: no open route under them, and unknown paths there are 401 without the token") {
    auto h = [](const http::Request&, Context&) { return http::json_ok("{}"); };
    http::Router<Context> router("s3cret", "test", {"/api/", "/debug/"});
    CHECK_THROWS_AS(router.add("GET", "/api/new", http::Access::open, h), std::logic_error);
    CHECK_THROWS_AS(router.add("GET", "/debug/new", http::Access::open, h), std::logic_error);
    router.add("GET", "/api/new", http::Access::bearer, h);
    router.add("GET", "/apiary", http::Access::open, h);  // a prefix is a prefix of the path, with its '/'
    Context context;
    const http::Response r = router.dispatch(request("GET", "/api/unknown"), context);
    CHECK(r.status == 401);
    CHECK(r.route == http::kOtherRoute);
    CHECK(router.dispatch(request("GET", "/api/unknown", "Bearer s3cret"), context).status == 404);
    CHECK(router.dispatch(request("GET", "/debug/"), context).status == 401);
    CHECK(router.dispatch(request("GET", "/elsewhere"), context).status == 404);
    CHECK(router.dispatch(request("GET", "/apiary"), context).status == 200);
    // Without a token nothing is protected.
    http::Router<Context> open_router("", "test", {"/api/"});
    CHECK(open_router.dispatch(request("GET", "/api/unknown"), context).status == 404);
  }

  TEST_CASE("a handler that sets its own route label is relabelled with the route") {
    http::Router<Context> router;
    router.add("GET", "/a", http::Access::open, [](const http::Request&, Context&) {
      http::Response r = http::json_ok("{}");
      r.route = "mine";
      return r;
    });
    Context context;
    CHECK(router.dispatch(request("GET", "/a"), context).route == "/a");
  }
}
