//! Config validation: every problem is reported with its JSON path.

use llmux::catalog::Catalog;
use llmux::config::Config;
use serde_json::json;

fn errors(cfg: serde_json::Value) -> String {
    match Catalog::from_json(&cfg.to_string()) {
        Ok(_) => panic!("expected errors for {cfg}"),
        Err(e) => e.to_string(),
    }
}

fn provider(slug: &str) -> serde_json::Value {
    json!({"slug": slug, "protocol": "openai", "base_url": "http://127.0.0.1:9/v1"})
}

#[test]
fn structural_errors_name_the_path() {
    let m = errors(json!({"providers": [{"slug": "a", "protocol": "openai", "base_url": 5}]}));
    assert!(m.contains("providers[0].base_url"), "{m}");
    let m = errors(json!({"providers": [], "modles": []}));
    assert!(m.contains("modles"), "{m}");
    let m = errors(
        json!({"models": [{"slug": "a/b", "endpoints": [{"provider": "a", "upstream_model": "x", "price": {"prompt": "cheap"}}]}]}),
    );
    assert!(m.contains("models[0].endpoints[0].price.prompt"), "{m}");
    let e = Catalog::from_json("{\"providers\": [")
        .unwrap_err()
        .to_string();
    assert!(e.contains("malformed JSON") && e.contains("line 1"), "{e}");
}

#[test]
fn semantic_errors_are_all_reported_with_paths() {
    let m = errors(json!({
        "providers": [
            provider("a"),
            {"slug": "a", "protocol": "grpc", "base_url": "ftp://x"},
            {"slug": "b c", "protocol": "openai", "base_url": "not a url"},
        ],
        "models": [
            {"slug": "nope", "endpoints": []},
            {"slug": "v/m", "endpoints": [
                {"provider": "zz", "upstream_model": "x"},
                {"provider": "a", "upstream_model": "x", "price": {"prompt": -1}},
                {"provider": "a", "upstream_model": ""},
            ]},
            {"slug": "v/m", "endpoints": [{"provider": "a", "upstream_model": "x"}]},
        ],
        "timeouts": {"first_token_ms": 0},
        "failover": {"statuses": [42]},
    }));
    for needle in [
        "providers[1].slug: duplicate provider slug",
        "providers[1].protocol: unknown protocol \"grpc\"",
        "providers[1].base_url",
        "providers[2].slug",
        "providers[2].base_url",
        "models[0].slug",
        "models[0].endpoints: a model needs at least one endpoint",
        "models[1].endpoints[0].provider: unknown provider \"zz\" (known: a, b c)",
        "models[1].endpoints[1].price.prompt",
        "models[1].endpoints[2].name: duplicate endpoint id \"a/default\"",
        "models[1].endpoints[2].upstream_model: must not be empty",
        "models[2].slug: duplicate model slug",
        "timeouts.first_token_ms",
        "failover.statuses[0]",
    ] {
        assert!(m.contains(needle), "missing {needle:?} in {m}");
    }
}

#[test]
fn a_missing_key_variable_is_an_error_at_load_and_never_leaks_a_key() {
    let mut p = provider("a");
    p["api_key_env"] = json!("LLMUX_TEST_SURELY_UNSET_VAR");
    let m = errors(json!({"providers": [p]}));
    assert!(
        m.contains(
            "providers[0].api_key_env: environment variable LLMUX_TEST_SURELY_UNSET_VAR is not set"
        ),
        "{m}"
    );

    // Read from the environment (injected here) and never shown.
    let mut p = provider("a");
    p["api_key_env"] = json!("KEY_VAR");
    let cfg: Config = serde_json::from_value(one_model(p)).unwrap();
    let cat = Catalog::from_config_with_env(cfg, &|v| {
        (v == "KEY_VAR").then(|| "sk-secret-123".to_owned())
    })
    .unwrap();
    assert_eq!(
        cat.providers[0].key.as_ref().unwrap().expose(),
        "sk-secret-123"
    );
    assert!(!format!("{cat:?}").contains("sk-secret-123"));

    let mut p = provider("a");
    p["api_key"] = json!("sk-bad\nkey");
    let m = errors(json!({"providers": [p]}));
    assert!(
        m.contains("providers[0].api_key") && !m.contains("sk-bad"),
        "{m}"
    );
}

