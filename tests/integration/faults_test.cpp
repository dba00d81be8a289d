// Faults through the real daemon (docs/storage.md, "Faults"):
//   - a full disk, for real: data_dir on a small tmpfs (needs mount(2), i.e. root; skipped
//     with a message where the test may not mount — tests/storage/faults_test.cpp covers
//     disk full with injected ENOSPC everywhere). Ingest fills it: 507 with Retry-After and
//     a JSON message naming data_dir; /status, /metrics and one log line say so; queries go
//     on; the tmpfs is grown and writes resume by themselves; after a restart every
//     acknowledged point is there, exactly once;
//   - crash points (suite `stress`): kill -9 at random moments while the daemon ingests,
//     flushes, compacts and applies retention, again and again on one data directory;
//     each restart finds exactly the acknowledged points and leaves no orphan file.
//     SYDRA_STRESS_SECONDS sets the duration (default 2 s).
#include <doctest/doctest.h>
#include <sys/mount.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "daemon_harness.hpp"

namespace sydra::itest {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

// `count` points of `series` from ts `from` (value = ts / 2).
std::string batch(std::string_view series, std::int64_t from, int count) {
  std::string body;
  char line[160];
  for (int i = 0; i < count; ++i) {
    const std::int64_t ts = from + i;
    std::snprintf(line, sizeof line, "{\"series\":\"%.*s\",\"ts\":%lld,\"value\":%.17g}\n",
                  static_cast<int>(series.size()), series.data(), static_cast<long long>(ts),
                  static_cast<double>(ts) / 2);
    body += line;
  }
  return body;
}

HttpResponse post(Connection& c, std::string_view target, std::string_view body) {
  return c.roundtrip(make_request("POST", target, {"Content-Type: application/json"}, body));
}

// Every point of `series`, ts → value.
std::map<std::int64_t, double> points_of(std::uint16_t port, std::string_view series) {
  Connection c(port);
  const json request = {{"series", series}, {"start", 0}, {"end", INT64_MAX}};
  const HttpResponse r = post(c, "/api/v1/query/range", request.dump());
  REQUIRE_MESSAGE(r.status == 200, r.body);
  std::map<std::int64_t, double> out;
  for (const json& p : r.json()) {
    const std::int64_t ts = p.at("ts").get<std::int64_t>();
    CHECK_MESSAGE(!out.contains(ts), series << " answers ts " << ts << " twice");
    out[ts] = p.at("value").get<double>();
  }
  return out;
}

std::size_t count_lines(const std::string& log, std::string_view needle) {
  std::size_t n = 0;
  for (const std::string& l : lines_of(log)) n += contains(l, needle) ? 1 : 0;
  return n;
}

// Appends to `path` until the filesystem has no room left.
void fill_up(const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "ab");
  REQUIRE(f != nullptr);
  const std::string chunk(4096, 'x');
  while (std::fwrite(chunk.data(), 1, chunk.size(), f) == chunk.size() && std::fflush(f) == 0) {
  }
  std::fclose(f);
}

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

