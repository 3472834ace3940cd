#!/usr/bin/env python3
"""The RESP front end against hostile clients (docs/resp.md): regression
tests for what such clients found, each named after what it guards.

  - an empty value answered from a shard that had built none before (SET
    ... GET, GETDEL): its bulk string ends with CRLF, the next reply intact

Every server here runs with two shards, so keys live on both and commands
travel between them.

Usage: test_resp_hostile.py [path/to/ringcached]
"""

import socket

from harness import keys_per_shard, run_main, wait_for
from resp_harness import RespServer, encode

NSHARDS = 2


def empty_values_on_fresh_shards(c):
    c.section("an empty value answered from a shard that built no value before")
    # a fresh server: no shard has built or copied a value for a RESP
    # command yet, so the copy of an empty one has no address at all
    with RespServer(checks=c) as srv, srv.client() as r:
        keys = keys_per_shard("empty-", NSHARDS, 2)
        for shard in range(NSHARDS):
            k_get, k_del = keys[shard]
            r.cmd("SET", k_get, "")
            r.cmd("SET", k_del, "")
            r.send(encode("SET", k_get, "x", "GET") + encode("PING"))
            want = b"$0\r\n\r\n+PONG\r\n"
            c.eq(received(r, len(want)), want, "shard %d: SET ... GET of an empty value: $0, "
                 "its CRLF, then the next reply" % shard)
            r.send(encode("GETDEL", k_del) + encode("PING"))
            c.eq(received(r, len(want)), want, "shard %d: GETDEL of an empty value: $0, its "
                 "CRLF, then the next reply" % shard)


def received(r, n, timeout=2.0):
    """The next n bytes client r receives, or fewer if no more come within
    `timeout` (a reply shorter than it should be is seen as such)."""
    r.sock.settimeout(timeout)
    try:
        while len(r.buf) < n:
            d = r.sock.recv(65536)
            if not d:
                break
            r.buf += d
    except socket.timeout:
        pass
    out, r.buf = r.buf[:n], r.buf[n:]
    return out


def body(c):
    empty_values_on_fresh_shards(c)


if __name__ == "__main__":
    run_main("test_resp_hostile", body)
