"""Traces from `llmux serve` (telemetry.otlp), decoded by a collector that
parses OTLP/HTTP protobuf with the published definitions (opentelemetry-proto,
pip): all on 127.0.0.1, in front of the mock fleet (`llmux-fleet`).

Checks: a failover (the caller's W3C traceparent is the parent of the
gateway's HTTP server span, which is the parent of the `chat {model}` client
span with the GenAI attributes, whose children are one span per attempt:
the failed one with its status and error, the served one); a hedge (two
sibling attempt spans, one marked as the hedge, the loser `hedge_lost`); a
cancelled stream (client span `cancelled`, server span 499); the response id
and finish reasons of every caller protocol against every upstream protocol,
streamed and not; refusals by a
gateway key (402 budget, 429 rate limit, 403 model: the request span under
the HTTP span, with the key's name, never its secret) and by the engine's
user_budgets (402); the C ABI's llmux_submit_traced (Python binding's
`traceparent=`, sync and async; bad input refused); no prompt text
without capture_content; a collector that is down costs the requests nothing
visible (they succeed; spans are dropped).
"""

import http.server
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
BIN = os.path.join(ROOT, "target", "debug")
SPANS = []
RESOURCES = []
RAW = []
COLLECTOR = None
LOCK = threading.Lock()
checks = 0


def check(cond, what):
    global checks
    checks += 1
    if not cond:
        raise AssertionError(what)


def value(v):
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [value(x) for x in v.array_value.values]
    return getattr(v, kind)


class Collector(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["content-length"]))
        req = trace_service_pb2.ExportTraceServiceRequest()
        req.ParseFromString(body)
        with LOCK:
            RAW.append(body)
            for rs in req.resource_spans:
                RESOURCES.append({a.key: value(a.value) for a in rs.resource.attributes})
                for ss in rs.scope_spans:
                    for s in ss.spans:
                        SPANS.append({
                            "trace": s.trace_id.hex(), "id": s.span_id.hex(), "parent": s.parent_span_id.hex(),
                            "name": s.name, "kind": s.kind, "start": s.start_time_unix_nano,
                            "end": s.end_time_unix_nano, "status": s.status.code, "message": s.status.message,
                            "attrs": {a.key: value(a.value) for a in s.attributes}, "scope": ss.scope.name,
                            "auth": self.headers.get("x-collector-token"),
                        })
        out = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args):
        pass


