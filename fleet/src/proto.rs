//! Request routing and the OpenAI / Anthropic / Responses / Gemini response generators.

use std::io;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use tokio::net::TcpStream;

use crate::http::{self, Conn, ReadError, Request};
use crate::{Behavior, Fault, Shared, ToolCallSpec};

/// What to do with the connection after a response.
#[derive(PartialEq, Eq)]
pub(crate) enum Flow {
    Continue,
    Close,
    /// Close with a TCP reset.
    Reset,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Proto {
    OpenAi,
    Anthropic,
    Responses,
    /// Google Gemini: `POST …/models/{model}:generateContent` and
    /// `:streamGenerateContent` (SSE with `?alt=sse`).
    Gemini,
}

pub(crate) async fn serve_conn(stream: TcpStream, shared: Arc<Shared>) {
    if crate::h2c::is_h2c(&stream).await {
        return crate::h2c::serve(stream, shared).await;
    }
    let mut conn = Conn::new(stream);
    loop {
        let req = match conn.read_request().await {
            Ok(Some(r)) => r,
            Ok(None) | Err(ReadError::Io) => return,
            Err(ReadError::HeadTooLarge) => {
                let _ = send_json(
                    &mut conn,
                    431,
                    &[],
                    &plain_error(431, "request head too large"),
                    false,
                )
                .await;
                conn.close().await;
                return;
            }
            Err(ReadError::BodyTooLarge) => {
                let _ = send_json(
                    &mut conn,
                    413,
                    &[],
                    &plain_error(413, "request body too large"),
                    false,
                )
                .await;
                conn.close().await;
                return;
            }
            Err(ReadError::Bad(msg)) => {
                let _ = send_json(&mut conn, 400, &[], &plain_error(400, &msg), false).await;
                conn.close().await;
                return;
            }
        };
        let keep = req.keep_alive();
        let flow = match handle(&mut conn, &shared, req, keep).await {
            Ok(f) => f,
            Err(_) => return,
        };
        conn.split = false;
        match flow {
            Flow::Continue if keep => {}
            Flow::Reset => {
                conn.reset();
                return;
            }
            _ => {
                conn.close().await;
                return;
            }
        }
    }
}

/// Answers one HTTP/2 stream; `conn` is its response side.
pub(crate) async fn serve_h2_stream(mut conn: Conn, req: Request, shared: &Arc<Shared>) {
    match handle(&mut conn, shared, req, true).await {
        Ok(Flow::Reset) => conn.reset(),
        _ => conn.close().await,
    }
}

fn plain_error(status: u16, msg: &str) -> Value {
    json!({"error": {"message": msg, "type": openai_type(status), "param": null, "code": null}})
}

async fn send_json(
    conn: &mut Conn,
    status: u16,
    extra: &[(String, String)],
    body: &Value,
    keep: bool,
) -> io::Result<Flow> {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    send_bytes(conn, status, extra, &bytes, keep).await
}

async fn send_bytes(
    conn: &mut Conn,
    status: u16,
    extra: &[(String, String)],
    bytes: &[u8],
    keep: bool,
) -> io::Result<Flow> {
    let mut out = http::head(status, "application/json", Some(bytes.len()), extra, keep);
    out.extend_from_slice(bytes);
    conn.write(&out).await?;
    Ok(if keep { Flow::Continue } else { Flow::Close })
}

async fn control(conn: &mut Conn, shared: &Shared, req: &Request, keep: bool) -> io::Result<Flow> {
    let ok = json!({"ok": true});
    match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/_mock/requests") => {
            let v = serde_json::to_value(shared.requests()).unwrap_or(Value::Null);
            send_json(conn, 200, &[], &v, keep).await
        }
        ("GET", "/_mock/behavior") => {
            let v = serde_json::to_value(shared.behavior()).unwrap_or(Value::Null);
            send_json(conn, 200, &[], &v, keep).await
        }
        ("POST" | "PUT", "/_mock/behavior") => {
            match serde_json::from_slice::<Behavior>(&req.body) {
                Ok(b) => {
                    shared.set_behavior(b);
                    send_json(conn, 200, &[], &ok, keep).await
                }
                Err(e) => {
                    let body = plain_error(400, &format!("invalid behavior: {e}"));
                    send_json(conn, 400, &[], &body, keep).await
                }
            }
        }
        ("POST", "/_mock/reset") => {
            shared.reset();
            send_json(conn, 200, &[], &ok, keep).await
        }
        ("GET", "/_mock/health") => {
            send_json(
                conn,
                200,
                &[],
                &json!({"ok": true, "name": shared.name}),
                keep,
            )
            .await
        }
        _ => {
            let body = plain_error(
                404,
                &format!("unknown control endpoint {} {}", req.method, req.path),
            );
            send_json(conn, 404, &[], &body, keep).await
        }
    }
}

/// The last message is a tool result (Anthropic or OpenAI shape).
fn last_message_is_tool_result(body: &Value) -> bool {
    // Responses: a `function_call_output` input item.
    let last_item = body["input"].as_array().and_then(|i| i.last());
    if last_item.is_some_and(|i| i["type"] == "function_call_output") {
        return true;
    }
    // Gemini: a `functionResponse` part in the last content.
    let last_content = body["contents"].as_array().and_then(|c| c.last());
    if last_content.is_some_and(|c| {
        c["parts"]
            .as_array()
            .is_some_and(|p| p.iter().any(|p| p.get("functionResponse").is_some()))
    }) {
        return true;
    }
    let Some(last) = body["messages"].as_array().and_then(|m| m.last()) else {
        return false;
    };
    last["role"] == "tool"
        || last["content"]
            .as_array()
            .is_some_and(|blocks| blocks.iter().any(|b| b["type"] == "tool_result"))
}

