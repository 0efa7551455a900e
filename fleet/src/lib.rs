//! # llmux-fleet: a mock upstream fleet
//!
//! Real HTTP/1.1 servers on `127.0.0.1` (which also speak HTTP/2 to a
//! client that opens with the HTTP/2 preface: h2c with prior knowledge)
//! that imitate **OpenAI Chat
//! Completions**, **Anthropic Messages**, **OpenAI Responses** and **Google
//! Gemini** providers,
//! with fault injection.
//! Used by llmux's integration tests, demo, benchmarks and by tests written in
//! other languages (through the `llmux-fleet` binary).
//!
//! Every server answers on any path:
//!
//! | request | protocol |
//! |---|---|
//! | `POST …/chat/completions` | OpenAI Chat Completions (`"stream": true` for SSE) |
//! | `POST …/messages` | Anthropic Messages (`"stream": true` for SSE) |
//! | `POST …/responses` | OpenAI Responses (`"stream": true` for SSE: `response.created` … `response.completed`, with `sequence_number`) |
//! | `POST …/models/{model}:generateContent` | Google Gemini (one `GenerateContentResponse`; function calls without ids) |
//! | `POST …/models/{model}:streamGenerateContent` | Gemini stream: one chunk per `data:` event, the last with `finishReason` and `usageMetadata`, no end marker (`no_finish` drops that chunk) |
//! | `GET /_mock/requests` | JSON array of [`Recorded`] requests (control calls are not recorded) |
//! | `GET /_mock/behavior` | the current [`Behavior`] as JSON |
//! | `POST /_mock/behavior` | body = a [`Behavior`] JSON (missing keys take their defaults); replaces the behavior |
//! | `POST /_mock/reset` | forgets recorded requests, restores the behavior the server started with |
//! | `GET /_mock/health` | `{"ok":true,"name":"<server name>"}` |
//! | anything else | `404` JSON error (recorded) |
//!
//! Request JSON that does not parse gives `400`.
//!
//! ## Behavior JSON
//!
//! Every key is optional; an empty object `{}` is a healthy server that
//! answers `"Hello from NAME."` in 5 content deltas.
//!
//! ```json
//! {
//!   "status": 0,                      // 0 or 200 = success; anything else = error reply with that status
//!   "error_body": null,               // JSON to send instead of the generated error body
//!   "retry_after": "2",               // `retry-after` header, verbatim (seconds or HTTP date)
//!   "retry_after_ms": 1500,           // `retry-after-ms` header
//!   "extra_headers": {"x-should-retry": "true"},  // more response headers
//!   "headers_delay_ms": 0,            // wait before the response headers
//!   "first_token_delay_ms": 0,        // stream: wait after headers before the first content event;
//!                                     // non-stream: extra wait before the response
//!   "chunk_delay_ms": 0,              // pause between content events
//!   "chunks": 5,                      // number of text deltas (0 = 5)
//!   "text": "Hello from NAME.",       // reply text ("" = no text)
//!   "completion_tokens": null,        // default: number of text pieces + number of tool calls
//!   "prompt_tokens": 10,              // 0 = 10
//!   "stop_reason": null,              // override finish_reason / stop_reason, verbatim in the path's protocol;
//!                                     // Responses: "max_output_tokens" or "content_filter" make the response incomplete
//!   "tool_calls": [{"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}],
//!   "arg_fragment_len": 8,            // stream: argument fragment size in chars (0 = 8)
//!   "thinking": null,                 // Anthropic: a thinking block (with signature) before the text;
//!                                     // Gemini: a `thought: true` part (the first call carries a thoughtSignature);
//!                                     // Responses: a reasoning item (summary text, encrypted_content)
//!   "require_key": null,              // if set: 401 unless `Authorization: Bearer KEY` (OpenAI)
//!                                     // or `x-api-key: KEY` (Anthropic; Bearer also accepted)
//!                                     // or `x-goog-api-key: KEY` / `?key=KEY` (Gemini; Bearer also accepted)
//!   "fault": "none"                   // see below
//! }
//! ```
//!
//! `fault` is one of (externally tagged, snake_case; see [`Fault`]):
//! `"none"`, `"reset_before_headers"`, `"headers_never_finish"`,
//! `{"drop_after": N}`, `{"stall_after": N}`, `{"malformed_after": N}`,
//! `{"error_event_after": N}`, `"no_finish"`, `"no_done"`,
//! `"error_body200"`, `"empty_completion"`, `"split_utf8"`, `{"huge": BYTES}`,
//! `"keepalive"`.
//!
//! A **content event** is a stream event that carries content: an OpenAI
//! chunk with `delta.content` or `delta.tool_calls`, or an Anthropic
//! `content_block_delta` (text, thinking, signature or `input_json_delta`).
//! Faults `…_after: N` trigger after N content events; if N is at least the
//! number of content events they trigger after the last one (before the
//! finish event).
//!
//! ## Per-request override
//!
//! A request body may carry an object field `"mock"`: a partial Behavior
//! whose keys override the server's behavior for this request only. Inside
//! it, `"servers": {"NAME": {...}}` holds overrides that apply only on the
//! server called NAME (applied after the general keys). Merging is per
//! top-level key. The `mock` field is recorded as received.
//!
//! ```json
//! {"model": "gpt-4o", "messages": [...], "stream": true,
//!  "mock": {"chunks": 2, "servers": {"primary": {"status": 503, "retry_after": "1"}}}}
//! ```
//!
//! ## Rust use
//!
//! ```
//! use llmux_fleet::{Behavior, Fault, MockServer};
//! let server = MockServer::start("primary", Behavior::default()).unwrap();
//! let url = format!("{}/v1/chat/completions", server.base_url());
//! # let _ = url;
//! server.set_behavior(Behavior { status: 429, retry_after: Some("1".into()), ..Default::default() });
//! server.set_behavior(Behavior { fault: Fault::DropAfter(2), ..Default::default() });
//! assert_eq!(server.request_count(), 0);
//! ```
//!
//! Servers run on a shared background tokio runtime (2 worker threads), so
//! callers need no runtime of their own, and starting a server from inside
//! another runtime is fine. Dropping a [`MockServer`] stops it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::runtime::Runtime;
use tokio::sync::watch;

