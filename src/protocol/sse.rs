//! Server-sent events both ways: a decoder for what upstreams send, and the
//! framing a server writes to callers in each protocol (chunks, keep-alive,
//! the end of a stream, an error that ends one).
//!
//! The decoder takes bytes as they arrive from the network, in reads of any
//! size.
//!
//! Lines end in LF, CRLF or a lone CR, including a CR at the end of one read
//! followed by LF at the start of the next. Bytes are buffered until a line
//! is complete, so UTF-8 split across reads is never decoded early. A blank
//! line dispatches an event; `:` lines are comments; a field splits at the
//! first colon and drops one leading space; `data:` lines join with `\n`;
//! unknown fields are ignored; an unterminated event at end of stream is
//! discarded (see [`Decoder::finish`]).

use super::{Protocol, SseEvent};
use serde::Deserialize;
use std::borrow::Cow;

/// The longest line accepted before the stream is declared garbage.
pub const MAX_LINE: usize = 16 * 1024 * 1024;

/// Errors the decoder reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SseError {
    /// A single line or event grew past [`MAX_LINE`] bytes.
    TooLong,
}

impl std::fmt::Display for SseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SseError::TooLong => write!(f, "server-sent event longer than {MAX_LINE} bytes"),
        }
    }
}

/// Incremental SSE decoder.
#[derive(Debug, Default)]
pub struct Decoder {
    line: Vec<u8>,
    skip_lf: bool,
    event: String,
    data: String,
    has_data: bool,
}

