#!/usr/bin/env python3
"""Keep-alive, pipelining across shards, HTTP/1.0, Connection: close,
Expect: 100-continue and chunked request bodies.

usage: test_pipeline.py [path/to/ringcached]
"""

import random
import socket

from harness import WRITE_OK, Server, build_request, chunked, key_shard, keys_per_shard, run_main

DELETE_OK = {200, 204}


def keep_alive(c, srv):
    c.section("keep-alive")
    with srv.connect() as conn:
        for i in range(5):
            r = conn.roundtrip("PUT", "/cache/ka%d" % i, b"v%d" % i)
            c.within(r.status, WRITE_OK, "PUT %d on one connection" % i)
        ok = all(conn.roundtrip("GET", "/cache/ka%d" % i).body == b"v%d" % i for i in range(5))
        c.check(ok, "5 GETs on the same connection read the 5 values")
        c.check(conn.still_open(), "connection still open after 10 requests")


def pipeline(c, nshards):
    c.section("100 pipelined requests, keys on all %d shards" % nshards)
    srv = Server(["--shards", str(nshards), "--memory", "64M"], checks=c).start()
    by_shard = keys_per_shard("p%d-" % nshards, nshards, 6)
    keys = [k for ks in by_shard.values() for k in ks]
    covered = {key_shard(k, nshards) for k in keys}
    c.eq(covered, set(range(nshards)), "test keys cover every shard")

    rng = random.Random(nshards)
    model = {}
    reqs, expect = [], []
    for i in range(100):
        k = rng.choice(keys)
        op = rng.choice(["PUT", "PUT", "GET", "GET", "GET", "HEAD", "DELETE", "POST"])
        path = "/cache/" + k
        if op in ("PUT", "POST"):
            v = b"%s=%d:" % (k.encode(), i) + b"x" * rng.randrange(0, 300)
            if rng.random() < 0.3:
                reqs.append(build_request(op, path, chunked(v, (rng.randrange(1, 64),)),
                                          [("Transfer-Encoding", "chunked")]))
            else:
                reqs.append(build_request(op, path, v))
            model[k] = v
            expect.append((op, WRITE_OK, None))
        elif op == "DELETE":
            reqs.append(build_request(op, path))
            expect.append((op, DELETE_OK if k in model else {404}, None))
            model.pop(k, None)
        else:
            reqs.append(build_request(op, path))
            if k in model:
                expect.append((op, {200}, model[k]))
            else:
                expect.append((op, {404}, None))

    with srv.connect(timeout=10) as conn:
        conn.send(b"".join(reqs))
        bad = []
        for i, (op, statuses, body) in enumerate(expect):
            r = conn.read_response(head_only=(op == "HEAD"))
            if r.status not in statuses:
                bad.append("#%d %s: status %d, want %s" % (i, op, r.status, sorted(statuses)))
            elif op == "GET" and body is not None and r.body != body:
                bad.append("#%d GET: body %r, want %r" % (i, r.body[:40], body[:40]))
            elif op == "HEAD" and body is not None and r.header("Content-Length") != str(len(body)):
                bad.append("#%d HEAD: Content-Length %s, want %d"
                           % (i, r.header("Content-Length"), len(body)))
        c.check(not bad, "100 responses in request order with the right statuses and bodies",
                "; ".join(bad[:5]))
        c.check(conn.still_open(), "no extra bytes after the 100th response")

    # Many connections, so that both "owner is my shard" and "owner is the
    # other shard" occur whichever shard accepted each connection.
    conns = [srv.connect() for _ in range(8)]
    try:
        batch = b"".join(build_request("GET", "/cache/" + k) for k in keys) * 2
        for cn in conns:
            cn.send(batch)
        ok = True
        for cn in conns:
            for k in keys * 2:
                r = cn.read_response()
                want = model.get(k)
                if (want is None and r.status != 404) or (want is not None and r.body != want):
                    ok = False
        c.check(ok, "8 connections x %d pipelined GETs across shards all correct" % (2 * len(keys)))
    finally:
        for cn in conns:
            cn.close()
    srv.stop()


