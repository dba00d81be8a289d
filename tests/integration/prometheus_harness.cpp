#include "prometheus_harness.hpp"

#include <unistd.h>

#include <chrono>
#include <csignal>
#include <stdexcept>
#include <thread>

namespace sydra::itest {

Prometheus::Prometheus(std::string_view config) {
  if (::access(kPrometheus, X_OK) != 0)
    throw std::runtime_error(std::string(kPrometheus) +
                             " is missing: deploy/setup.sh installs it (Debian package prometheus)");
  write_file(dir_.file("prometheus.yml"), config);
  port_ = unused_port_range(1);
  ChildOptions options;
  options.stderr_path = dir_.file("prometheus.log");  // it writes nothing to stdout
  pid_ = spawn({kPrometheus, "--config.file=" + dir_.file("prometheus.yml"),
                "--storage.tsdb.path=" + dir_.file("data"),
                "--web.listen-address=127.0.0.1:" + std::to_string(port_), "--log.level=warn"},
               options);
  const auto deadline = Clock::now() + patience(30s);
  while (Clock::now() < deadline) {
    if (!is_running(pid_)) throw std::runtime_error("prometheus exited:\n" + log());
    try {
      if (http_get(port_, "/-/ready").status == 200) return;
    } catch (const std::exception&) {
      // not listening yet
    }
    std::this_thread::sleep_for(50ms);
  }
  ::kill(pid_, SIGKILL);
  wait_exit(pid_, patience(5s));
  throw std::runtime_error("prometheus not ready in time:\n" + log());
}

Prometheus::~Prometheus() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGTERM);
  if (!wait_exit(pid_, patience(10s))) {
    ::kill(pid_, SIGKILL);
    wait_exit(pid_, patience(5s));
  }
}

std::string Prometheus::log() const {
  return read_file(dir_.file("prometheus.log"));
}

nlohmann::json Prometheus::api(std::string_view target) const {
  const HttpResponse r = http_get(port_, target);
  const nlohmann::json j = nlohmann::json::parse(r.body, nullptr, false);
  if (r.status != 200 || j.is_discarded() || j.value("status", "") != "success")
    throw std::runtime_error("prometheus " + std::string(target) + ": " + std::to_string(r.status) + " " +
                             r.body);
  return j["data"];
}

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace sydra::itest
