//! The gateway's edge (issue 25) as a real process in front of the mock
//! fleet: slowloris clients, the connection and in-flight caps, the header,
//! body and idle timeouts, header limits, TLS with HTTP/2 by ALPN and its
//! SIGHUP reload, upstreams behind a private CA (`ca_file`), and Cursor's
//! request shapes over TLS.

use llmux_fleet::{Behavior, MockServer};
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

mod common;

use common::{catalog, chat, client, provider, rt, serve, temp_dir, Gateway, KEY, KEY_ENV};

/// A catalog with model `demo/chat` on one OpenAI-protocol mock.
fn config(s: &MockServer, gateway: Value) -> Value {
    let endpoint = json!({"provider": s.name(), "upstream_model": "up", "price": {"prompt": 1.0, "completion": 2.0}});
    catalog(vec![provider("openai", s)], vec![endpoint], gateway)
}

fn start(cfg: &Value) -> Gateway {
    serve(cfg).start()
}

/// The value of a counter or gauge line in the gateway's /metrics.
async fn metric(gw: &Gateway, line_start: &str) -> f64 {
    gw.metrics()
        .await
        .lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// Sends `request` on a new connection and reads until the gateway closes
/// it or `within` passes.
async fn raw(addr: &str, request: &[u8], within: Duration) -> String {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(request).await.expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(within, s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// `n` sequential non-stream requests; their latencies.
async fn timed_requests(gw: &Gateway, n: usize) -> Vec<Duration> {
    let c = client();
    let mut out = Vec::new();
    for _ in 0..n {
        let t = Instant::now();
        let r = c
            .post(format!("{}/v1/chat/completions", gw.url))
            .json(&chat(false))
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), 200);
        r.bytes().await.expect("body");
        out.push(t.elapsed());
    }
    out
}

/// One slowloris connection: a request line, then a header byte every
/// `every` until the gateway closes the connection; how long that took.
async fn slowloris(addr: String, every: Duration) -> Option<Duration> {
    let t = Instant::now();
    let mut s = TcpStream::connect(&addr).await.ok()?;
    s.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\nx-slow: ")
        .await
        .ok()?;
    let mut buf = [0u8; 256];
    loop {
        tokio::select! {
            r = s.read(&mut buf) => match r {
                Ok(0) | Err(_) => return Some(t.elapsed()),
                Ok(_) => {}
            },
            _ = tokio::time::sleep(every) => {
                if s.write_all(b"a").await.is_err() {
                    return Some(t.elapsed());
                }
            }
        }
        if t.elapsed() > Duration::from_secs(30) {
            return None;
        }
    }
}

#[test]
fn slowloris_connections_are_cut_and_others_still_served() {
    let mock = MockServer::start("m", Behavior::default()).expect("mock");
    let gw = start(&config(
        &mock,
        json!({"limits": {"header_read_timeout_ms": 2000}}),
    ));
    rt().block_on(async {
        timed_requests(&gw, 5).await; // warm up
        let before = median(timed_requests(&gw, 20).await);
        let n = 1000;
        let slow: Vec<_> = (0..n)
            .map(|_| tokio::spawn(slowloris(gw.addr.clone(), Duration::from_millis(500))))
            .collect();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let during = timed_requests(&gw, 20).await;
        let worst = *during.iter().max().expect("latencies");
        let during = median(during);
        println!("normal client p50: {before:?} alone, {during:?} beside {n} slowloris connections (worst {worst:?})");
        assert!(
            during < before * 3 + Duration::from_millis(25),
            "p50 went from {before:?} to {during:?} beside the slowloris connections"
        );
        let mut cut = Vec::new();
        for t in slow {
            cut.push(t.await.expect("task").expect("the gateway never closed a slowloris connection"));
        }
        let last = *cut.iter().max().expect("cut");
        println!("slowloris connections closed after {:?} (p50) .. {last:?} (last)", median(cut.clone()));
        assert!(last < Duration::from_secs(10), "the last slowloris connection lasted {last:?}");
        assert!(
            cut.iter().all(|d| *d >= Duration::from_millis(1500)),
            "a slowloris connection was closed before its header timeout"
        );
        let timeouts = metric(&gw, "llmux_connections_closed_total{reason=\"header_timeout\"}").await;
        assert!(timeouts >= n as f64, "{timeouts} header timeouts counted");
    });
}

/// Opens a connection and has one request served on it, keeping it open.
async fn held_connection(addr: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .expect("write");
    let mut buf = [0u8; 1024];
    let n = s.read(&mut buf).await.expect("read");
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
    s
}

#[test]
fn past_the_connection_cap_new_connections_get_503_and_memory_stays_bounded() {
    let mock = MockServer::start("m", Behavior::default()).expect("mock");
    let cap = 16;
    let gw = start(&config(
        &mock,
        json!({"limits": {"max_connections": cap, "header_read_timeout_ms": 30000, "idle_timeout_ms": 30000}}),
    ));
    rt().block_on(async {
        let mut held = Vec::new();
        for _ in 0..cap {
            held.push(held_connection(&gw.addr).await);
        }
        let rss_before = gw.rss_kib();
        let over = 2000;
        let request = b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}";
        for batch in 0..over / 100 {
            let tasks: Vec<_> = (0..100)
                .map(|_| {
                    let addr = gw.addr.clone();
                    tokio::spawn(async move { raw(&addr, request, Duration::from_secs(5)).await })
                })
                .collect();
            for t in tasks {
                let answer = t.await.expect("task");
                assert!(answer.starts_with("HTTP/1.1 503"), "batch {batch}: {answer:?}");
                assert!(answer.contains("retry-after: 1\r\n"), "{answer}");
                assert!(answer.contains("x-should-retry: true\r\n"), "{answer}");
                assert!(answer.contains("max_connections"), "{answer}");
            }
        }
        let grown = gw.rss_kib().saturating_sub(rss_before);
        println!("{over} connections past a cap of {cap}: gateway memory grew by {grown} KiB");
        assert!(grown < 16 * 1024, "the gateway grew by {grown} KiB");
        // The held connections are still served.
        let mut s = held.pop().expect("held");
        s.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n").await.expect("write");
        let mut buf = [0u8; 512];
        let n = s.read(&mut buf).await.expect("read");
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        drop(held);
        drop(s);
        tokio::time::sleep(Duration::from_millis(200)).await;
        let refused = metric(&gw, "llmux_connections_refused_total{reason=\"connection_limit\"}").await;
        assert_eq!(refused, over as f64);
    });
}

