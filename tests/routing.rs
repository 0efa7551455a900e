//! Every routing rule of DESIGN.md against real HTTP servers on 127.0.0.1.

mod common;

use common::*;
use llmux::{Engine, Protocol, SubmitError};
use llmux_fleet::Behavior;
use serde_json::json;
use std::time::Duration;

#[test]
fn default_routes_by_prior_then_by_live_latency() {
    let mut a = upstream("a", behavior(json!({"first_token_delay_ms": 5})));
    a.expected_ms = Some(10.0);
    let mut b = upstream("b", behavior(json!({"first_token_delay_ms": 5})));
    b.expected_ms = Some(50.0);
    let e = engine(&[&a, &b], json!({}));
    // Prior: a first.
    let out = run(&e, &chat("test/model", true));
    assert!(out.ok(), "{:?}", out.terminal);
    assert_eq!(out.served(), Some("a/default"));
    assert_eq!(b.server.request_count(), 0);
    // a turns slow: its measured latency (peak EWMA) now exceeds b's prior.
    a.server
        .set_behavior(behavior(json!({"first_token_delay_ms": 150})));
    let out = run(&e, &chat("test/model", true));
    assert_eq!(out.served(), Some("a/default"));
    let out = run(&e, &chat("test/model", true));
    assert_eq!(
        out.served(),
        Some("b/default"),
        "traffic moves to the now-faster endpoint"
    );
    assert_eq!(b.server.request_count(), 1);
}

#[test]
fn default_spreads_load_when_fastest_is_busy() {
    let mut a = upstream("a", behavior(json!({"first_token_delay_ms": 300})));
    a.expected_ms = Some(100.0);
    let mut b = upstream("b", Behavior::default());
    b.expected_ms = Some(150.0);
    let e = engine(&[&a, &b], json!({}));
    let body = chat("test/model", true).to_string();
    let first = e.submit(Protocol::OpenAi, body.as_bytes()).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(50));
    // a is busy (cost 100 * 2 = 200 > 150): b gets the second request.
    let second = e.submit(Protocol::OpenAi, body.as_bytes()).unwrap();
    let outs = drain(&e, &[first, second], std::time::Duration::from_secs(10));
    assert_eq!(outs[&first].served(), Some("a/default"));
    assert_eq!(outs[&second].served(), Some("b/default"));
}

/// With default health settings the fastest endpoint, listed
/// last, is measured within the first few requests and then carries them.
#[test]
fn default_routing_measures_every_endpoint_first() {
    let a = upstream("a", behavior(json!({"first_token_delay_ms": 150})));
    let b = upstream("b", behavior(json!({"first_token_delay_ms": 100})));
    let c = upstream("c", behavior(json!({"first_token_delay_ms": 5})));
    let eng = engine(
        &[&a, &b, &c],
        json!({"health": {}, "retry": {"max_retries": 0}}),
    );
    let served: Vec<String> = (0..12)
        .map(|_| {
            let o = run(&eng, &chat("test/model", true));
            o.served()
                .unwrap_or_else(|| panic!("{}", o.terminal))
                .to_owned()
        })
        .collect();
    let first_c = served.iter().position(|s| s == "c/default").unwrap();
    assert!(first_c < 3, "{served:?}");
    // The default 2% exploration may send one or two elsewhere.
    let fast = served[3..].iter().filter(|s| *s == "c/default").count();
    assert!(fast >= 7, "{served:?}");
}

/// Optimism is for endpoints never tried; one tried without a
/// measurement (a translated request refused) ranks by its prior again
/// instead of being tried first on every request.
#[test]
fn an_endpoint_tried_without_a_measurement_is_not_tried_first_again() {
    let anth = anthropic_upstream("anth", behavior(json!({"status": 400})));
    let oai = upstream("oai", behavior(json!({})));
    // Exploration on (optimism), its random share negligible.
    let eng = engine(&[&anth, &oai], json!({"health": {"explore_ratio": 1e-9}}));
    let o = run(&eng, &chat("test/model", true));
    assert_eq!(o.attempts().len(), 2, "{}", o.terminal);
    for _ in 0..5 {
        let o = run(&eng, &chat("test/model", true));
        assert_eq!(
            o.attempts(),
            [("oai/default".to_owned(), "success".to_owned())]
        );
    }
}

