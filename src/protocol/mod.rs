//! Wire formats: SSE decoding, the OpenAI Chat Completions, Anthropic
//! Messages, OpenAI Responses and Google Gemini protocols, and the translation between them. Nothing here does I/O or reads a clock.
//!
//! The engine drives every upstream response through a [`StreamAdapter`]
//! (streaming) or [`ResponseAdapter`] (non-streaming) chosen by the pair
//! (upstream protocol, caller protocol). Adapters turn upstream payloads into
//! payloads in the caller's protocol and report what they saw: whether the
//! output carries content (the first token), whether the finish marker
//! arrived, and usage.

pub mod anthropic;
mod endpoint;
pub use endpoint::Auth;
pub mod gemini;
pub mod ir;
pub mod openai;
pub mod responses;
pub mod splice;
pub mod sse;
pub mod translate;
mod wire;

use serde_json::Value;

/// The chat protocols llmux speaks, on either side. In JSON (stats,
/// plans) by [`Protocol::as_str`]'s name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    OpenAi,
    Anthropic,
    /// OpenAI Responses (`POST /responses`).
    Responses,
    /// Google Gemini (`generateContent` / `streamGenerateContent`).
    Gemini,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::OpenAi => "openai",
            Protocol::Anthropic => "anthropic",
            Protocol::Responses => "responses",
            Protocol::Gemini => "gemini",
        }
    }
}

/// Token usage, normalised. `prompt_tokens` counts every prompt token,
/// including cached ones (OpenAI's convention); `cached_tokens` is the part
/// of it read from a prompt cache.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cached_tokens: u64,
}

/// One decoded server-sent event.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field, empty when absent.
    pub event: String,
    /// The `data:` lines joined with `\n`.
    pub data: String,
}

/// What an adapter made of one upstream event.
#[derive(Debug, Default)]
pub struct StreamStep {
    /// Payloads for the host, in the caller's protocol, serialised JSON,
    /// in order. May be empty (pings, usage-only chunks the caller did not
    /// ask for, events with no counterpart).
    pub out: Vec<String>,
    /// True when this step carried generated content (text, a tool call,
    /// thinking): the "first token" moment. A finish reason alone is not
    /// content; a stream that finishes without any is an empty completion.
    pub content: bool,
    /// True when the upstream's finish marker arrived (`[DONE]` after a
    /// finish reason, or `message_stop`). Nothing may follow.
    pub finished: bool,
}

/// Why an upstream stream or body could not be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PayloadError {
    /// Not valid JSON, or JSON of the wrong shape.
    Malformed(String),
    /// The upstream reported an error inside a 200 response or stream.
    Upstream(String),
}

impl PayloadError {
    /// The message without the category prefix.
    pub fn message(&self) -> &str {
        match self {
            PayloadError::Malformed(m) | PayloadError::Upstream(m) => m,
        }
    }
}

impl std::fmt::Display for PayloadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PayloadError::Malformed(m) => write!(f, "malformed upstream payload: {m}"),
            PayloadError::Upstream(m) => write!(f, "upstream reported an error: {m}"),
        }
    }
}

/// Turns an upstream event stream into the caller's protocol.
pub trait StreamAdapter: Send {
    /// Feed one decoded SSE event from the upstream.
    fn on_event(&mut self, ev: &SseEvent) -> Result<StreamStep, PayloadError>;
    /// The same, for an event the caller no longer needs: an adapter that
    /// forwards events unchanged moves the data instead of copying it.
    fn on_owned(&mut self, ev: SseEvent) -> Result<StreamStep, PayloadError> {
        self.on_event(&ev)
    }
    /// Usage seen so far (cumulative).
    fn usage(&self) -> Option<Usage>;
    /// Hands the adapter the request body sent upstream's origin: the
    /// caller's body and the id of the endpoint serving it. Adapters that
    /// echo request fields or name their endpoint use it; called once,
    /// before the first event.
    fn configure(&mut self, _request: &serde_json::Map<String, Value>, _endpoint: &str) {}
    /// The payloads that close the caller's stream when it breaks after its
    /// first token (Responses: `response.failed`); the terminal error event
    /// follows them.
    fn fail(&mut self, _message: &str) -> Vec<String> {
        Vec::new()
    }
    /// The response's id as the caller sees it and its finish reason in the
    /// caller's protocol's words, once the stream carried them (for the
    /// trace: read once at the end; adapters note them when the events that
    /// carry them pass, not per chunk).
    fn facts(&self) -> StreamFacts {
        StreamFacts::default()
    }
}

