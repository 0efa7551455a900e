//! Budgets and windows of a fleet in Redis or Valkey: each check is one
//! atomic Lua script, one round trip.
//!
//! Keys, under the `shared.key_prefix`, with the subject as a hash tag so
//! that one subject's keys share a cluster slot:
//!
//! - `key:{S}:p:START`: the period's ledger, a hash of per-instance
//!   fields: `s:I` spent (micro-dollars), `t:I` tokens, `r:I` requests,
//!   `x:I` rejections. Sums over instances are the subject's totals.
//! - `key:{S}:res`: reservations in flight, a sorted set of `ID:COST`
//!   scored by their expiry (ms); `key:{S}:state` field `reserved` sums
//!   their costs. Expired ones are dropped (and their cost freed) by the
//!   next script that touches the subject.
//! - `key:{S}:win`, `key:{S}:wintok`: admissions of the last minute
//!   (scored by time) and their tokens; `state` field `wintok` sums them,
//!   so a check walks the window only when the tokens do not fit.
//!
//! Re-seeding is idempotent: an instance's fields are only ever raised to
//! its own running totals (`max`, never `+`), carried by every script.
//! After Redis lost its data (a restart without persistence) the live
//! instances' totals come back with their next request; a settle that did
//! not reach Redis is carried by the next one; nothing is counted twice.
//! Reservations are renewed while their request runs; a gateway that dies
//! stops renewing and its reservations free within `reservation_ttl`.

use super::{tpm_wait, Ask, Micros, Period, Policy, Refusal, Totals, Usage, WINDOW_MS};
use redis::aio::MultiplexedConnection;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const RESERVE: &str = r"
local now = tonumber(ARGV[1])
local inst = ARGV[10]
local function seed(f, v)
  local cur = tonumber(redis.call('HGET', KEYS[1], f .. inst) or '0')
  if tonumber(v) > cur then redis.call('HSET', KEYS[1], f .. inst, v) end
end
seed('s:', ARGV[11]) seed('t:', ARGV[12]) seed('r:', ARGV[13]) seed('x:', ARGV[14])
local old = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)
for _, m in ipairs(old) do
  redis.call('HINCRBY', KEYS[5], 'reserved', -tonumber(string.match(m, ':(%d+)$')))
end
if #old > 0 then redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now) end
local gone = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now - 60000)
for _, m in ipairs(gone) do
  redis.call('HINCRBY', KEYS[5], 'wintok', -tonumber(redis.call('HGET', KEYS[4], m) or '0'))
  redis.call('HDEL', KEYS[4], m)
end
if #gone > 0 then redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - 60000) end
local function reject(...)
  redis.call('HINCRBY', KEYS[1], 'x:' .. inst, 1)
  return {...}
end
local conc = tonumber(ARGV[8])
if conc > 0 and redis.call('ZCARD', KEYS[2]) >= conc then return reject(2, 'concurrent', 1000) end
local rpm = tonumber(ARGV[6])
local n = redis.call('ZCARD', KEYS[3])
if rpm > 0 and n >= rpm then
  local t = redis.call('ZRANGE', KEYS[3], n - rpm, n - rpm, 'WITHSCORES')
  return reject(2, 'rpm', math.max(1, tonumber(t[2]) + 60000 - now))
