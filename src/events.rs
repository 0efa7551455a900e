//! The event queue the host drains: a mutex-guarded deque, a condition
//! variable for blocking polls, and a socket pair whose read end is readable
//! while events are waiting (so an event loop can wait on llmux with its
//! sockets).

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// What an event is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// A stream chunk in the caller's protocol.
    Chunk,
    /// The request finished; its routing record (and body, non-streaming).
    Done,
    /// The request failed or was cancelled; error body and routing record.
    Error,
}

/// Why a request failed, the same whatever protocol the caller speaks:
/// every terminal event carries it as `error_kind` (null for `done`), so
/// bindings map errors from it instead of from protocol-specific types.
/// In JSON by [`ErrorKind::as_str`]'s name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The request itself is wrong (400, 413, 422, a translation refusal).
    InvalidRequest,
    Authentication,
    Permission,
    NotFound,
    RateLimit,
    /// First-token, idle or total timeout.
    Timeout,
    /// The upstream failed (5xx, broken stream, malformed payload, ...).
    Upstream,
    /// Every endpoint was at its concurrency limit.
    Overloaded,
    Cancelled,
    Internal,
    /// The provider preferences left no endpoint (before any upstream call).
    NoEndpointMatches,
}

impl ErrorKind {
    /// The neutral name in terminal events (`error_kind`).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidRequest => "invalid_request",
            ErrorKind::Authentication => "authentication",
            ErrorKind::Permission => "permission",
            ErrorKind::NotFound => "not_found",
            ErrorKind::RateLimit => "rate_limit",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Upstream => "upstream",
            ErrorKind::Overloaded => "overloaded",
            ErrorKind::Cancelled => "cancelled",
            ErrorKind::Internal => "internal",
            ErrorKind::NoEndpointMatches => "no_endpoint_matches",
        }
    }

    /// The error `type` of OpenAI-shaped error bodies (Anthropic bodies map
    /// it to an Anthropic type in `protocol::anthropic::error_body`).
    pub fn openai_type(self) -> &'static str {
        match self {
            ErrorKind::InvalidRequest => "invalid_request_error",
            ErrorKind::Authentication => "authentication_error",
            ErrorKind::Permission => "permission_error",
            ErrorKind::NotFound => "not_found_error",
            ErrorKind::RateLimit => "rate_limit_error",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Upstream => "upstream_error",
            ErrorKind::Overloaded => "overloaded",
            ErrorKind::Cancelled => "cancelled",
            ErrorKind::Internal => "internal_error",
            ErrorKind::NoEndpointMatches => "not_found_error",
        }
    }
}

/// One event for the host.
#[derive(Debug, Clone)]
pub struct Event {
    pub request_id: u64,
    pub kind: EventKind,
    /// JSON text.
    pub data: String,
}

impl Event {
    pub fn is_terminal(&self) -> bool {
        self.kind != EventKind::Chunk
    }
}

struct State {
    queue: VecDeque<Event>,
    /// A byte sits in the pipe (the fd is readable).
    signaled: bool,
    /// `wakeup` calls not yet consumed by a poll (each wakes one).
    wakeups: u32,
    /// Polls blocked on the condition variable.
    waiters: u32,
    /// The socket pair behind `fd()`, made on first request: (read, write).
    pipe: Option<(UnixStream, UnixStream)>,
}

/// Pushing never makes a system call unless a poll is blocked (a futex
/// wake) or the host asked for a descriptor (a pipe write when the queue
/// turns non-empty).
pub struct EventQueue {
    state: Mutex<State>,
    cv: Condvar,
    /// Wakes a host-driven poll (`worker_threads: 0`) waiting inside the
    /// engine's runtime; a stored permit costs one atomic when nobody waits.
    notify: tokio::sync::Notify,
}