#[test]
fn past_the_in_flight_cap_requests_get_503_in_their_envelope() {
    let slow = MockServer::start(
        "slow",
        Behavior {
            chunks: 15,
            chunk_delay_ms: 100,
            ..Default::default()
        },
    )
    .expect("mock");
    let gw = start(&config(
        &slow,
        json!({"limits": {"max_in_flight": 2, "retry_after_s": 3}}),
    ));
    rt().block_on(async {
        let c = client();
        let mut streams = Vec::new();
        for _ in 0..2 {
            let mut r = c
                .post(format!("{}/v1/chat/completions", gw.url))
                .json(&chat(true))
                .send()
                .await
                .expect("send");
            r.chunk().await.expect("read").expect("first chunk");
            streams.push(r);
        }
        let anthropic = json!({"model": "demo/chat", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]});
        for (path, body) in [("/v1/chat/completions", chat(false)), ("/v1/messages", anthropic)] {
            let r = c.post(format!("{}{path}", gw.url)).json(&body).send().await.expect("send");
            assert_eq!(r.status(), 503, "{path}");
            let h = r.headers();
            assert_eq!(h["retry-after"], "3");
            assert_eq!(h["x-should-retry"], "true");
            assert_eq!(h["x-llmux-outcome"], "in_flight_limit");
            let v: Value = r.json().await.expect("json");
            if path == "/v1/messages" {
                assert_eq!(v["type"], "error", "{v}");
                assert!(v["error"]["message"].as_str().unwrap().contains("max_in_flight"), "{v}");
            } else {
                assert_eq!(v["error"]["code"], "in_flight_limit", "{v}");
            }
        }
        // Metrics are answered past the cap and show it.
        assert_eq!(metric(&gw, "llmux_requests_in_flight").await, 2.0);
        assert_eq!(metric(&gw, "llmux_rejected_total{reason=\"in_flight_limit\"}").await, 2.0);
        assert_eq!(metric(&gw, "llmux_limit{limit=\"max_in_flight\"}").await, 2.0);
        for mut s in streams {
            while s.chunk().await.expect("read").is_some() {}
        }
        let r = c.post(format!("{}/v1/chat/completions", gw.url)).json(&chat(false)).send().await.expect("send");
        assert_eq!(r.status(), 200, "served again once the streams ended");
    });
    gw.wait_log_text("\"outcome\":\"in_flight_limit\"");
}

