// llmux dashboard: polls /api/dashboard/state and draws it. No library,
// no inline script (the page's Content-Security-Policy forbids it), no
// innerHTML with data: every value goes in through textContent.
"use strict";

const STATE_URL = "/api/dashboard/state";
const KEY_NAME = "llmux-dashboard-key";
const POLL_MS = 1000;
const SVG = "http://www.w3.org/2000/svg";

const $ = (id) => document.getElementById(id);
let timer = null;

function key() { return sessionStorage.getItem(KEY_NAME); }

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

function ms(v) { return v === null || v === undefined ? "–" : v.toFixed(v < 10 ? 1 : 0) + " ms"; }
function num(v, d) { return v === null || v === undefined ? "–" : v.toFixed(d); }
function usd(v) { return v === null || v === undefined ? "–" : "$" + (v < 0.01 ? v.toPrecision(2) : v.toFixed(4)); }
function time(t) { return new Date(t).toLocaleTimeString(); }

async function poll() {
  clearTimeout(timer);
  const headers = {};
  const k = key();
  if (k) headers["Authorization"] = "Bearer " + k;
  try {
    const r = await fetch(STATE_URL, { headers, cache: "no-store" });
    if (r.status === 401) { showLogin(k ? "that key was refused" : ""); return; }
    if (!r.ok) throw new Error("HTTP " + r.status);
    render(await r.json());
    setStatus("live · " + time(Date.now()), "live");
  } catch (e) {
    setStatus("gateway unreachable (" + e.message + "), retrying", "down");
  }
  timer = setTimeout(poll, POLL_MS);
}

function setStatus(text, cls) { const s = $("status"); s.textContent = text; s.className = "status " + cls; }

function showLogin(error) {
  sessionStorage.removeItem(KEY_NAME);
  $("main").hidden = true;
  $("logout").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = error;
  setStatus("key needed", "down");
}

function render(s) {
  $("login").hidden = true;
  $("main").hidden = false;
  $("logout").hidden = !key();
  $("summary").textContent = s.total_requests + " requests since start · " +
    s.requests_in_flight + " in flight · up " + Math.round(s.uptime_s) + " s";
  renderModels(s.models);
  renderRecent(s.recent);
  renderKeys(s.keys);
  const sec = s.bucket_ms / 1000;
  const series = fill(s);
  const avg = series.map((b) => b.first_token_count ? b.first_token_sum_ms / b.first_token_count : null);
  const max = series.map((b) => b.first_token_count ? b.first_token_max_ms : null);
  chart($("chart-latency"), [avg, max], "ms");
  chart($("chart-rate"), [series.map((b) => b.requests / sec), series.map((b) => b.errors / sec)], "/s");
}

// The whole chart window: the state sends only buckets with requests.
function fill(s) {
  const have = new Map(s.series.map((b) => [b.t_ms, b]));
  const out = [];
  for (let i = 0; i < s.buckets; i++) {
    const t = s.series_start_ms + i * s.bucket_ms;
    out.push(have.get(t) || { t_ms: t, requests: 0, errors: 0, failovers: 0, first_token_sum_ms: 0, first_token_count: 0, first_token_max_ms: 0 });
  }
  return out;
}

const EP_COLS = ["#", "endpoint", "circuit", "first token (live)", "p50 / p90 / p99", "throughput", "errors", "in flight", "served", "price in / out per M", "why here"];

function renderModels(models) {
  const root = $("models");
  root.replaceChildren();
  for (const m of models) {
    const h = el("h3", m.slug);
    const extra = " policy " + m.policy + (m.aliases.length ? " · aliases " + m.aliases.join(", ") : "");
    h.append(el("span", extra, "muted"));
    const t = el("table");
    t.dataset.model = m.slug;
    const hr = el("tr");
    EP_COLS.forEach((c) => hr.append(el("th", c)));
    t.append(el("thead")); t.tHead.append(hr);
    const body = el("tbody");
    for (const e of m.endpoints) body.append(endpointRow(e));
    t.append(body);
    const wrap = el("div", null, "scroll");
    wrap.append(t);
    root.append(h, wrap);
  }
}

