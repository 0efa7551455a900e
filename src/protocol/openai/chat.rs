//! Chat Completions requests: the typed wire model, parsed into the
//! conversation model ([`crate::protocol::ir`]) and emitted from it.
//!
//! A request field the wire model does not declare is dropped when the
//! request is translated ([`DROPPED`] lists the known ones); a field whose
//! meaning the model cannot carry is refused by [`parse_request`], naming the
//! field ([`REFUSED`]).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Number, Value};

use crate::protocol::ir::{self, Block, Content, Effort, Reasoning, Role, StopReason};
use crate::protocol::wire::{self, bad, sub, untranslatable, Kinds, Tagged, TextOr};
use crate::protocol::{PayloadError, Usage};

/// Chat Completions fields dropped in translation (no counterpart; the
/// answer keeps its meaning). Any other undeclared field is dropped too.
pub const DROPPED: &[&str] = &[
    "n: 1",
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "logit_bias",
    "logprobs: false",
    "top_logprobs: 0",
    "store",
    "metadata",
    "service_tier",
    "prediction",
    "prompt_cache_key",
    "safety_identifier",
    "verbosity",
    "modalities: [\"text\"]",
    "tools[].function.strict",
    "messages[].name",
    "assistant reasoning_content / audio",
];

/// Chat Completions fields refused in translation (the caller would
/// silently get something else).
pub const REFUSED: &[&str] = &[
    "n > 1",
    "logprobs: true",
    "top_logprobs > 0",
    "audio",
    "modalities other than text",
    "web_search_options",
    "functions",
    "function_call",
    "role: function",
];

// ---------------------------------------------------------------------------
// the wire model

#[derive(Deserialize)]
struct ChatRequest {
    messages: Vec<ChatMessage>,
    max_completion_tokens: Option<u64>,
    max_tokens: Option<u64>,
    stop: Option<Stop>,
    temperature: Option<Number>,
    top_p: Option<Number>,
    /// Anthropic's own field, accepted from OpenAI callers.
    top_k: Option<Number>,
    tools: Option<Vec<ChatTool>>,
    tool_choice: Option<ChatToolChoice>,
    parallel_tool_calls: Option<bool>,
    response_format: Option<ResponseFormat>,
    reasoning_effort: Option<String>,
    /// Anthropic's own field, accepted from OpenAI callers.
    thinking: Option<Value>,
    user: Option<String>,
    stream: Option<bool>,
    stream_options: Option<StreamOptions>,
    #[serde(flatten)]
    refused: Refusable,
}

/// Fields read only to refuse them.
#[derive(Deserialize)]
struct Refusable {
    n: Option<u64>,
    logprobs: Option<bool>,
    top_logprobs: Option<u64>,
    audio: Option<Value>,
    modalities: Option<Vec<String>>,
    web_search_options: Option<Value>,
    functions: Option<Value>,
    function_call: Option<Value>,
}

#[derive(Deserialize, Serialize)]
struct StreamOptions {
    include_usage: Option<bool>,
}

#[derive(Deserialize, Serialize)]
struct ResponseFormat {
    #[serde(rename = "type")]
    kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    json_schema: Option<Value>,
}

