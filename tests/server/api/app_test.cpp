// server/api/app.hpp: the route table and its policy (every route under /api/ and /debug/
// needs the token), per-route authentication through the real routers, where each route
// is served (control routes on both listeners, data routes on the data listener, a 421
// naming it on the control one), and the WorkerContext a worker hands its handlers.
#include "server/api/app.hpp"

#include <doctest/doctest.h>

#include <nlohmann/json.hpp>
#include <set>
#include <string>

#include "alloc/small_pool_allocator.hpp"
#include "server/storage/engine.hpp"
#include "support/temp_dir.hpp"

namespace sydra::server {
namespace {

using nlohmann::json;

http::Request request(std::string_view method, std::string_view target, std::string_view authorization = {},
                      std::string_view body = {}) {
  http::Request r;
  r.method = method;
  r.target = target;
  r.authorization = authorization;
  r.body = body;
  http::split_target(r);
  return r;
}

// An App over a real engine in a temporary directory.
struct Fixture {
  explicit Fixture(std::string token = {}) {
    config.workers = 2;
    config.auth_token = std::move(token);
    config.http_port = 8080;
    storage::EngineOptions o;
    o.data_dir = dir.path();
    o.sync = storage::SyncMode::none;
    o.background = false;
    o.compaction_interval_ms = 0;
    engine = storage::Engine::open(o, alloc::default_allocator());
    app = std::make_unique<App>(config, alloc::default_allocator(), engine.get());
    app->set_bound_port(Listener::data, 18080);
    app->set_bound_port(Listener::control, 18081);
  }
  test::TempDir dir{"sydra-app"};
  Config config;
  std::unique_ptr<storage::Engine> engine;
  std::unique_ptr<App> app;
};

std::string error_of(const http::Response& r) {
  return json::parse(r.body).at("error").get<std::string>();
}

}  // namespace

TEST_SUITE("unit") {
  TEST_CASE("the route table: every /api/ and /debug/ route needs the token, data routes are /api/") {
    std::set<std::string_view> paths;
    for (const App::Route& route : App::routes()) {
      CAPTURE(route.path);
      paths.insert(route.path);
      const bool sensitive = route.path.rfind("/api/", 0) == 0 || route.path.rfind("/debug/", 0) == 0;
      if (sensitive) CHECK(route.access == http::Access::bearer);
      if (!sensitive) CHECK(route.access == http::Access::open);  // today: /health, /status, /metrics
      CHECK((route.plane == Plane::data) == (route.path.rfind("/api/", 0) == 0));
      CHECK((route.handle != nullptr));
    }
    for (std::string_view p : {"/health", "/status", "/metrics", "/debug/alloc/stats", "/api/v1/ingest",
                               "/api/v1/query/range", "/api/v1/query/find", "/api/v1/series"})
      CHECK_MESSAGE(paths.count(p) == 1, p);
  }

  TEST_CASE("with a token, every bearer route refuses a request without it, and serves one with it") {
    Fixture f("s3cret");
    auto data = f.app->make_worker_context(Listener::data, 0);
    for (const App::Route& route : App::routes()) {
      CAPTURE(route.method);
      CAPTURE(route.path);
      const http::Response anonymous = f.app->handle(request(route.method, route.path), *data);
      if (route.access == http::Access::bearer) {
        CHECK(anonymous.status == 401);
        CHECK(anonymous.route == route.path);
      } else {
        CHECK(anonymous.status == 200);
      }
      const http::Response wrong = f.app->handle(request(route.method, route.path, "Bearer nope"), *data);
      CHECK(wrong.status == (route.access == http::Access::bearer ? 401 : 200));
      // With the token the handler runs: 200, or 400 for the missing parameters.
      const http::Response with = f.app->handle(request(route.method, route.path, "Bearer s3cret"), *data);
      CHECK(with.status != 401);
      CHECK(with.status < 500);
    }
  }

  TEST_CASE("control routes are served on both listeners") {
    Fixture f;
    auto data = f.app->make_worker_context(Listener::data, 0);
    auto control = f.app->make_worker_context(Listener::control, 0);
    for (std::string_view path : {"/health", "/status", "/metrics", "/debug/alloc/stats"}) {
      CAPTURE(path);
      CHECK(f.app->handle(request("GET", path), *data).status == 200);
      CHECK(f.app->handle(request("GET", path), *control).status == 200);
    }
    const json status = json::parse(f.app->handle(request("GET", "/status"), *control).body);
    CHECK(status["listeners"]["data"] == "127.0.0.1:18080");
    CHECK(status["listeners"]["control"] == "127.0.0.1:18081");
    const json stats = json::parse(f.app->handle(request("GET", "/debug/alloc/stats"), *control).body);
    CHECK(stats.contains("small_pool"));  // alloc/stats_json's document
    CHECK(f.app->handle(request("GET", "/nope"), *control).status == 404);
  }

  TEST_CASE("with a token, an unknown path under /api/ or /debug/ is 401 to an anonymous client") {
    Fixture f("s3cret");
    auto data = f.app->make_worker_context(Listener::data, 0);
    for (std::string_view path : {"/api/v1/nope", "/debug/x", "/debug/"}) {
      CAPTURE(path);
      CHECK(f.app->handle(request("GET", path), *data).status == 401);
      CHECK(f.app->handle(request("GET", path, "Bearer s3cret"), *data).status == 404);
    }
    CHECK(f.app->handle(request("GET", "/nope"), *data).status == 404);
    CHECK(f.app->handle(request("GET", "/apix"), *data).status == 404);
  }

  TEST_CASE("the control listener answers a data request with 421 naming the data listener") {
    Fixture f("s3cret");
    auto control = f.app->make_worker_context(Listener::control, 0);
    for (const App::Route& route : App::routes()) {
      if (route.plane != Plane::data) continue;
      for (std::string_view method : {std::string_view(route.method), std::string_view("DELETE")}) {
        CAPTURE(route.path);
        CAPTURE(method);
        CHECK(f.app->handle(request(method, route.path), *control).status == 401);  // who may not call it
        const http::Response r = f.app->handle(request(method, route.path, "Bearer s3cret"), *control);
        CHECK(r.status == 421);
        CHECK(error_of(r) ==
              std::string(route.path) +
                  " is served by the data listener on 127.0.0.1:18080, not by this control listener");
      }
    }
  }

  TEST_CASE("a worker's context carries its ingest state, its hooks record metrics per listener") {
    Fixture f;
    // What the data listener's worker_start hook builds, on this thread.
    const std::unique_ptr<http::WorkerHandler> worker = f.app->hooks(Listener::data).worker_start(1);
    const std::string body =
        R"({"series":"cpu","ts":1,"value":0.5}
{"series":"cpu","ts":2,"value":0.7}
not json
)";
    const http::Response r = worker->handle(request("POST", "/api/v1/ingest", {}, body));
    CHECK(r.status == 200);
    const json answer = json::parse(r.body);
    CHECK(answer["ingested"] == 2);
    CHECK(answer["rejected"] == 1);
    worker->on_response(http::Exchange{r.route, r.status, 0.002});
    worker->on_stop();

    const std::unique_ptr<http::WorkerHandler> control = f.app->hooks(Listener::control).worker_start(0);
    const http::Response s = control->handle(request("GET", "/status"));
    control->on_response(http::Exchange{s.route, s.status, 0.0001});
    control->on_stop();

    const auto merged = f.app->metrics().merged();
    const auto ingest = merged.find(RequestMetrics::Key{"data", "/api/v1/ingest", 200});
    REQUIRE(ingest != merged.end());
    CHECK(ingest->second.count == 1);
    CHECK(merged.count(RequestMetrics::Key{"control", "/status", 200}) == 1);
    CHECK(merged.count(RequestMetrics::Key{"data", "/status", 200}) == 0);

    // The context itself: the parsed batch stays with the worker between requests.
    auto context = f.app->make_worker_context(Listener::data, 0);
    CHECK(context->listener == Listener::data);
    f.app->handle(request("POST", "/api/v1/ingest", {}, R"({"series":"m","ts":5,"value":1})"), *context);
    CHECK(context->batch.points.size() == 1);
    CHECK(context->batch.points[0].ts == 5);
  }

  TEST_CASE("server options: the data listener's from the config, the control listener's own") {
    Fixture f;
    f.config.listen_address = "0.0.0.0";
    f.config.max_connections = 5000;
    const http::ServerOptions data = f.app->server_options(Listener::data);
    CHECK(data.name == "data");
    CHECK(data.address == "0.0.0.0");
    CHECK(data.port == 8080);
    CHECK(data.workers == 2);
    CHECK(data.max_connections == 5000);
    CHECK(data.max_body_bytes == f.config.max_body_bytes);
    CHECK(data.linger_bytes >= 2 * f.config.max_body_bytes);
    const http::ServerOptions control = f.app->server_options(Listener::control);
    CHECK(control.name == "control");
    CHECK(control.address == "127.0.0.1");
    CHECK(control.port == 8081);
    CHECK(control.workers == 1);
    CHECK(control.max_connections == 64);
  }
}

}  // namespace sydra::server
