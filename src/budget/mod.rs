//! Budgets, rate limits and concurrency per subject: a gateway key's name,
//! or the `user` of an embedded host's request.
//!
//! A request reserves its worst cost and its tokens before it is sent
//! ([`Ask`]); the terminal event settles the real cost; a cancel or a
//! failure releases it. The model here ([`Ledger`]) is pure: time comes in
//! as a parameter. Two stores keep it: [`local::LocalStore`] (one process,
//! its settled spend journaled to a file that survives kill -9) and
//! [`redis::RedisStore`] (a fleet: every check is one atomic Lua script,
//! reservations expire on their own). [`Budgets`] picks one and hands out
//! [`Lease`]s that release themselves when dropped.
//!
//! Money is counted in micro-dollars ([`Micros`]) so that sums are exact.

pub mod local;
mod period;
pub mod redis;
#[cfg(test)]
mod tests;
pub mod users;

pub use period::{rfc3339, Period};

use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::sync::Arc;

/// Millionths of a US dollar.
pub type Micros = i64;

/// USD to micro-dollars, rounded up (a reservation never undershoots).
pub fn micros_up(usd: f64) -> Micros {
    (usd * 1e6).ceil().max(0.0) as Micros
}

/// USD to micro-dollars, rounded to the nearest.
pub fn micros(usd: f64) -> Micros {
    (usd * 1e6).round().max(0.0) as Micros
}

pub fn usd(m: Micros) -> f64 {
    m as f64 / 1e6
}

/// The rate-limit window: one minute, sliding.
pub const WINDOW_MS: u64 = 60_000;

/// `budget` as written in a config.
#[derive(Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct BudgetConfig {
    pub usd: f64,
    #[serde(default = "total")]
    pub period: String,
}

fn total() -> String {
    "total".into()
}

/// `limits` as written in a config.
#[derive(Deserialize, Clone, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
    pub concurrent: Option<u64>,
}

/// What one subject may spend and how fast.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Policy {
    /// The budget and its period.
    pub budget: Option<(Micros, Period)>,
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
    pub concurrent: Option<u64>,
}

impl Policy {
    /// Checks a `budget` and `limits` pair; each problem is `(path,
    /// message)` with `at` the path of the object holding them.
    pub fn resolve(
        budget: Option<&BudgetConfig>,
        limits: Option<&LimitsConfig>,
        at: &str,
    ) -> Result<Policy, Vec<(String, String)>> {
        let mut errs = Vec::new();
        let mut p = Policy::default();
        if let Some(b) = budget {
            if !b.usd.is_finite() || b.usd < 0.0 {
                errs.push((
                    format!("{at}.budget.usd"),
                    format!("must be a number >= 0, not {}", b.usd),
                ));
            }
            match Period::parse(&b.period) {
                Some(period) => p.budget = Some((micros(b.usd), period)),
                None => errs.push((
                    format!("{at}.budget.period"),
                    format!("unknown period `{}` (day, week, month or total)", b.period),
                )),
            }
        }
        if let Some(l) = limits {
            for (name, v) in [("rpm", l.rpm), ("tpm", l.tpm), ("concurrent", l.concurrent)] {
                if v == Some(0) {
                    errs.push((
                        format!("{at}.limits.{name}"),
                        "must be at least 1 (leave it out for no limit)".into(),
                    ));
                }
            }
            (p.rpm, p.tpm, p.concurrent) = (l.rpm, l.tpm, l.concurrent);
        }
        if errs.is_empty() {
            Ok(p)
        } else {
            Err(errs)
        }
    }

    /// Nothing to check: requests skip the store.
    pub fn is_open(&self) -> bool {
        *self == Policy::default()
    }
}

/// What a request reserves: its worst cost and its tokens.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Ask {
    pub cost: Micros,
    pub tokens: u64,
}

