// What the client commands (stats, ingest, query, series) share: where the daemon is, the
// token, and one format for every error they print.
//
//   where    --url, else $SYDRADB_URL, else http://127.0.0.1:8080; "host:port" needs no scheme.
//            Commands that talk to the control listener (`stats`) read $SYDRADB_CONTROL_URL
//            and default to http://127.0.0.1:8081 instead.
//   token    --token, else $SYDRADB_TOKEN
//   errors   "sydradb COMMAND: MESSAGE" on stderr, one line; an HTTP error answer reads
//            "URL: HTTP STATUS: the daemon's message", with how to fix a 401
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "cli/http_client.hpp"

namespace sydra::cli {

inline constexpr const char* kDefaultUrl = "http://127.0.0.1:8080";
// The control listener of a daemon on its default ports (control_port = http_port + 1).
inline constexpr const char* kDefaultControlUrl = "http://127.0.0.1:8081";

// Which of the daemon's listeners a command talks to: its environment variable and default.
enum class Listener { data, control };

// "sydradb COMMAND: MESSAGE\n" on stderr: the one error format of every command.
void print_error(std::string_view command, std::string_view message);

// The text of an HTTP error answer: its JSON "error", else the body, on one line (runs of
// white space become one space, other control characters '?', cut after 200 characters).
std::string error_text(const std::string& body);

class DaemonClient {
 public:
  // Resolves the URL and the token. nullopt after printing why (a bad --timeout or URL):
  // the command then exits kExitUsage.
  static std::optional<DaemonClient> open(std::string_view command, const std::string& url_flag,
                                          const std::string& token_flag, double timeout_seconds,
                                          Listener listener = Listener::data);

  const std::string& url() const noexcept { return url_; }
  const std::string& command() const noexcept { return command_; }

  // One request; throws Unreachable (with a hint when the URL is only the default) or
  // std::invalid_argument.
  HttpResponse send(const std::string& method, const std::string& path, const std::string& body = {},
                    const std::string& content_type = "application/json") const;

  // "URL: HTTP STATUS: message", and for a 401 how to pass the token.
  std::string describe(const HttpResponse& response) const;

  // One request that expects a 2xx answer: kExitOk with the answer in `response`, or the
  // exit code (kExitUnreachable, kExitUsage for a bad URL, kExitHttpError) with `error` set
  // to one line (without the "sydradb COMMAND: " prefix).
  int exchange(const std::string& method, const std::string& path, const std::string& body,
               HttpResponse& response, std::string& error) const;
  // exchange(), printing the error.
  int call(const std::string& method, const std::string& path, const std::string& body,
           HttpResponse& response) const;

  void fail(std::string_view message) const { print_error(command_, message); }

 private:
  DaemonClient(std::string_view command, std::string url, bool url_defaulted, std::string url_variable,
               std::string token, double timeout_seconds)
      : command_(std::string(command)),
        url_(std::move(url)),
        url_defaulted_(url_defaulted),
        url_variable_(std::move(url_variable)),
        token_(std::move(token)),
        timeout_seconds_(timeout_seconds) {}

  std::string command_;
  std::string url_;
  bool url_defaulted_ = false;  // neither --url nor the variable: say so when unreachable
  std::string url_variable_;    // SYDRADB_URL or SYDRADB_CONTROL_URL
  std::string token_;
  double timeout_seconds_ = 5;
};

}  // namespace sydra::cli
