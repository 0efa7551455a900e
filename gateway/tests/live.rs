//! The running gateway's live view as a real process in front of the mock
//! fleet: `GET /v1/route` and `llmux route --url` (the plan the live engine
//! would follow, with what it has measured), and the dashboard's page,
//! assets and state under the API's key rules. The page itself is tested in
//! headless Chromium by `gateway/tests/dashboard/run.sh`.

use llmux_fleet::{Behavior, MockServer};
use serde_json::{json, Value};
use std::process::Command;

mod common;

use common::{catalog, client, provider, rt, serve, Gateway, KEY, KEY_ENV};

/// `demo/chat` on `slow` (prior 10 ms, ranked first before traffic) and
/// `fast` (prior 20 ms).
fn config(slow: &MockServer, fast: &MockServer, gateway: Value) -> Value {
    let e = |s: &MockServer, prior: f64| json!({"provider": s.name(), "upstream_model": "m", "price": {"prompt": 1.0, "completion": 2.0}, "expected_first_token_ms": prior});
    let providers = vec![provider("openai", slow), provider("openai", fast)];
    catalog(providers, vec![e(slow, 10.0), e(fast, 20.0)], gateway)
}

fn start(cfg: &Value) -> Gateway {
    serve(cfg).start()
}

/// `llmux ARGS` with `LLMUX_API_KEY` set to `key` (or unset): success, stdout + stderr.
fn llmux(args: &[&str], key: Option<&str>) -> (bool, String) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_llmux"));
    c.args(args).env_remove("LLMUX_API_KEY");
    if let Some(k) = key {
        c.env("LLMUX_API_KEY", k);
    }
    let out = c.output().expect("run llmux");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn get(url: &str, key: Option<&str>) -> (u16, reqwest::header::HeaderMap, String) {
    rt().block_on(async {
        let mut r = client().get(url);
        if let Some(k) = key {
            r = r.bearer_auth(k);
        }
        let resp = r.send().await.expect("GET");
        let (status, headers) = (resp.status().as_u16(), resp.headers().clone());
        (status, headers, resp.text().await.expect("body"))
    })
}

fn chat(g: &Gateway, stream: bool, key: Option<&str>) -> reqwest::header::HeaderMap {
    rt().block_on(async {
        let mut r = client()
            .post(format!("{}/v1/chat/completions", g.url))
            .json(&common::chat(stream));
        if let Some(k) = key {
            r = r.bearer_auth(k);
        }
        let resp = r.send().await.expect("POST");
        assert_eq!(resp.status(), 200);
        let h = resp.headers().clone();
        resp.bytes().await.expect("body");
        h
    })
}

#[test]
fn route_url_shows_what_the_running_gateway_learned() {
    let slow = MockServer::start(
        "slow",
        Behavior {
            headers_delay_ms: 150,
            ..Behavior::default()
        },
    )
    .expect("mock");
    let fast = MockServer::start("fast", Behavior::default()).expect("mock");
    let cfg = config(&slow, &fast, json!({}));
    let g = start(&cfg);
    // Before traffic both agree: slow first on its prior.
    let (ok, text) = llmux(&["route", "--url", &g.url, "demo/chat"], None);
    assert!(ok, "{text}");
    assert!(
        text.find("1. slow/default").is_some() && text.contains("prior, unmeasured"),
        "{text}"
    );
    // Traffic: slow answers in about 150 ms, the gateway learns it and
    // sends the next request to fast.
    for _ in 0..2 {
        chat(&g, false, None);
    }
    let (ok, live) = llmux(
        &["route", "--url", &format!("{}/", g.url), "demo/chat"],
        None,
    );
    assert!(ok, "{live}");
    let first = live.lines().nth(1).unwrap_or_default();
    assert!(
        first.starts_with("  1. fast/default") && first.contains("(measured)"),
        "{live}"
    );
    let second = live.lines().nth(2).unwrap_or_default();
    assert!(
        second.starts_with("  2. slow/default") && second.contains("(measured)"),
        "{live}"
    );
    // A fresh engine from the config still knows nothing: slow first.
    let path = g.path.clone();
    let (ok, fresh) = llmux(
        &["route", "--config", path.to_str().unwrap(), "demo/chat"],
        None,
    );
    assert!(ok && fresh.contains("1. slow/default"), "{fresh}");
    // --json is the typed plan; --stream plans a stream (unmeasured: prior).
    let (ok, j) = llmux(
        &["route", "--url", &g.url, "demo/chat", "--json", "--stream"],
        None,
    );
    assert!(ok, "{j}");
    let plan: llmux::Plan = serde_json::from_str(&j).expect("typed plan");
    assert_eq!(plan.models[0].candidates[0].endpoint, "slow/default", "{j}");
    assert_eq!(plan.models[0].candidates[0].first_token_ms, None, "{j}");
    // Preferences go through.
    let (ok, p) = llmux(
        &[
            "route",
            "--url",
            &g.url,
            "demo/chat",
            "--provider",
            r#"{"only":["slow"]}"#,
        ],
        None,
    );
    assert!(
        ok && !p.contains("1. fast/default") && p.contains("filtered: fast/default"),
        "{p}"
    );
    // Mistakes name the gateway and what it said.
    let (ok, e) = llmux(&["route", "--url", &g.url, "nope/x"], None);
    assert!(
        !ok && e.contains(&g.url) && e.contains("404") && e.contains("nope/x"),
        "{e}"
    );
    let (ok, e) = llmux(&["route", "--url", "http://127.0.0.1:9", "demo/chat"], None);
    assert!(
        !ok && e.contains("cannot reach the gateway at http://127.0.0.1:9"),
        "{e}"
    );
    let (ok, e) = llmux(&["route", "demo/chat"], None);
    assert!(!ok && e.contains("--config FILE is required"), "{e}");
    assert_eq!(
        slow.request_count() + fast.request_count(),
        2,
        "route sent something"
    );
}

