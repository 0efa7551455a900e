// bench_host.cpp: what the C++ wrapper and the plain C ABI add over a
// raw-socket HTTP/1.1 client, in one run against the same mock.
//
// Starts the llmux-fleet mock (on CPU 1 when there are two CPUs; this
// process, and so the engine's threads, on CPU 0), then interleaves,
// request by request, each round in the next of the six orders:
//
//   * cpp:   llmux.hpp, as a C++ user writes it: Engine::submit, then
//            Engine::poll(64, 1 s) until the request's terminal event
//            (every event copied into an llmux::Event).
//   * c_abi: llmux.h called directly: llmux_submit, llmux_poll into an
//            array of llmux_event, llmux_events_free.
//   * raw:   a keep-alive HTTP/1.1 client on a POSIX socket, written here,
//            sending the body llmux sends upstream and reading the response
//            (for streams: every SSE event) without parsing JSON. The floor:
//            what any C++ client must at least do.
//
// Added = quantile(path) - quantile(raw); the spread is min / median / max
// of the per-block figure over 10 blocks. Prints one JSON object per case;
// --json PATH writes them as a list (scripts/bench-report.py merges it).
//
//   bench_host [--quick] [--json out.json] [--worker-threads N]
//
// The fleet binary: $LLMUX_FLEET_BIN, else $LLMUX_FLEET, else the one CMake
// configured (LLMUX_FLEET).

#include "../tests/fleet.hpp"
#include "llmux.h"
#include "llmux.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <iostream>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

double us_since(Clock::time_point t) {
    return std::chrono::duration<double, std::micro>(Clock::now() - t).count();
}

[[noreturn]] void fail(const std::string& what) { throw std::runtime_error(what); }

// ------------------------------------------------------------ raw socket

// HTTP/1.1 keep-alive over one socket; Content-Length or chunked bodies.
class RawClient {
public:
    explicit RawClient(int port) : port_(port) {
        fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd_ < 0) fail("socket failed");
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_port = htons(static_cast<std::uint16_t>(port));
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) fail("connect to the mock failed");
        int one = 1;
        setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    RawClient(const RawClient&) = delete;
    RawClient& operator=(const RawClient&) = delete;
    ~RawClient() { close(fd_); }

    // POSTs `body` to /v1/chat/completions and returns the response body;
    // `on_data` sees each chunk of a chunked body as it arrives. Headers as
    // llmux sends them (accept: application/json or text/event-stream).
    std::string post(const std::string& body, bool stream,
                     const std::function<void(const char*, std::size_t)>& on_data = {}) {
        std::string req;
        req.reserve(body.size() + 160);
        req += "POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1:";
        req += std::to_string(port_);
        req += stream ? "\r\naccept: text/event-stream" : "\r\naccept: application/json";
        req += "\r\nauthorization: Bearer bench\r\ncontent-type: application/json\r\ncontent-length: ";
        req += std::to_string(body.size());
        req += "\r\n\r\n";
        req += body;
        write_all(req);
        std::string status = line();
        if (status.find(" 200 ") == std::string::npos) fail("the mock answered: " + status);
        long length = -1;
        bool chunked = false;
        for (std::string h = line(); !h.empty(); h = line()) {
            std::size_t colon = h.find(':');
            if (colon == std::string::npos) continue;
            std::string k = lower(h.substr(0, colon));
            std::string v = lower(h.substr(colon + 1));
            if (k == "content-length") length = std::strtol(v.c_str(), nullptr, 10);
            if (k == "transfer-encoding" && v.find("chunked") != std::string::npos) chunked = true;
        }
        if (!chunked) {
            if (length < 0) fail("the mock answered without content-length or chunked");
            return exact(static_cast<std::size_t>(length));
        }
        std::string out;
        for (;;) {
            std::size_t size = std::strtoul(line().c_str(), nullptr, 16);
            if (size == 0) {
                line();  // the empty line after the last chunk (no trailers)
                return out;
            }
            std::string part = exact(size);
            line();
            if (on_data) on_data(part.data(), part.size());
            out += part;
        }
    }

