#!/usr/bin/env python3
"""The memory bound (issue 3): with --memory 64M, write 1M distinct 100-byte
values over HTTP (about twice what fits).  Throughout, the process RSS stays
under the budget plus the fixed overhead documented in docs/store.md and the
server answers /health; afterwards the most recent keys read back exactly,
older ones read back exactly or not at all, and /stats shows evictions.

Under AddressSanitizer (or another sanitizer with shadow memory) the RSS
bound is reported as not applicable (SKIP, not counted as passed): the
runtime's shadow and quarantine are in the RSS.  Every other check runs.

usage: test_memory_budget.py [path/to/ringcached]
"""

import random
import selectors
import socket
import time

from harness import Server, run_main, shadow_sanitizers, stats

MiB = 1 << 20
MEMORY = 64 * MiB
SHARDS = 2
RECV_BUFFERS = 256
RECV_BUFFER_SIZE = 16384
KEYS = 1000000
SIZE = 100
CONNS = 4
DEPTH = 64
# What the process may hold beyond --memory (docs/store.md): the receive
# buffer rings (recv-buffers x recv-buffer-size per shard), the RSS the
# process has before any traffic (binary, libraries, stacks, rings), and
# 8 MiB for connection buffers, allocator slack and the store's segment
# tables.
SLACK = 8 * MiB


def value_of(i):
    seed = b"v%d:" % i
    return (seed * (SIZE // len(seed) + 1))[:SIZE]


def key_of(i):
    return b"mem:%d" % i


def http_get(port, path, timeout=5.0):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.sendall(b"GET %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n" % path)
    data = b""
    while True:
        chunk = s.recv(1 << 16)
        if not chunk:
            break
        data += chunk
    s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return (int(head.split(b" ", 2)[1]) if head else 0), body


def load(c, srv, limit):
    """Pipelined PUTs over CONNS connections; probes health and RSS as it goes."""
    conns = [socket.create_connection(("127.0.0.1", srv.port)) for _ in range(CONNS)]
    sel = selectors.DefaultSelector()
    state = {}
    for s in conns:
        sel.register(s, selectors.EVENT_READ)
        state[s] = [0, b"", 0]   # responses due, tail of last read, non-2xx
    nxt = done = 0
    max_rss = 0
    health_fail = []
    next_probe = 0
    deadline = time.monotonic() + 240
    while done < KEYS:
        for s in conns:
            st = state[s]
            if st[0] == 0 and nxt < KEYS:
                k = min(DEPTH, KEYS - nxt)
                s.sendall(b"".join(
                    b"PUT /cache/%s HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n%s"
                    % (key_of(i), SIZE, value_of(i)) for i in range(nxt, nxt + k)))
                st[0] = k
                nxt += k
        for key, _ in sel.select(timeout=1.0):
            s = key.fileobj
            st = state[s]
            data = s.recv(1 << 20)
            if not data:
                raise RuntimeError("server closed a loading connection")
            buf = st[1] + data   # 8 bytes < the 9-byte marker: counted once
            got = buf.count(b"HTTP/1.1 ")
            st[2] += got - buf.count(b"HTTP/1.1 2")
            st[1] = buf[-8:]
            st[0] -= got
            done += got
        if done >= next_probe:
            next_probe += 50000
            max_rss = max(max_rss, srv.rss())
            try:
                status, _ = http_get(srv.port, b"/health", timeout=5.0)
            except OSError as e:
                status = repr(e)
            if status != 200:
                health_fail.append((done, status))
        if time.monotonic() > deadline:
            raise RuntimeError("load timed out at %d of %d" % (done, KEYS))
    max_rss = max(max_rss, srv.rss())
    bad = sum(st[2] for st in state.values())
    for s in conns:
        s.close()
    c.eq(bad, 0, "all %d PUTs answered 2xx" % KEYS)
    c.check(not health_fail, "GET /health answered 200 at every probe during the load",
            health_fail[:5])
    what = "RSS stayed under --memory + overhead during the load"
    sanitizers = shadow_sanitizers(srv.binary)
    if sanitizers:
        c.skip(what, "the binary is built with %s, whose shadow memory and quarantine "
               "of freed blocks count in the RSS but are not the server's memory; "
               "a build without it checks this bound" % " and ".join(sanitizers))
    else:
        c.check(max_rss <= limit, what,
                "max %.1f MiB, limit %.1f MiB" % (max_rss / MiB, limit / MiB))
    c.note("max RSS %.1f MiB (budget %d MiB, limit %.1f MiB%s)"
           % (max_rss / MiB, MEMORY // MiB, limit / MiB,
              ", not compared" if sanitizers else ""))


def body(c):
    c.section("--memory 64M, %d shards, 1M distinct 100-byte values" % SHARDS)
    srv = Server(["--shards", str(SHARDS), "--memory", "64M", "--hugepages", "off",
                  "--recv-buffers", str(RECV_BUFFERS),
                  "--recv-buffer-size", str(RECV_BUFFER_SIZE)], checks=c).start()
    base = srv.rss()
    limit = MEMORY + SHARDS * RECV_BUFFERS * RECV_BUFFER_SIZE + base + SLACK
    c.note("RSS at start %.1f MiB" % (base / MiB))
    t0 = time.monotonic()
    load(c, srv, limit)
    c.note("loaded in %.1f s" % (time.monotonic() - t0))

    recent = range(KEYS - 2000, KEYS)
    wrong = [i for i in recent if http_get(srv.port, b"/cache/" + key_of(i)) != (200, value_of(i))]
    c.check(not wrong, "the 2000 most recent keys read back exactly", wrong[:5])

    rng = random.Random(3)
    sample = rng.sample(range(KEYS - 2000), 2000)
    hits = corrupt = 0
    for i in sample:
        status, got = http_get(srv.port, b"/cache/" + key_of(i))
        if status == 200:
            hits += 1
            corrupt += got != value_of(i)
        elif status != 404:
            corrupt += 1
    c.eq(corrupt, 0, "older keys read back exactly or miss (404)")
    c.note("%d of 2000 older keys still cached" % hits)

    total = stats(srv)["total"]
    c.check(total["evictions"] > 0, "the store evicted to stay in budget", total["evictions"])
    c.check(total["arena_bytes"] <= MEMORY, "arenas total at most --memory", total["arena_bytes"])
    c.check(total["items"] > KEYS // 3, "more than a third of the keys fit in 64M",
            total["items"])
    c.note("%d items cached, %d evicted" % (total["items"], total["evictions"]))


if __name__ == "__main__":
    run_main("test_memory_budget", body)
