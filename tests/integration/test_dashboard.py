#!/usr/bin/env python3
"""GET /dashboard (issue 10) in a real browser: the page as served (type,
Cache-Control, a Content-Security-Policy that allows its inline style and
script by hash and nothing else, no reference to another origin), then
headless Chromium against live daemons under load:

- with --api-keys-file: the page asks for a key, shows nothing without the
  right one, shows the figures with it, and keeps it nowhere but in memory;
- with --redis (when redis-server is installed): the figures on the page
  (requests, requests/s, hit ratio, L2 hits and misses, latency, memory,
  evictions, the Redis link) are those of /stats and change between two
  moments; then a screenshot is saved ($RINGCACHE_DASHBOARD_PNG, else a
  temporary file; docs/img/dashboard.png is one, taken after
  $RINGCACHE_DASHBOARD_POLLS more polls to fill the charts).

Chromium is driven over the DevTools protocol on a pipe
(--remote-debugging-pipe: it reads commands on fd 3 and writes answers and
events on fd 4, each a JSON text ended by a NUL byte), so the test needs no
port, no websocket and nothing beyond the standard library.  No check
depends on how fast anything is: every wait is for a condition, bounded.

Where Chromium is not installed (Debian package chromium, which
tools/deps.sh installs), the HTTP checks run and the test then exits 77
(meson: skipped), saying so.

usage: test_dashboard.py [path/to/ringcached]
"""

import base64
import fcntl
import hashlib
import json
import os
import re
import secrets
import select
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib

from harness import (WRITE_OK, Server, keys_per_shard, run_main, show, stats, wait_for)
from redis_harness import Redis

NSHARDS = 2
FLAGS = ["--shards", str(NSHARDS), "--memory", "64M"]
SKIP = 77                   # meson's exit status for a skipped test

CDP_TIMEOUT = 30.0          # seconds one DevTools command may take
PAGE_TIMEOUT = 30.0         # seconds for the page to reach a state it polls towards
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-extensions", "--mute-audio", "--hide-scrollbars", "--window-size=1280,900",
    "--force-device-scale-factor=1",
]
WIDTH, HEIGHT = 1280, 900


def chromium_path():
    """$CHROMIUM, else chromium on PATH (Debian's /usr/bin/chromium), or None."""
    for p in (os.environ.get("CHROMIUM"), shutil.which("chromium"),
              shutil.which("chromium-browser")):
        if p and os.access(p, os.X_OK):
            return p
    return None


# --- Chromium over the DevTools protocol ------------------------------------------------

class CdpError(Exception):
    pass