mod h2c;
mod http;
mod proto;

/// One tool call the mock reply contains.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ToolCallSpec {
    /// Function / tool name.
    pub name: String,
    /// Arguments as JSON text, e.g. `"{\"city\":\"Paris\"}"` (empty = `"{}"`).
    pub arguments: String,
}

/// Fault to inject. JSON: externally tagged, snake_case, e.g. `"none"`,
/// `{"drop_after": 2}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    /// Behave normally.
    #[default]
    None,
    /// Read the request, then close the socket (with a TCP reset) without writing anything.
    ResetBeforeHeaders,
    /// Write the status line and one header, then hold the connection open
    /// without finishing the headers, until the client closes or 120 s pass.
    HeadersNeverFinish,
    /// Stream: close the connection (FIN) after N content events, without the
    /// chunked terminator. Non-stream: send headers with the full
    /// `content-length`, then half the body, then close.
    DropAfter(usize),
    /// Stream: after N content events stop sending but keep the connection
    /// open until the client closes or 120 s pass. Non-stream: headers and half
    /// the body, then the same hold.
    StallAfter(usize),
    /// After N content events send `data: {not json` and a blank line, then
    /// continue normally. Non-stream: status 200 with body `{not json`.
    MalformedAfter(usize),
    /// After N content events send a mid-stream error event in the protocol's
    /// format (`error_body` if given) and end the stream cleanly.
    /// Non-stream: same as [`Fault::ErrorBody200`].
    ErrorEventAfter(usize),
    /// Stream: all content events, then a clean end (chunked terminator) with
    /// no finish chunk/usage/`[DONE]` (OpenAI) or no `message_delta`/`message_stop`
    /// (Anthropic). Non-stream: `finish_reason`/`stop_reason` is null.
    NoFinish,
    /// Stream: OpenAI sends finish and usage chunks but no `data: [DONE]`;
    /// Anthropic sends `message_delta` but no `message_stop`. Non-stream: no effect.
    NoDone,
    /// Status 200 with an error JSON body (non-stream) or an immediate error
    /// event (stream).
    #[serde(rename = "error_body200", alias = "error_body_200")]
    ErrorBody200,
    /// 200, well formed, no content at all (empty content, no content events),
    /// finish reason stop / end_turn.
    EmptyCompletion,
    /// Content with multi-byte characters (`text` if given, else
    /// `"héllo wörld 日本語 🎉"`); the whole response is written in 1–3 byte
    /// writes, and SSE lines end in CRLF.
    SplitUtf8,
    /// The content is this many bytes of ASCII text, in ~1 KiB deltas.
    Huge(usize),
    /// `: PROCESSING` comment lines (and, for Anthropic, `ping` events) before
    /// every content event.
    Keepalive,
}

