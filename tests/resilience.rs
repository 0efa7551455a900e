//! Fallback models, retries, soft failures, hedging, concurrency limits,
//! stickiness, active probes, health export/import, secrets, stress.

mod common;

use common::*;
use llmux::{Engine, EventKind, Protocol};
use llmux_fleet::{Behavior, MockServer};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Two models: `test/model` on `a`, `other/model` on `b`, `third/model` on `c`.
fn two_models(a: &MockServer, b: &MockServer, c: &MockServer, extra: Value) -> Engine {
    let mut cfg = json!({
        "providers": [
            {"slug": "a", "protocol": "openai", "base_url": format!("{}/v1", a.base_url())},
            {"slug": "b", "protocol": "openai", "base_url": format!("{}/v1", b.base_url())},
            {"slug": "c", "protocol": "anthropic", "base_url": c.base_url()},
        ],
        "models": [
            {"slug": "test/model", "context_window": 100, "endpoints": [{"provider": "a", "upstream_model": "up-a"}]},
            {"slug": "other/model", "endpoints": [{"provider": "b", "upstream_model": "up-b"}]},
            {"slug": "third/model", "endpoints": [{"provider": "c", "upstream_model": "up-c"}]},
        ],
        "retry": {"max_retries": 0},
    });
    if let (Value::Object(c), Value::Object(x)) = (&mut cfg, extra) {
        c.extend(x);
    }
    Engine::from_json(&cfg.to_string()).unwrap()
}

fn servers() -> (MockServer, MockServer, MockServer) {
    (
        MockServer::start("a", Behavior::default()).unwrap(),
        MockServer::start("b", Behavior::default()).unwrap(),
        MockServer::start("c", Behavior::default()).unwrap(),
    )
}

#[test]
fn fallback_models_list_and_provider_fallback() {
    let (a, b, c) = servers();
    a.set_behavior(behavior(json!({"status": 503})));
    let e = two_models(&a, &b, &c, json!({}));
    let mut body = chat("test/model", true);
    body["models"] = json!(["other/model"]);
    let out = run(&e, &body);
    assert!(out.ok());
    assert_eq!(out.routing()["model"], "other/model");
    assert_eq!(out.routing()["requested_model"], "test/model");
    assert_eq!(
        out.attempts(),
        vec![
            ("a/default".into(), "server_error".into()),
            ("b/default".into(), "success".into())
        ]
    );
    assert!(
        b.requests()[0].body.get("models").is_none(),
        "llmux fields are stripped"
    );
    assert_eq!(b.requests()[0].body["model"], "up-b");

    // ZenMux style, to an Anthropic-protocol model, with the first fallback failing too.
    b.set_behavior(behavior(json!({"status": 500})));
    let mut body = chat("test/model", false);
    body["provider"] = json!({"fallback": ["other/model", "third/model"]});
    let out = run(&e, &body);
    assert!(out.ok(), "{:?}", out.terminal);
    assert_eq!(out.routing()["model"], "third/model");
    assert_eq!(out.attempts().len(), 3);
    assert_eq!(
        out.terminal["response"]["choices"][0]["message"]["content"],
        "Hello from c."
    );
    // Unknown fallback models are refused up front.
    let mut body = chat("test/model", true);
    body["models"] = json!(["nope/x"]);
    assert!(e
        .submit(Protocol::OpenAi, body.to_string().as_bytes())
        .is_err());
}

#[test]
fn endpoints_with_a_too_small_context_window_are_skipped() {
    let (a, b, c) = servers();
    let e = two_models(&a, &b, &c, json!({}));
    // test/model has a 100-token window; ~1000 bytes of prompt is ~250 tokens.
    let mut body = chat("test/model", true);
    body["messages"] = json!([{"role": "user", "content": "x".repeat(1000)}]);
    body["models"] = json!(["other/model"]);
    let out = run(&e, &body);
    assert_eq!(out.served(), Some("b/default"));
    assert_eq!(out.routing()["requested_model"], "test/model");
    assert_eq!(out.routing()["model"], "other/model");
    assert_eq!(a.request_count(), 0);
    // Nowhere to go: refused with the estimate in the message.
    body.as_object_mut().unwrap().remove("models");
    let err = e
        .submit(Protocol::OpenAi, body.to_string().as_bytes())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("context window") && err.contains("tokens"),
        "{err}"
    );
    // A short prompt fits.
    assert_eq!(
        run(&e, &chat("test/model", true)).served(),
        Some("a/default")
    );
}

