//! The gateway's edge (issue 25): the accept loop over hyper's automatic
//! HTTP/1.1 + HTTP/2 connection builder, serving the axum router, with the
//! limits of `gateway.limits` in force ([`EdgeLimits`], which a reload
//! replaces), optional TLS, and the drain on shutdown.
//!
//! What each limit does and its metric: docs/gateway.md, "Limits".

use crate::error::{GatewayError, Rejection};
use crate::limits::{EdgeLimits, Pass, Settings};
use crate::record::LogFormat;
use crate::tls::Tls;
use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, Request, Response};
use axum::response::IntoResponse;
use axum::Router;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use llmux::Protocol;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::time::{Instant, Sleep};

/// How the edge is set up.
pub struct EdgeConfig {
    /// The limits in force; a reload sets new ones.
    pub limits: Arc<EdgeLimits>,
    pub tls: Option<Arc<Tls>>,
    pub log: LogFormat,
    /// After the stop signal, how long open connections may take to end
    /// before `run` returns anyway (the drain time plus a little).
    pub close_wait: Duration,
}

/// Everything the connections share.
struct Edge {
    router: Router,
    cfg: EdgeConfig,
    /// Bounds the tasks that answer connections past the cap.
    refusing: Arc<Semaphore>,
}

/// Tasks answering connections past the cap at once; past this, such a
/// connection is closed without an answer.
const MAX_REFUSING: usize = 256;

/// Serves `router` on `listener` until `stop` resolves, then stops
/// accepting, asks every connection to close after its current requests,
/// and waits for them (at most `close_wait`).
pub async fn run(
    listener: TcpListener,
    router: Router,
    cfg: EdgeConfig,
    stop: impl Future<Output = ()>,
) {
    let edge = Arc::new(Edge {
        router,
        cfg,
        refusing: Arc::new(Semaphore::new(MAX_REFUSING)),
    });
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    // The connection tasks, so any still open after `close_wait` are
    // aborted rather than left running.
    let mut open = tokio::task::JoinSet::new();
    tokio::pin!(stop);
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            Some(_) = open.join_next(), if !open.is_empty() => continue,
            _ = &mut stop => break,
        };
        let tcp = match accepted {
            Ok((tcp, _)) => tcp,
            Err(_) => {
                // Out of file descriptors (EMFILE) or a connection reset
                // before it was accepted: count it, pause, go on.
                metrics::counter!("llmux_accept_errors_total").increment(1);
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        tune(&tcp);
        match edge.cfg.limits.connections.try_enter() {
            Some(pass) => {
                let edge = edge.clone();
                open.spawn(edge.connection(tcp, pass, shutdown_rx.clone()));
            }
            None => edge.refuse(tcp),
        }
    }
    drop(listener);
    let _ = shutdown_tx.send(true);
    let all_closed = edge.cfg.limits.connections.emptied();
    let _ = tokio::time::timeout(edge.cfg.close_wait, all_closed).await;
    open.shutdown().await;
}

