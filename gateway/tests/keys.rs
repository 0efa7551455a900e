//! Keys with budgets, rate limits, concurrency and model access, on real
//! `llmux serve` processes in front of the mock fleet: one gateway alone
//! (its spend journaled across a SIGKILL), and three gateways sharing one
//! real `redis-server` started here (budget under 300 concurrent requests,
//! rpm and concurrency fleet-wide, a killed gateway's reservations, Redis
//! restarted mid-run).

use llmux_fleet::{Behavior, MockServer};
use serde_json::{json, Value};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const PASSWORD: &str = "fake-redis-password-for-keys-tests";

mod common;

use common::{rt, serve, temp_dir, Gateway, TempDir};

/// Keys of the tests: obviously fake values in environment variables.
const KEYS: &[(&str, &str)] = &[
    ("LLMUX_TEST_KEY_ADMIN", "admin-key-not-a-secret"),
    ("LLMUX_TEST_KEY_TEAM", "team-key-not-a-secret"),
    ("LLMUX_TEST_KEY_SMALL", "small-key-not-a-secret"),
];

fn start(cfg: &Value) -> Gateway {
    KEYS.iter()
        .fold(serve(cfg), |serve, (k, v)| serve.env(k, v))
        .start()
}

/// Models `demo/chat` and `other/chat` on one mock server; per million
/// tokens $1,000 prompt and $2,000 completion, so one mock reply (10 + 5
/// tokens) costs $0.02.
fn config(s: &MockServer, keys: Value, extra: Value) -> Value {
    let ep = json!({"provider": "m", "upstream_model": "up", "price": {"prompt": 1000.0, "completion": 2000.0}});
    let mut cfg = json!({
        "providers": [{"slug": "m", "protocol": "openai", "base_url": format!("{}/v1", s.base_url()), "api_key": "upstream-fake-key"}],
        "models": [{"slug": "demo/chat", "endpoints": [ep]}, {"slug": "other/chat", "endpoints": [ep]}],
        "retry": {"max_retries": 0},
        "gateway": {"keys": keys},
    });
    for (k, v) in extra.as_object().into_iter().flatten() {
        if k == "budgets" {
            cfg["gateway"]["budgets"] = v.clone();
        } else {
            cfg[k] = v.clone();
        }
    }
    cfg
}

fn key(i: usize) -> &'static str {
    KEYS[i].1
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(64)
        .build()
        .expect("client")
}

