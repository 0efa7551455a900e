use super::adapt;
use axum::body::Bytes;
use serde_json::{json, Value};

fn adapted(body: Value) -> Option<Value> {
    adapt(&Bytes::from(body.to_string()))
        .expect("adapts")
        .map(|b| serde_json::from_slice(&b).expect("json"))
}

#[test]
fn plain_chat_bodies_are_left_alone() {
    let chat = json!({"model": "m", "messages": [{"role": "user", "content": "the input"}],
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]});
    assert_eq!(adapted(chat), None);
    assert!(adapt(&Bytes::from_static(b"not json \"input\""))
        .unwrap()
        .is_none());
}

#[test]
fn agent_mode_bodies_become_chat_with_custom_tools_as_functions() {
    let body = json!({
        "model": "m", "stream": true, "store": false, "previous_response_id": null,
        "include": ["reasoning.encrypted_content"], "truncation": "disabled",
        "reasoning": {"effort": "medium", "summary": "auto"}, "text": {"verbosity": "low"},
        "stream_options": {"include_usage": true}, "instructions": "be brief",
        "input": [
            {"role": "user", "content": [{"type": "input_text", "text": "fix it"}]},
            {"type": "custom_tool_call", "call_id": "c1", "name": "ApplyPatch", "input": "*** Begin Patch"},
            {"type": "custom_tool_call_output", "call_id": "c1", "output": "done"},
        ],
        "tools": [
            {"type": "function", "name": "read_file", "parameters": {"type": "object", "properties": {}}},
            {"type": "custom", "name": "ApplyPatch", "description": "Edit files.", "format": {"type": "grammar"}},
        ],
    });
    let chat = adapted(body).expect("adapted");
    assert_eq!(
        chat["messages"][0],
        json!({"role": "system", "content": "be brief"})
    );
    assert_eq!(
        chat["messages"][2]["tool_calls"][0]["function"]["arguments"],
        "{\"input\":\"*** Begin Patch\"}"
    );
    assert_eq!(chat["messages"][3]["role"], "tool");
    assert_eq!(chat["tools"][0]["function"]["name"], "read_file");
    assert_eq!(chat["tools"][1]["function"]["name"], "ApplyPatch");
    assert_eq!(
        chat["tools"][1]["function"]["parameters"]["required"],
        json!(["input"])
    );
    assert_eq!(chat["reasoning_effort"], "medium");
    assert_eq!(chat["verbosity"], "low");
    assert_eq!(chat["stream_options"], json!({"include_usage": true}));
    assert!(chat.get("input").is_none() && chat.get("store").is_none());
}

#[test]
fn ask_mode_flat_tools_are_nested_and_stateful_bodies_refused() {
    let ask = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "tools": [
        {"type": "function", "function": {"name": "a", "parameters": {}}},
        {"type": "function", "name": "b", "description": "B", "parameters": {"type": "object"}},
    ]});
    let chat = adapted(ask).expect("adapted");
    assert_eq!(
        chat["tools"][1],
        json!({"type": "function", "function": {"name": "b", "description": "B", "parameters": {"type": "object"}}})
    );
    let err = adapt(&Bytes::from(
        json!({"model": "m", "input": "hi", "previous_response_id": "resp_1"}).to_string(),
    ))
    .expect_err("refused");
    assert!(
        err.contains("previous_response_id") && err.contains("Chat Completions route"),
        "{err}"
    );
}
