// Helpers for the integration tests, which drive the real `sydradb` binary:
//
//   Daemon      `sydradb serve --port 0 --port-file ... --control-port-file ... --data-dir ...`
//               in a temporary directory, started with fork/exec, ready once the port
//               files appear and
//               READY=1 arrives on its NOTIFY_SOCKET (bounded wait); the destructor sends
//               SIGTERM and waits (bounded), SIGKILLs a daemon that hangs and fails the
//               test — so every test also checks a clean exit.
//   run()       any `sydradb` command line to completion (bounded), stdout and stderr kept.
//   Connection  a raw HTTP/1.1 client on plain POSIX sockets (127.0.0.1 only): sends exact
//               bytes (malformed requests, slow headers, pipelines) and reads responses by
//               Content-Length, or until the server closes.
//   NotifySocket  the datagram socket systemd would give a Type=notify service.
//
// Every wait is bounded; deadlines stretch by kSlowdown in sanitizer and debug builds.
// Children are started from the test's main thread with PR_SET_PDEATHSIG, so a test runner
// killed by ctest's timeout takes its daemons with it.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <csignal>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace sydra::itest {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using Millis = std::chrono::milliseconds;

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
inline constexpr int kSlowdown = 5;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
inline constexpr int kSlowdown = 5;
#elif !defined(NDEBUG)
inline constexpr int kSlowdown = 2;
#else
inline constexpr int kSlowdown = 1;
#endif
#elif !defined(NDEBUG)
inline constexpr int kSlowdown = 2;
#else
inline constexpr int kSlowdown = 1;
#endif

// A deadline for waiting on something that should happen: `base` in release builds.
inline Millis patience(Millis base) {
  return base * kSlowdown;
}

// The sydradb binary under test (SYDRADB_BINARY, set by CMake).
const std::string& sydradb_binary();

// ---- files and processes -----------------------------------------------------------------

// A fresh directory under $TMPDIR (default /tmp), removed with everything in it.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const noexcept { return path_; }
  std::string file(std::string_view name) const { return path_ + "/" + std::string(name); }

 private:
  std::string path_;
};

std::string read_file(const std::string& path);  // "" when missing
void write_file(const std::string& path, std::string_view text);

// How a child ended.
struct ExitStatus {
  bool exited = false;  // exited normally; `code` is its status
  int code = -1;
  int signal = 0;  // killed by this signal
  bool operator==(const ExitStatus&) const = default;
  std::string describe() const;
};
ExitStatus exited_with(int code);

struct ChildOptions {
  std::vector<std::string> env;   // KEY=VALUE added to (or replacing in) the environment
  std::string stdout_path;        // "" = /dev/null
  std::string stderr_path;        // "" = /dev/null
  unsigned open_files_limit = 0;  // RLIMIT_NOFILE for the child; 0 = inherited
};

// Starts argv[0] (a path) with the test's environment minus the variables that change the
// daemon's or a client's behaviour (SYDRADB_TOKEN, SYDRADB_URL, NOTIFY_SOCKET, WATCHDOG_*,
// SYDRA_ALLOC_*), plus
// options.env. Call from the test's main thread (see PR_SET_PDEATHSIG above).
pid_t spawn(const std::vector<std::string>& argv, const ChildOptions& options);
// Waits up to `timeout` for the child; nullopt if it is still running.
std::optional<ExitStatus> wait_exit(pid_t pid, Millis timeout);
// Whether the child is still running (does not reap it).
bool is_running(pid_t pid);

struct RunResult {
  ExitStatus status;
  bool timed_out = false;  // killed by us after the timeout
  std::string out;
  std::string err;
};
// Runs `sydradb <args...>` to completion, killing it after `timeout`.
RunResult run_sydradb(const std::vector<std::string>& args, const std::vector<std::string>& env = {},
                      Millis timeout = patience(10s));

// Lines of `text` without their '\n' (no empty last line).
std::vector<std::string> lines_of(std::string_view text);
bool contains(std::string_view haystack, std::string_view needle);
// The last `n` bytes of `text` (all of it when shorter).
std::string last_bytes(std::string_view text, std::size_t n);

// ---- sd_notify -------------------------------------------------------------------------

// An AF_UNIX datagram socket at `path`, as systemd passes in NOTIFY_SOCKET.
class NotifySocket {
 public:
  explicit NotifySocket(std::string path);
  ~NotifySocket();
  NotifySocket(const NotifySocket&) = delete;
  NotifySocket& operator=(const NotifySocket&) = delete;
  const std::string& path() const noexcept { return path_; }
  // Waits for a datagram whose lines include `line` (e.g. "READY=1"); returns that datagram.
  // Everything received is appended to received().
  std::optional<std::string> wait_for(std::string_view line, Millis timeout);
  const std::vector<std::string>& received() const noexcept { return received_; }

 private:
  std::string path_;
  int fd_ = -1;
  std::vector<std::string> received_;
};

// ---- the daemon ----------------------------------------------------------------------------

// Daemon(DaemonOptions().set({"read_timeout_ms=300"}).env({"SYDRADB_TOKEN=t"}))
struct DaemonOptions {
  std::vector<std::string> set_values;   // each becomes --set KEY=VALUE
  std::vector<std::string> extra_args;   // more arguments after `serve ...`
  std::vector<std::string> environment;  // KEY=VALUE
  unsigned workers = 2;
  unsigned open_files_limit = 0;  // RLIMIT_NOFILE; 0 = inherited

