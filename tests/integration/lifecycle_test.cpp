// The daemon's life (server/daemon.cpp): start-up, sd_notify, graceful shutdown on SIGTERM
// and SIGINT (requests in flight finish, idle connections close, exit 0), start-up failures.
#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <string>
#include <thread>

#include "daemon_harness.hpp"

namespace sydra::itest {
namespace {

TEST_CASE("sydradb version prints the version") {
  const RunResult r = run_sydradb({"version"});
  CHECK(r.status == exited_with(0));
  // "sydradb MAJOR.MINOR.PATCH\n"
  REQUIRE(r.out.rfind("sydradb ", 0) == 0);
  const std::string version = r.out.substr(8);
  int dots = 0;
  for (char c : version.substr(0, version.size() - 1)) dots += c == '.';
  CHECK(dots == 2);
  CHECK(version.back() == '\n');
  CHECK(version.find_first_not_of("0123456789.\n") == std::string::npos);
  CHECK(version.front() != '.');
  CHECK(r.err.empty());
}

TEST_CASE("the daemon exits 0 on SIGTERM and on SIGINT") {
  for (int sig : {SIGTERM, SIGINT}) {
    CAPTURE(sig);
    Daemon d;
    INFO("daemon stderr:\n", d.log());
    CHECK(http_get(d.port(), "/status").status == 200);
    const auto start = Clock::now();
    CHECK(d.stop(sig) == exited_with(0));
    CHECK(Clock::now() - start < patience(3s));
    CHECK(contains(d.log(), sig == SIGTERM ? "received SIGTERM" : "received SIGINT"));
    CHECK(contains(d.log(), "stopped"));
  }
}

// A supervisor (or a test) that reads the port file may signal the daemon at once: the
// signal must already be handled then, not kill the process with the default action.
TEST_CASE("SIGTERM right after the port file appears still shuts down gracefully") {
  for (int attempt = 0; attempt < 10; ++attempt) {
    CAPTURE(attempt);
    TempDir dir;
    const pid_t pid = spawn({sydradb_binary(), "serve", "--port", "0", "--port-file", dir.file("port"),
                             "--data-dir", dir.file("data"), "--workers", "2"},
                            ChildOptions{{}, "", dir.file("stderr")});
    const auto deadline = Clock::now() + patience(10s);
    while (read_file(dir.file("port")).empty() && Clock::now() < deadline && is_running(pid))
      std::this_thread::sleep_for(100us);
    ::kill(pid, SIGTERM);
    auto status = wait_exit(pid, patience(10s));
    if (!status) {
      ::kill(pid, SIGKILL);
      status = wait_exit(pid, 10s);
    }
    INFO("stderr:\n", read_file(dir.file("stderr")));
    REQUIRE(status.has_value());
    CHECK(status->describe() == exited_with(0).describe());
  }
}

TEST_CASE("graceful shutdown: a request in flight gets its answer, idle connections close, exit 0") {
  Daemon d(DaemonOptions().set({"read_timeout_ms=5000", "idle_timeout_ms=30000"}));
  INFO("daemon stderr:\n", d.log());
  // Idle keep-alive connections, after a request each (both workers).
  Connection idle1(d.port());
  Connection idle2(d.port());
  CHECK(idle1.roundtrip(make_request("GET", "/status")).status == 200);
  CHECK(idle2.roundtrip(make_request("GET", "/status")).status == 200);
  Connection never_asked(d.port());  // accepted, no request yet
  // In flight: headers and half of the body.
  Connection busy(d.port());
  REQUIRE(busy.send("GET /status HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n12345"));
  std::this_thread::sleep_for(200ms);  // let the server start reading it

  d.signal(SIGTERM);
  // Idle connections are closed without an answer.
  for (Connection* c : {&idle1, &idle2, &never_asked}) {
    const auto drain = c->read_until_close(patience(2s));
    CHECK(drain.closed);
    CHECK(drain.bytes.empty());
  }
  // No new connections.
  const auto refused_by = Clock::now() + patience(2s);
  int error = 0;
  while ((error = Connection::try_connect(d.port())) == 0 && Clock::now() < refused_by)
    std::this_thread::sleep_for(10ms);
  CHECK(error == ECONNREFUSED);
  CHECK(d.running());

  // The request in flight completes and is answered; then the connection closes.
  REQUIRE(busy.send("67890"));
  const auto r = busy.read_response();
  REQUIRE(r.has_value());
  CHECK(r->status == 200);
  CHECK(r->header("Connection") == "close");
  CHECK(busy.read_until_close(patience(2s)).closed);
  CHECK(d.wait(patience(5s)) == exited_with(0));
}

TEST_CASE("graceful shutdown: a pipelined request behind the one in flight is not started") {
  Daemon d(DaemonOptions().set({"read_timeout_ms=5000"}));
  INFO("daemon stderr:\n", d.log());
  Connection busy(d.port());
  REQUIRE(busy.send("GET /status HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nab"));
  std::this_thread::sleep_for(200ms);
  d.signal(SIGTERM);
  std::this_thread::sleep_for(100ms);
  REQUIRE(busy.send("cd" + make_request("GET", "/status")));
  const auto r = busy.read_response();
  REQUIRE(r.has_value());
  CHECK(r->status == 200);
  CHECK(r->header("Connection") == "close");
  const auto rest = busy.read_until_close(patience(2s));
  CHECK(rest.closed);
  CHECK(rest.bytes.empty());
  CHECK(d.wait(patience(5s)) == exited_with(0));
}

TEST_CASE("shutdown_timeout_ms bounds how long a stuck request delays the exit") {
  Daemon d(DaemonOptions().set({"read_timeout_ms=60000", "shutdown_timeout_ms=300"}));
  INFO("daemon stderr:\n", d.log());
  Connection stuck(d.port());
  REQUIRE(stuck.send("GET /status HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n1"));
  std::this_thread::sleep_for(200ms);
  const auto start = Clock::now();
  CHECK(d.stop(SIGTERM) == exited_with(0));
  CHECK(Clock::now() - start < patience(3s));
  CHECK(contains(d.log(), "shutdown_timeout_ms"));
}

TEST_CASE("sd_notify: READY=1 once listening, STOPPING=1 on SIGTERM, WATCHDOG=1 when asked") {
  TempDir dir;
  NotifySocket notify(dir.file("notify.sock"));
  Daemon d(DaemonOptions().env({"NOTIFY_SOCKET=" + notify.path(), "WATCHDOG_USEC=200000"}));
  INFO("daemon stderr:\n", d.log());
  const auto ready = notify.wait_for("READY=1", patience(5s));
  REQUIRE(ready.has_value());
  CHECK(contains(*ready, "MAINPID=" + std::to_string(d.pid())));
  CHECK(contains(*ready, "STATUS=listening on 127.0.0.1:" + std::to_string(d.port())));
  // READY comes once the port is served.
  CHECK(http_get(d.port(), "/status").status == 200);
  // WATCHDOG_USEC=200 ms: a ping at least every 100 ms.
  CHECK(notify.wait_for("WATCHDOG=1", patience(2s)).has_value());
  d.signal(SIGTERM);
  CHECK(notify.wait_for("STOPPING=1", patience(5s)).has_value());
  CHECK(d.wait(patience(5s)) == exited_with(0));
}

TEST_CASE("serve is the default command, flags included") {
  TempDir dir;
  const pid_t pid = spawn({sydradb_binary(), "--port", "0", "--port-file", dir.file("port"), "--data-dir",
                           dir.file("data"), "--workers", "1"},
                          ChildOptions{{}, "", dir.file("stderr")});
  const auto deadline = Clock::now() + patience(10s);
  while (read_file(dir.file("port")).empty() && Clock::now() < deadline && is_running(pid))
    std::this_thread::sleep_for(10ms);
  INFO("stderr:\n", read_file(dir.file("stderr")));
  const std::string port = read_file(dir.file("port"));
  CHECK_FALSE(port.empty());
  if (!port.empty()) CHECK(http_get(static_cast<std::uint16_t>(std::stoul(port)), "/status").status == 200);
  ::kill(pid, SIGTERM);
  auto status = wait_exit(pid, patience(10s));
  if (!status) {
    ::kill(pid, SIGKILL);
    status = wait_exit(pid, 10s);
  }
  REQUIRE(status.has_value());
  CHECK(status->describe() == exited_with(0).describe());
}

TEST_CASE("start-up fails with exit 1 and names the address when the port is taken") {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  REQUIRE(::listen(fd, 1) == 0);
  REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
  const std::string port = std::to_string(ntohs(addr.sin_port));
  TempDir dir;
  const RunResult r = run_sydradb({"serve", "--port", port, "--data-dir", dir.file("data"), "--workers", "1"},
                                  {}, patience(10s));
  ::close(fd);
  CHECK_FALSE(r.timed_out);
  CHECK(r.status == exited_with(1));
  CHECK(contains(r.err, "127.0.0.1:" + port));
}

TEST_CASE("start-up fails with exit 1 when data_dir cannot be created") {
  TempDir dir;
  write_file(dir.file("a-file"), "x");
  const RunResult r = run_sydradb(
      {"serve", "--port", "0", "--data-dir", dir.file("a-file/data"), "--workers", "1"}, {}, patience(10s));
  CHECK_FALSE(r.timed_out);
  CHECK(r.status == exited_with(1));
  CHECK(contains(r.err, "data_dir"));
}

}  // namespace
}  // namespace sydra::itest
