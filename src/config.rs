//! The catalog as the user writes it (JSON), and its validation.
//!
//! Structural errors (a wrong type, an unknown field) and semantic errors (an
//! unknown provider, a duplicate id, a bad URL, a missing key variable) both
//! name the JSON path of the problem, e.g.
//! `models[0].endpoints[1].provider: unknown provider "acme" (known: a, b)`.

use serde::Deserialize;
use std::collections::BTreeMap;

/// Timeouts in milliseconds; any may be left out to inherit from the level
/// above (request -> provider -> engine -> built-in default).
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TimeoutsConfig {
    /// TCP (and TLS) connection establishment.
    pub connect_ms: Option<u64>,
    /// From the start of an attempt to the first generated token (streams),
    /// or to the complete response (non-streaming requests).
    pub first_token_ms: Option<u64>,
    /// Longest silence between two stream reads after the first token.
    pub idle_ms: Option<u64>,
    /// The whole request, across every attempt.
    pub total_ms: Option<u64>,
}

impl TimeoutsConfig {
    /// Fields of `self` override those of `base`.
    pub fn over(self, base: TimeoutsConfig) -> TimeoutsConfig {
        TimeoutsConfig {
            connect_ms: self.connect_ms.or(base.connect_ms),
            first_token_ms: self.first_token_ms.or(base.first_token_ms),
            idle_ms: self.idle_ms.or(base.idle_ms),
            total_ms: self.total_ms.or(base.total_ms),
        }
    }
}

/// Built-in timeouts, used where no level sets one.
pub const DEFAULT_TIMEOUTS: TimeoutsConfig = TimeoutsConfig {
    connect_ms: Some(5_000),
    first_token_ms: Some(60_000),
    idle_ms: Some(30_000),
    total_ms: Some(600_000),
};

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub providers: Vec<ProviderConfig>,
    #[serde(default)]
    pub models: Vec<ModelConfig>,
    #[serde(default)]
    pub timeouts: TimeoutsConfig,
    #[serde(default)]
    pub health: HealthConfig,
    #[serde(default)]
    pub failover: FailoverConfig,
    /// Threads of the engine's async runtime (default 2); 0: host-driven,
    /// the I/O runs inside `poll` on the caller's thread.
    pub worker_threads: Option<usize>,
    /// An explicit HTTP(S) proxy URL for every upstream. By default llmux
    /// connects directly and ignores proxy environment variables.
    pub proxy: Option<String>,
    /// A PEM file of CA certificates that upstream HTTPS servers (and an
    /// `https://` proxy) may also chain to, besides the webpki roots: a
    /// provider behind a private CA.
    pub ca_file: Option<String>,
    #[serde(default)]
    pub retry: RetryConfig,
    #[serde(default)]
    pub hedging: HedgingConfig,
    #[serde(default)]
    pub sticky: StickyConfig,
    /// The largest request body `submit` accepts, in bytes (default 32 MiB).
    pub max_request_bytes: Option<u64>,
    /// Health shared across processes on Redis or Valkey (off when absent).
    pub shared: Option<SharedConfig>,
    /// Engine-level provider preferences (the request's `provider` filter
    /// and ranking fields), merged under every request's: a request may
    /// narrow them, never widen them (see `routing::filter::Preferences::narrow`).
    /// Checked when the catalog is built.
    pub provider: Option<serde_json::Value>,
    /// Budgets and limits per request `user` (`budget::users`). Checked
    /// when the catalog is built.
    pub user_budgets: Option<serde_json::Value>,
    /// The `gateway` section of `llmux serve`, so that one file configures
    /// both the library and the gateway: read by the gateway, skipped here
    /// (unchecked; `llmux check` checks it).
    #[serde(default)]
    pub gateway: Option<serde::de::IgnoredAny>,
    /// Traces over OTLP (`telemetry.otlp`); nothing is built without it.
    #[serde(default)]
    pub telemetry: Option<crate::telemetry::TelemetryConfig>,
}