end
local tpm = tonumber(ARGV[7])
local used = tonumber(redis.call('HGET', KEYS[5], 'wintok') or '0')
if tpm > 0 and used > 0 and used + tonumber(ARGV[4]) > tpm then
  local w = redis.call('ZRANGE', KEYS[3], 0, -1, 'WITHSCORES')
  local out = {3}
  for i = 1, #w, 2 do
    out[#out + 1] = w[i + 1]
    out[#out + 1] = redis.call('HGET', KEYS[4], w[i]) or '0'
  end
  return reject(unpack(out))
end
local limit = tonumber(ARGV[5])
local cost = tonumber(ARGV[3])
local reserved = tonumber(redis.call('HGET', KEYS[5], 'reserved') or '0')
if limit >= 0 then
  local spent = 0
  local h = redis.call('HGETALL', KEYS[1])
  for i = 1, #h, 2 do
    if string.sub(h[i], 1, 2) == 's:' then spent = spent + tonumber(h[i + 1]) end
  end
  if spent + reserved + cost > limit then return reject(1, spent, reserved) end
end
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[9]), ARGV[2] .. ':' .. ARGV[3])
redis.call('HINCRBY', KEYS[5], 'reserved', cost)
redis.call('ZADD', KEYS[3], now, ARGV[2])
redis.call('HSET', KEYS[4], ARGV[2], ARGV[4])
redis.call('HINCRBY', KEYS[5], 'wintok', ARGV[4])
redis.call('HINCRBY', KEYS[1], 'r:' .. inst, 1)
if tonumber(ARGV[15]) > 0 then redis.call('EXPIRE', KEYS[1], ARGV[15]) end
redis.call('PEXPIRE', KEYS[2], ARGV[9] + 60000)
redis.call('PEXPIRE', KEYS[3], 120000)
redis.call('PEXPIRE', KEYS[4], 120000)
redis.call('PEXPIRE', KEYS[5], ARGV[9] + 120000)
return {0}
";

const SETTLE: &str = r"
if redis.call('ZREM', KEYS[2], ARGV[1]) == 1 then
  redis.call('HINCRBY', KEYS[5], 'reserved', -tonumber(string.match(ARGV[1], ':(%d+)$')))
end
local was = redis.call('HGET', KEYS[4], ARGV[2])
if was then
  redis.call('HSET', KEYS[4], ARGV[2], ARGV[3])
  redis.call('HINCRBY', KEYS[5], 'wintok', tonumber(ARGV[3]) - tonumber(was))
end
local inst = ARGV[4]
local function seed(f, v)
  local cur = tonumber(redis.call('HGET', KEYS[1], f .. inst) or '0')
  if tonumber(v) > cur then redis.call('HSET', KEYS[1], f .. inst, v) end
end
seed('s:', ARGV[5]) seed('t:', ARGV[6]) seed('r:', ARGV[7]) seed('x:', ARGV[8])
if tonumber(ARGV[9]) > 0 then redis.call('EXPIRE', KEYS[1], ARGV[9]) end
return 0
";

const USAGE: &str = r"
local now = tonumber(ARGV[1])
return {redis.call('HGETALL', KEYS[1]), redis.call('HGETALL', KEYS[2]),
  redis.call('HGET', KEYS[3], 'reserved') or '0',
  redis.call('ZCOUNT', KEYS[4], now, '+inf'),
  redis.call('ZCOUNT', KEYS[5], now - 60000, '+inf'), redis.call('HGET', KEYS[3], 'wintok') or '0'}
";

const RENEW: &str = r"
local n = 0
for i = 1, #KEYS do
  n = n + redis.call('ZADD', KEYS[i], 'XX', 'CH', ARGV[1], ARGV[i + 1])
end
return n
";

/// What to say about the connection in stats and `/ready`.
#[derive(Default)]
struct Health {
    ok: bool,
    last_error: Option<String>,
    failed_at: Option<Instant>,
}

/// One held reservation, for renewal.
struct Held {
    res_key: String,
    member: String,
}

