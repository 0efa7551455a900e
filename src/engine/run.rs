//! One request's lifecycle: rank, attempt down the list (hedging when asked),
//! fall back to the next model, retry rounds with backoff, and end with
//! exactly one terminal event.

use super::{lock, Inner};
use crate::api::{
    Attempt, FilteredEndpoint, RoutingRecord, TerminalEvent, TerminalKind, TokenUsage,
};
use crate::config::DEFAULT_TIMEOUTS;
use crate::events::{ErrorKind, Event, EventKind};
use crate::health::{Health, Latency, Verdict};
use crate::protocol::{self, Protocol, Usage};
use crate::request::{Hedge, ModelRoute, ParsedRequest};
use crate::routing::{self, Explore, Policy};
use crate::upstream::{self, AttemptCtx, AttemptError, AttemptOk, ErrKind};
use serde_json::value::RawValue;
use serde_json::Value;
use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, Notify};
// The runtime's clock (a paused test clock drives it); health and routing
// take `std` instants: `now()` converts.
use tokio::time::Instant;

/// The runtime's current time as the `std` instant health and routing take.
fn now() -> std::time::Instant {
    Instant::now().into_std()
}

/// Where a request from `submit_with` sends its events, and what it
/// forwards upstream. `Default`: the shared queue, nothing forwarded.
#[derive(Default)]
pub(super) struct Channel {
    pub(super) chunks: Option<mpsc::Sender<Event>>,
    pub(super) terminal: Option<oneshot::Sender<Event>>,
    pub(super) headers: Vec<(String, String)>,
    /// Set at the first token, before any chunk: who serves, after how
    /// many attempts, how fast.
    pub(super) served: Option<Arc<ServingCell>>,
    /// A same-protocol upstream error body becomes the terminal's `error`
    /// unchanged (instead of llmux's envelope).
    pub(super) upstream_error_bodies: bool,
    /// The parent of the request's span.
    pub(super) traceparent: Option<crate::telemetry::TraceContext>,
}

/// What is known of a request once its first token arrived, shared with
/// its `RequestEvents` (a gateway's stream headers go out with the first
/// chunk, after any failover).
#[derive(Debug, Default)]
pub(super) struct ServingCell {
    /// The serving endpoint + 1 (0: none yet); written last.
    endpoint: AtomicUsize,
    /// The serving attempt's place in the routing record (1-based).
    attempts: AtomicUsize,
    /// The first-token time of the serving attempt, in microseconds.
    first_token_us: AtomicU64,
}

impl ServingCell {
    fn set(&self, endpoint: usize, attempts: usize, first_token_ms: f64) {
        self.attempts.store(attempts, Ordering::Relaxed);
        let us = (first_token_ms.max(0.0) * 1000.0) as u64;
        self.first_token_us.store(us, Ordering::Relaxed);
        self.endpoint.store(endpoint + 1, Ordering::Release);
    }

    /// (endpoint index, attempts, first-token ms), once set.
    pub(super) fn get(&self) -> Option<(usize, usize, f64)> {
        let e = self.endpoint.load(Ordering::Acquire).checked_sub(1)?;
        let us = self.first_token_us.load(Ordering::Relaxed);
        Some((e, self.attempts.load(Ordering::Relaxed), us as f64 / 1000.0))
    }
}

/// One attempt as the routing record reports it.
struct AttemptRecord {
    endpoint: usize,
    outcome: &'static str,
    status: Option<u16>,
    elapsed_ms: f64,
    error: Option<String>,
    started: Instant,
    finished: bool,
    /// Started beside a running attempt (a hedge).
    hedge: bool,
    /// Body bytes sent and received (only when the engine traces).
    bytes: Option<Arc<upstream::AttemptBytes>>,
}

/// What the request task accumulates.
#[derive(Default)]
struct RunState {
    attempts: Vec<AttemptRecord>,
    served: Option<usize>,
    served_model: Option<String>,
    first_token_ms: Option<f64>,
    usage: Option<Usage>,
    /// The served stream's response id and finish reason (when traced).
    facts: Option<crate::protocol::StreamFacts>,
}

/// Emits the terminal event exactly once; on drop without one (panic,
/// runtime shutdown) it emits an internal error.
struct Terminal {
    inner: Arc<Inner>,
    id: u64,
    caller: Protocol,
    model: String,
    emitted: bool,
    /// The request's own terminal channel (`submit_with`); else the queue.
    channel: Option<oneshot::Sender<Event>>,
}

