//! Hostile input: property tests for the SSE decoder, the config parser, the
//! request parser and the protocol translators.
//!
//! The main property everywhere is "arbitrary input never panics" (a panic
//! inside the engine would cross the C ABI). Inputs are arbitrary bytes,
//! generated JSON trees, and, to get past the first type check, valid
//! documents with random mutations (a node replaced by a random value or by
//! another node of the same document, a key deleted or added). On top of
//! that: the SSE decoder is independent of how the bytes are split into
//! reads, config errors name their JSON path, OpenAI -> Anthropic ->
//! OpenAI keeps a simple conversation, and the same-protocol splice sends
//! what the tree path would (and refuses what a `Value` parse refuses).
//!
//! Deterministic in CI: a fixed seed and a fixed number of cases per
//! property. `PROPTEST_CASES=N` and `PROPTEST_RNG_SEED=S` override both
//! (e.g. a long local run: `PROPTEST_CASES=100000 cargo test --release
//! --test properties`). The cargo-fuzz targets under `fuzz/` cover the same
//! entry points with coverage guidance (`scripts/fuzz.sh`).

use std::sync::OnceLock;

use llmux::catalog::Catalog;
use llmux::config::Config;
use llmux::protocol::sse::Decoder;
use llmux::protocol::{self, translate, Protocol, SseEvent, StreamContext};
use llmux::request;
use proptest::prelude::*;
use proptest::sample::{select, Index};
use proptest::test_runner::{Config as ProptestConfig, RngSeed};
use serde_json::{json, Map, Value};

/// A fixed seed and `cases` cases, unless the environment says otherwise.
fn cfg(cases: u32) -> ProptestConfig {
    let mut c = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        c.cases = cases;
    }
    if c.rng_seed == RngSeed::Random {
        c.rng_seed = RngSeed::Fixed(0x006c_6c6d_7578);
    }
    c.failure_persistence = None;
    c
}

const PROTOCOLS: [Protocol; 3] = [Protocol::OpenAi, Protocol::Anthropic, Protocol::Responses];

fn pairs() -> impl Iterator<Item = (Protocol, Protocol)> {
    PROTOCOLS
        .into_iter()
        .flat_map(|u| PROTOCOLS.into_iter().map(move |c| (u, c)))
}

// ---------------------------------------------------------------------------
// JSON generation and mutation

/// Keys the code under test looks at, so random objects hit real branches.
const KEYS: &[&str] = &[
    "model",
    // OpenAI Responses
    "input",
    "instructions",
    "output",
    "call_id",
    "namespace",
    "response",
    "item",
    "output_index",
    "sequence_number",
    "delta",
    "status",
    "previous_response_id",
    "store",
    "models",
    "messages",
    "role",
    "content",
    "type",
    "text",
    "tool_calls",
    "id",
    "function",
    "name",
    "arguments",
    "tool_call_id",
    "system",
    "tools",
    "tool_choice",
    "max_tokens",
    "max_completion_tokens",
    "stream",
    "stream_options",
    "include_usage",
    "choices",
    "delta",
    "index",
    "finish_reason",
    "usage",
    "input_tokens",
    "output_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
    "prompt_tokens",
    "completion_tokens",
    "prompt_tokens_details",
    "cached_tokens",
    "message",
    "content_block",
    "partial_json",
    "stop_reason",
    "error",
    "image_url",
    "url",
    "source",
    "data",
    "media_type",
    "thinking",
    "budget_tokens",
    "reasoning_effort",
    "provider",
    "routing",
    "providers",
    "fallback",
    "hedge",
    "timeouts",
    "sticky_key",
    "delay_ms",
    "percentile",
    "primary_factor",
    "slug",
    "protocol",
    "base_url",
    "endpoints",
    "upstream_model",
    "price",
    "prompt",
    "completion",
    "n",
    "response_format",
    "logprobs",
    "top_logprobs",
    "modalities",
    "stop",
    "stop_sequences",
    "temperature",
    "top_p",
    "top_k",
    "parallel_tool_calls",
    "user",
    "metadata",
    "user_id",
    "input",
    "input_schema",
    "parameters",
    "tool_use_id",
    "refusal",
    "mcp_servers",
    "disable_parallel_tool_use",
    "cache_control",
    "is_error",
    "signature",
];

/// String values with a meaning somewhere.
const STRS: &[&str] = &[
    "",
    "user",
    "assistant",
    "system",
    "developer",
    "tool",
    "function",
    "text",
    "image",
    "image_url",
    "tool_use",
    "tool_result",
    "thinking",
    "redacted_thinking",
    "refusal",
    "auto",
    "required",
    "none",
    "any",
    "custom",
    "enabled",
    "disabled",
    "low",
    "medium",
    "high",
    "minimal",
    "message",
    "message_start",
    "content_block_start",
    "content_block_delta",
    "content_block_stop",
    "message_delta",
    "message_stop",
    "ping",
    "error",
    "text_delta",
    "input_json_delta",
    "thinking_delta",
    "signature_delta",
    "[DONE]",
    "stop",
    "length",
    "tool_calls",
    "content_filter",
    "end_turn",
    "max_tokens",
    "data:image/png;base64,AAAA",
    "data:;base64,",
    "data:image/png,AA",
    "http://x/a.png",
    "HTTPS://X",
    "base64",
    "url",
    "openai",
    "anthropic",
    "test/model",
    "test/other",
    "test/model:a",
    "test/model:b",
    "a",
    "b",
    "b/fast",
    "a/default",
    "priority",
    "order",
    "latency",
    "price",
    "throughput",
    "json_object",
    "{",
    "{}",
    "{\"a\":1}",
    "[]",
    "null",
    "é",
    "日本語",
    "🎉",
    "\u{0}",
    "\r\n",
    "call_1",
    "x y",
];

fn arb_str() -> BoxedStrategy<String> {
    prop_oneof![
        4 => select(STRS).prop_map(String::from),
        2 => "[a-z_/:.-]{0,10}",
        1 => "(?s).{0,12}",
    ]
    .boxed()
}

fn arb_key() -> BoxedStrategy<String> {
    prop_oneof![
        5 => select(KEYS).prop_map(String::from),
        1 => "[a-z_]{0,8}",
        1 => "(?s).{0,6}",
    ]
    .boxed()
}

fn arb_number() -> BoxedStrategy<Value> {
    prop_oneof![
        select(
            &[
                0i64,
                1,
                2,
                3,
                -1,
                1024,
                2048,
                4096,
                65535,
                65536,
                i64::MIN,
                i64::MAX
            ][..]
        )
        .prop_map(Value::from),
        select(&[u64::MAX, u64::MAX - 1, 1 << 53, 1 << 63][..]).prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        select(&[0.0f64, -0.0, 0.5, 1.5, -1.5, 1e300, -1e300, 5e-324, 1e-9][..])
            .prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
    ]
    .boxed()
}

fn arb_leaf() -> BoxedStrategy<Value> {
    prop_oneof![
        1 => Just(Value::Null),
        1 => any::<bool>().prop_map(Value::Bool),
        2 => arb_number(),
        4 => arb_str().prop_map(Value::String),
    ]
    .boxed()
}

/// An arbitrary JSON tree (depth <= 4, a few dozen nodes at most).
fn arb_json() -> BoxedStrategy<Value> {
    arb_leaf()
        .prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::vec((arb_key(), inner), 0..6)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
        .boxed()
}

#[derive(Clone, Debug)]
enum Seg {
    Key(String),
    At(usize),
}

