//! Translation between OpenAI Responses and the other two protocols:
//! requests, non-streaming responses and streams.
//!
//! Chat Completions is the pivot: a Responses request bound for an
//! Anthropic endpoint is translated to Chat Completions here and then to
//! Anthropic Messages by [`super::translate`]; an Anthropic stream reaches a
//! Responses caller through [`translate::AnthropicToOpenAi`] and then
//! [`ChatToResponses`], chained by [`Chain`]. Every rule of `translate`
//! (what is dropped, what is refused) therefore holds on the second leg.
//! Pure: time (`created_at` when the upstream gave none) is a parameter.
//!
//! ## Responses caller -> Chat Completions (and from there Anthropic)
//!
//! | Responses | Chat Completions | note |
//! | --- | --- | --- |
//! | `instructions` | first message, role `system` | |
//! | `input` string | one `user` message | |
//! | `message` items (`system`, `developer`, `user`, `assistant`) | messages; `developer` becomes `system` | `input_text` / `output_text` -> text; `input_image` (`image_url`, `detail`) -> `image_url` part; `refusal` parts -> text |
//! | `function_call` items {`call_id`, `name`, `arguments`, `namespace`?} | `tool_calls` of an assistant message | consecutive calls (and the assistant text before them) share one message; a namespaced name is flattened (below) |
//! | `function_call_output` {`call_id`, `output`} | `tool` message | `output` a string, or `input_text` parts joined with `"\n"` |
//! | `tools`: `function` {`name`, `description`, `parameters`, `strict`} | `tools[].function` | |
//! | `tools`: `namespace` {`name`, `tools`: [functions]} | one function per member, named `<namespace>__<name>` | names longer than 64 characters are shortened with a hash; calls come back as `function_call` with `namespace` and the member's `name` |
//! | `tool_choice` `auto` / `none` / `required` / {`type`:`function`, `name`} | same / {`type`:`function`, `function`:{`name`}} | |
//! | `parallel_tool_calls`, `temperature`, `top_p`, `user` | same | |
//! | `max_output_tokens` | `max_completion_tokens` | |
//! | `reasoning.effort` | `reasoning_effort` | |
//! | `text.format` `json_object` / `json_schema` {`name`, `schema`, `strict`, `description`} | `response_format` | refused on the way on to Anthropic (no equivalent) |
//! | `text.verbosity` | `verbosity` | |
//!
//! Dropped with a note (the request still works, Codex depends on it):
//! hosted tools (`web_search`, `web_search_preview`, `file_search`,
//! `code_interpreter`, `image_generation`, `mcp`, `tool_search`, and any
//! other tool type that is not `function`, `namespace` or `custom`), and
//! `web_search_call` items in the input: the model simply has no such tool.
//! Dropped silently: item `id`s and `status`, `reasoning` items (another
//! provider's encrypted reasoning means nothing here; llmux's own Anthropic
//! thinking signatures, [`THINKING_PREFIX`], are rebuilt into thinking
//! blocks instead), `include`,
//! `prompt_cache_key`, `client_metadata`, `metadata`, `reasoning.summary`,
//! `store: false`, `service_tier`, `safety_identifier`, `truncation`,
//! `stream_options`, `background: false`, `text.format` `text`, `top_logprobs:
//! 0`, and other unknown fields.
//!
//! Refused (the caller would silently get something else): `store: true` and
//! `previous_response_id` (only a Responses endpoint keeps state; routing
//! sends such requests there), `conversation`, `prompt` (stored prompts),
//! `background: true`, `max_tool_calls`, `top_logprobs > 0`, `custom`
//! (free-form) tools, `item_reference` and other item types, `input_file`
//! and `input_audio` parts, images inside `function_call_output`, unknown
//! roles, `tool_choice` forms other than the four above, wrongly typed
//! fields.
//!
//! ## Chat Completions caller (and Anthropic, via Chat) -> Responses
//!
//! | Chat Completions | Responses | note |
//! | --- | --- | --- |
//! | `system` / `developer` / `user` / `assistant` messages | `message` items with that role | text parts -> `input_text` (`output_text` for assistant); `image_url` -> `input_image` |
//! | assistant `tool_calls` | `function_call` items | |
//! | `tool` messages | `function_call_output` items | text parts joined with `"\n"` |
//! | `tools[].function` | `function` tools | `strict` defaults to `false` (Chat's default; Responses would default to strict) |
//! | `tool_choice` | same; {`type`:`function`, `function`:{`name`}} -> {`type`:`function`, `name`} | |
//! | `max_completion_tokens`, else `max_tokens` | `max_output_tokens` | |
//! | `reasoning_effort` | `reasoning.effort` | |
//! | `response_format` | `text.format` | `json_schema` is flattened |
//! | `verbosity` | `text.verbosity` | |
//! | `parallel_tool_calls`, `temperature`, `top_p`, `user`, `metadata`, `service_tier`, `prompt_cache_key`, `safety_identifier` | same | |
//! | `store` | `store: false` | llmux keeps no state for these callers |
//!
//! Dropped: `stream_options`, `n: 1`, `seed`, `presence_penalty`,
//! `frequency_penalty`, `logit_bias`, `logprobs: false`, `reasoning_content`
//! in assistant turns, message `name`, other unknown fields. Refused: `stop`
//! (Responses has no stop sequences; Anthropic's `stop_sequences` arrive
//! here as `stop`), `n > 1`, `logprobs: true`, `audio` / non-text
//! `modalities`, `web_search_options`, the legacy `functions`, non-function
//! tools, `input_audio` / `file` parts.
//!
//! ## Responses and streams
//!
//! | Chat Completions | Responses |
//! | --- | --- |
//! | `message.reasoning_content` / `delta.reasoning_content` | a `reasoning` item with a `reasoning_text` content part (`response.reasoning_text.delta`) |
//! | `content` / `delta.content` (and `refusal`) | a `message` item with one `output_text` part |
//! | `tool_calls` | `function_call` items (`fc_` ids; `call_id` is the tool call id) |
//! | `finish_reason` `stop` / `tool_calls` | status `completed` |
//! | `finish_reason` `length` | status `incomplete`, `incomplete_details.reason: "max_output_tokens"` (`response.incomplete`) |
//! | `finish_reason` `content_filter` | status `incomplete`, reason `content_filter` |
//! | `usage` | `input_tokens` (= prompt tokens, cached included), `input_tokens_details.cached_tokens`, `output_tokens`, `output_tokens_details.reasoning_tokens` |
//!
//! Streams emit `response.created`, `response.in_progress`, then per item
//! `response.output_item.added`, `response.content_part.added`, the deltas,
//! their `.done`, `response.content_part.done`, `response.output_item.done`,
//! and last `response.completed` or `response.incomplete`, each with a
//! growing `sequence_number`. A stream cut after its first token ends with
//! `response.failed` (then the terminal error event). The reverse direction
//! maps the same events back to chunks; `response.failed` and `error` events
//! are upstream errors; hosted-tool items have no Chat counterpart and are
//! skipped.

use super::responses::{self, event_carries, parse_event, stream_error, usage_json};
use super::{
    anthropic, openai, translate, Converted, PayloadError, Protocol, SseEvent, StreamAdapter,
    StreamContext, StreamStep, Usage,
};
use serde_json::{json, Map, Value};

fn bad(msg: impl Into<String>) -> PayloadError {
    PayloadError::Malformed(msg.into())
}

fn as_obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

fn get_str<'a>(
    m: &'a Map<String, Value>,
    k: &str,
    path: &str,
) -> Result<Option<&'a str>, PayloadError> {
    match m.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(bad(format!("`{path}{k}` must be a string"))),
    }
}

fn need_str<'a>(m: &'a Map<String, Value>, k: &str, path: &str) -> Result<&'a str, PayloadError> {
    get_str(m, k, path)?.ok_or_else(|| bad(format!("`{path}{k}` is required")))
}

fn need_obj<'a>(v: &'a Value, path: &str) -> Result<&'a Map<String, Value>, PayloadError> {
    v.as_object()
        .ok_or_else(|| bad(format!("`{path}` must be an object")))
}

fn need_arr<'a>(v: &'a Value, path: &str) -> Result<&'a Vec<Value>, PayloadError> {
    v.as_array()
        .ok_or_else(|| bad(format!("`{path}` must be a list")))
}

// ---------------------------------------------------------------------------
// namespaced tools

/// The flattened names of a request's namespaced functions.
#[derive(Clone, Debug, Default)]
pub struct Namespaces {
    /// (flat name, namespace, member name)
    names: Vec<(String, String, String)>,
}

/// `<namespace>__<name>`, shortened with a hash past 64 characters (the
/// limit of OpenAI function names).
fn flat_name(ns: &str, name: &str) -> String {
    let full = format!("{ns}__{name}");
    if full.len() <= 64 {
        return full;
    }
    // FNV-1a: stable across runs and builds.
    let h = full.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    });
    let keep: String = full.chars().take(47).collect();
    format!("{keep}_{h:016x}")
}

