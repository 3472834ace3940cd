#!/usr/bin/env python3
"""Answers larger than the room a connection holds for them (issue 11,
defect 4; docs/architecture.md "The pipeline").

A request that goes to another shard (or to Redis) gets 64 KiB of room for
its answer in its connection; a larger answer comes back unrendered and is
made again once the connection has room for it ("bounce"), so a client
that pipelines GETs of large values holds at most CONN_OUT_MAX plus one
answer.  What a client must see:

- pipelined GETs of large values on keys of both shards, mixed with small
  ones, all answered right and in order (and counted once in /stats);
- a GET of a large value on another shard followed, on the same
  connection, by a PUT of that key: the GET is answered with the value it
  had before the PUT or refused with 503 and Retry-After, never with the
  PUT's value; what follows the PUT sees the PUT.

usage: test_answer_room.py [path/to/ringcached]
"""

import os
import socket
import struct

from harness import Server, build_request, keys_per_shard, run_main, stats, stats_delta, wait_for

NSHARDS = 2


def body(c):
    with Server(["--shards", str(NSHARDS), "--memory", "64M"], checks=c).start() as srv:
        keys = keys_per_shard("room-", NSHARDS, 2)
        big = {s: os.urandom((1 << 20) + s) for s in keys}
        small = {s: b"small-%d" % s for s in keys}
        for s, ks in keys.items():
            c.eq(srv.request("PUT", "/cache/" + ks[0], big[s], timeout=20).status, 201,
                 "PUT 1 MiB at %s (shard %d)" % (ks[0], s))
            c.eq(srv.request("PUT", "/cache/" + ks[1], small[s]).status, 201,
                 "PUT a small value at %s" % ks[1])

        c.section("pipelined GETs of large and small values on both shards")
        order = []
        for i in range(24):
            s = i % NSHARDS
            order.append((keys[s][i // 2 % 2], big[s] if i // 2 % 2 == 0 else small[s]))
        before = stats(srv)
        with srv.connect(timeout=30) as conn:
            conn.send(b"".join(build_request("GET", "/cache/" + k) for k, _ in order))
            got = [conn.read_response() for _ in order]
        c.check(all(r.status == 200 and r.body == v for r, (_, v) in zip(got, order)),
                "24 pipelined GETs: every answer is its value, in request order",
                repr([(r.status, len(r.body)) for r in got]))
        d = stats_delta(before["total"], stats(srv)["total"])
        c.eq(d["hits"], 24, "each counted once as a hit (made again for room or not)")

        c.section("GET of a large value, then PUT of its key, on one connection")
        for s, ks in keys.items():
            k = ks[0]
            new = b"new value %d" % s
            with srv.connect(timeout=30) as conn:
                conn.send(build_request("GET", "/cache/" + k) +
                          build_request("PUT", "/cache/" + k, new) +
                          build_request("GET", "/cache/" + k))
                first, put, last = (conn.read_response() for _ in range(3))
            ok = (first.status == 200 and first.body == big[s]) or (
                first.status == 503 and first.header("Retry-After") is not None)
            c.check(ok, "key of shard %d: the GET before the PUT answers the old value or "
                    "503 with Retry-After, never the new one" % s,
                    "%d, %d bytes, %r" % (first.status, len(first.body), first.body[:20]))
            c.within(put.status, {204}, "... the PUT replaces it")
            c.check(last.status == 200 and last.body == new, "... the GET after it sees it",
                    repr(last))
            c.eq(srv.request("PUT", "/cache/" + k, big[s], timeout=20).status, 204,
                 "... (the large value put back)")


def resets_while_waiting(c):
    """Answers that came back for room and wait to be sent again are freed
    when their connection is reset (a review found them leaked: the
    shard's conn_memory then only grew, until every connection was paused
    for good)."""
    c.section("connections reset while answers wait for room")
    with Server(["--shards", str(NSHARDS), "--memory", "256M"], checks=c).start() as srv:
        keys = keys_per_shard("leak-", NSHARDS, 4)
        big = os.urandom(1 << 20)
        for ks in keys.values():
            for k in ks:
                srv.request("PUT", "/cache/" + k, big, timeout=20)
        allk = [k for ks in keys.values() for k in ks]
        for _ in range(30):
            s = socket.create_connection(("127.0.0.1", srv.port))
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.sendall(b"".join(build_request("GET", "/cache/" + k) for k in allk * 4))
            wait_for(lambda: stats(srv)["total"]["responses_2xx"] > 0, 0.3)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()
        def settled():
            per = stats(srv)["per_shard"]
            # the connection asking is the only one left: a few KiB of its own
            return all(p["conn_memory"] <= 4096 * p["connections"] for p in per)
        c.check(wait_for(settled, 10), "every shard's conn_memory returns to what its open "
                "connections hold (4 KiB each here; 0 on a shard without any)",
                repr([(p["connections"], p["conn_memory"]) for p in stats(srv)["per_shard"]]))


def main(c):
    body(c)
    resets_while_waiting(c)


if __name__ == "__main__":
    run_main("test_answer_room", main)
