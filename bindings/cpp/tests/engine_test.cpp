// Tests of the llmux C++ wrapper against real mock upstreams (llmux-fleet).

#include "support.hpp"

#include <gtest/gtest.h>

#include <poll.h>

#include <atomic>
#include <cstdio>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <type_traits>

using namespace std::chrono_literals;
using llmux::Engine;
using llmux::ErrorCode;
using llmux::EventKind;
using llmux::Protocol;
using llmux_test::chat;
using llmux_test::collect;
using llmux_test::config_json;
using llmux_test::contains;

namespace {

const std::string kOrderAB = R"("provider":{"routing":{"type":"order","providers":["pa","pb"]}})";
const std::string kOnlyB = R"("provider":{"routing":{"type":"order","providers":["pb"]}})";

// Runs `f`, expecting an llmux::Error with `code`; returns its message.
template <typename F>
std::string expect_error(ErrorCode code, F&& f) {
    try {
        f();
    } catch (const llmux::Error& e) {
        EXPECT_EQ(static_cast<unsigned>(e.code()), static_cast<unsigned>(code)) << e.what();
        return e.what();
    } catch (const std::exception& e) {
        ADD_FAILURE() << "threw a non-llmux exception: " << e.what();
        return {};
    }
    ADD_FAILURE() << "did not throw (wanted code " << static_cast<unsigned>(code) << ")";
    return {};
}

bool fd_readable(int fd, int timeout_ms) {
    struct pollfd p = {fd, POLLIN, 0};
    int n = ::poll(&p, 1, timeout_ms);
    return n == 1 && (p.revents & POLLIN) != 0;
}

}  // namespace

// ------------------------------------------------------------------ basics

TEST(Version, MatchesHeader) {
    EXPECT_EQ(llmux::version(), LLMUX_VERSION);
    EXPECT_EQ(Engine::version(), llmux::version());
    EXPECT_FALSE(llmux::result_text(ErrorCode::UnknownModel).empty());
}

TEST(TypeTraits, EngineIsMoveOnly) {
    static_assert(!std::is_copy_constructible_v<Engine>);
    static_assert(!std::is_copy_assignable_v<Engine>);
    static_assert(std::is_nothrow_move_constructible_v<Engine>);
    static_assert(std::is_nothrow_move_assignable_v<Engine>);
    static_assert(std::is_copy_constructible_v<llmux::Event>);
    SUCCEED();
}

// ------------------------------------------------------------------ requests

TEST(Stream, ChunksThenDoneWithRouting) {
    Engine e = Engine::from_json(config_json());
    llmux::RequestId id = e.submit(Protocol::OpenAI, chat("demo/chat", true, kOnlyB));
    EXPECT_NE(id, 0u);
    auto o = collect(e, id, 30s, 200ms);
    ASSERT_EQ(o.terminals.size(), 1u);
    EXPECT_GE(o.chunks.size(), 5u);
    for (const auto& c : o.chunks) {
        EXPECT_EQ(c.kind, EventKind::Chunk);
        EXPECT_FALSE(c.terminal());
        EXPECT_TRUE(contains(c.data, "\"chat.completion.chunk\"")) << c.data;
    }
    EXPECT_EQ(o.text, "Hello from b.");
    const auto& t = o.terminal();
    EXPECT_EQ(t.kind, EventKind::Done) << t.data;
    EXPECT_TRUE(t.terminal());
    EXPECT_TRUE(t.is_done());
    EXPECT_TRUE(contains(t.data, R"("type":"done")")) << t.data;
    EXPECT_TRUE(contains(t.data, R"("endpoint":"pb/default")")) << t.data;
    EXPECT_TRUE(contains(t.data, R"("upstream_model":"mock-b")")) << t.data;
    EXPECT_TRUE(contains(t.data, R"("model":"demo/chat")")) << t.data;
    EXPECT_TRUE(contains(t.data, R"("usage":{)")) << t.data;
    EXPECT_FALSE(contains(t.data, R"("response")")) << "streams carry no response body";
}

