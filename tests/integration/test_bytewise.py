#!/usr/bin/env python3
"""Requests that arrive a byte at a time, clients that stall, and the idle
and request timeouts.

usage: test_bytewise.py [path/to/ringcached]
"""

import time

from harness import WRITE_OK, Server, build_request, chunked, run_main


def byte_at_a_time(c, srv):
    c.section("a byte at a time")
    with srv.connect() as conn:
        conn.send_slowly(build_request("PUT", "/cache/slow%20key", b"slowly-sent-value"))
        c.within(conn.read_response().status, WRITE_OK, "PUT sent one byte per segment -> 201/204")
        conn.send_slowly(build_request("GET", "/cache/slow%20key"))
        r = conn.read_response()
        c.check(r.status == 200 and r.body == b"slowly-sent-value",
                "GET sent one byte per segment -> 200 with the value", repr(r))
        conn.send_slowly(build_request("PUT", "/cache/slow-chunked",
                                       chunked(b"chunk-by-chunk", (3,)),
                                       [("Transfer-Encoding", "chunked")]))
        c.within(conn.read_response().status, WRITE_OK, "chunked PUT one byte per segment -> 201/204")
        # Two requests dribbled together: the boundary between them also
        # falls between segments.
        conn.send_slowly(build_request("GET", "/cache/slow-chunked") + build_request("GET", "/health"))
        r = conn.read_response()
        c.eq(r.body, b"chunk-by-chunk", "chunked value read back")
        c.eq(conn.read_response().status, 200, "second dribbled request answered too")


def stalled(c, srv):
    c.section("a stalled client blocks no one (1 shard, so both share it)")
    srv.request("PUT", "/cache/s", b"served")
    stall_head = srv.connect()
    stall_body = srv.connect()
    try:
        stall_head.send(b"GET /cache/s HTTP/1.1\r\nHost: x\r\nX-Half: ")
        stall_body.send(b"PUT /cache/sb HTTP/1.1\r\nHost: x\r\nContent-Length: 20\r\n\r\n0123456789")
        ok = 0
        for i in range(20):
            r = srv.request("GET", "/cache/s")
            ok += r.status == 200 and r.body == b"served"
        c.eq(ok, 20, "20 requests on other connections answered while two clients stall")
        with srv.connect() as other:
            ok = sum(other.roundtrip("GET", "/health").status == 200 for _ in range(10))
        c.eq(ok, 10, "and 10 on one keep-alive connection")
        stall_head.send(b"done\r\n\r\n")
        r = stall_head.read_response()
        c.check(r.status == 200 and r.body == b"served", "stalled head completes and is answered",
                repr(r))
        stall_body.send(b"abcdefghij")
        c.within(stall_body.read_response().status, WRITE_OK, "stalled body completes -> 201/204")
        c.eq(srv.request("GET", "/cache/sb").body, b"0123456789abcdefghij", "its value is whole")
    finally:
        stall_head.close()
        stall_body.close()


def idle_timeout(c):
    c.section("--idle-timeout 1 (request timeout 30)")
    srv = Server(["--shards", "1", "--memory", "16M", "--idle-timeout", "1",
                  "--request-timeout", "30"], checks=c).start()
    silent = srv.connect()
    used = srv.connect()
    try:
        t0 = time.monotonic()
        used.roundtrip("GET", "/health")
        c.check(silent.closed_by_peer(timeout=8), "a connection that never sent a byte is closed")
        c.note("closed after %.1f s" % (time.monotonic() - t0))
        c.check(used.closed_by_peer(timeout=8), "a connection idle after a response is closed")
        c.check(srv.healthy(), "server healthy after closing idle connections")
    finally:
        silent.close()
        used.close()
    srv.stop()


def request_timeout(c):
    c.section("--request-timeout 1 (idle timeout 60)")
    srv = Server(["--shards", "1", "--memory", "16M", "--idle-timeout", "60",
                  "--request-timeout", "1"], checks=c).start()
    idle = srv.connect()
    half_head = srv.connect()
    half_body = srv.connect()
    try:
        idle.roundtrip("GET", "/health")
        half_head.send(b"GET /cache/x HTTP/1.1\r\nHost: x\r\n")
        half_body.send(b"PUT /cache/x HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n01234")

        def gone(conn):
            # The server may answer 408 before closing; either way it must close.
            try:
                conn.read_until_close(timeout=8)
                return True
            except OSError:
                return False
        t0 = time.monotonic()
        c.check(gone(half_head), "a stalled half head is closed")
        c.note("closed after %.1f s" % (time.monotonic() - t0))
        c.check(gone(half_body), "a stalled half body is closed")
        c.check(idle.still_open(), "an idle connection (60 s idle timeout) is still open meanwhile")
        r = idle.roundtrip("GET", "/health")
        c.eq(r.status, 200, "and still served")
    finally:
        idle.close()
        half_head.close()
        half_body.close()
    srv.stop()


def main(c):
    srv = Server(["--shards", "1", "--memory", "16M"], checks=c).start()
    byte_at_a_time(c, srv)
    stalled(c, srv)
    srv.stop()
    srv2 = Server(["--shards", "2", "--memory", "16M"], checks=c).start()
    c.section("a byte at a time, 2 shards (the key may live on the other shard)")
    for k in ("a", "k1", "k2", "k3"):
        with srv2.connect() as conn:
            conn.send_slowly(build_request("PUT", "/cache/" + k, b"v-" + k.encode()), pause=0.001)
            conn.read_response()
            conn.send_slowly(build_request("GET", "/cache/" + k), pause=0.001)
            r = conn.read_response()
            c.eq(r.body, b"v-" + k.encode(), "dribbled PUT+GET of %s" % k)
    srv2.stop()
    idle_timeout(c)
    request_timeout(c)


if __name__ == "__main__":
    run_main("test_bytewise", main)
