//! The C ABI. Everything `extern "C"` lives here, and so does all pointer
//! handling: each function checks its pointers, runs its body inside a panic
//! boundary, and returns an `llmux_result`.
//!
//! Conventions (as in rustls-ffi): the object comes first, then inputs, then
//! outputs; outputs are written only on success; buffers come with a length;
//! every allocation handed to the host has exactly one NULL-safe free.

#![allow(non_camel_case_types)]
#![allow(clippy::missing_safety_doc)]

mod result;

pub use result::llmux_result;

use crate::engine::{Engine, EngineError, SubmitError};
use crate::events::{Event, EventKind};
use crate::protocol::Protocol;
use crate::request::RequestError;
use std::ffi::{c_char, c_int, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Once;
use std::time::Duration;

/// An engine: the catalog, the health table, the worker threads and the
/// event queue. Opaque; create with `llmux_engine_new`, destroy with
/// `llmux_engine_free`.
pub struct llmux_engine {
    _private: [u8; 0],
}

/// The protocol of a request body and of the events it produces.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum llmux_protocol {
    /// OpenAI Chat Completions.
    Openai = 0,
    /// Anthropic Messages.
    Anthropic = 1,
    /// OpenAI Responses (`POST /responses`).
    Responses = 2,
    /// Google Gemini `GenerateContentRequest`; the model and the stream
    /// flag, which Gemini puts in the URL, go in the body as `model` and
    /// `stream`.
    Gemini = 3,
}

/// What an event is. More kinds may be added; ignore unknown ones.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum llmux_event_kind {
    /// A stream chunk: an OpenAI `chat.completion.chunk`, an Anthropic
    /// stream event or a Responses stream event (their `type` names the
    /// event), as JSON.
    Chunk = 1,
    /// Terminal: the request succeeded. JSON
    /// `{"type":"done","response":{...},"error_kind":null,"outcome":"success","routing":{...}}`;
    /// `response` (the full body in the caller's protocol) only for
    /// non-streaming requests.
    Done = 2,
    /// Terminal: the request failed or was cancelled. JSON
    /// `{"type":"error","status":N,"error":{...},"error_kind":"...","outcome":"...","routing":{...}}`
    /// with the error body in the caller's protocol (its message names the
    /// provider and endpoint that failed) and `error_kind`, the same for
    /// both protocols: invalid_request, authentication, permission,
    /// not_found, rate_limit, timeout, upstream, overloaded, cancelled,
    /// internal, no_endpoint_matches (the request's provider preferences
    /// left no endpoint; status 404). `outcome` is the finer name the routing record's attempts
    /// use (`auth_rejected`, `connect_error`, `connection_closed`, ...; see
    /// docs/errors.md).
    Error = 3,
}

/// One event, filled in by `llmux_poll`.
///
/// `data` points to `data_len` bytes of UTF-8 JSON followed by a NUL byte.
/// It is owned by the event and stays valid until `llmux_events_free` is
/// called on it; it is not tied to the engine and may outlive it.
#[repr(C)]
pub struct llmux_event {
    /// The id `llmux_submit` returned.
    pub request_id: u64,
    pub kind: llmux_event_kind,
    pub data: *const c_char,
    pub data_len: usize,
}

thread_local! {
    /// Set while a thread runs inside an llmux C entry point.
    static IN_LLMUX: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// The library never writes to stderr: a panic inside llmux (in a C entry
/// point or on an engine thread) becomes an error code or an error event,
/// and its message is not printed. Panics anywhere else in the process still
/// go to the hook that was installed before.
fn silence_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let ours = IN_LLMUX.with(|f| f.get())
                || std::thread::current()
                    .name()
                    .is_some_and(|n| n.starts_with("llmux-"));
            if !ours {
                previous(info);
            }
        }));
    });
}

