//! Provider preferences (issue 22) against real HTTP mocks: every field
//! alone, the combinations the issue names, engine defaults, aliases and
//! the explained decisions in the routing record.

mod common;

use common::*;
use llmux::{Engine, Protocol, SubmitError};
use serde_json::{json, Value};

/// Three endpoints of `test/model` with different facts, plus `test/other`
/// served by `d` (the cheapest of all) and `test/model`'s aliases.
///
/// | endpoint | price | expected ms | region  | data policy        | quant | params        |
/// |----------|-------|-------------|---------|--------------------|-------|---------------|
/// | a        | 3 + 3 | 100         | us-east | trains             | fp16  | openai default|
/// | b        | 1 + 1 | 300         | eu-west | zdr                | fp8   | temperature   |
/// | c        | 2 + 2 | 200         | eu-west | 30 days, no train  | int8  | openai default|
/// | d        | 0.5   | 400         | -       | -                  | -     | default       |
struct Fleet {
    a: Upstream,
    b: Upstream,
    c: Upstream,
    d: Upstream,
}

fn fleet() -> Fleet {
    let ok = || behavior(json!({}));
    Fleet {
        a: upstream("a", ok()),
        b: upstream("b", ok()),
        c: upstream("c", ok()),
        d: upstream("d", ok()),
    }
}

fn base(u: &Upstream) -> String {
    format!("{}/v1", u.server.base_url())
}

fn fleet_config(f: &Fleet, extra: Value) -> String {
    let providers: Vec<Value> = [&f.a, &f.b, &f.c, &f.d]
        .iter()
        .map(|u| json!({"slug": u.slug, "protocol": "openai", "base_url": base(u)}))
        .collect();
    let mut cfg = json!({
        "providers": providers,
        "models": [
            {"slug": "test/model", "aliases": ["model-alias"], "endpoints": [
                {"provider": "a", "upstream_model": "up-a", "price": {"prompt": 3, "completion": 3},
                 "expected_first_token_ms": 100, "region": "us-east", "quantization": "fp16",
                 "data_policy": {"training": true}},
                {"provider": "b", "upstream_model": "up-b", "price": {"prompt": 1, "completion": 1},
                 "expected_first_token_ms": 300, "region": "eu-west", "quantization": "fp8",
                 "data_policy": {"zdr": true, "retention_days": 0},
                 "supported_parameters": ["temperature"]},
                {"provider": "c", "upstream_model": "up-c", "price": {"prompt": 2, "completion": 2},
                 "expected_first_token_ms": 200, "region": "eu-west", "quantization": "int8",
                 "data_policy": {"retention_days": 30}},
            ]},
            {"slug": "test/other", "endpoints": [
                {"provider": "d", "upstream_model": "up-d", "price": {"prompt": 0.5, "completion": 0.5},
                 "expected_first_token_ms": 400},
            ]},
        ],
        "health": {"explore_ratio": 0.0},
        "retry": {"max_retries": 0},
    });
    if let (Value::Object(c), Value::Object(x)) = (&mut cfg, extra) {
        for (k, v) in x {
            c.insert(k, v);
        }
    }
    cfg.to_string()
}

fn fleet_engine(f: &Fleet, extra: Value) -> Engine {
    Engine::from_json(&fleet_config(f, extra)).expect("valid config")
}

fn with_provider(provider: Value) -> Value {
    let mut body = chat("test/model", false);
    body["provider"] = provider;
    body
}

