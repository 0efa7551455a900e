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
}

/// A caller key, read from its environment variable at load.
pub struct CallerKey {
    pub name: String,
    pub secret: Vec<u8>,
    /// Models, budget, limits, provider defaults, labels, admin.
    pub policy: std::sync::Arc<crate::keys::KeyPolicy>,
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
            let errors = crate::keys::check(&catalog, &mut gateway.keys);
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
    })
}
