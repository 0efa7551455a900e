//! The HTTP face: routes, callers' keys, request hand-off to the engine,
//! SSE framing, model listings, health and metrics. Routing, failover and
//! protocol translation are the engine's; handlers only parse,
//! authenticate and hand off.

use crate::config::CallerKey;
use crate::error::{json_response, GatewayError, Rejection};
use crate::record::{self, LogFormat, LogLine};
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, Method, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use llmux::budget::Lease;
use llmux::protocol::sse;
use llmux::{
    Circuit, EndpointFacts, EndpointStats, Engine, Event, EventKind, Price, Protocol,
    RequestEvents, RoutingRecord, SubmitError, SubmitOptions, TerminalEvent, TerminalKind,
};
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::{json, Value};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::watch;

type Result<T, E = GatewayError> = std::result::Result<T, E>;

/// Completion routes: a path (served at the root and under `/api`) and
/// the protocol its bodies speak. A new protocol is one more line here.
pub const COMPLETIONS: &[(&str, Protocol)] = &[
    ("/v1/chat/completions", Protocol::OpenAi),
    ("/anthropic/v1/messages", Protocol::Anthropic),
    ("/v1/messages", Protocol::Anthropic),
    ("/v1/responses", Protocol::Responses),
];

/// Everything the handlers share.
pub struct App {
    pub engine: Arc<Engine>,
    /// Budgets, limits and model access of the keys.
    pub keyring: crate::keys::Keyring,
    /// The caller keys; a reload may replace them.
    pub keys: Arc<crate::config::LiveKeys>,
    /// The body limit and keep-alive interval; a reload may change them.
    pub knobs: Arc<crate::config::Knobs>,
    pub log: LogFormat,
    pub prom: PrometheusHandle,
    /// Turns true when the drain time after SIGTERM is over: in-flight
    /// requests are cancelled.
    pub cancel_all: watch::Receiver<bool>,
    pub started: SystemTime,
    /// What the live dashboard shows (recent requests, charts).
    pub board: crate::dashboard::Board,
    /// `POST /admin/reload` (None: the route answers 404).
    pub reloader: Option<Arc<crate::reload::Reloader>>,
}

pub(crate) type St = State<Arc<App>>;

impl App {
    /// A refusal of a request before it reaches the engine.
    pub(crate) fn reject(
        &self,
        proto: Protocol,
        status: u16,
        reason: &'static str,
        message: impl Into<String>,
    ) -> Rejection {
        Rejection::new(self.log, proto, status, reason, message)
    }
}

/// Every route: health and metrics at the root, the API at the root and
/// again under `/api`.
pub fn router(app: Arc<App>) -> Router {
    let api = api_routes();
    Router::new()
        .route("/", get(alive).head(alive))
        .route("/health", get(alive).head(alive))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .merge(crate::dashboard::routes())
        .route("/admin/reload", post(admin_reload))
        .nest("/api", api.clone())
        .merge(api)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::disable())
        .layer(tower_http::catch_panic::CatchPanicLayer::new())
        .with_state(app)
}

/// The completion, count_tokens, model and stats routes, mounted once.
fn api_routes() -> Router<Arc<App>> {
    let mut r = Router::new();
    for &(path, proto) in COMPLETIONS {
        r = r.route(
            path,
            post(move |s: St, h: HeaderMap, b: Body| complete(s, proto, h, b)),
        );
    }
    r.route("/anthropic/v1/messages/count_tokens", post(count_tokens))
        .route("/v1/messages/count_tokens", post(count_tokens))
        .route("/v1/models", get(models_by_header))
        .route("/anthropic/v1/models", get(anthropic_models))
        .route("/v1/stats", get(stats))
        .route("/v1/key", get(key_info))
        .route("/v1/keys", get(keys_info))
        .route("/v1/route", get(crate::dashboard::route_plan))
        .merge(crate::gemini::routes())
}

// ---------------------------------------------------------------------------
// errors and keys

async fn not_found(State(app): St, method: Method, uri: Uri, h: HeaderMap) -> GatewayError {
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
    app.reject(proto, 404, "unknown_route", message)
        .route(route)
        .into()
}

