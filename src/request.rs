//! An inbound request: its protocol, model, routing spec, stream flag and
//! timeouts, parsed from the caller's JSON body.
//!
//! llmux reads two extra top-level fields and removes them before the body
//! goes upstream, `models` (fallback models, tried in order after `model`)
//! and `provider`:
//!
//! ```json
//! "models": ["vendor/other", "vendor/third:provider"],
//! "provider": {
//!   "routing": {"type": "priority", "primary_factor": "latency" | "price" | "throughput"}
//!            | {"type": "order", "providers": ["provider/endpoint" | "provider", ...]},
//!   "fallback": "vendor/model" | ["vendor/a", "vendor/b"],
//!   "timeouts": {"connect_ms": 1000, "first_token_ms": 5000, "idle_ms": 5000, "total_ms": 60000},
//!   "hedge": true | false | {"delay_ms": 300} | {"percentile": 0.9},
//!   "sticky_key": "conversation-42"
//! }
//! ```
//! Every other field passes through untouched.
//!
//! Responses requests (`input` instead of `messages`) carry state rules:
//! `store: true` keeps only endpoints with protocol `responses`, and
//! `previous_response_id` only the endpoint its id names (see
//! `protocol::responses`); either is refused here when no such endpoint
//! serves the request.
//!
//! The body is validated and these fields read in one pass without building
//! a JSON tree (`protocol::splice`); an endpoint of the caller's protocol
//! gets the caller's bytes spliced, and the tree is built only to
//! translate to another protocol (or for Responses state and
//! `require_parameters`).
//!
//! Context windows: the prompt size is estimated as the length in bytes of
//! the compact JSON of `messages`, `system`, `tools`, `input` and `instructions`
//! (the last two: Responses), divided by 4 and rounded up (about 4 bytes per token for English text and JSON). Endpoints whose
//! `context_window` is smaller than the estimate are skipped; a request that
//! fits no endpoint of any of its models is refused.

use crate::catalog::{Catalog, QUANTIZATIONS};
use crate::config::TimeoutsConfig;
use crate::protocol::splice::{self, Body, Facts, ReadError, Shape};
use crate::protocol::Protocol;
use crate::routing::filter::{Cutoffs, Filtered, MaxPrice, Partition, Preferences, Sort};
use crate::routing::Policy;
use serde_json::{Map, Value};

/// One model a request may be served by, with its candidates.
#[derive(Debug, Clone)]
pub struct ModelRoute {
    pub model: usize,
    /// The model's slug (an alias the caller wrote resolved), without
    /// `:provider`.
    pub slug: String,
    /// Candidate endpoints before ranking: the model's endpoints (only the
    /// pinned provider's if pinned), or the order list's, in its order.
    pub candidates: Vec<usize>,
    pub policy: Policy,
    /// Candidates a soft preference ranks last (`preferred_*`), set by the
    /// engine when it applies the preferences.
    pub demoted: Vec<usize>,
}

/// Hedging asked for by a request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Hedge {
    Off,
    /// Use the engine's hedging config.
    Default,
    DelayMs(u64),
    Percentile(f64),
}

#[derive(Debug)]
pub struct ParsedRequest {
    pub protocol: Protocol,
    /// The caller's body: its bytes, where its fields lie, and its tree
    /// without `provider` and `models` (built on first use).
    pub body: Body,
    /// The model the caller asked for (even when no endpoint of it fits).
    pub requested_model: String,
    /// The requested model first, then fallback models, each at most once;
    /// models with no endpoint that fits the prompt are left out.
    pub routes: Vec<ModelRoute>,
    pub stream: bool,
    /// The caller asked for the usage chunk (OpenAI `stream_options.include_usage`).
    pub include_usage: bool,
    pub timeouts: TimeoutsConfig,
    /// `None`: not set by the request (the engine's config decides).
    pub hedge: Option<Hedge>,
    pub sticky_key: Option<String>,
    /// The provider preferences, the engine's defaults merged under the
    /// request's.
    pub prefs: Preferences,
    /// What the request uses, in `supported_parameters` names (worked out
    /// only when `require_parameters` asks for it; empty otherwise).
    pub used_parameters: Vec<&'static str>,
    /// Endpoints removed or ranked down so far, and why (the engine adds
    /// the filters' verdicts when it runs the request).
    pub filtered: Vec<Filtered>,
    /// The caller's user id (`user`, Anthropic `metadata.user_id`), read
    /// in the validating pass (`user_budgets`, `sticky.from_user`).
    pub user: Option<String>,
    /// The output limit the body sets (`max_tokens`, else
    /// `max_completion_tokens`, else `max_output_tokens`), read in the
    /// validating pass: what a budget reservation assumes.
    pub output_limit: Option<u64>,
}

