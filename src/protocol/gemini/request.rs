//! `GenerateContentRequest`: the typed wire model, parsed into the
//! conversation model and emitted from it.
//!
//! Parsing: `user` / `model` turns keep their order and parts; a
//! `functionCall` without `id` gets `call_{n}_{name}` (n counting the
//! request's calls from 0) and a `functionResponse` without `id` takes the
//! id of the oldest unanswered call of its name, so calls and results pair
//! up on the other side; a part that only carries a `thoughtSignature`
//! keeps it as an empty thinking block before the part (Gemini signs
//! function calls that way) and `thought: true` parts are thinking.
//! [`DROPPED`] and [`REFUSED`] list what does not cross.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Number, Value};

use super::{Blob, Content, FileData, FunctionCall, FunctionResponse, Part};
use crate::protocol::anthropic::messages::REASONING_BUDGETS;
use crate::protocol::ir::{self, Block, Effort, Issuer, Reasoning, Role, Signature};
use crate::protocol::wire::{self, bad};
use crate::protocol::PayloadError;

/// Gemini request fields dropped in translation. Any other undeclared field
/// is dropped too.
pub const DROPPED: &[&str] = &[
    "safetySettings",
    "labels",
    "generationConfig.seed",
    "generationConfig.presencePenalty",
    "generationConfig.frequencyPenalty",
    "generationConfig.candidateCount: 1",
    "generationConfig.responseModalities: [\"TEXT\"]",
    "generationConfig.mediaResolution",
    "generationConfig.thinkingConfig.includeThoughts",
    "toolConfig.functionCallingConfig.allowedFunctionNames (more than one)",
    "functionDeclarations[].response / behavior",
    "parts[].videoMetadata",
];

/// Gemini request fields refused in translation (the caller would silently
/// get something else).
pub const REFUSED: &[&str] = &[
    "cachedContent",
    "generationConfig.candidateCount > 1",
    "generationConfig.responseLogprobs: true",
    "generationConfig.responseModalities other than TEXT",
    "generationConfig.speechConfig",
    "tools other than functionDeclarations (googleSearch, codeExecution, urlContext, ...)",
    "parts[].executableCode / codeExecutionResult",
    "parts[].fileData other than an image URL",
];

// ---------------------------------------------------------------------------
// the wire model

#[derive(Deserialize, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub(crate) struct GenerateContentRequest {
    pub contents: Vec<Content>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system_instruction: Option<Content>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<ToolDecl>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_config: Option<ToolConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generation_config: Option<GenerationConfig>,
    #[serde(skip_serializing)]
    pub cached_content: Option<String>,
}

#[derive(Deserialize, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ToolDecl {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub function_declarations: Option<Vec<FunctionDeclaration>>,
    /// Google's own tools (`googleSearch`, `codeExecution`, ...), by key.
    #[serde(flatten, skip_serializing)]
    pub other: Map<String, Value>,
}

#[derive(Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct FunctionDeclaration {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Google's OpenAPI-subset `Schema` (upper-case type names).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Value>,
    /// Plain JSON Schema.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameters_json_schema: Option<Value>,
}

#[derive(Deserialize, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ToolConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub function_calling_config: Option<FunctionCallingConfig>,
}

#[derive(Deserialize, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub(crate) struct FunctionCallingConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed_function_names: Option<Vec<String>>,
}

#[derive(Deserialize, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub(crate) struct GenerationConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<Number>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_p: Option<Number>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_k: Option<Number>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_output_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_sequences: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub candidate_count: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_mime_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_schema: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_json_schema: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thinking_config: Option<ThinkingConfig>,
    #[serde(skip_serializing)]
    pub response_logprobs: Option<bool>,
    #[serde(skip_serializing)]
    pub response_modalities: Option<Vec<String>>,
    #[serde(skip_serializing)]
    pub speech_config: Option<Value>,
}

#[derive(Deserialize, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ThinkingConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub include_thoughts: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thinking_budget: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thinking_level: Option<String>,
}

