// The selector parser (see selector.hpp): a hand-written recursive descent over bytes that
// keeps the position of every token for its error messages.
#include "server/storage/selector.hpp"

#include <cstdint>
#include <optional>

namespace sydra::storage {

namespace {

bool is_alpha(char c) noexcept {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}
bool is_digit(char c) noexcept {
  return c >= '0' && c <= '9';
}
bool is_metric_start(char c) noexcept {
  return is_alpha(c) || c == ':';
}
bool is_metric_char(char c) noexcept {
  return is_alpha(c) || is_digit(c) || c == ':' || c == '.';
}
bool is_label_start(char c) noexcept {
  return is_alpha(c);
}
bool is_label_char(char c) noexcept {
  return is_alpha(c) || is_digit(c) || c == '.';
}
bool is_quote(char c) noexcept {
  return c == '"' || c == '\'' || c == '`';
}

bool is_bare(std::string_view name, bool (*start)(char), bool (*rest)(char)) {
  if (name.empty() || !start(name[0])) return false;
  for (const char c : name.substr(1))
    if (!rest(c)) return false;
  return true;
}

int hex_value(char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

void append_utf8(std::string& out, std::uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

// "'x'" for a byte, or a name for the ones that do not print.
std::string describe(char c) {
  if (c == '\n') return "a newline";
  if (c == '\t') return "a tab";
  if (static_cast<unsigned char>(c) < 0x20 || c == 0x7F) return "byte " + std::to_string(static_cast<int>(c));
  return std::string("'") + c + "'";
}

class Parser {
 public:
  explicit Parser(std::string_view text) : text_(text) {}

  std::vector<Matcher> parse() {
    skip_space();
    if (at_end()) fail(pos_, "empty selector: expected a metric name or '{'");
    std::optional<std::string> name;
    if (is_metric_start(peek())) {
      name = read_while(is_metric_char);
    } else if (peek() != '{') {
      fail(pos_, "expected a metric name or '{', got " + describe(peek()));
    }
    std::vector<Matcher> label_matchers;
    skip_space();
    if (!at_end() && peek() == '{') parse_braces(name, label_matchers);
    skip_space();
    if (!at_end()) fail(pos_, "unexpected " + describe(peek()) + " after the selector");

    std::vector<Matcher> out;
    if (name) out.emplace_back(std::string(kNameLabel), MatchOp::equal, *name);
    for (Matcher& m : label_matchers) out.push_back(std::move(m));
    bool selective = false;
    for (const Matcher& m : out) selective = selective || !m.matches_empty();
    if (!selective)
      fail(0,
           "a selector needs a metric name or a matcher that does not match the empty string "
           "(e.g. {host=~\".+\"})");
    return out;
  }

 private:
  // `index` is 0-based; messages count from 1.
  [[noreturn]] static void fail(std::size_t index, const std::string& problem) {
    throw SelectorError(index + 1, problem);
  }

  bool at_end() const noexcept { return pos_ >= text_.size(); }
  char peek() const noexcept { return text_[pos_]; }

  void skip_space() {
    while (!at_end() && (peek() == ' ' || peek() == '\t' || peek() == '\n' || peek() == '\r')) ++pos_;
  }

  std::string read_while(bool (*accept)(char)) {
    const std::size_t begin = pos_;
    while (!at_end() && accept(peek())) ++pos_;
    return std::string(text_.substr(begin, pos_ - begin));
  }

  void parse_braces(std::optional<std::string>& name, std::vector<Matcher>& out) {
    const std::size_t open = pos_;
    ++pos_;  // '{'
    for (;;) {
      skip_space();
      if (at_end()) fail(pos_, "expected '}' to close the '{' at position " + std::to_string(open + 1));
      if (peek() == '}') {
        ++pos_;
        return;
      }
      const std::size_t item = pos_;
      std::string label;
      if (is_quote(peek())) {
        label = read_string();
        skip_space();
        if (at_end() || peek() == ',' || peek() == '}') {
          // A lone string is the metric name (Prometheus 3).
          if (name) fail(item, "the metric name is given twice ('" + *name + "' and '" + label + "')");
          if (label.empty()) fail(item, "the metric name must not be empty");
          name = std::move(label);
          if (!at_end() && peek() == ',') ++pos_;
          continue;
        }
        if (label.empty()) fail(item, "a label name must not be empty");
      } else if (is_label_start(peek())) {
        label = read_while(is_label_char);
      } else {
        fail(pos_, "expected a label name or '}', got " + describe(peek()));
      }
      skip_space();
      const std::size_t op_pos = pos_;
      MatchOp op{};
      if (text_.substr(pos_, 2) == "=~") {
        op = MatchOp::regex;
        pos_ += 2;
      } else if (text_.substr(pos_, 2) == "!~") {
        op = MatchOp::not_regex;
        pos_ += 2;
      } else if (text_.substr(pos_, 2) == "!=") {
        op = MatchOp::not_equal;
        pos_ += 2;
      } else if (text_.substr(pos_, 1) == "=") {
        op = MatchOp::equal;
        pos_ += 1;
      } else {
        fail(op_pos, "expected '=', '!=', '=~' or '!~' after the label name '" + label + "'" +
                         (at_end() ? std::string() : ", got " + describe(peek())));
      }
      skip_space();
      if (at_end() || !is_quote(peek()))
        fail(pos_, "expected a quoted string after " + label + std::string(to_string(op)) +
                       (at_end() ? std::string() : ", got " + describe(peek())));
      const std::size_t value_pos = pos_;
      std::string value = read_string();
      if (label == kNameLabel && name)
        fail(item, "the metric name is given twice ('" + *name + "' and a __name__ matcher)");
      try {
        out.emplace_back(std::move(label), op, std::move(value));
      } catch (const InvalidMatcher& e) {
        fail(value_pos, std::string("invalid regular expression: ") + e.what());
      }
      skip_space();
      if (at_end()) fail(pos_, "expected '}' to close the '{' at position " + std::to_string(open + 1));
      if (peek() == ',') {
        ++pos_;
      } else if (peek() != '}') {
        fail(pos_, "expected ',' or '}' after the matcher " + format_matcher(out.back()) + ", got " +
                       describe(peek()));
      }
    }
  }

  // A string literal at pos_ (which is a quote); leaves pos_ after the closing quote.
  std::string read_string() {
    const std::size_t open = pos_;
    const char quote = text_[pos_++];
    std::string out;
    for (;;) {
      if (at_end()) fail(open, "unterminated string");
      const char c = text_[pos_];
      if (c == quote) {
        ++pos_;
        return out;
      }
      if (quote == '`') {
        out += c;
        ++pos_;
        continue;
      }
      if (c == '\n') fail(open, "unterminated string (a newline before its closing quote)");
      if (c != '\\') {
        out += c;
        ++pos_;
        continue;
      }
      read_escape(quote, out);
    }
  }

  void read_escape(char quote, std::string& out) {
    const std::size_t at = pos_;
    ++pos_;  // the backslash
    if (at_end()) fail(at, "unterminated string");
    const char e = text_[pos_++];
    switch (e) {
      case 'a':
        out += '\a';
        return;
      case 'b':
        out += '\b';
        return;
      case 'f':
        out += '\f';
        return;
      case 'n':
        out += '\n';
        return;
      case 'r':
        out += '\r';
        return;
      case 't':
        out += '\t';
        return;
      case 'v':
        out += '\v';
        return;
      case '\\':
        out += '\\';
        return;
      case 'x':
      case 'u':
      case 'U': {
        const std::size_t digits = e == 'x' ? 2 : e == 'u' ? 4 : 8;
        std::uint32_t v = 0;
        for (std::size_t i = 0; i < digits; ++i) {
          const int h = at_end() ? -1 : hex_value(peek());
          if (h < 0)
            fail(at,
                 std::string("escape \\") + e + " needs " + std::to_string(digits) + " hexadecimal digits");
          v = v * 16 + static_cast<std::uint32_t>(h);
          ++pos_;
        }
        if (e == 'x') {
          out += static_cast<char>(v);
        } else {
          if (v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF))
            fail(at, "escape is not a valid Unicode code point");
          append_utf8(out, v);
        }
        return;
      }
      default:
        if (e == quote) {
          out += e;
          return;
        }
        if (e >= '0' && e <= '7') {
          std::uint32_t v = static_cast<std::uint32_t>(e - '0');
          for (int i = 0; i < 2; ++i) {
            if (at_end() || peek() < '0' || peek() > '7') fail(at, "an octal escape needs 3 digits");
            v = v * 8 + static_cast<std::uint32_t>(peek() - '0');
            ++pos_;
          }
          if (v > 255) fail(at, "octal escape value > 255");
          out += static_cast<char>(v);
          return;
        }
        fail(at, "unknown escape sequence \\" + std::string(1, e));
    }
  }

  std::string_view text_;
  std::size_t pos_ = 0;
};

void append_label_name(std::string& out, std::string_view label) {
  if (is_bare(label, is_label_start, is_label_char)) {
    out += label;
  } else {
    out += quote_string(label);
  }
}

}  // namespace

SelectorError::SelectorError(std::size_t position, const std::string& problem)
    : std::invalid_argument("selector: position " + std::to_string(position) + ": " + problem),
      position_(position) {}

std::vector<Matcher> parse_selector(std::string_view text) {
  return Parser(text).parse();
}

std::string quote_string(std::string_view value) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(value.size() + 2);
  out += '"';
  for (const char c : value) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20 || c == 0x7F) {
          out += "\\x";
          out += kHex[(static_cast<unsigned char>(c) >> 4) & 0xF];
          out += kHex[static_cast<unsigned char>(c) & 0xF];
        } else {
          out += c;
        }
    }
  }
  out += '"';
  return out;
}

std::string format_matcher(const Matcher& matcher) {
  std::string out;
  append_label_name(out, matcher.label());
  out += to_string(matcher.op());
  out += quote_string(matcher.value());
  return out;
}

std::string format_series(std::string_view name,
                          std::span<const std::pair<std::string_view, std::string_view>> tags) {
  std::string out;
  const bool bare = is_bare(name, is_metric_start, is_metric_char);
  if (bare) {
    out += name;
    if (tags.empty()) return out;
  }
  out += '{';
  bool first = true;
  if (!bare) {
    out += quote_string(name);
    first = false;
  }
  for (const auto& [k, v] : tags) {
    if (!first) out += ',';
    first = false;
    append_label_name(out, k);
    out += '=';
    out += quote_string(v);
  }
  out += '}';
  return out;
}

}  // namespace sydra::storage