async fn handle(
    conn: &mut Conn,
    shared: &Arc<Shared>,
    req: Request,
    keep: bool,
) -> io::Result<Flow> {
    if req.path.starts_with("/_mock/") {
        return control(conn, shared, &req, keep).await;
    }
    shared.record(&req);
    if req.path.ends_with("/messages/count_tokens") {
        // Anthropic's token counter: `prompt_tokens` of the behavior (10 when unset).
        let b = shared.behavior();
        let n = if b.prompt_tokens == 0 {
            10
        } else {
            b.prompt_tokens
        };
        let body = serde_json::json!({"input_tokens": n});
        return send_json(conn, 200, &[], &body, keep).await;
    }
    let _busy = shared.busy();
    let proto = if req.path.ends_with("/chat/completions") {
        Proto::OpenAi
    } else if req.path.ends_with("/messages") {
        Proto::Anthropic
    } else if req.path.ends_with("/responses") {
        Proto::Responses
    } else if gemini_route(&req.path).is_some() {
        Proto::Gemini
    } else {
        let body = plain_error(
            404,
            &format!(
                "mock {}: no route for {} {}",
                shared.name, req.method, req.path
            ),
        );
        return send_json(conn, 404, &[], &body, keep).await;
    };
    if req.method != "POST" {
        let body = error_json(proto, 405, &format!("method {} not allowed", req.method));
        return send_json(conn, 405, &[], &body, keep).await;
    }
    let body: Value = match serde_json::from_slice(&req.body) {
        Ok(v @ Value::Object(_)) => v,
        Ok(_) => {
            let body = error_json(proto, 400, "request body must be a JSON object");
            return send_json(conn, 400, &[], &body, keep).await;
        }
        Err(e) => {
            let body = error_json(proto, 400, &format!("malformed JSON body: {e}"));
            return send_json(conn, 400, &[], &body, keep).await;
        }
    };
    let mut behavior = shared.behavior();
    if let Some(mock) = body.get("mock") {
        match behavior.with_override(mock, &shared.name) {
            Ok(b) => behavior = b,
            Err(msg) => {
                let body = error_json(proto, 400, &msg);
                return send_json(conn, 400, &[], &body, keep).await;
            }
        }
    }
    if let Some(next) = behavior.after_tool_result.take() {
        if last_message_is_tool_result(&body) {
            behavior = *next;
        }
    }
    if let Some(key) = &behavior.require_key {
        let bearer = req
            .header("authorization")
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        let ok = match proto {
            Proto::OpenAi | Proto::Responses => bearer == Some(key.as_str()),
            Proto::Anthropic => {
                req.header("x-api-key") == Some(key.as_str()) || bearer == Some(key.as_str())
            }
            Proto::Gemini => {
                req.header("x-goog-api-key") == Some(key.as_str())
                    || bearer == Some(key.as_str())
                    || query_key(&req.target) == Some(key.as_str())
            }
        };
        if !ok {
            let body = error_json(proto, 401, "invalid or missing API key");
            return send_json(conn, 401, &[], &body, keep).await;
        }
    }
    let id = shared.next_id();
    let gemini = gemini_route(&req.path);
    let ctx = Ctx {
        proto,
        name: shared.name.clone(),
        id,
        model: match gemini {
            Some((model, _)) => model.to_owned(),
            None => body
                .get("model")
                .and_then(Value::as_str)
                .unwrap_or("mock-model")
                .to_string(),
        },
        stream: match gemini {
            Some((_, stream)) => stream,
            None => body.get("stream").and_then(Value::as_bool).unwrap_or(false),
        },
        include_usage: body
            .pointer("/stream_options/include_usage")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        keep,
        b: behavior,
    };
    respond(conn, &ctx).await
}

/// A Gemini path's model and whether it streams:
/// `…/models/{model}:generateContent` or `:streamGenerateContent`.
fn gemini_route(path: &str) -> Option<(&str, bool)> {
    let (head, method) = path.rsplit_once(':')?;
    let stream = match method {
        "generateContent" => false,
        "streamGenerateContent" => true,
        _ => return None,
    };
    let model = head.rsplit_once("/models/").map_or(head, |(_, m)| m);
    Some((model, stream))
}

/// The `key` query parameter of a request target.
fn query_key(target: &str) -> Option<&str> {
    let (_, q) = target.split_once('?')?;
    q.split('&').find_map(|kv| kv.strip_prefix("key="))
}

struct Ctx {
    proto: Proto,
    name: String,
    id: u64,
    model: String,
    stream: bool,
    include_usage: bool,
    keep: bool,
    b: Behavior,
}

impl Ctx {
    fn flow(&self) -> Flow {
        if self.keep {
            Flow::Continue
        } else {
            Flow::Close
        }
    }

    fn extra_headers(&self) -> Vec<(String, String)> {
        let mut h = vec![
            ("x-mock-server".to_string(), self.name.clone()),
            ("x-request-id".to_string(), format!("req_mock_{}", self.id)),
        ];
        if let Some(v) = &self.b.retry_after {
            h.push(("retry-after".into(), v.clone()));
        }
        if let Some(v) = self.b.retry_after_ms {
            h.push(("retry-after-ms".into(), v.to_string()));
        }
        for (k, v) in &self.b.extra_headers {
            h.push((k.clone(), v.clone()));
        }
        h
    }

