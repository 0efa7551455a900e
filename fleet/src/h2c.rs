//! HTTP/2 with prior knowledge (h2c) on the same port as HTTP/1.1.
//!
//! A connection that opens with the HTTP/2 preface is served by the `h2`
//! crate; every stream becomes one [`Request`] handed to the same handler
//! as HTTP/1.1. The handler writes HTTP/1.1-shaped output (a head, then a
//! body or chunks) through [`Conn`]; [`Stream`] turns the head into a
//! HEADERS frame and the rest into DATA frames, so the responses, faults
//! and timings are the same on both versions. A fault that closes or
//! resets an HTTP/1.1 connection resets the HTTP/2 stream instead.

use std::future::poll_fn;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use h2::server::SendResponse;
use h2::{Reason, RecvStream, SendStream};
use tokio::net::TcpStream;

use crate::http::{Conn, Request, BODY_LIMIT, HOLD_LIMIT};
use crate::Shared;

/// What a client sends first on an HTTP/2 connection with prior knowledge.
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Whether the connection opens with the HTTP/2 preface. Peeks, so the
/// bytes stay for whichever server reads them.
pub(crate) async fn is_h2c(stream: &TcpStream) -> bool {
    let mut buf = [0u8; PREFACE.len()];
    for _ in 0..200 {
        let n = match stream.peek(&mut buf).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => n,
        };
        if buf[..n] != PREFACE[..n] {
            return false;
        }
        if n == PREFACE.len() {
            return true;
        }
        // Part of the preface so far: wait for the rest.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    false
}

/// Serves one h2c connection until the client closes it.
pub(crate) async fn serve(stream: TcpStream, shared: Arc<Shared>) {
    let mut builder = h2::server::Builder::new();
    // Many streams on one connection (the bench opens 10,000), and windows
    // large enough that flow control never paces the mock.
    builder
        .max_concurrent_streams(100_000)
        .initial_window_size(4 << 20)
        .initial_connection_window_size(64 << 20)
        .max_send_buffer_size(4 << 20);
    let Ok(mut conn) = builder.handshake::<_, Bytes>(stream).await else {
        return;
    };
    while let Some(accepted) = conn.accept().await {
        let Ok((request, respond)) = accepted else {
            return;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let (parts, body) = request.into_parts();
            let Some(body) = read_body(body).await else {
                return;
            };
            let req = to_request(parts, body);
            crate::proto::serve_h2_stream(Conn::h2(Stream::new(respond)), req, &shared).await;
        });
    }
}

async fn read_body(mut body: RecvStream) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.ok()?;
        let _ = body.flow_control().release_capacity(chunk.len());
        if out.len() + chunk.len() > BODY_LIMIT {
            return None;
        }
        out.extend_from_slice(&chunk);
    }
    Some(out)
}

fn to_request(parts: http::request::Parts, body: Vec<u8>) -> Request {
    let target = parts
        .uri
        .path_and_query()
        .map_or("/".to_string(), |p| p.as_str().to_string());
    let headers = parts
        .headers
        .iter()
        .map(|(k, v)| {
            let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
            (k.as_str().to_string(), v)
        })
        .collect();
    Request {
        method: parts.method.as_str().to_string(),
        path: parts.uri.path().to_string(),
        target,
        version: "HTTP/2.0".to_string(),
        headers,
        body,
    }
}

/// The response side of one HTTP/2 stream, fed HTTP/1.1-shaped bytes.
pub(crate) struct Stream {
    respond: Option<SendResponse<Bytes>>,
    /// Head bytes so far, until the blank line that ends them.
    head: Vec<u8>,
    body: Option<SendStream<Bytes>>,
    /// Body bytes still due when the head gave a content-length.
    remaining: Option<usize>,
    ended: bool,
}

impl Stream {
    fn new(respond: SendResponse<Bytes>) -> Stream {
        Stream {
            respond: Some(respond),
            head: Vec::new(),
            body: None,
            remaining: None,
            ended: false,
        }
    }