/// A connected, non-blocking socket pair (close-on-exec, as std makes
/// every descriptor).
fn make_pipe() -> Option<(UnixStream, UnixStream)> {
    let (r, w) = UnixStream::pair().ok()?;
    r.set_nonblocking(true).ok()?;
    w.set_nonblocking(true).ok()?;
    Some((r, w))
}

impl Default for EventQueue {
    fn default() -> Self {
        Self::new()
    }
}

impl EventQueue {
    pub fn new() -> Self {
        EventQueue {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                signaled: false,
                wakeups: 0,
                waiters: 0,
                pipe: None,
            }),
            cv: Condvar::new(),
            notify: tokio::sync::Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn signal(&self, s: &mut State) {
        if !s.signaled {
            if let Some((_, w)) = &s.pipe {
                // One byte; a full buffer already makes the fd readable.
                let _ = (&*w).write(&[1u8]);
            }
            s.signaled = true;
        }
    }

    fn unsignal(&self, s: &mut State) {
        if s.signaled && s.queue.is_empty() {
            if let Some((r, _)) = &s.pipe {
                let mut buf = [0u8; 64];
                while matches!((&*r).read(&mut buf), Ok(n) if n > 0) {}
            }
            s.signaled = false;
        }
    }

    pub fn push(&self, ev: Event) {
        let mut s = self.lock();
        s.queue.push_back(ev);
        self.wake_readers(s);
    }

    pub fn push_all(&self, evs: impl IntoIterator<Item = Event>) {
        let mut s = self.lock();
        let before = s.queue.len();
        s.queue.extend(evs);
        if s.queue.len() == before {
            return;
        }
        self.wake_readers(s);
    }

    /// After events were added: signals the fd, then (with the lock
    /// released) wakes one blocked poll and the async readers.
    fn wake_readers(&self, mut s: MutexGuard<'_, State>) {
        self.signal(&mut s);
        let wake = s.waiters > 0;
        drop(s);
        if wake {
            self.cv.notify_one();
        }
        self.notify.notify_one();
    }

    /// Takes up to `max` events, waiting up to `timeout` for the first one
    /// (`None` waits until an event or a wakeup). Calls `sink` for each.
    pub fn poll(
        &self,
        max: usize,
        timeout: Option<Duration>,
        mut sink: impl FnMut(Event),
    ) -> usize {
        if max == 0 {
            return 0;
        }
        // A timeout too long to represent waits forever.
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        let mut s = self.lock();
        loop {
            if !s.queue.is_empty() {
                break;
            }
            if s.wakeups > 0 {
                s.wakeups -= 1;
                return 0;
            }
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                return 0;
            }
            s.waiters += 1;
            s = match deadline {
                None => self.cv.wait(s).unwrap_or_else(|p| p.into_inner()),
                Some(d) => {
                    self.cv
                        .wait_timeout(s, d - now)
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
            };
            s.waiters -= 1;
        }
        let n = max.min(s.queue.len());
        let taken: Vec<Event> = s.queue.drain(..n).collect();
        self.unsignal(&mut s);
        let more = !s.queue.is_empty() && s.waiters > 0;
        drop(s);
        if more {
            // Another poller may be waiting.
            self.cv.notify_one();
        }
        // The sink runs without the lock, so it may call back into the queue.
        for ev in taken {
            sink(ev);
        }
        n
    }

    /// Makes one blocked (or the next) `poll` return, with no events; n
    /// calls release n polls.
    pub fn wakeup(&self) {
        let mut s = self.lock();
        s.wakeups = s.wakeups.saturating_add(1);
        drop(s);
        self.cv.notify_all();
        self.notify.notify_one();
    }

    /// Events or a wakeup wait for a poll.
    pub fn ready(&self) -> bool {
        let s = self.lock();
        !s.queue.is_empty() || s.wakeups > 0
    }

    /// Resolves after the next push or wakeup (or at once when one came
    /// since the last call returned): a host-driven poll awaits it.
    pub async fn changed(&self) {
        self.notify.notified().await
    }

