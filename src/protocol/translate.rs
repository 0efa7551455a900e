//! Translation between OpenAI Chat Completions and Anthropic Messages:
//! requests, non-streaming responses, streams and error bodies.
//!
//! Every function here is pure: the OpenAI `created` field comes from the
//! caller (`StreamContext::created`, the `created` argument of
//! [`anthropic_response_to_openai`]), never from a clock read here.
//!
//! ## OpenAI caller -> Anthropic upstream (requests)
//!
//! | OpenAI | Anthropic | note |
//! | --- | --- | --- |
//! | `system` / `developer` messages | `system` | hoisted from wherever they appear, in order; several join with a blank line (`"\n\n"`) into one string, or become text blocks if any of them used content parts |
//! | `user` content (string or `text` / `image_url` parts) | `user` turn | `image_url` with a `data:<type>;base64,` URL -> `base64` image source; `http(s)` URL -> `url` image source; `detail` dropped; empty text dropped |
//! | `assistant` content + `tool_calls` | `assistant` turn: `text` then `tool_use` blocks | `arguments` (a JSON string) is parsed into `input` (must be an object; `""` means `{}`) |
//! | `tool` messages | `tool_result` blocks in a `user` turn | tool results come first in that turn |
//! | `tool_calls[].id`, `tool_call_id` | `tool_use.id`, `tool_use_id` | characters outside `[A-Za-z0-9_-]` become `_` (Anthropic's id pattern); also in translated responses and streams |
//! | consecutive turns of the same role | merged into one turn | a `user` turn after `tool` messages merges with them |
//! | `max_completion_tokens`, else `max_tokens` | `max_tokens` | default [`DEFAULT_MAX_TOKENS`] (4096) when neither is given |
//! | `stop` (string or list) | `stop_sequences` (list) | |
//! | `temperature`, `top_p` | same | passed as given (Anthropic's temperature range is 0..=1) |
//! | `tools[].function {name, description, parameters}` | `tools[] {name, description, input_schema}` | no `parameters` -> `{"type":"object","properties":{}}` |
//! | `tool_choice` `auto` / `required` / `none` / `{type:function, function:{name}}` | `{type:auto}` / `{type:any}` / `{type:none}` / `{type:tool, name}` | dropped when there are no tools |
//! | `parallel_tool_calls: false` | `tool_choice.disable_parallel_tool_use: true` | on `{type:auto}` if no choice was given; not added to `{type:none}` |
//! | `user` | `metadata.user_id` | |
//! | `reasoning_effort` `minimal`,`low` / `medium` / `high` | `thinking {type:enabled, budget_tokens: 1024 / 4096 / 16384}` | `none` -> no thinking; if `max_tokens <= budget_tokens`, `max_tokens` becomes `budget_tokens + DEFAULT_MAX_TOKENS` |
//! | `thinking` (Anthropic's own field) | `thinking` | passed through; wins over `reasoning_effort` |
//! | `top_k` (Anthropic's own field) | `top_k` | passed through |
//! | `stream` | `stream` | |
//!
//! With thinking enabled, `temperature`, `top_p` and `top_k` are dropped:
//! Anthropic rejects sampling settings alongside extended thinking.
//!
//! Dropped (no Anthropic counterpart; the answer keeps its meaning):
//! `stream_options` (the engine handles usage), `n: 1`, `seed`,
//! `presence_penalty`, `frequency_penalty`, `logit_bias`, `logprobs: false`,
//! `top_logprobs: 0`, `store`, `metadata` (OpenAI's), `service_tier`,
//! `prediction`, `prompt_cache_key`, `safety_identifier`, `verbosity`,
//! `response_format: {type:"text"}`, `modalities: ["text"]`,
//! `parallel_tool_calls: true`, `tools[].function.strict`, message `name`,
//! assistant `refusal` / `reasoning_content` / `audio`, and any other
//! unknown field (Anthropic rejects fields it does not know).
//!
//! Refused with an error (the caller would silently get something else):
//! `n > 1`; `response_format` `json_object` / `json_schema` (no guaranteed
//! JSON output); `logprobs: true` or `top_logprobs > 0`; `audio` or
//! `modalities` other than text; `web_search_options`; the legacy
//! `functions` / `function_call` and `function` role; tools whose type is not
//! `function`; `tool_choice` forms other than the four above (e.g.
//! `allowed_tools`); content parts other than `text`, `image_url` (and
//! `refusal` in assistant turns); image URLs that are neither `data:` base64
//! nor http(s); unparseable tool-call arguments; unknown roles or
//! `reasoning_effort` values; wrongly typed fields.
//!
//! ## Anthropic caller -> OpenAI upstream (requests)
//!
//! | Anthropic | OpenAI | note |
//! | --- | --- | --- |
//! | `system` (string or text blocks) | first message, role `system` | text blocks join with a blank line |
//! | `user` text / image blocks | `user` message (string if a single text block, else parts) | `base64` image -> `data:` URL; `url` image -> that URL |
//! | `tool_result` blocks | `tool` messages, before the rest of that user turn | content string kept; text blocks joined with `"\n"`; `is_error` dropped (the text is kept) |
//! | `assistant` text / `tool_use` blocks | `assistant` message: text concatenated, `tool_calls` (`input` serialised to a JSON string); `content: null` when only tool calls |
//! | `thinking` / `redacted_thinking` blocks | dropped | OpenAI has no place for them |
//! | `max_tokens` | `max_completion_tokens` | |
//! | `stop_sequences` | `stop` (list) | |
//! | `temperature`, `top_p` | same | |
//! | `tools[] {name, description, input_schema}` | `tools[].function {name, description, parameters}` | `cache_control` dropped |
//! | `tool_choice` `{type:auto/any/none/tool}` | `auto` / `required` / `none` / `{type:function, function:{name}}` | |
//! | `disable_parallel_tool_use: true` | `parallel_tool_calls: false` | |
//! | `metadata.user_id` | `user` | other metadata dropped |
//! | `thinking {type:enabled, budget_tokens}` | `reasoning_effort` | `<= 2048` low, `<= 8192` medium, else high; `disabled` / `adaptive` -> nothing |
//! | `stream` | `stream` | |
//! | `role: "system"` turn inside `messages` (Claude Code's environment block) | a `system` message at that place | text blocks joined with `"\n\n"` |
//! | images inside a `tool_result` | a user message right after the `tool` messages: a short text part, then the images | a `tool` message holds text only |
//!
//! Dropped: `top_k`, `cache_control` everywhere, `service_tier`,
//! `container`, `context_management`, `output_config` (effort),
//! `thinking` `adaptive`, `defer_loading` (every tool is sent in full), the
//! tool search tool (`tool_search_tool_*`), `tool_reference` blocks in
//! `tool_result`, `server_tool_use` / `tool_search_tool_result` blocks in
//! assistant turns, other `metadata` keys, and any other unknown field.
//! Refused: `mcp_servers`, other server tools (a `type` other than
//! `custom`), `document` and other non-text/image blocks, images in
//! assistant turns, `tool_use` in user turns, unknown roles,
//! wrongly typed fields.
//!
//! ## Responses and streams
//!
//! | Anthropic | OpenAI |
//! | --- | --- |
//! | `text` blocks / `text_delta` | `message.content` (concatenated) / `delta.content` |
//! | `tool_use` block / start + `input_json_delta` | `tool_calls[{id, type:"function", function:{name, arguments}}]`, streamed at index k (0, 1, ... per tool call) |
//! | `thinking` block / `thinking_delta` | `message.reasoning_content` / `delta.reasoning_content` (the DeepSeek/vLLM convention); `signature` dropped |
//! | `stop_reason` `end_turn`, `stop_sequence`, `pause_turn` / `max_tokens` / `tool_use` / `refusal` | `finish_reason` `stop` / `length` / `tool_calls` / `content_filter` |
//! | `usage` | `prompt_tokens = input + cache_read + cache_creation`, `prompt_tokens_details.cached_tokens = cache_read`, `completion_tokens = output` |
//! | `message_stop` | a usage chunk (`choices: []`) when `include_usage`; the engine sends `[DONE]` |
//!
//! OpenAI -> Anthropic reverses this (choice 0 only): `stop` -> `end_turn`,
//! `length` -> `max_tokens`, `tool_calls` -> `tool_use`, `content_filter` ->
//! `refusal`; `input_tokens = prompt - cached`, `cache_read_input_tokens =
//! cached`. `reasoning_content` is dropped (an Anthropic thinking block
//! needs a signature llmux cannot make). A `refusal` string becomes a text
//! block. In streams, `message_delta` (stop reason + usage) and
//! `message_stop` are sent when `[DONE]` arrives, since OpenAI's usage chunk
//! follows the finish reason.

