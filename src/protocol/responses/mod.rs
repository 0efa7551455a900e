//! The OpenAI Responses protocol (`POST /responses`): usage, response
//! checks, error bodies, response ids that name their endpoint, namespaced
//! tools, the same-protocol request and the pass-through stream adapter
//! (Responses upstream, Responses caller). The typed wire models and their
//! translation through the conversation model ([`super::ir`]) are in
//! [`request`], [`response`] and [`stream`]; what is dropped or refused is
//! [`request::DROPPED`] / [`request::REFUSED`].
//!
//! ## Response ids name their endpoint
//!
//! llmux keeps no conversation state, yet `previous_response_id` must reach
//! the endpoint that created that response. So the `id` of every response a
//! Responses endpoint produced is handed to the caller with a suffix naming
//! the endpoint (`<upstream id>` + [`ID_TAG`] + hex of the endpoint id); a
//! request's `previous_response_id` is routed by that suffix and sent
//! upstream without it. Ids of responses translated from Chat Completions
//! or Anthropic endpoints carry no suffix: nothing stored them.

pub mod request;
pub mod response;
pub mod stream;

pub use request::{emit_request, parse_request};
pub use response::{emit_response, parse_response};

use super::ir::{Issuer, Signature};
use super::{PayloadError, SseEvent, StreamAdapter, StreamContext, StreamFacts, StreamStep, Usage};
use serde_json::{json, Map, Value};

/// What llmux appends to a Responses provider's base URL.
pub const PATH: &str = "/responses";

/// Marks a reasoning item's `encrypted_content` as an Anthropic thinking
/// signature llmux put there, so the thinking block can be rebuilt when the
/// caller sends the item back (Anthropic needs the thinking blocks of a tool
/// loop returned with their signatures).
pub const THINKING_PREFIX: &str = "llmux-anthropic-thinking:";

/// The same for a Gemini thought signature: the prefix names the issuer, so
/// the signature goes back to its own family only (see [`super::ir::Signature`]).
pub const GEMINI_THINKING_PREFIX: &str = "llmux-gemini-thinking:";

fn signature_prefix(issuer: Issuer) -> &'static str {
    match issuer {
        Issuer::Anthropic => THINKING_PREFIX,
        Issuer::Gemini => GEMINI_THINKING_PREFIX,
    }
}

/// A signature as llmux keeps it in a reasoning item's `encrypted_content`.
fn encrypted_content(s: &Signature) -> String {
    format!("{}{}", signature_prefix(s.issuer), s.value)
}

fn holds_signature(item: &Value) -> bool {
    let content = item.get("encrypted_content").and_then(Value::as_str);
    item.get("type") == Some(&json!("reasoning")) && content.and_then(signature_in).is_some()
}

/// The signature llmux put in `encrypted_content`, with its issuer; `None`
/// for anything else (an OpenAI endpoint's own encrypted reasoning).
fn signature_in(encrypted: &str) -> Option<Signature> {
    [Issuer::Anthropic, Issuer::Gemini]
        .into_iter()
        .find_map(|i| {
            let value = encrypted.strip_prefix(signature_prefix(i))?;
            Some(Signature::new(i, value))
        })
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
    /// Reads the `namespace` tools of a Responses request (none when its
    /// tools do not parse).
    pub fn of(request: &Map<String, Value>) -> Namespaces {
        request::namespaces(request)
    }

    /// (namespace, name) of a flattened name, if it is one.
    pub fn restore(&self, flat: &str) -> Option<(&str, &str)> {
        self.names
            .iter()
            .find(|(f, _, _)| f == flat)
            .map(|(_, ns, n)| (ns.as_str(), n.as_str()))
    }
}

/// The upstream body for a Responses caller on a Responses endpoint: the
/// caller's, with `store: false` when absent (OpenAI's default is true and
/// llmux keeps no state), `previous_response_id` without llmux's tag, and
/// without the reasoning items holding another family's signature (see
/// [`THINKING_PREFIX`]: an OpenAI endpoint cannot read them).
pub fn passthrough_request(body: &Map<String, Value>) -> Map<String, Value> {
    let mut out = body.clone();
    out.entry("store").or_insert(json!(false));
    if let Some(Value::Array(items)) = out.get_mut("input") {
        items.retain(|it| !holds_signature(it));
    }
    if let Some(Value::String(id)) = out.get_mut("previous_response_id") {
        if let Some((raw, _)) = untag_id(id) {
            *id = raw.to_owned();
        }
    }
    out
}

/// Separates an upstream response id from the hex of its endpoint id.
pub const ID_TAG: &str = "~lx";

