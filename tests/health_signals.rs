//! What health books from each attempt, as the engine's stats show it: a
//! request-level timeout counts against the endpoint, a non-streaming call
//! is timed as a complete response (never as first-token latency), a very
//! fast stream still gets a throughput figure, and a stream that turns
//! malformed keeps its first-token latency in the routing record. Against
//! real HTTP servers on 127.0.0.1 (the mock fleet, or a raw socket where
//! the exact bytes and their timing matter).

mod common;

use common::*;
use llmux::Engine;
use serde_json::json;
use std::io::{Read, Write};

/// A request-level total timeout that cuts an attempt off counts
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

/// A non-streaming call books its time to the complete body as
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

/// A stream whose tokens all arrive within a millisecond still
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

/// An overlong SSE line after the first token keeps the
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
