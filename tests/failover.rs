//! Failover triggers, requests returned at once, Retry-After, timeouts, the
//! no-failover-after-first-chunk rule, the circuit breaker and cancellation,
//! against real HTTP servers on 127.0.0.1.

mod common;

use common::*;
use llmux::Protocol;
use llmux_fleet::Behavior;
use serde_json::{json, Value};
use std::time::Duration;

/// `a` (preferred by prior) misbehaves as told; `b` is healthy.
fn pair(a_behavior: Value) -> (Upstream, Upstream) {
    let mut a = upstream("a", behavior(a_behavior));
    a.expected_ms = Some(1.0);
    let mut b = upstream("b", Behavior::default());
    b.expected_ms = Some(100.0);
    (a, b)
}

fn fast_timeouts() -> Value {
    json!({"timeouts": {"first_token_ms": 400, "idle_ms": 300, "total_ms": 5000}})
}

/// The outcome of an HTTP error status (docs/errors.md).
fn status_outcome(status: u16) -> &'static str {
    match status {
        401 | 403 => "auth_rejected",
        404 => "not_found",
        429 => "rate_limited",
        400 | 413 | 422 => "bad_request",
        500..=599 => "server_error",
        _ => "http_error",
    }
}

#[test]
fn failover_statuses_move_to_the_next_endpoint() {
    for status in [401, 403, 404, 408, 409, 425, 429, 500, 502, 503, 504, 529] {
        for stream in [true, false] {
            let (a, b) = pair(json!({"status": status}));
            let e = engine(&[&a, &b], json!({}));
            let out = run(&e, &chat("test/model", stream));
            assert!(
                out.ok(),
                "status {status} stream {stream}: {:?}",
                out.terminal
            );
            assert_eq!(
                out.attempts(),
                vec![
                    ("a/default".into(), status_outcome(status).into()),
                    ("b/default".into(), "success".into())
                ],
                "status {status}"
            );
            assert_eq!(out.routing()["attempts"][0]["status"], status);
            assert_eq!((a.server.request_count(), b.server.request_count()), (1, 1));
        }
    }
}

#[test]
fn request_errors_are_returned_at_once() {
    for status in [400, 413, 422] {
        let (a, b) = pair(json!({"status": status}));
        let e = engine(&[&a, &b], json!({}));
        let out = run(&e, &chat("test/model", true));
        assert!(!out.ok());
        assert_eq!(out.terminal["status"], status);
        assert_eq!(out.error_type(), "invalid_request_error");
        assert_eq!(b.server.request_count(), 0, "no failover on {status}");
        // The upstream's message reaches the caller.
        let msg = out.terminal["error"]["error"]["message"].as_str().unwrap();
        assert!(msg.contains(&status.to_string()), "{msg}");
    }
}

/// A 400 from an endpoint the request was translated for moves
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

#[test]
fn failover_status_list_is_configurable() {
    let (a, b) = pair(json!({"status": 503}));
    let e = engine(&[&a, &b], json!({"failover": {"statuses": [500]}}));
    let out = run(&e, &chat("test/model", true));
    assert!(!out.ok());
    assert_eq!(b.server.request_count(), 0);
}

#[test]
fn connection_refused_fails_over() {
    let (a, b) = pair(json!({}));
    // b measurably slower than a's prior, so a stays first (threshold 3).
    b.server
        .set_behavior(behavior(json!({"first_token_delay_ms": 20})));
    let e = {
        // Point `a` at a port nobody listens on.
        let cfg = config(&[&a, &b], fast_timeouts());
        let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = dead.local_addr().unwrap().port();
        drop(dead);
        let cfg = cfg.replace(&a.server.base_url(), &format!("http://127.0.0.1:{port}"));
        llmux::Engine::from_json(&cfg).unwrap()
    };
    for stream in [true, false] {
        let out = run(&e, &chat("test/model", stream));
        assert!(out.ok());
        assert_eq!(out.routing()["attempts"][0]["outcome"], "connect_error");
    }
}