// ---------------------------------------------------------------------------
// parse: Gemini -> ir

/// The `thoughtSignature` Gemini CLI puts on function calls that came
/// without one; it stands for no signature.
pub const SKIP_SIGNATURE: &str = "skip_thought_signature_validator";

fn gemini_signature(s: String) -> Signature {
    Signature::new(Issuer::Gemini, s)
}

/// A signature Gemini issued (another family's means nothing to it).
fn own_signature(s: &Option<Signature>) -> Option<String> {
    s.as_ref()?.by(Issuer::Gemini).map(str::to_owned)
}

/// Tool-call ids of one request: given ones kept, missing ones made.
#[derive(Default)]
pub(crate) struct CallIds {
    next: u64,
    /// (id, name) of calls not answered yet, oldest first.
    open: Vec<(String, String)>,
}

impl CallIds {
    pub(crate) fn call(&mut self, id: Option<String>, name: &str) -> String {
        let id = id.unwrap_or_else(|| format!("call_{}_{name}", self.next));
        self.next = self.next.saturating_add(1);
        self.open.push((id.clone(), name.to_owned()));
        id
    }

    fn result(&mut self, id: Option<String>, name: &str) -> String {
        let pos = match &id {
            Some(id) => self.open.iter().position(|(i, _)| i == id),
            None => self.open.iter().position(|(_, n)| n == name),
        };
        let found = pos.map(|p| self.open.remove(p).0);
        id.or(found)
            .unwrap_or_else(|| format!("call_unmatched_{name}"))
    }
}

/// Parses a Gemini request (with llmux's `model` and `stream`) into the
/// conversation model.
pub fn parse_request(body: &Map<String, Value>) -> Result<ir::Request, PayloadError> {
    if body.get("contents").is_none_or(Value::is_null) {
        return Err(bad("`contents` is required"));
    }
    let req: GenerateContentRequest = wire::parse(body)?;
    if req.cached_content.is_some() {
        return Err(bad(
            "`cachedContent` cannot be translated (a Gemini cache lives at Google)",
        ));
    }
    let mut ids = CallIds::default();
    let mut messages = Vec::with_capacity(req.contents.len());
    for (i, c) in req.contents.into_iter().enumerate() {
        messages.push(parse_turn(c, &format!("contents[{i}]"), &mut ids)?);
    }
    let system = match req.system_instruction {
        Some(c) => Some(system_content(parse_parts(
            c.parts,
            "systemInstruction.parts",
            &mut ids,
        )?)),
        None => None,
    };
    let (tool_choice, parallel) = parse_tool_config(req.tool_config);
    let mut r = ir::Request {
        model: body.get("model").cloned(),
        system,
        messages,
        tools: parse_tools(req.tools.unwrap_or_default()),
        tool_choice,
        parallel_tool_calls: parallel,
        stream: body.get("stream").and_then(Value::as_bool),
        ..ir::Request::default()
    };
    if let Some(g) = req.generation_config {
        parse_generation(g, &mut r)?;
    }
    Ok(r)
}

/// System text parts joined with a newline into one string; other parts
/// stay blocks.
fn system_content(blocks: Vec<Block>) -> ir::Content {
    let mut texts = Vec::with_capacity(blocks.len());
    for b in &blocks {
        match b {
            Block::Text { text, .. } => texts.push(text.as_str()),
            _ => return ir::Content::Blocks(blocks),
        }
    }
    ir::Content::Text(texts.join("\n"))
}

fn parse_turn(c: Content, path: &str, ids: &mut CallIds) -> Result<ir::Message, PayloadError> {
    let role = match c.role.as_deref() {
        None | Some("user") | Some("function") | Some("tool") => Role::User,
        Some("model") => Role::Assistant,
        Some(other) => return Err(bad(format!("`{path}.role` `{other}` is not supported"))),
    };
    Ok(ir::Message {
        role,
        content: ir::Content::Blocks(parse_parts(c.parts, &format!("{path}.parts"), ids)?),
    })
}

