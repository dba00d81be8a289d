#include "server/config.hpp"

#include <arpa/inet.h>
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
  if (!node.is_integer() || !v) bad(key, "expected an integer");
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
            if (!n.is_string()) bad(k, "expected a string");
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
            if (!n.is_string()) bad(k, "expected a string");
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
          if (!n.is_boolean()) bad(k, "expected true or false");
          c.access_log = *n.value<bool>();
        },
        [](Config& c, const std::string& t, const std::string& k) { c.access_log = parse_bool_text(k, t); }}},
      {"port_file", string_key(&Config::port_file, true)},
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
    auto it = key_specs().find(name);
    if (it == key_specs().end()) {
      warnings.push_back("config file " + path + ":" + std::to_string(node.source().begin.line) +
                         ": unknown key '" + name + "' ignored");
      continue;
    }
    it->second.from_toml(config, node, name);
  }
  return warnings;
}

void set_config_value(Config& config, const std::string& key, const std::string& value) {
  auto it = key_specs().find(key);
  if (it == key_specs().end()) throw ConfigError("unknown config key '" + key + "'");
  it->second.from_text(config, value, key);
}

void validate(const Config& config) {
  unsigned char address[sizeof(in6_addr)];
  if (inet_pton(AF_INET, config.listen_address.c_str(), address) != 1 &&
      inet_pton(AF_INET6, config.listen_address.c_str(), address) != 1)
    bad("listen_address", "'" + config.listen_address + "' is not an IPv4 or IPv6 address");
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
