//! The runtime, the request lifecycle, the failover loop and cancellation.
//!
//! Each submitted request runs as one task on the engine's tokio runtime. It
//! ranks the candidates (`routing::plan`), runs attempts (`upstream`) down
//! the list while failover is allowed, and ends with exactly one terminal
//! event. A drop guard emits an error if the task is torn down any other way
//! (a panic, runtime shutdown), so no request is ever left without one.

use crate::catalog::Catalog;
use crate::config::{ConfigErrors, DEFAULT_TIMEOUTS};
use crate::events::{Event, EventKind, EventQueue};
use crate::health::{Health, Verdict};
use crate::protocol::{self, Protocol, Usage};
use crate::request::{self, ParsedRequest, RequestError};
use crate::routing::{self, Explore, Policy};
use crate::upstream::{self, AttemptCtx, AttemptError, ErrKind};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Why an engine could not be built.
#[derive(Debug)]
pub enum EngineError {
    Config(ConfigErrors),
    Runtime(String),
}

impl std::fmt::Display for EngineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EngineError::Config(e) => write!(f, "{e}"),
            EngineError::Runtime(e) => write!(f, "could not start the engine: {e}"),
        }
    }
}

impl std::error::Error for EngineError {}

/// Why a submit was refused.
#[derive(Debug)]
pub enum SubmitError {
    Request(RequestError),
    ShuttingDown,
}

impl std::fmt::Display for SubmitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SubmitError::Request(e) => write!(f, "{e}"),
            SubmitError::ShuttingDown => write!(f, "the engine is shutting down"),
        }
    }
}

impl std::error::Error for SubmitError {}

struct Inner {
    catalog: Catalog,
    health: Health,
    queue: EventQueue,
    clients: Mutex<HashMap<u64, reqwest::Client>>,
    cancels: Mutex<HashMap<u64, oneshot::Sender<()>>>,
    next_id: AtomicU64,
    rng: AtomicU64,
    active: AtomicUsize,
    closing: AtomicBool,
}

