//! The SSE decoder on arbitrary bytes: never panics, and the events do not
//! depend on how the stream is split into reads. The first byte gives the
//! number of read sizes that follow (at most 8); the rest is the stream.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let n = (n as usize % 9).min(rest.len());
    let (reads, stream) = rest.split_at(n);
    let whole = common::decode(stream, &[]);
    assert_eq!(
        whole,
        common::decode(stream, &[1]),
        "byte-by-byte reads differ"
    );
    if !reads.is_empty() {
        assert_eq!(
            whole,
            common::decode(stream, reads),
            "reads {reads:?} differ"
        );
    }
});
