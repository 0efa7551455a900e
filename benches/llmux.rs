//! llmux benchmark suite: what the embedded router costs, measured against a
//! direct reqwest call to the same mock upstream, in one run.
//!
//! `cargo bench --bench llmux` (or `scripts/bench.sh`, which also builds the
//! `llmux-fleet` binary so the mock runs as a separate, pinned process).
//! Options after `--`: `--quick` (fewer samples), and case names to run only
//! those: `latency host throughput chunks routing telemetry memory failover quality shared keys
//! preferences reload gateway gateway-stream gateway-memory-noscrape gateway-memory`.
//!
//! Prints a table (figure, value, target, pass/MISS) and writes the same
//! figures to `target/llmux-bench.json`: one object per case with named
//! metrics whose names carry their unit (`_us`, `_ms`, `_per_s`, `_kib`).
//! Targets are reported, never asserted.

#[path = "llmux/cabi.rs"]
mod cabi;
#[path = "llmux/edge.rs"]
mod edge;
#[path = "llmux/fleet.rs"]
mod fleet;
#[path = "llmux/floor.rs"]
mod floor;
#[path = "llmux/keys.rs"]
mod keys;
#[path = "llmux/reload.rs"]
mod reload;
#[path = "llmux/request_cost.rs"]
mod request_cost;
#[path = "llmux/telemetry.rs"]
mod telemetry;
#[path = "llmux/util.rs"]
mod util;

use cabi::{CEngine, Events, Kind};
use fleet::Fleet;
use llmux::routing::{self, EndpointView, Explore, Policy};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use util::{
    allocations, block_median_diff, has_content, mean, pct, r, rss_bytes, sorted, us, Case,
};

#[global_allocator]
static ALLOC: util::CountingAlloc = util::CountingAlloc;

/// Worker threads of every engine in the bench (the engine and the host
/// thread share one CPU; the mock has the other).
const WORKER_THREADS: usize = 1;

struct Ctx {
    fleet: Fleet,
    /// A port nothing listens on (bound, then closed): connections are refused.
    dead_port: u16,
    /// The direct baseline's runtime: current-thread, driven by the bench
    /// thread itself, as an application calling reqwest directly would.
    rt: tokio::runtime::Runtime,
    client: reqwest::Client,
    quick: bool,
}

// ------------------------------------------------------------------ config

fn config(ctx: &Ctx, health: Value, timeouts: Value) -> String {
    let mut providers: Vec<Value> = ctx
        .fleet
        .names()
        .iter()
        .map(|n| {
            json!({"slug": n, "protocol": "openai", "base_url": format!("{}/v1", ctx.fleet.url(n)),
                   "api_key": "bench"})
        })
        .collect();
    providers.push(json!({"slug": "dead", "protocol": "openai",
        "base_url": format!("http://127.0.0.1:{}/v1", ctx.dead_port), "api_key": "bench"}));
    let ep = |p: &str| json!({"provider": p, "upstream_model": "m", "price": {"prompt": 1.0, "completion": 2.0}});
    let models = json!([
        {"slug": "bench/fast", "endpoints": [ep("fast")]},
        {"slug": "bench/failover", "endpoints": [ep("dead"), ep("live")]},
        {"slug": "bench/recover", "endpoints": [ep("flip"), ep("backup")]},
        {"slug": "bench/trio", "endpoints": [ep("c"), ep("b"), ep("a")]},
        {"slug": "bench/hedge", "endpoints": [ep("p"), ep("s")]},
    ]);
    json!({"providers": providers, "models": models, "health": health, "timeouts": timeouts,
           "worker_threads": WORKER_THREADS})
    .to_string()
}

fn timeouts() -> Value {
    json!({"connect_ms": 2000, "first_token_ms": 10000, "idle_ms": 10000, "total_ms": 60000})
}

/// A request body for llmux; `extra` adds top-level fields (`provider`, `mock`).
fn body(model: &str, stream: bool, extra: Value) -> Vec<u8> {
    let mut v = json!({"model": model, "messages": [{"role": "user", "content": "Say hello."}],
                       "max_tokens": 16, "stream": stream});
    if let Value::Object(m) = extra {
        for (k, x) in m {
            v[k] = x;
        }
    }
    serde_json::to_vec(&v).expect("json")
}

/// The body llmux sends upstream for `body(.., stream, {"mock": mock})`.
fn direct_body(stream: bool, mock: Option<Value>) -> Vec<u8> {
    let mut v = json!({"model": "m", "messages": [{"role": "user", "content": "Say hello."}],
                       "max_tokens": 16, "stream": stream});
    if stream {
        v["stream_options"] = json!({"include_usage": true});
    }
    if let Some(m) = mock {
        v["mock"] = m;
    }
    serde_json::to_vec(&v).expect("json")
}

fn direct_url(ctx: &Ctx, server: &str) -> String {
    format!("{}/v1/chat/completions", ctx.fleet.url(server))
}

// ------------------------------------------------------------- direct path

async fn direct_once(client: &reqwest::Client, url: &str, body: Vec<u8>) -> Result<(), String> {
    let resp = client
        .post(url)
        .bearer_auth("bench")
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if !resp.status().is_success() {
        return Err(format!("HTTP {}", resp.status()));
    }
    resp.bytes().await.map_err(|e| e.to_string())?;
    Ok(())
}

/// One direct stream: (start, arrival time of each content event).
async fn direct_stream(
    client: &reqwest::Client,
    url: &str,
    body: Vec<u8>,
) -> Result<(Instant, Vec<Instant>), String> {
    let t0 = Instant::now();
    let mut resp = client
        .post(url)
        .bearer_auth("bench")
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if !resp.status().is_success() {
        return Err(format!("HTTP {}", resp.status()));
    }
    let mut buf: Vec<u8> = Vec::new();
    let mut times = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| e.to_string())? {
        let now = Instant::now();
        buf.extend_from_slice(&chunk);
        let mut start = 0;
        while let Some(p) = buf[start..].windows(2).position(|w| w == b"\n\n") {
            if has_content(&buf[start..start + p]) {
                times.push(now);
            }
            start += p + 2;
        }
        buf.drain(..start);
    }
    Ok((t0, times))
}

fn direct_once_blocking(ctx: &Ctx, url: &str, body: &[u8]) -> f64 {
    let t = Instant::now();
    ctx.rt
        .block_on(direct_once(&ctx.client, url, body.to_vec()))
        .expect("direct request");
    us(t.elapsed())
}

/// Closed loop: `conc` tasks, each sending requests back to back until
/// `dur` passed or `max_n` were started. Returns (latencies us, wall time).
fn direct_closed(
    ctx: &Ctx,
    url: &str,
    body: &[u8],
    conc: usize,
    dur: Duration,
    max_n: usize,
) -> (Vec<f64>, Duration) {
    let client = ctx.client.clone();
    let url = Arc::new(url.to_string());
    let body = Arc::new(body.to_vec());
    ctx.rt.block_on(async move {
        let start = Instant::now();
        let deadline = start + dur;
        let count = Arc::new(AtomicUsize::new(0));
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..conc {
            let (client, url, body, count) =
                (client.clone(), url.clone(), body.clone(), count.clone());
            set.spawn(async move {
                let mut lats = Vec::new();
                while Instant::now() < deadline && count.fetch_add(1, Ordering::Relaxed) < max_n {
                    let t = Instant::now();
                    if direct_once(&client, &url, body.to_vec()).await.is_ok() {
                        lats.push(us(t.elapsed()));
                    }
                }
                lats
            });
        }
        let mut all = Vec::new();
        while let Some(r) = set.join_next().await {
            all.extend(r.expect("direct task"));
        }
        (all, start.elapsed())
    })
}

// -------------------------------------------------------------- llmux path

/// One finished llmux request as the host saw it.
struct Rec {
    idx: usize,
    submit: Instant,
    /// First CHUNK event (streams).
    first: Option<Instant>,
    /// Arrival of every content chunk (only when asked for).
    chunks: Vec<Instant>,
    done: Instant,
    ok: bool,
    data: Option<String>,
}

impl Rec {
    fn lat_us(&self) -> f64 {
        us(self.done - self.submit)
    }
    fn json(&self) -> Value {
        self.data
            .as_deref()
            .and_then(|d| serde_json::from_str(d).ok())
            .unwrap_or(Value::Null)
    }
    fn endpoint(&self) -> String {
        self.json()["routing"]["endpoint"]
            .as_str()
            .unwrap_or("")
            .to_string()
    }
}

struct Flight {
    idx: usize,
    submit: Instant,
    first: Option<Instant>,
    chunks: Vec<Instant>,
}

/// What to keep of each request.
#[derive(Clone, Copy)]
struct Keep {
    data: bool,
    chunk_times: bool,
}

const KEEP_NOTHING: Keep = Keep {
    data: false,
    chunk_times: false,
};
const KEEP_DATA: Keep = Keep {
    data: true,
    chunk_times: false,
};

/// Host-side bookkeeping of in-flight requests, fed from `llmux_poll`.
struct Host {
    inflight: HashMap<u64, Flight>,
    keep: Keep,
}

impl Host {
    fn new(keep: Keep) -> Host {
        Host {
            inflight: HashMap::new(),
            keep,
        }
    }

    fn submit(&mut self, eng: &CEngine, idx: usize, body: &[u8]) {
        let submit = Instant::now();
        let id = eng
            .submit(body)
            .unwrap_or_else(|e| panic!("llmux_submit: {e}"));
        self.inflight.insert(
            id,
            Flight {
                idx,
                submit,
                first: None,
                chunks: Vec::new(),
            },
        );
    }

    /// Polls once; finished requests go to `done`.
    fn poll(
        &mut self,
        eng: &CEngine,
        ev: &mut Events,
        batch: usize,
        timeout_ms: i32,
        done: &mut Vec<Rec>,
    ) -> usize {
        let keep = self.keep;
        let inflight = &mut self.inflight;
        ev.poll(eng, batch, timeout_ms, |id, kind, data| {
            let now = Instant::now();
            match kind {
                Kind::Chunk => {
                    if let Some(f) = inflight.get_mut(&id) {
                        if f.first.is_none() {
                            f.first = Some(now);
                        }
                        if keep.chunk_times && has_content(data) {
                            f.chunks.push(now);
                        }
                    }
                }
                Kind::Done | Kind::Error => {
                    if let Some(f) = inflight.remove(&id) {
                        done.push(Rec {
                            idx: f.idx,
                            submit: f.submit,
                            first: f.first,
                            chunks: f.chunks,
                            done: now,
                            ok: kind == Kind::Done,
                            data: keep
                                .data
                                .then(|| String::from_utf8_lossy(data).into_owned()),
                        });
                    }
                }
            }
        })
    }
}

/// One request, waited for with a blocking poll (concurrency 1).
fn llmux_one(eng: &CEngine, ev: &mut Events, body: &[u8], keep: Keep) -> Rec {
    let mut host = Host::new(keep);
    let mut out = Vec::with_capacity(1);
    host.submit(eng, 0, body);
    let deadline = Instant::now() + Duration::from_secs(60);
    while out.is_empty() {
        host.poll(eng, ev, 64, 1000, &mut out);
        assert!(
            Instant::now() < deadline,
            "llmux request did not finish in 60 s"
        );
    }
    let rec = out.pop().expect("one");
    if !rec.ok && keep.data {
        eprintln!(
            "bench: request failed: {}",
            rec.data.as_deref().unwrap_or("")
        );
    }
    rec
}

/// Closed loop through the C ABI: keeps `conc` requests in flight until
/// `dur` passed or `max_n` were submitted. Returns records and wall time.
fn llmux_closed(
    eng: &CEngine,
    ev: &mut Events,
    conc: usize,
    dur: Duration,
    max_n: usize,
    keep: Keep,
    mut mk: impl FnMut(usize) -> Vec<u8>,
) -> (Vec<Rec>, Duration) {
    let start = Instant::now();
    let deadline = start + dur;
    let mut host = Host::new(keep);
    let mut recs = Vec::new();
    let mut next = 0;
    while next < max_n && host.inflight.len() < conc {
        host.submit(eng, next, &mk(next));
        next += 1;
    }
    let mut last_progress = Instant::now();
    while !host.inflight.is_empty() {
        let n = host.poll(eng, ev, 64, 1000, &mut recs);
        let now = Instant::now();
        if n > 0 {
            last_progress = now;
        }
        assert!(
            now - last_progress < Duration::from_secs(60),
            "no llmux event for 60 s"
        );
        while now < deadline && next < max_n && host.inflight.len() < conc {
            host.submit(eng, next, &mk(next));
            next += 1;
        }
    }
    (recs, start.elapsed())
}

/// Open loop: submits at `rate` per second for `dur`; `ctl` sees every
/// finished request (`Some`) and every loop turn (`None`); true stops
/// submitting.
fn llmux_open(
    eng: &CEngine,
    ev: &mut Events,
    rate: f64,
    dur: Duration,
    mut mk: impl FnMut(usize) -> Vec<u8>,
    mut ctl: impl FnMut(Option<&Rec>) -> bool,
) -> Vec<Rec> {
    let interval = Duration::from_secs_f64(1.0 / rate);
    let start = Instant::now();
    let end = start + dur;
    let mut host = Host::new(KEEP_DATA);
    let mut recs: Vec<Rec> = Vec::new();
    let mut i = 0usize;
    let mut stop = false;
    loop {
        let now = Instant::now();
        let due = start + interval * i as u32;
        let submitting = !stop && now < end;
        if submitting && now >= due {
            host.submit(eng, i, &mk(i));
            i += 1;
            continue;
        }
        if !submitting && host.inflight.is_empty() {
            break;
        }
        let wait_ms = if submitting {
            ((due - now).as_micros() as i32 + 999) / 1000
        } else {
            50
        };
        let before = recs.len();
        host.poll(eng, ev, 64, wait_ms.max(1), &mut recs);
        for r in &recs[before..] {
            if ctl(Some(r)) {
                stop = true;
            }
        }
        if ctl(None) {
            stop = true;
        }
    }
    recs
}

/// One request through the Rust API (`Engine::submit` + `Engine::poll`); us.
fn rust_one(eng: &llmux::Engine, body: &[u8]) -> f64 {
    let t = Instant::now();
    let id = eng.submit(llmux::Protocol::OpenAi, body).expect("submit");
    let mut done = None;
    while done.is_none() {
        eng.poll(64, Some(Duration::from_secs(1)), |e| {
            if e.request_id == id && e.is_terminal() {
                done = Some(Instant::now());
            }
        });
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "request did not finish"
        );
    }
    us(done.unwrap_or_else(Instant::now) - t)
}

/// One llmux stream at concurrency 1: (submit time, content chunk arrivals).
fn stream_llmux(eng: &CEngine, ev: &mut Events, body: &[u8]) -> (Instant, Vec<Instant>) {
    let keep = Keep {
        data: false,
        chunk_times: true,
    };
    let rec = llmux_one(eng, ev, body, keep);
    assert!(rec.ok, "llmux stream failed");
    (rec.submit, rec.chunks)
}

/// One direct stream at concurrency 1: (start, content event arrivals).
fn stream_direct(ctx: &Ctx, url: &str, body: &[u8]) -> (Instant, Vec<Instant>) {
    ctx.rt
        .block_on(direct_stream(&ctx.client, url, body.to_vec()))
        .expect("direct stream")
}

fn fmt_us(x: f64) -> String {
    if x.abs() >= 10_000.0 {
        format!("{:.1} ms", x / 1000.0)
    } else {
        format!("{x:.1} us")
    }
}

fn fmt_rate(x: f64) -> String {
    if x >= 1e6 {
        format!("{:.2} M/s", x / 1e6)
    } else if x >= 1e3 {
        format!("{:.1} k/s", x / 1e3)
    } else {
        format!("{x:.1} /s")
    }
}

// ================================================================== cases

