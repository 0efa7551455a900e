//! The Gemini routes of `llmux serve`, as a real process in front of the
//! mock fleet: `generateContent`, `streamGenerateContent` (SSE with
//! `?alt=sse`, a JSON array without), `countTokens`, Google's model
//! listings, the `/v1`, `/api` and Vertex paths, slugs with `/` escaped or
//! not and `:provider` pins, keys in every place Google's clients put them
//! (and never in a log line), errors in Google's envelope, and a
//! function-calling round trip against an OpenAI and a Gemini endpoint.

use llmux_fleet::{Behavior, MockServer, ToolCallSpec};
use serde_json::{json, Value};

mod common;

use common::{catalog, client, keyed, provider, rt, serve, Gateway, KEY};

/// `demo/chat` served by one upstream of `proto`, behind the test key.
fn start(proto: &str, up: &MockServer) -> Gateway {
    let mut p = provider(proto, up);
    p["slug"] = json!("p");
    let endpoint = json!({"provider": "p", "upstream_model": "up-model",
        "context_window": 32000, "price": {"prompt": 1.0, "completion": 2.0}});
    serve(&catalog(vec![p], vec![endpoint], keyed())).start()
}

/// A tool call first, final text once the function response comes back.
fn agent_loop() -> Behavior {
    Behavior {
        text: Some(String::new()),
        tool_calls: vec![ToolCallSpec {
            name: "run_shell_command".into(),
            arguments: r#"{"command":"echo hello"}"#.into(),
        }],
        after_tool_result: Some(Box::new(Behavior {
            text: Some("The command printed hello.".into()),
            ..Default::default()
        })),
        ..Default::default()
    }
}

fn ask(text: &str) -> Value {
    json!({"contents": [{"role": "user", "parts": [{"text": text}]}],
           "tools": [{"functionDeclarations": [{"name": "run_shell_command",
               "parametersJsonSchema": {"type": "object", "properties": {"command": {"type": "string"}}}}]}]})
}

/// The `data:` payloads of an SSE body.
fn sse_data(text: &str) -> Vec<Value> {
    text.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).expect("SSE data is JSON"))
        .collect()
}

