// stream: one streaming request through the llmux C++ wrapper.
//
// usage: stream [--fail-server NAME] BASE_URL [BASE_URL...]
//
// Each BASE_URL is an OpenAI-compatible server (e.g. one printed by
// `llmux-fleet --servers a,b --exit-on-stdin-eof`); provider i is "p<i>"
// with base_url BASE_URL/v1, all serving the model "demo/chat", tried in
// order. `--fail-server a` adds a per-request override that makes the
// llmux-fleet server called "a" answer 503, so the routing record shows a
// failover to the next provider.
//
// Build: c++ -std=c++17 stream.cpp -I<dir of llmux.hpp> $(pkg-config --cflags --libs llmux)

#include "llmux.hpp"

#include <chrono>
#include <iostream>
#include <string>

namespace {

// The text of choices[0].delta.content in an OpenAI chunk (escapes other
// than \" \\ \n are kept verbatim: a real program would use a JSON library).
std::string delta_text(const std::string& chunk) {
    const std::string key = "\"content\":\"";
    auto delta = chunk.find("\"delta\":");
    if (delta == std::string::npos) return {};
    auto at = chunk.find(key, delta);
    if (at == std::string::npos) return {};
    std::string out;
    for (auto i = at + key.size(); i < chunk.size() && chunk[i] != '"'; ++i) {
        if (chunk[i] == '\\' && i + 1 < chunk.size()) {
            char e = chunk[++i];
            out += e == 'n' ? '\n' : e;
        } else {
            out += chunk[i];
        }
    }
    return out;
}

std::string config(int n, char** urls) {
    std::string providers, endpoints;
    for (int i = 0; i < n; ++i) {
        std::string p = "p" + std::to_string(i);
        if (i) providers += ",", endpoints += ",";
        providers += R"({"slug":")" + p + R"(","protocol":"openai","base_url":")" + urls[i] + R"(/v1"})";
        endpoints += R"({"provider":")" + p + R"(","upstream_model":"mock-)" + std::to_string(i) +
                     R"(","price":{"prompt":1.0,"completion":2.0}})";
    }
    return R"({"providers":[)" + providers + R"(],"models":[{"slug":"demo/chat","endpoints":[)" +
           endpoints + "]}]}";
}

}  // namespace

int main(int argc, char** argv) {
    std::string fail_server;
    if (argc > 2 && std::string(argv[1]) == "--fail-server") {
        fail_server = argv[2];
        argv[2] = argv[0];
        argv += 2;
        argc -= 2;
    }
    if (argc < 2) {
        std::cerr << "usage: stream [--fail-server NAME] BASE_URL [BASE_URL...]\n";
        return 2;
    }
    std::cout << "llmux " << llmux::version() << "\n";
    try {
        llmux::Engine engine = llmux::Engine::from_json(config(argc - 1, argv + 1));

        // Try the providers in the order given.
        std::string order;
        for (int i = 1; i < argc; ++i) order += (i > 1 ? ",\"p" : "\"p") + std::to_string(i - 1) + "\"";
        std::string request = R"({"model":"demo/chat","stream":true,)"
                              R"("messages":[{"role":"user","content":"Say hello."}],)"
                              R"("provider":{"routing":{"type":"order","providers":[)" + order + "]}}";
        if (!fail_server.empty()) request += R"(,"mock":{"servers":{")" + fail_server + R"(":{"status":503}}})";
        request += "}";

        llmux::RequestId id = engine.submit(llmux::Protocol::OpenAI, request);
        std::cout << "text: " << std::flush;
        for (bool done = false; !done;) {
            for (const llmux::Event& ev : engine.poll(32, std::chrono::milliseconds(100))) {
                if (ev.request_id != id) continue;
                if (ev.is_chunk()) {
                    std::cout << delta_text(ev.data) << std::flush;
                } else if (ev.terminal()) {
                    std::cout << "\n" << (ev.is_done() ? "done: " : "error: ") << ev.data << "\n";
                    if (ev.is_error()) return 1;
                    done = true;
                }
            }
        }
        std::cout << "stats: " << engine.stats() << "\n";
    } catch (const llmux::Error& e) {
        std::cerr << "llmux error " << static_cast<unsigned>(e.code()) << " (" << e.code_text()
                  << "): " << e.what() << "\n";
        return 1;
    }
    return 0;
}
