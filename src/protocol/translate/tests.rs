//! Unit tests of `crate::protocol::translate`.

use super::*;

fn map(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        other => panic!("not an object: {other}"),
    }
}

fn o2a(v: Value) -> Result<Value, PayloadError> {
    openai_request_to_anthropic(&map(v))
}

fn a2o(v: Value) -> Result<Value, PayloadError> {
    anthropic_request_to_openai(&map(v))
}

fn err_text(r: Result<Value, PayloadError>) -> String {
    match r {
        Err(PayloadError::Malformed(m)) => m,
        other => panic!("expected a Malformed error, got {other:?}"),
    }
}

fn ctx(include_usage: bool) -> StreamContext {
    StreamContext {
        model: "vendor/model".into(),
        include_usage,
        created: 1_700_000_000,
        id: "req-1".into(),
        input_tokens_estimate: 0,
    }
}

fn ev(event: &str, data: &Value) -> SseEvent {
    SseEvent {
        event: event.into(),
        data: data.to_string(),
    }
}

fn raw(data: &str) -> SseEvent {
    SseEvent {
        event: String::new(),
        data: data.into(),
    }
}

fn parse_all(out: &[String]) -> Vec<Value> {
    out.iter()
        .map(|s| serde_json::from_str(s).expect("adapter output is JSON"))
        .collect()
}

// -- requests: OpenAI -> Anthropic ------------------------------------

#[test]
fn o2a_basic_fields_and_drops() {
    let out = o2a(json!({
        "model": "gpt-x",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": "Answer in French."},
            {"role": "user", "content": "Hello", "name": "bob"}
        ],
        "stop": "END",
        "temperature": 0.5,
        "top_p": 0.9,
        "user": "user-42",
        "stream": true,
        "stream_options": {"include_usage": true},
        "n": 1,
        "seed": 7,
        "presence_penalty": 0.1,
        "frequency_penalty": 0.2,
        "logit_bias": {"50256": -100},
        "logprobs": false,
        "response_format": {"type": "text"},
        "metadata": {"k": "v"},
        "store": false,
        "service_tier": "auto",
        "some_future_field": 1
    }))
    .expect("translates");
    assert_eq!(
        out,
        json!({
            "model": "gpt-x",
            "system": "Be brief.\n\nAnswer in French.",
            "messages": [{"role": "user", "content": "Hello"}],
            "max_tokens": 4096,
            "stop_sequences": ["END"],
            "temperature": 0.5,
            "top_p": 0.9,
            "metadata": {"user_id": "user-42"},
            "stream": true
        })
    );
}

#[test]
fn o2a_max_tokens_and_stop_list() {
    let out = o2a(json!({
        "messages": [{"role": "user", "content": "x"}],
        "max_tokens": 100,
        "max_completion_tokens": 200,
        "stop": ["a", "", "b"]
    }))
    .expect("translates");
    assert_eq!(out["max_tokens"], 200);
    assert_eq!(out["stop_sequences"], json!(["a", "b"]));
    let out = o2a(json!({"messages": [], "max_tokens": 100, "stop": null})).expect("ok");
    assert_eq!(out, json!({"messages": [], "max_tokens": 100}));
}

#[test]
fn o2a_tool_conversation() {
    let out = o2a(json!({
        "messages": [
            {"role": "user", "content": "Weather in Paris and Rome?"},
            {"role": "assistant", "content": "Checking.", "tool_calls": [
                {"id": "call_1", "type": "function",
                 "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "call_2", "type": "function",
                 "function": {"name": "weather", "arguments": "{\"city\":\"Rome\"}"}}
            ]},
            {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
            {"role": "tool", "tool_call_id": "call_2",
             "content": [{"type": "text", "text": "21C"}]},
            {"role": "user", "content": "Thanks, which is warmer?"}
        ],
        "tools": [{"type": "function", "function": {
            "name": "weather", "description": "Get weather", "strict": true,
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                           "required": ["city"]}}},
            {"type": "function", "function": {"name": "noop"}}],
        "tool_choice": {"type": "function", "function": {"name": "weather"}},
        "parallel_tool_calls": false
    }))
    .expect("translates");
    assert_eq!(
        out,
        json!({
            "messages": [
                {"role": "user", "content": "Weather in Paris and Rome?"},
                {"role": "assistant", "content": [
                    {"type": "text", "text": "Checking."},
                    {"type": "tool_use", "id": "call_1", "name": "weather", "input": {"city": "Paris"}},
                    {"type": "tool_use", "id": "call_2", "name": "weather", "input": {"city": "Rome"}}
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "call_1", "content": "18C"},
                    {"type": "tool_result", "tool_use_id": "call_2",
                     "content": [{"type": "text", "text": "21C"}]},
                    {"type": "text", "text": "Thanks, which is warmer?"}
                ]}
            ],
            "max_tokens": 4096,
            "tools": [
                {"name": "weather", "description": "Get weather",
                 "input_schema": {"type": "object", "properties": {"city": {"type": "string"}},
                                  "required": ["city"]}},
                {"name": "noop", "input_schema": {"type": "object", "properties": {}}}
            ],
            "tool_choice": {"type": "tool", "name": "weather", "disable_parallel_tool_use": true}
        })
    );
}

#[test]
fn o2a_merging_and_tool_results_first() {
    let out = o2a(json!({
        "messages": [
            {"role": "user", "content": "one"},
            {"role": "user", "content": [{"type": "text", "text": "two"}]},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": ""}}]},
            {"role": "assistant", "content": "more"},
            {"role": "user", "content": "interjection"},
            {"role": "tool", "tool_call_id": "c1", "content": "done"},
            {"role": "system", "content": "late system"}
        ]
    }))
    .expect("translates");
    assert_eq!(
        out,
        json!({
            "system": "late system",
            "messages": [
                {"role": "user", "content": [
                    {"type": "text", "text": "one"}, {"type": "text", "text": "two"}]},
                {"role": "assistant", "content": [
                    {"type": "tool_use", "id": "c1", "name": "f", "input": {}},
                    {"type": "text", "text": "more"}]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "c1", "content": "done"},
                    {"type": "text", "text": "interjection"}]}
            ],
            "max_tokens": 4096
        })
    );
}