#[derive(Deserialize, Serialize)]
#[serde(untagged)]
enum Stop {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
struct ChatMessage {
    role: String,
    content: Option<TextOr<Tagged<Part>>>,
    tool_calls: Option<Vec<ChatToolCall>>,
    tool_call_id: Option<String>,
    function_call: Option<Value>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum ChatContent {
    Text(String),
    Parts(Vec<Tagged<Part>>),
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Part {
    Text {
        text: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        cache_control: Option<Value>,
    },
    ImageUrl {
        image_url: ImageUrl,
        #[serde(skip_serializing_if = "Option::is_none")]
        cache_control: Option<Value>,
    },
    Refusal {
        refusal: String,
    },
}

impl Kinds for Part {
    const KINDS: &'static [&'static str] = &["text", "image_url", "refusal"];
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(untagged)]
enum ImageUrl {
    Url(String),
    Object { url: String },
}

#[derive(Deserialize, Serialize)]
struct ChatToolCall {
    id: String,
    #[serde(rename = "type")]
    kind: Option<String>,
    function: Option<FunctionCall>,
}

#[derive(Deserialize, Serialize)]
struct FunctionCall {
    name: String,
    arguments: Option<Value>,
}

#[derive(Deserialize, Serialize)]
struct ChatTool {
    #[serde(rename = "type")]
    kind: Option<String>,
    function: Option<FunctionDef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cache_control: Option<Value>,
}

#[derive(Deserialize, Serialize)]
struct FunctionDef {
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    parameters: Option<Map<String, Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    strict: Option<bool>,
}

#[derive(Deserialize, Serialize)]
#[serde(untagged)]
enum ChatToolChoice {
    Mode(String),
    Named {
        #[serde(rename = "type")]
        kind: Option<String>,
        function: Option<NamedFunction>,
    },
}

#[derive(Deserialize, Serialize)]
struct NamedFunction {
    name: String,
}

// ---------------------------------------------------------------------------
// parse: Chat Completions -> ir

/// Parses a Chat Completions request into the conversation model.
pub fn parse_request(body: &Map<String, Value>) -> Result<ir::Request, PayloadError> {
    if body.get("messages").is_none_or(Value::is_null) {
        return Err(bad("`messages` is required"));
    }
    let req: ChatRequest = wire::parse(body)?;
    refuse(&req.refused)?;
    let messages = req
        .messages
        .into_iter()
        .enumerate()
        .map(|(i, m)| parse_message(m, &format!("messages[{i}]")))
        .collect::<Result<_, _>>()?;
    let reasoning = match (req.thinking, req.reasoning_effort) {
        (Some(Value::Object(t)), _) => Some(Reasoning::Native(t)),
        (Some(_), _) => return Err(bad("`thinking` must be an object")),
        (None, Some(effort)) => Some(parse_effort(&effort)?),
        (None, None) => None,
    };
    Ok(ir::Request {
        model: body.get("model").cloned(),
        system: None,
        messages,
        tools: parse_tools(req.tools.unwrap_or_default())?,
        tool_choice: req.tool_choice.map(parse_tool_choice).transpose()?,
        parallel_tool_calls: req.parallel_tool_calls,
        sampling: ir::Sampling {
            temperature: req.temperature,
            top_p: req.top_p,
            top_k: req.top_k,
        },
        stop: match req.stop {
            None => Vec::new(),
            Some(Stop::One(s)) => vec![s],
            Some(Stop::Many(list)) => list,
        },
        max_output_tokens: req.max_completion_tokens.or(req.max_tokens),
        response_format: req.response_format.map(parse_format).transpose()?,
        stream: req.stream,
        include_usage: req.stream_options.and_then(|o| o.include_usage),
        user: req.user,
        reasoning,
        openai_extras: OPENAI_EXTRAS
            .iter()
            .filter_map(|k| {
                Some((
                    k.to_string(),
                    body.get(*k).filter(|v| !v.is_null())?.clone(),
                ))
            })
            .collect(),
    })
}

/// The fields carried in [`ir::Request::openai_extras`].
pub const OPENAI_EXTRAS: &[&str] = &[
    "verbosity",
    "metadata",
    "service_tier",
    "prompt_cache_key",
    "safety_identifier",
];

/// Refuses the fields of [`REFUSED`].
fn refuse(r: &Refusable) -> Result<(), PayloadError> {
    if r.n.is_some_and(|n| n != 1) {
        return Err(bad("`n` > 1 cannot be translated (one choice only)"));
    }
    if r.logprobs == Some(true) {
        return Err(bad("`logprobs` cannot be translated"));
    }
    if r.top_logprobs.unwrap_or(0) > 0 {
        return Err(bad("`top_logprobs` cannot be translated"));
    }
    if r.audio.is_some() {
        return Err(bad("`audio` output cannot be translated"));
    }
    if r.modalities.iter().flatten().any(|m| m != "text") {
        return Err(bad("`modalities` other than text cannot be translated"));
    }
    if r.web_search_options.is_some() {
        return Err(bad("`web_search_options` cannot be translated"));
    }
    if r.functions.is_some() || r.function_call.is_some() {
        return Err(bad(
            "legacy `functions` / `function_call` are not supported; use tools",
        ));
    }
    Ok(())
}

pub(crate) fn parse_effort(effort: &str) -> Result<Reasoning, PayloadError> {
    Ok(match effort {
        "none" => Reasoning::Off,
        "minimal" => Reasoning::Effort(Effort::Minimal),
        "low" => Reasoning::Effort(Effort::Low),
        "medium" => Reasoning::Effort(Effort::Medium),
        "high" => Reasoning::Effort(Effort::High),
        other => {
            return Err(bad(format!(
                "`reasoning_effort` value `{other}` is not supported"
            )))
        }
    })
}

fn parse_format(f: ResponseFormat) -> Result<ir::ResponseFormat, PayloadError> {
    match f.kind.as_str() {
        "text" => Ok(ir::ResponseFormat::Text),
        "json_object" => Ok(ir::ResponseFormat::JsonObject),
        "json_schema" => Ok(ir::ResponseFormat::JsonSchema(
            f.json_schema.unwrap_or(Value::Null),
        )),
        other => Err(bad(format!(
            "`response_format` type `{other}` is not supported"
        ))),
    }
}

fn parse_message(m: ChatMessage, path: &str) -> Result<ir::Message, PayloadError> {
    let cpath = sub(path, "content");
    let (role, images, refusals) = match m.role.as_str() {
        "system" | "developer" => (Role::System, false, false),
        "user" => (Role::User, true, false),
        "assistant" => (Role::Assistant, false, true),
        "tool" => {
            let Some(id) = m.tool_call_id else {
                return Err(bad(format!("`{path}.tool_call_id` is required")));
            };
            let content = match m.content {
                None => Content::Text(String::new()),
                Some(c) => parse_content(c, &cpath, true, false)?,
            };
            let result = Block::ToolResult {
                tool_call_id: id,
                content,
                is_error: false,
            };
            return Ok(ir::Message {
                role: Role::User,
                content: Content::Blocks(vec![result]),
            });
        }
        "function" => {
            return Err(bad(format!(
                "`{path}.role` `function` (legacy functions) is not supported; use tool messages"
            )))
        }
        other => return Err(bad(format!("`{path}.role` `{other}` is not supported"))),
    };
    if m.function_call.is_some() {
        return Err(bad(format!(
            "`{path}.function_call` (legacy functions) is not supported; use tool_calls"
        )));
    }
    let content = match m.content {
        None => Content::Blocks(Vec::new()),
        Some(c) => parse_content(c, &cpath, images, refusals)?,
    };
    let Some(calls) = m.tool_calls.filter(|_| role == Role::Assistant) else {
        return Ok(ir::Message { role, content });
    };
    let mut blocks = match content {
        Content::Text(t) => vec![text(t)],
        Content::Blocks(b) => b,
    };
    for (j, call) in calls.into_iter().enumerate() {
        blocks.push(parse_call(call, &format!("{path}.tool_calls[{j}]"))?);
    }
    Ok(ir::Message {
        role,
        content: Content::Blocks(blocks),
    })
}

fn text(text: String) -> Block {
    Block::Text {
        text,
        cache_control: None,
    }
}

fn parse_content(
    c: TextOr<Tagged<Part>>,
    path: &str,
    images: bool,
    refusals: bool,
) -> Result<Content, PayloadError> {
    let parts = match c {
        TextOr::Text(s) => return Ok(Content::Text(s)),
        TextOr::Items(parts) => parts,
    };
    let mut blocks = Vec::with_capacity(parts.len());
    for (j, part) in parts.into_iter().enumerate() {
        let ppath = format!("{path}[{j}]");
        blocks.push(match part {
            Tagged::Known(Part::Text {
                text,
                cache_control,
            }) => Block::Text {
                text,
                cache_control,
            },
            Tagged::Known(Part::Refusal { refusal }) if refusals => Block::Refusal(refusal),
            Tagged::Known(Part::ImageUrl {
                image_url,
                cache_control,
            }) if images => Block::Image {
                source: parse_image_url(image_url, &ppath)?,
                cache_control,
            },
            other => {
                let kind = match &other {
                    Tagged::Known(Part::Text { .. }) => "text",
                    Tagged::Known(Part::Refusal { .. }) => "refusal",
                    Tagged::Known(Part::ImageUrl { .. }) => "image_url",
                    Tagged::Unknown(k) => k,
                };
                return Err(bad(format!(
                    "`{ppath}`: content part type `{kind}` cannot be translated"
                )));
            }
        });
    }
    Ok(Content::Blocks(blocks))
}

fn parse_image_url(u: ImageUrl, path: &str) -> Result<ir::ImageSource, PayloadError> {
    let url = match u {
        ImageUrl::Url(u) | ImageUrl::Object { url: u } => u,
    };
    image_source(url, &format!("{path}.image_url.url"))
}

/// An image URL (a base64 data URL or http(s)) as an image source.
pub(crate) fn image_source(url: String, path: &str) -> Result<ir::ImageSource, PayloadError> {
    if let Some((media, data)) = parse_data_url(&url) {
        return Ok(ir::ImageSource::Base64 {
            media_type: media.to_owned(),
            data: data.to_owned(),
        });
    }
    let lower = url.get(..8).unwrap_or(&url).to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") {
        return Ok(ir::ImageSource::Url(url));
    }
    Err(bad(format!(
        "`{path}` must be a base64 data URL or an http(s) URL"
    )))
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

fn parse_call(call: ChatToolCall, path: &str) -> Result<Block, PayloadError> {
    if let Some(t) = call.kind.filter(|t| t != "function") {
        return Err(bad(format!("`{path}.type` `{t}` cannot be translated")));
    }
    let fpath = sub(path, "function");
    let f = call
        .function
        .ok_or_else(|| bad(format!("`{fpath}` is required")))?;
    Ok(Block::ToolCall {
        id: call.id,
        name: f.name,
        input: parse_arguments(f.arguments.as_ref(), &sub(&fpath, "arguments"))?,
    })
}

/// Parses tool-call arguments (a JSON string; `""` means `{}`) into an object.
pub(crate) fn parse_arguments(
    args: Option<&Value>,
    path: &str,
) -> Result<Map<String, Value>, PayloadError> {
    match args {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(m)) => Ok(m.clone()),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(Map::new()),
        Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
            Ok(Value::Object(m)) => Ok(m),
            Ok(_) => Err(bad(format!("`{path}` must encode a JSON object"))),
            Err(e) => Err(bad(format!("`{path}` is not valid JSON: {e}"))),
        },
        Some(_) => Err(bad(format!("`{path}` must be a string"))),
    }
}

