//! The request parser (gemini caller) on arbitrary bytes, against a fixed catalog.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use llmux::Protocol;

fuzz_target!(|data: &[u8]| {
    common::parse_request(Protocol::Gemini, data);
});