/// The `llmux` gateway binary next to this bench (`target/release/llmux`),
/// or `LLMUX_BENCH_GATEWAY_BIN` (to compare another build, e.g. an older
/// commit's, against the same mock in the same kind of run).
fn gateway_binary() -> Option<std::path::PathBuf> {
    if let Some(p) = std::env::var_os("LLMUX_BENCH_GATEWAY_BIN") {
        let p = std::path::PathBuf::from(p);
        return p.is_file().then_some(p);
    }
    let exe = std::env::current_exe().ok()?;
    let p = exe.parent()?.parent()?.join("llmux");
    p.is_file().then_some(p)
}

/// A running `llmux serve` (the release binary, as its own process on the
/// bench thread's CPU) in front of the bench fleet; killed on drop.
struct Gateway {
    child: std::process::Child,
    /// `http://127.0.0.1:PORT`
    base: String,
    dir: std::path::PathBuf,
    /// Held open so that a later line on the gateway's stdout cannot fail.
    _stdout: std::io::BufReader<std::process::ChildStdout>,
}

impl Gateway {
    /// None (with a `skipped` row on `c`) when the binary is missing.
    fn start(ctx: &Ctx, c: &mut Case) -> Option<Gateway> {
        Gateway::start_with(ctx, c, json!({}), "")
    }

    /// With `gateway` as the config's gateway section and, unless `http`
    /// is empty, every provider on that HTTP version with long timeouts.
    fn start_with(ctx: &Ctx, c: &mut Case, gateway: Value, http: &str) -> Option<Gateway> {
        use std::io::BufRead;
        let Some(bin) = gateway_binary() else {
            c.info(
                "skipped",
                "target/release/llmux not found (cargo build --release -p llmux-gateway)".into(),
            );
            return None;
        };
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "llmux-bench-gw-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let cfg_path = dir.join("llmux.json");
        let health = json!({"explore_ratio": 0.0});
        let text = if http.is_empty() {
            config(ctx, health, timeouts())
        } else {
            let t = json!({"connect_ms": 30000, "first_token_ms": 120000, "idle_ms": 120000, "total_ms": 300000});
            config_http(ctx, health, t, http)
        };
        let mut cfg: Value = serde_json::from_str(&text).expect("config");
        cfg["gateway"] = gateway;
        std::fs::write(&cfg_path, cfg.to_string()).expect("write config");
        // Inherits the bench thread's CPU (0); the mock has the other.
        let mut child = std::process::Command::new(&bin)
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--log-format",
                "off",
                "--config",
            ])
            .arg(&cfg_path)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("spawn llmux serve");
        let mut line = String::new();
        let mut stdout = std::io::BufReader::new(child.stdout.take().expect("stdout"));
        stdout.read_line(&mut line).expect("read");
        let base = line
            .trim()
            .strip_prefix("llmux: listening on ")
            .expect("listening line")
            .to_owned();
        if std::env::var_os("LLMUX_BENCH_GATEWAY_BIN").is_some() {
            c.note(format!("gateway binary: {}", bin.display()));
        }
        Some(Gateway {
            child,
            base,
            dir,
            _stdout: stdout,
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A process's resident set, KiB (`VmRSS` in `/proc/<pid>/status`).
fn vm_rss_kib(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// 8. The gateway: `llmux serve` vs straight to the mock.
///
/// The same non-streaming request through the gateway (a separate process
/// on the bench's CPU) and directly, interleaved in blocks: added p50/p99
/// per concurrency level, and the highest rate whose added p99 stays under
/// 1 ms.
fn case_gateway(ctx: &Ctx, out: &mut Vec<Case>) {
    let mut c = Case::new(
        "gateway",
        "non-streaming request through `llmux serve` vs straight to the mock (reqwest client, same run)",
    );
    let Some(gw) = Gateway::start(ctx, &mut c) else {
        out.push(c);
        return;
    };
    let base = &gw.base;
    let gurl = format!("{base}/v1/chat/completions");
    let gbody = body("bench/fast", false, json!({}));
    let durl = direct_url(ctx, "fast");
    let dbody = direct_body(false, None);
    direct_closed(
        ctx,
        &gurl,
        &gbody,
        16,
        Duration::from_millis(300),
        usize::MAX,
    );
    direct_closed(
        ctx,
        &durl,
        &dbody,
        16,
        Duration::from_millis(300),
        usize::MAX,
    );
    let block = Duration::from_millis(if ctx.quick { 250 } else { 400 });
    let rounds = if ctx.quick { 2 } else { 4 };
    let levels: &[usize] = if ctx.quick {
        &[1, 16, 64]
    } else {
        &[1, 4, 16, 64, 128]
    };
    let (mut best, mut best_c, mut best_direct) = (0.0f64, 0usize, 0.0f64);
    let mut rows = Vec::new();
    for &conc in levels {
        let (mut g, mut d, mut gt, mut dt) =
            (Vec::new(), Vec::new(), Duration::ZERO, Duration::ZERO);
        for _ in 0..rounds {
            let (v, t) = direct_closed(ctx, &gurl, &gbody, conc, block, usize::MAX);
            g.extend(v);
            gt += t;
            let (v, t) = direct_closed(ctx, &durl, &dbody, conc, block, usize::MAX);
            d.extend(v);
            dt += t;
        }
        let (gr, dr) = (
            g.len() as f64 / gt.as_secs_f64(),
            d.len() as f64 / dt.as_secs_f64(),
        );
        let (g, d) = (sorted(g), sorted(d));
        let (add50, add99) = (pct(&g, 0.5) - pct(&d, 0.5), pct(&g, 0.99) - pct(&d, 0.99));
        if add99 < 1000.0 && gr > best {
            best = gr;
            best_c = conc;
        }
        best_direct = best_direct.max(dr);
        rows.push(
            json!({"concurrency": conc, "gateway_rps": r(gr, 1), "direct_rps": r(dr, 1),
            "gateway_p50_us": r(pct(&g, 0.5), 1), "direct_p50_us": r(pct(&d, 0.5), 1),
            "gateway_p99_us": r(pct(&g, 0.99), 1), "direct_p99_us": r(pct(&d, 0.99), 1),
            "added_p50_us": r(add50, 1), "added_p99_us": r(add99, 1)}),
        );
        if conc == 1 || conc == 64 {
            c.m(&format!("added_p50_us_c{conc}"), r(add50, 1));
            c.m(&format!("added_p99_us_c{conc}"), r(add99, 1));
        }
        c.info(
            &format!("c={conc:<3} added p50 / p99"),
            format!(
                "{} / {} ({} vs direct {})",
                fmt_us(add50),
                fmt_us(add99),
                fmt_rate(gr),
                fmt_rate(dr)
            ),
        );
    }
    // the relay floor, streams, c=1 and c=64.
    edge::relay_rows(ctx, &gw, &mut c);
    drop(gw);
    c.m("levels", Value::Array(rows));
    c.m("gateway_max_rps_added_p99_under_1ms", r(best, 1));
    c.m("gateway_max_rps_concurrency", best_c);
    c.m("direct_max_rps", r(best_direct, 1));
    c.info(
        "gateway req/s with added p99 < 1 ms",
        format!(
            "{} at c={best_c} (direct at best {})",
            fmt_rate(best),
            fmt_rate(best_direct)
        ),
    );
    out.push(c);
}

// ------------------------------------------------------------- raw client

/// A plain keep-alive HTTP/1.1 client on a blocking socket, as simple
/// clients are: no `TCP_QUICKACK`, default socket options, and each request
/// leaves in one write (so the client's own Nagle never holds it). A
/// server's Nagle stall (a small last write waiting for this side's
/// delayed ACK) shows up in full.
struct RawConn {
    addr: String,
    sock: Option<std::net::TcpStream>,
    buf: Vec<u8>,
}

/// One response as the raw client saw it.
struct RawResp {
    status: u16,
    /// Request written (just before the write).
    sent: Instant,
    /// Arrival of the read holding the first content event (SSE), or of
    /// the last byte (other bodies).
    first: Instant,
    /// Arrival of the last byte of the response.
    last: Instant,
    /// SSE events with content.
    content_events: usize,
}

impl RawConn {
    /// `base`: `http://host:port`.
    fn new(base: &str) -> RawConn {
        RawConn {
            addr: base.trim_start_matches("http://").to_string(),
            sock: None,
            buf: Vec::with_capacity(64 * 1024),
        }
    }

    fn read_more(&mut self) -> std::io::Result<Instant> {
        use std::io::Read;
        let s = self.sock.as_mut().expect("connected");
        let len = self.buf.len();
        self.buf.resize(len + 64 * 1024, 0);
        let n = s.read(&mut self.buf[len..]);
        let now = Instant::now();
        let n = n.inspect_err(|_| self.buf.truncate(len))?;
        self.buf.truncate(len + n);
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        Ok(now)
    }

    fn post(&mut self, path: &str, body: &[u8]) -> std::io::Result<RawResp> {
        if self.sock.is_none() {
            self.sock = Some(std::net::TcpStream::connect(&self.addr)?);
            self.buf.clear();
        }
        let mut req = format!(
            "POST {path} HTTP/1.1\r\nhost: {}\r\nauthorization: Bearer bench\r\n\
             content-type: application/json\r\ncontent-length: {}\r\n\r\n",
            self.addr,
            body.len()
        )
        .into_bytes();
        req.extend_from_slice(body);
        let sent = Instant::now();
        let r = self.exchange(&req, sent);
        if r.is_err() {
            self.sock = None;
        }
        r
    }

    fn exchange(&mut self, req: &[u8], sent: Instant) -> std::io::Result<RawResp> {
        use std::io::Write;
        let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_string());
        self.sock.as_mut().expect("connected").write_all(req)?;
        let mut at = sent;
        let head_end = loop {
            if let Some(p) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break p + 4;
            }
            at = self.read_more()?;
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end]).to_ascii_lowercase();
        let status: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("status line"))?;
        let header = |name: &str| {
            head.lines()
                .filter_map(|l| l.split_once(':'))
                .find(|(k, _)| k.trim() == name)
                .map(|(_, v)| v.trim().to_string())
        };
        let close = header("connection").is_some_and(|v| v.contains("close"));
        let chunked = header("transfer-encoding").is_some_and(|v| v.contains("chunked"));
        let mut first = None;
        let mut content_events = 0;
        let mut pos = head_end;
        if chunked {
            let mut sse: Vec<u8> = Vec::new();
            loop {
                // One chunk: size line, data, CRLF (no trailers expected).
                let Some(nl) = self.buf[pos..].windows(2).position(|w| w == b"\r\n") else {
                    at = self.read_more()?;
                    continue;
                };
                let line =
                    std::str::from_utf8(&self.buf[pos..pos + nl]).map_err(|_| bad("chunk"))?;
                let size = usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)
                    .map_err(|_| bad("chunk size"))?;
                let need = pos + nl + 2 + size + 2;
                if self.buf.len() < need {
                    at = self.read_more()?;
                    continue;
                }
                if size == 0 {
                    pos = need;
                    break;
                }
                sse.extend_from_slice(&self.buf[pos + nl + 2..pos + nl + 2 + size]);
                pos = need;
                let mut start = 0;
                while let Some(p) = sse[start..].windows(2).position(|w| w == b"\n\n") {
                    if has_content(&sse[start..start + p]) {
                        content_events += 1;
                        first.get_or_insert(at);
                    }
                    start += p + 2;
                }
                sse.drain(..start);
            }
        } else {
            let len: usize = header("content-length")
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| bad("no content-length"))?;
            while self.buf.len() < head_end + len {
                at = self.read_more()?;
            }
            pos = head_end + len;
        }
        self.buf.drain(..pos);
        if close {
            self.sock = None;
        }
        Ok(RawResp {
            status,
            sent,
            first: first.unwrap_or(at),
            last: at,
            content_events,
        })
    }
}

/// 8b. A 32-chunk stream through `llmux serve` vs straight to the mock, at
/// concurrency 1, interleaved, over a plain client (issue 18: with Nagle on
/// the gateway's sockets every stream ended ~40 ms late, the client's
/// delayed ACK).
fn case_gateway_stream(ctx: &Ctx, out: &mut Vec<Case>) {
    let mut c = Case::new(
        "gateway-stream",
        "32-chunk stream at c=1 through `llmux serve` vs straight to the mock, interleaved in one run; \
         plain keep-alive HTTP/1.1 client on a blocking socket (no TCP_QUICKACK); first content event and \
         last byte, from the request's write",
    );
    let Some(gw) = Gateway::start(ctx, &mut c) else {
        out.push(c);
        return;
    };
    let mock = json!({"chunks": 32, "text": "ab".repeat(32)});
    let gbody = body("bench/fast", true, json!({"mock": mock}));
    let dbody = direct_body(true, Some(mock));
    let path = "/v1/chat/completions";
    let mut g = RawConn::new(&gw.base);
    let mut d = RawConn::new(&ctx.fleet.url("fast"));
    // (first content us, last byte us, content events)
    let one = |conn: &mut RawConn, b: &[u8], what: &str| -> (f64, f64, usize) {
        let r = conn
            .post(path, b)
            .unwrap_or_else(|e| panic!("{what} stream: {e}"));
        assert_eq!(r.status, 200, "{what} stream: HTTP {}", r.status);
        (us(r.first - r.sent), us(r.last - r.sent), r.content_events)
    };
    for _ in 0..30 {
        one(&mut d, &dbody, "direct");
        one(&mut g, &gbody, "gateway");
    }
    let n = if ctx.quick { 200 } else { 1000 };
    let (mut gf, mut gt, mut df, mut dt) = (vec![], vec![], vec![], vec![]);
    let (mut short, mut late) = (0usize, 0usize);
    for i in 0..n {
        // Alternate which goes first, so neither always follows the other.
        let mut run_d = |df: &mut Vec<f64>, dt: &mut Vec<f64>| {
            let (f, t, k) = one(&mut d, &dbody, "direct");
            short += usize::from(k != 32);
            df.push(f);
            dt.push(t);
        };
        let mut run_g = |gf: &mut Vec<f64>, gt: &mut Vec<f64>| {
            let (f, t, k) = one(&mut g, &gbody, "gateway");
            gf.push(f);
            gt.push(t);
            (k, t)
        };
        let (k, t) = if i % 2 == 0 {
            run_d(&mut df, &mut dt);
            run_g(&mut gf, &mut gt)
        } else {
            let x = run_g(&mut gf, &mut gt);
            run_d(&mut df, &mut dt);
            x
        };
        short += usize::from(k != 32);
        late += usize::from(t >= 30_000.0);
    }
    drop(gw);
    let (gf, gt, df, dt) = (sorted(gf), sorted(gt), sorted(df), sorted(dt));
    let add = |a: &[f64], b: &[f64], p: f64| pct(a, p) - pct(b, p);
    let (f50, f99) = (add(&gf, &df, 0.5), add(&gf, &df, 0.99));
    let (t50, t99) = (add(&gt, &dt, 0.5), add(&gt, &dt, 0.99));
    c.m("streams", n);
    c.m("chunks", 32);
    for (k, v, p) in [
        ("gateway_first_chunk_p50_us", &gf, 0.5),
        ("gateway_first_chunk_p99_us", &gf, 0.99),
        ("direct_first_chunk_p50_us", &df, 0.5),
        ("direct_first_chunk_p99_us", &df, 0.99),
        ("gateway_total_p50_us", &gt, 0.5),
        ("gateway_total_p99_us", &gt, 0.99),
        ("direct_total_p50_us", &dt, 0.5),
        ("direct_total_p99_us", &dt, 0.99),
    ] {
        c.m(k, r(pct(v, p), 1));
    }
    c.m("added_first_chunk_p50_us", r(f50, 1));
    c.m("added_first_chunk_p99_us", r(f99, 1));
    c.m("added_total_p50_us", r(t50, 1));
    c.m("added_total_p99_us", r(t99, 1));
    c.m("gateway_streams_total_over_30ms", late);
    c.m("streams_without_32_content_events", short);
    c.m("target_added_total_us", 1000);
    c.info(
        "added first chunk p50 / p99",
        format!("{} / {}", fmt_us(f50), fmt_us(f99)),
    );
    c.check(
        "added total (last byte) p50",
        format!(
            "{} ({} vs direct {}; first chunk added {})",
            fmt_us(t50),
            fmt_us(pct(&gt, 0.5)),
            fmt_us(pct(&dt, 0.5)),
            fmt_us(f50)
        ),
        "<= 1 ms",
        t50 <= 1000.0,
    );
    c.check(
        "added total (last byte) p99",
        format!(
            "{} ({} vs direct {}; first chunk added {})",
            fmt_us(t99),
            fmt_us(pct(&gt, 0.99)),
            fmt_us(pct(&dt, 0.99)),
            fmt_us(f99)
        ),
        "<= 1 ms",
        t99 <= 1000.0,
    );
    c.info(
        "gateway streams ending >= 30 ms after the request",
        format!("{late} of {n}"),
    );
    if short > 0 {
        c.note(format!("{short} streams did not carry 32 content events"));
    }
    out.push(c);
}