    /// The error JSON for `status` (or the configured `error_body`).
    fn error_value(&self, status: u16) -> Value {
        self.b.error_body.clone().unwrap_or_else(|| {
            error_json(
                self.proto,
                status,
                &format!("mock {}: simulated {} error", self.name, status),
            )
        })
    }
}

fn openai_type(status: u16) -> &'static str {
    match status {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        429 => "rate_limit_error",
        s if (400..500).contains(&s) => "invalid_request_error",
        _ => "server_error",
    }
}

fn openai_code(status: u16) -> Value {
    match status {
        401 => json!("invalid_api_key"),
        429 => json!("rate_limit_exceeded"),
        _ => Value::Null,
    }
}

fn anthropic_type(status: u16) -> &'static str {
    match status {
        400 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        529 => "overloaded_error",
        s if (400..500).contains(&s) => "invalid_request_error",
        _ => "api_error",
    }
}

fn error_json(proto: Proto, status: u16, msg: &str) -> Value {
    match proto {
        Proto::OpenAi | Proto::Responses => json!({"error": {
            "message": msg, "type": openai_type(status), "param": null, "code": openai_code(status)
        }}),
        Proto::Anthropic => {
            json!({"type": "error", "error": {"type": anthropic_type(status), "message": msg}})
        }
        Proto::Gemini => json!({"error": {
            "code": status, "message": msg, "status": gemini_status(status)
        }}),
    }
}

fn gemini_status(status: u16) -> &'static str {
    match status {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        429 => "RESOURCE_EXHAUSTED",
        503 | 529 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        s if (400..500).contains(&s) => "FAILED_PRECONDITION",
        _ => "INTERNAL",
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

async fn sleep_ms(ms: u64) {
    if ms > 0 {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
}

/// Sleeps like `sleep_ms` while watching the connection: false when the
/// client closed it meanwhile (so a cancelled request is seen at once, not
/// at the next write).
async fn wait_ms(conn: &mut Conn, ms: u64) -> bool {
    if ms == 0 {
        return true;
    }
    tokio::select! {
        _ = tokio::time::sleep(Duration::from_millis(ms)) => true,
        _ = conn.hold() => false,
    }
}

/// Splits `text` into `n` pieces on char boundaries, as evenly as possible.
pub(crate) fn split_pieces(text: &str, n: usize) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let n = n.max(1);
    let len = chars.len();
    (0..n)
        .map(|i| chars[i * len / n..(i + 1) * len / n].iter().collect())
        .collect()
}

/// Splits `text` into fragments of at most `len` chars (at least one fragment).
pub(crate) fn split_len(text: &str, len: usize) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    if chars.is_empty() {
        return vec![String::new()];
    }
    chars
        .chunks(len.max(1))
        .map(|c| c.iter().collect())
        .collect()
}

const SPLIT_UTF8_TEXT: &str = "héllo wörld 日本語 🎉";

/// The content of one reply, independent of protocol.
struct Plan {
    text: String,
    pieces: Vec<String>,
    thinking: Option<String>,
    thinking_pieces: Vec<String>,
    tools: Vec<ToolCallSpec>,
    frag_len: usize,
    prompt_tokens: u32,
    completion_tokens: u32,
    finish: String,
}

fn plan(ctx: &Ctx) -> Plan {
    let b = &ctx.b;
    let chunks = if b.chunks == 0 { 5 } else { b.chunks };
    let (text, pieces) = match b.fault {
        Fault::EmptyCompletion => (String::new(), Vec::new()),
        Fault::Huge(n) => {
            const PATTERN: &str = "The quick brown fox jumps over the lazy dog. ";
            let text: String = PATTERN.bytes().cycle().take(n).map(char::from).collect();
            let pieces = text
                .as_bytes()
                .chunks(1024)
                .map(|c| String::from_utf8_lossy(c).into_owned())
                .collect();
            (text, pieces)
        }
        _ => {
            let text = match (&b.fault, &b.text) {
                (_, Some(t)) => t.clone(),
                (Fault::SplitUtf8, None) => SPLIT_UTF8_TEXT.to_string(),
                _ => format!("Hello from {}.", ctx.name),
            };
            let pieces = if text.is_empty() {
                Vec::new()
            } else {
                split_pieces(&text, chunks)
            };
            (text, pieces)
        }
    };
    let empty = b.fault == Fault::EmptyCompletion;
    let thinking = match ctx.proto {
        Proto::Anthropic | Proto::Responses | Proto::Gemini if !empty => b.thinking.clone(),
        _ => None,
    };
    let thinking_pieces = thinking
        .as_deref()
        .map(|t| split_pieces(t, chunks))
        .unwrap_or_default();
    let tools = if empty {
        Vec::new()
    } else {
        b.tool_calls.clone()
    };
    let finish = b.stop_reason.clone().unwrap_or_else(|| {
        match (ctx.proto, tools.is_empty()) {
            (Proto::OpenAi, true) => "stop",
            (Proto::OpenAi, false) => "tool_calls",
            (Proto::Anthropic, true) => "end_turn",
            (Proto::Anthropic, false) => "tool_use",
            (Proto::Responses, _) => "completed",
            (Proto::Gemini, _) => "STOP",
        }
        .to_string()
    });
    let completion_tokens = b
        .completion_tokens
        .unwrap_or((pieces.len() + tools.len()) as u32);
    Plan {
        text,
        pieces,
        thinking,
        thinking_pieces,
        tools,
        frag_len: if b.arg_fragment_len == 0 {
            8
        } else {
            b.arg_fragment_len
        },
        prompt_tokens: if b.prompt_tokens == 0 {
            10
        } else {
            b.prompt_tokens
        },
        completion_tokens,
        finish,
    }
}

