#!/usr/bin/env python3
"""Garbage on the wire: after each input the server is still up and answers
GET /health, and no input makes it answer 2xx.

Each input is sent on its own connection, which the client then half-closes
(so a server waiting for more bytes sees EOF) or, for the truncated
requests, closes outright.

usage: test_malformed.py [path/to/ringcached]
"""

import os
import random
import socket

from harness import Conn, Server, run_main

PUT = b"PUT /cache/m HTTP/1.1\r\nHost: x\r\n"
CHUNKED = PUT + b"Transfer-Encoding: chunked\r\n\r\n"

# Inputs RFC 9112 lets a server accept (it may parse LF line ends and
# unfold obs-fold, OPTIONS * is a valid request, and it sets no limit on
# chunk extensions or trailers): any answer is fine.
MAY_SUCCEED = {"bare LF line ends", "obs-fold header", "asterisk target",
               "chunk extension of 1 MiB", "trailer of 1 MiB"}


def inputs():
    rng = random.Random(7)
    yield "binary noise 64 B", bytes(rng.randrange(256) for _ in range(64))
    yield "binary noise 64 KiB", bytes(rng.randrange(256) for _ in range(65536))
    yield "NUL bytes", b"\0" * 4096
    yield "only CRLFs", b"\r\n" * 1000
    yield "request line of 1 MiB", b"GET /cache/" + b"a" * (1 << 20) + b" HTTP/1.1\r\n\r\n"
    yield "header line of 1 MiB", b"GET /health HTTP/1.1\r\nX-A: " + b"b" * (1 << 20) + b"\r\n\r\n"
    yield "100000 headers", b"GET /health HTTP/1.1\r\n" + b"A: b\r\n" * 100000 + b"\r\n"
    yield "Content-Length -1", PUT + b"Content-Length: -1\r\n\r\nabc"
    yield "Content-Length 2^64", PUT + b"Content-Length: 18446744073709551616\r\n\r\nabc"
    yield "Content-Length 2^63", PUT + b"Content-Length: 9223372036854775808\r\n\r\nabc"
    yield "Content-Length 2^64-1", PUT + b"Content-Length: 18446744073709551615\r\n\r\nabc"
    yield "Content-Length of 400 digits", PUT + b"Content-Length: " + b"9" * 400 + b"\r\n\r\n"
    yield "Content-Length with NUL", PUT + b"Content-Length: 1\x002\r\n\r\nabc"
    yield "bare CR in request line", b"GET /cache/m\rHTTP/1.1\r\n\r\n"
    yield "bare CR in header", b"GET /cache/m HTTP/1.1\r\nHost: a\rb\r\n\r\n"
    yield "bare CR line ends", b"GET /cache/m HTTP/1.1\rHost: x\r\r"
    yield "bare LF line ends", b"GET /health HTTP/1.1\nHost: x\n\n"
    yield "NUL in header name", b"GET /health HTTP/1.1\r\nHo\0st: x\r\n\r\n"
    yield "NUL in header value", b"GET /health HTTP/1.1\r\nHost: x\0y\r\n\r\n"
    yield "NUL in path", b"GET /cache/a\0b HTTP/1.1\r\n\r\n"
    yield "DEL and controls in path", b"GET /cache/\x7f\x01\x1b HTTP/1.1\r\n\r\n"
    yield "obs-fold header", b"GET /health HTTP/1.1\r\nX-A: one\r\n two\r\n\r\n"
    yield "header without name", b"GET /health HTTP/1.1\r\n: x\r\n\r\n"
    yield "HTTP/2 preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
    yield "HTTP/9.9", b"GET /health HTTP/9.9\r\n\r\n"
    yield "HTTP/1.10", b"GET /health HTTP/1.10\r\n\r\n"
    yield "TLS ClientHello", bytes.fromhex("160301020001") + os.urandom(200)
    yield "chunk size zz", CHUNKED + b"zz\r\nhello\r\n0\r\n\r\n"
    yield "chunk size -1", CHUNKED + b"-1\r\nhello\r\n0\r\n\r\n"
    yield "chunk size 2^64", CHUNKED + b"10000000000000000\r\nhello\r\n0\r\n\r\n"
    yield "chunk size 200 hex digits", CHUNKED + b"f" * 200 + b"\r\nhello\r\n0\r\n\r\n"
    yield "chunk size empty", CHUNKED + b"\r\nhello\r\n0\r\n\r\n"
    yield "chunk data longer than size", CHUNKED + b"3\r\nhello\r\n0\r\n\r\n"
    yield "chunk without CRLF after data", CHUNKED + b"5\r\nhelloXX0\r\n\r\n"
    yield "chunk extension of 1 MiB", CHUNKED + b"5;" + b"e" * (1 << 20) + b"\r\nhello\r\n0\r\n\r\n"
    yield "trailer of 1 MiB", CHUNKED + b"0\r\nX-T: " + b"t" * (1 << 20) + b"\r\n\r\n"
    yield "Transfer-Encoding gzip", PUT + b"Transfer-Encoding: gzip\r\n\r\nabc"
    yield "Transfer-Encoding chunked twice", PUT + b"Transfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n"
    yield "percent escape at end", b"GET /cache/abc% HTTP/1.1\r\n\r\n"
    yield "key of 100 KiB escapes", b"GET /cache/" + b"%41" * 34000 + b" HTTP/1.1\r\n\r\n"
    yield "asterisk target", b"OPTIONS * HTTP/1.1\r\n\r\n"
    yield "empty method", b" /cache/m HTTP/1.1\r\n\r\n"
    yield "method of 10 KiB", b"G" * 10240 + b" /cache/m HTTP/1.1\r\n\r\n"
    # Truncated requests: the client closes in the middle.
    yield "truncated: request line", b"GET /cache/m HT"
    yield "truncated: headers", b"GET /cache/m HTTP/1.1\r\nHost: x\r\nX-A: y"
    yield "truncated: body", PUT + b"Content-Length: 100\r\n\r\n0123456789"
    yield "truncated: chunk", CHUNKED + b"a\r\n01234"
    yield "truncated: trailer", CHUNKED + b"0\r\nX-T: y"
    yield "truncated: Expect", PUT + b"Expect: 100-continue\r\nContent-Length: 5\r\n\r\n"


