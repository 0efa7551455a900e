//! Issue 24: reloading a running gateway's catalog from its config file,
//! on SIGHUP, on `POST /admin/reload`, and (`--watch`) when the file
//! changes. The engine swaps the catalog without losing streams or learned
//! health ([`llmux::Engine::reload`]); an invalid file changes nothing.
//! The `gateway` section is read too: its caller keys and their policies
//! are replaced (by name: a key's budget and limits go on counting), and
//! so are its limits, body limit and keep-alive interval, for the
//! connections and requests that start from then on; its other settings
//! (listen address, the key budget store, drain time, health file, TLS
//! files) are fixed at start: a changed one is reported as needing a
//! restart. Each reload leaves one log line and counts in
//! `llmux_reloads_total`.

use crate::config::{self, CallerKey, GatewayConfig, Knobs, LiveKeys};
use crate::limits::EdgeLimits;
use crate::record::LogFormat;
use llmux::{Engine, ReloadEndpoint};
use serde::Serialize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// How often `--watch` looks at the config file.
const WATCH_EVERY: Duration = Duration::from_secs(1);

/// What a reload did, as `POST /admin/reload` answers and the log shows.
#[derive(Serialize, Debug)]
pub struct Outcome {
    /// `sighup`, `http`, `watch`.
    pub trigger: &'static str,
    pub ok: bool,
    /// The catalog generation now serving.
    pub generation: u64,
    pub added: Vec<ReloadEndpoint>,
    pub removed: Vec<ReloadEndpoint>,
    /// The caller keys added, removed and changed, by name.
    pub keys: KeyChanges,
    /// Gateway settings changed in place (`gateway.limits`, ...).
    pub applied: Vec<&'static str>,
    pub kept: usize,
    pub draining_requests: usize,
    /// Changed settings that only a restart applies (`gateway.listen`, ...).
    pub restart_required: Vec<String>,
    /// Why the file was refused (each with its JSON path); empty when ok.
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
    pub duration_ms: f64,
}

/// Caller keys a reload added, removed or changed (secret or policy), by
/// name; never a secret.
#[derive(Serialize, Debug, Default, PartialEq)]
pub struct KeyChanges {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
}

impl KeyChanges {
    fn between(old: &[Arc<CallerKey>], new: &[CallerKey]) -> KeyChanges {
        let same = |a: &CallerKey, b: &CallerKey| {
            a.secret == b.secret && format!("{:?}", a.policy) == format!("{:?}", b.policy)
        };
        let find = |name: &str| old.iter().find(|k| k.name == name);
        let mut c = KeyChanges::default();
        for k in new {
            match find(&k.name) {
                None => c.added.push(k.name.clone()),
                Some(o) if !same(o, k) => c.changed.push(k.name.clone()),
                Some(_) => {}
            }
        }
        c.removed = old
            .iter()
            .filter(|o| !new.iter().any(|k| k.name == o.name))
            .map(|o| o.name.clone())
            .collect();
        c
    }
}

/// Reloads one engine from one config file; one reload at a time.
pub struct Reloader {
    path: PathBuf,
    engine: Arc<Engine>,
    /// The caller keys the server checks, replaced by each reload.
    pub keys: Arc<LiveKeys>,
    /// The edge's limits, replaced by each reload.
    pub limits: Arc<EdgeLimits>,
    /// The body limit and keep-alive interval, set by each reload.
    pub knobs: Arc<Knobs>,
    /// `--insecure-no-auth`: a reload may leave a non-loopback gateway
    /// without keys.
    insecure_no_auth: bool,
    /// The `gateway` section the server started with.
    started: Fixed,
    log: LogFormat,
    busy: tokio::sync::Mutex<()>,
    /// The file's stamp when last read (for `--watch`).
    seen: std::sync::Mutex<Option<(SystemTime, u64)>>,
}

/// The `gateway` settings a reload cannot change.
#[derive(PartialEq)]
struct Fixed {
    listen: std::net::SocketAddr,
    /// `gateway.budgets` (the key budget store), compared as a whole: it
    /// is fixed at start, so the keys' ledgers live as long as the process.
    budgets: String,
    drain_ms: u64,
    health_file: Option<PathBuf>,
    /// `gateway.tls` (which files, or none): the certificate files
    /// themselves are read again on every SIGHUP (tls.rs).
    tls: String,
}