TEST(Stream, ProviderPinRoutesToThatProvider) {
    Engine e = Engine::from_json(config_json());
    auto id = e.submit(Protocol::OpenAI, chat("demo/chat:pa", true));
    auto o = collect(e, id);
    ASSERT_EQ(o.terminals.size(), 1u);
    EXPECT_EQ(o.terminal().kind, EventKind::Done) << o.terminal().data;
    EXPECT_TRUE(contains(o.terminal().data, R"("endpoint":"pa/default")")) << o.terminal().data;
    EXPECT_EQ(o.text, "Hello from a.");
}

TEST(Stream, AnthropicProtocol) {
    Engine e = Engine::from_json(config_json());
    auto id = e.submit(Protocol::Anthropic,
                       R"({"model":"demo/solo","max_tokens":64,"stream":true,)"
                       R"("messages":[{"role":"user","content":"hi"}]})");
    auto o = collect(e, id);
    ASSERT_EQ(o.terminals.size(), 1u);
    EXPECT_EQ(o.terminal().kind, EventKind::Done) << o.terminal().data;
    std::string text;
    for (const auto& c : o.chunks)
        if (contains(c.data, R"("type":"text_delta")")) text += llmux_test::strings_of(c.data, "text");
    EXPECT_TRUE(contains(o.chunks.at(0).data, R"("type":"message_start")")) << o.chunks.at(0).data;
    EXPECT_EQ(text, "Hello from a.");
}

TEST(Stream, ResponsesProtocol) {
    Engine e = Engine::from_json(config_json());
    auto id = e.submit(Protocol::Responses, R"({"model":"demo/solo","stream":true,"input":"hi"})");
    auto o = collect(e, id);
    ASSERT_EQ(o.terminals.size(), 1u);
    EXPECT_EQ(o.terminal().kind, EventKind::Done) << o.terminal().data;
    ASSERT_FALSE(o.chunks.empty());
    EXPECT_TRUE(contains(o.chunks.front().data, R"("type":"response.created")")) << o.chunks.front().data;
    EXPECT_TRUE(contains(o.chunks.back().data, R"("type":"response.completed")")) << o.chunks.back().data;
    std::string text;
    for (const auto& c : o.chunks)
        if (contains(c.data, R"("type":"response.output_text.delta")")) text += llmux_test::strings_of(c.data, "delta");
    EXPECT_EQ(text, "Hello from a.");
}

TEST(NonStream, DoneCarriesResponse) {
    Engine e = Engine::from_json(config_json());
    auto id = e.submit(Protocol::OpenAI, chat("demo/solo", false));
    auto o = collect(e, id, 30s, 200ms);
    ASSERT_EQ(o.terminals.size(), 1u);
    EXPECT_TRUE(o.chunks.empty());
    const auto& t = o.terminal();
    EXPECT_EQ(t.kind, EventKind::Done) << t.data;
    EXPECT_TRUE(contains(t.data, R"("object":"chat.completion")")) << t.data;
    EXPECT_EQ(llmux_test::strings_of(t.data, "content", "\"message\""), "Hello from a.");
    EXPECT_TRUE(contains(t.data, R"("endpoint":"pa/default")")) << t.data;
    EXPECT_TRUE(contains(t.data, R"("upstream_model":"solo")")) << t.data;
}

TEST(Failover, ServiceUnavailableThenOk) {
    Engine e = Engine::from_json(config_json());
    auto id = e.submit(Protocol::OpenAI,
                       chat("demo/chat", true, kOrderAB + R"(,"mock":{"servers":{"a":{"status":503}}})"));
    auto o = collect(e, id);
    ASSERT_EQ(o.terminals.size(), 1u);
    const auto& t = o.terminal();
    EXPECT_EQ(t.kind, EventKind::Done) << t.data;
    EXPECT_EQ(o.text, "Hello from b.");
    // Two attempts: pa failed with 503, pb succeeded.
    // In the attempts list (the served endpoint is also named before it).
    auto attempts = t.data.find(R"("attempts":)");
    ASSERT_NE(attempts, std::string::npos) << t.data;
    auto first = t.data.find(R"("endpoint":"pa/default")", attempts);
    auto second = t.data.find(R"("endpoint":"pb/default")", attempts);
    ASSERT_NE(first, std::string::npos) << t.data;
    ASSERT_NE(second, std::string::npos) << t.data;
    EXPECT_LT(first, second) << t.data;
    EXPECT_TRUE(contains(t.data, R"("status":503)")) << t.data;
    EXPECT_TRUE(contains(t.data, R"("outcome":"server_error")")) << t.data;
    EXPECT_TRUE(contains(t.data, R"("outcome":"success")")) << t.data;
}

