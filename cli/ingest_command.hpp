// The parts of `sydradb ingest` that need no server (cli/ingest_command.cpp): cutting the
// input into request bodies and adding up the daemon's answers, with line numbers in the
// input rather than in each request.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sydra::cli {

// One request body: whole input lines, each ending in '\n', starting at input line
// `first_line` (1-based). Blank lines are kept, so line k of the body is input line
// first_line + k - 1.
struct IngestBatch {
  std::string body;
  std::uint64_t first_line = 1;
  std::uint64_t lines = 0;
};

// Cuts input lines into batches of at most `max_lines` lines and `max_bytes` bytes; a line
// longer than max_bytes goes alone (the daemon then judges it).
class IngestBatcher {
 public:
  IngestBatcher(std::size_t max_lines, std::size_t max_bytes);

  // Adds the next input line (without its '\n'). When it does not fit in the current batch,
  // that batch is returned, full, and the line starts the next one.
  std::optional<IngestBatch> add(std::string_view line);
  // The last batch, if it holds any line.
  std::optional<IngestBatch> finish();

 private:
  std::size_t max_lines_;
  std::size_t max_bytes_;
  IngestBatch current_;
  std::uint64_t next_line_ = 1;
};

struct IngestLineReport {
  std::uint64_t line = 0;  // in the input
  std::string error;
};

struct IngestSummary {
  std::uint64_t ingested = 0;
  std::uint64_t rejected = 0;
  std::uint64_t batches = 0;                // answered with 200
  std::vector<IngestLineReport> errors;     // the first kMaxErrors, as the daemon reported them
  std::uint64_t unreported_rejections = 0;  // rejected lines whose error the daemon did not list
  static constexpr std::size_t kMaxErrors = 50;
};

// Adds one batch's answer, {"ingested": N, "rejected": M, "errors": [{"line": k, "error":
// "..."}]}, for the batch starting at input line `first_line`. Returns false and says why in
// `why` (summary untouched) when the body is not that document.
bool add_ingest_answer(IngestSummary& summary, std::string_view body, std::uint64_t first_line,
                       std::string& why);

// "ingested N, rejected M (B requests)", then one line per reported error ("  line K: ...").
std::string format_ingest_summary(const IngestSummary& summary);

}  // namespace sydra::cli