impl Fixed {
    fn of(g: &GatewayConfig) -> Fixed {
        Fixed {
            listen: g.listen,
            budgets: format!("{:?}", g.store),
            drain_ms: g.drain_ms,
            health_file: g.health_file.clone(),
            tls: format!("{:?}", g.tls),
        }
    }

    /// The names of the settings that differ.
    fn changed(&self, new: &Fixed) -> Vec<String> {
        let mut v = Vec::new();
        let mut diff = |same: bool, name: &str| {
            if !same {
                v.push(format!("gateway.{name}"));
            }
        };
        diff(self.listen == new.listen, "listen");
        diff(self.budgets == new.budgets, "budgets");
        diff(self.drain_ms == new.drain_ms, "drain_ms");
        diff(self.health_file == new.health_file, "health_file");
        diff(self.tls == new.tls, "tls");
        v
    }
}

impl Reloader {
    /// `started` is the gateway section in force (after `--listen`),
    /// whose keys were taken out as `keys`.
    pub fn new(
        path: PathBuf,
        engine: Arc<Engine>,
        started: &GatewayConfig,
        (log, insecure_no_auth): (LogFormat, bool),
        keys: Vec<CallerKey>,
    ) -> Self {
        Reloader {
            seen: std::sync::Mutex::new(stamp(&path)),
            path,
            engine,
            keys: Arc::new(LiveKeys::new(keys)),
            limits: EdgeLimits::new(started.limits.clone()),
            knobs: Arc::new(Knobs::new(started)),
            insecure_no_auth,
            started: Fixed::of(started),
            log,
            busy: tokio::sync::Mutex::new(()),
        }
    }

    /// Whether `POST /admin/reload` may run without a key: only when the
    /// gateway listens on loopback (without keys, anyone who can connect
    /// could reload).
    pub fn open_without_keys(&self) -> bool {
        self.started.listen.ip().is_loopback()
    }

    /// Reads the config file and reloads the engine from it, then logs and
    /// counts the outcome.
    pub async fn reload(self: &Arc<Self>, trigger: &'static str) -> Outcome {
        let _one = self.busy.lock().await;
        let me = self.clone();
        let start = Instant::now();
        let mut out = tokio::task::spawn_blocking(move || me.apply(trigger))
            .await
            .unwrap_or_else(|e| failed(trigger, vec![format!("the reload task failed: {e}")]));
        out.duration_ms = start.elapsed().as_secs_f64() * 1000.0;
        let result = if out.ok { "ok" } else { "error" };
        metrics::counter!("llmux_reloads_total", "trigger" => trigger, "result" => result)
            .increment(1);
        if out.ok {
            metrics::gauge!("llmux_catalog_generation").set(out.generation as f64);
        }
        self.log_line(&out);
        out
    }

    fn apply(&self, trigger: &'static str) -> Outcome {
        *self.seen.lock().unwrap_or_else(|p| p.into_inner()) = stamp(&self.path);
        let mut loaded = match config::load(&self.path) {
            Ok(l) => l,
            Err(errors) => return failed(trigger, errors),
        };
        let restart_required = self.started.changed(&Fixed::of(&loaded.gateway));
        let new_keys = std::mem::take(&mut loaded.gateway.keys);
        let open = new_keys.is_empty();
        if let Some(e) = keyless_refusal(self.started.listen, open, self.insecure_no_auth) {
            return failed(trigger, vec![e]);
        }
        let keys = KeyChanges::between(&self.keys.get(), &new_keys);
        let r = match self.engine.reload(loaded.catalog) {
            Ok(r) => r,
            Err(e) => return failed(trigger, e.0.iter().map(ToString::to_string).collect()),
        };
        // Only a reload the engine took changes the keys and settings.
        if keys != KeyChanges::default() {
            self.keys.set(new_keys);
        }
        let g = &loaded.gateway;
        let mut applied = self.knobs.set(g.max_body_bytes, g.keepalive_ms);
        if self.limits.get() != g.limits {
            self.limits.set(g.limits.clone());
            applied.push("gateway.limits");
        }
        Outcome {
            trigger,
            ok: true,
            generation: r.generation,
            kept: r.kept.len(),
            added: r.added,
            removed: r.removed,
            keys,
            applied,
            draining_requests: r.draining_requests,
            restart_required: r
                .restart_required
                .into_iter()
                .chain(restart_required)
                .collect(),
            errors: Vec::new(),
            warnings: r.warnings.iter().map(ToString::to_string).collect(),
            duration_ms: 0.0,
        }
    }

