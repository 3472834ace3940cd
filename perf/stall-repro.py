#!/usr/bin/env python3
"""stall-repro.py - looks for connections the daemon stops serving under CPU
contention (a lost wake-up: requests sit in the kernel or in a ring while
the shard parks).

The real ringcached, many connections that each pipeline DEPTH requests (GET,
PUT of small and of compressible JSON values, DELETE; keys of every shard)
and wait for all their answers before the next batch, and a busy loop pinned
on every CPU.  A connection with requests out and no byte back for --stall
seconds is reported with what the daemon's threads did meanwhile (CPU ticks
from /proc) and whether a fresh connection is still served.  A lost wake-up
costs at most a park (250 ms) unless the work is lost for good, so a stall
of seconds is a bug.  A diagnostic, not a test: it exits 1 if it saw a
stall, 0 if not, 2 if it could not run.

usage: perf/stall-repro.py [--shards N] [--conns C] [--depth D] [--seconds S]
                           [--stall S] [--no-hogs] [--large BYTES]
                           [--flag=--FLAG=VALUE]... path/to/ringcached

Found this way (fixed; tests/integration/test_conn_memory_resume.py):
  perf/stall-repro.py --shards 1 --flag=--max-value=128K \
      --flag=--conn-memory=18M build/src/ringcached
stalled every connection within seconds (--conn-memory pause never resumed:
conn_memory held by kept buffers); with --no-hogs too.  Runs of 30-40 s
with hogs, 1 and 2 shards, default --conn-memory and --recv-buffers 2 or 8,
saw no stall.
"""

import argparse
import os
import random
import selectors
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                "integration"))
from harness import Server, keys_per_shard, stats  # noqa: E402


def thread_ticks(pid):
    """{tid: (name, utime+stime)} of every thread of pid."""
    out = {}
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/stat" % (pid, tid)) as f:
                s = f.read()
        except OSError:
            continue
        name = s[s.index("(") + 1:s.rindex(")")]
        fields = s[s.rindex(")") + 2:].split()
        out[tid] = (name, int(fields[11]) + int(fields[12]))
    return out


