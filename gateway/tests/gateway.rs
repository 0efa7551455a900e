//! `llmux serve` as a real process in front of the mock fleet: keys, body
//! limit, loopback-only without keys, header forwarding, errors, listings,
//! client disconnects, graceful drain and 1,000 concurrent streams.

use llmux_fleet::{Behavior, MockServer, ToolCallSpec};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::{
    catalog, chat, client, keyed, provider, rt, serve, signal, temp_dir, Gateway, KEY, KEY_ENV,
};

/// A catalog: model `demo/chat` served by the given (name, protocol, server).
fn config(servers: &[(&str, &MockServer)], gateway: Value) -> Value {
    let providers = servers
        .iter()
        .map(|(proto, s)| provider(proto, s))
        .collect();
    let endpoints = servers
        .iter()
        .enumerate()
        .map(|(i, (_, s))| json!({"provider": s.name(), "upstream_model": format!("up-{}", s.name()),
            "price": {"prompt": 1.0, "completion": 2.0}, "expected_first_token_ms": 10.0 * (i + 1) as f64}))
        .collect();
    catalog(providers, endpoints, gateway)
}

fn start(cfg: &Value, extra: &[&str]) -> Gateway {
    serve(cfg).args(extra).start()
}

fn try_start(cfg: &Value, extra: &[&str]) -> Result<Gateway, String> {
    serve(cfg).args(extra).try_start()
}

fn messages(stream: bool) -> Value {
    json!({"model": "demo/chat", "max_tokens": 64, "stream": stream, "messages": [{"role": "user", "content": "hi"}]})
}

#[test]
fn keys_give_401_in_each_protocols_shape() {
    let a = MockServer::start("a", Behavior::default()).expect("mock");
    let gw = start(&config(&[("openai", &a)], keyed()), &[]);
    rt().block_on(async {
        let c = client();
        let oa = format!("{}/api/v1/chat/completions", gw.url);
        let an = format!("{}/api/anthropic/v1/messages?beta=true", gw.url);
        for (url, body, anthropic) in [(&oa, chat(false), false), (&an, messages(false), true)] {
            for key in [None, Some("wrong-key")] {
                let mut rb = c.post(url).json(&body);
                if let Some(k) = key {
                    rb = if anthropic {
                        rb.header("x-api-key", k)
                    } else {
                        rb.bearer_auth(k)
                    };
                }
                let r = rb.send().await.expect("send");
                assert_eq!(r.status(), 401, "{url} key {key:?}");
                assert_eq!(r.headers()["x-should-retry"], "false");
                let v: Value = r.json().await.expect("json");
                if anthropic {
                    assert_eq!(v["type"], "error");
                    assert_eq!(v["error"]["type"], "authentication_error");
                } else {
                    assert_eq!(v["error"]["type"], "authentication_error", "{v}");
                    assert!(v["error"]["message"].is_string());
                }
            }
            // Both header forms work for both protocols.
            let r = c
                .post(url)
                .bearer_auth(KEY)
                .json(&body)
                .send()
                .await
                .expect("send");
            assert_eq!(r.status(), 200);
            let r = c
                .post(url)
                .header("x-api-key", KEY)
                .json(&body)
                .send()
                .await
                .expect("send");
            assert_eq!(r.status(), 200);
        }
        // Listings need the key too; liveness does not.
        let r = c
            .get(format!("{}/v1/models", gw.url))
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), 401);
        let r = c
            .get(format!("{}/health", gw.url))
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), 200);
    });
    // The caller's key never went upstream.
    for rec in a.requests() {
        assert_eq!(
            rec.header("authorization"),
            Some("Bearer upstream-fake-key")
        );
        assert!(!format!("{:?}", rec.headers).contains(KEY));
    }
}

#[test]
fn body_over_the_limit_is_413() {
    let a = MockServer::start("a", Behavior::default()).expect("mock");
    let gw = start(
        &config(&[("openai", &a)], json!({"max_body_bytes": 2000})),
        &[],
    );
    rt().block_on(async {
        let c = client();
        let big = json!({"model": "demo/chat", "max_tokens": 5,
            "messages": [{"role": "user", "content": "x".repeat(5000)}]});
        let r = c.post(format!("{}/v1/messages", gw.url)).json(&big).send().await.expect("send");
        assert_eq!(r.status(), 413);
        let v: Value = r.json().await.expect("json");
        assert_eq!(v["error"]["type"], "request_too_large");
        // Without a Content-Length (chunked), the limit holds while reading.
        // (Just over the limit, in one write, so the client has sent it all
        // before the 413 closes the connection.)
        let small = json!({"model": "demo/chat", "messages": [{"role": "user", "content": "x".repeat(2000)}]});
        let bytes = small.to_string().into_bytes();
        let chunks: Vec<Result<Vec<u8>, std::io::Error>> = vec![Ok(bytes)];
        let body = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
        let r = c
            .post(format!("{}/api/v1/chat/completions", gw.url))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), 413);
        let v: Value = r.json().await.expect("json");
        assert!(v["error"]["message"].as_str().unwrap_or("").contains("2000"), "{v}");
        let r = c.post(format!("{}/v1/chat/completions", gw.url)).json(&chat(false)).send().await.expect("send");
        assert_eq!(r.status(), 200);
    });
    assert_eq!(a.request_count(), 1, "nothing over the limit went upstream");
}

#[test]
fn without_keys_only_loopback() {
    let a = MockServer::start("a", Behavior::default()).expect("mock");
    let cfg = config(&[("openai", &a)], json!({}));
    let err = try_start(&cfg, &["--listen", "0.0.0.0:0"])
        .err()
        .expect("refused");
    assert!(err.contains("without caller keys"), "{err}");
    let gw = start(&cfg, &["--listen", "0.0.0.0:0", "--insecure-no-auth"]);
    assert!(gw.url.starts_with("http://0.0.0.0:"), "{}", gw.url);
    // Loopback without keys serves.
    let gw = start(&cfg, &[]);
    let r = rt().block_on(
        client()
            .post(format!("{}/v1/chat/completions", gw.url))
            .json(&chat(false))
            .send(),
    );
    assert_eq!(r.expect("send").status(), 200);
}

#[test]
fn routing_record_headers_failover_and_upstream_errors() {
    let bad = MockServer::start(
        "bad",
        Behavior {
            status: 503,
            ..Default::default()
        },
    )
    .expect("mock");
    let good = MockServer::start("good", Behavior::default()).expect("mock");
    let gw = start(
        &config(&[("openai", &bad), ("anthropic", &good)], keyed()),
        &[],
    );
    rt().block_on(async {
        let c = client();
        let r = c.post(format!("{}/api/v1/chat/completions", gw.url)).bearer_auth(KEY)
            .json(&chat(false)).send().await.expect("send");
        assert_eq!(r.status(), 200);
        let h = r.headers();
        assert_eq!(h["x-llmux-endpoint"], "good/default");
        assert_eq!(h["x-llmux-provider"], "good");
        assert_eq!(h["x-llmux-attempts"], "2");
        assert!(h.contains_key("x-llmux-first-token-ms"));
        assert!(h.contains_key("x-llmux-cost-usd"));
        let v: Value = r.json().await.expect("json");
        assert_eq!(v["object"], "chat.completion");
        assert!(v.get("routing").is_none(), "the record stays out of the body");

        // A stream that failed over says so in its headers, which go out
        // with the first chunk (issue 18).
        // The same request without a stream says how many attempts that
        // order takes (retries of `bad` included).
        let mut body = chat(false);
        body["provider"] = json!({"routing": {"type": "order",
            "providers": ["bad/default", "good/default"]}});
        let r = c.post(format!("{}/api/v1/chat/completions", gw.url)).bearer_auth(KEY)
            .json(&body).send().await.expect("send");
        let attempts = r.headers()["x-llmux-attempts"].clone();
        assert!(attempts != "1", "{attempts:?}");
        body["stream"] = json!(true);
        let r = c.post(format!("{}/api/v1/chat/completions", gw.url)).bearer_auth(KEY)
            .json(&body).send().await.expect("send");
        assert_eq!(r.status(), 200);
        let h = r.headers();
        assert_eq!(h["content-type"], "text/event-stream; charset=utf-8");
        assert_eq!(h["x-llmux-endpoint"], "good/default");
        assert_eq!(h["x-llmux-attempts"], attempts);
        let ftl: f64 = h["x-llmux-first-token-ms"].to_str().unwrap().parse().expect("a number");
        assert!(ftl >= 0.0, "{ftl}");
        let text = r.text().await.expect("stream");
        assert!(text.contains("data: [DONE]"), "{text}");

        // Failover exhausted: the last error, x-should-retry: false.
        good.set_behavior(Behavior { status: 529, ..Default::default() });
        let r = c.post(format!("{}/api/anthropic/v1/messages", gw.url)).header("x-api-key", KEY)
            .json(&messages(false)).send().await.expect("send");
        assert_eq!(r.headers()["x-should-retry"], "false");
        assert!(r.status().is_server_error(), "{}", r.status());

        // A same-protocol request error comes back unchanged.
        let body = json!({"type": "error", "error": {"type": "invalid_request_error",
            "message": "prompt is too long: 250000 tokens > 200000 maximum"}});
        good.set_behavior(Behavior { status: 400, error_body: Some(body.clone()), ..Default::default() });
        bad.set_behavior(Behavior { status: 503, ..Default::default() });
        let r = c.post(format!("{}/api/anthropic/v1/messages", gw.url)).header("x-api-key", KEY)
            .json(&json!({"model": "demo/chat:good", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}))
            .send().await.expect("send");
        assert_eq!(r.status(), 400);
        assert_eq!(r.json::<Value>().await.expect("json"), body);

        // Unknown model: 404 in the caller's shape.
        let r = c.post(format!("{}/v1/chat/completions", gw.url)).bearer_auth(KEY)
            .json(&json!({"model": "nope/x", "messages": []})).send().await.expect("send");
        assert_eq!(r.status(), 404);
        assert!(r.json::<Value>().await.expect("json")["error"]["message"].as_str().unwrap_or("").contains("demo/chat"));
    });
}

