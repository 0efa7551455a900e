//! The runtime, the request lifecycle, the failover loop and cancellation.
//!
//! Each submitted request runs as one task on the engine's tokio runtime. It
//! ranks the candidates (`routing::plan`), runs attempts (`upstream`) down
//! the list while failover is allowed, and ends with exactly one terminal
//! event. A drop guard emits an error if a task that has started is torn
//! down any other way (a panic, runtime shutdown). The one case without a
//! terminal event is an engine freed from inside another tokio runtime
//! before a task first ran: then nobody can poll for it any more.

mod prefs; // provider preferences
mod reload; // catalog reload
mod run;
mod trace; // spans of a finished request

pub use reload::{ReloadEndpoint, ReloadReport};

use crate::api::{
    Circuit, DataPolicy, EndpointFacts, EndpointStats, Plan, PlanCandidate, PlanError,
    PlanFiltered, PlanModel, Price, SharedStats, Stats,
};
use crate::catalog::Catalog;
use crate::config::{ConfigErrors, HttpVersion, DEFAULT_TIMEOUTS};
use crate::events::{Event, EventQueue};
use crate::health::Health;
use crate::protocol::Protocol;
use crate::request::{self, RequestError};
use crate::upstream::Client;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// The HTTP clients, one per (connect timeout, HTTP version).
type Clients = HashMap<(u64, HttpVersion), Arc<Client>>;

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

/// Chunks buffered per `submit_with` request before the upstream read waits.
const CHANNEL_CHUNKS: usize = 32;

/// Per-request options of `submit_with`.
#[derive(Debug, Clone, Default)]
pub struct SubmitOptions {
    /// Headers sent to Anthropic-protocol endpoints only (the gateway passes
    /// the caller's `anthropic-*` headers). They replace configured headers
    /// of the same name; `anthropic-beta` lists are joined.
    pub forward_headers: Vec<(String, String)>,
    /// The sticky key when the body sets none (`provider.sticky_key`).
    pub sticky_key: Option<String>,
    /// When the request fails with an HTTP error from an endpoint speaking
    /// the caller's protocol, the terminal event's `error` is that
    /// upstream's body unchanged (a gateway passes it on; clients such as
    /// Claude Code match its wording). Otherwise llmux's own envelope.
    pub upstream_error_bodies: bool,
    /// Provider preferences that replace the engine's defaults for this
    /// request (a gateway key's `provider`, already narrowed from them);
    /// the request may narrow them further, never widen them.
    pub provider_defaults: Option<crate::routing::filter::Preferences>,
    /// The W3C `traceparent` the request span is a child of (the
    /// gateway passes its HTTP span's). Ignored without `telemetry.otlp`.
    pub traceparent: Option<String>,
}

/// A request parsed and checked but not sent yet ([`Engine::prepare`]):
/// what it may cost can be reserved before [`Engine::start`] sends it.
/// It holds the catalog generation it was parsed on, so a reload in
/// between changes nothing for it.
pub struct Prepared {
    req: request::ParsedRequest,
    opts: SubmitOptions,
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("req", &self.req)
            .field("generation", &self.inner.generation)
            .finish_non_exhaustive()
    }
}

impl Prepared {
    /// The model the caller asked for.
    pub fn model(&self) -> &str {
        &self.req.requested_model
    }

    /// Whether the request asked for a stream.
    pub fn is_stream(&self) -> bool {
        self.req.stream
    }

    /// Slugs of every model the request may be served by (fallbacks too).
    pub fn models(&self) -> impl Iterator<Item = &str> {
        self.req.routes.iter().map(|r| r.slug.as_str())
    }

    /// The request's worst cost and tokens, priced on the catalog it was
    /// parsed on: see [`crate::budget::estimate`].
    pub fn estimate(&self, default_output: u64) -> crate::budget::Ask {
        crate::budget::estimate(&self.inner.catalog, &self.req, default_output)
    }
}

/// One request's events, from `Engine::submit_with`: its chunks in order,
/// then exactly one terminal event, then `None`. Dropping it before the
/// terminal event cancels the request.
pub struct RequestEvents {
    id: u64,
    inner: Arc<Inner>,
    chunks: Option<tokio::sync::mpsc::Receiver<Event>>,
    terminal: oneshot::Receiver<Event>,
    /// The terminal event, received while chunks may still be buffered.
    stashed: Option<Option<Event>>,
    finished: bool,
    stream: bool,
    model: String,
    served: Arc<run::ServingCell>,
}

/// Who serves a request, known from its first token on (before any chunk):
/// what a gateway can put in a stream's headers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Serving<'a> {
    /// The endpoint id (`provider/name`).
    pub endpoint: &'a str,
    /// The provider slug.
    pub provider: &'a str,
    /// The serving attempt's place among the request's attempts (1-based),
    /// as in the routing record: 2 after one failover.
    pub attempts: usize,
    /// The serving attempt's first-token latency, ms.
    pub first_token_ms: f64,
}