/// A known path with the wrong method: a 405 that says which one it takes.
async fn method_not_allowed(State(app): St, method: Method, uri: Uri) -> GatewayError {
    let path = uri.path();
    let takes = if path.ends_with("/models")
        || path.ends_with("/endpoints")
        || path.ends_with("/stats")
        || path.ends_with("/route")
    {
        "GET"
    } else {
        "POST"
    };
    let message = format!("{path} takes {takes}, not {method}");
    app.reject(Protocol::OpenAi, 405, "method_not_allowed", message)
        .route(format!("{method} {path}"))
        .header("allow", takes)
        .into()
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

/// The caller's key from `Authorization: Bearer`, `x-api-key` or
/// `x-goog-api-key` (Google's clients).
fn presented_key(h: &HeaderMap) -> Option<&[u8]> {
    if let Some(v) = h.get("x-api-key").or_else(|| h.get("x-goog-api-key")) {
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
pub(crate) fn authorize(app: &App, h: &HeaderMap, proto: Protocol) -> Result<String> {
    Ok(key_name(authorize_key(app, h, proto)?.as_deref()).to_owned())
}

/// A key's name in log lines and metrics; `-` for none.
pub(crate) fn key_name(k: Option<&CallerKey>) -> &str {
    k.map_or("-", |k| k.name.as_str())
}

/// The caller's key (`None` when the gateway has none), or a 401.
fn authorize_key(app: &App, h: &HeaderMap, proto: Protocol) -> Result<Option<Arc<CallerKey>>> {
    authorize_presented(app, presented_key(h), proto)
}

/// [`authorize_key`] with the key already found (Gemini routes also take
/// it from `?key=`).
pub(crate) fn authorize_presented(
    app: &App,
    presented: Option<&[u8]>,
    proto: Protocol,
) -> Result<Option<Arc<CallerKey>>> {
    use subtle::ConstantTimeEq;
    let keys = app.keys.get();
    if keys.is_empty() {
        return Ok(None);
    }
    let given = presented.unwrap_or(b"");
    let mut found = None;
    for k in keys.iter() {
        if bool::from(k.secret.as_slice().ct_eq(given)) {
            found = Some(k.clone());
        }
    }
    found.map(Some).ok_or_else(|| {
        let msg = if presented.is_none() {
            "missing API key: send it as `Authorization: Bearer KEY` or `x-api-key: KEY`"
        } else {
            "invalid API key"
        };
        metrics::counter!("llmux_unauthorized_total").increment(1);
        app.reject(proto, 401, "unauthorized", msg).into()
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

/// A submit the engine refused, in the caller's protocol.
pub(crate) fn submit_error(
    app: &App,
    proto: Protocol,
    e: &SubmitError,
    body: &[u8],
    key: &str,
) -> GatewayError {
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
    let r = app
        .reject(proto, status, reason, message)
        .model(model_of(body))
        .key(key);
    if status == 503 {
        return r.header("retry-after", "1").into();
    }
    r.into()
}

/// Reads the body up to the limit; past it, a 413 in the caller's shape.
pub(crate) async fn read_body(
    app: &App,
    h: &HeaderMap,
    body: Body,
    proto: Protocol,
) -> Result<Bytes> {
    let max_body = app.knobs.max_body();
    let too_large = || {
        let limit = format!(
            "the request body is larger than {max_body} bytes (the gateway's max_body_bytes)"
        );
        GatewayError::from(app.reject(proto, 413, "body_too_large", limit))
    };
    let declared = h
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max_body as u64) {
        return Err(too_large());
    }
    match axum::body::to_bytes(body, max_body).await {
        Ok(b) => Ok(b),
        Err(e) => {
            let mut src: Option<&(dyn std::error::Error + 'static)> = Some(&e);
            while let Some(s) = src {
                if s.is::<http_body_util::LengthLimitError>() {
                    return Err(too_large());
                }
                // a body slower than gateway.limits.body_read_timeout_ms.
                if let Some(t) = s.downcast_ref::<crate::serve::BodyTimeout>() {
                    return Err(app.reject(proto, 408, "body_timeout", t.to_string()).into());
                }
                src = s.source();
            }
            let message = "could not read the request body";
            Err(app.reject(proto, 400, "unreadable_body", message).into())
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
pub(crate) struct Ctx {
    pub app: Arc<App>,
    pub id: u64,
    pub proto: Protocol,
    pub model: String,
    pub key: String,
    pub stream: bool,
    pub started: Instant,
    /// The key's reservation, settled or released by `finish_with`.
    pub lease: std::sync::Mutex<Option<Lease>>,
    /// The HTTP server span, when the engine traces.
    pub span: Option<crate::tracing::HttpSpan>,
}

impl Ctx {
    /// Log line and metrics for a finished request.
    fn finish(&self, status: u16, outcome: &str, routing: Option<&RoutingRecord>) {
        self.finish_with(status, outcome, routing, None);
    }

    /// The same, with the error's message for the log line.
    pub(crate) fn finish_with(
        &self,
        status: u16,
        outcome: &str,
        routing: Option<&RoutingRecord>,
        error: Option<&str>,
    ) {
        let lease = self.lease.lock().ok().and_then(|mut l| l.take());
        let cost = routing.and_then(|r| r.cost_usd);
        let tokens = routing
            .and_then(|r| r.usage)
            .map_or(0, |u| u.prompt_tokens + u.completion_tokens);
        let note = crate::keys::finish(&self.key, lease, cost, tokens, outcome);
        if let Some(r) = routing {
            record::observe(&self.model, r, outcome);
        } else {
            metrics::counter!("llmux_requests_total", "model" => self.model.clone(), "endpoint" => "none", "outcome" => outcome.to_owned()).increment(1);
        }
        if let Some(s) = &self.span {
            let tracer = self.app.engine.tracer();
            s.end(tracer.as_deref(), status, outcome);
        }
        // The dashboard's recent requests and charts.
        self.app.board.record(crate::dashboard::Finished {
            id: self.id,
            now_ms: crate::dashboard::now_ms(),
            model: &self.model,
            key: &self.key,
            stream: self.stream,
            status,
            outcome,
            duration_ms: self.started.elapsed().as_secs_f64() * 1000.0,
            routing,
        });
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
            cost: note,
        }
        .write(self.app.log);
    }
}

async fn complete(State(app): St, proto: Protocol, h: HeaderMap, body: Body) -> Result<Response> {
    let started = Instant::now();
    let caller = authorize_key(&app, &h, proto)?;
    let key = key_name(caller.as_deref()).to_owned();
    let mut bytes = read_body(&app, &h, body, proto).await?;
    // Cursor posts Responses-shaped bodies here (docs/gateway.md).
    if proto == Protocol::OpenAi {
        match crate::cursor::adapt(&bytes) {
            Ok(Some(chat)) => bytes = chat,
            Ok(None) => {}
            Err(m) => {
                return Err(app
                    .reject(proto, 400, "invalid_request", m)
                    .key(&key)
                    .into())
            }
        }
    }
    let sent = submit(&app, proto, &h, &bytes, caller.as_deref(), &key).await?;
    // The body is not needed while the answer streams.
    drop(bytes);
    respond(app, proto, key, sent, started).await
}

/// Hands a read body to the engine once the caller's key admits it (its
/// reservation comes back with the events); a refusal in the caller's
/// protocol.
pub(crate) async fn submit(
    app: &App,
    proto: Protocol,
    h: &HeaderMap,
    bytes: &[u8],
    caller: Option<&CallerKey>,
    key: &str,
) -> Result<Submitted> {
    let tracer = app.engine.tracer();
    let (span, traceparent) = crate::tracing::begin(tracer.as_deref(), h, proto);

    let opts = SubmitOptions {
        provider_defaults: caller.and_then(|k| k.policy.provider.clone()),
        forward_headers: anthropic_headers(h),
        // Claude Code's and Codex's session ids keep a session on one
        // endpoint (warm prompt caches).
        sticky_key: h
            .get("x-claude-code-session-id")
            .or_else(|| h.get("session-id"))
            .and_then(|v| v.to_str().ok())
            .map(|s| format!("session:{s}")),
        upstream_error_bodies: true,
        traceparent,
    };
    let prepared = app
        .engine
        .prepare(proto, bytes, opts)
        .map_err(|e| submit_error(app, proto, &e, bytes, key))?;
    let lease = match caller {
        Some(k) => {
            let reject = |status, reason, message: String| {
                app.reject(proto, status, reason, message)
                    .model(prepared.model())
                    .key(key)
            };
            let admitted = app.keyring.admit(reject, k, &prepared).await;
            if let (Err(rej), Some(s)) = (&admitted, &span) {
                trace_refusal(tracer.as_deref(), s, &prepared, key, rej);
            }
            admitted?
        }
        None => None,
    };
    let events = app
        .engine
        .start(prepared)
        .map_err(|e| submit_error(app, proto, &e, bytes, key))?;
    Ok(Submitted {
        events,
        lease,
        span,
    })
}

/// The spans of a request the caller's key refused.
fn trace_refusal(
    tracer: Option<&llmux::telemetry::Tracer>,
    span: &crate::tracing::HttpSpan,
    prepared: &llmux::Prepared,
    key: &str,
    rej: &Rejection,
) {
    let (status, reason, message) = rej.parts();
    let refused = crate::tracing::Refused {
        model: prepared.model(),
        stream: prepared.is_stream(),
        key,
        status,
        reason,
        message,
    };
    span.refused(tracer, &refused);
}

/// A request the engine took: its events, the key's reservation and the
/// HTTP span.
pub(crate) struct Submitted {
    pub events: RequestEvents,
    pub lease: Option<Lease>,
    pub span: Option<crate::tracing::HttpSpan>,
}

/// The answer to a submitted request: a stream or a whole body.
pub(crate) async fn respond(
    app: Arc<App>,
    proto: Protocol,
    key: String,
    sent: Submitted,
    started: Instant,
) -> Result<Response> {
    let Submitted {
        events,
        lease,
        span,
    } = sent;
    let ctx = Ctx {
        app: app.clone(),
        id: events.id(),
        proto,
        model: events.model().to_owned(),
        key,
        stream: events.is_stream(),
        started,
        lease: std::sync::Mutex::new(lease),
        span,
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

/// A terminal event as the gateway reads it; an unreadable one is logged
/// as an internal error.
pub(crate) fn read_terminal<'a>(ctx: &Ctx, ev: &'a Event) -> Option<TerminalEvent<'a>> {
    let t = serde_json::from_str::<TerminalEvent>(&ev.data).ok();
    if t.is_none() {
        ctx.finish(500, "internal_error", None);
    }
    t
}

/// A response for a terminal event that ends the request before any chunk.
fn terminal_response(ctx: &Ctx, ev: &Event) -> Result<Response> {
    let t = read_terminal(ctx, ev).ok_or(GatewayError::NoResult {
        proto: ctx.proto,
        status: 500,
        kind: "internal_error",
        message: "unreadable terminal event",
    })?;
    let mut resp = match t.kind {
        TerminalKind::Done => {
            ctx.finish(200, "success", Some(&t.routing));
            json_response(200, t.response.map_or("{}", |b| b.get()).to_owned())
        }
        TerminalKind::Error => {
            let status = t.status.unwrap_or(502);
            let body = t.error.map(|e| e.get());
            let message = body.and_then(record::error_message);
            ctx.finish_with(status, &t.outcome, Some(&t.routing), message.as_deref());
            let body = body.map(str::to_owned).unwrap_or_else(|| {
                llmux::protocol::error_body(ctx.proto, status, "upstream_error", "failed")
                    .to_string()
            });
            let mut r = json_response(status, body);
            // The engine already failed over and retried: a client retry
            // would only repeat that.
            r.headers_mut()
                .insert("x-should-retry", HeaderValue::from_static("false"));
            if let Ok(v) = HeaderValue::try_from(t.outcome.as_ref()) {
                r.headers_mut().insert("x-llmux-outcome", v);
            }
            r
        }
    };
    add_routing_headers(resp.headers_mut(), ctx.id, &t.routing);
    Ok(resp)
}

fn add_routing_headers(h: &mut HeaderMap, id: u64, routing: &RoutingRecord) {
    h.insert("x-llmux-request-id", HeaderValue::from(id));
    for (n, v) in record::headers(routing) {
        if let Ok(v) = HeaderValue::try_from(v) {
            h.insert(n, v);
        }
    }
}

/// The answer when a request's events end without a terminal event: the
/// gateway is draining (`drained`), or the engine dropped the request.
fn ended_without_result(ctx: &Ctx, drained: bool) -> GatewayError {
    let (status, outcome, kind, message) = if drained {
        (
            503,
            "drained",
            "overloaded",
            "the gateway shut down before the request finished",
        )
    } else {
        (
            500,
            "internal_error",
            "internal_error",
            "the request ended without a result",
        )
    };
    ctx.finish(status, outcome, None);
    GatewayError::NoResult {
        proto: ctx.proto,
        status,
        kind,
        message,
    }
}

async fn whole_response(ctx: Ctx, mut events: RequestEvents) -> Result<Response> {
    let mut cancel = ctx.app.cancel_all.clone();
    loop {
        match next_event(&mut events, &mut cancel).await {
            None => return Err(ended_without_result(&ctx, true)),
            Some(None) => return Err(ended_without_result(&ctx, false)),
            Some(Some(ev)) if ev.kind != EventKind::Chunk => return terminal_response(&ctx, &ev),
            Some(Some(_)) => {}
        }
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
        let proto = self.ctx.proto;
        if ev.kind == EventKind::Chunk {
            let mark = sse::chunk_mark(proto, &ev.data);
            if let Some(n) = mark.next_seq {
                self.next_seq = n;
            }
            self.closing = mark.ends_response;
            return Bytes::from(sse::chunk_frame(proto, &ev.data));
        }
        self.done = true;
        let Some(t) = read_terminal(&self.ctx, &ev) else {
            return Bytes::new();
        };
        if t.kind == TerminalKind::Done {
            self.ctx.finish(200, "success", Some(&t.routing));
            return Bytes::from_static(sse::done_frame(proto).as_bytes());
        }
        let body = t.error.map_or("{}", |e| e.get());
        let message = record::error_message(body);
        self.ctx.finish_with(
            t.status.unwrap_or(502),
            &t.outcome,
            Some(&t.routing),
            message.as_deref(),
        );
        Bytes::from(sse::error_frame(proto, body, self.next_seq))
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
        let keepalive = self.ctx.app.knobs.keepalive();
        tokio::select! {
            ev = self.events.recv() => match ev {
                Some(ev) => Some(self.frame(ev)),
                None => { self.done = true; None }
            },
            _ = tokio::time::sleep(keepalive) => Some(Bytes::from_static(sse::ping_frame(self.ctx.proto).as_bytes())),
            _ = self.cancel.changed() => {
                self.done = true;
                self.events.cancel();
                self.ctx.finish(503, "drained", None);
                let body = llmux::protocol::error_body(self.ctx.proto, 503, "overloaded", "the gateway shut down before the stream finished");
                Some(Bytes::from(sse::error_frame(self.ctx.proto, &body.to_string(), self.next_seq)))
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

async fn stream_response(ctx: Ctx, mut events: RequestEvents) -> Result<Response> {
    let mut cancel = ctx.app.cancel_all.clone();
    // Headers wait for the first event, so a request that fails before any
    // chunk gets a plain HTTP error the SDKs map to their own types; after
    // the keep-alive interval the stream starts anyway, with pings.
    let waited = tokio::time::timeout(
        ctx.app.knobs.keepalive(),
        next_event(&mut events, &mut cancel),
    )
    .await;
    let first = match waited {
        // Quiet for a keep-alive interval: start the stream; pings follow.
        Err(_) => None,
        Ok(Some(Some(ev))) if ev.kind == EventKind::Error => return terminal_response(&ctx, &ev),
        Ok(Some(Some(ev))) => Some(ev),
        Ok(Some(None)) => return Err(ended_without_result(&ctx, false)),
        Ok(None) => return Err(ended_without_result(&ctx, true)),
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
    Ok(resp)
}

// ---------------------------------------------------------------------------
// count_tokens, models, stats, health

/// `{"input_tokens": N}`: from an Anthropic-protocol endpoint of the model
/// when it has one (exact; its answer comes back unchanged), else an upper
/// bound: the UTF-8 bytes of the JSON of `system`, `tools` and `messages`
/// (a token is never shorter than a byte, and the JSON punctuation more than
/// covers per-message overhead).
async fn count_tokens(State(app): St, h: HeaderMap, body: Body) -> Result<Response> {
    let proto = Protocol::Anthropic;
    let caller = authorize_key(&app, &h, proto)?;
    let bytes = read_body(&app, &h, body, proto).await?;
    if let Some(k) = caller.as_deref() {
        let model = model_of(&bytes);
        if !k.policy.allows(&model) {
            let message = format!("the key `{}` may not call the model `{model}`", k.name);
            return Err(app
                .reject(proto, 403, "model_not_allowed", message)
                .model(model)
                .key(&k.name)
                .into());
        }
    }
    let mut counted = "estimate";
    let upstream = app
        .engine
        .count_tokens(&bytes, anthropic_headers(&h))
        .map_err(|e| submit_error(&app, proto, &e, &bytes, "-"))?;
    if let Some(rx) = upstream {
        match rx.await {
            Ok(Ok((200, body))) => {
                let mut r = json_response(200, body);
                r.headers_mut()
                    .insert("x-llmux-count", HeaderValue::from_static("upstream"));
                return Ok(r);
            }
            // An endpoint without count_tokens (404) or a failure: estimate.
            _ => counted = "estimate-after-upstream-error",
        }
    }
    // The body passes through: its parts are measured as they are.
    let Ok(v) = serde_json::from_slice::<serde_json::Map<String, Value>>(&bytes) else {
        let message = "the body must be a JSON object";
        return Err(app.reject(proto, 400, "invalid_json", message).into());
    };
    let n: usize = ["system", "tools", "messages"]
        .iter()
        .filter_map(|k| v.get(*k))
        .map(|x| x.to_string().len())
        .sum();
    let mut r = json_response(200, json!({"input_tokens": n}).to_string());
    r.headers_mut()
        .insert("x-llmux-count", HeaderValue::from_static(counted));
    Ok(r)
}

/// One endpoint as the model listings show it: no keys, no URLs.
#[derive(serde::Serialize)]
pub(crate) struct ListedEndpoint {
    id: String,
    provider: String,
    protocol: Protocol,
    upstream_model: String,
    pub context_length: Option<u64>,
    price: Price,
    first_token_ms: Option<f64>,
    response_ms: Option<f64>,
    throughput_tps: Option<f64>,
    in_flight: u32,
    error_rate: f64,
    circuit: Circuit,
    /// The facts provider preferences filter on.
    #[serde(flatten)]
    facts: EndpointFacts,
}

impl From<EndpointStats> for ListedEndpoint {
    fn from(e: EndpointStats) -> ListedEndpoint {
        ListedEndpoint {
            id: e.id,
            provider: e.provider,
            protocol: e.protocol,
            upstream_model: e.upstream_model,
            context_length: e.context_window,
            price: e.price,
            first_token_ms: e.health.first_token_ms,
            response_ms: e.health.response_ms,
            throughput_tps: e.health.throughput_tps,
            in_flight: e.health.in_flight,
            error_rate: e.health.error_rate,
            circuit: e.health.circuit,
            facts: e.facts,
        }
    }
}

/// One model of the listings: slug, aliases, endpoints.
pub(crate) struct ListedModel {
    pub slug: String,
    pub aliases: Vec<String>,
    pub endpoints: Vec<ListedEndpoint>,
}

/// The engine's stats, endpoints grouped by model in catalog order.
pub(crate) fn endpoints_by_model(app: &App, key: Option<&CallerKey>) -> Vec<ListedModel> {
    let mut eps = app.engine.stats().endpoints;
    app.engine
        .catalog()
        .models
        .iter()
        .filter(|m| key.is_none_or(|k| k.policy.allows(&m.slug)))
        .map(|m| {
            let (mine, rest) = eps.drain(..).partition(|e| e.model == m.slug);
            eps = rest;
            let mine: Vec<EndpointStats> = mine;
            ListedModel {
                slug: m.slug.clone(),
                aliases: m.aliases.clone(),
                endpoints: mine.into_iter().map(Into::into).collect(),
            }
        })
        .collect()
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn openai_models(app: &App, key: Option<&CallerKey>) -> Value {
    let created = unix(app.started);
    let data: Vec<Value> = endpoints_by_model(app, key)
        .into_iter()
        .map(|m| {
            let (slug, eps) = (m.slug, m.endpoints);
            let ctx = eps.iter().filter_map(|e| e.context_length).max();
            let cheapest = eps
                .iter()
                .map(|e| e.price)
                .min_by(|a, b| (a.prompt + a.completion).total_cmp(&(b.prompt + b.completion)))
                .unwrap_or_default();
            json!({
                "id": slug, "object": "model", "created": created,
                "owned_by": slug.split('/').next().unwrap_or(""),
                "context_length": ctx,
                // OpenRouter's convention: USD per token, as strings.
                "pricing": {"prompt": per_token(cheapest.prompt), "completion": per_token(cheapest.completion)},
                "aliases": m.aliases,
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

fn anthropic_models_json(app: &App, key: Option<&CallerKey>) -> Value {
    let created = llmux::budget::rfc3339(unix(app.started));
    let cat = app.engine.catalog();
    let models: Vec<_> = cat
        .models
        .iter()
        .filter(|m| key.is_none_or(|k| k.policy.allows(&m.slug)))
        .collect();
    let data: Vec<Value> = models
        .iter()
        .map(|m| json!({"type": "model", "id": m.slug, "display_name": m.slug, "created_at": created}))
        .collect();
    let first = models.first().map(|m| m.slug.as_str());
    let last = models.last().map(|m| m.slug.as_str());
    json!({"data": data, "has_more": false, "first_id": first, "last_id": last})
}

async fn models_by_header(State(app): St, h: HeaderMap) -> Result<Response> {
    if h.contains_key("x-goog-api-key") || h.contains_key("x-goog-api-client") {
        let key = authorize_key(&app, &h, Protocol::Gemini)?;
        return Ok(json_response(
            200,
            crate::gemini::models_json(&app, key.as_deref()).to_string(),
        ));
    }
    let proto = if h.contains_key("anthropic-version") {
        Protocol::Anthropic
    } else {
        Protocol::OpenAi
    };
    let key = authorize_key(&app, &h, proto)?;
    let v = match proto {
        Protocol::Anthropic => anthropic_models_json(&app, key.as_deref()),
        _ => openai_models(&app, key.as_deref()),
    };
    Ok(json_response(200, v.to_string()))
}

async fn anthropic_models(State(app): St, h: HeaderMap) -> Result<Response> {
    let key = authorize_key(&app, &h, Protocol::Anthropic)?;
    Ok(json_response(
        200,
        anthropic_models_json(&app, key.as_deref()).to_string(),
    ))
}

/// `GET /v1/models/{vendor}/{name}/endpoints` (routed by
/// [`crate::gemini`], whose `/v1/models/{*rest}` takes that path too).
pub(crate) async fn model_endpoints(
    app: Arc<App>,
    h: HeaderMap,
    asked: String,
) -> Result<Response> {
    let key = authorize_key(&app, &h, Protocol::OpenAi)?;
    // An alias names its model.
    let cat = app.engine.catalog();
    let slug = cat
        .model(&asked)
        .map_or(asked, |i| cat.models[i].slug.clone());
    let Some(m) = endpoints_by_model(&app, key.as_deref())
        .into_iter()
        .find(|m| m.slug == slug)
    else {
        let message = format!("unknown model `{slug}`");
        return Err(app
            .reject(Protocol::OpenAi, 404, "unknown_model", message)
            .model(slug)
            .into());
    };
    let body = json!({"data": {"id": slug, "aliases": m.aliases, "endpoints": m.endpoints}});
    Ok(json_response(200, body.to_string()))
}

async fn stats(State(app): St, h: HeaderMap) -> Result<Response> {
    authorize(&app, &h, Protocol::OpenAi)?;
    Ok(json_response(200, app.engine.stats_json()))
}

/// Reloads the catalog from the config file. With keys, only a key with
/// `admin: true` may (403 otherwise); without keys, only while listening
/// on loopback.
async fn admin_reload(State(app): St, h: HeaderMap) -> Result<Response> {
    let caller = authorize_key(&app, &h, Protocol::OpenAi)?;
    if caller.as_ref().is_some_and(|k| !k.policy.admin) {
        let message = "only a key with `admin: true` may reload the catalog";
        return Err(app
            .reject(Protocol::OpenAi, 403, "not_admin", message)
            .key(key_name(caller.as_deref()))
            .into());
    }
    let Some(r) = app.reloader.as_ref() else {
        return Err(app
            .reject(Protocol::OpenAi, 404, "not_found", "reload is not enabled")
            .into());
    };
    if app.keys.get().is_empty() && !r.open_without_keys() {
        return Err(app
            .reject(
                Protocol::OpenAi,
                403,
                "forbidden",
                "reload needs gateway.keys when the gateway listens beyond loopback",
            )
            .into());
    }
    let out = r.reload("http").await;
    let status = if out.ok { 200 } else { 422 };
    Ok(json_response(
        status,
        serde_json::to_string(&out).unwrap_or_default(),
    ))
}

async fn alive() -> Response {
    json_response(200, r#"{"status":"ok"}"#.into())
}

/// Ready while at least one endpoint's circuit is not open.
async fn ready(State(app): St) -> Response {
    let eps = app.engine.stats().endpoints;
    let usable = eps
        .iter()
        .filter(|e| e.health.circuit != Circuit::Open)
        .count();
    // Keys with a budget are refused while a fail-closed store is down.
    let store = app.keyring.status();
    let budgets = app
        .keys
        .get()
        .iter()
        .any(|k| k.policy.limits.budget.is_some());
    let store_down = budgets
        && store["ok"] == false
        && app.keyring.cfg.budget_fail == llmux::budget::FailMode::Closed;
    let is_ready = usable > 0 && !store_down;
    let status = if is_ready { 200 } else { 503 };
    json_response(
        status,
        json!({"ready": is_ready, "endpoints": eps.len(), "usable_endpoints": usable, "key_store": store})
            .to_string(),
    )
}

/// `GET /api/v1/key`: the calling key's usage and limits (OpenRouter's
/// shape, plus the period).
async fn key_info(State(app): St, h: HeaderMap) -> Result<Response> {
    let Some(k) = authorize_key(&app, &h, Protocol::OpenAi)? else {
        let body = json!({"data": {"label": "-", "usage": 0.0, "limit": null, "limit_remaining": null,
            "is_free_tier": false, "rate_limit": {"requests": null, "interval": "60s"}}});
        return Ok(json_response(200, body.to_string()));
    };
    let u = usage_of(&app, &k).await?;
    Ok(json_response(
        200,
        json!({"data": crate::keys::key_json(&k, &u)}).to_string(),
    ))
}

/// `GET /api/v1/keys`, for an admin key: every key's usage, this period
/// and the previous one.
async fn keys_info(State(app): St, h: HeaderMap) -> Result<Response> {
    let k = authorize_key(&app, &h, Protocol::OpenAi)?;
    if !k.as_ref().is_some_and(|k| k.policy.admin) {
        let message = "only a key with `admin: true` may read every key's usage";
        return Err(app
            .reject(Protocol::OpenAi, 403, "not_admin", message)
            .key(key_name(k.as_deref()))
            .into());
    }
    let mut data = Vec::new();
    for k in app.keys.get().iter() {
        data.push(crate::keys::keys_entry(k, &usage_of(&app, k).await?));
    }
    let body = json!({"data": data, "store": app.keyring.status()});
    Ok(json_response(200, body.to_string()))
}

async fn usage_of(app: &App, k: &CallerKey) -> Result<llmux::budget::Usage> {
    let p = &k.policy;
    app.keyring
        .budgets
        .usage(&p.subject, &p.limits)
        .await
        .map_err(|e| {
            let message = format!("cannot read the usage of key `{}`: {e}", k.name);
            app.reject(Protocol::OpenAi, 503, "budget_store_unavailable", message)
                .key(&k.name)
                .into()
        })
}

/// Prometheus text; per-endpoint gauges are refreshed from the engine first.
async fn metrics(State(app): St) -> Response {
    for e in app.engine.stats().endpoints {
        let circuit = match e.health.circuit {
            Circuit::Open => 2.0,
            Circuit::HalfOpen => 1.0,
            Circuit::Closed => 0.0,
        };
        let id = e.id;
        metrics::gauge!("llmux_endpoint_circuit_state", "endpoint" => id.clone()).set(circuit);
        metrics::gauge!("llmux_endpoint_in_flight", "endpoint" => id.clone())
            .set(f64::from(e.health.in_flight));
        if let Some(ms) = e.health.first_token_ms {
            metrics::gauge!("llmux_endpoint_first_token_ms", "endpoint" => id).set(ms);
        }
    }
    if let Some(t) = app.engine.tracer() {
        // The trace exporter's counters.
        let c = t.counters();
        metrics::gauge!("llmux_trace_spans_exported").set(c.exported as f64);
        metrics::gauge!("llmux_trace_spans_dropped").set(c.dropped as f64);
        metrics::gauge!("llmux_trace_export_errors").set(c.export_errors as f64);
    }
    let mut r = app.prom.render().into_response();
    r.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    r
}