use serde_json::{json, Map, Value};

use super::anthropic::{self, parse_event, stream_error, UsageAcc};
use super::{PayloadError, SseEvent, StreamAdapter, StreamContext, StreamStep, Usage};

/// `max_tokens` sent to Anthropic when the OpenAI caller gave neither
/// `max_completion_tokens` nor `max_tokens` (Anthropic requires one).
pub const DEFAULT_MAX_TOKENS: u32 = 4096;

/// Thinking budgets for OpenAI `reasoning_effort` `low` (and `minimal`),
/// `medium`, `high`.
pub const REASONING_BUDGETS: [u64; 3] = [1024, 4096, 16384];

// ---------------------------------------------------------------------------
// small helpers

fn bad(msg: impl Into<String>) -> PayloadError {
    PayloadError::Malformed(msg.into())
}

fn sub(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// A field, with JSON `null` treated as absent.
fn field<'a>(m: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    match m.get(key) {
        None | Some(Value::Null) => None,
        Some(v) => Some(v),
    }
}

fn obj<'a>(v: &'a Value, path: &str) -> Result<&'a Map<String, Value>, PayloadError> {
    v.as_object()
        .ok_or_else(|| bad(format!("`{path}` must be an object")))
}

fn arr<'a>(v: &'a Value, path: &str) -> Result<&'a Vec<Value>, PayloadError> {
    v.as_array()
        .ok_or_else(|| bad(format!("`{path}` must be an array")))
}

fn string<'a>(v: &'a Value, path: &str) -> Result<&'a str, PayloadError> {
    v.as_str()
        .ok_or_else(|| bad(format!("`{path}` must be a string")))
}

fn opt_str<'a>(
    m: &'a Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<Option<&'a str>, PayloadError> {
    field(m, key)
        .map(|v| string(v, &sub(path, key)))
        .transpose()
}

fn req_str<'a>(m: &'a Map<String, Value>, key: &str, path: &str) -> Result<&'a str, PayloadError> {
    opt_str(m, key, path)?.ok_or_else(|| bad(format!("`{}` is required", sub(path, key))))
}

fn opt_u64(m: &Map<String, Value>, key: &str, path: &str) -> Result<Option<u64>, PayloadError> {
    field(m, key)
        .map(|v| {
            v.as_u64().ok_or_else(|| {
                bad(format!(
                    "`{}` must be a non-negative integer",
                    sub(path, key)
                ))
            })
        })
        .transpose()
}

fn opt_bool(m: &Map<String, Value>, key: &str, path: &str) -> Result<Option<bool>, PayloadError> {
    field(m, key)
        .map(|v| {
            v.as_bool()
                .ok_or_else(|| bad(format!("`{}` must be a boolean", sub(path, key))))
        })
        .transpose()
}

fn opt_number<'a>(
    m: &'a Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<Option<&'a Value>, PayloadError> {
    match field(m, key) {
        None => Ok(None),
        Some(v) if v.is_number() => Ok(Some(v)),
        Some(_) => Err(bad(format!("`{}` must be a number", sub(path, key)))),
    }
}

fn text_block(text: &str) -> Value {
    json!({ "type": "text", "text": text })
}

/// A tool-call id as Anthropic accepts it (`^[a-zA-Z0-9_-]+$`): other
/// characters become `_`. Applied the same way to `tool_calls[].id` and
/// `tool_call_id`, so calls and results still pair up; ids that are already
/// valid (OpenAI's `call_...`) are unchanged.
fn anthropic_tool_id(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Splits `data:<media type>[;params];base64,<data>`.
fn parse_data_url(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("data:")?;
    let (meta, data) = rest.split_once(',')?;
    let meta = meta.strip_suffix(";base64")?;
    let media = meta.split(';').next().unwrap_or("");
    if media.is_empty() {
        return None;
    }
    Some((media, data))
}

fn is_http_url(url: &str) -> bool {
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    lower.starts_with("http://") || lower.starts_with("https://")
}

/// The reasoning budget for an OpenAI `reasoning_effort` (`None` for `none`).
fn budget_for_effort(effort: &str) -> Result<Option<u64>, PayloadError> {
    match effort {
        "none" => Ok(None),
        "minimal" | "low" => Ok(Some(REASONING_BUDGETS[0])),
        "medium" => Ok(Some(REASONING_BUDGETS[1])),
        "high" => Ok(Some(REASONING_BUDGETS[2])),
        other => Err(bad(format!(
            "`reasoning_effort` value `{other}` is not supported"
        ))),
    }
}

/// The OpenAI `reasoning_effort` for an Anthropic thinking budget.
fn effort_for_budget(budget: u64) -> &'static str {
    if budget <= 2048 {
        "low"
    } else if budget <= 8192 {
        "medium"
    } else {
        "high"
    }
}

/// Anthropic `stop_reason` -> OpenAI `finish_reason`.
pub fn finish_reason_for(stop_reason: Option<&str>) -> &'static str {
    match stop_reason {
        Some("max_tokens") | Some("model_context_window_exceeded") => "length",
        Some("tool_use") => "tool_calls",
        Some("refusal") => "content_filter",
        _ => "stop",
    }
}

/// OpenAI `finish_reason` -> Anthropic `stop_reason`.
pub fn stop_reason_for(finish_reason: Option<&str>) -> &'static str {
    match finish_reason {
        Some("length") => "max_tokens",
        Some("tool_calls") | Some("function_call") => "tool_use",
        Some("content_filter") => "refusal",
        _ => "end_turn",
    }
}

fn openai_usage_json(u: Usage) -> Value {
    json!({
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.prompt_tokens.saturating_add(u.completion_tokens),
        "prompt_tokens_details": { "cached_tokens": u.cached_tokens },
    })
}

/// Reads an OpenAI usage object (wrong types count as absent).
fn openai_usage(u: &Value) -> Option<Usage> {
    let u = u.as_object()?;
    let n = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
    let cached = u
        .get("prompt_tokens_details")
        .and_then(|d| d.get("cached_tokens"))
        .and_then(Value::as_u64)
        .unwrap_or(0);
    Some(Usage {
        prompt_tokens: n("prompt_tokens"),
        completion_tokens: n("completion_tokens"),
        cached_tokens: cached,
    })
}

fn anthropic_usage_json(u: Usage) -> Value {
    json!({
        "input_tokens": u.prompt_tokens.saturating_sub(u.cached_tokens),
        "cache_read_input_tokens": u.cached_tokens,
        "output_tokens": u.completion_tokens,
    })
}

/// The message of an OpenAI error body (`error.message`, or `error` as a string).
fn openai_error_message(v: &Value) -> Option<String> {
    match v.get("error") {
        Some(Value::Object(e)) => e.get("message").and_then(Value::as_str).map(str::to_owned),
        Some(Value::String(s)) => Some(s.clone()),
        _ => v.get("message").and_then(Value::as_str).map(str::to_owned),
    }
}

/// Parses tool-call arguments (a JSON string) into an object.
fn parse_arguments(args: &Value, path: &str) -> Result<Value, PayloadError> {
    match args {
        Value::Null => Ok(json!({})),
        Value::Object(_) => Ok(args.clone()),
        Value::String(s) if s.trim().is_empty() => Ok(json!({})),
        Value::String(s) => match serde_json::from_str::<Value>(s) {
            Ok(v @ Value::Object(_)) => Ok(v),
            Ok(_) => Err(bad(format!("`{path}` must encode a JSON object"))),
            Err(e) => Err(bad(format!("`{path}` is not valid JSON: {e}"))),
        },
        _ => Err(bad(format!("`{path}` must be a string"))),
    }
}

// ---------------------------------------------------------------------------
// requests: OpenAI -> Anthropic

/// A turn being assembled on the Anthropic side.
struct Turn {
    role: &'static str,
    results: Vec<Value>,
    blocks: Vec<Value>,
}

fn push_turn(turns: &mut Vec<Turn>, role: &'static str, results: Vec<Value>, blocks: Vec<Value>) {
    if results.is_empty() && blocks.is_empty() {
        return;
    }
    if let Some(last) = turns.last_mut() {
        if last.role == role {
            last.results.extend(results);
            last.blocks.extend(blocks);
            return;
        }
    }
    turns.push(Turn {
        role,
        results,
        blocks,
    });
}