impl RequestEvents {
    /// The request id (as `submit` would have returned it).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The request asked for a stream.
    pub fn is_stream(&self) -> bool {
        self.stream
    }

    /// The model slug the request asked for (without `:provider`).
    pub fn model(&self) -> &str {
        &self.model
    }

    /// The endpoint id and provider slug serving the request, once its
    /// first token arrived (so always by the first chunk).
    pub fn serving(&self) -> Option<Serving<'_>> {
        let (e, attempts, first_token_ms) = self.served.get()?;
        let c = &self.inner.catalog;
        Some(Serving {
            endpoint: c.endpoints[e].id.as_str(),
            provider: c.provider_of(e).slug.as_str(),
            attempts,
            first_token_ms,
        })
    }

    /// The next event; `None` after the terminal one.
    pub async fn recv(&mut self) -> Option<Event> {
        loop {
            // Chunks are all sent before the terminal event: drain them first.
            if let Some(Ok(ev)) = self.chunks.as_mut().map(|rx| rx.try_recv()) {
                return Some(ev);
            }
            if let Some(t) = self.stashed.take() {
                self.finished = true;
                return t;
            }
            if self.finished {
                return None;
            }
            match &mut self.chunks {
                Some(rx) => tokio::select! {
                    biased;
                    c = rx.recv() => match c {
                        Some(ev) => return Some(ev),
                        None => self.chunks = None,
                    },
                    t = &mut self.terminal => self.stashed = Some(t.ok()),
                },
                None => {
                    self.finished = true;
                    return (&mut self.terminal).await.ok();
                }
            }
        }
    }

    /// Cancels the request (it ends with a `cancelled` terminal event).
    pub fn cancel(&self) -> bool {
        match lock(&self.inner.cancels).remove(&self.id) {
            Some(tx) => tx.send(()).is_ok(),
            None => false,
        }
    }
}

impl Drop for RequestEvents {
    fn drop(&mut self) {
        if !self.finished {
            self.cancel();
        }
    }
}

/// One generation of the engine: a catalog and its health, plus handles on
/// the parts every generation shares (queue, ids, cancels, counters). A
/// reload builds the next generation and swaps it in; requests hold the
/// generation they started on until they end.
struct Inner {
    catalog: Catalog,
    health: Health,
    queue: Arc<EventQueue>,
    /// One HTTP client (connection pool) per connect timeout and HTTP
    /// version; kept across reloads while the proxy and CA file are the
    /// same.
    clients: Arc<Mutex<Clients>>,
    cancels: Arc<Mutex<HashMap<u64, oneshot::Sender<()>>>>,
    next_id: Arc<AtomicU64>,
    rng: AtomicU64,
    active: Arc<AtomicUsize>,
    closing: Arc<AtomicBool>,
    /// Sticky key -> (endpoint identity `model|endpoint id`, last use):
    /// by identity, so a reload keeps it.
    sticky: Arc<Mutex<StickyMap>>,
    /// Endpoint identity (`model|endpoint id`) -> index in this catalog.
    index: HashMap<Arc<str>, usize>,
    /// `index`'s keys by endpoint index.
    identity: Vec<Arc<str>>,
    /// 0 for the first catalog, +1 per reload.
    generation: u64,
    /// Reloads applied so far (engine-wide).
    reloads: Arc<AtomicU64>,
    /// Set when a reload replaced this generation: its background tasks end.
    retired: Arc<tokio::sync::Notify>,
    retired_flag: AtomicBool,
    /// The store of `user_budgets`, when configured: engine-wide, so its
    /// ledgers survive a reload (every generation shares this `Arc`).
    budgets: Option<Arc<crate::budget::Budgets>>,
    /// The trace exporter, when `telemetry.otlp` is configured: one for the
    /// engine's life, carried into every generation.
    tracer: Option<Arc<crate::telemetry::Tracer>>,
}

/// Sticky key -> (endpoint identity, last use).
type StickyMap = HashMap<String, (Arc<str>, Instant)>;

/// The catalog of one generation, kept alive while borrowed
/// (`Engine::catalog`).
pub struct CatalogRef(Arc<Inner>);

impl std::fmt::Debug for CatalogRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.catalog.fmt(f)
    }
}

impl std::ops::Deref for CatalogRef {
    type Target = Catalog;
    fn deref(&self) -> &Catalog {
        &self.0.catalog
    }
}

/// `export_health`'s document.
#[derive(serde::Serialize)]
struct HealthFileOut<'a> {
    version: u32,
    endpoints: Vec<HealthEntryOut<'a>>,
}

#[derive(serde::Serialize)]
struct HealthEntryOut<'a> {
    model: &'a str,
    endpoint: &'a str,
    #[serde(flatten)]
    health: crate::health::HealthExport,
}

