//! Shared by the gateway fuzz targets: one gateway (the `llmux serve`
//! router on an engine) set up once per process, its upstreams the mock
//! fleet on 127.0.0.1, and the checks that nothing is left behind.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use llmux_fleet::{Behavior, Fault, MockServer};
use llmux_gateway::{config, dashboard, keys, record::LogFormat, serve, server};

/// The caller key the gateway accepts (not a secret: a fuzz fixture).
pub const KEY: &str = "fuzz-gateway-key";
const KEY_ENV: &str = "LLMUX_FUZZ_GATEWAY_KEY";

/// The model slugs the catalog knows (each protocol, failover, errors).
pub const MODELS: [&str; 6] = [
    "fuzz/chat",
    "fuzz/via-anthropic",
    "fuzz/via-responses",
    "fuzz/via-gemini",
    "fuzz/flaky",
    "fuzz/chat:ok-openai",
];

pub struct Gateway {
    pub rt: tokio::runtime::Runtime,
    pub engine: Arc<llmux::Engine>,
    pub router: axum::Router,
    pub prom: metrics_exporter_prometheus::PrometheusHandle,
    /// The upstreams: a healthy one, one that breaks streams, one that
    /// answers 500.
    pub upstreams: Vec<MockServer>,
    /// Where the real accept loop (`serve::run`) listens, once started.
    pub addr: OnceLock<SocketAddr>,
}

/// The process's gateway.
pub fn gateway() -> &'static Gateway {
    static G: OnceLock<Gateway> = OnceLock::new();
    G.get_or_init(build)
}

fn upstreams() -> Vec<MockServer> {
    let ok = Behavior {
        chunks: 2,
        ..Behavior::default()
    };
    let broken = Behavior {
        chunks: 3,
        fault: Fault::DropAfter(1),
        ..Behavior::default()
    };
    let failing = Behavior {
        status: 500,
        ..Behavior::default()
    };
    [("ok", ok), ("broken", broken), ("failing", failing)]
        .into_iter()
        .map(|(name, b)| MockServer::start(name, b).expect("mock upstream starts"))
        .collect()
}

/// The config file: a provider per (upstream, protocol), short timeouts
/// (a fuzz input must not wait long), one caller key.
fn config_text(servers: &[MockServer]) -> String {
    let mut providers = Vec::new();
    for s in servers {
        for proto in ["openai", "anthropic", "responses", "gemini"] {
            let base = match proto {
                "openai" | "responses" => format!("{}/v1", s.base_url()),
                _ => s.base_url(),
            };
            providers.push(serde_json::json!({
                "slug": format!("{}-{proto}", s.name()), "protocol": proto,
                "base_url": base, "api_key": "upstream-fake-key"}));
        }
    }
    let ep = |p: &str| serde_json::json!({"provider": p, "upstream_model": format!("up-{p}")});
    serde_json::json!({
        "providers": providers,
        "models": [
            {"slug": "fuzz/chat", "endpoints": [ep("ok-openai"), ep("ok-anthropic")]},
            {"slug": "fuzz/via-anthropic", "endpoints": [ep("ok-anthropic")]},
            {"slug": "fuzz/via-responses", "endpoints": [ep("ok-responses")]},
            {"slug": "fuzz/via-gemini", "endpoints": [ep("ok-gemini")]},
            {"slug": "fuzz/flaky", "endpoints": [
                ep("broken-openai"), ep("failing-anthropic"), ep("broken-gemini"),
                ep("failing-responses"), ep("ok-openai")]},
        ],
        "health": {"explore_ratio": 0.0},
        "retry": {"max_retries": 1},
        "timeouts": {"connect_ms": 500, "first_token_ms": 2000, "total_ms": 5000},
        "gateway": {
            "keys": [{"env": KEY_ENV, "name": "fuzz"}],
            "max_body_bytes": 65536,
            "limits": {"header_read_timeout_ms": 1000, "body_read_timeout_ms": 1000,
                       "idle_timeout_ms": 2000},
        },
    })
    .to_string()
}

