//! Regression tests for issue 9: the routing signals (what health books from
//! each attempt), cold-start routing, error kinds and request fidelity.

mod common;

use common::*;
use llmux::{Engine, Protocol};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::time::Duration;

fn stats(e: &Engine) -> Value {
    serde_json::from_str(&e.stats_json()).unwrap()
}

fn endpoint_stats(e: &Engine, id: &str) -> Value {
    stats(e)["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == id)
        .cloned()
        .unwrap_or_else(|| panic!("no endpoint {id}"))
}

/// Defect 1: a request-level total timeout that cuts an attempt off counts
/// against the endpoint like the attempt's own timeout would.
#[test]
fn a_request_total_timeout_counts_against_the_endpoint() {
    let slow = upstream("slow", behavior(json!({"first_token_delay_ms": 5000})));
    let eng = engine(&[&slow], json!({}));
    for _ in 0..3 {
        let mut body = chat("test/model", true);
        body["provider"] = json!({"timeouts": {"total_ms": 200}});
        let o = run(&eng, &body);
        assert_eq!(o.error_type(), "timeout", "{}", o.terminal);
        assert_eq!(o.attempts()[0].1, "total_timeout");
    }
    let s = endpoint_stats(&eng, "slow/default");
    assert_eq!(s["failures"], 3, "{s}");
    assert_eq!(s["circuit"], "open", "{s}");
    assert_eq!(s["in_flight"], 0, "{s}");
}

/// Defect 2: a non-streaming call books its time to the complete body as
/// `response_ms`, never as first-token latency.
#[test]
fn a_non_streaming_call_leaves_first_token_latency_alone() {
    let a = upstream("a", behavior(json!({})));
    let eng = engine(&[&a], json!({}));
    assert!(run(&eng, &chat("test/model", true)).ok());
    let before = endpoint_stats(&eng, "a/default")["first_token_ms"]
        .as_f64()
        .unwrap();
    assert!(before < 300.0, "{before}");
    let mut body = chat("test/model", false);
    body["mock"] = json!({"first_token_delay_ms": 600});
    assert!(run(&eng, &body).ok());
    let s = endpoint_stats(&eng, "a/default");
    assert_eq!(s["first_token_ms"].as_f64().unwrap(), before, "{s}");
    assert!(s["response_ms"].as_f64().unwrap() >= 600.0, "{s}");
}

/// Defect 2: a stream whose tokens all arrive within a millisecond still
/// gets a throughput figure (a very fast endpoint is not ranked last).
#[test]
fn a_very_fast_stream_is_measured_for_throughput() {
    let chunk = |content: &str, finish: &str| {
        format!(
            "data: {{\"id\":\"x\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\
             \"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{content}\"}},\"finish_reason\":{finish}}}]}}\n\n"
        )
    };
    let mut body = String::new();
    for _ in 0..10 {
        body.push_str(&chunk("tok", "null"));
    }
    body.push_str(&chunk("", "\"stop\""));
    body.push_str("data: [DONE]\n\n");
    // The whole stream in one write: every token within the same millisecond.
    let (addr, t) = raw_server(vec![body.into_bytes()]);
    let eng = Engine::from_json(&raw_config(addr)).unwrap();
    let o = run(&eng, &chat("test/model", true));
    assert!(o.ok(), "{}", o.terminal);
    let s = endpoint_stats(&eng, "raw/default");
    assert!(s["throughput_tps"].as_f64().is_some_and(|t| t > 0.0), "{s}");
    drop(eng);
    let _ = t.join();
}

/// Defect 3: with default health settings the fastest endpoint, listed
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

/// Defect 3: optimism is for endpoints never tried; one tried without a
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

/// Defect 4: pass-through bodies keep the caller's key order (structured
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

/// Defect 5: a 400 from an endpoint the request was translated for moves
/// on to the next endpoint; the same 400 from an endpoint of the caller's
/// protocol still ends the request.
#[test]
fn a_400_caused_by_translation_fails_over() {
    let anth = anthropic_upstream("anth", behavior(json!({"status": 400})));
    let oai = upstream("oai", behavior(json!({})));
    let eng = engine(&[&anth, &oai], json!({}));
    let mut body = chat("test/model", true);
    body["temperature"] = json!(1.5);
    let o = run(&eng, &body);
    assert!(o.ok(), "{}", o.terminal);
    assert_eq!(o.served(), Some("oai/default"));
    assert_eq!(o.attempts()[0].1, "translation_error");
    assert_eq!(endpoint_stats(&eng, "anth/default")["failures"], 0);
    // Same protocol: the 400 describes the request.
    let mut body = messages("test/model", true);
    body["provider"] = json!({"routing": {"type": "order", "providers": ["anth", "oai"]}});
    let o = run_as(&eng, Protocol::Anthropic, &body);
    assert!(!o.ok());
    assert_eq!(o.terminal["error_kind"], "invalid_request");
    assert_eq!(o.attempts().len(), 1);
}

/// Defect 6: every terminal event carries a protocol-neutral `error_kind`,
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

/// Defect 7: an error after chunks were delivered names the endpoint that
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

/// Defect 8: an Anthropic caller served by an OpenAI endpoint gets an
/// estimate of its input tokens at `message_start`.
#[test]
fn message_start_carries_an_input_token_estimate() {
    let a = upstream("a", behavior(json!({"prompt_tokens": 33})));
    let eng = engine(&[&a], json!({}));
    let mut body = messages("test/model", true);
    body["messages"] = json!([{"role": "user", "content": "x".repeat(400)}]);
    let o = run_as(&eng, Protocol::Anthropic, &body);
    assert!(o.ok(), "{}", o.terminal);
    let start = &o.chunks[0];
    assert_eq!(start["type"], "message_start");
    let est = start["message"]["usage"]["input_tokens"].as_u64().unwrap();
    assert!(est >= 100, "{start}");
    let delta = o
        .chunks
        .iter()
        .find(|c| c["type"] == "message_delta")
        .unwrap();
    assert_eq!(delta["usage"]["input_tokens"], 33);
}

/// Defect 9: a request over `max_request_bytes` is refused at submit.
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

/// A server that answers one streaming request with `parts`, each in one
/// write, then closes.
fn raw_server(parts: Vec<Vec<u8>>) -> (std::net::SocketAddr, std::thread::JoinHandle<()>) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let t = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let mut buf = [0u8; 65536];
        let mut got = Vec::new();
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut buf).unwrap();
            if n == 0 {
                return;
            }
            got.extend_from_slice(&buf[..n]);
        }
        let _ = s.write_all(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n",
        );
        for p in parts {
            if s.write_all(&p).is_err() {
                return;
            }
        }
    });
    (addr, t)
}

