//! Integration tests with a plain std::net::TcpStream client.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use llmux_fleet::{Behavior, Fault, MockServer, ToolCallSpec};
use serde_json::{json, Value};

struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// Content-Length fully received / chunked terminator seen.
    complete: bool,
    chunked: bool,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn text(&self) -> String {
        String::from_utf8(self.body.clone()).expect("utf-8 body")
    }
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("json body")
    }
}

struct Client {
    s: TcpStream,
    buf: Vec<u8>,
    eof: bool,
}

impl Client {
    fn connect(port: u16) -> Client {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        Client {
            s,
            buf: Vec::new(),
            eof: false,
        }
    }

    fn send(&mut self, method: &str, path: &str, headers: &[(&str, &str)], body: &str) {
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        req.push_str(body);
        self.s.write_all(req.as_bytes()).unwrap();
    }

    fn fill(&mut self) -> bool {
        if self.eof {
            return false;
        }
        let mut tmp = [0u8; 8192];
        match self.s.read(&mut tmp) {
            Ok(0) | Err(_) => {
                self.eof = true;
                false
            }
            Ok(n) => {
                self.buf.extend_from_slice(&tmp[..n]);
                true
            }
        }
    }

    fn line(&mut self) -> Option<String> {
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let l = String::from_utf8_lossy(&self.buf[..i]).into_owned();
                self.buf.drain(..i + 2);
                return Some(l);
            }
            if !self.fill() {
                return None;
            }
        }
    }

    fn take(&mut self, n: usize) -> (Vec<u8>, bool) {
        while self.buf.len() < n {
            if !self.fill() {
                let all = std::mem::take(&mut self.buf);
                return (all, false);
            }
        }
        (self.buf.drain(..n).collect(), true)
    }

    fn response(&mut self) -> Resp {
        let status_line = self.line().expect("status line");
        let status: u16 = status_line.split(' ').nth(1).unwrap().parse().unwrap();
        let mut headers = Vec::new();
        loop {
            let l = self.line().expect("header line");
            if l.is_empty() {
                break;
            }
            let (k, v) = l.split_once(':').unwrap();
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
        let mut resp = Resp {
            status,
            headers,
            body: Vec::new(),
            complete: false,
            chunked: false,
        };
        if resp.header("transfer-encoding") == Some("chunked") {
            resp.chunked = true;
            loop {
                let Some(size_line) = self.line() else {
                    return resp;
                };
                let size = usize::from_str_radix(size_line.trim(), 16).unwrap();
                if size == 0 {
                    resp.complete = self.line() == Some(String::new());
                    return resp;
                }
                let (data, ok) = self.take(size);
                resp.body.extend(data);
                if !ok || self.line() != Some(String::new()) {
                    return resp;
                }
            }
        } else {
            let n: usize = resp.header("content-length").unwrap().parse().unwrap();
            let (data, ok) = self.take(n);
            resp.body = data;
            resp.complete = ok;
            resp
        }
    }

    fn request(&mut self, method: &str, path: &str, body: &str) -> Resp {
        self.send(method, path, &[("Content-Type", "application/json")], body);
        self.response()
    }

    /// True if the server closed the connection (EOF) within the read timeout.
    fn closed(&mut self) -> bool {
        self.buf.is_empty() && !self.fill()
    }
}

fn post(server: &MockServer, path: &str, body: &Value) -> Resp {
    Client::connect(server.port()).request("POST", path, &body.to_string())
}

/// Splits an SSE body into events (list of (field, value) lines), LF or CRLF.
fn sse_events(text: &str) -> Vec<Vec<(String, String)>> {
    let norm = text.replace("\r\n", "\n");
    norm.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            e.lines()
                .map(|l| {
                    let (k, v) = l.split_once(':').unwrap_or((l, ""));
                    (k.to_string(), v.strip_prefix(' ').unwrap_or(v).to_string())
                })
                .collect()
        })
        .collect()
}

