use serde_json::{json, Map, Value};

use super::*;
use crate::protocol::{
    convert_response, stream_adapter, upstream_request, Protocol, SseEvent, StreamContext,
};

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => panic!("not an object"),
    }
}

fn ctx() -> StreamContext {
    StreamContext {
        model: "vendor/m".into(),
        include_usage: true,
        created: 7,
        id: "req1".into(),
        input_tokens_estimate: 0,
    }
}

fn ev(data: Value) -> SseEvent {
    SseEvent {
        event: String::new(),
        data: data.to_string(),
    }
}

/// A Gemini caller's conversation: a call without id, its answer without
/// id, a signed thought, an image, a Google schema.
fn gemini_body() -> Map<String, Value> {
    obj(json!({
        "model": "vendor/m", "stream": false,
        "systemInstruction": {"parts": [{"text": "be brief"}]},
        "contents": [
            {"role": "user", "parts": [
                {"text": "weather?"},
                {"inlineData": {"mimeType": "image/png", "data": "iVBOR"}}]},
            {"role": "model", "parts": [
                {"text": "thinking", "thought": true, "thoughtSignature": "sig1"},
                {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}]},
            {"role": "user", "parts": [
                {"functionResponse": {"name": "get_weather", "response": {"output": "sunny"}}}]},
        ],
        "tools": [{"functionDeclarations": [{"name": "get_weather", "description": "w",
            "parameters": {"type": "OBJECT", "properties": {"city": {"type": "STRING"}},
                           "required": ["city"]}}]}],
        "toolConfig": {"functionCallingConfig": {"mode": "ANY"}},
        "generationConfig": {"temperature": 0.5, "maxOutputTokens": 100, "stopSequences": ["X"],
            "responseMimeType": "application/json",
            "responseSchema": {"type": "OBJECT", "properties": {"a": {"type": "INTEGER"}}},
            "thinkingConfig": {"thinkingBudget": 2000, "includeThoughts": true}},
        "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}],
    }))
}

