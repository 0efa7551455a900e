//! A finished request as spans: `chat {model}` (client) and one child per
//! attempt, per the OpenTelemetry GenAI semantic conventions plus llmux's
//! routing attributes.

use super::{new_span_id, AttrValue, SpanData, SpanKind, TraceContext};

/// One attempt, as the engine saw it.
pub struct AttemptTrace<'a> {
    pub endpoint: &'a str,
    pub provider: &'a str,
    pub upstream_model: &'a str,
    /// `success` or the outcome name.
    pub outcome: &'a str,
    pub status: Option<u16>,
    pub error: Option<&'a str>,
    pub start_ns: u64,
    pub end_ns: u64,
    /// The first token's time after the attempt started, when it came.
    pub first_token_ms: Option<f64>,
    /// Started beside a running attempt (a hedge).
    pub hedge: bool,
    /// Body bytes sent upstream and received from it (the response body,
    /// or the stream read so far).
    pub bytes: Option<(u64, u64)>,
}

/// One finished request.
pub struct RequestTrace<'a> {
    /// The trace and the parent span (the gateway's HTTP span, an incoming
    /// `traceparent`); `span_id` is the request span's own parent.
    pub trace_id: [u8; 16],
    pub parent: Option<[u8; 8]>,
    pub requested_model: &'a str,
    pub stream: bool,
    pub start_ns: u64,
    pub end_ns: u64,
    /// `success` or the request's outcome.
    pub outcome: &'a str,
    pub error: Option<&'a str>,
    pub served_endpoint: Option<&'a str>,
    pub served_provider: Option<&'a str>,
    pub response_model: Option<&'a str>,
    pub response_id: Option<&'a str>,
    pub finish_reasons: Vec<String>,
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    pub cached_tokens: Option<u64>,
    pub cost_usd: Option<f64>,
    pub first_token_ms: Option<f64>,
    /// `endpoint: reason` per endpoint the preferences filtered.
    pub filtered: Vec<String>,
    pub sticky: bool,
    pub attempts: Vec<AttemptTrace<'a>>,
    /// Only with `capture_content`.
    pub input_messages: Option<String>,
    pub output_messages: Option<String>,
}

fn s(v: &str) -> AttrValue {
    AttrValue::Str(v.to_owned())
}

fn request_attrs(r: &RequestTrace) -> Vec<(&'static str, AttrValue)> {
    let mut a = vec![
        ("gen_ai.operation.name", s("chat")),
        ("gen_ai.request.model", s(r.requested_model)),
        ("llmux.stream", AttrValue::Bool(r.stream)),
        ("llmux.outcome", s(r.outcome)),
        ("llmux.attempts", AttrValue::Int(r.attempts.len() as i64)),
        (
            "llmux.hedged",
            AttrValue::Bool(r.attempts.iter().any(|a| a.hedge)),
        ),
        ("llmux.sticky", AttrValue::Bool(r.sticky)),
    ];
    let provider = r
        .served_provider
        .or_else(|| r.attempts.last().map(|a| a.provider));
    let opt = [
        ("gen_ai.provider.name", provider.map(s)),
        ("gen_ai.response.model", r.response_model.map(s)),
        ("gen_ai.response.id", r.response_id.map(s)),
        ("llmux.endpoint", r.served_endpoint.map(s)),
        ("error.type", (r.outcome != "success").then(|| s(r.outcome))),
        (
            "gen_ai.usage.input_tokens",
            r.input_tokens.map(|t| AttrValue::Int(t as i64)),
        ),
        (
            "gen_ai.usage.output_tokens",
            r.output_tokens.map(|t| AttrValue::Int(t as i64)),
        ),
        (
            "gen_ai.usage.cache_read.input_tokens",
            r.cached_tokens.map(|t| AttrValue::Int(t as i64)),
        ),
        ("llmux.cost_usd", r.cost_usd.map(AttrValue::F64)),
        ("llmux.first_token_ms", r.first_token_ms.map(AttrValue::F64)),
        ("gen_ai.input.messages", r.input_messages.as_deref().map(s)),
        (
            "gen_ai.output.messages",
            r.output_messages.as_deref().map(s),
        ),
    ];
    a.extend(opt.into_iter().filter_map(|(k, v)| Some((k, v?))));
    if !r.finish_reasons.is_empty() {
        a.push((
            "gen_ai.response.finish_reasons",
            AttrValue::StrArray(r.finish_reasons.clone()),
        ));
    }
    if !r.filtered.is_empty() {
        a.push(("llmux.filtered", AttrValue::StrArray(r.filtered.clone())));
    }
    a
}

fn attempt_span(r: &RequestTrace, parent: [u8; 8], n: usize, t: &AttemptTrace) -> SpanData {
    let mut a = vec![
        ("gen_ai.operation.name", s("chat")),
        ("gen_ai.provider.name", s(t.provider)),
        ("gen_ai.request.model", s(t.upstream_model)),
        ("llmux.endpoint", s(t.endpoint)),
        ("llmux.attempt", AttrValue::Int(n as i64)),
        ("llmux.outcome", s(t.outcome)),
        ("llmux.hedge", AttrValue::Bool(t.hedge)),
    ];
    if let Some(st) = t.status {
        a.push(("http.response.status_code", AttrValue::Int(i64::from(st))));
    }
    if let Some(ms) = t.first_token_ms {
        a.push(("llmux.first_token_ms", AttrValue::F64(ms)));
    }
    if let Some((sent, received)) = t.bytes {
        a.push(("llmux.request.body_bytes", AttrValue::Int(sent as i64)));
        a.push(("llmux.response.body_bytes", AttrValue::Int(received as i64)));
    }
    let failed = t.outcome != "success";
    if failed {
        a.push(("error.type", s(t.outcome)));
    }
    SpanData {
        trace_id: r.trace_id,
        span_id: new_span_id(),
        parent: Some(parent),
        name: format!("chat {}", t.upstream_model),
        kind: SpanKind::Client,
        start_ns: t.start_ns,
        end_ns: t.end_ns,
        attributes: a,
        error: failed.then(|| t.error.unwrap_or(t.outcome).to_owned()),
    }
}

/// The request span, then one span per attempt (its children, siblings of
/// each other).
pub fn request_spans(r: &RequestTrace) -> Vec<SpanData> {
    let id = new_span_id();
    let mut out = Vec::with_capacity(1 + r.attempts.len());
    out.push(SpanData {
        trace_id: r.trace_id,
        span_id: id,
        parent: r.parent,
        name: format!("chat {}", r.requested_model),
        kind: SpanKind::Client,
        start_ns: r.start_ns,
        end_ns: r.end_ns,
        attributes: request_attrs(r),
        error: (r.outcome != "success").then(|| r.error.unwrap_or(r.outcome).to_owned()),
    });
    for (i, t) in r.attempts.iter().enumerate() {
        out.push(attempt_span(r, id, i + 1, t));
    }
    out
}

/// The context a request runs in: its parent's, else a new trace sampled
/// at `ratio`. `None`: not sampled.
pub fn context_for(
    parent: Option<TraceContext>,
    ratio: f64,
) -> Option<([u8; 16], Option<[u8; 8]>)> {
    match parent {
        Some(p) if p.sampled => Some((p.trace_id, Some(p.span_id))),
        Some(_) => None,
        None => {
            let t = super::new_trace_id();
            super::sampled_by_ratio(&t, ratio).then_some((t, None))
        }
    }
}