/// How a mock server answers. Every field is optional in JSON (`#[serde(default)]`);
/// see the [crate docs](crate) for the JSON shape.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Behavior {
    /// 0 or 200 = success; any other status gives an error reply in the
    /// protocol of the path.
    pub status: u16,
    /// Error body to send instead of the generated one (also used for error events).
    pub error_body: Option<Value>,
    /// `retry-after` header value, verbatim.
    pub retry_after: Option<String>,
    /// `retry-after-ms` header value.
    pub retry_after_ms: Option<u64>,
    /// Additional response headers (name → value).
    pub extra_headers: BTreeMap<String, String>,
    /// Wait this long before writing the response headers.
    pub headers_delay_ms: u64,
    /// Stream: wait after the headers before the first content event.
    /// Non-stream: wait this long (after `headers_delay_ms`) before responding.
    pub first_token_delay_ms: u64,
    /// Pause between content events.
    pub chunk_delay_ms: u64,
    /// Number of text deltas; 0 means 5.
    pub chunks: usize,
    /// Reply text; default `"Hello from {server name}."`. `""` gives no text.
    pub text: Option<String>,
    /// Reported completion/output tokens; default = number of text pieces + number of tool calls.
    pub completion_tokens: Option<u32>,
    /// Reported prompt/input tokens; 0 means 10.
    pub prompt_tokens: u32,
    /// Override the finish reason (OpenAI) / stop reason (Anthropic), verbatim.
    pub stop_reason: Option<String>,
    /// Tool calls in the reply (after any text); finish reason becomes `tool_calls` / `tool_use`.
    pub tool_calls: Vec<ToolCallSpec>,
    /// Stream: tool-call argument fragment length in chars; 0 means 8.
    pub arg_fragment_len: usize,
    /// Anthropic only: a thinking block (with a signature) before the text.
    pub thinking: Option<String>,
    /// If set, requests without the matching key get 401.
    pub require_key: Option<String>,
    /// Fault injection.
    pub fault: Fault,
    /// Answers instead of this behavior when the request's last message
    /// carries a tool result (an Anthropic `tool_result` block, an OpenAI
    /// `tool` message or a Responses `function_call_output` item): the
    /// second turn of an agent loop.
    pub after_tool_result: Option<Box<Behavior>>,
}

impl Behavior {
    /// Parses a Behavior from JSON text (missing keys take their defaults).
    pub fn from_json(text: &str) -> serde_json::Result<Behavior> {
        serde_json::from_str(text)
    }

    /// Applies the `mock` override object of a request body (general keys,
    /// then `servers[server_name]`) on top of `self`.
    pub fn with_override(&self, mock: &Value, server_name: &str) -> Result<Behavior, String> {
        let Some(obj) = mock.as_object() else {
            return Err("\"mock\" must be an object".into());
        };
        let mut base = serde_json::to_value(self).map_err(|e| e.to_string())?;
        let map = base.as_object_mut().ok_or("behavior is not an object")?;
        for (k, v) in obj {
            if k != "servers" {
                map.insert(k.clone(), v.clone());
            }
        }
        if let Some(per) = obj.get("servers").and_then(|s| s.get(server_name)) {
            let per = per
                .as_object()
                .ok_or("\"mock.servers.NAME\" must be an object")?;
            for (k, v) in per {
                map.insert(k.clone(), v.clone());
            }
        }
        serde_json::from_value(base).map_err(|e| format!("invalid mock override: {e}"))
    }
}

