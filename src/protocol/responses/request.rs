//! Responses requests: the typed wire model, parsed into the conversation
//! model ([`crate::protocol::ir`]) and emitted from it. What each direction
//! drops or refuses is [`DROPPED`] / [`REFUSED`] and the notes in
//! docs/protocols.md.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Number, Value};

use super::{flat_name, signature_in, Namespaces};
use crate::protocol::ir::{self, Block, Content, Reasoning, Role};
use crate::protocol::openai::chat;
use crate::protocol::wire::{self, bad, Kinds, Tagged, TextOr};
use crate::protocol::PayloadError;

/// Responses fields dropped on the way to another protocol (no
/// counterpart; the answer keeps its meaning). Any other undeclared field
/// is dropped too.
pub const DROPPED: &[&str] = &[
    "hosted tools (web_search, file_search, code_interpreter, image_generation, mcp, ...)",
    "web_search_call items",
    "reasoning items (other than llmux's own Anthropic thinking)",
    "item id / status",
    "include",
    "prompt_cache_key",
    "client_metadata",
    "metadata",
    "reasoning.summary",
    "store: false",
    "service_tier",
    "safety_identifier",
    "truncation",
    "stream_options",
    "background: false",
    "text.format: text",
    "top_logprobs: 0",
    "input_image.detail",
];

/// Responses fields refused on the way to another protocol (only a
/// Responses endpoint keeps state, or the caller would silently get
/// something else).
pub const REFUSED: &[&str] = &[
    "store: true",
    "previous_response_id",
    "conversation",
    "prompt",
    "background: true",
    "max_tool_calls",
    "top_logprobs > 0",
    "custom tools",
    "item_reference and other item types",
    "input_file / input_audio parts",
    "images in function_call_output",
];

/// Fields refused when a Chat or Anthropic caller's request goes to a
/// Responses endpoint, on top of what their own parsers refuse.
pub const REFUSED_INBOUND: &[&str] = &["stop / stop_sequences"];

// ---------------------------------------------------------------------------
// the wire model

#[derive(Deserialize)]
struct ResponsesRequest {
    input: Option<TextOr<InputItem>>,
    instructions: Option<String>,
    tools: Option<Vec<Tagged<ToolParam>>>,
    tool_choice: Option<ToolChoiceParam>,
    parallel_tool_calls: Option<bool>,
    temperature: Option<Number>,
    top_p: Option<Number>,
    user: Option<String>,
    stream: Option<bool>,
    max_output_tokens: Option<u64>,
    reasoning: Option<ReasoningParam>,
    text: Option<TextParam>,
    #[serde(flatten)]
    refused: Refusable,
}

/// Fields read only to refuse them.
#[derive(Deserialize)]
struct Refusable {
    store: Option<bool>,
    previous_response_id: Option<Value>,
    conversation: Option<Value>,
    prompt: Option<Value>,
    max_tool_calls: Option<Value>,
    background: Option<bool>,
    top_logprobs: Option<u64>,
}

#[derive(Deserialize, Serialize)]
struct ReasoningParam {
    #[serde(skip_serializing_if = "Option::is_none")]
    effort: Option<String>,
}

#[derive(Deserialize, Serialize, Default)]
struct TextParam {
    #[serde(skip_serializing_if = "Option::is_none")]
    format: Option<Map<String, Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    verbosity: Option<Value>,
}

/// An input item; a `message` may leave out its `type`.
struct InputItem(Tagged<ItemParam>);

impl<'de> Deserialize<'de> for InputItem {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut v = Value::deserialize(d)?;
        if let Value::Object(m) = &mut v {
            if !m.contains_key("type") && m.contains_key("role") {
                m.insert("type".into(), Value::from("message"));
            }
        }
        Tagged::deserialize(v)
            .map(InputItem)
            .map_err(serde::de::Error::custom)
    }
}