/// The Redis store of one process.
pub struct RedisStore {
    client: redis::Client,
    /// For scrubbing the password out of errors.
    url: String,
    prefix: String,
    /// This process's name in the per-instance fields.
    instance: String,
    timeout: Duration,
    /// How long a reservation lives without renewal.
    pub ttl: Duration,
    conn: tokio::sync::Mutex<Option<MultiplexedConnection>>,
    /// This instance's own totals per (subject, period start).
    mine: Mutex<HashMap<(Arc<str>, u64), Totals>>,
    held: Mutex<HashMap<u64, Held>>,
    health: Mutex<Health>,
    scripts: [redis::Script; 4],
    rt: tokio::runtime::Handle,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// How long a period's ledger is kept after it ends (so that it reads as
/// the previous period).
fn ledger_ttl(period: Period, now_s: u64) -> u64 {
    match period.reset(now_s) {
        Some(end) => end.saturating_sub(now_s) + 32 * 86_400,
        None => 0,
    }
}

impl RedisStore {
    /// A store on the `shared` section's Redis; it renews reservations
    /// on `rt` every third of `ttl`.
    pub fn new(
        shared: &crate::shared::Settings,
        ttl: Duration,
        rt: tokio::runtime::Handle,
    ) -> Result<Arc<RedisStore>, String> {
        let client = shared
            .client()
            .map_err(|e| format!("cannot set up the Redis client: {e}"))?;
        let instance = format!("{:x}{:x}", super::now_ms(), std::process::id());
        let s = Arc::new(RedisStore {
            client,
            url: shared.url().to_owned(),
            prefix: shared.key_prefix.clone(),
            instance,
            timeout: shared.timeout,
            ttl,
            conn: tokio::sync::Mutex::new(None),
            mine: Mutex::default(),
            held: Mutex::default(),
            health: Mutex::new(Health {
                ok: true,
                ..Health::default()
            }),
            scripts: [RESERVE, SETTLE, USAGE, RENEW].map(redis::Script::new),
            rt: rt.clone(),
        });
        let weak = Arc::downgrade(&s);
        rt.spawn(async move {
            let every = ttl / 3;
            loop {
                tokio::time::sleep(every).await;
                let Some(s) = weak.upgrade() else { return };
                s.renew().await;
            }
        });
        Ok(s)
    }

    fn keys(&self, subject: &str, start: u64) -> [String; 5] {
        let b = format!("{}key:{{{subject}}}:", self.prefix);
        [
            format!("{b}p:{start}"),
            format!("{b}res"),
            format!("{b}win"),
            format!("{b}wintok"),
            format!("{b}state"),
        ]
    }

    pub fn health(&self) -> (bool, Option<String>) {
        let h = lock(&self.health);
        (h.ok, h.last_error.clone())
    }

    fn failed(&self, e: String) -> String {
        let mut h = lock(&self.health);
        h.ok = false;
        h.failed_at = Some(Instant::now());
        let e = crate::catalog::shared_settings::scrub(&e, &self.url);
        h.last_error = Some(e.clone());
        e
    }

    /// A connection, or why not; after a failure, no new connection is
    /// tried for half a second (requests fail at once meanwhile).
    async fn conn(&self) -> Result<MultiplexedConnection, String> {
        let mut c = self.conn.lock().await;
        if let Some(c) = c.as_ref() {
            return Ok(c.clone());
        }
        let recent = lock(&self.health)
            .failed_at
            .is_some_and(|t| t.elapsed() < Duration::from_millis(500));
        if recent {
            return Err(lock(&self.health)
                .last_error
                .clone()
                .unwrap_or_else(|| "Redis is unreachable".into()));
        }
        let cfg = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(self.timeout)
            .set_response_timeout(self.timeout);
        match tokio::time::timeout(
            self.timeout * 2,
            self.client
                .get_multiplexed_async_connection_with_config(&cfg),
        )
        .await
        {
            Ok(Ok(conn)) => {
                *c = Some(conn.clone());
                Ok(conn)
            }
            Ok(Err(e)) => Err(self.failed(format!("connect: {e}"))),
            Err(_) => Err(self.failed("connect: no answer in time".into())),
        }
    }

    /// Runs a script invocation with the timeout; a failure drops the
    /// connection. A connection that broke while idle (Redis restarted) is
    /// replaced once at once (a reservation that did run twice is never
    /// renewed and expires).
    async fn run<T: redis::FromRedisValue>(
        &self,
        inv: redis::ScriptInvocation<'_>,
    ) -> Result<T, String> {
        let cached = self.conn.lock().await.is_some();
        let mut r = self.once(&inv).await;
        if cached && matches!(&r, Err((Some(true), _))) {
            *self.conn.lock().await = None;
            r = self.once(&inv).await;
        }
        match r {
            Ok(v) => {
                lock(&self.health).ok = true;
                Ok(v)
            }
            // Connecting records its own failure.
            Err((None, e)) => Err(e),
            Err((Some(_), e)) => {
                *self.conn.lock().await = None;
                Err(self.failed(e))
            }
        }
    }

