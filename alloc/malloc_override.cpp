// libsydralloc.so: the allocator as the process's malloc, for LD_PRELOAD.
//
//   LD_PRELOAD=/path/to/libsydralloc.so program ...
//
// Exports malloc, free, calloc, realloc, reallocarray, posix_memalign, aligned_alloc,
// memalign, valloc, pvalloc, malloc_usable_size and every global operator new / delete
// (libsydralloc.map keeps everything else local, so the library's copy of the allocator
// never mixes with a copy linked into the program). Requests of at most 256 bytes with an
// alignment of at most 256 go to default_allocator()'s shards; the rest to glibc through
// its own entry points (__libc_malloc, ...: see platform.hpp), which never come back here.
//
// Initialisation: the first call of any entry point constructs the allocator (mmap only)
// and resolves glibc's malloc_usable_size. Allocations made by the initialising thread
// while that runs go to glibc directly; other threads wait for it. free() before the
// allocator exists, or of any pointer outside the slab range, is glibc's free: ownership
// is a range test, no header is read.
//
// Layer 4 of alloc/ (on top of the facade; nothing includes this file).
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <sched.h>
#include <unistd.h>

#include <atomic>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <new>

#include "platform.hpp"
#include "small_pool_allocator.hpp"
#include "stats_json.hpp"

extern "C" {
void* __libc_malloc(std::size_t size);
void* __libc_calloc(std::size_t count, std::size_t size);
void* __libc_realloc(void* p, std::size_t size);
void* __libc_memalign(std::size_t align, std::size_t size);
void __libc_free(void* p);
}

namespace {

using sydra::alloc::SmallPoolAllocator;
namespace platform = sydra::alloc::platform;

// nullptr until the allocator is ready; then never changes.
constinit std::atomic<SmallPoolAllocator*> g_allocator{nullptr};
constinit std::atomic<bool> g_initialising{false};
// The thread running initialise(): its nested allocations go to glibc.
constinit thread_local bool tls_initialising __attribute__((tls_model("initial-exec"))) = false;
// SYDRA_ALLOC_STATS=1: a close-on-exec duplicate of stderr taken at start-up, because
// programs may close stderr before exit (coreutils' close_stdout does). -1 when off.
constinit int g_stats_fd = -1;

bool stats_requested() noexcept {
  const char* flag = platform::env("SYDRA_ALLOC_STATS");
  return flag != nullptr && std::strcmp(flag, "1") == 0;
}

SYDRA_SLOW_PATH SmallPoolAllocator* initialise() noexcept {
  if (tls_initialising) return nullptr;
  bool expected = false;
  if (g_initialising.compare_exchange_strong(expected, true, std::memory_order_acq_rel)) {
    tls_initialising = true;
    platform::init_system_allocator();  // dlopen / dlsym may allocate: glibc serves them
    SmallPoolAllocator* a = &sydra::alloc::default_allocator();
    if (stats_requested()) g_stats_fd = ::fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 100);
    tls_initialising = false;
    g_allocator.store(a, std::memory_order_release);
    return a;
  }
  SmallPoolAllocator* a;
  while ((a = g_allocator.load(std::memory_order_acquire)) == nullptr) sched_yield();
  return a;
}

// The allocator, or nullptr while this thread initialises it (then: glibc).
SYDRA_FAST_PATH SmallPoolAllocator* allocator() noexcept {
  SmallPoolAllocator* a = g_allocator.load(std::memory_order_acquire);
  if (SYDRA_LIKELY(a != nullptr)) return a;
  return initialise();
}

SYDRA_FAST_PATH void* out_of_memory_if_null(void* p) noexcept {
  if (SYDRA_UNLIKELY(p == nullptr)) errno = ENOMEM;
  return p;
}

bool is_power_of_two(std::size_t v) noexcept {
  return v != 0 && (v & (v - 1)) == 0;
}