def http10(c, srv):
    c.section("HTTP/1.0")
    srv.request("PUT", "/cache/old", b"from-1.0")
    with srv.connect() as conn:
        conn.send(b"GET /cache/old HTTP/1.0\r\n\r\n")
        r = conn.read_response()
        c.check(r.status == 200 and r.body == b"from-1.0", "HTTP/1.0 GET -> 200 with the value",
                repr(r))
        c.check(conn.closed_by_peer(), "HTTP/1.0 without keep-alive: server closes after the response")
    with srv.connect() as conn:
        conn.send(b"GET /cache/old HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        r = conn.read_response()
        c.check(r.status == 200 and r.body == b"from-1.0", "HTTP/1.0 keep-alive GET -> 200", repr(r))
        c.check(r.has_token("Connection", "keep-alive"),
                "  ... response says Connection: keep-alive (else a 1.0 client closes)",
                repr(r.raw_head))
        conn.send(b"PUT /cache/old10 HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: 3\r\n\r\nabc")
        r = conn.read_response()
        c.within(r.status, WRITE_OK, "  ... second request (PUT) on the same 1.0 connection")
        conn.send(b"GET /cache/old10 HTTP/1.0\r\n\r\n")
        r = conn.read_response()
        c.check(r.body == b"abc", "  ... third request without keep-alive reads the value", repr(r))
        c.check(conn.closed_by_peer(), "  ... and then the server closes")


def connection_close(c, srv):
    c.section("Connection: close")
    srv.request("PUT", "/cache/cc", b"cc")
    with srv.connect() as conn:
        conn.send(build_request("GET", "/cache/cc", headers=[("Connection", "close")])
                  + build_request("GET", "/cache/cc"))
        r = conn.read_response()
        c.check(r.status == 200 and r.body == b"cc", "GET with Connection: close -> 200", repr(r))
        c.check(r.has_token("Connection", "close"), "  ... response says Connection: close",
                repr(r.raw_head))
        c.check(conn.closed_by_peer(),
                "  ... server closes and does not answer the request pipelined after it",
                "left over: %r" % conn.buf[:200])
    with srv.connect() as conn:
        conn.send(build_request("PUT", "/cache/cc2", b"x", [("Connection", "close")]))
        c.within(conn.read_response().status, WRITE_OK, "PUT with Connection: close -> 201/204")
        c.check(conn.closed_by_peer(), "  ... then closed")


def expect_continue(c, srv):
    c.section("Expect: 100-continue")
    body = b"continued-body"
    with srv.connect() as conn:
        conn.send(b"PUT /cache/cont HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                  b"Content-Length: %d\r\n\r\n" % len(body))
        try:
            r = conn.read_response()
        except socket.timeout:
            r = None
        c.check(r is not None and r.status == 100,
                "100 Continue arrives before the body is sent", repr(r))
        conn.send(body)
        r = conn.read_response()
        c.within(r.status, WRITE_OK, "final response after the body -> 201/204")
        r = conn.roundtrip("GET", "/cache/cont")
        c.check(r.body == body, "the value is the body sent after 100 Continue", repr(r))
    with srv.connect() as conn:
        conn.send(b"PUT /cache/cont2 HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n")
        r = conn.read_response()
        c.eq(r.status, 100, "100 Continue for a chunked body too")
        conn.send(chunked(b"chunky", (2,)))
        c.within(conn.read_response().status, WRITE_OK, "chunked body after 100 -> 201/204")
        c.eq(conn.roundtrip("GET", "/cache/cont2").body, b"chunky", "value stored")
    with srv.connect() as conn:
        # A client may send the body without waiting; the server must not
        # read the body as the next request.
        conn.send(b"PUT /cache/cont3 HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                  b"Content-Length: 3\r\n\r\nabc" + build_request("GET", "/cache/cont3"))
        statuses = []
        for _ in range(3):
            r = conn.read_response()
            statuses.append(r.status)
            if r.status == 200:
                break
        c.check(statuses[-1] == 200 and r.body == b"abc" and statuses[0] in (100, 201, 204),
                "body sent at once with Expect: answered, then the pipelined GET", repr(statuses))


def chunked_bodies(c, srv):
    c.section("chunked request bodies")
    raw = (b"PUT /cache/wiki HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"4\r\nWiki\r\n"
           b"5;name=value\r\npedia\r\n"
           b"E;a=1;b=\"q\"\r\n in\r\n\r\nchunks.\r\n"
           b"0\r\nX-Trailer: one\r\nX-Other: two\r\n\r\n")
    with srv.connect() as conn:
        conn.send(raw + build_request("GET", "/cache/wiki"))
        c.within(conn.read_response().status, WRITE_OK,
                 "chunked PUT with extensions and trailers -> 201/204")
        r = conn.read_response()
        c.eq(r.body, b"Wikipedia in\r\n\r\nchunks.",
             "decoded body exact; trailers consumed, pipelined GET answered")
    with srv.connect() as conn:
        conn.send(b"POST /cache/hexcase HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                  b"a\r\n0123456789\r\nA\r\nabcdefghij\r\n000\r\n\r\n")
        c.within(conn.read_response().status, WRITE_OK, "chunk sizes a/A/000 -> 201/204")
        c.eq(conn.roundtrip("GET", "/cache/hexcase").body, b"0123456789abcdefghij",
             "hex sizes in either case")
    with srv.connect() as conn:
        conn.send(b"PUT /cache/zero HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
        c.within(conn.read_response().status, WRITE_OK, "chunked empty body -> 201/204")
        r = conn.roundtrip("GET", "/cache/zero")
        c.check(r.status == 200 and r.body == b"", "empty value stored", repr(r))
    with srv.connect() as conn:
        conn.send(b"PUT /cache/te HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked\r\n\r\n"
                  b"3\r\nabc\r\n0\r\n\r\n")
        c.within(conn.read_response().status, WRITE_OK, "Transfer-Encoding: Chunked (any case)")


def main(c):
    srv = Server(checks=c).start()
    keep_alive(c, srv)
    http10(c, srv)
    connection_close(c, srv)
    expect_continue(c, srv)
    chunked_bodies(c, srv)
    c.check(srv.healthy(), "server healthy after the above")
    srv.stop()
    pipeline(c, 2)
    pipeline(c, 4)


if __name__ == "__main__":
    run_main("test_pipeline", main)
