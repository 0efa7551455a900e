//! Responses non-streaming responses: the typed `Response` object parsed
//! into the conversation model and emitted from it, and the output items
//! the stream emitter shares.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{encrypted_content, parse_usage, signature_in, Namespaces, UsageOut};
use crate::protocol::ir::{self, Block, StopReason};
use crate::protocol::openai::chat;
use crate::protocol::wire::{self, bad, Kinds, Tagged};
use crate::protocol::PayloadError;

// ---------------------------------------------------------------------------
// the wire model

#[derive(Deserialize)]
struct ResponseBody {
    id: Option<String>,
    model: Option<String>,
    created_at: Option<f64>,
    status: Option<String>,
    incomplete_details: Option<Incomplete>,
    output: Vec<Tagged<OutputItem>>,
    /// Read leniently by [`parse_usage`].
    usage: Option<Value>,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq)]
pub(super) struct Incomplete {
    pub reason: Option<String>,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum OutputItem {
    Message {
        #[serde(default)]
        content: Vec<Tagged<OutputPart>>,
    },
    Reasoning {
        #[serde(default)]
        content: Vec<TextPart>,
        #[serde(default)]
        summary: Vec<TextPart>,
        encrypted_content: Option<String>,
    },
    FunctionCall {
        call_id: String,
        name: String,
        #[serde(default)]
        arguments: Option<String>,
    },
}

impl Kinds for OutputItem {
    const KINDS: &'static [&'static str] = &["message", "reasoning", "function_call"];
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum OutputPart {
    OutputText { text: String },
    Refusal { refusal: String },
}

impl Kinds for OutputPart {
    const KINDS: &'static [&'static str] = &["output_text", "refusal"];
}

#[derive(Deserialize)]
struct TextPart {
    #[serde(default)]
    text: String,
}

/// An output item as llmux emits it (responses and streams).
#[derive(Serialize, Clone, Debug)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(super) enum ItemOut {
    Reasoning {
        id: String,
        summary: [(); 0],
        status: &'static str,
        content: Vec<PartOut>,
        #[serde(skip_serializing_if = "Option::is_none")]
        encrypted_content: Option<String>,
    },
    Message {
        id: String,
        role: &'static str,
        status: &'static str,
        content: Vec<PartOut>,
    },
    FunctionCall {
        id: String,
        call_id: String,
        name: String,
        arguments: String,
        status: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        namespace: Option<String>,
    },
}

#[derive(Serialize, Clone, Debug)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(super) enum PartOut {
    OutputText {
        text: String,
        annotations: [(); 0],
        logprobs: [(); 0],
    },
    ReasoningText {
        text: String,
    },
}

impl PartOut {
    pub(super) fn text(text: String) -> PartOut {
        PartOut::OutputText {
            text,
            annotations: [],
            logprobs: [],
        }
    }
}

/// A function call item, its namespaced name restored.
pub(super) fn call_item(
    id: String,
    call_id: &str,
    name: &str,
    arguments: String,
    ns: &Namespaces,
    status: &'static str,
) -> ItemOut {
    let (namespace, name) = match ns.restore(name) {
        Some((space, member)) => (Some(space.to_owned()), member.to_owned()),
        None => (None, name.to_owned()),
    };
    ItemOut::FunctionCall {
        id,
        call_id: call_id.to_owned(),
        name,
        arguments,
        status,
        namespace,
    }
}

// ---------------------------------------------------------------------------
// parse: Responses -> ir

/// Parses a Responses `Response` (already checked by
/// [`super::check_response`]): reasoning becomes thinking (its signature
/// when llmux put one there), message text and refusals, function calls;
/// hosted-tool items have no counterpart and drop. Also returns
/// `created_at`.
pub fn parse_response(v: &Value) -> Result<(ir::Response, Option<u64>), PayloadError> {
    let m = wire::object(v, "response")?;
    let r: ResponseBody = wire::parse(m)?;
    let mut content = Vec::new();
    for (i, item) in r.output.into_iter().enumerate() {
        match item {
            Tagged::Known(OutputItem::Message { content: parts }) => {
                content.extend(parts.into_iter().filter_map(|p| match p {
                    Tagged::Known(OutputPart::OutputText { text }) => Some(Block::Text {
                        text,
                        cache_control: None,
                    }),
                    Tagged::Known(OutputPart::Refusal { refusal }) => Some(Block::Refusal(refusal)),
                    Tagged::Unknown(_) => None,
                }))
            }
            Tagged::Known(OutputItem::Reasoning {
                content: parts,
                summary,
                encrypted_content,
            }) => {
                let parts = if parts.is_empty() { summary } else { parts };
                content.push(Block::Thinking {
                    thinking: parts.into_iter().map(|p| p.text).collect(),
                    signature: encrypted_content.as_deref().and_then(signature_in),
                });
            }
            Tagged::Known(OutputItem::FunctionCall {
                call_id,
                name,
                arguments,
            }) => {
                let args = arguments.map(Value::String);
                content.push(Block::ToolCall {
                    id: call_id,
                    name,
                    input: chat::parse_arguments(args.as_ref(), &format!("output[{i}].arguments"))?,
                });
            }
            Tagged::Unknown(_) => {} // hosted-tool items
        }
    }
    let calls = content.iter().any(|b| matches!(b, Block::ToolCall { .. }));
    let reason = r.incomplete_details.and_then(|d| d.reason);
    let stop_reason = match (r.status.as_deref(), reason.as_deref()) {
        (Some("incomplete"), Some("content_filter")) => StopReason::Refusal,
        (Some("incomplete"), _) => StopReason::MaxTokens,
        _ if calls => StopReason::ToolUse,
        _ => StopReason::EndTurn,
    };
    let response = ir::Response {
        id: r.id.unwrap_or_default(),
        model: r.model.unwrap_or_default(),
        content,
        stop_reason,
        usage: r.usage.as_ref().and_then(parse_usage),
        reasoning_tokens: r.usage.as_ref().map_or(0, reasoning_tokens),
    };
    Ok((response, r.created_at.map(|t| t as u64)))
}