/// The default of `max_request_bytes`.
pub const DEFAULT_MAX_REQUEST_BYTES: u64 = 32 * 1024 * 1024;

/// Retries on the same endpoints once every candidate has failed.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Extra rounds over the candidates after all of them failed (0 = none).
    pub max_retries: u32,
    /// Backoff before retry round n (1-based): `base * 2^(n-1)`, with full
    /// jitter (a uniform draw in [backoff/2, backoff]), capped at `max_backoff_ms`.
    pub base_backoff_ms: u64,
    pub max_backoff_ms: u64,
    /// A Retry-After longer than this ends the request instead of waiting.
    pub max_retry_after_ms: u64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            max_retries: 2,
            base_backoff_ms: 200,
            max_backoff_ms: 5_000,
            max_retry_after_ms: 10_000,
        }
    }
}

/// Hedged requests: when the first candidate has produced no token after a
/// delay, the next candidate starts too; the first to produce a token wins.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HedgingConfig {
    /// Hedge every request (requests can opt in with `provider.hedge`).
    pub enabled: bool,
    /// A fixed delay. When absent, the delay is the endpoint's own
    /// `percentile` of recent first-token latencies (or `fallback_delay_ms`
    /// while it has fewer than 8 samples).
    pub delay_ms: Option<u64>,
    pub percentile: f64,
    pub fallback_delay_ms: u64,
}

impl Default for HedgingConfig {
    fn default() -> Self {
        HedgingConfig {
            enabled: false,
            delay_ms: None,
            percentile: 0.95,
            fallback_delay_ms: 1_000,
        }
    }
}

/// Stickiness: keep a conversation on one endpoint while it stays healthy.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StickyConfig {
    /// Use the OpenAI `user` field (Anthropic `metadata.user_id`) as the
    /// sticky key when the request gives no `provider.sticky_key`.
    pub from_user: bool,
    /// How long a key remembers its endpoint after its last request.
    pub ttl_ms: u64,
    /// The most keys remembered (the oldest are forgotten first).
    pub capacity: usize,
}

impl Default for StickyConfig {
    fn default() -> Self {
        StickyConfig {
            from_user: false,
            ttl_ms: 30 * 60 * 1000,
            capacity: 10_000,
        }
    }
}

/// `Debug` shows neither the key nor header values (see below).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    pub slug: String,
    /// `"openai"` or `"anthropic"`.
    pub protocol: String,
    /// OpenAI: the URL that `/chat/completions` is appended to (e.g.
    /// `https://api.openai.com/v1`); Anthropic: the URL `/v1/messages` is
    /// appended to (e.g. `https://api.anthropic.com`).
    pub base_url: String,
    /// The key itself.
    pub api_key: Option<String>,
    /// The name of an environment variable holding the key (read at load).
    pub api_key_env: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub timeouts: TimeoutsConfig,
    /// Anthropic only: `anthropic-version` header (default `2023-06-01`).
    pub anthropic_version: Option<String>,
    /// Anthropic only: `anthropic-beta` header.
    pub anthropic_beta: Option<String>,
    /// Which HTTP version to speak to this provider.
    #[serde(default)]
    pub http: HttpVersion,
}

/// The HTTP version spoken to a provider.
///
/// HTTP/1.1 is the default, as in the official SDKs: an HTTP/2 connection
/// carries at most the server's `SETTINGS_MAX_CONCURRENT_STREAMS` requests
/// at once and the client opens no second one (RFC 9113 9.1), so beyond
/// that many open streams to one provider, requests would wait for a free
/// stream (and their first-token timeout would count against a healthy
/// endpoint).
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum HttpVersion {
    /// HTTP/2 when the provider offers it in the TLS handshake (ALPN),
    /// else HTTP/1.1; plain `http://` URLs use HTTP/1.1.
    Auto,
    /// HTTP/1.1 only.
    #[default]
    Http1,
    /// HTTP/2 only, with prior knowledge: over TLS without asking, and over
    /// plain `http://` as h2c (a local endpoint or gateway that speaks it).
    Http2,
}

