#include "cli/client.hpp"

#include <cctype>
#include <cmath>
#include <cstdlib>
#include <iostream>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "cli/commands.hpp"
#include "cli/url.hpp"

namespace sydra::cli {

namespace {

// A set, non-empty environment variable.
std::optional<std::string> environment(const char* name) {
  // NOLINTNEXTLINE(concurrency-mt-unsafe): the CLI reads the environment from one thread
  const char* value = std::getenv(name);
  if (value == nullptr || *value == '\0') return std::nullopt;
  return std::string(value);
}

}  // namespace

void print_error(std::string_view command, std::string_view message) {
  std::cerr << "sydradb " << command << ": " << message << std::endl;
}

std::string error_text(const std::string& body) {
  const nlohmann::json parsed = nlohmann::json::parse(body, nullptr, false);
  const bool has_field = parsed.is_object() && parsed.contains("error") && parsed["error"].is_string();
  const std::string message = has_field ? parsed["error"].get<std::string>() : body;
  constexpr std::size_t kMaxChars = 200;
  std::string flat;
  for (char c : message) {
    if (c == ' ' || c == '\n' || c == '\r' || c == '\t') {
      if (!flat.empty() && flat.back() != ' ') flat += ' ';
    } else {
      flat += std::iscntrl(static_cast<unsigned char>(c)) != 0 ? '?' : c;
    }
  }
  while (!flat.empty() && flat.back() == ' ') flat.pop_back();
  if (flat.empty()) return "(empty body)";
  if (flat.size() > kMaxChars) flat = flat.substr(0, kMaxChars) + "...";
  return flat;
}

std::optional<DaemonClient> DaemonClient::open(std::string_view command, const std::string& url_flag,
                                               const std::string& token_flag, double timeout_seconds,
                                               Listener listener) {
  if (!(timeout_seconds > 0) || !std::isfinite(timeout_seconds)) {
    print_error(command, "--timeout must be a positive number of seconds");
    return std::nullopt;
  }
  const bool control = listener == Listener::control;
  std::string variable = control ? "SYDRADB_CONTROL_URL" : "SYDRADB_URL";
  std::string url = url_flag;
  bool defaulted = false;
  if (url.empty()) {
    const auto from_env = environment(variable.c_str());
    defaulted = !from_env;
    url = from_env.value_or(control ? kDefaultControlUrl : kDefaultUrl);
  }
  try {
    parse_http_url(url);
  } catch (const std::invalid_argument& e) {
    print_error(command, std::string(e.what()) + (url_flag.empty() ? " (from " + variable + ")" : ""));
    return std::nullopt;
  }
  std::string token = token_flag.empty() ? environment("SYDRADB_TOKEN").value_or("") : token_flag;
  return DaemonClient(command, std::move(url), defaulted, std::move(variable), std::move(token),
                      timeout_seconds);
}

HttpResponse DaemonClient::send(const std::string& method, const std::string& path, const std::string& body,
                                const std::string& content_type) const {
  try {
    return http_request(method, url_, path, token_, body, content_type, timeout_seconds_);
  } catch (const Unreachable& e) {
    if (!url_defaulted_) throw;
    throw Unreachable(std::string(e.what()) + " (the default URL: give --url or set " + url_variable_ +
                      " when the daemon listens elsewhere)");
  }
}

std::string DaemonClient::describe(const HttpResponse& response) const {
  std::string out = url_ + ": HTTP " + std::to_string(response.status) + ": " + error_text(response.body);
  if (response.status == 401) {
    out += token_.empty() ? " (the daemon requires a token: pass --token TOKEN or set SYDRADB_TOKEN)"
                          : " (the daemon refused the token given: check --token or SYDRADB_TOKEN)";
  }
  return out;
}

int DaemonClient::exchange(const std::string& method, const std::string& path, const std::string& body,
                           HttpResponse& response, std::string& error) const {
  try {
    response = send(method, path, body);
  } catch (const Unreachable& e) {
    error = e.what();
    return kExitUnreachable;
  } catch (const std::invalid_argument& e) {
    error = e.what();
    return kExitUsage;
  }
  if (response.status < 200 || response.status > 299) {
    error = describe(response);
    return kExitHttpError;
  }
  return kExitOk;
}

int DaemonClient::call(const std::string& method, const std::string& path, const std::string& body,
                       HttpResponse& response) const {
  std::string error;
  const int code = exchange(method, path, body, response, error);
  if (code != kExitOk) fail(error);
  return code;
}

}  // namespace sydra::cli
