//! The HTTP face: routes, callers' keys, request hand-off to the engine,
//! SSE framing, model listings, health and metrics. Routing, failover and
//! protocol translation are the engine's; handlers only parse,
//! authenticate and hand off.

use crate::config::CallerKey;
use crate::record::{self, LogFormat, LogLine, Routing, Terminal};
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use llmux::{Engine, Event, EventKind, Protocol, RequestEvents, SubmitError, SubmitOptions};
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::{json, Value};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::watch;

/// Completion routes: a path (under `/api` and without it) and the
/// protocol its bodies speak. A new protocol is one more line here.
pub const COMPLETIONS: &[(&str, Protocol)] = &[
    ("/v1/chat/completions", Protocol::OpenAi),
    ("/anthropic/v1/messages", Protocol::Anthropic),
    ("/v1/messages", Protocol::Anthropic),
    ("/v1/responses", Protocol::Responses),
];

/// Everything the handlers share.
pub struct App {
    pub engine: Arc<Engine>,
    pub keys: Vec<CallerKey>,
    pub max_body: usize,
    pub keepalive: Duration,
    pub log: LogFormat,
    pub prom: PrometheusHandle,
    /// Turns true when the drain time after SIGTERM is over: in-flight
    /// requests are cancelled.
    pub cancel_all: watch::Receiver<bool>,
    pub started: SystemTime,
}

type St = State<Arc<App>>;

pub fn router(app: Arc<App>) -> Router {
    let mut r = Router::new()
        .route("/", get(alive).head(alive))
        .route("/health", get(alive).head(alive))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics));
    for prefix in ["/api", ""] {
        for &(path, proto) in COMPLETIONS {
            r = r.route(
                &format!("{prefix}{path}"),
                post(move |s: St, h: HeaderMap, b: Body| complete(s, proto, h, b)),
            );
        }
        for path in [
            "/anthropic/v1/messages/count_tokens",
            "/v1/messages/count_tokens",
        ] {
            r = r.route(&format!("{prefix}{path}"), post(count_tokens));
        }
        r = r
            .route(&format!("{prefix}/v1/models"), get(models_by_header))
            .route(
                &format!("{prefix}/v1/models/{{vendor}}/{{name}}/endpoints"),
                get(model_endpoints),
            )
            .route(
                &format!("{prefix}/anthropic/v1/models"),
                get(anthropic_models),
            )
            .route(&format!("{prefix}/v1/stats"), get(stats));
    }
    r.fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::disable())
        .layer(tower_http::catch_panic::CatchPanicLayer::new())
        .with_state(app)
}

/// The gateway's listener: every accepted connection gets `TCP_NODELAY`.
/// With Nagle's algorithm on, a stream's small last write waited for the
/// client's delayed ACK: 40 ms at the end of every stream (issue 18).
pub fn listener(
    l: tokio::net::TcpListener,
) -> impl axum::serve::Listener<Io = tokio::net::TcpStream, Addr = std::net::SocketAddr> {
    use axum::serve::ListenerExt;
    l.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    })
}

// ---------------------------------------------------------------------------
// errors and keys

fn json_response(status: u16, body: String) -> Response {
    let mut r = (
        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY),
        body,
    )
        .into_response();
    r.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    r
}

/// llmux's own error, in the caller's protocol's envelope.
fn error(proto: Protocol, status: u16, kind: &str, message: &str) -> Response {
    let body = llmux::protocol::error_body(proto, status, kind, message);
    let mut r = json_response(status, body.to_string());
    if matches!(status, 400 | 401 | 403 | 404 | 413) {
        r.headers_mut()
            .insert("x-should-retry", HeaderValue::from_static("false"));
    }
    r
}

/// A request refused before it reached the engine: one log line (the
/// reason as its outcome), counted in `llmux_rejected_total`.
struct Rejection<'a> {
    proto: Protocol,
    status: u16,
    /// The outcome name (docs/errors.md).
    reason: &'static str,
    message: &'a str,
    model: &'a str,
    key: &'a str,
    route: Option<&'a str>,
    started: Instant,
}