#[test]
fn reset_before_headers_fails_over() {
    let (a, b) = pair(json!({"fault": "reset_before_headers"}));
    let e = engine(&[&a, &b], fast_timeouts());
    let out = run(&e, &chat("test/model", true));
    assert!(out.ok());
    assert_eq!(out.attempts()[0].1, "connection_closed");
    assert_eq!(out.served(), Some("b/default"));
}

#[test]
fn first_token_timeout_fails_over_within_the_timeout() {
    for stream in [true, false] {
        let (a, b) = pair(json!({"first_token_delay_ms": 3000}));
        let e = engine(&[&a, &b], fast_timeouts());
        let out = run(&e, &chat("test/model", stream));
        assert!(out.ok(), "{:?}", out.terminal);
        assert_eq!(out.attempts()[0].1, "first_token_timeout");
        assert!(
            out.elapsed < Duration::from_millis(2000),
            "{:?}",
            out.elapsed
        );
    }
}

#[test]
fn headers_that_never_finish_time_out_and_fail_over() {
    let (a, b) = pair(json!({"fault": "headers_never_finish"}));
    let e = engine(&[&a, &b], fast_timeouts());
    let out = run(&e, &chat("test/model", true));
    assert!(out.ok());
    assert_eq!(out.attempts()[0].1, "first_token_timeout");
}

#[test]
fn per_request_and_per_provider_timeouts_apply() {
    // Provider-level: a's first-token timeout is 150 ms.
    let (mut a, b) = pair(json!({"first_token_delay_ms": 1000}));
    a.provider_extra = json!({"timeouts": {"first_token_ms": 150}});
    let e = engine(&[&a, &b], json!({}));
    let out = run(&e, &chat("test/model", true));
    assert!(out.ok());
    assert_eq!(out.attempts()[0].1, "first_token_timeout");
    assert!(out.elapsed < Duration::from_millis(900));
    // Request-level total timeout beats everything: one slow endpoint, 200 ms budget.
    let slow = upstream("s", behavior(json!({"first_token_delay_ms": 2000})));
    let e = engine(&[&slow], json!({}));
    let mut body = chat("test/model", true);
    body["provider"] = json!({"timeouts": {"total_ms": 200}});
    let out = run(&e, &body);
    assert!(!out.ok());
    assert_eq!(out.error_type(), "timeout");
    assert!(out.elapsed < Duration::from_millis(1500));
}

#[test]
fn failure_before_the_first_chunk_fails_over() {
    for fault in [
        json!({"drop_after": 0}),
        json!("error_body200"),
        json!({"malformed_after": 0}),
    ] {
        let (a, b) = pair(json!({"fault": fault, "chunks": 3}));
        let e = engine(&[&a, &b], fast_timeouts());
        let out = run(&e, &chat("test/model", true));
        assert!(out.ok(), "{fault}: {:?}", out.terminal);
        assert_eq!(out.served(), Some("b/default"), "{fault}");
        // Only b's content reached the host.
        assert_eq!(out.text(), "Hello from b.", "{fault}");
    }
}

#[test]
fn after_the_first_chunk_nothing_fails_over() {
    let cases = [
        (json!({"drop_after": 2}), "connection_closed"),
        (json!({"stall_after": 2}), "idle_timeout"),
        (json!({"malformed_after": 2}), "malformed_response"),
        (json!({"error_event_after": 2}), "provider_error"),
    ];
    for (fault, outcome) in cases {
        let (a, b) = pair(json!({"fault": fault, "chunks": 5}));
        let e = engine(&[&a, &b], fast_timeouts());
        let out = run(&e, &chat("test/model", true));
        assert!(!out.ok(), "{fault} must end in an error");
        assert_eq!(
            out.attempts(),
            vec![("a/default".into(), outcome.into())],
            "{fault}"
        );
        assert!(
            !out.text().is_empty(),
            "chunks before the break were delivered"
        );
        assert_eq!(b.server.request_count(), 0, "{fault}");
        assert!(out.elapsed < Duration::from_secs(3));
    }
}

