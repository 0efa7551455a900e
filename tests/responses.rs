//! The Responses protocol end to end against the mock fleet: state rules
//! (`store`, `previous_response_id`), `incomplete` on the token limit,
//! usage details, and the request shape Codex CLI sends, through Responses,
//! Chat Completions and Anthropic endpoints.

mod common;

use common::*;
use llmux::Protocol;
use llmux_fleet::Behavior;
use serde_json::{json, Value};

fn resp_req(stream: bool) -> Value {
    json!({"model": "test/model", "stream": stream, "input": "hello"})
}

fn submit_err(e: &llmux::Engine, body: &Value) -> String {
    match e.submit(Protocol::Responses, body.to_string().as_bytes()) {
        Ok(id) => panic!("request {id} accepted: {body}"),
        Err(err) => err.to_string(),
    }
}

#[test]
fn absent_store_is_sent_as_false_and_store_true_needs_a_responses_endpoint() {
    let mut rs = upstream("rs", Behavior::default());
    rs.protocol = "responses";
    rs.expected_ms = Some(500.0);
    let mut chat_up = upstream("oa", Behavior::default());
    chat_up.expected_ms = Some(1.0);
    let e = engine(&[&rs, &chat_up], json!({}));

    // Absent store: the faster Chat endpoint serves.
    let out = run_as(&e, Protocol::Responses, &resp_req(false));
    assert_eq!(out.served(), Some("oa/default"), "{}", out.terminal);

    // store: true only goes to the Responses endpoint, even when slower.
    let mut body = resp_req(true);
    body["store"] = json!(true);
    let out = run_as(&e, Protocol::Responses, &body);
    assert_eq!(out.served(), Some("rs/default"), "{}", out.terminal);
    let got = &rs.server.requests()[0].body;
    assert_eq!(got["store"], true);

    // An absent store reaches a Responses endpoint as store: false.
    let only_rs = engine(&[&rs], json!({}));
    let out = run_as(&only_rs, Protocol::Responses, &resp_req(true));
    assert!(out.ok(), "{}", out.terminal);
    assert_eq!(rs.server.requests()[1].body["store"], false);

    // store: true with no Responses endpoint: refused, nothing sent.
    let only_chat = engine(&[&chat_up], json!({}));
    let before = chat_up.server.request_count();
    let err = submit_err(&only_chat, &body);
    assert!(err.contains("store"), "{err}");
    assert_eq!(chat_up.server.request_count(), before);
}

