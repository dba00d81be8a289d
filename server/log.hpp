// Logging setup (spdlog). Under systemd (stderr connected to the journal, detected by
// $JOURNAL_STREAM) lines carry no timestamp of their own: the journal adds it.
#pragma once

#include <string>

namespace sydra::server {

// Sets the default logger's level ("info", ...) and pattern; creates the "access" logger
// when access_log is true. Returns false for an unknown level.
bool init_logging(const std::string& level, bool access_log);

bool stderr_is_journal() noexcept;

}  // namespace sydra::server
