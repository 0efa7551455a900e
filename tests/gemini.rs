//! Gemini in and out through the engine, over real HTTP to the mock fleet:
//! a Gemini caller served by each of the four upstream protocols and each
//! caller protocol served by a Gemini upstream, stream and not, with a
//! function call whose id is kept (or made) and mapped back; what the Gemini
//! upstream is sent (URL with model and method, `x-goog-api-key`, no
//! `model` field); errors in Google's envelope; Retry-After from a Gemini
//! upstream.

mod common;

use common::*;
use llmux::Protocol;
use llmux_fleet::Behavior;
use serde_json::{json, Value};

const ALL: [Protocol; 4] = [
    Protocol::OpenAi,
    Protocol::Anthropic,
    Protocol::Responses,
    Protocol::Gemini,
];

fn slug(p: Protocol) -> &'static str {
    p.as_str()
}

/// One upstream `a` of protocol `up`, answering with text and a tool call,
/// behind key `k-a`.
fn fleet(up: Protocol, tool: bool) -> (Upstream, llmux::Engine) {
    let mut b = json!({"text": "Hello from a.", "require_key": "k-a"});
    if tool {
        b["tool_calls"] = json!([{"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}]);
    }
    let mut a = upstream("a", behavior(b));
    a.protocol = slug(up);
    a.provider_extra = json!({"api_key": "k-a"});
    let e = engine(&[&a], json!({}));
    (a, e)
}

fn request(caller: Protocol, stream: bool) -> Value {
    match caller {
        Protocol::OpenAi => chat("test/model", stream),
        Protocol::Anthropic => messages("test/model", stream),
        Protocol::Responses => json!({"model": "test/model", "stream": stream, "input": "hello"}),
        Protocol::Gemini => gemini("test/model", stream),
    }
}

/// The answer text a caller of `caller` received.
fn text(out: &Outcome, caller: Protocol, stream: bool) -> String {
    let r = &out.terminal["response"];
    match (caller, stream) {
        (Protocol::Gemini, true) => gemini_text(&out.chunks),
        (Protocol::Gemini, false) => gemini_text([r]),
        (Protocol::OpenAi, true) => out.text(),
        (Protocol::OpenAi, false) => r["choices"][0]["message"]["content"]
            .as_str()
            .unwrap_or("")
            .into(),
        (Protocol::Anthropic, true) => out.anthropic_text(),
        (Protocol::Anthropic, false) => r["content"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|b| b["text"].as_str())
            .collect(),
        (Protocol::Responses, true) => out
            .chunks
            .iter()
            .filter(|c| c["type"] == "response.output_text.delta")
            .filter_map(|c| c["delta"].as_str())
            .collect(),
        (Protocol::Responses, false) => r["output"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|i| i["content"].as_array().into_iter().flatten())
            .filter_map(|p| p["text"].as_str())
            .collect(),
    }
}

/// The (id, name, arguments) of the function calls a Gemini caller got.
fn gemini_calls(out: &Outcome, stream: bool) -> Vec<(String, String, Value)> {
    let responses: Vec<&Value> = if stream {
        out.chunks.iter().collect()
    } else {
        vec![&out.terminal["response"]]
    };
    responses
        .into_iter()
        .flat_map(|r| {
            r["candidates"][0]["content"]["parts"]
                .as_array()
                .into_iter()
                .flatten()
        })
        .filter_map(|p| p.get("functionCall"))
        .map(|f| {
            (
                f["id"].as_str().unwrap_or("").to_owned(),
                f["name"].as_str().unwrap_or("").to_owned(),
                f["args"].clone(),
            )
        })
        .collect()
}

fn finish_reason(out: &Outcome, stream: bool) -> Value {
    if stream {
        out.chunks.last().expect("a chunk")["candidates"][0]["finishReason"].clone()
    } else {
        out.terminal["response"]["candidates"][0]["finishReason"].clone()
    }
}

#[test]
fn a_gemini_caller_is_served_by_every_upstream_protocol() {
    for up in ALL {
        for stream in [false, true] {
            let who = format!("Gemini caller, {up:?} upstream, stream={stream}");
            let (a, e) = fleet(up, true);
            let out = run_as(&e, Protocol::Gemini, &request(Protocol::Gemini, stream));
            assert!(out.ok(), "{who}: {}", out.terminal);
            assert_eq!(
                text(&out, Protocol::Gemini, stream),
                "Hello from a.",
                "{who}"
            );
            let calls = gemini_calls(&out, stream);
            assert_eq!(calls.len(), 1, "{who}: {calls:?}");
            let (id, name, args) = &calls[0];
            // Translated calls carry an id; Gemini to Gemini passes through.
            assert_eq!(id.is_empty(), up == Protocol::Gemini, "{who}: id {id:?}");
            assert_eq!(
                (name.as_str(), args),
                ("get_weather", &json!({"city": "Paris"})),
                "{who}"
            );
            assert_eq!(finish_reason(&out, stream), "STOP", "{who}");
            let usage = &out.routing()["usage"];
            assert_eq!(usage["prompt_tokens"], 10, "{who}: {usage}");
            let sent = &a.server.requests()[0];
            if up == Protocol::Gemini {
                let method = if stream {
                    "streamGenerateContent?alt=sse"
                } else {
                    "generateContent"
                };
                assert_eq!(sent.path, format!("/v1beta/models/up-a:{method}"), "{who}");
                assert_eq!(sent.header("x-goog-api-key"), Some("k-a"), "{who}");
                assert!(sent.body.get("model").is_none() && sent.body.get("stream").is_none());
            }
        }
    }
}

#[test]
fn every_caller_protocol_is_served_by_a_gemini_upstream() {
    for caller in ALL {
        for stream in [false, true] {
            let who = format!("{caller:?} caller, Gemini upstream, stream={stream}");
            let (a, e) = fleet(Protocol::Gemini, false);
            let out = run_as(&e, caller, &request(caller, stream));
            assert!(out.ok(), "{who}: {}", out.terminal);
            assert_eq!(text(&out, caller, stream), "Hello from a.", "{who}");
            let sent = &a.server.requests()[0];
            assert_eq!(sent.header("x-goog-api-key"), Some("k-a"), "{who}");
            assert!(sent.header("authorization").is_none(), "{who}");
            assert_eq!(
                sent.body["contents"],
                json!([{"role": "user", "parts": [{"text": "hello"}]}]),
                "{who}"
            );
            assert!(sent.path.starts_with("/v1beta/models/up-a:"), "{who}");
        }
    }
}

/// A Gemini caller on a Chat endpoint: the call's id reaches the caller,
/// and the caller's `functionResponse` with that id reaches the endpoint
/// as the `tool` message answering that call.
#[test]
fn a_function_call_round_trip_keeps_its_id() {
    let (a, e) = fleet(Protocol::OpenAi, true);
    let first = run_as(&e, Protocol::Gemini, &request(Protocol::Gemini, false));
    let (id, name, args) = gemini_calls(&first, false).remove(0);
    assert!(id.starts_with("call_mock_"), "{id}");
    let model_turn = first.terminal["response"]["candidates"][0]["content"].clone();
    let body = json!({
        "model": "test/model",
        "contents": [
            {"role": "user", "parts": [{"text": "weather in Paris?"}]},
            model_turn,
            {"role": "user", "parts": [{"functionResponse":
                {"id": id, "name": name, "response": {"output": "sunny"}}}]},
        ],
        "tools": [{"functionDeclarations": [{"name": "get_weather",
            "parameters": {"type": "OBJECT", "properties": {"city": {"type": "STRING"}}}}]}],
    });
    let second = run_as(&e, Protocol::Gemini, &body);
    assert!(second.ok(), "{}", second.terminal);
    let sent = &a.server.requests()[1].body;
    let msgs = sent["messages"].as_array().unwrap();
    let call = &msgs[1]["tool_calls"][0];
    assert_eq!(call["id"], id.as_str());
    assert_eq!(call["function"]["arguments"], args.to_string());
    assert_eq!(
        msgs[2],
        json!({"role": "tool", "tool_call_id": id, "content": "sunny"})
    );
    assert_eq!(
        sent["tools"][0]["function"]["parameters"]["properties"]["city"]["type"],
        "string"
    );
}

/// A Gemini upstream's calls come without ids (as Google sends them): the
/// Anthropic caller gets made ids that pair with its `tool_result`, and the
/// Gemini upstream gets the result named after its call.
#[test]
fn calls_without_ids_get_ids_that_pair_up() {
    let (a, e) = fleet(Protocol::Gemini, true);
    let first = run_as(
        &e,
        Protocol::Anthropic,
        &request(Protocol::Anthropic, false),
    );
    let content = first.terminal["response"]["content"].clone();
    let call = content
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["type"] == "tool_use")
        .expect("a tool_use block")
        .clone();
    let id = call["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("call_mock-a-"), "{id}");
    let body = json!({
        "model": "test/model", "max_tokens": 100,
        "messages": [
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": content},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": id, "content": "sunny"}]},
        ],
    });
    let second = run_as(&e, Protocol::Anthropic, &body);
    assert!(second.ok(), "{}", second.terminal);
    let sent = &a.server.requests()[1].body["contents"];
    assert_eq!(sent[1]["parts"][1]["functionCall"]["id"], id.as_str());
    assert_eq!(
        sent[2]["parts"][0]["functionResponse"],
        json!({"id": id, "name": "get_weather", "response": {"output": "sunny"}})
    );
}