/// One request a server received.
#[derive(Clone, Debug, Serialize)]
pub struct Recorded {
    /// HTTP method, e.g. `POST`.
    pub method: String,
    /// Request target as received (path, plus query string if any).
    pub path: String,
    /// `HTTP/1.1`, or `HTTP/2.0` for a request that came over h2c.
    pub version: String,
    /// Headers in arrival order; names lowercased.
    pub headers: Vec<(String, String)>,
    /// Parsed JSON body, or `Value::String` of the raw (lossy UTF-8) text if it is not JSON.
    pub body: Value,
    /// Milliseconds since the server started.
    pub at_ms: u64,
}

impl Recorded {
    /// First header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// State shared between a [`MockServer`] handle and its tasks.
pub(crate) struct Shared {
    pub name: String,
    pub initial: Behavior,
    pub behavior: Mutex<Behavior>,
    pub requests: Mutex<Vec<Recorded>>,
    pub started: Instant,
    pub counter: AtomicU64,
    /// API requests being answered now, and the most there ever were.
    pub in_flight: AtomicU64,
    pub max_in_flight: AtomicU64,
}

/// Counts one API request as being answered while it lives.
pub(crate) struct Busy<'a>(&'a Shared);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Shared {
    pub fn behavior(&self) -> Behavior {
        lock(&self.behavior).clone()
    }
    pub fn set_behavior(&self, b: Behavior) {
        *lock(&self.behavior) = b;
    }
    pub fn requests(&self) -> Vec<Recorded> {
        lock(&self.requests).clone()
    }
    pub fn reset(&self) {
        lock(&self.requests).clear();
        *lock(&self.behavior) = self.initial.clone();
    }
    pub fn busy(&self) -> Busy<'_> {
        let n = self.in_flight.fetch_add(1, Ordering::AcqRel) + 1;
        self.max_in_flight.fetch_max(n, Ordering::AcqRel);
        Busy(self)
    }
    pub fn next_id(&self) -> u64 {
        self.counter.fetch_add(1, Ordering::Relaxed) + 1
    }
    pub fn record(&self, req: &http::Request) {
        let body = match serde_json::from_slice::<Value>(&req.body) {
            Ok(v) => v,
            Err(_) => Value::String(String::from_utf8_lossy(&req.body).into_owned()),
        };
        let rec = Recorded {
            method: req.method.clone(),
            path: req.target.clone(),
            version: req.version.clone(),
            headers: req.headers.clone(),
            body,
            at_ms: self.started.elapsed().as_millis() as u64,
        };
        lock(&self.requests).push(rec);
    }
}

/// Counts the listener and live connections so that `Drop` can wait for them.
struct Tracker {
    state: Mutex<(bool, usize)>, // (listener closed, live connections)
    cv: Condvar,
}

struct ConnGuard(Arc<Tracker>);

impl Drop for ConnGuard {
    fn drop(&mut self) {
        lock(&self.0.state).1 -= 1;
        self.0.cv.notify_all();
    }
}

fn runtime() -> &'static Runtime {
    static RT: OnceLock<Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("llmux-fleet")
            .enable_all()
            .build()
            .expect("llmux-fleet: cannot build the tokio runtime")
    })
}

