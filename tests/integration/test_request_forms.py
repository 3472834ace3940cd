#!/usr/bin/env python3
"""Request lines the parser once got wrong (issue 11, defect 8), on a
connection the client keeps open (a half-close would end the wait anyway):

- an HTTP/0.9 request line (no version) waited for --request-timeout and got
  408; it gets 400 at once;
- an absolute-form target (RFC 9112 3.2.2: a server must accept it) was
  refused with 400; it is served like its origin form.

usage: test_request_forms.py [path/to/ringcached]
"""

import time

from harness import Server, run_main

TIMEOUT = 10  # --request-timeout: a 408 would take this long


def body(c):
    with Server(["--shards", "2", "--memory", "16M", "--request-timeout", str(TIMEOUT)],
                checks=c).start() as srv:
        for line in (b"GET /cache/k\r\n", b"GET /health\r\n\r\n", b"GET /cache/k \r\n"):
            with srv.connect(timeout=TIMEOUT + 5) as conn:
                t0 = time.monotonic()
                conn.send(line)
                r = conn.read_response()
                took = time.monotonic() - t0
                c.eq(r.status, 400, "%r on an open connection -> 400" % line)
                c.check(took < TIMEOUT / 2, "... at once, not at --request-timeout",
                        "%.2f s" % took)
                c.check(conn.closed_by_peer(5), "... and the connection closes")

        c.eq(srv.request("PUT", "/cache/abs", body=b"value").status, 201, "PUT /cache/abs")
        for target in ("http://example.com/cache/abs", "HTTP://EXAMPLE.COM:80/cache/abs",
                       "https://h/cache/abs?x=1"):
            with srv.connect() as conn:
                r = conn.roundtrip("GET", target)
                c.check(r.status == 200 and r.body == b"value",
                        "GET %s -> 200 with the value of /cache/abs" % target, repr(r))
        with srv.connect() as conn:
            r = conn.roundtrip("PUT", "http://h/cache/abs2", body=b"two")
            c.eq(r.status, 201, "PUT in absolute form stores")
        r = srv.request("GET", "/cache/abs2")
        c.check(r.status == 200 and r.body == b"two", "... under the path's key", repr(r))
        with srv.connect() as conn:
            c.eq(conn.roundtrip("GET", "http://h").status, 404,
                 "GET http://h (empty path: /) -> 404, not a 400")
            c.eq(conn.roundtrip("GET", "http://h/health").status, 200, "GET http://h/health")
        for target in ("ftp://h/cache/abs", "http:///cache/abs", "example.com:80"):
            with srv.connect() as conn:
                r = conn.roundtrip("GET", target)
                c.eq(r.status, 400, "GET %s -> 400" % target)


if __name__ == "__main__":
    run_main("test_request_forms", body)