/// The router. Thread-safe: every method takes `&self`.
pub struct Engine {
    inner: Arc<Inner>,
    runtime: Option<tokio::runtime::Runtime>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Engine {
    /// Builds an engine from JSON config text.
    pub fn from_json(config: &str) -> Result<Engine, EngineError> {
        Engine::new(Catalog::from_json(config).map_err(EngineError::Config)?)
    }

    /// Builds an engine from a JSON config file.
    pub fn from_file(path: &std::path::Path) -> Result<Engine, EngineError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            EngineError::Config(ConfigErrors(vec![crate::config::ConfigError {
                path: String::new(),
                message: format!("cannot read config file {}: {e}", path.display()),
            }]))
        })?;
        Engine::from_json(&text)
    }

    pub fn new(catalog: Catalog) -> Result<Engine, EngineError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(catalog.worker_threads)
            .thread_name("llmux-worker")
            .enable_all()
            .build()
            .map_err(|e| EngineError::Runtime(e.to_string()))?;
        let health = Health::new(catalog.health, catalog.endpoints.len());
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x9E37_79B9_7F4A_7C15)
            | 1;
        let inner = Arc::new(Inner {
            catalog,
            health,
            queue: EventQueue::new(),
            clients: Mutex::new(HashMap::new()),
            cancels: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            rng: AtomicU64::new(seed),
            active: AtomicUsize::new(0),
            closing: AtomicBool::new(false),
        });
        // Build the default client now so a TLS setup problem shows at load.
        let connect = inner
            .catalog
            .timeouts
            .connect_ms
            .or(DEFAULT_TIMEOUTS.connect_ms)
            .unwrap_or(5000);
        inner.client(connect).map_err(EngineError::Runtime)?;
        Ok(Engine {
            inner,
            runtime: Some(runtime),
        })
    }

    pub fn catalog(&self) -> &Catalog {
        &self.inner.catalog
    }

    /// Validates and starts a request; returns its id. Never blocks on I/O.
    pub fn submit(&self, protocol: Protocol, body: &[u8]) -> Result<u64, SubmitError> {
        if self.inner.closing.load(Ordering::Acquire) {
            return Err(SubmitError::ShuttingDown);
        }
        let req =
            request::parse(&self.inner.catalog, protocol, body).map_err(SubmitError::Request)?;
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        lock(&self.inner.cancels).insert(id, tx);
        self.inner.active.fetch_add(1, Ordering::AcqRel);
        let inner = self.inner.clone();
        match &self.runtime {
            Some(rt) => {
                rt.spawn(run(inner, id, req, rx));
            }
            None => return Err(SubmitError::ShuttingDown),
        }
        Ok(id)
    }

    /// Cancels an in-flight request; it ends with an error event of type
    /// `cancelled`. False when the id is unknown or already finished.
    pub fn cancel(&self, id: u64) -> bool {
        match lock(&self.inner.cancels).remove(&id) {
            Some(tx) => tx.send(()).is_ok(),
            None => false,
        }
    }

    /// Takes up to `max` events, waiting up to `timeout` (`None`: until an
    /// event or a wakeup; zero: never blocks).
    pub fn poll(&self, max: usize, timeout: Option<Duration>, sink: impl FnMut(Event)) -> usize {
        self.inner.queue.poll(max, timeout, sink)
    }

    /// Convenience: poll into a vector.
    pub fn poll_vec(&self, max: usize, timeout: Option<Duration>) -> Vec<Event> {
        let mut v = Vec::new();
        self.poll(max, timeout, |e| v.push(e));
        v
    }

    /// Makes a blocked `poll` return at once.
    pub fn wakeup(&self) {
        self.inner.queue.wakeup();
    }

    /// A file descriptor that is readable while events are waiting.
    pub fn fd(&self) -> Option<i32> {
        self.inner.queue.fd()
    }

    /// Requests started and not yet terminated.
    pub fn in_flight(&self) -> usize {
        self.inner.active.load(Ordering::Acquire)
    }

    /// Health and prices of every endpoint, as JSON.
    pub fn stats_json(&self) -> String {
        let inner = &self.inner;
        let now = Instant::now();
        let c = &inner.catalog;
        let endpoints: Vec<Value> = c
            .endpoints
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let p = c.provider_of(i);
                let mut m = inner.health.snapshot(i, now);
                m.insert("id".into(), json!(e.id));
                m.insert("model".into(), json!(c.models[e.model].slug));
                m.insert("provider".into(), json!(p.slug));
                m.insert("protocol".into(), json!(p.protocol.as_str()));
                m.insert("upstream_model".into(), json!(e.upstream_model));
                m.insert(
                    "price".into(),
                    json!({"prompt": e.price_prompt, "completion": e.price_completion}),
                );
                m.insert("context_window".into(), json!(e.context_window));
                Value::Object(m)
            })
            .collect();
        json!({
            "endpoints": endpoints,
            "requests_in_flight": inner.active.load(Ordering::Acquire),
            "events_queued": inner.queue.len(),
        })
        .to_string()
    }

    /// Cancels every request, waits for them to end, and stops the runtime.
    /// Called by `Drop`.
    pub fn shutdown(&mut self) {
        self.inner.closing.store(true, Ordering::Release);
        let senders: Vec<_> = lock(&self.inner.cancels)
            .drain()
            .map(|(_, tx)| tx)
            .collect();
        for tx in senders {
            let _ = tx.send(());
        }
        let Some(rt) = self.runtime.take() else {
            return;
        };
        if tokio::runtime::Handle::try_current().is_ok() {
            // Dropped inside another runtime: cannot block here.
            rt.shutdown_background();
            return;
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.inner.active.load(Ordering::Acquire) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        rt.shutdown_timeout(Duration::from_secs(1));
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl Inner {
    fn client(&self, connect_ms: u64) -> Result<reqwest::Client, String> {
        let mut map = lock(&self.clients);
        if let Some(c) = map.get(&connect_ms) {
            return Ok(c.clone());
        }
        let mut b = reqwest::Client::builder()
            .connect_timeout(Duration::from_millis(connect_ms))
            .tcp_nodelay(true)
            .pool_idle_timeout(Duration::from_secs(90))
            .user_agent(concat!("llmux/", env!("CARGO_PKG_VERSION")))
            .no_proxy();
        if let Some(p) = &self.catalog.proxy {
            b = b.proxy(reqwest::Proxy::all(p).map_err(|e| e.to_string())?);
        }
        let c = b.build().map_err(|e| e.to_string())?;
        map.insert(connect_ms, c.clone());
        Ok(c)
    }

    /// A uniform draw in [0, 1) (xorshift64*; not for cryptography).
    fn draw(&self) -> f64 {
        let mut x = self.rng.load(Ordering::Relaxed);
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng.store(x, Ordering::Relaxed);
        (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// One attempt as the routing record reports it.
struct AttemptRecord {
    endpoint: usize,
    outcome: &'static str,
    status: Option<u16>,
    elapsed_ms: f64,
    error: Option<String>,
}

/// What the request task accumulates.
#[derive(Default)]
struct RunState {
    attempts: Vec<AttemptRecord>,
    served: Option<usize>,
    first_token_ms: Option<f64>,
    usage: Option<Usage>,
    delivered: bool,
}

/// Emits the terminal event exactly once; on drop without one (panic,
/// runtime shutdown) it emits an internal error.
struct Terminal {
    inner: Arc<Inner>,
    id: u64,
    caller: Protocol,
    model: String,
    emitted: bool,
}

impl Terminal {
    fn emit(&mut self, kind: EventKind, data: String) {
        if self.emitted {
            return;
        }
        self.emitted = true;
        lock(&self.inner.cancels).remove(&self.id);
        self.inner.queue.push(Event {
            request_id: self.id,
            kind,
            data,
        });
        self.inner.active.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        if !self.emitted {
            let body = protocol::error_body(
                self.caller,
                500,
                "internal_error",
                "the request was torn down before it finished",
            );
            let data = json!({
                "type": "error", "status": 500, "error": body,
                "routing": {"model": self.model, "endpoint": null, "attempts": []},
            });
            self.emit(EventKind::Error, data.to_string());
        }
    }
}

/// The final failure of a request.
struct Failure {
    status: u16,
    kind: &'static str,
    message: String,
}

fn failure_from(e: &AttemptError) -> Failure {
    let (status, kind) = match e.kind {
        ErrKind::Status => {
            let s = e.status.unwrap_or(502);
            let kind = match s {
                400 | 413 | 422 => "invalid_request_error",
                401 => "authentication_error",
                403 => "permission_error",
                404 => "not_found_error",
                429 => "rate_limit_error",
                _ => "upstream_error",
            };
            (s, kind)
        }
        ErrKind::FirstTokenTimeout | ErrKind::IdleTimeout | ErrKind::TotalTimeout => {
            (504, "timeout")
        }
        ErrKind::Translation => (400, "invalid_request_error"),
        ErrKind::Cancelled => (499, "cancelled"),
        _ => (502, "upstream_error"),
    };
    Failure {
        status,
        kind,
        message: e.message.clone(),
    }
}

fn routing_record(inner: &Inner, req: &ParsedRequest, st: &RunState, started: Instant) -> Value {
    let c = &inner.catalog;
    let attempts: Vec<Value> = st
        .attempts
        .iter()
        .map(|a| {
            json!({
                "endpoint": c.endpoints[a.endpoint].id,
                "provider": c.provider_of(a.endpoint).slug,
                "outcome": a.outcome,
                "status": a.status,
                "elapsed_ms": a.elapsed_ms,
                "error": a.error,
            })
        })
        .collect();
    let served = st.served.map(|e| &c.endpoints[e]);
    let usage = st.usage.map(|u| {
        json!({
            "prompt_tokens": u.prompt_tokens,
            "completion_tokens": u.completion_tokens,
            "total_tokens": u.prompt_tokens + u.completion_tokens,
            "cached_tokens": u.cached_tokens,
        })
    });
    let cost = match (served, st.usage) {
        (Some(e), Some(u)) => json!(e.cost(u.prompt_tokens, u.completion_tokens)),
        _ => Value::Null,
    };
    json!({
        "model": req.model_slug,
        "endpoint": served.map(|e| e.id.as_str()),
        "provider": st.served.map(|e| c.provider_of(e).slug.as_str()),
        "upstream_model": served.map(|e| e.upstream_model.as_str()),
        "attempts": attempts,
        "first_token_ms": st.first_token_ms,
        "latency_ms": started.elapsed().as_secs_f64() * 1000.0,
        "usage": usage,
        "cost_usd": cost,
    })
}

/// Marks an attempt's health as neutral if its future is dropped mid-way
/// (cancellation, total timeout).
struct InFlight<'a> {
    health: &'a Health,
    endpoint: usize,
    open: bool,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if self.open {
            self.health.failure(
                self.endpoint,
                Instant::now(),
                Verdict::Neutral,
                None,
                "cancelled",
            );
        }
    }
}

async fn attempts(
    inner: &Inner,
    id: u64,
    req: &ParsedRequest,
    st: &mut RunState,
    deadline: Instant,
) -> Result<Option<String>, Failure> {
    let c = &inner.catalog;
    let now = Instant::now();
    let views: Vec<routing::EndpointView> = (0..c.endpoints.len())
        .map(|e| {
            let ep = &c.endpoints[e];
            if !req.candidates.contains(&e) {
                // Not ranked; a cheap placeholder.
                return inner.health.view(e, now, 0.0, 0.0);
            }
            let prior = ep
                .expected_first_token_ms
                .unwrap_or(c.health.default_first_token_ms);
            inner
                .health
                .view(e, now, prior, ep.price_prompt + ep.price_completion)
        })
        .collect();
    let explore = (req.policy == Policy::Latency).then(|| Explore {
        draw: inner.draw(),
        ratio: c.health.explore_ratio,
    });
    let order = routing::plan(&req.candidates, &views, req.policy, now, explore);

    let mut last: Option<Failure> = None;
    for e in order {
        let provider = c.provider_of(e);
        let timeouts = req
            .timeouts
            .over(provider.timeouts)
            .over(c.timeouts)
            .over(DEFAULT_TIMEOUTS);
        let client = match inner.client(timeouts.connect_ms.unwrap_or(5000)) {
            Ok(cl) => cl,
            Err(m) => {
                return Err(Failure {
                    status: 500,
                    kind: "internal_error",
                    message: m,
                })
            }
        };
        let t0 = Instant::now();
        inner.health.begin(e, t0);
        let mut guard = InFlight {
            health: &inner.health,
            endpoint: e,
            open: true,
        };
        st.attempts.push(AttemptRecord {
            endpoint: e,
            outcome: "cancelled",
            status: None,
            elapsed_ms: 0.0,
            error: None,
        });
        let idx = st.attempts.len() - 1;
        let mut ftl: Option<f64> = None;
        let mut on_first = |ms: f64| {
            ftl = Some(ms);
            inner.health.first_token(e, Instant::now(), ms);
        };
        let result = upstream::attempt(AttemptCtx {
            catalog: c,
            endpoint: e,
            client: &client,
            queue: &inner.queue,
            request_id: id,
            caller: req.protocol,
            body: &req.body,
            stream: req.stream,
            include_usage: req.include_usage,
            model_slug: &req.model_slug,
            timeouts,
            deadline,
            delivered: &mut st.delivered,
            on_first_token: &mut on_first,
        })
        .await;
        guard.open = false;
        let elapsed_ms = t0.elapsed().as_secs_f64() * 1000.0;
        let rec = &mut st.attempts[idx];
        rec.elapsed_ms = elapsed_ms;
        match result {
            Ok(ok) => {
                inner.health.success(e, Instant::now(), ok.throughput);
                rec.outcome = "success";
                rec.status = Some(200);
                st.served = Some(e);
                st.first_token_ms = Some(ok.first_token_ms);
                st.usage = ok.usage;
                return Ok(ok.body);
            }
            Err(err) => {
                let verdict = if err.caller_fault || err.kind == ErrKind::Translation {
                    Verdict::Neutral
                } else {
                    Verdict::Failure
                };
                inner
                    .health
                    .failure(e, Instant::now(), verdict, err.retry_after, &err.message);
                rec.outcome = err.kind.as_str();
                rec.status = err.status;
                rec.error = Some(err.message.clone());
                st.first_token_ms = st.first_token_ms.or(ftl);
                let f = failure_from(&err);
                if st.delivered || err.caller_fault || Instant::now() >= deadline {
                    return Err(f);
                }
                last = Some(f);
            }
        }
    }
    Err(last.unwrap_or(Failure {
        status: 502,
        kind: "upstream_error",
        message: "no endpoint to try".into(),
    }))
}

async fn run(inner: Arc<Inner>, id: u64, req: ParsedRequest, mut cancel: oneshot::Receiver<()>) {
    let started = Instant::now();
    let mut term = Terminal {
        inner: inner.clone(),
        id,
        caller: req.protocol,
        model: req.model_slug.clone(),
        emitted: false,
    };
    let total = req
        .timeouts
        .total_ms
        .or(inner.catalog.timeouts.total_ms)
        .or(DEFAULT_TIMEOUTS.total_ms)
        .unwrap_or(600_000);
    let deadline = started + Duration::from_millis(total);
    let mut st = RunState::default();
    let result = {
        let fut = attempts(&inner, id, &req, &mut st, deadline);
        tokio::select! {
            biased;
            _ = &mut cancel => Err(Failure { status: 499, kind: "cancelled", message: "the request was cancelled".into() }),
            _ = tokio::time::sleep_until(deadline.into()) => Err(Failure { status: 504, kind: "timeout", message: format!("the total timeout of {total} ms expired") }),
            r = fut => r,
        }
    };
    // An attempt cut short by cancel or the total timeout.
    if let Some(last) = st.attempts.last_mut() {
        if last.outcome == "cancelled" && last.elapsed_ms == 0.0 {
            last.elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
            if let Err(f) = &result {
                if f.kind == "timeout" {
                    last.outcome = ErrKind::TotalTimeout.as_str();
                }
            }
        }
    }
    let routing = routing_record(&inner, &req, &st, started);
    match result {
        Ok(body) => {
            let mut data = String::with_capacity(body.as_ref().map_or(0, |b| b.len()) + 512);
            data.push_str("{\"type\":\"done\",");
            if let Some(b) = body {
                data.push_str("\"response\":");
                data.push_str(&b);
                data.push(',');
            }
            data.push_str("\"routing\":");
            data.push_str(&routing.to_string());
            data.push('}');
            term.emit(EventKind::Done, data);
        }
        Err(f) => {
            let body = protocol::error_body(req.protocol, f.status, f.kind, &f.message);
            let data =
                json!({"type": "error", "status": f.status, "error": body, "routing": routing});
            term.emit(EventKind::Error, data.to_string());
        }
    }
}
