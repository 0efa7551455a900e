//! The gateway's errors, answered in the caller's envelope (OpenAI Chat,
//! Anthropic or Responses): handlers return `Result<Response, GatewayError>`
//! and use `?`.

use crate::record::{self, LogFormat, LogLine};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use llmux::Protocol;
use serde_json::Value;
use std::time::Instant;

/// Why the gateway answers with an error of its own.
#[derive(Debug)]
pub enum GatewayError {
    /// Refused before it reached the engine (no route, no key, a body
    /// too large, a request the engine would not take): answering it
    /// writes its log line and counts it in `llmux_rejected_total`.
    Rejected(Box<Rejection>),
    /// The request reached the engine but got no result (the gateway is
    /// draining, the engine dropped it); its log line is already written.
    NoResult {
        proto: Protocol,
        status: u16,
        /// The OpenAI-style error type (`overloaded`, `internal_error`).
        kind: &'static str,
        message: &'static str,
    },
}

/// A request refused before it reached the engine; build it with
/// [`Rejection::new`] and the setters, then `?` it.
#[derive(Debug)]
pub struct Rejection {
    proto: Protocol,
    status: u16,
    /// The outcome name (docs/errors.md).
    reason: &'static str,
    message: String,
    model: String,
    key: String,
    /// `METHOD /path`, for a request no route took.
    route: Option<String>,
    started: Instant,
    log: LogFormat,
    /// One more header (`allow`, `retry-after`).
    header: Option<(&'static str, &'static str)>,
    /// Headers computed per request (`retry-after` of a key's limit).
    extra: Vec<(&'static str, String)>,
    /// Reserved and settled cost for the log line (keys with a budget).
    cost: Option<crate::keys::CostNote>,
}

impl Rejection {
    pub fn new(
        log: LogFormat,
        proto: Protocol,
        status: u16,
        reason: &'static str,
        message: impl Into<String>,
    ) -> Rejection {
        Rejection {
            proto,
            status,
            reason,
            message: message.into(),
            model: "-".into(),
            key: "-".into(),
            route: None,
            started: Instant::now(),
            log,
            header: None,
            extra: Vec::new(),
            cost: None,
        }
    }

    /// One more header with a value computed for this request.
    pub fn header_owned(mut self, name: &'static str, value: String) -> Rejection {
        self.extra.push((name, value));
        self
    }

    pub fn cost(mut self, note: crate::keys::CostNote) -> Rejection {
        self.cost = Some(note);
        self
    }

    pub fn model(mut self, model: impl Into<String>) -> Rejection {
        self.model = model.into();
        self
    }

    pub fn key(mut self, key: &str) -> Rejection {
        self.key = key.to_owned();
        self
    }

    pub fn route(mut self, route: String) -> Rejection {
        self.route = Some(route);
        self
    }

    /// The HTTP status, the outcome name and the message (for a trace).
    pub fn parts(&self) -> (u16, &'static str, &str) {
        (self.status, self.reason, &self.message)
    }

    pub fn header(mut self, name: &'static str, value: &'static str) -> Rejection {
        self.header = Some((name, value));
        self
    }

    /// The log line and the counter, then the answer.
    fn respond(self) -> Response {
        record::rejected(self.reason);
        LogLine {
            id: None,
            protocol: self.proto.as_str(),
            model: &self.model,
            key: &self.key,
            stream: false,
            status: self.status,
            outcome: self.reason,
            duration_ms: self.started.elapsed().as_secs_f64() * 1000.0,
            routing: None,
            error: Some(&self.message),
            route: self.route.as_deref(),
            cost: self.cost,
        }
        .write(self.log);
        // OpenAI shapes: the type says the category, the code the reason.
        let kind = match self.status {
            401 => "authentication_error",
            404 => "not_found_error",
            402 if self.proto == Protocol::Anthropic => "billing_error",
            402 => "insufficient_quota",
            403 => "permission_error",
            413 => "request_too_large",
            429 => "rate_limit_error",
            503 => "overloaded",
            _ => "invalid_request_error",
        };
        let mut body = llmux::protocol::error_body(self.proto, self.status, kind, &self.message);
        // Google's `code` is the HTTP status; its `details` carry the kind.
        let code = body
            .pointer_mut("/error/code")
            .filter(|_| self.proto != Protocol::Gemini);
        if let Some(code) = code {
            *code = Value::from(self.reason);
        }
        let mut r = json_response(self.status, body.to_string());
        let h = r.headers_mut();
        h.insert("x-llmux-outcome", HeaderValue::from_static(self.reason));
        if self.status == 429 {
            h.insert("x-should-retry", HeaderValue::from_static("true"));
        } else if self.status != 503 {
            h.insert("x-should-retry", HeaderValue::from_static("false"));
        }
        if let Some((name, value)) = self.header {
            h.insert(name, HeaderValue::from_static(value));
        }
        for (name, value) in self.extra {
            if let Ok(v) = HeaderValue::try_from(value) {
                h.insert(name, v);
            }
        }
        r
    }
}

impl From<Rejection> for GatewayError {
    fn from(r: Rejection) -> GatewayError {
        GatewayError::Rejected(Box::new(r))
    }
}

impl IntoResponse for GatewayError {
    fn into_response(self) -> Response {
        match self {
            GatewayError::Rejected(r) => r.respond(),
            GatewayError::NoResult {
                proto,
                status,
                kind,
                message,
            } => error(proto, status, kind, message),
        }
    }
}

/// A JSON body with its status.
pub fn json_response(status: u16, body: String) -> Response {
    let mut r = (
        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY),
        body,
    )
        .into_response();
    r.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    r
}

/// llmux's own error, in the caller's protocol's envelope.
pub fn error(proto: Protocol, status: u16, kind: &str, message: &str) -> Response {
    let body = llmux::protocol::error_body(proto, status, kind, message);
    let mut r = json_response(status, body.to_string());
    if matches!(status, 400 | 401 | 403 | 404 | 413) {
        r.headers_mut()
            .insert("x-should-retry", HeaderValue::from_static("false"));
    }
    r
}