#[test]
fn anthropic_headers_go_to_anthropic_endpoints_only() {
    let an = MockServer::start("an", Behavior::default()).expect("mock");
    let oa = MockServer::start("oa", Behavior::default()).expect("mock");
    let gw = start(
        &config(&[("anthropic", &an), ("openai", &oa)], json!({})),
        &[],
    );
    let beta = "claude-code-20250219,interleaved-thinking-2025-05-14,some-future-beta-2099-01-01";
    rt().block_on(async {
        let c = client();
        for pin in ["demo/chat:an", "demo/chat:oa"] {
            let r = c.post(format!("{}/anthropic/v1/messages?beta=true", gw.url))
                .header("anthropic-version", "2023-06-01")
                .header("anthropic-beta", beta)
                .header("anthropic-dangerous-direct-browser-access", "true")
                .header("x-app", "cli")
                .header("x-claude-code-session-id", "session-1")
                .json(&json!({"model": pin, "max_tokens": 32000, "stream": true,
                    "zz_unknown": {"kept": true}, "messages": [{"role": "user", "content": "hi"}], "aa_last": 1}))
                .send().await.expect("send");
            assert_eq!(r.status(), 200);
            let text = r.text().await.expect("body");
            assert!(text.contains("event: message_stop"), "{text}");
        }
    });
    let rec = &an.requests()[0];
    assert_eq!(rec.header("anthropic-beta"), Some(beta));
    assert_eq!(rec.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(
        rec.header("anthropic-dangerous-direct-browser-access"),
        Some("true")
    );
    assert_eq!(rec.header("x-api-key"), Some("upstream-fake-key"));
    // Unknown fields pass through, in the caller's order.
    let keys: Vec<&String> = rec.body.as_object().expect("object").keys().collect();
    assert_eq!(
        keys,
        [
            "model",
            "max_tokens",
            "stream",
            "zz_unknown",
            "messages",
            "aa_last"
        ]
    );
    let rec = &oa.requests()[0];
    assert!(
        rec.headers
            .iter()
            .all(|(n, _)| !n.starts_with("anthropic-")),
        "{:?}",
        rec.headers
    );
}

/// Issue 22: the listings show the endpoint facts and the model's
/// aliases, and the endpoints route resolves an alias.
#[test]
fn listings_show_endpoint_facts_and_aliases() {
    let a = MockServer::start("a", Behavior::default()).expect("mock");
    let b = MockServer::start("b", Behavior::default()).expect("mock");
    let mut cfg = config(&[("openai", &a), ("openai", &b)], json!({}));
    cfg["models"][0]["aliases"] = json!(["demo/talk"]);
    let e0 = &mut cfg["models"][0]["endpoints"][0];
    e0["region"] = json!("eu-west");
    e0["quantization"] = json!("fp8");
    e0["data_policy"] = json!({"training": false, "zdr": true, "retention_days": 0});
    e0["supported_parameters"] = json!(["tools", "temperature"]);
    e0["price"] = json!({"prompt": 1.0, "completion": 2.0, "request": 0.01, "image": 0.002});
    let gw = start(&cfg, &[]);
    rt().block_on(async {
        let c = client();
        let get = |p: &str| c.get(format!("{}{p}", gw.url));
        let fetch = |p: &'static str| {
            let r = get(p);
            async move {
                r.send()
                    .await
                    .expect("send")
                    .json::<Value>()
                    .await
                    .expect("json")
            }
        };
        for path in ["/v1/models", "/api/v1/models"] {
            let v = fetch(path).await;
            let m = &v["data"][0];
            assert_eq!(m["aliases"], json!(["demo/talk"]), "{path}: {v}");
            let e = &m["endpoints"][0];
            assert_eq!(e["region"], "eu-west", "{path}: {e}");
            assert_eq!(e["quantization"], "fp8");
            assert_eq!(
                e["data_policy"],
                json!({"training": false, "retention_days": 0, "zdr": true})
            );
            assert_eq!(e["supported_parameters"], json!(["tools", "temperature"]));
            assert_eq!(e["price"]["request"], 0.01);
            assert_eq!(e["price"]["image"], 0.002);
            // b has no facts: no region, its protocol's parameters.
            let e = &m["endpoints"][1];
            assert_eq!(e["region"], Value::Null);
            assert!(
                e["supported_parameters"]
                    .as_array()
                    .is_some_and(|p| !p.is_empty()),
                "{e}"
            );
            assert!(e["price"].get("request").is_none(), "{e}");
        }
        for path in [
            "/v1/models/demo/talk/endpoints",
            "/api/v1/models/demo/talk/endpoints",
        ] {
            let v = fetch(path).await;
            assert_eq!(v["data"]["id"], "demo/chat", "{path}: {v}");
            assert_eq!(v["data"]["aliases"], json!(["demo/talk"]));
            assert_eq!(v["data"]["endpoints"][0]["region"], "eu-west");
        }
        let v = fetch("/v1/stats").await;
        assert_eq!(
            v["models"],
            json!([{"slug": "demo/chat", "aliases": ["demo/talk"]}])
        );
        assert_eq!(v["endpoints"][0]["quantization"], "fp8");
    });
}

