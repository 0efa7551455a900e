//! Unit tests of `crate::protocol::sse`.

use super::*;

fn decode_in_pieces(input: &[u8], piece: usize) -> Vec<SseEvent> {
    let mut d = Decoder::new();
    let mut out = Vec::new();
    for c in input.chunks(piece.max(1)) {
        d.feed(c, &mut out).unwrap();
    }
    d.finish();
    out
}

fn ev(event: &str, data: &str) -> SseEvent {
    SseEvent {
        event: event.into(),
        data: data.into(),
    }
}

#[test]
fn lf_crlf_and_cr_line_endings_are_equivalent() {
    for sep in ["\n", "\r\n", "\r"] {
        let s = format!("event: a{sep}data: 1{sep}{sep}data: 2{sep}{sep}");
        for piece in 1..=s.len() {
            assert_eq!(
                decode_in_pieces(s.as_bytes(), piece),
                vec![ev("a", "1"), ev("", "2")],
                "sep {sep:?} piece {piece}"
            );
        }
    }
}

#[test]
fn cr_at_end_of_read_then_lf_is_one_break() {
    let mut d = Decoder::new();
    let mut out = Vec::new();
    d.feed(b"data: x\r", &mut out).unwrap();
    d.feed(b"\n\r", &mut out).unwrap();
    d.feed(b"\ndata: y\r\n\r\n", &mut out).unwrap();
    assert_eq!(out, vec![ev("", "x"), ev("", "y")]);
}

#[test]
fn utf8_split_across_reads_is_kept_whole() {
    let s = "data: {\"c\":\"héllo 日本語 🎉\"}\r\n\r\n";
    for piece in 1..6 {
        let out = decode_in_pieces(s.as_bytes(), piece);
        assert_eq!(out, vec![ev("", "{\"c\":\"héllo 日本語 🎉\"}")]);
    }
}

#[test]
fn comments_multi_data_unknown_fields_and_no_space() {
    let s = ": PROCESSING\n\nid: 7\nretry: 10\ndata:a\ndata: b\nfoo: bar\n\n";
    assert_eq!(decode_in_pieces(s.as_bytes(), 3), vec![ev("", "a\nb")]);
}

#[test]
fn field_without_colon_and_only_one_space_dropped() {
    let s = "data\n\ndata:  two\n\n";
    assert_eq!(
        decode_in_pieces(s.as_bytes(), 100),
        vec![ev("", ""), ev("", " two")]
    );
}

#[test]
fn unterminated_event_is_discarded_and_reported() {
    let mut d = Decoder::new();
    let mut out = Vec::new();
    d.feed(b"data: 1\n\ndata: 2\n", &mut out).unwrap();
    assert!(d.finish());
    assert_eq!(out, vec![ev("", "1")]);
    let mut d = Decoder::new();
    d.feed(b"data: 1\n\n", &mut out).unwrap();
    assert!(!d.finish());
}

#[test]
fn event_name_without_data_does_not_dispatch_or_leak() {
    let s = "event: ping\n\ndata: x\n\n";
    assert_eq!(decode_in_pieces(s.as_bytes(), 2), vec![ev("", "x")]);
}

#[test]
fn overlong_line_is_an_error_not_unbounded_memory() {
    let mut d = Decoder::new();
    let mut out = Vec::new();
    let big = vec![b'a'; 1024 * 1024];
    let mut failed = false;
    for _ in 0..20 {
        if d.feed(&big, &mut out).is_err() {
            failed = true;
            break;
        }
    }
    assert!(failed);
}

#[test]
fn invalid_utf8_never_panics() {
    let mut d = Decoder::new();
    let mut out = Vec::new();
    d.feed(b"data: \xff\xfe\n\n", &mut out).unwrap();
    assert_eq!(out.len(), 1);
}
