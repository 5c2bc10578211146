#!/usr/bin/env python3
"""Headless-browser check of recovery after reconnect with tickwire.js.

usage: python3 tests/browser/check_recovery.py URL DROPS SCREENSHOT_PATH
       e.g.  python3 tests/browser/check_recovery.py http://127.0.0.1:8080/ 3 target/recovery.png

URL serves `examples/recovery.rs`. Loads URL?drops=DROPS in Chromium: the page subscribes
to feed.* through /tickwire.js and has the server drop its connection DROPS times
(WebSocketService::disconnect), each time after it recovered and received 100 more
messages. Asserts from the page's DOM that every drop was followed by a recovery, that
each topic's seqs arrived once each, in order, with no gap (last - first + 1 ==
received), that the client dropped no duplicate, and, from the server's /stats, that
the recoveries replayed messages and that the page's WebSocket was compressed.

Exit codes: 0 success, 1 failure, 2 chromium / chromedriver missing or bad usage.
"""

import json
import os
import sys
import time
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import check_dashboard as cd  # noqa: E402  (the WebDriver client and helpers)

TIMEOUT = 60.0

PROBE_JS = r"""
const txt = (id) => { const e = document.getElementById(id); return e ? e.textContent.trim() : null; };
const topics = {};
for (const row of document.querySelectorAll('#topics [data-topic]')) {
  topics[row.getAttribute('data-topic')] = {
    first: +row.querySelector('.first').textContent,
    last: +row.querySelector('.last').textContent,
    count: +row.querySelector('.count').textContent,
  };
}
const c = window.tickwireClient;
return {
  state: txt('state'), done: txt('done'), drops: +txt('drops'), recoveries: +txt('recoveries'),
  failed: +txt('failed'), gaps: +txt('gaps'), duplicates: +txt('duplicates'),
  out_of_order: +txt('out-of-order'), received: +txt('received'), topics,
  client_counts: c ? c.counts : null, log: txt('log'),
};
"""


def log(msg):
    print("check_recovery: " + msg, flush=True)


def stats(url):
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(urllib.parse.urljoin(url, "stats"), timeout=10.0) as resp:
        return json.loads(resp.read())


def verify(page, drops, server):
    failures = []
    if page.get("drops") != drops:
        failures.append("the page dropped %s times, not %d" % (page.get("drops"), drops))
    if page.get("recoveries") != drops:
        failures.append("%s recoveries for %d drops" % (page.get("recoveries"), drops))
    for key in ("failed", "gaps", "duplicates", "out_of_order"):
        if page.get(key) != 0:
            failures.append("%s is %s" % (key, page.get(key)))
    topics = page.get("topics") or {}
    if sorted(topics) != ["feed.a", "feed.b"]:
        failures.append("topics shown: %s" % sorted(topics))
    for topic, t in sorted(topics.items()):
        if t["last"] - t["first"] + 1 != t["count"]:
            failures.append("%s: seq %d..%d but %d received" % (topic, t["first"], t["last"], t["count"]))
    if sum(t["count"] for t in topics.values()) != page.get("received"):
        failures.append("per-topic counts do not add up to %s" % page.get("received"))
    if server.get("recoveries", 0) < drops:
        failures.append("the server counted %s recoveries" % server.get("recoveries"))
    if server.get("failed_recoveries", 0) != 0:
        failures.append("the server counted %s failed recoveries" % server.get("failed_recoveries"))
    if server.get("replayed_messages", 0) < drops:
        failures.append("the server replayed %s messages: the reconnects missed nothing?"
                        % server.get("replayed_messages"))
    if server.get("compressed_sessions", 0) < 1:
        failures.append("compressed_sessions is %s with the page open" % server.get("compressed_sessions"))
    return failures


def run(url, drops, shot, chromium, chromedriver):
    import subprocess
    import tempfile
    import shutil

    port = cd.free_port()
    profile = tempfile.mkdtemp(prefix="tickwire-chromium-")
    driver = subprocess.Popen([chromedriver, "--port=%d" % port], stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    wd = cd.WebDriver("http://127.0.0.1:%d" % port)
    try:
        deadline = time.monotonic() + cd.DRIVER_START_TIMEOUT
        while not wd.ready():
            if driver.poll() is not None or time.monotonic() > deadline:
                raise cd.WebDriverError("chromedriver did not start")
            time.sleep(0.1)
        wd.new_session(chromium, profile)
        wd.s("POST", "/timeouts", {"pageLoad": 30000, "script": 10000})
        page_url = urllib.parse.urljoin(url, "?drops=%d" % drops)
        wd.s("POST", "/url", {"url": page_url}, timeout=40.0)
        log("loaded %s" % page_url)
        deadline = time.monotonic() + TIMEOUT
        page = None
        server = None
        while time.monotonic() < deadline:
            page = wd.s("POST", "/execute/sync", {"script": PROBE_JS, "args": []}, timeout=10.0)
            if page.get("state") == "open":
                server = stats(url)  # while the page is connected: its session counts
            if page.get("done") == "yes" and page.get("state") == "open":
                break
            time.sleep(cd.POLL_INTERVAL)
        cd.save_screenshot(wd, shot)
        page_log = page.pop("log", "") if page else ""
        print(json.dumps({"page": page, "server": server}, indent=2), flush=True)
        if not page or page.get("done") != "yes":
            log("timed out after %.0f s; the page's log:\n%s" % (TIMEOUT, page_log))
            cd.print_console(wd.browser_log())
            return 1
        failures = verify(page, drops, server or {})
        for f in failures:
            log("failed: " + f)
        if failures:
            log("the page's log:\n" + page_log)
            return 1
        log("%d drops, %d recoveries, %d messages on %d topics: every seq once, in order, no gap; "
            "the server replayed %d messages over a compressed session"
            % (drops, page["recoveries"], page["received"], len(page["topics"]), server["replayed_messages"]))
        return 0
    except cd.WebDriverError as err:
        log("WebDriver failure: %s" % err)
        return 1
    finally:
        wd.delete_session()
        cd.stop_process_group(driver)
        shutil.rmtree(profile, ignore_errors=True)


def main(argv):
    if len(argv) != 4:
        sys.stderr.write("usage: %s URL DROPS SCREENSHOT_PATH\n" % os.path.basename(argv[0]))
        return 2
    chromium = cd.find_binary(cd.CHROMIUM_CANDIDATES, "chromium")
    chromedriver = cd.find_binary(cd.CHROMEDRIVER_CANDIDATES, "chromedriver")
    if not chromium or not chromedriver:
        sys.stderr.write("check_recovery: chromium or chromedriver not found\n")
        return 2
    return run(argv[1], int(argv[2]), argv[3], chromium, chromedriver)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