#[test]
fn provider_pin_uses_only_that_provider_and_never_fails_over_outside() {
    let a = upstream("a", Behavior::default());
    let b = upstream("b", behavior(json!({"status": 503})));
    let e = engine(&[&a, &b], json!({}));
    let out = run(&e, &chat("test/model:b", true));
    assert!(!out.ok());
    assert_eq!(
        out.attempts(),
        vec![("b/default".into(), "server_error".into())]
    );
    assert_eq!(a.server.request_count(), 0);
    assert_eq!(out.terminal["status"], 503);
    let out = run(&e, &chat("test/model:a", false));
    assert!(out.ok());
    assert_eq!(out.served(), Some("a/default"));
}

#[test]
fn priority_price_cheapest_first_then_next_cheapest() {
    let mut a = upstream("a", Behavior::default());
    a.price = (3.0, 3.0);
    a.expected_ms = Some(1.0);
    let mut b = upstream("b", behavior(json!({"status": 500})));
    b.price = (0.5, 0.5);
    let mut c = upstream("c", Behavior::default());
    c.price = (1.0, 1.0);
    let e = engine(&[&a, &b, &c], json!({}));
    let mut body = chat("test/model", true);
    body["provider"] = json!({"routing": {"type": "priority", "primary_factor": "price"}});
    let out = run(&e, &body);
    assert!(out.ok());
    assert_eq!(
        out.attempts(),
        vec![
            ("b/default".into(), "server_error".into()),
            ("c/default".into(), "success".into())
        ]
    );
    assert_eq!(a.server.request_count(), 0);
    // The cost uses the serving endpoint's prices: 10 prompt + 5 completion tokens at $1/M.
    let cost = out.routing()["cost_usd"].as_f64().unwrap();
    assert!((cost - 15.0 / 1e6).abs() < 1e-12, "{cost}");
}

#[test]
fn priority_latency_explicit() {
    let mut a = upstream("a", Behavior::default());
    a.expected_ms = Some(500.0);
    a.price = (0.0, 0.0);
    let mut b = upstream("b", Behavior::default());
    b.expected_ms = Some(20.0);
    let e = engine(&[&a, &b], json!({}));
    let mut body = chat("test/model", true);
    body["provider"] = json!({"routing": {"type": "priority", "primary_factor": "latency"}});
    assert_eq!(run(&e, &body).served(), Some("b/default"));
}

#[test]
fn priority_throughput_prefers_measured_fastest_generation() {
    let a = upstream("a", behavior(json!({"chunks": 8, "chunk_delay_ms": 25})));
    let b = upstream("b", behavior(json!({"chunks": 8, "chunk_delay_ms": 2})));
    let e = engine(&[&a, &b], json!({}));
    // Measure both (pinned), then route by throughput.
    for m in ["test/model:a", "test/model:b"] {
        assert!(run(&e, &chat(m, true)).ok());
    }
    let stats: serde_json::Value = serde_json::from_str(&e.stats_json()).unwrap();
    let tps = |i: usize| stats["endpoints"][i]["throughput_tps"].as_f64().unwrap();
    assert!(tps(1) > tps(0), "b generates faster: {stats}");
    let mut body = chat("test/model", true);
    body["provider"] = json!({"routing": {"type": "priority", "primary_factor": "throughput"}});
    assert_eq!(run(&e, &body).served(), Some("b/default"));
}