/// Why a request was refused.
#[derive(Clone, Debug, PartialEq)]
pub enum Refusal {
    /// The remaining budget cannot cover the request's worst cost (402).
    Budget {
        limit: Micros,
        spent: Micros,
        reserved: Micros,
        asked: Micros,
        period: Period,
        /// When the period starts over (seconds), `None` for `total`.
        reset: Option<u64>,
    },
    /// A rate or concurrency limit (429), free again after `retry_after_ms`.
    Rate {
        limit: &'static str,
        max: u64,
        retry_after_ms: u64,
    },
    /// The store cannot be reached and the policy fails closed (503).
    Unavailable(String),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Budget { limit, spent, reserved, asked, period, .. } => write!(
                f,
                "budget exhausted: the {} budget is ${:.6}, ${:.6} is spent and ${:.6} reserved by requests in flight; this request may cost up to ${:.6}",
                period.as_str(), usd(*limit), usd(*spent), usd(*reserved), usd(*asked)
            ),
            Refusal::Rate { limit: "concurrent", max, .. } => {
                write!(f, "rate limited: at most {max} requests in flight at once")
            }
            Refusal::Rate { limit, max, retry_after_ms } => write!(
                f,
                "rate limited: {limit} is {max}; retry after {:.3} s",
                *retry_after_ms as f64 / 1000.0
            ),
            Refusal::Unavailable(e) => write!(f, "the budget store is unavailable: {e}"),
        }
    }
}

/// One period's totals.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    /// Settled spend.
    pub spent: Micros,
    pub tokens: u64,
    pub requests: u64,
    pub rejections: u64,
}

impl Totals {
    pub fn add(&mut self, o: &Totals) {
        self.spent += o.spent;
        self.tokens += o.tokens;
        self.requests += o.requests;
        self.rejections += o.rejections;
    }
}

/// A subject's usage now.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Usage {
    pub current: Totals,
    pub previous: Totals,
    /// Reserved by requests in flight.
    pub reserved: Micros,
    pub in_flight: u64,
    /// Requests and tokens in the last minute.
    pub window_requests: u64,
    pub window_tokens: u64,
    /// Start of the current period (seconds), 0 for `total`.
    pub period_start: u64,
}

/// One subject's state in a single process: the pure model the local
/// store keeps (the Redis store keeps the same fields in Redis).
#[derive(Clone, Debug, Default)]
pub struct Ledger {
    pub period_start: u64,
    pub current: Totals,
    pub previous: Totals,
    pub reserved: Micros,
    pub in_flight: u64,
    /// Admissions of the last minute: (time ms, reservation id, tokens).
    window: VecDeque<(u64, u64, u64)>,
    /// The tokens of `window`, summed.
    window_tokens: u64,
}

impl Ledger {
    /// Moves to the period holding `now` (seconds).
    fn roll(&mut self, period: Period, now_s: u64) {
        let start = period.start(now_s);
        if start != self.period_start {
            let prev = period.previous_start(now_s);
            self.previous = if prev == Some(self.period_start) {
                self.current
            } else {
                Totals::default()
            };
            self.current = Totals::default();
            self.period_start = start;
        }
    }

    fn purge(&mut self, now_ms: u64) {
        while let Some(w) = self.window.front().filter(|w| w.0 + WINDOW_MS <= now_ms) {
            self.window_tokens -= w.2;
            self.window.pop_front();
        }
    }

    /// Admits `ask` as reservation `id`, or says why not (and counts the
    /// rejection).
    pub fn reserve(&mut self, p: &Policy, ask: Ask, id: u64, now_ms: u64) -> Result<(), Refusal> {
        let period = p.budget.map_or(Period::Total, |b| b.1);
        self.roll(period, now_ms / 1000);
        self.purge(now_ms);
        let r = self.check(p, ask, now_ms);
        if r.is_err() {
            self.current.rejections += 1;
            return r;
        }
        self.reserved += ask.cost;
        self.in_flight += 1;
        self.current.requests += 1;
        self.window.push_back((now_ms, id, ask.tokens));
        self.window_tokens += ask.tokens;
        Ok(())
    }

