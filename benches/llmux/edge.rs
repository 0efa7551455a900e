//! Issue 25's rows: a plain TCP relay as the floor of the gateway's extra
//! hop (non-stream and stream, c=1 and c=64), and `gateway-memory`: many
//! concurrent open streams through `llmux serve`, memory per stream.

use super::util::{pct, r, sorted};
use super::{body, direct_body, direct_closed, fmt_us, Case, Ctx, Gateway};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A plain TCP byte relay to `target` (`http://127.0.0.1:PORT`) on a thread
/// of its own with a current-thread runtime, on the bench's CPU like the
/// gateway: `http://127.0.0.1:RELAY_PORT`. Lives as long as the process.
pub fn start_relay(target: &str) -> String {
    let upstream = target.trim_start_matches("http://").to_owned();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("relay runtime");
        rt.block_on(async move {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("relay bind");
            tx.send(l.local_addr().expect("relay addr"))
                .expect("relay address");
            loop {
                let Ok((mut a, _)) = l.accept().await else {
                    continue;
                };
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    let Ok(mut b) = tokio::net::TcpStream::connect(&upstream).await else {
                        return;
                    };
                    let _ = a.set_nodelay(true);
                    let _ = b.set_nodelay(true);
                    let _ = tokio::io::copy_bidirectional(&mut a, &mut b).await;
                });
            }
        });
    });
    format!("http://{}", rx.recv().expect("relay started"))
}

/// p50 and p99 (us) and the rate of one closed-loop block set.
struct Run {
    p50: f64,
    p99: f64,
    rps: f64,
}

fn run(ctx: &Ctx, url: &str, b: &[u8], conc: usize, block: Duration, rounds: usize) -> Run {
    let (mut v, mut t) = (Vec::new(), Duration::ZERO);
    for _ in 0..rounds {
        let (x, d) = direct_closed(ctx, url, b, conc, block, usize::MAX);
        v.extend(x);
        t += d;
    }
    let n = v.len() as f64;
    let v = sorted(v);
    Run {
        p50: pct(&v, 0.5),
        p99: pct(&v, 0.99),
        rps: n / t.as_secs_f64(),
    }
}

/// The gateway, the bare hyper proxy, the relay and the direct path
/// interleaved for non-stream requests and 1- and 32-chunk streams at c=1
/// and c=64: what the gateway adds over the relay (the floor of any extra
/// hop) and over the hyper proxy (the floor of an HTTP hop built on hyper),
/// and per stream chunk.
pub fn relay_rows(ctx: &Ctx, gw: &Gateway, c: &mut Case) {
    let relay = start_relay(&ctx.fleet.url("fast"));
    let floor = super::floor::Floor::start(&ctx.fleet.url("fast"), false);
    let path = "/v1/chat/completions";
    let urls = [
        format!("{}{path}", gw.base),
        format!("{}{path}", floor.base),
        format!("{relay}{path}"),
        format!("{}{path}", ctx.fleet.url("fast")),
    ];
    let mut rows = Vec::new();
    for conc in [1usize, 64] {
        for (kind, mock) in [
            ("non-stream", None),
            ("stream-1", Some(1)),
            ("stream-32", Some(32)),
        ] {
            let row = level(ctx, &urls, conc, kind, mock, c);
            rows.push(row);
        }
    }
    summarize(&rows, c);
    c.m("relay_levels", Value::Array(rows));
}

/// One row: the four paths interleaved, medians over the rounds.
fn level(
    ctx: &Ctx,
    urls: &[String; 4],
    conc: usize,
    kind: &str,
    mock: Option<usize>,
    c: &mut Case,
) -> Value {
    let block = Duration::from_millis(if ctx.quick { 200 } else { 300 });
    let rounds = if ctx.quick { 2 } else { 4 };
    let stream = mock.is_some();
    let m = mock.map(|k| json!({"chunks": k, "text": "ab".repeat(k)}));
    let extra = m.clone().map(|m| json!({"mock": m})).unwrap_or(json!({}));
    let (gb, db) = (body("bench/fast", stream, extra), direct_body(stream, m));
    // gateway, hyper proxy, relay, direct
    let mut runs: [Vec<Run>; 4] = Default::default();
    for _ in 0..rounds {
        for (i, url) in urls.iter().enumerate() {
            let b = if i == 0 { &gb } else { &db };
            runs[i].push(run(ctx, url, b, conc, block, 1));
        }
    }
    let med = |v: &[Run], f: fn(&Run) -> f64| pct(&sorted(v.iter().map(f).collect()), 0.5);
    let p50: Vec<f64> = runs.iter().map(|v| med(v, |x| x.p50)).collect();
    let p99: Vec<f64> = runs.iter().map(|v| med(v, |x| x.p99)).collect();
    let rps: Vec<f64> = runs.iter().map(|v| med(v, |x| x.rps)).collect();
    let mut row = json!({"concurrency": conc, "kind": kind});
    for (i, who) in ["gateway", "hyper", "relay", "direct"].iter().enumerate() {
        row[format!("{who}_p50_us")] = json!(r(p50[i], 1));
        row[format!("{who}_p99_us")] = json!(r(p99[i], 1));
        row[format!("{who}_rps")] = json!(r(rps[i], 1));
    }
    let added = |i: usize| p50[i] - p50[3];
    c.info(
        &format!("c={conc:<2} {kind:<10} added p50 gateway / hyper / relay"),
        format!(
            "{} / {} / {} (x{:.2} / x{:.2} the relay's); p99 {} / {} / {}; {:.0} / {:.0} / {:.0} / {:.0} req/s (gateway / hyper / relay / direct)",
            fmt_us(added(0)),
            fmt_us(added(1)),
            fmt_us(added(2)),
            added(0) / added(2).max(1.0),
            added(1) / added(2).max(1.0),
            fmt_us(p99[0] - p99[3]),
            fmt_us(p99[1] - p99[3]),
            fmt_us(p99[2] - p99[3]),
            rps[0],
            rps[1],
            rps[2],
            rps[3]
        ),
    );
    row
}

