// The doctest runner shared by the test executables.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

// The allocator must answer an impossible request with nullptr (bad_alloc for operator new).
// Under the sanitizers the system allocator behind the fallback aborts on such requests
// unless told to return null like glibc does; the environment's options still apply on top.
#if defined(__SANITIZE_ADDRESS__)
extern "C" const char* __asan_default_options() {
  return "allocator_may_return_null=1";
}
#endif
#if defined(__SANITIZE_THREAD__)
extern "C" const char* __tsan_default_options() {
  return "allocator_may_return_null=1";
}
#endif
