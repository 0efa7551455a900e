//! The engine's terminal event as the gateway uses it: response headers
//! (`x-llmux-*`), the log line and the metrics.

use serde::Deserialize;
use serde_json::value::RawValue;
use std::fmt::Write as _;

#[derive(Deserialize)]
pub struct Terminal<'a> {
    #[serde(rename = "type")]
    pub kind: &'a str,
    pub status: Option<u16>,
    #[serde(borrow)]
    pub response: Option<&'a RawValue>,
    #[serde(borrow)]
    pub error: Option<&'a RawValue>,
    /// `success` or the failure's outcome (docs/errors.md).
    pub outcome: Option<String>,
    pub routing: Option<Routing>,
}

#[derive(Deserialize, Default)]
pub struct Routing {
    pub model: Option<String>,
    pub endpoint: Option<String>,
    pub provider: Option<String>,
    #[serde(default)]
    pub attempts: Vec<Attempt>,
    pub first_token_ms: Option<f64>,
    pub latency_ms: Option<f64>,
    pub usage: Option<Usage>,
    pub cost_usd: Option<f64>,
}

#[derive(Deserialize)]
pub struct Attempt {
    pub endpoint: String,
    pub outcome: String,
}

#[derive(Deserialize, Clone, Copy)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

impl Routing {
    /// The endpoint to name in a log line: the one that served, else the
    /// last one tried.
    pub fn culprit(&self) -> Option<&str> {
        self.endpoint
            .as_deref()
            .or_else(|| self.attempts.last().map(|a| a.endpoint.as_str()))
    }
}

/// `x-llmux-*` headers for a finished request.
pub fn headers(r: &Routing) -> Vec<(&'static str, String)> {
    let mut h = vec![("x-llmux-attempts", r.attempts.len().to_string())];
    if let Some(e) = &r.endpoint {
        h.push(("x-llmux-endpoint", e.clone()));
    }
    if let Some(p) = &r.provider {
        h.push(("x-llmux-provider", p.clone()));
    }
    if let Some(m) = &r.model {
        h.push(("x-llmux-model", m.clone()));
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
    let endpoint = r.endpoint.clone().unwrap_or_else(|| "none".into());
    let model = r.model.clone().unwrap_or_else(|| model.to_owned());
    metrics::counter!("llmux_requests_total", "model" => model.clone(), "endpoint" => endpoint.clone(), "outcome" => outcome.to_owned()).increment(1);
    for a in r.attempts.iter().filter(|a| a.outcome != "success") {
        metrics::counter!("llmux_failed_attempts_total", "endpoint" => a.endpoint.clone(), "outcome" => a.outcome.clone()).increment(1);
    }
    if r.attempts.len() > 1 {
        metrics::counter!("llmux_failovers_total", "model" => model.clone())
            .increment(r.attempts.len() as u64 - 1);
    }
    if let Some(ms) = r.first_token_ms {
        metrics::histogram!("llmux_first_token_seconds", "model" => model.clone(), "endpoint" => endpoint.clone()).record(ms / 1000.0);
    }
    if let Some(ms) = r.latency_ms {
        metrics::histogram!("llmux_request_duration_seconds", "model" => model.clone(), "endpoint" => endpoint.clone()).record(ms / 1000.0);
    }
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
    pub routing: Option<&'a Routing>,
    /// The error's message, for a request that failed.
    pub error: Option<&'a str>,
    /// `METHOD /path`, for a request no route took.
    pub route: Option<&'a str>,
}

impl LogLine<'_> {
    pub fn write(&self, format: LogFormat) {
        let r = self.routing;
        let endpoint = r.and_then(Routing::culprit).unwrap_or("-");
        let attempts = r.map(|r| r.attempts.len()).unwrap_or(0);
        let ftl = r.and_then(|r| r.first_token_ms);
        let usage = r.and_then(|r| r.usage);
        let cost = r.and_then(|r| r.cost_usd);
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
