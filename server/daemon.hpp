// `sydradb serve`: runs the daemon in the foreground until SIGTERM or SIGINT.
#pragma once

#include <string>
#include <vector>

#include "server/config.hpp"

namespace sydra::server {

// Returns the process exit status: 0 after a graceful shutdown, 1 when start-up failed
// (the reason is logged).
int run_daemon(const Config& config, const std::vector<std::string>& config_warnings);

}  // namespace sydra::server
