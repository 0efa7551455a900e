//! Provider preferences, the pure part: which candidates a request's
//! `provider` object removes (filters) or ranks last (soft cutoffs), each
//! with the reason the routing record and `llmux route` show.
//!
//! Order of work (DESIGN.md, "Preferences: filter, then rank, then
//! explain"): [`filter`] removes and demotes, `routing::plan` ranks what is
//! left, then [`finish`] moves the demoted after the others (still before
//! unavailable endpoints) and, with `allow_fallbacks: false`, keeps only
//! the first choice. No I/O and no clock: measurements come in as
//! [`Measured`], computed by the engine from live health.

use super::Policy;
use crate::catalog::Endpoint;
use std::time::Instant;

/// Percentile cutoffs (`{p50, p75, p90, p99}`); a bare number is `p50`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Cutoffs {
    pub p50: Option<f64>,
    pub p75: Option<f64>,
    pub p90: Option<f64>,
    pub p99: Option<f64>,
}

/// The percentiles [`Cutoffs`] and [`Measured`] speak of, in order.
pub const PERCENTILES: [(&str, f64); 4] =
    [("p50", 0.5), ("p75", 0.75), ("p90", 0.9), ("p99", 0.99)];

impl Cutoffs {
    pub fn get(&self, i: usize) -> Option<f64> {
        [self.p50, self.p75, self.p90, self.p99][i]
    }

    fn set(&mut self, i: usize, v: Option<f64>) {
        *[&mut self.p50, &mut self.p75, &mut self.p90, &mut self.p99][i] = v;
    }

    pub fn is_empty(&self) -> bool {
        (0..4).all(|i| self.get(i).is_none())
    }

    /// Each percentile's stricter value (`tighter(a, b)` picks it).
    fn merge(a: Cutoffs, b: Cutoffs, tighter: fn(f64, f64) -> f64) -> Cutoffs {
        let mut out = Cutoffs::default();
        for i in 0..4 {
            let v = match (a.get(i), b.get(i)) {
                (Some(x), Some(y)) => Some(tighter(x, y)),
                (x, y) => x.or(y),
            };
            out.set(i, v);
        }
        out
    }
}

/// `max_price`: USD per million prompt / completion tokens, per request,
/// per image.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct MaxPrice {
    pub prompt: Option<f64>,
    pub completion: Option<f64>,
    pub request: Option<f64>,
    pub image: Option<f64>,
}

/// `sort.partition`: rank each model's endpoints apart (`model`, the
/// default) or all models' endpoints together (`none`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Partition {
    Model,
    None,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sort {
    pub by: Policy,
    pub partition: Partition,
}

/// A request's preferences (both dialects, one meaning), after the
/// engine's defaults were merged under them ([`Preferences::narrow`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Preferences {
    /// OpenRouter `order`: provider slugs or endpoint ids, tried in order.
    pub order: Option<Vec<String>>,
    /// `None`: true.
    pub allow_fallbacks: Option<bool>,
    pub only: Option<Vec<String>>,
    pub ignore: Vec<String>,
    pub sort: Option<Sort>,
    pub max_price: MaxPrice,
    /// `data_collection: "deny"`.
    pub deny_data_collection: bool,
    pub zdr: bool,
    pub quantizations: Option<Vec<String>>,
    pub require_parameters: bool,
    pub regions: Option<Vec<String>>,
    /// Hard: remove endpoints that miss.
    pub max_latency: Cutoffs,
    pub min_throughput: Cutoffs,
    /// Soft: rank endpoints that miss after those that meet.
    pub preferred_max_latency: Cutoffs,
    pub preferred_min_throughput: Cutoffs,
}

fn min_opt(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, y) => x.or(y),
    }
}

/// Both lists' common names, or either when one is absent.
fn intersect(a: &Option<Vec<String>>, b: &Option<Vec<String>>) -> Option<Vec<String>> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.iter().filter(|n| y.contains(n)).cloned().collect()),
        (x, y) => x.clone().or_else(|| y.clone()),
    }
}

