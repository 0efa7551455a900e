//! Unit tests of `crate::protocol::anthropic`.

use super::*;

fn ctx() -> StreamContext {
    StreamContext {
        model: "m".into(),
        include_usage: true,
        created: 1,
        id: "id".into(),
        input_tokens_estimate: 0,
    }
}

fn ev(event: &str, data: &str) -> SseEvent {
    SseEvent {
        event: event.into(),
        data: data.into(),
    }
}

#[test]
fn status_types() {
    assert_eq!(error_type_for_status(400), "invalid_request_error");
    assert_eq!(error_type_for_status(401), "authentication_error");
    assert_eq!(error_type_for_status(402), "billing_error");
    assert_eq!(error_type_for_status(403), "permission_error");
    assert_eq!(error_type_for_status(404), "not_found_error");
    assert_eq!(error_type_for_status(408), "timeout_error");
    assert_eq!(error_type_for_status(409), "invalid_request_error");
    assert_eq!(error_type_for_status(413), "request_too_large");
    assert_eq!(error_type_for_status(422), "invalid_request_error");
    assert_eq!(error_type_for_status(429), "rate_limit_error");
    assert_eq!(error_type_for_status(500), "api_error");
    assert_eq!(error_type_for_status(502), "api_error");
    assert_eq!(error_type_for_status(504), "timeout_error");
    assert_eq!(error_type_for_status(529), "overloaded_error");
    assert_eq!(error_type_for_status(0), "api_error");
    assert_eq!(error_type_for_status(200), "api_error");
}

#[test]
fn error_bodies() {
    assert_eq!(
        error_body(429, "upstream_error", "slow down"),
        json!({"type":"error","error":{"type":"rate_limit_error","message":"slow down"}})
    );
    assert_eq!(
        error_body(0, "timeout", "no first token"),
        json!({"type":"error","error":{"type":"timeout_error","message":"no first token"}})
    );
    assert_eq!(
        error_body(0, "cancelled", "cancelled by host"),
        json!({"type":"error","error":{"type":"api_error","message":"cancelled by host"}})
    );
    assert_eq!(
        error_body(0, "upstream_error", "x"),
        json!({"type":"error","error":{"type":"api_error","message":"x"}})
    );
    assert_eq!(
        error_body(0, "invalid_request", "bad"),
        json!({"type":"error","error":{"type":"invalid_request_error","message":"bad"}})
    );
    // The status wins over the kind.
    assert_eq!(
        error_body(529, "timeout", "m")["error"]["type"],
        "overloaded_error"
    );
}

