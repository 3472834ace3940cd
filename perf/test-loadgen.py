#!/usr/bin/env python3
"""test-loadgen.py - perf/loadgen.c against the real ringcached and against a
hostile server (meson test 'loadgen', suite perf: only with -Dperf=true).

Against ringcached (--listen on loopback and on a Unix socket, 2 shards):
every response loadgen counts is a hit the server counted, over both
transports, closed loop and pipelined, on keys of both shards; 404s are
counted as non-2xx; 64 KB bodies that span reads are skipped whole; at a
constant rate every request of the schedule is accounted for (answered,
unanswered or unsent), exactly.

Against a server written here, which answers each request with bytes the
case chooses: every kind of malformed response is refused with a message
that names it (exit 2, never a crash or a hang); a response sent a byte at
a time and a 1 MiB body are read correctly; a server that holds its first
answer back 300 ms is charged for every request it delayed in rate mode
(latency from the due time, not the send).  An unreachable target and bad
arguments exit 1.

usage: test-loadgen.py path/to/loadgen path/to/ringcached
"""

import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "tests", "integration"))
from harness import Server, request, run_main, stats  # noqa: E402

LOADGEN = os.path.abspath(sys.argv[1])
RINGCACHED = os.path.abspath(sys.argv[2])
RUN_TIMEOUT = 30        # seconds any loadgen run may take (its runs are 1 s)


def loadgen(*args):
    """Runs loadgen to completion: (exit status, summary dict, stdout+stderr)."""
    p = subprocess.run([LOADGEN] + [str(a) for a in args], stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=RUN_TIMEOUT)
    out = p.stdout.decode("utf-8", "replace")
    summary = {}
    for line in out.splitlines():
        if line.startswith("summary: "):
            for kv in line[len("summary: "):].split():
                k, v = kv.split("=", 1)
                summary[k] = v if k == "transport" else float(v)
    return p.returncode, summary, out


def hits(srv):
    return stats(srv)["total"]["hits"]


def counted_by_server(c, srv, before, s, what):
    """The server's hits moved by at least the responses loadgen counted and
    at most those plus the requests it sent and never saw answered."""
    lo, hi = s["requests"], s["requests"] + s["unanswered"]
    deadline = time.monotonic() + 5     # /stats may lag the shards by a moment
    got = hits(srv) - before
    while got < lo and time.monotonic() < deadline:
        time.sleep(0.1)
        got = hits(srv) - before
    c.check(lo <= got <= hi, "%s: the server counted every response loadgen did" % what,
            "server hits %d, loadgen responses %d + unanswered %d" % (got, lo, hi - lo))