pub(crate) fn parse_parts(
    parts: Vec<Part>,
    path: &str,
    ids: &mut CallIds,
) -> Result<Vec<Block>, PayloadError> {
    let mut out = Vec::with_capacity(parts.len());
    for (j, p) in parts.into_iter().enumerate() {
        parse_part(p, &format!("{path}[{j}]"), ids, &mut out)?;
    }
    Ok(out)
}

fn parse_part(
    p: Part,
    path: &str,
    ids: &mut CallIds,
    out: &mut Vec<Block>,
) -> Result<(), PayloadError> {
    if p.thought == Some(true) {
        out.push(Block::Thinking {
            thinking: p.text.unwrap_or_default(),
            signature: p.thought_signature.map(gemini_signature),
        });
        return Ok(());
    }
    // Gemini CLI signs calls it made up with this placeholder (Google's
    // API accepts it in place of a signature): no thinking to carry.
    let sig = p.thought_signature.filter(|s| s != SKIP_SIGNATURE);
    if let Some(sig) = sig {
        out.push(Block::Thinking {
            thinking: String::new(),
            signature: Some(gemini_signature(sig)),
        });
    }
    let block = if let Some(text) = p.text {
        Block::Text {
            text,
            cache_control: None,
        }
    } else if let Some(b) = p.inline_data {
        inline_block(b)
    } else if let Some(f) = p.file_data {
        file_block(f, path)?
    } else if let Some(c) = p.function_call {
        Block::ToolCall {
            id: ids.call(c.id, &c.name),
            name: c.name,
            input: c.args,
        }
    } else if let Some(r) = p.function_response {
        function_result(r, ids)
    } else if p.executable_code.is_some() || p.code_execution_result.is_some() {
        return Err(bad(format!(
            "`{path}`: code execution parts cannot be translated"
        )));
    } else {
        return Ok(());
    };
    out.push(block);
    Ok(())
}

fn inline_block(b: Blob) -> Block {
    if b.mime_type.starts_with("image/") {
        Block::Image {
            source: ir::ImageSource::Base64 {
                media_type: b.mime_type,
                data: b.data,
            },
            cache_control: None,
        }
    } else {
        Block::Document {
            source: serde_json::json!({
                "type": "base64", "media_type": b.mime_type, "data": b.data,
            }),
        }
    }
}

fn file_block(f: FileData, path: &str) -> Result<Block, PayloadError> {
    let image = f
        .mime_type
        .as_deref()
        .is_none_or(|m| m.starts_with("image/"));
    let web = f.file_uri.starts_with("https://") || f.file_uri.starts_with("http://");
    if !(image && web) {
        return Err(bad(format!(
            "`{path}.fileData`: only image URLs can be translated (got {:?})",
            f.file_uri
        )));
    }
    Ok(Block::Image {
        source: ir::ImageSource::Url(f.file_uri),
        cache_control: None,
    })
}

/// A `functionResponse`: `response.output` (a string, else its JSON) or,
/// under `error`, an error result; any other response object as JSON.
fn function_result(r: FunctionResponse, ids: &mut CallIds) -> Block {
    let id = ids.result(r.id, &r.name);
    let (value, is_error) = match (r.response.get("output"), r.response.get("error")) {
        (Some(o), None) => (o.clone(), false),
        (None, Some(e)) => (e.clone(), true),
        _ => (Value::Object(r.response), false),
    };
    let text = match value {
        Value::String(s) => s,
        v => v.to_string(),
    };
    Block::ToolResult {
        tool_call_id: id,
        content: ir::Content::Text(text),
        is_error,
    }
}

