// Platform layer: virtual memory, time, CPU count and the process's resident set.
// Nothing else. Linux only (mmap, madvise, mincore, /proc).
#pragma once

#include <cstddef>
#include <cstdint>

namespace sydra::alloc::platform {

inline constexpr std::size_t kPageSize = 4096;

// Reserves `bytes` of address space aligned to `alignment` (a power of two). Pages are
// readable and writable but not backed until touched (MAP_NORESERVE), so reserving costs
// no memory. Returns nullptr on failure.
void* reserve(std::size_t bytes, std::size_t alignment) noexcept;
void unreserve(void* base, std::size_t bytes) noexcept;

// Gives the pages back to the OS (MADV_DONTNEED): the range reads as zeros afterwards and
// stops counting towards RSS.
void decommit(void* p, std::size_t bytes) noexcept;

// Anonymous zeroed pages for the allocator's own metadata (never from malloc: the allocator
// may itself be the process's malloc).
void* map_pages(std::size_t bytes) noexcept;
void unmap_pages(void* p, std::size_t bytes) noexcept;

// Bytes of [p, p + bytes) resident in RAM, by mincore. p page-aligned.
std::size_t resident_bytes(const void* p, std::size_t bytes) noexcept;
// The whole process's resident set size in bytes, from /proc/self/statm.
std::size_t process_resident_bytes() noexcept;

// Monotonic clock in nanoseconds.
std::uint64_t now_ns() noexcept;

// A cheap timestamp for measuring short intervals (the lock's wait and hold times):
// the TSC on x86-64, now_ns() elsewhere. Convert with ticks_per_ns().
inline std::uint64_t ticks() noexcept {
#if defined(__x86_64__)
  return __builtin_ia32_rdtsc();
#else
  return now_ns();
#endif
}
// Ticks per nanosecond, measured against now_ns() since the first call (no sleeping: the
// longer the process has run, the more precise).
double ticks_per_ns() noexcept;

unsigned cpu_count() noexcept;

// getenv that never allocates; nullptr when unset.
const char* env(const char* name) noexcept;

// The system allocator, where sizes the pool does not serve go. In the static library
// these are malloc, free, ... (so an LD_PRELOADed peer such as jemalloc still interposes);
// in libsydralloc.so (SYDRA_ALLOC_LIBC_FALLBACK), where malloc is this allocator, they are
// glibc's own entry points (__libc_malloc, ...), which never come back here.
void* system_malloc(std::size_t size) noexcept;
void* system_calloc(std::size_t count, std::size_t size) noexcept;
void* system_realloc(void* p, std::size_t size) noexcept;
// align: a power of two >= sizeof(void*). nullptr when out of memory.
void* system_aligned(std::size_t align, std::size_t size) noexcept;
void system_free(void* p) noexcept;
std::size_t system_usable_size(void* p) noexcept;
// libsydralloc.so: resolves glibc's malloc_usable_size (glibc exports no __libc_ name for
// it). Called once while the library initialises; a no-op in the static library.
void init_system_allocator() noexcept;

}  // namespace sydra::alloc::platform
