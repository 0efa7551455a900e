//! Translation glue: the Chat Completions <-> Anthropic Messages entry
//! points (requests, non-streaming responses, streams, error bodies) and
//! [`Translator`], the stream adapter for any other translated pair.
//!
//! Everything but error bodies goes through the conversation model
//! ([`super::ir`]): a typed wire model is parsed into it and the other
//! side's emitted from it. Requests: [`chat::parse_request`] /
//! [`messages::emit_request`] and [`messages::parse_request`] /
//! [`chat::emit_request`] (and [`responses::parse_request`] /
//! [`responses::emit_request`]); responses: the `parse_response` /
//! `emit_response` pairs; streams: each protocol's parser
//! ([`ParseDeltas`]) and emitter ([`EmitDeltas`]), joined by
//! [`ir::Delta`]. What each side drops or refuses is written once in those
//! modules (`DROPPED`, `REFUSED`, `drops_block`, `drops_tool`, the
//! `emit_request` docs). Error bodies are still translated as JSON here.
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
//! | `max_completion_tokens`, else `max_tokens` | `max_tokens` | default `messages::DEFAULT_MAX_TOKENS` (4096) when neither is given |
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

use super::anthropic;
use super::anthropic::messages;
use super::gemini;
use super::ir;
use super::openai::{self, chat};
use super::responses;
use super::{PayloadError, SseEvent, StreamAdapter, StreamContext, StreamFacts, StreamStep, Usage};

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
// streams: the upstream's events parsed into canonical deltas, the caller's
// emitted from them

/// Runs parsed deltas through an emitter into one step.
fn step_of(
    deltas: Vec<ir::Delta>,
    mut emit: impl FnMut(ir::Delta, &mut Vec<String>) -> Result<(), PayloadError>,
) -> Result<StreamStep, PayloadError> {
    let mut step = StreamStep::default();
    for d in deltas {
        step.content |= d.is_content();
        step.finished |= d == ir::Delta::Done;
        emit(d, &mut step.out)?;
    }
    Ok(step)
}

/// A stream parser: one upstream event -> canonical deltas.
pub trait ParseDeltas: Send {
    fn parse(&mut self, ev: &SseEvent) -> Result<Vec<ir::Delta>, PayloadError>;
}

/// A stream emitter: canonical deltas -> the caller's payloads.
pub trait EmitDeltas: Send {
    fn emit(&mut self, d: ir::Delta, out: &mut Vec<String>) -> Result<(), PayloadError>;
    /// See [`StreamAdapter::configure`].
    fn configure(&mut self, _request: &Map<String, Value>) {}
    /// See [`StreamAdapter::fail`].
    fn fail(&mut self, _message: &str) -> Vec<String> {
        Vec::new()
    }
    /// The id of the response the caller sees.
    fn response_id(&self) -> &str;
    /// A stop reason in the caller's protocol's words.
    fn finish_name(&self, r: ir::StopReason) -> &'static str;
}

impl ParseDeltas for openai::stream::ChunkParser {
    fn parse(&mut self, ev: &SseEvent) -> Result<Vec<ir::Delta>, PayloadError> {
        openai::stream::ChunkParser::parse(self, ev)
    }
}

impl ParseDeltas for anthropic::stream::EventParser {
    fn parse(&mut self, ev: &SseEvent) -> Result<Vec<ir::Delta>, PayloadError> {
        anthropic::stream::EventParser::parse(self, ev)
    }
}

impl ParseDeltas for responses::stream::EventParser {
    fn parse(&mut self, ev: &SseEvent) -> Result<Vec<ir::Delta>, PayloadError> {
        responses::stream::EventParser::parse(self, ev)
    }
}

impl ParseDeltas for gemini::stream::ChunkParser {
    fn parse(&mut self, ev: &SseEvent) -> Result<Vec<ir::Delta>, PayloadError> {
        gemini::stream::ChunkParser::parse(self, ev)
    }
}

impl EmitDeltas for openai::stream::ChunkEmitter {
    fn emit(&mut self, d: ir::Delta, out: &mut Vec<String>) -> Result<(), PayloadError> {
        openai::stream::ChunkEmitter::emit(self, d, out);
        Ok(())
    }

    fn response_id(&self) -> &str {
        openai::stream::ChunkEmitter::response_id(self)
    }

    fn finish_name(&self, r: ir::StopReason) -> &'static str {
        chat::finish_reason_name(r)
    }
}

impl EmitDeltas for anthropic::stream::EventEmitter {
    fn emit(&mut self, d: ir::Delta, out: &mut Vec<String>) -> Result<(), PayloadError> {
        anthropic::stream::EventEmitter::emit(self, d, out)
    }