impl Rejection<'_> {
    fn respond(&self, app: &App) -> Response {
        record::rejected(self.reason);
        LogLine {
            id: None,
            protocol: self.proto.as_str(),
            model: self.model,
            key: self.key,
            stream: false,
            status: self.status,
            outcome: self.reason,
            duration_ms: self.started.elapsed().as_secs_f64() * 1000.0,
            routing: None,
            error: Some(self.message),
            route: self.route,
        }
        .write(app.log);
        // OpenAI shapes: the type says the category, the code the reason.
        let kind = match self.status {
            401 => "authentication_error",
            404 => "not_found_error",
            413 => "request_too_large",
            503 => "overloaded",
            _ => "invalid_request_error",
        };
        let mut body = llmux::protocol::error_body(self.proto, self.status, kind, self.message);
        if let Some(code) = body.pointer_mut("/error/code") {
            *code = Value::from(self.reason);
        }
        let mut r = json_response(self.status, body.to_string());
        r.headers_mut()
            .insert("x-llmux-outcome", HeaderValue::from_static(self.reason));
        if self.status != 503 {
            r.headers_mut()
                .insert("x-should-retry", HeaderValue::from_static("false"));
        }
        r
    }
}

async fn not_found(State(app): St, method: Method, uri: Uri, h: HeaderMap) -> Response {
    let path = uri.path();
    let host = h
        .get("host")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("HOST:PORT");
    let route = format!("{method} {path}");
    let message = format!("no route for {route}: {}", route_hint(path, host));
    let proto = if path.contains("messages") {
        Protocol::Anthropic
    } else {
        Protocol::OpenAi
    };
    Rejection {
        proto,
        status: 404,
        reason: "unknown_route",
        message: &message,
        model: "-",
        key: "-",
        route: Some(&route),
        started: Instant::now(),
    }
    .respond(&app)
}

/// A known path with the wrong method: a 405 that says which one it takes.
async fn method_not_allowed(State(app): St, method: Method, uri: Uri) -> Response {
    let path = uri.path();
    let takes =
        if path.ends_with("/models") || path.ends_with("/endpoints") || path.ends_with("/stats") {
            "GET"
        } else {
            "POST"
        };
    let route = format!("{method} {path}");
    let message = format!("{path} takes {takes}, not {method}");
    let mut r = Rejection {
        proto: Protocol::OpenAi,
        status: 405,
        reason: "method_not_allowed",
        message: &message,
        model: "-",
        key: "-",
        route: Some(&route),
        started: Instant::now(),
    }
    .respond(&app);
    r.headers_mut()
        .insert("allow", HeaderValue::from_static(takes));
    r
}

/// What a caller who reached no route probably meant.
fn route_hint(path: &str, host: &str) -> String {
    const SERVED: &str = "llmux serves POST /v1/chat/completions, POST /v1/messages, \
        POST /v1/responses and GET /v1/models (also under /api)";
    const OTHER: &[&str] = &[
        "embeddings",
        "completions",
        "images",
        "audio",
        "moderations",
        "files",
        "batches",
        "fine_tuning",
        "assistants",
        "threads",
        "vector_stores",
        "realtime",
    ];
    let path = path.trim_end_matches('/');
    for prefix in ["/api", ""] {
        for known in [
            "/v1/chat/completions",
            "/v1/messages",
            "/v1/responses",
            "/v1/models",
        ] {
            let without = &known[3..];
            if path == format!("{prefix}{without}") {
                return format!(
                    "did you mean {prefix}{known}? Set the base URL to http://{host}{prefix}/v1"
                );
            }
            if path == format!("{prefix}/v1{known}") {
                return format!(
                    "did you mean {prefix}{known}? The base URL has /v1 twice: set it to http://{host}{prefix}"
                );
            }
        }
    }
    let last = path.rsplit('/').next().unwrap_or("");
    let first = path.trim_start_matches("/api").trim_start_matches("/v1/");
    let first = first.split('/').next().unwrap_or("");
    if OTHER.contains(&first) || OTHER.contains(&last) {
        let what = if OTHER.contains(&first) { first } else { last };
        return format!("llmux does not serve {what}; {SERVED}");
    }
    SERVED.to_owned()
}

/// The caller's key from `Authorization: Bearer` or `x-api-key`.
fn presented_key(h: &HeaderMap) -> Option<&[u8]> {
    if let Some(v) = h.get("x-api-key") {
        return Some(v.as_bytes());
    }
    let v = h.get("authorization")?.as_bytes();
    let rest = v
        .strip_prefix(b"Bearer ")
        .or_else(|| v.strip_prefix(b"bearer "))?;
    Some(rest)
}

