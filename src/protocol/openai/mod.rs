//! OpenAI Chat Completions: usage, response checks, error bodies, and the
//! pass-through stream adapter (OpenAI upstream, OpenAI caller).

pub mod chat;
pub mod stream;

/// What llmux appends to a Chat Completions provider's base URL.
pub const PATH: &str = "/chat/completions";

use super::{PayloadError, SseEvent, StreamAdapter, StreamContext, StreamFacts, StreamStep, Usage};
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};
use std::fmt;

// The pass-through path reads only what routing needs (errors, content,
// finish reason, usage) from borrowed slices of the upstream's bytes, which
// it then forwards untouched: no JSON tree is built per chunk.

/// The fields of a chunk or response llmux looks at.
#[derive(Deserialize)]
struct Lite<'a> {
    #[serde(borrow, default)]
    error: Option<&'a RawValue>,
    #[serde(default)]
    choices: Option<Choices>,
    #[serde(borrow, default)]
    usage: Option<&'a RawValue>,
}

/// What a `choices` array says, read in one pass without keeping it.
#[derive(Default)]
struct Choices {
    len: usize,
    /// Some choice generated content: a `delta`/`message` key other than
    /// `role` whose value carries something.
    content: bool,
    /// Some choice has a finish reason.
    finish: bool,
    /// Some choice finished with reason `error`.
    error: bool,
}

impl Choices {
    /// (generated content seen, finish reason seen); an `error` finish
    /// reason fails.
    fn check(&self) -> Result<(bool, bool), PayloadError> {
        if self.error {
            return Err(PayloadError::Upstream(
                "finished with reason `error`".into(),
            ));
        }
        Ok((self.content, self.finish))
    }
}

#[derive(Deserialize)]
struct LiteChoice<'a> {
    #[serde(borrow, default)]
    finish_reason: Option<&'a RawValue>,
    /// `delta` (chunks) or `message` (responses).
    #[serde(default, alias = "message")]
    delta: Option<Generated>,
}

impl<'de> Deserialize<'de> for Choices {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Scan;
        impl<'de> Visitor<'de> for Scan {
            type Value = Choices;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array of choices")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Choices, A::Error> {
                let mut s = Choices::default();
                while let Some(c) = seq.next_element::<LiteChoice<'de>>()? {
                    s.len += 1;
                    if let Some(r) = c.finish_reason.filter(|r| r.get() != "null") {
                        s.error |= r.get() == "\"error\"";
                        s.finish = true;
                    }
                    s.content |= c.delta.is_some_and(|g| g.0);
                }
                Ok(s)
            }
        }
        d.deserialize_seq(Scan)
    }
}

/// Whether a `delta`/`message` object carries generated content, read
/// without keeping its keys.
struct Generated(bool);

impl<'de> Deserialize<'de> for Generated {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Scan;
        impl<'de> Visitor<'de> for Scan {
            type Value = Generated;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a delta object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Generated, A::Error> {
                let mut content = false;
                while let Some(IsRole(role)) = map.next_key()? {
                    let v: &'de RawValue = map.next_value()?;
                    content |= !role && raw_carries(v);
                }
                Ok(Generated(content))
            }
        }
        d.deserialize_map(Scan)
    }
}

/// A key, read only as whether it is `role`.
struct IsRole(bool);

impl<'de> Deserialize<'de> for IsRole {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Key;
        impl Visitor<'_> for Key {
            type Value = IsRole;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_str<E: de::Error>(self, k: &str) -> Result<IsRole, E> {
                Ok(IsRole(k == "role"))
            }
        }
        d.deserialize_str(Key)
    }
}

impl<'a> Lite<'a> {
    fn parse(text: &'a str, what: &str) -> Result<Lite<'a>, PayloadError> {
        let lite: Lite<'a> = serde_json::from_str(text).map_err(|e| {
            PayloadError::Malformed(format!(
                "{what} is not a JSON object of the expected shape: {e}"
            ))
        })?;
        if let Some(e) = lite.error {
            let v = serde_json::json!({ "error": serde_json::from_str::<Value>(e.get()).unwrap_or(Value::Null) });
            return Err(PayloadError::Upstream(
                error_message(&v).unwrap_or_else(|| e.get().to_owned()),
            ));
        }
        Ok(lite)
    }

    /// The `usage` object, read as [`parse_usage`] reads a `Value` (a
    /// count that is not a u64 counts 0) without building a JSON tree.
    fn usage(&self) -> Option<Usage> {
        let u: LiteUsage<'_> = from_object(self.usage?)?;
        let details = u
            .prompt_tokens_details
            .and_then(from_object::<LiteDetails<'_>>);
        Some(Usage {
            prompt_tokens: raw_count(u.prompt_tokens),
            completion_tokens: raw_count(u.completion_tokens),
            cached_tokens: raw_count(details.and_then(|d| d.cached_tokens)),
        })
    }
}

/// An OpenAI `usage` object; each count is kept raw, so a `null` or a
/// float counts 0 instead of failing the read.
#[derive(Deserialize)]
struct LiteUsage<'a> {
    #[serde(borrow, default)]
    prompt_tokens: Option<&'a RawValue>,
    #[serde(borrow, default)]
    completion_tokens: Option<&'a RawValue>,
    #[serde(borrow, default)]
    prompt_tokens_details: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct LiteDetails<'a> {
    #[serde(borrow, default)]
    cached_tokens: Option<&'a RawValue>,
}

