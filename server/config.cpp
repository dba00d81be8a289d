#include "server/config.hpp"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>

#include <toml++/toml.h>

#include <charconv>
#include <functional>
#include <limits>
#include <map>
#include <thread>

namespace sydra::server {

namespace {

// A key's parser, from TOML or from text. Each throws ConfigError naming the key.
struct KeySpec {
  std::function<void(Config&, const toml::node&, const std::string&)> from_toml;
  std::function<void(Config&, const std::string&, const std::string&)> from_text;
};

[[noreturn]] void bad(const std::string& key, const std::string& why) {
  throw ConfigError("config key '" + key + "': " + why);
}

// A value from the file as the message about it shows it: 8080 (an integer), '8080' (a
// string). (Not toml++'s printer: its float printing would pull libm into the binary.)
std::string shown(const toml::node& node) {
  if (const auto* v = node.as_string()) return "'" + v->get() + "' (a string)";
  if (const auto* v = node.as_integer()) return std::to_string(v->get()) + " (an integer)";
  if (const auto* v = node.as_floating_point()) {
    char text[32];
    const auto [end, ec] = std::to_chars(text, text + sizeof text, v->get());
    return std::string(text, ec == std::errc() ? end : text) + " (a float)";
  }
  if (const auto* v = node.as_boolean()) return std::string(v->get() ? "true" : "false") + " (a boolean)";
  if (node.is_table()) return "a table";
  if (node.is_array()) return "an array";
  return "a date or time";
}

[[noreturn]] void bad_type(const std::string& key, const char* expected, const toml::node& node) {
  bad(key, std::string("expected ") + expected + ", got " + shown(node));
}

template <class T>
T parse_integer_text(const std::string& key, const std::string& text, std::int64_t lo, std::int64_t hi) {
  std::int64_t v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size())
    bad(key, "expected an integer, got '" + text + "'");
  if (v < lo || v > hi)
    bad(key, std::to_string(v) + " is out of range [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
  return static_cast<T>(v);
}

template <class T>
T integer_from_toml(const std::string& key, const toml::node& node, std::int64_t lo, std::int64_t hi) {
  auto v = node.value<std::int64_t>();
  if (!node.is_integer() || !v) bad_type(key, "an integer", node);
  if (*v < lo || *v > hi)
    bad(key,
        std::to_string(*v) + " is out of range [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
  return static_cast<T>(*v);
}

template <class T>
KeySpec integer_key(T Config::*field, std::int64_t lo, std::int64_t hi) {
  return {[=](Config& c, const toml::node& n, const std::string& k) {
            c.*field = integer_from_toml<T>(k, n, lo, hi);
          },
          [=](Config& c, const std::string& t, const std::string& k) {
            c.*field = parse_integer_text<T>(k, t, lo, hi);
          }};
}

KeySpec string_key(std::string Config::*field, bool allow_empty) {
  auto check = [=](const std::string& k, const std::string& v) {
    if (!allow_empty && v.empty()) bad(k, "must not be empty");
    return v;
  };
  return {[=](Config& c, const toml::node& n, const std::string& k) {
            if (!n.is_string()) bad_type(k, "a string", n);
            c.*field = check(k, *n.value<std::string>());
          },
          [=](Config& c, const std::string& t, const std::string& k) { c.*field = check(k, t); }};
}

bool parse_bool_text(const std::string& key, const std::string& text) {
  if (text == "true" || text == "1" || text == "yes" || text == "on") return true;
  if (text == "false" || text == "0" || text == "no" || text == "off") return false;
  bad(key, "expected true or false, got '" + text + "'");
}

template <class Parse>
KeySpec enum_key(Parse parse) {
  return {[=](Config& c, const toml::node& n, const std::string& k) {
            if (!n.is_string()) bad_type(k, "a string", n);
            parse(c, k, *n.value<std::string>());
          },
          [=](Config& c, const std::string& t, const std::string& k) { parse(c, k, t); }};
}

const std::map<std::string, KeySpec>& key_specs() {
  constexpr std::int64_t kU32 = std::numeric_limits<std::uint32_t>::max();
  static const std::map<std::string, KeySpec> specs = {
      {"data_dir", string_key(&Config::data_dir, false)},
      {"http_port", integer_key(&Config::http_port, 0, 65535)},
      {"fsync", enum_key([](Config& c, const std::string& k, const std::string& v) {
         if (v == "always")
           c.fsync = FsyncPolicy::always;
         else if (v == "interval")
           c.fsync = FsyncPolicy::interval;
         else if (v == "none")
           c.fsync = FsyncPolicy::none;
         else
           bad(k, "expected always, interval or none, got '" + v + "'");
       })},
      {"flush_interval_ms", integer_key(&Config::flush_interval_ms, 1, 3'600'000)},
      {"memtable_max_bytes", integer_key(&Config::memtable_max_bytes, 1 << 20, std::int64_t{1} << 40)},
      {"retention_days", integer_key(&Config::retention_days, 0, 36500)},
      {"auth_token", string_key(&Config::auth_token, true)},
      {"listen_address", string_key(&Config::listen_address, false)},
      {"workers", integer_key(&Config::workers, 0, 256)},
      {"allocator_mode", enum_key([](Config& c, const std::string& k, const std::string& v) {
         if (!alloc::parse_mode(v, c.allocator_mode))
           bad(k, "expected sharded, legacy or system, got '" + v + "'");
       })},
      {"allocator_shards", integer_key(&Config::allocator_shards, -1, 64)},
      {"log_level", enum_key([](Config& c, const std::string& k, const std::string& v) {
         static const char* levels[] = {"trace", "debug", "info", "warn", "error", "critical", "off"};
         for (const char* l : levels)
           if (v == l) {
             c.log_level = v;
             return;
           }
         bad(k, "expected trace, debug, info, warn, error, critical or off, got '" + v + "'");
       })},
      {"access_log",
       {[](Config& c, const toml::node& n, const std::string& k) {
          if (!n.is_boolean()) bad_type(k, "true or false", n);
          c.access_log = *n.value<bool>();
        },
        [](Config& c, const std::string& t, const std::string& k) { c.access_log = parse_bool_text(k, t); }}},
      {"port_file", string_key(&Config::port_file, true)},
      {"control_address", string_key(&Config::control_address, false)},
      {"control_port", integer_key(&Config::control_port, -1, 65535)},
      {"control_port_file", string_key(&Config::control_port_file, true)},
      {"max_body_bytes", integer_key(&Config::max_body_bytes, 1024, std::int64_t{1} << 32)},
      {"max_header_bytes", integer_key(&Config::max_header_bytes, 1024, 1 << 20)},
      {"read_timeout_ms", integer_key(&Config::read_timeout_ms, 10, kU32)},
      {"idle_timeout_ms", integer_key(&Config::idle_timeout_ms, 10, kU32)},
      {"max_connections", integer_key(&Config::max_connections, 1, 1'000'000)},
      {"shutdown_timeout_ms", integer_key(&Config::shutdown_timeout_ms, 0, kU32)},
      {"maintenance_interval_ms", integer_key(&Config::maintenance_interval_ms, 1, 60'000)},
      {"retention_check_interval_ms", integer_key(&Config::retention_check_interval_ms, 10, 86'400'000)},
      {"compaction_interval_ms", integer_key(&Config::compaction_interval_ms, 0, 86'400'000)},
      {"ingest_wait_ms", integer_key(&Config::ingest_wait_ms, 0, 600'000)},
      {"wal_max_file_bytes", integer_key(&Config::wal_max_file_bytes, 64 * 1024, std::int64_t{1} << 40)},
      {"max_line_bytes", integer_key(&Config::max_line_bytes, 256, 64 << 20)},
      {"max_query_points", integer_key(&Config::max_query_points, 1, std::int64_t{1} << 32)},
      {"max_query_series", integer_key(&Config::max_query_series, 1, std::int64_t{1} << 32)},
      {"query_threads", integer_key(&Config::query_threads, 0, 256)},
  };
  return specs;
}

}  // namespace

std::uint32_t Config::resolved_workers() const noexcept {
  if (workers != 0) return workers;
  unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : n;
}

std::uint16_t Config::resolved_control_port() const noexcept {
  if (control_port >= 0) return static_cast<std::uint16_t>(control_port);
  if (http_port == 0 || http_port == 65535) return 0;
  return static_cast<std::uint16_t>(http_port + 1);
}

std::uint32_t Config::resolved_shards() const noexcept {
  return allocator_shards < 0 ? resolved_workers() : static_cast<std::uint32_t>(allocator_shards);
}

const std::vector<std::string>& config_keys() {
  static const std::vector<std::string> keys = [] {
    std::vector<std::string> k;
    for (const auto& [name, spec] : key_specs()) k.push_back(name);
    return k;
  }();
  return keys;
}

std::vector<std::string> load_config_file(const std::string& path, Config& config) {
  toml::table table;
  try {
    table = toml::parse_file(path);
  } catch (const toml::parse_error& e) {
    const auto& where = e.source().begin;
    throw ConfigError("config file " + path + ":" + std::to_string(where.line) + ":" +
                      std::to_string(where.column) + ": " + std::string(e.description()));
  }
  std::vector<std::string> warnings;
  for (auto&& [key, node] : table) {
    std::string name(key.str());
    const std::string where = "config file " + path + ":" + std::to_string(node.source().begin.line);
    auto it = key_specs().find(name);
    if (it != key_specs().end()) {
      it->second.from_toml(config, node, name);
      continue;
    }
    if (const toml::table* inner = node.as_table()) {
      // Every key is top-level: a table's keys would be ignored. Ignoring known keys (an
      // auth_token under [server], say) would run the daemon otherwise than configured.
      std::string known, all;
      for (auto&& [inner_key, inner_node] : *inner) {
        const std::string inner_name(inner_key.str());
        all += (all.empty() ? "" : ", ") + inner_name;
        if (key_specs().count(inner_name) != 0) known += (known.empty() ? "" : ", ") + inner_name;
      }
      if (!known.empty()) {
        throw ConfigError(where + ": table [" + name + "] holds " + known +
                          ", which sydradb reads only at the top level: move them above the first "
                          "[table] line (sydradb.toml has no tables)");
      }
      warnings.push_back(where + ": unknown table [" + name + "] ignored" +
                         (all.empty() ? std::string() : " with its keys " + all));
      continue;
    }
    warnings.push_back(where + ": unknown key '" + name + "' ignored");
  }
  return warnings;
}

void set_config_value(Config& config, const std::string& key, const std::string& value) {
  auto it = key_specs().find(key);
  if (it == key_specs().end()) throw ConfigError("unknown config key '" + key + "'");
  it->second.from_text(config, value, key);
}

std::string resolve_address(const std::string& key, const std::string& address) {
  unsigned char bytes[sizeof(in6_addr)];
  if (inet_pton(AF_INET, address.c_str(), bytes) == 1 || inet_pton(AF_INET6, address.c_str(), bytes) == 1)
    return address;
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (const int error = getaddrinfo(address.c_str(), nullptr, &hints, &found); error != 0) {
    bad(key, "'" + address + "' is not an IPv4 or IPv6 address, and as a host name: " + gai_strerror(error));
  }
  const addrinfo* chosen = found;
  for (const addrinfo* a = found; a != nullptr; a = a->ai_next) {
    if (a->ai_family == AF_INET) {
      chosen = a;
      break;
    }
  }
  char text[INET6_ADDRSTRLEN] = {};
  const void* raw =
      chosen->ai_family == AF_INET
          ? static_cast<const void*>(&reinterpret_cast<const sockaddr_in*>(chosen->ai_addr)->sin_addr)
          : static_cast<const void*>(&reinterpret_cast<const sockaddr_in6*>(chosen->ai_addr)->sin6_addr);
  inet_ntop(chosen->ai_family, raw, text, sizeof text);
  freeaddrinfo(found);
  return text;
}

namespace {
bool is_wildcard(const std::string& address) {
  return address == "0.0.0.0" || address == "::" || address == "0:0:0:0:0:0:0:0";
}
}  // namespace

void validate(const Config& config) {
  const std::string listen = resolve_address("listen_address", config.listen_address);
  const std::string control = resolve_address("control_address", config.control_address);
  if (config.control_port == -1 && config.http_port == 65535)
    bad("control_port",
        "the default, http_port + 1, is out of range with http_port = 65535; set control_port");
  const bool same_address = listen == control || is_wildcard(listen) || is_wildcard(control);
  if (config.http_port != 0 && config.resolved_control_port() == config.http_port && same_address)
    bad("control_port",
        std::to_string(config.http_port) + " is http_port too: the control listener needs a port of its own");
}

const char* to_string(FsyncPolicy policy) noexcept {
  switch (policy) {
    case FsyncPolicy::always:
      return "always";
    case FsyncPolicy::interval:
      return "interval";
    case FsyncPolicy::none:
      return "none";
  }
  return "unknown";
}

}  // namespace sydra::server