    /// One line per reload, in the request log's format.
    fn log_line(&self, o: &Outcome) {
        let ids = |v: &[ReloadEndpoint]| {
            v.iter()
                .map(|e| format!("{}|{}", e.model, e.endpoint))
                .collect::<Vec<_>>()
                .join(",")
        };
        let line = match self.log {
            LogFormat::Off => return,
            LogFormat::Json => {
                let mut v = serde_json::to_value(o).unwrap_or_default();
                v["msg"] = "reload".into();
                v.to_string()
            }
            LogFormat::Logfmt => format!(
                "msg=reload trigger={} result={} generation={} added={:?} removed={:?} keys_added={:?} keys_removed={:?} keys_changed={:?} applied={:?} kept={} draining_requests={} restart_required={:?} errors={:?} duration_ms={:.1}",
                o.trigger,
                if o.ok { "ok" } else { "error" },
                o.generation,
                ids(&o.added),
                ids(&o.removed),
                o.keys.added.join(","),
                o.keys.removed.join(","),
                o.keys.changed.join(","),
                o.applied.join(","),
                o.kept,
                o.draining_requests,
                o.restart_required.join(","),
                o.errors.join("; "),
                o.duration_ms
            ),
        };
        eprintln!("{line}");
    }
}

/// Why a reload may not take every key away: the gateway listens beyond
/// loopback (as the start refuses, unless `--insecure-no-auth`).
fn keyless_refusal(listen: std::net::SocketAddr, keyless: bool, insecure: bool) -> Option<String> {
    (keyless && !listen.ip().is_loopback() && !insecure).then(|| format!(
        "gateway.keys: the gateway listens on {listen}, beyond loopback, and would be left without caller keys (restart with --insecure-no-auth to allow that)"
    ))
}

fn failed(trigger: &'static str, errors: Vec<String>) -> Outcome {
    Outcome {
        trigger,
        ok: false,
        generation: 0,
        added: Vec::new(),
        removed: Vec::new(),
        keys: KeyChanges::default(),
        applied: Vec::new(),
        kept: 0,
        draining_requests: 0,
        restart_required: Vec::new(),
        errors,
        warnings: Vec::new(),
        duration_ms: 0.0,
    }
}

/// Reloads on every SIGHUP, and with `watch` whenever the config file's
/// modification time or size changes (polled every second: one `stat` a
/// second costs nothing, works on every file system, editors' rename-over
/// included, and needs no file-notification crate).
pub fn spawn_triggers(r: Arc<Reloader>, watch: bool) {
    let hup = r.clone();
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut s) = signal(SignalKind::hangup()) else {
            return;
        };
        while s.recv().await.is_some() {
            hup.reload("sighup").await;
        }
    });
    if watch {
        tokio::spawn(watch_file(r));
    }
}

/// What `--watch` compares: modification time and length.
fn stamp(path: &std::path::Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

async fn watch_file(r: Arc<Reloader>) {
    let mut tick = tokio::time::interval(WATCH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = stamp(&r.path);
        let seen = *r.seen.lock().unwrap_or_else(|p| p.into_inner());
        // A file missing for a moment (being replaced) is not a change; a
        // file another trigger already read is not either.
        if now.is_some() && now != seen {
            r.reload("watch").await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::keyless_refusal;

    #[test]
    fn a_reload_may_not_leave_a_public_gateway_without_keys() {
        let public = "0.0.0.0:8080".parse().unwrap();
        let local = "127.0.0.1:8080".parse().unwrap();
        let e = keyless_refusal(public, true, false).expect("refused");
        assert!(
            e.contains("0.0.0.0:8080") && e.contains("gateway.keys"),
            "{e}"
        );
        assert_eq!(keyless_refusal(public, true, true), None);
        assert_eq!(keyless_refusal(public, false, false), None);
        assert_eq!(keyless_refusal(local, true, false), None);
    }
}