/// Paths of every node, in pre-order (the root first).
fn node_paths(v: &Value) -> Vec<Vec<Seg>> {
    fn walk(v: &Value, here: &mut Vec<Seg>, out: &mut Vec<Vec<Seg>>) {
        out.push(here.clone());
        match v {
            Value::Array(a) => {
                for (i, x) in a.iter().enumerate() {
                    here.push(Seg::At(i));
                    walk(x, here, out);
                    here.pop();
                }
            }
            Value::Object(m) => {
                for (k, x) in m {
                    here.push(Seg::Key(k.clone()));
                    walk(x, here, out);
                    here.pop();
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(v, &mut Vec::new(), &mut out);
    out
}

fn node_mut<'a>(mut v: &'a mut Value, path: &[Seg]) -> &'a mut Value {
    for s in path {
        v = match (s, v) {
            (Seg::Key(k), Value::Object(m)) => m.get_mut(k).expect("path exists"),
            (Seg::At(i), Value::Array(a)) => &mut a[*i],
            _ => unreachable!("path exists"),
        };
    }
    v
}

/// One random edit of a JSON document.
#[derive(Clone, Debug)]
enum Mutation {
    /// Replace a node with a random value.
    Replace(Index, Value),
    /// Replace a node with (a copy of) another node of the same document.
    Copy(Index, Index),
    /// Remove a node from its object or array.
    Delete(Index),
    /// Add a key to an object (or an element to an array).
    Insert(Index, String, Value),
}

fn arb_mutation() -> BoxedStrategy<Mutation> {
    prop_oneof![
        3 => (any::<Index>(), arb_json()).prop_map(|(i, v)| Mutation::Replace(i, v)),
        2 => (any::<Index>(), any::<Index>()).prop_map(|(i, j)| Mutation::Copy(i, j)),
        3 => any::<Index>().prop_map(Mutation::Delete),
        1 => (any::<Index>(), arb_key(), arb_json()).prop_map(|(i, k, v)| Mutation::Insert(i, k, v)),
    ]
    .boxed()
}

fn mutate(doc: &mut Value, m: &Mutation) {
    let paths = node_paths(doc);
    match m {
        Mutation::Replace(i, v) => *node_mut(doc, &paths[i.index(paths.len())]) = v.clone(),
        Mutation::Copy(i, j) => {
            let src = node_mut(doc, &paths[j.index(paths.len())]).clone();
            *node_mut(doc, &paths[i.index(paths.len())]) = src;
        }
        Mutation::Delete(i) => {
            let p = &paths[i.index(paths.len())];
            let Some((last, parent)) = p.split_last() else {
                return; // keep the root
            };
            match (node_mut(doc, parent), last) {
                (Value::Object(m), Seg::Key(k)) => {
                    m.remove(k);
                }
                (Value::Array(a), Seg::At(i)) => {
                    a.remove(*i);
                }
                _ => unreachable!(),
            }
        }
        Mutation::Insert(i, k, v) => match node_mut(doc, &paths[i.index(paths.len())]) {
            Value::Object(m) => {
                m.insert(k.clone(), v.clone());
            }
            Value::Array(a) => a.push(v.clone()),
            other => *other = v.clone(),
        },
    }
}

/// A document from `seeds` with up to `max` mutations (none a quarter of the time).
fn arb_mutated(seeds: Vec<Value>, max: usize) -> BoxedStrategy<Value> {
    (
        select(seeds),
        prop_oneof![1 => Just(Vec::new()), 3 => prop::collection::vec(arb_mutation(), 1..=max)],
    )
        .prop_map(|(mut doc, muts)| {
            for m in &muts {
                mutate(&mut doc, m);
            }
            doc
        })
        .boxed()
}

fn arb_bytes() -> BoxedStrategy<Vec<u8>> {
    prop::collection::vec(
        prop_oneof![
            3 => any::<u8>(),
            2 => select(&b"\r\n:{}[]\",\\ 0123456789aelnrstu-.eE"[..]),
        ],
        0..512,
    )
    .boxed()
}

fn as_map(v: &Value) -> Option<&Map<String, Value>> {
    v.as_object()
}

// ---------------------------------------------------------------------------
// valid seed documents

fn openai_requests() -> Vec<Value> {
    vec![
        json!({
            "model": "test/model",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "developer", "content": [{"type": "text", "text": "Really."}]},
                {"role": "user", "content": [
                    {"type": "text", "text": "What is in this image?", "cache_control": {"type": "ephemeral"}},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"}},
                    {"type": "image_url", "image_url": "https://example.com/cat.png"},
                ]},
                {"role": "assistant", "content": "Let me look.", "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": "{\"q\":\"cat\",\"n\":2}"}},
                    {"id": "call.2", "type": "function", "function": {"name": "noop", "arguments": ""}},
                ]},
                {"role": "tool", "tool_call_id": "call_1", "content": "a cat"},
                {"role": "tool", "tool_call_id": "call.2", "content": [{"type": "text", "text": "ok"}]},
                {"role": "user", "content": "thanks", "name": "bob"},
                {"role": "assistant", "content": [{"type": "text", "text": "welcome"}, {"type": "refusal", "refusal": "no"}], "refusal": null},
            ],
            "max_completion_tokens": 100,
            "stop": ["\n\n"],
            "temperature": 0.5,
            "top_p": 0.9,
            "tools": [
                {"type": "function", "function": {"name": "lookup", "description": "Look up", "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}, "strict": true}},
                {"type": "function", "function": {"name": "noop"}},
            ],
            "tool_choice": {"type": "function", "function": {"name": "lookup"}},
            "parallel_tool_calls": false,
            "user": "u-1",
            "stream": true,
            "stream_options": {"include_usage": true},
            "n": 1,
            "seed": 7,
            "response_format": {"type": "text"},
            "logprobs": false,
            "top_logprobs": 0,
            "modalities": ["text"],
        }),
        json!({
            "model": "test/model",
            "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 10,
            "stop": "END",
            "reasoning_effort": "medium",
            "tool_choice": "required",
            "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
            "temperature": 1,
        }),
        json!({
            "model": "test/other",
            "messages": [
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": null, "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "c", "content": ""},
            ],
            "thinking": {"type": "enabled", "budget_tokens": 2048},
            "top_k": 5,
            "tool_choice": "auto",
        }),
    ]
}

fn anthropic_requests() -> Vec<Value> {
    vec![
        json!({
            "model": "test/model",
            "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}, {"type": "text", "text": "Really."}],
            "messages": [
                {"role": "user", "content": [
                    {"type": "text", "text": "What is this?"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
                    {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}},
                ]},
                {"role": "assistant", "content": [
                    {"type": "thinking", "thinking": "hmm", "signature": "sig"},
                    {"type": "redacted_thinking", "data": "xx"},
                    {"type": "text", "text": "Let me look."},
                    {"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {"q": "cat"}},
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "a cat"}], "is_error": false},
                    {"type": "text", "text": "thanks"},
                ]},
                {"role": "assistant", "content": "welcome"},
            ],
            "max_tokens": 1024,
            "stop_sequences": ["\n\nHuman:"],
            "temperature": 0.5,
            "top_p": 0.9,
            "top_k": 40,
            "tools": [
                {"name": "lookup", "description": "Look up", "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}}, "cache_control": {"type": "ephemeral"}},
                {"type": "custom", "name": "noop"},
            ],
            "tool_choice": {"type": "tool", "name": "lookup", "disable_parallel_tool_use": true},
            "metadata": {"user_id": "u-1", "other": 1},
            "thinking": {"type": "enabled", "budget_tokens": 4096},
            "stream": true,
            "mcp_servers": [],
        }),
        json!({
            "model": "test/model",
            "system": "sys",
            "messages": [
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "done"}]},
            ],
            "max_tokens": 5,
            "tool_choice": {"type": "any"},
        }),
    ]
}

