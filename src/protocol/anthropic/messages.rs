//! Messages requests: the typed wire model, parsed into the conversation
//! model ([`crate::protocol::ir`]) and emitted from it.
//!
//! A request field the wire model does not declare is dropped when the
//! request is translated ([`DROPPED`] lists the known ones); `mcp_servers`
//! is refused by [`parse_request`]: the model cannot carry it.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Number, Value};

use crate::protocol::ir::StopReason;
use crate::protocol::ir::{self, Block, Content, Effort, Issuer, Reasoning, Role, Signature};
use crate::protocol::wire::{self, bad, sub, Kinds, Tagged, TextOr};
use crate::protocol::{PayloadError, Usage};

/// `max_tokens` sent to Anthropic when the caller gave no output limit
/// (Anthropic requires one).
pub const DEFAULT_MAX_TOKENS: u32 = 4096;

/// Thinking budgets for the efforts `low` (and `minimal`), `medium`, `high`.
pub const REASONING_BUDGETS: [u64; 3] = [1024, 4096, 16384];

/// Messages fields dropped in translation. Any other undeclared field is
/// dropped too.
pub const DROPPED: &[&str] = &[
    "cache_control",
    "service_tier",
    "container",
    "context_management",
    "output_config",
    "tools[].defer_loading",
    "metadata (other than user_id)",
    "tool_result.is_error",
];

// ---------------------------------------------------------------------------
// the wire model

#[derive(Deserialize)]
struct MessagesRequest {
    messages: Vec<MessageParam>,
    system: Option<TextOr<Tagged<BlockParam>>>,
    max_tokens: Option<u64>,
    stop_sequences: Option<Vec<String>>,
    temperature: Option<Number>,
    top_p: Option<Number>,
    top_k: Option<Number>,
    tools: Option<Vec<ToolParam>>,
    tool_choice: Option<ToolChoiceParam>,
    metadata: Option<Metadata>,
    thinking: Option<ThinkingParam>,
    stream: Option<bool>,
    mcp_servers: Option<Vec<Value>>,
}