impl Namespaces {
    /// Reads the `namespace` tools of a Responses request.
    pub fn of(request: &Map<String, Value>) -> Namespaces {
        let mut names = Vec::new();
        for t in request
            .get("tools")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if t.get("type").and_then(Value::as_str) != Some("namespace") {
                continue;
            }
            let ns = t.get("name").and_then(Value::as_str).unwrap_or("");
            for f in t
                .get("tools")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(n) = f.get("name").and_then(Value::as_str) {
                    names.push((flat_name(ns, n), ns.to_owned(), n.to_owned()));
                }
            }
        }
        Namespaces { names }
    }

    /// (namespace, name) of a flattened name, if it is one.
    pub fn restore(&self, flat: &str) -> Option<(&str, &str)> {
        self.names
            .iter()
            .find(|(f, _, _)| f == flat)
            .map(|(_, ns, n)| (ns.as_str(), n.as_str()))
    }
}

// ---------------------------------------------------------------------------
// requests: Responses -> Chat Completions

/// Hosted tools, dropped toward Chat Completions and Anthropic.
fn is_hosted_tool(ty: &str) -> bool {
    !matches!(ty, "function" | "namespace" | "custom")
}

fn function_tool(f: &Map<String, Value>, name: String, path: &str) -> Result<Value, PayloadError> {
    let mut func = Map::new();
    func.insert("name".into(), json!(name));
    if let Some(d) = get_str(f, "description", path)? {
        func.insert("description".into(), json!(d));
    }
    func.insert(
        "parameters".into(),
        f.get("parameters")
            .filter(|p| !p.is_null())
            .cloned()
            .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
    );
    if let Some(s) = f.get("strict").and_then(Value::as_bool) {
        func.insert("strict".into(), json!(s));
    }
    Ok(json!({ "type": "function", "function": func }))
}

fn responses_tools_to_chat(tools: &Value) -> Result<Vec<Value>, PayloadError> {
    let mut out = Vec::new();
    for (i, t) in need_arr(tools, "tools")?.iter().enumerate() {
        let path = format!("tools[{i}].");
        let t = need_obj(t, &format!("tools[{i}]"))?;
        match need_str(t, "type", &path)? {
            "function" => out.push(function_tool(
                t,
                need_str(t, "name", &path)?.to_owned(),
                &path,
            )?),
            "namespace" => {
                let ns = need_str(t, "name", &path)?;
                let members = t
                    .get("tools")
                    .ok_or_else(|| bad(format!("`{path}tools` is required")))?;
                for (j, f) in need_arr(members, &format!("{path}tools"))?
                    .iter()
                    .enumerate()
                {
                    let fpath = format!("{path}tools[{j}].");
                    let f = need_obj(f, &fpath)?;
                    if need_str(f, "type", &fpath)? != "function" {
                        return Err(bad(format!(
                            "`{fpath}type`: only function tools inside a namespace can be translated"
                        )));
                    }
                    out.push(function_tool(
                        f,
                        flat_name(ns, need_str(f, "name", &fpath)?),
                        &fpath,
                    )?);
                }
            }
            "custom" => {
                return Err(bad(format!(
                    "`{path}type`: custom (free-form) tools have no equivalent at this endpoint"
                )))
            }
            ty if is_hosted_tool(ty) => {} // dropped: see the module docs
            _ => {}
        }
    }
    Ok(out)
}

fn responses_tool_choice(v: &Value) -> Result<Value, PayloadError> {
    match v {
        Value::String(s) if matches!(s.as_str(), "auto" | "none" | "required") => Ok(v.clone()),
        Value::Object(o) if o.get("type").and_then(Value::as_str) == Some("function") => {
            let name = need_str(o, "name", "tool_choice.")?;
            Ok(json!({ "type": "function", "function": { "name": name } }))
        }
        _ => Err(bad(
            "`tool_choice` must be auto, none, required or {\"type\": \"function\", \"name\": ...} for this endpoint",
        )),
    }
}

/// Text and image parts of an input message, as Chat content parts.
fn responses_parts_to_chat(parts: &[Value], path: &str) -> Result<Vec<Value>, PayloadError> {
    let mut out = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        let pp = format!("{path}[{i}].");
        let p = need_obj(p, &pp)?;
        match need_str(p, "type", &pp)? {
            "input_text" | "output_text" | "text" => {
                out.push(json!({ "type": "text", "text": need_str(p, "text", &pp)? }))
            }
            "refusal" => out.push(json!({ "type": "text", "text": need_str(p, "refusal", &pp)? })),
            "input_image" => {
                let url = get_str(p, "image_url", &pp)?.ok_or_else(|| {
                    bad(format!(
                        "`{pp}image_url` is required (file ids cannot be translated)"
                    ))
                })?;
                let mut img = json!({ "url": url });
                if let Some(d) = get_str(p, "detail", &pp)? {
                    img["detail"] = json!(d);
                }
                out.push(json!({ "type": "image_url", "image_url": img }));
            }
            other => {
                return Err(bad(format!(
                    "`{pp}type`: `{other}` content cannot be translated for this endpoint"
                )))
            }
        }
    }
    Ok(out)
}

/// Chat content: a plain string when it is text only.
fn compact(parts: Vec<Value>, text_only: bool) -> Value {
    let all_text = parts.iter().all(|p| p["type"] == "text");
    if all_text && (text_only || parts.len() <= 1) {
        let s: String = parts
            .iter()
            .filter_map(|p| p["text"].as_str())
            .collect::<Vec<_>>()
            .join("");
        return json!(s);
    }
    Value::Array(parts)
}

/// Adds a function call to the assistant message at the end of `msgs`
/// (opening one when the last message is not an assistant's).
fn push_call(msgs: &mut Vec<Value>, call: Value) {
    let open = msgs.last().is_some_and(|m| m["role"] == "assistant");
    if !open {
        msgs.push(json!({ "role": "assistant", "content": null }));
    }
    if let Some(Value::Object(m)) = msgs.last_mut() {
        match m.get_mut("tool_calls") {
            Some(Value::Array(calls)) => calls.push(call),
            _ => {
                m.insert("tool_calls".into(), json!([call]));
            }
        }
    }
}

fn function_output_text(v: &Value, path: &str) -> Result<String, PayloadError> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Array(parts) => {
            let mut texts = Vec::new();
            for (i, p) in parts.iter().enumerate() {
                let pp = format!("{path}[{i}].");
                let p = need_obj(p, &pp)?;
                match need_str(p, "type", &pp)? {
                    "input_text" | "output_text" | "text" => {
                        texts.push(need_str(p, "text", &pp)?.to_owned())
                    }
                    other => {
                        return Err(bad(format!(
                            "`{pp}type`: `{other}` in a function_call_output cannot be translated"
                        )))
                    }
                }
            }
            Ok(texts.join("\n"))
        }
        _ => Err(bad(format!("`{path}` must be a string or a list of parts"))),
    }
}

fn responses_input_to_messages(input: &Value, msgs: &mut Vec<Value>) -> Result<(), PayloadError> {
    let items = match input {
        Value::String(s) => {
            msgs.push(json!({ "role": "user", "content": s }));
            return Ok(());
        }
        Value::Array(items) => items,
        _ => return Err(bad("`input` must be a string or a list of items")),
    };
    for (i, item) in items.iter().enumerate() {
        let path = format!("input[{i}].");
        let it = need_obj(item, &format!("input[{i}]"))?;
        let ty = match get_str(it, "type", &path)? {
            Some(t) => t,
            None if it.contains_key("role") => "message",
            None => return Err(bad(format!("`{path}type` is required"))),
        };
        match ty {
            "message" => {
                let role = match need_str(it, "role", &path)? {
                    "developer" | "system" => "system",
                    "user" => "user",
                    "assistant" => "assistant",
                    other => return Err(bad(format!("`{path}role`: unknown role `{other}`"))),
                };
                let content = match it.get("content") {
                    Some(Value::String(s)) => json!(s),
                    Some(Value::Array(parts)) => {
                        let parts = responses_parts_to_chat(parts, &format!("{path}content"))?;
                        compact(parts, role != "user")
                    }
                    _ => {
                        return Err(bad(format!(
                            "`{path}content` must be a string or a list of parts"
                        )))
                    }
                };
                msgs.push(json!({ "role": role, "content": content }));
            }
            "function_call" => {
                let name = need_str(it, "name", &path)?;
                let name = match get_str(it, "namespace", &path)? {
                    Some(ns) => flat_name(ns, name),
                    None => name.to_owned(),
                };
                let args = get_str(it, "arguments", &path)?.unwrap_or("");
                push_call(
                    msgs,
                    json!({
                        "id": need_str(it, "call_id", &path)?,
                        "type": "function",
                        "function": { "name": name, "arguments": args },
                    }),
                );
            }
            "function_call_output" => {
                let output = it
                    .get("output")
                    .ok_or_else(|| bad(format!("`{path}output` is required")))?;
                msgs.push(json!({
                    "role": "tool",
                    "tool_call_id": need_str(it, "call_id", &path)?,
                    "content": function_output_text(output, &format!("{path}output"))?,
                }));
            }
            // Another provider's reasoning, and hosted-tool history: dropped.
            "reasoning" | "web_search_call" => {}
            other => {
                return Err(bad(format!(
                    "`{path}type`: `{other}` items cannot be translated for this endpoint"
                )))
            }
        }
    }
    Ok(())
}