/// A stream's response id and finish reason ([`StreamAdapter::facts`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StreamFacts {
    pub id: Option<String>,
    pub finish_reason: Option<String>,
}

/// What a non-streaming upstream body became.
#[derive(Debug)]
pub struct Converted {
    /// The response body in the caller's protocol, serialised JSON.
    pub body: String,
    pub usage: Option<Usage>,
}

/// Converts one non-streaming upstream body to the caller's protocol.
/// `created` (Unix seconds) becomes the `created` field of a translated
/// OpenAI response.
pub fn convert_response(
    upstream: Protocol,
    caller: Protocol,
    body: &[u8],
    created: u64,
) -> Result<Converted, PayloadError> {
    convert_response_for(upstream, caller, body, created, &serde_json::Map::new(), "")
}

/// [`convert_response`] knowing the caller's request body and the id of
/// the endpoint that answered (Responses echoes request fields and tags
/// response ids with their endpoint).
pub fn convert_response_for(
    upstream: Protocol,
    caller: Protocol,
    body: &[u8],
    created: u64,
    request: &serde_json::Map<String, Value>,
    endpoint: &str,
) -> Result<Converted, PayloadError> {
    use Protocol::{Anthropic, Gemini, OpenAi, Responses};
    let text = std::str::from_utf8(body)
        .map_err(|_| PayloadError::Malformed("response body is not UTF-8".into()))?;
    let mut openai_usage = None;
    if upstream == OpenAi {
        // Checked without building a JSON tree; passed through as is.
        openai_usage = openai::check_response(text)?;
        if caller == OpenAi {
            return Ok(Converted {
                body: text.to_owned(),
                usage: openai_usage,
            });
        }
    }
    let mut value: Value = serde_json::from_str(text)
        .map_err(|e| PayloadError::Malformed(format!("response body is not JSON: {e}")))?;
    let usage = match upstream {
        OpenAi => openai_usage,
        Anthropic => anthropic::check_response(&value)?,
        // Only a Responses caller sees (and may send back) the id.
        Responses => {
            responses::check_response(&mut value, if caller == Responses { endpoint } else { "" })?
        }
        Gemini => gemini::check_response(&value)?,
    };
    let body = match translate_response(upstream, caller, value, created, request)? {
        Some(out) => out.to_string(),
        None => text.to_owned(),
    };
    Ok(Converted { body, usage })
}

/// The checked upstream body `value` in the caller's protocol; `None` when
/// the protocols are the same and the upstream's text passes as it is.
fn translate_response(
    upstream: Protocol,
    caller: Protocol,
    value: Value,
    created: u64,
    request: &serde_json::Map<String, Value>,
) -> Result<Option<Value>, PayloadError> {
    use anthropic::messages as anth;
    use openai::chat;
    use Protocol::{Anthropic, Gemini, OpenAi, Responses};
    let out = match (upstream, caller) {
        (OpenAi, OpenAi) | (Anthropic, Anthropic) | (Gemini, Gemini) => return Ok(None),
        (Responses, Responses) => value,
        (Anthropic, OpenAi) => chat::emit_response(&anth::parse_response(&value)?, created)?,
        (OpenAi, Anthropic) => anth::emit_response(&chat::parse_response(&value)?)?,
        (OpenAi, Responses) => {
            responses::emit_response(&chat::parse_response(&value)?, request, created)?
        }
        (Anthropic, Responses) => {
            responses::emit_response(&anth::parse_response(&value)?, request, created)?
        }
        (Responses, OpenAi) => {
            let (r, at) = responses::parse_response(&value)?;
            chat::emit_response(&r, at.unwrap_or(created))?
        }
        // Thinking reaches an Anthropic caller only under Anthropic's own
        // signature (see `ir::Signature`).
        (Responses, Anthropic) => anth::emit_response(&responses::parse_response(&value)?.0)?,
        (Gemini, OpenAi) => chat::emit_response(&gemini::parse_response(&value)?, created)?,
        (Gemini, Anthropic) => anth::emit_response(&gemini::parse_response(&value)?)?,
        (Gemini, Responses) => {
            responses::emit_response(&gemini::parse_response(&value)?, request, created)?
        }
        (OpenAi, Gemini) => gemini::emit_response(&chat::parse_response(&value)?)?,
        (Anthropic, Gemini) => gemini::emit_response(&anth::parse_response(&value)?)?,
        (Responses, Gemini) => gemini::emit_response(&responses::parse_response(&value)?.0)?,
    };
    Ok(Some(out))
}

