//! One HTTP attempt against one endpoint, with its outcome classified.
//!
//! The attempt streams the caller's chunks to the event queue as they come,
//! but holds back leading chunks that carry no content (e.g. the role-only
//! first chunk) until the first token: up to that moment nothing has reached
//! the host and the engine may still fail over.

mod client;

pub use client::Client;

use crate::catalog::{Catalog, Endpoint, Provider};
use crate::config::TimeoutsConfig;
use crate::events::{Event, EventKind, EventQueue};
use crate::protocol::{self, sse, PayloadError, Protocol, StreamContext, Usage};
use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue, ACCEPT, CONTENT_TYPE, USER_AGENT};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use serde_json::Value;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};
// The runtime's clock, so a paused test clock drives deadlines and latencies.
use std::pin::Pin;
use tokio::time::{timeout_at, Instant, Sleep};

/// Largest non-streaming body or error body accepted.
const MAX_BODY: usize = 64 * 1024 * 1024;
const MAX_ERROR_BODY: usize = 64 * 1024;

/// How an attempt failed. Its name ([`ErrKind::as_str`]) is the outcome
/// every surface uses: routing records, terminal events (`outcome`), the
/// gateway's log line and metrics, OpenAI error `code`s (docs/errors.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrKind {
    /// No connection: refused, DNS failure, connect timeout, TLS failure.
    Connect,
    /// The connection closed or broke before the response was complete.
    Transport,
    /// 401/403: the provider refused llmux's key for it.
    AuthRejected,
    /// 429.
    RateLimited,
    /// 404: wrong base URL or upstream model.
    NotFound,
    /// 5xx (and 529).
    ServerError,
    /// 400/413/422 from the endpoint: the request itself was refused.
    BadRequest,
    /// Any other HTTP status.
    Status,
    FirstTokenTimeout,
    IdleTimeout,
    TotalTimeout,
    Malformed,
    Truncated,
    /// The provider reported an error inside a 200 response or stream, or
    /// finished without any content.
    UpstreamError,
    Translation,
    Cancelled,
    /// A hedged twin produced its first token first.
    HedgeLost,
    /// Not attempted: the endpoint was at its concurrency limit.
    ConcurrencyLimited,
}

impl ErrKind {
    /// The outcome name used in routing records.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrKind::Connect => "connect_error",
            ErrKind::Transport => "connection_closed",
            ErrKind::AuthRejected => "auth_rejected",
            ErrKind::RateLimited => "rate_limited",
            ErrKind::NotFound => "not_found",
            ErrKind::ServerError => "server_error",
            ErrKind::BadRequest => "bad_request",
            ErrKind::Status => "http_error",
            ErrKind::FirstTokenTimeout => "first_token_timeout",
            ErrKind::IdleTimeout => "idle_timeout",
            ErrKind::TotalTimeout => "total_timeout",
            ErrKind::Malformed => "malformed_response",
            ErrKind::Truncated => "truncated_stream",
            ErrKind::UpstreamError => "provider_error",
            ErrKind::Translation => "translation_error",
            ErrKind::Cancelled => "cancelled",
            ErrKind::HedgeLost => "hedge_lost",
            ErrKind::ConcurrencyLimited => "concurrency_limited",
        }
    }

    /// The outcome of an HTTP error status (a 400/422 the engine
    /// translated the request for is a `Translation` instead).
    pub fn of_status(status: u16) -> ErrKind {
        match status {
            401 | 403 => ErrKind::AuthRejected,
            404 => ErrKind::NotFound,
            429 => ErrKind::RateLimited,
            400 | 413 | 422 => ErrKind::BadRequest,
            500..=599 => ErrKind::ServerError,
            _ => ErrKind::Status,
        }
    }
}

/// A failed attempt.
#[derive(Debug, Clone)]
pub struct AttemptError {
    pub kind: ErrKind,
    pub status: Option<u16>,
    pub message: String,
    pub retry_after: Option<Duration>,
    /// The failure describes the request, not the endpoint (400/413/422 and
    /// other statuses outside the failover list): return it at once.
    pub caller_fault: bool,
    /// Set when the failure came after the first token.
    pub first_token_ms: Option<f64>,
    /// An HTTP error body from an endpoint speaking the caller's protocol,
    /// kept so the caller can get it unchanged (valid JSON only).
    pub upstream_body: Option<String>,
}

impl AttemptError {
    pub fn new(kind: ErrKind, message: impl Into<String>) -> Self {
        AttemptError {
            kind,
            status: None,
            message: message.into(),
            retry_after: None,
            caller_fault: false,
            first_token_ms: None,
            upstream_body: None,
        }
    }
}

/// A successful attempt.
#[derive(Debug)]
pub struct AttemptOk {
    /// Non-streaming: the response body in the caller's protocol.
    pub body: Option<String>,
    pub usage: Option<Usage>,
    pub first_token_ms: f64,
    /// Output tokens per second, when measurable.
    pub throughput: Option<f64>,
    /// A stream's response id and finish reason (only when traced).
    pub facts: Option<protocol::StreamFacts>,
}

/// Everything one attempt needs.
pub struct AttemptCtx<'a> {
    pub catalog: &'a Catalog,
    pub endpoint: usize,
    pub client: &'a Client,
    pub queue: &'a EventQueue,
    pub request_id: u64,
    pub caller: Protocol,
    pub body: &'a protocol::splice::Body,
    pub stream: bool,
    pub include_usage: bool,
    pub model_slug: &'a str,
    pub timeouts: TimeoutsConfig,
    /// The whole request's deadline.
    pub deadline: Instant,
    /// Which attempt owns the host's stream: 0 while none, else the `slot`
    /// of the attempt that produced the first token first. An attempt
    /// claims it at its first token (streams) or complete body; one that
    /// finds it taken has lost a hedge race and stops.
    pub winner: &'a AtomicUsize,
    /// This attempt's slot (non-zero).
    pub slot: usize,
    /// Called when this attempt wins, with its first-token latency in ms.
    pub on_first_token: &'a (dyn Fn(f64) + Sync),
    /// The request's own chunk channel (`Engine::submit_with`); `None`:
    /// chunks go to `queue`. Sending waits while the channel is full, so a
    /// slow reader slows the upstream read instead of growing a buffer.
    pub chunks: Option<&'a tokio::sync::mpsc::Sender<Event>>,
    /// Caller headers for Anthropic-protocol endpoints (`anthropic-*`).
    pub forward_headers: &'a [(String, String)],
    /// Where the attempt counts its body bytes (only when traced).
    pub bytes: Option<&'a AttemptBytes>,
}