fn openai_responses() -> Vec<Value> {
    vec![
        json!({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello", "refusal": null}, "logprobs": null, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12, "prompt_tokens_details": {"cached_tokens": 4}},
        }),
        json!({
            "id": "chatcmpl-2", "object": "chat.completion", "created": 1, "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{\"a\":1}"}},
                {"id": "call 2", "type": "function", "function": {"name": "g", "arguments": ""}},
            ]}, "finish_reason": "tool_calls"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1},
        }),
        json!({
            "choices": [{"message": {"role": "assistant", "content": [{"type": "text", "text": "a"}], "refusal": "no"}, "finish_reason": "content_filter"}],
        }),
    ]
}

fn anthropic_responses() -> Vec<Value> {
    vec![
        json!({
            "id": "msg_1", "type": "message", "role": "assistant", "model": "m",
            "content": [
                {"type": "thinking", "thinking": "hmm", "signature": "s"},
                {"type": "text", "text": "Hello"},
                {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"a": 1}},
                {"type": "server_tool_use", "id": "s", "name": "web_search", "input": {}},
            ],
            "stop_reason": "tool_use", "stop_sequence": null,
            "usage": {"input_tokens": 10, "cache_read_input_tokens": 5, "cache_creation_input_tokens": 1, "output_tokens": 3},
        }),
        json!({
            "id": "msg_2", "type": "message", "role": "assistant", "model": "m",
            "content": [{"type": "text", "text": "Hi"}], "stop_reason": "max_tokens",
            "usage": {"input_tokens": 1, "output_tokens": 1},
        }),
        json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
    ]
}

/// One event of a stream script: (event name, data).
#[derive(Clone, Debug)]
enum Data {
    Json(Value),
    Raw(String),
}

fn ev(name: &str, data: Value) -> (String, Data) {
    (name.to_owned(), Data::Json(data))
}

fn done() -> (String, Data) {
    (String::new(), Data::Raw("[DONE]".into()))
}

fn oa_chunk(delta: Value, finish: Value) -> Value {
    json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m",
           "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]})
}

fn stream_scripts() -> Vec<Vec<(String, Data)>> {
    let usage = json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": [],
                       "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7, "prompt_tokens_details": {"cached_tokens": 1}}});
    let openai_text = vec![
        ev(
            "",
            oa_chunk(json!({"role": "assistant", "content": ""}), Value::Null),
        ),
        ev("", oa_chunk(json!({"content": "Hel"}), Value::Null)),
        ev(
            "",
            oa_chunk(json!({"reasoning_content": "think"}), Value::Null),
        ),
        ev(
            "",
            oa_chunk(json!({"content": "lo", "refusal": null}), Value::Null),
        ),
        ev("", oa_chunk(json!({}), json!("stop"))),
        ev("", usage.clone()),
        done(),
    ];
    let openai_tools = vec![
        ev(
            "",
            oa_chunk(
                json!({"role": "assistant", "content": null, "tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "f", "arguments": ""}}]}),
                Value::Null,
            ),
        ),
        ev(
            "",
            oa_chunk(
                json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"a\":"}}]}),
                Value::Null,
            ),
        ),
        ev(
            "",
            oa_chunk(
                json!({"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]}),
                Value::Null,
            ),
        ),
        ev(
            "",
            oa_chunk(
                json!({"tool_calls": [{"index": 1, "id": "call_2", "function": {"name": "g", "arguments": "{}"}}]}),
                Value::Null,
            ),
        ),
        ev(
            "",
            oa_chunk(
                json!({"tool_calls": [{"id": "call_3", "function": {"name": "h"}}]}),
                Value::Null,
            ),
        ),
        ev(
            "",
            oa_chunk(
                json!({"tool_calls": [{"function": {"arguments": "{}"}}]}),
                Value::Null,
            ),
        ),
        ev("", oa_chunk(json!({"content": "after"}), Value::Null)),
        ev("", oa_chunk(json!({}), json!("tool_calls"))),
        ev("", usage),
        done(),
    ];
    let openai_error = vec![
        ev("", oa_chunk(json!({"content": "x"}), Value::Null)),
        ev(
            "",
            json!({"error": {"message": "boom", "type": "server_error"}}),
        ),
    ];
    let anthropic = vec![
        ev(
            "message_start",
            json!({"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant", "model": "m", "content": [], "stop_reason": null, "usage": {"input_tokens": 10, "cache_read_input_tokens": 2, "output_tokens": 1}}}),
        ),
        ev("ping", json!({"type": "ping"})),
        ev(
            "content_block_start",
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}}),
        ),
        ev(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "hmm"}}),
        ),
        ev(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "s"}}),
        ),
        ev(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": 0}),
        ),
        ev(
            "content_block_start",
            json!({"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}}),
        ),
        ev(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "Hello"}}),
        ),
        ev(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": 1}),
        ),
        ev(
            "content_block_start",
            json!({"type": "content_block_start", "index": 2, "content_block": {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}}),
        ),
        ev(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": "{\"a\": 1}"}}),
        ),
        ev(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": 2}),
        ),
        ev(
            "message_delta",
            json!({"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": null}, "usage": {"output_tokens": 7}}),
        ),
        ev("message_stop", json!({"type": "message_stop"})),
    ];
    let anthropic_error = vec![
        anthropic[0].clone(),
        ev(
            "error",
            json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
        ),
    ];
    // Anthropic events without `event:` names (the data's `type` decides).
    let unnamed: Vec<_> = anthropic
        .iter()
        .map(|(_, d)| (String::new(), d.clone()))
        .collect();
    vec![
        openai_text,
        openai_tools,
        openai_error,
        anthropic,
        anthropic_error,
        unnamed,
    ]
}

fn to_event((name, data): &(String, Data)) -> SseEvent {
    SseEvent {
        event: name.clone(),
        data: match data {
            Data::Json(v) => v.to_string(),
            Data::Raw(s) => s.clone(),
        },
    }
}

/// An edit of a stream script.
#[derive(Clone, Debug)]
enum ScriptEdit {
    Mutate(Index, Mutation),
    Drop(Index),
    Duplicate(Index),
    Swap(Index, Index),
    /// An event taken from any script, inserted anywhere.
    Splice(Index, Index),
    Raw(Index, String, String),
    Rename(Index, String),
}

fn arb_script_edit() -> BoxedStrategy<ScriptEdit> {
    prop_oneof![
        4 => (any::<Index>(), arb_mutation()).prop_map(|(i, m)| ScriptEdit::Mutate(i, m)),
        2 => any::<Index>().prop_map(ScriptEdit::Drop),
        1 => any::<Index>().prop_map(ScriptEdit::Duplicate),
        1 => (any::<Index>(), any::<Index>()).prop_map(|(i, j)| ScriptEdit::Swap(i, j)),
        2 => (any::<Index>(), any::<Index>()).prop_map(|(i, k)| ScriptEdit::Splice(i, k)),
        1 => (any::<Index>(), select(&["", "message_stop", "error", "content_block_delta", "ping"][..]).prop_map(String::from), arb_str())
            .prop_map(|(i, n, d)| ScriptEdit::Raw(i, n, d)),
        1 => (any::<Index>(), arb_str()).prop_map(|(i, n)| ScriptEdit::Rename(i, n)),
    ]
    .boxed()
}

fn edit_script(script: &mut Vec<(String, Data)>, e: &ScriptEdit) {
    let all: Vec<(String, Data)> = stream_scripts().into_iter().flatten().collect();
    let n = script.len();
    match e {
        ScriptEdit::Mutate(i, m) if n > 0 => {
            if let Data::Json(v) = &mut script[i.index(n)].1 {
                mutate(v, m);
            }
        }
        ScriptEdit::Drop(i) if n > 0 => {
            script.remove(i.index(n));
        }
        ScriptEdit::Duplicate(i) if n > 0 => {
            let x = script[i.index(n)].clone();
            script.insert(i.index(n), x);
        }
        ScriptEdit::Swap(i, j) if n > 0 => script.swap(i.index(n), j.index(n)),
        ScriptEdit::Splice(at, k) => {
            let x = all[k.index(all.len())].clone();
            script.insert(at.index(n + 1), x);
        }
        ScriptEdit::Raw(at, name, data) => {
            script.insert(at.index(n + 1), (name.clone(), Data::Raw(data.clone())));
        }
        ScriptEdit::Rename(i, name) if n > 0 => script[i.index(n)].0 = name.clone(),
        _ => {}
    }
}

