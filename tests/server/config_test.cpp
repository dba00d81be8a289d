// server/config.hpp: the TOML file, the text form flags use, the cross-key checks, and
// the control listener's port. (What the user sees of a bad config — exit status 2, one
// line — is tested through the binary in tests/integration/config_test.cpp.)
#include "server/config.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <fstream>
#include <string>
#include <vector>

#include "support/temp_dir.hpp"

namespace sydra::server {
namespace {

std::string write_toml(const test::TempDir& dir, const std::string& text) {
  const std::string path = dir.sub("sydradb.toml");
  std::ofstream(path) << text;
  return path;
}

// The message of the ConfigError `f` throws ("" if it does not throw).
template <class F>
std::string error_of(F f) {
  try {
    f();
  } catch (const ConfigError& e) {
    return e.what();
  }
  return {};
}

}  // namespace

TEST_SUITE("unit") {
  TEST_CASE("a file sets the keys it has, the others keep their values") {
    test::TempDir dir("sydra-config");
    Config c;
    c.workers = 7;  // not in the file: kept
    const auto warnings = load_config_file(write_toml(dir, R"(
data_dir = "/var/lib/x"   # inline comments are fine (upstream fell back to defaults)
http_port = 9000
fsync = "always"
access_log = true
allocator_mode = "legacy"
allocator_shards = -1
max_body_bytes = 1048576
control_address = "::1"
control_port = 0
control_port_file = "/run/x/control_port"
)"),
                                           c);
    CHECK(warnings.empty());
    CHECK(c.data_dir == "/var/lib/x");
    CHECK(c.http_port == 9000);
    CHECK(c.fsync == FsyncPolicy::always);
    CHECK(c.access_log);
    CHECK(c.allocator_mode == alloc::Mode::legacy);
    CHECK(c.max_body_bytes == 1048576);
    CHECK(c.workers == 7);
    CHECK(c.control_address == "::1");
    CHECK(c.control_port == 0);
    CHECK(c.control_port_file == "/run/x/control_port");
  }

  TEST_CASE("an unknown key is a warning naming the file and line, a bad value throws naming the key") {
    test::TempDir dir("sydra-config");
    Config c;
    const std::string path = write_toml(dir, "http_port = 1\nfrobnicate = 2\n");
    const auto warnings = load_config_file(path, c);
    REQUIRE(warnings.size() == 1);
    CHECK(warnings[0] == "config file " + path + ":2: unknown key 'frobnicate' ignored");
    CHECK(c.http_port == 1);

    for (const auto& [toml, message] : std::vector<std::pair<std::string, std::string>>{
             {"http_port = 70000", "config key 'http_port': 70000 is out of range [0, 65535]"},
             {"control_port = -2", "config key 'control_port': -2 is out of range [-1, 65535]"},
             {"workers = \"4\"", "config key 'workers': expected an integer, got '4' (a string)"},
             {"access_log = \"yes\"",
              "config key 'access_log': expected true or false, got 'yes' (a string)"},
             {"fsync = \"sometimes\"",
              "config key 'fsync': expected always, interval or none, got 'sometimes'"},
             {"data_dir = \"\"", "config key 'data_dir': must not be empty"},
             {"control_address = 1",
              "config key 'control_address': expected a string, got 1 (an integer)"}}) {
      CAPTURE(toml);
      Config fresh;
      CHECK(error_of([&] { load_config_file(write_toml(dir, toml + "\n"), fresh); }) == message);
    }
    const std::string malformed = error_of([&] { load_config_file(write_toml(dir, "workers = = 3\n"), c); });
    CHECK(malformed.rfind("config file " + dir.sub("sydradb.toml") + ":1:", 0) == 0);
  }

  TEST_CASE("set_config_value parses the text form of every kind of key") {
    Config c;
    set_config_value(c, "http_port", "0");
    set_config_value(c, "control_port", "-1");
    set_config_value(c, "access_log", "on");
    set_config_value(c, "fsync", "none");
    set_config_value(c, "auth_token", "");
    CHECK(c.http_port == 0);
    CHECK(c.control_port == -1);
    CHECK(c.access_log);
    CHECK(c.fsync == FsyncPolicy::none);
    set_config_value(c, "access_log", "0");
    CHECK_FALSE(c.access_log);
    CHECK(error_of([&] { set_config_value(c, "workers", "4x"); }) ==
          "config key 'workers': expected an integer, got '4x'");
    CHECK(error_of([&] { set_config_value(c, "access_log", "maybe"); }) ==
          "config key 'access_log': expected true or false, got 'maybe'");
    CHECK(error_of([&] { set_config_value(c, "no_such_key", "1"); }) == "unknown config key 'no_such_key'");
  }

  TEST_CASE("the control listener's port: http_port + 1 by default, a free one with http_port 0") {
    Config c;
    CHECK(c.control_address == "127.0.0.1");
    CHECK(c.control_port == -1);
    CHECK(c.resolved_control_port() == 8081);
    c.http_port = 9000;
    CHECK(c.resolved_control_port() == 9001);
    c.http_port = 0;
    CHECK(c.resolved_control_port() == 0);
    c.control_port = 7000;
    CHECK(c.resolved_control_port() == 7000);
    c.control_port = 0;
    CHECK(c.resolved_control_port() == 0);
  }

  TEST_CASE("validate: addresses, and a control port of its own") {
    Config c;
    CHECK_NOTHROW(validate(c));
    c.control_address = "localhost:1";
    CHECK(error_of([&] { validate(c); })
              .rfind("config key 'control_address': 'localhost:1' is not an IPv4 or IPv6 address, and as a "
                     "host name: ",
                     0) == 0);
    c = Config{};
    c.control_address = "localhost";  // a host name resolves
    CHECK_NOTHROW(validate(c));
    c = Config{};
    c.listen_address = "nope";
    CHECK(error_of([&] { validate(c); }).rfind("config key 'listen_address': ", 0) == 0);

    c = Config{};
    c.control_port = 8080;  // = http_port on the same address
    CHECK(error_of([&] { validate(c); }) ==
          "config key 'control_port': 8080 is http_port too: the control listener needs a port of its own");
    c.listen_address = "0.0.0.0";  // the wildcard covers 127.0.0.1 too
    CHECK_THROWS_AS(validate(c), ConfigError);
    c.listen_address = "10.1.2.3";  // another address: the same port number is fine
    CHECK_NOTHROW(validate(c));
    c = Config{};
    c.http_port = 0;
    c.control_port = 0;  // two free ports
    CHECK_NOTHROW(validate(c));

    c = Config{};
    c.http_port = 65535;  // http_port + 1 does not exist
    CHECK(error_of([&] { validate(c); }).rfind("config key 'control_port': the default, http_port + 1", 0) ==
          0);
    c.control_port = 65534;
    CHECK_NOTHROW(validate(c));
  }

  TEST_CASE("config_keys lists every key once, the control listener's among them") {
    const auto& keys = config_keys();
    CHECK(std::is_sorted(keys.begin(), keys.end()));
    CHECK(std::adjacent_find(keys.begin(), keys.end()) == keys.end());
    for (const char* k :
         {"http_port", "listen_address", "control_address", "control_port", "control_port_file"})
      CHECK_MESSAGE(std::count(keys.begin(), keys.end(), k) == 1, k);
  }
}

}  // namespace sydra::server
