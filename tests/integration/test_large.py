#!/usr/bin/env python3
"""A 4 MiB value round-trips byte-exact, written with Content-Length and
with chunked coding.

usage: test_large.py [path/to/ringcached]
"""

import hashlib
import os
import random

from harness import WRITE_OK, Server, build_request, chunked, run_main

SIZE = 4 << 20


def digest(b):
    return hashlib.sha256(b).hexdigest()[:16]


def main(c):
    srv = Server(["--shards", "2", "--memory", "64M"], checks=c).start()
    value = os.urandom(SIZE)
    c.section("4 MiB with Content-Length")
    with srv.connect(timeout=20) as conn:
        r = conn.roundtrip("PUT", "/cache/big-cl", value)
        c.within(r.status, WRITE_OK, "PUT of 4 MiB with Content-Length -> 201/204")
        r = conn.roundtrip("GET", "/cache/big-cl")
        c.eq(r.status, 200, "GET -> 200")
        c.eq(r.header("Content-Length"), str(SIZE), "Content-Length 4194304")
        c.eq(digest(r.body), digest(value), "body byte-exact (sha256)")
        r = conn.roundtrip("HEAD", "/cache/big-cl")
        c.eq(r.header("Content-Length"), str(SIZE), "HEAD Content-Length 4194304")

    c.section("4 MiB chunked, uneven chunk sizes")
    rng = random.Random(4)
    sizes = tuple(rng.choice((1, 3, 511, 4096, 65536, 100003)) for _ in range(64))
    value2 = os.urandom(SIZE)
    with srv.connect(timeout=20) as conn:
        conn.send(build_request("PUT", "/cache/big-chunked", chunked(value2, sizes),
                                [("Transfer-Encoding", "chunked")]))
        c.within(conn.read_response().status, WRITE_OK, "chunked PUT of 4 MiB -> 201/204")
        r = conn.roundtrip("GET", "/cache/big-chunked")
        c.eq(digest(r.body), digest(value2), "body byte-exact (sha256)")
        # One more request on the same connection: the big body was framed right.
        c.eq(conn.roundtrip("GET", "/health").status, 200, "connection still in step afterwards")

    c.section("both large values readable from many connections at once")
    conns = [srv.connect(timeout=20) for _ in range(4)]
    try:
        for i, cn in enumerate(conns):
            cn.send(build_request("GET", "/cache/big-cl" if i % 2 else "/cache/big-chunked"))
        ok = all(digest(cn.read_response().body) == digest(value if i % 2 else value2)
                 for i, cn in enumerate(conns))
        c.check(ok, "4 concurrent 4 MiB GETs byte-exact")
    finally:
        for cn in conns:
            cn.close()
    c.check(srv.healthy(), "server healthy")


if __name__ == "__main__":
    run_main("test_large", main)
