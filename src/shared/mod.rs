//! Health shared across processes on Redis or Valkey.
//!
//! The request path never waits on Redis. It reads [`Overlay`], local state
//! that the background task in [`sync`] merges in, and it pushes hard
//! signals (a Retry-After, an ejection vote, a recovery, a need for more
//! concurrency slots) into a channel that the task drains at once.
//!
//! - Soft signals: every `sync_ms` each instance writes its per-endpoint
//!   aggregates under a key that expires after three sync periods, reads
//!   every other instance's, and the merge (weighted by sample counts) is
//!   what routing reads next to the local averages.
//! - Retry-After: a key with that expiry plus a message on the channel;
//!   every instance skips the endpoint until then.
//! - Ejection: a local ejection is a vote; with `eject_quorum` votes within
//!   `eject_window_ms` the endpoint is ejected everywhere. The instance whose
//!   vote completed the quorum is the one that probes it when the ejection
//!   ends; the others wait for its verdict (or a grace period).
//! - Fleet-wide `max_concurrency`: slots are leases in a sorted set, renewed
//!   every sync; a process that dies stops renewing and its slots expire.
//! - Fail open: without Redis every instance runs on its own health.

mod sync;

pub(crate) use sync::run;

use crate::catalog::{Endpoint, Provider};
use crate::config::SharedConfig;
use crate::health::Latency;
use crate::routing::EndpointView;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// The most samples one average counts for in a merge (the local side
/// keeps at most this many recent latencies too).
pub const MAX_WEIGHT: f64 = 64.0;

/// The `shared` section, validated. `Debug` hides the URL.
#[derive(Clone)]
pub struct Settings {
    url: String,
    pub key_prefix: String,
    pub sync: Duration,
    pub timeout: Duration,
    pub eject_quorum: u32,
    pub eject_window: Duration,
    pub lease: Duration,
    /// Per catalog endpoint: its fleet-wide concurrency limit.
    pub fleet_cap: Vec<Option<u32>>,
    /// The PEM root certificate(s) for `rediss://`, from `tls_ca_file`.
    ca_pem: Option<Vec<u8>>,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("redis", &redact(&self.url))
            .field("key_prefix", &self.key_prefix)
            .field("sync", &self.sync)
            .finish_non_exhaustive()
    }
}

impl Settings {
    /// Validates the section; problems go to `err` with their JSON path.
    pub(crate) fn resolve(
        cfg: &SharedConfig,
        endpoints: &[Endpoint],
        providers: &[Provider],
        env: &dyn Fn(&str) -> Option<String>,
        err: &mut impl FnMut(String, String),
    ) -> Option<Settings> {
        let at = |f: &str| format!("shared.{f}");
        let url = resolve_url(cfg, env, err);
        for (name, v) in [("sync_ms", cfg.sync_ms), ("timeout_ms", cfg.timeout_ms)] {
            if v == 0 {
                err(at(name), "must be at least 1 ms".into());
            }
        }
        if cfg.eject_quorum == 0 {
            err(at("eject_quorum"), "must be at least 1".into());
        }
        if cfg.key_prefix.contains(char::is_whitespace) {
            err(at("key_prefix"), "must not contain spaces".into());
        }
        let lease_ms = cfg.lease_ms.unwrap_or(cfg.sync_ms.saturating_mul(3));
        if lease_ms <= cfg.sync_ms {
            err(at("lease_ms"), "must be longer than sync_ms".into());
        }
        let ca_pem = cfg.tls_ca_file.as_ref().and_then(|path| {
            let tls = url
                .as_deref()
                .is_some_and(|u| u.starts_with("rediss://") || u.starts_with("valkeys://"));
            if !tls {
                err(at("tls_ca_file"), "only for a rediss:// URL".into());
            }
            std::fs::read(path)
                .map_err(|e| err(at("tls_ca_file"), format!("cannot read {path:?}: {e}")))
                .ok()
        });
        let s = Settings {
            url: url?,
            key_prefix: cfg.key_prefix.clone(),
            sync: Duration::from_millis(cfg.sync_ms.max(1)),
            timeout: Duration::from_millis(cfg.timeout_ms.max(1)),
            eject_quorum: cfg.eject_quorum.max(1),
            eject_window: Duration::from_millis(cfg.eject_window_ms),
            lease: Duration::from_millis(lease_ms),
            fleet_cap: fleet_caps(cfg, endpoints, providers, err),
            ca_pem,
        };
        if let Err(e) = s.client() {
            let what = if s.ca_pem.is_some() {
                "tls_ca_file"
            } else {
                "redis_url"
            };
            err(
                at(what),
                scrub(&format!("cannot set up the Redis client: {e}"), &s.url),
            );
            return None;
        }
        Some(s)
    }

