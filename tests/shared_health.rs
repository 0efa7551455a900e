//! Shared health across processes, against a real `redis-server` (or
//! `valkey-server`) on a loopback port and three engines in three child
//! processes (this test binary re-executed; it speaks a line protocol on
//! stdin/stdout), all routing to the mock fleet that runs in this process
//! and counts what each endpoint received and from whom (the `user` field
//! of each request names the instance).
//!
//! Timing is never asserted, only behaviour, with generous deadlines for
//! propagation; the propagation times seen are printed (`--nocapture`).

use llmux_fleet::{Behavior, MockServer};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The password every test server requires: an obviously fake value.
const PASSWORD: &str = "fake-redis-password-for-tests";
const URL_ENV: &str = "LLMUX_TEST_REDIS_URL";
const CHILD_ENV: &str = "LLMUX_SHARED_CHILD_CONFIG";
const SYNC_MS: u64 = 100;
const LEASE_MS: u64 = 600;

/// The scenarios run one at a time: each starts its own server and
/// processes, and they share two CPUs.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

// ------------------------------------------------------------ Redis server

struct Redis {
    bin: String,
    port: u16,
    dir: std::path::PathBuf,
    proc: Option<Child>,
    /// Serving TLS only, with a certificate from a CA made for the test.
    tls: bool,
}

