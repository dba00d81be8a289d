// The parts of `sydradb ingest` that need no server (cli/ingest_command.cpp): cutting the
// input into request bodies and adding up the daemon's answers, with line numbers in the
// input rather than in each request.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
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

// The two halves of a batch of two lines or more (the first has lines / 2 of them), for
// sending again after a 413: the daemon then judges fewer lines at a time.
std::pair<IngestBatch, IngestBatch> split_batch(const IngestBatch& batch);

struct IngestLineReport {
  std::uint64_t line = 0;  // in the input
  std::string error;
};

// The daemon's warning about timestamps that look like another unit than the one they are
// read in, merged over the requests.
struct IngestUnitWarning {
  std::string looks_like;   // "s", "ms", "us" or "ns"
  std::uint64_t line = 0;   // the first such line in the input
  std::int64_t ts = 0;      // its "ts", as sent
  std::uint64_t lines = 0;  // how many lines in all
};

struct IngestSummary {
  std::uint64_t ingested = 0;
  std::uint64_t rejected = 0;
  std::uint64_t batches = 0;                // answered with 200
  std::vector<IngestLineReport> errors;     // the first kMaxErrors, as the daemon reported them
  std::uint64_t unreported_rejections = 0;  // rejected lines whose error the daemon did not list
  std::vector<IngestUnitWarning> warnings;  // one per apparent unit
  std::string precision = "ms";             // the unit "ts" is read in (for the warnings)
  std::uint64_t stopped_at_line = 0;        // the run stopped: lines from here on are not stored
  static constexpr std::size_t kMaxErrors = 50;

  // A line rejected here, not by the daemon (a 413 for it alone).
  void reject(std::uint64_t line, std::string error);
};

// Adds one batch's answer, {"ingested": N, "rejected": M, "errors": [{"line": k, "error":
// "..."}], "warnings": [{"line": k, "lines": n, "ts": t, "looks_like": u, ...}]} ("rejected",
// "errors" and "warnings" optional), for the batch starting at input line `first_line`.
// Returns false and says why in `why` (summary untouched) when the body is not that document.
bool add_ingest_answer(IngestSummary& summary, std::string_view body, std::uint64_t first_line,
                       std::string& why);

// "ingested N, rejected M (B requests)", then one line per reported error ("  line K: ..."),
// one per timestamp warning, and where the run stopped if it did.
std::string format_ingest_summary(const IngestSummary& summary);

}  // namespace sydra::cli
