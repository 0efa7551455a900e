//! Issue 24: reloading a running `llmux serve` (a real process in front of
//! the mock fleet): SIGHUP with 200 streams in flight, `POST
//! /admin/reload` (keys, an invalid file), `--watch`, settings that need a
//! restart, the log line and the metric.

use futures_util::StreamExt;
use llmux_fleet::{Behavior, MockServer};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod common;

use common::{catalog, client, json_lines, provider, rt, serve, Gateway, KEY, KEY_ENV};

/// A second key, without `admin: true`.
const USER_KEY_ENV: &str = "LLMUX_TEST_RELOAD_USER_KEY";
const USER_KEY: &str = "test-reload-user-key-not-a-secret";

/// Waits (up to 10 s) for the `n`th reload log line.
fn reload_line(gw: &Gateway, n: usize) -> Value {
    gw.poll_log(&format!("reload line {n}"), |log| {
        json_lines(log).filter(|l| l["msg"] == "reload").nth(n - 1)
    })
}

/// Rewrites the gateway's config file through a rename, as editors and
/// config managers do.
fn write_config(gw: &Gateway, cfg: &Value) {
    let tmp = gw.path.with_extension("tmp");
    std::fs::write(&tmp, cfg.to_string()).expect("write config");
    std::fs::rename(&tmp, &gw.path).expect("rename config");
}

fn start(cfg: &Value, extra: &[&str]) -> Gateway {
    serve(cfg).args(extra).env(USER_KEY_ENV, USER_KEY).start()
}

/// Model `demo/chat` served by each (server, prompt price, completion price).
fn config(servers: &[(&MockServer, f64, f64)], gateway: Value) -> Value {
    let providers = servers
        .iter()
        .map(|(s, _, _)| provider("openai", s))
        .collect();
    let endpoints = servers
        .iter()
        .map(|(s, p, c)| json!({"provider": s.name(), "upstream_model": format!("up-{}", s.name()), "price": {"prompt": p, "completion": c}}))
        .collect();
    catalog(providers, endpoints, gateway)
}

fn keyed() -> Value {
    json!({"keys": [
        {"env": KEY_ENV, "name": "tests", "admin": true},
        {"env": USER_KEY_ENV, "name": "user"},
    ]})
}

fn chat(model: &str, stream: bool) -> Value {
    json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": "hi"}]})
}

async fn stats_of(c: &reqwest::Client, gw: &Gateway, id: &str) -> Value {
    let v: Value = c
        .get(format!("{}/v1/stats", gw.url))
        .bearer_auth(KEY)
        .send()
        .await
        .expect("stats")
        .json()
        .await
        .expect("stats JSON");
    v["endpoints"]
        .as_array()
        .expect("endpoints")
        .iter()
        .find(|e| e["id"] == id)
        .cloned()
        .unwrap_or(Value::Null)
}

/// One stream: signals `started` at its first bytes, returns the whole body.
async fn one_stream(
    c: reqwest::Client,
    url: String,
    model: &str,
    started: Arc<AtomicUsize>,
) -> String {
    let r = c
        .post(url)
        .bearer_auth(KEY)
        .json(&chat(model, true))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200);
    let mut body = r.bytes_stream();
    let mut text = String::new();
    let mut first = true;
    while let Some(b) = body.next().await {
        text.push_str(&String::from_utf8_lossy(&b.expect("stream body")));
        if first {
            first = false;
            started.fetch_add(1, Ordering::AcqRel);
        }
    }
    text
}

/// The concatenated `delta.content` of an SSE body, and whether it ended
/// with `[DONE]`.
fn sse_text(body: &str) -> (String, bool) {
    let mut text = String::new();
    let mut done = false;
    for data in body.lines().filter_map(|l| l.strip_prefix("data: ")) {
        if data == "[DONE]" {
            done = true;
            continue;
        }
        let v: Value = serde_json::from_str(data).expect("SSE data is JSON");
        if let Some(t) = v["choices"][0]["delta"]["content"].as_str() {
            text.push_str(t);
        }
    }
    (text, done)
}