/// Runs `f`, turning a panic into `LLMUX_ERR_PANIC`.
fn guard(f: impl FnOnce() -> llmux_result) -> llmux_result {
    let outer = IN_LLMUX.with(|flag| flag.replace(true));
    let r = catch_unwind(AssertUnwindSafe(f)).unwrap_or(llmux_result::ErrPanic);
    IN_LLMUX.with(|flag| flag.set(outer));
    r
}

/// Borrows the engine behind a handle.
unsafe fn engine_ref<'a>(e: *const llmux_engine) -> Option<&'a Engine> {
    // SAFETY: a non-NULL handle was produced by llmux_engine_new (a boxed
    // Engine) and the caller guarantees it was not freed.
    (e as *const Engine).as_ref()
}

/// Borrows `len` bytes at `ptr` as UTF-8.
unsafe fn str_arg<'a>(ptr: *const c_char, len: usize) -> Result<&'a str, llmux_result> {
    if ptr.is_null() {
        return Err(llmux_result::ErrNullArgument);
    }
    // SAFETY: the caller guarantees ptr points to len readable bytes.
    let bytes = std::slice::from_raw_parts(ptr as *const u8, len);
    std::str::from_utf8(bytes).map_err(|_| llmux_result::ErrInvalidUtf8)
}

fn to_c_string(s: String) -> *mut c_char {
    to_c_string_len(s).0
}

/// A NUL-terminated heap copy and its length (interior NULs cannot occur in
/// our JSON; any would be replaced).
fn to_c_string_len(s: String) -> (*mut c_char, usize) {
    // One SIMD scan for a NUL (every event's JSON passes here).
    let s = if memchr::memchr(0, s.as_bytes()).is_some() {
        s.replace('\0', "\u{FFFD}")
    } else {
        s
    };
    let len = s.len();
    // SAFETY: `s` holds no NUL byte: any was replaced just above.
    let c = unsafe { std::ffi::CString::from_vec_unchecked(s.into_bytes()) };
    (c.into_raw(), len)
}

/// Writes `render(engine)` to `*json_out`, inside the panic boundary.
unsafe fn write_json(
    engine: *const llmux_engine,
    json_out: *mut *mut c_char,
    render: fn(&Engine) -> String,
) -> llmux_result {
    guard(|| {
        let Some(engine) = engine_ref(engine) else {
            return llmux_result::ErrNullArgument;
        };
        if json_out.is_null() {
            return llmux_result::ErrNullArgument;
        }
        *json_out = to_c_string(render(engine));
        llmux_result::Ok
    })
}

/// The message for a bad pointer or string argument.
fn arg_error(code: llmux_result, name: &str) -> String {
    match code {
        llmux_result::ErrNullArgument => format!("`{name}` is NULL"),
        llmux_result::ErrInvalidUtf8 => format!("`{name}` is not valid UTF-8"),
        _ => format!("`{name}` is invalid"),
    }
}

/// Writes an error message to an optional `char **error_out`.
unsafe fn set_error(error_out: *mut *mut c_char, msg: String) {
    if !error_out.is_null() {
        // SAFETY: the caller passed a writable char* location (or NULL).
        *error_out = to_c_string(msg);
    }
}

/// The library version, e.g. `"0.1.0"`. Static; never free it.
#[no_mangle]
pub extern "C" fn llmux_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr() as *const c_char
}

/// A static, NUL-terminated description of a result code (any value,
/// including unknown ones). Never free it.
#[no_mangle]
pub extern "C" fn llmux_result_text(code: u32) -> *const c_char {
    result::text(code).as_ptr() as *const c_char
}