#[test]
fn a_gemini_request_becomes_chat_with_paired_ids_and_json_schemas() {
    let out = upstream_request(
        Protocol::OpenAi,
        Protocol::Gemini,
        &gemini_body(),
        "up",
        false,
    )
    .unwrap();
    assert_eq!(out["model"], "up");
    let m = &out["messages"];
    assert_eq!(m[0], json!({"role": "system", "content": "be brief"}));
    assert_eq!(
        m[1]["content"][1]["image_url"]["url"],
        "data:image/png;base64,iVBOR"
    );
    let call = &m[2]["tool_calls"][0];
    assert_eq!(call["id"], "call_0_get_weather");
    assert_eq!(call["function"]["arguments"], r#"{"city":"Paris"}"#);
    assert_eq!(m[3]["role"], "tool");
    assert_eq!(m[3]["tool_call_id"], "call_0_get_weather");
    assert_eq!(m[3]["content"], "sunny");
    let params = &out["tools"][0]["function"]["parameters"];
    assert_eq!(params["type"], "object");
    assert_eq!(params["properties"]["city"]["type"], "string");
    assert_eq!(out["tool_choice"], "required");
    assert_eq!(out["response_format"]["type"], "json_schema");
    assert_eq!(
        out["response_format"]["json_schema"]["schema"]["properties"]["a"]["type"],
        "integer"
    );
    assert_eq!(out["max_completion_tokens"], 100);
    assert_eq!(out["stop"], json!(["X"]));
    assert_eq!(out["reasoning_effort"], "low");
    assert!(out.get("safetySettings").is_none());
}

#[test]
fn a_gemini_request_keeps_its_ids_but_not_its_signature_to_anthropic() {
    let mut body = gemini_body();
    let g = body["generationConfig"].as_object_mut().unwrap();
    g.remove("responseSchema");
    g.remove("responseMimeType");
    // Anthropic has no JSON output: refused by name, then sent without it.
    let e = upstream_request(
        Protocol::Anthropic,
        Protocol::Gemini,
        &gemini_body(),
        "up",
        true,
    )
    .unwrap_err();
    assert!(e.message().contains("json_schema"), "{e}");
    let out = upstream_request(Protocol::Anthropic, Protocol::Gemini, &body, "up", true).unwrap();
    assert_eq!(out["system"], "be brief");
    assert_eq!(out["stream"], true);
    let turn = &out["messages"][1]["content"];
    // Gemini's signature is not Anthropic's: the thinking stays behind.
    assert_eq!(turn[0]["type"], "tool_use");
    assert_eq!(turn[0]["id"], "call_0_get_weather");
    assert!(!out.to_string().contains("sig1"), "{out}");
    let result = &out["messages"][2]["content"][0];
    assert_eq!(result["tool_use_id"], "call_0_get_weather");
    assert_eq!(
        out["thinking"],
        json!({"type": "enabled", "budget_tokens": 2000})
    );
}

#[test]
fn what_cannot_cross_is_refused_naming_the_field() {
    for (patch, want) in [
        (
            json!({"cachedContent": "cachedContents/1"}),
            "cachedContent",
        ),
        (
            json!({"generationConfig": {"candidateCount": 2}}),
            "candidateCount",
        ),
        (json!({"tools": [{"googleSearch": {}}]}), "googleSearch"),
        (
            json!({"contents": [{"role": "user", "parts": [{"executableCode": {"code": "1"}}]}]}),
            "contents[0].parts[0]",
        ),
        (
            json!({"contents": [{"role": "user", "parts": [{"fileData": {"fileUri": "gs://b/x.pdf", "mimeType": "application/pdf"}}]}]}),
            "fileData",
        ),
    ] {
        let mut body = gemini_body();
        body.remove("tools");
        body.remove("toolConfig");
        for (k, v) in obj(patch) {
            body.insert(k, v);
        }
        let err =
            upstream_request(Protocol::OpenAi, Protocol::Gemini, &body, "up", false).unwrap_err();
        assert!(err.message().contains(want), "{want}: {err}");
    }
}

#[test]
fn a_gemini_upstream_gets_contents_named_calls_and_no_model_field() {
    let body = obj(json!({
        "model": "x", "system": "sys", "max_tokens": 50,
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "t", "signature": "s"},
                {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"a": 1}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "42", "is_error": true}]},
        ],
        "tools": [{"name": "f", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "tool", "name": "f"},
    }));
    let out = upstream_request(
        Protocol::Gemini,
        Protocol::Anthropic,
        &body,
        "gemini-x",
        true,
    )
    .unwrap();
    assert!(out.get("model").is_none() && out.get("stream").is_none());
    assert_eq!(
        out["systemInstruction"],
        json!({"parts": [{"text": "sys"}]})
    );
    let c = &out["contents"];
    assert_eq!(c[0], json!({"role": "user", "parts": [{"text": "hi"}]}));
    assert_eq!(
        c[1]["parts"][0],
        // Anthropic's signature means nothing to Gemini.
        json!({"text": "t", "thought": true})
    );
    assert_eq!(
        c[1]["parts"][1]["functionCall"],
        json!({"id": "toolu_1", "name": "f", "args": {"a": 1}})
    );
    assert_eq!(
        c[2]["parts"][0]["functionResponse"],
        json!({"id": "toolu_1", "name": "f", "response": {"error": "42"}})
    );
    assert_eq!(
        out["tools"][0]["functionDeclarations"][0]["parametersJsonSchema"],
        json!({"type": "object"})
    );
    assert_eq!(
        out["toolConfig"]["functionCallingConfig"],
        json!({"mode": "ANY", "allowedFunctionNames": ["f"]})
    );
    assert_eq!(out["generationConfig"]["maxOutputTokens"], 50);
    // Gemini to Gemini: the body as given, without llmux's fields.
    let same = upstream_request(
        Protocol::Gemini,
        Protocol::Gemini,
        &gemini_body(),
        "g",
        true,
    )
    .unwrap();
    assert!(same.get("model").is_none() && same.get("stream").is_none());
    assert_eq!(same["safetySettings"], gemini_body()["safetySettings"]);
}

#[test]
fn the_request_url_names_model_and_method() {
    assert_eq!(
        Protocol::Gemini.request_url("http://h/v1beta/models", "gemini-2.5-pro", true),
        Some("http://h/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse".into())
    );
    assert_eq!(
        Protocol::Gemini.request_url("http://h/v1beta/models", "m", false),
        Some("http://h/v1beta/models/m:generateContent".into())
    );
    assert_eq!(Protocol::OpenAi.request_url("http://h", "m", false), None);
    assert_eq!(
        Protocol::Gemini.auth(),
        crate::protocol::Auth::Header("x-goog-api-key")
    );
    assert_eq!(Protocol::from_name("gemini"), Some(Protocol::Gemini));
}