impl ParsedRequest {
    /// The slug of the requested (first) model, without `:provider`.
    pub fn model_slug(&self) -> &str {
        &self.requested_model
    }
}

/// Why a request was refused before any upstream call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestError {
    InvalidJson(String),
    Invalid(String),
    UnknownModel(String),
    UnknownProvider(String),
    UnknownEndpoint(String),
    /// The body is larger than `max_request_bytes`.
    TooLarge(String),
}

impl std::fmt::Display for RequestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RequestError::InvalidJson(m)
            | RequestError::Invalid(m)
            | RequestError::UnknownModel(m)
            | RequestError::UnknownProvider(m)
            | RequestError::UnknownEndpoint(m)
            | RequestError::TooLarge(m) => f.write_str(m),
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
    parse_with_defaults(catalog, protocol, json, &catalog.provider_defaults)
}

/// [`parse`] with other provider defaults than the catalog's (a gateway
/// key's, narrowed from them).
pub fn parse_with_defaults(
    catalog: &Catalog,
    protocol: Protocol,
    json: &[u8],
    defaults: &Preferences,
) -> Result<ParsedRequest, RequestError> {
    if json.len() > catalog.max_request_bytes {
        return Err(RequestError::TooLarge(format!(
            "the request is {} bytes, more than max_request_bytes ({})",
            json.len(),
            catalog.max_request_bytes
        )));
    }
    let (text, mut facts) = splice::read(json).map_err(|e| match e {
        ReadError::Json(m) => RequestError::InvalidJson(format!("request is not valid JSON: {m}")),
        ReadError::NotObject => invalid("request must be a JSON object"),
    })?;
    let slug = check_shape(protocol, &facts)?;
    let (stream, include_usage) = stream_flags(protocol, &facts)?;
    let mut slugs = vec![slug];
    fallback_models(facts.models.take(), &mut slugs)?;
    let mut prefs = match facts.provider.take() {
        Some(p) => ProviderField::parse(p, &mut slugs)?,
        None => ProviderField::default(),
    };
    let user = user_of(protocol, &facts).map(str::to_owned);
    if prefs.sticky_key.is_none() && catalog.sticky.from_user {
        prefs.sticky_key = user.clone();
    }
    let output_limit = facts.output_limit_for(protocol);
    let body = Body::new(text);
    let own_sort = prefs.prefs.sort.is_some();
    let mut merged = Preferences::narrow(defaults, prefs.prefs);
    if prefs.routing.is_some() {
        // The request's routing spec replaces a default order or sort.
        if !prefs.own_order {
            merged.order = None;
        }
        if !own_sort {
            merged.sort = None;
        }
    }
    let routing = effective_routing(prefs.routing, &merged, own_sort)?;
    let mut filtered = Vec::new();
    let from_order = merged.order.is_some();
    let (requested_model, routes) = resolve_routes(
        catalog,
        protocol,
        &body,
        &slugs,
        (routing.as_ref(), &merged, &mut filtered),
    )
    .map_err(|e| if from_order { order_label(e) } else { e })?;
    Ok(ParsedRequest {
        protocol,
        requested_model,
        routes,
        stream,
        include_usage,
        timeouts: prefs.timeouts,
        hedge: prefs.hedge,
        sticky_key: prefs.sticky_key,
        used_parameters: match merged.require_parameters {
            true => used_parameters(protocol, body.tree()),
            false => Vec::new(),
        },
        prefs: merged,
        filtered,
        body,
        user,
        output_limit,
    })
}

/// `stream`, and whether the caller gets the usage chunk.
fn stream_flags(protocol: Protocol, facts: &Facts<'_>) -> Result<(bool, bool), RequestError> {
    let stream = match &facts.stream {
        None | Some(Shape::Null) => false,
        Some(Shape::Bool(b)) => *b,
        Some(_) => return Err(invalid("`stream` must be a boolean")),
    };
    let include_usage = match protocol {
        Protocol::Anthropic | Protocol::Responses | Protocol::Gemini => true,
        Protocol::OpenAi => facts.include_usage.as_ref().and_then(Shape::as_bool) == Some(true),
    };
    Ok((stream, include_usage))
}

/// The `model` slug, once the body has the fields its protocol needs.
fn check_shape(protocol: Protocol, body: &Facts<'_>) -> Result<String, RequestError> {
    let slug = match &body.model {
        Some(Shape::Str(s)) => s.to_string(),
        Some(_) => return Err(invalid("`model` must be a string")),
        None => return Err(invalid("`model` is required")),
    };
    match (protocol, &body.messages, &body.input) {
        (Protocol::Responses, _, Some(Shape::Array | Shape::Str(_))) => {}
        (Protocol::Responses, _, Some(_)) => {
            return Err(invalid("`input` must be a string or a list of items"))
        }
        (Protocol::Responses, _, None) => return Err(invalid("`input` is required")),
        (Protocol::Gemini, _, _) => match body.contents {
            Some(Shape::Array) => {}
            Some(_) => return Err(invalid("`contents` must be an array")),
            None => return Err(invalid("`contents` is required")),
        },
        (_, Some(Shape::Array), _) => {}
        (_, Some(_), _) => return Err(invalid("`messages` must be an array")),
        (_, None, _) => return Err(invalid("`messages` is required")),
    }
    Ok(slug)
}