/// 8c. The gateway's RSS over a few hundred thousand non-streaming
/// requests with nobody scraping `/metrics` (issue 18: the Prometheus
/// recorder kept every histogram sample until a scrape drained it).
fn case_gateway_memory(ctx: &Ctx, out: &mut Vec<Case>) {
    let mut c = Case::new(
        "gateway-memory-noscrape",
        "gateway RSS (VmRSS) over many keep-alive non-streaming requests at c=8 (reqwest), /metrics never \
         scraped; start after warm-up, every batch, end",
    );
    let Some(gw) = Gateway::start(ctx, &mut c) else {
        out.push(c);
        return;
    };
    let n: usize = std::env::var("LLMUX_BENCH_GW_MEMORY_N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if ctx.quick { 60_000 } else { 300_000 });
    let (conc, batches, warm) = (8, 10, (n / 15).clamp(1000, 20_000));
    let url = format!("{}/v1/chat/completions", gw.base);
    let b = body("bench/fast", false, json!({}));
    let pid = gw.pid();
    let rss = || vm_rss_kib(pid).unwrap_or(0);
    let (w, _) = direct_closed(ctx, &url, &b, conc, Duration::from_secs(120), warm);
    let mut failed = warm - w.len();
    std::thread::sleep(Duration::from_millis(500));
    let start = rss();
    let started = Instant::now();
    let mut samples = vec![json!({"requests": 0, "s": 0.0, "rss_kib": start})];
    let mut lats = Vec::with_capacity(n);
    let mut done = 0;
    for i in 0..batches {
        let k = n / batches + usize::from(i < n % batches);
        let (v, _) = direct_closed(ctx, &url, &b, conc, Duration::from_secs(600), k);
        failed += k - v.len();
        lats.extend(v);
        done += k;
        samples.push(
            json!({"requests": done, "s": r(started.elapsed().as_secs_f64(), 2),
                            "rss_kib": rss()}),
        );
    }
    let secs = started.elapsed().as_secs_f64();
    let end = rss();
    // The gateway's upkeep runs every 5 s: what is left after one more.
    std::thread::sleep(Duration::from_secs(6));
    let settled = rss();
    drop(gw);
    let peak = samples
        .iter()
        .filter_map(|s| s["rss_kib"].as_u64())
        .max()
        .unwrap_or(0);
    let growth = end as f64 - start as f64;
    let lats = sorted(lats);
    c.m("requests", n);
    c.m("warmup_requests", warm);
    c.m("concurrency", conc);
    c.m("failed", failed);
    c.m("seconds", r(secs, 2));
    c.m("rate_per_s", r(n as f64 / secs, 1));
    c.m("latency_p50_us", r(pct(&lats, 0.5), 1));
    c.m("rss_start_kib", start);
    c.m("rss_end_kib", end);
    c.m("rss_peak_kib", peak);
    c.m("rss_settled_kib", settled);
    c.m("rss_growth_kib", growth);
    c.m(
        "rss_growth_per_100k_requests_kib",
        r(growth * 100_000.0 / n as f64, 1),
    );
    c.m("target_growth_kib", 2048);
    c.m("samples", Value::Array(samples));
    let mib = |k: f64| format!("{:.1} MiB", k / 1024.0);
    c.check(
        &format!("RSS growth over {n} requests, no scrape"),
        format!(
            "{} ({} -> {})",
            mib(growth),
            mib(start as f64),
            mib(end as f64)
        ),
        "<= 2 MiB",
        growth <= 2048.0,
    );
    c.info(
        "RSS peak / 6 s after the last request",
        format!("{} / {}", mib(peak as f64), mib(settled as f64)),
    );
    c.info(
        "requests / failed / rate",
        format!("{n} / {failed} / {}", fmt_rate(n as f64 / secs)),
    );
    out.push(c);
}

/// 1. Added latency, non-streaming at concurrency 1 and 64, and streams.
fn case_latency(ctx: &Ctx, out: &mut Vec<Case>) {
    let eng = CEngine::new(&config(ctx, json!({"explore_ratio": 0.0}), timeouts()));
    let mut ev = Events::new(256);
    let url = direct_url(ctx, "fast");
    let lbody = body("bench/fast", false, json!({}));
    let dbody = direct_body(false, None);

    // --- concurrency 1, interleaved pairs (alternating which goes first).
    for _ in 0..300 {
        llmux_one(&eng, &mut ev, &lbody, KEEP_NOTHING);
        direct_once_blocking(ctx, &url, &dbody);
    }
    // The same engine config through the Rust API, to separate the C ABI's share.
    let rust = llmux::Engine::from_json(&config(ctx, json!({"explore_ratio": 0.0}), timeouts()))
        .expect("engine");
    for _ in 0..100 {
        rust_one(&rust, &lbody);
    }
    let n = if ctx.quick { 1000 } else { 4000 };
    let (mut l, mut d, mut diff, mut rs) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 0..n {
        let (a, b) = if i % 2 == 0 {
            let a = llmux_one(&eng, &mut ev, &lbody, KEEP_NOTHING).lat_us();
            (a, direct_once_blocking(ctx, &url, &dbody))
        } else {
            let b = direct_once_blocking(ctx, &url, &dbody);
            (llmux_one(&eng, &mut ev, &lbody, KEEP_NOTHING).lat_us(), b)
        };
        l.push(a);
        d.push(b);
        diff.push(a - b);
        rs.push(rust_one(&rust, &lbody));
    }
    drop(rust);
    let rust_added50 = pct(&sorted(rs.clone()), 0.5) - pct(&sorted(d.clone()), 0.5);
    let c_vs_rust50 = pct(&sorted(l.clone()), 0.5) - pct(&sorted(rs), 0.5);
    let block = n / 10;
    let b50 = block_median_diff(&l, &d, block, 0.5);
    let b99 = block_median_diff(&l, &d, block, 0.99);
    let (l, d, diff) = (sorted(l), sorted(d), sorted(diff));
    let mut c = Case::new(
        "added_latency_c1",
        "non-streaming request through the C ABI vs the same request with reqwest, concurrency 1, interleaved; \
         added = quantile(llmux) - quantile(direct), over all samples and as the median of 10 blocks",
    );
    let (a50, a99) = (pct(&l, 0.5) - pct(&d, 0.5), pct(&l, 0.99) - pct(&d, 0.99));
    c.m("samples", n);
    c.m("added_p50_block_median_us", b50);
    c.m("added_p99_block_median_us", b99);
    c.m("llmux_mean_us", mean(&l));
    c.m("direct_mean_us", mean(&d));
    c.m("rust_api_added_p50_us", rust_added50);
    c.m("c_abi_minus_rust_api_p50_us", c_vs_rust50);
    c.m("llmux_p50_us", pct(&l, 0.5));
    c.m("llmux_p99_us", pct(&l, 0.99));
    c.m("direct_p50_us", pct(&d, 0.5));
    c.m("direct_p99_us", pct(&d, 0.99));
    c.m("added_p50_us", a50);
    c.m("added_p99_us", a99);
    c.m("paired_diff_p50_us", pct(&diff, 0.5));
    c.m("paired_diff_p99_us", pct(&diff, 0.99));
    c.info(
        "latency p50 llmux / direct",
        format!("{} / {}", fmt_us(pct(&l, 0.5)), fmt_us(pct(&d, 0.5))),
    );
    c.check("added p50 (c=1)", fmt_us(a50), "<= 30 us", a50 <= 30.0);
    c.check(
        "added p99 (c=1, median of 10 blocks)",
        fmt_us(b99),
        "<= 100 us",
        b99 <= 100.0,
    );
    c.info("added p99 (c=1, all samples)", fmt_us(a99));
    c.info("added p50 via the Rust API (c=1)", fmt_us(rust_added50));
    out.push(c);

    // --- concurrency 64, closed loop, alternating blocks.
    let rounds = if ctx.quick { 2 } else { 4 };
    let block = Duration::from_millis(if ctx.quick { 300 } else { 500 });
    llmux_closed(
        &eng,
        &mut ev,
        64,
        Duration::from_millis(200),
        usize::MAX,
        KEEP_NOTHING,
        |_| lbody.clone(),
    );
    direct_closed(
        ctx,
        &url,
        &dbody,
        64,
        Duration::from_millis(200),
        usize::MAX,
    );
    let (mut l, mut d) = (Vec::new(), Vec::new());
    let (mut lt, mut dt) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..rounds {
        let (recs, t) = llmux_closed(&eng, &mut ev, 64, block, usize::MAX, KEEP_NOTHING, |_| {
            lbody.clone()
        });
        l.extend(recs.iter().filter(|r| r.ok).map(Rec::lat_us));
        lt += t;
        let (v, t) = direct_closed(ctx, &url, &dbody, 64, block, usize::MAX);
        d.extend(v);
        dt += t;
    }
    let (lr, dr) = (
        l.len() as f64 / lt.as_secs_f64(),
        d.len() as f64 / dt.as_secs_f64(),
    );
    let (l, d) = (sorted(l), sorted(d));
    let (a50, a99) = (pct(&l, 0.5) - pct(&d, 0.5), pct(&l, 0.99) - pct(&d, 0.99));
    let mut c = Case::new(
        "added_latency_c64",
        "non-streaming, 64 in flight (closed loop), llmux and direct in alternating blocks",
    );
    c.m("samples_llmux", l.len());
    c.m("samples_direct", d.len());
    c.m("llmux_p50_us", pct(&l, 0.5));
    c.m("llmux_p99_us", pct(&l, 0.99));
    c.m("direct_p50_us", pct(&d, 0.5));
    c.m("direct_p99_us", pct(&d, 0.99));
    c.m("added_p50_us", a50);
    c.m("added_p99_us", a99);
    c.m("llmux_mean_us", mean(&l));
    c.m("direct_mean_us", mean(&d));
    c.m("llmux_rps", lr);
    c.m("direct_rps", dr);
    c.info(
        "latency p50 llmux / direct",
        format!("{} / {}", fmt_us(pct(&l, 0.5)), fmt_us(pct(&d, 0.5))),
    );
    c.info("added p50 (c=64)", fmt_us(a50));
    c.info("added p99 (c=64)", fmt_us(a99));
    c.info("added mean (c=64)", fmt_us(mean(&l) - mean(&d)));
    c.info(
        "rate llmux / direct",
        format!("{} / {}", fmt_rate(lr), fmt_rate(dr)),
    );
    out.push(c);

    // --- streams, concurrency 1: first token and inter-chunk gaps.
    let mock = json!({"chunks": 6, "chunk_delay_ms": 1});
    let lbody = body("bench/fast", true, json!({"mock": mock}));
    let dbody = direct_body(true, Some(mock));
    let n = if ctx.quick { 200 } else { 600 };
    let (mut lft, mut dft, mut lgap, mut dgap) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut chunks_seen = (0usize, 0usize);
    for i in 0..n + 20 {
        let (l, d) = if i % 2 == 0 {
            let l = stream_llmux(&eng, &mut ev, &lbody);
            (l, stream_direct(ctx, &url, &dbody))
        } else {
            let d = stream_direct(ctx, &url, &dbody);
            (stream_llmux(&eng, &mut ev, &lbody), d)
        };
        if i < 20 {
            continue; // warm-up
        }
        for (s, ft, gap, seen) in [
            (l, &mut lft, &mut lgap, &mut chunks_seen.0),
            (d, &mut dft, &mut dgap, &mut chunks_seen.1),
        ] {
            if let Some(&f) = s.1.first() {
                ft.push(us(f - s.0));
            }
            gap.extend(s.1.windows(2).map(|w| us(w[1] - w[0])));
            *seen += s.1.len();
        }
    }
    let bf99 = block_median_diff(&lft, &dft, n / 6, 0.99);
    let (lft, dft, lgap, dgap) = (sorted(lft), sorted(dft), sorted(lgap), sorted(dgap));
    let mut c = Case::new(
        "added_latency_stream_c1",
        "streams of 6 chunks 1 ms apart (the mock's timer makes it ~2 ms), concurrency 1: first content chunk \
         and gaps between content chunks",
    );
    c.m("added_first_token_p99_block_median_us", bf99);
    let f50 = pct(&lft, 0.5) - pct(&dft, 0.5);
    let f99 = pct(&lft, 0.99) - pct(&dft, 0.99);
    let g50 = pct(&lgap, 0.5) - pct(&dgap, 0.5);
    let g99 = pct(&lgap, 0.99) - pct(&dgap, 0.99);
    c.m("streams", n);
    c.m("content_chunks_llmux", chunks_seen.0);
    c.m("content_chunks_direct", chunks_seen.1);
    c.m("llmux_first_token_p50_us", pct(&lft, 0.5));
    c.m("llmux_first_token_p99_us", pct(&lft, 0.99));
    c.m("direct_first_token_p50_us", pct(&dft, 0.5));
    c.m("direct_first_token_p99_us", pct(&dft, 0.99));
    c.m("added_first_token_p50_us", f50);
    c.m("added_first_token_p99_us", f99);
    c.m("llmux_gap_p50_us", pct(&lgap, 0.5));
    c.m("llmux_gap_p99_us", pct(&lgap, 0.99));
    c.m("direct_gap_p50_us", pct(&dgap, 0.5));
    c.m("direct_gap_p99_us", pct(&dgap, 0.99));
    c.m("added_gap_p50_us", g50);
    c.m("added_gap_p99_us", g99);
    c.check(
        "added first-token p50",
        fmt_us(f50),
        "<= 30 us",
        f50 <= 30.0,
    );
    c.check(
        "added first-token p99 (median of 6 blocks)",
        fmt_us(bf99),
        "<= 100 us",
        bf99 <= 100.0,
    );
    c.info("added first-token p99 (all samples)", fmt_us(f99));
    c.info("added inter-chunk gap p50", fmt_us(g50));
    c.info("added inter-chunk gap p99", fmt_us(g99));
    out.push(c);
}

/// `config` with `worker_threads` replaced (0: host-driven).
/// Allocations per request (the counting allocator): `n` runs of `f`, after
/// a warm-up; (allocations, bytes) per run.
fn allocs_per(n: usize, mut f: impl FnMut()) -> (f64, f64) {
    for _ in 0..20 {
        f();
    }
    let (a0, b0) = allocations();
    for _ in 0..n {
        f();
    }
    let (a1, b1) = allocations();
    ((a1 - a0) as f64 / n as f64, (b1 - b0) as f64 / n as f64)
}

/// 1b. Heap allocations per request and per chunk, llmux vs direct reqwest.
fn case_allocs(ctx: &Ctx, out: &mut Vec<Case>) {
    let worker = CEngine::new(&config_threads(ctx, WORKER_THREADS));
    let host = CEngine::new(&config_threads(ctx, 0));
    let mut ev = Events::new(256);
    let url = direct_url(ctx, "fast");
    let n = if ctx.quick { 300 } else { 1000 };
    let mut c = Case::new(
        "allocations",
        "heap allocations (and bytes requested) per request, counted by the bench's global allocator: \
         through the C ABI (worker thread and host-driven) vs the same request with reqwest; llmux's \
         figure includes reqwest's own, as llmux sends with it",
    );
    let lbody = body("bench/fast", false, json!({}));
    let dbody = direct_body(false, None);
    let (d, db) = allocs_per(n, || {
        direct_once_blocking(ctx, &url, &dbody);
    });
    let (w, wb) = allocs_per(n, || {
        llmux_one(&worker, &mut ev, &lbody, KEEP_NOTHING);
    });
    let (h, hb) = allocs_per(n, || {
        llmux_one(&host, &mut ev, &lbody, KEEP_NOTHING);
    });
    c.m("samples", n);
    c.m("direct_allocs_per_request", d);
    c.m("direct_bytes_per_request", db);
    c.m("worker_allocs_per_request", w);
    c.m("worker_bytes_per_request", wb);
    c.m("host_driven_allocs_per_request", h);
    c.m("host_driven_bytes_per_request", hb);
    c.info(
        "direct reqwest, per request",
        format!("{d:.0} allocations, {db:.0} B"),
    );
    c.info(
        "llmux added per request, worker thread",
        format!("{:.0} allocations, {:.0} B", w - d, wb - db),
    );
    c.info(
        "llmux added per request, host-driven",
        format!("{:.0} allocations, {:.0} B", h - d, hb - db),
    );
    // Streams of 32 content chunks: what each further chunk costs.
    let chunks = 32;
    let mock = json!({"chunks": chunks});
    let sbody = body("bench/fast", true, json!({"mock": mock}));
    let dsbody = direct_body(true, Some(mock));
    let sn = n / 4;
    let (ds, dsb) = allocs_per(sn, || {
        stream_direct(ctx, &url, &dsbody);
    });
    let (ls, lsb) = allocs_per(sn, || {
        stream_llmux(&worker, &mut ev, &sbody);
    });
    c.m("stream_chunks", chunks);
    c.m("direct_allocs_per_stream", ds);
    c.m("direct_bytes_per_stream", dsb);
    c.m("worker_allocs_per_stream", ls);
    c.m("worker_bytes_per_stream", lsb);
    let per_chunk = ((ls - w) - (ds - d)) / chunks as f64;
    c.m("added_allocs_per_chunk", per_chunk);
    c.info(
        &format!("llmux added per {chunks}-chunk stream"),
        format!("{:.0} allocations, {:.0} B", ls - ds, lsb - dsb),
    );
    c.info(
        "llmux added per further chunk (stream minus non-stream, over direct)",
        format!("{per_chunk:.1} allocations"),
    );
    out.push(c);
}

fn config_threads(ctx: &Ctx, threads: usize) -> String {
    let mut v: Value =
        serde_json::from_str(&config(ctx, json!({"explore_ratio": 0.0}), timeouts()))
            .expect("json");
    v["worker_threads"] = json!(threads);
    v.to_string()
}

/// Spread of a per-block statistic: (min, median, max) over blocks of `block`
/// paired samples, each block's figure being quantile(a) - quantile(b).
fn block_spread(a: &[f64], b: &[f64], block: usize, p: f64) -> (f64, f64, f64) {
    let mut v: Vec<f64> = a
        .chunks(block)
        .zip(b.chunks(block))
        .map(|(x, y)| pct(&sorted(x.to_vec()), p) - pct(&sorted(y.to_vec()), p))
        .collect();
    v.sort_by(f64::total_cmp);
    match (v.first(), v.last()) {
        (Some(&lo), Some(&hi)) => (lo, pct(&v, 0.5), hi),
        _ => (f64::NAN, f64::NAN, f64::NAN),
    }
}

/// Host-driven mode (`worker_threads: 0`, the engine's I/O inside
/// `llmux_poll`) beside worker-thread mode (`worker_threads: 1`) and the
/// direct baseline: one request at a time, interleaved, then streams, then
/// a closed loop at 64 in flight.
fn case_host_driven(ctx: &Ctx, out: &mut Vec<Case>) {
    let worker = CEngine::new(&config_threads(ctx, WORKER_THREADS));
    let host = CEngine::new(&config_threads(ctx, 0));
    let mut ev = Events::new(256);
    let url = direct_url(ctx, "fast");
    let lbody = body("bench/fast", false, json!({}));
    let dbody = direct_body(false, None);
    for _ in 0..200 {
        llmux_one(&worker, &mut ev, &lbody, KEEP_NOTHING);
        llmux_one(&host, &mut ev, &lbody, KEEP_NOTHING);
        direct_once_blocking(ctx, &url, &dbody);
    }
    let n = if ctx.quick { 1200 } else { 3000 };
    let (mut w, mut h, mut d) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..n {
        // Rotate the order so no mode always follows the same one.
        for k in 0..3 {
            match (i + k) % 3 {
                0 => w.push(llmux_one(&worker, &mut ev, &lbody, KEEP_NOTHING).lat_us()),
                1 => h.push(llmux_one(&host, &mut ev, &lbody, KEEP_NOTHING).lat_us()),
                _ => d.push(direct_once_blocking(ctx, &url, &dbody)),
            }
        }
    }
    let block = n / 10;
    let mut c = Case::new(
        "host_driven_c1",
        "non-streaming through the C ABI, concurrency 1: worker_threads 0 (host-driven: I/O inside llmux_poll) \
         vs worker_threads 1 vs direct reqwest, interleaved in one run; added = quantile(mode) - quantile(direct); \
         spread = min / median / max over 10 blocks",
    );
    c.m("samples_per_mode", n);
    for (name, v) in [("host_driven", &h), ("worker", &w)] {
        let (s, ds) = (sorted(v.clone()), sorted(d.clone()));
        let (a50, a99) = (pct(&s, 0.5) - pct(&ds, 0.5), pct(&s, 0.99) - pct(&ds, 0.99));
        let sp50 = block_spread(v, &d, block, 0.5);
        let sp99 = block_spread(v, &d, block, 0.99);
        c.m(&format!("{name}_p50_us"), pct(&s, 0.5));
        c.m(&format!("{name}_p99_us"), pct(&s, 0.99));
        c.m(&format!("{name}_added_p50_us"), a50);
        c.m(&format!("{name}_added_p99_us"), a99);
        c.m(&format!("{name}_added_p50_block_min_us"), sp50.0);
        c.m(&format!("{name}_added_p50_block_median_us"), sp50.1);
        c.m(&format!("{name}_added_p50_block_max_us"), sp50.2);
        c.m(&format!("{name}_added_p99_block_min_us"), sp99.0);
        c.m(&format!("{name}_added_p99_block_median_us"), sp99.1);
        c.m(&format!("{name}_added_p99_block_max_us"), sp99.2);
        let label = if name == "worker" {
            "worker thread"
        } else {
            "host-driven"
        };
        c.check(
            &format!("{label}: added p50 (c=1; block spread)"),
            format!("{} ({}..{})", fmt_us(a50), fmt_us(sp50.0), fmt_us(sp50.2)),
            "<= 10 us",
            a50 <= 10.0,
        );
        c.check(
            &format!("{label}: added p99 (c=1, median of 10 blocks)"),
            format!(
                "{} ({}..{})",
                fmt_us(sp99.1),
                fmt_us(sp99.0),
                fmt_us(sp99.2)
            ),
            "<= 50 us",
            sp99.1 <= 50.0,
        );
    }
    let ds = sorted(d.clone());
    c.m("direct_p50_us", pct(&ds, 0.5));
    c.m("direct_p99_us", pct(&ds, 0.99));
    c.info("direct p50", fmt_us(pct(&ds, 0.5)));
    out.push(c);

    // --- streams, concurrency 1.
    let mock = json!({"chunks": 6, "chunk_delay_ms": 1});
    let sbody = body("bench/fast", true, json!({"mock": mock}));
    let dsbody = direct_body(true, Some(mock));
    let n = if ctx.quick { 150 } else { 400 };
    let mut ft: [Vec<f64>; 3] = Default::default();
    let mut gap: [Vec<f64>; 3] = Default::default();
    for i in 0..n + 20 {
        for k in 0..3 {
            let m = (i + k) % 3;
            let s = match m {
                0 => stream_llmux(&worker, &mut ev, &sbody),
                1 => stream_llmux(&host, &mut ev, &sbody),
                _ => stream_direct(ctx, &url, &dsbody),
            };
            if i < 20 {
                continue;
            }
            if let Some(&f) = s.1.first() {
                ft[m].push(us(f - s.0));
            }
            gap[m].extend(s.1.windows(2).map(|x| us(x[1] - x[0])));
        }
    }
    let [wf, hf, df] = ft.map(sorted);
    let [wg, hg, dg] = gap.map(sorted);
    let mut c = Case::new(
        "host_driven_stream_c1",
        "streams of 6 chunks ~1 ms apart, concurrency 1, the three modes interleaved: first content chunk and \
         gaps between content chunks, added over direct reqwest",
    );
    c.m("streams_per_mode", n);
    for (name, f, g) in [("host_driven", &hf, &hg), ("worker", &wf, &wg)] {
        let fa = pct(f, 0.5) - pct(&df, 0.5);
        let ga = pct(g, 0.5) - pct(&dg, 0.5);
        c.m(&format!("{name}_added_first_token_p50_us"), fa);
        c.m(
            &format!("{name}_added_first_token_p99_us"),
            pct(f, 0.99) - pct(&df, 0.99),
        );
        c.m(&format!("{name}_added_gap_p50_us"), ga);
        let label = if name == "worker" {
            "worker thread"
        } else {
            "host-driven"
        };
        c.check(
            &format!("{label}: added first token p50"),
            fmt_us(fa),
            "<= 15 us",
            fa <= 15.0,
        );
        c.check(
            &format!("{label}: added per chunk p50"),
            fmt_us(ga),
            "<= 1 us",
            ga <= 1.0,
        );
    }
    c.m("direct_first_token_p50_us", pct(&df, 0.5));
    c.m("direct_gap_p50_us", pct(&dg, 0.5));
    out.push(c);

    // --- closed loop at 64 in flight: rate and added p99, alternating blocks.
    let rounds = if ctx.quick { 2 } else { 4 };
    let dur = Duration::from_millis(if ctx.quick { 300 } else { 500 });
    let (mut rates, mut p99s): ([Vec<f64>; 3], [Vec<f64>; 3]) = Default::default();
    for _ in 0..rounds {
        for (m, eng) in [(0, &worker), (1, &host)] {
            let (recs, t) = llmux_closed(eng, &mut ev, 64, dur, usize::MAX, KEEP_NOTHING, |_| {
                lbody.clone()
            });
            let l = sorted(recs.iter().filter(|r| r.ok).map(Rec::lat_us).collect());
            rates[m].push(l.len() as f64 / t.as_secs_f64());
            p99s[m].push(pct(&l, 0.99));
        }
        let (v, t) = direct_closed(ctx, &url, &dbody, 64, dur, usize::MAX);
        rates[2].push(v.len() as f64 / t.as_secs_f64());
        p99s[2].push(pct(&sorted(v), 0.99));
    }
    let mut c = Case::new(
        "host_driven_c64",
        "closed loop, 64 in flight, worker-thread and host-driven engines and direct reqwest in alternating blocks; \
         ratio = rate / direct rate of the same round (min / median / max over rounds)",
    );
    for (m, name) in [(0, "worker"), (1, "host_driven")] {
        let ratios = sorted(rates[m].iter().zip(&rates[2]).map(|(a, b)| a / b).collect());
        let med = pct(&ratios, 0.5);
        c.m(&format!("{name}_rate_per_s"), mean(&rates[m]));
        c.m(&format!("{name}_rate_ratio_median"), med);
        c.m(&format!("{name}_rate_ratio_min"), ratios[0]);
        c.m(&format!("{name}_rate_ratio_max"), ratios[ratios.len() - 1]);
        c.m(&format!("{name}_p99_us"), mean(&p99s[m]));
        let label = if name == "worker" {
            "worker thread"
        } else {
            "host-driven"
        };
        c.check(
            &format!("{label}: throughput vs direct at c=64 (round spread)"),
            format!(
                "{med:.2} ({:.2}..{:.2})",
                ratios[0],
                ratios[ratios.len() - 1]
            ),
            ">= 0.95",
            med >= 0.95,
        );
    }
    c.m("direct_rate_per_s", mean(&rates[2]));
    c.m("direct_p99_us", mean(&p99s[2]));
    out.push(c);
}

/// Soak (outside CI; run it by name: `scripts/bench.sh soak`): N mixed
/// requests (`LLMUX_BENCH_SOAK_N`, default 1,000,000; streams, non-streaming,
/// cancelled at once, failing over from a dead endpoint) through the C ABI,
/// 256 in flight, drained by 4 polling threads. Reports lost and doubled
/// terminal events (both must be 0) and resident memory at start, middle
/// and end.
fn case_soak(ctx: &Ctx, out: &mut Vec<Case>) {
    use std::sync::atomic::AtomicU8;
    let n: usize = std::env::var("LLMUX_BENCH_SOAK_N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let eng = Arc::new(CEngine::new(&config(
        ctx,
        json!({"explore_ratio": 0.0}),
        timeouts(),
    )));
    // Terminal count per request id (ids are sequential from the first).
    let seen: Arc<Vec<AtomicU8>> = Arc::new((0..n + 1).map(|_| AtomicU8::new(0)).collect());
    let in_flight = Arc::new(AtomicUsize::new(0));
    let ended = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let bodies = [
        body("bench/fast", true, json!({"mock": {"chunks": 4}})),
        body("bench/fast", false, json!({})),
        body(
            "bench/fast",
            true,
            json!({"mock": {"chunks": 50, "chunk_delay_ms": 5}}),
        ),
        body("bench/failover", false, json!({})),
    ];
    let pollers: Vec<_> = (0..4)
        .map(|_| {
            let (eng, seen, in_flight, ended, stop) = (
                eng.clone(),
                seen.clone(),
                in_flight.clone(),
                ended.clone(),
                stop.clone(),
            );
            std::thread::spawn(move || {
                let mut ev = Events::new(64);
                while !stop.load(Ordering::Acquire) {
                    ev.poll(&eng, 64, 20, |id, kind, _| {
                        if !matches!(kind, Kind::Chunk) {
                            if let Some(c) = seen.get(id as usize) {
                                c.fetch_add(1, Ordering::AcqRel);
                            }
                            in_flight.fetch_sub(1, Ordering::AcqRel);
                            ended.fetch_add(1, Ordering::AcqRel);
                        }
                    });
                }
            })
        })
        .collect();
    let rss = |label: &str, v: &mut Vec<(String, u64)>| v.push((label.into(), rss_bytes() / 1024));
    let mut samples = Vec::new();
    rss("start", &mut samples);
    let started = Instant::now();
    let mut first_id = None;
    for i in 0..n {
        while in_flight.load(Ordering::Acquire) >= 256 {
            std::thread::sleep(Duration::from_micros(50));
        }
        in_flight.fetch_add(1, Ordering::AcqRel);
        let id = eng.submit(&bodies[i % 4]).expect("submit");
        first_id.get_or_insert(id);
        if i % 4 == 2 {
            eng.cancel(id);
        }
        if i == n / 2 {
            rss("middle", &mut samples);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while ended.load(Ordering::Acquire) < n && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(200)); // any doubled event shows up
    rss("end", &mut samples);
    stop.store(true, Ordering::Release);
    for p in pollers {
        let _ = p.join();
    }
    let first = first_id.unwrap_or(1) as usize;
    let (mut lost, mut doubled) = (0usize, 0usize);
    for c in seen.iter().skip(first).take(n) {
        match c.load(Ordering::Acquire) {
            0 => lost += 1,
            1 => {}
            _ => doubled += 1,
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let mut c = Case::new(
        "soak",
        "mixed requests (stream, non-stream, cancelled at once, failing over) through the C ABI, 256 in flight, \
         4 polling threads; lost / doubled terminal events and RSS at start, middle, end",
    );
    c.m("requests", n);
    c.m("seconds", secs);
    c.m("lost_terminals", lost);
    c.m("doubled_terminals", doubled);
    for (label, kib) in &samples {
        c.m(&format!("rss_{label}_kib"), *kib);
    }
    c.check(
        "lost / doubled terminal events",
        format!("{lost} / {doubled} of {n}"),
        "0 / 0",
        lost == 0 && doubled == 0,
    );
    c.info(
        "RSS start / middle / end",
        samples
            .iter()
            .map(|(_, k)| format!("{k} KiB"))
            .collect::<Vec<_>>()
            .join(" / "),
    );
    out.push(c);
}

/// 2. Throughput: closed loop at increasing concurrency.
fn case_throughput(ctx: &Ctx, out: &mut Vec<Case>) {
    let eng = CEngine::new(&config(ctx, json!({"explore_ratio": 0.0}), timeouts()));
    let mut ev = Events::new(256);
    let url = direct_url(ctx, "fast");
    let lbody = body("bench/fast", false, json!({}));
    let dbody = direct_body(false, None);
    let levels: &[usize] = if ctx.quick {
        &[1, 4, 16, 64]
    } else {
        &[1, 2, 4, 8, 16, 32, 64, 128]
    };
    let block = Duration::from_millis(if ctx.quick { 250 } else { 400 });
    let max_c = *levels.last().unwrap_or(&1);
    llmux_closed(
        &eng,
        &mut ev,
        max_c,
        Duration::from_millis(200),
        usize::MAX,
        KEEP_NOTHING,
        |_| lbody.clone(),
    );
    direct_closed(
        ctx,
        &url,
        &dbody,
        max_c,
        Duration::from_millis(200),
        usize::MAX,
    );
    let mut c = Case::new(
        "throughput",
        "closed loop at increasing concurrency; llmux qualifies at a level while its p99 exceeds direct p99 by < 1 ms",
    );
    let mut rows = Vec::new();
    let (mut cpu_l, mut cpu_d) = (Vec::new(), Vec::new());
    let (mut best_l, mut best_l_c, mut best_d, mut best_d_c) = (0.0f64, 0usize, 0.0f64, 0usize);
    for &conc in levels {
        let (mut l, mut d) = (Vec::new(), Vec::new());
        let (mut lt, mut dt) = (Duration::ZERO, Duration::ZERO);
        let (mut lcpu, mut dcpu, mut lmock, mut dmock) = (0.0, 0.0, 0.0, 0.0);
        let mock_cpu = || {
            ctx.fleet
                .pid()
                .and_then(util::pid_cpu_s)
                .unwrap_or(f64::NAN)
        };
        for _ in 0..2 {
            let (c0, m0) = (util::process_cpu_s(), mock_cpu());
            let (recs, t) =
                llmux_closed(&eng, &mut ev, conc, block, usize::MAX, KEEP_NOTHING, |_| {
                    lbody.clone()
                });
            lcpu += util::process_cpu_s() - c0;
            lmock += mock_cpu() - m0;
            l.extend(recs.iter().filter(|r| r.ok).map(Rec::lat_us));
            lt += t;
            let (c0, m0) = (util::process_cpu_s(), mock_cpu());
            let (v, t) = direct_closed(ctx, &url, &dbody, conc, block, usize::MAX);
            dcpu += util::process_cpu_s() - c0;
            dmock += mock_cpu() - m0;
            d.extend(v);
            dt += t;
        }
        let lcpu_req = lcpu * 1e6 / l.len().max(1) as f64;
        let dcpu_req = dcpu * 1e6 / d.len().max(1) as f64;
        let (lmock_util, dmock_util) = (lmock / lt.as_secs_f64(), dmock / dt.as_secs_f64());
        let (lhost_util, dhost_util) = (lcpu / lt.as_secs_f64(), dcpu / dt.as_secs_f64());
        cpu_l.push(lcpu_req);
        cpu_d.push(dcpu_req);
        let (lr, dr) = (
            l.len() as f64 / lt.as_secs_f64(),
            d.len() as f64 / dt.as_secs_f64(),
        );
        let (l, d) = (sorted(l), sorted(d));
        let added99 = pct(&l, 0.99) - pct(&d, 0.99);
        let qualifies = added99 < 1000.0;
        if qualifies && lr > best_l {
            best_l = lr;
            best_l_c = conc;
        }
        if dr > best_d {
            best_d = dr;
            best_d_c = conc;
        }
        rows.push(json!({"concurrency": conc, "llmux_rps": r(lr, 1), "direct_rps": r(dr, 1),
            "llmux_p99_us": r(pct(&l, 0.99), 1), "direct_p99_us": r(pct(&d, 0.99), 1),
            "added_p99_us": r(added99, 1), "qualifies": qualifies,
            "llmux_cpu_us_per_request": r(lcpu_req, 2), "direct_cpu_us_per_request": r(dcpu_req, 2),
            "bench_cpu_utilisation_llmux": r(lhost_util, 3), "bench_cpu_utilisation_direct": r(dhost_util, 3),
            "mock_cpu_utilisation_llmux": r(lmock_util, 3), "mock_cpu_utilisation_direct": r(dmock_util, 3)}));
        c.info(
            &format!("c={conc:<3} llmux / direct"),
            format!(
                "{} / {} (+p99 {}{}; cpu/req {:.1} / {:.1} us; mock cpu {:.0}%)",
                fmt_rate(lr),
                fmt_rate(dr),
                fmt_us(added99),
                if qualifies { "" } else { ", over 1 ms" },
                lcpu_req,
                dcpu_req,
                lmock_util.max(dmock_util) * 100.0
            ),
        );
    }
    let ratio = if best_d > 0.0 {
        best_l / best_d
    } else {
        f64::NAN
    };
    c.m("levels", Value::Array(rows));
    c.m("llmux_max_rps", best_l);
    c.m("llmux_max_rps_concurrency", best_l_c);
    c.m("direct_max_rps", best_d);
    c.m("direct_max_rps_concurrency", best_d_c);
    c.m("ratio", ratio);
    c.info(
        "max rate llmux (added p99 < 1 ms)",
        format!("{} at c={best_l_c}", fmt_rate(best_l)),
    );
    c.info(
        "max rate direct",
        format!("{} at c={best_d_c}", fmt_rate(best_d)),
    );
    c.check(
        "throughput ratio llmux / direct",
        format!("{ratio:.3}"),
        ">= 0.9",
        ratio >= 0.9,
    );
    // CPU cost per request on the host CPU (engine + host thread vs the
    // reqwest runtime), median over the levels: the rate each could reach if
    // the host CPU, not the mock, were the limit.
    let (cl, cd) = (pct(&sorted(cpu_l), 0.5), pct(&sorted(cpu_d), 0.5));
    c.m("llmux_cpu_us_per_request", cl);
    c.m("direct_cpu_us_per_request", cd);
    c.m("cpu_bound_ratio", cd / cl);
    c.info(
        "host CPU per request llmux / direct",
        format!("{cl:.1} / {cd:.1} us (CPU-bound ratio {:.2})", cd / cl),
    );
    out.push(c);
}

/// 3. Chunk delivery: the queue alone, and end to end from a fast stream.
fn case_chunks(ctx: &Ctx, cpus: usize, out: &mut Vec<Case>) {
    use llmux::events::{Event, EventKind, EventQueue};
    let sample = r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1700000000,"model":"m","choices":[{"index":0,"delta":{"content":"ab"},"finish_reason":null}]}"#;
    let n = if ctx.quick { 100_000 } else { 300_000 };
    let mk = |i: usize| Event {
        request_id: i as u64 % 64 + 1,
        kind: EventKind::Chunk,
        data: sample.to_string(),
    };
    let mut c = Case::new(
        "chunk_delivery",
        "chunks drained through poll: the engine's EventQueue (Rust API) pre-filled and with a producer thread, \
         and end to end through llmux_poll from 16 mock streams of 2000 chunks",
    );
    for batch in [1usize, 64] {
        // Pre-filled: the drain alone.
        let q = EventQueue::new();
        q.push_all((0..n).map(mk));
        let t = Instant::now();
        let mut got = 0;
        while got < n {
            got += q.poll(batch, Some(Duration::ZERO), |e| drop(black_box(e)));
        }
        let rate = n as f64 / t.elapsed().as_secs_f64();
        c.m(&format!("queue_prefilled_batch{batch}_chunks_per_s"), rate);
        c.check(
            &format!("queue drain, pre-filled, batch {batch}"),
            fmt_rate(rate),
            ">= 1 M/s",
            rate >= 1e6,
        );
        // A producer thread pushing groups of 8 while the host drains.
        let q = Arc::new(EventQueue::new());
        let mut evs: Vec<Event> = (0..n).map(mk).collect();
        let q2 = q.clone();
        let t = Instant::now();
        let producer = std::thread::spawn(move || {
            if cpus >= 2 {
                util::pin_current_thread(&[1]);
            }
            while !evs.is_empty() {
                let k = evs.len().saturating_sub(8);
                q2.push_all(evs.drain(k..));
            }
        });
        let mut got = 0;
        while got < n {
            got += q.poll(batch, Some(Duration::from_millis(100)), |e| {
                drop(black_box(e))
            });
        }
        let rate = n as f64 / t.elapsed().as_secs_f64();
        let _ = producer.join();
        c.m(&format!("queue_concurrent_batch{batch}_chunks_per_s"), rate);
        c.check(
            &format!("queue drain, live producer, batch {batch}"),
            fmt_rate(rate),
            ">= 1 M/s",
            rate >= 1e6,
        );
    }

    // End to end: a mock stream as fast as it can go.
    let eng = CEngine::new(&config(ctx, json!({"explore_ratio": 0.0}), timeouts()));
    let mut ev = Events::new(256);
    let chunks = 2000usize;
    let streams = 16usize;
    let mock = json!({"chunks": chunks, "chunk_delay_ms": 0, "text": "ab".repeat(chunks)});
    let lbody = body("bench/fast", true, json!({"mock": mock}));
    let dbody = direct_body(true, Some(mock));
    let url = direct_url(ctx, "fast");
    let rounds = if ctx.quick { 1 } else { 3 };
    let mut cpu_per_chunk = Vec::new();
    for batch in [1usize, 64] {
        let (mut total, mut secs) = (0usize, 0.0f64);
        let cpu0 = util::process_cpu_s();
        for _ in 0..rounds {
            let t = Instant::now();
            let mut host = Host::new(KEEP_NOTHING);
            for i in 0..streams {
                host.submit(&eng, i, &lbody);
            }
            let mut done = Vec::new();
            let mut count = 0usize;
            let mut last = t;
            while !host.inflight.is_empty() {
                let before = done.len();
                let k = host.poll(&eng, &mut ev, batch, 1000, &mut done);
                count += k - (done.len() - before);
                if k > 0 {
                    last = Instant::now();
                }
            }
            assert!(done.iter().all(|r| r.ok), "end-to-end streams failed");
            total += count;
            secs += (last - t).as_secs_f64();
        }
        let rate = total as f64 / secs;
        let cpu = (util::process_cpu_s() - cpu0) * 1e6 / total.max(1) as f64;
        cpu_per_chunk.push(cpu);
        c.m(&format!("e2e_batch{batch}_cpu_us_per_chunk"), cpu);
        c.m(&format!("e2e_batch{batch}_chunks_per_s"), rate);
        c.m(&format!("e2e_batch{batch}_chunks"), total);
        c.info(
            &format!("end to end via llmux_poll, batch {batch}"),
            fmt_rate(rate),
        );
    }
    // The same streams read directly, for scale.
    let (mut total, mut secs) = (0usize, 0.0f64);
    let cpu0 = util::process_cpu_s();
    for _ in 0..rounds {
        let client = ctx.client.clone();
        let (url, dbody) = (url.clone(), dbody.clone());
        let (k, s) = ctx.rt.block_on(async move {
            let t = Instant::now();
            let mut set = tokio::task::JoinSet::new();
            for _ in 0..streams {
                let (client, url, b) = (client.clone(), url.clone(), dbody.clone());
                set.spawn(async move { direct_stream(&client, &url, b).await.map(|x| x.1.len()) });
            }
            let mut k = 0;
            while let Some(r) = set.join_next().await {
                k += r.expect("task").expect("direct stream");
            }
            (k, t.elapsed().as_secs_f64())
        });
        total += k;
        secs += s;
    }
    let rate = total as f64 / secs;
    let dcpu = (util::process_cpu_s() - cpu0) * 1e6 / total.max(1) as f64;
    c.m("e2e_direct_cpu_us_per_chunk", dcpu);
    c.info(
        "host CPU per chunk llmux (batch 1 / 64) / direct",
        format!(
            "{:.2} / {:.2} / {dcpu:.2} us",
            cpu_per_chunk.first().copied().unwrap_or(f64::NAN),
            cpu_per_chunk.get(1).copied().unwrap_or(f64::NAN)
        ),
    );
    c.m("e2e_direct_reqwest_chunks_per_s", rate);
    c.info("same streams read directly (reqwest)", fmt_rate(rate));
    if let Some(l) = c
        .metrics
        .get("e2e_batch64_chunks_per_s")
        .and_then(Value::as_f64)
    {
        c.m("e2e_batch64_ratio_to_direct", l / rate);
    }
    c.note(
        "the 1 M/s target is checked on the queue drain; end to end is bounded by one mock CPU producing \
         SSE and by the per-chunk CPU on the host CPU (see host CPU per chunk)",
    );
    out.push(c);
}

/// 4. Routing decision: `routing::plan` over realistic views.
fn case_routing(out: &mut Vec<Case>) {
    let mut c = Case::new(
        "routing_decision",
        "routing::plan, latency policy, measured EWMAs, in-flight counts, 5% blocked, explore draw not taken",
    );
    let now = Instant::now();
    let mut rng = util::Rng(0x1234_5678_9abc_def1);
    for n in [2usize, 16, 128] {
        let views: Vec<EndpointView> = (0..n)
            .map(|_| EndpointView {
                first_token_ms: (rng.next_f64() < 0.9).then(|| 100.0 + 900.0 * rng.next_f64()),
                prior_ms: 1000.0,
                throughput: Some(50.0 + 100.0 * rng.next_f64()),
                in_flight: (rng.next_f64() * 8.0) as u32,
                price: 0.5 + 10.0 * rng.next_f64(),
                blocked_until: (rng.next_f64() < 0.05).then(|| now + Duration::from_secs(5)),
                probing: false,
                last_sample: now
                    .checked_sub(Duration::from_millis((rng.next_f64() * 10_000.0) as u64)),
                full: false,
            })
            .collect();
        let cands: Vec<usize> = (0..n).collect();
        let explore = Some(Explore {
            draw: 0.5,
            ratio: 0.02,
        });
        let iters = (4_000_000 / n).max(10_000);
        let mut best = f64::INFINITY;
        for _ in 0..3 {
            let t = Instant::now();
            for _ in 0..iters {
                let p = routing::plan(
                    black_box(&cands),
                    black_box(&views),
                    Policy::Latency,
                    now,
                    black_box(explore),
                    None,
                );
                black_box(p);
            }
            best = best.min(t.elapsed().as_nanos() as f64 / iters as f64);
        }
        c.m(&format!("plan_{n}_endpoints_ns"), best);
        if n == 16 {
            c.check(
                "rank 16 endpoints",
                format!("{best:.0} ns"),
                "< 1000 ns",
                best < 1000.0,
            );
        } else {
            c.info(&format!("rank {n} endpoints"), format!("{best:.0} ns"));
        }
    }
    out.push(c);
}

/// Provider preferences: (a) with `sort: price` and a p90 first-token
/// cutoff, the share of requests served by the cheapest endpoint whose
/// current latency meets the cutoff while the mock endpoints' latencies
/// drift (one degrades, a second degrades, the first recovers); (b) what
/// `routing::filter` with a full preference set adds to ranking 16
/// endpoints.
fn case_preferences(ctx: &Ctx, out: &mut Vec<Case>) {
    let mut c = Case::new(
        "preferences",
        "sort: price with preferred_max_latency {p90: 60 ms} over four endpoints (prices 1..4, \
         20..35 ms first tokens) whose latencies drift to 100 ms and back (a phase of 400 \
         requests each, health.half_life_ms 500: measurements older than 1.5 s are re-taken); \
         and routing::filter with every preference on 16 endpoints, next to ranking alone",
    );
    preferences_drift(ctx, &mut c);
    preferences_filter_cost(&mut c);
    out.push(c);
}

/// The drift schedule: per phase, each endpoint's first-token delay (ms).
const DRIFT: [[u64; 4]; 4] = [
    [20, 25, 30, 35],
    [100, 25, 30, 35],
    [100, 100, 30, 35],
    [20, 100, 30, 35],
];
const DRIFT_CUTOFF_MS: u64 = 60;

fn preferences_drift(ctx: &Ctx, c: &mut Case) {
    let names = ["a", "b", "c", "p"];
    let mut cfg: Value =
        serde_json::from_str(&config(ctx, json!({"half_life_ms": 500}), timeouts()))
            .expect("config");
    let eps: Vec<Value> = names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            json!({"provider": n, "upstream_model": "m", "expected_first_token_ms": 30,
                   "price": {"prompt": 1.0 + i as f64, "completion": 2.0}})
        })
        .collect();
    if let Some(ms) = cfg["models"].as_array_mut() {
        ms.push(json!({"slug": "bench/prefs", "endpoints": eps}));
    }
    let eng = CEngine::new(&cfg.to_string());
    let mut ev = Events::new(256);
    let req = body(
        "bench/prefs",
        true,
        json!({"provider": {"sort": "price",
                            "preferred_max_latency": {"p90": DRIFT_CUTOFF_MS}}}),
    );
    let (warm, per_phase) = if ctx.quick { (20, 200) } else { (40, 400) };
    let mut hits = 0usize;
    let mut total = 0usize;
    let mut phase_shares = Vec::new();
    for (k, delays) in DRIFT.iter().enumerate() {
        for (n, ms) in names.iter().zip(delays) {
            ctx.fleet
                .set_behavior(n, &json!({"first_token_delay_ms": ms, "chunks": 2}));
        }
        let best = names
            .iter()
            .zip(delays)
            .find(|(_, &ms)| ms <= DRIFT_CUTOFF_MS)
            .map(|(n, _)| format!("{n}/default"))
            .unwrap_or_default();
        let n = if k == 0 { warm + per_phase } else { per_phase };
        let mut phase_hits = 0usize;
        for i in 0..n {
            let served = llmux_one(&eng, &mut ev, &req, KEEP_DATA).endpoint();
            if k == 0 && i < warm {
                continue;
            }
            phase_hits += usize::from(served == best);
        }
        let counted = if k == 0 { per_phase } else { n };
        phase_shares.push(r(phase_hits as f64 / counted as f64, 3));
        hits += phase_hits;
        total += counted;
    }
    let share = hits as f64 / total.max(1) as f64;
    c.m("drift_requests_after_warmup", total);
    c.m("drift_share_per_phase", json!(phase_shares));
    c.m("drift_share_best", r(share, 4));
    c.check(
        "requests on the cheapest endpoint within p90 cutoff, latencies drifting",
        format!("{:.1}%", share * 100.0),
        ">= 95%",
        share >= 0.95,
    );
}