fn gemini_answer() -> Value {
    json!({
        "candidates": [{"index": 0, "finishReason": "STOP", "content": {"role": "model", "parts": [
            {"text": "plan", "thought": true},
            {"text": "calling"},
            {"functionCall": {"name": "f", "args": {"a": 1}}, "thoughtSignature": "sig"}]}}],
        "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 5,
            "thoughtsTokenCount": 3, "cachedContentTokenCount": 4, "totalTokenCount": 18},
        "modelVersion": "gemini-x", "responseId": "r1",
    })
}

#[test]
fn a_gemini_answer_becomes_openai_and_anthropic() {
    let body = gemini_answer().to_string();
    let c = convert_response(Protocol::Gemini, Protocol::OpenAi, body.as_bytes(), 9).unwrap();
    let usage = c.usage.unwrap();
    assert_eq!(
        (
            usage.prompt_tokens,
            usage.completion_tokens,
            usage.cached_tokens
        ),
        (10, 8, 4)
    );
    let v: Value = serde_json::from_str(&c.body).unwrap();
    let choice = &v["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    assert_eq!(choice["message"]["content"], "calling");
    assert_eq!(choice["message"]["tool_calls"][0]["id"], "call_r1_0");
    assert_eq!(v["usage"]["prompt_tokens_details"]["cached_tokens"], 4);
    let a = convert_response(Protocol::Gemini, Protocol::Anthropic, body.as_bytes(), 9).unwrap();
    let v: Value = serde_json::from_str(&a.body).unwrap();
    assert_eq!(v["stop_reason"], "tool_use");
    // Gemini's thoughts and signatures do not reach an Anthropic caller.
    assert_eq!(v["content"][0], json!({"type": "text", "text": "calling"}));
    assert_eq!(v["content"][1]["id"], "call_r1_0");
    assert_eq!(v["content"].as_array().unwrap().len(), 2);
    assert_eq!(v["usage"]["input_tokens"], 6);
}

#[test]
fn openai_and_anthropic_answers_become_gemini() {
    let chat = json!({"id": "c1", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [{"index": 0, "finish_reason": "length", "message": {"role": "assistant",
            "content": "hello", "tool_calls": [{"id": "call_9", "type": "function",
            "function": {"name": "f", "arguments": "{\"x\":2}"}}]}}],
        "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}});
    let c = convert_response(
        Protocol::OpenAi,
        Protocol::Gemini,
        chat.to_string().as_bytes(),
        1,
    )
    .unwrap();
    let v: Value = serde_json::from_str(&c.body).unwrap();
    let cand = &v["candidates"][0];
    assert_eq!(cand["finishReason"], "MAX_TOKENS");
    assert_eq!(cand["content"]["role"], "model");
    assert_eq!(cand["content"]["parts"][0], json!({"text": "hello"}));
    assert_eq!(
        cand["content"]["parts"][1]["functionCall"],
        json!({"id": "call_9", "name": "f", "args": {"x": 2}})
    );
    assert_eq!(v["usageMetadata"]["promptTokenCount"], 7);
    assert_eq!(v["usageMetadata"]["totalTokenCount"], 10);
    let msg = json!({"id": "msg1", "type": "message", "role": "assistant", "model": "c",
        "content": [{"type": "text", "text": "no"}], "stop_reason": "refusal",
        "usage": {"input_tokens": 2, "output_tokens": 1}});
    let c = convert_response(
        Protocol::Anthropic,
        Protocol::Gemini,
        msg.to_string().as_bytes(),
        1,
    )
    .unwrap();
    let v: Value = serde_json::from_str(&c.body).unwrap();
    assert_eq!(v["candidates"][0]["finishReason"], "SAFETY");
    assert_eq!(v["responseId"], "msg1");
}

#[test]
fn blocked_prompts_and_error_envelopes_are_upstream_errors() {
    let blocked = json!({"promptFeedback": {"blockReason": "SAFETY"}});
    let e = convert_response(
        Protocol::Gemini,
        Protocol::OpenAi,
        blocked.to_string().as_bytes(),
        1,
    )
    .unwrap_err();
    assert!(e.message().contains("prompt blocked: SAFETY"), "{e}");
    let env = error_body(429, "rate_limited", "slow down");
    assert_eq!(env["error"]["status"], "RESOURCE_EXHAUSTED");
    assert_eq!(env["error"]["code"], 429);
    assert_eq!(env["error"]["details"][0]["reason"], "rate_limited");
    let e = convert_response(
        Protocol::Gemini,
        Protocol::Gemini,
        env.to_string().as_bytes(),
        1,
    )
    .unwrap_err();
    assert_eq!(e.message(), "RESOURCE_EXHAUSTED: slow down");
    assert_eq!(
        error_message(&json!([{"error": {"message": "m"}}])),
        Some("m".into())
    );
    assert_eq!(status_name(503), "UNAVAILABLE");
    assert_eq!(status_name(401), "UNAUTHENTICATED");
}

#[test]
fn a_gemini_stream_completes_on_its_finish_reason() {
    let mut a = stream_adapter(Protocol::Gemini, Protocol::OpenAi, ctx());
    let s1 = a
        .on_event(&ev(json!({"candidates": [{"content": {"role": "model",
            "parts": [{"text": "Hel"}]}, "index": 0}], "responseId": "r"})))
        .unwrap();
    assert!(s1.content && !s1.finished);
    let s2 = a
        .on_event(&ev(json!({"candidates": [{"content": {"role": "model",
            "parts": [{"functionCall": {"name": "f", "args": {"a": 1}}}]},
            "finishReason": "STOP", "index": 0}],
            "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 2, "totalTokenCount": 5},
            "responseId": "r"})))
        .unwrap();
    assert!(s2.finished);
    let chunks: Vec<Value> = s1
        .out
        .iter()
        .chain(&s2.out)
        .map(|s| serde_json::from_str(s).unwrap())
        .collect();
    assert_eq!(chunks[1]["choices"][0]["delta"]["content"], "Hel");
    let call = &chunks[2]["choices"][0]["delta"]["tool_calls"][0];
    assert_eq!(
        (call["id"].as_str(), call["function"]["name"].as_str()),
        (Some("call_r_0"), Some("f"))
    );
    assert_eq!(
        chunks[3]["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"],
        r#"{"a":1}"#
    );
    assert!(chunks
        .iter()
        .any(|c| c["choices"][0]["finish_reason"] == "tool_calls"));
    assert_eq!(chunks.last().unwrap()["usage"]["completion_tokens"], 2);
    assert_eq!(a.usage().unwrap().prompt_tokens, 3);
    // An error chunk is the upstream's error.
    let mut b = stream_adapter(Protocol::Gemini, Protocol::Anthropic, ctx());
    let e = b
        .on_event(&ev(
            json!({"error": {"code": 503, "message": "busy", "status": "UNAVAILABLE"}}),
        ))
        .unwrap_err();
    assert_eq!(e.message(), "UNAVAILABLE: busy");
}

#[test]
fn an_anthropic_stream_becomes_gemini_chunks_with_whole_calls() {
    let mut a = stream_adapter(Protocol::Anthropic, Protocol::Gemini, ctx());
    let events = [
        json!({"type": "message_start", "message": {"usage": {"input_tokens": 4, "output_tokens": 0}}}),
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "ok"}}),
        json!({"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "toolu_1", "name": "f"}}),
        json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{\"a\":"}}),
        json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "1}"}}),
        json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 6}}),
        json!({"type": "message_stop"}),
    ];
    let mut out = Vec::new();
    let mut finished = false;
    for e in events {
        let s = a.on_event(&ev(e)).unwrap();
        finished |= s.finished;
        out.extend(s.out);
    }
    assert!(finished);
    let chunks: Vec<Value> = out
        .iter()
        .map(|s| serde_json::from_str(s).unwrap())
        .collect();
    assert_eq!(chunks.len(), 2, "{chunks:?}");
    assert_eq!(
        chunks[0]["candidates"][0]["content"]["parts"][0]["text"],
        "ok"
    );
    let last = &chunks[1];
    assert_eq!(
        last["candidates"][0]["content"]["parts"][0]["functionCall"],
        json!({"id": "toolu_1", "name": "f", "args": {"a": 1}})
    );
    assert_eq!(last["candidates"][0]["finishReason"], "STOP");
    assert_eq!(last["usageMetadata"]["promptTokenCount"], 4);
    assert_eq!(last["usageMetadata"]["candidatesTokenCount"], 6);
    assert_eq!(last["responseId"], "req1");
}

