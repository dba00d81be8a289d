// libFuzzer target for the on-disk readers: arbitrary bytes as a WAL file (scan_wal_bytes)
// and as a segment file (segment::parse, then every block decoded). Either may report a
// problem; neither may crash, leak, read out of bounds or hit undefined behaviour.
//
// Also checks the scanner's own promises: good_end is inside the input and on a record
// boundary, and the prefix [0, good_end) scans clean to the same records (what replay
// keeps after truncating a torn tail).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <vector>

#include "server/storage/segment_file.hpp"
#include "server/storage/wal.hpp"

namespace {

using sydra::storage::Lsn;

void fuzz_wal(std::span<const std::byte> bytes) {
  std::vector<Lsn> lsns;
  std::size_t payload_bytes = 0;
  const auto scan = sydra::storage::scan_wal_bytes(bytes, [&](Lsn lsn, std::span<const std::byte> payload) {
    lsns.push_back(lsn);
    payload_bytes += payload.size();
  });
  if (scan.good_end > bytes.size()) std::abort();
  if (scan.clean != scan.problem.empty()) std::abort();
  if (!scan.clean || lsns.empty()) return;
  if (scan.good_end != bytes.size()) std::abort();
  std::vector<Lsn> again;
  const auto prefix = sydra::storage::scan_wal_bytes(
      bytes.first(scan.good_end), [&](Lsn lsn, std::span<const std::byte>) { again.push_back(lsn); });
  if (!prefix.clean || again != lsns) std::abort();
  for (std::size_t i = 1; i < lsns.size(); ++i)
    if (lsns[i] != lsns[i - 1] + 1) std::abort();
}

void fuzz_segment(std::span<const std::byte> bytes) {
  using namespace sydra::storage;
  try {
    const segment::Index index = segment::parse(bytes, "fuzz");
    std::vector<Point> points;
    for (const segment::BlockRef& b : index.blocks) {
      points.clear();
      try {
        segment::decode_block(bytes, index.format, b, "fuzz", points);
      } catch (const SegmentCorruption&) {
        continue;
      }
      if (points.size() != b.points) std::abort();
    }
  } catch (const SegmentCorruption&) {
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(data), size);
  fuzz_wal(bytes);
  fuzz_segment(bytes);
  return 0;
}