#[test]
fn listings_health_metrics_and_count_tokens() {
    let a = MockServer::start("a", Behavior::default()).expect("mock");
    let b = MockServer::start(
        "b",
        Behavior {
            prompt_tokens: 1234,
            ..Default::default()
        },
    )
    .expect("mock");
    let gw = start(
        &config(&[("openai", &a), ("anthropic", &b)], json!({})),
        &[],
    );
    rt().block_on(async {
        let c = client();
        let get = |p: &str| c.get(format!("{}{p}", gw.url));
        let r = get("/api/v1/chat/completions").send().await.expect("send");
        assert_eq!(r.status(), 405);
        c.post(format!("{}/v1/chat/completions", gw.url))
            .json(&chat(false))
            .send()
            .await
            .expect("send");
        let v: Value = get("/api/v1/models")
            .send()
            .await
            .expect("send")
            .json()
            .await
            .expect("json");
        assert_eq!(v["object"], "list");
        let m = &v["data"][0];
        assert_eq!(m["id"], "demo/chat");
        assert_eq!(m["pricing"]["prompt"], "0.000001");
        assert_eq!(m["endpoints"].as_array().map(Vec::len), Some(2));
        assert_eq!(m["endpoints"][0]["circuit"], "closed");
        let v: Value = get("/v1/models")
            .header("anthropic-version", "2023-06-01")
            .send()
            .await
            .expect("send")
            .json()
            .await
            .expect("json");
        assert_eq!(v["data"][0]["type"], "model");
        assert_eq!(v["first_id"], "demo/chat");
        assert_eq!(v["has_more"], false);
        assert!(v["data"][0]["created_at"]
            .as_str()
            .unwrap_or("")
            .ends_with('Z'));
        let v: Value = get("/api/anthropic/v1/models")
            .send()
            .await
            .expect("send")
            .json()
            .await
            .expect("json");
        assert_eq!(v["last_id"], "demo/chat");
        let v: Value = get("/api/v1/models/demo/chat/endpoints")
            .send()
            .await
            .expect("send")
            .json()
            .await
            .expect("json");
        assert_eq!(v["data"]["endpoints"][1]["id"], "b/default");
        assert_eq!(
            get("/api/v1/models/demo/none/endpoints")
                .send()
                .await
                .expect("send")
                .status(),
            404
        );
        let v: Value = get("/api/v1/stats")
            .send()
            .await
            .expect("send")
            .json()
            .await
            .expect("json");
        assert!(v["endpoints"].is_array());
        assert_eq!(get("/health").send().await.expect("send").status(), 200);
        assert_eq!(
            c.head(format!("{}/", gw.url))
                .send()
                .await
                .expect("send")
                .status(),
            200
        );
        assert_eq!(get("/ready").send().await.expect("send").status(), 200);
        let text = get("/metrics")
            .send()
            .await
            .expect("send")
            .text()
            .await
            .expect("text");
        for name in [
            "llmux_requests_total",
            "llmux_first_token_seconds",
            "llmux_tokens_total",
            "llmux_cost_usd_total",
            "llmux_endpoint_circuit_state",
            "llmux_endpoint_in_flight",
        ] {
            assert!(text.contains(name), "{name} missing from\n{text}");
        }
        // Pinned to the OpenAI endpoint: an estimate that does not undercount.
        let body = json!({"model": "demo/chat:a", "system": "be brief",
            "messages": [{"role": "user", "content": "count these words please"}]});
        let r = c
            .post(format!("{}/api/anthropic/v1/messages/count_tokens", gw.url))
            .json(&body)
            .send()
            .await
            .expect("send");
        assert_eq!(r.headers()["x-llmux-count"], "estimate");
        let n = r.json::<Value>().await.expect("json")["input_tokens"]
            .as_u64()
            .expect("input_tokens");
        assert!(n >= 6, "{n} undercounts");
        // The model has an Anthropic endpoint: its exact count, forwarded.
        let body = json!({"model": "demo/chat", "messages": [{"role": "user", "content": "hi"}]});
        let r = c
            .post(format!("{}/v1/messages/count_tokens", gw.url))
            .header("anthropic-version", "2023-06-01")
            .header("anthropic-beta", "token-counting-2024-11-01")
            .json(&body)
            .send()
            .await
            .expect("send");
        assert_eq!(r.headers()["x-llmux-count"], "upstream");
        assert_eq!(
            r.json::<Value>().await.expect("json"),
            json!({"input_tokens": 1234})
        );
        let rec = b
            .requests()
            .into_iter()
            .find(|r| r.path.ends_with("/count_tokens"))
            .expect("forwarded");
        assert_eq!(rec.body["model"], "up-b");
        assert_eq!(
            rec.header("anthropic-beta"),
            Some("token-counting-2024-11-01")
        );
        assert_eq!(rec.header("x-api-key"), Some("upstream-fake-key"));
    });
}

#[test]
fn client_disconnect_cancels_upstream() {
    // Fast chunks so the fleet notices the closed connection at its next write.
    let slow = MockServer::start(
        "slow",
        Behavior {
            chunks: 5000,
            chunk_delay_ms: 5,
            ..Default::default()
        },
    )
    .expect("mock");
    let gw = start(&config(&[("openai", &slow)], json!({})), &[]);
    let stats = format!("{}/api/v1/stats", gw.url);
    let in_flight = |c: reqwest::Client, url: String| async move {
        let v: Value = c
            .get(url)
            .send()
            .await
            .expect("stats")
            .json()
            .await
            .expect("json");
        v["requests_in_flight"].as_u64().expect("in flight")
    };
    rt().block_on(async {
        let c = client();
        let cases = [
            ("/v1/chat/completions", chat(true)),
            ("/v1/messages", messages(true)),
            // Still waiting for the first token when the client goes away.
            ("/v1/chat/completions", {
                let mut b = chat(true);
                b["mock"] = json!({"first_token_delay_ms": 3000});
                b
            }),
        ];
        for (i, (path, body)) in cases.into_iter().enumerate() {
            let waiting = i == 2;
            let send = c.post(format!("{}{path}", gw.url)).json(&body).send();
            if waiting {
                // Headers only go out with the first event: give up before.
                assert!(tokio::time::timeout(Duration::from_millis(300), send).await.is_err());
            } else {
                let mut r = send.await.expect("send");
                assert_eq!(r.status(), 200);
                r.chunk().await.expect("read").expect("a first chunk");
                assert_eq!(in_flight(c.clone(), stats.clone()).await, 1);
                drop(r);
            }
            let t = Instant::now();
            while in_flight(c.clone(), stats.clone()).await > 0 && t.elapsed() < Duration::from_secs(5) {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            let cancelled = t.elapsed();
            assert_eq!(in_flight(c.clone(), stats.clone()).await, 0, "case {i}: the request was not cancelled");
            while slow.live_connections() > 0 && t.elapsed() < Duration::from_secs(10) {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            assert_eq!(slow.live_connections(), 0, "case {i}: the upstream connection stayed open");
            println!(
                "{path} (case {i}): engine request cancelled {:.1} ms, fleet saw the close {:.1} ms after the client went away",
                cancelled.as_secs_f64() * 1000.0,
                t.elapsed().as_secs_f64() * 1000.0
            );
        }
    });
}

#[test]
fn sigterm_drains_in_flight_streams_then_cancels() {
    let slow = MockServer::start(
        "slow",
        Behavior {
            chunks: 10,
            chunk_delay_ms: 100,
            ..Default::default()
        },
    )
    .expect("mock");
    // Drain long enough for a 1 s stream: it finishes.
    let mut gw = start(
        &config(&[("openai", &slow)], json!({"drain_ms": 5000})),
        &[],
    );
    rt().block_on(async {
        let c = client();
        let mut r = c
            .post(format!("{}/v1/chat/completions", gw.url))
            .json(&chat(true))
            .send()
            .await
            .expect("send");
        r.chunk().await.expect("read").expect("first chunk");
        gw.signal("TERM");
        tokio::time::sleep(Duration::from_millis(200)).await;
        // No new connections once draining.
        let refused = client()
            .post(format!("{}/v1/chat/completions", gw.url))
            .json(&chat(false))
            .send()
            .await;
        assert!(
            refused.is_err(),
            "a new connection was accepted while draining"
        );
        let mut rest = Vec::new();
        while let Some(b) = r.chunk().await.expect("read") {
            rest.extend_from_slice(&b);
        }
        let text = String::from_utf8_lossy(&rest);
        assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    });
    let status = gw.child.wait().expect("wait");
    assert!(status.success(), "{status}");

    // Drain shorter than the stream: it is cancelled with an error event.
    let long = MockServer::start(
        "long",
        Behavior {
            chunks: 100,
            chunk_delay_ms: 100,
            ..Default::default()
        },
    )
    .expect("mock");
    let mut gw = start(
        &config(&[("anthropic", &long)], json!({"drain_ms": 300})),
        &[],
    );
    rt().block_on(async {
        let mut r = client()
            .post(format!("{}/v1/messages", gw.url))
            .json(&messages(true))
            .send()
            .await
            .expect("send");
        r.chunk().await.expect("read").expect("first chunk");
        gw.signal("TERM");
        let t = Instant::now();
        let mut rest = Vec::new();
        while let Ok(Some(b)) = r.chunk().await {
            rest.extend_from_slice(&b);
        }
        let text = String::from_utf8_lossy(&rest);
        assert!(text.contains("event: error"), "{text}");
        assert!(!text.contains("message_stop"));
        assert!(t.elapsed() < Duration::from_secs(5));
    });
    assert!(gw.child.wait().expect("wait").success());
}

#[test]
fn thousand_concurrent_streams_complete_and_unduplicated() {
    // OpenAI endpoints only: the per-request `mock` field that makes each
    // reply unique does not survive translation.
    let a = MockServer::start(
        "a",
        Behavior {
            chunks: 8,
            chunk_delay_ms: 5,
            ..Default::default()
        },
    )
    .expect("mock");
    let b = MockServer::start(
        "b",
        Behavior {
            chunks: 8,
            chunk_delay_ms: 5,
            ..Default::default()
        },
    )
    .expect("mock");
    let gw = start(
        &config(&[("openai", &a), ("openai", &b)], json!({})),
        &["--log-format", "off"],
    );
    let n = 1000;
    let texts = rt().block_on(async {
        let c = reqwest::Client::builder()
            .no_proxy()
            .pool_max_idle_per_host(0)
            .build()
            .expect("client");
        let tasks: Vec<_> = (0..n)
            .map(|i| {
                let c = c.clone();
                let url = format!("{}/v1/chat/completions", gw.url);
                tokio::spawn(async move {
                    let mut body = chat(true);
                    body["mock"] = json!({"text": format!("reply number {i} end")});
                    let r = c.post(url).json(&body).send().await.expect("send");
                    assert_eq!(r.status(), 200);
                    r.text().await.expect("body")
                })
            })
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.expect("task"));
        }
        out
    });
    for (i, t) in texts.iter().enumerate() {
        assert!(
            t.ends_with("data: [DONE]\n\n"),
            "stream {i} incomplete: {t}"
        );
        assert_eq!(t.matches("data: [DONE]").count(), 1);
        let mut content = String::new();
        for line in t.lines().filter_map(|l| l.strip_prefix("data: ")) {
            if line == "[DONE]" {
                continue;
            }
            let v: Value = serde_json::from_str(line).expect("chunk JSON");
            if let Some(s) = v["choices"][0]["delta"]["content"].as_str() {
                content.push_str(s);
            }
        }
        assert_eq!(content, format!("reply number {i} end"), "stream {i}");
    }
    assert_eq!(
        a.request_count() + b.request_count(),
        n,
        "each request went upstream exactly once"
    );
}

