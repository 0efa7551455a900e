//! A non-streaming upstream body converted for every protocol pair, each
//! protocol's response parser, and the error-body translations.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use llmux::protocol::{self, anthropic, gemini, openai, responses, translate};
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    for (up, caller) in common::pairs() {
        if let Ok(c) = protocol::convert_response(up, caller, data, 1) {
            if up != caller {
                assert!(serde_json::from_str::<Value>(&c.body).is_ok(), "{}", c.body);
            }
        }
    }
    if let Ok(v) = serde_json::from_slice::<Value>(data) {
        let _ = openai::chat::parse_response(&v);
        let _ = anthropic::messages::parse_response(&v);
        let _ = responses::parse_response(&v);
        let _ = gemini::parse_response(&v);
        let _ = gemini::check_response(&v);
        let _ = gemini::error_message(&v);
        let _ = anthropic::error_message(&v);
        let _ = openai::error_message(&v);
        for status in [200, 400, 429, 529, 0, 999] {
            let _ = translate::openai_error_to_anthropic(status, &v);
            let _ = translate::anthropic_error_to_openai(status, &v);
        }
    }
});
