//! The Anthropic Messages protocol: checking non-streaming bodies, passing
//! streams through while tracking usage, and error bodies.
//!
//! Usage convention: llmux's [`Usage::prompt_tokens`] counts every prompt
//! token, cached or not. Anthropic reports the three parts separately, so
//! `prompt_tokens = input_tokens + cache_read_input_tokens +
//! cache_creation_input_tokens`, `cached_tokens = cache_read_input_tokens`
//! and `completion_tokens = output_tokens`.
//!
//! Error types by HTTP status ([`error_type_for_status`]):
//!
//! | status | `error.type` |
//! | --- | --- |
//! | 400, 409, 422 and other 4xx not listed | `invalid_request_error` |
//! | 401 | `authentication_error` |
//! | 402 | `billing_error` |
//! | 403 | `permission_error` |
//! | 404 | `not_found_error` |
//! | 408, 504 | `timeout_error` |
//! | 413 | `request_too_large` |
//! | 429 | `rate_limit_error` |
//! | 529 | `overloaded_error` |
//! | 500 and every other status | `api_error` |
//!
//! [`error_body`] takes the type from the status when it is one Anthropic
//! documents (400-404, 408, 413, 429, 500, 504, 529), else from llmux's
//! error kind when it is one of these, else from the status:
//!
//! | kind | `error.type` |
//! | --- | --- |
//! | `timeout`, `idle_timeout`, `first_token_timeout`, `total_timeout` | `timeout_error` |
//! | `rate_limit`, `rate_limited` | `rate_limit_error` |
//! | `overloaded` | `overloaded_error` |
//! | `invalid_request`, `bad_request`, `invalid_json`, `invalid_argument`, `unsupported`, `translation_error` | `invalid_request_error` |
//! | `authentication`, `unauthorized` | `authentication_error` |
//! | `permission`, `forbidden` | `permission_error` |
//! | `not_found`, `unknown_model`, `model_not_found` | `not_found_error` |
//! | `request_too_large` | `request_too_large` |
//! | `cancelled`, `canceled` | `api_error` (Anthropic has no cancellation type; the terminal event's `error_kind` is `cancelled`) |
//! | an Anthropic type name itself (e.g. `api_error`) | that type |
//! | anything else (`upstream_error`, `connect_error`, `truncated_stream`, ...) | by status: other 4xx `invalid_request_error`, else `api_error` |

pub mod messages;
pub mod stream;

/// What llmux appends to a Messages provider's base URL.
pub const PATH: &str = "/v1/messages";
/// The header that carries an Anthropic key.
pub const AUTH_HEADER: &str = "x-api-key";
/// The API version header, and the version sent when the config names none.
pub const VERSION_HEADER: &str = "anthropic-version";
pub const DEFAULT_VERSION: &str = "2023-06-01";
/// The header listing beta features.
pub const BETA_HEADER: &str = "anthropic-beta";

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};
use std::borrow::Cow;

use super::{PayloadError, SseEvent, StreamAdapter, StreamContext, StreamFacts, StreamStep, Usage};

/// The Anthropic `error.type` for an HTTP status (see the module table).
pub fn error_type_for_status(status: u16) -> &'static str {
    match status {
        400 | 409 | 422 => "invalid_request_error",
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        408 | 504 => "timeout_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        529 => "overloaded_error",
        405..=499 => "invalid_request_error",
        _ => "api_error",
    }
}

/// The Anthropic `error.type` for one of llmux's own error kinds (see the
/// module table); `api_error` for kinds it does not know.
pub fn error_type_for_kind(kind: &str) -> &'static str {
    known_kind_type(kind).unwrap_or("api_error")
}

fn known_kind_type(kind: &str) -> Option<&'static str> {
    Some(match kind {
        "timeout" | "idle_timeout" | "first_token_timeout" | "total_timeout" | "timeout_error" => {
            "timeout_error"
        }
        "rate_limit" | "rate_limited" | "rate_limit_error" => "rate_limit_error",
        "overloaded" | "overloaded_error" => "overloaded_error",
        "invalid_request"
        | "bad_request"
        | "invalid_json"
        | "invalid_argument"
        | "unsupported"
        | "translation_error"
        | "invalid_request_error" => "invalid_request_error",
        "authentication" | "unauthorized" | "authentication_error" => "authentication_error",
        "permission" | "forbidden" | "permission_error" => "permission_error",
        "not_found" | "unknown_model" | "model_not_found" | "not_found_error" => "not_found_error",
        "request_too_large" => "request_too_large",
        "billing_error" => "billing_error",
        "api_error" => "api_error",
        // Not an Anthropic type: the SDK knows `api_error`; the terminal
        // event's `error_kind` says "cancelled" beside it.
        "cancelled" | "canceled" => "api_error",
        _ => return None,
    })
}