/// The targets from the rows: added p50 and p99 over the relay's
/// at c=1, the extra per stream chunk, and the rate kept at c=64.
fn summarize(rows: &[Value], c: &mut Case) {
    let get = |conc: usize, kind: &str, k: &str| -> f64 {
        rows.iter()
            .find(|x| x["concurrency"] == conc && x["kind"] == kind)
            .and_then(|x| x[k].as_f64())
            .unwrap_or(f64::NAN)
    };
    let added = |conc, kind, who: &str, q: &str| {
        get(conc, kind, &format!("{who}_{q}_us")) - get(conc, kind, &format!("direct_{q}_us"))
    };
    // (c=1 added p50 over the relay's, per chunk over the relay, c=64
    // rate kept) for the gateway or the bare hyper proxy.
    let figures = |who: &str| {
        let p50x = added(1, "non-stream", who, "p50") / added(1, "non-stream", "relay", "p50");
        let p50 = |kind| get(1, kind, &format!("{who}_p50_us"));
        let chunk = ((p50("stream-32") - p50("stream-1"))
            - (get(1, "stream-32", "relay_p50_us") - get(1, "stream-1", "relay_p50_us")))
            / 31.0;
        let keep =
            get(64, "non-stream", &format!("{who}_rps")) / get(64, "non-stream", "direct_rps");
        (p50x, chunk, keep)
    };
    let (p50x, chunk, keep) = figures("gateway");
    let p99x = added(1, "non-stream", "gateway", "p99") / added(1, "non-stream", "relay", "p99");
    c.check(
        "c=1 added p50 over the relay's",
        format!("x{p50x:.2}"),
        "<= x1.25",
        p50x <= 1.25,
    );
    c.check(
        "c=1 added p99 over the relay's",
        format!("x{p99x:.2}"),
        "<= x2",
        p99x <= 2.0,
    );
    c.check(
        "per stream chunk over the relay",
        format!("{chunk:.2} us"),
        "<= 1 us",
        chunk <= 1.0,
    );
    c.check(
        "c=64 gateway rate / direct rate",
        format!("{keep:.2}"),
        ">= 0.8",
        keep >= 0.8,
    );
    c.m("added_p50_over_relay_c1", r(p50x, 2));
    c.m("added_p99_over_relay_c1", r(p99x, 2));
    c.m("extra_per_chunk_over_relay_us", r(chunk, 2));
    c.m("rate_kept_c64", r(keep, 2));
    // The same figures for the bare hyper proxy: the part of each miss
    // that any gateway built on hyper pays.
    let (hp50x, hchunk, hkeep) = figures("hyper");
    c.baseline(
        "floor: a bare hyper proxy's c=1 added p50 over the relay's",
        format!("x{hp50x:.2}"),
    );
    c.baseline(
        "floor: a bare hyper proxy's per stream chunk over the relay",
        format!("{hchunk:.2} us"),
    );
    c.baseline(
        "floor: a bare hyper proxy's c=64 rate / direct rate",
        format!("{hkeep:.2}"),
    );
    c.m("hyper_added_p50_over_relay_c1", r(hp50x, 2));
    c.m("hyper_extra_per_chunk_over_relay_us", r(hchunk, 2));
    c.m("hyper_rate_kept_c64", r(hkeep, 2));
}

