//! Anthropic Messages in and out: inbound requests, Anthropic upstreams, the
//! four protocol pairs, and cross-protocol failover, over real HTTP.

mod common;

use common::*;
use llmux::Protocol;
use llmux_fleet::Behavior;
use serde_json::{json, Value};

#[test]
fn anthropic_to_anthropic_stream_passes_events_through_with_headers() {
    let mut a = anthropic_upstream("claude", Behavior::default());
    a.provider_extra = json!({"api_key": "ak-test-key", "anthropic_beta": "tools-2024"});
    let e = engine(&[&a], json!({}));
    let mut body = messages("test/model", true);
    body["top_k"] = json!(5);
    let out = run_as(&e, Protocol::Anthropic, &body);
    assert!(out.ok(), "{:?}", out.terminal);
    let types = out.event_types();
    assert_eq!(types.first().map(String::as_str), Some("message_start"));
    assert_eq!(types.last().map(String::as_str), Some("message_stop"));
    assert!(types.contains(&"message_delta".to_owned()));
    assert_eq!(out.anthropic_text(), "Hello from claude.");
    let got = &a.server.requests()[0];
    assert_eq!(got.path, "/v1/messages");
    assert_eq!(got.header("x-api-key"), Some("ak-test-key"));
    assert_eq!(got.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(got.header("anthropic-beta"), Some("tools-2024"));
    assert_eq!(got.header("authorization"), None);
    assert_eq!(got.body["model"], "up-claude");
    assert_eq!(got.body["top_k"], 5);
    assert_eq!(out.routing()["usage"]["prompt_tokens"], 10);
    assert_eq!(out.routing()["usage"]["completion_tokens"], 5);
}

#[test]
fn anthropic_caller_non_stream_and_routing_rules() {
    let a = anthropic_upstream("a", Behavior::default());
    let b = anthropic_upstream("b", Behavior::default());
    let e = engine(&[&a, &b], json!({}));
    let out = run_as(&e, Protocol::Anthropic, &messages("test/model:b", false));
    assert!(out.ok());
    assert_eq!(out.served(), Some("b/default"));
    let resp = &out.terminal["response"];
    assert_eq!(resp["type"], "message");
    assert_eq!(resp["content"][0]["text"], "Hello from b.");
    let mut body = messages("test/model", true);
    body["provider"] = json!({"routing": {"type": "order", "providers": ["a/default"]}});
    assert_eq!(
        run_as(&e, Protocol::Anthropic, &body).served(),
        Some("a/default")
    );
    assert_eq!(b.server.request_count(), 1);
}

#[test]
fn anthropic_caller_through_openai_upstream_is_translated_both_ways() {
    let o = upstream(
        "oai",
        behavior(
            json!({"tool_calls": [{"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}]}),
        ),
    );
    let e = engine(&[&o], json!({}));
    let mut body = messages("test/model", true);
    body["system"] = json!("Be brief.");
    body["tools"] =
        json!([{"name": "get_weather", "description": "w", "input_schema": {"type": "object"}}]);
    let out = run_as(&e, Protocol::Anthropic, &body);
    assert!(out.ok(), "{:?}", out.terminal);
    let sent = &o.server.requests()[0].body;
    assert_eq!(
        sent["messages"][0],
        json!({"role": "system", "content": "Be brief."})
    );
    assert_eq!(sent["tools"][0]["function"]["name"], "get_weather");
    assert_eq!(sent["stream_options"]["include_usage"], true);
    assert_eq!(sent["max_completion_tokens"], 256);
    let types = out.event_types();
    assert_eq!(types[0], "message_start");
    assert_eq!(types.last().unwrap(), "message_stop");
    // Text block, then a tool_use block with the arguments reassembled.
    assert_eq!(out.anthropic_text(), "Hello from oai.");
    let tool_start = out
        .chunks
        .iter()
        .find(|c| c["type"] == "content_block_start" && c["content_block"]["type"] == "tool_use")
        .expect("tool_use block");
    assert_eq!(tool_start["content_block"]["name"], "get_weather");
    let args: String = out
        .chunks
        .iter()
        .filter(|c| c["delta"]["type"] == "input_json_delta")
        .filter_map(|c| c["delta"]["partial_json"].as_str())
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&args).unwrap(),
        json!({"city": "Paris"})
    );
    let delta = out
        .chunks
        .iter()
        .find(|c| c["type"] == "message_delta")
        .unwrap();
    assert_eq!(delta["delta"]["stop_reason"], "tool_use");

    let out = run_as(&e, Protocol::Anthropic, &messages("test/model", false));
    assert!(out.ok());
    let resp = &out.terminal["response"];
    assert_eq!(resp["type"], "message");
    assert_eq!(resp["stop_reason"], "tool_use");
    assert_eq!(resp["content"][1]["input"], json!({"city": "Paris"}));
}

/// An Anthropic caller served by an OpenAI endpoint gets an
/// estimate of its input tokens at `message_start`.
#[test]
fn message_start_carries_an_input_token_estimate() {
    let a = upstream("a", behavior(json!({"prompt_tokens": 33})));
    let eng = engine(&[&a], json!({}));
    let mut body = messages("test/model", true);
    body["messages"] = json!([{"role": "user", "content": "x".repeat(400)}]);
    let o = run_as(&eng, Protocol::Anthropic, &body);
    assert!(o.ok(), "{}", o.terminal);
    let start = &o.chunks[0];
    assert_eq!(start["type"], "message_start");
    let est = start["message"]["usage"]["input_tokens"].as_u64().unwrap();
    assert!(est >= 100, "{start}");
    let delta = o
        .chunks
        .iter()
        .find(|c| c["type"] == "message_delta")
        .unwrap();
    assert_eq!(delta["usage"]["input_tokens"], 33);
}

#[test]
fn openai_caller_through_anthropic_upstream_is_translated_both_ways() {
    let a = anthropic_upstream("claude", behavior(json!({"thinking": "hmm", "chunks": 3})));
    let e = engine(&[&a], json!({}));
    let mut body = chat("test/model", true);
    body["messages"] = json!([
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "hi"},
    ]);
    body["stop"] = json!("END");
    body["stream_options"] = json!({"include_usage": true});
    let out = run(&e, &body);
    assert!(out.ok(), "{:?}", out.terminal);
    let sent = &a.server.requests()[0].body;
    assert_eq!(sent["system"], "sys");
    assert_eq!(sent["stop_sequences"], json!(["END"]));
    assert_eq!(sent["max_tokens"], 4096, "documented default max_tokens");
    assert_eq!(out.text(), "Hello from claude.");
    assert!(out
        .chunks
        .iter()
        .all(|c| c["object"] == "chat.completion.chunk"));
    assert_eq!(out.chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let finish: Vec<&Value> = out
        .chunks
        .iter()
        .filter_map(|c| c["choices"][0].get("finish_reason"))
        .filter(|f| !f.is_null())
        .collect();
    assert_eq!(finish, vec![&json!("stop")]);
    let usage = out.chunks.last().unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["prompt_tokens"], 10);

    let out = run(&e, &chat("test/model", false));
    assert!(out.ok());
    let resp = &out.terminal["response"];
    assert_eq!(resp["object"], "chat.completion");
    assert_eq!(
        resp["choices"][0]["message"]["content"],
        "Hello from claude."
    );
    assert_eq!(resp["choices"][0]["finish_reason"], "stop");
}

#[test]
fn cross_protocol_failover_gives_one_clean_stream_in_the_callers_protocol() {
    // OpenAI caller: the OpenAI endpoint fails before any chunk, Anthropic serves.
    let mut o = upstream("oai", behavior(json!({"status": 503})));
    o.expected_ms = Some(1.0);
    let mut a = anthropic_upstream("ant", Behavior::default());
    a.expected_ms = Some(100.0);
    let e = engine(&[&o, &a], json!({}));
    let out = run(&e, &chat("test/model", true));
    assert!(out.ok());
    assert_eq!(
        out.attempts(),
        vec![
            ("oai/default".into(), "server_error".into()),
            ("ant/default".into(), "success".into())
        ]
    );
    assert_eq!(out.text(), "Hello from ant.");
    assert!(out
        .chunks
        .iter()
        .all(|c| c["object"] == "chat.completion.chunk"));
    assert_eq!(
        out.chunks
            .iter()
            .filter(|c| c["choices"][0]["delta"]["role"] == "assistant")
            .count(),
        1
    );

    // Anthropic caller: the Anthropic endpoint drops before its first token, OpenAI serves.
    let mut a = anthropic_upstream("ant", behavior(json!({"fault": {"drop_after": 0}})));
    a.expected_ms = Some(1.0);
    let mut o = upstream("oai", Behavior::default());
    o.expected_ms = Some(100.0);
    let e = engine(&[&a, &o], json!({}));
    let out = run_as(&e, Protocol::Anthropic, &messages("test/model", true));
    assert!(out.ok(), "{:?}", out.terminal);
    assert_eq!(out.served(), Some("oai/default"));
    let types = out.event_types();
    assert_eq!(
        types.iter().filter(|t| *t == "message_start").count(),
        1,
        "{types:?}"
    );
    assert_eq!(types.iter().filter(|t| *t == "message_stop").count(), 1);
    assert_eq!(out.anthropic_text(), "Hello from oai.");
}

#[test]
fn errors_reach_anthropic_callers_in_anthropic_shape() {
    let o = upstream("oai", behavior(json!({"status": 400})));
    let e = engine(&[&o], json!({}));
    let out = run_as(&e, Protocol::Anthropic, &messages("test/model", true));
    assert!(!out.ok());
    assert_eq!(out.terminal["status"], 400);
    assert_eq!(out.terminal["error"]["type"], "error");
    assert_eq!(
        out.terminal["error"]["error"]["type"],
        "invalid_request_error"
    );
    let a = anthropic_upstream("ant", behavior(json!({"status": 529})));
    let e = engine(&[&a], json!({}));
    let out = run_as(&e, Protocol::Anthropic, &messages("test/model", false));
    assert_eq!(out.terminal["status"], 529);
    assert_eq!(out.terminal["error"]["error"]["type"], "overloaded_error");
    let out = run(&e, &chat("test/model", false));
    assert_eq!(out.terminal["error"]["error"]["type"], "upstream_error");
    assert!(out.terminal["error"]["error"]["message"]
        .as_str()
        .unwrap()
        .contains("529"));
}

#[test]
fn untranslatable_requests_fail_with_a_clear_error() {
    let a = anthropic_upstream("ant", Behavior::default());
    let e = engine(&[&a], json!({}));
    let mut body = chat("test/model", false);
    body["n"] = json!(3);
    let out = run(&e, &body);
    assert!(!out.ok());
    assert_eq!(out.terminal["status"], 400);
    assert_eq!(out.attempts()[0].1, "translation_error");
    let msg = out.terminal["error"]["error"]["message"].as_str().unwrap();
    assert!(msg.contains('n'), "{msg}");
    assert_eq!(a.server.request_count(), 0);
}
