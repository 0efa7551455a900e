use super::*;

fn p(
    budget: Option<(Micros, Period)>,
    rpm: Option<u64>,
    tpm: Option<u64>,
    conc: Option<u64>,
) -> Policy {
    Policy {
        budget,
        rpm,
        tpm,
        concurrent: conc,
    }
}

const T0: u64 = 1_765_065_600_000; // 2025-12-07T00:00:00Z, a Sunday

#[test]
fn calendar_periods_in_utc() {
    let now = T0 / 1000 + 3600;
    assert_eq!(Period::Day.start(now), T0 / 1000);
    assert_eq!(Period::Day.reset(now), Some(T0 / 1000 + 86_400));
    // The week started on Monday 2025-12-01.
    assert_eq!(Period::Week.start(now), T0 / 1000 - 6 * 86_400);
    assert_eq!(Period::Month.start(now), T0 / 1000 - 6 * 86_400);
    // January 2026 starts 25 days after 2025-12-07.
    assert_eq!(Period::Month.reset(now), Some(T0 / 1000 + 25 * 86_400));
    assert_eq!(Period::Month.previous_start(now), Some(1_761_955_200)); // 2025-11-01
    assert_eq!(Period::Total.start(now), 0);
    assert_eq!(Period::Total.reset(now), None);
    assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
    assert_eq!(rfc3339(1_761_955_200 + 3_723), "2025-11-01T01:02:03Z");
    assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
}

#[test]
fn budget_counts_reservations_and_settles_real_cost() {
    let pol = p(Some((1_000, Period::Day)), None, None, None);
    let mut l = Ledger::default();
    let ask = Ask {
        cost: 400,
        tokens: 10,
    };
    l.reserve(&pol, ask, 1, T0).unwrap();
    l.reserve(&pol, ask, 2, T0).unwrap();
    // 800 reserved: a third 400 does not fit.
    let e = l.reserve(&pol, ask, 3, T0).unwrap_err();
    assert!(
        matches!(
            e,
            Refusal::Budget {
                spent: 0,
                reserved: 800,
                asked: 400,
                ..
            }
        ),
        "{e:?}"
    );
    l.settle(&pol, 1, ask, Some((100, 7)), T0);
    l.settle(&pol, 2, ask, None, T0);
    let u = l.usage(&pol, T0);
    assert_eq!(
        (
            u.current.spent,
            u.reserved,
            u.current.tokens,
            u.current.requests,
            u.current.rejections
        ),
        (100, 0, 7, 2, 1)
    );
    // The next day starts over; yesterday is the previous period.
    let u = l.usage(&pol, T0 + 86_400_000);
    assert_eq!((u.current.spent, u.previous.spent), (0, 100));
}

#[test]
fn rpm_slides_and_says_exactly_when() {
    let pol = p(None, Some(2), None, None);
    let mut l = Ledger::default();
    l.reserve(&pol, Ask::default(), 1, T0).unwrap();
    l.reserve(&pol, Ask::default(), 2, T0 + 10_000).unwrap();
    let e = l.reserve(&pol, Ask::default(), 3, T0 + 20_000).unwrap_err();
    assert_eq!(
        e,
        Refusal::Rate {
            limit: "rpm",
            max: 2,
            retry_after_ms: 40_000
        }
    );
    l.reserve(&pol, Ask::default(), 4, T0 + 60_000).unwrap();
}

#[test]
fn tpm_counts_settled_tokens_and_concurrency_counts_leases() {
    let pol = p(None, None, Some(100), Some(2));
    let mut l = Ledger::default();
    l.reserve(
        &pol,
        Ask {
            cost: 0,
            tokens: 80,
        },
        1,
        T0,
    )
    .unwrap();
    let e = l
        .reserve(
            &pol,
            Ask {
                cost: 0,
                tokens: 30,
            },
            2,
            T0 + 1000,
        )
        .unwrap_err();
    assert_eq!(
        e,
        Refusal::Rate {
            limit: "tpm",
            max: 100,
            retry_after_ms: 59_000
        }
    );
    // Settled at 50 real tokens: 30 more fit.
    l.settle(
        &pol,
        1,
        Ask {
            cost: 0,
            tokens: 80,
        },
        Some((0, 50)),
        T0 + 1000,
    );
    l.reserve(
        &pol,
        Ask {
            cost: 0,
            tokens: 30,
        },
        3,
        T0 + 1000,
    )
    .unwrap();
    l.reserve(
        &pol,
        Ask {
            cost: 0,
            tokens: 21,
        },
        4,
        T0 + 1000,
    )
    .unwrap_err();
    let pol = p(None, None, None, Some(1));
    let mut l = Ledger::default();
    l.reserve(&pol, Ask::default(), 1, T0).unwrap();
    assert!(matches!(
        l.reserve(&pol, Ask::default(), 2, T0),
        Err(Refusal::Rate {
            limit: "concurrent",
            ..
        })
    ));
    l.settle(&pol, 1, Ask::default(), None, T0);
    l.reserve(&pol, Ask::default(), 3, T0).unwrap();
}

