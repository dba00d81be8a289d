// server/http/server.hpp: the HTTP layer on its own, with a handler of the test's making —
// no App, no allocator, no config (this executable links sydra_http alone). The hooks run
// on the worker threads they belong to; sessions allocate through the handler's memory
// resource; a throwing handler costs one 500, not the worker; a body over the limit gets a
// 413 the client reads, thanks to the lingering close.
#include "server/http/server.hpp"

#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <memory_resource>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "support/loopback_client.hpp"

namespace http = sydra::server::http;
using namespace std::chrono_literals;
using sydra::test::LoopbackClient;

namespace {

// Counts what goes through it, so the test can see the sessions use it.
class CountingResource final : public std::pmr::memory_resource {
 public:
  std::atomic<std::uint64_t> allocations{0};

 private:
  void* do_allocate(std::size_t bytes, std::size_t align) override {
    allocations.fetch_add(1, std::memory_order_relaxed);
    return std::pmr::new_delete_resource()->allocate(bytes, align);
  }
  void do_deallocate(void* p, std::size_t bytes, std::size_t align) override {
    std::pmr::new_delete_resource()->deallocate(p, bytes, align);
  }
  bool do_is_equal(const std::pmr::memory_resource& other) const noexcept override { return this == &other; }
};

// What the hooks observed, across workers.
struct Observed {
  std::mutex mutex;
  std::set<std::thread::id> started_on;
  std::set<std::thread::id> handled_on;
  std::set<std::thread::id> stopped_on;
  std::vector<http::Exchange> exchanges;
  std::vector<std::string> routes;  // copies of exchanges[i].route
  std::atomic<int> idle_ticks{0};
  std::atomic<int> handlers_alive{0};
  CountingResource memory;
};

class TestHandler final : public http::WorkerHandler {
 public:
  explicit TestHandler(Observed& o) : o_(o) {
    std::lock_guard<std::mutex> lock(o_.mutex);
    o_.started_on.insert(std::this_thread::get_id());
    o_.handlers_alive.fetch_add(1);
  }
  ~TestHandler() override { o_.handlers_alive.fetch_sub(1); }

  std::pmr::memory_resource* memory() noexcept override { return &o_.memory; }

  http::Response handle(const http::Request& request) override {
    {
      std::lock_guard<std::mutex> lock(o_.mutex);
      o_.handled_on.insert(std::this_thread::get_id());
    }
    if (request.path == "/throw") throw std::runtime_error("handler failure");
    if (request.path == "/binary") {  // a protobuf answer: bytes as they are
      http::Response r;
      r.content_type = "application/x-protobuf";
      r.body = std::string(request.content_encoding) + std::string("\x00\x01", 2);
      r.headers.emplace_back("Content-Encoding", "snappy");
      return r;
    }
    if (request.path == "/nothing") {
      http::Response r;
      r.status = 204;
      return r;
    }
    http::Response r = http::json_ok("{\"path\":\"" + std::string(request.path) +
                                     "\",\"bytes\":" + std::to_string(request.body.size()) + "}");
    r.route = request.path == "/echo" ? "/echo" : "other";
    return r;
  }
  void on_response(const http::Exchange& e) override {
    std::lock_guard<std::mutex> lock(o_.mutex);
    o_.exchanges.push_back(e);
    o_.routes.emplace_back(e.route);
  }
  void on_idle() override { o_.idle_ticks.fetch_add(1); }
  void on_stop() override {
    std::lock_guard<std::mutex> lock(o_.mutex);
    o_.stopped_on.insert(std::this_thread::get_id());
  }

