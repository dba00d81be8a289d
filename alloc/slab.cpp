#include "slab.hpp"

#include <new>

#include "platform.hpp"
#include "track.hpp"

namespace sydra::alloc {

namespace {
std::uint32_t log2_exact(std::size_t v) noexcept {
  std::uint32_t s = 0;
  while ((std::size_t{1} << s) < v) ++s;
  return s;
}
std::size_t round_up(std::size_t v, std::size_t to) noexcept {
  return (v + to - 1) / to * to;
}
}  // namespace

SlabSpace::SlabSpace(std::size_t reserve_bytes, std::size_t slab_bytes) noexcept {
  SYDRA_CHECK(slab_bytes >= platform::kPageSize && (slab_bytes & (slab_bytes - 1)) == 0,
              "slab size %zu must be a power of two of at least 4096", slab_bytes);
  slab_shift_ = log2_exact(slab_bytes);
  slab_count_ = reserve_bytes >> slab_shift_;
  SYDRA_CHECK(slab_count_ > 0, "reserve of %zu bytes holds no slab of %zu", reserve_bytes, slab_bytes);
  span_ = slab_count_ << slab_shift_;

  // Side metadata: SlabMeta array, tag array, and (debug) the allocated-granule bitmap.
  std::size_t metas_bytes = round_up(slab_count_ * sizeof(SlabMeta), platform::kPageSize);
  std::size_t tags_bytes = round_up(slab_count_ * sizeof(std::uint16_t), platform::kPageSize);
  std::size_t bits_bytes = 0;
#if SYDRA_ALLOC_DEBUG
  bits_bytes = round_up(span_ / 16 / 8, platform::kPageSize);
#endif
  meta_bytes_ = metas_bytes + tags_bytes + bits_bytes;
  // Reserved like the slab range: untouched metadata pages cost nothing.
  auto* meta = static_cast<char*>(platform::reserve(meta_bytes_, platform::kPageSize));
  auto* base = platform::reserve(span_, slab_bytes);
  if (meta == nullptr || base == nullptr) {
    if (meta) platform::unreserve(meta, meta_bytes_);
    if (base) platform::unreserve(base, span_);
    span_ = 0;
    slab_count_ = 0;
    return;
  }
  metas_ = reinterpret_cast<SlabMeta*>(meta);  // zero pages; SlabMeta's defaults set on acquire
  tags_ = reinterpret_cast<std::atomic<std::uint16_t>*>(meta + metas_bytes);
  if (bits_bytes)
    debug_bits_ = reinterpret_cast<std::atomic<std::uint64_t>*>(meta + metas_bytes + tags_bytes);
  base_ = reinterpret_cast<std::uintptr_t>(base);
  // Zero pages are tag 0 (kFreeSlabTag): slabs not yet carved are owned by nobody.
}

SlabSpace::~SlabSpace() {
  if (base_ == 0) return;
  // ASan keeps shadow for unmapped memory: leave none poisoned for the next mapping here.
  track::unpoison(reinterpret_cast<void*>(base_), carved_slabs() << slab_shift_);
  platform::unreserve(reinterpret_cast<void*>(base_), span_);
  platform::unreserve(metas_, meta_bytes_);
}

void SlabSpace::set_tag(SlabMeta& slab, std::uint16_t tag) noexcept {
  tags_[index_of(slab)].store(tag, std::memory_order_relaxed);
}

SlabMeta* SlabSpace::acquire(std::uint32_t owner, std::uint32_t cls) noexcept {
  SlabMeta* slab = nullptr;
  {
    std::lock_guard<std::mutex> guard(mutex_);
    if (free_slabs_ != nullptr) {
      slab = free_slabs_;
      free_slabs_ = slab->next;
    }
  }
  if (slab == nullptr) {
    std::uint64_t index = carved_.load(std::memory_order_relaxed);
    do {
      if (index >= slab_count_) return nullptr;
    } while (!carved_.compare_exchange_weak(index, index + 1, std::memory_order_relaxed));
    slab = new (&metas_[index]) SlabMeta{};
  }
  if (!slab->committed) {
    slab->committed = true;
    committed_slabs_.fetch_add(1, std::memory_order_relaxed);
  }
  track::poison(slab_start(*slab), slab_bytes());
  relabel(*slab, owner, cls);
  return slab;
}

void SlabSpace::relabel(SlabMeta& slab, std::uint32_t owner, std::uint32_t cls) noexcept {
  SYDRA_ASSERT(slab.in_use == 0, "relabel of a slab with %u blocks in use", slab.in_use);
  slab.next = slab.prev = nullptr;
  slab.free_list = nullptr;
  slab.free_count = 0;
  slab.carved = 0;
  slab.in_use = 0;
  slab.capacity = static_cast<std::uint32_t>(slab_bytes() / class_to_size(cls));
  slab.owner = static_cast<std::uint16_t>(owner);
  slab.cls = static_cast<std::uint8_t>(cls);
  slab.in_partial = false;
  set_tag(slab, make_tag(owner, cls));
}

void SlabSpace::decommit(SlabMeta& slab) noexcept {
  SYDRA_ASSERT(slab.in_use == 0, "decommit of a slab with %u blocks in use", slab.in_use);
  if (!slab.committed) return;
  char* start = slab_start(slab);
  track::unpoison(start, slab_bytes());  // the kernel's zero pages are not ours to poison
  platform::decommit(start, slab_bytes());
  track::poison(start, slab_bytes());
  slab.committed = false;
  slab.free_list = nullptr;
  slab.free_count = 0;
  slab.carved = 0;
  committed_slabs_.fetch_sub(1, std::memory_order_relaxed);
  returned_bytes_.fetch_add(slab_bytes(), std::memory_order_relaxed);
}

void SlabSpace::release(SlabMeta& slab) noexcept {
  decommit(slab);
  set_tag(slab, kFreeSlabTag);
  slab.owner = static_cast<std::uint16_t>(kNoOwner);
  std::lock_guard<std::mutex> guard(mutex_);
  slab.next = free_slabs_;
  free_slabs_ = &slab;
}

std::uint64_t SlabSpace::resident_bytes() const noexcept {
  return platform::resident_bytes(reinterpret_cast<void*>(base_), carved_slabs() << slab_shift_);
}

void SlabSpace::debug_mark_allocated(void* p, std::uint32_t cls) noexcept {
  (void)cls;
  if (debug_bits_ == nullptr) return;
  std::size_t granule = (reinterpret_cast<std::uintptr_t>(p) - base_) >> 4;
  std::uint64_t bit = std::uint64_t{1} << (granule & 63);
  std::uint64_t old = debug_bits_[granule >> 6].fetch_or(bit, std::memory_order_relaxed);
  SYDRA_CHECK((old & bit) == 0, "allocator handed out block %p (class %u) twice: free list corrupted", p,
              class_to_size(cls));
}

void SlabSpace::debug_mark_free(void* p, std::uint32_t cls, const char* what) noexcept {
  if (debug_bits_ == nullptr) return;
  auto offset = reinterpret_cast<std::uintptr_t>(p) - base_;
  SYDRA_CHECK((offset & (slab_bytes() - 1)) % class_to_size(cls) == 0,
              "invalid %s of %p: not the start of a %u-byte block", what, p, class_to_size(cls));
  std::size_t granule = offset >> 4;
  std::uint64_t bit = std::uint64_t{1} << (granule & 63);
  std::uint64_t old = debug_bits_[granule >> 6].fetch_and(~bit, std::memory_order_relaxed);
  SYDRA_CHECK((old & bit) != 0, "double free of %p (%u-byte block) in %s", p, class_to_size(cls), what);
}

}  // namespace sydra::alloc