private:
    static std::string lower(std::string s) {
        for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        return s;
    }

    void write_all(const std::string& s) {
        std::size_t off = 0;
        while (off < s.size()) {
            ssize_t n = send(fd_, s.data() + off, s.size() - off, MSG_NOSIGNAL);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) fail("send to the mock failed");
            off += static_cast<std::size_t>(n);
        }
    }

    void fill() {
        char tmp[65536];
        for (;;) {
            ssize_t n = recv(fd_, tmp, sizeof tmp, 0);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) fail("the mock closed the connection");
            buf_.append(tmp, static_cast<std::size_t>(n));
            return;
        }
    }

    std::string line() {
        std::size_t at;
        while ((at = buf_.find("\r\n", pos_)) == std::string::npos) fill();
        std::string out = buf_.substr(pos_, at - pos_);
        consume(at + 2 - pos_);
        return out;
    }

    std::string exact(std::size_t n) {
        while (buf_.size() - pos_ < n) fill();
        std::string out = buf_.substr(pos_, n);
        consume(n);
        return out;
    }

    void consume(std::size_t n) {
        pos_ += n;
        if (pos_ == buf_.size()) {
            buf_.clear();
            pos_ = 0;
        }
    }

    int fd_ = -1;
    int port_;
    std::string buf_;
    std::size_t pos_ = 0;
};

// Counts SSE events (blocks ended by a blank line) across chunk boundaries.
struct SseCounter {
    std::string pending;
    int events = 0;
    void feed(const char* p, std::size_t n) {
        pending.append(p, n);
        std::size_t start = 0, at;
        while ((at = pending.find("\n\n", start)) != std::string::npos) {
            ++events;
            start = at + 2;
        }
        pending.erase(0, start);
    }
};

// ------------------------------------------------------------ llmux paths

constexpr std::size_t kBatch = 64;
constexpr double kDeadlineUs = 60e6;

// Through llmux.hpp: submit, then poll until this request's terminal event.
// Returns (microseconds, chunk events).
std::pair<double, int> via_cpp(const llmux::Engine& engine, const std::string& body) {
    auto t = Clock::now();
    llmux::RequestId id = engine.submit(llmux::Protocol::OpenAI, body);
    int chunks = 0;
    for (;;) {
        for (const llmux::Event& ev : engine.poll(kBatch, std::chrono::milliseconds(1000))) {
            if (ev.request_id != id) continue;
            if (ev.is_chunk()) ++chunks;
            if (ev.is_error()) fail("llmux (C++) request failed: " + ev.data);
            if (ev.is_done()) return {us_since(t), chunks};
        }
        if (us_since(t) > kDeadlineUs) fail("llmux (C++) request did not finish in 60 s");
    }
}

// Through llmux.h directly, with a host-side event array as a C program keeps one.
std::pair<double, int> via_c(llmux_engine* engine, std::array<llmux_event, kBatch>& events, const std::string& body) {
    auto t = Clock::now();
    std::uint64_t id = 0;
    char* err = nullptr;
    llmux_result rc = llmux_submit(engine, LLMUX_PROTOCOL_OPENAI, body.data(), body.size(), &id, &err);
    if (rc != LLMUX_RESULT_OK) {
        std::string msg = err != nullptr ? err : llmux_result_text(rc);
        llmux_string_free(err);
        fail("llmux_submit: " + msg);
    }
    int chunks = 0;
    for (;;) {
        std::size_t n = 0;
        if (llmux_poll(engine, events.data(), events.size(), 1000, &n) != LLMUX_RESULT_OK) fail("llmux_poll failed");
        bool done = false, failed = false;
        for (std::size_t i = 0; i < n; ++i) {
            const llmux_event& ev = events[i];
            if (ev.request_id != id) continue;
            if (ev.kind == LLMUX_EVENT_KIND_CHUNK) ++chunks;
            if (ev.kind == LLMUX_EVENT_KIND_DONE) done = true;
            if (ev.kind == LLMUX_EVENT_KIND_ERROR) failed = true;
        }
        llmux_events_free(events.data(), n);
        if (failed) fail("llmux (C ABI) request failed");
        if (done) return {us_since(t), chunks};
        if (us_since(t) > kDeadlineUs) fail("llmux (C ABI) request did not finish in 60 s");
    }
}