fn redis_binary() -> String {
    for b in ["redis-server", "valkey-server"] {
        let found = Command::new(b)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if found {
            return b.into();
        }
    }
    panic!("neither redis-server nor valkey-server is installed (scripts/test-all installs redis-server)");
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

impl Redis {
    fn start() -> Redis {
        let dir = std::env::temp_dir().join(format!(
            "llmux-redis-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let mut r = Redis {
            bin: redis_binary(),
            port: free_port(),
            dir,
            proc: None,
            tls: false,
        };
        r.up();
        r
    }

    /// A server that speaks only TLS, its certificate signed by a CA made
    /// here (`ca.pem` in its directory), valid for 127.0.0.1.
    fn start_tls() -> Redis {
        let mut r = Redis::start();
        r.down();
        make_certs(&r.dir);
        r.tls = true;
        r.up();
        r
    }

    fn ca_file(&self) -> String {
        self.dir.join("ca.pem").display().to_string()
    }

    /// Starts the server (again) on its port, without persistence.
    fn up(&mut self) {
        let mut cmd = Command::new(&self.bin);
        if self.tls {
            let f = |n: &str| self.dir.join(n).display().to_string();
            cmd.args(["--port", "0", "--tls-port", &self.port.to_string()])
                .args(["--tls-cert-file", &f("server.pem")])
                .args(["--tls-key-file", &f("server.key")])
                .args(["--tls-ca-cert-file", &f("ca.pem")])
                .args(["--tls-auth-clients", "no"]);
        } else {
            cmd.args(["--port", &self.port.to_string()]);
        }
        let child = cmd
            .args(["--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .args(["--requirepass", PASSWORD])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.proc = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn down(&mut self) {
        if let Some(mut p) = self.proc.take() {
            let _ = p.kill();
            let _ = p.wait();
        }
    }

    fn url(&self) -> String {
        let scheme = if self.tls { "rediss" } else { "redis" };
        format!("{scheme}://:{PASSWORD}@127.0.0.1:{}/0", self.port)
    }
}

/// A CA and a server certificate for 127.0.0.1, made with the openssl
/// command (scripts/test-all installs it when missing).
fn make_certs(dir: &std::path::Path) {
    let run = |args: &[&str]| {
        let st = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("the openssl command is needed for the TLS test");
        assert!(st.success(), "openssl {args:?} failed");
    };
    std::fs::write(
        dir.join("ext.cnf"),
        "basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1\n",
    )
    .expect("write ext.cnf");
    run(&[
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key",
    ]
    .into_iter()
    .chain(["-out", "ca.pem", "-days", "2", "-subj", "/CN=llmux test CA"])
    .collect::<Vec<_>>());
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
    ]
    .into_iter()
    .chain(["-out", "server.csr", "-subj", "/CN=127.0.0.1"])
    .collect::<Vec<_>>());
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
    ]
    .into_iter()
    .chain([
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ])
    .collect::<Vec<_>>());
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.down();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

// ------------------------------------------------------------ instances

/// One engine in a child process.
struct Instance {
    name: String,
    proc: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
}

impl Instance {
    fn spawn(name: &str, config: &Value, redis: &Redis) -> Instance {
        let exe = std::env::current_exe().expect("test binary");
        let mut proc = Command::new(exe)
            .args(["child_engine", "--exact", "--ignored", "--nocapture"])
            .args(["--test-threads", "1"])
            .env(CHILD_ENV, config.to_string())
            .env(URL_ENV, redis.url())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn child engine");
        let stdin = proc.stdin.take().expect("stdin");
        let stdout = proc.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                // The test harness's own "test child_engine ..." may
                // precede the first answer on its line.
                if let Some(at) = line.find("@@ ") {
                    if tx.send(line[at + 3..].to_owned()).is_err() {
                        return;
                    }
                }
            }
        });
        let mut i = Instance {
            name: name.into(),
            proc,
            stdin: Some(stdin),
            lines,
        };
        let ready = i.read();
        assert_eq!(ready["ready"], true, "{name}: {ready}");
        i
    }

    fn read(&mut self) -> Value {
        let line = self
            .lines
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("instance {} stopped answering", self.name));
        serde_json::from_str(&line).expect("child answers JSON")
    }

    fn call(&mut self, cmd: Value) -> Value {
        let stdin = self.stdin.as_mut().expect("child still open");
        writeln!(stdin, "{cmd}").expect("write to child");
        stdin.flush().expect("flush");
        self.read()
    }

    fn stats(&mut self) -> Value {
        self.call(json!({"op": "stats"}))
    }

    /// Endpoint `id`'s entry in the stats.
    fn endpoint(&mut self, id: &str) -> Value {
        let s = self.stats();
        s["endpoints"]
            .as_array()
            .and_then(|a| a.iter().find(|e| e["id"] == id).cloned())
            .unwrap_or_else(|| panic!("no endpoint {id} in {s}"))
    }

    /// Sends requests at once and waits for all of them; returns one
    /// summary per request: `{ok, served, attempts: [[endpoint, outcome]]}`.
    fn batch(&mut self, reqs: Vec<Value>) -> Vec<Value> {
        let out = self.call(json!({"op": "batch", "reqs": reqs}));
        out["results"].as_array().cloned().expect("results")
    }

    /// Sends requests and does not wait for them.
    fn submit(&mut self, reqs: Vec<Value>) {
        self.call(json!({"op": "submit", "reqs": reqs}));
    }

    /// Polls the stats until `f` holds; returns how long that took.
    fn wait_for(&mut self, what: &str, limit: Duration, f: impl Fn(&Value) -> bool) -> Duration {
        let start = Instant::now();
        loop {
            let s = self.stats();
            if f(&s) {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < limit,
                "{}: {what} not seen within {limit:?}; stats: {s}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn wait_connected(&mut self) {
        self.wait_for("a sync with Redis", Duration::from_secs(15), |s| {
            s["shared"]["connected"] == true
        });
    }

    /// Closes stdin: the child frees its engine and exits.
    fn close(&mut self) {
        self.stdin = None;
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.proc.try_wait().ok().flatten().is_none() {
            assert!(Instant::now() < deadline, "{} did not exit", self.name);
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn kill(&mut self) {
        let _ = self.proc.kill(); // SIGKILL
        let _ = self.proc.wait();
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.kill();
    }
}

fn endpoint_of<'a>(stats: &'a Value, id: &str) -> &'a Value {
    stats["endpoints"]
        .as_array()
        .and_then(|a| a.iter().find(|e| e["id"] == id))
        .unwrap_or(&Value::Null)
}

// ------------------------------------------------------------ fixtures

/// A config with one model `test/model` over the given servers (endpoint
/// `NAME/default`); `endpoint_extra` adds fields per endpoint.
fn config(
    servers: &[(&MockServer, Value)],
    prefix: &str,
    shared_extra: Value,
    top: Value,
) -> Value {
    let providers: Vec<Value> = servers
        .iter()
        .map(|(s, _)| {
            json!({"slug": s.name(), "protocol": "openai",
                   "base_url": format!("{}/v1", s.base_url())})
        })
        .collect();
    let endpoints: Vec<Value> = servers
        .iter()
        .map(|(s, extra)| {
            let mut e = json!({"provider": s.name(), "upstream_model": format!("up-{}", s.name())});
            if let (Some(e), Some(x)) = (e.as_object_mut(), extra.as_object()) {
                e.extend(x.clone());
            }
            e
        })
        .collect();
    let mut shared = json!({
        "redis_url_env": URL_ENV, "key_prefix": prefix, "sync_ms": SYNC_MS,
        "timeout_ms": 250, "eject_quorum": 2, "eject_window_ms": 20000, "lease_ms": LEASE_MS,
    });
    if let (Some(s), Some(x)) = (shared.as_object_mut(), shared_extra.as_object()) {
        s.extend(x.clone());
    }
    let mut cfg = json!({
        "providers": providers,
        "models": [{"slug": "test/model", "endpoints": endpoints}],
        "health": {"explore_ratio": 0.0},
        "retry": {"max_retries": 0},
        "shared": shared,
    });
    if let (Some(c), Some(x)) = (cfg.as_object_mut(), top.as_object()) {
        c.extend(x.clone());
    }
    cfg
}

/// A request from instance `who`, trying `order` (endpoint ids) in order
/// when given, with a per-request mock override.
fn req(who: &str, order: Option<&[&str]>, mock: Value) -> Value {
    let mut r = json!({
        "model": "test/model", "user": who,
        "messages": [{"role": "user", "content": "hello"}],
    });
    if let Some(o) = order {
        r["provider"] = json!({"routing": {"type": "order", "providers": o}});
    }
    if !mock.is_null() {
        r["mock"] = mock;
    }
    r
}

fn served(results: &[Value]) -> Vec<String> {
    results
        .iter()
        .map(|r| r["served"].as_str().unwrap_or("").to_owned())
        .collect()
}

/// Who sent each request a server received (the `user` field).
fn senders(s: &MockServer) -> Vec<(String, u64)> {
    s.requests()
        .iter()
        .map(|r| (r.body["user"].as_str().unwrap_or("").to_owned(), r.at_ms))
        .collect()
}

fn prefix(test: &str) -> String {
    format!("llmux-test:{test}:{}:", std::process::id())
}

fn report(what: &str, d: Duration) {
    println!("propagation: {what}: {:.1} ms", d.as_secs_f64() * 1000.0);
}

// ------------------------------------------------------------ scenarios

#[test]
fn retry_after_from_one_instance_keeps_every_instance_away() {
    let _g = serial();
    let redis = Redis::start();
    let limited = MockServer::start("limited", Behavior::default()).unwrap();
    let spare = MockServer::start("spare", Behavior::default()).unwrap();
    let cfg = config(
        &[(&limited, json!({})), (&spare, json!({}))],
        &prefix("ra"),
        json!({}),
        json!({}),
    );
    let mut a = Instance::spawn("A", &cfg, &redis);
    let mut b = Instance::spawn("B", &cfg, &redis);
    let mut c = Instance::spawn("C", &cfg, &redis);
    for i in [&mut a, &mut b, &mut c] {
        i.wait_connected();
    }
    let order: &[&str] = &["limited/default", "spare/default"];
    let r = a.batch(vec![req(
        "A",
        Some(order),
        json!({"servers": {"limited": {"status": 429, "retry_after": "30"}}}),
    )]);
    assert_eq!(served(&r), ["spare/default"], "{r:?}");
    assert_eq!(limited.request_count(), 1);
    for i in [&mut b, &mut c] {
        let d = i.wait_for("the Retry-After", Duration::from_secs(10), |s| {
            endpoint_of(s, "limited/default")["shared"]["rate_limited_for_ms"]
                .as_u64()
                .is_some_and(|ms| ms > 25_000)
        });
        report(&format!("Retry-After A -> {}", i.name), d);
    }
    limited.clear_requests();
    for (i, who) in [(&mut b, "B"), (&mut c, "C"), (&mut a, "A")] {
        let reqs = (0..5).map(|_| req(who, Some(order), Value::Null)).collect();
        let r = i.batch(reqs);
        assert!(
            served(&r).iter().all(|s| s == "spare/default"),
            "{who}: {r:?}"
        );
        for x in &r {
            assert_eq!(x["attempts"].as_array().map(Vec::len), Some(1), "{x}");
        }
    }
    assert_eq!(
        limited.request_count(),
        0,
        "nobody may call a rate-limited endpoint: {:?}",
        senders(&limited)
    );
}

#[test]
fn ejection_needs_a_quorum_and_one_instance_probes() {
    let _g = serial();
    let redis = Redis::start();
    let flaky = MockServer::start(
        "flaky",
        Behavior {
            status: 503,
            ..Default::default()
        },
    )
    .unwrap();
    let steady = MockServer::start("steady", Behavior::default()).unwrap();
    let cfg = config(
        &[(&flaky, json!({})), (&steady, json!({}))],
        &prefix("eject"),
        json!({}),
        json!({"health": {"explore_ratio": 0.0, "failure_threshold": 2,
                          "base_ejection_ms": 1500, "max_ejection_ms": 1500}}),
    );
    let mut a = Instance::spawn("A", &cfg, &redis);
    let mut b = Instance::spawn("B", &cfg, &redis);
    let mut c = Instance::spawn("C", &cfg, &redis);
    for i in [&mut a, &mut b, &mut c] {
        i.wait_connected();
    }
    let order: &[&str] = &["flaky/default", "steady/default"];
    let once = |who: &str| vec![req(who, Some(order), Value::Null)];
    // A fails flaky twice: ejected in A only.
    for _ in 0..2 {
        a.batch(once("A"));
    }
    assert_eq!(a.endpoint("flaky/default")["circuit"], "open");
    // C hears of A's failures (by class) at its next sync...
    c.wait_for("A's failures", Duration::from_secs(10), |s| {
        endpoint_of(s, "flaky/default")["shared"]["others_failures_by_class"]["http_503"] == 2
    });
    // ...and of A's vote at once; one vote is not a quorum.
    let e = c.endpoint("flaky/default");
    assert_eq!(
        e["shared"]["ejected_for_ms"], 0,
        "one vote is not a quorum: {e}"
    );
    flaky.clear_requests();
    c.batch(once("C"));
    assert_eq!(
        senders(&flaky).len(),
        1,
        "C still uses an endpoint only A ejected"
    );
    // B fails it twice: the second vote ejects it everywhere.
    for _ in 0..2 {
        b.batch(once("B"));
    }
    let voted = Instant::now();
    let d = c.wait_for("the fleet ejection", Duration::from_secs(10), |s| {
        endpoint_of(s, "flaky/default")["shared"]["ejected_for_ms"]
            .as_u64()
            .is_some_and(|ms| ms > 0)
    });
    report("ejection (second vote) -> C", d.max(voted.elapsed()));
    flaky.clear_requests();
    let r = c.batch(vec![req("C", Some(order), Value::Null); 3]);
    assert!(served(&r).iter().all(|s| s == "steady/default"), "{r:?}");
    assert_eq!(flaky.request_count(), 0, "{:?}", senders(&flaky));

    // flaky recovers (and answers slowly, so a second probe would overlap).
    flaky.set_behavior(Behavior {
        first_token_delay_ms: 300,
        ..Default::default()
    });
    let deadline = Instant::now() + Duration::from_secs(15);
    std::thread::scope(|s| {
        for (i, who) in [(&mut a, "A"), (&mut b, "B"), (&mut c, "C")] {
            let flaky = &flaky;
            s.spawn(move || {
                while Instant::now() < deadline {
                    i.batch(vec![req(who, Some(order), Value::Null)]);
                    let from: std::collections::HashSet<String> =
                        senders(flaky).into_iter().map(|x| x.0).collect();
                    if from.len() == 3 {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            });
        }
    });
    let got = senders(&flaky);
    assert!(!got.is_empty(), "nobody probed flaky after its ejection");
    let (prober, at) = got[0].clone();
    assert_eq!(
        prober, "B",
        "the instance that completed the quorum probes: {got:?}"
    );
    let during: Vec<_> = got.iter().filter(|(_, t)| *t < at + 300).collect();
    assert_eq!(
        during.len(),
        1,
        "one half-open probe, not one per instance: {got:?}"
    );
    let from: std::collections::HashSet<&str> = got.iter().map(|x| x.0.as_str()).collect();
    assert_eq!(from.len(), 3, "traffic resumed everywhere: {got:?}");
}

#[test]
fn latency_learned_by_one_instance_steers_another() {
    let _g = serial();
    let redis = Redis::start();
    let quick = MockServer::start(
        "quick",
        Behavior {
            first_token_delay_ms: 20,
            ..Default::default()
        },
    )
    .unwrap();
    let slow = MockServer::start(
        "slow",
        Behavior {
            first_token_delay_ms: 400,
            ..Default::default()
        },
    )
    .unwrap();
    // The priors say the opposite of the truth.
    let cfg = config(
        &[
            (&slow, json!({"expected_first_token_ms": 10})),
            (&quick, json!({"expected_first_token_ms": 2000})),
        ],
        &prefix("latency"),
        json!({}),
        json!({}),
    );
    // Without sharing, a fresh engine follows the priors.
    let mut local_cfg = cfg.clone();
    local_cfg.as_object_mut().unwrap().remove("shared");
    let alone = llmux::Engine::from_json(&local_cfg.to_string()).unwrap();
    let id = alone
        .submit(
            llmux::Protocol::OpenAi,
            req("alone", None, Value::Null).to_string().as_bytes(),
        )
        .unwrap();
    let served_alone = wait_served(&alone, id);
    assert_eq!(served_alone, "slow/default");
    drop(alone);

    let mut a = Instance::spawn("A", &cfg, &redis);
    let mut b = Instance::spawn("B", &cfg, &redis);
    a.wait_connected();
    b.wait_connected();
    // Streams: first-token latency is a stream signal (non-streaming calls
    // measure `response_ms`, which stays local).
    let stream = |mut r: Value| {
        r["stream"] = json!(true);
        r
    };
    a.batch(vec![stream(req(
        "A",
        Some(&["quick/default"]),
        Value::Null,
    ))]);
    a.batch(vec![stream(req("A", Some(&["slow/default"]), Value::Null))]);
    let learned = Instant::now();
    let d = b.wait_for("A's latencies", Duration::from_secs(10), |s| {
        ["quick/default", "slow/default"]
            .iter()
            .all(|id| endpoint_of(s, id)["shared"]["others_first_token_ms"].is_number())
    });
    report("latency A -> B", d.max(learned.elapsed()));
    let r = b.batch(vec![stream(req("B", None, Value::Null))]);
    assert_eq!(served(&r), ["quick/default"], "B's first request: {r:?}");
    assert_eq!(
        b.endpoint("quick/default")["requests"],
        1,
        "that was B's very first request there"
    );
}

/// Issue 18: what the fleet measured counts as measured for a new
/// instance, for non-streaming requests too (ranked by complete-response
/// latency): B's very first request goes where A learned it is fast, not
/// where the priors point and an unshared engine would explore.
#[test]
fn fleet_measurements_count_as_measured_for_a_new_instance() {
    let _g = serial();
    let redis = Redis::start();
    let slow = MockServer::start(
        "slow",
        Behavior {
            first_token_delay_ms: 250,
            ..Default::default()
        },
    )
    .unwrap();
    let fast = MockServer::start("fast", Behavior::default()).unwrap();
    let cfg = config(
        &[
            (&slow, json!({"expected_first_token_ms": 10})),
            (&fast, json!({"expected_first_token_ms": 100})),
        ],
        &prefix("fleet-measured"),
        json!({}),
        json!({}),
    );
    let mut a = Instance::spawn("A", &cfg, &redis);
    let mut b = Instance::spawn("B", &cfg, &redis);
    a.wait_connected();
    b.wait_connected();
    // A explores on its own (no order): six non-streaming requests.
    let mut a_served = Vec::new();
    for _ in 0..6 {
        a_served.extend(served(&a.batch(vec![req("A", None, Value::Null)])));
    }
    assert!(
        a_served.iter().any(|s| s == "slow/default") && a_served.last().unwrap() == "fast/default",
        "A measured both and settled on the fast one: {a_served:?}"
    );
    b.wait_for("A's response latencies", Duration::from_secs(10), |s| {
        ["fast/default", "slow/default"]
            .iter()
            .all(|id| endpoint_of(s, id)["shared"]["others_response_ms"].is_number())
    });
    let r = b.batch(vec![req("B", None, Value::Null)]);
    assert_eq!(served(&r), ["fast/default"], "B's first request: {r:?}");
    assert_eq!(
        b.endpoint("slow/default")["requests"],
        0,
        "B never tried slow"
    );
}

/// Issue 22: percentile cutoffs are judged on the fleet's recent values
/// when an instance has none of its own. A measures the cheap endpoint
/// (250 ms); B, fresh, would judge it on its expectation (10 ms) and pick
/// it, but with A's samples removes it by `max_latency.p90`.
#[test]
fn fleet_samples_judge_percentile_cutoffs_for_a_new_instance() {
    let _g = serial();
    let redis = Redis::start();
    let cheap = MockServer::start(
        "cheap",
        Behavior {
            first_token_delay_ms: 250,
            ..Default::default()
        },
    )
    .unwrap();
    let dear = MockServer::start("dear", Behavior::default()).unwrap();
    let price =
        |p: f64| json!({"expected_first_token_ms": 10, "price": {"prompt": p, "completion": p}});
    let cfg = config(
        &[(&cheap, price(1.0)), (&dear, price(2.0))],
        &prefix("fleet-percentiles"),
        json!({}),
        json!({}),
    );
    let mut a = Instance::spawn("A", &cfg, &redis);
    let mut b = Instance::spawn("B", &cfg, &redis);
    a.wait_connected();
    b.wait_connected();
    for _ in 0..8 {
        a.batch(vec![req("A", Some(&["cheap/default"]), Value::Null)]);
    }
    b.wait_for("A's 8 response latencies", Duration::from_secs(10), |s| {
        endpoint_of(s, "cheap/default")["shared"]["others_response_samples"]
            .as_f64()
            .is_some_and(|n| n >= 8.0)
    });
    let mut r = req("B", None, Value::Null);
    r["provider"] = json!({"sort": "price", "max_latency": {"p90": 150}});
    let out = b.batch(vec![r]);
    assert_eq!(served(&out), ["dear/default"], "B: {out:?}");
    assert_eq!(
        b.endpoint("cheap/default")["requests"],
        0,
        "B never tried cheap"
    );
    // Without A's samples the same request goes to cheap: a third
    // instance on its own key prefix.
    let alone = config(
        &[(&cheap, price(1.0)), (&dear, price(2.0))],
        &prefix("fleet-percentiles-alone"),
        json!({}),
        json!({}),
    );
    let mut c = Instance::spawn("C", &alone, &redis);
    c.wait_connected();
    let mut r = req("C", None, Value::Null);
    r["provider"] = json!({"sort": "price", "max_latency": {"p90": 150}});
    assert_eq!(served(&c.batch(vec![r])), ["cheap/default"]);
}

fn wait_served(e: &llmux::Engine, id: u64) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        for ev in e.poll_vec(16, Some(Duration::from_millis(50))) {
            if ev.request_id == id && ev.is_terminal() {
                let v: Value = serde_json::from_str(&ev.data).unwrap();
                return v["routing"]["endpoint"].as_str().unwrap_or("").to_owned();
            }
        }
    }
    panic!("request {id} did not finish");
}

#[test]
fn fleet_concurrency_holds_across_instances_and_a_killed_one_frees_its_slots() {
    let _g = serial();
    let redis = Redis::start();
    let slow = Behavior {
        first_token_delay_ms: 200,
        ..Default::default()
    };
    let capped = MockServer::start("capped", slow.clone()).unwrap();
    let overflow = MockServer::start("overflow", slow).unwrap();
    let cfg = config(
        &[
            (&capped, json!({"max_concurrency": 4})),
            (&overflow, json!({})),
        ],
        &prefix("slots"),
        json!({"fleet_concurrency": ["capped/default"]}),
        json!({}),
    );
    let mut a = Instance::spawn("A", &cfg, &redis);
    let mut b = Instance::spawn("B", &cfg, &redis);
    let mut c = Instance::spawn("C", &cfg, &redis);
    for i in [&mut a, &mut b, &mut c] {
        i.wait_connected();
    }
    let order: &[&str] = &["capped/default", "overflow/default"];
    // Load: each instance keeps 4 requests in flight, for 3 s.
    capped.reset_max_in_flight();
    let until = Instant::now() + Duration::from_secs(3);
    std::thread::scope(|s| {
        for (i, who) in [(&mut a, "A"), (&mut b, "B"), (&mut c, "C")] {
            s.spawn(move || {
                while Instant::now() < until {
                    let r = i.batch(vec![req(who, Some(order), Value::Null); 4]);
                    assert!(r.iter().all(|x| x["ok"] == true), "{r:?}");
                }
            });
        }
    });
    let max = capped.max_in_flight();
    println!(
        "fleet concurrency: capped served {} requests, at most {max} at once; overflow served {}",
        capped.request_count(),
        overflow.request_count()
    );
    assert!(max <= 4, "fleet-wide max_concurrency 4 exceeded: {max}");
    assert!(max >= 2, "the capped endpoint was used under load: {max}");
    let from: std::collections::HashSet<String> =
        senders(&capped).into_iter().map(|x| x.0).collect();
    assert!(from.len() >= 2, "slots moved between instances: {from:?}");

    // A holds three slots with long requests, then is killed.
    // (One at a time: a request refused for want of a slot asks for one.)
    let long = json!({"first_token_delay_ms": 20000});
    let deadline = Instant::now() + Duration::from_secs(15);
    while a.endpoint("capped/default")["in_flight"].as_u64() < Some(3) {
        assert!(Instant::now() < deadline, "A never got three slots");
        a.submit(vec![req("A", Some(&["capped/default"]), long.clone())]);
        std::thread::sleep(Duration::from_millis(SYNC_MS + 50));
    }
    assert_eq!(a.endpoint("capped/default")["in_flight"], 3);
    let r = b.batch(vec![req("B", Some(order), Value::Null); 4]);
    let on_capped = served(&r).iter().filter(|s| *s == "capped/default").count();
    assert!(on_capped <= 1, "only one slot is free while A lives: {r:?}");
    a.kill();
    let killed = Instant::now();
    let mut freed = None;
    while killed.elapsed() < Duration::from_millis(LEASE_MS) + Duration::from_secs(10) {
        let r = b.batch(vec![req("B", Some(order), Value::Null); 4]);
        if served(&r).iter().all(|s| s == "capped/default") {
            freed = Some(killed.elapsed());
            break;
        }
    }
    let freed = freed.expect("the killed process's slots were never freed");
    println!(
        "fleet concurrency: slots of a SIGKILLed process usable again after {:.0} ms (lease {LEASE_MS} ms)",
        freed.as_secs_f64() * 1000.0
    );
}

#[test]
fn a_freed_engine_gives_its_slots_back_at_once() {
    let _g = serial();
    let redis = Redis::start();
    let capped = MockServer::start("capped", Behavior::default()).unwrap();
    let overflow = MockServer::start("overflow", Behavior::default()).unwrap();
    // Leases that would outlive the test: only a release frees them.
    let cfg = config(
        &[
            (&capped, json!({"max_concurrency": 2})),
            (&overflow, json!({})),
        ],
        &prefix("release"),
        json!({"fleet_concurrency": ["capped"], "lease_ms": 120_000}),
        json!({}),
    );
    let mut a = Instance::spawn("A", &cfg, &redis);
    let mut b = Instance::spawn("B", &cfg, &redis);
    a.wait_connected();
    b.wait_connected();
    let long = json!({"first_token_delay_ms": 20000});
    let deadline = Instant::now() + Duration::from_secs(15);
    while a.endpoint("capped/default")["in_flight"].as_u64() < Some(2) {
        assert!(Instant::now() < deadline, "A never got both slots");
        a.submit(vec![req("A", Some(&["capped/default"]), long.clone())]);
        std::thread::sleep(Duration::from_millis(SYNC_MS + 50));
    }
    let order: &[&str] = &["capped/default", "overflow/default"];
    let r = b.batch(vec![req("B", Some(order), Value::Null)]);
    assert_eq!(
        served(&r),
        ["overflow/default"],
        "both slots are A's: {r:?}"
    );
    // Closing A's stdin ends its loop: the engine is freed normally.
    let freed = Instant::now();
    a.close();
    let mut got = false;
    while freed.elapsed() < Duration::from_secs(20) {
        let r = b.batch(vec![req("B", Some(order), Value::Null); 2]);
        if served(&r).iter().all(|s| s == "capped/default") {
            got = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        got,
        "slots of a freed engine came back only with the 120 s lease"
    );
    println!(
        "release: slots of a freed engine usable again after {:.0} ms",
        freed.elapsed().as_secs_f64() * 1000.0
    );
}

#[test]
fn redis_down_means_local_health_and_sync_resumes_when_it_is_back() {
    let _g = serial();
    let mut redis = Redis::start();
    let one = MockServer::start("one", Behavior::default()).unwrap();
    let two = MockServer::start("two", Behavior::default()).unwrap();
    let cfg = config(
        &[(&one, json!({})), (&two, json!({}))],
        &prefix("outage"),
        json!({}),
        json!({}),
    );
    let mut a = Instance::spawn("A", &cfg, &redis);
    let mut b = Instance::spawn("B", &cfg, &redis);
    a.wait_connected();
    b.wait_connected();
    let s = a.stats();
    assert_eq!(
        s["shared"]["redis"],
        format!("redis://:***@127.0.0.1:{}/0", redis.port)
    );

    redis.down();
    let r = a.batch(vec![req("A", None, Value::Null); 5]);
    assert!(r.iter().all(|x| x["ok"] == true), "{r:?}");
    a.wait_for("the outage", Duration::from_secs(10), |s| {
        s["shared"]["connected"] == false
    });
    let r = a.batch(vec![req("A", None, Value::Null); 5]);
    assert!(
        r.iter().all(|x| x["ok"] == true),
        "requests flow without Redis: {r:?}"
    );
    let s = a.stats();
    assert!(s["shared"]["last_error"].is_string(), "{s}");
    assert!(!s.to_string().contains(PASSWORD), "password in stats: {s}");

    redis.up();
    let mut resumed = Duration::ZERO;
    for i in [&mut a, &mut b] {
        let d = i.wait_for("the reconnect", Duration::from_secs(20), |s| {
            s["shared"]["connected"] == true && s["shared"]["reconnects"].as_u64() >= Some(1)
        });
        resumed = resumed.max(d);
    }
    println!(
        "outage: sync resumed {:.0} ms after Redis came back",
        resumed.as_secs_f64() * 1000.0
    );
    // Hard signals flow again.
    let order: &[&str] = &["one/default", "two/default"];
    a.batch(vec![req(
        "A",
        Some(order),
        json!({"servers": {"one": {"status": 429, "retry_after": "30"}}}),
    )]);
    b.wait_for(
        "the Retry-After after the outage",
        Duration::from_secs(10),
        |s| {
            endpoint_of(s, "one/default")["shared"]["rate_limited_for_ms"]
                .as_u64()
                .is_some_and(|ms| ms > 0)
        },
    );
    one.clear_requests();
    let r = b.batch(vec![req("B", Some(order), Value::Null); 3]);
    assert!(served(&r).iter().all(|s| s == "two/default"), "{r:?}");
    assert_eq!(one.request_count(), 0);
}

#[test]
fn rediss_with_a_private_ca_and_a_password() {
    let _g = serial();
    let redis = Redis::start_tls();
    let one = MockServer::start("one", Behavior::default()).unwrap();
    let two = MockServer::start("two", Behavior::default()).unwrap();
    let cfg = config(
        &[(&one, json!({})), (&two, json!({}))],
        &prefix("tls"),
        json!({"tls_ca_file": redis.ca_file()}),
        json!({}),
    );
    // Without the CA the server's certificate is refused: local health,
    // and the error says why without the password.
    let mut untrusting = cfg.clone();
    untrusting["shared"]
        .as_object_mut()
        .unwrap()
        .remove("tls_ca_file");
    untrusting["shared"]["redis_url"] = json!(redis.url());
    untrusting["shared"]
        .as_object_mut()
        .unwrap()
        .remove("redis_url_env");
    let eng = llmux::Engine::from_json(&untrusting.to_string()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s: Value = serde_json::from_str(&eng.stats_json()).unwrap();
        if s["shared"]["sync_errors"].as_u64() >= Some(1) {
            assert_eq!(s["shared"]["connected"], false, "{s}");
            assert!(!s.to_string().contains(PASSWORD), "{s}");
            let e = s["shared"]["last_error"].as_str().unwrap_or("");
            println!("rediss without the CA: {e}");
            assert!(e.to_lowercase().contains("certificate"), "{s}");
            break;
        }
        assert!(Instant::now() < deadline, "no failed sync: {s}");
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(eng);

    let mut a = Instance::spawn("A", &cfg, &redis);
    let mut b = Instance::spawn("B", &cfg, &redis);
    a.wait_connected();
    b.wait_connected();
    let order: &[&str] = &["one/default", "two/default"];
    a.batch(vec![req(
        "A",
        Some(order),
        json!({"servers": {"one": {"status": 429, "retry_after": "30"}}}),
    )]);
    let d = b.wait_for("the Retry-After over TLS", Duration::from_secs(10), |s| {
        endpoint_of(s, "one/default")["shared"]["rate_limited_for_ms"]
            .as_u64()
            .is_some_and(|ms| ms > 25_000)
    });
    report("Retry-After A -> B over rediss://", d);
}

#[test]
fn shared_config_errors_name_the_path_and_hide_the_password() {
    let base = |shared: Value| {
        json!({
            "providers": [{"slug": "p", "protocol": "openai", "base_url": "http://127.0.0.1:9/v1"}],
            "models": [{"slug": "t/m", "endpoints": [{"provider": "p", "upstream_model": "m"}]}],
            "shared": shared,
        })
        .to_string()
    };
    let err = |shared: Value| match llmux::Engine::from_json(&base(shared)) {
        Ok(_) => panic!("accepted"),
        Err(e) => e.to_string(),
    };
    let e = err(json!({"redis_url": "http://:hunter2-fake@host/0"}));
    assert!(e.contains("shared.redis_url"), "{e}");
    assert!(!e.contains("hunter2-fake"), "{e}");
    let e = err(json!({"redis_url_env": "LLMUX_TEST_NO_SUCH_VARIABLE"}));
    assert!(e.contains("shared.redis_url_env"), "{e}");
    let e = err(json!({"redis_url": "redis://h/0", "fleet_concurrency": ["p/default"]}));
    assert!(
        e.contains("shared.fleet_concurrency[0]") && e.contains("max_concurrency"),
        "{e}"
    );
    let e = err(json!({"redis_url": "redis://h/0", "fleet_concurrency": ["nope"]}));
    assert!(e.contains("shared.fleet_concurrency[0]"), "{e}");
    let e = err(json!({"redis_url": "redis://h/0", "sync_ms": 0}));
    assert!(e.contains("shared.sync_ms"), "{e}");
    let e = err(json!({"redis_url": "rediss://h/0", "tls_ca_file": "/nonexistent/ca.pem"}));
    assert!(
        e.contains("shared.tls_ca_file") && e.contains("cannot read"),
        "{e}"
    );
    let junk = std::env::temp_dir().join(format!("llmux-junk-ca-{}.pem", std::process::id()));
    std::fs::write(
        &junk,
        "-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let e = err(json!({"redis_url": "rediss://:pw-fake@h/0", "tls_ca_file": junk}));
    let _ = std::fs::remove_file(&junk);
    assert!(e.contains("shared.tls_ca_file"), "{e}");
    assert!(!e.contains("pw-fake"), "{e}");
    let e = err(json!({"redis_url": "redis://h/0", "tls_ca_file": "/x.pem"}));
    assert!(e.contains("only for a rediss:// URL"), "{e}");
    // rediss:// (TLS) parses; nothing listens, so it runs on local health.
    let ok = base(json!({"redis_url": "rediss://:fake-pw@127.0.0.1:9/0", "timeout_ms": 50}));
    let eng = llmux::Engine::from_json(&ok).expect("rediss URL accepted");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s: Value = serde_json::from_str(&eng.stats_json()).unwrap();
        if s["shared"]["sync_errors"].as_u64() >= Some(1) {
            assert_eq!(s["shared"]["connected"], false);
            assert!(!s.to_string().contains("fake-pw"), "{s}");
            break;
        }
        assert!(Instant::now() < deadline, "no failed sync recorded: {s}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ------------------------------------------------------------ the child

/// Not a test: the engine process the scenarios start (this binary run
/// again with `CHILD_ENV` set). Reads one JSON command per line on stdin,
/// answers each with one `@@ {json}` line on stdout.
#[test]
#[ignore = "the child process of the shared-health tests"]
fn child_engine() {
    let Ok(cfg) = std::env::var(CHILD_ENV) else {
        return;
    };
    let engine = llmux::Engine::from_json(&cfg).expect("child config");
    let out = |v: Value| {
        let mut o = std::io::stdout().lock();
        let _ = writeln!(o, "@@ {v}");
        let _ = o.flush();
    };
    out(json!({"ready": true}));
    let mut pending = std::collections::HashMap::new();
    for line in std::io::stdin().lock().lines().map_while(Result::ok) {
        let cmd: Value = serde_json::from_str(&line).expect("command JSON");
        match cmd["op"].as_str().unwrap_or("") {
            "stats" => out(serde_json::from_str(&engine.stats_json()).unwrap()),
            "submit" | "batch" => {
                let ids: Vec<u64> = cmd["reqs"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| {
                        engine
                            .submit(llmux::Protocol::OpenAi, r.to_string().as_bytes())
                            .expect("submit")
                    })
                    .collect();
                if cmd["op"] == "submit" {
                    out(json!({"ids": ids}));
                    continue;
                }
                let deadline = Instant::now() + Duration::from_secs(30);
                while ids.iter().any(|id| !pending.contains_key(id)) && Instant::now() < deadline {
                    for ev in engine.poll_vec(64, Some(Duration::from_millis(20))) {
                        if ev.is_terminal() {
                            let v: Value = serde_json::from_str(&ev.data).unwrap();
                            pending.insert(ev.request_id, v);
                        }
                    }
                }
                let results: Vec<Value> = ids
                    .iter()
                    .map(|id| {
                        let v = pending.remove(id).unwrap_or(Value::Null);
                        let attempts: Vec<Value> = v["routing"]["attempts"]
                            .as_array()
                            .map(|a| {
                                a.iter()
                                    .map(|x| json!([x["endpoint"], x["outcome"]]))
                                    .collect()
                            })
                            .unwrap_or_default();
                        json!({"ok": v["type"] == "done", "served": v["routing"]["endpoint"],
                               "attempts": attempts, "error": v["error"]})
                    })
                    .collect();
                out(json!({"results": results}));
            }
            other => out(json!({"error": format!("unknown op {other}")})),
        }
    }
}