fn parse_tools(tools: Vec<ToolDecl>) -> Vec<ir::Tool> {
    let mut out = Vec::new();
    for t in tools {
        for f in t.function_declarations.into_iter().flatten() {
            let schema = f
                .parameters_json_schema
                .or_else(|| f.parameters.map(json_schema_of));
            out.push(ir::Tool::Function(ir::FunctionTool {
                name: f.name,
                description: f.description,
                parameters: match schema {
                    Some(Value::Object(m)) => Some(m),
                    _ => None,
                },
                cache_control: None,
                strict: None,
            }));
        }
        for (kind, _) in t.other {
            out.push(ir::Tool::Hosted { kind });
        }
    }
    out
}

/// Google's OpenAPI-subset `Schema` as JSON Schema: type names in lower
/// case (`OBJECT` -> `object`), `nullable: true` as a type list.
pub(crate) fn json_schema_of(v: Value) -> Value {
    match v {
        Value::Object(m) => {
            let nullable = m.get("nullable") == Some(&Value::Bool(true));
            let mut out = Map::new();
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("type", Value::String(t)) => {
                        let t = Value::String(t.to_ascii_lowercase());
                        let t = if nullable {
                            Value::Array(vec![t, Value::from("null")])
                        } else {
                            t
                        };
                        out.insert(k, t);
                    }
                    ("nullable", _) => {}
                    ("properties", Value::Object(p)) => {
                        let p = p.into_iter().map(|(k, v)| (k, json_schema_of(v)));
                        out.insert(k, Value::Object(p.collect()));
                    }
                    ("items", v) => {
                        out.insert(k, json_schema_of(v));
                    }
                    ("anyOf", Value::Array(a)) => {
                        out.insert(k, a.into_iter().map(json_schema_of).collect());
                    }
                    (_, v) => {
                        out.insert(k, v);
                    }
                }
            }
            Value::Object(out)
        }
        v => v,
    }
}

type Choice = (Option<ir::ToolChoice>, Option<bool>);

fn parse_tool_config(c: Option<ToolConfig>) -> Choice {
    let Some(f) = c.and_then(|c| c.function_calling_config) else {
        return (None, None);
    };
    let choice = match f.mode.as_deref() {
        Some("ANY") => match f.allowed_function_names.as_deref() {
            Some([one]) => ir::ToolChoice::Tool(one.clone()),
            _ => ir::ToolChoice::Required,
        },
        Some("NONE") => ir::ToolChoice::None,
        Some("AUTO") | Some("VALIDATED") => ir::ToolChoice::Auto,
        _ => return (None, None),
    };
    (Some(choice), None)
}

fn parse_generation(g: GenerationConfig, r: &mut ir::Request) -> Result<(), PayloadError> {
    if g.candidate_count.is_some_and(|n| n > 1) {
        return Err(bad(
            "`generationConfig.candidateCount` > 1 cannot be translated",
        ));
    }
    if g.response_logprobs == Some(true) {
        return Err(bad(
            "`generationConfig.responseLogprobs` cannot be translated",
        ));
    }
    if g.response_modalities
        .iter()
        .flatten()
        .any(|m| !m.eq_ignore_ascii_case("text"))
    {
        return Err(bad(
            "`generationConfig.responseModalities` other than TEXT cannot be translated",
        ));
    }
    if g.speech_config.is_some() {
        return Err(bad("`generationConfig.speechConfig` cannot be translated"));
    }
    r.sampling = ir::Sampling {
        temperature: g.temperature,
        top_p: g.top_p,
        top_k: g.top_k,
    };
    r.stop = g.stop_sequences.unwrap_or_default();
    r.max_output_tokens = g.max_output_tokens;
    let schema = g
        .response_json_schema
        .or_else(|| g.response_schema.map(json_schema_of));
    r.response_format = match (g.response_mime_type.as_deref(), schema) {
        (_, Some(s)) => Some(ir::ResponseFormat::JsonSchema(
            serde_json::json!({ "name": "response", "schema": s }),
        )),
        (Some("application/json"), None) => Some(ir::ResponseFormat::JsonObject),
        _ => None,
    };
    r.reasoning = g.thinking_config.and_then(parse_thinking);
    Ok(())
}

