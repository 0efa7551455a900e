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
    /// Threads of the engine's async runtime (default 2).
    pub worker_threads: Option<usize>,
    /// An explicit HTTP(S) proxy URL for every upstream. By default llmux
    /// connects directly and ignores proxy environment variables.
    pub proxy: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
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
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// `vendor/name`.
    pub slug: String,
    /// Context window in tokens, for every endpoint that does not set one.
    pub context_window: Option<u64>,
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
}

/// USD per million tokens.
#[derive(Clone, Copy, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceConfig {
    #[serde(default)]
    pub prompt: f64,
    #[serde(default)]
    pub completion: f64,
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
#[derive(Clone, Debug, PartialEq, Eq)]
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
            ConfigErrors(vec![ConfigError {
                path: if path == "." { String::new() } else { path },
                message,
            }])
        })
    }
}
