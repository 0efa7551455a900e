//! The engine's HTTP client: hyper-util's pooled client over rustls.
//!
//! reqwest wraps the same client; calling it directly drops what llmux
//! does not use on every request (parsing the URL into a `Url` and then
//! again into a `Uri`, the redirect layer that parses it a third time, the
//! per-request timeout wrappers; llmux keeps its own deadlines): about
//! 10 us of CPU per request (docs/benchmarks.md). What reqwest did that
//! llmux needs is here: the connect timeout over TCP, proxy and TLS, the
//! `CONNECT` proxy, and sending again what an HTTP/2 server refused
//! unprocessed.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::{self, connect::proxy::Tunnel, connect::HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::pki_types::CertificateDer;
use tower_service::Service;

use crate::config::HttpVersion;

// Requests and responses are written out (`http::Request<Full<Bytes>>`,
// `http::Response<Incoming>`) rather than aliased: cbindgen, which reads
// the whole crate for the header, cannot follow a generic alias.

/// A failure to get a response.
pub(crate) type Error = legacy::Error;

type Tls = HttpsConnector<HttpConnector>;
type Direct = Timed<Tls>;
type Proxied = Timed<HttpsConnector<ViaProxy>>;

/// One pool of connections, for one connect timeout and HTTP version.
pub struct Client {
    pool: Pool,
    /// HTTP/2 with prior knowledge, `http://` URLs included.
    h2_only: bool,
}

// Built once per pool and held behind an `Arc`: the variants' sizes do not
// matter.
#[allow(clippy::large_enum_variant)]
enum Pool {
    Direct(legacy::Client<Direct, Full<Bytes>>),
    /// Every connection tunnelled through an HTTP(S) proxy with CONNECT.
    Proxied(legacy::Client<Proxied, Full<Bytes>>),
}