#[test]
fn idle_keepalive_connections_are_closed_and_busy_ones_are_not() {
    let slow = MockServer::start(
        "slow",
        Behavior {
            chunks: 10,
            chunk_delay_ms: 100,
            ..Default::default()
        },
    )
    .expect("mock");
    let gw = start(&config(
        &slow,
        json!({"limits": {"idle_timeout_ms": 400, "header_read_timeout_ms": 20000}}),
    ));
    rt().block_on(async {
        let mut s = held_connection(&gw.addr).await;
        let t = Instant::now();
        let mut buf = [0u8; 64];
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .expect("the idle connection was not closed within 5 s")
            .expect("read");
        assert_eq!(n, 0);
        let after = t.elapsed();
        println!("idle keep-alive connection closed after {after:?} (idle_timeout_ms 400)");
        assert!(
            after >= Duration::from_millis(300),
            "closed after {after:?}"
        );
        // A 1 s stream on a connection idle-limited to 400 ms completes.
        let text = client()
            .post(format!("{}/v1/chat/completions", gw.url))
            .json(&chat(true))
            .send()
            .await
            .expect("send")
            .text()
            .await
            .expect("stream");
        assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
        assert!(metric(&gw, "llmux_connections_closed_total{reason=\"idle\"}").await >= 1.0);
    });
}

#[test]
fn slow_bodies_get_408_and_header_limits_431() {
    let mock = MockServer::start("m", Behavior::default()).expect("mock");
    let gw = start(&config(
        &mock,
        json!({"limits": {"body_read_timeout_ms": 500, "max_headers": 12, "max_header_bytes": 8192}}),
    ));
    rt().block_on(async {
        let t = Instant::now();
        let answer = raw(
            &gw.addr,
            b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"model\"",
            Duration::from_secs(5),
        )
        .await;
        let took = t.elapsed();
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains("\"code\":\"body_timeout\""), "{answer}");
        assert!(answer.contains("within 500 ms"), "{answer}");
        assert!(took >= Duration::from_millis(400) && took < Duration::from_secs(4), "{took:?}");
        let many: String = (0..20).map(|i| format!("x-h{i}: v\r\n")).collect();
        let answer = raw(
            &gw.addr,
            format!("GET /health HTTP/1.1\r\nhost: x\r\n{many}\r\n").as_bytes(),
            Duration::from_secs(5),
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 431"), "20 headers: {answer}");
        let big = "a".repeat(10_000);
        let answer = raw(
            &gw.addr,
            format!("GET /health HTTP/1.1\r\nhost: x\r\nx-big: {big}\r\n\r\n").as_bytes(),
            Duration::from_secs(5),
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 431"), "a 10 kB header: {answer}");
        assert_eq!(metric(&gw, "llmux_rejected_total{reason=\"body_timeout\"}").await, 1.0);
        assert_eq!(metric(&gw, "llmux_body_timeouts_total").await, 1.0);
    });
    gw.wait_log_text("\"outcome\":\"body_timeout\"");
}

/// The first frame the gateway sends on an HTTP/2 connection after the
/// client's preface (sent in `parts`, `gap` apart) and an empty SETTINGS
/// frame: its type byte (4, SETTINGS, from a server that speaks HTTP/2).
async fn h2_first_frame_type(addr: &str, parts: &[&[u8]], gap: Duration) -> u8 {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    for part in parts {
        s.write_all(part).await.expect("write");
        tokio::time::sleep(gap).await;
    }
    s.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0])
        .await
        .expect("settings");
    let mut head = [0u8; 9];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut head))
        .await
        .expect("no frame within 5 s")
        .expect("read");
    head[3]
}

