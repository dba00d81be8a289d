// Tests cli/ingest_command.hpp (batching, answers added up with input line numbers, the
// summary) and run_ingest (cli/commands.hpp) against a canned server: exit codes, the
// request sent, line numbers translated across batches.
#include "cli/ingest_command.hpp"

#include <doctest/doctest.h>

#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "canned_server.hpp"
#include "cli/commands.hpp"

namespace sydra::cli {
namespace {

using test::CannedServer;

std::vector<IngestBatch> batches_of(const std::vector<std::string>& lines, std::size_t max_lines,
                                    std::size_t max_bytes) {
  IngestBatcher batcher(max_lines, max_bytes);
  std::vector<IngestBatch> out;
  for (const std::string& line : lines) {
    if (auto full = batcher.add(line)) out.push_back(std::move(*full));
  }
  if (auto last = batcher.finish()) out.push_back(std::move(*last));
  return out;
}

class CapturedOutput {
 public:
  CapturedOutput()
      : out_(std::cout.rdbuf(captured_out_.rdbuf())), err_(std::cerr.rdbuf(captured_err_.rdbuf())) {}
  ~CapturedOutput() {
    std::cout.rdbuf(out_);
    std::cerr.rdbuf(err_);
  }
  CapturedOutput(const CapturedOutput&) = delete;
  CapturedOutput& operator=(const CapturedOutput&) = delete;
  std::string out() const { return captured_out_.str(); }
  std::string err() const { return captured_err_.str(); }

 private:
  std::ostringstream captured_out_, captured_err_;
  std::streambuf* out_;
  std::streambuf* err_;
};

// A file under /tmp holding `text`, removed at the end of the scope.
class TempFile {
 public:
  explicit TempFile(const std::string& text) {
    char name[] = "/tmp/sydra-ingest-test-XXXXXX";
    const int fd = ::mkstemp(name);
    REQUIRE(fd >= 0);
    ::close(fd);
    path_ = name;
    std::ofstream(path_, std::ios::binary) << text;
  }
  ~TempFile() { std::remove(path_.c_str()); }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

TEST_SUITE("unit") {
  TEST_CASE("batches hold at most max_lines lines, whole, numbered from the input") {
    const auto batches = batches_of({"a", "", "c", "d", "e"}, 2, 1 << 20);
    REQUIRE(batches.size() == 3);
    CHECK(batches[0].body == "a\n\n");
    CHECK(batches[0].first_line == 1);
    CHECK(batches[0].lines == 2);
    CHECK(batches[1].body == "c\nd\n");
    CHECK(batches[1].first_line == 3);
    CHECK(batches[2].body == "e\n");
    CHECK(batches[2].first_line == 5);
    CHECK(batches[2].lines == 1);
  }

  TEST_CASE("batches hold at most max_bytes bytes; a longer line goes alone") {
    const std::string long_line(50, 'x');
    const auto batches = batches_of({"aaaa", "bbbb", long_line, "cc"}, 100, 9);
    REQUIRE(batches.size() == 4);
    CHECK(batches[0].body == "aaaa\n");  // "aaaa\nbbbb\n" is 10 bytes
    CHECK(batches[1].body == "bbbb\n");
    CHECK(batches[2].body == long_line + "\n");
    CHECK(batches[2].first_line == 3);
    CHECK(batches[3].body == "cc\n");
    CHECK(batches[3].first_line == 4);
    for (const IngestBatch& b : batches) CHECK((b.body.size() <= 9 || b.lines == 1));
  }

  TEST_CASE("a batch may fill max_bytes exactly") {
    const auto batches = batches_of({"aaaa", "bbbb", "c"}, 100, 10);
    REQUIRE(batches.size() == 2);
    CHECK(batches[0].body == "aaaa\nbbbb\n");
    CHECK(batches[1].first_line == 3);
  }

  TEST_CASE("no input, no batch") {
    CHECK(batches_of({}, 10, 10).empty());
  }

  TEST_CASE("answers add up and their line numbers move to input line numbers") {
    IngestSummary summary;
    std::string why;
    REQUIRE(add_ingest_answer(
        summary, R"({"ingested":3,"rejected":1,"errors":[{"line":2,"error":"missing \"ts\""}]})", 1, why));
    REQUIRE(add_ingest_answer(
        summary, R"({"ingested":1,"rejected":2,"errors":[{"line":1,"error":"a"},{"line":4,"error":"b"}]})",
        101, why));
    CHECK(summary.ingested == 4);
    CHECK(summary.rejected == 3);
    CHECK(summary.batches == 2);
    REQUIRE(summary.errors.size() == 3);
    CHECK(summary.errors[0].line == 2);
    CHECK(summary.errors[1].line == 101);
    CHECK(summary.errors[2].line == 104);
    CHECK(summary.errors[2].error == "b");
    CHECK(summary.unreported_rejections == 0);
    CHECK(format_ingest_summary(summary) ==
          "ingested 4, rejected 3 (2 requests)\n"
          "  line 2: missing \"ts\"\n"
          "  line 101: a\n"
          "  line 104: b\n");
  }