impl Decoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds one network read; complete events are appended to `out`.
    pub fn feed(&mut self, mut input: &[u8], out: &mut Vec<SseEvent>) -> Result<(), SseError> {
        if self.skip_lf && !input.is_empty() {
            if input[0] == b'\n' {
                input = &input[1..];
            }
            self.skip_lf = false;
        }
        while !input.is_empty() {
            match memchr::memchr2(b'\n', b'\r', input) {
                None => {
                    if self.line.len() + input.len() > MAX_LINE {
                        return Err(SseError::TooLong);
                    }
                    self.line.extend_from_slice(input);
                    break;
                }
                Some(i) => {
                    let term = input[i];
                    if self.line.is_empty() {
                        self.process_line(&input[..i], out)?;
                    } else {
                        if self.line.len() + i > MAX_LINE {
                            return Err(SseError::TooLong);
                        }
                        self.line.extend_from_slice(&input[..i]);
                        let line = std::mem::take(&mut self.line);
                        self.process_line(&line, out)?;
                        // Reuse the allocation for the next partial line.
                        self.line = line;
                        self.line.clear();
                    }
                    input = &input[i + 1..];
                    if term == b'\r' {
                        match input.first() {
                            Some(b'\n') => input = &input[1..],
                            None => self.skip_lf = true,
                            Some(_) => {}
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Ends the stream. An event that was not terminated by a blank line is
    /// discarded, as the SSE specification says. Returns true when such a
    /// partial event (or partial line) was pending: the stream was cut.
    pub fn finish(&mut self) -> bool {
        let cut = !self.line.is_empty() || self.has_data || !self.event.is_empty();
        self.line.clear();
        self.event.clear();
        self.data.clear();
        self.has_data = false;
        cut
    }

    fn process_line(&mut self, line: &[u8], out: &mut Vec<SseEvent>) -> Result<(), SseError> {
        if line.is_empty() {
            if self.has_data {
                let mut data = std::mem::take(&mut self.data);
                if data.ends_with('\n') {
                    data.pop();
                }
                out.push(SseEvent {
                    event: std::mem::take(&mut self.event),
                    data,
                });
            } else {
                self.event.clear();
            }
            self.has_data = false;
            return Ok(());
        }
        if line[0] == b':' {
            return Ok(());
        }
        let (name, value) = match memchr::memchr(b':', line) {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        match name {
            b"data" => {
                if self.data.len() + value.len() > MAX_LINE {
                    return Err(SseError::TooLong);
                }
                // Room for the line and its newline in one allocation; the
                // newline is popped at dispatch, which leaves room for the
                // NUL the C ABI appends, so the event reaches the host
                // without being copied or reallocated.
                self.data.reserve_exact(value.len() + 1);
                // Checked as a whole first: the lossy decoder's chunk walk
                // costs several times more on the (valid) common case.
                match std::str::from_utf8(value) {
                    Ok(v) => self.data.push_str(v),
                    Err(_) => self.data.push_str(&String::from_utf8_lossy(value)),
                }
                self.data.push('\n');
                self.has_data = true;
            }
            b"event" => {
                self.event.clear();
                self.event.push_str(&String::from_utf8_lossy(value));
            }
            _ => {}
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// encoding: what a server writes to a caller

/// One stream chunk (the JSON of a `chunk` event) as an SSE frame: bare
/// `data:` for Chat Completions; `event: <its type>` first for Anthropic
/// and Responses, whose SDKs dispatch on it.
pub fn chunk_frame(proto: Protocol, data: &str) -> String {
    match proto {
        Protocol::OpenAi | Protocol::Gemini => format!("data: {data}\n\n"),
        Protocol::Anthropic | Protocol::Responses => {
            let ty = serde_json::from_str::<Typed>(data)
                .ok()
                .and_then(|t| t.ty)
                .unwrap_or(Cow::Borrowed("message"));
            format!("event: {ty}\ndata: {data}\n\n")
        }
    }
}

/// A chunk's `type`.
#[derive(Deserialize)]
struct Typed<'a> {
    #[serde(rename = "type", borrow)]
    ty: Option<Cow<'a, str>>,
}

/// A keep-alive: a comment, or Anthropic's own `ping` event; nothing for
/// Gemini, whose SDKs take every SSE line for a `data:` one (a comment
/// breaks google-genai's and @google/genai's stream readers).
pub fn ping_frame(proto: Protocol) -> &'static str {
    match proto {
        Protocol::Gemini => "",
        Protocol::OpenAi | Protocol::Responses => ": keep-alive\n\n",
        Protocol::Anthropic => "event: ping\ndata: {\"type\": \"ping\"}\n\n",
    }
}

/// What follows the last chunk of a stream that succeeded: `[DONE]` for
/// Chat Completions; nothing for Anthropic and Responses, whose last chunk
/// (`message_stop`, `response.completed`) is the end marker.
pub fn done_frame(proto: Protocol) -> &'static str {
    match proto {
        Protocol::OpenAi => "data: [DONE]\n\n",
        Protocol::Anthropic | Protocol::Responses | Protocol::Gemini => "",
    }
}

/// An error that ends a stream, `body` being the error body in the caller's
/// envelope. `seq` is the Responses `sequence_number` the event takes (the
/// one after the last chunk's).
pub fn error_frame(proto: Protocol, body: &str, seq: u64) -> String {
    match proto {
        Protocol::OpenAi | Protocol::Gemini => format!("data: {body}\n\n"),
        Protocol::Anthropic => format!("event: error\ndata: {body}\n\n"),
        Protocol::Responses => responses_error_event(body, seq),
    }
}

/// A Responses stream's `error` event: the SDK's `ResponseErrorEvent`
/// fields, plus the error body under `error` (what the openai SDK raises
/// from). The body passes through as JSON values, re-encoded on one line.
fn responses_error_event(body: &str, seq: u64) -> String {
    use serde_json::Value;
    let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let e = &v["error"];
    let ev = serde_json::json!({
        "type": "error",
        "code": e["code"].as_str().or(e["type"].as_str()).unwrap_or("server_error"),
        "message": e["message"].as_str().unwrap_or("the request failed"),
        "param": null,
        "sequence_number": seq,
        "error": e,
    });
    format!("event: error\ndata: {ev}\n\n")
}

/// What a server must know of a chunk it forwards.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChunkMark {
    /// Responses: the `sequence_number` an event after this one takes.
    pub next_seq: Option<u64>,
    /// Responses: the chunk ends the response (`response.completed`,
    /// `.incomplete`, `.failed`); the terminal event follows at once.
    pub ends_response: bool,
}

/// Reads a chunk's [`ChunkMark`] (nothing to read outside Responses).
pub fn chunk_mark(proto: Protocol, data: &str) -> ChunkMark {
    match proto {
        Protocol::OpenAi | Protocol::Anthropic | Protocol::Gemini => ChunkMark::default(),
        Protocol::Responses => {
            #[derive(Deserialize)]
            struct Seq<'a> {
                sequence_number: Option<u64>,
                #[serde(rename = "type", borrow)]
                ty: Option<Cow<'a, str>>,
            }
            let Ok(seq) = serde_json::from_str::<Seq>(data) else {
                return ChunkMark::default();
            };
            ChunkMark {
                next_seq: seq.sequence_number.map(|n| n + 1),
                ends_response: matches!(
                    seq.ty.as_deref(),
                    Some("response.completed" | "response.incomplete" | "response.failed")
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests;