/// The gateway tells HTTP/1.1 from HTTP/2 by peeking at the first bytes
/// (so hyper's HTTP/1.1 read buffer stays at 8 KiB): prior-knowledge h2c
/// with the openai-style client, a preface split across writes, and a
/// connection that sends nothing is closed at the header timeout.
#[test]
fn h2c_prior_knowledge_a_split_preface_and_silent_connections() {
    let mock = MockServer::start("m", Behavior::default()).expect("mock");
    let gw = start(&config(
        &mock,
        json!({"limits": {"header_read_timeout_ms": 1000}}),
    ));
    rt().block_on(async {
        let h2 = reqwest::Client::builder()
            .no_proxy()
            .http2_prior_knowledge()
            .build()
            .expect("client");
        for stream in [false, true] {
            let r = h2
                .post(format!("{}/v1/chat/completions", gw.url))
                .json(&chat(stream))
                .send()
                .await
                .expect("send");
            assert_eq!(r.version(), reqwest::Version::HTTP_2);
            assert_eq!(r.status(), 200);
            let text = r.text().await.expect("body");
            assert!(!stream || text.ends_with("data: [DONE]\n\n"), "{text}");
        }
        let preface: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
        let whole = h2_first_frame_type(&gw.addr, &[preface], Duration::ZERO).await;
        assert_eq!(whole, 4, "the answer to a whole preface is not SETTINGS");
        let (a, b) = preface.split_at(7);
        let split = h2_first_frame_type(&gw.addr, &[a, b], Duration::from_millis(100)).await;
        assert_eq!(split, 4, "the answer to a split preface is not SETTINGS");
        let t = Instant::now();
        let silent = raw(&gw.addr, b"", Duration::from_secs(5)).await;
        let took = t.elapsed();
        assert!(silent.is_empty(), "{silent}");
        println!("a connection that sent nothing was closed after {took:?} (header_read_timeout_ms 1000)");
        assert!(took >= Duration::from_millis(900) && took < Duration::from_secs(4), "{took:?}");
        assert!(metric(&gw, "llmux_connections_closed_total{reason=\"header_timeout\"}").await >= 1.0);
    });
}

// ---------------------------------------------------------------------------
// TLS

/// Runs `openssl` with `args` in `dir`.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl (scripts/setup installs it)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A test CA (`ca.pem`) and a certificate for 127.0.0.1 and localhost
/// signed by it (`{name}.pem`, `{name}.key`), made now.
fn make_cert(dir: &Path, name: &str) {
    if !dir.join("ca.pem").exists() {
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                "/CN=llmux test CA",
            ],
        );
    }
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .expect("ext");
    let key = format!("{name}.key");
    let csr = format!("{name}.csr");
    let pem = format!("{name}.pem");
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &csr,
            "-subj",
            &format!("/CN={name}"),
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &pem,
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ],
    );
}

/// The DER bytes of a PEM certificate file.
fn der(path: &Path) -> Vec<u8> {
    let out = Command::new("openssl")
        .args(["x509", "-outform", "der", "-in"])
        .arg(path)
        .output()
        .expect("openssl");
    out.stdout
}

fn tls_client(dir: &Path, http1: bool) -> reqwest::Client {
    let ca = std::fs::read(dir.join("ca.pem")).expect("ca");
    let b = reqwest::Client::builder()
        .no_proxy()
        .use_rustls_tls()
        .tls_info(true)
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).expect("ca pem"));
    let b = if http1 { b.http1_only() } else { b };
    b.build().expect("client")
}

/// A gateway serving TLS with a fresh `server.pem`, and `more` in its
/// `gateway` section.
fn tls_gateway(mock: &MockServer, more: Value) -> Gateway {
    let dir = temp_dir();
    make_cert(&dir.0, "server");
    let mut g = more;
    g["tls"] = json!({"cert": dir.0.join("server.pem"), "key": dir.0.join("server.key")});
    serve(&config(mock, g)).in_dir(dir).start()
}

