//! Per-endpoint live statistics and circuit state, updated from every attempt.
//!
//! Each signal has one definition:
//! - First-token latency (`first_token_ms`): streaming attempts only, from
//!   the start of the attempt to its first generated token. A time-decayed
//!   "peak" EWMA (a sample above the average replaces it at once, lower
//!   samples pull it down with the configured half-life), so an endpoint
//!   that turns slow loses traffic fast. Ranks streaming requests and sets
//!   their hedge delay.
//! - Response latency (`response_ms`): non-streaming attempts only, from the
//!   start of the attempt to the complete body; the same kind of average.
//!   Ranks non-streaming requests and sets their hedge delay.
//! - Output throughput (`throughput_tps`): streaming attempts only, output
//!   tokens over the time from the first token to the end of the stream (at
//!   least 1 ms), for streams of two tokens or more. A time-decayed EWMA.
//! - Error rate: a time-decayed EWMA of failures (1) and successes (0).
//! - Circuit: closed -> open after `failure_threshold` consecutive failures;
//!   open for `base_ejection_ms * 2^(ejections-1)` (capped at
//!   `max_ejection_ms`); then half-open: one probe request; its success
//!   closes the circuit, its failure opens it again for longer. The ejection
//!   count falls back to zero after a success with the circuit closed for
//!   longer than the longest ejection so far.
//! - Retry-After: the endpoint is skipped until the deadline.

use crate::api::{self, EndpointHealth};
use crate::config::HealthConfig;
use crate::routing::EndpointView;
use crate::shared::{Aggregate, Overlay};
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Which latency signal a request is ranked by: its kind's own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Latency {
    /// Streams: time to the first token.
    FirstToken,
    /// Non-streaming requests: time to the complete body.
    Response,
}

impl Latency {
    pub fn of(stream: bool) -> Latency {
        if stream {
            Latency::FirstToken
        } else {
            Latency::Response
        }
    }

    fn index(self) -> usize {
        match self {
            Latency::FirstToken => 0,
            Latency::Response => 1,
        }
    }
}

/// The most recent latencies of one kind, for percentiles (hedging).
#[derive(Clone, Copy, Debug)]
struct Recent {
    vals: [f32; RECENT],
    len: usize,
    pos: usize,
    /// When the last value was added (or imported).
    last: Option<Instant>,
}

impl Recent {
    const EMPTY: Recent = Recent {
        vals: [0.0; RECENT],
        len: 0,
        pos: 0,
        last: None,
    };

    /// Adds a value at `now`; values older than `stale` (since the last
    /// one) are dropped first: they describe an endpoint that may have
    /// changed since.
    fn push_at(&mut self, ms: f64, now: Instant, stale: Duration) {
        if self.is_stale(now, stale) {
            *self = Recent::EMPTY;
        }
        self.push(ms);
        self.last = Some(now);
    }

    fn is_stale(&self, now: Instant, stale: Duration) -> bool {
        self.last
            .is_some_and(|t| now.saturating_duration_since(t) > stale)
    }

    fn push(&mut self, ms: f64) {
        self.vals[self.pos] = ms as f32;
        self.pos = (self.pos + 1) % RECENT;
        self.len = (self.len + 1).min(RECENT);
    }

    fn values(&self) -> Vec<f32> {
        self.vals[..self.len].to_vec()
    }

    fn from_slice(vals: &[f32], now: Instant) -> Recent {
        let mut r = Recent::EMPTY;
        for &v in vals.iter().take(RECENT) {
            r.push(v as f64);
        }
        r.last = Some(now);
        r
    }

    fn percentile(&self, p: f64) -> Option<f64> {
        percentile_of(self.values(), p)
    }
}