fn args_text(t: &ToolCallSpec) -> &str {
    if t.arguments.is_empty() {
        "{}"
    } else {
        &t.arguments
    }
}

async fn respond(conn: &mut Conn, ctx: &Ctx) -> io::Result<Flow> {
    let b = &ctx.b;
    if b.fault == Fault::SplitUtf8 {
        conn.split = true;
    }
    sleep_ms(b.headers_delay_ms).await;
    match b.fault {
        Fault::ResetBeforeHeaders => return Ok(Flow::Reset),
        Fault::HeadersNeverFinish => {
            conn.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n")
                .await?;
            conn.hold().await;
            return Ok(Flow::Close);
        }
        _ => {}
    }
    let extra = ctx.extra_headers();
    if b.status != 0 && b.status != 200 {
        let body = ctx.error_value(b.status);
        return send_json(conn, b.status, &extra, &body, ctx.keep).await;
    }
    let plan = plan(ctx);
    if ctx.stream {
        respond_stream(conn, ctx, &plan, &extra).await
    } else {
        respond_full(conn, ctx, &plan, &extra).await
    }
}

// ---------------------------------------------------------------- non-stream

fn full_body(ctx: &Ctx, p: &Plan) -> Value {
    let finish = if ctx.b.fault == Fault::NoFinish {
        Value::Null
    } else {
        json!(p.finish)
    };
    match ctx.proto {
        Proto::OpenAi => {
            let mut message = json!({"role": "assistant", "content": p.text, "refusal": null});
            if !p.tools.is_empty() {
                if p.text.is_empty() {
                    message["content"] = Value::Null;
                }
                let calls: Vec<Value> = p
                    .tools
                    .iter()
                    .enumerate()
                    .map(|(i, t)| {
                        json!({"id": format!("call_mock_{}_{}", ctx.id, i), "type": "function",
                               "function": {"name": t.name, "arguments": args_text(t)}})
                    })
                    .collect();
                message["tool_calls"] = json!(calls);
            }
            json!({
                "id": format!("chatcmpl-mock-{}", ctx.id),
                "object": "chat.completion",
                "created": now_secs(),
                "model": ctx.model,
                "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": finish}],
                "usage": {"prompt_tokens": p.prompt_tokens, "completion_tokens": p.completion_tokens,
                          "total_tokens": p.prompt_tokens + p.completion_tokens},
            })
        }
        Proto::Responses => responses_body(ctx, p, finish),
        Proto::Gemini => gemini_chunk(ctx, p, gemini_parts(ctx, p), finish, true),
        Proto::Anthropic => {
            let mut content = Vec::new();
            if let Some(t) = &p.thinking {
                content
                    .push(json!({"type": "thinking", "thinking": t, "signature": signature(ctx)}));
            }
            if !p.text.is_empty() {
                content.push(json!({"type": "text", "text": p.text}));
            }
            for (i, t) in p.tools.iter().enumerate() {
                let input = serde_json::from_str::<Value>(args_text(t))
                    .unwrap_or_else(|_| Value::String(t.arguments.clone()));
                content.push(json!({"type": "tool_use", "id": tool_id(ctx, i), "name": t.name, "input": input}));
            }
            json!({
                "id": format!("msg_mock_{}", ctx.id),
                "type": "message",
                "role": "assistant",
                "model": ctx.model,
                "content": content,
                "stop_reason": finish,
                "stop_sequence": null,
                "usage": {"input_tokens": p.prompt_tokens, "output_tokens": p.completion_tokens},
            })
        }
    }
}

/// Responses: (status, incomplete_details) for the plan's finish.
fn responses_status(finish: &Value) -> (Value, Value) {
    match finish.as_str() {
        None => (json!("in_progress"), Value::Null),
        Some(r @ ("max_output_tokens" | "content_filter")) => {
            (json!("incomplete"), json!({"reason": r}))
        }
        Some(s) => (json!(s), Value::Null),
    }
}

fn responses_usage(p: &Plan) -> Value {
    json!({
        "input_tokens": p.prompt_tokens,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": p.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": p.prompt_tokens + p.completion_tokens,
    })
}

/// The Responses output items of a plan, finished.
fn responses_items(ctx: &Ctx, p: &Plan) -> Vec<Value> {
    let mut out = Vec::new();
    if let Some(t) = &p.thinking {
        out.push(
            json!({"type": "reasoning", "id": format!("rs_mock_{}", ctx.id),
            "summary": [{"type": "summary_text", "text": t}],
            "encrypted_content": signature(ctx), "status": "completed"}),
        );
    }
    if !p.text.is_empty() {
        out.push(json!({"type": "message", "id": format!("msg_mock_{}", ctx.id), "role": "assistant",
            "status": "completed",
            "content": [{"type": "output_text", "text": p.text, "annotations": [], "logprobs": []}]}));
    }
    for (i, t) in p.tools.iter().enumerate() {
        out.push(
            json!({"type": "function_call", "id": format!("fc_mock_{}_{}", ctx.id, i),
            "call_id": format!("call_mock_{}_{}", ctx.id, i), "name": t.name,
            "arguments": args_text(t), "status": "completed"}),
        );
    }
    out
}

