//! The engine's typed API: what [`Engine::stats`](crate::Engine::stats),
//! [`Engine::plan`](crate::Engine::plan) and every terminal event carry.
//!
//! Each type serialises to the JSON the C ABI hands out (`llmux_stats`,
//! `llmux route --json`, the `data` of a `done` or `error` event) and
//! deserialises from it, so a Rust host or the gateway reads them without
//! walking `serde_json::Value`. Field order is the JSON's order. Fields are
//! only ever added: a reader should ignore what it does not know (serde
//! does by default).

use crate::events::ErrorKind;
use crate::protocol::Protocol;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::collections::BTreeMap;

// ---------------------------------------------------------------------------
// stats

/// A circuit breaker's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Circuit {
    /// Traffic flows.
    Closed,
    /// Ejected: moved to the back of every list until it expires.
    Open,
    /// A probe decides whether it closes again.
    HalfOpen,
}

impl Circuit {
    /// The name in the JSON (`closed`, `open`, `half_open`).
    pub fn as_str(self) -> &'static str {
        match self {
            Circuit::Closed => "closed",
            Circuit::Open => "open",
            Circuit::HalfOpen => "half_open",
        }
    }
}

/// USD per million tokens, plus per request and per input image (left
/// out when zero).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Price {
    pub prompt: f64,
    pub completion: f64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub request: f64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub image: f64,
}

fn is_zero(x: &f64) -> bool {
    *x == 0.0
}

/// One model in [`Stats`]: its slug and the other names it answers to.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelStats {
    pub slug: String,
    #[serde(default)]
    pub aliases: Vec<String>,
}

/// [`Engine::stats`](crate::Engine::stats): every endpoint's health and
/// price, the engine's load, and shared health's state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// In catalog order.
    pub endpoints: Vec<EndpointStats>,
    pub requests_in_flight: usize,
    pub events_queued: usize,
    /// Shared health's state (`{"enabled": false}` when off).
    pub shared: SharedStats,
    /// The models, in catalog order, with their aliases.
    #[serde(default)]
    pub models: Vec<ModelStats>,
    /// Usage per request `user` (the `user_budgets` section), every user
    /// seen since the start; absent without that section.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<UserUsage>,
    /// Catalog reloads applied since the engine started (`Engine::reload`).
    #[serde(default)]
    pub reloads: u64,
    /// The catalog generation serving new requests (0 until a reload).
    #[serde(default)]
    pub generation: u64,
}

/// One user's spend and limits in [`Stats`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UserUsage {
    pub user: String,
    /// Settled spend in the current period, USD.
    pub spent_usd: f64,
    /// Reserved by the user's requests in flight, USD.
    pub reserved_usd: f64,
    pub limit_usd: Option<f64>,
    /// `day`, `week`, `month` or `total`; `None` without a budget.
    pub period: Option<String>,
    pub tokens: u64,
    pub requests: u64,
    pub rejections: u64,
    pub in_flight: u64,
}

impl UserUsage {
    pub fn new(user: &str, p: &crate::budget::Policy, u: &crate::budget::Usage) -> UserUsage {
        use crate::budget::usd;
        UserUsage {
            user: user.to_owned(),
            spent_usd: usd(u.current.spent),
            reserved_usd: usd(u.reserved),
            limit_usd: p.budget.map(|b| usd(b.0)),
            period: p.budget.map(|b| b.1.as_str().to_owned()),
            tokens: u.current.tokens,
            requests: u.current.requests,
            rejections: u.current.rejections,
            in_flight: u.in_flight,
        }
    }
}

/// One endpoint's live health in [`Stats`] (what the health table knows at
/// the moment of the snapshot).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EndpointHealth {
    /// Time-decayed first-token latency of streams, ms; `None` unmeasured.
    pub first_token_ms: Option<f64>,
    /// Time-decayed complete-response latency of non-streaming requests, ms.
    pub response_ms: Option<f64>,
    /// Time-decayed output tokens per second.
    pub throughput_tps: Option<f64>,
    /// Recent error rate, 0 to 1.
    pub error_rate: f64,
    pub in_flight: u32,
    pub requests: u64,
    pub successes: u64,
    pub failures: u64,
    pub consecutive_failures: u32,
    pub circuit: Circuit,
    /// Time left before an open circuit half-opens, ms (0 otherwise).
    pub circuit_open_for_ms: u64,
    pub ejections: u32,
    /// Time left of a Retry-After, ms (0 when none).
    pub rate_limited_for_ms: u64,
    pub last_error: Option<String>,
}