/// The name of the caller's key (`-` when the gateway has none), or a 401
/// in the caller's protocol. Every key is compared, in constant time.
fn authorize<'a>(app: &'a App, h: &HeaderMap, proto: Protocol) -> Result<&'a str, Response> {
    use subtle::ConstantTimeEq;
    if app.keys.is_empty() {
        return Ok("-");
    }
    let given = presented_key(h).unwrap_or(b"");
    let mut found = None;
    for k in &app.keys {
        if bool::from(k.secret.as_slice().ct_eq(given)) {
            found = Some(k.name.as_str());
        }
    }
    found.ok_or_else(|| {
        let msg = if presented_key(h).is_none() {
            "missing API key: send it as `Authorization: Bearer KEY` or `x-api-key: KEY`"
        } else {
            "invalid API key"
        };
        metrics::counter!("llmux_unauthorized_total").increment(1);
        Rejection {
            proto,
            status: 401,
            reason: "unauthorized",
            message: msg,
            model: "-",
            key: "-",
            route: None,
            started: Instant::now(),
        }
        .respond(app)
    })
}

/// The model a refused body asked for, for its log line.
fn model_of(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct M<'a> {
        #[serde(borrow)]
        model: Option<std::borrow::Cow<'a, str>>,
    }
    serde_json::from_slice::<M>(body)
        .ok()
        .and_then(|m| m.model)
        .map_or_else(|| "-".to_owned(), |m| m.chars().take(200).collect())
}

fn submit_error(app: &App, proto: Protocol, e: &SubmitError, body: &[u8], key: &str) -> Response {
    use llmux::request::RequestError as R;
    let message = e.to_string();
    let (status, reason) = match e {
        SubmitError::ShuttingDown => (503, "shutting_down"),
        SubmitError::Request(R::UnknownModel(_)) => (404, "unknown_model"),
        SubmitError::Request(R::UnknownProvider(_) | R::UnknownEndpoint(_)) => {
            (404, "unknown_endpoint")
        }
        SubmitError::Request(R::InvalidJson(_)) => (400, "invalid_json"),
        SubmitError::Request(R::TooLarge(_)) => (413, "body_too_large"),
        SubmitError::Request(_) if message.contains("context window") => (400, "context_window"),
        SubmitError::Request(_) => (400, "invalid_request"),
    };
    let model = model_of(body);
    let mut r = Rejection {
        proto,
        status,
        reason,
        message: &message,
        model: &model,
        key,
        route: None,
        started: Instant::now(),
    }
    .respond(app);
    if status == 503 {
        r.headers_mut()
            .insert("retry-after", HeaderValue::from_static("1"));
    }
    r
}

/// Reads the body up to the limit; past it, a 413 in the caller's shape.
async fn read_body(
    app: &App,
    h: &HeaderMap,
    body: Body,
    proto: Protocol,
) -> Result<Bytes, Response> {
    let reject = |status, reason, message: &str| {
        Rejection {
            proto,
            status,
            reason,
            message,
            model: "-",
            key: "-",
            route: None,
            started: Instant::now(),
        }
        .respond(app)
    };
    let limit = format!(
        "the request body is larger than {} bytes (the gateway's max_body_bytes)",
        app.max_body
    );
    let too_large = || reject(413, "body_too_large", &limit);
    let declared = h
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > app.max_body as u64) {
        return Err(too_large());
    }
    match axum::body::to_bytes(body, app.max_body).await {
        Ok(b) => Ok(b),
        Err(e) => {
            let mut src: Option<&(dyn std::error::Error + 'static)> = Some(&e);
            while let Some(s) = src {
                if s.is::<http_body_util::LengthLimitError>() {
                    return Err(too_large());
                }
                src = s.source();
            }
            Err(reject(
                400,
                "unreadable_body",
                "could not read the request body",
            ))
        }
    }
}

