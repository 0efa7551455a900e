//! How a request fails: refused at submit when it is over
//! `max_request_bytes`, a protocol-neutral `error_kind` on every terminal
//! event (with an error type the caller's SDK knows), and a routing record
//! that names the endpoint whose chunks were delivered before a stream
//! broke. Against the mock fleet on 127.0.0.1.

mod common;

use common::*;
use llmux::{Engine, Protocol};
use serde_json::{json, Value};
use std::time::Duration;

/// A request over `max_request_bytes` is refused at submit.
#[test]
fn oversized_requests_are_refused() {
    let a = upstream("a", behavior(json!({})));
    let eng = engine(&[&a], json!({"max_request_bytes": 1000}));
    let mut body = chat("test/model", false);
    body["messages"] = json!([{"role": "user", "content": "x".repeat(2000)}]);
    let err = eng
        .submit(Protocol::OpenAi, body.to_string().as_bytes())
        .unwrap_err();
    assert!(matches!(
        err,
        llmux::SubmitError::Request(llmux::RequestError::TooLarge(_))
    ));
    assert!(err.to_string().contains("1000"), "{err}");
    assert_eq!(a.server.request_count(), 0);
    assert!(run(&eng, &chat("test/model", false)).ok());
    let bad = Engine::from_json(&config(&[&a], json!({"max_request_bytes": 0})));
    assert!(bad.is_err());
}

/// Every terminal event carries a protocol-neutral `error_kind`,
/// and a cancelled Anthropic request uses an error type the SDK knows.
#[test]
fn terminal_events_carry_a_neutral_error_kind() {
    let slow = anthropic_upstream("slow", behavior(json!({"first_token_delay_ms": 5000})));
    let eng = engine(&[&slow], json!({}));
    let mut body = messages("test/model", true);
    body["provider"] = json!({"timeouts": {"first_token_ms": 100}});
    let o = run_as(&eng, Protocol::Anthropic, &body);
    assert_eq!(o.terminal["error"]["error"]["type"], "timeout_error");
    assert_eq!(o.terminal["error_kind"], "timeout");
    let id = eng
        .submit(
            Protocol::Anthropic,
            messages("test/model", true).to_string().as_bytes(),
        )
        .unwrap();
    std::thread::sleep(Duration::from_millis(50));
    assert!(eng.cancel(id));
    let o = drain(&eng, &[id], Duration::from_secs(10))
        .remove(&id)
        .unwrap();
    assert_eq!(o.terminal["error_kind"], "cancelled");
    let ty = o.terminal["error"]["error"]["type"].as_str().unwrap();
    let known = [
        "invalid_request_error",
        "authentication_error",
        "permission_error",
        "not_found_error",
        "request_too_large",
        "rate_limit_error",
        "api_error",
        "overloaded_error",
        "timeout_error",
    ];
    assert!(known.contains(&ty), "{ty}");
    // A success says so too.
    let fine = upstream("fine", behavior(json!({})));
    let eng = engine(&[&fine], json!({}));
    assert_eq!(
        run(&eng, &chat("test/model", false)).terminal["error_kind"],
        Value::Null
    );
    let o = run(&eng, &chat("test/model", false));
    assert!(o.terminal.as_object().unwrap().contains_key("error_kind"));
}

/// An error after chunks were delivered names the endpoint that
/// sent them.
#[test]
fn an_error_after_a_mid_stream_failure_names_the_endpoint() {
    let a = upstream(
        "a",
        behavior(json!({"fault": {"drop_after": 2}, "chunks": 5})),
    );
    let eng = engine(&[&a], json!({}));
    let o = run(&eng, &chat("test/model", true));
    assert!(!o.ok());
    assert!(!o.chunks.is_empty());
    let r = o.routing();
    assert_eq!(r["endpoint"], "a/default", "{r}");
    assert_eq!(r["provider"], "a");
    assert_eq!(r["upstream_model"], "up-a");
    assert!(r["first_token_ms"].as_f64().is_some());
}
