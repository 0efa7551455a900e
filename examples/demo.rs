//! llmux demo: offline, no keys. Three simulated providers of one model on
//! 127.0.0.1, one streamed request under each routing policy, then a
//! provider goes down and the next request fails over.
//!
//! Run: `cargo run --release --example demo`

use llmux::{Engine, EventKind, Protocol};
use llmux_fleet::{Behavior, MockServer};
use serde_json::{json, Value};
use std::time::Duration;

struct Sim {
    name: &'static str,
    first_token_ms: u64,
    chunk_ms: u64,
    price: (f64, f64),
}

const SIMS: [Sim; 3] = [
    Sim {
        name: "swift",
        first_token_ms: 40,
        chunk_ms: 12,
        price: (5.0, 15.0),
    },
    Sim {
        name: "budget",
        first_token_ms: 250,
        chunk_ms: 30,
        price: (0.2, 0.6),
    },
    Sim {
        name: "bulk",
        first_token_ms: 120,
        chunk_ms: 2,
        price: (1.0, 3.0),
    },
];

fn main() {
    let servers: Vec<MockServer> = SIMS
        .iter()
        .map(|s| {
            let b: Behavior = serde_json::from_value(json!({
                "first_token_delay_ms": s.first_token_ms,
                "chunk_delay_ms": s.chunk_ms,
                "chunks": 6,
                "text": format!("Hi, {} here: routed to me. ", s.name),
                "prompt_tokens": 12,
            }))
            .expect("behavior");
            MockServer::start(s.name, b).expect("start mock provider")
        })
        .collect();
    let config = json!({
        "providers": SIMS.iter().zip(&servers).map(|(s, srv)| json!({
            "slug": s.name, "protocol": "openai", "base_url": format!("{}/v1", srv.base_url()),
        })).collect::<Vec<_>>(),
        "models": [{"slug": "demo/chat", "endpoints": SIMS.iter().map(|s| json!({
            "provider": s.name, "upstream_model": format!("{}-chat-1", s.name),
            "price": {"prompt": s.price.0, "completion": s.price.1},
        })).collect::<Vec<_>>()}],
        "timeouts": {"connect_ms": 500, "first_token_ms": 2000},
        "health": {"explore_ratio": 0.0},
    });
    let engine = Engine::from_json(&config.to_string()).expect("valid config");

    println!("llmux demo: model demo/chat, three simulated providers on 127.0.0.1\n");
    println!(
        "  {:<8} {:>12} {:>13} {:>18}",
        "provider", "first token", "chunk gap", "price $/M in/out"
    );
    for s in &SIMS {
        println!(
            "  {:<8} {:>9} ms {:>10} ms {:>9.2} / {:<6.2}",
            s.name, s.first_token_ms, s.chunk_ms, s.price.0, s.price.1
        );
    }

    println!("\nWarm-up: one request pinned to each provider (`demo/chat:<slug>`) so health has live numbers.");
    for s in &SIMS {
        let r = stream(&engine, json!({"model": format!("demo/chat:{}", s.name)}));
        println!("  {:<8} first token {:>6.1} ms", s.name, r.first_token_ms);
    }

    let cases = [
        ("default: lowest live first-token latency", json!({})),
        (
            "priority / price",
            json!({"provider": {"routing": {"type": "priority", "primary_factor": "price"}}}),
        ),
        (
            "priority / throughput",
            json!({"provider": {"routing": {"type": "priority", "primary_factor": "throughput"}}}),
        ),
        (
            "order [budget, bulk]",
            json!({"provider": {"routing": {"type": "order", "providers": ["budget", "bulk"]}}}),
        ),
        ("pinned demo/chat:bulk", json!({"model": "demo/chat:bulk"})),
    ];
    for (i, (title, extra)) in cases.iter().enumerate() {
        println!("\n[{}] {title}", i + 1);
        let r = stream(&engine, extra.clone());
        report(&r);
        println!("    why: {}", why(&engine, title));
    }

    println!("\n[6] swift goes down (its server stops: connections are refused)");
    let mut servers = servers;
    servers.remove(0).shutdown();
    for _ in 0..2 {
        let r = stream(&engine, json!({}));
        report(&r);
    }
    println!("    the first request failed over in the same call; after 3 straight failures");
    println!("    swift's circuit opens and it is skipped until a half-open probe succeeds.");
    for _ in 0..2 {
        stream(&engine, json!({}));
    }

    println!("\nHealth (llmux_stats):");
    health_table(&engine);
}

struct Run {
    served: String,
    first_token_ms: f64,
    text: String,
    chunks: usize,
    cost: f64,
    attempts: Vec<String>,
    ok: bool,
}