/// A content list that is exactly one plain text block becomes a string.
fn compact_content(blocks: Vec<Value>) -> Value {
    if blocks.len() == 1 {
        if let Some(b) = blocks[0].as_object() {
            if b.len() == 2 && b.get("type").and_then(Value::as_str) == Some("text") {
                if let Some(Value::String(t)) = b.get("text") {
                    return Value::String(t.clone());
                }
            }
        }
    }
    Value::Array(blocks)
}

/// One OpenAI content part -> an Anthropic block (`None` for empty text).
fn openai_part_to_block(
    part: &Value,
    path: &str,
    allow_images: bool,
    allow_refusal: bool,
) -> Result<Option<Value>, PayloadError> {
    let p = obj(part, path)?;
    let ty = req_str(p, "type", path)?;
    let mut block = match ty {
        "text" => {
            let text = req_str(p, "text", path)?;
            if text.is_empty() {
                return Ok(None);
            }
            text_block(text)
        }
        "refusal" if allow_refusal => {
            let text = req_str(p, "refusal", path)?;
            if text.is_empty() {
                return Ok(None);
            }
            text_block(text)
        }
        "image_url" if allow_images => {
            let ipath = sub(path, "image_url");
            let url = match field(p, "image_url") {
                Some(Value::String(u)) => u.as_str(),
                Some(v) => req_str(obj(v, &ipath)?, "url", &ipath)?,
                None => return Err(bad(format!("`{ipath}` is required"))),
            };
            let source = if let Some((media, data)) = parse_data_url(url) {
                json!({ "type": "base64", "media_type": media, "data": data })
            } else if is_http_url(url) {
                json!({ "type": "url", "url": url })
            } else {
                return Err(bad(format!(
                    "`{ipath}.url` must be a base64 data URL or an http(s) URL"
                )));
            };
            json!({ "type": "image", "source": source })
        }
        other => {
            return Err(bad(format!(
                "`{path}`: content part type `{other}` cannot be translated to Anthropic"
            )))
        }
    };
    if let (Some(cc), Some(b)) = (field(p, "cache_control"), block.as_object_mut()) {
        b.insert("cache_control".into(), cc.clone());
    }
    Ok(Some(block))
}

/// OpenAI message content (string, parts or null) -> Anthropic blocks.
fn openai_content_to_blocks(
    content: Option<&Value>,
    path: &str,
    allow_images: bool,
    allow_refusal: bool,
) -> Result<Vec<Value>, PayloadError> {
    match content {
        None => Ok(Vec::new()),
        Some(Value::String(s)) if s.is_empty() => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![text_block(s)]),
        Some(Value::Array(parts)) => {
            let mut out = Vec::new();
            for (j, part) in parts.iter().enumerate() {
                let ppath = format!("{path}[{j}]");
                if let Some(b) = openai_part_to_block(part, &ppath, allow_images, allow_refusal)? {
                    out.push(b);
                }
            }
            Ok(out)
        }
        Some(_) => Err(bad(format!("`{path}` must be a string, an array or null"))),
    }
}

enum SystemPiece {
    Text(String),
    Blocks(Vec<Value>),
}

/// Converts OpenAI `messages` into the Anthropic `system` and `messages`.
fn openai_messages_to_anthropic(
    messages: &[Value],
) -> Result<(Option<Value>, Vec<Value>), PayloadError> {
    let mut system: Vec<SystemPiece> = Vec::new();
    let mut turns: Vec<Turn> = Vec::new();
    for (i, msg) in messages.iter().enumerate() {
        let path = format!("messages[{i}]");
        let m = obj(msg, &path)?;
        let role = req_str(m, "role", &path)?;
        let cpath = sub(&path, "content");
        match role {
            "system" | "developer" => match field(m, "content") {
                None => {}
                Some(Value::String(s)) if s.is_empty() => {}
                Some(Value::String(s)) => system.push(SystemPiece::Text(s.clone())),
                Some(c @ Value::Array(_)) => {
                    let blocks = openai_content_to_blocks(Some(c), &cpath, false, false)?;
                    if !blocks.is_empty() {
                        system.push(SystemPiece::Blocks(blocks));
                    }
                }
                Some(_) => return Err(bad(format!("`{cpath}` must be a string or an array"))),
            },
            "user" => {
                let blocks = openai_content_to_blocks(field(m, "content"), &cpath, true, false)?;
                push_turn(&mut turns, "user", Vec::new(), blocks);
            }
            "assistant" => {
                if field(m, "function_call").is_some() {
                    return Err(bad(format!(
                        "`{path}.function_call` (legacy functions) is not supported; use tool_calls"
                    )));
                }
                let mut blocks =
                    openai_content_to_blocks(field(m, "content"), &cpath, false, true)?;
                if let Some(calls) = field(m, "tool_calls") {
                    let tpath = sub(&path, "tool_calls");
                    for (j, call) in arr(calls, &tpath)?.iter().enumerate() {
                        let cp = format!("{tpath}[{j}]");
                        let c = obj(call, &cp)?;
                        match opt_str(c, "type", &cp)? {
                            None | Some("function") => {}
                            Some(t) => {
                                return Err(bad(format!(
                                    "`{cp}.type` `{t}` cannot be translated to Anthropic"
                                )))
                            }
                        }
                        let id = anthropic_tool_id(req_str(c, "id", &cp)?);
                        let fpath = sub(&cp, "function");
                        let f = obj(
                            field(c, "function")
                                .ok_or_else(|| bad(format!("`{fpath}` is required")))?,
                            &fpath,
                        )?;
                        let name = req_str(f, "name", &fpath)?;
                        let input = parse_arguments(
                            f.get("arguments").unwrap_or(&Value::Null),
                            &sub(&fpath, "arguments"),
                        )?;
                        blocks.push(
                            json!({ "type": "tool_use", "id": id, "name": name, "input": input }),
                        );
                    }
                }
                push_turn(&mut turns, "assistant", Vec::new(), blocks);
            }
            "tool" => {
                let id = anthropic_tool_id(req_str(m, "tool_call_id", &path)?);
                let content = match field(m, "content") {
                    None => Value::String(String::new()),
                    Some(Value::String(s)) => Value::String(s.clone()),
                    Some(c @ Value::Array(_)) => {
                        Value::Array(openai_content_to_blocks(Some(c), &cpath, true, false)?)
                    }
                    Some(_) => return Err(bad(format!("`{cpath}` must be a string or an array"))),
                };
                let result =
                    json!({ "type": "tool_result", "tool_use_id": id, "content": content });
                push_turn(&mut turns, "user", vec![result], Vec::new());
            }
            "function" => {
                return Err(bad(format!(
                "`{path}.role` `function` (legacy functions) is not supported; use tool messages"
            )))
            }
            other => return Err(bad(format!("`{path}.role` `{other}` is not supported"))),
        }
    }

    let system = if system.is_empty() {
        None
    } else if system.iter().all(|p| matches!(p, SystemPiece::Text(_))) {
        let texts: Vec<&str> = system
            .iter()
            .filter_map(|p| match p {
                SystemPiece::Text(t) => Some(t.as_str()),
                SystemPiece::Blocks(_) => None,
            })
            .collect();
        Some(Value::String(texts.join("\n\n")))
    } else {
        let mut blocks = Vec::new();
        for p in system {
            match p {
                SystemPiece::Text(t) => blocks.push(text_block(&t)),
                SystemPiece::Blocks(b) => blocks.extend(b),
            }
        }
        Some(Value::Array(blocks))
    };

    let messages = turns
        .into_iter()
        .map(|t| {
            let mut content = t.results;
            content.extend(t.blocks);
            json!({ "role": t.role, "content": compact_content(content) })
        })
        .collect();
    Ok((system, messages))
}