    fn response_id(&self) -> &str {
        anthropic::stream::EventEmitter::response_id(self)
    }

    fn finish_name(&self, r: ir::StopReason) -> &'static str {
        messages::stop_reason_name(r)
    }
}

impl EmitDeltas for responses::stream::EventEmitter {
    fn emit(&mut self, d: ir::Delta, out: &mut Vec<String>) -> Result<(), PayloadError> {
        responses::stream::EventEmitter::emit(self, d, out)
    }

    fn configure(&mut self, request: &Map<String, Value>) {
        responses::stream::EventEmitter::configure(self, request);
    }

    fn fail(&mut self, message: &str) -> Vec<String> {
        responses::stream::EventEmitter::fail(self, message)
    }

    fn response_id(&self) -> &str {
        responses::stream::EventEmitter::response_id(self)
    }

    fn finish_name(&self, r: ir::StopReason) -> &'static str {
        responses::stream::EventEmitter::status_name(r)
    }
}

impl EmitDeltas for gemini::stream::ChunkEmitter {
    fn emit(&mut self, d: ir::Delta, out: &mut Vec<String>) -> Result<(), PayloadError> {
        gemini::stream::ChunkEmitter::emit(self, d, out)
    }

    fn response_id(&self) -> &str {
        gemini::stream::ChunkEmitter::response_id(self)
    }

    fn finish_name(&self, r: ir::StopReason) -> &'static str {
        gemini::response::finish_reason_name(r)
    }
}

/// Any upstream's events -> any caller's payloads, through canonical
/// deltas; usage is the last the upstream reported.
pub struct Translator<P, E> {
    parser: P,
    emitter: E,
    usage: Option<Usage>,
    /// The upstream's stop reason, once it came.
    finish: Option<ir::StopReason>,
    /// Whether thinking deltas reach the emitter (and count as content).
    thinking: bool,
}

impl<P: ParseDeltas, E: EmitDeltas> Translator<P, E> {
    pub fn new(parser: P, emitter: E) -> Self {
        Translator {
            parser,
            emitter,
            usage: None,
            finish: None,
            thinking: true,
        }
    }

    /// Drops thinking before the emitter: it is not even content.
    pub fn without_thinking(mut self) -> Self {
        self.thinking = false;
        self
    }
}

/// Anthropic stream events -> OpenAI `chat.completion.chunk` payloads.
pub type AnthropicToOpenAi =
    Translator<anthropic::stream::EventParser, openai::stream::ChunkEmitter>;

/// OpenAI `chat.completion.chunk`s -> Anthropic stream event payloads.
pub type OpenAiToAnthropic =
    Translator<openai::stream::ChunkParser, anthropic::stream::EventEmitter>;

/// The [`AnthropicToOpenAi`] adapter.
pub fn anthropic_to_openai(ctx: StreamContext) -> AnthropicToOpenAi {
    Translator::new(
        anthropic::stream::EventParser::default(),
        openai::stream::ChunkEmitter::new(ctx),
    )
}

/// The [`OpenAiToAnthropic`] adapter: `reasoning_content` is dropped (an
/// Anthropic thinking block needs a signature llmux cannot make).
pub fn openai_to_anthropic(ctx: StreamContext) -> OpenAiToAnthropic {
    Translator::new(
        openai::stream::ChunkParser::default(),
        anthropic::stream::EventEmitter::new(ctx),
    )
    .without_thinking()
}

impl<P: ParseDeltas, E: EmitDeltas> StreamAdapter for Translator<P, E> {
    fn on_event(&mut self, ev: &SseEvent) -> Result<StreamStep, PayloadError> {
        let mut deltas = self.parser.parse(ev)?;
        if !self.thinking {
            deltas.retain(|d| !matches!(d, ir::Delta::Thinking(_)));
        }
        step_of(deltas, |d, out| {
            match &d {
                ir::Delta::Usage(u) => self.usage = Some(*u),
                ir::Delta::Finish(r) => self.finish = Some(*r),
                _ => {}
            }
            self.emitter.emit(d, out)
        })
    }

    fn usage(&self) -> Option<Usage> {
        self.usage
    }

    fn configure(&mut self, request: &Map<String, Value>, _endpoint: &str) {
        self.emitter.configure(request);
    }

    fn fail(&mut self, message: &str) -> Vec<String> {
        self.emitter.fail(message)
    }

    fn facts(&self) -> StreamFacts {
        StreamFacts {
            id: Some(self.emitter.response_id().to_owned()),
            finish_reason: self.finish.map(|r| self.emitter.finish_name(r).to_owned()),
        }
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