def main(c):
    srv = Server(["--shards", "2", "--memory", "64M", "--request-timeout", "3"], checks=c).start()
    for what, data in inputs():
        with Conn(srv.port, timeout=10) as conn:
            try:
                conn.send(data)
            except OSError:
                pass        # the server may close once it has seen enough
            if what.startswith("truncated"):
                conn.close()
                got = b""
            else:
                try:
                    conn.sock.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                try:
                    got = conn.read_until_close(timeout=10)
                except OSError as e:
                    got = ("<%r>" % (e,)).encode()
        status = got[9:12] if got.startswith(b"HTTP/1.") else b""
        c.note("%s: answered %r" % (what, got.split(b"\r\n", 1)[0][:60]))
        if what not in MAY_SUCCEED:
            c.check(not status.startswith(b"2"), "%s: no 2xx answer" % what, repr(got[:120]))
        c.check(srv.healthy(), "%s: server still answers /health" % what,
                "answered %r" % got[:120])
        if not srv.alive():
            break
    # The same inputs again, all at once on parallel connections.
    c.section("all inputs at once")
    conns = []
    for what, data in inputs():
        cn = Conn(srv.port, timeout=10)
        try:
            cn.send(data)
        except OSError:
            pass
        conns.append(cn)
    for cn in conns:
        cn.close()
    c.check(srv.healthy(), "server still answers /health after every input at once")


if __name__ == "__main__":
    run_main("test_malformed", main)