fn parse_tools(tools: Vec<ChatTool>) -> Result<Vec<ir::Tool>, PayloadError> {
    let mut out = Vec::with_capacity(tools.len());
    for (i, t) in tools.into_iter().enumerate() {
        let path = format!("tools[{i}]");
        if let Some(other) = t.kind.filter(|k| k != "function") {
            return Err(bad(format!("`{path}.type` `{other}` cannot be translated")));
        }
        let f = t
            .function
            .ok_or_else(|| bad(format!("`{path}.function` is required")))?;
        out.push(ir::Tool::Function(ir::FunctionTool {
            name: f.name,
            description: f.description,
            parameters: f.parameters,
            cache_control: t.cache_control,
            strict: f.strict,
        }));
    }
    Ok(out)
}

fn parse_tool_choice(c: ChatToolChoice) -> Result<ir::ToolChoice, PayloadError> {
    match c {
        ChatToolChoice::Mode(m) => match m.as_str() {
            "auto" => Ok(ir::ToolChoice::Auto),
            "required" => Ok(ir::ToolChoice::Required),
            "none" => Ok(ir::ToolChoice::None),
            other => Err(bad(format!(
                "`tool_choice` value `{other}` is not supported"
            ))),
        },
        ChatToolChoice::Named { kind, function } => {
            if kind.as_deref() != Some("function") {
                return Err(bad(format!(
                    "`tool_choice` type `{}` cannot be translated",
                    kind.unwrap_or_default()
                )));
            }
            let f = function.ok_or_else(|| bad("`tool_choice.function` is required"))?;
            Ok(ir::ToolChoice::Tool(f.name))
        }
    }
}