#[derive(Deserialize)]
struct MessageParam {
    role: String,
    content: Option<TextOr<Tagged<BlockParam>>>,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
enum BlockParam {
    Text {
        text: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        cache_control: Option<Value>,
    },
    Image {
        source: ImageSourceParam,
        #[serde(skip_serializing_if = "Option::is_none")]
        cache_control: Option<Value>,
    },
    Document {
        source: Value,
    },
    ToolUse {
        id: String,
        name: String,
        input: Option<Map<String, Value>>,
    },
    ToolResult {
        tool_use_id: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        content: Option<TextOr<Tagged<BlockParam>>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        is_error: Option<bool>,
    },
    Thinking {
        thinking: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        signature: Option<String>,
    },
    RedactedThinking {
        data: Option<String>,
    },
}

impl Kinds for BlockParam {
    const KINDS: &'static [&'static str] = &[
        "text",
        "image",
        "document",
        "tool_use",
        "tool_result",
        "thinking",
        "redacted_thinking",
    ];
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ImageSourceParam {
    Base64 { media_type: String, data: String },
    Url { url: String },
    File { file_id: String },
}

#[derive(Deserialize, Serialize)]
struct ToolParam {
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<String>,
    name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    input_schema: Option<Map<String, Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cache_control: Option<Value>,
}

#[derive(Deserialize, Serialize)]
struct ToolChoiceParam {
    #[serde(rename = "type")]
    kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    disable_parallel_tool_use: Option<bool>,
}

#[derive(Deserialize, Serialize)]
struct Metadata {
    user_id: Option<String>,
}

#[derive(Deserialize)]
struct ThinkingParam {
    #[serde(rename = "type")]
    kind: Option<String>,
    budget_tokens: Option<u64>,
}

// ---------------------------------------------------------------------------
// parse: Messages -> ir

/// Parses a Messages request into the conversation model.
pub fn parse_request(body: &Map<String, Value>) -> Result<ir::Request, PayloadError> {
    if body.get("messages").is_none_or(Value::is_null) {
        return Err(bad("`messages` is required"));
    }
    let req: MessagesRequest = wire::parse(body)?;
    if req.mcp_servers.is_some_and(|m| !m.is_empty()) {
        return Err(bad("`mcp_servers` cannot be translated"));
    }
    let messages = req
        .messages
        .into_iter()
        .enumerate()
        .map(|(i, m)| parse_message(m, &format!("messages[{i}]")))
        .collect::<Result<_, _>>()?;
    let (tool_choice, parallel_tool_calls) = match req.tool_choice {
        None => (None, None),
        Some(c) => parse_tool_choice(c)?,
    };
    Ok(ir::Request {
        model: body.get("model").cloned(),
        system: req.system.map(parse_content),
        messages,
        tools: parse_tools(req.tools.unwrap_or_default())?,
        tool_choice,
        parallel_tool_calls,
        sampling: ir::Sampling {
            temperature: req.temperature,
            top_p: req.top_p,
            top_k: req.top_k,
        },
        stop: req.stop_sequences.unwrap_or_default(),
        max_output_tokens: req.max_tokens,
        response_format: None,
        stream: req.stream,
        include_usage: None,
        user: req.metadata.and_then(|m| m.user_id),
        reasoning: req.thinking.and_then(|t| match t.kind.as_deref() {
            Some("enabled") => Some(Reasoning::Budget(t.budget_tokens.unwrap_or(0))),
            Some("disabled") => Some(Reasoning::Off),
            Some("adaptive") => Some(Reasoning::Adaptive),
            _ => None,
        }),
        openai_extras: Map::new(),
    })
}

fn parse_message(m: MessageParam, path: &str) -> Result<ir::Message, PayloadError> {
    let role = match m.role.as_str() {
        "user" => Role::User,
        "assistant" => Role::Assistant,
        // Claude Code sends its environment block as a system turn.
        "system" => Role::System,
        other => return Err(bad(format!("`{path}.role` `{other}` is not supported"))),
    };
    let content = m
        .content
        .ok_or_else(|| bad(format!("`{path}.content` is required")))?;
    Ok(ir::Message {
        role,
        content: parse_content(content),
    })
}

fn parse_content(c: TextOr<Tagged<BlockParam>>) -> Content {
    match c {
        TextOr::Text(s) => Content::Text(s),
        TextOr::Items(blocks) => Content::Blocks(blocks.into_iter().map(parse_block).collect()),
    }
}

fn parse_block(b: Tagged<BlockParam>) -> Block {
    let b = match b {
        Tagged::Known(b) => b,
        Tagged::Unknown(kind) => return Block::Other { kind },
    };
    match b {
        BlockParam::Text {
            text,
            cache_control,
        } => Block::Text {
            text,
            cache_control,
        },
        BlockParam::Image {
            source,
            cache_control,
        } => Block::Image {
            source: match source {
                ImageSourceParam::Base64 { media_type, data } => {
                    ir::ImageSource::Base64 { media_type, data }
                }
                ImageSourceParam::Url { url } => ir::ImageSource::Url(url),
                ImageSourceParam::File { file_id } => ir::ImageSource::File(file_id),
            },
            cache_control,
        },
        BlockParam::Document { source } => Block::Document { source },
        BlockParam::ToolUse { id, name, input } => Block::ToolCall {
            id,
            name,
            input: input.unwrap_or_default(),
        },
        BlockParam::ToolResult {
            tool_use_id,
            content,
            is_error,
        } => Block::ToolResult {
            tool_call_id: tool_use_id,
            content: content.map_or(Content::Text(String::new()), parse_content),
            is_error: is_error.unwrap_or(false),
        },
        BlockParam::Thinking {
            thinking,
            signature,
        } => Block::Thinking {
            thinking: thinking.unwrap_or_default(),
            signature: signature.map(|s| Signature::new(Issuer::Anthropic, s)),
        },
        BlockParam::RedactedThinking { data } => Block::RedactedThinking {
            data: data.unwrap_or_default(),
        },
    }
}

fn parse_tools(tools: Vec<ToolParam>) -> Result<Vec<ir::Tool>, PayloadError> {
    let mut out = Vec::with_capacity(tools.len());
    for (i, t) in tools.into_iter().enumerate() {
        match t.kind.as_deref() {
            None | Some("custom") => {}
            Some(kind) => {
                out.push(ir::Tool::Hosted {
                    kind: kind.to_owned(),
                });
                continue;
            }
        }
        let name = t
            .name
            .ok_or_else(|| bad(format!("`tools[{i}].name` is required")))?;
        out.push(ir::Tool::Function(ir::FunctionTool {
            name,
            description: t.description,
            parameters: t.input_schema,
            cache_control: t.cache_control,
            strict: None,
        }));
    }
    Ok(out)
}

type Choice = (Option<ir::ToolChoice>, Option<bool>);

fn parse_tool_choice(c: ToolChoiceParam) -> Result<Choice, PayloadError> {
    let choice = match c.kind.as_str() {
        "auto" => ir::ToolChoice::Auto,
        "any" => ir::ToolChoice::Required,
        "none" => ir::ToolChoice::None,
        "tool" => ir::ToolChoice::Tool(
            c.name
                .ok_or_else(|| bad("`tool_choice.name` is required"))?,
        ),
        other => {
            return Err(bad(format!(
                "`tool_choice.type` `{other}` is not supported"
            )))
        }
    };
    let parallel = (c.disable_parallel_tool_use == Some(true)).then_some(false);
    Ok((Some(choice), parallel))
}

// ---------------------------------------------------------------------------
// emit: ir -> Messages

/// Emitted request, in the field order of the Messages API reference.
#[derive(Serialize)]
struct MessagesRequestOut {
    #[serde(skip_serializing_if = "Option::is_none")]
    model: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    system: Option<TextOr<BlockParam>>,
    messages: Vec<MessageOut>,
    #[serde(skip_serializing_if = "Option::is_none")]
    thinking: Option<Map<String, Value>>,
    max_tokens: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    stop_sequences: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<Number>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<Number>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_k: Option<Number>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tools: Option<Vec<ToolParam>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<ToolChoiceParam>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<Metadata>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream: Option<bool>,
}

#[derive(Serialize)]
struct MessageOut {
    role: &'static str,
    content: TextOr<BlockParam>,
}

/// A turn being assembled: tool results come first in a user turn.
struct Turn {
    role: &'static str,
    results: Vec<BlockParam>,
    blocks: Vec<BlockParam>,
}

/// A tool-call id as Anthropic accepts it (`^[a-zA-Z0-9_-]+$`): other
/// characters become `_`. Applied the same way to calls and results, so
/// they still pair up; ids that are already valid are unchanged.
pub(crate) fn tool_id(id: &str) -> String {
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

/// Emits a Messages request from the conversation model.
///
/// The written rule of this side: system text from anywhere is hoisted
/// into `system`; consecutive turns of one role merge, tool results first;
/// empty text is dropped; tool ids are made valid (`tool_id`); refusals
/// become text; `max_tokens` defaults to [`DEFAULT_MAX_TOKENS`]; with
/// thinking enabled the sampling settings are dropped; `tool_choice` is
/// dropped without tools; `stream_options` is dropped (the engine reads
/// usage itself). Refused: a response format other than text, hosted tools
/// of another provider, blocks of unknown kinds.
pub fn emit_request(r: &ir::Request) -> Result<Value, PayloadError> {
    match &r.response_format {
        None | Some(ir::ResponseFormat::Text) => {}
        Some(f) => {
            let ty = match f {
                ir::ResponseFormat::JsonSchema(_) => "json_schema",
                _ => "json_object",
            };
            return Err(bad(format!(
                "`response_format` type `{ty}` cannot be translated to Anthropic"
            )));
        }
    }
    let (thinking, budget) = emit_thinking(r.reasoning.as_ref());
    let mut max_tokens = r.max_output_tokens.unwrap_or(u64::from(DEFAULT_MAX_TOKENS));
    if let Some(b) = budget.filter(|b| max_tokens <= *b) {
        max_tokens = b.saturating_add(u64::from(DEFAULT_MAX_TOKENS));
    }
    // Anthropic rejects sampling settings alongside extended thinking.
    let enabled = thinking
        .as_ref()
        .is_some_and(|t| t.get("type").and_then(Value::as_str) == Some("enabled"));
    let sampling = |n: &Option<Number>| n.clone().filter(|_| !enabled);
    let tools = emit_tools(&r.tools)?;
    let stop: Vec<String> = r.stop.iter().filter(|s| !s.is_empty()).cloned().collect();
    let out = MessagesRequestOut {
        model: r.model.clone(),
        system: emit_system(r)?,
        messages: emit_turns(&r.messages)?,
        thinking,
        max_tokens,
        stop_sequences: Some(stop).filter(|s| !s.is_empty()),
        temperature: sampling(&r.sampling.temperature),
        top_p: sampling(&r.sampling.top_p),
        top_k: sampling(&r.sampling.top_k),
        tool_choice: emit_tool_choice(r, !tools.is_empty()),
        tools: Some(tools).filter(|t| !t.is_empty()),
        metadata: r.user.clone().map(|u| Metadata { user_id: Some(u) }),
        stream: r.stream,
    };
    serde_json::to_value(out).map_err(|e| bad(e.to_string()))
}

/// The `thinking` object and, when thinking is enabled, its budget.
fn emit_thinking(r: Option<&Reasoning>) -> (Option<Map<String, Value>>, Option<u64>) {
    let budget = match r {
        None | Some(Reasoning::Off) => return (None, None),
        Some(Reasoning::Native(m)) => {
            let enabled = m.get("type").and_then(Value::as_str) == Some("enabled");
            let budget = m.get("budget_tokens").and_then(Value::as_u64);
            return (Some(m.clone()), budget.filter(|_| enabled));
        }
        Some(Reasoning::Adaptive) => {
            let mut m = Map::new();
            m.insert("type".into(), Value::from("adaptive"));
            return (Some(m), None);
        }
        Some(Reasoning::Budget(b)) => *b,
        Some(Reasoning::Effort(Effort::Minimal | Effort::Low)) => REASONING_BUDGETS[0],
        Some(Reasoning::Effort(Effort::Medium)) => REASONING_BUDGETS[1],
        Some(Reasoning::Effort(Effort::High)) => REASONING_BUDGETS[2],
    };
    let mut m = Map::new();
    m.insert("type".into(), Value::from("enabled"));
    m.insert("budget_tokens".into(), Value::from(budget));
    (Some(m), Some(budget))
}

fn emit_tools(tools: &[ir::Tool]) -> Result<Vec<ToolParam>, PayloadError> {
    let mut out = Vec::with_capacity(tools.len());
    for (i, t) in tools.iter().enumerate() {
        match t {
            ir::Tool::Function(f) => out.push(ToolParam {
                kind: None,
                name: Some(f.name.clone()),
                description: f.description.clone(),
                input_schema: Some(
                    f.parameters
                        .clone()
                        .unwrap_or_else(crate::protocol::openai::chat::empty_schema),
                ),
                cache_control: f.cache_control.clone(),
            }),
            ir::Tool::Hosted { kind } => {
                return Err(bad(format!(
                    "`tools[{i}].type` `{kind}` cannot be translated to Anthropic"
                )))
            }
        }
    }
    Ok(out)
}

/// `tool_choice`, only with tools; `parallel_tool_calls: false` becomes
/// `disable_parallel_tool_use` (on `auto` when no choice was given, never
/// on `none`).
fn emit_tool_choice(r: &ir::Request, have_tools: bool) -> Option<ToolChoiceParam> {
    if !have_tools {
        return None;
    }
    let mut choice = r.tool_choice.as_ref().map(|c| {
        let (kind, name) = match c {
            ir::ToolChoice::Auto => ("auto", None),
            ir::ToolChoice::Required => ("any", None),
            ir::ToolChoice::None => ("none", None),
            ir::ToolChoice::Tool(n) => ("tool", Some(n.clone())),
        };
        ToolChoiceParam {
            kind: kind.into(),
            name,
            disable_parallel_tool_use: None,
        }
    });
    if r.parallel_tool_calls == Some(false) {
        let c = choice.get_or_insert_with(|| ToolChoiceParam {
            kind: "auto".into(),
            name: None,
            disable_parallel_tool_use: None,
        });
        if c.kind != "none" {
            c.disable_parallel_tool_use = Some(true);
        }
    }
    choice
}

/// System text from `system` and from system turns, in order: one string
/// joined with a blank line, or text blocks if any piece had blocks.
fn emit_system(r: &ir::Request) -> Result<Option<TextOr<BlockParam>>, PayloadError> {
    let mut texts = Vec::new();
    let mut blocks = Vec::new();
    let mut any_blocks = false;
    for (path, c) in r.system_contents() {
        match c {
            Content::Text(s) if s.is_empty() => {}
            Content::Text(s) => {
                texts.push(s.clone());
                blocks.push(text_block(s.clone()));
            }
            Content::Blocks(b) => {
                let b = emit_blocks(b, &path)?;
                any_blocks |= !b.is_empty();
                blocks.extend(b);
            }
        }
    }
    Ok(if any_blocks {
        Some(TextOr::Items(blocks))
    } else if texts.is_empty() {
        None
    } else {
        Some(TextOr::Text(texts.join("\n\n")))
    })
}

fn text_block(text: String) -> BlockParam {
    BlockParam::Text {
        text,
        cache_control: None,
    }
}

fn emit_turns(messages: &[ir::Message]) -> Result<Vec<MessageOut>, PayloadError> {
    let mut turns: Vec<Turn> = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let role = match m.role {
            Role::System => continue,
            Role::User => "user",
            Role::Assistant => "assistant",
        };
        let (results, blocks): (Vec<_>, Vec<_>) = match &m.content {
            Content::Text(s) if s.is_empty() => continue,
            Content::Text(s) => (Vec::new(), vec![text_block(s.clone())]),
            Content::Blocks(b) => emit_blocks(b, &format!("messages[{i}].content"))?
                .into_iter()
                .partition(|b| matches!(b, BlockParam::ToolResult { .. })),
        };
        if results.is_empty() && blocks.is_empty() {
            continue;
        }
        match turns.last_mut() {
            Some(last) if last.role == role => {
                last.results.extend(results);
                last.blocks.extend(blocks);
            }
            _ => turns.push(Turn {
                role,
                results,
                blocks,
            }),
        }
    }
    Ok(turns
        .into_iter()
        .map(|t| {
            let mut content = t.results;
            content.extend(t.blocks);
            MessageOut {
                role: t.role,
                content: compact(content),
            }
        })
        .collect())
}

/// Exactly one plain text block becomes a string.
fn compact(blocks: Vec<BlockParam>) -> TextOr<BlockParam> {
    match blocks.as_slice() {
        [BlockParam::Text {
            text,
            cache_control: None,
        }] => TextOr::Text(text.clone()),
        _ => TextOr::Items(blocks),
    }
}

/// IR blocks -> Messages blocks; empty text is dropped.
fn emit_blocks(blocks: &[Block], path: &str) -> Result<Vec<BlockParam>, PayloadError> {
    let mut out = Vec::with_capacity(blocks.len());
    for (j, b) in blocks.iter().enumerate() {
        if let Some(b) = emit_block(b, &format!("{path}[{j}]"))? {
            out.push(b);
        }
    }
    Ok(out)
}

fn emit_block(b: &Block, path: &str) -> Result<Option<BlockParam>, PayloadError> {
    Ok(Some(match b {
        Block::Text { text, .. } | Block::Refusal(text) if text.is_empty() => return Ok(None),
        Block::Text {
            text,
            cache_control,
        } => BlockParam::Text {
            text: text.clone(),
            cache_control: cache_control.clone(),
        },
        Block::Refusal(text) => text_block(text.clone()),
        Block::Image {
            source,
            cache_control,
        } => BlockParam::Image {
            source: match source {
                ir::ImageSource::Base64 { media_type, data } => ImageSourceParam::Base64 {
                    media_type: media_type.clone(),
                    data: data.clone(),
                },
                ir::ImageSource::Url(url) => ImageSourceParam::Url { url: url.clone() },
                ir::ImageSource::File(id) => ImageSourceParam::File {
                    file_id: id.clone(),
                },
            },
            cache_control: cache_control.clone(),
        },
        Block::Document { source } => BlockParam::Document {
            source: source.clone(),
        },
        Block::ToolCall { id, name, input } => BlockParam::ToolUse {
            id: tool_id(id),
            name: name.clone(),
            input: Some(input.clone()),
        },
        Block::ToolResult {
            tool_call_id,
            content,
            is_error,
        } => BlockParam::ToolResult {
            tool_use_id: tool_id(tool_call_id),
            content: Some(match content {
                Content::Text(s) => TextOr::Text(s.clone()),
                Content::Blocks(b) => TextOr::Items(
                    emit_blocks(b, &sub(path, "content"))?
                        .into_iter()
                        .map(Tagged::Known)
                        .collect(),
                ),
            }),
            is_error: is_error.then_some(true),
        },
        // Anthropic accepts thinking only under its own signature.
        Block::Thinking {
            thinking,
            signature,
        } => match signature.as_ref().and_then(|s| s.by(Issuer::Anthropic)) {
            Some(sig) => BlockParam::Thinking {
                thinking: Some(thinking.clone()),
                signature: Some(sig.to_owned()),
            },
            None => return Ok(None),
        },
        Block::RedactedThinking { data } => BlockParam::RedactedThinking {
            data: Some(data.clone()),
        },
        Block::Other { kind } => return Err(wire::untranslatable(path, kind, "Anthropic")),
    }))
}

// ---------------------------------------------------------------------------
// responses

#[derive(Deserialize)]
struct MessageResponse {
    id: Option<String>,
    model: Option<String>,
    content: Vec<Tagged<BlockParam>>,
    stop_reason: Option<String>,
    /// Read leniently by [`super::UsageAcc`] (wrong types count as absent).
    usage: Option<Value>,
}

#[derive(Serialize)]
struct MessageResponseOut {
    id: String,
    #[serde(rename = "type")]
    kind: &'static str,
    role: &'static str,
    model: String,
    content: Vec<BlockParam>,
    stop_reason: &'static str,
    stop_sequence: Option<String>,
    usage: UsageOut,
}

#[derive(Serialize)]
pub(crate) struct UsageOut {
    input_tokens: u64,
    cache_read_input_tokens: u64,
    output_tokens: u64,
}

impl From<Usage> for UsageOut {
    /// `input_tokens` excludes the cached part of the prompt.
    fn from(u: Usage) -> Self {
        UsageOut {
            input_tokens: u.prompt_tokens.saturating_sub(u.cached_tokens),
            cache_read_input_tokens: u.cached_tokens,
            output_tokens: u.completion_tokens,
        }
    }
}

/// Messages `stop_reason` -> the model's; unknown reasons end the turn.
pub fn parse_stop_reason(s: Option<&str>) -> StopReason {
    match s {
        Some("max_tokens") | Some("model_context_window_exceeded") => StopReason::MaxTokens,
        Some("tool_use") => StopReason::ToolUse,
        Some("refusal") => StopReason::Refusal,
        Some("stop_sequence") => StopReason::StopSequence,
        Some("pause_turn") => StopReason::PauseTurn,
        _ => StopReason::EndTurn,
    }
}

pub fn stop_reason_name(s: StopReason) -> &'static str {
    match s {
        StopReason::EndTurn => "end_turn",
        StopReason::StopSequence => "stop_sequence",
        StopReason::MaxTokens => "max_tokens",
        StopReason::ToolUse => "tool_use",
        StopReason::Refusal => "refusal",
        StopReason::PauseTurn => "pause_turn",
    }
}