/// The `p` percentile of `v`, once it holds enough values.
fn percentile_of(mut v: Vec<f32>, p: f64) -> Option<f64> {
    if v.len() < MIN_PERCENTILE_SAMPLES {
        return None;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    let i = ((p.clamp(0.0, 1.0) * (v.len() - 1) as f64).round() as usize).min(v.len() - 1);
    Some(v[i] as f64)
}

/// The least weight one sample has in a time-decayed average.
const MIN_SAMPLE_WEIGHT: f64 = 0.1;

#[derive(Clone, Copy, Debug, Default)]
struct Ewma {
    value: f64,
    at: Option<Instant>,
}

impl Ewma {
    fn update(&mut self, sample: f64, now: Instant, half_life: Duration, peak: bool) {
        match self.at {
            None => self.value = sample,
            Some(at) => {
                if peak && sample > self.value {
                    self.value = sample;
                } else {
                    let dt = now.saturating_duration_since(at).as_secs_f64();
                    // Time decay, but every sample moves the average at least
                    // a little, so a burst of samples is not ignored.
                    let w = (-dt * std::f64::consts::LN_2 / half_life.as_secs_f64())
                        .exp()
                        .min(1.0 - MIN_SAMPLE_WEIGHT);
                    self.value = self.value * w + sample * (1.0 - w);
                }
            }
        }
        self.at = Some(now);
    }

    fn get(&self) -> Option<f64> {
        self.at.map(|_| self.value)
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Circuit {
    Closed,
    Open { until: Instant },
    HalfOpen { probing: bool },
}

#[derive(Debug)]
struct State {
    first_token: Ewma,
    response: Ewma,
    throughput: Ewma,
    errors: Ewma,
    in_flight: u32,
    requests: u64,
    successes: u64,
    failures: u64,
    consecutive_failures: u32,
    circuit: Circuit,
    ejections: u32,
    closed_since: Option<Instant>,
    retry_until: Option<Instant>,
    last_error: Option<String>,
    /// Recent first-token latencies (streams), for percentiles (hedging).
    recent: Recent,
    /// Recent response latencies (non-streaming).
    recent_response: Recent,
    /// Recent output throughputs, tokens/s (percentile cutoffs of the
    /// provider preferences).
    recent_tps: Recent,
    /// When an attempt of each kind (`Latency::index`) last ended, measured
    /// or not: an endpoint tried is no longer "never measured" for routing.
    tried: [Option<Instant>; 2],
}

/// How many recent first-token latencies are kept per endpoint.
const RECENT: usize = 64;
/// Fewest samples before a percentile is trusted.
const MIN_PERCENTILE_SAMPLES: usize = 8;
/// Recent values older than this many half-lives (counted from the last
/// one) no longer judge percentile cutoffs: an endpoint ranked last on
/// old measurements is judged on its expectation again, and its traffic
/// measures it anew (the next value starts a fresh window).
pub const STALE_HALF_LIVES: u32 = 3;

impl State {
    fn new() -> Self {
        State {
            first_token: Ewma::default(),
            response: Ewma::default(),
            throughput: Ewma::default(),
            errors: Ewma::default(),
            in_flight: 0,
            requests: 0,
            successes: 0,
            failures: 0,
            consecutive_failures: 0,
            circuit: Circuit::Closed,
            ejections: 0,
            closed_since: None,
            retry_until: None,
            last_error: None,
            recent: Recent::EMPTY,
            recent_response: Recent::EMPTY,
            recent_tps: Recent::EMPTY,
            tried: [None; 2],
        }
    }

    /// Moves an expired open circuit to half-open.
    fn tick(&mut self, now: Instant) {
        if let Circuit::Open { until } = self.circuit {
            if now >= until {
                self.circuit = Circuit::HalfOpen { probing: false };
            }
        }
    }
}

/// Health of every endpoint of a catalog, indexed like `Catalog::endpoints`.
#[derive(Debug)]
pub struct Health {
    cfg: HealthConfig,
    /// Shared with the next catalog's `Health` for the endpoints a reload
    /// keeps, so requests still running on the old catalog book into the
    /// same state (see [`Health::carry`]).
    states: Vec<Arc<Mutex<State>>>,
    /// What other processes know, when health is shared (see `shared`).
    shared: Option<Arc<Overlay>>,
}

/// What the attempt that ended was, for the books.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Counts against the endpoint (connection, timeout, 5xx, 429, ...).
    Failure,
    /// Says nothing about the endpoint (cancelled, a 400 about the request).
    Neutral,
}

fn lock(m: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    // A panic while holding the lock cannot leave State inconsistent in a
    // way that matters more than losing all health data; keep going.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Health {
    pub fn new(cfg: HealthConfig, endpoints: usize) -> Self {
        Health {
            cfg,
            states: (0..endpoints)
                .map(|_| Arc::new(Mutex::new(State::new())))
                .collect(),
            shared: None,
        }
    }

    /// The health of a reloaded catalog: `from[n] = Some(o)` keeps this
    /// health's endpoint `o` (the very same state: latencies, percentiles,
    /// circuit, in-flight count) as the new endpoint `n`; `None` starts
    /// fresh. `cfg` is the new catalog's health settings.
    pub fn carry(&self, cfg: HealthConfig, from: &[Option<usize>]) -> Health {
        Health {
            cfg,
            states: from
                .iter()
                .map(|o| match o {
                    Some(o) => self.states[*o].clone(),
                    None => Arc::new(Mutex::new(State::new())),
                })
                .collect(),
            shared: None,
        }
    }

    /// Shares this health with other processes through `overlay`.
    pub fn set_shared(&mut self, overlay: Arc<Overlay>) {
        self.shared = Some(overlay);
    }

    pub fn shared(&self) -> Option<&Overlay> {
        self.shared.as_deref()
    }

    /// The overlay itself, for the task that syncs it.
    pub fn shared_arc(&self) -> Option<Arc<Overlay>> {
        self.shared.clone()
    }

    /// The in-flight limit in force: a fleet-wide one becomes this
    /// process's share of it.
    fn limit(&self, e: usize, configured: Option<u32>) -> Option<u32> {
        match &self.shared {
            Some(o) => o.limit(e, configured),
            None => configured,
        }
    }

    /// This endpoint's local aggregates at `now`, for the other processes.
    pub fn aggregate(&self, e: usize, now: Instant) -> Aggregate {
        let stale = self.half_life() * STALE_HALF_LIVES;
        let s = lock(&self.states[e]);
        let fresh = |r: &Recent| {
            if r.is_stale(now, stale) {
                Vec::new()
            } else {
                r.values()
            }
        };
        Aggregate {
            recent: [
                fresh(&s.recent),
                fresh(&s.recent_response),
                fresh(&s.recent_tps),
            ],
            first_token_ms: s.first_token.get(),
            first_token_samples: s.recent.len as u64,
            response_ms: s.response.get(),
            response_samples: s.recent_response.len as u64,
            throughput: s.throughput.get(),
            throughput_samples: s.successes,
            in_flight: s.in_flight,
            requests: s.requests,
            failures: s.failures,
        }
    }

    fn half_life(&self) -> Duration {
        Duration::from_millis(self.cfg.half_life_ms.max(1))
    }

    /// An attempt starts: counts it in flight; claims the half-open probe.
    pub fn begin(&self, e: usize, now: Instant) {
        self.try_begin(e, now, None);
    }

    /// Like `begin`, unless the endpoint already has `limit` attempts in
    /// flight: then nothing changes and the result is false.
    pub fn try_begin(&self, e: usize, now: Instant, limit: Option<u32>) -> bool {
        let limit = self.limit(e, limit);
        let mut s = lock(&self.states[e]);
        if limit.is_some_and(|l| s.in_flight >= l) {
            if let Some(o) = &self.shared {
                o.refused(e);
            }
            return false;
        }
        s.tick(now);
        s.in_flight += 1;
        s.requests += 1;
        if let Circuit::HalfOpen { probing: false } = s.circuit {
            s.circuit = Circuit::HalfOpen { probing: true };
        }
        true
    }

    /// A streaming attempt reached its first token; `ms` is its latency.
    pub fn first_token(&self, e: usize, now: Instant, ms: f64) {
        let hl = self.half_life();
        let mut s = lock(&self.states[e]);
        s.first_token.update(ms, now, hl, true);
        s.recent.push_at(ms, now, hl * STALE_HALF_LIVES);
    }

    /// A non-streaming attempt got its complete body after `ms`.
    pub fn response(&self, e: usize, now: Instant, ms: f64) {
        let hl = self.half_life();
        let mut s = lock(&self.states[e]);
        s.response.update(ms, now, hl, true);
        s.recent_response.push_at(ms, now, hl * STALE_HALF_LIVES);
    }

    /// An attempt of `kind` ended (with or without a latency sample).
    pub fn tried(&self, e: usize, now: Instant, kind: Latency) {
        lock(&self.states[e]).tried[kind.index()] = Some(now);
    }

    /// The `p` percentile (0..1) of recent first-token latencies, once
    /// enough were seen.
    pub fn first_token_percentile(&self, e: usize, p: f64) -> Option<f64> {
        self.percentile(e, Latency::FirstToken, p)
    }

    /// The `p` percentile (0..1) of recent latencies of one kind, once
    /// enough were seen.
    pub fn percentile(&self, e: usize, kind: Latency, p: f64) -> Option<f64> {
        let s = lock(&self.states[e]);
        match kind {
            Latency::FirstToken => s.recent.percentile(p),
            Latency::Response => s.recent_response.percentile(p),
        }
    }

    /// The `p` percentile (0..1) of recent output throughputs (tokens/s),
    /// once enough were seen.
    pub fn throughput_percentile(&self, e: usize, p: f64) -> Option<f64> {
        lock(&self.states[e]).recent_tps.percentile(p)
    }

    /// [`Health::percentile`] for cutoffs at `now`: `None` once the values
    /// are stale ([`STALE_HALF_LIVES`]).
    pub fn percentile_at(&self, e: usize, kind: Latency, p: f64, now: Instant) -> Option<f64> {
        let s = lock(&self.states[e]);
        let r = match kind {
            Latency::FirstToken => &s.recent,
            Latency::Response => &s.recent_response,
        };
        self.judged_percentile(e, r, kind.index(), p, now)
    }

    /// The percentile of this instance's fresh values when there are
    /// enough, else of those and the fleet's (shared health) together.
    fn judged_percentile(
        &self,
        e: usize,
        r: &Recent,
        which: usize,
        p: f64,
        now: Instant,
    ) -> Option<f64> {
        let stale = self.half_life() * STALE_HALF_LIVES;
        let fresh = !r.is_stale(now, stale);
        if fresh && r.len >= MIN_PERCENTILE_SAMPLES {
            return r.percentile(p);
        }
        let mut pool = self.shared.as_ref()?.recent(e, which, now);
        if fresh {
            pool.extend(r.values());
        }
        percentile_of(pool, p)
    }

    /// The latency average of one kind at `now`, unless its last sample is
    /// stale ([`STALE_HALF_LIVES`]).
    pub fn average_at(&self, e: usize, kind: Latency, now: Instant) -> Option<f64> {
        let stale = self.half_life() * STALE_HALF_LIVES;
        let s = lock(&self.states[e]);
        let a = match kind {
            Latency::FirstToken => s.first_token,
            Latency::Response => s.response,
        };
        a.at.filter(|&t| now.saturating_duration_since(t) <= stale)
            .map(|_| a.value)
    }

    /// [`Health::throughput_percentile`] for cutoffs at `now`: `None` once
    /// the values are stale.
    pub fn throughput_percentile_at(&self, e: usize, p: f64, now: Instant) -> Option<f64> {
        let s = lock(&self.states[e]);
        self.judged_percentile(e, &s.recent_tps, crate::shared::RECENT_THROUGHPUT, p, now)
    }

    /// True when the endpoint's circuit waits for a half-open probe.
    pub fn probe_due(&self, e: usize, now: Instant) -> bool {
        let mut s = lock(&self.states[e]);
        s.tick(now);
        s.circuit == Circuit::HalfOpen { probing: false }
            && !self.shared.as_ref().is_some_and(|o| o.blocked(e, now))
    }

    /// The attempt succeeded. `throughput` in output tokens/s when known.
    pub fn success(&self, e: usize, now: Instant, throughput: Option<f64>) {
        let hl = self.half_life();
        let max_ejection = Duration::from_millis(self.cfg.max_ejection_ms);
        let mut s = lock(&self.states[e]);
        s.in_flight = s.in_flight.saturating_sub(1);
        s.successes += 1;
        s.consecutive_failures = 0;
        s.errors.update(0.0, now, hl, false);
        if let Some(t) = throughput {
            if t.is_finite() && t > 0.0 {
                s.throughput.update(t, now, hl, false);
                s.recent_tps.push_at(t, now, hl * STALE_HALF_LIVES);
            }
        }
        match s.circuit {
            Circuit::Closed => {
                if s.closed_since
                    .is_some_and(|t| now.saturating_duration_since(t) > max_ejection)
                {
                    s.ejections = 0;
                }
            }
            _ => {
                s.circuit = Circuit::Closed;
                s.closed_since = Some(now);
                if let Some(o) = &self.shared {
                    o.recovered(e);
                }
            }
        }
    }

    /// The attempt failed or ended without a verdict.
    pub fn failure(
        &self,
        e: usize,
        now: Instant,
        verdict: Verdict,
        retry_after: Option<Duration>,
        message: &str,
    ) {
        let hl = self.half_life();
        let mut s = lock(&self.states[e]);
        s.in_flight = s.in_flight.saturating_sub(1);
        if let Some(d) = retry_after {
            let d = d.min(Duration::from_millis(self.cfg.max_retry_after_ms));
            let until = now + d;
            s.retry_until = Some(s.retry_until.map_or(until, |t| t.max(until)));
            if let Some(o) = &self.shared {
                o.retry_after(e, d);
            }
        }
        if verdict == Verdict::Neutral {
            if let Circuit::HalfOpen { probing: true } = s.circuit {
                s.circuit = Circuit::HalfOpen { probing: false };
            }
            return;
        }
        s.failures = s.failures.saturating_add(1);
        s.consecutive_failures = s.consecutive_failures.saturating_add(1);
        s.errors.update(1.0, now, hl, false);
        s.last_error = Some(message.chars().take(300).collect());
        let reopen = matches!(s.circuit, Circuit::HalfOpen { .. });
        let trips = reopen || s.consecutive_failures >= self.cfg.failure_threshold;
        if trips && !matches!(s.circuit, Circuit::Open { .. }) {
            s.ejections = s.ejections.saturating_add(1);
            let factor = 1u64 << (s.ejections - 1).min(20);
            let ms = self
                .cfg
                .base_ejection_ms
                .saturating_mul(factor)
                .min(self.cfg.max_ejection_ms);
            s.circuit = Circuit::Open {
                until: now + Duration::from_millis(ms),
            };
            if let Some(o) = &self.shared {
                o.ejected(e, Duration::from_millis(ms));
            }
        }
    }

    /// The routing view of one endpoint at `now`, for streams.
    pub fn view(
        &self,
        e: usize,
        now: Instant,
        prior_ms: f64,
        price: f64,
        limit: Option<u32>,
    ) -> EndpointView {
        self.view_for(e, now, prior_ms, price, limit, Latency::FirstToken)
    }

    /// The routing view of one endpoint at `now`, its latency being the
    /// request kind's own signal.
    pub fn view_for(
        &self,
        e: usize,
        now: Instant,
        prior_ms: f64,
        price: f64,
        limit: Option<u32>,
        kind: Latency,
    ) -> EndpointView {
        let limit = self.limit(e, limit);
        let mut s = lock(&self.states[e]);
        s.tick(now);
        let latency = match kind {
            Latency::FirstToken => s.first_token,
            Latency::Response => s.response,
        };
        let open_until = match s.circuit {
            Circuit::Open { until } => Some(until),
            _ => None,
        };
        let rate_limited = s.retry_until.filter(|&t| t > now);
        let mut v = EndpointView {
            first_token_ms: latency.get(),
            prior_ms,
            throughput: s.throughput.get(),
            in_flight: s.in_flight,
            price,
            blocked_until: match (open_until, rate_limited) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            },
            probing: matches!(s.circuit, Circuit::HalfOpen { probing: true }),
            last_sample: latency.at.or(s.tried[kind.index()]),
            full: limit.is_some_and(|l| s.in_flight >= l),
        };
        if let Some(o) = &self.shared {
            let n = match kind {
                Latency::FirstToken => s.recent.len,
                Latency::Response => s.recent_response.len,
            };
            o.apply(e, now, &mut v, kind, (n as u64, s.successes));
            if v.full {
                // Ranked while out of fleet slots: ask for one.
                o.refused(e);
            }
        }
        v
    }

    /// Exportable state of one endpoint: averages, ejections, and the time
    /// left on an open circuit or a Retry-After.
    pub fn export_state(&self, e: usize, now: Instant) -> HealthExport {
        let mut s = lock(&self.states[e]);
        s.tick(now);
        let left = |t: Option<Instant>| {
            t.filter(|&t| t > now)
                .map(|t| t.duration_since(now).as_millis() as u64)
        };
        let open_for = match s.circuit {
            Circuit::Open { until } => left(Some(until)),
            _ => None,
        };
        let ms = |x: Option<f64>| x.map(NonNeg);
        HealthExport {
            first_token_ms: ms(s.first_token.get()),
            response_ms: ms(s.response.get()),
            throughput_tps: ms(s.throughput.get()),
            error_rate: s.errors.get().map(Rate),
            recent_first_token_ms: s.recent.values().into_iter().map(NonNeg32).collect(),
            recent_response_ms: s
                .recent_response
                .values()
                .into_iter()
                .map(NonNeg32)
                .collect(),
            recent_throughput_tps: s.recent_tps.values().into_iter().map(NonNeg32).collect(),
            ejections: s.ejections,
            consecutive_failures: s.consecutive_failures,
            circuit_open_for_ms: open_for,
            rate_limited_for_ms: left(s.retry_until),
        }
    }

    /// [`Health::export_state`] as JSON.
    pub fn export(&self, e: usize, now: Instant) -> serde_json::Value {
        serde_json::to_value(self.export_state(e, now)).unwrap_or_default()
    }

    /// Restores what `export_state` wrote; fields left out keep their
    /// current value. The averages count as measured now.
    pub fn import_state(&self, e: usize, now: Instant, v: &HealthExport) {
        let mut s = lock(&self.states[e]);
        let at = |x: f64| Ewma {
            value: x,
            at: Some(now),
        };
        if let Some(NonNeg(x)) = v.first_token_ms {
            s.first_token = at(x);
        }
        if let Some(NonNeg(x)) = v.response_ms {
            s.response = at(x);
        }
        if let Some(NonNeg(x)) = v.throughput_tps {
            s.throughput = at(x);
        }
        if let Some(Rate(x)) = v.error_rate {
            s.errors = at(x);
        }
        let vals = |l: &[NonNeg32]| l.iter().map(|m| m.0).collect::<Vec<f32>>();
        if !v.recent_first_token_ms.is_empty() {
            s.recent = Recent::from_slice(&vals(&v.recent_first_token_ms), now);
        }
        if !v.recent_response_ms.is_empty() {
            s.recent_response = Recent::from_slice(&vals(&v.recent_response_ms), now);
        }
        if !v.recent_throughput_tps.is_empty() {
            s.recent_tps = Recent::from_slice(&vals(&v.recent_throughput_tps), now);
        }
        s.ejections = v.ejections.min(64);
        s.consecutive_failures = v.consecutive_failures;
        let max = Duration::from_millis(self.cfg.max_ejection_ms.max(self.cfg.max_retry_after_ms));
        if let Some(ms) = v.circuit_open_for_ms {
            s.circuit = Circuit::Open {
                until: now + Duration::from_millis(ms).min(max),
            };
        }
        if let Some(ms) = v.rate_limited_for_ms {
            s.retry_until = Some(now + Duration::from_millis(ms).min(max));
        }
    }

    /// Restores one endpoint from JSON `export` wrote. A field of the wrong
    /// type or a negative latency is refused, naming the field.
    pub fn import(&self, e: usize, now: Instant, v: &serde_json::Value) -> Result<(), String> {
        let state = HealthExport::from_json(v)?;
        self.import_state(e, now, &state);
        Ok(())
    }

    /// One endpoint's health at `now`, for stats.
    pub fn snapshot_state(&self, e: usize, now: Instant) -> EndpointHealth {
        let mut s = lock(&self.states[e]);
        s.tick(now);
        let ms_until = |t: Option<Instant>| {
            t.filter(|&t| t > now)
                .map(|t| t.duration_since(now).as_millis() as u64)
                .unwrap_or(0)
        };
        let (circuit, open_for) = match s.circuit {
            Circuit::Closed => (api::Circuit::Closed, 0),
            Circuit::Open { until } => (api::Circuit::Open, ms_until(Some(until))),
            Circuit::HalfOpen { .. } => (api::Circuit::HalfOpen, 0),
        };
        EndpointHealth {
            first_token_ms: s.first_token.get(),
            response_ms: s.response.get(),
            throughput_tps: s.throughput.get(),
            error_rate: s.errors.get().unwrap_or(0.0),
            in_flight: s.in_flight,
            requests: s.requests,
            successes: s.successes,
            failures: s.failures,
            consecutive_failures: s.consecutive_failures,
            circuit,
            circuit_open_for_ms: open_for,
            ejections: s.ejections,
            rate_limited_for_ms: ms_until(s.retry_until),
            last_error: s.last_error.clone(),
        }
    }

    /// A JSON object describing one endpoint's health at `now`.
    pub fn snapshot(&self, e: usize, now: Instant) -> serde_json::Map<String, serde_json::Value> {
        match serde_json::to_value(self.snapshot_state(e, now)) {
            Ok(serde_json::Value::Object(m)) => m,
            _ => serde_json::Map::new(),
        }
    }
}

/// A finite, non-negative number (a latency in ms, a throughput).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(transparent)]
pub struct NonNeg(pub f64);

impl<'de> Deserialize<'de> for NonNeg {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked_f64(d, |x| x.is_finite() && x >= 0.0, "a non-negative number").map(NonNeg)
    }
}

