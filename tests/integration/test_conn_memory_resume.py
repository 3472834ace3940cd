#!/usr/bin/env python3
"""A shard over its --conn-memory share resumes its connections once their
answers are sent, whatever buffer capacity they keep (regression: drained
buffers of up to 256 KiB were kept and counted, so connections paused with
enough of them held the shard over 7/8 of its share for ever: every
connection paused, nothing in flight, the shard idle until --idle-timeout
closed them; found by perf/stall-repro.py).

One shard, --max-value 64K, --conn-memory 17M (its least: two connections'
worst case), no compression.  CONNS connections each pipeline DEPTH GETs of
a 15000-byte value (copied into the answer, not sent from the store: under
16 KiB), so an answer batch takes one buffer of 256 KiB, and after two
rounds each connection keeps two of them (the one being filled and the one
sent: conn.c swaps them), CONNS x 512 KiB in all, over the share.  Then:

 1. the share was reached (memory_pauses > 0), else this proves nothing;
 2. every request of ROUNDS rounds on every connection is answered, intact
    and in order (a stall shows as a read that fails: the daemon closes the
    paused connections at --idle-timeout, IDLE seconds here, or the read
    gives up after READ_TIMEOUT);

usage: test_conn_memory_resume.py [path/to/ringcached]
"""

import os

from harness import Server, build_request, run_main, stats

SHARE = 17 << 20
CONNS = 40               # x 2 x 256 KiB = 20 MiB kept: over SHARE
DEPTH = 16               # 16 x ~15.2 KB answers: one 256 KiB buffer (BUF_KEEP, kept)
ROUNDS = 4
VALUE = 15000            # under OUTQ_REF_MIN (16 KiB): copied into the answer
IDLE = 10                # --idle-timeout: a stalled connection is closed then
READ_TIMEOUT = 30


def main(c):
    flags = ["--shards", "1", "--memory", "64M", "--max-value", "64K",
             "--conn-memory", str(SHARE), "--compress-threads", "0",
             "--idle-timeout", str(IDLE)]
    srv = Server(flags, checks=c).start()
    value = os.urandom(VALUE)
    r = srv.request("PUT", "/cache/kept", value, [("Content-Type", "application/octet-stream")])
    c.check(r.status in (201, 204), "PUT of the %d-byte value" % VALUE, repr(r.status))
    conns = [srv.connect(timeout=READ_TIMEOUT) for _ in range(CONNS)]
    batch = build_request("GET", "/cache/kept") * DEPTH
    answered, bad, failure = 0, 0, None
    try:
        for rnd in range(ROUNDS):
            # all connections' requests first, then the answers: the daemon
            # holds every connection's batch at once
            for conn in conns:
                conn.send(batch)
            for i, conn in enumerate(conns):
                for _ in range(DEPTH):
                    resp = conn.read_response()
                    answered += 1
                    bad += resp.status != 200 or resp.body != value
    except Exception as e:  # noqa: BLE001 - a stall: reported below
        failure = "round %d, connection %d: %r" % (rnd + 1, i, e)
    doc = stats(srv)
    shard = doc["per_shard"][0]
    c.check(shard["memory_pauses"] > 0,
            "1. the connections' buffers reached the shard's share (memory_pauses %d)"
            % shard["memory_pauses"])
    c.check(failure is None and answered == CONNS * DEPTH * ROUNDS and bad == 0,
            "2. all %d requests of %d paused-and-resumed connections answered, intact"
            % (CONNS * DEPTH * ROUNDS, CONNS),
            "answered %d, bad %d, %s; conn_memory %d of a %d share"
            % (answered, bad, failure, shard["conn_memory"], SHARE))
    for conn in conns:
        conn.close()
    srv.stop()


if __name__ == "__main__":
    run_main("test_conn_memory_resume", main)
