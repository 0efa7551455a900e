use super::*;
use std::time::Duration;

fn v(ftl: Option<f64>, price: f64) -> EndpointView {
    EndpointView {
        first_token_ms: ftl,
        prior_ms: 1000.0,
        throughput: None,
        in_flight: 0,
        price,
        blocked_until: None,
        probing: false,
        last_sample: None,
        full: false,
    }
}

fn all(n: usize) -> Vec<usize> {
    (0..n).collect()
}

#[test]
fn latency_lowest_first() {
    let now = Instant::now();
    let views = [
        v(Some(300.0), 1.0),
        v(Some(100.0), 5.0),
        v(Some(200.0), 0.5),
    ];
    assert_eq!(
        plan(&all(3), &views, Policy::Latency, now, None, None),
        vec![1, 2, 0]
    );
}

#[test]
fn latency_unmeasured_uses_prior() {
    let now = Instant::now();
    let mut a = v(None, 1.0);
    a.prior_ms = 50.0;
    let views = [v(Some(100.0), 1.0), a, v(None, 1.0)];
    // 1 has prior 50 < 100; 2 has prior 1000.
    assert_eq!(
        plan(&all(3), &views, Policy::Latency, now, None, None),
        vec![1, 0, 2]
    );
}

#[test]
fn latency_tie_broken_by_price_then_config_order() {
    let now = Instant::now();
    let views = [
        v(Some(100.0), 3.0),
        v(Some(100.0), 1.0),
        v(Some(100.0), 1.0),
    ];
    assert_eq!(
        plan(&all(3), &views, Policy::Latency, now, None, None),
        vec![1, 2, 0]
    );
}

#[test]
fn latency_accounts_for_in_flight_load() {
    let now = Instant::now();
    let mut busy = v(Some(100.0), 1.0);
    busy.in_flight = 3; // cost 400
    let views = [busy, v(Some(250.0), 1.0)];
    assert_eq!(
        plan(&all(2), &views, Policy::Latency, now, None, None),
        vec![1, 0]
    );
}

#[test]
fn price_lowest_first_latency_breaks_ties() {
    let now = Instant::now();
    let views = [
        v(Some(100.0), 2.0),
        v(Some(300.0), 1.0),
        v(Some(200.0), 1.0),
        v(Some(50.0), 9.0),
    ];
    assert_eq!(
        plan(&all(4), &views, Policy::Price, now, None, None),
        vec![2, 1, 0, 3]
    );
}

#[test]
fn price_full_tie_keeps_config_order() {
    let now = Instant::now();
    let views = [v(Some(100.0), 1.0), v(Some(100.0), 1.0)];
    assert_eq!(
        plan(&all(2), &views, Policy::Price, now, None, None),
        vec![0, 1]
    );
    assert_eq!(
        plan(&[1, 0], &views, Policy::Price, now, None, None),
        vec![1, 0]
    );
}

#[test]
fn throughput_highest_first_unmeasured_last_ties_by_latency() {
    let now = Instant::now();
    let mut a = v(Some(100.0), 1.0);
    a.throughput = Some(50.0);
    let mut b = v(Some(300.0), 1.0);
    b.throughput = Some(200.0);
    let c = v(Some(10.0), 1.0); // unmeasured throughput
    let mut d = v(Some(50.0), 1.0);
    d.throughput = Some(50.0); // ties with a, lower latency
    let views = [a, b, c, d];
    assert_eq!(
        plan(&all(4), &views, Policy::Throughput, now, None, None),
        vec![1, 3, 0, 2]
    );
}

#[test]
fn order_keeps_given_order_regardless_of_metrics() {
    let now = Instant::now();
    let views = [v(Some(10.0), 0.0), v(Some(900.0), 9.0), v(Some(500.0), 5.0)];
    assert_eq!(
        plan(&[1, 2, 0], &views, Policy::Order, now, None, None),
        vec![1, 2, 0]
    );
    assert_eq!(plan(&[2], &views, Policy::Order, now, None, None), vec![2]);
}

#[test]
fn unavailable_moves_to_back_in_every_policy() {
    let now = Instant::now();
    let mut open = v(Some(10.0), 0.1);
    open.blocked_until = Some(now + Duration::from_secs(5));
    let views = [open, v(Some(100.0), 1.0), v(Some(200.0), 2.0)];
    for p in [Policy::Latency, Policy::Price, Policy::Throughput] {
        assert_eq!(plan(&all(3), &views, p, now, None, None)[2], 0, "{p:?}");
    }
    assert_eq!(
        plan(&[0, 2, 1], &views, Policy::Order, now, None, None),
        vec![2, 1, 0]
    );
}

#[test]
fn expired_block_is_available_again() {
    let now = Instant::now();
    let mut a = v(Some(10.0), 1.0);
    a.blocked_until = Some(now);
    let views = [a, v(Some(100.0), 1.0)];
    assert_eq!(
        plan(&all(2), &views, Policy::Latency, now, None, None),
        vec![0, 1]
    );
}