    /// Passes the wake on to another host-driven poll (events remain).
    pub fn nudge(&self) {
        self.notify.notify_one();
    }

    /// Read end of a socket pair that is readable while events are queued;
    /// made on the first call.
    pub fn fd(&self) -> Option<RawFd> {
        let mut s = self.lock();
        if s.pipe.is_none() {
            s.pipe = make_pipe();
            if !s.queue.is_empty() {
                s.signaled = false;
                self.signal(&mut s);
            }
        }
        s.pipe.as_ref().map(|(r, _)| r.as_raw_fd())
    }

    pub fn len(&self) -> usize {
        self.lock().queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn ev(id: u64) -> Event {
        Event {
            request_id: id,
            kind: EventKind::Chunk,
            data: "{}".into(),
        }
    }

    /// Whether the queue's descriptor is readable (a byte waits in it); a
    /// byte read to find out is written back.
    fn fd_readable(q: &EventQueue) -> bool {
        let s = q.lock();
        let (r, w) = s.pipe.as_ref().expect("fd() was called");
        let mut b = [0u8; 1];
        match (&*r).read(&mut b) {
            Ok(1) => {
                (&*w).write_all(&b).unwrap();
                true
            }
            _ => false,
        }
    }

    #[test]
    fn poll_batches_and_fd_tracks_emptiness() {
        let q = EventQueue::new();
        assert!(q.fd().is_some());
        assert!(!fd_readable(&q));
        q.push_all((0..5).map(ev));
        assert!(fd_readable(&q));
        let mut got = Vec::new();
        assert_eq!(
            q.poll(3, Some(Duration::ZERO), |e| got.push(e.request_id)),
            3
        );
        assert!(fd_readable(&q), "two left");
        assert_eq!(
            q.poll(10, Some(Duration::ZERO), |e| got.push(e.request_id)),
            2
        );
        assert_eq!(got, vec![0, 1, 2, 3, 4]);
        assert!(!fd_readable(&q));
        assert_eq!(q.poll(10, Some(Duration::ZERO), |_| {}), 0);
    }

    #[test]
    fn fd_asked_for_late_is_readable_when_events_wait() {
        let q = EventQueue::new();
        q.push(ev(1));
        let fd = q.fd().unwrap();
        assert!(fd_readable(&q));
        assert_eq!(q.fd(), Some(fd), "one pipe per queue");
        assert_eq!(q.poll(8, Some(Duration::ZERO), |_| {}), 1);
        assert!(!fd_readable(&q));
    }

    #[test]
    fn blocking_poll_wakes_on_push_and_on_wakeup() {
        let q = Arc::new(EventQueue::new());
        let q2 = q.clone();
        let t = std::thread::spawn(move || q2.poll(1, None, |_| {}));
        std::thread::sleep(Duration::from_millis(20));
        q.push(ev(1));
        assert_eq!(t.join().unwrap(), 1);
        let q2 = q.clone();
        let t = std::thread::spawn(move || q2.poll(1, None, |_| {}));
        std::thread::sleep(Duration::from_millis(20));
        q.wakeup();
        assert_eq!(t.join().unwrap(), 0);
    }

    #[test]
    fn each_wakeup_releases_one_blocked_poll() {
        let q = Arc::new(EventQueue::new());
        let pollers: Vec<_> = (0..3)
            .map(|_| {
                let q = q.clone();
                std::thread::spawn(move || q.poll(1, None, |_| {}))
            })
            .collect();
        std::thread::sleep(Duration::from_millis(30));
        for _ in 0..3 {
            q.wakeup();
        }
        for p in pollers {
            assert_eq!(p.join().unwrap(), 0);
        }
    }

    #[test]
    fn timeout_returns_empty() {
        let q = EventQueue::new();
        assert_eq!(q.poll(4, Some(Duration::from_millis(5)), |_| {}), 0);
    }
}
