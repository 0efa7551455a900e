//! Messages streams and the canonical deltas ([`crate::protocol::ir::Delta`]):
//! [`EventParser`] reads an upstream's events, [`EventEmitter`] writes a
//! caller's.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::messages::{parse_stop_reason, stop_reason_name, tool_id, UsageOut};
use super::{parse_event, stream_error, UsageAcc};
use crate::protocol::ir::{Delta, Issuer, Signature, StopReason};
use crate::protocol::wire::{self, bad, Kinds, Tagged};
use crate::protocol::{PayloadError, SseEvent, StreamContext, Usage};

#[derive(Deserialize)]
struct MessageStart {
    message: Option<StartMessage>,
}

#[derive(Deserialize)]
struct StartMessage {
    usage: Option<Value>,
}

#[derive(Deserialize)]
struct BlockStart {
    index: Option<u64>,
    content_block: Tagged<StartBlock>,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum StartBlock {
    Text { text: Option<String> },
    Thinking { thinking: Option<String> },
    ToolUse { id: String, name: String },
}

impl Kinds for StartBlock {
    const KINDS: &'static [&'static str] = &["text", "thinking", "tool_use"];
}

#[derive(Deserialize)]
struct BlockDelta {
    index: Option<u64>,
    delta: Tagged<DeltaParam>,
}

#[derive(Deserialize)]
#[serde(tag = "type")]
enum DeltaParam {
    #[serde(rename = "text_delta")]
    Text { text: String },
    #[serde(rename = "thinking_delta")]
    Thinking { thinking: String },
    #[serde(rename = "input_json_delta")]
    InputJson { partial_json: String },
    #[serde(rename = "signature_delta")]
    Signature { signature: String },
}

impl Kinds for DeltaParam {
    const KINDS: &'static [&'static str] = &[
        "text_delta",
        "thinking_delta",
        "input_json_delta",
        "signature_delta",
    ];
}

#[derive(Deserialize)]
struct MessageDelta {
    delta: Option<MessageDeltaBody>,
    usage: Option<Value>,
}

#[derive(Deserialize)]
struct MessageDeltaBody {
    stop_reason: Option<String>,
}

/// An upstream's Messages events -> canonical deltas. `tool_use` blocks
/// become tool calls 0, 1, ... in order; pings, block stops,
/// deltas of server-tool blocks and unknown events give nothing.
#[derive(Default)]
pub struct EventParser {
    usage: UsageAcc,
    /// (block index, tool-call index) of every `tool_use` block.
    tool_blocks: Vec<(u64, u64)>,
    next_tool: u64,
}

impl EventParser {
    pub fn usage(&self) -> Option<Usage> {
        self.usage.get()
    }

    fn take_usage(&mut self, u: Option<&Value>, out: &mut Vec<Delta>) {
        if let Some(u) = u {
            self.usage.update(u);
            out.extend(self.usage.get().map(Delta::Usage));
        }
    }

    pub fn parse(&mut self, ev: &SseEvent) -> Result<Vec<Delta>, PayloadError> {
        let (name, data) = parse_event(ev)?;
        let mut out = Vec::new();
        match name.as_str() {
            "error" => return Err(stream_error(&data)),
            "message_start" => {
                let m: MessageStart = wire::parse(&data)?;
                self.take_usage(m.message.and_then(|m| m.usage).as_ref(), &mut out);
                out.push(Delta::Start);
            }
            "content_block_start" => {
                let b: BlockStart = wire::parse(&data)?;
                out.extend(self.block_start(b.index.unwrap_or(0), b.content_block));
            }
            "content_block_delta" => {
                let d: BlockDelta = wire::parse(&data)?;
                out.extend(self.block_delta(d.index.unwrap_or(0), d.delta));
            }
            "message_delta" => {
                let d: MessageDelta = wire::parse(&data)?;
                self.take_usage(d.usage.as_ref(), &mut out);
                let stop = d.delta.and_then(|d| d.stop_reason);
                out.push(Delta::Finish(parse_stop_reason(stop.as_deref())));
            }
            "message_stop" => out.push(Delta::Done),
            _ => {}
        }
        Ok(out)
    }