/// 16 endpoints over 4 providers with every fact set, and a preference
/// set using every filter (all of them pass 14 endpoints; 2 miss the soft
/// latency cutoff and are ranked last).
fn filter_bench_setup() -> (llmux::catalog::Catalog, routing::filter::Preferences) {
    use routing::filter::{Cutoffs, MaxPrice, Partition, Preferences, Sort};
    let providers: Vec<Value> = (0..4)
        .map(|p| json!({"slug": format!("p{p}"), "protocol": "openai", "base_url": "http://127.0.0.1:9/v1"}))
        .collect();
    let eps: Vec<Value> = (0..16)
        .map(|i| {
            json!({"provider": format!("p{}", i % 4), "name": format!("e{i}"), "upstream_model": "m",
                   "region": if i % 2 == 0 { "eu-west" } else { "us-east" },
                   "quantization": if i % 3 == 0 { "fp8" } else { "bf16" },
                   "data_policy": {"training": false, "zdr": true, "retention_days": 0},
                   "price": {"prompt": 1.0 + i as f64 * 0.25, "completion": 2.0,
                             "request": 0.001, "image": 0.01}})
        })
        .collect();
    let cat = llmux::catalog::Catalog::from_json(
        &json!({"providers": providers, "models": [{"slug": "b/m", "endpoints": eps}]}).to_string(),
    )
    .expect("catalog");
    let cut = |p90: f64| Cutoffs {
        p90: Some(p90),
        ..Default::default()
    };
    let p50 = |v: f64| Cutoffs {
        p50: Some(v),
        ..Default::default()
    };
    let prefs = Preferences {
        order: None,
        allow_fallbacks: Some(true),
        only: Some((0..4).map(|p| format!("p{p}")).collect()),
        ignore: vec!["p9".into()],
        sort: Some(Sort {
            by: Policy::Price,
            partition: Partition::Model,
        }),
        max_price: MaxPrice {
            prompt: Some(100.0),
            completion: Some(100.0),
            request: Some(1.0),
            image: Some(1.0),
        },
        deny_data_collection: true,
        zdr: true,
        quantizations: Some(vec!["fp8".into(), "bf16".into()]),
        require_parameters: true,
        regions: Some(vec!["eu-west".into(), "us-east".into()]),
        max_latency: cut(5000.0),
        min_throughput: p50(1.0),
        preferred_max_latency: cut(800.0),
        preferred_min_throughput: p50(10.0),
    };
    (cat, prefs)
}

