// llmux.hpp: a header-only C++17 wrapper around the llmux C API (llmux.h).
//
// Link the C library (libllmux.so or libllmux.a) and include this header:
//
//     llmux::Engine engine = llmux::Engine::from_json(config_json);
//     llmux::RequestId id = engine.submit(llmux::Protocol::OpenAI, request_json);
//     for (bool done = false; !done;) {
//         for (const llmux::Event& ev : engine.poll(32, std::chrono::milliseconds(100))) {
//             if (ev.request_id == id && ev.terminal()) done = true;
//             handle(ev);   // ev.data: the event's JSON
//         }
//     }
//
// Errors. Every throwing function reports a failed C call by throwing
// `llmux::Error` (a `std::runtime_error`) whose `code()` is the C result code
// and whose `what()` is the library's message (for configs it names the JSON
// path of each problem). Each throwing operation that can fail for reasons
// outside the program's control also has a `try_` variant that returns a
// `llmux::Result<T>` instead of throwing an `llmux::Error`; only
// `std::bad_alloc` can escape those.
//
// Thread safety. Every `const` member function of `Engine` (submit, cancel,
// poll, wakeup, fd, stats, health_export, health_import, reload, and their
// try_ variants) may be called from any
// thread at the same time as any other `const` member function, as in the C
// API. Destroying, moving from, moving into or `reset()`ing an Engine must
// not happen while another thread is using it: wake blocked pollers with
// `wakeup()` and join them first. Events are plain values independent of the
// engine. llmux never calls back into the program.
//
// Nothing here goes beyond the C API: every member is one C call (plus
// copying and freeing), and `native_handle()` gives the C handle for
// anything else.

#ifndef LLMUX_HPP
#define LLMUX_HPP

#include "llmux.h"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace llmux {

// ------------------------------------------------------------------ basics

// The id `Engine::submit` returns (never 0); every event carries it.
using RequestId = std::uint64_t;

// The protocol of a request body and of the events it produces.
enum class Protocol : std::uint32_t {
    OpenAI = LLMUX_PROTOCOL_OPENAI,        // OpenAI Chat Completions
    Anthropic = LLMUX_PROTOCOL_ANTHROPIC,  // Anthropic Messages
    Responses = LLMUX_PROTOCOL_RESPONSES,  // OpenAI Responses
    Gemini = LLMUX_PROTOCOL_GEMINI         // Google Gemini generateContent (model and stream in the body)
};

// What an event is. More kinds may be added to the C library; an unknown
// kind arrives as its numeric value (neither Chunk, Done nor Error) and is
// not terminal: ignore it.
enum class EventKind : std::uint32_t {
    Chunk = LLMUX_EVENT_KIND_CHUNK,  // a stream chunk in the request's protocol
    Done = LLMUX_EVENT_KIND_DONE,    // terminal: success, with the routing record
    Error = LLMUX_EVENT_KIND_ERROR   // terminal: failure or cancellation
};

// The C result codes (llmux_result), minus OK.
enum class ErrorCode : std::uint32_t {
    NullArgument = LLMUX_RESULT_ERR_NULL_ARGUMENT,
    InvalidUtf8 = LLMUX_RESULT_ERR_INVALID_UTF8,
    InvalidJson = LLMUX_RESULT_ERR_INVALID_JSON,
    InvalidConfig = LLMUX_RESULT_ERR_INVALID_CONFIG,
    InvalidRequest = LLMUX_RESULT_ERR_INVALID_REQUEST,
    UnknownModel = LLMUX_RESULT_ERR_UNKNOWN_MODEL,
    UnknownProvider = LLMUX_RESULT_ERR_UNKNOWN_PROVIDER,
    UnknownEndpoint = LLMUX_RESULT_ERR_UNKNOWN_ENDPOINT,
    UnknownRequest = LLMUX_RESULT_ERR_UNKNOWN_REQUEST,
    InvalidArgument = LLMUX_RESULT_ERR_INVALID_ARGUMENT,
    ShuttingDown = LLMUX_RESULT_ERR_SHUTTING_DOWN,
    Runtime = LLMUX_RESULT_ERR_RUNTIME,
    Panic = LLMUX_RESULT_ERR_PANIC,
    RequestTooLarge = LLMUX_RESULT_ERR_REQUEST_TOO_LARGE
};

// The library version, e.g. "0.1.0" (of the library linked, which may differ
// from LLMUX_VERSION, the version of the header compiled against).
inline std::string_view version() noexcept { return llmux_version(); }

// A static description of a result code (any value, including unknown ones).
inline std::string_view result_text(ErrorCode code) noexcept {
    return llmux_result_text(static_cast<std::uint32_t>(code));
}

// ------------------------------------------------------------------ errors