/// A number `ok` accepts, or an error saying it is not `what`.
fn checked_f64<'de, D: serde::Deserializer<'de>>(
    d: D,
    ok: impl Fn(f64) -> bool,
    what: &str,
) -> Result<f64, D::Error> {
    let x = f64::deserialize(d)?;
    if ok(x) {
        Ok(x)
    } else {
        Err(serde::de::Error::custom(format!("{x} is not {what}")))
    }
}

/// [`NonNeg`] as stored in the recent-latency lists.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(transparent)]
pub struct NonNeg32(pub f32);

impl<'de> Deserialize<'de> for NonNeg32 {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let NonNeg(x) = NonNeg::deserialize(d)?;
        Ok(NonNeg32(x as f32))
    }
}

/// A share between 0 and 1.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(transparent)]
pub struct Rate(pub f64);

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked_f64(d, |x| (0.0..=1.0).contains(&x), "between 0 and 1").map(Rate)
    }
}

/// One endpoint's health as `llmux_health_export` writes it and
/// `llmux_health_import` reads it. Every field may be left out.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HealthExport {
    pub first_token_ms: Option<NonNeg>,
    pub response_ms: Option<NonNeg>,
    pub throughput_tps: Option<NonNeg>,
    pub error_rate: Option<Rate>,
    pub recent_first_token_ms: Vec<NonNeg32>,
    pub recent_response_ms: Vec<NonNeg32>,
    /// Recent output throughputs, tokens/s (the percentile cutoffs).
    pub recent_throughput_tps: Vec<NonNeg32>,
    pub ejections: u32,
    pub consecutive_failures: u32,
    pub circuit_open_for_ms: Option<u64>,
    pub rate_limited_for_ms: Option<u64>,
}

impl HealthExport {
    /// Parses one endpoint's entry; an error names the field.
    pub fn from_json(v: &serde_json::Value) -> Result<HealthExport, String> {
        serde_path_to_error::deserialize(v).map_err(|e| {
            let path = e.path().to_string();
            format!("{path}: {}", e.into_inner())
        })
    }
}

#[cfg(test)]
mod tests;