#[derive(Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ItemParam {
    Message {
        role: String,
        content: TextOr<Tagged<PartParam>>,
    },
    FunctionCall {
        call_id: String,
        name: String,
        #[serde(default, skip_serializing)]
        namespace: Option<String>,
        #[serde(default)]
        arguments: Option<String>,
    },
    FunctionCallOutput {
        call_id: String,
        output: TextOr<Tagged<PartParam>>,
    },
    Reasoning {
        #[serde(default, skip_serializing)]
        encrypted_content: Option<String>,
        #[serde(default, skip_serializing)]
        content: Vec<ReasoningPart>,
        #[serde(default, skip_serializing)]
        summary: Vec<ReasoningPart>,
    },
}

impl Kinds for ItemParam {
    const KINDS: &'static [&'static str] = &[
        "message",
        "function_call",
        "function_call_output",
        "reasoning",
    ];
}

#[derive(Deserialize)]
struct ReasoningPart {
    #[serde(default)]
    text: String,
}

#[derive(Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum PartParam {
    InputText {
        text: String,
    },
    OutputText {
        text: String,
    },
    #[serde(skip_serializing)]
    Text {
        text: String,
    },
    #[serde(skip_serializing)]
    Refusal {
        refusal: String,
    },
    InputImage {
        image_url: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
    },
}

impl Kinds for PartParam {
    const KINDS: &'static [&'static str] = &[
        "input_text",
        "output_text",
        "text",
        "refusal",
        "input_image",
    ];
}

#[derive(Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ToolParam {
    Function(FunctionParam),
    Namespace {
        name: String,
        tools: Vec<Tagged<ToolParam>>,
    },
}

impl Kinds for ToolParam {
    const KINDS: &'static [&'static str] = &["function", "namespace"];
}

#[derive(Deserialize, Serialize)]
struct FunctionParam {
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    parameters: Option<Map<String, Value>>,
    strict: Option<bool>,
}

#[derive(Deserialize, Serialize)]
#[serde(untagged)]
enum ToolChoiceParam {
    Mode(String),
    Named {
        #[serde(rename = "type")]
        kind: String,
        name: Option<String>,
    },
}

// ---------------------------------------------------------------------------
// parse: Responses -> ir

/// Parses a Responses request into the conversation model (for a Chat
/// Completions or Anthropic endpoint: stateful fields are refused).
pub fn parse_request(body: &Map<String, Value>) -> Result<ir::Request, PayloadError> {
    let req: ResponsesRequest = wire::parse(body)?;
    refuse(&req.refused)?;
    let input = req.input.ok_or_else(|| bad("`input` is required"))?;
    let reasoning = req
        .reasoning
        .and_then(|r| r.effort)
        .map(|e| match e.as_str() {
            // Codex's highest effort; the other side's highest is `high`.
            "xhigh" => Ok(Reasoning::Effort(ir::Effort::High)),
            _ => chat::parse_effort(&e),
        })
        .transpose()?;
    // Llmux's own Anthropic thinking comes back only when thinking is on.
    let keep_thinking = matches!(reasoning, Some(Reasoning::Effort(_)));
    let messages = match input {
        TextOr::Text(s) => vec![ir::Message {
            role: Role::User,
            content: Content::Text(s),
        }],
        TextOr::Items(items) => parse_items(items, keep_thinking)?,
    };
    let tools = parse_tools(req.tools.unwrap_or_default(), None, "tools")?;
    let (tool_choice, parallel_tool_calls) = match tools.is_empty() {
        true => (None, None),
        false => (
            req.tool_choice.map(parse_tool_choice).transpose()?,
            req.parallel_tool_calls,
        ),
    };
    let text = req.text.unwrap_or_default();
    let mut openai_extras = Map::new();
    if let Some(v) = text.verbosity.filter(|v| !v.is_null()) {
        openai_extras.insert("verbosity".into(), v);
    }
    Ok(ir::Request {
        model: body.get("model").cloned(),
        system: req.instructions.map(Content::Text),
        messages,
        tools,
        tool_choice,
        parallel_tool_calls,
        sampling: ir::Sampling {
            temperature: req.temperature,
            top_p: req.top_p,
            top_k: None,
        },
        stop: Vec::new(),
        max_output_tokens: req.max_output_tokens,
        response_format: text.format.map(parse_format).transpose()?.flatten(),
        stream: req.stream,
        include_usage: None,
        user: req.user,
        reasoning,
        openai_extras,
    })
}