std::pair<double, int> via_raw(RawClient& raw, const std::string& body, bool stream) {
    auto t = Clock::now();
    SseCounter sse;
    std::string resp = stream ? raw.post(body, true, [&](const char* p, std::size_t n) { sse.feed(p, n); })
                              : raw.post(body, false);
    if (resp.empty()) fail("empty response from the mock");
    return {us_since(t), sse.events};
}

// ------------------------------------------------------------ statistics

double pct(std::vector<double> v, double p) {
    std::sort(v.begin(), v.end());
    std::size_t i = static_cast<std::size_t>(p * static_cast<double>(v.size() - 1) + 0.5);
    return v[std::min(v.size() - 1, i)];
}

struct Spread {
    double min, median, max;
};

// quantile(a) - quantile(b) per block of paired samples: min / median / max.
Spread block_spread(const std::vector<double>& a, const std::vector<double>& b, std::size_t blocks, double p) {
    std::size_t n = a.size() / blocks;
    std::vector<double> v;
    for (std::size_t i = 0; i < blocks; ++i) {
        std::vector<double> x(a.begin() + static_cast<long>(i * n), a.begin() + static_cast<long>((i + 1) * n));
        std::vector<double> y(b.begin() + static_cast<long>(i * n), b.begin() + static_cast<long>((i + 1) * n));
        v.push_back(pct(x, p) - pct(y, p));
    }
    std::sort(v.begin(), v.end());
    return {v.front(), pct(v, 0.5), v.back()};
}

std::string fmt(double x, int decimals = 1) {
    char b[64];
    std::snprintf(b, sizeof b, "%.*f", decimals, x);
    return b;
}

std::string json_str(const std::string& s) {
    std::string o = "\"";
    for (char c : s) {
        if (c == '"' || c == '\\') o += '\\';
        o += c;
    }
    return o + "\"";
}

// One case object: {"case", "description", "metrics", "checks"}, the shape of
// the Python and Go host benches.
struct Case {
    std::string name, description;
    std::vector<std::pair<std::string, std::string>> metrics;  // key, JSON value
    std::vector<std::string> checks;                           // JSON objects

    void m(const std::string& k, double v) { metrics.emplace_back(k, std::isfinite(v) ? fmt(v) : "null"); }
    void m(const std::string& k, long v) { metrics.emplace_back(k, std::to_string(v)); }
    void check(const std::string& figure, const std::string& value, const std::string& target, bool pass) {
        checks.push_back("{\"figure\": " + json_str(figure) + ", \"value\": " + json_str(value) +
                         ", \"target\": " + json_str(target) + ", \"pass\": " + (pass ? "true" : "false") + "}");
    }
    std::string json() const {
        std::string o = "{\"case\": " + json_str(name) + ", \"description\": " + json_str(description) + ", \"metrics\": {";
        for (std::size_t i = 0; i < metrics.size(); ++i)
            o += (i ? ", " : "") + json_str(metrics[i].first) + ": " + metrics[i].second;
        o += "}, \"checks\": [";
        for (std::size_t i = 0; i < checks.size(); ++i) o += (i ? ", " : "") + checks[i];
        return o + "]}";
    }
};

// The samples of one comparison: C++ wrapper, C ABI, raw socket, in step.
struct Samples {
    std::vector<double> cpp, c, raw;
};

