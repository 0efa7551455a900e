//! The `shared` section resolved: the Redis URL, timings and fleet-wide
//! limits that the runtime in [`crate::shared`] works with, validated with
//! JSON paths like the rest of the catalog.

use super::{Endpoint, Provider};
use crate::config::SharedConfig;
use std::time::Duration;

/// The `shared` section, validated. `Debug` hides the URL.
#[derive(Clone)]
pub struct SharedSettings {
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

impl std::fmt::Debug for SharedSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedSettings")
            .field("redis", &redact(&self.url))
            .field("key_prefix", &self.key_prefix)
            .field("sync", &self.sync)
            .finish_non_exhaustive()
    }
}

impl SharedSettings {
    /// Validates the section; problems go to `err` with their JSON path.
    pub(crate) fn resolve(
        cfg: &SharedConfig,
        endpoints: &[Endpoint],
        providers: &[Provider],
        env: &dyn Fn(&str) -> Option<String>,
        err: &mut impl FnMut(String, String),
    ) -> Option<SharedSettings> {
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
        let s = SharedSettings {
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

    /// The Redis URL, password included: for the client and for
    /// [`scrub`]; show it only through [`redact`].
    pub(crate) fn url(&self) -> &str {
        &self.url
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
}
