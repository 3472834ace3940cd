#!/usr/bin/env python3
"""bench-snapshot.py - warm restarts: ringcached's snapshot save and load
(--snapshot) next to Redis' RDB save and load of the same keys, on the same
machine in the same run (docs/benchmarks.md, "Warm restarts").

    perf/bench-snapshot.py [--build DIR] [--keys 1000000,10000000]
                           [--shards 2] [--dir DIR] [--check-keys 1000000]

For each key count N, both servers get keys key:0..key:N-1 with the same
100-byte values (perf/load-keys.py's value_of): ringcached over HTTP
(pipelined PUTs), redis-server through redis-cli --pipe.  Then:

  save    ringcached: SIGTERM to exit (the daemon's log splits it: shards
          writing, sync); Redis: the SAVE command (a blocking save, what a
          stop with `save` configured does), both fsynced
  load    from exec to the first answer: ringcached's /health 200 (it
          listens only once loaded), Redis' PING answered PONG (it answers
          -LOADING before); each log's own load figure too
          warm: the file was just written (in the page cache)
          cold: the file dropped from the page cache first
                (posix_fadvise DONTNEED on that file only)

Afterwards it checks that every server holds N keys and a sample of values.

--check-keys N: ringcached with --redis writes N keys through to a
redis-server, stops, and starts again: the time its shards take to read
every loaded key back from Redis before serving (src/snapshot/verify.c).
Needs redis-server and redis-cli (Debian package redis-server).
"""

import argparse
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import importlib.util  # noqa: E402

_spec = importlib.util.spec_from_file_location("load_keys", os.path.join(HERE, "load-keys.py"))
load_keys = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(load_keys)

VALUE = 100


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def drop_cache(path):
    """Evicts one file's pages from the page cache (clean pages only: it was
    fsynced)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def http_ok(port, path="/health"):
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=0.5)
        s.sendall(b"GET %s HTTP/1.1\r\nHost: l\r\nConnection: close\r\n\r\n" % path.encode())
        data = s.recv(64)
        s.close()
        return data.startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def resp(port, *args, timeout=600.0):
    """One command on a fresh connection; the raw reply's first line (bulk
    replies: the payload line)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    out = b"*%d\r\n" % len(args) + b"".join(
        b"$%d\r\n%s\r\n" % (len(a), a) for a in (x if isinstance(x, bytes) else str(x).encode()
                                                  for x in args))
    s.sendall(out)
    data = b""
    while b"\r\n" not in data:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    if data.startswith(b"$") and not data.startswith(b"$-1"):
        n = int(data[1:data.index(b"\r\n")])
        while len(data) < data.index(b"\r\n") + 2 + n:
            data += s.recv(65536)
        s.close()
        return data[data.index(b"\r\n") + 2:][:n]
    s.close()
    return data.split(b"\r\n")[0]


def until(cond, timeout, what):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise RuntimeError("timed out waiting for " + what)
        time.sleep(0.002)


def grep(path, pattern):
    with open(path, errors="replace") as f:
        text = f.read()
    m = None
    for m in re.finditer(pattern, text):
        pass
    return m


# --- ringcached ----------------------------------------------------------------

class Ringcached:
    def __init__(self, binary, workdir, shards, memory, extra=()):
        self.binary = binary
        self.snap = os.path.join(workdir, "l1.snap")
        self.log = os.path.join(workdir, "ringcached.log")
        self.shards = shards
        self.memory = memory
        self.extra = list(extra)
        self.port = free_port()
        self.proc = None

    def start(self):
        """Starts it and returns the seconds from exec to /health 200."""
        self.port = free_port()
        t0 = time.monotonic()
        self.proc = subprocess.Popen(
            [self.binary, "--listen", "127.0.0.1:%d" % self.port, "--shards", str(self.shards),
             "--memory", self.memory, "--snapshot", self.snap] + self.extra,
            stdout=open(self.log, "w"), stderr=subprocess.STDOUT)
        def up():
            if self.proc.poll() is not None:
                with open(self.log) as f:
                    sys.exit("ringcached exited with %d:\n%s" % (self.proc.returncode,
                                                               f.read()[-3000:]))
            return http_ok(self.port)
        until(up, 600, "ringcached to serve")
        return time.monotonic() - t0

    def stop(self):
        """SIGTERM; returns the seconds to exit."""
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(600)
        return time.monotonic() - t0

    def items(self):
        s = socket.create_connection(("127.0.0.1", self.port))
        s.sendall(b"GET /stats HTTP/1.1\r\nHost: l\r\nConnection: close\r\n\r\n")
        data = b""
        while True:
            c = s.recv(65536)
            if not c:
                break
            data += c
        m = re.search(rb'"total":\{[^}]*?"items":(\d+)', data)
        return int(m.group(1)) if m else -1

    def sample_ok(self, n):
        rnd = random.Random(7)
        for _ in range(200):
            i = rnd.randrange(n)
            st, body = load_keys.get("127.0.0.1", self.port, b"key:%d" % i)
            if st != 200 or body != load_keys.value_of(i, VALUE):
                return False
        return True