fn parse_thinking(t: ThinkingConfig) -> Option<Reasoning> {
    if let Some(level) = t.thinking_level.as_deref() {
        return Some(Reasoning::Effort(
            match level.to_ascii_lowercase().as_str() {
                "minimal" => Effort::Minimal,
                "low" => Effort::Low,
                "medium" => Effort::Medium,
                _ => Effort::High,
            },
        ));
    }
    match t.thinking_budget? {
        0 => Some(Reasoning::Off),
        b if b < 0 => Some(Reasoning::Adaptive),
        b => Some(Reasoning::Budget(b.unsigned_abs())),
    }
}

// ---------------------------------------------------------------------------
// emit: ir -> Gemini

/// Emits a Gemini request (without `model` and `stream`, which go in the
/// URL) from the conversation model.
///
/// The written rule of this side: system text from anywhere goes to
/// `systemInstruction`; turns become `user` / `model` contents, consecutive
/// turns of one role merged; tool calls are `functionCall` parts with their
/// ids, results `functionResponse` parts named after their call, with
/// `response: {"output": text}` (`{"error": text}` for an error result);
/// thinking is a `thought: true` part with its signature, an empty one
/// hands its signature to the next part; refusals become text; schemas go
/// as `parametersJsonSchema` / `responseJsonSchema`; a thinking budget as
/// `thinkingBudget` (efforts by the Anthropic budgets), with
/// `includeThoughts`. Refused: documents other than base64 data, file
/// references, blocks of unknown kinds, hosted tools.
pub fn emit_request(r: &ir::Request) -> Result<Value, PayloadError> {
    let names = call_names(r);
    let mut contents: Vec<Content> = Vec::new();
    for (i, m) in r.messages.iter().enumerate() {
        let role = match m.role {
            Role::System => continue,
            Role::User => "user",
            Role::Assistant => "model",
        };
        let parts = emit_content(&m.content, &format!("messages[{i}].content"), &names)?;
        if parts.is_empty() {
            continue;
        }
        match contents.last_mut() {
            Some(last) if last.role.as_deref() == Some(role) => last.parts.extend(parts),
            _ => contents.push(Content {
                role: Some(role.into()),
                parts,
            }),
        }
    }
    let out = GenerateContentRequest {
        contents,
        system_instruction: emit_system(r, &names)?,
        tools: emit_tools(&r.tools)?,
        tool_config: emit_tool_config(r),
        generation_config: emit_generation(r),
        cached_content: None,
    };
    serde_json::to_value(out).map_err(|e| bad(e.to_string()))
}

/// Tool-call id -> function name, for `functionResponse.name`.
fn call_names(r: &ir::Request) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for m in &r.messages {
        if let ir::Content::Blocks(b) = &m.content {
            for b in b {
                if let Block::ToolCall { id, name, .. } = b {
                    out.push((id.clone(), name.clone()));
                }
            }
        }
    }
    out
}

fn emit_system(
    r: &ir::Request,
    names: &[(String, String)],
) -> Result<Option<Content>, PayloadError> {
    let mut parts = Vec::new();
    for (path, c) in r.system_contents() {
        parts.extend(emit_content(c, &path, names)?);
    }
    Ok((!parts.is_empty()).then_some(Content { role: None, parts }))
}

pub(crate) fn emit_content(
    c: &ir::Content,
    path: &str,
    names: &[(String, String)],
) -> Result<Vec<Part>, PayloadError> {
    match c {
        ir::Content::Text(s) if s.is_empty() => Ok(Vec::new()),
        ir::Content::Text(s) => Ok(vec![Part::text(s.clone())]),
        ir::Content::Blocks(b) => emit_parts(b, path, names),
    }
}