// ---------------------------------------------------------------------------
// emit: ir -> Chat Completions

/// Emitted request: field order as OpenAI documents it.
#[derive(Serialize)]
struct ChatRequestOut {
    #[serde(skip_serializing_if = "Option::is_none")]
    model: Option<Value>,
    messages: Vec<MessageOut>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_completion_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stop: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<Number>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<Number>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tools: Option<Vec<ChatTool>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<ChatToolChoice>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parallel_tool_calls: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_format: Option<ResponseFormat>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_effort: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_options: Option<StreamOptions>,
    #[serde(flatten)]
    extras: Map<String, Value>,
}

#[derive(Serialize)]
#[serde(tag = "role", rename_all = "snake_case")]
enum MessageOut {
    System {
        content: String,
    },
    User {
        content: ChatContent,
    },
    Assistant {
        content: Option<String>,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        tool_calls: Vec<ChatToolCall>,
    },
    Tool {
        tool_call_id: String,
        content: String,
    },
}

/// What the Chat Completions side drops from the model, by block kind and
/// place; every other kind it cannot hold is refused naming its path.
/// Thinking has no place in a request; server-tool turns and tool
/// references are Anthropic's own bookkeeping.
pub fn drops_block(kind: &str, place: Place) -> bool {
    match place {
        Place::Assistant => matches!(
            kind,
            "thinking" | "redacted_thinking" | "server_tool_use" | "tool_search_tool_result"
        ),
        Place::ToolResult => kind == "tool_reference",
        Place::User | Place::System => false,
    }
}