fn responses_shell(
    ctx: &Ctx,
    status: Value,
    details: Value,
    output: Vec<Value>,
    usage: Value,
) -> Value {
    json!({
        "id": format!("resp_mock_{}", ctx.id), "object": "response", "created_at": now_secs(),
        "status": status, "error": null, "incomplete_details": details, "model": ctx.model,
        "output": output, "parallel_tool_calls": true, "tool_choice": "auto", "tools": [],
        "usage": usage,
    })
}

fn responses_body(ctx: &Ctx, p: &Plan, finish: Value) -> Value {
    let (status, details) = responses_status(&finish);
    responses_shell(
        ctx,
        status,
        details,
        responses_items(ctx, p),
        responses_usage(p),
    )
}

/// Gemini parts of a whole answer: a thought summary, the text, function
/// calls (without ids, as the Developer API and Vertex send them; the first
/// carries the thought signature).
fn gemini_parts(ctx: &Ctx, p: &Plan) -> Vec<Value> {
    let mut parts = Vec::new();
    if let Some(t) = &p.thinking {
        parts.push(json!({"text": t, "thought": true}));
    }
    if !p.text.is_empty() {
        parts.push(json!({"text": p.text}));
    }
    parts.extend(
        p.tools
            .iter()
            .enumerate()
            .map(|(i, t)| gemini_call(ctx, p, i, t)),
    );
    parts
}

fn gemini_call(ctx: &Ctx, p: &Plan, i: usize, t: &ToolCallSpec) -> Value {
    let args = serde_json::from_str::<Value>(args_text(t)).unwrap_or_else(|_| json!({}));
    let mut part = json!({"functionCall": {"name": t.name, "args": args}});
    if i == 0 && p.thinking.is_some() {
        part["thoughtSignature"] = json!(signature(ctx));
    }
    part
}

/// One `GenerateContentResponse` (a whole answer or a stream chunk);
/// `usage` adds `usageMetadata`.
fn gemini_chunk(ctx: &Ctx, p: &Plan, parts: Vec<Value>, finish: Value, usage: bool) -> Value {
    let mut cand = json!({"content": {"role": "model", "parts": parts}, "index": 0});
    if !finish.is_null() {
        cand["finishReason"] = finish;
    }
    let mut v = json!({"candidates": [cand], "modelVersion": ctx.model,
        "responseId": format!("mock-{}-{}", ctx.name, ctx.id)});
    if usage {
        v["usageMetadata"] = json!({"promptTokenCount": p.prompt_tokens,
            "candidatesTokenCount": p.completion_tokens,
            "totalTokenCount": p.prompt_tokens + p.completion_tokens});
    }
    v
}

/// Gemini stream frames: a chunk per thought piece, text piece and whole
/// function call, then a chunk with the finish reason and usage. No end
/// marker.
fn gemini_frames(ctx: &Ctx, p: &Plan, sse: &Sse) -> Vec<(Kind, String)> {
    let frame = |parts: Vec<Value>, finish: Value, usage: bool| {
        sse.data(&gemini_chunk(ctx, p, parts, finish, usage).to_string())
    };
    let mut f = Vec::new();
    for piece in &p.thinking_pieces {
        let part = json!({"text": piece, "thought": true});
        f.push((Kind::Content, frame(vec![part], Value::Null, false)));
    }
    for piece in &p.pieces {
        f.push((
            Kind::Content,
            frame(vec![json!({"text": piece})], Value::Null, false),
        ));
    }
    for (i, t) in p.tools.iter().enumerate() {
        let part = gemini_call(ctx, p, i, t);
        f.push((Kind::Content, frame(vec![part], Value::Null, false)));
    }
    let last = frame(vec![json!({"text": ""})], json!(p.finish), true);
    f.push((Kind::Finish, last));
    f
}

/// An opaque signature that is also valid URL-safe base64 (Gemini's
/// `thoughtSignature` is bytes: google-genai decodes it), as real
/// signatures are.
fn signature(ctx: &Ctx) -> String {
    let mut s = format!("mock-signature-{}-{}", ctx.name, ctx.id);
    while s.len() % 4 != 0 {
        s.push('_');
    }
    s
}

fn tool_id(ctx: &Ctx, i: usize) -> String {
    format!("toolu_mock_{}_{}", ctx.id, i)
}

async fn respond_full(
    conn: &mut Conn,
    ctx: &Ctx,
    p: &Plan,
    extra: &[(String, String)],
) -> io::Result<Flow> {
    if !wait_ms(conn, ctx.b.first_token_delay_ms).await {
        return Ok(Flow::Close);
    }
    match ctx.b.fault {
        Fault::DropAfter(_) | Fault::StallAfter(_) => {
            let bytes = serde_json::to_vec(&full_body(ctx, p)).unwrap_or_default();
            let mut out = http::head(200, "application/json", Some(bytes.len()), extra, ctx.keep);
            out.extend_from_slice(&bytes[..bytes.len() / 2]);
            conn.write(&out).await?;
            if matches!(ctx.b.fault, Fault::StallAfter(_)) {
                conn.hold().await;
            }
            Ok(Flow::Close)
        }
        Fault::MalformedAfter(_) => send_bytes(conn, 200, extra, b"{not json", ctx.keep).await,
        Fault::ErrorEventAfter(_) | Fault::ErrorBody200 => {
            let body = ctx.error_value(500);
            send_json(conn, 200, extra, &body, ctx.keep).await
        }
        _ => send_json(conn, 200, extra, &full_body(ctx, p), ctx.keep).await,
    }
}