fn arb_script() -> BoxedStrategy<Vec<SseEvent>> {
    let scripts = stream_scripts();
    (
        0..scripts.len(),
        prop::collection::vec(arb_script_edit(), 0..6),
    )
        .prop_map(move |(k, edits)| {
            let mut s = scripts[k].clone();
            for e in &edits {
                edit_script(&mut s, e);
            }
            s.iter().map(to_event).collect()
        })
        .boxed()
}

fn ctx(include_usage: bool) -> StreamContext {
    StreamContext {
        model: "test/model".into(),
        include_usage,
        created: 1_700_000_000,
        id: "chatcmpl-llmux-1".into(),
        input_tokens_estimate: 0,
    }
}

/// Feeds every event to every adapter, going on after errors and after the
/// finish marker (hostile upstreams do not stop when told). Translated
/// payloads must be JSON.
fn run_adapters(events: &[SseEvent], include_usage: bool) {
    for (up, caller) in pairs() {
        let mut a = protocol::stream_adapter(up, caller, ctx(include_usage));
        for e in events {
            if let Ok(step) = a.on_event(e) {
                if up != caller {
                    for p in &step.out {
                        assert!(
                            serde_json::from_str::<Value>(p).is_ok(),
                            "{up:?}->{caller:?}: non-JSON payload {p:?}"
                        );
                    }
                }
            }
        }
        let _ = a.usage();
    }
}

// ---------------------------------------------------------------------------
// (a) SSE decoder

fn decode(input: &[u8], reads: &[usize]) -> (Vec<SseEvent>, bool) {
    let mut d = Decoder::new();
    let mut out = Vec::new();
    let mut rest = input;
    let mut k = 0;
    while !rest.is_empty() {
        let n = if reads.is_empty() {
            rest.len()
        } else {
            reads[k % reads.len()].clamp(1, rest.len())
        };
        k += 1;
        d.feed(&rest[..n], &mut out)
            .expect("small input is never too long");
        rest = &rest[n..];
    }
    (out, d.finish())
}

/// One event of a generated, well-formed SSE stream.
#[derive(Clone, Debug)]
struct GenEvent {
    name: Option<String>,
    data: Vec<String>,
    comment: bool,
    extra_field: bool,
}

/// A text without CR/LF, with multi-byte UTF-8 in it.
fn arb_line_text() -> BoxedStrategy<String> {
    prop_oneof![
        "[a-z {}\":,]{0,12}",
        "[^\r\n]{0,8}",
        select(
            &[
                "",
                " ",
                "{\"c\":\"héllo 日本語 🎉\"}",
                "[DONE]",
                "a:b",
                ": x",
                "ü",
                "€𝄞"
            ][..]
        )
        .prop_map(String::from),
    ]
    .boxed()
}

fn arb_gen_event() -> BoxedStrategy<GenEvent> {
    (
        prop::option::of("[a-z_]{1,12}"),
        prop::collection::vec(arb_line_text(), 0..4),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(name, data, comment, extra_field)| GenEvent {
            name,
            data,
            comment,
            extra_field,
        })
        .boxed()
}

/// Serialises events with per-line terminators (0 LF, 1 CRLF, 2 CR) and
/// returns the bytes and the events a decoder must produce.
fn encode(events: &[GenEvent], terms: &[u8], space: &[bool]) -> (Vec<u8>, Vec<SseEvent>) {
    let mut out = Vec::new();
    let mut expected = Vec::new();
    let mut k = 0usize;
    let mut prev_cr = false;
    let mut line = |out: &mut Vec<u8>, text: &str| {
        out.extend_from_slice(text.as_bytes());
        let mut t = terms[k % terms.len()] % 3;
        // A lone CR followed by an empty line ending in LF would read as
        // one CRLF: the SSE grammar itself is ambiguous there.
        if prev_cr && text.is_empty() && t == 0 {
            t = 1;
        }
        out.extend_from_slice([&b"\n"[..], b"\r\n", b"\r"][t as usize]);
        prev_cr = t == 2;
        k += 1;
    };
    for (i, e) in events.iter().enumerate() {
        let sp = |j: usize| space[(i + j) % space.len()];
        if e.comment {
            line(&mut out, ": keep-alive");
        }
        if let Some(n) = &e.name {
            line(
                &mut out,
                &format!("event:{}{n}", if sp(0) { " " } else { "" }),
            );
        }
        if e.extra_field {
            line(&mut out, "id: 42");
            line(&mut out, "retry");
        }
        for (j, d) in e.data.iter().enumerate() {
            // Without the optional space, a value starting with a space
            // would lose it: always write the space then.
            let s = if sp(j + 1) || d.starts_with(' ') {
                " "
            } else {
                ""
            };
            line(&mut out, &format!("data:{s}{d}"));
        }
        line(&mut out, "");
        if !e.data.is_empty() {
            expected.push(SseEvent {
                event: e.name.clone().unwrap_or_default(),
                data: e.data.join("\n"),
            });
        }
    }
    (out, expected)
}

proptest! {
    #![proptest_config(cfg(2000))]

    #[test]
    fn sse_arbitrary_bytes_never_panic_and_split_is_irrelevant(
        input in arb_bytes(),
        reads in prop::collection::vec(1usize..24, 1..8),
    ) {
        let whole = decode(&input, &[]);
        let bytewise = decode(&input, &[1]);
        let split = decode(&input, &reads);
        prop_assert_eq!(&whole, &bytewise);
        prop_assert_eq!(&whole, &split);
    }

    #[test]
    fn sse_valid_stream_decodes_the_same_in_any_reads(
        events in prop::collection::vec(arb_gen_event(), 0..8),
        terms in prop::collection::vec(0u8..3, 1..16),
        space in prop::collection::vec(any::<bool>(), 1..8),
        reads in prop::collection::vec(1usize..16, 1..8),
    ) {
        let (bytes, expected) = encode(&events, &terms, &space);
        let (whole, cut) = decode(&bytes, &[]);
        prop_assert_eq!(&whole, &expected);
        prop_assert!(!cut, "a complete stream must not be reported as cut");
        prop_assert_eq!(decode(&bytes, &[1]), (expected.clone(), false));
        prop_assert_eq!(decode(&bytes, &reads), (expected, false));
    }
}

#[test]
fn sse_cr_lf_split_across_reads_and_utf8_split() {
    let s = "event: e\r\ndata: 日本語🎉\r\rdata: x\n\n".as_bytes();
    let (expected, _) = decode(s, &[]);
    assert_eq!(expected.len(), 2);
    for a in 0..s.len() {
        for b in a..s.len() {
            let mut d = Decoder::new();
            let mut out = Vec::new();
            for part in [&s[..a], &s[a..b], &s[b..]] {
                d.feed(part, &mut out).unwrap();
            }
            assert_eq!(out, expected, "split at {a}, {b}");
        }
    }
}

// ---------------------------------------------------------------------------
// (b) config