def against_ringcached(c, d):
    c.section("ringcached over TCP and a Unix socket")
    sock = os.path.join(d, "http.sock")
    srv = Server(["--shards", "2", "--memory", "64M", "--listen", "unix:" + sock],
                 binary=RINGCACHED, checks=c).start()
    for i in range(8):
        request(srv.port, "PUT", "/cache/k%d" % i, b"v" * 100)
    request(srv.port, "PUT", "/cache/big", b"b" * 65536)
    targets = {"tcp": "127.0.0.1:%d" % srv.port, "unix": "unix:" + sock}

    for tr, target in targets.items():
        for depth in (1, 8):
            what = "%s, depth %d" % (tr, depth)
            before = hits(srv)
            rc, s, out = loadgen("--connect", target, "-c", 4, "-d", depth, "-s", 1,
                                 "-p", "/cache/k", "-k", 8)
            c.eq(rc, 0, "%s: exit 0" % what)
            c.check(s.get("requests", 0) > 0 and s["errors"] == 0 and s["non2xx"] == 0,
                    "%s: responses, no errors, no non-2xx" % what, out)
            c.eq(s.get("transport"), tr, "%s: the summary names the transport" % what)
            c.eq(s.get("samples"), s.get("requests"), "%s: one latency sample per response"
                 % what)
            if s:
                counted_by_server(c, srv, before, s, what)

    rc, s, out = loadgen("--connect", targets["unix"], "-c", 2, "-d", 4, "-s", 1,
                         "-p", "/cache/none")
    c.check(rc == 0 and s.get("requests", 0) > 0 and s["non2xx"] == s["requests"],
            "a missing key: every response counted as non-2xx (404), not as an error", out)

    before = hits(srv)
    rc, s, out = loadgen("--connect", targets["unix"], "-c", 2, "-d", 4, "-s", 1,
                         "-p", "/cache/big")
    c.check(rc == 0 and s.get("requests", 0) > 0 and s["errors"] == 0,
            "64 KB values: bodies that span reads are skipped whole", out)
    if s:
        c.check(s["bytes"] >= s["requests"] * 65536, "and every body byte was counted",
                "%d bytes for %d responses" % (s["bytes"], s["requests"]))
        counted_by_server(c, srv, before, s, "64 KB values")

    # rate mode: 2000/s in groups of 4 for 1 s is 500 groups due in [0, 1 s)
    # and one more due at 1 s: 2004 requests, each answered, unanswered
    # (in flight at the end) or unsent (due, never sent), whatever the timing
    for tr, target in targets.items():
        rc, s, out = loadgen("--connect", target, "-c", 4, "-d", 4, "-s", 1, "-R", 2000)
        c.eq(rc, 0, "rate mode over %s: exit 0" % tr)
        if s:
            c.eq(s["requests"] + s["unanswered"] + s["unsent"], 2004,
                 "rate mode over %s: answered + unanswered + unsent = the schedule" % tr)
            c.eq(s["rate"], 2000, "rate mode over %s: the summary gives the rate" % tr)


class Fake:
    """A Unix-socket server that answers every request head it reads (up to
    a blank line) by calling answer(conn, index) with the request's number
    on its connection."""

    def __init__(self, path, answer):
        self.path, self.answer = path, answer
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(64)
        self.done = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.done:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        buf, n = b"", 0
        try:
            while True:
                data = conn.recv(65536)
                if not data:
                    return
                buf += data
                while b"\r\n\r\n" in buf:
                    _, buf = buf.split(b"\r\n\r\n", 1)
                    self.answer(conn, n)
                    n += 1
        except OSError:
            pass
        finally:
            conn.close()

    def close(self):
        self.done = True
        self.sock.close()
        os.unlink(self.path)


def fixed(resp):
    return lambda conn, n: conn.sendall(resp)


OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

REFUSED = [
    # (what, the answer, loadgen's extra flags, what its message must say)
    ("not HTTP", b"SSH-2.0-OpenSSH\r\n\r\n", [], "not an HTTP/1.x status line"),
    ("HTTP/2 preface", b"HTTP/2 200\r\n\r\n", [], "not an HTTP/1.x status line"),
    ("bad status code", b"HTTP/1.1 2x0 OK\r\nContent-Length: 0\r\n\r\n", [],
     "malformed status line"),
    ("chunked", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
     [], "Transfer-Encoding (chunked) is not supported"),
    ("no Content-Length", b"HTTP/1.1 200 OK\r\n\r\nok", [], "no Content-Length"),
    ("Content-Length not a number", b"HTTP/1.1 200 OK\r\nContent-Length: 2x\r\n\r\nok", [],
     "Content-Length not a number"),
    ("negative Content-Length", b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", [],
     "Content-Length not a number"),
    ("huge Content-Length", b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
     [], "Content-Length empty or over 13 digits"),
    ("two Content-Lengths", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok",
     [], "two different Content-Lengths"),
    ("bare LF", b"HTTP/1.1 200 OK\r\nContent-Length: 2\nX: y\r\n\r\nok", [], "bare LF"),
    ("NUL in a value", b"HTTP/1.1 200 OK\r\nX: a\x00b\r\nContent-Length: 0\r\n\r\n", [],
     "control character in a header value"),
    ("space in a name", b"HTTP/1.1 200 OK\r\nX Y: z\r\nContent-Length: 0\r\n\r\n", [],
     "malformed header name"),
    ("head over --max-head", b"HTTP/1.1 200 OK\r\nX: " + b"a" * 400 + b"\r\nContent-Length: 0"
     b"\r\n\r\n", ["--max-head", 256], "response head larger than --max-head"),
    ("a head that never ends", b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 2000, [],
     "response head larger than --max-head"),
    ("101", b"HTTP/1.1 101 Switching Protocols\r\n\r\n", [], "101 Switching Protocols"),
    ("unsolicited response", OK + OK, [], "a response nobody asked for"),
]