#[test]
fn o2a_tool_ids_are_sanitised_consistently() {
    let out = o2a(json!({"messages": [
        {"role": "assistant", "tool_calls": [{"id": "functions.get:0", "type": "function",
            "function": {"name": "get", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "functions.get:0", "content": "ok"}
    ]}))
    .expect("translates");
    assert_eq!(out["messages"][0]["content"][0]["id"], "functions_get_0");
    assert_eq!(
        out["messages"][1]["content"][0]["tool_use_id"],
        "functions_get_0"
    );
}

#[test]
fn o2a_images_and_system_blocks() {
    let out = o2a(json!({
        "messages": [
            {"role": "system", "content": "plain"},
            {"role": "system", "content": [
                {"type": "text", "text": "cached", "cache_control": {"type": "ephemeral"}}]},
            {"role": "user", "content": [
                {"type": "text", "text": "What are these?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "high"}},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}}
            ]}
        ]
    }))
    .expect("translates");
    assert_eq!(
        out,
        json!({
            "system": [
                {"type": "text", "text": "plain"},
                {"type": "text", "text": "cached", "cache_control": {"type": "ephemeral"}}
            ],
            "messages": [{"role": "user", "content": [
                {"type": "text", "text": "What are these?"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
                {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}}
            ]}],
            "max_tokens": 4096
        })
    );
}

#[test]
fn o2a_tool_choice_variants() {
    let tools =
        json!([{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]);
    let with = |choice: Value, parallel: Value| {
        let mut body = json!({"messages": [], "tools": tools.clone()});
        if !choice.is_null() {
            body["tool_choice"] = choice;
        }
        if !parallel.is_null() {
            body["parallel_tool_calls"] = parallel;
        }
        o2a(body).expect("translates").get("tool_choice").cloned()
    };
    assert_eq!(
        with(json!("auto"), Value::Null),
        Some(json!({"type": "auto"}))
    );
    assert_eq!(
        with(json!("required"), Value::Null),
        Some(json!({"type": "any"}))
    );
    assert_eq!(
        with(json!("none"), Value::Null),
        Some(json!({"type": "none"}))
    );
    assert_eq!(
        with(
            json!({"type": "function", "function": {"name": "f"}}),
            Value::Null
        ),
        Some(json!({"type": "tool", "name": "f"}))
    );
    assert_eq!(with(Value::Null, Value::Null), None);
    assert_eq!(with(Value::Null, json!(true)), None);
    assert_eq!(
        with(Value::Null, json!(false)),
        Some(json!({"type": "auto", "disable_parallel_tool_use": true}))
    );
    assert_eq!(
        with(json!("required"), json!(false)),
        Some(json!({"type": "any", "disable_parallel_tool_use": true}))
    );
    assert_eq!(
        with(json!("none"), json!(false)),
        Some(json!({"type": "none"}))
    );
    // No tools: no tool_choice at all.
    let out = o2a(json!({"messages": [], "tool_choice": "auto", "parallel_tool_calls": false}))
        .expect("ok");
    assert_eq!(out.get("tool_choice"), None);
    // Unsupported forms.
    assert!(err_text(o2a(
        json!({"messages": [], "tools": tools, "tool_choice": "sometimes"})
    ))
    .contains("tool_choice"));
    assert!(err_text(o2a(json!({"messages": [], "tools": tools,
        "tool_choice": {"type": "allowed_tools", "allowed_tools": {}}})))
    .contains("allowed_tools"));
}

#[test]
fn o2a_reasoning_effort() {
    for (effort, budget, max) in [
        ("minimal", 1024, 4096),
        ("low", 1024, 4096),
        ("medium", 4096, 4096 + 4096),
        ("high", 16384, 16384 + 4096),
    ] {
        let out = o2a(json!({
            "messages": [{"role": "user", "content": "think"}],
            "reasoning_effort": effort,
            "temperature": 0.2,
            "top_p": 0.5
        }))
        .expect("translates");
        assert_eq!(
            out,
            json!({
                "messages": [{"role": "user", "content": "think"}],
                "thinking": {"type": "enabled", "budget_tokens": budget},
                "max_tokens": max
            }),
            "{effort}"
        );
    }
    // An explicit max_tokens above the budget is kept.
    let out =
        o2a(json!({"messages": [], "reasoning_effort": "high", "max_tokens": 20000})).expect("ok");
    assert_eq!(out["max_tokens"], 20000);
    // none: no thinking, sampling kept.
    let out =
        o2a(json!({"messages": [], "reasoning_effort": "none", "temperature": 0.3})).expect("ok");
    assert_eq!(
        out,
        json!({"messages": [], "max_tokens": 4096, "temperature": 0.3})
    );
    // Anthropic's own thinking object wins and is passed through.
    let out = o2a(json!({
        "messages": [],
        "reasoning_effort": "low",
        "thinking": {"type": "enabled", "budget_tokens": 3000},
        "max_tokens": 1000,
        "top_k": 5
    }))
    .expect("ok");
    assert_eq!(
        out,
        json!({"messages": [], "thinking": {"type": "enabled", "budget_tokens": 3000},
               "max_tokens": 7096})
    );
    let out =
        o2a(json!({"messages": [], "thinking": {"type": "disabled"}, "top_k": 5})).expect("ok");
    assert_eq!(
        out,
        json!({"messages": [], "thinking": {"type": "disabled"}, "max_tokens": 4096, "top_k": 5})
    );
    assert!(
        err_text(o2a(json!({"messages": [], "reasoning_effort": "extreme"})))
            .contains("reasoning_effort")
    );
}

#[test]
fn o2a_refusals() {
    let cases = [
        (json!({"messages": [], "n": 2}), "`n`"),
        (
            json!({"messages": [], "response_format": {"type": "json_object"}}),
            "json_object",
        ),
        (
            json!({"messages": [], "response_format": {"type": "json_schema", "json_schema": {}}}),
            "json_schema",
        ),
        (json!({"messages": [], "logprobs": true}), "logprobs"),
        (json!({"messages": [], "top_logprobs": 3}), "top_logprobs"),
        (json!({"messages": [], "audio": {"voice": "x"}}), "audio"),
        (
            json!({"messages": [], "modalities": ["text", "audio"]}),
            "modalities",
        ),
        (
            json!({"messages": [], "web_search_options": {}}),
            "web_search_options",
        ),
        (
            json!({"messages": [], "functions": [{"name": "f"}]}),
            "functions",
        ),
        (
            json!({"messages": [{"role": "function", "name": "f", "content": "x"}]}),
            "messages[0].role",
        ),
        (
            json!({"messages": [{"role": "wizard", "content": "x"}]}),
            "wizard",
        ),
        (
            json!({"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]}),
            "messages[0].content[0]",
        ),
        (
            json!({"messages": [{"role": "user", "content": [{"type": "file", "file": {}}]}]}),
            "file",
        ),
        (
            json!({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x/y.png"}}]}]}),
            "messages[0].content[0].image_url.url",
        ),
        (
            json!({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png,notbase64"}}]}]}),
            "image_url.url",
        ),
        (
            json!({"messages": [{"role": "assistant", "tool_calls": [
            {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{oops"}}]}]}),
            "messages[0].tool_calls[0].function.arguments",
        ),
        (
            json!({"messages": [{"role": "assistant", "tool_calls": [
            {"id": "c", "type": "function", "function": {"name": "f", "arguments": "[1,2]"}}]}]}),
            "messages[0].tool_calls[0].function.arguments",
        ),
        (
            json!({"messages": [{"role": "tool", "content": "x"}]}),
            "tool_call_id",
        ),
        (
            json!({"messages": [], "tools": [{"type": "custom", "custom": {"name": "g"}}]}),
            "tools[0].type",
        ),
        (json!({"model": "m"}), "messages"),
    ];
    for (body, needle) in cases {
        let msg = err_text(o2a(body.clone()));
        assert!(
            msg.contains(needle),
            "{body} -> {msg} (expected `{needle}`)"
        );
    }
}

// -- requests: Anthropic -> OpenAI ------------------------------------

#[test]
fn a2o_full_conversation() {
    let out = a2o(json!({
        "model": "claude-x",
        "system": [{"type": "text", "text": "Be brief."},
                   {"type": "text", "text": "Cite.", "cache_control": {"type": "ephemeral"}}],
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "Look:"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "AAAA"}},
                {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}}
            ]},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "hmm", "signature": "sig"},
                {"type": "text", "text": "Let me check."},
                {"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {"q": "cats"}},
                {"type": "tool_use", "id": "toolu_2", "name": "lookup", "input": {}}
            ]},
            {"role": "user", "content": [
                {"type": "text", "text": "Here you go."},
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "found 3"},
                {"type": "tool_result", "tool_use_id": "toolu_2", "is_error": true,
                 "content": [{"type": "text", "text": "line 1"}, {"type": "text", "text": "line 2"}]}
            ]},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_3", "name": "lookup", "input": {"q": "dogs"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_3"}]},
            {"role": "assistant", "content": "Done."}
        ],
        "max_tokens": 1024,
        "stop_sequences": ["STOP"],
        "temperature": 0.7,
        "top_p": 0.9,
        "top_k": 40,
        "tools": [{"name": "lookup", "description": "Look up", "cache_control": {"type": "ephemeral"},
                   "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}}}],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": true},
        "metadata": {"user_id": "u-1"},
        "thinking": {"type": "enabled", "budget_tokens": 4000},
        "stream": false,
        "service_tier": "auto"
    }))
    .expect("translates");
    assert_eq!(
        out,
        json!({
            "model": "claude-x",
            "messages": [
                {"role": "system", "content": "Be brief.\n\nCite."},
                {"role": "user", "content": [
                    {"type": "text", "text": "Look:"},
                    {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,AAAA"}},
                    {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}
                ]},
                {"role": "assistant", "content": "Let me check.", "tool_calls": [
                    {"id": "toolu_1", "type": "function", "function": {"name": "lookup", "arguments": "{\"q\":\"cats\"}"}},
                    {"id": "toolu_2", "type": "function", "function": {"name": "lookup", "arguments": "{}"}}
                ]},
                {"role": "tool", "tool_call_id": "toolu_1", "content": "found 3"},
                {"role": "tool", "tool_call_id": "toolu_2", "content": "line 1\nline 2"},
                {"role": "user", "content": "Here you go."},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "toolu_3", "type": "function", "function": {"name": "lookup", "arguments": "{\"q\":\"dogs\"}"}}
                ]},
                {"role": "tool", "tool_call_id": "toolu_3", "content": ""},
                {"role": "assistant", "content": "Done."}
            ],
            "max_completion_tokens": 1024,
            "stop": ["STOP"],
            "temperature": 0.7,
            "top_p": 0.9,
            "tools": [{"type": "function", "function": {"name": "lookup", "description": "Look up",
                "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}}],
            "tool_choice": "required",
            "parallel_tool_calls": false,
            "user": "u-1",
            "reasoning_effort": "medium",
            "stream": false
        })
    );
}

#[test]
fn a2o_thinking_budgets_and_tool_choices() {
    for (budget, effort) in [
        (1024, "low"),
        (2048, "low"),
        (2049, "medium"),
        (8192, "medium"),
        (8193, "high"),
        (32000, "high"),
    ] {
        let out = a2o(json!({"messages": [], "max_tokens": 9,
            "thinking": {"type": "enabled", "budget_tokens": budget}}))
        .expect("ok");
        assert_eq!(out["reasoning_effort"], effort, "{budget}");
    }
    let out = a2o(json!({"messages": [], "thinking": {"type": "disabled"}})).expect("ok");
    assert_eq!(out, json!({"messages": []}));
    for (choice, expected) in [
        (json!({"type": "auto"}), json!("auto")),
        (json!({"type": "any"}), json!("required")),
        (json!({"type": "none"}), json!("none")),
        (
            json!({"type": "tool", "name": "f"}),
            json!({"type": "function", "function": {"name": "f"}}),
        ),
    ] {
        let out = a2o(json!({"messages": [], "tool_choice": choice})).expect("ok");
        assert_eq!(out, json!({"messages": [], "tool_choice": expected}));
    }
    let out = a2o(json!({"messages": [], "system": "sys",
        "tool_choice": {"type": "auto", "disable_parallel_tool_use": false}}))
    .expect("ok");
    assert_eq!(
        out,
        json!({"messages": [{"role": "system", "content": "sys"}], "tool_choice": "auto"})
    );
}

/// What Claude Code 2.1 sends in normal use translates to OpenAI: the
/// in-`messages` system turn, adaptive thinking, context management,
/// effort, deferred tools and the tool search tool, cache_control
/// everywhere, `is_error` tool results, tool references.
#[test]
fn a2o_claude_code_request() {
    let out = a2o(json!({
        "model": "m", "max_tokens": 32000, "stream": true,
        "system": [{"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}},
                   {"type": "text", "text": "Be careful."}],
        "messages": [
            {"role": "system", "content": [{"type": "text", "text": "<env>cwd: /tmp</env>"}]},
            {"role": "user", "content": [{"type": "text", "text": "run echo", "cache_control": {"type": "ephemeral"}}]},
            {"role": "assistant", "content": [{"type": "thinking", "thinking": "t", "signature": "s"},
                {"type": "tool_use", "id": "toolu_1", "name": "Bash", "input": {"command": "echo hi"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "is_error": false,
                "cache_control": {"type": "ephemeral"},
                "content": [{"type": "text", "text": "hi"}, {"type": "tool_reference", "tool_name": "Read"}]}]}
        ],
        "tools": [{"name": "Bash", "description": "run", "input_schema": {"type": "object"}, "cache_control": {"type": "ephemeral"}},
                  {"name": "Read", "input_schema": {"type": "object"}, "defer_loading": true},
                  {"type": "tool_search_tool_regex_20251119", "name": "tool_search_tool_regex"}],
        "thinking": {"type": "adaptive", "display": "omitted"},
        "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        "output_config": {"effort": "high"},
        "metadata": {"user_id": "{\"device_id\":\"d\",\"session_id\":\"s\"}"}
    }))
    .expect("Claude Code's request translates");
    assert_eq!(out["max_completion_tokens"], 32000);
    let msgs = out["messages"].as_array().expect("messages");
    assert_eq!(
        msgs[0],
        json!({"role": "system", "content": "You are Claude Code.\n\nBe careful."})
    );
    assert_eq!(
        msgs[1],
        json!({"role": "system", "content": "<env>cwd: /tmp</env>"})
    );
    assert_eq!(msgs[3]["tool_calls"][0]["function"]["name"], "Bash");
    assert_eq!(
        msgs[4],
        json!({"role": "tool", "tool_call_id": "toolu_1", "content": "hi"})
    );
    let img = a2o(json!({"messages": [{"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "toolu_2", "content": [
            {"type": "text", "text": "the file"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}}]}]}]}))
    .expect("an image tool result translates");
    assert_eq!(
        img["messages"][0],
        json!({"role": "tool", "tool_call_id": "toolu_2", "content": "the file"})
    );
    assert_eq!(img["messages"][1]["role"], "user");
    assert_eq!(
        img["messages"][1]["content"][1]["image_url"]["url"],
        "data:image/png;base64,AAAA"
    );
    let tools = out["tools"].as_array().expect("tools");
    assert_eq!(
        tools.len(),
        2,
        "the tool search tool is dropped, deferred tools sent in full"
    );
    for k in [
        "thinking",
        "context_management",
        "output_config",
        "reasoning_effort",
    ] {
        assert!(out.get(k).is_none(), "{k} must not reach OpenAI");
    }
}

#[test]
fn a2o_refusals() {
    let cases = [
        (
            json!({"messages": [], "mcp_servers": [{"url": "x"}]}),
            "mcp_servers",
        ),
        (
            json!({"messages": [], "tools": [{"type": "web_search_20250305", "name": "web_search"}]}),
            "tools[0]",
        ),
        (
            json!({"messages": [{"role": "user", "content": [{"type": "document", "source": {}}]}]}),
            "messages[0].content[0]",
        ),
        (
            json!({"messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t",
            "content": [{"type": "document", "source": {}}]}]}]}),
            "messages[0].content[0].content[0]",
        ),
        (
            json!({"messages": [{"role": "user", "content": [{"type": "tool_use", "id": "t", "name": "n", "input": {}}]}]}),
            "tool_use",
        ),
        (
            json!({"messages": [{"role": "assistant", "content": [{"type": "image", "source": {}}]}]}),
            "image",
        ),
        (
            json!({"messages": [{"role": "narrator", "content": "x"}]}),
            "messages[0].role",
        ),
        (
            json!({"messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "file", "file_id": "f"}}]}]}),
            "source.type",
        ),
        (
            json!({"messages": [], "tool_choice": {"type": "maybe"}}),
            "tool_choice",
        ),
        (
            json!({"messages": [], "system": [{"type": "image"}]}),
            "system[0]",
        ),
        (json!({"max_tokens": 5}), "messages"),
    ];
    for (body, needle) in cases {
        let msg = err_text(a2o(body.clone()));
        assert!(
            msg.contains(needle),
            "{body} -> {msg} (expected `{needle}`)"
        );
    }
}

// -- round trips --------------------------------------------------------

#[test]
fn round_trip_openai_anthropic_openai() {
    let original = json!({
        "model": "m",
        "messages": [
            {"role": "system", "content": "You are a helpful agent."},
            {"role": "user", "content": "Weather in Paris and Rome?"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "call_2", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Rome\"}"}}
            ]},
            {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
            {"role": "tool", "tool_call_id": "call_2", "content": "21C"},
            {"role": "assistant", "content": "Rome is warmer."},
            {"role": "user", "content": [
                {"type": "text", "text": "And this picture?"},
                {"type": "image_url", "image_url": {"url": "data:image/webp;base64,UklGR"}}
            ]}
        ],
        "tools": [{"type": "function", "function": {"name": "weather", "description": "Weather by city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
        "tool_choice": "auto",
        "parallel_tool_calls": false,
        "max_completion_tokens": 500,
        "stop": ["\n\n"],
        "temperature": 0.4,
        "user": "u",
        "stream": true
    });
    let anthropic = o2a(original.clone()).expect("to anthropic");
    let back = a2o(anthropic).expect("back to openai");
    assert_eq!(back, original);
}

#[test]
fn round_trip_anthropic_openai_anthropic() {
    let original = json!({
        "model": "m",
        "system": "sys",
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": [
                {"type": "text", "text": "Calling."},
                {"type": "tool_use", "id": "t1", "name": "f", "input": {"a": [1, 2]}}
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "t1", "content": "ok"},
                {"type": "text", "text": "next"}
            ]}
        ],
        "max_tokens": 300,
        "stop_sequences": ["x"],
        "tools": [{"name": "f", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "tool", "name": "f", "disable_parallel_tool_use": true},
        "metadata": {"user_id": "u"}
    });
    let openai = a2o(original.clone()).expect("to openai");
    let back = o2a(openai).expect("back");
    assert_eq!(back, original);
}

// -- responses ----------------------------------------------------------

#[test]
fn response_anthropic_to_openai() {
    let v = json!({
        "id": "msg_01", "type": "message", "role": "assistant", "model": "claude-x",
        "content": [
            {"type": "thinking", "thinking": "Let me think.", "signature": "s"},
            {"type": "text", "text": "Hello "},
            {"type": "text", "text": "world."},
            {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"x": 1}},
            {"type": "server_tool_use", "id": "srv", "name": "web_search", "input": {}}
        ],
        "stop_reason": "tool_use", "stop_sequence": null,
        "usage": {"input_tokens": 10, "output_tokens": 20,
                  "cache_read_input_tokens": 30, "cache_creation_input_tokens": 5}
    });
    let out = anthropic_response_to_openai(&v, 1_700_000_000).expect("translates");
    assert_eq!(
        out,
        json!({
            "id": "msg_01", "object": "chat.completion", "created": 1_700_000_000, "model": "claude-x",
            "choices": [{
                "index": 0,
                "message": {
                    "role": "assistant", "content": "Hello world.", "refusal": null,
                    "reasoning_content": "Let me think.",
                    "tool_calls": [{"id": "toolu_1", "type": "function",
                                    "function": {"name": "f", "arguments": "{\"x\":1}"}}]
                },
                "logprobs": null,
                "finish_reason": "tool_calls"
            }],
            "usage": {"prompt_tokens": 45, "completion_tokens": 20, "total_tokens": 65,
                      "prompt_tokens_details": {"cached_tokens": 30}}
        })
    );
}

#[test]
fn response_anthropic_to_openai_details() {
    let only_tool = json!({"id": "m", "type": "message", "model": "c", "content": [
        {"type": "tool_use", "id": "t", "name": "f", "input": {}}], "stop_reason": "tool_use"});
    let out = anthropic_response_to_openai(&only_tool, 1_700_000_000).expect("ok");
    assert_eq!(out["choices"][0]["message"]["content"], Value::Null);
    assert_eq!(out.get("usage"), None);
    let empty = json!({"id": "m", "type": "message", "model": "c", "content": [], "stop_reason": "end_turn"});
    let out = anthropic_response_to_openai(&empty, 1_700_000_000).expect("ok");
    assert_eq!(out["choices"][0]["message"]["content"], "");
    for (stop, finish) in [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("pause_turn", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("something_new", "stop"),
    ] {
        let v = json!({"type": "message", "content": [], "stop_reason": stop});
        let out = anthropic_response_to_openai(&v, 1_700_000_000).expect("ok");
        assert_eq!(out["choices"][0]["finish_reason"], finish, "{stop}");
    }
    let err = json!({"type": "error", "error": {"type": "api_error", "message": "boom"}});
    assert_eq!(
        anthropic_response_to_openai(&err, 1_700_000_000),
        Err(PayloadError::Upstream("boom".into()))
    );
}

#[test]
fn response_openai_to_anthropic() {
    let v = json!({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-x",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": "Sure.", "reasoning_content": "dropped",
            "tool_calls": [
                {"id": "call_a", "type": "function", "function": {"name": "f", "arguments": "{\"k\":\"v\"}"}},
                {"id": "call_b", "type": "function", "function": {"name": "g", "arguments": ""}}
            ]}}],
        "usage": {"prompt_tokens": 100, "completion_tokens": 7, "total_tokens": 107,
                  "prompt_tokens_details": {"cached_tokens": 60}}
    });
    assert_eq!(
        openai_response_to_anthropic(&v).expect("translates"),
        json!({
            "id": "chatcmpl-1", "type": "message", "role": "assistant", "model": "gpt-x",
            "content": [
                {"type": "text", "text": "Sure."},
                {"type": "tool_use", "id": "call_a", "name": "f", "input": {"k": "v"}},
                {"type": "tool_use", "id": "call_b", "name": "g", "input": {}}
            ],
            "stop_reason": "tool_use", "stop_sequence": null,
            "usage": {"input_tokens": 40, "cache_read_input_tokens": 60, "output_tokens": 7}
        })
    );
}