#[test]
fn tls_serves_h2_by_alpn_and_http1_and_reloads_on_sighup() {
    let mock = MockServer::start("m", Behavior::default()).expect("mock");
    let gw = tls_gateway(&mock, json!({}));
    assert!(gw.url.starts_with("https://127.0.0.1:"), "{}", gw.url);
    let dir = gw.dir.0.clone();
    rt().block_on(async {
        for (http1, version) in [
            (false, reqwest::Version::HTTP_2),
            (true, reqwest::Version::HTTP_11),
        ] {
            let c = tls_client(&dir, http1);
            let r = c
                .post(format!("{}/v1/chat/completions", gw.url))
                .json(&chat(false))
                .send()
                .await
                .expect("send");
            assert_eq!(r.version(), version);
            assert_eq!(r.status(), 200);
            let v: Value = r.json().await.expect("json");
            assert_eq!(v["choices"][0]["message"]["content"], "Hello from m.");
            let r = c
                .post(format!("{}/v1/chat/completions", gw.url))
                .json(&chat(true))
                .send()
                .await
                .expect("send");
            assert_eq!(r.version(), version);
            let text = r.text().await.expect("stream");
            assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
        }
        let peer = |r: &reqwest::Response| {
            r.extensions()
                .get::<reqwest::tls::TlsInfo>()
                .and_then(|i| i.peer_certificate())
                .map(<[u8]>::to_vec)
                .expect("peer certificate")
        };
        let r = tls_client(&dir, false)
            .get(format!("{}/health", gw.url))
            .send()
            .await
            .expect("send");
        assert_eq!(peer(&r), der(&dir.join("server.pem")));
        // A new certificate in the same files, then SIGHUP.
        let first = der(&dir.join("server.pem"));
        make_cert(&dir, "next");
        std::fs::copy(dir.join("next.pem"), dir.join("server.pem")).expect("copy");
        std::fs::copy(dir.join("next.key"), dir.join("server.key")).expect("copy");
        gw.signal("HUP");
        gw.wait_log_text("reloaded the TLS certificate");
        let r = tls_client(&dir, false)
            .get(format!("{}/health", gw.url))
            .send()
            .await
            .expect("send");
        let now = peer(&r);
        assert_eq!(now, der(&dir.join("next.pem")));
        assert_ne!(now, first);
        // A broken file: the reload fails, says why, the certificate stays.
        std::fs::write(dir.join("server.pem"), "not a certificate").expect("write");
        gw.signal("HUP");
        gw.wait_log_text("TLS reload failed, keeping the certificate in use");
        let r = tls_client(&dir, false)
            .get(format!("{}/health", gw.url))
            .send()
            .await
            .expect("send");
        assert_eq!(peer(&r), now);
    });
    assert!(
        gw.log_text().contains("gateway.tls.cert"),
        "{}",
        gw.log_text()
    );
}

#[test]
fn tls_files_that_do_not_load_stop_the_start_with_the_reason() {
    let mock = MockServer::start("m", Behavior::default()).expect("mock");
    let dir = temp_dir();
    let tls = json!({"cert": dir.0.join("missing.pem"), "key": dir.0.join("missing.key")});
    let err = serve(&config(&mock, json!({"tls": tls})))
        .in_dir(dir)
        .try_start()
        .err()
        .expect("the gateway refused to start");
    assert!(
        err.contains("gateway.tls.cert") && err.contains("missing.pem"),
        "{err}"
    );
}

/// A gateway whose one provider is `upstream`, over `http`, trusting
/// `ca_file` when given.
fn in_front_of(upstream: &Gateway, http: &str, ca_file: Option<&Path>) -> Result<Gateway, String> {
    let p = json!({"slug": "inner", "protocol": "openai", "base_url": format!("{}/v1", upstream.url),
                   "api_key": "upstream-fake-key", "http": http});
    let e = json!({"provider": "inner", "upstream_model": "demo/chat"});
    let mut cfg = catalog(vec![p], vec![e], json!({}));
    if let Some(f) = ca_file {
        cfg["ca_file"] = json!(f);
    }
    serve(&cfg).try_start()
}