/// Where a block sits, for [`drops_block`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    System,
    User,
    Assistant,
    ToolResult,
}

/// Tools dropped on the Chat Completions side: the tool search tool only
/// finds deferred tools, and Chat endpoints get every tool in full.
pub fn drops_tool(kind: &str) -> bool {
    kind.starts_with("tool_search_tool")
}

/// The effort for a thinking budget: `<= 2048` low, `<= 8192` medium, else high.
pub fn effort_for_budget(budget: u64) -> &'static str {
    if budget <= 2048 {
        "low"
    } else if budget <= 8192 {
        "medium"
    } else {
        "high"
    }
}

/// Emits a Chat Completions request from the conversation model.
pub fn emit_request(r: &ir::Request) -> Result<Value, PayloadError> {
    let mut messages = Vec::new();
    if let Some(s) = &r.system {
        let text = texts(s, "system", Place::System)?.join("\n\n");
        if !text.is_empty() {
            messages.push(MessageOut::System { content: text });
        }
    }
    for (i, m) in r.messages.iter().enumerate() {
        emit_message(m, &format!("messages[{i}]"), &mut messages)?;
    }
    let tool_choice = r.tool_choice.as_ref().map(|c| match c {
        ir::ToolChoice::Auto => ChatToolChoice::Mode("auto".into()),
        ir::ToolChoice::Required => ChatToolChoice::Mode("required".into()),
        ir::ToolChoice::None => ChatToolChoice::Mode("none".into()),
        ir::ToolChoice::Tool(name) => ChatToolChoice::Named {
            kind: Some("function".into()),
            function: Some(NamedFunction { name: name.clone() }),
        },
    });
    let tools = emit_tools(&r.tools)?;
    let out = ChatRequestOut {
        model: r.model.clone(),
        messages,
        max_completion_tokens: r.max_output_tokens,
        stop: Some(r.stop.clone()).filter(|s| !s.is_empty()),
        temperature: r.sampling.temperature.clone(),
        top_p: r.sampling.top_p.clone(),
        tools: Some(tools).filter(|t| !t.is_empty()),
        tool_choice,
        parallel_tool_calls: r.parallel_tool_calls,
        response_format: r.response_format.as_ref().map(emit_format),
        user: r.user.clone(),
        reasoning_effort: match &r.reasoning {
            Some(Reasoning::Budget(b)) => Some(effort_for_budget(*b)),
            Some(Reasoning::Effort(e)) => Some(effort_name(*e)),
            _ => None,
        },
        stream: r.stream,
        stream_options: r.include_usage.map(|u| StreamOptions {
            include_usage: Some(u),
        }),
        extras: r.openai_extras.clone(),
    };
    serde_json::to_value(out).map_err(|e| bad(e.to_string()))
}

pub(crate) fn effort_name(e: Effort) -> &'static str {
    match e {
        Effort::Minimal => "minimal",
        Effort::Low => "low",
        Effort::Medium => "medium",
        Effort::High => "high",
    }
}

fn emit_format(f: &ir::ResponseFormat) -> ResponseFormat {
    let (kind, json_schema) = match f {
        ir::ResponseFormat::Text => ("text", None),
        ir::ResponseFormat::JsonObject => ("json_object", None),
        ir::ResponseFormat::JsonSchema(s) => ("json_schema", Some(s.clone())),
    };
    ResponseFormat {
        kind: kind.into(),
        json_schema,
    }
}

fn emit_tools(tools: &[ir::Tool]) -> Result<Vec<ChatTool>, PayloadError> {
    let mut out = Vec::with_capacity(tools.len());
    for (i, t) in tools.iter().enumerate() {
        match t {
            ir::Tool::Function(f) => out.push(ChatTool {
                kind: Some("function".into()),
                function: Some(FunctionDef {
                    name: f.name.clone(),
                    description: f.description.clone(),
                    parameters: Some(f.parameters.clone().unwrap_or_else(empty_schema)),
                    strict: f.strict,
                }),
                cache_control: None,
            }),
            ir::Tool::Hosted { kind } if drops_tool(kind) => {}
            ir::Tool::Hosted { kind } => {
                return Err(bad(format!(
                    "`tools[{i}]`: server tool `{kind}` cannot be translated to OpenAI"
                )))
            }
        }
    }
    Ok(out)
}

