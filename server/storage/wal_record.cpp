// The WAL record payload (see wal_record.hpp).
#include "server/storage/wal_record.hpp"

#include <bit>
#include <cstring>
#include <stdexcept>
#include <string>

namespace sydra::storage {

static_assert(std::endian::native == std::endian::little, "the WAL record format is little-endian");

namespace {

constexpr std::uint32_t kRecordVersion = 1;
constexpr std::size_t kRecordHeader = 8;
constexpr std::size_t kRunHeader = 16;

template <class T>
void put(std::vector<std::byte>& out, std::size_t& at, T v) noexcept {
  std::memcpy(out.data() + at, &v, sizeof v);
  at += sizeof v;
}

}  // namespace

void encode_wal_record(std::span<const WalRun> runs, std::span<const Point> points,
                       std::vector<std::byte>& out) {
  std::size_t size = kRecordHeader;
  for (const WalRun& r : runs) size += kRunHeader + r.key.size() + (r.end - r.begin) * sizeof(Point);
  out.resize(size);
  std::size_t at = 0;
  put(out, at, kRecordVersion);
  put(out, at, static_cast<std::uint32_t>(runs.size()));
  for (const WalRun& r : runs) {
    put(out, at, r.id);
    put(out, at, static_cast<std::uint32_t>(r.key.size()));
    put(out, at, static_cast<std::uint32_t>(r.end - r.begin));
    std::memcpy(out.data() + at, r.key.data(), r.key.size());
    at += r.key.size();
    const std::size_t bytes = (r.end - r.begin) * sizeof(Point);
    std::memcpy(out.data() + at, points.data() + r.begin, bytes);
    at += bytes;
  }
}

void decode_wal_record(Lsn lsn, std::span<const std::byte> payload, std::vector<Point>& scratch,
                       const std::function<void(SeriesId, std::string_view, std::span<const Point>)>& fn) {
  auto fail = [&](const char* why) {
    throw std::runtime_error("WAL record " + std::to_string(lsn) + " does not decode: " + why);
  };
  std::size_t at = 0;
  auto get = [&](auto& v) {
    if (payload.size() - at < sizeof v) fail("truncated");
    std::memcpy(&v, payload.data() + at, sizeof v);
    at += sizeof v;
  };
  std::uint32_t version = 0, runs = 0;
  get(version);
  if (version != kRecordVersion) fail("unknown version");
  get(runs);
  for (std::uint32_t i = 0; i < runs; ++i) {
    SeriesId id = 0;
    std::uint32_t key_size = 0, count = 0;
    get(id);
    get(key_size);
    get(count);
    if (payload.size() - at < key_size) fail("truncated key");
    std::string_view key(reinterpret_cast<const char*>(payload.data() + at), key_size);
    at += key_size;
    if ((payload.size() - at) / sizeof(Point) < count) fail("truncated points");
    scratch.resize(count);
    std::memcpy(scratch.data(), payload.data() + at, std::size_t{count} * sizeof(Point));
    at += std::size_t{count} * sizeof(Point);
    fn(id, key, std::span<const Point>(scratch));
  }
  if (at != payload.size()) fail("trailing bytes");
}

}  // namespace sydra::storage
