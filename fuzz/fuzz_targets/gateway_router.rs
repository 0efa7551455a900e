//! The gateway's router in process (issue 25): an arbitrary request
//! (method, a real route or garbage, headers, body, each caller protocol)
//! through `llmux serve`'s axum router on an engine whose upstreams are
//! the mock fleet on 127.0.0.1. Checks: no panic (libFuzzer aborts on
//! one), the response is well formed (a valid status; a JSON body when it
//! says JSON; SSE events with JSON data when it streams), and once the
//! response is read or dropped, no request is left in the engine or at an
//! upstream.
#![no_main]

mod gw;

use axum::body::Body;
use axum::http::{header, HeaderName, HeaderValue, Method, Request, Response};
use http_body_util::BodyExt;
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt;

const METHODS: [&str; 7] = ["POST", "GET", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH"];

/// Every route the gateway mounts (also under `/api`), with Gemini's
/// methods on a few models.
const PATHS: [&str; 26] = [
    "/v1/chat/completions",
    "/v1/messages",
    "/anthropic/v1/messages",
    "/v1/responses",
    "/v1beta/models/fuzz/chat:generateContent",
    "/v1beta/models/fuzz/via-gemini:streamGenerateContent?alt=sse",
    "/v1beta/models/fuzz/flaky:streamGenerateContent",
    "/v1/models/fuzz/chat:countTokens",
    "/v1beta/models/fuzz/chat:ok-openai:generateContent",
    "/vertex-ai/v1/publishers/google/models/fuzz/chat:generateContent",
    "/v1/messages/count_tokens",
    "/anthropic/v1/messages/count_tokens",
    "/v1/models",
    "/anthropic/v1/models",
    "/v1beta/models",
    "/v1beta/models/fuzz/chat",
    "/v1/stats",
    "/v1/key",
    "/v1/keys",
    "/v1/route?model=fuzz/chat",
    "/",
    "/health",
    "/ready",
    "/metrics",
    "/dashboard",
    "/admin/reload",
];

const HEADERS: [&str; 12] = [
    "content-type",
    "authorization",
    "x-api-key",
    "x-goog-api-key",
    "anthropic-version",
    "anthropic-beta",
    "accept",
    "traceparent",
    "session-id",
    "x-claude-code-session-id",
    "host",
    "content-length",
];

fuzz_target!(|data: &[u8]| {
    let g = gw::gateway();
    let Ok((req, frames)) = request(Unstructured::new(data)) else {
        return;
    };
    let what = format!("{} {}", req.method(), req.uri());
    let res = g.rt.block_on(async {
        let res = tokio::time::timeout(
            std::time::Duration::from_secs(20),
            g.router.clone().oneshot(req),
        )
        .await;
        match res {
            Ok(Ok(res)) => Some(check(res, frames, &what).await),
            Ok(Err(e)) => match e {},
            Err(_) => panic!("{what}: no answer in 20 s"),
        }
    });
    let _status = res;
    g.settle(&what);
});

/// The request, and how many body frames of the response to read before
/// hanging up (255: all).
fn request(mut u: Unstructured<'_>) -> Result<(Request<Body>, u8)> {
    let method = match u.ratio(1, 16)? {
        true => Method::from_bytes(u.arbitrary::<&str>()?.as_bytes()).unwrap_or(Method::POST),
        false => Method::from_bytes(u.choose(&METHODS)?.as_bytes()).unwrap_or(Method::POST),
    };
    let mut path = match u.ratio(1, 8)? {
        true => u.arbitrary::<String>()?,
        false => (*u.choose(&PATHS)?).to_owned(),
    };
    if u.ratio(1, 4)? {
        path.insert_str(0, "/api");
    }
    let mut b = Request::builder().method(method).uri(path.as_str());
    let auth = *u.choose(&[
        Some(("authorization", "Bearer fuzz-gateway-key")),
        Some(("x-api-key", gw::KEY)),
        Some(("x-goog-api-key", gw::KEY)),
        Some(("authorization", "Bearer wrong")),
        None,
    ])?;
    if let Some((name, value)) = auth {
        b = b.header(name, value);
    }
    b = b.header(header::CONTENT_TYPE, "application/json");
    for _ in 0..u.int_in_range(0..=4)? {
        let name = match u.ratio(1, 4)? {
            true => HeaderName::from_bytes(u.arbitrary::<&[u8]>()?).ok(),
            false => Some(HeaderName::from_static(u.choose(&HEADERS)?)),
        };
        let value = HeaderValue::from_bytes(u.arbitrary::<&[u8]>()?).ok();
        if let (Some(n), Some(v)) = (name, value) {
            b = b.header(n, v);
        }
    }
    let frames = u.arbitrary::<u8>()?;
    let body = u.take_rest().to_vec();
    match b.body(Body::from(body)) {
        Ok(r) => Ok((r, frames)),
        Err(_) => Err(libfuzzer_sys::arbitrary::Error::IncorrectFormat),
    }
}

/// Reads up to `frames` body frames (all for 255) and checks what a
/// client would: JSON where the content type says so, SSE data that is
/// JSON or `[DONE]`.
async fn check(res: Response<Body>, frames: u8, what: &str) -> u16 {
    let status = res.status().as_u16();
    assert!((100..600).contains(&status), "{what}: status {status}");
    let kind = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let mut body = res.into_body();
    let mut bytes = Vec::new();
    let mut n = 0u8;
    while frames == u8::MAX || n < frames {
        match body.frame().await {
            Some(Ok(f)) => {
                if let Some(d) = f.data_ref() {
                    bytes.extend_from_slice(d);
                }
            }
            Some(Err(e)) => panic!("{what}: body error {e}"),
            None => break,
        }
        n = n.saturating_add(1);
    }
    if frames != u8::MAX && n >= frames {
        return status; // hung up early: the drop must cancel the request
    }
    let text = String::from_utf8_lossy(&bytes);
    if kind.starts_with("application/json") && !bytes.is_empty() {
        if let Err(e) = serde_json::from_slice::<serde_json::Value>(&bytes) {
            panic!("{what}: {status} {kind} body is not JSON ({e}): {text}");
        }
    }
    if kind.starts_with("text/event-stream") {
        for line in text.lines() {
            if let Some(d) = line.strip_prefix("data:") {
                let d = d.trim();
                assert!(
                    d == "[DONE]" || serde_json::from_str::<serde_json::Value>(d).is_ok(),
                    "{what}: SSE data is not JSON: {d:?}"
                );
            }
        }
    }
    status
}
