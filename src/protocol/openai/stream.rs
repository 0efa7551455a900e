//! Chat Completions streams and the canonical deltas
//! ([`crate::protocol::ir::Delta`]): [`ChunkParser`] reads an upstream's
//! chunks, [`ChunkEmitter`] writes a caller's.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::chat::{error_message, finish_reason_name, parse_finish_reason, UsageOut};
use super::parse_usage;
use crate::protocol::ir::Delta;
use crate::protocol::wire;
use crate::protocol::{PayloadError, SseEvent, StreamContext, Usage};

#[derive(Deserialize)]
struct Chunk {
    choices: Option<Vec<ChunkChoice>>,
    /// Read leniently (wrong types count as absent).
    usage: Option<Value>,
}

#[derive(Deserialize)]
struct ChunkChoice {
    index: Option<u64>,
    delta: Option<ChunkDelta>,
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct ChunkDelta {
    content: Option<String>,
    reasoning_content: Option<String>,
    refusal: Option<String>,
    tool_calls: Option<Vec<ToolCallDelta>>,
}

#[derive(Deserialize)]
struct ToolCallDelta {
    index: Option<u64>,
    id: Option<String>,
    function: Option<FunctionDelta>,
}

#[derive(Deserialize)]
struct FunctionDelta {
    name: Option<String>,
    arguments: Option<String>,
}

/// An upstream's chunks -> canonical deltas (choice 0 only; `refusal`
/// text is text; `reasoning_content` is thinking). A tool-call fragment
/// without `index` (some servers) is a new call when it has an id, else it
/// continues the call in progress.
#[derive(Default)]
pub struct ChunkParser {
    started: bool,
    /// Tool-call indices already started.
    tools_seen: Vec<u64>,
    /// The tool call the last delta belonged to, if the last was a call.
    current_tool: Option<u64>,
}

impl ChunkParser {
    pub fn parse(&mut self, ev: &SseEvent) -> Result<Vec<Delta>, PayloadError> {
        if ev.data.trim() == "[DONE]" {
            return Ok(vec![Delta::Done]);
        }
        let map = wire::json_object(&ev.data, "stream chunk")?;
        if map.get("error").is_some_and(|e| !e.is_null()) {
            let message = error_message(&Value::Object(map));
            return Err(PayloadError::Upstream(
                message.unwrap_or_else(|| "unspecified error in stream".into()),
            ));
        }
        let chunk: Chunk = wire::parse(&map)?;
        let mut out = Vec::new();
        if !self.started {
            self.started = true;
            out.push(Delta::Start);
        }
        out.extend(chunk.usage.as_ref().and_then(parse_usage).map(Delta::Usage));
        let reasoning = chunk
            .usage
            .as_ref()
            .map_or(0, super::chat::reasoning_tokens);
        out.extend((reasoning > 0).then_some(Delta::ReasoningTokens(reasoning)));
        for c in chunk.choices.into_iter().flatten() {
            if c.index.unwrap_or(0) != 0 {
                continue; // only choice 0 is translated
            }
            if let Some(d) = c.delta {
                if let Some(t) = d.reasoning_content.filter(|t| !t.is_empty()) {
                    self.current_tool = None;
                    out.push(Delta::Thinking(t));
                }
                for t in [d.content, d.refusal].into_iter().flatten() {
                    if !t.is_empty() {
                        self.current_tool = None;
                        out.push(Delta::Text(t));
                    }
                }
                for call in d.tool_calls.into_iter().flatten() {
                    self.tool_call(call, &mut out);
                }
            }
            if let Some(f) = c.finish_reason {
                if f == "error" {
                    // vLLM and others end a failed generation this way.
                    return Err(PayloadError::Upstream(
                        "finished with reason `error`".into(),
                    ));
                }
                out.push(Delta::Finish(parse_finish_reason(Some(&f))));
            }
        }
        Ok(out)
    }

    fn tool_call(&mut self, call: ToolCallDelta, out: &mut Vec<Delta>) {
        let (name, args) = match call.function {
            Some(f) => (f.name, f.arguments.unwrap_or_default()),
            None => (None, String::new()),
        };
        let index = match (call.index, &call.id, self.current_tool) {
            (Some(i), _, _) => i,
            (None, None, Some(i)) => i,
            _ => self
                .tools_seen
                .iter()
                .max()
                .map_or(0, |m| m.saturating_add(1)),
        };
        if !self.tools_seen.contains(&index) {
            self.tools_seen.push(index);
            self.current_tool = Some(index);
            out.push(Delta::ToolCallStart {
                index,
                id: call.id,
                name: name.unwrap_or_default(),
            });
        }
        if !args.is_empty() {
            out.push(Delta::ToolCallArguments {
                index,
                fragment: args,
            });
        }
    }
}

// ---------------------------------------------------------------------------
// emitting a caller's chunks

#[derive(Serialize)]
struct ChunkOut<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: Vec<ChoiceOut>,
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<UsageOut>,
}