fn engine_new(
    make: impl FnOnce() -> Result<Engine, EngineError>,
    engine_out: *mut *mut llmux_engine,
    error_out: *mut *mut c_char,
) -> llmux_result {
    silence_panics();
    if engine_out.is_null() {
        // SAFETY: error_out is NULL or writable, per the contract.
        unsafe {
            set_error(
                error_out,
                arg_error(llmux_result::ErrNullArgument, "engine_out"),
            )
        };
        return llmux_result::ErrNullArgument;
    }
    match make() {
        Ok(engine) => {
            // SAFETY: engine_out checked non-NULL above.
            unsafe { *engine_out = Box::into_raw(Box::new(engine)) as *mut llmux_engine };
            llmux_result::Ok
        }
        Err(e) => {
            let code = match e {
                EngineError::Config(_) => llmux_result::ErrInvalidConfig,
                EngineError::Runtime(_) => llmux_result::ErrRuntime,
            };
            // SAFETY: error_out is NULL or writable, per the contract.
            unsafe { set_error(error_out, e.to_string()) };
            code
        }
    }
}

/// Creates an engine from `config_len` bytes of JSON config at `config_json`
/// (no NUL terminator needed).
///
/// On success writes the new engine to `*engine_out` and returns `LLMUX_OK`.
/// On failure returns the error code and, when `error_out` is not NULL,
/// writes a readable message naming the JSON path of each problem to
/// `*error_out`; free it with `llmux_string_free`. `error_out` may be NULL.
/// The engine starts its own worker threads. Free it with `llmux_engine_free`.
#[no_mangle]
pub unsafe extern "C" fn llmux_engine_new(
    config_json: *const c_char,
    config_len: usize,
    engine_out: *mut *mut llmux_engine,
    error_out: *mut *mut c_char,
) -> llmux_result {
    guard(|| {
        let text = match str_arg(config_json, config_len) {
            Ok(t) => t,
            Err(e) => {
                set_error(error_out, arg_error(e, "config_json"));
                return e;
            }
        };
        engine_new(|| Engine::from_json(text), engine_out, error_out)
    })
}

/// Like `llmux_engine_new`, reading the config from the file at the
/// NUL-terminated `path`.
#[no_mangle]
pub unsafe extern "C" fn llmux_engine_new_from_file(
    path: *const c_char,
    engine_out: *mut *mut llmux_engine,
    error_out: *mut *mut c_char,
) -> llmux_result {
    guard(|| {
        if path.is_null() {
            set_error(error_out, arg_error(llmux_result::ErrNullArgument, "path"));
            return llmux_result::ErrNullArgument;
        }
        // SAFETY: the caller passes a NUL-terminated string.
        let p = match CStr::from_ptr(path).to_str() {
            Ok(p) => p,
            Err(_) => {
                set_error(error_out, arg_error(llmux_result::ErrInvalidUtf8, "path"));
                return llmux_result::ErrInvalidUtf8;
            }
        };
        engine_new(
            || Engine::from_file(std::path::Path::new(p)),
            engine_out,
            error_out,
        )
    })
}

/// Destroys an engine: cancels every in-flight request, waits (up to a few
/// seconds) for them to end, joins the worker threads and frees everything,
/// including events not yet polled. NULL is a no-op.
///
/// No other thread may be using the engine during or after this call (wake
/// blocked pollers with `llmux_wakeup` and join them first). Events already
/// returned by `llmux_poll` stay valid until `llmux_events_free`.
#[no_mangle]
pub unsafe extern "C" fn llmux_engine_free(engine: *mut llmux_engine) {
    let _ = guard(|| {
        if !engine.is_null() {
            // SAFETY: engine came from Box::into_raw in llmux_engine_new and
            // is freed once, per the contract.
            drop(Box::from_raw(engine as *mut Engine));
        }
        llmux_result::Ok
    });
}

