#!/usr/bin/env python3
"""Every status of the HTTP API (issue 2), against the real daemon.

usage: test_api.py [path/to/ringcached]
"""

import os
import time

from harness import WRITE_OK, Server, build_request, chunked, pct, run_main, wait_for

DELETE_OK = {200, 204}
MAX_VALUE = 1024


def hits_and_misses(c, srv):
    c.section("hit, miss, write, delete")
    r = srv.request("PUT", "/cache/alpha", b"value-1")
    c.within(r.status, WRITE_OK, "PUT /cache/alpha -> 201/204")
    r = srv.request("GET", "/cache/alpha")
    c.eq(r.status, 200, "GET of a stored key -> 200")
    c.eq(r.body, b"value-1", "GET returns the stored bytes")
    c.eq(r.header("Content-Length"), "7", "hit carries Content-Length of the value")

    r = srv.request("PUT", "/cache/alpha", b"value-two")
    c.within(r.status, WRITE_OK, "PUT over an existing key -> 201/204")
    c.eq(srv.request("GET", "/cache/alpha").body, b"value-two", "overwrite replaces the value")

    r = srv.request("PUT", "/cache/empty", b"")
    c.within(r.status, WRITE_OK, "PUT with an empty body -> 201/204")
    r = srv.request("GET", "/cache/empty")
    c.check(r.status == 200 and r.body == b"", "GET of an empty value -> 200, empty body",
            repr(r))

    r = srv.request("GET", "/cache/never-stored")
    c.eq(r.status, 404, "GET of an absent key -> 404")

    for path in ("/", "/nope", "/cachex/alpha", "/healthz", "/cache"):
        r = srv.request("GET", path)
        c.eq(r.status, 404, "GET %s (unknown path) -> 404" % path)

    r = srv.request("DELETE", "/cache/alpha")
    c.within(r.status, DELETE_OK, "DELETE of a stored key -> 200/204")
    c.eq(srv.request("GET", "/cache/alpha").status, 404, "GET after DELETE -> 404")
    c.eq(srv.request("DELETE", "/cache/alpha").status, 404, "DELETE of an absent key -> 404")

    r = srv.request("POST", "/cache/posted", b"via-post")
    c.within(r.status, WRITE_OK, "POST /cache/posted -> 201/204 (same as PUT)")
    r = srv.request("GET", "/cache/posted")
    c.check(r.status == 200 and r.body == b"via-post", "POST stored the value like PUT", repr(r))

    r = srv.request("GET", "/health")
    c.eq(r.status, 200, "GET /health -> 200")


def head(c, srv):
    c.section("HEAD")
    srv.request("PUT", "/cache/h", b"0123456789")
    with srv.connect() as conn:
        # HEAD then GET on one connection: if HEAD sent a body, the GET's
        # response would not start where the HEAD's head ends.
        conn.send(build_request("HEAD", "/cache/h") + build_request("GET", "/cache/h"))
        r = conn.read_response(head_only=True)
        c.eq(r.status, 200, "HEAD of a stored key -> 200")
        c.eq(r.header("Content-Length"), "10", "HEAD gives the value's Content-Length")
        r2 = conn.read_response()
        c.check(r2.status == 200 and r2.body == b"0123456789",
                "HEAD sent no body (next pipelined response parses)", repr(r2))
        conn.send(build_request("HEAD", "/cache/absent-h") + build_request("GET", "/health"))
        r = conn.read_response(head_only=True)
        c.eq(r.status, 404, "HEAD of an absent key -> 404")
        c.eq(conn.read_response().status, 200, "HEAD 404 sent no stray body")


