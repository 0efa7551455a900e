//! Unit tests of `crate::protocol::responses`.

use super::*;
use crate::protocol::{stream_adapter, Protocol};

fn data(v: Value) -> SseEvent {
    SseEvent {
        event: String::new(),
        data: v.to_string(),
    }
}

fn map(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// A Responses request as Chat Completions, through the model.
fn to_chat(body: &Map<String, Value>) -> Result<Value, PayloadError> {
    crate::protocol::openai::chat::emit_request(&parse_request(body)?)
}

/// A Chat Completions request as Responses, through the model.
fn from_chat(body: &Map<String, Value>) -> Result<Value, PayloadError> {
    emit_request(&crate::protocol::openai::chat::parse_request(body)?)
}

fn ctx() -> StreamContext {
    StreamContext {
        model: "m".into(),
        include_usage: false,
        created: 1,
        id: "x".into(),
        input_tokens_estimate: 0,
    }
}

fn ev(v: Value) -> SseEvent {
    SseEvent {
        event: v["type"].as_str().unwrap_or("").to_owned(),
        data: v.to_string(),
    }
}

#[test]
fn ids_round_trip() {
    let t = tag_id("resp_abc", "openai/default");
    assert_eq!(
        untag_id(&t),
        Some(("resp_abc", "openai/default".to_owned()))
    );
    assert_eq!(tag_id("resp_abc", ""), "resp_abc");
    assert_eq!(untag_id("resp_abc"), None);
    assert_eq!(untag_id("resp~lxzz"), None);
    assert_eq!(untag_id("resp~lx6"), None);
}

#[test]
fn passthrough_tags_ids_and_finishes() {
    let mut p = Passthrough::new(ctx());
    p.configure(&Map::new(), "a/b");
    let created = json!({"type": "response.created", "sequence_number": 0,
        "response": {"id": "resp_1", "object": "response", "output": []}});
    let s = p.on_event(&ev(created)).unwrap();
    assert!(!s.content);
    let out: Value = serde_json::from_str(&s.out[0]).unwrap();
    assert_eq!(
        untag_id(out["response"]["id"].as_str().unwrap()).unwrap().1,
        "a/b"
    );
    let delta = json!({"type": "response.output_text.delta", "sequence_number": 1,
        "delta": "hi", "item_id": "m", "output_index": 0, "content_index": 0});
    assert!(p.on_event(&ev(delta)).unwrap().content);
    let failed = p.fail("cut");
    let f: Value = serde_json::from_str(&failed[0]).unwrap();
    assert_eq!(f["sequence_number"], 2);
    assert_eq!(f["response"]["status"], "failed");
    let done = json!({"type": "response.completed", "sequence_number": 2,
        "response": {"id": "resp_1", "usage": {"input_tokens": 3, "output_tokens": 2,
        "input_tokens_details": {"cached_tokens": 1}}}});
    assert!(p.on_event(&ev(done)).unwrap().finished);
    assert_eq!(
        p.usage(),
        Some(Usage {
            prompt_tokens: 3,
            completion_tokens: 2,
            cached_tokens: 1
        })
    );
    let err =
        json!({"type": "error", "sequence_number": 3, "code": "server_error", "message": "boom"});
    assert!(matches!(p.on_event(&ev(err)), Err(PayloadError::Upstream(m)) if m.contains("boom")));
}

#[test]
fn check_response_rules() {
    let mut ok = json!({"id": "r", "status": "completed", "output": [
        {"type": "message", "content": [{"type": "output_text", "text": "hi"}]}]});
    assert!(check_response(&mut ok, "e/p").is_ok());
    assert!(ok["id"].as_str().unwrap().starts_with("r~lx"));
    let mut empty = json!({"id": "r", "output": [{"type": "reasoning", "summary": []}]});
    assert!(check_response(&mut empty, "").is_err());
    let mut failed = json!({"id": "r", "status": "failed", "output": []});
    assert!(check_response(&mut failed, "").is_err());
    let mut err = json!({"error": {"message": "nope"}});
    assert!(matches!(check_response(&mut err, ""), Err(PayloadError::Upstream(m)) if m == "nope"));
    assert!(check_response(&mut json!([1]), "").is_err());
}

#[test]
fn namespaces_flatten_and_restore() {
    let req = map(
        json!({"tools": [{"type": "namespace", "name": "ns", "tools": [
        {"type": "function", "name": "f"}, {"type": "function", "name": "g".repeat(80)}]}]}),
    );
    let ns = Namespaces::of(&req);
    assert_eq!(ns.restore("ns__f"), Some(("ns", "f")));
    let long = flat_name("ns", &"g".repeat(80));
    assert!(long.len() <= 64, "{long}");
    assert_eq!(ns.restore(&long), Some(("ns", "g".repeat(80).as_str())));
    assert_eq!(ns.restore("f"), None);
}

#[test]
fn responses_request_to_chat_shapes() {
    let out = to_chat(&map(json!({
        "instructions": "sys", "max_output_tokens": 9, "reasoning": {"effort": "low", "summary": "auto"},
        "text": {"format": {"type": "json_schema", "name": "n", "schema": {"type": "object"}}},
        "tools": [{"type": "web_search"}, {"type": "function", "name": "f"}],
        "tool_choice": {"type": "function", "name": "f"},
        "input": [
            {"role": "developer", "content": "dev"},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "a"}]},
            {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
            {"type": "function_call", "call_id": "c2", "name": "f", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": [{"type": "input_text", "text": "r"}]},
            {"type": "reasoning", "summary": [], "encrypted_content": "e"},
        ],
    })))
    .unwrap();
    let msgs = out["messages"].as_array().unwrap();
    assert_eq!(msgs[0], json!({"role": "system", "content": "sys"}));
    assert_eq!(msgs[1], json!({"role": "system", "content": "dev"}));
    assert_eq!(
        msgs[2]["tool_calls"].as_array().unwrap().len(),
        2,
        "{msgs:?}"
    );
    assert_eq!(msgs[2]["content"], "a");
    assert_eq!(
        msgs[3],
        json!({"role": "tool", "tool_call_id": "c1", "content": "r"})
    );
    assert_eq!(msgs.len(), 4);
    assert_eq!(out["tools"].as_array().unwrap().len(), 1);
    assert_eq!(
        out["tool_choice"],
        json!({"type": "function", "function": {"name": "f"}})
    );
    assert_eq!(out["max_completion_tokens"], 9);
    assert_eq!(out["reasoning_effort"], "low");
    assert_eq!(out["response_format"]["json_schema"]["name"], "n");
    for bad in [
        json!({"input": "x", "store": true}),
        json!({"input": "x", "previous_response_id": "r"}),
        json!({"input": [{"type": "item_reference", "id": "i"}]}),
        json!({"input": "x", "tools": [{"type": "custom", "name": "c"}]}),
        json!({"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]}),
        json!({"input": 5}),
    ] {
        assert!(to_chat(&map(bad.clone())).is_err(), "{bad}");
    }
}

#[test]
fn chat_request_to_responses_shapes() {
    let out = from_chat(&map(json!({
        "messages": [
            {"role": "system", "content": "s"},
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/i.png"}}]},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "c", "content": "r"},
        ],
        "max_tokens": 7, "reasoning_effort": "high", "seed": 1,
        "response_format": {"type": "json_schema", "json_schema": {"name": "n", "schema": {}}},
    })))
    .unwrap();
    let items = out["input"].as_array().unwrap();
    assert_eq!(
        items[1]["content"][0],
        json!({"type": "input_image", "image_url": "https://x/i.png", "detail": "auto"})
    );
    assert_eq!(items[2]["type"], "function_call");
    assert_eq!(
        items[3],
        json!({"type": "function_call_output", "call_id": "c", "output": "r"})
    );
    assert_eq!(out["max_output_tokens"], 7);
    assert_eq!(out["reasoning"], json!({"effort": "high"}));
    assert_eq!(
        out["text"]["format"],
        json!({"type": "json_schema", "name": "n", "schema": {}})
    );
    assert_eq!(out["store"], false);
    assert!(out.get("seed").is_none());
    for bad in [
        json!({"messages": [], "stop": "x"}),
        json!({"messages": [], "n": 2}),
    ] {
        assert!(from_chat(&map(bad.clone())).is_err(), "{bad}");
    }
}

#[test]
fn chat_stream_becomes_ordered_responses_events() {
    let mut a = stream_adapter(Protocol::OpenAi, Protocol::Responses, ctx());
    let chunk = |d: Value, f: Value| {
        data(json!({"choices": [{"index": 0, "delta": d, "finish_reason": f}]}))
    };
    let mut out = Vec::new();
    for ev in [
        chunk(json!({"role": "assistant", "content": ""}), Value::Null),
        chunk(json!({"reasoning_content": "hm"}), Value::Null),
        chunk(json!({"content": "hi"}), Value::Null),
        chunk(
            json!({"tool_calls": [{"index": 0, "id": "c", "function": {"name": "f", "arguments": "{\"a\""}}]}),
            Value::Null,
        ),
        chunk(
            json!({"tool_calls": [{"index": 0, "function": {"arguments": ":1}"}}]}),
            Value::Null,
        ),
        chunk(json!({}), json!("length")),
        data(
            json!({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 4,
            "completion_tokens_details": {"reasoning_tokens": 2}}}),
        ),
    ] {
        out.extend(a.on_event(&ev).unwrap().out);
    }
    let done = a
        .on_event(&SseEvent {
            event: String::new(),
            data: "[DONE]".into(),
        })
        .unwrap();
    assert!(done.finished);
    out.extend(done.out);
    let evs: Vec<Value> = out
        .iter()
        .map(|s| serde_json::from_str(s).unwrap())
        .collect();
    let types: Vec<&str> = evs.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.reasoning_text.delta",
            "response.reasoning_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.output_item.added",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.done",
            "response.output_item.done",
            "response.incomplete",
        ]
    );
    for (i, e) in evs.iter().enumerate() {
        assert_eq!(e["sequence_number"], i as u64);
    }
    let r = &evs.last().unwrap()["response"];
    assert_eq!(r["incomplete_details"]["reason"], "max_output_tokens");
    assert_eq!(r["output"][2]["arguments"], "{\"a\":1}");
    assert_eq!(r["usage"]["output_tokens_details"]["reasoning_tokens"], 2);
    assert_eq!(a.fail("cut").len(), 1);
}