/// The best ns per call of each of `fs` over `rounds` rounds of `iters`
/// calls, interleaved.
fn best_ns_interleaved(fs: &[&dyn Fn()], iters: usize, rounds: usize) -> Vec<f64> {
    let mut ns = vec![f64::INFINITY; fs.len()];
    for _ in 0..rounds {
        for (k, f) in fs.iter().enumerate() {
            let t = Instant::now();
            for _ in 0..iters {
                f();
            }
            ns[k] = ns[k].min(t.elapsed().as_nanos() as f64 / iters as f64);
        }
    }
    ns
}

/// The 16 endpoints' ranking views and live percentiles (2 of them miss
/// the soft p90 cutoff).
fn filter_bench_health(
    cat: &llmux::catalog::Catalog,
    now: Instant,
) -> (Vec<EndpointView>, Vec<routing::filter::Measured>) {
    use routing::filter::Measured;
    let mut rng = util::Rng(0x2222_3333_4444_5555);
    let views: Vec<EndpointView> = (0..16)
        .map(|i| EndpointView {
            first_token_ms: Some(100.0 + 900.0 * rng.next_f64()),
            prior_ms: 1000.0,
            throughput: Some(50.0 + 100.0 * rng.next_f64()),
            in_flight: (rng.next_f64() * 4.0) as u32,
            price: cat.endpoints[i].price_prompt + cat.endpoints[i].price_completion,
            blocked_until: None,
            probing: false,
            last_sample: Some(now),
            full: false,
        })
        .collect();
    let measured: Vec<Measured> = (0..16)
        .map(|i| {
            let p90 = if i % 8 == 3 { 1200.0 } else { 400.0 };
            Measured {
                latency: [Some(p90 * 0.6), Some(p90 * 0.8), Some(p90), Some(p90 * 1.3)],
                throughput: [Some(40.0), Some(50.0), Some(60.0), Some(70.0)],
                prior_ms: 1000.0,
                average_ms: Some(p90 * 0.6),
            }
        })
        .collect();
    (views, measured)
}