class Conn:
    def __init__(self, port, keys, rng, bodies):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setblocking(False)
        self.keys, self.rng, self.bodies = keys, rng, bodies
        self.out = b""
        self.inbuf = bytearray()
        self.need = 0           # answers still expected
        self.last = time.monotonic()
        self.answers = 0
        self.reported = False

    def batch(self, depth):
        reqs = []
        for _ in range(depth):
            k = self.rng.choice(self.keys)
            r = self.rng.random()
            if r < 0.55:
                reqs.append(b"GET /cache/%s HTTP/1.1\r\nHost: x\r\n"
                            b"Accept-Encoding: gzip, br\r\n\r\n" % k)
            elif r < 0.95:
                body = self.rng.choice(self.bodies)
                reqs.append(b"PUT /cache/%s HTTP/1.1\r\nHost: x\r\nContent-Type: "
                            b"application/json\r\nContent-Length: %d\r\n\r\n%s"
                            % (k, len(body), body))
            else:
                reqs.append(b"DELETE /cache/%s HTTP/1.1\r\nHost: x\r\n\r\n" % k)
        self.out += b"".join(reqs)
        self.need += depth
        self.last = time.monotonic()

    def parse(self):
        """Counts complete responses in inbuf."""
        n = 0
        while True:
            end = self.inbuf.find(b"\r\n\r\n")
            if end < 0:
                return n
            head = bytes(self.inbuf[:end]).lower()
            i = head.find(b"content-length:")
            clen = int(head[i + 15:head.index(b"\r\n", i) if b"\r\n" in head[i:] else None]
                       .split(b"\r\n")[0]) if i >= 0 else 0
            if head.startswith(b"http/1.1 304") or head.startswith(b"http/1.1 204"):
                clen = 0
            if len(self.inbuf) < end + 4 + clen:
                return n
            if not head.startswith(b"http/1.1 "):
                raise RuntimeError("bad response head %r" % head[:80])
            del self.inbuf[:end + 4 + clen]
            n += 1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("--shards", type=int, default=2)
    ap.add_argument("--conns", type=int, default=64)
    ap.add_argument("--depth", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--stall", type=float, default=2.0)
    ap.add_argument("--no-hogs", action="store_true")
    ap.add_argument("--large", type=int, default=64 << 10, help="largest JSON value")
    ap.add_argument("--flag", action="append", default=[],
                    help="extra daemon flag, e.g. --flag=--conn-memory=8M")
    a = ap.parse_args()

    flags = ["--shards", str(a.shards), "--memory", "256M"]
    for f in a.flag:
        flags += f.split("=", 1)
    try:
        srv = Server(flags, binary=os.path.abspath(a.binary)).start()
    except RuntimeError as e:
        print("stall-repro: %s" % e, file=sys.stderr)
        return 2
    hogs = []
    if not a.no_hogs:
        for cpu in sorted(os.sched_getaffinity(0)):
            hogs.append(subprocess.Popen(["taskset", "-c", str(cpu), "sh", "-c",
                                          "while :; do :; done"]))
    rng = random.Random(1)
    keys = [k.encode() for ks in keys_per_shard("st-", a.shards, 200).values() for k in ks]
    word = b'{"id": %d, "name": "item %d", "tags": ["a", "b", "c"], "v": 1.5},'
    bodies = [b"x" * rng.randint(1, 200) for _ in range(8)]
    for size in (1 << 10, 8 << 10, a.large):
        s = b"[" + b"".join(word % (i, i) for i in range(size // 60)) + b"{}]"
        bodies.append(s)
    sel = selectors.DefaultSelector()
    conns = []
    for i in range(a.conns):
        c = Conn(srv.port, keys, random.Random(i), bodies)
        sel.register(c.sock, selectors.EVENT_READ, c)
        conns.append(c)
        c.batch(a.depth)
    start = time.monotonic()
    stalls = []
    total = 0
    try:
        while time.monotonic() - start < a.seconds:
            for c in conns:
                ev = selectors.EVENT_READ | (selectors.EVENT_WRITE if c.out else 0)
                sel.modify(c.sock, ev, c)
            for key, ev in sel.select(0.2):
                c = key.data
                if ev & selectors.EVENT_WRITE and c.out:
                    try:
                        n = c.sock.send(c.out[:1 << 20])
                        c.out = c.out[n:]
                    except BlockingIOError:
                        pass
                if ev & selectors.EVENT_READ:
                    try:
                        d = c.sock.recv(1 << 20)
                    except BlockingIOError:
                        d = None
                    if d == b"":
                        raise RuntimeError("server closed a connection")
                    if d:
                        c.inbuf += d
                        c.last = time.monotonic()
                        got = c.parse()
                        c.need -= got
                        c.answers += got
                        total += got
                        if c.reported:
                            print("  conn %d recovered after %.1f s" %
                                  (conns.index(c), time.monotonic() - c.reported))
                            c.reported = False
                        if c.need == 0:
                            c.batch(a.depth)
            now = time.monotonic()
            stuck = [i for i, c in enumerate(conns)
                     if c.need and not c.reported and now - c.last > a.stall]
            if stuck:
                # one sample per scan: what the daemon's threads do meanwhile
                t0 = thread_ticks(srv.proc.pid)
                time.sleep(1)
                t1 = thread_ticks(srv.proc.pid)
                busy = {t1[t][0] + "/" + t: t1[t][1] - t0[t][1] for t in t1 if t in t0}
                try:
                    doc = stats(srv)
                    fresh = "200, conn_memory per shard %s, memory_pauses %s" % (
                        [p["conn_memory"] for p in doc["per_shard"]],
                        [p["memory_pauses"] for p in doc["per_shard"]])
                except Exception as e:  # noqa: BLE001 - reported
                    fresh = repr(e)
                for i in stuck:
                    c = conns[i]
                    print("STALL conn %d: %d answers owed, nothing for %.1f s, %d unsent bytes"
                          % (i, c.need, now - c.last, len(c.out)))
                    c.reported = now
                    stalls.append(i)
                print("  daemon thread CPU ticks over 1 s: %s; fresh GET /stats: %s"
                      % (busy, fresh))
    finally:
        for h in hogs:
            h.kill()
            h.wait()
        doc = None
        try:
            doc = stats(srv)
        except Exception:  # noqa: BLE001
            pass
        srv.stop()
        if stalls:
            print("daemon log kept: %s" % srv.logpath)
        else:
            srv.remove_log()
    print("%d answers in %.0f s over %d connections (%d shards, depth %d, flags %s); "
          "stalls: %d" % (total, a.seconds, a.conns, a.shards, a.depth, a.flag, len(stalls)))
    if doc:
        for p in doc.get("per_shard", []):
            print("  shard: " + ", ".join("%s=%s" % (k, p[k]) for k in sorted(p)
                                          if isinstance(p[k], int) and p[k] and
                                          any(w in k for w in ("pause", "request", "conn",
                                                               "zip", "forward"))))
    return 1 if stalls else 0


if __name__ == "__main__":
    sys.exit(main())