/// Context a stream adapter needs about the caller's request.
#[derive(Clone, Debug)]
pub struct StreamContext {
    /// The model name to show the caller (the slug they asked for).
    pub model: String,
    /// Whether the caller asked for usage in the stream
    /// (OpenAI `stream_options.include_usage`). Anthropic callers always get it.
    pub include_usage: bool,
    /// Unix seconds, for the OpenAI `created` field of translated chunks.
    pub created: u64,
    /// An id for translated messages/chunks.
    pub id: String,
    /// Estimated prompt tokens, for `message_start.usage.input_tokens` when
    /// an Anthropic caller is served by an OpenAI endpoint (the real count
    /// only arrives at the end, in `message_delta`).
    pub input_tokens_estimate: u64,
}

/// Builds the adapter for a (upstream, caller) protocol pair.
pub fn stream_adapter(
    upstream: Protocol,
    caller: Protocol,
    ctx: StreamContext,
) -> Box<dyn StreamAdapter> {
    use openai::stream::{ChunkEmitter, ChunkParser};
    use translate::Translator;
    use Protocol::{Anthropic, Gemini, OpenAi, Responses};
    let anthropic_parser = anthropic::stream::EventParser::default;
    let responses_parser = responses::stream::EventParser::default;
    let gemini_parser = gemini::stream::ChunkParser::default;
    let gemini_emitter = gemini::stream::ChunkEmitter::new;
    match (upstream, caller) {
        (OpenAi, OpenAi) => Box::new(openai::Passthrough::new(ctx)),
        (Anthropic, Anthropic) => Box::new(anthropic::Passthrough::new(ctx)),
        (Responses, Responses) => Box::new(responses::Passthrough::new(ctx)),
        (Gemini, Gemini) => Box::new(gemini::stream::Passthrough::default()),
        (Anthropic, OpenAi) => Box::new(translate::anthropic_to_openai(ctx)),
        (OpenAi, Anthropic) => Box::new(translate::openai_to_anthropic(ctx)),
        (OpenAi, Responses) => Box::new(Translator::new(
            ChunkParser::default(),
            responses::stream::EventEmitter::new(ctx),
        )),
        (Anthropic, Responses) => Box::new(Translator::new(
            anthropic_parser(),
            responses::stream::EventEmitter::new(ctx),
        )),
        (Responses, OpenAi) => {
            Box::new(Translator::new(responses_parser(), ChunkEmitter::new(ctx)))
        }
        (Responses, Anthropic) => Box::new(Translator::new(
            responses_parser(),
            anthropic::stream::EventEmitter::new(ctx),
        )),
        (Gemini, OpenAi) => Box::new(Translator::new(gemini_parser(), ChunkEmitter::new(ctx))),
        (Gemini, Anthropic) => Box::new(Translator::new(
            gemini_parser(),
            anthropic::stream::EventEmitter::new(ctx),
        )),
        (Gemini, Responses) => Box::new(Translator::new(
            gemini_parser(),
            responses::stream::EventEmitter::new(ctx),
        )),
        (OpenAi, Gemini) => Box::new(Translator::new(ChunkParser::default(), gemini_emitter(ctx))),
        (Anthropic, Gemini) => Box::new(Translator::new(anthropic_parser(), gemini_emitter(ctx))),
        (Responses, Gemini) => Box::new(Translator::new(responses_parser(), gemini_emitter(ctx))),
    }
}