/// An agent loop's upstream: a tool call first, final text once the tool
/// result comes back (what the Claude Code and Codex tests use).
fn agent_loop(tool: &str, arguments: &str) -> Behavior {
    let turn2 = Behavior {
        text: Some("The command printed hello.".into()),
        ..Default::default()
    };
    Behavior {
        text: Some(String::new()),
        tool_calls: vec![ToolCallSpec {
            name: tool.into(),
            arguments: arguments.into(),
        }],
        after_tool_result: Some(Box::new(turn2)),
        ..Default::default()
    }
}

#[test]
fn agent_loop_tool_call_then_text_in_both_protocols() {
    // The fleet behavior the Claude Code test uses: a Bash tool call first,
    // final text once the tool result comes back.
    let beh = agent_loop("Bash", r#"{"command":"echo hello"}"#);
    let oa = MockServer::start("oa", beh.clone()).expect("mock");
    let gw = start(&config(&[("openai", &oa)], json!({})), &[]);
    rt().block_on(async {
        let c = client();
        let v: Value = c.post(format!("{}/v1/messages", gw.url)).json(&messages(false)).send().await.expect("send").json().await.expect("json");
        assert_eq!(v["stop_reason"], "tool_use", "{v}");
        let call = v["content"].as_array().and_then(|b| b.iter().find(|b| b["type"] == "tool_use")).expect("tool_use").clone();
        assert_eq!(call["input"]["command"], "echo hello");
        let body = json!({"model": "demo/chat", "max_tokens": 64, "messages": [
            {"role": "system", "content": "environment"},
            {"role": "user", "content": "run it"},
            {"role": "assistant", "content": [call.clone()]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call["id"], "is_error": false,
              "cache_control": {"type": "ephemeral"}, "content": [{"type": "text", "text": "hello"}]}]}]});
        let v: Value = c.post(format!("{}/v1/messages", gw.url)).json(&body).send().await.expect("send").json().await.expect("json");
        assert_eq!(v["content"][0]["text"], "The command printed hello.", "{v}");
    });
    assert_eq!(oa.request_count(), 2);
}

#[test]
fn streams_get_keepalives_and_routing_headers() {
    let slow = MockServer::start(
        "slow",
        Behavior {
            first_token_delay_ms: 700,
            ..Default::default()
        },
    )
    .expect("mock");
    let down = MockServer::start(
        "down",
        Behavior {
            status: 503,
            ..Default::default()
        },
    )
    .expect("mock");
    let gw = start(
        &config(
            &[("openai", &down), ("anthropic", &slow)],
            json!({"keepalive_ms": 200}),
        ),
        &[],
    );
    rt().block_on(async {
        let c = client();
        for (path, body, ping) in [
            ("/v1/chat/completions", chat(true), ": keep-alive\n\n"),
            (
                "/v1/messages",
                messages(true),
                "event: ping\ndata: {\"type\": \"ping\"}\n\n",
            ),
        ] {
            let r = c
                .post(format!("{}{path}", gw.url))
                .json(&body)
                .send()
                .await
                .expect("send");
            assert_eq!(r.status(), 200);
            let text = r.text().await.expect("body");
            assert!(text.contains(ping), "{path}: no keep-alive in {text}");
            assert!(
                text.contains("[DONE]") || text.contains("message_stop"),
                "{text}"
            );
        }
        // Headers go out at the first chunk, after failover: the record so far.
        slow.set_behavior(Behavior::default());
        let r = c
            .post(format!("{}/v1/chat/completions", gw.url))
            .json(&chat(true))
            .send()
            .await
            .expect("send");
        assert_eq!(r.headers()["x-llmux-endpoint"], "slow/default");
        assert_eq!(r.headers()["x-llmux-provider"], "slow");
        assert!(r.text().await.expect("body").ends_with("data: [DONE]\n\n"));
    });
}

#[test]
fn health_is_saved_at_shutdown_and_loaded_at_start() {
    let a = MockServer::start("a", Behavior::default()).expect("mock");
    let dir = temp_dir();
    let file = dir.0.join("health.json");
    let cfg = config(&[("openai", &a)], json!({"health_file": file}));
    let mut gw = start(&cfg, &[]);
    rt().block_on(async {
        for _ in 0..3 {
            let r = client()
                .post(format!("{}/v1/chat/completions", gw.url))
                .json(&chat(false))
                .send()
                .await
                .expect("send");
            assert_eq!(r.status(), 200);
        }
    });
    gw.signal("TERM");
    assert!(gw.child.wait().expect("wait").success());
    let saved: Value =
        serde_json::from_str(&std::fs::read_to_string(&file).expect("health file")).expect("JSON");
    assert_eq!(saved["endpoints"][0]["endpoint"], "a/default");
    // A new gateway starts with what the old one learned.
    let gw = start(&cfg, &[]);
    let v: Value = rt().block_on(async {
        client()
            .get(format!("{}/api/v1/stats", gw.url))
            .send()
            .await
            .expect("send")
            .json()
            .await
            .expect("json")
    });
    // Non-streaming calls teach `response_ms` (first_token_ms is a stream signal).
    assert!(v["endpoints"][0]["response_ms"].is_number(), "{v}");
}