/// Rejects OpenAI fields whose meaning would be lost in translation.
fn refuse_openai_fields(body: &Map<String, Value>) -> Result<(), PayloadError> {
    if let Some(n) = field(body, "n") {
        match n.as_u64() {
            Some(1) => {}
            Some(_) => {
                return Err(bad(
                    "`n` > 1 cannot be translated to Anthropic (one choice only)",
                ))
            }
            None => return Err(bad("`n` must be a positive integer")),
        }
    }
    if let Some(rf) = field(body, "response_format") {
        let ty = req_str(obj(rf, "response_format")?, "type", "response_format")?;
        if ty != "text" {
            return Err(bad(format!(
                "`response_format` type `{ty}` cannot be translated to Anthropic"
            )));
        }
    }
    if opt_bool(body, "logprobs", "")? == Some(true) {
        return Err(bad("`logprobs` cannot be translated to Anthropic"));
    }
    if opt_u64(body, "top_logprobs", "")?.unwrap_or(0) > 0 {
        return Err(bad("`top_logprobs` cannot be translated to Anthropic"));
    }
    if field(body, "audio").is_some() {
        return Err(bad("`audio` output cannot be translated to Anthropic"));
    }
    if let Some(m) = field(body, "modalities") {
        for (i, v) in arr(m, "modalities")?.iter().enumerate() {
            if string(v, &format!("modalities[{i}]"))? != "text" {
                return Err(bad(
                    "`modalities` other than text cannot be translated to Anthropic",
                ));
            }
        }
    }
    if field(body, "web_search_options").is_some() {
        return Err(bad(
            "`web_search_options` cannot be translated to Anthropic",
        ));
    }
    if field(body, "functions").is_some() || field(body, "function_call").is_some() {
        return Err(bad(
            "legacy `functions` / `function_call` are not supported; use tools",
        ));
    }
    Ok(())
}

/// Translates an OpenAI Chat Completions request body into an Anthropic
/// Messages request body (see the module tables). `model` is copied; the
/// engine replaces it.
pub fn openai_request_to_anthropic(body: &Map<String, Value>) -> Result<Value, PayloadError> {
    refuse_openai_fields(body)?;
    let mut out = Map::new();
    if let Some(m) = body.get("model") {
        out.insert("model".into(), m.clone());
    }

    let messages = arr(
        field(body, "messages").ok_or_else(|| bad("`messages` is required"))?,
        "messages",
    )?;
    let (system, messages) = openai_messages_to_anthropic(messages)?;
    if let Some(s) = system {
        out.insert("system".into(), s);
    }
    out.insert("messages".into(), Value::Array(messages));

    let mut max_tokens = match opt_u64(body, "max_completion_tokens", "")? {
        Some(n) => n,
        None => opt_u64(body, "max_tokens", "")?.unwrap_or(u64::from(DEFAULT_MAX_TOKENS)),
    };

    // Thinking: Anthropic's own field wins over reasoning_effort.
    let thinking = match field(body, "thinking") {
        Some(t @ Value::Object(_)) => Some(t.clone()),
        Some(_) => return Err(bad("`thinking` must be an object")),
        None => match opt_str(body, "reasoning_effort", "")? {
            Some(effort) => {
                budget_for_effort(effort)?.map(|b| json!({ "type": "enabled", "budget_tokens": b }))
            }
            None => None,
        },
    };
    let mut thinking_enabled = false;
    if let Some(t) = thinking {
        if t.get("type").and_then(Value::as_str) == Some("enabled") {
            thinking_enabled = true;
            if let Some(budget) = t.get("budget_tokens").and_then(Value::as_u64) {
                if max_tokens <= budget {
                    max_tokens = budget.saturating_add(u64::from(DEFAULT_MAX_TOKENS));
                }
            }
        }
        out.insert("thinking".into(), t);
    }
    out.insert("max_tokens".into(), Value::from(max_tokens));

    match field(body, "stop") {
        None => {}
        Some(Value::String(s)) if s.is_empty() => {}
        Some(Value::String(s)) => {
            out.insert("stop_sequences".into(), json!([s]));
        }
        Some(Value::Array(list)) => {
            let mut seqs = Vec::new();
            for (i, s) in list.iter().enumerate() {
                let s = string(s, &format!("stop[{i}]"))?;
                if !s.is_empty() {
                    seqs.push(Value::String(s.to_owned()));
                }
            }
            if !seqs.is_empty() {
                out.insert("stop_sequences".into(), Value::Array(seqs));
            }
        }
        Some(_) => return Err(bad("`stop` must be a string or an array of strings")),
    }

    for key in ["temperature", "top_p", "top_k"] {
        if let Some(v) = opt_number(body, key, "")? {
            if !thinking_enabled {
                out.insert(key.into(), v.clone());
            }
        }
    }

    // Tools.
    let mut have_tools = false;
    if let Some(tools) = field(body, "tools") {
        let mut list = Vec::new();
        for (i, tool) in arr(tools, "tools")?.iter().enumerate() {
            let path = format!("tools[{i}]");
            let t = obj(tool, &path)?;
            match opt_str(t, "type", &path)? {
                None | Some("function") => {}
                Some(other) => {
                    return Err(bad(format!(
                        "`{path}.type` `{other}` cannot be translated to Anthropic"
                    )))
                }
            }
            let fpath = sub(&path, "function");
            let f = obj(
                field(t, "function").ok_or_else(|| bad(format!("`{fpath}` is required")))?,
                &fpath,
            )?;
            let mut a = Map::new();
            a.insert(
                "name".into(),
                Value::String(req_str(f, "name", &fpath)?.to_owned()),
            );
            if let Some(d) = opt_str(f, "description", &fpath)? {
                a.insert("description".into(), Value::String(d.to_owned()));
            }
            let schema = match field(f, "parameters") {
                None => json!({ "type": "object", "properties": {} }),
                Some(p @ Value::Object(_)) => p.clone(),
                Some(_) => return Err(bad(format!("`{fpath}.parameters` must be an object"))),
            };
            a.insert("input_schema".into(), schema);
            if let Some(cc) = field(t, "cache_control") {
                a.insert("cache_control".into(), cc.clone());
            }
            list.push(Value::Object(a));
        }
        have_tools = !list.is_empty();
        if have_tools {
            out.insert("tools".into(), Value::Array(list));
        }
    }

    let mut choice: Option<Map<String, Value>> = match field(body, "tool_choice") {
        None => None,
        Some(Value::String(s)) => {
            let ty = match s.as_str() {
                "auto" => "auto",
                "required" => "any",
                "none" => "none",
                other => {
                    return Err(bad(format!(
                        "`tool_choice` value `{other}` is not supported"
                    )))
                }
            };
            Some(json_map(json!({ "type": ty })))
        }
        Some(Value::Object(c)) => {
            match opt_str(c, "type", "tool_choice")? {
                Some("function") => {}
                other => {
                    return Err(bad(format!(
                        "`tool_choice` type `{}` cannot be translated to Anthropic",
                        other.unwrap_or("")
                    )))
                }
            }
            let f = obj(
                field(c, "function").ok_or_else(|| bad("`tool_choice.function` is required"))?,
                "tool_choice.function",
            )?;
            let name = req_str(f, "name", "tool_choice.function")?;
            Some(json_map(json!({ "type": "tool", "name": name })))
        }
        Some(_) => return Err(bad("`tool_choice` must be a string or an object")),
    };
    if opt_bool(body, "parallel_tool_calls", "")? == Some(false) && have_tools {
        let c = choice.get_or_insert_with(|| json_map(json!({ "type": "auto" })));
        if c.get("type").and_then(Value::as_str) != Some("none") {
            c.insert("disable_parallel_tool_use".into(), Value::Bool(true));
        }
    }
    if let (Some(c), true) = (choice, have_tools) {
        out.insert("tool_choice".into(), Value::Object(c));
    }

    if let Some(user) = opt_str(body, "user", "")? {
        out.insert("metadata".into(), json!({ "user_id": user }));
    }
    if let Some(s) = opt_bool(body, "stream", "")? {
        out.insert("stream".into(), Value::Bool(s));
    }
    Ok(Value::Object(out))
}

