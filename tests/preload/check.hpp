// A few helpers for the preload test programs: plain programs (no test framework of their
// own, so that what runs under LD_PRELOAD is only what the test does), each case a
// function, each failed check one line on stderr, exit status 1 on any failure.
#pragma once

#include <cstdio>
#include <cstdlib>

namespace preload_test {

inline int g_failures = 0;

#define PRELOAD_CHECK(cond)                                                         \
  do {                                                                              \
    if (!(cond)) {                                                                  \
      std::fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
      ++::preload_test::g_failures;                                                 \
    }                                                                               \
  } while (0)

// The allocation calls go through this, so the compiler cannot pair or elide them.
template <class T>
T opaque(T v) {
  asm volatile("" : "+r"(v));
  return v;
}

// Whether libsydralloc.so is expected to be the process's malloc (the ctest wrapper sets
// SYDRA_PRELOAD_EXPECTED=1 with LD_PRELOAD; the reference runs on glibc leave it unset).
inline bool preloaded() {
  const char* v = std::getenv("SYDRA_PRELOAD_EXPECTED");
  return v != nullptr && v[0] == '1';
}

inline int finish(const char* name) {
  if (g_failures != 0) {
    std::fprintf(stderr, "%s: %d check(s) failed\n", name, g_failures);
    return 1;
  }
  std::printf("%s: ok%s\n", name, preloaded() ? " (libsydralloc.so)" : " (system malloc)");
  return 0;
}

}  // namespace preload_test
