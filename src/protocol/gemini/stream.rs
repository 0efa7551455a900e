//! Gemini streams (`streamGenerateContent?alt=sse`: one
//! `GenerateContentResponse` per `data:` event, no end marker) and the
//! canonical deltas: [`ChunkParser`] reads an upstream's chunks,
//! [`ChunkEmitter`] writes a caller's; [`crate::protocol::stream_adapter`]
//! joins them with the other protocols' parsers and emitters.
//!
//! A chunk with a `finishReason` completes the stream (Gemini sends no
//! `[DONE]`); a stream that stops before one is truncated.

use serde_json::{Map, Value};

use super::response::{
    finish_reason_name, parse_finish_reason, Candidate, GenerateContentResponse,
};
use super::{Content, FunctionCall, Part, UsageMetadata};
use crate::protocol::ir::{Delta, StopReason};
use crate::protocol::wire::{self, bad};
use crate::protocol::{
    PayloadError, SseEvent, StreamAdapter, StreamContext, StreamFacts, StreamStep, Usage,
};

/// An upstream's chunks -> canonical deltas (candidate 0). Text parts are
/// text, `thought: true` parts thinking (signatures are not carried by
/// deltas), each `functionCall` a whole tool call (start, then its
/// arguments as one fragment; an id is made when the upstream gave none);
/// `usageMetadata` the usage; a `finishReason` the finish and the end.
#[derive(Default)]
pub struct ChunkParser {
    started: bool,
    calls: u64,
    usage: Option<Usage>,
    /// The upstream's `responseId` (first seen) and `finishReason`.
    facts: StreamFacts,
}

impl ChunkParser {
    pub fn usage(&self) -> Option<Usage> {
        self.usage
    }

    /// The upstream's response id and finish reason, as it wrote them.
    pub fn facts(&self) -> &StreamFacts {
        &self.facts
    }

    pub fn parse(&mut self, ev: &SseEvent) -> Result<Vec<Delta>, PayloadError> {
        let map = wire::json_object(&ev.data, "stream chunk")?;
        if map.get("error").is_some_and(|e| !e.is_null()) {
            return Err(super::upstream_error(&Value::Object(map)));
        }
        let chunk: GenerateContentResponse = wire::parse(&map)?;
        let mut out = Vec::new();
        if !self.started {
            self.started = true;
            out.push(Delta::Start);
        }
        let id = chunk.response_id.unwrap_or_default();
        if self.facts.id.is_none() && !id.is_empty() {
            self.facts.id = Some(id.clone());
        }
        let mut finish = None;
        for c in chunk.candidates.into_iter().filter(|c| c.index == 0) {
            for p in c.content.map(|c| c.parts).unwrap_or_default() {
                self.part(p, &id, &mut out)?;
            }
            finish = finish.or(c.finish_reason);
        }
        if let Some(u) = chunk.usage_metadata {
            let thoughts = u.thoughts_token_count;
            self.usage = Some(u.into());
            out.extend(self.usage.map(Delta::Usage));
            out.extend((thoughts > 0).then_some(Delta::ReasoningTokens(thoughts)));
        }
        if let Some(f) = finish {
            out.push(Delta::Finish(parse_finish_reason(&f, self.calls > 0)));
            self.facts.finish_reason = Some(f);
            out.push(Delta::Done);
        } else if chunk.prompt_feedback.and_then(|f| f.block_reason).is_some() {
            out.push(Delta::Finish(StopReason::Refusal));
            out.push(Delta::Done);
        }
        Ok(out)
    }

    fn part(&mut self, p: Part, id: &str, out: &mut Vec<Delta>) -> Result<(), PayloadError> {
        match (p.text, p.function_call) {
            (Some(t), _) if t.is_empty() => {}
            (Some(t), _) if p.thought == Some(true) => out.push(Delta::Thinking(t)),
            (Some(t), _) => out.push(Delta::Text(t)),
            (None, Some(f)) => {
                let index = self.calls;
                self.calls = self.calls.saturating_add(1);
                let fragment = serde_json::to_string(&f.args).map_err(|e| bad(e.to_string()))?;
                out.push(Delta::ToolCallStart {
                    index,
                    id: Some(f.id.unwrap_or_else(|| format!("call_{id}_{index}"))),
                    name: f.name,
                });
                out.push(Delta::ToolCallArguments { index, fragment });
            }
            _ => {}
        }
        Ok(())
    }
}

/// A tool call being gathered: Gemini sends each call whole.
struct PendingCall {
    index: u64,
    id: Option<String>,
    name: String,
    args: String,
}

/// Canonical deltas -> a caller's Gemini chunks. Text and thinking go out
/// as they come (thinking as `thought: true` parts); tool calls are
/// gathered until the next text, thinking or the end, then sent as
/// `functionCall` parts with their ids (made from the stream id when the
/// upstream gave none). On [`Delta::Done`] the last chunk carries the
/// finish reason (`STOP` when none came) and `usageMetadata`.
pub struct ChunkEmitter {
    ctx: StreamContext,
    calls: Vec<PendingCall>,
    finish: Option<StopReason>,
    usage: Option<Usage>,
    reasoning_tokens: u64,
}