/// An attempt's body bytes: the request body sent, the response body (or
/// stream) received so far. Written as the attempt goes, so an attempt cut
/// short still has its counts.
#[derive(Debug, Default)]
pub struct AttemptBytes {
    pub sent: AtomicU64,
    pub received: AtomicU64,
}

impl AttemptBytes {
    /// (sent, received).
    pub fn get(&self) -> (u64, u64) {
        (
            self.sent.load(Ordering::Relaxed),
            self.received.load(Ordering::Relaxed),
        )
    }
}

impl AttemptCtx<'_> {
    fn count_sent(&self, n: usize) {
        if let Some(b) = self.bytes {
            b.sent.store(n as u64, Ordering::Relaxed);
        }
    }

    fn count_received(&self, n: usize) {
        if let Some(b) = self.bytes {
            b.received.fetch_add(n as u64, Ordering::Relaxed);
        }
    }
}

impl AttemptCtx<'_> {
    fn claim(&self) -> Result<(), AttemptError> {
        match self
            .winner
            .compare_exchange(0, self.slot, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => Ok(()),
            Err(w) if w == self.slot => Ok(()),
            Err(_) => Err(AttemptError::new(
                ErrKind::HedgeLost,
                "another attempt produced its first token first",
            )),
        }
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Parses `retry-after-ms`, then `retry-after` (seconds or an HTTP date);
/// an unusable `retry-after-ms` does not hide a valid `retry-after`.
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let ms = headers
        .get("retry-after-ms")
        .and_then(|v| v.to_str().ok())
        .and_then(|ms| ms.trim().parse::<f64>().ok())
        .filter(|ms| ms.is_finite() && *ms >= 0.0)
        .and_then(|ms| Duration::try_from_secs_f64(ms / 1000.0).ok());
    if ms.is_some() {
        return ms;
    }
    let v = headers.get("retry-after")?.to_str().ok()?.trim();
    if let Ok(s) = v.parse::<f64>() {
        return Duration::try_from_secs_f64(s).ok();
    }
    let at = parse_http_date(v)?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Parses an HTTP date in any of the three forms RFC 9110 requires a
/// recipient to accept (IMF-fixdate, RFC 850, asctime).
pub fn parse_http_date(s: &str) -> Option<SystemTime> {
    httpdate::parse_http_date(s).ok()
}

fn upstream_error_message(protocol: Protocol, body: &[u8]) -> String {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let msg = parsed.as_ref().and_then(|v| match protocol {
        Protocol::OpenAi | Protocol::Responses => protocol::openai::error_message(v),
        Protocol::Anthropic => protocol::anthropic::error_message(v),
        Protocol::Gemini => protocol::gemini::error_message(v),
    });
    match msg {
        Some(m) => clip(&m, 300),
        None => {
            let t = clip(&String::from_utf8_lossy(body), 200);
            if t.is_empty() {
                "(empty body)".into()
            } else {
                t
            }
        }
    }
}

/// A provider's error text without its key: the configured key where it
/// appears, and words that look like a (masked) API key, such as OpenAI's
/// `Incorrect API key provided: sk-proj-****abcd`. The text reaches callers,
/// logs and traces; llmux's own key for the provider must not.
fn redact_keys(said: &str, provider: &Provider) -> String {
    let mut out = said.to_owned();
    if let Some(k) = provider
        .key
        .as_ref()
        .map(|k| k.expose())
        .filter(|k| k.len() >= 4)
    {
        out = out.replace(k, "[redacted]");
    }
    out.split(' ')
        .map(|w| {
            let bare = w.trim_start_matches(['"', '\'', '(', '`']);
            if bare.starts_with("sk-") || bare.starts_with("sk_") {
                "[redacted]"
            } else {
                w
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// `s` on one line (runs of whitespace become one space), at most `max`
/// characters.
fn clip(s: &str, max: usize) -> String {
    let one: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if one.chars().count() <= max {
        return one;
    }
    let mut t: String = one.chars().take(max).collect();
    t.push('…');
    t
}

/// Who an attempt's error is about: `provider "SLUG" (endpoint ID)`.
pub fn culprit(catalog: &Catalog, endpoint: usize) -> String {
    format!(
        "provider \"{}\" (endpoint {})",
        catalog.provider_of(endpoint).slug,
        catalog.endpoints[endpoint].id
    )
}

/// `Some(title)` when the body is an HTML page (a web server's or proxy's
/// error page rather than an API's answer).
fn html_page(body: &[u8]) -> Option<Option<String>> {
    // A page starts with `<` (after blanks, which may be non-ASCII); an
    // API's JSON never does, so its body is not copied and lowercased to
    // find that out.
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if !first.is_some_and(|&b| b == b'<' || !b.is_ascii()) {
        return None;
    }
    let text = String::from_utf8_lossy(&body[..body.len().min(8192)]);
    // ASCII lowercasing keeps byte offsets, so they index `text` too.
    let lower = text.to_ascii_lowercase();
    let head = lower.trim_start();
    if !(head.starts_with("<!doctype html") || head.starts_with("<html")) {
        return None;
    }
    let title = lower.find("<title").and_then(|i| {
        let start = i + lower[i..].find('>')? + 1;
        let end = start + lower[start..].find("</title")?;
        Some(clip(&text[start..end], 100))
    });
    Some(title.filter(|t| !t.is_empty()))
}

fn html_message(status: u16, title: Option<String>) -> String {
    let t = title
        .map(|t| format!(" titled \"{t}\""))
        .unwrap_or_default();
    format!(" returned an HTML page{t} (HTTP {status}), not an API response: is base_url right?")
}

/// What an endpoint's HTTP error status means, in one sentence (after the
/// culprit).
fn status_message(provider: &Provider, endpoint: &Endpoint, status: u16, body: &[u8]) -> String {
    if let Some(title) = html_page(body) {
        return html_message(status, title);
    }
    let said = redact_keys(&upstream_error_message(provider.protocol, body), provider);
    match ErrKind::of_status(status) {
        ErrKind::AuthRejected => format!(
            " rejected llmux's API key for it (HTTP {status}): check providers[].api_key \
             (or api_key_env) of \"{}\"; the provider said: {said}",
            provider.slug
        ),
        ErrKind::NotFound => format!(
            " answered HTTP 404 (not found): is base_url right, and does it serve the \
             upstream model \"{}\"? The provider said: {said}",
            endpoint.upstream_model
        ),
        ErrKind::RateLimited => format!(" is rate limiting llmux (HTTP 429): {said}"),
        ErrKind::ServerError => format!(" failed with HTTP {status}: {said}"),
        ErrKind::BadRequest => format!(" refused the request (HTTP {status}): {said}"),
        _ => format!(" answered HTTP {status}: {said}"),
    }
}

/// A client error's innermost cause, e.g. `Connection refused (os error
/// 111)`: the readable part of a chain.
fn root_cause(e: &client::Error) -> String {
    let mut last: &dyn std::error::Error = e;
    while let Some(c) = last.source() {
        last = c;
    }
    clip(&last.to_string(), 200)
}

/// The whole chain, lowercased, to classify by.
fn chain_text(e: &client::Error) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s.to_ascii_lowercase()
}

/// The first error of type `T` in `e`'s chain.
fn find_source<T: std::error::Error + 'static>(e: &client::Error) -> Option<&T> {
    let mut src = std::error::Error::source(e);
    while let Some(c) = src {
        if let Some(t) = c.downcast_ref::<T>() {
            return Some(t);
        }
        src = c.source();
    }
    None
}

/// Whether the chain holds a timeout (the connect timeout's).
fn timed_out(e: &client::Error) -> bool {
    find_source::<std::io::Error>(e).is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
}

/// A failure to get a response (no status line): its kind and sentence.
fn send_failure(e: &client::Error, url: &reqwest::Url, connect_ms: u64) -> (ErrKind, String) {
    let host = url.host_str().unwrap_or("?");
    let at = format!("{host}:{}", url.port_or_known_default().unwrap_or(0));
    if let Some(p) = find_source::<client::ProxyFailed>(e) {
        let m = format!(
            " could not be reached at {at} through the proxy {}: {}",
            p.proxy, p.what
        );
        return (ErrKind::Connect, m);
    }
    let chain = chain_text(e);
    // Over https, a connect failure past DNS, refusal and timeout happened
    // in the TLS handshake (rustls' messages rarely say "TLS").
    let tls = (e.is_connect() && url.scheme() == "https")
        || ["certificate", "tls", "ssl", "handshake"]
            .iter()
            .any(|w| chain.contains(w));
    if chain.contains("dns error") || chain.contains("failed to lookup address") {
        let m = format!(" is unreachable: the host name \"{host}\" does not resolve (DNS lookup failed): is base_url right?");
        return (ErrKind::Connect, m);
    }
    if chain.contains("connection refused") {
        let m = format!(
            " refused the connection at {at}: is the server running, and is base_url right?"
        );
        return (ErrKind::Connect, m);
    }
    if e.is_connect() && (timed_out(e) || chain.contains("timed out")) {
        let m = format!(
            " did not accept a connection at {at} within the connect timeout of {connect_ms} ms"
        );
        return (ErrKind::Connect, m);
    }
    if tls {
        let m = format!(" failed the TLS handshake at {at}: {}", root_cause(e));
        return (ErrKind::Connect, m);
    }
    if e.is_connect() {
        return (
            ErrKind::Connect,
            format!(" could not be connected to at {at}: {}", root_cause(e)),
        );
    }
    let m = if client::refused_unprocessed(e) {
        " refused the request unprocessed three times (HTTP/2: stream refused or connection shutting down)"
    } else {
        ": the connection closed before a response arrived"
    };
    (ErrKind::Transport, m.to_owned())
}

/// A body or stream that could not be read to its end (`chunks`: those
/// the host already has, once the first token passed).
fn cut_message(stream: bool, chunks: Option<u64>) -> String {
    match (stream, chunks) {
        (false, _) => ": the connection closed while the response body was being read".into(),
        (true, None) => ": the connection closed before the first token".into(),
        (true, Some(n)) => format!(": the connection closed mid-stream after {n} chunks"),
    }
}

fn build_request(
    ctx: &AttemptCtx<'_>,
    provider: &Provider,
    endpoint: &Endpoint,
) -> Result<http::Request<Full<Bytes>>, AttemptError> {
    let bytes = protocol::upstream_request_bytes(
        provider.protocol,
        ctx.caller,
        ctx.body,
        &endpoint.upstream_model,
        ctx.stream,
    )
    .map_err(|e| AttemptError::new(ErrKind::Translation, e.message()))?;
    ctx.count_sent(bytes.len());
    let url =
        provider
            .protocol
            .request_url(provider.url.as_str(), &endpoint.upstream_model, ctx.stream);
    let accept = if ctx.stream {
        "text/event-stream"
    } else {
        "application/json"
    };
    let mut req = post(provider, url.as_deref(), bytes)?;
    let h = req.headers_mut();
    h.insert(ACCEPT, HeaderValue::from_static(accept));
    if provider.protocol == Protocol::Anthropic && !ctx.forward_headers.is_empty() {
        replace_headers(h, forwarded_headers(provider, ctx.forward_headers));
    }
    Ok(req)
}

/// A POST of a JSON `body` to `url` (else the provider's URL) with the
/// provider's key and headers.
fn post(
    provider: &Provider,
    url: Option<&str>,
    body: Vec<u8>,
) -> Result<http::Request<Full<Bytes>>, AttemptError> {
    let unusable = |what: &str| AttemptError::new(ErrKind::Connect, format!(" has {what}"));
    let uri = to_uri(url.unwrap_or(provider.url.as_str())).ok_or_else(|| {
        unusable("a URL llmux cannot send to: check its base_url and upstream_model")
    })?;
    let mut req = http::Request::new(Full::new(body.into()));
    *req.method_mut() = http::Method::POST;
    *req.uri_mut() = uri;
    let h = req.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(
        USER_AGENT,
        HeaderValue::from_static(concat!("llmux/", env!("CARGO_PKG_VERSION"))),
    );
    if let Some(key) = &provider.key {
        let (name, value) = match provider.protocol.auth() {
            protocol::Auth::Bearer => (
                http::header::AUTHORIZATION,
                format!("Bearer {}", key.expose()),
            ),
            protocol::Auth::Header(name) => {
                (HeaderName::from_static(name), key.expose().to_owned())
            }
        };
        let mut value = HeaderValue::try_from(value)
            .map_err(|_| unusable("an API key that is not a valid HTTP header value"))?;
        value.set_sensitive(true);
        h.insert(name, value);
    }
    for (n, v) in &provider.headers {
        h.append(n.clone(), v.clone());
    }
    Ok(req)
}

/// `url` as a URI; characters a URI may not hold (a space in an upstream
/// model's name) are percent-encoded by the URL parser first.
fn to_uri(url: &str) -> Option<http::Uri> {
    http::Uri::try_from(url).ok().or_else(|| {
        let parsed = reqwest::Url::parse(url).ok()?;
        http::Uri::try_from(parsed.as_str()).ok()
    })
}

/// `from`'s values replace `to`'s of the same names.
fn replace_headers(to: &mut HeaderMap, from: HeaderMap) {
    let mut last = None;
    for (name, value) in from {
        match name {
            Some(n) => {
                to.insert(n.clone(), value);
                last = Some(n);
            }
            None => {
                if let Some(n) = &last {
                    to.append(n.clone(), value);
                }
            }
        }
    }
}

/// The caller's `anthropic-*` headers; they replace the configured ones of
/// the same name, except `anthropic-beta`, whose lists are joined.
fn forwarded_headers(provider: &Provider, caller: &[(String, String)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (n, v) in caller {
        let (Ok(name), Ok(mut value)) = (
            HeaderName::try_from(n.as_str()),
            HeaderValue::try_from(v.as_str()),
        ) else {
            continue;
        };
        if name == "anthropic-beta" {
            if let Some((_, own)) = provider.headers.iter().find(|(n, _)| n == "anthropic-beta") {
                let joined = format!("{},{}", own.to_str().unwrap_or(""), v);
                value = HeaderValue::try_from(joined).unwrap_or(value);
            }
        }
        map.append(name, value);
    }
    map
}

/// Sends an Anthropic `count_tokens` body to an Anthropic-protocol
/// provider (`{base}/v1/messages/count_tokens`) with its key and headers and
/// the caller's `anthropic-*` headers; returns the status and body.
pub async fn count_tokens(
    client: &Client,
    provider: &Provider,
    body: Vec<u8>,
    forward: &[(String, String)],
    deadline: Instant,
) -> Result<(u16, String), String> {
    let url = format!("{}/count_tokens", provider.url);
    let mut req = post(provider, Some(&url), body).map_err(|e| e.message)?;
    if !forward.is_empty() {
        replace_headers(req.headers_mut(), forwarded_headers(provider, forward));
    }
    let mut resp = timeout_at(deadline, client.send(req))
        .await
        .map_err(|_| "timed out".to_owned())?
        .map_err(|e| send_failure(&e, &provider.url, 5000).1)?;
    let status = resp.status().as_u16();
    let bytes = read_limited(&mut resp, MAX_ERROR_BODY, deadline)
        .await
        .map_err(|(_, m)| m)?;
    Ok((status, String::from_utf8_lossy(&bytes).into_owned()))
}

/// The body's next data (trailers are skipped), `None` at its end.
async fn chunk(resp: &mut http::Response<Incoming>) -> Result<Option<Bytes>, hyper::Error> {
    loop {
        match resp.body_mut().frame().await.transpose()? {
            None => return Ok(None),
            Some(frame) => {
                if let Ok(data) = frame.into_data() {
                    return Ok(Some(data));
                }
            }
        }
    }
}

async fn read_limited(
    resp: &mut http::Response<Incoming>,
    limit: usize,
    deadline: Instant,
) -> Result<Vec<u8>, (ErrKind, String)> {
    let mut buf = Vec::new();
    loop {
        match timeout_at(deadline, chunk(resp)).await {
            Err(_) => {
                return Err((
                    ErrKind::FirstTokenTimeout,
                    "timed out reading the response body".into(),
                ))
            }
            Ok(Err(_)) => return Err((ErrKind::Transport, cut_message(false, None))),
            Ok(Ok(None)) => return Ok(buf),
            Ok(Ok(Some(b))) => {
                if buf.len() + b.len() > limit {
                    return Err((
                        ErrKind::Malformed,
                        format!("response body larger than {limit} bytes"),
                    ));
                }
                buf.extend_from_slice(&b);
            }
        }
    }
}

/// A stream broke: when the host already has chunks of it (the first token
/// passed), the adapter's closing payloads (Responses: `response.failed`)
/// go to the queue before the engine's terminal error.
fn close_broken(
    ctx: &AttemptCtx<'_>,
    adapter: &mut dyn protocol::StreamAdapter,
    err: AttemptError,
) -> AttemptError {
    if err.first_token_ms.is_some() {
        let message = format!("{}{}", culprit(ctx.catalog, ctx.endpoint), err.message);
        let out = adapter.fail(&message);
        ctx.queue.push_all(out.into_iter().map(|data| Event {
            request_id: ctx.request_id,
            kind: EventKind::Chunk,
            data,
        }));
    }
    err
}

/// The attempt's deadlines.
#[derive(Clone, Copy)]
struct Deadlines {
    start: Instant,
    attempt: Instant,
    first_token: Instant,
    idle: Duration,
    first_token_ms: Option<u64>,
    idle_ms: Option<u64>,
    total_ms: Option<u64>,
}

impl Deadlines {
    fn new(ctx: &AttemptCtx<'_>) -> Self {
        let t = ctx.timeouts;
        let start = Instant::now();
        let ms = |v: Option<u64>| Duration::from_millis(v.unwrap_or(u64::MAX / 4));
        let attempt = ctx.deadline.min(start + ms(t.total_ms));
        Deadlines {
            start,
            attempt,
            first_token: attempt.min(start + ms(t.first_token_ms)),
            idle: ms(t.idle_ms),
            first_token_ms: t.first_token_ms,
            idle_ms: t.idle_ms,
            total_ms: t.total_ms,
        }
    }

    /// A timeout before the first token: the first-token timeout's, or the
    /// total's when that came first.
    fn before_first_token(&self, what: &str) -> AttemptError {
        if self.first_token >= self.attempt {
            return self.total(None);
        }
        let ms = self.first_token_ms.unwrap_or(0);
        AttemptError::new(
            ErrKind::FirstTokenTimeout,
            format!(" sent {what} within the first-token timeout of {ms} ms"),
        )
    }

    fn total(&self, chunks: Option<u64>) -> AttemptError {
        let after = chunks
            .map(|n| format!(" after {n} chunks"))
            .unwrap_or_default();
        let m = match self.total_ms {
            Some(ms) => {
                format!(" was still answering{after} when the total timeout of {ms} ms expired")
            }
            None => format!(" was still answering{after} when the request's total timeout expired"),
        };
        AttemptError::new(ErrKind::TotalTimeout, m)
    }
}

/// Runs one attempt. Chunks go to the queue as they arrive (after the first
/// token); the terminal event is the engine's job. An error's message is a
/// sentence naming the provider and endpoint.
pub async fn attempt(ctx: AttemptCtx<'_>) -> Result<AttemptOk, AttemptError> {
    run_attempt(&ctx).await.map_err(|mut e| {
        if !matches!(e.kind, ErrKind::Cancelled | ErrKind::HedgeLost) {
            e.message = format!("{}{}", culprit(ctx.catalog, ctx.endpoint), e.message);
        }
        e
    })
}

async fn run_attempt(ctx: &AttemptCtx<'_>) -> Result<AttemptOk, AttemptError> {
    let endpoint = &ctx.catalog.endpoints[ctx.endpoint];
    let provider = ctx.catalog.provider_of(ctx.endpoint);
    let dl = Deadlines::new(ctx);
    let req = build_request(ctx, provider, endpoint)?;
    let mut resp = match timeout_at(dl.first_token, ctx.client.send(req)).await {
        Err(_) => return Err(dl.before_first_token("no response")),
        Ok(Err(e)) => {
            let connect_ms = ctx.timeouts.connect_ms.unwrap_or(5000);
            let (kind, m) = send_failure(&e, &provider.url, connect_ms);
            return Err(AttemptError::new(kind, m));
        }
        Ok(Ok(r)) => r,
    };
    if !resp.status().is_success() {
        return Err(status_error(ctx, provider, endpoint, &mut resp, dl).await);
    }
    if is_html(&resp) {
        // A web page with a 200 (a login portal, a proxy, the wrong server):
        // never an API's answer.
        let until = dl.first_token.min(Instant::now() + Duration::from_secs(5));
        let body = read_limited(&mut resp, MAX_ERROR_BODY, until)
            .await
            .unwrap_or_default();
        ctx.count_received(body.len());
        let title = html_page(&body).flatten();
        let status = resp.status().as_u16();
        return Err(AttemptError::new(
            ErrKind::Malformed,
            html_message(status, title),
        ));
    }
    if !ctx.stream {
        return whole_body(ctx, provider, endpoint, &mut resp, dl).await;
    }
    // Nothing reads the headers past here. Their values are slices of the
    // connection's first read buffer: held for the stream's life, they made
    // hyper take a second 8 KiB buffer for the body (issue 25, gateway-memory).
    drop(std::mem::take(resp.headers_mut()));
    stream_body(ctx, provider, endpoint, resp, dl).await
}

fn is_html(resp: &http::Response<Incoming>) -> bool {
    resp.headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("text/html"))
}

/// An HTTP error status, classified, with its body read (briefly).
async fn status_error(
    ctx: &AttemptCtx<'_>,
    provider: &Provider,
    endpoint: &Endpoint,
    resp: &mut http::Response<Incoming>,
    dl: Deadlines,
) -> AttemptError {
    let status = resp.status().as_u16();
    let ra = retry_after(resp.headers(), SystemTime::now());
    let until = dl.first_token.min(Instant::now() + Duration::from_secs(5));
    let body = read_limited(resp, MAX_ERROR_BODY, until)
        .await
        .unwrap_or_default();
    ctx.count_received(body.len());
    let message = status_message(provider, endpoint, status, &body);
    // A 400/422 from an endpoint the request was translated for may be
    // about the translation (a field valid in one protocol and out of
    // range in the other): move on, without blaming the endpoint.
    let translated = provider.protocol != ctx.caller && matches!(status, 400 | 422);
    let caller_fault = !translated && !ctx.catalog.fails_over(status);
    // Only a request error from an endpoint speaking the caller's protocol
    // may reach the caller unchanged: any other names no culprit.
    let same = provider.protocol == ctx.caller && caller_fault;
    let upstream_body = (same && serde_json::from_slice::<serde::de::IgnoredAny>(&body).is_ok())
        .then(|| String::from_utf8_lossy(&body).into_owned());
    AttemptError {
        upstream_body,
        kind: if translated {
            ErrKind::Translation
        } else {
            ErrKind::of_status(status)
        },
        status: Some(status),
        message,
        retry_after: ra,
        caller_fault,
        first_token_ms: None,
    }
}

/// A non-streaming 200: the body, converted for the caller.
async fn whole_body(
    ctx: &AttemptCtx<'_>,
    provider: &Provider,
    endpoint: &Endpoint,
    resp: &mut http::Response<Incoming>,
    dl: Deadlines,
) -> Result<AttemptOk, AttemptError> {
    let body = read_limited(resp, MAX_BODY, dl.first_token)
        .await
        .map_err(|(k, m)| match k {
            ErrKind::FirstTokenTimeout => dl.before_first_token("no complete response"),
            _ => AttemptError::new(k, m),
        })?;
    ctx.count_received(body.len());
    if let Some(title) = html_page(&body) {
        return Err(AttemptError::new(
            ErrKind::Malformed,
            html_message(200, title),
        ));
    }
    let converted = protocol::convert_response_for(
        provider.protocol,
        ctx.caller,
        &body,
        unix_now(),
        request_tree(ctx, provider.protocol),
        &endpoint.id,
    )
    .map_err(|e| payload_error(provider, false, e))?;
    ctx.claim()?;
    let ftl = dl.start.elapsed().as_secs_f64() * 1000.0;
    (ctx.on_first_token)(ftl);
    // Throughput is a stream signal: a body's time includes the wait
    // for the first token, so it is not measured here.
    Ok(AttemptOk {
        body: Some(converted.body),
        usage: converted.usage,
        first_token_ms: ftl,
        throughput: None,
        facts: None,
    })
}

/// An unusable payload, in a sentence.
fn payload_error(provider: &Provider, stream: bool, e: PayloadError) -> AttemptError {
    let what = if stream {
        "a stream event"
    } else {
        "a response"
    };
    match e {
        PayloadError::Malformed(m) => AttemptError::new(
            ErrKind::Malformed,
            format!(
                " sent {what} llmux cannot read as the {} protocol: {}",
                provider.protocol.as_str(),
                clip(&m, 200)
            ),
        ),
        PayloadError::Upstream(m) => AttemptError::new(
            ErrKind::UpstreamError,
            format!(" reported an error: {}", clip(&m, 300)),
        ),
    }
}

/// A streaming attempt's running state.
struct StreamState {
    first_token_at: Option<Instant>,
    content_steps: u64,
    /// Chunks handed to the host.
    sent: u64,
    pending: Vec<Event>,
    out: Vec<Event>,
}

impl StreamState {
    fn ftl(&self, start: Instant) -> Option<f64> {
        self.first_token_at
            .map(|t| t.duration_since(start).as_secs_f64() * 1000.0)
    }

    /// The chunk count for messages, once the host has some.
    fn chunks(&self) -> Option<u64> {
        self.first_token_at.map(|_| self.sent)
    }
}

/// Why a stream's read ended early (a timeout: `None`, a cut, a clean end
/// without the finish marker).
fn read_failure<B>(
    st: &StreamState,
    dl: Deadlines,
    read: Option<Result<Option<B>, hyper::Error>>,
    until: Instant,
) -> AttemptError {
    let chunks = st.chunks();
    let mut err = match read {
        None if st.first_token_at.is_none() => dl.before_first_token("no token"),
        None if until >= dl.attempt => dl.total(chunks),
        None => AttemptError::new(
            ErrKind::IdleTimeout,
            format!(
                " went silent mid-stream after {} chunks: no data for {} ms (the idle timeout)",
                st.sent,
                dl.idle_ms.unwrap_or(0)
            ),
        ),
        Some(Err(_)) => AttemptError::new(ErrKind::Transport, cut_message(true, chunks)),
        Some(Ok(_)) => {
            let after = chunks
                .map(|n| format!(" after {n} chunks"))
                .unwrap_or_default();
            AttemptError::new(
                ErrKind::Truncated,
                format!(": the stream ended{after} without its finish marker"),
            )
        }
    };
    err.first_token_ms = st.ftl(dl.start);
    err
}

/// Hands a read's chunks to the host (the request's channel or the queue).
async fn deliver(ctx: &AttemptCtx<'_>, st: &mut StreamState) -> Result<(), AttemptError> {
    st.sent += st.out.len() as u64;
    match ctx.chunks {
        None => ctx.queue.push_all(st.out.drain(..)),
        Some(tx) => {
            for ev in st.out.drain(..) {
                if tx.send(ev).await.is_err() {
                    return Err(AttemptError::new(
                        ErrKind::Cancelled,
                        "the caller went away",
                    ));
                }
            }
        }
    }
    Ok(())
}

fn stream_adapter_for(
    ctx: &AttemptCtx<'_>,
    provider: &Provider,
    endpoint: &Endpoint,
) -> Box<dyn protocol::StreamAdapter> {
    let mut adapter = protocol::stream_adapter(
        provider.protocol,
        ctx.caller,
        StreamContext {
            model: ctx.model_slug.to_owned(),
            include_usage: ctx.include_usage,
            created: unix_now(),
            id: format!("llmux-{}", ctx.request_id),
            input_tokens_estimate: match (provider.protocol, ctx.caller) {
                (Protocol::OpenAi, Protocol::Anthropic) => ctx.body.prompt_tokens_estimate(),
                _ => 0,
            },
        },
    );
    adapter.configure(request_tree(ctx, provider.protocol), &endpoint.id);
    adapter
}

/// The caller's body as a tree for the adapters that read request fields
/// (Responses on either side); others get an empty map, so a same-protocol
/// request never builds the tree.
fn request_tree<'a>(
    ctx: &AttemptCtx<'a>,
    upstream: Protocol,
) -> &'a serde_json::Map<String, Value> {
    static EMPTY: std::sync::OnceLock<serde_json::Map<String, Value>> = std::sync::OnceLock::new();
    if upstream == Protocol::Responses || ctx.caller == Protocol::Responses {
        ctx.body.tree()
    } else {
        EMPTY.get_or_init(serde_json::Map::new)
    }
}

/// Feeds one read's events to the adapter; true once the finish marker
/// arrived.
fn on_events(
    ctx: &AttemptCtx<'_>,
    provider: &Provider,
    adapter: &mut dyn protocol::StreamAdapter,
    events: &mut Vec<protocol::SseEvent>,
    st: &mut StreamState,
    start: Instant,
) -> Result<bool, AttemptError> {
    let chunk = |data: String| Event {
        request_id: ctx.request_id,
        kind: EventKind::Chunk,
        data,
    };
    for ev in events.drain(..) {
        let step = adapter.on_owned(ev).map_err(|e| {
            let mut err = payload_error(provider, true, e);
            err.first_token_ms = st.ftl(start);
            err
        })?;
        if step.content {
            st.content_steps += 1;
        }
        if st.first_token_at.is_none() {
            st.pending.extend(step.out.into_iter().map(chunk));
            if step.content {
                ctx.claim()?;
                let now = Instant::now();
                st.first_token_at = Some(now);
                (ctx.on_first_token)(now.duration_since(start).as_secs_f64() * 1000.0);
                st.out.append(&mut st.pending);
            }
        } else {
            st.out.extend(step.out.into_iter().map(chunk));
        }
        if step.finished {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The stream's next read, or `None` once `until` passed. One timer serves
/// the whole stream: it is moved earlier only when it would fire late, and
/// when it fires early (data kept coming) it is set to `until`, so a read
/// costs a clock read rather than a timer registered and removed per chunk.
async fn read_until<F: std::future::Future>(
    read: F,
    mut timer: Pin<&mut Sleep>,
    until: Instant,
) -> Option<F::Output> {
    if timer.deadline() > until {
        timer.as_mut().reset(until);
    }
    let mut read = std::pin::pin!(read);
    loop {
        tokio::select! {
            biased;
            r = &mut read => return Some(r),
            () = timer.as_mut() => {
                if timer.deadline() >= until {
                    return None;
                }
                timer.as_mut().reset(until);
            }
        }
    }
}

/// Lets the connection finish its body in the background (at most 2 s) so
/// it can be reused.
fn drain_in_background(mut resp: http::Response<Incoming>) {
    tokio::spawn(async move {
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while let Ok(Some(_)) = chunk(&mut resp).await {}
        })
        .await;
    });
}

/// A streaming 200: events go to the host as they come, after the first
/// token.
async fn stream_body(
    ctx: &AttemptCtx<'_>,
    provider: &Provider,
    endpoint: &Endpoint,
    mut resp: http::Response<Incoming>,
    dl: Deadlines,
) -> Result<AttemptOk, AttemptError> {
    let mut adapter = stream_adapter_for(ctx, provider, endpoint);
    let mut decoder = sse::Decoder::new();
    let mut events = Vec::new();
    let mut st = StreamState {
        first_token_at: None,
        content_steps: 0,
        sent: 0,
        pending: Vec::new(),
        out: Vec::new(),
    };
    let mut finished = false;
    let mut timer = std::pin::pin!(tokio::time::sleep_until(dl.first_token));
    while !finished {
        let until = match st.first_token_at {
            None => dl.first_token,
            Some(_) => dl.attempt.min(Instant::now() + dl.idle),
        };
        let bytes = match read_until(chunk(&mut resp), timer.as_mut(), until).await {
            Some(Ok(Some(b))) => b,
            read => {
                decoder.finish();
                let err = read_failure(&st, dl, read, until);
                return Err(close_broken(ctx, &mut *adapter, err));
            }
        };
        ctx.count_received(bytes.len());
        if let Err(e) = decoder.feed(&bytes, &mut events) {
            let m = PayloadError::Malformed(e.to_string());
            let mut err = payload_error(provider, true, m);
            err.first_token_ms = st.ftl(dl.start);
            return Err(err);
        }
        finished = match on_events(ctx, provider, &mut *adapter, &mut events, &mut st, dl.start) {
            Ok(f) => f,
            Err(e) if e.first_token_ms.is_some() => {
                return Err(close_broken(ctx, &mut *adapter, e))
            }
            Err(e) => return Err(e),
        };
        if !st.out.is_empty() {
            deliver(ctx, &mut st).await?;
        }
    }
    drain_in_background(resp);
    let Some(first) = st.first_token_at else {
        return Err(AttemptError::new(
            ErrKind::UpstreamError,
            " finished the stream without any content",
        ));
    };
    let usage = adapter.usage();
    // At least 1 ms: a stream whose tokens all came at once is fast, not
    // unmeasurable.
    let gen_secs = first.elapsed().as_secs_f64().max(1e-3);
    let tokens = usage
        .map(|u| u.completion_tokens)
        .filter(|&n| n > 0)
        .unwrap_or(st.content_steps);
    let throughput = (tokens > 1).then(|| tokens as f64 / gen_secs);
    Ok(AttemptOk {
        body: None,
        usage,
        first_token_ms: first.duration_since(dl.start).as_secs_f64() * 1000.0,
        throughput,
        // Read once, at the end, and only for a trace (`bytes` is set then).
        facts: ctx.bytes.map(|_| adapter.facts()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_error_texts_lose_llmux_key() {
        let cat = Catalog::from_json(
            r#"{"providers": [{"slug": "p", "protocol": "openai", "base_url": "http://127.0.0.1:9/v1",
                "api_key": "my-provider-secret"}],
                "models": [{"slug": "a/b", "endpoints": [{"provider": "p", "upstream_model": "m"}]}]}"#,
        )
        .unwrap();
        let p = &cat.providers[0];
        assert_eq!(
            redact_keys(
                "Incorrect API key provided: sk-proj-abc****wxyz. See docs",
                p
            ),
            "Incorrect API key provided: [redacted] See docs"
        );
        assert_eq!(
            redact_keys("key my-provider-secret was refused", p),
            "key [redacted] was refused"
        );
        assert_eq!(redact_keys("invalid x-api-key", p), "invalid x-api-key");
    }

    #[test]
    fn http_dates_parse() {
        let t = parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(
            t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs(),
            784111777
        );
        assert!(parse_http_date("Sun, 06 Foo 1994 08:49:37 GMT").is_none());
        assert!(parse_http_date("garbage").is_none());
        assert!(parse_http_date("Sun, 99 Nov 1994 08:49:37 GMT").is_none());
        // The obsolete forms RFC 9110 still requires recipients to accept.
        for old in ["Sunday, 06-Nov-94 08:49:37 GMT", "Sun Nov  6 08:49:37 1994"] {
            assert_eq!(parse_http_date(old), Some(t), "{old}");
        }
    }

    #[test]
    fn urls_a_uri_cannot_hold_are_percent_encoded() {
        let u = to_uri("http://h/v1beta/models/my model:generateContent").unwrap();
        assert_eq!(u.path(), "/v1beta/models/my%20model:generateContent");
        let u =
            to_uri("http://h/v1beta/models/tunedModels/m:streamGenerateContent?alt=sse").unwrap();
        assert_eq!(
            u.path(),
            "/v1beta/models/tunedModels/m:streamGenerateContent"
        );
        assert_eq!(u.query(), Some("alt=sse"));
        assert!(to_uri("not a url").is_none());
    }

    #[test]
    fn retry_after_forms() {
        use http::header::{HeaderMap, HeaderValue};
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784111770);
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("3"));
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(3)));
        h.insert(
            "retry-after",
            HeaderValue::from_static("Sun, 06 Nov 1994 08:49:37 GMT"),
        );
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(7)));
        h.insert("retry-after-ms", HeaderValue::from_static("250"));
        assert_eq!(retry_after(&h, now), Some(Duration::from_millis(250)));
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h, now), None);
        // Absurd values are ignored, never a panic.
        h.insert("retry-after", HeaderValue::from_static("1e20"));
        assert_eq!(retry_after(&h, now), None);
        h.insert(
            "retry-after",
            HeaderValue::from_static("Sun, 06 Nov 300000000000 08:49:37 GMT"),
        );
        assert_eq!(retry_after(&h, now), None);
        let mut h = HeaderMap::new();
        h.insert("retry-after-ms", HeaderValue::from_static("1e30"));
        assert_eq!(retry_after(&h, now), None);
        h.insert("retry-after-ms", HeaderValue::from_static("-5"));
        assert_eq!(retry_after(&h, now), None);
    }

    /// A stalled endpoint against a paused clock: the first-token timeout
    /// fires when the runtime is idle, with no wall-clock wait, and the
    /// attempt's elapsed time is the clock's.
    #[tokio::test(start_paused = true)]
    async fn a_stalled_endpoint_times_out_on_a_paused_clock() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        // Accepts and reads until the client hangs up; never answers.
        std::thread::spawn(move || {
            if let Ok((mut s, _)) = listener.accept() {
                let mut buf = [0u8; 4096];
                while matches!(std::io::Read::read(&mut s, &mut buf), Ok(n) if n > 0) {}
            }
        });
        let cfg = serde_json::json!({
            "providers": [{"slug": "stall", "protocol": "openai", "base_url": format!("http://{addr}/v1")}],
            "models": [{"slug": "t/m", "endpoints": [{"provider": "stall", "upstream_model": "m",
                        "price": {"prompt": 1.0, "completion": 1.0}}]}],
        });
        let catalog = Catalog::from_json(&cfg.to_string()).unwrap();
        let client = Client::new(Duration::from_secs(5), Default::default(), None, &[]).unwrap();
        let queue = EventQueue::new();
        let winner = AtomicUsize::new(0);
        let body = protocol::splice::Body::new("{}");
        let start = Instant::now();
        let r = attempt(AttemptCtx {
            catalog: &catalog,
            endpoint: 0,
            client: &client,
            queue: &queue,
            request_id: 1,
            caller: Protocol::OpenAi,
            body: &body,
            stream: true,
            include_usage: false,
            model_slug: "t/m",
            timeouts: TimeoutsConfig {
                first_token_ms: Some(60_000),
                ..TimeoutsConfig::default()
            },
            deadline: start + Duration::from_secs(600),
            winner: &winner,
            slot: 1,
            on_first_token: &|_| {},
            chunks: None,
            forward_headers: &[],
            bytes: None,
        })
        .await;
        assert_eq!(r.unwrap_err().kind, ErrKind::FirstTokenTimeout);
        assert!(start.elapsed() >= Duration::from_secs(60));
    }

    #[test]
    fn an_unusable_retry_after_ms_does_not_hide_retry_after() {
        use http::header::{HeaderMap, HeaderValue};
        let now = SystemTime::UNIX_EPOCH;
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("4"));
        for bad in ["1e300", "-1", "soon"] {
            h.insert("retry-after-ms", HeaderValue::from_static(bad));
            assert_eq!(retry_after(&h, now), Some(Duration::from_secs(4)), "{bad}");
        }
    }
}
