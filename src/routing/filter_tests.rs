use super::*;
use crate::config::DataPolicyConfig;

fn ep(id: &str, prompt: f64) -> Endpoint {
    Endpoint {
        id: id.into(),
        model: 0,
        provider: 0,
        upstream_model: "m".into(),
        price_prompt: prompt,
        price_completion: 1.0,
        context_window: None,
        expected_first_token_ms: None,
        max_concurrency: None,
        price_request: 0.0,
        price_image: 0.0,
        region: None,
        data_policy: None,
        quantization: None,
        supported_parameters: vec!["tools", "tool_choice"],
        parameter_mask: crate::catalog::parameter_mask(&["tools", "tool_choice"]),
    }
}

fn unmeasured(prior: f64) -> impl Fn(usize) -> Measured {
    move |_| Measured {
        prior_ms: prior,
        ..Measured::default()
    }
}

fn reasons(j: &Judged) -> Vec<(usize, &str, bool)> {
    j.filtered
        .iter()
        .map(|f| (f.endpoint, f.reason.as_str(), f.removed))
        .collect()
}

#[test]
fn only_and_ignore_name_providers_or_endpoints() {
    let eps = [ep("a/x", 1.0), ep("b/y", 1.0), ep("c/z", 1.0)];
    let prefs = Preferences {
        only: Some(vec!["a".into(), "b/y".into()]),
        ignore: vec!["b".into()],
        ..Default::default()
    };
    let j = filter(&[0, 1, 2], &eps, &prefs, &[], &unmeasured(0.0));
    assert_eq!(j.kept, vec![0]);
    assert_eq!(
        reasons(&j),
        vec![(1, "ignore: b/y", true), (2, "only: not in [a, b/y]", true)]
    );
}

#[test]
fn max_price_names_the_field_and_both_values() {
    let mut eps = [ep("a/x", 3.0), ep("b/y", 2.0)];
    eps[1].price_request = 0.02;
    let prefs = Preferences {
        max_price: MaxPrice {
            prompt: Some(2.5),
            request: Some(0.01),
            ..Default::default()
        },
        ..Default::default()
    };
    let j = filter(&[0, 1], &eps, &prefs, &[], &unmeasured(0.0));
    assert!(j.kept.is_empty());
    assert_eq!(
        reasons(&j),
        vec![
            (0, "max_price.prompt 3.0 > 2.5", true),
            (1, "max_price.request 0.02 > 0.01", true)
        ]
    );
}

#[test]
fn data_collection_and_zdr_fail_closed_on_unknown_policy() {
    let mut eps = [
        ep("a/x", 1.0),
        ep("b/y", 1.0),
        ep("c/z", 1.0),
        ep("d/w", 1.0),
    ];
    eps[1].data_policy = Some(DataPolicyConfig {
        training: true,
        ..Default::default()
    });
    eps[2].data_policy = Some(DataPolicyConfig::default());
    eps[3].data_policy = Some(DataPolicyConfig {
        zdr: true,
        ..Default::default()
    });
    let deny = Preferences {
        deny_data_collection: true,
        ..Default::default()
    };
    let j = filter(&[0, 1, 2, 3], &eps, &deny, &[], &unmeasured(0.0));
    assert_eq!(j.kept, vec![2, 3]);
    assert_eq!(
        reasons(&j),
        vec![
            (
                0,
                "data_collection: deny (endpoint has no data_policy)",
                true
            ),
            (1, "data_collection: deny (endpoint trains on data)", true)
        ]
    );
    let zdr = Preferences {
        zdr: true,
        ..Default::default()
    };
    let j = filter(&[0, 2, 3], &eps, &zdr, &[], &unmeasured(0.0));
    assert_eq!(j.kept, vec![3]);
    assert_eq!(
        j.filtered[1].reason,
        "zdr: true (endpoint is not zero data retention)"
    );
}

