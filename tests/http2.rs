//! HTTP/2 toward providers: a provider's `http` setting chooses the version;
//! `"http2"` speaks it with prior knowledge (h2c over `http://`), and many
//! requests share one connection.

mod common;

use common::*;
use llmux::Engine;
use llmux_fleet::Behavior;
use serde_json::json;
use std::time::Duration;

fn with_http(version: &str) -> (Upstream, Engine) {
    let mut a = upstream("a", behavior(json!({"chunk_delay_ms": 100})));
    a.provider_extra = json!({"http": version});
    let e = engine(&[&a], json!({}));
    (a, e)
}

/// Submits `n` streams at once and checks each ends in one `done` with the
/// whole text; returns the mock's most simultaneous connections.
fn concurrent_streams(a: &Upstream, e: &Engine, n: usize) -> usize {
    let ids: Vec<u64> = (0..n)
        .map(|_| {
            e.submit(
                llmux::Protocol::OpenAi,
                chat("test/model", true).to_string().as_bytes(),
            )
            .expect("submit")
        })
        .collect();
    // Look while every stream is open (chunks every 100 ms, so each lasts
    // about half a second): wait until the mock answers all of them.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while a.server.in_flight() < n as u64 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(a.server.in_flight(), n as u64, "every stream is open");
    let live = a.server.live_connections();
    let outcomes = drain(e, &ids, Duration::from_secs(20));
    for o in outcomes.values() {
        assert!(o.ok(), "{}", o.terminal);
        assert_eq!(o.text(), "Hello from a.");
    }
    live
}

#[test]
fn http2_multiplexes_streams_on_one_connection() {
    let (a, e) = with_http("http2");
    let live = concurrent_streams(&a, &e, 32);
    assert_eq!(live, 1, "32 streams over HTTP/2 share one connection");
    let seen = a.server.requests();
    assert_eq!(seen.len(), 32);
    assert!(seen.iter().all(|r| r.version == "HTTP/2.0"));
    // Non-streaming over the same connection.
    let out = run(&e, &chat("test/model", false));
    assert!(out.ok(), "{}", out.terminal);
    assert_eq!(
        out.terminal["routing"]["endpoint"].as_str(),
        Some("a/default")
    );
    assert_eq!(a.server.live_connections(), 1);
}

#[test]
fn plain_http_defaults_to_http1() {
    // Plain http:// with `auto` has no TLS handshake to offer HTTP/2 in.
    for version in [None, Some("auto"), Some("http1")] {
        let mut a = upstream("a", behavior(json!({"chunk_delay_ms": 100})));
        if let Some(v) = version {
            a.provider_extra = json!({"http": v});
        }
        let e = engine(&[&a], json!({}));
        let live = concurrent_streams(&a, &e, 4);
        assert_eq!(
            live, 4,
            "{version:?}: one HTTP/1.1 connection per open stream"
        );
        assert!(a.server.requests().iter().all(|r| r.version == "HTTP/1.1"));
    }
}

#[test]
fn http2_to_an_http1_only_server_fails_over() {
    // A server that speaks only HTTP/1.1 answers the HTTP/2 preface with
    // garbage for h2; the attempt fails as a transport error and the next
    // endpoint serves.
    let raw = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = raw.local_addr().unwrap().port();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for s in raw.incoming().flatten().take(4) {
            let mut s = s;
            let mut buf = [0u8; 256];
            let _ = s.read(&mut buf);
            let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n");
        }
    });
    let b = upstream("b", Behavior::default());
    let cfg = json!({
        "providers": [
            {"slug": "a", "protocol": "openai", "base_url": format!("http://127.0.0.1:{port}/v1"), "http": "http2"},
            {"slug": "b", "protocol": "openai", "base_url": format!("{}/v1", b.server.base_url())},
        ],
        "models": [{"slug": "test/model", "endpoints": [
            {"provider": "a", "upstream_model": "m", "expected_first_token_ms": 1},
            {"provider": "b", "upstream_model": "m", "expected_first_token_ms": 100},
        ]}],
        "health": {"explore_ratio": 0.0},
    });
    let e = Engine::from_json(&cfg.to_string()).unwrap();
    let out = run(&e, &chat("test/model", true));
    assert!(out.ok(), "{}", out.terminal);
    assert_eq!(out.served(), Some("b/default"));
    assert_eq!(out.attempts()[0].1, "connection_closed");
}

