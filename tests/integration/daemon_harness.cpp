#include "daemon_harness.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <doctest/doctest.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <stdexcept>
#include <thread>

extern char** environ;

namespace sydra::itest {

namespace {

[[noreturn]] void fail_errno(const std::string& what) {
  throw std::runtime_error(what + ": " + std::strerror(errno));
}

bool starts_with_key(std::string_view entry, std::string_view key) {
  return entry.size() > key.size() && entry.substr(0, key.size()) == key && entry[key.size()] == '=';
}

std::string key_of(std::string_view entry) {
  return std::string(entry.substr(0, entry.find('=')));
}

// Variables that would change what the daemon (or a client command) does, unless a test sets
// them itself.
constexpr std::string_view kScrubbed[] = {
    "SYDRADB_TOKEN", "SYDRADB_URL", "NOTIFY_SOCKET",    "WATCHDOG_USEC",      "WATCHDOG_PID",
    "LISTEN_FDS",    "LISTEN_PID",  "SYDRA_ALLOC_MODE", "SYDRA_ALLOC_SHARDS", "SYDRA_ALLOC_RESERVE_MB",
    "JOURNAL_STREAM"};

Millis remaining(Clock::time_point deadline) {
  return std::max(Millis(0), std::chrono::duration_cast<Millis>(deadline - Clock::now()));
}

int poll_one(int fd, short events, Millis timeout) {
  pollfd p{fd, events, 0};
  for (;;) {
    const int r = ::poll(&p, 1, static_cast<int>(timeout.count()));
    if (r >= 0) return r;
    if (errno != EINTR) fail_errno("poll");
  }
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

}  // namespace

const std::string& sydradb_binary() {
  static const std::string path = SYDRADB_BINARY;
  return path;
}

// ---- files and processes -------------------------------------------------------------------

TempDir::TempDir() {
  const char* base = std::getenv("TMPDIR");
  std::string tmpl = std::string(base != nullptr && *base != '\0' ? base : "/tmp") + "/sydradb-it-XXXXXX";
  if (::mkdtemp(tmpl.data()) == nullptr) fail_errno("mkdtemp " + tmpl);
  path_ = tmpl;
}

TempDir::~TempDir() {
  std::error_code ignored;
  std::filesystem::remove_all(path_, ignored);
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

void write_file(const std::string& path, std::string_view text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  if (!out.flush()) throw std::runtime_error("cannot write " + path);
}

std::string ExitStatus::describe() const {
  if (exited) return "exit status " + std::to_string(code);
  if (signal != 0)
    return std::string("killed by signal ") + std::to_string(signal) + " (" + strsignal(signal) + ")";
  return "still running";
}

ExitStatus exited_with(int code) {
  return ExitStatus{true, code, 0};
}

namespace {
ExitStatus from_wait_status(int status) {
  ExitStatus s;
  if (WIFEXITED(status)) {
    s.exited = true;
    s.code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    s.signal = WTERMSIG(status);
  }
  return s;
}
}  // namespace

pid_t spawn(const std::vector<std::string>& argv, const ChildOptions& options) {
  // Everything the child needs is built before fork(): between fork and exec the child may
  // only make async-signal-safe calls (the test process has threads).
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string_view entry(*e);
    bool drop = std::any_of(std::begin(kScrubbed), std::end(kScrubbed),
                            [&](std::string_view k) { return starts_with_key(entry, k); });
    drop = drop || std::any_of(options.env.begin(), options.env.end(),
                               [&](const std::string& set) { return starts_with_key(entry, key_of(set)); });
    if (!drop) env.emplace_back(entry);
  }
  for (const std::string& set : options.env) env.push_back(set);

  std::vector<char*> c_argv;
  for (const std::string& a : argv) c_argv.push_back(const_cast<char*>(a.c_str()));
  c_argv.push_back(nullptr);
  std::vector<char*> c_env;
  for (const std::string& e : env) c_env.push_back(const_cast<char*>(e.c_str()));
  c_env.push_back(nullptr);
  const std::string out_path = options.stdout_path.empty() ? "/dev/null" : options.stdout_path;
  const std::string err_path = options.stderr_path.empty() ? "/dev/null" : options.stderr_path;
  const pid_t parent = ::getpid();

  const pid_t pid = ::fork();
  if (pid < 0) fail_errno("fork");
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(126);  // the parent died before prctl
    const int in = ::open("/dev/null", O_RDONLY);
    const int out = ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    const int err = ::open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (in < 0 || out < 0 || err < 0) ::_exit(126);
    ::dup2(in, 0);
    ::dup2(out, 1);
    ::dup2(err, 2);
    if (options.open_files_limit != 0) {
      const rlimit limit{options.open_files_limit, options.open_files_limit};
      if (::setrlimit(RLIMIT_NOFILE, &limit) != 0) ::_exit(126);
    }
    // Signals the test runner ignores or blocks must not leak into the daemon.
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::signal(SIGPIPE, SIG_DFL);
    ::execve(c_argv[0], c_argv.data(), c_env.data());
    ::_exit(127);
  }
  return pid;
}

std::optional<ExitStatus> wait_exit(pid_t pid, Millis timeout) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    int status = 0;
    const pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) return from_wait_status(status);
    if (r < 0 && errno != EINTR) fail_errno("waitpid");
    if (Clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(5ms);
  }
}