fn run_cmd(args: &[&str], cfg: &Value) -> (bool, String) {
    let dir = temp_dir();
    let path = dir.0.join("llmux.json");
    std::fs::write(&path, cfg.to_string()).expect("write config");
    let out = Command::new(env!("CARGO_BIN_EXE_llmux"))
        .arg(args[0])
        .arg("--config")
        .arg(&path)
        .args(&args[1..])
        .env(KEY_ENV, KEY)
        .output()
        .expect("run llmux");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[test]
fn check_prints_the_catalog_or_every_error() {
    let a = MockServer::start("a", Behavior::default()).expect("mock");
    let b = MockServer::start("b", Behavior::default()).expect("mock");
    let (ok, text) = run_cmd(
        &["check"],
        &config(&[("openai", &a), ("anthropic", &b)], keyed()),
    );
    assert!(ok, "{text}");
    assert!(
        text.contains("demo/chat") && text.contains("a/default") && text.contains("b/default"),
        "{text}"
    );
    assert!(!text.contains(KEY), "a key was printed");
    let mut bad = config(
        &[("openai", &a)],
        json!({"keys": ["LLMUX_TEST_UNSET_VARIABLE"], "listen": "nowhere"}),
    );
    bad["models"][0]["endpoints"][0]["provider"] = json!("acme");
    let (ok, text) = run_cmd(&["check"], &bad);
    assert!(!ok);
    for want in [
        "gateway.keys[0]",
        "LLMUX_TEST_UNSET_VARIABLE",
        "gateway.listen",
        "models[0].endpoints[0].provider",
    ] {
        assert!(text.contains(want), "{want} missing from {text}");
    }
    // Host-driven mode has nobody to drive it under `llmux serve`.
    let mut host_driven = config(&[("openai", &a)], json!({}));
    host_driven["worker_threads"] = json!(0);
    let (ok, text) = run_cmd(&["check"], &host_driven);
    assert!(!ok, "{text}");
    assert!(
        text.contains("worker_threads: 0 (host-driven)") && text.contains("needs worker threads"),
        "{text}"
    );
}

#[test]
fn route_explains_the_ranking_without_sending() {
    let cheap = MockServer::start("cheap", Behavior::default()).expect("mock");
    let fast = MockServer::start("fast", Behavior::default()).expect("mock");
    let mut cfg = config(&[("openai", &fast), ("anthropic", &cheap)], json!({}));
    cfg["models"][0]["endpoints"][1]["price"] = json!({"prompt": 0.1, "completion": 0.2});
    let (ok, text) = run_cmd(&["route", "demo/chat"], &cfg);
    assert!(ok, "{text}");
    let (f, c) = (
        text.find("1. fast/default").expect("fast first"),
        text.find("2. cheap/default").expect("cheap second"),
    );
    assert!(
        f < c && text.contains("policy latency") && text.contains("prior, unmeasured"),
        "{text}"
    );
    let (ok, text) = run_cmd(
        &[
            "route",
            "demo/chat",
            "--routing",
            r#"{"type":"priority","primary_factor":"price"}"#,
        ],
        &cfg,
    );
    assert!(ok, "{text}");
    assert!(
        text.contains("1. cheap/default") && text.contains("policy price"),
        "{text}"
    );
    let (ok, text) = run_cmd(&["route", "nope/x"], &cfg);
    assert!(!ok && text.contains("demo/chat"), "{text}");
    assert_eq!(
        cheap.request_count() + fast.request_count(),
        0,
        "route sent something"
    );
}

#[test]
fn a_slow_reader_slows_the_upstream_instead_of_being_buffered() {
    // About 48 MB of stream: far more than the gateway's 32-chunk channel
    // and the loopback sockets' buffers (which autotune up to several MB on
    // each of the two connections) can hold.
    let text = "x".repeat(48_000_000);
    let big = MockServer::start(
        "big",
        Behavior {
            chunks: 20_000,
            text: Some(text.clone()),
            ..Default::default()
        },
    )
    .expect("mock");
    let gw = start(&config(&[("openai", &big)], json!({})), &[]);
    rt().block_on(async {
        let mut r = client()
            .post(format!("{}/v1/chat/completions", gw.url))
            .json(&chat(true))
            .send()
            .await
            .expect("send");
        let first = r.chunk().await.expect("read").expect("first chunk");
        let mut got = first.len();
        // The client stops reading: the upstream must still be writing.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(
            big.in_flight(),
            1,
            "the whole response was read from upstream while the client read nothing"
        );
        let mut content = 0usize;
        let mut buf = first.to_vec();
        while let Some(b) = r.chunk().await.expect("read") {
            got += b.len();
            buf.extend_from_slice(&b);
            let mut start = 0;
            while let Some(p) = buf[start..].windows(2).position(|w| w == b"\n\n") {
                let line = &buf[start..start + p];
                if let Some(data) = line.strip_prefix(b"data: ") {
                    if let Ok(v) = serde_json::from_slice::<Value>(data) {
                        content += v["choices"][0]["delta"]["content"]
                            .as_str()
                            .map_or(0, str::len);
                    }
                }
                start += p + 2;
            }
            buf.drain(..start);
        }
        assert!(got > text.len());
        assert_eq!(content, text.len(), "the stream arrived incomplete");
    });
    assert_eq!(big.in_flight(), 0);
}

/// `event: NAME` / `data: JSON` frames of an SSE body, comments skipped.
fn sse_frames(text: &str) -> Vec<(String, Value)> {
    text.split("\n\n")
        .filter_map(|frame| {
            let mut name = String::new();
            let mut data = None;
            for line in frame.lines() {
                if let Some(n) = line.strip_prefix("event: ") {
                    name = n.to_owned();
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data = serde_json::from_str(d).ok();
                }
            }
            data.map(|d| (name, d))
        })
        .collect()
}

#[test]
fn responses_route_through_every_endpoint_kind() {
    let beh = agent_loop("exec_command", r#"{"cmd":"echo hello"}"#);
    for proto in ["responses", "openai", "anthropic"] {
        let up = MockServer::start("up", beh.clone()).expect("mock");
        let gw = start(&config(&[(proto, &up)], json!({})), &[]);
        rt().block_on(async {
            let c = client();
            let turn1 = json!({"model": "demo/chat", "stream": true, "store": false, "input": [
                {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "run it"}]}]});
            for path in ["/v1/responses", "/api/v1/responses"] {
                let r = c.post(format!("{}{path}", gw.url)).json(&turn1).send().await.expect("send");
                assert_eq!(r.status(), 200, "{proto} {path}");
                let frames = sse_frames(&r.text().await.expect("body"));
                for (i, (name, d)) in frames.iter().enumerate() {
                    assert_eq!(d["type"], name.as_str(), "{proto}: event name");
                    assert_eq!(d["sequence_number"], i, "{proto}: sequence_number");
                }
                let (last, done) = frames.last().expect("frames");
                assert_eq!(last, "response.completed", "{proto}");
                let call = done["response"]["output"]
                    .as_array()
                    .and_then(|o| o.iter().find(|i| i["type"] == "function_call"))
                    .expect("function_call")
                    .clone();
                assert_eq!(call["name"], "exec_command");
                // Second turn, non-streaming: the tool output goes back.
                let turn2 = json!({"model": "demo/chat", "input": [
                    {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "run it"}]},
                    call,
                    {"type": "function_call_output", "call_id": call["call_id"], "output": "hello"}]});
                let v: Value = c.post(format!("{}{path}", gw.url)).json(&turn2).send().await.expect("send").json().await.expect("json");
                assert_eq!(v["object"], "response", "{v}");
                assert_eq!(v["output"][0]["content"][0]["text"], "The command printed hello.", "{proto}: {v}");
            }
            // store: true elsewhere than a Responses endpoint: 400 in OpenAI's shape.
            let r = c.post(format!("{}/v1/responses", gw.url))
                .json(&json!({"model": "demo/chat", "input": "hi", "store": true})).send().await.expect("send");
            let status = r.status().as_u16();
            let v: Value = r.json().await.expect("json");
            if proto == "responses" {
                assert_eq!(status, 200, "{v}");
            } else {
                assert_eq!(status, 400, "{v}");
                assert!(v["error"]["message"].as_str().unwrap_or("").contains("store"), "{v}");
            }
        });
        // Two turns on two paths, plus the stored request only where it may go.
        let want = if proto == "responses" { 5 } else { 4 };
        assert_eq!(up.request_count(), want, "{proto}");
    }
}

/// Runs `llmux ARGS` (no config written), returning (exit code, stdout, stderr).
fn llmux(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_llmux"))
        .args(args)
        .env(KEY_ENV, KEY)
        .output()
        .expect("run llmux");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code(), text(&out.stdout), text(&out.stderr))
}

