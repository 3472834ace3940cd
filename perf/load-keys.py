#!/usr/bin/env python3
"""load-keys.py - write N keys into ringcached over HTTP, fast enough for
millions: pipelined PUTs over a few connections from one thread.

    load-keys.py [--host H] [--port P] [-n N] [--prefix key:] [--size 100]
                 [--conns 4] [--depth 64] [--verify K]

Key i is PREFIX + str(i); its value is value_of(i, size): distinct per key,
so a reader can check it.  --verify K reads the last K keys back and fails
if any differs.  Exit status 0 on success, 1 on a bad response or timeout.
"""
import argparse
import selectors
import socket
import sys
import time


def value_of(i, size):
    """Distinct, checkable value bytes for key number i."""
    seed = b"v%d:" % i
    return (seed * (size // len(seed) + 1))[:size]


def put_request(key, value):
    return b"PUT /cache/%s HTTP/1.1\r\nHost: l\r\nContent-Length: %d\r\n\r\n%s" % (
        key, len(value), value)


class Conn:
    def __init__(self, host, port):
        self.sock = socket.create_connection((host, port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.out = b""
        self.pending = 0   # responses still due
        self.tail = b""    # end of the last read, for markers split across reads
        self.bad = 0


def load(host, port, n, prefix, size, conns=4, depth=64, start=0, timeout=120.0,
         progress=None):
    """PUTs keys start..start+n-1; returns the number of non-2xx answers.

    progress(done) is called now and then (the integration test uses it to
    probe the server while loading)."""
    cs = [Conn(host, port) for _ in range(conns)]
    sel = selectors.DefaultSelector()
    for c in cs:
        sel.register(c.sock, selectors.EVENT_READ, c)
    nxt, done = start, 0
    end = start + n
    deadline = time.monotonic() + timeout
    last_progress = 0
    bad = 0
    while done < n:
        for c in cs:
            if c.pending == 0 and nxt < end:
                k = min(depth, end - nxt)
                c.out = b"".join(put_request(prefix + b"%d" % i, value_of(i, size))
                                 for i in range(nxt, nxt + k))
                c.pending = k
                nxt += k
                c.sock.sendall(c.out)
        for key, _ in sel.select(timeout=1.0):
            c = key.data
            data = c.sock.recv(1 << 20)
            if not data:
                raise RuntimeError("server closed a connection")
            # The 8 bytes kept from the last read are shorter than the
            # 9-byte marker, so a marker split across reads counts once.
            buf = c.tail + data
            got = buf.count(b"HTTP/1.1 ")
            c.bad += got - buf.count(b"HTTP/1.1 2")
            c.tail = buf[-8:]
            c.pending -= got
            done += got
        if time.monotonic() > deadline:
            raise RuntimeError("timed out with %d of %d answered" % (done, n))
        if progress and done - last_progress >= 50000:
            last_progress = done
            progress(done)
    for c in cs:
        bad += c.bad
        c.sock.close()
    return bad


def get(host, port, key, timeout=5.0):
    """One GET; returns (status, body)."""
    s = socket.create_connection((host, port), timeout=timeout)
    s.sendall(b"GET /cache/%s HTTP/1.1\r\nHost: l\r\nConnection: close\r\n\r\n" % key)
    data = b""
    while True:
        chunk = s.recv(1 << 16)
        if not chunk:
            break
        data += chunk
    s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head else 0
    return status, body


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8080)
    ap.add_argument("-n", type=int, default=1000000)
    ap.add_argument("--prefix", default="key:")
    ap.add_argument("--size", type=int, default=100)
    ap.add_argument("--conns", type=int, default=4)
    ap.add_argument("--depth", type=int, default=64)
    ap.add_argument("--verify", type=int, default=0)
    a = ap.parse_args()
    prefix = a.prefix.encode()
    t0 = time.monotonic()
    bad = load(a.host, a.port, a.n, prefix, a.size, a.conns, a.depth)
    dt = time.monotonic() - t0
    print("loaded %d keys in %.1f s (%.0f PUT/s), %d non-2xx" % (a.n, dt, a.n / dt, bad))
    wrong = 0
    for i in range(max(0, a.n - a.verify), a.n):
        st, body = get(a.host, a.port, prefix + b"%d" % i)
        if st != 200 or body != value_of(i, a.size):
            wrong += 1
    if a.verify:
        print("verified the last %d keys: %d wrong" % (a.verify, wrong))
    return 1 if bad or wrong else 0


if __name__ == "__main__":
    sys.exit(main())
