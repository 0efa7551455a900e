//! The resolved, immutable catalog: providers, models and their endpoints,
//! validated, with every cross reference turned into an index.

pub mod shared_settings;

pub use shared_settings::SharedSettings;

use crate::config::{
    default_failover_status, Config, ConfigError, ConfigErrors, DataPolicyConfig, EndpointConfig,
    FailoverConfig, HealthConfig, HedgingConfig, HttpVersion, ModelConfig, ProviderConfig,
    RetryConfig, StickyConfig, TimeoutsConfig,
};
use crate::protocol::Protocol;
use reqwest::header::{HeaderName, HeaderValue};
use std::collections::HashMap;

/// An API key. Its `Debug` never shows the value.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[derive(Debug)]
pub struct Provider {
    pub slug: String,
    pub protocol: Protocol,
    pub key: Option<Secret>,
    /// Extra headers, then protocol headers, all pre-validated.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub timeouts: TimeoutsConfig,
    /// The chat endpoint's URL, parsed once.
    pub url: reqwest::Url,
    pub http: HttpVersion,
}

impl Provider {
    /// The URL of the chat endpoint for this provider's protocol.
    pub fn url(&self) -> String {
        self.url.to_string()
    }
}

#[derive(Debug)]
pub struct Endpoint {
    /// `provider_slug/endpoint_name`.
    pub id: String,
    pub model: usize,
    pub provider: usize,
    pub upstream_model: String,
    /// USD per million tokens.
    pub price_prompt: f64,
    pub price_completion: f64,
    pub context_window: Option<u64>,
    pub expected_first_token_ms: Option<f64>,
    pub max_concurrency: Option<u32>,
    /// USD per request and per input image.
    pub price_request: f64,
    pub price_image: f64,
    pub region: Option<String>,
    /// `None`: not configured (unknown, which `data_collection: "deny"`
    /// and `zdr` treat as failing).
    pub data_policy: Option<DataPolicyConfig>,
    pub quantization: Option<String>,
    /// Request features the endpoint accepts, names from [`PARAMETERS`].
    pub supported_parameters: Vec<&'static str>,
    /// `supported_parameters` as bits ([`parameter_bit`]), for the filter.
    pub parameter_mask: u32,
}

/// A request feature's bit in [`Endpoint::parameter_mask`] (its index in
/// [`PARAMETERS`]).
pub fn parameter_bit(name: &str) -> Option<u32> {
    PARAMETERS.iter().position(|p| *p == name).map(|i| 1 << i)
}

/// The bits of `names` ([`parameter_bit`]); unknown names have none.
pub fn parameter_mask(names: &[&str]) -> u32 {
    names
        .iter()
        .filter_map(|n| parameter_bit(n))
        .fold(0, |m, b| m | b)
}

/// The request features `supported_parameters` and `require_parameters`
/// speak of, each with the protocols whose endpoints accept it when their
/// config does not say ([`default_parameters`]).
const PARAMETER_SUPPORT: &[(&str, &[Protocol])] = {
    use Protocol::{Anthropic, Gemini, OpenAi, Responses};
    &[
        ("tools", &[OpenAi, Anthropic, Responses, Gemini]),
        ("tool_choice", &[OpenAi, Anthropic, Responses, Gemini]),
        ("parallel_tool_calls", &[OpenAi, Responses]),
        ("response_format", &[OpenAi, Responses, Gemini]),
        ("structured_outputs", &[OpenAi, Responses, Gemini]),
        ("reasoning", &[OpenAi, Anthropic, Responses, Gemini]),
        ("images", &[OpenAi, Anthropic, Responses, Gemini]),
        ("temperature", &[OpenAi, Anthropic, Responses, Gemini]),
        ("top_p", &[OpenAi, Anthropic, Responses, Gemini]),
        ("top_k", &[Anthropic, Gemini]),
        ("stop", &[OpenAi, Anthropic, Gemini]),
        ("seed", &[OpenAi, Gemini]),
        ("logprobs", &[OpenAi]),
        ("frequency_penalty", &[OpenAi, Gemini]),
        ("presence_penalty", &[OpenAi, Gemini]),
    ]
};

/// The request features `supported_parameters` and `require_parameters`
/// speak of (the names of [`PARAMETER_SUPPORT`], in its order).
pub const PARAMETERS: &[&str] = &{
    let mut names = [""; PARAMETER_SUPPORT.len()];
    let mut i = 0;
    while i < names.len() {
        names[i] = PARAMETER_SUPPORT[i].0;
        i += 1;
    }
    names
};