/// Writes `text` as a config file and runs `llmux CMD --config FILE ARGS`.
fn llmux_with(cmd: &str, text: &str, args: &[&str]) -> (Option<i32>, String, String, String) {
    let dir = temp_dir();
    let path = dir.0.join("llmux.json");
    std::fs::write(&path, text).expect("write config");
    let p = path.to_str().expect("utf-8 path").to_owned();
    let (code, out, err) = llmux(&[&[cmd, "--config", &p], args].concat());
    (code, out, err, p)
}

#[test]
fn one_file_configures_the_library_and_the_gateway() {
    let a = MockServer::start("a", Behavior::default()).expect("mock");
    let cfg = config(&[("openai", &a)], keyed());
    let text = serde_json::to_string_pretty(&cfg).expect("json");
    // The library skips the gateway section (it refused it: issue 19).
    llmux::Engine::from_json(&text).expect("the library loads the gateway's file");
    let gw = start(&cfg, &[]);
    let reply = rt().block_on(async {
        client()
            .post(format!("{}/v1/chat/completions", gw.url))
            .bearer_auth(KEY)
            .json(&chat(false))
            .send()
            .await
            .expect("send")
            .json::<Value>()
            .await
            .expect("json")
    });
    assert_eq!(reply["choices"][0]["message"]["content"], "Hello from a.");
}

/// A pretty-printed config with `line7` as its line 7 and `gateway` as
/// line 10.
fn pretty_config(line7: &str, gateway: &str) -> String {
    [
        "{",
        "  \"providers\": [",
        "    {\"slug\": \"a\", \"protocol\": \"openai\", \"base_url\": \"http://127.0.0.1:9/v1\"}",
        "  ],",
        "  \"models\": [",
        "    {\"slug\": \"v/m\", \"endpoints\": [",
        line7,
        "    ]}",
        "  ],",
        gateway,
        "}",
    ]
    .join("\n")
}

#[test]
fn check_reports_each_problem_once_at_its_line_and_column() {
    let text = pretty_config(
        "      {\"provider\": \"a\", \"upstream_modle\": \"x\"}",
        "  \"gateway\": {\"listen\": \"127.0.0.1:4000\", \"keyz\": []}",
    );
    let (code, out, _, path) = llmux_with("check", &text, &[]);
    assert_eq!(code, Some(1));
    assert_eq!(
        out,
        format!(
            "{path}: 2 error(s)\n  models[0].endpoints[0].upstream_modle: unknown field `upstream_modle`, \
             expected one of `provider`, `name`, `upstream_model`, `price`, `context_window`, \
             `expected_first_token_ms`, `max_concurrency`, `region`, `data_policy`, `quantization`, \
             `supported_parameters` at line 7 column 40\n  gateway.keyz: unknown \
             field `keyz`, expected one of `listen`, `keys`, `budgets`, `max_body_bytes`, `drain_ms`, \
             `keepalive_ms`, `health_file`, `limits`, `tls` at line 10 column 48\n"
        )
    );
    // `serve` says the same on stderr.
    let (code, _, err, _) = llmux_with("serve", &text, &[]);
    assert_eq!(code, Some(1));
    assert!(
        err.starts_with(
            "llmux: models[0].endpoints[0].upstream_modle: unknown field `upstream_modle`"
        ),
        "{err}"
    );
    assert!(
        err.contains("at line 7 column 40\nllmux: gateway.keyz: unknown field `keyz`"),
        "{err}"
    );

    // Malformed JSON: one error, not one per section.
    let (_, out, _, path) = llmux_with("check", "{\n  \"models\": [\n}", &[]);
    assert_eq!(
        out,
        format!("{path}: 1 error(s)\n  malformed JSON at line 3 column 1: expected value at line 3 column 1\n")
    );
    // A missing file: one error (there was a bogus `invalid type: null`).
    let (code, out, _) = llmux(&["check", "--config", "/nonexistent/llmux.json"]);
    assert_eq!(code, Some(1));
    assert_eq!(
        out,
        "/nonexistent/llmux.json: 1 error(s)\n  cannot read config file /nonexistent/llmux.json: \
         No such file or directory (os error 2)\n"
    );
    // `{}` was "ok" with nothing to route.
    let (code, out, _, path) = llmux_with("check", "{}", &[]);
    assert_eq!(code, Some(1));
    assert_eq!(
        out,
        format!("{path}: 1 error(s)\n  models: no models configured: a config needs at least one model with an endpoint\n")
    );
}

#[test]
fn a_doubled_endpoint_path_is_refused_and_a_missing_key_warned() {
    let line3 =
        "    {\"slug\": \"a\", \"protocol\": \"openai\", \"base_url\": \"http://127.0.0.1:9/v1\"}";
    let ok_line7 = "      {\"provider\": \"a\", \"upstream_model\": \"x\"}";
    let gateway = "  \"gateway\": {\"listen\": \"127.0.0.1:0\"}";
    let doubled = pretty_config(ok_line7, gateway)
        .replace(line3, &line3.replace("/v1\"", "/v1/chat/completions\""));
    let (code, out, _, path) = llmux_with("check", &doubled, &[]);
    assert_eq!(code, Some(1));
    assert_eq!(
        out,
        format!(
            "{path}: 1 error(s)\n  providers[0].base_url: \"http://127.0.0.1:9/v1/chat/completions\" ends in \
             /chat/completions, but llmux appends /chat/completions itself (protocol \"openai\"): use \
             \"base_url\": \"http://127.0.0.1:9/v1\"\n"
        )
    );
    let keyless = pretty_config(ok_line7, gateway).replace(
        line3,
        &line3.replace("http://127.0.0.1:9/v1", "https://api.example.com/v1"),
    );
    let warning = "providers[0]: provider \"a\" has no api_key or api_key_env: requests to \
                   https://api.example.com/v1/chat/completions will carry no key (set api_key_env to \
                   the variable holding it)";
    let (code, out, _, path) = llmux_with("check", &keyless, &[]);
    assert_eq!(code, Some(0));
    assert!(
        out.starts_with(&format!(
            "{path}: ok\n  warning: {warning}\ngateway: listen"
        )),
        "{out}"
    );
    // `serve` says it on stderr when it starts.
    let dir = temp_dir();
    let file = dir.0.join("llmux.json");
    std::fs::write(&file, &keyless).expect("write config");
    let mut child = Command::new(env!("CARGO_BIN_EXE_llmux"))
        .args(["serve", "--log-format", "off", "--config"])
        .arg(&file)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn llmux");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read stdout");
    assert!(
        line.starts_with("llmux: listening on http://127.0.0.1:"),
        "{line}"
    );
    signal(&child, "TERM");
    let out = child.wait_with_output().expect("wait");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with(&format!("llmux: warning: {warning}\n")),
        "{err}"
    );
}

#[test]
fn help_version_and_unknown_commands() {
    for args in [
        &["--help"][..],
        &["-h"],
        &["help"],
        &["serve", "--help"],
        &["route", "-h"],
    ] {
        let (code, out, err) = llmux(args);
        assert_eq!(code, Some(0), "{args:?}: {err}");
        assert!(
            out.contains("usage:\n  llmux serve --config FILE") && out.contains("commands:"),
            "{args:?}: {out}"
        );
    }
    for args in [&["--version"][..], &["-V"]] {
        let (code, out, _) = llmux(args);
        assert_eq!(code, Some(0));
        assert_eq!(out, format!("llmux {}\n", env!("CARGO_PKG_VERSION")));
    }
    let (code, out, err) = llmux(&["srve"]);
    assert_eq!((code, out.as_str()), (Some(2), ""));
    assert_eq!(
        err,
        "llmux: unknown command `srve`: the commands are serve, check and route\n\
         llmux: run `llmux --help` for the commands and their options\n"
    );
}

