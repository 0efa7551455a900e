//! OpenTelemetry traces over OTLP/HTTP (protobuf), when the config's
//! `telemetry.otlp` section asks for them; without it nothing here is
//! built. A request becomes a client span `chat {model}` with the GenAI
//! semantic conventions' attributes and llmux's routing attributes, and one
//! child span per attempt (hedged twins and failovers are siblings).
//!
//! Spans leave the request path through a bounded queue: when it is full
//! (a collector that is down or slow) a span is dropped and counted, never
//! waited for. One thread of its own batches and posts them (so host-driven
//! engines export too) and flushes what is queued at shutdown. The library
//! prints nothing: failures are counted in [`TelemetryCounters`].

mod export;
pub mod otlp;
mod spans;

pub use export::{TelemetryCounters, Tracer};
pub use spans::{context_for, request_spans, AttemptTrace, RequestTrace};

use serde::Deserialize;
use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};

/// The config's `telemetry` section.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// Traces over OTLP; off when absent.
    pub otlp: Option<OtlpConfig>,
}

/// `telemetry.otlp`. A field left out falls back to the standard
/// environment variable, then to the default.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpConfig {
    /// The collector's base URL (`/v1/traces` is appended) or, ending in
    /// `/v1/traces`, the full URL. Env: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`
    /// (full), `OTEL_EXPORTER_OTLP_ENDPOINT` (base). Default
    /// `http://localhost:4318`.
    pub endpoint: Option<String>,
    /// Extra request headers (an auth token). Env:
    /// `OTEL_EXPORTER_OTLP_HEADERS` / `..._TRACES_HEADERS` (`k=v,k=v`).
    pub headers: Option<BTreeMap<String, String>>,
    /// Only `http/protobuf`. Env: `OTEL_EXPORTER_OTLP_PROTOCOL`.
    pub protocol: Option<String>,
    /// Share of requests without a sampled parent that are traced (0..1,
    /// default 1). A `traceparent` parent's sampled flag decides for its
    /// children.
    pub sampling_ratio: Option<f64>,
    /// Resource attributes (`service.name` defaults to `llmux`). Env:
    /// `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_SERVICE_NAME`.
    pub resource_attributes: Option<BTreeMap<String, String>>,
    /// Put prompt and completion text on spans (`gen_ai.input.messages`,
    /// `gen_ai.output.messages`). Default false.
    #[serde(default)]
    pub capture_content: bool,
    /// Per export request, ms. Env: `OTEL_EXPORTER_OTLP_TIMEOUT`. Default 10000.
    pub timeout_ms: Option<u64>,
    /// Spans waiting for export at most; past it they are dropped (default 2048).
    pub max_queue: Option<usize>,
    /// Spans per export request at most (default 512).
    pub max_batch: Option<usize>,
    /// Longest wait before a partial batch goes out, ms (default 1000).
    pub flush_interval_ms: Option<u64>,
}

/// The settings after config, environment and defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct OtlpSettings {
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub sampling_ratio: f64,
    pub resource: Vec<(String, String)>,
    pub capture_content: bool,
    pub timeout_ms: u64,
    pub max_queue: usize,
    pub max_batch: usize,
    pub flush_interval_ms: u64,
}

fn pairs(s: &str) -> Vec<(String, String)> {
    s.split(',')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .filter(|(k, _)| !k.is_empty())
        .collect()
}

impl OtlpConfig {
    /// Resolves the settings with `env` (the process environment in
    /// production, a map in tests). Errors name the field.
    pub fn resolve(&self, env: impl Fn(&str) -> Option<String>) -> Result<OtlpSettings, String> {
        let protocol = self
            .protocol
            .clone()
            .or_else(|| env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"))
            .or_else(|| env("OTEL_EXPORTER_OTLP_PROTOCOL"))
            .unwrap_or_else(|| "http/protobuf".into());
        if protocol != "http/protobuf" {
            return Err(format!(
                "telemetry.otlp.protocol: `{protocol}` is not supported; llmux exports http/protobuf"
            ));
        }
        let url = match (&self.endpoint, env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")) {
            (Some(e), _) => e.clone(),
            (None, Some(full)) => full,
            (None, None) => {
                env("OTEL_EXPORTER_OTLP_ENDPOINT").unwrap_or_else(|| "http://localhost:4318".into())
            }
        };
        let url = if url.trim_end_matches('/').ends_with("/v1/traces") {
            url
        } else {
            format!("{}/v1/traces", url.trim_end_matches('/'))
        };
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(format!(
                "telemetry.otlp.endpoint: `{url}` is not an http(s) URL"
            ));
        }
        let headers = match &self.headers {
            Some(h) => h.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            None => env("OTEL_EXPORTER_OTLP_TRACES_HEADERS")
                .or_else(|| env("OTEL_EXPORTER_OTLP_HEADERS"))
                .map(|s| pairs(&s))
                .unwrap_or_default(),
        };
        let ratio = self.sampling_ratio.unwrap_or(1.0);
        if !(0.0..=1.0).contains(&ratio) {
            return Err(format!(
                "telemetry.otlp.sampling_ratio: {ratio} is not between 0 and 1"
            ));
        }
        let mut resource: BTreeMap<String, String> = env("OTEL_RESOURCE_ATTRIBUTES")
            .map(|s| pairs(&s).into_iter().collect())
            .unwrap_or_default();
        if let Some(n) = env("OTEL_SERVICE_NAME") {
            resource.insert("service.name".into(), n);
        }
        for (k, v) in self.resource_attributes.iter().flatten() {
            resource.insert(k.clone(), v.clone());
        }
        resource
            .entry("service.name".into())
            .or_insert_with(|| "llmux".into());
        let timeout_ms = self
            .timeout_ms
            .or_else(|| env("OTEL_EXPORTER_OTLP_TIMEOUT").and_then(|t| t.parse().ok()))
            .unwrap_or(10_000);
        Ok(OtlpSettings {
            url,
            headers,
            sampling_ratio: ratio,
            resource: resource.into_iter().collect(),
            capture_content: self.capture_content,
            timeout_ms,
            max_queue: self.max_queue.unwrap_or(2048).max(1),
            max_batch: self.max_batch.unwrap_or(512).max(1),
            flush_interval_ms: self.flush_interval_ms.unwrap_or(1000).max(1),
        })
    }
}

