//! Small helpers: percentiles, resident memory, CPU pinning, file limits,
//! a deterministic random generator, and the report (table + JSON).

use serde_json::{json, Map, Value};
use std::time::Duration;

/// Sorts a sample in place and returns it.
pub fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    v
}

/// The `p` quantile (0..=1) of an ascending sample, nearest rank; NaN when empty.
pub fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = (p * (sorted.len() - 1) as f64).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Robust p-quantile difference for paired, interleaved samples: the median
/// over consecutive blocks of `block` pairs of (quantile of a - quantile of b).
/// A burst of outside load lands in a few blocks and moves the median little.
pub fn block_median_diff(a: &[f64], b: &[f64], block: usize, p: f64) -> f64 {
    let n = a.len().min(b.len());
    let mut diffs: Vec<f64> = (0..n / block.max(1))
        .map(|k| {
            let r = k * block..(k + 1) * block;
            pct(&sorted(a[r.clone()].to_vec()), p) - pct(&sorted(b[r].to_vec()), p)
        })
        .collect();
    diffs = sorted(diffs);
    pct(&diffs, 0.5)
}

/// CPU time (user + system) of this process so far, seconds.
pub fn process_cpu_s() -> f64 {
    // SAFETY: getrusage writes a valid rusage struct.
    unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut ru);
        let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        tv(ru.ru_utime) + tv(ru.ru_stime)
    }
}

/// CPU time (user + system) of another process, seconds (`/proc/PID/stat`).
pub fn pid_cpu_s(pid: u32) -> Option<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are 14 and 15.
    let rest = &text[text.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Some(ticks / hz)
}

pub fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        f64::NAN
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

pub fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Rounds for the report (keeps JSON readable).
pub fn r(x: f64, digits: i32) -> f64 {
    if !x.is_finite() {
        return x;
    }
    let m = 10f64.powi(digits);
    (x * m).round() / m
}

/// Resident set size of this process, bytes (`/proc/self/statm`).
pub fn rss_bytes() -> u64 {
    let text = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as u64;
    pages * page
}

/// Bytes the allocator has handed out and not yet freed (glibc `mallinfo2`:
/// arena + mmapped chunks in use); None on other C libraries.
pub fn heap_in_use() -> Option<u64> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallinfo2 has no preconditions and returns a plain struct.
        let m = unsafe { libc::mallinfo2() };
        Some((m.uordblks + m.hblkhd) as u64)
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        None
    }
}

/// Restricts the calling thread (and threads it starts later) to `cpus`.
pub fn pin_current_thread(cpus: &[usize]) -> bool {
    // SAFETY: cpu_set_t is plain data; zeroed is a valid empty set, and the
    // CPU_* helpers only touch that set.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_ZERO(&mut set);
        for &c in cpus {
            libc::CPU_SET(c, &mut set);
        }
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
    }
}

/// Raises the soft RLIMIT_NOFILE to the hard limit; returns (soft, hard).
pub fn raise_nofile() -> (u64, u64) {
    // SAFETY: getrlimit/setrlimit write/read a valid rlimit struct.
    unsafe {
        let mut rl: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) != 0 {
            return (0, 0);
        }
        if rl.rlim_cur < rl.rlim_max {
            let want = libc::rlimit {
                rlim_cur: rl.rlim_max,
                rlim_max: rl.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                rl.rlim_cur = rl.rlim_max;
            }
        }
        (rl.rlim_cur as u64, rl.rlim_max as u64)
    }
}

pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// Online CPUs (not limited by this process's affinity).
pub fn online_cpus() -> usize {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    if n > 0 {
        n as usize
    } else {
        1
    }
}

/// xorshift64*: deterministic, for choosing which requests get a slow reply.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_f64(&mut self) -> f64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// True when an OpenAI stream chunk carries non-empty `delta.content`.
pub fn has_content(chunk: &[u8]) -> bool {
    const KEY: &[u8] = b"\"content\":\"";
    chunk
        .windows(KEY.len())
        .position(|w| w == KEY)
        .is_some_and(|i| chunk.get(i + KEY.len()).is_some_and(|&b| b != b'"'))
}

// ---------------------------------------------------------------- report

/// One line of the table.
pub struct Row {
    pub figure: String,
    pub value: String,
    pub target: String,
    pub pass: Option<bool>,
    /// In the JSON's `checks` (and so in the docs' table).
    pub table: bool,
}

/// One case: named metrics (units in the names) and table rows.
pub struct Case {
    pub name: String,
    pub description: String,
    pub metrics: Map<String, Value>,
    pub rows: Vec<Row>,
    pub notes: Vec<String>,
}