/// (b) ns per request: filter + rank + finish with every preference, vs
/// rank alone, on the same 16 endpoints, interleaved.
fn preferences_filter_cost(c: &mut Case) {
    use routing::filter;
    let (cat, prefs) = filter_bench_setup();
    let now = Instant::now();
    let (views, measured) = filter_bench_health(&cat, now);
    let cands: Vec<usize> = (0..16).collect();
    let required = ["tools", "temperature"];
    let with_filter = || {
        let j = filter::filter(
            black_box(&cands),
            &cat.endpoints,
            black_box(&prefs),
            &required,
            &|e| measured[e],
        );
        let order = routing::plan(&j.kept, &views, Policy::Price, now, None, None);
        let avail = filter::available_at(&views, now);
        black_box(filter::finish(
            order,
            &j.demoted,
            &avail,
            prefs.first_choice_only(),
        ));
        black_box(j.filtered);
    };
    let alone = || {
        black_box(routing::plan(
            black_box(&cands),
            &views,
            Policy::Price,
            now,
            None,
            None,
        ));
    };
    // Breakdown: the filter alone, and without the soft cutoffs (nothing
    // demoted, so no reason strings).
    let hard_only = routing::filter::Preferences {
        preferred_max_latency: Default::default(),
        preferred_min_throughput: Default::default(),
        ..prefs.clone()
    };
    let filter_only = |p: &routing::filter::Preferences| {
        black_box(filter::filter(
            black_box(&cands),
            &cat.endpoints,
            black_box(p),
            &required,
            &|e| measured[e],
        ));
    };
    let ns = best_ns_interleaved(
        &[&with_filter, &alone, &|| filter_only(&prefs), &|| {
            filter_only(&hard_only)
        }],
        200_000,
        5,
    );
    c.m("filter_only_16_ns", r(ns[2], 1));
    c.m("filter_only_no_soft_cutoffs_16_ns", r(ns[3], 1));
    let added = ns[0] - ns[1];
    c.m("filter_and_rank_16_ns", r(ns[0], 1));
    c.m("rank_16_ns", r(ns[1], 1));
    c.m("filter_added_ns", r(added, 1));
    c.check(
        "filter cost added to ranking 16 endpoints (every preference)",
        format!("{added:.0} ns ({:.0} vs {:.0})", ns[0], ns[1]),
        "<= 1000 ns",
        added <= 1000.0,
    );
}

