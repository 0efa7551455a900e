//! Shared helpers for integration tests: a fleet of mock upstreams, config
//! building, and draining a request's events with the exactly-one-terminal
//! check.
#![allow(dead_code)]

use llmux::{Engine, Event, EventKind, Protocol};
use llmux_fleet::{Behavior, MockServer};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// One mock provider: a server plus its catalog entry.
pub struct Upstream {
    pub server: MockServer,
    pub slug: String,
    pub protocol: &'static str,
    pub price: (f64, f64),
    pub expected_ms: Option<f64>,
    pub provider_extra: Value,
}

pub fn upstream(slug: &str, behavior: Behavior) -> Upstream {
    Upstream {
        server: MockServer::start(slug, behavior).expect("start mock server"),
        slug: slug.into(),
        protocol: "openai",
        price: (1.0, 2.0),
        expected_ms: None,
        provider_extra: json!({}),
    }
}

/// A config with one model `test/model` served by every upstream (endpoint
/// `slug/default`, upstream model `up-<slug>`), plus `extra` merged at the
/// top level.
pub fn config(ups: &[&Upstream], extra: Value) -> String {
    let providers: Vec<Value> = ups
        .iter()
        .map(|u| {
            let base = if u.protocol == "openai" {
                format!("{}/v1", u.server.base_url())
            } else {
                u.server.base_url()
            };
            let mut p = json!({"slug": u.slug, "protocol": u.protocol, "base_url": base});
            if let (Value::Object(p), Value::Object(x)) = (&mut p, &u.provider_extra) {
                for (k, v) in x {
                    p.insert(k.clone(), v.clone());
                }
            }
            p
        })
        .collect();
    let endpoints: Vec<Value> = ups
        .iter()
        .map(|u| {
            let mut e = json!({
                "provider": u.slug,
                "upstream_model": format!("up-{}", u.slug),
                "price": {"prompt": u.price.0, "completion": u.price.1},
            });
            if let Some(ms) = u.expected_ms {
                e["expected_first_token_ms"] = json!(ms);
            }
            e
        })
        .collect();
    let mut cfg = json!({
        "providers": providers,
        "models": [{"slug": "test/model", "endpoints": endpoints}],
        "health": {"explore_ratio": 0.0},
        "retry": {"max_retries": 0},
    });
    if let (Value::Object(c), Value::Object(x)) = (&mut cfg, extra) {
        for (k, v) in x {
            c.insert(k, v);
        }
    }
    cfg.to_string()
}

pub fn engine(ups: &[&Upstream], extra: Value) -> Engine {
    Engine::from_json(&config(ups, extra)).expect("valid config")
}

pub fn chat(model: &str, stream: bool) -> Value {
    json!({
        "model": model,
        "stream": stream,
        "messages": [{"role": "user", "content": "hello"}],
    })
}

/// Everything one request produced.
#[derive(Debug)]
pub struct Outcome {
    pub chunks: Vec<Value>,
    pub terminal_kind: EventKind,
    pub terminal: Value,
    pub elapsed: Duration,
}

