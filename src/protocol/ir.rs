//! The conversation model between wire formats.
//!
//! Translation is `parse(caller) -> ir -> emit(upstream)`: each protocol
//! module parses its typed wire request into a [`Request`] and emits one
//! from it. Same-protocol traffic never enters this model.
//!
//! A parser keeps the caller's order and count of messages and content
//! blocks (an OpenAI `tool` message is one [`Message`] holding one
//! [`Block::ToolResult`]; tool calls follow the message's content parts), so
//! an emitter that must refuse a block names it by the caller's path,
//! `messages[i].content[j]`. Merging turns, hoisting system text and
//! dropping what the target has no place for are the emitter's work, each
//! by its protocol's written rule.

use serde_json::{Map, Number, Value};

/// A request: everything llmux carries from one protocol to another.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Request {
    /// The caller's `model`, copied as given (the engine replaces it).
    pub model: Option<Value>,
    /// System text given apart from the messages (Anthropic's `system`).
    pub system: Option<Content>,
    pub messages: Vec<Message>,
    pub tools: Vec<Tool>,
    pub tool_choice: Option<ToolChoice>,
    /// `Some(false)`: at most one tool call per turn.
    pub parallel_tool_calls: Option<bool>,
    pub sampling: Sampling,
    pub stop: Vec<String>,
    pub max_output_tokens: Option<u64>,
    pub response_format: Option<ResponseFormat>,
    pub stream: Option<bool>,
    /// OpenAI's `stream_options.include_usage`.
    pub include_usage: Option<bool>,
    /// The end user (OpenAI `user`, Anthropic `metadata.user_id`).
    pub user: Option<String>,
    pub reasoning: Option<Reasoning>,
    /// Fields both OpenAI protocols know (`verbosity`, `metadata`,
    /// `service_tier`, `prompt_cache_key`, `safety_identifier`), carried as
    /// given between Chat Completions and Responses; Anthropic drops them.
    pub openai_extras: Map<String, Value>,
}

impl Request {
    /// The system text an emitter hoists, in order, each piece with its
    /// caller path: `system`, then every system turn.
    pub fn system_contents(&self) -> impl Iterator<Item = (String, &Content)> {
        let turns = self.messages.iter().enumerate();
        let turns = turns
            .filter(|(_, m)| m.role == Role::System)
            .map(|(i, m)| (format!("messages[{i}].content"), &m.content));
        let system = self.system.iter().map(|s| ("system".to_owned(), s));
        system.chain(turns)
    }
}

/// One turn, in the caller's order.
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    pub role: Role,
    pub content: Content,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// System text inside the conversation (OpenAI `system` / `developer`
    /// messages, an Anthropic `system` turn).
    System,
    /// The user, and tool results.
    User,
    Assistant,
}

/// Message content: a plain string, or blocks.
#[derive(Clone, Debug, PartialEq)]
pub enum Content {
    Text(String),
    Blocks(Vec<Block>),
}

/// A content block. [`Block::kind`] names it in the IR's vocabulary, which
/// is also the Messages API's.
#[derive(Clone, Debug, PartialEq)]
pub enum Block {
    Text {
        text: String,
        /// Anthropic prompt-cache marker, carried as given.
        cache_control: Option<Value>,
    },
    Image {
        source: ImageSource,
        cache_control: Option<Value>,
    },
    /// A document (PDF, plain text) as the caller described it.
    Document {
        source: Value,
    },
    ToolCall {
        id: String,
        name: String,
        /// The arguments, a JSON object.
        input: Map<String, Value>,
    },
    ToolResult {
        tool_call_id: String,
        content: Content,
        is_error: bool,
    },
    Thinking {
        thinking: String,
        signature: Option<Signature>,
    },
    RedactedThinking {
        data: String,
    },
    /// A model's refusal text (OpenAI assistant `refusal` part).
    Refusal(String),
    /// A block of a kind the model does not know (server tool turns, tool
    /// references, future kinds): each emitter drops or refuses it by kind.
    Other {
        kind: String,
    },
}

impl Block {
    pub fn kind(&self) -> &str {
        match self {
            Block::Text { .. } => "text",
            Block::Image { .. } => "image",
            Block::Document { .. } => "document",
            Block::ToolCall { .. } => "tool_use",
            Block::ToolResult { .. } => "tool_result",
            Block::Thinking { .. } => "thinking",
            Block::RedactedThinking { .. } => "redacted_thinking",
            Block::Refusal(_) => "refusal",
            Block::Other { kind } => kind,
        }
    }
}