#[test]
fn headers_and_anthropic_options_are_checked() {
    let mut p = provider("a");
    p["headers"] = json!({"bad header": "x"});
    p["anthropic_version"] = json!("2023-06-01");
    let m = errors(json!({"providers": [p]}));
    assert!(m.contains("providers[0].headers.bad header"), "{m}");
    assert!(
        m.contains("providers[0].anthropic_version: only valid for protocol"),
        "{m}"
    );
}

#[test]
fn a_full_config_resolves() {
    let cat = Catalog::from_json(
        &json!({
            "providers": [
                {"slug": "oa", "protocol": "openai", "base_url": "https://api.example.com/v1/", "api_key": "k",
                 "headers": {"x-a": "1"}, "timeouts": {"connect_ms": 100}},
                {"slug": "an", "protocol": "anthropic", "base_url": "https://api.example.org", "anthropic_beta": "b1"},
            ],
            "models": [{"slug": "vendor/m", "context_window": 8000, "endpoints": [
                {"provider": "oa", "name": "fast", "upstream_model": "m-1", "price": {"prompt": 1, "completion": 2}},
                {"provider": "an", "upstream_model": "m-2", "context_window": 4000, "expected_first_token_ms": 300},
            ]}],
            "timeouts": {"total_ms": 1000},
            "health": {"failure_threshold": 5},
            "worker_threads": 1,
        })
        .to_string(),
    )
    .unwrap();
    assert_eq!(cat.endpoints[0].id, "oa/fast");
    assert_eq!(cat.endpoints[1].id, "an/default");
    assert_eq!(cat.endpoints[0].context_window, Some(8000));
    assert_eq!(cat.endpoints[1].context_window, Some(4000));
    assert_eq!(
        cat.providers[0].url(),
        "https://api.example.com/v1/chat/completions"
    );
    assert_eq!(
        cat.providers[1].url(),
        "https://api.example.org/v1/messages"
    );
    assert!(cat.providers[1]
        .headers
        .iter()
        .any(|(n, v)| n == "anthropic-version" && v == "2023-06-01"));
    assert!(cat.providers[1]
        .headers
        .iter()
        .any(|(n, v)| n == "anthropic-beta" && v == "b1"));
    assert!(
        cat.fails_over(529) && cat.fails_over(401) && !cat.fails_over(400) && !cat.fails_over(422)
    );
    assert_eq!(cat.model("vendor/m"), Some(0));
}

/// A pretty-printed file as a user writes it, with `line7` as its line 7.
fn pretty(line7: &str) -> String {
    [
        "{",
        "  \"providers\": [",
        "    {\"slug\": \"a\", \"protocol\": \"openai\", \"base_url\": \"http://127.0.0.1:9/v1\"}",
        "  ],",
        "  \"models\": [",
        "    {\"slug\": \"v/m\", \"endpoints\": [",
        line7,
        "    ]}",
        "  ],",
        "  \"gateway\": {\"listen\": \"127.0.0.1:4000\", \"keys\": [\"LLMUX_KEY\"]}",
        "}",
    ]
    .join("\n")
}

