//! Issue 24: `Engine::reload` swaps the catalog under live traffic and
//! loses nothing (streams, learned latency, stickiness); an invalid catalog
//! changes nothing.

mod common;

use common::*;
use llmux::{Protocol, ReloadEndpoint};
use llmux_fleet::Behavior;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// Slow streams: 10 chunks 150 ms apart, so they are in flight for ~1.5 s.
fn slow_stream() -> Behavior {
    behavior(json!({"chunks": 10, "chunk_delay_ms": 150}))
}

fn ep(model: &str, endpoint: &str) -> ReloadEndpoint {
    ReloadEndpoint {
        model: model.into(),
        endpoint: endpoint.into(),
    }
}

fn wait_for(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn two_hundred_streams_survive_a_reload_that_adds_removes_and_reprices() {
    let a = upstream("a", slow_stream());
    let b = upstream("b", slow_stream());
    let mut c = upstream("c", Behavior::default());
    let e = engine(&[&a, &b], json!({}));
    // Learn a's latency first.
    for _ in 0..3 {
        assert!(run(&e, &chat("test/model:a", true)).ok());
    }
    a.server.clear_requests();
    // 200 streams: half pinned to a (kept), half to b (removed).
    let ids: Vec<u64> = (0..200)
        .map(|i| {
            let model = if i % 2 == 0 {
                "test/model:a"
            } else {
                "test/model:b"
            };
            e.submit(Protocol::OpenAi, chat(model, true).to_string().as_bytes())
                .expect("submit")
        })
        .collect();
    wait_for("200 streams to start", Duration::from_secs(60), || {
        a.server.request_count() == 100 && b.server.request_count() == 100
    });
    // Wait for the first tokens, so the books are still during the reload.
    std::thread::sleep(Duration::from_millis(60));
    let before = endpoint_stats(&e, "a/default");
    // The new catalog: a repriced, b gone, c added.
    c.price = (1.0, 1.0);
    let mut next: Value = serde_json::from_str(&config(&[&a, &c], json!({}))).unwrap();
    next["models"][0]["endpoints"][0]["price"] = json!({"prompt": 3.0, "completion": 7.0});
    let report = e.reload_json(&next.to_string()).expect("valid reload");
    let after = endpoint_stats(&e, "a/default");
    assert_eq!(report.generation, 1);
    assert_eq!(report.kept, vec![ep("test/model", "a/default")]);
    assert_eq!(report.added, vec![ep("test/model", "c/default")]);
    assert_eq!(report.removed, vec![ep("test/model", "b/default")]);
    assert!(report.draining_requests >= 200, "{report:?}");
    // The surviving endpoint's books are the same ones.
    for k in [
        "first_token_ms",
        "requests",
        "successes",
        "in_flight",
        "circuit",
    ] {
        assert_eq!(before[k], after[k], "{k} changed by the reload");
    }
    assert_eq!(after["price"]["prompt"], 3.0);
    let s = stats(&e);
    assert_eq!(
        (s["reloads"].clone(), s["generation"].clone()),
        (json!(1), json!(1))
    );
    // New requests see the new catalog at once: b is unknown, c serves.
    let refused = e.submit(
        Protocol::OpenAi,
        chat("test/model:b", true).to_string().as_bytes(),
    );
    assert!(refused.is_err(), "b is gone from the catalog");
    let on_c = e
        .submit(
            Protocol::OpenAi,
            chat("test/model:c", true).to_string().as_bytes(),
        )
        .expect("c is in the new catalog");
    // Every one of the 200 ends exactly once (drain checks), complete.
    let mut all = ids.clone();
    all.push(on_c);
    let done = drain(&e, &all, Duration::from_secs(60));
    assert_eq!(done.len(), 201);
    assert_eq!(done[&on_c].served(), Some("c/default"));
    for (i, id) in ids.iter().enumerate() {
        let o = &done[id];
        assert!(o.ok(), "stream {i} failed: {}", o.terminal);
        let (want, text) = if i % 2 == 0 {
            ("a/default", "Hello from a.")
        } else {
            ("b/default", "Hello from b.")
        };
        assert_eq!(o.served(), Some(want));
        assert_eq!(o.text(), text, "stream {i} complete, not doubled");
        assert_eq!(o.attempts().len(), 1, "no request doubled: {}", o.terminal);
    }
    // The removed provider drained: its 100 finished, none came after.
    assert_eq!(b.server.request_count(), 100);
    assert_eq!(endpoint_stats(&e, "a/default")["in_flight"], 0);
    // The next routing record on a is priced with the new prices.
    let next = run(&e, &chat("test/model:a", true));
    let usage = &next.routing()["usage"];
    let (p, q) = (
        usage["prompt_tokens"].as_f64().unwrap(),
        usage["completion_tokens"].as_f64().unwrap(),
    );
    let cost = next.routing()["cost_usd"].as_f64().unwrap();
    assert!(
        (cost - (p * 3.0 + q * 7.0) / 1e6).abs() < 1e-12,
        "{cost} {usage}"
    );
}

#[test]
fn an_invalid_reload_changes_nothing_and_names_every_error() {
    let a = upstream("a", Behavior::default());
    let e = engine(&[&a], json!({}));
    assert!(run(&e, &chat("test/model", true)).ok());
    let before = stats(&e);
    let bad = json!({
        "providers": [{"slug": "a", "protocol": "openai", "base_url": "not a url"}],
        "models": [{"slug": "test/model", "endpoints": [
            {"provider": "a", "upstream_model": "x"},
            {"provider": "nobody", "upstream_model": "y"}
        ]}]
    });
    let errs = e.reload_json(&bad.to_string()).expect_err("refused").0;
    assert!(errs.len() >= 2, "{errs:?}");
    let paths: Vec<&str> = errs.iter().map(|x| x.path.as_str()).collect();
    assert!(paths.iter().any(|p| p.contains("base_url")), "{paths:?}");
    assert!(
        paths.iter().any(|p| p.contains("endpoints[1]")),
        "{paths:?}"
    );
    assert!(e.reload_json("{not json").is_err());
    let after = stats(&e);
    assert_eq!(before["endpoints"], after["endpoints"]);
    assert_eq!(
        (after["reloads"].clone(), after["generation"].clone()),
        (json!(0), json!(0))
    );
    assert_eq!(
        run(&e, &chat("test/model", true)).served(),
        Some("a/default")
    );
}

#[test]
fn stickiness_and_open_circuits_survive_a_reload() {
    let mut a = upstream("a", Behavior::default());
    a.expected_ms = Some(1.0);
    let mut b = upstream("b", behavior(json!({"first_token_delay_ms": 20})));
    b.expected_ms = Some(2.0);
    let mut d = upstream("d", behavior(json!({"status": 500})));
    d.expected_ms = Some(0.5);
    let extra = json!({"sticky": {"from_user": true}, "health": {"explore_ratio": 0.0, "failure_threshold": 1, "base_ejection_ms": 60000}});
    let e = engine(&[&a, &b, &d], extra.clone());
    // d fails once: its circuit opens.
    assert!(!run(&e, &chat("test/model:d", true)).ok());
    assert_eq!(endpoint_stats(&e, "d/default")["circuit"], "open");
    let mut first = chat("test/model:b", true);
    first["user"] = json!("alice");
    assert_eq!(run(&e, &first).served(), Some("b/default"));
    // Reload with the endpoints in another order (indexes change).
    e.reload_json(&config(&[&d, &b, &a], extra))
        .expect("reload");
    assert_eq!(endpoint_stats(&e, "d/default")["circuit"], "open");
    let mut turn = chat("test/model", true);
    turn["user"] = json!("alice");
    assert_eq!(run(&e, &turn).served(), Some("b/default"), "sticky kept");
    let plan: Value = e
        .explain(Protocol::OpenAi, turn.to_string().as_bytes())
        .unwrap();
    let sticky: Vec<&Value> = plan["models"][0]["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["sticky"] == true)
        .collect();
    assert_eq!(sticky.len(), 1);
    assert_eq!(sticky[0]["endpoint"], "b/default");
}

#[test]
fn user_budget_ledgers_survive_a_reload() {
    let a = upstream("a", Behavior::default());
    let b = upstream("b", Behavior::default());
    let extra = json!({"user_budgets": {"users": {"p": {"limits": {"rpm": 2}}}}});
    let e = engine(&[&a], extra.clone());
    let mut req = chat("test/model", true);
    req["user"] = json!("p");
    assert!(run(&e, &req).ok());
    assert!(run(&e, &req).ok());
    // A new catalog (another endpoint): the store is the engine's, shared
    // by every generation, so the minute's window is not reset.
    let report = e.reload_json(&config(&[&a, &b], extra)).expect("reload");
    assert_eq!(report.generation, 1);
    assert!(report.restart_required.is_empty(), "{report:?}");
    let refused = run(&e, &req);
    assert!(!refused.ok());
    assert_eq!(refused.terminal["status"], 429, "{}", refused.terminal);
    let users = &stats(&e)["users"];
    assert_eq!(users[0]["user"], "p");
    assert_eq!(
        (users[0]["requests"].clone(), users[0]["rejections"].clone()),
        (json!(2), json!(1))
    );
}

/// A redis-server on a free loopback port, killed on drop.
struct Redis(std::process::Child, u16);

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn redis() -> Redis {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let child = std::process::Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("redis-server (scripts/setup installs it)");
    wait_for("redis-server", Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    Redis(child, port)
}

#[test]
fn with_shared_health_a_reload_reconnects_and_keeps_local_health() {
    let r = redis();
    std::env::set_var(
        "LLMUX_TEST_RELOAD_REDIS",
        format!("redis://127.0.0.1:{}/0", r.1),
    );
    let a = upstream("a", Behavior::default());
    let b = upstream("b", Behavior::default());
    let shared = json!({"shared": {"redis_url_env": "LLMUX_TEST_RELOAD_REDIS", "sync_ms": 50,
        "key_prefix": format!("llmux-reload-test:{}:", std::process::id())}});
    let e = engine(&[&a], shared.clone());
    let connected = |e: &llmux::Engine| stats(e)["shared"]["connected"] == true;
    wait_for("the first connection", Duration::from_secs(10), || {
        connected(&e)
    });
    assert!(run(&e, &chat("test/model", true)).ok());
    let before = endpoint_stats(&e, "a/default");
    let first = stats(&e)["shared"]["instance"].clone();
    e.reload_json(&config(&[&a, &b], shared)).expect("reload");
    wait_for(
        "the new catalog's connection",
        Duration::from_secs(10),
        || connected(&e) && stats(&e)["shared"]["instance"] != first,
    );
    let after = endpoint_stats(&e, "a/default");
    assert_eq!(before["first_token_ms"], after["first_token_ms"]);
    assert_eq!(before["requests"], after["requests"]);
    assert!(after["shared"].is_object(), "{after}");
    assert!(endpoint_stats(&e, "b/default")["shared"].is_object());
    assert_eq!(
        run(&e, &chat("test/model:b", true)).served(),
        Some("b/default")
    );
}

#[test]
fn the_trace_exporter_lives_for_the_engine_across_reloads() {
    let a = upstream("a", Behavior::default());
    // A collector nobody listens on: spans are dropped, requests unaffected.
    let otlp = |ratio: f64| json!({"telemetry": {"otlp": {"endpoint": "http://127.0.0.1:9", "sampling_ratio": ratio}}});
    let e = engine(&[&a], otlp(1.0));
    let first = e.tracer().expect("a tracer with telemetry.otlp");
    let same = e.reload_json(&config(&[&a], otlp(1.0))).expect("reload");
    assert!(same.restart_required.is_empty(), "{same:?}");
    assert!(std::sync::Arc::ptr_eq(&first, &e.tracer().expect("kept")));
    let changed = e.reload_json(&config(&[&a], otlp(0.5))).expect("reload");
    assert_eq!(changed.restart_required, ["telemetry"]);
    let kept = e.tracer().expect("kept");
    assert!(std::sync::Arc::ptr_eq(&first, &kept));
    assert_eq!(kept.settings().sampling_ratio, 1.0);
    assert!(run(&e, &chat("test/model:a", false)).ok());
}