fn raw_config(addr: std::net::SocketAddr) -> String {
    json!({
        "providers": [{"slug": "raw", "protocol": "openai", "base_url": format!("http://{addr}/v1")}],
        "models": [{"slug": "test/model", "endpoints": [{"provider": "raw", "upstream_model": "m",
                    "price": {"prompt": 1.0, "completion": 1.0}}]}],
    })
    .to_string()
}

/// Defect 10: an overlong SSE line after the first token keeps the
/// request's first-token latency in the routing record.
#[test]
fn an_overlong_sse_line_keeps_first_token_latency() {
    let first = r#"data: {"id":"x","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":"hi"},"finish_reason":null}]}"#;
    let mut parts = vec![format!("{first}\n\ndata: ").into_bytes()];
    parts.extend((0..17).map(|_| vec![b'a'; 1 << 20]));
    let (addr, t) = raw_server(parts);
    let eng = Engine::from_json(&raw_config(addr)).unwrap();
    let o = run(&eng, &chat("test/model", true));
    assert!(!o.ok());
    assert_eq!(o.attempts()[0].1, "malformed_response");
    assert!(
        o.routing()["first_token_ms"].as_f64().is_some(),
        "{}",
        o.terminal
    );
    assert_eq!(o.routing()["endpoint"], "raw/default");
    drop(eng);
    let _ = t.join();
}

/// Defect 10: imported health is typed: wrong types and negative latencies
/// are refused with an error naming the field.
#[test]
fn health_import_rejects_wrong_types_and_negative_latencies() {
    let a = upstream("a", behavior(json!({})));
    let eng = engine(&[&a], json!({}));
    let good = eng.export_health();
    assert_eq!(eng.import_health(&good), Ok(1));
    let mut v: Value = serde_json::from_str(&good).unwrap();
    v["endpoints"][0]["first_token_ms"] = json!(-5.0);
    let err = eng.import_health(&v.to_string()).unwrap_err();
    assert!(err.contains("first_token_ms"), "{err}");
    v["endpoints"][0]["first_token_ms"] = json!("fast");
    let err = eng.import_health(&v.to_string()).unwrap_err();
    assert!(err.contains("first_token_ms"), "{err}");
    v["endpoints"][0]["first_token_ms"] = json!(12.0);
    v["endpoints"][0]["recent_first_token_ms"] = json!([1.0, -3.0]);
    assert!(eng.import_health(&v.to_string()).is_err());
}