#[test]
fn errors_reach_a_gemini_caller_in_googles_envelope() {
    let mut a = upstream("a", behavior(json!({"status": 400})));
    a.protocol = "gemini";
    let e = engine(&[&a], json!({}));
    for stream in [false, true] {
        let out = run_as(&e, Protocol::Gemini, &request(Protocol::Gemini, stream));
        assert!(!out.ok());
        let err = &out.terminal["error"]["error"];
        assert_eq!(err["code"], 400, "{}", out.terminal);
        assert_eq!(err["status"], "INVALID_ARGUMENT");
        let msg = err["message"].as_str().unwrap();
        assert!(msg.contains("a/default") && msg.contains("400"), "{msg}");
    }
    // A body without `contents` is refused at once, naming the field.
    let err = e
        .submit(Protocol::Gemini, br#"{"model": "test/model"}"#)
        .unwrap_err();
    assert!(err.to_string().contains("`contents` is required"), "{err}");
}

/// A Gemini upstream's 429 with Retry-After: the next endpoint serves, and
/// the next request skips the limited one without asking it.
#[test]
fn retry_after_from_a_gemini_upstream_is_honoured() {
    let mut a = upstream("a", behavior(json!({"status": 429, "retry_after": "5"})));
    let mut b = upstream("b", Behavior::default());
    a.protocol = "gemini";
    b.protocol = "gemini";
    a.expected_ms = Some(1.0);
    b.expected_ms = Some(100.0);
    let e = engine(&[&a, &b], json!({}));
    for _ in 0..2 {
        let out = run_as(&e, Protocol::Gemini, &request(Protocol::Gemini, true));
        assert!(out.ok(), "{}", out.terminal);
        assert_eq!(out.served(), Some("b/default"));
        assert_eq!(gemini_text(&out.chunks), "Hello from b.");
    }
    assert_eq!(a.server.request_count(), 1);
}