/// `{"type":"object","properties":{}}`, the schema of a tool given none.
pub(crate) fn empty_schema() -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("type".into(), Value::from("object"));
    m.insert("properties".into(), Value::Object(Map::new()));
    m
}

/// Text-only content (system text, tool results without images) -> texts.
fn texts(c: &Content, path: &str, place: Place) -> Result<Vec<String>, PayloadError> {
    let blocks = match c {
        Content::Text(s) => return Ok(vec![s.clone()]),
        Content::Blocks(b) => b,
    };
    let mut out = Vec::new();
    for (i, b) in blocks.iter().enumerate() {
        match b {
            Block::Text { text, .. } => out.push(text.clone()),
            b if drops_block(b.kind(), place) => {}
            b => {
                return Err(untranslatable(
                    &format!("{path}[{i}]"),
                    b.kind(),
                    "OpenAI here",
                ))
            }
        }
    }
    Ok(out)
}

fn emit_message(
    m: &ir::Message,
    path: &str,
    out: &mut Vec<MessageOut>,
) -> Result<(), PayloadError> {
    let cpath = sub(path, "content");
    match (m.role, &m.content) {
        (Role::System, c) => out.push(MessageOut::System {
            content: texts(c, &cpath, Place::System)?.join("\n\n"),
        }),
        (Role::User, Content::Text(s)) => out.push(MessageOut::User {
            content: ChatContent::Text(s.clone()),
        }),
        (Role::Assistant, Content::Text(s)) => out.push(MessageOut::Assistant {
            content: Some(s.clone()),
            tool_calls: Vec::new(),
        }),
        (Role::User, Content::Blocks(blocks)) => emit_user(blocks, &cpath, out)?,
        (Role::Assistant, Content::Blocks(blocks)) => emit_assistant(blocks, &cpath, out)?,
    }
    Ok(())
}

fn image_part(source: &ir::ImageSource, path: &str) -> Result<Part, PayloadError> {
    let url = match source {
        ir::ImageSource::Base64 { media_type, data } => {
            format!("data:{media_type};base64,{data}")
        }
        ir::ImageSource::Url(u) => u.clone(),
        ir::ImageSource::File(_) => {
            return Err(bad(format!(
                "`{path}.source.type` `file` cannot be translated to OpenAI"
            )))
        }
    };
    Ok(Part::ImageUrl {
        image_url: ImageUrl::Object { url },
        cache_control: None,
    })
}

fn text_part(text: &str) -> Tagged<Part> {
    Tagged::Known(Part::Text {
        text: text.to_owned(),
        cache_control: None,
    })
}

/// A user turn: its tool results become `tool` messages first (a `tool`
/// message holds text only: images in results follow in a user message),
/// then the rest of the turn.
fn emit_user(blocks: &[Block], path: &str, out: &mut Vec<MessageOut>) -> Result<(), PayloadError> {
    let mut parts = Vec::new();
    let mut tool_images = Vec::new();
    for (j, b) in blocks.iter().enumerate() {
        let bp = format!("{path}[{j}]");
        match b {
            Block::Text { text, .. } => parts.push(text_part(text)),
            Block::Image { source, .. } => parts.push(Tagged::Known(image_part(source, &bp)?)),
            Block::ToolResult {
                tool_call_id,
                content,
                ..
            } => {
                let content = tool_result_text(content, &sub(&bp, "content"), &mut tool_images)?;
                out.push(MessageOut::Tool {
                    tool_call_id: tool_call_id.clone(),
                    content,
                });
            }
            b => return Err(untranslatable(&bp, b.kind(), "OpenAI")),
        }
    }
    if !tool_images.is_empty() {
        let mut with = vec![text_part("(images returned by the tool calls above)")];
        with.append(&mut tool_images);
        with.append(&mut parts);
        parts = with;
    }
    if parts.is_empty() {
        return Ok(());
    }
    let content = match parts.as_slice() {
        [Tagged::Known(Part::Text { text, .. })] => ChatContent::Text(text.clone()),
        _ => ChatContent::Parts(parts),
    };
    out.push(MessageOut::User { content });
    Ok(())
}