#[test]
fn route_endpoint_and_dashboard_state_follow_the_key_rules() {
    let slow = MockServer::start(
        "slow",
        Behavior {
            status: 500,
            ..Behavior::default()
        },
    )
    .expect("mock");
    let fast = MockServer::start("fast", Behavior::default()).expect("mock");
    let g = start(&config(
        &slow,
        &fast,
        json!({"keys": [{"env": KEY_ENV, "name": "ops"}]}),
    ));
    let plan_url = format!("{}/api/v1/route?model=demo/chat&stream=true", g.url);
    let (s, _, body) = get(&plan_url, None);
    assert_eq!(s, 401, "{body}");
    let (s, _, body) = get(&plan_url, Some(KEY));
    assert_eq!(s, 200, "{body}");
    let plan: llmux::Plan = serde_json::from_str(&body).expect("typed plan");
    assert_eq!(plan.requested_model, "demo/chat");
    let (s, _, body) = get(&format!("{}/v1/route", g.url), Some(KEY));
    assert!(s == 400 && body.contains("?model="), "{s} {body}");
    let (s, _, body) = get(
        &format!("{}/v1/route?model=demo/chat&routing=nope", g.url),
        Some(KEY),
    );
    assert!(
        s == 400 && body.contains("routing is not valid JSON"),
        "{s} {body}"
    );
    // route --url takes the key from LLMUX_API_KEY, and says so when refused.
    let (ok, e) = llmux(&["route", "--url", &g.url, "demo/chat"], None);
    assert!(
        !ok && e.contains("401") && e.contains("LLMUX_API_KEY"),
        "{e}"
    );
    assert!(!e.contains(KEY));
    let (ok, text) = llmux(&["route", "--url", &g.url, "demo/chat"], Some(KEY));
    assert!(ok && text.contains("1. slow/default"), "{text}");
    // The page and its assets carry no data: served to anyone, with a strict CSP.
    for (path, ty) in [
        ("/dashboard", "text/html"),
        ("/dashboard/app.js", "text/javascript"),
        ("/dashboard/app.css", "text/css"),
    ] {
        let (s, h, body) = get(&format!("{}{path}", g.url), None);
        assert_eq!(s, 200, "{path}");
        assert!(
            h["content-type"].to_str().unwrap().starts_with(ty),
            "{path}"
        );
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("default-src 'self'") && !csp.contains("unsafe"),
            "{csp}"
        );
        assert!(
            !body.contains("demo/chat"),
            "the page shell carries no data"
        );
    }
    let (s, _, _) = get(&format!("{}/dashboard/nope.js", g.url), None);
    assert_eq!(s, 404);
    // A failover, then the state: who served, the failed attempt, the key's spend.
    let h = chat(&g, true, Some(KEY));
    assert_eq!(h["x-llmux-endpoint"], "fast/default");
    let state_url = format!("{}/api/dashboard/state", g.url);
    assert_eq!(get(&state_url, None).0, 401);
    let (s, h, body) = get(&state_url, Some(KEY));
    assert_eq!(s, 200, "{body}");
    assert!(h.contains_key("content-security-policy"));
    let v: Value = serde_json::from_str(&body).expect("state JSON");
    let r = &v["recent"][0];
    assert_eq!(
        (r["endpoint"].as_str(), r["failover"].as_bool()),
        (Some("fast/default"), Some(true)),
        "{r}"
    );
    assert_eq!(r["attempts"][0]["endpoint"], "slow/default");
    assert_eq!(r["attempts"][0]["status"], 500);
    assert_eq!(r["key"], "ops");
    assert_eq!(v["keys"][0]["name"], "ops");
    assert!(
        v["keys"][0]["cost_usd"].as_f64().unwrap() > 0.0,
        "{}",
        v["keys"]
    );
    let eps = &v["models"][0]["endpoints"];
    assert_eq!(
        eps[0]["id"], "fast/default",
        "ranked by the live plan: {eps}"
    );
    assert_eq!(eps[0]["served"], 1);
    assert!(eps[0]["latency"]["p50_ms"].as_f64().is_some(), "{eps}");
    assert_eq!(
        eps[1]["error_rate"].as_f64().map(|e| e > 0.0),
        Some(true),
        "{eps}"
    );
    let series = v["series"].as_array().unwrap();
    assert_eq!(v["buckets"], 150);
    assert_eq!(
        series
            .iter()
            .map(|b| b["requests"].as_u64().unwrap())
            .sum::<u64>(),
        1
    );
    assert!(!body.contains(KEY), "no key in the state");
}