bool is_running(pid_t pid) {
  siginfo_t info{};
  // WNOWAIT: peek without reaping.
  if (::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) != 0) return false;
  return info.si_pid == 0;
}

RunResult run_sydradb(const std::vector<std::string>& args, const std::vector<std::string>& env,
                      Millis timeout) {
  TempDir dir;
  std::vector<std::string> argv{sydradb_binary()};
  argv.insert(argv.end(), args.begin(), args.end());
  const pid_t pid = spawn(argv, ChildOptions{env, dir.file("stdout"), dir.file("stderr")});
  RunResult result;
  if (auto status = wait_exit(pid, timeout)) {
    result.status = *status;
  } else {
    ::kill(pid, SIGKILL);
    result.status = wait_exit(pid, 10s).value_or(ExitStatus{});
    result.timed_out = true;
  }
  result.out = read_file(dir.file("stdout"));
  result.err = read_file(dir.file("stderr"));
  return result;
}

std::vector<std::string> lines_of(std::string_view text) {
  std::vector<std::string> out;
  while (!text.empty()) {
    const auto nl = text.find('\n');
    out.emplace_back(text.substr(0, nl));
    if (nl == std::string_view::npos) break;
    text.remove_prefix(nl + 1);
  }
  return out;
}

bool contains(std::string_view haystack, std::string_view needle) {
  return haystack.find(needle) != std::string_view::npos;
}

std::string last_bytes(std::string_view text, std::size_t n) {
  return std::string(text.size() > n ? text.substr(text.size() - n) : text);
}

// ---- the daemon ------------------------------------------------------------------------------

Daemon::Daemon(DaemonOptions options) {
  const std::string port_file = dir_.file("port");
  const std::string control_port_file = dir_.file("control_port");
  std::vector<std::string> argv{sydradb_binary(),
                                "serve",
                                "--port",
                                "0",
                                "--port-file",
                                port_file,
                                "--control-port-file",
                                control_port_file,
                                "--data-dir",
                                dir_.file("data"),
                                "--workers",
                                std::to_string(options.workers)};
  for (const std::string& kv : options.set_values) {
    argv.emplace_back("--set");
    argv.push_back(kv);
  }
  argv.insert(argv.end(), options.extra_args.begin(), options.extra_args.end());
  // Ready means what it means to systemd: READY=1 on NOTIFY_SOCKET, sent once the port is
  // served and the signal handlers are in place. A test that passes its own NOTIFY_SOCKET
  // gets the port file alone.
  std::vector<std::string> env = options.environment;
  const bool own_notify = std::none_of(
      env.begin(), env.end(), [](const std::string& e) { return starts_with_key(e, "NOTIFY_SOCKET"); });
  if (own_notify) {
    notify_ = std::make_unique<NotifySocket>(dir_.file("notify"));
    env.push_back("NOTIFY_SOCKET=" + notify_->path());
  }
  pid_ = spawn(argv, ChildOptions{env, "", dir_.file("stderr"), options.open_files_limit});

  const auto deadline = Clock::now() + patience(10s);
  auto give_up = [&](const std::string& why) {
    if (auto status = wait_exit(pid_, 0ms)) {
      exit_ = status;
      throw std::runtime_error("sydradb serve ended before it was ready (" + status->describe() +
                               "); stderr:\n" + log());
    }
    if (Clock::now() < deadline) return;
    ::kill(pid_, SIGKILL);
    exit_ = wait_exit(pid_, 10s);
    throw std::runtime_error("sydradb serve " + why + " within " + std::to_string(patience(10s).count()) +
                             " ms; stderr:\n" + log());
  };
  for (;;) {
    const std::string text = read_file(port_file);
    if (!text.empty() && text.back() == '\n') {
      port_ = static_cast<std::uint16_t>(std::stoul(text));
      // Written before the data port file.
      control_port_ = static_cast<std::uint16_t>(std::stoul(read_file(control_port_file)));
      break;
    }
    give_up("wrote no port file");
    std::this_thread::sleep_for(10ms);
  }
  while (notify_ && !notify_->wait_for("READY=1", 50ms)) give_up("sent no READY=1");
}

