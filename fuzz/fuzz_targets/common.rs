//! Shared by the fuzz targets: the fixed catalog the request parser runs
//! against, and the stream/response drivers.

#![allow(dead_code)]

use std::sync::OnceLock;

use llmux::catalog::Catalog;
use llmux::protocol::sse::Decoder;
use llmux::protocol::{self, Protocol, SseEvent, StreamContext};
use serde_json::Value;

pub const PROTOCOLS: [Protocol; 4] = [
    Protocol::OpenAi,
    Protocol::Anthropic,
    Protocol::Responses,
    Protocol::Gemini,
];

pub fn pairs() -> impl Iterator<Item = (Protocol, Protocol)> {
    PROTOCOLS
        .into_iter()
        .flat_map(|u| PROTOCOLS.into_iter().map(move |c| (u, c)))
}

/// Four providers (one per protocol), two models, five endpoints.
pub fn catalog() -> &'static Catalog {
    static C: OnceLock<Catalog> = OnceLock::new();
    C.get_or_init(|| {
        Catalog::from_json(
            r#"{
              "providers": [
                {"slug": "a", "protocol": "openai", "base_url": "http://127.0.0.1:9/v1", "api_key": "k"},
                {"slug": "b", "protocol": "anthropic", "base_url": "http://127.0.0.1:9"},
                {"slug": "r", "protocol": "responses", "base_url": "http://127.0.0.1:9/v1"},
                {"slug": "g", "protocol": "gemini", "base_url": "http://127.0.0.1:9"}
              ],
              "models": [
                {"slug": "test/model", "context_window": 1000, "endpoints": [
                  {"provider": "a", "upstream_model": "gpt"},
                  {"provider": "b", "name": "fast", "upstream_model": "claude", "context_window": 100000},
                  {"provider": "r", "upstream_model": "gpt-r"},
                  {"provider": "g", "upstream_model": "gemini-flash"}
                ]},
                {"slug": "test/other", "endpoints": [{"provider": "b", "upstream_model": "claude"}]}
              ],
              "sticky": {"from_user": true}
            }"#,
        )
        .expect("the fuzz catalog is valid")
    })
}

/// Parses a request body for `protocol` and checks what a success promises.
pub fn parse_request(protocol: Protocol, data: &[u8]) {
    if let Ok(r) = llmux::request::parse(catalog(), protocol, data) {
        assert!(!r.routes.is_empty());
        assert!(r.routes.iter().all(|x| !x.candidates.is_empty()));
        assert!(!r.body.tree().contains_key("provider") && !r.body.tree().contains_key("models"));
        // What the engine sends each kind of endpoint: the splice for the
        // caller's own protocol, the translation for the others.
        for up in PROTOCOLS {
            let Ok(bytes) =
                protocol::upstream_request_bytes(up, protocol, &r.body, "up/m", r.stream)
            else {
                continue;
            };
            let out = serde_json::from_slice::<Value>(&bytes);
            let Ok(Value::Object(out)) = out else {
                panic!("{protocol:?}->{up:?}: not a JSON object: {out:?}");
            };
            if up != Protocol::Gemini {
                assert_eq!(out.get("model"), Some(&Value::from("up/m")));
            }
            assert!(!out.contains_key("provider") && !out.contains_key("models"));
        }
    }
}

/// Decodes `data` as one SSE stream read in pieces of the sizes given by
/// `reads` (cycled; empty: one read), and returns the events.
pub fn decode(data: &[u8], reads: &[u8]) -> (Vec<SseEvent>, bool) {
    let mut d = Decoder::new();
    let mut out = Vec::new();
    let mut rest = data;
    let mut k = 0;
    while !rest.is_empty() {
        let n = if reads.is_empty() {
            rest.len()
        } else {
            (reads[k % reads.len()] as usize).clamp(1, rest.len())
        };
        k += 1;
        if d.feed(&rest[..n], &mut out).is_err() {
            break;
        }
        rest = &rest[n..];
    }
    (out, d.finish())
}

pub fn ctx(include_usage: bool) -> StreamContext {
    StreamContext {
        model: "test/model".into(),
        include_usage,
        created: 1_700_000_000,
        id: "chatcmpl-llmux-1".into(),
        input_tokens_estimate: 0,
    }
}

/// Feeds every event to the adapter of every protocol pair, on past errors
/// and the finish marker; translated payloads must be JSON.
pub fn run_adapters(events: &[SseEvent], include_usage: bool) {
    for (up, caller) in pairs() {
        let mut a = protocol::stream_adapter(up, caller, ctx(include_usage));
        a.configure(&serde_json::Map::new(), "endpoint-1");
        for e in events {
            if let Ok(step) = a.on_event(e) {
                if up != caller {
                    for p in &step.out {
                        assert!(
                            serde_json::from_str::<Value>(p).is_ok(),
                            "{up:?}->{caller:?}: non-JSON payload {p:?}"
                        );
                    }
                }
            }
        }
        let _ = a.usage();
        for p in a.fail("the upstream broke") {
            assert!(
                serde_json::from_str::<Value>(&p).is_ok(),
                "{up:?}->{caller:?}: {p:?}"
            );
        }
    }
}