// Metrics for the C++ and C ABI paths against raw, and the 2x check.
Case make_case(const std::string& name, const std::string& desc, const Samples& s, const std::string& what) {
    Case k{name, desc, {}, {}};
    k.m("samples", static_cast<long>(s.raw.size()));
    double raw50 = pct(s.raw, 0.5), raw99 = pct(s.raw, 0.99);
    k.m("raw_socket_p50_us", raw50);
    k.m("raw_socket_p99_us", raw99);
    double added50[2];
    const std::pair<const char*, const std::vector<double>*> paths[] = {{"cpp", &s.cpp}, {"c_abi", &s.c}};
    for (int i = 0; i < 2; ++i) {
        std::string p = paths[i].first;
        const std::vector<double>& v = *paths[i].second;
        added50[i] = pct(v, 0.5) - raw50;
        Spread b50 = block_spread(v, s.raw, 10, 0.5);
        Spread b99 = block_spread(v, s.raw, 10, 0.99);
        k.m(p + "_p50_us", pct(v, 0.5));
        k.m(p + "_p99_us", pct(v, 0.99));
        k.m(p + "_added_p50_us", added50[i]);
        k.m(p + "_added_p99_us", pct(v, 0.99) - raw99);
        k.m(p + "_added_p50_block_min_us", b50.min);
        k.m(p + "_added_p50_block_median_us", b50.median);
        k.m(p + "_added_p50_block_max_us", b50.max);
        k.m(p + "_added_p99_block_median_us", b99.median);
    }
    k.m("cpp_minus_c_abi_p50_us", pct(s.cpp, 0.5) - pct(s.c, 0.5));
    double ratio = added50[0] / added50[1];
    k.metrics.emplace_back("cpp_over_c_abi_added_p50_ratio", std::isfinite(ratio) ? fmt(ratio, 2) : "null");
    k.check("C++ " + what + " within 2x of C ABI's",
            fmt(added50[0]) + " us vs C ABI " + fmt(added50[1]) + " us (" + fmt(ratio, 2) + "x)", "<= 2x C ABI",
            added50[0] <= 2.0 * added50[1]);
    return k;
}

// Runs the three paths `n` times after `warm` rounds. Each round runs them in
// the next of the six orders, so each path follows each other path equally
// often: the one that runs after an llmux call finds the library's code warm
// in the caches, and no path gets that more often than another.
Samples interleave(int warm, int n, const std::array<std::function<double()>, 3>& paths) {
    static const int orders[6][3] = {{0, 1, 2}, {0, 2, 1}, {1, 0, 2}, {1, 2, 0}, {2, 0, 1}, {2, 1, 0}};
    for (int i = 0; i < warm; ++i)
        for (const auto& f : paths) f();
    Samples s;
    std::vector<double>* out[3] = {&s.cpp, &s.c, &s.raw};
    for (int i = 0; i < n; ++i)
        for (int which : orders[i % 6]) out[which]->push_back(paths[static_cast<std::size_t>(which)]());
    return s;
}

// With two CPUs or more: the fleet on CPU 1 (a child inherits the affinity
// set while it starts), this process and the engines' threads on CPU 0.
struct Pinning {
    bool on = sysconf(_SC_NPROCESSORS_ONLN) >= 2;
    void to(int cpu) const {
        if (!on) return;
        cpu_set_t s;
        CPU_ZERO(&s);
        CPU_SET(cpu, &s);
        if (sched_setaffinity(0, sizeof s, &s) != 0) fail("sched_setaffinity failed");
    }
};

// The fleet binary: $LLMUX_FLEET_BIN, else what fleet.hpp picks.
void choose_fleet_binary() {
    const char* bin = std::getenv("LLMUX_FLEET_BIN");
    if (bin != nullptr && *bin != '\0') setenv("LLMUX_FLEET", bin, 1);
}

int port_of(const std::string& url) {
    std::size_t colon = url.rfind(':');
    return std::atoi(url.c_str() + colon + 1);
}

struct Args {
    bool quick = false;
    std::string json;
    int worker_threads = 1;
};

Args parse_args(int argc, char** argv) {
    Args a;
    for (int i = 1; i < argc; ++i) {
        std::string s = argv[i];
        if (s == "--quick") {
            a.quick = true;
        } else if (s == "--json" && i + 1 < argc) {
            a.json = argv[++i];
        } else if (s == "--worker-threads" && i + 1 < argc) {
            char* end = nullptr;
            long v = std::strtol(argv[++i], &end, 10);
            if (*argv[i] == '\0' || *end != '\0' || v < 0 || v > 1024) fail("--worker-threads: a number 0..1024");
            a.worker_threads = static_cast<int>(v);
        } else {
            fail("usage: bench_host [--quick] [--json PATH] [--worker-threads N]");
        }
    }
    return a;
}