fn chat(model: &str) -> Value {
    json!({"model": model, "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]})
}

/// (status, headers, body)
async fn post(
    c: &reqwest::Client,
    url: &str,
    path: &str,
    k: &str,
    body: &Value,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let r = c
        .post(format!("{url}{path}"))
        .bearer_auth(k)
        .header("anthropic-version", "2023-06-01")
        .json(body)
        .send()
        .await
        .expect("send");
    let (s, h) = (r.status().as_u16(), r.headers().clone());
    let text = r.text().await.unwrap_or_default();
    (
        s,
        h,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn get(c: &reqwest::Client, url: &str, path: &str, k: &str) -> (u16, Value) {
    let r = c
        .get(format!("{url}{path}"))
        .bearer_auth(k)
        .send()
        .await
        .expect("send");
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

fn cost(h: &reqwest::header::HeaderMap) -> f64 {
    h.get("x-llmux-cost-usd")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn config_mistakes_name_their_json_path() {
    let s = MockServer::start("m", Behavior::default()).expect("mock");
    let keys = json!([{"env": KEYS[1].0, "name": "team", "models": ["nope/*"],
        "budget": {"usd": -1, "period": "fortnight"}, "limits": {"rpm": 0}, "provider": {"zdr": "yes"}}]);
    let dir = temp_dir();
    let path = dir.0.join("bad.json");
    std::fs::write(&path, config(&s, keys, json!({})).to_string()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_llmux"))
        .args(["check", "--config"])
        .arg(&path)
        .envs(KEYS.iter().copied())
        .output()
        .expect("run");
    let err =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{err}");
    for p in [
        "gateway.keys[0].budget.usd",
        "gateway.keys[0].budget.period",
        "gateway.keys[0].limits.rpm",
        "gateway.keys[0].provider.zdr",
    ] {
        assert!(err.contains(p), "no error at {p} in:\n{err}");
    }
    assert!(err.contains("fortnight"), "{err}");
    // The model pattern is checked once the rest is right.
    let keys = json!([{"env": KEYS[1].0, "name": "team", "models": ["demo/chat", "nope/*"]}]);
    std::fs::write(&path, config(&s, keys, json!({})).to_string()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_llmux"))
        .args(["check", "--config"])
        .arg(&path)
        .envs(KEYS.iter().copied())
        .output()
        .expect("run");
    let err =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(
        err.contains("gateway.keys[0].models[1]: `nope/*` matches no model"),
        "{err}"
    );
}

#[test]
fn model_access_budget_and_rate_limits_answer_in_each_envelope() {
    let s = MockServer::start("m", Behavior::default()).expect("mock");
    let keys = json!([
        {"env": KEYS[0].0, "name": "admin", "admin": true},
        {"env": KEYS[1].0, "name": "team", "models": ["demo/*"], "limits": {"rpm": 3}, "metadata": {"team": "a"}},
        {"env": KEYS[2].0, "name": "small", "budget": {"usd": 0.05, "period": "day"}},
    ]);
    let g = start(&config(&s, keys, json!({})));
    let c = client();
    rt().block_on(async {
        // 403 for a model the key may not call, in each protocol's envelope.
        for (path, body, ty) in [
            ("/v1/chat/completions", chat("other/chat"), "/error/type"),
            ("/v1/messages", chat("other/chat"), "/error/type"),
            (
                "/v1/responses",
                json!({"model": "other/chat", "input": "hi"}),
                "/error/type",
            ),
        ] {
            let (st, h, b) = post(&c, &g.url, path, key(1), &body).await;
            assert_eq!(st, 403, "{path}: {b}");
            assert_eq!(h["x-should-retry"], "false");
            assert_eq!(
                b.pointer(ty).and_then(Value::as_str),
                Some("permission_error"),
                "{path}: {b}"
            );
            assert!(
                b.to_string()
                    .contains("may not call the model `other/chat`"),
                "{b}"
            );
        }
        // The listings show only what the key may call.
        let (_, m) = get(&c, &g.url, "/v1/models", key(1)).await;
        let ids: Vec<&str> = m["data"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|m| m["id"].as_str())
            .collect();
        assert_eq!(ids, ["demo/chat"]);
        let (st, _, _) = post(
            &c,
            &g.url,
            "/v1/messages/count_tokens",
            key(1),
            &chat("other/chat"),
        )
        .await;
        assert_eq!(st, 403);
        // rpm 3: the fourth is a 429 with an exact Retry-After.
        for _ in 0..3 {
            let (st, _, b) = post(
                &c,
                &g.url,
                "/v1/chat/completions",
                key(1),
                &chat("demo/chat"),
            )
            .await;
            assert_eq!(st, 200, "{b}");
        }
        let (st, h, b) = post(&c, &g.url, "/v1/messages", key(1), &chat("demo/chat")).await;
        assert_eq!(st, 429, "{b}");
        assert_eq!(h["x-should-retry"], "true");
        assert_eq!(b["error"]["type"], "rate_limit_error");
        let ra: u64 = h["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((58..=60).contains(&ra), "retry-after {ra}");
        // $0.05 a day: two $0.02 replies fit, a third (reserving $0.028) does not.
        let mut spent = 0.0;
        for stream in [false, true] {
            let mut body = chat("demo/chat");
            body["stream"] = json!(stream);
            let (st, h, b) = post(&c, &g.url, "/v1/chat/completions", key(2), &body).await;
            assert_eq!(st, 200, "{b}");
            spent += if stream { 0.02 } else { cost(&h) };
        }
        for (path, ty) in [
            ("/v1/messages", "billing_error"),
            ("/v1/chat/completions", "insufficient_quota"),
            ("/v1/responses", "insufficient_quota"),
        ] {
            let body = if path == "/v1/responses" {
                json!({"model": "demo/chat", "input": "hi", "max_output_tokens": 10})
            } else {
                chat("demo/chat")
            };
            let (st, h, b) = post(&c, &g.url, path, key(2), &body).await;
            assert_eq!(st, 402, "{path}: {b}");
            assert_eq!(h["x-should-retry"], "false");
            assert_eq!(b["error"]["type"], ty, "{b}");
            assert!(b.to_string().contains("budget exhausted"), "{b}");
        }
        // What the key sees of itself, and what an admin sees of all.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (st, k) = get(&c, &g.url, "/api/v1/key", key(2)).await;
        assert_eq!(st, 200);
        let d = &k["data"];
        assert_eq!(d["label"], "small");
        assert!((d["usage"].as_f64().unwrap() - spent).abs() < 1e-6, "{d}");
        assert_eq!(d["limit"], 0.05);
        assert!(
            (d["limit_remaining"].as_f64().unwrap() - (0.05 - spent)).abs() < 1e-6,
            "{d}"
        );
        assert_eq!(d["period"], "day");
        assert!(d["reset"].as_str().unwrap().ends_with("T00:00:00Z"), "{d}");
        let (st, _) = get(&c, &g.url, "/api/v1/keys", key(1)).await;
        assert_eq!(st, 403);
        let (st, all) = get(&c, &g.url, "/api/v1/keys", key(0)).await;
        assert_eq!(st, 200, "{all}");
        let team = all["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["name"] == "team")
            .unwrap()
            .clone();
        assert_eq!(team["current"]["requests"], 3);
        assert_eq!(team["current"]["rejections"], 1, "{team}");
        assert_eq!(team["metadata"]["team"], "a");
        let small = all["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["name"] == "small")
            .unwrap()
            .clone();
        assert_eq!(small["current"]["rejections"], 3, "{small}");
        // Metrics go by name, never by key.
        let text = g.metrics().await;
        assert!(
            text.contains(
                "llmux_key_rejections_total{key=\"small\",reason=\"budget_exhausted\"} 3"
            ),
            "{text}"
        );
        assert!(!KEYS.iter().any(|(_, v)| text.contains(v)));
    });
    // Log lines carry the key name and the reserved and settled cost.
    let lines = g.log_lines();
    let served = lines
        .iter()
        .find(|l| l["key"] == "small" && l["status"] == 200)
        .expect("a served line");
    assert!(served["reserved_usd"].as_f64().unwrap() >= 0.02, "{served}");
    assert!(
        (served["settled_usd"].as_f64().unwrap() - 0.02).abs() < 1e-9,
        "{served}"
    );
    let refused = lines
        .iter()
        .find(|l| l["key"] == "small" && l["status"] == 402)
        .expect("a 402 line");
    assert_eq!(refused["outcome"], "budget_exhausted");
    assert!(!g.log.lock().unwrap().contains("not-a-secret"));
}

#[test]
fn one_gateway_keeps_its_spend_across_sigkill() {
    let s = MockServer::start("m", Behavior::default()).expect("mock");
    let dir = temp_dir();
    let journal = dir.0.join("spend.jsonl");
    let keys =
        json!([{"env": KEYS[1].0, "name": "team", "budget": {"usd": 10, "period": "month"}}]);
    let cfg = config(&s, keys, json!({"budgets": {"file": journal}}));
    let c = client();
    let before = {
        let mut g = start(&cfg);
        let u = rt().block_on(async {
            for _ in 0..5 {
                let (st, _, b) = post(
                    &c,
                    &g.url,
                    "/v1/chat/completions",
                    key(1),
                    &chat("demo/chat"),
                )
                .await;
                assert_eq!(st, 200, "{b}");
            }
            get(&c, &g.url, "/api/v1/key", key(1)).await.1
        });
        g.child.kill().expect("SIGKILL");
        let _ = g.child.wait();
        u
    };
    assert!(
        (before["data"]["usage"].as_f64().unwrap() - 0.1).abs() < 1e-9,
        "{before}"
    );
    let g = start(&cfg);
    let after = rt().block_on(get(&c, &g.url, "/api/v1/key", key(1))).1;
    assert_eq!(after["data"]["usage"], before["data"]["usage"], "{after}");
}

// ---------------------------------------------------------------------------
// three gateways, one redis-server

struct Redis {
    port: u16,
    dir: TempDir,
    proc: Option<Child>,
}

impl Redis {
    fn start() -> Redis {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = l.local_addr().unwrap().port();
        drop(l);
        let mut r = Redis {
            port,
            dir: temp_dir(),
            proc: None,
        };
        r.up();
        r
    }

    fn up(&mut self) {
        let bin = ["redis-server", "valkey-server"]
            .into_iter()
            .find(|b| {
                Command::new(b)
                    .arg("--version")
                    .stdout(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success())
            })
            .expect("redis-server or valkey-server on PATH (scripts/setup installs it)");
        let child = Command::new(bin)
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--save",
                "",
                "--appendonly",
                "no",
                "--requirepass",
                PASSWORD,
            ])
            .arg("--dir")
            .arg(&self.dir.0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.proc = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn down(&mut self) {
        if let Some(mut p) = self.proc.take() {
            let _ = p.kill();
            let _ = p.wait();
        }
    }

    fn url(&self) -> String {
        format!("redis://:{PASSWORD}@127.0.0.1:{}/0", self.port)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.down();
    }
}

fn fleet(s: &MockServer, r: &Redis, keys: Value, budgets: Value) -> Vec<Gateway> {
    let extra = json!({"shared": {"redis_url": r.url(), "sync_ms": 200, "timeout_ms": 3000, "key_prefix": "llmux-keys-test:"}, "budgets": budgets});
    let cfg = config(s, keys, extra);
    (0..3).map(|_| start(&cfg)).collect()
}

/// `n` requests spread over the gateways at once: (status, cost) each.
async fn burst(gs: &[Gateway], n: usize, k: &str, body: Value) -> Vec<(u16, f64, Option<String>)> {
    let c = client();
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let (c, url, k, body) = (
                c.clone(),
                gs[i % gs.len()].url.clone(),
                k.to_owned(),
                body.clone(),
            );
            tokio::spawn(async move {
                let (st, h, _) = post(&c, &url, "/v1/chat/completions", &k, &body).await;
                let ra = h
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                (st, cost(&h), ra)
            })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.expect("task"));
    }
    out
}

async fn spent(g: &Gateway, name: &str) -> Value {
    let (_, all) = get(&client(), &g.url, "/api/v1/keys", key(0)).await;
    all["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == name)
        .cloned()
        .unwrap_or(Value::Null)
}

#[test]
fn three_gateways_share_budget_rpm_and_concurrency_on_redis() {
    let r = Redis::start();
    let s = MockServer::start("m", Behavior::default()).expect("mock");
    let keys = json!([
        {"env": KEYS[0].0, "name": "admin", "admin": true},
        {"env": KEYS[1].0, "name": "team", "limits": {"rpm": 60}},
        {"env": KEYS[2].0, "name": "small", "budget": {"usd": 1.0, "period": "total"}, "limits": {"concurrent": 4}},
    ]);
    let gs = fleet(&s, &r, keys, json!({"reservation_ttl_ms": 1500}));
    rt().block_on(async {
        // 300 concurrent requests against $1: never more than $1 spent
        // (every reply costs less than its reservation), and the ledger is
        // the sum of what was served. concurrent: 4 holds meanwhile.
        let mut body = chat("demo/chat");
        body["mock"] = json!({"first_token_delay_ms": 20});
        s.reset_max_in_flight();
        let out = burst(&gs, 300, key(2), body).await;
        let served: f64 = out.iter().filter(|o| o.0 == 200).map(|o| o.1).sum();
        let ok = out.iter().filter(|o| o.0 == 200).count();
        assert!(
            out.iter().all(|o| [200, 402, 429].contains(&o.0)),
            "{out:?}"
        );
        assert!(
            s.max_in_flight() <= 4,
            "{} in flight at once",
            s.max_in_flight()
        );
        assert!(served <= 1.0 + 1e-9, "served ${served}");
        tokio::time::sleep(Duration::from_millis(300)).await;
        let led = spent(&gs[0], "small").await;
        let ledger = led["current"]["spent_usd"].as_f64().unwrap();
        assert!(
            (ledger - served).abs() < 0.005,
            "ledger ${ledger}, served ${served} ({ok} requests)"
        );
        assert_eq!(led["reserved"], 0.0, "{led}");
        // Spend the budget down to the last reservation, then see the 402.
        loop {
            let out = burst(&gs, 6, key(2), chat("demo/chat")).await;
            if out.iter().any(|o| o.0 == 402) {
                break;
            }
        }
        let led = spent(&gs[1], "small").await;
        assert!(
            led["current"]["spent_usd"].as_f64().unwrap() <= 1.0 + 1e-9,
            "{led}"
        );
        // rpm 60 across the three: exactly 60 of 90 pass within the minute.
        let out = burst(&gs, 90, key(1), chat("demo/chat")).await;
        let ok = out.iter().filter(|o| o.0 == 200).count();
        assert_eq!(ok, 60, "{out:?}");
        assert!(out.iter().filter(|o| o.0 == 429).all(|o| o
            .2
            .as_deref()
            .is_some_and(|v| v.parse::<u64>().is_ok_and(|s| (1..=60).contains(&s)))));
    });
}

#[test]
fn killed_gateways_reservations_free_and_redis_restart_counts_nothing_twice() {
    let mut r = Redis::start();
    let s = MockServer::start("m", Behavior::default()).expect("mock");
    let keys = json!([
        {"env": KEYS[0].0, "name": "admin", "admin": true},
        {"env": KEYS[2].0, "name": "small", "budget": {"usd": 100.0, "period": "total"}, "limits": {"concurrent": 2}},
    ]);
    let mut gs = fleet(&s, &r, keys, json!({"reservation_ttl_ms": 1500}));
    let rt = rt();
    // Two slow requests through the first gateway hold both slots; kill it.
    let url = gs[0].url.clone();
    let mut body = chat("demo/chat");
    body["mock"] = json!({"first_token_delay_ms": 30_000});
    for _ in 0..2 {
        let (url, body) = (url.clone(), body.clone());
        // The gateway dies under it: the answer is a broken connection.
        rt.spawn(async move {
            client()
                .post(format!("{url}/v1/chat/completions"))
                .bearer_auth(key(2))
                .json(&body)
                .send()
                .await
                .is_err()
        });
    }
    assert!(s.wait_for_requests(2, Duration::from_secs(10)));
    let (st, _, _) = rt.block_on(post(
        &client(),
        &gs[1].url,
        "/v1/chat/completions",
        key(2),
        &chat("demo/chat"),
    ));
    assert_eq!(st, 429, "both slots are held");
    let mut dead = gs.remove(0);
    dead.child.kill().expect("SIGKILL");
    let _ = dead.child.wait();
    let killed = Instant::now();
    // Within the reservation TTL (1.5 s) the slots are free again.
    let freed = loop {
        let (st, _, _) = rt.block_on(post(
            &client(),
            &gs[0].url,
            "/v1/chat/completions",
            key(2),
            &chat("demo/chat"),
        ));
        if st == 200 {
            break killed.elapsed();
        }
        assert!(
            killed.elapsed() < Duration::from_secs(5),
            "reservations not freed"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    println!("reservations of the killed gateway freed after {freed:?}");
    rt.block_on(async {
        for _ in 0..4 {
            let (st, _, b) = post(
                &client(),
                &gs[1].url,
                "/v1/chat/completions",
                key(2),
                &chat("demo/chat"),
            )
            .await;
            assert_eq!(st, 200, "{b}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    });
    let before = rt.block_on(spent(&gs[0], "small"))["current"]["spent_usd"]
        .as_f64()
        .unwrap();
    assert!((before - 0.1).abs() < 1e-9, "5 served: ${before}");
    // Redis down: a key with a budget fails closed (503), /ready says so.
    r.down();
    let (st, h, b) = rt.block_on(post(
        &client(),
        &gs[0].url,
        "/v1/chat/completions",
        key(2),
        &chat("demo/chat"),
    ));
    assert_eq!(st, 503, "{b}");
    assert!(b.to_string().contains("budget store is unavailable"), "{b}");
    assert!(h.get("retry-after").is_some());
    let ready = rt
        .block_on(client().get(format!("{}/ready", gs[0].url)).send())
        .unwrap();
    assert_eq!(ready.status().as_u16(), 503);
    // Redis back, empty: each gateway re-seeds its own totals with its
    // next request; nothing twice.
    r.up();
    rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let (st, _, b) = post(
                &client(),
                &gs[0].url,
                "/v1/chat/completions",
                key(2),
                &chat("demo/chat"),
            )
            .await;
            if st == 200 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "no recovery after Redis came back: {b}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(
            post(
                &client(),
                &gs[1].url,
                "/v1/chat/completions",
                key(2),
                &chat("demo/chat")
            )
            .await
            .0,
            200
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        let led = spent(&gs[1], "small").await;
        // The live gateways' 5 + 2 requests; the killed one's share is
        // gone with Redis's data (it is not there to re-seed it).
        let v = led["current"]["spent_usd"].as_f64().unwrap();
        assert!((v - 0.14).abs() < 1e-9, "${v}: {led}");
    });
}