impl Preferences {
    /// `request` over `defaults`, narrowing only: every filter of the
    /// defaults still applies (lists intersect, caps take the lower value,
    /// `ignore` joins, flags stay on, `allow_fallbacks: false` stays);
    /// what only ranks or orders (`order`, `sort`, the preferred cutoffs)
    /// is the request's when it sets it.
    pub fn narrow(defaults: &Preferences, request: Preferences) -> Preferences {
        let d = defaults;
        let r = request;
        let mut ignore = d.ignore.clone();
        ignore.extend(r.ignore.into_iter().filter(|n| !d.ignore.contains(n)));
        Preferences {
            order: r.order.or_else(|| d.order.clone()),
            allow_fallbacks: match (d.allow_fallbacks, r.allow_fallbacks) {
                (Some(false), _) | (_, Some(false)) => Some(false),
                (a, b) => b.or(a),
            },
            only: intersect(&d.only, &r.only),
            ignore,
            sort: r.sort.or(d.sort),
            max_price: MaxPrice {
                prompt: min_opt(d.max_price.prompt, r.max_price.prompt),
                completion: min_opt(d.max_price.completion, r.max_price.completion),
                request: min_opt(d.max_price.request, r.max_price.request),
                image: min_opt(d.max_price.image, r.max_price.image),
            },
            deny_data_collection: d.deny_data_collection || r.deny_data_collection,
            zdr: d.zdr || r.zdr,
            quantizations: intersect(&d.quantizations, &r.quantizations),
            require_parameters: d.require_parameters || r.require_parameters,
            regions: intersect(&d.regions, &r.regions),
            max_latency: Cutoffs::merge(d.max_latency, r.max_latency, f64::min),
            min_throughput: Cutoffs::merge(d.min_throughput, r.min_throughput, f64::max),
            preferred_max_latency: if r.preferred_max_latency.is_empty() {
                d.preferred_max_latency
            } else {
                r.preferred_max_latency
            },
            preferred_min_throughput: if r.preferred_min_throughput.is_empty() {
                d.preferred_min_throughput
            } else {
                r.preferred_min_throughput
            },
        }
    }

    /// Whether any cutoff needs measurements.
    pub fn needs_measures(&self) -> bool {
        !(self.max_latency.is_empty()
            && self.min_throughput.is_empty()
            && self.preferred_max_latency.is_empty()
            && self.preferred_min_throughput.is_empty())
    }

    /// `allow_fallbacks: false` without an `order`: only the first choice.
    pub fn first_choice_only(&self) -> bool {
        self.allow_fallbacks == Some(false) && self.order.is_none()
    }
}

/// One endpoint's live percentiles ([`PERCENTILES`] order): latency of the
/// request's kind, ms, and output throughput, tokens/s. `None`: not enough
/// samples.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Measured {
    pub latency: [Option<f64>; 4],
    pub throughput: [Option<f64>; 4],
    /// The latency assumed while unmeasured (`expected_first_token_ms`).
    pub prior_ms: f64,
    /// The time-decayed latency average, when fresh: judges the
    /// percentiles while there are too few samples for them (one probe
    /// after the old window went stale tells more than the expectation).
    pub average_ms: Option<f64>,
}

/// An endpoint removed or ranked down, and why.
#[derive(Clone, Debug, PartialEq)]
pub struct Filtered {
    pub endpoint: usize,
    pub reason: String,
    /// False: ranked after the endpoints that meet the preference.
    pub removed: bool,
}

/// What [`filter`] decided for one model's candidates.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Judged {
    /// Candidates left, in their order.
    pub kept: Vec<usize>,
    /// Kept, but ranked after the others.
    pub demoted: Vec<usize>,
    pub filtered: Vec<Filtered>,
}

