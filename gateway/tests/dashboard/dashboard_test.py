"""The live dashboard in headless Chromium (Selenium), against `llmux serve`
in front of the mock fleet (`llmux-fleet`), all on 127.0.0.1.

Checks: the page loads with its strict Content-Security-Policy and no console
error; a failover caused by a failing mock endpoint shows up among the recent
requests (who served, the failed attempt); the dead endpoint's circuit turns
open on screen; the charts draw; the page fits a phone's width; with caller
keys the page asks for a key, refuses a wrong one and shows the state with
the right one (kept in sessionStorage, never in the URL).
"""

import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
BIN = os.path.join(ROOT, "target", "debug")
KEY_ENV = "LLMUX_DASHBOARD_TEST_KEY"
KEY = "dashboard-test-key-not-a-secret"
checks = 0


def check(cond, what):
    global checks
    checks += 1
    if not cond:
        raise AssertionError(what)


def start_fleet():
    cfg = {"servers": [
        {"name": "dead", "behavior": {"status": 500, "error_body": "{\"error\":{\"message\":\"mock outage\"}}"}},
        {"name": "live", "behavior": {"first_token_delay_ms": 15}},
    ]}
    p = subprocess.Popen([os.path.join(BIN, "llmux-fleet"), "--config", json.dumps(cfg), "--exit-on-stdin-eof"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    line = json.loads(p.stdout.readline())
    return p, {s["name"]: s["base_url"] for s in line["servers"]}


def start_gateway(urls, tmp, gateway):
    cfg = {
        "providers": [
            {"slug": "dead", "protocol": "openai", "base_url": urls["dead"] + "/v1", "api_key": "upstream-fake"},
            {"slug": "live", "protocol": "openai", "base_url": urls["live"] + "/v1", "api_key": "upstream-fake"},
        ],
        "models": [{"slug": "demo/chat", "endpoints": [
            {"provider": "dead", "upstream_model": "up-dead", "price": {"prompt": 1.0, "completion": 2.0},
             "expected_first_token_ms": 5},
            {"provider": "live", "upstream_model": "up-live", "price": {"prompt": 3.0, "completion": 6.0},
             "expected_first_token_ms": 50},
        ]}],
        "health": {"explore_ratio": 0.0, "failure_threshold": 2, "base_ejection_ms": 60000},
        "retry": {"max_retries": 0},
        "gateway": gateway,
    }
    path = os.path.join(tmp, "llmux-%d.json" % len(os.listdir(tmp)))
    with open(path, "w") as f:
        json.dump(cfg, f)
    env = dict(os.environ, **{KEY_ENV: KEY})
    p = subprocess.Popen([os.path.join(BIN, "llmux"), "serve", "--config", path, "--listen", "127.0.0.1:0",
                          "--log-format", "off"], stdout=subprocess.PIPE, env=env, text=True)
    line = p.stdout.readline().strip()
    prefix = "llmux: listening on "
    check(line.startswith(prefix), "gateway did not start: %r" % line)
    return p, line[len(prefix):]


def chat(base, key=None):
    body = json.dumps({"model": "demo/chat", "stream": True,
                       "messages": [{"role": "user", "content": "hi"}]}).encode()
    req = urllib.request.Request(base + "/v1/chat/completions", data=body,
                                 headers={"content-type": "application/json"})
    if key:
        req.add_header("authorization", "Bearer " + key)
    with urllib.request.urlopen(req, timeout=20) as r:
        return r.status, dict(r.headers), r.read().decode()


def browser():
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--no-proxy-server", "--window-size=1280,900"):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)


def console_errors(d, allowed=()):
    errs = [e for e in d.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
    return [e for e in errs if not any(a in e["message"] for a in allowed)]


def wait(d, what, cond, timeout=15):
    try:
        return WebDriverWait(d, timeout, poll_frequency=0.1).until(lambda d: cond(d))
    except Exception:
        raise AssertionError("timed out waiting for: %s\npage text:\n%s" % (what, d.find_element(By.TAG_NAME, "body").text))


def text_of(d, css):
    """The text of the first match, read in one script call (the page
    redraws every second, so element handles go stale)."""
    return d.execute_script("const e = document.querySelector(arguments[0]); return e ? e.innerText : ''", css)


def count(d, css):
    return d.execute_script("return document.querySelectorAll(arguments[0]).length", css)


def open_loopback(d, base):
    """No keys on loopback: the page shows the live state at once."""
    with urllib.request.urlopen(base + "/dashboard", timeout=5) as r:
        csp = r.headers.get("content-security-policy", "")
        check("default-src 'self'" in csp and "script-src 'self'" in csp and "unsafe-inline" not in csp,
              "strict CSP on the page: %r" % csp)
        page = r.read().decode()
        check("<script src=\"/dashboard/app.js\"" in page and "http" not in page.replace("http-equiv", ""),
              "the page loads only its own script")
    d.get(base + "/dashboard")
    wait(d, "status live", lambda d: "live" in d.execute_script("return document.getElementById('status').className"))
    wait(d, "both endpoints listed", lambda d: count(d, "tr[data-endpoint]") == 2)
    check(text_of(d, 'tr[data-endpoint="dead/default"] td.circuit').startswith("closed"), "circuit closed at start")
    errs = console_errors(d)
    check(errs == [], "console errors at load: %r" % errs)


def failover_and_circuit(d, base):
    status, headers, _ = chat(base)
    check(status == 200 and headers.get("x-llmux-endpoint") == "live/default", "failover served by live: %r" % headers)
    row = 'tr.failover'
    wait(d, "the failover among recent requests", lambda d: count(d, row) > 0)
    attempts = text_of(d, row + " td.attempts")
    check("dead/default" in attempts and "500" in attempts and "live/default: success" in attempts,
          "attempts shown: %r" % attempts)
    check(text_of(d, row + " td.served") == "live/default", "served by shown")
    # A second failure in a row opens the dead endpoint's circuit.
    chat(base)
    wait(d, "dead endpoint's circuit open",
         lambda d: text_of(d, 'tr[data-endpoint="dead/default"] td.circuit').startswith("open"))
    reason = text_of(d, 'tr[data-endpoint="dead/default"] td.reason')
    check("moved to the back" in reason, "why the dead endpoint is last: %r" % reason)
    check(text_of(d, 'tr[data-endpoint="live/default"] td:first-child') == "1", "live ranked first now")
    for _ in range(3):
        chat(base)
    wait(d, "latency chart drawn", lambda d: d.execute_script(
        "const p = document.querySelector('#chart-latency svg path.s0'); return p && p.getAttribute('d').includes('L')"))
    wait(d, "percentiles shown", lambda d: "ms /" in text_of(d, 'tr[data-endpoint="live/default"] td:nth-child(5)'))
    wait(d, "five requests of key `-`", lambda d: text_of(d, '#keys tr[data-key="-"] td:nth-child(2)') == "5")
    errs = console_errors(d)
    check(errs == [], "console errors after updates: %r" % errs)


def phone_width(d, base):
    d.set_window_size(390, 844)
    d.get(base + "/dashboard")
    wait(d, "status live on a phone", lambda d: "live" in d.execute_script("return document.getElementById('status').className"))
    wide = d.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
    check(wide <= 1, "the page scrolls sideways on a phone by %s px" % wide)
    d.set_window_size(1280, 900)


def keyed(d, base):
    d.get(base + "/dashboard")
    wait(d, "login form", lambda d: d.find_element(By.ID, "login").is_displayed())
    check(not d.find_element(By.ID, "main").is_displayed(), "no state without a key")
    d.find_element(By.ID, "key").send_keys("wrong-key")
    d.find_element(By.CSS_SELECTOR, "#login button").click()
    wait(d, "wrong key refused", lambda d: "refused" in d.find_element(By.ID, "login-error").text)
    d.find_element(By.ID, "key").send_keys(KEY)
    d.find_element(By.CSS_SELECTOR, "#login button").click()
    wait(d, "state with the key", lambda d: d.find_element(By.ID, "main").is_displayed()
         and count(d, "tr[data-endpoint]") == 2)
    check(KEY not in d.current_url, "the key is not in the URL")
    check(d.execute_script("return sessionStorage.getItem('llmux-dashboard-key')") == KEY, "key in sessionStorage")
    chat(base, KEY)
    wait(d, "a request of key `ops`", lambda d: "ops" in text_of(d, "#keys tbody"))
    try:
        urllib.request.urlopen(base + "/api/dashboard/state", timeout=5)
        check(False, "state without a key must be refused")
    except urllib.error.HTTPError as e:
        check(e.code == 401, "401 without a key, got %d" % e.code)
    # The refused polls log their 401s; nothing else may.
    errs = console_errors(d, allowed=("401",))
    check(errs == [], "console errors with keys: %r" % errs)


def main():
    tmp = tempfile.mkdtemp(prefix="llmux-dashboard-")
    procs = []
    d = None
    try:
        fleet, urls = start_fleet()
        procs.append(fleet)
        gw, base = start_gateway(urls, tmp, {})
        procs.append(gw)
        d = browser()
        open_loopback(d, base)
        failover_and_circuit(d, base)
        phone_width(d, base)
        gw2, base2 = start_gateway(urls, tmp, {"keys": [{"env": KEY_ENV, "name": "ops"}]})
        procs.append(gw2)
        keyed(d, base2)
    finally:
        if d is not None:
            d.quit()
        for p in procs:
            p.kill()
            p.wait()
    print("dashboard browser test: %d checks passed" % checks)


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        print("dashboard browser test FAILED: %s" % e, file=sys.stderr)
        sys.exit(1)
