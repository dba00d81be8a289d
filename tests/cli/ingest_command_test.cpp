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
#include "cli_test_support.hpp"

namespace sydra::cli {
namespace {

using test::CannedServer;
using test::CapturedOutput;
using test::ScopedEnv;

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

  TEST_CASE("batches hold at most max_bytes bytes, a longer line goes alone") {
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

  TEST_CASE("run_ingest: an HTTP error names the lines of the batch and where it stopped, exit 4") {
    CannedServer server(CannedServer::response(500, R"({"error":"cannot write the WAL: disk full"})"));
    TempFile file("a\nb\n");
    IngestOptions options;
    options.url = server.url();
    options.file = file.path();
    CapturedOutput output;
    CHECK(run_ingest(options) == kExitHttpError);
    CHECK(output.err() == "sydradb ingest: " + server.url() +
                              ": HTTP 500: cannot write the WAL: disk full (for lines 1-2)\n");
    CHECK(output.out() ==
          "ingested 0, rejected 0 (0 requests)\n"
          "  stopped at line 1: it and the lines after it are not stored\n");
  }

  TEST_CASE("run_ingest: a 413 is narrowed down to single lines, each rejected alone, the run goes on") {
    // This daemon refuses everything with 413: every line ends up sent alone and rejected.
    CannedServer server(CannedServer::response(413, R"({"error":"the body is larger than max_body_bytes"})"));
    TempFile file("a\nb\nc\n");
    IngestOptions options;
    options.url = server.url();
    options.file = file.path();
    std::string out, err;
    int code = 0;
    {
      CapturedOutput output;
      code = run_ingest(options);
      out = output.out();
      err = output.err();
    }
    CHECK(code == kExitRejected);
    CHECK(out ==
          "ingested 0, rejected 3 (0 requests)\n"
          "  line 1: refused by the daemon: the body is larger than max_body_bytes\n"
          "  line 2: refused by the daemon: the body is larger than max_body_bytes\n"
          "  line 3: refused by the daemon: the body is larger than max_body_bytes\n");
    CHECK(err.empty());
    const std::string head = server.last_request() + "\r\n";  // its last header line without the end
    CHECK(head.find("\r\nContent-Length: 2\r\n") != std::string::npos);  // "c\n" alone
  }

  TEST_CASE("split_batch: halves of whole lines, numbered from the input") {
    const IngestBatch batch{"l7\nl8\nl9\n", 7, 3};
    const auto [first, second] = split_batch(batch);
    CHECK(first.body == "l7\n");
    CHECK(first.first_line == 7);
    CHECK(first.lines == 1);
    CHECK(second.body == "l8\nl9\n");
    CHECK(second.first_line == 8);
    CHECK(second.lines == 2);
  }

  TEST_CASE("timestamp warnings merge over requests and say which flag fixes them") {
    IngestSummary summary;
    std::string why;
    const std::string answer =
        R"({"ingested":2,"rejected":0,"errors":[],"warnings":[{"line":2,"lines":2,"ts":1700000000,"looks_like":"s","warning":"..."}]})";
    REQUIRE(add_ingest_answer(summary, answer, 1, why));
    REQUIRE(add_ingest_answer(summary, answer, 11, why));
    REQUIRE(summary.warnings.size() == 1);
    CHECK(summary.warnings[0].line == 2);
    CHECK(summary.warnings[0].lines == 4);
    CHECK(format_ingest_summary(summary) ==
          "ingested 4, rejected 0 (2 requests)\n"
          "  warning: line 2 and 3 more: \"ts\" 1700000000 looks like seconds but is read as milliseconds "
          "(1970-01-20T16:13:20.000Z); pass --precision s, or send milliseconds\n");
    for (const char* bad : {R"({"ingested":1,"warnings":{}})", R"({"ingested":1,"warnings":[{"line":1}]})",
                            R"({"ingested":1,"warnings":[{"line":0,"lines":1,"ts":1,"looks_like":"s"}]})"}) {
      CAPTURE(bad);
      CHECK_FALSE(add_ingest_answer(summary, bad, 1, why));
    }
  }

  TEST_CASE("run_ingest --precision: sent as ?precision=") {
    CannedServer server(CannedServer::response(200, R"({"ingested":1,"rejected":0,"errors":[]})"));
    TempFile file("{\"series\":\"m\",\"ts\":1700000000,\"value\":1}\n");
    IngestOptions options;
    options.url = server.url();
    options.file = file.path();
    options.precision = "s";
    CapturedOutput output;
    CHECK(run_ingest(options) == kExitOk);
    CHECK(server.last_request().rfind("POST /api/v1/ingest?precision=s HTTP/1.1", 0) == 0);
    options.precision = "sec";
    CHECK(run_ingest(options) == kExitUsage);
    CHECK(output.err().find("unknown --precision 'sec'") != std::string::npos);
  }

  TEST_CASE("run_ingest: no daemon, exit 3, no file, exit 2") {
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