fn valid_config() -> Value {
    json!({
        "providers": [
            {"slug": "a", "protocol": "openai", "base_url": "http://127.0.0.1:9/v1", "api_key": "k",
             "headers": {"x-extra": "1"}, "timeouts": {"connect_ms": 100, "first_token_ms": 200, "idle_ms": 300, "total_ms": 400}},
            {"slug": "b", "protocol": "anthropic", "base_url": "https://example.com/", "anthropic_version": "2023-06-01",
             "anthropic_beta": "tools-2024"},
        ],
        "models": [
            {"slug": "test/model", "context_window": 1000, "endpoints": [
                {"provider": "a", "upstream_model": "gpt", "price": {"prompt": 1.5, "completion": 2}, "expected_first_token_ms": 50.0, "max_concurrency": 4},
                {"provider": "b", "name": "fast", "upstream_model": "claude", "context_window": 100000},
            ]},
            {"slug": "test/other", "endpoints": [{"provider": "b", "upstream_model": "claude"}]},
        ],
        "timeouts": {"connect_ms": 1000, "first_token_ms": 2000, "idle_ms": 3000, "total_ms": 4000},
        "health": {"failure_threshold": 2, "base_ejection_ms": 10, "max_ejection_ms": 100, "half_life_ms": 1000,
                   "default_first_token_ms": 500.0, "explore_ratio": 0.1, "max_retry_after_ms": 1000, "active_probe_interval_ms": 50},
        "failover": {"statuses": [429, 500, 503]},
        "worker_threads": 1,
        "retry": {"max_retries": 1, "base_backoff_ms": 10, "max_backoff_ms": 100, "max_retry_after_ms": 1000},
        "hedging": {"enabled": true, "delay_ms": 20, "percentile": 0.9, "fallback_delay_ms": 100},
        "sticky": {"from_user": true, "ttl_ms": 1000, "capacity": 10},
    })
}

fn parse_config(text: &str) {
    if let Err(e) = Catalog::from_json(text) {
        assert!(!e.0.is_empty(), "an error list is never empty");
        let _ = e.to_string();
    }
}

