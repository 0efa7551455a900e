//! Unit tests of `crate::protocol::ir`: each protocol's parse and emit are
//! inverse on what the model carries.

use serde_json::{json, Value};

use crate::protocol::anthropic::messages;
use crate::protocol::openai::chat;

fn map(v: &Value) -> &serde_json::Map<String, Value> {
    v.as_object().expect("an object")
}

#[test]
fn chat_request_survives_the_model() {
    let body = json!({
        "model": "m",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [
                {"type": "text", "text": "Look:"},
                {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]},
            {"role": "assistant", "content": "Checking.", "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{\"q\":1}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "found"},
            {"role": "user", "content": "Thanks."}
        ],
        "max_completion_tokens": 300,
        "stop": ["END"],
        "temperature": 0.5,
        "top_p": 1,
        "tools": [{"type": "function", "function": {"name": "f", "description": "find",
            "parameters": {"type": "object"}}}],
        "tool_choice": {"type": "function", "function": {"name": "f"}},
        "parallel_tool_calls": false,
        "response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": {}}},
        "user": "u-1",
        "reasoning_effort": "high",
        "stream": true,
        "stream_options": {"include_usage": true}
    });
    let ir = chat::parse_request(map(&body)).expect("parses");
    assert_eq!(chat::emit_request(&ir).expect("emits"), body);
}

#[test]
fn messages_request_survives_the_model() {
    let body = json!({
        "model": "m",
        "system": "Be brief.",
        "messages": [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "t", "signature": "s"},
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"q": 1}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "found", "is_error": true},
                {"type": "text", "text": "Thanks.", "cache_control": {"type": "ephemeral"}}]}
        ],
        "thinking": {"type": "enabled", "budget_tokens": 2000},
        "max_tokens": 4000,
        "stop_sequences": ["END"],
        "tools": [{"name": "f", "description": "find", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": true},
        "metadata": {"user_id": "u-1"},
        "stream": true
    });
    let ir = messages::parse_request(map(&body)).expect("parses");
    assert_eq!(messages::emit_request(&ir).expect("emits"), body);
}

#[test]
fn responses_survive_the_model() {
    let chat_resp = json!({
        "id": "c", "object": "chat.completion", "created": 7, "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi.", "refusal": null,
            "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
            "logprobs": null, "finish_reason": "tool_calls"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7,
            "prompt_tokens_details": {"cached_tokens": 1}}
    });
    let ir = chat::parse_response(&chat_resp).expect("parses");
    assert_eq!(chat::emit_response(&ir, 7).expect("emits"), chat_resp);
    let msg = json!({
        "id": "msg", "type": "message", "role": "assistant", "model": "m",
        "content": [{"type": "text", "text": "Hi."},
            {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"a": 1}}],
        "stop_reason": "tool_use", "stop_sequence": null,
        "usage": {"input_tokens": 4, "cache_read_input_tokens": 1, "output_tokens": 2}
    });
    let ir = messages::parse_response(&msg).expect("parses");
    assert_eq!(messages::emit_response(&ir).expect("emits"), msg);
}
