//! `request-cost`: the request path without I/O (parse the caller's body,
//! write the upstream body), per protocol pair and body size, for an
//! instruction counter. Each scenario runs in a function of its own, so
//! callgrind's inclusive count of that function / N is the cost of one
//! request:
//!
//! ```text
//! LLMUX_BENCH_COST_N=20000 valgrind --tool=callgrind --callgrind-out-file=cg.out \
//!     target/release/deps/llmux-<hash> --bench request-cost
//! callgrind_annotate --inclusive=yes cg.out | grep cost_
//! ```
//!
//! The same for a stream chunk through the same-protocol pass-through
//! adapter (`cost_chunk_*`, per chunk).
//!
//! Without valgrind it prints ns per request (best of 5 rounds). Only the
//! public API is used (`request::parse`, `protocol::upstream_request_bytes`
//! over `ParsedRequest::body`), so the same file builds against older
//! commits for an A/B.

use llmux::catalog::Catalog;
use llmux::protocol::{self, Protocol};
use llmux::request;
use serde_json::{json, Value};
use std::hint::black_box;
use std::time::Instant;

fn catalog() -> Catalog {
    let cfg = json!({
        "providers": [
            {"slug": "o", "protocol": "openai", "base_url": "http://127.0.0.1:9/v1"},
            {"slug": "a", "protocol": "anthropic", "base_url": "http://127.0.0.1:9"},
        ],
        "models": [
            {"slug": "m/o", "endpoints": [{"provider": "o", "upstream_model": "up-o"}]},
            {"slug": "m/a", "endpoints": [{"provider": "a", "upstream_model": "up-a"}]},
        ],
    });
    Catalog::from_json(&cfg.to_string()).expect("catalog")
}

/// The bench's small body, or a conversation of `turns` turns with tools.
fn body(model: &str, turns: usize, anthropic: bool) -> Vec<u8> {
    let mut messages = Vec::new();
    for i in 0..turns.max(1) {
        messages.push(json!({"role": "user", "content": format!("Question {i}: what is the weather like in Paris, and \"why\"?\nAnswer briefly.")}));
        if i + 1 < turns {
            messages.push(json!({"role": "assistant", "content": format!("Answer {i}: sunny, 21 °C, light wind from the west.")}));
        }
    }
    let mut v = json!({"model": model, "messages": messages, "max_tokens": 16, "stream": false});
    if turns > 1 {
        let tool = |n: &str| {
            json!({"name": n, "description": "Looks up a value.",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}})
        };
        v["temperature"] = json!(0.2);
        v["tools"] = if anthropic {
            json!([tool("weather"), tool("time")]).as_array().unwrap().iter().map(|t| {
                json!({"name": t["name"], "description": t["description"], "input_schema": t["parameters"]})
            }).collect()
        } else {
            json!([{"type": "function", "function": tool("weather")},
                   {"type": "function", "function": tool("time")}])
        };
    }
    serde_json::to_vec(&v).expect("json")
}

/// One request: parse, then the upstream body's bytes.
fn one(c: &Catalog, caller: Protocol, upstream: Protocol, b: &[u8]) -> usize {
    let r = request::parse(c, caller, b).expect("parses");
    let bytes = protocol::upstream_request_bytes(upstream, caller, &r.body, "up-model", false)
        .expect("upstream body");
    bytes.len()
}

// Each scenario tags its loop with its own name, so the optimiser cannot
// fold the six identical bodies into one symbol.
macro_rules! scenario {
    ($name:ident) => {
        #[inline(never)]
        fn $name(c: &Catalog, caller: Protocol, up: Protocol, b: &[u8], n: usize) -> usize {
            black_box(stringify!($name));
            (0..n).map(|_| one(c, caller, up, black_box(b))).sum()
        }
    };
}
scenario!(cost_same_openai_small);
scenario!(cost_same_openai_large);
scenario!(cost_same_anthropic_large);
scenario!(cost_translated_o2a_small);
scenario!(cost_translated_o2a_large);
scenario!(cost_translated_a2o_large);

type Scenario = fn(&Catalog, Protocol, Protocol, &[u8], usize) -> usize;

/// `n` stream events through the same-protocol pass-through adapter.
fn chunks(p: Protocol, event: &str, data: &str, n: usize) -> usize {
    let ctx = protocol::StreamContext {
        model: "m/o".into(),
        include_usage: false,
        created: 1,
        id: "llmux-1".into(),
        input_tokens_estimate: 0,
    };
    let mut adapter = protocol::stream_adapter(p, p, ctx);
    let mut out = 0;
    for _ in 0..n {
        let ev = protocol::SseEvent {
            event: event.to_owned(),
            data: data.to_owned(),
        };
        let step = adapter.on_owned(black_box(ev)).expect("chunk");
        out += step.out.len();
    }
    out
}

#[inline(never)]
fn cost_chunk_openai(n: usize) -> usize {
    let data = r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"ab"},"finish_reason":null}]}"#;
    chunks(Protocol::OpenAi, "", data, n)
}

#[inline(never)]
fn cost_chunk_anthropic(n: usize) -> usize {
    let data =
        r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"ab"}}"#;
    chunks(Protocol::Anthropic, "content_block_delta", data, n)
}

pub fn run() {
    let n: usize = std::env::var("LLMUX_BENCH_COST_N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_000);
    let c = catalog();
    let (o, a) = (Protocol::OpenAi, Protocol::Anthropic);
    let cases: [(&str, Scenario, Protocol, Protocol, Vec<u8>); 6] = [
        (
            "same_openai_small",
            cost_same_openai_small,
            o,
            o,
            body("m/o", 1, false),
        ),
        (
            "same_openai_large",
            cost_same_openai_large,
            o,
            o,
            body("m/o", 8, false),
        ),
        (
            "same_anthropic_large",
            cost_same_anthropic_large,
            a,
            a,
            body("m/a", 8, true),
        ),
        (
            "translated_o2a_small",
            cost_translated_o2a_small,
            o,
            a,
            body("m/a", 1, false),
        ),
        (
            "translated_o2a_large",
            cost_translated_o2a_large,
            o,
            a,
            body("m/a", 8, false),
        ),
        (
            "translated_a2o_large",
            cost_translated_a2o_large,
            a,
            o,
            body("m/o", 8, true),
        ),
    ];
    for (name, f, caller, up, b) in &cases {
        let mut best = f64::INFINITY;
        for _ in 0..5 {
            let t = Instant::now();
            black_box(f(&c, *caller, *up, b, n / 5));
            best = best.min(t.elapsed().as_secs_f64() * 1e9 / (n / 5) as f64);
        }
        let _: Value = serde_json::from_slice(b).expect("json");
        println!("{name:<22} {:>6} bytes  {best:>8.0} ns/request", b.len());
    }
    for (name, f) in [
        ("chunk_openai", cost_chunk_openai as fn(usize) -> usize),
        ("chunk_anthropic", cost_chunk_anthropic),
    ] {
        let mut best = f64::INFINITY;
        for _ in 0..5 {
            let t = Instant::now();
            black_box(f(n / 5));
            best = best.min(t.elapsed().as_secs_f64() * 1e9 / (n / 5) as f64);
        }
        println!("{name:<22} {best:>21.0} ns/chunk (pass-through adapter)");
    }
}