fn refuse(r: &Refusable) -> Result<(), PayloadError> {
    if r.store == Some(true) {
        return Err(bad(
            "`store: true` needs a Responses endpoint (llmux keeps no conversation state)",
        ));
    }
    for (k, v) in [
        ("previous_response_id", &r.previous_response_id),
        ("conversation", &r.conversation),
        ("prompt", &r.prompt),
        ("max_tool_calls", &r.max_tool_calls),
    ] {
        if v.as_ref().is_some_and(|v| !v.is_null()) {
            return Err(bad(format!("`{k}` cannot be translated for this endpoint")));
        }
    }
    if r.background == Some(true) {
        return Err(bad(
            "`background: true` cannot be translated for this endpoint",
        ));
    }
    if r.top_logprobs.unwrap_or(0) > 0 {
        return Err(bad("`top_logprobs` cannot be translated for this endpoint"));
    }
    Ok(())
}

fn parse_format(f: Map<String, Value>) -> Result<Option<ir::ResponseFormat>, PayloadError> {
    match f.get("type").and_then(Value::as_str) {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(ir::ResponseFormat::JsonObject)),
        Some("json_schema") => {
            let mut schema = f;
            schema.remove("type");
            Ok(Some(ir::ResponseFormat::JsonSchema(Value::Object(schema))))
        }
        other => Err(bad(format!(
            "`text.format.type`: unknown format `{}`",
            other.unwrap_or_default()
        ))),
    }
}

/// The input items as messages: function calls join the assistant message
/// before them, outputs become tool results, reasoning items llmux made
/// from Anthropic thinking become thinking blocks of the next assistant
/// turn (when `keep_thinking`), other reasoning and hosted-tool items drop.
fn parse_items(
    items: Vec<InputItem>,
    keep_thinking: bool,
) -> Result<Vec<ir::Message>, PayloadError> {
    let mut msgs: Vec<ir::Message> = Vec::new();
    let mut pending: Vec<Block> = Vec::new();
    for (i, InputItem(item)) in items.into_iter().enumerate() {
        let path = format!("input[{i}]");
        match item {
            Tagged::Known(item) => push_item(item, &path, keep_thinking, &mut msgs, &mut pending)?,
            Tagged::Unknown(k) if k == "web_search_call" => {}
            Tagged::Unknown(k) => {
                return Err(bad(format!(
                    "`{path}.type`: `{k}` items cannot be translated for this endpoint"
                )))
            }
        }
    }
    Ok(msgs)
}

/// One known input item onto the messages (see [`parse_items`]).
fn push_item(
    item: ItemParam,
    path: &str,
    keep_thinking: bool,
    msgs: &mut Vec<ir::Message>,
    pending: &mut Vec<Block>,
) -> Result<(), PayloadError> {
    match item {
        ItemParam::Message { role, content } => {
            let role = match role.as_str() {
                "developer" | "system" => Role::System,
                "user" => Role::User,
                "assistant" => Role::Assistant,
                other => return Err(bad(format!("`{path}.role`: unknown role `{other}`"))),
            };
            let content = parse_content(content, role, &format!("{path}.content"))?;
            match role {
                Role::Assistant => open_assistant(msgs, pending, Some(content)),
                Role::System => msgs.push(ir::Message { role, content }),
                Role::User => {
                    pending.clear();
                    msgs.push(ir::Message { role, content });
                }
            }
        }
        ItemParam::FunctionCall {
            call_id,
            name,
            namespace,
            arguments,
        } => {
            let args = Value::String(arguments.unwrap_or_default());
            let call = Block::ToolCall {
                id: call_id,
                name: namespace.map_or_else(|| name.clone(), |ns| flat_name(&ns, &name)),
                input: chat::parse_arguments(Some(&args), &format!("{path}.arguments"))?,
            };
            open_assistant(msgs, pending, None);
            if let Some(Content::Blocks(b)) = msgs.last_mut().map(|m| &mut m.content) {
                b.push(call);
            }
        }
        ItemParam::FunctionCallOutput { call_id, output } => {
            pending.clear();
            let result = Block::ToolResult {
                tool_call_id: call_id,
                content: Content::Text(output_text(output, &format!("{path}.output"))?),
                is_error: false,
            };
            msgs.push(ir::Message {
                role: Role::User,
                content: Content::Blocks(vec![result]),
            });
        }
        ItemParam::Reasoning {
            encrypted_content,
            content,
            summary,
        } => {
            let sig = encrypted_content.as_deref().and_then(signature_in);
            if let Some(sig) = sig.filter(|_| keep_thinking) {
                let parts = if content.is_empty() { summary } else { content };
                pending.push(Block::Thinking {
                    thinking: parts.into_iter().map(|p| p.text).collect(),
                    signature: Some(sig),
                });
            }
        }
    }
    Ok(())
}

