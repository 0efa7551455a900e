//! Every payload the engine emits, for the four caller protocols (OpenAI
//! Chat Completions, Anthropic Messages, OpenAI Responses, Google Gemini)
//! and the four upstream protocols (so every direction of translation plus the passthroughs),
//! streaming and not, is collected into `target/sdk-payloads.jsonl`, one JSON
//! line per case.
//!
//! The Rust side checks the basics on its own (one terminal per request, the
//! right terminal kind, the text, tool calls and error status survive). When
//! `LLMUX_SDK_PYTHON` names a Python with the pinned `openai` and `anthropic`
//! packages (see `tests/python/run.sh`), the file is then fed through
//! `tests/python/validate_sdk.py`, which validates every chunk, event, body
//! and error against the SDKs' own pydantic models and stream accumulators,
//! and this test fails when it does.

mod common;

use common::{behavior, drain};
use llmux::{Engine, EventKind, Protocol};
use llmux_fleet::{Behavior, MockServer};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const TEXT: &str = "Hello there, this is a plain answer.";
const TOOL_TEXT: &str = "Let me look that up.";
const THINKING: &str = "The user greets me; a short friendly reply fits.";
const THINKING_TEXT: &str = "Hi! How can I help today?";
const UNICODE_TEXT: &str = "Grüße, 世界! 🌍 naïve café — ✓ 𝄞 \"quoted\" \\ tab\there";

fn tool_calls() -> Vec<(&'static str, &'static str)> {
    vec![
        ("get_weather", r#"{"city":"Paris","units":"celsius"}"#),
        (
            "get_time",
            r#"{"timezone":"Europe/Paris","format":{"24h":true,"seconds":false},"note":"ünïcode ✓"}"#,
        ),
    ]
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Scenario {
    Text,
    Tools,
    Thinking,
    Error,
    Unicode,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::Text => "text",
            Scenario::Tools => "tools",
            Scenario::Thinking => "thinking",
            Scenario::Error => "error429",
            Scenario::Unicode => "unicode",
        }
    }

    fn behavior(self) -> Behavior {
        match self {
            Scenario::Text => behavior(json!({"text": TEXT, "chunks": 4})),
            Scenario::Tools => {
                let calls: Vec<Value> = tool_calls()
                    .into_iter()
                    .map(|(n, a)| json!({"name": n, "arguments": a}))
                    .collect();
                behavior(json!({
                    "text": TOOL_TEXT, "chunks": 3,
                    "tool_calls": calls, "arg_fragment_len": 3,
                }))
            }
            Scenario::Thinking => behavior(json!({
                "text": THINKING_TEXT, "chunks": 3, "thinking": THINKING,
            })),
            Scenario::Error => behavior(json!({"status": 429})),
            Scenario::Unicode => behavior(json!({
                "text": UNICODE_TEXT, "chunks": 9, "fault": "split_utf8",
            })),
        }
    }

    fn expect(self, caller: Protocol, upstream: Protocol) -> Value {
        let (text, calls, status, mut thinking) = match self {
            Scenario::Text => (TEXT, vec![], None, None),
            Scenario::Tools => (TOOL_TEXT, tool_calls(), None, None),
            Scenario::Thinking => (THINKING_TEXT, vec![], None, Some(THINKING)),
            Scenario::Error => ("", vec![], Some(429), None),
            Scenario::Unicode => (UNICODE_TEXT, vec![], None, None),
        };
        // An Anthropic caller gets thinking only from an Anthropic upstream
        // (a thinking block needs a signature llmux cannot make).
        if caller == Protocol::Anthropic && upstream != Protocol::Anthropic {
            thinking = None;
        }
        // A Gemini caller gets thought parts from every upstream: each
        // one's thinking or reasoning text reaches the conversation model.
        let calls: Vec<Value> = calls
            .into_iter()
            .map(|(n, a)| json!({"name": n, "arguments": a}))
            .collect();
        json!({"text": text, "tool_calls": calls, "error_status": status, "thinking": thinking})
    }
}

fn proto_name(p: Protocol) -> &'static str {
    match p {
        Protocol::OpenAi => "openai",
        Protocol::Anthropic => "anthropic",
        Protocol::Responses => "responses",
        Protocol::Gemini => "gemini",
    }
}