/// Refuses the fields a Chat or Anthropic endpoint cannot honour.
fn refuse_stateful(body: &Map<String, Value>) -> Result<(), PayloadError> {
    if body.get("store").and_then(Value::as_bool) == Some(true) {
        return Err(bad(
            "`store: true` needs a Responses endpoint (llmux keeps no conversation state)",
        ));
    }
    for k in [
        "previous_response_id",
        "conversation",
        "prompt",
        "max_tool_calls",
    ] {
        if body.get(k).is_some_and(|v| !v.is_null()) {
            return Err(bad(format!("`{k}` cannot be translated for this endpoint")));
        }
    }
    if body.get("background").and_then(Value::as_bool) == Some(true) {
        return Err(bad(
            "`background: true` cannot be translated for this endpoint",
        ));
    }
    if body
        .get("top_logprobs")
        .and_then(Value::as_u64)
        .unwrap_or(0)
        > 0
    {
        return Err(bad("`top_logprobs` cannot be translated for this endpoint"));
    }
    Ok(())
}

fn text_format_to_chat(
    text: &Map<String, Value>,
    out: &mut Map<String, Value>,
) -> Result<(), PayloadError> {
    if let Some(v) = get_str(text, "verbosity", "text.")? {
        out.insert("verbosity".into(), json!(v));
    }
    let Some(f) = text.get("format").filter(|f| !f.is_null()) else {
        return Ok(());
    };
    let f = need_obj(f, "text.format")?;
    match need_str(f, "type", "text.format.")? {
        "text" => {}
        "json_object" => {
            out.insert("response_format".into(), json!({ "type": "json_object" }));
        }
        "json_schema" => {
            let mut schema = f.clone();
            schema.remove("type");
            out.insert(
                "response_format".into(),
                json!({ "type": "json_schema", "json_schema": schema }),
            );
        }
        other => return Err(bad(format!("`text.format.type`: unknown format `{other}`"))),
    }
    Ok(())
}