/// `id` with the endpoint it came from appended (see the module docs).
pub fn tag_id(id: &str, endpoint: &str) -> String {
    if endpoint.is_empty() {
        return id.to_owned();
    }
    let hex: String = endpoint.bytes().map(|b| format!("{b:02x}")).collect();
    format!("{id}{ID_TAG}{hex}")
}

/// Splits a tagged id into (upstream id, endpoint id); `None` when it
/// carries no valid tag.
pub fn untag_id(id: &str) -> Option<(&str, String)> {
    let (raw, hex) = id.rsplit_once(ID_TAG)?;
    if hex.is_empty() || hex.len() % 2 != 0 {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect();
    Some((raw, String::from_utf8(bytes?).ok()?))
}

/// Reads a Responses `usage` object into llmux's usage
/// (`input_tokens` already includes the cached ones).
pub fn parse_usage(v: &Value) -> Option<Usage> {
    let names = ["input_tokens", "output_tokens", "input_tokens_details"];
    super::wire::read_usage(v, names)
}

/// A Responses `usage` object with every field the SDK's `ResponseUsage`
/// requires.
#[derive(serde::Serialize, Clone, Debug)]
pub struct UsageOut {
    input_tokens: u64,
    input_tokens_details: InputDetails,
    output_tokens: u64,
    output_tokens_details: OutputDetails,
    total_tokens: u64,
}

#[derive(serde::Serialize, Clone, Debug)]
struct InputDetails {
    cached_tokens: u64,
    cache_write_tokens: u64,
}

#[derive(serde::Serialize, Clone, Debug)]
struct OutputDetails {
    reasoning_tokens: u64,
}

impl UsageOut {
    pub fn new(u: Usage, reasoning_tokens: u64) -> UsageOut {
        UsageOut {
            input_tokens: u.prompt_tokens,
            input_tokens_details: InputDetails {
                cached_tokens: u.cached_tokens,
                cache_write_tokens: 0,
            },
            output_tokens: u.completion_tokens,
            output_tokens_details: OutputDetails { reasoning_tokens },
            total_tokens: u.prompt_tokens.saturating_add(u.completion_tokens),
        }
    }
}

/// The message of a Responses error (`{"error": {...}}`, or a failed
/// response's `error`).
fn error_text(e: &Value) -> String {
    let msg = e.get("message").and_then(Value::as_str);
    match (e.get("code").and_then(Value::as_str), msg) {
        (Some(c), Some(m)) => format!("{c}: {m}"),
        (None, Some(m)) => m.to_owned(),
        _ => e.to_string(),
    }
}

/// Whether an output item carries generated content.
fn item_carries(item: &Value) -> bool {
    match item.get("type").and_then(Value::as_str) {
        Some("message") => item
            .get("content")
            .and_then(Value::as_array)
            .is_some_and(|parts| {
                parts.iter().any(|p| {
                    ["text", "refusal"].iter().any(|k| {
                        p.get(*k)
                            .and_then(Value::as_str)
                            .is_some_and(|t| !t.is_empty())
                    })
                })
            }),
        Some("reasoning") => false,
        Some(_) => true,
        None => false,
    }
}

/// Checks a non-streaming Responses body and tags its id with `origin`.
/// Errors: an `error`, status `failed`, no `output`, nothing generated.
pub fn check_response(v: &mut Value, origin: &str) -> Result<Option<Usage>, PayloadError> {
    let Some(o) = v.as_object_mut() else {
        return Err(PayloadError::Malformed(
            "response body is not a JSON object".into(),
        ));
    };
    if let Some(e) = o.get("error").filter(|e| !e.is_null()) {
        return Err(PayloadError::Upstream(error_text(e)));
    }
    if o.get("status").and_then(Value::as_str) == Some("failed") {
        return Err(PayloadError::Upstream("the response failed".into()));
    }
    let output = o
        .get("output")
        .and_then(Value::as_array)
        .ok_or_else(|| PayloadError::Malformed("response has no `output` array".into()))?;
    if !output.iter().any(item_carries) {
        return Err(PayloadError::Upstream(
            "empty response: no text and no tool calls".into(),
        ));
    }
    if let Some(Value::String(id)) = o.get_mut("id") {
        *id = tag_id(id, origin);
    }
    Ok(o.get("usage").and_then(parse_usage))
}

/// A Responses error body: the same shape as OpenAI's.
pub fn error_body(status: u16, kind: &str, message: &str) -> Value {
    super::openai::error_body(status, kind, message)
}

/// The `response.failed` event that ends a stream cut after its first
/// token: the SDK's `ResponseFailedEvent`, with `sequence_number` `seq`.
pub fn failed_event(response: &Map<String, Value>, seq: u64, message: &str) -> String {
    let mut r = response.clone();
    r.insert("status".into(), json!("failed"));
    r.insert(
        "error".into(),
        json!({ "code": "server_error", "message": message }),
    );
    json!({ "type": "response.failed", "sequence_number": seq, "response": r }).to_string()
}

/// Responses upstream -> Responses caller: forwards every event, tagging
/// the response id of lifecycle events, and reads what routing needs.
pub struct Passthrough {
    origin: String,
    usage: Option<Usage>,
    /// The latest lifecycle snapshot (`response.created` / `in_progress`).
    response: Map<String, Value>,
    next_seq: u64,
    /// The final response's id and status.
    facts: StreamFacts,
}

impl Passthrough {
    pub fn new(ctx: StreamContext) -> Self {
        let mut response = Map::new();
        response.insert("id".into(), json!(format!("resp_{}", ctx.id)));
        response.insert("object".into(), json!("response"));
        response.insert("created_at".into(), json!(ctx.created));
        response.insert("model".into(), json!(ctx.model));
        response.insert("output".into(), json!([]));
        response.insert("parallel_tool_calls".into(), json!(true));
        response.insert("tool_choice".into(), json!("auto"));
        response.insert("tools".into(), json!([]));
        Passthrough {
            origin: String::new(),
            usage: None,
            response,
            next_seq: 0,
            facts: StreamFacts::default(),
        }
    }
}

/// Parses a Responses stream event: (its type, its data).
pub(crate) fn parse_event(ev: &SseEvent) -> Result<(String, Map<String, Value>), PayloadError> {
    let data = super::wire::json_object(&ev.data, "stream event data")?;
    let name = match data.get("type").and_then(Value::as_str) {
        Some(t) => t.to_owned(),
        None => ev.event.clone(),
    };
    Ok((name, data))
}

/// The error a `response.failed` or `error` event stands for.
pub(crate) fn stream_error(name: &str, data: &Map<String, Value>) -> PayloadError {
    let e = if name == "error" {
        data.get("error")
            .cloned()
            .unwrap_or_else(|| Value::Object(data.clone()))
    } else {
        data.get("response")
            .and_then(|r| r.get("error"))
            .cloned()
            .unwrap_or(json!({ "message": "the response failed" }))
    };
    PayloadError::Upstream(error_text(&e))
}

/// Whether a stream event carries generated content (the first token).
pub(crate) fn event_carries(name: &str, data: &Map<String, Value>) -> bool {
    match name {
        "response.output_text.delta"
        | "response.refusal.delta"
        | "response.function_call_arguments.delta"
        | "response.custom_tool_call_input.delta"
        | "response.reasoning_text.delta"
        | "response.reasoning_summary_text.delta" => data
            .get("delta")
            .and_then(Value::as_str)
            .is_some_and(|d| !d.is_empty()),
        "response.output_item.added" | "response.output_item.done" => {
            data.get("item").is_some_and(item_carries)
        }
        _ => false,
    }
}

impl StreamAdapter for Passthrough {
    fn on_event(&mut self, ev: &SseEvent) -> Result<StreamStep, PayloadError> {
        let (name, mut data) = parse_event(ev)?;
        if matches!(name.as_str(), "error" | "response.failed") {
            return Err(stream_error(&name, &data));
        }
        if let Some(n) = data.get("sequence_number").and_then(Value::as_u64) {
            self.next_seq = self.next_seq.max(n.saturating_add(1));
        }
        let mut step = StreamStep {
            content: event_carries(&name, &data),
            ..Default::default()
        };
        let Some(Value::Object(r)) = data.get_mut("response") else {
            step.out.push(ev.data.clone());
            return Ok(step);
        };
        if let Some(Value::String(id)) = r.get_mut("id") {
            *id = tag_id(id, &self.origin);
        }
        match name.as_str() {
            "response.completed" | "response.incomplete" => {
                self.usage = r.get("usage").and_then(parse_usage);
                let text = |k: &str| r.get(k).and_then(Value::as_str).map(str::to_owned);
                self.facts = StreamFacts {
                    id: text("id"),
                    finish_reason: text("status"),
                };
                step.finished = true;
            }
            _ => self.response = r.clone(),
        }
        step.out.push(Value::Object(data).to_string());
        Ok(step)
    }

    fn usage(&self) -> Option<Usage> {
        self.usage
    }

    fn configure(&mut self, _request: &Map<String, Value>, origin: &str) {
        self.origin = origin.to_owned();
    }

    fn facts(&self) -> StreamFacts {
        self.facts.clone()
    }

    fn fail(&mut self, message: &str) -> Vec<String> {
        let seq = self.next_seq;
        self.next_seq += 1;
        vec![failed_event(&self.response, seq, message)]
    }
}

#[cfg(test)]
mod tests;