TEST(Failover, NoFallbackGivesErrorEvent) {
    Engine e = Engine::from_json(config_json());
    auto id = e.submit(Protocol::OpenAI, chat("demo/solo", false, R"("mock":{"status":503})"));
    auto o = collect(e, id, 30s, 200ms);
    ASSERT_EQ(o.terminals.size(), 1u);
    EXPECT_EQ(o.terminal().kind, EventKind::Error) << o.terminal().data;
    EXPECT_TRUE(o.terminal().is_error());
    EXPECT_TRUE(contains(o.terminal().data, R"("type":"error")")) << o.terminal().data;
}

TEST(Cancel, EndsWithOneCancelledTerminal) {
    Engine e = Engine::from_json(config_json());
    auto id = e.submit(Protocol::OpenAI,
                       chat("demo/solo", true, R"("mock":{"first_token_delay_ms":5000})"));
    // Let the attempt start, then cancel.
    std::this_thread::sleep_for(50ms);
    e.cancel(id);
    auto o = collect(e, id, 10s, 500ms);
    ASSERT_EQ(o.terminals.size(), 1u);
    const auto& t = o.terminal();
    EXPECT_EQ(t.kind, EventKind::Error) << t.data;
    EXPECT_TRUE(contains(t.data, R"("cancelled")")) << t.data;
    // The request is over: cancelling again is an UnknownRequest error.
    expect_error(ErrorCode::UnknownRequest, [&] { e.cancel(id); });
    auto r = e.try_cancel(id);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().code(), ErrorCode::UnknownRequest);
}

TEST(Cancel, UnknownIdThrows) {
    Engine e = Engine::from_json(config_json());
    expect_error(ErrorCode::UnknownRequest, [&] { e.cancel(987654321); });
}

// ------------------------------------------------------------------ errors

TEST(Errors, BadConfigNamesJsonPath) {
    std::string msg = expect_error(ErrorCode::InvalidConfig, [] {
        Engine::from_json(R"({"providers":[{"slug":"pa","protocol":"openai","base_url":"http://127.0.0.1:9/v1"}],)"
                          R"("models":[{"slug":"x/y","endpoints":[{"provider":"acme","upstream_model":"m"}]}]})");
    });
    EXPECT_TRUE(contains(msg, "models[0].endpoints[0].provider")) << msg;
    EXPECT_TRUE(contains(msg, "acme")) << msg;

    auto r = Engine::try_from_json("{not json");
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code(), ErrorCode::InvalidConfig);
    EXPECT_THROW(r.value(), llmux::Error);
}

TEST(Errors, UnknownModelListsConfigured) {
    Engine e = Engine::from_json(config_json());
    std::string msg = expect_error(ErrorCode::UnknownModel,
                                   [&] { e.submit(Protocol::OpenAI, chat("nope/missing", true)); });
    EXPECT_TRUE(contains(msg, "nope/missing")) << msg;
    EXPECT_TRUE(contains(msg, "demo/chat")) << msg;

    auto r = e.try_submit(Protocol::OpenAI, chat("nope/missing", true));
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().code(), ErrorCode::UnknownModel);
    EXPECT_EQ(r.error().code_text(), llmux::result_text(ErrorCode::UnknownModel));
}