#[test]
fn order_tries_in_order_and_stops_at_first_success() {
    let a = upstream("a", behavior(json!({"status": 502})));
    let b = upstream("b", Behavior::default());
    let c = upstream("c", Behavior::default());
    let e = engine(&[&a, &b, &c], json!({}));
    let mut body = chat("test/model", true);
    body["provider"] =
        json!({"routing": {"type": "order", "providers": ["a/default", "b", "c/default"]}});
    let out = run(&e, &body);
    assert!(out.ok());
    assert_eq!(
        out.attempts(),
        vec![
            ("a/default".into(), "server_error".into()),
            ("b/default".into(), "success".into())
        ]
    );
    assert_eq!(c.server.request_count(), 0);
}

#[test]
fn order_with_one_entry_is_only_that_one() {
    let a = upstream("a", behavior(json!({"status": 500})));
    let b = upstream("b", Behavior::default());
    let e = engine(&[&a, &b], json!({}));
    let mut body = chat("test/model", false);
    body["provider"] = json!({"routing": {"type": "order", "providers": ["a/default"]}});
    let out = run(&e, &body);
    assert!(!out.ok());
    assert_eq!(out.attempts().len(), 1);
    assert_eq!(b.server.request_count(), 0);
}

#[test]
fn unknown_model_provider_and_endpoint_are_clear_errors() {
    let a = upstream("a", Behavior::default());
    let e = engine(&[&a], json!({}));
    let err =
        |body: serde_json::Value| match e.submit(Protocol::OpenAi, body.to_string().as_bytes()) {
            Err(SubmitError::Request(r)) => r.to_string(),
            other => panic!("expected an error, got {other:?}"),
        };
    let m = err(chat("nope/model", true));
    assert!(m.contains("nope/model") && m.contains("test/model"), "{m}");
    let m = err(chat("test/model:zzz", true));
    assert!(m.contains("zzz") && m.contains("a"), "{m}");
    let mut body = chat("test/model", true);
    body["provider"] = json!({"routing": {"type": "order", "providers": ["a/default", "x/y"]}});
    let m = err(body);
    assert!(m.contains("x/y") && m.contains("a/default"), "{m}");
    let mut body = chat("test/model", true);
    body["provider"] = json!({"routing": {"type": "priority", "primary_factor": "vibes"}});
    assert!(err(body).contains("vibes"));
    assert!(err(json!({"messages": []})).contains("model"));
    assert_eq!(a.server.request_count(), 0);
}

#[test]
fn passes_fields_through_substitutes_model_and_asks_for_usage() {
    let mut a = upstream("a", Behavior::default());
    a.provider_extra = json!({"api_key": "sk-test-not-a-real-key", "headers": {"x-org": "llmux"}});
    let e = engine(&[&a], json!({}));
    let mut body = chat("test/model", true);
    body["temperature"] = json!(0.25);
    body["tools"] = json!([{"type": "function", "function": {"name": "f", "parameters": {}}}]);
    body["user"] = json!("u-1");
    body["provider"] = json!({"timeouts": {"first_token_ms": 5000}});
    let out = run(&e, &body);
    assert!(out.ok());
    let got = &a.server.requests()[0];
    assert_eq!(got.path, "/v1/chat/completions");
    assert_eq!(got.body["model"], "up-a");
    assert_eq!(got.body["temperature"], 0.25);
    assert_eq!(got.body["tools"], body["tools"]);
    assert_eq!(got.body["user"], "u-1");
    assert_eq!(got.body["stream_options"]["include_usage"], true);
    assert!(
        got.body.get("provider").is_none(),
        "llmux fields are stripped"
    );
    assert_eq!(
        got.header("authorization"),
        Some("Bearer sk-test-not-a-real-key")
    );
    assert_eq!(got.header("x-org"), Some("llmux"));
    // The caller did not ask for usage: no usage-only chunk, but the routing record has it.
    assert!(out
        .chunks
        .iter()
        .all(|c| !c["choices"].as_array().unwrap().is_empty()));
    assert_eq!(out.routing()["usage"]["prompt_tokens"], 10);
    assert_eq!(out.text(), "Hello from a.");
}

