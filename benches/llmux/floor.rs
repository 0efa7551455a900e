//! A bare hyper reverse proxy: the floor of any gateway built on hyper.
//!
//! The TCP relay (edge.rs) is the floor of any extra hop; this one is the
//! floor of any extra *HTTP* hop built from the crates the gateway uses:
//! hyper's HTTP/1.1 server in front, hyper-util's pooled client behind,
//! bodies streamed through untouched, one current-thread runtime (no
//! hop between threads), `TCP_NODELAY` on both sides. No routing, no JSON,
//! no logs, no metrics. What llmux adds over it is llmux's; what it adds
//! over the relay is hyper's.
//!
//! It runs in a child process (this bench binary started again with
//! [`ENV`] set), so its memory per open stream is measured as the
//! gateway's is, and it shares the bench thread's CPU as the gateway does.

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::io::BufRead;

/// Set to the upstream's base URL (`http://127.0.0.1:PORT`): the bench
/// binary serves as the floor proxy instead of benchmarking.
pub const ENV: &str = "LLMUX_BENCH_HYPER_FLOOR";

/// Set (to anything) with [`ENV`]: the proxy's client speaks HTTP/2 with
/// prior knowledge (h2c) to the upstream, all requests on one connection.
pub const ENV_H2: &str = "LLMUX_BENCH_HYPER_FLOOR_H2";

type Body = http_body_util::combinators::BoxBody<bytes::Bytes, hyper::Error>;

/// Serves the proxy until killed; prints `listening on http://ADDR`.
pub fn serve(upstream: &str) {
    let authority = upstream.trim_start_matches("http://").to_owned();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("floor runtime");
    rt.block_on(async move {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("floor bind");
        println!(
            "listening on http://{}",
            l.local_addr().expect("floor addr")
        );
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        let client: Client<HttpConnector, Incoming> = Client::builder(TokioExecutor::new())
            .http2_only(std::env::var_os(ENV_H2).is_some())
            .build(http);
        loop {
            let Ok((sock, _)) = l.accept().await else {
                continue;
            };
            let _ = sock.set_nodelay(true);
            let (client, authority) = (client.clone(), authority.clone());
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    forward(client.clone(), authority.clone(), req)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(sock), svc)
                    .await;
            });
        }
    });
}

/// One request, sent on to the upstream with its path, headers and body.
async fn forward(
    client: Client<HttpConnector, Incoming>,
    authority: String,
    req: hyper::Request<Incoming>,
) -> Result<hyper::Response<Body>, hyper::Error> {
    let (mut parts, body) = req.into_parts();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    parts.uri = format!("http://{authority}{path}")
        .parse()
        .expect("upstream uri");
    match client
        .request(hyper::Request::from_parts(parts, body))
        .await
    {
        Ok(resp) => Ok(resp.map(BodyExt::boxed)),
        Err(e) => {
            let body = http_body_util::Full::new(bytes::Bytes::from(e.to_string()))
                .map_err(|never| match never {})
                .boxed();
            let mut resp = hyper::Response::new(body);
            *resp.status_mut() = hyper::StatusCode::BAD_GATEWAY;
            Ok(resp)
        }
    }
}

/// The floor proxy in a child process, killed on drop.
pub struct Floor {
    child: std::process::Child,
    pub base: String,
    _stdout: std::io::BufReader<std::process::ChildStdout>,
}

impl Floor {
    /// Starts the proxy in front of `upstream` (over HTTP/2 with `h2`);
    /// inherits the calling thread's CPU.
    pub fn start(upstream: &str, h2: bool) -> Floor {
        let exe = std::env::current_exe().expect("bench binary");
        let mut cmd = std::process::Command::new(exe);
        if h2 {
            cmd.env(ENV_H2, "1");
        }
        let mut child = cmd
            .env(ENV, upstream)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("spawn the floor proxy");
        let mut stdout = std::io::BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        stdout.read_line(&mut line).expect("floor line");
        let base = line
            .trim()
            .strip_prefix("listening on ")
            .expect("floor listening line")
            .to_owned();
        Floor {
            child,
            base,
            _stdout: stdout,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Floor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