Daemon::~Daemon() {
  if (pid_ <= 0 || exit_) return;
  const ExitStatus status = stop(SIGTERM);
  if (status != exited_with(0)) {
    const std::string message =
        "sydradb did not shut down cleanly on SIGTERM: " + status.describe() + "; stderr:\n" + log();
    FAIL_CHECK(message);
  }
}

std::string Daemon::url() const {
  return "http://127.0.0.1:" + std::to_string(port_);
}

std::string Daemon::control_url() const {
  return "http://127.0.0.1:" + std::to_string(control_port_);
}

std::string Daemon::log() const {
  return read_file(dir_.file("stderr"));
}

void Daemon::signal(int signal_number) const {
  if (!exit_) ::kill(pid_, signal_number);
}

std::optional<ExitStatus> Daemon::wait(Millis timeout) {
  if (!exit_) exit_ = wait_exit(pid_, timeout);
  return exit_;
}

ExitStatus Daemon::stop(int signal_number, Millis timeout) {
  if (exit_) return *exit_;
  signal(signal_number);
  if (auto status = wait(timeout)) return *status;
  ::kill(pid_, SIGKILL);
  exit_ = wait_exit(pid_, 10s);
  ExitStatus hung;
  hung.signal = SIGKILL;  // ours: it did not exit in time
  return hung;
}

bool Daemon::running() const {
  return !exit_ && is_running(pid_);
}

std::uint64_t Daemon::rss_bytes() const {
  std::istringstream in(read_file("/proc/" + std::to_string(pid_) + "/status"));
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::stoull(line.substr(6)) * 1024;
  return 0;
}

Millis Daemon::cpu_time() const {
  // Fields 14 and 15 (utime, stime) in clock ticks, after the parenthesised command name.
  const std::string stat = read_file("/proc/" + std::to_string(pid_) + "/stat");
  const auto close = stat.rfind(')');
  if (close == std::string::npos) return Millis(0);
  std::istringstream in(stat.substr(close + 2));
  std::string field;
  unsigned long long utime = 0, stime = 0;
  for (int i = 3; i <= 15 && in >> field; ++i) {
    if (i == 14) utime = std::stoull(field);
    if (i == 15) stime = std::stoull(field);
  }
  return Millis((utime + stime) * 1000 / static_cast<unsigned long long>(::sysconf(_SC_CLK_TCK)));
}

// ---- HTTP over raw sockets -------------------------------------------------------------------

std::string HttpResponse::header(std::string_view name) const {
  const std::string wanted = lower(name);
  for (const auto& [n, v] : headers)
    if (lower(n) == wanted) return v;
  return {};
}

bool HttpResponse::has_header(std::string_view name) const {
  const std::string wanted = lower(name);
  return std::any_of(headers.begin(), headers.end(), [&](const auto& h) { return lower(h.first) == wanted; });
}

nlohmann::json HttpResponse::json() const {
  return nlohmann::json::parse(body);
}

