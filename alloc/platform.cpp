#include "platform.hpp"

#include <fcntl.h>
#include <malloc.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <ctime>

#if SYDRA_ALLOC_LIBC_FALLBACK
#include <dlfcn.h>

#include <atomic>

extern "C" {
void* __libc_malloc(std::size_t size);
void* __libc_calloc(std::size_t count, std::size_t size);
void* __libc_realloc(void* p, std::size_t size);
void* __libc_memalign(std::size_t align, std::size_t size);
void __libc_free(void* p);
}
#endif

#include "config.hpp"

namespace sydra::alloc {

void fatal(const char* message) noexcept {
  fatalf("%s", message);
}

void fatalf(const char* format, ...) noexcept {
  char buffer[512];
  int n = std::snprintf(buffer, sizeof buffer, "sydra::alloc: ");
  va_list args;
  va_start(args, format);
  int m = std::vsnprintf(buffer + n, sizeof buffer - static_cast<std::size_t>(n) - 1, format, args);
  va_end(args);
  std::size_t len = static_cast<std::size_t>(n) + (m < 0 ? 0 : static_cast<std::size_t>(m));
  if (len > sizeof buffer - 2) len = sizeof buffer - 2;
  buffer[len++] = '\n';
  // write(2) directly: stdio may allocate, and the heap may be what is broken.
  ssize_t ignored = ::write(STDERR_FILENO, buffer, len);
  (void)ignored;
  std::abort();
}

}  // namespace sydra::alloc

namespace sydra::alloc::platform {

void* reserve(std::size_t bytes, std::size_t alignment) noexcept {
  // Over-reserve by one alignment unit, then trim both ends to get an aligned range.
  std::size_t span = bytes + alignment;
  void* raw =
      ::mmap(nullptr, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (raw == MAP_FAILED) return nullptr;
  auto start = reinterpret_cast<std::uintptr_t>(raw);
  auto aligned = (start + alignment - 1) & ~(static_cast<std::uintptr_t>(alignment) - 1);
  if (aligned > start) ::munmap(raw, aligned - start);
  std::uintptr_t tail = start + span - (aligned + bytes);
  if (tail > 0) ::munmap(reinterpret_cast<void*>(aligned + bytes), tail);
  return reinterpret_cast<void*>(aligned);
}

void unreserve(void* base, std::size_t bytes) noexcept {
  ::munmap(base, bytes);
}

void decommit(void* p, std::size_t bytes) noexcept {
  ::madvise(p, bytes, MADV_DONTNEED);
}

void* map_pages(std::size_t bytes) noexcept {
  void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  return p == MAP_FAILED ? nullptr : p;
}

void unmap_pages(void* p, std::size_t bytes) noexcept {
  ::munmap(p, bytes);
}

std::size_t resident_bytes(const void* p, std::size_t bytes) noexcept {
  constexpr std::size_t kChunkPages = 4096;  // 16 MiB of range per mincore call
  unsigned char vec[kChunkPages];
  std::size_t resident = 0;
  auto* cursor = static_cast<const char*>(p);
  std::size_t pages = (bytes + kPageSize - 1) / kPageSize;
  while (pages > 0) {
    std::size_t n = pages < kChunkPages ? pages : kChunkPages;
    if (::mincore(const_cast<char*>(cursor), n * kPageSize, vec) != 0) return resident;
    for (std::size_t i = 0; i < n; ++i) resident += vec[i] & 1u;
    cursor += n * kPageSize;
    pages -= n;
  }
  return resident * kPageSize;
}

std::size_t process_resident_bytes() noexcept {
  int fd = ::open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  char buf[128];
  ssize_t n = ::read(fd, buf, sizeof buf - 1);
  ::close(fd);
  if (n <= 0) return 0;
  buf[n] = '\0';
  // "size resident shared text lib data dt", in pages.
  const char* s = buf;
  while (*s && *s != ' ') ++s;
  std::size_t pages = 0;
  while (*s == ' ') ++s;
  while (*s >= '0' && *s <= '9') pages = pages * 10 + static_cast<std::size_t>(*s++ - '0');
  return pages * static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
}

std::uint64_t now_ns() noexcept {
  timespec ts;
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000u + static_cast<std::uint64_t>(ts.tv_nsec);
}

double ticks_per_ns() noexcept {
#if defined(__x86_64__)
  static const std::uint64_t t0 = ticks();
  static const std::uint64_t n0 = now_ns();
  const std::uint64_t dt = ticks() - t0;
  const std::uint64_t dn = now_ns() - n0;
  if (dn < 1'000'000) return 1.0;  // not enough elapsed yet to tell; report ticks as ns
  return static_cast<double>(dt) / static_cast<double>(dn);
#else
  return 1.0;
#endif
}

unsigned cpu_count() noexcept {
  long n = ::sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? static_cast<unsigned>(n) : 1u;
}

const char* env(const char* name) noexcept {
  return std::getenv(name);
}

#if SYDRA_ALLOC_LIBC_FALLBACK

namespace {
using UsableSizeFn = std::size_t (*)(void*);
std::atomic<UsableSizeFn> g_libc_usable_size{nullptr};
}  // namespace

void* system_malloc(std::size_t size) noexcept {
  return __libc_malloc(size);
}
void* system_calloc(std::size_t count, std::size_t size) noexcept {
  return __libc_calloc(count, size);
}
void* system_realloc(void* p, std::size_t size) noexcept {
  return __libc_realloc(p, size);
}
void* system_aligned(std::size_t align, std::size_t size) noexcept {
  return __libc_memalign(align, size);
}
void system_free(void* p) noexcept {
  __libc_free(p);
}

void init_system_allocator() noexcept {
  if (g_libc_usable_size.load(std::memory_order_acquire) != nullptr) return;
  // libc's own definition, looked up in libc's scope (RTLD_DEFAULT would find ours).
  void* libc = ::dlopen("libc.so.6", RTLD_NOW | RTLD_NOLOAD);
  void* fn = libc != nullptr ? ::dlsym(libc, "malloc_usable_size") : nullptr;
  if (fn == nullptr) fatal("libsydralloc: glibc's malloc_usable_size not found");
  g_libc_usable_size.store(reinterpret_cast<UsableSizeFn>(fn), std::memory_order_release);
}

std::size_t system_usable_size(void* p) noexcept {
  UsableSizeFn fn = g_libc_usable_size.load(std::memory_order_acquire);
  if (SYDRA_UNLIKELY(fn == nullptr)) {
    init_system_allocator();
    fn = g_libc_usable_size.load(std::memory_order_acquire);
  }
  return fn(p);
}

#else

void* system_malloc(std::size_t size) noexcept {
  return std::malloc(size);
}
void* system_calloc(std::size_t count, std::size_t size) noexcept {
  return std::calloc(count, size);
}
void* system_realloc(void* p, std::size_t size) noexcept {
  return std::realloc(p, size);
}
void* system_aligned(std::size_t align, std::size_t size) noexcept {
  void* p = nullptr;
  return ::posix_memalign(&p, align, size) == 0 ? p : nullptr;
}
void system_free(void* p) noexcept {
  std::free(p);
}
std::size_t system_usable_size(void* p) noexcept {
  return ::malloc_usable_size(p);
}
void init_system_allocator() noexcept {}

#endif

}  // namespace sydra::alloc::platform
