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

#[test]
fn frames_per_protocol() {
    let chunk = r#"{"type":"content_block_delta","index":0}"#;
    assert_eq!(
        chunk_frame(Protocol::OpenAi, "{}"),
        "data: {}\n\n",
        "Chat Completions chunks are bare data"
    );
    assert_eq!(
        chunk_frame(Protocol::Anthropic, chunk),
        format!("event: content_block_delta\ndata: {chunk}\n\n")
    );
    assert_eq!(
        chunk_frame(Protocol::Responses, "{}"),
        "event: message\ndata: {}\n\n"
    );
    assert_eq!(ping_frame(Protocol::OpenAi), ": keep-alive\n\n");
    assert_eq!(ping_frame(Protocol::Responses), ": keep-alive\n\n");
    assert!(ping_frame(Protocol::Anthropic).starts_with("event: ping\n"));
    assert_eq!(done_frame(Protocol::OpenAi), "data: [DONE]\n\n");
    assert_eq!(done_frame(Protocol::Anthropic), "");
    assert_eq!(done_frame(Protocol::Responses), "");
}

#[test]
fn error_frames_per_protocol() {
    let body = r#"{"error":{"message":"boom","type":"upstream_error","code":"http_503"}}"#;
    assert_eq!(
        error_frame(Protocol::OpenAi, body, 7),
        format!("data: {body}\n\n")
    );
    assert_eq!(
        error_frame(Protocol::Anthropic, body, 7),
        format!("event: error\ndata: {body}\n\n")
    );
    let f = error_frame(Protocol::Responses, body, 7);
    let data = f.strip_prefix("event: error\ndata: ").unwrap();
    let v: serde_json::Value = serde_json::from_str(data.trim_end()).unwrap();
    assert_eq!(v["code"], "http_503");
    assert_eq!(v["message"], "boom");
    assert_eq!(v["sequence_number"], 7);
    assert_eq!(v["error"]["type"], "upstream_error");
    // A body with no envelope still makes a well-formed event on one line.
    let f = error_frame(Protocol::Responses, "{\n}", 0);
    assert_eq!(f.matches('\n').count(), 3, "{f}");
}

#[test]
fn responses_chunks_mark_sequence_and_end() {
    let m = chunk_mark(
        Protocol::Responses,
        r#"{"type":"response.completed","sequence_number":4}"#,
    );
    assert_eq!(
        m,
        ChunkMark {
            next_seq: Some(5),
            ends_response: true
        }
    );
    let m = chunk_mark(
        Protocol::Responses,
        r#"{"type":"response.output_text.delta"}"#,
    );
    assert_eq!(m, ChunkMark::default());
    assert_eq!(
        chunk_mark(Protocol::OpenAi, r#"{"sequence_number":4}"#),
        ChunkMark::default()
    );
}