    fn block_start(&mut self, index: u64, block: Tagged<StartBlock>) -> Option<Delta> {
        match block {
            Tagged::Known(StartBlock::ToolUse { id, name }) => {
                let k = self.next_tool;
                self.next_tool = self.next_tool.saturating_add(1);
                self.tool_blocks.push((index, k));
                Some(Delta::ToolCallStart {
                    index: k,
                    id: Some(id),
                    name,
                })
            }
            Tagged::Known(StartBlock::Text { text: Some(t) }) if !t.is_empty() => {
                Some(Delta::Text(t))
            }
            Tagged::Known(StartBlock::Thinking { thinking: Some(t) }) if !t.is_empty() => {
                Some(Delta::Thinking(t))
            }
            _ => None,
        }
    }

    fn block_delta(&mut self, index: u64, delta: Tagged<DeltaParam>) -> Option<Delta> {
        match delta {
            Tagged::Known(DeltaParam::Text { text }) if !text.is_empty() => Some(Delta::Text(text)),
            Tagged::Known(DeltaParam::Thinking { thinking }) if !thinking.is_empty() => {
                Some(Delta::Thinking(thinking))
            }
            Tagged::Known(DeltaParam::Signature { signature }) if !signature.is_empty() => Some(
                Delta::ThinkingSignature(Signature::new(Issuer::Anthropic, signature)),
            ),
            // Deltas of blocks that are not client tool calls (server
            // tools) have no counterpart.
            Tagged::Known(DeltaParam::InputJson { partial_json }) => {
                let &(_, k) = self.tool_blocks.iter().find(|(b, _)| *b == index)?;
                (!partial_json.is_empty()).then_some(Delta::ToolCallArguments {
                    index: k,
                    fragment: partial_json,
                })
            }
            _ => None,
        }
    }
}

// ---------------------------------------------------------------------------
// emitting a caller's events

#[derive(Clone, Copy, PartialEq, Eq)]
enum OpenBlock {
    Text,
    /// A tool call, by its index.
    Tool(u64),
}

/// The events this emitter writes (the data JSON of each; its `type`
/// names the event).
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum EventOut<'a> {
    MessageStart { message: StartOut<'a> },
    ContentBlockStart { index: u64, content_block: BlockOut },
    ContentBlockDelta { index: u64, delta: DeltaOut<'a> },
    ContentBlockStop { index: u64 },
    MessageDelta { delta: StopOut, usage: DeltaUsage },
    MessageStop,
}

#[derive(Serialize)]
struct StartOut<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    role: &'static str,
    model: &'a str,
    content: [(); 0],
    stop_reason: Option<()>,
    stop_sequence: Option<()>,
    usage: StartUsage,
}