async fn wait_stop(rx: &mut watch::Receiver<bool>) {
    loop {
        if *rx.borrow_and_update() {
            return;
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

async fn accept_loop(
    std_listener: std::net::TcpListener,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
    tracker: Arc<Tracker>,
) {
    if let Ok(listener) = tokio::net::TcpListener::from_std(std_listener) {
        loop {
            tokio::select! {
                _ = wait_stop(&mut stop) => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        let _ = stream.set_nodelay(true);
                        lock(&tracker.state).1 += 1;
                        let guard = ConnGuard(tracker.clone());
                        let shared = shared.clone();
                        let mut stop = stop.clone();
                        tokio::spawn(async move {
                            let _guard = guard;
                            tokio::select! {
                                _ = wait_stop(&mut stop) => {}
                                _ = proto::serve_conn(stream, shared) => {}
                            }
                        });
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
                },
            }
        }
    }
    lock(&tracker.state).0 = true;
    tracker.cv.notify_all();
}

/// A running mock server. Dropping it (or calling [`MockServer::shutdown`])
/// closes its listener and live connections.
pub struct MockServer {
    shared: Arc<Shared>,
    port: u16,
    stop: watch::Sender<bool>,
    tracker: Arc<Tracker>,
}

impl std::fmt::Debug for MockServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockServer")
            .field("name", &self.shared.name)
            .field("port", &self.port)
            .finish()
    }
}

impl MockServer {
    /// Binds `127.0.0.1:0` and starts serving on the shared background runtime.
    /// Works from plain threads and from inside any tokio runtime.
    pub fn start(name: &str, behavior: Behavior) -> std::io::Result<MockServer> {
        let listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let shared = Arc::new(Shared {
            name: name.to_string(),
            initial: behavior.clone(),
            behavior: Mutex::new(behavior),
            requests: Mutex::new(Vec::new()),
            started: Instant::now(),
            counter: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            max_in_flight: AtomicU64::new(0),
        });
        let tracker = Arc::new(Tracker {
            state: Mutex::new((false, 0)),
            cv: Condvar::new(),
        });
        let (stop, stop_rx) = watch::channel(false);
        runtime().spawn(accept_loop(
            listener,
            shared.clone(),
            stop_rx,
            tracker.clone(),
        ));
        Ok(MockServer {
            shared,
            port,
            stop,
            tracker,
        })
    }

    /// The name given at start (used in the default text and in `mock.servers`).
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT` (no trailing slash).
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Replaces the behavior; takes effect for the next request.
    pub fn set_behavior(&self, b: Behavior) {
        self.shared.set_behavior(b);
    }

    /// The current behavior.
    pub fn behavior(&self) -> Behavior {
        self.shared.behavior()
    }

    /// Connections open right now (a cancelled stream's connection closes).
    pub fn live_connections(&self) -> usize {
        lock(&self.tracker.state).1
    }

    /// Every request received (except `/_mock/*` control calls), in arrival order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.requests()
    }

    /// Number of recorded requests.
    pub fn request_count(&self) -> usize {
        lock(&self.shared.requests).len()
    }

    /// API requests being answered right now.
    pub fn in_flight(&self) -> u64 {
        self.shared.in_flight.load(Ordering::Acquire)
    }

    /// The most API requests answered at once since the start or the last
    /// [`MockServer::reset_max_in_flight`].
    pub fn max_in_flight(&self) -> u64 {
        self.shared.max_in_flight.load(Ordering::Acquire)
    }

    /// Restarts the high-water mark from the current in-flight count.
    pub fn reset_max_in_flight(&self) {
        let now = self.shared.in_flight.load(Ordering::Acquire);
        self.shared.max_in_flight.store(now, Ordering::Release);
    }

    /// Forgets the recorded requests.
    pub fn clear_requests(&self) {
        lock(&self.shared.requests).clear();
    }

    /// Waits until at least `n` requests are recorded; false on timeout.
    pub fn wait_for_requests(&self, n: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.request_count() >= n {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Stops the server (same as dropping it).
    pub fn shutdown(self) {
        drop(self);
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        self.stop.send_replace(true);
        // Wait (bounded) until the listener and every connection are closed.
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut st = lock(&self.tracker.state);
        while !(st.0 && st.1 == 0) {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            st = match self.tracker.cv.wait_timeout(st, deadline - now) {
                Ok((g, _)) => g,
                Err(e) => e.into_inner().0,
            };
        }
    }
}