TEST(Errors, UnknownProviderAndEndpoint) {
    Engine e = Engine::from_json(config_json());
    expect_error(ErrorCode::UnknownProvider, [&] { e.submit(Protocol::OpenAI, chat("demo/solo:pb", true)); });
    expect_error(ErrorCode::UnknownEndpoint, [&] {
        e.submit(Protocol::OpenAI,
                 chat("demo/chat", true, R"("provider":{"routing":{"type":"order","providers":["zz/top"]}})"));
    });
}

TEST(Errors, InvalidUtf8) {
    Engine e = Engine::from_json(config_json());
    std::string bad = chat("demo/chat", true);
    bad.replace(bad.find("hi"), 2, "\xff\xfe");
    expect_error(ErrorCode::InvalidUtf8, [&] { e.submit(Protocol::OpenAI, bad); });
    std::string bad_cfg = config_json();
    bad_cfg.replace(bad_cfg.find("mock-a"), 6, "mo\xc3\x28k-");
    expect_error(ErrorCode::InvalidUtf8, [&] { Engine::from_json(bad_cfg); });
}

TEST(Errors, InvalidJsonAndRequest) {
    Engine e = Engine::from_json(config_json());
    expect_error(ErrorCode::InvalidJson, [&] { e.submit(Protocol::OpenAI, "{\"model\":"); });
    expect_error(ErrorCode::InvalidRequest, [&] { e.submit(Protocol::OpenAI, R"({"model":"demo/chat"})"); });
}

TEST(Errors, UnknownProtocolIsInvalidArgument) {
    Engine e = Engine::from_json(config_json());
    expect_error(ErrorCode::InvalidArgument,
                 [&] { e.submit(static_cast<Protocol>(42), chat("demo/chat", true)); });
}

TEST(Errors, FromFile) {
    std::string path = ::testing::TempDir() + "llmux_cpp_test_config.json";
    {
        std::ofstream f(path);
        f << config_json();
    }
    Engine e = Engine::from_file(path);
    auto id = e.submit(Protocol::OpenAI, chat("demo/solo", false));
    EXPECT_EQ(collect(e, id).terminal().kind, EventKind::Done);
    std::remove(path.c_str());

    std::string msg = expect_error(ErrorCode::InvalidConfig, [&] { Engine::from_file(path); });
    EXPECT_TRUE(contains(msg, "llmux_cpp_test_config.json")) << msg;
    expect_error(ErrorCode::InvalidArgument, [] { Engine::from_file(std::string("a\0b", 3)); });
}

// ------------------------------------------------------------------ ownership

TEST(Move, ConstructAndAssign) {
    Engine a = Engine::from_json(config_json());
    llmux_engine* raw = a.native_handle();
    ASSERT_NE(raw, nullptr);
    auto id = a.submit(Protocol::OpenAI, chat("demo/solo", true));

    Engine b(std::move(a));
    EXPECT_FALSE(a.valid());  // NOLINT(bugprone-use-after-move): moved-from is documented empty
    EXPECT_TRUE(b.valid());
    EXPECT_EQ(b.native_handle(), raw);
    // The request submitted before the move finishes on the new owner.
    auto o = collect(b, id);
    ASSERT_EQ(o.terminals.size(), 1u);
    EXPECT_EQ(o.terminal().kind, EventKind::Done);

    // A moved-from engine fails like a NULL engine in C.
    expect_error(ErrorCode::NullArgument, [&] { a.submit(Protocol::OpenAI, chat("demo/solo", true)); });
    expect_error(ErrorCode::NullArgument, [&] { a.poll(); });
    expect_error(ErrorCode::NullArgument, [&] { a.fd(); });
    expect_error(ErrorCode::NullArgument, [&] { a.stats(); });

    // Move-assign over a live engine frees it; the target owns the source's.
    Engine c = Engine::from_json(config_json());
    c = std::move(b);
    EXPECT_EQ(c.native_handle(), raw);
    EXPECT_FALSE(b.valid());  // NOLINT(bugprone-use-after-move)
    auto id2 = c.submit(Protocol::OpenAI, chat("demo/solo", false));
    EXPECT_EQ(collect(c, id2).terminal().kind, EventKind::Done);

    // Self-move-assign through a reference leaves it usable.
    Engine& alias = c;
    c = std::move(alias);
    EXPECT_TRUE(c.valid());

    c.reset();
    EXPECT_FALSE(c);
    Engine empty;
    EXPECT_FALSE(empty.valid());
}