impl Edge {
    /// A connection past the cap: a minimal 503 and close, counted. Over
    /// TLS it is closed at once (a TLS client cannot read a plain answer,
    /// and a handshake is what the cap saves).
    fn refuse(&self, mut tcp: TcpStream) {
        metrics::counter!("llmux_connections_refused_total", "reason" => "connection_limit")
            .increment(1);
        let Ok(permit) = self.refusing.clone().try_acquire_owned() else {
            return;
        };
        if self.cfg.tls.is_some() {
            return;
        }
        let answer = self.cfg.limits.now().refusal.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let _ = tokio::time::timeout(Duration::from_secs(1), async {
                tcp.write_all(&answer).await?;
                tcp.shutdown().await?;
                // Read what the client sent until it closes, so the close
                // is not a reset that could discard the answer.
                let mut sink = [0u8; 1024];
                while tcp.read(&mut sink).await? > 0 {}
                std::io::Result::Ok(())
            })
            .await;
        });
    }

    /// One accepted connection, TLS first if configured. Only the common
    /// case, plain HTTP/1.1, is served inline: HTTP/2 and TLS are boxed,
    /// so an HTTP/1.1 connection's task does not carry their (larger)
    /// state; each open stream holds one such task.
    async fn connection(
        self: Arc<Self>,
        tcp: TcpStream,
        _open: Pass,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let s = self.cfg.limits.now();
        if let Some(tls) = self.cfg.tls.clone() {
            return Box::pin(self.serve_tls(tcp, tls, s, shutdown)).await;
        }
        let first_bytes = Duration::from_millis(s.limits.header_read_timeout_ms);
        let http = tokio::select! {
            r = tokio::time::timeout(first_bytes, sniff(&tcp)) => r,
            _ = shutdown.wait_for(|s| *s) => return,
        };
        match http {
            Ok(Ok(Some(Http::H1))) => self.serve_h1(tcp, s, shutdown).await,
            Ok(Ok(Some(Http::H2))) => Box::pin(self.serve_auto(&s.h2, &s, tcp, shutdown)).await,
            Ok(Ok(Some(Http::Detect))) => {
                Box::pin(self.serve_auto(&s.detect, &s, tcp, shutdown)).await
            }
            // Closed before a byte, or a socket error.
            Ok(_) => {}
            Err(_) => closed("header_timeout"),
        }
    }

    /// A TLS connection: the handshake (within the header read timeout),
    /// then HTTP/2 or HTTP/1.1 as ALPN chose.
    async fn serve_tls(
        self: &Arc<Self>,
        tcp: TcpStream,
        tls: Arc<Tls>,
        s: Arc<Settings>,
        shutdown: watch::Receiver<bool>,
    ) {
        let handshake = Duration::from_millis(s.limits.header_read_timeout_ms);
        match tokio::time::timeout(handshake, tls.acceptor().accept(tcp)).await {
            Ok(Ok(io)) => match io.get_ref().1.alpn_protocol() {
                Some(b"h2") => self.serve_auto(&s.h2, &s, io, shutdown).await,
                Some(b"http/1.1") => self.serve_h1(io, s, shutdown).await,
                _ => self.serve_auto(&s.detect, &s, io, shutdown).await,
            },
            Ok(Err(_)) => closed("tls_error"),
            Err(_) => closed("tls_handshake_timeout"),
        }
    }

    /// Serves `io` as HTTP/1.1. Only the idle timeout of `s` is kept for
    /// the life of the connection (an open stream holds this future).
    async fn serve_h1<I>(self: &Arc<Self>, io: I, s: Arc<Settings>, shutdown: watch::Receiver<bool>)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let state = Arc::new(ConnState::new());
        let idle = Duration::from_millis(s.limits.idle_timeout_ms);
        let conn =
            s.h1.serve_connection(TokioIo::new(io), self.service(&state));
        drop(s);
        self.serve(conn, &state, idle, shutdown).await
    }

    /// Serves `io` with one of hyper's automatic builders (`h2` or
    /// `detect`).
    async fn serve_auto<I>(
        self: &Arc<Self>,
        builder: &auto::Builder<TokioExecutor>,
        s: &Settings,
        io: I,
        shutdown: watch::Receiver<bool>,
    ) where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let state = Arc::new(ConnState::new());
        let idle = Duration::from_millis(s.limits.idle_timeout_ms);
        let conn = builder.serve_connection(TokioIo::new(io), self.service(&state));
        self.serve(conn, &state, idle, shutdown).await
    }

    /// The per-request service of one connection.
    fn service(self: &Arc<Self>, state: &Arc<ConnState>) -> Svc {
        Svc {
            edge: self.clone(),
            conn: state.clone(),
        }
    }

    /// Drives a connection until it ends: closed by the client, by a
    /// timeout, when idle too long, or at shutdown.
    async fn serve<C: Served>(
        &self,
        conn: C,
        state: &ConnState,
        idle: Duration,
        mut shutdown: watch::Receiver<bool>,
    ) {
        tokio::pin!(conn);
        let mut closing = false;
        let result = loop {
            tokio::select! {
                r = conn.as_mut() => break r,
                _ = state.idle(idle), if !closing => {
                    closed("idle");
                    conn.as_mut().close_gracefully();
                    closing = true;
                }
                _ = shutdown.wait_for(|s| *s), if !closing => {
                    conn.as_mut().close_gracefully();
                    closing = true;
                }
            }
        };
        if let Err(e) = result {
            closed(close_reason(&*e.into()));
        }
    }

    /// One request: the in-flight cap, the body read timeout, the router.
    async fn handle(self: Arc<Self>, req: Request<Incoming>, active: Active) -> Response<Held> {
        let s = self.cfg.limits.now();
        let slot = if exempt(req.uri().path()) {
            None
        } else {
            match self.cfg.limits.in_flight.try_enter() {
                Some(pass) => Some(pass),
                None => {
                    return self
                        .overloaded(req.uri().path(), &s.limits)
                        .map(|b| Held::new(b, None, active))
                }
            }
        };
        let limit = s.limits.body_read_timeout_ms;
        drop(s);
        let deadline = Instant::now() + Duration::from_millis(limit);
        let req = req.map(|b| Body::new(Timed::new(b, deadline, limit)));
        use hyper::service::Service;
        let resp = match TowerToHyperService::new(self.router.clone())
            .call(req)
            .await
        {
            Ok(r) => r,
            Err(never) => match never {},
        };
        resp.map(|b| Held::new(b, slot, active))
    }

    /// 503 in the caller's envelope, logged and counted, with `retry-after`.
    fn overloaded(&self, path: &str, l: &crate::config::Limits) -> Response<Body> {
        let message = format!(
            "the gateway is serving its limit of {} requests (gateway.limits.max_in_flight); retry after {} s",
            l.max_in_flight, l.retry_after_s
        );
        let rejection = Rejection::new(
            self.cfg.log,
            caller_protocol(path),
            503,
            "in_flight_limit",
            message,
        );
        let mut r = GatewayError::from(rejection).into_response();
        let h = r.headers_mut();
        h.insert("retry-after", HeaderValue::from(l.retry_after_s));
        h.insert("x-should-retry", HeaderValue::from_static("true"));
        r
    }
}