#[test]
fn responses_stream_becomes_chat_chunks() {
    let with_usage = StreamContext {
        include_usage: true,
        ..ctx()
    };
    let mut a = stream_adapter(Protocol::Responses, Protocol::OpenAi, with_usage);
    let mut out = Vec::new();
    for ev in [
        json!({"type": "response.created", "response": {}}),
        json!({"type": "response.output_item.added", "output_index": 0,
               "item": {"type": "function_call", "id": "fc", "call_id": "c", "name": "f", "arguments": ""}}),
        json!({"type": "response.function_call_arguments.delta", "item_id": "fc", "output_index": 0, "delta": "{}"}),
        json!({"type": "response.completed", "response": {"status": "completed",
               "usage": {"input_tokens": 1, "output_tokens": 2}}}),
    ] {
        let step = a.on_event(&data(ev)).unwrap();
        out.extend(step.out);
        if step.finished {
            break;
        }
    }
    let chunks: Vec<Value> = out
        .iter()
        .map(|s| serde_json::from_str(s).unwrap())
        .collect();
    assert_eq!(chunks[1]["choices"][0]["delta"]["tool_calls"][0]["id"], "c");
    assert_eq!(
        chunks[2]["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"],
        "{}"
    );
    assert_eq!(chunks[3]["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(chunks[4]["usage"]["completion_tokens"], 2);
    // Arguments sent only whole, in `.done`.
    let mut b = stream_adapter(Protocol::Responses, Protocol::OpenAi, ctx());
    let mut out = Vec::new();
    for ev in [
        json!({"type": "response.output_item.added", "output_index": 0,
               "item": {"type": "function_call", "id": "fc", "call_id": "c", "name": "f", "arguments": ""}}),
        json!({"type": "response.function_call_arguments.done", "item_id": "fc", "output_index": 0, "arguments": "{\"a\":1}"}),
    ] {
        out.extend(b.on_event(&data(ev)).unwrap().out);
    }
    let last: Value = serde_json::from_str(out.last().unwrap()).unwrap();
    assert_eq!(
        last["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"],
        "{\"a\":1}"
    );
    let failed = json!({"type": "response.failed", "response": {"error": {"code": "server_error", "message": "x"}}});
    assert!(a.on_event(&data(failed)).is_err());
}

#[test]
fn responses_body_becomes_chat_and_anthropic() {
    let body = json!({
        "id": "resp_1", "object": "response", "created_at": 7, "model": "m",
        "status": "incomplete", "incomplete_details": {"reason": "max_output_tokens"},
        "output": [
            {"type": "reasoning", "id": "rs", "summary": [{"type": "summary_text", "text": "hm"}]},
            {"type": "web_search_call", "id": "ws", "status": "completed"},
            {"type": "message", "id": "m", "role": "assistant",
             "content": [{"type": "output_text", "text": "hi", "annotations": []}]},
            {"type": "function_call", "id": "fc", "call_id": "c", "name": "f", "arguments": "{\"a\":1}"},
        ],
        "usage": {"input_tokens": 5, "output_tokens": 3,
                  "input_tokens_details": {"cached_tokens": 2},
                  "output_tokens_details": {"reasoning_tokens": 1}},
    });
    let bytes = body.to_string();
    let chat = crate::protocol::convert_response(
        Protocol::Responses,
        Protocol::OpenAi,
        bytes.as_bytes(),
        99,
    )
    .unwrap();
    let c: Value = serde_json::from_str(&chat.body).unwrap();
    assert_eq!(c["created"], 7);
    assert_eq!(c["choices"][0]["finish_reason"], "length");
    let m = &c["choices"][0]["message"];
    assert_eq!(m["content"], "hi");
    assert_eq!(m["reasoning_content"], "hm");
    assert_eq!(m["tool_calls"][0]["function"]["arguments"], "{\"a\":1}");
    assert_eq!(
        c["usage"]["completion_tokens_details"]["reasoning_tokens"],
        1
    );
    assert_eq!(chat.usage.unwrap().cached_tokens, 2);
    let an = crate::protocol::convert_response(
        Protocol::Responses,
        Protocol::Anthropic,
        bytes.as_bytes(),
        99,
    )
    .unwrap();
    let a: Value = serde_json::from_str(&an.body).unwrap();
    assert_eq!(a["stop_reason"], "max_tokens");
    // Unsigned thinking cannot reach an Anthropic caller.
    let kinds: Vec<&str> = a["content"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["text", "tool_use"]);
}

#[test]
fn chat_body_becomes_a_response_echoing_the_request() {
    let chat = json!({
        "id": "x", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": null,
            "tool_calls": [{"id": "c", "type": "function",
                "function": {"name": "mcp__files__read", "arguments": "{}"}}]}}],
        "usage": {"prompt_tokens": 4, "completion_tokens": 2,
                  "completion_tokens_details": {"reasoning_tokens": 1}},
    });
    let request = map(json!({"input": "x", "temperature": 0.5, "tools": [
        {"type": "namespace", "name": "mcp__files", "tools": [{"type": "function", "name": "read"}]}]}));
    let out = crate::protocol::convert_response_for(
        Protocol::OpenAi,
        Protocol::Responses,
        chat.to_string().as_bytes(),
        9,
        &request,
        "e/p",
    )
    .unwrap();
    let r: Value = serde_json::from_str(&out.body).unwrap();
    assert_eq!(r["id"], "resp_x", "translated ids carry no endpoint tag");
    assert_eq!(r["status"], "completed");
    assert_eq!(r["temperature"], 0.5);
    let call = &r["output"][0];
    assert_eq!(call["type"], "function_call");
    assert_eq!(
        (&call["namespace"], &call["name"]),
        (&json!("mcp__files"), &json!("read"))
    );
    assert_eq!(r["usage"]["output_tokens_details"]["reasoning_tokens"], 1);
    assert_eq!(r["usage"]["total_tokens"], 6);
}