impl Terminal {
    fn emit(&mut self, kind: EventKind, data: String) {
        if self.emitted {
            return;
        }
        self.emitted = true;
        lock(&self.inner.cancels).remove(&self.id);
        // Counted out before the event is visible, so a host that has seen
        // the terminal never reads this request as in flight.
        self.inner.active.fetch_sub(1, Ordering::AcqRel);
        let ev = Event {
            request_id: self.id,
            kind,
            data,
        };
        match self.channel.take() {
            Some(tx) => {
                let _ = tx.send(ev);
            }
            None => self.inner.queue.push(ev),
        }
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        if !self.emitted {
            let kind = ErrorKind::Internal;
            let body = protocol::error_body(
                self.caller,
                500,
                kind.openai_type(),
                "the request was torn down before it finished",
            );
            let body = serde_json::value::to_raw_value(&body).ok();
            let ev = TerminalEvent {
                kind: TerminalKind::Error,
                status: Some(500),
                response: None,
                error: body.as_deref(),
                error_kind: Some(kind),
                outcome: Cow::Borrowed("internal_error"),
                routing: RoutingRecord {
                    model: Cow::Borrowed(&self.model),
                    requested_model: Cow::Borrowed(&self.model),
                    ..RoutingRecord::default()
                },
            };
            let data = serde_json::to_string(&ev).unwrap_or_default();
            self.emit(EventKind::Error, data);
        }
    }
}

/// The final failure of a request.
struct Failure {
    status: u16,
    kind: ErrorKind,
    /// The outcome name (docs/errors.md): the deciding attempt's, or the
    /// request's own (`total_timeout`, `cancelled`, ...).
    outcome: &'static str,
    message: String,
    /// The upstream's own error body (same protocol as the caller).
    upstream_body: Option<String>,
}

fn failure_from(e: &AttemptError) -> Failure {
    let (status, kind) = match e.kind {
        // The provider refused llmux's own key, or does not know the URL or
        // model: an upstream failure, never a status the caller could read
        // as about its own key or model.
        ErrKind::AuthRejected | ErrKind::NotFound => (502, ErrorKind::Upstream),
        ErrKind::RateLimited => (e.status.unwrap_or(429), ErrorKind::RateLimit),
        ErrKind::BadRequest => (e.status.unwrap_or(400), ErrorKind::InvalidRequest),
        ErrKind::ServerError | ErrKind::Status => (e.status.unwrap_or(502), ErrorKind::Upstream),
        ErrKind::FirstTokenTimeout | ErrKind::IdleTimeout | ErrKind::TotalTimeout => {
            (504, ErrorKind::Timeout)
        }
        ErrKind::Translation => (e.status.unwrap_or(400), ErrorKind::InvalidRequest),
        ErrKind::Cancelled => (499, ErrorKind::Cancelled),
        ErrKind::ConcurrencyLimited => (503, ErrorKind::Overloaded),
        _ => (502, ErrorKind::Upstream),
    };
    Failure {
        status,
        kind,
        outcome: e.kind.as_str(),
        message: e.message.clone(),
        upstream_body: e.upstream_body.clone(),
    }
}

fn routing_record<'a>(
    inner: &'a Inner,
    req: &'a ParsedRequest,
    st: &'a RunState,
    started: Instant,
) -> RoutingRecord<'a> {
    let c = &inner.catalog;
    let served = st.served.map(|e| &c.endpoints[e]);
    let name = |s: &'a str| Cow::Borrowed(s);
    RoutingRecord {
        model: name(st.served_model.as_deref().unwrap_or(req.model_slug())),
        requested_model: name(req.model_slug()),
        endpoint: served.map(|e| name(&e.id)),
        provider: st.served.map(|e| name(&c.provider_of(e).slug)),
        upstream_model: served.map(|e| name(&e.upstream_model)),
        attempts: st
            .attempts
            .iter()
            .map(|a| Attempt {
                endpoint: name(&c.endpoints[a.endpoint].id),
                provider: name(&c.provider_of(a.endpoint).slug),
                model: name(&c.models[c.endpoints[a.endpoint].model].slug),
                outcome: name(a.outcome),
                status: a.status,
                elapsed_ms: a.elapsed_ms,
                error: a.error.as_deref().map(name),
            })
            .collect(),
        first_token_ms: st.first_token_ms,
        latency_ms: started.elapsed().as_secs_f64() * 1000.0,
        usage: st.usage.map(|u| TokenUsage {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
            total_tokens: u.prompt_tokens.saturating_add(u.completion_tokens),
            cached_tokens: u.cached_tokens,
        }),
        cost_usd: match (served, st.usage) {
            (Some(e), Some(u)) => Some(e.cost(u.prompt_tokens, u.completion_tokens)),
            _ => None,
        },

        filtered: req
            .filtered
            .iter()
            .map(|f| FilteredEndpoint {
                endpoint: name(&c.endpoints[f.endpoint].id),
                reason: name(&f.reason),
            })
            .collect(),
    }
}

