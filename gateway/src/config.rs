//! The config file of `llmux serve`: the engine's JSON plus an optional
//! `gateway` section, which is taken out before the engine sees the rest.
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

use serde::Deserialize;
use std::net::SocketAddr;
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
    #[serde(default)]
    keys: Vec<KeySpec>,
    max_body_bytes: Option<usize>,
    drain_ms: Option<u64>,
    keepalive_ms: Option<u64>,
    health_file: Option<PathBuf>,
}

/// A caller key: the name of the environment variable holding it, or an
/// object naming it (`name` shows in logs instead of the key).
#[derive(Deserialize)]
#[serde(untagged)]
enum KeySpec {
    Env(String),
    Named { env: String, name: Option<String> },
}

/// A caller key, read from its environment variable at load.
pub struct CallerKey {
    pub name: String,
    pub secret: Vec<u8>,
}

/// The resolved `gateway` section.
pub struct GatewayConfig {
    pub listen: SocketAddr,
    pub keys: Vec<CallerKey>,
    pub max_body_bytes: usize,
    pub drain_ms: u64,
    pub keepalive_ms: u64,
    pub health_file: Option<PathBuf>,
}

/// The config file split in two: the engine's JSON and the gateway's part.
pub struct Loaded {
    pub engine_json: String,
    pub gateway: GatewayConfig,
}

/// Reads and splits a config file; errors name the JSON path.
pub fn load(path: &std::path::Path) -> Result<Loaded, Vec<String>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| vec![format!("cannot read config file {}: {e}", path.display())])?;
    let mut value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| vec![format!("config is not valid JSON: {e}")])?;
    let section = match value.as_object_mut() {
        Some(m) => m.remove("gateway"),
        None => return Err(vec!["config must be a JSON object".into()]),
    };
    let gateway = resolve(section)?;
    Ok(Loaded {
        engine_json: value.to_string(),
        gateway,
    })
}

fn resolve(section: Option<serde_json::Value>) -> Result<GatewayConfig, Vec<String>> {
    let s: Section = match section {
        None | Some(serde_json::Value::Null) => Section::default(),
        Some(v) => serde_path_to_error::deserialize(v).map_err(|e| {
            let p = e.path().to_string();
            let at = if p == "." {
                "gateway".into()
            } else {
                format!("gateway.{p}")
            };
            vec![format!("{at}: {}", e.into_inner())]
        })?,
    };
    let mut errors = Vec::new();
    let listen_text = s.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
    let listen = match listen_text.parse::<SocketAddr>() {
        Ok(a) => a,
        Err(_) => {
            errors.push(format!(
                "gateway.listen: `{listen_text}` is not an address such as 127.0.0.1:4000"
            ));
            DEFAULT_LISTEN.parse().expect("default address")
        }
    };
    let mut keys = Vec::new();
    for (i, k) in s.keys.iter().enumerate() {
        let (env, name) = match k {
            KeySpec::Env(env) => (env, None),
            KeySpec::Named { env, name } => (env, name.clone()),
        };
        match std::env::var(env) {
            Ok(v) if !v.is_empty() => keys.push(CallerKey {
                name: name.unwrap_or_else(|| format!("key{i}")),
                secret: v.into_bytes(),
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
    })
}