#[test]
fn anthropic_stream_signs_the_reasoning_item() {
    let mut a = stream_adapter(Protocol::Anthropic, Protocol::Responses, ctx());
    let mut out = Vec::new();
    for ev in [
        json!({"type": "message_start", "message": {"usage": {"input_tokens": 3}}}),
        json!({"type": "content_block_start", "index": 0,
               "content_block": {"type": "thinking", "thinking": ""}}),
        json!({"type": "content_block_delta", "index": 0,
               "delta": {"type": "thinking_delta", "thinking": "hm"}}),
        json!({"type": "content_block_delta", "index": 0,
               "delta": {"type": "signature_delta", "signature": "sig"}}),
        json!({"type": "content_block_start", "index": 1,
               "content_block": {"type": "text", "text": ""}}),
        json!({"type": "content_block_delta", "index": 1,
               "delta": {"type": "text_delta", "text": "hi"}}),
        json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"},
               "usage": {"output_tokens": 2}}),
        json!({"type": "message_stop"}),
    ] {
        let step = a.on_event(&data(ev)).unwrap();
        out.extend(step.out);
        if step.finished {
            break;
        }
    }
    let last: Value = serde_json::from_str(out.last().unwrap()).unwrap();
    assert_eq!(last["type"], "response.completed");
    let r = &last["response"];
    assert_eq!(
        r["output"][0]["encrypted_content"],
        format!("{THINKING_PREFIX}sig")
    );
    assert_eq!(r["output"][1]["content"][0]["text"], "hi");
    assert_eq!(r["usage"]["input_tokens"], 3);
    assert_eq!(a.usage().unwrap().completion_tokens, 2);
}

