//! One HTTP attempt against one endpoint, with its outcome classified.
//!
//! The attempt streams the caller's chunks to the event queue as they come,
//! but holds back leading chunks that carry no content (e.g. the role-only
//! first chunk) until the first token: up to that moment nothing has reached
//! the host and the engine may still fail over.

use crate::catalog::{Catalog, Endpoint, Provider};
use crate::config::TimeoutsConfig;
use crate::events::{Event, EventKind, EventQueue};
use crate::protocol::{self, sse, PayloadError, Protocol, StreamContext, Usage};
use serde_json::Value;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};
// The runtime's clock, so a paused test clock drives deadlines and latencies.
use tokio::time::{timeout_at, Instant};

/// Largest non-streaming body or error body accepted.
const MAX_BODY: usize = 64 * 1024 * 1024;
const MAX_ERROR_BODY: usize = 64 * 1024;

/// How an attempt failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrKind {
    Connect,
    Transport,
    Status,
    FirstTokenTimeout,
    IdleTimeout,
    TotalTimeout,
    Malformed,
    Truncated,
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
            ErrKind::Transport => "transport_error",
            ErrKind::Status => "http_error",
            ErrKind::FirstTokenTimeout => "first_token_timeout",
            ErrKind::IdleTimeout => "idle_timeout",
            ErrKind::TotalTimeout => "total_timeout",
            ErrKind::Malformed => "malformed_response",
            ErrKind::Truncated => "truncated_stream",
            ErrKind::UpstreamError => "upstream_error",
            ErrKind::Translation => "translation_error",
            ErrKind::Cancelled => "cancelled",
            ErrKind::HedgeLost => "hedge_lost",
            ErrKind::ConcurrencyLimited => "concurrency_limited",
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
}

/// Everything one attempt needs.
pub struct AttemptCtx<'a> {
    pub catalog: &'a Catalog,
    pub endpoint: usize,
    pub client: &'a reqwest::Client,
    pub queue: &'a EventQueue,
    pub request_id: u64,
    pub caller: Protocol,
    pub body: &'a serde_json::Map<String, Value>,
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
pub fn retry_after(headers: &reqwest::header::HeaderMap, now: SystemTime) -> Option<Duration> {
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
    });
    match msg {
        Some(m) => m,
        None => {
            let text = String::from_utf8_lossy(body);
            let t: String = text.chars().take(200).collect();
            if t.trim().is_empty() {
                "(empty body)".into()
            } else {
                t
            }
        }
    }
}

fn classify_reqwest(e: &reqwest::Error) -> ErrKind {
    if e.is_connect() {
        ErrKind::Connect
    } else {
        ErrKind::Transport
    }
}

