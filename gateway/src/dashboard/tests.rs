use super::*;
use llmux::api::{Attempt, FilteredEndpoint};
use std::borrow::Cow;

fn routing<'a>(served: &'a str, tried: &[&'a str], ms: f64) -> RoutingRecord<'a> {
    RoutingRecord {
        model: Cow::Borrowed("demo/chat"),
        endpoint: Some(Cow::Borrowed(served)),
        attempts: tried
            .iter()
            .chain(std::iter::once(&served))
            .map(|e| Attempt {
                endpoint: Cow::Borrowed(e),
                provider: Cow::Borrowed("p"),
                model: Cow::Borrowed("demo/chat"),
                outcome: Cow::Borrowed(if *e == served { "success" } else { "http_500" }),
                status: Some(if *e == served { 200 } else { 500 }),
                elapsed_ms: 1.0,
                error: None,
            })
            .collect(),
        first_token_ms: Some(ms),
        cost_usd: Some(0.5),
        filtered: vec![FilteredEndpoint {
            endpoint: Cow::Borrowed("c/x"),
            reason: Cow::Borrowed("max_price.prompt 3 > 2"),
        }],
        ..RoutingRecord::default()
    }
}

fn finish<'a>(
    id: u64,
    now_ms: u64,
    key: &'a str,
    r: Option<&'a RoutingRecord<'a>>,
) -> Finished<'a> {
    Finished {
        id,
        now_ms,
        model: "demo/chat",
        key,
        stream: true,
        status: if r.is_some() { 200 } else { 499 },
        outcome: if r.is_some() {
            "success"
        } else {
            "client_closed"
        },
        duration_ms: 3.0,
        routing: r,
    }
}

#[test]
fn recent_requests_carry_attempts_and_skips_and_stay_bounded() {
    let b = Board::default();
    let r = routing("b/x", &["a/x"], 40.0);
    for i in 0..(RECENT as u64 + 20) {
        b.record(finish(i, 1_000_000 + i, "ops", Some(&r)));
    }
    let s = b.snapshot(1_000_200);
    assert_eq!(s.recent.len(), RECENT);
    assert_eq!(s.total, RECENT as u64 + 20);
    let newest = &s.recent[0];
    assert_eq!(newest.id, RECENT as u64 + 19, "newest first");
    assert!(newest.failover);
    assert_eq!(newest.attempts[0].endpoint, "a/x");
    assert_eq!(newest.attempts[0].status, Some(500));
    assert_eq!(newest.endpoint.as_deref(), Some("b/x"));
    assert_eq!(newest.skipped[0].reason, "max_price.prompt 3 > 2");
    assert_eq!(s.keys[0].name, "ops");
    assert!((s.keys[0].cost_usd - 0.5 * (RECENT as f64 + 20.0)).abs() < 1e-9);
    assert_eq!(s.served["b/x"], RECENT as u64 + 20);
}

#[test]
fn series_keeps_five_minutes_of_buckets() {
    let b = Board::default();
    let r = routing("a/x", &[], 100.0);
    let t0 = 10_000_000;
    b.record(finish(1, t0, "-", Some(&r)));
    b.record(finish(2, t0 + 1, "-", None));
    b.record(finish(3, t0 + 3 * BUCKET_MS, "-", Some(&r)));
    let s = b.snapshot(t0 + 3 * BUCKET_MS);
    assert_eq!(s.series.len(), 2, "only buckets with requests");
    let last = s.series[1];
    assert_eq!((last.requests, last.first_token_count), (1, 1));
    assert_eq!(last.t_ms, (t0 + 3 * BUCKET_MS) / BUCKET_MS * BUCKET_MS);
    let first = s.series[0];
    assert_eq!((first.requests, first.errors), (2, 1));
    assert_eq!(first.first_token_max_ms, 100.0);
    // Five minutes later the first buckets have left the window.
    let later = b.snapshot(t0 + BUCKET_MS * BUCKETS as u64 + 1);
    assert_eq!(later.series.len(), 1);
    assert!(series_start(t0 + BUCKET_MS * BUCKETS as u64) > t0);
    // Long after: everything has left the window, memory stays bounded.
    for i in 0..1_000u64 {
        b.record(finish(10 + i, t0 + (10 + i) * BUCKET_MS, "-", Some(&r)));
    }
    let g = b.inner.lock().unwrap();
    assert!(g.buckets.len() <= BUCKETS && g.samples["a/x"].len() <= SAMPLES);
}

#[test]
fn percentiles_of_samples() {
    let s: VecDeque<f64> = (1..=100).map(f64::from).collect();
    let p = Percentiles::of(&s);
    assert_eq!(
        (p.p50_ms, p.p90_ms, p.p99_ms),
        (Some(50.0), Some(90.0), Some(99.0))
    );
    assert_eq!(Percentiles::of(&VecDeque::new()).p50_ms, None);
}

#[test]
fn assets_are_embedded_and_the_script_is_not_inline() {
    let (ty, page) = asset("").unwrap();
    assert!(ty.starts_with("text/html"));
    assert!(page.contains(r#"src="/dashboard/app.js""#));
    assert!(
        !page.contains("<script>"),
        "inline script would break the CSP"
    );
    assert!(
        !page.contains("http://") && !page.contains("https://"),
        "external asset"
    );
    assert!(asset("app.js").is_some() && asset("app.css").is_some());
    assert!(asset("../Cargo.toml").is_none());
}
