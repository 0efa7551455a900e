//! An inbound request: its protocol, model, routing spec, stream flag and
//! timeouts, parsed from the caller's JSON body.
//!
//! llmux reads one extra top-level field, `provider`, and removes it before
//! the body goes upstream:
//!
//! ```json
//! "provider": {
//!   "routing": {"type": "priority", "primary_factor": "latency" | "price" | "throughput"}
//!            | {"type": "order", "providers": ["provider/endpoint" | "provider", ...]},
//!   "timeouts": {"connect_ms": 1000, "first_token_ms": 5000, "idle_ms": 5000, "total_ms": 60000}
//! }
//! ```
//! Every other field passes through untouched.

use crate::catalog::Catalog;
use crate::config::TimeoutsConfig;
use crate::protocol::Protocol;
use crate::routing::Policy;
use serde_json::{Map, Value};

#[derive(Debug)]
pub struct ParsedRequest {
    pub protocol: Protocol,
    /// The caller's body without `provider`.
    pub body: Map<String, Value>,
    /// The model slug as the caller wrote it, without `:provider`.
    pub model_slug: String,
    pub model: usize,
    pub policy: Policy,
    /// Candidate endpoints before ranking: the model's endpoints (only the
    /// pinned provider's if pinned), or the order list.
    pub candidates: Vec<usize>,
    pub stream: bool,
    /// The caller asked for the usage chunk (OpenAI `stream_options.include_usage`).
    pub include_usage: bool,
    pub timeouts: TimeoutsConfig,
}

/// Why a request was refused before any upstream call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestError {
    InvalidJson(String),
    Invalid(String),
    UnknownModel(String),
    UnknownProvider(String),
    UnknownEndpoint(String),
}

impl std::fmt::Display for RequestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RequestError::InvalidJson(m)
            | RequestError::Invalid(m)
            | RequestError::UnknownModel(m)
            | RequestError::UnknownProvider(m)
            | RequestError::UnknownEndpoint(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for RequestError {}

fn invalid(m: impl Into<String>) -> RequestError {
    RequestError::Invalid(m.into())
}

/// Parses a caller's request body against the catalog.
pub fn parse(
    catalog: &Catalog,
    protocol: Protocol,
    json: &[u8],
) -> Result<ParsedRequest, RequestError> {
    let value: Value = serde_json::from_slice(json)
        .map_err(|e| RequestError::InvalidJson(format!("request is not valid JSON: {e}")))?;
    let Value::Object(mut body) = value else {
        return Err(invalid("request must be a JSON object"));
    };
    let slug = match body.get("model") {
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(invalid("`model` must be a string")),
        None => return Err(invalid("`model` is required")),
    };
    match (protocol, body.get("messages")) {
        (_, Some(Value::Array(_))) => {}
        (_, Some(_)) => return Err(invalid("`messages` must be an array")),
        (_, None) => return Err(invalid("`messages` is required")),
    }
    let stream = match body.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(invalid("`stream` must be a boolean")),
    };
    let include_usage = match protocol {
        Protocol::Anthropic => true,
        Protocol::OpenAi => body
            .get("stream_options")
            .and_then(|o| o.get("include_usage"))
            .and_then(Value::as_bool)
            .unwrap_or(false),
    };

    let (model_slug, pin) = match slug.rsplit_once(':') {
        Some((m, p)) => (m.to_owned(), Some(p.to_owned())),
        None => (slug.clone(), None),
    };
    let model = catalog.model(&model_slug).ok_or_else(|| {
        RequestError::UnknownModel(format!(
            "unknown model {model_slug:?} (configured: {})",
            catalog.model_names()
        ))
    })?;
    let all = &catalog.models[model].endpoints;
    let mut candidates: Vec<usize> = match &pin {
        None => all.clone(),
        Some(p) => {
            let v: Vec<usize> = all
                .iter()
                .copied()
                .filter(|&e| catalog.provider_of(e).slug == *p)
                .collect();
            if v.is_empty() {
                return Err(RequestError::UnknownProvider(format!(
                    "provider {p:?} does not serve model {model_slug:?} (providers: {})",
                    provider_list(catalog, all)
                )));
            }
            v
        }
    };

    let mut policy = Policy::Latency;
    let mut timeouts = TimeoutsConfig::default();
    if let Some(prov) = body.remove("provider") {
        let Value::Object(prov) = prov else {
            return Err(invalid("`provider` must be an object"));
        };
        for (k, v) in prov {
            match k.as_str() {
                "routing" => {
                    let (p, order) = parse_routing(catalog, &model_slug, &candidates, &v)?;
                    policy = p;
                    if let Some(order) = order {
                        candidates = order;
                    }
                }
                "timeouts" => {
                    timeouts = serde_json::from_value(v)
                        .map_err(|e| invalid(format!("`provider.timeouts`: {e}")))?;
                    for t in [
                        timeouts.connect_ms,
                        timeouts.first_token_ms,
                        timeouts.idle_ms,
                        timeouts.total_ms,
                    ] {
                        if t == Some(0) {
                            return Err(invalid(
                                "`provider.timeouts`: every timeout must be at least 1 ms",
                            ));
                        }
                    }
                }
                other => {
                    return Err(invalid(format!(
                        "unknown field `provider.{other}` (known: routing, timeouts)"
                    )))
                }
            }
        }
    }
    Ok(ParsedRequest {
        protocol,
        body,
        model_slug,
        model,
        policy,
        candidates,
        stream,
        include_usage,
        timeouts,
    })
}

