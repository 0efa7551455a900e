//! Issue 22: a request's provider preferences applied with live health,
//! once, before any attempt. The rules are `routing::filter` (pure); this
//! file feeds it measurements and reshapes the routes.

use super::Inner;
use crate::health::Latency;
use crate::request::{ModelRoute, ParsedRequest};
use crate::routing::filter::{self, Measured, Partition, PERCENTILES};
use crate::routing::Policy;
use std::time::Instant;

/// Which percentiles ([`PERCENTILES`] order) some latency and some
/// throughput cutoff of `prefs` names: only those are computed.
fn asked(prefs: &filter::Preferences) -> ([bool; 4], [bool; 4]) {
    let any = |a: &filter::Cutoffs, b: &filter::Cutoffs, i| a.get(i).or(b.get(i)).is_some();
    let lat = [0, 1, 2, 3].map(|i| any(&prefs.max_latency, &prefs.preferred_max_latency, i));
    let tps = [0, 1, 2, 3].map(|i| any(&prefs.min_throughput, &prefs.preferred_min_throughput, i));
    (lat, tps)
}

/// One endpoint's live percentiles for the filter (those `asked`):
/// latency of the request's kind (the last 64 samples, at least 8, not
/// stale) and throughput, with the configured expectation for the
/// unmeasured.
fn measured(
    inner: &Inner,
    e: usize,
    kind: Latency,
    now: Instant,
    asked: ([bool; 4], [bool; 4]),
) -> Measured {
    let c = &inner.catalog;
    let h = &inner.health;
    let p = |k: usize| PERCENTILES[k].1;
    Measured {
        latency: std::array::from_fn(|k| {
            asked.0[k]
                .then(|| h.percentile_at(e, kind, p(k), now))
                .flatten()
        }),
        throughput: std::array::from_fn(|k| {
            asked.1[k]
                .then(|| h.throughput_percentile_at(e, p(k), now))
                .flatten()
        }),
        prior_ms: c.endpoints[e]
            .expected_first_token_ms
            .unwrap_or(c.health.default_first_token_ms),
        average_ms: h.average_at(e, kind, now),
    }
}

/// Removes and demotes each route's candidates by the request's
/// preferences (recording why in `req.filtered`), drops routes left empty,
/// and with `sort.partition: "none"` ranks every model's endpoints together
/// (one single-endpoint route each, in that order). Afterwards no routes
/// means nothing matches (see [`no_match_message`]).
pub(super) fn apply(inner: &Inner, req: &mut ParsedRequest, now: Instant) {
    let c = &inner.catalog;
    let kind = Latency::of(req.stream);
    let want = asked(&req.prefs);
    let m = |e: usize| measured(inner, e, kind, now, want);
    for route in &mut req.routes {
        let j = filter::filter(
            &route.candidates,
            &c.endpoints,
            &req.prefs,
            &req.used_parameters,
            &m,
        );
        route.candidates = j.kept;
        route.demoted = j.demoted;
        req.filtered.extend(j.filtered);
    }
    req.routes.retain(|r| !r.candidates.is_empty());
    let Some(sort) = req.prefs.sort.filter(|s| s.partition == Partition::None) else {
        return;
    };
    if req.routes.len() < 2 {
        return;
    }
    let mut views = vec![crate::routing::UNRANKED; c.endpoints.len()];
    let mut all = Vec::new();
    for (i, r) in req.routes.iter().enumerate() {
        let v = super::run::candidate_views(inner, r, now, req.stream);
        for &e in &r.candidates {
            views[e] = v[e];
            all.push((i, e));
        }
    }
    let ranked = filter::rank_together(
        &all,
        &|e| filter::cost(sort.by, &views[e]),
        &|e| req.routes.iter().any(|r| r.demoted.contains(&e)),
        &|e| views[e].available(now),
    );
    req.routes = ranked
        .into_iter()
        .map(|(i, e)| ModelRoute {
            candidates: vec![e],
            policy: Policy::Order,
            demoted: Vec::new(),
            ..req.routes[i].clone()
        })
        .collect();
}

/// Why nothing is left: each endpoint and what removed it.
pub(super) fn no_match_message(inner: &Inner, req: &ParsedRequest) -> String {
    let c = &inner.catalog;
    let each: Vec<String> = req
        .filtered
        .iter()
        .filter(|f| f.removed)
        .map(|f| format!("{} ({})", c.endpoints[f.endpoint].id, f.reason))
        .collect();
    format!(
        "no endpoint of {} matches the provider preferences: {}",
        req.model_slug(),
        each.join("; ")
    )
}
