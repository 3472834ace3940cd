#!/usr/bin/env python3
"""bench-invalidation.py - the two L2 figures of issue 5, measured against two
running ringcached instances (A, B) that share one Redis.

1. Invalidation propagation: for each key, PUT it on A, read it twice on B
   (the second read is an L1 hit on B), DELETE it on A, then poll B with GET
   until it answers 404.  The figure is the time from the DELETE's response on
   A to B's 404 response (p50/p99 over --keys keys).  Polling on one
   keep-alive connection, so the resolution is one round trip to B.

2. Miss latency through L2: for each key written straight into Redis as a
   plain value, time a direct GET of <prefix><key> from Redis (RESP over a
   socket, the way redis-cli would), then B's GET /cache/<key> (an L1 miss
   answered from Redis, X-Cache: HIT-L2), then B's GET again (an L1 hit).
   The HTTP client parses more than the RESP one (a status line and a header
   dict against one bulk reply), so its own overhead does not quite cancel
   out; hence

3. the same over RESP, with --b-resp (B's --resp-listen): a direct GET from
   Redis, B's GET of the same key (an L1 miss answered from Redis: B's
   l2_hits counts each one), B's GET again (an L1 hit), all three by one
   RESP client class, so the client's share is the same in each.

Used by perf/bench-invalidation.sh; prints a report, passes no verdict
(exit 3 if the instances do not write through to Redis at all).
"""
import argparse
import socket
import sys
import time

BODY = b"v" * 100


def connect(addr):
    host, port = addr.rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=5)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


class Http:
    def __init__(self, addr):
        self.addr = addr
        self.s = connect(addr)
        self.buf = b""

    def _fill(self):
        chunk = self.s.recv(65536)
        if not chunk:
            raise ConnectionError("connection to %s closed" % self.addr)
        self.buf += chunk

    def request(self, method, path, body=None):
        head = "%s %s HTTP/1.1\r\nHost: bench\r\n" % (method, path)
        if body is not None:
            head += "Content-Length: %d\r\n" % len(body)
        self.s.sendall(head.encode() + b"\r\n" + (body or b""))
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        raw, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        n = int(headers.get("content-length", "0"))
        if method == "HEAD":
            n = 0
        while len(self.buf) < n:
            self._fill()
        body, self.buf = self.buf[:n], self.buf[n:]
        return status, headers, body