/// An Anthropic error body: `{"type":"error","error":{"type","message"}}`.
///
/// The type is chosen in this order: a status Anthropic itself documents
/// (400, 401, 402, 403, 404, 408, 413, 429, 500, 504, 529) gives its type;
/// else a kind from the module table gives its type (so a cancellation
/// reported as 499 is `api_error`, not `invalid_request_error`); else any other 4xx is
/// `invalid_request_error` and anything else `api_error`.
pub fn error_body(status: u16, kind: &str, message: &str) -> Value {
    let documented = matches!(status, 400..=404 | 408 | 413 | 429 | 500 | 504 | 529);
    let ty = if documented {
        error_type_for_status(status)
    } else if let Some(t) = known_kind_type(kind) {
        t
    } else {
        error_type_for_status(status)
    };
    json!({ "type": "error", "error": { "type": ty, "message": message } })
}

/// The message of an Anthropic error body (`error.message`). Also accepts an
/// `error` that is a bare string and a top-level `message`.
pub fn error_message(v: &Value) -> Option<String> {
    match v.get("error") {
        Some(Value::Object(e)) => {
            if let Some(Value::String(m)) = e.get("message") {
                return Some(m.clone());
            }
        }
        Some(Value::String(m)) => return Some(m.clone()),
        _ => {}
    }
    match v.get("message") {
        Some(Value::String(m)) => Some(m.clone()),
        _ => None,
    }
}

/// The `error.type` of an Anthropic error body, if any.
pub(crate) fn error_type(v: &Value) -> Option<&str> {
    v.get("error")
        .and_then(|e| e.get("type"))
        .and_then(Value::as_str)
}

/// Checks a non-streaming Messages response and returns its usage.
/// `type: "error"` is an upstream error; anything but `type: "message"` with
/// a `content` array is malformed.
pub fn check_response(v: &Value) -> Result<Option<Usage>, PayloadError> {
    let obj = super::wire::object(v, "response body")?;
    match obj.get("type").and_then(Value::as_str) {
        Some("error") => Err(PayloadError::Upstream(
            error_message(v).unwrap_or_else(|| "unspecified error".into()),
        )),
        Some("message") => {
            let Some(Value::Array(blocks)) = obj.get("content") else {
                return Err(PayloadError::Malformed(
                    "message has no `content` array".into(),
                ));
            };
            let generated = blocks
                .iter()
                .any(|b| match b.get("type").and_then(Value::as_str) {
                    Some("text") => b
                        .get("text")
                        .and_then(Value::as_str)
                        .is_some_and(|t| !t.is_empty()),
                    _ => true,
                });
            if !generated {
                return Err(PayloadError::Upstream(
                    "empty completion: no content blocks".into(),
                ));
            }
            let mut acc = UsageAcc::default();
            if let Some(u) = obj.get("usage") {
                acc.update(u);
            }
            Ok(acc.get())
        }
        _ => Err(PayloadError::Malformed(
            "response is not a `type: \"message\"` object".into(),
        )),
    }
}

/// Accumulates Anthropic usage objects (`message_start.message.usage`, then
/// the cumulative `message_delta.usage`). A field present in a later object
/// replaces the earlier value.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct UsageAcc {
    seen: bool,
    input: u64,
    cache_read: u64,
    cache_creation: u64,
    output: u64,
}

impl UsageAcc {
    /// Takes the token counts present in `u` (ignored unless an object).
    pub(crate) fn update(&mut self, u: &Value) {
        let Some(u) = u.as_object() else { return };
        self.seen = true;
        let take = |key: &str, slot: &mut u64| {
            if let Some(n) = u.get(key).and_then(Value::as_u64) {
                *slot = n;
            }
        };
        take("input_tokens", &mut self.input);
        take("cache_read_input_tokens", &mut self.cache_read);
        take("cache_creation_input_tokens", &mut self.cache_creation);
        take("output_tokens", &mut self.output);
    }

    /// [`UsageAcc::update`] from a raw usage value (ignored unless an
    /// object); `None` when it is an object this cannot read plainly (a
    /// repeated field).
    fn update_raw(&mut self, u: Option<&RawValue>) -> Option<()> {
        let Some(u) = u.filter(|u| is_object(u)) else {
            return Some(());
        };
        let u: LiteUsage = serde_json::from_str(u.get()).ok()?;
        self.seen = true;
        let take = |r: Option<&RawValue>, slot: &mut u64| {
            if let Some(n) = r.and_then(|r| r.get().parse().ok()) {
                *slot = n;
            }
        };
        take(u.input_tokens, &mut self.input);
        take(u.cache_read_input_tokens, &mut self.cache_read);
        take(u.cache_creation_input_tokens, &mut self.cache_creation);
        take(u.output_tokens, &mut self.output);
        Some(())
    }

