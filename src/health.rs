//! Per-endpoint live statistics and circuit state, updated from every attempt.
//!
//! - First-token latency: a time-decayed "peak" EWMA (a sample above the
//!   average replaces it at once, lower samples pull it down with the
//!   configured half-life), so an endpoint that turns slow loses traffic fast.
//! - Output throughput (tokens/s) and error rate: time-decayed EWMAs.
//! - Circuit: closed -> open after `failure_threshold` consecutive failures;
//!   open for `base_ejection_ms * 2^(ejections-1)` (capped at
//!   `max_ejection_ms`); then half-open: one probe request; its success
//!   closes the circuit, its failure opens it again for longer. The ejection
//!   count falls back to zero after a success with the circuit closed for
//!   longer than the longest ejection so far.
//! - Retry-After: the endpoint is skipped until the deadline.

use crate::config::HealthConfig;
use crate::routing::EndpointView;
use crate::shared::{Aggregate, Overlay};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
    /// The most recent first-token latencies, for percentiles (hedging).
    recent: [f32; RECENT],
    recent_len: usize,
    recent_pos: usize,
}

/// How many recent first-token latencies are kept per endpoint.
const RECENT: usize = 64;
/// Fewest samples before a percentile is trusted.
const MIN_PERCENTILE_SAMPLES: usize = 8;