#[test]
fn quantizations_regions_and_required_parameters() {
    let mut eps = [ep("a/x", 1.0), ep("b/y", 1.0), ep("c/z", 1.0)];
    eps[0].quantization = Some("fp8".into());
    eps[0].region = Some("eu-west".into());
    eps[1].quantization = Some("fp8".into());
    eps[1].region = Some("us-east".into());
    eps[2].region = Some("eu-west".into());
    let prefs = Preferences {
        quantizations: Some(vec!["fp8".into(), "fp16".into()]),
        regions: Some(vec!["eu-west".into()]),
        require_parameters: true,
        ..Default::default()
    };
    let j = filter(&[0, 1, 2], &eps, &prefs, &["tools"], &unmeasured(0.0));
    assert_eq!(j.kept, vec![0]);
    assert_eq!(
        reasons(&j),
        vec![
            (1, "region: us-east not in [eu-west]", true),
            (2, "quantizations: unknown not in [fp8, fp16]", true)
        ]
    );
    eps[0].supported_parameters = vec!["tool_choice"];
    let j = filter(&[0], &eps, &prefs, &["tools", "images"], &unmeasured(0.0));
    assert_eq!(
        j.filtered[0].reason,
        "require_parameters: tools, images not supported"
    );
    // Without require_parameters, what the request uses does not matter.
    let j = filter(
        &[0],
        &eps,
        &Preferences::default(),
        &["tools"],
        &unmeasured(0.0),
    );
    assert_eq!(j.kept, vec![0]);
}

#[test]
fn hard_latency_removes_and_soft_latency_demotes_with_unmeasured_noted() {
    let eps = [ep("a/x", 1.0), ep("b/y", 1.0), ep("c/z", 1.0)];
    let measured = |e: usize| Measured {
        latency: match e {
            0 => [Some(300.0), None, Some(700.0), None],
            1 => [Some(500.0), None, Some(1200.0), None],
            _ => [None; 4],
        },
        throughput: [None; 4],
        prior_ms: 900.0,
        average_ms: None,
    };
    let hard = Preferences {
        max_latency: Cutoffs {
            p90: Some(800.0),
            ..Default::default()
        },
        ..Default::default()
    };
    let j = filter(&[0, 1, 2], &eps, &hard, &[], &measured);
    assert_eq!(j.kept, vec![0]);
    assert_eq!(
        reasons(&j),
        vec![
            (1, "max_latency.p90 1200 ms > 800 ms", true),
            (
                2,
                "max_latency.p90 900 ms > 800 ms (unmeasured: expected latency)",
                true
            )
        ]
    );
    let soft = Preferences {
        preferred_max_latency: hard.max_latency,
        ..Default::default()
    };
    let j = filter(&[0, 1, 2], &eps, &soft, &[], &measured);
    assert_eq!(j.kept, vec![0, 1, 2]);
    assert_eq!(j.demoted, vec![1, 2]);
    assert_eq!(
        j.filtered[0].reason,
        "preferred_max_latency.p90 1200 ms > 800 ms (ranked last)"
    );
    assert!(!j.filtered[0].removed);
}

#[test]
fn throughput_cutoffs_hard_passes_unmeasured_soft_demotes_it() {
    let eps = [ep("a/x", 1.0), ep("b/y", 1.0)];
    let measured = |e: usize| Measured {
        throughput: if e == 0 { [Some(20.0); 4] } else { [None; 4] },
        ..Measured::default()
    };
    let cut = Cutoffs {
        p50: Some(50.0),
        ..Default::default()
    };
    let hard = Preferences {
        min_throughput: cut,
        ..Default::default()
    };
    let j = filter(&[0, 1], &eps, &hard, &[], &measured);
    assert_eq!(j.kept, vec![1]);
    assert_eq!(
        j.filtered[0].reason,
        "min_throughput.p50 20.0 tokens/s < 50.0 tokens/s"
    );
    let soft = Preferences {
        preferred_min_throughput: cut,
        ..Default::default()
    };
    let j = filter(&[0, 1], &eps, &soft, &[], &measured);
    assert_eq!(j.demoted, vec![0, 1]);
    assert_eq!(
        j.filtered[1].reason,
        "preferred_min_throughput.p50 unmeasured (ranked last)"
    );
}

