#!/usr/bin/env python3
"""bench-stampede.py - cache-aside stampedes with and without fill leases
(issue 9, docs/cache-aside.md), layercache's three scenarios.

Each client is a keep-alive connection running the cache-aside loop of
docs/cache-aside.md: GET the key (with `X-Cache-Fill: lease` in the lease
runs); a 200 ends it; a 404 fetches the value from the origin, which takes
5 ms and counts its executions, then PUTs it (with the X-Cache-Lease token
when one came).  One event loop drives every client of a round: all GETs
are sent at once on connections opened beforehand, and each answer is
timestamped as it arrives (Python threads would add their own scheduling
to every figure).

  1. 75 clients x 5 rounds on one instance (the key deleted before each)
  2. 60 clients split across two instances sharing a real redis-server
     (one round; the key deleted in Redis first)
  3. 40 clients x 5 rounds on one instance, on a key stored with ?ttl=1 and
     left to expire before each round

Printed per scenario, leases off and on: origin executions, client latency
p50 and p99 (first GET to value in hand), and with leases the waiters'
(the clients that did not fetch) p50.  Targets (issue 9): executions 5, 1
and 5 with leases; the waiters' p50 within 2 ms of the 5 ms fetch.

The clients are perf/stampede-round (the same loop in C, next to the
binary's build: BUILD/perf/stampede-round, built with -Dperf=true) when it
is there, else the Python event loop below (--client python forces it),
whose own cost of sending 75 requests at once (1.5-3 ms on the development
VM) shows in every figure; the header line says which ran.

usage: bench-stampede.py [path/to/ringcached] [--redis-server PATH] [--client PATH|python]
Starts its own ringcached instances (--shards 2) and redis-server on free
loopback ports, and stops them.  No verdict: exit 0 unless something fails.
"""
import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import heapq
import selectors
import time

FETCH_S = 0.005
VALUE = b"v" * 200


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class Http:
    """One keep-alive connection; request() returns (status, headers, body)."""

    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def _fill(self):
        chunk = self.s.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed")
        self.buf += chunk

    def request(self, method, path, body=None, headers=()):
        self.s.sendall(request_bytes(method, path, body, headers))
        while True:
            r = parse_one(self.buf, method == "HEAD")
            if r:
                st, h, self.buf = r
                return st, h, None
            self._fill()

    def close(self):
        self.s.close()


class Origin:
    """The database: 5 ms per fetch, executions counted.  In the event loop
    below a fetch is a 5 ms timer, so one thread times every client."""

    def __init__(self):
        self.calls = 0


def parse_one(buf, head_only=False):
    """(status, headers, rest of buf) for one complete response (its body
    skipped), or None."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    lines = buf[:end].decode("latin-1").split("\r\n")
    hdrs = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        hdrs[k.strip().lower()] = v.strip()
    n = 0 if head_only else int(hdrs.get("content-length", "0"))
    if len(buf) < end + 4 + n:
        return None
    return int(lines[0].split()[1]), hdrs, buf[end + 4 + n:]


def request_bytes(method, path, body=None, headers=()):
    head = "%s %s HTTP/1.1\r\nHost: bench\r\n" % (method, path)
    for k, v in headers:
        head += "%s: %s\r\n" % (k, v)
    if body is not None:
        head += "Content-Length: %d\r\n" % len(body)
    return head.encode() + b"\r\n" + (body or b"")


def pct(xs, p):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100.0 * len(xs)))]


def run_round(conns, origin, key, lease, query=""):
    """All clients at once, each running the cache-aside loop (GET; on a 404
    fetch, 5 ms, then PUT with the token if one came), driven by one event
    loop that timestamps every answer as it arrives: [(latency_s, fetched)]
    per client, from its GET's send to the value in hand (its 200, or its
    PUT's answer after a fetch)."""
    n = len(conns)
    sel = selectors.DefaultSelector()
    path = "/cache/" + key
    get = request_bytes("GET", path, headers=[("X-Cache-Fill", "lease")] if lease else ())
    state = [0] * n             # 0 GET out, 1 fetching, 2 PUT out, 3 done
    t0 = [0.0] * n
    out = [None] * n
    timers = []                 # (due, client, token)
    for i, c in enumerate(conns):
        sel.register(c.s, selectors.EVENT_READ, i)
    for i, c in enumerate(conns):
        t0[i] = time.perf_counter()
        c.s.sendall(get)
    left = n
    while left:
        now = time.perf_counter()
        while timers and timers[0][0] <= now:
            _, i, tok = heapq.heappop(timers)
            state[i] = 2
            conns[i].s.sendall(request_bytes("PUT", path + query, VALUE,
                                             [("X-Cache-Lease", tok)] if tok else ()))
        wait = max(0.0, timers[0][0] - now) if timers else 5.0
        for k, _ in sel.select(wait):
            i = k.data
            c = conns[i]
            chunk = c.s.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed")
            c.buf += chunk
            r = parse_one(c.buf)
            if not r:
                continue
            st, h, c.buf = r
            now = time.perf_counter()
            if state[i] == 0 and st != 200:
                origin.calls += 1
                state[i] = 1
                heapq.heappush(timers, (now + FETCH_S, i, h.get("x-cache-lease")))
                continue
            out[i] = (now - t0[i], state[i] == 2)
            state[i] = 3
            left -= 1
    for c in conns:
        sel.unregister(c.s)
    sel.close()
    return out