/// Pass-through bodies keep the caller's key order (structured
/// outputs follow the schema's property order).
#[test]
fn pass_through_keeps_key_order() {
    let a = upstream("a", behavior(json!({})));
    let eng = engine(&[&a], json!({}));
    let text = r#"{"model": "test/model", "messages": [{"role": "user", "content": "hi"}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema":
            {"type": "object", "properties": {"reasoning": {"type": "string"},
                                              "answer": {"type": "string"}}}}}}"#;
    let id = eng.submit(Protocol::OpenAi, text.as_bytes()).unwrap();
    let o = drain(&eng, &[id], Duration::from_secs(10))
        .remove(&id)
        .unwrap();
    assert!(o.ok(), "{}", o.terminal);
    let rec = &a.server.requests()[0].body;
    let keys: Vec<&String> = rec["response_format"]["json_schema"]["schema"]["properties"]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    assert_eq!(keys, ["reasoning", "answer"]);
}

#[test]
fn terminal_event_carries_the_whole_routing_record() {
    let a = upstream("a", behavior(json!({"first_token_delay_ms": 20})));
    let e = engine(&[&a], json!({}));
    let mut body = chat("test/model", true);
    body["stream_options"] = json!({"include_usage": true});
    let out = run(&e, &body);
    assert!(out.ok());
    let r = out.routing();
    assert_eq!(r["model"], "test/model");
    assert_eq!(r["endpoint"], "a/default");
    assert_eq!(r["provider"], "a");
    assert_eq!(r["upstream_model"], "up-a");
    assert!(r["first_token_ms"].as_f64().unwrap() >= 20.0);
    assert_eq!(r["usage"]["completion_tokens"], 5);
    assert_eq!(r["usage"]["total_tokens"], 15);
    assert!((r["cost_usd"].as_f64().unwrap() - (10.0 * 1.0 + 5.0 * 2.0) / 1e6).abs() < 1e-12);
    let att = &r["attempts"][0];
    assert_eq!(att["status"], 200);
    assert!(att["elapsed_ms"].as_f64().unwrap() > 0.0);
    // The usage chunk was asked for, so it was forwarded.
    assert!(out
        .chunks
        .iter()
        .any(|c| c["choices"].as_array().unwrap().is_empty() && c["usage"].is_object()));
}

#[test]
fn non_streaming_response_arrives_in_the_done_event() {
    let a = upstream("a", Behavior::default());
    let e = engine(&[&a], json!({}));
    let out = run(&e, &chat("test/model", false));
    assert!(out.ok());
    assert!(out.chunks.is_empty());
    let resp = &out.terminal["response"];
    assert_eq!(resp["object"], "chat.completion");
    assert_eq!(resp["choices"][0]["message"]["content"], "Hello from a.");
    assert_eq!(out.routing()["usage"]["completion_tokens"], 5);
    assert_eq!(a.server.requests()[0].body.get("stream_options"), None);
}

#[test]
fn stats_report_health_and_prices() {
    let a = upstream("a", Behavior::default());
    let e = engine(&[&a], json!({}));
    assert!(run(&e, &chat("test/model", true)).ok());
    let s: serde_json::Value = serde_json::from_str(&e.stats_json()).unwrap();
    let ep = &s["endpoints"][0];
    assert_eq!(ep["id"], "a/default");
    assert_eq!(ep["price"]["prompt"], 1.0);
    assert_eq!(ep["successes"], 1);
    assert_eq!(ep["circuit"], "closed");
    assert!(ep["first_token_ms"].as_f64().is_some());
    assert_eq!(ep["in_flight"], 0);
    // A catalog without models is refused (issue 19: it did nothing).
    let err = Engine::from_json("{}").err().expect("no models");
    assert!(
        err.to_string().contains("models: no models configured"),
        "{err}"
    );
}
