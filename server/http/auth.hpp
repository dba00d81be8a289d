// Bearer-token authentication (RFC 6750 §2.1): "Authorization: Bearer <token>".
#pragma once

#include <string_view>

namespace sydra::server::http {

// Whether an Authorization header value presents `token`. The scheme is case-insensitive
// (RFC 9110 §11.1); the token is compared in time independent of where it differs, so a
// client cannot find it byte by byte by timing answers. An empty token never matches.
bool bearer_token_matches(std::string_view authorization, std::string_view token) noexcept;

}  // namespace sydra::server::http