// A failed llmux call. `code()` is the C result code; `what()` is the
// library's message when it gave one (naming JSON paths for configs, and
// what exists for unknown models, providers and endpoints), otherwise the
// code's description.
class Error : public std::runtime_error {
public:
    Error(ErrorCode code, const std::string& message)
        : std::runtime_error(message.empty() ? std::string(result_text(code)) : message),
          code_(code) {}

    ErrorCode code() const noexcept { return code_; }

    // The code's static description, e.g. "the config is invalid".
    std::string_view code_text() const noexcept { return result_text(code_); }

private:
    ErrorCode code_;
};

// Either a value or an `Error`; what the `try_` functions return.
// `value()` throws the error when there is no value.
template <typename T>
class Result {
public:
    Result(T value) : v_(std::in_place_index<0>, std::move(value)) {}
    Result(Error error) : v_(std::in_place_index<1>, std::move(error)) {}

    bool ok() const noexcept { return v_.index() == 0; }
    explicit operator bool() const noexcept { return ok(); }

    T& value() & { check(); return std::get<0>(v_); }
    const T& value() const& { check(); return std::get<0>(v_); }
    T&& value() && { check(); return std::get<0>(std::move(v_)); }
    T& operator*() & { return value(); }
    const T& operator*() const& { return value(); }
    T&& operator*() && { return std::move(*this).value(); }
    T* operator->() { return &value(); }
    const T* operator->() const { return &value(); }

    // The error; precondition: !ok().
    const Error& error() const { return std::get<1>(v_); }

private:
    void check() const {
        if (!ok()) throw std::get<1>(v_);
    }
    std::variant<T, Error> v_;
};

// A success or an `Error`.
template <>
class Result<void> {
public:
    Result() = default;
    Result(Error error) : e_(std::move(error)) {}

    bool ok() const noexcept { return !e_.has_value(); }
    explicit operator bool() const noexcept { return ok(); }
    // Throws the error, if any.
    void value() const {
        if (e_) throw *e_;
    }
    // The error; precondition: !ok().
    const Error& error() const { return *e_; }

private:
    std::optional<Error> e_;
};

// ------------------------------------------------------------------ events

// One event taken by `Engine::poll`: a copy of the C event, so it owns its
// data and outlives the engine.
struct Event {
    RequestId request_id = 0;
    EventKind kind = EventKind::Chunk;
    // UTF-8 JSON: a stream chunk, or the terminal
    // {"type":"done",...,"routing":{...}} / {"type":"error","status":N,...}.
    std::string data;

    // Done or Error: the request's last event.
    bool terminal() const noexcept {
        return kind == EventKind::Done || kind == EventKind::Error;
    }
    bool is_chunk() const noexcept { return kind == EventKind::Chunk; }
    bool is_done() const noexcept { return kind == EventKind::Done; }
    bool is_error() const noexcept { return kind == EventKind::Error; }
};

namespace detail {

// Owns a string the C library allocated.
struct StringFree {
    void operator()(char* s) const noexcept { llmux_string_free(s); }
};
using CString = std::unique_ptr<char, StringFree>;

inline Error make_error(llmux_result rc, const char* message) {
    return Error(static_cast<ErrorCode>(rc), message ? std::string(message) : std::string());
}

// Frees polled events on scope exit, whatever happens while copying them.
struct EventsGuard {
    llmux_event* events;
    std::size_t count;
    ~EventsGuard() { llmux_events_free(events, count); }
};

struct EngineFree {
    void operator()(llmux_engine* e) const noexcept { llmux_engine_free(e); }
};

inline std::int32_t to_timeout_ms(std::chrono::milliseconds t) noexcept {
    auto ms = t.count();
    if (ms < 0) return -1;
    if (ms > std::numeric_limits<std::int32_t>::max()) return std::numeric_limits<std::int32_t>::max();
    return static_cast<std::int32_t>(ms);
}

}  // namespace detail

// ------------------------------------------------------------------ engine

// An llmux engine: catalog, health table, worker threads and event queue.
// Move-only. Destruction cancels in-flight requests, waits (up to a few
// seconds) for them to end and joins the engine's threads. A default
// constructed or moved-from Engine is empty: its calls fail with
// ErrorCode::NullArgument, as the C API does for a NULL engine.
class Engine {
public:
    Engine() noexcept = default;
    // Adopts an engine made with llmux_engine_new (may be NULL).
    explicit Engine(llmux_engine* adopt) noexcept : e_(adopt) {}

    Engine(Engine&&) noexcept = default;
    Engine& operator=(Engine&&) noexcept = default;
    Engine(const Engine&) = delete;
    Engine& operator=(const Engine&) = delete;
    ~Engine() = default;

