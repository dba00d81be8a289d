#include "server/http/auth.hpp"

#include <cctype>
#include <cstddef>

namespace sydra::server::http {

bool bearer_token_matches(std::string_view authorization, std::string_view token) noexcept {
  if (token.empty()) return false;
  constexpr std::string_view kScheme = "bearer ";
  if (authorization.size() < kScheme.size()) return false;
  for (std::size_t i = 0; i < kScheme.size(); ++i)
    if (static_cast<char>(std::tolower(static_cast<unsigned char>(authorization[i]))) != kScheme[i])
      return false;
  const std::string_view presented = authorization.substr(kScheme.size());
  // Every byte of the expected token is compared whatever the mismatches.
  unsigned char diff = presented.size() == token.size() ? 0 : 1;
  for (std::size_t i = 0; i < token.size(); ++i)
    diff |= static_cast<unsigned char>(token[i] ^ (i < presented.size() ? presented[i] : 0));
  return diff == 0;
}

}  // namespace sydra::server::http