/// The path of a node as serde_path_to_error writes it (`a.b[0].c`).
fn path_string(p: &[Seg]) -> String {
    let mut s = String::new();
    for seg in p {
        match seg {
            Seg::Key(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(k);
            }
            Seg::At(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

/// A config built from a list of choices, some of them invalid, with the
/// paths the errors must name.
fn bad_config(choices: &[u8]) -> (Value, Vec<String>) {
    let mut at = 0usize;
    let mut pick = |n: u8| {
        let c = choices[at % choices.len()] % n;
        at += 1;
        c
    };
    let mut expected = Vec::new();
    let mut cfg = Map::new();

    let np = 1 + pick(3) as usize;
    let mut providers = Vec::new();
    let mut slugs = Vec::new();
    for i in 0..np {
        let here = |f: &str| format!("providers[{i}].{f}");
        let mut p = Map::new();
        let slug = match pick(8) {
            0 => ["", "a b", "x/y", "é", "a:b"][pick(5) as usize].to_owned(),
            _ => format!("p{i}"),
        };
        if slug != format!("p{i}") {
            expected.push(here("slug"));
        }
        slugs.push(slug.clone());
        p.insert("slug".into(), json!(slug));
        let anthropic = pick(2) == 0;
        let protocol_ok = pick(8) != 0;
        p.insert(
            "protocol".into(),
            json!(if !protocol_ok {
                "grpc"
            } else if anthropic {
                "anthropic"
            } else {
                "openai"
            }),
        );
        if !protocol_ok {
            expected.push(here("protocol"));
        }
        let url = match pick(8) {
            0 => {
                expected.push(here("base_url"));
                ["ftp://x", "not a url", "http://", "", "file:///etc"][pick(5) as usize]
            }
            _ => "http://127.0.0.1:9/v1",
        };
        p.insert("base_url".into(), json!(url));
        match pick(10) {
            0 => {
                p.insert("api_key".into(), json!("k"));
                p.insert("api_key_env".into(), json!("HOME"));
                expected.push(here("api_key"));
            }
            1 => {
                p.insert("api_key".into(), json!("a\nb"));
                expected.push(here("api_key"));
            }
            2 => {
                p.insert("api_key_env".into(), json!("LLMUX_PROPTEST_SURELY_UNSET"));
                expected.push(here("api_key_env"));
            }
            3 => {
                p.insert("headers".into(), json!({"bad name": "x"}));
                expected.push(here("headers.bad name"));
            }
            4 => {
                p.insert("headers".into(), json!({"x-ok": "a\nb"}));
                expected.push(here("headers.x-ok"));
            }
            5 if protocol_ok && !anthropic => {
                p.insert("anthropic_version".into(), json!("2023-06-01"));
                expected.push(here("anthropic_version"));
            }
            6 if protocol_ok && anthropic => {
                p.insert("anthropic_beta".into(), json!("a\u{7f}b"));
                expected.push(here("anthropic_beta"));
            }
            7 => {
                let f = ["connect_ms", "first_token_ms", "idle_ms", "total_ms"][pick(4) as usize];
                p.insert("timeouts".into(), json!({ f: 0 }));
                expected.push(here(&format!("timeouts.{f}")));
            }
            _ => {
                p.insert("api_key".into(), json!("sk-ok"));
            }
        }
        providers.push(Value::Object(p));
    }
    cfg.insert("providers".into(), Value::Array(providers));

    let nm = 1 + pick(3) as usize;
    let mut models = Vec::new();
    for i in 0..nm {
        let here = |f: &str| format!("models[{i}].{f}");
        let mut m = Map::new();
        let slug = match pick(8) {
            0 => {
                expected.push(here("slug"));
                ["nope", "a/b/c", "a:x/b", " a/b", "/b", "a/"][pick(6) as usize].to_owned()
            }
            _ => format!("v/m{i}"),
        };
        m.insert("slug".into(), json!(slug));
        let ne = pick(4) as usize;
        if ne == 0 {
            expected.push(here("endpoints"));
        }
        let mut eps = Vec::new();
        for j in 0..ne {
            let here = |f: &str| format!("models[{i}].endpoints[{j}].{f}");
            let mut e = Map::new();
            e.insert("upstream_model".into(), json!("u"));
            // Each endpoint gets its own name so that only the chosen
            // problems are reported.
            e.insert("name".into(), json!(format!("e{j}")));
            if pick(8) == 0 {
                e.insert("provider".into(), json!("zz-unknown"));
                expected.push(here("provider"));
            } else {
                e.insert("provider".into(), json!(slugs[pick(np as u8) as usize]));
                match pick(12) {
                    0 => {
                        e.insert("name".into(), json!("a b"));
                        expected.push(here("name"));
                    }
                    1 => {
                        e.insert("upstream_model".into(), json!(""));
                        expected.push(here("upstream_model"));
                    }
                    2 => {
                        e.insert("price".into(), json!({"prompt": -1}));
                        expected.push(here("price.prompt"));
                    }
                    3 => {
                        e.insert("price".into(), json!({"completion": -0.5}));
                        expected.push(here("price.completion"));
                    }
                    4 => {
                        e.insert("max_concurrency".into(), json!(0));
                        expected.push(here("max_concurrency"));
                    }
                    5 => {
                        e.insert("expected_first_token_ms".into(), json!(-1.0));
                        expected.push(here("expected_first_token_ms"));
                    }
                    _ => {}
                }
            }
            eps.push(Value::Object(e));
        }
        m.insert("endpoints".into(), Value::Array(eps));
        models.push(Value::Object(m));
    }
    cfg.insert("models".into(), Value::Array(models));

    let globals: [(&str, Value); 10] = [
        (
            "health.failure_threshold",
            json!({"health": {"failure_threshold": 0}}),
        ),
        (
            "health.half_life_ms",
            json!({"health": {"half_life_ms": 0}}),
        ),
        (
            "health.explore_ratio",
            json!({"health": {"explore_ratio": 1.5}}),
        ),
        (
            "health.default_first_token_ms",
            json!({"health": {"default_first_token_ms": -1}}),
        ),
        (
            "health.active_probe_interval_ms",
            json!({"health": {"active_probe_interval_ms": 0}}),
        ),
        (
            "hedging.percentile",
            json!({"hedging": {"percentile": -0.1}}),
        ),
        (
            "failover.statuses[1]",
            json!({"failover": {"statuses": [500, 42]}}),
        ),
        ("worker_threads", json!({"worker_threads": 257})),
        ("worker_threads", json!({"worker_threads": 100000})),
        ("timeouts.idle_ms", json!({"timeouts": {"idle_ms": 0}})),
    ];
    for (path, v) in globals {
        if pick(10) == 0 {
            for (k, x) in v.as_object().unwrap() {
                match (cfg.get_mut(k), x) {
                    (Some(Value::Object(have)), Value::Object(add)) => {
                        have.extend(add.clone());
                    }
                    _ => {
                        cfg.insert(k.clone(), x.clone());
                    }
                }
            }
            expected.push(path.to_owned());
        }
    }
    (Value::Object(cfg), expected)
}

/// Nodes of the valid config whose type can be made wrong, with wrong
/// values for them: (path, value).
fn arb_retyped_config() -> BoxedStrategy<(Value, String)> {
    (any::<Index>(), any::<Index>())
        .prop_filter_map("the root", |(i, j)| {
            let mut cfg = valid_config();
            let paths = node_paths(&cfg);
            let p = paths[1 + i.index(paths.len() - 1)].clone();
            let node = node_mut(&mut cfg, &p);
            // No nulls (options take them), no arrays for objects (serde
            // reads structs from sequences), no numbers for numbers.
            let wrong: &[Value] = match node {
                Value::String(_) => &[json!(5), json!(true), json!({}), json!(["x"])],
                Value::Number(_) => &[json!("5"), json!(false), json!({}), json!([1])],
                Value::Bool(_) => &[json!("true"), json!(1), json!({})],
                Value::Object(_) => &[json!(5), json!("x"), json!(true)],
                Value::Array(_) => &[json!({}), json!("x"), json!(7)],
                Value::Null => return None,
            };
            *node = wrong[j.index(wrong.len())].clone();
            Some((cfg, path_string(&p)))
        })
        .boxed()
}

proptest! {
    #![proptest_config(cfg(500))]

    #[test]
    fn config_arbitrary_bytes_never_panic(bytes in arb_bytes()) {
        parse_config(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn config_arbitrary_json_never_panics(v in arb_json()) {
        parse_config(&v.to_string());
    }

    #[test]
    fn config_invalid_parts_are_reported_with_their_paths(
        choices in prop::collection::vec(any::<u8>(), 64),
    ) {
        let (doc, expected) = bad_config(&choices);
        let text = doc.to_string();
        match Catalog::from_json(&text) {
            Ok(_) => prop_assert!(expected.is_empty(), "accepted despite {expected:?}: {text}"),
            Err(errs) => {
                prop_assert!(!expected.is_empty(), "unexpected errors {errs} for {text}");
                for e in &errs.0 {
                    prop_assert!(!e.path.is_empty(), "error without a path: {e} in {text}");
                }
                let all = errs.to_string();
                for p in &expected {
                    prop_assert!(
                        errs.0.iter().any(|e| &e.path == p) && all.contains(&format!("{p}: ")),
                        "no error at {p:?}: {all}\nconfig: {text}"
                    );
                }
            }
        }
    }

    #[test]
    fn config_wrong_types_are_reported_with_their_paths((doc, path) in arb_retyped_config()) {
        let text = doc.to_string();
        let errs = Catalog::from_json(&text).expect_err("a wrongly typed field is an error");
        prop_assert_eq!(errs.0.len(), 1);
        prop_assert_eq!(&errs.0[0].path, &path, "{}", errs);
        prop_assert!(errs.to_string().contains(&format!("{path}: ")), "{}", errs);
    }
}

proptest! {
    #![proptest_config(cfg(2000))]

    #[test]
    fn config_mutations_never_panic(v in arb_mutated(vec![valid_config()], 4)) {
        let text = v.to_string();
        parse_config(&text);
        // Structural errors name a path unless the root itself is wrong
        // (or the culprit is an unknown key `""` at the root: its path is
        // the empty string, and the message says "unknown field ``").
        if let Err(e) = Config::parse(&text) {
            if v.as_object().is_some_and(|m| !m.contains_key("")) {
                prop_assert!(!e.0[0].path.is_empty(), "{}", e);
            }
        }
    }
}

#[test]
fn seed_config_is_valid() {
    Catalog::from_json(&valid_config().to_string()).expect("valid seed config");
    let (doc, expected) = bad_config(&[9]);
    assert!(expected.is_empty());
    Catalog::from_json(&doc.to_string()).expect("all-valid choices");
}

#[test]
fn unknown_config_keys_are_reported_with_their_paths() {
    let mut cfg = valid_config();
    cfg["models"][0]["endpoints"][1]["pirce"] = json!(1);
    let e = Catalog::from_json(&cfg.to_string())
        .unwrap_err()
        .to_string();
    assert!(e.contains("models[0].endpoints[1]"), "{e}");
    assert!(e.contains("pirce"), "{e}");
}

// ---------------------------------------------------------------------------
// (c) request parser

fn catalog() -> &'static Catalog {
    static C: OnceLock<Catalog> = OnceLock::new();
    C.get_or_init(|| Catalog::from_json(&valid_config().to_string()).expect("valid config"))
}

fn llmux_requests() -> Vec<Value> {
    let mut out = Vec::new();
    for mut r in openai_requests().into_iter().chain(anthropic_requests()) {
        r["models"] = json!(["test/other", "test/model:b"]);
        r["provider"] = json!({
            "routing": {"type": "order", "providers": ["b/fast", "b"]},
            "fallback": ["test/other"],
            "timeouts": {"connect_ms": 100, "first_token_ms": 1000},
            "hedge": {"delay_ms": 5},
            "sticky_key": "conversation-1",
        });
        out.push(r);
    }
    out.push(json!({
        "model": "test/model:a", "messages": [{"role": "user", "content": "hi"}], "user": "u",
        "provider": {"routing": {"type": "priority", "primary_factor": "price"}, "fallback": "test/other", "hedge": {"percentile": 0.5}},
        "metadata": {"user_id": "u"},
    }));
    out.push(json!({"model": "test/model", "messages": [], "stream": false, "provider": {"hedge": true}}));
    out
}

fn check_request(protocol: Protocol, bytes: &[u8]) {
    if let Ok(r) = request::parse(catalog(), protocol, bytes) {
        assert!(!r.routes.is_empty());
        assert!(r.routes.iter().all(|x| !x.candidates.is_empty()));
        assert!(!r.body.tree().contains_key("provider") && !r.body.tree().contains_key("models"));
        let _ = r.model_slug();
    }
}

proptest! {
    #![proptest_config(cfg(500))]

    #[test]
    fn request_arbitrary_bytes_never_panic(bytes in arb_bytes()) {
        for p in PROTOCOLS {
            check_request(p, &bytes);
        }
    }

    #[test]
    fn request_arbitrary_json_never_panics(v in arb_json()) {
        let bytes = v.to_string().into_bytes();
        for p in PROTOCOLS {
            check_request(p, &bytes);
        }
    }
}

proptest! {
    #![proptest_config(cfg(2000))]

    #[test]
    fn request_mutations_never_panic(v in arb_mutated(llmux_requests(), 4)) {
        let bytes = v.to_string().into_bytes();
        for p in PROTOCOLS {
            check_request(p, &bytes);
        }
    }
}

#[test]
fn seed_requests_parse() {
    // The seeds are Chat / Messages bodies; a Responses body needs `input`.
    for r in llmux_requests() {
        for p in [Protocol::OpenAi, Protocol::Anthropic] {
            request::parse(catalog(), p, r.to_string().as_bytes())
                .unwrap_or_else(|e| panic!("{p:?} {r}: {e}"));
        }
    }
}

// ---------------------------------------------------------------------------
// (d) translators

fn translate_request(v: &Value) {
    let Some(body) = as_map(v) else { return };
    if let Ok(out) = translate::openai_request_to_anthropic(body) {
        assert!(out.is_object());
    }
    if let Ok(out) = translate::anthropic_request_to_openai(body) {
        assert!(out.is_object());
    }
    for (up, caller) in pairs() {
        let _ = protocol::upstream_request(up, caller, body, "upstream-model", true);
    }
}

fn convert_all(body: &[u8]) {
    for (up, caller) in pairs() {
        if let Ok(c) = protocol::convert_response(up, caller, body, 1) {
            if up != caller {
                assert!(
                    serde_json::from_str::<Value>(&c.body).is_ok(),
                    "{up:?}->{caller:?}: {}",
                    c.body
                );
            }
        }
    }
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        for status in [200, 400, 429, 529, 0, 999] {
            let _ = translate::openai_error_to_anthropic(status, &v);
            let _ = translate::anthropic_error_to_openai(status, &v);
        }
    }
}

proptest! {
    #![proptest_config(cfg(2000))]

    #[test]
    fn translate_mutated_requests_never_panic(
        v in arb_mutated(openai_requests().into_iter().chain(anthropic_requests()).collect(), 4),
    ) {
        translate_request(&v);
    }

    #[test]
    fn convert_mutated_responses_never_panics(
        v in arb_mutated(openai_responses().into_iter().chain(anthropic_responses()).collect(), 4),
    ) {
        convert_all(v.to_string().as_bytes());
    }
}

proptest! {
    #![proptest_config(cfg(500))]

    #[test]
    fn translate_arbitrary_json_never_panics(v in arb_json()) {
        translate_request(&v);
        convert_all(v.to_string().as_bytes());
    }

    #[test]
    fn convert_arbitrary_bytes_never_panics(bytes in arb_bytes()) {
        convert_all(&bytes);
    }
}

proptest! {
    #![proptest_config(cfg(2000))]

    #[test]
    fn stream_adapters_never_panic(events in arb_script(), include_usage in any::<bool>()) {
        run_adapters(&events, include_usage);
    }

    #[test]
    fn stream_adapters_on_decoded_arbitrary_bytes_never_panic(bytes in arb_bytes()) {
        let (events, _) = decode(&bytes, &[]);
        run_adapters(&events, true);
    }
}

#[test]
fn seed_documents_translate() {
    for r in openai_requests() {
        translate::openai_request_to_anthropic(r.as_object().unwrap())
            .unwrap_or_else(|e| panic!("{r}: {e}"));
    }
    for r in anthropic_requests() {
        translate::anthropic_request_to_openai(r.as_object().unwrap())
            .unwrap_or_else(|e| panic!("{r}: {e}"));
    }
    for r in &openai_responses()[..2] {
        for c in PROTOCOLS {
            protocol::convert_response(Protocol::OpenAi, c, r.to_string().as_bytes(), 1)
                .unwrap_or_else(|e| panic!("{r}: {e}"));
        }
    }
    for r in &anthropic_responses()[..2] {
        for c in PROTOCOLS {
            protocol::convert_response(Protocol::Anthropic, c, r.to_string().as_bytes(), 1)
                .unwrap_or_else(|e| panic!("{r}: {e}"));
        }
    }
    // The unedited scripts go through their own adapters to the end.
    let scripts = stream_scripts();
    for (k, up) in [
        (0, Protocol::OpenAi),
        (1, Protocol::OpenAi),
        (3, Protocol::Anthropic),
        (5, Protocol::Anthropic),
    ] {
        for caller in PROTOCOLS {
            let mut a = protocol::stream_adapter(up, caller, ctx(true));
            let mut finished = false;
            for e in scripts[k].iter().map(to_event) {
                finished = a
                    .on_event(&e)
                    .unwrap_or_else(|e| panic!("script {k} {up:?}->{caller:?}: {e}"))
                    .finished;
            }
            assert!(finished, "script {k} {up:?}->{caller:?}");
        }
    }
}

// ---------------------------------------------------------------------------
// (e) OpenAI -> Anthropic -> OpenAI keeps a simple conversation

#[derive(Clone, Debug)]
struct Exchange {
    /// The user's message; forced when the previous message was not a tool result.
    user: Option<String>,
    text: Option<String>,
    /// (name, arguments, tool result)
    calls: Vec<(String, Value, String)>,
}

/// A JSON object of tool arguments: no floats that print inexactly.
fn arb_args() -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        select(&[0.5f64, -2.25, 1e10][..]).prop_map(Value::from),
        "(?s).{0,10}".prop_map(Value::String),
    ];
    let tree = leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z]{1,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    });
    prop::collection::btree_map("(?s).{1,8}", tree, 0..4)
        .prop_map(|m| Value::Object(m.into_iter().collect()))
        .boxed()
}