/// A struct read from a raw JSON object (serde would also take an array,
/// field by field, which `Value::get` does not).
fn from_object<'a, T: Deserialize<'a>>(raw: &'a RawValue) -> Option<T> {
    let text = raw.get();
    if !text.trim_start().starts_with('{') {
        return None;
    }
    serde_json::from_str(text).ok()
}

fn raw_count(v: Option<&RawValue>) -> u64 {
    v.and_then(|v| v.get().parse().ok()).unwrap_or(0)
}

/// A raw JSON value that carries something: not null, false, "" or [].
fn raw_carries(v: &RawValue) -> bool {
    !matches!(v.get().trim(), "null" | "false" | "\"\"" | "[]")
}

/// Reads an OpenAI `usage` object.
pub fn parse_usage(v: &Value) -> Option<Usage> {
    let names = [
        "prompt_tokens",
        "completion_tokens",
        "prompt_tokens_details",
    ];
    super::wire::read_usage(v, names)
}

/// The message of an OpenAI error body (`{"error": {"message": ..}}`), or of
/// an error given as a bare string.
pub fn error_message(v: &Value) -> Option<String> {
    match v.get("error")? {
        Value::String(s) => Some(s.clone()),
        e => e
            .get("message")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .or_else(|| Some(e.to_string())),
    }
}

/// Checks a non-streaming `chat.completion` body; returns its usage.
/// Errors: an `error` body, an `error` finish reason, an empty completion
/// (no content and no tool calls), a body without `choices`.
pub fn check_response(body: &str) -> Result<Option<Usage>, PayloadError> {
    let lite = Lite::parse(body, "response body")?;
    let choices = lite
        .choices
        .as_ref()
        .ok_or_else(|| PayloadError::Malformed("response has no `choices` array".into()))?;
    let (generated, _) = choices.check()?;
    if !generated {
        return Err(PayloadError::Upstream(
            "empty completion: no content and no tool calls".into(),
        ));
    }
    Ok(lite.usage())
}

/// An OpenAI-shaped error body. `code` is a string in OpenAI's schema, so
/// it carries the error kind; the HTTP status travels beside the body (the
/// terminal event's `status`).
pub fn error_body(_status: u16, kind: &str, message: &str) -> Value {
    json!({ "error": { "message": message, "type": kind, "param": null, "code": kind } })
}

/// OpenAI upstream to OpenAI caller: chunks are forwarded byte for byte.
/// The usage-only chunk is forwarded only when the caller asked for it.
pub struct Passthrough {
    ctx: StreamContext,
    usage: Option<Usage>,
    finish_seen: bool,
    /// Read from the first chunk with a finish reason (once per stream).
    facts: StreamFacts,
}

/// The id and finish reason of the chunk that finishes a stream.
fn finish_facts(data: &str) -> StreamFacts {
    #[derive(Deserialize)]
    struct Choice {
        finish_reason: Option<String>,
    }
    #[derive(Deserialize)]
    struct Chunk {
        id: Option<String>,
        #[serde(default)]
        choices: Vec<Choice>,
    }
    let Ok(c) = serde_json::from_str::<Chunk>(data) else {
        return StreamFacts::default();
    };
    StreamFacts {
        id: c.id,
        finish_reason: c.choices.into_iter().find_map(|c| c.finish_reason),
    }
}

impl Passthrough {
    pub fn new(ctx: StreamContext) -> Self {
        Passthrough {
            ctx,
            usage: None,
            finish_seen: false,
            facts: StreamFacts::default(),
        }
    }
}

impl Passthrough {
    /// Reads one event: its step (with nothing in `out` yet), and whether
    /// the event goes to the caller unchanged.
    fn read(&mut self, ev: &SseEvent) -> Result<(StreamStep, bool), PayloadError> {
        if ev.data == "[DONE]" {
            if !self.finish_seen {
                return Err(PayloadError::Malformed(
                    "stream sent [DONE] without a finish_reason".into(),
                ));
            }
            let step = StreamStep {
                finished: true,
                ..Default::default()
            };
            return Ok((step, false));
        }
        let lite = Lite::parse(&ev.data, "stream event")?;
        if let Some(u) = lite.usage() {
            self.usage = Some(u);
        }
        let choices = lite.choices.unwrap_or_default();
        let (content, finish) = choices.check()?;
        if finish && !self.finish_seen {
            self.facts = finish_facts(&ev.data);
        }
        self.finish_seen |= finish;
        let forward = choices.len > 0 || self.ctx.include_usage;
        let step = StreamStep {
            content,
            ..Default::default()
        };
        Ok((step, forward))
    }
}

impl StreamAdapter for Passthrough {
    fn on_event(&mut self, ev: &SseEvent) -> Result<StreamStep, PayloadError> {
        let (mut step, forward) = self.read(ev)?;
        if forward {
            step.out.push(ev.data.clone());
        }
        Ok(step)
    }

    fn on_owned(&mut self, ev: SseEvent) -> Result<StreamStep, PayloadError> {
        let (mut step, forward) = self.read(&ev)?;
        if forward {
            step.out.push(ev.data);
        }
        Ok(step)
    }

    fn usage(&self) -> Option<Usage> {
        self.usage
    }

    fn facts(&self) -> StreamFacts {
        self.facts.clone()
    }
}

#[cfg(test)]
mod tests;