// -------------------------------------------------------------------- stream

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Structural event (role chunk, message_start, block start/stop, ping).
    Meta,
    /// Carries content; counted by the `…_after(n)` faults.
    Content,
    /// finish_reason chunk / message_delta.
    Finish,
    /// OpenAI usage chunk.
    Usage,
    /// `[DONE]` / message_stop.
    Done,
}

struct Sse {
    nl: &'static str,
}

impl Sse {
    fn data(&self, data: &str) -> String {
        format!("data: {data}{nl}{nl}", nl = self.nl)
    }
    fn event(&self, name: &str, data: &Value) -> String {
        format!("event: {name}{nl}data: {data}{nl}{nl}", nl = self.nl)
    }
}

fn openai_frames(ctx: &Ctx, p: &Plan, sse: &Sse) -> Vec<(Kind, String)> {
    let id = format!("chatcmpl-mock-{}", ctx.id);
    let created = now_secs();
    let chunk = |delta: Value, finish: Value| {
        let v = json!({
            "id": id, "object": "chat.completion.chunk", "created": created, "model": ctx.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
        });
        sse.data(&v.to_string())
    };
    let mut f = vec![(
        Kind::Meta,
        chunk(json!({"role": "assistant", "content": ""}), Value::Null),
    )];
    for piece in &p.pieces {
        f.push((Kind::Content, chunk(json!({"content": piece}), Value::Null)));
    }
    for (i, t) in p.tools.iter().enumerate() {
        for (j, frag) in split_len(args_text(t), p.frag_len).iter().enumerate() {
            let call = if j == 0 {
                json!({"index": i, "id": format!("call_mock_{}_{}", ctx.id, i), "type": "function",
                       "function": {"name": t.name, "arguments": frag}})
            } else {
                json!({"index": i, "function": {"arguments": frag}})
            };
            f.push((
                Kind::Content,
                chunk(json!({"tool_calls": [call]}), Value::Null),
            ));
        }
    }
    f.push((Kind::Finish, chunk(json!({}), json!(p.finish))));
    if ctx.include_usage {
        let v = json!({
            "id": id, "object": "chat.completion.chunk", "created": created, "model": ctx.model,
            "choices": [],
            "usage": {"prompt_tokens": p.prompt_tokens, "completion_tokens": p.completion_tokens,
                      "total_tokens": p.prompt_tokens + p.completion_tokens},
        });
        f.push((Kind::Usage, sse.data(&v.to_string())));
    }
    f.push((Kind::Done, sse.data("[DONE]")));
    f
}

fn anthropic_frames(ctx: &Ctx, p: &Plan, sse: &Sse) -> Vec<(Kind, String)> {
    let mut f = Vec::new();
    let start = json!({"type": "message_start", "message": {
        "id": format!("msg_mock_{}", ctx.id), "type": "message", "role": "assistant", "model": ctx.model,
        "content": [], "stop_reason": null, "stop_sequence": null,
        "usage": {"input_tokens": p.prompt_tokens, "output_tokens": 1},
    }});
    f.push((Kind::Meta, sse.event("message_start", &start)));
    f.push((Kind::Meta, sse.event("ping", &json!({"type": "ping"}))));
    let mut index = 0usize;
    let block_start = |index: usize, block: Value| {
        sse.event(
            "content_block_start",
            &json!({"type": "content_block_start", "index": index, "content_block": block}),
        )
    };
    let delta = |index: usize, delta: Value| {
        sse.event(
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": index, "delta": delta}),
        )
    };
    let block_stop = |index: usize| {
        sse.event(
            "content_block_stop",
            &json!({"type": "content_block_stop", "index": index}),
        )
    };
    if p.thinking.is_some() {
        f.push((
            Kind::Meta,
            block_start(
                index,
                json!({"type": "thinking", "thinking": "", "signature": ""}),
            ),
        ));
        for piece in &p.thinking_pieces {
            f.push((
                Kind::Content,
                delta(index, json!({"type": "thinking_delta", "thinking": piece})),
            ));
        }
        f.push((
            Kind::Content,
            delta(
                index,
                json!({"type": "signature_delta", "signature": signature(ctx)}),
            ),
        ));
        f.push((Kind::Meta, block_stop(index)));
        index += 1;
    }
    if !p.pieces.is_empty() {
        f.push((
            Kind::Meta,
            block_start(index, json!({"type": "text", "text": ""})),
        ));
        for piece in &p.pieces {
            f.push((
                Kind::Content,
                delta(index, json!({"type": "text_delta", "text": piece})),
            ));
        }
        f.push((Kind::Meta, block_stop(index)));
        index += 1;
    }
    for (i, t) in p.tools.iter().enumerate() {
        f.push((
            Kind::Meta,
            block_start(
                index,
                json!({"type": "tool_use", "id": tool_id(ctx, i), "name": t.name, "input": {}}),
            ),
        ));
        for frag in split_len(args_text(t), p.frag_len) {
            f.push((
                Kind::Content,
                delta(
                    index,
                    json!({"type": "input_json_delta", "partial_json": frag}),
                ),
            ));
        }
        f.push((Kind::Meta, block_stop(index)));
        index += 1;
    }
    let md = json!({"type": "message_delta", "delta": {"stop_reason": p.finish, "stop_sequence": null},
                    "usage": {"output_tokens": p.completion_tokens}});
    f.push((Kind::Finish, sse.event("message_delta", &md)));
    f.push((
        Kind::Done,
        sse.event("message_stop", &json!({"type": "message_stop"})),
    ));
    f
}