# --- redis -----------------------------------------------------------------------

class Redis:
    def __init__(self, workdir):
        self.dir = workdir
        self.rdb = os.path.join(workdir, "dump.rdb")
        self.log = os.path.join(workdir, "redis.log")
        self.port = free_port()
        self.proc = None

    def start(self):
        """Starts it and returns the seconds from exec to PING -> PONG."""
        self.port = free_port()
        t0 = time.monotonic()
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.dir, "--dbfilename", "dump.rdb",
             "--daemonize", "no"], stdout=open(self.log, "w"), stderr=subprocess.STDOUT)

        def pong():
            try:
                return resp(self.port, "PING", timeout=1.0) == b"+PONG"
            except OSError:
                return False
        until(pong, 600, "redis-server to answer PONG")
        return time.monotonic() - t0

    def fill(self, n):
        p = subprocess.Popen(["redis-cli", "-p", str(self.port), "--pipe"],
                             stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
        batch = []
        for i in range(n):
            k = b"key:%d" % i
            v = load_keys.value_of(i, VALUE)
            batch.append(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(k), k, len(v), v))
            if len(batch) == 10000:
                p.stdin.write(b"".join(batch))
                batch = []
        p.stdin.write(b"".join(batch))
        p.stdin.close()
        if p.wait() != 0:
            raise RuntimeError("redis-cli --pipe failed")

    def save(self):
        t0 = time.monotonic()
        r = resp(self.port, "SAVE")
        if r != b"+OK":
            raise RuntimeError("SAVE: %r" % r)
        return time.monotonic() - t0

    def stop(self):
        try:
            resp(self.port, "SHUTDOWN", "NOSAVE")
        except OSError:
            pass
        self.proc.wait(60)

    def dbsize(self):
        return int(resp(self.port, "DBSIZE")[1:])

    def sample_ok(self, n):
        rnd = random.Random(7)
        for _ in range(200):
            i = rnd.randrange(n)
            if resp(self.port, "GET", b"key:%d" % i) != load_keys.value_of(i, VALUE):
                return False
        return True


def mib(path):
    return os.path.getsize(path) / (1 << 20)