    /// The client for this URL (with the private CA when one is given).
    pub(crate) fn client(&self) -> redis::RedisResult<redis::Client> {
        match &self.ca_pem {
            Some(pem) => redis::Client::build_with_tls(
                self.url.as_str(),
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem.clone()),
                },
            ),
            None => redis::Client::open(self.url.as_str()),
        }
    }

    /// How long instances that did not vote stay away after a fleet
    /// ejection ends, waiting for the probing instance's verdict.
    pub fn probe_grace(&self) -> Duration {
        (self.sync * 3).max(Duration::from_secs(2))
    }
}

/// The URL from `redis_url` or `redis_url_env`, checked.
fn resolve_url(
    cfg: &SharedConfig,
    env: &dyn Fn(&str) -> Option<String>,
    err: &mut impl FnMut(String, String),
) -> Option<String> {
    let url = match (&cfg.redis_url, &cfg.redis_url_env) {
        (Some(u), None) => u.clone(),
        (None, Some(var)) => match env(var) {
            Some(u) => u,
            None => {
                let msg = format!("environment variable {var:?} is not set");
                err("shared.redis_url_env".into(), msg);
                return None;
            }
        },
        (Some(_), Some(_)) => {
            let msg = "give redis_url or redis_url_env, not both".into();
            err("shared.redis_url".into(), msg);
            return None;
        }
        (None, None) => {
            err(
                "shared.redis_url".into(),
                "missing (or set redis_url_env)".into(),
            );
            return None;
        }
    };
    let scheme_ok = ["redis://", "rediss://", "valkey://", "valkeys://"]
        .iter()
        .any(|s| url.starts_with(s));
    if !scheme_ok || redis::Client::open(url.as_str()).is_err() {
        let msg = format!("{} is not a redis:// or rediss:// URL", redact(&url));
        err("shared.redis_url".into(), msg);
    }
    Some(url)
}

/// Per endpoint, its fleet-wide limit: `fleet_concurrency` names endpoint
/// ids or provider slugs; a named endpoint needs a `max_concurrency`.
fn fleet_caps(
    cfg: &SharedConfig,
    endpoints: &[Endpoint],
    providers: &[Provider],
    err: &mut impl FnMut(String, String),
) -> Vec<Option<u32>> {
    let mut caps = vec![None; endpoints.len()];
    for (i, name) in cfg.fleet_concurrency.iter().enumerate() {
        let path = format!("shared.fleet_concurrency[{i}]");
        let matching: Vec<usize> = (0..endpoints.len())
            .filter(|&e| endpoints[e].id == *name || providers[endpoints[e].provider].slug == *name)
            .collect();
        if matching.is_empty() {
            let msg = format!("{name:?} is neither an endpoint id nor a provider slug");
            err(path.clone(), msg);
        }
        for e in matching {
            match endpoints[e].max_concurrency {
                Some(n) => caps[e] = Some(n),
                None if endpoints[e].id == *name => err(
                    path.clone(),
                    format!("endpoint {name:?} has no max_concurrency"),
                ),
                None => {}
            }
        }
    }
    caps
}

/// A URL with its password replaced by `***`.
pub fn redact(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            u.to_string()
        }
        Err(_) => "(unparsable URL)".into(),
    }
}

/// `text` with every form of the URL's password replaced by `***`.
pub(crate) fn scrub(text: &str, url: &str) -> String {
    let Ok(u) = reqwest::Url::parse(url) else {
        return text.to_owned();
    };
    let Some(raw) = u.password().filter(|p| !p.is_empty()) else {
        return text.to_owned();
    };
    let mut out = text.replace(raw, "***");
    if let Ok(dec) = percent_decode(raw) {
        if !dec.is_empty() {
            out = out.replace(&dec, "***");
        }
    }
    out
}