impl std::fmt::Debug for ProviderConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderConfig")
            .field("slug", &self.slug)
            .field("protocol", &self.protocol)
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "***"))
            .field("api_key_env", &self.api_key_env)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("timeouts", &self.timeouts)
            .field("http", &self.http)
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// `vendor/name`.
    pub slug: String,
    /// Context window in tokens, for every endpoint that does not set one.
    pub context_window: Option<u64>,
    /// Other names that resolve to this slug wherever a model slug is
    /// accepted (e.g. `claude-sonnet-4-6`); unique across slugs and aliases.
    #[serde(default)]
    pub aliases: Vec<String>,
    pub endpoints: Vec<EndpointConfig>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointConfig {
    /// Slug of the provider serving this endpoint.
    pub provider: String,
    /// Endpoint name; the endpoint id is `provider/name`. Default `default`.
    pub name: Option<String>,
    /// The model name sent upstream.
    pub upstream_model: String,
    #[serde(default)]
    pub price: PriceConfig,
    pub context_window: Option<u64>,
    /// First-token latency assumed before any traffic was measured.
    pub expected_first_token_ms: Option<f64>,
    /// At most this many requests in flight on this endpoint; when it is
    /// full, the request moves on to the next candidate.
    pub max_concurrency: Option<u32>,
    /// Where the endpoint runs (a free string, e.g. `eu-west`).
    pub region: Option<String>,
    /// What the endpoint does with prompts and completions.
    pub data_policy: Option<DataPolicyConfig>,
    /// The weights' precision (`int4`, `int8`, `fp4`, `fp6`, `fp8`, `fp16`,
    /// `bf16`, `fp32`, `unknown`).
    pub quantization: Option<String>,
    /// Request features the endpoint accepts (`tools`, `tool_choice`,
    /// `response_format`, ...); default: its protocol's (see
    /// `catalog::default_parameters`).
    pub supported_parameters: Option<Vec<String>>,
}

/// An endpoint's data handling.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DataPolicyConfig {
    /// The provider may train on requests.
    #[serde(default)]
    pub training: bool,
    /// How long prompts are kept, in days (0: not kept).
    pub retention_days: Option<u64>,
    /// Zero data retention: nothing is stored past the request.
    #[serde(default)]
    pub zdr: bool,
}

/// USD per million tokens, plus optional per-request and per-image prices.
#[derive(Clone, Copy, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceConfig {
    #[serde(default)]
    pub prompt: f64,
    #[serde(default)]
    pub completion: f64,
    /// USD per request.
    #[serde(default)]
    pub request: f64,
    /// USD per input image.
    #[serde(default)]
    pub image: f64,
}

/// Health tracking and circuit breaking; every field has a default.
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthConfig {
    /// Consecutive failures that open an endpoint's circuit.
    pub failure_threshold: u32,
    /// How long a circuit stays open the first time.
    pub base_ejection_ms: u64,
    /// Cap on the open time, which doubles with every repeated ejection.
    pub max_ejection_ms: u64,
    /// Half-life of the time-decayed averages (latency, throughput, errors).
    pub half_life_ms: u64,
    /// First-token latency assumed for an endpoint with no measurement and no
    /// `expected_first_token_ms`.
    pub default_first_token_ms: f64,
    /// Share of default-routed requests (0..1) sent first to the endpoint
    /// measured least recently, so the engine keeps learning.
    pub explore_ratio: f64,
    /// Longest Retry-After honoured, in ms.
    pub max_retry_after_ms: u64,
    /// Active probing: every `interval_ms`, each endpoint whose circuit is
    /// waiting for a half-open probe gets a cheap request (one token) instead
    /// of waiting for real traffic. Off when absent.
    pub active_probe_interval_ms: Option<u64>,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            failure_threshold: 3,
            base_ejection_ms: 5_000,
            max_ejection_ms: 300_000,
            half_life_ms: 10_000,
            default_first_token_ms: 1_000.0,
            explore_ratio: 0.02,
            max_retry_after_ms: 600_000,
            active_probe_interval_ms: None,
        }
    }
}