impl ChunkEmitter {
    pub fn new(ctx: StreamContext) -> Self {
        ChunkEmitter {
            ctx,
            calls: Vec::new(),
            finish: None,
            usage: None,
            reasoning_tokens: 0,
        }
    }

    pub fn usage(&self) -> Option<Usage> {
        self.usage
    }

    /// The `responseId` of the chunks this emitter writes.
    pub fn response_id(&self) -> &str {
        &self.ctx.id
    }

    fn chunk(&self, parts: Vec<Part>, finish: Option<StopReason>) -> String {
        let done = finish.is_some();
        let c = GenerateContentResponse {
            candidates: vec![Candidate {
                content: Some(Content {
                    role: Some("model".into()),
                    parts,
                }),
                finish_reason: finish.map(|f| finish_reason_name(f).to_owned()),
                index: 0,
            }],
            prompt_feedback: None,
            usage_metadata: self
                .usage
                .filter(|_| done)
                .map(|u| UsageMetadata::of(u, self.reasoning_tokens)),
            model_version: Some(self.ctx.model.clone()),
            response_id: Some(self.ctx.id.clone()),
        };
        serde_json::to_string(&c).unwrap_or_default()
    }

    fn take_calls(&mut self) -> Result<Vec<Part>, PayloadError> {
        let mut parts = Vec::new();
        for c in std::mem::take(&mut self.calls) {
            let args: Map<String, Value> = if c.args.trim().is_empty() {
                Map::new()
            } else {
                serde_json::from_str(&c.args).map_err(|e| {
                    bad(format!(
                        "the arguments of tool call {} ({}) are not a JSON object: {e}",
                        c.index, c.name
                    ))
                })?
            };
            let id =
                c.id.unwrap_or_else(|| format!("call_{}_{}", self.ctx.id, c.index));
            parts.push(Part {
                function_call: Some(FunctionCall {
                    id: Some(id),
                    name: c.name,
                    args,
                }),
                ..Part::default()
            });
        }
        Ok(parts)
    }

    fn flush(&mut self, out: &mut Vec<String>) -> Result<(), PayloadError> {
        let parts = self.take_calls()?;
        if !parts.is_empty() {
            out.push(self.chunk(parts, None));
        }
        Ok(())
    }

    /// Writes the chunks for `delta` to `out`.
    pub fn emit(&mut self, delta: Delta, out: &mut Vec<String>) -> Result<(), PayloadError> {
        match delta {
            Delta::Start => {}
            Delta::Text(t) => {
                self.flush(out)?;
                out.push(self.chunk(vec![Part::text(t)], None));
            }
            Delta::Thinking(t) => {
                self.flush(out)?;
                let p = Part {
                    thought: Some(true),
                    ..Part::text(t)
                };
                out.push(self.chunk(vec![p], None));
            }
            Delta::ToolCallStart { index, id, name } => self.calls.push(PendingCall {
                index,
                id,
                name,
                args: String::new(),
            }),
            Delta::ToolCallArguments { index, fragment } => {
                match self.calls.iter_mut().find(|c| c.index == index) {
                    Some(c) => c.args.push_str(&fragment),
                    None => {
                        return Err(bad(format!(
                        "arguments for tool call {index}, which did not start or was already sent"
                    )))
                    }
                }
            }
            Delta::Usage(u) => self.usage = Some(u),
            Delta::ReasoningTokens(n) => self.reasoning_tokens = n,
            // Another protocol's signature means nothing to Gemini.
            Delta::ThinkingSignature(_) => {}
            Delta::Finish(r) => self.finish = Some(r),
            Delta::Done => {
                let parts = self.take_calls()?;
                let finish = self.finish.unwrap_or(StopReason::EndTurn);
                out.push(self.chunk(parts, Some(finish)));
            }
        }
        Ok(())
    }
}

/// Gemini upstream to Gemini caller: chunks forwarded as they are, read
/// for content, usage and the finish reason.
#[derive(Default)]
pub struct Passthrough {
    parser: ChunkParser,
}

impl StreamAdapter for Passthrough {
    fn on_event(&mut self, ev: &SseEvent) -> Result<StreamStep, PayloadError> {
        let deltas = self.parser.parse(ev)?;
        Ok(StreamStep {
            out: vec![ev.data.clone()],
            content: deltas.iter().any(Delta::is_content),
            finished: deltas.contains(&Delta::Done),
        })
    }

    fn on_owned(&mut self, ev: SseEvent) -> Result<StreamStep, PayloadError> {
        let deltas = self.parser.parse(&ev)?;
        Ok(StreamStep {
            out: vec![ev.data],
            content: deltas.iter().any(Delta::is_content),
            finished: deltas.contains(&Delta::Done),
        })
    }

    fn usage(&self) -> Option<Usage> {
        self.parser.usage()
    }

    fn facts(&self) -> StreamFacts {
        self.parser.facts().clone()
    }
}
