// support.hpp: shared pieces of the C++ wrapper tests: one mock fleet per
// test process, engine configs pointing at it, and small JSON helpers.

#ifndef LLMUX_TEST_SUPPORT_HPP
#define LLMUX_TEST_SUPPORT_HPP

#include "fleet.hpp"
#include "llmux.hpp"

#include <chrono>
#include <map>
#include <string>
#include <vector>

namespace llmux_test {

// Servers "a" and "b", healthy by default; tests change behavior per request
// with a "mock" field.
inline Fleet& fleet() {
    static Fleet f(R"({"servers":[{"name":"a","behavior":{}},{"name":"b","behavior":{}}]})");
    return f;
}

// Providers "pa" (server a) and "pb" (server b); model "demo/chat" served by
// both (pa cheaper), "demo/solo" only by pa. No exploration, so routing is
// deterministic.
inline std::string config_json() {
    Fleet& f = fleet();
    return R"({"providers":[)"
           R"({"slug":"pa","protocol":"openai","base_url":")" + f.url("a") + R"(/v1"},)"
           R"({"slug":"pb","protocol":"openai","base_url":")" + f.url("b") + R"(/v1"}],)"
           R"("models":[{"slug":"demo/chat","endpoints":[)"
           R"({"provider":"pa","upstream_model":"mock-a","price":{"prompt":1.0,"completion":2.0}},)"
           R"({"provider":"pb","upstream_model":"mock-b","price":{"prompt":3.0,"completion":4.0}}]},)"
           R"({"slug":"demo/solo","endpoints":[{"provider":"pa","upstream_model":"solo"}]}],)"
           R"("timeouts":{"connect_ms":10000,"first_token_ms":30000,"idle_ms":30000,"total_ms":60000},)"
           R"("health":{"explore_ratio":0.0},"worker_threads":2})";
}

// A chat request for `model`; `extra` is appended inside the object
// (e.g. R"("provider":{...})"), without a leading comma.
inline std::string chat(const std::string& model, bool stream, const std::string& extra = "") {
    std::string s = R"({"model":")" + model + R"(","stream":)" + (stream ? "true" : "false") +
                    R"(,"messages":[{"role":"user","content":"hi"}])";
    if (!extra.empty()) s += "," + extra;
    return s + "}";
}

// Decodes the JSON string starting at s[pos] (the opening quote); returns
// the text and moves pos past the closing quote. \uXXXX becomes UTF-8
// (surrogate pairs included).
inline std::string json_string_at(const std::string& s, std::size_t& pos) {
    std::string out;
    ++pos;
    auto hex4 = [&](std::size_t at) { return static_cast<unsigned>(std::stoul(s.substr(at, 4), nullptr, 16)); };
    auto put = [&](unsigned cp) {
        if (cp < 0x80) {
            out += static_cast<char>(cp);
        } else if (cp < 0x800) {
            out += static_cast<char>(0xC0 | (cp >> 6));
            out += static_cast<char>(0x80 | (cp & 0x3F));
        } else if (cp < 0x10000) {
            out += static_cast<char>(0xE0 | (cp >> 12));
            out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
            out += static_cast<char>(0x80 | (cp & 0x3F));
        } else {
            out += static_cast<char>(0xF0 | (cp >> 18));
            out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
            out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
            out += static_cast<char>(0x80 | (cp & 0x3F));
        }
    };
    while (pos < s.size() && s[pos] != '"') {
        char c = s[pos++];
        if (c != '\\') {
            out += c;
            continue;
        }
        char e = s[pos++];
        switch (e) {
            case 'n': out += '\n'; break;
            case 't': out += '\t'; break;
            case 'r': out += '\r'; break;
            case 'b': out += '\b'; break;
            case 'f': out += '\f'; break;
            case 'u': {
                unsigned cp = hex4(pos);
                pos += 4;
                if (cp >= 0xD800 && cp < 0xDC00 && s.compare(pos, 2, "\\u") == 0) {
                    unsigned lo = hex4(pos + 2);
                    pos += 6;
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                }
                put(cp);
                break;
            }
            default: out += e; break;  // \" \\ \/
        }
    }
    ++pos;
    return out;
}

// The values of every "KEY":"..." string in `json` from the first
// occurrence of `after` on (e.g. "\"delta\""), decoded and concatenated.
// Enough for the mock's chunks; not a JSON parser.
inline std::string strings_of(const std::string& json, const std::string& key, const std::string& after = "") {
    std::string out;
    std::size_t pos = after.empty() ? 0 : json.find(after);
    if (pos == std::string::npos) return out;
    const std::string pat = "\"" + key + "\":\"";
    while ((pos = json.find(pat, pos)) != std::string::npos) {
        pos += pat.size() - 1;
        out += json_string_at(json, pos);
    }
    return out;
}

// Everything a request produced, gathered by poll().
struct Outcome {
    std::vector<llmux::Event> chunks;
    std::vector<llmux::Event> terminals;
    std::string text;  // delta contents of the chunks, concatenated
    const llmux::Event& terminal() const { return terminals.at(0); }
};

// Polls until `id` ends (plus `linger` more to catch a wrong second terminal).
inline Outcome collect(const llmux::Engine& e, llmux::RequestId id,
                       std::chrono::milliseconds patience = std::chrono::seconds(30),
                       std::chrono::milliseconds linger = std::chrono::milliseconds(0)) {
    Outcome o;
    auto deadline = std::chrono::steady_clock::now() + patience;
    std::chrono::steady_clock::time_point stop{};
    bool ended = false;
    for (;;) {
        auto now = std::chrono::steady_clock::now();
        if (ended && now >= stop) break;
        if (now >= deadline) break;
        for (auto& ev : e.poll(16, std::chrono::milliseconds(50))) {
            if (ev.request_id != id) continue;
            if (ev.terminal()) {
                if (!ended) stop = std::chrono::steady_clock::now() + linger;
                ended = true;
                o.terminals.push_back(std::move(ev));
            } else {
                o.text += strings_of(ev.data, "content", "\"delta\"");
                o.chunks.push_back(std::move(ev));
            }
        }
    }
    return o;
}

inline bool contains(const std::string& hay, const std::string& needle) {
    return hay.find(needle) != std::string::npos;
}

}  // namespace llmux_test

#endif  // LLMUX_TEST_SUPPORT_HPP