fn arb_text() -> BoxedStrategy<String> {
    prop_oneof!["(?s).{1,20}", "[a-zA-Z ,.!?]{1,20}"].boxed()
}

fn arb_exchange() -> BoxedStrategy<Exchange> {
    (
        prop::option::of(arb_text()),
        prop::option::of(arb_text()),
        prop::collection::vec(
            ("[a-zA-Z_][a-zA-Z0-9_-]{0,12}", arb_args(), "(?s).{0,16}"),
            0..3,
        ),
    )
        .prop_map(|(user, text, calls)| Exchange { user, text, calls })
        .boxed()
}

/// Builds the OpenAI messages; no two messages that Anthropic would merge
/// into one turn with a different order.
fn conversation(system: &Option<String>, exchanges: &[Exchange]) -> Vec<Value> {
    let mut msgs = Vec::new();
    if let Some(s) = system {
        msgs.push(json!({"role": "system", "content": s}));
    }
    let mut after_tool = false;
    let mut call_no = 0;
    for ex in exchanges {
        match (&ex.user, after_tool) {
            (Some(u), _) => msgs.push(json!({"role": "user", "content": u})),
            (None, false) => msgs.push(json!({"role": "user", "content": "go on"})),
            (None, true) => {}
        }
        let mut a = Map::new();
        a.insert("role".into(), json!("assistant"));
        let text = match (&ex.text, ex.calls.is_empty()) {
            (Some(t), _) => Some(t.clone()),
            (None, true) => Some("ok".to_owned()),
            (None, false) => None,
        };
        a.insert("content".into(), text.map_or(Value::Null, Value::String));
        let mut results = Vec::new();
        if !ex.calls.is_empty() {
            let calls: Vec<Value> = ex
                .calls
                .iter()
                .map(|(name, args, result)| {
                    call_no += 1;
                    let id = format!("call_{call_no}");
                    results.push(json!({"role": "tool", "tool_call_id": id, "content": result}));
                    json!({"id": id, "type": "function", "function": {"name": name, "arguments": args.to_string()}})
                })
                .collect();
            a.insert("tool_calls".into(), Value::Array(calls));
        }
        msgs.push(Value::Object(a));
        after_tool = !results.is_empty();
        msgs.extend(results);
    }
    msgs
}

/// (role, text, tool calls (id, name, parsed arguments), tool_call_id) of each message.
type Flat = (String, String, Vec<(String, String, Value)>, Option<String>);

