#!/usr/bin/env python3
"""Headless-browser check of the tickwire live dashboard.

usage: python3 tests/browser/check_dashboard.py URL SCREENSHOT_PATH
       e.g.  python3 tests/browser/check_dashboard.py http://127.0.0.1:8080/ target/dashboard.png

Drives Debian's chromium through chromedriver (W3C WebDriver over HTTP, standard
library only). Loads URL, then polls the page until the WebSocket is connected, market
ticks have arrived, /api/metrics has been applied and the ticker has a row; then waits
~2 s more, saves a PNG screenshot and prints the final values.

Exit codes: 0 success, 1 the page never got there, its WebSocket is not compressed or
its ticks stopped (or a WebDriver failure),
2 chromium / chromedriver missing or bad usage. Installing the browser is not this
script's job (CI does: apt-get install chromium chromium-driver).
"""

import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

CHROMIUM_CANDIDATES = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
CHROMEDRIVER_CANDIDATES = ["/usr/bin/chromedriver"]
POLL_INTERVAL = 0.25
POLL_TIMEOUT = 30.0
SETTLE_AFTER_SUCCESS = 2.0
COMPRESSION_TIMEOUT = 15.0
DRIVER_START_TIMEOUT = 20.0

# Read by execute/sync on every poll. Returns plain JSON values only.
PROBE_JS = r"""
const txt = (id) => { const e = document.getElementById(id); return e ? e.textContent.trim() : null; };
const int = (s) => (s !== null && /^\d+$/.test(s) ? parseInt(s, 10) : null);
return {
  ws_status: txt('ws-status'),
  tick_count: int(txt('tick-count')),
  tick_count_text: txt('tick-count'),
  metrics_count: int(txt('metrics-count')),
  metrics_count_text: txt('metrics-count'),
  ticker_rows: document.querySelectorAll('#ticker [data-symbol]').length,
  symbols: Array.from(document.querySelectorAll('#ticker [data-symbol]')).map((e) => e.getAttribute('data-symbol')),
  clients: txt('clients'),
  ready: document.body ? (document.body.dataset.ready || null) : null,
};
"""


def log(msg):
    print("check_dashboard: " + msg, flush=True)


def find_binary(candidates, name):
    for path in candidates:
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    found = shutil.which(name)
    return found


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class WebDriverError(Exception):
    pass


class WebDriver:
    """Just enough of the W3C WebDriver protocol, over urllib (no proxies)."""

    def __init__(self, base):
        self.base = base
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        self.session = None

    def call(self, method, path, body=None, timeout=30.0):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json; charset=utf-8")
        try:
            with self.opener.open(req, timeout=timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as err:
            raw = err.read()
            try:
                value = json.loads(raw or b"{}").get("value", {})
            except ValueError:
                value = {}
            if isinstance(value, dict):
                msg = "%s: %s" % (value.get("error", err.code), (value.get("message") or "").splitlines()[0:1])
            else:
                msg = str(err.code)
            raise WebDriverError("%s %s -> HTTP %s %s" % (method, path, err.code, msg)) from None
        except (urllib.error.URLError, OSError) as err:
            raise WebDriverError("%s %s -> %s" % (method, path, err)) from None
        try:
            return json.loads(raw or b"{}").get("value")
        except ValueError:
            raise WebDriverError("%s %s -> not JSON: %r" % (method, path, raw[:200])) from None

    def ready(self):
        try:
            value = self.call("GET", "/status", timeout=2.0)
        except WebDriverError:
            return False
        return bool(isinstance(value, dict) and value.get("ready", True))

    def new_session(self, chromium, profile_dir):
        args = [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1600,1000",
            "--user-data-dir=" + profile_dir,
        ]
        caps = {
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": {
                        "binary": chromium,
                        "args": args,
                        "perfLoggingPrefs": {"enableNetwork": True, "enablePage": False},
                    },
                    "goog:loggingPrefs": {"browser": "ALL", "performance": "ALL"},
                }
            }
        }
        value = self.call("POST", "/session", caps, timeout=60.0)
        self.session = value["sessionId"]
        return value

    def s(self, method, path, body=None, timeout=30.0):
        return self.call(method, "/session/%s%s" % (self.session, path), body, timeout)

    def browser_log(self, kind="browser"):
        # chromedriver serves the browser's logs at a non-standard endpoint; try both names
        for path in ("/se/log", "/log"):
            try:
                entries = self.s("POST", path, {"type": kind}, timeout=10.0)
                if isinstance(entries, list):
                    return entries
            except WebDriverError:
                continue
        return None

    def delete_session(self):
        if self.session:
            try:
                self.call("DELETE", "/session/" + self.session, timeout=15.0)
            except WebDriverError as err:
                log("could not delete the session: %s" % err)
            self.session = None