function endpointRow(e) {
  const tr = el("tr");
  tr.dataset.endpoint = e.id;
  const l = e.latency;
  const circuit = e.circuit.replace("_", "-") + (e.circuit_open_for_ms ? " (" + Math.ceil(e.circuit_open_for_ms / 1000) + " s)" : "");
  const cells = [
    [e.rank === null ? "–" : e.rank, "num"],
    [e.id + " → " + e.upstream_model, ""],
    [circuit, "circuit circuit-" + e.circuit],
    [ms(e.first_token_ms), "num"],
    [ms(l.p50_ms) + " / " + ms(l.p90_ms) + " / " + ms(l.p99_ms), "num"],
    [e.throughput_tps === null ? "–" : num(e.throughput_tps, 0) + " tok/s", "num"],
    [num(e.error_rate * 100, 0) + " %", "num" + (e.error_rate > 0.2 ? " bad" : "")],
    [e.in_flight, "num"],
    [e.served, "num"],
    ["$" + e.price.prompt + " / $" + e.price.completion, "num"],
    [e.reason + (e.last_error ? " · last error: " + e.last_error : ""), "wrap reason"],
  ];
  for (const [text, cls] of cells) tr.append(el("td", text, cls));
  return tr;
}

function renderRecent(recent) {
  const body = $("recent").tBodies[0];
  body.replaceChildren();
  for (const r of recent) {
    const tr = el("tr", null, r.failover ? "failover" : "");
    tr.dataset.id = r.id;
    tr.append(el("td", time(r.at_ms)), el("td", r.model), el("td", r.key),
      el("td", r.status + " " + r.outcome, r.status < 400 ? "ok" : "bad"),
      el("td", r.endpoint || "none", "served"), el("td", ms(r.first_token_ms), "num"),
      el("td", usd(r.cost_usd), "num"));
    const why = el("td", null, "wrap attempts");
    if (r.failover) {
      const hedged = r.attempts.some((a) => a.outcome === "hedge_lost");
      why.append(el("span", hedged ? "hedged" : "failover", "tag failover"));
    }
    r.attempts.forEach((a, i) => {
      const st = a.status === null ? "" : " " + a.status;
      const text = (i + 1) + ". " + a.endpoint + ": " + a.outcome + st + " after " + ms(a.elapsed_ms) + (a.error ? " (" + a.error + ")" : "");
      why.append(el("span", text, "attempt " + (a.outcome === "success" ? "ok" : "bad")));
    });
    for (const s of r.skipped) why.append(el("span", "skipped " + s.endpoint + ": " + s.reason, "attempt muted"));
    tr.append(why);
    body.append(tr);
  }
}

function renderKeys(keys) {
  const body = $("keys").tBodies[0];
  body.replaceChildren();
  for (const k of keys) {
    const tr = el("tr");
    tr.dataset.key = k.name;
    // Budgets and limits appear when the gateway reports them for a key.
    const limits = ["budget_usd", "spent_usd", "limit", "remaining_usd"].filter((f) => k[f] !== undefined)
      .map((f) => f + " " + JSON.stringify(k[f])).join(" · ");
    tr.append(el("td", k.name), el("td", k.requests, "num"), el("td", k.errors, "num"),
      el("td", usd(k.cost_usd), "num"), el("td", limits || "–", "muted"));
    body.append(tr);
  }
}

function chart(root, series, unit) {
  const W = 600, H = 140, P = 28;
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", "0 0 " + W + " " + H);
  svg.setAttribute("preserveAspectRatio", "none");
  svg.setAttribute("role", "img");
  let top = 0;
  for (const s of series) for (const v of s) if (v !== null && v > top) top = v;
  top = top > 0 ? top * 1.1 : 1;
  const n = series[0].length;
  const x = (i) => P + (W - P - 4) * (n > 1 ? i / (n - 1) : 0);
  const y = (v) => H - 14 - (H - 22) * (v / top);
  const axis = document.createElementNS(SVG, "path");
  axis.setAttribute("d", "M" + P + " 4 V" + (H - 14) + " H" + (W - 4));
  axis.setAttribute("class", "axis");
  svg.append(axis);
  series.forEach((s, k) => {
    let d = "", pen = false;
    s.forEach((v, i) => {
      if (v === null) { pen = false; return; }
      d += (pen ? " L" : " M") + x(i).toFixed(1) + " " + y(v).toFixed(1);
      pen = true;
    });
    const p = document.createElementNS(SVG, "path");
    p.setAttribute("d", d.trim() || "M0 0");
    p.setAttribute("class", "s" + k);
    svg.append(p);
  });
  const label = document.createElementNS(SVG, "text");
  label.setAttribute("x", "2");
  label.setAttribute("y", "12");
  label.textContent = (top >= 10 ? top.toFixed(0) : top.toFixed(1)) + " " + unit;
  svg.append(label);
  root.replaceChildren(svg);
}

document.addEventListener("DOMContentLoaded", () => {
  $("login").addEventListener("submit", (ev) => {
    ev.preventDefault();
    sessionStorage.setItem(KEY_NAME, $("key").value);
    $("key").value = "";
    poll();
  });
  $("logout").addEventListener("click", () => { showLogin(""); clearTimeout(timer); });
  poll();
});
