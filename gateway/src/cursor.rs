//! Cursor's bodies on the Chat Completions route (issue 25).
//!
//! Cursor with an overridden OpenAI base URL verifies it with
//! `GET /v1/models`, then posts to `/chat/completions` in two shapes and
//! reads the answer as Chat Completions (`choices[].delta` chunks, then
//! `[DONE]`) in both:
//!
//! - agent mode: a Responses-shaped body (`input` instead of `messages`,
//!   flat `{"type":"function","name":..}` tools, free-form
//!   `{"type":"custom"}` tools such as `ApplyPatch`, and Responses fields
//!   such as `store`, `include`, `reasoning`, `text`, `truncation`,
//!   `prompt_cache_retention`);
//! - ask mode: a Chat Completions body whose `tools` mix nested and flat
//!   function tools.
//!
//! [`adapt`] turns both into a plain Chat Completions body, which the
//! engine then routes like any other (so the answer is Chat Completions).
//! Other bodies are left as they are, after a scan that allocates nothing.

use axum::body::Bytes;
use llmux::protocol::{openai, responses, PayloadError};
use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::{json, Map, Value};

/// What [`adapt`] looks at first, without building the body.
#[derive(Deserialize)]
struct Probe {
    input: Option<IgnoredAny>,
    messages: Option<IgnoredAny>,
    tools: Option<Vec<ToolProbe>>,
}

#[derive(Deserialize)]
struct ToolProbe {
    function: Option<IgnoredAny>,
    name: Option<IgnoredAny>,
}

/// Free-form input of a `custom` tool, as the one argument of the function
/// that stands for it.
const CUSTOM_ARG: &str = "input";

/// The Chat Completions body for a Cursor-shaped `body` on the chat
/// route, `Ok(None)` when it is a plain Chat Completions body (or not JSON:
/// the engine says what is wrong with it), or why it cannot be taken.
pub fn adapt(body: &Bytes) -> Result<Option<Bytes>, String> {
    let has = |needle: &[u8]| body.windows(needle.len()).any(|w| w == needle);
    if !has(b"\"input\"") && !has(b"\"tools\"") {
        return Ok(None);
    }
    let Ok(probe) = serde_json::from_slice::<Probe>(body) else {
        return Ok(None);
    };
    let responses_shaped = probe.input.is_some() && probe.messages.is_none();
    let flat_tools = probe
        .tools
        .iter()
        .flatten()
        .any(|t| t.function.is_none() && t.name.is_some());
    if !responses_shaped && !flat_tools {
        return Ok(None);
    }
    let Ok(Value::Object(mut map)) = serde_json::from_slice::<Value>(body) else {
        return Ok(None);
    };
    let chat = if responses_shaped {
        responses_to_chat(map)?
    } else {
        nest_tools(&mut map);
        map
    };
    Ok(Some(Bytes::from(Value::Object(chat).to_string())))
}

/// A Responses-shaped body as a Chat Completions body.
fn responses_to_chat(mut map: Map<String, Value>) -> Result<Map<String, Value>, String> {
    // Cursor keeps its own history: `store` asks for nothing llmux could
    // honour on this route, and an explicit `false` changes nothing.
    map.remove("store");
    customs_as_functions(&mut map);
    let stream_options = map.remove("stream_options");
    let mut chat = via_ir(&map).map_err(|e| {
        format!(
            "a Responses-shaped body (with `input`) on the Chat Completions route: {}",
            e.message()
        )
    })?;
    for key in ["prompt_cache_key", "metadata", "service_tier", "provider"] {
        if let Some(v) = map.remove(key).filter(|v| !v.is_null()) {
            chat.insert(key.into(), v);
        }
    }
    if chat.get("stream").and_then(Value::as_bool) == Some(true) {
        chat.insert(
            "stream_options".into(),
            stream_options.unwrap_or_else(|| json!({"include_usage": true})),
        );
    }
    Ok(chat)
}

/// A Responses request as a Chat Completions body, through the
/// conversation model.
fn via_ir(map: &Map<String, Value>) -> Result<Map<String, Value>, PayloadError> {
    let ir = responses::parse_request(map)?;
    match openai::chat::emit_request(&ir)? {
        Value::Object(chat) => Ok(chat),
        _ => Err(PayloadError::Malformed(
            "translation produced a non-object".into(),
        )),
    }
}

/// `custom` tools become functions taking one string, and their calls and
/// outputs in `input` become function calls and outputs.
fn customs_as_functions(map: &mut Map<String, Value>) {
    if let Some(Value::Array(tools)) = map.get_mut("tools") {
        for t in tools.iter_mut() {
            if t.get("type").and_then(Value::as_str) != Some("custom") {
                continue;
            }
            let name = t.get("name").cloned().unwrap_or(Value::Null);
            let mut description = t
                .get("description")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            description.push_str(" (free-form tool: pass its whole input as the `input` string)");
            *t = json!({
                "type": "function",
                "name": name,
                "description": description.trim_start(),
                "parameters": {
                    "type": "object",
                    "properties": {CUSTOM_ARG: {"type": "string"}},
                    "required": [CUSTOM_ARG],
                },
            });
        }
    }
    if let Some(Value::Array(items)) = map.get_mut("input") {
        for it in items.iter_mut() {
            let Some(o) = it.as_object_mut() else {
                continue;
            };
            match o.get("type").and_then(Value::as_str) {
                Some("custom_tool_call") => {
                    let input = o.remove("input").unwrap_or(Value::Null);
                    let args = json!({ CUSTOM_ARG: input }).to_string();
                    o.insert("type".into(), json!("function_call"));
                    o.insert("arguments".into(), json!(args));
                }
                Some("custom_tool_call_output") => {
                    o.insert("type".into(), json!("function_call_output"));
                }
                _ => {}
            }
        }
    }
}

/// Flat function tools (`{"type":"function","name":..}`) in a Chat
/// Completions body, nested as Chat Completions has them.
fn nest_tools(map: &mut Map<String, Value>) {
    let Some(Value::Array(tools)) = map.get_mut("tools") else {
        return;
    };
    for t in tools.iter_mut() {
        let Some(o) = t.as_object_mut() else {
            continue;
        };
        if o.contains_key("function") || !o.contains_key("name") {
            continue;
        }
        let mut function = Map::new();
        for key in ["name", "description", "parameters", "strict"] {
            if let Some(v) = o.remove(key) {
                function.insert(key.into(), v);
            }
        }
        *t = json!({"type": "function", "function": function});
    }
}

#[cfg(test)]
#[path = "cursor_tests.rs"]
mod tests;