fn percent_decode(s: &str) -> Result<String, ()> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let h = std::str::from_utf8(&b[i + 1..i + 3]).map_err(|_| ())?;
            out.push(u8::from_str_radix(h, 16).map_err(|_| ())?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| ())
}

/// What the request path tells the sync task.
#[derive(Debug)]
pub enum Signal {
    /// A provider said Retry-After for this long.
    RetryAfter(usize, Duration),
    /// The local circuit opened for this long: a vote.
    Ejected(usize, Duration),
    /// The local circuit closed again after being open.
    Recovered(usize),
    /// A request found the endpoint's fleet slots full.
    Demand(usize),
    /// The engine is being freed: give back every slot and leave; answer
    /// on the sender when done.
    Release(std::sync::mpsc::Sender<()>),
}

/// One endpoint's local aggregates, as pushed to the other instances.
#[derive(Clone, Copy, Debug, Default)]
pub struct Aggregate {
    pub first_token_ms: Option<f64>,
    pub first_token_samples: u64,
    /// Complete-response latency of non-streaming requests.
    pub response_ms: Option<f64>,
    pub response_samples: u64,
    pub throughput: Option<f64>,
    pub throughput_samples: u64,
    pub in_flight: u32,
    pub requests: u64,
    pub failures: u64,
}

/// Failures by class (`http_503`, `connect_error`, `first_token_timeout`...).
pub type FailureClasses = BTreeMap<String, u64>;

/// What the other instances know about one endpoint, merged.
#[derive(Clone, Debug, Default)]
pub(crate) struct Remote {
    /// (average, weight) of the other instances' first-token latency.
    pub first_token: Option<(f64, f64)>,
    /// (average, weight) of their complete-response latency (non-streaming).
    pub response: Option<(f64, f64)>,
    pub throughput: Option<(f64, f64)>,
    pub in_flight: u32,
    pub requests: u64,
    pub failures: u64,
    pub failure_classes: FailureClasses,
    pub instances: u32,
    /// Soft data is ignored after this.
    pub fresh_until: Option<Instant>,
    pub rate_limited_until: Option<Instant>,
    /// Ejected fleet-wide by a quorum (and another instance probes it).
    pub ejected_until: Option<Instant>,
    /// Fleet-wide concurrency slots this instance holds.
    pub leases: u32,
}

/// Connection state for stats.
#[derive(Debug, Default)]
struct Status {
    last_sync: Option<Instant>,
    last_error: Option<String>,
    instances: u32,
}

/// The local picture of the fleet that routing reads; written by the sync
/// task, read (never awaited) by the request path.
pub struct Overlay {
    pub(crate) settings: Settings,
    pub(crate) instance: String,
    remote: Vec<Mutex<Remote>>,
    demand: Vec<AtomicU32>,
    /// This instance's failures by class, per endpoint.
    classes: Vec<Mutex<FailureClasses>>,
    tx: mpsc::UnboundedSender<Signal>,
    connected: AtomicBool,
    syncs: AtomicU64,
    errors: AtomicU64,
    reconnects: AtomicU64,
    status: Mutex<Status>,
}

impl std::fmt::Debug for Overlay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Overlay")
            .field("settings", &self.settings)
            .field("instance", &self.instance)
            .field("connected", &self.connected())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A reasonably unique id for this process: pid and a clock-derived tag.
fn instance_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut x = nanos ^ ((std::process::id() as u64) << 32) ^ 0x9E37_79B9_7F4A_7C15;
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    format!("{}-{:08x}", std::process::id(), x as u32)
}

/// Merges a local average (with its sample count) and a remote one.
fn merge(local: Option<f64>, local_n: u64, remote: Option<(f64, f64)>) -> Option<f64> {
    match (local, remote) {
        (Some(l), Some((r, w))) if w > 0.0 => {
            let lw = (local_n.max(1) as f64).min(MAX_WEIGHT);
            Some((l * lw + r * w) / (lw + w))
        }
        (Some(l), _) => Some(l),
        (None, Some((r, _))) => Some(r),
        (None, None) => None,
    }
}