/// Removes and demotes `candidates` (indices into `endpoints`) by `prefs`;
/// `required` is what the request uses (checked with `require_parameters`).
pub fn filter(
    candidates: &[usize],
    endpoints: &[Endpoint],
    prefs: &Preferences,
    required: &[&str],
    measured: &dyn Fn(usize) -> Measured,
) -> Judged {
    let mut out = Judged {
        kept: Vec::with_capacity(candidates.len()),
        ..Judged::default()
    };
    let need = Required {
        names: required,
        mask: if prefs.require_parameters {
            crate::catalog::parameter_mask(required)
        } else {
            0
        },
    };
    for &e in candidates {
        let ep = &endpoints[e];
        let m = if prefs.needs_measures() {
            measured(e)
        } else {
            Measured::default()
        };
        if let Some(reason) = static_reason(ep, prefs, &need)
            .or_else(|| latency_miss("max_latency", &prefs.max_latency, &m))
            .or_else(|| throughput_miss("min_throughput", &prefs.min_throughput, &m))
        {
            out.filtered.push(Filtered {
                endpoint: e,
                reason,
                removed: true,
            });
            continue;
        }
        out.kept.push(e);
        let soft =
            latency_miss("preferred_max_latency", &prefs.preferred_max_latency, &m).or_else(|| {
                throughput_miss(
                    "preferred_min_throughput",
                    &prefs.preferred_min_throughput,
                    &m,
                )
            });
        if let Some(reason) = soft {
            out.demoted.push(e);
            out.filtered.push(Filtered {
                endpoint: e,
                reason: reason + " (ranked last)",
                removed: false,
            });
        }
    }
    out
}

/// What the request uses, by name and as [`Endpoint::parameter_mask`]
/// bits (0 without `require_parameters`).
struct Required<'a> {
    names: &'a [&'a str],
    mask: u32,
}

fn list(v: &[String]) -> String {
    format!("[{}]", v.join(", "))
}

/// The first filter of `prefs` that does not depend on measurements and
/// removes `ep`.
fn static_reason(ep: &Endpoint, prefs: &Preferences, required: &Required) -> Option<String> {
    let provider = ep.id.split('/').next().unwrap_or("");
    let named = |names: &[String]| names.iter().any(|n| n == provider || *n == ep.id);
    if let Some(only) = &prefs.only {
        if !named(only) {
            return Some(format!("only: not in {}", list(only)));
        }
    }
    if named(&prefs.ignore) {
        return Some(format!("ignore: {}", ep.id));
    }
    price_reason(ep, &prefs.max_price)
        .or_else(|| data_reason(ep, prefs))
        .or_else(|| {
            let q = prefs.quantizations.as_ref()?;
            let have = ep.quantization.as_deref().unwrap_or("unknown");
            (!q.iter().any(|x| x == have))
                .then(|| format!("quantizations: {have} not in {}", list(q)))
        })
        .or_else(|| {
            if required.mask & !ep.parameter_mask == 0 {
                return None;
            }
            let missing: Vec<&str> = required
                .names
                .iter()
                .copied()
                .filter(|p| !ep.supported_parameters.contains(p))
                .collect();
            Some(format!(
                "require_parameters: {} not supported",
                missing.join(", ")
            ))
        })
        .or_else(|| {
            let r = prefs.regions.as_ref()?;
            match &ep.region {
                None => Some(format!(
                    "region: not in {} (endpoint has no region)",
                    list(r)
                )),
                Some(have) if !r.contains(have) => {
                    Some(format!("region: {have} not in {}", list(r)))
                }
                Some(_) => None,
            }
        })
}

fn price_reason(ep: &Endpoint, max: &MaxPrice) -> Option<String> {
    [
        ("prompt", ep.price_prompt, max.prompt),
        ("completion", ep.price_completion, max.completion),
        ("request", ep.price_request, max.request),
        ("image", ep.price_image, max.image),
    ]
    .into_iter()
    .find_map(|(name, have, cap)| {
        cap.filter(|&c| have > c)
            .map(|c| format!("max_price.{name} {have:?} > {c:?}"))
    })
}

fn data_reason(ep: &Endpoint, prefs: &Preferences) -> Option<String> {
    let policy = ep.data_policy;
    if prefs.deny_data_collection {
        match policy {
            None => {
                return Some("data_collection: deny (endpoint has no data_policy)".into());
            }
            Some(p) if p.training => {
                return Some("data_collection: deny (endpoint trains on data)".into());
            }
            Some(_) => {}
        }
    }
    if prefs.zdr && !policy.is_some_and(|p| p.zdr) {
        return Some(match policy {
            None => "zdr: true (endpoint has no data_policy)".into(),
            Some(_) => "zdr: true (endpoint is not zero data retention)".into(),
        });
    }
    None
}

