// `sydradb ingest`: NDJSON from a file or standard input to the running daemon's
// POST /api/v1/ingest, in batches of whole lines, and a summary with input line numbers.
#include "cli/ingest_command.hpp"

#include <sys/types.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <iostream>
#include <memory>
#include <thread>

#include <nlohmann/json.hpp>

#include "cli/client.hpp"
#include "cli/commands.hpp"
#include "cli/query_command.hpp"

namespace sydra::cli {

namespace {

std::string unit_name(std::string_view unit) {
  if (unit == "s") return "seconds";
  if (unit == "ms") return "milliseconds";
  if (unit == "us") return "microseconds";
  if (unit == "ns") return "nanoseconds";
  return std::string(unit);
}

// A "ts" in `unit` as milliseconds (rounded down), as the daemon reads it; nullopt when out
// of range.
std::optional<std::int64_t> to_millis(std::int64_t ts, std::string_view unit) {
  const auto floor_div = [](std::int64_t a, std::int64_t b) { return a / b - (a % b != 0 && a < 0 ? 1 : 0); };
  if (unit == "s") {
    std::int64_t ms = 0;
    if (__builtin_mul_overflow(ts, std::int64_t{1000}, &ms)) return std::nullopt;
    return ms;
  }
  if (unit == "us") return floor_div(ts, 1000);
  if (unit == "ns") return floor_div(ts, 1'000'000);
  return ts;
}

}  // namespace

IngestBatcher::IngestBatcher(std::size_t max_lines, std::size_t max_bytes)
    : max_lines_(max_lines == 0 ? 1 : max_lines), max_bytes_(max_bytes == 0 ? 1 : max_bytes) {}

std::optional<IngestBatch> IngestBatcher::add(std::string_view line) {
  std::optional<IngestBatch> full;
  if (current_.lines > 0 &&
      (current_.lines + 1 > max_lines_ || current_.body.size() + line.size() + 1 > max_bytes_)) {
    full = std::move(current_);
    current_ = IngestBatch{};
  }
  if (current_.lines == 0) current_.first_line = next_line_;
  current_.body.append(line);
  current_.body.push_back('\n');
  ++current_.lines;
  ++next_line_;
  return full;
}

std::optional<IngestBatch> IngestBatcher::finish() {
  if (current_.lines == 0) return std::nullopt;
  std::optional<IngestBatch> last = std::move(current_);
  current_ = IngestBatch{};
  return last;
}

std::pair<IngestBatch, IngestBatch> split_batch(const IngestBatch& batch) {
  const std::uint64_t first_lines = batch.lines / 2;
  std::size_t cut = 0;
  for (std::uint64_t i = 0; i < first_lines; ++i) cut = batch.body.find('\n', cut) + 1;
  IngestBatch first{batch.body.substr(0, cut), batch.first_line, first_lines};
  IngestBatch second{batch.body.substr(cut), batch.first_line + first_lines, batch.lines - first_lines};
  return {std::move(first), std::move(second)};
}

void IngestSummary::reject(std::uint64_t line, std::string error) {
  ++rejected;
  if (errors.size() < kMaxErrors) {
    errors.push_back({line, std::move(error)});
  } else {
    ++unreported_rejections;
  }
}

bool add_ingest_answer(IngestSummary& summary, std::string_view body, std::uint64_t first_line,
                       std::string& why) {
  const nlohmann::json doc = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (!doc.is_object()) {
    why = "the answer is not a JSON object";
    return false;
  }
  const auto count = [&](const char* key, std::uint64_t& out) {
    const auto it = doc.find(key);
    if (it == doc.end() || !it->is_number_unsigned()) {
      // nlohmann reads a non-negative integer as unsigned.
      why = std::string("the answer has no count \"") + key + "\"";
      return false;
    }
    out = it->get<std::uint64_t>();
    return true;
  };
  std::uint64_t ingested = 0;
  std::uint64_t rejected = 0;
  if (!count("ingested", ingested)) return false;
  if (doc.contains("rejected") && !count("rejected", rejected)) return false;

  std::vector<IngestLineReport> reports;
  if (const auto it = doc.find("errors"); it != doc.end()) {
    if (!it->is_array()) {
      why = "\"errors\" in the answer is not an array";
      return false;
    }
    for (const nlohmann::json& e : *it) {
      const auto line = e.is_object() ? e.find("line") : e.end();
      const auto text = e.is_object() ? e.find("error") : e.end();
      if (line == e.end() || text == e.end() || !line->is_number_unsigned() || !text->is_string() ||
          line->get<std::uint64_t>() == 0) {
        why = "an entry of \"errors\" is not {\"line\": N, \"error\": \"...\"}";
        return false;
      }
      reports.push_back({first_line + line->get<std::uint64_t>() - 1, text->get<std::string>()});
    }
  }

  std::vector<IngestUnitWarning> warnings;
  if (const auto it = doc.find("warnings"); it != doc.end()) {
    if (!it->is_array()) {
      why = "\"warnings\" in the answer is not an array";
      return false;
    }
    for (const nlohmann::json& w : *it) {
      const auto line = w.is_object() ? w.find("line") : w.end();
      const auto lines = w.is_object() ? w.find("lines") : w.end();
      const auto ts = w.is_object() ? w.find("ts") : w.end();
      const auto unit = w.is_object() ? w.find("looks_like") : w.end();
      if (line == w.end() || lines == w.end() || ts == w.end() || unit == w.end() ||
          !line->is_number_unsigned() || line->get<std::uint64_t>() == 0 || !lines->is_number_unsigned() ||
          !ts->is_number_integer() || !unit->is_string()) {
        why =
            "an entry of \"warnings\" is not {\"line\": N, \"lines\": N, \"ts\": N, \"looks_like\": \"...\"}";
        return false;
      }
      warnings.push_back({unit->get<std::string>(), first_line + line->get<std::uint64_t>() - 1,
                          ts->get<std::int64_t>(), lines->get<std::uint64_t>()});
    }
  }

  summary.ingested += ingested;
  summary.rejected += rejected;
  ++summary.batches;
  for (IngestUnitWarning& w : warnings) {
    const auto same = std::find_if(summary.warnings.begin(), summary.warnings.end(),
                                   [&](const IngestUnitWarning& o) { return o.looks_like == w.looks_like; });
    if (same == summary.warnings.end()) {
      summary.warnings.push_back(std::move(w));
    } else {
      same->lines += w.lines;
    }
  }
  const std::uint64_t listed = reports.size();
  for (IngestLineReport& r : reports) {
    if (summary.errors.size() < IngestSummary::kMaxErrors) {
      summary.errors.push_back(std::move(r));
    } else {
      ++summary.unreported_rejections;
    }
  }
  if (rejected > listed) summary.unreported_rejections += rejected - listed;
  return true;
}

std::string format_ingest_summary(const IngestSummary& summary) {
  std::string out = "ingested " + std::to_string(summary.ingested) + ", rejected " +
                    std::to_string(summary.rejected) + " (" + std::to_string(summary.batches) +
                    (summary.batches == 1 ? " request)\n" : " requests)\n");
  for (const IngestLineReport& r : summary.errors)
    out += "  line " + std::to_string(r.line) + ": " + r.error + '\n';
  if (summary.unreported_rejections > 0) {
    out += "  ... and " + std::to_string(summary.unreported_rejections) + " more rejected line" +
           (summary.unreported_rejections == 1 ? "" : "s") + " not listed\n";
  }
  for (const IngestUnitWarning& w : summary.warnings) {
    out += "  warning: line " + std::to_string(w.line);
    if (w.lines > 1) out += " and " + std::to_string(w.lines - 1) + " more";
    out += ": \"ts\" " + std::to_string(w.ts) + " looks like " + unit_name(w.looks_like) +
           " but is read as " + unit_name(summary.precision);
    if (const auto ms = to_millis(w.ts, summary.precision)) out += " (" + format_utc_millis(*ms) + ")";
    out += "; pass --precision " + w.looks_like + ", or send " + unit_name(summary.precision) + "\n";
  }
  if (summary.stopped_at_line > 0)
    out += "  stopped at line " + std::to_string(summary.stopped_at_line) +
           ": it and the lines after it are not stored\n";
  return out;
}

namespace {

constexpr int kMaxBusyRetries = 10;
constexpr std::chrono::milliseconds kBusyRetryDelay{500};

std::string lines_text(const IngestBatch& batch) {
  if (batch.lines == 1) return "line " + std::to_string(batch.first_line);
  return "lines " + std::to_string(batch.first_line) + "-" +
         std::to_string(batch.first_line + batch.lines - 1);
}

struct FileCloser {
  void operator()(std::FILE* f) const noexcept {
    if (f != stdin) std::fclose(f);
  }
};

}  // namespace

int run_ingest(const IngestOptions& options) {
  const std::optional<DaemonClient> client =
      DaemonClient::open("ingest", options.url, options.token, options.timeout_seconds);
  if (!client) return kExitUsage;
  if (options.batch_lines == 0 || options.batch_bytes == 0) {
    client->fail("--batch-lines and --batch-bytes must be positive");
    return kExitUsage;
  }
  std::string path = "/api/v1/ingest";
  if (!options.precision.empty()) {
    if (options.precision != "s" && options.precision != "ms" && options.precision != "us" &&
        options.precision != "ns") {
      client->fail("unknown --precision '" + options.precision + "': expected s, ms, us or ns");
      return kExitUsage;
    }
    path += "?precision=" + options.precision;
  }
  std::unique_ptr<std::FILE, FileCloser> input;
  if (options.file.empty() || options.file == "-") {
    input.reset(stdin);
  } else {
    input.reset(std::fopen(options.file.c_str(), "rb"));
    if (!input) {
      client->fail("cannot open " + options.file + ": " + std::strerror(errno));
      return kExitUsage;
    }
  }

  IngestSummary summary;
  if (!options.precision.empty()) summary.precision = options.precision;
  // Sends one batch; an exit code other than kExitOk ends the run (summary.stopped_at_line
  // then says where).
  const std::function<int(const IngestBatch&)> send = [&](const IngestBatch& batch) -> int {
    HttpResponse response;
    // 503 means the daemon stored nothing because its memtable is full: wait and send the
    // batch again, kMaxBusyRetries times at most.
    for (int attempt = 0;; ++attempt) {
      try {
        response = client->send("POST", path, batch.body, "application/x-ndjson");
      } catch (const Unreachable& e) {
        client->fail(std::string(e.what()) + " (while sending " + lines_text(batch) + ")");
        summary.stopped_at_line = batch.first_line;
        return kExitUnreachable;
      } catch (const std::invalid_argument& e) {
        client->fail(e.what());
        return kExitUsage;
      }
      if (response.status != 503 || attempt == kMaxBusyRetries) break;
      std::this_thread::sleep_for(kBusyRetryDelay);
    }
    // 413: a line over max_line_bytes (a daemon that refuses the whole request for it), or
    // a body over max_body_bytes. Halve the batch until the line that does not fit is alone,
    // reject it, and go on with the others.
    if (response.status == 413) {
      if (batch.lines == 1) {
        summary.reject(batch.first_line, "refused by the daemon: " + error_text(response.body));
        return kExitOk;
      }
      const auto [first, second] = split_batch(batch);
      if (const int code = send(first); code != kExitOk) return code;
      return send(second);
    }
    if (response.status != 200) {
      client->fail(client->describe(response) + " (for " + lines_text(batch) + ")");
      summary.stopped_at_line = batch.first_line;
      return kExitHttpError;
    }
    std::string why;
    if (!add_ingest_answer(summary, response.body, batch.first_line, why)) {
      client->fail(client->url() + ": unexpected answer for " + lines_text(batch) + ": " + why);
      summary.stopped_at_line = batch.first_line;
      return kExitHttpError;
    }
    return kExitOk;
  };

  IngestBatcher batcher(options.batch_lines, options.batch_bytes);
  char* line = nullptr;
  std::size_t capacity = 0;
  int code = kExitOk;
  for (;;) {
    const ssize_t n = ::getline(&line, &capacity, input.get());
    if (n < 0) break;
    std::size_t size = static_cast<std::size_t>(n);
    if (size > 0 && line[size - 1] == '\n') --size;
    if (auto full = batcher.add(std::string_view(line, size))) {
      if ((code = send(*full)) != kExitOk) break;
    }
  }
  std::free(line);
  if (code == kExitOk && std::ferror(input.get())) {
    client->fail("reading " + (options.file.empty() ? std::string("standard input") : options.file) + ": " +
                 std::strerror(errno));
    code = kExitUsage;
  }
  if (code == kExitOk) {
    if (auto last = batcher.finish()) code = send(*last);
  }

  std::cout << format_ingest_summary(summary) << std::flush;
  if (code != kExitOk) return code;
  return summary.rejected > 0 ? kExitRejected : kExitOk;
}

}  // namespace sydra::cli
