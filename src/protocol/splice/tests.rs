use super::*;

fn spliced(body: &str, model: &str, stream: bool, ask_usage: bool) -> String {
    let (text, _) = read(body.as_bytes()).unwrap();
    String::from_utf8(Body::new(text).splice(model, stream, ask_usage)).unwrap()
}

#[test]
fn keeps_every_other_byte() {
    let body = "{ \"z\" : 1,\n  \"model\":\"a/b\" , \"messages\":[{\"role\":\"user\",\"content\":\"caf\\u00e9 \\/ \\n\"}],\t\"a\":1.50e3 }  ";
    assert_eq!(
        spliced(body, "up", false, false),
        "{ \"z\" : 1,\n  \"model\":\"up\" , \"messages\":[{\"role\":\"user\",\"content\":\"caf\\u00e9 \\/ \\n\"}],\t\"a\":1.50e3 }  "
    );
}

#[test]
fn removes_llmux_fields_anywhere_and_repeated() {
    let body =
        r#"{"provider":{"hedge":true}, "model":"m","models":["x"],"messages":[],"provider":{}}"#;
    assert_eq!(
        spliced(body, "up", false, false),
        r#"{ "model":"up","messages":[]}"#
    );
    let body = r#"{"models":[], "provider":{}}"#;
    assert_eq!(spliced(body, "up", false, false), r#"{"model":"up"}"#);
    let body = "{\"model\":\"m\",\n\"provider\":{}\n}";
    assert_eq!(spliced(body, "up", false, false), "{\"model\":\"up\"\n}");
}

#[test]
fn nested_and_quoted_model_untouched() {
    let body = r#"{"tools":[{"model":"keep"}],"model":"m","x":"\"model\":\"no\"","m\u006fdel2":1}"#;
    assert_eq!(
        spliced(body, "u\"p", false, false),
        r#"{"tools":[{"model":"keep"}],"model":"u\"p","x":"\"model\":\"no\"","m\u006fdel2":1}"#
    );
    // An escaped spelling of `model` is `model`.
    let body = r#"{"m\u006fdel":"m","messages":[]}"#;
    assert_eq!(
        spliced(body, "up", false, false),
        r#"{"m\u006fdel":"up","messages":[]}"#
    );
}

#[test]
fn stream_and_usage_set_in_place() {
    let body =
        r#"{"stream":false,"model":"m","stream_options":{"a":1,"include_usage":false,"b":2}}"#;
    assert_eq!(
        spliced(body, "up", true, true),
        r#"{"stream":true,"model":"up","stream_options":{"a":1,"include_usage":true,"b":2}}"#
    );
    let body = r#"{"model":"m","stream_options":{ "a" : 1 } ,"x":0}"#;
    assert_eq!(
        spliced(body, "up", true, true),
        r#"{"model":"up","stream_options":{ "a" : 1,"include_usage":true } ,"x":0,"stream":true}"#
    );
    let body = r#"{"model":"m","stream_options":{}}"#;
    assert_eq!(
        spliced(body, "up", true, true),
        r#"{"model":"up","stream_options":{"include_usage":true},"stream":true}"#
    );
    let body = r#"{"model":"m","stream_options":null}"#;
    assert_eq!(
        spliced(body, "up", true, true),
        r#"{"model":"up","stream_options":{"include_usage":true},"stream":true}"#
    );
    let body = r#"{"model":"m"}"#;
    assert_eq!(
        spliced(body, "up", true, true),
        r#"{"model":"up","stream":true,"stream_options":{"include_usage":true}}"#
    );
    // Not a stream: `stream` and `stream_options` as the caller wrote them.
    let body = r#"{"model":"m","stream":false,"stream_options":5}"#;
    assert_eq!(
        spliced(body, "up", false, false),
        r#"{"model":"up","stream":false,"stream_options":5}"#
    );
}

#[test]
fn errors_are_the_value_parse_errors() {
    for bad in [
        "",
        "   ",
        "{",
        "[1]",
        "\"s\"",
        r#"{"a":1,}"#,
        r#"{"a":1} x"#,
        r#"{"a":"\ud800"}"#,
        r#"{"a":"\ud800\u0041"}"#,
        r#"{"a":1e400}"#,
        "{\"a\":\"\u{1}\"}",
        r#"{"a":[1,2}"#,
        r#"{"a\q":1}"#,
        &format!("{{\"a\":{}{}}}", "[".repeat(200), "]".repeat(200)),
    ] {
        let want = serde_json::from_str::<Value>(bad);
        let got = read(bad.as_bytes()).map(|_| ());
        match want {
            Err(e) => assert_eq!(got, Err(ReadError::Json(e.to_string())), "{bad}"),
            Ok(Value::Object(_)) => assert_eq!(got, Ok(()), "{bad}"),
            Ok(_) => assert_eq!(got, Err(ReadError::NotObject), "{bad}"),
        }
    }
    let not_utf8 = b"{\"a\":\"\xff\"}";
    let want = serde_json::from_slice::<Value>(not_utf8)
        .unwrap_err()
        .to_string();
    assert_eq!(read(not_utf8).map(|_| ()), Err(ReadError::Json(want)));
}

#[test]
fn facts_are_read_typed_last_one_wins() {
    let body = r#"{"model":"a","model":"b\n","stream":true,"stream_options":{"include_usage":true},
        "metadata":{"user_id":"u"},"user":7,"messages":[],"input":"hi","provider":{"x":1},"models":["m"]}"#;
    let (_, f) = read(body.as_bytes()).unwrap();
    assert_eq!(f.model, Some(Shape::Str("b\n".into())));
    assert_eq!(f.stream, Some(Shape::Bool(true)));
    assert_eq!(f.include_usage, Some(Shape::Bool(true)));
    assert_eq!(f.user_id, Some(Shape::Str("u".into())));
    assert_eq!(f.user, Some(Shape::Number));
    assert_eq!(f.messages, Some(Shape::Array));
    assert_eq!(f.input, Some(Shape::Str("hi".into())));
    assert_eq!(f.provider, Some(serde_json::json!({"x": 1})));
    assert_eq!(f.models, Some(serde_json::json!(["m"])));
}