impl Overlay {
    /// A new overlay and the receiver its sync task drains (the engine
    /// builds both; public for benchmarks).
    pub fn new(settings: Settings, endpoints: usize) -> (Overlay, mpsc::UnboundedReceiver<Signal>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let o = Overlay {
            settings,
            instance: instance_id(),
            remote: (0..endpoints)
                .map(|_| Mutex::new(Remote::default()))
                .collect(),
            demand: (0..endpoints).map(|_| AtomicU32::new(0)).collect(),
            classes: (0..endpoints).map(|_| Mutex::default()).collect(),
            tx,
            connected: AtomicBool::new(false),
            syncs: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            status: Mutex::new(Status::default()),
        };
        (o, rx)
    }

    fn signal(&self, s: Signal) {
        // The task outlives every sender use but runtime teardown; a closed
        // channel only means nobody listens any more.
        let _ = self.tx.send(s);
    }

    /// Adds what the fleet knows to a local routing view.
    ///
    /// `kind` says which latency the request ranks by; what the fleet has
    /// measured counts as measured here too, so a new instance does not
    /// re-explore what the others already know.
    pub fn apply(
        &self,
        e: usize,
        now: Instant,
        v: &mut EndpointView,
        kind: Latency,
        samples: (u64, u64),
    ) {
        let r = lock(&self.remote[e]);
        if r.fresh_until.is_some_and(|t| t > now) {
            let remote = match kind {
                Latency::FirstToken => r.first_token,
                Latency::Response => r.response,
            };
            v.first_token_ms = merge(v.first_token_ms, samples.0, remote);
            if remote.is_some() && v.last_sample.is_none() {
                v.last_sample = Some(now);
            }
            v.throughput = merge(v.throughput, samples.1, r.throughput);
            v.in_flight = v.in_flight.saturating_add(r.in_flight);
        }
        for t in [r.rate_limited_until, r.ejected_until]
            .into_iter()
            .flatten()
        {
            if t > now && v.blocked_until.is_none_or(|b| b < t) {
                v.blocked_until = Some(t);
            }
        }
    }

    /// True while the fleet keeps this instance away from the endpoint.
    pub fn blocked(&self, e: usize, now: Instant) -> bool {
        let r = lock(&self.remote[e]);
        [r.rate_limited_until, r.ejected_until]
            .into_iter()
            .flatten()
            .any(|t| t > now)
    }

    /// The in-flight limit this process may use: its leases for a
    /// fleet-wide limit (a fair share of it while Redis is unreachable),
    /// the configured limit otherwise.
    pub fn limit(&self, e: usize, configured: Option<u32>) -> Option<u32> {
        let Some(cap) = self.settings.fleet_cap[e] else {
            return configured;
        };
        if self.connected.load(Ordering::Acquire) {
            Some(lock(&self.remote[e]).leases)
        } else {
            let n = lock(&self.status).instances.max(1);
            Some(cap.div_ceil(n))
        }
    }

    /// A request found the endpoint's slots full: ask for more.
    pub fn refused(&self, e: usize) {
        if self.settings.fleet_cap[e].is_some()
            && self.connected.load(Ordering::Acquire)
            && self.demand[e].fetch_add(1, Ordering::AcqRel) == 0
        {
            self.signal(Signal::Demand(e));
        }
    }

    pub fn retry_after(&self, e: usize, d: Duration) {
        self.signal(Signal::RetryAfter(e, d));
    }

    pub fn ejected(&self, e: usize, d: Duration) {
        self.signal(Signal::Ejected(e, d));
    }

    pub fn recovered(&self, e: usize) {
        self.signal(Signal::Recovered(e));
    }

    /// Counts a failed attempt by its class (an outcome name, or
    /// `http_STATUS` for HTTP errors).
    pub fn count_failure(&self, e: usize, kind: &str, status: Option<u16>) {
        let class = match status {
            // Every HTTP error status outcome (auth_rejected, server_error,
            // ...) is counted by its status.
            Some(s) => format!("http_{s}"),
            _ => kind.to_owned(),
        };
        *lock(&self.classes[e]).entry(class).or_insert(0) += 1;
    }

    pub(crate) fn failure_classes(&self, e: usize) -> FailureClasses {
        lock(&self.classes[e]).clone()
    }