#[test]
fn response_openai_to_anthropic_details() {
    for (finish, stop) in [
        (json!("stop"), "end_turn"),
        (json!("length"), "max_tokens"),
        (json!("tool_calls"), "tool_use"),
        (json!("content_filter"), "refusal"),
        (json!(null), "end_turn"),
    ] {
        let v = json!({"id": "x", "model": "m", "choices": [{"index": 0, "finish_reason": finish,
            "message": {"role": "assistant", "content": ""}}]});
        let out = openai_response_to_anthropic(&v).expect("ok");
        assert_eq!(out["stop_reason"], stop);
        assert_eq!(out["content"], json!([]));
        assert_eq!(
            out["usage"],
            json!({"input_tokens": 0, "cache_read_input_tokens": 0, "output_tokens": 0})
        );
    }
    let refusal = json!({"id": "x", "model": "m", "choices": [{"finish_reason": "content_filter",
        "message": {"role": "assistant", "content": null, "refusal": "I can't."}}]});
    assert_eq!(
        openai_response_to_anthropic(&refusal).expect("ok")["content"],
        json!([{"type": "text", "text": "I can't."}])
    );
    let bad_args = json!({"id": "x", "choices": [{"finish_reason": "tool_calls", "message": {
        "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{"}}]}}]});
    assert!(err_text(openai_response_to_anthropic(&bad_args))
        .contains("choices[0].message.tool_calls[0].function.arguments"));
    for bad in [
        json!({"choices": []}),
        json!({"id": "x"}),
        json!({"choices": [{}]}),
        json!([]),
    ] {
        assert!(
            matches!(
                openai_response_to_anthropic(&bad),
                Err(PayloadError::Malformed(_))
            ),
            "{bad}"
        );
    }
    let err = json!({"error": {"message": "quota", "type": "insufficient_quota"}});
    assert_eq!(
        openai_response_to_anthropic(&err),
        Err(PayloadError::Upstream("quota".into()))
    );
}

