// The allocator's construction and destruction, its shards, the process registry of live
// allocators and the process-wide instance. The slow paths live in files of their own:
//   thread_state.cpp  first use on a thread, bins' magazines, thread exit, rebinding
//   alloc_slow.cpp    refills, legacy and system allocation, realloc
//   free_slow.cpp     full bins, cross-shard frees and hand-offs, legacy and system frees
//   reclaim.cpp       retire, epochs and QSBR, collect_garbage
//   snapshot.cpp      telemetry and the invariant walk
//   fork.cpp          fork() handlers
// Lock order: allocator_internals.hpp.

#include "small_pool_allocator.hpp"

#include <cstdlib>
#include <new>
#include <string_view>

#include "allocator_internals.hpp"
#include "platform.hpp"

namespace sydra::alloc {

namespace detail {
constinit thread_local ThreadSlots tls_slots __attribute__((tls_model("initial-exec"))) = {};
}

constinit ProcessRegistry g_registry;

namespace {

constinit std::atomic<bool> g_fork_handlers_installed{false};

bool parse_unsigned(const char* text, long long& out) noexcept {
  if (text == nullptr || *text == '\0') return false;
  char* end = nullptr;
  long long v = std::strtoll(text, &end, 10);
  if (end == text || *end != '\0') return false;
  out = v;
  return true;
}

std::uint32_t resolve_shards(int shards) noexcept {
  if (shards < 0) shards = static_cast<int>(platform::cpu_count());
  return shards > static_cast<int>(kMaxShards) ? kMaxShards : static_cast<std::uint32_t>(shards);
}

}  // namespace

Options Options::from_environment() noexcept {
  Options o;
  Mode mode;
  if (const char* m = platform::env("SYDRA_ALLOC_MODE"); m != nullptr && parse_mode(m, mode)) o.mode = mode;
  long long v = 0;
  if (parse_unsigned(platform::env("SYDRA_ALLOC_SHARDS"), v)) o.shards = static_cast<int>(v);
  if (parse_unsigned(platform::env("SYDRA_ALLOC_RESERVE_MB"), v) && v > 0)
    o.reserve_bytes = static_cast<std::size_t>(v) << 20;
  if (const char* f = platform::env("SYDRA_ALLOC_FOREIGN_FREES"); f != nullptr && f[0] != '\0') {
    const std::string_view name(f);
    if (name == "local") o.foreign_frees = ForeignFrees::cache_locally;
    if (name == "owner") o.foreign_frees = ForeignFrees::to_owner;
  }
  return o;
}

SmallPoolAllocator::SmallPoolAllocator(const Options& options) noexcept
    : serial_(0),
      space_(options.reserve_bytes, options.slab_bytes),
      tags_(space_.tags()),
      base_(space_.base()),
      span_(space_.span()),
      slab_shift_(space_.slab_shift()),
      slot_(0),
      options_(options),
      mode_(options.mode) {
  SYDRA_CHECK(space_.valid(), "could not reserve %zu bytes of address space for slabs",
              options.reserve_bytes);
  void* pages = platform::map_pages(sizeof(Internals));
  if (pages == nullptr) fatal("out of memory for allocator metadata");
  in_ = new (pages) Internals();
  for (std::uint32_t c = 0; c < kNumClasses; ++c)
    in_->legacy[c] =
        new (in_->arena.allocate(sizeof(Internals::LegacyBucket))) Internals::LegacyBucket(space_);
  set_shard_count(resolve_shards(options.shards));

  {
    std::lock_guard<std::mutex> guard(g_registry.mutex);
    if (!g_registry.exit_key_created) {
      SYDRA_CHECK(pthread_key_create(&g_registry.exit_key, thread_exit_hook) == 0,
                  "pthread_key_create failed: no thread-exit hook");
      g_registry.exit_key_created = true;
    }
    std::uint32_t slot = 0;
    while (slot < kMaxAllocators && g_registry.by_slot[slot] != nullptr) ++slot;
    SYDRA_CHECK(slot < kMaxAllocators, "more than %u SmallPoolAllocator instances alive", kMaxAllocators);
    slot_ = slot;
    serial_ = g_registry.next_serial++;
    g_registry.by_slot[slot] = this;
    g_registry.serial[slot] = serial_;
  }
  install_fork_handlers();
}

void SmallPoolAllocator::install_fork_handlers() noexcept {
  // Outside g_registry.mutex: pthread_atfork may allocate (glibc keeps the first 48
  // handlers inline, so the first allocator of a process does not).
  bool expected = false;
  if (g_fork_handlers_installed.compare_exchange_strong(expected, true, std::memory_order_acq_rel))
    SYDRA_CHECK(pthread_atfork(fork_prepare, fork_parent, fork_child) == 0, "pthread_atfork failed");
}

SmallPoolAllocator::~SmallPoolAllocator() {
  {
    std::lock_guard<std::mutex> guard(g_registry.mutex);
    g_registry.by_slot[slot_] = nullptr;
    g_registry.serial[slot_] = 0;
  }
  ThreadSlots& slots = detail::tls_slots;
  if (slots.last_serial == serial_) slots.last_serial = 0;
  // Fallback blocks still waiting for their epoch are freed now: no reader can outlive us.
  RetireNode* spent = nullptr;
  in_->fallback_deferred.backlog.take(in_->fallback_deferred.queue);
  in_->fallback_deferred.backlog.reclaim(UINT64_MAX, SIZE_MAX, spent, [](void* p, NodeKind) {
    platform::system_free(p);
    return std::size_t{1};
  });
  // With ForeignFrees::cache_locally a depot may hold blocks of a shard destroyed before it:
  // those are dropped (the whole slab space is unmapped with us) rather than sent home.
  for (std::uint32_t i = 0; i < kMaxShards; ++i)
    if (Shard* s = in_->shards[i].load(std::memory_order_relaxed))
      s->pool.set_foreign_sink(SlabPool::drop_foreign, nullptr);
  for (std::uint32_t i = 0; i < kMaxShards; ++i)
    if (Shard* s = in_->shards[i].load(std::memory_order_relaxed)) s->~Shard();
  for (auto* bucket : in_->legacy) bucket->~LegacyBucket();
  in_->~Internals();
  platform::unmap_pages(in_, sizeof(Internals));
}

Shard& SmallPoolAllocator::shard(std::uint32_t i) const noexcept {
  return *in_->shards[i].load(std::memory_order_acquire);
}

Shard* SmallPoolAllocator::ensure_shard(std::uint32_t i) noexcept {
  if (Shard* s = in_->shards[i].load(std::memory_order_acquire)) return s;
  std::lock_guard<std::mutex> guard(in_->shards_mutex);
  if (Shard* s = in_->shards[i].load(std::memory_order_relaxed)) return s;
  auto* s = new (in_->arena.allocate(sizeof(Shard)))
      Shard(space_, in_->magazines, i, options_.retained_empty_slabs);
  if (options_.foreign_frees == ForeignFrees::cache_locally) s->pool.set_foreign_sink(&send_home, this);
  in_->shards[i].store(s, std::memory_order_release);
  std::uint32_t created = in_->shards_created.load(std::memory_order_relaxed);
  if (i + 1 > created) in_->shards_created.store(i + 1, std::memory_order_release);
  return s;
}

void SmallPoolAllocator::set_shard_count(std::uint32_t count) noexcept {
  if (count > kMaxShards) count = kMaxShards;
  for (std::uint32_t i = 0; i < count; ++i) ensure_shard(i);
  shard_count_.store(count, std::memory_order_release);
}

const PathStats* SmallPoolAllocator::current_thread_paths() noexcept {
  ThreadState* st = existing_thread_state();
  return st != nullptr ? &st->paths : nullptr;
}

SmallPoolAllocator& default_allocator() noexcept {
  // Placement into static storage and never destroyed: static destructors and thread-exit
  // hooks that run after main may still free through it.
  alignas(SmallPoolAllocator) static unsigned char storage[sizeof(SmallPoolAllocator)];
  static SmallPoolAllocator* const instance = new (storage) SmallPoolAllocator(Options::from_environment());
  return *instance;
}

}  // namespace sydra::alloc