#[test]
fn probing_half_open_is_unavailable() {
    let now = Instant::now();
    let mut a = v(Some(10.0), 1.0);
    a.probing = true;
    let views = [a, v(Some(100.0), 1.0)];
    assert_eq!(
        plan(&all(2), &views, Policy::Latency, now, None, None),
        vec![1, 0]
    );
}

#[test]
fn all_unavailable_are_still_listed() {
    let now = Instant::now();
    let mut a = v(Some(10.0), 1.0);
    a.blocked_until = Some(now + Duration::from_secs(1));
    let mut b = v(Some(5.0), 1.0);
    b.blocked_until = Some(now + Duration::from_secs(1));
    let views = [a, b];
    assert_eq!(
        plan(&all(2), &views, Policy::Latency, now, None, None),
        vec![1, 0]
    );
}

#[test]
fn exploration_promotes_stalest_available_only_under_ratio() {
    let now = Instant::now();
    let mut a = v(Some(10.0), 1.0);
    a.last_sample = Some(now);
    let mut b = v(Some(100.0), 1.0);
    b.last_sample = Some(now - Duration::from_secs(30));
    let mut c = v(Some(200.0), 1.0);
    c.last_sample = Some(now - Duration::from_secs(60));
    c.blocked_until = Some(now + Duration::from_secs(1));
    let views = [a, b, c];
    let hit = Some(Explore {
        draw: 0.01,
        ratio: 0.02,
    });
    let miss = Some(Explore {
        draw: 0.5,
        ratio: 0.02,
    });
    assert_eq!(
        plan(&all(3), &views, Policy::Latency, now, hit, None),
        vec![1, 0, 2]
    );
    assert_eq!(
        plan(&all(3), &views, Policy::Latency, now, miss, None),
        vec![0, 1, 2]
    );
    // Never explores under explicit policies.
    assert_eq!(plan(&all(3), &views, Policy::Price, now, hit, None)[0], 0);
    assert_eq!(
        plan(&[0, 1], &views, Policy::Order, now, hit, None),
        vec![0, 1]
    );
}

#[test]
fn exploration_prefers_never_measured() {
    let now = Instant::now();
    let mut a = v(Some(10.0), 1.0);
    a.last_sample = Some(now);
    let views = [a, v(None, 1.0)];
    let hit = Some(Explore {
        draw: 0.0,
        ratio: 0.1,
    });
    assert_eq!(
        plan(&all(2), &views, Policy::Latency, now, hit, None),
        vec![1, 0]
    );
}

#[test]
fn optimism_tries_each_unmeasured_idle_endpoint_first() {
    let now = Instant::now();
    let miss = Some(Explore {
        draw: 0.9,
        ratio: 0.02,
    });
    let mut busy = v(None, 1.0);
    busy.in_flight = 1;
    let mut blocked = v(None, 1.0);
    blocked.blocked_until = Some(now + Duration::from_secs(1));
    let views = [
        v(Some(10.0), 1.0),
        busy,
        blocked,
        v(None, 1.0),
        v(None, 0.5),
    ];
    // Idle unmeasured endpoints first, cheapest first (price breaks the
    // prior tie); one measurement already in flight or blocked: by cost.
    assert_eq!(
        plan(&all(5), &views, Policy::Latency, now, miss, None),
        vec![4, 3, 0, 1, 2]
    );
    // Without exploration (explore_ratio 0) the prior decides.
    assert_eq!(
        plan(&all(5), &views, Policy::Latency, now, None, None),
        vec![0, 4, 3, 1, 2]
    );
}

#[test]
fn empty_and_single() {
    let now = Instant::now();
    let views = [v(None, 0.0)];
    assert!(plan(&[], &views, Policy::Latency, now, None, None).is_empty());
    assert_eq!(
        plan(&[0], &views, Policy::Throughput, now, None, None),
        vec![0]
    );
}

#[test]
fn full_endpoint_moves_back() {
    let now = Instant::now();
    let mut a = v(Some(10.0), 1.0);
    a.full = true;
    let views = [a, v(Some(100.0), 1.0)];
    assert_eq!(
        plan(&all(2), &views, Policy::Latency, now, None, None),
        vec![1, 0]
    );
}

#[test]
fn sticky_endpoint_first_while_available_except_under_order() {
    let now = Instant::now();
    let views = [v(Some(10.0), 1.0), v(Some(100.0), 1.0), v(Some(50.0), 1.0)];
    assert_eq!(
        plan(&all(3), &views, Policy::Latency, now, None, Some(1)),
        vec![1, 0, 2]
    );
    assert_eq!(
        plan(&all(3), &views, Policy::Price, now, None, Some(2))[0],
        2
    );
    assert_eq!(
        plan(&[0, 1], &views, Policy::Order, now, None, Some(1)),
        vec![0, 1]
    );
    // Not a candidate: ignored.
    assert_eq!(
        plan(&[0, 2], &views, Policy::Latency, now, None, Some(1)),
        vec![0, 2]
    );
    // Unavailable: ignored.
    let mut blocked = views;
    blocked[1].blocked_until = Some(now + std::time::Duration::from_secs(1));
    assert_eq!(
        plan(&all(3), &blocked, Policy::Latency, now, None, Some(1)),
        vec![0, 2, 1]
    );
}