#[test]
fn sighup_reloads_under_200_streams_and_loses_nothing() {
    let slow =
        || serde_json::from_value::<Behavior>(json!({"chunks": 10, "chunk_delay_ms": 50})).unwrap();
    let a = MockServer::start("a", slow()).expect("mock");
    let b = MockServer::start("b", slow()).expect("mock");
    let c = MockServer::start("c", Behavior::default()).expect("mock");
    let gw = start(&config(&[(&a, 1.0, 2.0), (&b, 1.0, 2.0)], keyed()), &[]);
    let url = format!("{}/v1/chat/completions", gw.url);
    rt().block_on(async {
        let http = client();
        let started = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..200)
            .map(|i| {
                let model = if i % 2 == 0 {
                    "demo/chat:a"
                } else {
                    "demo/chat:b"
                };
                tokio::spawn(one_stream(
                    http.clone(),
                    url.clone(),
                    model,
                    started.clone(),
                ))
            })
            .collect();
        let deadline = Instant::now() + Duration::from_secs(30);
        while started.load(Ordering::Acquire) < 200 {
            assert!(Instant::now() < deadline, "streams did not start");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let before = stats_of(&http, &gw, "a/default").await;
        // a repriced, b removed, c added.
        write_config(&gw, &config(&[(&a, 3.0, 7.0), (&c, 1.0, 1.0)], keyed()));
        gw.signal("HUP");
        let line = reload_line(&gw, 1);
        assert_eq!(line["trigger"], "sighup");
        assert_eq!(line["ok"], true, "{line}");
        assert_eq!(line["generation"], 1);
        assert_eq!(
            line["added"],
            json!([{"model": "demo/chat", "endpoint": "c/default"}])
        );
        assert_eq!(
            line["removed"],
            json!([{"model": "demo/chat", "endpoint": "b/default"}])
        );
        assert!(line["draining_requests"].as_u64().unwrap() > 0, "{line}");
        let after = stats_of(&http, &gw, "a/default").await;
        // (in_flight falls as streams end; nothing else moves meanwhile)
        for k in ["first_token_ms", "requests", "ejections", "circuit"] {
            assert_eq!(before[k], after[k], "{k} changed by the reload");
        }
        assert_eq!(after["price"]["prompt"], 3.0);
        assert_eq!(stats_of(&http, &gw, "b/default").await, Value::Null);
        // Every stream completes, exactly once, on the endpoint it began on.
        for (i, t) in tasks.into_iter().enumerate() {
            let body = t.await.expect("stream task");
            let (text, done) = sse_text(&body);
            let want = if i % 2 == 0 {
                "Hello from a."
            } else {
                "Hello from b."
            };
            assert!(done, "stream {i} ended without [DONE]: {body}");
            assert_eq!(text, want, "stream {i}");
        }
        assert_eq!(b.request_count(), 100, "b got no request after the reload");
        // New requests: c serves; a's next routing record has the new prices.
        let r = http
            .post(&url)
            .bearer_auth(KEY)
            .json(&chat("demo/chat:c", false))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let r = http
            .post(&url)
            .bearer_auth(KEY)
            .json(&chat("demo/chat:b", false))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "b is gone");
        let v: Value = http
            .post(&url)
            .bearer_auth(KEY)
            .json(&chat("demo/chat:a", false))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let (p, q) = (
            v["usage"]["prompt_tokens"].as_f64().unwrap(),
            v["usage"]["completion_tokens"].as_f64().unwrap(),
        );
        let deadline = Instant::now() + Duration::from_secs(5);
        let logged = loop {
            let found = gw.log_lines().into_iter().rev().find(|l| {
                l["msg"] == "request" && l["endpoint"] == "a/default" && l["stream"] == false
            });
            if let Some(l) = found {
                break l;
            }
            assert!(Instant::now() < deadline, "no request line");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let cost = logged["cost_usd"].as_f64().unwrap();
        assert!((cost - (p * 3.0 + q * 7.0) / 1e6).abs() < 1e-12, "{logged}");
        let metrics = gw.metrics().await;
        assert!(
            metrics.contains(r#"llmux_reloads_total{trigger="sighup",result="ok"} 1"#),
            "{metrics}"
        );
    });
}

#[test]
fn admin_reload_needs_a_key_and_refuses_an_invalid_file() {
    let a = MockServer::start("a", Behavior::default()).expect("mock");
    let cfg = config(&[(&a, 1.0, 2.0)], keyed());
    let gw = start(&cfg, &[]);
    let admin = format!("{}/admin/reload", gw.url);
    rt().block_on(async {
        let http = client();
        let r = http.post(&admin).send().await.unwrap();
        assert_eq!(r.status(), 401);
        let r = http.post(&admin).bearer_auth("wrong").send().await.unwrap();
        assert_eq!(r.status(), 401);
        // A valid key without `admin: true` may not reload.
        let r = http
            .post(&admin)
            .bearer_auth(USER_KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403);
        let v: Value = r.json().await.unwrap();
        assert!(
            v["error"]["message"].as_str().unwrap().contains("admin"),
            "{v}"
        );
        let before = stats_of(&http, &gw, "a/default").await;
        // Invalid: every problem named, nothing changes.
        let mut bad = cfg.clone();
        bad["providers"][0]["base_url"] = json!("not a url");
        bad["models"][0]["endpoints"][0]["provider"] = json!("nobody");
        write_config(&gw, &bad);
        let r = http.post(&admin).bearer_auth(KEY).send().await.unwrap();
        assert_eq!(r.status(), 422);
        let v: Value = r.json().await.unwrap();
        let errors = v["errors"].to_string();
        assert!(
            errors.contains("base_url") && errors.contains("endpoints[0]"),
            "{v}"
        );
        assert_eq!(stats_of(&http, &gw, "a/default").await, before);
        let line = reload_line(&gw, 1);
        assert_eq!(
            (line["trigger"].clone(), line["ok"].clone()),
            (json!("http"), json!(false))
        );
        // Valid again, with a listen address that cannot change live.
        let mut moved = cfg.clone();
        moved["gateway"]["listen"] = json!("127.0.0.1:1");
        moved["gateway"]["limits"] = json!({"max_in_flight": 700});
        moved["models"][0]["endpoints"][0]["price"] = json!({"prompt": 9.0, "completion": 9.0});
        write_config(&gw, &moved);
        let r = http.post(&admin).bearer_auth(KEY).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["ok"], true);
        assert_eq!(v["generation"], 1);
        assert_eq!(v["restart_required"], json!(["gateway.listen"]));
        assert_eq!(v["applied"], json!(["gateway.limits"]));
        assert_eq!(
            stats_of(&http, &gw, "a/default").await["price"]["prompt"],
            9.0
        );
        let metrics = gw.metrics().await;
        assert!(
            metrics.contains(r#"llmux_reloads_total{trigger="http",result="error"} 1"#),
            "{metrics}"
        );
        assert!(
            metrics.contains(r#"llmux_reloads_total{trigger="http",result="ok"} 1"#),
            "{metrics}"
        );
        assert!(metrics.contains("llmux_catalog_generation 1"), "{metrics}");
    });
}

#[test]
fn watch_reloads_when_the_file_changes_and_loopback_needs_no_key() {
    let a = MockServer::start("a", Behavior::default()).expect("mock");
    let b = MockServer::start("b", Behavior::default()).expect("mock");
    let gw = start(&config(&[(&a, 1.0, 2.0)], json!({})), &["--watch"]);
    rt().block_on(async {
        let http = client();
        write_config(&gw, &config(&[(&a, 1.0, 2.0), (&b, 1.0, 2.0)], json!({})));
        let line = reload_line(&gw, 1);
        assert_eq!(
            (line["trigger"].clone(), line["ok"].clone()),
            (json!("watch"), json!(true))
        );
        assert_eq!(
            line["added"],
            json!([{"model": "demo/chat", "endpoint": "b/default"}])
        );
        let url = format!("{}/v1/chat/completions", gw.url);
        let r = http
            .post(&url)
            .json(&chat("demo/chat:b", false))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        // Loopback without keys: the admin route is open.
        let r = http
            .post(format!("{}/admin/reload", gw.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    });
}

/// A third key, configured only by the reload below.
const NEW_KEY_ENV: &str = "LLMUX_TEST_RELOAD_NEW_KEY";
const NEW_KEY: &str = "test-reload-new-key-not-a-secret";

#[test]
fn a_reload_adds_removes_and_changes_keys_without_a_restart() {
    let a = MockServer::start("a", Behavior::default()).expect("mock");
    let cfg = config(&[(&a, 1.0, 2.0)], keyed());
    let gw = serve(&cfg)
        .env(USER_KEY_ENV, USER_KEY)
        .env(NEW_KEY_ENV, NEW_KEY)
        .start();
    let url = format!("{}/v1/chat/completions", gw.url);
    let admin = format!("{}/admin/reload", gw.url);
    rt().block_on(async {
        let http = client();
        let status = |key: &'static str| {
            let r = http
                .post(&url)
                .bearer_auth(key)
                .json(&chat("demo/chat", false));
            async move { r.send().await.unwrap().status().as_u16() }
        };
        assert_eq!((status(USER_KEY).await, status(NEW_KEY).await), (200, 401));
        // A stream admitted with `user` before the reload that removes it.
        let mut slow = chat("demo/chat", true);
        slow["mock"] = json!({"chunks": 5, "chunk_delay_ms": 100});
        let stream = http.post(&url).bearer_auth(USER_KEY).json(&slow).send();
        let stream = stream.await.unwrap();
        // `user` goes, `new` comes, `tests` keeps its secret but may now
        // call only `demo/*`.
        let mut next = cfg.clone();
        next["gateway"]["keys"] = json!([
            {"env": KEY_ENV, "name": "tests", "admin": true, "models": ["demo/*"]},
            {"env": NEW_KEY_ENV, "name": "new"},
        ]);
        write_config(&gw, &next);
        let r = http.post(&admin).bearer_auth(KEY).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        let changes = json!({"added": ["new"], "removed": ["user"], "changed": ["tests"]});
        assert_eq!(v["keys"], changes, "{v}");
        // (`gateway.listen` differs: the tests pass `--listen`.)
        assert!(!v["restart_required"].to_string().contains("keys"), "{v}");
        assert_eq!((status(USER_KEY).await, status(NEW_KEY).await), (401, 200));
        let (text, done) = sse_text(&stream.text().await.unwrap());
        assert!(done && !text.is_empty(), "the admitted stream ended early");
        // The same file again changes no key.
        let r = http.post(&admin).bearer_auth(KEY).send().await.unwrap();
        let v: Value = r.json().await.unwrap();
        let none = json!({"added": [], "removed": [], "changed": []});
        assert_eq!(v["keys"], none, "{v}");
        // On loopback a reload may take every key away.
        next["gateway"] = json!({});
        write_config(&gw, &next);
        let r = http.post(&admin).bearer_auth(KEY).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let r = http.post(&url).json(&chat("demo/chat", false)).send();
        assert_eq!(r.await.unwrap().status(), 200);
    });
    let line = reload_line(&gw, 1);
    assert_eq!(line["keys"]["removed"], json!(["user"]), "{line}");
    let log = gw.log_text();
    for secret in [KEY, USER_KEY, NEW_KEY] {
        assert!(!log.contains(secret), "a key's secret in the log");
    }
}

/// `gateway.limits`, `max_body_bytes` and `keepalive_ms` change in place:
/// new requests see the new values, a request already admitted is not
/// cut, and `/metrics` shows the limits in force.
#[test]
fn a_reload_changes_limits_and_the_body_limit_in_place() {
    let a = MockServer::start("a", Behavior::default()).expect("mock");
    let cfg = config(&[(&a, 1.0, 2.0)], keyed());
    let gw = start(&cfg, &[]);
    let url = format!("{}/v1/chat/completions", gw.url);
    let admin = format!("{}/admin/reload", gw.url);
    rt().block_on(async {
        let http = client();
        let send = |body: Value| {
            let r = http.post(&url).bearer_auth(KEY).json(&body).send();
            async move { r.await.unwrap() }
        };
        // A stream in flight when the cap drops to 1.
        let mut slow = chat("demo/chat", true);
        slow["mock"] = json!({"chunks": 5, "chunk_delay_ms": 200});
        let stream = send(slow).await;
        let mut next = cfg.clone();
        next["gateway"]["limits"] = json!({"max_in_flight": 1, "retry_after_s": 4});
        next["gateway"]["max_body_bytes"] = json!(2000);
        next["gateway"]["keepalive_ms"] = json!(5000);
        write_config(&gw, &next);
        // Past the new cap: the reload route itself is still answered.
        let r = http.post(&admin).bearer_auth(KEY).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        let applied = json!([
            "gateway.max_body_bytes",
            "gateway.keepalive_ms",
            "gateway.limits"
        ]);
        assert_eq!(v["applied"], applied, "{v}");
        assert_eq!(v["restart_required"], json!(["gateway.listen"]), "{v}");
        let r = send(chat("demo/chat", false)).await;
        assert_eq!(r.status(), 503);
        assert_eq!(r.headers()["retry-after"], "4");
        let e: Value = r.json().await.unwrap();
        let message = e["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("limit of 1 requests"), "{e}");
        let (text, done) = sse_text(&stream.text().await.unwrap());
        assert!(done && !text.is_empty(), "the admitted stream was cut");
        // The stream's slot is free; the body limit is 2000 bytes.
        let mut big = chat("demo/chat", false);
        big["messages"][0]["content"] = json!("x".repeat(3000));
        let r = send(big).await;
        assert_eq!(r.status(), 413);
        let e: Value = r.json().await.unwrap();
        assert!(e.to_string().contains("2000 bytes"), "{e}");
        assert_eq!(send(chat("demo/chat", false)).await.status(), 200);
        let metrics = gw.metrics().await;
        let shown = r#"llmux_limit{limit="max_in_flight"} 1"#;
        assert!(metrics.contains(shown), "{metrics}");
        // Back to the defaults.
        write_config(&gw, &cfg);
        let r = http.post(&admin).bearer_auth(KEY).send().await.unwrap();
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["applied"], applied, "{v}");
        let mut big = chat("demo/chat", false);
        big["messages"][0]["content"] = json!("x".repeat(3000));
        assert_eq!(send(big).await.status(), 200);
        let metrics = gw.metrics().await;
        let shown = r#"llmux_limit{limit="max_in_flight"} 4096"#;
        assert!(metrics.contains(shown), "{metrics}");
    });
    let line = reload_line(&gw, 1);
    assert_eq!(line["applied"].as_array().map(Vec::len), Some(3), "{line}");
}