#[test]
fn error_messages() {
    let v = json!({"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}});
    assert_eq!(error_message(&v).as_deref(), Some("Overloaded"));
    assert_eq!(
        error_message(&json!({"error":"plain"})).as_deref(),
        Some("plain")
    );
    assert_eq!(
        error_message(&json!({"message":"top"})).as_deref(),
        Some("top")
    );
    assert_eq!(error_message(&json!({"error":{"type":"x"}})), None);
    assert_eq!(error_message(&json!([1, 2])), None);
    assert_eq!(error_message(&json!(null)), None);
}

#[test]
fn check_response_ok_and_usage() {
    let v = json!({
        "id":"msg_1","type":"message","role":"assistant","model":"claude",
        "content":[{"type":"text","text":"hi"}],
        "stop_reason":"end_turn","stop_sequence":null,
        "usage":{"input_tokens":10,"output_tokens":5,
                 "cache_read_input_tokens":100,"cache_creation_input_tokens":20}
    });
    assert_eq!(
        check_response(&v),
        Ok(Some(Usage {
            prompt_tokens: 130,
            completion_tokens: 5,
            cached_tokens: 100
        }))
    );
    let no_usage = json!({"type":"message","content":[{"type":"text","text":"x"}]});
    assert_eq!(check_response(&no_usage), Ok(None));
    let empty = json!({"type":"message","content":[]});
    assert!(matches!(
        check_response(&empty),
        Err(PayloadError::Upstream(_))
    ));
}

#[test]
fn check_response_errors() {
    let e = json!({"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}});
    assert_eq!(
        check_response(&e),
        Err(PayloadError::Upstream("Overloaded".into()))
    );
    for bad in [
        json!({"type":"message"}),
        json!({"type":"message","content":"text"}),
        json!({"content":[]}),
        json!({"type":5,"content":[]}),
        json!([]),
        json!("message"),
        json!(null),
    ] {
        assert!(
            matches!(check_response(&bad), Err(PayloadError::Malformed(_))),
            "{bad}"
        );
    }
    // Wrong-typed usage is ignored, not a panic.
    let v =
        json!({"type":"message","content":[{"type":"tool_use"}],"usage":{"input_tokens":"many"}});
    assert_eq!(
        check_response(&v),
        Ok(Some(Usage {
            prompt_tokens: 0,
            completion_tokens: 0,
            cached_tokens: 0
        }))
    );
}

#[test]
fn passthrough_full_stream() {
    let events = [
        (
            "message_start",
            json!({"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","model":"claude","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":25,"cache_read_input_tokens":50,"cache_creation_input_tokens":5,"output_tokens":1}}}),
        ),
        ("ping", json!({"type":"ping"})),
        (
            "content_block_start",
            json!({"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}),
        ),
        (
            "content_block_delta",
            json!({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}}),
        ),
        ("brand_new_event", json!({"type":"brand_new_event","x":1})),
        (
            "content_block_stop",
            json!({"type":"content_block_stop","index":0}),
        ),
        (
            "message_delta",
            json!({"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":15}}),
        ),
        ("message_stop", json!({"type":"message_stop"})),
    ];
    let mut a = Passthrough::new(ctx());
    assert_eq!(a.usage(), None);
    let mut flags = Vec::new();
    for (name, data) in &events {
        let data = data.to_string();
        let step = a.on_event(&ev(name, &data)).expect("step");
        assert_eq!(step.out, vec![data]);
        flags.push((step.content, step.finished));
    }
    assert_eq!(
        flags,
        vec![
            (false, false),
            (false, false),
            (false, false),
            (true, false),
            (false, false),
            (false, false),
            (false, false),
            (false, true)
        ]
    );
    assert_eq!(
        a.usage(),
        Some(Usage {
            prompt_tokens: 80,
            completion_tokens: 15,
            cached_tokens: 50
        })
    );
}

#[test]
fn passthrough_event_name_from_type_and_input_in_delta() {
    let mut a = Passthrough::new(ctx());
    let d = r#"{"type":"message_start","message":{"usage":{"input_tokens":0,"output_tokens":0}}}"#;
    assert!(a.on_event(&ev("", d)).is_ok());
    let d = r#"{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"input_tokens":7,"output_tokens":3}}"#;
    let s = a.on_event(&ev("", d)).expect("delta");
    assert!(!s.content);
    let s = a
        .on_event(&ev("", r#"{"type":"message_stop"}"#))
        .expect("stop");
    assert!(s.finished);
    assert_eq!(
        a.usage(),
        Some(Usage {
            prompt_tokens: 7,
            completion_tokens: 3,
            cached_tokens: 0
        })
    );
}

#[test]
fn passthrough_errors() {
    let mut a = Passthrough::new(ctx());
    let e = r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
    assert_eq!(
        a.on_event(&ev("error", e)).map(|s| s.out),
        Err(PayloadError::Upstream(
            "overloaded_error: Overloaded".into()
        ))
    );
    assert!(matches!(
        a.on_event(&ev("", e)),
        Err(PayloadError::Upstream(_))
    ));
    assert!(matches!(
        a.on_event(&ev("message_start", "{not json")),
        Err(PayloadError::Malformed(_))
    ));
    assert!(matches!(
        a.on_event(&ev("", "[DONE]")),
        Err(PayloadError::Malformed(_))
    ));
    assert!(matches!(
        a.on_event(&ev("ping", "[1]")),
        Err(PayloadError::Malformed(_))
    ));
    // Wrong shapes inside known events are tolerated.
    for d in [
        r#"{"type":"message_start","message":5}"#,
        r#"{"type":"message_start","message":{"usage":[1]}}"#,
        r#"{"type":"message_delta","usage":"x"}"#,
        r#"{"type":7}"#,
    ] {
        assert!(a.on_event(&ev("", d)).is_ok(), "{d}");
    }
}

#[test]
fn lite_reading_agrees_with_the_tree() {
    let events = [
        (
            "",
            r#"{"type":"message_start","message":{"usage":{"input_tokens":7,"cache_read_input_tokens":3}}}"#,
        ),
        ("message_start", r#"{"message":{"usage":5}}"#),
        ("message_start", r#"{"message":"x"}"#),
        (
            "",
            r#"{"type":"content_block_start","content_block":{"type":"text","text":""}}"#,
        ),
        (
            "",
            r#"{"type":"content_block_start","content_block":{"type":"t\u0065xt","text":"a"}}"#,
        ),
        (
            "",
            r#"{"type":"content_block_start","content_block":{"type":"tool_use","id":"t"}}"#,
        ),
        ("", r#"{"type":"content_block_start"}"#),
        ("", r#"{"type":"content_block_start","content_block":[]}"#),
        (
            "",
            r#"{"type":"content_block_delta","delta":{"type":"text_delta","text":"hi \"x\""}}"#,
        ),
        (
            "",
            r#"{"type":"content_block_delta","delta":{"partial_json":""}}"#,
        ),
        (
            "",
            r#"{"type":"content_block_delta","delta":{"thinking":5}}"#,
        ),
        ("content_block_delta", r#"{"delta":{"thinking":"hm"}}"#),
        (
            "",
            r#"{"type":"message_delta","usage":{"output_tokens":9,"input_tokens":1.5}}"#,
        ),
        (
            "",
            r#"{"type":"message_delta","usage":{"output_tokens":2,"output_tokens":4}}"#,
        ),
        ("", r#"{"type":"message_stop"}"#),
        ("", r#"{"type":"ping"}"#),
        ("", r#"{"type":7}"#),
        (
            "",
            r#"{"type":"error","error":{"type":"overloaded_error","message":"busy"}}"#,
        ),
        ("", "[1]"),
        ("", "{"),
        ("", " "),
    ];
    let (mut lite, mut tree) = (Passthrough::new(ctx()), Passthrough::new(ctx()));
    for (name, data) in events {
        let e = ev(name, data);
        let a = lite.on_event(&e).map(|s| (s.out, s.content, s.finished));
        let b = tree
            .read_tree(&e)
            .map(|s| (vec![data.to_owned()], s.content, s.finished));
        assert_eq!(a, b, "{name} {data}");
        assert_eq!(lite.usage(), tree.usage(), "{name} {data}");
    }
    assert!(lite.usage().is_some());
    // Plain events take the borrowed path.
    for i in [0, 3, 4, 5, 8, 12, 14, 15] {
        let (name, data) = events[i];
        assert!(lite.read_lite(&ev(name, data)).is_some(), "{data}");
    }
}
