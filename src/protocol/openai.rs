//! OpenAI Chat Completions: usage, response checks, error bodies, and the
//! pass-through stream adapter (OpenAI upstream, OpenAI caller).

use super::{PayloadError, SseEvent, StreamAdapter, StreamContext, StreamStep, Usage};
use serde_json::{json, Value};

/// Reads an OpenAI `usage` object.
pub fn parse_usage(v: &Value) -> Option<Usage> {
    let u = v.as_object()?;
    let get = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
    Some(Usage {
        prompt_tokens: get("prompt_tokens"),
        completion_tokens: get("completion_tokens"),
        cached_tokens: u
            .get("prompt_tokens_details")
            .and_then(|d| d.get("cached_tokens"))
            .and_then(Value::as_u64)
            .unwrap_or(0),
    })
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
pub fn check_response(v: &Value) -> Result<Option<Usage>, PayloadError> {
    if let Some(msg) = error_message(v) {
        return Err(PayloadError::Upstream(msg));
    }
    let choices = v
        .get("choices")
        .and_then(Value::as_array)
        .ok_or_else(|| PayloadError::Malformed("response has no `choices` array".into()))?;
    let mut generated = false;
    for c in choices {
        if c.get("finish_reason").and_then(Value::as_str) == Some("error") {
            return Err(PayloadError::Upstream(
                "choice finished with reason `error`".into(),
            ));
        }
        if let Some(m) = c.get("message").and_then(Value::as_object) {
            generated |= m.iter().any(|(k, v)| k != "role" && carries(v));
        }
    }
    if !generated {
        return Err(PayloadError::Upstream(
            "empty completion: no content and no tool calls".into(),
        ));
    }
    Ok(v.get("usage").and_then(parse_usage))
}

/// A JSON value that carries something: not null, false, "" or [].
pub(crate) fn carries(v: &Value) -> bool {
    match v {
        Value::Null | Value::Bool(false) => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        _ => true,
    }
}

/// An OpenAI-shaped error body. `code` is a string in OpenAI's schema, so
/// it carries the error kind; the HTTP status travels beside the body (the
/// terminal event's `status`).
pub fn error_body(_status: u16, kind: &str, message: &str) -> Value {
    json!({ "error": { "message": message, "type": kind, "param": null, "code": kind } })
}

/// True when a chunk's choices carry generated content (a finish reason
/// alone is not content: a stream with nothing else is an empty completion).
fn chunk_has_content(choices: &[Value], finish_seen: &mut bool) -> Result<bool, PayloadError> {
    let mut content = false;
    for c in choices {
        if let Some(reason) = c.get("finish_reason").and_then(Value::as_str) {
            if reason == "error" {
                return Err(PayloadError::Upstream(
                    "stream finished with reason `error`".into(),
                ));
            }
            *finish_seen = true;
        }
        if let Some(d) = c.get("delta").and_then(Value::as_object) {
            for (k, v) in d {
                let carries = match k.as_str() {
                    "role" => false,
                    _ => match v {
                        Value::Null => false,
                        Value::String(s) => !s.is_empty(),
                        Value::Array(a) => !a.is_empty(),
                        _ => true,
                    },
                };
                content |= carries;
            }
        }
    }
    Ok(content)
}

/// OpenAI upstream to OpenAI caller: chunks are forwarded byte for byte.
/// The usage-only chunk is forwarded only when the caller asked for it.
pub struct Passthrough {
    ctx: StreamContext,
    usage: Option<Usage>,
    finish_seen: bool,
}

impl Passthrough {
    pub fn new(ctx: StreamContext) -> Self {
        Passthrough {
            ctx,
            usage: None,
            finish_seen: false,
        }
    }
}

impl StreamAdapter for Passthrough {
    fn on_event(&mut self, ev: &SseEvent) -> Result<StreamStep, PayloadError> {
        if ev.data == "[DONE]" {
            if !self.finish_seen {
                return Err(PayloadError::Malformed(
                    "stream sent [DONE] without a finish_reason".into(),
                ));
            }
            return Ok(StreamStep {
                finished: true,
                ..Default::default()
            });
        }
        let v: Value = serde_json::from_str(&ev.data)
            .map_err(|e| PayloadError::Malformed(format!("stream event is not JSON: {e}")))?;
        if let Some(msg) = error_message(&v) {
            return Err(PayloadError::Upstream(msg));
        }
        if let Some(u) = v.get("usage").and_then(parse_usage) {
            self.usage = Some(u);
        }
        let choices = match v.get("choices") {
            Some(Value::Array(a)) => a.as_slice(),
            None | Some(Value::Null) => &[],
            Some(_) => {
                return Err(PayloadError::Malformed(
                    "chunk `choices` is not an array".into(),
                ))
            }
        };
        let content = chunk_has_content(choices, &mut self.finish_seen)?;
        let forward = !choices.is_empty() || self.ctx.include_usage;
        let out = if forward {
            vec![ev.data.clone()]
        } else {
            Vec::new()
        };
        Ok(StreamStep {
            out,
            content,
            finished: false,
        })
    }

    fn usage(&self) -> Option<Usage> {
        self.usage
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(include_usage: bool) -> StreamContext {
        StreamContext {
            model: "m".into(),
            include_usage,
            created: 1,
            id: "x".into(),
        }
    }
    fn data(s: &str) -> SseEvent {
        SseEvent {
            event: String::new(),
            data: s.into(),
        }
    }

    #[test]
    fn role_chunk_is_not_content_text_is() {
        let mut p = Passthrough::new(ctx(false));
        let s = p
            .on_event(&data(
                r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}"#,
            ))
            .unwrap();
        assert!(!s.content);
        assert_eq!(s.out.len(), 1);
        let s = p
            .on_event(&data(
                r#"{"choices":[{"index":0,"delta":{"content":"hi"}}]}"#,
            ))
            .unwrap();
        assert!(s.content);
    }

    #[test]
    fn usage_chunk_forwarded_only_when_asked_and_done_needs_finish() {
        let mut p = Passthrough::new(ctx(false));
        assert!(p.on_event(&data("[DONE]")).is_err());
        let s = p
            .on_event(&data(
                r#"{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#,
            ))
            .unwrap();
        assert!(!s.content);
        let s = p
            .on_event(&data(
                r#"{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7,"prompt_tokens_details":{"cached_tokens":1}}}"#,
            ))
            .unwrap();
        assert!(s.out.is_empty());
        assert_eq!(
            p.usage(),
            Some(Usage {
                prompt_tokens: 3,
                completion_tokens: 4,
                cached_tokens: 1
            })
        );
        assert!(p.on_event(&data("[DONE]")).unwrap().finished);

        let mut p = Passthrough::new(ctx(true));
        let s = p
            .on_event(&data(r#"{"choices":[],"usage":{"prompt_tokens":3}}"#))
            .unwrap();
        assert_eq!(s.out.len(), 1);
    }

    #[test]
    fn errors_and_garbage() {
        let mut p = Passthrough::new(ctx(false));
        assert!(matches!(
            p.on_event(&data("{not json")),
            Err(PayloadError::Malformed(_))
        ));
        assert!(matches!(
            p.on_event(&data(r#"{"error":{"message":"boom"}}"#)),
            Err(PayloadError::Upstream(m)) if m == "boom"
        ));
        assert!(p.on_event(&data(r#"{"choices":5}"#)).is_err());
        assert!(p.on_event(&data(r#"[1,2]"#)).is_ok());
        assert!(
            check_response(&json!({"choices": []})).is_err(),
            "empty completion"
        );
        let empty = json!({"choices": [{"message": {"role": "assistant", "content": ""}}]});
        assert!(check_response(&empty).is_err());
        let text = json!({"choices": [{"message": {"role": "assistant", "content": "x"}}]});
        assert!(check_response(&text).is_ok());
        let tools = json!({"choices": [{"message": {"content": null, "tool_calls": [{}]}}]});
        assert!(check_response(&tools).is_ok());
        assert!(check_response(&json!({"nope": 1})).is_err());
        assert!(check_response(&json!({"error": "x"})).is_err());
    }
}
