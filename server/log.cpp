#include "server/log.hpp"

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>

namespace sydra::server {

bool stderr_is_journal() noexcept {
  const char* stream = std::getenv("JOURNAL_STREAM");  // "device:inode" of the journal socket
  if (stream == nullptr) return false;
  struct stat st {};
  if (fstat(STDERR_FILENO, &st) != 0) return false;
  unsigned long long dev = 0, ino = 0;
  if (std::sscanf(stream, "%llu:%llu", &dev, &ino) != 2) return false;
  return static_cast<unsigned long long>(st.st_dev) == dev &&
         static_cast<unsigned long long>(st.st_ino) == ino;
}

bool init_logging(const std::string& level, bool access_log) {
  const auto lvl = spdlog::level::from_str(level);
  if (lvl == spdlog::level::off && level != "off") return false;
  auto logger = spdlog::stderr_color_mt("sydradb");
  const char* pattern = stderr_is_journal() ? "%^%l%$ %v" : "%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v";
  logger->set_pattern(pattern);
  logger->set_level(lvl);
  spdlog::set_default_logger(logger);
  if (access_log) {
    auto access = spdlog::stderr_color_mt("access");
    access->set_pattern(stderr_is_journal() ? "access %v" : "%Y-%m-%dT%H:%M:%S.%e access %v");
    access->set_level(spdlog::level::info);
  }
  return true;
}

}  // namespace sydra::server