/// Continues the assistant message at the end of `msgs` (system messages
/// between do not break it) or opens one; pending thinking goes first.
fn open_assistant(msgs: &mut Vec<ir::Message>, pending: &mut Vec<Block>, content: Option<Content>) {
    let open = msgs.last().is_some_and(|m| m.role == Role::Assistant) && content.is_none();
    if !open {
        msgs.push(ir::Message {
            role: Role::Assistant,
            content: content.unwrap_or(Content::Blocks(Vec::new())),
        });
    }
    let Some(last) = msgs.last_mut() else { return };
    if let Content::Text(t) = &mut last.content {
        let t = std::mem::take(t);
        last.content = Content::Blocks(vec![Block::Text {
            text: t,
            cache_control: None,
        }]);
    }
    if let Content::Blocks(b) = &mut last.content {
        let at = b
            .iter()
            .take_while(|b| matches!(b, Block::Thinking { .. }))
            .count();
        b.splice(at..at, pending.drain(..));
    }
}

/// Message content: plain text when it is text only (for a user, when it is
/// a single part).
fn parse_content(
    c: TextOr<Tagged<PartParam>>,
    role: Role,
    path: &str,
) -> Result<Content, PayloadError> {
    let parts = match c {
        TextOr::Text(s) => return Ok(Content::Text(s)),
        TextOr::Items(p) => p,
    };
    let count = parts.len();
    let mut blocks = Vec::with_capacity(count);
    for (j, p) in parts.into_iter().enumerate() {
        let pp = format!("{path}[{j}]");
        blocks.push(match p {
            Tagged::Known(
                PartParam::InputText { text }
                | PartParam::OutputText { text }
                | PartParam::Text { text }
                | PartParam::Refusal { refusal: text },
            ) => Block::Text {
                text,
                cache_control: None,
            },
            Tagged::Known(PartParam::InputImage { image_url, .. }) => {
                let url = image_url.ok_or_else(|| {
                    bad(format!(
                        "`{pp}.image_url` is required (file ids cannot be translated)"
                    ))
                })?;
                Block::Image {
                    source: chat::image_source(url, &format!("{pp}.image_url"))?,
                    cache_control: None,
                }
            }
            Tagged::Unknown(other) => {
                return Err(bad(format!(
                    "`{pp}.type`: `{other}` content cannot be translated for this endpoint"
                )))
            }
        });
    }
    let all_text = blocks.iter().all(|b| matches!(b, Block::Text { .. }));
    if all_text && (role != Role::User || count <= 1) {
        let text = blocks
            .into_iter()
            .filter_map(|b| match b {
                Block::Text { text, .. } => Some(text),
                _ => None,
            })
            .collect();
        return Ok(Content::Text(text));
    }
    Ok(Content::Blocks(blocks))
}