#[test]
fn a_gemini_stream_passes_through_to_a_gemini_caller() {
    let mut a = stream_adapter(Protocol::Gemini, Protocol::Gemini, ctx());
    let chunk = json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "x",
        "thoughtSignature": "s"}]}, "finishReason": "STOP", "index": 0}]});
    let s = a.on_event(&ev(chunk.clone())).unwrap();
    assert!(s.content && s.finished);
    assert_eq!(s.out, vec![chunk.to_string()]);
}

#[test]
fn responses_pairs_go_through_the_conversation_model() {
    let mut body = gemini_body();
    body["generationConfig"]
        .as_object_mut()
        .unwrap()
        .remove("stopSequences");
    let out = upstream_request(Protocol::Responses, Protocol::Gemini, &body, "up", false).unwrap();
    assert_eq!(out["model"], "up");
    assert_eq!(out["input"][0]["content"][0]["text"], "be brief", "{out}");
    assert!(out["input"]
        .as_array()
        .unwrap()
        .iter()
        .any(|i| i["type"] == "function_call"));
    let resp = obj(json!({"model": "m", "input": "hi", "instructions": "sys"}));
    let out = upstream_request(Protocol::Gemini, Protocol::Responses, &resp, "g", false).unwrap();
    assert_eq!(out["contents"][0]["parts"][0]["text"], "hi");
    assert_eq!(out["systemInstruction"]["parts"][0]["text"], "sys");
    // A Gemini stream to a Responses caller ends in response.completed.
    let mut a = stream_adapter(Protocol::Gemini, Protocol::Responses, ctx());
    a.configure(&resp, "e");
    let s = a
        .on_event(&ev(json!({"candidates": [{"content": {"role": "model",
            "parts": [{"text": "yo"}]}, "finishReason": "STOP", "index": 0}]})))
        .unwrap();
    assert!(s.finished);
    assert!(s.out.last().unwrap().contains("response.completed"));
}