/// Submits a request: `request_len` bytes of JSON at `request_json`, in the
/// given `protocol` (an `llmux_protocol` value). Never blocks on the network.
///
/// On success writes the request id (never 0) to `*request_id_out`. The
/// request then produces zero or more `CHUNK` events and exactly one `DONE`
/// or `ERROR` event, all carrying that id. On failure nothing was started, no
/// event will follow, and when `error_out` is not NULL a message naming what
/// is wrong (and what exists, for unknown models, providers and endpoints) is
/// written to `*error_out` (free with `llmux_string_free`).
///
/// Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn llmux_submit(
    engine: *const llmux_engine,
    protocol: u32,
    request_json: *const c_char,
    request_len: usize,
    request_id_out: *mut u64,
    error_out: *mut *mut c_char,
) -> llmux_result {
    llmux_submit_traced(
        engine,
        protocol,
        request_json,
        request_len,
        std::ptr::null(),
        request_id_out,
        error_out,
    )
}

/// Like `llmux_submit`, with the caller's W3C trace context: with
/// `telemetry.otlp` in the config, the request's span (`chat {model}`) is a
/// child of the span `traceparent` names, in its trace, and the parent's
/// sampled flag decides whether it is exported.
///
/// `traceparent` is a NUL-terminated W3C `traceparent` value,
/// `00-<32 hex trace id>-<16 hex parent span id>-<2 hex flags>`. NULL or
/// `""`: no parent (the same as `llmux_submit`). A value that is not UTF-8
/// (`LLMUX_ERR_INVALID_UTF8`) or not a valid traceparent
/// (`LLMUX_ERR_INVALID_ARGUMENT`, e.g. all-zero ids) is refused with a
/// message in `*error_out`, and nothing is started. Without
/// `telemetry.otlp` a valid value is accepted and unused.
///
/// Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn llmux_submit_traced(
    engine: *const llmux_engine,
    protocol: u32,
    request_json: *const c_char,
    request_len: usize,
    traceparent: *const c_char,
    request_id_out: *mut u64,
    error_out: *mut *mut c_char,
) -> llmux_result {
    guard(|| {
        let Some(engine) = engine_ref(engine) else {
            set_error(
                error_out,
                arg_error(llmux_result::ErrNullArgument, "engine"),
            );
            return llmux_result::ErrNullArgument;
        };
        if request_id_out.is_null() {
            set_error(
                error_out,
                arg_error(llmux_result::ErrNullArgument, "request_id_out"),
            );
            return llmux_result::ErrNullArgument;
        }
        let parent = match traceparent_arg(traceparent) {
            Ok(p) => p,
            Err((code, message)) => {
                set_error(error_out, message);
                return code;
            }
        };
        let protocol = match protocol {
            0 => Protocol::OpenAi,
            1 => Protocol::Anthropic,
            2 => Protocol::Responses,
            3 => Protocol::Gemini,
            other => {
                set_error(
                    error_out,
                    format!("unknown protocol {other} (0 = OpenAI, 1 = Anthropic, 2 = Responses, 3 = Gemini)"),
                );
                return llmux_result::ErrInvalidArgument;
            }
        };
        let text = match str_arg(request_json, request_len) {
            Ok(t) => t,
            Err(e) => {
                set_error(error_out, arg_error(e, "request_json"));
                return e;
            }
        };
        match engine.submit_traced(protocol, text.as_bytes(), parent) {
            Ok(id) => {
                *request_id_out = id;
                llmux_result::Ok
            }
            Err(e) => {
                let code = match &e {
                    SubmitError::ShuttingDown => llmux_result::ErrShuttingDown,
                    SubmitError::Request(r) => match r {
                        RequestError::InvalidJson(_) => llmux_result::ErrInvalidJson,
                        RequestError::Invalid(_) => llmux_result::ErrInvalidRequest,
                        RequestError::UnknownModel(_) => llmux_result::ErrUnknownModel,
                        RequestError::UnknownProvider(_) => llmux_result::ErrUnknownProvider,
                        RequestError::UnknownEndpoint(_) => llmux_result::ErrUnknownEndpoint,
                        RequestError::TooLarge(_) => llmux_result::ErrRequestTooLarge,
                    },
                };
                set_error(error_out, e.to_string());
                code
            }
        }
    })
}

