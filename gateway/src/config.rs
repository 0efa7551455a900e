//! The config file of `llmux serve`: the engine's JSON plus an optional
//! `gateway` section. The library skips that section, so the same file
//! also configures `llmux.Router("llmux.json")` and `Engine::from_file`.
//! Both parts are read from the text as written, so every error points at
//! its line and column.
//!
//! ```json
//! "gateway": {
//!   "listen": "127.0.0.1:4000",
//!   "keys": [{"name": "team-a", "env": "LLMUX_KEY_TEAM_A"}, "LLMUX_KEY_CI"],
//!   "max_body_bytes": 33554432,
//!   "drain_ms": 10000,
//!   "keepalive_ms": 15000,
//!   "health_file": "llmux-health.json"
//! }
//! ```

use llmux::catalog::Catalog;
use serde::Deserialize;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

/// Defaults of the `gateway` section.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:4000";
pub const DEFAULT_MAX_BODY: usize = 32 * 1024 * 1024;
pub const DEFAULT_DRAIN_MS: u64 = 10_000;
pub const DEFAULT_KEEPALIVE_MS: u64 = 15_000;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Section {
    listen: Option<String>,
    /// Each a `KeySpec` or an object with a policy (`crate::keys`).
    #[serde(default)]
    keys: Vec<serde_json::Value>,
    budgets: Option<crate::keys::StoreConfig>,
    max_body_bytes: Option<usize>,
    drain_ms: Option<u64>,
    keepalive_ms: Option<u64>,
    health_file: Option<PathBuf>,
    /// The edge limits and TLS.
    #[serde(default)]
    limits: LimitsSection,
    tls: Option<TlsSection>,
}

/// A caller key, read from its environment variable at load.
pub struct CallerKey {
    pub name: String,
    pub secret: Vec<u8>,
    /// Models, budget, limits, provider defaults, labels, admin.
    pub policy: std::sync::Arc<crate::keys::KeyPolicy>,
}

/// The caller keys in force: read per request, replaced whole by a
/// reload. A request keeps the key it was admitted with.
#[derive(Default)]
pub struct LiveKeys(std::sync::RwLock<std::sync::Arc<[std::sync::Arc<CallerKey>]>>);

impl LiveKeys {
    pub fn new(keys: Vec<CallerKey>) -> LiveKeys {
        let live = LiveKeys::default();
        live.set(keys);
        live
    }

    /// The keys now.
    pub fn get(&self) -> std::sync::Arc<[std::sync::Arc<CallerKey>]> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn set(&self, keys: Vec<CallerKey>) {
        let keys = keys.into_iter().map(std::sync::Arc::new).collect();
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = keys;
    }
}

/// The body limit and the stream keep-alive interval in force: read per
/// request, set by a reload.
#[derive(Debug)]
pub struct Knobs {
    max_body_bytes: std::sync::atomic::AtomicUsize,
    keepalive_ms: std::sync::atomic::AtomicU64,
}

impl Knobs {
    pub fn new(g: &GatewayConfig) -> Knobs {
        Knobs {
            max_body_bytes: g.max_body_bytes.into(),
            keepalive_ms: g.keepalive_ms.into(),
        }
    }

    /// `gateway.max_body_bytes`.
    pub fn max_body(&self) -> usize {
        self.max_body_bytes
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// `gateway.keepalive_ms`.
    pub fn keepalive(&self) -> std::time::Duration {
        let ms = self.keepalive_ms.load(std::sync::atomic::Ordering::Relaxed);
        std::time::Duration::from_millis(ms)
    }

    /// Puts new values in force; the names of those that changed.
    pub fn set(&self, max_body_bytes: usize, keepalive_ms: u64) -> Vec<&'static str> {
        use std::sync::atomic::Ordering::Relaxed;
        let mut changed = Vec::new();
        if self.max_body_bytes.swap(max_body_bytes, Relaxed) != max_body_bytes {
            changed.push("gateway.max_body_bytes");
        }
        if self.keepalive_ms.swap(keepalive_ms, Relaxed) != keepalive_ms {
            changed.push("gateway.keepalive_ms");
        }
        changed
    }
}

/// The resolved `gateway` section.
pub struct GatewayConfig {
    pub listen: SocketAddr,
    pub keys: Vec<CallerKey>,
    pub max_body_bytes: usize,
    pub drain_ms: u64,
    pub keepalive_ms: u64,
    pub health_file: Option<PathBuf>,
    pub store: crate::keys::StoreConfig,
    /// What one client may hold (`gateway.limits`).
    pub limits: Limits,
    /// `gateway.tls`: serve HTTPS (HTTP/2 by ALPN) with these PEM files.
    pub tls: Option<TlsFiles>,
}