#[derive(Serialize)]
struct ChoiceOut {
    index: u32,
    delta: DeltaOut,
    logprobs: Option<()>,
    finish_reason: Option<&'static str>,
}

#[derive(Serialize, Default)]
struct DeltaOut {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<String>,
    /// Thinking text, as DeepSeek and vLLM stream it.
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_content: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<ToolCallOut>,
}

#[derive(Serialize)]
struct ToolCallOut {
    index: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    function: FunctionOut,
}

#[derive(Serialize)]
struct FunctionOut {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    arguments: String,
}

/// Canonical deltas -> a caller's `chat.completion.chunk` payloads.
///
/// The first delta gives a chunk with `delta: {role: "assistant",
/// content: ""}`; text -> `delta.content`; thinking ->
/// `delta.reasoning_content`; a tool call -> a `tool_calls` entry with id
/// and name, then its fragments as `arguments`; the finish reason -> an
/// empty delta with `finish_reason`; [`Delta::Done`] -> a `finish_reason:
/// "stop"` chunk if none was sent, then the usage chunk (`choices: []`)
/// when `include_usage`.
pub struct ChunkEmitter {
    ctx: StreamContext,
    started: bool,
    finish_sent: bool,
    usage: Option<Usage>,
    reasoning_tokens: u64,
}

impl ChunkEmitter {
    pub fn new(ctx: StreamContext) -> Self {
        ChunkEmitter {
            ctx,
            started: false,
            finish_sent: false,
            usage: None,
            reasoning_tokens: 0,
        }
    }

    /// The id of the chunks this emitter writes.
    pub fn response_id(&self) -> &str {
        &self.ctx.id
    }

    fn chunk(&self, delta: DeltaOut, finish: Option<&'static str>) -> String {
        self.write(
            vec![ChoiceOut {
                index: 0,
                delta,
                logprobs: None,
                finish_reason: finish,
            }],
            None,
        )
    }

    fn write(&self, choices: Vec<ChoiceOut>, usage: Option<UsageOut>) -> String {
        let c = ChunkOut {
            id: &self.ctx.id,
            object: "chat.completion.chunk",
            created: self.ctx.created,
            model: &self.ctx.model,
            choices,
            usage,
        };
        serde_json::to_string(&c).unwrap_or_default()
    }

    fn start(&mut self, out: &mut Vec<String>) {
        if !self.started {
            self.started = true;
            let role = DeltaOut {
                role: Some("assistant"),
                content: Some(String::new()),
                ..DeltaOut::default()
            };
            out.push(self.chunk(role, None));
        }
    }

    fn send(&mut self, delta: DeltaOut, finish: Option<&'static str>, out: &mut Vec<String>) {
        self.start(out);
        out.push(self.chunk(delta, finish));
    }

    /// Writes the chunks for `delta` to `out`.
    pub fn emit(&mut self, delta: Delta, out: &mut Vec<String>) {
        let call = |index, id, kind, name, arguments| DeltaOut {
            tool_calls: vec![ToolCallOut {
                index,
                id,
                kind,
                function: FunctionOut { name, arguments },
            }],
            ..DeltaOut::default()
        };
        match delta {
            Delta::Start => self.start(out),
            Delta::Text(t) => {
                let d = DeltaOut {
                    content: Some(t),
                    ..DeltaOut::default()
                };
                self.send(d, None, out);
            }
            Delta::Thinking(t) => {
                let d = DeltaOut {
                    reasoning_content: Some(t),
                    ..DeltaOut::default()
                };
                self.send(d, None, out);
            }
            Delta::ToolCallStart { index, id, name } => {
                let d = call(index, id, Some("function"), Some(name), String::new());
                self.send(d, None, out);
            }
            Delta::ToolCallArguments { index, fragment } => {
                self.send(call(index, None, None, None, fragment), None, out);
            }
            Delta::ThinkingSignature(_) => {}
            Delta::ReasoningTokens(n) => self.reasoning_tokens = n,
            Delta::Usage(u) => self.usage = Some(u),
            Delta::Finish(r) => {
                self.send(DeltaOut::default(), Some(finish_reason_name(r)), out);
                self.finish_sent = true;
            }
            Delta::Done => {
                if !self.finish_sent {
                    self.send(DeltaOut::default(), Some("stop"), out);
                    self.finish_sent = true;
                }
                if self.ctx.include_usage {
                    let usage = UsageOut::from(self.usage.unwrap_or_default())
                        .with_reasoning(self.reasoning_tokens);
                    out.push(self.write(Vec::new(), Some(usage)));
                }
            }
        }
    }
}
