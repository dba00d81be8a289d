// A minimal JSON writer shared by every benchmark in bench/: objects, arrays, numbers,
// strings, null. Commas are inserted by depth; keys are optional inside arrays.
#pragma once

#include <cinttypes>
#include <cmath>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

namespace sydra::bench {

class Json {
 public:
  void begin_object(const char* key = nullptr) { open(key, '{'); }
  void end_object() { close('}'); }
  void begin_array(const char* key = nullptr) { open(key, '['); }
  void end_array() { close(']'); }
  void value(const char* key, std::uint64_t v) { emit(key, fmt("%" PRIu64, v)); }
  void value(const char* key, int v) { emit(key, fmt("%d", v)); }
  void value(const char* key, double v) {
    emit(key, std::isfinite(v) ? fmt("%.6g", v) : std::string("null"));
  }
  void value(const char* key, bool v) { emit(key, v ? "true" : "false"); }
  void value(const char* key, std::string_view v) { emit(key, quote(v)); }
  void value(const char* key, const char* v) { emit(key, quote(v)); }
  void null(const char* key) { emit(key, "null"); }
  const std::string& str() const { return out_; }

 private:
  static std::string fmt(const char* f, ...) __attribute__((format(printf, 1, 2))) {
    char buf[64];
    std::va_list args;
    va_start(args, f);
    std::vsnprintf(buf, sizeof buf, f, args);
    va_end(args);
    return buf;
  }
  static std::string quote(std::string_view s) {
    std::string q = "\"";
    for (const char c : s) {
      if (c == '"' || c == '\\') {
        q += '\\';
        q += c;
      } else if (static_cast<unsigned char>(c) < 0x20) {
        q += fmt("\\u%04x", static_cast<unsigned>(static_cast<unsigned char>(c)));
      } else {
        q += c;
      }
    }
    return q + "\"";
  }
  void prefix(const char* key) {
    if (!first_.empty()) {
      if (!first_.back()) out_ += ',';
      first_.back() = false;
    }
    if (key != nullptr) out_ += quote(key) + ':';
  }
  void emit(const char* key, const std::string& text) {
    prefix(key);
    out_ += text;
  }
  void open(const char* key, char c) {
    prefix(key);
    out_ += c;
    first_.push_back(true);
  }
  void close(char c) {
    out_ += c;
    first_.pop_back();
  }
  std::string out_;
  std::vector<bool> first_;
};

}  // namespace sydra::bench