// -- streams: Anthropic -> OpenAI --------------------------------------

fn anthropic_stream() -> Vec<(&'static str, Value)> {
    vec![
        (
            "message_start",
            json!({"type": "message_start", "message": {"id": "msg_1", "type": "message",
            "role": "assistant", "model": "claude", "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": 12, "cache_read_input_tokens": 100, "output_tokens": 1}}}),
        ),
        ("ping", json!({"type": "ping"})),
        (
            "content_block_start",
            json!({"type": "content_block_start", "index": 0,
            "content_block": {"type": "thinking", "thinking": ""}}),
        ),
        (
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0,
            "delta": {"type": "thinking_delta", "thinking": "Hmm."}}),
        ),
        (
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0,
            "delta": {"type": "signature_delta", "signature": "abc"}}),
        ),
        (
            "content_block_stop",
            json!({"type": "content_block_stop", "index": 0}),
        ),
        (
            "content_block_start",
            json!({"type": "content_block_start", "index": 1,
            "content_block": {"type": "text", "text": ""}}),
        ),
        (
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 1,
            "delta": {"type": "text_delta", "text": "Checking "}}),
        ),
        (
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 1,
            "delta": {"type": "text_delta", "text": "both."}}),
        ),
        (
            "content_block_stop",
            json!({"type": "content_block_stop", "index": 1}),
        ),
        (
            "content_block_start",
            json!({"type": "content_block_start", "index": 2,
            "content_block": {"type": "tool_use", "id": "toolu_a", "name": "weather", "input": {}}}),
        ),
        (
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 2,
            "delta": {"type": "input_json_delta", "partial_json": ""}}),
        ),
        (
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 2,
            "delta": {"type": "input_json_delta", "partial_json": "{\"ci"}}),
        ),
        ("future_event", json!({"type": "future_event", "x": 1})),
        (
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 2,
            "delta": {"type": "input_json_delta", "partial_json": "ty\": \"Par"}}),
        ),
        (
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 2,
            "delta": {"type": "input_json_delta", "partial_json": "is\"}"}}),
        ),
        (
            "content_block_stop",
            json!({"type": "content_block_stop", "index": 2}),
        ),
        (
            "content_block_start",
            json!({"type": "content_block_start", "index": 3,
            "content_block": {"type": "tool_use", "id": "toolu_b", "name": "weather", "input": {}}}),
        ),
        (
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 3,
            "delta": {"type": "input_json_delta", "partial_json": "{\"city\":"}}),
        ),
        (
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 3,
            "delta": {"type": "future_delta", "x": 1}}),
        ),
        (
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 3,
            "delta": {"type": "input_json_delta", "partial_json": " \"Rome\"}"}}),
        ),
        (
            "content_block_stop",
            json!({"type": "content_block_stop", "index": 3}),
        ),
        ("ping", json!({"type": "ping"})),
        (
            "message_delta",
            json!({"type": "message_delta", "delta": {"stop_reason": "tool_use",
            "stop_sequence": null}, "usage": {"output_tokens": 42}}),
        ),
        ("message_stop", json!({"type": "message_stop"})),
    ]
}