fn flatten(msgs: &[Value]) -> Vec<Flat> {
    msgs.iter()
        .map(|m| {
            let calls = m
                .get("tool_calls")
                .and_then(Value::as_array)
                .map(|cs| {
                    cs.iter()
                        .map(|c| {
                            let f = &c["function"];
                            let args = f["arguments"].as_str().expect("arguments are a string");
                            (
                                c["id"].as_str().unwrap().to_owned(),
                                f["name"].as_str().unwrap().to_owned(),
                                serde_json::from_str(args).expect("arguments are JSON"),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            (
                m["role"].as_str().unwrap().to_owned(),
                m["content"].as_str().unwrap_or("").to_owned(),
                calls,
                m.get("tool_call_id")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
            )
        })
        .collect()
}

proptest! {
    #![proptest_config(cfg(1000))]

    #[test]
    fn openai_anthropic_openai_round_trip_keeps_the_conversation(
        system in prop::option::of(arb_text()),
        exchanges in prop::collection::vec(arb_exchange(), 1..5),
    ) {
        let msgs = conversation(&system, &exchanges);
        let mut body = Map::new();
        body.insert("model".into(), json!("m"));
        body.insert("messages".into(), Value::Array(msgs.clone()));
        let anthropic = translate::openai_request_to_anthropic(&body)
            .map_err(|e| TestCaseError::fail(format!("to Anthropic: {e}")))?;
        let back = translate::anthropic_request_to_openai(anthropic.as_object().unwrap())
            .map_err(|e| TestCaseError::fail(format!("back to OpenAI: {e}\n{anthropic}")))?;
        let back_msgs = back["messages"].as_array().unwrap();
        prop_assert_eq!(flatten(&msgs), flatten(back_msgs), "via {}", anthropic);
    }
}

// ---------------------------------------------------------------------------
// (f) the same-protocol splice (protocol::splice): the bytes sent upstream
// parse to what the tree path (`upstream_request` over the parsed map)
// builds, for arbitrary objects written with arbitrary blanks, escaped
// keys and repeated keys; reading refuses exactly what a `Value` parse
// refuses, with the same message.

const SPLICE_KEYS: &[&str] = &[
    "model",
    "stream",
    "stream_options",
    "provider",
    "models",
    "messages",
    "system",
    "tools",
    "input",
    "instructions",
    "include_usage",
];
const BLANKS: &[&str] = &["", " ", "\n", "\t", "\r\n  "];

/// One entry: key, value, whether the key is written with a `\u` escape,
/// whether the value is pretty-printed, and the blanks around it.
type SpliceEntry = (String, Value, bool, bool, [usize; 4]);

fn arb_splice_entry() -> BoxedStrategy<SpliceEntry> {
    let key = prop_oneof![3 => select(SPLICE_KEYS).prop_map(String::from), 2 => arb_key()];
    let value = prop_oneof![
        4 => arb_json(),
        1 => prop::collection::vec((select(SPLICE_KEYS).prop_map(String::from), arb_json()), 0..4)
            .prop_map(|kv| Value::Object(kv.into_iter().collect())),
    ];
    let blanks = [
        0..BLANKS.len(),
        0..BLANKS.len(),
        0..BLANKS.len(),
        0..BLANKS.len(),
    ];
    (key, value, any::<bool>(), any::<bool>(), blanks).boxed()
}

fn write_splice_body(entries: &[SpliceEntry], end: usize) -> String {
    let mut out = String::from("{");
    for (i, (k, v, escape, pretty, b)) in entries.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(BLANKS[b[0]]);
        match k.chars().next() {
            Some(c) if *escape && (c as u32) < 0x10000 => {
                out.push_str(&format!("\"\\u{:04x}", c as u32));
                let rest = serde_json::to_string(&k[c.len_utf8()..]).unwrap();
                out.push_str(&rest[1..]);
            }
            _ => out.push_str(&serde_json::to_string(k).unwrap()),
        }
        out.push_str(BLANKS[b[1]]);
        out.push(':');
        out.push_str(BLANKS[b[2]]);
        match pretty {
            true => out.push_str(&serde_json::to_string_pretty(v).unwrap()),
            false => out.push_str(&v.to_string()),
        }
        out.push_str(BLANKS[b[3]]);
    }
    out.push('}');
    out.push_str(BLANKS[end]);
    out
}

/// `compact`: the same entries written without blanks or key escapes.
fn check_splice(text: &str, compact: &str) {
    use protocol::splice::{read, Body};
    let (valid, _) = read(text.as_bytes()).expect("a valid object reads");
    let body = Body::new(valid);
    let mut tree: Map<String, Value> = serde_json::from_str(text).unwrap();
    for k in ["provider", "models"] {
        tree.shift_remove(k);
    }
    assert_eq!(body.tree(), &tree, "{text}");
    // The estimate is the tree's, blanks and escapes aside (numbers count
    // as written, and a parsed float may print differently).
    assert_eq!(
        Body::from_map(&tree).prompt_tokens_estimate(),
        request::estimate_prompt_tokens(&tree),
        "{text}"
    );
    let compact = Body::new(read(compact.as_bytes()).unwrap().0);
    assert_eq!(
        body.prompt_tokens_estimate(),
        compact.prompt_tokens_estimate(),
        "{text}"
    );
    for up in [Protocol::OpenAi, Protocol::Anthropic] {
        for stream in [false, true] {
            let bytes = protocol::upstream_request_bytes(up, up, &body, "up/m\"1", stream).unwrap();
            let got: Value = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                panic!(
                    "{up:?} stream={stream}: {e}\n{text}\n{}",
                    String::from_utf8_lossy(&bytes)
                )
            });
            let want = protocol::upstream_request(up, up, &tree, "up/m\"1", stream).unwrap();
            assert_eq!(
                got,
                want,
                "{up:?} stream={stream}\n{text}\n{}",
                String::from_utf8_lossy(&bytes)
            );
        }
    }
}

proptest! {
    #![proptest_config(cfg(1000))]

    #[test]
    fn splice_parses_to_the_tree_paths_body(
        entries in prop::collection::vec(arb_splice_entry(), 0..8),
        end in 0..BLANKS.len(),
    ) {
        let plain: Vec<SpliceEntry> = entries
            .iter()
            .map(|(k, v, ..)| (k.clone(), v.clone(), false, false, [0; 4]))
            .collect();
        check_splice(&write_splice_body(&entries, end), &write_splice_body(&plain, 0));
    }

    #[test]
    fn splice_refuses_what_a_value_parse_refuses(
        entries in prop::collection::vec(arb_splice_entry(), 0..5),
        cut in any::<Index>(),
        junk in prop::collection::vec(any::<u8>(), 0..3),
    ) {
        // A valid body cut short and / or with bytes appended.
        let text = write_splice_body(&entries, 0);
        let mut bytes = text.as_bytes()[..cut.index(text.len() + 1)].to_vec();
        bytes.extend(junk);
        let got = protocol::splice::read(&bytes).map(|_| ());
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(_)) => prop_assert_eq!(got, Ok(())),
            Ok(_) => prop_assert_eq!(got, Err(protocol::splice::ReadError::NotObject)),
            Err(e) => prop_assert_eq!(got, Err(protocol::splice::ReadError::Json(e.to_string()))),
        }
    }
}

#[test]
fn splice_keeps_the_callers_bytes() {
    let text = "{\"temperature\" : 0.50,\"model\":\"test/model\",\n \"provider\": {\"hedge\": true},\n\"messages\":[{\"role\":\"user\",\"content\":\"caf\\u00e9 \\/ \\\"model\\\": \\\"x\\\"\",\"model\":\"inner\"}], \"models\":[\"test/other\"] ,\"z\":1e2}";
    let r = request::parse(catalog(), Protocol::OpenAi, text.as_bytes()).unwrap();
    let bytes =
        protocol::upstream_request_bytes(Protocol::OpenAi, Protocol::OpenAi, &r.body, "up", false)
            .unwrap();
    assert_eq!(
        String::from_utf8(bytes).unwrap(),
        "{\"temperature\" : 0.50,\"model\":\"up\",\n\"messages\":[{\"role\":\"user\",\"content\":\"caf\\u00e9 \\/ \\\"model\\\": \\\"x\\\"\",\"model\":\"inner\"}] ,\"z\":1e2}"
    );
    check_splice(text, text);
}