TEST(Move, DestroyWithRequestsInFlight) {
    Engine e = Engine::from_json(config_json());
    for (int i = 0; i < 4; ++i)
        e.submit(Protocol::OpenAI, chat("demo/solo", true, R"("mock":{"first_token_delay_ms":10000})"));
    auto t0 = std::chrono::steady_clock::now();
    e.reset();  // cancels and joins
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 8s);
}

TEST(Move, ReleaseAndAdopt) {
    Engine a = Engine::from_json(config_json());
    llmux_engine* raw = a.release();
    EXPECT_FALSE(a.valid());
    Engine b(raw);
    auto id = b.submit(Protocol::OpenAI, chat("demo/solo", false));
    EXPECT_EQ(collect(b, id).terminal().kind, EventKind::Done);
}

// ------------------------------------------------------------------ threads

TEST(Threads, ConcurrentSubmitAndPoll) {
    Engine e = Engine::from_json(config_json());
    constexpr int kSubmitters = 4, kPerThread = 10, kPollers = 2;
    std::mutex mu;
    std::set<llmux::RequestId> submitted;
    std::map<llmux::RequestId, int> terminals;
    std::map<llmux::RequestId, int> chunks;
    std::atomic<int> ended{0};
    std::atomic<bool> stop{false};
    std::atomic<int> exited{0};

    std::vector<std::thread> pollers;
    for (int p = 0; p < kPollers; ++p) {
        pollers.emplace_back([&] {
            while (!stop.load()) {
                auto evs = e.poll(8, std::chrono::milliseconds(-1));  // woken at the end
                std::lock_guard<std::mutex> lock(mu);
                for (const auto& ev : evs) {
                    if (ev.terminal()) {
                        EXPECT_EQ(ev.kind, EventKind::Done) << ev.data;
                        terminals[ev.request_id]++;
                        ended++;
                    } else {
                        chunks[ev.request_id]++;
                    }
                }
            }
            exited++;
        });
    }
    std::vector<std::thread> submitters;
    for (int s = 0; s < kSubmitters; ++s) {
        submitters.emplace_back([&, s] {
            for (int i = 0; i < kPerThread; ++i) {
                bool stream = (i + s) % 2 == 0;
                auto r = e.try_submit(Protocol::OpenAI, chat("demo/chat", stream));
                if (!r) {
                    ADD_FAILURE() << "submit: " << r.error().what();
                    continue;
                }
                std::lock_guard<std::mutex> lock(mu);
                EXPECT_TRUE(submitted.insert(*r).second) << "duplicate id " << *r;
            }
        });
    }
    for (auto& t : submitters) t.join();
    auto deadline = std::chrono::steady_clock::now() + 30s;
    while (ended.load() < kSubmitters * kPerThread && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(10ms);
    std::this_thread::sleep_for(100ms);  // a stray second terminal would show up here
    stop = true;
    // Wakeups do not accumulate (a flag that the next poll consumes), so
    // keep waking until every poller has seen `stop`.
    while (exited.load() < kPollers) {
        e.wakeup();
        std::this_thread::sleep_for(1ms);
    }
    for (auto& t : pollers) t.join();
    std::lock_guard<std::mutex> lock(mu);
    EXPECT_EQ(submitted.size(), static_cast<std::size_t>(kSubmitters * kPerThread));
    EXPECT_EQ(terminals.size(), submitted.size());
    for (const auto& [id, n] : terminals) {
        EXPECT_EQ(n, 1) << "request " << id;
        EXPECT_TRUE(submitted.count(id)) << "terminal for unknown id " << id;
    }
    EXPECT_FALSE(chunks.empty());
}

TEST(Threads, WakeupUnblocksPoll) {
    Engine e = Engine::from_json(config_json());
    std::atomic<bool> returned{false};
    std::size_t got = 99;
    std::thread t([&] {
        got = e.poll(4, std::chrono::milliseconds(-1)).size();  // would wait forever
        returned = true;
    });
    std::this_thread::sleep_for(100ms);
    EXPECT_FALSE(returned.load());
    auto t0 = std::chrono::steady_clock::now();
    e.wakeup();
    t.join();
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 2s);
    EXPECT_TRUE(returned.load());
    EXPECT_EQ(got, 0u);
}