fn json_map(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

// ---------------------------------------------------------------------------
// requests: Anthropic -> OpenAI

/// Anthropic text blocks (a string or an array of `text` blocks) -> the
/// texts, for `system` and `tool_result` content.
fn anthropic_texts(v: &Value, path: &str) -> Result<Vec<String>, PayloadError> {
    match v {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(blocks) => {
            let mut out = Vec::new();
            for (i, b) in blocks.iter().enumerate() {
                let bp = format!("{path}[{i}]");
                let o = obj(b, &bp)?;
                match req_str(o, "type", &bp)? {
                    "text" => out.push(req_str(o, "text", &bp)?.to_owned()),
                    other => {
                        return Err(bad(format!(
                            "`{bp}`: block type `{other}` cannot be translated to OpenAI here"
                        )))
                    }
                }
            }
            Ok(out)
        }
        _ => Err(bad(format!("`{path}` must be a string or an array"))),
    }
}

/// A `tool_result`'s content -> the `tool` message text. Images (Claude
/// Code's Read tool on a picture) cannot go in a `tool` message: they go to
/// `images`, for a user message after the tool messages. `tool_reference`
/// blocks (tool search results) are dropped: OpenAI endpoints get every
/// tool anyway.
fn tool_result_text(
    c: &Value,
    path: &str,
    images: &mut Vec<Value>,
) -> Result<String, PayloadError> {
    let Value::Array(blocks) = c else {
        return Ok(anthropic_texts(c, path)?.join("\n"));
    };
    let mut texts = Vec::new();
    for (i, b) in blocks.iter().enumerate() {
        let bp = format!("{path}[{i}]");
        let o = obj(b, &bp)?;
        match req_str(o, "type", &bp)? {
            "text" => texts.push(req_str(o, "text", &bp)?),
            "image" => images.push(anthropic_image_to_part(o, &bp)?),
            "tool_reference" => {}
            other => {
                return Err(bad(format!(
                    "`{bp}`: block type `{other}` cannot be translated to OpenAI here"
                )))
            }
        }
    }
    Ok(texts.join("\n"))
}

/// An Anthropic image block -> an OpenAI `image_url` part.
fn anthropic_image_to_part(b: &Map<String, Value>, path: &str) -> Result<Value, PayloadError> {
    let spath = sub(path, "source");
    let src = obj(
        field(b, "source").ok_or_else(|| bad(format!("`{spath}` is required")))?,
        &spath,
    )?;
    let url = match req_str(src, "type", &spath)? {
        "base64" => {
            let media = req_str(src, "media_type", &spath)?;
            let data = req_str(src, "data", &spath)?;
            format!("data:{media};base64,{data}")
        }
        "url" => req_str(src, "url", &spath)?.to_owned(),
        other => {
            return Err(bad(format!(
                "`{spath}.type` `{other}` cannot be translated to OpenAI"
            )))
        }
    };
    Ok(json!({ "type": "image_url", "image_url": { "url": url } }))
}

fn anthropic_messages_to_openai(
    messages: &[Value],
    out: &mut Vec<Value>,
) -> Result<(), PayloadError> {
    for (i, msg) in messages.iter().enumerate() {
        let path = format!("messages[{i}]");
        let m = obj(msg, &path)?;
        let role = req_str(m, "role", &path)?;
        let cpath = sub(&path, "content");
        let content = field(m, "content").ok_or_else(|| bad(format!("`{cpath}` is required")))?;
        match (role, content) {
            ("user" | "assistant", Value::String(s)) => {
                out.push(json!({ "role": role, "content": s }));
            }
            ("user", Value::Array(blocks)) => {
                let mut tool_msgs = Vec::new();
                let mut parts = Vec::new();
                let mut tool_images = Vec::new();
                for (j, b) in blocks.iter().enumerate() {
                    let bp = format!("{cpath}[{j}]");
                    let o = obj(b, &bp)?;
                    match req_str(o, "type", &bp)? {
                        "text" => parts.push(text_block(req_str(o, "text", &bp)?)),
                        "image" => parts.push(anthropic_image_to_part(o, &bp)?),
                        "tool_result" => {
                            let id = req_str(o, "tool_use_id", &bp)?;
                            let text = match field(o, "content") {
                                None => String::new(),
                                Some(c) => {
                                    tool_result_text(c, &sub(&bp, "content"), &mut tool_images)?
                                }
                            };
                            tool_msgs.push(
                                json!({ "role": "tool", "tool_call_id": id, "content": text }),
                            );
                        }
                        other => {
                            return Err(bad(format!(
                                "`{bp}`: block type `{other}` cannot be translated to OpenAI"
                            )))
                        }
                    }
                }
                out.extend(tool_msgs);
                if !tool_images.is_empty() {
                    // Images from tool results, right after them, first in the user turn.
                    let mut with = vec![text_block("(images returned by the tool calls above)")];
                    with.append(&mut tool_images);
                    with.append(&mut parts);
                    parts = with;
                }
                if !parts.is_empty() {
                    out.push(json!({ "role": "user", "content": compact_content(parts) }));
                }
            }
            ("assistant", Value::Array(blocks)) => {
                let mut text = String::new();
                let mut calls = Vec::new();
                for (j, b) in blocks.iter().enumerate() {
                    let bp = format!("{cpath}[{j}]");
                    let o = obj(b, &bp)?;
                    match req_str(o, "type", &bp)? {
                        "text" => text.push_str(req_str(o, "text", &bp)?),
                        "tool_use" => {
                            let id = req_str(o, "id", &bp)?;
                            let name = req_str(o, "name", &bp)?;
                            let input = match field(o, "input") {
                                None => json!({}),
                                Some(v @ Value::Object(_)) => v.clone(),
                                Some(_) => {
                                    return Err(bad(format!("`{bp}.input` must be an object")))
                                }
                            };
                            calls.push(json!({
                                "id": id,
                                "type": "function",
                                "function": { "name": name, "arguments": input.to_string() },
                            }));
                        }
                        "thinking" | "redacted_thinking" => {}
                        // Anthropic-side tool search turns; meaningless to OpenAI.
                        "server_tool_use" | "tool_search_tool_result" => {}
                        other => {
                            return Err(bad(format!(
                                "`{bp}`: block type `{other}` cannot be translated to OpenAI"
                            )))
                        }
                    }
                }
                if calls.is_empty() {
                    if !text.is_empty() {
                        out.push(json!({ "role": "assistant", "content": text }));
                    }
                } else {
                    let content = if text.is_empty() {
                        Value::Null
                    } else {
                        Value::String(text)
                    };
                    out.push(
                        json!({ "role": "assistant", "content": content, "tool_calls": calls }),
                    );
                }
            }
            ("user" | "assistant", _) => {
                return Err(bad(format!("`{cpath}` must be a string or an array")))
            }
            // Claude Code sends its environment block as a system turn inside
            // `messages`; OpenAI has a role for exactly that.
            ("system", c) => {
                let text = anthropic_texts(c, &cpath)?.join("\n\n");
                out.push(json!({ "role": "system", "content": text }));
            }
            (other, _) => return Err(bad(format!("`{path}.role` `{other}` is not supported"))),
        }
    }
    Ok(())
}

/// Translates an Anthropic Messages request body into an OpenAI Chat
/// Completions request body (see the module tables). `model` is copied; the
/// engine replaces it.
pub fn anthropic_request_to_openai(body: &Map<String, Value>) -> Result<Value, PayloadError> {
    if let Some(m) = field(body, "mcp_servers") {
        if !arr(m, "mcp_servers")?.is_empty() {
            return Err(bad("`mcp_servers` cannot be translated to OpenAI"));
        }
    }
    let mut out = Map::new();
    if let Some(m) = body.get("model") {
        out.insert("model".into(), m.clone());
    }

    let mut messages = Vec::new();
    if let Some(s) = field(body, "system") {
        let text = anthropic_texts(s, "system")?.join("\n\n");
        if !text.is_empty() {
            messages.push(json!({ "role": "system", "content": text }));
        }
    }
    let input = arr(
        field(body, "messages").ok_or_else(|| bad("`messages` is required"))?,
        "messages",
    )?;
    anthropic_messages_to_openai(input, &mut messages)?;
    out.insert("messages".into(), Value::Array(messages));

    if let Some(n) = opt_u64(body, "max_tokens", "")? {
        out.insert("max_completion_tokens".into(), Value::from(n));
    }
    if let Some(seqs) = field(body, "stop_sequences") {
        let mut list = Vec::new();
        for (i, s) in arr(seqs, "stop_sequences")?.iter().enumerate() {
            list.push(Value::String(
                string(s, &format!("stop_sequences[{i}]"))?.to_owned(),
            ));
        }
        if !list.is_empty() {
            out.insert("stop".into(), Value::Array(list));
        }
    }
    for key in ["temperature", "top_p"] {
        if let Some(v) = opt_number(body, key, "")? {
            out.insert(key.into(), v.clone());
        }
    }
    opt_number(body, "top_k", "")?; // validated, then dropped

    if let Some(tools) = field(body, "tools") {
        let mut list = Vec::new();
        for (i, tool) in arr(tools, "tools")?.iter().enumerate() {
            let path = format!("tools[{i}]");
            let t = obj(tool, &path)?;
            match opt_str(t, "type", &path)? {
                None | Some("custom") => {}
                // The tool search tool only finds tools marked
                // `defer_loading`; OpenAI endpoints get every tool in full.
                Some(ty) if ty.starts_with("tool_search_tool") => continue,
                Some(other) => {
                    return Err(bad(format!(
                        "`{path}`: server tool `{other}` cannot be translated to OpenAI"
                    )))
                }
            }
            let mut f = Map::new();
            f.insert(
                "name".into(),
                Value::String(req_str(t, "name", &path)?.to_owned()),
            );
            if let Some(d) = opt_str(t, "description", &path)? {
                f.insert("description".into(), Value::String(d.to_owned()));
            }
            let schema = match field(t, "input_schema") {
                None => json!({ "type": "object", "properties": {} }),
                Some(s @ Value::Object(_)) => s.clone(),
                Some(_) => return Err(bad(format!("`{path}.input_schema` must be an object"))),
            };
            f.insert("parameters".into(), schema);
            list.push(json!({ "type": "function", "function": f }));
        }
        if !list.is_empty() {
            out.insert("tools".into(), Value::Array(list));
        }
    }

    if let Some(c) = field(body, "tool_choice") {
        let c = obj(c, "tool_choice")?;
        let choice = match req_str(c, "type", "tool_choice")? {
            "auto" => json!("auto"),
            "any" => json!("required"),
            "none" => json!("none"),
            "tool" => json!({
                "type": "function",
                "function": { "name": req_str(c, "name", "tool_choice")? },
            }),
            other => {
                return Err(bad(format!(
                    "`tool_choice.type` `{other}` is not supported"
                )))
            }
        };
        out.insert("tool_choice".into(), choice);
        if opt_bool(c, "disable_parallel_tool_use", "tool_choice")? == Some(true) {
            out.insert("parallel_tool_calls".into(), Value::Bool(false));
        }
    }

    if let Some(meta) = field(body, "metadata") {
        if let Some(u) = opt_str(obj(meta, "metadata")?, "user_id", "metadata")? {
            out.insert("user".into(), Value::String(u.to_owned()));
        }
    }

    if let Some(t) = field(body, "thinking") {
        let t = obj(t, "thinking")?;
        if opt_str(t, "type", "thinking")? == Some("enabled") {
            let budget = opt_u64(t, "budget_tokens", "thinking")?.unwrap_or(0);
            out.insert("reasoning_effort".into(), json!(effort_for_budget(budget)));
        }
    }
    if let Some(s) = opt_bool(body, "stream", "")? {
        out.insert("stream".into(), Value::Bool(s));
    }
    Ok(Value::Object(out))
}

// ---------------------------------------------------------------------------
// non-streaming responses

/// Translates an Anthropic Messages response into an OpenAI
/// `chat.completion`. `id` and `model` are kept; `created` (Unix seconds)
/// is given by the caller; thinking text is exposed as
/// `message.reasoning_content`.
pub fn anthropic_response_to_openai(v: &Value, created: u64) -> Result<Value, PayloadError> {
    let m = v
        .as_object()
        .ok_or_else(|| bad("response is not a JSON object"))?;
    if m.get("type").and_then(Value::as_str) == Some("error") {
        return Err(PayloadError::Upstream(
            anthropic::error_message(v).unwrap_or_else(|| "unspecified error".into()),
        ));
    }
    let blocks = m
        .get("content")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("message has no `content` array"))?;
    let mut text = String::new();
    let mut reasoning = String::new();
    let mut calls = Vec::new();
    for (i, b) in blocks.iter().enumerate() {
        let path = format!("content[{i}]");
        let o = obj(b, &path)?;
        match req_str(o, "type", &path)? {
            "text" => text.push_str(req_str(o, "text", &path)?),
            "thinking" => reasoning.push_str(opt_str(o, "thinking", &path)?.unwrap_or("")),
            "tool_use" => {
                let input = field(o, "input").cloned().unwrap_or_else(|| json!({}));
                calls.push(json!({
                    "id": req_str(o, "id", &path)?,
                    "type": "function",
                    "function": { "name": req_str(o, "name", &path)?, "arguments": input.to_string() },
                }));
            }
            _ => {} // redacted_thinking, server tool blocks, future types
        }
    }
    let stop = opt_str(m, "stop_reason", "")?;
    let mut message = Map::new();
    message.insert("role".into(), json!("assistant"));
    let content = if text.is_empty() && !calls.is_empty() {
        Value::Null
    } else {
        Value::String(text)
    };
    message.insert("content".into(), content);
    message.insert("refusal".into(), Value::Null);
    if !calls.is_empty() {
        message.insert("tool_calls".into(), Value::Array(calls));
    }
    if !reasoning.is_empty() {
        message.insert("reasoning_content".into(), Value::String(reasoning));
    }
    let mut out = json_map(json!({
        "id": m.get("id").cloned().unwrap_or_else(|| json!("")),
        "object": "chat.completion",
        "created": created,
        "model": m.get("model").cloned().unwrap_or_else(|| json!("")),
        "choices": [{
            "index": 0,
            "message": message,
            "logprobs": null,
            "finish_reason": finish_reason_for(stop),
        }],
    }));
    let mut acc = UsageAcc::default();
    if let Some(u) = m.get("usage") {
        acc.update(u);
    }
    if let Some(u) = acc.get() {
        out.insert("usage".into(), openai_usage_json(u));
    }
    Ok(Value::Object(out))
}