    fn check(&self, p: &Policy, ask: Ask, now_ms: u64) -> Result<(), Refusal> {
        if let Some(max) = p.concurrent.filter(|&m| self.in_flight >= m) {
            return Err(Refusal::Rate {
                limit: "concurrent",
                max,
                retry_after_ms: 1000,
            });
        }
        if let Some(max) = p.rpm.filter(|&m| self.window.len() as u64 >= m) {
            let k = self.window.len() - max as usize;
            let retry_after_ms = (self.window[k].0 + WINDOW_MS).saturating_sub(now_ms).max(1);
            return Err(Refusal::Rate {
                limit: "rpm",
                max,
                retry_after_ms,
            });
        }
        if let Some(max) = p.tpm.filter(|&m| self.window_tokens + ask.tokens > m) {
            let times: Vec<(u64, u64)> = self.window.iter().map(|w| (w.0, w.2)).collect();
            if let Some(retry_after_ms) = tpm_wait(&times, max, ask.tokens, now_ms) {
                return Err(Refusal::Rate {
                    limit: "tpm",
                    max,
                    retry_after_ms,
                });
            }
        }
        if let Some((limit, period)) = p.budget {
            if self.current.spent + self.reserved + ask.cost > limit {
                return Err(Refusal::Budget {
                    limit,
                    spent: self.current.spent,
                    reserved: self.reserved,
                    asked: ask.cost,
                    period,
                    reset: period.reset(now_ms / 1000),
                });
            }
        }
        Ok(())
    }

    /// Ends reservation `id`: its cost leaves `reserved`; `actual` (cost,
    /// tokens) is charged when the request was served.
    pub fn settle(
        &mut self,
        p: &Policy,
        id: u64,
        ask: Ask,
        actual: Option<(Micros, u64)>,
        now_ms: u64,
    ) {
        let period = p.budget.map_or(Period::Total, |b| b.1);
        self.roll(period, now_ms / 1000);
        self.reserved = (self.reserved - ask.cost).max(0);
        self.in_flight = self.in_flight.saturating_sub(1);
        if let Some((cost, tokens)) = actual {
            self.current.spent += cost;
            self.current.tokens += tokens;
            // The newest admissions are at the back.
            if let Some(w) = self.window.iter_mut().rev().find(|w| w.1 == id) {
                self.window_tokens = self.window_tokens - w.2 + tokens;
                w.2 = tokens;
            }
        }
    }

    pub fn usage(&mut self, p: &Policy, now_ms: u64) -> Usage {
        let period = p.budget.map_or(Period::Total, |b| b.1);
        self.roll(period, now_ms / 1000);
        self.purge(now_ms);
        Usage {
            current: self.current,
            previous: self.previous,
            reserved: self.reserved,
            in_flight: self.in_flight,
            window_requests: self.window.len() as u64,
            window_tokens: self.window_tokens,
            period_start: self.period_start,
        }
    }
}

/// How long until `ask` more tokens fit under `max` per minute, given the
/// window's admissions `(time ms, tokens)` oldest first; `None` when they
/// fit now. A request larger than the whole limit passes alone.
pub fn tpm_wait(window: &[(u64, u64)], max: u64, ask: u64, now_ms: u64) -> Option<u64> {
    let mut used: u64 = window.iter().map(|w| w.1).sum();
    if used == 0 || used + ask <= max {
        return None;
    }
    for &(t, n) in window {
        used -= n;
        if used == 0 || used + ask <= max {
            return Some((t + WINDOW_MS).saturating_sub(now_ms).max(1));
        }
    }
    Some(WINDOW_MS)
}

/// `*` matches any run of characters (slashes too); everything else
/// matches itself.
pub fn glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

/// When the store cannot answer: admit (`open`) or refuse (`closed`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailMode {
    Open,
    Closed,
}

/// Where budgets and windows live.
pub enum Store {
    Local(local::LocalStore),
    Redis(Arc<redis::RedisStore>),
}

/// The store with its failure modes: hands out [`Lease`]s.
pub struct Budgets {
    pub store: Store,
    /// For a subject with a budget.
    pub budget_fail: FailMode,
    /// For a subject with limits only.
    pub limits_fail: FailMode,
    next_id: std::sync::atomic::AtomicU64,
}

