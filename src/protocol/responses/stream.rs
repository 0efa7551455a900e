//! Responses streams and the canonical deltas
//! ([`crate::protocol::ir::Delta`]): [`EventParser`] reads an upstream's
//! events, [`EventEmitter`] writes a caller's.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::response::{call_item, reasoning_tokens, status_for, ItemOut, PartOut, ResponseOut};
use super::{encrypted_content, Namespaces};
use super::{failed_event, parse_event, parse_usage, stream_error, UsageOut};
use crate::protocol::ir::{Delta, StopReason};
use crate::protocol::wire::{self, bad, Kinds, Tagged};
use crate::protocol::{PayloadError, SseEvent, StreamContext, Usage};

// ---------------------------------------------------------------------------
// parsing an upstream's events

#[derive(Deserialize)]
#[serde(tag = "type")]
enum EventIn {
    #[serde(rename = "response.created")]
    Created {},
    #[serde(
        rename = "response.output_text.delta",
        alias = "response.refusal.delta"
    )]
    Text {
        #[serde(default)]
        delta: String,
    },
    #[serde(
        rename = "response.reasoning_text.delta",
        alias = "response.reasoning_summary_text.delta"
    )]
    Reasoning {
        #[serde(default)]
        delta: String,
    },
    #[serde(rename = "response.output_item.added")]
    ItemAdded {
        output_index: Option<u64>,
        item: Tagged<ItemIn>,
    },
    #[serde(rename = "response.function_call_arguments.delta")]
    ArgumentsDelta {
        output_index: Option<u64>,
        item_id: Option<String>,
        #[serde(default)]
        delta: String,
    },
    /// A server that sends the arguments only whole, in `.done`.
    #[serde(rename = "response.function_call_arguments.done")]
    ArgumentsDone {
        output_index: Option<u64>,
        item_id: Option<String>,
        #[serde(default)]
        arguments: String,
    },
    #[serde(rename = "response.completed", alias = "response.incomplete")]
    Finished { response: Option<FinalIn> },
}

impl EventIn {
    const KINDS: &'static [&'static str] = &[
        "response.created",
        "response.output_text.delta",
        "response.refusal.delta",
        "response.reasoning_text.delta",
        "response.reasoning_summary_text.delta",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.completed",
        "response.incomplete",
    ];
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ItemIn {
    FunctionCall {
        id: Option<String>,
        call_id: Option<String>,
        #[serde(default)]
        name: String,
        #[serde(default)]
        arguments: String,
    },
}

impl Kinds for ItemIn {
    const KINDS: &'static [&'static str] = &["function_call"];
}

#[derive(Deserialize, Default)]
struct FinalIn {
    status: Option<String>,
    incomplete_details: Option<super::response::Incomplete>,
    /// Read leniently by [`parse_usage`].
    usage: Option<Value>,
}

/// An upstream's Responses events -> canonical deltas: text and refusal
/// deltas are text, reasoning (text or summary) is thinking, function
/// call items are tool calls 0, 1, ... in order; `response.completed` /
/// `response.incomplete` give usage, the finish and the end;
/// `response.failed` and `error` are upstream errors; hosted-tool items
/// and other events give nothing.
#[derive(Default)]
pub struct EventParser {
    /// (output index, item id, tool-call index)
    calls: Vec<(u64, String, u64)>,
    /// Tool-call indices whose arguments were sent.
    args_sent: Vec<u64>,
}

impl EventParser {
    pub fn parse(&mut self, ev: &SseEvent) -> Result<Vec<Delta>, PayloadError> {
        let (name, mut data) = parse_event(ev)?;
        if matches!(name.as_str(), "error" | "response.failed") {
            return Err(stream_error(&name, &data));
        }
        if !EventIn::KINDS.contains(&name.as_str()) {
            return Ok(Vec::new());
        }
        data.insert("type".into(), Value::String(name));
        let mut out = Vec::new();
        match wire::parse::<EventIn>(&data)? {
            EventIn::Created {} => out.push(Delta::Start),
            EventIn::Text { delta } if !delta.is_empty() => out.push(Delta::Text(delta)),
            EventIn::Reasoning { delta } if !delta.is_empty() => out.push(Delta::Thinking(delta)),
            EventIn::Text { .. } | EventIn::Reasoning { .. } => {}
            EventIn::ItemAdded { output_index, item } => {
                if let Tagged::Known(ItemIn::FunctionCall {
                    id,
                    call_id,
                    name,
                    arguments,
                }) = item
                {
                    let k = self.calls.len() as u64;
                    let oi = output_index.unwrap_or(k);
                    self.calls.push((oi, id.unwrap_or_default(), k));
                    out.push(Delta::ToolCallStart {
                        index: k,
                        id: call_id,
                        name,
                    });
                    self.arguments(k, arguments, &mut out);
                }
            }
            EventIn::ArgumentsDelta {
                output_index,
                item_id,
                delta,
            } => {
                if let Some(k) = self.call_index(output_index, item_id.as_deref()) {
                    self.arguments(k, delta, &mut out);
                }
            }
            EventIn::ArgumentsDone {
                output_index,
                item_id,
                arguments,
            } => {
                let k = self.call_index(output_index, item_id.as_deref());
                if let Some(k) = k.filter(|k| !self.args_sent.contains(k)) {
                    self.arguments(k, arguments, &mut out);
                }
            }
            EventIn::Finished { response } => self.finished(response.unwrap_or_default(), &mut out),
        }
        Ok(out)
    }

