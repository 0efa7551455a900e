//! What each caller key may do: the models it may call, its budget, its
//! rate limits and concurrency, its default provider preferences, its
//! labels, and whether it may read every key's usage. The ledger is the
//! library's [`llmux::budget`], keyed by the key's name (never the key).

use crate::config::CallerKey;
use crate::error::Rejection;
use llmux::budget::{
    self, BudgetConfig, Budgets, FailMode, Lease, LimitsConfig, Policy, Refusal, Usage,
};
use llmux::catalog::Catalog;
use llmux::routing::filter::Preferences;
use llmux::{Engine, Prepared};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

/// What the log line says about a request's budget.
#[derive(Clone, Copy, Debug)]
pub struct CostNote {
    pub reserved_usd: f64,
    pub settled_usd: Option<f64>,
}

/// One key's policy, resolved.
#[derive(Debug, Default)]
pub struct KeyPolicy {
    /// The name budgets and metrics are keyed by.
    pub subject: Arc<str>,
    /// Slugs or globs; `None`: every model.
    pub models: Option<Vec<String>>,
    pub limits: Arc<Policy>,
    /// The key's `provider`, as parsed; narrowed from the engine's
    /// defaults in [`check`].
    pub provider: Option<Preferences>,
    pub metadata: BTreeMap<String, String>,
    pub admin: bool,
}

impl KeyPolicy {
    pub fn allows(&self, model: &str) -> bool {
        self.models
            .as_ref()
            .is_none_or(|m| m.iter().any(|p| budget::glob(p, model)))
    }
}

/// A `gateway.keys` entry written as an object.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    env: String,
    name: Option<String>,
    models: Option<Vec<String>>,
    budget: Option<BudgetConfig>,
    limits: Option<LimitsConfig>,
    provider: Option<Value>,
    #[serde(default)]
    metadata: BTreeMap<String, String>,
    #[serde(default)]
    admin: bool,
}

/// `gateway.keys[i]`: its environment variable and policy, or every
/// problem with its JSON path.
pub fn parse_entry(
    i: usize,
    v: &Value,
) -> Result<(String, Option<String>, KeyPolicy), Vec<String>> {
    let at = format!("gateway.keys[{i}]");
    if let Value::String(env) = v {
        return Ok((env.clone(), None, KeyPolicy::default()));
    }
    let e: Entry = serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().to_string();
        let sep = if path == "." {
            String::new()
        } else {
            format!(".{path}")
        };
        vec![format!("{at}{sep}: {}", e.into_inner())]
    })?;
    let mut errs = Vec::new();
    let limits = Policy::resolve(e.budget.as_ref(), e.limits.as_ref(), &at).unwrap_or_else(|v| {
        errs.extend(v.into_iter().map(|(p, m)| format!("{p}: {m}")));
        Policy::default()
    });
    let provider = e
        .provider
        .as_ref()
        .and_then(|p| match llmux::request::parse_defaults(p) {
            Ok(p) => Some(p),
            Err((path, m)) => {
                errs.push(format!("{at}.{path}: {m}"));
                None
            }
        });
    if e.models.as_ref().is_some_and(Vec::is_empty) {
        errs.push(format!(
            "{at}.models: empty (leave it out to allow every model)"
        ));
    }
    if !errs.is_empty() {
        return Err(errs);
    }
    let policy = KeyPolicy {
        subject: Arc::from(""),
        models: e.models,
        limits: Arc::new(limits),
        provider,
        metadata: e.metadata,
        admin: e.admin,
    };
    Ok((e.env, e.name, policy))
}

/// Checks keys against the catalog: every model pattern names a model,
/// names are unique; narrows each key's `provider` from the engine's
/// defaults (a key can only narrow them).
pub fn check(catalog: &Catalog, keys: &mut [CallerKey]) -> Vec<String> {
    let mut errs = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (i, k) in keys.iter_mut().enumerate() {
        if !seen.insert(k.name.clone()) {
            errs.push(format!("gateway.keys[{i}].name: `{}` names another key too (budgets and metrics go by name)", k.name));
        }
        let p = Arc::get_mut(&mut k.policy).expect("policy not shared yet");
        p.subject = Arc::from(k.name.as_str());
        for (j, pat) in p.models.iter().flatten().enumerate() {
            let hit = catalog.models.iter().any(|m| {
                budget::glob(pat, &m.slug) || m.aliases.iter().any(|a| budget::glob(pat, a))
            });
            if !hit {
                errs.push(format!(
                    "gateway.keys[{i}].models[{j}]: `{pat}` matches no model of the catalog"
                ));
            }
        }
        if let Some(own) = p.provider.take() {
            p.provider = Some(Preferences::narrow(&catalog.provider_defaults, own));
        }
    }
    errs
}

