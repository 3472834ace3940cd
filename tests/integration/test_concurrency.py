#!/usr/bin/env python3
"""1000 connections open at once, each doing a PUT and a GET of its own key.

All connections are opened first and held, then every connection sends its
PUT before any response is read, then every GET: the server has 1000 live
connections with requests in flight on each.  A selector reads whatever is
ready, so a slow connection does not serialise the rest.

usage: test_concurrency.py [path/to/ringcached]
"""

import selectors
import time

from harness import WRITE_OK, Conn, Server, build_request, raise_nofile, run_main

N = 1000
DEADLINE = 60.0


def read_all(c, conns, what, head_only=False):
    """One response from each connection, in whatever order they arrive."""
    sel = selectors.DefaultSelector()
    responses = {}
    for i, cn in enumerate(conns):
        cn.sock.setblocking(False)
        sel.register(cn.sock, selectors.EVENT_READ, i)
    deadline = time.monotonic() + DEADLINE
    try:
        while len(responses) < len(conns) and time.monotonic() < deadline:
            for key, _ in sel.select(timeout=1.0):
                i = key.data
                cn = conns[i]
                try:
                    data = cn.sock.recv(65536)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError as e:
                    responses[i] = e
                    sel.unregister(cn.sock)
                    continue
                if not data:
                    responses[i] = EOFError("closed")
                    sel.unregister(cn.sock)
                    continue
                cn.buf += data
                if b"\r\n\r\n" in cn.buf:
                    head, _, rest = cn.buf.partition(b"\r\n\r\n")
                    cl = 0
                    for ln in head.split(b"\r\n")[1:]:
                        if ln.lower().startswith(b"content-length:"):
                            cl = int(ln.split(b":", 1)[1])
                    if head_only or len(rest) >= cl:
                        cn.sock.setblocking(True)
                        cn.sock.settimeout(5)
                        sel.unregister(cn.sock)
                        responses[i] = cn.read_response()
    finally:
        sel.close()
        for cn in conns:
            try:
                cn.sock.setblocking(True)
                cn.sock.settimeout(5)
            except OSError:
                pass
    missing = len(conns) - len(responses)
    c.eq(missing, 0, "%s: every one of %d connections answered" % (what, len(conns)))
    return responses


def main(c):
    soft = raise_nofile(N + 200)
    c.check(soft >= N + 100, "RLIMIT_NOFILE %d leaves room for %d connections" % (soft, N))
    srv = Server(["--shards", "2", "--memory", "64M"], checks=c).start()

    c.section("open %d connections" % N)
    conns = []
    try:
        for i in range(N):
            conns.append(Conn(srv.port, timeout=10))
        c.eq(len(conns), N, "%d connections established" % N)

        c.section("PUT on all, then read")
        for i, cn in enumerate(conns):
            cn.send(build_request("PUT", "/cache/conn-%d" % i, b"value-of-%d" % i))
        res = read_all(c, conns, "PUT")
        bad = [(i, r) for i, r in res.items()
               if isinstance(r, Exception) or r.status not in WRITE_OK]
        c.check(not bad, "all %d PUTs -> 201/204" % N, repr(bad[:5]))

        c.section("GET on all, then read")
        for i, cn in enumerate(conns):
            cn.send(build_request("GET", "/cache/conn-%d" % i))
        res = read_all(c, conns, "GET")
        bad = [(i, r) for i, r in res.items()
               if isinstance(r, Exception) or r.status != 200 or r.body != b"value-of-%d" % i]
        c.check(not bad, "all %d GETs -> 200 with their own value" % N, repr(bad[:5]))

        c.section("cross-check: every key from one connection")
        cn = conns[0]
        cn.send(b"".join(build_request("GET", "/cache/conn-%d" % i) for i in range(N)))
        wrong = [i for i in range(N) if cn.read_response().body != b"value-of-%d" % i]
        c.check(not wrong, "%d pipelined GETs on one connection read every value" % N, repr(wrong[:5]))
    finally:
        for cn in conns:
            cn.close()
    c.check(srv.healthy(), "server healthy after %d connections closed" % N)


if __name__ == "__main__":
    run_main("test_concurrency", main)