/// Renders a reqwest error with its causes, never including the URL's
/// credentials (llmux puts none there) or request headers.
fn describe(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    if let Some(url) = e.url() {
        s = s
            .replace(&format!(" for url ({url})"), "")
            .replace(url.as_str(), "<url>");
    }
    let mut src = std::error::Error::source(e);
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

fn build_request(
    ctx: &AttemptCtx<'_>,
    provider: &Provider,
    endpoint: &Endpoint,
) -> Result<reqwest::RequestBuilder, AttemptError> {
    let bytes = protocol::upstream_request_bytes(
        provider.protocol,
        ctx.caller,
        ctx.body,
        &endpoint.upstream_model,
        ctx.stream,
    )
    .map_err(|e| AttemptError::new(ErrKind::Translation, e.message()))?;
    let mut rb = ctx
        .client
        .post(provider.url.clone())
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(
            reqwest::header::ACCEPT,
            if ctx.stream {
                "text/event-stream"
            } else {
                "application/json"
            },
        );
    if let Some(key) = &provider.key {
        match provider.protocol {
            Protocol::OpenAi | Protocol::Responses => rb = rb.bearer_auth(key.expose()),
            Protocol::Anthropic => rb = rb.header("x-api-key", key.expose()),
        }
    }
    for (n, v) in &provider.headers {
        rb = rb.header(n.clone(), v.clone());
    }
    if provider.protocol == Protocol::Anthropic && !ctx.forward_headers.is_empty() {
        rb = rb.headers(forwarded_headers(provider, ctx.forward_headers));
    }
    Ok(rb.body(bytes))
}

/// The caller's `anthropic-*` headers; they replace the configured ones of
/// the same name, except `anthropic-beta`, whose lists are joined.
fn forwarded_headers(
    provider: &Provider,
    caller: &[(String, String)],
) -> reqwest::header::HeaderMap {
    use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
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
    client: &reqwest::Client,
    provider: &Provider,
    body: Vec<u8>,
    forward: &[(String, String)],
    deadline: Instant,
) -> Result<(u16, String), String> {
    let mut rb = client
        .post(format!("{}/count_tokens", provider.url))
        .header(reqwest::header::CONTENT_TYPE, "application/json");
    if let Some(key) = &provider.key {
        rb = rb.header("x-api-key", key.expose());
    }
    for (n, v) in &provider.headers {
        rb = rb.header(n.clone(), v.clone());
    }
    if !forward.is_empty() {
        rb = rb.headers(forwarded_headers(provider, forward));
    }
    let mut resp = timeout_at(deadline, rb.body(body).send())
        .await
        .map_err(|_| "timed out".to_owned())?
        .map_err(|e| describe(&e))?;
    let status = resp.status().as_u16();
    let bytes = read_limited(&mut resp, MAX_ERROR_BODY, deadline)
        .await
        .map_err(|(_, m)| m)?;
    Ok((status, String::from_utf8_lossy(&bytes).into_owned()))
}

async fn read_limited(
    resp: &mut reqwest::Response,
    limit: usize,
    deadline: Instant,
) -> Result<Vec<u8>, (ErrKind, String)> {
    let mut buf = Vec::new();
    loop {
        match timeout_at(deadline, resp.chunk()).await {
            Err(_) => {
                return Err((
                    ErrKind::FirstTokenTimeout,
                    "timed out reading the response body".into(),
                ))
            }
            Ok(Err(e)) => return Err((ErrKind::Transport, describe(&e))),
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
        let out = adapter.fail(&err.message);
        ctx.queue.push_all(out.into_iter().map(|data| Event {
            request_id: ctx.request_id,
            kind: EventKind::Chunk,
            data,
        }));
    }
    err
}

/// Runs one attempt. Chunks go to the queue as they arrive (after the first
/// token); the terminal event is the engine's job.
pub async fn attempt(ctx: AttemptCtx<'_>) -> Result<AttemptOk, AttemptError> {
    let endpoint = &ctx.catalog.endpoints[ctx.endpoint];
    let provider = ctx.catalog.provider_of(ctx.endpoint);
    let t = ctx.timeouts;
    let start = Instant::now();
    let ms = |v: Option<u64>| Duration::from_millis(v.unwrap_or(u64::MAX / 4));
    let attempt_deadline = ctx.deadline.min(start + ms(t.total_ms));
    let ftl_deadline = attempt_deadline.min(start + ms(t.first_token_ms));
    let idle = ms(t.idle_ms);
    let timeout_kind = |d: Instant| {
        if d >= attempt_deadline {
            ErrKind::TotalTimeout
        } else {
            ErrKind::FirstTokenTimeout
        }
    };

    let rb = build_request(&ctx, provider, endpoint)?;
    let mut resp = match timeout_at(ftl_deadline, rb.send()).await {
        Err(_) => {
            return Err(AttemptError::new(
                timeout_kind(ftl_deadline),
                "no response before the first-token timeout",
            ))
        }
        Ok(Err(e)) => return Err(AttemptError::new(classify_reqwest(&e), describe(&e))),
        Ok(Ok(r)) => r,
    };

    let status = resp.status().as_u16();
    if !resp.status().is_success() {
        let ra = retry_after(resp.headers(), SystemTime::now());
        let dl = ftl_deadline.min(Instant::now() + Duration::from_secs(5));
        let body = read_limited(&mut resp, MAX_ERROR_BODY, dl)
            .await
            .unwrap_or_default();
        let message = upstream_error_message(provider.protocol, &body);
        // A 400/422 from an endpoint the request was translated for may be
        // about the translation (a field valid in one protocol and out of
        // range in the other): move on, without blaming the endpoint.
        let translated = provider.protocol != ctx.caller && matches!(status, 400 | 422);
        let same = provider.protocol == ctx.caller;
        let upstream_body = (same
            && serde_json::from_slice::<serde::de::IgnoredAny>(&body).is_ok())
        .then(|| String::from_utf8_lossy(&body).into_owned());
        return Err(AttemptError {
            upstream_body,
            kind: if translated {
                ErrKind::Translation
            } else {
                ErrKind::Status
            },
            status: Some(status),
            message: format!("HTTP {status}: {message}"),
            retry_after: ra,
            caller_fault: !translated && !ctx.catalog.fails_over(status),
            first_token_ms: None,
        });
    }

    if !ctx.stream {
        let body = read_limited(&mut resp, MAX_BODY, ftl_deadline)
            .await
            .map_err(|(k, m)| {
                let k = if k == ErrKind::FirstTokenTimeout {
                    timeout_kind(ftl_deadline)
                } else {
                    k
                };
                AttemptError::new(k, m)
            })?;
        let converted = protocol::convert_response_for(
            provider.protocol,
            ctx.caller,
            &body,
            unix_now(),
            ctx.body,
            &endpoint.id,
        )
        .map_err(|e| match e {
            PayloadError::Malformed(m) => AttemptError::new(ErrKind::Malformed, m),
            PayloadError::Upstream(m) => AttemptError::new(ErrKind::UpstreamError, m),
        })?;
        ctx.claim()?;
        let ftl = start.elapsed().as_secs_f64() * 1000.0;
        (ctx.on_first_token)(ftl);
        // Throughput is a stream signal: a body's time includes the wait
        // for the first token, so it is not measured here.
        return Ok(AttemptOk {
            body: Some(converted.body),
            usage: converted.usage,
            first_token_ms: ftl,
            throughput: None,
        });
    }

    let mut adapter = protocol::stream_adapter(
        provider.protocol,
        ctx.caller,
        StreamContext {
            model: ctx.model_slug.to_owned(),
            include_usage: ctx.include_usage,
            created: unix_now(),
            id: format!("llmux-{}", ctx.request_id),
            input_tokens_estimate: match (provider.protocol, ctx.caller) {
                (Protocol::OpenAi, Protocol::Anthropic) => {
                    crate::request::estimate_prompt_tokens(ctx.body)
                }
                _ => 0,
            },
        },
    );
    adapter.configure(ctx.body, &endpoint.id);
    let mut decoder = sse::Decoder::new();
    let mut events = Vec::new();
    let mut pending: Vec<Event> = Vec::new();
    // The chunks of one network read, for the host; reused read after read.
    let mut out: Vec<Event> = Vec::new();
    let mut first_token_at: Option<Instant> = None;
    let mut content_steps: u64 = 0;
    let mut finished = false;
    let chunk = |data: String| Event {
        request_id: ctx.request_id,
        kind: EventKind::Chunk,
        data,
    };
    let ftl_of = |t: Option<Instant>| t.map(|t| t.duration_since(start).as_secs_f64() * 1000.0);

    while !finished {
        let dl = match first_token_at {
            None => ftl_deadline,
            Some(_) => attempt_deadline.min(Instant::now() + idle),
        };
        let bytes = match timeout_at(dl, resp.chunk()).await {
            Err(_) => {
                let kind = match first_token_at {
                    None => timeout_kind(ftl_deadline),
                    Some(_) if dl >= attempt_deadline => ErrKind::TotalTimeout,
                    Some(_) => ErrKind::IdleTimeout,
                };
                let msg = match kind {
                    ErrKind::IdleTimeout => format!("no data for {} ms", idle.as_millis()),
                    ErrKind::TotalTimeout => "the total timeout expired".into(),
                    _ => "no token before the first-token timeout".into(),
                };
                let mut err = AttemptError::new(kind, msg);
                err.first_token_ms = ftl_of(first_token_at);
                return Err(close_broken(&ctx, &mut *adapter, err));
            }
            Ok(Err(e)) => {
                let mut err = AttemptError::new(ErrKind::Transport, describe(&e));
                err.first_token_ms = ftl_of(first_token_at);
                return Err(close_broken(&ctx, &mut *adapter, err));
            }
            Ok(Ok(None)) => {
                decoder.finish();
                let mut err = AttemptError::new(
                    ErrKind::Truncated,
                    "the stream ended without its finish marker",
                );
                err.first_token_ms = ftl_of(first_token_at);
                return Err(close_broken(&ctx, &mut *adapter, err));
            }
            Ok(Ok(Some(b))) => b,
        };
        if let Err(e) = decoder.feed(&bytes, &mut events) {
            let mut err = AttemptError::new(ErrKind::Malformed, e.to_string());
            err.first_token_ms = ftl_of(first_token_at);
            return Err(err);
        }
        let ftl_ms = first_token_at.map(|t| t.duration_since(start).as_secs_f64() * 1000.0);
        for ev in events.drain(..) {
            let step = match adapter.on_owned(ev) {
                Ok(step) => step,
                Err(e) => {
                    let mut err = match e {
                        PayloadError::Malformed(m) => AttemptError::new(ErrKind::Malformed, m),
                        PayloadError::Upstream(m) => AttemptError::new(ErrKind::UpstreamError, m),
                    };
                    err.first_token_ms = ftl_ms;
                    return Err(close_broken(&ctx, &mut *adapter, err));
                }
            };
            if step.content {
                content_steps += 1;
            }
            if first_token_at.is_none() {
                pending.extend(step.out.into_iter().map(chunk));
                if step.content {
                    ctx.claim()?;
                    let now = Instant::now();
                    first_token_at = Some(now);
                    (ctx.on_first_token)(now.duration_since(start).as_secs_f64() * 1000.0);
                    out.append(&mut pending);
                }
            } else {
                out.extend(step.out.into_iter().map(chunk));
            }
            if step.finished {
                finished = true;
                break;
            }
        }
        if !out.is_empty() {
            match ctx.chunks {
                None => ctx.queue.push_all(out.drain(..)),
                Some(tx) => {
                    for ev in out.drain(..) {
                        if tx.send(ev).await.is_err() {
                            return Err(AttemptError::new(
                                ErrKind::Cancelled,
                                "the caller went away",
                            ));
                        }
                    }
                }
            }
        }
    }
    // Let the connection finish its body in the background so it can be reused.
    tokio::spawn(async move {
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while let Ok(Some(_)) = resp.chunk().await {}
        })
        .await;
    });
    let Some(first) = first_token_at else {
        return Err(AttemptError::new(
            ErrKind::UpstreamError,
            "the stream finished without any content",
        ));
    };
    let usage = adapter.usage();
    // At least 1 ms: a stream whose tokens all came at once is fast, not
    // unmeasurable.
    let gen_secs = first.elapsed().as_secs_f64().max(1e-3);
    let tokens = usage
        .map(|u| u.completion_tokens)
        .filter(|&n| n > 0)
        .unwrap_or(content_steps);
    let throughput = (tokens > 1).then(|| tokens as f64 / gen_secs);
    Ok(AttemptOk {
        body: None,
        usage,
        first_token_ms: first.duration_since(start).as_secs_f64() * 1000.0,
        throughput,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn retry_after_forms() {
        use reqwest::header::{HeaderMap, HeaderValue};
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
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        let queue = EventQueue::new();
        let winner = AtomicUsize::new(0);
        let body = serde_json::Map::new();
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
        })
        .await;
        assert_eq!(r.unwrap_err().kind, ErrKind::FirstTokenTimeout);
        assert!(start.elapsed() >= Duration::from_secs(60));
    }

    #[test]
    fn an_unusable_retry_after_ms_does_not_hide_retry_after() {
        use reqwest::header::{HeaderMap, HeaderValue};
        let now = SystemTime::UNIX_EPOCH;
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("4"));
        for bad in ["1e300", "-1", "soon"] {
            h.insert("retry-after-ms", HeaderValue::from_static(bad));
            assert_eq!(retry_after(&h, now), Some(Duration::from_secs(4)), "{bad}");
        }
    }
}