/// Responses stream frames: lifecycle events, then per item added /
/// deltas / done, then `response.completed` (or `.incomplete`), numbered.
fn responses_frames(ctx: &Ctx, p: &Plan, sse: &Sse) -> Vec<(Kind, String)> {
    let mut f: Vec<(Kind, Value)> = Vec::new();
    let items = responses_items(ctx, p);
    let shell = |status: &str, output: Vec<Value>| {
        responses_shell(ctx, json!(status), Value::Null, output, Value::Null)
    };
    f.push((
        Kind::Meta,
        json!({"type": "response.created", "response": shell("in_progress", vec![])}),
    ));
    f.push((
        Kind::Meta,
        json!({"type": "response.in_progress", "response": shell("in_progress", vec![])}),
    ));
    for (oi, item) in items.iter().enumerate() {
        let id = item["id"].clone();
        let mut added = item.clone();
        added["status"] = json!("in_progress");
        match item["type"].as_str() {
            Some("reasoning") => {
                added["summary"] = json!([]);
                f.push((Kind::Meta, json!({"type": "response.output_item.added", "output_index": oi, "item": added})));
                let part = json!({"type": "summary_text", "text": ""});
                f.push((
                    Kind::Meta,
                    json!({"type": "response.reasoning_summary_part.added", "item_id": id,
                    "output_index": oi, "summary_index": 0, "part": part}),
                ));
                for piece in &p.thinking_pieces {
                    f.push((
                        Kind::Content,
                        json!({"type": "response.reasoning_summary_text.delta", "item_id": id,
                        "output_index": oi, "summary_index": 0, "delta": piece}),
                    ));
                }
                let text = item["summary"][0]["text"].clone();
                f.push((
                    Kind::Meta,
                    json!({"type": "response.reasoning_summary_text.done", "item_id": id,
                    "output_index": oi, "summary_index": 0, "text": text}),
                ));
                f.push((Kind::Meta, json!({"type": "response.reasoning_summary_part.done", "item_id": id,
                    "output_index": oi, "summary_index": 0, "part": {"type": "summary_text", "text": text}})));
            }
            Some("message") => {
                added["content"] = json!([]);
                f.push((Kind::Meta, json!({"type": "response.output_item.added", "output_index": oi, "item": added})));
                let empty =
                    json!({"type": "output_text", "text": "", "annotations": [], "logprobs": []});
                f.push((
                    Kind::Meta,
                    json!({"type": "response.content_part.added", "item_id": id,
                    "output_index": oi, "content_index": 0, "part": empty}),
                ));
                for piece in &p.pieces {
                    f.push((
                        Kind::Content,
                        json!({"type": "response.output_text.delta", "item_id": id,
                        "output_index": oi, "content_index": 0, "delta": piece, "logprobs": []}),
                    ));
                }
                f.push((
                    Kind::Meta,
                    json!({"type": "response.output_text.done", "item_id": id,
                    "output_index": oi, "content_index": 0, "text": p.text, "logprobs": []}),
                ));
                f.push((
                    Kind::Meta,
                    json!({"type": "response.content_part.done", "item_id": id,
                    "output_index": oi, "content_index": 0, "part": item["content"][0]}),
                ));
            }
            _ => {
                added["arguments"] = json!("");
                f.push((Kind::Meta, json!({"type": "response.output_item.added", "output_index": oi, "item": added})));
                let args = item["arguments"].as_str().unwrap_or("{}");
                for frag in split_len(args, p.frag_len) {
                    f.push((
                        Kind::Content,
                        json!({"type": "response.function_call_arguments.delta",
                        "item_id": id, "output_index": oi, "delta": frag}),
                    ));
                }
                f.push((
                    Kind::Meta,
                    json!({"type": "response.function_call_arguments.done", "item_id": id,
                    "output_index": oi, "arguments": args}),
                ));
            }
        }
        f.push((
            Kind::Meta,
            json!({"type": "response.output_item.done", "output_index": oi, "item": item}),
        ));
    }
    let finish = json!(p.finish);
    let (status, details) = responses_status(&finish);
    let ty = if status == "completed" {
        "response.completed"
    } else {
        "response.incomplete"
    };
    let done = responses_shell(ctx, status, details, items, responses_usage(p));
    f.push((Kind::Finish, json!({"type": ty, "response": done})));
    f.into_iter()
        .enumerate()
        .map(|(seq, (k, mut v))| {
            v["sequence_number"] = json!(seq);
            let name = v["type"].as_str().unwrap_or("").to_owned();
            (k, sse.event(&name, &v))
        })
        .collect()
}

fn error_event(ctx: &Ctx, sse: &Sse) -> String {
    match ctx.proto {
        Proto::OpenAi => sse.data(&ctx.error_value(500).to_string()),
        Proto::Responses => {
            let v = ctx.error_value(500);
            let e = v.get("error").cloned().unwrap_or_else(|| v.clone());
            let ev = json!({"type": "error", "code": e.get("type").cloned().unwrap_or(json!("server_error")),
                "message": e.get("message").cloned().unwrap_or(json!("mock error")), "param": null,
                "sequence_number": 0});
            sse.event("error", &ev)
        }
        Proto::Anthropic => sse.event("error", &ctx.error_value(529)),
        Proto::Gemini => sse.data(&ctx.error_value(500).to_string()),
    }
}