fn oa_chunk(delta: Value, finish: Value) -> Value {
    json!({"id": "req-1", "object": "chat.completion.chunk", "created": 1_700_000_000u64,
           "model": "vendor/model",
           "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]})
}

#[test]
fn stream_anthropic_to_openai_full() {
    let mut a = anthropic_to_openai(ctx(true));
    let mut out = Vec::new();
    let mut flags = Vec::new();
    for (name, data) in anthropic_stream() {
        let step = a.on_event(&ev(name, &data)).expect("step");
        flags.push((step.content, step.finished));
        out.extend(step.out);
    }
    let null = Value::Null;
    let tc = |v: Value| json!({"tool_calls": [v]});
    assert_eq!(
        parse_all(&out),
        vec![
            oa_chunk(json!({"role": "assistant", "content": ""}), null.clone()),
            oa_chunk(json!({"reasoning_content": "Hmm."}), null.clone()),
            oa_chunk(json!({"content": "Checking "}), null.clone()),
            oa_chunk(json!({"content": "both."}), null.clone()),
            oa_chunk(
                tc(json!({"index": 0, "id": "toolu_a", "type": "function",
                "function": {"name": "weather", "arguments": ""}})),
                null.clone()
            ),
            oa_chunk(
                tc(json!({"index": 0, "function": {"arguments": "{\"ci"}})),
                null.clone()
            ),
            oa_chunk(
                tc(json!({"index": 0, "function": {"arguments": "ty\": \"Par"}})),
                null.clone()
            ),
            oa_chunk(
                tc(json!({"index": 0, "function": {"arguments": "is\"}"}})),
                null.clone()
            ),
            oa_chunk(
                tc(json!({"index": 1, "id": "toolu_b", "type": "function",
                "function": {"name": "weather", "arguments": ""}})),
                null.clone()
            ),
            oa_chunk(
                tc(json!({"index": 1, "function": {"arguments": "{\"city\":"}})),
                null.clone()
            ),
            oa_chunk(
                tc(json!({"index": 1, "function": {"arguments": " \"Rome\"}"}})),
                null.clone()
            ),
            oa_chunk(json!({}), json!("tool_calls")),
            json!({"id": "req-1", "object": "chat.completion.chunk", "created": 1_700_000_000u64,
                   "model": "vendor/model", "choices": [],
                   "usage": {"prompt_tokens": 112, "completion_tokens": 42, "total_tokens": 154,
                             "prompt_tokens_details": {"cached_tokens": 100}}}),
        ]
    );
    // Only the final event finishes; pings, stops and signatures carry nothing.
    assert_eq!(flags.iter().filter(|f| f.1).count(), 1);
    assert_eq!(flags.last(), Some(&(false, true)));
    assert_eq!(flags[0], (false, false)); // message_start
    assert_eq!(flags[1], (false, false)); // ping
    assert_eq!(flags[3], (true, false)); // thinking delta
    assert_eq!(flags[4], (false, false)); // signature
    assert_eq!(
        a.usage(),
        Some(Usage {
            prompt_tokens: 112,
            completion_tokens: 42,
            cached_tokens: 100
        })
    );
}

#[test]
fn stream_anthropic_to_openai_without_usage_and_names_from_type() {
    let mut a = anthropic_to_openai(ctx(false));
    let mut out = Vec::new();
    for (_, data) in anthropic_stream() {
        out.extend(a.on_event(&ev("", &data)).expect("step").out);
    }
    let parsed = parse_all(&out);
    assert_eq!(parsed.len(), 12);
    assert_eq!(
        parsed.last(),
        Some(&oa_chunk(json!({}), json!("tool_calls")))
    );
}

#[test]
fn stream_anthropic_to_openai_stop_without_delta_and_errors() {
    let mut a = anthropic_to_openai(ctx(false));
    let s = a
        .on_event(&ev("message_stop", &json!({"type": "message_stop"})))
        .expect("ok");
    assert!(s.finished);
    assert_eq!(
        parse_all(&s.out),
        vec![
            oa_chunk(json!({"role": "assistant", "content": ""}), Value::Null),
            oa_chunk(json!({}), json!("stop"))
        ]
    );
    let mut a = anthropic_to_openai(ctx(true));
    let e =
        json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}});
    assert_eq!(
        a.on_event(&ev("error", &e)).map(|s| s.out),
        Err(PayloadError::Upstream(
            "overloaded_error: Overloaded".into()
        ))
    );
    assert!(matches!(
        a.on_event(&raw("nope")),
        Err(PayloadError::Malformed(_))
    ));
    let bad = json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": 5}});
    assert!(matches!(
        a.on_event(&ev("content_block_delta", &bad)),
        Err(PayloadError::Malformed(_))
    ));
    let bad =
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "tool_use"}});
    assert!(matches!(
        a.on_event(&ev("content_block_start", &bad)),
        Err(PayloadError::Malformed(_))
    ));
    for (stop, finish) in [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("refusal", "content_filter"),
        ("pause_turn", "stop"),
    ] {
        let mut a = anthropic_to_openai(ctx(false));
        let d = json!({"type": "message_delta", "delta": {"stop_reason": stop}, "usage": {"output_tokens": 1}});
        let s = a.on_event(&ev("message_delta", &d)).expect("ok");
        assert!(!s.content);
        assert_eq!(
            parse_all(&s.out)
                .last()
                .map(|c| c["choices"][0]["finish_reason"].clone()),
            Some(json!(finish))
        );
    }
}