/// The routing record's `filtered` as (endpoint, reason) pairs.
fn filtered(out: &Outcome) -> Vec<(String, String)> {
    out.routing()["filtered"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|x| {
                    (
                        x["endpoint"].as_str().unwrap().to_owned(),
                        x["reason"].as_str().unwrap().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

/// A `provider` object, the endpoint it serves from, and its `filtered`.
type Case = (Value, &'static str, Vec<(&'static str, &'static str)>);

fn cases() -> Vec<Case> {
    vec![
        (json!({}), "a/default", vec![]),
        (
            json!({"only": ["b"]}),
            "b/default",
            vec![("a/default", "only: not in [b]"), ("c/default", "only: not in [b]")],
        ),
        (json!({"ignore": ["a"]}), "c/default", vec![("a/default", "ignore: a/default")]),
        (
            json!({"max_price": {"prompt": 2.5}}),
            "c/default",
            vec![("a/default", "max_price.prompt 3.0 > 2.5")],
        ),
        (
            json!({"max_price": {"completion": 1.5}}),
            "b/default",
            vec![
                ("a/default", "max_price.completion 3.0 > 1.5"),
                ("c/default", "max_price.completion 2.0 > 1.5"),
            ],
        ),
        (
            json!({"data_collection": "deny"}),
            "c/default",
            vec![("a/default", "data_collection: deny (endpoint trains on data)")],
        ),
        (json!({"data_collection": "allow"}), "a/default", vec![]),
        (
            json!({"zdr": true}),
            "b/default",
            vec![
                ("a/default", "zdr: true (endpoint is not zero data retention)"),
                ("c/default", "zdr: true (endpoint is not zero data retention)"),
            ],
        ),
        (
            json!({"quantizations": ["fp8", "int8"]}),
            "c/default",
            vec![("a/default", "quantizations: fp16 not in [fp8, int8]")],
        ),
        (
            json!({"region": "eu-west"}),
            "c/default",
            vec![("a/default", "region: us-east not in [eu-west]")],
        ),
        (
            json!({"regions": ["us-east"]}),
            "a/default",
            vec![
                ("b/default", "region: eu-west not in [us-east]"),
                ("c/default", "region: eu-west not in [us-east]"),
            ],
        ),
        (json!({"sort": "price"}), "b/default", vec![]),
        (json!({"sort": {"by": "latency"}}), "a/default", vec![]),
        (json!({"order": ["c", "b"]}), "c/default", vec![]),
        (json!({"allow_fallbacks": true}), "a/default", vec![]),
        (
            json!({"max_latency": 150}),
            "a/default",
            vec![
                ("b/default", "max_latency.p50 300 ms > 150 ms (unmeasured: expected latency)"),
                ("c/default", "max_latency.p50 200 ms > 150 ms (unmeasured: expected latency)"),
            ],
        ),
        (
            json!({"sort": "price", "preferred_max_latency": {"p90": 250}}),
            "c/default",
            vec![(
                "b/default",
                "preferred_max_latency.p90 300 ms > 250 ms (unmeasured: expected latency) (ranked last)",
            )],
        ),
        // Unmeasured throughput passes a hard cutoff (traffic measures it).
        (json!({"min_throughput": 10}), "a/default", vec![]),
        (json!({"require_parameters": true}), "a/default", vec![]),
    ]
}

#[test]
fn every_field_alone_chooses_and_explains() {
    let f = fleet();
    for (provider, served, why) in cases() {
        // A fresh engine each time: no health from the case before.
        let e = fleet_engine(&f, json!({}));
        let out = run(&e, &with_provider(provider.clone()));
        assert!(out.ok(), "{provider}: {:?}", out.terminal);
        assert_eq!(out.served(), Some(served), "{provider}");
        assert_eq!(filtered(&out), pairs(&why), "{provider}");
    }
}

#[test]
fn the_cheapest_endpoint_within_a_p90_cutoff() {
    let f = fleet();
    let e = fleet_engine(&f, json!({}));
    // Measured first-token latencies: a fast, b (cheapest) slow at p90,
    // c (second cheapest) within the cutoff.
    let ring = |base: f64, tail: f64| -> Vec<f64> {
        (0..20).map(|i| if i >= 17 { tail } else { base }).collect()
    };
    let health = json!({"endpoints": [
        {"model": "test/model", "endpoint": "a/default", "recent_first_token_ms": ring(100.0, 150.0)},
        {"model": "test/model", "endpoint": "b/default", "recent_first_token_ms": ring(200.0, 1500.0)},
        {"model": "test/model", "endpoint": "c/default", "recent_first_token_ms": ring(300.0, 700.0)},
    ]});
    assert_eq!(e.import_health(&health.to_string()), Ok(3));
    let mut body = chat("test/model", true);
    body["provider"] = json!({"sort": "price", "max_latency": {"p90": 800}});
    let out = run(&e, &body);
    assert!(out.ok(), "{:?}", out.terminal);
    assert_eq!(out.served(), Some("c/default"));
    assert_eq!(
        filtered(&out),
        pairs(&[("b/default", "max_latency.p90 1500 ms > 800 ms")])
    );
    assert_eq!(f.b.server.request_count(), 0);
    // As a soft cutoff b is ranked last instead, and c still serves.
    body["provider"] = json!({"sort": "price", "preferred_max_latency": {"p90": 800}});
    let out = run(&e, &body);
    assert_eq!(out.served(), Some("c/default"));
    assert_eq!(
        filtered(&out),
        pairs(&[(
            "b/default",
            "preferred_max_latency.p90 1500 ms > 800 ms (ranked last)"
        )])
    );
}

#[test]
fn only_with_ignore() {
    let f = fleet();
    let e = fleet_engine(&f, json!({}));
    let out = run(
        &e,
        &with_provider(json!({"only": ["a", "b"], "ignore": ["a"]})),
    );
    assert_eq!(out.served(), Some("b/default"));
    assert_eq!(
        filtered(&out),
        pairs(&[
            ("a/default", "ignore: a/default"),
            ("c/default", "only: not in [a, b]"),
        ])
    );
}

#[test]
fn allow_fallbacks_false_returns_the_upstream_error() {
    let f = fleet();
    f.a.server.set_behavior(behavior(json!({"status": 500})));
    let e = fleet_engine(&f, json!({}));
    // Without it, a's 500 fails over to c.
    let out = run(&e, &with_provider(json!({})));
    assert_eq!(out.served(), Some("c/default"));
    // With it, the first choice's error is the answer (a fresh engine:
    // the first request measured c).
    let e = fleet_engine(&f, json!({}));
    let out = run(&e, &with_provider(json!({"allow_fallbacks": false})));
    assert!(!out.ok());
    assert_eq!(out.terminal["status"], 500, "{:?}", out.terminal);
    assert_eq!(out.attempts().len(), 1);
    assert_eq!(out.attempts()[0].0, "a/default");
    // With an order: only the listed endpoints, the others filtered.
    f.c.server.set_behavior(behavior(json!({"status": 503})));
    let before = f.b.server.request_count();
    let out = run(
        &e,
        &with_provider(json!({"order": ["c"], "allow_fallbacks": false})),
    );
    assert_eq!(out.terminal["status"], 503, "{:?}", out.terminal);
    assert_eq!(f.b.server.request_count(), before);
    assert_eq!(
        filtered(&out),
        pairs(&[
            ("a/default", "allow_fallbacks: false (not in order)"),
            ("b/default", "allow_fallbacks: false (not in order)"),
        ])
    );
    // An order with fallbacks allowed tries the others after the listed.
    let out = run(&e, &with_provider(json!({"order": ["c"]})));
    assert_eq!(out.served(), Some("b/default"), "{:?}", out.terminal);
}

#[test]
fn require_parameters_with_tools_skips_an_endpoint_without_tools() {
    let f = fleet();
    let e = fleet_engine(&f, json!({}));
    let mut body = with_provider(json!({"sort": "price", "require_parameters": true}));
    body["tools"] = json!([{"type": "function", "function": {"name": "f", "parameters": {}}}]);
    let out = run(&e, &body);
    assert!(out.ok(), "{:?}", out.terminal);
    assert_eq!(out.served(), Some("c/default"));
    assert_eq!(
        filtered(&out),
        pairs(&[("b/default", "require_parameters: tools not supported")])
    );
    // Without require_parameters the cheapest is tried even so.
    body["provider"] = json!({"sort": "price"});
    assert_eq!(run(&e, &body).served(), Some("b/default"));
}

#[test]
fn data_collection_and_zdr_leaving_nothing_is_a_clear_error_before_any_call() {
    let f = fleet();
    let e = fleet_engine(&f, json!({}));
    let out = run(
        &e,
        &with_provider(json!({"data_collection": "deny", "zdr": true, "ignore": ["b"]})),
    );
    assert!(!out.ok());
    assert_eq!(out.terminal["status"], 404);
    assert_eq!(out.terminal["error_kind"], "no_endpoint_matches");
    assert_eq!(out.terminal["outcome"], "no_endpoint_matches");
    let msg = out.terminal["error"]["error"]["message"].as_str().unwrap();
    assert_eq!(
        msg,
        "no endpoint of test/model matches the provider preferences: \
         a/default (data_collection: deny (endpoint trains on data)); \
         b/default (ignore: b/default); \
         c/default (zdr: true (endpoint is not zero data retention))"
    );
    assert!(out.attempts().is_empty());
    for u in [&f.a, &f.b, &f.c, &f.d] {
        assert_eq!(u.server.request_count(), 0);
    }
    // Anthropic callers get the same in their envelope.
    let mut body = messages("test/model", false);
    body["provider"] = json!({"zdr": true, "region": "us-east"});
    let out = run_as(&e, Protocol::Anthropic, &body);
    assert_eq!(out.terminal["status"], 404);
    assert_eq!(out.terminal["error"]["type"], "error");
    assert!(out.terminal["error"]["error"]["message"]
        .as_str()
        .unwrap()
        .contains("a/default (zdr: true (endpoint is not zero data retention))"));
}

#[test]
fn sort_partition_none_chooses_a_fallback_models_cheaper_endpoint() {
    let f = fleet();
    let e = fleet_engine(&f, json!({}));
    let mut body = chat("test/model", false);
    body["models"] = json!(["test/other"]);
    body["provider"] = json!({"sort": {"by": "price", "partition": "model"}});
    let out = run(&e, &body);
    assert_eq!(out.served(), Some("b/default"));
    body["provider"] = json!({"sort": {"by": "price", "partition": "none"}});
    let out = run(&e, &body);
    assert_eq!(out.served(), Some("d/default"));
    assert_eq!(out.routing()["model"], "test/other");
    // The plan shows the interleaved order.
    let plan = e
        .explain(Protocol::OpenAi, body.to_string().as_bytes())
        .unwrap();
    let order: Vec<&str> = plan["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["candidates"][0]["endpoint"].as_str().unwrap())
        .collect();
    assert_eq!(
        order,
        vec!["d/default", "b/default", "c/default", "a/default"]
    );
}

#[test]
fn engine_defaults_are_narrowed_never_widened() {
    let f = fleet();
    let e = fleet_engine(
        &f,
        json!({"provider": {"data_collection": "deny", "max_price": {"prompt": 2.5}}}),
    );
    // A request cannot turn a default filter off ...
    let out = run(
        &e,
        &with_provider(json!({"data_collection": "allow", "max_price": {"prompt": 10}})),
    );
    assert_eq!(out.served(), Some("c/default"));
    assert_eq!(
        filtered(&out),
        pairs(&[("a/default", "max_price.prompt 3.0 > 2.5")])
    );
    // ... but may add its own.
    let out = run(&e, &with_provider(json!({"zdr": true})));
    assert_eq!(out.served(), Some("b/default"));
    // Defaults are checked at load, with their path.
    let err = Engine::from_json(&fleet_config(&f, json!({"provider": {"zdr": "yes"}})))
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("provider.zdr: `provider.zdr` must be true or false"),
        "{err}"
    );
    let err = Engine::from_json(&fleet_config(&f, json!({"provider": {"hedge": true}})))
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("provider.hedge: unknown field `hedge`"),
        "{err}"
    );
}

#[test]
fn unknown_or_malformed_provider_fields_are_refused_by_name() {
    let f = fleet();
    let e = fleet_engine(&f, json!({}));
    let refuse = |provider: Value| -> String {
        match e.submit(
            Protocol::OpenAi,
            with_provider(provider).to_string().as_bytes(),
        ) {
            Err(SubmitError::Request(m)) => m.to_string(),
            other => panic!("expected a refusal, got {other:?}"),
        }
    };
    let m = refuse(json!({"sortt": "price"}));
    assert!(
        m.starts_with("unknown field `provider.sortt` (known: routing, fallback, timeouts, hedge, sticky_key, order, allow_fallbacks, only, ignore, sort, max_price"),
        "{m}"
    );
    assert!(refuse(json!({"sort": "cheap"})).contains("`provider.sort` must be"));
    assert!(refuse(json!({"sort": {"by": "price", "partition": "all"}}))
        .contains("`provider.sort.partition` must be \"model\" or \"none\""));
    assert!(refuse(json!({"max_price": {"tokens": 1}}))
        .contains("unknown field `provider.max_price.tokens`"));
    assert!(refuse(json!({"max_latency": {"p95": 1}}))
        .contains("unknown field `provider.max_latency.p95`"));
    assert!(refuse(json!({"data_collection": "maybe"})).contains("\"allow\" or \"deny\""));
    assert!(refuse(json!({"quantizations": ["fp7"]})).contains("unknown quantization \"fp7\""));
    assert!(
        refuse(json!({"order": ["a"], "routing": {"type": "priority"}}))
            .contains("either `provider.routing` or `provider.order`")
    );
    assert!(refuse(json!({"preferred_max_latency": -1})).contains("must be a number >= 0"));
    let m = refuse(json!({"order": ["a", "nobody"]}));
    assert!(
        m.starts_with("`provider.order[1]`: \"nobody\" is not an endpoint of \"test/model\""),
        "{m}"
    );
}

#[test]
fn aliases_resolve_in_every_caller_protocol_pins_and_fallbacks() {
    let f = fleet();
    let e = fleet_engine(&f, json!({}));
    let out = run(&e, &chat("model-alias", false));
    assert!(out.ok(), "{:?}", out.terminal);
    assert_eq!(out.routing()["model"], "test/model");
    let out = run_as(&e, Protocol::Anthropic, &messages("model-alias", true));
    assert!(out.ok(), "{:?}", out.terminal);
    assert_eq!(out.served(), Some("a/default"));
    let resp = json!({"model": "model-alias", "input": "hello"});
    let out = run_as(&e, Protocol::Responses, &resp);
    assert!(out.ok(), "{:?}", out.terminal);
    // Pinned to a provider, and as a fallback model.
    let out = run(&e, &chat("model-alias:c", false));
    assert_eq!(out.served(), Some("c/default"));
    f.d.server.set_behavior(behavior(json!({"status": 500})));
    let mut body = chat("test/other", false);
    body["models"] = json!(["model-alias:b"]);
    let out = run(&e, &body);
    assert_eq!(out.served(), Some("b/default"));
    // The plan names the slug.
    let plan = e
        .explain(
            Protocol::OpenAi,
            chat("model-alias", false).to_string().as_bytes(),
        )
        .unwrap();
    assert_eq!(plan["requested_model"], "test/model");
}

#[test]
fn explain_lists_what_was_filtered_and_the_no_match_error() {
    let f = fleet();
    let e = fleet_engine(&f, json!({}));
    let body = with_provider(json!({"zdr": true, "preferred_max_latency": 50}));
    let plan = e
        .explain(Protocol::OpenAi, body.to_string().as_bytes())
        .unwrap();
    assert_eq!(
        plan["models"][0]["candidates"][0]["endpoint"], "b/default",
        "{plan:#}"
    );
    let f0 = &plan["filtered"];
    assert_eq!(f0[0]["endpoint"], "a/default");
    assert_eq!(f0[0]["removed"], true);
    assert_eq!(f0[1]["endpoint"], "b/default");
    assert_eq!(f0[1]["removed"], false);
    assert_eq!(f0[2]["endpoint"], "c/default");
    assert_eq!(f0[2]["removed"], true);
    let body = with_provider(json!({"only": ["nobody"]}));
    let plan = e
        .explain(Protocol::OpenAi, body.to_string().as_bytes())
        .unwrap();
    assert_eq!(plan["error"]["error_kind"], "no_endpoint_matches");
    assert!(plan["models"].as_array().unwrap().is_empty());
}

#[test]
fn require_parameters_reads_each_caller_protocols_fields() {
    let f = fleet();
    let e = fleet_engine(&f, json!({}));
    let only_b = json!({"only": ["b"], "require_parameters": true});
    // Anthropic: an image block and extended thinking.
    let mut body = messages("test/model", false);
    body["messages"] = json!([{"role": "user", "content": [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AA=="}},
        {"type": "text", "text": "what is this?"}]}]);
    body["thinking"] = json!({"type": "enabled", "budget_tokens": 1024});
    body["provider"] = only_b.clone();
    let out = run_as(&e, Protocol::Anthropic, &body);
    assert_eq!(out.terminal["error_kind"], "no_endpoint_matches");
    assert!(out.terminal["error"]["error"]["message"]
        .as_str()
        .unwrap()
        .contains("b/default (require_parameters: reasoning, images not supported)"));
    // Responses: a JSON schema format.
    let body = json!({"model": "test/model", "input": "hi", "provider": only_b,
        "text": {"format": {"type": "json_schema", "name": "x", "schema": {"type": "object"}}}});
    let out = run_as(&e, Protocol::Responses, &body);
    assert!(out.terminal["error"]["error"]["message"]
        .as_str()
        .unwrap()
        .contains("require_parameters: response_format, structured_outputs not supported"));
    // The plan shows the facts the filters read.
    let plan = e
        .explain(
            Protocol::OpenAi,
            chat("test/model", false).to_string().as_bytes(),
        )
        .unwrap();
    let b = &plan["models"][0]["candidates"][2];
    assert_eq!(b["endpoint"], "b/default");
    assert_eq!(b["region"], "eu-west");
    assert_eq!(b["quantization"], "fp8");
    assert_eq!(b["data_policy"]["zdr"], true);
    assert_eq!(b["supported_parameters"], json!(["temperature"]));
}
