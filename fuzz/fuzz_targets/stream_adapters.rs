//! The input as an upstream SSE stream, decoded and fed to the stream
//! adapter of every protocol pair.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (events, _) = common::decode(data, &[]);
    common::run_adapters(&events, true);
    common::run_adapters(&events, false);
});