#[derive(Serialize)]
struct StartUsage {
    input_tokens: u64,
    output_tokens: u64,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum BlockOut {
    Text {
        text: &'static str,
    },
    ToolUse {
        id: String,
        name: String,
        input: serde_json::Map<String, Value>,
    },
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum DeltaOut<'a> {
    TextDelta { text: &'a str },
    InputJsonDelta { partial_json: &'a str },
}

/// The usage of `message_delta`: the full counts, or `output_tokens: 0`
/// when the upstream gave none.
#[derive(Serialize)]
#[serde(untagged)]
enum DeltaUsage {
    Full(UsageOut),
    None { output_tokens: u64 },
}

#[derive(Serialize)]
struct StopOut {
    stop_reason: &'static str,
    stop_sequence: Option<()>,
}

/// Canonical deltas -> a caller's Messages events.
///
/// The first delta produces `message_start` (its `usage.input_tokens` is
/// the context's estimate: clients read usage there; the real counts follow
/// in `message_delta`); text opens a text block, each new tool call closes
/// the open block and opens a `tool_use` block whose fragments become
/// `input_json_delta`s. The finish reason and usage are remembered; on
/// [`Delta::Done`] the open block is closed and `message_delta` (stop reason
/// and usage) and `message_stop` follow. Thinking is dropped (a thinking
/// block needs a signature llmux cannot make). Fragments of a tool call
/// whose block was already closed (calls interleaved) are refused as
/// malformed: Messages blocks cannot be reopened.
pub struct EventEmitter {
    ctx: StreamContext,
    started: bool,
    open: Option<(OpenBlock, u64)>,
    next_block: u64,
    finish: Option<StopReason>,
    usage: Option<Usage>,
}

impl EventEmitter {
    pub fn new(ctx: StreamContext) -> Self {
        EventEmitter {
            ctx,
            started: false,
            open: None,
            next_block: 0,
            finish: None,
            usage: None,
        }
    }

    pub fn usage(&self) -> Option<Usage> {
        self.usage
    }

    /// The id of the message this emitter writes.
    pub fn response_id(&self) -> &str {
        &self.ctx.id
    }

    fn push(out: &mut Vec<String>, ev: &EventOut) {
        out.extend(serde_json::to_string(ev).ok());
    }

    fn close(&mut self, out: &mut Vec<String>) {
        if let Some((_, index)) = self.open.take() {
            Self::push(out, &EventOut::ContentBlockStop { index });
        }
    }

    fn open_block(&mut self, kind: OpenBlock, block: BlockOut, out: &mut Vec<String>) -> u64 {
        self.close(out);
        let index = self.next_block;
        self.next_block = self.next_block.saturating_add(1);
        self.open = Some((kind, index));
        Self::push(
            out,
            &EventOut::ContentBlockStart {
                index,
                content_block: block,
            },
        );
        index
    }

    /// Writes the events for `delta` to `out`.
    pub fn emit(&mut self, delta: Delta, out: &mut Vec<String>) -> Result<(), PayloadError> {
        self.start(out);
        match delta {
            Delta::Start
            | Delta::Thinking(_)
            | Delta::ThinkingSignature(_)
            | Delta::ReasoningTokens(_) => {}
            Delta::Text(text) => {
                let index = match self.open {
                    Some((OpenBlock::Text, i)) => i,
                    _ => self.open_block(OpenBlock::Text, BlockOut::Text { text: "" }, out),
                };
                let delta = DeltaOut::TextDelta { text: &text };
                Self::push(out, &EventOut::ContentBlockDelta { index, delta });
            }
            Delta::ToolCallStart { index, id, name } => {
                let id = tool_id(&id.unwrap_or_else(|| format!("toolu_{}_{index}", self.ctx.id)));
                let block = BlockOut::ToolUse {
                    id,
                    name,
                    input: serde_json::Map::new(),
                };
                self.open_block(OpenBlock::Tool(index), block, out);
            }
            Delta::ToolCallArguments { index, fragment } => {
                let Some((OpenBlock::Tool(_), block)) =
                    self.open.filter(|(k, _)| *k == OpenBlock::Tool(index))
                else {
                    return Err(bad(format!(
                        "tool call {index} continued after another block started (interleaved tool calls)"
                    )));
                };
                let delta = DeltaOut::InputJsonDelta {
                    partial_json: &fragment,
                };
                Self::push(
                    out,
                    &EventOut::ContentBlockDelta {
                        index: block,
                        delta,
                    },
                );
            }
            Delta::Usage(u) => self.usage = Some(u),
            Delta::Finish(r) => self.finish = Some(r),
            Delta::Done => self.done(out)?,
        }
        Ok(())
    }

    /// `message_start`, before the first delta.
    fn start(&mut self, out: &mut Vec<String>) {
        if self.started {
            return;
        }
        self.started = true;
        let message = StartOut {
            id: &self.ctx.id,
            kind: "message",
            role: "assistant",
            model: &self.ctx.model,
            content: [],
            stop_reason: None,
            stop_sequence: None,
            usage: StartUsage {
                input_tokens: self.ctx.input_tokens_estimate,
                output_tokens: 0,
            },
        };
        Self::push(out, &EventOut::MessageStart { message });
    }

    /// The end: close the open block, `message_delta`, `message_stop`.
    fn done(&mut self, out: &mut Vec<String>) -> Result<(), PayloadError> {
        let Some(stop) = self.finish else {
            return Err(bad("stream ended without finish_reason"));
        };
        self.close(out);
        let delta = StopOut {
            stop_reason: stop_reason_name(stop),
            stop_sequence: None,
        };
        let usage = match self.usage {
            Some(u) => DeltaUsage::Full(u.into()),
            None => DeltaUsage::None { output_tokens: 0 },
        };
        Self::push(out, &EventOut::MessageDelta { delta, usage });
        Self::push(out, &EventOut::MessageStop);
        Ok(())
    }
}