/// Translates a Responses request into a Chat Completions request.
pub fn responses_request_to_chat(
    body: &Map<String, Value>,
) -> Result<Map<String, Value>, PayloadError> {
    refuse_stateful(body)?;
    let mut out = Map::new();
    let mut msgs = Vec::new();
    if let Some(i) = get_str(body, "instructions", "")? {
        msgs.push(json!({ "role": "system", "content": i }));
    }
    responses_input_to_messages(
        body.get("input")
            .ok_or_else(|| bad("`input` is required"))?,
        &mut msgs,
    )?;
    out.insert("messages".into(), Value::Array(msgs));
    if let Some(m) = body.get("model") {
        out.insert("model".into(), m.clone());
    }
    let tools = match body.get("tools").filter(|t| !t.is_null()) {
        Some(t) => responses_tools_to_chat(t)?,
        None => Vec::new(),
    };
    if !tools.is_empty() {
        out.insert("tools".into(), Value::Array(tools));
        if let Some(c) = body.get("tool_choice").filter(|c| !c.is_null()) {
            out.insert("tool_choice".into(), responses_tool_choice(c)?);
        }
        if let Some(p) = body.get("parallel_tool_calls").filter(|p| p.is_boolean()) {
            out.insert("parallel_tool_calls".into(), p.clone());
        }
    }
    for k in ["temperature", "top_p", "user", "stream"] {
        if let Some(v) = body.get(k).filter(|v| !v.is_null()) {
            out.insert(k.into(), v.clone());
        }
    }
    if let Some(n) = body.get("max_output_tokens").filter(|v| !v.is_null()) {
        out.insert("max_completion_tokens".into(), n.clone());
    }
    if let Some(r) = body.get("reasoning").filter(|v| !v.is_null()) {
        let r = need_obj(r, "reasoning")?;
        if let Some(e) = get_str(r, "effort", "reasoning.")? {
            out.insert("reasoning_effort".into(), json!(e));
        }
    }
    if let Some(t) = body.get("text").filter(|v| !v.is_null()) {
        text_format_to_chat(need_obj(t, "text")?, &mut out)?;
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// requests: Chat Completions -> Responses

fn refuse_chat_fields(body: &Map<String, Value>) -> Result<(), PayloadError> {
    if body
        .get("stop")
        .is_some_and(|s| !s.is_null() && s != &json!([]))
    {
        return Err(bad(
            "`stop` (stop sequences) cannot be translated: the Responses API has none",
        ));
    }
    if body.get("n").and_then(Value::as_u64).unwrap_or(1) > 1 {
        return Err(bad("`n` > 1 cannot be translated for a Responses endpoint"));
    }
    if body.get("logprobs").and_then(Value::as_bool) == Some(true) {
        return Err(bad(
            "`logprobs` cannot be translated for a Responses endpoint",
        ));
    }
    for k in [
        "audio",
        "web_search_options",
        "functions",
        "function_call",
        "prediction",
    ] {
        if body.get(k).is_some_and(|v| !v.is_null()) {
            return Err(bad(format!(
                "`{k}` cannot be translated for a Responses endpoint"
            )));
        }
    }
    if let Some(m) = body.get("modalities").and_then(Value::as_array) {
        if m.iter().any(|x| x != "text") {
            return Err(bad("`modalities` other than text cannot be translated"));
        }
    }
    Ok(())
}

fn chat_parts_to_responses(content: &Value, role: &str, path: &str) -> Result<Value, PayloadError> {
    let text_type = if role == "assistant" {
        "output_text"
    } else {
        "input_text"
    };
    let parts = match content {
        Value::Null => return Ok(json!([])),
        Value::String(s) => return Ok(json!([{ "type": text_type, "text": s }])),
        Value::Array(parts) => parts,
        _ => return Err(bad(format!("`{path}` must be a string or a list of parts"))),
    };
    let mut out = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        let pp = format!("{path}[{i}].");
        let p = need_obj(p, &pp)?;
        match need_str(p, "type", &pp)? {
            "text" => out.push(json!({ "type": text_type, "text": need_str(p, "text", &pp)? })),
            "refusal" => {
                out.push(json!({ "type": text_type, "text": need_str(p, "refusal", &pp)? }))
            }
            "image_url" if role != "assistant" => {
                let img = p
                    .get("image_url")
                    .ok_or_else(|| bad(format!("`{pp}image_url` is required")))?;
                let (url, detail) = match img {
                    Value::String(u) => (u.as_str(), "auto"),
                    Value::Object(o) => (
                        need_str(o, "url", &format!("{pp}image_url."))?,
                        get_str(o, "detail", &format!("{pp}image_url."))?.unwrap_or("auto"),
                    ),
                    _ => return Err(bad(format!("`{pp}image_url` must be an object"))),
                };
                out.push(json!({ "type": "input_image", "image_url": url, "detail": detail }));
            }
            other => {
                return Err(bad(format!(
                    "`{pp}type`: `{other}` content cannot be translated for a Responses endpoint"
                )))
            }
        }
    }
    Ok(Value::Array(out))
}

fn chat_message_to_items(
    m: &Map<String, Value>,
    path: &str,
    items: &mut Vec<Value>,
) -> Result<(), PayloadError> {
    let role = need_str(m, "role", path)?;
    match role {
        "system" | "developer" | "user" | "assistant" => {
            let content = chat_parts_to_responses(
                m.get("content").unwrap_or(&Value::Null),
                role,
                &format!("{path}content"),
            )?;
            if content.as_array().is_some_and(|c| !c.is_empty()) {
                items.push(json!({ "type": "message", "role": role, "content": content }));
            }
            let calls = m.get("tool_calls").filter(|c| !c.is_null());
            for (j, c) in calls
                .map(|c| need_arr(c, &format!("{path}tool_calls")))
                .transpose()?
                .into_iter()
                .flatten()
                .enumerate()
            {
                let cp = format!("{path}tool_calls[{j}].");
                let c = need_obj(c, &cp)?;
                let f = need_obj(
                    c.get("function").unwrap_or(&Value::Null),
                    &format!("{cp}function"),
                )?;
                let args = match f.get("arguments") {
                    Some(Value::String(s)) => s.clone(),
                    None | Some(Value::Null) => "{}".into(),
                    Some(v) => v.to_string(),
                };
                items.push(json!({
                    "type": "function_call",
                    "call_id": need_str(c, "id", &cp)?,
                    "name": need_str(f, "name", &format!("{cp}function."))?,
                    "arguments": args,
                }));
            }
        }
        "tool" => {
            let output = match m.get("content") {
                Some(Value::String(s)) => s.clone(),
                Some(v @ Value::Array(_)) => function_output_text(v, &format!("{path}content"))?,
                _ => String::new(),
            };
            items.push(json!({
                "type": "function_call_output",
                "call_id": need_str(m, "tool_call_id", path)?,
                "output": output,
            }));
        }
        other => {
            return Err(bad(format!(
                "`{path}role`: `{other}` cannot be translated for a Responses endpoint"
            )))
        }
    }
    Ok(())
}

fn chat_tools_to_responses(tools: &Value) -> Result<Vec<Value>, PayloadError> {
    let mut out = Vec::new();
    for (i, t) in need_arr(tools, "tools")?.iter().enumerate() {
        let path = format!("tools[{i}].");
        let t = need_obj(t, &path)?;
        if need_str(t, "type", &path)? != "function" {
            return Err(bad(format!(
                "`{path}type`: only function tools can be translated"
            )));
        }
        let f = need_obj(
            t.get("function").unwrap_or(&Value::Null),
            &format!("{path}function"),
        )?;
        let mut tool = Map::new();
        tool.insert("type".into(), json!("function"));
        tool.insert(
            "name".into(),
            json!(need_str(f, "name", &format!("{path}function."))?),
        );
        if let Some(d) = f.get("description").filter(|d| !d.is_null()) {
            tool.insert("description".into(), d.clone());
        }
        tool.insert(
            "parameters".into(),
            f.get("parameters")
                .filter(|p| !p.is_null())
                .cloned()
                .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
        );
        tool.insert(
            "strict".into(),
            json!(f.get("strict").and_then(Value::as_bool).unwrap_or(false)),
        );
        out.push(Value::Object(tool));
    }
    Ok(out)
}

fn chat_format_to_text(body: &Map<String, Value>) -> Result<Option<Value>, PayloadError> {
    let mut text = Map::new();
    if let Some(v) = body.get("verbosity").filter(|v| !v.is_null()) {
        text.insert("verbosity".into(), v.clone());
    }
    if let Some(f) = body.get("response_format").filter(|v| !v.is_null()) {
        let f = need_obj(f, "response_format")?;
        let format = match need_str(f, "type", "response_format.")? {
            "text" => json!({ "type": "text" }),
            "json_object" => json!({ "type": "json_object" }),
            "json_schema" => {
                let mut s = need_obj(
                    f.get("json_schema").unwrap_or(&Value::Null),
                    "response_format.json_schema",
                )?
                .clone();
                s.insert("type".into(), json!("json_schema"));
                Value::Object(s)
            }
            other => {
                return Err(bad(format!(
                    "`response_format.type`: unknown format `{other}`"
                )))
            }
        };
        text.insert("format".into(), format);
    }
    Ok((!text.is_empty()).then_some(Value::Object(text)))
}

/// Translates a Chat Completions request into a Responses request.
pub fn chat_request_to_responses(
    body: &Map<String, Value>,
) -> Result<Map<String, Value>, PayloadError> {
    refuse_chat_fields(body)?;
    let mut items = Vec::new();
    let msgs = need_arr(body.get("messages").unwrap_or(&Value::Null), "messages")?;
    for (i, m) in msgs.iter().enumerate() {
        let path = format!("messages[{i}].");
        chat_message_to_items(need_obj(m, &path)?, &path, &mut items)?;
    }
    let mut out = Map::new();
    if let Some(m) = body.get("model") {
        out.insert("model".into(), m.clone());
    }
    out.insert("input".into(), Value::Array(items));
    if let Some(t) = body.get("tools").filter(|t| !t.is_null()) {
        let tools = chat_tools_to_responses(t)?;
        if !tools.is_empty() {
            out.insert("tools".into(), Value::Array(tools));
            if let Some(c) = body.get("tool_choice").filter(|c| !c.is_null()) {
                let c = match c {
                    Value::Object(o)
                        if o.get("type").and_then(Value::as_str) == Some("function") =>
                    {
                        let f = need_obj(
                            o.get("function").unwrap_or(&Value::Null),
                            "tool_choice.function",
                        )?;
                        json!({ "type": "function", "name": need_str(f, "name", "tool_choice.function.")? })
                    }
                    Value::String(_) => c.clone(),
                    _ => return Err(bad("`tool_choice`: this form cannot be translated")),
                };
                out.insert("tool_choice".into(), c);
            }
        }
    }
    let max = body
        .get("max_completion_tokens")
        .filter(|v| !v.is_null())
        .or_else(|| body.get("max_tokens").filter(|v| !v.is_null()));
    if let Some(n) = max {
        out.insert("max_output_tokens".into(), n.clone());
    }
    if let Some(e) = body.get("reasoning_effort").filter(|v| !v.is_null()) {
        out.insert("reasoning".into(), json!({ "effort": e }));
    }
    if let Some(t) = chat_format_to_text(body)? {
        out.insert("text".into(), t);
    }
    for k in [
        "parallel_tool_calls",
        "temperature",
        "top_p",
        "user",
        "metadata",
        "service_tier",
        "prompt_cache_key",
        "safety_identifier",
        "stream",
    ] {
        if let Some(v) = body.get(k).filter(|v| !v.is_null()) {
            out.insert(k.into(), v.clone());
        }
    }
    out.insert("store".into(), json!(false));
    Ok(out)
}

// ---------------------------------------------------------------------------
// Anthropic thinking across a Responses caller

/// Marks a reasoning item's `encrypted_content` as an Anthropic thinking
/// signature llmux put there, so the thinking block can be rebuilt when the
/// caller sends the item back (Anthropic needs the thinking blocks of a tool
/// loop returned with their signatures).
pub const THINKING_PREFIX: &str = "llmux-anthropic-thinking:";

/// The thinking block a reasoning item stands for, if llmux made it from one.
fn thinking_block(item: &Value) -> Option<Value> {
    let sig = item
        .get("encrypted_content")?
        .as_str()?
        .strip_prefix(THINKING_PREFIX)?;
    let parts = item
        .get("content")
        .and_then(Value::as_array)
        .filter(|c| !c.is_empty())
        .or_else(|| item.get("summary").and_then(Value::as_array))?;
    let text: String = parts
        .iter()
        .filter_map(|p| p.get("text")?.as_str())
        .collect();
    Some(json!({ "type": "thinking", "thinking": text, "signature": sig }))
}

/// Puts the thinking blocks of the caller's reasoning items back at the
/// start of the Anthropic assistant turn they preceded (only when thinking
/// is enabled). The k-th run of assistant items in `input` is the k-th
/// assistant turn (Chat merges a run into one message, Anthropic merges
/// consecutive turns and hoists system messages).
fn restore_thinking(body: &Map<String, Value>, out: &mut Map<String, Value>) {
    let enabled = out
        .get("thinking")
        .and_then(|t| t.get("type"))
        .and_then(Value::as_str)
        == Some("enabled");
    let Some(items) = body
        .get("input")
        .and_then(Value::as_array)
        .filter(|_| enabled)
    else {
        return;
    };
    let mut runs: Vec<Vec<Value>> = Vec::new();
    let (mut pending, mut in_run) = (Vec::new(), false);
    for it in items {
        let ty = it.get("type").and_then(Value::as_str).unwrap_or("message");
        let role = it.get("role").and_then(Value::as_str).unwrap_or("");
        match (ty, role) {
            ("reasoning", _) => pending.extend(thinking_block(it)),
            ("function_call", _) | ("message", "assistant") => {
                if !in_run {
                    runs.push(Vec::new());
                    in_run = true;
                }
                if let Some(run) = runs.last_mut() {
                    run.append(&mut pending);
                }
            }
            ("message", "system" | "developer") => {}
            _ => {
                in_run = false;
                pending.clear();
            }
        }
    }
    let turns = out
        .get_mut("messages")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
        .filter(|m| m["role"] == "assistant");
    for (turn, blocks) in turns.zip(runs) {
        if blocks.is_empty() {
            continue;
        }
        let mut content = match turn["content"].take() {
            Value::Array(c) => c,
            Value::String(s) if !s.is_empty() => vec![json!({ "type": "text", "text": s })],
            _ => Vec::new(),
        };
        content.splice(0..0, blocks);
        turn["content"] = Value::Array(content);
    }
}

/// Builds the upstream body for a pair that involves Responses.
pub fn request(
    caller: Protocol,
    upstream: Protocol,
    body: &Map<String, Value>,
) -> Result<Map<String, Value>, PayloadError> {
    let to_anthropic = |chat: Map<String, Value>| -> Result<Map<String, Value>, PayloadError> {
        Ok(as_obj(translate::openai_request_to_anthropic(&chat)?))
    };
    match (caller, upstream) {
        (Protocol::Responses, Protocol::Responses) => {
            let mut out = body.clone();
            // An absent `store` means not stored (OpenAI's default is true).
            out.entry("store").or_insert(json!(false));
            if let Some(Value::String(id)) = out.get_mut("previous_response_id") {
                if let Some((raw, _)) = responses::untag_id(id) {
                    *id = raw.to_owned();
                }
            }
            Ok(out)
        }
        (Protocol::Responses, Protocol::OpenAi) => responses_request_to_chat(body),
        (Protocol::Responses, Protocol::Anthropic) => {
            let mut out = to_anthropic(responses_request_to_chat(body)?)?;
            restore_thinking(body, &mut out);
            Ok(out)
        }
        (Protocol::OpenAi, _) => chat_request_to_responses(body),
        (Protocol::Anthropic, _) => {
            chat_request_to_responses(&as_obj(translate::anthropic_request_to_openai(body)?))
        }
        (Protocol::Gemini, _) | (_, Protocol::Gemini) => {
            super::gemini::convert::request(caller, upstream, body)
        }
    }
}

// ---------------------------------------------------------------------------
// non-streaming responses

/// The Response object's fields echoed from the request, with defaults.
fn response_shell(
    request: &Map<String, Value>,
    id: &str,
    model: &Value,
    created: u64,
) -> Map<String, Value> {
    let echo = |k: &str, default: Value| {
        request
            .get(k)
            .filter(|v| !v.is_null())
            .cloned()
            .unwrap_or(default)
    };
    let mut r = Map::new();
    r.insert("id".into(), json!(id));
    r.insert("object".into(), json!("response"));
    r.insert("created_at".into(), json!(created));
    r.insert("status".into(), json!("in_progress"));
    r.insert("error".into(), Value::Null);
    r.insert("incomplete_details".into(), Value::Null);
    r.insert("instructions".into(), echo("instructions", Value::Null));
    r.insert(
        "max_output_tokens".into(),
        echo("max_output_tokens", Value::Null),
    );
    r.insert("model".into(), model.clone());
    r.insert("output".into(), json!([]));
    r.insert(
        "parallel_tool_calls".into(),
        echo("parallel_tool_calls", json!(true)),
    );
    r.insert("previous_response_id".into(), Value::Null);
    r.insert("reasoning".into(), echo("reasoning", Value::Null));
    r.insert("temperature".into(), echo("temperature", Value::Null));
    r.insert(
        "text".into(),
        echo("text", json!({ "format": { "type": "text" } })),
    );
    r.insert("tool_choice".into(), echo("tool_choice", json!("auto")));
    r.insert("tools".into(), echo("tools", json!([])));
    r.insert("top_p".into(), echo("top_p", Value::Null));
    r.insert("usage".into(), Value::Null);
    r.insert("metadata".into(), echo("metadata", json!({})));
    r
}

/// Status and `incomplete_details` for a Chat finish reason.
fn status_for(finish: Option<&str>) -> (&'static str, Value) {
    match finish {
        Some("length") => ("incomplete", json!({ "reason": "max_output_tokens" })),
        Some("content_filter") => ("incomplete", json!({ "reason": "content_filter" })),
        _ => ("completed", Value::Null),
    }
}

fn reasoning_tokens_of(usage: Option<&Value>) -> u64 {
    usage
        .and_then(|u| u.get("completion_tokens_details"))
        .and_then(|d| d.get("reasoning_tokens"))
        .and_then(Value::as_u64)
        .unwrap_or(0)
}

fn reasoning_item(id: String, text: &str, status: &str) -> Value {
    json!({
        "type": "reasoning", "id": id, "summary": [], "status": status,
        "content": [{ "type": "reasoning_text", "text": text }],
    })
}

fn output_text_part(text: &str) -> Value {
    json!({ "type": "output_text", "text": text, "annotations": [], "logprobs": [] })
}

fn message_item(id: String, text: &str, status: &str) -> Value {
    json!({
        "type": "message", "id": id, "role": "assistant", "status": status,
        "content": [output_text_part(text)],
    })
}

fn call_item(
    id: String,
    call_id: &str,
    name: &str,
    args: &str,
    ns: &Namespaces,
    status: &str,
) -> Value {
    let mut item = json!({
        "type": "function_call", "id": id, "call_id": call_id,
        "name": name, "arguments": args, "status": status,
    });
    if let Some((space, member)) = ns.restore(name) {
        item["namespace"] = json!(space);
        item["name"] = json!(member);
    }
    item
}

/// A `chat.completion` (choice 0) as a Responses response.
pub fn chat_response_to_responses(
    v: &Value,
    request: &Map<String, Value>,
    now: u64,
) -> Result<Value, PayloadError> {
    let m = v
        .as_object()
        .ok_or_else(|| bad("response is not a JSON object"))?;
    let choice = m
        .get("choices")
        .and_then(Value::as_array)
        .and_then(|c| c.first())
        .ok_or_else(|| bad("response has no choices"))?;
    let msg = choice
        .get("message")
        .and_then(Value::as_object)
        .ok_or_else(|| bad("choice has no message"))?;
    let base = m.get("id").and_then(Value::as_str).unwrap_or("llmux");
    let created = m.get("created").and_then(Value::as_u64).unwrap_or(now);
    let model = m.get("model").cloned().unwrap_or(json!(""));
    let ns = Namespaces::of(request);
    let mut output = Vec::new();
    if let Some(r) = msg
        .get("reasoning_content")
        .and_then(Value::as_str)
        .filter(|r| !r.is_empty())
    {
        output.push(reasoning_item(format!("rs_{base}_0"), r, "completed"));
    }
    let text: String = ["content", "refusal"]
        .iter()
        .filter_map(|k| msg.get(*k).and_then(Value::as_str))
        .collect();
    if !text.is_empty() {
        output.push(message_item(
            format!("msg_{base}_{}", output.len()),
            &text,
            "completed",
        ));
    }
    for c in msg
        .get("tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let f = c.get("function").unwrap_or(&Value::Null);
        let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
        output.push(call_item(
            format!("fc_{base}_{}", output.len()),
            &s(c, "id"),
            &s(f, "name"),
            &s(f, "arguments"),
            &ns,
            "completed",
        ));
    }
    let (status, details) = status_for(choice.get("finish_reason").and_then(Value::as_str));
    let mut r = response_shell(request, &format!("resp_{base}"), &model, created);
    r.insert("status".into(), json!(status));
    r.insert("incomplete_details".into(), details);
    r.insert("output".into(), Value::Array(output));
    if let Some(u) = m.get("usage").and_then(openai::parse_usage) {
        r.insert(
            "usage".into(),
            usage_json(u, reasoning_tokens_of(m.get("usage"))),
        );
    }
    Ok(Value::Object(r))
}

/// Carries the signature of an Anthropic response's only thinking block
/// into the reasoning item (see [`THINKING_PREFIX`]).
fn sign_reasoning(anthropic: &Value, out: &mut Value) {
    let sigs: Vec<&str> = anthropic["content"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|b| b["type"] == "thinking")
        .filter_map(|b| b["signature"].as_str())
        .collect();
    let [sig] = sigs[..] else { return };
    if let Some(item) = out["output"]
        .as_array_mut()
        .and_then(|o| o.iter_mut().find(|i| i["type"] == "reasoning"))
    {
        item["encrypted_content"] = json!(format!("{THINKING_PREFIX}{sig}"));
    }
}

/// A Responses response as a `chat.completion`.
pub fn responses_response_to_chat(v: &Value, now: u64) -> Result<Value, PayloadError> {
    let m = v
        .as_object()
        .ok_or_else(|| bad("response is not a JSON object"))?;
    let output = m
        .get("output")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("response has no `output`"))?;
    let parts = OutputParts::collect(output);
    let finish = finish_for(
        m.get("status").and_then(Value::as_str),
        m.get("incomplete_details"),
        !parts.calls.is_empty(),
    );
    let message = parts.into_message();
    let mut out = json!({
        "id": m.get("id").cloned().unwrap_or(json!("")),
        "object": "chat.completion",
        "created": m.get("created_at").and_then(Value::as_f64).map_or(now, |t| t as u64),
        "model": m.get("model").cloned().unwrap_or(json!("")),
        "choices": [{ "index": 0, "message": message, "logprobs": null, "finish_reason": finish }],
    });
    if let Some(u) = m.get("usage") {
        out["usage"] = chat_usage_json(u);
    }
    Ok(out)
}

