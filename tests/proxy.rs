//! The `proxy` setting: every upstream connection is tunnelled through an
//! HTTP proxy with CONNECT, with the credentials of the proxy URL; a proxy
//! that refuses is named in the error.

mod common;

use common::*;
use llmux_fleet::Behavior;
use serde_json::json;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

/// A CONNECT proxy on 127.0.0.1 that records each request head and answers
/// `answer` (a 200 opens the tunnel to the asked host:port).
struct Proxy {
    port: u16,
    heads: Arc<Mutex<Vec<String>>>,
}

fn start_proxy(answer: &'static str) -> Proxy {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let heads = Arc::new(Mutex::new(Vec::new()));
    let seen = heads.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            let seen = seen.clone();
            std::thread::spawn(move || tunnel(conn, answer, &seen));
        }
    });
    Proxy { port, heads }
}

fn tunnel(conn: TcpStream, answer: &str, seen: &Mutex<Vec<String>>) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        if line == "\r\n" {
            break;
        }
        head.push_str(&line);
    }
    seen.lock().unwrap().push(head.clone());
    let mut conn = conn;
    let _ = conn.write_all(answer.as_bytes());
    if !answer.starts_with("HTTP/1.1 200") {
        return;
    }
    let target = head
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    let Ok(up) = TcpStream::connect(target) else {
        return;
    };
    let (mut up_read, mut up_write) = (up.try_clone().unwrap(), up);
    let mut down_write = conn.try_clone().unwrap();
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut up_read, &mut down_write);
    });
    // Bytes the reader already buffered past the head go first.
    let _ = up_write.write_all(reader.buffer());
    let mut rest = reader.into_inner();
    let mut buf = [0u8; 16 * 1024];
    while let Ok(n) = rest.read(&mut buf) {
        if n == 0 || up_write.write_all(&buf[..n]).is_err() {
            break;
        }
    }
}

#[test]
fn requests_go_through_the_proxy_with_its_credentials() {
    let a = upstream("a", behavior(json!({"chunks": 3})));
    let proxy = start_proxy("HTTP/1.1 200 Connection established\r\n\r\n");
    let url = format!("http://user:p%40ss@127.0.0.1:{}", proxy.port);
    let e = engine(&[&a], json!({"proxy": url}));
    for stream in [false, true] {
        let out = run(&e, &chat("test/model", stream));
        assert!(out.ok(), "stream={stream}: {:?}", out.terminal);
        let text = match stream {
            true => out.text(),
            false => out.terminal["response"]["choices"][0]["message"]["content"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        };
        assert_eq!(text, "Hello from a.", "stream={stream}");
    }
    let heads = proxy.heads.lock().unwrap();
    // One connection, kept alive for the second request.
    assert_eq!(heads.len(), 1, "{heads:?}");
    let upstream = a.server.base_url().trim_start_matches("http://").to_owned();
    assert!(
        heads[0].starts_with(&format!("CONNECT {upstream} HTTP/1.1\r\n")),
        "{}",
        heads[0]
    );
    // user:p@ss, the password percent-decoded.
    let auth = "proxy-authorization: Basic dXNlcjpwQHNz\r\n";
    assert!(
        heads[0]
            .to_ascii_lowercase()
            .contains(&auth.to_ascii_lowercase()),
        "{}",
        heads[0]
    );
}

#[test]
fn a_proxy_that_refuses_is_named() {
    let a = upstream("a", Behavior::default());
    let proxy =
        start_proxy("HTTP/1.1 407 Proxy Authentication Required\r\ncontent-length: 0\r\n\r\n");
    let e = engine(
        &[&a],
        json!({"proxy": format!("http://127.0.0.1:{}", proxy.port)}),
    );
    let out = run(&e, &chat("test/model", false));
    assert!(!out.ok());
    let t = &out.terminal;
    assert_eq!(
        t["routing"]["attempts"][0]["outcome"], "connect_error",
        "{t}"
    );
    let msg = t["error"]["error"]["message"].as_str().unwrap();
    let upstream = a.server.base_url().trim_start_matches("http://").to_owned();
    assert_eq!(
        msg,
        format!(
            "provider \"a\" (endpoint a/default) could not be reached at {upstream} through \
             the proxy 127.0.0.1:{}: proxy authorization required",
            proxy.port
        )
    );
}

#[test]
fn a_proxy_url_llmux_cannot_use_is_refused_at_load() {
    let a = upstream("a", Behavior::default());
    for bad in ["socks5://127.0.0.1:1080", "ftp://proxy:21", "http://"] {
        let err = llmux::Engine::from_json(&config(&[&a], json!({"proxy": bad})))
            .err()
            .unwrap_or_else(|| panic!("{bad} was accepted"));
        assert!(err.to_string().contains("proxy"), "{bad}: {err}");
    }
}
