// Compile-time configuration, branch hints and the graded checks used throughout alloc/.
//
// Layer 0 of alloc/: includes nothing from the project.
#pragma once

#include <cstddef>
#include <cstdint>

#if defined(__GNUC__)
#define SYDRA_LIKELY(x) __builtin_expect(!!(x), 1)
#define SYDRA_UNLIKELY(x) __builtin_expect(!!(x), 0)
// The fast path is inlined into its caller; everything it does not do lives behind
// SYDRA_SLOW_PATH, out of line and in the cold section, so the caller stays small.
#define SYDRA_FAST_PATH inline __attribute__((always_inline))
#define SYDRA_SLOW_PATH __attribute__((noinline, cold))
#define SYDRA_NOINLINE __attribute__((noinline))
// g++ 12 checks the address of an initial-exec TLS variable for null with
// `add x@gottpoff(%rip),%reg; je`; GNU ld relaxes the add into a lea, which sets no flags,
// and -fsanitize=null then reports a null access from stale flags. The fast paths, which
// read the thread-local slots, opt out of that one check.
#define SYDRA_NO_SANITIZE_NULL __attribute__((no_sanitize("null")))
#else
#define SYDRA_NO_SANITIZE_NULL
#define SYDRA_LIKELY(x) (x)
#define SYDRA_UNLIKELY(x) (x)
#define SYDRA_FAST_PATH inline
#define SYDRA_SLOW_PATH
#define SYDRA_NOINLINE
#endif

// SYDRA_ALLOC_DEBUG turns on freed-block poisoning, double-free and wrong-owner detection.
// On by default in builds without NDEBUG; CMake can force it either way.
#ifndef SYDRA_ALLOC_DEBUG
#ifdef NDEBUG
#define SYDRA_ALLOC_DEBUG 0
#else
#define SYDRA_ALLOC_DEBUG 1
#endif
#endif

#if defined(__SANITIZE_ADDRESS__)
#define SYDRA_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SYDRA_ASAN 1
#endif
#endif
#ifndef SYDRA_ASAN
#define SYDRA_ASAN 0
#endif

#if defined(__SANITIZE_THREAD__)
#define SYDRA_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define SYDRA_TSAN 1
#endif
#endif
#ifndef SYDRA_TSAN
#define SYDRA_TSAN 0
#endif

// Compiled default shard count (CMake cache variable SYDRA_ALLOCATOR_SHARDS).
// 0 = sharding off: small allocations go to the legacy buckets. -1 = one shard per CPU.
#ifndef SYDRA_ALLOCATOR_SHARDS
#define SYDRA_ALLOCATOR_SHARDS -1
#endif

namespace sydra::alloc {

// Prints "sydra::alloc: <message>" to stderr without allocating and aborts.
[[noreturn]] void fatal(const char* message) noexcept;
// Same, with a formatted message (printf subset, formatted into a stack buffer).
[[noreturn]] void fatalf(const char* format, ...) noexcept __attribute__((format(printf, 1, 2)));

}  // namespace sydra::alloc

// Always on: corruption that must stop the process with a message.
#define SYDRA_CHECK(cond, ...)                                        \
  do {                                                                \
    if (SYDRA_UNLIKELY(!(cond))) ::sydra::alloc::fatalf(__VA_ARGS__); \
  } while (0)

#if SYDRA_ALLOC_DEBUG
// Debug builds: cheap invariants.
#define SYDRA_ASSERT(cond, ...) SYDRA_CHECK(cond, __VA_ARGS__)
#else
#define SYDRA_ASSERT(cond, ...) \
  do {                          \
  } while (0)
#endif

#if defined(SYDRA_ALLOC_DEBUG_EXPENSIVE) && SYDRA_ALLOC_DEBUG_EXPENSIVE
// Full-debug builds only: invariant walks such as ClassPool::is_valid().
#define SYDRA_ASSERT_EXPENSIVE(cond, ...) SYDRA_CHECK(cond, __VA_ARGS__)
#else
#define SYDRA_ASSERT_EXPENSIVE(cond, ...) \
  do {                                    \
  } while (0)
#endif