/// What a Responses `output` list holds, gathered for one Chat message.
#[derive(Default)]
struct OutputParts {
    text: String,
    refusal: String,
    reasoning: String,
    calls: Vec<Value>,
}

impl OutputParts {
    fn collect(output: &[Value]) -> OutputParts {
        let mut p = OutputParts::default();
        for item in output {
            match item.get("type").and_then(Value::as_str) {
                Some("message") => p.message(item),
                Some("reasoning") => {
                    let parts = item
                        .get("content")
                        .and_then(Value::as_array)
                        .filter(|c| !c.is_empty())
                        .or_else(|| item.get("summary").and_then(Value::as_array));
                    for r in parts.into_iter().flatten() {
                        p.reasoning.push_str(r["text"].as_str().unwrap_or(""));
                    }
                }
                Some("function_call") => p.calls.push(json!({
                    "id": item["call_id"], "type": "function",
                    "function": { "name": item["name"], "arguments": item["arguments"] },
                })),
                _ => {} // hosted-tool items have no Chat counterpart
            }
        }
        p
    }

    fn message(&mut self, item: &Value) {
        let content = item.get("content").and_then(Value::as_array);
        for part in content.into_iter().flatten() {
            match part.get("type").and_then(Value::as_str) {
                Some("output_text") => self.text.push_str(part["text"].as_str().unwrap_or("")),
                Some("refusal") => self
                    .refusal
                    .push_str(part["refusal"].as_str().unwrap_or("")),
                _ => {}
            }
        }
    }