#[test]
fn listen_takes_host_names_and_names_one_that_does_not_resolve() {
    let a = MockServer::start("a", Behavior::default()).expect("mock");
    let cfg = config(&[("openai", &a)], json!({}));
    let gw = start(&cfg, &["--listen", "localhost:0"]);
    assert!(gw.url.starts_with("http://127.0.0.1:"), "{}", gw.url);
    let text = cfg.to_string();
    let (code, _, err, _) = llmux_with("serve", &text, &["--listen", "nosuch.invalid:4000"]);
    assert_eq!(code, Some(1));
    assert!(
        err.starts_with("llmux: --listen: `nosuch.invalid:4000`: cannot resolve the host name `nosuch.invalid`: "),
        "{err}"
    );
    let (_, _, err, _) = llmux_with("serve", &text, &["--listen", "localhost"]);
    assert_eq!(
        err,
        "llmux: --listen: `localhost` is not an address such as 127.0.0.1:4000 or localhost:4000 (the port is missing)\n"
    );
    let mut named = cfg.clone();
    named["gateway"] = json!({"listen": "nosuch.invalid:4000"});
    let (code, out, _, _) = llmux_with("check", &named.to_string(), &[]);
    assert_eq!(code, Some(1));
    assert!(out.contains("\n  gateway.listen: `nosuch.invalid:4000`: cannot resolve the host name `nosuch.invalid`: "), "{out}");
}

#[test]
fn a_closed_stdout_ends_route_and_check_quietly() {
    let a = MockServer::start("a", Behavior::default()).expect("mock");
    let dir = temp_dir();
    let path = dir.0.join("llmux.json");
    std::fs::write(&path, config(&[("openai", &a)], json!({})).to_string()).expect("write");
    for args in [
        &["route", "demo/chat", "--json"][..],
        &["route", "demo/chat"],
        &["check"],
        &["--help"],
    ] {
        // `llmux route --json | head -1`: the reader is gone before the output.
        let mut child = Command::new(env!("CARGO_BIN_EXE_llmux"))
            .args(&args[..1])
            .arg("--config")
            .arg(&path)
            .args(&args[1..])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn llmux");
        drop(child.stdout.take());
        let out = child.wait_with_output().expect("wait");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_ne!(out.status.code(), Some(101), "{args:?}: {err}");
        assert!(out.status.success(), "{args:?}: {:?} {err}", out.status);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

/// A server that answers every request with a 501 HTML page (a web server
/// where an API was expected).
fn html_server() -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        let page = "<!DOCTYPE HTML>\n<html><head><title>Error response</title></head>\
                    <body><h1>Error response</h1><p>Error code: 501</p></body></html>\n";
        for s in listener.incoming() {
            let Ok(mut s) = s else { continue };
            let mut buf = [0u8; 65536];
            let _ = s.read(&mut buf);
            let _ = write!(
                s,
                "HTTP/1.1 501 Unsupported method\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{page}",
                page.len()
            );
        }
    });
    addr
}

/// Four models, one per failure: `t/key` (the provider refuses llmux's
/// key), `t/dead` (nothing listens), `t/html` (an HTML error page), `t/cut`
/// (the stream is cut after two content events).
fn failing_config(keyed: &MockServer, cut: &MockServer) -> Value {
    let dead = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let dead_port = dead.local_addr().expect("addr").port();
    drop(dead);
    let html = html_server();
    let ep = |p: &str| json!([{"provider": p, "upstream_model": "m", "price": {"prompt": 1.0, "completion": 1.0}}]);
    json!({
        "providers": [
            {"slug": "openai", "protocol": "openai", "base_url": format!("{}/v1", keyed.base_url()), "api_key": "stale-key"},
            {"slug": "dead", "protocol": "openai", "base_url": format!("http://127.0.0.1:{dead_port}/v1"), "api_key": "k"},
            {"slug": "html", "protocol": "openai", "base_url": format!("http://{html}/v1"), "api_key": "k"},
            {"slug": "cutter", "protocol": "anthropic", "base_url": cut.base_url(), "api_key": "k"},
        ],
        "models": [
            {"slug": "t/key", "endpoints": ep("openai")}, {"slug": "t/dead", "endpoints": ep("dead")},
            {"slug": "t/html", "endpoints": ep("html")}, {"slug": "t/cut", "endpoints": ep("cutter")},
        ],
        "retry": {"max_retries": 0},
        "gateway": {},
    })
}