 private:
  Observed& o_;
};

http::ServerOptions small_options(unsigned workers) {
  http::ServerOptions o;
  o.name = "test";
  o.address = "127.0.0.1";
  o.port = 0;
  o.workers = workers;
  o.server_header = "test/1";
  o.max_body_bytes = 64 * 1024;
  o.idle_tick = 5ms;
  return o;
}

http::ServerHooks hooks_for(Observed& o) {
  http::ServerHooks h;
  h.worker_start = [&o](unsigned) { return std::make_unique<TestHandler>(o); };
  return h;
}

std::string get(std::string_view path, std::string_view extra = {}) {
  return "GET " + std::string(path) + " HTTP/1.1\r\nHost: t\r\n" + std::string(extra) + "\r\n";
}

// Waits (bounded) until `done` holds.
template <class Predicate>
bool eventually(Predicate done, std::chrono::milliseconds timeout = 5s) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(2ms);
  }
  return true;
}

}  // namespace

TEST_SUITE("concurrency") {
  TEST_CASE("hooks run on the worker threads, sessions allocate through the handler's resource") {
    Observed o;
    http::ConnectionCounters counters;
    {
      http::Server server(small_options(2), hooks_for(o), counters);
      const std::uint16_t port = server.listen();
      REQUIRE(port != 0);
      server.start();
      {
        std::lock_guard<std::mutex> lock(o.mutex);
        CHECK(o.started_on.size() == 2);  // both handlers exist once start() returns
        CHECK(o.started_on.count(std::this_thread::get_id()) == 0);
      }
      // Connections go round robin: four of them reach both workers.
      for (int i = 0; i < 4; ++i) {
        LoopbackClient c(port);
        REQUIRE(c.send(get("/echo", "Connection: close\r\n")));
        const auto r = c.read_response();
        REQUIRE(r.has_value());
        CHECK(r->status == 200);
        CHECK(r->has_header("Server: test/1\r\n"));
        CHECK(r->body == "{\"path\":\"/echo\",\"bytes\":0}\n");
        CHECK(c.wait_closed(5s));
      }
      CHECK(eventually([&] {
        std::lock_guard<std::mutex> lock(o.mutex);
        return o.exchanges.size() == 4;
      }));
      CHECK(eventually([&] { return o.idle_ticks.load() >= 2; }));
      CHECK(o.memory.allocations.load() > 0);
      CHECK(counters.connections_total.load() == 4);
      {
        std::lock_guard<std::mutex> lock(o.mutex);
        CHECK(o.handled_on == o.started_on);  // handled on the threads that built the handlers
        for (const auto& e : o.exchanges) {
          CHECK(e.status == 200);
          CHECK(e.seconds >= 0);
        }
        for (const auto& r : o.routes) CHECK(r == "/echo");
      }
      server.begin_shutdown();
      CHECK(server.wait_stopped(5s));
      std::lock_guard<std::mutex> lock(o.mutex);
      CHECK(o.stopped_on == o.started_on);  // on_stop on each worker's own thread
      CHECK(o.handlers_alive.load() == 2);  // destroyed with the server, not before
    }
    CHECK(o.handlers_alive.load() == 0);
    CHECK(counters.connections_active.load() == 0);
  }

  TEST_CASE("a handler that throws costs one 500, the worker and the connection go on") {
    Observed o;
    http::ConnectionCounters counters;
    http::Server server(small_options(1), hooks_for(o), counters);
    const std::uint16_t port = server.listen();
    server.start();
    LoopbackClient c(port);
    REQUIRE(c.send(get("/throw") + get("/echo")));
    const auto failed = c.read_response();
    REQUIRE(failed.has_value());
    CHECK(failed->status == 500);
    CHECK(failed->body == "{\"error\":\"internal error\"}\n");
    const auto next = c.read_response();
    REQUIRE(next.has_value());
    CHECK(next->status == 200);
    CHECK(eventually([&] {
      std::lock_guard<std::mutex> lock(o.mutex);
      return o.routes.size() == 2;
    }));
    std::lock_guard<std::mutex> lock(o.mutex);
    CHECK(o.routes[0] == "error");
    CHECK(o.exchanges[0].status == 500);
  }

  TEST_CASE("binary bodies go out as they are, a 204 with no body and no Content-Type") {
    Observed o;
    http::ConnectionCounters counters;
    http::Server server(small_options(1), hooks_for(o), counters);
    const std::uint16_t port = server.listen();
    server.start();
    LoopbackClient c(port);
    REQUIRE(c.send(get("/binary", "Content-Encoding: snappy\r\n") + get("/nothing") + get("/echo")));
    const auto binary = c.read_response();
    REQUIRE(binary.has_value());
    CHECK(binary->status == 200);
    CHECK(binary->body == std::string("snappy\x00\x01", 8));  // the request's encoding, no newline
    CHECK(binary->has_header("Content-Encoding: snappy"));
    const auto nothing = c.read_response();
    REQUIRE(nothing.has_value());
    CHECK(nothing->status == 204);
    CHECK(nothing->body.empty());
    CHECK_FALSE(nothing->has_header("Content-Type"));
    const auto echo = c.read_response();  // the connection still frames answers right
    REQUIRE(echo.has_value());
    CHECK(echo->status == 200);
    CHECK(echo->body.back() == '\n');  // JSON keeps its newline
  }

  // Regression (found by the request fuzzer): with a transfer coding Beast's parser does not
  // know, it took the request for one without a body, and the session answered it instead
  // of refusing the coding.
  TEST_CASE("a Transfer-Encoding other than chunked is 501, whatever the parser made of it") {
    Observed o;
    http::ConnectionCounters counters;
    http::Server server(small_options(1), hooks_for(o), counters);
    const std::uint16_t port = server.listen();
    server.start();
    for (const char* coding : {"gzip", "cnhuekd", "gzip, chunked"}) {
      CAPTURE(coding);
      LoopbackClient c(port);
      REQUIRE(c.send(std::string("POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: ") + coding +
                     "\r\n\r\n4\r\nabcd\r\n0\r\n\r\n"));
      const auto r = c.read_response();
      REQUIRE(r.has_value());
      CHECK(r->status == 501);
      CHECK(r->body == "{\"error\":\"unsupported Transfer-Encoding: only chunked is accepted\"}\n");
      CHECK(c.wait_closed(5s));
    }
    std::lock_guard<std::mutex> lock(o.mutex);
    CHECK(o.handled_on.empty());  // no handler saw any of them
  }

  TEST_CASE("a worker_start that throws makes start() throw") {
    http::ConnectionCounters counters;
    http::ServerHooks hooks;
    hooks.worker_start = [](unsigned worker) -> std::unique_ptr<http::WorkerHandler> {
      throw std::runtime_error("worker " + std::to_string(worker) + " has no memory");
    };
    http::Server server(small_options(2), hooks, counters);
    server.listen();
    CHECK_THROWS_WITH_AS(server.start(), "worker 0 has no memory", std::runtime_error);
  }

  TEST_CASE("listen() names the listener and the address it could not bind") {
    Observed o;
    http::ConnectionCounters counters;
    http::Server first(small_options(1), hooks_for(o), counters);
    const std::uint16_t port = first.listen();
    http::ServerOptions taken = small_options(1);
    taken.port = port;
    http::Server second(taken, hooks_for(o), counters);
    try {
      second.listen();
      FAIL("bound a port in use");
    } catch (const std::system_error& e) {
      const std::string what = e.what();
      CHECK(what.find("test listener") != std::string::npos);
      CHECK(what.find("127.0.0.1:" + std::to_string(port)) != std::string::npos);
    }
    http::ServerOptions bad = small_options(1);
    bad.address = "not-an-address";
    http::Server third(bad, hooks_for(o), counters);
    CHECK_THROWS_AS(third.listen(), std::system_error);
  }

  TEST_CASE("max_connections: the connection over the cap gets a canned 503") {
    Observed o;
    http::ConnectionCounters counters;
    http::ServerOptions options = small_options(1);
    options.max_connections = 1;
    http::Server server(options, hooks_for(o), counters);
    const std::uint16_t port = server.listen();
    server.start();
    LoopbackClient held(port);
    REQUIRE(held.send(get("/echo")));
    REQUIRE(held.read_response().has_value());  // accepted and counted
    LoopbackClient over(port);
    const auto r = over.read_response();
    REQUIRE(r.has_value());
    CHECK(r->status == 503);
    CHECK(r->body == "{\"error\":\"too many connections\"}\n");
    CHECK(counters.connections_rejected.load() == 1);
  }

  // Regression: the session answered 413 and closed with the body unread; the kernel then
  // reset the connection and the client, still sending, never read the answer.
  TEST_CASE("a body over max_body_bytes sent without Expect: the client reads its 413") {
    Observed o;
    http::ConnectionCounters counters;
    http::ServerOptions options = small_options(1);
    options.max_body_bytes = 64 * 1024;
    options.linger_bytes = 64 << 20;
    http::Server server(options, hooks_for(o), counters);
    const std::uint16_t port = server.listen();
    server.start();
    for (const bool chunked : {false, true}) {
      CAPTURE(chunked);
      // Far more than the socket buffers hold, so the client is still sending when the
      // server has answered; within linger_bytes.
      const std::string body(16 << 20, 'x');
      std::string request = "POST /echo HTTP/1.1\r\nHost: t\r\n";
      if (chunked) {
        request += "Transfer-Encoding: chunked\r\n\r\n";
        for (std::size_t at = 0; at < body.size(); at += 65536)
          request += "10000\r\n" + body.substr(at, 65536) + "\r\n";
        request += "0\r\n\r\n";
      } else {
        request += "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
      }
      LoopbackClient c(port);
      // The whole request first, as a simple client does, then the answer.
      CHECK(c.send(request));
      const auto r = c.read_response();
      REQUIRE(r.has_value());
      CHECK(r->status == 413);
      CHECK(r->has_header("Connection: close\r\n"));
      CHECK(r->body == "{\"error\":\"request body exceeds max_body_bytes\"}\n");
      CHECK(c.wait_closed(5s));
      CHECK_FALSE(c.reset());
    }
    CHECK(counters.lingering_closes.load() == 2);
    // The worker is free again.
    LoopbackClient after(port);
    REQUIRE(after.send(get("/echo")));
    const auto r = after.read_response();
    REQUIRE(r.has_value());
    CHECK(r->status == 200);
  }

  TEST_CASE("the lingering close is bounded in bytes and in time") {
    Observed o;
    http::ConnectionCounters counters;
    http::ServerOptions options = small_options(1);
    options.max_body_bytes = 1024;
    options.linger_bytes = 256 * 1024;
    options.linger_time = 300ms;
    http::Server server(options, hooks_for(o), counters);
    const std::uint16_t port = server.listen();
    server.start();
    {
      // In time: the client sends its header, then nothing, and never closes.
      LoopbackClient c(port);
      REQUIRE(c.send("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\nabc"));
      const auto r = c.read_response();
      REQUIRE(r.has_value());
      CHECK(r->status == 413);
      const auto start = std::chrono::steady_clock::now();
      CHECK(c.wait_closed(5s));
      CHECK(std::chrono::steady_clock::now() - start < 3s);  // linger_time, not the 10 s read timeout
    }
    {
      // In bytes: a client that keeps sending far more than linger_bytes is cut off.
      LoopbackClient c(port);
      REQUIRE(c.send("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100000000\r\n\r\n"));
      const std::string block(64 * 1024, 'y');
      bool sending = true;
      for (int i = 0; i < 1600 && sending; ++i) sending = c.send(block);  // 100 MB at most
      CHECK_FALSE(sending);  // the server closed before it all went
    }
    CHECK(counters.lingering_closes.load() == 2);
  }
}
