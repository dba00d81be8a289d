// parse_bench: NDJSON ingest parser throughput on one core (server/storage/ingest_parser.hpp).
//
//   parse_bench [--batch LINES] [--series N] [--seconds S] [--json] [--smoke]
//
// Builds one body of --batch lines like
//   {"series":"cpu.load","ts":1700000000000,"tags":{"host":"h17","dc":"eu"},"value":0.75}
// cycling over --series distinct series (1 = every line hits the last-series cache; N > 1
// changes series on every line, so every line sorts and hashes its tags), then parses it
// over and over for --seconds and reports lines/s and MB/s per second of wall time and per
// second of this thread's CPU time (on a shared machine the second is the parser's speed).
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "server/storage/ingest_parser.hpp"

namespace {

struct Options {
  std::size_t batch = 1000;
  std::size_t series = 1;
  double seconds = 2;
  bool json = false;
};

[[noreturn]] void usage() {
  std::fprintf(stderr, "usage: parse_bench [--batch LINES] [--series N] [--seconds S] [--json] [--smoke]\n");
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto next = [&]() -> const char* {
      if (i + 1 >= argc) usage();
      return argv[++i];
    };
    if (arg == "--batch") {
      options.batch = std::strtoull(next(), nullptr, 10);
    } else if (arg == "--series") {
      options.series = std::strtoull(next(), nullptr, 10);
    } else if (arg == "--seconds") {
      options.seconds = std::strtod(next(), nullptr);
    } else if (arg == "--json") {
      options.json = true;
    } else if (arg == "--smoke") {
      options.batch = 100;
      options.series = 7;
      options.seconds = 0.05;
    } else {
      usage();
    }
  }
  if (options.batch == 0 || options.series == 0 || !(options.seconds > 0)) usage();

  std::string body;
  for (std::size_t i = 0; i < options.batch; ++i) {
    const std::size_t s = i % options.series;
    char line[256];
    std::snprintf(
        line, sizeof line,
        "{\"series\":\"cpu.load\",\"ts\":%lld,\"tags\":{\"host\":\"h%zu\",\"dc\":\"eu\"},\"value\":%.2f}\n",
        1700000000000LL + static_cast<long long>(i), s, static_cast<double>(i % 100) / 100.0);
    body += line;
  }

  sydra::storage::NdjsonParser parser;
  sydra::storage::ParsedBatch batch;
  using Clock = std::chrono::steady_clock;
  const auto cpu_seconds = [] {
    timespec ts{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
  };
  const double cpu_start = cpu_seconds();
  const auto start = Clock::now();
  const auto deadline = start + std::chrono::duration<double>(options.seconds);
  std::size_t rounds = 0;
  do {
    parser.parse(body, batch);
    if (batch.rejected != 0 || batch.points.size() != options.batch) {
      std::fprintf(stderr, "parse_bench: the body did not parse cleanly\n");
      return 1;
    }
    ++rounds;
  } while (Clock::now() < deadline);
  const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  const double cpu = std::max(cpu_seconds() - cpu_start, 1e-9);
  const auto lines = static_cast<double>(rounds * options.batch);
  const auto bytes = static_cast<double>(rounds * body.size());
  if (options.json) {
    std::printf(
        "{\"batch\":%zu,\"series\":%zu,\"seconds\":%.3f,\"cpu_seconds\":%.3f,\"lines_per_second\":%.0f,"
        "\"lines_per_cpu_second\":%.0f,\"mb_per_cpu_second\":%.1f,\"ns_per_line_cpu\":%.1f}\n",
        options.batch, options.series, elapsed, cpu, lines / elapsed, lines / cpu, bytes / cpu / 1e6,
        cpu * 1e9 / lines);
  } else {
    std::printf(
        "batch %zu lines (%zu bytes), %zu series: %.2f M lines/s wall; per CPU second %.2f M lines/s, "
        "%.0f MB/s, %.0f ns/line (CPU %.0f %% of wall)\n",
        options.batch, body.size(), options.series, lines / elapsed / 1e6, lines / cpu / 1e6,
        bytes / cpu / 1e6, cpu * 1e9 / lines, 100.0 * cpu / elapsed);
  }
  return 0;
}