TEST(Threads, PollTimeoutWaits) {
    Engine e = Engine::from_json(config_json());
    auto t0 = std::chrono::steady_clock::now();
    auto evs = e.poll(4, 150ms);
    auto waited = std::chrono::steady_clock::now() - t0;
    EXPECT_TRUE(evs.empty());
    EXPECT_GE(waited, 100ms);
    EXPECT_LT(waited, 5s);
    EXPECT_TRUE(e.poll(4, 0ms).empty());
    EXPECT_TRUE(e.poll(0, 0ms).empty());
}

TEST(Fd, ReadableWhileEventsWait) {
    Engine e = Engine::from_json(config_json());
    int fd = e.fd();
    ASSERT_GE(fd, 0);
    EXPECT_EQ(e.fd(), fd);
    EXPECT_FALSE(fd_readable(fd, 0));

    auto id = e.submit(Protocol::OpenAI, chat("demo/solo", false));
    ASSERT_TRUE(fd_readable(fd, 10000)) << "no event within 10 s";
    auto evs = e.poll(16, 0ms);
    ASSERT_EQ(evs.size(), 1u);
    EXPECT_EQ(evs[0].request_id, id);
    EXPECT_TRUE(evs[0].terminal());
    EXPECT_FALSE(fd_readable(fd, 0)) << "drained: the fd must not stay readable";
}

TEST(Fd, DrivesAStreamWithPollSyscall) {
    Engine e = Engine::from_json(config_json());
    int fd = e.fd();
    auto id = e.submit(Protocol::OpenAI, chat("demo/solo", true, R"("mock":{"chunk_delay_ms":10})"));
    std::string text;
    bool done = false;
    auto deadline = std::chrono::steady_clock::now() + 30s;
    while (!done && std::chrono::steady_clock::now() < deadline) {
        if (!fd_readable(fd, 1000)) continue;
        for (const auto& ev : e.poll(16, 0ms)) {
            ASSERT_EQ(ev.request_id, id);
            if (ev.terminal()) {
                EXPECT_EQ(ev.kind, EventKind::Done) << ev.data;
                done = true;
            } else {
                text += llmux_test::strings_of(ev.data, "content", "\"delta\"");
            }
        }
    }
    EXPECT_TRUE(done);
    EXPECT_EQ(text, "Hello from a.");
}

TEST(Stats, ListsEndpoints) {
    Engine e = Engine::from_json(config_json());
    auto id = e.submit(Protocol::OpenAI, chat("demo/solo", false));
    collect(e, id);
    std::string s = e.stats();
    EXPECT_TRUE(contains(s, R"("id":"pa/default")")) << s;
    EXPECT_TRUE(contains(s, R"("id":"pb/default")")) << s;
    EXPECT_TRUE(contains(s, R"("successes":1)")) << s;
}

TEST(Health, ExportThenImportIntoAFreshEngine) {
    std::string saved;
    {
        Engine e = Engine::from_json(config_json());
        auto id = e.submit(Protocol::OpenAI, chat("demo/solo", false));
        ASSERT_EQ(collect(e, id).terminal().kind, EventKind::Done);
        saved = e.health_export();
        EXPECT_TRUE(contains(saved, "pa/default")) << saved;
    }
    Engine fresh = Engine::from_json(config_json());
    std::size_t restored = fresh.health_import(saved);
    EXPECT_GE(restored, 1u) << saved;
    auto r = fresh.try_health_import(saved);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(*r, restored);

    auto bad = fresh.try_health_import("{not json");
    ASSERT_FALSE(bad.ok());
    EXPECT_EQ(bad.error().code(), ErrorCode::InvalidJson);
    expect_error(ErrorCode::InvalidJson, [&] { fresh.health_import("{not json"); });
}

