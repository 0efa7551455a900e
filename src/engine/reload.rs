//! Issue 24: a new catalog swapped in live, losing nothing.
//!
//! A reload validates the new catalog first (an invalid one is refused with
//! every error; the old keeps serving), then builds the next generation: an
//! endpoint that survives (same model slug, provider and endpoint name, i.e.
//! the identity `model|provider/name`) keeps its very health state (the
//! same `Arc`: latencies, percentiles, circuit, in-flight count) and its
//! sticky keys; a new endpoint starts fresh. The swap is one pointer store:
//! a request started before it keeps the generation it started on to its
//! end (so a removed endpoint drains: its in-flight requests finish, no new
//! one reaches it), a request started after sees the new one.

use super::{lock, probe_loop, Engine, Inner};
use crate::catalog::Catalog;
use crate::config::{ConfigError, ConfigErrors, HttpVersion, DEFAULT_TIMEOUTS};
use crate::events::EventQueue;
use crate::health::Health;
use crate::shared::Signal;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedReceiver;

/// One endpoint named in a [`ReloadReport`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadEndpoint {
    /// The model slug.
    pub model: String,
    /// The endpoint id, `provider/name`.
    pub endpoint: String,
}

/// What a reload changed.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ReloadReport {
    /// The catalog generation now serving (0 was the first catalog).
    pub generation: u64,
    /// Endpoints new in this catalog (they start unmeasured).
    pub added: Vec<ReloadEndpoint>,
    /// Endpoints gone: no new request reaches them; their in-flight
    /// requests finish on the old catalog.
    pub removed: Vec<ReloadEndpoint>,
    /// Endpoints in both: their health, percentiles, circuit and sticky
    /// keys carry over (prices and other settings are the new ones).
    pub kept: Vec<ReloadEndpoint>,
    /// Requests still running on older catalogs when the swap happened.
    pub draining_requests: usize,
    /// Settings that changed but only take effect on a restart (the
    /// engine keeps the old value): `worker_threads`, `telemetry`,
    /// `user_budgets.file` (the budget store is kept, with its ledgers).
    pub restart_required: Vec<String>,
    /// The new catalog's warnings (as `llmux check` shows them).
    pub warnings: Vec<ConfigError>,
}

impl ReloadReport {
    /// The report as JSON (`llmux_engine_reload`).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// `model|provider/name`: who an endpoint is across catalogs.
fn identities(c: &Catalog) -> Vec<Arc<str>> {
    c.endpoints
        .iter()
        .map(|e| Arc::from(format!("{}|{}", c.models[e.model].slug, e.id)))
        .collect()
}

fn endpoint_of(c: &Catalog, e: usize) -> ReloadEndpoint {
    ReloadEndpoint {
        model: c.models[c.endpoints[e].model].slug.clone(),
        endpoint: c.endpoints[e].id.clone(),
    }
}

impl Inner {
    /// A generation for `catalog`: the first one (`base` None) or the one
    /// after `base`, sharing its engine-wide parts and the health of the
    /// endpoints both have. Also returns the shared-health receiver its
    /// sync task drains, when health is shared.
    /// `budgets`: the `user_budgets` store, shared by every generation.
    pub(super) fn build(
        catalog: Catalog,
        base: Option<&Inner>,
        budgets: Option<Arc<crate::budget::Budgets>>,
    ) -> Result<(Inner, Option<UnboundedReceiver<Signal>>), String> {
        let identity = identities(&catalog);
        let index: HashMap<Arc<str>, usize> = identity
            .iter()
            .enumerate()
            .map(|(i, k)| (k.clone(), i))
            .collect();
        let mut health = match base {
            Some(b) => {
                let from: Vec<Option<usize>> =
                    identity.iter().map(|k| b.index.get(k).copied()).collect();
                b.health.carry(catalog.health, &from)
            }
            None => Health::new(catalog.health, catalog.endpoints.len()),
        };
        let shared = catalog.shared.clone().map(|s| {
            let (overlay, rx) = crate::shared::Overlay::new(s, catalog.endpoints.len());
            health.set_shared(Arc::new(overlay));
            rx
        });
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x9E37_79B9_7F4A_7C15)
            | 1;
        let same_transport = base.is_some_and(|b| {
            b.catalog.proxy == catalog.proxy && b.catalog.upstream_ca == catalog.upstream_ca
        });
        let inner = Inner {
            clients: match base {
                Some(b) if same_transport => b.clients.clone(),
                _ => Arc::new(Mutex::new(HashMap::new())),
            },
            queue: base.map_or_else(|| Arc::new(EventQueue::new()), |b| b.queue.clone()),
            cancels: base.map_or_else(Default::default, |b| b.cancels.clone()),
            next_id: base.map_or_else(|| Arc::new(AtomicU64::new(1)), |b| b.next_id.clone()),
            rng: AtomicU64::new(seed),
            active: base.map_or_else(|| Arc::new(AtomicUsize::new(0)), |b| b.active.clone()),
            closing: base.map_or_else(Default::default, |b| b.closing.clone()),
            sticky: base.map_or_else(Default::default, |b| b.sticky.clone()),
            reloads: base.map_or_else(Default::default, |b| b.reloads.clone()),
            tracer: base.and_then(|b| b.tracer.clone()),
            generation: base.map_or(0, |b| b.generation + 1),
            retired: Arc::new(tokio::sync::Notify::new()),
            retired_flag: AtomicBool::new(false),
            budgets,
            catalog,
            health,
            index,
            identity,
        };
        // Build the default client now so a TLS or proxy problem shows here.
        let connect = inner
            .catalog
            .timeouts
            .connect_ms
            .or(DEFAULT_TIMEOUTS.connect_ms)
            .unwrap_or(5000);
        inner.client(connect, HttpVersion::default())?;
        Ok((inner, shared))
    }

