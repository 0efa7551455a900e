//! The background task: one multiplexed connection for commands, one
//! subscription for hard signals, a sync every `sync_ms`, reconnection
//! with backoff. Every Redis call has a timeout; any failure drops to
//! local-only health until a reconnect succeeds.

use super::{Aggregate, Overlay, Signal};
use futures_util::StreamExt;
use redis::aio::MultiplexedConnection;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedReceiver;

/// Sets the Retry-After key unless a longer one is already there, and
/// announces it.
const RETRY_AFTER: &str = r"
local left = redis.call('PTTL', KEYS[1])
if left < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])
  redis.call('PUBLISH', ARGV[2], ARGV[3])
  return 1
end
return 0";

/// Records a vote; ejects fleet-wide (naming the voter as the prober) when
/// the quorum is reached, or re-arms an ejection whose probe by this
/// instance failed.
const VOTE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('PEXPIRE', KEYS[1], window)
local cur = redis.call('GET', KEYS[2])
local eject = (cur == ARGV[1])
if not cur and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then eject = true end
if eject then
  redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[4])
  redis.call('PUBLISH', ARGV[5], cjson.encode({k = 'ej', ep = ARGV[6], ms = tonumber(ARGV[4]), from = ARGV[1]}))
  return 1
end
return 0";

/// Withdraws this instance's vote; ends a fleet ejection and announces it.
const RECOVER: &str = r"
redis.call('ZREM', KEYS[2], ARGV[1])
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('DEL', KEYS[1], KEYS[2])
  redis.call('PUBLISH', ARGV[2], ARGV[3])
  return 1
end
return 0";

/// Holds exactly `want` slots (as many as are free) for this instance,
/// members `me#0..`, each expiring `lease` ms from now. Returns
/// {granted, held by others}.
const LEASE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local me, want, cap = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local mine = 0
while mine < cap and redis.call('ZSCORE', KEYS[1], me .. '#' .. mine) do mine = mine + 1 end
local others = redis.call('ZCARD', KEYS[1]) - mine
local grant = math.max(0, math.min(want, cap - others))
for i = 0, grant - 1 do redis.call('ZADD', KEYS[1], now + tonumber(ARGV[4]), me .. '#' .. i) end
for i = grant, mine - 1 do redis.call('ZREM', KEYS[1], me .. '#' .. i) end
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[4]) * 2)
return {grant, others}";

/// A message on the channel.
#[derive(Serialize, Deserialize, Debug)]
struct Msg {
    /// `ra` (Retry-After), `ej` (fleet ejection), `clear` (ejection over).
    k: String,
    ep: String,
    #[serde(default)]
    ms: u64,
    from: String,
}

/// One endpoint in an instance's pushed aggregates (short names: this is
/// written every sync by every instance).
#[derive(Serialize, Deserialize, Debug, Default)]
struct Agg {
    #[serde(skip_serializing_if = "Option::is_none")]
    ft: Option<f64>,
    #[serde(default)]
    ftn: u64,
    /// Complete-response latency (non-streaming) and its samples.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rt: Option<f64>,
    #[serde(default)]
    rtn: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    tp: Option<f64>,
    #[serde(default)]
    tpn: u64,
    #[serde(default)]
    inf: u32,
    #[serde(default)]
    req: u64,
    #[serde(default)]
    fail: u64,
    /// Failures by class.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    fk: super::FailureClasses,
    /// Recent values behind the percentile cutoffs, rounded to 0.1:
    /// first-token ms, response ms, output tokens/s. Older instances
    /// neither write nor read them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    rft: Vec<f32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    rrt: Vec<f32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    rtp: Vec<f32>,
}

/// Rounded to 0.1: a shorter push, and no precision percentiles need.
fn compact(v: &[f32]) -> Vec<f32> {
    v.iter().map(|x| (x * 10.0).round() / 10.0).collect()
}