fn tool_result_text(
    c: &Content,
    path: &str,
    images: &mut Vec<Tagged<Part>>,
) -> Result<String, PayloadError> {
    let Content::Blocks(blocks) = c else {
        return Ok(texts(c, path, Place::ToolResult)?.join("\n"));
    };
    let mut texts = Vec::new();
    for (i, b) in blocks.iter().enumerate() {
        let bp = format!("{path}[{i}]");
        match b {
            Block::Text { text, .. } => texts.push(text.as_str()),
            Block::Image { source, .. } => images.push(Tagged::Known(image_part(source, &bp)?)),
            b if drops_block(b.kind(), Place::ToolResult) => {}
            b => return Err(untranslatable(&bp, b.kind(), "OpenAI here")),
        }
    }
    Ok(texts.join("\n"))
}

fn emit_assistant(
    blocks: &[Block],
    path: &str,
    out: &mut Vec<MessageOut>,
) -> Result<(), PayloadError> {
    let mut text = String::new();
    let mut tool_calls = Vec::new();
    for (j, b) in blocks.iter().enumerate() {
        match b {
            Block::Text { text: t, .. } => text.push_str(t),
            Block::ToolCall { id, name, input } => tool_calls.push(tool_call(id, name, input)),
            b if drops_block(b.kind(), Place::Assistant) => {}
            b => return Err(untranslatable(&format!("{path}[{j}]"), b.kind(), "OpenAI")),
        }
    }
    if tool_calls.is_empty() && text.is_empty() {
        return Ok(());
    }
    let content = Some(text).filter(|t| !t.is_empty() || tool_calls.is_empty());
    out.push(MessageOut::Assistant {
        content,
        tool_calls,
    });
    Ok(())
}

// ---------------------------------------------------------------------------
// responses

#[derive(Deserialize)]
struct ChatResponse {
    id: Option<String>,
    model: Option<String>,
    choices: Vec<ChatChoice>,
    /// Read leniently (wrong types count as absent).
    usage: Option<Value>,
}

#[derive(Deserialize)]
struct ChatChoice {
    message: Option<ResponseMessage>,
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct ResponseMessage {
    content: Option<TextOr<Tagged<Part>>>,
    refusal: Option<String>,
    tool_calls: Option<Vec<ChatToolCall>>,
}

#[derive(Serialize)]
struct ChatResponseOut {
    id: String,
    object: &'static str,
    created: u64,
    model: String,
    choices: [ChoiceOut; 1],
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<UsageOut>,
}

#[derive(Serialize)]
struct ChoiceOut {
    index: u32,
    message: ResponseMessageOut,
    logprobs: Option<()>,
    finish_reason: &'static str,
}

#[derive(Serialize)]
struct ResponseMessageOut {
    role: &'static str,
    content: Option<String>,
    refusal: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<ChatToolCall>,
    /// Thinking text, as DeepSeek and vLLM expose it.
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_content: Option<String>,
}

#[derive(Serialize)]
pub(crate) struct UsageOut {
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
    prompt_tokens_details: CachedTokens,
    #[serde(skip_serializing_if = "Option::is_none")]
    completion_tokens_details: Option<ReasoningTokens>,
}

#[derive(Serialize)]
struct CachedTokens {
    cached_tokens: u64,
}

#[derive(Serialize)]
struct ReasoningTokens {
    reasoning_tokens: u64,
}

impl UsageOut {
    /// With `completion_tokens_details.reasoning_tokens` when `n > 0`.
    pub(crate) fn with_reasoning(mut self, n: u64) -> Self {
        self.completion_tokens_details = (n > 0).then_some(ReasoningTokens {
            reasoning_tokens: n,
        });
        self
    }
}

impl From<Usage> for UsageOut {
    fn from(u: Usage) -> Self {
        UsageOut {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
            total_tokens: u.prompt_tokens.saturating_add(u.completion_tokens),
            prompt_tokens_details: CachedTokens {
                cached_tokens: u.cached_tokens,
            },
            completion_tokens_details: None,
        }
    }
}

/// `finish_reason` -> the model's stop reason.
pub fn parse_finish_reason(f: Option<&str>) -> StopReason {
    match f {
        Some("length") => StopReason::MaxTokens,
        Some("tool_calls") | Some("function_call") => StopReason::ToolUse,
        Some("content_filter") => StopReason::Refusal,
        _ => StopReason::EndTurn,
    }
}

/// The model's stop reason -> `finish_reason`.
pub fn finish_reason_name(s: StopReason) -> &'static str {
    match s {
        StopReason::EndTurn | StopReason::StopSequence | StopReason::PauseTurn => "stop",
        StopReason::MaxTokens => "length",
        StopReason::ToolUse => "tool_calls",
        StopReason::Refusal => "content_filter",
    }
}