/// What `import_health` reads: entries are checked one by one so an error
/// names the entry and field.
#[derive(serde::Deserialize)]
struct HealthFileIn {
    endpoints: Vec<Value>,
}

/// Which endpoint an entry is about; entries naming none are skipped.
#[derive(serde::Deserialize)]
struct HealthKey {
    model: Option<String>,
    endpoint: Option<String>,
}

/// The router. Thread-safe: every method takes `&self`.
pub struct Engine {
    /// The current generation; swapped whole by `reload`.
    current: std::sync::RwLock<Arc<Inner>>,
    /// One reload at a time.
    reloading: Mutex<()>,
    runtime: Option<tokio::runtime::Runtime>,
    /// `worker_threads: 0`: a current-thread runtime that only runs while
    /// a host thread is inside `poll` (the host drives the I/O).
    host_driven: bool,
    /// Host-driven: requests submitted while no poll drives the runtime.
    parked: Mutex<Parked>,
}

/// A request task not yet spawned.
type Task = Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// Host-driven mode. Spawning into the runtime from outside it writes to
/// its wake-up descriptor (a system call, and one more `epoll_wait` turn
/// when the host polls); a request submitted while no poll drives the
/// runtime waits here instead and the next poll spawns it from inside.
#[derive(Default)]
struct Parked {
    /// Polls inside the runtime now: a request submitted meanwhile is
    /// spawned at once (and wakes the poll), as nobody would take it here.
    driving: usize,
    tasks: Vec<Task>,
}

impl Parked {
    /// Enters a poll that drives the runtime: the tasks to spawn.
    fn enter(m: &Mutex<Parked>) -> Vec<Task> {
        let mut p = lock(m);
        p.driving += 1;
        std::mem::take(&mut p.tasks)
    }