def ttl(c, srv):
    c.section("?ttl=")
    t_put = time.monotonic()
    r = srv.request("PUT", "/cache/ttl1?ttl=1", b"short-lived")
    c.within(r.status, WRITE_OK, "PUT /cache/ttl1?ttl=1 -> 201/204")
    r = srv.request("GET", "/cache/ttl1")
    c.check(r.status == 200 and r.body == b"short-lived",
            "the query is not part of the key: GET /cache/ttl1 -> 200", repr(r))
    srv.request("PUT", "/cache/ttl-long?ttl=3600", b"stays")
    srv.request("PUT", "/cache/no-ttl", b"stays")
    seen = []

    def expired():
        st = srv.request("GET", "/cache/ttl1").status
        seen.append((time.monotonic() - t_put, st))
        return st == 404
    gone = wait_for(expired, timeout=6.0, interval=0.05)
    c.check(gone, "key with ttl=1 reads 404 within 6 s")
    first_404 = next((t for t, st in seen if st == 404), None)
    c.note("first 404 %.2f s after the PUT was sent" % (first_404 or -1))
    # Not checked: that a ttl=1 key lives a full second.  The store clock
    # counts whole seconds (docs/store.md, "Time, expiry, flush"), so a key
    # stored late in a second expires at the next tick, which can be well
    # under a second later; the daemon promises expiry, not a minimum
    # lifetime below one second.
    c.eq(srv.request("GET", "/cache/ttl-long").status, 200, "key with ttl=3600 still there")
    c.eq(srv.request("GET", "/cache/no-ttl").status, 200, "key without ttl still there")


def keys(c, srv):
    c.section("keys: percent-decoded, binary-safe, 1..1024 bytes")
    srv.request("PUT", "/cache/a%2Fb", b"slash")
    r = srv.request("GET", "/cache/a/b")
    c.check(r.status == 200 and r.body == b"slash",
            "/cache/a%2Fb and /cache/a/b are the same key (a/b)", repr(r))
    srv.request("PUT", "/cache/Abc", b"abc")
    r = srv.request("GET", "/cache/%41%62%63")
    c.check(r.status == 200 and r.body == b"abc", "%41%62%63 decodes to Abc", repr(r))
    srv.request("PUT", "/cache/%4A%4b", b"JK")
    r = srv.request("GET", "/cache/JK")
    c.check(r.status == 200 and r.body == b"JK", "hex escapes in either case: %4A%4b is JK",
            repr(r))

    # NUL and 0xFF must not truncate or mangle the key.
    srv.request("PUT", "/cache/x%00y", b"nul-y")
    srv.request("PUT", "/cache/x%00z", b"nul-z")
    srv.request("PUT", "/cache/x", b"plain-x")
    srv.request("PUT", "/cache/%FF%FE%80", b"high")
    r1 = srv.request("GET", "/cache/x%00y")
    r2 = srv.request("GET", "/cache/x%00z")
    r3 = srv.request("GET", "/cache/x")
    r4 = srv.request("GET", "/cache/%ff%fe%80")
    c.check(r1.body == b"nul-y" and r2.body == b"nul-z" and r3.body == b"plain-x",
            "keys x\\0y, x\\0z and x are three keys", "%r %r %r" % (r1, r2, r3))
    c.check(r4.status == 200 and r4.body == b"high", "key \\xff\\xfe\\x80 round-trips", repr(r4))
    r = srv.request("PUT", "/cache/%00", b"just-nul")
    c.within(r.status, WRITE_OK, "a one-byte key \\0 is accepted")
    r = srv.request("GET", "/cache/%00")
    c.check(r.status == 200 and r.body == b"just-nul", "key \\0 round-trips", repr(r))

    every_byte = bytes(range(256)) * 4
    r = srv.request("PUT", "/cache/" + pct(every_byte), b"k1024")
    c.within(r.status, WRITE_OK, "a 1024-byte key of every byte value -> 201/204")
    r = srv.request("GET", "/cache/" + pct(every_byte))
    c.check(r.status == 200 and r.body == b"k1024", "the 1024-byte key round-trips", repr(r))
    r = srv.request("GET", "/cache/" + pct(every_byte[:-1]))
    c.eq(r.status, 404, "its 1023-byte prefix is another (absent) key")
    r = srv.request("PUT", "/cache/" + "k" * 1024, b"plain1024")
    c.within(r.status, WRITE_OK, "a 1024-byte plain key -> 201/204")

    r = srv.request("PUT", "/cache/" + pct(every_byte + b"!"), b"too-long")
    c.within(r.status, {400, 414}, "a 1025-byte key is refused on PUT (400/414)")
    r = srv.request("PUT", "/cache/" + "k" * 1025, b"too-long")
    c.within(r.status, {400, 414}, "a 1025-byte plain key is refused on PUT (400/414)")
    r = srv.request("GET", "/cache/" + "k" * 1025)
    c.within(r.status, {400, 404, 414}, "GET of a 1025-byte key is not a hit")

    r = srv.request("PUT", "/cache/", b"no-key")
    c.check(400 <= r.status < 500, "PUT /cache/ (empty key) -> 4xx", repr(r))
    for bad in ("/cache/%G1", "/cache/ab%4", "/cache/%"):
        r = srv.request("PUT", bad, b"v")
        c.eq(r.status, 400, "PUT %s (bad escape) -> 400" % bad)


