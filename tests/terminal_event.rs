//! The golden terminal events (`tests/fixtures/terminal_done.json`,
//! `terminal_error.json`, captured from the engine against the mock fleet)
//! are what the engine writes today: the same fields, in the same order,
//! with the same values apart from timings and the fleet's response id.
//! The Python, Go and C++ tests decode the same files.
//!
//! `LLMUX_UPDATE_FIXTURES=1 cargo test --test terminal_event` rewrites them
//! from a fresh run.

mod common;

use common::{behavior, engine, run, upstream};
use llmux::{ErrorKind, TerminalEvent, TerminalKind};
use serde_json::{json, Value};
use std::path::PathBuf;

fn fixture_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Timings change from run to run; everything else is fixed by the fleet.
fn without_timings(mut v: Value) -> Value {
    let r = &mut v["routing"];
    for k in ["latency_ms", "first_token_ms"] {
        if r[k].is_number() {
            r[k] = json!(0.0);
        }
    }
    for a in r["attempts"].as_array_mut().into_iter().flatten() {
        a["elapsed_ms"] = json!(0.0);
    }
    // The fleet's response ids and timestamps.
    if let Some(resp) = v.get_mut("response") {
        for k in ["id", "created"] {
            if let Some(x) = resp.get_mut(k) {
                *x = json!(k);
            }
        }
    }
    v
}

/// Two endpoints tried in order: the first fails (503), the second answers.
fn done_event() -> Value {
    let flaky = upstream("flaky", behavior(json!({"status": 503})));
    let steady = upstream("steady", behavior(json!({"text": "Hello from steady."})));
    let e = engine(&[&flaky, &steady], json!({}));
    let body = json!({
        "model": "test/model",
        "messages": [{"role": "user", "content": "hello"}],
        "provider": {"routing": {"type": "order", "providers": ["flaky/default", "steady/default"]}},
    });
    let out = run(&e, &body);
    assert!(out.ok(), "{}", out.terminal);
    out.terminal
}

/// Two endpoints tried in order, both fail: the last one's error returns.
fn error_event() -> Value {
    let limited = upstream("limited", behavior(json!({"status": 429})));
    let broken = upstream("broken", behavior(json!({"status": 503})));
    let e = engine(&[&limited, &broken], json!({}));
    let body = json!({
        "model": "test/model",
        "messages": [{"role": "user", "content": "hello"}],
        "provider": {"routing": {"type": "order", "providers": ["limited/default", "broken/default"]}},
    });
    let out = run(&e, &body);
    assert!(!out.ok(), "{}", out.terminal);
    out.terminal
}

/// Compares a fresh event with its fixture (or rewrites the fixture).
fn check(name: &str, fresh: Value) {
    let path = fixture_path(name);
    if std::env::var_os("LLMUX_UPDATE_FIXTURES").is_some() {
        // One line, as the engine writes it (the C++ test reads it as text).
        let text = serde_json::to_string(&fresh).unwrap();
        std::fs::write(&path, text + "\n").unwrap();
    }
    let text = std::fs::read_to_string(&path).unwrap();
    let golden: Value = serde_json::from_str(&text).unwrap();
    // Compact JSON with the keys in order: a field added, dropped, renamed
    // or moved shows here.
    assert_eq!(
        serde_json::to_string(&without_timings(fresh)).unwrap(),
        serde_json::to_string(&without_timings(golden)).unwrap(),
        "{name} is stale: rerun with LLMUX_UPDATE_FIXTURES=1 and update the bindings' checks"
    );
}

#[test]
fn the_done_fixture_is_what_the_engine_writes() {
    check("terminal_done.json", done_event());
}

#[test]
fn the_error_fixture_is_what_the_engine_writes() {
    check("terminal_error.json", error_event());
}

/// Each fixture reads into the typed event and writes back the same JSON,
/// field for field and in order.
#[test]
fn fixtures_round_trip_through_the_typed_event() {
    for name in ["terminal_done.json", "terminal_error.json"] {
        let text = std::fs::read_to_string(fixture_path(name)).unwrap();
        let t: TerminalEvent = serde_json::from_str(&text).unwrap();
        let back: Value = serde_json::from_str(&serde_json::to_string(&t).unwrap()).unwrap();
        let golden: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            serde_json::to_string(&back).unwrap(),
            serde_json::to_string(&golden).unwrap(),
            "{name}"
        );
    }
}

#[test]
fn the_typed_fixtures_say_what_happened() {
    let text = std::fs::read_to_string(fixture_path("terminal_done.json")).unwrap();
    let t: TerminalEvent = serde_json::from_str(&text).unwrap();
    assert_eq!(t.kind, TerminalKind::Done);
    assert_eq!(
        (t.status, t.error_kind, &*t.outcome),
        (None, None, "success")
    );
    assert!(t.response.is_some() && t.error.is_none());
    let r = &t.routing;
    assert_eq!(r.endpoint.as_deref(), Some("steady/default"));
    assert_eq!(r.culprit(), Some("steady/default"));
    let outcomes: Vec<_> = r.attempts.iter().map(|a| &*a.outcome).collect();
    assert_eq!(outcomes, ["server_error", "success"]);
    let u = r.usage.expect("usage");
    assert_eq!(u.total_tokens, u.prompt_tokens + u.completion_tokens);
    assert!(r.cost_usd.is_some());

    let text = std::fs::read_to_string(fixture_path("terminal_error.json")).unwrap();
    let t: TerminalEvent = serde_json::from_str(&text).unwrap();
    assert_eq!(t.kind, TerminalKind::Error);
    assert_eq!(t.status, Some(503));
    assert_eq!(t.error_kind, Some(ErrorKind::Upstream));
    assert_eq!(&*t.outcome, "server_error");
    assert!(t.response.is_none() && t.error.is_some());
    assert_eq!(t.routing.endpoint, None);
    assert_eq!(t.routing.culprit(), Some("broken/default"));
    let outcomes: Vec<_> = t.routing.attempts.iter().map(|a| &*a.outcome).collect();
    assert_eq!(outcomes, ["rate_limited", "server_error"]);
}