    fn leave(m: &Mutex<Parked>) {
        lock(m).driving -= 1;
    }
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
        let host_driven = catalog.worker_threads == 0;
        let runtime = if host_driven {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
        } else {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(catalog.worker_threads)
                .thread_name("llmux-worker")
                .enable_all()
                .build()
        }
        .map_err(|e| EngineError::Runtime(e.to_string()))?;
        let budgets = user_budget_store(&catalog)?;
        let tracer = match catalog.telemetry.clone() {
            Some(s) => Some(Arc::new(
                crate::telemetry::Tracer::start(s).map_err(EngineError::Runtime)?,
            )),
            None => None,
        };
        let (mut inner, shared_rx) =
            Inner::build(catalog, None, budgets).map_err(EngineError::Runtime)?;
        inner.tracer = tracer;
        let inner = Arc::new(inner);
        reload::start_tasks(&runtime, &inner, shared_rx);
        Ok(Engine {
            current: std::sync::RwLock::new(inner),
            reloading: Mutex::new(()),
            runtime: Some(runtime),
            host_driven,
            parked: Mutex::new(Parked::default()),
        })
    }

    /// The trace exporter, when `telemetry.otlp` is configured (the
    /// gateway records its HTTP spans through it). One for the engine's
    /// life: a reload keeps it.
    pub fn tracer(&self) -> Option<Arc<crate::telemetry::Tracer>> {
        self.inner().tracer.clone()
    }

    /// The catalog new requests are routed on now (a reload swaps it;
    /// requests already running keep theirs).
    pub fn catalog(&self) -> CatalogRef {
        CatalogRef(self.inner())
    }

    /// The current generation: catalog, health and the engine-wide parts.
    fn inner(&self) -> Arc<Inner> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Validates and starts a request; returns its id. Never blocks on I/O.
    pub fn submit(&self, protocol: Protocol, body: &[u8]) -> Result<u64, SubmitError> {
        self.submit_traced(protocol, body, None)
    }

    /// [`Engine::submit`] with the W3C trace context its request span is a
    /// child of (the C ABI's `llmux_submit_traced`; parse a `traceparent`
    /// with [`crate::telemetry::TraceContext::parse`]). Ignored without
    /// `telemetry.otlp`.
    pub fn submit_traced(
        &self,
        protocol: Protocol,
        body: &[u8],
        parent: Option<crate::telemetry::TraceContext>,
    ) -> Result<u64, SubmitError> {
        let inner = self.inner();
        if inner.closing.load(Ordering::Acquire) {
            return Err(SubmitError::ShuttingDown);
        }
        let Some(rt) = &self.runtime else {
            return Err(SubmitError::ShuttingDown);
        };
        let req = request::parse(&inner.catalog, protocol, body).map_err(SubmitError::Request)?;
        let id = inner.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        lock(&inner.cancels).insert(id, tx);
        inner.active.fetch_add(1, Ordering::AcqRel);
        let channel = run::Channel {
            traceparent: parent,
            ..run::Channel::default()
        };
        let task = run::run(inner, id, req, rx, channel);
        if self.host_driven {
            let mut p = lock(&self.parked);
            if p.driving == 0 {
                p.tasks.push(Box::pin(task));
                return Ok(id);
            }
        }
        rt.spawn(task);
        Ok(id)
    }

    /// Like `submit`, but the request's events come on its own channel
    /// (`RequestEvents`) instead of the shared poll queue. Dropping the
    /// receiver before the terminal event cancels the request (its upstream
    /// connection closes). Chunks wait in a small bounded buffer, so a slow
    /// reader slows the upstream read rather than growing memory.
    pub fn submit_with(
        &self,
        protocol: Protocol,
        body: &[u8],
        opts: SubmitOptions,
    ) -> Result<RequestEvents, SubmitError> {
        let p = self.prepare(protocol, body, opts)?;
        self.start(p)
    }

    /// Parses and checks a request without sending it (`submit_with` in
    /// two steps, for a caller that reserves a budget in between). The
    /// request is bound to the current catalog generation here.
    pub fn prepare(
        &self,
        protocol: Protocol,
        body: &[u8],
        mut opts: SubmitOptions,
    ) -> Result<Prepared, SubmitError> {
        let inner = self.inner();
        if inner.closing.load(Ordering::Acquire) || self.runtime.is_none() {
            return Err(SubmitError::ShuttingDown);
        }
        let cat = &inner.catalog;
        let defaults = opts.provider_defaults.take();
        let mut req = match &defaults {
            Some(d) => request::parse_with_defaults(cat, protocol, body, d),
            None => request::parse(cat, protocol, body),
        }
        .map_err(SubmitError::Request)?;
        if req.sticky_key.is_none() {
            req.sticky_key = opts.sticky_key.take();
        }
        Ok(Prepared { req, opts, inner })
    }

    /// Sends a prepared request (on the generation it was prepared on).
    pub fn start(&self, p: Prepared) -> Result<RequestEvents, SubmitError> {
        let Prepared { req, opts, inner } = p;
        if inner.closing.load(Ordering::Acquire) {
            return Err(SubmitError::ShuttingDown);
        }
        let Some(rt) = &self.runtime else {
            return Err(SubmitError::ShuttingDown);
        };
        let id = inner.next_id.fetch_add(1, Ordering::Relaxed);
        let (stream, model) = (req.stream, req.requested_model.clone());
        let (cancel_tx, cancel_rx) = oneshot::channel();
        let (chunk_tx, chunk_rx) = tokio::sync::mpsc::channel(CHANNEL_CHUNKS);
        let (term_tx, term_rx) = oneshot::channel();
        lock(&inner.cancels).insert(id, cancel_tx);
        inner.active.fetch_add(1, Ordering::AcqRel);
        let served = Arc::new(run::ServingCell::default());
        let channel = run::Channel {
            chunks: Some(chunk_tx),
            terminal: Some(term_tx),
            headers: opts.forward_headers,
            served: Some(served.clone()),
            upstream_error_bodies: opts.upstream_error_bodies,
            traceparent: opts
                .traceparent
                .as_deref()
                .and_then(crate::telemetry::TraceContext::parse),
        };
        rt.spawn(run::run(inner.clone(), id, req, cancel_rx, channel));
        Ok(RequestEvents {
            id,
            inner,
            chunks: Some(chunk_rx),
            terminal: term_rx,
            stashed: None,
            finished: false,
            stream,
            model,
            served,
        })
    }

    /// Counts a Messages body's input tokens exactly, when its model (or
    /// pinned provider) has an Anthropic-protocol endpoint with a closed
    /// circuit: the body (model replaced by the endpoint's upstream model,
    /// llmux's own fields removed) goes to that endpoint's
    /// `/v1/messages/count_tokens`, and the upstream's status and body come
    /// back on the receiver. `Ok(None)`: no such endpoint.
    #[allow(clippy::type_complexity)]
    pub fn count_tokens(
        &self,
        body: &[u8],
        forward_headers: Vec<(String, String)>,
    ) -> Result<Option<oneshot::Receiver<Result<(u16, String), String>>>, SubmitError> {
        let Some(rt) = &self.runtime else {
            return Err(SubmitError::ShuttingDown);
        };
        let inner = self.inner();
        let req = request::parse(&inner.catalog, Protocol::Anthropic, body)
            .map_err(SubmitError::Request)?;
        let c = &inner.catalog;
        let now = Instant::now();
        let Some(e) = req.routes[0].candidates.iter().copied().find(|&e| {
            c.provider_of(e).protocol == Protocol::Anthropic
                && inner.health.snapshot_state(e, now).circuit == Circuit::Closed
        }) else {
            return Ok(None);
        };
        let bytes = req
            .body
            .splice(&c.endpoints[e].upstream_model, false, false);
        let inner = inner.clone();
        let (tx, rx) = oneshot::channel();
        rt.spawn(async move {
            let c = &inner.catalog;
            let provider = c.provider_of(e);
            let t = provider.timeouts.over(c.timeouts).over(DEFAULT_TIMEOUTS);
            let deadline = tokio::time::Instant::now()
                + Duration::from_millis(t.first_token_ms.unwrap_or(60_000));
            let r = match inner.client(t.connect_ms.unwrap_or(5000), provider.http) {
                Ok(client) => {
                    crate::upstream::count_tokens(
                        &client,
                        provider,
                        bytes,
                        &forward_headers,
                        deadline,
                    )
                    .await
                }
                Err(m) => Err(m),
            };
            let _ = tx.send(r);
        });
        Ok(Some(rx))
    }

    /// The ranked candidates a request would try now, and why, without
    /// sending anything (`llmux route`): per model, each endpoint's latency
    /// cost, price, throughput, in-flight count, circuit and availability.
    /// Exploration is left out (it is a random draw per request).
    pub fn plan(&self, protocol: Protocol, body: &[u8]) -> Result<Plan, SubmitError> {
        let inner = &self.inner();
        let mut req =
            request::parse(&inner.catalog, protocol, body).map_err(SubmitError::Request)?;
        let now = Instant::now();
        prefs::apply(inner, &mut req, now);
        let sticky = req
            .sticky_key
            .as_deref()
            .and_then(|k| inner.sticky_get(k, now));
        let models = req
            .routes
            .iter()
            .map(|route| {
                let views = run::candidate_views(inner, route, now, req.stream);
                let order = crate::routing::plan(
                    &route.candidates,
                    &views,
                    route.policy,
                    now,
                    None,
                    sticky,
                );
                // soft misses last; allow_fallbacks: false keeps one.
                let available = crate::routing::filter::available_at(&views, now);
                let order = crate::routing::filter::finish(
                    order,
                    &route.demoted,
                    &available,
                    req.prefs.first_choice_only(),
                );
                PlanModel {
                    model: route.slug.clone(),
                    policy: format!("{:?}", route.policy).to_lowercase(),
                    candidates: order
                        .iter()
                        .enumerate()
                        .map(|(rank, &e)| inner.plan_candidate(rank + 1, e, &views[e], now, sticky))
                        .collect(),
                }
            })
            .collect();
        let c = &inner.catalog;
        let filtered = req
            .filtered
            .iter()
            .map(|f| PlanFiltered {
                endpoint: c.endpoints[f.endpoint].id.clone(),
                reason: f.reason.clone(),
                removed: f.removed,
            })
            .collect();
        let error = req.routes.is_empty().then(|| PlanError {
            error_kind: "no_endpoint_matches".into(),
            message: prefs::no_match_message(inner, &req),
        });
        Ok(Plan {
            requested_model: req.requested_model,
            models,
            filtered,
            error,
        })
    }

    /// [`Engine::plan`] as JSON.
    pub fn explain(&self, protocol: Protocol, body: &[u8]) -> Result<Value, SubmitError> {
        let plan = self.plan(protocol, body)?;
        Ok(serde_json::to_value(plan).unwrap_or_default())
    }

    /// Cancels an in-flight request; it ends with an error event of type
    /// `cancelled`. False when the id is unknown or already finished.
    pub fn cancel(&self, id: u64) -> bool {
        match lock(&self.inner().cancels).remove(&id) {
            Some(tx) => tx.send(()).is_ok(),
            None => false,
        }
    }

    /// Takes up to `max` events, waiting up to `timeout` (`None`: until an
    /// event or a wakeup; zero: never blocks).
    ///
    /// Host-driven (`worker_threads: 0`): the engine's I/O and request tasks
    /// run inside this call, on the caller's thread, until an event or a
    /// wakeup is ready or `timeout` passes; a zero timeout advances the I/O
    /// that is ready and returns. Called from inside a tokio runtime it
    /// cannot drive (tokio forbids nesting) and only takes queued events.
    pub fn poll(&self, max: usize, timeout: Option<Duration>, sink: impl FnMut(Event)) -> usize {
        let inner = self.inner();
        let queue = &inner.queue;
        match &self.runtime {
            Some(rt) if self.host_driven && tokio::runtime::Handle::try_current().is_err() => {
                if max > 0 && !queue.ready() {
                    let tasks = Parked::enter(&self.parked);
                    drive(rt, tasks, queue, &inner.active, timeout);
                    Parked::leave(&self.parked);
                }
                let n = queue.poll(max, Some(Duration::ZERO), sink);
                if n > 0 && queue.ready() {
                    queue.nudge();
                }
                n
            }
            _ => queue.poll(max, timeout, sink),
        }
    }

    /// Convenience: poll into a vector.
    pub fn poll_vec(&self, max: usize, timeout: Option<Duration>) -> Vec<Event> {
        let mut v = Vec::new();
        self.poll(max, timeout, |e| v.push(e));
        v
    }

    /// Makes a blocked `poll` return at once.
    pub fn wakeup(&self) {
        self.inner().queue.wakeup();
    }

    /// A file descriptor that is readable while events are waiting.
    pub fn fd(&self) -> Option<i32> {
        self.inner().queue.fd()
    }

    /// Requests started and not yet terminated.
    pub fn in_flight(&self) -> usize {
        self.inner().active.load(Ordering::Acquire)
    }

    /// Health and prices of every endpoint, the engine's load and shared
    /// health's state.
    pub fn stats(&self) -> Stats {
        let inner = &self.inner();
        let now = Instant::now();
        let shared = inner.health.shared();
        Stats {
            endpoints: (0..inner.catalog.endpoints.len())
                .map(|e| inner.endpoint_stats(e, now))
                .collect(),
            requests_in_flight: inner.active.load(Ordering::Acquire),
            events_queued: inner.queue.len(),
            reloads: inner.reloads.load(Ordering::Acquire),
            generation: inner.generation,
            shared: SharedStats {
                enabled: shared.is_some(),
                status: shared.map(|o| o.stats(now)),
            },
            models: inner
                .catalog
                .models
                .iter()
                .map(|m| crate::api::ModelStats {
                    slug: m.slug.clone(),
                    aliases: m.aliases.clone(),
                })
                .collect(),
            users: user_usage(inner),
        }
    }

    /// [`Engine::stats`] as JSON (`llmux_stats`).
    pub fn stats_json(&self) -> String {
        serde_json::to_string(&self.stats()).unwrap_or_default()
    }

    /// Health of every endpoint as JSON that `import_health` accepts, so a
    /// restarted app starts warm. Times are stored as "time left".
    pub fn export_health(&self) -> String {
        let now = Instant::now();
        let inner = self.inner();
        let c = &inner.catalog;
        let endpoints: Vec<HealthEntryOut<'_>> = c
            .endpoints
            .iter()
            .enumerate()
            .map(|(i, e)| HealthEntryOut {
                model: &c.models[e.model].slug,
                endpoint: &e.id,
                health: inner.health.export_state(i, now),
            })
            .collect();
        serde_json::to_string(&HealthFileOut {
            version: 1,
            endpoints,
        })
        .unwrap_or_default()
    }

    /// Restores health exported by `export_health`; entries whose model and
    /// endpoint are missing or not in this catalog are skipped. Returns how many were
    /// restored. Nothing is restored when any entry is malformed (a field of
    /// the wrong type, a negative latency): the error names it.
    pub fn import_health(&self, json: &str) -> Result<usize, String> {
        let file: HealthFileIn =
            serde_json::from_str(json).map_err(|e| format!("health JSON is malformed: {e}"))?;
        let inner = self.inner();
        let c = &inner.catalog;
        let mut restore = Vec::new();
        for (i, item) in file.endpoints.iter().enumerate() {
            let key: HealthKey =
                serde_json::from_value(item.clone()).map_err(|e| format!("endpoints[{i}]: {e}"))?;
            let state = crate::health::HealthExport::from_json(item)
                .map_err(|e| format!("endpoints[{i}].{e}"))?;
            let (Some(m), Some(id)) = (key.model, key.endpoint) else {
                continue;
            };
            let Some(model) = c.model(&m) else {
                continue;
            };
            if let Some(&e) = c.models[model]
                .endpoints
                .iter()
                .find(|&&e| c.endpoints[e].id == id)
            {
                restore.push((e, state));
            }
        }
        let now = Instant::now();
        for (e, state) in &restore {
            inner.health.import_state(*e, now, state);
        }
        Ok(restore.len())
    }

    /// Cancels every request, waits for them to end, and stops the runtime.
    /// Called by `Drop`.
    pub fn shutdown(&mut self) {
        let inner = self.inner();
        inner.closing.store(true, Ordering::Release);
        let senders: Vec<_> = lock(&inner.cancels).drain().map(|(_, tx)| tx).collect();
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
        if self.host_driven {
            // Nobody else runs the tasks: let them end (cancelled) here.
            let active = &inner.active;
            let tasks = Parked::enter(&self.parked);
            rt.block_on(async {
                tasks.into_iter().for_each(|t| drop(tokio::spawn(t)));
                while active.load(Ordering::Acquire) > 0 && Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            });
        }
        while inner.active.load(Ordering::Acquire) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        if let Some(o) = inner.health.shared() {
            o.release();
        }
        rt.shutdown_timeout(Duration::from_secs(1));
        // The requests' spans are queued; export them.
        if let Some(t) = &inner.tracer {
            t.shutdown();
        }
    }
}