/// Books an attempt whose future is dropped mid-way: as a failure when the
/// request's total timeout cut it off (the endpoint kept it waiting, as its
/// own total timeout would say), else as neutral (cancellation, a lost
/// hedge race, a twin's request error).
pub(super) struct InFlight<'a> {
    pub(super) health: &'a Health,
    pub(super) endpoint: usize,
    pub(super) open: bool,
    /// Set by the request when its total timeout expired.
    pub(super) timed_out: Option<&'a AtomicBool>,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if self.open {
            let timed_out = self.timed_out.is_some_and(|t| t.load(Ordering::Acquire));
            let (verdict, message) = if timed_out {
                (Verdict::Failure, "the total timeout expired")
            } else {
                (Verdict::Neutral, "cancelled")
            };
            self.health
                .failure(self.endpoint, now(), verdict, None, message);
        }
    }
}

type AttemptResult = Result<AttemptOk, AttemptError>;

/// Everything an attempt borrows from the request, shared by hedged twins.
struct Shared<'a> {
    inner: &'a Inner,
    id: u64,
    req: &'a ParsedRequest,
    winner: &'a AtomicUsize,
    notify: &'a Notify,
    deadline: Instant,
    /// Set once the total timeout expired, before attempts are dropped.
    timed_out: &'a AtomicBool,
    chunks: Option<&'a mpsc::Sender<Event>>,
    headers: &'a [(String, String)],
    served: Option<&'a ServingCell>,
}

/// Claims a concurrency slot and records a pending attempt; None when the
/// endpoint is at its concurrency limit (recorded as such).
fn start(sh: &Shared<'_>, st: &mut RunState, e: usize) -> Option<usize> {
    let limit = sh.inner.catalog.endpoints[e].max_concurrency;
    let ok = sh.inner.health.try_begin(e, now(), limit);
    st.attempts.push(AttemptRecord {
        endpoint: e,
        outcome: if ok {
            "cancelled"
        } else {
            ErrKind::ConcurrencyLimited.as_str()
        },
        status: None,
        elapsed_ms: 0.0,
        error: (!ok).then(|| "the endpoint is at its concurrency limit".to_owned()),
        started: Instant::now(),
        finished: !ok,
        hedge: false,
        bytes: sh.inner.tracer.as_ref().map(|_| Arc::default()),
    });
    ok.then(|| st.attempts.len() - 1)
}

/// Runs one HTTP attempt (already counted in flight by `start`).
///
/// `slot` is the attempt's winner id (1-based, attempts that ran); `nth`
/// its place in the routing record's attempts (1-based).
async fn exec(
    sh: &Shared<'_>,
    route: &ModelRoute,
    e: usize,
    (slot, nth): (usize, usize),
    bytes: Option<Arc<upstream::AttemptBytes>>,
) -> AttemptResult {
    let inner = sh.inner;
    let c = &inner.catalog;
    let mut guard = InFlight {
        health: &inner.health,
        endpoint: e,
        open: true,
        timed_out: Some(sh.timed_out),
    };
    let timeouts = sh
        .req
        .timeouts
        .over(c.provider_of(e).timeouts)
        .over(c.timeouts)
        .over(DEFAULT_TIMEOUTS);
    let client = inner
        .client(timeouts.connect_ms.unwrap_or(5000), c.provider_of(e).http)
        .map_err(|m| AttemptError::new(ErrKind::Transport, m))?;
    let stream = sh.req.stream;
    let on_first = |ms: f64| {
        // Only streams have a first token of their own; a non-streaming
        // attempt's time is booked as its response latency below.
        if let Some(s) = sh.served {
            s.set(e, nth, ms);
        }
        if stream {
            inner.health.first_token(e, now(), ms);
        }
        sh.notify.notify_one();
    };
    let result = upstream::attempt(AttemptCtx {
        catalog: c,
        endpoint: e,
        client: &client,
        queue: &inner.queue,
        request_id: sh.id,
        caller: sh.req.protocol,
        body: &sh.req.body,
        stream: sh.req.stream,
        include_usage: sh.req.include_usage,
        model_slug: &route.slug,
        timeouts,
        deadline: sh.deadline,
        winner: sh.winner,
        slot,
        on_first_token: &on_first,
        chunks: sh.chunks,
        forward_headers: sh.headers,
        bytes: bytes.as_deref(),
    })
    .await;
    // The health table hears of every attempt exactly once: here when it
    // ran to the end, from the guard when its future was dropped.
    guard.open = false;
    record_health(&inner.health, e, &result, stream);
    result
}

