// Faults under the storage engine, made with the fault-injection seam of file_io
// (file_io_faults.hpp; this executable links sydra_file_io_faults):
//   - disk full (ENOSPC, and a write cut short by it) during ingest, flush, compaction and
//     retention: ingest is refused with disk_full and nothing half-written stays in the
//     WAL; the segments and the MANIFEST are untouched; queries go on; writes resume by
//     themselves once the fault is lifted;
//   - every I/O call (open, write, fsync, rename, directory fsync, unlink, read, truncate)
//     failing in turn with EIO, ENOSPC or a short write, at several points of ingest,
//     flush, compaction, retention and recovery: the engine carries on or refuses with a
//     message naming the file and the call; after a clean restart every acknowledged point
//     is there with its value, nothing else is, and every segment reads back;
//   - a failed WAL fsync stops writes for good (never retried and acknowledged);
//   - the WAL after a flush keeps only what is not yet in segments, across a restart.
#include <doctest/doctest.h>
#include <stdlib.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <spdlog/sinks/ringbuffer_sink.h>
#include <spdlog/spdlog.h>

#include "server/storage/engine.hpp"
#include "server/storage/file_io.hpp"
#include "server/storage/file_io_faults.hpp"
#include "server/storage/ingest_parser.hpp"
#include "server/storage/series_key.hpp"
#include "server/storage/wal.hpp"
#include "support/alloc_test_support.hpp"
#include "support/temp_dir.hpp"

namespace sydra::storage {
namespace {

namespace fs = std::filesystem;
namespace fault = io::fault;
using alloc::SmallPoolAllocator;
using Clock = std::chrono::steady_clock;

constexpr Timestamp kDay = 86'400'000;
constexpr Timestamp kNow = 400 * kDay;  // the engine's clock in these tests

EngineOptions test_options(const std::string& dir) {
  EngineOptions o;
  o.data_dir = dir;
  o.sync = SyncMode::always;
  o.background = false;
  o.compaction_interval_ms = 0;
  o.retention_days = 30;
  o.now_ms = [] { return kNow; };
  return o;
}

SeriesId id_of(const std::string& name) {
  std::string key;
  append_canonical_key(key, name, {});
  return series_id(key);
}

// The points sent, and which were acknowledged: the oracle a restart is checked against.
struct Ledger {
  std::map<std::string, std::map<Timestamp, double>> acked;
  std::map<std::string, std::map<Timestamp, double>> sent;  // acknowledged or not
  int next = 0;

  // Ingests `points` points of `series` (fresh timestamps from `base`); true when acked.
  IngestOutcome ingest(Engine& e, const std::string& series, int points, Timestamp base) {
    std::string body;
    std::vector<std::pair<Timestamp, double>> batch;
    for (int i = 0; i < points; ++i) {
      const Timestamp ts = base + next;
      const double value = next * 0.5 + 1;
      ++next;
      batch.emplace_back(ts, value);
      char line[160];
      std::snprintf(line, sizeof line, "{\"series\":\"%s\",\"ts\":%lld,\"value\":%.17g}\n", series.c_str(),
                    static_cast<long long>(ts), value);
      body += line;
    }
    NdjsonParser parser;
    ParsedBatch parsed;
    parser.parse(body, parsed);
    for (const auto& [ts, v] : batch) sent[series][ts] = v;
    const IngestOutcome outcome = e.ingest(parsed);
    if (outcome.status == IngestStatus::ok)
      for (const auto& [ts, v] : batch) acked[series][ts] = v;
    return outcome;
  }