def print_console(entries, only_problems=False):
    if entries is None:
        log("browser console log: not available")
        return
    shown = [e for e in entries if not only_problems or e.get("level") in ("SEVERE", "WARNING")]
    if only_problems:
        log("browser console: %d entries, %d warnings/errors" % (len(entries), len(shown)))
    else:
        log("browser console log (%d entries):" % len(entries))
    for e in shown[-50:]:
        print("  [%s] %s" % (e.get("level"), e.get("message")), flush=True)


def save_screenshot(wd, path):
    try:
        b64 = wd.s("GET", "/screenshot", timeout=30.0)
        png = base64.b64decode(b64)
        parent = os.path.dirname(os.path.abspath(path))
        os.makedirs(parent, exist_ok=True)
        with open(path, "wb") as f:
            f.write(png)
        log("screenshot saved to %s (%d bytes)" % (path, len(png)))
        return True
    except (WebDriverError, ValueError, TypeError, OSError) as err:
        log("could not save the screenshot: %s" % err)
        return False


def succeeded(v):
    return (
        isinstance(v, dict)
        and v.get("ws_status") == "connected"
        and (v.get("tick_count") or 0) > 0
        and (v.get("metrics_count") or 0) > 0
        and (v.get("ticker_rows") or 0) >= 1
    )


def explain(wd, last):
    """One line saying which condition failed, to save a look at the screenshot."""
    if not isinstance(last, dict) or "probe_error" in last:
        log("the page could not be probed")
        return
    if last.get("ws_status") is None:
        try:
            where = wd.s("POST", "/execute/sync",
                         {"script": "return [location.href, document.title];", "args": []}, timeout=10.0)
        except WebDriverError:
            where = None
        log("no #ws-status on the page: is URL serving the dashboard? (page: %s)" % (where,))
        return
    failed = []
    if last.get("ws_status") != "connected":
        failed.append("#ws-status is %r, not 'connected'" % last.get("ws_status"))
    if not (last.get("tick_count") or 0) > 0:
        failed.append("#tick-count is %r (no market.* message)" % last.get("tick_count_text"))
    if not (last.get("metrics_count") or 0) > 0:
        failed.append("#metrics-count is %r (no /api/metrics poll applied)" % last.get("metrics_count_text"))
    if not (last.get("ticker_rows") or 0) >= 1:
        failed.append("no #ticker [data-symbol] row")
    log("failed: " + "; ".join(failed))


def probe(wd):
    return wd.s("POST", "/execute/sync", {"script": PROBE_JS, "args": []}, timeout=10.0)


def server_metrics(url):
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(urllib.parse.urljoin(url, "api/metrics"), timeout=10.0) as resp:
        return json.loads(resp.read())