/// Appends the slugs of a `models` list (fallback models).
fn fallback_models(models: Option<Value>, slugs: &mut Vec<String>) -> Result<(), RequestError> {
    match models {
        None | Some(Value::Null) => Ok(()),
        Some(Value::Array(list)) => {
            for (i, m) in list.into_iter().enumerate() {
                match m {
                    Value::String(m) => slugs.push(m),
                    _ => {
                        return Err(invalid(format!(
                            "`models[{i}]` must be a model slug string"
                        )))
                    }
                }
            }
            Ok(())
        }
        Some(_) => Err(invalid("`models` must be a list of model slugs")),
    }
}

/// What a request's `provider` object says.
#[derive(Default)]
struct ProviderField {
    routing: Option<Value>,
    timeouts: TimeoutsConfig,
    hedge: Option<Hedge>,
    sticky_key: Option<String>,
    /// The filter and ranking fields (both dialects).
    prefs: Preferences,
    /// The request set `order` itself.
    own_order: bool,
}

impl ProviderField {
    /// Reads `provider`; its `fallback` models are appended to `slugs`.
    fn parse(prov: Value, slugs: &mut Vec<String>) -> Result<ProviderField, RequestError> {
        let Value::Object(prov) = prov else {
            return Err(invalid("`provider` must be an object"));
        };
        let mut out = ProviderField::default();
        for (k, v) in prov {
            match k.as_str() {
                "routing" => out.routing = Some(v),
                "fallback" => provider_fallback(v, slugs)?,
                "timeouts" => out.timeouts = parse_timeouts(v)?,
                "hedge" => out.hedge = Some(parse_hedge(&v)?),
                "sticky_key" => match v {
                    Value::String(k) => out.sticky_key = Some(k),
                    Value::Null => {}
                    _ => return Err(invalid("`provider.sticky_key` must be a string")),
                },
                other => {
                    if !parse_preference(&mut out.prefs, other, v)? {
                        return Err(invalid(format!(
                            "unknown field `provider.{other}` (known: {PROVIDER_KEYS})"
                        )));
                    }
                }
            }
        }
        out.own_order = out.prefs.order.is_some();
        Ok(out)
    }
}

/// `provider.fallback`: a slug or a list of them, appended to `slugs`.
fn provider_fallback(v: Value, slugs: &mut Vec<String>) -> Result<(), RequestError> {
    match v {
        Value::String(m) => slugs.push(m),
        Value::Array(list) => {
            for (i, m) in list.into_iter().enumerate() {
                match m {
                    Value::String(m) => slugs.push(m),
                    _ => {
                        return Err(invalid(format!(
                            "`provider.fallback[{i}]` must be a model slug"
                        )))
                    }
                }
            }
        }
        Value::Null => {}
        _ => {
            return Err(invalid(
                "`provider.fallback` must be a model slug or a list of them",
            ))
        }
    }
    Ok(())
}

fn parse_timeouts(v: Value) -> Result<TimeoutsConfig, RequestError> {
    let t: TimeoutsConfig =
        serde_json::from_value(v).map_err(|e| invalid(format!("`provider.timeouts`: {e}")))?;
    if [t.connect_ms, t.first_token_ms, t.idle_ms, t.total_ms].contains(&Some(0)) {
        return Err(invalid(
            "`provider.timeouts`: every timeout must be at least 1 ms",
        ));
    }
    Ok(t)
}

/// The caller's user id (the sticky key with `sticky.from_user`).
fn user_of<'a>(protocol: Protocol, body: &'a Facts<'_>) -> Option<&'a str> {
    let user = match protocol {
        Protocol::OpenAi | Protocol::Responses => body.user.as_ref(),
        Protocol::Anthropic => body.user_id.as_ref(),
        Protocol::Gemini => None,
    };
    user.and_then(Shape::as_str)
}