    /// One try: the answer, or (whether the connection broke, `None` when
    /// there was none, why).
    async fn once<T: redis::FromRedisValue>(
        &self,
        inv: &redis::ScriptInvocation<'_>,
    ) -> Result<T, (Option<bool>, String)> {
        let mut conn = self.conn().await.map_err(|e| (None, e))?;
        match tokio::time::timeout(self.timeout, inv.invoke_async::<T>(&mut conn)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err((
                Some(e.is_io_error() || e.is_connection_dropped() || e.is_unrecoverable_error()),
                format!("{e}"),
            )),
            Err(_) => Err((
                Some(false),
                format!("no answer within {} ms", self.timeout.as_millis()),
            )),
        }
    }

    fn mine(&self, subject: &Arc<str>, start: u64, f: impl FnOnce(&mut Totals)) -> Totals {
        let mut m = lock(&self.mine);
        let t = m.entry((subject.clone(), start)).or_default();
        f(t);
        *t
    }

    pub async fn reserve(
        &self,
        subject: &Arc<str>,
        p: &Policy,
        ask: Ask,
        id: u64,
        now_ms: u64,
    ) -> Result<(), Refusal> {
        let period = p.budget.map_or(Period::Total, |b| b.1);
        let now_s = now_ms / 1000;
        let start = period.start(now_s);
        let mine = self.mine(subject, start, |_| {});
        let keys = self.keys(subject, start);
        let mut inv = self.scripts[0].prepare_invoke();
        for k in &keys {
            inv.key(k);
        }
        let limit = p.budget.map_or(-1, |b| b.0);
        inv.arg(now_ms)
            .arg(id)
            .arg(ask.cost)
            .arg(ask.tokens)
            .arg(limit);
        inv.arg(p.rpm.unwrap_or(0))
            .arg(p.tpm.unwrap_or(0))
            .arg(p.concurrent.unwrap_or(0));
        inv.arg(self.ttl.as_millis() as u64).arg(&self.instance);
        inv.arg(mine.spent)
            .arg(mine.tokens)
            .arg(mine.requests)
            .arg(mine.rejections);
        inv.arg(ledger_ttl(period, now_s));
        let answer: Vec<redis::Value> = match self.run(inv).await {
            Ok(v) => v,
            Err(e) => {
                // Fail-open admissions count here and reach Redis later.
                self.mine(subject, start, |t| t.requests += 1);
                return Err(Refusal::Unavailable(e));
            }
        };
        let r = read_answer(&answer, p, ask, now_ms);
        self.mine(subject, start, |t| match r {
            Ok(()) => t.requests += 1,
            Err(_) => t.rejections += 1,
        });
        if r.is_ok() {
            let res_key = keys[1].clone();
            lock(&self.held).insert(
                id,
                Held {
                    res_key,
                    member: format!("{id}:{}", ask.cost),
                },
            );
        }
        r
    }

    /// Ends a reservation in the background (the caller's answer does not
    /// wait); a settle that fails is carried by the next script.
    #[allow(clippy::too_many_arguments)]
    pub fn settle(
        self: &Arc<Self>,
        subject: &Arc<str>,
        p: &Policy,
        id: u64,
        ask: Ask,
        actual: Option<(Micros, u64)>,
        degraded: bool,
        now_ms: u64,
    ) {
        let period = p.budget.map_or(Period::Total, |b| b.1);
        let now_s = now_ms / 1000;
        let start = period.start(now_s);
        let (cost, tokens) = actual.unwrap_or((0, 0));
        let mine = self.mine(subject, start, |t| {
            t.spent += cost;
            t.tokens += tokens;
        });
        lock(&self.held).remove(&id);
        let keys = self.keys(subject, start);
        let ttl = ledger_ttl(period, now_s);
        let me = self.clone();
        let _ = degraded;
        self.rt.spawn(async move {
            let mut inv = me.scripts[1].prepare_invoke();
            for k in &keys {
                inv.key(k);
            }
            inv.arg(format!("{id}:{}", ask.cost))
                .arg(id)
                .arg(tokens)
                .arg(&me.instance);
            inv.arg(mine.spent)
                .arg(mine.tokens)
                .arg(mine.requests)
                .arg(mine.rejections)
                .arg(ttl);
            let _ = me.run::<i64>(inv).await;
        });
    }

