//! The gateway's HTTP server span around each completion request,
//! child of the caller's W3C `traceparent`, parent of the engine's request
//! span. Nothing happens without `telemetry.otlp`.

use axum::http::HeaderMap;
use llmux::telemetry::{
    context_for, new_span_id, new_trace_id, AttrValue, SpanData, SpanKind, TraceContext, Tracer,
};
use llmux::Protocol;
use std::time::SystemTime;

/// A server span in progress.
pub struct HttpSpan {
    /// This span's context: what the engine's request span is a child of.
    pub ctx: TraceContext,
    parent: Option<[u8; 8]>,
    start: SystemTime,
    route: &'static str,
}

fn unix_ns(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// The route a protocol's completions are served at (the span's name).
fn route_of(proto: Protocol) -> &'static str {
    match proto {
        Protocol::Anthropic => "/v1/messages",
        Protocol::Responses => "/v1/responses",
        _ => "/v1/chat/completions",
    }
}

/// Starts the span when the engine traces; the `traceparent` to hand the
/// engine (not sampled: one that says so, so the engine does not sample
/// again).
pub fn begin(
    tracer: Option<&Tracer>,
    h: &HeaderMap,
    proto: Protocol,
) -> (Option<HttpSpan>, Option<String>) {
    let Some(t) = tracer else {
        return (None, None);
    };
    let incoming = h
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .and_then(TraceContext::parse);
    let Some((trace_id, parent)) = context_for(incoming, t.settings().sampling_ratio) else {
        let off = TraceContext {
            trace_id: incoming.map_or_else(new_trace_id, |c| c.trace_id),
            span_id: new_span_id(),
            sampled: false,
        };
        return (None, Some(off.header()));
    };
    let ctx = TraceContext {
        trace_id,
        span_id: new_span_id(),
        sampled: true,
    };
    let header = ctx.header();
    let span = HttpSpan {
        ctx,
        parent,
        start: SystemTime::now(),
        route: route_of(proto),
    };
    (Some(span), Some(header))
}

impl HttpSpan {
    /// Ends the span with the response's status and outcome.
    pub fn end(&self, tracer: Option<&Tracer>, status: u16, outcome: &str) {
        let Some(t) = tracer else { return };
        let mut attributes = vec![
            ("http.request.method", AttrValue::Str("POST".into())),
            ("http.route", AttrValue::Str(self.route.into())),
            (
                "http.response.status_code",
                AttrValue::Int(i64::from(status)),
            ),
            ("llmux.outcome", AttrValue::Str(outcome.into())),
        ];
        let failed = status >= 500;
        if failed {
            attributes.push(("error.type", AttrValue::Str(status.to_string())));
        }
        t.record(SpanData {
            trace_id: self.ctx.trace_id,
            span_id: self.ctx.span_id,
            parent: self.parent,
            name: format!("POST {}", self.route),
            kind: SpanKind::Server,
            start_ns: unix_ns(self.start),
            end_ns: unix_ns(SystemTime::now()),
            attributes,
            error: failed.then(|| outcome.to_owned()),
        });
    }
}

/// A request the caller's key refused before the engine saw it.
pub struct Refused<'a> {
    pub model: &'a str,
    pub stream: bool,
    /// The key's name (never its secret).
    pub key: &'a str,
    pub status: u16,
    /// The outcome name (`budget_exhausted`, `rate_limited`, ...).
    pub reason: &'a str,
    pub message: &'a str,
}

impl HttpSpan {
    /// Records the request span of a refused request (child of this span,
    /// no attempts; `error.type` is the refusal's reason) and ends this
    /// span with the refusal's status.
    pub fn refused(&self, tracer: Option<&Tracer>, r: &Refused) {
        let Some(t) = tracer else { return };
        let s = |v: &str| AttrValue::Str(v.to_owned());
        let attributes = vec![
            ("gen_ai.operation.name", s("chat")),
            ("gen_ai.request.model", s(r.model)),
            ("llmux.stream", AttrValue::Bool(r.stream)),
            ("llmux.outcome", s(r.reason)),
            ("llmux.attempts", AttrValue::Int(0)),
            ("llmux.key", s(r.key)),
            ("llmux.refused_by", s("key")),
            ("error.type", s(r.reason)),
        ];
        t.record(SpanData {
            trace_id: self.ctx.trace_id,
            span_id: new_span_id(),
            parent: Some(self.ctx.span_id),
            name: format!("chat {}", r.model),
            kind: SpanKind::Client,
            start_ns: unix_ns(self.start),
            end_ns: unix_ns(SystemTime::now()),
            attributes,
            error: Some(r.message.to_owned()),
        });
        self.end(tracer, r.status, r.reason);
    }
}