    /// Gives this instance's fleet slots back and removes its aggregates,
    /// waiting at most `timeout_ms` twice (called when the engine is freed;
    /// without it they expire after `lease_ms`). Must not run on a runtime
    /// thread.
    pub fn release(&self) {
        if !self.connected() {
            return;
        }
        let (tx, rx) = std::sync::mpsc::channel();
        self.signal(Signal::Release(tx));
        let _ = rx.recv_timeout(self.settings.timeout * 2);
    }

    pub(crate) fn take_demand(&self, e: usize) -> u32 {
        self.demand[e].swap(0, Ordering::AcqRel)
    }

    pub(crate) fn with_remote<T>(&self, e: usize, f: impl FnOnce(&mut Remote) -> T) -> T {
        f(&mut lock(&self.remote[e]))
    }

    pub(crate) fn synced(&self, now: Instant, instances: u32) {
        self.connected.store(true, Ordering::Release);
        self.syncs.fetch_add(1, Ordering::Relaxed);
        let mut s = lock(&self.status);
        s.last_sync = Some(now);
        s.instances = instances;
    }

    pub(crate) fn connected_again(&self) {
        self.reconnects.fetch_add(1, Ordering::Relaxed);
    }

    /// The sync failed: local health only until it works again. The
    /// message has the URL's password scrubbed.
    pub(crate) fn failed(&self, message: &str) {
        self.connected.store(false, Ordering::Release);
        self.errors.fetch_add(1, Ordering::Relaxed);
        let msg: String = scrub(message, &self.settings.url)
            .chars()
            .take(300)
            .collect();
        lock(&self.status).last_error = Some(msg);
        for r in &self.remote {
            lock(r).leases = 0;
        }
    }

    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }

    /// The `shared` object of the stats JSON.
    pub fn stats(&self, now: Instant) -> Value {
        let s = lock(&self.status);
        json!({
            "enabled": true,
            "connected": self.connected(),
            "redis": redact(&self.settings.url),
            "instance": self.instance,
            "instances": s.instances,
            "last_sync_ms_ago": s.last_sync.map(|t| now.saturating_duration_since(t).as_millis() as u64),
            "syncs": self.syncs.load(Ordering::Relaxed),
            "sync_errors": self.errors.load(Ordering::Relaxed),
            "reconnects": self.reconnects.load(Ordering::Relaxed),
            "last_error": s.last_error,
            "sync_ms": self.settings.sync.as_millis() as u64,
        })
    }

    /// The per-endpoint `shared` object of the stats JSON.
    pub fn endpoint_stats(&self, e: usize, now: Instant) -> Value {
        let r = lock(&self.remote[e]);
        let fresh = r.fresh_until.is_some_and(|t| t > now);
        let left = |t: Option<Instant>| {
            t.filter(|&t| t > now)
                .map_or(0, |t| t.duration_since(now).as_millis() as u64)
        };
        json!({
            "other_instances": if fresh { r.instances } else { 0 },
            "others_first_token_ms": r.first_token.filter(|_| fresh).map(|x| x.0),
            "others_first_token_samples": r.first_token.filter(|_| fresh).map_or(0.0, |x| x.1),
            "others_response_ms": r.response.filter(|_| fresh).map(|x| x.0),
            "others_response_samples": r.response.filter(|_| fresh).map_or(0.0, |x| x.1),
            "others_throughput_tps": r.throughput.filter(|_| fresh).map(|x| x.0),
            "others_in_flight": if fresh { r.in_flight } else { 0 },
            "others_requests": r.requests,
            "others_failures": r.failures,
            "others_failures_by_class": r.failure_classes,
            "rate_limited_for_ms": left(r.rate_limited_until),
            "ejected_for_ms": left(r.ejected_until),
            "fleet_max_concurrency": self.settings.fleet_cap[e],
            "leases": self.settings.fleet_cap[e].map(|_| r.leases),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_hides_passwords() {
        assert_eq!(
            redact("redis://user:s3cr%40t@host:6379/0"),
            "redis://user:***@host:6379/0"
        );
        assert_eq!(redact("redis://host:6379"), "redis://host:6379");
        let url = "rediss://:p%40ss@h:1/0";
        assert_eq!(
            scrub("auth p%40ss and p@ss failed", url),
            "auth *** and *** failed"
        );
    }

    fn overlay(
        fleet: bool,
    ) -> (
        crate::health::Health,
        std::sync::Arc<Overlay>,
        mpsc::UnboundedReceiver<Signal>,
    ) {
        let shared = if fleet {
            json!({"redis_url": "redis://127.0.0.1:9/0", "fleet_concurrency": ["p"]})
        } else {
            json!({"redis_url": "redis://127.0.0.1:9/0"})
        };
        let cfg = json!({
            "providers": [{"slug": "p", "protocol": "openai", "base_url": "http://127.0.0.1:9/v1"}],
            "models": [{"slug": "t/m", "endpoints": [
                {"provider": "p", "upstream_model": "m", "max_concurrency": 4}]}],
            "health": {"failure_threshold": 1},
            "shared": shared,
        });
        let cat = crate::catalog::Catalog::from_json(&cfg.to_string()).unwrap();
        let (o, rx) = Overlay::new(cat.shared.clone().unwrap(), 1);
        let o = std::sync::Arc::new(o);
        let mut h = crate::health::Health::new(cat.health, 1);
        h.set_shared(o.clone());
        (h, o, rx)
    }

    #[test]
    fn hard_signals_go_out_and_remote_ones_block() {
        use crate::health::Verdict;
        let (h, o, mut rx) = overlay(false);
        let t0 = Instant::now();
        h.begin(0, t0);
        h.failure(
            0,
            t0,
            Verdict::Failure,
            Some(Duration::from_secs(30)),
            "429",
        );
        assert!(
            matches!(rx.try_recv(), Ok(Signal::RetryAfter(0, d)) if d == Duration::from_secs(30))
        );
        assert!(matches!(rx.try_recv(), Ok(Signal::Ejected(0, _))));
        let t1 = t0 + Duration::from_secs(60);
        h.begin(0, t1);
        h.success(0, t1, None);
        assert!(matches!(rx.try_recv(), Ok(Signal::Recovered(0))));
        // Another instance's ejection blocks routing and the active probe.
        o.with_remote(0, |r| r.ejected_until = Some(t1 + Duration::from_secs(5)));
        assert!(!h.view(0, t1, 1.0, 0.0, None).available(t1));
        assert!(!h.probe_due(0, t1));
        // Soft data counts only while fresh.
        o.with_remote(0, |r| {
            r.ejected_until = None;
            r.first_token = Some((40.0, 4.0));
            r.fresh_until = Some(t1 + Duration::from_secs(1));
        });
        assert_eq!(h.view(0, t1, 1.0, 0.0, None).first_token_ms, Some(40.0));
        let late = t1 + Duration::from_secs(2);
        assert_eq!(h.view(0, late, 1.0, 0.0, None).first_token_ms, None);
    }

    #[test]
    fn fleet_limit_is_the_leases_or_a_fair_share_offline() {
        let (h, o, mut rx) = overlay(true);
        let t0 = Instant::now();
        // Offline, alone: the whole limit.
        assert_eq!(o.limit(0, Some(4)), Some(4));
        o.synced(t0, 3);
        // Online without leases: full, and ranking asks for a slot once.
        assert!(h.view(0, t0, 1.0, 0.0, Some(4)).full);
        assert!(!h.try_begin(0, t0, Some(4)));
        assert!(matches!(rx.try_recv(), Ok(Signal::Demand(0))));
        assert!(rx.try_recv().is_err(), "demand is coalesced");
        assert_eq!(o.take_demand(0), 2);
        o.with_remote(0, |r| r.leases = 1);
        assert!(h.try_begin(0, t0, Some(4)));
        assert!(!h.try_begin(0, t0, Some(4)));
        // Offline after seeing three instances: a third of the limit.
        o.failed("connection refused");
        assert_eq!(o.limit(0, Some(4)), Some(2));
    }

    #[test]
    fn merge_weights_by_samples() {
        assert_eq!(merge(None, 0, Some((30.0, 1.0))), Some(30.0));
        assert_eq!(merge(Some(100.0), 3, None), Some(100.0));
        let m = merge(Some(100.0), 1, Some((10.0, 9.0))).unwrap();
        assert!((m - 19.0).abs() < 1e-9, "{m}");
    }
}
