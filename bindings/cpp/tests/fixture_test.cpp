// The golden terminal events (tests/fixtures/terminal_done.json and
// terminal_error.json, captured from the engine; a Rust test keeps them
// current) read the way a C++ host reads an event's `data`: as the one-line
// JSON text the engine writes.

#include "support.hpp"

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

using llmux_test::contains;
using llmux_test::strings_of;

namespace {

std::string fixture(const std::string& name) {
    std::ifstream in(std::string(LLMUX_FIXTURES_DIR) + "/" + name, std::ios::binary);
    EXPECT_TRUE(in.good()) << "cannot open " << name;
    std::ostringstream s;
    s << in.rdbuf();
    std::string text = s.str();
    while (!text.empty() && text.back() == '\n') text.pop_back();
    return text;
}

// The text of the first "KEY":<number or null> after `after`.
std::string scalar_of(const std::string& json, const std::string& key, const std::string& after = "") {
    std::size_t pos = after.empty() ? 0 : json.find(after);
    if (pos == std::string::npos) return {};
    const std::string pat = "\"" + key + "\":";
    pos = json.find(pat, pos);
    if (pos == std::string::npos) return {};
    pos += pat.size();
    std::size_t end = json.find_first_of(",}]", pos);
    return json.substr(pos, end - pos);
}

}  // namespace

TEST(Fixture, DoneEvent) {
    const std::string data = fixture("terminal_done.json");
    ASSERT_EQ(data.find('\n'), std::string::npos) << "one line, as the engine writes it";
    EXPECT_EQ(data.rfind(R"({"type":"done",)", 0), 0u) << data;
    EXPECT_EQ(strings_of(data, "content", "\"message\""), "Hello from steady.");
    EXPECT_TRUE(contains(data, R"("error_kind":null,"outcome":"success","routing":{)")) << data;
    const std::string routing = "\"routing\"";
    EXPECT_EQ(strings_of(data, "endpoint", "\"upstream_model\":\"up-steady\",\"attempts\""),
              "flaky/defaultsteady/default");
    EXPECT_EQ(strings_of(data, "outcome", "\"attempts\""), "server_errorsuccess");
    EXPECT_EQ(scalar_of(data, "status", "\"attempts\""), "503");
    EXPECT_TRUE(contains(data, R"("endpoint":"steady/default","provider":"steady")")) << data;
    EXPECT_EQ(scalar_of(data, "cached_tokens", routing), "0");
    EXPECT_NE(scalar_of(data, "cost_usd", routing), "null");
    EXPECT_NE(scalar_of(data, "first_token_ms", routing), "null");
}

TEST(Fixture, ErrorEvent) {
    const std::string data = fixture("terminal_error.json");
    ASSERT_EQ(data.find('\n'), std::string::npos) << "one line, as the engine writes it";
    EXPECT_EQ(data.rfind(R"({"type":"error","status":503,)", 0), 0u) << data;
    EXPECT_EQ(strings_of(data, "error_kind"), "upstream");
    EXPECT_EQ(strings_of(data, "type", "\"error\":{\"error\""), "upstream_error");
    EXPECT_TRUE(contains(strings_of(data, "message"), "HTTP 503")) << data;
    EXPECT_EQ(scalar_of(data, "endpoint", "\"routing\""), "null");
    EXPECT_EQ(strings_of(data, "outcome", "\"attempts\""), "rate_limitedserver_error");
    EXPECT_EQ(strings_of(data, "endpoint", "\"attempts\""), "limited/defaultbroken/default");
    EXPECT_EQ(scalar_of(data, "usage", "\"routing\""), "null");
}