#[test]
fn an_unknown_http_version_is_a_config_error() {
    let a = upstream("a", Behavior::default());
    let mut cfg: serde_json::Value = serde_json::from_str(&config(&[&a], json!({}))).unwrap();
    cfg["providers"][0]["http"] = json!("h3");
    let Err(err) = Engine::from_json(&cfg.to_string()) else {
        panic!("an unknown http version must be refused");
    };
    let err = err.to_string();
    assert!(err.contains("providers[0].http"), "{err}");
    assert!(err.contains("http2"), "{err}");
}

/// An h2c server that answers its first `refuse` streams with
/// REFUSED_STREAM and the others with a chat completion; counts streams.
fn refusing_h2_server(refuse: usize) -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = std::sync::Arc::new(AtomicUsize::new(0));
    let count = seen.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            while let Ok((socket, _)) = listener.accept().await {
                let count = count.clone();
                tokio::spawn(async move {
                    let Ok(mut conn) = h2::server::handshake(socket).await else {
                        return;
                    };
                    while let Some(Ok((_req, mut respond))) = conn.accept().await {
                        if count.fetch_add(1, Ordering::SeqCst) < refuse {
                            respond.send_reset(h2::Reason::REFUSED_STREAM);
                            continue;
                        }
                        let body = json!({"id": "x", "object": "chat.completion", "created": 1, "model": "m",
                            "choices": [{"index": 0, "message": {"role": "assistant", "content": "served"},
                                         "finish_reason": "stop"}],
                            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}});
                        let head = http::Response::builder()
                            .header("content-type", "application/json")
                            .body(())
                            .unwrap();
                        let mut send = respond.send_response(head, false).unwrap();
                        let _ = send.send_data(body.to_string().into(), true);
                    }
                });
            }
        });
    });
    (port, seen)
}

/// A stream the server refused unprocessed (REFUSED_STREAM) is sent again
/// within the same attempt, at most twice, as reqwest did: no failover, no
/// mark against the endpoint. A third refusal is the attempt's failure.
#[test]
fn a_refused_http2_stream_is_sent_again() {
    use std::sync::atomic::Ordering;
    for (refuse, served) in [(1, true), (2, true), (3, false)] {
        let (port, seen) = refusing_h2_server(refuse);
        let cfg = json!({
            "providers": [{"slug": "h2", "protocol": "openai", "http": "http2",
                           "base_url": format!("http://127.0.0.1:{port}/v1")}],
            "models": [{"slug": "test/model", "endpoints": [{"provider": "h2", "upstream_model": "m"}]}],
            "retry": {"max_retries": 0},
        });
        let e = Engine::from_json(&cfg.to_string()).unwrap();
        let out = run(&e, &chat("test/model", false));
        let attempts = out.routing()["attempts"].as_array().unwrap().len();
        assert_eq!(attempts, 1, "refuse={refuse}: {}", out.terminal);
        assert_eq!(out.ok(), served, "refuse={refuse}: {}", out.terminal);
        assert_eq!(
            seen.load(Ordering::SeqCst),
            3.min(refuse + 1),
            "refuse={refuse}"
        );
        if served {
            let text = &out.terminal["response"]["choices"][0]["message"]["content"];
            assert_eq!(text, "served");
        } else {
            assert_eq!(
                out.terminal["error"]["error"]["message"],
                "provider \"h2\" (endpoint h2/default) refused the request unprocessed three \
                 times (HTTP/2: stream refused or connection shutting down)"
            );
        }
    }
}
