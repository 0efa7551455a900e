//! The edge's limits in force (`gateway.limits`), which a reload replaces:
//! the caps on open connections and requests in flight, and hyper's
//! builders made from the timeouts and header limits. New connections and
//! requests get the limits in force when they start; an open connection
//! keeps the timeouts it started with. A lower cap holds off new
//! connections or requests until enough of the ones already admitted end.
//!
//! What each limit does and its metric: docs/gateway.md, "Limits".

use crate::config::Limits;
use axum::body::Bytes;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use llmux::Protocol;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;
use tokio::sync::Notify;

/// The limits in force and what is built from them.
pub struct EdgeLimits {
    current: RwLock<Arc<Settings>>,
    /// Open connections (`max_connections`).
    pub(crate) connections: Arc<Gate>,
    /// Requests being served (`max_in_flight`).
    pub(crate) in_flight: Arc<Gate>,
}

/// One set of limits and the hyper builders made from it.
pub(crate) struct Settings {
    pub limits: Limits,
    /// HTTP/1.1 known from the first bytes or ALPN: hyper's own
    /// connection (smaller than the automatic builder's, which also holds
    /// HTTP/2 state).
    pub h1: hyper::server::conn::http1::Builder,
    /// HTTP/2 known from the first bytes or ALPN.
    pub h2: auto::Builder<TokioExecutor>,
    /// Neither known yet: hyper reads the first bytes itself (a partial
    /// HTTP/2 preface, or TLS without ALPN).
    pub detect: auto::Builder<TokioExecutor>,
    /// The whole HTTP/1.1 answer to a connection past the cap.
    pub refusal: Bytes,
}

impl EdgeLimits {
    pub fn new(limits: Limits) -> Arc<EdgeLimits> {
        publish(&limits);
        Arc::new(EdgeLimits {
            connections: Gate::new(limits.max_connections, "llmux_connections_open"),
            in_flight: Gate::new(limits.max_in_flight, "llmux_requests_in_flight"),
            current: RwLock::new(Arc::new(Settings::of(limits))),
        })
    }

    /// Puts `limits` in force for what starts from now on; `/metrics`
    /// shows the new values.
    pub fn set(&self, limits: Limits) {
        self.connections.set_max(limits.max_connections);
        self.in_flight.set_max(limits.max_in_flight);
        publish(&limits);
        let settings = Arc::new(Settings::of(limits));
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = settings;
    }

    /// The limits in force.
    pub fn get(&self) -> Limits {
        self.now().limits.clone()
    }

    pub(crate) fn now(&self) -> Arc<Settings> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Settings {
    fn of(l: Limits) -> Settings {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(Duration::from_millis(l.header_read_timeout_ms))
            .max_headers(l.max_headers)
            .max_buf_size(l.max_header_bytes);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(l.max_streams_per_connection)
            .max_header_list_size(u32::try_from(l.max_header_bytes).unwrap_or(u32::MAX));
        // The same HTTP/1.1 settings as the automatic builder's above.
        let mut h1 = hyper::server::conn::http1::Builder::new();
        h1.timer(TokioTimer::new())
            .header_read_timeout(Duration::from_millis(l.header_read_timeout_ms))
            .max_headers(l.max_headers)
            .max_buf_size(l.max_header_bytes);
        Settings {
            refusal: refusal(&l),
            h1,
            h2: builder.clone().http2_only(),
            detect: builder,
            limits: l,
        }
    }
}

/// The minimal HTTP/1.1 503 a connection past the cap gets.
fn refusal(l: &Limits) -> Bytes {
    let message = format!(
        "the gateway has its limit of {} open connections (gateway.limits.max_connections); retry after {} s",
        l.max_connections, l.retry_after_s
    );
    let body = llmux::protocol::error_body(Protocol::OpenAi, 503, "overloaded", &message);
    let body = body.to_string();
    Bytes::from(format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nretry-after: {}\r\nx-should-retry: true\r\nx-llmux-outcome: connection_limit\r\nconnection: close\r\n\r\n{body}",
        body.len(),
        l.retry_after_s
    ))
}

/// The limits as gauges, so a dashboard can draw them next to the open
/// connections and requests in flight.
fn publish(l: &Limits) {
    let values = [
        ("max_connections", l.max_connections as f64),
        ("max_in_flight", l.max_in_flight as f64),
        ("header_read_timeout_ms", l.header_read_timeout_ms as f64),
        ("body_read_timeout_ms", l.body_read_timeout_ms as f64),
        ("idle_timeout_ms", l.idle_timeout_ms as f64),
        ("max_headers", l.max_headers as f64),
        ("max_header_bytes", l.max_header_bytes as f64),
        (
            "max_streams_per_connection",
            f64::from(l.max_streams_per_connection),
        ),
    ];
    for (name, v) in values {
        metrics::gauge!("llmux_limit", "limit" => name).set(v);
    }
}

/// A cap on what is held at once, whose maximum a reload may change (a
/// semaphore cannot take back permits it has handed out), with a gauge of
/// what is held.
pub(crate) struct Gate {
    held: AtomicUsize,
    max: AtomicUsize,
    emptied: Notify,
    gauge: &'static str,
}

impl Gate {
    fn new(max: usize, gauge: &'static str) -> Arc<Gate> {
        metrics::gauge!(gauge).set(0.0);
        Arc::new(Gate {
            held: AtomicUsize::new(0),
            max: AtomicUsize::new(max),
            emptied: Notify::new(),
            gauge,
        })
    }

    fn set_max(&self, max: usize) {
        self.max.store(max, Ordering::Release);
    }

    /// A pass if fewer than the maximum are held.
    pub fn try_enter(self: &Arc<Self>) -> Option<Pass> {
        let max = self.max.load(Ordering::Acquire);
        self.held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |h| {
                (h < max).then_some(h + 1)
            })
            .ok()?;
        metrics::gauge!(self.gauge).increment(1.0);
        Some(Pass(self.clone()))
    }

    /// Resolves once nothing is held.
    pub async fn emptied(&self) {
        loop {
            let notified = self.emptied.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.held.load(Ordering::Acquire) == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// One place in a [`Gate`], given back on drop.
pub(crate) struct Pass(Arc<Gate>);

impl Drop for Pass {
    fn drop(&mut self) {
        metrics::gauge!(self.0.gauge).decrement(1.0);
        if self.0.held.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.emptied.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_gate_takes_a_new_maximum_without_taking_back_passes() {
        let g = Gate::new(2, "test_gate");
        let (a, b) = (g.try_enter().unwrap(), g.try_enter().unwrap());
        assert!(g.try_enter().is_none(), "past the maximum of 2");
        g.set_max(1);
        drop(a);
        assert!(g.try_enter().is_none(), "1 held, maximum now 1");
        drop(b);
        let c = g.try_enter().expect("nothing held");
        g.set_max(3);
        let d = g.try_enter().expect("1 held, maximum now 3");
        let waiter = tokio::spawn({
            let g = g.clone();
            async move { g.emptied().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        drop((c, d));
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("emptied resolves once the last pass is dropped")
            .unwrap();
    }
}
