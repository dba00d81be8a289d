// server/http/request.hpp: splitting the target, query-string parameters, error bodies.
#include "server/http/request.hpp"

#include <doctest/doctest.h>

#include <nlohmann/json.hpp>
#include <string>

namespace http = sydra::server::http;

TEST_SUITE("unit") {
  TEST_CASE("split_target: the path up to the first '?', the query after it") {
    http::Request r;
    r.target = "/api/v1/query/range?series=a&start=1";
    http::split_target(r);
    CHECK(r.path == "/api/v1/query/range");
    CHECK(r.query == "series=a&start=1");

    r.target = "/status";
    http::split_target(r);
    CHECK(r.path == "/status");
    CHECK(r.query.empty());

    r.target = "/x?";  // an empty query
    http::split_target(r);
    CHECK(r.path == "/x");
    CHECK(r.query.empty());

    r.target = "/x?a=1?b=2";  // only the first '?' splits
    http::split_target(r);
    CHECK(r.path == "/x");
    CHECK(r.query == "a=1?b=2");

    r.target = "";
    http::split_target(r);
    CHECK(r.path.empty());
    CHECK(r.query.empty());
  }

  TEST_CASE("find_query_param: present, absent, empty, first of several") {
    const std::string_view q = "series=cpu&start=10&empty=&flag&start=20";
    CHECK(http::find_query_param(q, "series") == "cpu");
    CHECK(http::find_query_param(q, "start") == "10");  // the first occurrence wins
    CHECK(http::find_query_param(q, "empty") == "");
    CHECK(http::find_query_param(q, "flag") == "");  // a name without '=' is present and empty
    CHECK_FALSE(http::find_query_param(q, "end").has_value());
    CHECK_FALSE(http::find_query_param(q, "ser").has_value());  // names match whole
    CHECK_FALSE(http::find_query_param("", "series").has_value());
    CHECK_FALSE(http::find_query_param("&&", "series").has_value());
    CHECK(http::find_query_param("&&a=1", "a") == "1");
    CHECK(http::find_query_param("a=1=2", "a") == "1=2");  // split at the first '='
  }

  TEST_CASE("query_param decodes '+' and %XX in the value and keeps malformed escapes") {
    CHECK(http::query_param("tags=%7B%22host%22%3A%22a%22%7D", "tags") == R"({"host":"a"})");
    CHECK(http::query_param("s=a+b", "s") == "a b");
    CHECK(http::query_param("s=%2b", "s") == "+");
    CHECK(http::query_param("s=%41%42", "s") == "AB");
    CHECK(http::query_param("s=100%", "s") == "100%");  // '%' at the end
    CHECK(http::query_param("s=%4", "s") == "%4");      // one hex digit
    CHECK(http::query_param("s=%zz1", "s") == "%zz1");  // not hex
    CHECK(http::query_param("s=%00x", "s") == std::string("\0x", 2));
    CHECK(http::query_param("missing=1", "s").empty());  // absent reads as empty
  }

  TEST_CASE("json_error writes {\"error\": ...}, replacing invalid UTF-8") {
    const http::Response r = http::json_error(404, "no route for /x\xff");
    CHECK(r.status == 404);
    CHECK(r.content_type == "application/json");
    const auto j = nlohmann::json::parse(r.body);
    REQUIRE(j.is_object());
    CHECK(j.size() == 1);
    CHECK(j["error"].get<std::string>().rfind("no route for /x", 0) == 0);
    const http::Response ok = http::json_ok("[]");
    CHECK(ok.status == 200);
    CHECK(ok.body == "[]");
  }

  TEST_CASE("reason phrases of the statuses the server sends") {
    CHECK(http::reason(200) == "OK");
    CHECK(http::reason(404) == "Not Found");
    CHECK(http::reason(413) == "Content Too Large");
    CHECK(http::reason(421) == "Misdirected Request");
    CHECK(http::reason(501) == "Not Implemented");
    CHECK(http::reason(599) == "Unknown");
  }
}