#[test]
fn a_stream_without_its_finish_marker_is_an_error_never_done() {
    for fault in ["no_finish", "no_done"] {
        let a = upstream("a", behavior(json!({"fault": fault})));
        let e = engine(&[&a], fast_timeouts());
        let out = run(&e, &chat("test/model", true));
        assert!(!out.ok(), "{fault}");
        let outcome = &out.attempts()[0].1;
        assert!(outcome == "truncated_stream", "{fault}: {outcome}");
    }
}

#[test]
fn retry_after_skips_the_endpoint_until_then() {
    let (a, b) = pair(json!({"status": 429, "retry_after": "2"}));
    let e = engine(&[&a, &b], json!({}));
    assert_eq!(
        run(&e, &chat("test/model", true)).served(),
        Some("b/default")
    );
    a.server.set_behavior(Behavior::default());
    // a is rate limited: b serves without a being asked.
    let out = run(&e, &chat("test/model", true));
    assert_eq!(out.attempts(), vec![("b/default".into(), "success".into())]);
    assert_eq!(a.server.request_count(), 1);
    let s: Value = serde_json::from_str(&e.stats_json()).unwrap();
    assert!(s["endpoints"][0]["rate_limited_for_ms"].as_u64().unwrap() > 1000);
}

#[test]
fn circuit_opens_after_consecutive_failures_and_probes_later() {
    let (a, b) = pair(json!({"status": 500}));
    // b is measurably slower than a's prior, so a stays first while closed.
    b.server
        .set_behavior(behavior(json!({"first_token_delay_ms": 20})));
    let e = engine(
        &[&a, &b],
        json!({"health": {"failure_threshold": 2, "base_ejection_ms": 300, "explore_ratio": 0.0}}),
    );
    for _ in 0..2 {
        assert_eq!(
            run(&e, &chat("test/model", true)).served(),
            Some("b/default")
        );
    }
    assert_eq!(a.server.request_count(), 2);
    let s: Value = serde_json::from_str(&e.stats_json()).unwrap();
    assert_eq!(s["endpoints"][0]["circuit"], "open");
    // Open: a gets nothing.
    run(&e, &chat("test/model", true));
    assert_eq!(a.server.request_count(), 2);
    // After the ejection a recovered a is probed and closes again.
    a.server.set_behavior(Behavior::default());
    std::thread::sleep(Duration::from_millis(350));
    let out = run(&e, &chat("test/model", true));
    assert_eq!(out.served(), Some("a/default"));
    let s: Value = serde_json::from_str(&e.stats_json()).unwrap();
    assert_eq!(s["endpoints"][0]["circuit"], "closed");
}

#[test]
fn every_endpoint_unhealthy_is_still_tried() {
    let a = upstream("a", behavior(json!({"status": 500})));
    let e = engine(
        &[&a],
        json!({"health": {"failure_threshold": 1, "base_ejection_ms": 60000}}),
    );
    run(&e, &chat("test/model", true));
    a.server.set_behavior(Behavior::default());
    let out = run(&e, &chat("test/model", true));
    assert!(
        out.ok(),
        "an open circuit is tried when nothing else is left"
    );
}

#[test]
fn all_endpoints_failing_returns_the_last_error_with_every_attempt() {
    let a = upstream("a", behavior(json!({"status": 500})));
    let b = upstream("b", behavior(json!({"status": 503})));
    let e = engine(&[&a, &b], json!({}));
    let mut body = chat("test/model", true);
    body["provider"] = json!({"routing": {"type": "order", "providers": ["a", "b"]}});
    let out = run(&e, &body);
    assert!(!out.ok());
    assert_eq!(out.terminal["status"], 503);
    assert_eq!(out.attempts().len(), 2);
    assert!(out.terminal["error"]["error"]["message"]
        .as_str()
        .unwrap()
        .contains("503"));
}

