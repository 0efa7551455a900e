//! [`StreamAdapter::facts`]: the response id and finish reason a stream's
//! caller saw, per pass-through and through a translator.

use super::*;

fn ctx() -> StreamContext {
    StreamContext {
        model: "m".into(),
        include_usage: false,
        created: 1,
        id: "llmux-7".into(),
        input_tokens_estimate: 0,
    }
}

fn feed(a: &mut dyn StreamAdapter, events: &[(&str, &str)]) -> StreamFacts {
    for (event, data) in events {
        let ev = SseEvent {
            event: (*event).into(),
            data: (*data).into(),
        };
        a.on_owned(ev).expect("event");
    }
    a.facts()
}

fn facts(id: &str, reason: &str) -> StreamFacts {
    StreamFacts {
        id: Some(id.into()),
        finish_reason: Some(reason.into()),
    }
}

const OPENAI: &[(&str, &str)] = &[
    (
        "",
        r#"{"id":"chatcmpl-1","choices":[{"index":0,"delta":{"content":"hi"}}]}"#,
    ),
    (
        "",
        r#"{"id":"chatcmpl-1","choices":[{"index":0,"delta":{},"finish_reason":"length"}]}"#,
    ),
    ("", "[DONE]"),
];

#[test]
fn pass_throughs_note_the_id_and_the_finish_reason() {
    let mut o = stream_adapter(Protocol::OpenAi, Protocol::OpenAi, ctx());
    assert_eq!(feed(&mut *o, OPENAI), facts("chatcmpl-1", "length"));

    let mut a = stream_adapter(Protocol::Anthropic, Protocol::Anthropic, ctx());
    let events = [
        (
            "message_start",
            r#"{"type":"message_start","message":{"id":"msg_1","usage":{"input_tokens":3}}}"#,
        ),
        (
            "content_block_start",
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
        ),
        (
            "content_block_delta",
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"hi"}}"#,
        ),
        (
            "message_delta",
            r#"{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":1}}"#,
        ),
        ("message_stop", r#"{"type":"message_stop"}"#),
    ];
    assert_eq!(feed(&mut *a, &events), facts("msg_1", "end_turn"));

    let mut g = stream_adapter(Protocol::Gemini, Protocol::Gemini, ctx());
    let events = [
        (
            "",
            r#"{"responseId":"r-1","candidates":[{"index":0,"content":{"role":"model","parts":[{"text":"hi"}]}}]}"#,
        ),
        (
            "",
            r#"{"responseId":"r-1","candidates":[{"index":0,"content":{"role":"model","parts":[{"text":"!"}]},"finishReason":"MAX_TOKENS"}]}"#,
        ),
    ];
    assert_eq!(feed(&mut *g, &events), facts("r-1", "MAX_TOKENS"));
}

#[test]
fn translators_give_the_callers_id_and_words() {
    let mut t = stream_adapter(Protocol::OpenAi, Protocol::Anthropic, ctx());
    assert_eq!(feed(&mut *t, OPENAI), facts("llmux-7", "max_tokens"));
    let mut t = stream_adapter(Protocol::OpenAi, Protocol::Gemini, ctx());
    assert_eq!(feed(&mut *t, OPENAI), facts("llmux-7", "MAX_TOKENS"));
    let mut t = stream_adapter(Protocol::OpenAi, Protocol::Responses, ctx());
    assert_eq!(feed(&mut *t, OPENAI), facts("resp_llmux-7", "incomplete"));
    // Before the finish: the id alone.
    let mut t = stream_adapter(Protocol::OpenAi, Protocol::Anthropic, ctx());
    let f = feed(&mut *t, &OPENAI[..1]);
    assert_eq!((f.id.as_deref(), f.finish_reason), (Some("llmux-7"), None));
}
