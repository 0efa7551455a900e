//! What tracing adds to a request's path with the collector down:
//! admitting the request span and its two attempt spans (once the queue is
//! full, they are dropped and counted before anything is built), against
//! the same request without a tracer (nothing built).

use super::util::Case;
use llmux::telemetry::{request_spans, AttemptTrace, OtlpConfig, RequestTrace, Tracer};
use std::hint::black_box;
use std::time::Instant;

fn trace<'a>() -> RequestTrace<'a> {
    let attempt = |endpoint: &'a str, outcome: &'a str, status: u16| AttemptTrace {
        endpoint,
        provider: endpoint.split('/').next().unwrap_or(""),
        upstream_model: "up-model",
        outcome,
        status: Some(status),
        error: (status != 200)
            .then_some("provider \"dead\" (endpoint dead/default) failed with HTTP 500"),
        start_ns: 1_000,
        end_ns: 2_000,
        first_token_ms: (status == 200).then_some(12.5),
        hedge: false,
        bytes: Some((1_800, 2_400)),
    };
    RequestTrace {
        trace_id: [7; 16],
        parent: Some([9; 8]),
        requested_model: "demo/chat",
        stream: true,
        start_ns: 1_000,
        end_ns: 3_000,
        outcome: "success",
        error: None,
        served_endpoint: Some("live/default"),
        served_provider: Some("live"),
        response_model: Some("up-model"),
        response_id: Some("chatcmpl-123"),
        finish_reasons: vec!["stop".into()],
        input_tokens: Some(20),
        output_tokens: Some(30),
        cached_tokens: Some(0),
        cost_usd: Some(0.0001),
        first_token_ms: Some(12.5),
        filtered: Vec::new(),
        sticky: false,
        attempts: vec![
            attempt("dead/default", "server_error", 500),
            attempt("live/default", "success", 200),
        ],
        input_messages: None,
        output_messages: None,
    }
}

pub fn case_telemetry(out: &mut Vec<Case>) {
    let mut c = Case::new(
        "trace_cost_collector_down",
        "request span + 2 attempt spans built and queued per request, OTLP collector refusing connections",
    );
    let settings = OtlpConfig {
        endpoint: Some("http://127.0.0.1:9".into()),
        ..OtlpConfig::default()
    }
    .resolve(|_| None)
    .expect("settings");
    let tracer = Tracer::start(settings).expect("tracer");
    let off: Option<&Tracer> = None;
    let on = Some(&tracer);
    let run = |t: Option<&Tracer>| {
        // As the engine does: admit, then build and queue.
        if let Some(t) = t {
            if t.admit(3) {
                for s in request_spans(black_box(&trace())) {
                    t.send_admitted(s);
                }
            }
        }
    };
    let iters = 200_000;
    let (mut best_on, mut best_off) = (f64::INFINITY, f64::INFINITY);
    for _ in 0..5 {
        let t = Instant::now();
        for _ in 0..iters {
            run(black_box(off));
        }
        best_off = best_off.min(t.elapsed().as_nanos() as f64 / iters as f64);
        let t = Instant::now();
        for _ in 0..iters {
            run(black_box(on));
        }
        best_on = best_on.min(t.elapsed().as_nanos() as f64 / iters as f64);
    }
    let added = (best_on - best_off).max(0.0);
    c.m("added_ns", added);
    c.m("dropped_spans", tracer.counters().dropped as f64);
    c.check(
        "added per request, collector down",
        format!("{:.2} µs", added / 1000.0),
        "<= 2 µs",
        added <= 2000.0,
    );
    tracer.shutdown();
    out.push(c);
}