def start_fleet():
    cfg = {"servers": [
        {"name": "dead", "behavior": {"status": 500}},
        {"name": "live", "behavior": {"first_token_delay_ms": 5}},
        {"name": "slow", "behavior": {"first_token_delay_ms": 1500}},
        {"name": "drip", "behavior": {"chunks": 50, "chunk_delay_ms": 100}},
    ]}
    p = subprocess.Popen([os.path.join(BIN, "llmux-fleet"), "--config", json.dumps(cfg), "--exit-on-stdin-eof"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    return p, {s["name"]: s["base_url"] for s in json.loads(p.stdout.readline())["servers"]}


def config(urls, otlp):
    prov = lambda n: {"slug": n, "protocol": "openai", "base_url": urls[n] + "/v1", "api_key": "upstream-fake"}
    ep = lambda n, prior: {"provider": n, "upstream_model": "up-" + n, "price": {"prompt": 1.0, "completion": 2.0},
                           "expected_first_token_ms": prior}
    same = [{"slug": "live-" + p, "protocol": p, "base_url": urls["live"], "api_key": "upstream-fake"}
            for p in ("anthropic", "responses", "gemini")]
    by_protocol = [{"slug": "demo/p-" + p, "endpoints": [ep(n, 50)]}
                   for p, n in (("openai", "live"), ("anthropic", "live-anthropic"), ("responses", "live-responses"),
                                ("gemini", "live-gemini"))]
    return {
        "providers": [prov(n) for n in ("dead", "live", "slow", "drip")] + same,
        "models": [
            {"slug": "demo/failover", "endpoints": [ep("dead", 5), ep("live", 50)]},
            {"slug": "demo/hedge", "endpoints": [ep("slow", 5), ep("live", 50)]},
            {"slug": "demo/drip", "endpoints": [ep("drip", 5)]},
        ] + by_protocol,
        "health": {"explore_ratio": 0.0},
        "retry": {"max_retries": 0},
        "telemetry": {"otlp": otlp},
    }


KEYS = {"broke": "sk-trace-broke-7d1f0c", "capped": "sk-trace-capped-93ab11",
        "narrow": "sk-trace-narrow-5e2c44", "open": "sk-trace-open-c81d09"}


def keyed_config(urls, otlp):
    """Gateway keys that refuse (budget spent, one request a minute, one
    model) and engine user_budgets that refuse the user `player-1`."""
    cfg = config(urls, otlp)
    cfg["gateway"] = {"keys": [
        {"env": "TRACE_KEY_BROKE", "name": "broke", "budget": {"usd": 0}},
        {"env": "TRACE_KEY_CAPPED", "name": "capped", "limits": {"rpm": 1}},
        {"env": "TRACE_KEY_NARROW", "name": "narrow", "models": ["demo/hedge"]},
        {"env": "TRACE_KEY_OPEN", "name": "open"},
    ]}
    cfg["user_budgets"] = {"users": {"player-1": {"budget": {"usd": 0}}}}
    return cfg


def start_gateway(cfg, tmp):
    path = os.path.join(tmp, "llmux-%d.json" % len(os.listdir(tmp)))
    with open(path, "w") as f:
        json.dump(cfg, f)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env["OTEL_SERVICE_NAME"] = "llmux-trace-test"
    for name, secret in KEYS.items():
        env["TRACE_KEY_" + name.upper()] = secret
    p = subprocess.Popen([os.path.join(BIN, "llmux"), "serve", "--config", path, "--listen", "127.0.0.1:0",
                          "--log-format", "off"], stdout=subprocess.PIPE, env=env, text=True)
    line = p.stdout.readline().strip()
    check(line.startswith("llmux: listening on "), "gateway did not start: %r" % line)
    return p, line[len("llmux: listening on "):]


def post(base, body, headers=None):
    req = urllib.request.Request(base + "/v1/chat/completions", data=json.dumps(body).encode(),
                                 headers=dict({"content-type": "application/json"}, **(headers or {})))
    try:
        with urllib.request.urlopen(req, timeout=20) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def wait_spans(pred, what, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        with LOCK:
            found = [s for s in SPANS if pred(s)]
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError("no span for %s; spans: %s" % (what, json.dumps(SPANS, indent=1)[:4000]))


def trace_of(trace_id, n, what):
    """The spans of one trace, once there are n."""
    deadline = time.time() + 10
    while time.time() < deadline:
        with LOCK:
            spans = [s for s in SPANS if s["trace"] == trace_id]
        if len(spans) >= n:
            return spans
        time.sleep(0.05)
    raise AssertionError("%s: %d spans of %d in trace %s" % (what, len(spans), n, trace_id))


def failover(base):
    tid, parent = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    status, body = post(base, {"model": "demo/failover", "messages": [{"role": "user", "content": "secret prompt"}]},
                        {"traceparent": "00-%s-%s-01" % (tid, parent)})
    check(status == 200, "failover served")
    spans = trace_of(tid, 4, "failover")
    by = {s["name"]: s for s in spans}
    server = by["POST /v1/chat/completions"]
    check(server["kind"] == trace_pb2.Span.SPAN_KIND_SERVER and server["parent"] == parent,
          "HTTP span is the child of the caller's traceparent: %r" % server)
    check(server["attrs"]["http.response.status_code"] == 200, "server span status")
    chat = by["chat demo/failover"]
    check(chat["kind"] == trace_pb2.Span.SPAN_KIND_CLIENT and chat["parent"] == server["id"],
          "request span is the child of the HTTP span")
    a = chat["attrs"]
    expect = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "live", "gen_ai.request.model": "demo/failover",
              "gen_ai.response.model": "up-live", "llmux.endpoint": "live/default", "llmux.attempts": 2,
              "llmux.outcome": "success", "llmux.hedged": False}
    for k, v in expect.items():
        check(a.get(k) == v, "%s = %r, want %r" % (k, a.get(k), v))
    resp = json.loads(body)
    check(a.get("gen_ai.response.id") == resp["id"], "response id")
    check(a.get("gen_ai.response.finish_reasons") == ["stop"], "finish reasons %r" % a.get("gen_ai.response.finish_reasons"))
    check(a.get("gen_ai.usage.input_tokens") == resp["usage"]["prompt_tokens"], "input tokens")
    check(a.get("gen_ai.usage.output_tokens") == resp["usage"]["completion_tokens"], "output tokens")
    check(a.get("llmux.cost_usd", 0) > 0, "cost")
    check("error.type" not in a and chat["status"] == trace_pb2.Status.STATUS_CODE_OK, "success is not an error")
    check("gen_ai.input.messages" not in a and "secret prompt" not in json.dumps(spans), "no prompt text without capture_content")
    attempts = sorted([s for s in spans if s["parent"] == chat["id"]], key=lambda s: s["attrs"]["llmux.attempt"])
    check(len(attempts) == 2, "one span per attempt")
    dead, live = attempts
    check(dead["attrs"]["llmux.endpoint"] == "dead/default" and dead["attrs"]["http.response.status_code"] == 500
          and dead["attrs"]["error.type"] == "server_error" and dead["status"] == trace_pb2.Status.STATUS_CODE_ERROR
          and "dead" in dead["message"], "failed attempt: %r" % dead)
    check(live["attrs"]["llmux.outcome"] == "success" and live["attrs"]["http.response.status_code"] == 200,
          "served attempt: %r" % live)
    check(chat["start"] <= dead["start"] <= live["start"] <= chat["end"] <= server["end"], "times nest")
    sent = [x["attrs"].get("llmux.request.body_bytes", 0) for x in attempts]
    check(sent[0] > len("secret prompt") and sent[0] == sent[1],
          "request body bytes per attempt (the same body to up-dead and up-live): %r" % sent)
    got = [x["attrs"].get("llmux.response.body_bytes", 0) for x in attempts]
    check(got[0] > 0 and got[1] >= len(body) // 2, "response body bytes per attempt: %r (answer %d bytes)" % (got, len(body)))
    with LOCK:
        check(RESOURCES[-1].get("service.name") == "llmux-trace-test", "OTEL_SERVICE_NAME honoured: %r" % RESOURCES[-1])
        check(RESOURCES[-1].get("deployment.environment") == "test", "resource attributes from the config")
    check(server["auth"] == "t0ken" and server["scope"] == "llmux", "configured headers reach the collector")


def hedge(base):
    status, _ = post(base, {"model": "demo/hedge", "stream": True, "provider": {"hedge": {"delay_ms": 100}},
                            "messages": [{"role": "user", "content": "hi"}]})
    check(status == 200, "hedged request served")
    chat = wait_spans(lambda s: s["name"] == "chat demo/hedge", "hedge")[0]
    check(chat["attrs"]["llmux.hedged"] is True and chat["attrs"]["llmux.endpoint"] == "live/default", "hedged request span")
    attempts = trace_of(chat["trace"], 4, "hedge")
    kids = [s for s in attempts if s["parent"] == chat["id"]]
    check(len(kids) == 2, "two sibling attempt spans: %r" % kids)
    by = {s["attrs"]["llmux.endpoint"]: s for s in kids}
    check(by["slow/default"]["attrs"]["llmux.outcome"] == "hedge_lost" and by["slow/default"]["attrs"]["llmux.hedge"] is False,
          "the first attempt lost the race: %r" % by["slow/default"]["attrs"])
    check(by["live/default"]["attrs"]["llmux.hedge"] is True and by["live/default"]["attrs"]["llmux.outcome"] == "success"
          and "llmux.first_token_ms" in by["live/default"]["attrs"], "the hedge won: %r" % by["live/default"]["attrs"])
    check(by["live/default"]["attrs"].get("llmux.response.body_bytes", 0) > 100
          and by["slow/default"]["attrs"].get("llmux.request.body_bytes", 0) > 0,
          "streamed bytes of the winner, request bytes of the loser: %r" % {k: v["attrs"] for k, v in by.items()})


def cancelled(base):
    host, port = base[len("http://"):].split(":")
    body = json.dumps({"model": "demo/drip", "stream": True, "messages": [{"role": "user", "content": "hi"}]})
    s = socket.create_connection((host, int(port)))
    s.sendall(("POST /v1/chat/completions HTTP/1.1\r\nhost: %s\r\ncontent-type: application/json\r\n"
               "content-length: %d\r\n\r\n%s" % (base, len(body), body)).encode())
    got = b""
    while b"data:" not in got:
        got += s.recv(4096)
    s.close()
    chat = wait_spans(lambda s: s["name"] == "chat demo/drip", "cancelled stream")[0]
    check(chat["attrs"]["llmux.outcome"] == "cancelled" and chat["attrs"]["error.type"] == "cancelled"
          and chat["status"] == trace_pb2.Status.STATUS_CODE_ERROR, "cancelled request span: %r" % chat)
    spans = trace_of(chat["trace"], 3, "cancelled")
    server = [x for x in spans if x["name"].startswith("POST")][0]
    check(server["attrs"]["http.response.status_code"] == 499 and server["attrs"]["llmux.outcome"] == "client_closed",
          "server span of a closed stream: %r" % server["attrs"])
    attempt = [x for x in spans if x["parent"] == chat["id"]][0]
    check(attempt["attrs"]["llmux.endpoint"] == "drip/default" and attempt["attrs"]["llmux.outcome"] == "cancelled",
          "the cut attempt: %r" % attempt["attrs"])
    check(attempt["attrs"].get("llmux.response.body_bytes", 0) > 0,
          "a cut stream keeps the bytes it read: %r" % attempt["attrs"])


def refused_trace(base, key, body, status, reason, what):
    """Posts with a key; the refusal's trace: the HTTP span and its child
    request span (no attempts)."""
    tid = os.urandom(16).hex()
    got, _ = post(base, body, {"authorization": "Bearer " + KEYS[key],
                                "traceparent": "00-%s-%s-01" % (tid, os.urandom(8).hex())})
    check(got == status, "%s: HTTP %d, want %d" % (what, got, status))
    spans = trace_of(tid, 2, what)
    time.sleep(0.2)
    with LOCK:
        spans = [s for s in SPANS if s["trace"] == tid]
    server = [s for s in spans if s["kind"] == trace_pb2.Span.SPAN_KIND_SERVER]
    chat = [s for s in spans if s["name"] == "chat " + body["model"]]
    check(len(server) == 1 and len(chat) == 1 and len(spans) == 2,
          "%s: one HTTP span and one request span, no attempt: %r" % (what, spans))
    server, chat = server[0], chat[0]
    check(server["attrs"]["http.response.status_code"] == status and server["attrs"]["llmux.outcome"] == reason,
          "%s: HTTP span %r" % (what, server["attrs"]))
    a = chat["attrs"]
    check(chat["parent"] == server["id"] and chat["kind"] == trace_pb2.Span.SPAN_KIND_CLIENT,
          "%s: the request span is the HTTP span's child" % what)
    check(a.get("error.type") == reason and a.get("llmux.outcome") == reason and a.get("llmux.attempts") == 0
          and chat["status"] == trace_pb2.Status.STATUS_CODE_ERROR, "%s: request span %r" % (what, a))
    return chat


def budgets(urls, tmp):
    """Refusals leave traces: a gateway key's (budget spent 402, rate limit
    429, model not allowed 403; the key's name, never its secret) and the
    engine's user_budgets (402)."""
    otlp = {"endpoint": COLLECTOR, "flush_interval_ms": 50}
    gw, base = start_gateway(keyed_config(urls, otlp), tmp)
    msg = [{"role": "user", "content": "hi"}]
    try:
        chat = refused_trace(base, "broke", {"model": "demo/failover", "messages": msg}, 402, "budget_exhausted",
                             "gateway budget")
        a = chat["attrs"]
        check(a.get("llmux.key") == "broke" and a.get("llmux.refused_by") == "key" and "`broke`" in chat["message"],
              "the key's name and the refusal on the span: %r %r" % (a, chat["message"]))
        check(a.get("gen_ai.request.model") == "demo/failover" and a.get("llmux.stream") is False, "request model")
        status, _ = post(base, {"model": "demo/failover", "messages": msg}, {"authorization": "Bearer " + KEYS["capped"]})
        check(status == 200, "the first request of a 1-rpm key passes")
        refused_trace(base, "capped", {"model": "demo/failover", "messages": msg, "stream": True}, 429, "rate_limited",
                      "gateway rate limit")
        refused_trace(base, "narrow", {"model": "demo/failover", "messages": msg}, 403, "model_not_allowed",
                      "gateway model list")
        chat = refused_trace(base, "open", {"model": "demo/failover", "messages": msg, "user": "player-1"}, 402,
                             "budget_exhausted", "engine user_budgets")
        check("player-1" in chat["message"] and "llmux.key" not in chat["attrs"],
              "the engine's refusal names the user: %r" % chat["message"])
        time.sleep(0.3)
        with LOCK:
            raw = b"".join(RAW)
        for name, secret in KEYS.items():
            check(secret.encode() not in raw, "the secret of key %s is in the exported spans" % name)
        check(b"upstream-fake" not in raw, "the upstream key is in the exported spans")
    finally:
        gw.kill()
        gw.wait()


def c_abi(urls):
    """The C ABI's llmux_submit_traced, through the Python binding's
    `traceparent=` (sync and async) and through ctypes with bad input."""
    import asyncio
    import ctypes
    os.environ["LLMUX_LIBRARY"] = os.path.join(BIN, "libllmux.so")
    sys.path.insert(0, os.path.join(ROOT, "bindings", "python", "src"))
    import llmux
    cfg = config(urls, {"endpoint": COLLECTOR, "flush_interval_ms": 50})
    msg = [{"role": "user", "content": "hi"}]
    with llmux.Router(cfg) as router:
        tid, parent = os.urandom(16).hex(), os.urandom(8).hex()
        out = router.chat.completions.create(model="demo/failover", messages=msg,
                                             traceparent="00-%s-%s-01" % (tid, parent))
        spans = trace_of(tid, 3, "C ABI traceparent")
        chat = [s for s in spans if s["name"] == "chat demo/failover"]
        check(len(chat) == 1 and chat[0]["parent"] == parent and chat[0]["kind"] == trace_pb2.Span.SPAN_KIND_CLIENT,
              "the request span is the child of the traceparent passed through the C ABI: %r" % spans)
        check(chat[0]["attrs"].get("gen_ai.response.id") == out.id, "response id through the C ABI")
        check(len([s for s in spans if s["parent"] == chat[0]["id"]]) == 2, "its attempts, under it")
        quiet = os.urandom(16).hex()
        router.chat.completions.create(model="demo/failover", messages=msg,
                                       traceparent="00-%s-%s-00" % (quiet, parent))
        for bad in ("garbage", "00-%s-%s-01" % ("0" * 32, parent), "00-%s-%s-01" % (tid, "0" * 16)):
            try:
                router.chat.completions.create(model="demo/failover", messages=msg, traceparent=bad)
                check(False, "a malformed traceparent %r was accepted" % bad)
            except llmux.InvalidRequestError as e:
                check("traceparent" in str(e) and "W3C" in str(e), "a clear refusal: %s" % e)
        try:
            router.chat.completions.create(model="demo/failover", messages=msg, traceparent="00-a\0b")
            check(False, "a traceparent with a NUL was accepted")
        except llmux.InvalidRequestError:
            check(True, "NUL refused")
        stream = router.chat.completions.create(model="demo/failover", messages=msg, stream=True, traceparent="")
        check(len(list(stream)) > 0, "an empty traceparent is no parent")

    async def run_async():
        async with llmux.AsyncRouter(cfg) as ar:
            t2 = os.urandom(16).hex()
            await ar.chat.completions.create(model="demo/failover", messages=msg,
                                             traceparent="00-%s-%s-01" % (t2, parent))
            return t2
    t2 = asyncio.run(run_async())
    chat = [s for s in trace_of(t2, 3, "async traceparent") if s["name"] == "chat demo/failover"]
    check(len(chat) == 1 and chat[0]["parent"] == parent, "AsyncRouter passes traceparent")
    with LOCK:
        check(not [s for s in SPANS if s["trace"] == quiet], "a traceparent that is not sampled exports nothing")

    lib = ctypes.CDLL(os.path.join(BIN, "libllmux.so"))
    eng = ctypes.c_void_p()
    text = json.dumps(cfg).encode()
    check(lib.llmux_engine_new(text, len(text), ctypes.byref(eng), None) == 0, "engine for the raw C calls")
    lib.llmux_submit_traced.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_char_p, ctypes.c_size_t,
                                        ctypes.c_char_p, ctypes.POINTER(ctypes.c_uint64), ctypes.c_void_p]
    body = json.dumps({"model": "demo/failover", "messages": msg}).encode()
    rid = ctypes.c_uint64()
    for tp, want in ((None, 0), (b"\xff\xfe-not-utf8", 7002), (b"00-zz", 7010), (b"", 0)):
        rc = lib.llmux_submit_traced(eng, 0, body, len(body), tp, ctypes.byref(rid), None)
        check(rc == want, "llmux_submit_traced(traceparent=%r) = %d, want %d" % (tp, rc, want))
    lib.llmux_engine_free(eng)


def call(base, caller, model, stream, tid):
    """One request in the caller's protocol; (status, text)."""
    msgs = [{"role": "user", "content": "hi"}]
    path, body = {
        "openai": ("/v1/chat/completions", {"model": model, "messages": msgs, "stream": stream}),
        "anthropic": ("/v1/messages", {"model": model, "max_tokens": 50, "messages": msgs, "stream": stream}),
        "responses": ("/v1/responses", {"model": model, "input": "hi", "stream": stream}),
        "gemini": ("/v1beta/models/%s:%s" % (model, "streamGenerateContent?alt=sse" if stream else "generateContent"),
                   {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}),
    }[caller]
    req = urllib.request.Request(base + path, data=json.dumps(body).encode(),
                                 headers={"content-type": "application/json",
                                          "traceparent": "00-%s-%s-01" % (tid, os.urandom(8).hex())})
    with urllib.request.urlopen(req, timeout=20) as r:
        return r.status, r.read().decode()


def body_facts(caller, text):
    """The id and finish reasons a caller reads in a whole response."""
    b = json.loads(text)
    if caller == "openai":
        return b["id"], [c["finish_reason"] for c in b["choices"]]
    if caller == "anthropic":
        return b["id"], [b["stop_reason"]]
    if caller == "responses":
        return b["id"], [b["status"]]
    return b["responseId"], [c["finishReason"] for c in b["candidates"]]


def response_facts(base):
    """gen_ai.response.id and gen_ai.response.finish_reasons on the request
    span for every caller protocol against every upstream protocol
    (pass-through and translated), streamed and not: the id the caller got,
    the finish reason in the caller's words."""
    for caller in ("openai", "anthropic", "responses", "gemini"):
        for upstream in ("openai", "anthropic", "responses", "gemini"):
            for stream in (False, True):
                what = "%s caller, %s upstream, stream %s" % (caller, upstream, stream)
                tid = os.urandom(16).hex()
                status, text = call(base, caller, "demo/p-" + upstream, stream, tid)
                check(status == 200, what + ": served")
                chat = [x for x in trace_of(tid, 3, what) if x["name"] == "chat demo/p-" + upstream]
                check(len(chat) == 1, what + ": one request span")
                a = chat[0]["attrs"]
                rid, reasons = a.get("gen_ai.response.id"), a.get("gen_ai.response.finish_reasons")
                check(isinstance(rid, str) and rid and isinstance(reasons, list) and reasons and all(reasons),
                      "%s: id %r, finish reasons %r" % (what, rid, reasons))
                if stream:
                    check(rid in text and all(r in text for r in reasons),
                          "%s: the span's id %r and reasons %r are what the stream said" % (what, rid, reasons))
                else:
                    check((rid, reasons) == body_facts(caller, text),
                          "%s: span %r, body %r" % (what, (rid, reasons), body_facts(caller, text)))


def dead_collector(urls, tmp):
    free = socket.socket()
    free.bind(("127.0.0.1", 0))
    port = free.getsockname()[1]
    free.close()
    gw, base = start_gateway(config(urls, {"endpoint": "http://127.0.0.1:%d" % port, "flush_interval_ms": 50}), tmp)
    try:
        started = time.time()
        for _ in range(20):
            status, _ = post(base, {"model": "demo/failover", "messages": [{"role": "user", "content": "hi"}]})
            check(status == 200, "served with the collector down")
        check(time.time() - started < 10, "requests with the collector down took %.1f s" % (time.time() - started))
    finally:
        gw.kill()
        gw.wait()


def main():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Collector)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    global COLLECTOR
    collector = COLLECTOR = "http://127.0.0.1:%d" % srv.server_address[1]
    tmp = tempfile.mkdtemp(prefix="llmux-traces-")
    fleet, urls = start_fleet()
    procs = [fleet]
    try:
        otlp = {"endpoint": collector, "flush_interval_ms": 50, "headers": {"x-collector-token": "t0ken"},
                "resource_attributes": {"deployment.environment": "test"}}
        gw, base = start_gateway(config(urls, otlp), tmp)
        procs.append(gw)
        failover(base)
        hedge(base)
        cancelled(base)
        response_facts(base)
        budgets(urls, tmp)
        c_abi(urls)
        dead_collector(urls, tmp)
    finally:
        for p in procs:
            p.kill()
            p.wait()
        srv.shutdown()
    print("traces test: %d checks passed (%d spans decoded)" % (checks, len(SPANS)))


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        print("traces test FAILED: %s" % e, file=sys.stderr)
        sys.exit(1)