/// The request a caller of `caller`'s protocol sends for `scenario`.
fn request(caller: Protocol, model: &str, stream: bool, scenario: Scenario) -> Value {
    let tools = scenario == Scenario::Tools;
    match caller {
        Protocol::OpenAi => {
            let mut body = json!({
                "model": model,
                "stream": stream,
                "messages": [
                    {"role": "system", "content": "You are terse."},
                    {"role": "user", "content": "hi"},
                ],
            });
            // Usage chunk requested in some cases, not in others: both
            // stream shapes must satisfy the SDK's accumulator.
            if stream && matches!(scenario, Scenario::Tools | Scenario::Unicode) {
                body["stream_options"] = json!({"include_usage": true});
            }
            if tools {
                body["tools"] = json!([
                    {"type": "function", "function": {"name": "get_weather",
                     "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}},
                    {"type": "function", "function": {"name": "get_time",
                     "parameters": {"type": "object", "properties": {"timezone": {"type": "string"}}}}},
                ]);
            }
            body
        }
        Protocol::Anthropic => {
            let mut body = json!({
                "model": model,
                "max_tokens": 256,
                "system": "You are terse.",
                "messages": [{"role": "user", "content": "hi"}],
                "stream": stream,
            });
            if tools {
                body["tools"] = json!([
                    {"name": "get_weather",
                     "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}},
                    {"name": "get_time",
                     "input_schema": {"type": "object", "properties": {"timezone": {"type": "string"}}}},
                ]);
            }
            if scenario == Scenario::Thinking {
                body["thinking"] = json!({"type": "enabled", "budget_tokens": 1024});
                body["max_tokens"] = json!(2048);
            }
            body
        }
        Protocol::Gemini => {
            let mut body = json!({
                "model": model,
                "stream": stream,
                "systemInstruction": {"parts": [{"text": "You are terse."}]},
                "contents": [{"role": "user", "parts": [{"text": "hi"}]}],
            });
            if tools {
                body["tools"] = json!([{"functionDeclarations": [
                    {"name": "get_weather",
                     "parameters": {"type": "OBJECT", "properties": {"city": {"type": "STRING"}}}},
                    {"name": "get_time",
                     "parametersJsonSchema": {"type": "object", "properties": {"timezone": {"type": "string"}}}},
                ]}]);
            }
            if scenario == Scenario::Thinking {
                body["generationConfig"] = json!({"maxOutputTokens": 2048,
                    "thinkingConfig": {"thinkingBudget": 1024, "includeThoughts": true}});
            }
            body
        }
        Protocol::Responses => {
            let mut body = json!({
                "model": model,
                "stream": stream,
                "instructions": "You are terse.",
                "input": [{"type": "message", "role": "user",
                           "content": [{"type": "input_text", "text": "hi"}]}],
            });
            if tools {
                body["tools"] = json!([
                    {"type": "function", "name": "get_weather", "strict": false,
                     "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}},
                    {"type": "function", "name": "get_time", "strict": false,
                     "parameters": {"type": "object", "properties": {"timezone": {"type": "string"}}}},
                ]);
            }
            if scenario == Scenario::Thinking {
                body["reasoning"] = json!({"effort": "low", "summary": "auto"});
                body["max_output_tokens"] = json!(2048);
            }
            body
        }
    }
}

struct Case {
    name: String,
    caller: Protocol,
    upstream: Protocol,
    stream: bool,
    scenario: Scenario,
}

fn cases() -> Vec<Case> {
    let mut out = Vec::new();
    let all = [
        Protocol::OpenAi,
        Protocol::Anthropic,
        Protocol::Responses,
        Protocol::Gemini,
    ];
    for caller in all {
        for upstream in all {
            for stream in [false, true] {
                for scenario in [
                    Scenario::Text,
                    Scenario::Tools,
                    Scenario::Thinking,
                    Scenario::Error,
                    Scenario::Unicode,
                ] {
                    if scenario == Scenario::Thinking && upstream == Protocol::OpenAi {
                        continue; // the mock reasons on Anthropic and Responses only
                    }
                    out.push(Case {
                        name: format!(
                            "{}-caller/{}-upstream/{}/{}",
                            proto_name(caller),
                            proto_name(upstream),
                            if stream { "stream" } else { "nonstream" },
                            scenario.name()
                        ),
                        caller,
                        upstream,
                        stream,
                        scenario,
                    });
                }
            }
        }
    }
    out
}

/// One engine per case (so a 429 leaves no health state behind), with two
/// providers on the same mock server: `oa` speaks OpenAI, `an` Anthropic.
fn engine_for(server: &MockServer) -> Engine {
    let cfg = json!({
        "providers": [
            {"slug": "oa", "protocol": "openai", "base_url": format!("{}/v1", server.base_url())},
            {"slug": "an", "protocol": "anthropic", "base_url": server.base_url()},
            {"slug": "rs", "protocol": "responses", "base_url": format!("{}/v1", server.base_url())},
            {"slug": "gm", "protocol": "gemini", "base_url": server.base_url()},
        ],
        "models": [
            {"slug": "test/via-openai", "endpoints": [
                {"provider": "oa", "upstream_model": "up-openai", "price": {"prompt": 1.0, "completion": 2.0}}]},
            {"slug": "test/via-anthropic", "endpoints": [
                {"provider": "an", "upstream_model": "up-anthropic", "price": {"prompt": 1.0, "completion": 2.0}}]},
            {"slug": "test/via-responses", "endpoints": [
                {"provider": "rs", "upstream_model": "up-responses", "price": {"prompt": 1.0, "completion": 2.0}}]},
            {"slug": "test/via-gemini", "endpoints": [
                {"provider": "gm", "upstream_model": "up-gemini", "price": {"prompt": 1.0, "completion": 2.0}}]},
        ],
        "health": {"explore_ratio": 0.0},
    });
    Engine::from_json(&cfg.to_string()).expect("valid config")
}

// ---------------------------------------------------------------------------
// what a plain client would reconstruct, per protocol and shape

#[derive(Debug, Default, PartialEq)]
struct Seen {
    text: String,
    thinking: String,
    /// (name, arguments as parsed JSON)
    calls: Vec<(String, Value)>,
}

fn args_value(s: &str, case: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("{case}: tool arguments {s:?} not JSON: {e}"))
}

fn seen_openai_response(r: &Value, case: &str) -> Seen {
    let m = &r["choices"][0]["message"];
    let mut s = Seen {
        text: m["content"].as_str().unwrap_or("").to_owned(),
        thinking: m["reasoning_content"].as_str().unwrap_or("").to_owned(),
        calls: vec![],
    };
    for c in m["tool_calls"].as_array().into_iter().flatten() {
        let name = c["function"]["name"].as_str().unwrap_or("").to_owned();
        let args = c["function"]["arguments"].as_str().unwrap_or("");
        s.calls.push((name, args_value(args, case)));
    }
    s
}

fn seen_openai_chunks(chunks: &[Value], case: &str) -> Seen {
    let mut s = Seen::default();
    let mut calls: Vec<(String, String)> = Vec::new();
    for ch in chunks {
        for choice in ch["choices"].as_array().into_iter().flatten() {
            let d = &choice["delta"];
            if let Some(t) = d["content"].as_str() {
                s.text.push_str(t);
            }
            if let Some(t) = d["reasoning_content"].as_str() {
                s.thinking.push_str(t);
            }
            for tc in d["tool_calls"].as_array().into_iter().flatten() {
                let i = tc["index"]
                    .as_u64()
                    .expect("tool call fragment has an index") as usize;
                while calls.len() <= i {
                    calls.push(Default::default());
                }
                if let Some(n) = tc["function"]["name"].as_str() {
                    calls[i].0.push_str(n);
                }
                if let Some(a) = tc["function"]["arguments"].as_str() {
                    calls[i].1.push_str(a);
                }
            }
        }
    }
    s.calls = calls
        .into_iter()
        .map(|(n, a)| (n, args_value(&a, case)))
        .collect();
    s
}

fn seen_anthropic_response(r: &Value) -> Seen {
    let mut s = Seen::default();
    for b in r["content"].as_array().into_iter().flatten() {
        match b["type"].as_str() {
            Some("text") => s.text.push_str(b["text"].as_str().unwrap_or("")),
            Some("thinking") => s.thinking.push_str(b["thinking"].as_str().unwrap_or("")),
            Some("tool_use") => s.calls.push((
                b["name"].as_str().unwrap_or("").to_owned(),
                b["input"].clone(),
            )),
            _ => {}
        }
    }
    s
}

fn seen_anthropic_events(events: &[Value], case: &str) -> Seen {
    // index -> (type, name, text/arguments)
    let mut blocks: Vec<(String, String, String)> = Vec::new();
    for e in events {
        match e["type"].as_str() {
            Some("content_block_start") => {
                let i = e["index"].as_u64().expect("block index") as usize;
                assert_eq!(i, blocks.len(), "{case}: blocks start in index order");
                let b = &e["content_block"];
                let ty = b["type"].as_str().unwrap_or("").to_owned();
                let name = b["name"].as_str().unwrap_or("").to_owned();
                let init = b["text"].as_str().or(b["thinking"].as_str()).unwrap_or("");
                blocks.push((ty, name, init.to_owned()));
            }
            Some("content_block_delta") => {
                let i = e["index"].as_u64().expect("block index") as usize;
                let d = &e["delta"];
                let piece = d["text"]
                    .as_str()
                    .or(d["thinking"].as_str())
                    .or(d["partial_json"].as_str())
                    .unwrap_or("");
                blocks
                    .get_mut(i)
                    .unwrap_or_else(|| panic!("{case}: delta for unopened block {i}"))
                    .2
                    .push_str(piece);
            }
            _ => {}
        }
    }
    let mut s = Seen::default();
    for (ty, name, body) in blocks {
        match ty.as_str() {
            "text" => s.text.push_str(&body),
            "thinking" => s.thinking.push_str(&body),
            "tool_use" => s.calls.push((
                name,
                args_value(if body.is_empty() { "{}" } else { &body }, case),
            )),
            _ => {}
        }
    }
    s
}

fn seen_responses_response(r: &Value, case: &str) -> Seen {
    let mut s = Seen::default();
    for item in r["output"].as_array().into_iter().flatten() {
        match item["type"].as_str() {
            Some("message") => {
                for p in item["content"].as_array().into_iter().flatten() {
                    s.text.push_str(p["text"].as_str().unwrap_or(""));
                }
            }
            Some("reasoning") => {
                let parts = item["content"]
                    .as_array()
                    .filter(|c| !c.is_empty())
                    .or(item["summary"].as_array());
                for p in parts.into_iter().flatten() {
                    s.thinking.push_str(p["text"].as_str().unwrap_or(""));
                }
            }
            Some("function_call") => s.calls.push((
                item["name"].as_str().unwrap_or("").to_owned(),
                args_value(item["arguments"].as_str().unwrap_or(""), case),
            )),
            _ => {}
        }
    }
    s
}

/// Assembles a Responses stream the way a plain client would, checking the
/// lifecycle order and that `sequence_number` grows by one.
fn seen_responses_events(events: &[Value], case: &str) -> Seen {
    let types: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
    assert_eq!(types.len(), events.len(), "{case}: every event has a type");
    assert_eq!(
        types.get(..2),
        Some(&["response.created", "response.in_progress"][..]),
        "{case}: {types:?}"
    );
    assert_eq!(
        types.last(),
        Some(&"response.completed"),
        "{case}: {types:?}"
    );
    let first = events[0]["sequence_number"]
        .as_u64()
        .expect("sequence_number");
    for (i, e) in events.iter().enumerate() {
        assert_eq!(
            e["sequence_number"].as_u64(),
            Some(first + i as u64),
            "{case}: sequence_number of event {i}"
        );
    }
    // output_index -> (type, name, text/arguments)
    let mut items: Vec<(String, String, String)> = Vec::new();
    for e in events {
        let i = e["output_index"].as_u64().unwrap_or(0) as usize;
        let delta = e["delta"].as_str().unwrap_or("");
        match e["type"].as_str().unwrap_or("") {
            "response.output_item.added" => {
                assert_eq!(i, items.len(), "{case}: items are added in index order");
                let it = &e["item"];
                items.push((
                    it["type"].as_str().unwrap_or("").to_owned(),
                    it["name"].as_str().unwrap_or("").to_owned(),
                    String::new(),
                ));
            }
            "response.output_text.delta"
            | "response.function_call_arguments.delta"
            | "response.reasoning_text.delta"
            | "response.reasoning_summary_text.delta" => items
                .get_mut(i)
                .unwrap_or_else(|| panic!("{case}: delta for unopened item {i}"))
                .2
                .push_str(delta),
            _ => {}
        }
    }
    let mut s = Seen::default();
    for (ty, name, body) in items {
        match ty.as_str() {
            "message" => s.text.push_str(&body),
            "reasoning" => s.thinking.push_str(&body),
            "function_call" => s.calls.push((name, args_value(&body, case))),
            _ => {}
        }
    }
    let done = seen_responses_response(&events[events.len() - 1]["response"], case);
    assert_eq!(done, s, "{case}: response.completed agrees with the deltas");
    s
}

/// Thinking survives Anthropic -> Anthropic (a thinking block) and
/// Anthropic -> OpenAI (`reasoning_content`); only Anthropic upstreams have
/// the thinking scenario.
/// What a google-genai client assembles from `GenerateContentResponse`s:
/// text and thought parts concatenated, function calls in order.
fn seen_gemini(responses: &[Value], case: &str) -> Seen {
    let mut s = Seen::default();
    for r in responses {
        for p in r["candidates"][0]["content"]["parts"]
            .as_array()
            .into_iter()
            .flatten()
        {
            if let Some(f) = p.get("functionCall") {
                let name = f["name"].as_str().unwrap_or("").to_owned();
                assert!(f["args"].is_object(), "{case}: {f}");
                s.calls.push((name, f["args"].clone()));
            } else if let Some(t) = p["text"].as_str() {
                if p["thought"] == true {
                    s.thinking.push_str(t);
                } else {
                    s.text.push_str(t);
                }
            }
        }
    }
    s
}

fn expected_seen(expect: &Value) -> Seen {
    Seen {
        text: expect["text"].as_str().unwrap().to_owned(),
        thinking: expect["thinking"].as_str().unwrap_or("").to_owned(),
        calls: expect["tool_calls"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["name"].as_str().unwrap().to_owned(),
                    serde_json::from_str(c["arguments"].as_str().unwrap()).unwrap(),
                )
            })
            .collect(),
    }
}

/// The checks that need no Python: terminal kind and shape, and that the
/// content a client would assemble equals what the upstream sent.
fn basic_checks(case: &Case, chunks: &[Value], kind: EventKind, terminal: &Value, expect: &Value) {
    let name = &case.name;
    if let Some(status) = expect["error_status"].as_u64() {
        assert_eq!(kind, EventKind::Error, "{name}: terminal kind; {terminal}");
        assert_eq!(terminal["type"], "error", "{name}: {terminal}");
        assert_eq!(
            terminal["status"].as_u64(),
            Some(status),
            "{name}: {terminal}"
        );
        let err = &terminal["error"];
        match case.caller {
            Protocol::OpenAi | Protocol::Responses => {
                assert!(err["error"]["message"].is_string(), "{name}: {err}");
                assert!(err["error"]["type"].is_string(), "{name}: {err}");
            }
            Protocol::Anthropic => {
                assert_eq!(err["type"], "error", "{name}: {err}");
                assert!(err["error"]["type"].is_string(), "{name}: {err}");
                assert!(err["error"]["message"].is_string(), "{name}: {err}");
            }
            Protocol::Gemini => {
                assert_eq!(err["error"]["code"].as_u64(), Some(status), "{name}: {err}");
                assert!(err["error"]["status"].is_string(), "{name}: {err}");
                assert!(err["error"]["message"].is_string(), "{name}: {err}");
            }
        }
        assert!(
            chunks.is_empty(),
            "{name}: no chunk before a pre-stream error"
        );
        return;
    }
    assert_eq!(kind, EventKind::Done, "{name}: terminal kind; {terminal}");
    assert_eq!(terminal["type"], "done", "{name}: {terminal}");
    let want = expected_seen(expect);
    let got = match (case.caller, case.stream) {
        (Protocol::OpenAi, false) => {
            assert!(
                chunks.is_empty(),
                "{name}: chunks on a non-streaming request"
            );
            seen_openai_response(&terminal["response"], name)
        }
        (Protocol::OpenAi, true) => {
            assert!(
                terminal.get("response").is_none_or(Value::is_null),
                "{name}"
            );
            for c in chunks {
                assert_eq!(c["object"], "chat.completion.chunk", "{name}: {c}");
            }
            seen_openai_chunks(chunks, name)
        }
        (Protocol::Anthropic, false) => {
            assert!(
                chunks.is_empty(),
                "{name}: chunks on a non-streaming request"
            );
            assert_eq!(
                terminal["response"]["type"], "message",
                "{name}: {terminal}"
            );
            seen_anthropic_response(&terminal["response"])
        }
        (Protocol::Anthropic, true) => {
            let types: Vec<&str> = chunks.iter().filter_map(|c| c["type"].as_str()).collect();
            assert_eq!(types.len(), chunks.len(), "{name}: every event has a type");
            assert_eq!(types.first(), Some(&"message_start"), "{name}: {types:?}");
            assert_eq!(types.last(), Some(&"message_stop"), "{name}: {types:?}");
            seen_anthropic_events(chunks, name)
        }
        (Protocol::Responses, false) => {
            assert!(
                chunks.is_empty(),
                "{name}: chunks on a non-streaming request"
            );
            let r = &terminal["response"];
            assert_eq!(r["object"], "response", "{name}: {terminal}");
            assert_eq!(r["status"], "completed", "{name}: {terminal}");
            let u = &r["usage"];
            assert!(
                u["input_tokens_details"]["cached_tokens"].is_u64(),
                "{name}: {u}"
            );
            assert!(
                u["output_tokens_details"]["reasoning_tokens"].is_u64(),
                "{name}: {u}"
            );
            seen_responses_response(r, name)
        }
        (Protocol::Responses, true) => seen_responses_events(chunks, name),
        (Protocol::Gemini, false) => {
            assert!(
                chunks.is_empty(),
                "{name}: chunks on a non-streaming request"
            );
            seen_gemini(std::slice::from_ref(&terminal["response"]), name)
        }
        (Protocol::Gemini, true) => {
            let last = chunks.last().expect("a chunk");
            assert!(
                last["candidates"][0]["finishReason"].is_string(),
                "{name}: {last}"
            );
            assert!(
                last["usageMetadata"]["promptTokenCount"].is_u64(),
                "{name}: {last}"
            );
            seen_gemini(chunks, name)
        }
    };
    assert_eq!(got, want, "{name}: content a client assembles");
}

fn out_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/sdk-payloads.jsonl")
}