    /// The normalised usage, `None` until a usage object was seen.
    pub(crate) fn get(&self) -> Option<Usage> {
        if !self.seen {
            return None;
        }
        Some(Usage {
            prompt_tokens: self
                .input
                .saturating_add(self.cache_read)
                .saturating_add(self.cache_creation),
            completion_tokens: self.output,
            cached_tokens: self.cache_read,
        })
    }
}

/// Parses one Anthropic stream event: its data as a JSON object and its
/// name (the `event:` field, or the data's `type` when that is empty).
pub(crate) fn parse_event(ev: &SseEvent) -> Result<(String, Map<String, Value>), PayloadError> {
    let data = super::wire::json_object(&ev.data, "stream event data")?;
    let name = if ev.event.is_empty() {
        data.get("type")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    } else {
        ev.event.clone()
    };
    Ok((name, data))
}

/// The error an Anthropic `error` stream event stands for.
pub(crate) fn stream_error(data: &Map<String, Value>) -> PayloadError {
    let v = Value::Object(data.clone());
    let msg = error_message(&v).unwrap_or_else(|| "unspecified error in stream".into());
    match error_type(&v) {
        Some(t) => PayloadError::Upstream(format!("{t}: {msg}")),
        None => PayloadError::Upstream(msg),
    }
}

/// Anthropic upstream -> Anthropic caller: forwards every event's data
/// untouched (pings and unknown events included) and tracks usage.
///
/// An event is read without building a JSON tree: the few fields that
/// matter (its type, usage, a content block's type and text, a delta's
/// text) are borrowed slices of its data ([`LiteEvent`]). An event this
/// does not cover plainly (an error, a field of an unexpected kind, a
/// repeated field, data that is not a JSON object) is read the old way,
/// as a tree, so every verdict is the one the tree gives.
pub struct Passthrough {
    usage: UsageAcc,
    /// The message id (`message_start`) and stop reason (`message_delta`),
    /// noted when those events pass (once each per stream).
    facts: StreamFacts,
}

impl Passthrough {
    /// The context is not needed: payloads are forwarded untouched.
    pub fn new(_ctx: StreamContext) -> Self {
        Passthrough {
            usage: UsageAcc::default(),
            facts: StreamFacts::default(),
        }
    }

    fn read(&mut self, ev: &SseEvent) -> Result<StreamStep, PayloadError> {
        match self.read_lite(ev) {
            Some(step) => Ok(step),
            None => self.read_tree(ev),
        }
    }

    /// The step for a plain event, read from borrowed slices; `None` for
    /// anything else.
    fn read_lite(&mut self, ev: &SseEvent) -> Option<StreamStep> {
        if !ev.data.trim_start().starts_with('{') {
            return None;
        }
        let lite: LiteEvent<'_> = serde_json::from_str(&ev.data).ok()?;
        let name = match ev.event.as_str() {
            "" => lite.kind.map_or(Some(Cow::Borrowed("")), raw_str)?,
            e => Cow::Borrowed(e),
        };
        let mut step = StreamStep::default();
        match &*name {
            "error" => return None,
            "message_start" => {
                let (usage, id) = match lite.message {
                    Some(m) if is_object(m) => {
                        let h = serde_json::from_str::<Holder>(m.get()).ok()?;
                        (h.usage, h.id)
                    }
                    _ => (None, None),
                };
                self.usage.update_raw(usage)?;
                self.facts.id = id.or(self.facts.id.take());
            }
            "content_block_start" => {
                let block = match lite.content_block {
                    Some(b) if is_object(b) => serde_json::from_str::<Block>(b.get()).ok()?,
                    _ => Block::default(),
                };
                let kind = block.kind.and_then(raw_str);
                step.content = !matches!(
                    kind.as_deref(),
                    Some("text") | Some("thinking") | Some("redacted_thinking")
                ) || non_empty(block.text);
            }
            "content_block_delta" => {
                if let Some(d) = lite.delta.filter(|d| is_object(d)) {
                    let d: Delta = serde_json::from_str(d.get()).ok()?;
                    step.content =
                        non_empty(d.text) || non_empty(d.partial_json) || non_empty(d.thinking);
                }
            }
            "message_delta" => {
                self.usage.update_raw(lite.usage)?;
                let stop = lite
                    .delta
                    .filter(|d| is_object(d))
                    .and_then(|d| serde_json::from_str::<StopDelta>(d.get()).ok()?.stop_reason);
                self.facts.finish_reason = stop.or(self.facts.finish_reason.take());
            }
            "message_stop" => step.finished = true,
            _ => {}
        }
        Some(step)
    }

