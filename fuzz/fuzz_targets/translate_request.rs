//! Request translation both ways, and the upstream body for every protocol
//! pair, on arbitrary JSON.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use llmux::protocol::{self, translate};
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    if let Ok(v) = translate::openai_request_to_anthropic(&body) {
        assert!(v.is_object());
    }
    if let Ok(v) = translate::anthropic_request_to_openai(&body) {
        assert!(v.is_object());
    }
    for (up, caller) in common::pairs() {
        for stream in [false, true] {
            let _ = protocol::upstream_request(up, caller, &body, "upstream-model", stream);
        }
    }
});
