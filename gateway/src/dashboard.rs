//! The live dashboard: `GET /dashboard` (a page, its script and its
//! style, embedded in the binary) and `GET /api/dashboard/state` (the JSON
//! the page polls), plus the small memory behind it: a bounded ring of
//! recent requests with their routing decisions, per-endpoint latency
//! samples for percentiles, a few minutes of per-bucket counters for the
//! charts, and spend per caller key.
//!
//! The page, script and style carry no data and are served without a key;
//! the state answers under the API's key rules (no key on loopback without
//! `gateway.keys`; otherwise `Authorization: Bearer`, which the page sends
//! from a key typed into its login form and kept in `sessionStorage`).
//! Everything is served with a strict Content-Security-Policy: no inline
//! script, no external asset.

use crate::error::{json_response, GatewayError};
use crate::server::{authorize, submit_error, App};
use axum::extract::{Path as UrlPath, Query, State as Ext};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use llmux::{EndpointStats, Engine, PlanCandidate, Protocol, RoutingRecord};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::Mutex;
use std::time::SystemTime;

const PAGE: &str = include_str!("../assets/dashboard.html");
const SCRIPT: &str = include_str!("../assets/dashboard.js");
const STYLE: &str = include_str!("../assets/dashboard.css");

/// The page's policy: its own script and style, fetches to itself, nothing
/// inline, no frames.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
    img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; \
    form-action 'self'; frame-ancestors 'none'";

/// Recent requests kept for the page.
const RECENT: usize = 100;
/// Latency samples kept per endpoint for percentiles.
const SAMPLES: usize = 256;
/// Chart buckets: `BUCKETS` of `BUCKET_MS` (five minutes).
pub const BUCKET_MS: u64 = 2_000;
const BUCKETS: usize = 150;

/// An embedded asset: (content type, body) for a file name of the page.
pub fn asset(name: &str) -> Option<(&'static str, &'static str)> {
    match name {
        "" | "index.html" => Some(("text/html; charset=utf-8", PAGE)),
        "app.js" => Some(("text/javascript; charset=utf-8", SCRIPT)),
        "app.css" => Some(("text/css; charset=utf-8", STYLE)),
        _ => None,
    }
}

/// One attempt of a recent request.
#[derive(Clone, Debug, Serialize)]
pub struct AttemptView {
    pub endpoint: String,
    pub outcome: String,
    pub status: Option<u16>,
    pub elapsed_ms: f64,
    pub error: Option<String>,
}

/// An endpoint the request's provider preferences passed over, and why.
#[derive(Clone, Debug, Serialize)]
pub struct SkippedView {
    pub endpoint: String,
    pub reason: String,
}

/// One finished request as the page lists it.
#[derive(Clone, Debug, Serialize)]
pub struct RecentRequest {
    pub id: u64,
    /// Unix time it finished, ms.
    pub at_ms: u64,
    pub model: String,
    /// The caller key's name (`-` without keys), never the key.
    pub key: String,
    pub stream: bool,
    pub status: u16,
    pub outcome: String,
    pub duration_ms: f64,
    /// Who served; `None` when nobody did.
    pub endpoint: Option<String>,
    pub first_token_ms: Option<f64>,
    pub cost_usd: Option<f64>,
    pub attempts: Vec<AttemptView>,
    /// More than one attempt: the first endpoint failed (or a hedge ran).
    pub failover: bool,
    pub skipped: Vec<SkippedView>,
}

/// What the gateway hands the board when a request ends.
pub struct Finished<'a> {
    pub id: u64,
    pub now_ms: u64,
    pub model: &'a str,
    pub key: &'a str,
    pub stream: bool,
    pub status: u16,
    pub outcome: &'a str,
    pub duration_ms: f64,
    pub routing: Option<&'a RoutingRecord<'a>>,
}

/// The counters of one chart bucket.
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq)]
pub struct Bucket {
    /// Unix time the bucket starts, ms.
    pub t_ms: u64,
    pub requests: u64,
    pub errors: u64,
    pub failovers: u64,
    pub first_token_sum_ms: f64,
    pub first_token_count: u64,
    pub first_token_max_ms: f64,
}

/// Requests and spend of one caller key, since the gateway started.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct KeySpend {
    pub name: String,
    pub requests: u64,
    pub errors: u64,
    pub cost_usd: f64,
}

#[derive(Default)]
struct Inner {
    recent: VecDeque<RecentRequest>,
    buckets: VecDeque<Bucket>,
    samples: HashMap<String, VecDeque<f64>>,
    served: HashMap<String, u64>,
    keys: BTreeMap<String, KeySpend>,
    total: u64,
}

/// The dashboard's memory: bounded whatever the traffic.
#[derive(Default)]
pub struct Board {
    inner: Mutex<Inner>,
}