fn data_values(text: &str) -> Vec<String> {
    sse_events(text)
        .into_iter()
        .flat_map(|e| e.into_iter().filter(|(k, _)| k == "data").map(|(_, v)| v))
        .collect()
}

fn openai_req(stream: bool) -> Value {
    json!({"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}], "stream": stream,
           "stream_options": {"include_usage": true}})
}

fn anthropic_req(stream: bool) -> Value {
    json!({"model": "claude-test", "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}], "stream": stream})
}

#[test]
fn openai_stream_happy_path() {
    let s = MockServer::start("alpha", Behavior::default()).unwrap();
    let r = post(&s, "/v1/chat/completions", &openai_req(true));
    assert_eq!(r.status, 200);
    assert!(r.chunked && r.complete);
    assert_eq!(r.header("content-type"), Some("text/event-stream"));
    let text = r.text();
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    let data = data_values(&text);
    assert_eq!(data.len(), 1 + 5 + 1 + 1 + 1);
    assert_eq!(data.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    for c in &chunks {
        assert_eq!(c["object"], "chat.completion.chunk");
        assert_eq!(c["model"], "gpt-test");
        assert_eq!(c["id"], chunks[0]["id"]);
        assert!(c["created"].is_u64());
    }
    assert_eq!(
        chunks[0]["choices"][0]["delta"],
        json!({"role": "assistant", "content": ""})
    );
    let content: String = chunks[1..6]
        .iter()
        .map(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(content, "Hello from alpha.");
    assert_eq!(chunks[6]["choices"][0]["delta"], json!({}));
    assert_eq!(chunks[6]["choices"][0]["finish_reason"], "stop");
    assert_eq!(chunks[7]["choices"], json!([]));
    assert_eq!(
        chunks[7]["usage"],
        json!({"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15})
    );
}

#[test]
fn openai_non_stream_and_tool_calls() {
    let s = MockServer::start("alpha", Behavior::default()).unwrap();
    let r = post(&s, "/chat/completions", &openai_req(false));
    assert_eq!(r.status, 200);
    assert!(!r.chunked && r.complete);
    let v = r.json();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["id"], "chatcmpl-mock-1");
    assert_eq!(v["model"], "gpt-test");
    assert_eq!(v["choices"][0]["message"]["content"], "Hello from alpha.");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["usage"]["total_tokens"], 15);

    s.set_behavior(Behavior {
        text: Some(String::new()),
        tool_calls: vec![
            ToolCallSpec {
                name: "get_weather".into(),
                arguments: r#"{"city":"Paris","unit":"c"}"#.into(),
            },
            ToolCallSpec {
                name: "get_time".into(),
                arguments: r#"{"tz":"UTC"}"#.into(),
            },
        ],
        arg_fragment_len: 5,
        ..Default::default()
    });
    let v = post(&s, "/chat/completions", &openai_req(false)).json();
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(v["choices"][0]["message"]["content"], Value::Null);
    assert_eq!(
        v["choices"][0]["message"]["tool_calls"][1]["function"]["name"],
        "get_time"
    );

    let r = post(&s, "/chat/completions", &openai_req(true));
    let data = data_values(&r.text());
    let mut args = vec![String::new(), String::new()];
    let mut names = vec![];
    for d in &data[..data.len() - 1] {
        let c: Value = serde_json::from_str(d).unwrap();
        if let Some(calls) = c["choices"][0]["delta"]["tool_calls"].as_array() {
            let call = &calls[0];
            let i = call["index"].as_u64().unwrap() as usize;
            if let Some(n) = call["function"]["name"].as_str() {
                assert!(call["id"].is_string());
                names.push((i, n.to_string()));
            } else {
                assert!(call.get("id").is_none());
            }
            let frag = call["function"]["arguments"].as_str().unwrap();
            assert!(frag.chars().count() <= 5);
            args[i].push_str(frag);
        }
        if c["choices"][0]["finish_reason"].is_string() {
            assert_eq!(c["choices"][0]["finish_reason"], "tool_calls");
        }
    }
    assert_eq!(
        names,
        vec![(0, "get_weather".to_string()), (1, "get_time".to_string())]
    );
    assert_eq!(
        args,
        vec![r#"{"city":"Paris","unit":"c"}"#, r#"{"tz":"UTC"}"#]
    );
}

#[test]
fn anthropic_stream_event_order() {
    let s = MockServer::start(
        "claude",
        Behavior {
            thinking: Some("Let me think.".into()),
            chunks: 2,
            tool_calls: vec![ToolCallSpec {
                name: "lookup".into(),
                arguments: r#"{"q":"rust lang"}"#.into(),
            }],
            ..Default::default()
        },
    )
    .unwrap();
    let r = post(&s, "/v1/messages", &anthropic_req(true));
    assert_eq!(r.status, 200);
    assert!(r.complete);
    let events = sse_events(&r.text());
    let mut names = Vec::new();
    let mut datas = Vec::new();
    for e in &events {
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].0, "event");
        assert_eq!(e[1].0, "data");
        let d: Value = serde_json::from_str(&e[1].1).unwrap();
        assert_eq!(d["type"], e[0].1.as_str());
        names.push(e[0].1.clone());
        datas.push(d);
    }
    let expected = [
        "message_start",
        "ping",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ];
    assert_eq!(names, expected);
    assert_eq!(datas[0]["message"]["content"], json!([]));
    assert_eq!(datas[0]["message"]["model"], "claude-test");
    assert_eq!(
        datas[0]["message"]["usage"],
        json!({"input_tokens": 10, "output_tokens": 1})
    );
    assert_eq!(datas[2]["content_block"]["type"], "thinking");
    assert_eq!(datas[3]["delta"]["type"], "thinking_delta");
    assert_eq!(datas[5]["delta"]["type"], "signature_delta");
    assert_eq!(datas[7]["content_block"]["type"], "text");
    assert_eq!(datas[7]["index"], 1);
    let text: String = datas[8..10]
        .iter()
        .map(|d| d["delta"]["text"].as_str().unwrap())
        .collect();
    assert_eq!(text, "Hello from claude.");
    assert_eq!(datas[11]["content_block"]["type"], "tool_use");
    assert_eq!(datas[11]["content_block"]["name"], "lookup");
    let args: String = datas[12..15]
        .iter()
        .map(|d| d["delta"]["partial_json"].as_str().unwrap())
        .collect();
    assert_eq!(args, r#"{"q":"rust lang"}"#);
    assert_eq!(
        datas[16]["delta"],
        json!({"stop_reason": "tool_use", "stop_sequence": null})
    );
    assert_eq!(datas[16]["usage"]["output_tokens"], 3);

    // Non-stream shape.
    let v = post(&s, "/v1/messages", &anthropic_req(false)).json();
    assert_eq!(v["type"], "message");
    assert_eq!(v["id"], "msg_mock_2");
    assert_eq!(v["stop_reason"], "tool_use");
    assert_eq!(v["content"][0]["type"], "thinking");
    assert!(v["content"][0]["signature"].is_string());
    assert_eq!(
        v["content"][1],
        json!({"type": "text", "text": "Hello from claude."})
    );
    assert_eq!(v["content"][2]["input"], json!({"q": "rust lang"}));
    assert_eq!(v["usage"], json!({"input_tokens": 10, "output_tokens": 3}));
}

#[test]
fn status_and_retry_after() {
    let s = MockServer::start(
        "limited",
        Behavior {
            status: 429,
            retry_after: Some("2".into()),
            retry_after_ms: Some(1500),
            ..Default::default()
        },
    )
    .unwrap();
    let r = post(&s, "/v1/chat/completions", &openai_req(true));
    assert_eq!(r.status, 429);
    assert_eq!(r.header("retry-after"), Some("2"));
    assert_eq!(r.header("retry-after-ms"), Some("1500"));
    let v = r.json();
    assert_eq!(v["error"]["code"], "rate_limit_exceeded");
    assert!(v["error"]["message"].is_string());
    assert_eq!(v["error"]["param"], Value::Null);

    let r = post(&s, "/v1/messages", &anthropic_req(false));
    assert_eq!(r.status, 429);
    assert_eq!(
        r.json(),
        json!({"type": "error", "error": {"type": "rate_limit_error", "message": r.json()["error"]["message"]}})
    );

    s.set_behavior(Behavior {
        status: 529,
        ..Default::default()
    });
    let r = post(&s, "/v1/messages", &anthropic_req(true));
    assert_eq!(r.status, 529);
    assert_eq!(r.json()["error"]["type"], "overloaded_error");
    assert_eq!(r.header("retry-after"), None);

    s.set_behavior(Behavior {
        status: 500,
        error_body: Some(json!({"custom": true})),
        ..Default::default()
    });
    assert_eq!(
        post(&s, "/v1/messages", &anthropic_req(false)).json(),
        json!({"custom": true})
    );
}

#[test]
fn per_request_override_and_servers_key() {
    let a = MockServer::start("a", Behavior::default()).unwrap();
    let b = MockServer::start("b", Behavior::default()).unwrap();
    let mut body = openai_req(false);
    body["mock"] = json!({"text": "override", "chunks": 1, "servers": {"b": {"status": 503}}});
    let ra = post(&a, "/v1/chat/completions", &body);
    assert_eq!(ra.status, 200);
    assert_eq!(ra.json()["choices"][0]["message"]["content"], "override");
    assert_eq!(ra.json()["usage"]["completion_tokens"], 1);
    let rb = post(&b, "/v1/chat/completions", &body);
    assert_eq!(rb.status, 503);
    // Only for that request.
    let r = post(&a, "/v1/chat/completions", &openai_req(false));
    assert_eq!(
        r.json()["choices"][0]["message"]["content"],
        "Hello from a."
    );
    assert_eq!(a.behavior(), Behavior::default());
    // Recorded as received.
    assert_eq!(a.requests()[0].body["mock"]["servers"]["b"]["status"], 503);
    // A bad override is a 400.
    let mut bad = openai_req(false);
    bad["mock"] = json!({"chunks": "many"});
    assert_eq!(post(&a, "/v1/chat/completions", &bad).status, 400);
}

#[test]
fn drop_after_has_no_terminator() {
    let s = MockServer::start(
        "dropper",
        Behavior {
            fault: Fault::DropAfter(2),
            ..Default::default()
        },
    )
    .unwrap();
    let mut c = Client::connect(s.port());
    let r = c.request(
        "POST",
        "/v1/chat/completions",
        &openai_req(true).to_string(),
    );
    assert_eq!(r.status, 200);
    assert!(
        !r.complete,
        "stream must end without the chunked terminator"
    );
    let data = data_values(&r.text());
    assert_eq!(data.len(), 3); // role chunk + 2 content chunks
    assert!(c.closed());

    let r = post(&s, "/v1/messages", &anthropic_req(true));
    assert!(!r.complete);
    let deltas = sse_events(&r.text())
        .iter()
        .filter(|e| e[0].1 == "content_block_delta")
        .count();
    assert_eq!(deltas, 2);

    // Non-stream: content-length promised, half the body delivered.
    let r = post(&s, "/v1/chat/completions", &openai_req(false));
    assert_eq!(r.status, 200);
    assert!(!r.complete);
    let promised: usize = r.header("content-length").unwrap().parse().unwrap();
    assert_eq!(r.body.len(), promised / 2);
}

#[test]
fn requests_are_recorded() {
    let s = MockServer::start("rec", Behavior::default()).unwrap();
    let mut c = Client::connect(s.port());
    c.send(
        "POST",
        "/v1/chat/completions?x=1",
        &[("Authorization", "Bearer sk-test"), ("X-Custom", "v")],
        &openai_req(false).to_string(),
    );
    assert_eq!(c.response().status, 200);
    c.send("POST", "/v1/messages", &[("x-api-key", "ak")], "not json");
    assert_eq!(c.response().status, 400);
    c.send("GET", "/nope", &[], "");
    assert_eq!(c.response().status, 404);
    c.send("GET", "/_mock/health", &[], "");
    assert_eq!(c.response().json(), json!({"ok": true, "name": "rec"}));

    let recs = s.requests();
    assert_eq!(recs.len(), 3);
    assert_eq!(s.request_count(), 3);
    assert_eq!(recs[0].method, "POST");
    assert_eq!(recs[0].path, "/v1/chat/completions?x=1");
    assert_eq!(recs[0].header("authorization"), Some("Bearer sk-test"));
    assert_eq!(recs[0].header("X-CUSTOM"), Some("v"));
    assert!(recs[0]
        .headers
        .iter()
        .all(|(k, _)| *k == k.to_ascii_lowercase()));
    assert_eq!(recs[0].body["model"], "gpt-test");
    assert_eq!(recs[1].body, Value::String("not json".into()));
    assert_eq!(recs[2].path, "/nope");
    assert!(recs[0].at_ms <= recs[2].at_ms);

    c.send("GET", "/_mock/requests", &[], "");
    let list = c.response().json();
    assert_eq!(list.as_array().unwrap().len(), 3);
    assert_eq!(list[0]["headers"][0][0], "host");
    s.clear_requests();
    assert_eq!(s.request_count(), 0);

    // Control endpoints: behavior + reset.
    c.send(
        "POST",
        "/_mock/behavior",
        &[],
        r#"{"status": 503, "fault": {"drop_after": 1}}"#,
    );
    assert_eq!(c.response().status, 200);
    assert_eq!(s.behavior().status, 503);
    assert_eq!(s.behavior().fault, Fault::DropAfter(1));
    c.send("POST", "/_mock/reset", &[], "");
    assert_eq!(c.response().status, 200);
    assert_eq!(s.behavior(), Behavior::default());
    assert_eq!(s.request_count(), 0);
}

#[test]
fn keep_alive_and_connection_close() {
    let s = MockServer::start("ka", Behavior::default()).unwrap();
    let mut c = Client::connect(s.port());
    let r1 = c.request(
        "POST",
        "/v1/chat/completions",
        &openai_req(true).to_string(),
    );
    assert!(r1.complete);
    assert_eq!(r1.header("connection"), Some("keep-alive"));
    let r2 = c.request("POST", "/v1/messages", &anthropic_req(false).to_string());
    assert_eq!(r2.status, 200);
    assert_eq!(r2.json()["content"][0]["text"], "Hello from ka.");
    c.send(
        "POST",
        "/v1/messages",
        &[("Connection", "close")],
        &anthropic_req(true).to_string(),
    );
    let r3 = c.response();
    assert!(r3.complete);
    assert_eq!(r3.header("connection"), Some("close"));
    assert!(c.closed());
    assert_eq!(s.request_count(), 3);
}

#[test]
fn stream_faults() {
    let s = MockServer::start("f", Behavior::default()).unwrap();
    let with = |fault: Fault| {
        s.set_behavior(Behavior {
            fault,
            ..Default::default()
        });
    };

    with(Fault::NoDone);
    let r = post(&s, "/v1/chat/completions", &openai_req(true));
    assert!(r.complete);
    let data = data_values(&r.text());
    assert!(!data.contains(&"[DONE]".to_string()));
    assert!(data.last().unwrap().contains("\"usage\""));

    with(Fault::NoFinish);
    let r = post(&s, "/v1/messages", &anthropic_req(true));
    assert!(r.complete);
    let names: Vec<String> = sse_events(&r.text())
        .iter()
        .map(|e| e[0].1.clone())
        .collect();
    assert_eq!(names.last().unwrap(), "content_block_stop");

    with(Fault::ErrorEventAfter(1));
    let r = post(&s, "/v1/messages", &anthropic_req(true));
    assert!(r.complete);
    let last = sse_events(&r.text()).pop().unwrap();
    assert_eq!(last[0].1, "error");
    let r = post(&s, "/v1/chat/completions", &openai_req(true));
    let data = data_values(&r.text());
    assert_eq!(data.len(), 3);
    assert!(serde_json::from_str::<Value>(&data[2]).unwrap()["error"]["message"].is_string());

    with(Fault::MalformedAfter(2));
    let r = post(&s, "/v1/chat/completions", &openai_req(true));
    let data = data_values(&r.text());
    assert_eq!(data[3], "{not json");
    assert_eq!(data.last().unwrap(), "[DONE]");

    with(Fault::EmptyCompletion);
    let r = post(&s, "/v1/chat/completions", &openai_req(true));
    let data = data_values(&r.text());
    assert_eq!(data.len(), 4); // role, finish, usage, [DONE]
    let v = post(&s, "/v1/chat/completions", &openai_req(false)).json();
    assert_eq!(v["choices"][0]["message"]["content"], "");

    with(Fault::ErrorBody200);
    let r = post(&s, "/v1/chat/completions", &openai_req(false));
    assert_eq!(r.status, 200);
    assert!(r.json()["error"].is_object());

    with(Fault::Keepalive);
    let r = post(&s, "/v1/messages", &anthropic_req(true));
    let text = r.text();
    assert_eq!(text.matches(": PROCESSING\n\n").count(), 5);
    assert_eq!(text.matches("event: ping\n").count(), 6);

    with(Fault::Huge(10_000));
    let r = post(&s, "/v1/chat/completions", &openai_req(true));
    let content: usize = data_values(&r.text())
        .iter()
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str().map(str::len))
        .sum();
    assert_eq!(content, 10_000);

    with(Fault::SplitUtf8);
    let r = post(&s, "/v1/messages", &anthropic_req(true));
    assert!(r.complete);
    let text = r.text();
    assert!(text.contains("\r\n\r\n"));
    let joined: String = sse_events(&text)
        .iter()
        .filter(|e| e[0].1 == "content_block_delta")
        .map(|e| {
            serde_json::from_str::<Value>(&e[1].1).unwrap()["delta"]["text"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(joined, "héllo wörld 日本語 🎉");
}

#[test]
fn hold_faults_and_reset() {
    let s = MockServer::start(
        "h",
        Behavior {
            fault: Fault::StallAfter(1),
            ..Default::default()
        },
    )
    .unwrap();
    let mut c = Client::connect(s.port());
    c.s.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    c.send(
        "POST",
        "/v1/chat/completions",
        &[],
        &openai_req(true).to_string(),
    );
    let t = Instant::now();
    let r = c.response();
    assert!(!r.complete);
    assert_eq!(data_values(&r.text()).len(), 2);
    assert!(t.elapsed() >= Duration::from_millis(250));

    s.set_behavior(Behavior {
        fault: Fault::HeadersNeverFinish,
        ..Default::default()
    });
    let mut c = Client::connect(s.port());
    c.s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    c.send(
        "POST",
        "/v1/messages",
        &[],
        &anthropic_req(false).to_string(),
    );
    assert_eq!(c.line().as_deref(), Some("HTTP/1.1 200 OK"));
    assert!(c.line().is_some());
    assert!(c.line().is_none()); // never finishes

    s.set_behavior(Behavior {
        fault: Fault::ResetBeforeHeaders,
        ..Default::default()
    });
    let mut c = Client::connect(s.port());
    c.send(
        "POST",
        "/v1/messages",
        &[],
        &anthropic_req(false).to_string(),
    );
    assert!(c.closed());
    assert!(c.buf.is_empty());
    assert_eq!(s.request_count(), 3);
}

#[test]
fn delays_and_require_key() {
    let s = MockServer::start(
        "slow",
        Behavior {
            headers_delay_ms: 100,
            first_token_delay_ms: 50,
            require_key: Some("k1".into()),
            ..Default::default()
        },
    )
    .unwrap();
    let t = Instant::now();
    let mut c = Client::connect(s.port());
    c.send(
        "POST",
        "/v1/chat/completions",
        &[("Authorization", "Bearer k1")],
        &openai_req(false).to_string(),
    );
    assert_eq!(c.response().status, 200);
    assert!(t.elapsed() >= Duration::from_millis(150));
    c.send(
        "POST",
        "/v1/chat/completions",
        &[("Authorization", "Bearer nope")],
        &openai_req(false).to_string(),
    );
    assert_eq!(c.response().status, 401);
    c.send(
        "POST",
        "/v1/messages",
        &[("x-api-key", "k1")],
        &anthropic_req(false).to_string(),
    );
    assert_eq!(c.response().status, 200);
    c.send(
        "POST",
        "/v1/messages",
        &[],
        &anthropic_req(false).to_string(),
    );
    let r = c.response();
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"]["type"], "authentication_error");
}

#[test]
fn chunked_request_body() {
    let s = MockServer::start("ch", Behavior::default()).unwrap();
    let mut c = Client::connect(s.port());
    let body = openai_req(false).to_string();
    let (a, b) = body.split_at(10);
    let req = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\n\r\n",
        a.len(),
        b.len()
    );
    c.s.write_all(req.as_bytes()).unwrap();
    assert_eq!(c.response().status, 200);
    assert_eq!(s.requests()[0].body["model"], "gpt-test");
}

#[test]
fn start_inside_runtime_and_drop_stops() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let port = rt.block_on(async {
        let s = MockServer::start("inner", Behavior::default()).unwrap();
        let port = s.port();
        let mut idle = Client::connect(port);
        let r = idle.request("GET", "/_mock/health", "");
        assert_eq!(r.status, 200);
        drop(s);
        assert!(idle.closed(), "live connections are closed on drop");
        port
    });
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
}

#[test]
fn binary_prints_servers_and_exits_on_stdin_eof() {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_llmux-fleet"))
        .args([
            "--config",
            r#"{"servers":[{"name":"one","behavior":{"status":503}},{"name":"two"}]}"#,
        ])
        .arg("--exit-on-stdin-eof")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let v: Value = serde_json::from_str(&line).unwrap();
    let servers = v["servers"].as_array().unwrap();
    assert_eq!(servers.len(), 2);
    assert_eq!(servers[0]["name"], "one");
    let port = servers[0]["port"].as_u64().unwrap() as u16;
    assert_eq!(servers[0]["base_url"], format!("http://127.0.0.1:{port}"));
    let r = Client::connect(port).request(
        "POST",
        "/v1/chat/completions",
        &openai_req(false).to_string(),
    );
    assert_eq!(r.status, 503);
    let port2 = servers[1]["port"].as_u64().unwrap() as u16;
    let r = Client::connect(port2).request("GET", "/_mock/health", "");
    assert_eq!(r.json()["name"], "two");
    drop(child.stdin.take());
    let t = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success());
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "binary did not exit on stdin EOF"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn responses_stream_and_non_stream() {
    let s = MockServer::start(
        "resp",
        Behavior {
            thinking: Some("Hmm.".into()),
            chunks: 2,
            tool_calls: vec![ToolCallSpec {
                name: "lookup".into(),
                arguments: r#"{"q":"x"}"#.into(),
            }],
            ..Default::default()
        },
    )
    .unwrap();
    let req = |stream: bool| json!({"model": "m", "input": "hi", "stream": stream});
    let r = post(&s, "/v1/responses", &req(true));
    assert_eq!(r.status, 200);
    assert!(r.complete);
    let mut types = Vec::new();
    let mut datas = Vec::new();
    for e in sse_events(&r.text()) {
        assert_eq!(e[0].0, "event");
        let d: Value = serde_json::from_str(&e[1].1).unwrap();
        assert_eq!(d["type"], e[0].1.as_str());
        assert_eq!(d["sequence_number"], datas.len());
        types.push(e[0].1.clone());
        datas.push(d);
    }
    assert_eq!(types.first().map(String::as_str), Some("response.created"));
    assert_eq!(types.last().map(String::as_str), Some("response.completed"));
    let text: String = datas
        .iter()
        .filter(|d| d["type"] == "response.output_text.delta")
        .map(|d| d["delta"].as_str().unwrap())
        .collect();
    assert_eq!(text, "Hello from resp.");
    let done = &datas.last().unwrap()["response"];
    let kinds: Vec<&str> = done["output"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["reasoning", "message", "function_call"]);
    assert_eq!(done["usage"]["input_tokens"], 10);

    let r = post(&s, "/v1/responses", &req(false));
    let body: Value = serde_json::from_str(&r.text()).unwrap();
    assert_eq!(body["object"], "response");
    assert_eq!(body["status"], "completed");
    assert_eq!(body["output"][2]["arguments"], r#"{"q":"x"}"#);

    // The token limit: an incomplete response; an error event mid-stream.
    s.set_behavior(Behavior {
        stop_reason: Some("max_output_tokens".into()),
        ..Default::default()
    });
    let body: Value = serde_json::from_str(&post(&s, "/v1/responses", &req(false)).text()).unwrap();
    assert_eq!(body["status"], "incomplete");
    assert_eq!(body["incomplete_details"]["reason"], "max_output_tokens");
    s.set_behavior(Behavior {
        fault: Fault::ErrorEventAfter(1),
        ..Default::default()
    });
    let events = sse_events(&post(&s, "/v1/responses", &req(true)).text());
    let last = events.last().unwrap();
    assert_eq!(last[0].1, "error");
    assert!(!events.iter().any(|e| e[0].1 == "response.completed"));
}

/// Starts the binary with `stdin`, returns it and its first server's port.
fn spawn_fleet(args: &[&str], stdin: std::process::Stdio) -> (std::process::Child, u16) {
    use std::io::BufRead;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_llmux-fleet"))
        .args(["--servers", "a"])
        .args(args)
        .stdin(stdin)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let v: Value = serde_json::from_str(&line).unwrap();
    (child, v["servers"][0]["port"].as_u64().unwrap() as u16)
}

/// Serving after stdin went away: still running, still answering.
fn keeps_serving(child: &mut std::process::Child, port: u16) {
    std::thread::sleep(Duration::from_millis(300));
    assert!(child.try_wait().unwrap().is_none(), "the fleet exited");
    let r = Client::connect(port).request("GET", "/_mock/health", "");
    assert_eq!(r.status, 200);
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn binary_never_reads_a_closed_pipe_or_a_terminal_unless_asked() {
    // Without --exit-on-stdin-eof, stdin is not read at all.
    let (mut child, port) = spawn_fleet(&[], std::process::Stdio::piped());
    drop(child.stdin.take());
    keeps_serving(&mut child, port);

    // A terminal (as in `llmux-fleet --exit-on-stdin-eof &` in a shell,
    // where reading it would stop the job with SIGTTIN) is never read, even
    // with --exit-on-stdin-eof: closing the terminal does not end it either.
    let (mut master, mut slave) = (0, 0);
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(rc, 0, "openpty");
    let tty = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(slave) };
    let (mut child, port) = spawn_fleet(&["--exit-on-stdin-eof"], tty.into());
    unsafe { libc::close(master) };
    let mut err = child.stderr.take().unwrap();
    keeps_serving(&mut child, port);
    let mut text = String::new();
    err.read_to_string(&mut text).unwrap();
    assert!(
        text.contains(
            "llmux-fleet: stdin is a terminal: --exit-on-stdin-eof ignored, serving until killed"
        ),
        "{text}"
    );
}