TEST(Reload, SwapsTheCatalogAndRefusesAnInvalidOne) {
    Engine e = Engine::from_json(config_json());
    auto first = collect(e, e.submit(Protocol::OpenAI, chat("demo/solo", false)));
    ASSERT_EQ(first.terminals.size(), 1u);
    // A stream in flight across the reload that removes demo/chat.
    auto id = e.submit(Protocol::OpenAI,
                       chat("demo/chat", true, R"("mock":{"chunks":5,"chunk_delay_ms":40})"));
    std::string next = config_json();
    auto cut = next.find(R"({"slug":"demo/chat")");
    auto end = next.find(R"({"slug":"demo/solo")");
    ASSERT_NE(cut, std::string::npos);
    next.erase(cut, end - cut);
    std::string report = e.reload(next);
    EXPECT_TRUE(contains(report, R"("generation":1)")) << report;
    EXPECT_TRUE(contains(report, R"({"model":"demo/chat","endpoint":"pb/default"})")) << report;
    auto o = collect(e, id);
    ASSERT_EQ(o.terminals.size(), 1u);
    EXPECT_EQ(o.terminals[0].kind, EventKind::Done) << o.terminals[0].data;
    expect_error(ErrorCode::UnknownModel, [&] { e.submit(Protocol::OpenAI, chat("demo/chat", false)); });

    auto bad = e.try_reload(R"({"providers":[{"slug":"pa","protocol":"openai","base_url":"nope"}],"models":[]})");
    ASSERT_FALSE(bad.ok());
    EXPECT_EQ(bad.error().code(), ErrorCode::InvalidConfig);
    EXPECT_TRUE(contains(bad.error().what(), "base_url")) << bad.error().what();
    expect_error(ErrorCode::InvalidConfig, [&] { e.reload("{"); });
    EXPECT_TRUE(contains(e.stats(), R"("reloads":1)"));
    auto after = collect(e, e.submit(Protocol::OpenAI, chat("demo/solo", false)));
    ASSERT_EQ(after.terminals.size(), 1u);
    EXPECT_EQ(after.terminals[0].kind, EventKind::Done);
}

TEST(Events, OutliveTheEngine) {
    std::vector<llmux::Event> kept;
    {
        Engine e = Engine::from_json(config_json());
        auto id = e.submit(Protocol::OpenAI, chat("demo/solo", false));
        auto o = collect(e, id);
        kept = o.terminals;
    }
    ASSERT_EQ(kept.size(), 1u);
    EXPECT_TRUE(contains(kept[0].data, "Hello from a."));
}

// llmux_submit_traced through the overload (the spans themselves are
// decoded in gateway/tests/traces, through the Python binding).
TEST(Traced, SubmitWithTraceparent) {
    Engine e = Engine::from_json(config_json());
    auto id = e.submit(Protocol::OpenAI, chat("demo/solo", false),
                       "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
    auto o = collect(e, id, 30s, 200ms);
    ASSERT_EQ(o.terminals.size(), 1u);
    EXPECT_EQ(o.terminal().kind, EventKind::Done) << o.terminal().data;
    auto empty = e.submit(Protocol::OpenAI, chat("demo/solo", false), "");
    EXPECT_EQ(collect(e, empty, 30s, 200ms).terminals.size(), 1u);
    for (std::string bad : {std::string("garbage"),
                            std::string("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
                            std::string("00-4bf9\0x", 8)}) {
        std::string msg = expect_error(ErrorCode::InvalidArgument,
                                       [&] { e.submit(Protocol::OpenAI, chat("demo/solo", false), bad); });
        EXPECT_TRUE(contains(msg, "traceparent")) << msg;
    }
    expect_error(ErrorCode::InvalidUtf8,
                 [&] { e.submit(Protocol::OpenAI, chat("demo/solo", false), "00-\xff\xfe"); });
}