/// A `traceparent` argument: NULL or empty is none; anything else must be
/// a valid W3C traceparent.
unsafe fn traceparent_arg(
    ptr: *const c_char,
) -> Result<Option<crate::telemetry::TraceContext>, (llmux_result, String)> {
    if ptr.is_null() {
        return Ok(None);
    }
    // SAFETY: the caller guarantees a NUL-terminated string.
    let Ok(text) = CStr::from_ptr(ptr).to_str() else {
        let m = "traceparent is not UTF-8 text".to_owned();
        return Err((llmux_result::ErrInvalidUtf8, m));
    };
    if text.is_empty() {
        return Ok(None);
    }
    match crate::telemetry::TraceContext::parse(text) {
        Some(c) => Ok(Some(c)),
        None => {
            let shown: String = text.chars().take(80).collect();
            let m = format!(
                "traceparent `{shown}` is not a W3C traceparent \
                 (00-<32 hex trace id>-<16 hex parent span id>-<2 hex flags>, ids not all zero)"
            );
            Err((llmux_result::ErrInvalidArgument, m))
        }
    }
}

/// Cancels an in-flight request. It ends with an `ERROR` event whose
/// `error_kind` is `cancelled` (the body's type is `cancelled` for OpenAI
/// callers, `api_error` for Anthropic ones), unless it finished first:
/// every request gets exactly one terminal event either way. Returns `LLMUX_ERR_UNKNOWN_REQUEST` when
/// the id is unknown or the request already ended. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn llmux_cancel(
    engine: *const llmux_engine,
    request_id: u64,
) -> llmux_result {
    guard(|| {
        let Some(engine) = engine_ref(engine) else {
            return llmux_result::ErrNullArgument;
        };
        if engine.cancel(request_id) {
            llmux_result::Ok
        } else {
            llmux_result::ErrUnknownRequest
        }
    })
}

/// Takes up to `capacity` events into `events` and writes how many to
/// `*count_out` (0 when none arrived in time: that is not an error).
///
/// `timeout_ms`: 0 never blocks (a game loop polling once per frame), a
/// positive value waits up to that long for the first event, a negative
/// value waits until an event arrives or `llmux_wakeup` is called.
/// Each returned event owns its `data` until `llmux_events_free`.
/// Thread-safe: several threads may poll; each event goes to one of them.
/// Do not call from a thread the engine owns (there are no callbacks).
///
/// Host-driven engines (`"worker_threads": 0`) have no thread of their own:
/// their upstream I/O, timers and request tasks run inside this call, on
/// the caller's thread, while it waits; timeout 0 runs the I/O that is
/// ready once and returns. Poll regularly (or block here) while requests
/// are in flight.
#[no_mangle]
pub unsafe extern "C" fn llmux_poll(
    engine: *const llmux_engine,
    events: *mut llmux_event,
    capacity: usize,
    timeout_ms: i32,
    count_out: *mut usize,
) -> llmux_result {
    guard(|| {
        let Some(engine) = engine_ref(engine) else {
            return llmux_result::ErrNullArgument;
        };
        if count_out.is_null() || (events.is_null() && capacity > 0) {
            return llmux_result::ErrNullArgument;
        }
        let timeout = if timeout_ms < 0 {
            None
        } else {
            Some(Duration::from_millis(timeout_ms as u64))
        };
        let mut n = 0usize;
        engine.poll(capacity, timeout, |ev: Event| {
            let Event {
                request_id,
                kind,
                data,
            } = ev;
            let (data, data_len) = to_c_string_len(data);
            // SAFETY: n < capacity (poll yields at most `capacity` events)
            // and `events` points to `capacity` writable slots.
            events.add(n).write(llmux_event {
                request_id,
                kind: match kind {
                    EventKind::Chunk => llmux_event_kind::Chunk,
                    EventKind::Done => llmux_event_kind::Done,
                    EventKind::Error => llmux_event_kind::Error,
                },
                data,
                data_len,
            });
            n += 1;
        });
        *count_out = n;
        llmux_result::Ok
    })
}