fn stream(engine: &Engine, extra: Value) -> Run {
    let mut body = json!({
        "model": "demo/chat",
        "stream": true,
        "messages": [{"role": "user", "content": "Say hi and who you are."}],
    });
    if let (Value::Object(b), Value::Object(x)) = (&mut body, extra) {
        b.extend(x);
    }
    let id = engine
        .submit(Protocol::OpenAi, body.to_string().as_bytes())
        .expect("submit");
    let mut text = String::new();
    let mut chunks = 0;
    loop {
        for ev in engine.poll_vec(64, Some(Duration::from_secs(5))) {
            assert_eq!(ev.request_id, id);
            let v: Value = serde_json::from_str(&ev.data).expect("JSON event");
            match ev.kind {
                EventKind::Chunk => {
                    chunks += 1;
                    if let Some(t) = v["choices"][0]["delta"]["content"].as_str() {
                        text.push_str(t);
                    }
                }
                EventKind::Done | EventKind::Error => {
                    let r = &v["routing"];
                    return Run {
                        served: r["endpoint"].as_str().unwrap_or("(none)").to_owned(),
                        first_token_ms: r["first_token_ms"].as_f64().unwrap_or(0.0),
                        text,
                        chunks,
                        cost: r["cost_usd"].as_f64().unwrap_or(0.0),
                        attempts: r["attempts"]
                            .as_array()
                            .map(|a| {
                                a.iter()
                                    .map(|x| {
                                        format!(
                                            "{} {} ({:.1} ms)",
                                            x["endpoint"].as_str().unwrap_or("?"),
                                            x["outcome"].as_str().unwrap_or("?"),
                                            x["elapsed_ms"].as_f64().unwrap_or(0.0)
                                        )
                                    })
                                    .collect()
                            })
                            .unwrap_or_default(),
                        ok: ev.kind == EventKind::Done,
                    };
                }
            }
        }
    }
}

fn report(r: &Run) {
    println!(
        "    {} {:<15} first token {:>6.1} ms, {} chunks, cost ${:.7}",
        if r.ok { "served by" } else { "FAILED   " },
        r.served,
        r.first_token_ms,
        r.chunks,
        r.cost
    );
    println!("    text: {:?}", r.text.trim_end());
    println!("    attempts: {}", r.attempts.join("  ->  "));
}

fn stats(engine: &Engine) -> Vec<Value> {
    let s: Value = serde_json::from_str(&engine.stats_json()).expect("stats JSON");
    s["endpoints"].as_array().cloned().unwrap_or_default()
}

fn why(engine: &Engine, title: &str) -> String {
    let eps = stats(engine);
    let list = |key: &str, unit: &str, f: &dyn Fn(&Value) -> f64| {
        eps.iter()
            .map(|e| {
                format!(
                    "{} {:.1}{unit}",
                    e["provider"].as_str().unwrap_or("?"),
                    f(&e[key])
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    if title.starts_with("default") {
        format!(
            "lowest first-token EWMA wins: {}",
            list("first_token_ms", " ms", &|v| v.as_f64().unwrap_or(0.0))
        )
    } else if title.contains("price") {
        format!(
            "cheapest prompt+completion price wins: {}",
            list("price", " $/M", &|p| p["prompt"].as_f64().unwrap_or(0.0)
                + p["completion"].as_f64().unwrap_or(0.0))
        )
    } else if title.contains("throughput") {
        format!(
            "highest measured output rate wins: {}",
            list("throughput_tps", " tok/s", &|v| v.as_f64().unwrap_or(0.0))
        )
    } else if title.starts_with("order") {
        "the first listed endpoint that succeeds serves; the rest are fallbacks".into()
    } else {
        "a `:provider` suffix restricts the request to that provider's endpoints".into()
    }
}

fn health_table(engine: &Engine) {
    println!(
        "  {:<16} {:>9} {:>12} {:>10} {:>6} {:>9} {:>10}",
        "endpoint", "circuit", "first token", "tok/s", "ok", "failures", "err rate"
    );
    for e in stats(engine) {
        println!(
            "  {:<16} {:>9} {:>9.1} ms {:>10.1} {:>6} {:>9} {:>9.0}%",
            e["id"].as_str().unwrap_or("?"),
            e["circuit"].as_str().unwrap_or("?"),
            e["first_token_ms"].as_f64().unwrap_or(0.0),
            e["throughput_tps"].as_f64().unwrap_or(0.0),
            e["successes"].as_u64().unwrap_or(0),
            e["failures"].as_u64().unwrap_or(0),
            e["error_rate"].as_f64().unwrap_or(0.0) * 100.0,
        );
    }
}