/// Translates an OpenAI `chat.completion` (choice 0) into an Anthropic
/// Messages response. `id` and `model` are kept.
pub fn openai_response_to_anthropic(v: &Value) -> Result<Value, PayloadError> {
    let m = v
        .as_object()
        .ok_or_else(|| bad("response is not a JSON object"))?;
    if field(m, "error").is_some() {
        return Err(PayloadError::Upstream(
            openai_error_message(v).unwrap_or_else(|| "unspecified error".into()),
        ));
    }
    let choices = arr(
        field(m, "choices").ok_or_else(|| bad("`choices` is required"))?,
        "choices",
    )?;
    let choice = obj(
        choices.first().ok_or_else(|| bad("`choices` is empty"))?,
        "choices[0]",
    )?;
    let message = obj(
        field(choice, "message").ok_or_else(|| bad("`choices[0].message` is required"))?,
        "choices[0].message",
    )?;
    let mut content = openai_content_to_blocks(
        field(message, "content"),
        "choices[0].message.content",
        false,
        true,
    )?;
    if content.is_empty() {
        if let Some(r) = opt_str(message, "refusal", "choices[0].message")? {
            if !r.is_empty() {
                content.push(text_block(r));
            }
        }
    }
    if let Some(calls) = field(message, "tool_calls") {
        let tpath = "choices[0].message.tool_calls";
        for (j, call) in arr(calls, tpath)?.iter().enumerate() {
            let cp = format!("{tpath}[{j}]");
            let c = obj(call, &cp)?;
            let fpath = sub(&cp, "function");
            let f = obj(
                field(c, "function").ok_or_else(|| bad(format!("`{fpath}` is required")))?,
                &fpath,
            )?;
            let input = parse_arguments(
                f.get("arguments").unwrap_or(&Value::Null),
                &sub(&fpath, "arguments"),
            )?;
            content.push(json!({
                "type": "tool_use",
                "id": anthropic_tool_id(req_str(c, "id", &cp)?),
                "name": req_str(f, "name", &fpath)?,
                "input": input,
            }));
        }
    }
    let finish = opt_str(choice, "finish_reason", "choices[0]")?;
    let usage = field(m, "usage").and_then(openai_usage).unwrap_or_default();
    Ok(json!({
        "id": m.get("id").cloned().unwrap_or_else(|| json!("")),
        "type": "message",
        "role": "assistant",
        "model": m.get("model").cloned().unwrap_or_else(|| json!("")),
        "content": content,
        "stop_reason": stop_reason_for(finish),
        "stop_sequence": null,
        "usage": anthropic_usage_json(usage),
    }))
}

// ---------------------------------------------------------------------------
// streams: Anthropic upstream -> OpenAI caller

