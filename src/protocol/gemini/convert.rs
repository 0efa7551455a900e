//! Requests and non-streaming responses of the pairs with Gemini on one
//! side, through the conversation model. Responses (OpenAI) goes through
//! Chat Completions until it has its own parser and emitter.

use serde_json::{Map, Value};

use super::{request, response};
use crate::protocol::anthropic::{self, messages};
use crate::protocol::openai::{self, chat};
use crate::protocol::wire::bad;
use crate::protocol::{ir, translate_responses, Converted, PayloadError, Protocol};

fn as_obj(v: Value) -> Result<Map<String, Value>, PayloadError> {
    match v {
        Value::Object(m) => Ok(m),
        _ => Err(bad("translation produced a non-object")),
    }
}

/// The caller's request in the conversation model.
fn parse_request(caller: Protocol, body: &Map<String, Value>) -> Result<ir::Request, PayloadError> {
    match caller {
        Protocol::Gemini => request::parse_request(body),
        Protocol::OpenAi => chat::parse_request(body),
        Protocol::Anthropic => messages::parse_request(body),
        Protocol::Responses => chat::parse_request(&translate_responses::request(
            Protocol::Responses,
            Protocol::OpenAi,
            body,
        )?),
    }
}

/// The upstream body for a pair with Gemini on one side, without the
/// engine's `model` / `stream` (which [`crate::protocol::upstream_request`]
/// sets, except for Gemini upstreams, whose URL carries them).
pub fn request(
    caller: Protocol,
    upstream: Protocol,
    body: &Map<String, Value>,
) -> Result<Map<String, Value>, PayloadError> {
    if caller == Protocol::Gemini && upstream == Protocol::Gemini {
        let mut out = body.clone();
        out.shift_remove("model");
        out.shift_remove("stream");
        return Ok(out);
    }
    let r = parse_request(caller, body)?;
    match upstream {
        Protocol::Gemini => as_obj(request::emit_request(&r)?),
        Protocol::OpenAi => as_obj(chat::emit_request(&r)?),
        Protocol::Anthropic => as_obj(messages::emit_request(&r)?),
        Protocol::Responses => {
            let chat = as_obj(chat::emit_request(&r)?)?;
            translate_responses::request(Protocol::OpenAi, Protocol::Responses, &chat)
        }
    }
}

/// An upstream's non-streaming body in the conversation model, with its
/// usage.
fn parse_response(
    upstream: Protocol,
    body: &[u8],
    created: u64,
) -> Result<ir::Response, PayloadError> {
    let text = std::str::from_utf8(body).map_err(|_| bad("response body is not UTF-8"))?;
    let value = |t: &str| -> Result<Value, PayloadError> {
        serde_json::from_str(t).map_err(|e| bad(format!("response body is not JSON: {e}")))
    };
    match upstream {
        Protocol::Gemini => response::parse_response(&value(text)?),
        Protocol::OpenAi => {
            openai::check_response(text)?;
            chat::parse_response(&value(text)?)
        }
        Protocol::Anthropic => {
            let v = value(text)?;
            anthropic::check_response(&v)?;
            messages::parse_response(&v)
        }
        Protocol::Responses => {
            let c = translate_responses::convert_response(
                Protocol::Responses,
                Protocol::OpenAi,
                body,
                created,
                &Map::new(),
                "",
            )?;
            chat::parse_response(&value(&c.body)?)
        }
    }
}

/// Converts a non-streaming body for a pair with Gemini on one side.
pub fn convert_response(
    upstream: Protocol,
    caller: Protocol,
    body: &[u8],
    created: u64,
    request: &Map<String, Value>,
    endpoint: &str,
) -> Result<Converted, PayloadError> {
    let mut r = parse_response(upstream, body, created)?;
    let usage = r.usage;
    if caller == Protocol::Anthropic {
        // Gemini's thought signatures are not Anthropic's: an Anthropic
        // client would send them back to be refused.
        r.content.retain(|b| {
            !matches!(
                b,
                ir::Block::Thinking { .. } | ir::Block::RedactedThinking { .. }
            )
        });
    }
    let out = match caller {
        Protocol::Gemini if upstream == Protocol::Gemini => {
            String::from_utf8_lossy(body).into_owned()
        }
        Protocol::Gemini => response::emit_response(&r)?.to_string(),
        Protocol::OpenAi => chat::emit_response(&r, created)?.to_string(),
        Protocol::Anthropic => messages::emit_response(&r)?.to_string(),
        Protocol::Responses => {
            let chat = chat::emit_response(&r, created)?.to_string();
            translate_responses::convert_response(
                Protocol::OpenAi,
                Protocol::Responses,
                chat.as_bytes(),
                created,
                request,
                endpoint,
            )?
            .body
        }
    };
    Ok(Converted { body: out, usage })
}