    /// The Chat `message`: content is null when only tool calls came back.
    fn into_message(self) -> Map<String, Value> {
        let mut message = Map::new();
        message.insert("role".into(), json!("assistant"));
        let content = if self.text.is_empty() && !self.calls.is_empty() {
            Value::Null
        } else {
            json!(self.text)
        };
        message.insert("content".into(), content);
        let refusal = (!self.refusal.is_empty()).then(|| json!(self.refusal));
        message.insert("refusal".into(), refusal.unwrap_or(Value::Null));
        if !self.calls.is_empty() {
            message.insert("tool_calls".into(), Value::Array(self.calls));
        }
        if !self.reasoning.is_empty() {
            message.insert("reasoning_content".into(), json!(self.reasoning));
        }
        message
    }
}

/// The Chat finish reason for a Responses status.
fn finish_for(status: Option<&str>, details: Option<&Value>, calls: bool) -> &'static str {
    let reason = details
        .and_then(|d| d.get("reason"))
        .and_then(Value::as_str);
    match (status, reason) {
        (Some("incomplete"), Some("content_filter")) => "content_filter",
        (Some("incomplete"), _) => "length",
        _ if calls => "tool_calls",
        _ => "stop",
    }
}

/// A Responses usage object as Chat usage (with details).
fn chat_usage_json(u: &Value) -> Value {
    let get = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
    let input = get("input_tokens");
    let output = get("output_tokens");
    json!({
        "prompt_tokens": input,
        "completion_tokens": output,
        "total_tokens": input.saturating_add(output),
        "prompt_tokens_details": { "cached_tokens": u.pointer("/input_tokens_details/cached_tokens").and_then(Value::as_u64).unwrap_or(0) },
        "completion_tokens_details": { "reasoning_tokens": u.pointer("/output_tokens_details/reasoning_tokens").and_then(Value::as_u64).unwrap_or(0) },
    })
}

fn parse_body(body: &[u8]) -> Result<Value, PayloadError> {
    serde_json::from_slice(body).map_err(|e| bad(format!("response body is not JSON: {e}")))
}

/// Converts a non-streaming body for a pair that involves Responses.
pub fn convert_response(
    upstream: Protocol,
    caller: Protocol,
    body: &[u8],
    now: u64,
    request: &Map<String, Value>,
    endpoint: &str,
) -> Result<Converted, PayloadError> {
    if upstream == Protocol::Gemini || caller == Protocol::Gemini {
        return super::gemini::convert::convert_response(
            upstream, caller, body, now, request, endpoint,
        );
    }
    let mut v = parse_body(body)?;
    let (out, usage) = match upstream {
        Protocol::Responses => {
            let usage = responses::check_response(
                &mut v,
                if caller == Protocol::Responses {
                    endpoint
                } else {
                    ""
                },
            )?;
            let out = match caller {
                Protocol::Responses => v,
                Protocol::OpenAi => responses_response_to_chat(&v, now)?,
                Protocol::Anthropic | Protocol::Gemini => {
                    translate::openai_response_to_anthropic(&responses_response_to_chat(&v, now)?)?
                }
            };
            (out, usage)
        }
        Protocol::OpenAi => {
            let text = std::str::from_utf8(body).map_err(|_| bad("response body is not UTF-8"))?;
            let usage = openai::check_response(text)?;
            (chat_response_to_responses(&v, request, now)?, usage)
        }
        Protocol::Anthropic => {
            let usage = anthropic::check_response(&v)?;
            let chat = translate::anthropic_response_to_openai(&v, now)?;
            let mut out = chat_response_to_responses(&chat, request, now)?;
            sign_reasoning(&v, &mut out);
            (out, usage)
        }
        Protocol::Gemini => return Err(bad("Gemini pairs are converted by the Gemini room")),
    };
    Ok(Converted {
        body: out.to_string(),
        usage,
    })
}

// ---------------------------------------------------------------------------
// streams: Chat Completions -> Responses

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Reasoning,
    Message,
    Call,
}

/// One output item being streamed.
struct Item {
    kind: Kind,
    id: String,
    /// Text, reasoning text or arguments so far.
    text: String,
    call_id: String,
    name: String,
    done: bool,
    /// Reasoning: an Anthropic thinking signature (see [`THINKING_PREFIX`]).
    encrypted: Option<String>,
}

/// Chat Completions chunks -> Responses stream events (see the module docs).
pub struct ChatToResponses {
    ctx: StreamContext,
    shell: Map<String, Value>,
    ns: Namespaces,
    seq: u64,
    started: bool,
    items: Vec<Item>,
    /// The open reasoning or message item (an index into `items`).
    open: Option<usize>,
    /// (Chat tool-call index, item index)
    calls: Vec<(u64, usize)>,
    finish: Option<String>,
    usage: Option<Usage>,
    reasoning_tokens: u64,
}

impl ChatToResponses {
    pub fn new(ctx: StreamContext) -> Self {
        let shell = response_shell(
            &Map::new(),
            &format!("resp_{}", ctx.id),
            &json!(ctx.model),
            ctx.created,
        );
        ChatToResponses {
            ctx,
            shell,
            ns: Namespaces::default(),
            seq: 0,
            started: false,
            items: Vec::new(),
            open: None,
            calls: Vec::new(),
            finish: None,
            usage: None,
            reasoning_tokens: 0,
        }
    }

    fn emit(&mut self, out: &mut Vec<String>, mut ev: Value) {
        ev["sequence_number"] = json!(self.seq);
        self.seq += 1;
        out.push(ev.to_string());
    }

    fn item_json(&self, i: usize) -> Value {
        let it = &self.items[i];
        let status = if it.done { "completed" } else { "in_progress" };
        let text = if it.done { it.text.as_str() } else { "" };
        match it.kind {
            Kind::Reasoning => {
                let mut v = reasoning_item(it.id.clone(), text, status);
                if !it.done {
                    v["content"] = json!([]);
                }
                if let Some(e) = it.encrypted.as_ref().filter(|_| it.done) {
                    v["encrypted_content"] = json!(e);
                }
                v
            }
            Kind::Message => {
                let mut v = message_item(it.id.clone(), text, status);
                if !it.done {
                    v["content"] = json!([]);
                }
                v
            }
            Kind::Call => call_item(it.id.clone(), &it.call_id, &it.name, text, &self.ns, status),
        }
    }

    fn start(&mut self, out: &mut Vec<String>) {
        if self.started {
            return;
        }
        self.started = true;
        let r = Value::Object(self.shell.clone());
        self.emit(out, json!({ "type": "response.created", "response": r }));
        self.emit(
            out,
            json!({ "type": "response.in_progress", "response": r }),
        );
    }

    fn add_item(
        &mut self,
        kind: Kind,
        call_id: String,
        name: String,
        out: &mut Vec<String>,
    ) -> usize {
        let i = self.items.len();
        let prefix = match kind {
            Kind::Reasoning => "rs",
            Kind::Message => "msg",
            Kind::Call => "fc",
        };
        self.items.push(Item {
            kind,
            id: format!("{prefix}_{}_{i}", self.ctx.id),
            text: String::new(),
            call_id,
            name,
            done: false,
            encrypted: None,
        });
        let item = self.item_json(i);
        self.emit(
            out,
            json!({ "type": "response.output_item.added", "output_index": i, "item": item }),
        );
        let part = match kind {
            Kind::Reasoning => Some(json!({ "type": "reasoning_text", "text": "" })),
            Kind::Message => Some(output_text_part("")),
            Kind::Call => None,
        };
        if let Some(part) = part {
            let id = self.items[i].id.clone();
            self.emit(
                out,
                json!({
                    "type": "response.content_part.added", "item_id": id,
                    "output_index": i, "content_index": 0, "part": part,
                }),
            );
        }
        i
    }