/// Anthropic stream events -> OpenAI `chat.completion.chunk` payloads.
///
/// `message_start` -> a chunk with `delta: {role: "assistant", content: ""}`;
/// text -> `delta.content`; a `tool_use` block -> a `tool_calls` entry at the
/// next index k (0, 1, ...) with id and name, then its `input_json_delta`s as
/// `arguments` fragments; thinking -> `delta.reasoning_content`; signatures,
/// pings and unknown events -> nothing; `message_delta` -> an empty delta with
/// the mapped `finish_reason`; `message_stop` -> the usage chunk when
/// `include_usage`, then finished. A `message_stop` with no `message_delta`
/// before it gets a `finish_reason: "stop"` chunk first.
pub struct AnthropicToOpenAi {
    ctx: StreamContext,
    usage: UsageAcc,
    started: bool,
    finish_sent: bool,
    /// (Anthropic block index, OpenAI tool-call index) of every tool_use block.
    tool_blocks: Vec<(u64, u64)>,
    next_tool: u64,
}

impl AnthropicToOpenAi {
    pub fn new(ctx: StreamContext) -> Self {
        AnthropicToOpenAi {
            ctx,
            usage: UsageAcc::default(),
            started: false,
            finish_sent: false,
            tool_blocks: Vec::new(),
            next_tool: 0,
        }
    }