/// The reply to a non-stream and a stream request through `gw`.
async fn both_shapes(gw: &Gateway) -> (u16, Value, String) {
    let url = format!("{}/v1/chat/completions", gw.url);
    let send = |stream| client().post(&url).json(&chat(stream)).send();
    let r = send(false).await.expect("send");
    let status = r.status().as_u16();
    let body: Value = r.json().await.expect("json");
    let text = send(true).await.expect("send").text().await;
    (status, body, text.expect("stream"))
}

#[test]
fn upstreams_behind_a_private_ca_are_reached_with_ca_file() {
    let mock = MockServer::start("m", Behavior::default()).expect("mock");
    // The upstream: a gateway serving HTTPS with a certificate from a
    // test CA (HTTP/2 by ALPN, or HTTP/1.1), in front of the mock.
    let upstream = tls_gateway(&mock, json!({}));
    let ca = upstream.dir.0.join("ca.pem");
    rt().block_on(async {
        for http in ["http1", "http2", "auto"] {
            let gw = in_front_of(&upstream, http, Some(&ca)).expect("start");
            let (status, body, stream) = both_shapes(&gw).await;
            assert_eq!(status, 200, "{http}: {body}");
            assert_eq!(body["choices"][0]["message"]["content"], "Hello from m.");
            assert!(stream.ends_with("data: [DONE]\n\n"), "{http}: {stream}");
            assert!(stream.contains("\"content\":\"llo\""), "{http}: {stream}");
        }
        // Without the CA the handshake fails, and the error says so.
        let gw = in_front_of(&upstream, "auto", None).expect("start");
        let (status, body, _) = both_shapes(&gw).await;
        let msg = body["error"]["message"].as_str().unwrap_or_default();
        assert_eq!(status, 502, "{body}");
        assert!(
            msg.contains("provider \"inner\"")
                && msg.contains("failed the TLS handshake")
                && msg.contains("UnknownIssuer"),
            "{msg}"
        );
    });
    // A file that holds no certificate stops the start, named.
    let bad = upstream.dir.0.join("not-a-ca.pem");
    std::fs::write(&bad, "not a certificate").expect("write");
    let err = in_front_of(&upstream, "auto", Some(&bad))
        .err()
        .expect("the gateway refused to start");
    assert!(
        err.contains("ca_file") && err.contains("holds no certificate"),
        "{err}"
    );
}

// ---------------------------------------------------------------------------
// Cursor

/// What Cursor posts to `/chat/completions` in agent mode: a Responses
/// body (docs/gateway.md, "Cursor").
fn cursor_agent_body(stream: bool) -> Value {
    json!({
        "model": "demo/chat", "stream": stream, "store": false, "previous_response_id": null,
        "include": ["reasoning.encrypted_content"], "truncation": "disabled",
        "prompt_cache_retention": "24h", "reasoning": {"effort": "medium", "summary": "auto"},
        "text": {"verbosity": "low"}, "stream_options": {"include_usage": true},
        "instructions": "You are a coding agent.",
        "input": [
            {"role": "user", "content": [{"type": "input_text", "text": "rename foo"}]},
            {"type": "function_call", "call_id": "call_1", "name": "read_file", "arguments": "{\"path\":\"a.rs\"}"},
            {"type": "function_call_output", "call_id": "call_1", "output": "fn foo() {}"},
            {"type": "custom_tool_call", "call_id": "call_2", "name": "ApplyPatch", "input": "*** Begin Patch\n*** End Patch"},
            {"type": "custom_tool_call_output", "call_id": "call_2", "output": "applied"},
        ],
        "tools": [
            {"type": "function", "name": "read_file", "description": "Read a file.", "strict": false,
             "parameters": {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}},
            {"type": "custom", "name": "ApplyPatch", "description": "Edit files with a patch.",
             "format": {"type": "grammar", "syntax": "lark", "definition": "start: /.+/"}},
        ],
    })
}