/// `gateway-memory`: as many concurrent open streams through `llmux serve`
/// as the descriptor limit allows (up to 10,000), each held open by the
/// mock after its first chunk; the gateway's memory per open stream, over
/// HTTP/1.1 upstreams and over HTTP/2 (h2c).
pub fn case_gateway_memory_streams(ctx: &Ctx, nofile_hard: u64, out: &mut Vec<Case>) {
    for http in ["http1", "http2"] {
        let mut c = Case::new(
            if http == "http1" { "gateway-memory" } else { "gateway-memory-h2" },
            &format!("gateway RSS per concurrent open stream (held by the mock after one chunk), {http} upstreams"),
        );
        // Over HTTP/1.1 each stream holds two descriptors in the gateway.
        let per = if http == "http1" { 2 } else { 1 };
        let want = if ctx.quick { 2000 } else { 10_000 };
        let n = want.min((nofile_hard.saturating_sub(1000) / per) as usize);
        c.m("streams_wanted", want);
        c.m("streams", n);
        c.m("rlimit_nofile_hard", nofile_hard);
        let limits = json!({"limits": {"max_connections": n + 100, "max_in_flight": n + 100}});
        let Some(gw) = Gateway::start_with(ctx, &mut c, limits, http) else {
            out.push(c);
            return;
        };
        let stall = json!({"mock": {"fault": {"stall_after": 1}}});
        let held = hold_streams(ctx, &gw.base, gw.pid(), &body("bench/fast", true, stall), n);
        drop(gw);
        record_held(&held, n, &mut c);
        floor_memory(ctx, n, http == "http2", &mut c);
        out.push(c);
    }
}

/// The floor of `gateway-memory`: the bare hyper proxy holding as many
/// streams over the same upstream HTTP version.
fn floor_memory(ctx: &Ctx, n: usize, h2: bool, c: &mut Case) {
    let floor = super::floor::Floor::start(&ctx.fleet.url("fast"), h2);
    let stall = Some(json!({"fault": {"stall_after": 1}}));
    let h = hold_streams(ctx, &floor.base, floor.pid(), &direct_body(true, stall), n);
    c.m("hyper_streams_open", h.open);
    c.m("hyper_idle_rss_kib", h.idle);
    c.m("hyper_peak_rss_kib", h.peak);
    c.m("hyper_per_stream_kib", r(h.per, 2));
    c.baseline(
        "floor: a bare hyper proxy's RSS per open stream",
        format!(
            "{:.1} KiB ({} of {n} open, {} failed)",
            h.per, h.open, h.failed
        ),
    );
}

/// What holding many streams open through one proxy measured.
struct Held {
    open: usize,
    failed: usize,
    idle: u64,
    peak: u64,
    per: f64,
    secs: f64,
}

fn record_held(h: &Held, n: usize, c: &mut Case) {
    c.m("streams_open", h.open);
    c.m("streams_failed", h.failed);
    c.m("gateway_idle_rss_kib", h.idle);
    c.m("gateway_peak_rss_kib", h.peak);
    c.m("per_stream_kib", r(h.per, 2));
    c.m("open_s", r(h.secs, 1));
    c.info(
        "streams open at once",
        format!("{} of {n} ({} failed)", h.open, h.failed),
    );
    c.check(
        "gateway RSS per open stream",
        format!("{:.1} KiB", h.per),
        "<= 16 KiB",
        h.per <= 16.0,
    );
}

/// Opens `n` streams (`stall`: a request the mock holds open after its
/// first chunk) through the proxy at `base` in waves, measures the RSS of
/// process `pid`, then lets go.
fn hold_streams(ctx: &Ctx, base: &str, pid: u32, stall: &[u8], n: usize) -> Held {
    let url = format!("{base}/v1/chat/completions");
    let stall = stall.to_vec();
    let warm = body("bench/fast", false, json!({}));
    for _ in 0..20 {
        let _ = direct_closed(ctx, &url, &warm, 1, Duration::from_millis(1), 1);
    }
    std::thread::sleep(Duration::from_millis(200));
    let idle = super::vm_rss_kib(pid).unwrap_or(0);
    let opened = Arc::new(AtomicUsize::new(0));
    let (release_tx, release_rx) = tokio::sync::watch::channel(false);
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .build()
        .expect("client");
    let t0 = Instant::now();
    let (peak, failed) = ctx.rt.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..n {
            let (client, url, b, seen, mut rx) = (
                client.clone(),
                url.clone(),
                stall.clone(),
                opened.clone(),
                release_rx.clone(),
            );
            tasks.spawn(async move {
                let mut resp = client
                    .post(&url)
                    .bearer_auth("bench")
                    .header("content-type", "application/json")
                    .body(b)
                    .send()
                    .await
                    .ok()?;
                resp.chunk().await.ok()??;
                seen.fetch_add(1, Ordering::Relaxed);
                let _ = rx.wait_for(|r| *r).await;
                Some(i)
            });
            if i % 500 == 499 {
                while opened.load(Ordering::Relaxed) + 50 < i
                    && t0.elapsed() < Duration::from_secs(120)
                {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
        while opened.load(Ordering::Relaxed) < n && t0.elapsed() < Duration::from_secs(120) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let peak = super::vm_rss_kib(pid).unwrap_or(0);
        let _ = release_tx.send(true);
        let mut failed = 0;
        while let Some(r) = tasks.join_next().await {
            failed += usize::from(!matches!(r, Ok(Some(_))));
        }
        (peak, failed)
    });
    let open = opened.load(Ordering::Relaxed);
    Held {
        open,
        failed,
        idle,
        peak,
        per: peak.saturating_sub(idle) as f64 / open.max(1) as f64,
        secs: t0.elapsed().as_secs_f64(),
    }
}
