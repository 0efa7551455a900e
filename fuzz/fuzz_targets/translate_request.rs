//! Request translation on arbitrary JSON: every protocol's parser into the
//! conversation model, every other protocol's emitter from it, and the
//! upstream body for every protocol pair.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use llmux::protocol::{self, anthropic, gemini, ir, openai, responses, PayloadError};
use serde_json::Value;

type Emit = fn(&ir::Request) -> Result<Value, PayloadError>;

const EMITTERS: [Emit; 4] = [
    openai::chat::emit_request,
    anthropic::messages::emit_request,
    responses::emit_request,
    gemini::emit_request,
];

fuzz_target!(|data: &[u8]| {
    let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    for parsed in [
        openai::chat::parse_request(&body),
        anthropic::messages::parse_request(&body),
        responses::parse_request(&body),
        gemini::parse_request(&body),
    ] {
        let Ok(r) = parsed else { continue };
        for emit in EMITTERS {
            if let Ok(v) = emit(&r) {
                assert!(v.is_object());
            }
        }
    }
    for (up, caller) in common::pairs() {
        for stream in [false, true] {
            if let Ok(v) = protocol::upstream_request(up, caller, &body, "upstream-model", stream) {
                assert!(v.is_object());
            }
        }
    }
});