    fn close_item(&mut self, i: usize, out: &mut Vec<String>) {
        if self.items[i].done {
            return;
        }
        self.items[i].done = true;
        let (id, text) = (self.items[i].id.clone(), self.items[i].text.clone());
        let base = json!({ "item_id": id, "output_index": i });
        let with = |mut v: Value, extra: Value| {
            for (k, x) in as_obj(extra) {
                v[k] = x;
            }
            v
        };
        match self.items[i].kind {
            Kind::Reasoning => {
                self.emit(out, with(base.clone(), json!({ "type": "response.reasoning_text.done", "content_index": 0, "text": text })));
                self.emit(
                    out,
                    with(
                        base,
                        json!({ "type": "response.content_part.done", "content_index": 0,
                    "part": { "type": "reasoning_text", "text": text } }),
                    ),
                );
            }
            Kind::Message => {
                self.emit(out, with(base.clone(), json!({ "type": "response.output_text.done", "content_index": 0, "text": text, "logprobs": [] })));
                self.emit(out, with(base, json!({ "type": "response.content_part.done", "content_index": 0, "part": output_text_part(&text) })));
            }
            Kind::Call => {
                self.emit(out, with(base, json!({ "type": "response.function_call_arguments.done", "arguments": text })));
            }
        }
        let item = self.item_json(i);
        self.emit(
            out,
            json!({ "type": "response.output_item.done", "output_index": i, "item": item }),
        );
    }

    /// Appends text to the open item of `kind`, opening it if needed.
    fn text(&mut self, kind: Kind, t: &str, out: &mut Vec<String>) {
        let i = match self.open.filter(|&i| self.items[i].kind == kind) {
            Some(i) => i,
            None => {
                if let Some(o) = self.open.take() {
                    self.close_item(o, out);
                }
                let i = self.add_item(kind, String::new(), String::new(), out);
                self.open = Some(i);
                i
            }
        };
        self.items[i].text.push_str(t);
        let ty = if kind == Kind::Reasoning {
            "response.reasoning_text.delta"
        } else {
            "response.output_text.delta"
        };
        let mut ev = json!({ "type": ty, "item_id": self.items[i].id, "output_index": i, "content_index": 0, "delta": t });
        if kind == Kind::Message {
            ev["logprobs"] = json!([]);
        }
        self.emit(out, ev);
    }

    fn tool_call(&mut self, c: &Value, out: &mut Vec<String>) -> bool {
        let index = c.get("index").and_then(Value::as_u64).unwrap_or(0);
        let f = c.get("function");
        let args = f
            .and_then(|f| f.get("arguments"))
            .and_then(Value::as_str)
            .unwrap_or("");
        let i = match self.calls.iter().find(|(k, _)| *k == index) {
            Some(&(_, i)) => i,
            None => {
                if let Some(o) = self.open.take() {
                    self.close_item(o, out);
                }
                let call_id = c
                    .get("id")
                    .and_then(Value::as_str)
                    .map_or_else(|| format!("call_{}_{index}", self.ctx.id), str::to_owned);
                let name = f
                    .and_then(|f| f.get("name"))
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned();
                let i = self.add_item(Kind::Call, call_id, name, out);
                self.calls.push((index, i));
                if args.is_empty() {
                    return true;
                }
                i
            }
        };
        if args.is_empty() {
            return false;
        }
        self.items[i].text.push_str(args);
        let id = self.items[i].id.clone();
        self.emit(out, json!({ "type": "response.function_call_arguments.delta", "item_id": id, "output_index": i, "delta": args }));
        true
    }

    /// Puts an Anthropic thinking signature on the latest reasoning item.
    fn sign(&mut self, signature: &str) {
        if let Some(it) = self
            .items
            .iter_mut()
            .rev()
            .find(|i| i.kind == Kind::Reasoning)
        {
            it.encrypted = Some(format!("{THINKING_PREFIX}{signature}"));
        }
    }

    fn finish(&mut self, out: &mut Vec<String>) {
        for i in 0..self.items.len() {
            self.close_item(i, out);
        }
        let (status, details) = status_for(self.finish.as_deref());
        let output: Vec<Value> = (0..self.items.len()).map(|i| self.item_json(i)).collect();
        let mut r = self.shell.clone();
        r.insert("status".into(), json!(status));
        r.insert("incomplete_details".into(), details);
        r.insert("output".into(), Value::Array(output));
        r.insert(
            "usage".into(),
            usage_json(self.usage.unwrap_or_default(), self.reasoning_tokens),
        );
        let ty = if status == "completed" {
            "response.completed"
        } else {
            "response.incomplete"
        };
        self.emit(out, json!({ "type": ty, "response": r }));
    }
}

impl StreamAdapter for ChatToResponses {
    fn on_event(&mut self, ev: &SseEvent) -> Result<StreamStep, PayloadError> {
        let mut step = StreamStep::default();
        if ev.data.trim() == "[DONE]" {
            if self.finish.is_none() {
                return Err(bad("stream ended without finish_reason"));
            }
            self.start(&mut step.out);
            self.finish(&mut step.out);
            step.finished = true;
            return Ok(step);
        }
        let chunk: Value = serde_json::from_str(&ev.data)
            .map_err(|e| bad(format!("stream chunk is not JSON: {e}")))?;
        let c = chunk
            .as_object()
            .ok_or_else(|| bad("stream chunk is not a JSON object"))?;
        if c.get("error").is_some_and(|e| !e.is_null()) {
            return Err(PayloadError::Upstream(
                openai::error_message(&chunk)
                    .unwrap_or_else(|| "unspecified error in stream".into()),
            ));
        }
        self.start(&mut step.out);
        if let Some(u) = c.get("usage").filter(|u| !u.is_null()) {
            self.usage = openai::parse_usage(u);
            self.reasoning_tokens = reasoning_tokens_of(Some(u));
        }
        let choices = match c.get("choices") {
            None | Some(Value::Null) => return Ok(step),
            Some(v) => need_arr(v, "choices")?,
        };
        for choice in choices
            .iter()
            .filter(|ch| ch.get("index").and_then(Value::as_u64).unwrap_or(0) == 0)
        {
            if let Some(d) = choice.get("delta").filter(|d| !d.is_null()) {
                let d = need_obj(d, "choices[0].delta")?;
                if let Some(t) =
                    get_str(d, "reasoning_content", "delta.")?.filter(|t| !t.is_empty())
                {
                    self.text(Kind::Reasoning, t, &mut step.out);
                    step.content = true;
                }
                for k in ["content", "refusal"] {
                    if let Some(t) = get_str(d, k, "delta.")?.filter(|t| !t.is_empty()) {
                        self.text(Kind::Message, t, &mut step.out);
                        step.content = true;
                    }
                }
                if let Some(calls) = d.get("tool_calls").filter(|c| !c.is_null()) {
                    for call in need_arr(calls, "delta.tool_calls")? {
                        step.content |= self.tool_call(call, &mut step.out);
                    }
                }
            }
            if let Some(f) = choice.get("finish_reason").and_then(Value::as_str) {
                if f == "error" {
                    return Err(PayloadError::Upstream(
                        "finished with reason `error`".into(),
                    ));
                }
                self.finish = Some(f.to_owned());
            }
        }
        Ok(step)
    }

    fn usage(&self) -> Option<Usage> {
        self.usage
    }

    fn configure(&mut self, request: &Map<String, Value>, _endpoint: &str) {
        self.ns = Namespaces::of(request);
        let id = self.shell["id"].clone();
        self.shell = response_shell(
            request,
            id.as_str().unwrap_or(""),
            &json!(self.ctx.model),
            self.ctx.created,
        );
    }

    fn fail(&mut self, message: &str) -> Vec<String> {
        let mut r = self.shell.clone();
        let output: Vec<Value> = (0..self.items.len()).map(|i| self.item_json(i)).collect();
        r.insert("output".into(), Value::Array(output));
        let seq = self.seq;
        self.seq += 1;
        vec![responses::failed_event(&r, seq, message)]
    }
}

// ---------------------------------------------------------------------------
// streams: Responses -> Chat Completions

/// Responses stream events -> Chat Completions chunks (see the module docs).
pub struct ResponsesToChat {
    ctx: StreamContext,
    started: bool,
    /// (output_index, item id, Chat tool-call index)
    calls: Vec<(u64, String, u64)>,
    /// Chat tool-call indices whose arguments were sent.
    args_sent: Vec<u64>,
    usage: Option<Usage>,
}

impl ResponsesToChat {
    pub fn new(ctx: StreamContext) -> Self {
        ResponsesToChat {
            ctx,
            started: false,
            calls: Vec::new(),
            args_sent: Vec::new(),
            usage: None,
        }
    }

