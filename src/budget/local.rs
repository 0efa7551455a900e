//! The store of one process: ledgers in memory, every settled request and
//! every rejection appended to a journal file as one JSON line.
//!
//! Each line is written with one `write` call to a file opened for
//! appending, so a process killed with SIGKILL loses nothing it wrote (the
//! kernel holds it); what is lost is what was in flight: reservations are
//! never journaled, so requests not yet settled are neither charged nor
//! counted after the restart. With `fsync`, each line is also synced
//! (survives a power cut, at the price of a disk flush per request). At
//! open the journal is replayed (a torn last line is skipped) and
//! rewritten compacted, one line per subject and period.

use super::{Ask, Ledger, Micros, Policy, Refusal, Totals, Usage};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// One journal line: what to add to a subject's period.
#[derive(Serialize, Deserialize)]
struct Line<'a> {
    /// The subject.
    s: std::borrow::Cow<'a, str>,
    /// The period's start, seconds since the epoch (0: total).
    p: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    c: Micros,
    #[serde(default, skip_serializing_if = "is_zero_u")]
    t: u64,
    #[serde(default, skip_serializing_if = "is_zero_u")]
    r: u64,
    #[serde(default, skip_serializing_if = "is_zero_u")]
    x: u64,
}

fn is_zero(v: &Micros) -> bool {
    *v == 0
}

fn is_zero_u(v: &u64) -> bool {
    *v == 0
}

struct Journal {
    file: std::fs::File,
    fsync: bool,
}

/// Ledgers of one process, journaled when a file is given.
pub struct LocalStore {
    ledgers: Mutex<HashMap<std::sync::Arc<str>, Ledger>>,
    /// Totals read from the journal, per subject and period start, taken
    /// when a subject is first seen.
    loaded: Mutex<HashMap<String, BTreeMap<u64, Totals>>>,
    journal: Option<Mutex<Journal>>,
    path: Option<PathBuf>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl LocalStore {
    /// In memory only.
    pub fn memory() -> LocalStore {
        LocalStore {
            ledgers: Mutex::default(),
            loaded: Mutex::default(),
            journal: None,
            path: None,
        }
    }

    /// Replays and compacts the journal at `path` (created when missing).
    pub fn open(path: &Path, fsync: bool) -> Result<LocalStore, String> {
        let shown = path.display();
        let loaded = match std::fs::read_to_string(path) {
            Ok(text) => replay(&text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => HashMap::new(),
            Err(e) => return Err(format!("cannot read the budget journal {shown}: {e}")),
        };
        let tmp = path.with_extension("compacting");
        let mut out = String::new();
        for (s, periods) in &loaded {
            for (&p, t) in periods {
                out.push_str(&line(s, p, t));
            }
        }
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(out.as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)
        };
        write().map_err(|e| format!("cannot write the budget journal {shown}: {e}"))?;
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(|e| format!("cannot open the budget journal {shown}: {e}"))?;
        Ok(LocalStore {
            ledgers: Mutex::default(),
            loaded: Mutex::new(loaded),
            journal: Some(Mutex::new(Journal { file, fsync })),
            path: Some(path.to_owned()),
        })
    }

    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Runs `f` on the subject's ledger (created from the journal's totals
    /// on first use).
    fn with<R>(
        &self,
        subject: &str,
        p: &Policy,
        now_ms: u64,
        f: impl FnOnce(&mut Ledger) -> R,
    ) -> R {
        let mut map = lock(&self.ledgers);
        if let Some(l) = map.get_mut(subject) {
            return f(l);
        }
        let mut l = Ledger::default();
        if let Some(periods) = lock(&self.loaded).remove(subject) {
            let period = p.budget.map_or(super::Period::Total, |b| b.1);
            let now = now_ms / 1000;
            l.period_start = period.start(now);
            l.current = periods.get(&l.period_start).copied().unwrap_or_default();
            if let Some(prev) = period.previous_start(now) {
                l.previous = periods.get(&prev).copied().unwrap_or_default();
            }
        }
        f(map.entry(subject.into()).or_insert(l))
    }

    pub fn reserve(
        &self,
        subject: &str,
        p: &Policy,
        ask: Ask,
        id: u64,
        now_ms: u64,
    ) -> Result<(), Refusal> {
        let r = self.with(subject, p, now_ms, |l| {
            (l.reserve(p, ask, id, now_ms), l.period_start)
        });
        if r.0.is_err() {
            let t = Totals {
                rejections: 1,
                ..Totals::default()
            };
            self.append(subject, r.1, &t);
        }
        r.0
    }

    pub fn settle(
        &self,
        subject: &str,
        p: &Policy,
        id: u64,
        ask: Ask,
        actual: Option<(Micros, u64)>,
        now_ms: u64,
    ) {
        let start = self.with(subject, p, now_ms, |l| {
            l.settle(p, id, ask, actual, now_ms);
            l.period_start
        });
        let (spent, tokens) = actual.unwrap_or((0, 0));
        self.append(
            subject,
            start,
            &Totals {
                spent,
                tokens,
                requests: 1,
                rejections: 0,
            },
        );
    }

    /// Every subject seen since the start.
    pub fn subjects(&self) -> Vec<std::sync::Arc<str>> {
        lock(&self.ledgers).keys().cloned().collect()
    }

    pub fn usage(&self, subject: &str, p: &Policy, now_ms: u64) -> Usage {
        self.with(subject, p, now_ms, |l| l.usage(p, now_ms))
    }

    fn append(&self, subject: &str, period: u64, t: &Totals) {
        let Some(j) = &self.journal else { return };
        let text = line(subject, period, t);
        let mut j = lock(j);
        // A full disk loses this line, not the request; the ledger in
        // memory stays right until the restart.
        if j.file.write_all(text.as_bytes()).is_ok() && j.fsync {
            let _ = j.file.sync_data();
        }
    }
}

fn line(s: &str, p: u64, t: &Totals) -> String {
    let l = Line {
        s: s.into(),
        p,
        c: t.spent,
        t: t.tokens,
        r: t.requests,
        x: t.rejections,
    };
    let mut out = serde_json::to_string(&l).unwrap_or_default();
    out.push('\n');
    out
}

/// The journal's totals per subject and period; unreadable lines (a torn
/// last write) are skipped.
fn replay(text: &str) -> HashMap<String, BTreeMap<u64, Totals>> {
    let mut out: HashMap<String, BTreeMap<u64, Totals>> = HashMap::new();
    for l in text.lines() {
        let Ok(l) = serde_json::from_str::<Line>(l) else {
            continue;
        };
        let t = Totals {
            spent: l.c,
            tokens: l.t,
            requests: l.r,
            rejections: l.x,
        };
        out.entry(l.s.into_owned())
            .or_default()
            .entry(l.p)
            .or_default()
            .add(&t);
    }
    out
}