/// The first latency percentile above its cutoff; with too few samples
/// an endpoint is judged on its fresh average, else on its expected
/// latency, and says so.
fn latency_miss(field: &str, cut: &Cutoffs, m: &Measured) -> Option<String> {
    PERCENTILES.iter().enumerate().find_map(|(i, (name, _))| {
        let limit = cut.get(i)?;
        let (have, note) = match (m.latency[i], m.average_ms) {
            (Some(v), _) => (v, ""),
            (None, Some(v)) => (v, " (few samples: recent average)"),
            (None, None) => (m.prior_ms, " (unmeasured: expected latency)"),
        };
        (have > limit).then(|| {
            let (have, limit) = (whole(have), whole(limit));
            format!("{field}.{name} {have} ms > {limit} ms{note}")
        })
    })
}

/// `x` as `{:.0}` prints it (ties to even), as an integer when it is one:
/// integer formatting costs a fraction of float formatting.
fn whole(x: f64) -> String {
    let r = x.round_ties_even();
    if r.abs() < 1e15 {
        (r as i64).to_string()
    } else {
        format!("{x:.0}")
    }
}

/// The first throughput percentile below its cutoff. Unmeasured endpoints
/// pass a hard cutoff (traffic measures them) and miss a soft one.
fn throughput_miss(field: &str, cut: &Cutoffs, m: &Measured) -> Option<String> {
    let soft = field.starts_with("preferred");
    PERCENTILES.iter().enumerate().find_map(|(i, (name, _))| {
        let limit = cut.get(i)?;
        match m.throughput[i] {
            Some(have) if have < limit => Some(format!(
                "{field}.{name} {have:.1} tokens/s < {limit:.1} tokens/s"
            )),
            None if soft => Some(format!("{field}.{name} unmeasured")),
            _ => None,
        }
    })
}

/// After ranking: demoted endpoints after the others, both before
/// unavailable ones (`available(e)`), relative order kept; with
/// `first_choice_only`, only the first.
pub fn finish(
    order: Vec<usize>,
    demoted: &[usize],
    available: &dyn Fn(usize) -> bool,
    first_choice_only: bool,
) -> Vec<usize> {
    let mut out = order;
    if !demoted.is_empty() {
        let class = |e: usize| match (available(e), demoted.contains(&e)) {
            (true, false) => 0,
            (true, true) => 1,
            (false, _) => 2,
        };
        out.sort_by_key(|&e| class(e));
    }
    if first_choice_only {
        out.truncate(1);
    }
    out
}

/// `sort.partition: "none"`: every model's candidates `(model route,
/// endpoint)` in one ranking by `by`, demoted and unavailable last.
/// `key(e)` is the policy's cost (lower first).
pub fn rank_together(
    all: &[(usize, usize)],
    key: &dyn Fn(usize) -> f64,
    demoted: &dyn Fn(usize) -> bool,
    available: &dyn Fn(usize) -> bool,
) -> Vec<(usize, usize)> {
    let mut out = all.to_vec();
    out.sort_by(|a, b| {
        let ca = (!available(a.1), demoted(a.1));
        let cb = (!available(b.1), demoted(b.1));
        ca.cmp(&cb).then(super::cmp_f64(key(a.1), key(b.1)))
    });
    out
}

/// The ranking cost of one endpoint under a policy, lower first (for
/// [`rank_together`]).
pub fn cost(policy: Policy, v: &super::EndpointView) -> f64 {
    match policy {
        Policy::Price => v.price,
        Policy::Throughput => -v.throughput.unwrap_or(0.0),
        Policy::Latency => v.latency_cost(),
        Policy::Order => 0.0,
    }
}

/// Whether an endpoint view is available at `now` (for [`finish`]).
pub fn available_at(views: &[super::EndpointView], now: Instant) -> impl Fn(usize) -> bool + '_ {
    move |e| views[e].available(now)
}

#[cfg(test)]
#[path = "filter_tests.rs"]
mod tests;