    fn chunk(&self, delta: Value, finish: Option<&str>) -> String {
        json!({
            "id": self.ctx.id, "object": "chat.completion.chunk", "created": self.ctx.created,
            "model": self.ctx.model,
            "choices": [{ "index": 0, "delta": delta, "logprobs": null, "finish_reason": finish }],
        })
        .to_string()
    }

    fn start(&mut self, out: &mut Vec<String>) {
        if !self.started {
            self.started = true;
            out.push(self.chunk(json!({ "role": "assistant", "content": "" }), None));
        }
    }

    fn call_index(&self, data: &Map<String, Value>) -> Option<u64> {
        let oi = data.get("output_index").and_then(Value::as_u64);
        let id = data.get("item_id").and_then(Value::as_str);
        self.calls
            .iter()
            .find(|(o, i, _)| Some(*o) == oi || Some(i.as_str()) == id)
            .map(|c| c.2)
    }

    fn finish(&mut self, r: &Value, out: &mut Vec<String>) {
        let finish = finish_for(
            r.get("status").and_then(Value::as_str),
            r.get("incomplete_details"),
            !self.calls.is_empty(),
        );
        out.push(self.chunk(json!({}), Some(finish)));
        if let Some(u) = r.get("usage").filter(|u| !u.is_null()) {
            self.usage = responses::parse_usage(u);
            if self.ctx.include_usage {
                out.push(json!({
                    "id": self.ctx.id, "object": "chat.completion.chunk", "created": self.ctx.created,
                    "model": self.ctx.model, "choices": [], "usage": chat_usage_json(u),
                }).to_string());
            }
        }
    }
}

impl StreamAdapter for ResponsesToChat {
    fn on_event(&mut self, ev: &SseEvent) -> Result<StreamStep, PayloadError> {
        let (name, data) = parse_event(ev)?;
        let mut step = StreamStep::default();
        let delta = data.get("delta").and_then(Value::as_str).unwrap_or("");
        let piece = match name.as_str() {
            "error" | "response.failed" => return Err(stream_error(&name, &data)),
            "response.created" => {
                self.start(&mut step.out);
                None
            }
            "response.output_text.delta" => Some(json!({ "content": delta })),
            "response.refusal.delta" => Some(json!({ "refusal": delta })),
            "response.reasoning_text.delta" | "response.reasoning_summary_text.delta" => {
                Some(json!({ "reasoning_content": delta }))
            }
            "response.output_item.added" => {
                let item = data.get("item").unwrap_or(&Value::Null);
                if item.get("type").and_then(Value::as_str) != Some("function_call") {
                    None
                } else {
                    let k = self.calls.len() as u64;
                    let oi = data
                        .get("output_index")
                        .and_then(Value::as_u64)
                        .unwrap_or(k);
                    let id = item
                        .get("id")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_owned();
                    self.calls.push((oi, id, k));
                    if item
                        .get("arguments")
                        .and_then(Value::as_str)
                        .is_some_and(|a| !a.is_empty())
                    {
                        self.args_sent.push(k);
                    }
                    Some(json!({ "tool_calls": [{
                        "index": k, "id": item["call_id"], "type": "function",
                        "function": { "name": item["name"], "arguments": item.get("arguments").and_then(Value::as_str).unwrap_or("") },
                    }]}))
                }
            }
            "response.function_call_arguments.delta" => self.call_index(&data).map(|k| {
                self.args_sent.push(k);
                json!({ "tool_calls": [{ "index": k, "function": { "arguments": delta } }] })
            }),
            // A server that sends the arguments only whole, in `.done`.
            "response.function_call_arguments.done" => {
                let args = data.get("arguments").and_then(Value::as_str).unwrap_or("");
                self.call_index(&data)
                    .filter(|k| !self.args_sent.contains(k) && !args.is_empty())
                    .map(|k| {
                        self.args_sent.push(k);
                        json!({ "tool_calls": [{ "index": k, "function": { "arguments": args } }] })
                    })
            }
            "response.completed" | "response.incomplete" => {
                self.start(&mut step.out);
                self.finish(data.get("response").unwrap_or(&Value::Null), &mut step.out);
                step.finished = true;
                None
            }
            _ => None,
        };
        if let Some(p) = piece {
            let is_call = p.get("tool_calls").is_some();
            if is_call || !delta.is_empty() {
                self.start(&mut step.out);
                step.out.push(self.chunk(p, None));
                step.content = is_call || event_carries(&name, &data);
            }
        }
        Ok(step)
    }

    fn usage(&self) -> Option<Usage> {
        self.usage
    }
}

// ---------------------------------------------------------------------------
// chaining two adapters through Chat Completions

/// Feeds the first adapter's payloads to the second as Chat Completions
/// (or Anthropic) events; when the first finishes, the second hears
/// `[DONE]`. Content and usage are the first adapter's view.
pub struct Chain {
    first: Box<dyn StreamAdapter>,
    second: Box<dyn StreamAdapter>,
}

/// One event through `first`, its payloads (and `[DONE]` when it finished)
/// through `second`.
fn chain_step(
    first: &mut dyn StreamAdapter,
    second: &mut dyn StreamAdapter,
    ev: &SseEvent,
) -> Result<StreamStep, PayloadError> {
    let a = first.on_event(ev)?;
    let mut step = StreamStep {
        content: a.content,
        ..Default::default()
    };
    let mut feed: Vec<SseEvent> = a
        .out
        .into_iter()
        .map(|data| SseEvent {
            event: String::new(),
            data,
        })
        .collect();
    if a.finished {
        feed.push(SseEvent {
            event: String::new(),
            data: "[DONE]".into(),
        });
    }
    for e in &feed {
        let b = second.on_event(e)?;
        step.out.extend(b.out);
        step.finished |= b.finished;
    }
    Ok(step)
}

impl StreamAdapter for Chain {
    fn on_event(&mut self, ev: &SseEvent) -> Result<StreamStep, PayloadError> {
        chain_step(&mut *self.first, &mut *self.second, ev)
    }

    fn usage(&self) -> Option<Usage> {
        self.first.usage().or_else(|| self.second.usage())
    }

    fn configure(&mut self, request: &Map<String, Value>, endpoint: &str) {
        self.first.configure(request, endpoint);
        self.second.configure(request, endpoint);
    }

    fn fail(&mut self, message: &str) -> Vec<String> {
        self.second.fail(message)
    }
}

/// Anthropic events -> Responses events through Chat Completions, keeping
/// thinking signatures (which Chat has no place for) on the reasoning item.
pub struct AnthropicToResponses {
    first: translate::AnthropicToOpenAi,
    second: ChatToResponses,
}

impl AnthropicToResponses {
    fn new(ctx: StreamContext) -> Self {
        let inner = StreamContext {
            include_usage: true,
            ..ctx.clone()
        };
        AnthropicToResponses {
            first: translate::AnthropicToOpenAi::new(inner),
            second: ChatToResponses::new(ctx),
        }
    }
}

impl StreamAdapter for AnthropicToResponses {
    fn on_event(&mut self, ev: &SseEvent) -> Result<StreamStep, PayloadError> {
        let step = chain_step(&mut self.first, &mut self.second, ev)?;
        if ev.data.contains("signature") {
            let v: Value = serde_json::from_str(&ev.data).unwrap_or(Value::Null);
            let sig = v
                .pointer("/delta/signature")
                .or_else(|| v.pointer("/content_block/signature"))
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty());
            if let Some(s) = sig {
                self.second.sign(s);
            }
        }
        Ok(step)
    }

    fn usage(&self) -> Option<Usage> {
        self.first.usage()
    }

    fn configure(&mut self, request: &Map<String, Value>, endpoint: &str) {
        self.second.configure(request, endpoint);
    }

    fn fail(&mut self, message: &str) -> Vec<String> {
        self.second.fail(message)
    }
}

/// The stream adapter for a pair that involves Responses.
pub fn stream_adapter(
    upstream: Protocol,
    caller: Protocol,
    ctx: StreamContext,
) -> Box<dyn StreamAdapter> {
    let inner = StreamContext {
        include_usage: true,
        ..ctx.clone()
    };
    match (upstream, caller) {
        (Protocol::Gemini, _) | (_, Protocol::Gemini) => {
            super::gemini::stream::stream_adapter(upstream, caller, ctx)
        }
        (Protocol::Responses, Protocol::Responses) => Box::new(responses::Passthrough::new(ctx)),
        (Protocol::OpenAi, _) => Box::new(ChatToResponses::new(ctx)),
        (Protocol::Anthropic, _) => Box::new(AnthropicToResponses::new(ctx)),
        (Protocol::Responses, Protocol::OpenAi) => Box::new(ResponsesToChat::new(ctx)),
        (Protocol::Responses, Protocol::Anthropic) => Box::new(Chain {
            first: Box::new(ResponsesToChat::new(inner)),
            second: Box::new(translate::OpenAiToAnthropic::new(ctx)),
        }),
    }
}

#[cfg(test)]
mod tests;
