//! Pure ranking: candidates + a health snapshot + `now` in, an ordered list
//! out. No I/O, no clock reads, no randomness of its own (the caller passes
//! a random draw for exploration), so every rule is unit-tested.
//!
//! Rules, in order of application:
//! 1. Rank by the policy:
//!    - `Latency` (default): lowest latency cost first. The cost is the
//!      endpoint's first-token EWMA (or its prior when unmeasured) times
//!      `in_flight + 1`, so load spreads when the fastest endpoint is busy.
//!      Ties: lower price, then config order.
//!    - `Price`: lowest prompt + completion price first; ties by latency
//!      cost, then config order.
//!    - `Throughput`: highest measured output tokens/s first; unmeasured
//!      endpoints after measured ones; ties by latency cost, then order.
//!    - `Order`: exactly the given order.
//! 2. Exploration (`Latency` only, when an `Explore` is given):
//!    - Optimism for the unmeasured: available endpoints never tried (no
//!      latency, no `last_sample`) and with nothing in flight move to the
//!      front (in their ranked order), so every endpoint is measured within
//!      a model's first few requests instead of waiting for the draw. One
//!      tried without a measurement (it failed, or a translated request was
//!      refused) ranks by its prior again.
//!    - When the draw falls under the explore ratio, the available endpoint
//!      measured least recently (never measured counts as oldest) moves to
//!      the front, so the engine keeps learning.
//! 3. Stickiness (every policy but `Order`): the endpoint a sticky key was
//!    last served by moves to the front while it is available.
//! 4. Unavailable endpoints (circuit open, half-open with its probe already
//!    in flight, rate limited until a Retry-After, or at their concurrency
//!    limit) move to the back, keeping their relative order. They stay in the list: if every endpoint
//!    is unavailable, they are still tried rather than failing without a call.

pub mod filter;

use std::cmp::Ordering;
use std::time::Instant;

/// How to rank candidates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    Latency,
    Price,
    Throughput,
    Order,
}

/// What ranking needs to know about one endpoint.
#[derive(Clone, Copy, Debug)]
pub struct EndpointView {
    /// Time-decayed latency of the request's kind, ms: first token for
    /// streams, complete response for non-streaming requests (see
    /// `health::Latency`); `None` before any measurement of that kind.
    pub first_token_ms: Option<f64>,
    /// Latency assumed while unmeasured.
    pub prior_ms: f64,
    /// Time-decayed output tokens per second.
    pub throughput: Option<f64>,
    pub in_flight: u32,
    /// USD per million prompt tokens plus per million completion tokens.
    pub price: f64,
    /// Not to be sent traffic before this instant (open circuit, Retry-After).
    pub blocked_until: Option<Instant>,
    /// Half-open with a probe in flight: wait for its verdict.
    pub probing: bool,
    /// When the last latency sample was taken (or, while none was, when an
    /// attempt last ended without one); `None`: never tried.
    pub last_sample: Option<Instant>,
    /// At its concurrency limit.
    pub full: bool,
}

/// A placeholder for endpoints that are not candidates of a request.
pub const UNRANKED: EndpointView = EndpointView {
    first_token_ms: None,
    prior_ms: 0.0,
    throughput: None,
    in_flight: 0,
    price: 0.0,
    blocked_until: None,
    probing: false,
    last_sample: None,
    full: false,
};

impl EndpointView {
    pub fn latency_cost(&self) -> f64 {
        self.first_token_ms.unwrap_or(self.prior_ms) * (self.in_flight as f64 + 1.0)
    }

    pub fn available(&self, now: Instant) -> bool {
        !self.probing && !self.full && self.blocked_until.is_none_or(|t| t <= now)
    }
}

/// Exploration input: a uniform draw in `[0, 1)` and the ratio under which
/// it triggers.
#[derive(Clone, Copy, Debug)]
pub struct Explore {
    pub draw: f64,
    pub ratio: f64,
}

fn cmp_f64(a: f64, b: f64) -> Ordering {
    a.partial_cmp(&b).unwrap_or(Ordering::Equal)
}

/// Ranks `candidates` (endpoint indices into `views`, in config or order-list
/// order) into the order in which they should be tried.
pub fn plan(
    candidates: &[usize],
    views: &[EndpointView],
    policy: Policy,
    now: Instant,
    explore: Option<Explore>,
    sticky: Option<usize>,
) -> Vec<usize> {
    let mut out: Vec<usize> = candidates.to_vec();
    let view = |e: usize| &views[e];
    // `sort_by` is stable: equal keys keep config order.
    match policy {
        Policy::Order => {}
        Policy::Latency => out.sort_by(|&a, &b| {
            cmp_f64(view(a).latency_cost(), view(b).latency_cost())
                .then(cmp_f64(view(a).price, view(b).price))
        }),
        Policy::Price => out.sort_by(|&a, &b| {
            cmp_f64(view(a).price, view(b).price)
                .then(cmp_f64(view(a).latency_cost(), view(b).latency_cost()))
        }),
        Policy::Throughput => out.sort_by(|&a, &b| {
            let ta = view(a).throughput;
            let tb = view(b).throughput;
            match (ta, tb) {
                (Some(x), Some(y)) => cmp_f64(y, x),
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (None, None) => Ordering::Equal,
            }
            .then(cmp_f64(view(a).latency_cost(), view(b).latency_cost()))
        }),
    }
    if policy == Policy::Latency {
        if let Some(x) = explore {
            let fresh = |e: usize| {
                let v = view(e);
                v.first_token_ms.is_none()
                    && v.last_sample.is_none()
                    && v.in_flight == 0
                    && v.available(now)
            };
            if out.iter().any(|&e| fresh(e)) {
                let (mut first, rest): (Vec<usize>, Vec<usize>) =
                    out.into_iter().partition(|&e| fresh(e));
                first.extend(rest);
                out = first;
            }
            if x.draw < x.ratio && out.len() > 1 {
                let stalest = out
                    .iter()
                    .enumerate()
                    .filter(|(_, &e)| view(e).available(now))
                    .min_by_key(|(_, &e)| view(e).last_sample)
                    .map(|(i, _)| i);
                if let Some(i) = stalest {
                    let e = out.remove(i);
                    out.insert(0, e);
                }
            }
        }
    }
    if policy != Policy::Order {
        if let Some(s) = sticky.filter(|&s| view(s).available(now)) {
            if let Some(i) = out.iter().position(|&e| e == s) {
                let e = out.remove(i);
                out.insert(0, e);
            }
        }
    }
    // Stable partition: available first.
    if out.iter().any(|&e| !view(e).available(now)) {
        let (mut ok, blocked): (Vec<usize>, Vec<usize>) =
            out.into_iter().partition(|&e| view(e).available(now));
        ok.extend(blocked);
        out = ok;
    }
    out
}

#[cfg(test)]
mod tests;