/// Books a finished attempt in the health table.
pub(super) fn record_health(health: &Health, e: usize, r: &AttemptResult, stream: bool) {
    let now = now();
    health.tried(e, now, Latency::of(stream));
    match r {
        Ok(ok) => {
            if !stream {
                health.response(e, now, ok.first_token_ms);
            }
            health.success(e, now, ok.throughput)
        }
        Err(err) => {
            let verdict = match err.kind {
                ErrKind::Translation | ErrKind::HedgeLost | ErrKind::Cancelled => Verdict::Neutral,
                _ if err.caller_fault => Verdict::Neutral,
                _ => Verdict::Failure,
            };
            if let (Some(o), Verdict::Failure) = (health.shared(), verdict) {
                o.count_failure(e, err.kind.as_str(), err.status);
            }
            health.failure(e, now, verdict, err.retry_after, &err.message);
        }
    }
}

/// Records an attempt's result in the routing record.
fn finish(st: &mut RunState, idx: usize, route: &ModelRoute, r: &AttemptResult) {
    let now = Instant::now();
    let rec = &mut st.attempts[idx];
    let e = rec.endpoint;
    rec.elapsed_ms = now.duration_since(rec.started).as_secs_f64() * 1000.0;
    rec.finished = true;
    match r {
        Ok(ok) => {
            rec.outcome = "success";
            rec.status = Some(200);
            st.served = Some(e);
            st.served_model = Some(route.slug.clone());
            st.first_token_ms = Some(ok.first_token_ms);
            st.usage = ok.usage;
            st.facts.clone_from(&ok.facts);
        }
        Err(err) => {
            rec.outcome = err.kind.as_str();
            rec.status = err.status;
            rec.error = Some(err.message.clone());
            if err.first_token_ms.is_some() {
                // Its chunks reached the host: this endpoint served them.
                st.first_token_ms = err.first_token_ms;
                st.served = Some(e);
                st.served_model = Some(route.slug.clone());
            }
        }
    }
}

/// Awaits an optional boxed future; pending forever when there is none.
async fn maybe<F: Future + ?Sized>(f: &mut Option<Pin<Box<F>>>) -> F::Output {
    match f {
        Some(f) => f.await,
        None => std::future::pending().await,
    }
}

/// Runs `a`; if it has produced no token after `delay`, runs `b` beside it.
/// The first to produce a token wins and the other is dropped (its
/// connection closes). Returns the deciding result and whether `b` was used.
async fn hedged(
    sh: &Shared<'_>,
    st: &mut RunState,
    route: &ModelRoute,
    (a, b): (usize, usize),
    delay: Duration,
    slot: &mut usize,
) -> Option<(AttemptResult, bool)> {
    let ia = start(sh, st, a)?;
    *slot += 1;
    let sa = *slot;
    let bytes = st.attempts[ia].bytes.clone();
    let mut fa = Some(Box::pin(exec(sh, route, a, (sa, ia + 1), bytes)));
    tokio::select! {
        r = maybe(&mut fa) => {
            finish(st, ia, route, &r);
            return Some((r, false));
        }
        _ = tokio::time::sleep(delay) => {}
    }
    if sh.winner.load(Ordering::Acquire) != 0 {
        let r = maybe(&mut fa).await;
        finish(st, ia, route, &r);
        return Some((r, false));
    }
    let Some(ib) = start(sh, st, b) else {
        let r = maybe(&mut fa).await;
        finish(st, ia, route, &r);
        return Some((r, true));
    };
    st.attempts[ib].hedge = true;
    *slot += 1;
    let sb = *slot;
    let bytes = st.attempts[ib].bytes.clone();
    let mut fb = Some(Box::pin(exec(sh, route, b, (sb, ib + 1), bytes)));
    let lost = || {
        Err(AttemptError::new(
            ErrKind::HedgeLost,
            "the hedged twin produced its first token first",
        ))
    };
    let (mut ra, mut rb): (Option<AttemptResult>, Option<AttemptResult>) = (None, None);
    while fa.is_some() || fb.is_some() {
        tokio::select! {
            r = maybe(&mut fa), if fa.is_some() => { fa = None; ra = Some(r); }
            r = maybe(&mut fb), if fb.is_some() => { fb = None; rb = Some(r); }
            _ = sh.notify.notified() => {}
        }
        let w = sh.winner.load(Ordering::Acquire);
        if w == sa && fb.is_some() {
            fb = None;
            rb = Some(lost());
        }
        if w == sb && fa.is_some() {
            fa = None;
            ra = Some(lost());
        }
        // A request error (400/413/422) describes the request: it ends the
        // request at once, whatever the twin would have said.
        let caller_fault = |r: &Option<AttemptResult>| matches!(r, Some(Err(e)) if e.caller_fault);
        if caller_fault(&ra) || caller_fault(&rb) {
            fa = None;
            fb = None;
        }
    }
    let ra = ra.unwrap_or_else(lost);
    let rb = rb.unwrap_or_else(lost);
    finish(st, ia, route, &ra);
    finish(st, ib, route, &rb);
    let w = sh.winner.load(Ordering::Acquire);
    let fault = |r: &AttemptResult| matches!(r, Err(e) if e.caller_fault);
    // The winner's result decides, then a request error; with neither, both
    // failed before a token and the later failure is reported.
    Some(if w == sa || (w != sb && (ra.is_ok() || fault(&ra))) {
        (ra, true)
    } else {
        (rb, true)
    })
}