/// The caller's `anthropic-*` headers, for Anthropic-protocol endpoints.
fn anthropic_headers(h: &HeaderMap) -> Vec<(String, String)> {
    h.iter()
        .filter(|(n, _)| n.as_str().starts_with("anthropic-"))
        .filter_map(|(n, v)| Some((n.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect()
}

// ---------------------------------------------------------------------------
// completions

/// What the log line and metrics need about a request in flight.
struct Ctx {
    app: Arc<App>,
    id: u64,
    proto: Protocol,
    model: String,
    key: String,
    stream: bool,
    started: Instant,
}

impl Ctx {
    /// Log line and metrics for a finished request.
    fn finish(&self, status: u16, outcome: &str, routing: Option<&Routing>) {
        self.finish_with(status, outcome, routing, None);
    }

    /// The same, with the error's message for the log line.
    fn finish_with(
        &self,
        status: u16,
        outcome: &str,
        routing: Option<&Routing>,
        error: Option<&str>,
    ) {
        if let Some(r) = routing {
            record::observe(&self.model, r, outcome);
        } else {
            metrics::counter!("llmux_requests_total", "model" => self.model.clone(), "endpoint" => "none", "outcome" => outcome.to_owned()).increment(1);
        }
        LogLine {
            id: Some(self.id),
            protocol: self.proto.as_str(),
            model: &self.model,
            key: &self.key,
            stream: self.stream,
            status,
            outcome,
            duration_ms: self.started.elapsed().as_secs_f64() * 1000.0,
            routing,
            error,
            route: None,
        }
        .write(self.app.log);
    }
}

async fn complete(State(app): St, proto: Protocol, h: HeaderMap, body: Body) -> Response {
    let started = Instant::now();
    let key = match authorize(&app, &h, proto) {
        Ok(k) => k.to_owned(),
        Err(r) => return r,
    };
    let bytes = match read_body(&app, &h, body, proto).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let opts = SubmitOptions {
        forward_headers: anthropic_headers(&h),
        // Claude Code's and Codex's session ids keep a session on one
        // endpoint (warm prompt caches).
        sticky_key: h
            .get("x-claude-code-session-id")
            .or_else(|| h.get("session-id"))
            .and_then(|v| v.to_str().ok())
            .map(|s| format!("session:{s}")),
        upstream_error_bodies: true,
    };
    let events = match app.engine.submit_with(proto, &bytes, opts) {
        Ok(ev) => ev,
        Err(e) => return submit_error(&app, proto, &e, &bytes, &key),
    };
    drop(bytes);
    let ctx = Ctx {
        app: app.clone(),
        id: events.id(),
        proto,
        model: events.model().to_owned(),
        key,
        stream: events.is_stream(),
        started,
    };
    if ctx.stream {
        stream_response(ctx, events).await
    } else {
        whole_response(ctx, events).await
    }
}

/// Waits for an event, or returns `None` when the drain time ran out.
async fn next_event(
    events: &mut RequestEvents,
    cancel: &mut watch::Receiver<bool>,
) -> Option<Option<Event>> {
    if *cancel.borrow() {
        return None;
    }
    tokio::select! {
        ev = events.recv() => Some(ev),
        _ = cancel.changed() => None,
    }
}

/// A response for a terminal event that ends the request before any chunk.
fn terminal_response(ctx: &Ctx, ev: &Event) -> Response {
    let Ok(t) = serde_json::from_str::<Terminal>(&ev.data) else {
        ctx.finish(500, "internal_error", None);
        return error(
            ctx.proto,
            500,
            "internal_error",
            "unreadable terminal event",
        );
    };
    let routing = t.routing.unwrap_or_default();
    let mut resp = match (t.kind, t.response, t.error) {
        ("done", Some(body), _) => {
            ctx.finish(200, "success", Some(&routing));
            json_response(200, body.get().to_owned())
        }
        ("done", None, _) => {
            ctx.finish(200, "success", Some(&routing));
            json_response(200, "{}".into())
        }
        (_, _, err) => {
            let status = t.status.unwrap_or(502);
            let body = err.map(|e| e.get()).unwrap_or("");
            let outcome = t
                .outcome
                .clone()
                .or_else(|| error_type(body))
                .unwrap_or_else(|| "error".into());
            let message = error_message(body);
            ctx.finish_with(status, &outcome, Some(&routing), message.as_deref());
            let body = err.map(|e| e.get().to_owned()).unwrap_or_else(|| {
                llmux::protocol::error_body(ctx.proto, status, "upstream_error", "failed")
                    .to_string()
            });
            let mut r = json_response(status, body);
            // The engine already failed over and retried: a client retry
            // would only repeat that.
            r.headers_mut()
                .insert("x-should-retry", HeaderValue::from_static("false"));
            if let Ok(v) = HeaderValue::try_from(outcome) {
                r.headers_mut().insert("x-llmux-outcome", v);
            }
            r
        }
    };
    add_routing_headers(resp.headers_mut(), ctx.id, &routing);
    resp
}

/// The `message` inside an error body of either protocol.
fn error_message(body: &str) -> Option<String> {
    let v: Value = serde_json::from_str(body).ok()?;
    v.pointer("/error/message")
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// The `type` inside an error body of either protocol.
fn error_type(body: &str) -> Option<String> {
    let v: Value = serde_json::from_str(body).ok()?;
    v.pointer("/error/type")
        .or_else(|| v.pointer("/error/code"))
        .and_then(Value::as_str)
        .map(str::to_owned)
}

fn add_routing_headers(h: &mut HeaderMap, id: u64, routing: &Routing) {
    h.insert("x-llmux-request-id", HeaderValue::from(id));
    for (n, v) in record::headers(routing) {
        if let Ok(v) = HeaderValue::try_from(v) {
            h.insert(n, v);
        }
    }
}

/// The answer when a request's events end without a terminal event: the
/// gateway is draining (`drained`), or the engine dropped the request.
fn ended_without_result(ctx: &Ctx, drained: bool) -> Response {
    if drained {
        ctx.finish(503, "drained", None);
        return error(
            ctx.proto,
            503,
            "overloaded",
            "the gateway shut down before the request finished",
        );
    }
    ctx.finish(500, "internal_error", None);
    error(
        ctx.proto,
        500,
        "internal_error",
        "the request ended without a result",
    )
}

async fn whole_response(ctx: Ctx, mut events: RequestEvents) -> Response {
    let mut cancel = ctx.app.cancel_all.clone();
    loop {
        match next_event(&mut events, &mut cancel).await {
            None => return ended_without_result(&ctx, true),
            Some(None) => return ended_without_result(&ctx, false),
            Some(Some(ev)) if ev.kind != EventKind::Chunk => return terminal_response(&ctx, &ev),
            Some(Some(_)) => {}
        }
    }
}

/// SSE bytes for one chunk in the caller's protocol.
fn chunk_frame(proto: Protocol, data: &str) -> Bytes {
    match proto {
        Protocol::OpenAi => Bytes::from(format!("data: {data}\n\n")),
        Protocol::Anthropic | Protocol::Responses => {
            #[derive(serde::Deserialize)]
            struct Typed<'a> {
                #[serde(rename = "type", borrow)]
                ty: Option<std::borrow::Cow<'a, str>>,
            }
            let ty = serde_json::from_str::<Typed>(data)
                .ok()
                .and_then(|t| t.ty)
                .unwrap_or(std::borrow::Cow::Borrowed("message"));
            Bytes::from(format!("event: {ty}\ndata: {data}\n\n"))
        }
    }
}

fn ping_frame(proto: Protocol) -> Bytes {
    match proto {
        Protocol::OpenAi | Protocol::Responses => Bytes::from_static(b": keep-alive\n\n"),
        Protocol::Anthropic => Bytes::from_static(b"event: ping\ndata: {\"type\": \"ping\"}\n\n"),
    }
}

/// A Responses stream's `error` event: the SDK's `ResponseErrorEvent`
/// fields, plus the error body under `error` (what the openai SDK raises
/// from).
fn responses_error_event(body: &str, seq: u64) -> Bytes {
    let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let e = &v["error"];
    let ev = json!({
        "type": "error",
        "code": e["code"].as_str().or(e["type"].as_str()).unwrap_or("server_error"),
        "message": e["message"].as_str().unwrap_or("the request failed"),
        "param": null,
        "sequence_number": seq,
        "error": e,
    });
    Bytes::from(format!("event: error\ndata: {ev}\n\n"))
}

fn error_frame(proto: Protocol, body: &str) -> Bytes {
    match proto {
        Protocol::Responses => responses_error_event(body, 0),
        Protocol::OpenAi => Bytes::from(format!("data: {body}\n\n")),
        Protocol::Anthropic => Bytes::from(format!("event: error\ndata: {body}\n\n")),
    }
}

/// A stream being written to the caller. Dropping it (the caller went
/// away) drops `events`, which cancels the request upstream.
struct Streaming {
    ctx: Ctx,
    events: RequestEvents,
    first: Option<Event>,
    cancel: watch::Receiver<bool>,
    done: bool,
    /// Responses: the `sequence_number` after the last chunk's.
    next_seq: u64,
    /// Responses: the last chunk ended the response (`response.completed`,
    /// `.incomplete`, `.failed`); the terminal event goes out with it.
    closing: bool,
}

impl Streaming {
    /// The frame for an event; marks the stream done at the terminal one.
    fn frame(&mut self, ev: Event) -> Bytes {
        if ev.kind == EventKind::Chunk {
            if self.ctx.proto == Protocol::Responses {
                #[derive(serde::Deserialize)]
                struct Seq<'a> {
                    sequence_number: Option<u64>,
                    #[serde(rename = "type", borrow)]
                    ty: Option<std::borrow::Cow<'a, str>>,
                }
                if let Ok(seq) = serde_json::from_str::<Seq>(&ev.data) {
                    if let Some(n) = seq.sequence_number {
                        self.next_seq = n + 1;
                    }
                    self.closing = matches!(
                        seq.ty.as_deref(),
                        Some("response.completed" | "response.incomplete" | "response.failed")
                    );
                }
            }
            return chunk_frame(self.ctx.proto, &ev.data);
        }
        self.done = true;
        let Ok(t) = serde_json::from_str::<Terminal>(&ev.data) else {
            self.ctx.finish(500, "internal_error", None);
            return Bytes::new();
        };
        let routing = t.routing.unwrap_or_default();
        if t.kind == "done" {
            self.ctx.finish(200, "success", Some(&routing));
            return match self.ctx.proto {
                Protocol::OpenAi => Bytes::from_static(b"data: [DONE]\n\n"),
                // The last chunk was response.completed (or .incomplete).
                Protocol::Anthropic | Protocol::Responses => Bytes::new(),
            };
        }
        let body = t.error.map(|e| e.get()).unwrap_or("{}");
        let outcome = t
            .outcome
            .clone()
            .or_else(|| error_type(body))
            .unwrap_or_else(|| "error".into());
        let message = error_message(body);
        self.ctx.finish_with(
            t.status.unwrap_or(502),
            &outcome,
            Some(&routing),
            message.as_deref(),
        );
        if self.ctx.proto == Protocol::Responses {
            return responses_error_event(body, self.next_seq);
        }
        error_frame(self.ctx.proto, body)
    }

    /// The next bytes for the caller. A Responses client may hang up as soon
    /// as it has `response.completed`, so that event is sent together with
    /// the terminal one (which follows at once): the request is recorded
    /// with its outcome rather than as closed by the client.
    async fn next(&mut self) -> Option<Bytes> {
        let out = self.next_frame().await?;
        if !self.closing {
            return Some(out);
        }
        self.closing = false;
        let mut buf = out.to_vec();
        while !self.done {
            match tokio::time::timeout(Duration::from_secs(5), self.events.recv()).await {
                Ok(Some(ev)) => buf.extend_from_slice(&self.frame(ev)),
                _ => break,
            }
        }
        Some(Bytes::from(buf))
    }

    async fn next_frame(&mut self) -> Option<Bytes> {
        if let Some(ev) = self.first.take() {
            return Some(self.frame(ev));
        }
        if self.done {
            return None;
        }
        let keepalive = self.ctx.app.keepalive;
        tokio::select! {
            ev = self.events.recv() => match ev {
                Some(ev) => Some(self.frame(ev)),
                None => { self.done = true; None }
            },
            _ = tokio::time::sleep(keepalive) => Some(ping_frame(self.ctx.proto)),
            _ = self.cancel.changed() => {
                self.done = true;
                self.events.cancel();
                self.ctx.finish(503, "drained", None);
                let body = llmux::protocol::error_body(self.ctx.proto, 503, "overloaded", "the gateway shut down before the stream finished");
                Some(error_frame(self.ctx.proto, &body.to_string()))
            }
        }
    }
}

impl Drop for Streaming {
    fn drop(&mut self) {
        if !self.done {
            self.ctx.finish(499, "client_closed", None);
        }
    }
}

async fn stream_response(ctx: Ctx, mut events: RequestEvents) -> Response {
    let mut cancel = ctx.app.cancel_all.clone();
    // Headers wait for the first event, so a request that fails before any
    // chunk gets a plain HTTP error the SDKs map to their own types; after
    // the keep-alive interval the stream starts anyway, with pings.
    let waited =
        tokio::time::timeout(ctx.app.keepalive, next_event(&mut events, &mut cancel)).await;
    let first = match waited {
        // Quiet for a keep-alive interval: start the stream; pings follow.
        Err(_) => None,
        Ok(Some(Some(ev))) if ev.kind == EventKind::Error => return terminal_response(&ctx, &ev),
        Ok(Some(Some(ev))) => Some(ev),
        Ok(Some(None)) => return ended_without_result(&ctx, false),
        Ok(None) => return ended_without_result(&ctx, true),
    };
    let id = ctx.id;
    let serving = events.serving().map(|s| {
        [
            ("x-llmux-endpoint", s.endpoint.to_owned()),
            ("x-llmux-provider", s.provider.to_owned()),
            ("x-llmux-attempts", s.attempts.to_string()),
            ("x-llmux-first-token-ms", format!("{:.1}", s.first_token_ms)),
        ]
    });
    let st = Streaming {
        ctx,
        events,
        first,
        cancel,
        done: false,
        next_seq: 0,
        closing: false,
    };
    let body = futures_util::stream::unfold(st, |mut st| async move {
        st.next().await.map(|b| (Ok::<_, Infallible>(b), st))
    });
    let mut resp = Response::new(Body::from_stream(body));
    let h = resp.headers_mut();
    h.insert(
        "content-type",
        HeaderValue::from_static("text/event-stream; charset=utf-8"),
    );
    h.insert("cache-control", HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    h.insert("x-llmux-request-id", HeaderValue::from(id));
    // What is known when the headers go out: who serves, after how many
    // attempts (failover, hedging), how fast its first token came.
    for (name, value) in serving.into_iter().flatten() {
        if let Ok(v) = HeaderValue::try_from(value) {
            h.insert(name, v);
        }
    }
    resp
}

// ---------------------------------------------------------------------------
// count_tokens, models, stats, health

/// `{"input_tokens": N}`: from an Anthropic-protocol endpoint of the model
/// when it has one (exact; its answer comes back unchanged), else an upper
/// bound: the UTF-8 bytes of the JSON of `system`, `tools` and `messages`
/// (a token is never shorter than a byte, and the JSON punctuation more than
/// covers per-message overhead).
async fn count_tokens(State(app): St, h: HeaderMap, body: Body) -> Response {
    let proto = Protocol::Anthropic;
    if let Err(r) = authorize(&app, &h, proto) {
        return r;
    }
    let bytes = match read_body(&app, &h, body, proto).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let mut counted = "estimate";
    match app.engine.count_tokens(&bytes, anthropic_headers(&h)) {
        Err(e) => return submit_error(&app, proto, &e, &bytes, "-"),
        Ok(None) => {}
        Ok(Some(rx)) => match rx.await {
            Ok(Ok((200, body))) => {
                let mut r = json_response(200, body);
                r.headers_mut()
                    .insert("x-llmux-count", HeaderValue::from_static("upstream"));
                return r;
            }
            // An endpoint without count_tokens (404) or a failure: estimate.
            _ => counted = "estimate-after-upstream-error",
        },
    }
    let Ok(Value::Object(v)) = serde_json::from_slice::<Value>(&bytes) else {
        return Rejection {
            proto,
            status: 400,
            reason: "invalid_json",
            message: "the body must be a JSON object",
            model: "-",
            key: "-",
            route: None,
            started: Instant::now(),
        }
        .respond(&app);
    };
    let n: usize = ["system", "tools", "messages"]
        .iter()
        .filter_map(|k| v.get(*k))
        .map(|x| x.to_string().len())
        .sum();
    let mut r = json_response(200, json!({"input_tokens": n}).to_string());
    r.headers_mut()
        .insert("x-llmux-count", HeaderValue::from_static(counted));
    r
}

/// The engine's stats, endpoints grouped by model in catalog order.
fn endpoints_by_model(app: &App) -> Vec<(String, Vec<Value>)> {
    let stats: Value = serde_json::from_str(&app.engine.stats_json()).unwrap_or(Value::Null);
    let eps = stats["endpoints"].as_array().cloned().unwrap_or_default();
    app.engine
        .catalog()
        .models
        .iter()
        .map(|m| {
            let mine = eps
                .iter()
                .filter(|e| e["model"].as_str() == Some(&m.slug))
                .map(endpoint_view)
                .collect();
            (m.slug.clone(), mine)
        })
        .collect()
}

/// One endpoint as the model listings show it: no keys, no URLs.
fn endpoint_view(e: &Value) -> Value {
    json!({
        "id": e["id"], "provider": e["provider"], "protocol": e["protocol"],
        "upstream_model": e["upstream_model"], "context_length": e["context_window"],
        "price": e["price"], "first_token_ms": e["first_token_ms"],
        "response_ms": e["response_ms"],
        "throughput_tps": e["throughput_tps"], "in_flight": e["in_flight"],
        "error_rate": e["error_rate"], "circuit": e["circuit"],
    })
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn openai_models(app: &App) -> Value {
    let created = unix(app.started);
    let data: Vec<Value> = endpoints_by_model(app)
        .into_iter()
        .map(|(slug, eps)| {
            let ctx = eps
                .iter()
                .filter_map(|e| e["context_length"].as_u64())
                .max();
            let cheapest = eps
                .iter()
                .map(|e| {
                    (
                        e["price"]["prompt"].as_f64().unwrap_or(0.0),
                        e["price"]["completion"].as_f64().unwrap_or(0.0),
                    )
                })
                .min_by(|a, b| (a.0 + a.1).total_cmp(&(b.0 + b.1)))
                .unwrap_or((0.0, 0.0));
            json!({
                "id": slug, "object": "model", "created": created,
                "owned_by": slug.split('/').next().unwrap_or(""),
                "context_length": ctx,
                // OpenRouter's convention: USD per token, as strings.
                "pricing": {"prompt": per_token(cheapest.0), "completion": per_token(cheapest.1)},
                "endpoints": eps,
            })
        })
        .collect();
    json!({"object": "list", "data": data})
}

fn per_token(per_million: f64) -> String {
    let s = format!("{:.12}", per_million / 1e6);
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s.is_empty() {
        "0".into()
    } else {
        s.to_owned()
    }
}

fn anthropic_models_json(app: &App) -> Value {
    let created = rfc3339(unix(app.started));
    let data: Vec<Value> = app
        .engine
        .catalog()
        .models
        .iter()
        .map(|m| json!({"type": "model", "id": m.slug, "display_name": m.slug, "created_at": created}))
        .collect();
    let first = data.first().map(|m| m["id"].clone()).unwrap_or(Value::Null);
    let last = data.last().map(|m| m["id"].clone()).unwrap_or(Value::Null);
    json!({"data": data, "has_more": false, "first_id": first, "last_id": last})
}

/// Seconds since the epoch as `YYYY-MM-DDTHH:MM:SSZ`.
fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

async fn models_by_header(State(app): St, h: HeaderMap) -> Response {
    let proto = if h.contains_key("anthropic-version") {
        Protocol::Anthropic
    } else {
        Protocol::OpenAi
    };
    if let Err(r) = authorize(&app, &h, proto) {
        return r;
    }
    let v = match proto {
        Protocol::Anthropic => anthropic_models_json(&app),
        Protocol::OpenAi | Protocol::Responses => openai_models(&app),
    };
    json_response(200, v.to_string())
}

async fn anthropic_models(State(app): St, h: HeaderMap) -> Response {
    if let Err(r) = authorize(&app, &h, Protocol::Anthropic) {
        return r;
    }
    json_response(200, anthropic_models_json(&app).to_string())
}

async fn model_endpoints(
    State(app): St,
    h: HeaderMap,
    Path((vendor, name)): Path<(String, String)>,
) -> Response {
    if let Err(r) = authorize(&app, &h, Protocol::OpenAi) {
        return r;
    }
    let slug = format!("{vendor}/{name}");
    match endpoints_by_model(&app)
        .into_iter()
        .find(|(s, _)| *s == slug)
    {
        Some((_, eps)) => json_response(
            200,
            json!({"data": {"id": slug, "endpoints": eps}}).to_string(),
        ),
        None => Rejection {
            proto: Protocol::OpenAi,
            status: 404,
            reason: "unknown_model",
            message: &format!("unknown model `{slug}`"),
            model: &slug,
            key: "-",
            route: None,
            started: Instant::now(),
        }
        .respond(&app),
    }
}

async fn stats(State(app): St, h: HeaderMap) -> Response {
    if let Err(r) = authorize(&app, &h, Protocol::OpenAi) {
        return r;
    }
    json_response(200, app.engine.stats_json())
}

async fn alive() -> Response {
    json_response(200, r#"{"status":"ok"}"#.into())
}

/// Ready while at least one endpoint's circuit is not open.
async fn ready(State(app): St) -> Response {
    let stats: Value = serde_json::from_str(&app.engine.stats_json()).unwrap_or(Value::Null);
    let eps = stats["endpoints"].as_array().cloned().unwrap_or_default();
    let usable = eps.iter().filter(|e| e["circuit"] != "open").count();
    let status = if usable > 0 { 200 } else { 503 };
    json_response(
        status,
        json!({"ready": usable > 0, "endpoints": eps.len(), "usable_endpoints": usable})
            .to_string(),
    )
}

/// Prometheus text; per-endpoint gauges are refreshed from the engine first.
async fn metrics(State(app): St) -> Response {
    let stats: Value = serde_json::from_str(&app.engine.stats_json()).unwrap_or(Value::Null);
    for e in stats["endpoints"].as_array().into_iter().flatten() {
        let id = e["id"].as_str().unwrap_or("").to_owned();
        let circuit = match e["circuit"].as_str() {
            Some("open") => 2.0,
            Some("half_open") => 1.0,
            _ => 0.0,
        };
        metrics::gauge!("llmux_endpoint_circuit_state", "endpoint" => id.clone()).set(circuit);
        metrics::gauge!("llmux_endpoint_in_flight", "endpoint" => id.clone())
            .set(e["in_flight"].as_f64().unwrap_or(0.0));
        if let Some(ms) = e["first_token_ms"].as_f64() {
            metrics::gauge!("llmux_endpoint_first_token_ms", "endpoint" => id).set(ms);
        }
    }
    let mut r = app.prom.render().into_response();
    r.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    r
}

#[cfg(test)]
mod listener_tests {
    use axum::serve::Listener;

    /// Accepted connections have Nagle's algorithm off.
    #[tokio::test]
    async fn accepted_sockets_have_nodelay() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let mut l = super::listener(l);
        let client = tokio::spawn(tokio::net::TcpStream::connect(addr));
        let (io, _) = l.accept().await;
        assert!(
            io.nodelay().unwrap(),
            "TCP_NODELAY is off on an accepted socket"
        );
        drop(client.await);
    }
}