/// One endpoint in [`Stats`]: its live health, then what the catalog says
/// (one flat JSON object).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EndpointStats {
    #[serde(flatten)]
    pub health: EndpointHealth,
    /// `provider/name`.
    pub id: String,
    /// The model slug (`vendor/name`).
    pub model: String,
    /// The provider slug.
    pub provider: String,
    pub protocol: Protocol,
    pub upstream_model: String,
    pub price: Price,
    pub context_window: Option<u64>,
    /// The endpoint facts provider preferences filter on.
    #[serde(flatten)]
    pub facts: EndpointFacts,
    /// Shared health's view of the endpoint, when shared health is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared: Option<SharedEndpointStats>,
}

/// Shared health's state in [`Stats`]: `enabled` alone when it is off.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SharedStats {
    pub enabled: bool,
    /// The connection and sync counters, when enabled.
    #[serde(flatten)]
    pub status: Option<SharedStatus>,
}

/// Shared health's connection and sync counters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SharedStatus {
    pub connected: bool,
    /// The Redis URL, password redacted.
    pub redis: String,
    /// This instance's id.
    pub instance: String,
    /// Instances seen at the last sync.
    pub instances: u32,
    pub last_sync_ms_ago: Option<u64>,
    pub syncs: u64,
    pub sync_errors: u64,
    pub reconnects: u64,
    pub last_error: Option<String>,
    pub sync_ms: u64,
}

/// What the other instances report about one endpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SharedEndpointStats {
    pub other_instances: u32,
    pub others_first_token_ms: Option<f64>,
    pub others_first_token_samples: f64,
    pub others_response_ms: Option<f64>,
    pub others_response_samples: f64,
    pub others_throughput_tps: Option<f64>,
    pub others_in_flight: u32,
    pub others_requests: u64,
    pub others_failures: u64,
    /// Failures by class (`http_503`, `connect_error`, ...).
    pub others_failures_by_class: BTreeMap<String, u64>,
    pub rate_limited_for_ms: u64,
    pub ejected_for_ms: u64,
    pub fleet_max_concurrency: Option<u32>,
    pub leases: Option<u32>,
}

// ---------------------------------------------------------------------------
// plan

/// [`Engine::plan`](crate::Engine::plan): the ranked candidates a request
/// would try now and why (what `llmux route` prints), nothing sent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// The model slug the request asked for.
    pub requested_model: String,
    /// The requested model, then its fallbacks, in order.
    pub models: Vec<PlanModel>,
    /// What the provider preferences removed or ranked last, and why.
    #[serde(default)]
    pub filtered: Vec<PlanFiltered>,
    /// Set when the preferences leave no endpoint: the request would fail
    /// before any upstream call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<PlanError>,
}

/// One endpoint the provider preferences removed or ranked last.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlanFiltered {
    pub endpoint: String,
    /// Which preference and why (`max_price.prompt 3.0 > 2.5`).
    pub reason: String,
    /// True: removed; false: ranked after the endpoints that meet it.
    pub removed: bool,
}

/// Why a planned request would fail before any call.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlanError {
    /// `no_endpoint_matches`.
    pub error_kind: String,
    /// Names each endpoint and what removed it.
    pub message: String,
}

/// The facts about an endpoint that provider preferences filter on, as
/// configured (in [`EndpointStats`] and [`PlanCandidate`]).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EndpointFacts {
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub quantization: Option<String>,
    #[serde(default)]
    pub data_policy: Option<DataPolicy>,
    /// Request features it accepts (`catalog::PARAMETERS` names).
    #[serde(default)]
    pub supported_parameters: Vec<String>,
}

/// An endpoint's data handling, as configured.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct DataPolicy {
    pub training: bool,
    pub retention_days: Option<u64>,
    pub zdr: bool,
}

/// One model's ranking in a [`Plan`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlanModel {
    pub model: String,
    /// `latency`, `price`, `throughput` or `order`.
    pub policy: String,
    /// Best first.
    pub candidates: Vec<PlanCandidate>,
}