fn hedge_delay(inner: &Inner, req: &ParsedRequest, e: usize) -> Option<Duration> {
    let cfg = &inner.catalog.hedging;
    let spec = match req.hedge {
        Some(h) => h,
        None if cfg.enabled => Hedge::Default,
        None => Hedge::Off,
    };
    let pct = |p: f64| {
        inner
            .health
            .percentile(e, Latency::of(req.stream), p)
            .map(|ms| ms as u64)
            .unwrap_or(cfg.fallback_delay_ms)
    };
    let ms = match spec {
        Hedge::Off => return None,
        Hedge::DelayMs(ms) => ms,
        Hedge::Percentile(p) => pct(p),
        Hedge::Default => cfg.delay_ms.unwrap_or_else(|| pct(cfg.percentile)),
    };
    Some(Duration::from_millis(ms))
}

/// Ranks one model's candidates now, by the latency of the request's kind
/// (first token for streams, complete response otherwise).
/// The routing view of every candidate of `route` at `now`, indexed by
/// endpoint (the others stay unranked); latency is the request kind's own
/// signal. Shared by ranking and by `Engine::explain`.
pub(super) fn candidate_views(
    inner: &Inner,
    route: &ModelRoute,
    now: std::time::Instant,
    stream: bool,
) -> Vec<routing::EndpointView> {
    let c = &inner.catalog;
    let mut views = vec![routing::UNRANKED; c.endpoints.len()];
    for &e in &route.candidates {
        let ep = &c.endpoints[e];
        let prior = ep
            .expected_first_token_ms
            .unwrap_or(c.health.default_first_token_ms);
        views[e] = inner.health.view_for(
            e,
            now,
            prior,
            ep.price_prompt + ep.price_completion,
            ep.max_concurrency,
            Latency::of(stream),
        );
    }
    views
}

fn rank(
    inner: &Inner,
    route: &ModelRoute,
    sticky: Option<usize>,
    req: &ParsedRequest,
) -> Vec<usize> {
    let c = &inner.catalog;
    let now = now();
    let views = candidate_views(inner, route, now, req.stream);
    let explore =
        (route.policy == Policy::Latency && c.health.explore_ratio > 0.0).then(|| Explore {
            draw: inner.draw(),
            ratio: c.health.explore_ratio,
        });
    let order = routing::plan(
        &route.candidates,
        &views,
        route.policy,
        now,
        explore,
        sticky,
    );
    // soft preference misses last; allow_fallbacks: false keeps one.
    let available = routing::filter::available_at(&views, now);
    routing::filter::finish(
        order,
        &route.demoted,
        &available,
        req.prefs.first_choice_only(),
    )
}

/// The backoff before retry round `round` (1-based), with jitter.
fn backoff(inner: &Inner, round: u32) -> Duration {
    let r = &inner.catalog.retry;
    let base = r
        .base_backoff_ms
        .saturating_mul(1u64 << (round - 1).min(20))
        .min(r.max_backoff_ms);
    Duration::from_millis(base / 2 + (inner.draw() * (base / 2) as f64) as u64)
}

/// Waits out the backoff before retry round `round` (at least the largest
/// Retry-After heard); false when the retry is not worth it: that
/// Retry-After is over `retry.max_retry_after_ms`, or the wait would end
/// past the request's deadline.
async fn wait_for_round(sh: &Shared<'_>, round: u32, retry_after: Option<Duration>) -> bool {
    let inner = sh.inner;
    let mut wait = backoff(inner, round);
    if let Some(ra) = retry_after {
        if ra > Duration::from_millis(inner.catalog.retry.max_retry_after_ms) {
            return false;
        }
        wait = wait.max(ra);
    }
    if Instant::now() + wait >= sh.deadline {
        return false;
    }
    tokio::time::sleep(wait).await;
    true
}