/// Builds the upstream request body from the caller's body (already stripped
/// of llmux-only fields). `upstream_model` replaces `model`.
pub fn upstream_request(
    upstream: Protocol,
    caller: Protocol,
    body: &serde_json::Map<String, Value>,
    upstream_model: &str,
    stream: bool,
) -> Result<Value, PayloadError> {
    use anthropic::messages as anth;
    use openai::chat;
    use Protocol::{Anthropic, Gemini, OpenAi, Responses};
    let emitted = match (caller, upstream) {
        (OpenAi, OpenAi) | (Anthropic, Anthropic) => Value::Object(body.clone()),
        (Responses, Responses) => Value::Object(responses::passthrough_request(body)),
        (Gemini, Gemini) => Value::Object(gemini::passthrough_request(body)),
        (OpenAi, Anthropic) => {
            anthropic::messages::emit_request(&openai::chat::parse_request(body)?)?
        }
        (OpenAi, Responses) => responses::emit_request(&openai::chat::parse_request(body)?)?,
        (Anthropic, OpenAi) => {
            openai::chat::emit_request(&anthropic::messages::parse_request(body)?)?
        }
        (Anthropic, Responses) => {
            responses::emit_request(&anthropic::messages::parse_request(body)?)?
        }
        (Responses, OpenAi) => openai::chat::emit_request(&responses::parse_request(body)?)?,
        (Responses, Anthropic) => {
            anthropic::messages::emit_request(&responses::parse_request(body)?)?
        }
        (Gemini, OpenAi) => chat::emit_request(&gemini::parse_request(body)?)?,
        (Gemini, Anthropic) => anth::emit_request(&gemini::parse_request(body)?)?,
        (Gemini, Responses) => responses::emit_request(&gemini::parse_request(body)?)?,
        (OpenAi, Gemini) => gemini::emit_request(&chat::parse_request(body)?)?,
        (Anthropic, Gemini) => gemini::emit_request(&anth::parse_request(body)?)?,
        (Responses, Gemini) => gemini::emit_request(&responses::parse_request(body)?)?,
    };
    let Value::Object(mut out) = emitted else {
        return Err(PayloadError::Malformed(
            "translation produced a non-object".into(),
        ));
    };
    if upstream == Gemini {
        // A Gemini upstream's URL carries the model and the stream flag.
        return Ok(Value::Object(out));
    }
    out.insert("model".into(), Value::String(upstream_model.to_owned()));
    if stream {
        out.insert("stream".into(), Value::Bool(true));
        if upstream == Protocol::OpenAi {
            // Ask for usage so cost can be computed; keep other stream options.
            let opts = out
                .entry("stream_options")
                .or_insert_with(|| Value::Object(Default::default()));
            if let Value::Object(o) = opts {
                o.insert("include_usage".into(), Value::Bool(true));
            } else {
                *opts = serde_json::json!({ "include_usage": true });
            }
        }
    }
    Ok(Value::Object(out))
}

/// The body bytes to send: for an endpoint of the caller's own protocol
/// (Responses aside, whose ids are rewritten) a splice of the caller's
/// bytes ([`splice::Body::splice`]), else [`upstream_request`] over the
/// body's tree, serialised.
pub fn upstream_request_bytes(
    upstream: Protocol,
    caller: Protocol,
    body: &splice::Body,
    upstream_model: &str,
    stream: bool,
) -> Result<Vec<u8>, PayloadError> {
    let same = upstream == caller && !matches!(upstream, Protocol::Responses | Protocol::Gemini);
    if same {
        let ask_usage = stream && upstream == Protocol::OpenAi;
        return Ok(body.splice(upstream_model, stream, ask_usage));
    }
    let tree = upstream_request(upstream, caller, body.tree(), upstream_model, stream)?;
    serde_json::to_vec(&tree).map_err(|e| PayloadError::Malformed(e.to_string()))
}

/// An error body in the caller's protocol.
pub fn error_body(caller: Protocol, status: u16, kind: &str, message: &str) -> Value {
    match caller {
        Protocol::OpenAi => openai::error_body(status, kind, message),
        Protocol::Anthropic => anthropic::error_body(status, kind, message),
        Protocol::Responses => responses::error_body(status, kind, message),
        Protocol::Gemini => gemini::error_body(status, kind, message),
    }
}

#[cfg(test)]
mod facts_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn patched_bytes_equal_the_value_path() {
        let body = json!({
            "model": "x", "stream": false, "temperature": 0.5,
            "stream_options": {"continuous_usage_stats": true},
            "messages": [{"role": "user", "content": "hi"}],
        });
        let Value::Object(m) = body else {
            unreachable!()
        };
        for (up, caller) in [
            (Protocol::OpenAi, Protocol::OpenAi),
            (Protocol::Anthropic, Protocol::Anthropic),
            (Protocol::Anthropic, Protocol::OpenAi),
        ] {
            for stream in [true, false] {
                let body = splice::Body::from_map(&m);
                let bytes = upstream_request_bytes(up, caller, &body, "up-1", stream).unwrap();
                let got: Value = serde_json::from_slice(&bytes).unwrap();
                let want = upstream_request(up, caller, &m, "up-1", stream).unwrap();
                assert_eq!(got, want, "{up:?} <- {caller:?} stream={stream}");
            }
        }
    }
}
