//! Minimal hand-written HTTP/1.1 server side: request parsing and response writing.

use std::io;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest accepted request head (request line + headers).
pub(crate) const HEAD_LIMIT: usize = 64 * 1024;
/// Largest accepted request body.
pub(crate) const BODY_LIMIT: usize = 256 * 1024 * 1024;
/// How long a held connection (stall / unfinished headers) stays open at most.
pub(crate) const HOLD_LIMIT: Duration = Duration::from_secs(120);

/// One parsed request.
pub(crate) struct Request {
    pub method: String,
    /// Request target as received (may include a query string).
    pub target: String,
    /// Target without the query string, used for routing.
    pub path: String,
    pub version: String,
    /// Header names lowercased, in arrival order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn has_token(&self, header: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(header))
            .any(|(_, v)| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    }

    /// Whether the connection may be reused after this request.
    pub fn keep_alive(&self) -> bool {
        if self.has_token("connection", "close") {
            return false;
        }
        if self.version.eq_ignore_ascii_case("HTTP/1.0") {
            return self.has_token("connection", "keep-alive");
        }
        true
    }
}

pub(crate) enum ReadError {
    /// Socket error or the peer closed in the middle of a request.
    Io,
    HeadTooLarge,
    BodyTooLarge,
    Bad(String),
}

/// Where a response goes: an HTTP/1.1 connection, or one HTTP/2 stream.
enum Io {
    H1(TcpStream),
    H2(crate::h2c::Stream),
}

/// A server-side connection with its read buffer (HTTP/1.1), or one
/// HTTP/2 stream's response side.
pub(crate) struct Conn {
    io: Io,
    buf: Vec<u8>,
    /// When set, every write is cut into 1–3 byte writes (SplitUtf8 fault).
    pub split: bool,
    split_step: usize,
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

impl Conn {
    pub fn new(stream: TcpStream) -> Conn {
        Conn {
            io: Io::H1(stream),
            buf: Vec::with_capacity(8192),
            split: false,
            split_step: 0,
        }
    }

    /// The response side of an HTTP/2 stream (its request is already read).
    pub(crate) fn h2(stream: crate::h2c::Stream) -> Conn {
        Conn {
            io: Io::H2(stream),
            buf: Vec::new(),
            split: false,
            split_step: 0,
        }
    }

    async fn fill(&mut self) -> io::Result<usize> {
        match &mut self.io {
            Io::H1(stream) => {
                self.buf.reserve(16 * 1024);
                stream.read_buf(&mut self.buf).await
            }
            Io::H2(_) => Ok(0),
        }
    }

    async fn fill_or_fail(&mut self) -> Result<(), ReadError> {
        match self.fill().await {
            Ok(0) | Err(_) => Err(ReadError::Io),
            Ok(_) => Ok(()),
        }
    }

    async fn read_line(&mut self) -> Result<String, ReadError> {
        loop {
            if let Some(i) = find(&self.buf, b"\r\n") {
                let line = String::from_utf8_lossy(&self.buf[..i]).into_owned();
                self.buf.drain(..i + 2);
                return Ok(line);
            }
            if self.buf.len() > HEAD_LIMIT {
                return Err(ReadError::Bad("line too long".into()));
            }
            self.fill_or_fail().await?;
        }
    }

    async fn read_exact_vec(&mut self, n: usize) -> Result<Vec<u8>, ReadError> {
        while self.buf.len() < n {
            self.fill_or_fail().await?;
        }
        Ok(self.buf.drain(..n).collect())
    }

    /// Reads the next request. `Ok(None)` on a clean end of connection between requests.
    pub async fn read_request(&mut self) -> Result<Option<Request>, ReadError> {
        let head_end = loop {
            while self.buf.starts_with(b"\r\n") {
                self.buf.drain(..2);
            }
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i;
            }
            if self.buf.len() > HEAD_LIMIT {
                return Err(ReadError::HeadTooLarge);
            }
            match self.fill().await {
                Ok(0) if self.buf.is_empty() => return Ok(None),
                Ok(0) | Err(_) => return Err(ReadError::Io),
                Ok(_) => {}
            }
        };
        if head_end > HEAD_LIMIT {
            return Err(ReadError::HeadTooLarge);
        }
        let head = String::from_utf8_lossy(&self.buf[..head_end]).into_owned();
        self.buf.drain(..head_end + 4);