async fn drive(sh: &Shared<'_>, st: &mut RunState) -> Result<Option<String>, Failure> {
    let inner = sh.inner;
    let req = sh.req;
    let retry = inner.catalog.retry;
    let sticky = req
        .sticky_key
        .as_deref()
        .and_then(|k| inner.sticky_get(k, now()));
    if let Some(f) = no_match(inner, req) {
        return Err(f); // the provider preferences left nothing
    }
    let mut last: Option<Failure> = None;
    let mut slot = 0usize;
    let mut retry_after: Option<Duration> = None;
    for round in 0..=retry.max_retries {
        if round > 0 && !wait_for_round(sh, round, retry_after.take()).await {
            break;
        }
        let mut retryable = false;
        for route in &req.routes {
            let order = rank(inner, route, sticky, req);
            let mut i = 0;
            while i < order.len() {
                let e = order[i];
                i += 1;
                let delay = (i < order.len())
                    .then(|| hedge_delay(inner, req, e))
                    .flatten();
                let outcome = match delay {
                    // Boxed: rare, and 2 KiB more in every request task.
                    Some(d) => Box::pin(hedged(sh, st, route, (e, order[i]), d, &mut slot))
                        .await
                        .map(|(r, used_b)| {
                            if used_b {
                                i += 1;
                            }
                            r
                        }),
                    None => match start(sh, st, e) {
                        None => None,
                        Some(idx) => {
                            slot += 1;
                            let bytes = st.attempts[idx].bytes.clone();
                            let r = exec(sh, route, e, (slot, idx + 1), bytes).await;
                            finish(st, idx, route, &r);
                            Some(r)
                        }
                    },
                };
                let Some(result) = outcome else { continue };
                match result {
                    Ok(ok) => {
                        if let (Some(k), Some(e)) = (req.sticky_key.as_deref(), st.served) {
                            inner.sticky_put(k, e, now());
                        }
                        return Ok(ok.body);
                    }
                    Err(err) => {
                        let f = failure_from(&err);
                        let delivered = sh.winner.load(Ordering::Acquire) != 0;
                        if delivered || err.caller_fault || Instant::now() >= sh.deadline {
                            return Err(f);
                        }
                        if !matches!(err.kind, ErrKind::Translation | ErrKind::HedgeLost) {
                            retryable = true;
                        }
                        if err.retry_after.is_some() {
                            retry_after = retry_after.max(err.retry_after);
                        }
                        last = Some(f);
                    }
                }
            }
        }
        if !retryable {
            break;
        }
    }
    Err(last.unwrap_or_else(all_busy))
}

/// The failure when the provider preferences left no endpoint.
fn no_match(inner: &Inner, req: &ParsedRequest) -> Option<Failure> {
    req.routes.is_empty().then(|| Failure {
        status: 404,
        kind: ErrorKind::NoEndpointMatches,
        outcome: "no_endpoint_matches",
        message: super::prefs::no_match_message(inner, req),
        upstream_body: None,
    })
}

/// The failure when no endpoint could be attempted.
fn all_busy() -> Failure {
    Failure {
        status: 503,
        kind: ErrorKind::Overloaded,
        outcome: ErrKind::ConcurrencyLimited.as_str(),
        message: "every endpoint is at its concurrency limit".into(),
        upstream_body: None,
    }
}

/// llmux's error body for a failure, in the caller's protocol; OpenAI
/// shapes carry the outcome as `code` (Google's `code` is the HTTP status).
fn error_body_of(caller: Protocol, f: &Failure) -> Value {
    let mut body = protocol::error_body(caller, f.status, f.kind.openai_type(), &f.message);
    let code = body
        .pointer_mut("/error/code")
        .filter(|_| caller != Protocol::Gemini);
    if let Some(code) = code {
        *code = Value::from(f.outcome);
    }
    body
}