/// The message of a Chat Completions error body (`error.message`, or
/// `error` as a string).
pub(crate) fn error_message(v: &Value) -> Option<String> {
    match v.get("error") {
        Some(Value::Object(e)) => e.get("message").and_then(Value::as_str).map(str::to_owned),
        Some(Value::String(s)) => Some(s.clone()),
        _ => v.get("message").and_then(Value::as_str).map(str::to_owned),
    }
}

/// Parses a `chat.completion` (choice 0; an `error` member is the
/// upstream's error).
pub fn parse_response(v: &Value) -> Result<ir::Response, PayloadError> {
    let m = wire::object(v, "response")?;
    if m.get("error").is_some_and(|e| !e.is_null()) {
        return Err(PayloadError::Upstream(
            error_message(v).unwrap_or_else(|| "unspecified error".into()),
        ));
    }
    let r: ChatResponse = wire::parse(m)?;
    let choice = r
        .choices
        .into_iter()
        .next()
        .ok_or_else(|| bad("`choices` is empty"))?;
    let message = choice
        .message
        .ok_or_else(|| bad("`choices[0].message` is required"))?;
    let path = "choices[0].message";
    let mut content = match message.content {
        None => Vec::new(),
        Some(c) => match parse_content(c, &sub(path, "content"), false, true)? {
            Content::Text(t) => vec![text(t)],
            Content::Blocks(b) => b,
        },
    };
    // A refusal is the answer when there is no content.
    let answered = content.iter().any(|b| match b {
        Block::Text { text, .. } | Block::Refusal(text) => !text.is_empty(),
        _ => false,
    });
    if !answered {
        content.extend(message.refusal.map(Block::Refusal));
    }
    for (j, call) in message.tool_calls.into_iter().flatten().enumerate() {
        content.push(parse_call(call, &format!("{path}.tool_calls[{j}]"))?);
    }
    Ok(ir::Response {
        id: r.id.unwrap_or_default(),
        model: r.model.unwrap_or_default(),
        content,
        stop_reason: parse_finish_reason(choice.finish_reason.as_deref()),
        usage: r.usage.as_ref().and_then(super::parse_usage),
        reasoning_tokens: r.usage.as_ref().map_or(0, reasoning_tokens),
    })
}

/// `completion_tokens_details.reasoning_tokens` of a usage object, or 0.
pub(crate) fn reasoning_tokens(usage: &Value) -> u64 {
    usage
        .pointer("/completion_tokens_details/reasoning_tokens")
        .and_then(Value::as_u64)
        .unwrap_or(0)
}

/// Emits a `chat.completion`: text blocks concatenated into `content`
/// (`null` when there are only tool calls), thinking into
/// `reasoning_content`; signatures, redacted thinking and blocks of other
/// kinds are dropped. `created` comes from the caller.
pub fn emit_response(r: &ir::Response, created: u64) -> Result<Value, PayloadError> {
    let mut content = String::new();
    let mut reasoning = String::new();
    let mut refusal: Option<String> = None;
    let mut tool_calls = Vec::new();
    for b in &r.content {
        match b {
            Block::Text { text, .. } => content.push_str(text),
            Block::Thinking { thinking, .. } => reasoning.push_str(thinking),
            Block::Refusal(t) => refusal.get_or_insert_with(String::new).push_str(t),
            Block::ToolCall { id, name, input } => tool_calls.push(tool_call(id, name, input)),
            _ => {}
        }
    }
    let out = ChatResponseOut {
        id: r.id.clone(),
        object: "chat.completion",
        created,
        model: r.model.clone(),
        choices: [ChoiceOut {
            index: 0,
            message: ResponseMessageOut {
                role: "assistant",
                content: Some(content).filter(|c| !c.is_empty() || tool_calls.is_empty()),
                refusal,
                tool_calls,
                reasoning_content: Some(reasoning).filter(|r| !r.is_empty()),
            },
            logprobs: None,
            finish_reason: finish_reason_name(r.stop_reason),
        }],
        usage: r
            .usage
            .map(|u| UsageOut::from(u).with_reasoning(r.reasoning_tokens)),
    };
    serde_json::to_value(out).map_err(|e| bad(e.to_string()))
}

fn tool_call(id: &str, name: &str, input: &Map<String, Value>) -> ChatToolCall {
    ChatToolCall {
        id: id.to_owned(),
        kind: Some("function".into()),
        function: Some(FunctionCall {
            name: name.to_owned(),
            arguments: Some(Value::String(Value::Object(input.clone()).to_string())),
        }),
    }
}
