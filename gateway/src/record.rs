//! What the gateway makes of a finished request's routing record (the
//! library's [`llmux::RoutingRecord`]): response headers (`x-llmux-*`), the
//! log line and the metrics.

use llmux::RoutingRecord as Routing;
use serde::Deserialize;
use std::borrow::Cow;
use std::fmt::Write as _;

/// The `message` inside an error body of any protocol's envelope
/// (`{"error": {"message": ...}}`), for the log line.
pub fn error_message(body: &str) -> Option<Cow<'_, str>> {
    #[derive(Deserialize)]
    struct Envelope<'a> {
        #[serde(borrow)]
        error: Inner<'a>,
    }
    #[derive(Deserialize)]
    struct Inner<'a> {
        #[serde(borrow)]
        message: Option<Cow<'a, str>>,
    }
    serde_json::from_str::<Envelope>(body).ok()?.error.message
}

/// `x-llmux-*` headers for a finished request.
pub fn headers(r: &Routing) -> Vec<(&'static str, String)> {
    let mut h = vec![("x-llmux-attempts", r.attempts.len().to_string())];
    if let Some(e) = &r.endpoint {
        h.push(("x-llmux-endpoint", e.to_string()));
    }
    if let Some(p) = &r.provider {
        h.push(("x-llmux-provider", p.to_string()));
    }
    if !r.model.is_empty() {
        h.push(("x-llmux-model", r.model.to_string()));
    }
    if let Some(ms) = r.first_token_ms {
        h.push(("x-llmux-first-token-ms", format!("{ms:.1}")));
    }
    if let Some(c) = r.cost_usd {
        h.push(("x-llmux-cost-usd", format!("{c:.8}")));
    }
    h
}

/// Prometheus metrics for one finished request.
pub fn observe(model: &str, r: &Routing, outcome: &str) {
    let endpoint = r.endpoint.as_deref().unwrap_or("none").to_owned();
    let model = if r.model.is_empty() { model } else { &r.model }.to_owned();
    metrics::counter!("llmux_requests_total", "model" => model.clone(), "endpoint" => endpoint.clone(), "outcome" => outcome.to_owned()).increment(1);
    for a in r.attempts.iter().filter(|a| a.outcome != "success") {
        metrics::counter!("llmux_failed_attempts_total", "endpoint" => a.endpoint.to_string(), "outcome" => a.outcome.to_string()).increment(1);
    }
    if r.attempts.len() > 1 {
        metrics::counter!("llmux_failovers_total", "model" => model.clone())
            .increment(r.attempts.len() as u64 - 1);
    }
    if let Some(ms) = r.first_token_ms {
        metrics::histogram!("llmux_first_token_seconds", "model" => model.clone(), "endpoint" => endpoint.clone()).record(ms / 1000.0);
    }
    metrics::histogram!("llmux_request_duration_seconds", "model" => model.clone(), "endpoint" => endpoint.clone()).record(r.latency_ms / 1000.0);
    if let Some(u) = r.usage {
        metrics::counter!("llmux_tokens_total", "model" => model.clone(), "endpoint" => endpoint.clone(), "kind" => "prompt").increment(u.prompt_tokens);
        metrics::counter!("llmux_tokens_total", "model" => model.clone(), "endpoint" => endpoint.clone(), "kind" => "completion").increment(u.completion_tokens);
    }
    if let Some(c) = r.cost_usd {
        metrics::gauge!("llmux_cost_usd_total", "model" => model, "endpoint" => endpoint)
            .increment(c);
    }
}

/// Log line format (`--log-format`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum LogFormat {
    Json,
    Logfmt,
    Off,
}

/// Counts and logs a request refused before it reached the engine.
pub fn rejected(reason: &str) {
    metrics::counter!("llmux_rejected_total", "reason" => reason.to_owned()).increment(1);
}

/// One request's log line: what was routed where, never keys or prompts.
/// Requests refused before routing have no id, `outcome` is the reason.
pub struct LogLine<'a> {
    pub id: Option<u64>,
    pub protocol: &'a str,
    pub model: &'a str,
    pub key: &'a str,
    pub stream: bool,
    pub status: u16,
    pub outcome: &'a str,
    pub duration_ms: f64,
    pub routing: Option<&'a Routing<'a>>,
    /// The error's message, for a request that failed.
    pub error: Option<&'a str>,
    /// `METHOD /path`, for a request no route took.
    pub route: Option<&'a str>,
    /// What the key's budget reserved and settled for it.
    pub cost: Option<crate::keys::CostNote>,
}

impl LogLine<'_> {
    pub fn write(&self, format: LogFormat) {
        let r = self.routing;
        let endpoint = r.and_then(Routing::culprit).unwrap_or("-");
        let attempts = r.map(|r| r.attempts.len()).unwrap_or(0);
        let ftl = r.and_then(|r| r.first_token_ms);
        let usage = r.and_then(|r| r.usage);
        let cost = r.and_then(|r| r.cost_usd);
        let (reserved, settled) = self
            .cost
            .map_or((None, None), |c| (Some(c.reserved_usd), c.settled_usd));
        let line = match format {
            LogFormat::Off => return,
            LogFormat::Json => serde_json::json!({
                "msg": "request", "id": self.id, "protocol": self.protocol, "model": self.model,
                "route": self.route, "error": self.error,
                "key": self.key, "stream": self.stream, "status": self.status,
                "outcome": self.outcome, "endpoint": endpoint, "attempts": attempts,
                "first_token_ms": ftl.map(round1), "duration_ms": round1(self.duration_ms),
                "prompt_tokens": usage.map(|u| u.prompt_tokens),
                "completion_tokens": usage.map(|u| u.completion_tokens), "cost_usd": cost,
                "reserved_usd": reserved, "settled_usd": settled,
            })
            .to_string(),
            LogFormat::Logfmt => {
                let mut s = String::new();
                let id = self.id.map_or_else(|| "-".to_owned(), |i| i.to_string());
                let _ = write!(
                    s,
                    "msg=request id={} protocol={} model={} key={} stream={} status={} outcome={} endpoint={} attempts={} duration_ms={:.1}",
                    id, self.protocol, quote(self.model), quote(self.key), self.stream,
                    self.status, self.outcome, quote(endpoint), attempts, self.duration_ms
                );
                if let Some(r) = self.route {
                    let _ = write!(s, " route={}", quote(r));
                }
                if let Some(f) = ftl {
                    let _ = write!(s, " first_token_ms={f:.1}");
                }
                if let Some(u) = usage {
                    let _ = write!(
                        s,
                        " prompt_tokens={} completion_tokens={}",
                        u.prompt_tokens, u.completion_tokens
                    );
                }
                if let Some(c) = cost {
                    let _ = write!(s, " cost_usd={c:.8}");
                }
                if let Some(r) = reserved {
                    let _ = write!(s, " reserved_usd={r:.6}");
                }
                if let Some(c) = settled {
                    let _ = write!(s, " settled_usd={c:.6}");
                }
                if let Some(e) = self.error {
                    let _ = write!(s, " error={}", quote(e));
                }
                s
            }
        };
        eprintln!("{line}");
    }
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

/// A logfmt value, quoted when it holds spaces, quotes or `=`.
fn quote(v: &str) -> String {
    if v.is_empty() || v.contains([' ', '"', '=', '\n']) {
        format!("{v:?}")
    } else {
        v.to_owned()
    }
}