/// A request in each caller protocol: (path, body).
fn in_each_protocol(model: &str, stream: bool) -> [(&'static str, Value); 3] {
    let msgs = json!([{"role": "user", "content": "hi"}]);
    [
        (
            "/v1/chat/completions",
            json!({"model": model, "stream": stream, "messages": msgs}),
        ),
        (
            "/v1/messages",
            json!({"model": model, "stream": stream, "max_tokens": 20, "messages": msgs}),
        ),
        (
            "/v1/responses",
            json!({"model": model, "stream": stream, "input": "hi"}),
        ),
    ]
}

/// Issue 19: every upstream failure reaches the caller as one sentence
/// naming the provider and endpoint, in every caller protocol, with one
/// outcome name in the body, the log line and the metrics.
#[test]
fn upstream_failures_name_the_provider_in_every_protocol() {
    let keyed = MockServer::start(
        "keyed",
        Behavior {
            require_key: Some("right-key".into()),
            ..Default::default()
        },
    )
    .expect("mock");
    let cut = MockServer::start(
        "cut",
        Behavior {
            fault: llmux_fleet::Fault::DropAfter(2),
            ..Default::default()
        },
    )
    .expect("mock");
    let gw = start(&failing_config(&keyed, &cut), &[]);
    let cases = [
        ("t/key", 502, "auth_rejected", "provider \"openai\" (endpoint openai/default) rejected llmux's API key for it (HTTP 401): check providers[].api_key (or api_key_env) of \"openai\"; the provider said: invalid or missing API key"),
        ("t/html", 501, "server_error", "provider \"html\" (endpoint html/default) returned an HTML page titled \"Error response\" (HTTP 501), not an API response: is base_url right?"),
    ];
    rt().block_on(async {
        let c = client();
        for (model, status, outcome, text) in cases {
            for (path, body) in in_each_protocol(model, false) {
                let r = c.post(format!("{}{path}", gw.url)).json(&body).send().await.expect("send");
                assert_eq!(r.status(), status, "{model} {path}");
                // The outcome, whatever the envelope family.
                assert_eq!(r.headers()["x-llmux-outcome"], outcome, "{model} {path}");
                let v: Value = r.json().await.expect("json");
                assert_eq!(v["error"]["message"], text, "{model} {path}: {v}");
                if path == "/v1/messages" {
                    assert_eq!(v["error"]["type"], "api_error", "{v}");
                } else {
                    assert_eq!(v["error"]["code"], outcome, "{v}");
                }
            }
            let line = gw.wait_log(|l| l["model"] == model);
            assert_eq!(line["outcome"], outcome, "{line}");
            assert_eq!(line["status"], status);
            assert_eq!(line["error"], text);
            assert!(line["endpoint"].as_str().unwrap_or("").ends_with("/default"), "{line}");
        }
        // The dead endpoint: the port differs run to run.
        let r = c.post(format!("{}/v1/chat/completions", gw.url)).json(&in_each_protocol("t/dead", false)[0].1).send().await.expect("send");
        assert_eq!(r.status(), 502);
        let v: Value = r.json().await.expect("json");
        let msg = v["error"]["message"].as_str().unwrap_or("");
        assert!(msg.starts_with("provider \"dead\" (endpoint dead/default) refused the connection at 127.0.0.1:"), "{msg}");
        assert!(msg.ends_with(": is the server running, and is base_url right?"), "{msg}");
        assert_eq!(v["error"]["code"], "connect_error");
        // The cut stream, in each protocol's stream shape.
        for (path, body) in in_each_protocol("t/cut", true) {
            let text = c.post(format!("{}{path}", gw.url)).json(&body).send().await.expect("send").text().await.expect("body");
            assert!(text.contains("provider \\\"cutter\\\" (endpoint cutter/default): the connection closed mid-stream after "), "{path}: {text}");
            assert!(!text.contains("error decoding response body"), "{text}");
        }
        let text = gw.metrics().await;
        for want in [
            r#"llmux_failed_attempts_total{endpoint="openai/default",outcome="auth_rejected"} 3"#,
            r#"llmux_failed_attempts_total{endpoint="cutter/default",outcome="connection_closed"} 3"#,
            r#"llmux_failed_attempts_total{endpoint="dead/default",outcome="connect_error"} 1"#,
        ] {
            assert!(text.contains(want), "{want} missing from\n{text}");
        }
        assert!(!text.contains("transport_error") && !text.contains("http_error"), "{text}");
    });
    // One name for a stream cut: in the log line for all three protocols.
    let cuts: Vec<Value> = gw
        .log_lines()
        .into_iter()
        .filter(|l| l["model"] == "t/cut")
        .collect();
    assert_eq!(cuts.len(), 3, "{cuts:?}");
    for l in &cuts {
        assert_eq!(l["outcome"], "connection_closed", "{l}");
        assert_eq!(l["endpoint"], "cutter/default");
    }
}

/// Issue 19: a request refused before routing writes one log line with
/// its reason (never a key) and counts in `llmux_rejected_total`; an
/// unknown route echoes the method and path and suggests the base URL.
#[test]
fn rejected_requests_are_logged_counted_and_explained() {
    let a = MockServer::start("a", Behavior::default()).expect("mock");
    let mut cfg = config(
        &[("openai", &a)],
        json!({"keys": [{"env": KEY_ENV, "name": "tests"}], "max_body_bytes": 4000}),
    );
    cfg["models"][0]["endpoints"][0]["context_window"] = json!(50);
    let gw = start(&cfg, &[]);
    let url = |p: &str| format!("{}{p}", gw.url);
    let host = gw.url.trim_start_matches("http://").to_owned();
    rt().block_on(async {
        let c = client();
        let post = |p: &str, body: String| c.post(url(p)).bearer_auth(KEY).header("content-type", "application/json").body(body);
        let cases: Vec<(reqwest::RequestBuilder, u16, &str, String)> = vec![
            (c.post(url("/v1/chat/completions")).bearer_auth("wrong-secret-key").json(&chat(false)), 401, "unauthorized", "invalid API key".into()),
            (post("/v1/chat/completions", "{not json".into()), 400, "invalid_json", "request is not valid JSON".into()),
            (post("/v1/chat/completions", json!({"model": "nope/x", "messages": []}).to_string()), 404, "unknown_model", "unknown model \"nope/x\"".into()),
            (post("/v1/chat/completions", json!({"model": "demo/chat", "messages": [{"role": "user", "content": "word ".repeat(400)}]}).to_string()), 400, "context_window", "exceeds the context window".into()),
            (post("/v1/chat/completions", "x".repeat(5000)), 413, "body_too_large", "larger than 4000 bytes".into()),
            (post("/v1/embeddings", "{}".into()), 404, "unknown_route", "no route for POST /v1/embeddings: llmux does not serve embeddings; llmux serves POST /v1/chat/completions".into()),
            (post("/chat/completions", "{}".into()), 404, "unknown_route", format!("no route for POST /chat/completions: did you mean /v1/chat/completions? Set the base URL to http://{host}/v1")),
            (post("/v1/v1/messages", "{}".into()), 404, "unknown_route", format!("no route for POST /v1/v1/messages: did you mean /v1/messages? The base URL has /v1 twice: set it to http://{host}")),
            (c.get(url("/v1/chat/completions")).bearer_auth(KEY), 405, "method_not_allowed", "/v1/chat/completions takes POST, not GET".into()),
        ];
        for (rb, status, reason, text) in cases {
            let r = rb.send().await.expect("send");
            assert_eq!(r.status(), status, "{reason}");
            assert_eq!(r.headers()["x-llmux-outcome"], reason);
            let v: Value = r.json().await.expect("json");
            let msg = v["error"]["message"].as_str().unwrap_or("");
            assert!(msg.contains(&text), "{reason}: {msg}");
            let line = gw.wait_log(|l| {
                l["outcome"] == reason && l["error"].as_str().unwrap_or("").contains(&text)
            });
            assert_eq!(line["status"], status, "{line}");
            assert!(line["id"].is_null());
        }
        let line = gw.wait_log(|l| l["outcome"] == "unknown_route" && l["route"] == "POST /v1/embeddings");
        assert_eq!(line["status"], 404);
        let line = gw.wait_log(|l| l["outcome"] == "unknown_model");
        assert_eq!(line["model"], "nope/x");
        let text = gw.metrics().await;
        for reason in ["unauthorized", "invalid_json", "unknown_model", "context_window", "body_too_large"] {
            let want = format!("llmux_rejected_total{{reason=\"{reason}\"}} 1");
            assert!(text.contains(&want), "{want} missing from\n{text}");
        }
        assert!(text.contains("llmux_rejected_total{reason=\"unknown_route\"} 3"), "{text}");
        // A served non-streaming request: the listing shows its response time.
        let r = c.post(url("/v1/chat/completions")).bearer_auth(KEY).json(&chat(false)).send().await.expect("send");
        assert_eq!(r.status(), 200);
        let v: Value = c.get(url("/api/v1/models")).bearer_auth(KEY).send().await.expect("send").json().await.expect("json");
        let ep = &v["data"][0]["endpoints"][0];
        assert!(ep["response_ms"].as_f64().is_some_and(|ms| ms > 0.0), "{ep}");
        assert!(ep.get("first_token_ms").is_some(), "{ep}");
    });
    // The served request's line is written after its response: wait for it.
    gw.wait_log(|l| l["msg"] == "request" && l["status"] == 200);
    let log = gw.log.lock().unwrap().clone();
    assert!(
        !log.contains(KEY) && !log.contains("wrong-secret-key"),
        "a key in the log:\n{log}"
    );
    // Every request wrote exactly one line.
    assert_eq!(
        gw.log_lines()
            .iter()
            .filter(|l| l["msg"] == "request")
            .count(),
        10,
        "{log}"
    );
}

/// Issue 22: preferences that leave nothing are a 404 in the caller's
/// envelope before any upstream call; an alias routes; `llmux route
/// --provider` prints what was filtered and why.
#[test]
fn provider_preferences_404_aliases_and_route_explanations() {
    let a = MockServer::start("a", Behavior::default()).expect("mock");
    let b = MockServer::start("b", Behavior::default()).expect("mock");
    let mut cfg = config(&[("openai", &a), ("anthropic", &b)], keyed());
    cfg["models"][0]["aliases"] = json!(["chat-alias"]);
    cfg["models"][0]["endpoints"][0]["data_policy"] = json!({"training": true});
    cfg["models"][0]["endpoints"][1]["region"] = json!("eu-west");
    let gw = start(&cfg, &[]);
    rt().block_on(async {
        let c = client();
        let mut body = chat(false);
        body["provider"] = json!({"data_collection": "deny"});
        let r = c
            .post(format!("{}/v1/chat/completions", gw.url))
            .bearer_auth(KEY)
            .json(&body)
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), 404);
        let v: Value = r.json().await.expect("json");
        let msg = v["error"]["message"].as_str().unwrap_or("");
        assert!(
            msg.contains("a/default (data_collection: deny (endpoint trains on data))"),
            "{v}"
        );
        assert!(
            msg.contains("b/default (data_collection: deny (endpoint has no data_policy))"),
            "{v}"
        );
        let mut body = messages(false);
        body["provider"] = json!({"region": "us-east"});
        let r = c
            .post(format!("{}/v1/messages", gw.url))
            .header("x-api-key", KEY)
            .json(&body)
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), 404);
        let v: Value = r.json().await.expect("json");
        assert_eq!(v["type"], "error", "{v}");
        assert_eq!(a.request_count() + b.request_count(), 0);
        let mut body = chat(false);
        body["model"] = json!("chat-alias");
        let r = c
            .post(format!("{}/v1/chat/completions", gw.url))
            .bearer_auth(KEY)
            .json(&body)
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), 200);
    });
    let (ok, text) = run_cmd(&["check"], &cfg);
    assert!(ok, "{text}");
    assert!(text.contains("demo/chat (aliases: chat-alias)"), "{text}");
    assert!(
        text.contains("a/default  upstream up-a") && text.contains("trains on data"),
        "{text}"
    );
    assert!(text.contains("region eu-west"), "{text}");
    let (ok, text) = run_cmd(
        &[
            "route",
            "chat-alias",
            "--provider",
            r#"{"region":"eu-west"}"#,
        ],
        &cfg,
    );
    assert!(ok, "{text}");
    assert!(text.contains("1. b/default"), "{text}");
    assert!(
        text.contains("filtered: a/default (region: not in [eu-west] (endpoint has no region))"),
        "{text}"
    );
}