/// Every request's task, held for a whole stream: an async block rather
/// than an `async fn`, whose arguments its future stores twice
/// (rust-lang/rust#62958; the parsed request is 848 bytes).
#[allow(clippy::manual_async_fn)] // on purpose, for the size above
pub(super) fn run(
    inner: Arc<Inner>,
    id: u64,
    mut req: ParsedRequest,
    mut cancel: oneshot::Receiver<()>,
    channel: Channel,
) -> impl Future<Output = ()> {
    async move {
        let started = Instant::now();
        super::prefs::apply(&inner, &mut req, now()); // filter once, before any attempt
        let raw = channel.upstream_error_bodies; // also: `user_budgets` refusals
        let span_start = super::trace::Start::now(channel.traceparent, started);
        let mut term = Terminal {
            inner: inner.clone(),
            id,
            caller: req.protocol,
            model: req.model_slug().to_owned(),
            emitted: false,
            channel: channel.terminal,
        };
        let total = total_ms(&inner, &req);
        let deadline = started + Duration::from_millis(total);
        let winner = AtomicUsize::new(0);
        let notify = Notify::new();
        let timed_out = AtomicBool::new(false);
        let mut st = RunState::default();
        let Some(lease) = admit_or_refuse(&inner, &req, span_start, &mut term, raw).await else {
            return;
        };
        let result = {
            let sh = Shared {
                inner: &inner,
                id,
                req: &req,
                winner: &winner,
                notify: &notify,
                deadline,
                timed_out: &timed_out,
                chunks: channel.chunks.as_ref(),
                headers: &channel.headers,
                served: channel.served.as_deref(),
            };
            let fut = drive(&sh, &mut st);
            tokio::pin!(fut);
            let r = tokio::select! {
                biased;
                _ = &mut cancel => Err(Failure { status: 499, kind: ErrorKind::Cancelled, outcome: "cancelled", message: "the request was cancelled".into(), upstream_body: None }),
                _ = tokio::time::sleep_until(deadline) => Err(Failure {
                    status: 504,
                    kind: ErrorKind::Timeout,
                    outcome: ErrKind::TotalTimeout.as_str(),
                    message: format!("the total timeout of {total} ms expired"),
                    upstream_body: None,
                }),
                r = &mut fut => r,
            };
            // Attempts still running are dropped with `fut`: tell their guards
            // why first.
            if matches!(&r, Err(f) if f.kind == ErrorKind::Timeout) {
                timed_out.store(true, Ordering::Release);
            }
            r
        };
        close_cut_attempts(&mut st, &result);
        let routing = routing_record(&inner, &req, &st, started);
        settle_user(lease, &routing);
        trace_request(&inner, &req, &st, &result, &routing, span_start);
        let (kind, data) = terminal_data(&result, routing, req.protocol, raw);
        term.emit(kind, data);
    }
}

/// The request's total timeout: its own, the catalog's, or the default.
fn total_ms(inner: &Inner, req: &ParsedRequest) -> u64 {
    req.timeouts
        .total_ms
        .or(inner.catalog.timeouts.total_ms)
        .or(DEFAULT_TIMEOUTS.total_ms)
        .unwrap_or(600_000)
}

/// Attempts cut short by cancel or the total timeout get their elapsed
/// time (and the timeout as their outcome).
fn close_cut_attempts(st: &mut RunState, result: &Result<Option<String>, Failure>) {
    let timed_out = matches!(result, Err(f) if f.kind == ErrorKind::Timeout);
    for a in st.attempts.iter_mut().filter(|a| !a.finished) {
        a.elapsed_ms = a.started.elapsed().as_secs_f64() * 1000.0;
        if timed_out {
            a.outcome = ErrKind::TotalTimeout.as_str();
        }
    }
}

/// [`admit_user`]; a refusal is the request's terminal event (`None`).
async fn admit_or_refuse(
    inner: &Inner,
    req: &ParsedRequest,
    start: super::trace::Start,
    term: &mut Terminal,
    raw_errors: bool,
) -> Option<Option<crate::budget::Lease>> {
    match admit_user(inner, req).await {
        Ok(l) => Some(l),
        Err(f) => {
            let st = RunState::default();
            let routing = routing_record(inner, req, &st, start.started());
            let result = Err(f);
            trace_request(inner, req, &st, &result, &routing, start);
            let (kind, data) = terminal_data(&result, routing, req.protocol, raw_errors);
            term.emit(kind, data);
            None
        }
    }
}

/// Charges the request's real cost to its user's lease (or releases it).
fn settle_user(lease: Option<crate::budget::Lease>, routing: &RoutingRecord<'_>) {
    let Some(lease) = lease else { return };
    let tokens = routing
        .usage
        .map_or(0, |u| u.prompt_tokens + u.completion_tokens);
    match routing.cost_usd {
        Some(c) => lease.settle(c, tokens),
        None => drop(lease),
    }
}

/// The reservation of the request's `user` under `user_budgets`, or the
/// refusal as a failure before any upstream call: 403 (model), 402
/// (budget, `error_kind` permission), 429 (limits).
async fn admit_user(
    inner: &Inner,
    req: &ParsedRequest,
) -> Result<Option<crate::budget::Lease>, Failure> {
    use crate::budget::Refusal;
    let (Some(b), Some(cfg)) = (&inner.budgets, &inner.catalog.user_budgets) else {
        return Ok(None);
    };
    let Some(user) = req.user.as_deref() else {
        return Ok(None);
    };
    let Some(p) = cfg.policy(user) else {
        return Ok(None);
    };
    let fail = |status, kind, outcome, message| Failure {
        status,
        kind,
        outcome,
        message,
        upstream_body: None,
    };
    if let Some(m) = req.routes.iter().find(|r| !p.allows(&r.slug)) {
        let message = format!("the user `{user}` may not call the model `{}`", m.slug);
        return Err(fail(
            403,
            ErrorKind::Permission,
            "model_not_allowed",
            message,
        ));
    }
    if p.limits.is_open() {
        return Ok(None);
    }
    let ask = crate::budget::estimate(&inner.catalog, req, cfg.default_max_tokens);
    let subject: Arc<str> = Arc::from(user);
    // Boxed: a reservation (Redis when shared) is a large future that every
    // request task would otherwise carry inline, budgets or not.
    match Box::pin(b.reserve(&subject, &p.limits, ask)).await {
        Ok(l) => Ok(Some(l)),
        Err(r) => {
            let message = format!("user `{user}`: {r}");
            Err(match r {
                Refusal::Budget { .. } => {
                    fail(402, ErrorKind::Permission, "budget_exhausted", message)
                }
                _ => fail(429, ErrorKind::RateLimit, "rate_limited", message),
            })
        }
    }
}