/// Which HTTP statuses move on to the next candidate.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailoverConfig {
    /// Statuses that fail over. Default: 401, 403, 404, 408, 409, 425, 429,
    /// 500-599 and 529. Any other non-2xx status is returned to the caller.
    pub statuses: Option<Vec<u16>>,
}

/// The default failover statuses.
pub fn default_failover_status(s: u16) -> bool {
    matches!(s, 401 | 403 | 404 | 408 | 409 | 425 | 429 | 500..=599)
}

/// One problem in the config, with the JSON path it is at.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ConfigError {
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Every problem found in a config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl std::fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid config: ")?;
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                write!(f, "; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl Config {
    /// Parses JSON text; a structural error names its path.
    pub fn parse(text: &str) -> Result<Config, ConfigErrors> {
        let de = &mut serde_json::Deserializer::from_str(text);
        serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let message = if inner.is_syntax() || inner.is_eof() {
                format!(
                    "malformed JSON at line {} column {}: {inner}",
                    inner.line(),
                    inner.column()
                )
            } else {
                // serde's text carries "at line X column Y" already.
                inner.to_string()
            };
            // Syntax errors have no path; a type error at the top level is
            // at the root, and so is an empty key.
            let path = match path.as_str() {
                _ if inner.is_syntax() || inner.is_eof() => String::new(),
                "." | "" => "(top level)".to_owned(),
                _ => path,
            };
            ConfigErrors(vec![ConfigError { path, message }])
        })
    }
}

/// Shared health across processes (`"shared"`): soft signals (latency,
/// throughput, load) merged every `sync_ms`, hard signals (Retry-After,
/// ejection votes) pushed at once, fleet-wide concurrency leases.
/// `Debug` never shows the URL (it may hold a password).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SharedConfig {
    /// `redis://[user:password@]host:port/db`, `rediss://` for TLS.
    pub redis_url: Option<String>,
    /// The name of an environment variable holding the URL (read at load).
    pub redis_url_env: Option<String>,
    /// Prefix of every key and of the channel.
    pub key_prefix: String,
    /// How often aggregates are pushed and pulled.
    pub sync_ms: u64,
    /// The longest wait on one Redis call before the sync gives up and
    /// runs on local health.
    pub timeout_ms: u64,
    /// Instances that must have ejected an endpoint within
    /// `eject_window_ms` before it is ejected everywhere.
    pub eject_quorum: u32,
    pub eject_window_ms: u64,
    /// How long a fleet-wide concurrency slot lives without renewal
    /// (default: three sync periods).
    pub lease_ms: Option<u64>,
    /// Endpoint ids (`provider/name`) or provider slugs whose
    /// `max_concurrency` is a fleet-wide limit instead of a per-process one.
    pub fleet_concurrency: Vec<String>,
    /// A PEM file of the CA that signed the server's certificate, for
    /// `rediss://` servers with a private CA (default: the public web roots).
    pub tls_ca_file: Option<String>,
}

impl Default for SharedConfig {
    fn default() -> Self {
        SharedConfig {
            redis_url: None,
            redis_url_env: None,
            key_prefix: "llmux:".into(),
            sync_ms: 1_000,
            timeout_ms: 250,
            eject_quorum: 2,
            eject_window_ms: 30_000,
            lease_ms: None,
            fleet_concurrency: Vec::new(),
            tls_ca_file: None,
        }
    }
}

impl std::fmt::Debug for SharedConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedConfig")
            .field("redis_url", &self.redis_url.as_ref().map(|_| "***"))
            .field("redis_url_env", &self.redis_url_env)
            .field("key_prefix", &self.key_prefix)
            .field("sync_ms", &self.sync_ms)
            .finish_non_exhaustive()
    }
}