  // Every acknowledged point is there with its value; every point there was sent, with its
  // value (one not acknowledged may be there or not); `expired` series may have lost points.
  void check(const Engine& e, const std::vector<std::string>& expired = {}) const {
    for (const auto& [series, points] : sent) {
      std::vector<Point> out;
      REQUIRE(e.query_range({id_of(series), 0, INT64_MAX / 2}, out) == QueryStatus::ok);
      std::map<Timestamp, double> got;
      for (const Point& p : out) {
        CHECK_MESSAGE(!got.contains(p.ts), series << " holds ts " << p.ts << " twice");
        got[p.ts] = p.value;
        const auto it = points.find(p.ts);
        REQUIRE_MESSAGE(it != points.end(), series << " holds ts " << p.ts << ", never sent");
        CHECK(it->second == p.value);
      }
      if (std::find(expired.begin(), expired.end(), series) != expired.end()) continue;
      const auto acked_it = acked.find(series);
      if (acked_it == acked.end()) continue;
      for (const auto& [ts, v] : acked_it->second)
        CHECK_MESSAGE(got.contains(ts), series << ": acknowledged point at ts " << ts << " is lost");
    }
  }
};

std::vector<std::string> names_in(const std::string& dir) {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) names.push_back(entry.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

std::uint64_t bytes_in(const std::string& dir) {
  std::uint64_t total = 0;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec))
    if (entry.is_regular_file()) total += entry.file_size();
  return total;
}

std::string read_text(const std::string& path) {
  const std::vector<std::byte> bytes = io::read_file(path);
  return std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size());
}

// The WAL has no torn or partial record (replay would have to cut one off).
void check_wal_whole(const std::string& data_dir) {
  std::uint64_t records = 0;
  const WalReplayResult r =
      replay_wal(data_dir + "/wal", 0, [&](Lsn, std::span<const std::byte>) { ++records; });
  CHECK_MESSAGE(r.truncated_bytes == 0, "the WAL holds a torn record of " << r.truncated_bytes << " bytes");
}

struct FaultGuard {
  FaultGuard() { fault::clear(); }
  ~FaultGuard() { fault::clear(); }
};