/// The quantizations an endpoint may declare.
pub const QUANTIZATIONS: &[&str] = &[
    "int4", "int8", "fp4", "fp6", "fp8", "fp16", "bf16", "fp32", "unknown",
];

/// What an endpoint accepts when its config does not say: its protocol's
/// features, in [`PARAMETERS`] order.
pub fn default_parameters(protocol: Protocol) -> Vec<&'static str> {
    PARAMETER_SUPPORT
        .iter()
        .filter(|(_, protocols)| protocols.contains(&protocol))
        .map(|(name, _)| *name)
        .collect()
}

impl Endpoint {
    /// The facts provider preferences filter on, for one line of `llmux
    /// check` (empty when none is set): `  region eu-west  fp8  zdr ...`.
    pub fn facts_line(&self) -> String {
        let mut out = String::new();
        if let Some(r) = &self.region {
            out.push_str(&format!("  region {r}"));
        }
        if let Some(q) = &self.quantization {
            out.push_str(&format!("  {q}"));
        }
        if let Some(d) = &self.data_policy {
            out.push_str(if d.training {
                "  trains on data"
            } else {
                "  no training"
            });
            if let Some(n) = d.retention_days {
                out.push_str(&format!("  retains {n} days"));
            }
            if d.zdr {
                out.push_str("  zdr");
            }
        }
        if self.price_request > 0.0 {
            out.push_str(&format!("  ${} per request", self.price_request));
        }
        if self.price_image > 0.0 {
            out.push_str(&format!("  ${} per image", self.price_image));
        }
        out
    }

    /// Cost in USD of a request with this usage.
    pub fn cost(&self, prompt_tokens: u64, completion_tokens: u64) -> f64 {
        (prompt_tokens as f64 * self.price_prompt
            + completion_tokens as f64 * self.price_completion)
            / 1_000_000.0
    }
}

#[derive(Debug)]
pub struct Model {
    pub slug: String,
    /// Other names resolving to `slug`.
    pub aliases: Vec<String>,
    /// Indices into [`Catalog::endpoints`], in config order.
    pub endpoints: Vec<usize>,
}

#[derive(Debug)]
pub struct Catalog {
    pub providers: Vec<Provider>,
    pub models: Vec<Model>,
    pub endpoints: Vec<Endpoint>,
    pub timeouts: TimeoutsConfig,
    pub health: HealthConfig,
    pub worker_threads: usize,
    pub proxy: Option<String>,
    /// The certificates of `ca_file`, trusted for upstream HTTPS besides
    /// the webpki roots; empty without it.
    pub upstream_ca: Vec<rustls::pki_types::CertificateDer<'static>>,
    pub retry: RetryConfig,
    pub hedging: HedgingConfig,
    pub sticky: StickyConfig,
    /// The largest request body accepted, in bytes.
    pub max_request_bytes: usize,
    /// Shared health settings, when the `shared` section is present.
    pub shared: Option<SharedSettings>,
    /// The engine-level `provider` preferences every request narrows.
    pub provider_defaults: crate::routing::filter::Preferences,
    /// Budgets per request `user`, when `user_budgets` is present.
    pub user_budgets: Option<crate::budget::users::UserBudgets>,
    /// Trace export settings, when `telemetry.otlp` is present.
    pub telemetry: Option<crate::telemetry::OtlpSettings>,
    failover: [bool; 600],
    model_index: HashMap<String, usize>,
    /// What the config allows but is probably a mistake (a provider with
    /// no key, ...), with JSON paths. llmux never prints these itself:
    /// `llmux check` and `llmux serve` show them.
    pub warnings: Vec<ConfigError>,
}