/// Frees the data of `count` events returned by `llmux_poll` and sets each
/// `data` to NULL, so freeing the same array twice is harmless. NULL is a
/// no-op.
#[no_mangle]
pub unsafe extern "C" fn llmux_events_free(events: *mut llmux_event, count: usize) {
    let _ = guard(|| {
        if events.is_null() {
            return llmux_result::Ok;
        }
        for i in 0..count {
            // SAFETY: the caller passes `count` events from llmux_poll.
            // Raw field access only: a slot the host zeroed or never had
            // filled holds no valid `kind`, and must not be read as one.
            let ev = events.add(i);
            let data = std::ptr::addr_of_mut!((*ev).data);
            if !(*data).is_null() {
                // SAFETY: data came from CString::into_raw in llmux_poll.
                drop(std::ffi::CString::from_raw(*data as *mut c_char));
                *data = std::ptr::null();
                *std::ptr::addr_of_mut!((*ev).data_len) = 0;
            }
        }
        llmux_result::Ok
    });
}

/// Makes one blocked `llmux_poll` (or the next call) return at once with no
/// events. Wakeups add up: n calls release n polls (to release every
/// blocked poller, call it once per poller). Callable from any thread, including signal-free contexts such as
/// another thread's event loop.
#[no_mangle]
pub unsafe extern "C" fn llmux_wakeup(engine: *const llmux_engine) -> llmux_result {
    guard(|| {
        let Some(engine) = engine_ref(engine) else {
            return llmux_result::ErrNullArgument;
        };
        engine.wakeup();
        llmux_result::Ok
    })
}

/// Writes a file descriptor to `*fd_out` that is readable while events are
/// waiting to be polled (level-triggered). Add it to select/poll/epoll or an
/// event loop; when it is readable call `llmux_poll` with timeout 0. Do not
/// read from, write to or close it; it lives as long as the engine.
#[no_mangle]
pub unsafe extern "C" fn llmux_engine_fd(
    engine: *const llmux_engine,
    fd_out: *mut c_int,
) -> llmux_result {
    guard(|| {
        let Some(engine) = engine_ref(engine) else {
            return llmux_result::ErrNullArgument;
        };
        if fd_out.is_null() {
            return llmux_result::ErrNullArgument;
        }
        match engine.fd() {
            Some(fd) => {
                *fd_out = fd;
                llmux_result::Ok
            }
            None => llmux_result::ErrRuntime,
        }
    })
}

/// Writes a JSON snapshot of every endpoint's health and price to
/// `*json_out` (free with `llmux_string_free`): first-token latency and
/// throughput EWMAs, error rate, in-flight count, counters, circuit state,
/// rate-limit time left, price; and `shared` (health shared on Redis/Valkey:
/// `enabled`, `connected`, `last_sync_ms_ago`, ...; per endpoint what the
/// other instances know). Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn llmux_stats(
    engine: *const llmux_engine,
    json_out: *mut *mut c_char,
) -> llmux_result {
    write_json(engine, json_out, Engine::stats_json)
}

/// Writes the health of every endpoint (latency and throughput averages,
/// recent first-token latencies, error rate, ejections, time left on an open
/// circuit or a Retry-After) as JSON to `*json_out`, for
/// `llmux_health_import` in a later run, so a restarted app starts warm.
/// Free with `llmux_string_free`. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn llmux_health_export(
    engine: *const llmux_engine,
    json_out: *mut *mut c_char,
) -> llmux_result {
    write_json(engine, json_out, Engine::export_health)
}

