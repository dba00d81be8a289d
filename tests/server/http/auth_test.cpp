// server/http/auth.hpp: the bearer-token check.
#include "server/http/auth.hpp"

#include <doctest/doctest.h>

using sydra::server::http::bearer_token_matches;

TEST_SUITE("unit") {
  TEST_CASE("bearer_token_matches: the scheme in any case, the token exactly") {
    CHECK(bearer_token_matches("Bearer s3cret", "s3cret"));
    CHECK(bearer_token_matches("bearer s3cret", "s3cret"));
    CHECK(bearer_token_matches("BEARER s3cret", "s3cret"));
    CHECK_FALSE(bearer_token_matches("Bearer S3CRET", "s3cret"));   // the token is case-sensitive
    CHECK_FALSE(bearer_token_matches("Bearer s3cre", "s3cret"));    // a prefix
    CHECK_FALSE(bearer_token_matches("Bearer s3crett", "s3cret"));  // longer
    CHECK_FALSE(bearer_token_matches("Bearer  s3cret", "s3cret"));  // two spaces
    CHECK_FALSE(bearer_token_matches("Basic s3cret", "s3cret"));
    CHECK_FALSE(bearer_token_matches("s3cret", "s3cret"));
    CHECK_FALSE(bearer_token_matches("Bearer", "s3cret"));
    CHECK_FALSE(bearer_token_matches("", "s3cret"));
    CHECK_FALSE(bearer_token_matches("Bearer ", ""));  // an empty token never matches
    CHECK_FALSE(bearer_token_matches("", ""));
  }
}