    /// The step for any event, read as a tree.
    fn read_tree(&mut self, ev: &SseEvent) -> Result<StreamStep, PayloadError> {
        let (name, data) = parse_event(ev)?;
        let mut step = StreamStep::default();
        match name.as_str() {
            "error" => return Err(stream_error(&data)),
            "message_start" => {
                if let Some(u) = data.get("message").and_then(|m| m.get("usage")) {
                    self.usage.update(u);
                }
                let id = data.get("message").and_then(|m| m.get("id"));
                if let Some(id) = id.and_then(Value::as_str) {
                    self.facts.id = Some(id.to_owned());
                }
            }
            "content_block_start" => {
                // A tool call (or server tool) names itself here; text and
                // thinking blocks start empty.
                let block = data.get("content_block");
                let kind = block.and_then(|b| b.get("type")).and_then(Value::as_str);
                step.content = !matches!(
                    kind,
                    Some("text") | Some("thinking") | Some("redacted_thinking")
                ) || block
                    .and_then(|b| b.get("text"))
                    .and_then(Value::as_str)
                    .is_some_and(|t| !t.is_empty());
            }
            "content_block_delta" => {
                let d = data.get("delta");
                step.content = ["text", "partial_json", "thinking"].iter().any(|k| {
                    d.and_then(|d| d.get(*k))
                        .and_then(Value::as_str)
                        .is_some_and(|t| !t.is_empty())
                });
            }
            "message_delta" => {
                if let Some(u) = data.get("usage") {
                    self.usage.update(u);
                }
                let stop = data.get("delta").and_then(|d| d.get("stop_reason"));
                if let Some(r) = stop.and_then(Value::as_str) {
                    self.facts.finish_reason = Some(r.to_owned());
                }
            }
            "message_stop" => step.finished = true,
            _ => {}
        }
        Ok(step)
    }
}

impl StreamAdapter for Passthrough {
    fn on_event(&mut self, ev: &SseEvent) -> Result<StreamStep, PayloadError> {
        let mut step = self.read(ev)?;
        step.out.push(ev.data.clone());
        Ok(step)
    }

    fn on_owned(&mut self, ev: SseEvent) -> Result<StreamStep, PayloadError> {
        let mut step = self.read(&ev)?;
        step.out.push(ev.data);
        Ok(step)
    }

    fn usage(&self) -> Option<Usage> {
        self.usage.get()
    }

    fn facts(&self) -> StreamFacts {
        self.facts.clone()
    }
}

/// `message_delta.delta`: its stop reason.
#[derive(Deserialize)]
struct StopDelta {
    #[serde(default)]
    stop_reason: Option<String>,
}

/// The fields of a stream event the pass-through reads.
#[derive(Deserialize)]
struct LiteEvent<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<&'a RawValue>,
    #[serde(borrow, default)]
    message: Option<&'a RawValue>,
    #[serde(borrow, default)]
    usage: Option<&'a RawValue>,
    #[serde(borrow, default)]
    content_block: Option<&'a RawValue>,
    #[serde(borrow, default)]
    delta: Option<&'a RawValue>,
}

/// `message_start.message`: its usage.
#[derive(Deserialize)]
struct Holder<'a> {
    #[serde(borrow, default)]
    usage: Option<&'a RawValue>,
    #[serde(default)]
    id: Option<String>,
}

#[derive(Deserialize, Default)]
struct Block<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<&'a RawValue>,
    #[serde(borrow, default)]
    text: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Delta<'a> {
    #[serde(borrow, default)]
    text: Option<&'a RawValue>,
    #[serde(borrow, default)]
    partial_json: Option<&'a RawValue>,
    #[serde(borrow, default)]
    thinking: Option<&'a RawValue>,
}

/// The token counts of a usage object, as written.
#[derive(Deserialize)]
struct LiteUsage<'a> {
    #[serde(borrow, default)]
    input_tokens: Option<&'a RawValue>,
    #[serde(borrow, default)]
    cache_read_input_tokens: Option<&'a RawValue>,
    #[serde(borrow, default)]
    cache_creation_input_tokens: Option<&'a RawValue>,
    #[serde(borrow, default)]
    output_tokens: Option<&'a RawValue>,
}

fn is_object(r: &RawValue) -> bool {
    r.get().starts_with('{')
}

/// The string a raw value holds; `None` when it is not a string.
fn raw_str(r: &RawValue) -> Option<Cow<'_, str>> {
    let raw = r.get();
    if !raw.starts_with('"') {
        return None;
    }
    let inner = &raw[1..raw.len() - 1];
    if inner.contains('\\') {
        serde_json::from_str::<String>(raw).ok().map(Cow::Owned)
    } else {
        Some(Cow::Borrowed(inner))
    }
}

/// A string with at least one character (`"` + something + `"`).
fn non_empty(r: Option<&RawValue>) -> bool {
    r.is_some_and(|r| r.get().starts_with('"') && r.get().len() > 2)
}

#[cfg(test)]
mod tests;
