//! Shared helpers for the gateway's integration tests: `llmux serve` as a
//! real process (its config in a temporary directory, its stderr log kept),
//! the one-model catalog in front of the mock fleet, and the client and
//! runtime every test uses.
#![allow(dead_code)]

use llmux_fleet::MockServer;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The caller key every gateway is started with (an obviously fake value,
/// in this environment variable).
pub const KEY_ENV: &str = "LLMUX_TEST_GATEWAY_KEY";
pub const KEY: &str = "test-gateway-key-not-a-secret";

/// A directory removed on drop.
pub struct TempDir(pub PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A fresh directory; one per gateway, as the tests run in parallel in one
/// process.
pub fn temp_dir() -> TempDir {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let p = std::env::temp_dir().join(format!("llmux-gw-test-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&p).expect("temp dir");
    TempDir(p)
}

/// A running `llmux serve`; killed on drop.
pub struct Gateway {
    pub child: Child,
    /// `http://127.0.0.1:PORT` (or `https://`).
    pub url: String,
    /// `127.0.0.1:PORT`, for raw connections.
    pub addr: String,
    /// Its directory (the config file and whatever the test put there).
    pub dir: TempDir,
    /// Its config file.
    pub path: PathBuf,
    /// Everything the gateway wrote to stderr (its log lines).
    pub log: Arc<Mutex<String>>,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Gateway {
    /// The log written so far.
    pub fn log_text(&self) -> String {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The JSON log lines written so far.
    pub fn log_lines(&self) -> Vec<Value> {
        json_lines(&self.log_text()).collect()
    }

    /// Waits (up to 10 s) until `found` finds something in the log;
    /// `what` names it when it never comes.
    pub fn poll_log<T>(&self, what: &str, found: impl Fn(&str) -> Option<T>) -> T {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let log = self.log_text();
            if let Some(t) = found(&log) {
                return t;
            }
            assert!(Instant::now() < deadline, "no {what} in the log:\n{log}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits (up to 10 s) for a JSON log line matching `pred`.
    pub fn wait_log(&self, pred: impl Fn(&Value) -> bool) -> Value {
        self.poll_log("such line", |log| json_lines(log).find(|l| pred(l)))
    }

    /// Waits (up to 10 s) for a log line containing `needle`.
    pub fn wait_log_text(&self, needle: &str) {
        self.poll_log(&format!("`{needle}`"), |log| {
            log.contains(needle).then_some(())
        })
    }

    /// The gateway's `/metrics` text (Prometheus).
    pub async fn metrics(&self) -> String {
        client()
            .get(format!("{}/metrics", self.url))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics text")
    }

    /// Sends signal `sig` (`HUP`, `TERM`) to the gateway.
    pub fn signal(&self, sig: &str) {
        signal(&self.child, sig);
    }

    /// The gateway's resident memory, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS")
    }
}

/// The lines of `log` that are JSON.
pub fn json_lines(log: &str) -> impl Iterator<Item = Value> + '_ {
    log.lines().filter_map(|l| serde_json::from_str(l).ok())
}

/// Sends signal `sig` (`HUP`, `TERM`) to `child` (with `kill`, so the tests
/// have no unsafe code).
pub fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{sig}"), &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(ok.success());
}

/// How to start a gateway: `serve(&cfg).args(..).start()`.
pub struct Serve {
    cfg: String,
    args: Vec<String>,
    envs: Vec<(String, String)>,
    dir: Option<TempDir>,
    nofile: Option<u64>,
}

/// `llmux serve` on `cfg`, listening on 127.0.0.1:0 with JSON log lines and
/// `KEY` in `KEY_ENV`.
pub fn serve(cfg: &Value) -> Serve {
    Serve {
        cfg: cfg.to_string(),
        args: Vec::new(),
        envs: Vec::new(),
        dir: None,
        nofile: None,
    }
}

impl Serve {
    /// More command-line arguments (a later `--listen` wins).
    pub fn args(mut self, args: &[&str]) -> Self {
        self.args.extend(args.iter().map(|a| a.to_string()));
        self
    }

    /// One more environment variable.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.envs.push((key.into(), value.into()));
        self
    }

    /// Writes the config into `dir` (prepared by the test) instead of a
    /// fresh directory.
    pub fn in_dir(mut self, dir: TempDir) -> Self {
        self.dir = Some(dir);
        self
    }

    /// Raises the gateway's file-descriptor limit to `n` (with `prlimit`).
    pub fn nofile(mut self, n: u64) -> Self {
        self.nofile = Some(n);
        self
    }

    pub fn start(self) -> Gateway {
        self.try_start()
            .unwrap_or_else(|err| panic!("gateway did not start: {err}"))
    }

    /// The gateway, or what it wrote to stderr when it did not start.
    pub fn try_start(self) -> Result<Gateway, String> {
        let dir = self.dir.unwrap_or_else(temp_dir);
        let path = dir.0.join("llmux.json");
        std::fs::write(&path, &self.cfg).expect("write config");
        let mut cmd = match self.nofile {
            Some(n) => {
                let mut c = Command::new("prlimit");
                c.arg(format!("--nofile={n}:{n}"))
                    .arg("--")
                    .arg(env!("CARGO_BIN_EXE_llmux"));
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_llmux")),
        };
        let mut child = cmd
            .args(["serve", "--config"])
            .arg(&path)
            .args(["--listen", "127.0.0.1:0", "--log-format", "json"])
            .args(&self.args)
            .env(KEY_ENV, KEY)
            .envs(self.envs)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn llmux");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read stdout");
        let Some(url) = line.trim().strip_prefix("llmux: listening on ") else {
            let out = child.wait_with_output().expect("wait");
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        };
        let log = keep_log(&mut child);
        let addr = url.split("://").nth(1).unwrap_or(url).to_owned();
        Ok(Gateway {
            url: url.to_owned(),
            addr,
            child,
            dir,
            path,
            log,
        })
    }
}

/// Keeps `child`'s stderr drained (so log lines never block the gateway)
/// into the returned buffer.
fn keep_log(child: &mut Child) -> Arc<Mutex<String>> {
    let err = child.stderr.take().expect("stderr");
    let log = Arc::new(Mutex::new(String::new()));
    let sink = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            let mut l = sink.lock().unwrap_or_else(|p| p.into_inner());
            l.push_str(&line);
            l.push('\n');
        }
    });
    log
}

/// A provider for `s` speaking `proto` (named after the server; `/v1` on
/// the base URL for OpenAI).
pub fn provider(proto: &str, s: &MockServer) -> Value {
    let base = if proto == "openai" {
        format!("{}/v1", s.base_url())
    } else {
        s.base_url()
    };
    json!({"slug": s.name(), "protocol": proto, "base_url": base, "api_key": "upstream-fake-key"})
}

/// A catalog: model `demo/chat` on `endpoints`, no exploration, no
/// retries, and `gateway` as the gateway section.
pub fn catalog(providers: Vec<Value>, endpoints: Vec<Value>, gateway: Value) -> Value {
    json!({
        "providers": providers,
        "models": [{"slug": "demo/chat", "endpoints": endpoints}],
        "health": {"explore_ratio": 0.0},
        "retry": {"max_retries": 0},
        "gateway": gateway,
    })
}

/// The gateway section with `KEY` as its one caller key, named `tests`.
pub fn keyed() -> Value {
    json!({"keys": [{"env": KEY_ENV, "name": "tests"}]})
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client")
}

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// A Chat Completions body for `demo/chat`.
pub fn chat(stream: bool) -> Value {
    json!({"model": "demo/chat", "stream": stream, "messages": [{"role": "user", "content": "hi"}]})
}