    /// Extends every held reservation's expiry; one script.
    async fn renew(&self) {
        let held: Vec<(String, String)> = lock(&self.held)
            .values()
            .map(|h| (h.res_key.clone(), h.member.clone()))
            .collect();
        if held.is_empty() {
            return;
        }
        let mut inv = self.scripts[3].prepare_invoke();
        inv.arg(super::now_ms() + self.ttl.as_millis() as u64);
        for (k, m) in &held {
            inv.key(k).arg(m);
        }
        let _ = self.run::<i64>(inv).await;
    }

    pub async fn usage(&self, subject: &str, p: &Policy, now_ms: u64) -> Result<Usage, String> {
        let period = p.budget.map_or(Period::Total, |b| b.1);
        let now_s = now_ms / 1000;
        let start = period.start(now_s);
        let keys = self.keys(subject, start);
        let prev = period
            .previous_start(now_s)
            .map(|s| self.keys(subject, s)[0].clone());
        let prev = prev.unwrap_or_else(|| format!("{}-none", keys[0]));
        let mut inv = self.scripts[2].prepare_invoke();
        inv.key(&keys[0])
            .key(&prev)
            .key(&keys[4])
            .key(&keys[1])
            .key(&keys[2]);
        inv.arg(now_ms);
        type Answer = (
            HashMap<String, i64>,
            HashMap<String, i64>,
            i64,
            u64,
            u64,
            i64,
        );
        let (cur, prev, reserved, in_flight, window, tokens): Answer = self.run(inv).await?;
        Ok(Usage {
            current: sum(&cur),
            previous: sum(&prev),
            reserved: reserved.max(0),
            in_flight,
            window_requests: window,
            window_tokens: tokens.max(0) as u64,
            period_start: start,
        })
    }
}

/// The totals of a ledger hash (per-instance fields summed).
fn sum(h: &HashMap<String, i64>) -> Totals {
    let mut t = Totals::default();
    for (k, &v) in h {
        match k.get(..2) {
            Some("s:") => t.spent += v,
            Some("t:") => t.tokens += v.max(0) as u64,
            Some("r:") => t.requests += v.max(0) as u64,
            Some("x:") => t.rejections += v.max(0) as u64,
            _ => {}
        }
    }
    t
}

fn int(v: Option<&redis::Value>) -> i64 {
    match v {
        Some(redis::Value::Int(n)) => *n,
        Some(redis::Value::BulkString(b)) => std::str::from_utf8(b)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0),
        _ => 0,
    }
}

/// The reserve script's answer as a result.
fn read_answer(a: &[redis::Value], p: &Policy, ask: Ask, now_ms: u64) -> Result<(), Refusal> {
    match int(a.first()) {
        0 => Ok(()),
        1 => {
            let (limit, period) = p.budget.unwrap_or((0, Period::Total));
            Err(Refusal::Budget {
                limit,
                spent: int(a.get(1)),
                reserved: int(a.get(2)),
                asked: ask.cost,
                period,
                reset: period.reset(now_ms / 1000),
            })
        }
        2 => {
            let what = match a.get(1) {
                Some(redis::Value::BulkString(b)) if b == b"rpm" => "rpm",
                _ => "concurrent",
            };
            let max = if what == "rpm" { p.rpm } else { p.concurrent }.unwrap_or(0);
            Err(Refusal::Rate {
                limit: what,
                max,
                retry_after_ms: int(a.get(2)).max(1) as u64,
            })
        }
        _ => {
            let w: Vec<(u64, u64)> = a[1..]
                .chunks(2)
                .map(|c| (int(c.first()) as u64, int(c.get(1)) as u64))
                .collect();
            let max = p.tpm.unwrap_or(0);
            let retry_after_ms = tpm_wait(&w, max, ask.tokens, now_ms).unwrap_or(WINDOW_MS);
            Err(Refusal::Rate {
                limit: "tpm",
                max,
                retry_after_ms,
            })
        }
    }
}