/// `output_tokens_details.reasoning_tokens` of a usage object, or 0.
pub(super) fn reasoning_tokens(usage: &Value) -> u64 {
    usage
        .pointer("/output_tokens_details/reasoning_tokens")
        .and_then(Value::as_u64)
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------
// emit: ir -> Responses

/// The status and `incomplete_details` for a stop reason.
pub(super) fn status_for(s: StopReason) -> (&'static str, Option<Incomplete>) {
    let reason = match s {
        StopReason::MaxTokens => "max_output_tokens",
        StopReason::Refusal => "content_filter",
        _ => return ("completed", None),
    };
    let details = Incomplete {
        reason: Some(reason.into()),
    };
    ("incomplete", Some(details))
}

/// The `Response` object: fields echoed from the caller's request (kept as
/// given), llmux's output and status.
#[derive(Serialize, Clone)]
pub(super) struct ResponseOut {
    pub id: String,
    pub object: &'static str,
    pub created_at: u64,
    pub status: &'static str,
    pub error: Option<Value>,
    pub incomplete_details: Option<Incomplete>,
    pub instructions: Value,
    pub max_output_tokens: Value,
    pub model: String,
    pub output: Vec<ItemOut>,
    pub parallel_tool_calls: Value,
    pub previous_response_id: Option<String>,
    pub reasoning: Value,
    pub temperature: Value,
    pub text: Value,
    pub tool_choice: Value,
    pub tools: Value,
    pub top_p: Value,
    pub usage: Option<UsageOut>,
    pub metadata: Value,
}

impl ResponseOut {
    /// A response in progress, echoing `request`.
    pub(super) fn shell(
        request: &Map<String, Value>,
        id: String,
        model: String,
        created: u64,
    ) -> ResponseOut {
        let echo = |k: &str, default: Value| {
            request
                .get(k)
                .filter(|v| !v.is_null())
                .cloned()
                .unwrap_or(default)
        };
        let text = serde_json::json!({ "format": { "type": "text" } });
        ResponseOut {
            id,
            object: "response",
            created_at: created,
            status: "in_progress",
            error: None,
            incomplete_details: None,
            instructions: echo("instructions", Value::Null),
            max_output_tokens: echo("max_output_tokens", Value::Null),
            model,
            output: Vec::new(),
            parallel_tool_calls: echo("parallel_tool_calls", Value::Bool(true)),
            previous_response_id: None,
            reasoning: echo("reasoning", Value::Null),
            temperature: echo("temperature", Value::Null),
            text: echo("text", text),
            tool_choice: echo("tool_choice", Value::from("auto")),
            tools: echo("tools", Value::Array(Vec::new())),
            top_p: echo("top_p", Value::Null),
            usage: None,
            metadata: echo("metadata", Value::Object(Map::new())),
        }
    }
}

/// Emits a Responses `Response` for the caller's `request`: thinking as
/// one `reasoning` item (a single signature kept in `encrypted_content`
/// under its issuer's prefix, see [`super::THINKING_PREFIX`]), text and refusals as one
/// message, tool calls as `function_call` items (namespaces restored).
pub fn emit_response(
    r: &ir::Response,
    request: &Map<String, Value>,
    created: u64,
) -> Result<Value, PayloadError> {
    let base = if r.id.is_empty() { "llmux" } else { &r.id };
    let ns = Namespaces::of(request);
    let (mut thinking, mut text, mut sigs) = (String::new(), String::new(), Vec::new());
    let mut calls = Vec::new();
    for b in &r.content {
        match b {
            Block::Thinking {
                thinking: t,
                signature,
            } => {
                thinking.push_str(t);
                sigs.extend(signature.as_ref());
            }
            Block::Text { text: t, .. } | Block::Refusal(t) => text.push_str(t),
            Block::ToolCall { id, name, input } => calls.push((id, name, input)),
            _ => {}
        }
    }
    let mut output = Vec::new();
    if !thinking.is_empty() {
        output.push(ItemOut::Reasoning {
            id: format!("rs_{base}_0"),
            summary: [],
            status: "completed",
            content: vec![PartOut::ReasoningText { text: thinking }],
            encrypted_content: match sigs[..] {
                [sig] => Some(encrypted_content(sig)),
                _ => None,
            },
        });
    }
    if !text.is_empty() {
        output.push(ItemOut::Message {
            id: format!("msg_{base}_{}", output.len()),
            role: "assistant",
            status: "completed",
            content: vec![PartOut::text(text)],
        });
    }
    for (id, name, input) in calls {
        let args = Value::Object(input.clone()).to_string();
        let item_id = format!("fc_{base}_{}", output.len());
        output.push(call_item(item_id, id, name, args, &ns, "completed"));
    }
    let mut out = ResponseOut::shell(request, format!("resp_{base}"), r.model.clone(), created);
    (out.status, out.incomplete_details) = status_for(r.stop_reason);
    out.output = output;
    out.usage = r.usage.map(|u| UsageOut::new(u, r.reasoning_tokens));
    serde_json::to_value(out).map_err(|e| bad(e.to_string()))
}