def publish(url, topic, data):
    """POST /api/publish; returns the HTTP status."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    body = json.dumps({"topic": topic, "data": data}).encode()
    req = urllib.request.Request(urllib.parse.urljoin(url, "api/publish"), data=body, method="POST")
    req.add_header("Content-Type", "application/json")
    with opener.open(req, timeout=10.0) as resp:
        return resp.status


# Whether the page shows an event whose text contains the marker (the events list).
FIND_EVENT_JS = r"""
const marker = arguments[0];
return Array.from(document.querySelectorAll('li')).some((e) => (e.title || '').includes(marker) || e.textContent.includes(marker));
"""


def handshake_extensions(wd):
    """The Sec-WebSocket-Extensions of every WebSocket handshake answer in Chromium's
    network log (a list; None when the log is not available)."""
    entries = wd.browser_log("performance")
    if entries is None:
        return None
    found = []
    for e in entries:
        try:
            msg = json.loads(e.get("message", "{}")).get("message", {})
        except ValueError:
            continue
        if msg.get("method") != "Network.webSocketHandshakeResponseReceived":
            continue
        response = (msg.get("params") or {}).get("response") or {}
        headers = {k.lower(): v for k, v in (response.get("headers") or {}).items()}
        found.append({"status": response.get("status"), "extensions": headers.get("sec-websocket-extensions")})
    return found


def check_compression(wd, url):
    """With the page open: the server counts its compressed session, Chromium saw
    permessage-deflate answered, and ticks still arrive. Returns a list of failures."""
    failures = []
    deadline = time.monotonic() + COMPRESSION_TIMEOUT
    ws = None
    while True:
        try:
            ws = server_metrics(url)["websocket"]
        except (urllib.error.URLError, OSError, ValueError, KeyError) as err:
            failures.append("GET /api/metrics failed: %s" % err)
            return failures
        if ws.get("compressed_sessions", 0) >= 1 or time.monotonic() > deadline:
            break
        time.sleep(POLL_INTERVAL)
    log("server websocket metrics with the page open: compressed_sessions %s, active_connections %s, "
        "wire_bytes_sent %s, uncompressed_bytes_sent %s"
        % (ws.get("compressed_sessions"), ws.get("active_connections"), ws.get("wire_bytes_sent"),
           ws.get("uncompressed_bytes_sent")))
    if not ws.get("compressed_sessions", 0) >= 1:
        failures.append("compressed_sessions is %r with the dashboard open (its WebSocket is not compressed)"
                        % ws.get("compressed_sessions"))

    handshakes = handshake_extensions(wd)
    if handshakes is None:
        log("Chromium's network log is not available: the handshake header is not checked")
    else:
        log("WebSocket handshakes in Chromium's network log: %s" % json.dumps(handshakes))
        if not any((h.get("extensions") or "").lower().startswith("permessage-deflate") for h in handshakes):
            failures.append("no WebSocket handshake answered with permessage-deflate in Chromium's log: %s"
                            % json.dumps(handshakes))

    # A server message large enough to go compressed (over compression_min_size, 256 bytes
    # by default; the demo's ticks are smaller): the dashboard shows system.* messages in
    # its events list, so the marker appears there once Chromium inflated the frame.
    marker = "interop-compressed-%d" % os.getpid()
    text = marker + " " + " ".join("compressed message for the dashboard %d" % i for i in range(100))
    try:
        connections_before = server_metrics(url)["websocket"]
        status = publish(url, "system.interop", {"level": "info", "message": text})
    except (urllib.error.URLError, OSError, ValueError, KeyError) as err:
        failures.append("POST /api/publish of the large message failed: %s" % err)
        return failures
    if status != 202:
        failures.append("POST /api/publish answered %s, not 202" % status)
    shown = False
    deadline = time.monotonic() + COMPRESSION_TIMEOUT
    while not shown and time.monotonic() < deadline:
        try:
            shown = bool(wd.s("POST", "/execute/sync", {"script": FIND_EVENT_JS, "args": [marker]}, timeout=10.0))
        except WebDriverError as err:
            failures.append("could not look for the large message on the page: %s" % err)
            return failures
        if not shown:
            time.sleep(POLL_INTERVAL)
    after_ws = server_metrics(url)["websocket"]
    wire = after_ws["wire_bytes_sent"] - connections_before["wire_bytes_sent"]
    plain = after_ws["uncompressed_bytes_sent"] - connections_before["uncompressed_bytes_sent"]
    log("a %d-byte system.interop message: shown on the page: %s; server bytes since: wire %d, uncompressed %d; "
        "connections %d -> %d" % (len(text), shown, wire, plain, connections_before["total_connections"],
                                   after_ws["total_connections"]))
    if not shown:
        failures.append("the large (compressed) system.interop message never showed on the page")
    if not wire < plain:
        failures.append("the large message did not go compressed: wire %d, uncompressed %d" % (wire, plain))
    if after_ws["total_connections"] != connections_before["total_connections"]:
        failures.append("the dashboard reconnected during the compressed message (total_connections %d -> %d)"
                        % (connections_before["total_connections"], after_ws["total_connections"]))

    try:
        before = probe(wd).get("tick_count") or 0
        deadline = time.monotonic() + COMPRESSION_TIMEOUT
        after = before
        while after <= before and time.monotonic() < deadline:
            time.sleep(POLL_INTERVAL)
            after = probe(wd).get("tick_count") or 0
    except (WebDriverError, AttributeError) as err:
        failures.append("could not probe the page after the metrics check: %s" % err)
        return failures
    log("ticks after the compression check: %d -> %d" % (before, after))
    if not after > before:
        failures.append("the dashboard shows no new tick after the compression check (%d)" % before)
    return failures


def stop_process_group(proc):
    """Stop chromedriver and whatever it left behind in its own process group."""
    for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            proc.wait(timeout=wait)
            if sig == signal.SIGTERM:
                # chromedriver is gone; reap stragglers (a chromium it did not close) too
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            return
        except subprocess.TimeoutExpired:
            continue


def run(url, shot_path, chromium, chromedriver):
    port = free_port()
    profile = tempfile.mkdtemp(prefix="tickwire-chromium-")
    driver_log = tempfile.NamedTemporaryFile(prefix="tickwire-chromedriver-", suffix=".log", delete=False)
    driver = None
    wd = WebDriver("http://127.0.0.1:%d" % port)
    try:
        driver = subprocess.Popen(
            [chromedriver, "--port=%d" % port],
            stdin=subprocess.DEVNULL,
            stdout=driver_log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + DRIVER_START_TIMEOUT
        while not wd.ready():
            if driver.poll() is not None:
                raise WebDriverError("chromedriver exited with code %s" % driver.returncode)
            if time.monotonic() > deadline:
                raise WebDriverError("chromedriver did not answer /status within %.0f s" % DRIVER_START_TIMEOUT)
            time.sleep(0.1)

        caps = wd.new_session(chromium, profile)
        version = (caps.get("capabilities") or {}).get("browserVersion", "?")
        log("chromium %s, session %s" % (version, wd.session))
        wd.s("POST", "/timeouts", {"pageLoad": 30000, "script": 10000})
        wd.s("POST", "/url", {"url": url}, timeout=40.0)
        log("loaded %s" % url)

        last = None
        ok_at = None
        deadline = time.monotonic() + POLL_TIMEOUT
        while True:
            try:
                last = probe(wd)
            except WebDriverError as err:
                last = {"probe_error": str(err)}
            now = time.monotonic()
            if ok_at is None and succeeded(last):
                ok_at = now
                log("ready after %.1f s: %s" % (POLL_TIMEOUT - (deadline - now), json.dumps(last)))
            if ok_at is not None and now - ok_at >= SETTLE_AFTER_SUCCESS:
                break
            if ok_at is None and now >= deadline:
                break
            time.sleep(POLL_INTERVAL)

        if ok_at is not None:
            if not succeeded(last):
                # it was fine and then fell back (e.g. the socket dropped): still report it
                log("warning: state changed after success: %s" % json.dumps(last))
            save_screenshot(wd, shot_path)
            print(json.dumps({"result": "ok", "final": last}, indent=2), flush=True)
            print_console(wd.browser_log(), only_problems=True)
            failures = check_compression(wd, url)
            if failures:
                for f in failures:
                    log("failed: " + f)
                return 1
            log("the dashboard's WebSocket is compressed (permessage-deflate) and still shows ticks")
            return 0

        log("timed out after %.0f s; last values:" % POLL_TIMEOUT)
        print(json.dumps({"result": "timeout", "final": last}, indent=2), flush=True)
        explain(wd, last)
        print_console(wd.browser_log())
        save_screenshot(wd, shot_path)
        return 1
    except WebDriverError as err:
        log("WebDriver failure: %s" % err)
        if wd.session:
            print_console(wd.browser_log())
            save_screenshot(wd, shot_path)
        try:
            driver_log.flush()
            with open(driver_log.name, "r", errors="replace") as f:
                tail = f.read()[-3000:]
            if tail.strip():
                log("chromedriver output (tail):\n" + tail)
        except OSError:
            pass
        return 1
    finally:
        wd.delete_session()
        if driver is not None:
            stop_process_group(driver)
        driver_log.close()
        try:
            os.unlink(driver_log.name)
        except OSError:
            pass
        shutil.rmtree(profile, ignore_errors=True)


def main(argv):
    if len(argv) != 3:
        sys.stderr.write("usage: %s URL SCREENSHOT_PATH\n" % os.path.basename(argv[0]))
        return 2
    url, shot = argv[1], argv[2]
    chromium = find_binary(CHROMIUM_CANDIDATES, "chromium")
    chromedriver = find_binary(CHROMEDRIVER_CANDIDATES, "chromedriver")
    missing = [n for n, p in (("chromium", chromium), ("chromedriver", chromedriver)) if not p]
    if missing:
        sys.stderr.write(
            "check_dashboard: %s not found (looked in /usr/bin and PATH); install with: "
            "apt-get install -y chromium chromium-driver\n" % " and ".join(missing)
        )
        return 2

    # turn SIGTERM into an exception so the finally blocks clean up
    def on_term(signum, frame):
        raise KeyboardInterrupt("signal %d" % signum)

    signal.signal(signal.SIGTERM, on_term)
    try:
        return run(url, shot, chromium, chromedriver)
    except KeyboardInterrupt:
        log("interrupted")
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