#[test]
fn cursor_request_shapes_over_tls_are_answered_as_chat_completions() {
    let mock = MockServer::start("m", Behavior::default()).expect("mock");
    let gw = tls_gateway(&mock, json!({"keys": [KEY_ENV]}));
    let dir = gw.dir.0.clone();
    rt().block_on(async {
        let c = tls_client(&dir, false);
        let post = |body: Value| {
            c.post(format!("{}/v1/chat/completions", gw.url))
                .bearer_auth(KEY)
                .json(&body)
                .send()
        };
        // Verification.
        let r = c.get(format!("{}/v1/models", gw.url)).bearer_auth(KEY).send().await.expect("models");
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.expect("json");
        assert_eq!(v["object"], "list");
        assert!(v["data"].as_array().unwrap().iter().any(|m| m["id"] == "demo/chat"), "{v}");
        // Agent mode, streamed: Chat Completions chunks, usage, [DONE].
        let r = post(cursor_agent_body(true)).await.expect("send");
        assert_eq!(r.status(), 200);
        assert_eq!(r.version(), reqwest::Version::HTTP_2);
        let text = r.text().await.expect("stream");
        assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
        let mut content = String::new();
        let mut usage = false;
        for line in text.lines().filter_map(|l| l.strip_prefix("data: ")).filter(|l| *l != "[DONE]") {
            let v: Value = serde_json::from_str(line).expect("chunk");
            assert_eq!(v["object"], "chat.completion.chunk", "{v}");
            content.push_str(v["choices"][0]["delta"]["content"].as_str().unwrap_or(""));
            usage |= v["usage"].is_object();
        }
        assert_eq!(content, "Hello from m.");
        assert!(usage, "no usage chunk: {text}");
        let sent = &mock.requests().last().expect("upstream request").body.clone();
        assert!(sent.get("input").is_none(), "{sent}");
        assert_eq!(sent["messages"][0]["role"], "system");
        assert_eq!(sent["tools"][0]["function"]["name"], "read_file");
        assert_eq!(sent["tools"][1]["function"]["name"], "ApplyPatch");
        assert_eq!(sent["messages"].as_array().unwrap().len(), 6, "{sent}");
        // Agent mode, whole.
        let v: Value = post(cursor_agent_body(false)).await.expect("send").json().await.expect("json");
        assert_eq!(v["object"], "chat.completion", "{v}");
        assert_eq!(v["choices"][0]["message"]["content"], "Hello from m.");
        // Ask mode: a Chat body whose tools mix nested and flat ones.
        let ask = json!({"model": "demo/chat", "stream": false, "messages": [{"role": "user", "content": "hi"}],
            "tools": [{"type": "function", "function": {"name": "a", "parameters": {"type": "object"}}},
                      {"type": "function", "name": "b", "parameters": {"type": "object"}}]});
        let r = post(ask).await.expect("send");
        assert_eq!(r.status(), 200);
        let sent = mock.requests().last().expect("upstream request").body.clone();
        assert_eq!(sent["tools"][1]["function"]["name"], "b", "{sent}");
        // State llmux cannot keep: a clear 400 in the Chat envelope.
        let mut stateful = cursor_agent_body(false);
        stateful["previous_response_id"] = json!("resp_123");
        let r = post(stateful).await.expect("send");
        assert_eq!(r.status(), 400);
        let v: Value = r.json().await.expect("json");
        let m = v["error"]["message"].as_str().unwrap();
        assert!(m.contains("previous_response_id") && m.contains("Responses-shaped"), "{m}");
    });
}

// ---------------------------------------------------------------------------
// scale

/// The hard file-descriptor limit, after raising this process's soft limit
/// to it (with `prlimit`, so the test has no unsafe code).
fn raise_nofile() -> u64 {
    let pid = std::process::id().to_string();
    let out = Command::new("prlimit")
        .args([
            "--pid",
            &pid,
            "--nofile",
            "--output",
            "HARD",
            "--noheadings",
        ])
        .output()
        .expect("prlimit (util-linux)");
    let hard: u64 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(1024);
    let ok = Command::new("prlimit")
        .args(["--pid", &pid, &format!("--nofile={hard}:{hard}")])
        .status()
        .expect("prlimit");
    assert!(ok.success(), "could not raise the file-descriptor limit");
    hard
}

