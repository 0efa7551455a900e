//! Unit tests of `crate::health`.

use super::*;

fn cfg() -> HealthConfig {
    HealthConfig {
        failure_threshold: 2,
        base_ejection_ms: 100,
        max_ejection_ms: 350,
        ..Default::default()
    }
}

#[test]
fn peak_ewma_jumps_up_decays_down() {
    let h = Health::new(cfg(), 1);
    let t0 = Instant::now();
    h.first_token(0, t0, 100.0);
    h.first_token(0, t0 + Duration::from_millis(10), 500.0);
    assert_eq!(h.view(0, t0, 1.0, 0.0, None).first_token_ms, Some(500.0));
    // One half-life later a 100 ms sample pulls it halfway.
    h.first_token(0, t0 + Duration::from_millis(10_010), 100.0);
    let v = h.view(0, t0, 1.0, 0.0, None).first_token_ms.unwrap();
    assert!((v - 300.0).abs() < 1.0, "{v}");
}

#[test]
fn circuit_opens_half_opens_and_grows() {
    let h = Health::new(cfg(), 1);
    let t0 = Instant::now();
    for _ in 0..2 {
        h.begin(0, t0);
        h.failure(0, t0, Verdict::Failure, None, "x");
    }
    let v = h.view(0, t0, 1.0, 0.0, None);
    assert_eq!(v.blocked_until, Some(t0 + Duration::from_millis(100)));
    // After the ejection: half-open, one probe allowed.
    let t1 = t0 + Duration::from_millis(100);
    assert!(h.view(0, t1, 1.0, 0.0, None).available(t1));
    h.begin(0, t1);
    assert!(
        !h.view(0, t1, 1.0, 0.0, None).available(t1),
        "probe in flight"
    );
    h.failure(0, t1, Verdict::Failure, None, "x");
    // Second ejection doubles.
    assert_eq!(
        h.view(0, t1, 1.0, 0.0, None).blocked_until,
        Some(t1 + Duration::from_millis(200))
    );
    let t2 = t1 + Duration::from_millis(200);
    h.begin(0, t2);
    h.failure(0, t2, Verdict::Failure, None, "x");
    // Third would be 400, capped at 350.
    assert_eq!(
        h.view(0, t2, 1.0, 0.0, None).blocked_until,
        Some(t2 + Duration::from_millis(350))
    );
    let t3 = t2 + Duration::from_millis(350);
    h.begin(0, t3);
    h.success(0, t3, Some(10.0));
    let v = h.view(0, t3, 1.0, 0.0, None);
    assert!(v.available(t3) && v.blocked_until.is_none());
    assert_eq!(h.snapshot(0, t3)["circuit"], "closed");
}

#[test]
fn neutral_outcomes_do_not_count_and_release_the_probe() {
    let h = Health::new(cfg(), 1);
    let t0 = Instant::now();
    for _ in 0..5 {
        h.begin(0, t0);
        h.failure(0, t0, Verdict::Neutral, None, "cancelled");
    }
    assert!(h.view(0, t0, 1.0, 0.0, None).available(t0));
    assert_eq!(h.snapshot(0, t0)["failures"], 0);
    assert_eq!(h.snapshot(0, t0)["in_flight"], 0);
}

#[test]
fn concurrency_limit_and_percentiles() {
    let h = Health::new(cfg(), 1);
    let t0 = Instant::now();
    assert!(h.try_begin(0, t0, Some(2)));
    assert!(h.try_begin(0, t0, Some(2)));
    assert!(h.view(0, t0, 1.0, 0.0, Some(2)).full);
    assert!(!h.try_begin(0, t0, Some(2)));
    h.success(0, t0, None);
    assert!(h.try_begin(0, t0, Some(2)));
    assert_eq!(h.first_token_percentile(0, 0.9), None);
    for i in 1..=10 {
        h.first_token(0, t0, i as f64 * 10.0);
    }
    assert_eq!(h.first_token_percentile(0, 0.9), Some(90.0));
    assert_eq!(h.first_token_percentile(0, 0.0), Some(10.0));
}