// -- streams: OpenAI -> Anthropic --------------------------------------

fn oc(delta: Value, finish: Value) -> Value {
    json!({"id": "chatcmpl-9", "object": "chat.completion.chunk", "created": 5, "model": "gpt-x",
           "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
}

#[test]
fn stream_openai_to_anthropic_full() {
    let null = Value::Null;
    let call = |index: u64, id: Option<&str>, name: Option<&str>, args: &str| {
        let mut f = json!({"arguments": args});
        if let Some(n) = name {
            f["name"] = json!(n);
        }
        let mut c = json!({"index": index, "function": f});
        if let Some(id) = id {
            c["id"] = json!(id);
            c["type"] = json!("function");
        }
        json!({"tool_calls": [c]})
    };
    let chunks = vec![
        oc(json!({"role": "assistant", "content": ""}), null.clone()),
        oc(json!({"content": "Let me "}), null.clone()),
        oc(json!({"reasoning_content": "dropped"}), null.clone()),
        oc(json!({"content": "check."}), null.clone()),
        oc(call(0, Some("call_a"), Some("weather"), ""), null.clone()),
        oc(call(0, None, None, "{\"ci"), null.clone()),
        oc(call(0, None, None, "ty\": "), null.clone()),
        oc(call(0, None, None, "\"Paris\"}"), null.clone()),
        oc(
            call(1, Some("call_b"), Some("weather"), "{\"city\""),
            null.clone(),
        ),
        oc(call(1, None, None, ": \"Rome\"}"), null.clone()),
        oc(json!({}), json!("tool_calls")),
        json!({"id": "chatcmpl-9", "object": "chat.completion.chunk", "created": 5, "model": "gpt-x",
               "choices": [], "usage": {"prompt_tokens": 50, "completion_tokens": 30, "total_tokens": 80,
                                        "prompt_tokens_details": {"cached_tokens": 20}}}),
    ];
    let mut a = openai_to_anthropic(ctx(true));
    let mut out = Vec::new();
    let mut flags = Vec::new();
    for c in &chunks {
        let s = a.on_event(&ev("", c)).expect("step");
        flags.push((s.content, s.finished));
        out.extend(s.out);
    }
    let s = a.on_event(&raw("[DONE]")).expect("done");
    flags.push((s.content, s.finished));
    out.extend(s.out);
    let delta =
        |index: u64, d: Value| json!({"type": "content_block_delta", "index": index, "delta": d});
    let text = |t: &str| json!({"type": "text_delta", "text": t});
    let part = |p: &str| json!({"type": "input_json_delta", "partial_json": p});
    assert_eq!(
        parse_all(&out),
        vec![
            json!({"type": "message_start", "message": {"id": "req-1", "type": "message", "role": "assistant",
                "model": "vendor/model", "content": [], "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": 0, "output_tokens": 0}}}),
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            delta(0, text("Let me ")),
            delta(0, text("check.")),
            json!({"type": "content_block_stop", "index": 0}),
            json!({"type": "content_block_start", "index": 1, "content_block":
                {"type": "tool_use", "id": "call_a", "name": "weather", "input": {}}}),
            delta(1, part("{\"ci")),
            delta(1, part("ty\": ")),
            delta(1, part("\"Paris\"}")),
            json!({"type": "content_block_stop", "index": 1}),
            json!({"type": "content_block_start", "index": 2, "content_block":
                {"type": "tool_use", "id": "call_b", "name": "weather", "input": {}}}),
            delta(2, part("{\"city\"")),
            delta(2, part(": \"Rome\"}")),
            json!({"type": "content_block_stop", "index": 2}),
            json!({"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": null},
                   "usage": {"input_tokens": 30, "cache_read_input_tokens": 20, "output_tokens": 30}}),
            json!({"type": "message_stop"}),
        ]
    );
    assert_eq!(
        flags,
        vec![
            (false, false), // role only: message_start
            (true, false),
            (false, false), // reasoning dropped
            (true, false),
            (true, false), // tool block opens
            (true, false),
            (true, false),
            (true, false),
            (true, false),
            (true, false),
            (false, false), // finish_reason alone is not content
            (false, false), // usage chunk
            (false, true),
        ]
    );
    assert_eq!(
        a.usage(),
        Some(Usage {
            prompt_tokens: 50,
            completion_tokens: 30,
            cached_tokens: 20
        })
    );
}

