//! The fault matrix: every upstream fault x {stream, non-stream} x {OpenAI,
//! Anthropic, Responses, Gemini} (caller and upstream speaking the same
//! protocol), plus streams across protocols through Responses (a Responses
//! caller on an Anthropic endpoint, a Chat caller on a Responses endpoint)
//! and Gemini (a Gemini caller on a Chat endpoint, an Anthropic caller on a
//! Gemini endpoint). Endpoint `a`
//! is preferred and misbehaves; `b` is healthy. Each case asserts exactly one
//! terminal event (checked by `drain`), failover or not exactly as DESIGN.md
//! says, which endpoints received what, and that it ended within its timeouts.

mod common;

use common::*;
use llmux::Protocol;
use llmux_fleet::Behavior;
use serde_json::{json, Value};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Clone, Debug, PartialEq)]
enum Expect {
    /// `a` failed with this outcome, `b` served.
    Failover(&'static str),
    /// `a` failed with this outcome, nothing else was tried.
    Fails(&'static str),
    /// `a` served this text.
    Serves(String),
}

struct Case {
    name: &'static str,
    behavior: Value,
    stream: Expect,
    non_stream: Expect,
}

fn case(name: &'static str, behavior: Value, stream: Expect, non_stream: Expect) -> Case {
    Case {
        name,
        behavior,
        stream,
        non_stream,
    }
}

/// An IMF-fixdate `secs` seconds from now.
fn http_date_in(secs: u64) -> String {
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + secs;
    let (days, rem) = (t / 86_400, t % 86_400);
    // Civil from days (proleptic Gregorian).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let wd = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][(days % 7) as usize];
    let mon = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ][(m - 1) as usize];
    format!(
        "{wd}, {d:02} {mon} {y} {:02}:{:02}:{:02} GMT",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn cases() -> Vec<Case> {
    use Expect::*;
    let hello = || Serves("Hello from a.".into());
    let mut v = vec![
        case(
            "reset before headers",
            json!({"fault": "reset_before_headers"}),
            Failover("connection_closed"),
            Failover("connection_closed"),
        ),
        case(
            "headers never finish",
            json!({"fault": "headers_never_finish"}),
            Failover("first_token_timeout"),
            Failover("first_token_timeout"),
        ),
        case(
            "timeout before first token",
            json!({"first_token_delay_ms": 3000}),
            Failover("first_token_timeout"),
            Failover("first_token_timeout"),
        ),
        case(
            "stall mid-stream",
            json!({"fault": {"stall_after": 2}}),
            Fails("idle_timeout"),
            Failover("first_token_timeout"),
        ),
        case(
            "drop mid-stream",
            json!({"fault": {"drop_after": 2}}),
            Fails("connection_closed"),
            Failover("connection_closed"),
        ),
        case(
            "malformed event",
            json!({"fault": {"malformed_after": 2}}),
            Fails("malformed_response"),
            Failover("malformed_response"),
        ),
        case(
            "error event mid-stream",
            json!({"fault": {"error_event_after": 2}}),
            Fails("provider_error"),
            Failover("provider_error"),
        ),
        case(
            "missing finish marker",
            json!({"fault": "no_finish"}),
            Fails("truncated_stream"),
            hello(),
        ),
        case(
            "missing [DONE] / message_stop",
            json!({"fault": "no_done"}),
            Fails("truncated_stream"),
            hello(),
        ),
        case(
            "200 with an error body",
            json!({"fault": "error_body200"}),
            Failover("provider_error"),
            Failover("provider_error"),
        ),
        case(
            "empty completion",
            json!({"fault": "empty_completion"}),
            Failover("provider_error"),
            Failover("provider_error"),
        ),
        case(
            "UTF-8 split across reads",
            json!({"fault": "split_utf8"}),
            Serves("héllo wörld 日本語 🎉".into()),
            Serves("héllo wörld 日本語 🎉".into()),
        ),
        case(
            "keep-alive comments and pings",
            json!({"fault": "keepalive", "chunk_delay_ms": 5}),
            hello(),
            hello(),
        ),
        case(
            "429 with Retry-After seconds",
            json!({"status": 429, "retry_after": "2"}),
            Failover("rate_limited"),
            Failover("rate_limited"),
        ),
        case(
            "429 with Retry-After date",
            json!({"status": 429, "retry_after": http_date_in(3)}),
            Failover("rate_limited"),
            Failover("rate_limited"),
        ),
    ];
    // The outcome names the status class (docs/errors.md).
    let outcome = |s: u16| match s {
        401 | 403 => "auth_rejected",
        404 => "not_found",
        429 => "rate_limited",
        400 | 413 | 422 => "bad_request",
        500..=599 => "server_error",
        _ => "http_error",
    };
    for s in [401, 403, 404, 408, 409, 425, 429, 500, 502, 503, 504, 529] {
        v.push(case(
            "retryable status",
            json!({"status": s}),
            Failover(outcome(s)),
            Failover(outcome(s)),
        ));
    }
    for s in [400, 413, 422] {
        v.push(case(
            "request error status",
            json!({"status": s}),
            Fails(outcome(s)),
            Fails(outcome(s)),
        ));
    }
    v
}

/// A Responses request.
fn responses_req(model: &str, stream: bool) -> Value {
    json!({"model": model, "stream": stream, "input": "hello"})
}

fn proto_slug(p: Protocol) -> &'static str {
    match p {
        Protocol::OpenAi => "openai",
        Protocol::Anthropic => "anthropic",
        Protocol::Responses => "responses",
        Protocol::Gemini => "gemini",
    }
}

fn text_of(out: &Outcome, protocol: Protocol, stream: bool) -> String {
    match (protocol, stream) {
        (Protocol::Responses, true) => out
            .chunks
            .iter()
            .filter(|c| c["type"] == "response.output_text.delta")
            .filter_map(|c| c["delta"].as_str())
            .collect(),
        (Protocol::Responses, false) => out.terminal["response"]["output"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|i| i["content"].as_array().into_iter().flatten())
            .filter_map(|p| p["text"].as_str())
            .collect(),
        (Protocol::Gemini, true) => gemini_text(&out.chunks),
        (Protocol::Gemini, false) => gemini_text([&out.terminal["response"]]),
        (Protocol::OpenAi, true) => out.text(),
        (Protocol::Anthropic, true) => out.anthropic_text(),
        (Protocol::OpenAi, false) => out.terminal["response"]["choices"][0]["message"]["content"]
            .as_str()
            .unwrap_or("")
            .into(),
        (Protocol::Anthropic, false) => out.terminal["response"]["content"]
            .as_array()
            .map(|b| b.iter().filter_map(|x| x["text"].as_str()).collect())
            .unwrap_or_default(),
    }
}

/// Speak HTTP/2 (h2c, prior knowledge) to both endpoints instead of HTTP/1.1.
type Http2 = bool;

fn run_case(
    c: &Case,
    protocol: Protocol,
    up: Protocol,
    stream: bool,
    http2: Http2,
) -> Result<(), String> {
    let mut b_json = c.behavior.clone();
    if c.name == "429 with Retry-After date" {
        // Dated now, not when the matrix was built: a late batch would
        // otherwise see a date already past.
        b_json["retry_after"] = json!(http_date_in(3));
    }
    let mut a = upstream(
        "a",
        serde_json::from_value::<Behavior>(b_json).map_err(|e| e.to_string())?,
    );
    let mut b = upstream("b", Behavior::default());
    a.protocol = proto_slug(up);
    b.protocol = proto_slug(up);
    a.expected_ms = Some(1.0);
    b.expected_ms = Some(100.0);
    // Tight timeouts for the faulty `a`; the healthy `b` only has to answer,
    // so a loaded machine does not turn its reply into a timeout.
    a.provider_extra = json!({"timeouts": {"first_token_ms": 300, "idle_ms": 300}});
    b.provider_extra = json!({"timeouts": {"first_token_ms": 1500, "idle_ms": 1500}});
    if http2 {
        for u in [&mut a, &mut b] {
            u.provider_extra["http"] = json!("http2");
        }
    }
    let e = engine(&[&a, &b], json!({"timeouts": {"total_ms": 5000}}));
    let body = match protocol {
        Protocol::OpenAi => chat("test/model", stream),
        Protocol::Anthropic => messages("test/model", stream),
        Protocol::Responses => responses_req("test/model", stream),
        Protocol::Gemini => gemini("test/model", stream),
    };
    let out = run_as(&e, protocol, &body);
    // A Responses stream has no `[DONE]`: its finish marker is
    // `response.completed`, which `no_done` keeps; a Gemini stream has no
    // marker but its finish reason.
    let no_done_ok = Expect::Serves("Hello from a.".into());
    // A 400/422 from an endpoint the request was translated for may be about
    // the translation: the next endpoint is tried.
    let translated_400 = Expect::Failover("translation_error");
    let status = c.behavior["status"].as_u64();
    let expect = match (up, stream) {
        _ if protocol != up && matches!(status, Some(400 | 422)) => &translated_400,
        (Protocol::Responses | Protocol::Gemini, true) if c.name.starts_with("missing [DONE]") => {
            &no_done_ok
        }
        (_, true) => &c.stream,
        (_, false) => &c.non_stream,
    };
    let who = format!(
        "{} [{protocol:?} caller, {up:?} upstream, stream={stream}, http2={http2}]",
        c.name
    );
    if protocol == Protocol::Responses && stream {
        // A broken stream ends in `response.failed`, never `response.completed`.
        let types: Vec<&str> = out
            .chunks
            .iter()
            .filter_map(|c| c["type"].as_str())
            .collect();
        let completed = types.contains(&"response.completed");
        if completed != out.ok() {
            return Err(format!(
                "{who}: response.completed iff done; events {types:?}"
            ));
        }
        if !out.ok() && !types.is_empty() && types.last() != Some(&"response.failed") {
            return Err(format!(
                "{who}: a broken stream must end in response.failed: {types:?}"
            ));
        }
    }
    let fail = |m: String| Err(format!("{who}: {m}; terminal: {}", out.terminal));
    if out.elapsed > Duration::from_millis(2500) {
        return fail(format!("took {:?}", out.elapsed));
    }
    let (na, nb) = (a.server.request_count(), b.server.request_count());
    match expect {
        Expect::Failover(outcome) => {
            if !out.ok() || out.served() != Some("b/default") {
                return fail("expected b to serve".into());
            }
            if out.attempts()
                != vec![
                    ("a/default".to_owned(), outcome.to_string()),
                    ("b/default".into(), "success".into()),
                ]
            {
                return fail(format!("attempts {:?}", out.attempts()));
            }
            if (na, nb) != (1, 1) {
                return fail(format!("requests received a={na} b={nb}"));
            }
            let version = if http2 { "HTTP/2.0" } else { "HTTP/1.1" };
            let seen = b.server.requests()[0].version.clone();
            if seen != version {
                return fail(format!("b was asked over {seen}, not {version}"));
            }
            if text_of(&out, protocol, stream) != "Hello from b." {
                return fail(format!("text {:?}", text_of(&out, protocol, stream)));
            }
            if c.name.starts_with("429") {
                // Retry-After: the next request skips a without asking it.
                let again = run_as(&e, protocol, &body);
                if again.served() != Some("b/default") || a.server.request_count() != 1 {
                    return fail("Retry-After was not honoured".into());
                }
            }
        }
        Expect::Fails(outcome) => {
            if out.ok() {
                return fail("expected an error event, got done".into());
            }
            if out.attempts() != vec![("a/default".to_owned(), outcome.to_string())] {
                return fail(format!("attempts {:?}", out.attempts()));
            }
            if nb != 0 {
                return fail("b must not be asked".into());
            }
        }
        Expect::Serves(text) => {
            if !out.ok() || out.served() != Some("a/default") {
                return fail("expected a to serve".into());
            }
            if &text_of(&out, protocol, stream) != text {
                return fail(format!("text {:?}", text_of(&out, protocol, stream)));
            }
        }
    }
    Ok(())
}

/// Runs every case in each mode, eight at a time (the cases wait on
/// timeouts more than on the CPU), and fails with every broken one.
fn run_matrix(modes: &[(Protocol, Protocol, bool)], http2: Http2) {
    let cases = cases();
    // Mode by mode, so one batch holds different cases rather than eight
    // copies of one timing-sensitive case firing at the same instant.
    let jobs: Vec<(&Case, Protocol, Protocol, bool)> = modes
        .iter()
        .flat_map(|&(p, u, s)| cases.iter().map(move |c| (c, p, u, s)))
        .collect();
    let total = jobs.len();
    let failures = std::sync::Mutex::new(Vec::new());
    for batch in jobs.chunks(8) {
        std::thread::scope(|s| {
            for &(c, p, u, st) in batch {
                let failures = &failures;
                s.spawn(move || {
                    if let Err(m) = run_case(c, p, u, st, http2) {
                        failures.lock().unwrap().push(m);
                    }
                });
            }
        });
    }
    let failures = failures.into_inner().unwrap();
    println!(
        "fault matrix (http2={http2}): {} cases x {} modes = {total} runs, {} failed",
        cases.len(),
        modes.len(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {total} failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn fault_matrix() {
    use Protocol::{Anthropic, Gemini, OpenAi, Responses};
    // (caller, upstream, stream)
    run_matrix(
        &[
            (Gemini, Gemini, true),
            (Gemini, Gemini, false),
            (Gemini, OpenAi, true),
            (Anthropic, Gemini, true),
            (OpenAi, OpenAi, true),
            (OpenAi, OpenAi, false),
            (Anthropic, Anthropic, true),
            (Anthropic, Anthropic, false),
            (Responses, Responses, true),
            (Responses, Responses, false),
            (Responses, Anthropic, true),
            (OpenAi, Responses, true),
        ],
        false,
    );
}

/// The same faults over HTTP/2 (h2c): a reset stream, a stalled stream and
/// a stream that never sends its headers are classified as their HTTP/1.1
/// counterparts and fail over the same way.
#[test]
fn fault_matrix_over_http2() {
    use Protocol::{Anthropic, OpenAi};
    run_matrix(
        &[
            (OpenAi, OpenAi, true),
            (OpenAi, OpenAi, false),
            (Anthropic, Anthropic, true),
            (Anthropic, Anthropic, false),
        ],
        true,
    );
}

#[test]
fn connection_refused_matrix() {
    for protocol in [Protocol::OpenAi, Protocol::Anthropic] {
        for stream in [true, false] {
            let mut a = upstream("a", Behavior::default());
            let mut b = upstream("b", Behavior::default());
            if protocol == Protocol::Anthropic {
                a.protocol = "anthropic";
                b.protocol = "anthropic";
            }
            a.expected_ms = Some(1.0);
            b.expected_ms = Some(100.0);
            let dead = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let cfg = config(&[&a, &b], json!({}))
                .replace(&a.server.base_url(), &format!("http://127.0.0.1:{dead}"));
            let e = llmux::Engine::from_json(&cfg).unwrap();
            let body = if protocol == Protocol::OpenAi {
                chat("test/model", stream)
            } else {
                messages("test/model", stream)
            };
            let out = run_as(&e, protocol, &body);
            assert!(out.ok());
            assert_eq!(out.attempts()[0].1, "connect_error");
            assert_eq!(out.served(), Some("b/default"));
            assert!(out.elapsed < Duration::from_secs(1));
        }
    }
}

#[test]
fn huge_response_streams_and_non_streams_intact() {
    for protocol in [Protocol::OpenAi, Protocol::Anthropic] {
        for stream in [true, false] {
            let mut a = upstream("a", behavior(json!({"fault": {"huge": 2_000_000}})));
            if protocol == Protocol::Anthropic {
                a.protocol = "anthropic";
            }
            let e = engine(&[&a], json!({}));
            let body = if protocol == Protocol::OpenAi {
                chat("test/model", stream)
            } else {
                messages("test/model", stream)
            };
            let out = run_as(&e, protocol, &body);
            assert!(out.ok(), "{protocol:?} {stream}");
            assert_eq!(
                text_of(&out, protocol, stream).len(),
                2_000_000,
                "{protocol:?} {stream}"
            );
        }
    }
}