#[test]
fn sdk_payloads() {
    let server = MockServer::start("sdk", Behavior::default()).expect("start mock server");
    let mut lines = Vec::new();
    let all = cases();
    for case in &all {
        server.set_behavior(case.scenario.behavior());
        let engine = engine_for(&server);
        let model = match case.upstream {
            Protocol::OpenAi => "test/via-openai",
            Protocol::Anthropic => "test/via-anthropic",
            Protocol::Responses => "test/via-responses",
            Protocol::Gemini => "test/via-gemini",
        };
        let body = request(case.caller, model, case.stream, case.scenario);
        let id = engine
            .submit(case.caller, body.to_string().as_bytes())
            .unwrap_or_else(|e| panic!("{}: submit: {e}", case.name));
        // `drain` panics on a second terminal or an event after it.
        let out = drain(&engine, &[id], Duration::from_secs(20))
            .remove(&id)
            .expect("outcome");
        let expect = case.scenario.expect(case.caller, case.upstream);
        basic_checks(case, &out.chunks, out.terminal_kind, &out.terminal, &expect);
        lines.push(
            json!({
                "case": case.name,
                "caller": proto_name(case.caller),
                "upstream": proto_name(case.upstream),
                "stream": case.stream,
                "request": body,
                "chunks": out.chunks,
                "terminal": out.terminal,
                "expect": expect,
            })
            .to_string(),
        );
    }
    assert_eq!(lines.len(), 152, "case matrix size");

    let path = out_path();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    // Write then rename, so a reader never sees half a file.
    let tmp = path.with_extension(format!("jsonl.{}", std::process::id()));
    std::fs::write(&tmp, lines.join("\n") + "\n").unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    eprintln!(
        "sdk_payloads: {} cases written to {}",
        lines.len(),
        path.display()
    );

    let Some(python) = std::env::var_os("LLMUX_SDK_PYTHON") else {
        eprintln!(
            "sdk_payloads: LLMUX_SDK_PYTHON not set; SDK validation skipped \
             (run tests/python/run.sh for it); basic checks passed"
        );
        return;
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(&python)
        .current_dir(root)
        .arg(root.join("tests/python/validate_sdk.py"))
        .arg(&path)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python:?}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.success() {
        eprintln!("{stdout}");
    } else {
        panic!(
            "SDK validation failed ({}):\n{stdout}\n{stderr}",
            out.status
        );
    }
}