#[test]
fn config_mistakes_name_their_path() {
    let b = BudgetConfig {
        usd: -1.0,
        period: "fortnight".into(),
    };
    let l = LimitsConfig {
        rpm: Some(0),
        ..LimitsConfig::default()
    };
    let e = Policy::resolve(Some(&b), Some(&l), "gateway.keys[0]").unwrap_err();
    let paths: Vec<&str> = e.iter().map(|e| e.0.as_str()).collect();
    assert_eq!(
        paths,
        [
            "gateway.keys[0].budget.usd",
            "gateway.keys[0].budget.period",
            "gateway.keys[0].limits.rpm"
        ]
    );
    assert!(e[1].1.contains("fortnight"));
}

#[test]
fn globs() {
    assert!(glob("openai/*", "openai/gpt-4o"));
    assert!(glob("*", "a/b"));
    assert!(glob("*/claude-*-4", "anthropic/claude-sonnet-4"));
    assert!(!glob("openai/*", "anthropic/x"));
    assert!(!glob("a*b*c", "acb"));
    assert!(glob("exact/model", "exact/model"));
}

#[test]
fn journal_survives_a_reopen_and_a_torn_line() {
    let dir = std::env::temp_dir().join(format!("llmux-budget-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("spend.jsonl");
    let _ = std::fs::remove_file(&path);
    let pol = p(Some((10_000_000, Period::Total)), None, None, None);
    {
        let s = local::LocalStore::open(&path, false).unwrap();
        for id in 0..3 {
            s.reserve("team", &pol, Ask { cost: 5, tokens: 1 }, id, T0)
                .unwrap();
            s.settle(
                "team",
                &pol,
                id,
                Ask { cost: 5, tokens: 1 },
                Some((3, 2)),
                T0,
            );
        }
        // In flight at the "crash": lost, never charged.
        s.reserve("team", &pol, Ask { cost: 5, tokens: 1 }, 9, T0)
            .unwrap();
    }
    std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .map(|mut f| {
            use std::io::Write;
            f.write_all(b"{\"s\":\"team\",\"p\":0,\"c\":99").unwrap();
        })
        .unwrap();
    let s = local::LocalStore::open(&path, false).unwrap();
    let u = s.usage("team", &pol, T0);
    assert_eq!(
        (
            u.current.spent,
            u.current.tokens,
            u.current.requests,
            u.reserved
        ),
        (9, 6, 3, 0)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The output limit a request sets bounds its reservation, Gemini's
/// `generationConfig.maxOutputTokens` too (else `default_output`).
#[test]
fn a_gemini_requests_max_output_tokens_bounds_its_reservation() {
    use crate::protocol::Protocol;
    use serde_json::json;
    let cfg = json!({
        "providers": [{"slug": "g", "protocol": "gemini", "base_url": "http://127.0.0.1:9/v1beta"}],
        "models": [{"slug": "t/m", "endpoints": [{"provider": "g", "upstream_model": "m",
            "price": {"prompt": 1, "completion": 10}}]}],
    });
    let cat = crate::catalog::Catalog::from_json(&cfg.to_string()).unwrap();
    let ask = |generation: serde_json::Value| {
        let body = json!({"model": "t/m", "generationConfig": generation,
            "contents": [{"role": "user", "parts": [{"text": "hello"}]}]});
        let r = crate::request::parse(&cat, Protocol::Gemini, body.to_string().as_bytes());
        estimate(&cat, &r.unwrap(), 4096)
    };
    let unbounded = ask(json!({"temperature": 1}));
    let small = ask(json!({"maxOutputTokens": 16, "temperature": 1}));
    assert_eq!(unbounded.tokens - small.tokens, 4096 - 16);
    // $10 per million completion tokens: 4,080 fewer tokens, 40,800 fewer
    // micro-dollars (each rounded up).
    assert!((unbounded.cost - small.cost).abs_diff(40_800) <= 1);
}