int run(const Args& args) {
    choose_fleet_binary();
    Pinning pin;
    pin.to(1);
    llmux_test::Fleet fleet(R"({"servers":[{"name":"fast","behavior":{}}]})");
    pin.to(0);
    std::string base = fleet.url("fast");
    std::string cfg = R"({"providers":[{"slug":"fast","protocol":"openai","base_url":")" + base +
                      R"(/v1","api_key":"bench"}],"models":[{"slug":"bench/fast","endpoints":)"
                      R"([{"provider":"fast","upstream_model":"m"}]}],"health":{"explore_ratio":0.0},)"
                      R"("worker_threads":)" + std::to_string(args.worker_threads) + "}";

    // One engine per binding, each made the way its users make it.
    llmux::Engine cpp = llmux::Engine::from_json(cfg);
    llmux_engine* c = nullptr;
    char* err = nullptr;
    if (llmux_engine_new(cfg.data(), cfg.size(), &c, &err) != LLMUX_RESULT_OK) {
        std::string msg = err != nullptr ? err : "?";
        llmux_string_free(err);
        fail("llmux_engine_new: " + msg);
    }
    std::unique_ptr<llmux_engine, void (*)(llmux_engine*)> c_owner(c, llmux_engine_free);
    std::array<llmux_event, kBatch> events{};
    RawClient raw(port_of(base));

    const std::string msgs = R"("messages":[{"role":"user","content":"Say hello."}],"max_tokens":16)";
    const std::string body = R"({"model":"bench/fast",)" + msgs + "}";
    // What llmux sends upstream (byte for byte, checked against the mock's
    // recorded requests: 81 and 156 bytes).
    const std::string up = R"({"model":"m",)" + msgs + "}";
    const std::string mock = R"("mock":{"chunks":32})";
    const std::string sbody = R"({"model":"bench/fast",)" + msgs + R"(,"stream":true,)" + mock + "}";
    const std::string sup =
        R"({"model":"m",)" + msgs + R"(,"stream":true,"stream_options":{"include_usage":true},)" + mock + "}";

    std::vector<Case> cases;
    int n = args.quick ? 600 : 3000;
    Samples s = interleave(200, n,
                           {[&] { return via_cpp(cpp, body).first; }, [&] { return via_c(c, events, body).first; },
                            [&] { return via_raw(raw, up, false).first; }});
    Case k = make_case("cpp_added_c1",
                       "non-streaming, concurrency 1: llmux.hpp (Engine::submit + poll) and the C ABI called directly "
                       "(llmux_submit + llmux_poll), each on its own engine, vs a raw-socket HTTP/1.1 client in C++ "
                       "to the same mock, interleaved; added = quantile(path) - quantile(raw), spread over 10 blocks",
                       s, "added p50");
    k.m("worker_threads", static_cast<long>(args.worker_threads));
    cases.push_back(k);

    int ns = args.quick ? 180 : 1200;
    int chunks[3] = {0, 0, 0};
    Samples st = interleave(30, ns,
                            {[&] {
                                 auto r = via_cpp(cpp, sbody);
                                 chunks[0] = r.second;
                                 return r.first;
                             },
                             [&] {
                                 auto r = via_c(c, events, sbody);
                                 chunks[1] = r.second;
                                 return r.first;
                             },
                             [&] {
                                 auto r = via_raw(raw, sup, true);
                                 chunks[2] = r.second;
                                 return r.first;
                             }});
    k = make_case("cpp_added_stream32",
                  "streams of 32 content chunks at concurrency 1, read to the end: llmux.hpp and the C ABI vs the "
                  "raw-socket client reading every SSE event; total time per stream, interleaved",
                  st, "stream total added p50");
    k.m("chunk_events_cpp", static_cast<long>(chunks[0]));
    k.m("chunk_events_c_abi", static_cast<long>(chunks[1]));
    k.m("sse_events_raw", static_cast<long>(chunks[2]));
    k.m("worker_threads", static_cast<long>(args.worker_threads));
    cases.push_back(k);

    std::string list = "[\n";
    for (std::size_t i = 0; i < cases.size(); ++i) {
        std::cout << cases[i].json() << "\n";
        list += (i ? ",\n" : "") + cases[i].json();
    }
    if (!args.json.empty()) {
        std::ofstream f(args.json);
        f << list << "\n]\n";
        if (!f) fail("cannot write " + args.json);
    }
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    try {
        return run(parse_args(argc, argv));
    } catch (const std::exception& e) {
        std::cerr << "bench_host: " << e.what() << "\n";
        return 1;
    }
}