def bench(args, n, rows):
    work = tempfile.mkdtemp(prefix="bench-snapshot-", dir=args.dir)
    try:
        memory = "%dM" % max(512, n * 200 // (1 << 20))
        print("== %d keys (ringcached --shards %d --memory %s)" % (n, args.shards, memory),
              flush=True)
        rc = Ringcached(os.path.join(args.build, "src", "ringcached"), work, args.shards, memory)
        rc.start()
        t0 = time.monotonic()
        bad = load_keys.load("127.0.0.1", rc.port, n, b"key:", VALUE, conns=4, depth=64,
                             timeout=max(120.0, n / 20000.0))
        print("   filled over HTTP in %.1f s (%d non-2xx); items %d"
              % (time.monotonic() - t0, bad, rc.items()), flush=True)
        res = {}
        for phase in ("warm", "cold"):
            t_stop = rc.stop()
            m = grep(rc.log, r"saved (\d+) items .* in (\d+) ms: shards writing (\d+) ms, "
                             r"sync (\d+) ms")
            res["save_" + phase] = (t_stop, int(m.group(2)), int(m.group(3)), int(m.group(4)),
                                    int(m.group(1)), mib(rc.snap))
            if phase == "cold":
                drop_cache(rc.snap)
            t_start = rc.start()
            until(lambda: grep(rc.log, r"loaded (\d+) items"), 10, "the load line")
            m = grep(rc.log, r"loaded (\d+) items .* in (\d+) ms")
            # every item saved is held (the store may have dropped a key or
            # two at the fill: an index displacement counts as an eviction)
            saved = res["save_" + phase][4]
            ok = int(m.group(1)) == saved and rc.items() == saved and saved >= n - n // 10000
            ok = ok and rc.sample_ok(n)
            res["load_" + phase] = (t_start, int(m.group(2)), int(m.group(1)), ok)
        rc.stop()

        r = Redis(work)
        r.start()
        t0 = time.monotonic()
        r.fill(n)
        print("   redis filled in %.1f s; dbsize %d" % (time.monotonic() - t0, r.dbsize()),
              flush=True)
        for phase in ("warm", "cold"):
            t_save = r.save()
            res["rsave_" + phase] = (t_save, mib(r.rdb))
            r.stop()
            if phase == "cold":
                drop_cache(r.rdb)
            t_start = r.start()
            m = grep(r.log, r"DB loaded from disk: ([0-9.]+) seconds")
            ok = r.dbsize() == n and r.sample_ok(n)
            res["rload_" + phase] = (t_start, float(m.group(1)), ok)
        r.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    for phase in ("warm", "cold"):
        s = res["save_" + phase]
        ld = res["load_" + phase]
        rs = res["rsave_" + phase]
        rl = res["rload_" + phase]
        rows.append((n, phase, s, ld, rs, rl))
        print("   %-4s ringcached: stop %.2f s (save %d ms: writing %d, sync %d; %d items, "
              "%.0f MiB); start to serving %.2f s (load %d ms; %d items; check %s)"
              % (phase, s[0], s[1], s[2], s[3], s[4], s[5], ld[0], ld[1], ld[2],
                 "ok" if ld[3] else "FAILED"), flush=True)
        print("   %-4s redis:      SAVE %.2f s (%.0f MiB); start to PONG %.2f s (log: %.3f s; "
              "check %s)" % (phase, rs[0], rs[1], rl[0], rl[1], "ok" if rl[2] else "FAILED"),
              flush=True)


def bench_check(args, n):
    """--redis: the L2 check of a loaded snapshot (src/snapshot/verify.c).
    Both instances share one redis-server; the keys are written through."""
    work = tempfile.mkdtemp(prefix="bench-snapshot-check-", dir=args.dir)
    try:
        r = Redis(work)
        r.start()
        memory = "%dM" % max(512, n * 200 // (1 << 20))
        rc = Ringcached(os.path.join(args.build, "src", "ringcached"), work, args.shards, memory,
                        ["--redis", "redis://127.0.0.1:%d" % r.port])
        rc.start()
        print("== %d keys with --redis: the check against Redis at the restart" % n, flush=True)
        t0 = time.monotonic()
        bad = load_keys.load("127.0.0.1", rc.port, n, b"key:", VALUE, conns=4, depth=64,
                             timeout=max(120.0, n / 5000.0))
        print("   written through in %.1f s (%d non-2xx); redis dbsize %d"
              % (time.monotonic() - t0, bad, r.dbsize()), flush=True)
        rc.stop()
        t_start = rc.start()
        until(lambda: grep(rc.log, r"checked against Redis"), 600, "the check line")
        m = grep(rc.log, r"loaded (\d+) items .* in (\d+) ms; checked against Redis in (\d+) "
                         r"ms: (\d+) current, (\d+) changed or gone \(dropped\), (\d+) not")
        print("   start to serving %.2f s: load %s ms, check %s ms (%s current, %s dropped, %s "
              "not answered)" % (t_start, m.group(2), m.group(3), m.group(4), m.group(5),
                                 m.group(6)), flush=True)
        rc.stop()
        r.stop()
        return (n, t_start, int(m.group(2)), int(m.group(3)), int(m.group(4)))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--keys", default="1000000,10000000")
    ap.add_argument("--shards", type=int, default=2)
    ap.add_argument("--dir", default="/var/tmp")
    ap.add_argument("--check-keys", default="",
                    help="also time the --redis check of a snapshot of these many keys")
    a = ap.parse_args()
    for tool in ("redis-server", "redis-cli"):
        if not shutil.which(tool):
            sys.exit("bench-snapshot: %s not found (apt-get install redis-server)" % tool)
    rows = []
    for n in (int(x) for x in a.keys.split(",") if x):
        bench(a, n, rows)
    checks = [bench_check(a, int(x)) for x in a.check_keys.split(",") if x]
    print("\n| keys | cache | ringcached save (stop) | ringcached load (start to serving) | "
          "file | Redis SAVE | Redis load (start to PONG) | RDB |")
    print("|---|---|---|---|---|---|---|---|")
    for n, phase, s, ld, rs, rl in rows:
        print("| %dM | %s | %.2f s (%.2f s) | %.2f s (%.2f s) | %.0f MiB | %.2f s | %.2f s (%.2f s) "
              "| %.0f MiB |" % (n // 1000000, phase, s[1] / 1000.0, s[0], ld[1] / 1000.0, ld[0],
                              s[5], rs[0], rl[1], rl[0], rs[1]))
    if checks:
        print("\n| keys | --redis: start to serving | load | check against Redis | current |")
        print("|---|---|---|---|---|")
        for n, t, ld, ck, cur in checks:
            print("| %dM | %.2f s | %.2f s | %.2f s | %d |" % (n // 1000000, t, ld / 1000.0,
                                                             ck / 1000.0, cur))
    if not all(r[3][3] and r[5][2] for r in rows):
        sys.exit("bench-snapshot: a server did not hold every key after its load")


if __name__ == "__main__":
    main()
