//! The gateway over a real socket (issue 25): its accept loop
//! (`serve::run`, as `llmux serve` runs it) on 127.0.0.1:0 gets malformed
//! HTTP: broken request lines, bad chunked bodies, huge or repeated
//! headers, HTTP/2 preface garbage, writes cut short, connections reset.
//! After each input the gateway must still answer a normal request, the
//! open-connection and in-flight gauges of /metrics return to 0 and no
//! request is left in the engine or at an upstream. A panic anywhere in
//! the gateway aborts the process (libFuzzer's panic hook): a crash.
#![no_main]

mod gw;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;

/// Starts an input may take, so the fuzzer reaches past the request line.
const PREFIXES: [&[u8]; 8] = [
    b"",
    b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer fuzz-gateway-key\r\n",
    b"POST /v1/messages HTTP/1.1\r\nhost: x\r\nx-api-key: fuzz-gateway-key\r\ntransfer-encoding: chunked\r\n\r\n",
    b"POST /v1/responses HTTP/1.1\r\nhost: x\r\nauthorization: Bearer fuzz-gateway-key\r\ncontent-length: ",
    b"POST /v1beta/models/fuzz/chat:streamGenerateContent?alt=sse HTTP/1.1\r\nx-goog-api-key: fuzz-gateway-key\r\n",
    b"GET /health HTTP/1.1\r\n",
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    b"GET /metrics HTTP/1.0\r\n\r\n",
];

fuzz_target!(|data: &[u8]| {
    let g = gw::gateway();
    let addr = g.listen();
    let _ = send(addr, Unstructured::new(data));
    for (i, probe) in [health(addr), chat(addr)].into_iter().enumerate() {
        assert!(
            probe.starts_with("HTTP/1.1 200"),
            "probe {i} after the input: {probe:?}"
        );
    }
    g.settle("after the input");
    settle_gauges(g);
});

/// Writes the input in up to 4 pieces, then ends the connection one of
/// three ways: half-close and read the answer, read a little and close,
/// or reset (linger 0) without reading.
fn send(addr: SocketAddr, mut u: Unstructured<'_>) -> Result<()> {
    let Ok(mut s) = TcpStream::connect(addr) else {
        panic!("the gateway does not accept connections");
    };
    let _ = s.set_nodelay(true);
    let _ = s.set_read_timeout(Some(Duration::from_millis(5)));
    let ending = u.int_in_range(0..=2u8)?;
    let _ = s.write_all(u.choose(&PREFIXES)?);
    let mut pieces: Vec<&[u8]> = Vec::new();
    for _ in 0..u.int_in_range(0..=3u8)? {
        pieces.push(u.arbitrary()?);
    }
    pieces.push(u.take_rest());
    for piece in pieces {
        if s.write_all(piece).is_err() {
            break; // the gateway closed: fine, if the probes pass
        }
    }
    match ending {
        0 => {
            let _ = s.shutdown(Shutdown::Write);
            let _ = s.set_read_timeout(Some(Duration::from_secs(3)));
            drain(&mut s, Duration::from_secs(3));
        }
        1 => drain(&mut s, Duration::from_millis(5)),
        _ => {
            let _ = socket_reset(&s);
        }
    }
    Ok(())
}

/// Reads until EOF, an error or `limit`.
fn drain(s: &mut TcpStream, limit: Duration) {
    let end = Instant::now() + limit;
    let mut buf = [0u8; 8192];
    while Instant::now() < end {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// Close with a TCP reset (SO_LINGER 0) instead of a FIN.
fn socket_reset(s: &TcpStream) -> std::io::Result<()> {
    socket2::SockRef::from(s).set_linger(Some(Duration::ZERO))
}

/// One request on a fresh connection; the whole answer as text.
fn exchange(addr: SocketAddr, request: &str) -> String {
    let mut s = TcpStream::connect(addr).expect("connect for the probe");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s.write_all(request.as_bytes()).expect("write the probe");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn health(addr: SocketAddr) -> String {
    exchange(
        addr,
        "GET /health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    )
}

fn chat(addr: SocketAddr) -> String {
    let body = r#"{"model":"fuzz/chat","messages":[{"role":"user","content":"hi"}]}"#;
    exchange(
        addr,
        &format!(
            "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nconnection: close\r\nauthorization: Bearer {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            gw::KEY,
            body.len()
        ),
    )
}

/// The open-connection and in-flight gauges return to 0 (the probes'
/// connections close as their answers end).
fn settle_gauges(g: &gw::Gateway) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let open = g.gauge("llmux_connections_open");
        let busy = g.gauge("llmux_requests_in_flight");
        if open == 0.0 && busy == 0.0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "left behind: {open} open connections, {busy} requests in flight"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}