fn parts(responses: &[Value]) -> Vec<Value> {
    responses
        .iter()
        .flat_map(|r| {
            r["candidates"][0]["content"]["parts"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .collect()
}

fn text(responses: &[Value]) -> String {
    parts(responses)
        .iter()
        .filter_map(|p| p["text"].as_str())
        .collect()
}

#[test]
fn generate_stream_and_round_trip_against_openai_and_gemini_endpoints() {
    for proto in ["openai", "gemini"] {
        let up = MockServer::start("up", agent_loop()).expect("mock");
        let gw = start(proto, &up);
        rt().block_on(async {
            let c = client();
            // Turn 1, streamed over SSE, the key as x-goog-api-key.
            let url = format!(
                "{}/v1beta/models/demo/chat:streamGenerateContent?alt=sse",
                gw.url
            );
            let r = c
                .post(&url)
                .header("x-goog-api-key", KEY)
                .json(&ask("run it"))
                .send()
                .await
                .expect("send");
            assert_eq!(r.status(), 200, "{proto}");
            assert!(r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/event-stream"));
            let chunks = sse_data(&r.text().await.expect("body"));
            let call = parts(&chunks)
                .into_iter()
                .find(|p| p.get("functionCall").is_some())
                .unwrap_or_else(|| panic!("{proto}: a functionCall in {chunks:?}"));
            assert_eq!(call["functionCall"]["args"]["command"], "echo hello");
            assert_eq!(
                chunks.last().unwrap()["candidates"][0]["finishReason"],
                "STOP"
            );
            // Turn 2, whole, the key as ?key=, the slug escaped.
            let f = &call["functionCall"];
            let mut response = json!({"name": f["name"], "response": {"output": "hello"}});
            if let Some(id) = f.get("id") {
                response["id"] = id.clone();
            }
            let body = json!({"contents": [
                {"role": "user", "parts": [{"text": "run it"}]},
                {"role": "model", "parts": [call.clone()]},
                {"role": "user", "parts": [{"functionResponse": response}]}]});
            let url = format!(
                "{}/api/v1beta/models/demo%2Fchat:generateContent?key={KEY}",
                gw.url
            );
            let v: Value = c
                .post(&url)
                .json(&body)
                .send()
                .await
                .expect("send")
                .json()
                .await
                .expect("json");
            assert_eq!(
                text(std::slice::from_ref(&v)),
                "The command printed hello.",
                "{proto}: {v}"
            );
            assert_eq!(v["usageMetadata"]["promptTokenCount"], 10, "{v}");
        });
        assert_eq!(up.request_count(), 2, "{proto}");
        // A stream's log line is written when it ends, which may be just
        // after the client read its last byte.
        let gemini_lines = |log: &str| {
            log.lines()
                .filter(|l| l.contains("\"protocol\":\"gemini\""))
                .count()
        };
        let log = gw.poll_log("second Gemini line", |log| {
            (gemini_lines(log) >= 2).then(|| log.to_owned())
        });
        assert!(!log.contains(KEY), "the key leaked into a log line:\n{log}");
        assert_eq!(gemini_lines(&log), 2, "{log}");
    }
}

#[test]
fn every_path_shape_pins_array_streams_counts_and_listings() {
    let up = MockServer::start(
        "up",
        Behavior {
            text: Some("Hi there.".into()),
            ..Default::default()
        },
    )
    .expect("mock");
    let gw = start("gemini", &up);
    rt().block_on(async {
        let c = client();
        let post = |path: String| {
            c.post(format!("{}{path}", gw.url))
                .bearer_auth(KEY)
                .json(&ask("hi"))
        };
        for path in [
            "/v1beta/models/demo/chat:generateContent",
            "/v1/models/demo/chat:generateContent",
            "/v1beta/models/demo/chat:p:generateContent",
            "/api/vertex-ai/v1/publishers/demo/models/chat:generateContent",
            "/vertex-ai/v1/publishers/demo/models/chat:p:generateContent",
        ] {
            let r = post(path.to_owned()).send().await.expect("send");
            assert_eq!(r.status(), 200, "{path}");
            let v: Value = r.json().await.expect("json");
            assert_eq!(text(&[v]), "Hi there.", "{path}");
        }
        // Without alt=sse: one JSON array of the chunks.
        let r = post("/v1beta/models/demo/chat:streamGenerateContent".into())
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), 200);
        let arr: Vec<Value> = r.json().await.expect("a JSON array");
        assert!(arr.len() > 1);
        assert_eq!(text(&arr), "Hi there.");
        // countTokens: an estimate for a known model, 404 for another.
        let v: Value = post("/v1beta/models/demo/chat:countTokens".into())
            .send()
            .await
            .expect("send")
            .json()
            .await
            .expect("json");
        assert!(v["totalTokens"].as_u64().unwrap() > 0, "{v}");
        let r = post("/v1beta/models/demo/nope:countTokens".into())
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), 404);
        let v: Value = r.json().await.expect("json");
        assert_eq!(v["error"]["status"], "NOT_FOUND", "{v}");
        // A pin to an unknown provider, an unknown method: Google's envelope.
        let r = post("/v1beta/models/demo/chat:nobody:generateContent".into())
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), 404);
        let r = post("/v1beta/models/demo/chat:embedContent".into())
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), 404);
        let v: Value = r.json().await.expect("json");
        assert_eq!(v["error"]["code"], 404, "{v}");
        // Listings in Google's shape.
        let get = |path: &str| {
            c.get(format!("{}{path}", gw.url))
                .header("x-goog-api-key", KEY)
                .send()
        };
        let v: Value = get("/v1beta/models")
            .await
            .expect("send")
            .json()
            .await
            .expect("json");
        let m = &v["models"][0];
        assert_eq!(m["name"], "models/demo/chat", "{v}");
        assert_eq!(m["inputTokenLimit"], 32000);
        assert!(m["supportedGenerationMethods"]
            .as_array()
            .unwrap()
            .contains(&json!("generateContent")));
        let v: Value = get("/v1beta/models/demo/chat")
            .await
            .expect("send")
            .json()
            .await
            .expect("json");
        assert_eq!(v["name"], "models/demo/chat", "{v}");
        let v: Value = get("/api/v1/models")
            .await
            .expect("send")
            .json()
            .await
            .expect("json");
        assert!(
            v["models"].is_array(),
            "x-goog-api-key gets Google's list: {v}"
        );
        let v: Value = c
            .get(format!("{}/v1/models", gw.url))
            .bearer_auth(KEY)
            .send()
            .await
            .expect("send")
            .json()
            .await
            .expect("json");
        assert_eq!(v["object"], "list", "an OpenAI client keeps its list: {v}");
        // A wrong key: 401 in Google's envelope.
        let r = c
            .post(format!(
                "{}/v1beta/models/demo/chat:generateContent",
                gw.url
            ))
            .header("x-goog-api-key", "wrong")
            .json(&ask("hi"))
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), 401);
        let v: Value = r.json().await.expect("json");
        assert_eq!(v["error"]["status"], "UNAUTHENTICATED", "{v}");
    });
    let sent = up.requests();
    assert!(sent
        .iter()
        .all(|r| r.header("x-goog-api-key") == Some("upstream-fake-key")));
    assert!(
        sent[0]
            .path
            .starts_with("/v1beta/models/up-model:generateContent"),
        "{}",
        sent[0].path
    );
}