    // Builds an engine from a JSON config. Throws Error (InvalidConfig with a
    // message naming each JSON path, InvalidJson, InvalidUtf8, Runtime).
    static Engine from_json(std::string_view config_json) { return try_from_json(config_json).value(); }
    static Result<Engine> try_from_json(std::string_view config_json) {
        llmux_engine* e = nullptr;
        char* err = nullptr;
        llmux_result rc = llmux_engine_new(config_json.data(), config_json.size(), &e, &err);
        detail::CString msg(err);
        if (rc != LLMUX_RESULT_OK) return detail::make_error(rc, msg.get());
        return Engine(e);
    }

    // Builds an engine from a JSON config file. A path containing a NUL
    // byte fails with InvalidArgument (the C API takes a C string).
    static Engine from_file(const std::string& path) { return try_from_file(path).value(); }
    static Result<Engine> try_from_file(const std::string& path) {
        if (path.find('\0') != std::string::npos)
            return Error(ErrorCode::InvalidArgument, "config path contains a NUL byte");
        llmux_engine* e = nullptr;
        char* err = nullptr;
        llmux_result rc = llmux_engine_new_from_file(path.c_str(), &e, &err);
        detail::CString msg(err);
        if (rc != LLMUX_RESULT_OK) return detail::make_error(rc, msg.get());
        return Engine(e);
    }

    // Starts a request (never blocks on the network) and returns its id. It
    // then produces zero or more Chunk events and exactly one terminal event.
    // Throws Error (UnknownModel / UnknownProvider / UnknownEndpoint listing
    // what exists, InvalidJson, InvalidRequest, InvalidUtf8, ...); on failure
    // nothing was started.
    RequestId submit(Protocol protocol, std::string_view request_json) const {
        return try_submit(protocol, request_json).value();
    }
    Result<RequestId> try_submit(Protocol protocol, std::string_view request_json) const {
        RequestId id = 0;
        char* err = nullptr;
        llmux_result rc = llmux_submit(e_.get(), static_cast<std::uint32_t>(protocol),
                                       request_json.data(), request_json.size(), &id, &err);
        detail::CString msg(err);
        if (rc != LLMUX_RESULT_OK) return detail::make_error(rc, msg.get());
        return id;
    }

    // The same, with the caller's W3C trace context: with telemetry.otlp in
    // the config, the request's span ("chat {model}") is a child of the span
    // `traceparent` names ("00-<32 hex>-<16 hex>-<2 hex>"; empty: no
    // parent). Throws Error(InvalidArgument) for a malformed traceparent
    // (one holding a NUL too), Error(InvalidUtf8) for one that is not UTF-8.
    RequestId submit(Protocol protocol, std::string_view request_json,
                     std::string_view traceparent) const {
        return try_submit(protocol, request_json, traceparent).value();
    }
    Result<RequestId> try_submit(Protocol protocol, std::string_view request_json,
                                 std::string_view traceparent) const {
        if (traceparent.find('\0') != std::string_view::npos)
            return detail::make_error(LLMUX_RESULT_ERR_INVALID_ARGUMENT,
                                      "traceparent holds a NUL character");
        const std::string tp(traceparent);  // NUL-terminated for the C call
        RequestId id = 0;
        char* err = nullptr;
        llmux_result rc = llmux_submit_traced(e_.get(), static_cast<std::uint32_t>(protocol),
                                              request_json.data(), request_json.size(),
                                              tp.c_str(), &id, &err);
        detail::CString msg(err);
        if (rc != LLMUX_RESULT_OK) return detail::make_error(rc, msg.get());
        return id;
    }

    // Cancels an in-flight request: it ends with one Error event of type
    // "cancelled" (unless it finished first). Throws Error(UnknownRequest)
    // when the id is unknown or the request already ended.
    void cancel(RequestId id) const { try_cancel(id).value(); }
    Result<void> try_cancel(RequestId id) const {
        llmux_result rc = llmux_cancel(e_.get(), id);
        if (rc != LLMUX_RESULT_OK) return detail::make_error(rc, nullptr);
        return {};
    }

    // Takes up to `max` events. `timeout`: 0 never blocks (poll once per
    // frame), positive waits up to that long for the first event (capped at
    // INT32_MAX ms), negative waits until an event arrives or wakeup() is
    // called. An empty vector is not an error. The C events are freed
    // before this returns, even if copying them throws.
    std::vector<Event> poll(std::size_t max = 64,
                            std::chrono::milliseconds timeout = std::chrono::milliseconds(0)) const {
        return try_poll(max, timeout).value();
    }
    Result<std::vector<Event>> try_poll(std::size_t max = 64,
                                        std::chrono::milliseconds timeout = std::chrono::milliseconds(0)) const {
        // Up to 64 C events on the stack (no allocation for a typical poll).
        llmux_event small[64];
        std::unique_ptr<llmux_event[]> big;
        llmux_event* raw = small;
        if (max > 64) {
            big.reset(new llmux_event[max]);
            raw = big.get();
        }
        std::size_t n = 0;
        llmux_result rc = llmux_poll(e_.get(), raw, max, detail::to_timeout_ms(timeout), &n);
        if (rc != LLMUX_RESULT_OK) return detail::make_error(rc, nullptr);
        detail::EventsGuard guard{raw, n};
        std::vector<Event> out;
        out.reserve(n);
        for (std::size_t i = 0; i < n; ++i) {
            const llmux_event& ev = raw[i];
            Event e;
            e.request_id = ev.request_id;
            e.kind = static_cast<EventKind>(ev.kind);
            if (ev.data != nullptr) e.data.assign(ev.data, ev.data_len);
            out.push_back(std::move(e));
        }
        return out;
    }