    /// Marks this generation replaced: its probe loop and shared-health
    /// sync end (the sync gives this instance's fleet slots back first).
    fn retire(&self) {
        self.retired_flag.store(true, Ordering::Release);
        self.retired.notify_one();
        if let Some(o) = self.health.shared() {
            o.leave();
        }
    }
}

/// Starts a generation's background tasks: shared-health sync and active
/// probes, each ending when the generation is retired.
pub(super) fn start_tasks(
    rt: &tokio::runtime::Runtime,
    inner: &Arc<Inner>,
    shared_rx: Option<UnboundedReceiver<Signal>>,
) {
    if let (Some(rx), Some(overlay)) = (shared_rx, inner.health.shared_arc()) {
        let keys = inner.identity.iter().map(|k| k.to_string()).collect();
        let health_of = inner.clone();
        let aggregate = move |e: usize, now: Instant| health_of.health.aggregate(e, now);
        let grace = overlay.settings.timeout * 2;
        let retired = inner.retired.clone();
        rt.spawn(async move {
            tokio::select! {
                _ = crate::shared::run(overlay, rx, keys, aggregate) => {}
                _ = async {
                    retired.notified().await;
                    // Time for the release `retire` asked for.
                    tokio::time::sleep(grace).await;
                } => {}
            }
        });
    }
    if let Some(ms) = inner.catalog.health.active_probe_interval_ms {
        rt.spawn(probe_loop(inner.clone(), Duration::from_millis(ms)));
    }
}

impl Engine {
    /// Reloads from JSON config text: see [`Engine::reload`].
    pub fn reload_json(&self, config: &str) -> Result<ReloadReport, ConfigErrors> {
        self.reload(Catalog::from_json(config)?)
    }

    /// Reloads from a JSON config file: see [`Engine::reload`].
    pub fn reload_file(&self, path: &std::path::Path) -> Result<ReloadReport, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors(vec![ConfigError {
                path: String::new(),
                message: format!("cannot read config file {}: {e}", path.display()),
            }])
        })?;
        self.reload_json(&text)
    }

    /// Swaps in a new, already validated catalog without losing anything:
    /// endpoints in both catalogs keep their health, percentiles, circuit
    /// and sticky keys; requests in flight finish on the catalog they
    /// started with; new requests see the new one. Refused (nothing
    /// changes) when the engine is shutting down or the new catalog's HTTP
    /// client cannot be built (a bad proxy).
    pub fn reload(&self, catalog: Catalog) -> Result<ReloadReport, ConfigErrors> {
        let refuse = |path: &str, message: String| {
            ConfigErrors(vec![ConfigError {
                path: path.into(),
                message,
            }])
        };
        let Some(rt) = &self.runtime else {
            return Err(refuse("", "the engine is shutting down".into()));
        };
        let _one = lock(&self.reloading);
        let old = self.inner();
        if old.closing.load(Ordering::Acquire) {
            return Err(refuse("", "the engine is shutting down".into()));
        }
        let mut restart_required = Vec::new();
        if catalog.worker_threads != old.catalog.worker_threads {
            restart_required.push("worker_threads".to_owned());
        }
        if catalog.telemetry != old.catalog.telemetry {
            restart_required.push("telemetry".to_owned());
        }
        let warnings = catalog.warnings.clone();
        let budgets = carried_budgets(&old, &catalog, &mut restart_required)?;
        let (next, shared_rx) =
            Inner::build(catalog, Some(&old), budgets).map_err(|m| refuse("proxy", m))?;
        let next = Arc::new(next);
        let report = report(&old, &next, restart_required, warnings);
        start_tasks(rt, &next, shared_rx);
        next.reloads.fetch_add(1, Ordering::AcqRel);
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = next.clone();
        old.retire();
        Ok(ReloadReport {
            draining_requests: next.active.load(Ordering::Acquire),
            ..report
        })
    }

    /// The catalog generation serving new requests (0 until a reload).
    pub fn generation(&self) -> u64 {
        self.inner().generation
    }
}

/// The `user_budgets` store of the next generation: the engine's one, so
/// spend, reservations and windows survive the reload (a changed `file` or
/// `fsync` takes a restart); opened now when the first catalog had none.
fn carried_budgets(
    old: &Inner,
    catalog: &Catalog,
    restart_required: &mut Vec<String>,
) -> Result<Option<Arc<crate::budget::Budgets>>, ConfigErrors> {
    let Some(b) = &old.budgets else {
        return super::user_budget_store(catalog).map_err(|e| match e {
            super::EngineError::Config(c) => c,
            other => ConfigErrors(vec![ConfigError {
                path: "user_budgets".into(),
                message: other.to_string(),
            }]),
        });
    };
    let file = |c: &Catalog| c.user_budgets.as_ref().map(|u| (u.file.clone(), u.fsync));
    if catalog.user_budgets.is_some() && file(catalog) != file(&old.catalog) {
        restart_required.push("user_budgets.file".to_owned());
    }
    Ok(Some(b.clone()))
}

fn report(
    old: &Inner,
    next: &Inner,
    restart_required: Vec<String>,
    warnings: Vec<ConfigError>,
) -> ReloadReport {
    let mut r = ReloadReport {
        generation: next.generation,
        restart_required,
        warnings,
        ..ReloadReport::default()
    };
    for (e, k) in next.identity.iter().enumerate() {
        let which = if old.index.contains_key(k) {
            &mut r.kept
        } else {
            &mut r.added
        };
        which.push(endpoint_of(&next.catalog, e));
    }
    for (e, k) in old.identity.iter().enumerate() {
        if !next.index.contains_key(k) {
            r.removed.push(endpoint_of(&old.catalog, e));
        }
    }
    r
}
