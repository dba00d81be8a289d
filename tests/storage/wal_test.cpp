// Tests server/storage/wal.hpp: CRC32C, framing, torn tails, corruption, rotation and
// checkpoints, lsn continuity, sync modes and group commit.
#include "server/storage/wal.hpp"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "server/storage/crc32c.hpp"
#include "server/storage/file_io.hpp"
#include "support/temp_dir.hpp"

namespace sydra::storage {
namespace {

namespace fs = std::filesystem;

struct TempDir : test::TempDir {
  TempDir() : test::TempDir("sydra-wal-test") {}
};

std::vector<std::byte> bytes_of(const std::string& s) {
  std::vector<std::byte> b(s.size());
  if (!s.empty()) std::memcpy(b.data(), s.data(), s.size());
  return b;
}

std::string payload_for(Lsn lsn, std::size_t size) {
  std::string s;
  for (std::size_t i = 0; i < size; ++i) s.push_back(static_cast<char>('a' + (lsn * 7 + i) % 26));
  return s;
}

struct Replayed {
  WalReplayResult result;
  std::vector<std::pair<Lsn, std::string>> records;
};

Replayed replay(const std::string& dir, Lsn after = 0) {
  Replayed r;
  r.result = replay_wal(dir, after, [&](Lsn lsn, std::span<const std::byte> p) {
    r.records.emplace_back(lsn, std::string(reinterpret_cast<const char*>(p.data()), p.size()));
  });
  return r;
}

void write_bytes(const std::string& path, const std::vector<std::byte>& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

std::string wal_name(Lsn first) {
  char name[40];
  std::snprintf(name, sizeof name, "wal-%020llu.log", static_cast<unsigned long long>(first));
  return name;
}

std::vector<std::string> wal_files(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

// Writes records with the given payload sizes into a fresh WAL (one file) and returns the
// offset where each record starts and the file size.
std::vector<std::uint64_t> write_wal(const std::string& dir, const std::vector<std::size_t>& sizes,
                                     SyncMode mode = SyncMode::none) {
  auto wal = Wal::open({.dir = dir, .sync = mode}, 1);
  std::vector<std::uint64_t> offsets;
  std::uint64_t off = 16;
  for (std::size_t s : sizes) {
    offsets.push_back(off);
    const Lsn lsn = wal->append(bytes_of(payload_for(offsets.size(), s)));
    CHECK(lsn == offsets.size());
    off += 16 + s;
  }
  offsets.push_back(off);
  return offsets;
}

TEST_SUITE("unit") {
  TEST_CASE("wal: crc32c matches the known vector and SSE4.2 agrees with Boost") {
    const char* digits = "123456789";
    CHECK(crc32c_portable(digits, 9) == 0xE3069283u);
    CHECK(crc32c(digits, 9) == 0xE3069283u);
    if (crc32c_hardware_available()) CHECK(crc32c_sse42(digits, 9) == 0xE3069283u);
    CHECK(crc32c_portable("", 0) == 0u);
    std::mt19937_64 rng(1);
    std::vector<unsigned char> buf(4096 + 8);
    for (auto& b : buf) b = static_cast<unsigned char>(rng());
    for (int i = 0; i < 500; ++i) {
      const std::size_t offset = rng() % 8;  // unaligned starts too
      const std::size_t size = rng() % 4096;
      CHECK(crc32c_sse42(buf.data() + offset, size) == crc32c_portable(buf.data() + offset, size));
    }
  }

  TEST_CASE("wal: records round-trip through append and close and replay") {
    TempDir dir;
    const std::vector<std::size_t> sizes{0, 1, 15, 16, 100, 100'000, 3};
    const auto offsets = write_wal(dir.path(), sizes);
    const Replayed r = replay(dir.path());
    REQUIRE(r.records.size() == sizes.size());
    for (std::size_t i = 0; i < sizes.size(); ++i) {
      CHECK(r.records[i].first == i + 1);
      CHECK(r.records[i].second == payload_for(i + 1, sizes[i]));
    }
    CHECK(r.result.last_lsn == sizes.size());
    CHECK(r.result.truncated_bytes == 0);
    CHECK(fs::file_size(dir.sub(wal_name(1))) == offsets.back());

    // The low-level scanner agrees, and replay after an lsn skips what is older.
    const auto bytes = io::read_file(dir.sub(wal_name(1)));
    std::size_t n = 0;
    const WalScan scan = scan_wal_bytes(bytes, [&](Lsn, std::span<const std::byte>) { ++n; });
    CHECK(scan.clean);
    CHECK(scan.good_end == offsets.back());
    CHECK(n == sizes.size());
    const Replayed later = replay(dir.path(), 5);
    REQUIRE(later.records.size() == 2);
    CHECK(later.records[0].first == 6);
    CHECK(later.result.last_lsn == 7);
  }

  TEST_CASE("wal: a last record torn at every byte offset is truncated and the log reopens for appends") {
    TempDir src;
    const auto offsets = write_wal(src.path(), {10, 20, 30});
    const auto full = io::read_file(src.sub(wal_name(1)));
    const std::uint64_t last_start = offsets[2];
    for (std::uint64_t cut = last_start; cut < full.size(); ++cut) {
      INFO("cut at " << cut);
      TempDir dir;
      const std::string path = dir.sub(wal_name(1));
      write_bytes(path,
                  std::vector<std::byte>(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(cut)));
      const Replayed r = replay(dir.path());
      REQUIRE(r.records.size() == 2);
      CHECK(r.records[1].second == payload_for(2, 20));
      CHECK(r.result.last_lsn == 2);
      CHECK(r.result.truncated_bytes == cut - last_start);
      CHECK(fs::file_size(path) == last_start);

      {
        auto wal = Wal::open({.dir = dir.path(), .sync = SyncMode::always}, r.result.last_lsn + 1);
        const Lsn lsn = wal->append(bytes_of("after"));
        CHECK(lsn == 3);
        wal->wait_durable(lsn);
      }
      const Replayed again = replay(dir.path());
      REQUIRE(again.records.size() == 3);
      CHECK(again.records[2] == std::pair<Lsn, std::string>{3, "after"});
      CHECK(again.result.truncated_bytes == 0);
    }
  }

  TEST_CASE("wal: a file torn inside its header is removed when it is the last") {
    TempDir src;
    write_wal(src.path(), {10});
    const auto full = io::read_file(src.sub(wal_name(1)));
    for (std::size_t cut = 1; cut < 16; ++cut) {
      TempDir dir;
      write_bytes(dir.sub(wal_name(1)),
                  std::vector<std::byte>(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(cut)));
      const Replayed r = replay(dir.path());
      CHECK(r.records.empty());
      CHECK(r.result.truncated_bytes == cut);
      CHECK(!fs::exists(dir.sub(wal_name(1))));
      auto wal = Wal::open({.dir = dir.path()}, 1);
      CHECK(wal->append(bytes_of("x")) == 1);
    }
  }

  TEST_CASE("wal: random garbage after the last record is truncated") {
    std::mt19937_64 rng(42);
    TempDir src;
    const auto offsets = write_wal(src.path(), {50, 60, 70});
    const auto full = io::read_file(src.sub(wal_name(1)));
    for (int round = 0; round < 50; ++round) {
      TempDir dir;
      auto bytes = full;
      const std::size_t extra = 1 + rng() % 2000;
      for (std::size_t i = 0; i < extra; ++i) bytes.push_back(static_cast<std::byte>(rng()));
      write_bytes(dir.sub(wal_name(1)), bytes);
      const Replayed r = replay(dir.path());
      CHECK(r.records.size() == 3);
      CHECK(r.result.truncated_bytes == extra);
      CHECK(fs::file_size(dir.sub(wal_name(1))) == offsets.back());
    }
    // Zeros, as a file system may leave after a crash.
    TempDir dir;
    auto bytes = full;
    bytes.resize(bytes.size() + 4096);
    write_bytes(dir.sub(wal_name(1)), bytes);
    CHECK(replay(dir.path()).records.size() == 3);
  }

  TEST_CASE("wal: a flipped bit in a middle record is corruption naming file and offset") {
    TempDir src;
    const auto offsets = write_wal(src.path(), {40, 40, 40, 40, 40});
    const auto full = io::read_file(src.sub(wal_name(1)));
    // Flip bits in the length, crc, lsn and payload of record 2 (lsn 2).
    for (std::uint64_t at : {offsets[1] + 1, offsets[1] + 5, offsets[1] + 9, offsets[1] + 30}) {
      INFO("flip at " << at);
      TempDir dir;
      auto bytes = full;
      bytes[at] ^= std::byte{0x10};
      const std::string path = dir.sub(wal_name(1));
      write_bytes(path, bytes);
      bool thrown = false;
      try {
        replay(dir.path());
      } catch (const WalCorruption& e) {
        thrown = true;
        CHECK(e.file == path);
        CHECK(e.offset == offsets[1]);
        const std::string what = e.what();
        CHECK(what.find(path) != std::string::npos);
        CHECK(what.find("offset " + std::to_string(offsets[1])) != std::string::npos);
      }
      CHECK(thrown);
      CHECK(fs::file_size(path) == full.size());  // nothing truncated
    }
  }

  TEST_CASE("wal: a bad record in a file that is not the last is corruption") {
    TempDir dir;
    {
      auto wal = Wal::open({.dir = dir.path(), .sync = SyncMode::none, .max_file_bytes = 100}, 1);
      for (int i = 0; i < 4; ++i) wal->append(bytes_of(payload_for(i + 1, 60)));
    }
    // 60-byte records: two per file (16 + 76 + 76 >= 100 rotates after the second).
    const std::string first = dir.sub(wal_name(1));
    REQUIRE(fs::exists(dir.sub(wal_name(3))));
    auto bytes = io::read_file(first);
    bytes.resize(bytes.size() - 1);  // cut the second record short
    write_bytes(first, bytes);
    CHECK_THROWS_AS(replay(dir.path()), WalCorruption);
  }

  TEST_CASE("wal: rotation and checkpoint delete exactly the files all of whose records are flushed") {
    TempDir dir;
    auto wal = Wal::open({.dir = dir.path(), .sync = SyncMode::none, .max_file_bytes = 200}, 1);
    // 100-byte payloads frame to 116 bytes: 16 + 116 < 200, 16 + 232 >= 200 -> two per file.
    for (Lsn i = 1; i <= 10; ++i) CHECK(wal->append(bytes_of(payload_for(i, 100))) == i);
    CHECK(wal_files(dir.path()) == std::vector<std::string>{wal_name(1), wal_name(3), wal_name(5),
                                                            wal_name(7), wal_name(9), wal_name(11)});
    CHECK(wal->stats().rotations.load() == 5);
    CHECK(wal->stats().files.load() == 6);
    CHECK(wal->durable_lsn() == 10);  // rotation fsyncs the finished file

    wal->checkpoint(3);  // wal-3 holds 4: only wal-1 goes
    CHECK(wal_files(dir.path()).front() == wal_name(3));
    wal->checkpoint(4);
    CHECK(wal_files(dir.path()).front() == wal_name(5));
    wal->checkpoint(5);
    CHECK(wal_files(dir.path()).front() == wal_name(5));
    CHECK(wal->stats().files_deleted.load() == 2);
    wal->checkpoint(1000);  // never the current file
    CHECK(wal_files(dir.path()) == std::vector<std::string>{wal_name(11)});
    CHECK(wal->stats().files.load() == 1);
    CHECK(wal->stats().files_deleted.load() == 5);
  }

  TEST_CASE("wal: lsns continue across files and across reopen") {
    TempDir dir;
    {
      auto wal = Wal::open({.dir = dir.path(), .sync = SyncMode::none, .max_file_bytes = 200}, 1);
      for (Lsn i = 1; i <= 7; ++i) wal->append(bytes_of(payload_for(i, 100)));
      wal->checkpoint(2);
    }
    Replayed r = replay(dir.path(), 2);
    CHECK(r.result.last_lsn == 7);
    REQUIRE(r.records.size() == 5);
    for (std::size_t i = 0; i < r.records.size(); ++i) CHECK(r.records[i].first == i + 3);
    {
      auto wal = Wal::open({.dir = dir.path(), .sync = SyncMode::none, .max_file_bytes = 200},
                           r.result.last_lsn + 1);
      CHECK(wal->last_lsn() == 7);
      CHECK(wal->append(bytes_of("eight")) == 8);
      CHECK(wal->append(bytes_of("nine")) == 9);
    }
    r = replay(dir.path(), 2);
    REQUIRE(r.records.size() == 7);
    CHECK(r.records.back() == std::pair<Lsn, std::string>{9, "nine"});

    // Opening over records that were not replayed is refused.
    CHECK_THROWS_AS(Wal::open({.dir = dir.path()}, 5), std::runtime_error);
  }

  TEST_CASE("wal: a missing file in the middle is a gap reported as corruption") {
    TempDir dir;
    {
      auto wal = Wal::open({.dir = dir.path(), .sync = SyncMode::none, .max_file_bytes = 200}, 1);
      for (Lsn i = 1; i <= 6; ++i) wal->append(bytes_of(payload_for(i, 100)));
    }
    fs::remove(dir.sub(wal_name(3)));
    CHECK_THROWS_AS(replay(dir.path()), WalCorruption);
    // ...unless the missing records are all flushed already.
    CHECK(replay(dir.path(), 4).records.size() == 2);
  }

  TEST_CASE("wal: a next lsn from the manifest above the log starts a new file after a gap") {
    TempDir dir;
    write_wal(dir.path(), {10, 10});
    {
      auto wal = Wal::open({.dir = dir.path()}, 100);
      CHECK(wal->append(bytes_of("hundred")) == 100);
    }
    const Replayed r = replay(dir.path(), 99);
    REQUIRE(r.records.size() == 1);
    CHECK(r.records[0].first == 100);
  }

  TEST_CASE("wal: sync modes make records durable") {
    for (SyncMode mode : {SyncMode::always, SyncMode::interval, SyncMode::none}) {
      TempDir dir;
      auto wal = Wal::open({.dir = dir.path(), .sync = mode, .interval_ms = 10}, 1);
      CHECK(wal->sync_mode() == mode);
      const Lsn a = wal->append(bytes_of("a"));
      if (mode == SyncMode::interval) {
        // The background thread gets there on its own.
        for (int i = 0; i < 500 && wal->durable_lsn() < a; ++i)
          std::this_thread::sleep_for(std::chrono::milliseconds(10));
        CHECK(wal->durable_lsn() >= a);
      }
      const Lsn b = wal->append(bytes_of("b"));
      wal->wait_durable(b);
      CHECK(wal->durable_lsn() >= b);
      CHECK(wal->stats().fsyncs.load() >= 1);
      CHECK(wal->stats().records.load() == 2);
      CHECK(wal->stats().bytes_written.load() == 2 * 17);
      // Records are in the file (not only in the buffer) once durable.
      CHECK(fs::file_size(dir.sub(wal_name(1))) == 16 + 2 * 17);
    }
  }
}

TEST_SUITE("concurrency") {
  TEST_CASE("wal: group commit with 8 threads appending and waiting needs fewer fsyncs than records") {
    TempDir dir;
    constexpr int kThreads = 8;
    constexpr int kPerThread = 150;
    std::atomic<int> violations{0};
    {
      auto wal = Wal::open({.dir = dir.path(), .sync = SyncMode::always}, 1);
      std::vector<std::thread> threads;
      for (int t = 0; t < kThreads; ++t) {
        threads.emplace_back([&, t] {
          for (int i = 0; i < kPerThread; ++i) {
            const Lsn lsn = wal->append(bytes_of(payload_for(static_cast<Lsn>(t * 1000 + i), 200)));
            wal->wait_durable(lsn);
            if (wal->durable_lsn() < lsn) violations.fetch_add(1);
          }
        });
      }
      for (auto& th : threads) th.join();
      CHECK(violations.load() == 0);
      CHECK(wal->last_lsn() == kThreads * kPerThread);
      MESSAGE("fsyncs: " << wal->stats().fsyncs.load() << " for " << kThreads * kPerThread
                         << " records; waiters served by another's fsync: "
                         << wal->stats().group_commit_waiters.load());
      CHECK(wal->stats().fsyncs.load() < static_cast<std::uint64_t>(kThreads * kPerThread));
    }
    const Replayed r = replay(dir.path());
    REQUIRE(r.records.size() == kThreads * kPerThread);
    for (std::size_t i = 0; i < r.records.size(); ++i) CHECK(r.records[i].first == i + 1);
  }

  TEST_CASE("wal: concurrent appends across rotations and checkpoints keep lsns dense") {
    TempDir dir;
    constexpr int kThreads = 4;
    constexpr int kPerThread = 300;
    {
      auto wal = Wal::open(
          {.dir = dir.path(), .sync = SyncMode::interval, .interval_ms = 1, .max_file_bytes = 4096}, 1);
      std::vector<std::thread> threads;
      for (int t = 0; t < kThreads; ++t) {
        threads.emplace_back([&, t] {
          for (int i = 0; i < kPerThread; ++i)
            wal->append(bytes_of(payload_for(static_cast<Lsn>(t + i), 100)));
        });
      }
      threads.emplace_back([&] {
        for (int i = 0; i < 50; ++i) {
          wal->sync();
          std::this_thread::yield();
        }
      });
      for (auto& th : threads) th.join();
      CHECK(wal->stats().rotations.load() > 10);
    }
    const Replayed r = replay(dir.path());
    REQUIRE(r.records.size() == kThreads * kPerThread);
    for (std::size_t i = 0; i < r.records.size(); ++i) CHECK(r.records[i].first == i + 1);
  }
}

}  // namespace
}  // namespace sydra::storage