#[derive(Serialize, Deserialize, Debug, Default)]
struct Push {
    eps: BTreeMap<String, Agg>,
}

struct Scripts {
    retry_after: redis::Script,
    vote: redis::Script,
    recover: redis::Script,
    lease: redis::Script,
}

/// Everything the task owns.
struct Task<A> {
    o: Arc<Overlay>,
    rx: UnboundedReceiver<Signal>,
    aggregate: A,
    /// Endpoint keys (`model|id`), by catalog index, and back.
    keys: Vec<String>,
    index: HashMap<String, usize>,
    scripts: Scripts,
    /// Retry-Afters heard while disconnected: pushed on reconnect.
    pending: Vec<(usize, Instant)>,
    /// Per endpoint: its request count and when it was last busy (for
    /// holding a spare fleet slot only while it is in use).
    activity: Vec<(u64, Option<Instant>)>,
}

type Res<T> = Result<T, String>;

/// Runs the sync task until the runtime shuts down. `keys` names each
/// catalog endpoint across instances (`model|endpoint id`); `aggregate`
/// reads this instance's health.
pub(crate) async fn run<A>(
    o: Arc<Overlay>,
    rx: UnboundedReceiver<Signal>,
    keys: Vec<String>,
    aggregate: A,
) where
    A: Fn(usize, Instant) -> Aggregate + Send + Sync + 'static,
{
    let index = keys
        .iter()
        .cloned()
        .enumerate()
        .map(|(i, k)| (k, i))
        .collect();
    let mut t = Task {
        o,
        rx,
        aggregate,
        keys,
        index,
        scripts: Scripts {
            retry_after: redis::Script::new(RETRY_AFTER),
            vote: redis::Script::new(VOTE),
            recover: redis::Script::new(RECOVER),
            lease: redis::Script::new(LEASE),
        },
        pending: Vec::new(),
        activity: Vec::new(),
    };
    t.activity = vec![(0, None); t.keys.len()];
    let client = match t.o.settings.client() {
        Ok(c) => c,
        Err(e) => {
            t.o.failed(&format!("cannot set up the Redis client: {e}"));
            return;
        }
    };
    let min = Duration::from_millis(100);
    let max = (t.o.settings.sync * 2).clamp(Duration::from_secs(1), Duration::from_secs(5));
    let mut backoff = min;
    let mut ever = false;
    loop {
        let err = t.session(&client, &mut ever, &mut backoff, min).await;
        t.o.failed(&err);
        let wake = Instant::now() + backoff;
        while let Ok(Some(s)) = tokio::time::timeout_at(wake.into(), t.rx.recv()).await {
            t.offline(s);
        }
        backoff = (backoff * 2).min(max);
    }
}

