#include "stats.hpp"

namespace sydra::alloc {

std::string_view to_string(Mode mode) noexcept {
  switch (mode) {
    case Mode::sharded:
      return "sharded";
    case Mode::legacy:
      return "legacy";
    case Mode::system:
      return "system";
  }
  return "unknown";
}

bool parse_mode(std::string_view text, Mode& out) noexcept {
  for (Mode m : {Mode::sharded, Mode::legacy, Mode::system}) {
    if (text == to_string(m)) {
      out = m;
      return true;
    }
  }
  return false;
}

ClassStats& ClassStats::operator+=(const ClassStats& other) noexcept {
#define SYDRA_X(name) +1
  static_assert(sizeof(ClassStats) == sizeof(std::uint64_t) * (1 SYDRA_CLASS_STATS(SYDRA_X)),
                "ClassStats has a field outside SYDRA_CLASS_STATS: declare it in the X-macro");
#undef SYDRA_X
#define SYDRA_X(name) name += other.name;
  SYDRA_CLASS_STATS(SYDRA_X)
#undef SYDRA_X
  return *this;
}

PathStats& PathStats::operator+=(const PathStats& other) noexcept {
#define SYDRA_X(name) +1
  static_assert(sizeof(PathStats) == sizeof(std::uint64_t) * (0 SYDRA_PATH_STATS(SYDRA_X)),
                "PathStats has a field outside SYDRA_PATH_STATS: declare it in the X-macro");
#undef SYDRA_X
#define SYDRA_X(name) name += other.name;
  SYDRA_PATH_STATS(SYDRA_X)
#undef SYDRA_X
  return *this;
}

PathStats PathStats::read(const PathStats& live) noexcept {
  PathStats out;
#define SYDRA_X(name) out.name = __atomic_load_n(&live.name, __ATOMIC_RELAXED);
  SYDRA_PATH_STATS(SYDRA_X)
#undef SYDRA_X
  return out;
}

ClassStats ShardStats::totals() const noexcept {
  ClassStats sum;
  for (const ClassStats& c : classes) sum += c;
  sum.size = 0;
  return sum;
}

}  // namespace sydra::alloc