/// Parses a Messages response (`type: "error"` is the upstream's error).
pub fn parse_response(v: &Value) -> Result<ir::Response, PayloadError> {
    let m = wire::object(v, "response")?;
    if m.get("type").and_then(Value::as_str) == Some("error") {
        return Err(PayloadError::Upstream(
            super::error_message(v).unwrap_or_else(|| "unspecified error".into()),
        ));
    }
    if !m.get("content").is_some_and(Value::is_array) {
        return Err(bad("message has no `content` array"));
    }
    let r: MessageResponse = wire::parse(m)?;
    let mut usage = super::UsageAcc::default();
    if let Some(u) = &r.usage {
        usage.update(u);
    }
    Ok(ir::Response {
        id: r.id.unwrap_or_default(),
        model: r.model.unwrap_or_default(),
        content: r.content.into_iter().map(parse_block).collect(),
        stop_reason: parse_stop_reason(r.stop_reason.as_deref()),
        usage: usage.get(),
        reasoning_tokens: 0,
    })
}

/// Emits a Messages response; blocks as in requests (ids made valid, empty
/// text dropped, refusals as text); usage zero when the model has none.
pub fn emit_response(r: &ir::Response) -> Result<Value, PayloadError> {
    let out = MessageResponseOut {
        id: r.id.clone(),
        kind: "message",
        role: "assistant",
        model: r.model.clone(),
        content: emit_blocks(&r.content, "content")?,
        stop_reason: stop_reason_name(r.stop_reason),
        stop_sequence: None,
        usage: r.usage.unwrap_or_default().into(),
    };
    serde_json::to_value(out).map_err(|e| bad(e.to_string()))
}
