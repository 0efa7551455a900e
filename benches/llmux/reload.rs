//! Issue 24's bench case: does reloading the catalog under load add
//! latency? Closed-loop requests through the Rust API, in alternating
//! one-second blocks without and with a reload every 20 ms (a catalog that
//! reprices `bench/fast` and adds a model, and back); the noise is the gap
//! between the even and the odd blocks without reloads.

use super::{config, timeouts, Ctx};
use crate::util::{pct, sorted, us, Case};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const CONC: usize = 8;
const RELOAD_EVERY: Duration = Duration::from_millis(20);

/// Keeps `CONC` requests in flight for `dur`; the latency of each, us.
fn closed(eng: &llmux::Engine, dur: Duration, body: &[u8]) -> Vec<f64> {
    let mut inflight: HashMap<u64, Instant> = HashMap::new();
    let mut lats = Vec::new();
    let end = Instant::now() + dur;
    loop {
        while Instant::now() < end && inflight.len() < CONC {
            let t = Instant::now();
            let id = eng
                .submit(llmux::Protocol::OpenAi, body)
                .expect("bench: submit");
            inflight.insert(id, t);
        }
        if inflight.is_empty() {
            return lats;
        }
        eng.poll(64, Some(Duration::from_millis(100)), |e| {
            if e.is_terminal() {
                assert!(e.kind == llmux::EventKind::Done, "bench: {}", e.data);
                if let Some(t) = inflight.remove(&e.request_id) {
                    lats.push(us(t.elapsed()));
                }
            }
        });
    }
}

/// The two catalogs a reloading block alternates between.
fn catalogs(ctx: &Ctx) -> [String; 2] {
    let base = config(ctx, json!({"explore_ratio": 0.0}), timeouts());
    let mut v: Value = serde_json::from_str(&base).expect("bench config");
    v["models"][0]["endpoints"][0]["price"] = json!({"prompt": 3.0, "completion": 5.0});
    if let Some(models) = v["models"].as_array_mut() {
        models.push(json!({"slug": "bench/extra", "endpoints": [
            {"provider": "a", "upstream_model": "m"}]}));
    }
    [base, v.to_string()]
}

pub fn case_reload(ctx: &Ctx, out: &mut Vec<Case>) {
    let mut c = Case::new(
        "reload",
        "closed loop of 8 non-streaming requests (Rust API, bench/fast) in alternating 1 s \
         blocks without and with Engine::reload every 20 ms (reprice + add a model, and back)",
    );
    let cats = catalogs(ctx);
    let eng = llmux::Engine::from_json(&cats[0]).expect("bench config");
    let body = super::body("bench/fast", false, json!({}));
    closed(&eng, Duration::from_millis(500), &body); // warm up
    let rounds = if ctx.quick { 4 } else { 10 };
    let (mut quiet, mut busy) = ([Vec::new(), Vec::new()], Vec::new());
    let reloads = AtomicUsize::new(0);
    let mut reload_us = Vec::new();
    for round in 0..rounds {
        quiet[round % 2].extend(closed(&eng, Duration::from_secs(1), &body));
        let stop = AtomicBool::new(false);
        std::thread::scope(|s| {
            let h = s.spawn(|| {
                let mut took = Vec::new();
                while !stop.load(Ordering::Acquire) {
                    let i = reloads.fetch_add(1, Ordering::AcqRel);
                    let t = Instant::now();
                    eng.reload_json(&cats[(i + 1) % 2]).expect("bench: reload");
                    took.push(us(t.elapsed()));
                    std::thread::sleep(RELOAD_EVERY);
                }
                took
            });
            busy.extend(closed(&eng, Duration::from_secs(1), &body));
            stop.store(true, Ordering::Release);
            reload_us.extend(h.join().expect("reload thread"));
        });
    }
    report(
        &mut c,
        quiet,
        busy,
        reloads.load(Ordering::Acquire),
        reload_us,
    );
    out.push(c);
}

fn report(c: &mut Case, quiet: [Vec<f64>; 2], busy: Vec<f64>, reloads: usize, took: Vec<f64>) {
    let (even, odd) = (sorted(quiet[0].clone()), sorted(quiet[1].clone()));
    let all = sorted(quiet.concat());
    let busy = sorted(busy);
    let took = sorted(took);
    let noise = |p: f64| (pct(&even, p) - pct(&odd, p)).abs();
    for (name, p) in [("p50", 0.5), ("p99", 0.99)] {
        let (q, b) = (pct(&all, p), pct(&busy, p));
        c.m(&format!("{name}_without_reloads_us"), q);
        c.m(&format!("{name}_during_reloads_us"), b);
        c.m(&format!("{name}_noise_us"), noise(p));
        c.check(
            &format!("{name} during reloads - without"),
            format!("{:+.0} us (noise {:.0} us)", b - q, noise(p)),
            "<= noise",
            b - q <= noise(p).max(0.02 * q),
        );
    }
    c.m("reloads", reloads as f64);
    c.m("requests_without_reloads", all.len() as f64);
    c.m("requests_during_reloads", busy.len() as f64);
    c.m("reload_call_p50_us", pct(&took, 0.5));
    c.m("reload_call_p99_us", pct(&took, 0.99));
    c.info(
        "latency p50 / p99 without reloads",
        format!("{:.0} / {:.0} us", pct(&all, 0.5), pct(&all, 0.99)),
    );
    c.info(
        "latency p50 / p99 during reloads",
        format!("{:.0} / {:.0} us", pct(&busy, 0.5), pct(&busy, 0.99)),
    );
    c.info(
        "reloads; Engine::reload call p50 / p99",
        format!(
            "{reloads}; {:.0} / {:.0} us",
            pct(&took, 0.5),
            pct(&took, 0.99)
        ),
    );
    c.note("noise: |even blocks - odd blocks| without reloads, at the same percentile; the check also allows 2% of the figure");
}