    fn chunk(&self, delta: Value, finish: Option<&str>) -> String {
        json!({
            "id": self.ctx.id,
            "object": "chat.completion.chunk",
            "created": self.ctx.created,
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
}

impl StreamAdapter for AnthropicToOpenAi {
    fn on_event(&mut self, ev: &SseEvent) -> Result<StreamStep, PayloadError> {
        let (name, data) = parse_event(ev)?;
        let mut step = StreamStep::default();
        match name.as_str() {
            "error" => return Err(stream_error(&data)),
            "message_start" => {
                if let Some(u) = data.get("message").and_then(|m| m.get("usage")) {
                    self.usage.update(u);
                }
                self.start(&mut step.out);
            }
            "content_block_start" => {
                let index = opt_u64(&data, "index", "content_block_start")?.unwrap_or(0);
                let block = obj(
                    field(&data, "content_block")
                        .ok_or_else(|| bad("`content_block_start.content_block` is required"))?,
                    "content_block_start.content_block",
                )?;
                let path = "content_block_start.content_block";
                let delta = match req_str(block, "type", path)? {
                    "tool_use" => {
                        let k = self.next_tool;
                        self.next_tool = self.next_tool.saturating_add(1);
                        self.tool_blocks.push((index, k));
                        Some(json!({ "tool_calls": [{
                            "index": k,
                            "id": req_str(block, "id", path)?,
                            "type": "function",
                            "function": { "name": req_str(block, "name", path)?, "arguments": "" },
                        }]}))
                    }
                    "text" => match opt_str(block, "text", path)? {
                        Some(t) if !t.is_empty() => Some(json!({ "content": t })),
                        _ => None,
                    },
                    "thinking" => match opt_str(block, "thinking", path)? {
                        Some(t) if !t.is_empty() => Some(json!({ "reasoning_content": t })),
                        _ => None,
                    },
                    _ => None,
                };
                if let Some(d) = delta {
                    self.start(&mut step.out);
                    step.out.push(self.chunk(d, None));
                    step.content = true;
                }
            }
            "content_block_delta" => {
                let index = opt_u64(&data, "index", "content_block_delta")?.unwrap_or(0);
                let path = "content_block_delta.delta";
                let d = obj(
                    field(&data, "delta").ok_or_else(|| bad(format!("`{path}` is required")))?,
                    path,
                )?;
                let delta = match req_str(d, "type", path)? {
                    "text_delta" => {
                        let t = req_str(d, "text", path)?;
                        (!t.is_empty()).then(|| json!({ "content": t }))
                    }
                    "thinking_delta" => {
                        let t = req_str(d, "thinking", path)?;
                        (!t.is_empty()).then(|| json!({ "reasoning_content": t }))
                    }
                    "input_json_delta" => {
                        let partial = req_str(d, "partial_json", path)?;
                        // Deltas of blocks that are not client tool calls
                        // (e.g. server tools) have no OpenAI counterpart.
                        match self.tool_blocks.iter().find(|(b, _)| *b == index) {
                            Some(&(_, k)) if !partial.is_empty() => Some(json!({
                                "tool_calls": [{ "index": k, "function": { "arguments": partial } }],
                            })),
                            _ => None,
                        }
                    }
                    _ => None, // signature_delta, citations_delta, future types
                };
                if let Some(d) = delta {
                    self.start(&mut step.out);
                    step.out.push(self.chunk(d, None));
                    step.content = true;
                }
            }
            "message_delta" => {
                if let Some(u) = data.get("usage") {
                    self.usage.update(u);
                }
                let stop = data
                    .get("delta")
                    .and_then(|d| d.get("stop_reason"))
                    .and_then(Value::as_str);
                self.start(&mut step.out);
                step.out
                    .push(self.chunk(json!({}), Some(finish_reason_for(stop))));
                self.finish_sent = true;
            }
            "message_stop" => {
                if !self.finish_sent {
                    self.start(&mut step.out);
                    step.out.push(self.chunk(json!({}), Some("stop")));
                    self.finish_sent = true;
                }
                if self.ctx.include_usage {
                    let usage = self.usage.get().unwrap_or_default();
                    step.out.push(
                        json!({
                            "id": self.ctx.id,
                            "object": "chat.completion.chunk",
                            "created": self.ctx.created,
                            "model": self.ctx.model,
                            "choices": [],
                            "usage": openai_usage_json(usage),
                        })
                        .to_string(),
                    );
                }
                step.finished = true;
            }
            _ => {} // ping, content_block_stop, unknown events
        }
        Ok(step)
    }

    fn usage(&self) -> Option<Usage> {
        self.usage.get()
    }
}

// ---------------------------------------------------------------------------
// streams: OpenAI upstream -> Anthropic caller

#[derive(Clone, Copy, PartialEq, Eq)]
enum OpenBlock {
    Text,
    /// A tool call, by its OpenAI `index`.
    Tool(u64),
}

/// OpenAI `chat.completion.chunk`s -> Anthropic stream event payloads (the
/// data JSON of each event; its `type` names the event).
///
/// The first chunk produces `message_start` (its `usage.input_tokens` is the
/// context's estimate: clients read usage there; the real counts follow in
/// `message_delta`); content opens a text block,
/// each new tool-call index closes the open block and opens a `tool_use`
/// block whose argument fragments become `input_json_delta`s; a text delta
/// after a tool call opens a new text block. The finish reason is remembered
/// and the usage chunk recorded; on `[DONE]` the open block is closed and
/// `message_delta` (stop reason + usage) and `message_stop` follow.
/// `reasoning_content` deltas are dropped. Fragments of a tool call whose
/// block was already closed (calls interleaved) are refused as malformed:
/// Anthropic blocks cannot be reopened.
pub struct OpenAiToAnthropic {
    ctx: StreamContext,
    started: bool,
    open: Option<(OpenBlock, u64)>,
    next_block: u64,
    /// OpenAI tool-call indices already given a block.
    tools_seen: Vec<u64>,
    finish: Option<&'static str>,
    usage: Option<Usage>,
}

impl OpenAiToAnthropic {
    pub fn new(ctx: StreamContext) -> Self {
        OpenAiToAnthropic {
            ctx,
            started: false,
            open: None,
            next_block: 0,
            tools_seen: Vec::new(),
            finish: None,
            usage: None,
        }
    }

    fn close(&mut self, out: &mut Vec<String>) {
        if let Some((_, index)) = self.open.take() {
            out.push(json!({ "type": "content_block_stop", "index": index }).to_string());
        }
    }

    fn open_block(&mut self, kind: OpenBlock, block: Value, out: &mut Vec<String>) -> u64 {
        self.close(out);
        let index = self.next_block;
        self.next_block = self.next_block.saturating_add(1);
        self.open = Some((kind, index));
        out.push(
            json!({ "type": "content_block_start", "index": index, "content_block": block })
                .to_string(),
        );
        index
    }

    fn text(&mut self, text: &str, out: &mut Vec<String>) {
        let index = match self.open {
            Some((OpenBlock::Text, i)) => i,
            _ => self.open_block(OpenBlock::Text, json!({ "type": "text", "text": "" }), out),
        };
        out.push(
            json!({
                "type": "content_block_delta",
                "index": index,
                "delta": { "type": "text_delta", "text": text },
            })
            .to_string(),
        );
    }

    fn tool_call(
        &mut self,
        call: &Value,
        path: &str,
        out: &mut Vec<String>,
    ) -> Result<bool, PayloadError> {
        let c = obj(call, path)?;
        let f = match field(c, "function") {
            Some(f) => Some(obj(f, &sub(path, "function"))?),
            None => None,
        };
        let fpath = sub(path, "function");
        let args = match f {
            Some(f) => opt_str(f, "arguments", &fpath)?.unwrap_or(""),
            None => "",
        };
        let id = opt_str(c, "id", path)?;
        let index = match opt_u64(c, "index", path)? {
            Some(i) => i,
            // No index (some servers): a call with an id is a new call,
            // a fragment without one continues the open call.
            None => match (id, self.open) {
                (None, Some((OpenBlock::Tool(i), _))) => i,
                _ => self
                    .tools_seen
                    .iter()
                    .max()
                    .map_or(0, |m| m.saturating_add(1)),
            },
        };
        let mut emitted = false;
        let block_index =
            if let Some((_, b)) = self.open.filter(|(k, _)| *k == OpenBlock::Tool(index)) {
                b
            } else if self.tools_seen.contains(&index) {
                if args.is_empty() {
                    return Ok(false);
                }
                return Err(bad(format!(
                "tool call {index} continued after another block started (interleaved tool calls)"
            )));
            } else {
                self.tools_seen.push(index);
                let name = match f {
                    Some(f) => opt_str(f, "name", &fpath)?.unwrap_or(""),
                    None => "",
                };
                let id = match id {
                    Some(id) => anthropic_tool_id(id),
                    None => anthropic_tool_id(&format!("toolu_{}_{}", self.ctx.id, index)),
                };
                emitted = true;
                self.open_block(
                    OpenBlock::Tool(index),
                    json!({ "type": "tool_use", "id": id, "name": name, "input": {} }),
                    out,
                )
            };
        if !args.is_empty() {
            out.push(
                json!({
                    "type": "content_block_delta",
                    "index": block_index,
                    "delta": { "type": "input_json_delta", "partial_json": args },
                })
                .to_string(),
            );
            emitted = true;
        }
        Ok(emitted)
    }
}

impl StreamAdapter for OpenAiToAnthropic {
    fn on_event(&mut self, ev: &SseEvent) -> Result<StreamStep, PayloadError> {
        let mut step = StreamStep::default();
        if ev.data.trim() == "[DONE]" {
            let Some(stop) = self.finish else {
                return Err(bad("stream ended without finish_reason"));
            };
            self.close(&mut step.out);
            let usage = match self.usage {
                Some(u) => anthropic_usage_json(u),
                None => json!({ "output_tokens": 0 }),
            };
            step.out.push(
                json!({
                    "type": "message_delta",
                    "delta": { "stop_reason": stop, "stop_sequence": null },
                    "usage": usage,
                })
                .to_string(),
            );
            step.out.push(json!({ "type": "message_stop" }).to_string());
            step.finished = true;
            return Ok(step);
        }
        let value: Value = serde_json::from_str(&ev.data)
            .map_err(|e| bad(format!("stream chunk is not JSON: {e}")))?;
        let chunk = value
            .as_object()
            .ok_or_else(|| bad("stream chunk is not a JSON object"))?;
        if field(chunk, "error").is_some() {
            return Err(PayloadError::Upstream(
                openai_error_message(&value)
                    .unwrap_or_else(|| "unspecified error in stream".into()),
            ));
        }
        if !self.started {
            self.started = true;
            step.out.push(
                json!({
                    "type": "message_start",
                    "message": {
                        "id": self.ctx.id,
                        "type": "message",
                        "role": "assistant",
                        "model": self.ctx.model,
                        "content": [],
                        "stop_reason": null,
                        "stop_sequence": null,
                        "usage": {
                            "input_tokens": self.ctx.input_tokens_estimate,
                            "output_tokens": 0,
                        },
                    },
                })
                .to_string(),
            );
        }
        if let Some(u) = field(chunk, "usage") {
            if let Some(u) = openai_usage(u) {
                self.usage = Some(u);
            }
        }
        let choices = match field(chunk, "choices") {
            None => return Ok(step),
            Some(c) => arr(c, "choices")?,
        };
        for (i, choice) in choices.iter().enumerate() {
            let path = format!("choices[{i}]");
            let c = obj(choice, &path)?;
            if opt_u64(c, "index", &path)?.unwrap_or(0) != 0 {
                continue; // only choice 0 is translated
            }
            if let Some(delta) = field(c, "delta") {
                let dpath = sub(&path, "delta");
                let d = obj(delta, &dpath)?;
                for key in ["content", "refusal"] {
                    if let Some(t) = opt_str(d, key, &dpath)? {
                        if !t.is_empty() {
                            self.text(t, &mut step.out);
                            step.content = true;
                        }
                    }
                }
                if let Some(calls) = field(d, "tool_calls") {
                    let tpath = sub(&dpath, "tool_calls");
                    for (j, call) in arr(calls, &tpath)?.iter().enumerate() {
                        if self.tool_call(call, &format!("{tpath}[{j}]"), &mut step.out)? {
                            step.content = true;
                        }
                    }
                }
            }
            if let Some(f) = opt_str(c, "finish_reason", &path)? {
                self.finish = Some(stop_reason_for(Some(f)));
            }
        }
        Ok(step)
    }

    fn usage(&self) -> Option<Usage> {
        self.usage
    }
}

// ---------------------------------------------------------------------------
// errors

/// OpenAI `error.type` / `error.code` -> Anthropic `error.type`.
fn anthropic_type_for_openai(ty: Option<&str>, code: Option<&str>) -> &'static str {
    for s in [code, ty].into_iter().flatten() {
        let t = match s {
            "invalid_request_error" | "context_length_exceeded" | "invalid_value" => {
                "invalid_request_error"
            }
            "authentication_error" | "invalid_api_key" => "authentication_error",
            "permission_error" | "permission_denied" => "permission_error",
            "not_found_error" | "model_not_found" => "not_found_error",
            "rate_limit_error" | "rate_limit_exceeded" | "insufficient_quota" => "rate_limit_error",
            "server_error" | "api_error" | "internal_error" => "api_error",
            "timeout" | "timeout_error" => "timeout_error",
            "overloaded" | "overloaded_error" => "overloaded_error",
            _ => continue,
        };
        return t;
    }
    "api_error"
}

/// Converts an OpenAI error body (from an upstream answering `status`) into
/// an Anthropic error body. The message is kept; the type follows the status
/// when it is >= 400 (see [`anthropic::error_type_for_status`]), else the
/// OpenAI `code` / `type`.
pub fn openai_error_to_anthropic(status: u16, v: &Value) -> Value {
    let message = openai_error_message(v)
        .unwrap_or_else(|| format!("upstream returned HTTP status {status}"));
    let ty = if status >= 400 {
        anthropic::error_type_for_status(status)
    } else {
        let e = v.get("error");
        anthropic_type_for_openai(
            e.and_then(|e| e.get("type")).and_then(Value::as_str),
            e.and_then(|e| e.get("code")).and_then(Value::as_str),
        )
    };
    json!({ "type": "error", "error": { "type": ty, "message": message } })
}

/// The OpenAI `error.type` for an Anthropic error type.
fn openai_type_for_anthropic(ty: &str) -> &'static str {
    match ty {
        "invalid_request_error" | "request_too_large" => "invalid_request_error",
        "authentication_error" => "authentication_error",
        "permission_error" | "billing_error" => "permission_error",
        "not_found_error" => "not_found_error",
        "rate_limit_error" => "rate_limit_error",
        "timeout_error" => "timeout",
        _ => "server_error",
    }
}

/// Converts an Anthropic error body (from an upstream answering `status`)
/// into an OpenAI error body `{"error":{"message","type","param","code"}}`.
/// The message is kept; `code` carries the Anthropic error type (from the
/// body, else from the status); `type` is its OpenAI counterpart
/// (`overloaded_error` and `api_error` become `server_error`).
pub fn anthropic_error_to_openai(status: u16, v: &Value) -> Value {
    let message = anthropic::error_message(v)
        .unwrap_or_else(|| format!("upstream returned HTTP status {status}"));
    let ty = match anthropic::error_type(v) {
        Some(t) => t.to_owned(),
        None => anthropic::error_type_for_status(status).to_owned(),
    };
    json!({
        "error": {
            "message": message,
            "type": openai_type_for_anthropic(&ty),
            "param": null,
            "code": ty,
        }
    })
}

#[cfg(test)]
mod tests;