pub(crate) fn emit_parts(
    blocks: &[Block],
    path: &str,
    names: &[(String, String)],
) -> Result<Vec<Part>, PayloadError> {
    let mut out = Vec::with_capacity(blocks.len());
    let mut signature: Option<String> = None;
    for (j, b) in blocks.iter().enumerate() {
        if let Block::Thinking {
            thinking,
            signature: s,
        } = b
        {
            if thinking.is_empty() {
                signature = own_signature(s);
                continue;
            }
        }
        if let Some(mut p) = emit_part(b, &format!("{path}[{j}]"), names)? {
            p.thought_signature = p.thought_signature.or(signature.take());
            out.push(p);
        }
    }
    Ok(out)
}

fn emit_part(
    b: &Block,
    path: &str,
    names: &[(String, String)],
) -> Result<Option<Part>, PayloadError> {
    Ok(Some(match b {
        Block::Text { text, .. } | Block::Refusal(text) if text.is_empty() => return Ok(None),
        Block::Text { text, .. } | Block::Refusal(text) => Part::text(text.clone()),
        Block::Image { source, .. } => match source {
            ir::ImageSource::Base64 { media_type, data } => Part {
                inline_data: Some(Blob {
                    mime_type: media_type.clone(),
                    data: data.clone(),
                }),
                ..Part::default()
            },
            ir::ImageSource::Url(url) => Part {
                file_data: Some(FileData {
                    mime_type: None,
                    file_uri: url.clone(),
                }),
                ..Part::default()
            },
            ir::ImageSource::File(_) => {
                return Err(bad(format!(
                    "`{path}`: an image by file id cannot be translated to Gemini"
                )))
            }
        },
        Block::Document { source } => document_part(source, path)?,
        Block::ToolCall { id, name, input } => Part {
            function_call: Some(FunctionCall {
                id: Some(id.clone()),
                name: name.clone(),
                args: input.clone(),
            }),
            ..Part::default()
        },
        Block::ToolResult {
            tool_call_id,
            content,
            is_error,
        } => result_part(tool_call_id, content, *is_error, path, names)?,
        Block::Thinking {
            thinking,
            signature,
        } => Part {
            text: Some(thinking.clone()),
            thought: Some(true),
            thought_signature: own_signature(signature),
            ..Part::default()
        },
        // Anthropic's encrypted thinking has no Gemini counterpart.
        Block::RedactedThinking { .. } => return Ok(None),
        Block::Other { kind } => return Err(wire::untranslatable(path, kind, "Gemini")),
    }))
}

fn document_part(source: &Value, path: &str) -> Result<Part, PayloadError> {
    let field = |k: &str| source.get(k).and_then(Value::as_str);
    match (field("type"), field("media_type"), field("data")) {
        (Some("base64"), Some(m), Some(d)) => Ok(Part {
            inline_data: Some(Blob {
                mime_type: m.into(),
                data: d.into(),
            }),
            ..Part::default()
        }),
        (Some("text"), _, Some(d)) => Ok(Part::text(d.into())),
        _ => Err(bad(format!(
            "`{path}`: a document that is not base64 data cannot be translated to Gemini"
        ))),
    }
}

fn result_part(
    id: &str,
    content: &ir::Content,
    is_error: bool,
    path: &str,
    names: &[(String, String)],
) -> Result<Part, PayloadError> {
    let name = names
        .iter()
        .find(|(i, _)| i == id)
        .map(|(_, n)| n.clone())
        .ok_or_else(|| {
            bad(format!(
                "`{path}`: tool result {id:?} answers no tool call of the conversation (Gemini names results after their call)"
            ))
        })?;
    let text = match content {
        ir::Content::Text(s) => s.clone(),
        ir::Content::Blocks(b) => {
            let mut texts = Vec::new();
            for (k, b) in b.iter().enumerate() {
                match b {
                    Block::Text { text, .. } => texts.push(text.as_str()),
                    other => {
                        return Err(bad(format!(
                            "`{path}.content[{k}]`: a `{}` block in a tool result cannot be translated to Gemini",
                            other.kind()
                        )))
                    }
                }
            }
            texts.join("\n")
        }
    };
    let mut response = Map::new();
    response.insert(
        if is_error { "error" } else { "output" }.into(),
        Value::String(text),
    );
    Ok(Part {
        function_response: Some(FunctionResponse {
            id: Some(id.to_owned()),
            name,
            response,
        }),
        ..Part::default()
    })
}