fn routing_views(r: &RoutingRecord) -> (Vec<AttemptView>, Vec<SkippedView>) {
    let attempts = r
        .attempts
        .iter()
        .map(|a| AttemptView {
            endpoint: a.endpoint.to_string(),
            outcome: a.outcome.to_string(),
            status: a.status,
            elapsed_ms: a.elapsed_ms,
            error: a.error.as_ref().map(|e| e.chars().take(300).collect()),
        })
        .collect();
    let skipped = r
        .filtered
        .iter()
        .map(|f| SkippedView {
            endpoint: f.endpoint.to_string(),
            reason: f.reason.to_string(),
        })
        .collect();
    (attempts, skipped)
}

impl Board {
    /// Books a finished request: the recent list, the chart bucket, the
    /// serving endpoint's latency sample and the key's spend.
    pub fn record(&self, f: Finished) {
        let (attempts, skipped) = f.routing.map(routing_views).unwrap_or_default();
        let r = f.routing;
        let req = RecentRequest {
            id: f.id,
            at_ms: f.now_ms,
            model: f.model.to_owned(),
            key: f.key.to_owned(),
            stream: f.stream,
            status: f.status,
            outcome: f.outcome.to_owned(),
            duration_ms: f.duration_ms,
            endpoint: r.and_then(|r| r.endpoint.as_ref().map(|e| e.to_string())),
            first_token_ms: r.and_then(|r| r.first_token_ms),
            cost_usd: r.and_then(|r| r.cost_usd),
            failover: attempts.len() > 1,
            attempts,
            skipped,
        };
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.book(req);
    }

    /// The chart buckets of the window ending at `now_ms` (only those
    /// with requests, oldest first; the page fills the gaps), and a copy of
    /// the rest of what the page shows.
    fn snapshot(&self, now_ms: u64) -> Snapshot {
        let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let first = series_start(now_ms);
        let series = g
            .buckets
            .iter()
            .filter(|b| b.t_ms >= first)
            .copied()
            .collect();
        let pct = g
            .samples
            .iter()
            .map(|(id, s)| (id.clone(), Percentiles::of(s)))
            .collect();
        Snapshot {
            recent: g.recent.iter().rev().cloned().collect(),
            series,
            percentiles: pct,
            served: g.served.clone(),
            keys: g.keys.values().cloned().collect(),
            total: g.total,
        }
    }
}

impl Inner {
    fn book(&mut self, req: RecentRequest) {
        self.total += 1;
        let t = req.at_ms / BUCKET_MS * BUCKET_MS;
        if self.buckets.back().is_none_or(|b| b.t_ms < t) {
            self.buckets.push_back(Bucket {
                t_ms: t,
                ..Bucket::default()
            });
            while self.buckets.len() > BUCKETS {
                self.buckets.pop_front();
            }
        }
        let failed = req.status >= 400;
        if let Some(b) = self.buckets.iter_mut().rev().find(|b| b.t_ms <= t) {
            b.requests += 1;
            b.errors += u64::from(failed);
            b.failovers += u64::from(req.failover);
            if let Some(ms) = req.first_token_ms {
                b.first_token_sum_ms += ms;
                b.first_token_count += 1;
                b.first_token_max_ms = b.first_token_max_ms.max(ms);
            }
        }
        if let (Some(ep), Some(ms)) = (&req.endpoint, req.first_token_ms) {
            let s = self.samples.entry(ep.clone()).or_default();
            s.push_back(ms);
            while s.len() > SAMPLES {
                s.pop_front();
            }
            *self.served.entry(ep.clone()).or_default() += 1;
        }
        let k = self
            .keys
            .entry(req.key.clone())
            .or_insert_with(|| KeySpend {
                name: req.key.clone(),
                ..KeySpend::default()
            });
        k.requests += 1;
        k.errors += u64::from(failed);
        k.cost_usd += req.cost_usd.unwrap_or(0.0);
        self.recent.push_back(req);
        while self.recent.len() > RECENT {
            self.recent.pop_front();
        }
    }
}

/// The first bucket of the chart window that ends at `now_ms`.
pub fn series_start(now_ms: u64) -> u64 {
    let last = now_ms / BUCKET_MS * BUCKET_MS;
    last.saturating_sub(BUCKET_MS * (BUCKETS as u64 - 1))
}

struct Snapshot {
    recent: Vec<RecentRequest>,
    series: Vec<Bucket>,
    percentiles: HashMap<String, Percentiles>,
    served: HashMap<String, u64>,
    keys: Vec<KeySpend>,
    total: u64,
}