fn provider_list(catalog: &Catalog, endpoints: &[usize]) -> String {
    let mut v: Vec<&str> = endpoints
        .iter()
        .map(|&e| catalog.provider_of(e).slug.as_str())
        .collect();
    v.sort_unstable();
    v.dedup();
    v.join(", ")
}

fn endpoint_list(catalog: &Catalog, endpoints: &[usize]) -> String {
    endpoints
        .iter()
        .map(|&e| catalog.endpoints[e].id.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn parse_routing(
    catalog: &Catalog,
    model_slug: &str,
    candidates: &[usize],
    v: &Value,
) -> Result<(Policy, Option<Vec<usize>>), RequestError> {
    let kind = v
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("`provider.routing.type` must be \"priority\" or \"order\""))?;
    match kind {
        "priority" => {
            let factor = v
                .get("primary_factor")
                .and_then(Value::as_str)
                .unwrap_or("latency");
            let policy = match factor {
                "latency" => Policy::Latency,
                "price" => Policy::Price,
                "throughput" => Policy::Throughput,
                other => {
                    return Err(invalid(format!(
                        "unknown `provider.routing.primary_factor` {other:?} (expected latency, price or throughput)"
                    )))
                }
            };
            Ok((policy, None))
        }
        "order" => {
            let list = v
                .get("providers")
                .and_then(Value::as_array)
                .ok_or_else(|| {
                    invalid("`provider.routing.providers` must be a list of endpoint ids")
                })?;
            if list.is_empty() {
                return Err(invalid("`provider.routing.providers` must not be empty"));
            }
            let mut order = Vec::new();
            for (i, item) in list.iter().enumerate() {
                let name = item.as_str().ok_or_else(|| {
                    invalid(format!(
                        "`provider.routing.providers[{i}]` must be a string"
                    ))
                })?;
                // An endpoint id, or a provider slug standing for all of its endpoints.
                let matched: Vec<usize> = candidates
                    .iter()
                    .copied()
                    .filter(|&e| {
                        catalog.endpoints[e].id == name || catalog.provider_of(e).slug == name
                    })
                    .collect();
                if matched.is_empty() {
                    return Err(RequestError::UnknownEndpoint(format!(
                        "`provider.routing.providers[{i}]`: {name:?} is not an endpoint of model {model_slug:?} (endpoints: {})",
                        endpoint_list(catalog, candidates)
                    )));
                }
                for e in matched {
                    if !order.contains(&e) {
                        order.push(e);
                    }
                }
            }
            Ok((Policy::Order, Some(order)))
        }
        other => Err(invalid(format!(
            "unknown `provider.routing.type` {other:?} (expected \"priority\" or \"order\")"
        ))),
    }
}
