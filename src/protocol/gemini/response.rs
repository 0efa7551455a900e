//! `GenerateContentResponse`: parsed into the conversation model (candidate
//! 0) and emitted from it. Stream chunks share this shape.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::request::{emit_parts, parse_parts, CallIds};
use super::{Content, UsageMetadata};
use crate::protocol::ir::{self, Block, StopReason};
use crate::protocol::wire::{self, bad};
use crate::protocol::PayloadError;

#[derive(Deserialize, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub(crate) struct GenerateContentResponse {
    #[serde(default)]
    pub candidates: Vec<Candidate>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt_feedback: Option<PromptFeedback>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage_metadata: Option<UsageMetadata>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_id: Option<String>,
}

#[derive(Deserialize, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Candidate {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<Content>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finish_reason: Option<String>,
    #[serde(default)]
    pub index: u64,
}

#[derive(Deserialize, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PromptFeedback {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub block_reason: Option<String>,
}

/// Gemini `finishReason` -> the model's. `STOP` is a tool-use stop when
/// the answer holds function calls; the safety family is a refusal;
/// anything else ends the turn.
pub fn parse_finish_reason(f: &str, calls: bool) -> StopReason {
    match f {
        "MAX_TOKENS" => StopReason::MaxTokens,
        "SAFETY"
        | "RECITATION"
        | "BLOCKLIST"
        | "PROHIBITED_CONTENT"
        | "SPII"
        | "IMAGE_SAFETY"
        | "IMAGE_PROHIBITED_CONTENT" => StopReason::Refusal,
        _ if calls => StopReason::ToolUse,
        _ => StopReason::EndTurn,
    }
}

/// The model's stop reason -> Gemini `finishReason` (a tool-use stop is
/// `STOP`, as Gemini reports it).
pub fn finish_reason_name(s: StopReason) -> &'static str {
    match s {
        StopReason::MaxTokens => "MAX_TOKENS",
        StopReason::Refusal => "SAFETY",
        _ => "STOP",
    }
}

/// Parses a response body (an error envelope is the upstream's error; a
/// blocked prompt or an answer without content is an upstream error too).
pub fn parse_response(v: &Value) -> Result<ir::Response, PayloadError> {
    let m = wire::object(v, "response")?;
    if m.get("error").is_some_and(|e| !e.is_null()) {
        return Err(super::upstream_error(v));
    }
    let r: GenerateContentResponse = wire::parse(m)?;
    let reasoning_tokens = r
        .usage_metadata
        .as_ref()
        .map_or(0, |u| u.thoughts_token_count);
    let usage = r.usage_metadata.map(Into::into);
    let id = r.response_id.unwrap_or_default();
    let Some(c) = r.candidates.into_iter().find(|c| c.index == 0) else {
        let why = r.prompt_feedback.and_then(|f| f.block_reason).map_or_else(
            || "no candidates".to_owned(),
            |b| format!("prompt blocked: {b}"),
        );
        return Err(PayloadError::Upstream(format!("empty completion: {why}")));
    };
    let mut ids = CallIds::default();
    let content = parse_answer(c.content.unwrap_or_default(), &id, &mut ids)?;
    let calls = content.iter().any(|b| matches!(b, Block::ToolCall { .. }));
    if !content.iter().any(generated) {
        let why = c.finish_reason.as_deref().unwrap_or("no finish reason");
        return Err(PayloadError::Upstream(format!(
            "empty completion: no content ({why})"
        )));
    }
    Ok(ir::Response {
        id,
        model: r.model_version.unwrap_or_default(),
        stop_reason: parse_finish_reason(c.finish_reason.as_deref().unwrap_or("STOP"), calls),
        content,
        usage,
        reasoning_tokens,
    })
}

fn generated(b: &Block) -> bool {
    match b {
        Block::Text { text, .. } => !text.is_empty(),
        Block::Thinking { thinking, .. } => !thinking.is_empty(),
        _ => true,
    }
}

/// An answer's parts; function calls without an id get one made from the
/// response id (`call_{response}_{n}`), unique across the conversation.
pub(crate) fn parse_answer(
    c: Content,
    response_id: &str,
    ids: &mut CallIds,
) -> Result<Vec<Block>, PayloadError> {
    let mut parts = c.parts;
    let calls = parts.iter_mut().filter_map(|p| p.function_call.as_mut());
    for (k, f) in calls.enumerate() {
        f.id.get_or_insert_with(|| format!("call_{response_id}_{k}"));
    }
    parse_parts(parts, "candidates[0].content.parts", ids)
}

/// Emits a `GenerateContentResponse` (one candidate, role `model`).
pub fn emit_response(r: &ir::Response) -> Result<Value, PayloadError> {
    let parts = emit_parts(&r.content, "content", &[])?;
    let out = GenerateContentResponse {
        candidates: vec![Candidate {
            content: Some(Content {
                role: Some("model".into()),
                parts,
            }),
            finish_reason: Some(finish_reason_name(r.stop_reason).into()),
            index: 0,
        }],
        prompt_feedback: None,
        usage_metadata: Some(UsageMetadata::of(
            r.usage.unwrap_or_default(),
            r.reasoning_tokens,
        )),
        model_version: Some(r.model.clone()),
        response_id: Some(r.id.clone()),
    };
    serde_json::to_value(out).map_err(|e| bad(e.to_string()))
}