/// The engine behind a handle and the `len` bytes of UTF-8 text at `ptr`
/// (the argument called `name`); for a bad argument, its code, with the
/// message naming the argument written to `*error_out` (when not NULL).
unsafe fn engine_and_text<'a>(
    engine: *const llmux_engine,
    ptr: *const c_char,
    len: usize,
    name: &str,
    error_out: *mut *mut c_char,
) -> Result<(&'a Engine, &'a str), llmux_result> {
    let Some(engine) = engine_ref(engine) else {
        set_error(
            error_out,
            arg_error(llmux_result::ErrNullArgument, "engine"),
        );
        return Err(llmux_result::ErrNullArgument);
    };
    match str_arg(ptr, len) {
        Ok(text) => Ok((engine, text)),
        Err(e) => {
            set_error(error_out, arg_error(e, name));
            Err(e)
        }
    }
}

/// Restores health written by `llmux_health_export` (`json_len` bytes at
/// `json`). Entries for endpoints this engine's catalog does not have are
/// skipped; the number restored is written to `*restored_out` unless it is
/// NULL. Malformed JSON gives `LLMUX_RESULT_ERR_INVALID_JSON` and, when
/// `error_out` is not NULL, a message. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn llmux_health_import(
    engine: *const llmux_engine,
    json: *const c_char,
    json_len: usize,
    restored_out: *mut usize,
    error_out: *mut *mut c_char,
) -> llmux_result {
    guard(|| {
        let (engine, text) = match engine_and_text(engine, json, json_len, "json", error_out) {
            Ok(args) => args,
            Err(code) => return code,
        };
        match engine.import_health(text) {
            Ok(n) => {
                if !restored_out.is_null() {
                    *restored_out = n;
                }
                llmux_result::Ok
            }
            Err(m) => {
                set_error(error_out, m);
                llmux_result::ErrInvalidJson
            }
        }
    })
}

/// Replaces the engine's catalog with the one in `config_len` bytes of JSON
/// config at `config_json`, live, losing nothing: endpoints in both
/// catalogs (same model, provider and endpoint name) keep their health,
/// latency percentiles, circuit and sticky keys; requests in flight finish
/// on the catalog they started with (a removed endpoint drains); requests
/// submitted after this call returns use the new one.
///
/// The new config is validated first: when invalid, nothing changes,
/// `LLMUX_RESULT_ERR_INVALID_CONFIG` is returned and, when `error_out` is
/// not NULL, a message naming the JSON path of every problem is written to
/// `*error_out`. On success, when `report_out` is not NULL, a JSON report
/// is written to it: `generation`, `added`, `removed` and `kept` (lists of
/// `{"model", "endpoint"}`), `draining_requests`, `restart_required`
/// (settings that only a restart applies: `worker_threads`) and
/// `warnings`. Free either string with `llmux_string_free`. Thread-safe;
/// reloads are applied one at a time.
#[no_mangle]
pub unsafe extern "C" fn llmux_engine_reload(
    engine: *const llmux_engine,
    config_json: *const c_char,
    config_len: usize,
    report_out: *mut *mut c_char,
    error_out: *mut *mut c_char,
) -> llmux_result {
    guard(|| {
        let (engine, text) =
            match engine_and_text(engine, config_json, config_len, "config_json", error_out) {
                Ok(args) => args,
                Err(code) => return code,
            };
        match engine.reload_json(text) {
            Ok(report) => {
                if !report_out.is_null() {
                    *report_out = to_c_string(report.to_json());
                }
                llmux_result::Ok
            }
            Err(errs) => {
                set_error(error_out, errs.to_string());
                llmux_result::ErrInvalidConfig
            }
        }
    })
}

/// Frees a string llmux allocated (`error_out`, `llmux_stats`,
/// `llmux_health_export`, `llmux_engine_reload`'s report). NULL is a no-op.
#[no_mangle]
pub unsafe extern "C" fn llmux_string_free(s: *mut c_char) {
    let _ = guard(|| {
        if !s.is_null() {
            // SAFETY: s came from CString::into_raw in this library.
            drop(std::ffi::CString::from_raw(s));
        }
        llmux_result::Ok
    });
}