/// Runs `f` with the configured timeout; errors become text.
async fn timed<T, E: std::fmt::Display>(
    d: Duration,
    what: &str,
    f: impl Future<Output = Result<T, E>>,
) -> Res<T> {
    match tokio::time::timeout(d, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(format!("{what}: {e}")),
        Err(_) => Err(format!("{what}: no answer within {} ms", d.as_millis())),
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl<A> Task<A>
where
    A: Fn(usize, Instant) -> Aggregate + Send + Sync + 'static,
{
    fn key(&self, kind: &str, e: usize) -> String {
        format!("{}{kind}:{}", self.o.settings.key_prefix, self.keys[e])
    }

    fn channel(&self) -> String {
        format!("{}events", self.o.settings.key_prefix)
    }

    /// Connects, then syncs and relays signals until something fails;
    /// returns why.
    async fn session(
        &mut self,
        client: &redis::Client,
        ever: &mut bool,
        backoff: &mut Duration,
        min: Duration,
    ) -> String {
        let to = self.o.settings.timeout;
        let cfg = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(to)
            .set_response_timeout(to);
        let mut conn = match timed(
            to * 2,
            "connect",
            client.get_multiplexed_async_connection_with_config(&cfg),
        )
        .await
        {
            Ok(c) => c,
            Err(e) => return e,
        };
        let mut pubsub = match timed(to * 2, "subscribe", client.get_async_pubsub()).await {
            Ok(p) => p,
            Err(e) => return e,
        };
        if let Err(e) = timed(to, "subscribe", pubsub.subscribe(self.channel())).await {
            return e;
        }
        let mut msgs = pubsub.into_on_message();
        if *ever {
            self.o.connected_again();
        }
        *ever = true;
        if let Err(e) = self.flush_pending(&mut conn).await {
            return e;
        }
        if let Err(e) = self.sync(&mut conn).await {
            return e;
        }
        *backoff = min;
        let mut tick = tokio::time::interval(self.o.settings.sync);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            let r = tokio::select! {
                _ = tick.tick() => self.sync(&mut conn).await,
                s = self.rx.recv() => match s {
                    Some(s) => self.push(&mut conn, s).await,
                    None => std::future::pending().await,
                },
                m = msgs.next() => match m {
                    Some(m) => { self.heard(&m); Ok(()) }
                    None => Err("the subscription connection closed".into()),
                },
            };
            if let Err(e) = r {
                return e;
            }
        }
    }

    /// A signal while disconnected: the local circuit already acts on it;
    /// keep Retry-Afters to share once connected.
    fn offline(&mut self, s: Signal) {
        if let Signal::RetryAfter(e, d) = s {
            self.pending.push((e, Instant::now() + d));
        }
    }

    async fn flush_pending(&mut self, conn: &mut MultiplexedConnection) -> Res<()> {
        let now = Instant::now();
        for (e, until) in std::mem::take(&mut self.pending) {
            if until > now {
                self.push(conn, Signal::RetryAfter(e, until - now)).await?;
            }
        }
        Ok(())
    }

    fn msg(&self, k: &str, e: usize, ms: u64) -> String {
        let m = Msg {
            k: k.into(),
            ep: self.keys[e].clone(),
            ms,
            from: self.o.instance.clone(),
        };
        serde_json::to_string(&m).unwrap_or_default()
    }

    /// Shares one hard signal now.
    async fn push(&mut self, conn: &mut MultiplexedConnection, s: Signal) -> Res<()> {
        let to = self.o.settings.timeout;
        let me = self.o.instance.clone();
        match s {
            Signal::RetryAfter(e, d) => {
                let ms = (d.as_millis() as u64).max(1);
                let mut inv = self.scripts.retry_after.key(self.key("ra", e));
                inv.arg(ms).arg(self.channel()).arg(self.msg("ra", e, ms));
                timed(to, "retry-after", inv.invoke_async::<i64>(conn)).await?;
            }
            Signal::Ejected(e, d) => {
                let ms = (d + self.o.settings.probe_grace()).as_millis() as u64;
                let mut inv = self.scripts.vote.key(self.key("votes", e));
                inv.key(self.key("ej", e))
                    .arg(&me)
                    .arg(self.o.settings.eject_window.as_millis() as u64)
                    .arg(self.o.settings.eject_quorum)
                    .arg(ms)
                    .arg(self.channel())
                    .arg(&self.keys[e]);
                timed(to, "ejection vote", inv.invoke_async::<i64>(conn)).await?;
            }
            Signal::Recovered(e) => {
                let mut inv = self.scripts.recover.key(self.key("ej", e));
                inv.key(self.key("votes", e))
                    .arg(&me)
                    .arg(self.channel())
                    .arg(self.msg("clear", e, 0));
                timed(to, "recovery", inv.invoke_async::<i64>(conn)).await?;
                // Our own clear message comes back on the channel too.
            }
            Signal::Demand(e) => self.lease(conn, e, Instant::now()).await?,
            Signal::Release(done) => {
                let _ = self.release(conn).await;
                let _ = done.send(());
                // Nothing more until the runtime stops: a sync now would
                // take slots again.
                std::future::pending::<()>().await;
            }
        }
        Ok(())
    }

    /// A message from the channel (our own ones included).
    fn heard(&self, m: &redis::Msg) {
        let Ok(m) = serde_json::from_slice::<Msg>(m.get_payload_bytes()) else {
            return;
        };
        let Some(&e) = self.index.get(&m.ep) else {
            return;
        };
        let until = Instant::now() + Duration::from_millis(m.ms);
        let mine = m.from == self.o.instance;
        self.o.with_remote(e, |r| match m.k.as_str() {
            "ra" if !mine => {
                r.rate_limited_until = Some(r.rate_limited_until.map_or(until, |t| t.max(until)))
            }
            // The instance that completed the quorum probes; it follows
            // its own circuit.
            "ej" if !mine => r.ejected_until = Some(until),
            "clear" => r.ejected_until = None,
            _ => {}
        });
    }

    /// Pushes this instance's aggregates, pulls everyone else's, reads the
    /// hard-signal keys, renews leases.
    async fn sync(&mut self, conn: &mut MultiplexedConnection) -> Res<()> {
        let to = self.o.settings.timeout;
        let now = Instant::now();
        let me = self.o.instance.clone();
        let p = &self.o.settings.key_prefix;
        let push = Push {
            eps: (0..self.keys.len())
                .map(|e| (self.keys[e].clone(), self.agg(e, now)))
                .collect(),
        };
        let body = serde_json::to_string(&push).unwrap_or_default();
        let ttl = (self.o.settings.sync * 3).as_millis() as u64;
        let members = format!("{p}instances");
        let (ids,): (Vec<String>,) = timed(
            to,
            "sync",
            redis::pipe()
                .cmd("SET")
                .arg(format!("{p}agg:{me}"))
                .arg(body)
                .arg("PX")
                .arg(ttl)
                .ignore()
                .cmd("ZADD")
                .arg(&members)
                .arg(now_ms())
                .arg(&me)
                .ignore()
                .cmd("ZREMRANGEBYSCORE")
                .arg(&members)
                .arg("-inf")
                .arg(now_ms().saturating_sub(3_600_000))
                .ignore()
                .cmd("ZRANGE")
                .arg(&members)
                .arg(0)
                .arg(-1)
                .query_async(conn),
        )
        .await?;
        let others: Vec<String> = ids.into_iter().filter(|i| *i != me).collect();
        let blobs: Vec<Option<String>> = if others.is_empty() {
            Vec::new()
        } else {
            let keys: Vec<String> = others.iter().map(|i| format!("{p}agg:{i}")).collect();
            timed(to, "sync", redis::cmd("MGET").arg(keys).query_async(conn)).await?
        };
        let pushes: Vec<Push> = blobs
            .iter()
            .flatten()
            .filter_map(|b| serde_json::from_str(b).ok())
            .collect();
        self.merge(&pushes, now);
        self.pull_hard(conn, now).await?;
        for e in 0..self.keys.len() {
            if self.o.settings.fleet_cap[e].is_some() {
                self.lease(conn, e, now).await?;
            }
        }
        self.o.synced(Instant::now(), 1 + pushes.len() as u32);
        Ok(())
    }

    /// This instance's push for endpoint `e`.
    fn agg(&self, e: usize, now: Instant) -> Agg {
        let a = (self.aggregate)(e, now);
        let [rft, rrt, rtp] = a.recent.each_ref().map(|v| compact(v));
        Agg {
            ft: a.first_token_ms,
            ftn: a.first_token_samples,
            rt: a.response_ms,
            rtn: a.response_samples,
            tp: a.throughput,
            tpn: a.throughput_samples,
            inf: a.in_flight,
            req: a.requests,
            fail: a.failures,
            fk: self.o.failure_classes(e),
            rft,
            rrt,
            rtp,
        }
    }

    /// Folds the other instances' aggregates into the overlay.
    fn merge(&self, pushes: &[Push], now: Instant) {
        let fresh = now + self.o.settings.sync * 3;
        for (e, key) in self.keys.iter().enumerate() {
            let (mut ft, mut ftw, mut tp, mut tpw) = (0.0, 0.0, 0.0, 0.0);
            let (mut rt, mut rtw) = (0.0, 0.0);
            let (mut inf, mut req, mut fail, mut n) = (0u32, 0u64, 0u64, 0u32);
            let mut classes = super::FailureClasses::new();
            let mut recent: [Vec<f32>; 3] = Default::default();
            for a in pushes.iter().filter_map(|p| p.eps.get(key)) {
                n += 1;
                for (pool, vals) in recent.iter_mut().zip([&a.rft, &a.rrt, &a.rtp]) {
                    let room = super::MAX_REMOTE_RECENT.saturating_sub(pool.len());
                    let ok = vals.iter().filter(|x| x.is_finite() && **x >= 0.0);
                    pool.extend(ok.take(room));
                }
                if let Some(x) = a.ft.filter(|x| x.is_finite() && *x >= 0.0) {
                    let w = (a.ftn.max(1) as f64).min(super::MAX_WEIGHT);
                    ft += x * w;
                    ftw += w;
                }
                if let Some(x) = a.rt.filter(|x| x.is_finite() && *x >= 0.0) {
                    let w = (a.rtn.max(1) as f64).min(super::MAX_WEIGHT);
                    rt += x * w;
                    rtw += w;
                }
                if let Some(x) = a.tp.filter(|x| x.is_finite() && *x > 0.0) {
                    let w = (a.tpn.max(1) as f64).min(super::MAX_WEIGHT);
                    tp += x * w;
                    tpw += w;
                }
                inf = inf.saturating_add(a.inf);
                req = req.saturating_add(a.req);
                fail = fail.saturating_add(a.fail);
                for (k, v) in &a.fk {
                    let c = classes.entry(k.clone()).or_insert(0);
                    *c = c.saturating_add(*v);
                }
            }
            self.o.with_remote(e, |r| {
                r.first_token = (ftw > 0.0).then(|| (ft / ftw, ftw));
                r.response = (rtw > 0.0).then(|| (rt / rtw, rtw));
                r.throughput = (tpw > 0.0).then(|| (tp / tpw, tpw));
                r.recent = recent;
                r.in_flight = inf;
                r.requests = req;
                r.failures = fail;
                r.failure_classes = classes;
                r.instances = n;
                r.fresh_until = Some(fresh);
            });
        }
    }

    /// Reads the Retry-After and ejection keys (for what the channel missed:
    /// instances that started later, messages lost in a reconnect).
    async fn pull_hard(&self, conn: &mut MultiplexedConnection, now: Instant) -> Res<()> {
        let mut pipe = redis::pipe();
        for e in 0..self.keys.len() {
            pipe.cmd("PTTL").arg(self.key("ra", e));
            pipe.cmd("GET").arg(self.key("ej", e));
            pipe.cmd("PTTL").arg(self.key("ej", e));
        }
        let vals: Vec<redis::Value> =
            timed(self.o.settings.timeout, "sync", pipe.query_async(conn)).await?;
        let me = &self.o.instance;
        for (e, v) in vals.chunks(3).enumerate() {
            let ra: i64 = redis::from_redis_value(&v[0]).unwrap_or(-2);
            let holder: Option<String> = redis::from_redis_value(&v[1]).unwrap_or(None);
            let ej: i64 = redis::from_redis_value(&v[2]).unwrap_or(-2);
            let at = |ms: i64| now + Duration::from_millis(ms as u64);
            self.o.with_remote(e, |r| {
                if ra > 0 {
                    let t = at(ra);
                    r.rate_limited_until = Some(r.rate_limited_until.map_or(t, |x| x.max(t)));
                }
                r.ejected_until = match holder {
                    Some(h) if h != *me && ej > 0 => Some(at(ej)),
                    _ => None,
                };
            });
        }
        Ok(())
    }

    /// Gives back every slot and the aggregates key; the sync task ends with
    /// the engine's runtime right after.
    async fn release(&mut self, conn: &mut MultiplexedConnection) -> Res<()> {
        let to = self.o.settings.timeout;
        for e in 0..self.keys.len() {
            let Some(cap) = self.o.settings.fleet_cap[e] else {
                continue;
            };
            self.o.with_remote(e, |r| r.leases = 0);
            let mut inv = self.scripts.lease.key(self.key("slots", e));
            inv.arg(&self.o.instance)
                .arg(0)
                .arg(cap)
                .arg(self.o.settings.lease.as_millis() as u64);
            timed(to, "release", inv.invoke_async::<(u32, u32)>(conn)).await?;
        }
        let p = &self.o.settings.key_prefix;
        timed(
            to,
            "release",
            redis::pipe()
                .cmd("DEL")
                .arg(format!("{p}agg:{}", self.o.instance))
                .ignore()
                .cmd("ZREM")
                .arg(format!("{p}instances"))
                .arg(&self.o.instance)
                .ignore()
                .exec_async(conn),
        )
        .await
    }

    /// Holds as many fleet slots as this instance uses, plus what refused
    /// requests asked for, plus one spare while the endpoint was busy within
    /// the lease time; releases the rest.
    async fn lease(&mut self, conn: &mut MultiplexedConnection, e: usize, now: Instant) -> Res<()> {
        let Some(cap) = self.o.settings.fleet_cap[e] else {
            return Ok(());
        };
        let a = (self.aggregate)(e, now);
        let used = a.in_flight;
        let demand = self.o.take_demand(e);
        let act = &mut self.activity[e];
        if used > 0 || demand > 0 || a.requests != act.0 {
            *act = (a.requests, Some(now));
        }
        let busy = act
            .1
            .is_some_and(|t| now.saturating_duration_since(t) < self.o.settings.lease);
        let target = (used + u32::from(busy) + demand).min(cap);
        // Shrink the local limit before releasing anything in Redis, so no
        // request starts on a slot that is being given back.
        let usable = self.o.with_remote(e, |r| {
            r.leases = r.leases.min(target.max(used));
            r.leases
        });
        let want = target.max(usable);
        let mut inv = self.scripts.lease.key(self.key("slots", e));
        inv.arg(&self.o.instance)
            .arg(want)
            .arg(cap)
            .arg(self.o.settings.lease.as_millis() as u64);
        let (grant, _others): (u32, u32) =
            timed(self.o.settings.timeout, "lease", inv.invoke_async(conn)).await?;
        self.o.with_remote(e, |r| r.leases = grant);
        Ok(())
    }
}

#[cfg(test)]
mod recent_tests {
    use super::*;

    #[test]
    fn pushes_with_and_without_recent_values_read_alike() {
        // An older instance's push has no recent lists.
        let old: Push =
            serde_json::from_str(r#"{"eps": {"a/x": {"ft": 12.5, "ftn": 3}}}"#).expect("old push");
        assert!(old.eps["a/x"].rft.is_empty());
        let new = Agg {
            rft: compact(&[10.04, 250.26]),
            rtp: compact(&[41.0]),
            ..Agg::default()
        };
        let text = serde_json::to_string(&new).expect("json");
        assert_eq!(
            text,
            r#"{"ftn":0,"rtn":0,"tpn":0,"inf":0,"req":0,"fail":0,"rft":[10.0,250.3],"rtp":[41.0]}"#
        );
        let back: Agg = serde_json::from_str(&text).expect("new push");
        assert_eq!(back.rft, vec![10.0, 250.3]);
        assert!(back.rrt.is_empty());
    }
}
