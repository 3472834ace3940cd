#!/usr/bin/env python3
"""A shard over its --conn-memory share resumes its connections (README
"Memory per connection"): nothing it holds may keep it there for ever, with
every connection paused, nothing in flight and the shard idle.  A was
found by perf/stall-repro.py, B by reading conn_pause_all() after it; each
failed before its fix.

A. Kept buffers.  Drained buffers of up to 256 KiB were kept and counted:
connections paused with enough of them stayed over 7/8 of the share until
--idle-timeout closed them.  One shard, --max-value 64K, --conn-memory 17M
(its least: two connections' worst case), no compression.  CONNS
connections each pipeline DEPTH GETs of
a 15000-byte value (copied into the answer, not sent from the store: under
16 KiB), so an answer batch takes one buffer of 256 KiB, and after two
rounds each connection keeps two of them (the one being filled and the one
sent: conn.c swaps them), CONNS x 512 KiB in all, over the share.  Then:

 A1. the share was reached (memory_pauses > 0), else this proves nothing;
 A2. every request of ROUNDS rounds on every connection is answered, intact
    and in order (a stall shows as a read that fails: the daemon closes the
    paused connections at --idle-timeout, IDLE seconds here, or the read
    gives up after READ_TIMEOUT).

B. Requests under way.  The pause stopped reading connections halfway
through a request, whose input only the rest of it can free: connections
paused halfway with enough of it between them stayed over 7/8 of the share
until --request-timeout answered them 408.  The README counts the rest of
the request being received as what may land past the share.  One shard,
--max-value 4M, --conn-memory 41M (its least), no compression.  One at a
time, PUTS connections send a PUT head and its 4 MiB body but its last
4 KiB (together over the share); then each sends the rest.  Then:

 B1. the share was reached (memory_pauses > 0);
 B2. every PUT is answered 201 (a stall shows as a send or read that fails:
    408 at --request-timeout, or the socket's READ_TIMEOUT).

usage: test_conn_memory_resume.py [path/to/ringcached]
"""

import os

from harness import Server, build_request, run_main, stats

MiB = 1 << 20
READ_TIMEOUT = 30        # seconds a send or read may wait (a stall fails it)

# A: kept buffers
A_SHARE = 17 * MiB
CONNS = 40               # x 2 x 256 KiB = 20 MiB kept: over A_SHARE
DEPTH = 16               # 16 x ~15.2 KB answers: one 256 KiB buffer (BUF_KEEP, kept)
ROUNDS = 4
VALUE = 15000            # under OUTQ_REF_MIN (16 KiB): copied into the answer
IDLE = 10                # --idle-timeout: a stalled connection is closed then

# B: requests under way
B_SHARE = 41 * MiB
PUTS = 12                # x 4 MiB: over B_SHARE
PUT_VALUE = 4 * MiB - 1024
TAIL = 4096              # held back until every PUT is under way


def share_reached(c, srv, what):
    """Checks that the shard paused for memory (else the case proves
    nothing); returns its /stats entry."""
    shard = stats(srv)["per_shard"][0]
    c.check(shard["memory_pauses"] > 0, "%s reached the shard's share (memory_pauses %d)"
            % (what, shard["memory_pauses"]))
    return shard


def kept_buffers(c):
    flags = ["--shards", "1", "--memory", "64M", "--max-value", "64K",
             "--conn-memory", str(A_SHARE), "--compress-threads", "0",
             "--idle-timeout", str(IDLE)]
    srv = Server(flags, checks=c).start()
    value = os.urandom(VALUE)
    r = srv.request("PUT", "/cache/kept", value, [("Content-Type", "application/octet-stream")])
    c.check(r.status in (201, 204), "A. PUT of the %d-byte value" % VALUE, repr(r.status))
    conns = [srv.connect(timeout=READ_TIMEOUT) for _ in range(CONNS)]
    batch = build_request("GET", "/cache/kept") * DEPTH
    answered, bad, failure, where = 0, 0, None, ""
    try:
        for rnd in range(ROUNDS):
            # all connections' requests first, then the answers: the daemon
            # holds every connection's batch at once
            where = "round %d, sending" % (rnd + 1)
            for conn in conns:
                conn.send(batch)
            for i, conn in enumerate(conns):
                where = "round %d, connection %d" % (rnd + 1, i)
                for _ in range(DEPTH):
                    resp = conn.read_response()
                    answered += 1
                    bad += resp.status != 200 or resp.body != value
    except Exception as e:  # noqa: BLE001 - a stall: reported below
        failure = "%s: %r" % (where, e)
    shard = share_reached(c, srv, "A1. the connections' buffers")
    c.check(failure is None and answered == CONNS * DEPTH * ROUNDS and bad == 0,
            "A2. all %d requests of %d paused-and-resumed connections answered, intact"
            % (CONNS * DEPTH * ROUNDS, CONNS),
            "answered %d, bad %d, %s; conn_memory %d of a %d share"
            % (answered, bad, failure, shard["conn_memory"], A_SHARE))
    for conn in conns:
        conn.close()
    srv.stop()


def requests_under_way(c):
    flags = ["--shards", "1", "--memory", "256M", "--max-value", "4M",
             "--conn-memory", str(B_SHARE), "--compress-threads", "0"]
    srv = Server(flags, checks=c).start()
    value = b"v" * PUT_VALUE
    conns, statuses, failure, where = [], [], None, ""
    try:
        for i in range(PUTS):
            where = "PUT %d, under way" % i
            conn = srv.connect(timeout=READ_TIMEOUT)
            conns.append(conn)
            conn.send(build_request("PUT", "/cache/big-%d" % i, value,
                                    [("Content-Type", "application/octet-stream")])[:-TAIL])
        for i, conn in enumerate(conns):
            where = "PUT %d, the rest" % i
            conn.send(value[-TAIL:])
            statuses.append(conn.read_response().status)
    except Exception as e:  # noqa: BLE001 - a stall: reported below
        failure = "%s: %r" % (where, e)
    shard = share_reached(c, srv, "B1. the requests under way")
    c.check(failure is None and statuses == [201] * PUTS,
            "B2. all %d PUTs under way when the share was reached are answered 201" % PUTS,
            "statuses %s, %s; conn_memory %d of a %d share"
            % (statuses, failure, shard["conn_memory"], B_SHARE))
    for conn in conns:
        conn.close()
    srv.stop()


def main(c):
    c.section("A. connections paused with kept buffers")
    kept_buffers(c)
    c.section("B. connections paused halfway through a request")
    requests_under_way(c)


if __name__ == "__main__":
    run_main("test_conn_memory_resume", main)
