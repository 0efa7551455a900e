//! The `keys` case: what a key's budget and limits add to a request, with
//! the local store (reserve + settle, in process) and on a live
//! redis-server (one script round trip before sending, against a bare
//! PING round trip on the same connection kind).

use super::util::{r, Case};
use futures_util::FutureExt;
use llmux::budget::{self, Ask, Budgets, FailMode, Period, Policy};
use serde_json::json;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn policy() -> Arc<Policy> {
    Arc::new(Policy {
        budget: Some((budget::micros(1e9), Period::Month)),
        rpm: Some(u64::MAX / 2),
        tpm: Some(u64::MAX / 2),
        concurrent: Some(64),
    })
}

pub fn case_keys(quick: bool, out: &mut Vec<Case>) {
    let mut c = Case::new(
        "keys",
        "a key's budget + rpm + tpm + concurrent per request: local store (reserve + settle), and on a live redis-server",
    );
    let local = Arc::new(Budgets::new(
        budget::Store::Local(budget::local::LocalStore::memory()),
        FailMode::Closed,
        FailMode::Open,
    ));
    let subject: Arc<str> = Arc::from("team-a");
    let p = policy();
    let ask = Ask {
        cost: 1_000,
        tokens: 100,
    };
    let iters = if quick { 100_000 } else { 500_000 };
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        let t = Instant::now();
        for _ in 0..iters {
            // The local store never awaits: the future is ready at once.
            let lease = local
                .reserve(&subject, &p, ask)
                .now_or_never()
                .expect("ready");
            black_box(lease.expect("admitted")).settle(0.0005, 60);
        }
        best = best.min(t.elapsed().as_nanos() as f64 / iters as f64);
    }
    c.m("local_reserve_settle_ns", r(best, 1));
    c.check(
        "local: reserve + settle per request",
        format!("{:.2} us", best / 1000.0),
        "<= 2 us",
        best <= 2000.0,
    );
    redis_part(&mut c, quick);
    out.push(c);
}

fn redis_part(c: &mut Case, quick: bool) {
    let Some((mut child, port)) = super::bench_redis() else {
        c.note("redis-server/valkey-server not installed: the Redis part skipped");
        return;
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    let url = format!("redis://127.0.0.1:{port}/0");
    let cat = llmux::catalog::Catalog::from_json(
        &json!({"providers": [{"slug": "p", "protocol": "openai", "base_url": "http://127.0.0.1:9/v1"}],
            "models": [{"slug": "b/m", "endpoints": [{"provider": "p", "upstream_model": "m"}]}],
            "shared": {"redis_url": url}})
        .to_string(),
    )
    .expect("catalog");
    let shared = cat.shared.clone().expect("shared");
    let n = if quick { 2_000 } else { 10_000 };
    let (reserve_us, ping_us) = rt.block_on(async {
        let store = budget::redis::RedisStore::new(
            &shared,
            Duration::from_secs(30),
            tokio::runtime::Handle::current(),
        )
        .expect("store");
        let b = Arc::new(Budgets::new(
            budget::Store::Redis(store),
            FailMode::Closed,
            FailMode::Open,
        ));
        let subject: Arc<str> = Arc::from("team-a");
        let p = policy();
        let ask = Ask {
            cost: 1_000,
            tokens: 100,
        };
        let client = redis::Client::open(url.as_str()).expect("client");
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .expect("connect");
        let mut rs = Vec::with_capacity(n);
        let mut ps = Vec::with_capacity(n);
        for _ in 0..n {
            let t = Instant::now();
            let lease = b.reserve(&subject, &p, ask).await.expect("admitted");
            rs.push(t.elapsed().as_secs_f64() * 1e6);
            lease.settle(0.0005, 60);
            let t = Instant::now();
            let _: String = redis::cmd("PING")
                .query_async(&mut conn)
                .await
                .expect("ping");
            ps.push(t.elapsed().as_secs_f64() * 1e6);
            tokio::task::yield_now().await;
        }
        rs.sort_by(f64::total_cmp);
        ps.sort_by(f64::total_cmp);
        (rs[n / 2], ps[n / 2])
    });
    c.m("redis_reserve_p50_us", r(reserve_us, 1));
    c.m("redis_ping_p50_us", r(ping_us, 1));
    c.check(
        "Redis: reserve (one script) vs one PING round trip, p50",
        format!(
            "{reserve_us:.0} us vs {ping_us:.0} us ({:.2}x)",
            reserve_us / ping_us
        ),
        "one round trip",
        reserve_us < 3.0 * ping_us,
    );
    child.kill().ok();
    child.wait().ok();
}