    // Makes one blocked poll() (or the next call) return at once with no
    // events. Callable from any thread. Wakeups are counted: n calls release
    // n polls (blocked now or made later), so to stop n pollers call wakeup()
    // n times; a wakeup no poll has consumed yet makes the next poll return
    // empty at once.
    void wakeup() const {
        llmux_result rc = llmux_wakeup(e_.get());
        if (rc != LLMUX_RESULT_OK) throw detail::make_error(rc, nullptr);
    }

    // A descriptor readable while events wait (level-triggered), for
    // select/poll/epoll; then call poll() with timeout 0. Do not read,
    // write or close it; it lives as long as the engine.
    int fd() const {
        int fd = -1;
        llmux_result rc = llmux_engine_fd(e_.get(), &fd);
        if (rc != LLMUX_RESULT_OK) throw detail::make_error(rc, nullptr);
        return fd;
    }

    // JSON health and price of every endpoint.
    std::string stats() const {
        char* json = nullptr;
        llmux_result rc = llmux_stats(e_.get(), &json);
        detail::CString owned(json);
        if (rc != LLMUX_RESULT_OK) throw detail::make_error(rc, nullptr);
        return owned ? std::string(owned.get()) : std::string();
    }

    // The health of every endpoint as JSON (latency and throughput averages,
    // error rate, ejections, open circuits, Retry-After), for
    // health_import() in a later run so a restarted program starts warm.
    std::string health_export() const {
        char* json = nullptr;
        llmux_result rc = llmux_health_export(e_.get(), &json);
        detail::CString owned(json);
        if (rc != LLMUX_RESULT_OK) throw detail::make_error(rc, nullptr);
        return owned ? std::string(owned.get()) : std::string();
    }

    // Restores health written by health_export() and returns how many
    // endpoints were restored (entries for endpoints this catalog does not
    // have are skipped). Throws Error (InvalidJson, ...) with a message.
    std::size_t health_import(std::string_view json) const { return try_health_import(json).value(); }
    Result<std::size_t> try_health_import(std::string_view json) const {
        std::size_t restored = 0;
        char* err = nullptr;
        llmux_result rc = llmux_health_import(e_.get(), json.data(), json.size(), &restored, &err);
        detail::CString msg(err);
        if (rc != LLMUX_RESULT_OK) return detail::make_error(rc, msg.get());
        return restored;
    }

    // Swaps in a new catalog live (llmux_engine_reload): endpoints in both
    // catalogs keep their health, percentiles, circuit and sticky keys;
    // requests in flight finish on the catalog they started with; requests
    // submitted afterwards use the new one. Returns the report as JSON
    // (generation, added, removed, kept, draining_requests,
    // restart_required, warnings). An invalid config changes nothing and
    // throws Error (InvalidConfig) naming every problem by its JSON path.
    std::string reload(std::string_view config_json) const { return try_reload(config_json).value(); }
    Result<std::string> try_reload(std::string_view config_json) const {
        char* report = nullptr;
        char* err = nullptr;
        llmux_result rc =
            llmux_engine_reload(e_.get(), config_json.data(), config_json.size(), &report, &err);
        detail::CString owned(report);
        detail::CString msg(err);
        if (rc != LLMUX_RESULT_OK) return detail::make_error(rc, msg.get());
        return owned ? std::string(owned.get()) : std::string();
    }

    // The library version (same as llmux::version()).
    static std::string_view version() noexcept { return llmux::version(); }

    // The C handle, still owned by this Engine (NULL when empty).
    llmux_engine* native_handle() const noexcept { return e_.get(); }
    // Gives up ownership of the C handle; the caller frees it.
    llmux_engine* release() noexcept { return e_.release(); }
    // Frees the engine now (see the destructor); the Engine becomes empty.
    void reset() noexcept { e_.reset(); }

    bool valid() const noexcept { return e_ != nullptr; }
    explicit operator bool() const noexcept { return valid(); }

private:
    std::unique_ptr<llmux_engine, detail::EngineFree> e_;
};

}  // namespace llmux

#endif  // LLMUX_HPP