fn build() -> Gateway {
    // `llmux serve` runs under Rust's `main`, which ignores SIGPIPE (a
    // write to a closed socket is an error, not the end of the process);
    // libFuzzer's C `main` does not, so do it here.
    // SAFETY: setting a signal disposition to SIG_IGN before any thread
    // of ours writes to a socket.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
    std::env::set_var(KEY_ENV, KEY);
    let upstreams = upstreams();
    let dir = std::env::temp_dir().join(format!("llmux-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("llmux.json");
    std::fs::write(&path, config_text(&upstreams)).expect("write config");
    let loaded = config::load(&path).unwrap_or_else(|e| panic!("fuzz config: {e:?}"));
    let _ = std::fs::remove_dir_all(&dir);
    let engine = Arc::new(llmux::Engine::new(loaded.catalog).expect("engine"));
    let prom = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .expect("metrics recorder");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (_cancel_tx, cancel_rx) = tokio::sync::watch::channel(false);
    std::mem::forget(_cancel_tx);
    let g = loaded.gateway;
    let keyring = {
        let _in_rt = rt.enter();
        keys::Keyring::new(g.store.clone(), &engine).expect("keyring")
    };
    let app = Arc::new(server::App {
        keyring,
        engine: engine.clone(),
        knobs: Arc::new(config::Knobs::new(&g)),
        keys: Arc::new(config::LiveKeys::new(g.keys)),
        log: log_format(),
        prom: prom.clone(),
        cancel_all: cancel_rx,
        started: SystemTime::now(),
        board: dashboard::Board::default(),
        reloader: None,
    });
    let router = server::router(app);
    let gw = Gateway {
        rt,
        engine,
        router,
        prom,
        upstreams,
        addr: OnceLock::new(),
    };
    LIMITS.get_or_init(|| g.limits);
    gw
}

static LIMITS: OnceLock<llmux_gateway::config::Limits> = OnceLock::new();

/// `LLMUX_FUZZ_LOG=json|logfmt` writes the gateway's log lines to stderr
/// (a checker can read them); off by default.
fn log_format() -> LogFormat {
    match std::env::var("LLMUX_FUZZ_LOG").as_deref() {
        Ok("json") => LogFormat::Json,
        Ok("logfmt") => LogFormat::Logfmt,
        _ => LogFormat::Off,
    }
}

impl Gateway {
    /// Starts the real accept loop on 127.0.0.1:0 (once) and returns its
    /// address.
    pub fn listen(&'static self) -> SocketAddr {
        *self.addr.get_or_init(|| {
            let listener = self
                .rt
                .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
                .expect("bind 127.0.0.1:0");
            let addr = listener.local_addr().expect("local addr");
            let edge = serve::EdgeConfig {
                limits: llmux_gateway::limits::EdgeLimits::new(LIMITS.get().expect("built").clone()),
                tls: None,
                log: log_format(),
                close_wait: Duration::from_secs(1),
            };
            let router = self.router.clone();
            self.rt
                .spawn(serve::run(listener, router, edge, std::future::pending()));
            addr
        })
    }

    /// Waits until the engine has no request in flight nor event unread
    /// and no upstream holds a request; panics (a fuzz crash) when one is
    /// left behind.
    pub fn settle(&self, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let engine = self.engine.in_flight();
            let upstream: u64 = self.upstreams.iter().map(|u| u.in_flight()).sum();
            let queued = match engine + upstream as usize {
                0 => self.engine.stats().events_queued,
                _ => 0,
            };
            if engine == 0 && upstream == 0 && queued == 0 {
                // The mocks record every request; over millions of inputs
                // that record, not the gateway, would grow.
                self.upstreams.iter().for_each(|u| u.clear_requests());
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: left behind: {engine} engine requests, {upstream} upstream requests, {queued} unread events"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// A gauge's value in the /metrics text (0 when absent).
    pub fn gauge(&self, name: &str) -> f64 {
        let text = self.prom.render();
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
            .unwrap_or(0.0)
    }
}