#[test]
fn previous_response_id_routes_to_the_endpoint_that_made_it() {
    let mut r1 = upstream("r1", Behavior::default());
    r1.protocol = "responses";
    r1.expected_ms = Some(1.0);
    let mut r2 = upstream("r2", Behavior::default());
    r2.protocol = "responses";
    r2.expected_ms = Some(400.0);
    let mut oa = upstream("oa", Behavior::default());
    oa.expected_ms = Some(2.0);
    let e = engine(&[&r1, &r2, &oa], json!({}));

    // First turn pinned to r2, which is slow.
    let mut first = resp_req(false);
    first["provider"] = json!({"routing": {"type": "order", "providers": ["r2"]}});
    first["store"] = json!(true);
    let out = run_as(&e, Protocol::Responses, &first);
    assert_eq!(out.served(), Some("r2/default"));
    let id = out.terminal["response"]["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("resp_mock_"), "{id}");

    // Second turn: r1 and oa look faster, the id decides.
    for stream in [false, true] {
        let mut next = resp_req(stream);
        next["previous_response_id"] = json!(id);
        let out = run_as(&e, Protocol::Responses, &next);
        assert_eq!(out.served(), Some("r2/default"), "{}", out.terminal);
        let sent = r2.server.requests().last().unwrap().body.clone();
        let raw = id.split("~lx").next().unwrap();
        assert_eq!(
            sent["previous_response_id"], raw,
            "the upstream sees its own id"
        );
    }
    assert_eq!(r1.server.request_count() + oa.server.request_count(), 0);

    // An id llmux did not hand out, or one of an endpoint not serving this
    // request: refused without an upstream call.
    let mut bad = resp_req(false);
    bad["previous_response_id"] = json!("resp_unknown");
    assert!(submit_err(&e, &bad).contains("previous_response_id"));
    let only_r1 = engine(&[&r1], json!({}));
    bad["previous_response_id"] = json!(id);
    assert!(submit_err(&only_r1, &bad).contains("does not serve"));
    assert_eq!(r1.server.request_count(), 0);
}

#[test]
fn token_limit_ends_incomplete_from_chat_and_anthropic() {
    for (proto, reason) in [("openai", "length"), ("anthropic", "max_tokens")] {
        let mut u = upstream("u", common::behavior(json!({"stop_reason": reason})));
        u.protocol = proto;
        let e = engine(&[&u], json!({}));
        let mut body = resp_req(false);
        body["max_output_tokens"] = json!(5);
        let out = run_as(&e, Protocol::Responses, &body);
        let r = &out.terminal["response"];
        assert_eq!(r["status"], "incomplete", "{proto}: {r}");
        assert_eq!(r["incomplete_details"]["reason"], "max_output_tokens");
        assert_eq!(
            u.server.requests()[0].body[if proto == "openai" {
                "max_completion_tokens"
            } else {
                "max_tokens"
            }],
            5
        );

        let out = run_as(&e, Protocol::Responses, &resp_req(true));
        assert!(out.ok(), "{}", out.terminal);
        let last = out.chunks.last().unwrap();
        assert_eq!(last["type"], "response.incomplete", "{proto}");
        assert_eq!(
            last["response"]["incomplete_details"]["reason"],
            "max_output_tokens"
        );
        let u = &last["response"]["usage"];
        assert_eq!(u["input_tokens"], 10, "{u}");
        assert!(u["output_tokens_details"]["reasoning_tokens"].is_u64());
    }
    // And back: a Responses endpoint's incomplete is Chat's `length`.
    let mut rs = upstream(
        "rs",
        common::behavior(json!({"stop_reason": "max_output_tokens"})),
    );
    rs.protocol = "responses";
    let e = engine(&[&rs], json!({}));
    let out = run_as(&e, Protocol::OpenAi, &chat("test/model", false));
    assert_eq!(
        out.terminal["response"]["choices"][0]["finish_reason"],
        "length"
    );
    let out = run_as(&e, Protocol::Anthropic, &messages("test/model", true));
    let delta = out
        .chunks
        .iter()
        .find(|c| c["type"] == "message_delta")
        .unwrap();
    assert_eq!(delta["delta"]["stop_reason"], "max_tokens");
}

/// What Codex CLI sends on its second turn (after a tool call).
fn codex_turn(stream: bool) -> Value {
    json!({
        "model": "test/model",
        "stream": stream,
        "store": false,
        "include": ["reasoning.encrypted_content"],
        "reasoning": {"effort": "medium", "summary": "auto"},
        "parallel_tool_calls": false,
        "prompt_cache_key": "0199-conversation",
        "client_metadata": {"x-codex-turn": "2"},
        "tool_choice": "auto",
        "tools": [
            {"type": "function", "name": "exec_command", "strict": false, "description": "Run a command",
             "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}, "required": ["cmd"]}},
            {"type": "namespace", "name": "mcp__files", "description": "File tools", "tools": [
                {"type": "function", "name": "read", "strict": false,
                 "parameters": {"type": "object", "properties": {"path": {"type": "string"}}}}]},
            {"type": "web_search", "external_web_access": false},
        ],
        "input": [
            {"type": "message", "id": "msg_dev", "role": "developer",
             "content": [{"type": "input_text", "text": "You are Codex."}]},
            {"type": "message", "id": "msg_u1", "role": "user",
             "content": [{"type": "input_text", "text": "list the files"}]},
            {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "think"}],
             "encrypted_content": "opaque-blob"},
            {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "read",
             "namespace": "mcp__files", "arguments": "{\"path\":\"a\"}"},
            {"type": "function_call_output", "id": "fco_1", "call_id": "call_1", "output": "a b c"},
        ],
    })
}

#[test]
fn codex_request_shape_through_every_endpoint_kind() {
    let calls = json!([{"name": "mcp__files__read", "arguments": "{\"path\":\"b\"}"}]);
    for proto in ["openai", "anthropic", "responses"] {
        let mut u = upstream(
            "u",
            common::behavior(json!({"tool_calls": calls, "text": ""})),
        );
        u.protocol = proto;
        let e = engine(&[&u], json!({}));
        for stream in [false, true] {
            let out = run_as(&e, Protocol::Responses, &codex_turn(stream));
            assert!(out.ok(), "{proto} stream={stream}: {}", out.terminal);
            let sent = u.server.requests().last().unwrap().body.clone();
            let names: Vec<String> = sent["tools"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| {
                    t["name"]
                        .as_str()
                        .or(t["function"]["name"].as_str())
                        .unwrap_or("")
                        .to_owned()
                })
                .collect();
            let response = if stream {
                out.chunks.last().unwrap()["response"].clone()
            } else {
                out.terminal["response"].clone()
            };
            let call = response["output"]
                .as_array()
                .unwrap()
                .iter()
                .find(|i| i["type"] == "function_call")
                .unwrap_or_else(|| panic!("{proto}: no call in {response}"))
                .clone();
            if proto == "responses" {
                // Passed through untouched (the model name aside).
                let mut want = codex_turn(stream);
                want["model"] = json!("up-u");
                assert_eq!(sent, want, "{proto}");
                continue;
            }
            // Flattened and hosted tools dropped; history translated.
            assert_eq!(
                names,
                ["exec_command", "mcp__files__read"],
                "{proto}: {sent}"
            );
            let text = sent.to_string();
            for gone in [
                "opaque-blob",
                "prompt_cache_key",
                "client_metadata",
                "\"include\"",
                "web_search",
                "fc_1",
            ] {
                assert!(!text.contains(gone), "{proto}: {gone} was sent: {text}");
            }
            assert!(text.contains("You are Codex."), "{proto}");
            assert!(text.contains("a b c"), "{proto}: tool output");
            // The namespaced call comes back restored.
            assert_eq!(call["name"], "read", "{proto}: {call}");
            assert_eq!(call["namespace"], "mcp__files", "{proto}: {call}");
            assert_eq!(call["arguments"], "{\"path\":\"b\"}");
        }
    }
}