impl Outcome {
    pub fn ok(&self) -> bool {
        self.terminal_kind == EventKind::Done
    }
    pub fn routing(&self) -> &Value {
        &self.terminal["routing"]
    }
    pub fn served(&self) -> Option<&str> {
        self.routing()["endpoint"].as_str()
    }
    pub fn attempts(&self) -> Vec<(String, String)> {
        self.routing()["attempts"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|x| {
                        (
                            x["endpoint"].as_str().unwrap_or("").to_owned(),
                            x["outcome"].as_str().unwrap_or("").to_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
    /// Concatenated `delta.content` of OpenAI chunks.
    pub fn text(&self) -> String {
        self.chunks
            .iter()
            .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
            .collect()
    }
    pub fn error_type(&self) -> &str {
        self.terminal["error"]["error"]["type"]
            .as_str()
            .unwrap_or("")
    }
}

/// Drains events of several requests until each has its terminal event;
/// panics on a second terminal, an event after the terminal, or a timeout.
pub fn drain(engine: &Engine, ids: &[u64], limit: Duration) -> HashMap<u64, Outcome> {
    let start = Instant::now();
    let mut chunks: HashMap<u64, Vec<Value>> = HashMap::new();
    let mut done: HashMap<u64, Outcome> = HashMap::new();
    let handle =
        |ev: Event, chunks: &mut HashMap<u64, Vec<Value>>, done: &mut HashMap<u64, Outcome>| {
            assert!(
                ids.contains(&ev.request_id),
                "event for an unknown id {}",
                ev.request_id
            );
            assert!(
                !done.contains_key(&ev.request_id),
                "event after the terminal: {ev:?}"
            );
            let v: Value = serde_json::from_str(&ev.data).expect("event data is JSON");
            if ev.is_terminal() {
                done.insert(
                    ev.request_id,
                    Outcome {
                        chunks: chunks.remove(&ev.request_id).unwrap_or_default(),
                        terminal_kind: ev.kind,
                        terminal: v,
                        elapsed: start.elapsed(),
                    },
                );
            } else {
                chunks.entry(ev.request_id).or_default().push(v);
            }
        };
    while done.len() < ids.len() {
        assert!(
            start.elapsed() < limit,
            "requests did not finish within {limit:?}"
        );
        for ev in engine.poll_vec(64, Some(Duration::from_millis(50))) {
            handle(ev, &mut chunks, &mut done);
        }
    }
    // Nothing more may arrive for these ids.
    for ev in engine.poll_vec(64, Some(Duration::from_millis(30))) {
        handle(ev, &mut chunks, &mut done);
    }
    done
}

pub fn run(engine: &Engine, body: &Value) -> Outcome {
    run_as(engine, Protocol::OpenAi, body)
}

pub fn run_as(engine: &Engine, protocol: Protocol, body: &Value) -> Outcome {
    let id = engine
        .submit(protocol, body.to_string().as_bytes())
        .expect("submit");
    drain(engine, &[id], Duration::from_secs(20))
        .remove(&id)
        .expect("outcome")
}

/// An Anthropic Messages request.
pub fn messages(model: &str, stream: bool) -> Value {
    json!({
        "model": model,
        "max_tokens": 256,
        "stream": stream,
        "messages": [{"role": "user", "content": "hello"}],
    })
}

/// A Gemini `GenerateContentRequest`, with the model and stream flag a
/// host puts in the body (Gemini carries them in the URL).
pub fn gemini(model: &str, stream: bool) -> Value {
    json!({
        "model": model,
        "stream": stream,
        "contents": [{"role": "user", "parts": [{"text": "hello"}]}],
    })
}

/// An upstream speaking the Gemini protocol.
pub fn gemini_upstream(slug: &str, behavior: Behavior) -> Upstream {
    let mut u = upstream(slug, behavior);
    u.protocol = "gemini";
    u
}

/// The answer text (not thoughts) of Gemini `GenerateContentResponse`s.
pub fn gemini_text<'a>(responses: impl IntoIterator<Item = &'a Value>) -> String {
    responses
        .into_iter()
        .flat_map(|r| {
            r["candidates"][0]["content"]["parts"]
                .as_array()
                .into_iter()
                .flatten()
        })
        .filter(|p| p["thought"] != true)
        .filter_map(|p| p["text"].as_str())
        .collect()
}

/// An upstream speaking the Anthropic protocol.
pub fn anthropic_upstream(slug: &str, behavior: Behavior) -> Upstream {
    let mut u = upstream(slug, behavior);
    u.protocol = "anthropic";
    u
}

impl Outcome {
    /// Concatenated text of Anthropic `text_delta` events.
    pub fn anthropic_text(&self) -> String {
        self.chunks
            .iter()
            .filter(|c| c["type"] == "content_block_delta" && c["delta"]["type"] == "text_delta")
            .filter_map(|c| c["delta"]["text"].as_str())
            .collect()
    }
    /// The `type` of every Anthropic stream event, in order.
    pub fn event_types(&self) -> Vec<String> {
        self.chunks
            .iter()
            .map(|c| c["type"].as_str().unwrap_or("?").to_owned())
            .collect()
    }
}

pub fn behavior(v: Value) -> Behavior {
    serde_json::from_value(v).expect("behavior JSON")
}

/// The engine's stats, parsed.
pub fn stats(e: &Engine) -> Value {
    serde_json::from_str(&e.stats_json()).unwrap()
}

/// One endpoint's entry in the stats, by id (`provider/name`).
pub fn endpoint_stats(e: &Engine, id: &str) -> Value {
    stats(e)["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == id)
        .cloned()
        .unwrap_or_else(|| panic!("no endpoint {id}"))
}