#[test]
fn cancel_ends_with_exactly_one_cancelled_event() {
    let a = upstream("a", behavior(json!({"chunks": 50, "chunk_delay_ms": 50})));
    let e = engine(&[&a], json!({}));
    let id = e
        .submit(
            Protocol::OpenAi,
            chat("test/model", true).to_string().as_bytes(),
        )
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert!(e.cancel(id));
    assert!(!e.cancel(id), "second cancel: unknown");
    let out = drain(&e, &[id], Duration::from_secs(5))
        .remove(&id)
        .unwrap();
    assert!(!out.ok());
    assert_eq!(out.error_type(), "cancelled");
    assert_eq!(out.routing()["attempts"][0]["outcome"], "cancelled");
    assert!(!e.cancel(9999));
    assert_eq!(e.in_flight(), 0);
}

#[test]
fn many_concurrent_requests_each_get_one_terminal() {
    let a = upstream("a", behavior(json!({"chunks": 3, "chunk_delay_ms": 1})));
    let b = upstream("b", behavior(json!({"status": 500})));
    let e = engine(&[&a, &b], json!({}));
    let ids: Vec<u64> = (0..200)
        .map(|i| {
            e.submit(
                Protocol::OpenAi,
                chat("test/model", i % 2 == 0).to_string().as_bytes(),
            )
            .unwrap()
        })
        .collect();
    let outs = drain(&e, &ids, Duration::from_secs(30));
    assert_eq!(outs.len(), 200);
    assert!(outs.values().all(|o| o.ok()));
}

#[test]
fn freeing_the_engine_with_requests_in_flight_is_clean() {
    let a = upstream("a", behavior(json!({"first_token_delay_ms": 5000})));
    let e = engine(&[&a], json!({}));
    for _ in 0..10 {
        e.submit(
            Protocol::OpenAi,
            chat("test/model", true).to_string().as_bytes(),
        )
        .unwrap();
    }
    std::thread::sleep(Duration::from_millis(100));
    let t = std::time::Instant::now();
    drop(e);
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "free is prompt: {:?}",
        t.elapsed()
    );
}

/// The message, outcome, status and kind of a failed request.
fn failure(out: &common::Outcome) -> (String, String, u64, String) {
    assert!(!out.ok(), "{:?}", out.terminal);
    let t = &out.terminal;
    (
        t["error"]["error"]["message"]
            .as_str()
            .unwrap_or("")
            .to_owned(),
        t["outcome"].as_str().unwrap_or("").to_owned(),
        t["status"].as_u64().unwrap_or(0),
        t["error_kind"].as_str().unwrap_or("").to_owned(),
    )
}

/// Issue 19: a provider refusing llmux's key is a 502 naming that provider,
/// never a 401; the outcome is `auth_rejected` in the attempt, the terminal
/// event and the OpenAI `code`, for both envelope families.
#[test]
fn a_provider_rejecting_llmux_key_is_a_502_naming_it() {
    for status in [401, 403] {
        let a = upstream("a", behavior(json!({"status": status})));
        let e = engine(&[&a], json!({}));
        let out = run(&e, &chat("test/model", false));
        let (msg, outcome, code, kind) = failure(&out);
        assert_eq!(
            (code, kind.as_str(), outcome.as_str()),
            (502, "upstream", "auth_rejected")
        );
        assert!(
            msg.starts_with(&format!(
                "provider \"a\" (endpoint a/default) rejected llmux's API key for it (HTTP {status}): check providers[].api_key"
            )),
            "{msg}"
        );
        assert_eq!(out.terminal["error"]["error"]["code"], "auth_rejected");
        assert_eq!(
            out.attempts(),
            vec![("a/default".into(), "auth_rejected".into())]
        );
        let out = run_as(&e, Protocol::Anthropic, &messages("test/model", false));
        assert_eq!(out.terminal["status"], 502);
        assert_eq!(out.terminal["error"]["error"]["type"], "api_error");
        assert_eq!(out.terminal["outcome"], "auth_rejected");
    }
}