/// The requested model's slug and the routes of every model the request
/// may be served by, each at most once, narrowed by the routing spec, the
/// context window and the Responses state rules.
fn resolve_routes(
    catalog: &Catalog,
    protocol: Protocol,
    body: &Body,
    slugs: &[String],
    (routing, prefs, filtered): (Option<&Value>, &Preferences, &mut Vec<Filtered>),
) -> Result<(String, Vec<ModelRoute>), RequestError> {
    let mut routes: Vec<ModelRoute> = Vec::new();
    for slug in slugs {
        let route = resolve_model(catalog, slug)?;
        if !routes
            .iter()
            .any(|r| r.model == route.model && r.candidates == route.candidates)
        {
            routes.push(route);
        }
    }
    let requested_model = routes[0].slug.clone();
    let before: Vec<Vec<usize>> = routes.iter().map(|r| r.candidates.clone()).collect();
    if let Some(r) = routing {
        apply_routing(catalog, &mut routes, r)?;
    }
    apply_sort_and_fallbacks(&mut routes, &before, prefs, filtered);
    // Only now drop what the prompt does not fit, so an order list naming
    // such an endpoint is not mistaken for one naming an unknown endpoint.
    // (The estimate is worked out only when some endpoint has a window.)
    let windows = routes
        .iter()
        .flat_map(|r| &r.candidates)
        .any(|&e| catalog.endpoints[e].context_window.is_some());
    let prompt_tokens_estimate = match windows {
        true => body.prompt_tokens_estimate(),
        false => 0,
    };
    for r in &mut routes {
        r.candidates.retain(|&e| {
            catalog.endpoints[e]
                .context_window
                .is_none_or(|w| w >= prompt_tokens_estimate)
        });
    }
    routes.retain(|r| !r.candidates.is_empty());
    if protocol == Protocol::Responses && !routes.is_empty() {
        restrict_stateful(catalog, body.tree(), &mut routes)?;
    }
    if routes.is_empty() {
        return Err(invalid(format!(
            "the prompt (about {} tokens) exceeds the context window of every endpoint of {}",
            body.prompt_tokens_estimate(),
            slugs.join(", ")
        )));
    }
    Ok((requested_model, routes))
}

/// Responses state lives only at the endpoint that made it: `store: true`
/// keeps only Responses endpoints, and `previous_response_id` only the
/// endpoint its id names (see `protocol::responses`). Refused when no such
/// endpoint serves the request, before any upstream call.
fn restrict_stateful(
    catalog: &Catalog,
    body: &Map<String, Value>,
    routes: &mut Vec<ModelRoute>,
) -> Result<(), RequestError> {
    let keep: Option<Box<dyn Fn(usize) -> bool>> = match body.get("previous_response_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(id)) => {
            let Some((_, endpoint)) = crate::protocol::responses::untag_id(id) else {
                return Err(invalid(format!(
                    "`previous_response_id` {id:?} was not made by a Responses endpoint of this router (llmux keeps no conversation state)"
                )));
            };
            let found = routes.iter().flat_map(|r| r.candidates.iter()).any(|&e| {
                catalog.endpoints[e].id == endpoint
                    && catalog.provider_of(e).protocol == Protocol::Responses
            });
            if !found {
                return Err(invalid(format!(
                    "`previous_response_id` belongs to endpoint {endpoint:?}, which does not serve this request"
                )));
            }
            Some(Box::new(move |e| catalog.endpoints[e].id == endpoint))
        }
        Some(_) => return Err(invalid("`previous_response_id` must be a string")),
    };
    let store = body.get("store").and_then(Value::as_bool) == Some(true);
    if keep.is_none() && !store {
        return Ok(());
    }
    for r in routes.iter_mut() {
        r.candidates.retain(|&e| {
            catalog.provider_of(e).protocol == Protocol::Responses
                && keep.as_ref().is_none_or(|k| k(e))
        });
        if keep.is_some() {
            r.policy = Policy::Order;
        }
    }
    routes.retain(|r| !r.candidates.is_empty());
    if routes.is_empty() {
        return Err(invalid(
            "`store: true` needs an endpoint with protocol \"responses\" and none serves this request (llmux keeps no conversation state)",
        ));
    }
    Ok(())
}

/// Estimated prompt tokens: JSON bytes of messages, system, tools, and
/// Responses' input and instructions / 4.
pub fn estimate_prompt_tokens(body: &Map<String, Value>) -> u64 {
    let bytes: usize = [
        "messages",
        "system",
        "tools",
        "input",
        "instructions",
        "contents",
        "systemInstruction",
    ]
    .iter()
    .filter_map(|k| body.get(*k))
    .map(|v| serde_json::to_string(v).map(|s| s.len()).unwrap_or(0))
    .sum();
    (bytes as u64).div_ceil(4)
}