class Resp:
    def __init__(self, addr):
        self.s = connect(addr)
        self.buf = b""

    def _line(self):
        while b"\r\n" not in self.buf:
            chunk = self.s.recv(65536)
            if not chunk:
                raise ConnectionError("redis closed the connection")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def command(self, *args):
        out = b"*%d\r\n" % len(args)
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out += b"$%d\r\n%s\r\n" % (len(a), a)
        self.s.sendall(out)
        return self._reply()

    def _reply(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind in (b"+", b":"):
            return rest
        if kind == b"-":
            raise RuntimeError(rest.decode())
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            while len(self.buf) < n + 2:
                chunk = self.s.recv(65536)
                if not chunk:
                    raise ConnectionError("redis closed the connection")
                self.buf += chunk
            data, self.buf = self.buf[:n], self.buf[n + 2:]
            return data
        if kind == b"*":
            return [self._reply() for _ in range(int(rest))]
        raise RuntimeError("unexpected reply %r" % line)


def pct(xs, p):
    xs = sorted(xs)
    if not xs:
        return float("nan")
    return xs[min(len(xs) - 1, int(round(p / 100.0 * (len(xs) - 1))))]


def summary(name, ns):
    us = [x / 1000.0 for x in ns]
    if not us:
        return "%-34s no samples" % name
    return "%-34s p50 %8.1f us   p99 %8.1f us   mean %8.1f us   max %8.1f us   (n=%d)" % (
        name, pct(us, 50), pct(us, 99), sum(us) / len(us), max(us), len(us))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--a", required=True, help="HOST:PORT of instance A")
    ap.add_argument("--b", required=True, help="HOST:PORT of instance B")
    ap.add_argument("--redis", required=True, help="HOST:PORT of the shared Redis")
    ap.add_argument("--prefix", default="ringcache:")
    ap.add_argument("--keys", type=int, default=1000)
    ap.add_argument("--poll-limit-ms", type=float, default=2000.0)
    ap.add_argument("--b-resp", help="HOST:PORT of B's --resp-listen: also measure over RESP")
    args = ap.parse_args()

    a, b, r = Http(args.a), Http(args.b), Resp(args.redis)
    run = "%x" % (time.time_ns() & 0xffffffff)
    prefix = args.prefix.encode()

    key = "/cache/check-%s" % run
    st, _, _ = a.request("PUT", key, BODY)
    if st not in (200, 201, 204) or r.command("EXISTS", prefix + key[7:].encode()) != b"1":
        print("bench-invalidation: a PUT on A (status %d) did not reach Redis: is the "
              "coherence thread wired into ringcached (--redis)?" % st, file=sys.stderr)
        return 3

    # 1. invalidation propagation
    lat, polls, lost, warm_miss, l2_promotions = [], [], 0, 0, 0
    for i in range(args.keys):
        path = "/cache/inv-%s-%d" % (run, i)
        a.request("PUT", path, BODY)
        st1, h1, _ = b.request("GET", path)
        st2, h2, _ = b.request("GET", path)
        if h1.get("x-cache", "").upper() == "HIT-L2":
            l2_promotions += 1
        if st2 != 200 or h2.get("x-cache", "HIT").upper() != "HIT":
            warm_miss += 1
        a.request("DELETE", path)
        t0 = time.perf_counter_ns()
        limit = t0 + int(args.poll_limit_ms * 1e6)
        n = 0
        while True:
            st, _, _ = b.request("GET", path)
            n += 1
            t1 = time.perf_counter_ns()
            if st == 404:
                lat.append(t1 - t0)
                polls.append(n)
                break
            if t1 > limit:
                lost += 1
                break

    # 2. miss latency through L2 vs a direct Redis GET
    direct, via_l2, l1_hit, not_l2 = [], [], [], 0
    for i in range(args.keys):
        k = "miss-%s-%d" % (run, i)
        r.command("SET", prefix + k.encode(), BODY)
        t0 = time.perf_counter_ns()
        v = r.command("GET", prefix + k.encode())
        t1 = time.perf_counter_ns()
        st, h, body = b.request("GET", "/cache/" + k)
        t2 = time.perf_counter_ns()
        b.request("GET", "/cache/" + k)
        t3 = time.perf_counter_ns()
        if v != BODY or st != 200 or body != BODY or h.get("x-cache", "").upper() != "HIT-L2":
            not_l2 += 1
        direct.append(t1 - t0)
        via_l2.append(t2 - t1)
        l1_hit.append(t3 - t2)

    print(summary("DELETE on A -> 404 on B", lat))
    print("  polls of B per key: p50 %d, max %d; keys never invalidated within %.0f ms: %d"
          % (pct(polls, 50) if polls else 0, max(polls) if polls else 0, args.poll_limit_ms, lost))
    print("  B's first read answered HIT-L2: %d/%d; second read not an L1 HIT: %d"
          % (l2_promotions, args.keys, warm_miss))
    print(summary("direct Redis GET", direct))
    print(summary("GET on B, L1 miss -> L2 hit", via_l2))
    print(summary("GET on B, L1 hit", l1_hit))
    print("  L2 reads not answered 200 + X-Cache: HIT-L2 with the right body: %d" % not_l2)
    ratio("L2 miss path vs direct Redis GET", direct, via_l2)
    if args.b_resp:
        resp_leg(args, b, r, prefix, run)
    return 0


def ratio(what, direct, other):
    d50, o50 = pct(direct, 50), pct(other, 50)
    if d50 == d50 and d50 > 0:
        print("  %s, p50: +%.1f us (x%.2f)" % (what, (o50 - d50) / 1000.0, o50 / d50))


def l2_hits(http):
    import json
    st, _, body = http.request("GET", "/stats")
    return json.loads(body)["total"]["l2_hits"] if st == 200 else -1


def resp_leg(args, b, r, prefix, run):
    """Part 3: direct GET, B's L1 miss -> L2 hit, B's L1 hit, all over RESP."""
    br = Resp(args.b_resp)
    direct, via_l2, l1_hit, wrong = [], [], [], 0
    hits0 = l2_hits(b)
    for i in range(args.keys):
        k = b"resp-%s-%d" % (run.encode(), i)
        r.command("SET", prefix + k, BODY)
        t0 = time.perf_counter_ns()
        v = r.command("GET", prefix + k)
        t1 = time.perf_counter_ns()
        v1 = br.command("GET", k)
        t2 = time.perf_counter_ns()
        v2 = br.command("GET", k)
        t3 = time.perf_counter_ns()
        wrong += (v, v1, v2) != (BODY, BODY, BODY)
        direct.append(t1 - t0)
        via_l2.append(t2 - t1)
        l1_hit.append(t3 - t2)
    hits = l2_hits(b) - hits0
    print("over RESP (B's --resp-listen), one client class for all three:")
    print(summary("direct Redis GET", direct))
    print(summary("GET on B, L1 miss -> L2 hit", via_l2))
    print(summary("GET on B, L1 hit", l1_hit))
    print("  B's l2_hits grew by %d for %d first reads; wrong values: %d" % (hits, args.keys, wrong))
    ratio("L2 miss path vs direct Redis GET", direct, via_l2)
    ratio("L1 hit vs direct Redis GET", direct, l1_hit)


if __name__ == "__main__":
    sys.exit(main())