/// `gateway.budgets`: where spend is kept and what happens when that
/// store cannot be reached.
#[derive(Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// The journal of a gateway without Redis (spend survives restarts).
    pub file: Option<PathBuf>,
    #[serde(default)]
    pub fsync: bool,
    /// For keys with a budget; default `closed`.
    #[serde(default = "closed")]
    pub budget_fail: FailMode,
    /// For keys with limits only; default `open`.
    #[serde(default = "open")]
    pub limits_fail: FailMode,
    /// How long a reservation lives in Redis unless renewed.
    #[serde(default = "ttl")]
    pub reservation_ttl_ms: u64,
    /// Output tokens reserved for a request that sets no limit.
    #[serde(default = "default_output")]
    pub default_max_tokens: u64,
    /// `local` keeps budgets in this process even with `shared.redis_url`.
    #[serde(default)]
    pub local: bool,
}

fn closed() -> FailMode {
    FailMode::Closed
}
fn open() -> FailMode {
    FailMode::Open
}
fn ttl() -> u64 {
    30_000
}
fn default_output() -> u64 {
    4096
}

impl Default for StoreConfig {
    fn default() -> StoreConfig {
        serde_json::from_value(json!({})).expect("defaults")
    }
}

/// The keys' budgets at run time.
pub struct Keyring {
    pub budgets: Arc<Budgets>,
    pub cfg: StoreConfig,
}

impl Keyring {
    /// The store: Redis when the engine has `shared`, else this process
    /// (journaled when `file` is set).
    pub fn new(cfg: StoreConfig, engine: &Engine) -> Result<Keyring, String> {
        let store = match (&engine.catalog().shared, cfg.local) {
            (Some(s), false) => {
                let ttl = std::time::Duration::from_millis(cfg.reservation_ttl_ms.max(300));
                budget::Store::Redis(budget::redis::RedisStore::new(
                    s,
                    ttl,
                    tokio::runtime::Handle::current(),
                )?)
            }
            _ => budget::Store::Local(match &cfg.file {
                Some(f) => budget::local::LocalStore::open(f, cfg.fsync)?,
                None => budget::local::LocalStore::memory(),
            }),
        };
        let budgets = Arc::new(Budgets::new(store, cfg.budget_fail, cfg.limits_fail));
        Ok(Keyring { budgets, cfg })
    }