  DaemonOptions& set(const std::vector<std::string>& key_values) {
    set_values.insert(set_values.end(), key_values.begin(), key_values.end());
    return *this;
  }
  DaemonOptions& arg(const std::vector<std::string>& args) {
    extra_args.insert(extra_args.end(), args.begin(), args.end());
    return *this;
  }
  DaemonOptions& env(const std::vector<std::string>& key_values) {
    environment.insert(environment.end(), key_values.begin(), key_values.end());
    return *this;
  }
};

class Daemon {
 public:
  // Starts the daemon and waits (bounded) for its port file and READY=1. Throws
  // std::runtime_error with the daemon's stderr if it exits or is not ready in time.
  explicit Daemon(DaemonOptions options = {});
  // SIGTERM and a bounded wait when still running; fails the test unless it exits 0.
  ~Daemon();
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;

  std::uint16_t port() const noexcept { return port_; }                  // the data listener
  std::uint16_t control_port() const noexcept { return control_port_; }  // the control listener
  pid_t pid() const noexcept { return pid_; }
  std::string url() const;          // http://127.0.0.1:PORT
  std::string control_url() const;  // http://127.0.0.1:CONTROL_PORT
  std::string log() const;          // everything on its stderr so far
  const TempDir& dir() const noexcept { return dir_; }

  void signal(int signal_number) const;
  // Waits up to `timeout` for the daemon to exit (after a signal).
  std::optional<ExitStatus> wait(Millis timeout);
  // signal + wait; SIGKILL after `timeout` (the result then says so).
  ExitStatus stop(int signal_number = SIGTERM, Millis timeout = patience(10s));
  bool running() const;

  // Resident set size from /proc/PID/status, in bytes (0 if unreadable).
  std::uint64_t rss_bytes() const;
  // CPU time the daemon has used so far (user + system), from /proc/PID/stat.
  Millis cpu_time() const;

 private:
  TempDir dir_;
  std::unique_ptr<NotifySocket> notify_;  // when the test did not bring its own
  pid_t pid_ = -1;
  std::uint16_t port_ = 0;
  std::uint16_t control_port_ = 0;
  std::optional<ExitStatus> exit_;
};

// ---- HTTP over raw sockets ---------------------------------------------------------------

struct HttpResponse {
  int status = 0;
  std::string reason;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  std::string raw;  // the whole response as received

  // The first header called `name` (case-insensitive); "" if absent.
  std::string header(std::string_view name) const;
  bool has_header(std::string_view name) const;
  nlohmann::json json() const;  // throws on invalid JSON
};

// "METHOD target HTTP/1.1" with Host, the extra header lines ("Name: value"), and a
// Content-Length when the body is not empty.
std::string make_request(std::string_view method, std::string_view target,
                         const std::vector<std::string>& headers = {}, std::string_view body = {});

class Connection {
 public:
  // Connects to 127.0.0.1:port; throws std::runtime_error on failure.
  explicit Connection(std::uint16_t port);
  // errno of a failed connect, 0 on success (the connection is closed again).
  static int try_connect(std::uint16_t port);
  ~Connection();
  Connection(Connection&& other) noexcept;
  Connection& operator=(Connection&&) = delete;
  Connection(const Connection&) = delete;

  // Writes all of `bytes`; false if the peer is gone (EPIPE, ECONNRESET).
  bool send(std::string_view bytes);
  // Reads one response (headers, then Content-Length bytes of body). nullopt when the peer
  // closes or `timeout` passes first; bytes after the response stay buffered for the next.
  std::optional<HttpResponse> read_response(Millis timeout = patience(5s));
  // send + read_response, throwing std::runtime_error on failure.
  HttpResponse roundtrip(std::string_view request, Millis timeout = patience(5s));

  struct Drain {
    std::string bytes;    // whatever arrived (after anything already buffered)
    bool closed = false;  // the peer closed (EOF or reset) before the timeout
  };
  // Reads until the peer closes or `timeout` passes.
  Drain read_until_close(Millis timeout);
  // Whether bytes or EOF are ready to read within `timeout`.
  bool readable(Millis timeout);
  // Closes our sending side (half-close).
  void shutdown_send();
  int fd() const noexcept { return fd_; }

 private:
  int fd_ = -1;
  std::string buffer_;  // received, not yet consumed
  bool eof_ = false;
};

// One GET on a fresh connection (Connection: close); throws on failure.
HttpResponse http_get(std::uint16_t port, std::string_view target,
                      const std::vector<std::string>& headers = {});

// The value of an unlabelled metric in GET /metrics on `port`; -1 when absent.
double metric(std::uint16_t port, std::string_view name);

// The first of `count` consecutive ports free on 127.0.0.1, chosen at random below the
// kernel's ephemeral range (ip_local_port_range), where no outgoing connection takes one
// meanwhile: for servers whose ports must be known before they start.
std::uint16_t unused_port_range(unsigned count);

// A query-string value: every byte but [A-Za-z0-9-_.~] as %XX.
std::string url_encode(std::string_view text);

// A TCP port on 127.0.0.1 nothing listens on (bound, read and released: good enough here).
std::uint16_t unused_port();

}  // namespace sydra::itest