TEST_SUITE("integration") {
  TEST_CASE("faults: a full disk answers 507, says so once, and takes writes again once there is room") {
    TempDir base;
    const std::string mnt = base.file("fs");
    fs::create_directory(mnt);
    if (::mount("sydra-test", mnt.c_str(), "tmpfs", 0, "size=16m") != 0) {
      MESSAGE("skipped: cannot mount a tmpfs here (" << std::strerror(errno)
                                                     << "); tests/storage/faults_test.cpp covers disk full");
      return;
    }
    struct Unmount {
      std::string path;
      ~Unmount() { ::umount2(path.c_str(), MNT_DETACH); }
    } unmount{mnt};
    const std::string data = mnt + "/data";
    // Most of it taken already: 1.5 MiB left, which a few dozen requests fill.
    fill_up(mnt + "/filler");
    fs::resize_file(mnt + "/filler", fs::file_size(mnt + "/filler") - (3u << 19));
    const auto options = [&] {
      return DaemonOptions().set(
          {"data_dir=" + data, "fsync=always", "flush_interval_ms=200", "compaction_interval_ms=0"});
    };

    std::map<std::int64_t, double> acked;
    std::int64_t next_ts = 1;
    const auto send = [&](Connection& c, int count) {
      const HttpResponse r = post(c, "/api/v1/ingest", batch("df", next_ts, count));
      if (r.status == 200)
        for (std::int64_t ts = next_ts; ts < next_ts + count; ++ts) acked[ts] = static_cast<double>(ts) / 2;
      next_ts += count;
      return r;
    };
    {
      Daemon d(options());
      Connection c(d.port());
      HttpResponse full;
      const auto deadline = Clock::now() + patience(60s);
      while (Clock::now() < deadline) {
        full = send(c, 2000);
        if (full.status != 200) break;
      }
      REQUIRE_MESSAGE(full.status == 507, full.status << " " << full.body);
      CHECK(full.header("Retry-After") == "1");
      const std::string message = full.json().at("error").get<std::string>();
      CHECK_MESSAGE(contains(message, "is full"), message);
      CHECK_MESSAGE(contains(message, data), message);
      CHECK_MESSAGE(contains(message, "No space left on device"), message);
      REQUIRE(!acked.empty());

      // The daemon frees space by itself (a flush moves the WAL into smaller segments and the
      // checkpoint deletes it): take what is left, so that the disk stays full.
      for (int i = 0; i < 3; ++i) {
        fill_up(mnt + "/filler");
        std::this_thread::sleep_for(300ms);
      }
      // More requests while full: refused the same way, logged once.
      for (int i = 0; i < 20; ++i) CHECK(send(c, 2000).status == 507);
      const json st = http_get(d.control_port(), "/status").json();
      CHECK(st.at("storage").at("writes") == "disk_full");
      CHECK(contains(st.at("storage").at("write_error").get<std::string>(), "No space left on device"));
      CHECK(metric(d.control_port(), "sydradb_disk_full") == 1);
      CHECK(metric(d.control_port(), "sydradb_ingest_disk_full_total") >= 21);
      CHECK(points_of(d.port(), "df") == acked);  // queries go on
      CHECK(count_lines(d.log(), "disk full under") == 1);

      // Space is back: writes resume without a restart.
      REQUIRE(::mount("sydra-test", mnt.c_str(), "tmpfs", MS_REMOUNT, "size=64m") == 0);
      const auto back = Clock::now();
      while (send(c, 100).status != 200) {
        REQUIRE(seconds_since(back) < 10 * kSlowdown);
        std::this_thread::sleep_for(5ms);
      }
      MESSAGE("writes resumed " << seconds_since(back) << " s after the tmpfs was grown");
      // A flush that failed for want of space is retried within 200 ms.
      const auto ok_deadline = Clock::now() + patience(5s);
      while (http_get(d.control_port(), "/status").json().at("storage").at("writes") != "ok")
        REQUIRE(Clock::now() < ok_deadline);
      CHECK(metric(d.control_port(), "sydradb_disk_full") == 0);
      for (int i = 0; i < 5; ++i) CHECK(send(c, 100).status == 200);
      CHECK(count_lines(d.log(), "disk space is back") == 1);
    }
    Daemon d(options());
    CHECK(points_of(d.port(), "df") == acked);
  }
}

// Files in a segment directory that the MANIFEST does not list (LOCK and MANIFEST aside).
std::vector<std::string> orphans(const std::string& segments) {
  std::set<std::string> listed = {"LOCK", "MANIFEST"};
  const json manifest = json::parse(read_file(segments + "/MANIFEST"));
  for (const json& n : manifest.at("segments")) {
    char name[40];
    std::snprintf(name, sizeof name, "seg-%020llu.sdb",
                  static_cast<unsigned long long>(n.get<std::uint64_t>()));
    listed.insert(name);
  }
  std::vector<std::string> out;
  for (const auto& entry : fs::directory_iterator(segments))
    if (!listed.contains(entry.path().filename().string())) out.push_back(entry.path().filename().string());
  return out;
}