#[test]
fn stream_openai_to_anthropic_parallel_calls_in_one_chunk_and_text_after_tool() {
    let mut a = openai_to_anthropic(ctx(true));
    let c = oc(
        json!({"tool_calls": [
            {"index": 0, "id": "c0", "type": "function", "function": {"name": "f", "arguments": "{}"}},
            {"index": 1, "id": "c1", "type": "function", "function": {"name": "g", "arguments": ""}}
        ]}),
        Value::Null,
    );
    let mut out = a.on_event(&ev("", &c)).expect("ok").out;
    out.extend(
        a.on_event(&ev("", &oc(json!({"content": "after"}), json!("stop"))))
            .expect("ok")
            .out,
    );
    out.extend(a.on_event(&raw("[DONE]")).expect("ok").out);
    let types: Vec<(String, Value)> = parse_all(&out)
        .into_iter()
        .map(|v| {
            (
                v["type"].as_str().unwrap_or("").to_owned(),
                v.get("index").cloned().unwrap_or(Value::Null),
            )
        })
        .collect();
    let t = |s: &str, i: Value| (s.to_owned(), i);
    assert_eq!(
        types,
        vec![
            t("message_start", Value::Null),
            t("content_block_start", json!(0)),
            t("content_block_delta", json!(0)),
            t("content_block_stop", json!(0)),
            t("content_block_start", json!(1)),
            t("content_block_stop", json!(1)),
            t("content_block_start", json!(2)),
            t("content_block_delta", json!(2)),
            t("content_block_stop", json!(2)),
            t("message_delta", Value::Null),
            t("message_stop", Value::Null),
        ]
    );
    let parsed = parse_all(&out);
    assert_eq!(parsed[9]["delta"]["stop_reason"], "end_turn");
    assert_eq!(parsed[9]["usage"], json!({"output_tokens": 0}));
    assert_eq!(a.usage(), None);
}

#[test]
fn stream_openai_to_anthropic_errors() {
    let mut a = openai_to_anthropic(ctx(true));
    a.on_event(&ev("", &oc(json!({"content": "hi"}), Value::Null)))
        .expect("ok");
    assert_eq!(
        a.on_event(&raw("[DONE]")).map(|s| s.out),
        Err(PayloadError::Malformed(
            "stream ended without finish_reason".into()
        ))
    );
    let mut a = openai_to_anthropic(ctx(true));
    let e = json!({"error": {"message": "server exploded", "type": "server_error"}});
    assert_eq!(
        a.on_event(&ev("", &e)).map(|s| s.out),
        Err(PayloadError::Upstream("server exploded".into()))
    );
    assert!(matches!(
        a.on_event(&raw("{broken")),
        Err(PayloadError::Malformed(_))
    ));
    assert!(matches!(
        a.on_event(&raw("42")),
        Err(PayloadError::Malformed(_))
    ));
    // Interleaved fragments of two calls cannot be expressed.
    let mut a = openai_to_anthropic(ctx(true));
    let call = |i: u64, id: Option<&str>, args: &str| {
        let mut c = json!({"index": i, "function": {"arguments": args}});
        if let Some(id) = id {
            c["id"] = json!(id);
            c["function"]["name"] = json!("f");
        }
        oc(json!({"tool_calls": [c]}), Value::Null)
    };
    a.on_event(&ev("", &call(0, Some("a"), "{"))).expect("ok");
    a.on_event(&ev("", &call(1, Some("b"), "{"))).expect("ok");
    assert!(a.on_event(&ev("", &call(0, None, ""))).is_ok()); // empty fragment: harmless
    assert!(matches!(
        a.on_event(&ev("", &call(0, None, "}"))),
        Err(PayloadError::Malformed(_))
    ));
}

#[test]
fn stream_openai_to_anthropic_tool_calls_without_index_or_id() {
    let mut a = openai_to_anthropic(ctx(true));
    let mut out = Vec::new();
    for c in [
        oc(
            json!({"tool_calls": [{"function": {"name": "f", "arguments": "{\"a\""}}]}),
            Value::Null,
        ),
        oc(
            json!({"tool_calls": [{"function": {"arguments": ":1}"}}]}),
            Value::Null,
        ),
        oc(
            json!({"tool_calls": [{"id": "x2", "function": {"name": "g", "arguments": "{}"}}]}),
            json!("tool_calls"),
        ),
    ] {
        out.extend(a.on_event(&ev("", &c)).expect("ok").out);
    }
    out.extend(a.on_event(&raw("[DONE]")).expect("ok").out);
    let parsed = parse_all(&out);
    assert_eq!(
        parsed[1]["content_block"],
        json!({"type": "tool_use", "id": "toolu_req-1_0", "name": "f", "input": {}})
    );
    assert_eq!(parsed[3]["delta"]["partial_json"], ":1}");
    assert_eq!(parsed[3]["index"], 0);
    assert_eq!(
        parsed[5]["content_block"],
        json!({"type": "tool_use", "id": "x2", "name": "g", "input": {}})
    );
}

// -- errors -------------------------------------------------------------

#[test]
fn error_translation() {
    let oe = json!({"error": {"message": "Rate limit reached", "type": "requests", "param": null,
                              "code": "rate_limit_exceeded"}});
    assert_eq!(
        openai_error_to_anthropic(429, &oe),
        json!({"type": "error", "error": {"type": "rate_limit_error", "message": "Rate limit reached"}})
    );
    assert_eq!(
        openai_error_to_anthropic(0, &oe)["error"]["type"],
        "rate_limit_error"
    );
    assert_eq!(
        openai_error_to_anthropic(503, &json!("garbage")),
        json!({"type": "error", "error": {"type": "api_error",
               "message": "upstream returned HTTP status 503"}})
    );
    assert_eq!(
        openai_error_to_anthropic(401, &json!({"error": "bad key"}))["error"],
        json!({"type": "authentication_error", "message": "bad key"})
    );

    let ae =
        json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}});
    assert_eq!(
        anthropic_error_to_openai(529, &ae),
        json!({"error": {"message": "Overloaded", "type": "server_error", "param": null,
                         "code": "overloaded_error"}})
    );
    let ae = json!({"type": "error", "error": {"type": "invalid_request_error", "message": "bad"}});
    assert_eq!(
        anthropic_error_to_openai(400, &ae)["error"]["type"],
        "invalid_request_error"
    );
    assert_eq!(
        anthropic_error_to_openai(404, &json!(null)),
        json!({"error": {"message": "upstream returned HTTP status 404", "type": "not_found_error",
                         "param": null, "code": "not_found_error"}})
    );
}

// -- robustness -----------------------------------------------------------

/// Every value reachable in `v`, replaced in turn by each of `junk`.
fn mutations(v: &Value) -> Vec<Value> {
    let junk = [
        Value::Null,
        json!(true),
        json!(-1),
        json!(1.5),
        json!(u64::MAX),
        json!("s"),
        json!(""),
        json!([]),
        json!({}),
        json!([null]),
        json!({"type": 1}),
    ];
    let mut out = Vec::new();
    fn walk(
        root: &Value,
        path: &mut Vec<PathStep>,
        node: &Value,
        junk: &[Value],
        out: &mut Vec<Value>,
    ) {
        for j in junk {
            let mut copy = root.clone();
            if let Some(slot) = locate(&mut copy, path) {
                *slot = j.clone();
                out.push(copy);
            }
        }
        match node {
            Value::Object(m) => {
                for (k, child) in m {
                    path.push(PathStep::Key(k.clone()));
                    walk(root, path, child, junk, out);
                    path.pop();
                    let mut copy = root.clone();
                    if let Some(Value::Object(m)) = locate(&mut copy, path) {
                        m.remove(k);
                        out.push(copy);
                    }
                }
            }
            Value::Array(a) => {
                for (i, child) in a.iter().enumerate() {
                    path.push(PathStep::Index(i));
                    walk(root, path, child, junk, out);
                    path.pop();
                }
            }
            _ => {}
        }
    }
    walk(v, &mut Vec::new(), v, &junk, &mut out);
    out
}

enum PathStep {
    Key(String),
    Index(usize),
}