#[test]
fn the_gateway_section_is_skipped_and_other_unknown_fields_named() {
    // The gateway's file loads as it is (issue 19: `unknown field 'gateway'`).
    let text = pretty("      {\"provider\": \"a\", \"upstream_model\": \"x\"}");
    let e = llmux::Engine::from_json(&text).expect("the gateway's config");
    assert!(
        e.catalog().warnings.is_empty(),
        "{:?}",
        e.catalog().warnings
    );
    let dir = std::env::temp_dir().join(format!("llmux-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("llmux.json");
    std::fs::write(&path, &text).unwrap();
    let from_file = llmux::Engine::from_file(&path);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(from_file.is_ok());
    // Any other unknown field is still refused, by name.
    let m = errors(json!({"gatway": {}, "models": []}));
    assert!(
        m.starts_with(
            "invalid config: gatway: unknown field `gatway`, expected one of `providers`"
        ),
        "{m}"
    );
}

#[test]
fn structural_errors_point_at_their_line_and_column_once() {
    let typo = pretty("      {\"provider\": \"a\", \"upstream_modle\": \"x\"}");
    assert_eq!(
        Catalog::from_json(&typo).unwrap_err().to_string(),
        "invalid config: models[0].endpoints[0].upstream_modle: unknown field `upstream_modle`, \
         expected one of `provider`, `name`, `upstream_model`, `price`, `context_window`, \
         `expected_first_token_ms`, `max_concurrency`, `region`, `data_policy`, `quantization`, \
         `supported_parameters` at line 7 column 40"
    );
    let wrong_type = pretty("      {\"provider\": \"a\", \"upstream_model\": 5}");
    assert_eq!(
        Catalog::from_json(&wrong_type).unwrap_err().to_string(),
        "invalid config: models[0].endpoints[0].upstream_model: invalid type: integer `5`, \
         expected a string at line 7 column 43"
    );
}

#[test]
fn a_config_without_models_is_refused() {
    for cfg in [json!({}), json!({"providers": [provider("a")]})] {
        assert_eq!(
            errors(cfg),
            "invalid config: models: no models configured: a config needs at least one model with an endpoint"
        );
    }
}

fn one_model(p: serde_json::Value) -> serde_json::Value {
    let slug = p["slug"].clone();
    json!({"providers": [p], "models": [{"slug": "v/m", "endpoints": [{"provider": slug, "upstream_model": "x"}]}]})
}

#[test]
fn a_base_url_ending_in_the_endpoint_path_is_refused_with_the_right_one() {
    let cases = [
        (
            "openai",
            "https://api.example.com/v1/chat/completions",
            "/chat/completions",
            "/chat/completions",
            "https://api.example.com/v1",
        ),
        (
            "openai",
            "https://api.example.com/v1/chat/completions/",
            "/chat/completions",
            "/chat/completions",
            "https://api.example.com/v1",
        ),
        (
            "anthropic",
            "https://api.example.com/v1/messages",
            "/v1/messages",
            "/v1/messages",
            "https://api.example.com",
        ),
        (
            "responses",
            "https://api.example.com/v1/responses",
            "/responses",
            "/responses",
            "https://api.example.com/v1",
        ),
        (
            "openai",
            "https://api.example.com/v1/responses",
            "/responses",
            "/chat/completions",
            "https://api.example.com/v1",
        ),
    ];
    for (protocol, base, suffix, appended, good) in cases {
        let p = json!({"slug": "p", "protocol": protocol, "base_url": base, "api_key": "k"});
        let trimmed = base.trim_end_matches('/');
        assert_eq!(
            errors(one_model(p)),
            format!(
                "invalid config: providers[0].base_url: \"{trimmed}\" ends in {suffix}, but llmux appends \
                 {appended} itself (protocol \"{protocol}\"): use \"base_url\": \"{good}\""
            )
        );
    }
}

#[test]
fn warnings_are_data_for_a_missing_key_and_an_anthropic_v1() {
    let warnings = |p: serde_json::Value| -> Vec<String> {
        Catalog::from_json(&one_model(p).to_string())
            .expect("valid")
            .warnings
            .iter()
            .map(ToString::to_string)
            .collect()
    };
    let public =
        json!({"slug": "oa", "protocol": "openai", "base_url": "https://api.example.com/v1"});
    assert_eq!(
        warnings(public.clone()),
        [
            "providers[0]: provider \"oa\" has no api_key or api_key_env: requests to \
          https://api.example.com/v1/chat/completions will carry no key (set api_key_env to the \
          variable holding it)"
        ]
    );
    let mut keyed = public.clone();
    keyed["api_key"] = json!("k");
    assert!(warnings(keyed).is_empty());
    let mut header = public;
    header["headers"] = json!({"Authorization": "Bearer k"});
    assert!(warnings(header).is_empty());
    // Local servers usually take no key.
    for base in [
        "http://127.0.0.1:8000/v1",
        "http://localhost:8000/v1",
        "http://[::1]:8000/v1",
        "http://10.1.2.3/v1",
        "http://vllm:8000/v1",
    ] {
        let p = json!({"slug": "local", "protocol": "openai", "base_url": base});
        assert!(warnings(p).is_empty(), "{base}");
    }
    let an = json!({"slug": "an", "protocol": "anthropic", "base_url": "https://api.example.org/v1", "api_key_env": "PATH"});
    assert_eq!(
        warnings(an),
        ["providers[0].base_url: \"https://api.example.org/v1\" ends in /v1, and protocol \"anthropic\" \
          appends /v1/messages (https://api.example.org/v1/v1/messages): did you mean \"https://api.example.org\"?"]
    );
}

#[test]
fn endpoint_facts_resolve_with_protocol_defaults() {
    let cat = Catalog::from_json(
        &json!({
            "providers": [provider("a"),
                {"slug": "an", "protocol": "anthropic", "base_url": "http://127.0.0.1:9"}],
            "models": [{"slug": "vendor/m", "aliases": ["m-alias", "m2"], "endpoints": [
                {"provider": "a", "upstream_model": "m", "region": "eu-west", "quantization": "fp8",
                 "price": {"prompt": 1, "completion": 2, "request": 0.01, "image": 0.5},
                 "data_policy": {"training": false, "retention_days": 0, "zdr": true},
                 "supported_parameters": ["tools", "response_format"]},
                {"provider": "an", "upstream_model": "m"},
            ]}],
        })
        .to_string(),
    )
    .unwrap();
    let e = &cat.endpoints[0];
    assert_eq!(e.region.as_deref(), Some("eu-west"));
    assert_eq!(e.quantization.as_deref(), Some("fp8"));
    assert_eq!((e.price_request, e.price_image), (0.01, 0.5));
    assert!(e.data_policy.unwrap().zdr);
    assert_eq!(e.supported_parameters, vec!["tools", "response_format"]);
    let an = &cat.endpoints[1];
    assert!(an.supported_parameters.contains(&"top_k"));
    assert!(!an.supported_parameters.contains(&"response_format"));
    assert!(an.data_policy.is_none());
    assert_eq!(cat.model("m-alias"), Some(0));
    assert_eq!(cat.model("m2"), Some(0));
    assert_eq!(cat.models[0].aliases, vec!["m-alias", "m2"]);
}

#[test]
fn bad_endpoint_facts_and_duplicate_aliases_name_their_paths() {
    let m = errors(json!({
        "providers": [provider("a")],
        "models": [
            {"slug": "vendor/m", "aliases": ["x", "vendor/n", "x", "a b"], "endpoints": [
                {"provider": "a", "upstream_model": "m", "region": " ", "quantization": "fp7",
                 "price": {"request": -1},
                 "data_policy": {"training": true, "zdr": true},
                 "supported_parameters": ["tools", "telepathy"]}]},
            {"slug": "vendor/n", "aliases": ["x"], "endpoints": [{"provider": "a", "upstream_model": "n"}]},
        ],
    }));
    for want in [
        "models[0].aliases[1]: alias \"vendor/n\" is already the slug or an alias of another model",
        "models[0].aliases[2]: alias \"x\" repeats a name of this model",
        "models[0].aliases[3]: \"a b\" is not a model name",
        "models[1].aliases[0]: alias \"x\" is already the slug or an alias of another model",
        "models[0].endpoints[0].region:",
        "models[0].endpoints[0].quantization: unknown quantization \"fp7\"",
        "models[0].endpoints[0].price.request: -1 is not a price",
        "models[0].endpoints[0].data_policy.zdr: zero data retention contradicts training",
        "models[0].endpoints[0].supported_parameters[1]: unknown parameter \"telepathy\"",
    ] {
        assert!(m.contains(want), "missing {want:?} in {m}");
    }
}

#[test]
fn a_ca_file_that_cannot_be_used_is_an_error_at_ca_file() {
    let dir = std::env::temp_dir().join(format!("llmux-ca-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let junk = dir.join("junk.pem");
    std::fs::write(&junk, "not a certificate").expect("write");
    let bad_der = dir.join("bad-der.pem");
    std::fs::write(
        &bad_der,
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .expect("write");
    let missing = dir.join("missing.pem");
    for (file, says) in [
        (&missing, "cannot read"),
        (&junk, "holds no certificate"),
        (&bad_der, "certificate 1 in"),
    ] {
        let m = errors(json!({"providers": [provider("a")], "ca_file": file}));
        let at = format!(
            "ca_file: {}",
            m.split("ca_file: ").nth(1).unwrap_or_default()
        );
        assert!(
            at.contains(says) && at.contains(&*file.to_string_lossy()),
            "{m}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
