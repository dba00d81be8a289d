// What the CLI tests share: capturing std::cout and std::cerr, setting an environment
// variable for a scope.
#pragma once

#include <cstdlib>
#include <iostream>
#include <sstream>
#include <string>

namespace sydra::cli::test {

// Captures what a command prints on std::cout and std::cerr for the scope.
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

// Sets (or, with nullptr, unsets) an environment variable for the scope.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old, had_ = true;
    if (value)
      setenv(name, value, 1);
    else
      unsetenv(name);
  }
  ~ScopedEnv() {
    if (had_)
      setenv(name_, old_.c_str(), 1);
    else
      unsetenv(name_);
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  const char* name_;
  std::string old_;
  bool had_ = false;
};

}  // namespace sydra::cli::test
