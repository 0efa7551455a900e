//! Unit tests of `crate::shared`.

use super::*;
use serde_json::json;

fn overlay(
    fleet: bool,
) -> (
    crate::health::Health,
    std::sync::Arc<Overlay>,
    mpsc::UnboundedReceiver<Signal>,
) {
    let shared = if fleet {
        json!({"redis_url": "redis://127.0.0.1:9/0", "fleet_concurrency": ["p"]})
    } else {
        json!({"redis_url": "redis://127.0.0.1:9/0"})
    };
    let cfg = json!({
        "providers": [{"slug": "p", "protocol": "openai", "base_url": "http://127.0.0.1:9/v1"}],
        "models": [{"slug": "t/m", "endpoints": [
            {"provider": "p", "upstream_model": "m", "max_concurrency": 4}]}],
        "health": {"failure_threshold": 1},
        "shared": shared,
    });
    let cat = crate::catalog::Catalog::from_json(&cfg.to_string()).unwrap();
    let (o, rx) = Overlay::new(cat.shared.clone().unwrap(), 1);
    let o = std::sync::Arc::new(o);
    let mut h = crate::health::Health::new(cat.health, 1);
    h.set_shared(o.clone());
    (h, o, rx)
}

#[test]
fn hard_signals_go_out_and_remote_ones_block() {
    use crate::health::Verdict;
    let (h, o, mut rx) = overlay(false);
    let t0 = Instant::now();
    h.begin(0, t0);
    h.failure(
        0,
        t0,
        Verdict::Failure,
        Some(Duration::from_secs(30)),
        "429",
    );
    assert!(matches!(rx.try_recv(), Ok(Signal::RetryAfter(0, d)) if d == Duration::from_secs(30)));
    assert!(matches!(rx.try_recv(), Ok(Signal::Ejected(0, _))));
    let t1 = t0 + Duration::from_secs(60);
    h.begin(0, t1);
    h.success(0, t1, None);
    assert!(matches!(rx.try_recv(), Ok(Signal::Recovered(0))));
    // Another instance's ejection blocks routing and the active probe.
    o.with_remote(0, |r| r.ejected_until = Some(t1 + Duration::from_secs(5)));
    assert!(!h.view(0, t1, 1.0, 0.0, None).available(t1));
    assert!(!h.probe_due(0, t1));
    // Soft data counts only while fresh.
    o.with_remote(0, |r| {
        r.ejected_until = None;
        r.first_token = Some((40.0, 4.0));
        r.fresh_until = Some(t1 + Duration::from_secs(1));
    });
    assert_eq!(h.view(0, t1, 1.0, 0.0, None).first_token_ms, Some(40.0));
    let late = t1 + Duration::from_secs(2);
    assert_eq!(h.view(0, late, 1.0, 0.0, None).first_token_ms, None);
}

#[test]
fn fleet_limit_is_the_leases_or_a_fair_share_offline() {
    let (h, o, mut rx) = overlay(true);
    let t0 = Instant::now();
    // Offline, alone: the whole limit.
    assert_eq!(o.limit(0, Some(4)), Some(4));
    o.synced(t0, 3);
    // Online without leases: full, and ranking asks for a slot once.
    assert!(h.view(0, t0, 1.0, 0.0, Some(4)).full);
    assert!(!h.try_begin(0, t0, Some(4)));
    assert!(matches!(rx.try_recv(), Ok(Signal::Demand(0))));
    assert!(rx.try_recv().is_err(), "demand is coalesced");
    assert_eq!(o.take_demand(0), 2);
    o.with_remote(0, |r| r.leases = 1);
    assert!(h.try_begin(0, t0, Some(4)));
    assert!(!h.try_begin(0, t0, Some(4)));
    // Offline after seeing three instances: a third of the limit.
    o.failed("connection refused");
    assert_eq!(o.limit(0, Some(4)), Some(2));
}

#[test]
fn merge_weights_by_samples() {
    assert_eq!(merge(None, 0, Some((30.0, 1.0))), Some(30.0));
    assert_eq!(merge(Some(100.0), 3, None), Some(100.0));
    let m = merge(Some(100.0), 1, Some((10.0, 9.0))).unwrap();
    assert!((m - 19.0).abs() < 1e-9, "{m}");
}