#[test]
fn chat_and_anthropic_callers_on_a_responses_endpoint() {
    let mut rs = upstream("rs", Behavior::default());
    rs.protocol = "responses";
    let e = engine(&[&rs], json!({}));
    let mut body = chat("test/model", false);
    body["max_tokens"] = json!(50);
    body["tools"] =
        json!([{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]);
    body["tool_choice"] = json!({"type": "function", "function": {"name": "f"}});
    let out = run_as(&e, Protocol::OpenAi, &body);
    assert!(out.ok(), "{}", out.terminal);
    let sent = &rs.server.requests()[0].body;
    assert_eq!(sent["max_output_tokens"], 50);
    assert_eq!(sent["store"], false);
    assert_eq!(
        sent["tool_choice"],
        json!({"type": "function", "name": "f"})
    );
    assert_eq!(sent["tools"][0]["strict"], false);
    assert_eq!(sent["input"][0]["content"][0]["type"], "input_text");

    // Stop sequences have no Responses counterpart: refused, no call.
    let mut stop = messages("test/model", true);
    stop["stop_sequences"] = json!(["END"]);
    let out = run_as(&e, Protocol::Anthropic, &stop);
    assert!(!out.ok());
    assert_eq!(out.terminal["status"], 400, "{}", out.terminal);
    assert_eq!(rs.server.request_count(), 1);
}

#[test]
fn anthropic_thinking_survives_a_tool_loop_through_a_responses_caller() {
    let calls = json!([{"name": "lookup", "arguments": "{\"q\":\"x\"}"}]);
    let mut an = upstream(
        "an",
        common::behavior(json!({"thinking": "Let me look.", "tool_calls": calls, "text": ""})),
    );
    an.protocol = "anthropic";
    let e = engine(&[&an], json!({}));
    for stream in [false, true] {
        let mut first = resp_req(stream);
        first["reasoning"] = json!({"effort": "low"});
        first["max_output_tokens"] = json!(4000);
        first["tools"] =
            json!([{"type": "function", "name": "lookup", "parameters": {"type": "object"}}]);
        let out = run_as(&e, Protocol::Responses, &first);
        assert!(out.ok(), "{}", out.terminal);
        let output = if stream {
            out.chunks.last().unwrap()["response"]["output"].clone()
        } else {
            out.terminal["response"]["output"].clone()
        };
        let items = output.as_array().unwrap();
        let reasoning = items.iter().find(|i| i["type"] == "reasoning").unwrap();
        let sig = reasoning["encrypted_content"].as_str().unwrap();
        assert!(
            sig.starts_with("llmux-anthropic-thinking:mock-signature-an-"),
            "{sig}"
        );

        // The caller sends the turn back, as Codex does.
        let call = items.iter().find(|i| i["type"] == "function_call").unwrap();
        let mut next = first.clone();
        next["input"] = json!([
            {"role": "user", "content": "hello"},
            reasoning,
            call,
            {"type": "function_call_output", "call_id": call["call_id"], "output": "found"},
        ]);
        let out = run_as(&e, Protocol::Responses, &next);
        assert!(out.ok(), "{}", out.terminal);
        let sent = an.server.requests().last().unwrap().body.clone();
        let assistant = &sent["messages"][1];
        assert_eq!(assistant["role"], "assistant", "{sent}");
        assert_eq!(assistant["content"][0]["type"], "thinking", "{sent}");
        assert_eq!(assistant["content"][0]["thinking"], "Let me look.");
        assert_eq!(
            assistant["content"][0]["signature"],
            sig.trim_start_matches("llmux-anthropic-thinking:")
        );
        assert_eq!(assistant["content"][1]["type"], "tool_use");
    }
}