std::string make_request(std::string_view method, std::string_view target,
                         const std::vector<std::string>& headers, std::string_view body) {
  std::string r;
  r.append(method).append(" ").append(target).append(" HTTP/1.1\r\nHost: 127.0.0.1\r\n");
  for (const std::string& h : headers) r.append(h).append("\r\n");
  if (!body.empty()) r.append("Content-Length: ").append(std::to_string(body.size())).append("\r\n");
  r.append("\r\n").append(body);
  return r;
}

namespace {
int connect_loopback(std::uint16_t port, int& error) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) fail_errno("socket");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    error = errno;
    ::close(fd);
    return -1;
  }
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  error = 0;
  return fd;
}
}  // namespace

Connection::Connection(std::uint16_t port) {
  int error = 0;
  fd_ = connect_loopback(port, error);
  if (fd_ < 0)
    throw std::runtime_error("connect to 127.0.0.1:" + std::to_string(port) + ": " + std::strerror(error));
}

int Connection::try_connect(std::uint16_t port) {
  int error = 0;
  const int fd = connect_loopback(port, error);
  if (fd >= 0) ::close(fd);
  return error;
}

Connection::~Connection() {
  if (fd_ >= 0) ::close(fd_);
}

Connection::Connection(Connection&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)), buffer_(std::move(other.buffer_)), eof_(other.eof_) {}

bool Connection::send(std::string_view bytes) {
  while (!bytes.empty()) {
    const ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EPIPE || errno == ECONNRESET) return false;
      fail_errno("send");
    }
    bytes.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

void Connection::shutdown_send() {
  ::shutdown(fd_, SHUT_WR);
}

bool Connection::readable(Millis timeout) {
  if (!buffer_.empty() || eof_) return true;
  return poll_one(fd_, POLLIN, timeout) > 0;
}

namespace {
// Reads what is available into `buffer`; false on EOF or reset.
bool read_some(int fd, std::string& buffer) {
  char chunk[16384];
  for (;;) {
    const ssize_t n = ::recv(fd, chunk, sizeof chunk, 0);
    if (n > 0) {
      buffer.append(chunk, static_cast<std::size_t>(n));
      return true;
    }
    if (n == 0) return false;
    if (errno == EINTR) continue;
    if (errno == ECONNRESET || errno == EPIPE) return false;
    fail_errno("recv");
  }
}

// Parses a complete response at the start of `buffer`; returns its length, 0 if incomplete.
std::size_t parse_response(const std::string& buffer, HttpResponse& r) {
  const auto end = buffer.find("\r\n\r\n");
  if (end == std::string::npos) return 0;
  std::istringstream head(buffer.substr(0, end));
  std::string line;
  std::getline(head, line);
  if (!line.empty() && line.back() == '\r') line.pop_back();
  if (line.rfind("HTTP/1.", 0) != 0 || line.size() < 12) throw std::runtime_error("bad status line: " + line);
  r.status = std::stoi(line.substr(9, 3));
  r.reason = line.size() > 13 ? line.substr(13) : "";
  r.headers.clear();
  std::size_t length = 0;
  while (std::getline(head, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    const auto colon = line.find(':');
    if (colon == std::string::npos) throw std::runtime_error("bad header line: " + line);
    std::string value = line.substr(colon + 1);
    value.erase(0, value.find_first_not_of(" \t"));
    r.headers.emplace_back(line.substr(0, colon), value);
    if (lower(line.substr(0, colon)) == "content-length") length = std::stoul(value);
  }
  const std::size_t total = end + 4 + length;
  if (buffer.size() < total) return 0;
  r.body = buffer.substr(end + 4, length);
  r.raw = buffer.substr(0, total);
  return total;
}
}  // namespace

std::optional<HttpResponse> Connection::read_response(Millis timeout) {
  const auto deadline = Clock::now() + timeout;
  HttpResponse r;
  for (;;) {
    if (const std::size_t n = parse_response(buffer_, r); n > 0) {
      buffer_.erase(0, n);
      return r;
    }
    if (eof_) return std::nullopt;
    if (poll_one(fd_, POLLIN, remaining(deadline)) == 0) return std::nullopt;
    if (!read_some(fd_, buffer_)) eof_ = true;
  }
}

HttpResponse Connection::roundtrip(std::string_view request, Millis timeout) {
  if (!send(request))
    throw std::runtime_error("the server closed the connection before the request was sent");
  auto r = read_response(timeout);
  if (!r) throw std::runtime_error("no response within " + std::to_string(timeout.count()) + " ms");
  return *std::move(r);
}

Connection::Drain Connection::read_until_close(Millis timeout) {
  const auto deadline = Clock::now() + timeout;
  Drain d;
  d.bytes = std::exchange(buffer_, {});
  while (!eof_) {
    if (poll_one(fd_, POLLIN, remaining(deadline)) == 0) return d;
    if (!read_some(fd_, d.bytes)) eof_ = true;
  }
  d.closed = true;
  return d;
}

HttpResponse http_get(std::uint16_t port, std::string_view target, const std::vector<std::string>& headers) {
  std::vector<std::string> h = headers;
  h.emplace_back("Connection: close");
  Connection c(port);
  return c.roundtrip(make_request("GET", target, h));
}

std::uint16_t unused_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) fail_errno("socket");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    ::close(fd);
    fail_errno("bind");
  }
  ::close(fd);
  return ntohs(addr.sin_port);
}