def bad_requests(c, srv):
    c.section("400 for malformed requests, and the connection closes")
    cases = [
        ("both Content-Length and Transfer-Encoding",
         b"PUT /cache/k HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
         b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
        ("Transfer-Encoding before Content-Length",
         b"PUT /cache/k HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
         b"Content-Length: 5\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
        ("Content-Length: abc", b"PUT /cache/k HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n"),
        ("Content-Length: -1", b"PUT /cache/k HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n"),
        ("Content-Length: +5", b"PUT /cache/k HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\nhello"),
        ("Content-Length: 0x10", b"PUT /cache/k HTTP/1.1\r\nHost: x\r\nContent-Length: 0x10\r\n\r\n"),
        ("Content-Length: 1 2", b"PUT /cache/k HTTP/1.1\r\nHost: x\r\nContent-Length: 1 2\r\n\r\n"),
        ("empty Content-Length", b"PUT /cache/k HTTP/1.1\r\nHost: x\r\nContent-Length: \r\n\r\n"),
        ("two different Content-Lengths",
         b"PUT /cache/k HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"),
        ("Content-Length past 2^64",
         b"PUT /cache/k HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n",
         {400, 413}),
        ("request line without version", b"GET /cache/k\r\n\r\n"),
        ("lowercase http version", b"GET /cache/k http/1.1\r\n\r\n", {400, 505}),
        ("header line without colon", b"GET /cache/k HTTP/1.1\r\nHost x\r\n\r\n"),
        ("space before the colon", b"GET /cache/k HTTP/1.1\r\nHost : x\r\n\r\n"),
        ("invalid chunk size",
         b"PUT /cache/k HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"),
    ]
    for case in cases:
        what, raw = case[0], case[1]
        allowed = case[2] if len(case) > 2 else {400}
        with srv.connect() as conn:
            conn.send(raw + build_request("GET", "/health"))
            try:
                r = conn.read_response()
            except Exception as e:  # noqa: BLE001
                c.check(False, "%s -> %s" % (what, sorted(allowed)), "no response: %r" % (e,))
                continue
            c.within(r.status, allowed, "%s -> %s" % (what, "/".join(map(str, sorted(allowed)))))
            closed = conn.closed_by_peer()
            c.check(closed, "  ... then the connection is closed, the pipelined GET unanswered",
                    "left over: %r" % conn.buf[:200])

    c.section("a protocol error does not disturb other connections")
    with srv.connect() as other:
        other.send(build_request("PUT", "/cache/bystander", b"before"))
        c.within(other.read_response().status, WRITE_OK, "bystander connection writes")
        with srv.connect() as bad:
            bad.send(b"GET /cache/k HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n")
            c.eq(bad.read_response().status, 400, "bad connection gets 400")
        other.send(build_request("GET", "/cache/bystander"))
        r = other.read_response()
        c.check(r.status == 200 and r.body == b"before",
                "bystander's keep-alive connection still served", repr(r))
    c.check(srv.healthy(), "server still answers /health")


def methods(c, srv):
    c.section("405 for other methods on /cache/")
    for m in ("PATCH", "OPTIONS", "TRACE", "CONNECT", "FOO"):
        path = "/cache/alpha"
        with srv.connect() as conn:
            conn.send(("%s %s HTTP/1.1\r\nHost: x\r\n\r\n" % (m, path)).encode())
            r = conn.read_response()
            c.eq(r.status, 405, "%s /cache/alpha -> 405" % m)
            allow = {t.strip() for t in (r.header("Allow") or "").split(",")}
            c.eq(allow, {"GET", "HEAD", "PUT", "POST", "DELETE"},
                 "%s /cache/alpha: the 405's Allow lists the methods /cache/ takes "
                 "(RFC 9110 15.5.6)" % m)
            # 405 is not a framing error: unless the server said it closes,
            # the connection stays usable.
            if not r.has_token("Connection", "close"):
                r = conn.roundtrip("GET", "/health")
                c.eq(r.status, 200, "  ... connection still usable after 405")


def too_large(c, srv):
    c.section("413 over --max-value %d" % MAX_VALUE)
    r = srv.request("PUT", "/cache/max", os.urandom(MAX_VALUE))
    c.within(r.status, WRITE_OK, "a value of exactly --max-value is accepted")
    c.eq(len(srv.request("GET", "/cache/max").body), MAX_VALUE, "and reads back whole")
    with srv.connect() as conn:
        conn.send(build_request("PUT", "/cache/big", b"x" * (MAX_VALUE + 1)))
        c.eq(conn.read_response().status, 413, "Content-Length --max-value+1 -> 413")
    with srv.connect() as conn:
        # Only the head: the server must refuse on the declared length without
        # waiting for a body it will not store.
        conn.send(b"PUT /cache/big HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\n\r\n")
        c.eq(conn.read_response().status, 413, "Content-Length 1e9, body not sent -> 413 at once")
    with srv.connect() as conn:
        conn.send(build_request("PUT", "/cache/big", chunked(b"y" * (MAX_VALUE + 1), (100,)),
                                [("Transfer-Encoding", "chunked")]))
        c.eq(conn.read_response().status, 413, "chunked body of --max-value+1 -> 413")
    c.eq(srv.request("GET", "/cache/big").status, 404, "nothing was stored for the refused writes")
    c.check(srv.healthy(), "server still answers /health")


def limits(c):
    c.section("414/431 over --max-request-line 256 / --max-head 1K / --max-headers 20")
    srv = Server(["--shards", "2", "--memory", "64M", "--max-request-line", "256",
                  "--max-head", "1K", "--max-headers", "20"], checks=c).start()
    r = srv.request("GET", "/cache/" + "a" * 200)
    c.eq(r.status, 404, "a 220-byte request line is fine (miss)")
    r = srv.request("GET", "/cache/" + "a" * 300)
    c.eq(r.status, 414, "a 320-byte request line -> 414")
    with srv.connect() as conn:
        # No CRLF at all: the server cannot wait forever for the line to end.
        conn.send(b"GET /cache/" + b"b" * 600)
        c.eq(conn.read_response().status, 414, "an unterminated 611-byte request line -> 414")
    r = srv.request("GET", "/cache/k", headers=[("X-Big", "v" * 1100)])
    c.eq(r.status, 431, "a 1100-byte header over a 1K head limit -> 431")
    r = srv.request("GET", "/cache/k", headers=[("X-H%d" % i, "1") for i in range(25)])
    c.eq(r.status, 431, "25 header fields over --max-headers 20 -> 431")
    r = srv.request("GET", "/cache/k", headers=[("X-H%d" % i, "1") for i in range(10)])
    c.eq(r.status, 404, "10 header fields are fine (miss)")
    with srv.connect() as conn:
        conn.send(b"GET /cache/k HTTP/1.1\r\n" + b"X-Fill: zzzzzzzzzz\r\n" * 100)
        c.eq(conn.read_response().status, 431, "an unterminated 2K head -> 431")
    c.check(srv.healthy(), "server still answers /health")
    srv.stop()


def main(c):
    srv = Server(["--shards", "2", "--memory", "64M", "--max-value", str(MAX_VALUE)],
                 checks=c).start()
    hits_and_misses(c, srv)
    head(c, srv)
    keys(c, srv)
    bad_requests(c, srv)
    methods(c, srv)
    too_large(c, srv)
    ttl(c, srv)
    c.check(srv.alive(), "server process still running after all of the above")
    srv.stop()
    limits(c)


if __name__ == "__main__":
    run_main("test_api", main)