impl Client {
    /// A client whose connections are made within `connect`, speak `http`
    /// and, with `proxy` (a URL such as `http://user:pass@host:3128`), go
    /// through that proxy. TLS servers must chain to the webpki roots or
    /// to one of `extra_ca`.
    pub fn new(
        connect: Duration,
        http: HttpVersion,
        proxy: Option<&str>,
        extra_ca: &[CertificateDer<'static>],
    ) -> Result<Client, String> {
        let builder = builder(http);
        let h2_only = http == HttpVersion::Http2;
        let tls_config = tls_config(extra_ca);
        let Some(proxy) = proxy else {
            let direct = Timed::new(connect, tls(http, tls_config));
            let pool = Pool::Direct(builder.build(direct));
            return Ok(Client { pool, h2_only });
        };
        // The catalog refused any other proxy URL at load.
        let Some(intercept) = crate::catalog::proxy_intercept(proxy) else {
            return Err("proxy: not an http:// or https:// URL".into());
        };
        // The hop to the proxy speaks HTTP/1.1 (CONNECT) whatever the target.
        let uri = intercept.uri().clone();
        let mut tunnel = Tunnel::new(uri.clone(), tls(HttpVersion::Http1, tls_config.clone()));
        if let Some(auth) = intercept.basic_auth() {
            tunnel = tunnel.with_auth(auth.clone());
        }
        let via = ViaProxy {
            tunnel,
            proxy: uri
                .authority()
                .map_or_else(String::new, |a| a.to_string())
                .into(),
        };
        let connector = Timed::new(connect, with_tls(http, tls_config, via));
        let pool = Pool::Proxied(builder.build(connector));
        Ok(Client { pool, h2_only })
    }

    /// Sends `req`; resolves once the response's head arrived. A request
    /// an HTTP/2 server refused unprocessed (REFUSED_STREAM, or a GOAWAY
    /// of a graceful shutdown) is sent again, at most twice, on a new
    /// stream or connection, as reqwest does by default.
    pub async fn send(
        &self,
        mut req: http::Request<Full<Bytes>>,
    ) -> Result<http::Response<hyper::body::Incoming>, Error> {
        // Over HTTP/1.1 (any plain `http://` URL unless HTTP/2 was asked
        // for) there is nothing to retry, and no copy is made.
        let h2 = self.h2_only || req.uri().scheme_str() == Some("https");
        let mut retries = if h2 { 2 } else { 0 };
        loop {
            let again = (retries > 0).then(|| copy(&req));
            let sent = match &self.pool {
                Pool::Direct(c) => c.request(req).await,
                Pool::Proxied(c) => c.request(req).await,
            };
            match (sent, again) {
                (Err(e), Some(next)) if refused_unprocessed(&e) => {
                    req = next;
                    retries -= 1;
                }
                (sent, _) => return sent,
            }
        }
    }
}

/// A copy of `req` to send again (the body is shared, not copied).
fn copy(req: &http::Request<Full<Bytes>>) -> http::Request<Full<Bytes>> {
    let mut again = http::Request::new(req.body().clone());
    *again.method_mut() = req.method().clone();
    *again.uri_mut() = req.uri().clone();
    *again.headers_mut() = req.headers().clone();
    again
}

/// An HTTP/2 server's refusal of a request it did not process: safe to
/// send again (RFC 9113, 8.7).
pub(crate) fn refused_unprocessed(e: &Error) -> bool {
    let mut src = std::error::Error::source(e);
    while let Some(c) = src {
        if let Some(h2) = c.downcast_ref::<h2::Error>() {
            let graceful = h2.is_go_away() && h2.reason() == Some(h2::Reason::NO_ERROR);
            let refused = h2.is_reset() && h2.reason() == Some(h2::Reason::REFUSED_STREAM);
            return h2.is_remote() && (graceful || refused);
        }
        src = c.source();
    }
    false
}

/// The pool's settings: idle connections kept 90 s, HTTP/2 connections
/// checked by PING (a dead one is found by that rather than by the
/// first-token timeout of every stream on it).
fn builder(http: HttpVersion) -> legacy::Builder {
    let mut b = legacy::Client::builder(TokioExecutor::new());
    b.timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .http2_keep_alive_interval(Duration::from_secs(30))
        .http2_keep_alive_timeout(Duration::from_secs(10))
        .http2_only(http == HttpVersion::Http2);
    b
}

/// TCP (no Nagle, keep-alive probes after 15 s), then TLS for `https://`
/// URLs.
fn tls(http: HttpVersion, config: rustls::ClientConfig) -> Tls {
    let mut tcp = HttpConnector::new();
    tcp.enforce_http(false);
    tcp.set_nodelay(true);
    tcp.set_keepalive(Some(Duration::from_secs(15)));
    with_tls(http, config, tcp)
}

/// TLS with `config` over `conn`, for `https://` URLs, offering by ALPN
/// the versions `http` allows.
fn with_tls<C>(http: HttpVersion, config: rustls::ClientConfig, conn: C) -> HttpsConnector<C> {
    let b = HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_or_http();
    match http {
        HttpVersion::Http1 => b.enable_http1().wrap_connector(conn),
        HttpVersion::Http2 => b.enable_http2().wrap_connector(conn),
        HttpVersion::Auto => b.enable_http1().enable_http2().wrap_connector(conn),
    }
}

/// rustls with the `ring` provider, trusting the webpki roots and
/// `extra_ca` (checked as trust anchors when the catalog loaded them).
fn tls_config(extra_ca: &[CertificateDer<'static>]) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    roots.add_parsable_certificates(extra_ca.iter().cloned());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports TLS 1.2 and 1.3")
        .with_root_certificates(roots)
        .with_no_client_auth()
}

/// The tunnel to the proxy, whose failures name the proxy.
#[derive(Clone)]
pub struct ViaProxy {
    tunnel: Tunnel<Tls>,
    /// `host:port` (no credentials).
    proxy: Arc<str>,
}

/// The proxy hop failed: the proxy refused the connection or the tunnel.
#[derive(Debug)]
pub struct ProxyFailed {
    /// The proxy's `host:port`.
    pub proxy: Arc<str>,
    /// What went wrong, e.g. `proxy authorization required`.
    pub what: String,
}

impl ProxyFailed {
    fn new(proxy: &Arc<str>, e: &(dyn std::error::Error + 'static)) -> Self {
        // The tunnel's own words, without its "tunnel error: " prefix.
        let mut what = e
            .to_string()
            .trim_start_matches("tunnel error: ")
            .to_owned();
        let mut src = e.source();
        while let Some(c) = src {
            what.push_str(": ");
            what.push_str(&c.to_string());
            src = c.source();
        }
        ProxyFailed {
            proxy: proxy.clone(),
            what,
        }
    }
}

impl std::fmt::Display for ProxyFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "proxy {}: {}", self.proxy, self.what)
    }
}

impl std::error::Error for ProxyFailed {}

type Tunnelled = <Tunnel<Tls> as Service<http::Uri>>::Response;

impl Service<http::Uri> for ViaProxy {
    type Response = Tunnelled;
    type Error = ProxyFailed;
    type Future = Pin<Box<dyn Future<Output = Result<Tunnelled, ProxyFailed>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ProxyFailed>> {
        self.tunnel
            .poll_ready(cx)
            .map_err(|e| ProxyFailed::new(&self.proxy, &e))
    }

    fn call(&mut self, dst: http::Uri) -> Self::Future {
        let connecting = self.tunnel.call(dst);
        let proxy = self.proxy.clone();
        Box::pin(async move { connecting.await.map_err(|e| ProxyFailed::new(&proxy, &e)) })
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A connector whose whole connect (TCP, the proxy's tunnel, TLS) must
/// finish within `limit`; past it, the error is an I/O `TimedOut`.
#[derive(Clone)]
pub struct Timed<C> {
    inner: C,
    limit: Duration,
}

impl<C> Timed<C> {
    fn new(limit: Duration, inner: C) -> Self {
        Timed { inner, limit }
    }
}

impl<C> Service<http::Uri> for Timed<C>
where
    C: Service<http::Uri>,
    C::Error: Into<BoxError>,
    C::Future: Send + 'static,
{
    type Response = C::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<C::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, dst: http::Uri) -> Self::Future {
        let connecting = self.inner.call(dst);
        let limit = self.limit;
        Box::pin(async move {
            match tokio::time::timeout(limit, connecting).await {
                Ok(r) => r.map_err(Into::into),
                Err(_) => Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "connect timed out",
                )
                .into()),
            }
        })
    }
}