#[test]
fn tree_and_estimate_match_the_old_path() {
    let body = r#"{ "model":"m", "provider":{}, "messages" : [ {"content":"caf\u00e9 \"q\" \/ \u0001 \ud83d\ude00 é"} ],
        "system":"s", "models":[] }"#;
    let (text, _) = read(body.as_bytes()).unwrap();
    let b = Body::new(text);
    let mut want: Map<String, Value> = serde_json::from_str(body).unwrap();
    want.shift_remove("provider");
    want.shift_remove("models");
    assert_eq!(b.tree(), &want);
    assert_eq!(
        b.prompt_tokens_estimate(),
        crate::request::estimate_prompt_tokens(&want)
    );
    assert_eq!(b.raw("system"), Some(r#""s""#));
}

#[test]
fn output_limit_read_in_the_validating_pass() {
    let limit = |body: &str| read(body.as_bytes()).unwrap().1.output_limit();
    assert_eq!(
        limit(r#"{"max_tokens":64,"max_output_tokens":9}"#),
        Some(64)
    );
    assert_eq!(limit(r#"{"max_completion_tokens":32}"#), Some(32));
    assert_eq!(limit(r#"{"max_output_tokens":7,"x":[1]}"#), Some(7));
    // As `Value::as_u64` reads them: not negative, not a float or string.
    assert_eq!(limit(r#"{"max_tokens":-1,"max_output_tokens":5}"#), Some(5));
    assert_eq!(limit(r#"{"max_tokens":1.5}"#), None);
    assert_eq!(
        limit(r#"{"max_tokens":"8","max_completion_tokens":{"a":[]}}"#),
        None
    );
    assert_eq!(limit(r#"{"messages":[]}"#), None);
    // Gemini's, inside `generationConfig`, apart.
    let gemini = |body: &str| read(body.as_bytes()).unwrap().1.gemini_output_limit;
    let body = r#"{"contents":[],"generationConfig":{"temperature":1,"maxOutputTokens":12}}"#;
    assert_eq!((gemini(body), limit(body)), (Some(12), None));
    assert_eq!(
        gemini(r#"{"generationConfig":{"maxOutputTokens":-2}}"#),
        None
    );
    assert!(read(br#"{"generationConfig":{"maxOutputTokens":1,}}"#).is_err());
    // A bad value inside is still a JSON error, as in a tree.
    assert!(read(br#"{"max_tokens":[1,]}"#).is_err());
}