/// The request's spans, when a tracer is configured.
fn trace_request(
    inner: &Inner,
    req: &ParsedRequest,
    st: &RunState,
    result: &Result<Option<String>, Failure>,
    routing: &RoutingRecord<'_>,
    start: super::trace::Start,
) {
    if inner.tracer.is_none() {
        return;
    }
    let (outcome, error, body) = match result {
        Ok(b) => ("success", None, b.as_deref()),
        Err(f) => (f.outcome, Some(f.message.as_str()), None),
    };
    let finished = super::trace::Finished {
        start,
        outcome,
        error,
        body,
        facts: st.facts.as_ref(),
        routing,
        attempts: st
            .attempts
            .iter()
            .map(|a| super::trace::Mark {
                started: a.started,
                hedge: a.hedge,
                bytes: a.bytes.as_ref().map(|b| b.get()),
            })
            .collect(),
    };
    super::trace::export(inner, req, finished);
}

/// A terminal event's kind and JSON, written in one pass.
fn terminal_data(
    result: &Result<Option<String>, Failure>,
    routing: RoutingRecord<'_>,
    caller: Protocol,
    raw_errors: bool,
) -> (EventKind, String) {
    let f = match result {
        Ok(body) => return (EventKind::Done, done_data(body.as_deref(), routing)),
        Err(f) => f,
    };
    let body = f
        .upstream_body
        .as_deref()
        .filter(|_| raw_errors)
        .and_then(|b| serde_json::from_str::<Value>(b).ok())
        .unwrap_or_else(|| error_body_of(caller, f));
    let error_body = serde_json::value::to_raw_value(&body).ok();
    let out = TerminalEvent {
        kind: TerminalKind::Error,
        status: Some(f.status),
        response: None,
        error: error_body.as_deref(),
        error_kind: Some(f.kind),
        outcome: Cow::Borrowed(f.outcome),
        routing,
    };
    (EventKind::Error, event_json(&out, 1024))
}

/// The terminal event's JSON in one buffer sized for it, rather than a
/// dozen reallocations as it grows.
fn event_json(ev: &TerminalEvent<'_>, size: usize) -> String {
    let mut buf = Vec::with_capacity(size);
    // Serialising these plain structs cannot fail (and serde_json writes
    // UTF-8); keep a valid event anyway.
    serde_json::to_writer(&mut buf, ev)
        .ok()
        .and_then(|_| String::from_utf8(buf).ok())
        .unwrap_or_else(|| {
            r#"{"type":"error","status":500,"error":{"message":"cannot serialise the terminal event"},"routing":null}"#.to_owned()
        })
}

/// A `done` event's JSON. The response body is checked JSON (it comes from
/// `protocol::convert_response_for`, which parsed it), so it is written in
/// its place as it is instead of being parsed once more to be embedded:
/// the event is serialised without it and the body goes in after `type`,
/// where serde would have put it. The bytes are the same either way.
fn done_data(body: Option<&str>, routing: RoutingRecord<'_>) -> String {
    const HEAD: &str = r#"{"type":"done","#;
    const KEY: &str = r#""response":"#;
    let ev = TerminalEvent {
        kind: TerminalKind::Done,
        status: None,
        response: None,
        error: None,
        error_kind: None,
        outcome: Cow::Borrowed("success"),
        routing,
    };
    // JSON allows only these around a value; serde's raw value drops them.
    let body = body
        .map(|b| b.trim_matches([' ', '\t', '\n', '\r']))
        .filter(|b| !b.is_empty());
    debug_assert!(body.is_none_or(|b| serde_json::from_str::<&RawValue>(b).is_ok()));
    let extra = body.map_or(0, |b| KEY.len() + b.len() + 1);
    let mut data = event_json(&ev, 1024 + extra);
    if let Some(b) = body.filter(|_| data.starts_with(HEAD)) {
        // The buffer was sized for the body: this moves the routing record
        // along, without reallocating.
        data.insert_str(HEAD.len(), b);
        data.insert_str(HEAD.len(), KEY);
        data.insert(HEAD.len() + KEY.len() + b.len(), ',');
    }
    data
}