fn emit_tools(tools: &[ir::Tool]) -> Result<Option<Vec<ToolDecl>>, PayloadError> {
    let mut decls = Vec::with_capacity(tools.len());
    for (i, t) in tools.iter().enumerate() {
        match t {
            ir::Tool::Function(f) => decls.push(FunctionDeclaration {
                name: f.name.clone(),
                description: f.description.clone(),
                parameters: None,
                parameters_json_schema: Some(Value::Object(
                    f.parameters
                        .clone()
                        .unwrap_or_else(crate::protocol::openai::chat::empty_schema),
                )),
            }),
            ir::Tool::Hosted { kind } => {
                return Err(bad(format!(
                    "`tools[{i}].type` `{kind}` cannot be translated to Gemini"
                )))
            }
        }
    }
    Ok((!decls.is_empty()).then(|| {
        vec![ToolDecl {
            function_declarations: Some(decls),
            other: Map::new(),
        }]
    }))
}

fn emit_tool_config(r: &ir::Request) -> Option<ToolConfig> {
    if r.tools.is_empty() {
        return None;
    }
    let (mode, names) = match r.tool_choice.as_ref()? {
        ir::ToolChoice::Auto => ("AUTO", None),
        ir::ToolChoice::Required => ("ANY", None),
        ir::ToolChoice::None => ("NONE", None),
        ir::ToolChoice::Tool(n) => ("ANY", Some(vec![n.clone()])),
    };
    Some(ToolConfig {
        function_calling_config: Some(FunctionCallingConfig {
            mode: Some(mode.into()),
            allowed_function_names: names,
        }),
    })
}

fn emit_generation(r: &ir::Request) -> Option<GenerationConfig> {
    let (mime, schema) = match &r.response_format {
        None | Some(ir::ResponseFormat::Text) => (None, None),
        Some(ir::ResponseFormat::JsonObject) => (Some("application/json".to_owned()), None),
        Some(ir::ResponseFormat::JsonSchema(s)) => (
            Some("application/json".to_owned()),
            Some(s.get("schema").cloned().unwrap_or_else(|| s.clone())),
        ),
    };
    let g = GenerationConfig {
        temperature: r.sampling.temperature.clone(),
        top_p: r.sampling.top_p.clone(),
        top_k: r.sampling.top_k.clone(),
        max_output_tokens: r.max_output_tokens,
        stop_sequences: Some(r.stop.clone()).filter(|s| !s.is_empty()),
        response_mime_type: mime,
        response_json_schema: schema,
        thinking_config: emit_thinking(r.reasoning.as_ref()),
        ..GenerationConfig::default()
    };
    let empty = serde_json::to_value(&g).is_ok_and(|v| v.as_object().is_some_and(Map::is_empty));
    (!empty).then_some(g)
}

fn emit_thinking(r: Option<&Reasoning>) -> Option<ThinkingConfig> {
    let budget: i64 = match r? {
        Reasoning::Off => 0,
        Reasoning::Adaptive => -1,
        Reasoning::Budget(b) => i64::try_from(*b).unwrap_or(i64::MAX),
        Reasoning::Effort(Effort::Minimal | Effort::Low) => REASONING_BUDGETS[0] as i64,
        Reasoning::Effort(Effort::Medium) => REASONING_BUDGETS[1] as i64,
        Reasoning::Effort(Effort::High) => REASONING_BUDGETS[2] as i64,
        Reasoning::Native(m) => match m.get("type").and_then(Value::as_str) {
            Some("enabled") => m.get("budget_tokens").and_then(Value::as_i64).unwrap_or(-1),
            Some("disabled") => 0,
            _ => -1,
        },
    };
    Some(ThinkingConfig {
        include_thoughts: (budget != 0).then_some(true),
        thinking_budget: Some(budget),
        thinking_level: None,
    })
}