#[test]
fn a_chat_stream_finishing_with_error_is_an_upstream_error() {
    let mut a = stream_adapter(Protocol::OpenAi, Protocol::Responses, ctx());
    let chunk = data(json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "error"}]}));
    assert!(matches!(a.on_event(&chunk), Err(PayloadError::Upstream(_))));
}

// ---------------------------------------------------------------------------
// signature provenance: a signature goes back only to the family that
// issued it

/// `upstream`'s answer to a Responses caller, then the caller's next turn
/// (the answer's output items sent back, as Codex does, with a tool
/// result) as `next`'s request body.
fn answer_then_next_turn(upstream: Protocol, answer: Value, next: Protocol) -> (Value, Value) {
    let body = answer.to_string();
    let c = crate::protocol::convert_response(upstream, Protocol::Responses, body.as_bytes(), 1)
        .unwrap();
    let r: Value = serde_json::from_str(&c.body).unwrap();
    let mut input = vec![json!({"role": "user", "content": "weather?"})];
    input.extend(r["output"].as_array().unwrap().iter().cloned());
    input.push(json!({"type": "function_call_output", "call_id": "call_1", "output": "sunny"}));
    let request = map(json!({
        "model": "m", "input": input, "reasoning": {"effort": "medium"},
        "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}}],
    }));
    let out = crate::protocol::upstream_request(next, Protocol::Responses, &request, "up", false);
    (r, out.unwrap())
}

