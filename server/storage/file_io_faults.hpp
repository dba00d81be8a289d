// The I/O fault-injection seam of file_io.hpp, for tests. It exists only in the library
// sydra_file_io_faults (file_io.cpp compiled with SYDRA_FAULT_INJECTION), which a test gets
// by setting the target property SYDRA_IO_FAULTS (tests/CMakeLists.txt); the daemon links
// sydra_file_io, where the check is a constant 0 the compiler removes.
//
// A rule makes matching calls fail: after `skip` matching calls pass, the next `times`
// (kForever = every one) fail with `error`. A write rule with short_write writes half its
// bytes first, as a disk that fills in the middle of a write does.
#pragma once

#include <cerrno>
#include <cstdint>
#include <string>

namespace sydra::storage::io::fault {

enum class Call { open, write, fsync, rename, fsync_dir, unlink, read, truncate };
inline constexpr int kCallCount = 8;
inline constexpr std::uint64_t kForever = ~std::uint64_t{0};

struct Rule {
  Call call = Call::write;
  std::string path_contains;  // empty = any path
  int error = EIO;
  bool short_write = false;
  std::uint64_t skip = 0;
  std::uint64_t times = 1;
};

void arm(const Rule& rule);
void clear();                    // every rule and counter
std::uint64_t fired();           // faults injected since clear()
std::uint64_t calls(Call call);  // calls seen since clear()
const char* to_string(Call call);

}  // namespace sydra::storage::io::fault