TEST_SUITE("unit") {
  TEST_CASE("faults: disk full during ingest refuses the batch, leaves no torn record and resumes") {
    FaultGuard guard;
    test::TempDir dir("sydra-faults");
    SmallPoolAllocator a(alloc::test::small_options());
    Ledger ledger;
    {
      auto e = Engine::open(test_options(dir.path()), a);
      REQUIRE(ledger.ingest(*e, "cpu", 50, kNow).status == IngestStatus::ok);

      // The disk fills in the middle of the next record, and stays full.
      fault::arm({fault::Call::write, "/wal/", ENOSPC, true, 0, fault::kForever});
      for (int i = 0; i < 3; ++i) {
        const IngestOutcome refused = ledger.ingest(*e, "cpu", 50, kNow);
        CHECK(refused.status == IngestStatus::disk_full);
        CHECK(refused.error.find("write ") != std::string::npos);
        CHECK(refused.error.find("/wal/wal-") != std::string::npos);
      }
      EngineStats st = e->stats();
      CHECK(st.disk_full);
      CHECK(st.ingest_disk_full == 3);
      CHECK(st.write_error.find("No space left on device") != std::string::npos);
      ledger.check(*e);  // queries go on
      check_wal_whole(dir.path());

      // Space is back: the very next batch is taken.
      fault::clear();
      CHECK(ledger.ingest(*e, "cpu", 50, kNow).status == IngestStatus::ok);
      st = e->stats();
      CHECK_FALSE(st.disk_full);
      CHECK(st.write_error.empty());
    }
    check_wal_whole(dir.path());
    auto e = Engine::open(test_options(dir.path()), a);
    ledger.check(*e);
    std::vector<Point> out;
    e->query_range({id_of("cpu"), 0, INT64_MAX / 2}, out);
    CHECK(out.size() == 100);  // exactly the acknowledged batches
  }

  TEST_CASE(
      "faults: disk full during a flush keeps segments and MANIFEST, refuses ingest at once and resumes") {
    FaultGuard guard;
    test::TempDir dir("sydra-faults");
    SmallPoolAllocator a(alloc::test::small_options());
    Ledger ledger;
    EngineOptions o = test_options(dir.path());
    o.background = true;  // the flush retries on its own
    o.flush_interval_ms = 60'000;
    o.memtable_max_bytes = 64 << 10;
    o.ingest_wait_ms = 5'000;
    auto e = Engine::open(o, a);
    REQUIRE(ledger.ingest(*e, "mem", 200, kNow).status == IngestStatus::ok);
    REQUIRE(e->flush());
    const std::string segments = dir.path() + "/segments";
    const std::vector<std::string> files_before = names_in(segments);
    const std::string manifest_before = read_text(segments + "/MANIFEST");

    fault::arm({fault::Call::write, ".sdb.tmp", ENOSPC, true, 0, fault::kForever});
    // Fill the memtable: the flush it asks for fails, and ingest is refused as disk full
    // without waiting out ingest_wait_ms.
    IngestOutcome outcome;
    Clock::time_point refused_at{};
    for (int i = 0; i < 400; ++i) {
      const auto t0 = Clock::now();
      outcome = ledger.ingest(*e, "mem", 200, kNow);
      if (outcome.status != IngestStatus::ok) {
        refused_at = Clock::now();
        CHECK(refused_at - t0 < std::chrono::milliseconds(o.ingest_wait_ms));
        break;
      }
    }
    REQUIRE(outcome.status == IngestStatus::disk_full);
    CHECK(outcome.error.find(".sdb.tmp") != std::string::npos);
    CHECK(e->stats().disk_full);
    CHECK(e->stats().flush_failures > 0);
    // No new segment, and no temp file left: a retried flush may be between creating its
    // temp file and removing it after the failed write, so the listing gets a moment to settle.
    std::vector<std::string> files_now = names_in(segments);
    for (int i = 0; i < 200 && files_now != files_before; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
      files_now = names_in(segments);
    }
    CHECK(files_now == files_before);
    CHECK(read_text(segments + "/MANIFEST") == manifest_before);
    ledger.check(*e);

    // Space is back: the retried flush makes room and ingest is taken again.
    fault::clear();
    const auto back = Clock::now();
    while (ledger.ingest(*e, "mem", 10, kNow).status != IngestStatus::ok) {
      REQUIRE(Clock::now() - back < std::chrono::seconds(10));
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    MESSAGE("ingest resumed " << std::chrono::duration<double>(Clock::now() - back).count()
                              << " s after the disk had room again");
    CHECK_FALSE(e->stats().disk_full);
    e.reset();
    e = Engine::open(test_options(dir.path()), a);
    ledger.check(*e);
  }

  TEST_CASE("faults: disk full during compaction and retention leaves segments and MANIFEST intact") {
    FaultGuard guard;
    test::TempDir dir("sydra-faults");
    SmallPoolAllocator a(alloc::test::small_options());
    Ledger ledger;
    auto e = Engine::open(test_options(dir.path()), a);
    // Three segments, the first entirely older than retention.
    REQUIRE(ledger.ingest(*e, "old", 100, kNow - 100 * kDay).status == IngestStatus::ok);
    REQUIRE(e->flush());
    for (int i = 0; i < 2; ++i) {
      REQUIRE(ledger.ingest(*e, "new", 100, kNow).status == IngestStatus::ok);
      REQUIRE(e->flush());
    }
    const std::string segments = dir.path() + "/segments";
    const std::vector<std::string> files_before = names_in(segments);
    const std::string manifest_before = read_text(segments + "/MANIFEST");

    fault::arm({fault::Call::write, ".tmp", ENOSPC, false, 0, fault::kForever});
    CHECK_THROWS_WITH(e->compact(true), doctest::Contains("No space left on device"));
    CHECK(e->apply_retention() == 0);
    CHECK(names_in(segments) == files_before);
    CHECK(read_text(segments + "/MANIFEST") == manifest_before);
    CHECK(e->stats().segments == 3);
    ledger.check(*e);

    fault::clear();
    CHECK(e->apply_retention() == 1);
    CHECK(e->compact(true));
    e.reset();
    e = Engine::open(test_options(dir.path()), a);
    ledger.check(*e, {"old"});
  }

  TEST_CASE("faults: a failed WAL fsync stops writes, never retried and acknowledged") {
    FaultGuard guard;
    test::TempDir dir("sydra-faults");
    SmallPoolAllocator a(alloc::test::small_options());
    Ledger ledger;
    {
      auto e = Engine::open(test_options(dir.path()), a);
      REQUIRE(ledger.ingest(*e, "d", 10, kNow).status == IngestStatus::ok);
      fault::arm({fault::Call::fsync, "/wal/", EIO, false, 0, 1});
      const IngestOutcome failed = ledger.ingest(*e, "d", 10, kNow);
      CHECK(failed.status == IngestStatus::stopped);
      CHECK(failed.error.find("fdatasync ") != std::string::npos);
      CHECK(failed.error.find("/wal/wal-") != std::string::npos);
      // The fault is gone, but the fsync is not tried again: writes stay stopped.
      const IngestOutcome after = ledger.ingest(*e, "d", 10, kNow);
      CHECK(after.status == IngestStatus::stopped);
      const EngineStats st = e->stats();
      CHECK(st.writes_stopped);
      CHECK(st.ingest_stopped == 2);
      CHECK(st.write_error.find("fdatasync") != std::string::npos);
      ledger.check(*e);  // queries go on
    }
    auto e = Engine::open(test_options(dir.path()), a);
    CHECK_FALSE(e->stats().writes_stopped);
    ledger.check(*e);
    CHECK(ledger.ingest(*e, "d", 10, kNow).status == IngestStatus::ok);
  }

  TEST_CASE("faults: the WAL keeps only what is not yet in segments, across a restart") {
    FaultGuard guard;
    test::TempDir dir("sydra-faults");
    SmallPoolAllocator a(alloc::test::small_options());
    Ledger ledger;
    EngineOptions o = test_options(dir.path());
    o.sync = SyncMode::none;
    o.wal_max_file_bytes = 256 << 10;
    const std::string wal = dir.path() + "/wal";
    constexpr std::uint64_t kHeader = 16;
    {
      auto e = Engine::open(o, a);
      for (int i = 0; i < 40; ++i) REQUIRE(ledger.ingest(*e, "w", 2000, kNow).status == IngestStatus::ok);
      CHECK(bytes_in(wal) > 2 * o.wal_max_file_bytes);  // several files
      REQUIRE(e->flush());
      // Everything is in segments: one empty WAL file is left.
      CHECK(bytes_in(wal) == kHeader);
      CHECK(names_in(wal).size() == 1);

      // Ingest on after the flush: only what came after stays.
      REQUIRE(ledger.ingest(*e, "w", 100, kNow).status == IngestStatus::ok);
      CHECK(bytes_in(wal) < 8 << 10);
    }
    {
      auto e = Engine::open(o, a);
      ledger.check(*e);
      REQUIRE(e->flush());  // the replayed batch goes to a segment
      CHECK(bytes_in(wal) == kHeader);
    }
    {
      // A restart with nothing to replay leaves only the new, empty file.
      auto e = Engine::open(o, a);
      CHECK(bytes_in(wal) == kHeader);
      CHECK(names_in(wal).size() == 1);
      ledger.check(*e);
    }
  }
}

// ---- every call site failing in turn --------------------------------------------------

enum class Phase { ingest, flush, compaction, retention, recovery };

const char* to_string(Phase p) {
  switch (p) {
    case Phase::ingest:
      return "ingest";
    case Phase::flush:
      return "flush";
    case Phase::compaction:
      return "compaction";
    case Phase::retention:
      return "retention";
    case Phase::recovery:
      return "recovery";
  }
  return "?";
}

const char* call_word(fault::Call call) {
  switch (call) {
    case fault::Call::open:
      return "open ";
    case fault::Call::write:
      return "write ";
    case fault::Call::fsync:
      return "sync";  // fsync, fdatasync
    case fault::Call::rename:
      return "rename ";
    case fault::Call::fsync_dir:
      return "fsync directory ";
    case fault::Call::unlink:
      return "unlink ";
    case fault::Call::read:
      return "read ";
    case fault::Call::truncate:
      return "truncate ";
  }
  return "?";
}

struct Outcome {
  bool fired = false;
  bool refused = false;  // an operation failed or was refused, with `message`
  std::string message;
  std::vector<std::string> logged;  // warnings and errors logged meanwhile
};

// Keeps the warnings and errors the engine logs while it lives.
class LogCapture {
 public:
  LogCapture() : sink_(std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(256)) {
    sink_->set_level(spdlog::level::warn);
    sink_->set_pattern("%v");
    spdlog::default_logger()->sinks().push_back(sink_);
  }
  ~LogCapture() {
    auto& sinks = spdlog::default_logger()->sinks();
    sinks.erase(std::remove(sinks.begin(), sinks.end(), sink_), sinks.end());
  }
  std::vector<std::string> lines() const {
    std::vector<std::string> lines = sink_->last_formatted();
    for (std::string& l : lines)
      while (!l.empty() && (l.back() == '\n' || l.back() == '\r')) l.pop_back();
    return lines;
  }

 private:
  std::shared_ptr<spdlog::sinks::ringbuffer_sink_mt> sink_;
};

// A fresh directory on /dev/shm when there is one: the matrix runs hundreds of small cases
// with fsync = always, which a real disk makes slow; the faults are injected, not real.
class ShmDir {
 public:
  ShmDir() {
    std::error_code ec;
    const fs::path base = fs::is_directory("/dev/shm", ec) ? fs::path("/dev/shm") : fs::temp_directory_path();
    std::string pattern = (base / "sydra-faults-XXXXXX").string();
    REQUIRE(::mkdtemp(pattern.data()) != nullptr);
    path_ = pattern;
  }
  ~ShmDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Arms `rule`; a truncate fails only after a failed write (cutting a partial record off), so
// a write cut short by ENOSPC comes with it.
void arm_case(const fault::Rule& rule) {
  fault::arm(rule);
  if (rule.call == fault::Call::truncate)
    fault::arm({fault::Call::write, "/wal/", ENOSPC, true, rule.skip, 1});
}

// Runs one phase with `rule` armed (after the set-up, which runs without faults), then
// restarts cleanly and checks every acknowledged point and every segment.
Outcome run_case(Phase phase, const fault::Rule& rule) {
  fault::clear();
  LogCapture log;
  ShmDir dir;
  SmallPoolAllocator a(alloc::test::small_options());
  Ledger ledger;
  EngineOptions o = test_options(dir.path());
  o.wal_max_file_bytes = 4 << 10;  // rotations during ingest
  Outcome result;
  const auto note = [&](const std::string& message) {
    result.refused = true;
    if (result.message.empty()) result.message = message;
  };
  const auto ingest_some = [&](Engine& e, int batches) {
    for (int i = 0; i < batches; ++i) {
      try {
        std::string series("f");  // not "f" + ...: g++ 12's false -Wrestrict
        series += std::to_string(i % 3);
        const IngestOutcome out = ledger.ingest(e, series, 40, kNow);
        if (out.status != IngestStatus::ok) note(out.error);
      } catch (const std::exception& ex) {
        note(ex.what());
      }
    }
  };
  {
    auto e = Engine::open(o, a);
    // Set-up: an expired segment, two more, and points only in the WAL.
    ledger.ingest(*e, "old", 50, kNow - 100 * kDay);
    REQUIRE(e->flush());
    for (int i = 0; i < 2; ++i) {
      ingest_some(*e, 3);
      REQUIRE(e->flush());
    }
    ingest_some(*e, 3);
    REQUIRE_FALSE(result.refused);
    if (phase == Phase::recovery) {
      e.reset();
      arm_case(rule);
      try {
        e = Engine::open(o, a);
        ingest_some(*e, 2);
      } catch (const std::exception& ex) {
        note(ex.what());
      }
    } else {
      arm_case(rule);
      switch (phase) {
        case Phase::ingest:
          ingest_some(*e, 6);
          break;
        case Phase::flush:
          if (!e->flush()) note(e->stats().flush_error);
          ingest_some(*e, 1);
          break;
        case Phase::compaction:
          try {
            e->compact(true);
          } catch (const std::exception& ex) {
            note(ex.what());
          }
          break;
        case Phase::retention:
          try {
            e->apply_retention();
          } catch (const std::exception& ex) {
            note(ex.what());
          }
          break;
        case Phase::recovery:
          break;
      }
      ledger.check(*e, {"old"});  // queries answer right while the fault lasts
    }
    result.fired = fault::fired() > 0;
    e.reset();  // a clean stop, whatever state the engine is in
  }
  result.logged = log.lines();
  fault::clear();
  // A failed truncate after a failed write is the one case that leaves a partial record:
  // at the end of the log, which takes no more writes; the restart cuts it off.
  if (rule.call != fault::Call::truncate) check_wal_whole(dir.path());
  // The restart: every acknowledged point, every segment readable (query_range decodes every
  // block of the series it reads and checks its CRC).
  auto e = Engine::open(o, a);
  ledger.check(*e, {"old"});
  return result;
}

TEST_SUITE("unit") {
  TEST_CASE(
      "faults: every I/O call failing in turn during ingest, flush, compaction, retention and recovery") {
    FaultGuard guard;
    struct Kind {
      int error;
      bool short_write;
    };
    const fault::Call calls[] = {fault::Call::open,   fault::Call::write,     fault::Call::fsync,
                                 fault::Call::rename, fault::Call::fsync_dir, fault::Call::unlink,
                                 fault::Call::read,   fault::Call::truncate};
    std::map<fault::Call, int> fired_by_call;
    int cases = 0, fired = 0;
    for (const Phase phase :
         {Phase::ingest, Phase::flush, Phase::compaction, Phase::retention, Phase::recovery}) {
      for (const fault::Call call : calls) {
        std::vector<Kind> kinds = {{EIO, false}, {ENOSPC, false}};
        if (call == fault::Call::write) kinds.push_back({ENOSPC, true});
        for (const Kind kind : kinds) {
          // The first matching call of the phase fails, then the second, then the third:
          // different files and steps (a WAL rotation, a segment, the MANIFEST...).
          for (std::uint64_t skip = 0; skip < 3; ++skip) {
            const std::string phase_name = to_string(phase);
            const std::string call_name = fault::to_string(call);
            CAPTURE(phase_name);
            CAPTURE(call_name);
            CAPTURE(kind.error);
            CAPTURE(kind.short_write);
            CAPTURE(skip);
            const Outcome out = run_case(phase, {call, "", kind.error, kind.short_write, skip, 1});
            ++cases;
            if (!out.fired) continue;
            ++fired;
            ++fired_by_call[call];
            const auto names_it = [&](const std::string& line) {
              // A truncate fault comes with a write fault (arm_case), which may be the one that fired.
              return line.find('\n') == std::string::npos && line.find('/') != std::string::npos &&
                     (line.find(call_word(call)) != std::string::npos ||
                      (call == fault::Call::truncate && line.find("write ") != std::string::npos));
            };
            if (out.refused) {
              // One line, naming a file and the call that failed.
              CHECK_MESSAGE(names_it(out.message), out.message);
            } else {
              // It carried on; the failure was logged in one line naming the file and the call.
              std::string logged;
              for (const std::string& l : out.logged) logged += l + " | ";
              CHECK_MESSAGE(std::any_of(out.logged.begin(), out.logged.end(), names_it),
                            "nothing logged names the failure: " << logged);
            }
          }
        }
      }
    }
    MESSAGE(cases << " cases, " << fired << " with a fault injected");
    for (const fault::Call call : calls)
      CHECK_MESSAGE(fired_by_call[call] > 0,
                    "no fault injected into " << std::string(fault::to_string(call)));
  }
}

}  // namespace
}  // namespace sydra::storage