#[test]
fn export_import_round_trip() {
    let h = Health::new(cfg(), 1);
    let t0 = Instant::now();
    h.first_token(0, t0, 123.0);
    for _ in 0..2 {
        h.begin(0, t0);
        h.failure(
            0,
            t0,
            Verdict::Failure,
            Some(Duration::from_millis(500)),
            "x",
        );
    }
    let v = h.export(0, t0);
    let h2 = Health::new(cfg(), 1);
    h2.import(0, t0, &v).unwrap();
    let w = h2.view(0, t0, 1.0, 0.0, None);
    assert_eq!(w.first_token_ms, Some(123.0));
    assert!(!w.available(t0), "open circuit carried over");
    assert_eq!(h2.export(0, t0)["ejections"], 1);
    for bad in [
        serde_json::json!({"first_token_ms": "x"}),
        serde_json::json!({"ejections": -1}),
        serde_json::json!({"first_token_ms": -1.0}),
        serde_json::json!({"error_rate": 2.0}),
        serde_json::json!({"recent_first_token_ms": [1.0, -2.0]}),
    ] {
        let field = bad.as_object().unwrap().keys().next().unwrap().clone();
        let err = h2.import(0, t0, &bad).unwrap_err();
        assert!(err.starts_with(&field), "{err}");
    }
    assert_eq!(h2.view(0, t0, 1.0, 0.0, None).first_token_ms, Some(123.0));
}

#[test]
fn response_latency_is_its_own_signal() {
    let h = Health::new(cfg(), 1);
    let t0 = Instant::now();
    h.first_token(0, t0, 5.0);
    h.response(0, t0, 1500.0);
    let stream = h.view_for(0, t0, 1.0, 0.0, None, Latency::FirstToken);
    let whole = h.view_for(0, t0, 1.0, 0.0, None, Latency::Response);
    assert_eq!(stream.first_token_ms, Some(5.0));
    assert_eq!(whole.first_token_ms, Some(1500.0));
    assert_eq!(h.snapshot(0, t0)["response_ms"], 1500.0);
    let back = h.export(0, t0);
    let h2 = Health::new(cfg(), 1);
    h2.import(0, t0, &back).unwrap();
    assert_eq!(h2.export(0, t0), back);
}

#[test]
fn retry_after_blocks_until_deadline_capped() {
    let mut c = cfg();
    c.max_retry_after_ms = 1000;
    let h = Health::new(c, 1);
    let t0 = Instant::now();
    h.begin(0, t0);
    h.failure(
        0,
        t0,
        Verdict::Failure,
        Some(Duration::from_secs(3600)),
        "429",
    );
    assert_eq!(
        h.view(0, t0, 1.0, 0.0, None).blocked_until,
        Some(t0 + Duration::from_millis(1000))
    );
    assert_eq!(h.snapshot(0, t0)["rate_limited_for_ms"], 1000);
}

#[test]
fn stale_percentile_windows_stop_judging_and_restart_on_the_next_sample() {
    let h = Health::new(cfg(), 1);
    let t0 = Instant::now();
    for i in 0..10 {
        h.first_token(0, t0 + Duration::from_millis(i), 500.0);
    }
    let k = Latency::FirstToken;
    assert_eq!(h.percentile_at(0, k, 0.9, t0), Some(500.0));
    assert_eq!(h.average_at(0, k, t0), Some(500.0));
    // Three half-lives (10 s each) after the last sample: stale.
    let late = t0 + Duration::from_secs(31);
    assert_eq!(h.percentile_at(0, k, 0.9, late), None);
    assert_eq!(h.average_at(0, k, late), None);
    // Hedging still reads the old window until a new sample replaces it.
    assert_eq!(h.percentile(0, k, 0.9), Some(500.0));
    h.first_token(0, late, 50.0);
    assert_eq!(h.percentile(0, k, 0.9), None, "a fresh window of one");
    let avg = h.average_at(0, k, late).unwrap();
    assert!(avg < 120.0, "{avg}");
}