namespace {
bool bindable(std::uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) fail_errno("socket");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port);
  const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return ok;
}
}  // namespace

std::uint16_t unused_port_range(unsigned count) {
  unsigned ephemeral_low = 32768;
  std::istringstream(read_file("/proc/sys/net/ipv4/ip_local_port_range")) >> ephemeral_low;
  const unsigned low = 10000;
  if (ephemeral_low < low + 1000 + count) return unused_port();  // an odd machine: take the risk
  std::random_device random;
  for (int attempt = 0; attempt < 100; ++attempt) {
    const auto base = static_cast<std::uint16_t>(low + random() % (ephemeral_low - count - low));
    bool free = true;
    for (unsigned k = 0; free && k < count; ++k) free = bindable(static_cast<std::uint16_t>(base + k));
    if (free) return base;
  }
  throw std::runtime_error("no run of " + std::to_string(count) + " free ports below " +
                           std::to_string(ephemeral_low));
}

// ---- sd_notify ---------------------------------------------------------------------------------

NotifySocket::NotifySocket(std::string path) : path_(std::move(path)) {
  fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd_ < 0) fail_errno("socket(AF_UNIX)");
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path_.size() >= sizeof addr.sun_path) throw std::runtime_error("socket path too long: " + path_);
  std::memcpy(addr.sun_path, path_.c_str(), path_.size() + 1);
  if (::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) fail_errno("bind " + path_);
}

NotifySocket::~NotifySocket() {
  ::close(fd_);
  ::unlink(path_.c_str());
}

std::optional<std::string> NotifySocket::wait_for(std::string_view line, Millis timeout) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    if (poll_one(fd_, POLLIN, remaining(deadline)) == 0) return std::nullopt;
    char buf[4096];
    const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail_errno("recv(notify)");
    }
    std::string datagram(buf, static_cast<std::size_t>(n));
    received_.push_back(datagram);
    for (const std::string& l : lines_of(datagram))
      if (l == line) return datagram;
  }
}

double metric(std::uint16_t port, std::string_view name) {
  const std::string text = http_get(port, "/metrics").body;
  for (const std::string& l : lines_of(text))
    if (l.size() > name.size() && l.compare(0, name.size(), name) == 0 && l[name.size()] == ' ')
      return std::stod(l.substr(name.size() + 1));
  return -1;
}

std::string url_encode(std::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (const char c : text) {
    const auto u = static_cast<unsigned char>(c);
    if ((u >= 'a' && u <= 'z') || (u >= 'A' && u <= 'Z') || (u >= '0' && u <= '9') || c == '-' || c == '_' ||
        c == '.' || c == '~') {
      out += c;
    } else {
      out += '%';
      out += kHex[u >> 4];
      out += kHex[u & 15];
    }
  }
  return out;
}

}  // namespace sydra::itest