/// A function call's output: a string, or text parts joined with `"\n"`.
fn output_text(o: TextOr<Tagged<PartParam>>, path: &str) -> Result<String, PayloadError> {
    let parts = match o {
        TextOr::Text(s) => return Ok(s),
        TextOr::Items(p) => p,
    };
    let mut texts = Vec::with_capacity(parts.len());
    for (j, p) in parts.into_iter().enumerate() {
        match p {
            Tagged::Known(
                PartParam::InputText { text }
                | PartParam::OutputText { text }
                | PartParam::Text { text },
            ) => texts.push(text),
            other => {
                let kind = match &other {
                    Tagged::Known(PartParam::InputImage { .. }) => "input_image",
                    Tagged::Known(_) => "refusal",
                    Tagged::Unknown(k) => k,
                };
                return Err(bad(format!(
                    "`{path}[{j}].type`: `{kind}` in a function_call_output cannot be translated"
                )));
            }
        }
    }
    Ok(texts.join("\n"))
}

/// Function tools, namespace members flattened (`ns__name`), custom tools
/// refused, hosted tools dropped.
fn parse_tools(
    tools: Vec<Tagged<ToolParam>>,
    ns: Option<&str>,
    path: &str,
) -> Result<Vec<ir::Tool>, PayloadError> {
    let mut out = Vec::with_capacity(tools.len());
    for (i, t) in tools.into_iter().enumerate() {
        let tp = format!("{path}[{i}]");
        match (t, ns) {
            (Tagged::Known(ToolParam::Function(f)), _) => {
                out.push(ir::Tool::Function(ir::FunctionTool {
                    name: ns.map_or_else(|| f.name.clone(), |ns| flat_name(ns, &f.name)),
                    description: f.description,
                    parameters: f.parameters,
                    cache_control: None,
                    strict: f.strict,
                }))
            }
            (Tagged::Known(ToolParam::Namespace { name, tools }), None) => {
                out.extend(parse_tools(tools, Some(&name), &format!("{tp}.tools"))?)
            }
            (_, Some(_)) => {
                return Err(bad(format!(
                    "`{tp}.type`: only function tools inside a namespace can be translated"
                )))
            }
            (Tagged::Unknown(k), None) if k == "custom" => {
                return Err(bad(format!(
                    "`{tp}.type`: custom (free-form) tools have no equivalent at this endpoint"
                )))
            }
            (Tagged::Unknown(_), None) => {} // hosted: dropped (see DROPPED)
        }
    }
    Ok(out)
}

fn parse_tool_choice(c: ToolChoiceParam) -> Result<ir::ToolChoice, PayloadError> {
    match c {
        ToolChoiceParam::Mode(m) if m == "auto" => Ok(ir::ToolChoice::Auto),
        ToolChoiceParam::Mode(m) if m == "none" => Ok(ir::ToolChoice::None),
        ToolChoiceParam::Mode(m) if m == "required" => Ok(ir::ToolChoice::Required),
        ToolChoiceParam::Named {
            kind,
            name: Some(name),
        } if kind == "function" => Ok(ir::ToolChoice::Tool(name)),
        _ => Err(bad(
            "`tool_choice` must be auto, none, required or {\"type\": \"function\", \"name\": ...} for this endpoint",
        )),
    }
}

/// The namespaced functions of a request's tools (none when the tools do
/// not parse).
pub(super) fn namespaces(request: &Map<String, Value>) -> Namespaces {
    #[derive(Deserialize)]
    struct Tools {
        tools: Option<Vec<Tagged<ToolParam>>>,
    }
    let mut ns = Namespaces::default();
    let Ok(Tools { tools: Some(tools) }) = wire::parse(request) else {
        return ns;
    };
    for tool in tools {
        let Tagged::Known(ToolParam::Namespace { name, tools }) = tool else {
            continue;
        };
        for member in tools {
            if let Tagged::Known(ToolParam::Function(f)) = member {
                ns.names
                    .push((flat_name(&name, &f.name), name.clone(), f.name));
            }
        }
    }
    ns
}

// ---------------------------------------------------------------------------
// emit: ir -> Responses

#[derive(Serialize)]
struct RequestOut {
    #[serde(skip_serializing_if = "Option::is_none")]
    model: Option<Value>,
    input: Vec<ItemParam>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<ToolParam>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<ToolChoiceParam>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_output_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning: Option<ReasoningParam>,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<TextParam>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parallel_tool_calls: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<Number>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<Number>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<String>,
    #[serde(flatten)]
    extras: Map<String, Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream: Option<bool>,
    store: bool,
}

