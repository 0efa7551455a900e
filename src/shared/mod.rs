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

// The settings resolve in the catalog; the runtime only reads them.
pub use crate::catalog::shared_settings::redact;
pub use crate::catalog::SharedSettings as Settings;

use crate::api::{SharedEndpointStats, SharedStatus};
use crate::catalog::shared_settings::scrub;
use crate::health::Latency;
use crate::routing::EndpointView;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// The most samples one average counts for in a merge (the local side
/// keeps at most this many recent latencies too).
pub const MAX_WEIGHT: f64 = 64.0;

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
#[derive(Clone, Debug, Default)]
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
    /// The recent values behind the percentile cutoffs (provider
    /// preferences), fresh ones only: first-token ms, response ms, output
    /// tokens/s (`Latency::index` order, then throughput).
    pub recent: [Vec<f32>; 3],
}

/// Which list of [`Aggregate::recent`] / [`Remote::recent`] holds output
/// throughputs (the latencies are at `Latency::index`).
pub const RECENT_THROUGHPUT: usize = 2;

/// The most recent values of one kind kept from all other instances
/// together.
pub const MAX_REMOTE_RECENT: usize = 256;

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
    /// The other instances' recent values ([`Aggregate::recent`]), pooled.
    pub recent: [Vec<f32>; 3],
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

    /// Like `release`, without waiting (a reload replaced this overlay;
    /// callable on a runtime thread).
    pub fn leave(&self) {
        let (tx, _rx) = std::sync::mpsc::channel();
        self.signal(Signal::Release(tx));
    }

    pub(crate) fn take_demand(&self, e: usize) -> u32 {
        self.demand[e].swap(0, Ordering::AcqRel)
    }

    /// The other instances' fresh recent values of list `which`
    /// ([`Aggregate::recent`]); empty when stale or none.
    pub fn recent(&self, e: usize, which: usize, now: Instant) -> Vec<f32> {
        let r = lock(&self.remote[e]);
        if r.fresh_until.is_some_and(|t| t > now) {
            r.recent[which].clone()
        } else {
            Vec::new()
        }
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
        let msg: String = scrub(message, self.settings.url())
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
    pub fn stats(&self, now: Instant) -> SharedStatus {
        let s = lock(&self.status);
        SharedStatus {
            connected: self.connected(),
            redis: redact(self.settings.url()),
            instance: self.instance.clone(),
            instances: s.instances,
            last_sync_ms_ago: s
                .last_sync
                .map(|t| now.saturating_duration_since(t).as_millis() as u64),
            syncs: self.syncs.load(Ordering::Relaxed),
            sync_errors: self.errors.load(Ordering::Relaxed),
            reconnects: self.reconnects.load(Ordering::Relaxed),
            last_error: s.last_error.clone(),
            sync_ms: self.settings.sync.as_millis() as u64,
        }
    }

    /// The per-endpoint `shared` object of the stats.
    pub fn endpoint_stats(&self, e: usize, now: Instant) -> SharedEndpointStats {
        let r = lock(&self.remote[e]);
        let fresh = r.fresh_until.is_some_and(|t| t > now);
        let left = |t: Option<Instant>| {
            t.filter(|&t| t > now)
                .map_or(0, |t| t.duration_since(now).as_millis() as u64)
        };
        let soft = |x: Option<(f64, f64)>| x.filter(|_| fresh);
        SharedEndpointStats {
            other_instances: if fresh { r.instances } else { 0 },
            others_first_token_ms: soft(r.first_token).map(|x| x.0),
            others_first_token_samples: soft(r.first_token).map_or(0.0, |x| x.1),
            others_response_ms: soft(r.response).map(|x| x.0),
            others_response_samples: soft(r.response).map_or(0.0, |x| x.1),
            others_throughput_tps: soft(r.throughput).map(|x| x.0),
            others_in_flight: if fresh { r.in_flight } else { 0 },
            others_requests: r.requests,
            others_failures: r.failures,
            others_failures_by_class: r.failure_classes.clone(),
            rate_limited_for_ms: left(r.rate_limited_until),
            ejected_for_ms: left(r.ejected_until),
            fleet_max_concurrency: self.settings.fleet_cap[e],
            leases: self.settings.fleet_cap[e].map(|_| r.leases),
        }
    }
}

#[cfg(test)]
mod tests;