/// Shared health: what it adds to a request's path. The request path reads
/// the overlay the sync task merged in and never waits on Redis, so this
/// measures the health calls one attempt makes (rank 16 endpoints, claim a
/// slot, book the success) with and without an overlay, then whole requests
/// through two engines, one syncing with a real redis-server every 100 ms,
/// interleaved in blocks.
fn case_shared(ctx: &Ctx, out: &mut Vec<Case>) {
    use llmux::health::Health;
    let mut c = Case::new(
        "shared_health",
        "request-path cost with `shared` on vs off: health calls per attempt (16 endpoints), and whole requests with a live redis-server",
    );
    let catalog_json = |extra: Value| {
        let eps: Vec<Value> = (0..16)
            .map(|i| json!({"provider": "p", "name": format!("e{i}"), "upstream_model": "m"}))
            .collect();
        let mut v = json!({
            "providers": [{"slug": "p", "protocol": "openai", "base_url": "http://127.0.0.1:9/v1"}],
            "models": [{"slug": "b/m", "endpoints": eps}],
        });
        if let (Some(o), Some(x)) = (v.as_object_mut(), extra.as_object()) {
            o.extend(x.clone());
        }
        v.to_string()
    };
    let cat = llmux::catalog::Catalog::from_json(&catalog_json(
        json!({"shared": {"redis_url": "redis://127.0.0.1:9/0"}}),
    ))
    .expect("catalog");
    let off = Health::new(cat.health, 16);
    let mut on = Health::new(cat.health, 16);
    let (overlay, _rx) = llmux::shared::Overlay::new(cat.shared.clone().expect("shared"), 16);
    on.set_shared(std::sync::Arc::new(overlay));
    let now = Instant::now();
    for h in [&off, &on] {
        for e in 0..16 {
            h.first_token(e, now, 100.0 + e as f64);
        }
    }
    let attempt = |h: &Health| {
        let mut best = 0.0;
        for e in 0..16 {
            let v = h.view(e, now, 1000.0, 3.0, None);
            best += v.latency_cost();
        }
        black_box(best);
        h.try_begin(3, now, None);
        h.success(3, now, Some(50.0));
    };
    let iters = if ctx.quick { 200_000 } else { 1_000_000 };
    let mut ns = [f64::INFINITY; 2];
    for _ in 0..5 {
        for (k, h) in [&off, &on].into_iter().enumerate() {
            let t = Instant::now();
            for _ in 0..iters {
                attempt(black_box(h));
            }
            ns[k] = ns[k].min(t.elapsed().as_nanos() as f64 / iters as f64);
        }
    }
    c.m("health_calls_off_ns", r(ns[0], 1));
    c.m("health_calls_on_ns", r(ns[1], 1));
    c.check(
        "health calls per attempt, shared on - off",
        format!("{:.0} ns ({:.0} vs {:.0})", ns[1] - ns[0], ns[1], ns[0]),
        "< 2 us",
        ns[1] - ns[0] < 2000.0,
    );

    // Whole requests, with a real server when one is installed.
    let Some(mut redis) = bench_redis() else {
        c.note("redis-server/valkey-server not installed: whole-request comparison skipped");
        out.push(c);
        return;
    };
    let base = config(ctx, json!({"explore_ratio": 0.0}), timeouts());
    let mut with: Value = serde_json::from_str(&base).expect("config");
    with["shared"] = json!({"redis_url": format!("redis://127.0.0.1:{}/0", redis.1),
                            "key_prefix": "bench:", "sync_ms": 100});
    let eng_off = llmux::Engine::from_json(&base).expect("engine");
    let eng_on = llmux::Engine::from_json(&with.to_string()).expect("engine");
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let s: Value = serde_json::from_str(&eng_on.stats_json()).unwrap_or_default();
        if s["shared"]["connected"] == true {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let body = body("bench/fast", false, json!({}));
    for _ in 0..200 {
        rust_one(&eng_off, &body);
        rust_one(&eng_on, &body);
    }
    let (blocks, block) = if ctx.quick { (10, 100) } else { (30, 200) };
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for k in 0..blocks {
        let order: [(&llmux::Engine, bool); 2] = if k % 2 == 0 {
            [(&eng_off, false), (&eng_on, true)]
        } else {
            [(&eng_on, true), (&eng_off, false)]
        };
        for (eng, is_on) in order {
            for _ in 0..block {
                let t = rust_one(eng, &body);
                if is_on {
                    b.push(t)
                } else {
                    a.push(t)
                }
            }
        }
    }
    let added = block_median_diff(&b, &a, block, 0.5);
    let s: Value = serde_json::from_str(&eng_on.stats_json()).unwrap_or_default();
    c.m("request_off_p50_us", r(pct(&sorted(a.clone()), 0.5), 1));
    c.m("request_on_p50_us", r(pct(&sorted(b.clone()), 0.5), 1));
    c.m("request_added_p50_us", r(added, 2));
    c.m("syncs_during_run", s["shared"]["syncs"].clone());
    c.check(
        "whole request p50, shared on - off (live Redis, sync every 100 ms)",
        format!("{added:.2} us"),
        "<= 2 us",
        added <= 2.0,
    );
    redis.0.kill().ok();
    redis.0.wait().ok();
    out.push(c);
}

/// A redis-server (or valkey-server) on a free loopback port, without
/// persistence; None when neither is installed.
fn bench_redis() -> Option<(std::process::Child, u16)> {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").ok()?;
        l.local_addr().ok()?.port()
    };
    let dir = std::env::temp_dir().join(format!("llmux-bench-redis-{port}"));
    std::fs::create_dir_all(&dir).ok()?;
    let child = ["redis-server", "valkey-server"].iter().find_map(|b| {
        std::process::Command::new(b)
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .args(["--appendonly", "no"])
            .arg("--dir")
            .arg(&dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .ok()
    })?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Some((child, port))
}

/// 5b. Memory per in-flight stream (held open by a stalling mock).
/// A bench config whose providers all speak `http` (`http1` / `http2`).
fn config_http(ctx: &Ctx, health: Value, timeouts: Value, http: &str) -> String {
    let mut cfg: Value = serde_json::from_str(&config(ctx, health, timeouts)).expect("config");
    if let Some(ps) = cfg["providers"].as_array_mut() {
        for p in ps {
            p["http"] = json!(http);
        }
    }
    cfg.to_string()
}

fn case_memory(ctx: &Ctx, http: &str, idle: (u64, u64), nofile: (u64, u64), out: &mut Vec<Case>) {
    let (name, version) = match http {
        "http2" => ("memory-h2", "HTTP/2 (h2c, every stream on one connection)"),
        _ => ("memory", "HTTP/1.1 (a connection per stream)"),
    };
    let mut c = Case::new(
        name,
        &format!(
            "resident memory (/proc/self/statm) of an idle engine, and per in-flight stream held \
             open by a mock with fault stall_after 1, over {version}"
        ),
    );
    c.m("http_version", http);
    c.m(
        "idle_engine_delta_kib",
        idle.1.saturating_sub(idle.0) as f64 / 1024.0,
    );
    c.m("idle_process_rss_kib", idle.1 as f64 / 1024.0);
    c.m("rlimit_nofile_soft", nofile.0);
    c.m("rlimit_nofile_hard", nofile.1);
    c.info(
        "idle engine (RSS growth at llmux_engine_new)",
        format!("{:.0} KiB", idle.1.saturating_sub(idle.0) as f64 / 1024.0),
    );
    let t = json!({"connect_ms": 10000, "first_token_ms": 120000, "idle_ms": 120000, "total_ms": 300000});
    let eng = CEngine::new(&config_http(ctx, json!({"explore_ratio": 0.0}), t, http));
    let mut ev = Events::new(1024);
    let warm = body("bench/fast", true, json!({}));
    for _ in 0..20 {
        llmux_one(&eng, &mut ev, &warm, KEEP_NOTHING);
    }
    std::thread::sleep(Duration::from_millis(100));
    let base = rss_bytes();
    let heap_base = util::heap_in_use();
    let stall = body(
        "bench/fast",
        true,
        json!({"mock": {"fault": {"stall_after": 1}}}),
    );
    let targets: &[usize] = if ctx.quick {
        &[1000, 3000]
    } else {
        &[1000, 10000]
    };
    let mut host = Host::new(KEEP_DATA);
    let mut ended: Vec<Rec> = Vec::new();
    let mut opened: HashSet<u64> = HashSet::new();
    let mut ids: Vec<u64> = Vec::new();
    let mut reached = 0usize;
    let mut why_not: Option<String> = None;
    let t0 = Instant::now();
    'outer: for &target in targets {
        while ids.len() < target {
            let k = (target - ids.len()).min(250);
            for _ in 0..k {
                let idx = ids.len();
                match eng.submit(&stall) {
                    Ok(id) => {
                        host.inflight.insert(
                            id,
                            Flight {
                                idx,
                                submit: Instant::now(),
                                first: None,
                                chunks: Vec::new(),
                            },
                        );
                        ids.push(id);
                    }
                    Err(e) => {
                        why_not = Some(format!("submit failed: {e}"));
                        break 'outer;
                    }
                }
            }
            // Wait until every stream so far delivered its first chunk.
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                host.poll(&eng, &mut ev, 1024, 100, &mut ended);
                for (id, f) in &host.inflight {
                    if f.first.is_some() {
                        opened.insert(*id);
                    }
                }
                if !ended.is_empty() {
                    let e = &ended[0];
                    why_not = Some(format!(
                        "a stream ended early: {}",
                        e.data
                            .as_deref()
                            .unwrap_or("")
                            .chars()
                            .take(300)
                            .collect::<String>()
                    ));
                    break 'outer;
                }
                if opened.len() == ids.len() {
                    break;
                }
                if Instant::now() > deadline {
                    why_not = Some(format!(
                        "only {} of {} streams delivered a first chunk within 30 s",
                        opened.len(),
                        ids.len()
                    ));
                    break 'outer;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(300));
        host.poll(&eng, &mut ev, 1024, 0, &mut ended);
        let rss = rss_bytes();
        let per = rss.saturating_sub(base) as f64 / target as f64;
        c.check(
            &format!("per in-flight stream at {target} (RSS)"),
            format!("{:.1} KiB", per / 1024.0),
            "<= 8 KiB",
            per <= 8192.0,
        );
        if let (Some(h0), Some(h)) = (heap_base, util::heap_in_use()) {
            let heap_per = h.saturating_sub(h0) as f64 / target as f64;
            c.m(
                &format!("streams_{target}_heap_per_stream_kib"),
                heap_per / 1024.0,
            );
            c.info(
                &format!("of which malloc'd and live, at {target}"),
                format!("{:.1} KiB", heap_per / 1024.0),
            );
        }
        reached = target;
        c.m(&format!("streams_{target}_rss_kib"), rss as f64 / 1024.0);
        c.m(&format!("streams_{target}_per_stream_kib"), per / 1024.0);
        c.m(
            &format!("streams_{target}_open_s"),
            t0.elapsed().as_secs_f64(),
        );
    }
    c.m("baseline_rss_kib", base as f64 / 1024.0);
    c.m("max_concurrent_streams_reached", reached);
    if let Some(w) = &why_not {
        c.m("stopped_because", w.as_str());
        c.note(format!("stopped at {reached} streams: {w}"));
    }
    c.info("most concurrent streams held", format!("{reached}"));
    // Cancel everything and wait for the terminal events.
    let t = Instant::now();
    for id in &ids {
        eng.cancel(*id);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while !host.inflight.is_empty() && Instant::now() < deadline {
        host.poll(&eng, &mut ev, 1024, 100, &mut ended);
    }
    c.m("cancel_all_ms", t.elapsed().as_secs_f64() * 1000.0);
    c.m("streams_left_uncancelled", host.inflight.len());
    drop(eng);
    ctx.fleet.reset("fast");
    out.push(c);
}

/// 6. Failover: cost of a refused connection, dead-endpoint traffic, recovery.
fn case_failover(ctx: &Ctx, out: &mut Vec<Case>) {
    // 6a. The dead endpoint first on every request (threshold never reached).
    let eng = CEngine::new(&config(
        ctx,
        json!({"explore_ratio": 0.0, "failure_threshold": 1_000_000_000u32}),
        timeouts(),
    ));
    let mut ev = Events::new(64);
    let via_dead = body(
        "bench/failover",
        false,
        json!({"provider": {"routing": {"type": "order", "providers": ["dead", "live"]}}}),
    );
    let live_only = body(
        "bench/failover",
        false,
        json!({"provider": {"routing": {"type": "order", "providers": ["live"]}}}),
    );
    for _ in 0..50 {
        llmux_one(&eng, &mut ev, &via_dead, KEEP_DATA);
        llmux_one(&eng, &mut ev, &live_only, KEEP_DATA);
    }
    let n = if ctx.quick { 200 } else { 600 };
    let (mut lat_f, mut lat_l, mut refused, mut gap_f, mut gap_l) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 0..n {
        let order: [&Vec<u8>; 2] = if i % 2 == 0 {
            [&via_dead, &live_only]
        } else {
            [&live_only, &via_dead]
        };
        for b in order {
            let rec = llmux_one(&eng, &mut ev, b, KEEP_DATA);
            let v = rec.json();
            let att = v["routing"]["attempts"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let total_ms = v["routing"]["latency_ms"].as_f64().unwrap_or(f64::NAN);
            let sum_ms: f64 = att.iter().filter_map(|a| a["elapsed_ms"].as_f64()).sum();
            if std::ptr::eq(b, &via_dead) {
                assert_eq!(
                    att.len(),
                    2,
                    "expected a refused attempt then a served one: {v}"
                );
                refused.push(att[0]["elapsed_ms"].as_f64().unwrap_or(f64::NAN) * 1000.0);
                lat_f.push(rec.lat_us());
                gap_f.push((total_ms - sum_ms) * 1000.0);
            } else {
                lat_l.push(rec.lat_us());
                gap_l.push((total_ms - sum_ms) * 1000.0);
            }
        }
    }
    let fb99 = block_median_diff(&lat_f, &lat_l, n / 6, 0.99);
    let (lat_f, lat_l, refused, gap_f, gap_l) = (
        sorted(lat_f),
        sorted(lat_l),
        sorted(refused),
        sorted(gap_f),
        sorted(gap_l),
    );
    let mut c = Case::new(
        "failover",
        "order [dead port, live]: what a refused connection adds, dead-endpoint traffic with the default \
         circuit breaker, and recovery of a 503 endpoint",
    );
    let add50 = pct(&lat_f, 0.5) - pct(&lat_l, 0.5);
    let add99 = pct(&lat_f, 0.99) - pct(&lat_l, 0.99);
    let g50 = pct(&gap_f, 0.5) - pct(&gap_l, 0.5);
    let g99 = pct(&gap_f, 0.99) - pct(&gap_l, 0.99);
    c.m("samples", n);
    c.m("refused_attempt_p50_us", pct(&refused, 0.5));
    c.m("refused_attempt_p99_us", pct(&refused, 0.99));
    c.m("between_attempts_p50_us", g50);
    c.m("between_attempts_p99_us", g99);
    c.m("failover_added_p50_us", add50);
    c.m("failover_added_p99_us", add99);
    c.m("latency_with_failover_p50_us", pct(&lat_f, 0.5));
    c.m("latency_live_only_p50_us", pct(&lat_l, 0.5));
    c.info(
        "refused attempt (routing record elapsed_ms) p50",
        fmt_us(pct(&refused, 0.5)),
    );
    c.info("refused -> next attempt sent, p50", fmt_us(g50));
    c.check(
        "failover added latency p50",
        fmt_us(add50),
        "<= 1 ms",
        add50 <= 1000.0,
    );
    c.m("failover_added_p99_block_median_us", fb99);
    c.check(
        "failover added latency p99 (median of 6 blocks)",
        fmt_us(fb99),
        "<= 1 ms",
        fb99 <= 1000.0,
    );
    c.info("failover added latency p99 (all samples)", fmt_us(add99));
    drop(eng);

    // 6b. Dead-endpoint traffic with the default circuit breaker.
    let eng = CEngine::new(&config(ctx, json!({}), timeouts()));
    let rate = 100.0;
    let window = Duration::from_secs(if ctx.quick { 6 } else { 10 });
    let recs = llmux_open(&eng, &mut ev, rate, window, |_| via_dead.clone(), |_| false);
    let t0 = recs
        .iter()
        .map(|r| r.submit)
        .min()
        .unwrap_or_else(Instant::now);
    let mut dead_at: Vec<f64> = recs
        .iter()
        .filter(|r| {
            r.json()["routing"]["attempts"]
                .as_array()
                .is_some_and(|a| a.iter().any(|x| x["endpoint"] == "dead/default"))
        })
        .map(|r| (r.submit - t0).as_secs_f64())
        .collect();
    dead_at.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    let failed = recs.iter().filter(|r| !r.ok).count();
    // The default breaker: 3 failures open the circuit for 5 s, each failed
    // half-open probe reopens it for twice as long (cap 300 s).
    let model = |horizon: f64| -> usize {
        let first = dead_at.first().copied().unwrap_or(0.0);
        let open_at = dead_at.get(2).copied().unwrap_or(first);
        let (mut t, mut n, mut eject) = (open_at, 3usize, 5.0f64);
        loop {
            t += eject;
            if t >= horizon {
                return n;
            }
            n += 1;
            eject = (eject * 2.0).min(300.0);
        }
    };
    let per_min = model(60.0);
    c.m("traffic_rate_per_s", rate);
    c.m("traffic_window_s", window.as_secs_f64());
    c.m("requests_sent", recs.len());
    c.m("requests_failed", failed);
    c.m("dead_attempts_in_window", dead_at.len());
    c.m(
        "dead_attempt_times_s",
        json!(dead_at.iter().map(|x| r(*x, 3)).collect::<Vec<_>>()),
    );
    c.m(
        "dead_attempts_in_window_modelled",
        model(window.as_secs_f64()),
    );
    c.m("dead_attempts_per_minute_modelled", per_min);
    c.m(
        "dead_attempts_per_minute_linear_upper_bound",
        dead_at.len() as f64 * 60.0 / window.as_secs_f64(),
    );
    c.info(
        &format!(
            "requests sent to the dead endpoint in {} s",
            window.as_secs()
        ),
        format!("{} of {} ({} failed)", dead_at.len(), recs.len(), failed),
    );
    c.info(
        "dead-endpoint requests per minute (modelled)",
        format!("{per_min}"),
    );
    drop(eng);

    // 6c. Recovery: flip returns 503, then OK again.
    ctx.fleet.set_behavior("flip", &json!({"status": 503}));
    let eng = CEngine::new(&config(ctx, json!({}), timeouts()));
    let rec_body = body(
        "bench/recover",
        false,
        json!({"provider": {"routing": {"type": "order", "providers": ["flip", "backup"]}}}),
    );
    let mut flipped: Option<(Instant, u64)> = None;
    let mut back: Option<Instant> = None;
    let mut last_check = Instant::now();
    let recs = llmux_open(
        &eng,
        &mut ev,
        rate,
        Duration::from_secs(30),
        |_| rec_body.clone(),
        |r| {
            match r {
                Some(r) => {
                    if let Some((t, _)) = flipped {
                        if r.submit >= t && r.endpoint() == "flip/default" && back.is_none() {
                            back = Some(r.done);
                        }
                    }
                }
                None => {
                    if flipped.is_none() && last_check.elapsed() >= Duration::from_millis(5) {
                        last_check = Instant::now();
                        let s = eng.endpoint_stats("flip/default");
                        if s["circuit"] == "open" {
                            let left = s["circuit_open_for_ms"].as_u64().unwrap_or(0);
                            ctx.fleet.set_behavior("flip", &json!({}));
                            flipped = Some((Instant::now(), left));
                        }
                    }
                }
            }
            back.is_some()
        },
    );
    let failed = recs.iter().filter(|r| !r.ok).count();
    match (flipped, back) {
        (Some((t, left)), Some(b)) => {
            let ms = (b - t).as_secs_f64() * 1000.0;
            c.m("recovery_ms", ms);
            c.m("circuit_open_for_ms_at_recovery", left);
            c.info(
                "503 -> OK: until traffic is served by it again",
                format!("{ms:.0} ms (circuit had {left} ms left)"),
            );
        }
        _ => {
            c.m("recovery_ms", Value::Null);
            c.note("the recovered endpoint did not serve again within 30 s");
            c.info(
                "503 -> OK: until traffic is served by it again",
                "> 30 s".into(),
            );
        }
    }
    c.m("recovery_requests_failed", failed);
    ctx.fleet.reset("flip");
    out.push(c);
}

/// 7. Routing quality: share to the fastest, shift after a flip, hedging.
fn case_quality(ctx: &Ctx, out: &mut Vec<Case>) {
    let mut ev = Events::new(256);
    let beh = |ms: u64| json!({"first_token_delay_ms": ms, "chunks": 2});
    ctx.fleet.set_behavior("a", &beh(20));
    ctx.fleet.set_behavior("b", &beh(50));
    ctx.fleet.set_behavior("c", &beh(100));
    let mut c = Case::new(
        "routing_quality",
        "three endpoints with 20/50/100 ms first tokens, the fastest listed last, default health \
         settings: cold starts (one request at a time from a fresh engine), then concurrency 2; \
         then the fastest and slowest swap; then hedging against a 10% heavy tail",
    );
    let trio = body("bench/trio", true, json!({}));
    // Cold starts: which request first reaches the fastest, and its share
    // of requests 21..=cold_n.
    let (trials, cold_n) = if ctx.quick { (3, 60) } else { (5, 100) };
    let mut firsts: Vec<usize> = Vec::new();
    let mut shares: Vec<f64> = Vec::new();
    for _ in 0..trials {
        let eng = CEngine::new(&config(ctx, json!({}), timeouts()));
        let served: Vec<bool> = (0..cold_n)
            .map(|_| llmux_one(&eng, &mut ev, &trio, KEEP_DATA).endpoint() == "a/default")
            .collect();
        firsts.push(served.iter().position(|&x| x).map_or(0, |i| i + 1));
        let late = &served[20..];
        shares.push(late.iter().filter(|&&x| x).count() as f64 / late.len() as f64);
    }
    let worst_first = firsts
        .iter()
        .map(|&f| if f == 0 { usize::MAX } else { f })
        .max()
        .unwrap_or(0);
    let min_share = shares.iter().cloned().fold(1.0, f64::min);
    c.m("cold_trials", trials);
    c.m("cold_first_request_served_by_fastest", json!(firsts));
    c.m(
        "cold_share_fastest_after_20",
        json!(shares.iter().map(|x| r(*x, 3)).collect::<Vec<_>>()),
    );
    c.check(
        "cold start: first request served by the fastest (worst trial)",
        if worst_first == usize::MAX {
            "never".to_string()
        } else {
            format!("#{worst_first}")
        },
        "<= #3",
        worst_first <= 3,
    );
    c.check(
        "cold start: share to the fastest after 20 requests (worst trial)",
        format!("{:.1}%", min_share * 100.0),
        ">= 95%",
        min_share >= 0.95,
    );
    let eng = CEngine::new(&config(ctx, json!({}), timeouts()));
    // Warm-up for the concurrent phase: the engine's own cold start.
    for _ in 0..20 {
        llmux_one(&eng, &mut ev, &trio, KEEP_NOTHING);
    }
    let n = if ctx.quick { 120 } else { 250 };
    let (recs, _) = llmux_closed(
        &eng,
        &mut ev,
        2,
        Duration::from_secs(60),
        n,
        KEEP_DATA,
        |_| trio.clone(),
    );
    let mut by: HashMap<String, usize> = HashMap::new();
    for r in &recs {
        *by.entry(r.endpoint()).or_default() += 1;
    }
    let share = *by.get("a/default").unwrap_or(&0) as f64 / recs.len().max(1) as f64;
    c.m("share_requests", recs.len());
    c.m("served_by", json!(by));
    c.m("share_fastest", share);
    c.check(
        "share served by the fastest",
        format!("{:.1}%", share * 100.0),
        ">= 95%",
        share >= 0.95,
    );

    // Shift: a becomes 100 ms, c becomes 20 ms.
    ctx.fleet.set_behavior("a", &beh(100));
    ctx.fleet.set_behavior("c", &beh(20));
    let flip = Instant::now();
    let limit = Duration::from_secs(if ctx.quick { 10 } else { 20 });
    let need = 10usize;
    let mut host = Host::new(KEEP_DATA);
    let mut done: Vec<Rec> = Vec::new();
    // (submission index, served by c, submit time), in completion order.
    let mut seen: Vec<(usize, bool, Instant)> = Vec::new();
    let mut next = 0usize;
    let mut shift: Option<f64> = None;
    while shift.is_none() && flip.elapsed() < limit {
        while host.inflight.len() < 2 {
            host.submit(&eng, next, &trio);
            next += 1;
        }
        let before = done.len();
        host.poll(&eng, &mut ev, 64, 1000, &mut done);
        seen.extend(
            done[before..]
                .iter()
                .map(|r| (r.idx, r.endpoint() == "c/default", r.submit)),
        );
        let mut ordered = seen.clone();
        ordered.sort_by_key(|x| x.0);
        // Only the contiguous prefix of submissions counts.
        let mut run = 0usize;
        for (k, (idx, to_c, _)) in ordered.iter().enumerate() {
            if *idx != k {
                break;
            }
            run = if *to_c { run + 1 } else { 0 };
            if run == need {
                let first = ordered[k + 1 - need].2;
                shift = Some(first.saturating_duration_since(flip).as_secs_f64() * 1000.0);
                break;
            }
        }
    }
    while !host.inflight.is_empty() {
        host.poll(&eng, &mut ev, 64, 1000, &mut done);
    }
    let mut after: HashMap<String, usize> = HashMap::new();
    for r in &done {
        *after.entry(r.endpoint()).or_default() += 1;
    }
    let ewma: HashMap<String, Value> = ["a", "b", "c"]
        .iter()
        .map(|p| {
            let s = eng.endpoint_stats(&format!("{p}/default"));
            (p.to_string(), s["first_token_ms"].clone())
        })
        .collect();
    c.m("shift_consecutive_needed", need);
    c.m("shift_ms", shift.map_or(Value::Null, |x| json!(r(x, 1))));
    c.m("shift_requests_after_flip", done.len());
    c.m("shift_served_by", json!(after));
    c.m("ewma_first_token_ms_at_end", json!(ewma));
    match shift {
        Some(ms) => c.check(
            &format!("shift to the new fastest ({need} in a row)"),
            format!("{ms:.0} ms"),
            "<= 2 s",
            ms <= 2000.0,
        ),
        None => {
            c.check(
                &format!("shift to the new fastest ({need} in a row)"),
                format!("> {} s", limit.as_secs()),
                "<= 2 s",
                false,
            );
            c.note(format!(
                "no shift within {} s: served after the flip {:?}; first-token EWMAs at the end {:?}",
                limit.as_secs(),
                after,
                ewma
            ));
        }
    }
    drop(eng);
    ctx.fleet.reset("a");
    ctx.fleet.reset("b");
    ctx.fleet.reset("c");

    // Hedging against a heavy tail: p is 20 ms but 10% of requests take 500 ms.
    ctx.fleet.set_behavior("p", &beh(20));
    ctx.fleet.set_behavior("s", &beh(50));
    let n = if ctx.quick { 200 } else { 400 };
    let mut slow = Vec::with_capacity(n);
    let mut rng = util::Rng(0x5eed_0000_1234_5677);
    for _ in 0..n {
        slow.push(rng.next_f64() < 0.10);
    }
    let slow_count = slow.iter().filter(|&&s| s).count();
    c.m("tail_requests", n);
    c.m("tail_slow_requests", slow_count);
    for (label, hedge) in [
        ("no_hedge", Value::Null),
        ("hedge_100ms", json!({"delay_ms": 100})),
    ] {
        ctx.fleet.reset("p");
        ctx.fleet.reset("s");
        ctx.fleet.set_behavior("p", &beh(20));
        ctx.fleet.set_behavior("s", &beh(50));
        let eng = CEngine::new(&config(ctx, json!({"explore_ratio": 0.0}), timeouts()));
        let mut provider = json!({"routing": {"type": "order", "providers": ["p", "s"]}});
        if !hedge.is_null() {
            provider["hedge"] = hedge.clone();
        }
        let bodies: Vec<Vec<u8>> = slow
            .iter()
            .map(|&s| {
                let mut extra = json!({"provider": provider});
                if s {
                    extra["mock"] = json!({"servers": {"p": {"first_token_delay_ms": 500}}});
                }
                body("bench/hedge", true, extra)
            })
            .collect();
        let (recs, _) = llmux_closed(
            &eng,
            &mut ev,
            16,
            Duration::from_secs(120),
            n,
            KEEP_NOTHING,
            |i| bodies[i].clone(),
        );
        let ft = sorted(
            recs.iter()
                .filter_map(|r| r.first.map(|f| (f - r.submit).as_secs_f64() * 1000.0))
                .collect(),
        );
        let failed = recs.iter().filter(|r| !r.ok).count();
        drop(eng);
        std::thread::sleep(Duration::from_millis(100));
        let upstream = ctx.fleet.request_count("p") + ctx.fleet.request_count("s");
        let extra = upstream as f64 / n as f64 - 1.0;
        c.m(&format!("{label}_first_token_p50_ms"), pct(&ft, 0.5));
        c.m(&format!("{label}_first_token_p99_ms"), pct(&ft, 0.99));
        c.m(&format!("{label}_first_token_mean_ms"), mean(&ft));
        c.m(&format!("{label}_upstream_requests"), upstream);
        c.m(&format!("{label}_extra_upstream_share"), extra);
        c.m(&format!("{label}_failed"), failed);
        c.info(
            &format!(
                "heavy tail, {}: first token p50 / p99",
                label.replace('_', " ")
            ),
            format!("{:.0} / {:.0} ms", pct(&ft, 0.5), pct(&ft, 0.99)),
        );
        if !hedge.is_null() {
            c.info(
                "hedging cost: extra upstream requests",
                format!("{:.1}% ({upstream} for {n})", extra * 100.0),
            );
        }
    }
    ctx.fleet.reset("p");
    ctx.fleet.reset("s");
    out.push(c);
}

/// Not part of the default run: only llmux traffic (non-streaming, closed
/// loop at concurrency 16, or streams with `profile-stream`; `profile-direct`
/// for the reqwest baseline), for a profiler:
/// `perf record -g target/release/deps/llmux-* profile`.
fn case_profile(ctx: &Ctx, stream: bool) {
    // LLMUX_BENCH_PROFILE_THREADS=0 profiles host-driven mode.
    let threads = std::env::var("LLMUX_BENCH_PROFILE_THREADS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(WORKER_THREADS);
    let conc = std::env::var("LLMUX_BENCH_PROFILE_CONC")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(16);
    let eng = CEngine::new(&config_threads(ctx, threads));
    let mut ev = Events::new(256);
    let secs = std::env::var("LLMUX_BENCH_PROFILE_S")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let b = if stream {
        body(
            "bench/fast",
            true,
            json!({"mock": {"chunks": 2000, "text": "ab".repeat(2000)}}),
        )
    } else {
        body("bench/fast", false, json!({}))
    };
    let (recs, t) = llmux_closed(
        &eng,
        &mut ev,
        conc,
        Duration::from_secs(secs),
        usize::MAX,
        KEEP_NOTHING,
        |_| b.clone(),
    );
    println!(
        " {} requests, {}",
        recs.len(),
        fmt_rate(recs.len() as f64 / t.as_secs_f64())
    );
}

// =================================================================== main

/// One group of cases.
type Step = Box<dyn Fn(&Ctx, &mut Vec<Case>)>;

fn write_json(path: &std::path::Path, machine: &Value, cases: &[Case]) {
    let v = json!({
        "suite": "llmux",
        "version": env!("CARGO_PKG_VERSION"),
        "machine": machine,
        "cases": cases.iter().map(Case::to_json).collect::<Vec<_>>(),
    });
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let _ = std::fs::write(path, serde_json::to_string_pretty(&v).unwrap_or_default());
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn main() {
    if let Some(upstream) = std::env::var_os(floor::ENV) {
        floor::serve(&upstream.to_string_lossy());
        return;
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this
    // binary without it, where a several-minute benchmark has no place.
    if !args.iter().any(|a| a == "--bench") {
        println!("llmux bench: run it with `cargo bench --bench llmux` or scripts/bench.sh");
        return;
    }
    if args.iter().any(|a| a == "request-cost") {
        // No fleet, no engine: the request path alone (see request_cost.rs).
        request_cost::run();
        return;
    }
    let quick = args.iter().any(|a| a == "--quick");
    let only: Vec<&str> = args
        .iter()
        .filter(|a| !a.starts_with('-'))
        .map(String::as_str)
        .collect();
    let want = |name: &str| only.is_empty() || only.contains(&name);
    let started = Instant::now();

    let nofile = util::raise_nofile();
    let cpus = util::online_cpus();
    let pinned = cpus >= 2;
    let fleet = Fleet::start(
        &[
            ("fast", json!({})),
            ("live", json!({})),
            ("flip", json!({})),
            ("backup", json!({})),
            ("a", json!({})),
            ("b", json!({})),
            ("c", json!({})),
            ("p", json!({})),
            ("s", json!({})),
        ],
        pinned.then_some(1),
    );
    if pinned {
        // Every thread started from here on (engines, the direct runtime)
        // inherits CPU 0.
        util::pin_current_thread(&[0]);
    }
    let dead_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let client = reqwest::Client::builder()
        .tcp_nodelay(true)
        .pool_idle_timeout(Duration::from_secs(90))
        .no_proxy()
        .build()
        .expect("client");
    let ctx = Ctx {
        fleet,
        dead_port,
        rt,
        client,
        quick,
    };

    // 5a. Idle engine, measured first, before anything else was allocated.
    let before = rss_bytes();
    let idle_engine = CEngine::new(&config(&ctx, json!({}), timeouts()));
    std::thread::sleep(Duration::from_millis(200));
    let idle = (before, rss_bytes());
    drop(idle_engine);

    let machine = json!({
        "nproc": cpus,
        "cpu_model": util::cpu_model(),
        "loadavg_at_start": loadavg(),
        "layout": if pinned { "bench thread, engine and direct baseline on CPU 0; mock fleet on CPU 1" }
                  else { "single CPU: nothing pinned" },
        "fleet": ctx.fleet.mode,
        "engine_worker_threads": WORKER_THREADS,
        "direct_baseline": "reqwest 0.12 on a current-thread tokio runtime driven by the bench thread",
        "quick": quick,
    });
    println!(
        "llmux bench: {} x {}, load {}; {}; engine worker_threads {}",
        cpus,
        machine["cpu_model"].as_str().unwrap_or(""),
        loadavg(),
        machine["layout"].as_str().unwrap_or(""),
        WORKER_THREADS
    );
    println!("mock fleet: {}", ctx.fleet.mode);
    let json_path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/llmux-bench.json");
    let json_path = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) => std::path::PathBuf::from(d).join("llmux-bench.json"),
        None => json_path,
    };
    // scripts/bench.sh runs groups of cases in separate processes.
    let json_path = std::env::var_os("LLMUX_BENCH_JSON")
        .map(std::path::PathBuf::from)
        .unwrap_or(json_path);

    if want("profile") && !only.is_empty() {
        case_profile(&ctx, false);
        return;
    }
    if want("profile-direct") && !only.is_empty() {
        let secs = std::env::var("LLMUX_BENCH_PROFILE_S")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(10);
        let conc = std::env::var("LLMUX_BENCH_PROFILE_CONC")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(16);
        let (v, t) = direct_closed(
            &ctx,
            &direct_url(&ctx, "fast"),
            &direct_body(false, None),
            conc,
            Duration::from_secs(secs),
            usize::MAX,
        );
        println!(
            " {} direct requests, {}",
            v.len(),
            fmt_rate(v.len() as f64 / t.as_secs_f64())
        );
        return;
    }
    if want("profile-stream") && !only.is_empty() {
        case_profile(&ctx, true);
        return;
    }
    let mut cases: Vec<Case> = Vec::new();
    if only.contains(&"soak") {
        case_soak(&ctx, &mut cases);
        write_json(&json_path, &machine, &cases);
        util::print_table(&cases);
        return;
    }
    let steps: Vec<(&str, Step)> = vec![
        ("latency", Box::new(case_latency)),
        ("host", Box::new(case_host_driven)),
        ("allocs", Box::new(case_allocs)),
        ("throughput", Box::new(case_throughput)),
        (
            "chunks",
            Box::new(move |ctx, out| case_chunks(ctx, cpus, out)),
        ),
        ("routing", Box::new(|_, out| case_routing(out))),
        (
            "telemetry",
            Box::new(|_, out| telemetry::case_telemetry(out)),
        ),
        (
            "memory",
            Box::new(move |ctx, out| case_memory(ctx, "http1", idle, nofile, out)),
        ),
        (
            "memory-h2",
            Box::new(move |ctx, out| case_memory(ctx, "http2", idle, nofile, out)),
        ),
        ("failover", Box::new(case_failover)),
        ("quality", Box::new(case_quality)),
        ("shared", Box::new(case_shared)),
        ("keys", Box::new(|ctx, out| keys::case_keys(ctx.quick, out))),
        ("preferences", Box::new(case_preferences)),
        ("reload", Box::new(reload::case_reload)),
        ("gateway", Box::new(case_gateway)),
        ("gateway-stream", Box::new(case_gateway_stream)),
        ("gateway-memory-noscrape", Box::new(case_gateway_memory)),
        (
            "gateway-memory",
            Box::new(move |ctx, out| edge::case_gateway_memory_streams(ctx, nofile.1, out)),
        ),
    ];
    for (name, f) in &steps {
        if !want(name) {
            continue;
        }
        let t = Instant::now();
        print!("[{:>6.1} s] {name} ...", started.elapsed().as_secs_f64());
        use std::io::Write;
        let _ = std::io::stdout().flush();
        ctx.fleet.reset_all();
        f(&ctx, &mut cases);
        println!(" {:.1} s", t.elapsed().as_secs_f64());
        write_json(&json_path, &machine, &cases);
    }
    let mut machine = machine;
    machine["loadavg_at_end"] = json!(loadavg());
    machine["total_s"] = json!(r(started.elapsed().as_secs_f64(), 1));
    write_json(&json_path, &machine, &cases);
    util::print_table(&cases);
    println!(
        "\n{} cases in {:.0} s; JSON: {}",
        cases.len(),
        started.elapsed().as_secs_f64(),
        json_path.display()
    );
}