/// Emits a Responses request from the conversation model: turns become
/// items, `store` is `false` (llmux keeps no state for these callers).
/// Stop sequences are refused (Responses has none); thinking blocks and
/// Anthropic's own bookkeeping drop.
pub fn emit_request(r: &ir::Request) -> Result<Value, PayloadError> {
    if !r.stop.is_empty() {
        return Err(bad(
            "`stop` (stop sequences) cannot be translated: the Responses API has none",
        ));
    }
    let mut input = Vec::new();
    if let Some(s) = &r.system {
        emit_message("system", s, "system", &mut input)?;
    }
    for (i, m) in r.messages.iter().enumerate() {
        let role = match m.role {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        };
        emit_message(role, &m.content, &format!("messages[{i}]"), &mut input)?;
    }
    let tools = emit_tools(&r.tools)?;
    let tool_choice = r.tool_choice.as_ref().filter(|_| !tools.is_empty());
    let mut extras = r.openai_extras.clone();
    let verbosity = extras.remove("verbosity");
    let format = r.response_format.as_ref().map(emit_format);
    let out = RequestOut {
        model: r.model.clone(),
        input,
        tool_choice: tool_choice.map(|c| match c {
            ir::ToolChoice::Auto => ToolChoiceParam::Mode("auto".into()),
            ir::ToolChoice::Required => ToolChoiceParam::Mode("required".into()),
            ir::ToolChoice::None => ToolChoiceParam::Mode("none".into()),
            ir::ToolChoice::Tool(n) => ToolChoiceParam::Named {
                kind: "function".into(),
                name: Some(n.clone()),
            },
        }),
        tools,
        max_output_tokens: r.max_output_tokens,
        reasoning: emit_effort(r.reasoning.as_ref()).map(|e| ReasoningParam {
            effort: Some(e.into()),
        }),
        text: (format.is_some() || verbosity.is_some()).then_some(TextParam { format, verbosity }),
        parallel_tool_calls: r.parallel_tool_calls,
        temperature: r.sampling.temperature.clone(),
        top_p: r.sampling.top_p.clone(),
        user: r.user.clone(),
        extras,
        stream: r.stream,
        store: false,
    };
    serde_json::to_value(out).map_err(|e| bad(e.to_string()))
}

fn emit_effort(r: Option<&Reasoning>) -> Option<&'static str> {
    // No reasoning is the absence of `reasoning` (models without
    // reasoning refuse the field).
    match r? {
        Reasoning::Off => None,
        Reasoning::Effort(e) => Some(chat::effort_name(*e)),
        Reasoning::Budget(b) => Some(chat::effort_for_budget(*b)),
        Reasoning::Adaptive | Reasoning::Native(_) => None,
    }
}

fn emit_format(f: &ir::ResponseFormat) -> Map<String, Value> {
    let mut m = match f {
        ir::ResponseFormat::JsonSchema(Value::Object(s)) => s.clone(),
        _ => Map::new(),
    };
    let kind = match f {
        ir::ResponseFormat::Text => "text",
        ir::ResponseFormat::JsonObject => "json_object",
        ir::ResponseFormat::JsonSchema(_) => "json_schema",
    };
    m.insert("type".into(), Value::from(kind));
    m
}

fn text_item(role: &str, text: &str) -> PartParam {
    match role {
        "assistant" => PartParam::OutputText { text: text.into() },
        _ => PartParam::InputText { text: text.into() },
    }
}

fn image_item(source: &ir::ImageSource, path: &str) -> Result<PartParam, PayloadError> {
    let url = match source {
        ir::ImageSource::Base64 { media_type, data } => format!("data:{media_type};base64,{data}"),
        ir::ImageSource::Url(u) => u.clone(),
        ir::ImageSource::File(_) => {
            return Err(bad(format!(
                "`{path}`: file images cannot be translated for a Responses endpoint"
            )))
        }
    };
    Ok(PartParam::InputImage {
        image_url: Some(url),
        detail: Some("auto".into()),
    })
}

