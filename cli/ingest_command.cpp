// `sydradb ingest`: NDJSON from a file or standard input to the running daemon's
// POST /api/v1/ingest, in batches of whole lines, and a summary with input line numbers.
#include "cli/ingest_command.hpp"

#include <sys/types.h>

#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <memory>
#include <thread>

#include <nlohmann/json.hpp>

#include "cli/commands.hpp"
#include "cli/http_client.hpp"

namespace sydra::cli {

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

  summary.ingested += ingested;
  summary.rejected += rejected;
  ++summary.batches;
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
  return out;
}

namespace {

constexpr int kMaxBusyRetries = 10;
constexpr std::chrono::milliseconds kBusyRetryDelay{500};

void print_error(const std::string& error) {
  std::cerr << "sydradb ingest: " << error << std::endl;
}

// The daemon's {"error": "..."} message, or the start of the body.
std::string error_text(const HttpResponse& response) {
  const nlohmann::json doc = nlohmann::json::parse(response.body, nullptr, false);
  if (doc.is_object() && doc.contains("error") && doc["error"].is_string())
    return doc["error"].get<std::string>();
  return response.body.substr(0, 200);
}

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
  const std::optional<std::string> resolved = client_token("ingest", options.token, options.timeout_seconds);
  if (!resolved) return kExitUsage;
  const std::string& token = *resolved;
  if (options.batch_lines == 0 || options.batch_bytes == 0) {
    print_error("--batch-lines and --batch-bytes must be positive");
    return kExitUsage;
  }
  std::unique_ptr<std::FILE, FileCloser> input;
  if (options.file.empty() || options.file == "-") {
    input.reset(stdin);
  } else {
    input.reset(std::fopen(options.file.c_str(), "rb"));
    if (!input) {
      print_error("cannot open " + options.file + ": " + std::strerror(errno));
      return kExitUsage;
    }
  }

  IngestSummary summary;
  // Sends one batch; an exit code other than kExitOk ends the run.
  const auto send = [&](const IngestBatch& batch) -> int {
    HttpResponse response;
    // 503 means the daemon stored nothing because its memtable is full: wait and send the
    // batch again, kMaxBusyRetries times at most.
    for (int attempt = 0;; ++attempt) {
      try {
        response = http_request("POST", options.url, "/api/v1/ingest", token, batch.body,
                                "application/x-ndjson", options.timeout_seconds);
      } catch (const Unreachable& e) {
        print_error(std::string(e.what()) + " (while sending " + lines_text(batch) + ")");
        return kExitUnreachable;
      } catch (const std::invalid_argument& e) {
        print_error(e.what());
        return kExitUsage;
      }
      if (response.status != 503 || attempt == kMaxBusyRetries) break;
      std::this_thread::sleep_for(kBusyRetryDelay);
    }
    if (response.status != 200) {
      print_error(options.url + ": HTTP " + std::to_string(response.status) + " for " + lines_text(batch) +
                  ": " + error_text(response));
      return kExitHttpError;
    }
    std::string why;
    if (!add_ingest_answer(summary, response.body, batch.first_line, why)) {
      print_error(options.url + ": unexpected answer for " + lines_text(batch) + ": " + why);
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
    print_error("reading " + (options.file.empty() ? std::string("standard input") : options.file) + ": " +
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
