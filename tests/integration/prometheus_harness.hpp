// The real Prometheus (Debian package prometheus: /usr/bin/prometheus) for integration tests:
// started on a loopback port the test picks, with a generated configuration and a storage
// directory in a temporary directory, ready once /-/ready answers 200 (bounded wait), stopped
// with SIGTERM (SIGKILL after a bounded wait) when it goes out of scope.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "daemon_harness.hpp"

namespace sydra::itest {

inline constexpr const char* kPrometheus = "/usr/bin/prometheus";

class Prometheus {
 public:
  // `config` is the YAML of prometheus.yml. Throws std::runtime_error (with its log) when it
  // exits or is not ready in time.
  explicit Prometheus(std::string_view config);
  ~Prometheus();
  Prometheus(const Prometheus&) = delete;
  Prometheus& operator=(const Prometheus&) = delete;

  std::uint16_t port() const noexcept { return port_; }
  std::string log() const;
  // GET an /api/v1/... path; the JSON answer's "data" when its status is "success", else
  // throws std::runtime_error with the answer.
  nlohmann::json api(std::string_view target) const;

 private:
  TempDir dir_;
  pid_t pid_ = -1;
  std::uint16_t port_ = 0;
};

// Milliseconds since the Unix epoch, now.
std::int64_t now_ms();

}  // namespace sydra::itest