#[test]
fn narrow_never_widens_the_defaults() {
    let defaults = Preferences {
        only: Some(vec!["a".into(), "b".into()]),
        ignore: vec!["c".into()],
        max_price: MaxPrice {
            prompt: Some(2.0),
            ..Default::default()
        },
        deny_data_collection: true,
        allow_fallbacks: Some(false),
        regions: Some(vec!["eu".into(), "us".into()]),
        max_latency: Cutoffs {
            p90: Some(800.0),
            ..Default::default()
        },
        min_throughput: Cutoffs {
            p50: Some(10.0),
            ..Default::default()
        },
        sort: Some(Sort {
            by: Policy::Price,
            partition: Partition::Model,
        }),
        ..Default::default()
    };
    let request = Preferences {
        only: Some(vec!["b".into(), "d".into()]),
        ignore: vec!["e".into()],
        max_price: MaxPrice {
            prompt: Some(5.0),
            completion: Some(3.0),
            ..Default::default()
        },
        deny_data_collection: false,
        allow_fallbacks: Some(true),
        zdr: true,
        regions: Some(vec!["us".into()]),
        max_latency: Cutoffs {
            p90: Some(2000.0),
            p50: Some(300.0),
            ..Default::default()
        },
        min_throughput: Cutoffs {
            p50: Some(5.0),
            ..Default::default()
        },
        sort: Some(Sort {
            by: Policy::Latency,
            partition: Partition::None,
        }),
        ..Default::default()
    };
    let m = Preferences::narrow(&defaults, request);
    assert_eq!(m.only, Some(vec!["b".to_owned()]));
    assert_eq!(m.ignore, vec!["c".to_owned(), "e".to_owned()]);
    assert_eq!(m.max_price.prompt, Some(2.0));
    assert_eq!(m.max_price.completion, Some(3.0));
    assert!(m.deny_data_collection && m.zdr);
    assert_eq!(m.allow_fallbacks, Some(false));
    assert_eq!(m.regions, Some(vec!["us".to_owned()]));
    assert_eq!(m.max_latency.p90, Some(800.0));
    assert_eq!(m.max_latency.p50, Some(300.0));
    assert_eq!(m.min_throughput.p50, Some(10.0));
    // Ranking is the request's to choose.
    assert_eq!(m.sort.unwrap().by, Policy::Latency);
    // No defaults: the request as it is.
    let r = Preferences {
        zdr: true,
        ..Default::default()
    };
    assert_eq!(Preferences::narrow(&Preferences::default(), r.clone()), r);
}

#[test]
fn finish_puts_demoted_after_the_rest_and_before_the_unavailable() {
    let available = |e: usize| e != 3;
    let order = finish(vec![3, 1, 2, 0], &[1], &available, false);
    assert_eq!(order, vec![2, 0, 1, 3]);
    assert_eq!(finish(vec![3, 1, 2, 0], &[], &available, true), vec![3]);
}

#[test]
fn rank_together_orders_across_models_by_cost() {
    let price = [3.0, 1.0, 2.0];
    let out = rank_together(
        &[(0, 0), (0, 1), (1, 2)],
        &|e| price[e],
        &|e| e == 1,
        &|_| true,
    );
    assert_eq!(out, vec![(1, 2), (0, 0), (0, 1)]);
}

#[test]
fn few_samples_are_judged_on_the_fresh_average_before_the_expectation() {
    let eps = [ep("a/x", 1.0), ep("b/y", 1.0)];
    // a: one slow probe after its window went stale; b: nothing at all.
    let measured = |e: usize| Measured {
        average_ms: (e == 0).then_some(400.0),
        prior_ms: 100.0,
        ..Measured::default()
    };
    let prefs = Preferences {
        preferred_max_latency: Cutoffs {
            p90: Some(200.0),
            ..Default::default()
        },
        ..Default::default()
    };
    let j = filter(&[0, 1], &eps, &prefs, &[], &measured);
    assert_eq!(j.demoted, vec![0]);
    assert_eq!(
        reasons(&j),
        vec![(
            0,
            "preferred_max_latency.p90 400 ms > 200 ms (few samples: recent average) (ranked last)",
            false
        )]
    );
}
