//! Unit tests of `crate::protocol::openai`.

use super::*;

macro_rules! json_str {
    ($($t:tt)*) => { json!($($t)*).to_string() };
}

fn ctx(include_usage: bool) -> StreamContext {
    StreamContext {
        model: "m".into(),
        include_usage,
        created: 1,
        id: "x".into(),
        input_tokens_estimate: 0,
    }
}
fn data(s: &str) -> SseEvent {
    SseEvent {
        event: String::new(),
        data: s.into(),
    }
}

#[test]
fn role_chunk_is_not_content_text_is() {
    let mut p = Passthrough::new(ctx(false));
    let s = p
        .on_event(&data(
            r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}"#,
        ))
        .unwrap();
    assert!(!s.content);
    assert_eq!(s.out.len(), 1);
    let s = p
        .on_event(&data(
            r#"{"choices":[{"index":0,"delta":{"content":"hi"}}]}"#,
        ))
        .unwrap();
    assert!(s.content);
}

#[test]
fn lite_usage_reads_what_parse_usage_reads() {
    let shapes = [
        r#"{"prompt_tokens":12,"completion_tokens":5,"total_tokens":17}"#,
        r#"{"prompt_tokens":12,"completion_tokens":5,"prompt_tokens_details":{"cached_tokens":8}}"#,
        r#"{"prompt_tokens":null,"completion_tokens":1.5,"prompt_tokens_details":null}"#,
        r#"{"prompt_tokens":-3,"completion_tokens":"7","prompt_tokens_details":[1]}"#,
        r#"{"prompt_tokens":18446744073709551615,"prompt_tokens_details":{"cached_tokens":{}}}"#,
        r#"{"prompt_tokens":1e3,"completion_tokens":2,"extra":{"nested":[1,2]}}"#,
        r#"{}"#,
        r#"null"#,
        r#"[1,2]"#,
        r#""usage""#,
    ];
    for u in shapes {
        let body = format!(r#"{{"choices":[],"usage":{u}}}"#);
        let lite = Lite::parse(&body, "test").unwrap();
        let v: Value = serde_json::from_str(u).unwrap();
        assert_eq!(lite.usage(), parse_usage(&v), "usage {u}");
    }
}

#[test]
fn usage_chunk_forwarded_only_when_asked_and_done_needs_finish() {
    let mut p = Passthrough::new(ctx(false));
    assert!(p.on_event(&data("[DONE]")).is_err());
    let s = p
        .on_event(&data(
            r#"{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#,
        ))
        .unwrap();
    assert!(!s.content);
    let s = p
        .on_event(&data(
            r#"{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7,"prompt_tokens_details":{"cached_tokens":1}}}"#,
        ))
        .unwrap();
    assert!(s.out.is_empty());
    assert_eq!(
        p.usage(),
        Some(Usage {
            prompt_tokens: 3,
            completion_tokens: 4,
            cached_tokens: 1
        })
    );
    assert!(p.on_event(&data("[DONE]")).unwrap().finished);

    let mut p = Passthrough::new(ctx(true));
    let s = p
        .on_event(&data(r#"{"choices":[],"usage":{"prompt_tokens":3}}"#))
        .unwrap();
    assert_eq!(s.out.len(), 1);
}

#[test]
fn errors_and_garbage() {
    let mut p = Passthrough::new(ctx(false));
    assert!(matches!(
        p.on_event(&data("{not json")),
        Err(PayloadError::Malformed(_))
    ));
    assert!(matches!(
        p.on_event(&data(r#"{"error":{"message":"boom"}}"#)),
        Err(PayloadError::Upstream(m)) if m == "boom"
    ));
    assert!(p.on_event(&data(r#"{"choices":5}"#)).is_err());
    assert!(p.on_event(&data(r#"[1,2]"#)).is_err(), "not an object");
    assert!(p
        .on_event(&data(r#"{"choices":null,"error":null}"#))
        .is_ok());
    assert!(
        check_response(&json_str!({"choices": []})).is_err(),
        "empty completion"
    );
    let empty = json!({"choices": [{"message": {"role": "assistant", "content": ""}}]});
    assert!(check_response(&empty.to_string()).is_err());
    let text = json!({"choices": [{"message": {"role": "assistant", "content": "x"}}]});
    assert!(check_response(&text.to_string()).is_ok());
    let tools = json!({"choices": [{"message": {"content": null, "tool_calls": [{}]}}]});
    assert!(check_response(&tools.to_string()).is_ok());
    assert!(check_response(&json_str!({"nope": 1})).is_err());
    assert!(check_response(&json_str!({"error": "x"})).is_err());
}