/// Issue 19: a dead endpoint and a cut stream, each in one sentence naming
/// the endpoint, never a raw HTTP client chain.
#[test]
fn connection_failures_are_one_readable_sentence() {
    let a = upstream("a", Behavior::default());
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = dead.local_addr().unwrap().port();
    drop(dead);
    let cfg = config(&[&a], fast_timeouts())
        .replace(&a.server.base_url(), &format!("http://127.0.0.1:{port}"));
    let e = llmux::Engine::from_json(&cfg).unwrap();
    let (msg, outcome, code, _) = failure(&run(&e, &chat("test/model", false)));
    assert_eq!(
        msg,
        format!("provider \"a\" (endpoint a/default) refused the connection at 127.0.0.1:{port}: is the server running, and is base_url right?")
    );
    assert_eq!((outcome.as_str(), code), ("connect_error", 502));

    let a = upstream("a", behavior(json!({"fault": {"drop_after": 2}})));
    let e = engine(&[&a], fast_timeouts());
    let out = run(&e, &chat("test/model", true));
    let (msg, outcome, code, _) = failure(&out);
    // The role chunk and two content chunks reached the host.
    assert_eq!(out.chunks.len(), 3);
    assert_eq!(
        msg,
        "provider \"a\" (endpoint a/default): the connection closed mid-stream after 3 chunks"
    );
    assert_eq!((outcome.as_str(), code), ("connection_closed", 502));
    // A stall and garbage say what happened, too.
    a.server
        .set_behavior(behavior(json!({"fault": {"stall_after": 2}})));
    let (msg, outcome, _, _) = failure(&run(&e, &chat("test/model", true)));
    assert_eq!(outcome, "idle_timeout");
    assert_eq!(msg, "provider \"a\" (endpoint a/default) went silent mid-stream after 3 chunks: no data for 300 ms (the idle timeout)");
    a.server
        .set_behavior(behavior(json!({"fault": {"malformed_after": 2}})));
    let (msg, outcome, _, _) = failure(&run(&e, &chat("test/model", true)));
    assert_eq!(outcome, "malformed_response");
    assert!(
        msg.starts_with("provider \"a\" (endpoint a/default) sent a stream event llmux cannot read as the openai protocol: "),
        "{msg}"
    );
}

/// A server answering `status` with an HTML page titled "Error response".
fn html_server(status: &'static str) -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        let page = "<!DOCTYPE HTML>\n<html><head><title>Error response</title></head>\
                    <body><h1>Error response</h1><p>Error code: 501</p></body></html>\n";
        for s in listener.incoming().take(4) {
            let Ok(mut s) = s else { continue };
            let mut buf = [0u8; 65536];
            let _ = s.read(&mut buf);
            let _ = write!(
                s,
                "HTTP/1.1 {status}\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{page}",
                page.len()
            );
        }
    });
    addr
}

/// Issue 19: a web server's HTML error page is summarised (its title, the
/// status, a hint), never passed on; so is a page served with a 200.
#[test]
fn an_html_error_page_is_summarised() {
    let addr = html_server("501 Unsupported method");
    let a = upstream("a", Behavior::default());
    let cfg = config(&[&a], json!({})).replace(&a.server.base_url(), &format!("http://{addr}"));
    let e = llmux::Engine::from_json(&cfg).unwrap();
    for stream in [false, true] {
        let (msg, outcome, code, _) = failure(&run(&e, &chat("test/model", stream)));
        assert_eq!(
            msg,
            "provider \"a\" (endpoint a/default) returned an HTML page titled \"Error response\" (HTTP 501), not an API response: is base_url right?"
        );
        assert_eq!((outcome.as_str(), code), ("server_error", 501));
    }
    let addr = html_server("200 OK");
    let cfg = config(&[&a], json!({})).replace(&a.server.base_url(), &format!("http://{addr}"));
    let e = llmux::Engine::from_json(&cfg).unwrap();
    for stream in [false, true] {
        let (msg, outcome, code, _) = failure(&run(&e, &chat("test/model", stream)));
        assert_eq!(
            msg,
            "provider \"a\" (endpoint a/default) returned an HTML page titled \"Error response\" (HTTP 200), not an API response: is base_url right?"
        );
        assert_eq!((outcome.as_str(), code), ("malformed_response", 502));
    }
}