/// The config file, validated: the engine's catalog and the gateway's part.
pub struct Loaded {
    pub catalog: Catalog,
    pub gateway: GatewayConfig,
}

/// Reads a config file once and reports every problem once, the engine's
/// first, each with its JSON path (structural ones with line and column).
pub fn load(path: &std::path::Path) -> Result<Loaded, Vec<String>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| vec![format!("cannot read config file {}: {e}", path.display())])?;
    match (Catalog::from_json(&text), gateway_section(&text)) {
        (Ok(catalog), Ok(mut gateway)) => {
            let mut errors = crate::keys::check(&catalog, &mut gateway.keys);
            errors.extend(serving_threads(&catalog));
            if errors.is_empty() {
                Ok(Loaded { catalog, gateway })
            } else {
                Err(errors)
            }
        }
        (catalog, gateway) => {
            let mut errors: Vec<String> = match catalog {
                Ok(_) => Vec::new(),
                Err(e) => e.0.iter().map(ToString::to_string).collect(),
            };
            errors.extend(gateway.err().unwrap_or_default());
            if errors.is_empty() {
                errors.push(format!("{}: invalid config", path.display()));
            }
            Err(errors)
        }
    }
}

/// `llmux serve` needs the engine's worker threads: the host-driven `0`
/// would leave nothing to drive the engine, and every request would hang.
fn serving_threads(catalog: &Catalog) -> Option<String> {
    (catalog.worker_threads == 0).then(|| {
        "worker_threads: 0 (host-driven) is for a host that polls the engine itself; \
         `llmux serve` needs worker threads: leave it out (2) or set 1 or more"
            .to_owned()
    })
}

/// The file as the gateway sees it: only its own section (the rest is the
/// engine's, checked by [`Catalog::from_json`]).
#[derive(Deserialize)]
struct File {
    gateway: Option<Section>,
}

/// The `gateway` section of the config text. Malformed JSON and a file that
/// is not an object are left to the engine's parser, so they show once.
fn gateway_section(text: &str) -> Result<GatewayConfig, Vec<String>> {
    let de = &mut serde_json::Deserializer::from_str(text);
    let file: File = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() || !path.starts_with("gateway") {
            return Vec::new();
        }
        vec![format!("{path}: {inner}")]
    })?;
    resolve(file.gateway.unwrap_or_default())
}

/// A listening address: `IP:PORT`, or `HOST:PORT` with the host name
/// resolved (an IPv4 address is preferred, `localhost` is 127.0.0.1).
pub fn listen_addr(text: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = text.parse::<SocketAddr>() {
        return Ok(a);
    }
    let Some((host, port)) = text.rsplit_once(':') else {
        return Err(format!(
            "`{text}` is not an address such as 127.0.0.1:4000 or localhost:4000 (the port is missing)"
        ));
    };
    if port.parse::<u16>().is_err() {
        return Err(format!(
            "`{text}`: `{port}` is not a port number (such as 127.0.0.1:4000 or localhost:4000)"
        ));
    }
    let addrs: Vec<SocketAddr> = text
        .to_socket_addrs()
        .map_err(|e| format!("`{text}`: cannot resolve the host name `{host}`: {e}"))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| addrs.first())
        .copied()
        .ok_or_else(|| format!("`{text}`: the host name `{host}` has no address"))
}