#[test]
fn retries_with_backoff_only_after_every_candidate_failed() {
    let a = upstream("a", behavior(json!({"status": 503})));
    let e = engine(
        &[&a],
        json!({"retry": {"max_retries": 2, "base_backoff_ms": 100, "max_backoff_ms": 1000}}),
    );
    let t = Instant::now();
    let out = run(&e, &chat("test/model", true));
    assert!(!out.ok());
    assert_eq!(a.server.request_count(), 3, "1 try + 2 retries");
    // Backoff 50..100 ms then 100..200 ms.
    assert!(
        t.elapsed() >= Duration::from_millis(150),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(out.attempts().len(), 3);

    // Never retried: 400.
    let a = upstream("a", behavior(json!({"status": 400})));
    let e = engine(&[&a], json!({"retry": {"max_retries": 3}}));
    run(&e, &chat("test/model", true));
    assert_eq!(a.server.request_count(), 1);

    // Retry-After is honoured (1 s), and one longer than the cap ends the request.
    let a = upstream("a", behavior(json!({"status": 429, "retry_after": "1"})));
    let e = engine(
        &[&a],
        json!({"retry": {"max_retries": 1, "base_backoff_ms": 10}}),
    );
    let t = Instant::now();
    run(&e, &chat("test/model", true));
    assert_eq!(a.server.request_count(), 2);
    assert!(
        t.elapsed() >= Duration::from_millis(1000),
        "{:?}",
        t.elapsed()
    );
    let a = upstream("a", behavior(json!({"status": 429, "retry_after": "30"})));
    let e = engine(
        &[&a],
        json!({"retry": {"max_retries": 3, "max_retry_after_ms": 2000}}),
    );
    let t = Instant::now();
    run(&e, &chat("test/model", true));
    assert_eq!(a.server.request_count(), 1);
    assert!(t.elapsed() < Duration::from_secs(2));
}

#[test]
fn soft_failures_before_the_first_chunk_fail_over() {
    let cases = [
        (json!({"fault": "error_body200"}), true),
        (json!({"fault": "error_body200"}), false),
        (json!({"fault": "empty_completion"}), true),
        (json!({"fault": "empty_completion"}), false),
        (json!({"stop_reason": "error", "text": ""}), true),
        (json!({"stop_reason": "error"}), false),
    ];
    for (b_json, stream) in cases {
        let mut a = upstream("a", behavior(b_json.clone()));
        a.expected_ms = Some(1.0);
        let mut b = upstream("b", Behavior::default());
        b.expected_ms = Some(100.0);
        let e = engine(&[&a, &b], json!({}));
        let out = run(&e, &chat("test/model", stream));
        assert!(out.ok(), "{b_json} stream={stream}: {:?}", out.terminal);
        assert_eq!(out.served(), Some("b/default"), "{b_json} stream={stream}");
        let outcome = &out.attempts()[0].1;
        assert_eq!(outcome, "provider_error", "{b_json} stream={stream}");
    }
}

#[test]
fn hedging_starts_the_next_candidate_and_cancels_the_loser() {
    let mut a = upstream("a", behavior(json!({"first_token_delay_ms": 800})));
    a.expected_ms = Some(1.0);
    let mut b = upstream("b", behavior(json!({"first_token_delay_ms": 10})));
    b.expected_ms = Some(100.0);
    let e = engine(&[&a, &b], json!({}));
    for stream in [true, false] {
        let mut body = chat("test/model", stream);
        body["provider"] = json!({"hedge": {"delay_ms": 50}});
        let out = run(&e, &body);
        assert!(out.ok());
        assert_eq!(out.served(), Some("b/default"));
        let att = out.attempts();
        assert!(
            att.contains(&("a/default".into(), "hedge_lost".into())),
            "{att:?}"
        );
        assert!(
            att.contains(&("b/default".into(), "success".into())),
            "{att:?}"
        );
        assert!(
            out.elapsed < Duration::from_millis(600),
            "{:?}",
            out.elapsed
        );
        assert_eq!(out.text(), if stream { "Hello from b." } else { "" });
    }
    // Without hedging, a serves (slowly).
    let out = run(&e, &chat("test/model", true));
    assert_eq!(out.served(), Some("a/default"));
    assert_eq!(out.attempts().len(), 1);
    // Engine-wide hedging with a fixed delay.
    let e = engine(
        &[&a, &b],
        json!({"hedging": {"enabled": true, "delay_ms": 50}}),
    );
    assert_eq!(
        run(&e, &chat("test/model", true)).served(),
        Some("b/default")
    );
    // A hedge that is not needed: a answers before the delay.
    a.server.set_behavior(Behavior::default());
    let out = run(&e, &chat("test/model", true));
    assert_eq!(out.attempts(), vec![("a/default".into(), "success".into())]);
}

#[test]
fn a_lost_hedge_releases_exactly_its_own_in_flight_slot() {
    let mut a = upstream("a", behavior(json!({"first_token_delay_ms": 800})));
    a.expected_ms = Some(1.0);
    let mut b = upstream("b", Behavior::default());
    b.expected_ms = Some(100.0);
    let e = engine(&[&a, &b], json!({}));
    // A long stream held open on a.
    let mut long = chat("test/model:a", true);
    long["mock"] = json!({"first_token_delay_ms": 0, "chunks": 20, "chunk_delay_ms": 100});
    let long_id = e
        .submit(Protocol::OpenAi, long.to_string().as_bytes())
        .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let mut hedged = chat("test/model", true);
    hedged["provider"] = json!({"hedge": {"delay_ms": 50}});
    let out = run_with_other(&e, &hedged, long_id);
    assert_eq!(out.served(), Some("b/default"));
    let s: Value = serde_json::from_str(&e.stats_json()).unwrap();
    assert_eq!(
        s["endpoints"][0]["in_flight"], 1,
        "the long stream is still on a: {s}"
    );
    assert_eq!(s["endpoints"][1]["in_flight"], 0);
    e.cancel(long_id);
}

/// Runs `body`, ignoring the events of another request in flight.
fn run_with_other(e: &Engine, body: &Value, other: u64) -> Outcome {
    let id = e
        .submit(Protocol::OpenAi, body.to_string().as_bytes())
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut chunks = Vec::new();
    loop {
        assert!(Instant::now() < deadline);
        for ev in e.poll_vec(64, Some(Duration::from_millis(50))) {
            if ev.request_id == other {
                continue;
            }
            assert_eq!(ev.request_id, id);
            let v: Value = serde_json::from_str(&ev.data).unwrap();
            if ev.kind == EventKind::Chunk {
                chunks.push(v);
            } else {
                return Outcome {
                    chunks,
                    terminal_kind: ev.kind,
                    terminal: v,
                    elapsed: Duration::ZERO,
                };
            }
        }
    }
}

#[test]
fn redirects_are_never_followed() {
    let b = upstream("b", Behavior::default());
    let a = upstream(
        "a",
        behavior(
            json!({"status": 307, "extra_headers": {"location": format!("{}/v1/chat/completions", b.server.base_url())}}),
        ),
    );
    let mut a = a;
    a.provider_extra =
        json!({"api_key": "sk-redirect-test", "headers": {"api-key": "custom-secret"}});
    let e = engine(&[&a], json!({}));
    let out = run(&e, &chat("test/model", false));
    assert!(!out.ok());
    assert_eq!(out.terminal["status"], 307);
    assert_eq!(
        b.server.request_count(),
        0,
        "the key and prompt went nowhere else"
    );
    // Debug output of the config and the catalog shows no secret either.
    let cfg = config(&[&a], json!({}));
    let parsed = llmux::config::Config::parse(&cfg).unwrap();
    let shown = format!("{parsed:?} {:?}", e.catalog());
    assert!(
        !shown.contains("sk-redirect-test") && !shown.contains("custom-secret"),
        "{shown}"
    );
}

#[test]
fn concurrency_limit_spreads_to_the_next_endpoint() {
    let mut a = upstream("a", behavior(json!({"first_token_delay_ms": 300})));
    a.expected_ms = Some(1.0);
    let mut b = upstream("b", Behavior::default());
    b.expected_ms = Some(1000.0);
    let cfg = config(&[&a, &b], json!({})).replace(
        "\"provider\":\"a\",",
        "\"provider\":\"a\",\"max_concurrency\":1,",
    );
    assert!(cfg.contains("max_concurrency"));
    let e = Engine::from_json(&cfg).unwrap();
    let body = chat("test/model", true).to_string();
    let ids: Vec<u64> = (0..3)
        .map(|_| e.submit(Protocol::OpenAi, body.as_bytes()).unwrap())
        .collect();
    let outs = drain(&e, &ids, Duration::from_secs(10));
    let on_a = outs
        .values()
        .filter(|o| o.served() == Some("a/default"))
        .count();
    assert_eq!(on_a, 1, "a takes one at a time");
    assert_eq!(
        outs.values()
            .filter(|o| o.served() == Some("b/default"))
            .count(),
        2
    );
    let s: Value = serde_json::from_str(&e.stats_json()).unwrap();
    assert_eq!(s["endpoints"][0]["in_flight"], 0);
}

#[test]
fn sticky_key_keeps_a_conversation_on_one_endpoint_while_healthy() {
    let mut a = upstream("a", Behavior::default());
    a.expected_ms = Some(1.0);
    // b is measurably slower than a's prior: latency alone always picks a.
    let slow = || behavior(json!({"first_token_delay_ms": 20}));
    let mut b = upstream("b", slow());
    b.expected_ms = Some(2.0);
    let e = engine(&[&a, &b], json!({"sticky": {"from_user": true}}));
    // Pin the first turn to b, keyed by `user`.
    let mut first = chat("test/model:b", true);
    first["user"] = json!("alice");
    assert_eq!(run(&e, &first).served(), Some("b/default"));
    // Later turns, unpinned: latency would pick a, the key keeps b.
    let mut turn = chat("test/model", true);
    turn["user"] = json!("alice");
    assert_eq!(run(&e, &turn).served(), Some("b/default"));
    assert_eq!(
        run(&e, &chat("test/model", true)).served(),
        Some("a/default"),
        "no key: fastest"
    );
    // An explicit key works the same way.
    let mut explicit = chat("test/model:b", true);
    explicit["provider"] = json!({"sticky_key": "conv-1"});
    assert_eq!(run(&e, &explicit).served(), Some("b/default"));
    explicit["model"] = json!("test/model");
    assert_eq!(run(&e, &explicit).served(), Some("b/default"));
    // b fails: the conversation moves, and stays moved.
    b.server.set_behavior(behavior(json!({"status": 500})));
    assert_eq!(run(&e, &turn).served(), Some("a/default"));
    b.server.set_behavior(slow());
    assert_eq!(run(&e, &turn).served(), Some("a/default"));
}

#[test]
fn active_probes_close_a_circuit_without_real_traffic() {
    let mut a = upstream("a", behavior(json!({"status": 500})));
    a.expected_ms = Some(1.0);
    let e = engine(
        &[&a],
        json!({"health": {"failure_threshold": 1, "base_ejection_ms": 100, "active_probe_interval_ms": 50}}),
    );
    run(&e, &chat("test/model", true));
    a.server.set_behavior(Behavior::default());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let s: Value = serde_json::from_str(&e.stats_json()).unwrap();
        if s["endpoints"][0]["circuit"] == "closed" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "probe never closed the circuit: {s}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let probe = &a.server.requests()[1];
    assert_eq!(probe.body["max_tokens"], 1);
    assert_eq!(probe.body["model"], "up-a");
}

#[test]
fn health_export_import_starts_warm() {
    let mut a = upstream("a", behavior(json!({"first_token_delay_ms": 30})));
    a.expected_ms = Some(1.0);
    let mut b = upstream("b", behavior(json!({"status": 500})));
    b.expected_ms = Some(0.5);
    let cfg = json!({"health": {"failure_threshold": 1, "base_ejection_ms": 60000}});
    let e1 = engine(&[&a, &b], cfg.clone());
    assert_eq!(
        run(&e1, &chat("test/model", true)).served(),
        Some("a/default")
    );
    let exported = e1.export_health();
    drop(e1);
    let e2 = engine(&[&a, &b], cfg);
    assert_eq!(e2.import_health(&exported), Ok(2));
    let s: Value = serde_json::from_str(&e2.stats_json()).unwrap();
    assert!(s["endpoints"][0]["first_token_ms"].as_f64().unwrap() >= 30.0);
    assert_eq!(s["endpoints"][1]["circuit"], "open");
    // b's circuit carried over: a serves without b being asked.
    let before = b.server.request_count();
    assert_eq!(run(&e2, &chat("test/model", true)).attempts().len(), 1);
    assert_eq!(b.server.request_count(), before);
    assert!(e2.import_health("{nope").is_err());
    assert_eq!(
        e2.import_health(r#"{"endpoints":[{"model":"x/y","endpoint":"z/w"}]}"#),
        Ok(0)
    );
}

/// Issue 22: the recent throughputs behind `min_throughput` cutoffs are
/// exported and imported with the rest, and an export without them (an
/// older llmux) still imports.
#[test]
fn health_export_carries_recent_throughputs_for_cutoffs() {
    let mut a = upstream("a", behavior(json!({"chunks": 4})));
    a.expected_ms = Some(1.0);
    let e1 = engine(&[&a], json!({}));
    for _ in 0..10 {
        assert!(run(&e1, &chat("test/model", true)).ok());
    }
    let exported = e1.export_health();
    drop(e1);
    let v: Value = serde_json::from_str(&exported).unwrap();
    let tps = v["endpoints"][0]["recent_throughput_tps"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(tps.len() >= 8, "{v}");
    assert!(tps.iter().all(|x| x.as_f64().unwrap() > 0.0), "{v}");
    let mut picky = chat("test/model", true);
    picky["provider"] = json!({"min_throughput": {"p50": 1e12}});
    // Unmeasured, a hard throughput cutoff keeps the endpoint...
    let fresh = engine(&[&a], json!({}));
    assert_eq!(run(&fresh, &picky).served(), Some("a/default"));
    // ...imported, it is judged on the measured values and removed.
    let e2 = engine(&[&a], json!({}));
    assert_eq!(e2.import_health(&exported), Ok(1));
    let out = run(&e2, &picky);
    assert!(!out.ok());
    let msg = out.terminal.to_string();
    assert!(msg.contains("min_throughput.p50"), "{msg}");
    // An export without the list (older llmux) imports.
    let mut old = v.clone();
    old["endpoints"][0]
        .as_object_mut()
        .unwrap()
        .remove("recent_throughput_tps");
    let e3 = engine(&[&a], json!({}));
    assert_eq!(e3.import_health(&old.to_string()), Ok(1));
    assert_eq!(run(&e3, &picky).served(), Some("a/default"));
}

/// Imported health is typed: wrong types and negative latencies
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

#[test]
fn secrets_never_leak_and_each_key_goes_only_to_its_provider() {
    const KEY_A: &str = "sk-SECRET-AAAA-1234567890";
    const KEY_B: &str = "sk-SECRET-BBBB-0987654321";
    std::env::set_var("LLMUX_TEST_KEY_B", KEY_B);
    let mut a = upstream("a", behavior(json!({"status": 401})));
    a.expected_ms = Some(1.0);
    a.provider_extra = json!({"api_key": KEY_A});
    let mut b = anthropic_upstream("b", Behavior::default());
    b.expected_ms = Some(2.0);
    b.provider_extra = json!({"api_key_env": "LLMUX_TEST_KEY_B"});
    let e = engine(&[&a, &b], json!({"health": {"failure_threshold": 1}}));
    let mut seen = String::new();
    for stream in [true, false] {
        let out = run(&e, &chat("test/model", stream));
        seen.push_str(&out.terminal.to_string());
        seen.push_str(&serde_json::to_string(&out.chunks).unwrap());
    }
    // A connection error and a timeout too.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let cfg =
        config(&[&a], json!({})).replace(&a.server.base_url(), &format!("http://127.0.0.1:{dead}"));
    let e2 = Engine::from_json(&cfg).unwrap();
    seen.push_str(&run(&e2, &chat("test/model", true)).terminal.to_string());
    seen.push_str(&e.stats_json());
    seen.push_str(&e.export_health());
    seen.push_str(&format!("{:?}", e.catalog()));
    // Config errors do not echo keys either.
    let bad = config(&[&a], json!({"timeouts": {"total_ms": 0}}));
    seen.push_str(&Engine::from_json(&bad).err().unwrap().to_string());
    for key in [KEY_A, KEY_B] {
        assert!(!seen.contains(key), "a key leaked");
        assert!(!seen.contains(&key[3..]), "part of a key leaked");
    }
    for r in a.server.requests() {
        assert_eq!(
            r.header("authorization"),
            Some(format!("Bearer {KEY_A}").as_str())
        );
        assert!(r.header("x-api-key").is_none());
    }
    for r in b.server.requests() {
        assert_eq!(r.header("x-api-key"), Some(KEY_B));
        assert!(r.header("authorization").is_none());
    }
    assert!(b.server.request_count() >= 2);
}

#[test]
fn stress_many_threads_submit_poll_cancel_and_free() {
    let a = upstream("a", behavior(json!({"chunks": 4, "chunk_delay_ms": 2})));
    let b = upstream("b", behavior(json!({"status": 503})));
    for round in 0..3 {
        let e = Arc::new(engine(&[&a, &b], json!({})));
        let ids = Arc::new(Mutex::new(Vec::new()));
        let terminals: Arc<Mutex<HashMap<u64, usize>>> = Arc::default();
        let stop = Arc::new(AtomicUsize::new(0));
        let mut threads = Vec::new();
        for t in 0..4 {
            let (e, ids) = (e.clone(), ids.clone());
            threads.push(std::thread::spawn(move || {
                for i in 0..50 {
                    let body = chat("test/model", (i + t) % 2 == 0).to_string();
                    let id = e.submit(Protocol::OpenAi, body.as_bytes()).unwrap();
                    ids.lock().unwrap().push(id);
                    if i % 5 == 0 {
                        e.cancel(id);
                    }
                }
            }));
        }
        let mut pollers = Vec::new();
        for _ in 0..3 {
            let (e, terminals, stop) = (e.clone(), terminals.clone(), stop.clone());
            pollers.push(std::thread::spawn(move || {
                while stop.load(Ordering::Acquire) == 0 {
                    for ev in e.poll_vec(16, Some(Duration::from_millis(5))) {
                        if ev.kind != EventKind::Chunk {
                            *terminals.lock().unwrap().entry(ev.request_id).or_default() += 1;
                        }
                    }
                }
            }));
        }
        for t in threads {
            t.join().unwrap();
        }
        let expected = ids.lock().unwrap().len();
        let deadline = Instant::now() + Duration::from_secs(30);
        while terminals.lock().unwrap().len() < expected && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        stop.store(1, Ordering::Release);
        for p in pollers {
            p.join().unwrap();
        }
        let t = terminals.lock().unwrap();
        assert_eq!(
            t.len(),
            expected,
            "round {round}: every request got a terminal"
        );
        assert!(t.values().all(|&n| n == 1), "round {round}: never two");
        // Free with nothing in flight on the last rounds, with some in flight on the first.
        let e = Arc::try_unwrap(e).ok().expect("sole owner");
        if round == 0 {
            for _ in 0..20 {
                e.submit(
                    Protocol::OpenAi,
                    chat("test/model", true).to_string().as_bytes(),
                )
                .unwrap();
            }
        }
        drop(e);
    }
}