    /// The key's reservation for a prepared request, or the refusal in
    /// the caller's protocol (403 model, 402 budget, 429 limit, 503 store).
    pub async fn admit(
        &self,
        reject: impl Fn(u16, &'static str, String) -> Rejection,
        key: &CallerKey,
        prepared: &Prepared,
    ) -> Result<Option<Lease>, Rejection> {
        let p = &key.policy;
        if let Some(m) = prepared.models().find(|m| !p.allows(m)) {
            metrics::counter!("llmux_key_rejections_total", "key" => key.name.clone(), "reason" => "model_not_allowed").increment(1);
            let message = format!("the key `{}` may not call the model `{m}`", key.name);
            return Err(reject(403, "model_not_allowed", message));
        }
        if p.limits.is_open() {
            return Ok(None);
        }
        let ask = prepared.estimate(self.cfg.default_max_tokens);
        match self.budgets.reserve(&p.subject, &p.limits, ask).await {
            Ok(lease) => Ok(Some(lease)),
            Err(r) => Err(refusal(reject, &key.name, &r).cost(CostNote {
                reserved_usd: budget::usd(ask.cost),
                settled_usd: None,
            })),
        }
    }

    /// `/ready`'s view: the store, whether it answers, and whether
    /// requests are refused meanwhile.
    pub fn status(&self) -> Value {
        let (ok, error) = self.budgets.health();
        json!({"kind": self.budgets.kind(), "ok": ok, "error": error,
            "budget_fail": self.cfg.budget_fail, "limits_fail": self.cfg.limits_fail})
    }
}

/// A refusal as the caller sees it.
fn refusal(
    reject: impl Fn(u16, &'static str, String) -> Rejection,
    key: &str,
    r: &Refusal,
) -> Rejection {
    let reason = match r {
        Refusal::Budget { .. } => "budget_exhausted",
        Refusal::Rate { .. } => "rate_limited",
        Refusal::Unavailable(_) => "budget_store_unavailable",
    };
    metrics::counter!("llmux_key_rejections_total", "key" => key.to_owned(), "reason" => reason)
        .increment(1);
    let message = format!("key `{key}`: {r}");
    match r {
        Refusal::Budget { reset, .. } => {
            let rej = reject(402, reason, message);
            match reset {
                Some(t) => rej.header_owned("x-llmux-budget-reset", t.to_string()),
                None => rej,
            }
        }
        Refusal::Rate { retry_after_ms, .. } => reject(429, reason, message)
            .header_owned("retry-after", retry_after_ms.div_ceil(1000).to_string())
            .header_owned("retry-after-ms", retry_after_ms.to_string()),
        Refusal::Unavailable(_) => reject(503, reason, message).header("retry-after", "1"),
    }
}

/// Settles (or, without a cost, releases) a request's lease; what the log
/// line says about it. Per-key metrics go by the key's name.
pub fn finish(
    key: &str,
    lease: Option<Lease>,
    cost: Option<f64>,
    tokens: u64,
    outcome: &str,
) -> Option<CostNote> {
    if key != "-" {
        metrics::counter!("llmux_key_requests_total", "key" => key.to_owned(), "outcome" => outcome.to_owned()).increment(1);
        if let Some(c) = cost {
            metrics::gauge!("llmux_key_cost_usd_total", "key" => key.to_owned()).increment(c);
            metrics::counter!("llmux_key_tokens_total", "key" => key.to_owned()).increment(tokens);
        }
    }
    let lease = lease?;
    let reserved_usd = budget::usd(lease.ask().cost);
    match cost {
        Some(c) => lease.settle(c, tokens),
        None => drop(lease),
    }
    Some(CostNote {
        reserved_usd,
        settled_usd: Some(cost.unwrap_or(0.0)),
    })
}

fn totals(t: &budget::Totals) -> Value {
    json!({"spent_usd": budget::usd(t.spent), "tokens": t.tokens, "requests": t.requests, "rejections": t.rejections})
}

/// Seconds since the epoch as RFC 3339.
fn time(secs: u64) -> String {
    budget::rfc3339(secs)
}

/// `GET /api/v1/key`'s `data`, in OpenRouter's shape plus the period.
pub fn key_json(k: &CallerKey, u: &Usage) -> Value {
    let p = &k.policy.limits;
    let spent = budget::usd(u.current.spent);
    let (limit, period) = p
        .budget
        .map_or((None, None), |(l, per)| (Some(budget::usd(l)), Some(per)));
    let now = budget::now_ms() / 1000;
    json!({
        "label": k.name,
        "usage": spent,
        "limit": limit,
        "limit_remaining": limit.map(|l| (l - spent - budget::usd(u.reserved)).max(0.0)),
        "reserved": budget::usd(u.reserved),
        "is_free_tier": false,
        "rate_limit": {"requests": p.rpm, "tokens": p.tpm, "interval": "60s", "concurrent": p.concurrent},
        "period": period.map(|p| p.as_str()),
        "period_start": period.map(|_| time(u.period_start)),
        "reset": period.and_then(|p| p.reset(now)).map(time),
        "models": k.policy.models,
        "metadata": k.policy.metadata,
        "in_flight": u.in_flight,
        "window": {"requests": u.window_requests, "tokens": u.window_tokens},
    })
}

/// One key of `GET /api/v1/keys`.
pub fn keys_entry(k: &CallerKey, u: &Usage) -> Value {
    let mut v = key_json(k, u);
    v["name"] = json!(k.name);
    v["admin"] = json!(k.policy.admin);
    v["current"] = totals(&u.current);
    v["previous"] = totals(&u.previous);
    v
}