  TEST_CASE("rejections the daemon did not list are counted in the summary") {
    IngestSummary summary;
    std::string why;
    REQUIRE(add_ingest_answer(summary, R"({"ingested":0,"rejected":12,"errors":[{"line":1,"error":"x"}]})", 1,
                              why));
    CHECK(summary.unreported_rejections == 11);
    CHECK(format_ingest_summary(summary).find("... and 11 more rejected lines not listed") !=
          std::string::npos);
    // An answer with only "ingested" (the upstream shape) is enough.
    REQUIRE(add_ingest_answer(summary, R"({"ingested":5})", 1, why));
    CHECK(summary.ingested == 5);
  }

  TEST_CASE("the summary keeps at most kMaxErrors listed errors") {
    IngestSummary summary;
    std::string why;
    std::string answer = R"({"ingested":0,"rejected":60,"errors":[)";
    for (int i = 1; i <= 60; ++i)
      answer += std::string(i > 1 ? "," : "") + R"({"line":)" + std::to_string(i) + R"(,"error":"e"})";
    answer += "]}";
    REQUIRE(add_ingest_answer(summary, answer, 1, why));
    CHECK(summary.errors.size() == IngestSummary::kMaxErrors);
    CHECK(summary.unreported_rejections == 60 - IngestSummary::kMaxErrors);
  }

  TEST_CASE("answers of the wrong shape are refused with a reason and change nothing") {
    for (const char* bad :
         {"", "[]", "not json", R"({"rejected":1})", R"({"ingested":-1})", R"({"ingested":"1"})",
          R"({"ingested":1,"errors":{}})", R"({"ingested":1,"errors":[{"line":0,"error":"x"}]})",
          R"({"ingested":1,"errors":[{"line":1}]})"}) {
      IngestSummary summary;
      std::string why;
      CAPTURE(bad);
      CHECK_FALSE(add_ingest_answer(summary, bad, 1, why));
      CHECK_FALSE(why.empty());
      CHECK(summary.batches == 0);
      CHECK(summary.ingested == 0);
    }
  }

  TEST_CASE("run_ingest: every line stored, exit 0, NDJSON posted to /api/v1/ingest") {
    CannedServer server(CannedServer::response(200, R"({"ingested":2,"rejected":0,"errors":[]})"));
    TempFile file("{\"series\":\"m\",\"ts\":1,\"value\":1}\n{\"series\":\"m\",\"ts\":2,\"value\":2}\n");
    IngestOptions options;
    options.url = server.url();
    options.file = file.path();
    options.token = "t0k";
    CapturedOutput output;
    CHECK(run_ingest(options) == kExitOk);
    CHECK(output.out() == "ingested 2, rejected 0 (1 request)\n");
    CHECK(output.err().empty());
    const std::string request = server.last_request();
    CHECK(request.rfind("POST /api/v1/ingest HTTP/1.1", 0) == 0);
    CHECK(request.find("application/x-ndjson") != std::string::npos);
    CHECK(request.find("Bearer t0k") != std::string::npos);
  }

  TEST_CASE("run_ingest: rejected lines are listed with input line numbers across batches, exit 5") {
    // Every batch gets the same answer: its line 2 rejected.
    CannedServer server(
        CannedServer::response(200, R"({"ingested":2,"rejected":1,"errors":[{"line":2,"error":"bad"}]})"));
    TempFile file("l1\nl2\nl3\nl4\nl5\nl6\nl7");  // the last line without '\n'
    IngestOptions options;
    options.url = server.url();
    options.file = file.path();
    options.batch_lines = 3;
    CapturedOutput output;
    CHECK(run_ingest(options) == kExitRejected);
    CHECK(output.out() ==
          "ingested 6, rejected 3 (3 requests)\n"
          "  line 2: bad\n"
          "  line 5: bad\n"
          "  line 8: bad\n");  // the canned answer names a line 2 the last batch does not have
  }

  TEST_CASE("run_ingest: an HTTP error names the lines of the batch, exit 4") {
    CannedServer server(
        CannedServer::response(413, R"({"error":"a line is longer than max_line_bytes=65536"})"));
    TempFile file("a\nb\n");
    IngestOptions options;
    options.url = server.url();
    options.file = file.path();
    CapturedOutput output;
    CHECK(run_ingest(options) == kExitHttpError);
    CHECK(output.err().find("HTTP 413 for lines 1-2: a line is longer than max_line_bytes=65536") !=
          std::string::npos);
    CHECK(output.out() == "ingested 0, rejected 0 (0 requests)\n");
  }

  TEST_CASE("run_ingest: no daemon, exit 3; no file, exit 2") {
    CannedServer refused("", CannedServer::Behaviour::not_listening);
    TempFile file("a\n");
    IngestOptions options;
    options.url = refused.url();
    options.file = file.path();
    {
      CapturedOutput output;
      CHECK(run_ingest(options) == kExitUnreachable);
      CHECK(output.err().find("127.0.0.1:" + std::to_string(refused.port())) != std::string::npos);
    }
    options.file = "/nonexistent/input.ndjson";
    CapturedOutput output;
    CHECK(run_ingest(options) == kExitUsage);
    CHECK(output.err().find("/nonexistent/input.ndjson") != std::string::npos);
  }
}

}  // namespace
}  // namespace sydra::cli