/// Issue 19: a TLS failure and a DNS failure each say so, naming the
/// endpoint, without the HTTP client's error chain.
#[test]
fn tls_and_dns_failures_say_so() {
    // Speaks plain HTTP where TLS is expected.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for s in listener.incoming().take(2) {
            let Ok(mut s) = s else { continue };
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n");
        }
    });
    let a = upstream("a", Behavior::default());
    let cfg = config(&[&a], fast_timeouts()).replace(
        &format!("{}/v1", a.server.base_url()),
        &format!("https://127.0.0.1:{port}/v1"),
    );
    let e = llmux::Engine::from_json(&cfg).unwrap();
    let (msg, outcome, code, _) = failure(&run(&e, &chat("test/model", false)));
    assert_eq!((outcome.as_str(), code), ("connect_error", 502));
    let head = format!(
        "provider \"a\" (endpoint a/default) failed the TLS handshake at 127.0.0.1:{port}: "
    );
    assert!(msg.starts_with(&head), "{msg}");
    assert!(!msg.contains("client error"), "{msg}");

    let cfg = config(&[&a], fast_timeouts()).replace(
        &format!("{}/v1", a.server.base_url()),
        "http://llmux-test.invalid/v1",
    );
    let e = llmux::Engine::from_json(&cfg).unwrap();
    let (msg, outcome, _, _) = failure(&run(&e, &chat("test/model", false)));
    assert_eq!(outcome, "connect_error");
    assert_eq!(msg, "provider \"a\" (endpoint a/default) is unreachable: the host name \"llmux-test.invalid\" does not resolve (DNS lookup failed): is base_url right?");
}

/// The connect timeout covers the TLS handshake: a server that accepts
/// the TCP connection and never answers the ClientHello is given up at
/// `connect_ms`, not at the first-token timeout.
#[test]
fn a_silent_tls_handshake_ends_at_the_connect_timeout() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming().take(4) {
            held.push(s); // accepted, never answered
        }
        std::thread::sleep(Duration::from_secs(30));
    });
    let a = upstream("a", Behavior::default());
    let timeouts = json!({"timeouts": {"connect_ms": 300, "first_token_ms": 20000}});
    let cfg = config(&[&a], timeouts).replace(
        &format!("{}/v1", a.server.base_url()),
        &format!("https://127.0.0.1:{port}/v1"),
    );
    let e = llmux::Engine::from_json(&cfg).unwrap();
    let out = run(&e, &chat("test/model", false));
    let (msg, outcome, code, _) = failure(&out);
    assert_eq!((outcome.as_str(), code), ("connect_error", 502), "{msg}");
    assert_eq!(
        msg,
        format!("provider \"a\" (endpoint a/default) did not accept a connection at 127.0.0.1:{port} within the connect timeout of 300 ms")
    );
    assert!(out.elapsed < Duration::from_secs(3), "{:?}", out.elapsed);
}

/// Issue 19: timeouts say which one expired and after how long.
#[test]
fn timeouts_say_which_and_how_long() {
    let a = upstream("a", behavior(json!({"first_token_delay_ms": 3000})));
    let e = engine(&[&a], fast_timeouts());
    for stream in [true, false] {
        let (msg, outcome, code, kind) = failure(&run(&e, &chat("test/model", stream)));
        assert_eq!(
            (outcome.as_str(), code, kind.as_str()),
            ("first_token_timeout", 504, "timeout")
        );
        let what = if stream { "no token" } else { "no response" };
        assert_eq!(
            msg,
            format!("provider \"a\" (endpoint a/default) sent {what} within the first-token timeout of 400 ms"),
            "stream={stream}"
        );
    }
}