// Aligned allocation shared by the aligned entry points; align is a power of two.
void* allocate_aligned(std::size_t align, std::size_t size) noexcept {
  if (align < sydra::alloc::kMinBlock) align = sydra::alloc::kMinBlock;
  SmallPoolAllocator* a = allocator();
  return out_of_memory_if_null(a != nullptr ? a->allocate(size, align) : __libc_memalign(align, size));
}

// ---- C++ operators ----------------------------------------------------------------------

void* new_or_throw(std::size_t size, std::size_t align) {
  for (;;) {
    SmallPoolAllocator* a = allocator();
    void* p = a != nullptr ? a->allocate(size, align) : __libc_memalign(align, size == 0 ? 1 : size);
    if (SYDRA_LIKELY(p != nullptr)) return p;
    std::new_handler handler = std::get_new_handler();
    if (handler == nullptr) throw std::bad_alloc();
    handler();
  }
}

void* new_nothrow(std::size_t size, std::size_t align) noexcept {
  try {
    return new_or_throw(size, align);
  } catch (...) {
    return nullptr;
  }
}

void delete_any(void* p) noexcept {
  if (SmallPoolAllocator* a = g_allocator.load(std::memory_order_acquire)) {
    a->deallocate(p);
  } else if (p != nullptr) {
    __libc_free(p);  // the pool does not exist yet: nothing can be ours
  }
}

constexpr std::size_t kNewAlign = __STDCPP_DEFAULT_NEW_ALIGNMENT__;

// ---- SYDRA_ALLOC_STATS=1: the stats document on stderr at exit -------------------------------

void write_all(int fd, const char* data, std::size_t size) noexcept {
  while (size > 0) {
    ssize_t n = ::write(fd, data, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    data += n;
    size -= static_cast<std::size_t>(n);
  }
}

__attribute__((destructor)) void report_stats_at_exit() {
  SmallPoolAllocator* a = g_allocator.load(std::memory_order_acquire);
  if (a == nullptr || g_stats_fd < 0) return;
  try {
    std::string doc = sydra::alloc::stats_to_json(a->snapshot());
    doc += '\n';
    write_all(g_stats_fd, doc.data(), doc.size());
  } catch (...) {
    static const char kFailed[] = "sydra::alloc: no stats report: out of memory\n";
    write_all(g_stats_fd, kFailed, sizeof kFailed - 1);
  }
}

}  // namespace

// ---- the C allocation functions ---------------------------------------------------------------

