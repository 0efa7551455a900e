//! Host-driven mode (`"worker_threads": 0`): the engine starts no thread and
//! its I/O runs inside `poll` on the caller's thread, against real HTTP
//! servers on 127.0.0.1.

mod common;

use common::*;
use llmux::Protocol;
use llmux_fleet::Behavior;
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn host_driven() -> serde_json::Value {
    json!({"worker_threads": 0})
}

/// Names of this process's threads.
fn thread_names() -> Vec<String> {
    std::fs::read_dir("/proc/self/task")
        .map(|d| {
            d.filter_map(|t| t.ok())
                .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
                .map(|s| s.trim().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn requests_complete_on_the_polling_thread_without_engine_threads() {
    let a = upstream("a", Behavior::default());
    let e = engine(&[&a], host_driven());
    assert!(
        !thread_names().iter().any(|n| n.starts_with("llmux-worker")),
        "a host-driven engine starts no worker thread: {:?}",
        thread_names()
    );
    for stream in [false, true] {
        let out = run(&e, &chat("test/model", stream));
        assert!(out.ok(), "stream {stream}: {:?}", out.terminal);
        assert_eq!(out.served(), Some("a/default"));
        if stream {
            assert!(!out.chunks.is_empty());
            assert!(!out.text().is_empty());
        } else {
            assert!(out.terminal["response"]["choices"][0]["message"]["content"].is_string());
        }
    }
}

#[test]
fn zero_timeout_polls_advance_io_like_a_game_loop() {
    let a = upstream("a", behavior(json!({"chunks": 8, "chunk_delay_ms": 2})));
    let e = engine(&[&a], host_driven());
    let id = e
        .submit(
            Protocol::OpenAi,
            chat("test/model", true).to_string().as_bytes(),
        )
        .expect("submit");
    let start = Instant::now();
    let (mut chunks, mut terminal, mut frames) = (0, None, 0u64);
    while terminal.is_none() {
        assert!(start.elapsed() < Duration::from_secs(10), "no progress");
        frames += 1;
        for ev in e.poll_vec(64, Some(Duration::ZERO)) {
            assert_eq!(ev.request_id, id);
            if ev.is_terminal() {
                terminal = Some(ev);
            } else {
                chunks += 1;
            }
        }
        std::thread::sleep(Duration::from_micros(200)); // the rest of a frame
    }
    let t = terminal.unwrap();
    assert_eq!(t.kind, llmux::EventKind::Done, "{}", t.data);
    assert!(chunks >= 8, "{chunks} chunks");
    assert!(frames > 1, "the stream took several frames");
}

#[test]
fn failover_and_timeouts_run_inside_poll() {
    let mut dead = upstream("dead", behavior(json!({"status": 503})));
    dead.expected_ms = Some(1.0);
    let mut ok = upstream("ok", Behavior::default());
    ok.expected_ms = Some(100.0);
    let e = engine(&[&dead, &ok], host_driven());
    let out = run(&e, &chat("test/model", false));
    assert!(out.ok(), "{:?}", out.terminal);
    assert_eq!(out.served(), Some("ok/default"));
    assert_eq!(out.attempts().len(), 2);

    // A first-token timeout fires while the host waits in poll.
    let slow = upstream("slow", behavior(json!({"first_token_delay_ms": 2000})));
    let e = engine(
        &[&slow],
        json!({"worker_threads": 0, "timeouts": {"first_token_ms": 100}}),
    );
    let out = run(&e, &chat("test/model", true));
    assert!(!out.ok());
    assert_eq!(out.terminal["error_kind"], "timeout", "{:?}", out.terminal);
    assert!(out.elapsed < Duration::from_secs(2), "{:?}", out.elapsed);
}

#[test]
fn wakeup_releases_a_blocked_host_driven_poll() {
    let a = upstream("a", Behavior::default());
    let e = Arc::new(engine(&[&a], host_driven()));
    let e2 = e.clone();
    let t = std::thread::spawn(move || {
        let start = Instant::now();
        let n = e2.poll(8, None, |_| {});
        (n, start.elapsed())
    });
    std::thread::sleep(Duration::from_millis(50));
    e.wakeup();
    let (n, waited) = t.join().unwrap();
    assert_eq!(n, 0);
    assert!(waited < Duration::from_secs(5));
    // A timed poll with nothing in flight returns after its timeout.
    let start = Instant::now();
    assert_eq!(e.poll(8, Some(Duration::from_millis(30)), |_| {}), 0);
    assert!(start.elapsed() >= Duration::from_millis(30));
}

#[test]
fn several_polling_threads_see_exactly_one_terminal_per_request() {
    let a = upstream("a", behavior(json!({"chunks": 4})));
    let e = Arc::new(engine(&[&a], host_driven()));
    let n = 200;
    let ids: Vec<u64> = (0..n)
        .map(|i| {
            e.submit(
                Protocol::OpenAi,
                chat("test/model", i % 2 == 0).to_string().as_bytes(),
            )
            .expect("submit")
        })
        .collect();
    let terminals = Arc::new(std::sync::Mutex::new(HashMap::<u64, usize>::new()));
    let pollers: Vec<_> = (0..3)
        .map(|_| {
            let (e, terminals) = (e.clone(), terminals.clone());
            std::thread::spawn(move || {
                let start = Instant::now();
                while start.elapsed() < Duration::from_secs(20) {
                    if terminals.lock().unwrap().len() >= n {
                        break;
                    }
                    e.poll(16, Some(Duration::from_millis(20)), |ev| {
                        if ev.is_terminal() {
                            assert_eq!(ev.kind, llmux::EventKind::Done, "{}", ev.data);
                            *terminals.lock().unwrap().entry(ev.request_id).or_default() += 1;
                        }
                    });
                }
            })
        })
        .collect();
    for p in pollers {
        p.join().unwrap();
    }
    let t = terminals.lock().unwrap();
    assert_eq!(t.len(), n, "every request ended");
    for id in ids {
        assert_eq!(t.get(&id), Some(&1), "request {id}: one terminal");
    }
}

#[test]
fn freeing_with_requests_in_flight_cancels_them_promptly() {
    let a = upstream("a", behavior(json!({"first_token_delay_ms": 5000})));
    let e = engine(&[&a], host_driven());
    for _ in 0..4 {
        e.submit(
            Protocol::OpenAi,
            chat("test/model", true).to_string().as_bytes(),
        )
        .expect("submit");
    }
    // Let the requests connect (they run only inside poll).
    assert_eq!(e.poll(8, Some(Duration::from_millis(50)), |_| {}), 0);
    assert_eq!(e.in_flight(), 4);
    let start = Instant::now();
    drop(e);
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
}

/// A request spawned by the next poll (not woken from `submit`) still finds
/// the last one's connection back in the pool: one upstream connection for
/// a run of one-at-a-time requests, streamed or not.
#[test]
fn sequential_requests_reuse_one_upstream_connection() {
    let a = upstream("a", Behavior::default());
    let e = engine(&[&a], host_driven());
    for i in 0..20 {
        let out = run(&e, &chat("test/model", i % 2 == 1));
        assert!(out.ok(), "request {i}: {:?}", out.terminal);
    }
    assert_eq!(a.server.request_count(), 20);
    assert_eq!(
        a.server.live_connections(),
        1,
        "each request should reuse the pooled connection"
    );
}