fn valid_env_name(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with(|c: char| c.is_ascii_digit())
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn valid_slug(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

impl Catalog {
    /// Parses and validates JSON config text.
    pub fn from_json(text: &str) -> Result<Catalog, ConfigErrors> {
        Catalog::from_config(Config::parse(text)?)
    }

    /// Validates a parsed config, reporting every problem with its path.
    pub fn from_config(cfg: Config) -> Result<Catalog, ConfigErrors> {
        Self::from_config_with_env(cfg, &|name| std::env::var(name).ok())
    }

    /// As [`Catalog::from_config`], with environment lookups injected (tests).
    ///
    /// Every step reports its problems with their JSON paths and goes on,
    /// so one run names them all: providers, then models and their
    /// endpoints, then the global sections, then `shared`.
    pub fn from_config_with_env(
        cfg: Config,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Catalog, ConfigErrors> {
        let mut errs = Vec::new();
        let mut warnings = Vec::new();
        let mut err = |path: String, message: String| errs.push(ConfigError { path, message });

        let (providers, provider_index) =
            resolve_providers(&cfg.providers, env, &mut err, &mut warnings);
        let (models, endpoints, model_index) = resolve_models(&cfg, &provider_index, &mut err);
        check_tuning(&cfg, &mut err);
        let failover = failover_table(&cfg.failover, &mut err);
        let (worker_threads, max_request_bytes) = check_process(&cfg, &mut err);
        let upstream_ca = cfg.ca_file.as_deref().map_or_else(Vec::new, |f| {
            load_ca_file(f).unwrap_or_else(|m| {
                err("ca_file".into(), m);
                Vec::new()
            })
        });
        let shared = cfg
            .shared
            .as_ref()
            .and_then(|s| SharedSettings::resolve(s, &endpoints, &providers, env, &mut err));

        let provider_defaults = match cfg.provider.as_ref().map(crate::request::parse_defaults) {
            Some(Ok(p)) => p,
            Some(Err((path, message))) => {
                errs.push(ConfigError { path, message });
                Default::default()
            }
            None => Default::default(),
        };
        let user_budgets = resolve_user_budgets(&cfg, &mut |path, message| {
            errs.push(ConfigError { path, message })
        });
        let telemetry = resolve_telemetry(&cfg, env, &mut |path, message| {
            errs.push(ConfigError { path, message })
        });
        if !errs.is_empty() {
            return Err(ConfigErrors(errs));
        }
        Ok(Catalog {
            providers,
            models,
            endpoints,
            timeouts: cfg.timeouts,
            health: cfg.health,
            worker_threads,
            proxy: cfg.proxy,
            upstream_ca,
            retry: cfg.retry,
            hedging: cfg.hedging,
            sticky: cfg.sticky,
            max_request_bytes: usize::try_from(max_request_bytes).unwrap_or(usize::MAX),
            shared,
            provider_defaults,
            user_budgets,
            telemetry,
            failover,
            model_index,
            warnings,
        })
    }

    /// The model a slug or an alias names.
    pub fn model(&self, slug: &str) -> Option<usize> {
        self.model_index.get(slug).copied()
    }

    /// Model slugs, sorted, for error messages.
    pub fn model_names(&self) -> String {
        let mut v: Vec<&str> = self.models.iter().map(|m| m.slug.as_str()).collect();
        v.sort_unstable();
        if v.is_empty() {
            "none configured".into()
        } else {
            v.join(", ")
        }
    }

    /// Whether a status moves on to the next candidate.
    pub fn fails_over(&self, status: u16) -> bool {
        self.failover.get(status as usize).copied().unwrap_or(false)
    }

    pub fn provider_of(&self, endpoint: usize) -> &Provider {
        &self.providers[self.endpoints[endpoint].provider]
    }
}

/// Where problems go: `(JSON path, message)`.
type Errs<'a> = &'a mut dyn FnMut(String, String);

// ---- Providers ----

/// The providers, in config order, and their index by slug.
fn resolve_providers(
    list: &[ProviderConfig],
    env: &dyn Fn(&str) -> Option<String>,
    err: Errs,
    warnings: &mut Vec<ConfigError>,
) -> (Vec<Provider>, HashMap<String, usize>) {
    let mut providers = Vec::new();
    let mut provider_index: HashMap<String, usize> = HashMap::new();
    for (i, p) in list.iter().enumerate() {
        let at = |f: &str| format!("providers[{i}].{f}");
        if !valid_slug(&p.slug) {
            err(
                at("slug"),
                format!(
                    "{:?} is not a valid slug (letters, digits, '-', '_', '.')",
                    p.slug
                ),
            );
        } else if provider_index.contains_key(&p.slug) {
            err(at("slug"), format!("duplicate provider slug {:?}", p.slug));
        }
        let protocol = provider_protocol(p, &at, err);
        let url = provider_url(i, p, protocol, err, warnings);
        let key = provider_key(p, &at, env, err);
        let mut headers = extra_headers(p, &at, err);
        headers.extend(protocol_headers(p, protocol, &at, err));
        check_timeouts(&p.timeouts, &at("timeouts"), err);
        provider_index
            .entry(p.slug.clone())
            .or_insert(providers.len());
        // A base URL that does not parse was reported above, and then no
        // catalog is built; until then any URL will do.
        let Some(url) = url.or_else(|| providers.first().map(|p: &Provider| p.url.clone())) else {
            continue;
        };
        providers.push(Provider {
            slug: p.slug.clone(),
            protocol,
            key,
            headers,
            timeouts: p.timeouts,
            url,
            http: p.http,
        });
    }
    (providers, provider_index)
}

fn provider_protocol(p: &ProviderConfig, at: &dyn Fn(&str) -> String, err: Errs) -> Protocol {
    Protocol::from_name(&p.protocol).unwrap_or_else(|| {
        err(
            at("protocol"),
            format!(
                "unknown protocol {:?} (expected \"openai\", \"anthropic\", \"responses\" or \"gemini\")",
                p.protocol
            ),
        );
        Protocol::OpenAi
    })
}

/// The chat endpoint's URL (base URL and the protocol's path), with the
/// base URL checked; what it allows but is probably a mistake goes to
/// `warnings`.
fn provider_url(
    i: usize,
    p: &ProviderConfig,
    protocol: Protocol,
    err: Errs,
    warnings: &mut Vec<ConfigError>,
) -> Option<reqwest::Url> {
    let at = |f: &str| format!("providers[{i}].{f}");
    let base_url = p.base_url.trim_end_matches('/').to_owned();
    let path = endpoint_path(protocol);
    let url = reqwest::Url::parse(&format!("{base_url}{path}")).ok();
    match reqwest::Url::parse(&base_url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {
            if let Err(m) = check_base_url_path(&base_url, protocol) {
                err(at("base_url"), m);
            }
            if let Some(m) = anthropic_double_v1(&base_url, protocol) {
                warnings.push(ConfigError {
                    path: at("base_url"),
                    message: m,
                });
            }
            if p.api_key.is_none() && p.api_key_env.is_none() {
                if let Some(m) = missing_key(p, &u, path) {
                    warnings.push(ConfigError {
                        path: format!("providers[{i}]"),
                        message: m,
                    });
                }
            }
        }
        Ok(u) => err(
            at("base_url"),
            format!(
                "{:?} must be an http or https URL with a host (scheme {:?})",
                p.base_url,
                u.scheme()
            ),
        ),
        Err(e) => err(
            at("base_url"),
            format!("{:?} is not a valid URL: {e}", p.base_url),
        ),
    }
    url
}

/// The key from `api_key` or the variable `api_key_env` names. Messages
/// never echo a key.
fn provider_key(
    p: &ProviderConfig,
    at: &dyn Fn(&str) -> String,
    env: &dyn Fn(&str) -> Option<String>,
    err: Errs,
) -> Option<Secret> {
    let key = match (&p.api_key, &p.api_key_env) {
        (Some(_), Some(_)) => {
            err(
                at("api_key"),
                "give either api_key or api_key_env, not both".into(),
            );
            None
        }
        (Some(k), None) => Some(Secret(k.clone())),
        (None, Some(var)) if !valid_env_name(var) => {
            // Likely the key itself pasted here: never echo it.
            err(
                at("api_key_env"),
                "is not an environment variable name (letters, digits, '_'); a key itself goes in api_key".into(),
            );
            None
        }
        (None, Some(var)) => match env(var) {
            Some(k) if !k.is_empty() => Some(Secret(k)),
            Some(_) => {
                err(
                    at("api_key_env"),
                    format!("environment variable {var} is empty"),
                );
                None
            }
            None => {
                err(
                    at("api_key_env"),
                    format!("environment variable {var} is not set"),
                );
                None
            }
        },
        (None, None) => None,
    };
    if let Some(k) = &key {
        if HeaderValue::from_str(k.expose()).is_err() {
            // Never echo the key itself.
            err(
                at("api_key"),
                "the key contains characters not allowed in an HTTP header".into(),
            );
        }
    }
    key
}

/// The provider's own `headers`, marked sensitive.
fn extra_headers(
    p: &ProviderConfig,
    at: &dyn Fn(&str) -> String,
    err: Errs,
) -> Vec<(HeaderName, HeaderValue)> {
    let mut headers = Vec::new();
    for (name, value) in &p.headers {
        match (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            (Ok(n), Ok(mut v)) => {
                // Custom headers often carry credentials: keep them out of Debug.
                v.set_sensitive(true);
                headers.push((n, v))
            }
            (Err(_), _) => err(
                at(&format!("headers.{name}")),
                "not a valid HTTP header name".into(),
            ),
            (_, Err(_)) => err(
                at(&format!("headers.{name}")),
                "not a valid HTTP header value".into(),
            ),
        }
    }
    headers
}

/// The headers the protocol adds: its version header (the config's
/// `anthropic_version`, else the protocol's default) and beta header
/// (`anthropic_beta`), as the protocol names them.
fn protocol_headers(
    p: &ProviderConfig,
    protocol: Protocol,
    at: &dyn Fn(&str) -> String,
    err: Errs,
) -> Vec<(HeaderName, HeaderValue)> {
    let mut headers = Vec::new();
    let mut push = |name: &'static str, value: &str, field: &str| match HeaderValue::from_str(value)
    {
        Ok(v) => headers.push((HeaderName::from_static(name), v)),
        Err(_) => err(at(field), "not a valid HTTP header value".into()),
    };
    match (protocol.version_header(), protocol.beta_header()) {
        (Some((name, default)), beta) => {
            let version = p.anthropic_version.as_deref().unwrap_or(default);
            push(name, version, "anthropic_version");
            if let (Some(name), Some(value)) = (beta, &p.anthropic_beta) {
                push(name, value, "anthropic_beta");
            }
        }
        _ if p.anthropic_version.is_some() || p.anthropic_beta.is_some() => err(
            at("anthropic_version"),
            "only valid for protocol \"anthropic\"".into(),
        ),
        _ => {}
    }
    headers
}

// ---- Models and endpoints ----

/// The models and their endpoints, in config order, and the models'
/// index by slug.
fn resolve_models(
    cfg: &Config,
    provider_index: &HashMap<String, usize>,
    err: Errs,
) -> (Vec<Model>, Vec<Endpoint>, HashMap<String, usize>) {
    let mut models = Vec::new();
    let mut endpoints: Vec<Endpoint> = Vec::new();
    let mut model_index = HashMap::new();
    if cfg.models.is_empty() {
        err(
            "models".into(),
            "no models configured: a config needs at least one model with an endpoint".into(),
        );
    }
    for (i, m) in cfg.models.iter().enumerate() {
        check_model(i, m, &model_index, err);
        check_aliases(i, m, &cfg.models, &model_index, err);
        let model = models.len();
        let first = endpoints.len();
        let mut ids = Vec::new();
        for (j, e) in m.endpoints.iter().enumerate() {
            let at = |f: &str| format!("models[{i}].endpoints[{j}].{f}");
            let Some(&provider) = provider_index.get(&e.provider) else {
                err(
                    at("provider"),
                    format!(
                        "unknown provider {:?} (known: {})",
                        e.provider,
                        known_providers(&cfg.providers)
                    ),
                );
                continue;
            };
            let id = endpoint_id(e, &m.slug, &endpoints[first..], &at, err);
            check_endpoint(e, &at, err);
            let protocol = provider_protocol_of(cfg, &e.provider);
            ids.push(endpoints.len());
            endpoints.push(Endpoint {
                id,
                model,
                provider,
                upstream_model: e.upstream_model.clone(),
                price_prompt: e.price.prompt,
                price_completion: e.price.completion,
                context_window: e.context_window.or(m.context_window),
                expected_first_token_ms: e.expected_first_token_ms,
                max_concurrency: e.max_concurrency,
                price_request: e.price.request,
                price_image: e.price.image,
                region: e.region.clone(),
                data_policy: e.data_policy,
                quantization: e.quantization.clone(),
                supported_parameters: supported_parameters(e, protocol, &at, err),
                parameter_mask: 0,
            });
            let last = endpoints.len() - 1;
            endpoints[last].parameter_mask = parameter_mask(&endpoints[last].supported_parameters);
        }
        model_index.entry(m.slug.clone()).or_insert(model);
        for a in &m.aliases {
            model_index.entry(a.clone()).or_insert(model);
        }
        models.push(Model {
            slug: m.slug.clone(),
            aliases: m.aliases.clone(),
            endpoints: ids,
        });
    }
    (models, endpoints, model_index)
}

/// The provider slugs, sorted, for error messages.
fn known_providers(list: &[ProviderConfig]) -> String {
    let mut v: Vec<&str> = list.iter().map(|p| p.slug.as_str()).collect();
    v.sort_unstable();
    v.dedup();
    v.join(", ")
}

/// A model's slug (`vendor/name`, not seen before) and that it has endpoints.
fn check_model(i: usize, m: &ModelConfig, seen: &HashMap<String, usize>, err: Errs) {
    let at = |f: &str| format!("models[{i}].{f}");
    let well_formed = m
        .slug
        .split_once('/')
        .is_some_and(|(v, n)| !v.is_empty() && !n.is_empty() && !n.contains('/'))
        && !m.slug.contains(':')
        && !m.slug.chars().any(char::is_whitespace);
    if !well_formed {
        err(
            at("slug"),
            format!(
                "{:?} is not a model slug of the form vendor/name (no ':' or spaces)",
                m.slug
            ),
        );
    } else if seen.contains_key(&m.slug) {
        err(at("slug"), format!("duplicate model slug {:?}", m.slug));
    }
    if m.endpoints.is_empty() {
        err(
            at("endpoints"),
            "a model needs at least one endpoint".into(),
        );
    }
}

/// A model's aliases: well formed, and no other model's slug or alias
/// (nor its own slug).
fn check_aliases(
    i: usize,
    m: &ModelConfig,
    all: &[ModelConfig],
    seen: &HashMap<String, usize>,
    err: Errs,
) {
    for (k, a) in m.aliases.iter().enumerate() {
        let at = format!("models[{i}].aliases[{k}]");
        if a.is_empty() || a.contains(':') || a.chars().any(char::is_whitespace) {
            err(at, format!("{a:?} is not a model name (no ':' or spaces)"));
        } else if a == &m.slug || m.aliases[..k].contains(a) {
            err(at, format!("alias {a:?} repeats a name of this model"));
        } else if seen.contains_key(a) || all.iter().any(|o| &o.slug == a) {
            err(
                at,
                format!("alias {a:?} is already the slug or an alias of another model"),
            );
        }
    }
}

/// The protocol of the provider `slug` names (OpenAI when unknown: that
/// error is reported elsewhere).
fn provider_protocol_of(cfg: &Config, slug: &str) -> Protocol {
    cfg.providers
        .iter()
        .find(|p| p.slug == slug)
        .and_then(|p| Protocol::from_name(&p.protocol))
        .unwrap_or(Protocol::OpenAi)
}

/// `supported_parameters`, each a known name, or the protocol's defaults.
fn supported_parameters(
    e: &EndpointConfig,
    protocol: Protocol,
    at: &dyn Fn(&str) -> String,
    err: Errs,
) -> Vec<&'static str> {
    let Some(list) = &e.supported_parameters else {
        return default_parameters(protocol);
    };
    let mut out = Vec::new();
    for (k, name) in list.iter().enumerate() {
        match PARAMETERS.iter().find(|p| *p == name) {
            Some(p) => out.push(*p),
            None => err(
                at(&format!("supported_parameters[{k}]")),
                format!(
                    "unknown parameter {name:?} (known: {})",
                    PARAMETERS.join(", ")
                ),
            ),
        }
    }
    out
}

/// The endpoint id `provider/name`, unique among the model's `siblings`.
fn endpoint_id(
    e: &EndpointConfig,
    model: &str,
    siblings: &[Endpoint],
    at: &dyn Fn(&str) -> String,
    err: Errs,
) -> String {
    let name = e.name.clone().unwrap_or_else(|| "default".into());
    if !valid_slug(&name) {
        err(
            at("name"),
            format!("{name:?} is not a valid endpoint name (letters, digits, '-', '_', '.')"),
        );
    }
    let id = format!("{}/{}", e.provider, name);
    if siblings.iter().any(|x| x.id == id) {
        err(
            at("name"),
            format!("duplicate endpoint id {id:?} in model {model:?}"),
        );
    }
    id
}

/// An endpoint's upstream model, prices, concurrency and expected latency.
fn check_endpoint(e: &EndpointConfig, at: &dyn Fn(&str) -> String, err: Errs) {
    if e.upstream_model.is_empty() {
        err(at("upstream_model"), "must not be empty".into());
    }
    for (f, v) in [
        ("price.prompt", e.price.prompt),
        ("price.completion", e.price.completion),
        ("price.request", e.price.request),
        ("price.image", e.price.image),
    ] {
        if !v.is_finite() || v < 0.0 {
            err(
                at(f),
                format!("{v} is not a price (a finite number >= 0, USD per million tokens)"),
            );
        }
    }
    if e.max_concurrency == Some(0) {
        err(at("max_concurrency"), "must be at least 1".into());
    }
    check_facts(e, at, err);
    if let Some(ms) = e.expected_first_token_ms {
        if !ms.is_finite() || ms < 0.0 {
            err(
                at("expected_first_token_ms"),
                format!("{ms} is not a duration in ms"),
            );
        }
    }
}

/// An endpoint's region, quantization and data policy.
fn check_facts(e: &EndpointConfig, at: &dyn Fn(&str) -> String, err: Errs) {
    if let Some(r) = &e.region {
        if r.trim().is_empty() || r.chars().any(char::is_whitespace) {
            err(
                at("region"),
                format!("{r:?} is not a region name (no spaces)"),
            );
        }
    }
    if let Some(q) = &e.quantization {
        if !QUANTIZATIONS.contains(&q.as_str()) {
            err(
                at("quantization"),
                format!(
                    "unknown quantization {q:?} (known: {})",
                    QUANTIZATIONS.join(", ")
                ),
            );
        }
    }
    if let Some(d) = &e.data_policy {
        if d.zdr && d.training {
            err(
                at("data_policy.zdr"),
                "zero data retention contradicts training: true".into(),
            );
        }
        if d.zdr && d.retention_days.is_some_and(|n| n > 0) {
            err(
                at("data_policy.zdr"),
                "zero data retention contradicts retention_days > 0".into(),
            );
        }
    }
}

// ---- Global sections ----

/// The global `timeouts`, `health` and `hedging` sections.
fn check_tuning(cfg: &Config, err: Errs) {
    check_timeouts(&cfg.timeouts, "timeouts", err);
    let h = &cfg.health;
    if h.failure_threshold == 0 {
        err(
            "health.failure_threshold".into(),
            "must be at least 1".into(),
        );
    }
    if h.half_life_ms == 0 {
        err("health.half_life_ms".into(), "must be at least 1".into());
    }
    if !(0.0..=1.0).contains(&cfg.hedging.percentile) {
        err(
            "hedging.percentile".into(),
            "must be between 0 and 1".into(),
        );
    }
    if h.active_probe_interval_ms == Some(0) {
        err(
            "health.active_probe_interval_ms".into(),
            "must be at least 1".into(),
        );
    }
    if !(0.0..=1.0).contains(&h.explore_ratio) {
        err(
            "health.explore_ratio".into(),
            "must be between 0 and 1".into(),
        );
    }
    if !h.default_first_token_ms.is_finite() || h.default_first_token_ms < 0.0 {
        err(
            "health.default_first_token_ms".into(),
            "must be a duration in ms".into(),
        );
    }
}

/// Which statuses fail over, by status: `failover.statuses`, or the default.
fn failover_table(cfg: &FailoverConfig, err: Errs) -> [bool; 600] {
    let mut failover = [false; 600];
    match &cfg.statuses {
        Some(list) => {
            for (k, &s) in list.iter().enumerate() {
                if !(100..600).contains(&s) {
                    err(
                        format!("failover.statuses[{k}]"),
                        format!("{s} is not an HTTP status"),
                    );
                } else {
                    failover[s as usize] = true;
                }
            }
        }
        None => {
            for (s, f) in failover.iter_mut().enumerate() {
                *f = default_failover_status(s as u16);
            }
        }
    }
    failover
}

/// `user_budgets`, when present and valid.
fn resolve_user_budgets(cfg: &Config, err: Errs) -> Option<crate::budget::users::UserBudgets> {
    match crate::budget::users::UserBudgets::parse(cfg.user_budgets.as_ref()?) {
        Ok(u) => Some(u),
        Err(e) => {
            for (path, message) in e {
                err(path, message);
            }
            None
        }
    }
}

/// `telemetry.otlp`: the section's settings, then the `OTEL_*` variables.
fn resolve_telemetry(
    cfg: &Config,
    env: &dyn Fn(&str) -> Option<String>,
    err: Errs,
) -> Option<crate::telemetry::OtlpSettings> {
    let o = cfg.telemetry.as_ref()?.otlp.as_ref()?;
    match o.resolve(env) {
        Ok(s) => Some(s),
        Err(m) => {
            let (path, message) = m.split_once(": ").unwrap_or(("telemetry.otlp", &m));
            err(path.into(), message.into());
            None
        }
    }
}

/// The process-wide settings: `worker_threads` and `max_request_bytes`
/// (returned with their defaults applied) and `proxy`.
fn check_process(cfg: &Config, err: Errs) -> (usize, u64) {
    let worker_threads = cfg.worker_threads.unwrap_or(2);
    if worker_threads > 256 {
        err(
            "worker_threads".into(),
            "must be between 0 (host-driven) and 256".into(),
        );
    }
    let max_request_bytes = cfg
        .max_request_bytes
        .unwrap_or(crate::config::DEFAULT_MAX_REQUEST_BYTES);
    if max_request_bytes == 0 {
        err("max_request_bytes".into(), "must be at least 1".into());
    }
    if let Some(p) = &cfg.proxy {
        if proxy_intercept(p).is_none() {
            err(
                "proxy".into(),
                "not a valid proxy URL (http://[user:password@]host:port, or https://)".into(),
            );
        }
    }
    (worker_threads, max_request_bytes)
}

fn check_timeouts(t: &TimeoutsConfig, path: &str, err: Errs) {
    for (name, v) in [
        ("connect_ms", t.connect_ms),
        ("first_token_ms", t.first_token_ms),
        ("idle_ms", t.idle_ms),
        ("total_ms", t.total_ms),
    ] {
        if v == Some(0) {
            err(format!("{path}.{name}"), "must be at least 1 ms".into());
        }
    }
}

/// The path llmux appends to a provider's base URL (the protocol's own).
fn endpoint_path(protocol: Protocol) -> &'static str {
    protocol.path()
}

/// Refuses a base URL that already ends in an endpoint path, which llmux
/// would append a second time (`.../chat/completions/chat/completions`),
/// naming the base URL to use instead.
fn check_base_url_path(base_url: &str, protocol: Protocol) -> Result<(), String> {
    let path = endpoint_path(protocol);
    let Some(suffix) = Protocol::ALL
        .iter()
        .map(|p| p.path())
        .chain([path, "/messages"])
        .find(|s| base_url.ends_with(s))
    else {
        return Ok(());
    };
    let base = &base_url[..base_url.len() - suffix.len()];
    Err(format!(
        "{base_url:?} ends in {suffix}, but llmux appends {path} itself (protocol {:?}): use \"base_url\": {base:?}",
        protocol.as_str()
    ))
}

/// An Anthropic base URL ending in `/v1` gets `/v1/messages` appended
/// (`.../v1/v1/messages`): allowed (a proxy may want it), but worth a word.
fn anthropic_double_v1(base_url: &str, protocol: Protocol) -> Option<String> {
    let base = base_url.strip_suffix("/v1")?;
    (protocol == Protocol::Anthropic).then(|| {
        format!(
            "{base_url:?} ends in /v1, and protocol \"anthropic\" appends /v1/messages ({base_url}/v1/messages): did you mean {base:?}?"
        )
    })
}

/// A warning for a provider with neither `api_key` nor `api_key_env`, unless
/// a custom header carries credentials or the host looks local (loopback,
/// a private address, a name without a dot, `.local`, `.internal`), where
/// servers often need no key.
fn missing_key(p: &ProviderConfig, url: &reqwest::Url, path: &str) -> Option<String> {
    let auth_header = p.headers.keys().any(|h| {
        let h = h.to_ascii_lowercase();
        h == "authorization" || h.contains("api-key") || h.contains("api_key")
    });
    let host = url.host_str()?;
    let local = match host.trim_start_matches('[').trim_end_matches(']').parse() {
        Ok(std::net::IpAddr::V4(a)) => a.is_loopback() || a.is_private() || a.is_link_local(),
        Ok(std::net::IpAddr::V6(a)) => a.is_loopback() || (a.segments()[0] & 0xfe00) == 0xfc00,
        Err(_) => {
            host == "localhost"
                || !host.contains('.')
                || host.ends_with(".local")
                || host.ends_with(".internal")
        }
    };
    if auth_header || local {
        return None;
    }
    Some(format!(
        "provider {:?} has no api_key or api_key_env: requests to {}{path} will carry no key (set api_key_env to the variable holding it)",
        p.slug,
        p.base_url.trim_end_matches('/')
    ))
}

/// The CA certificates of `ca_file` (PEM), each checked as a trust
/// anchor, or what is wrong with the file in plain words.
fn load_ca_file(file: &str) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, String> {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    let text = std::fs::read(file).map_err(|e| format!("cannot read {file}: {e}"))?;
    let certs = CertificateDer::pem_slice_iter(&text)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{file} is not a PEM certificate file: {e}"))?;
    if certs.is_empty() {
        return Err(format!(
            "{file} holds no certificate (-----BEGIN CERTIFICATE-----)"
        ));
    }
    for (i, c) in certs.iter().enumerate() {
        rustls::RootCertStore::empty().add(c.clone()).map_err(|e| {
            format!(
                "certificate {} in {file} cannot be a trust anchor: {e}",
                i + 1
            )
        })?;
    }
    Ok(certs)
}

/// Where the `proxy` setting sends connections, with its credentials as a
/// `Proxy-Authorization` value: `None` unless it is an `http://` or
/// `https://` URL (no scheme means `http://`).
pub fn proxy_intercept(proxy: &str) -> Option<hyper_util::client::proxy::matcher::Intercept> {
    let matcher = hyper_util::client::proxy::matcher::Matcher::builder()
        .all(proxy.to_owned())
        .build();
    let any = http::Uri::from_static("https://llmux.invalid/");
    matcher
        .intercept(&any)
        .filter(|i| matches!(i.uri().scheme_str(), Some("http" | "https")))
}