/// A thinking signature and the family that issued it. A signature only
/// ever goes back to its issuer (another provider refuses it, or cannot
/// decode it): each emitter keeps only its own family's
/// ([`Signature::by`]), and the Responses room, which can hold any, records
/// the issuer in `encrypted_content`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signature {
    pub issuer: Issuer,
    pub value: String,
}

/// Who issued a [`Signature`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Issuer {
    Anthropic,
    Gemini,
}

impl Signature {
    pub fn new(issuer: Issuer, value: impl Into<String>) -> Self {
        Signature {
            issuer,
            value: value.into(),
        }
    }

    /// The signature's text when `issuer` issued it.
    pub fn by(&self, issuer: Issuer) -> Option<&str> {
        (self.issuer == issuer).then_some(self.value.as_str())
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImageSource {
    Base64 {
        media_type: String,
        data: String,
    },
    Url(String),
    /// A file uploaded to the provider (Anthropic Files API).
    File(String),
}

#[derive(Clone, Debug, PartialEq)]
pub enum Tool {
    Function(FunctionTool),
    /// A tool the provider runs (Anthropic server tools), by its `type`.
    Hosted {
        kind: String,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct FunctionTool {
    pub name: String,
    pub description: Option<String>,
    /// The JSON Schema of the arguments; `None` means "any object".
    pub parameters: Option<Map<String, Value>>,
    pub cache_control: Option<Value>,
    /// OpenAI strict schema adherence, as given (Anthropic drops it).
    pub strict: Option<bool>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ToolChoice {
    Auto,
    Required,
    None,
    Tool(String),
}

/// Sampling settings, numbers kept exactly as given.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Sampling {
    pub temperature: Option<Number>,
    pub top_p: Option<Number>,
    pub top_k: Option<Number>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ResponseFormat {
    Text,
    JsonObject,
    JsonSchema(Value),
}

#[derive(Clone, Debug, PartialEq)]
pub enum Reasoning {
    /// No reasoning (OpenAI `none`, Anthropic `disabled`).
    Off,
    /// An effort level (OpenAI `reasoning_effort`).
    Effort(Effort),
    /// A thinking budget in tokens (Anthropic `thinking.enabled`).
    Budget(u64),
    /// The provider decides (Anthropic `adaptive`).
    Adaptive,
    /// Anthropic's `thinking` object sent verbatim by an OpenAI caller.
    Native(Map<String, Value>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effort {
    Minimal,
    Low,
    Medium,
    High,
}

/// A complete (non-streaming) answer.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Response {
    pub id: String,
    pub model: String,
    pub content: Vec<Block>,
    pub stop_reason: StopReason,
    pub usage: Option<super::Usage>,
    /// The part of the completion tokens spent reasoning, when reported.
    pub reasoning_tokens: u64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StopReason {
    #[default]
    EndTurn,
    StopSequence,
    MaxTokens,
    ToolUse,
    Refusal,
    PauseTurn,
}

/// One canonical stream delta, what every protocol's stream reduces to.
#[derive(Clone, Debug, PartialEq)]
pub enum Delta {
    /// The answer begins.
    Start,
    Text(String),
    Thinking(String),
    /// The signature of the thinking so far, for a caller that can carry
    /// it back to its issuer.
    ThinkingSignature(Signature),
    /// A tool call starts (`index` counts the answer's tool calls from 0;
    /// `id` is missing when the upstream gave none).
    ToolCallStart {
        index: u64,
        id: Option<String>,
        name: String,
    },
    /// A fragment of the arguments of tool call `index`.
    ToolCallArguments {
        index: u64,
        fragment: String,
    },
    /// The usage so far (cumulative).
    Usage(super::Usage),
    /// The part of the completion tokens spent reasoning.
    ReasoningTokens(u64),
    Finish(StopReason),
    /// The stream is complete.
    Done,
}

impl Delta {
    /// Generated content: the "first token" moment.
    pub fn is_content(&self) -> bool {
        matches!(
            self,
            Delta::Text(_)
                | Delta::Thinking(_)
                | Delta::ToolCallStart { .. }
                | Delta::ToolCallArguments { .. }
        )
    }
}

#[cfg(test)]
mod tests;
