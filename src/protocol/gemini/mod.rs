//! Google's Gemini API (`generateContent` / `streamGenerateContent`): the
//! typed wire model, parsed into the conversation model
//! ([`crate::protocol::ir`]) and emitted from it, stream chunks, usage and
//! Google's error envelope.
//!
//! A Gemini request carries neither its model nor its stream flag: they are
//! in the URL (`/v1beta/models/{model}:streamGenerateContent`). A host that
//! hands llmux a Gemini caller's body puts them in as the top-level fields
//! `model` and `stream` (the gateway takes them from the path); they are
//! llmux's fields, removed before the body goes to a Gemini upstream.
//!
//! Usage convention: `promptTokenCount` counts every prompt token, cached
//! ones included (`cachedContentTokenCount` is the cached part), as
//! llmux's [`Usage`] does; `completion_tokens = candidatesTokenCount +
//! thoughtsTokenCount` (thinking is billed as output, as OpenAI counts
//! reasoning tokens). `toolUsePromptTokenCount` is added to the prompt.
//!
//! Errors are Google's envelope `{"error": {"code", "message", "status"}}`,
//! the status by HTTP code ([`status_name`]).

pub mod request;
pub mod response;
pub mod stream;

pub use request::{emit_request, parse_request};
pub use response::{emit_response, parse_response};

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::{PayloadError, Usage};

/// What llmux appends to a Gemini provider's base URL, before
/// `/{upstream_model}:{method}`.
pub const PATH: &str = "/v1beta/models";
/// The header that carries a Gemini key.
pub const AUTH_HEADER: &str = "x-goog-api-key";

/// The upstream URL of one request: `{url}/{model}:generateContent`, or
/// `:streamGenerateContent?alt=sse` for a stream (`url` ends in [`PATH`]).
pub fn request_url(url: &str, model: &str, stream: bool) -> String {
    if stream {
        format!("{url}/{model}:streamGenerateContent?alt=sse")
    } else {
        format!("{url}/{model}:generateContent")
    }
}

// ---------------------------------------------------------------------------
// the wire model shared by requests, responses and stream chunks

/// A turn: `role` `user` or `model` and its parts.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Content {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(default)]
    pub parts: Vec<Part>,
}

/// One part; exactly one of its data fields is set.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Part {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// A thought summary (with `text`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thought: Option<bool>,
    /// The opaque signature of the model's thinking, to send back as given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thought_signature: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inline_data: Option<Blob>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file_data: Option<FileData>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub function_call: Option<FunctionCall>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub function_response: Option<FunctionResponse>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub executable_code: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code_execution_result: Option<Value>,
}

impl Part {
    pub(crate) fn text(text: String) -> Part {
        Part {
            text: Some(text),
            ..Part::default()
        }
    }
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Blob {
    pub mime_type: String,
    pub data: String,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FileData {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mime_type: Option<String>,
    pub file_uri: String,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FunctionCall {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub name: String,
    #[serde(default)]
    pub args: Map<String, Value>,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FunctionResponse {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub name: String,
    #[serde(default)]
    pub response: Map<String, Value>,
}

/// `usageMetadata`.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", default)]
pub struct UsageMetadata {
    pub prompt_token_count: u64,
    pub candidates_token_count: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub thoughts_token_count: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub cached_content_token_count: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub tool_use_prompt_token_count: u64,
    pub total_token_count: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl From<UsageMetadata> for Usage {
    fn from(u: UsageMetadata) -> Usage {
        Usage {
            prompt_tokens: u
                .prompt_token_count
                .saturating_add(u.tool_use_prompt_token_count),
            completion_tokens: u
                .candidates_token_count
                .saturating_add(u.thoughts_token_count),
            cached_tokens: u.cached_content_token_count,
        }
    }
}

impl UsageMetadata {
    /// `u` with `reasoning` of its completion tokens counted as thoughts.
    pub fn of(u: Usage, reasoning: u64) -> UsageMetadata {
        let thoughts = reasoning.min(u.completion_tokens);
        UsageMetadata {
            candidates_token_count: u.completion_tokens - thoughts,
            thoughts_token_count: thoughts,
            ..u.into()
        }
    }
}

impl From<Usage> for UsageMetadata {
    fn from(u: Usage) -> UsageMetadata {
        UsageMetadata {
            prompt_token_count: u.prompt_tokens,
            candidates_token_count: u.completion_tokens,
            thoughts_token_count: 0,
            cached_content_token_count: u.cached_tokens,
            tool_use_prompt_token_count: 0,
            total_token_count: u.prompt_tokens.saturating_add(u.completion_tokens),
        }
    }
}

// ---------------------------------------------------------------------------
// errors

/// Google's `error.status` for an HTTP status.
pub fn status_name(status: u16) -> &'static str {
    match status {
        400 | 422 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        409 => "ABORTED",
        412 => "FAILED_PRECONDITION",
        413 => "INVALID_ARGUMENT",
        429 => "RESOURCE_EXHAUSTED",
        499 => "CANCELLED",
        501 => "UNIMPLEMENTED",
        503 | 529 => "UNAVAILABLE",
        408 | 504 => "DEADLINE_EXCEEDED",
        405..=499 => "FAILED_PRECONDITION",
        _ => "INTERNAL",
    }
}

/// A Google error envelope: `{"error": {"code", "message", "status"}}`.
/// llmux's error kind is kept in `details` (an `ErrorInfo` whose `reason`
/// is the kind, domain `llmux`), where Google's own clients look for a
/// machine-readable cause.
pub fn error_body(status: u16, kind: &str, message: &str) -> Value {
    let code = if status >= 400 { status } else { 500 };
    json!({
        "error": {
            "code": code,
            "message": message,
            "status": status_name(code),
            "details": [{
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": kind,
                "domain": "llmux",
            }],
        }
    })
}

/// The message of a Google error envelope (`error.message`, with
/// `error.status` before it when given), also of an error list (Google's
/// streams without `alt=sse` answer errors as `[{"error": ...}]`).
pub fn error_message(v: &Value) -> Option<String> {
    let v = match v {
        Value::Array(a) => a.first()?,
        v => v,
    };
    let e = v.get("error")?;
    let message = match e {
        Value::String(s) => return Some(s.clone()),
        e => e.get("message").and_then(Value::as_str)?,
    };
    Some(match e.get("status").and_then(Value::as_str) {
        Some(s) => format!("{s}: {message}"),
        None => message.to_owned(),
    })
}

/// The error a 200 body or stream chunk carrying `error` stands for.
pub(crate) fn upstream_error(v: &Value) -> PayloadError {
    PayloadError::Upstream(error_message(v).unwrap_or_else(|| "unspecified error".into()))
}

/// The upstream body for a Gemini caller on a Gemini endpoint: the
/// caller's without llmux's `model` and `stream` (the URL carries them).
pub fn passthrough_request(body: &Map<String, Value>) -> Map<String, Value> {
    let mut out = body.clone();
    out.shift_remove("model");
    out.shift_remove("stream");
    out
}

/// Checks a non-streaming `GenerateContentResponse`; returns its usage.
/// Errors: an error envelope, a blocked prompt, no candidate with content.
pub fn check_response(v: &Value) -> Result<Option<Usage>, PayloadError> {
    let r = response::parse_response(v)?;
    Ok(r.usage)
}

#[cfg(test)]
mod tests;