extern "C" {

void* malloc(std::size_t size) noexcept {
  SmallPoolAllocator* a = allocator();
  return out_of_memory_if_null(SYDRA_LIKELY(a != nullptr) ? a->allocate(size) : __libc_malloc(size));
}

void free(void* p) noexcept {
  delete_any(p);
}

void* calloc(std::size_t count, std::size_t size) noexcept {
  std::size_t total;
  if (__builtin_mul_overflow(count, size, &total)) {
    errno = ENOMEM;
    return nullptr;
  }
  SmallPoolAllocator* a = allocator();
  return out_of_memory_if_null(a != nullptr ? a->allocate_zeroed(total) : __libc_calloc(count, size));
}

// realloc(p, 0) frees p and returns nullptr, as glibc's does; realloc(nullptr, n) is malloc(n).
void* realloc(void* p, std::size_t size) noexcept {
  SmallPoolAllocator* a = allocator();
  if (SYDRA_UNLIKELY(a == nullptr)) return __libc_realloc(p, size);
  void* q = a->reallocate(p, size);
  if (q == nullptr && size != 0) errno = ENOMEM;
  return q;
}

void* reallocarray(void* p, std::size_t count, std::size_t size) noexcept {
  std::size_t total;
  if (__builtin_mul_overflow(count, size, &total)) {
    errno = ENOMEM;
    return nullptr;
  }
  return realloc(p, total);
}

int posix_memalign(void** out, std::size_t align, std::size_t size) noexcept {
  if (!is_power_of_two(align) || align % sizeof(void*) != 0) return EINVAL;
  const int saved = errno;
  void* p = allocate_aligned(align, size);
  errno = saved;  // posix_memalign reports through its result only
  if (p == nullptr) return ENOMEM;
  *out = p;
  return 0;
}

// C17: the alignment must be valid (a power of two) — EINVAL otherwise, as glibc >= 2.38.
void* aligned_alloc(std::size_t align, std::size_t size) noexcept {
  if (!is_power_of_two(align)) {
    errno = EINVAL;
    return nullptr;
  }
  return allocate_aligned(align, size);
}

// glibc's rules: an alignment that is not a power of two is rounded up to one.
void* memalign(std::size_t align, std::size_t size) noexcept {
  if (align > (SIZE_MAX >> 1) + 1) {
    errno = EINVAL;
    return nullptr;
  }
  std::size_t pow2 = sydra::alloc::kMinBlock;
  while (pow2 < align) pow2 <<= 1;
  return allocate_aligned(pow2, size);
}

void* valloc(std::size_t size) noexcept {
  return allocate_aligned(static_cast<std::size_t>(::sysconf(_SC_PAGESIZE)), size);
}

// Page-aligned, size rounded up to whole pages.
void* pvalloc(std::size_t size) noexcept {
  const auto page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  std::size_t rounded;
  if (__builtin_add_overflow(size, page - 1, &rounded)) {
    errno = ENOMEM;
    return nullptr;
  }
  rounded &= ~(page - 1);
  return allocate_aligned(page, rounded);
}

// The calling thread's slow-path counters (sydra::alloc::PathStats, alloc/stats.hpp), for
// benchmarks that attribute each call to the path it took (bench_alloc --paths); nullptr
// before the thread's first call. Not an allocation function: for diagnostics only.
const void* sydra_alloc_thread_paths() noexcept {
  SmallPoolAllocator* a = g_allocator.load(std::memory_order_acquire);
  return a != nullptr ? a->current_thread_paths() : nullptr;
}

std::size_t malloc_usable_size(void* p) noexcept {
  if (p == nullptr) return 0;
  if (SmallPoolAllocator* a = g_allocator.load(std::memory_order_acquire)) return a->usable_size(p);
  return platform::system_usable_size(p);
}

}  // extern "C"

// ---- the C++ operators ------------------------------------------------------------------------

void* operator new(std::size_t size) {
  return new_or_throw(size, kNewAlign);
}
void* operator new[](std::size_t size) {
  return new_or_throw(size, kNewAlign);
}
void* operator new(std::size_t size, const std::nothrow_t&) noexcept {
  return new_nothrow(size, kNewAlign);
}
void* operator new[](std::size_t size, const std::nothrow_t&) noexcept {
  return new_nothrow(size, kNewAlign);
}
void* operator new(std::size_t size, std::align_val_t align) {
  return new_or_throw(size, static_cast<std::size_t>(align));
}
void* operator new[](std::size_t size, std::align_val_t align) {
  return new_or_throw(size, static_cast<std::size_t>(align));
}
void* operator new(std::size_t size, std::align_val_t align, const std::nothrow_t&) noexcept {
  return new_nothrow(size, static_cast<std::size_t>(align));
}
void* operator new[](std::size_t size, std::align_val_t align, const std::nothrow_t&) noexcept {
  return new_nothrow(size, static_cast<std::size_t>(align));
}

void operator delete(void* p) noexcept {
  delete_any(p);
}
void operator delete[](void* p) noexcept {
  delete_any(p);
}
void operator delete(void* p, std::size_t) noexcept {
  delete_any(p);
}
void operator delete[](void* p, std::size_t) noexcept {
  delete_any(p);
}
void operator delete(void* p, const std::nothrow_t&) noexcept {
  delete_any(p);
}
void operator delete[](void* p, const std::nothrow_t&) noexcept {
  delete_any(p);
}
void operator delete(void* p, std::align_val_t) noexcept {
  delete_any(p);
}
void operator delete[](void* p, std::align_val_t) noexcept {
  delete_any(p);
}
void operator delete(void* p, std::size_t, std::align_val_t) noexcept {
  delete_any(p);
}
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept {
  delete_any(p);
}
void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept {
  delete_any(p);
}
void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept {
  delete_any(p);
}
