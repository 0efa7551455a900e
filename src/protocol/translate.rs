//! Translation between OpenAI Chat Completions and Anthropic Messages:
//! requests, non-streaming responses, streams and error bodies.
//!
//! Requests go through the conversation model: the caller's typed wire
//! model is parsed into [`super::ir::Request`] ([`chat::parse_request`],
//! [`messages::parse_request`]) and the upstream's emitted from it
//! ([`messages::emit_request`], [`chat::emit_request`]); what each side drops
//! or refuses is written once in those modules (`DROPPED`, `REFUSED`, their
//! `emit_request` docs). Responses, streams and errors still walk JSON here.
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

use super::anthropic::messages::{self, tool_id as anthropic_tool_id};
pub use super::anthropic::messages::{DEFAULT_MAX_TOKENS, REASONING_BUDGETS};
use super::anthropic::{self, parse_event, stream_error, UsageAcc};
use super::openai::chat;
use super::{PayloadError, SseEvent, StreamAdapter, StreamContext, StreamStep, Usage};

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

/// Anthropic `stop_reason` -> OpenAI `finish_reason`.
pub fn finish_reason_for(stop_reason: Option<&str>) -> &'static str {
    chat::finish_reason_name(messages::parse_stop_reason(stop_reason))
}

/// OpenAI `finish_reason` -> Anthropic `stop_reason`.
pub fn stop_reason_for(finish_reason: Option<&str>) -> &'static str {
    messages::stop_reason_name(chat::parse_finish_reason(finish_reason))
}

fn openai_usage_json(u: Usage) -> Value {
    json!(chat::UsageOut::from(u))
}

fn anthropic_usage_json(u: Usage) -> Value {
    json!(messages::UsageOut::from(u))
}

// ---------------------------------------------------------------------------
// requests and responses: parse the upstream's or caller's body into the
// conversation model, emit the other side's

/// Translates an OpenAI Chat Completions request body into an Anthropic
/// Messages request body (see the module tables). `model` is copied; the
/// engine replaces it.
pub fn openai_request_to_anthropic(body: &Map<String, Value>) -> Result<Value, PayloadError> {
    messages::emit_request(&chat::parse_request(body)?)
}

/// Translates an Anthropic Messages request body into an OpenAI Chat
/// Completions request body (see the module tables). `model` is copied; the
/// engine replaces it.
pub fn anthropic_request_to_openai(body: &Map<String, Value>) -> Result<Value, PayloadError> {
    chat::emit_request(&messages::parse_request(body)?)
}

/// Translates an Anthropic Messages response into an OpenAI
/// `chat.completion`. `id` and `model` are kept; `created` (Unix seconds)
/// is given by the caller; thinking text is exposed as
/// `message.reasoning_content`.
pub fn anthropic_response_to_openai(v: &Value, created: u64) -> Result<Value, PayloadError> {
    chat::emit_response(&messages::parse_response(v)?, created)
}

/// Translates an OpenAI `chat.completion` (choice 0) into an Anthropic
/// Messages response. `id` and `model` are kept.
pub fn openai_response_to_anthropic(v: &Value) -> Result<Value, PayloadError> {
    messages::emit_response(&chat::parse_response(v)?)
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
                chat::error_message(&value).unwrap_or_else(|| "unspecified error in stream".into()),
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
            if let Some(u) = chat::parse_usage(u) {
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
    let message =
        chat::error_message(v).unwrap_or_else(|| format!("upstream returned HTTP status {status}"));
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