impl State {
    fn new() -> Self {
        State {
            first_token: Ewma::default(),
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
            recent: [0.0; RECENT],
            recent_len: 0,
            recent_pos: 0,
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
    states: Vec<Mutex<State>>,
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
            states: (0..endpoints).map(|_| Mutex::new(State::new())).collect(),
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

    /// The in-flight limit in force: a fleet-wide one becomes this
    /// process's share of it.
    fn limit(&self, e: usize, configured: Option<u32>) -> Option<u32> {
        match &self.shared {
            Some(o) => o.limit(e, configured),
            None => configured,
        }
    }

    /// This endpoint's local aggregates, for the other processes.
    pub fn aggregate(&self, e: usize) -> Aggregate {
        let s = lock(&self.states[e]);
        Aggregate {
            first_token_ms: s.first_token.get(),
            first_token_samples: s.recent_len as u64,
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

    /// The attempt reached its first token; `ms` is its latency.
    pub fn first_token(&self, e: usize, now: Instant, ms: f64) {
        let hl = self.half_life();
        let mut s = lock(&self.states[e]);
        s.first_token.update(ms, now, hl, true);
        let pos = s.recent_pos;
        s.recent[pos] = ms as f32;
        s.recent_pos = (pos + 1) % RECENT;
        s.recent_len = (s.recent_len + 1).min(RECENT);
    }

    /// The `p` percentile (0..1) of recent first-token latencies, once
    /// enough were seen.
    pub fn first_token_percentile(&self, e: usize, p: f64) -> Option<f64> {
        let s = lock(&self.states[e]);
        if s.recent_len < MIN_PERCENTILE_SAMPLES {
            return None;
        }
        let mut v: Vec<f32> = s.recent[..s.recent_len].to_vec();
        drop(s);
        v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
        let i = ((p.clamp(0.0, 1.0) * (v.len() - 1) as f64).round() as usize).min(v.len() - 1);
        Some(v[i] as f64)
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

    /// The routing view of one endpoint at `now`.
    pub fn view(
        &self,
        e: usize,
        now: Instant,
        prior_ms: f64,
        price: f64,
        limit: Option<u32>,
    ) -> EndpointView {
        let limit = self.limit(e, limit);
        let mut s = lock(&self.states[e]);
        s.tick(now);
        let open_until = match s.circuit {
            Circuit::Open { until } => Some(until),
            _ => None,
        };
        let rate_limited = s.retry_until.filter(|&t| t > now);
        let mut v = EndpointView {
            first_token_ms: s.first_token.get(),
            prior_ms,
            throughput: s.throughput.get(),
            in_flight: s.in_flight,
            price,
            blocked_until: match (open_until, rate_limited) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            },
            probing: matches!(s.circuit, Circuit::HalfOpen { probing: true }),
            last_sample: s.first_token.at,
            full: limit.is_some_and(|l| s.in_flight >= l),
        };
        if let Some(o) = &self.shared {
            o.apply(e, now, &mut v, (s.recent_len as u64, s.successes));
            if v.full {
                // Ranked while out of fleet slots: ask for one.
                o.refused(e);
            }
        }
        v
    }

    /// Exportable state of one endpoint: averages, ejections, and the time
    /// left on an open circuit or a Retry-After.
    pub fn export(&self, e: usize, now: Instant) -> serde_json::Value {
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
        serde_json::json!({
            "first_token_ms": s.first_token.get(),
            "throughput_tps": s.throughput.get(),
            "error_rate": s.errors.get(),
            "recent_first_token_ms": s.recent[..s.recent_len].to_vec(),
            "ejections": s.ejections,
            "consecutive_failures": s.consecutive_failures,
            "circuit_open_for_ms": open_for,
            "rate_limited_for_ms": left(s.retry_until),
        })
    }

    /// Restores what `export` wrote (fields missing or of the wrong type are
    /// left alone). The averages count as measured now.
    pub fn import(&self, e: usize, now: Instant, v: &serde_json::Value) {
        let mut s = lock(&self.states[e]);
        let f = |k: &str| {
            v.get(k)
                .and_then(serde_json::Value::as_f64)
                .filter(|x| x.is_finite() && *x >= 0.0)
        };
        if let Some(x) = f("first_token_ms") {
            s.first_token = Ewma {
                value: x,
                at: Some(now),
            };
        }
        if let Some(x) = f("throughput_tps") {
            s.throughput = Ewma {
                value: x,
                at: Some(now),
            };
        }
        if let Some(x) = f("error_rate") {
            s.errors = Ewma {
                value: x.min(1.0),
                at: Some(now),
            };
        }
        if let Some(list) = v
            .get("recent_first_token_ms")
            .and_then(serde_json::Value::as_array)
        {
            let vals: Vec<f32> = list
                .iter()
                .filter_map(|x| x.as_f64())
                .map(|x| x as f32)
                .take(RECENT)
                .collect();
            s.recent_len = vals.len();
            s.recent_pos = vals.len() % RECENT;
            s.recent[..vals.len()].copy_from_slice(&vals);
        }
        if let Some(x) = v.get("ejections").and_then(serde_json::Value::as_u64) {
            s.ejections = x.min(64) as u32;
        }
        if let Some(x) = v
            .get("consecutive_failures")
            .and_then(serde_json::Value::as_u64)
        {
            s.consecutive_failures = x.min(u32::MAX as u64) as u32;
        }
        let max = Duration::from_millis(self.cfg.max_ejection_ms.max(self.cfg.max_retry_after_ms));
        if let Some(ms) = v
            .get("circuit_open_for_ms")
            .and_then(serde_json::Value::as_u64)
        {
            s.circuit = Circuit::Open {
                until: now + Duration::from_millis(ms).min(max),
            };
        }
        if let Some(ms) = v
            .get("rate_limited_for_ms")
            .and_then(serde_json::Value::as_u64)
        {
            s.retry_until = Some(now + Duration::from_millis(ms).min(max));
        }
    }

    /// A JSON object describing one endpoint's health at `now`.
    pub fn snapshot(&self, e: usize, now: Instant) -> serde_json::Map<String, serde_json::Value> {
        use serde_json::json;
        let mut s = lock(&self.states[e]);
        s.tick(now);
        let ms_until = |t: Option<Instant>| {
            t.filter(|&t| t > now)
                .map(|t| t.duration_since(now).as_millis() as u64)
                .unwrap_or(0)
        };
        let (circuit, open_for) = match s.circuit {
            Circuit::Closed => ("closed", 0),
            Circuit::Open { until } => ("open", ms_until(Some(until))),
            Circuit::HalfOpen { .. } => ("half_open", 0),
        };
        let v = json!({
            "first_token_ms": s.first_token.get(),
            "throughput_tps": s.throughput.get(),
            "error_rate": s.errors.get().unwrap_or(0.0),
            "in_flight": s.in_flight,
            "requests": s.requests,
            "successes": s.successes,
            "failures": s.failures,
            "consecutive_failures": s.consecutive_failures,
            "circuit": circuit,
            "circuit_open_for_ms": open_for,
            "ejections": s.ejections,
            "rate_limited_for_ms": ms_until(s.retry_until),
            "last_error": s.last_error,
        });
        match v {
            serde_json::Value::Object(m) => m,
            _ => unreachable!("json! object literal"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> HealthConfig {
        HealthConfig {
            failure_threshold: 2,
            base_ejection_ms: 100,
            max_ejection_ms: 350,
            ..Default::default()
        }
    }

    #[test]
    fn peak_ewma_jumps_up_decays_down() {
        let h = Health::new(cfg(), 1);
        let t0 = Instant::now();
        h.first_token(0, t0, 100.0);
        h.first_token(0, t0 + Duration::from_millis(10), 500.0);
        assert_eq!(h.view(0, t0, 1.0, 0.0, None).first_token_ms, Some(500.0));
        // One half-life later a 100 ms sample pulls it halfway.
        h.first_token(0, t0 + Duration::from_millis(10_010), 100.0);
        let v = h.view(0, t0, 1.0, 0.0, None).first_token_ms.unwrap();
        assert!((v - 300.0).abs() < 1.0, "{v}");
    }

    #[test]
    fn circuit_opens_half_opens_and_grows() {
        let h = Health::new(cfg(), 1);
        let t0 = Instant::now();
        for _ in 0..2 {
            h.begin(0, t0);
            h.failure(0, t0, Verdict::Failure, None, "x");
        }
        let v = h.view(0, t0, 1.0, 0.0, None);
        assert_eq!(v.blocked_until, Some(t0 + Duration::from_millis(100)));
        // After the ejection: half-open, one probe allowed.
        let t1 = t0 + Duration::from_millis(100);
        assert!(h.view(0, t1, 1.0, 0.0, None).available(t1));
        h.begin(0, t1);
        assert!(
            !h.view(0, t1, 1.0, 0.0, None).available(t1),
            "probe in flight"
        );
        h.failure(0, t1, Verdict::Failure, None, "x");
        // Second ejection doubles.
        assert_eq!(
            h.view(0, t1, 1.0, 0.0, None).blocked_until,
            Some(t1 + Duration::from_millis(200))
        );
        let t2 = t1 + Duration::from_millis(200);
        h.begin(0, t2);
        h.failure(0, t2, Verdict::Failure, None, "x");
        // Third would be 400, capped at 350.
        assert_eq!(
            h.view(0, t2, 1.0, 0.0, None).blocked_until,
            Some(t2 + Duration::from_millis(350))
        );
        let t3 = t2 + Duration::from_millis(350);
        h.begin(0, t3);
        h.success(0, t3, Some(10.0));
        let v = h.view(0, t3, 1.0, 0.0, None);
        assert!(v.available(t3) && v.blocked_until.is_none());
        assert_eq!(h.snapshot(0, t3)["circuit"], "closed");
    }

    #[test]
    fn neutral_outcomes_do_not_count_and_release_the_probe() {
        let h = Health::new(cfg(), 1);
        let t0 = Instant::now();
        for _ in 0..5 {
            h.begin(0, t0);
            h.failure(0, t0, Verdict::Neutral, None, "cancelled");
        }
        assert!(h.view(0, t0, 1.0, 0.0, None).available(t0));
        assert_eq!(h.snapshot(0, t0)["failures"], 0);
        assert_eq!(h.snapshot(0, t0)["in_flight"], 0);
    }

    #[test]
    fn concurrency_limit_and_percentiles() {
        let h = Health::new(cfg(), 1);
        let t0 = Instant::now();
        assert!(h.try_begin(0, t0, Some(2)));
        assert!(h.try_begin(0, t0, Some(2)));
        assert!(h.view(0, t0, 1.0, 0.0, Some(2)).full);
        assert!(!h.try_begin(0, t0, Some(2)));
        h.success(0, t0, None);
        assert!(h.try_begin(0, t0, Some(2)));
        assert_eq!(h.first_token_percentile(0, 0.9), None);
        for i in 1..=10 {
            h.first_token(0, t0, i as f64 * 10.0);
        }
        assert_eq!(h.first_token_percentile(0, 0.9), Some(90.0));
        assert_eq!(h.first_token_percentile(0, 0.0), Some(10.0));
    }

    #[test]
    fn export_import_round_trip() {
        let h = Health::new(cfg(), 1);
        let t0 = Instant::now();
        h.first_token(0, t0, 123.0);
        for _ in 0..2 {
            h.begin(0, t0);
            h.failure(
                0,
                t0,
                Verdict::Failure,
                Some(Duration::from_millis(500)),
                "x",
            );
        }
        let v = h.export(0, t0);
        let h2 = Health::new(cfg(), 1);
        h2.import(0, t0, &v);
        let w = h2.view(0, t0, 1.0, 0.0, None);
        assert_eq!(w.first_token_ms, Some(123.0));
        assert!(!w.available(t0), "open circuit carried over");
        assert_eq!(h2.export(0, t0)["ejections"], 1);
        h2.import(
            0,
            t0,
            &serde_json::json!({"first_token_ms": "x", "ejections": -1}),
        );
    }

    #[test]
    fn retry_after_blocks_until_deadline_capped() {
        let mut c = cfg();
        c.max_retry_after_ms = 1000;
        let h = Health::new(c, 1);
        let t0 = Instant::now();
        h.begin(0, t0);
        h.failure(
            0,
            t0,
            Verdict::Failure,
            Some(Duration::from_secs(3600)),
            "429",
        );
        assert_eq!(
            h.view(0, t0, 1.0, 0.0, None).blocked_until,
            Some(t0 + Duration::from_millis(1000))
        );
        assert_eq!(h.snapshot(0, t0)["rate_limited_for_ms"], 1000);
    }
}
