//! The engine as a C host sees it: every call goes through the `extern "C"`
//! functions of `llmux::ffi` (the same symbols `llmux.h` declares).

use llmux::ffi::{self, llmux_engine, llmux_event, llmux_event_kind, llmux_result};
use serde_json::Value;
use std::ffi::{c_char, CStr};
use std::mem::MaybeUninit;

pub struct CEngine {
    ptr: *mut llmux_engine,
}

// SAFETY: the C ABI documents every `const llmux_engine *` function as
// thread-safe; `llmux_engine_free` runs only in Drop (exclusive access).
unsafe impl Send for CEngine {}
unsafe impl Sync for CEngine {}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Chunk,
    Done,
    Error,
}

unsafe fn take_string(p: *mut c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    let s = CStr::from_ptr(p).to_string_lossy().into_owned();
    ffi::llmux_string_free(p);
    s
}

impl CEngine {
    pub fn new(config: &str) -> CEngine {
        let mut eng: *mut llmux_engine = std::ptr::null_mut();
        let mut err: *mut c_char = std::ptr::null_mut();
        // SAFETY: valid buffer and length; out-pointers are valid locals.
        let rc = unsafe {
            ffi::llmux_engine_new(
                config.as_ptr() as *const c_char,
                config.len(),
                &mut eng,
                &mut err,
            )
        };
        if rc != llmux_result::Ok {
            // SAFETY: err was written by llmux (or is NULL).
            let msg = unsafe { take_string(err) };
            panic!("llmux_engine_new: {rc:?}: {msg}");
        }
        CEngine { ptr: eng }
    }

    /// `llmux_submit` with an OpenAI-protocol body.
    pub fn submit(&self, body: &[u8]) -> Result<u64, String> {
        let mut id = 0u64;
        let mut err: *mut c_char = std::ptr::null_mut();
        // SAFETY: the engine is live; body is valid for its length.
        let rc = unsafe {
            ffi::llmux_submit(
                self.ptr,
                0,
                body.as_ptr() as *const c_char,
                body.len(),
                &mut id,
                &mut err,
            )
        };
        if rc == llmux_result::Ok {
            Ok(id)
        } else {
            // SAFETY: err was written by llmux (or is NULL).
            Err(format!("{rc:?}: {}", unsafe { take_string(err) }))
        }
    }

    pub fn cancel(&self, id: u64) -> bool {
        // SAFETY: the engine is live.
        unsafe { ffi::llmux_cancel(self.ptr, id) == llmux_result::Ok }
    }

    pub fn stats(&self) -> Value {
        let mut out: *mut c_char = std::ptr::null_mut();
        // SAFETY: the engine is live; out is a valid location.
        let rc = unsafe { ffi::llmux_stats(self.ptr, &mut out) };
        if rc != llmux_result::Ok {
            return Value::Null;
        }
        // SAFETY: written by llmux_stats.
        serde_json::from_str(&unsafe { take_string(out) }).unwrap_or(Value::Null)
    }

    /// The stats entry of endpoint `id` (e.g. `"flip/default"`).
    pub fn endpoint_stats(&self, id: &str) -> Value {
        self.stats()["endpoints"]
            .as_array()
            .and_then(|a| a.iter().find(|e| e["id"] == id).cloned())
            .unwrap_or(Value::Null)
    }
}

impl Drop for CEngine {
    fn drop(&mut self) {
        // SAFETY: created by llmux_engine_new, freed once, no other user left.
        unsafe { ffi::llmux_engine_free(self.ptr) };
    }
}

/// A host-side event array, as a C program would keep one.
pub struct Events {
    buf: Vec<MaybeUninit<llmux_event>>,
}

impl Events {
    pub fn new(capacity: usize) -> Events {
        let mut buf = Vec::with_capacity(capacity);
        buf.resize_with(capacity, MaybeUninit::uninit);
        Events { buf }
    }

    /// `llmux_poll` up to `max` events (`timeout_ms` as in the C API), hands
    /// each to `f`, then `llmux_events_free`. Returns the count.
    pub fn poll(
        &mut self,
        eng: &CEngine,
        max: usize,
        timeout_ms: i32,
        mut f: impl FnMut(u64, Kind, &[u8]),
    ) -> usize {
        let max = max.min(self.buf.len());
        let base = self.buf.as_mut_ptr() as *mut llmux_event;
        let mut n = 0usize;
        // SAFETY: `base` has room for `max` events; the engine is live.
        let rc = unsafe { ffi::llmux_poll(eng.ptr, base, max, timeout_ms, &mut n) };
        assert_eq!(rc, llmux_result::Ok, "llmux_poll");
        for i in 0..n {
            // SAFETY: llmux_poll initialised the first n slots; data points to
            // data_len bytes owned by the event until llmux_events_free.
            let ev = unsafe { &*base.add(i) };
            let data = unsafe { std::slice::from_raw_parts(ev.data as *const u8, ev.data_len) };
            let kind = match ev.kind {
                llmux_event_kind::Chunk => Kind::Chunk,
                llmux_event_kind::Done => Kind::Done,
                llmux_event_kind::Error => Kind::Error,
            };
            f(ev.request_id, kind, data);
        }
        // SAFETY: exactly the n events llmux_poll returned.
        unsafe { ffi::llmux_events_free(base, n) };
        n
    }
}