/// Runs a host-driven engine's runtime on this thread until an event or a
/// wakeup is ready or `timeout` passes (`None`: no limit), then once more
/// through the ready I/O while requests are still in flight (`active`;
/// with none left there is nothing to batch, and the two turns would only
/// add two `epoll_wait` calls to the last request's latency). A zero
/// timeout yields twice: once to poll the I/O driver without blocking,
/// once to run the tasks that I/O woke.
fn drive(
    rt: &tokio::runtime::Runtime,
    tasks: Vec<Task>,
    queue: &EventQueue,
    active: &AtomicUsize,
    timeout: Option<Duration>,
) {
    // Spawned from inside the runtime: onto its local queue, no wake-up.
    let spawn_all = move || tasks.into_iter().for_each(|t| drop(tokio::spawn(t)));
    if timeout == Some(Duration::ZERO) {
        rt.block_on(async {
            spawn_all();
            tokio::task::yield_now().await;
            tokio::task::yield_now().await;
        });
        return;
    }
    let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
    rt.block_on(async {
        spawn_all();
        let sleep = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
                None => std::future::pending().await,
            }
        };
        let ready = async {
            while !queue.ready() {
                queue.changed().await;
            }
            if active.load(Ordering::Acquire) == 0 {
                return;
            }
            // Batch: run the tasks woken with this one and the I/O that is
            // ready now, so one poll returns every event due.
            tokio::task::yield_now().await;
            tokio::task::yield_now().await;
        };
        tokio::select! {
            _ = sleep => {},
            _ = ready => {},
        }
    });
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl Inner {
    fn client(&self, connect_ms: u64, http: HttpVersion) -> Result<Arc<Client>, String> {
        let mut map = lock(&self.clients);
        if let Some(c) = map.get(&(connect_ms, http)) {
            return Ok(c.clone());
        }
        let connect = Duration::from_millis(connect_ms);
        let cat = &self.catalog;
        let c = Arc::new(Client::new(
            connect,
            http,
            cat.proxy.as_deref(),
            &cat.upstream_ca,
        )?);
        map.insert((connect_ms, http), c.clone());
        Ok(c)
    }

    /// One endpoint's line in [`Stats`].
    fn endpoint_stats(&self, e: usize, now: Instant) -> EndpointStats {
        let c = &self.catalog;
        let ep = &c.endpoints[e];
        let p = c.provider_of(e);
        EndpointStats {
            health: self.health.snapshot_state(e, now),
            id: ep.id.clone(),
            model: c.models[ep.model].slug.clone(),
            provider: p.slug.clone(),
            protocol: p.protocol,
            upstream_model: ep.upstream_model.clone(),
            price: price_of(ep),
            context_window: ep.context_window,
            facts: facts_of(ep),
            shared: self.health.shared().map(|o| o.endpoint_stats(e, now)),
        }
    }

    /// One candidate's line in a [`Plan`].
    fn plan_candidate(
        &self,
        rank: usize,
        e: usize,
        v: &crate::routing::EndpointView,
        now: Instant,
        sticky: Option<usize>,
    ) -> PlanCandidate {
        let c = &self.catalog;
        let ep = &c.endpoints[e];
        let p = c.provider_of(e);
        PlanCandidate {
            rank,
            endpoint: ep.id.clone(),
            provider: p.slug.clone(),
            protocol: p.protocol,
            upstream_model: ep.upstream_model.clone(),
            first_token_ms: v.first_token_ms,
            prior_ms: v.prior_ms,
            in_flight: v.in_flight,
            latency_cost_ms: v.latency_cost(),
            price: price_of(ep),
            throughput_tps: v.throughput,
            circuit: self.health.snapshot_state(e, now).circuit,
            available: v.available(now),
            sticky: sticky == Some(e),
            facts: facts_of(ep),
        }
    }

    fn sticky_get(&self, key: &str, now: Instant) -> Option<usize> {
        let ttl = Duration::from_millis(self.catalog.sticky.ttl_ms);
        lock(&self.sticky)
            .get(key)
            .filter(|(_, t)| now.saturating_duration_since(*t) < ttl)
            .and_then(|(id, _)| self.index.get(id).copied())
    }

    fn sticky_put(&self, key: &str, e: usize, now: Instant) {
        let cfg = self.catalog.sticky;
        let mut map = lock(&self.sticky);
        map.insert(key.to_owned(), (self.identity[e].clone(), now));
        if map.len() > cfg.capacity {
            let ttl = Duration::from_millis(cfg.ttl_ms);
            map.retain(|_, (_, t)| now.saturating_duration_since(*t) < ttl);
            if map.len() > cfg.capacity {
                // Forget the oldest tenth at once, so this scan is rare.
                let mut ages: Vec<Instant> = map.values().map(|(_, t)| *t).collect();
                ages.sort_unstable();
                let cut = ages[(ages.len() / 10).min(ages.len() - 1)];
                map.retain(|_, (_, t)| *t > cut);
            }
        }
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

/// Active health probing: endpoints whose open circuit has expired get a
/// one-token request instead of waiting for real traffic to probe them.
async fn probe_loop(inner: Arc<Inner>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if inner.retired_flag.load(Ordering::Acquire) {
            return; // a reload replaced this catalog
        }
        for e in 0..inner.catalog.endpoints.len() {
            if inner.health.probe_due(e, Instant::now()) {
                tokio::spawn(probe(inner.clone(), e));
            }
        }
    }
}

async fn probe(inner: Arc<Inner>, e: usize) {
    use crate::health::Verdict;
    use crate::upstream::ErrKind;
    let c = &inner.catalog;
    let provider = c.provider_of(e);
    let mut body = serde_json::Map::new();
    body.insert(
        "messages".into(),
        json!([{"role": "user", "content": "ping"}]),
    );
    body.insert("max_tokens".into(), json!(1));
    let body = crate::protocol::splice::Body::from_map(&body);
    let timeouts = provider.timeouts.over(c.timeouts).over(DEFAULT_TIMEOUTS);
    let Ok(client) = inner.client(timeouts.connect_ms.unwrap_or(5000), provider.http) else {
        return;
    };
    if !inner.health.try_begin(e, Instant::now(), None) {
        return;
    }
    // Released as neutral if this task is dropped or panics.
    let mut guard = run::InFlight {
        health: &inner.health,
        endpoint: e,
        open: true,
        timed_out: None,
    };
    let winner = std::sync::atomic::AtomicUsize::new(0);
    let on_first = |_ms: f64| {};
    let r = crate::upstream::attempt(crate::upstream::AttemptCtx {
        catalog: c,
        endpoint: e,
        client: &client,
        queue: &inner.queue,
        request_id: 0,
        caller: provider.protocol,
        body: &body,
        stream: false,
        include_usage: false,
        model_slug: &c.models[c.endpoints[e].model].slug,
        timeouts,
        deadline: tokio::time::Instant::now()
            + Duration::from_millis(timeouts.first_token_ms.unwrap_or(10_000)),
        winner: &winner,
        slot: 1,
        on_first_token: &on_first,
        chunks: None,
        forward_headers: &[],
        bytes: None,
    })
    .await;
    guard.open = false;
    let now = Instant::now();
    match r {
        // Any HTTP answer shows the endpoint is up, even one refusing the
        // probe itself (a 400 for `max_tokens`, an empty completion).
        Ok(_) => inner.health.success(e, now, None),
        Err(err)
            if err.caller_fault
                || (err.kind == ErrKind::UpstreamError
                    && err.message.starts_with("empty completion")) =>
        {
            inner.health.success(e, now, None)
        }
        Err(err) => inner.health.failure(
            e,
            now,
            Verdict::Failure,
            err.retry_after,
            &format!("probe: {}", err.message),
        ),
    }
}

/// An endpoint's prices as the API shows them.
fn price_of(ep: &crate::catalog::Endpoint) -> Price {
    Price {
        prompt: ep.price_prompt,
        completion: ep.price_completion,
        request: ep.price_request,
        image: ep.price_image,
    }
}

/// The facts provider preferences filter on, as the API shows them.
fn facts_of(ep: &crate::catalog::Endpoint) -> EndpointFacts {
    EndpointFacts {
        region: ep.region.clone(),
        quantization: ep.quantization.clone(),
        data_policy: ep.data_policy.map(|d| DataPolicy {
            training: d.training,
            retention_days: d.retention_days,
            zdr: d.zdr,
        }),
        supported_parameters: ep
            .supported_parameters
            .iter()
            .map(|s| (*s).to_owned())
            .collect(),
    }
}

/// Usage of every user seen (`user_budgets`), for [`Stats::users`].
fn user_usage(inner: &Inner) -> Vec<crate::api::UserUsage> {
    let (Some(b), Some(cfg)) = (&inner.budgets, &inner.catalog.user_budgets) else {
        return Vec::new();
    };
    let crate::budget::Store::Local(store) = &b.store else {
        return Vec::new();
    };
    let now = crate::budget::now_ms();
    let mut out: Vec<_> = store
        .subjects()
        .into_iter()
        .filter_map(|s| {
            let p = cfg.policy(&s)?;
            let u = store.usage(&s, &p.limits, now);
            Some(crate::api::UserUsage::new(&s, &p.limits, &u))
        })
        .collect();
    out.sort_by(|a, b| a.user.cmp(&b.user));
    out
}

/// The local store of `user_budgets` (journaled when it names a file).
/// Opened once per engine: a reload keeps it (see `reload.rs`).
pub(super) fn user_budget_store(
    catalog: &Catalog,
) -> Result<Option<Arc<crate::budget::Budgets>>, EngineError> {
    use crate::budget::{local::LocalStore, Budgets, FailMode, Store};
    let Some(u) = &catalog.user_budgets else {
        return Ok(None);
    };
    let store = match &u.file {
        Some(f) => LocalStore::open(f, u.fsync).map_err(|message| {
            EngineError::Config(ConfigErrors(vec![crate::config::ConfigError {
                path: "user_budgets.file".into(),
                message,
            }]))
        })?,
        None => LocalStore::memory(),
    };
    let b = Budgets::new(Store::Local(store), FailMode::Closed, FailMode::Open);
    Ok(Some(Arc::new(b)))
}