fn parse_hedge(v: &Value) -> Result<Hedge, RequestError> {
    match v {
        Value::Bool(true) => Ok(Hedge::Default),
        Value::Bool(false) | Value::Null => Ok(Hedge::Off),
        Value::Object(o) => {
            if let Some(ms) = o.get("delay_ms") {
                return ms.as_u64().map(Hedge::DelayMs).ok_or_else(|| {
                    invalid("`provider.hedge.delay_ms` must be a whole number of ms")
                });
            }
            if let Some(p) = o.get("percentile") {
                return p
                    .as_f64()
                    .filter(|p| (0.0..=1.0).contains(p))
                    .map(Hedge::Percentile)
                    .ok_or_else(|| invalid("`provider.hedge.percentile` must be between 0 and 1"));
            }
            Err(invalid(
                "`provider.hedge` must be true, false, {\"delay_ms\": N} or {\"percentile\": P}",
            ))
        }
        _ => Err(invalid(
            "`provider.hedge` must be true, false, {\"delay_ms\": N} or {\"percentile\": P}",
        )),
    }
}

/// Resolves `vendor/model` or `vendor/model:provider`.
fn resolve_model(catalog: &Catalog, slug: &str) -> Result<ModelRoute, RequestError> {
    let (model_slug, pin) = match slug.rsplit_once(':') {
        Some((m, p)) => (m, Some(p)),
        None => (slug, None),
    };
    let model = catalog.model(model_slug).ok_or_else(|| {
        RequestError::UnknownModel(format!(
            "unknown model {model_slug:?} (configured: {})",
            catalog.model_names()
        ))
    })?;
    let all = &catalog.models[model].endpoints;
    let candidates: Vec<usize> = match pin {
        None => all.clone(),
        Some(p) => {
            let v: Vec<usize> = all
                .iter()
                .copied()
                .filter(|&e| catalog.provider_of(e).slug == p)
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
    Ok(ModelRoute {
        model,
        // An alias resolves to the model's own slug.
        slug: catalog.models[model].slug.clone(),
        candidates,
        policy: Policy::Latency,
        demoted: Vec::new(),
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

fn apply_routing(
    catalog: &Catalog,
    routes: &mut [ModelRoute],
    v: &Value,
) -> Result<(), RequestError> {
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
            for r in routes.iter_mut() {
                r.policy = policy;
            }
            Ok(())
        }
        "order" => apply_order(catalog, routes, v.get("providers")),
        other => Err(invalid(format!(
            "unknown `provider.routing.type` {other:?} (expected \"priority\" or \"order\")"
        ))),
    }
}

/// `{"type": "order", "providers": [...]}`: each route's candidates become
/// the listed endpoints it has, in the list's order; a model the list says
/// nothing about keeps its own ranking.
fn apply_order(
    catalog: &Catalog,
    routes: &mut [ModelRoute],
    providers: Option<&Value>,
) -> Result<(), RequestError> {
    let list = providers
        .and_then(Value::as_array)
        .ok_or_else(|| invalid("`provider.routing.providers` must be a list of endpoint ids"))?;
    if list.is_empty() {
        return Err(invalid("`provider.routing.providers` must not be empty"));
    }
    let mut orders: Vec<Vec<usize>> = vec![Vec::new(); routes.len()];
    for (i, item) in list.iter().enumerate() {
        let name = item.as_str().ok_or_else(|| {
            invalid(format!(
                "`provider.routing.providers[{i}]` must be a string"
            ))
        })?;
        // An endpoint id, or a provider slug standing for all of its endpoints.
        let mut found = false;
        for (r, order) in routes.iter().zip(orders.iter_mut()) {
            for &e in &r.candidates {
                if catalog.endpoints[e].id == name || catalog.provider_of(e).slug == name {
                    found = true;
                    if !order.contains(&e) {
                        order.push(e);
                    }
                }
            }
        }
        if !found {
            return Err(not_in_order(catalog, routes, i, name));
        }
    }
    for (r, order) in routes.iter_mut().zip(orders) {
        if !order.is_empty() {
            r.candidates = order;
            r.policy = Policy::Order;
        }
    }
    Ok(())
}

/// An order list entry naming no candidate of the request.
fn not_in_order(catalog: &Catalog, routes: &[ModelRoute], i: usize, name: &str) -> RequestError {
    let all: Vec<usize> = routes
        .iter()
        .flat_map(|r| r.candidates.iter().copied())
        .collect();
    RequestError::UnknownEndpoint(format!(
        "`provider.routing.providers[{i}]`: {name:?} is not an endpoint of {} (endpoints: {})",
        routes
            .iter()
            .map(|r| format!("{:?}", r.slug))
            .collect::<Vec<_>>()
            .join(", "),
        endpoint_list(catalog, &all)
    ))
}

// ---- Provider preferences (issue 22) ----

/// Every key `provider` accepts, for the unknown-key error.
const PROVIDER_KEYS: &str = "routing, fallback, timeouts, hedge, sticky_key, order, allow_fallbacks, only, ignore, sort, max_price, data_collection, zdr, quantizations, require_parameters, region, regions, max_latency, min_throughput, preferred_max_latency, preferred_min_throughput";

/// Reads one preference key of `provider` into `p`; false when `key` is
/// not a preference.
fn parse_preference(p: &mut Preferences, key: &str, v: Value) -> Result<bool, RequestError> {
    let at = format!("`provider.{key}`");
    match key {
        "order" => p.order = Some(names(&at, v)?),
        "allow_fallbacks" => p.allow_fallbacks = Some(flag(&at, &v)?),
        "only" => p.only = Some(names(&at, v)?),
        "ignore" => p.ignore = names(&at, v)?,
        "sort" => p.sort = Some(parse_sort(&v)?),
        "max_price" => p.max_price = parse_max_price(&v)?,
        "data_collection" => {
            p.deny_data_collection = match v.as_str() {
                Some("deny") => true,
                Some("allow") => false,
                _ => return Err(invalid(format!("{at} must be \"allow\" or \"deny\""))),
            }
        }
        "zdr" => p.zdr = flag(&at, &v)?,
        "quantizations" => {
            let q = names(&at, v)?;
            if let Some(bad) = q.iter().find(|x| !QUANTIZATIONS.contains(&x.as_str())) {
                return Err(invalid(format!(
                    "{at}: unknown quantization {bad:?} (known: {})",
                    QUANTIZATIONS.join(", ")
                )));
            }
            p.quantizations = Some(q);
        }
        "require_parameters" => p.require_parameters = flag(&at, &v)?,
        "region" => match v {
            Value::String(r) => p.regions = Some(vec![r]),
            _ => return Err(invalid(format!("{at} must be a region name"))),
        },
        "regions" => p.regions = Some(names(&at, v)?),
        "max_latency" => p.max_latency = cutoffs(&at, &v)?,
        "min_throughput" => p.min_throughput = cutoffs(&at, &v)?,
        "preferred_max_latency" => p.preferred_max_latency = cutoffs(&at, &v)?,
        "preferred_min_throughput" => p.preferred_min_throughput = cutoffs(&at, &v)?,
        _ => return Ok(false),
    }
    Ok(true)
}

fn flag(at: &str, v: &Value) -> Result<bool, RequestError> {
    v.as_bool()
        .ok_or_else(|| invalid(format!("{at} must be true or false")))
}

/// A list of strings (a single string is a list of one).
fn names(at: &str, v: Value) -> Result<Vec<String>, RequestError> {
    match v {
        Value::String(s) => Ok(vec![s]),
        Value::Array(list) => list
            .into_iter()
            .map(|x| match x {
                Value::String(s) => Ok(s),
                _ => Err(invalid(format!("{at} must be a list of strings"))),
            })
            .collect(),
        _ => Err(invalid(format!("{at} must be a list of strings"))),
    }
}

fn non_negative(at: &str, v: &Value) -> Result<f64, RequestError> {
    v.as_f64()
        .filter(|x| x.is_finite() && *x >= 0.0)
        .ok_or_else(|| invalid(format!("{at} must be a number >= 0")))
}

/// `sort`: `"price" | "throughput" | "latency"` or `{by, partition}`.
fn parse_sort(v: &Value) -> Result<Sort, RequestError> {
    let by = |s: Option<&str>| {
        match s {
        Some("price") => Ok(Policy::Price),
        Some("throughput") => Ok(Policy::Throughput),
        Some("latency") => Ok(Policy::Latency),
        _ => Err(invalid(
            "`provider.sort` must be \"price\", \"throughput\", \"latency\" or {\"by\": ..., \"partition\": \"model\" | \"none\"}",
        )),
    }
    };
    match v {
        Value::Object(o) => {
            if let Some(k) = o
                .keys()
                .find(|k| !["by", "partition"].contains(&k.as_str()))
            {
                return Err(invalid(format!(
                    "unknown field `provider.sort.{k}` (known: by, partition)"
                )));
            }
            let partition = match o.get("partition").map(Value::as_str) {
                None | Some(Some("model")) => Partition::Model,
                Some(Some("none")) => Partition::None,
                _ => {
                    return Err(invalid(
                        "`provider.sort.partition` must be \"model\" or \"none\"",
                    ))
                }
            };
            Ok(Sort {
                by: by(o.get("by").and_then(Value::as_str))?,
                partition,
            })
        }
        _ => Ok(Sort {
            by: by(v.as_str())?,
            partition: Partition::Model,
        }),
    }
}

fn parse_max_price(v: &Value) -> Result<MaxPrice, RequestError> {
    let Value::Object(o) = v else {
        return Err(invalid(
            "`provider.max_price` must be an object {prompt, completion, request, image}",
        ));
    };
    let mut out = MaxPrice::default();
    for (k, x) in o {
        let at = format!("`provider.max_price.{k}`");
        let slot = match k.as_str() {
            "prompt" => &mut out.prompt,
            "completion" => &mut out.completion,
            "request" => &mut out.request,
            "image" => &mut out.image,
            _ => {
                return Err(invalid(format!(
                    "unknown field {at} (known: prompt, completion, request, image)"
                )))
            }
        };
        *slot = Some(non_negative(&at, x)?);
    }
    Ok(out)
}

/// A number (the p50) or `{p50, p75, p90, p99}`.
fn cutoffs(at: &str, v: &Value) -> Result<Cutoffs, RequestError> {
    let mut c = Cutoffs::default();
    match v {
        Value::Number(_) => c.p50 = Some(non_negative(at, v)?),
        Value::Object(o) => {
            for (k, x) in o {
                let inner = format!("{}.{k}`", at.trim_end_matches('`'));
                let slot = match k.as_str() {
                    "p50" => &mut c.p50,
                    "p75" => &mut c.p75,
                    "p90" => &mut c.p90,
                    "p99" => &mut c.p99,
                    _ => {
                        return Err(invalid(format!(
                            "unknown field {inner} (known: p50, p75, p90, p99)"
                        )))
                    }
                };
                *slot = Some(non_negative(&inner, x)?);
            }
        }
        _ => {
            return Err(invalid(format!(
                "{at} must be a number (the p50) or {{\"p50\", \"p75\", \"p90\", \"p99\"}}"
            )))
        }
    }
    Ok(c)
}

/// The engine-level `provider` defaults of the config: preference keys
/// only. Errors are `(path, message)`.
pub fn parse_defaults(v: &Value) -> Result<Preferences, (String, String)> {
    let Value::Object(o) = v else {
        return Err(("provider".into(), "must be an object".into()));
    };
    let mut p = Preferences::default();
    for (k, x) in o {
        let at = format!("provider.{k}");
        match parse_preference(&mut p, k, x.clone()) {
            Ok(true) => {}
            Ok(false) => {
                return Err((
                    at,
                    format!(
                        "unknown field `{k}` (defaults take: {})",
                        PROVIDER_KEYS
                            .split(", ")
                            .skip(5)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ))
            }
            Err(e) => return Err((at, e.to_string())),
        }
    }
    Ok(p)
}

/// The request features a body uses, by its protocol's field names, in
/// the vocabulary of `supported_parameters`.
pub fn used_parameters(protocol: Protocol, body: &Map<String, Value>) -> Vec<&'static str> {
    // Gemini's sampling settings sit in `generationConfig`, by other names.
    let generation = body
        .get("generationConfig")
        .filter(|_| protocol == Protocol::Gemini);
    let gemini_key = |k: &str| match k {
        "temperature" => Some("temperature"),
        "top_p" => Some("topP"),
        "top_k" => Some("topK"),
        "stop" => Some("stopSequences"),
        "seed" => Some("seed"),
        "frequency_penalty" => Some("frequencyPenalty"),
        "presence_penalty" => Some("presencePenalty"),
        _ => None,
    };
    let has = |k: &str| match (generation, gemini_key(k)) {
        (Some(g), Some(gk)) => g.get(gk).is_some_and(|v| !v.is_null()),
        _ => body.get(k).is_some_and(|v| !v.is_null()),
    };
    let mut out = Vec::new();
    if body
        .get("tools")
        .and_then(Value::as_array)
        .is_some_and(|t| !t.is_empty())
    {
        out.push("tools");
    }
    let format = match protocol {
        Protocol::OpenAi => body.get("response_format"),
        Protocol::Responses => body.get("text").and_then(|t| t.get("format")),
        Protocol::Anthropic => None,
        Protocol::Gemini => generation.and_then(|g| g.get("responseMimeType")),
    };
    let reasoning = match protocol {
        Protocol::OpenAi => has("reasoning_effort") || has("reasoning"),
        Protocol::Responses => has("reasoning"),
        Protocol::Gemini => generation.is_some_and(|g| g.get("thinkingConfig").is_some()),
        Protocol::Anthropic => {
            body.get("thinking")
                .and_then(|t| t.get("type"))
                .and_then(Value::as_str)
                == Some("enabled")
        }
    };
    let stop = has("stop") || has("stop_sequences");
    let logprobs = body
        .get("logprobs")
        .is_some_and(|v| v != &Value::Bool(false) && !v.is_null());
    for (name, used) in [
        ("tool_choice", has("tool_choice") || has("toolConfig")),
        ("parallel_tool_calls", has("parallel_tool_calls")),
        ("response_format", format.is_some_and(|f| !f.is_null())),
        (
            "structured_outputs",
            format.and_then(|f| f.get("type")).and_then(Value::as_str) == Some("json_schema"),
        ),
        ("reasoning", reasoning),
        (
            "images",
            ["messages", "input", "system"]
                .iter()
                .any(|k| body.get(*k).is_some_and(has_image))
                || gemini_image(body),
        ),
        ("temperature", has("temperature")),
        ("top_p", has("top_p")),
        ("top_k", has("top_k")),
        ("stop", stop),
        ("seed", has("seed")),
        ("logprobs", logprobs),
        ("frequency_penalty", has("frequency_penalty")),
        ("presence_penalty", has("presence_penalty")),
    ] {
        if used {
            out.push(name);
        }
    }
    out
}

/// A Gemini image part (`inlineData` or `fileData` of an image type) in
/// `contents`.
fn gemini_image(body: &Map<String, Value>) -> bool {
    let Some(Value::Array(contents)) = body.get("contents") else {
        return false;
    };
    let parts = contents
        .iter()
        .filter_map(|c| c.get("parts").and_then(Value::as_array))
        .flatten();
    parts
        .filter_map(|p| p.get("inlineData").or_else(|| p.get("fileData")))
        .any(|d| {
            d.get("mimeType")
                .and_then(Value::as_str)
                .is_some_and(|m| m.starts_with("image/"))
        })
}

/// An image content part anywhere in messages or input (`image_url`,
/// `image`, `input_image`).
fn has_image(v: &Value) -> bool {
    match v {
        Value::Array(a) => a.iter().any(has_image),
        Value::Object(o) => {
            matches!(
                o.get("type").and_then(Value::as_str),
                Some("image_url" | "image" | "input_image")
            ) || o.get("content").is_some_and(has_image)
        }
        _ => false,
    }
}

/// An order-list error about OpenRouter's `order` names that field
/// instead of the ZenMux form it became.
fn order_label(e: RequestError) -> RequestError {
    let fix = |m: String| m.replace("`provider.routing.providers", "`provider.order");
    match e {
        RequestError::UnknownEndpoint(m) => RequestError::UnknownEndpoint(fix(m)),
        RequestError::Invalid(m) => RequestError::Invalid(fix(m)),
        other => other,
    }
}

/// The routing spec in force: `provider.routing`, or OpenRouter's `order`
/// as an order list (giving both is an error, as is `routing` with `sort`).
fn effective_routing(
    routing: Option<Value>,
    prefs: &Preferences,
    own_sort: bool,
) -> Result<Option<Value>, RequestError> {
    match (routing, &prefs.order) {
        (Some(_), Some(_)) => Err(invalid(
            "give either `provider.routing` or `provider.order`, not both",
        )),
        (Some(_), _) if own_sort => Err(invalid(
            "give either `provider.routing` or `provider.sort`, not both",
        )),
        (Some(r), None) => Ok(Some(r)),
        (None, Some(order)) => Ok(Some(
            serde_json::json!({"type": "order", "providers": order}),
        )),
        (None, None) => Ok(None),
    }
}

/// After the routing spec: `sort` ranks the routes no order list fixed;
/// `allow_fallbacks: false` drops what the order list did not name (or,
/// without one, every model but the first), recording why.
fn apply_sort_and_fallbacks(
    routes: &mut Vec<ModelRoute>,
    before: &[Vec<usize>],
    prefs: &Preferences,
    filtered: &mut Vec<Filtered>,
) {
    if let Some(sort) = prefs.sort {
        for r in routes.iter_mut().filter(|r| r.policy != Policy::Order) {
            r.policy = sort.by;
        }
    }
    let no_fallbacks = prefs.allow_fallbacks == Some(false);
    if prefs.order.is_some() {
        // OpenRouter's `order`: the listed endpoints first, then (fallbacks
        // allowed) the model's others in config order.
        for (r, all) in routes.iter_mut().zip(before) {
            if r.policy != Policy::Order {
                continue;
            }
            for &e in all
                .iter()
                .filter(|e| !r.candidates.contains(e))
                .collect::<Vec<_>>()
            {
                if no_fallbacks {
                    filtered.push(Filtered {
                        endpoint: e,
                        reason: "allow_fallbacks: false (not in order)".into(),
                        removed: true,
                    });
                } else {
                    r.candidates.push(e);
                }
            }
        }
    }
    if !no_fallbacks {
        return;
    }
    let (keep, reason): (Vec<bool>, &str) = if prefs.order.is_some() {
        (
            routes.iter().map(|r| r.policy == Policy::Order).collect(),
            "allow_fallbacks: false (not in order)",
        )
    } else {
        (
            (0..routes.len()).map(|i| i == 0).collect(),
            "allow_fallbacks: false (fallback model)",
        )
    };
    let mut k = keep.into_iter();
    routes.retain(|r| {
        let keep = k.next().unwrap_or(true);
        if !keep {
            filtered.extend(r.candidates.iter().map(|&e| Filtered {
                endpoint: e,
                reason: reason.into(),
                removed: true,
            }));
        }
        keep
    });
}