/// One stream; counts itself in `opened` at its first chunk.
async fn one_stream(
    c: reqwest::Client,
    url: String,
    i: usize,
    opened: Arc<std::sync::atomic::AtomicUsize>,
) -> String {
    let mut body = chat(true);
    body["mock"] = json!({"text": format!("reply {i} end")});
    let mut r = c
        .post(format!("{url}/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .expect("send");
    if r.status() != 200 {
        panic!(
            "stream {i}: {}: {}",
            r.status(),
            r.text().await.unwrap_or_default()
        );
    }
    let mut text = r
        .chunk()
        .await
        .expect("read")
        .map(|b| b.to_vec())
        .unwrap_or_default();
    opened.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    while let Some(b) = r.chunk().await.expect("read") {
        text.extend_from_slice(&b);
    }
    String::from_utf8(text).expect("utf-8")
}

/// Run alone, as its own `scripts/test-all` step (it takes most of the
/// descriptor limit and about a minute on a debug build):
/// `cargo test -p llmux-gateway --test edge -- --ignored ten_thousand --nocapture`.
/// The release `gateway-memory` bench case measures the same memory.
#[test]
#[ignore = "needs the process's descriptors to itself: scripts/test-all runs it alone with --ignored"]
fn ten_thousand_concurrent_streams_complete_once_each() {
    // Each stream holds two descriptors in the gateway (caller and HTTP/1.1
    // upstream) and two here (client and mock server): the limit decides.
    let hard = raise_nofile();
    let n = 10_000.min((hard.saturating_sub(1000) / 2) as usize);
    println!("file-descriptor limit {hard}: {n} concurrent streams (10,000 wanted)");
    let mock = MockServer::start(
        "m",
        Behavior {
            chunks: 40,
            chunk_delay_ms: 500,
            ..Default::default()
        },
    )
    .expect("mock");
    let mut cfg = config(
        &mock,
        json!({"limits": {"max_connections": n + 100, "max_in_flight": n + 100}}),
    );
    // Thousands of connects at once overflow the mock's listen backlog on
    // a busy machine; the kernel's SYN retries then need more than 5 s.
    cfg["timeouts"] = json!({"connect_ms": 30000});
    let gw = serve(&cfg).nofile(hard).start();
    let idle_rss = gw.rss_kib();
    let started = Instant::now();
    let opened = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (texts, peak_rss) = rt().block_on(async {
        let c = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("client");
        let mut tasks = Vec::new();
        let mut peak = 0;
        // Opened in waves of 1,000, each once the last has its first chunk.
        for wave in (0..n).collect::<Vec<_>>().chunks(1000) {
            for &i in wave {
                tasks.push(tokio::spawn(one_stream(
                    c.clone(),
                    gw.url.clone(),
                    i,
                    opened.clone(),
                )));
            }
            let want = wave[wave.len() - 1] + 1;
            while opened.load(std::sync::atomic::Ordering::Relaxed) < want
                && started.elapsed() < Duration::from_secs(300)
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            peak = peak.max(gw.rss_kib());
        }
        let open_at_once = opened.load(std::sync::atomic::Ordering::Relaxed);
        println!(
            "{open_at_once} streams open at once after {:?}",
            started.elapsed()
        );
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.expect("stream task"));
        }
        (out, peak)
    });
    let per_stream = (peak_rss.saturating_sub(idle_rss)) as f64 / n as f64;
    println!(
        "{n} streams done in {:?}; gateway memory {idle_rss} KiB idle, {peak_rss} KiB at the peak: {per_stream:.1} KiB per open stream (debug build)",
        started.elapsed()
    );
    for (i, t) in texts.iter().enumerate() {
        assert_eq!(t.matches("data: [DONE]").count(), 1, "stream {i}: {t}");
        let content: String = t
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .filter(|l| *l != "[DONE]")
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter_map(|v| {
                v["choices"][0]["delta"]["content"]
                    .as_str()
                    .map(str::to_owned)
            })
            .collect();
        assert_eq!(content, format!("reply {i} end"), "stream {i}");
    }
    assert_eq!(
        mock.request_count(),
        n,
        "each request went upstream exactly once"
    );
}