/// Milliseconds since the epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Budgets {
    pub fn new(store: Store, budget_fail: FailMode, limits_fail: FailMode) -> Budgets {
        let seed = now_ms() << 16 ^ u64::from(std::process::id());
        Budgets {
            store,
            budget_fail,
            limits_fail,
            next_id: seed.into(),
        }
    }

    /// Reserves `ask` for `subject` under `policy`: a lease to settle, or
    /// why not. One store round trip at most.
    pub async fn reserve(
        self: &Arc<Self>,
        subject: &Arc<str>,
        policy: &Arc<Policy>,
        ask: Ask,
    ) -> Result<Lease, Refusal> {
        let id = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let now = now_ms();
        let r = match &self.store {
            Store::Local(s) => s.reserve(subject, policy, ask, id, now),
            Store::Redis(s) => s.reserve(subject, policy, ask, id, now).await,
        };
        let degraded = match r {
            Err(Refusal::Unavailable(e)) => {
                let mode = if policy.budget.is_some() {
                    self.budget_fail
                } else {
                    self.limits_fail
                };
                if mode == FailMode::Closed {
                    return Err(Refusal::Unavailable(e));
                }
                true
            }
            Err(e) => return Err(e),
            Ok(()) => false,
        };
        Ok(Lease {
            budgets: self.clone(),
            subject: subject.clone(),
            policy: policy.clone(),
            id,
            ask,
            degraded,
            done: false,
        })
    }

    /// The subject's usage (from the store; the local figures when it
    /// cannot be reached).
    pub async fn usage(&self, subject: &str, policy: &Policy) -> Result<Usage, String> {
        let now = now_ms();
        match &self.store {
            Store::Local(s) => Ok(s.usage(subject, policy, now)),
            Store::Redis(s) => s.usage(subject, policy, now).await,
        }
    }

    /// Whether the store answers (always, for the local one), and its last
    /// error.
    pub fn health(&self) -> (bool, Option<String>) {
        match &self.store {
            Store::Local(_) => (true, None),
            Store::Redis(s) => s.health(),
        }
    }

    pub fn kind(&self) -> &'static str {
        match &self.store {
            Store::Local(_) => "local",
            Store::Redis(_) => "redis",
        }
    }

    fn end(&self, l: &Lease, actual: Option<(Micros, u64)>) {
        let now = now_ms();
        match &self.store {
            Store::Local(s) => s.settle(&l.subject, &l.policy, l.id, l.ask, actual, now),
            Store::Redis(s) => {
                s.settle(&l.subject, &l.policy, l.id, l.ask, actual, l.degraded, now)
            }
        }
    }
}

/// A reservation held by a request in flight. [`Lease::settle`] charges
/// the real cost; dropping it unsettled releases it (cancel, failure).
pub struct Lease {
    budgets: Arc<Budgets>,
    subject: Arc<str>,
    policy: Arc<Policy>,
    id: u64,
    ask: Ask,
    /// Admitted while the store was unreachable (fail-open).
    degraded: bool,
    done: bool,
}

impl Lease {
    pub fn ask(&self) -> Ask {
        self.ask
    }

    pub fn degraded(&self) -> bool {
        self.degraded
    }

    /// Charges what the request really cost (`usd`, tokens).
    pub fn settle(mut self, usd: f64, tokens: u64) {
        self.done = true;
        self.budgets.end(&self, Some((micros(usd), tokens)));
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if !self.done {
            self.budgets.end(self, None);
        }
    }
}

/// A request's worst cost and its tokens: the prompt estimate (JSON bytes
/// of the conversation / 4, as for context windows) plus its output limit
/// (`max_tokens`, `max_completion_tokens`, `max_output_tokens`, Gemini's
/// `generationConfig.maxOutputTokens`; `default_output` when it sets none), priced at the dearest endpoint
/// among every model it may be served by.
pub fn estimate(
    catalog: &crate::catalog::Catalog,
    req: &crate::request::ParsedRequest,
    default_output: u64,
) -> Ask {
    let prompt = req.body.prompt_tokens_estimate();
    let output = req.output_limit.unwrap_or(default_output);
    let dearest = req
        .routes
        .iter()
        .flat_map(|r| r.candidates.iter())
        .filter_map(|&e| catalog.endpoints.get(e))
        .map(|e| e.cost(prompt, output) + e.price_request)
        .fold(0.0, f64::max);
    Ask {
        cost: micros_up(dearest),
        tokens: prompt + output,
    }
}