    /// Takes bytes of the HTTP/1.1 response: head first, then body.
    pub(crate) fn write(&mut self, data: &[u8]) -> io::Result<()> {
        if self.body.is_some() {
            return self.data(data);
        }
        self.head.extend_from_slice(data);
        let Some(end) = self.head.windows(4).position(|w| w == b"\r\n\r\n") else {
            return Ok(());
        };
        let rest = self.head.split_off(end + 4);
        self.send_head()?;
        self.data(&rest)
    }

    /// One chunk of a chunked body: a DATA frame.
    pub(crate) fn chunk(&mut self, payload: &[u8]) -> io::Result<()> {
        self.data(payload)
    }

    /// The end of a chunked body: END_STREAM.
    pub(crate) fn finish(&mut self) -> io::Result<()> {
        self.send(Bytes::new(), true)
    }

    fn send_head(&mut self) -> io::Result<()> {
        let head = String::from_utf8_lossy(&self.head).into_owned();
        let mut lines = head.split("\r\n");
        let status: u16 = lines
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| broken("bad status line"))?;
        let mut response = http::Response::builder().status(status);
        for (k, v) in lines.filter_map(|l| l.split_once(':')) {
            let k = k.trim().to_ascii_lowercase();
            // Connection-specific headers are not allowed in HTTP/2.
            if matches!(
                k.as_str(),
                "connection" | "keep-alive" | "transfer-encoding" | "upgrade"
            ) {
                continue;
            }
            if k == "content-length" {
                self.remaining = v.trim().parse().ok();
            }
            response = response.header(k, v.trim());
        }
        let response = response.body(()).map_err(|e| broken(&e.to_string()))?;
        let respond = self.respond.as_mut().ok_or_else(|| broken("no stream"))?;
        let end = self.remaining == Some(0);
        let body = respond.send_response(response, end).map_err(h2_err)?;
        self.body = Some(body);
        self.ended = end;
        Ok(())
    }

    fn data(&mut self, data: &[u8]) -> io::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        let end = match &mut self.remaining {
            Some(left) => {
                *left = left.saturating_sub(data.len());
                *left == 0
            }
            None => false,
        };
        self.send(Bytes::copy_from_slice(data), end)
    }

    fn send(&mut self, data: Bytes, end: bool) -> io::Result<()> {
        if self.ended {
            return Ok(());
        }
        let body = self.body.as_mut().ok_or_else(|| broken("no head sent"))?;
        body.send_data(data, end).map_err(h2_err)?;
        self.ended = end;
        Ok(())
    }

    /// Waits until the client resets the stream or [`HOLD_LIMIT`] passes.
    pub(crate) async fn hold(&mut self) {
        let reset = async {
            match (&mut self.body, &mut self.respond) {
                (Some(body), _) => {
                    let _ = poll_fn(|cx| body.poll_reset(cx)).await;
                }
                (None, Some(respond)) => {
                    let _ = poll_fn(|cx| respond.poll_reset(cx)).await;
                }
                (None, None) => {}
            }
        };
        let _ = tokio::time::timeout(HOLD_LIMIT, reset).await;
    }

    /// Ends the stream; one whose response is not complete is reset (the
    /// HTTP/2 form of a connection closed mid-response). A reset discards
    /// DATA frames not yet written, so a stream that sent some waits a
    /// moment first: the client sees the partial body, then the reset, as
    /// over HTTP/1.1.
    pub(crate) async fn close(&mut self) {
        if self.ended {
            return;
        }
        if self.body.is_some() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.reset();
    }

    /// Resets the stream at once, unless it ended.
    pub(crate) fn reset(&mut self) {
        if self.ended {
            return;
        }
        self.ended = true;
        match (&mut self.body, &mut self.respond) {
            (Some(body), _) => body.send_reset(Reason::INTERNAL_ERROR),
            (None, Some(respond)) => respond.send_reset(Reason::INTERNAL_ERROR),
            (None, None) => {}
        }
    }
}

fn broken(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

fn h2_err(e: h2::Error) -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, e.to_string())
}