CLIENT = None      # perf/stampede-round, when built (-Dperf=true): see main()


def run_round_c(ports, n, origin, key, lease, query=""):
    """run_round() by perf/stampede-round: the same clients and loop in C,
    clients dealt over `ports` in turn, so the figures are the server's
    rather than this interpreter's."""
    args = [CLIENT, "-n", str(n), "-k", key, "-f", str(int(FETCH_S * 1e6))]
    if lease:
        args.append("-l")
    if query:
        args += ["-q", query]
    out = subprocess.run(args + [str(p) for p in ports], stdout=subprocess.PIPE, check=True,
                         timeout=60).stdout.decode().split("\n")
    res = []
    for line in out:
        f = line.split()
        if len(f) == 2 and f[0] == "executions":
            origin.calls += int(f[1])
        elif len(f) == 2:
            res.append((float(f[0]) / 1e6, f[1] == "1"))
    if len(res) != n:
        raise RuntimeError("stampede-round answered %d clients of %d" % (len(res), n))
    return res


def round_of(conns, ports, origin, key, lease, query=""):
    if CLIENT:
        return run_round_c(ports, len(conns), origin, key, lease, query)
    return run_round(conns, origin, key, lease, query)


class Daemon:
    def __init__(self, binary, extra):
        self.port = free_port()
        self.log = tempfile.TemporaryFile()
        self.p = subprocess.Popen([binary, "--listen", "127.0.0.1:%d" % self.port,
                                   "--shards", "2", "--memory", "64M"] + extra,
                                  stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if Http(self.port).request("GET", "/health")[0] == 200:
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("ringcached did not start")

    def stop(self):
        self.p.terminate()
        self.p.wait(10)


class RedisServer:
    def __init__(self, exe):
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="bench-stampede-redis-")
        self.p = subprocess.Popen([exe, "--port", str(self.port), "--bind", "127.0.0.1",
                                   "--save", "", "--appendonly", "no", "--dir", self.dir],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                s = socket.create_connection(("127.0.0.1", self.port), timeout=1)
                s.sendall(b"PING\r\n")
                if s.recv(64).startswith(b"+PONG"):
                    s.close()
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def cmd(self, *args):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        s.sendall(b"".join([b"*%d\r\n" % len(args)] +
                           [b"$%d\r\n%s\r\n" % (len(a), a) for a in
                            (x.encode() if isinstance(x, str) else x for x in args)]))
        s.recv(4096)
        s.close()

    def stop(self):
        self.p.kill()
        self.p.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


def wait_l2(port):
    """Until a PUT writes through (the instance's Redis link is up)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if Http(port).request("PUT", "/cache/bench-ready", b"x")[1].get("x-l2") == "ok":
            return
        time.sleep(0.1)
    raise RuntimeError("no L2")


def summarize(results, hits):
    """p50, p99, the waiters' p50, and the p50 of a round of plain hits by
    the same clients at once: what sending 75 requests at once and reading
    their answers costs by itself, to tell from what waiting costs."""
    lat = [r[0] for r in results]
    waiters = [r[0] for r in results if not r[1]]
    return (pct(lat, 50) * 1e3, pct(lat, 99) * 1e3, pct(waiters, 50) * 1e3,
            pct([r[0] for r in hits], 50) * 1e3)


def scenario_one(binary, lease):
    d = Daemon(binary, [])
    origin = Origin()
    conns = [Http(d.port) for _ in range(75)]
    ctl = Http(d.port)
    res = []
    for rnd in range(5):
        ctl.request("DELETE", "/cache/s1")
        res += round_of(conns, [d.port], origin, "s1", lease)
    calls = origin.calls
    hits = round_of(conns, [d.port], origin, "s1", lease)        # the key is there now
    for c in conns + [ctl]:
        c.close()
    d.stop()
    return calls, summarize(res, hits)


def scenario_two(binary, redis_exe, lease):
    redis = RedisServer(redis_exe)
    url = "redis://127.0.0.1:%d" % redis.port
    a = Daemon(binary, ["--redis", url, "--instance-id", "bench-a"])
    b = Daemon(binary, ["--redis", url, "--instance-id", "bench-b"])
    wait_l2(a.port)
    wait_l2(b.port)
    redis.cmd("DEL", "ringcache:s2")
    origin = Origin()
    conns = [Http(a.port if i % 2 == 0 else b.port) for i in range(60)]
    res = round_of(conns, [a.port, b.port], origin, "s2", lease)
    calls = origin.calls
    hits = round_of(conns, [a.port, b.port], origin, "s2", lease)
    for c in conns:
        c.close()
    a.stop()
    b.stop()
    redis.stop()
    return calls, summarize(res, hits)


def scenario_three(binary, lease):
    d = Daemon(binary, [])
    origin = Origin()
    conns = [Http(d.port) for _ in range(40)]
    ctl = Http(d.port)
    ctl.request("PUT", "/cache/s3?ttl=1", VALUE)
    res = []
    for rnd in range(5):
        # until the key has expired (HEAD without X-Cache-Fill takes no lease)
        while ctl.request("HEAD", "/cache/s3")[0] == 200:
            time.sleep(0.02)
        res += round_of(conns, [d.port], origin, "s3", lease, "?ttl=1")
    calls = origin.calls
    hits = round_of(conns, [d.port], origin, "s3", lease, "?ttl=1")     # within its second
    for c in conns + [ctl]:
        c.close()
    d.stop()
    return calls, summarize(res, hits)


def main():
    ap = argparse.ArgumentParser()
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("binary", nargs="?",
                    default=os.path.join(here, "..", "build", "src", "ringcached"))
    ap.add_argument("--redis-server", default=shutil.which("redis-server"))
    ap.add_argument("--client", default=None,
                    help="perf/stampede-round (default: next to the binary's build, "
                         "BUILD/perf/stampede-round; 'python' for the Python loop)")
    args = ap.parse_args()
    global CLIENT
    guess = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(args.binary))),
                         "perf", "stampede-round")
    CLIENT = (None if args.client == "python" else args.client or
              (guess if os.access(guess, os.X_OK) else None))
    print("clients: %s" % (CLIENT or "the Python event loop (no perf/stampede-round: "
                           "build with -Dperf=true)"))
    rows = []
    for name, target, fn in (
            ("75 clients x 5 rounds, one instance", 5, lambda l: scenario_one(args.binary, l)),
            ("60 clients, two instances + Redis", 1,
             lambda l: scenario_two(args.binary, args.redis_server, l)),
            ("40 clients x 5 rounds, expired key", 5, lambda l: scenario_three(args.binary, l))):
        if "Redis" in name and not args.redis_server:
            print("skipped (no redis-server): %s" % name)
            continue
        off = fn(False)
        on = fn(True)
        rows.append((name, target, off, on))
    print("fetch: %.0f ms per origin execution; latency: first GET to value, ms;" % (FETCH_S * 1e3))
    print("hits: p50 of a round of plain hits by the same clients at once (client overhead);")
    print("waiters - hits: what waiting for the fill added, to compare with the fetch")
    print("%-36s | %-22s | %-44s" % ("scenario", "without leases", "with leases (target)"))
    print("%-36s | %5s %7s %7s | %5s %7s %7s %7s %5s %7s" %
          ("", "execs", "p50", "p99", "execs", "p50", "p99", "waiters", "hits", "w-hits"))
    for name, target, (e0, (p50a, p99a, _, _)), (e1, (p50b, p99b, w50, h50)) in rows:
        print("%-36s | %5d %7.2f %7.2f | %2d(%d) %7.2f %7.2f %7.2f %5.2f %7.2f" %
              (name, e0, p50a, p99a, e1, target, p50b, p99b, w50, h50, w50 - h50))
    return 0


if __name__ == "__main__":
    sys.exit(main())