fn gemini_answer() -> Value {
    json!({"responseId": "r1", "modelVersion": "gemini-x",
        "candidates": [{"index": 0, "finishReason": "STOP", "content": {"role": "model", "parts": [
            {"text": "plan", "thought": true},
            {"functionCall": {"id": "call_1", "name": "f", "args": {}}, "thoughtSignature": "gsig"}]}}],
        "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 2}})
}

fn anthropic_answer() -> Value {
    json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x",
        "content": [{"type": "thinking", "thinking": "plan", "signature": "asig"},
            {"type": "tool_use", "id": "call_1", "name": "f", "input": {}}],
        "stop_reason": "tool_use", "usage": {"input_tokens": 3, "output_tokens": 2}})
}

/// The assistant turn of an Anthropic request body.
fn assistant_blocks(anthropic: &Value) -> Vec<Value> {
    let turn = anthropic["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["role"] == "assistant")
        .unwrap();
    turn["content"].as_array().unwrap().clone()
}

#[test]
fn a_gemini_signature_through_a_responses_caller_never_reaches_anthropic() {
    let (r, out) = answer_then_next_turn(Protocol::Gemini, gemini_answer(), Protocol::Anthropic);
    assert_eq!(
        r["output"][0]["encrypted_content"],
        format!("{GEMINI_THINKING_PREFIX}gsig")
    );
    let blocks = assistant_blocks(&out);
    assert!(blocks.iter().all(|b| b["type"] != "thinking"), "{blocks:?}");
    assert_eq!(blocks[0]["type"], "tool_use");
    assert!(!out.to_string().contains("gsig"), "{out}");
}

#[test]
fn a_gemini_signature_through_a_responses_caller_goes_back_to_gemini() {
    let (_, out) = answer_then_next_turn(Protocol::Gemini, gemini_answer(), Protocol::Gemini);
    let parts = &out["contents"][1]["parts"];
    assert_eq!(
        parts[0],
        json!({"text": "plan", "thought": true, "thoughtSignature": "gsig"})
    );
    assert_eq!(parts[1]["functionCall"]["name"], "f");
}

#[test]
fn an_anthropic_signature_through_a_responses_caller_goes_back_to_anthropic_only() {
    let (r, out) =
        answer_then_next_turn(Protocol::Anthropic, anthropic_answer(), Protocol::Anthropic);
    assert_eq!(
        r["output"][0]["encrypted_content"],
        format!("{THINKING_PREFIX}asig")
    );
    let blocks = assistant_blocks(&out);
    assert_eq!(
        blocks[0],
        json!({"type": "thinking", "thinking": "plan", "signature": "asig"})
    );
    assert_eq!(blocks[1]["type"], "tool_use");
    // To Gemini the thought text goes, Anthropic's signature does not.
    let (_, out) = answer_then_next_turn(Protocol::Anthropic, anthropic_answer(), Protocol::Gemini);
    assert_eq!(
        out["contents"][1]["parts"][0],
        json!({"text": "plan", "thought": true})
    );
    assert!(!out.to_string().contains("asig"), "{out}");
}

#[test]
fn an_openai_responses_endpoint_never_gets_another_familys_signature() {
    for (up, answer) in [
        (Protocol::Anthropic, anthropic_answer()),
        (Protocol::Gemini, gemini_answer()),
    ] {
        let (r, out) = answer_then_next_turn(up, answer, Protocol::Responses);
        assert_eq!(r["output"][0]["type"], "reasoning", "{up:?}");
        let input = out["input"].as_array().unwrap();
        assert!(
            input.iter().all(|it| it["type"] != "reasoning"),
            "{up:?}: {out}"
        );
        assert!(!out.to_string().contains("sig"), "{up:?}: {out}");
        // The rest of the turn goes as the caller sent it.
        assert_eq!(input.len(), 3, "{up:?}: {out}");
        assert_eq!(input[1]["type"], "function_call");
    }
}