    fn arguments(&mut self, index: u64, fragment: String, out: &mut Vec<Delta>) {
        if !fragment.is_empty() {
            self.args_sent.push(index);
            out.push(Delta::ToolCallArguments { index, fragment });
        }
    }

    fn call_index(&self, output_index: Option<u64>, item_id: Option<&str>) -> Option<u64> {
        self.calls
            .iter()
            .find(|(o, i, _)| Some(*o) == output_index || Some(i.as_str()) == item_id)
            .map(|c| c.2)
    }

    fn finished(&self, r: FinalIn, out: &mut Vec<Delta>) {
        out.extend(r.usage.as_ref().and_then(parse_usage).map(Delta::Usage));
        let reasoning = r.usage.as_ref().map_or(0, reasoning_tokens);
        out.extend((reasoning > 0).then_some(Delta::ReasoningTokens(reasoning)));
        let reason = r.incomplete_details.and_then(|d| d.reason);
        let stop = match (r.status.as_deref(), reason.as_deref()) {
            (Some("incomplete"), Some("content_filter")) => StopReason::Refusal,
            (Some("incomplete"), _) => StopReason::MaxTokens,
            _ if !self.calls.is_empty() => StopReason::ToolUse,
            _ => StopReason::EndTurn,
        };
        out.push(Delta::Finish(stop));
        out.push(Delta::Done);
    }
}

// ---------------------------------------------------------------------------
// emitting a caller's events

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Reasoning,
    Message,
    Call,
}

/// One output item being streamed.
struct Item {
    kind: Kind,
    id: String,
    /// Text, reasoning text or arguments so far.
    text: String,
    call_id: String,
    name: String,
    done: bool,
}

