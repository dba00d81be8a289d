// The command lines of the benchmark tools (codec_bench, tsdb_load, tsdb_dataset): flags
// read one at a time, each with its value as text or as a number in a range. Header-only.
#pragma once

#include <cstdlib>
#include <string>

namespace sydra::bench {

class Args {
 public:
  using Usage = void (*)(const std::string& why);  // prints why and the usage, exits: never returns

  // Flags from argv[first] on.
  Args(int argc, char** argv, int first, Usage usage)
      : argc_(argc), argv_(argv), i_(first - 1), usage_(usage) {}

  // Moves to the next flag; false at the end.
  bool next() {
    if (++i_ >= argc_) return false;
    flag_ = argv_[i_];
    return true;
  }
  const std::string& flag() const { return flag_; }

  // The flag's value (the next argument).
  std::string value() {
    if (i_ + 1 >= argc_) fail("missing value for " + flag_);
    return argv_[++i_];
  }

  // The flag's value as a number in [min, max].
  double number(double min, double max) {
    const std::string text = value();
    char* end = nullptr;
    const double v = std::strtod(text.c_str(), &end);
    if (end == text.c_str() || *end != '\0' || !(v >= min && v <= max)) fail("bad value for " + flag_);
    return v;
  }

  [[noreturn]] void unknown() { fail("unknown argument " + flag_); }

 private:
  [[noreturn]] void fail(const std::string& why) {
    usage_(why);
    std::exit(2);
  }

  int argc_;
  char** argv_;
  int i_;
  Usage usage_;
  std::string flag_;
};

}  // namespace sydra::bench