async fn respond_stream(
    conn: &mut Conn,
    ctx: &Ctx,
    p: &Plan,
    extra: &[(String, String)],
) -> io::Result<Flow> {
    let b = &ctx.b;
    let sse = Sse {
        nl: if b.fault == Fault::SplitUtf8 {
            "\r\n"
        } else {
            "\n"
        },
    };
    conn.write(&http::head(200, "text/event-stream", None, extra, ctx.keep))
        .await?;

    if b.fault == Fault::ErrorBody200 {
        conn.write_chunk(error_event(ctx, &sse).as_bytes()).await?;
        conn.finish_chunks().await?;
        return Ok(ctx.flow());
    }

    let mut frames = match ctx.proto {
        Proto::OpenAi => openai_frames(ctx, p, &sse),
        Proto::Anthropic => anthropic_frames(ctx, p, &sse),
        Proto::Responses => responses_frames(ctx, p, &sse),
        Proto::Gemini => gemini_frames(ctx, p, &sse),
    };
    match b.fault {
        Fault::NoFinish => frames.retain(|(k, _)| matches!(k, Kind::Meta | Kind::Content)),
        Fault::NoDone => frames.retain(|(k, _)| *k != Kind::Done),
        _ => {}
    }
    let trigger = match b.fault {
        Fault::DropAfter(n)
        | Fault::StallAfter(n)
        | Fault::MalformedAfter(n)
        | Fault::ErrorEventAfter(n) => Some(n),
        _ => None,
    };
    let trailer = frames
        .iter()
        .position(|(k, _)| !matches!(k, Kind::Meta | Kind::Content))
        .unwrap_or(frames.len());

    let mut seen = 0usize;
    let mut fired = false;
    for i in 0..=frames.len() {
        let is_content = i < frames.len() && frames[i].0 == Kind::Content;
        if is_content || i == trailer {
            let delay = match (is_content && seen > 0, seen == 0) {
                (true, _) => b.chunk_delay_ms,
                (false, true) => b.first_token_delay_ms,
                _ => 0,
            };
            if !wait_ms(conn, delay).await {
                return Ok(Flow::Close);
            }
            if let Some(n) = trigger {
                if !fired && (seen == n || (i == trailer && n >= seen)) {
                    fired = true;
                    match b.fault {
                        Fault::DropAfter(_) => return Ok(Flow::Close),
                        Fault::StallAfter(_) => {
                            conn.hold().await;
                            return Ok(Flow::Close);
                        }
                        Fault::MalformedAfter(_) => {
                            conn.write_chunk(
                                format!("data: {{not json{nl}{nl}", nl = sse.nl).as_bytes(),
                            )
                            .await?;
                        }
                        Fault::ErrorEventAfter(_) => {
                            conn.write_chunk(error_event(ctx, &sse).as_bytes()).await?;
                            conn.finish_chunks().await?;
                            return Ok(ctx.flow());
                        }
                        _ => {}
                    }
                }
            }
            if is_content && b.fault == Fault::Keepalive {
                let mut ka = format!(": PROCESSING{nl}{nl}", nl = sse.nl);
                if ctx.proto == Proto::Anthropic {
                    ka.push_str(&sse.event("ping", &json!({"type": "ping"})));
                }
                conn.write_chunk(ka.as_bytes()).await?;
            }
        }
        if let Some((kind, text)) = frames.get(i) {
            conn.write_chunk(text.as_bytes()).await?;
            if *kind == Kind::Content {
                seen += 1;
            }
        }
    }
    conn.finish_chunks().await?;
    Ok(ctx.flow())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_cover_text_and_are_nonempty() {
        let p = split_pieces("Hello from a.", 5);
        assert_eq!(p.len(), 5);
        assert_eq!(p.concat(), "Hello from a.");
        assert!(p.iter().all(|s| !s.is_empty()));
        let p = split_pieces("日本語🎉", 3);
        assert_eq!(p.concat(), "日本語🎉");
        let p = split_pieces("ab", 4);
        assert_eq!(p.len(), 4);
        assert_eq!(p.concat(), "ab");
    }

    #[test]
    fn fragments() {
        assert_eq!(split_len("{\"a\":1}", 3), vec!["{\"a", "\":1", "}"]);
        assert_eq!(split_len("", 3), vec![""]);
    }

    #[test]
    fn behavior_json() {
        let b: Behavior =
            serde_json::from_str(r#"{"fault":{"drop_after":2},"status":429}"#).unwrap();
        assert_eq!(b.fault, Fault::DropAfter(2));
        assert_eq!(b.status, 429);
        let b: Behavior = serde_json::from_str(r#"{"fault":"split_utf8"}"#).unwrap();
        assert_eq!(b.fault, Fault::SplitUtf8);
        let b: Behavior = serde_json::from_str(r#"{"fault":"error_body200"}"#).unwrap();
        assert_eq!(b.fault, Fault::ErrorBody200);
        let v = serde_json::to_value(Behavior::default()).unwrap();
        assert_eq!(v["fault"], json!("none"));
        let back: Behavior = serde_json::from_value(v).unwrap();
        assert_eq!(back, Behavior::default());
    }

    #[test]
    fn override_merge() {
        let base = Behavior {
            chunks: 3,
            text: Some("x".into()),
            ..Default::default()
        };
        let m = json!({"chunks": 1, "servers": {"a": {"status": 503}, "b": {"status": 500}}});
        let a = base.with_override(&m, "a").unwrap();
        assert_eq!((a.chunks, a.status, a.text.as_deref()), (1, 503, Some("x")));
        let c = base.with_override(&m, "c").unwrap();
        assert_eq!(c.status, 0);
        assert!(base.with_override(&json!({"status": "bad"}), "a").is_err());
    }
}