/// The events this emitter writes.
#[derive(Serialize)]
#[serde(tag = "type")]
enum EventOut<'a> {
    #[serde(rename = "response.created")]
    Created { response: &'a ResponseOut },
    #[serde(rename = "response.in_progress")]
    InProgress { response: &'a ResponseOut },
    #[serde(rename = "response.output_item.added")]
    ItemAdded { output_index: usize, item: ItemOut },
    #[serde(rename = "response.output_item.done")]
    ItemDone { output_index: usize, item: ItemOut },
    #[serde(rename = "response.content_part.added")]
    PartAdded {
        #[serde(flatten)]
        at: At<'a>,
        part: PartOut,
    },
    #[serde(rename = "response.content_part.done")]
    PartDone {
        #[serde(flatten)]
        at: At<'a>,
        part: PartOut,
    },
    #[serde(rename = "response.output_text.delta")]
    TextDelta {
        #[serde(flatten)]
        at: At<'a>,
        delta: &'a str,
        logprobs: [(); 0],
    },
    #[serde(rename = "response.output_text.done")]
    TextDone {
        #[serde(flatten)]
        at: At<'a>,
        text: &'a str,
        logprobs: [(); 0],
    },
    #[serde(rename = "response.reasoning_text.delta")]
    ReasoningDelta {
        #[serde(flatten)]
        at: At<'a>,
        delta: &'a str,
    },
    #[serde(rename = "response.reasoning_text.done")]
    ReasoningDone {
        #[serde(flatten)]
        at: At<'a>,
        text: &'a str,
    },
    #[serde(rename = "response.function_call_arguments.delta")]
    ArgumentsDelta {
        item_id: &'a str,
        output_index: usize,
        delta: &'a str,
    },
    #[serde(rename = "response.function_call_arguments.done")]
    ArgumentsDone {
        item_id: &'a str,
        output_index: usize,
        arguments: &'a str,
    },
    #[serde(rename = "response.completed")]
    Completed { response: &'a ResponseOut },
    #[serde(rename = "response.incomplete")]
    Incomplete { response: &'a ResponseOut },
}

/// Where a content event belongs (flattened into the event).
#[derive(Serialize, Clone, Copy)]
struct At<'a> {
    item_id: &'a str,
    output_index: usize,
    content_index: u32,
}

#[derive(Serialize)]
struct Numbered<'a> {
    #[serde(flatten)]
    event: EventOut<'a>,
    sequence_number: u64,
}

/// Canonical deltas -> a caller's Responses events: `response.created` and
/// `response.in_progress`, then per item `response.output_item.added`,
/// `response.content_part.added`, the deltas, their `.done`,
/// `response.content_part.done`, `response.output_item.done`, and last
/// `response.completed` or `response.incomplete`, numbered in order. A
/// thinking signature rides on the reasoning item (see
/// [`super::THINKING_PREFIX`]).
pub struct EventEmitter {
    ctx: StreamContext,
    shell: ResponseOut,
    ns: Namespaces,
    seq: u64,
    started: bool,
    items: Vec<Item>,
    /// The open reasoning or message item (an index into `items`).
    open: Option<usize>,
    /// (tool-call index, item index)
    calls: Vec<(u64, usize)>,
    finish: Option<StopReason>,
    usage: Option<Usage>,
    reasoning_tokens: u64,
    signature: Option<String>,
}

impl EventEmitter {
    pub fn new(ctx: StreamContext) -> Self {
        let shell = ResponseOut::shell(
            &Map::new(),
            format!("resp_{}", ctx.id),
            ctx.model.clone(),
            ctx.created,
        );
        EventEmitter {
            ctx,
            shell,
            ns: Namespaces::default(),
            seq: 0,
            started: false,
            items: Vec::new(),
            open: None,
            calls: Vec::new(),
            finish: None,
            usage: None,
            reasoning_tokens: 0,
            signature: None,
        }
    }

    /// The id of the response this emitter writes.
    pub fn response_id(&self) -> &str {
        &self.shell.id
    }

    /// A stop reason as the response's `status`.
    pub fn status_name(r: StopReason) -> &'static str {
        status_for(r).0
    }

    /// Echoes the caller's request in the response and restores its
    /// namespaced tool names.
    pub fn configure(&mut self, request: &Map<String, Value>) {
        self.ns = Namespaces::of(request);
        let id = std::mem::take(&mut self.shell.id);
        self.shell = ResponseOut::shell(request, id, self.ctx.model.clone(), self.ctx.created);
    }

    fn push(&mut self, out: &mut Vec<String>, event: EventOut<'_>) {
        let n = Numbered {
            event,
            sequence_number: self.seq,
        };
        self.seq += 1;
        out.extend(serde_json::to_string(&n).ok());
    }

    fn item_out(&self, i: usize) -> ItemOut {
        let it = &self.items[i];
        let status = if it.done { "completed" } else { "in_progress" };
        let text = if it.done {
            it.text.clone()
        } else {
            String::new()
        };
        let id = it.id.clone();
        match it.kind {
            Kind::Reasoning => ItemOut::Reasoning {
                id,
                summary: [],
                status,
                content: match it.done {
                    true => vec![PartOut::ReasoningText { text }],
                    false => Vec::new(),
                },
                encrypted_content: self.signature.clone().filter(|_| it.done),
            },
            Kind::Message => ItemOut::Message {
                id,
                role: "assistant",
                status,
                content: match it.done {
                    true => vec![PartOut::text(text)],
                    false => Vec::new(),
                },
            },
            Kind::Call => call_item(id, &it.call_id, &it.name, text, &self.ns, status),
        }
    }

    fn start(&mut self, out: &mut Vec<String>) {
        if self.started {
            return;
        }
        self.started = true;
        let shell = self.shell.clone();
        self.push(out, EventOut::Created { response: &shell });
        self.push(out, EventOut::InProgress { response: &shell });
    }

    /// Writes the events for `delta` to `out`.
    pub fn emit(&mut self, delta: Delta, out: &mut Vec<String>) -> Result<(), PayloadError> {
        self.start(out);
        match delta {
            Delta::Start => {}
            Delta::Text(t) => self.text(Kind::Message, &t, out),
            Delta::Thinking(t) => self.text(Kind::Reasoning, &t, out),
            Delta::ThinkingSignature(s) => self.signature = Some(encrypted_content(&s)),
            Delta::ToolCallStart { index, id, name } => {
                let call_id = id.unwrap_or_else(|| format!("call_{}_{index}", self.ctx.id));
                self.close_open(out);
                let i = self.add_item(Kind::Call, call_id, name, out);
                self.calls.push((index, i));
            }
            Delta::ToolCallArguments { index, fragment } => {
                let Some(&(_, i)) = self.calls.iter().find(|(k, _)| *k == index) else {
                    return Err(bad(format!(
                        "arguments for tool call {index}, never started"
                    )));
                };
                self.items[i].text.push_str(&fragment);
                let id = self.items[i].id.clone();
                let delta = EventOut::ArgumentsDelta {
                    item_id: &id,
                    output_index: i,
                    delta: &fragment,
                };
                self.push(out, delta);
            }
            Delta::Usage(u) => self.usage = Some(u),
            Delta::ReasoningTokens(n) => self.reasoning_tokens = n,
            Delta::Finish(r) => self.finish = Some(r),
            Delta::Done => self.done(out)?,
        }
        Ok(())
    }

    fn close_open(&mut self, out: &mut Vec<String>) {
        if let Some(o) = self.open.take() {
            self.close_item(o, out);
        }
    }

    fn add_item(
        &mut self,
        kind: Kind,
        call_id: String,
        name: String,
        out: &mut Vec<String>,
    ) -> usize {
        let i = self.items.len();
        let prefix = match kind {
            Kind::Reasoning => "rs",
            Kind::Message => "msg",
            Kind::Call => "fc",
        };
        self.items.push(Item {
            kind,
            id: format!("{prefix}_{}_{i}", self.ctx.id),
            text: String::new(),
            call_id,
            name,
            done: false,
        });
        let item = self.item_out(i);
        self.push(
            out,
            EventOut::ItemAdded {
                output_index: i,
                item,
            },
        );
        let part = match kind {
            Kind::Reasoning => PartOut::ReasoningText {
                text: String::new(),
            },
            Kind::Message => PartOut::text(String::new()),
            Kind::Call => return i,
        };
        let id = self.items[i].id.clone();
        let at = at(&id, i);
        self.push(out, EventOut::PartAdded { at, part });
        i
    }

    fn close_item(&mut self, i: usize, out: &mut Vec<String>) {
        if self.items[i].done {
            return;
        }
        self.items[i].done = true;
        let (id, text) = (self.items[i].id.clone(), self.items[i].text.clone());
        let at = at(&id, i);
        match self.items[i].kind {
            Kind::Reasoning => {
                self.push(out, EventOut::ReasoningDone { at, text: &text });
                let part = PartOut::ReasoningText { text: text.clone() };
                self.push(out, EventOut::PartDone { at, part });
            }
            Kind::Message => {
                let done = EventOut::TextDone {
                    at,
                    text: &text,
                    logprobs: [],
                };
                self.push(out, done);
                let part = PartOut::text(text.clone());
                self.push(out, EventOut::PartDone { at, part });
            }
            Kind::Call => {
                let done = EventOut::ArgumentsDone {
                    item_id: &id,
                    output_index: i,
                    arguments: &text,
                };
                self.push(out, done);
            }
        }
        let item = self.item_out(i);
        self.push(
            out,
            EventOut::ItemDone {
                output_index: i,
                item,
            },
        );
    }

    /// Appends text to the open item of `kind`, opening it if needed.
    fn text(&mut self, kind: Kind, t: &str, out: &mut Vec<String>) {
        let i = match self.open.filter(|&i| self.items[i].kind == kind) {
            Some(i) => i,
            None => {
                self.close_open(out);
                let i = self.add_item(kind, String::new(), String::new(), out);
                self.open = Some(i);
                i
            }
        };
        self.items[i].text.push_str(t);
        let id = self.items[i].id.clone();
        let at = at(&id, i);
        let ev = match kind {
            Kind::Reasoning => EventOut::ReasoningDelta { at, delta: t },
            _ => EventOut::TextDelta {
                at,
                delta: t,
                logprobs: [],
            },
        };
        self.push(out, ev);
    }

    /// The response so far, with every item.
    fn response(&self) -> ResponseOut {
        let mut r = self.shell.clone();
        r.output = (0..self.items.len()).map(|i| self.item_out(i)).collect();
        r
    }

    fn done(&mut self, out: &mut Vec<String>) -> Result<(), PayloadError> {
        let Some(stop) = self.finish else {
            return Err(bad("stream ended without finish_reason"));
        };
        for i in 0..self.items.len() {
            self.close_item(i, out);
        }
        let mut r = self.response();
        (r.status, r.incomplete_details) = status_for(stop);
        r.usage = Some(UsageOut::new(
            self.usage.unwrap_or_default(),
            self.reasoning_tokens,
        ));
        let ev = match r.status {
            "completed" => EventOut::Completed { response: &r },
            _ => EventOut::Incomplete { response: &r },
        };
        self.push(out, ev);
        Ok(())
    }

    /// `response.failed`, for a stream cut after its first token.
    pub fn fail(&mut self, message: &str) -> Vec<String> {
        let r = match serde_json::to_value(self.response()) {
            Ok(Value::Object(m)) => m,
            _ => Map::new(),
        };
        let seq = self.seq;
        self.seq += 1;
        vec![failed_event(&r, seq, message)]
    }
}

fn at(item_id: &str, output_index: usize) -> At<'_> {
    At {
        item_id,
        output_index,
        content_index: 0,
    }
}