/// One turn as items: its text and images as a message, tool calls as
/// `function_call` items, tool results as `function_call_output` items
/// (images in a result follow in a user message).
fn emit_message(
    role: &str,
    c: &Content,
    path: &str,
    out: &mut Vec<ItemParam>,
) -> Result<(), PayloadError> {
    let blocks = match c {
        Content::Text(s) if s.is_empty() => return Ok(()),
        Content::Text(s) => {
            out.push(message(role, vec![text_item(role, s)]));
            return Ok(());
        }
        Content::Blocks(b) => b,
    };
    let mut parts = Vec::new();
    let mut after = Vec::new();
    for (j, b) in blocks.iter().enumerate() {
        let bp = format!("{path}.content[{j}]");
        match b {
            Block::Text { text, .. } | Block::Refusal(text) => parts.push(text_item(role, text)),
            Block::Image { source, .. } if role != "assistant" => {
                parts.push(image_item(source, &bp)?)
            }
            Block::ToolCall { id, name, input } => after.push(ItemParam::FunctionCall {
                call_id: id.clone(),
                name: name.clone(),
                namespace: None,
                arguments: Some(Value::Object(input.clone()).to_string()),
            }),
            Block::ToolResult {
                tool_call_id,
                content,
                ..
            } => emit_result(tool_call_id, content, &bp, out)?,
            b if chat::drops_block(b.kind(), chat::Place::Assistant) => {}
            b => {
                return Err(bad(format!(
                    "`{bp}`: `{}` content cannot be translated for a Responses endpoint",
                    b.kind()
                )))
            }
        }
    }
    if !parts.is_empty() {
        out.push(message(role, parts));
    }
    out.append(&mut after);
    Ok(())
}

fn message(role: &str, parts: Vec<PartParam>) -> ItemParam {
    ItemParam::Message {
        role: role.into(),
        content: TextOr::Items(parts.into_iter().map(Tagged::Known).collect()),
    }
}

fn emit_result(
    call_id: &str,
    content: &Content,
    path: &str,
    out: &mut Vec<ItemParam>,
) -> Result<(), PayloadError> {
    let (mut texts, mut images) = (Vec::new(), Vec::new());
    match content {
        Content::Text(s) => texts.push(s.clone()),
        Content::Blocks(blocks) => {
            for (k, b) in blocks.iter().enumerate() {
                let bp = format!("{path}.content[{k}]");
                match b {
                    Block::Text { text, .. } => texts.push(text.clone()),
                    Block::Image { source, .. } => images.push(image_item(source, &bp)?),
                    b if chat::drops_block(b.kind(), chat::Place::ToolResult) => {}
                    b => {
                        return Err(bad(format!(
                            "`{bp}`: `{}` in a tool result cannot be translated",
                            b.kind()
                        )))
                    }
                }
            }
        }
    }
    out.push(ItemParam::FunctionCallOutput {
        call_id: call_id.to_owned(),
        output: TextOr::Text(texts.join("\n")),
    });
    if !images.is_empty() {
        out.push(message("user", images));
    }
    Ok(())
}

fn emit_tools(tools: &[ir::Tool]) -> Result<Vec<ToolParam>, PayloadError> {
    let mut out = Vec::with_capacity(tools.len());
    for (i, t) in tools.iter().enumerate() {
        match t {
            ir::Tool::Function(f) => out.push(ToolParam::Function(FunctionParam {
                name: f.name.clone(),
                description: f.description.clone(),
                parameters: Some(f.parameters.clone().unwrap_or_else(chat::empty_schema)),
                strict: Some(f.strict.unwrap_or(false)),
            })),
            ir::Tool::Hosted { kind } if chat::drops_tool(kind) => {}
            ir::Tool::Hosted { kind } => {
                return Err(bad(format!(
                    "`tools[{i}].type`: `{kind}`: only function tools can be translated"
                )))
            }
        }
    }
    Ok(out)
}