/// An attribute's value.
#[derive(Clone, Debug, PartialEq)]
pub enum AttrValue {
    Str(String),
    Bool(bool),
    Int(i64),
    F64(f64),
    StrArray(Vec<String>),
}

/// OTLP's `SpanKind` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpanKind {
    Internal = 1,
    Server = 2,
    Client = 3,
}

/// One finished span.
#[derive(Clone, Debug, PartialEq)]
pub struct SpanData {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub parent: Option<[u8; 8]>,
    pub name: String,
    pub kind: SpanKind,
    /// Unix time, ns.
    pub start_ns: u64,
    pub end_ns: u64,
    pub attributes: Vec<(&'static str, AttrValue)>,
    /// `Some(message)`: the span's status is error.
    pub error: Option<String>,
}

/// A trace context: W3C `traceparent`'s trace id, parent span id and
/// sampled flag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceContext {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub sampled: bool,
}

fn hex_into(s: &str, out: &mut [u8]) -> Option<()> {
    if s.len() != out.len() * 2 {
        return None;
    }
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    Some(())
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl TraceContext {
    /// Parses `00-<32 hex>-<16 hex>-<2 hex>`; `None` when malformed or
    /// all-zero (the W3C rules: then a new trace starts).
    pub fn parse(traceparent: &str) -> Option<TraceContext> {
        let mut it = traceparent.trim().split('-');
        let (v, t, s, f) = (it.next()?, it.next()?, it.next()?, it.next()?);
        if v.len() != 2 || v == "ff" || (v == "00" && it.next().is_some()) {
            return None;
        }
        let mut c = TraceContext {
            trace_id: [0; 16],
            span_id: [0; 8],
            sampled: false,
        };
        hex_into(t, &mut c.trace_id)?;
        hex_into(s, &mut c.span_id)?;
        let mut flags = [0u8; 1];
        hex_into(f, &mut flags)?;
        c.sampled = flags[0] & 1 == 1;
        let zero = c.trace_id == [0; 16] || c.span_id == [0; 8];
        (!zero).then_some(c)
    }

    /// The `traceparent` header naming this context.
    pub fn header(&self) -> String {
        format!(
            "00-{}-{}-{:02x}",
            hex(&self.trace_id),
            hex(&self.span_id),
            u8::from(self.sampled)
        )
    }
}

/// A random 64-bit value (std's randomly keyed SipHash over a counter).
pub fn random_u64() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(N.fetch_add(1, Ordering::Relaxed));
    h.finish().max(1)
}

/// A new span id.
pub fn new_span_id() -> [u8; 8] {
    random_u64().to_be_bytes()
}

/// A new trace id.
pub fn new_trace_id() -> [u8; 16] {
    let mut t = [0u8; 16];
    t[..8].copy_from_slice(&random_u64().to_be_bytes());
    t[8..].copy_from_slice(&random_u64().to_be_bytes());
    t
}

/// Whether a new trace is sampled at `ratio`: by its id, so every process
/// that sees the trace decides alike (OpenTelemetry's TraceIdRatioBased).
pub fn sampled_by_ratio(trace_id: &[u8; 16], ratio: f64) -> bool {
    if ratio >= 1.0 {
        return true;
    }
    let mut low = [0u8; 8];
    low.copy_from_slice(&trace_id[8..]);
    let x = u64::from_be_bytes(low) >> 1;
    (x as f64) < ratio * (1u64 << 63) as f64
}

#[cfg(test)]
mod tests;
