//! A finished request handed to the trace exporter, when one is
//! configured: the request span and its attempts, built from what the
//! request task recorded (no hook on the hot path of an attempt).

use super::Inner;
use crate::request::ParsedRequest;
use crate::telemetry::{context_for, request_spans, AttemptTrace, RequestTrace, TraceContext};
use std::time::SystemTime;
use tokio::time::Instant;

/// Where a request's span starts: its parent, and its start on the wall
/// clock and on the runtime's clock.
#[derive(Clone, Copy)]
pub(super) struct Start {
    parent: Option<TraceContext>,
    wall: SystemTime,
    started: Instant,
}

impl Start {
    /// The request's start on the runtime's clock.
    pub(super) fn started(&self) -> Instant {
        self.started
    }

    pub(super) fn now(parent: Option<TraceContext>, started: Instant) -> Start {
        Start {
            parent,
            wall: SystemTime::now(),
            started,
        }
    }
}

/// What `run` knows when the request ends.
pub(super) struct Finished<'a> {
    pub(super) start: Start,
    pub(super) outcome: &'a str,
    pub(super) error: Option<&'a str>,
    /// A non-streaming response body (the caller's protocol).
    pub(super) body: Option<&'a str>,
    /// A stream's response id and finish reason, from its adapter.
    pub(super) facts: Option<&'a crate::protocol::StreamFacts>,
    pub(super) routing: &'a crate::api::RoutingRecord<'a>,
    /// Per attempt, in the routing record's order.
    pub(super) attempts: Vec<Mark>,
}

/// What the request task noted of an attempt besides its routing record.
pub(super) struct Mark {
    pub(super) started: Instant,
    /// Started beside a running attempt.
    pub(super) hedge: bool,
    /// Body bytes (sent, received).
    pub(super) bytes: Option<(u64, u64)>,
}

fn ns(wall: SystemTime, started: Instant, at: Instant) -> u64 {
    let base = wall
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    base + at.saturating_duration_since(started).as_nanos() as u64
}

/// The response's id and finish reasons, read from a non-streaming body of
/// any protocol (`choices[].finish_reason`, `stop_reason`, `status`,
/// Gemini's `responseId` and `candidates[].finishReason`).
fn response_facts(body: &str) -> (Option<String>, Vec<String>) {
    #[derive(serde::Deserialize)]
    struct Choice {
        #[serde(alias = "finishReason")]
        finish_reason: Option<String>,
    }
    #[derive(serde::Deserialize)]
    struct Body {
        #[serde(alias = "responseId")]
        id: Option<String>,
        #[serde(default, alias = "candidates")]
        choices: Vec<Choice>,
        stop_reason: Option<String>,
        status: Option<String>,
    }
    let Ok(b) = serde_json::from_str::<Body>(body) else {
        return (None, Vec::new());
    };
    let mut reasons: Vec<String> = b
        .choices
        .into_iter()
        .filter_map(|c| c.finish_reason)
        .collect();
    reasons.extend(b.stop_reason.or(b.status));
    (b.id, reasons)
}

/// The response id and finish reasons: from the body, else the stream's.
fn facts_of(f: &Finished) -> (Option<String>, Vec<String>) {
    match (f.body, f.facts) {
        (Some(body), _) => response_facts(body),
        (None, Some(s)) => (s.id.clone(), s.finish_reason.iter().cloned().collect()),
        (None, None) => (None, Vec::new()),
    }
}

/// The request's `messages` (or Responses `input`) as compact JSON, for a
/// trace that captures content.
fn captured_input(req: &ParsedRequest) -> Option<String> {
    let tree = req.body.tree();
    tree.get("messages")
        .or_else(|| tree.get("input"))
        .map(|m| m.to_string())
}

/// Queues the request's spans; does nothing without a tracer or when the
/// request is not sampled.
pub(super) fn export(inner: &Inner, req: &ParsedRequest, f: Finished) {
    let Some(tracer) = inner.tracer.as_ref() else {
        return;
    };
    let settings = tracer.settings();
    let Some((trace_id, parent)) = context_for(f.start.parent, settings.sampling_ratio) else {
        return;
    };
    // Nothing is built when the queue is full (a collector down).
    if !tracer.admit(1 + f.routing.attempts.len()) {
        return;
    }
    let r = f.routing;
    let end = ns(f.start.wall, f.start.started, Instant::now());
    let served = r.endpoint.as_deref();
    let attempts = r
        .attempts
        .iter()
        .zip(&f.attempts)
        .map(|(a, m)| {
            let start_ns = ns(f.start.wall, f.start.started, m.started);
            let success = a.outcome == "success";
            AttemptTrace {
                endpoint: &a.endpoint,
                provider: &a.provider,
                upstream_model: served
                    .filter(|s| *s == a.endpoint)
                    .and(r.upstream_model.as_deref())
                    .unwrap_or(&a.endpoint),
                outcome: &a.outcome,
                status: a.status,
                error: a.error.as_deref(),
                start_ns,
                end_ns: start_ns + (a.elapsed_ms * 1e6) as u64,
                first_token_ms: r
                    .first_token_ms
                    .filter(|_| success || served == Some(&*a.endpoint)),
                hedge: m.hedge,
                bytes: m.bytes,
            }
        })
        .collect();
    let (response_id, finish_reasons) = facts_of(&f);
    let capture = settings.capture_content;
    let input = capture.then(|| captured_input(req)).flatten();
    let trace = RequestTrace {
        trace_id,
        parent,
        requested_model: &r.requested_model,
        stream: req.stream,
        start_ns: ns(f.start.wall, f.start.started, f.start.started),
        end_ns: end,
        outcome: f.outcome,
        error: f.error,
        served_endpoint: served,
        served_provider: r.provider.as_deref(),
        response_model: r.upstream_model.as_deref(),
        response_id: response_id.as_deref(),
        finish_reasons,
        input_tokens: r.usage.map(|u| u.prompt_tokens),
        output_tokens: r.usage.map(|u| u.completion_tokens),
        cached_tokens: r.usage.map(|u| u.cached_tokens),
        cost_usd: r.cost_usd,
        first_token_ms: r.first_token_ms,
        filtered: r
            .filtered
            .iter()
            .map(|x| format!("{}: {}", x.endpoint, x.reason))
            .collect(),
        sticky: req.sticky_key.is_some(),
        attempts,
        input_messages: input,
        output_messages: f.body.filter(|_| capture).map(str::to_owned),
    };
    for span in request_spans(&trace) {
        tracer.send_admitted(span);
    }
}