        let mut lines = head.split("\r\n");
        let request_line = lines.next().unwrap_or("");
        let mut parts = request_line.split_whitespace();
        let (method, target, version) = match (parts.next(), parts.next(), parts.next()) {
            (Some(m), Some(t), Some(v)) if v.starts_with("HTTP/") => {
                (m.to_string(), t.to_string(), v.to_string())
            }
            _ => {
                return Err(ReadError::Bad(format!(
                    "bad request line: {request_line:?}"
                )))
            }
        };
        let mut headers = Vec::new();
        for line in lines {
            let Some((k, v)) = line.split_once(':') else {
                return Err(ReadError::Bad(format!("bad header line: {line:?}")));
            };
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
        // Absolute-form targets ("http://host/path") are reduced to their path.
        let mut path = target.clone();
        if let Some(rest) = path
            .strip_prefix("http://")
            .or_else(|| path.strip_prefix("https://"))
        {
            path = match rest.find('/') {
                Some(i) => rest[i..].to_string(),
                None => "/".to_string(),
            };
        }
        if let Some(q) = path.find('?') {
            path.truncate(q);
        }
        let mut req = Request {
            method,
            target,
            path,
            version,
            headers,
            body: Vec::new(),
        };

        if req
            .header("expect")
            .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
        {
            self.write_raw(b"HTTP/1.1 100 Continue\r\n\r\n")
                .await
                .map_err(|_| ReadError::Io)?;
        }

        let chunked = req.has_token("transfer-encoding", "chunked");
        if chunked {
            let mut body = Vec::new();
            loop {
                let line = self.read_line().await?;
                let size_txt = line.split(';').next().unwrap_or("").trim();
                let size = usize::from_str_radix(size_txt, 16)
                    .map_err(|_| ReadError::Bad(format!("bad chunk size {size_txt:?}")))?;
                if size == 0 {
                    // Trailers until an empty line.
                    while !self.read_line().await?.is_empty() {}
                    break;
                }
                if body.len() + size > BODY_LIMIT {
                    return Err(ReadError::BodyTooLarge);
                }
                body.extend(self.read_exact_vec(size).await?);
                if !self.read_line().await?.is_empty() {
                    return Err(ReadError::Bad("missing CRLF after chunk".into()));
                }
            }
            req.body = body;
        } else if let Some(cl) = req.header("content-length") {
            let n: usize = cl
                .trim()
                .parse()
                .map_err(|_| ReadError::Bad(format!("bad content-length {cl:?}")))?;
            if n > BODY_LIMIT {
                return Err(ReadError::BodyTooLarge);
            }
            req.body = self.read_exact_vec(n).await?;
        }
        Ok(Some(req))
    }

    async fn write_raw(&mut self, data: &[u8]) -> io::Result<()> {
        match &mut self.io {
            Io::H1(stream) => {
                stream.write_all(data).await?;
                stream.flush().await
            }
            Io::H2(stream) => stream.write(data),
        }
    }

    /// Writes and flushes; in split mode as many 1–3 byte writes.
    pub async fn write(&mut self, data: &[u8]) -> io::Result<()> {
        if !self.split {
            return self.write_raw(data).await;
        }
        let mut i = 0;
        while i < data.len() {
            let n = (self.split_step % 3 + 1).min(data.len() - i);
            self.split_step += 1;
            self.write_raw(&data[i..i + n]).await?;
            i += n;
            tokio::task::yield_now().await;
        }
        Ok(())
    }

    /// Writes one `Transfer-Encoding: chunked` chunk.
    pub async fn write_chunk(&mut self, payload: &[u8]) -> io::Result<()> {
        if payload.is_empty() {
            return Ok(()); // an empty chunk would terminate the body
        }
        if let Io::H2(stream) = &mut self.io {
            return stream.chunk(payload);
        }
        let mut out = Vec::with_capacity(payload.len() + 12);
        out.extend_from_slice(format!("{:x}\r\n", payload.len()).as_bytes());
        out.extend_from_slice(payload);
        out.extend_from_slice(b"\r\n");
        self.write(&out).await
    }

    /// Writes the chunked terminator.
    pub async fn finish_chunks(&mut self) -> io::Result<()> {
        match &mut self.io {
            Io::H1(_) => self.write(b"0\r\n\r\n").await,
            Io::H2(stream) => stream.finish(),
        }
    }

    /// Keeps the connection open, discarding input, until the peer closes or
    /// [`HOLD_LIMIT`] passes.
    pub async fn hold(&mut self) {
        let stream = match &mut self.io {
            Io::H1(stream) => stream,
            Io::H2(stream) => return stream.hold().await,
        };
        let _ = tokio::time::timeout(HOLD_LIMIT, async {
            let mut scratch = [0u8; 4096];
            loop {
                match stream.read(&mut scratch).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        })
        .await;
    }

    /// Graceful close (FIN).
    pub async fn close(&mut self) {
        match &mut self.io {
            Io::H1(stream) => {
                let _ = stream.shutdown().await;
            }
            Io::H2(stream) => stream.close().await,
        }
    }

    /// Close with a TCP reset (SO_LINGER 0) instead of a FIN; an HTTP/2
    /// stream is reset.
    pub fn reset(self) {
        match self.io {
            Io::H1(stream) => {
                #[allow(deprecated)]
                let _ = stream.set_linger(Some(Duration::ZERO));
                drop(stream);
            }
            Io::H2(mut stream) => stream.reset(),
        }
    }
}

pub(crate) fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        413 => "Payload Too Large",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        529 => "Overloaded",
        _ => "Status",
    }
}

/// Builds a response head. `content_length: None` means chunked.
pub(crate) fn head(
    status: u16,
    content_type: &str,
    content_length: Option<usize>,
    extra: &[(String, String)],
    keep_alive: bool,
) -> Vec<u8> {
    let mut s = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: {}\r\n",
        status,
        reason(status),
        content_type
    );
    match content_length {
        Some(n) => s.push_str(&format!("content-length: {n}\r\n")),
        None => s.push_str("transfer-encoding: chunked\r\ncache-control: no-cache\r\n"),
    }
    s.push_str(if keep_alive {
        "connection: keep-alive\r\n"
    } else {
        "connection: close\r\n"
    });
    for (k, v) in extra {
        s.push_str(k);
        s.push_str(": ");
        s.push_str(v);
        s.push_str("\r\n");
    }
    s.push_str("\r\n");
    s.into_bytes()
}