impl Case {
    pub fn new(name: &str, description: &str) -> Case {
        Case {
            name: name.into(),
            description: description.into(),
            metrics: Map::new(),
            rows: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// Records a metric; the key carries its unit (`_us`, `_ms`, `_per_s`, ...).
    pub fn m(&mut self, key: &str, v: impl Into<Value>) {
        let v: Value = v.into();
        let v = match v.as_f64() {
            Some(x) if !x.is_finite() => Value::Null,
            Some(x) if v.is_f64() => json!(r(x, 3)),
            _ => v,
        };
        self.metrics.insert(key.into(), v);
    }

    /// A table row without a target.
    pub fn info(&mut self, figure: &str, value: String) {
        self.rows.push(Row {
            figure: figure.into(),
            value,
            target: String::new(),
            pass: None,
            table: false,
        });
    }

    /// A row without a target that the docs' table shows too: a floor or
    /// baseline that a checked figure is read against.
    pub fn baseline(&mut self, figure: &str, value: String) {
        self.rows.push(Row {
            figure: figure.into(),
            value,
            target: String::new(),
            pass: None,
            table: true,
        });
    }

    /// A table row checked against a target.
    pub fn check(&mut self, figure: &str, value: String, target: &str, pass: bool) {
        self.rows.push(Row {
            figure: figure.into(),
            value,
            target: target.into(),
            pass: Some(pass),
            table: true,
        });
    }

    pub fn note(&mut self, s: impl Into<String>) {
        self.notes.push(s.into());
    }

    pub fn to_json(&self) -> Value {
        let checks: Vec<Value> = self
            .rows
            .iter()
            .filter(|r| r.table)
            .map(|r| json!({"figure": r.figure, "value": r.value, "target": r.target, "pass": r.pass}))
            .collect();
        json!({
            "case": self.name,
            "description": self.description,
            "metrics": self.metrics,
            "checks": checks,
            "notes": self.notes,
        })
    }
}

pub fn print_table(cases: &[Case]) {
    let mut lines: Vec<[String; 4]> = Vec::new();
    for c in cases {
        for (i, r) in c.rows.iter().enumerate() {
            let name = if i == 0 {
                format!("{}: {}", c.name, r.figure)
            } else {
                format!("  {}", r.figure)
            };
            let verdict = match r.pass {
                Some(true) => "pass",
                Some(false) => "MISS",
                None => "",
            };
            lines.push([name, r.value.clone(), r.target.clone(), verdict.into()]);
        }
    }
    let w = |k: usize| {
        lines
            .iter()
            .map(|l| l[k].chars().count())
            .max()
            .unwrap_or(0)
            .max(6)
    };
    let (w0, w1, w2) = (w(0), w(1), w(2));
    println!();
    println!(
        "{:<w0$}  {:>w1$}  {:<w2$}  result",
        "figure", "value", "target"
    );
    println!("{}", "-".repeat(w0 + w1 + w2 + 14));
    for l in &lines {
        println!("{:<w0$}  {:>w1$}  {:<w2$}  {}", l[0], l[1], l[2], l[3]);
    }
    for c in cases {
        for n in &c.notes {
            println!("note [{}]: {}", c.name, n);
        }
    }
}

/// The process's allocator: the system one, counting calls and bytes, so
/// the bench can report allocations per request (llmux's and reqwest's
/// alike: the library is linked into this binary). Two relaxed atomic adds
/// per allocation; every case pays them on both sides of its comparison.
pub struct CountingAlloc;

static ALLOCS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
static ALLOC_BYTES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl CountingAlloc {
    fn count(size: usize) {
        use std::sync::atomic::Ordering::Relaxed;
        ALLOCS.fetch_add(1, Relaxed);
        ALLOC_BYTES.fetch_add(size as u64, Relaxed);
    }
}

// SAFETY: every call is forwarded unchanged to `System`, which upholds the
// GlobalAlloc contract; the counters have no effect on the memory handed out.
unsafe impl std::alloc::GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        Self::count(layout.size());
        std::alloc::System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        Self::count(layout.size());
        std::alloc::System.alloc_zeroed(layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new: usize) -> *mut u8 {
        Self::count(new);
        std::alloc::System.realloc(ptr, layout, new)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        std::alloc::System.dealloc(ptr, layout)
    }
}

/// (allocations, bytes requested) since the process started; a `realloc`
/// counts as one allocation of its new size.
pub fn allocations() -> (u64, u64) {
    use std::sync::atomic::Ordering::Relaxed;
    (ALLOCS.load(Relaxed), ALLOC_BYTES.load(Relaxed))
}