fn resolve(s: Section) -> Result<GatewayConfig, Vec<String>> {
    let mut errors = Vec::new();
    let listen_text = s.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
    let listen = match listen_addr(listen_text) {
        Ok(a) => a,
        Err(e) => {
            errors.push(format!("gateway.listen: {e}"));
            DEFAULT_LISTEN.parse().expect("default address")
        }
    };
    let mut keys = Vec::new();
    for (i, k) in s.keys.iter().enumerate() {
        let (env, name, policy) = match crate::keys::parse_entry(i, k) {
            Ok(p) => p,
            Err(e) => {
                errors.extend(e);
                continue;
            }
        };
        match std::env::var(&env) {
            Ok(v) if !v.is_empty() => keys.push(CallerKey {
                name: name.unwrap_or_else(|| format!("key{i}")),
                secret: v.into_bytes(),
                policy: std::sync::Arc::new(policy),
            }),
            _ => errors.push(format!(
                "gateway.keys[{i}]: environment variable {env} is not set or empty"
            )),
        }
    }
    if s.max_body_bytes == Some(0) {
        errors.push("gateway.max_body_bytes: must be at least 1".into());
    }
    let limits = s.limits.resolve(&mut errors);
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(GatewayConfig {
        listen,
        keys,
        max_body_bytes: s.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY),
        drain_ms: s.drain_ms.unwrap_or(DEFAULT_DRAIN_MS),
        keepalive_ms: s.keepalive_ms.unwrap_or(DEFAULT_KEEPALIVE_MS).max(1),
        health_file: s.health_file,
        store: s.budgets.unwrap_or_default(),
        limits,
        tls: s.tls.map(|t| TlsFiles {
            cert: t.cert,
            key: t.key,
        }),
    })
}

// ---------------------------------------------------------------------------
// Edge limits and TLS

/// `gateway.limits` as written; every field optional.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct LimitsSection {
    max_connections: Option<usize>,
    max_in_flight: Option<usize>,
    header_read_timeout_ms: Option<u64>,
    body_read_timeout_ms: Option<u64>,
    idle_timeout_ms: Option<u64>,
    max_headers: Option<usize>,
    max_header_bytes: Option<usize>,
    max_streams_per_connection: Option<u32>,
    retry_after_s: Option<u64>,
}

/// `gateway.tls` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsSection {
    cert: PathBuf,
    key: PathBuf,
}

/// The PEM files of `gateway.tls`: the certificate chain and its key.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// What one client may hold, resolved with the defaults (docs/gateway.md,
/// "Limits").
#[derive(Clone, Debug, PartialEq)]
pub struct Limits {
    /// Open connections; past it a new one gets a minimal 503 and is closed.
    pub max_connections: usize,
    /// Requests being served (health and metrics excepted); past it, 503
    /// in the caller's envelope with `retry-after`.
    pub max_in_flight: usize,
    /// An HTTP/1.1 request head must arrive within this, counted from when
    /// the connection is ready for it (so it also closes a kept-alive
    /// HTTP/1.1 connection that sends nothing). TLS handshakes too.
    pub header_read_timeout_ms: u64,
    /// A request body must arrive within this after its head.
    pub body_read_timeout_ms: u64,
    /// A connection with no request in flight for this long is closed.
    pub idle_timeout_ms: u64,
    pub max_headers: usize,
    pub max_header_bytes: usize,
    pub max_streams_per_connection: u32,
    pub retry_after_s: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        LimitsSection::default().resolve(&mut Vec::new())
    }
}

impl LimitsSection {
    fn resolve(&self, errors: &mut Vec<String>) -> Limits {
        let l = Limits {
            max_connections: self.max_connections.unwrap_or(8192),
            max_in_flight: self.max_in_flight.unwrap_or(4096),
            header_read_timeout_ms: self.header_read_timeout_ms.unwrap_or(10_000),
            body_read_timeout_ms: self.body_read_timeout_ms.unwrap_or(60_000),
            idle_timeout_ms: self.idle_timeout_ms.unwrap_or(60_000),
            max_headers: self.max_headers.unwrap_or(100),
            max_header_bytes: self.max_header_bytes.unwrap_or(64 * 1024),
            max_streams_per_connection: self.max_streams_per_connection.unwrap_or(256),
            retry_after_s: self.retry_after_s.unwrap_or(1),
        };
        let at_least = |name: &str, v: u64, min: u64, errors: &mut Vec<String>| {
            if v < min {
                errors.push(format!("gateway.limits.{name}: must be at least {min}"));
            }
        };
        at_least("max_connections", l.max_connections as u64, 1, errors);
        at_least("max_in_flight", l.max_in_flight as u64, 1, errors);
        at_least(
            "header_read_timeout_ms",
            l.header_read_timeout_ms,
            1,
            errors,
        );
        at_least("body_read_timeout_ms", l.body_read_timeout_ms, 1, errors);
        at_least("idle_timeout_ms", l.idle_timeout_ms, 1, errors);
        at_least("max_headers", l.max_headers as u64, 1, errors);
        // hyper's smallest read buffer.
        at_least("max_header_bytes", l.max_header_bytes as u64, 8192, errors);
        at_least(
            "max_streams_per_connection",
            l.max_streams_per_connection.into(),
            1,
            errors,
        );
        l
    }
}