#[test]
fn gemini_clis_placeholder_signature_is_no_thinking() {
    let body = obj(json!({
        "model": "m",
        "contents": [
            {"role": "user", "parts": [{"text": "run it"}]},
            {"role": "model", "parts": [{"functionCall": {"id": "c1", "name": "f", "args": {}},
                "thoughtSignature": request::SKIP_SIGNATURE}]},
            {"role": "user", "parts": [{"functionResponse": {"id": "c1", "name": "f",
                "response": {"output": "ok"}}}]},
        ],
    }));
    let out = upstream_request(Protocol::Anthropic, Protocol::Gemini, &body, "up", false).unwrap();
    let turn = out["messages"][1]["content"].as_array().unwrap();
    assert_eq!(turn.len(), 1, "{turn:?}");
    assert_eq!(turn[0]["type"], "tool_use");
}

#[test]
fn thoughts_tokens_are_reasoning_tokens_both_ways() {
    let body = gemini_answer().to_string();
    let r = convert_response(Protocol::Gemini, Protocol::Responses, body.as_bytes(), 9).unwrap();
    let v: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["usage"]["output_tokens"], 8, "{v}");
    assert_eq!(
        v["usage"]["output_tokens_details"]["reasoning_tokens"], 3,
        "{v}"
    );
    let chat = json!({
        "id": "c1", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [{"index": 0, "finish_reason": "stop",
            "message": {"role": "assistant", "content": "hi"}}],
        "usage": {"prompt_tokens": 4, "completion_tokens": 9, "total_tokens": 13,
            "completion_tokens_details": {"reasoning_tokens": 6}},
    })
    .to_string();
    let g = convert_response(Protocol::OpenAi, Protocol::Gemini, chat.as_bytes(), 9).unwrap();
    let v: Value = serde_json::from_str(&g.body).unwrap();
    let u = &v["usageMetadata"];
    assert_eq!(u["candidatesTokenCount"], 3, "{v}");
    assert_eq!(u["thoughtsTokenCount"], 6, "{v}");
    assert_eq!(g.usage.unwrap().completion_tokens, 9);
    // A stream: the last Gemini chunk splits the same way.
    let mut a = stream_adapter(Protocol::Gemini, Protocol::Gemini, ctx());
    let s = a.on_event(&ev(gemini_answer())).unwrap();
    assert!(s.finished);
    let mut a = stream_adapter(Protocol::OpenAi, Protocol::Gemini, ctx());
    let mut out = Vec::new();
    for c in [
        json!({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [{"index": 0, "delta": {"role": "assistant", "content": "hi"}}]}),
        json!({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}),
        json!({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [], "usage": {"prompt_tokens": 4, "completion_tokens": 9,
            "total_tokens": 13, "completion_tokens_details": {"reasoning_tokens": 6}}}),
    ] {
        out.extend(a.on_event(&ev(c)).unwrap().out);
    }
    out.extend(
        a.on_event(&SseEvent {
            event: String::new(),
            data: "[DONE]".into(),
        })
        .unwrap()
        .out,
    );
    let last: Value = serde_json::from_str(out.last().unwrap()).unwrap();
    assert_eq!(last["usageMetadata"]["thoughtsTokenCount"], 6, "{last}");
    assert_eq!(last["usageMetadata"]["candidatesTokenCount"], 3, "{last}");
}