def against_fake(c, d):
    c.section("a hostile server: refused, with the reason")
    path = os.path.join(d, "fake.sock")
    for what, resp, flags, says in REFUSED:
        f = Fake(path, fixed(resp))
        try:
            rc, s, out = loadgen("--connect", "unix:" + path, "-c", 2, "-s", 0.3, *flags)
        finally:
            f.close()
        c.check(rc == 2 and s.get("errors", 0) > 0 and says in out,
                "%s: exit 2, counted as an error, and the message says %r" % (what, says), out)

    c.section("a server that is slow but right")

    def byte_by_byte(conn, n):
        for i in range(len(OK)):
            conn.sendall(OK[i:i + 1])
            time.sleep(0.001)
    big = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (1 << 20) + b"z" * (1 << 20)
    interim = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n"
    for what, answer in (("a response a byte at a time", byte_by_byte),
                         ("1 MiB bodies", fixed(big)),
                         ("a 100 Continue before a 204", fixed(interim))):
        f = Fake(path, answer)
        try:
            rc, s, out = loadgen("--connect", "unix:" + path, "-c", 2, "-d", 2, "-s", 0.5)
        finally:
            f.close()
        c.check(rc == 0 and s.get("requests", 0) > 0 and s["errors"] == 0,
                "%s: read correctly" % what, out)

    # The server holds its first answer 300 ms.  At 1000/s on one connection,
    # depth 1, the ~300 requests due meanwhile are sent once it answers, and
    # each is charged from its due time: at least the top 10% (the first 150
    # due) waited 150 ms or more.  Timed from the send, only one would have.
    def stall_first(conn, n):
        if n == 0:
            time.sleep(0.3)
        conn.sendall(OK)
    f = Fake(path, stall_first)
    try:
        rc, s, out = loadgen("--connect", "unix:" + path, "-c", 1, "-s", 1, "-R", 1000)
    finally:
        f.close()
    c.check(rc == 0 and s.get("p90", 0) >= 150000,
            "rate mode: a stall is charged to every request it held back (p90 >= 150 ms)", out)

    c.section("what cannot run exits 1")
    for what, args, says in (
            ("no such socket", ["--connect", "unix:" + os.path.join(d, "none")], "could not open"),
            ("nobody on the port", ["--connect", "127.0.0.1:1"], "could not open"),
            ("depth 0", ["--connect", "unix:x", "-d", 0], "--depth 0"),
            ("a path with a space", ["--connect", "unix:x", "-p", "/a b"], "--path"),
            ("a header with CR LF", ["--connect", "unix:x", "-H", "X: a\r\nY: b"], "--header"),
            ("no target", [], "--connect ADDR is required"),
            ("a socket path too long", ["--connect", "unix:/" + "x" * 200], "1 to 107 bytes")):
        rc, s, out = loadgen(*args, "-s", 0.2)
        c.check(rc == 1 and says in out and not s, "%s: exit 1, saying %r" % (what, says), out)


def main(c):
    with tempfile.TemporaryDirectory(prefix="loadgen-") as d:
        against_ringcached(c, d)
        against_fake(c, d)


run_main("loadgen", main)