/// One endpoint in a [`PlanModel`] and the numbers that placed it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlanCandidate {
    /// 1-based.
    pub rank: usize,
    pub endpoint: String,
    pub provider: String,
    pub protocol: Protocol,
    pub upstream_model: String,
    /// Measured latency of the request's kind, ms; `None` unmeasured.
    pub first_token_ms: Option<f64>,
    /// The latency assumed while unmeasured, ms.
    pub prior_ms: f64,
    pub in_flight: u32,
    /// Latency times (in flight + 1): what latency ranking sorts by.
    pub latency_cost_ms: f64,
    pub price: Price,
    pub throughput_tps: Option<f64>,
    pub circuit: Circuit,
    /// False: moved to the back (open circuit, Retry-After, full).
    pub available: bool,
    /// The request's sticky key points here.
    pub sticky: bool,
    /// The endpoint facts provider preferences filter on.
    #[serde(flatten)]
    pub facts: EndpointFacts,
}

// ---------------------------------------------------------------------------
// terminal events

/// A terminal event's `type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TerminalKind {
    Done,
    Error,
}

/// The `data` of a `done` or `error` event. Strings borrow from the JSON
/// they were read from when they can; bodies are kept as raw JSON, so
/// read it with `serde_json::from_str` / `from_slice`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TerminalEvent<'a> {
    #[serde(rename = "type")]
    pub kind: TerminalKind,
    /// The HTTP status a gateway answers with (errors only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// The response body, in the caller's protocol (non-streaming `done`).
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    pub response: Option<&'a RawValue>,
    /// The error body, in the caller's protocol (`error`).
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    pub error: Option<&'a RawValue>,
    /// The protocol-neutral kind of the error; `None` for `done`.
    pub error_kind: Option<ErrorKind>,
    /// `success` or the failure's outcome (docs/errors.md).
    #[serde(borrow)]
    pub outcome: Cow<'a, str>,
    /// How the request was routed.
    #[serde(borrow)]
    pub routing: RoutingRecord<'a>,
}

/// How a request was routed: every terminal event carries one.
///
/// New facts about routing are added here as fields (with
/// `#[serde(default)]`, so older JSON still reads).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RoutingRecord<'a> {
    /// The model that served (a fallback when the first failed), else the
    /// requested one.
    #[serde(borrow)]
    pub model: Cow<'a, str>,
    #[serde(default, borrow)]
    pub requested_model: Cow<'a, str>,
    /// The endpoint that served; `None` when none did.
    #[serde(default, borrow)]
    pub endpoint: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub provider: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub upstream_model: Option<Cow<'a, str>>,
    /// Every attempt, in the order they started.
    #[serde(default, borrow)]
    pub attempts: Vec<Attempt<'a>>,
    pub first_token_ms: Option<f64>,
    #[serde(default)]
    pub latency_ms: f64,
    #[serde(default)]
    pub usage: Option<TokenUsage>,
    #[serde(default)]
    pub cost_usd: Option<f64>,
    /// Endpoints the provider preferences removed or ranked last, and why.
    #[serde(default, borrow, skip_serializing_if = "Vec::is_empty")]
    pub filtered: Vec<FilteredEndpoint<'a>>,
}

/// One `filtered` entry of a [`RoutingRecord`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FilteredEndpoint<'a> {
    #[serde(borrow)]
    pub endpoint: Cow<'a, str>,
    #[serde(borrow)]
    pub reason: Cow<'a, str>,
}

impl RoutingRecord<'_> {
    /// The endpoint a log line should name: the one that served, else the
    /// last one tried.
    pub fn culprit(&self) -> Option<&str> {
        self.endpoint
            .as_deref()
            .or_else(|| self.attempts.last().map(|a| a.endpoint.as_ref()))
    }
}

/// One attempt in a [`RoutingRecord`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Attempt<'a> {
    #[serde(borrow)]
    pub endpoint: Cow<'a, str>,
    #[serde(borrow)]
    pub provider: Cow<'a, str>,
    #[serde(borrow)]
    pub model: Cow<'a, str>,
    /// `success` or an outcome name (docs/errors.md).
    #[serde(borrow)]
    pub outcome: Cow<'a, str>,
    pub status: Option<u16>,
    pub elapsed_ms: f64,
    #[serde(default, borrow)]
    pub error: Option<Cow<'a, str>>,
}

/// Tokens a request used, as the routing record reports them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenUsage {
    /// Every prompt token, cached ones included.
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
    /// The part of the prompt read from a cache.
    pub cached_tokens: u64,
}

#[cfg(test)]
mod tests;
