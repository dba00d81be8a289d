// `sydradb compact`: offline compaction of a stopped data directory.
#include <spdlog/spdlog.h>

#include <cstdio>
#include <exception>
#include <filesystem>
#include <string>

#include "cli/client.hpp"
#include "cli/commands.hpp"
#include "server/storage/segment_store.hpp"

namespace sydra::cli {
namespace {

std::string human_bytes(std::uint64_t bytes) {
  char buf[32];
  if (bytes >= (1u << 20))
    std::snprintf(buf, sizeof buf, "%.1f MiB", static_cast<double>(bytes) / (1 << 20));
  else if (bytes >= 1024)
    std::snprintf(buf, sizeof buf, "%.1f KiB", static_cast<double>(bytes) / 1024);
  else
    std::snprintf(buf, sizeof buf, "%llu B", static_cast<unsigned long long>(bytes));
  return buf;
}

}  // namespace

int run_compact(const CompactOptions& options) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_directory(options.data_dir, ec)) {
    print_error("compact", options.data_dir + " is not a data directory");
    return kExitFailure;
  }
  const std::string dir = (fs::path(options.data_dir) / "segments").string();
  if (!fs::is_directory(dir, ec)) {
    std::printf("nothing to compact: %s has no segments\n", options.data_dir.c_str());
    return kExitOk;
  }
  spdlog::set_level(spdlog::level::warn);  // the store's info lines would repeat the summary
  try {
    auto store = storage::SegmentStore::open(dir);
    const storage::SegmentStoreStats before = store->stats();
    if (!store->compact(0, 2, /*force=*/true)) {
      std::printf("nothing to compact: %llu segment(s), %s, %llu points in %s\n",
                  static_cast<unsigned long long>(before.segments), human_bytes(before.bytes).c_str(),
                  static_cast<unsigned long long>(before.points), dir.c_str());
      return kExitOk;
    }
    const storage::SegmentStoreStats after = store->stats();
    if (before.segments == 1) {  // a lone segment in an older format, rewritten
      std::printf("rewrote 1 segment in the newest format (%s, %llu points) as %s, %llu points, in %s\n",
                  human_bytes(before.bytes).c_str(), static_cast<unsigned long long>(before.points),
                  human_bytes(after.bytes).c_str(), static_cast<unsigned long long>(after.points),
                  dir.c_str());
      return kExitOk;
    }
    std::printf("compacted %llu segments (%s, %llu points) into %llu (%s, %llu points) in %s\n",
                static_cast<unsigned long long>(before.segments), human_bytes(before.bytes).c_str(),
                static_cast<unsigned long long>(before.points),
                static_cast<unsigned long long>(after.segments), human_bytes(after.bytes).c_str(),
                static_cast<unsigned long long>(after.points), dir.c_str());
    return kExitOk;
  } catch (const storage::DirectoryInUse& e) {
    print_error("compact",
                std::string(e.what()) +
                    ": stop the daemon first (compact works on a stopped daemon's data directory)");
    return kExitFailure;
  } catch (const std::exception& e) {
    print_error("compact", e.what());
    return kExitFailure;
  }
}

}  // namespace sydra::cli