class Browser:
    """One headless Chromium with a fresh profile, and one page in it.

    send() writes a command and reads until its answer; the events read
    meanwhile are kept (self.events) for wait_event() and for the console
    checks.  cleanup() (also on every failure path, as a run_main helper)
    closes the browser and kills what is left of its process group."""

    def __init__(self, exe):
        self.exe = exe
        self.dir = tempfile.mkdtemp(prefix="ringcache-chromium-")
        self.logpath = os.path.join(self.dir, "chromium.log")
        self.proc = None
        self.wfd = self.rfd = None
        self.buf = b""
        self.next_id = 0
        self.events = []
        self.session = None

    def start(self):
        cmd_r, cmd_w = os.pipe()
        ev_r, ev_w = os.pipe()
        # the child's ends above 9, so "3<&N 4>&M" below cannot clobber one
        # with the other (os.pipe() may well return 3 and 4)
        child_r = fcntl.fcntl(cmd_r, fcntl.F_DUPFD_CLOEXEC, 10)
        child_w = fcntl.fcntl(ev_w, fcntl.F_DUPFD_CLOEXEC, 10)
        os.close(cmd_r)
        os.close(ev_w)
        shell = 'exec "$@" 3<&%d 4>&%d %d<&- %d>&-' % (child_r, child_w, child_r, child_w)
        argv = (["/bin/bash", "-c", shell, "bash", self.exe] + CHROMIUM_FLAGS +
                ["--remote-debugging-pipe", "--user-data-dir=" + os.path.join(self.dir, "profile"),
                 "about:blank"])
        with open(self.logpath, "wb") as log:
            # its own process group: cleanup() ends the renderers and helpers too
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, pass_fds=(child_r, child_w),
                                         start_new_session=True)
        os.close(child_r)
        os.close(child_w)
        self.wfd, self.rfd = cmd_w, ev_r
        version = self.send("Browser.getVersion")
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.send("Target.attachToTarget",
                                 {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            self.page(domain + ".enable")
        self.page("Emulation.setDeviceMetricsOverride",
                  {"width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": False})
        return version.get("product", "?")

    def _read_message(self, deadline):
        while True:
            i = self.buf.find(b"\0")
            if i >= 0:
                msg, self.buf = self.buf[:i], self.buf[i + 1:]
                return json.loads(msg.decode("utf-8"))
            left = deadline - time.monotonic()
            if left <= 0:
                raise CdpError("no message from Chromium within %.0f s" % CDP_TIMEOUT)
            r, _, _ = select.select([self.rfd], [], [], left)
            if r:
                chunk = os.read(self.rfd, 1 << 20)
                if not chunk:
                    raise CdpError("Chromium closed its DevTools pipe (exited: %r)"
                                   % self.proc.poll())
                self.buf += chunk

    def send(self, method, params=None, session=None, timeout=CDP_TIMEOUT):
        """A command (to the browser, or to a page's session); its result."""
        self.next_id += 1
        mid = self.next_id
        msg = {"id": mid, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        data = json.dumps(msg).encode() + b"\0"
        while data:
            n = os.write(self.wfd, data)
            data = data[n:]
        deadline = time.monotonic() + timeout
        while True:
            m = self._read_message(deadline)
            if m.get("id") == mid:
                if "error" in m:
                    raise CdpError("%s: %s" % (method, m["error"]))
                return m.get("result", {})
            if "method" in m:
                self.events.append(m)

    def page(self, method, params=None):
        return self.send(method, params, session=self.session)

    def wait_event(self, method, since, timeout=CDP_TIMEOUT):
        """The first event `method` of the page at index >= since in
        self.events, reading more as needed."""
        deadline = time.monotonic() + timeout
        i = since
        while True:
            while i < len(self.events):
                e = self.events[i]
                i += 1
                if e["method"] == method and e.get("sessionId") == self.session:
                    return e
            m = self._read_message(deadline)
            if "method" in m:
                self.events.append(m)

    def navigate(self, url):
        since = len(self.events)
        r = self.page("Page.navigate", {"url": url})
        if r.get("errorText"):
            raise CdpError("Page.navigate %s: %s" % (url, r["errorText"]))
        self.wait_event("Page.loadEventFired", since)

    def evaluate(self, expr):
        """The value of a JavaScript expression in the page (JSON-able)."""
        r = self.page("Runtime.evaluate", {"expression": expr, "returnByValue": True})
        if "exceptionDetails" in r:
            raise CdpError("evaluate %r: %s" % (expr[:60], r["exceptionDetails"]))
        return r["result"].get("value")

    def drain(self):
        """Reads the events waiting in the pipe (without a command)."""
        while select.select([self.rfd], [], [], 0)[0]:
            chunk = os.read(self.rfd, 1 << 20)
            if not chunk:
                return
            self.buf += chunk
        while b"\0" in self.buf:
            m = self._read_message(time.monotonic())
            if "method" in m:
                self.events.append(m)

    def problems(self, since=0, allowed=()):
        """Console errors, uncaught exceptions and Content-Security-Policy
        violations the page reported (as text), except those matching a
        regular expression in `allowed`."""
        self.drain()
        out = []
        for e in self.events[since:]:
            p = e.get("params", {})
            if e["method"] == "Runtime.exceptionThrown":
                d = p.get("exceptionDetails", {})
                out.append("exception: %s" % d.get("exception", {}).get("description", d.get("text")))
            elif e["method"] == "Log.entryAdded" and p["entry"]["level"] in ("error", "warning"):
                out.append("%s %s: %s" % (p["entry"]["source"], p["entry"]["level"], p["entry"]["text"]))
            elif e["method"] == "Runtime.consoleAPICalled" and p.get("type") in ("error", "warning"):
                out.append("console.%s: %s" % (p["type"], [a.get("value") for a in p.get("args", [])]))
        return [t for t in out if not any(re.search(a, t) for a in allowed)]

    def screenshot(self):
        r = self.page("Page.captureScreenshot", {"format": "png"})
        return base64.b64decode(r["data"])

    def dump_log(self):
        try:
            with open(self.logpath, "rb") as f:
                text = f.read().decode("utf-8", "replace")
        except OSError:
            return
        print("---- chromium log (%s) ----" % self.logpath)
        print(text[-4000:], end="" if text.endswith("\n") else "\n")
        print("---- end of log ----", flush=True)

    def cleanup(self):
        if self.proc is not None:
            if self.proc.poll() is None:
                try:
                    self.send("Browser.close", timeout=5.0)
                except (CdpError, OSError):
                    pass
                # the group leader is not reaped before killpg (WNOWAIT),
                # so the group id cannot have been reused
                deadline = time.monotonic() + 5.0
                while time.monotonic() < deadline and os.waitid(
                        os.P_PID, self.proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
                    time.sleep(0.05)
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self.proc.wait()
            self.proc = None
        for fd in (self.wfd, self.rfd):
            if fd is not None:
                os.close(fd)
        self.wfd = self.rfd = None
        shutil.rmtree(self.dir, ignore_errors=True)


# --- what the page shows -----------------------------------------------------------------

# Every figure is an element with data-row and data-k (dashboard.html).
STATE_JS = """JSON.stringify({
  polls: Number(document.body.getAttribute("data-polls")),
  keyform: !document.getElementById("keyform").hidden,
  keyerror: !document.getElementById("keyerror").hidden,
  view: !document.getElementById("view").hidden,
  state: document.getElementById("state").textContent,
  rows: document.querySelectorAll("#rows tr").length,
  cells: Array.prototype.map.call(document.querySelectorAll("[data-k]"),
    function (e) { return [e.getAttribute("data-row"), e.getAttribute("data-k"), e.textContent]; })
})"""


class Shown:
    """The page's figures at one moment: cell(row, k) is the text shown."""

    def __init__(self, b):
        d = json.loads(b.evaluate(STATE_JS))
        self.polls = d["polls"]
        self.keyform, self.keyerror, self.view = d["keyform"], d["keyerror"], d["view"]
        self.state = d["state"]
        self.rows = d["rows"]
        self.cells = {(r, k): t for r, k, t in d["cells"]}

    def cell(self, row, k):
        return self.cells.get((str(row), k))

    def __repr__(self):
        return "<page: %d polls, %s>" % (self.polls, sorted(self.cells.items()))


def count(text):
    """A count as shown ("12,345"), or None."""
    if text is None or not re.fullmatch(r"[0-9][0-9,]*", text):
        return None
    return int(text.replace(",", ""))


def rate(text):
    """A rate as shown ("12.5", "1,234", "12.3 k", "1.05 M"), or None ("-")."""
    m = text and re.fullmatch(r"([0-9][0-9,]*(?:\.[0-9]+)?)(?: ([kM]))?", text)
    if not m:
        return None
    return float(m.group(1).replace(",", "")) * {None: 1, "k": 1e3, "M": 1e6}[m.group(2)]


def percent(text):
    m = text and re.fullmatch(r"([0-9]+\.[0-9]) %", text)
    return float(m.group(1)) if m else None


# a number and its unit are joined by a no-break space
BYTES_RE = "[0-9]+(?:\\.[0-9]+)?\u00a0(?:B|KiB|MiB|GiB|TiB)"
LATENCY_RE = "[0-9]+(?:\\.[0-9]+)?\u00a0(?:ns|\u00b5s|ms|s)"


def fmt_bytes(v):
    """dashboard.html's fmtBytes, for the --memory figure."""
    units, i = ["B", "KiB", "MiB", "GiB", "TiB"], 0
    while v >= 1024 and i < len(units) - 1:
        v /= 1024
        i += 1
    return "%s\u00a0%s" % (("%.2f" if v < 10 else "%.1f") % v if i else str(v), units[i])


def wait_page(b, cond, timeout=PAGE_TIMEOUT):
    """Reads the page until cond(Shown) holds or `timeout` s pass; the last
    reading (check cond on it again)."""
    last = []

    def probe():
        last[:] = [Shown(b)]
        return cond(last[0])
    wait_for(probe, timeout, interval=0.1)
    return last[0]


# --- load ---------------------------------------------------------------------------------

class Load:
    """Requests in a loop until stop(), over one kept-alive connection per
    shard (a shard counts the requests of the connections it holds): a
    PUT, two GETs that hit, one that misses and, with Redis, a GET of a
    value an application wrote straight into Redis (an L2 hit, after the
    miss in L1: an L2 miss).  Paced by a short sleep per round, so the
    browser and the daemon keep some of the 2 CPUs.  Unexpected answers are
    kept in self.bad."""

    def __init__(self, srv, redis=None, headers=None):
        self.srv, self.redis, self.headers = srv, redis, headers or []
        self.halt = threading.Event()
        self.rounds = 0
        self.bad = []
        self.conns = []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self, c):
        self._connect(c)
        self.thread.start()
        return self

    def _connect(self, c):
        """Opens connections until every shard holds one: the shard whose
        connections_accepted grew between two /stats took the last one.
        Nothing else connects meanwhile."""
        prev = stats(self.srv, headers=self.headers)["per_shard"]
        held = {}
        for _ in range(64):
            conn = self.srv.connect()
            now = stats(self.srv, conn=conn, headers=self.headers)["per_shard"]
            grew = [i for i in range(NSHARDS)
                    if now[i]["connections_accepted"] > prev[i]["connections_accepted"]]
            prev = now
            if len(grew) == 1 and grew[0] not in held:
                held[grew[0]] = conn
            else:
                conn.close()
            if len(held) == NSHARDS:
                break
        c.check(len(held) == NSHARDS, "the load holds a connection on every shard",
                sorted(held))
        self.conns = list(held.values())

    def _expect(self, r, allowed, what):
        if r.status not in allowed and len(self.bad) < 5:
            self.bad.append("%s -> %s" % (what, show(r)))

    def _run(self):
        hot = keys_per_shard("dash-hot-", NSHARDS, 4)
        hot = [k for s in range(NSHARDS) for k in hot[s]]
        value = b"v" * 1000
        h = self.headers
        try:
            resp = self.redis.client() if self.redis else None
            for k in hot:
                self._expect(self.conns[0].roundtrip("PUT", "/cache/" + k, value, h), WRITE_OK,
                             "PUT " + k)
            i = 0
            while not self.halt.is_set():
                i += 1
                conn = self.conns[i % len(self.conns)]
                self._expect(conn.roundtrip("PUT", "/cache/dash-%d" % i, value, h), WRITE_OK, "PUT")
                self._expect(conn.roundtrip("GET", "/cache/" + hot[i % len(hot)], None, h),
                             {200}, "GET hot")
                self._expect(conn.roundtrip("GET", "/cache/dash-%d" % i, None, h), {200}, "GET new")
                self._expect(conn.roundtrip("GET", "/cache/dash-none-%d" % i, None, h), {404},
                             "GET missing")
                if resp is not None:
                    # ringcached reads a plain string as a raw value (docs/coherence.md)
                    resp.cmd("SET", "ringcache:dash-l2-%d" % i, "from another application")
                    self._expect(conn.roundtrip("GET", "/cache/dash-l2-%d" % i, None, h), {200},
                                 "GET of a value only Redis has")
                self.rounds = i
                time.sleep(0.002)
            if resp is not None:
                resp.close()
        except Exception as e:  # noqa: BLE001 - reported by the checks
            self.bad.append("load stopped: %r" % (e,))
        finally:
            for conn in self.conns:
                conn.close()

    def stop(self):
        self.halt.set()
        self.thread.join(10.0)


# --- the page as served -------------------------------------------------------------------

def uncommented(body):
    return re.sub(r"<!--.*?-->", "", body, flags=re.S)


def inline(body, tag):
    """The contents of the page's one <tag> (None unless there is one)."""
    m = re.findall(r"<%s>(.*?)</%s>" % (tag, tag), body, re.S)
    return m[0] if len(m) == 1 else None


def sha256_source(text):
    return "'sha256-%s'" % base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()


def served(c, srv):
    c.section("GET /dashboard as served")
    r = srv.request("GET", "/dashboard")
    if not c.eq(r.status, 200, "GET /dashboard -> 200"):
        c.note(show(r))
        return
    c.eq(r.header("Content-Type"), "text/html; charset=utf-8", "Content-Type: text/html; charset=utf-8")
    c.eq(r.header("Cache-Control"), "no-cache", "Cache-Control: no-cache")
    c.eq(r.header("X-Content-Type-Options"), "nosniff", "X-Content-Type-Options: nosniff")
    body = uncommented(r.body.decode("utf-8"))
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "..", "..", "src", "daemon", "dashboard.html"), "rb") as f:
        c.check(r.body == f.read(), "the body is src/daemon/dashboard.html as in the tree")
    c.check(not re.search(r"(?:https?:)?//[a-z0-9.-]+[a-z]", body, re.I),
            "the page refers to no other origin (no CDN, no external asset)")
    c.check(not re.search(r"<(script|link|img|iframe)\b[^>]*\s(src|href)=\"(?!data:)", body, re.I),
            "no <script src>, <link href>, <img src> or <iframe src> but data: URLs")

    csp = r.header("Content-Security-Policy") or ""
    directives = {d.split()[0]: d.split()[1:] for d in csp.split(";") if d.strip()}
    c.eq(directives.get("default-src"), ["'none'"], "CSP default-src 'none'")
    script, style = inline(body, "script"), inline(body, "style")
    c.check(script is not None and directives.get("script-src") == [sha256_source(script)],
            "CSP script-src is exactly the hash of the page's one inline script",
            "script-src %s" % directives.get("script-src"))
    c.check(style is not None and directives.get("style-src") == [sha256_source(style)],
            "CSP style-src is exactly the hash of the page's one inline style",
            "style-src %s" % directives.get("style-src"))
    c.eq(directives.get("connect-src"), ["'self'"], "CSP connect-src 'self' (its /stats only)")
    c.eq(directives.get("frame-ancestors"), ["'none'"], "CSP frame-ancestors 'none'")

    h = srv.request("HEAD", "/dashboard")
    c.check(h.status == 200 and h.header("Content-Length") == str(len(r.body)) and
            h.header("Content-Security-Policy") == csp, "HEAD /dashboard: GET's head, no body",
            show(h))
    p = srv.request("POST", "/dashboard", b"x")
    c.check(p.status == 405 and p.header("Allow") == "GET, HEAD", "POST /dashboard -> 405, Allow: GET, HEAD",
            show(p))
    c.eq(srv.request("GET", "/dashboard/x").status, 404, "GET /dashboard/x -> 404")


# --- in the browser -----------------------------------------------------------------------

def with_key(c, b, tmp):
    c.section("--api-keys-file: the page asks for a key")
    key = "dash-" + secrets.token_hex(16)
    path = os.path.join(tmp, "keys")
    with open(path, "w") as f:
        f.write(key + "\n")
    os.chmod(path, 0o600)
    srv = Server(FLAGS + ["--api-keys-file", path], checks=c).start()
    served(c, srv)
    r = srv.request("GET", "/stats")
    c.eq(r.status, 401, "GET /stats without a key -> 401 (the page alone shows nothing)")
    load = Load(srv, headers=[("X-API-Key", key)]).start(c)
    since = len(b.events)
    base = "http://127.0.0.1:%d/dashboard" % srv.port
    b.navigate(base)
    s = wait_page(b, lambda s: s.keyform)
    if not c.check(s.keyform and not s.view and s.polls == 0,
                   "without a key: the key form shows, no figures, no poll answered", s):
        load.stop()
        return              # the rest would only wait for a page that does not work
    c.check(count(s.cell("total", "requests")) is None, "without a key: no request count shown", s)

    b.evaluate('document.getElementById("key").value = "wrong-%s"; '
               'document.querySelector("#keyform button").click(); 0' % secrets.token_hex(4))
    s = wait_page(b, lambda s: s.keyerror)
    c.check(s.keyerror and not s.view and s.polls == 0, "a wrong key: 'refused', still no figures", s)

    b.evaluate('document.getElementById("key").value = "%s"; '
               'document.querySelector("#keyform button").click(); 0' % key)
    s = wait_page(b, lambda s: s.polls >= 2 and count(s.cell("total", "requests")) is not None)
    if not c.check(s.view and not s.keyform and s.polls >= 2,
                   "the right key: the figures show and are polled", s):
        load.stop()
        return              # the rest would only wait for a page that does not work
    c.eq(s.rows, NSHARDS + 1, "a row per shard and the total")
    c.eq(s.cell("total", "link"), "off (no --redis)", "Redis link without --redis: off")
    first = count(s.cell("total", "requests"))
    s2 = wait_page(b, lambda t: (count(t.cell("total", "requests")) or 0) > (first or 0))
    c.check((count(s2.cell("total", "requests")) or 0) > (first or 0),
            "with the key: the request count moves under load", "%r then %r" % (first, s2))

    stored = b.evaluate("JSON.stringify([location.href, document.cookie, localStorage.length, "
                        "sessionStorage.length])")
    c.eq(json.loads(stored), [base, "", 0, 0],
         "the key is in no URL, cookie or storage (this tab's memory only)")
    load.stop()
    c.check(not load.bad, "the load's answers were as expected", load.bad)
    problems = b.problems(since, allowed=[r"status of 401"])
    c.check(not problems, "no console error, exception or CSP violation (but the 401s)", problems)


def with_redis(c, b, redis, png):
    c.section("under load%s" % (" with --redis" if redis else ", L1 only (no redis-server)"))
    flags = FLAGS + (["--redis", redis.url(), "--instance-id", "dash"] if redis else [])
    srv = Server(flags, checks=c).start()
    load = Load(srv, redis).start(c)
    since = len(b.events)
    b.navigate("http://127.0.0.1:%d/dashboard" % srv.port)

    # two moments, with polls between them
    a = wait_page(b, lambda s: s.polls >= 2 and rate(s.cell("total", "rps")) is not None)
    if not c.check(a.view and a.polls >= 2, "the page polls /stats and shows figures", a):
        load.stop()
        return              # the rest would only wait for a page that does not work
    c.eq(a.rows, NSHARDS + 1, "a row per shard and the total")
    later = wait_page(b, lambda s: s.polls >= a.polls + 2)
    c.check(later.polls >= a.polls + 2, "two more polls answered", later)
    for row in ["total"] + [str(i) for i in range(NSHARDS)]:
        c.check((count(later.cell(row, "requests")) or 0) > (count(a.cell(row, "requests")) or 0),
                "row %s: the request count grew between two moments (%s -> %s)"
                % (row, a.cell(row, "requests"), later.cell(row, "requests")))

    # every figure, in its form, for the total and every shard
    rows = ["total"] + [str(i) for i in range(NSHARDS)]

    def moving(s, row):
        hr = percent(s.cell(row, "hit_ratio"))
        return (rate(s.cell(row, "rps")) or 0) > 0 and hr is not None and 0 < hr < 100
    s = wait_page(b, lambda s: all(moving(s, r) for r in rows))
    for row in rows:
        c.check((rate(s.cell(row, "rps")) or 0) > 0, "row %s: requests/s > 0 (%s)"
                % (row, s.cell(row, "rps")))
        hr = percent(s.cell(row, "hit_ratio"))
        c.check(hr is not None and 0 < hr < 100, "row %s: hit ratio between 0 and 100 %% (%s): "
                "the load hits and misses" % (row, s.cell(row, "hit_ratio")))
        for k in ("lat_local", "lat_forwarded"):
            c.check(re.fullmatch(LATENCY_RE + " \u00b7 " + LATENCY_RE, s.cell(row, k) or ""),
                    "row %s: %s shows p50 \u00b7 p99 (%s)" % (row, k, s.cell(row, k)))
        c.check(re.fullmatch(BYTES_RE + " / " + BYTES_RE, s.cell(row, "memory") or ""),
                "row %s: memory shows values / --memory (%s)" % (row, s.cell(row, "memory")))
        c.check(count(s.cell(row, "evictions")) is not None and
                rate(s.cell(row, "evictions_rate")) is not None,
                "row %s: evictions and evictions/s shown (%s, %s)"
                % (row, s.cell(row, "evictions"), s.cell(row, "evictions_rate")))
    m = s.cell("total", "memory")
    s2 = wait_page(b, lambda t: t.cell("total", "memory") != m)
    c.check(s2.cell("total", "memory") != m, "total memory used moves as values are stored (%s -> %s)"
            % (m, s2.cell("total", "memory")))
    c.eq((s.cell("total", "memory") or "").split(" / ")[-1], fmt_bytes(64 << 20),
         "total memory is against --memory 64M")
    c.eq((s.cell("0", "memory") or "").split(" / ")[-1], fmt_bytes((64 << 20) // NSHARDS),
         "a shard's memory is against its share of --memory")

    if redis:
        s = wait_page(b, lambda s: (rate(s.cell("total", "l2_hits")) or 0) > 0 and
                      (rate(s.cell("total", "l2_misses")) or 0) > 0)
        c.eq(s.cell("total", "link"), "up", "Redis link: up")
        c.check((rate(s.cell("total", "l2_hits")) or 0) > 0, "L2 hits/s > 0 (%s): values only Redis "
                "had were read" % s.cell("total", "l2_hits"))
        c.check((rate(s.cell("total", "l2_misses")) or 0) > 0, "L2 misses/s > 0 (%s)"
                % s.cell("total", "l2_misses"))
        s = wait_page(b, lambda s: all((rate(s.cell(str(i), "l2_hits")) or 0) > 0
                                       for i in range(NSHARDS)))
        for i in range(NSHARDS):
            c.check((rate(s.cell(str(i), "l2_hits")) or 0) > 0 and
                    rate(s.cell(str(i), "l2_misses")) is not None,
                    "shard %d: its own L2 hits/s > 0 and misses/s shown (%s, %s)"
                    % (i, s.cell(str(i), "l2_hits"), s.cell(str(i), "l2_misses")))
    else:
        c.skip("the L2 figures and the Redis link state", "redis-server is not installed")

    # the page shows /stats: a poll answered after one /stats and read
    # before another lies between them, for every shard
    before = stats(srv)
    p0 = Shown(b).polls
    # poll p0+1 may have been sent before `before`; p0+2 was sent after it
    shown = wait_page(b, lambda s: s.polls >= p0 + 2)
    after = stats(srv)
    for i, row in enumerate(["total"] + [str(n) for n in range(NSHARDS)]):
        b_doc = before["total"] if row == "total" else before["per_shard"][i - 1]
        a_doc = after["total"] if row == "total" else after["per_shard"][i - 1]
        for k in ("requests", "evictions", "connections"):
            v = count(shown.cell(row, k))
            if k == "connections":
                ok = v is not None      # a gauge: it may go either way
            else:
                ok = v is not None and b_doc[k] <= v <= a_doc[k]
            c.check(ok, "row %s: %s shown (%s) is /stats's (%d before, %d after)"
                    % (row, k, shown.cell(row, k), b_doc[k], a_doc[k]))

    # for the picture in the docs: a longer history in the charts
    settle = int(os.environ.get("RINGCACHE_DASHBOARD_POLLS", "0"))
    if settle:
        p0 = Shown(b).polls
        wait_page(b, lambda s: s.polls >= p0 + settle, timeout=settle * 2 + PAGE_TIMEOUT)
    shot = b.screenshot()
    load.stop()
    c.check(not load.bad, "the load's answers were as expected (%d rounds)" % load.rounds, load.bad)
    problems = b.problems(since)
    c.check(not problems, "no console error, exception or CSP violation", problems)
    check_png(c, shot)
    with open(png, "wb") as f:
        f.write(shot)
    c.note("screenshot: %s" % png)


def check_png(c, data):
    """A PNG of the page's size with more than a blank screen in it."""
    ok = data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    w, h = struct.unpack(">II", data[16:24]) if ok else (0, 0)
    c.check(ok and (w, h) == (WIDTH, HEIGHT), "screenshot: a %dx%d PNG (%dx%d)" % (WIDTH, HEIGHT, w, h))
    idat, pos = b"", 8
    while ok and pos + 8 <= len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        if kind == b"IDAT":
            idat += data[pos + 8:pos + 8 + n]
        pos += 12 + n
    try:
        pixels = zlib.decompress(idat)
    except zlib.error:
        pixels = b""
    c.check(len(set(pixels)) > 32, "screenshot: not a blank page (%d distinct byte values)"
            % len(set(pixels)))


def main():
    exe = chromium_path()
    png = os.environ.get("RINGCACHE_DASHBOARD_PNG") or os.path.join(
        tempfile.gettempdir(), "ringcache-dashboard-%d.png" % os.getpid())
    tmp = tempfile.mkdtemp(prefix="ringcache-dash-")
    redis = Redis() if shutil.which("redis-server") else None
    browser = Browser(exe) if exe else None

    class Tmp:
        def dump_log(self):
            pass

        def cleanup(self):
            shutil.rmtree(tmp, ignore_errors=True)

    def body(c):
        if browser is None:
            c.section("GET /dashboard as served (no browser)")
            served(c, Server(FLAGS, checks=c).start())
            return
        c.note("chromium: %s" % browser.start())
        with_key(c, browser, tmp)
        if redis:
            redis.start()
        with_redis(c, browser, redis, png)

    helpers = [h for h in (browser, redis) if h] + [Tmp()]
    try:
        run_main("dashboard", body, helpers=helpers)
    except SystemExit as e:
        if e.code == 0 and browser is None:
            print("\nSKIP: the browser checks did not run: no Chromium (set CHROMIUM=, or install "
                  "Debian's chromium: tools/deps.sh does)", flush=True)
            sys.exit(SKIP)
        raise


if __name__ == "__main__":
    main()