TEST_SUITE("stress") {
  TEST_CASE("faults: kill -9 at random moments of ingest, flush, compaction and retention loses nothing") {
    const char* env = std::getenv("SYDRA_STRESS_SECONDS");
    const double seconds = env != nullptr ? std::atof(env) : 2.0;
    TempDir data;
    // Retention keeps 1 day; the "old" series is written 10 days back, so its segments
    // expire while the others stay.
    const std::int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                                    std::chrono::system_clock::now().time_since_epoch())
                                    .count();
    const std::int64_t old_base = now_ms - 10 * 86'400'000LL;
    const auto options = [&] {
      return DaemonOptions().set({"data_dir=" + data.path(), "fsync=always", "flush_interval_ms=20",
                                  "compaction_interval_ms=30", "retention_days=1",
                                  "retention_check_interval_ms=25"});
    };
    // The same directory with no background writes (nothing to flush, no compaction, no
    // retention): what a restart left can be looked at without racing new writes.
    const auto quiet = [&] {
      return DaemonOptions().set({"data_dir=" + data.path(), "flush_interval_ms=3600000",
                                  "compaction_interval_ms=0", "retention_days=0"});
    };
    std::mt19937_64 rng(12345);
    std::map<std::int64_t, double> acked;  // series "live"
    std::int64_t next_ts = now_ms;
    std::int64_t next_old = old_base;
    int iterations = 0;
    std::size_t leftovers_removed = 0, compactions = 0, expirations = 0;
    const auto start = Clock::now();
    // Recovery: exactly the acknowledged points (those not acknowledged may be there or
    // not; nothing never sent, nothing twice), and no file the MANIFEST does not list.
    const auto check_recovery = [&] {
      Daemon q(quiet());
      leftovers_removed += count_lines(q.log(), "removing");
      const std::map<std::int64_t, double> got = points_of(q.port(), "live");
      for (const auto& [ts, v] : acked) {
        const auto it = got.find(ts);
        REQUIRE_MESSAGE(it != got.end(), "iteration " << iterations << ": acknowledged ts " << ts << " lost");
        CHECK(it->second == v);
      }
      for (const auto& [ts, v] : got) {
        REQUIRE_MESSAGE(ts < next_ts, "a point never sent: ts " << ts);
        CHECK(v == static_cast<double>(ts) / 2);
        acked[ts] = v;  // a point that survived the crash is kept from now on
      }
      const std::vector<std::string> left = orphans(data.path() + "/segments");
      CHECK_MESSAGE(left.empty(), "iteration " << iterations << ": orphan " << (left.empty() ? "" : left[0])
                                               << "\nMANIFEST: "
                                               << read_file(data.path() + "/segments/MANIFEST") << "\nlog:\n"
                                               << q.log());
    };
    do {
      ++iterations;
      check_recovery();
      Daemon d(options());

      // Ingest (small batches: many flushes, many small segments to compact, old points
      // for retention), then kill -9 at a random moment.
      std::atomic<bool> stop{false};
      std::thread writer([&] {
        try {
          // Turns of 60 ms: "live" points, then "old" ones, so that most segments hold one
          // series and those of "old" expire as a whole.
          Connection c(d.port());
          const auto begin = Clock::now();
          while (!stop.load()) {
            if ((Clock::now() - begin) / 60ms % 2 == 1) {
              post(c, "/api/v1/ingest", batch("old", next_old, 50));
              next_old += 50;
              continue;
            }
            const std::int64_t from = next_ts;
            next_ts += 50;  // sent, whatever the answer
            const HttpResponse r = post(c, "/api/v1/ingest", batch("live", from, 50));
            if (r.status == 200)
              for (std::int64_t ts = from; ts < from + 50; ++ts) acked[ts] = static_cast<double>(ts) / 2;
          }
        } catch (const std::exception&) {
          // the daemon was killed mid-request: that batch was not acknowledged
        }
      });
      std::this_thread::sleep_for(Millis(50 + rng() % 400));
      const ExitStatus killed = d.stop(SIGKILL);
      compactions += count_lines(d.log(), "compacted");
      expirations += count_lines(d.log(), "retention dropped");
      stop = true;
      writer.join();
      CHECK(killed.signal == SIGKILL);
    } while (seconds_since(start) < seconds);
    check_recovery();
    MESSAGE(iterations << " kill -9 iterations, " << acked.size() << " points acknowledged, "
                       << leftovers_removed << " leftover files removed at restarts, " << compactions
                       << " compactions and " << expirations << " retention passes that dropped segments");
  }
}

}  // namespace
}  // namespace sydra::itest