/// Percentiles of an endpoint's recent first-token latencies (response
/// latency for non-streaming requests), ms.
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq)]
pub struct Percentiles {
    pub samples: usize,
    pub p50_ms: Option<f64>,
    pub p90_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

impl Percentiles {
    fn of(s: &VecDeque<f64>) -> Percentiles {
        let mut v: Vec<f64> = s.iter().copied().collect();
        v.sort_by(f64::total_cmp);
        let at = |p: f64| {
            if v.is_empty() {
                return None;
            }
            let i = ((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1;
            Some(v[i])
        };
        Percentiles {
            samples: v.len(),
            p50_ms: at(0.5),
            p90_ms: at(0.9),
            p99_ms: at(0.99),
        }
    }
}

// ---------------------------------------------------------------------------
// the state the page polls

/// `GET /api/dashboard/state`.
#[derive(Serialize)]
pub struct State {
    pub now_ms: u64,
    pub uptime_s: u64,
    pub requests_in_flight: usize,
    pub total_requests: u64,
    pub bucket_ms: u64,
    /// The chart window: `buckets` buckets from `series_start_ms`; `series`
    /// holds those with requests (a missing bucket had none).
    pub series_start_ms: u64,
    pub buckets: usize,
    pub models: Vec<ModelView>,
    pub recent: Vec<RecentRequest>,
    pub series: Vec<Bucket>,
    /// Requests and spend per caller key name since start.
    pub keys: Vec<KeySpend>,
}

/// One model: its endpoints in the order a request would try them now.
#[derive(Serialize)]
pub struct ModelView {
    pub slug: String,
    pub aliases: Vec<String>,
    /// `latency`, `price`, `throughput` or `order`.
    pub policy: String,
    pub endpoints: Vec<EndpointView>,
}

/// One endpoint: the engine's live stats, its place in the plan, and the
/// board's percentiles.
#[derive(Serialize)]
pub struct EndpointView {
    #[serde(flatten)]
    pub stats: EndpointStats,
    /// 1-based place in the default plan.
    pub rank: Option<usize>,
    /// False: moved to the back (open circuit, Retry-After, full).
    pub available: bool,
    /// Why it sits where it does, in the words `llmux route` uses.
    pub reason: String,
    pub served: u64,
    pub latency: Percentiles,
}

/// Why a plan candidate sits where it does.
pub fn candidate_reason(c: &PlanCandidate) -> String {
    let mut why = match c.first_token_ms {
        Some(ms) => format!("first token {ms:.0} ms measured"),
        None => format!("unmeasured, prior {:.0} ms", c.prior_ms),
    };
    if c.in_flight > 0 {
        why.push_str(&format!(", {} in flight", c.in_flight));
    }
    if !c.available {
        why.push_str(&format!(
            "; unavailable (circuit {}): moved to the back",
            c.circuit.as_str()
        ));
    }
    if c.sticky {
        why.push_str("; sticky");
    }
    why
}

/// The default plan of a streaming request for `slug`: policy and
/// candidates.
fn default_plan(engine: &Engine, slug: &str) -> Option<(String, Vec<PlanCandidate>)> {
    let body = serde_json::json!({"model": slug, "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    let plan = engine
        .plan(Protocol::OpenAi, body.to_string().as_bytes())
        .ok()?;
    let m = plan.models.into_iter().next()?;
    Some((m.policy, m.candidates))
}

fn model_view(engine: &Engine, snap: &Snapshot, slug: &str, eps: Vec<EndpointStats>) -> ModelView {
    let (policy, cands) = default_plan(engine, slug).unwrap_or_default();
    let mut endpoints: Vec<EndpointView> = eps
        .into_iter()
        .map(|e| {
            let c = cands.iter().find(|c| c.endpoint == e.id);
            EndpointView {
                rank: c.map(|c| c.rank),
                available: c.is_none_or(|c| c.available),
                reason: c.map(candidate_reason).unwrap_or_default(),
                served: snap.served.get(&e.id).copied().unwrap_or(0),
                latency: snap.percentiles.get(&e.id).copied().unwrap_or_default(),
                stats: e,
            }
        })
        .collect();
    endpoints.sort_by_key(|e| e.rank.unwrap_or(usize::MAX));
    ModelView {
        slug: slug.to_owned(),
        aliases: Vec::new(),
        policy,
        endpoints,
    }
}

/// The whole state at `now_ms` (unix ms), `uptime_s` after start.
pub fn state(engine: &Engine, board: &Board, now_ms: u64, uptime_s: u64) -> State {
    let snap = board.snapshot(now_ms);
    let stats = engine.stats();
    let mut eps = stats.endpoints;
    let models = stats
        .models
        .iter()
        .map(|m| {
            let (mine, rest): (Vec<_>, Vec<_>) = eps.drain(..).partition(|e| e.model == m.slug);
            eps = rest;
            let mut v = model_view(engine, &snap, &m.slug, mine);
            v.aliases = m.aliases.clone();
            v
        })
        .collect();
    State {
        now_ms,
        uptime_s,
        requests_in_flight: stats.requests_in_flight,
        total_requests: snap.total,
        bucket_ms: BUCKET_MS,
        series_start_ms: series_start(now_ms),
        buckets: BUCKETS,
        models,
        recent: snap.recent,
        series: snap.series,
        keys: snap.keys,
    }
}

// ---------------------------------------------------------------------------
// routes

type Ax = Ext<Arc<App>>;

/// The page, its assets and its state.
pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/dashboard", get(|| serve_asset(String::new())))
        .route("/dashboard/", get(|| serve_asset(String::new())))
        .route(
            "/dashboard/{file}",
            get(|UrlPath(f): UrlPath<String>| serve_asset(f)),
        )
        .route("/api/dashboard/state", get(state_json))
}

fn secure(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert("content-security-policy", HeaderValue::from_static(CSP));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert("cache-control", HeaderValue::from_static("no-store"));
    r
}

async fn serve_asset(file: String) -> Response {
    let Some((ty, body)) = asset(&file) else {
        let mut r = Response::new(axum::body::Body::from("not found"));
        *r.status_mut() = axum::http::StatusCode::NOT_FOUND;
        return secure(r);
    };
    let mut r = Response::new(axum::body::Body::from(body));
    r.headers_mut()
        .insert("content-type", HeaderValue::from_static(ty));
    secure(r)
}

/// Unix time now, ms.
pub fn now_ms() -> u64 {
    unix_ms(SystemTime::now())
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

async fn state_json(Ext(app): Ax, h: HeaderMap) -> Result<Response, GatewayError> {
    authorize(&app, &h, Protocol::OpenAi)?;
    let now = SystemTime::now();
    let uptime = now.duration_since(app.started).map_or(0, |d| d.as_secs());
    let s = state(&app.engine, &app.board, unix_ms(now), uptime);
    let body = serde_json::to_string(&s).unwrap_or_else(|_| "{}".into());
    Ok(secure(json_response(200, body)))
}

/// The body `llmux route` and `GET /v1/route` plan: MODEL (a stream when
/// `stream`: its latency is first-token latency, else complete-response
/// latency) with an optional
/// `provider.routing` object and an optional whole `provider` object
/// (`routing` goes inside it).
pub fn plan_body(
    model: &str,
    stream: bool,
    routing: Option<&str>,
    provider: Option<&str>,
) -> Result<String, String> {
    use serde_json::Value;
    let mut body = serde_json::json!({
        "model": model,
        "messages": [{"role": "user", "content": "hi"}],
    });
    if stream {
        body["stream"] = Value::Bool(true);
    }
    let routing = match routing {
        Some(r) => Some(
            serde_json::from_str::<Value>(r)
                .map_err(|e| format!("routing is not valid JSON: {e}"))?,
        ),
        None => None,
    };
    let mut p = match provider {
        Some(p) => match serde_json::from_str::<Value>(p) {
            Ok(Value::Object(p)) => p,
            _ => return Err("provider must be a JSON object".into()),
        },
        None => serde_json::Map::new(),
    };
    if let Some(r) = routing {
        p.insert("routing".into(), r);
    }
    if !p.is_empty() {
        body["provider"] = Value::Object(p);
    }
    Ok(body.to_string())
}

/// `GET /v1/route?model=M[&stream=true][&routing=JSON][&provider=JSON]`:
/// what the running
/// engine would do now for such a request (the JSON of `llmux route
/// --json`), nothing sent.
pub async fn route_plan(
    Ext(app): Ax,
    h: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, GatewayError> {
    let proto = Protocol::OpenAi;
    authorize(&app, &h, proto)?;
    let Some(model) = q.get("model") else {
        let message =
            "GET /v1/route needs ?model=vendor/name (and optionally routing=JSON, provider=JSON)";
        return Err(
            crate::error::Rejection::new(app.log, proto, 400, "invalid_request", message).into(),
        );
    };
    let body = plan_body(
        model,
        q.get("stream").is_some_and(|v| v == "true" || v == "1"),
        q.get("routing").map(String::as_str),
        q.get("provider").map(String::as_str),
    )
    .map_err(|m| crate::error::Rejection::new(app.log, proto, 400, "invalid_request", m))?;
    let plan = app
        .engine
        .plan(proto, body.as_bytes())
        .map_err(|e| submit_error(&app, proto, &e, body.as_bytes(), "-"))?;
    let text = serde_json::to_string(&plan).unwrap_or_else(|_| "{}".into());
    Ok(json_response(200, text))
}

#[cfg(test)]
mod tests;