/// A connection being served: hyper's HTTP/1.1 connection or its
/// automatic builder's, which both close after their current requests when
/// asked.
trait Served: Future<Output = Result<(), Self::Failure>> {
    type Failure: Into<Box<dyn std::error::Error + Send + Sync>>;
    fn close_gracefully(self: Pin<&mut Self>);
}

impl<I, S, B> Served for hyper::server::conn::http1::Connection<I, S>
where
    S: hyper::service::HttpService<Incoming, ResBody = B>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
    B: http_body::Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Failure = hyper::Error;
    fn close_gracefully(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

impl<I, S, B> Served for auto::Connection<'_, I, S, TokioExecutor>
where
    S: hyper::service::Service<Request<Incoming>, Response = Response<B>>,
    S::Future: 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    TokioExecutor: hyper::rt::bounds::Http2ServerConnExec<S::Future, B>,
{
    type Failure = Box<dyn std::error::Error + Send + Sync>;
    fn close_gracefully(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

/// How a connection's HTTP version is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Http {
    H1,
    H2,
    /// Not known yet: a partial HTTP/2 preface.
    Detect,
}

/// The HTTP/2 connection preface (RFC 9113, section 3.4).
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The connection's HTTP version from its first bytes, peeked rather than
/// read: when hyper reads them itself it hands the HTTP/1.1 parser a
/// 24-byte first read, and the parser's 8 KiB buffer then doubles to
/// 16 KiB for the rest of the head, for the life of the connection.
/// `None` when the client closed before sending a byte.
async fn sniff(tcp: &TcpStream) -> std::io::Result<Option<Http>> {
    let mut first = [0u8; H2_PREFACE.len()];
    let n = tcp.peek(&mut first).await?;
    Ok(version_of(&first[..n]))
}

fn version_of(first: &[u8]) -> Option<Http> {
    if first.is_empty() {
        None
    } else if first == H2_PREFACE {
        Some(Http::H2)
    } else if H2_PREFACE.starts_with(first) {
        Some(Http::Detect)
    } else {
        Some(Http::H1)
    }
}

/// Every accepted connection gets `TCP_NODELAY`: with Nagle's algorithm
/// on, a stream's small last write waited for the client's delayed ACK,
/// 40 ms at the end of every stream (issue 18).
fn tune(tcp: &TcpStream) {
    let _ = tcp.set_nodelay(true);
}

/// Health, readiness and metrics are answered past the in-flight cap: an
/// operator sees the overload.
fn exempt(path: &str) -> bool {
    // `/admin/reload` too: it is how an operator raises the cap.
    matches!(
        path,
        "/" | "/health" | "/ready" | "/metrics" | "/admin/reload"
    )
}

/// The protocol whose envelope an error on `path` takes.
fn caller_protocol(path: &str) -> Protocol {
    crate::server::COMPLETIONS
        .iter()
        .find(|(p, _)| path.ends_with(p))
        .map(|&(_, proto)| proto)
        .unwrap_or(if path.contains("/messages") {
            Protocol::Anthropic
        } else if path.contains("GenerateContent") || path.contains(":generateContent") {
            // Google's methods ride on the model path.
            Protocol::Gemini
        } else {
            Protocol::OpenAi
        })
}

/// Counts a connection closed by the gateway or by an error.
fn closed(reason: &'static str) {
    metrics::counter!("llmux_connections_closed_total", "reason" => reason).increment(1);
}

/// Why a connection ended with an error, as a metric label.
fn close_reason(e: &(dyn std::error::Error + 'static)) -> &'static str {
    match e.downcast_ref::<hyper::Error>() {
        Some(h) if h.is_timeout() => "header_timeout",
        Some(h) if h.is_parse() || h.is_parse_too_large() => "bad_request",
        _ => "client_error",
    }
}

/// A connection's requests in progress and when the last one ended, for
/// the idle timeout.
struct ConnState {
    start: Instant,
    active: AtomicUsize,
    /// Milliseconds from `start` to when the connection last became idle.
    idle_since_ms: AtomicU64,
}

impl ConnState {
    fn new() -> ConnState {
        ConnState {
            start: Instant::now(),
            active: AtomicUsize::new(0),
            idle_since_ms: AtomicU64::new(0),
        }
    }

    /// Resolves once the connection has had no request in progress for
    /// `idle`.
    async fn idle(&self, idle: Duration) {
        loop {
            let since =
                self.start + Duration::from_millis(self.idle_since_ms.load(Ordering::Acquire));
            let deadline = since + idle;
            let quiet = self.active.load(Ordering::Acquire) == 0;
            if quiet && Instant::now() >= deadline {
                return;
            }
            let wake = if quiet {
                deadline
            } else {
                Instant::now() + idle
            };
            tokio::time::sleep_until(wake).await;
        }
    }
}

/// A request in progress on a connection, until its response is sent.
struct Active(Arc<ConnState>);

impl Active {
    fn new(c: Arc<ConnState>) -> Active {
        c.active.fetch_add(1, Ordering::AcqRel);
        Active(c)
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        let ms = self.0.start.elapsed().as_millis() as u64;
        self.0.idle_since_ms.store(ms, Ordering::Release);
        self.0.active.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The per-connection service hyper calls for each request.
struct Svc {
    edge: Arc<Edge>,
    conn: Arc<ConnState>,
}

impl hyper::service::Service<Request<Incoming>> for Svc {
    type Response = Response<Held>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Held>, Infallible>> + Send>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let active = Active::new(self.conn.clone());
        let edge = self.edge.clone();
        Box::pin(async move { Ok(edge.handle(req, active).await) })
    }
}

/// A response body holding its request's in-flight slot and connection
/// activity until it is sent or dropped.
pub struct Held {
    body: Body,
    _slot: Option<Pass>,
    _active: Active,
}

impl Held {
    fn new(body: Body, slot: Option<Pass>, active: Active) -> Held {
        Held {
            body,
            _slot: slot,
            _active: active,
        }
    }
}

impl http_body::Body for Held {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The request body failed to arrive within `gateway.limits.body_read_timeout_ms`.
#[derive(Debug)]
pub struct BodyTimeout(pub u64);

impl std::fmt::Display for BodyTimeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the request body did not arrive within {} ms", self.0)
    }
}

impl std::error::Error for BodyTimeout {}

/// A request body that fails with [`BodyTimeout`] past its deadline. The
/// timer is only made when the body is not all there at once.
struct Timed {
    inner: Incoming,
    deadline: Instant,
    limit_ms: u64,
    sleep: Option<Pin<Box<Sleep>>>,
    failed: bool,
}

impl Timed {
    fn new(inner: Incoming, deadline: Instant, limit_ms: u64) -> Timed {
        Timed {
            inner,
            deadline,
            limit_ms,
            sleep: None,
            failed: false,
        }
    }
}

impl http_body::Body for Timed {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if this.failed {
            return Poll::Ready(None);
        }
        if let Poll::Ready(r) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(r.map(|f| f.map_err(Into::into)));
        }
        let deadline = this.deadline;
        let sleep = this
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if sleep.as_mut().poll(cx).is_ready() {
            this.failed = true;
            metrics::counter!("llmux_body_timeouts_total").increment(1);
            return Poll::Ready(Some(Err(Box::new(BodyTimeout(this.limit_ms)))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.failed || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    /// Accepted connections have Nagle's algorithm off.
    #[tokio::test]
    async fn accepted_sockets_have_nodelay() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let client = tokio::spawn(tokio::net::TcpStream::connect(addr));
        let (io, _) = l.accept().await.unwrap();
        super::tune(&io);
        assert!(
            io.nodelay().unwrap(),
            "TCP_NODELAY is off on an accepted socket"
        );
        drop(client.await);
    }

    /// The HTTP version from the first bytes a client sent.
    #[test]
    fn the_first_bytes_choose_the_http_version() {
        use super::{version_of, Http, H2_PREFACE};
        assert_eq!(version_of(b""), None);
        assert_eq!(version_of(H2_PREFACE), Some(Http::H2));
        assert_eq!(version_of(&H2_PREFACE[..10]), Some(Http::Detect));
        assert_eq!(version_of(b"P"), Some(Http::Detect));
        assert_eq!(version_of(b"POST /v1/chat"), Some(Http::H1));
        assert_eq!(version_of(b"GET / HTTP/1.1\r\n"), Some(Http::H1));
        assert_eq!(version_of(b"\x16\x03\x01"), Some(Http::H1));
    }

    #[test]
    fn errors_take_the_envelope_of_their_route() {
        use llmux::Protocol;
        assert_eq!(super::caller_protocol("/v1/messages"), Protocol::Anthropic);
        assert_eq!(
            super::caller_protocol("/api/v1/responses"),
            Protocol::Responses
        );
        assert_eq!(
            super::caller_protocol("/v1/chat/completions"),
            Protocol::OpenAi
        );
        assert_eq!(
            super::caller_protocol("/v1beta/models/google/g-1:streamGenerateContent"),
            Protocol::Gemini
        );
        assert_eq!(
            super::caller_protocol("/v1beta/models/g:generateContent"),
            Protocol::Gemini
        );
        assert_eq!(super::caller_protocol("/nowhere"), Protocol::OpenAi);
        assert!(super::exempt("/metrics") && !super::exempt("/v1/models"));
    }
}
