//! The exporter: a bounded queue filled from the request path without
//! waiting, drained by one thread of its own that posts batches.

use super::{otlp, AttrValue, OtlpSettings, SpanData};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Exported, dropped and failed counts since start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct TelemetryCounters {
    /// Spans a collector accepted.
    pub exported: u64,
    /// Spans dropped: the queue was full, or their batch failed.
    pub dropped: u64,
    /// Export requests that failed (unreachable, timeout, non-2xx).
    pub export_errors: u64,
}

#[derive(Default)]
struct Counters {
    /// Spans admitted and not yet taken by the export thread.
    queued: std::sync::atomic::AtomicUsize,
    exported: AtomicU64,
    dropped: AtomicU64,
    export_errors: AtomicU64,
}

/// Sends spans to an OTLP collector, off the request path.
pub struct Tracer {
    settings: OtlpSettings,
    tx: Mutex<Option<SyncSender<SpanData>>>,
    counters: Arc<Counters>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Tracer {
    /// Starts the export thread. Errors: the thread or its runtime could
    /// not start.
    pub fn start(settings: OtlpSettings) -> Result<Tracer, String> {
        let (tx, rx) = sync_channel::<SpanData>(settings.max_queue);
        let counters = Arc::new(Counters::default());
        let c = counters.clone();
        let s = settings.clone();
        let thread = std::thread::Builder::new()
            .name("llmux-otlp".into())
            .spawn(move || export_loop(s, rx, c))
            .map_err(|e| format!("cannot start the trace export thread: {e}"))?;
        Ok(Tracer {
            settings,
            tx: Mutex::new(Some(tx)),
            counters,
            thread: Mutex::new(Some(thread)),
        })
    }

    pub fn settings(&self) -> &OtlpSettings {
        &self.settings
    }

    /// Makes room for `n` spans in the queue, or drops them (counted)
    /// when it is full: called before the spans are built, so a collector
    /// that is down costs the request path two atomic operations.
    pub fn admit(&self, n: usize) -> bool {
        let before = self.counters.queued.fetch_add(n, Ordering::AcqRel);
        if before + n > self.settings.max_queue {
            self.counters.queued.fetch_sub(n, Ordering::AcqRel);
            self.counters.dropped.fetch_add(n as u64, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// Queues a span admitted by [`Tracer::admit`]; never waits.
    pub fn send_admitted(&self, span: SpanData) {
        let tx = self.tx.lock().unwrap_or_else(|p| p.into_inner());
        let sent = match tx.as_ref() {
            Some(tx) => match tx.try_send(span) {
                Ok(()) => true,
                Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => false,
            },
            None => false,
        };
        if !sent {
            self.counters.queued.fetch_sub(1, Ordering::AcqRel);
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Queues one finished span; never waits. A full queue drops it (counted).
    pub fn record(&self, span: SpanData) {
        if self.admit(1) {
            self.send_admitted(span);
        }
    }

    pub fn counters(&self) -> TelemetryCounters {
        TelemetryCounters {
            exported: self.counters.exported.load(Ordering::Relaxed),
            dropped: self.counters.dropped.load(Ordering::Relaxed),
            export_errors: self.counters.export_errors.load(Ordering::Relaxed),
        }
    }

    /// Stops taking spans, exports what is queued (each request bounded by
    /// the timeout) and joins the thread. Idempotent.
    pub fn shutdown(&self) {
        drop(self.tx.lock().unwrap_or_else(|p| p.into_inner()).take());
        let t = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(t) = t {
            let _ = t.join();
        }
    }
}

impl Drop for Tracer {
    /// Without an explicit `shutdown` (the engine calls it), the thread is
    /// told to finish and left to flush on its own: a drop inside an async
    /// context must not wait for a slow collector.
    fn drop(&mut self) {
        drop(self.tx.lock().unwrap_or_else(|p| p.into_inner()).take());
    }
}

fn export_loop(s: OtlpSettings, rx: std::sync::mpsc::Receiver<SpanData>, c: Arc<Counters>) {
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(s.timeout_ms))
        .no_proxy()
        .build();
    let Ok(client) = client else { return };
    let resource: Vec<(String, AttrValue)> = s
        .resource
        .iter()
        .map(|(k, v)| (k.clone(), AttrValue::Str(v.clone())))
        .collect();
    let interval = Duration::from_millis(s.flush_interval_ms);
    let mut batch = Vec::with_capacity(s.max_batch);
    let mut open = true;
    while open {
        let due = Instant::now() + interval;
        while batch.len() < s.max_batch {
            let left = due.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(span) => {
                    c.queued.fetch_sub(1, Ordering::AcqRel);
                    batch.push(span);
                }
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => {
                    open = false;
                    break;
                }
            }
        }
        if batch.is_empty() {
            continue;
        }
        let body = otlp::export_request(&resource, &batch);
        let n = batch.len() as u64;
        batch.clear();
        let ok = rt.block_on(post(&client, &s, body));
        if ok {
            c.exported.fetch_add(n, Ordering::Relaxed);
        } else {
            c.export_errors.fetch_add(1, Ordering::Relaxed);
            c.dropped.fetch_add(n, Ordering::Relaxed);
        }
    }
}

async fn post(client: &reqwest::Client, s: &OtlpSettings, body: Vec<u8>) -> bool {
    let mut req = client
        .post(&s.url)
        .header("content-type", "application/x-protobuf")
        .body(body);
    for (k, v) in &s.headers {
        req = req.header(k.as_str(), v.as_str());
    }
    match req.send().await {
        Ok(r) => {
            let ok = r.status().is_success();
            let _ = r.bytes().await;
            ok
        }
        Err(_) => false,
    }
}