fn locate<'a>(v: &'a mut Value, path: &[PathStep]) -> Option<&'a mut Value> {
    let mut cur = v;
    for step in path {
        cur = match step {
            PathStep::Key(k) => cur.get_mut(k.as_str())?,
            PathStep::Index(i) => cur.get_mut(*i)?,
        };
    }
    Some(cur)
}

#[test]
fn garbage_never_panics() {
    let openai_req = json!({
        "model": "m", "messages": [
            {"role": "system", "content": [{"type": "text", "text": "s"}]},
            {"role": "user", "content": [{"type": "text", "text": "u"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}}]},
            {"role": "assistant", "content": "a", "tool_calls": [{"id": "c", "type": "function",
                "function": {"name": "f", "arguments": "{\"x\":1}"}}]},
            {"role": "tool", "tool_call_id": "c", "content": "r"}],
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
        "tool_choice": {"type": "function", "function": {"name": "f"}}, "parallel_tool_calls": false,
        "stop": ["x"], "max_tokens": 5, "reasoning_effort": "low", "user": "u", "stream": true, "n": 1,
        "response_format": {"type": "text"}, "thinking": {"type": "enabled", "budget_tokens": 10}
    });
    let anthropic_req = json!({
        "model": "m", "system": [{"type": "text", "text": "s"}], "messages": [
            {"role": "user", "content": [{"type": "text", "text": "u"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AA"}}]},
            {"role": "assistant", "content": [{"type": "thinking", "thinking": "t"},
                {"type": "tool_use", "id": "t", "name": "f", "input": {"a": 1}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t",
                "content": [{"type": "text", "text": "r"}]}]}],
        "tools": [{"name": "f", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "tool", "name": "f", "disable_parallel_tool_use": true},
        "metadata": {"user_id": "u"}, "thinking": {"type": "enabled", "budget_tokens": 2000},
        "max_tokens": 5, "stop_sequences": ["x"], "temperature": 1, "stream": true
    });
    let anthropic_resp = json!({"id": "m", "type": "message", "model": "c", "content": [
        {"type": "text", "text": "t"}, {"type": "tool_use", "id": "t", "name": "f", "input": {}},
        {"type": "thinking", "thinking": "x"}], "stop_reason": "end_turn",
        "usage": {"input_tokens": 1, "output_tokens": 2}});
    let openai_resp = json!({"id": "c", "model": "m", "choices": [{"index": 0, "finish_reason": "stop",
        "message": {"role": "assistant", "content": [{"type": "text", "text": "t"}], "refusal": "r",
        "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "{}"}}]}}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 4, "prompt_tokens_details": {"cached_tokens": 1}}});

    let mut n = 0;
    for m in mutations(&openai_req) {
        if let Value::Object(body) = &m {
            let _ = openai_request_to_anthropic(body);
            n += 1;
        }
    }
    for m in mutations(&anthropic_req) {
        if let Value::Object(body) = &m {
            let _ = anthropic_request_to_openai(body);
            n += 1;
        }
    }
    for m in mutations(&anthropic_resp) {
        let _ = anthropic_response_to_openai(&m, 1_700_000_000);
        let _ = anthropic::check_response(&m);
        let _ = anthropic_error_to_openai(500, &m);
        n += 1;
    }
    for m in mutations(&openai_resp) {
        let _ = openai_response_to_anthropic(&m);
        let _ = openai_error_to_anthropic(0, &m);
        n += 1;
    }
    assert!(n > 500, "{n}");

    // Streams: mutate every event of a full stream, feed each variant.
    for (_, data) in anthropic_stream() {
        for m in mutations(&data) {
            for name in [
                "",
                "message_start",
                "content_block_start",
                "content_block_delta",
                "message_delta",
            ] {
                let mut a = anthropic_to_openai(ctx(true));
                let mut p = anthropic::Passthrough::new(ctx(true));
                for (_, good) in anthropic_stream().into_iter().take(12) {
                    let _ = a.on_event(&ev("", &good));
                }
                let _ = a.on_event(&ev(name, &m));
                let _ = p.on_event(&ev(name, &m));
                let _ = a.on_event(&ev("message_stop", &json!({"type": "message_stop"})));
            }
        }
    }
    let chunk = json!({"id": "c", "choices": [{"index": 0, "delta": {"content": "x", "tool_calls": [
        {"index": 0, "id": "i", "type": "function", "function": {"name": "f", "arguments": "{"}}]},
        "finish_reason": "stop"}], "usage": {"prompt_tokens": 1, "completion_tokens": 1}});
    for m in mutations(&chunk) {
        let mut a = openai_to_anthropic(ctx(true));
        let _ = a.on_event(&ev("", &chunk));
        let _ = a.on_event(&ev("", &m));
        let _ = a.on_event(&raw("[DONE]"));
    }
}

#[test]
fn garbage_is_an_error() {
    for body in [
        json!({"messages": "hi"}),
        json!({"messages": [1]}),
        json!({"messages": [{"role": 5}]}),
        json!({"messages": [{"role": "user", "content": 5}]}),
        json!({"messages": [{"role": "user", "content": [5]}]}),
        json!({"messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]}),
        json!({"messages": [{"role": "assistant", "tool_calls": {}}]}),
        json!({"messages": [{"role": "assistant", "tool_calls": [{"id": 1}]}]}),
        json!({"messages": [], "max_tokens": "ten"}),
        json!({"messages": [], "max_tokens": -1}),
        json!({"messages": [], "stop": 5}),
        json!({"messages": [], "stop": [5]}),
        json!({"messages": [], "temperature": "hot"}),
        json!({"messages": [], "tools": {}}),
        json!({"messages": [], "tools": [{"type": "function"}]}),
        json!({"messages": [], "tool_choice": 5}),
        json!({"messages": [], "user": 5}),
        json!({"messages": [], "stream": "yes"}),
        json!({"messages": [], "thinking": "on"}),
        json!({"messages": [], "n": "one"}),
    ] {
        assert!(
            matches!(o2a(body.clone()), Err(PayloadError::Malformed(_))),
            "o2a {body}"
        );
    }
    for body in [
        json!({"messages": {}}),
        json!({"messages": [{"role": "user"}]}),
        json!({"messages": [{"role": "user", "content": 1}]}),
        json!({"messages": [{"role": "user", "content": [{"text": "no type"}]}]}),
        json!({"messages": [{"role": "assistant", "content": [{"type": "tool_use", "id": "x", "name": "n", "input": 3}]}]}),
        json!({"messages": [], "system": 5}),
        json!({"messages": [], "max_tokens": 1.5}),
        json!({"messages": [], "stop_sequences": "x"}),
        json!({"messages": [], "tools": [{"name": 1}]}),
        json!({"messages": [], "tool_choice": "auto"}),
        json!({"messages": [], "metadata": []}),
        json!({"messages": [], "thinking": {"type": "enabled", "budget_tokens": "lots"}}),
        json!({"messages": [], "top_k": "x"}),
    ] {
        assert!(
            matches!(a2o(body.clone()), Err(PayloadError::Malformed(_))),
            "a2o {body}"
        );
    }
    for v in [
        json!(null),
        json!(1),
        json!("x"),
        json!([]),
        json!({"content": {}}),
        json!({"type": "message", "content": [{"type": "text"}]}),
        json!({"type": "message", "content": [{"type": "tool_use", "name": "n"}]}),
    ] {
        assert!(
            matches!(
                anthropic_response_to_openai(&v, 1_700_000_000),
                Err(PayloadError::Malformed(_))
            ),
            "{v}"
        );
    }
}
