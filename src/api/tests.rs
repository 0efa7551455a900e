//! The typed documents read back what the engine writes, field for field
//! and in order.

use crate::{Circuit, Engine, Plan, Protocol, Stats};
use serde_json::{json, Value};

fn engine(shared: bool) -> Engine {
    let mut cfg = json!({
        "providers": [
            {"slug": "p", "protocol": "openai", "base_url": "http://127.0.0.1:9/v1"},
            {"slug": "q", "protocol": "anthropic", "base_url": "http://127.0.0.1:9"},
        ],
        "models": [{"slug": "t/m", "endpoints": [
            {"provider": "p", "upstream_model": "m", "price": {"prompt": 1.5, "completion": 2}},
            {"provider": "q", "upstream_model": "n", "context_window": 1000},
        ]}],
        "worker_threads": 1,
    });
    if shared {
        cfg["shared"] = json!({"redis_url": "redis://:secret@127.0.0.1:9/0"});
    }
    Engine::from_json(&cfg.to_string()).unwrap()
}

/// `text` read into `T` and written again gives the same JSON, keys in order.
fn round_trips<T: serde::de::DeserializeOwned + serde::Serialize>(text: &str) -> T {
    let typed: T = serde_json::from_str(text).unwrap();
    let again = serde_json::to_string(&typed).unwrap();
    let a: Value = serde_json::from_str(text).unwrap();
    let b: Value = serde_json::from_str(&again).unwrap();
    assert_eq!(
        serde_json::to_string(&a).unwrap(),
        serde_json::to_string(&b).unwrap()
    );
    typed
}

#[test]
fn stats_json_is_the_typed_stats() {
    for shared in [false, true] {
        let e = engine(shared);
        let s: Stats = round_trips(&e.stats_json());
        assert_eq!(s.endpoints.len(), 2);
        assert_eq!(s.endpoints[0].protocol, Protocol::OpenAi);
        assert_eq!(s.endpoints[0].health.circuit, Circuit::Closed);
        assert_eq!(s.endpoints[0].health.error_rate, 0.0);
        assert_eq!(s.endpoints[1].context_window, Some(1000));
        assert_eq!(s.shared.enabled, shared);
        assert_eq!(s.shared.status.is_some(), shared);
        assert_eq!(s.endpoints[0].shared.is_some(), shared);
        if let Some(st) = &s.shared.status {
            assert!(!st.redis.contains("secret"), "{}", st.redis);
        }
        let v: Value = serde_json::from_str(&e.stats_json()).unwrap();
        if !shared {
            assert_eq!(v["shared"], json!({"enabled": false}));
        }
        assert_eq!(v["endpoints"][0]["circuit"], "closed");
        assert_eq!(
            v["endpoints"][0]["price"],
            json!({"prompt": 1.5, "completion": 2.0})
        );
    }
}

#[test]
fn explain_is_the_typed_plan() {
    let e = engine(false);
    let body = br#"{"model": "t/m", "messages": [{"role": "user", "content": "hi"}]}"#;
    let v = e.explain(Protocol::OpenAi, body).unwrap();
    let p: Plan = round_trips(&v.to_string());
    assert_eq!(p, e.plan(Protocol::OpenAi, body).unwrap());
    assert_eq!(p.requested_model, "t/m");
    assert_eq!(p.models[0].policy, "latency");
    assert_eq!(p.models[0].candidates.len(), 2);
    assert_eq!(p.models[0].candidates[0].rank, 1);
    let keys: Vec<&str> = v["models"][0]["candidates"][0]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "rank",
            "endpoint",
            "provider",
            "protocol",
            "upstream_model",
            "first_token_ms",
            "prior_ms",
            "in_flight",
            "latency_cost_ms",
            "price",
            "throughput_tps",
            "circuit",
            "available",
            "sticky",
            "region",
            "quantization",
            "data_policy",
            "supported_parameters"
        ]
    );
}
